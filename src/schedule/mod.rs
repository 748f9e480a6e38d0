//! Learning-rate schedules: the compact spec (`--schedule`), what each kind computes (PyTorch's
//! formulas), and a schedule in use (`Schedule`: the spec, where it started, the user's changes
//! and reduce-on-plateau's state). Plain data and arithmetic, so that the trainer follows a
//! schedule and a watcher can draw its plan, or preview another one, with the same code.
//!
//! ```text
//! SPEC   = [warmup=STEPS[:START]+]KIND
//! KIND   = constant
//!        | step:EVERY[:GAMMA]              x GAMMA (0.1) after every EVERY epochs    StepLR
//!        | multistep:E1,E2,..[:GAMMA]      x GAMMA (0.1) after epochs E1, E2, ...    MultiStepLR
//!        | exp:GAMMA                       x GAMMA after every epoch                  ExponentialLR
//!        | cosine[:min=LR][,restart=EPOCHS][,mult=N]                                 CosineAnnealingLR,
//!                                          over the schedule's steps to min (0);     ...WarmRestarts
//!                                          with restart: periods of EPOCHS, each N (1) times longer
//!        | onecycle[:max=LR][,pct=0.3][,div=25][,final_div=1e4][,anneal=cos|linear]
//!                  [,three_phase][,momentum=0.85-0.95|off]                           OneCycleLR
//!        | plateau[:monitor=val_loss|val_acc][,mode=min|max][,factor=0.1][,patience=10]
//!                  [,threshold=1e-4][,threshold_mode=rel|abs][,cooldown=0][,min_lr=0][,eps=1e-8]
//!                                                                                    ReduceLROnPlateau
//! ```
//!
//! Units, as PyTorch's schedulers are usually stepped: `step`, `multistep` and `exp` change the
//! LR at the end of an epoch; `cosine` and `onecycle` every step (cosine's `restart` period is
//! in epochs, fractions of an epoch counting); `warmup` counts steps, ramping the LR linearly
//! from START (0.01) times its first value, after which the schedule begins (PyTorch's
//! `SequentialLR` of `LinearLR` and the schedule); `plateau` decides at the end of each epoch
//! from the validation metric.
//!
//! Each kind is a unit in `kinds/` (its values, parser, formula and form); this file has what
//! they share: the warm-up, the spec's text, and the schedule in use.

mod kinds;
mod lr;
mod spec;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use kinds::{
    Anneal, At, Constant, Cosine, Curve, Def, Exponential, FormArgs, Kind, Mode, Monitor,
    MultiStep, OneCycle, Plateau, PlateauCut, PlateauState, Poly, Step, ThresholdMode, KINDS,
};
pub use lr::LearningRate;
pub use spec::SpecError;

use spec::{count, factor, number};

/// `--help` for `--schedule`: the grammar, each kind's syntax and what it does, examples.
pub fn help() -> String {
    const COLUMN: usize = 28;
    let mut out = String::from(
        "How the learning rate moves over the run [default: constant]\n\n  \
         SPEC = [warmup=STEPS[:START]+]KIND, KIND one of:\n",
    );
    let mut entry = |syntax: &[&str], about: &[&str]| {
        let fits = syntax.len() == 1 && syntax[0].len() + 2 < COLUMN - 2;
        for line in if fits { &[][..] } else { syntax } {
            out += &format!("  {line}\n");
        }
        for (i, line) in about.iter().enumerate() {
            let lead = if fits && i == 0 { syntax[0] } else { "" };
            out += &format!("  {lead:<w$}{line}\n", w = COLUMN - 2);
        }
    };
    for k in &KINDS {
        entry(k.def.syntax, k.def.about);
    }
    entry(
        &["warmup=STEPS[:START]+"],
        &[
            "first a linear ramp over STEPS steps from START (0.01) times the",
            "schedule's first LR (LinearLR, then the schedule: SequentialLR)",
        ],
    );
    out += "\nWarm-up counts steps; epochs are the run's.\nExamples:";
    let mut width = "Examples:".len();
    let examples = KINDS.iter().skip(1).map(|k| k.def.example);
    for example in examples.chain(["warmup=500+cosine"]) {
        if width + 2 + example.len() > 80 {
            out += "\n         ";
            width = 9;
        }
        out += &format!("  {example}");
        width += 2 + example.len();
    }
    out
}

