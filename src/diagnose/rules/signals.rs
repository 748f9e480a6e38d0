//! What a rule is, and what it reads: the run so far as the doctor keeps it.

use std::collections::BTreeMap;

use crate::diagnose::window::Window;
use crate::diagnose::{Patient, Switches, Thresholds};
use crate::protocol::{EpochMetrics, Finding, FindingKind, LayerActivations, Remedy, Severity};

/// When a rule looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Before the first step: what the data and the model are.
    Start,
    /// When a window of steps closes.
    Window,
    /// At the end of an epoch.
    Epoch,
    /// When the activations were measured.
    Activations,
}

/// What a rule reads: the run so far, as the doctor keeps it.
pub struct Signals<'a> {
    /// What this look is for.
    pub watch: Watch,
    pub th: &'a Thresholds,
    pub patient: &'a Patient,
    /// The newest closed windows of steps, the newest last, and how many closed in all.
    pub windows: &'a [Window],
    pub closed: usize,
    /// The first window with healthy updates and gradients, if any.
    pub could_learn: Option<Window>,
    /// The first window with too large updates (with SGD, a ratio of `ratio_high` or more) or
    /// a loss `climbed_factor` above the first step's and the prior's, if any: what kills
    /// ReLU units.
    pub shaken: Option<Window>,
    /// The lowest window mean loss so far.
    pub lowest_loss: Option<f64>,
    /// The first step's loss.
    pub first_loss: Option<f64>,
    /// Finished epochs, the newest last.
    pub epochs: &'a [EpochMetrics],
    /// The latest activation statistics (empty before the first measurement), and the first
    /// ones (units dead from the start are the architecture's, not a dying ReLU's).
    pub activations: &'a [LayerActivations],
    pub baseline: &'a [LayerActivations],
    /// Whether the run is getting better (the loss falls, or validation accuracy rises).
    pub improving: bool,
    /// The findings in force before this look: for hysteresis, and for a rule that defers to
    /// another.
    pub active: &'a BTreeMap<FindingKind, Finding>,
}

impl Signals<'_> {
    pub fn class(&self, c: usize) -> &str {
        self.patient.classes.get(c).map_or("?", String::as_str)
    }

    /// The newest window, once the first noisy windows of the run are past.
    pub fn past_warm_up(&self) -> Option<Window> {
        (self.closed > self.th.warmup_windows)
            .then(|| self.windows.last().copied())
            .flatten()
    }

    /// The loss of a model that has learnt nothing from the images (`Patient::prior_loss`).
    pub fn prior_loss(&self) -> f64 {
        self.patient.prior_loss()
    }

    /// Nothing learnt though the model could learn: the loss never left the class prior's
    /// (within `stuck_loss`), some window had healthy updates and gradients, and none had too
    /// large ones. Labels that do not match the images look like this.
    pub fn on_prior(&self) -> bool {
        let floor = (1.0 - self.th.stuck_loss) * self.prior_loss();
        self.could_learn.is_some()
            && self.shaken.is_none()
            && self.lowest_loss.is_some_and(|l| l > floor)
    }

    /// On the prior with the labels not judged yet (that takes two epochs) or judged wrong:
    /// dead units, vanishing gradients and tiny updates may follow from the labels.
    pub fn labels_in_doubt(&self) -> bool {
        self.on_prior()
            && (self.epochs.len() < 2 || self.active.contains_key(&FindingKind::LabelNoise))
    }

    /// The newest window, warm-up or not (for evidence no noise makes).
    pub fn newest(&self) -> Option<Window> {
        self.windows.last().copied()
    }
}

/// What a rule finds: the evidence (numbers) and the advice.
pub type Found = (String, String);

/// One finding's rule.
pub trait Rule: Sync {
    fn kind(&self) -> FindingKind;
    /// When it looks.
    fn watches(&self) -> &'static [Watch];
    /// What it finds now, if anything.
    fn check(&self, s: &Signals) -> Option<Found>;
    /// How much what it found matters: by default a warning only while the run is not
    /// improving (a run that gets better despite it may be left alone).
    fn severity(&self, s: &Signals) -> Severity {
        if s.improving {
            Severity::Info
        } else {
            Severity::Warning
        }
    }
    /// The live change that answers it (not offered when the run has it already), or a
    /// restart's config.
    fn remedy(&self, _patient: &Patient, _switches: Switches, _th: &Thresholds) -> Option<Remedy> {
        None
    }
}

/// The layer where `key` is largest, with its value.
pub(super) fn worst(
    layers: &[LayerActivations],
    key: impl Fn(&LayerActivations) -> Option<f64>,
) -> Option<(&LayerActivations, f64)> {
    layers
        .iter()
        .filter_map(|l| key(l).map(|v| (l, v)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// The class with the lowest validation accuracy in the latest epoch.
pub(super) struct Lag {
    pub low: f64,
    pub mean: f64,
    pub evidence: String,
}

pub(super) fn weakest(s: &Signals) -> Option<Lag> {
    let acc = &s.epochs.last()?.val_class_accuracy;
    if acc.is_empty() {
        return None;
    }
    let mean = acc.iter().sum::<f64>() / acc.len() as f64;
    let (worst, &low) = acc.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1))?;
    let count = s.patient.train_counts.get(worst).copied().unwrap_or(0);
    let taken = s
        .epochs
        .last()?
        .val_confusion
        .get(worst)
        .filter(|c| c.share > 0.0 && c.class != worst)
        .map(|c| {
            format!(
                "; its images are most often taken for {} ({:.0}%)",
                s.class(c.class),
                100.0 * c.share
            )
        })
        .unwrap_or_default();
    Some(Lag {
        low,
        mean,
        evidence: format!(
            "class {} has {:.1}% validation accuracy against a mean of {:.1}% ({count} training images){taken}",
            s.class(worst),
            100.0 * low,
            100.0 * mean
        ),
    })
}
