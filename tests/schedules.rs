//! Every schedule against PyTorch's own schedulers: the LR of every step (and the cycled
//! momentum) within 1e-6, relative, of the values in `tests/reference/schedules.json`, which
//! `tests/reference/schedules.py` wrote with PyTorch.

use candletop::schedule::{Schedule, ScheduleSpec};
use serde_json::Value;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1e-12)
}

#[test]
fn every_schedule_follows_pytorch_step_by_step() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/schedules.json"
    );
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() >= 14);
    for c in cases {
        let text = c["spec"].as_str().unwrap();
        let spec: ScheduleSpec = text.parse().unwrap();
        let (epochs, spe) = (
            c["epochs"].as_u64().unwrap(),
            c["steps_per_epoch"].as_u64().unwrap(),
        );
        let base = c["base_lr"].as_f64().unwrap();
        let want: Vec<f64> = c["lr"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(want.len() as u64, epochs * spe, "{text}");
        let momentum: Option<Vec<f64>> = c["momentum"]
            .as_array()
            .map(|m| m.iter().map(|v| v.as_f64().unwrap()).collect());
        let metrics: Option<Vec<f64>> = c["metrics"]
            .as_array()
            .map(|m| m.iter().map(|v| v.as_f64().unwrap()).collect());
        let mut s = Schedule::new(spec, base, 0, epochs * spe, (0, 0), spe);
        for e in 0..epochs {
            for i in 0..spe {
                let step = e * spe + i + 1;
                let got = s.lr_at(step);
                let lr = want[(step - 1) as usize];
                assert!(close(got, lr), "{text}: step {step}: {got} vs PyTorch {lr}");
                if let Some(m) = &momentum {
                    let got = s.momentum_at(step).expect("a cycled momentum");
                    let m = m[(step - 1) as usize];
                    assert!(close(got, m), "{text}: step {step}: momentum {got} vs {m}");
                }
            }
            if let Some(m) = &metrics {
                let v = m[e as usize];
                s.end_epoch((e + 1) * spe + 1, v, v);
            }
        }
    }
}
