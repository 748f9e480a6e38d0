//! `step:EVERY[:GAMMA]`: x GAMMA (0.1) after every EVERY epochs, as PyTorch's `StepLR`.

use super::curve::{At, Curve, Def, FormArgs};
use crate::schedule::spec::{count, factor, number, positional_or_named, SpecError};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub every: u64,
    pub gamma: f64,
}

pub const DEF: Def = Def {
    name: "step",
    syntax: &["step:EVERY[:GAMMA]"],
    about: &["x GAMMA (0.1) after every EVERY epochs (PyTorch StepLR)"],
    example: "step:7:0.1",
    form: &[
        ("every", "epochs between decays"),
        ("gamma", "factor at each decay (0.1)"),
    ],
    form_args: FormArgs::Named,
    no_warmup: None,
    run_epochs: None,
};

impl Step {
    /// From the text after `step:`; `whole` is all of it, for errors.
    pub fn parse(whole: &str, args: &str) -> Result<Self, SpecError> {
        let (every, gamma) = positional_or_named(args, &["every", "gamma"])?;
        let every = count(
            whole,
            every.ok_or_else(|| SpecError::at(whole, "step needs EVERY (epochs): step:7:0.1"))?,
            "epochs between decays",
        )?;
        if every == 0 {
            return Err(SpecError::at(whole, "EVERY must be at least 1 epoch"));
        }
        let gamma = match gamma {
            Some(g) => factor(whole, number(whole, g, "gamma")?, "gamma")?,
            None => 0.1,
        };
        Ok(Step { every, gamma })
    }
}

impl Curve for Step {
    fn def(&self) -> &'static Def {
        &DEF
    }

    fn args(&self) -> String {
        format!("{}:{}", self.every, self.gamma)
    }

    fn describe(&self) -> String {
        format!("step x{} every {} ep", self.gamma, self.every)
    }

    fn form(&self) -> Vec<(&'static str, String)> {
        vec![
            ("every", self.every.to_string()),
            ("gamma", self.gamma.to_string()),
        ]
    }

    fn lr(&self, at: &At) -> f64 {
        at.base * self.gamma.powi((at.epochs / self.every) as i32)
    }
}
