//! The training doctor's vocabulary: what it finds, how bad, the evidence, the remedies it
//! offers and what became of them, and the activation statistics it reads.

use serde::{Deserialize, Serialize};

/// What the training doctor found: the causes of a stalled run it watches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    LrTooHigh,
    LrTooLow,
    Plateau,
    Overfitting,
    Underfitting,
    VanishingGradients,
    ExplodingGradients,
    ClassImbalance,
    /// A class far below the others in validation accuracy, though it has as many images.
    WeakClass,
    SmallBatchNorm,
    InitialLoss,
    /// Most units of a layer put out zero for a whole batch (ReLU).
    DeadUnits,
    /// Most of a layer's inputs sit where its activation is flat (sigmoid, tanh).
    SaturatedActivations,
    /// Training labels that are often wrong, or do not match the images at all.
    LabelNoise,
    /// Inputs far from zero mean and unit variance.
    UnnormalisedInput,
    /// Weight decay or dropout that holds the training loss up.
    TooMuchRegularisation,
}

impl FindingKind {
    /// As a person reads it in a log line.
    pub fn title(self) -> &'static str {
        match self {
            Self::LrTooHigh => "learning rate too high",
            Self::LrTooLow => "learning rate too low",
            Self::Plateau => "plateau",
            Self::Overfitting => "overfitting",
            Self::Underfitting => "underfitting",
            Self::VanishingGradients => "vanishing gradients",
            Self::ExplodingGradients => "exploding gradients",
            Self::ClassImbalance => "class imbalance",
            Self::WeakClass => "a class far behind",
            Self::SmallBatchNorm => "batch norm on small batches",
            Self::InitialLoss => "initial loss off",
            Self::DeadUnits => "dead units",
            Self::SaturatedActivations => "saturated activations",
            Self::LabelNoise => "noisy or mismatched labels",
            Self::UnnormalisedInput => "unnormalised input",
            Self::TooMuchRegularisation => "too much regularisation",
        }
    }

    /// A symptom: what a cause (a bad LR, gradients, units, labels, inputs, regularisation)
    /// shows as, whose own advice is wrong while that cause is in force.
    pub fn is_symptom(self) -> bool {
        matches!(self, Self::Underfitting | Self::Plateau | Self::WeakClass)
    }

    /// What a model settling on the class prior shows when nothing in the images predicts
    /// the labels: units die, gradients vanish, updates shrink. While the labels are in doubt
    /// these are notes.
    pub fn follows_from_the_labels(self) -> bool {
        matches!(
            self,
            Self::DeadUnits | Self::VanishingGradients | Self::LrTooLow
        )
    }

    /// A cause that holds a model at chance by itself: while it is a warning, a model at
    /// chance says nothing of the labels.
    pub fn holds_at_chance(self) -> bool {
        matches!(
            self,
            Self::LrTooHigh
                | Self::LrTooLow
                | Self::ExplodingGradients
                | Self::SaturatedActivations
        )
    }

    /// A cause that explains the symptoms while it is in force.
    pub fn explains_symptoms(self) -> bool {
        matches!(
            self,
            Self::LrTooHigh
                | Self::LrTooLow
                | Self::VanishingGradients
                | Self::ExplodingGradients
                | Self::DeadUnits
                | Self::SaturatedActivations
                | Self::LabelNoise
                | Self::UnnormalisedInput
                | Self::TooMuchRegularisation
                | Self::SmallBatchNorm
        )
    }
}

/// How much a finding matters: a warning only while the run is also not improving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
}

impl Severity {
    /// As a log line starts: "warning" or "note".
    pub fn word(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Info => "note",
        }
    }
}

/// One finding: what, how bad, the numbers behind it, and what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    pub evidence: String,
    pub action: String,
    /// The change the doctor can make live (the key `r`), when there is one; the others need
    /// a restart or the user's judgement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<Remedy>,
}

/// A change to a live run that a finding suggests, which can be taken back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "remedy", content = "value", rename_all = "snake_case")]
pub enum Remedy {
    /// Multiply the learning rate by this factor.
    ScaleLr(f64),
    /// Augmentation on (true) or off.
    Augment(bool),
    /// Balanced class weights on (true) or off.
    ClassWeights(bool),
    /// Clip the gradients' global norm to this (0: off).
    ClipGradNorm(f64),
    /// Not live: write a config file for a new run with these settings changed (config keys
    /// and values as on the command line), to start with `candletop --config FILE`.
    Restart(Vec<Setting>),
}

/// One setting of a suggested config: its key and its value as the command line gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub key: String,
    pub value: String,
}

/// The settings a what-if branch can change, as `key=value`.
pub const BRANCH_KEYS: &[&str] = &[
    "lr",
    "schedule",
    "weight_decay",
    "clip_grad_norm",
    "label_smoothing",
    "augment",
    "class_weights",
    "dropout",
];