/// A schedule as written: an optional linear warm-up, then one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScheduleSpec {
    pub warmup: Option<Warmup>,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warmup {
    pub steps: u64,
    /// The first step's LR as a fraction of the LR the schedule begins with.
    pub start: f64,
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        Self {
            warmup: None,
            kind: Kind::Constant(Constant),
        }
    }
}

impl FromStr for ScheduleSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        if let Some(problem) = crate::format::control_character(s.trim()) {
            return Err(SpecError::whole(problem).of(s));
        }
        parse(s.trim()).map_err(|e| e.of(s))
    }
}

fn parse(s: &str) -> Result<ScheduleSpec, SpecError> {
    if s.is_empty() {
        return Err(SpecError::whole(format!(
            "empty (kinds: {})",
            kinds::names()
        )));
    }
    let (warmup, rest) = match s.strip_prefix("warmup=") {
        Some(w) => {
            let (w, rest) = w.split_once('+').ok_or_else(|| {
                SpecError::at(s, "a warm-up comes before a schedule: warmup=STEPS+KIND")
            })?;
            (Some(warmup(&s[..w.len() + "warmup=".len()], w)?), rest)
        }
        None => (None, s),
    };
    let (name, args) = rest.split_once(':').unwrap_or((rest, ""));
    let kind = KINDS.iter().find(|k| k.def.name == name).ok_or_else(|| {
        SpecError::at(
            name,
            format!("unknown schedule (kinds: {})", kinds::names()),
        )
    })?;
    if let (Some(_), Some(why)) = (warmup, kind.def.no_warmup) {
        return Err(SpecError::at(s, why));
    }
    let kind = (kind.parse)(rest, args)?;
    Ok(ScheduleSpec { warmup, kind })
}

/// `STEPS[:START]`, written as `part`.
fn warmup(part: &str, w: &str) -> Result<Warmup, SpecError> {
    let (steps, start) = match w.split_once(':') {
        Some((n, f)) => (n, Some(f)),
        None => (w, None),
    };
    let steps = count(part, steps, "warm-up steps")?;
    if steps == 0 {
        return Err(SpecError::at(part, "the warm-up needs at least 1 step"));
    }
    let start = match start {
        Some(f) => factor(
            part,
            number(part, f, "warm-up start factor")?,
            "the start factor",
        )?,
        None => 0.01,
    };
    Ok(Warmup { steps, start })
}

impl fmt::Display for ScheduleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(w) = self.warmup {
            write!(f, "warmup={}", w.steps)?;
            if w.start != 0.01 {
                write!(f, ":{}", w.start)?;
            }
            write!(f, "+")?;
        }
        let curve = self.kind.curve();
        write!(f, "{}", curve.def().name)?;
        match curve.args() {
            args if args.is_empty() => Ok(()),
            args => write!(f, ":{args}"),
        }
    }
}

impl TryFrom<String> for ScheduleSpec {
    type Error = SpecError;
    fn try_from(s: String) -> Result<Self, SpecError> {
        s.parse()
    }
}

impl From<ScheduleSpec> for String {
    fn from(s: ScheduleSpec) -> String {
        s.to_string()
    }
}

impl ScheduleSpec {
    /// Checks the spec against a run of `epochs` epochs and `steps` steps from where the
    /// schedule begins.
    pub fn check(&self, epochs: usize, steps: u64) -> Result<(), SpecError> {
        let fail = |e: SpecError| Err(e.of(&self.to_string()));
        if let Some(w) = self.warmup {
            if w.steps >= steps {
                return fail(SpecError::whole(format!(
                    "the warm-up of {} steps is not shorter than the {steps} steps left",
                    w.steps
                )));
            }
        }
        self.kind.curve().check(epochs).or_else(fail)
    }

    /// The kind's name.
    pub fn name(&self) -> &'static str {
        self.kind.def().name
    }

    /// A few words: `cosine to 1e-5`, `warmup 500 + step x0.1/7ep`.
    pub fn describe(&self) -> String {
        let kind = self.kind.curve().describe();
        match self.warmup {
            Some(w) => format!("warmup {} + {kind}", w.steps),
            None => kind,
        }
    }
}

