//! `poly[:power=1][,min=LR]`: PyTorch's `PolynomialLR` over the schedule's steps, from the
//! LR down to `min` (0) along `(1 - t/T)^power` (the "poly" schedule of segmentation models,
//! usually with power 0.9).

use super::curve::{At, Curve, Def, FormArgs};
use crate::schedule::spec::{learning_rate, number, pairs, positive, unknown, SpecError};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Poly {
    pub power: f64,
    pub min_lr: f64,
}

pub const DEF: Def = Def {
    name: "poly",
    syntax: &["poly[:power=1][,min=LR]"],
    about: &[
        "from --lr down to min (0) along (1 - t/T)^power over the run's steps,",
        "changing every step (PolynomialLR)",
    ],
    example: "poly:power=0.9",
    form: &[
        ("power", "the curve's power (1: a straight line)"),
        ("min", "lowest LR (0)"),
    ],
    form_args: FormArgs::Named,
    no_warmup: None,
    run_epochs: None,
};

impl Poly {
    /// From the text after `poly:`; `whole` is all of it, for errors.
    pub fn parse(_whole: &str, args: &str) -> Result<Self, SpecError> {
        let mut p = Poly {
            power: 1.0,
            min_lr: 0.0,
        };
        for (item, k, v) in pairs(args)? {
            match k {
                "power" => p.power = positive(item, number(item, v, "power")?, "power")?,
                "min" => p.min_lr = learning_rate(item, v, "the minimum LR", true)?,
                _ => return Err(unknown(item, k, "power, min")),
            }
        }
        Ok(p)
    }
}

impl Curve for Poly {
    fn def(&self) -> &'static Def {
        &DEF
    }

    fn args(&self) -> String {
        format!("power={},min={}", self.power, self.min_lr)
    }

    fn describe(&self) -> String {
        match self.min_lr {
            0.0 => format!("poly^{} to 0", self.power),
            m => format!("poly^{} to {m:.0e}", self.power),
        }
    }

    fn form(&self) -> Vec<(&'static str, String)> {
        vec![
            ("power", self.power.to_string()),
            ("min", self.min_lr.to_string()),
        ]
    }

    fn lr(&self, at: &At) -> f64 {
        let left = 1.0 - at.step.min(at.horizon) as f64 / at.horizon as f64;
        self.min_lr + (at.base - self.min_lr) * left.powf(self.power)
    }
}
