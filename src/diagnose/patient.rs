//! What the doctor knows of a run before it starts, the run's live switches, and the
//! restarts a finding can suggest for its model.

use crate::config::RunConfig;
use crate::model::{Activation, Arch};
use crate::optim::OptimizerKind;
use crate::protocol::{Remedy, RunInfo, Setting};

/// What the doctor knows of the run before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Patient {
    pub classes: Vec<String>,
    /// Parameter names, in the order of the per-layer vectors of a step.
    pub layers: Vec<String>,
    pub train_counts: Vec<usize>,
    pub batch_size: usize,
    pub steps_per_epoch: usize,
    /// The model's settings, for the restart remedies.
    pub arch: String,
    pub activation: Activation,
    pub batch_norm: bool,
    /// The regularisation it trains with, and the LR and optimizer it starts with.
    pub dropout: f64,
    pub weight_decay: f64,
    pub lr: f64,
    pub optimizer: OptimizerKind,
    /// Each channel's mean and std of the inputs the model gets (empty: not known).
    pub input_mean: Vec<f64>,
    pub input_std: Vec<f64>,
}

impl Patient {
    /// What a run's start says of it, with the run's settings.
    pub fn of(info: &RunInfo, cfg: &RunConfig) -> Self {
        Self {
            classes: info.classes.clone(),
            layers: info.layers.clone(),
            train_counts: info.data_facts.train_counts.clone(),
            batch_size: info.batch_size,
            steps_per_epoch: info.steps_per_epoch,
            arch: cfg.arch.clone(),
            activation: cfg.activation,
            batch_norm: cfg.batch_norm,
            dropout: as_written(cfg.dropout),
            weight_decay: as_written(cfg.optimizer.hyper.weight_decay),
            lr: cfg.lr.get(),
            optimizer: cfg.optimizer.kind,
            input_mean: info.data_facts.input_mean.clone(),
            input_std: info.data_facts.input_std.clone(),
        }
    }

    /// The share by which weight decay alone shrinks the weights a step at the starting LR
    /// (AdamW's decoupled decay and SGD's L2 alike; Adam's L2 goes through its scaling, so it
    /// is left out).
    /// The loss of a model that has learnt nothing from the images: the entropy of the
    /// training labels' class shares (ln(classes) when they are balanced).
    pub fn prior_loss(&self) -> f64 {
        let total = self.train_counts.iter().sum::<usize>() as f64;
        if total == 0.0 {
            return (self.classes.len().max(2) as f64).ln();
        }
        self.train_counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / total;
                -p * p.ln()
            })
            .sum()
    }

    /// Whether the update/weight ratio measures how far the LR pushes the weights: with SGD
    /// the update is the gradient times the LR. Adam scales each weight's step to about the
    /// LR whatever its gradient, so small weights (a narrow layer) show 1e-2 at the default
    /// LR while a vanishing gradient gives them nothing to learn from.
    pub fn ratio_tells_the_lr(&self) -> bool {
        self.optimizer == OptimizerKind::Sgd
    }

    pub fn decay_per_step(&self) -> f64 {
        match self.optimizer {
            OptimizerKind::Adamw | OptimizerKind::Sgd => self.lr * self.weight_decay,
            OptimizerKind::Adam => 0.0,
        }
    }

    /// The same over an epoch.
    pub fn decay_per_epoch(&self) -> f64 {
        self.decay_per_step() * self.steps_per_epoch as f64
    }
}

/// An f32 setting as the user wrote it (0.9, not 0.8999999761581421).
fn as_written(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
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
