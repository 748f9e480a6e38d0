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

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Constant,
    Step {
        every: u64,
        gamma: f64,
    },
    MultiStep {
        milestones: Vec<u64>,
        gamma: f64,
    },
    Exponential {
        gamma: f64,
    },
    Cosine {
        min_lr: f64,
        /// Warm restarts: the first period in epochs, and its growth factor.
        restart: Option<(u64, u64)>,
    },
    OneCycle(OneCycle),
    Plateau(Plateau),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anneal {
    Cos,
    Linear,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneCycle {
    /// The peak; the run's `--lr` when not given.
    pub max_lr: Option<f64>,
    pub pct_start: f64,
    pub div_factor: f64,
    pub final_div_factor: f64,
    pub anneal: Anneal,
    pub three_phase: bool,
    /// Momentum (SGD) or Adam's beta1, cycled between these (base, max); `None` leaves it.
    pub momentum: Option<(f64, f64)>,
}

impl Default for OneCycle {
    fn default() -> Self {
        Self {
            max_lr: None,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
            anneal: Anneal::Cos,
            three_phase: false,
            momentum: Some((0.85, 0.95)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    ValLoss,
    ValAcc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Min,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMode {
    Rel,
    Abs,
}

/// `ReduceLROnPlateau`, with PyTorch's defaults (the mode follows the monitor: min for the
/// loss, max for the accuracy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plateau {
    pub monitor: Monitor,
    pub mode: Mode,
    pub factor: f64,
    pub patience: u32,
    pub threshold: f64,
    pub threshold_mode: ThresholdMode,
    pub cooldown: u32,
    pub min_lr: f64,
    pub eps: f64,
}

impl Default for Plateau {
    fn default() -> Self {
        Self {
            monitor: Monitor::ValLoss,
            mode: Mode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
        }
    }
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        Self {
            warmup: None,
            kind: Kind::Constant,
        }
    }
}

/// A spec that does not parse, or does not fit the run: the spec, the part at fault, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("--schedule '{spec}': {part}{problem}")]
pub struct SpecError {
    pub spec: String,
    /// `at 'x': ` or empty.
    part: String,
    problem: String,
}

impl SpecError {
    fn at(part: &str, problem: impl Into<String>) -> Self {
        Self {
            spec: String::new(),
            part: format!("at '{part}': "),
            problem: problem.into(),
        }
    }

    fn whole(problem: impl Into<String>) -> Self {
        Self {
            spec: String::new(),
            part: String::new(),
            problem: problem.into(),
        }
    }

    fn of(mut self, spec: &str) -> Self {
        self.spec = spec.to_string();
        self
    }

    /// The problem without the spec (for a form that shows the spec itself).
    pub fn problem(&self) -> String {
        format!("{}{}", self.part, self.problem)
    }
}

const KINDS: &str = "constant, step, multistep, exp, cosine, onecycle, plateau";

fn number(part: &str, text: &str, what: &str) -> Result<f64, SpecError> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(SpecError::at(
            part,
            format!("'{text}' is not a number ({what})"),
        )),
    }
}

fn count(part: &str, text: &str, what: &str) -> Result<u64, SpecError> {
    text.trim()
        .parse::<u64>()
        .map_err(|_| SpecError::at(part, format!("'{text}' is not a whole number ({what})")))
}

fn positive(part: &str, v: f64, what: &str) -> Result<f64, SpecError> {
    if v > 0.0 {
        Ok(v)
    } else {
        Err(SpecError::at(part, format!("{what} must be above 0")))
    }
}

/// Zero or more.
fn non_negative(part: &str, text: &str, what: &str) -> Result<f64, SpecError> {
    let v = number(part, text, what)?;
    if v < 0.0 {
        return Err(SpecError::at(part, format!("{what} cannot be negative")));
    }
    Ok(v)
}

/// A factor that lowers the LR: in (0, 1].
fn factor(part: &str, v: f64, what: &str) -> Result<f64, SpecError> {
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(SpecError::at(part, format!("{what} must be in (0, 1]")))
    }
}

