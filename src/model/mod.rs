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

pub mod arch;
pub mod layers;
pub mod pool;

use candle_core::{DType, Device, Module, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;
pub use arch::{Arch, ArchError, ConvSpec, Pool};
pub use layers::{cross_entropy, Activation, Mode};
use layers::{BatchNorm2d, Conv2d, Linear};

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

impl ModelConfig {
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

/// A named trainable parameter.
#[derive(Clone)]
pub struct Param {
    pub name: String,
    pub var: Var,
}

pub struct Cnn {
    config: ModelConfig,
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
    ) -> std::result::Result<Self, crate::Error> {
        let shapes = config.feature_shapes()?;
        let dev = Device::Cpu;
        let mut features = Vec::new();
        let mut in_c = config.input[0];
        for conv in &config.arch.convs {
            features.push(Layer::Conv(Conv2d::new(
                rng,
                in_c,
                conv.out_channels,
                conv.kernel,
                conv.stride,
                conv.padding,
                !config.batch_norm,
                dtype,
                &dev,
            )?));
            if config.batch_norm {
                features.push(Layer::BatchNorm(BatchNorm2d::new(
                    conv.out_channels,
                    dtype,
                    &dev,
                )?));
            }
            features.push(Layer::Act(config.activation));
            if conv.pool != Pool::None {
                features.push(Layer::Pool(conv.pool));
            }
            in_c = conv.out_channels;
        }
        if config.dropout > 0.0 && !config.arch.convs.is_empty() {
            features.push(Layer::Dropout(config.dropout));
        }
        let mut in_f = shapes
            .last()
            .copied()
            .unwrap_or(config.input)
            .iter()
            .product::<usize>();
        let mut classifier = Vec::new();
        for &units in &config.arch.hidden {
            classifier.push(Layer::Linear(Linear::new(rng, in_f, units, dtype, &dev)?));
            classifier.push(Layer::Act(config.activation));
            if config.dropout > 0.0 {
                classifier.push(Layer::Dropout(config.dropout));
            }
            in_f = units;
        }
        classifier.push(Layer::Linear(Linear::new(
            rng,
            in_f,
            config.classes,
            dtype,
            &dev,
        )?));
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
            features,
            classifier,
            params,
        })
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
        let c = &self.config;
        format!(
            "{} {}{}{} ({} params)",
            c.arch,
            serde_json::to_value(c.activation)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            if c.batch_norm { " bn" } else { "" },
            if c.dropout > 0.0 {
                format!(" dropout {}", c.dropout)
            } else {
                String::new()
            },
            group_thousands(self.param_count())
        )
    }
}

fn run(layer: &mut Layer, x: &Tensor, mode: Mode, rng: &mut Rng) -> Result<Tensor> {
    match layer {
        Layer::Conv(c) => c.forward(x),
        Layer::BatchNorm(bn) => bn.forward(x, mode),
        Layer::Act(a) => a.forward(x),
        Layer::Pool(kind) => pool::pool2x2(x, *kind),
        Layer::Dropout(p) => layers::dropout(x, *p, mode, rng),
        Layer::Linear(l) => l.forward(x),
    }
}

pub fn group_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
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