impl Setting {
    /// `key=value[,key=value...]`, as `--branch` and the `b` menu take a change. A part that
    /// is not a setting of its own goes on the value before it, so that specs with commas
    /// stay whole (`schedule=multistep:5,7`, `augment=pad-crop:4,flip`).
    pub fn parse_change(text: &str) -> Result<Vec<Setting>, String> {
        let mut out: Vec<Setting> = Vec::new();
        for part in text.split(',') {
            let pair = part
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .filter(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                });
            let spec = out
                .last()
                .is_some_and(|s| s.key == "schedule" || s.key == "augment");
            match (pair, out.last_mut()) {
                (Some((k, v)), _) if !v.is_empty() && (!spec || BRANCH_KEYS.contains(&k)) => {
                    out.push(Setting::new(k, v))
                }
                (_, Some(prev)) if spec && !part.trim().is_empty() => {
                    prev.value = format!("{},{}", prev.value, part.trim())
                }
                _ => {
                    return Err(format!(
                        "'{part}' is not key=value (e.g. lr=0.05,weight_decay=0)"
                    ))
                }
            }
        }
        Ok(out)
    }

    /// A change as `key=value`, several joined by commas (as `--branch` takes it).
    pub fn describe_change(change: &[Setting]) -> String {
        let parts: Vec<String> = change
            .iter()
            .map(|s| format!("{}={}", s.key, s.value))
            .collect();
        if parts.is_empty() {
            "no change".into()
        } else {
            parts.join(",")
        }
    }

    pub fn new(key: &str, value: impl ToString) -> Self {
        Self {
            key: key.into(),
            value: value.to_string(),
        }
    }
}

impl Remedy {
    /// As a person reads it: "cut the LR x0.1".
    pub fn describe(&self) -> String {
        match self {
            Self::ScaleLr(f) if *f < 1.0 => format!("cut the LR x{f}"),
            Self::ScaleLr(f) => format!("raise the LR x{f}"),
            Self::Augment(true) => "turn augmentation on".into(),
            Self::Augment(false) => "turn augmentation off".into(),
            Self::ClassWeights(true) => "weight the loss by class".into(),
            Self::ClassWeights(false) => "stop weighting the loss by class".into(),
            Self::ClipGradNorm(m) if *m > 0.0 => format!("clip gradients to norm {m}"),
            Self::ClipGradNorm(_) => "stop clipping gradients".into(),
            Self::Restart(settings) => format!(
                "write a config to restart with {}",
                settings
                    .iter()
                    .map(|s| format!("{} {}", s.key, s.value))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The remedy as a branch's change (`key=value` settings), for a run whose LR is now
    /// `lr`; None for a restart's, which a live branch cannot try.
    pub fn as_change(&self, lr: f64) -> Option<Vec<Setting>> {
        let on_off = |on: bool| if on { "on" } else { "off" };
        let s = match self {
            Self::ScaleLr(f) => Setting::new("lr", crate::format::sci(lr * f)),
            Self::Augment(on) => Setting::new("augment", on_off(*on)),
            Self::ClassWeights(on) => {
                Setting::new("class_weights", if *on { "balanced" } else { "none" })
            }
            Self::ClipGradNorm(m) => Setting::new("clip_grad_norm", m),
            Self::Restart(_) => return None,
        };
        Some(vec![s])
    }
}

/// Steps after a remedy during which it can be undone; at the end the doctor says whether it
/// helped (the loss of these steps against the loss of as many steps before).
pub const REMEDY_TRIAL_STEPS: u64 = 200;

/// Steps between two measurements of the activations (the doctor's dead-unit and saturation
/// rules read them).
pub const ACTIVATION_EVERY: u64 = 100;

/// At the first step, and in the first `ACTIVATION_EARLY_UNTIL` steps every `ACTIVATION_EARLY`
/// steps, they are measured too: units that die or saturate early are found early.
pub const ACTIVATION_EARLY: u64 = 20;
pub const ACTIVATION_EARLY_UNTIL: u64 = 80;

/// Whether a remedy helped: the mean training loss of the trial against the same number of
/// steps before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The loss fell by more than 2%.
    Helped,
    /// Within 2%.
    NoChange,
    /// The loss rose by more than 2%.
    Worse,
}

impl Verdict {
    pub fn of(before: f64, after: f64) -> Self {
        let change = (after - before) / before.abs().max(1e-12);
        if !after.is_finite() || change > 0.02 {
            Self::Worse
        } else if change < -0.02 {
            Self::Helped
        } else {
            Self::NoChange
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Self::Helped => "helped",
            Self::NoChange => "made no difference",
            Self::Worse => "made it worse",
        }
    }
}

/// What became of a remedy: a line of the run's history (metrics.jsonl and the checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemedyRecord {
    /// The step after which it was applied.
    pub step: u64,
    pub remedy: Remedy,
    /// The finding it answered.
    pub finding: FindingKind,
    /// The step after which it was undone, if it was.
    #[serde(default)]
    pub undone_at: Option<u64>,
    /// Mean loss before and during the trial, and the verdict, once the trial is over.
    #[serde(default)]
    pub verdict: Option<(f64, f64, Verdict)>,
}

/// Activation statistics of one layer (a conv block or a hidden linear layer), measured on
/// one training batch in train mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerActivations {
    /// The layer's parameter prefix ("features.0"): its weight is `<layer>.weight`.
    pub layer: String,
    /// Of the activation's output.
    pub mean: f64,
    pub std: f64,
    /// Share of units (channel x position, or feature) whose output is zero for the whole
    /// batch (ReLU), or whose input is negative for all of it (leaky ReLU, ELU); None for
    /// sigmoid and tanh, which have no dead zone.
    pub dead: Option<f64>,
    /// Share of outputs within 1% of a sigmoid/tanh bound, or of ELU inputs below -5; None for
    /// (leaky) ReLU, which do not saturate. The doctor and the gradient panel take the larger
    /// of this and `outside_5` for the activations that saturate.
    pub saturated: Option<f64>,
    /// Share of inputs (pre-activations) outside [-5, 5] (DeepDiagnosis).
    pub outside_5: f64,
    /// Share of exactly-zero entries of the layer's weight gradient at that step.
    pub zero_grad: f64,
}
