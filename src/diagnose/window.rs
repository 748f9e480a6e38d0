//! The step records folded into windows of steps, which the step rules read.

/// The window of steps being filled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filling {
    /// The sum of the records' mean losses x their steps, and the steps.
    pub loss: f64,
    pub steps: u64,
    pub spikes: usize,
    /// Per record: first- and last-layer weight gradient norms, the largest, the median ratio.
    pub signals: Vec<[f64; 4]>,
}

/// One closed window of steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub loss: f64,
    /// The steps it covers.
    pub steps: u64,
    pub spikes: usize,
    /// Median first- and last-layer weight gradient norms, median update/weight ratio (of the
    /// records after the first step).
    pub first_grad: f64,
    pub last_grad: f64,
    pub max_grad: f64,
    pub ratio: f64,
}

/// The median of the values that are not NaN (NaN: not known), or NaN if none is.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
