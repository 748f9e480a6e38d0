//! What a kind of schedule is: how it is written (`Def`) and what it computes (`Curve`) at a
//! point of the schedule (`At`).

use crate::schedule::spec::SpecError;

/// Where in the schedule proper (after any warm-up) a step is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct At {
    /// The LR the schedule is relative to.
    pub base: f64,
    /// Steps since the schedule proper began, from 0.
    pub step: u64,
    /// The schedule proper's length in steps (at least 1): the horizon of cosine and one-cycle.
    pub horizon: u64,
    /// The run's epochs ended since the schedule proper began.
    pub epochs: u64,
    pub steps_per_epoch: u64,
    /// Every cut reduce-on-plateau has made, multiplied (1 for the other kinds).
    pub reduction: f64,
}

/// What a kind computes and how it writes itself.
pub trait Curve {
    fn def(&self) -> &'static Def;
    /// Its values as a spec writes them after `name:`, empty for none; they parse back to it.
    fn args(&self) -> String;
    /// A few words: `step x0.1 every 7 ep`.
    fn describe(&self) -> String;
    /// The editor's values, by the keys of `Def::form`.
    fn form(&self) -> Vec<(&'static str, String)>;
    /// The LR at `at`.
    fn lr(&self, at: &At) -> f64;
    /// Whether it can take effect in a run of `epochs` epochs.
    fn check(&self, _epochs: usize) -> Result<(), SpecError> {
        Ok(())
    }
    /// The momentum (SGD) or Adam beta1 at `at`, when the kind cycles it.
    fn momentum(&self, _at: &At) -> Option<f64> {
        None
    }
}

/// How the editor writes a kind's values into a spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormArgs {
    /// `key=value,...`, leaving out the empty ones.
    Named,
    /// `a:b`, in the form's order, leaving out empty ones at the end.
    Positional,
}

/// How a kind is written: its name, its parser and its form.
pub struct Def {
    pub name: &'static str,
    /// How it is written, for `--help`, in lines.
    pub syntax: &'static [&'static str],
    /// What it does, for `--help`, in lines of up to 68 characters.
    pub about: &'static [&'static str],
    /// A spec of this kind, for `--help` and tests.
    pub example: &'static str,
    /// The editor's fields: key and hint (with the default in brackets).
    pub form: &'static [(&'static str, &'static str)],
    pub form_args: FormArgs,
    /// Why `warmup=` cannot come before it, when it cannot.
    pub no_warmup: Option<&'static str>,
    /// The form field that lists epochs, counted by the spec from the schedule's own start
    /// (multistep's milestones): the editor shows and takes the run's epochs there.
    pub run_epochs: Option<&'static str>,
}

impl Def {
    /// The spec's arguments from the editor's values (`value` of a key, trimmed).
    pub fn args_from(&self, value: impl Fn(&str) -> String) -> String {
        let keys = self.form.iter().map(|(k, _)| *k);
        match self.form_args {
            FormArgs::Named => keys
                .filter_map(|k| Some(format!("{k}={}", Some(value(k)).filter(|v| !v.is_empty())?)))
                .collect::<Vec<_>>()
                .join(","),
            FormArgs::Positional => {
                let mut values: Vec<String> = keys.map(value).collect();
                while values.last().is_some_and(String::is_empty) {
                    values.pop();
                }
                values.join(":")
            }
        }
    }
}
