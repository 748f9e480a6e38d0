//! `onecycle[:max=LR][,pct=0.3][,div=25][,final_div=1e4][,anneal=cos|linear][,three_phase]
//! [,momentum=0.85-0.95|off]`: PyTorch's `OneCycleLR` over the schedule's steps, cycling the
//! momentum (or Adam's beta1) against the LR. It warms up by itself.

use serde::{Deserialize, Serialize};

use super::curve::{At, Curve, Def, FormArgs};
use crate::schedule::spec::{learning_rate, number, pairs, positive, unknown, SpecError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anneal {
    Cos,
    Linear,
}

impl Anneal {
    fn name(self) -> &'static str {
        match self {
            Anneal::Cos => "cos",
            Anneal::Linear => "linear",
        }
    }
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

pub const DEF: Def = Def {
    name: "onecycle",
    syntax: &[
        "onecycle[:max=LR][,pct=0.3][,div=25][,final_div=1e4][,anneal=cos|linear][,three_phase]",
        "        [,momentum=0.85-0.95|off]",
    ],
    about: &[
        "up from max/div to max (--lr when not given) over the first pct of",
        "the steps, then down to max/div/final_div, changing every step;",
        "momentum (SGD) or Adam's beta1 cycles the other way (OneCycleLR)",
    ],
    example: "onecycle:max=0.01",
    form: &[
        ("max", "peak LR (the current LR)"),
        ("pct", "share of the steps spent rising (0.3)"),
        ("div", "start at max/div (25)"),
        ("final_div", "end at max/div/final_div (1e4)"),
        ("anneal", "cos or linear (cos)"),
        ("momentum", "BASE-MAX cycled, or off (0.85-0.95)"),
    ],
    form_args: FormArgs::Named,
    no_warmup: Some("onecycle warms up by itself (pct=); leave out warmup="),
    run_epochs: None,
};

impl OneCycle {
    /// From the text after `onecycle:`; `whole` is all of it, for errors.
    pub fn parse(_whole: &str, args: &str) -> Result<Self, SpecError> {
        let mut o = OneCycle::default();
        for (item, k, v) in pairs(args)? {
            match k {
                "max" => o.max_lr = Some(learning_rate(item, v, "the peak LR", false)?),
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
        Ok(o)
    }
}

impl OneCycle {
    fn momentum_text(&self) -> String {
        match self.momentum {
            Some((a, b)) => format!("{a}-{b}"),
            None => "off".into(),
        }
    }

    /// The LR and momentum at step `t` (0-based) of a cycle of `total` steps, as PyTorch lays
    /// out its phases.
    fn at(&self, base: f64, total: u64, t: u64) -> (f64, Option<f64>) {
        let max_lr = self.max_lr.unwrap_or(base);
        let initial = max_lr / self.div_factor;
        let min_lr = initial / self.final_div_factor;
        let total = total as f64;
        let (mom_base, mom_max) = self.momentum.unwrap_or((0.0, 0.0));
        // (end step, start lr, end lr, start momentum, end momentum).
        let rise = (
            self.pct_start * total - 1.0,
            initial,
            max_lr,
            mom_max,
            mom_base,
        );
        let phases = if self.three_phase {
            vec![
                rise,
                (
                    2.0 * self.pct_start * total - 2.0,
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
        let anneal = |a: f64, b: f64, pct: f64| match self.anneal {
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
                let m = self.momentum.map(|_| anneal(m0, m1, pct));
                return (anneal(lr0, lr1, pct), m);
            }
            start = end;
        }
        (min_lr, None)
    }
}

impl Curve for OneCycle {
    fn def(&self) -> &'static Def {
        &DEF
    }

    fn args(&self) -> String {
        let mut items = Vec::new();
        if let Some(m) = self.max_lr {
            items.push(format!("max={m}"));
        }
        items.push(format!("pct={}", self.pct_start));
        items.push(format!("div={}", self.div_factor));
        items.push(format!("final_div={}", self.final_div_factor));
        items.push(format!("anneal={}", self.anneal.name()));
        if self.three_phase {
            items.push("three_phase".into());
        }
        items.push(format!("momentum={}", self.momentum_text()));
        items.join(",")
    }

    fn describe(&self) -> String {
        match self.max_lr {
            Some(m) => format!("onecycle max {m:.1e}"),
            None => "onecycle".into(),
        }
    }

    fn form(&self) -> Vec<(&'static str, String)> {
        let mut values = Vec::new();
        if let Some(m) = self.max_lr {
            values.push(("max", m.to_string()));
        }
        values.extend([
            ("pct", self.pct_start.to_string()),
            ("div", self.div_factor.to_string()),
            ("final_div", self.final_div_factor.to_string()),
            ("anneal", self.anneal.name().to_string()),
            ("momentum", self.momentum_text()),
        ]);
        values
    }

    fn lr(&self, at: &At) -> f64 {
        self.at(at.base, at.horizon, at.step).0
    }

    fn momentum(&self, at: &At) -> Option<f64> {
        self.momentum?;
        self.at(at.base, at.horizon, at.step).1
    }
}
