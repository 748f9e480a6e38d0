//! Class balance: counting, scikit-learn's "balanced" class weights, a sampler that draws every
//! class equally often, and the training sets for experiments (a stratified subset, a
//! geometrically skewed one).

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Images per class (labels beyond `classes`, which the loaders refuse, are not counted).
pub fn class_counts(labels: &[u8], classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for &l in labels {
        if let Some(c) = counts.get_mut(l as usize) {
            *c += 1;
        }
    }
    counts
}

/// `n_samples / (n_classes * count)` per class (scikit-learn's `compute_class_weight
/// ("balanced")`), over the classes present; a class without images gets 0.
pub fn balanced_weights(counts: &[usize]) -> Vec<f32> {
    let n: usize = counts.iter().sum();
    let present = counts.iter().filter(|&&c| c > 0).count().max(1);
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                (n as f64 / (present as f64 * c as f64)) as f32
            }
        })
        .collect()
}

/// The largest class's count over the smallest's (of the classes present).
pub fn imbalance_ratio(counts: &[usize]) -> f64 {
    let present = counts.iter().filter(|&&c| c > 0);
    let max = present.clone().max().copied().unwrap_or(0);
    let min = present.min().copied().unwrap_or(0);
    if min == 0 {
        1.0
    } else {
        max as f64 / min as f64
    }
}

/// How a training epoch visits the images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampler {
    /// Every image once, in a shuffled order.
    #[default]
    Shuffle,
    /// As many draws as images, with replacement, each image weighted by the inverse of its
    /// class's frequency (PyTorch's WeightedRandomSampler with those weights): every class is
    /// drawn equally often on average.
    Balanced,
}

/// Whether the loss weights each sample by its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeights {
    #[default]
    None,
    /// `balanced_weights` of the training set.
    Balanced,
}

/// Epoch `epoch`'s draws for the balanced sampler: a function of the seed and the epoch.
/// Weighting each image by 1/count of its class gives every class the same total weight, so a
/// draw is a uniform class, then a uniform image of it.
pub fn balanced_order(labels: &[u8], classes: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        members[l as usize].push(i);
    }
    members.retain(|m| !m.is_empty());
    let mut rng = Rng::derive(seed, "balanced-sampler", epoch as u64);
    (0..labels.len())
        .map(|_| {
            let m = &members[rng.below(members.len() as u64) as usize];
            m[rng.below(m.len() as u64) as usize]
        })
        .collect()
}

/// A stratified subset of `n` images: each class keeps its share (largest remainders make the
/// total exact), chosen at random (seeded). Indices in ascending order.
pub fn subset(labels: &[u8], classes: usize, n: usize, seed: u64) -> Vec<usize> {
    let counts = class_counts(labels, classes);
    let total = labels.len().max(1);
    let exact: Vec<f64> = counts
        .iter()
        .map(|&c| n as f64 * c as f64 / total as f64)
        .collect();
    let mut keep: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut by_remainder: Vec<usize> = (0..classes).collect();
    by_remainder.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let mut short = n - keep.iter().sum::<usize>();
    for c in by_remainder {
        if short == 0 {
            break;
        }
        if keep[c] < counts[c] {
            keep[c] += 1;
            short -= 1;
        }
    }
    take_per_class(labels, classes, &keep, seed, "subset")
}

/// Class k keeps `m * ratio^(-k / (classes - 1))` images, `m` the smallest class's count: the
/// first class has `ratio` times as many as the last. Chosen at random (seeded).
pub fn skewed(labels: &[u8], classes: usize, ratio: f64, seed: u64) -> Vec<usize> {
    let counts = class_counts(labels, classes);
    let m = counts.iter().copied().filter(|&c| c > 0).min().unwrap_or(0) as f64;
    let keep: Vec<usize> = (0..classes)
        .map(|k| {
            let share = ratio.powf(-(k as f64) / (classes.max(2) - 1) as f64);
            ((m * share).round() as usize).clamp(1, counts[k].max(1))
        })
        .collect();
    take_per_class(labels, classes, &keep, seed, "imbalance")
}

/// A share `p` of the labels, chosen at random (seeded), each changed to another class drawn
/// uniformly from the rest: symmetric label noise (Natarajan et al. 2013; the usual noisy-label
/// benchmark). Returns how many labels changed.
pub fn flip_labels(labels: &mut [u8], classes: usize, p: f64, seed: u64) -> usize {
    if classes < 2 || p <= 0.0 {
        return 0;
    }
    let n = ((labels.len() as f64) * p).round() as usize;
    let mut rng = Rng::derive(seed, "label-noise", 0);
    let mut order: Vec<usize> = (0..labels.len()).collect();
    rng.shuffle(&mut order);
    for &i in &order[..n.min(labels.len())] {
        // One of the other classes: skip over the true one.
        let other = rng.below(classes as u64 - 1) as u8;
        labels[i] = if other >= labels[i] { other + 1 } else { other };
    }
    n
}

