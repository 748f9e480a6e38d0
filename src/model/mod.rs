//! The configurable CNN. Parameters are named as in the `state_dict` of the equivalent
//! `torch.nn` model:
//!
//! ```text
//! features   = Sequential(per conv: Conv2d, [BatchNorm2d], act, [MaxPool2d|AvgPool2d]; [Dropout])
//! classifier = Sequential(per hidden: Linear, act, [Dropout]; Linear(classes))
//! forward(x) = classifier(flatten(features(x)))
//! ```
//! Dropout modules exist only when the dropout probability is above zero; a conv followed by
//! batch norm has no bias (`bias=False`).

pub mod activation;
pub mod arch;
pub mod batchnorm;
pub mod block;
pub mod conv;
pub(crate) mod cpu;
mod direct;
pub mod gemm;
mod geometry;
pub mod layers;
pub mod linear;
pub mod pool;
pub mod probe;
pub mod profile;
mod winograd;

use candle_core::{DType, Device, Module, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;
pub use activation::Activation;
pub use arch::{Arch, ArchError, ConvSpec, Pool};
pub use layers::{cross_entropy, Kernels, Mode};
use layers::{BatchNorm2d, Conv2d, Linear};

/// Building a model: a shape that does not work out, or a tensor operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Arch(#[from] ArchError),
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// One tensor of the model's `state_dict`, row-major, PyTorch layout: what checkpoints store.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The batch-norm running statistics and counters at one moment. The tensors are candle's
/// shared handles and every update replaces them, so keeping them costs no copy.
#[derive(Clone)]
pub struct RunningStats(Vec<(Tensor, Tensor, i64)>);

/// Everything needed to rebuild the network (stored in checkpoints as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Channels, height, width of one input image.
    pub input: [usize; 3],
    pub classes: usize,
    pub arch: Arch,
    pub activation: Activation,
    pub batch_norm: bool,
    pub dropout: f32,
}

/// Copies of the weights training keeps: the weights, their gradients, Adam's two moments,
/// the last good state (for rollbacks) and a checkpoint being written.
const WEIGHT_COPIES: u64 = 6;
/// Values kept per activation: the layer's output before and after pooling, kept for the
/// backward pass, and its gradient, with room for the kernels' buffers.
const ACTIVATION_COPIES: u64 = 8;

impl ModelConfig {
    /// The trainable parameters and, roughly, the bytes that training with `batch` images a
    /// step takes (weights with their copies, and activations); `None` when a size does not
    /// fit in a number.
    pub fn training_size(&self, batch: usize) -> Option<(u64, u64)> {
        let product = |dims: &[usize]| {
            dims.iter()
                .try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?))
        };
        let mut params = 0u64;
        for entry in state_dict_layout(self).ok()? {
            if let StateEntry::Tensor {
                shape,
                trainable: true,
                ..
            } = entry
            {
                params = params.checked_add(product(&shape)?)?;
            }
        }
        let mut values = product(&self.input)?;
        for shape in self.feature_shapes().ok()? {
            // The output before a 2x2 pooling is four times the size after it.
            values = values.checked_add(product(&shape)?.checked_mul(4)?)?;
        }
        for &units in &self.arch.hidden {
            values = values.checked_add(units as u64)?;
        }
        let weights = params.checked_mul(4 * WEIGHT_COPIES)?;
        let activations = values
            .checked_mul(batch as u64)?
            .checked_mul(4 * ACTIVATION_COPIES)?;
        Some((params, weights.checked_add(activations)?))
    }

    /// `c32,c64,f128 relu bn dropout 0.25`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} {}", self.arch, self.activation.name());
        if self.batch_norm {
            s += " bn";
        }
        if self.dropout > 0.0 {
            s += &format!(" dropout {}", self.dropout);
        }
        s
    }

    /// The shape after each conv block, or an error naming the block that shrinks it to nothing.
    pub fn feature_shapes(&self) -> std::result::Result<Vec<[usize; 3]>, ArchError> {
        let [_, mut h, mut w] = self.input;
        let mut shapes = Vec::new();
        for (i, conv) in self.arch.convs.iter().enumerate() {
            let out = |x: usize| {
                (x + 2 * conv.padding)
                    .checked_sub(conv.kernel)
                    .map(|v| v / conv.stride + 1)
            };
            let (Some(oh), Some(ow)) = (out(h), out(w)) else {
                return Err(ArchError {
                    arch: self.arch.to_string(),
                    problem: format!(
                        "layer {}: kernel {} is larger than its {h}x{w} input",
                        i + 1,
                        conv.kernel
                    ),
                });
            };
            (h, w) = (oh, ow);
            if conv.pool != Pool::None {
                (h, w) = (h / 2, w / 2);
            }
            if h == 0 || w == 0 {
                return Err(ArchError {
                    arch: self.arch.to_string(),
                    problem: format!(
                        "layer {} shrinks the {}x{} image to nothing",
                        i + 1,
                        self.input[1],
                        self.input[2]
                    ),
                });
            }
            shapes.push([conv.out_channels, h, w]);
        }
        Ok(shapes)
    }
}