/// A schedule in use: what it is, where it began, and what has happened to it since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub spec: ScheduleSpec,
    /// The LR it is relative to (the run's `--lr`, or the LR in force when it began).
    pub base_lr: f64,
    /// It began before this step (the step numbers are the run's, from 1).
    pub start_step: u64,
    /// The run's last step: the horizon of cosine and one-cycle.
    pub total_steps: u64,
    /// Epoch boundaries: the run's epoch `epoch_at_origin` (0-based) began after step
    /// `epoch_origin`, and every epoch from there has `steps_per_epoch` steps.
    pub epoch_origin: u64,
    pub epoch_at_origin: u64,
    pub steps_per_epoch: u64,
    /// The run's epoch (0-based) in which the schedule proper (after any warm-up) began: epoch
    /// schedules count the epochs ended since.
    pub main_epoch: u64,
    /// The user's changes (`+`, `-`, `l`), multiplied: they move the whole curve from then on.
    pub scale: f64,
    pub plateau: Option<PlateauState>,
}

impl Schedule {
    /// `spec` beginning before step `start_step + 1`, relative to `base_lr`, in a run whose
    /// epoch `epoch_at_origin` began after step `epoch_origin`.
    pub fn new(
        spec: ScheduleSpec,
        base_lr: f64,
        start_step: u64,
        total_steps: u64,
        (epoch_origin, epoch_at_origin): (u64, u64),
        steps_per_epoch: u64,
    ) -> Self {
        let plateau = match &spec.kind {
            Kind::Plateau(_) => Some(PlateauState::default()),
            _ => None,
        };
        let mut s = Self {
            spec,
            base_lr,
            start_step,
            total_steps,
            epoch_origin,
            epoch_at_origin,
            steps_per_epoch: steps_per_epoch.max(1),
            main_epoch: 0,
            scale: 1.0,
            plateau,
        };
        s.main_epoch = s.epoch_of(s.main_begins());
        s
    }

    /// A constant LR over a run of `total_steps` steps of `steps_per_epoch` each.
    pub fn constant(lr: f64, total_steps: u64, steps_per_epoch: u64) -> Self {
        Self::new(
            ScheduleSpec::default(),
            lr,
            0,
            total_steps,
            (0, 0),
            steps_per_epoch,
        )
    }

    /// The run's epochs are counted anew: epoch `epoch_at_origin` began after step
    /// `epoch_origin`, with `steps_per_epoch` steps each (a run resumed with another batch
    /// size). What has passed keeps its epochs.
    pub fn reanchor(&mut self, epoch_origin: u64, epoch_at_origin: u64, steps_per_epoch: u64) {
        (self.epoch_origin, self.epoch_at_origin) = (epoch_origin, epoch_at_origin);
        self.steps_per_epoch = steps_per_epoch.max(1);
        if self.main_begins() > epoch_origin {
            self.main_epoch = self.epoch_of(self.main_begins());
        }
    }

    /// The first step of the schedule proper.
    fn main_begins(&self) -> u64 {
        self.start_step + 1 + self.warmup_steps()
    }

    /// The run's epoch index (0-based) of `step`.
    pub fn epoch_of(&self, step: u64) -> u64 {
        self.epoch_at_origin + step.saturating_sub(self.epoch_origin + 1) / self.steps_per_epoch
    }

    /// The warm-up's length in steps (0 without one).
    fn warmup_steps(&self) -> u64 {
        self.spec.warmup.map_or(0, |w| w.steps)
    }

    /// The LR of step `step` (1-based, the run's numbering).
    pub fn lr_at(&self, step: u64) -> f64 {
        let t = step.saturating_sub(self.start_step + 1);
        let w = self.warmup_steps();
        let lr = match self.spec.warmup {
            Some(wu) if t < w => {
                let ramp = wu.start + (1.0 - wu.start) * t as f64 / w as f64;
                self.base_lr * ramp
            }
            _ => self.spec.kind.curve().lr(&self.at(step)),
        };
        lr * self.scale
    }

    /// Where run step `step` is in the schedule proper (after any warm-up).
    fn at(&self, step: u64) -> At {
        let w = self.warmup_steps();
        At {
            base: self.base_lr,
            step: step.saturating_sub(self.start_step + 1).saturating_sub(w),
            horizon: self.total_steps.saturating_sub(self.start_step + w).max(1),
            epochs: self.epoch_of(step).saturating_sub(self.main_epoch),
            steps_per_epoch: self.steps_per_epoch,
            reduction: self.plateau.map_or(1.0, |p| p.reduction),
        }
    }

