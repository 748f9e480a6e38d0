//! The rules' numbers, in one place, each with where it comes from.

/// The rules' numbers, in one place.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Steps per window: the step rules look at window means.
    pub window: u64,
    /// Windows before the step rules speak (the first steps of any run are noisy).
    pub warmup_windows: usize,
    /// A spike: a step's loss above this times the mean of the previous `spike_span` steps
    /// (PyTorch Lightning's spike detection).
    pub spike_factor: f64,
    pub spike_span: usize,
    /// LR too high: a window's mean loss over `diverge_factor` times the first step's (the
    /// loss went up from where it started), spikes in a window, or rising window means in the
    /// last `trend_windows`.
    pub diverge_factor: f64,
    pub spikes_too_many: usize,
    pub trend_windows: usize,
    pub rising_too_many: usize,
    /// LR too low: the loss moved less than this (relative) over two windows while the median
    /// update/weight ratio was below `ratio_low` (DL4J: about 1e-3 is healthy, below 1e-4 too
    /// small, above 1e-2 too large).
    pub flat_change: f64,
    pub ratio_low: f64,
    /// Vanishing: first-layer over last-layer gradient norm below this, and the first layer's
    /// norm below `vanishing_norm` (AUTOTRAINER: 1e-3 and 1e-4).
    pub vanishing_ratio: f64,
    pub vanishing_norm: f64,
    /// Exploding: that ratio above this (AUTOTRAINER: 70), or any layer's norm above
    /// `exploding_norm`.
    pub exploding_ratio: f64,
    pub exploding_norm: f64,
    /// Plateau: epochs without a better validation accuracy.
    pub plateau_epochs: usize,
    /// Overfitting: train minus validation accuracy above `gap_low` while train accuracy is
    /// below 90%, above `gap_high` after (AUTOTRAINER), with the validation loss above its best.
    pub gap_low: f64,
    pub gap_high: f64,
    /// Underfitting: after this many epochs, train and validation accuracy below `underfit_acc`
    /// and train accuracy gaining less than `underfit_gain` per epoch.
    pub underfit_epochs: usize,
    pub underfit_acc: f64,
    pub underfit_gain: f64,
    /// Class imbalance: largest over smallest training class, or a class this far below the
    /// mean validation accuracy.
    pub imbalance_ratio: f64,
    pub class_gap: f64,
    /// Batch norm needs batches of at least this many images for its statistics.
    pub bn_min_batch: usize,
    /// Initial loss: outside these multiples of ln(classes), the output layer or the labels are
    /// suspect.
    pub initial_loss_range: (f64, f64),
    /// Improving: the loss fell by more than this (relative) over the last two windows.
    pub improving_change: f64,
    /// Dead units: more than this share of a layer's units dead for a whole batch (the issue's
    /// "more than half"; DeepDiagnosis uses 0.7).
    pub dead_share: f64,
    /// Saturation: more than this share of a layer's inputs outside [-5, 5], or of its
    /// sigmoid/tanh outputs within 1% of a bound (DeepDiagnosis: 0.5).
    pub saturated_share: f64,
    /// The max norm the clipping remedy sets.
    pub clip_to: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            window: 50,
            warmup_windows: 2,
            diverge_factor: 1.5,
            spike_factor: 2.0,
            spike_span: 10,
            spikes_too_many: 3,
            trend_windows: 4,
            rising_too_many: 3,
            flat_change: 0.01,
            ratio_low: 1e-4,
            vanishing_ratio: 1e-3,
            vanishing_norm: 1e-4,
            exploding_ratio: 70.0,
            exploding_norm: 1e2,
            plateau_epochs: 3,
            gap_low: 0.10,
            gap_high: 0.07,
            underfit_epochs: 3,
            underfit_acc: 0.6,
            underfit_gain: 0.01,
            imbalance_ratio: 3.0,
            class_gap: 0.25,
            bn_min_batch: 8,
            initial_loss_range: (0.5, 2.0),
            improving_change: 0.02,
            dead_share: 0.5,
            saturated_share: 0.5,
            clip_to: 1.0,
        }
    }
}
