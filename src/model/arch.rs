//! The compact architecture string of `--arch`, e.g. `c32,c64,f128`.
//!
//! ```text
//! arch  := layer ("," layer)*            conv layers first, then fully connected ones
//! conv  := "c" OUT ["k" K] ["s" S] ["p" P] ["/" POOL]
//!            OUT out channels; K kernel (default 3); S stride (default 1);
//!            P padding (default K/2, "same" for odd K); POOL max | avg | none (default max, 2x2)
//! fc    := "f" UNITS                     a hidden fully connected layer
//! ```
//! The classifier's last layer (one output per class) is always added.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    Max,
    Avg,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvSpec {
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub pool: Pool,
}

/// The layers of a CNN, without what comes from the data (input shape, classes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arch {
    pub convs: Vec<ConvSpec>,
    pub hidden: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--arch '{}': {problem}", crate::format::cut(arch, 60))]
pub struct ArchError {
    pub arch: String,
    pub problem: String,
}

impl FromStr for Arch {
    type Err = ArchError;

    fn from_str(s: &str) -> Result<Self, ArchError> {
        let err = |problem: String| ArchError {
            arch: crate::format::shown(s),
            problem,
        };
        if let Some(problem) = crate::format::control_character(s.trim()) {
            return Err(err(problem));
        }
        let mut arch = Arch {
            convs: Vec::new(),
            hidden: Vec::new(),
        };
        if s.trim().is_empty() {
            return Err(err("empty; expected layers such as 'c32,c64,f128'".into()));
        }
        let layers = s.split(',').count();
        if layers > MAX_LAYERS {
            return Err(err(format!(
                "{layers} layers; at most {MAX_LAYERS} (deeper models do not train on a CPU here)"
            )));
        }
        for (i, raw) in s.split(',').enumerate() {
            let layer = raw.trim();
            let at = |p: &str| err(format!("layer {} '{layer}': {p}", i + 1));
            let (body, pool) = match layer.split_once('/') {
                Some((b, p)) => (b, Some(p)),
                None => (layer, None),
            };
            let mut chars = body.chars();
            match chars.next() {
                Some('c') => {
                    if !arch.hidden.is_empty() {
                        return Err(at("conv layers must come before fully connected ones"));
                    }
                    let fields = numbers(chars.as_str()).map_err(|p| at(&p))?;
                    let mut out = None;
                    let (mut kernel, mut stride, mut padding) = (3, 1, None);
                    for (key, value) in fields {
                        match key {
                            None => out = Some(value),
                            Some('k') => kernel = value,
                            Some('s') => stride = value,
                            Some('p') => padding = Some(value),
                            Some(other) => {
                                return Err(at(&format!(
                                    "unknown option '{other}' (known: k, s, p)"
                                )))
                            }
                        }
                    }
                    let out_channels =
                        out.ok_or_else(|| at("missing the number of out channels, e.g. 'c32'"))?;
                    if out_channels == 0 || kernel == 0 || stride == 0 {
                        return Err(at("channels, kernel and stride must be at least 1"));
                    }
                    let pool = match pool {
                        None | Some("max") => Pool::Max,
                        Some("avg") => Pool::Avg,
                        Some("none") => Pool::None,
                        Some(p) => {
                            return Err(at(&format!(
                                "unknown pooling '{p}' (known: max, avg, none)"
                            )))
                        }
                    };
                    arch.convs.push(ConvSpec {
                        out_channels,
                        kernel,
                        stride,
                        padding: padding.unwrap_or(kernel / 2),
                        pool,
                    });
                }
                Some('f') => {
                    if pool.is_some() {
                        return Err(at("a fully connected layer has no pooling"));
                    }
                    let units: usize = chars
                        .as_str()
                        .parse()
                        .map_err(|_| at("expected 'f' and a number of units, e.g. 'f128'"))?;
                    if units > MAX_SIZE {
                        return Err(at(&format!("{units} units: at most {MAX_SIZE}")));
                    }
                    if units == 0 {
                        return Err(at("a layer needs at least 1 unit"));
                    }
                    arch.hidden.push(units);
                }
                _ => {
                    return Err(at(
                        "a layer starts with 'c' (convolution) or 'f' (fully connected)",
                    ))
                }
            }
        }
        Ok(arch)
    }
}

/// The most layers an architecture may have: deeper graphs overflow the training thread's
/// stack in the backward pass long before they would train in reasonable time on a CPU.
pub const MAX_LAYERS: usize = 64;