enum Layer {
    Conv(Conv2d),
    BatchNorm(BatchNorm2d),
    Act(Activation),
    Pool(Pool),
    Dropout(f32),
    Linear(Linear),
}

/// A layer as planned from the config, before any weights exist.
#[derive(Debug, Clone, PartialEq)]
enum LayerPlan {
    Conv {
        in_c: usize,
        out_c: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    },
    BatchNorm {
        channels: usize,
    },
    Act(Activation),
    Pool(Pool),
    Dropout(f32),
    Linear {
        in_f: usize,
        out_f: usize,
    },
}

/// The two `Sequential`s of the equivalent PyTorch model, as plans. The one place that decides
/// which module sits at which index.
fn plan(config: &ModelConfig) -> std::result::Result<(Vec<LayerPlan>, Vec<LayerPlan>), ArchError> {
    let shapes = config.feature_shapes()?;
    let mut features = Vec::new();
    let mut in_c = config.input[0];
    for conv in &config.arch.convs {
        features.push(LayerPlan::Conv {
            in_c,
            out_c: conv.out_channels,
            kernel: conv.kernel,
            stride: conv.stride,
            padding: conv.padding,
            bias: !config.batch_norm,
        });
        if config.batch_norm {
            features.push(LayerPlan::BatchNorm {
                channels: conv.out_channels,
            });
        }
        features.push(LayerPlan::Act(config.activation));
        if conv.pool != Pool::None {
            features.push(LayerPlan::Pool(conv.pool));
        }
        in_c = conv.out_channels;
    }
    if config.dropout > 0.0 && !config.arch.convs.is_empty() {
        features.push(LayerPlan::Dropout(config.dropout));
    }
    let mut in_f = shapes
        .last()
        .copied()
        .unwrap_or(config.input)
        .iter()
        .product::<usize>();
    let mut classifier = Vec::new();
    for &units in &config.arch.hidden {
        classifier.push(LayerPlan::Linear { in_f, out_f: units });
        classifier.push(LayerPlan::Act(config.activation));
        if config.dropout > 0.0 {
            classifier.push(LayerPlan::Dropout(config.dropout));
        }
        in_f = units;
    }
    classifier.push(LayerPlan::Linear {
        in_f,
        out_f: config.classes,
    });
    Ok((features, classifier))
}

/// One entry of the model's `state_dict`.
#[derive(Debug, Clone, PartialEq)]
pub enum StateEntry {
    Tensor {
        name: String,
        shape: Vec<usize>,
        trainable: bool,
    },
    /// `num_batches_tracked` (an int64 scalar in PyTorch).
    Counter { name: String },
}

