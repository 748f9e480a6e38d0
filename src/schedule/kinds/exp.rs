//! `exp:GAMMA`: x GAMMA after every epoch, as PyTorch's `ExponentialLR`.

use super::curve::{At, Curve, Def, FormArgs};
use crate::schedule::spec::{factor, number, positional_or_named, SpecError};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exponential {
    pub gamma: f64,
}

pub const DEF: Def = Def {
    name: "exp",
    syntax: &["exp:GAMMA"],
    about: &["x GAMMA after every epoch (ExponentialLR)"],
    example: "exp:0.9",
    form: &[("gamma", "factor after every epoch")],
    form_args: FormArgs::Named,
    no_warmup: None,
    run_epochs: None,
};

impl Exponential {
    /// From the text after `exp:`; `whole` is all of it, for errors.
    pub fn parse(whole: &str, args: &str) -> Result<Self, SpecError> {
        let (gamma, _) = positional_or_named(args, &["gamma", ""])?;
        let g = gamma.ok_or_else(|| SpecError::at(whole, "exp needs GAMMA: exp:0.9"))?;
        Ok(Exponential {
            gamma: factor(whole, number(whole, g, "gamma")?, "gamma")?,
        })
    }
}

impl Curve for Exponential {
    fn def(&self) -> &'static Def {
        &DEF
    }

    fn args(&self) -> String {
        self.gamma.to_string()
    }

    fn describe(&self) -> String {
        format!("exp x{}/ep", self.gamma)
    }

    fn form(&self) -> Vec<(&'static str, String)> {
        vec![("gamma", self.gamma.to_string())]
    }

    fn lr(&self, at: &At) -> f64 {
        at.base * self.gamma.powi(at.epochs as i32)
    }
}
