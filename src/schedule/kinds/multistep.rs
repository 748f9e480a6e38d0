//! `multistep:E1,E2,..[:GAMMA]`: x GAMMA (0.1) after epochs E1, E2, ..., as PyTorch's
//! `MultiStepLR`.

use super::curve::{At, Curve, Def, FormArgs};
use crate::schedule::spec::{count, factor, number, SpecError};

#[derive(Debug, Clone, PartialEq)]
pub struct MultiStep {
    /// Sorted, without repeats, each at least 1.
    pub milestones: Vec<u64>,
    pub gamma: f64,
}

pub const DEF: Def = Def {
    name: "multistep",
    syntax: &["multistep:E1,E2,..[:GAMMA]"],
    about: &["x GAMMA (0.1) after epochs E1, E2, ... (MultiStepLR)"],
    example: "multistep:3,6,8",
    form: &[
        ("epochs", "decay after these epochs of the run: 3,6,8"),
        ("gamma", "factor at each decay (0.1)"),
    ],
    form_args: FormArgs::Positional,
    no_warmup: None,
    run_epochs: Some("epochs"),
};

impl MultiStep {
    /// From the text after `multistep:`; `whole` is all of it, for errors.
    pub fn parse(whole: &str, args: &str) -> Result<Self, SpecError> {
        let (list, gamma) = match args.rsplit_once(':') {
            Some((l, g)) => (l, Some(g)),
            None => (args, None),
        };
        if list.is_empty() {
            return Err(SpecError::at(
                whole,
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
        Ok(MultiStep { milestones, gamma })
    }
}

impl MultiStep {
    fn list(&self) -> String {
        let m: Vec<String> = self.milestones.iter().map(u64::to_string).collect();
        m.join(",")
    }
}

impl Curve for MultiStep {
    fn def(&self) -> &'static Def {
        &DEF
    }

    fn args(&self) -> String {
        format!("{}:{}", self.list(), self.gamma)
    }

    fn describe(&self) -> String {
        format!("x{} after ep {}", self.gamma, self.list())
    }

    fn form(&self) -> Vec<(&'static str, String)> {
        vec![("epochs", self.list()), ("gamma", self.gamma.to_string())]
    }

    fn lr(&self, at: &At) -> f64 {
        let passed = self.milestones.iter().filter(|&&m| m <= at.epochs).count();
        at.base * self.gamma.powi(passed as i32)
    }

    fn check(&self, epochs: usize) -> Result<(), SpecError> {
        match self.milestones.iter().find(|&&m| m >= epochs as u64) {
            Some(m) => Err(SpecError::whole(format!(
                "milestone {m} is at or after the run's last epoch ({epochs} epochs): it would never take effect"
            ))),
            None => Ok(()),
        }
    }
}