/// The names and shapes of the `state_dict` of the model `config` describes, in PyTorch's
/// order, without building it.
pub fn state_dict_layout(config: &ModelConfig) -> std::result::Result<Vec<StateEntry>, ArchError> {
    let (features, classifier) = plan(config)?;
    let mut out = Vec::new();
    for (prefix, layers) in [("features", &features), ("classifier", &classifier)] {
        for (i, layer) in layers.iter().enumerate() {
            let t = |suffix: &str, shape: Vec<usize>, trainable: bool| StateEntry::Tensor {
                name: format!("{prefix}.{i}.{suffix}"),
                shape,
                trainable,
            };
            match *layer {
                LayerPlan::Conv {
                    in_c,
                    out_c,
                    kernel,
                    bias,
                    ..
                } => {
                    out.push(t("weight", vec![out_c, in_c, kernel, kernel], true));
                    if bias {
                        out.push(t("bias", vec![out_c], true));
                    }
                }
                LayerPlan::BatchNorm { channels } => {
                    out.push(t("weight", vec![channels], true));
                    out.push(t("bias", vec![channels], true));
                    out.push(t("running_mean", vec![channels], false));
                    out.push(t("running_var", vec![channels], false));
                    out.push(StateEntry::Counter {
                        name: format!("{prefix}.{i}.num_batches_tracked"),
                    });
                }
                LayerPlan::Linear { in_f, out_f } => {
                    out.push(t("weight", vec![out_f, in_f], true));
                    out.push(t("bias", vec![out_f], true));
                }
                LayerPlan::Act(_) | LayerPlan::Pool(_) | LayerPlan::Dropout(_) => {}
            }
        }
    }
    Ok(out)
}

/// A model's tensors and batch-norm counters, as checkpoints store them.
pub type StateDict = (Vec<NamedTensor>, Vec<(String, i64)>);

/// A named trainable parameter.
#[derive(Clone)]
pub struct Param {
    pub name: String,
    pub var: Var,
}

pub struct Cnn {
    config: ModelConfig,
    kernels: Kernels,
    features: Vec<Layer>,
    classifier: Vec<Layer>,
    params: Vec<Param>,
}

impl Cnn {
    /// Builds the network with PyTorch's default initialisation, drawn from `rng`.
    pub fn new(
        config: ModelConfig,
        rng: &mut Rng,
        dtype: DType,
    ) -> std::result::Result<Self, ModelError> {
        let (feature_plan, classifier_plan) = plan(&config)?;
        let dev = Device::Cpu;
        let build = |plans: Vec<LayerPlan>, rng: &mut Rng| -> Result<Vec<Layer>> {
            plans
                .into_iter()
                .map(|p| {
                    Ok(match p {
                        LayerPlan::Conv {
                            in_c,
                            out_c,
                            kernel,
                            stride,
                            padding,
                            bias,
                        } => Layer::Conv(Conv2d::new(
                            rng, in_c, out_c, kernel, stride, padding, bias, dtype, &dev,
                        )?),
                        LayerPlan::BatchNorm { channels } => {
                            Layer::BatchNorm(BatchNorm2d::new(channels, dtype, &dev)?)
                        }
                        LayerPlan::Act(a) => Layer::Act(a),
                        LayerPlan::Pool(p) => Layer::Pool(p),
                        LayerPlan::Dropout(p) => Layer::Dropout(p),
                        LayerPlan::Linear { in_f, out_f } => {
                            Layer::Linear(Linear::new(rng, in_f, out_f, dtype, &dev)?)
                        }
                    })
                })
                .collect()
        };
        let features = build(feature_plan, rng)?;
        let classifier = build(classifier_plan, rng)?;
        let mut params = Vec::new();
        for (prefix, layers) in [("features", &features), ("classifier", &classifier)] {
            for (i, layer) in layers.iter().enumerate() {
                let mut add = |suffix: &str, var: &Var| {
                    params.push(Param {
                        name: format!("{prefix}.{i}.{suffix}"),
                        var: var.clone(),
                    })
                };
                match layer {
                    Layer::Conv(c) => {
                        add("weight", &c.weight);
                        if let Some(b) = &c.bias {
                            add("bias", b);
                        }
                    }
                    Layer::BatchNorm(bn) => {
                        add("weight", &bn.weight);
                        add("bias", &bn.bias);
                    }
                    Layer::Linear(l) => {
                        add("weight", &l.weight);
                        add("bias", &l.bias);
                    }
                    Layer::Act(_) | Layer::Pool(_) | Layer::Dropout(_) => {}
                }
            }
        }
        Ok(Self {
            config,
            kernels: Kernels::Fast,
            features,
            classifier,
            params,
        })
    }