    /// The momentum (SGD) or Adam beta1 of `step`, when the schedule cycles it.
    pub fn momentum_at(&self, step: u64) -> Option<f64> {
        self.spec.kind.curve().momentum(&self.at(step))
    }

    /// The user sets the LR of the next step, `next`, to `lr`: the curve scales to pass there.
    /// Refused, leaving the schedule as it was, when the curve there is 0 or so small that no
    /// usable scale takes it to `lr`.
    pub fn rescale(&mut self, next: u64, lr: f64) -> Result<(), String> {
        let now = self.lr_at(next);
        let usable = |scale: f64| scale.is_normal() && scale > 0.0;
        // `lr / now` overflows when the curve is tiny; `scale / now` may not.
        let scale = Some(self.scale * (lr / now))
            .filter(|&s| usable(s))
            .or_else(|| Some(self.scale / now * lr).filter(|&s| usable(s)));
        match scale {
            Some(scale) if now > 0.0 && now.is_finite() => {
                self.scale = scale;
                // The product may miss `lr` by an ulp or two: nudge the scale until the LR of
                // `next` is the LR asked for, which is what the run announces.
                for _ in 0..4 {
                    let got = self.lr_at(next);
                    // The next float up or down (the scale is positive and normal).
                    let bits = self.scale.to_bits();
                    let nudged = match got.partial_cmp(&lr) {
                        Some(std::cmp::Ordering::Less) => f64::from_bits(bits + 1),
                        Some(std::cmp::Ordering::Greater) => f64::from_bits(bits - 1),
                        _ => break,
                    };
                    if !usable(nudged) {
                        break;
                    }
                    self.scale = nudged;
                }
                Ok(())
            }
            _ => Err(format!(
                "the schedule has brought the LR down to {now:.3e} here, too far to scale it to {lr:.3e}: choose a schedule (e) to go on"
            )),
        }
    }

    /// Reduce-on-plateau at the end of an epoch whose validation loss and accuracy are given;
    /// `next` is the first step of the next epoch. `Some` when the LR was cut.
    pub fn end_epoch(&mut self, next: u64, val_loss: f64, val_acc: f64) -> Option<PlateauCut> {
        let Kind::Plateau(p) = self.spec.kind else {
            return None;
        };
        let old = self.lr_at(next);
        let (bad_epochs, best) = p.end_epoch(self.plateau.as_mut()?, old, val_loss, val_acc)?;
        Some(PlateauCut {
            old,
            new: self.lr_at(next),
            bad_epochs,
            best,
            cooldown: p.cooldown,
        })
    }

