//! The real Fashion-MNIST as Debian's `dataset-fashion-mnist` installs it (required under CI,
//! skipped visibly elsewhere when absent), and truncated gzip files.

mod common;

use std::path::Path;

use candletop::data::{parse_maybe_gzip, DataOptions, DataSpec, DataSplits};

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

#[test]
fn loads_the_full_fashion_mnist() {
    let what = format!("{FASHION} (apt-get install dataset-fashion-mnist)");
    if !common::available(&what, Path::new(FASHION).is_dir()) {
        return;
    }
    let spec: DataSpec = format!("fashion-mnist:{FASHION}").parse().unwrap();
    let d = DataSplits::load(&spec, &DataOptions::new(0.1, 42)).unwrap();
    assert_eq!(
        (d.train.len(), d.val.len(), d.test.len()),
        (54_000, 6_000, 10_000)
    );
    assert_eq!((d.train.height, d.train.width), (28, 28));
    assert_eq!(d.classes[9], "Ankle boot");
    // Fashion-MNIST is balanced: 6,000 images per class, 600 of each held out.
    for c in 0..10u8 {
        assert_eq!(d.val.labels.iter().filter(|&&l| l == c).count(), 600);
    }
    // The well-known pixel statistics of Fashion-MNIST's training set (mean 0.2860, std 0.3530).
    assert!((d.norm.mean[0] - 0.2860).abs() < 0.002, "{:?}", d.norm);
    assert!((d.norm.std[0] - 0.3530).abs() < 0.002, "{:?}", d.norm);
}

#[test]
fn every_truncation_of_a_gzipped_idx_file_is_an_error() {
    let idx = candletop::data::idx::encode(&[3, 4, 4], &[7u8; 48]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &idx).unwrap();
    let gz = gz.finish().unwrap();
    let path = Path::new("x.gz");
    assert!(parse_maybe_gzip(path, &gz).is_ok());
    for n in 0..gz.len() {
        let r = parse_maybe_gzip(path, &gz[..n]);
        assert!(r.is_err(), "a {n}-byte prefix of {} parsed", gz.len());
        assert!(r.unwrap_err().to_string().starts_with("x.gz: "));
    }
}