/// `key=value` pairs, comma-separated; a key alone is `key=` (a flag).
fn pairs(args: &str) -> Result<Vec<(&str, &str, &str)>, SpecError> {
    if args.is_empty() {
        return Ok(Vec::new());
    }
    args.split(',')
        .map(|item| {
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            if k.trim().is_empty() {
                return Err(SpecError::at(item, "expected key=value"));
            }
            Ok((item, k.trim(), v.trim()))
        })
        .collect()
}

fn unknown(item: &str, key: &str, known: &str) -> SpecError {
    SpecError::at(item, format!("unknown parameter '{key}' (known: {known})"))
}

impl FromStr for ScheduleSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        parse(s.trim()).map_err(|e| e.of(s))
    }
}

fn parse(s: &str) -> Result<ScheduleSpec, SpecError> {
    if s.is_empty() {
        return Err(SpecError::whole(format!("empty (kinds: {KINDS})")));
    }
    let (warmup, rest) = match s.strip_prefix("warmup=") {
        Some(w) => {
            let (w, rest) = w.split_once('+').ok_or_else(|| {
                SpecError::at(s, "a warm-up comes before a schedule: warmup=STEPS+KIND")
            })?;
            let part = &s[..w.len() + "warmup=".len()];
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
            (Some(Warmup { steps, start }), rest)
        }
        None => (None, s),
    };
    let (name, args) = rest.split_once(':').unwrap_or((rest, ""));
    let kind = match name {
        "constant" if args.is_empty() => Kind::Constant,
        "constant" => return Err(SpecError::at(args, "constant takes no parameters")),
        "step" => {
            let (every, gamma) = positional_or_named(args, &["every", "gamma"])?;
            let every = count(
                rest,
                every
                    .ok_or_else(|| SpecError::at(rest, "step needs EVERY (epochs): step:7:0.1"))?,
                "epochs between decays",
            )?;
            if every == 0 {
                return Err(SpecError::at(rest, "EVERY must be at least 1 epoch"));
            }
            let gamma = match gamma {
                Some(g) => factor(rest, number(rest, g, "gamma")?, "gamma")?,
                None => 0.1,
            };
            Kind::Step { every, gamma }
        }
        "multistep" => {
            let (list, gamma) = match args.rsplit_once(':') {
                Some((l, g)) => (l, Some(g)),
                None => (args, None),
            };
            if list.is_empty() {
                return Err(SpecError::at(
                    rest,
                    "multistep needs its epochs: multistep:3,6,8:0.1",
                ));
            }
            let mut milestones = list
                .split(',')
                .map(|m| count(m, m, "epoch"))
                .collect::<Result<Vec<u64>, _>>()?;
            if milestones.contains(&0) {
                return Err(SpecError::at(list, "milestones are epochs from 1 on"));
            }
            milestones.sort_unstable();
            milestones.dedup();
            let gamma = match gamma {
                Some(g) => factor(g, number(g, g, "gamma")?, "gamma")?,
                None => 0.1,
            };
            Kind::MultiStep { milestones, gamma }
        }
        "exp" => {
            let (gamma, _) = positional_or_named(args, &["gamma", ""])?;
            let g = gamma.ok_or_else(|| SpecError::at(rest, "exp needs GAMMA: exp:0.9"))?;
            Kind::Exponential {
                gamma: factor(rest, number(rest, g, "gamma")?, "gamma")?,
            }
        }
        "cosine" => cosine(args)?,
        "onecycle" => {
            if warmup.is_some() {
                return Err(SpecError::at(
                    s,
                    "onecycle warms up by itself (pct=); leave out warmup=",
                ));
            }
            one_cycle_spec(args)?
        }
        "plateau" => plateau(args)?,
        _ => {
            return Err(SpecError::at(
                name,
                format!("unknown schedule (kinds: {KINDS})"),
            ))
        }
    };
    Ok(ScheduleSpec { warmup, kind })
}

