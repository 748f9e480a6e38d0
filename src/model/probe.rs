//! Activation statistics: what each conv block and hidden layer puts out on a training batch,
//! for the doctor's dead-unit and saturation rules. A forward pass of its own on the stock
//! layers (the fused kernels keep no pre-activations), in train mode, that leaves no trace.

use candle_core::{Result, Tensor};

use super::{run, Activation, Cnn, Kernels, Layer, Mode, Pool};
use crate::protocol::LayerActivations;
use crate::rng::Rng;

/// Pre-activations outside [-SATURATION_INPUT, SATURATION_INPUT] count as saturating
/// (DeepDiagnosis).
pub const SATURATION_INPUT: f32 = 5.0;

/// Outputs within this share of a bounded activation's range from a bound are saturated.
pub const SATURATION_MARGIN: f32 = 0.01;

impl Cnn {
    /// The activations of every conv block and hidden linear layer on `x` (shape (n, c, h,
    /// w)), in train mode: batch statistics, dropout drawn from `rng` (pass a stream of its
    /// own to leave the run's untouched). The batch-norm running statistics are put back.
    /// `zero_grad` is left 0 for the caller to fill.
    pub fn probe(&mut self, x: &Tensor, rng: &mut Rng) -> Result<Vec<LayerActivations>> {
        let running = self.running_stats();
        let out = self.probe_layers(x, rng);
        self.set_running_stats(running);
        out
    }

    fn probe_layers(&mut self, x: &Tensor, rng: &mut Rng) -> Result<Vec<LayerActivations>> {
        let fast = self.kernels == Kernels::Fast;
        let mut out = Vec::new();
        let mut x = x.detach();
        for (prefix, stack) in [
            ("features", &mut self.features),
            ("classifier", &mut self.classifier),
        ] {
            if prefix == "classifier" {
                x = x.flatten_from(1)?;
            }
            let mut owner = String::new();
            let mut i = 0;
            while i < stack.len() {
                let (head, tail) = stack.split_at_mut(i + 1);
                let mut used = 1;
                let y = match (&mut head[i], tail.first_mut()) {
                    // The fast kernel up to the pre-activation: conv (and batch norm).
                    (Layer::Conv(c), next) if fast => {
                        owner = format!("{prefix}.{i}");
                        let bn = match next {
                            Some(Layer::BatchNorm(bn)) => {
                                used = 2;
                                Some(bn)
                            }
                            _ => None,
                        };
                        c.forward_block(&x, bn, None, Pool::None, Mode::Train)?
                    }
                    (Layer::Linear(l), _) if fast => {
                        owner = format!("{prefix}.{i}");
                        l.forward_fused(&x, None)?
                    }
                    (layer, _) => {
                        if matches!(layer, Layer::Conv(_) | Layer::Linear(_)) {
                            owner = format!("{prefix}.{i}");
                        }
                        let y = run(layer, &x, Mode::Train, rng)?;
                        if let Layer::Act(a) = layer {
                            out.push(stats(&owner, *a, &x, &y)?);
                        }
                        y
                    }
                };
                x = y.detach();
                i += used;
            }
        }
        Ok(out)
    }
}

/// The statistics of one activation layer from its input `pre` and output `post`.
fn stats(layer: &str, act: Activation, pre: &Tensor, post: &Tensor) -> Result<LayerActivations> {
    let n = pre.dim(0)?;
    let pre: Vec<f32> = pre.flatten_all()?.to_vec1()?;
    let post: Vec<f32> = post.flatten_all()?.to_vec1()?;
    let units = pre.len() / n.max(1);
    let count = post.len().max(1) as f64;
    // One pass each, in f64, over slices the compiler can vectorise.
    let (sum, sum_sq) = post.iter().fold((0.0f64, 0.0f64), |(s, q), &v| {
        let v = v as f64;
        (s + v, q + v * v)
    });
    let mean = sum / count;
    let var = (sum_sq / count - mean * mean).max(0.0);
    let share = |hits: usize| hits as f64 / count;
    // A unit is dead when nothing in the batch gets through its activation's live side.
    let dead = match act {
        Activation::Relu | Activation::LeakyRelu | Activation::Elu => {
            let mut alive = vec![false; units];
            for image in pre.chunks_exact(units.max(1)) {
                for (a, &v) in alive.iter_mut().zip(image) {
                    *a |= v > 0.0;
                }
            }
            Some(alive.iter().filter(|&&a| !a).count() as f64 / units.max(1) as f64)
        }
        Activation::Tanh | Activation::Sigmoid => None,
    };
    let saturated = match act {
        Activation::Sigmoid => Some(share(
            post.iter()
                .filter(|&&y| !(SATURATION_MARGIN..=1.0 - SATURATION_MARGIN).contains(&y))
                .count(),
        )),
        Activation::Tanh => Some(share(
            post.iter()
                .filter(|&&y| y.abs() > 1.0 - 2.0 * SATURATION_MARGIN)
                .count(),
        )),
        Activation::Elu => Some(share(
            pre.iter().filter(|&&v| v < -SATURATION_INPUT).count(),
        )),
        Activation::Relu | Activation::LeakyRelu => None,
    };
    let outside_5 = share(pre.iter().filter(|&&v| v.abs() > SATURATION_INPUT).count());
    Ok(LayerActivations {
        layer: layer.to_string(),
        mean,
        std: var.sqrt(),
        dead,
        saturated,
        outside_5,
        zero_grad: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn dead_units_and_saturation_are_counted_by_hand() {
        // Two images, three units: unit 0 positive once, unit 1 never, unit 2 always.
        let pre = Tensor::new(&[[1.0f32, -1.0, 6.0], [-2.0, -7.0, 0.5]], &Device::Cpu).unwrap();
        let post = pre.relu().unwrap();
        let s = stats("features.0", Activation::Relu, &pre, &post).unwrap();
        assert_eq!(s.dead, Some(1.0 / 3.0));
        assert_eq!(s.saturated, None);
        assert!((s.outside_5 - 2.0 / 6.0).abs() < 1e-12);
        let mean = (1.0 + 6.0 + 0.5) / 6.0;
        assert!((s.mean - mean).abs() < 1e-6);
        let sig = candle_nn::ops::sigmoid(&pre).unwrap();
        let s = stats("features.0", Activation::Sigmoid, &pre, &sig).unwrap();
        // sigmoid(6) = 0.9975 and sigmoid(-7) = 0.0009 are within 1% of a bound.
        assert!((s.saturated.unwrap() - 2.0 / 6.0).abs() < 1e-12);
        assert_eq!(s.dead, None);
    }
}
