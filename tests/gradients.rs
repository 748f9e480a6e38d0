//! The model's gradients (candle's backprop through our layers) against central finite
//! differences, in f64 on a tiny network.

use candle_core::{DType, Device, Tensor};
use candletop::model::{cross_entropy, Activation, Cnn, Kernels, Mode, ModelConfig};
use candletop::rng::Rng;

fn check(activation: Activation, arch: &str, batch_norm: bool) {
    for kernels in [Kernels::Fast, Kernels::Stock] {
        check_with(activation, arch, batch_norm, kernels);
    }
}

fn check_with(activation: Activation, arch: &str, batch_norm: bool, kernels: Kernels) {
    let config = ModelConfig {
        input: [2, 6, 6],
        classes: 3,
        arch: arch.parse().unwrap(),
        activation,
        batch_norm,
        dropout: 0.0,
    };
    let mut model = Cnn::new(config, &mut Rng::new(11), DType::F64).unwrap();
    model.set_kernels(kernels);
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
                "{} [{i}]: backprop {} vs finite difference {numeric} ({activation:?}, {kernels:?})",
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

/// The fused batch-norm ops against candle's stock composition: forward, and every gradient,
/// over random shapes (relative error at most 1e-4).
#[test]
fn fast_batch_norm_matches_the_stock_ops() {
    use candle_core::Var;
    use candletop::model::batchnorm::batch_norm_train;
    let mut rng = Rng::new(21);
    for case in 0..12 {
        let dims = (
            1 + rng.below(5) as usize,
            1 + rng.below(6) as usize,
            1 + rng.below(7) as usize,
            1 + rng.below(7) as usize,
        );
        let n: usize = dims.0 * dims.1 * dims.2 * dims.3;
        if n / dims.1 < 2 {
            continue; // one value per channel: the variance is zero and the gradient ill-posed
        }
        let c = dims.1;
        let vals = |k: usize, rng: &mut Rng| -> Vec<f32> {
            (0..k).map(|_| rng.uniform(-3.0, 3.0)).collect()
        };
        let x = Var::from_vec(vals(n, &mut rng), dims, &Device::Cpu).unwrap();
        let g = Var::from_vec(vals(c, &mut rng), c, &Device::Cpu).unwrap();
        let b = Var::from_vec(vals(c, &mut rng), c, &Device::Cpu).unwrap();
        let w = Tensor::from_vec(vals(n, &mut rng), dims, &Device::Cpu).unwrap();
        // Stock: the same formula from candle's ops, in f64 (the f32 stock ops lose digits to
        // cancellation in dx when a channel has few values).
        let x64 = Var::from_tensor(&x.to_dtype(DType::F64).unwrap()).unwrap();
        let g64 = Var::from_tensor(&g.to_dtype(DType::F64).unwrap()).unwrap();
        let b64 = Var::from_tensor(&b.to_dtype(DType::F64).unwrap()).unwrap();
        let mean = x64.mean_keepdim((0, 2, 3)).unwrap();
        let centred = x64.broadcast_sub(&mean).unwrap();
        let var = centred.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
        let stock = centred
            .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(&g64.as_tensor().reshape((1, c, 1, 1)).unwrap())
            .unwrap()
            .broadcast_add(&b64.as_tensor().reshape((1, c, 1, 1)).unwrap())
            .unwrap();
        let (fast, _) =
            batch_norm_train(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-5, None).unwrap();
        let loss = |y: &Tensor| {
            (y * &w.to_dtype(y.dtype()).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let gs = loss(&stock).backward().unwrap();
        let gf = loss(&fast).backward().unwrap();
        let flat = |t: &Tensor| {
            t.flatten_all()
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let close = |a: Vec<f32>, b: Vec<f32>, what: &str| {
            let scale = a.iter().map(|v| v.abs()).fold(1e-3f32, f32::max);
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!(
                    (x - y).abs() / scale <= 1e-4,
                    "case {case} {dims:?} {what}[{i}]: stock {x} fast {y}"
                );
            }
        };
        close(flat(&stock), flat(&fast), "y");
        for (v64, v, what) in [(&x64, &x, "dx"), (&g64, &g, "dgamma"), (&b64, &b, "dbeta")] {
            close(
                flat(gs.get(v64.as_tensor()).unwrap()),
                flat(gf.get(v.as_tensor()).unwrap()),
                what,
            );
        }
    }
}

/// The im2col + gemm convolution against a direct computation from the definition, over random
/// shapes: output, input gradient and weight gradient (relative error at most 1e-4). (candle's
/// own conv2d backward fails outright on some of these shapes: stride 2 with a remainder.)
#[test]
fn fast_conv_matches_the_definition() {
    use candle_core::Var;
    use candletop::model::conv::{conv2d, Epilogue};
    let mut rng = Rng::new(5);
    let mut cases = 0;
    while cases < 60 {
        let (n, c, o) = (
            1 + rng.below(3) as usize,
            1 + rng.below(4) as usize,
            1 + rng.below(5) as usize,
        );
        let (k, s, p) = (
            1 + rng.below(5) as usize,
            1 + rng.below(2) as usize,
            rng.below(3) as usize,
        );
        let (h, w) = (1 + rng.below(9) as usize, 1 + rng.below(9) as usize);
        if h + 2 * p < k || w + 2 * p < k {
            continue;
        }
        cases += 1;
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let vals = |len: usize, rng: &mut Rng| -> Vec<f32> {
            (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
        };
        let (xv, wv, gv) = (
            vals(n * c * h * w, &mut rng),
            vals(o * c * k * k, &mut rng),
            vals(n * o * oh * ow, &mut rng),
        );
        // The definition, in f64: y = sum x * w; with dy = g: dx = sum g * w, dw = sum g * x.
        let (mut y, mut dx, mut dw) = (
            vec![0f64; n * o * oh * ow],
            vec![0f64; xv.len()],
            vec![0f64; wv.len()],
        );
        for b in 0..n {
            for oc in 0..o {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let yi = ((b * o + oc) * oh + oy) * ow + ox;
                        for ic in 0..c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (iy, ix) = (
                                        (oy * s + ky) as isize - p as isize,
                                        (ox * s + kx) as isize - p as isize,
                                    );
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let xi = ((b * c + ic) * h + iy as usize) * w + ix as usize;
                                    let wi = ((oc * c + ic) * k + ky) * k + kx;
                                    y[yi] += xv[xi] as f64 * wv[wi] as f64;
                                    dx[xi] += gv[yi] as f64 * wv[wi] as f64;
                                    dw[wi] += gv[yi] as f64 * xv[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        let x = Var::from_vec(xv, (n, c, h, w), &Device::Cpu).unwrap();
        let wt = Var::from_vec(wv, (o, c, k, k), &Device::Cpu).unwrap();
        let fast = conv2d(
            x.as_tensor(),
            wt.as_tensor(),
            None,
            s,
            p,
            Epilogue::default(),
        )
        .unwrap();
        assert_eq!(fast.dims(), &[n, o, oh, ow]);
        let probe = Tensor::from_vec(gv, fast.shape(), &Device::Cpu).unwrap();
        let grads = (&fast * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let what = format!("n{n} c{c} o{o} {h}x{w} k{k} s{s} p{p}");
        for (want, got, name) in [
            (y, flat(&fast), "y"),
            (dx, flat(grads.get(&x).unwrap()), "dx"),
            (dw, flat(grads.get(&wt).unwrap()), "dw"),
        ] {
            let scale = want.iter().map(|v| v.abs()).fold(1e-3f64, f64::max);
            for (i, (a, b)) in want.iter().zip(&got).enumerate() {
                assert!(
                    (a - *b as f64).abs() / scale <= 1e-4,
                    "{what} {name}[{i}]: definition {a} fast {b}"
                );
            }
        }
    }
}