fn cosine(args: &str) -> Result<Kind, SpecError> {
    let (mut min_lr, mut restart, mut mult) = (0.0, None, 1);
    for (item, k, v) in pairs(args)? {
        match k {
            "min" => min_lr = non_negative(item, v, "the minimum LR")?,
            "restart" => {
                let n = count(item, v, "epochs of the first period")?;
                if n == 0 {
                    return Err(SpecError::at(item, "a period is at least 1 epoch"));
                }
                restart = Some(n);
            }
            "mult" => {
                mult = count(item, v, "period growth")?;
                if mult == 0 {
                    return Err(SpecError::at(item, "mult must be at least 1"));
                }
            }
            _ => return Err(unknown(item, k, "min, restart, mult")),
        }
    }
    if mult != 1 && restart.is_none() {
        return Err(SpecError::at(args, "mult goes with restart=EPOCHS"));
    }
    Ok(Kind::Cosine {
        min_lr,
        restart: restart.map(|r| (r, mult)),
    })
}

fn one_cycle_spec(args: &str) -> Result<Kind, SpecError> {
    let mut o = OneCycle::default();
    for (item, k, v) in pairs(args)? {
        match k {
            "max" => o.max_lr = Some(positive(item, number(item, v, "peak LR")?, "the peak LR")?),
            "pct" => {
                o.pct_start = number(item, v, "share of the cycle spent rising")?;
                if !(o.pct_start > 0.0 && o.pct_start < 1.0) {
                    return Err(SpecError::at(item, "pct must be between 0 and 1"));
                }
            }
            "div" => o.div_factor = positive(item, number(item, v, "div factor")?, "div")?,
            "final_div" => {
                o.final_div_factor =
                    positive(item, number(item, v, "final div factor")?, "final_div")?
            }
            "anneal" => {
                o.anneal = match v {
                    "cos" => Anneal::Cos,
                    "linear" => Anneal::Linear,
                    _ => return Err(SpecError::at(item, "anneal is cos or linear")),
                }
            }
            "three_phase" if v.is_empty() || v == "true" => o.three_phase = true,
            "three_phase" if v == "false" => o.three_phase = false,
            "momentum" if v == "off" => o.momentum = None,
            "momentum" => {
                let (a, b) = v.split_once('-').ok_or_else(|| {
                    SpecError::at(item, "momentum is BASE-MAX (e.g. 0.85-0.95) or off")
                })?;
                let (a, b) = (
                    number(item, a, "base momentum")?,
                    number(item, b, "max momentum")?,
                );
                if !(0.0 <= a && a <= b && b < 1.0) {
                    return Err(SpecError::at(item, "momentum needs 0 <= BASE <= MAX < 1"));
                }
                o.momentum = Some((a, b));
            }
            _ => {
                return Err(unknown(
                    item,
                    k,
                    "max, pct, div, final_div, anneal, three_phase, momentum",
                ))
            }
        }
    }
    if o.three_phase && o.pct_start >= 0.5 {
        return Err(SpecError::at(args, "three_phase needs pct below 0.5"));
    }
    Ok(Kind::OneCycle(o))
}

