//! The rules' numbers, in one place, each with where it comes from.

/// The rules' numbers, in one place.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// The step rules look at window means. A window is a `windows_per_epoch`th of an epoch,
    /// at most `window` steps (and at least one step record): short runs are judged as soon
    /// as long ones, in their own time.
    pub window: u64,
    pub windows_per_epoch: u64,
    /// The first window closes after this many steps (or the window, if shorter).
    pub first_window: u64,
    /// Windows before the step rules speak on ordinary evidence (the first steps of any run
    /// are noisy). Evidence no noise makes (the `*_strong` bounds) is said at the first window.
    pub warmup_windows: usize,
    /// A spike: a step's loss above this times the mean of the previous `spike_span` steps
    /// (PyTorch Lightning's spike detection), and above `spike_floor` times the first loss
    /// (batch noise on a loss near 0 doubles it without meaning anything).
    pub spike_factor: f64,
    pub spike_span: usize,
    pub spike_floor: f64,
    /// LR too high: a window's mean loss over `diverge_factor` times the first step's (the
    /// loss went up from where it started), spikes in a window, or rising window means in the
    /// last `trend_windows`.
    pub diverge_factor: f64,
    /// A window's mean loss this far above the first step's and the class prior's: the
    /// updates threw the model off (what kills ReLU units; a model with nothing to learn
    /// settles on the prior and never climbs above it).
    pub climbed_factor: f64,
    pub spikes_too_many: usize,
    pub trend_windows: usize,
    pub rising_too_many: usize,
    /// ... and rising by more than this over them (the means of records of 20 steps wobble by
    /// 5% on a healthy run's loss near 0.35, and 3 of 4 rose by 15% on a healthy 9k run).
    pub rise_change: f64,
    /// LR too low: the loss moved less than this (relative) over two windows while the median
    /// update/weight ratio was below `ratio_low` (DL4J: about 1e-3 is healthy, below 1e-4 too
    /// small, above 1e-2 too large).
    pub flat_change: f64,
    pub ratio_low: f64,
    /// An update/weight ratio under this is a thousandth of a healthy one: with a loss flat
    /// since the first step (within `flat_start`, one batch's noise), the LR is too low from
    /// the first window on.
    pub ratio_tiny: f64,
    pub flat_start: f64,
    /// Vanishing: first-layer over last-layer gradient norm below this, and the first layer's
    /// norm below `vanishing_norm` (AUTOTRAINER: 1e-3 and 1e-4).
    pub vanishing_ratio: f64,
    pub vanishing_norm: f64,
    /// A first-layer gradient under this share of the last's vanishes from the first window.
    pub vanishing_ratio_strong: f64,
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
    /// Dead units: more than this share of a layer's units dead for a whole batch
    /// (DeepDiagnosis: 0.7; a healthy ReLU layer without batch norm can pass half).
    pub dead_share: f64,
    /// ... and this much more than at the first measurement (they died in training). From
    /// `dead_whole` (nearly the whole layer) it is a warning even while the loss falls.
    pub dead_growth: f64,
    pub dead_whole: f64,
    /// Saturation: more than this share of a layer's inputs outside [-5, 5], or of its
    /// sigmoid/tanh outputs within 1% of a bound (DeepDiagnosis: 0.5).
    pub saturated_share: f64,
    /// The max norm the clipping remedy sets.
    pub clip_to: f64,
    /// Labels: training accuracy this far below the (clean) validation accuracy, with the
    /// training loss `noisy_loss_factor` times the validation loss or more, is noise in the
    /// training labels; a loss that stays within `stuck_loss` of the first while the
    /// validation accuracy is at chance (under `chance_factor`/classes) is labels that do
    /// not match the images.
    pub noisy_gap: f64,
    pub noisy_loss_factor: f64,
    pub stuck_loss: f64,
    pub chance_factor: f64,
    /// ... and the validation loss within this share of the class prior's loss, or above it
    /// (a one-unit model that learns a little is 1-2% below it after 3 epochs).
    pub prior_margin: f64,
    /// Inputs: a channel's mean beyond this many standard units, or a std outside this
    /// range, is unnormalised (normalised inputs have 0 and 1).
    pub input_mean_max: f64,
    pub input_std_range: (f64, f64),
    /// Regularisation: dropout from this, or weight decay that alone would shrink the
    /// weights by this share an epoch, is heavy; heavy regularisation with the training
    /// loss above the validation loss and the training accuracy under `underfit_acc` (or
    /// below validation) holds the model back.
    pub heavy_dropout: f64,
    pub heavy_decay: f64,
    /// Weight decay is most of every update when it alone moves the weights by this share a
    /// step while the median update/weight ratio is `ratio_high` or more (DL4J: above 1e-2
    /// is too large).
    pub decay_step: f64,
    pub ratio_high: f64,
    /// Exploding: the first layer's gradient norm must be at least this (a tiny last layer,
    /// e.g. a one-unit hidden layer, makes any ratio large).
    pub exploding_floor: f64,
    /// A class far behind is a warning when its accuracy gained less than this over the last
    /// `weak_epochs` epochs, behind all the while.
    pub weak_gain: f64,
    pub weak_epochs: usize,
    /// Two classes the model cannot tell apart: at least `twin_mass` of each one's validation
    /// images predicted as one of the two, and each of the two predicted for the other's
    /// images within `twin_separation` of as often as for its own (a pair of labels on the
    /// same images splits them at random: 0 apart; Fashion-MNIST's shirt and T-shirt, the
    /// closest healthy pair, are 0.6 apart after an epoch).
    pub twin_mass: f64,
    pub twin_separation: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            window: 50,
            windows_per_epoch: 16,
            first_window: 16,
            warmup_windows: 1,
            diverge_factor: 1.5,
            climbed_factor: 1.05,
            spike_factor: 2.0,
            spike_span: 10,
            spike_floor: 0.5,
            spikes_too_many: 3,
            trend_windows: 4,
            rising_too_many: 3,
            rise_change: 0.25,
            flat_change: 0.01,
            ratio_low: 1e-4,
            ratio_tiny: 1e-6,
            flat_start: 0.05,
            vanishing_ratio: 1e-3,
            vanishing_norm: 1e-4,
            vanishing_ratio_strong: 1e-6,
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
            dead_share: 0.7,
            dead_growth: 0.25,
            dead_whole: 0.9,
            saturated_share: 0.5,
            clip_to: 1.0,
            noisy_gap: 0.15,
            noisy_loss_factor: 1.2,
            stuck_loss: 0.05,
            chance_factor: 1.5,
            prior_margin: 0.005,
            input_mean_max: 3.0,
            input_std_range: (0.2, 5.0),
            heavy_dropout: 0.5,
            heavy_decay: 0.2,
            decay_step: 1e-2,
            ratio_high: 1e-2,
            exploding_floor: 1.0,
            weak_gain: 0.02,
            weak_epochs: 3,
            twin_mass: 0.8,
            twin_separation: 0.2,
        }
    }
}
