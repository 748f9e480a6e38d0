//! `cosine[:min=LR][,restart=EPOCHS][,mult=N]`: PyTorch's `CosineAnnealingLR` over the
//! schedule's steps down to `min` (0); with `restart`, `CosineAnnealingWarmRestarts`: periods
//! of EPOCHS (fractions of an epoch counting), each N (1) times longer than the last.

use std::f64::consts::PI;

use super::curve::{At, Curve, Def, FormArgs};
use crate::schedule::spec::{count, learning_rate, pairs, unknown, SpecError};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cosine {
    pub min_lr: f64,
    /// Warm restarts: the first period in epochs, and its growth factor.
    pub restart: Option<(u64, u64)>,
}

pub const DEF: Def = Def {
    name: "cosine",
    syntax: &["cosine[:min=LR][,restart=EPOCHS][,mult=N]"],
    about: &[
        "cosine from --lr down to min (0) over the run's steps, changing every",
        "step (CosineAnnealingLR); with restart, periods of EPOCHS epochs, each",
        "N (1) times longer than the last (CosineAnnealingWarmRestarts)",
    ],
    example: "cosine:min=1e-5",
    form: &[
        ("min", "lowest LR (0)"),
        ("restart", "epochs of the first period (none)"),
        ("mult", "each period this many times longer (1)"),
    ],
    form_args: FormArgs::Named,
    no_warmup: None,
    run_epochs: None,
};

impl Cosine {
    /// From the text after `cosine:`; `whole` is all of it, for errors.
    pub fn parse(_whole: &str, args: &str) -> Result<Self, SpecError> {
        let (mut min_lr, mut restart, mut mult) = (0.0, None, 1);
        for (item, k, v) in pairs(args)? {
            match k {
                "min" => min_lr = learning_rate(item, v, "the minimum LR", true)?,
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
        Ok(Cosine {
            min_lr,
            restart: restart.map(|r| (r, mult)),
        })
    }
}

impl Curve for Cosine {
    fn def(&self) -> &'static Def {
        &DEF
    }

    fn args(&self) -> String {
        match self.restart {
            None => format!("min={}", self.min_lr),
            Some((every, mult)) => format!("min={},restart={every},mult={mult}", self.min_lr),
        }
    }

    fn describe(&self) -> String {
        match self.restart {
            None if self.min_lr == 0.0 => "cosine to 0".into(),
            None => format!("cosine to {:.0e}", self.min_lr),
            Some((e, 1)) => format!("cosine restarts {e} ep"),
            Some((e, m)) => format!("cosine restarts {e} ep x{m}"),
        }
    }

    fn form(&self) -> Vec<(&'static str, String)> {
        let mut values = vec![("min", self.min_lr.to_string())];
        if let Some((every, mult)) = self.restart {
            values.push(("restart", every.to_string()));
            values.push(("mult", mult.to_string()));
        }
        values
    }

    fn lr(&self, at: &At) -> f64 {
        let (base, min_lr) = (at.base, self.min_lr);
        let Some((t0, mult)) = self.restart else {
            let t = at.step.min(at.horizon) as f64;
            return min_lr + (base - min_lr) * (1.0 + (PI * t / at.horizon as f64).cos()) / 2.0;
        };
        // As PyTorch's documentation steps it: `epoch + i / iters`.
        let (u, spe) = (at.step, at.steps_per_epoch);
        let epoch = (u / spe) as f64 + (u % spe) as f64 / spe as f64;
        let (t0, mult) = (t0 as f64, mult as f64);
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
        min_lr + (base - min_lr) * (1.0 + (PI * t_cur / t_i).cos()) / 2.0
    }
}