fn plateau(args: &str) -> Result<Kind, SpecError> {
    let mut p = Plateau::default();
    let mut mode = None;
    for (item, k, v) in pairs(args)? {
        match k {
            "monitor" => {
                p.monitor = match v {
                    "val_loss" => Monitor::ValLoss,
                    "val_acc" => Monitor::ValAcc,
                    _ => {
                        return Err(SpecError::at(
                            item,
                            format!("no metric '{v}' to monitor (val_loss or val_acc)"),
                        ))
                    }
                }
            }
            "mode" => {
                mode = Some(match v {
                    "min" => Mode::Min,
                    "max" => Mode::Max,
                    _ => return Err(SpecError::at(item, "mode is min or max")),
                })
            }
            "factor" => {
                p.factor = number(item, v, "factor")?;
                if !(p.factor > 0.0 && p.factor < 1.0) {
                    return Err(SpecError::at(item, "factor must be between 0 and 1"));
                }
            }
            "patience" => p.patience = count(item, v, "epochs")? as u32,
            "threshold" => p.threshold = non_negative(item, v, "threshold")?,
            "threshold_mode" => {
                p.threshold_mode = match v {
                    "rel" => ThresholdMode::Rel,
                    "abs" => ThresholdMode::Abs,
                    _ => return Err(SpecError::at(item, "threshold_mode is rel or abs")),
                }
            }
            "cooldown" => p.cooldown = count(item, v, "epochs")? as u32,
            "min_lr" => p.min_lr = non_negative(item, v, "min_lr")?,
            "eps" => p.eps = non_negative(item, v, "eps")?,
            _ => return Err(unknown(
                item,
                k,
                "monitor, mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps",
            )),
        }
    }
    p.mode = mode.unwrap_or(match p.monitor {
        Monitor::ValLoss => Mode::Min,
        Monitor::ValAcc => Mode::Max,
    });
    Ok(Kind::Plateau(p))
}