    /// Every tensor of the `state_dict` (parameters and running statistics) as f32, and the
    /// batch-norm counters.
    pub fn state(&self) -> Result<StateDict> {
        let mut tensors = Vec::new();
        let mut counters = Vec::new();
        let flat =
            |t: &Tensor| -> Result<Vec<f32>> { t.flatten_all()?.to_dtype(DType::F32)?.to_vec1() };
        for (prefix, layers) in [
            ("features", &self.features),
            ("classifier", &self.classifier),
        ] {
            for (i, layer) in layers.iter().enumerate() {
                let mut push = |suffix: &str, t: &Tensor| -> Result<()> {
                    tensors.push(NamedTensor {
                        name: format!("{prefix}.{i}.{suffix}"),
                        shape: t.dims().to_vec(),
                        data: flat(t)?,
                    });
                    Ok(())
                };
                match layer {
                    Layer::Conv(c) => {
                        push("weight", c.weight.as_tensor())?;
                        if let Some(b) = &c.bias {
                            push("bias", b.as_tensor())?;
                        }
                    }
                    Layer::BatchNorm(bn) => {
                        push("weight", bn.weight.as_tensor())?;
                        push("bias", bn.bias.as_tensor())?;
                        push("running_mean", &bn.running_mean)?;
                        push("running_var", &bn.running_var)?;
                        counters.push((
                            format!("{prefix}.{i}.num_batches_tracked"),
                            bn.num_batches_tracked,
                        ));
                    }
                    Layer::Linear(l) => {
                        push("weight", l.weight.as_tensor())?;
                        push("bias", l.bias.as_tensor())?;
                    }
                    Layer::Act(_) | Layer::Pool(_) | Layer::Dropout(_) => {}
                }
            }
        }
        Ok((tensors, counters))
    }