    /// The planned LR from step `from` to the run's end, at most `points` of them.
    pub fn plan(&self, from: u64, points: usize) -> Vec<(u64, f64)> {
        let from = from.max(1);
        if from > self.total_steps || points == 0 {
            return Vec::new();
        }
        let span = self.total_steps - from;
        let stride = (span / points.max(1) as u64).max(1);
        let mut out: Vec<(u64, f64)> = (from..=self.total_steps)
            .step_by(stride as usize)
            .map(|s| (s, self.lr_at(s)))
            .collect();
        if out.last().map(|p| p.0) != Some(self.total_steps) {
            out.push((self.total_steps, self.lr_at(self.total_steps)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> ScheduleSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        s.parse::<ScheduleSpec>().unwrap_err().to_string()
    }

    #[test]
    fn specs_parse_and_print_back() {
        for s in [
            "constant",
            "step:7:0.1",
            "step:7",
            "step:every=3,gamma=0.5",
            "multistep:3,6,8:0.1",
            "multistep:8,3",
            "exp:0.9",
            "cosine",
            "cosine:min=1e-5",
            "cosine:restart=2,mult=2",
            "onecycle:max=0.01",
            "onecycle:max=0.01,pct=0.25,anneal=linear,three_phase,momentum=off",
            "plateau:patience=3,factor=0.5",
            "plateau:monitor=val_acc,threshold_mode=abs,cooldown=2",
            "warmup=500+cosine",
            "warmup=100:0.1+step:2:0.5",
        ] {
            let a = spec(s);
            let b = spec(&a.to_string());
            assert_eq!(a, b, "{s} -> {a}");
        }
        assert_eq!(
            spec("step:7"),
            ScheduleSpec {
                warmup: None,
                kind: Kind::Step(Step {
                    every: 7,
                    gamma: 0.1
                })
            }
        );
        assert_eq!(
            spec("multistep:8,3").kind,
            Kind::MultiStep(MultiStep {
                milestones: vec![3, 8],
                gamma: 0.1
            })
        );
        let Kind::Plateau(p) = spec("plateau:monitor=val_acc").kind else {
            panic!()
        };
        assert_eq!((p.mode, p.patience, p.factor), (Mode::Max, 10, 0.1));
    }

    #[test]
    fn every_kind_is_listed_once_and_reads_back_its_example() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.def.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS.len(), "a kind listed twice");
        for def in KINDS.map(|k| k.def) {
            let s = spec(def.example);
            assert_eq!(
                s.name(),
                def.name,
                "{}: parsed as another kind",
                def.example
            );
            assert_eq!(spec(&s.to_string()), s, "{} -> {s}", def.example);
            for (key, _) in s.kind.curve().form() {
                assert!(
                    def.form.iter().any(|(k, _)| *k == key),
                    "{}: the form has no field '{key}'",
                    def.name
                );
            }
        }
    }

    #[test]
    fn poly_follows_pytorchs_closed_form() {
        // PolynomialLR: base * (1 - min(t, T) / T)^power, t the steps taken so far.
        let s = Schedule::new(spec("poly:power=0.9"), 0.1, 0, 50, (0, 0), 10);
        for k in 1..=60u64 {
            let t = (k - 1).min(50) as f64;
            let want = 0.1 * (1.0 - t / 50.0).powf(0.9);
            assert!((s.lr_at(k) - want).abs() < 1e-15, "step {k}");
        }
        // After a warm-up, over what is left; down to the minimum.
        let s = Schedule::new(
            spec("warmup=10+poly:power=2,min=0.01"),
            0.1,
            0,
            50,
            (0, 0),
            10,
        );
        assert_eq!(s.lr_at(11), 0.1);
        assert!((s.lr_at(31) - (0.01 + 0.09 * 0.25)).abs() < 1e-15);
        assert!((s.lr_at(51) - 0.01).abs() < 1e-15);
        assert!(err("poly:power=0").contains("power must be above 0"));
    }

    #[test]
    fn errors_point_at_the_bad_part() {
        for (s, want) in [
            ("", "--schedule '': empty (kinds: constant"),
            (
                "cosin",
                "--schedule 'cosin': at 'cosin': unknown schedule (kinds:",
            ),
            ("step:7:x", "at 'step:7:x': 'x' is not a number (gamma)"),
            ("step:0", "EVERY must be at least 1 epoch"),
            ("step:7:1.5", "gamma must be in (0, 1]"),
            ("step:7:0.1:3", "at '3': one value too many"),
            (
                "cosine:min=-1",
                "at 'min=-1': the minimum LR cannot be negative",
            ),
            (
                "cosine:mni=1e-5",
                "at 'mni=1e-5': unknown parameter 'mni' (known: min, restart, mult)",
            ),
            ("onecycle:max=0", "at 'max=0': the peak LR must be above 0"),
            (
                "onecycle:max=1e308",
                "at 'max=1e308': the peak LR: '1e308' is too large to be a learning rate (the most is 1e6)",
            ),
            (
                "poly:min=1e-320",
                "at 'min=1e-320': the minimum LR: '1e-320' is too small to be a learning rate",
            ),
            (
                "onecycle:pct=1.5",
                "at 'pct=1.5': pct must be between 0 and 1",
            ),
            (
                "plateau:monitor=train_loss",
                "at 'monitor=train_loss': no metric 'train_loss' to monitor (val_loss or val_acc)",
            ),
            ("plateau:factor=2", "factor must be between 0 and 1"),
            (
                "warmup=abc+cosine",
                "at 'warmup=abc': 'abc' is not a whole number (warm-up steps)",
            ),
            ("warmup=500", "a warm-up comes before a schedule"),
            ("warmup=10+onecycle", "onecycle warms up by itself"),
            ("multistep:3,x", "at 'x': 'x' is not a whole number (epoch)"),
        ] {
            let e = err(s);
            assert!(e.contains(want), "{s:?}: {e}");
            assert!(e.starts_with(&format!("--schedule '{s}'")), "{e}");
        }
    }

    #[test]
    fn the_run_limits_milestones_and_warm_up() {
        assert!(spec("multistep:3,6").check(10, 1000).is_ok());
        let e = spec("multistep:3,12")
            .check(10, 1000)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("milestone 12 is at or after the run's last epoch (10 epochs)"),
            "{e}"
        );
        let e = spec("warmup=2000+cosine")
            .check(10, 1000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not shorter than the 1000 steps left"), "{e}");
    }

    #[test]
    fn any_text_parses_or_is_refused_without_panicking() {
        let alphabet: Vec<char> = "stepmulicoyxnadwr:=,+.-0123456789_ ".chars().collect();
        let mut rng = crate::rng::Rng::new(5);
        for _ in 0..20_000 {
            let n = rng.below(40) as usize;
            let s: String = (0..n)
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect();
            if let Ok(spec) = s.parse::<ScheduleSpec>() {
                let _ = spec.check(5, 100);
                let sched = Schedule::new(spec, 1e-3, 0, 100, (0, 0), 10);
                for step in [1, 50, 100, 101] {
                    let lr = sched.lr_at(step);
                    assert!(lr.is_finite() && lr >= 0.0, "{s}: {lr}");
                }
            }
        }
    }

    #[test]
    fn a_change_by_hand_moves_the_curve_from_then_on() {
        let mut s = Schedule::new(spec("cosine"), 0.1, 0, 100, (0, 0), 10);
        let before: Vec<f64> = (1..=100).map(|t| s.lr_at(t)).collect();
        s.rescale(51, 2.0 * s.lr_at(51)).unwrap();
        assert!((s.lr_at(51) - 2.0 * before[50]).abs() < 1e-12);
        assert!((s.lr_at(80) - 2.0 * before[79]).abs() < 1e-12);
    }

    #[test]
    fn a_change_by_hand_never_leaves_an_unusable_scale() {
        // Down to a tiny LR and back: the scale stays finite, and the LR is what was asked.
        let mut s = Schedule::new(spec("constant"), 1e-3, 0, 100, (0, 0), 10);
        s.rescale(1, f64::MIN_POSITIVE).unwrap();
        s.rescale(1, 1e-3).unwrap();
        assert!(s.scale.is_normal());
        assert!((s.lr_at(2) - 1e-3).abs() < 1e-15, "{}", s.lr_at(2));
        // Up to an absurd LR and back: the next step's LR is the one asked for, to the bit.
        for lr in [1e300, 1e-3, 3e-7, 0.1, 1e-3] {
            s.rescale(1, lr).unwrap();
            assert_eq!(s.lr_at(1), lr);
        }
        assert_eq!(
            serde_json::from_str::<Schedule>(&serde_json::to_string(&s).unwrap()).unwrap(),
            s
        );
        // A curve decayed to 0 cannot be scaled back: refused, and left as it was.
        let mut s = Schedule::new(spec("exp:1e-300"), 1e-3, 0, 100, (0, 0), 10);
        let before = s.clone();
        let e = s.rescale(50, 1e-3).unwrap_err();
        assert!(e.contains("choose a schedule"), "{e}");
        assert_eq!(s, before);
    }

    #[test]
    fn epoch_schedules_change_at_the_runs_epoch_ends() {
        // 10 steps an epoch; begun in the middle of epoch 2 (after step 15).
        let s = Schedule::new(spec("step:1:0.5"), 1.0, 15, 100, (10, 1), 10);
        assert_eq!((s.lr_at(16), s.lr_at(20)), (1.0, 1.0));
        assert_eq!((s.lr_at(21), s.lr_at(31)), (0.5, 0.25));
        let w = Schedule::new(spec("warmup=4:0.5+exp:0.5"), 1.0, 0, 100, (0, 0), 10);
        let lrs: Vec<f64> = (1..=12).map(|t| w.lr_at(t)).collect();
        assert_eq!(&lrs[..6], &[0.5, 0.625, 0.75, 0.875, 1.0, 1.0]);
        assert_eq!(&lrs[10..], &[0.5, 0.5]);
    }
}
