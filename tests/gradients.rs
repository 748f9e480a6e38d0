//! The model's gradients (candle's backprop through our layers) against central finite
//! differences, in f64 on a tiny network.

use candle_core::{DType, Device, Tensor};
use candletop::model::{cross_entropy, Activation, Cnn, Mode, ModelConfig};
use candletop::rng::Rng;

fn check(activation: Activation, arch: &str, batch_norm: bool) {
    let config = ModelConfig {
        input: [2, 6, 6],
        classes: 3,
        arch: arch.parse().unwrap(),
        activation,
        batch_norm,
        dropout: 0.0,
    };
    let mut model = Cnn::new(config, &mut Rng::new(11), DType::F64).unwrap();
    let mut data_rng = Rng::new(5);
    let x: Vec<f64> = (0..4 * 2 * 36)
        .map(|_| data_rng.uniform(-2.0, 2.0) as f64)
        .collect();
    let x = Tensor::from_vec(x, (4, 2, 6, 6), &Device::Cpu).unwrap();
    let labels = [0u32, 2, 1, 2];
    let mut rng = Rng::new(0);
    let mut loss_of = |m: &mut Cnn| -> f64 {
        let logits = m.forward(&x, Mode::Train, &mut rng).unwrap();
        cross_entropy(&logits, &labels, 0.1)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let logits = model.forward(&x, Mode::Train, &mut Rng::new(0)).unwrap();
    let loss = cross_entropy(&logits, &labels, 0.1).unwrap();
    let grads = loss.backward().unwrap();
    let params = model.params().to_vec();
    let h = 1e-6;
    let mut checked = 0;
    for p in &params {
        let analytic: Vec<f64> = grads
            .get(p.var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let original: Vec<f64> = p.var.flatten_all().unwrap().to_vec1().unwrap();
        // A spread of entries of every parameter.
        let step = (original.len() / 7).max(1);
        for i in (0..original.len()).step_by(step) {
            let mut at = |delta: f64, m: &mut Cnn| {
                let mut w = original.clone();
                w[i] += delta;
                p.var
                    .set(&Tensor::from_vec(w, p.var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss_of(m)
            };
            let numeric = (at(h, &mut model) - at(-h, &mut model)) / (2.0 * h);
            p.var
                .set(&Tensor::from_vec(original.clone(), p.var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let err = (numeric - analytic[i]).abs() / (numeric.abs() + analytic[i].abs()).max(1e-6);
            assert!(
                err < 1e-4,
                "{} [{i}]: backprop {} vs finite difference {numeric} ({activation:?})",
                p.name,
                analytic[i]
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} entries checked");
}

#[test]
fn gradients_match_finite_differences_relu_bn_maxpool() {
    check(Activation::Relu, "c3,f5", true);
}

#[test]
fn gradients_match_finite_differences_other_activations_and_pools() {
    check(Activation::Tanh, "c3k3s2/avg,f4", false);
    check(Activation::Sigmoid, "c2/none,f4", true);
    check(Activation::Elu, "c2k1p0", false);
    check(Activation::LeakyRelu, "c2,f3", true);
}
