//! What the doctor knows of a run before it starts, the run's live switches, and the
//! restarts a finding can suggest for its model.

use crate::model::{Activation, Arch};
use crate::protocol::{Remedy, RunInfo, Setting};

/// What the doctor knows of the run before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Patient {
    pub classes: Vec<String>,
    /// Parameter names, in the order of the per-layer vectors of a step.
    pub layers: Vec<String>,
    pub train_counts: Vec<usize>,
    pub batch_size: usize,
    /// The model's settings, for the restart remedies.
    pub arch: String,
    pub activation: Activation,
    pub batch_norm: bool,
}

impl Patient {
    /// What a run's start says of it, with the model's settings.
    pub fn of(info: &RunInfo, arch: &str, activation: Activation, batch_norm: bool) -> Self {
        Self {
            classes: info.classes.clone(),
            layers: info.layers.clone(),
            train_counts: info.data_facts.train_counts.clone(),
            batch_size: info.batch_size,
            arch: arch.into(),
            activation,
            batch_norm,
        }
    }
}

/// The architecture with every conv and hidden layer twice as wide (at most 1024), or None when
/// it is that wide already or does not parse.
pub fn wider(arch: &str) -> Option<String> {
    let mut a: Arch = arch.parse().ok()?;
    let before = a.to_string();
    for c in &mut a.convs {
        c.out_channels = (c.out_channels * 2).min(1024);
    }
    for h in &mut a.hidden {
        *h = (*h * 2).min(1024);
    }
    let after = a.to_string();
    (after != before).then_some(after)
}

/// The restart that answers vanishing gradients and saturation: ReLU and batch norm, unless
/// the model has them already.
pub fn relu_and_batch_norm(p: &Patient) -> Option<Remedy> {
    let mut s = Vec::new();
    if !matches!(p.activation, Activation::Relu | Activation::LeakyRelu) {
        s.push(Setting::new("activation", "relu"));
    }
    if !p.batch_norm {
        s.push(Setting::new("batch_norm", true));
    }
    (!s.is_empty()).then_some(Remedy::Restart(s))
}

/// The run's live switches, as far as the remedies go.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Switches {
    pub augmenting: bool,
    pub class_weights: bool,
    pub clipping: bool,
}