    /// Loads a `state_dict`; every tensor of the model must be there with its shape.
    pub fn load_state(
        &mut self,
        tensors: &[NamedTensor],
        counters: &[(String, i64)],
    ) -> std::result::Result<(), String> {
        let find = |name: &str, shape: &[usize]| -> std::result::Result<Tensor, String> {
            let t = tensors
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| format!("missing tensor {name}"))?;
            if t.shape != shape {
                return Err(format!(
                    "shape mismatch for {name}: checkpoint {:?}, model {shape:?}",
                    t.shape
                ));
            }
            Tensor::from_slice(&t.data, shape, &Device::Cpu).map_err(|e| e.to_string())
        };
        let set = |var: &Var, name: String| -> std::result::Result<(), String> {
            let t = find(&name, var.dims())?
                .to_dtype(var.dtype())
                .map_err(|e| e.to_string())?;
            var.set(&t).map_err(|e| e.to_string())
        };
        for (prefix, layers) in [
            ("features", &mut self.features),
            ("classifier", &mut self.classifier),
        ] {
            for (i, layer) in layers.iter_mut().enumerate() {
                let name = |suffix: &str| format!("{prefix}.{i}.{suffix}");
                match layer {
                    Layer::Conv(c) => {
                        set(&c.weight, name("weight"))?;
                        if let Some(b) = &c.bias {
                            set(b, name("bias"))?;
                        }
                    }
                    Layer::BatchNorm(bn) => {
                        set(&bn.weight, name("weight"))?;
                        set(&bn.bias, name("bias"))?;
                        let dtype = bn.running_mean.dtype();
                        bn.running_mean = find(&name("running_mean"), bn.running_mean.dims())?
                            .to_dtype(dtype)
                            .map_err(|e| e.to_string())?;
                        bn.running_var = find(&name("running_var"), bn.running_var.dims())?
                            .to_dtype(dtype)
                            .map_err(|e| e.to_string())?;
                        let counter = name("num_batches_tracked");
                        bn.num_batches_tracked = counters
                            .iter()
                            .find(|(n, _)| *n == counter)
                            .map(|c| c.1)
                            .ok_or_else(|| format!("missing tensor {counter}"))?;
                    }
                    Layer::Linear(l) => {
                        set(&l.weight, name("weight"))?;
                        set(&l.bias, name("bias"))?;
                    }
                    Layer::Act(_) | Layer::Pool(_) | Layer::Dropout(_) => {}
                }
            }
        }
        Ok(())
    }

    /// The batch-norm running statistics now, to put back with `set_running_stats` (a training
    /// step whose loss turned out non-finite must leave no trace).
    pub fn running_stats(&self) -> RunningStats {
        RunningStats(
            self.features
                .iter()
                .filter_map(|l| match l {
                    Layer::BatchNorm(bn) => Some((
                        bn.running_mean.clone(),
                        bn.running_var.clone(),
                        bn.num_batches_tracked,
                    )),
                    _ => None,
                })
                .collect(),
        )
    }

    pub fn set_running_stats(&mut self, stats: RunningStats) {
        let bns = self.features.iter_mut().filter_map(|l| match l {
            Layer::BatchNorm(bn) => Some(bn),
            _ => None,
        });
        for (bn, (mean, var, n)) in bns.zip(stats.0) {
            (bn.running_mean, bn.running_var, bn.num_batches_tracked) = (mean, var, n);
        }
    }

    /// An independent copy: the same weights, running statistics and kernels (for trying
    /// something without touching the original, e.g. the LR range test).
    pub fn duplicate(&self) -> std::result::Result<Self, ModelError> {
        let (tensors, counters) = self.state()?;
        let dtype = self.params.first().map_or(DType::F32, |p| p.var.dtype());
        let mut copy = Self::new(self.config.clone(), &mut Rng::new(0), dtype)?;
        copy.load_state(&tensors, &counters)
            .map_err(|e| ModelError::Candle(candle_core::Error::Msg(e)))?;
        copy.kernels = self.kernels;
        Ok(copy)
    }

    /// Dropout with probability `p` from now on. Only between non-zero values: turning
    /// dropout on or off adds or removes layers (and changes the `state_dict` indices).
    pub fn set_dropout(&mut self, p: f32) -> std::result::Result<(), String> {
        if self.config.dropout == 0.0 {
            return Err(format!(
                "dropout={p}: this model has no dropout layers (adding them needs a new run)"
            ));
        }
        if !(p > 0.0 && p < 1.0) {
            return Err(format!(
                "dropout={p}: must be above 0 and under 1 (turning dropout off removes layers)"
            ));
        }
        for layer in self.features.iter_mut().chain(&mut self.classifier) {
            if let Layer::Dropout(q) = layer {
                *q = p;
            }
        }
        self.config.dropout = p;
        Ok(())
    }

    /// Chooses the implementation of the hot operations (fast by default).
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Trainable parameters in `state_dict` order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    pub fn param_count(&self) -> usize {
        self.params.iter().map(|p| p.var.elem_count()).sum()
    }

    /// Buffers (batch-norm running statistics) with their `state_dict` names.
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, layer) in self.features.iter().enumerate() {
            if let Layer::BatchNorm(bn) = layer {
                out.push((
                    format!("features.{i}.running_mean"),
                    bn.running_mean.clone(),
                ));
                out.push((format!("features.{i}.running_var"), bn.running_var.clone()));
            }
        }
        out
    }

    /// Logits for a batch `x` of shape (n, c, h, w).
    pub fn forward(&mut self, x: &Tensor, mode: Mode, rng: &mut Rng) -> Result<Tensor> {
        if self.kernels == Kernels::Fast {
            let x = run_fused(&mut self.features, x.clone(), mode, rng)?;
            // The first linear layer flattens its input itself.
            return run_fused(&mut self.classifier, x, mode, rng);
        }
        let mut x = x.clone();
        for layer in &mut self.features {
            x = run(layer, &x, mode, rng)?;
        }
        let mut x = x.flatten_from(1)?;
        for layer in &mut self.classifier {
            x = run(layer, &x, mode, rng)?;
        }
        Ok(x)
    }

    /// A one-line summary: `c32,c64,f128 relu bn dropout 0.25 (421,642 params)`.
    pub fn summary(&self) -> String {
        format!(
            "{} ({} params)",
            self.config.describe(),
            crate::format::group_thousands(self.param_count())
        )
    }
}