/// The largest number a layer may give (channels, units, kernel, stride, padding); whether
/// the whole model fits in memory is checked against the machine when the run starts.
pub const MAX_SIZE: usize = 1 << 20;

/// Splits "32k5s2p1" into [(None, 32), (Some('k'), 5), (Some('s'), 2), (Some('p'), 1)].
fn numbers(s: &str) -> Result<Vec<(Option<char>, usize)>, String> {
    let mut out = Vec::new();
    let mut key = None;
    let mut digits = String::new();
    let flush = |key: Option<char>, digits: &mut String, out: &mut Vec<_>| -> Result<(), String> {
        if digits.is_empty() {
            return Err(match key {
                Some(k) => format!("'{k}' needs a number after it"),
                None => "missing the number of out channels, e.g. 'c32'".into(),
            });
        }
        let v = digits
            .parse::<usize>()
            .ok()
            .filter(|&v| v <= MAX_SIZE)
            .ok_or_else(|| format!("'{digits}' is too large (at most {MAX_SIZE})"))?;
        out.push((key, v));
        digits.clear();
        Ok(())
    };
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
        } else {
            flush(key, &mut digits, &mut out)?;
            key = Some(ch);
        }
    }
    flush(key, &mut digits, &mut out)?;
    Ok(out)
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for c in &self.convs {
            let mut p = format!("c{}", c.out_channels);
            if c.kernel != 3 {
                p += &format!("k{}", c.kernel);
            }
            if c.stride != 1 {
                p += &format!("s{}", c.stride);
            }
            if c.padding != c.kernel / 2 {
                p += &format!("p{}", c.padding);
            }
            match c.pool {
                Pool::Max => {}
                Pool::Avg => p += "/avg",
                Pool::None => p += "/none",
            }
            parts.push(p);
        }
        parts.extend(self.hidden.iter().map(|u| format!("f{u}")));
        write!(f, "{}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_default_and_options() {
        let a: Arch = "c32,c64,f128".parse().unwrap();
        assert_eq!(a.convs.len(), 2);
        assert_eq!(
            a.convs[1],
            ConvSpec {
                out_channels: 64,
                kernel: 3,
                stride: 1,
                padding: 1,
                pool: Pool::Max
            }
        );
        assert_eq!(a.hidden, vec![128]);
        let b: Arch = "c16k5s2p0/avg, c8/none".parse().unwrap();
        assert_eq!(
            b.convs[0],
            ConvSpec {
                out_channels: 16,
                kernel: 5,
                stride: 2,
                padding: 0,
                pool: Pool::Avg
            }
        );
        assert_eq!(b.convs[1].pool, Pool::None);
        assert!(b.hidden.is_empty());
        assert_eq!(b.to_string(), "c16k5s2p0/avg,c8/none");
        assert_eq!("f10".parse::<Arch>().unwrap().hidden, vec![10]);
    }

    #[test]
    fn rejects_bad_strings_with_the_layer_named() {
        for (s, want) in [
            ("", "empty"),
            ("x32", "starts with 'c'"),
            ("c", "out channels"),
            ("c32k", "'k' needs a number"),
            ("c32q3", "unknown option 'q'"),
            ("c32/min", "unknown pooling 'min'"),
            ("f128,c32", "must come before"),
            ("c0", "at least 1"),
            ("f0", "at least 1"),
            ("c32,,f1", "layer 2"),
            ("c99999999999999999999999", "too large"),
            ("c100000000", "too large (at most 1048576)"),
            ("f18446744073709551615", "at most 1048576"),
        ] {
            let e = s.parse::<Arch>().unwrap_err().to_string();
            assert!(e.contains(want), "{s:?}: {e}");
            assert!(e.starts_with("--arch"), "{e}");
        }
    }

    #[test]
    fn more_layers_than_a_cpu_trains_are_refused() {
        let deep = vec!["c8/none"; MAX_LAYERS + 1].join(",");
        let e = deep.parse::<Arch>().unwrap_err().to_string();
        assert!(e.contains("65 layers; at most 64"), "{e}");
        assert!(
            e.len() < deep.len() / 2,
            "the error shows the start of a long spec: {e}"
        );
        assert!(vec!["f8"; MAX_LAYERS].join(",").parse::<Arch>().is_ok());
    }

    proptest! {
        #[test]
        fn any_string_gives_ok_or_err(s in "[cfksp/0-9a-z,]{0,20}") {
            if let Ok(a) = s.parse::<Arch>() {
                prop_assert_eq!(a.to_string().parse::<Arch>().unwrap(), a);
            }
        }
    }
}