/// Up to two positional values (`7:0.1`) or the same as named ones (`every=7,gamma=0.1`).
fn positional_or_named<'a>(
    args: &'a str,
    names: &[&str; 2],
) -> Result<(Option<&'a str>, Option<&'a str>), SpecError> {
    if args.is_empty() {
        return Ok((None, None));
    }
    if args.contains('=') {
        let (mut a, mut b) = (None, None);
        for (item, k, v) in pairs(args)? {
            if k == names[0] {
                a = Some(v);
            } else if !names[1].is_empty() && k == names[1] {
                b = Some(v);
            } else {
                let known: Vec<&str> = names.iter().copied().filter(|n| !n.is_empty()).collect();
                return Err(unknown(item, k, &known.join(", ")));
            }
        }
        return Ok((a, b));
    }
    let mut parts = args.split(':');
    let a = parts.next();
    let b = parts.next();
    if let Some(extra) = parts.next() {
        return Err(SpecError::at(extra, "one value too many"));
    }
    if b.is_some() && names[1].is_empty() {
        return Err(SpecError::at(args, "one value too many"));
    }
    Ok((a, b))
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
        match &self.kind {
            Kind::Constant => write!(f, "constant"),
            Kind::Step { every, gamma } => write!(f, "step:{every}:{gamma}"),
            Kind::MultiStep { milestones, gamma } => {
                let m: Vec<String> = milestones.iter().map(u64::to_string).collect();
                write!(f, "multistep:{}:{gamma}", m.join(","))
            }
            Kind::Exponential { gamma } => write!(f, "exp:{gamma}"),
            Kind::Cosine { min_lr, restart } => {
                write!(f, "cosine:min={min_lr}")?;
                if let Some((every, mult)) = restart {
                    write!(f, ",restart={every},mult={mult}")?;
                }
                Ok(())
            }
            Kind::OneCycle(o) => {
                let mut items = Vec::new();
                if let Some(m) = o.max_lr {
                    items.push(format!("max={m}"));
                }
                items.push(format!("pct={}", o.pct_start));
                items.push(format!("div={}", o.div_factor));
                items.push(format!("final_div={}", o.final_div_factor));
                items.push(format!(
                    "anneal={}",
                    match o.anneal {
                        Anneal::Cos => "cos",
                        Anneal::Linear => "linear",
                    }
                ));
                if o.three_phase {
                    items.push("three_phase".into());
                }
                items.push(match o.momentum {
                    Some((a, b)) => format!("momentum={a}-{b}"),
                    None => "momentum=off".into(),
                });
                write!(f, "onecycle:{}", items.join(","))
            }
            Kind::Plateau(p) => write!(
                f,
                "plateau:monitor={},mode={},factor={},patience={},threshold={},threshold_mode={},cooldown={},min_lr={},eps={}",
                match p.monitor {
                    Monitor::ValLoss => "val_loss",
                    Monitor::ValAcc => "val_acc",
                },
                match p.mode {
                    Mode::Min => "min",
                    Mode::Max => "max",
                },
                p.factor,
                p.patience,
                p.threshold,
                match p.threshold_mode {
                    ThresholdMode::Rel => "rel",
                    ThresholdMode::Abs => "abs",
                },
                p.cooldown,
                p.min_lr,
                p.eps
            ),
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
        if let Kind::MultiStep { milestones, .. } = &self.kind {
            if let Some(m) = milestones.iter().find(|&&m| m >= epochs as u64) {
                return fail(SpecError::whole(format!(
                    "milestone {m} is at or after the run's last epoch ({epochs} epochs): it would never take effect"
                )));
            }
        }
        Ok(())
    }

    /// The kind's name.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Constant => "constant",
            Kind::Step { .. } => "step",
            Kind::MultiStep { .. } => "multistep",
            Kind::Exponential { .. } => "exp",
            Kind::Cosine { .. } => "cosine",
            Kind::OneCycle(_) => "onecycle",
            Kind::Plateau(_) => "plateau",
        }
    }

    /// A few words: `cosine to 1e-5`, `warmup 500 + step x0.1/7ep`.
    pub fn describe(&self) -> String {
        let kind = match &self.kind {
            Kind::Constant => "constant".to_string(),
            Kind::Step { every, gamma } => format!("step x{gamma} every {every} ep"),
            Kind::MultiStep { milestones, gamma } => {
                let m: Vec<String> = milestones.iter().map(u64::to_string).collect();
                format!("x{gamma} after ep {}", m.join(","))
            }
            Kind::Exponential { gamma } => format!("exp x{gamma}/ep"),
            Kind::Cosine { min_lr, restart } => match restart {
                None if *min_lr == 0.0 => "cosine to 0".into(),
                None => format!("cosine to {min_lr:.0e}"),
                Some((e, 1)) => format!("cosine restarts {e} ep"),
                Some((e, m)) => format!("cosine restarts {e} ep x{m}"),
            },
            Kind::OneCycle(o) => match o.max_lr {
                Some(m) => format!("onecycle max {m:.1e}"),
                None => "onecycle".into(),
            },
            Kind::Plateau(p) => format!(
                "plateau {} x{} after {}",
                match p.monitor {
                    Monitor::ValLoss => "val_loss",
                    Monitor::ValAcc => "val_acc",
                },
                p.factor,
                p.patience
            ),
        };
        match self.warmup {
            Some(w) => format!("warmup {} + {kind}", w.steps),
            None => kind,
        }
    }
}

/// Reduce-on-plateau's memory between epochs, as PyTorch keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlateauState {
    /// The best value of the monitored metric so far (none before the first epoch).
    pub best: Option<f64>,
    pub bad_epochs: u32,
    pub cooldown_left: u32,
    /// Every reduction so far, multiplied.
    pub reduction: f64,
}

/// A reduce-on-plateau decision at the end of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlateauCut {
    pub old: f64,
    pub new: f64,
    /// Epochs without improvement that led to it.
    pub bad_epochs: u32,
    /// The best value of the monitored metric (NaN when it has never been finite).
    pub best: f64,
    /// Epochs from now on in which no further cut is made.
    pub cooldown: u32,
}

