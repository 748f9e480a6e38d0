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
        cross_entropy(&logits, &labels, 0.1, None)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let logits = model.forward(&x, Mode::Train, &mut Rng::new(0)).unwrap();
    let loss = cross_entropy(&logits, &labels, 0.1, None).unwrap();
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

/// A random convolution shape: batch, channels in and out, image size, kernel, stride, padding.
struct ConvCase {
    n: usize,
    c: usize,
    o: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    p: usize,
}

impl ConvCase {
    /// Batch 1-3, channels 1-4 in and 1-5 out, images up to 9x9, kernel 1-5, stride 1-2,
    /// padding 0-2; None when the kernel does not fit the padded image.
    fn random(rng: &mut Rng) -> Option<Self> {
        let mut at_most = |n: u64| 1 + rng.below(n) as usize;
        let case = Self {
            n: at_most(3),
            c: at_most(4),
            o: at_most(5),
            h: at_most(9),
            w: at_most(9),
            k: at_most(5),
            s: at_most(2),
            p: at_most(3) - 1,
        };
        (case.h + 2 * case.p >= case.k && case.w + 2 * case.p >= case.k).then_some(case)
    }
}

/// The gradients of sum(y * probe): every gradient of y's graph for an arbitrary upstream
/// gradient `probe`.
fn probed_grads(
    y: &Tensor,
    probe: &Tensor,
) -> candle_core::Result<candle_core::backprop::GradStore> {
    (y * probe)?.sum_all()?.backward()
}

/// Relative error of `got` against `want`, scaled by the largest magnitude in `want`.
fn assert_close(want: &[f64], got: &[f64], what: &str) {
    assert_eq!(want.len(), got.len(), "{what}: lengths differ");
    let scale = want.iter().map(|v| v.abs()).fold(1e-3f64, f64::max);
    for (i, (a, b)) in want.iter().zip(got).enumerate() {
        assert!(
            (a - b).abs() / scale <= 1e-4,
            "{what}[{i}]: reference {a} fast {b}"
        );
    }
}

