//! The default model trained for a while on the embedded Fashion-MNIST images, then run with
//! its first conv layer by the direct convolution and its second by Winograd (as training
//! runs them), and with both by im2col: logits and every parameter's gradient agree within
//! 1e-4 relative. The random weights of `gradients.rs` are
//! small and evenly spread; trained filters are not.
//!
//! In a test binary of its own: it switches the conv method for the whole process.

use candle_core::{DType, Device, Tensor};
use candletop::config::RunConfig;
use candletop::data::{DataSpec, DataSplits};
use candletop::model::conv::{self, Geometry, Method};
use candletop::model::{cross_entropy, Cnn, Mode};
use candletop::rng::Rng;

const BATCH: usize = 64;

fn batch(data: &DataSplits, first: usize) -> (Tensor, Vec<u32>) {
    let train = &data.train;
    let pixels = train.channels * train.height * train.width;
    let n = train.labels.len();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in (first..first + BATCH).map(|i| i % n) {
        let img = &train.images[i * pixels..][..pixels];
        x.extend(img.iter().map(|&p| (p as f32 / 255.0 - 0.286) / 0.353));
        y.push(train.labels[i] as u32);
    }
    let shape = (BATCH, train.channels, train.height, train.width);
    (Tensor::from_vec(x, shape, &Device::Cpu).unwrap(), y)
}

/// Logits and every parameter's gradient for one batch, flattened to f64.
fn logits_and_grads(model: &mut Cnn, x: &Tensor, y: &[u32]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let logits = model.forward(x, Mode::Train, &mut Rng::new(1)).unwrap();
    let grads = cross_entropy(&logits, y, 0.0, None)
        .unwrap()
        .backward()
        .unwrap();
    let flat = |t: &Tensor| -> Vec<f64> {
        let t = t.flatten_all().unwrap().to_dtype(DType::F64).unwrap();
        t.to_vec1().unwrap()
    };
    let g = model
        .params()
        .iter()
        .map(|p| flat(grads.get(p.var.as_tensor()).unwrap()))
        .collect();
    (flat(&logits), g)
}

fn assert_close(want: &[f64], got: &[f64], what: &str) {
    let scale = want.iter().map(|v| v.abs()).fold(1e-6f64, f64::max);
    let worst = want
        .iter()
        .zip(got)
        .map(|(a, b)| (a - b).abs() / scale)
        .fold(0f64, f64::max);
    assert!(worst <= 1e-4, "{what}: relative error {worst:e}");
}

#[test]
fn winograd_matches_im2col_on_a_trained_model() {
    let cfg = RunConfig::default();
    let data = DataSplits::load(&DataSpec::Embedded, &cfg.data_options()).unwrap();
    let t = &data.train;
    let config = cfg
        .model_config([t.channels, t.height, t.width], 10)
        .unwrap();
    let mut model = Cnn::new(config, &mut Rng::new(3), DType::F32).unwrap();
    // The second conv layer of the default model is one Winograd takes; the first, one for
    // the direct convolution where the CPU has AVX2 and FMA (else im2col).
    let g = Geometry::new((32, 14, 14), 3, 1, 1).unwrap();
    assert_eq!(Method::Auto.resolve(&g).unwrap(), Method::Winograd);
    let g1 = Geometry::new((1, 28, 28), 3, 1, 1).unwrap();
    let simd = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    let first_method = if simd { Method::Direct } else { Method::Im2col };
    assert_eq!(Method::Auto.resolve(&g1).unwrap(), first_method);

    // 60 steps of plain SGD move the filters well away from their initial spread.
    let first: Vec<f32> = model.params()[0]
        .var
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for step in 0..60 {
        let (x, y) = batch(&data, step * BATCH);
        let logits = model
            .forward(&x, Mode::Train, &mut Rng::new(step as u64))
            .unwrap();
        let loss = cross_entropy(&logits, &y, 0.0, None).unwrap();
        let grads = loss.backward().unwrap();
        for p in model.params() {
            let g = grads.get(p.var.as_tensor()).unwrap();
            p.var
                .set(&(p.var.as_tensor() - (g * 0.05).unwrap()).unwrap())
                .unwrap();
        }
    }
    let now: Vec<f32> = model.params()[0]
        .var
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let moved = first.iter().zip(&now).any(|(a, b)| (a - b).abs() > 1e-2);
    assert!(moved, "training did not move the first filters");

    let (x, y) = batch(&data, 7 * BATCH + 5);
    let (logits_w, grads_w) = logits_and_grads(&mut model, &x, &y);
    conv::auto_fast(false);
    let (logits_i, grads_i) = logits_and_grads(&mut model, &x, &y);
    conv::auto_fast(true);
    assert_close(&logits_i, &logits_w, "logits");
    for ((p, want), got) in model.params().iter().zip(&grads_i).zip(&grads_w) {
        assert_close(want, got, &format!("gradient of {}", p.name));
    }
}