impl Plateau {
    pub fn monitor_name(&self) -> &'static str {
        match self.monitor {
            Monitor::ValLoss => "val_loss",
            Monitor::ValAcc => "val_acc",
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
            Kind::Plateau(_) => Some(PlateauState {
                best: None,
                bad_epochs: 0,
                cooldown_left: 0,
                reduction: 1.0,
            }),
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
    fn epoch_of(&self, step: u64) -> u64 {
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
            _ => self.main_lr(step, t - w),
        };
        lr * self.scale
    }

    /// The schedule proper, `u` steps after it began (after any warm-up), at run step `step`.
    fn main_lr(&self, step: u64, u: u64) -> f64 {
        let base = self.base_lr;
        // Epochs ended since the schedule proper began.
        let epochs = self.epoch_of(step).saturating_sub(self.main_epoch);
        let horizon = self
            .total_steps
            .saturating_sub(self.start_step + self.warmup_steps())
            .max(1);
        match &self.spec.kind {
            Kind::Constant => base,
            Kind::Step { every, gamma } => base * gamma.powi((epochs / every) as i32),
            Kind::MultiStep { milestones, gamma } => {
                base * gamma.powi(milestones.iter().filter(|&&m| m <= epochs).count() as i32)
            }
            Kind::Exponential { gamma } => base * gamma.powi(epochs as i32),
            Kind::Cosine {
                min_lr,
                restart: None,
            } => {
                let t = u.min(horizon) as f64;
                min_lr
                    + (base - min_lr) * (1.0 + (std::f64::consts::PI * t / horizon as f64).cos())
                        / 2.0
            }
            Kind::Cosine {
                min_lr,
                restart: Some((t0, mult)),
            } => {
                // As PyTorch's documentation steps it: `epoch + i / iters`.
                let spe = self.steps_per_epoch;
                let epoch = (u / spe) as f64 + (u % spe) as f64 / spe as f64;
                let (t0, mult) = (*t0 as f64, *mult as f64);
                let (t_cur, t_i) = if epoch < t0 {
                    (epoch, t0)
                } else if mult == 1.0 {
                    (epoch % t0, t0)
                } else {
                    let n = ((epoch / t0 * (mult - 1.0) + 1.0).ln() / mult.ln()).floor();
                    (
                        epoch - t0 * (mult.powf(n) - 1.0) / (mult - 1.0),
                        t0 * mult.powf(n),
                    )
                };
                min_lr + (base - min_lr) * (1.0 + (std::f64::consts::PI * t_cur / t_i).cos()) / 2.0
            }
            Kind::OneCycle(o) => one_cycle(o, base, horizon, u).0,
            Kind::Plateau(_) => base * self.plateau.map_or(1.0, |p| p.reduction),
        }
    }

    /// The momentum (SGD) or Adam beta1 of `step`, when the schedule cycles it.
    pub fn momentum_at(&self, step: u64) -> Option<f64> {
        let Kind::OneCycle(o) = &self.spec.kind else {
            return None;
        };
        o.momentum?;
        let horizon = self.total_steps.saturating_sub(self.start_step).max(1);
        one_cycle(
            o,
            self.base_lr,
            horizon,
            step.saturating_sub(self.start_step + 1),
        )
        .1
    }

    /// The user sets the LR of the next step, `next`, to `lr`: the curve scales to pass there.
    pub fn rescale(&mut self, next: u64, lr: f64) {
        let now = self.lr_at(next);
        if now > 0.0 && now.is_finite() {
            self.scale *= lr / now;
        }
    }