fn take_per_class(
    labels: &[u8],
    classes: usize,
    keep: &[usize],
    seed: u64,
    stream: &str,
) -> Vec<usize> {
    let mut rng = Rng::derive(seed, stream, 0);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        members[l as usize].push(i);
    }
    let mut out = Vec::new();
    for (c, mut m) in members.into_iter().enumerate() {
        rng.shuffle(&mut m);
        m.truncate(keep[c]);
        out.extend(m);
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_noise_changes_exactly_its_share_each_to_another_class() {
        let clean: Vec<u8> = (0..1000).map(|i| (i % 10) as u8).collect();
        let mut noisy = clean.clone();
        assert_eq!(flip_labels(&mut noisy, 10, 0.2, 7), 200);
        let changed: Vec<usize> = (0..1000).filter(|&i| noisy[i] != clean[i]).collect();
        assert_eq!(
            changed.len(),
            200,
            "every chosen label moves to another class"
        );
        assert!(noisy.iter().all(|&l| l < 10));
        // The new classes spread over all the others (a uniform draw of 9: each about 22).
        let counts = class_counts(&changed.iter().map(|&i| noisy[i]).collect::<Vec<_>>(), 10);
        assert!(counts.iter().all(|&c| (8..=40).contains(&c)), "{counts:?}");
        // Seeded: the same seed flips the same labels the same way.
        let mut again = clean.clone();
        flip_labels(&mut again, 10, 0.2, 7);
        assert_eq!(again, noisy);
        let mut none = clean.clone();
        assert_eq!(flip_labels(&mut none, 10, 0.0, 7), 0);
        assert_eq!(none, clean);
    }

    #[test]
    fn balanced_weights_match_a_hand_computation() {
        // 10 images: 6, 3, 1. n / (k * count) = 10/18, 10/9, 10/3.
        let labels = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2];
        let counts = class_counts(&labels, 3);
        assert_eq!(counts, vec![6, 3, 1]);
        let w = balanced_weights(&counts);
        for (a, b) in w.iter().zip([10.0 / 18.0, 10.0 / 9.0, 10.0 / 3.0]) {
            assert!((a - b).abs() < 1e-6, "{w:?}");
        }
        // Weighted, every class counts the same: sum over images of w = n.
        let total: f32 = labels.iter().map(|&l| w[l as usize]).sum();
        assert!((total - 10.0).abs() < 1e-5);
        assert_eq!(balanced_weights(&[4, 0, 4]), vec![1.0, 0.0, 1.0]);
        assert_eq!(imbalance_ratio(&[6, 3, 1]), 6.0);
    }

    #[test]
    fn the_balanced_sampler_draws_classes_equally_and_repeats() {
        let labels: Vec<u8> = (0..10_000).map(|i| if i < 9_000 { 0 } else { 1 }).collect();
        let order = balanced_order(&labels, 2, 4, 1);
        assert_eq!(order.len(), 10_000);
        let ones = order.iter().filter(|&&i| labels[i] == 1).count();
        assert!((4_700..5_300).contains(&ones), "{ones}");
        assert_eq!(order, balanced_order(&labels, 2, 4, 1));
        assert_ne!(order, balanced_order(&labels, 2, 4, 2));
    }

    #[test]
    fn subsets_are_stratified_and_exact() {
        let labels: Vec<u8> = (0..1000).map(|i| (i % 10) as u8).collect();
        let s = subset(&labels, 10, 95, 1);
        assert_eq!(s.len(), 95);
        let counts = class_counts(&s.iter().map(|&i| labels[i]).collect::<Vec<_>>(), 10);
        assert!(counts.iter().all(|&c| c == 9 || c == 10), "{counts:?}");
        assert_eq!(s, subset(&labels, 10, 95, 1));
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn skewed_sets_decay_geometrically_to_the_ratio() {
        let labels: Vec<u8> = (0..1000).map(|i| (i % 10) as u8).collect();
        let s = skewed(&labels, 10, 10.0, 1);
        let counts = class_counts(&s.iter().map(|&i| labels[i]).collect::<Vec<_>>(), 10);
        assert_eq!(counts[0], 100);
        assert_eq!(counts[9], 10);
        for k in 0..10 {
            let want = 100.0 * 10f64.powf(-(k as f64) / 9.0);
            assert!((counts[k] as f64 - want).abs() <= 0.5, "{counts:?}");
        }
        assert!((imbalance_ratio(&counts) - 10.0).abs() < 1e-9);
    }
}