fn flat64(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// The fused conv block (conv, batch norm in training or folded for evaluation or none,
/// activation, pooling) in f32 against the same block composed from candle's stock ops in f64:
/// output and the gradients of input, weight and bias or (gamma, beta), over random shapes,
/// strides, paddings and options (relative error at most 1e-4).
#[test]
fn fast_conv_block_matches_the_stock_ops() {
    use candle_core::Var;
    use candletop::model::block::{conv_block, BlockSpec, Norm};
    use candletop::model::conv::Method;
    use candletop::model::pool::pool2x2;
    use candletop::model::Pool;
    let acts = [
        None,
        Some(Activation::Relu),
        Some(Activation::LeakyRelu),
        Some(Activation::Elu),
        Some(Activation::Tanh),
        Some(Activation::Sigmoid),
    ];
    let mut rng = Rng::new(8);
    let (mut cases, mut tries) = (0, 0);
    while cases < 80 {
        tries += 1;
        assert!(
            tries < 2000,
            "too few shapes that candle's conv2d backward accepts"
        );
        let Some(mut case) = ConvCase::random(&mut rng) else {
            continue;
        };
        if cases % 4 == 2 {
            // The direct convolution's shapes (a first layer's): 3x3, stride 1, padding 1,
            // rows of 8 to 40 (an odd case, run with Auto, below).
            (case.k, case.s, case.p) = (3, 1, 1);
            case.w = 8 + rng.below(33) as usize;
        }
        let ConvCase {
            n,
            c,
            o,
            h,
            w,
            k,
            s,
            p,
        } = case;
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let pool = [Pool::None, Pool::Max, Pool::Avg][rng.below(3) as usize];
        if pool != Pool::None && (oh < 2 || ow < 2) {
            continue;
        }
        let kind = rng.below(3);
        if kind == 1 && n * oh * ow < 4 {
            continue; // batch statistics of a handful of values: ill-conditioned
        }
        let act = acts[rng.below(acts.len() as u64) as usize];
        let vals = |len: usize, rng: &mut Rng| -> Vec<f32> {
            (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
        };
        let x = Var::from_vec(vals(n * c * h * w, &mut rng), (n, c, h, w), &Device::Cpu).unwrap();
        let wt = Var::from_vec(vals(o * c * k * k, &mut rng), (o, c, k, k), &Device::Cpu).unwrap();
        let plen = if kind == 1 { 2 * o } else { o };
        let pv = Var::from_vec(vals(plen, &mut rng), plen, &Device::Cpu).unwrap();
        let scale: Vec<f64> = (0..o).map(|_| rng.uniform(0.5, 2.0) as f64).collect();
        let norm = match kind {
            0 => Norm::None,
            1 => Norm::Batch { eps: 1e-5 },
            _ => Norm::Folded(scale.clone()),
        };
        let what = format!("n{n} c{c} o{o} {h}x{w} k{k} s{s} p{p} {norm:?} {act:?} {pool:?}");

        // Reference: candle's stock ops in f64.
        let to64 = |v: &Var| Var::from_tensor(&v.to_dtype(DType::F64).unwrap()).unwrap();
        let (x64, w64, p64) = (to64(&x), to64(&wt), to64(&pv));
        let col = |t: &Tensor| t.reshape((1, o, 1, 1)).unwrap();
        let mut y = x64.conv2d(&w64, p, s, 1, 1).unwrap();
        y = match &norm {
            Norm::None => y.broadcast_add(&col(p64.as_tensor())).unwrap(),
            Norm::Batch { eps } => {
                let mean = y.mean_keepdim((0, 2, 3)).unwrap();
                let centred = y.broadcast_sub(&mean).unwrap();
                let var = centred.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
                let gamma = p64.narrow(0, 0, o).unwrap();
                let beta = p64.narrow(0, o, o).unwrap();
                centred
                    .broadcast_div(&(var + *eps).unwrap().sqrt().unwrap())
                    .unwrap()
                    .broadcast_mul(&col(&gamma))
                    .unwrap()
                    .broadcast_add(&col(&beta))
                    .unwrap()
            }
            Norm::Folded(scale) => {
                let sc = Tensor::from_vec(scale.clone(), o, &Device::Cpu).unwrap();
                y.broadcast_mul(&col(&sc))
                    .unwrap()
                    .broadcast_add(&col(p64.as_tensor()))
                    .unwrap()
            }
        };
        if let Some(a) = act {
            y = a.forward(&y).unwrap();
        }
        let reference = pool2x2(&y, pool).unwrap();
        let probe64 = Tensor::from_vec(
            (0..reference.elem_count())
                .map(|_| rng.uniform(-1.0, 1.0) as f64)
                .collect::<Vec<_>>(),
            reference.shape(),
            &Device::Cpu,
        )
        .unwrap();
        let Ok(ref_grads) = probed_grads(&reference, &probe64) else {
            continue; // candle's conv2d backward rejects some strided shapes
        };
        cases += 1;

        // Winograd where it can run, for every other case; Auto picks the direct convolution
        // for the others of its shapes.
        let method = if k == 3 && s == 1 && cases % 2 == 0 {
            Method::Winograd
        } else {
            Method::Auto
        };
        let what = format!("{what} {method:?}");
        let spec = BlockSpec {
            stride: s,
            pad: p,
            norm,
            act,
            pool,
            method,
            grad: true,
        };
        let (fast, _) =
            conv_block(x.as_tensor(), wt.as_tensor(), Some(pv.as_tensor()), spec).unwrap();
        assert_eq!(fast.dims(), reference.dims(), "{what}");
        let probe = probe64.to_dtype(DType::F32).unwrap();
        let grads = probed_grads(&fast, &probe).unwrap();
        assert_close(&flat64(&reference), &flat64(&fast), &format!("{what} y"));
        for (v64, v, name) in [(&x64, &x, "dx"), (&w64, &wt, "dw"), (&p64, &pv, "dp")] {
            assert_close(
                &flat64(ref_grads.get(v64.as_tensor()).unwrap()),
                &flat64(grads.get(v.as_tensor()).unwrap()),
                &format!("{what} {name}"),
            );
        }
    }
}

/// Evaluation with the fast kernels (batch norm folded into the conv) against the stock ops,
/// with running statistics far from their initial values.
#[test]
fn fast_evaluation_matches_the_stock_ops() {
    let config = ModelConfig {
        input: [1, 12, 12],
        classes: 4,
        arch: "c4,c6k5/avg,f8".parse().unwrap(),
        activation: Activation::Relu,
        batch_norm: true,
        dropout: 0.3,
    };
    let mut model = Cnn::new(config, &mut Rng::new(3), DType::F32).unwrap();
    let mut rng = Rng::new(9);
    let x: Vec<f32> = (0..6 * 144).map(|_| rng.uniform(-2.0, 3.0)).collect();
    let x = Tensor::from_vec(x, (6, 1, 12, 12), &Device::Cpu).unwrap();
    // A few training passes move the running statistics (and nothing else).
    for _ in 0..5 {
        model.forward(&x, Mode::Train, &mut rng).unwrap();
    }
    let mut logits = Vec::new();
    for kernels in [Kernels::Stock, Kernels::Fast] {
        model.set_kernels(kernels);
        logits.push(flat64(&model.forward(&x, Mode::Eval, &mut rng).unwrap()));
    }
    assert_close(&logits[0], &logits[1], "eval logits");
}

/// The block's convolution, by im2col and, where the shape allows, by Winograd and the direct
/// kernel, against a direct computation from the definition over random shapes (every other
/// one 3x3 with stride 1, up to 12 input channels, half of those with padding 1 and up to 4): output, input gradient and weight gradient (relative error at
/// most 1e-4). (candle's own conv2d backward fails outright on some of these shapes: stride 2
/// with a remainder.)
#[test]
fn fast_conv_matches_the_definition() {
    use candle_core::Var;
    use candletop::model::block::{conv_block, BlockSpec, Norm};
    use candletop::model::conv::Method;
    use candletop::model::Pool;
    let mut rng = Rng::new(5);
    let mut cases = 0;
    while cases < 60 {
        let Some(mut case) = ConvCase::random(&mut rng) else {
            continue;
        };
        if cases % 2 == 1 {
            (case.k, case.s, case.c) = (3, 1, 1 + rng.below(12) as usize);
            if cases % 4 == 1 {
                // The direct convolution's shapes: padding 1, a few input channels, rows
                // that span up to two sweeps of its 32 columns.
                (case.p, case.c, case.w) =
                    (1, 1 + rng.below(4) as usize, 1 + rng.below(40) as usize);
            }
            if case.h + 2 * case.p < 3 || case.w + 2 * case.p < 3 {
                continue;
            }
        }
        let ConvCase {
            n,
            c,
            o,
            h,
            w,
            k,
            s,
            p,
        } = case;
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
        let methods: &[Method] = if k == 3 && s == 1 && p == 1 && c <= 4 && w >= 8 {
            &[
                Method::Auto,
                Method::Im2col,
                Method::Winograd,
                Method::Direct,
            ]
        } else if k == 3 && s == 1 {
            &[Method::Auto, Method::Im2col, Method::Winograd]
        } else {
            &[Method::Auto, Method::Im2col]
        };
        for &method in methods {
            let spec = BlockSpec {
                stride: s,
                pad: p,
                norm: Norm::None,
                act: None,
                pool: Pool::None,
                method,
                grad: true,
            };
            let (fast, _) = conv_block(x.as_tensor(), wt.as_tensor(), None, spec).unwrap();
            assert_eq!(fast.dims(), &[n, o, oh, ow]);
            let probe = Tensor::from_vec(gv.clone(), fast.shape(), &Device::Cpu).unwrap();
            let grads = probed_grads(&fast, &probe).unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let what = format!("n{n} c{c} o{o} {h}x{w} k{k} s{s} p{p} {method:?}");
            for (want, got, name) in [
                (&y, flat(&fast), "y"),
                (&dx, flat(grads.get(&x).unwrap()), "dx"),
                (&dw, flat(grads.get(&wt).unwrap()), "dw"),
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
}

/// The default model's gradients with the fast kernels are the same bits whichever thread ran
/// which image: on 1, 2 and 3 threads, and again on 2. Runs repeat exactly and a resumed run
/// continues exactly only if this holds.
#[test]
fn fast_gradients_do_not_depend_on_the_threads() {
    let defaults = candletop::config::RunConfig::default();
    assert_eq!(defaults.kernels, Kernels::Fast);
    let config = defaults.model_config([1, 28, 28], 10).unwrap();
    let mut model = Cnn::new(config, &mut Rng::new(3), DType::F32).unwrap();
    model.set_kernels(defaults.kernels);
    let mut data_rng = Rng::new(4);
    let x: Vec<f32> = (0..64 * 28 * 28)
        .map(|_| data_rng.uniform(0.0, 1.0))
        .collect();
    let x = Tensor::from_vec(x, (64, 1, 28, 28), &Device::Cpu).unwrap();
    let labels: Vec<u32> = (0..64).map(|i| (i * 7 % 10) as u32).collect();
    let grads_on = |model: &mut Cnn, threads: usize| -> Vec<Vec<u32>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let logits = model.forward(&x, Mode::Train, &mut Rng::new(9)).unwrap();
            let grads = cross_entropy(&logits, &labels, 0.0, None)
                .unwrap()
                .backward()
                .unwrap();
            model
                .params()
                .iter()
                .map(|p| {
                    let g = grads.get(p.var.as_tensor()).unwrap();
                    let v: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
                    v.into_iter().map(f32::to_bits).collect()
                })
                .collect()
        })
    };
    let two = grads_on(&mut model, 2);
    for threads in [1, 3, 2] {
        let other = grads_on(&mut model, threads);
        for ((a, b), p) in two.iter().zip(&other).zip(model.params()) {
            assert!(a == b, "{}: gradient differs on {threads} threads", p.name);
        }
    }
}

/// The activation probe: the same statistics through the fast kernels as through the stock
/// ops, and the model (weights, running statistics, counters) left as it was. (The counting
/// itself is checked by hand in `model::probe`.)
#[test]
fn activation_statistics_match_the_stock_ops_and_leave_no_trace() {
    let config = ModelConfig {
        input: [1, 12, 12],
        classes: 4,
        arch: "c4,c6k5/avg,f8".parse().unwrap(),
        activation: Activation::Relu,
        batch_norm: true,
        dropout: 0.0,
    };
    let mut model = Cnn::new(config, &mut Rng::new(3), DType::F32).unwrap();
    let mut rng = Rng::new(9);
    let x: Vec<f32> = (0..6 * 144).map(|_| rng.uniform(-2.0, 3.0)).collect();
    let x = Tensor::from_vec(x, (6, 1, 12, 12), &Device::Cpu).unwrap();
    let before = model.state().unwrap();
    let mut got = Vec::new();
    for kernels in [Kernels::Stock, Kernels::Fast] {
        model.set_kernels(kernels);
        got.push(model.probe(&x, &mut Rng::new(1)).unwrap());
    }
    assert_eq!(
        model.state().unwrap(),
        before,
        "the probe changed the model"
    );
    let names: Vec<&str> = got[1].iter().map(|l| l.layer.as_str()).collect();
    assert_eq!(names, ["features.0", "features.4", "classifier.0"]);
    for (s, f) in got[0].iter().zip(&got[1]) {
        assert_eq!(s.layer, f.layer);
        assert!((s.mean - f.mean).abs() < 1e-4, "{s:?} {f:?}");
        assert!((s.std - f.std).abs() < 1e-4, "{s:?} {f:?}");
        assert!(
            (s.dead.unwrap() - f.dead.unwrap()).abs() < 0.02,
            "{s:?} {f:?}"
        );
        assert!((s.outside_5 - f.outside_5).abs() < 0.01, "{s:?} {f:?}");
    }
    assert!(got[1]
        .iter()
        .all(|l| l.dead.is_some_and(|d| (0.0..=1.0).contains(&d))));
}
