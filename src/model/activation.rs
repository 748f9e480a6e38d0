//! The activation functions: as candle ops (the stock path) and per value, with the
//! derivative written in terms of the output (the fused kernels' epilogue and backward pass).

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

use super::cpu::Float;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    LeakyRelu,
    Elu,
    Tanh,
    Sigmoid,
}

impl Activation {
    pub const LEAKY_SLOPE: f64 = 0.01;

    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Relu => x.relu(),
            Self::LeakyRelu => candle_nn::ops::leaky_relu(x, Self::LEAKY_SLOPE),
            Self::Elu => x.elu(1.0),
            Self::Tanh => x.tanh(),
            Self::Sigmoid => candle_nn::ops::sigmoid(x),
        }
    }

    /// The activation of one value: the epilogue of the fused kernels.
    #[inline]
    pub fn apply<T: Float>(self, x: T) -> T {
        match self {
            Self::Relu => {
                if x > T::zero() {
                    x
                } else {
                    T::zero()
                }
            }
            Self::LeakyRelu => {
                if x > T::zero() {
                    x
                } else {
                    x * T::from_f64(Self::LEAKY_SLOPE)
                }
            }
            Self::Elu => {
                if x >= T::zero() {
                    x
                } else {
                    T::from_f64(x.to_f64().exp_m1())
                }
            }
            Self::Tanh => T::from_f64(x.to_f64().tanh()),
            Self::Sigmoid => T::from_f64(1.0 / (1.0 + (-x.to_f64()).exp())),
        }
    }

    /// The derivative at x written in terms of the output y = f(x), so that a fused kernel's
    /// backward pass needs only its output.
    #[inline]
    pub fn slope_at_output<T: Float>(self, y: T) -> T {
        let one = T::from_f64(1.0);
        match self {
            Self::Relu => {
                if y > T::zero() {
                    one
                } else {
                    T::zero()
                }
            }
            Self::LeakyRelu => {
                if y > T::zero() {
                    one
                } else {
                    T::from_f64(Self::LEAKY_SLOPE)
                }
            }
            Self::Elu => {
                if y >= T::zero() {
                    one
                } else {
                    y + one
                }
            }
            Self::Tanh => one - y * y,
            Self::Sigmoid => y * (one - y),
        }
    }

    /// The name used on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Relu => "relu",
            Self::LeakyRelu => "leaky_relu",
            Self::Elu => "elu",
            Self::Tanh => "tanh",
            Self::Sigmoid => "sigmoid",
        }
    }

    /// The equivalent `torch.nn` module.
    pub fn torch_name(self) -> &'static str {
        match self {
            Self::Relu => "ReLU",
            Self::LeakyRelu => "LeakyReLU",
            Self::Elu => "ELU",
            Self::Tanh => "Tanh",
            Self::Sigmoid => "Sigmoid",
        }
    }
}