/// One layer with candle's stock ops (pooling excepted: see `pool`).
fn run(layer: &mut Layer, x: &Tensor, mode: Mode, rng: &mut Rng) -> Result<Tensor> {
    match layer {
        Layer::Conv(c) => c.forward(x),
        Layer::BatchNorm(bn) => bn.forward(x, mode),
        Layer::Act(a) => a.forward(x),
        Layer::Pool(kind) => pool::pool2x2(x, *kind),
        Layer::Dropout(p) => layers::dropout(x, *p, mode, rng, Kernels::Stock),
        Layer::Linear(l) => l.forward(x),
    }
}

/// The layers with the fast kernels, each run of layers that fuses becoming one op: a conv
/// block (conv, [batch norm], [act], [pool]) and linear + act.
fn run_fused(layers: &mut [Layer], mut x: Tensor, mode: Mode, rng: &mut Rng) -> Result<Tensor> {
    let mut i = 0;
    while i < layers.len() {
        let (head, tail) = layers.split_at_mut(i + 1);
        let next_act = match tail.first() {
            Some(Layer::Act(a)) => Some(*a),
            _ => None,
        };
        let skip_act = usize::from(next_act.is_some());
        i += 1 + match &mut head[i] {
            Layer::Conv(c) => {
                // The block is the conv and what follows it, in the order plan() lays out.
                let mut rest = tail.iter_mut().peekable();
                let bn = rest.next_if(|l| matches!(l, Layer::BatchNorm(_)));
                let act = rest.next_if(|l| matches!(l, Layer::Act(_)));
                let pool = rest.next_if(|l| matches!(l, Layer::Pool(_)));
                let used = [bn.is_some(), act.is_some(), pool.is_some()];
                let bn = match bn {
                    Some(Layer::BatchNorm(bn)) => Some(bn),
                    _ => None,
                };
                let act = match act {
                    Some(Layer::Act(a)) => Some(*a),
                    _ => None,
                };
                let pool = match pool {
                    Some(Layer::Pool(p)) => *p,
                    _ => Pool::None,
                };
                x = c.forward_block(&x, bn, act, pool, mode)?;
                used.iter().filter(|&&u| u).count()
            }
            Layer::BatchNorm(bn) => {
                x = bn.forward(&x, mode)?;
                0
            }
            Layer::Linear(l) => {
                x = l.forward_fused(&x, next_act)?;
                skip_act
            }
            Layer::Act(a) => {
                x = a.forward(&x)?;
                0
            }
            Layer::Pool(kind) => {
                x = pool::pool2x2(&x, *kind)?;
                0
            }
            Layer::Dropout(p) => {
                x = layers::dropout(&x, *p, mode, rng, Kernels::Fast)?;
                0
            }
        };
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(arch: &str, bn: bool, dropout: f32) -> ModelConfig {
        ModelConfig {
            input: [1, 28, 28],
            classes: 10,
            arch: arch.parse().unwrap(),
            activation: Activation::Relu,
            batch_norm: bn,
            dropout,
        }
    }

    #[test]
    fn default_model_has_pytorch_names_and_shapes() {
        let m = Cnn::new(
            config("c32,c64,f128", true, 0.25),
            &mut Rng::new(0),
            DType::F32,
        )
        .unwrap();
        let names: Vec<(String, Vec<usize>)> = m
            .params()
            .iter()
            .map(|p| (p.name.clone(), p.var.dims().to_vec()))
            .collect();
        let want: Vec<(&str, Vec<usize>)> = vec![
            ("features.0.weight", vec![32, 1, 3, 3]),
            ("features.1.weight", vec![32]),
            ("features.1.bias", vec![32]),
            ("features.4.weight", vec![64, 32, 3, 3]),
            ("features.5.weight", vec![64]),
            ("features.5.bias", vec![64]),
            ("classifier.0.weight", vec![128, 3136]),
            ("classifier.0.bias", vec![128]),
            ("classifier.3.weight", vec![10, 128]),
            ("classifier.3.bias", vec![10]),
        ];
        let want: Vec<(String, Vec<usize>)> =
            want.into_iter().map(|(n, s)| (n.to_string(), s)).collect();
        assert_eq!(names, want);
        let buffers: Vec<String> = m.buffers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            buffers,
            [
                "features.1.running_mean",
                "features.1.running_var",
                "features.5.running_mean",
                "features.5.running_var"
            ]
        );
        assert_eq!(
            m.param_count(),
            32 * 9 + 64 + 64 * 32 * 9 + 128 + 3136 * 128 + 128 + 1280 + 10
        );
    }

    #[test]
    fn the_layout_without_a_model_matches_the_model() {
        for (arch, bn, dropout) in [
            ("c32,c64,f128", true, 0.25),
            ("c8k5s2/avg,c4/none,f16,f8", false, 0.0),
            ("f10", true, 0.5),
        ] {
            let cfg = config(arch, bn, dropout);
            let m = Cnn::new(cfg.clone(), &mut Rng::new(0), DType::F32).unwrap();
            let (tensors, counters) = m.state().unwrap();
            let mut from_model: Vec<StateEntry> = Vec::new();
            let params: Vec<&str> = m.params().iter().map(|p| p.name.as_str()).collect();
            for t in &tensors {
                from_model.push(StateEntry::Tensor {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    trainable: params.contains(&t.name.as_str()),
                });
                let counter = t.name.replace("running_var", "num_batches_tracked");
                if counters.iter().any(|(n, _)| *n == counter) {
                    from_model.push(StateEntry::Counter { name: counter });
                }
            }
            assert_eq!(state_dict_layout(&cfg).unwrap(), from_model, "{arch}");
            // The size check counts the parameters the model has.
            let (params, bytes) = cfg.training_size(64).unwrap();
            assert_eq!(params as usize, m.param_count(), "{arch}");
            assert!(bytes > params * 4 * WEIGHT_COPIES, "{arch}");
        }
        // Sizes that overflow are no size at all.
        let huge = config("c1048576k1048576", false, 0.0);
        assert_eq!(huge.training_size(64), None);
    }

    #[test]
    fn names_match_the_config_spelling() {
        for a in [
            Activation::Relu,
            Activation::LeakyRelu,
            Activation::Elu,
            Activation::Tanh,
            Activation::Sigmoid,
        ] {
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                format!("\"{}\"", a.name())
            );
        }
    }

    #[test]
    fn init_follows_pytorch_bounds_and_the_seed() {
        let m = Cnn::new(
            config("c32,c64,f128", false, 0.0),
            &mut Rng::new(0),
            DType::F32,
        )
        .unwrap();
        let w: Vec<f32> = m.params()[0].var.flatten_all().unwrap().to_vec1().unwrap();
        let bound = 1.0 / 3.0; // fan_in 9
        assert!(w.iter().all(|x| x.abs() <= bound));
        assert!(w.iter().any(|x| x.abs() > 0.9 * bound));
        assert_eq!(m.params()[1].name, "features.0.bias");
        let again = Cnn::new(
            config("c32,c64,f128", false, 0.0),
            &mut Rng::new(0),
            DType::F32,
        )
        .unwrap();
        let w2: Vec<f32> = again.params()[0]
            .var
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(w, w2);
    }

    #[test]
    fn eval_output_has_one_logit_per_class_and_dropout_only_in_train() {
        let mut m = Cnn::new(config("c4,f8", true, 0.5), &mut Rng::new(0), DType::F32).unwrap();
        let x = Tensor::ones((2, 1, 28, 28), DType::F32, &Device::Cpu).unwrap();
        let mut rng = Rng::new(1);
        let a = m.forward(&x, Mode::Eval, &mut rng).unwrap();
        let b = m.forward(&x, Mode::Eval, &mut rng).unwrap();
        assert_eq!(a.dims(), &[2, 10]);
        let diff = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0);
    }

    #[test]
    fn arch_that_shrinks_the_image_to_nothing_is_rejected() {
        let e = Cnn::new(
            config("c8,c8,c8,c8,c8", false, 0.0),
            &mut Rng::new(0),
            DType::F32,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("layer 5 shrinks"), "{e}");
        let e = Cnn::new(config("c8k40p0", false, 0.0), &mut Rng::new(0), DType::F32)
            .err()
            .unwrap();
        assert!(e.to_string().contains("larger than"), "{e}");
    }
}
