//! Unnormalised input: before the first step, a channel of the inputs the model gets is far
//! from zero mean and unit variance (raw 0-255 pixels, or a wrong --normalize).

use super::signals::{Found, Rule, Signals, Watch};
use crate::diagnose::{Patient, Switches, Thresholds};
use crate::protocol::{FindingKind, Remedy, Setting};

pub struct UnnormalisedInput;

impl Rule for UnnormalisedInput {
    fn kind(&self) -> FindingKind {
        FindingKind::UnnormalisedInput
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Start]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        let (p, th) = (s.patient, s.th);
        let (lo, hi) = th.input_std_range;
        let (c, mean, std) = p
            .input_mean
            .iter()
            .zip(&p.input_std)
            .enumerate()
            .map(|(c, (&m, &sd))| (c, m, sd))
            .find(|&(_, m, sd)| m.abs() > th.input_mean_max || sd < lo || sd > hi)?;
        Some((
            format!(
                "channel {c} of the inputs has mean {mean:.3} and std {std:.3} as the model gets them; normalised inputs have 0 and 1 (a mean beyond {:.0} or a std outside {lo}..{hi} is a problem): the first layer's steps are off by that scale",
                th.input_mean_max
            ),
            "--normalize auto (a restart)".into(),
        ))
    }

    fn remedy(&self, _: &Patient, _: Switches, _: &Thresholds) -> Option<Remedy> {
        Some(Remedy::Restart(vec![Setting::new("normalize", "auto")]))
    }
}
