//! `constant`: the LR as it is.

use super::curve::{At, Curve, Def, FormArgs};
use crate::schedule::spec::SpecError;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constant;

pub const DEF: Def = Def {
    name: "constant",
    syntax: &["constant"],
    about: &["the LR as it is"],
    example: "constant",
    form: &[],
    form_args: FormArgs::Named,
    no_warmup: None,
    run_epochs: None,
};

impl Constant {
    /// From the text after `constant:`; `whole` is all of it, for errors.
    pub fn parse(_whole: &str, args: &str) -> Result<Self, SpecError> {
        if !args.is_empty() {
            return Err(SpecError::at(args, "constant takes no parameters"));
        }
        Ok(Constant)
    }
}

impl Curve for Constant {
    fn def(&self) -> &'static Def {
        &DEF
    }

    fn args(&self) -> String {
        String::new()
    }

    fn describe(&self) -> String {
        "constant".into()
    }

    fn form(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    fn lr(&self, at: &At) -> f64 {
        at.base
    }
}
