#![allow(dead_code)]

use candletop::config::RunConfig;
use candletop::data::{DataSpec, DataSplits, Normalization};

/// The embedded data cut down to `train` training and `val` validation images.
pub fn small_data(train: usize, val: usize) -> DataSplits {
    let mut d = DataSplits::load(&DataSpec::Embedded, 0.1, 1).unwrap();
    d.train = d.train.select(&(0..train).collect::<Vec<_>>());
    d.val = d.val.select(&(0..val).collect::<Vec<_>>());
    d.test = d.test.select(&(0..val).collect::<Vec<_>>());
    d.norm = Normalization::of(&d.train);
    d
}

/// A small, quick model.
pub fn small_config() -> RunConfig {
    RunConfig {
        arch: "c8,f32".into(),
        batch_size: 32,
        epochs: 1,
        threads: 2,
        ..RunConfig::default()
    }
}