    /// Reduce-on-plateau at the end of an epoch whose validation loss and accuracy are given;
    /// `next` is the first step of the next epoch. `Some` when the LR was cut.
    pub fn end_epoch(&mut self, next: u64, val_loss: f64, val_acc: f64) -> Option<PlateauCut> {
        let Kind::Plateau(p) = self.spec.kind.clone() else {
            return None;
        };
        let old = self.lr_at(next);
        let state = self.plateau.as_mut()?;
        let current = match p.monitor {
            Monitor::ValLoss => val_loss,
            Monitor::ValAcc => val_acc,
        };
        // PyTorch starts from an infinitely bad best.
        let best = state.best.unwrap_or(match p.mode {
            Mode::Min => f64::INFINITY,
            Mode::Max => f64::NEG_INFINITY,
        });
        let better = match (p.mode, p.threshold_mode) {
            (Mode::Min, ThresholdMode::Rel) => current < best * (1.0 - p.threshold),
            (Mode::Min, ThresholdMode::Abs) => current < best - p.threshold,
            (Mode::Max, ThresholdMode::Rel) => current > best * (p.threshold + 1.0),
            (Mode::Max, ThresholdMode::Abs) => current > best + p.threshold,
        };
        if better {
            state.best = Some(current);
            state.bad_epochs = 0;
        } else {
            state.bad_epochs += 1;
        }
        if state.cooldown_left > 0 {
            state.cooldown_left -= 1;
            state.bad_epochs = 0;
        }
        if state.bad_epochs <= p.patience {
            return None;
        }
        let bad_epochs = state.bad_epochs;
        state.cooldown_left = p.cooldown;
        state.bad_epochs = 0;
        let new = (old * p.factor).max(p.min_lr);
        if old - new <= p.eps {
            return None;
        }
        state.reduction *= new / old;
        let best = state.best.unwrap_or(f64::NAN);
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

/// OneCycleLR at step `t` (0-based) of a cycle of `total` steps: (lr, momentum).
fn one_cycle(o: &OneCycle, base: f64, total: u64, t: u64) -> (f64, Option<f64>) {
    let max_lr = o.max_lr.unwrap_or(base);
    let initial = max_lr / o.div_factor;
    let min_lr = initial / o.final_div_factor;
    let total = total as f64;
    let (mom_base, mom_max) = o.momentum.unwrap_or((0.0, 0.0));
    // (end step, start lr, end lr, start momentum, end momentum), as PyTorch lays them out.
    let rise = (
        o.pct_start * total - 1.0,
        initial,
        max_lr,
        mom_max,
        mom_base,
    );
    let phases = if o.three_phase {
        vec![
            rise,
            (
                2.0 * o.pct_start * total - 2.0,
                max_lr,
                initial,
                mom_base,
                mom_max,
            ),
            (total - 1.0, initial, min_lr, mom_max, mom_max),
        ]
    } else {
        vec![rise, (total - 1.0, max_lr, min_lr, mom_base, mom_max)]
    };
    let step = (t as f64).min(total - 1.0);
    let anneal = |a: f64, b: f64, pct: f64| match o.anneal {
        Anneal::Cos => b + (a - b) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0),
        Anneal::Linear => (b - a) * pct + a,
    };
    let mut start = 0.0;
    for (i, &(end, lr0, lr1, m0, m1)) in phases.iter().enumerate() {
        if step <= end || i == phases.len() - 1 {
            let pct = if end > start {
                (step - start) / (end - start)
            } else {
                1.0
            };
            let m = o.momentum.map(|_| anneal(m0, m1, pct));
            return (anneal(lr0, lr1, pct), m);
        }
        start = end;
    }
    (min_lr, None)
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
                kind: Kind::Step {
                    every: 7,
                    gamma: 0.1
                }
            }
        );
        assert_eq!(
            spec("multistep:8,3").kind,
            Kind::MultiStep {
                milestones: vec![3, 8],
                gamma: 0.1
            }
        );
        let Kind::Plateau(p) = spec("plateau:monitor=val_acc").kind else {
            panic!()
        };
        assert_eq!((p.mode, p.patience, p.factor), (Mode::Max, 10, 0.1));
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
        s.rescale(51, 2.0 * s.lr_at(51));
        assert!((s.lr_at(51) - 2.0 * before[50]).abs() < 1e-12);
        assert!((s.lr_at(80) - 2.0 * before[79]).abs() < 1e-12);
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
