//! The words of a spec: what is wrong with one (`SpecError`) and the small parsers every kind
//! uses for its values (numbers, counts, factors, `key=value` lists, positional values).

/// A spec that does not parse, or does not fit the run: the spec, the part at fault, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("--schedule '{spec}': {part}{problem}")]
pub struct SpecError {
    pub spec: String,
    /// `at 'x': ` or empty.
    part: String,
    problem: String,
}

impl SpecError {
    /// A problem with one part of the spec.
    pub fn at(part: &str, problem: impl Into<String>) -> Self {
        Self {
            spec: String::new(),
            part: format!("at '{part}': "),
            problem: problem.into(),
        }
    }

    /// A problem with the spec as a whole.
    pub fn whole(problem: impl Into<String>) -> Self {
        Self {
            spec: String::new(),
            part: String::new(),
            problem: problem.into(),
        }
    }

    /// The same problem, naming the spec it is in.
    pub fn of(mut self, spec: &str) -> Self {
        self.spec = crate::format::shown(spec);
        self
    }

    /// The problem without the spec (for a form that shows the spec itself).
    pub fn problem(&self) -> String {
        format!("{}{}", self.part, self.problem)
    }
}

pub fn number(part: &str, text: &str, what: &str) -> Result<f64, SpecError> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(SpecError::at(
            part,
            format!("'{text}' is not a number ({what})"),
        )),
    }
}

pub fn count(part: &str, text: &str, what: &str) -> Result<u64, SpecError> {
    text.trim()
        .parse::<u64>()
        .map_err(|_| SpecError::at(part, format!("'{text}' is not a whole number ({what})")))
}

pub fn positive(part: &str, v: f64, what: &str) -> Result<f64, SpecError> {
    if v > 0.0 {
        Ok(v)
    } else {
        Err(SpecError::at(part, format!("{what} must be above 0")))
    }
}

/// A learning rate in a spec (a floor or a peak): one `--lr` would take, or 0 when
/// `zero_ok` (a floor of nothing).
pub fn learning_rate(part: &str, text: &str, what: &str, zero_ok: bool) -> Result<f64, SpecError> {
    let v = number(part, text, what)?;
    if zero_ok && v == 0.0 {
        return Ok(0.0);
    }
    if zero_ok && v < 0.0 {
        return Err(SpecError::at(part, format!("{what} cannot be negative")));
    }
    if v <= 0.0 {
        return Err(SpecError::at(part, format!("{what} must be above 0")));
    }
    super::LearningRate::new(v)
        .map(f64::from)
        .map_err(|e| SpecError::at(part, format!("{what}: {e}")))
}

/// Zero or more.
pub fn non_negative(part: &str, text: &str, what: &str) -> Result<f64, SpecError> {
    let v = number(part, text, what)?;
    if v < 0.0 {
        return Err(SpecError::at(part, format!("{what} cannot be negative")));
    }
    Ok(v)
}

/// A factor that lowers the LR: in (0, 1].
pub fn factor(part: &str, v: f64, what: &str) -> Result<f64, SpecError> {
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(SpecError::at(part, format!("{what} must be in (0, 1]")))
    }
}

/// `key=value` pairs, comma-separated; a key alone is `key=` (a flag). Each comes with the
/// item it was written as, for errors: `(item, key, value)`.
pub fn pairs(args: &str) -> Result<Vec<(&str, &str, &str)>, SpecError> {
    if args.is_empty() {
        return Ok(Vec::new());
    }
    args.split(',')
        .map(|item| {
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            if k.trim().is_empty() {
                return Err(SpecError::at(item, "expected key=value"));
            }
            Ok((item, k.trim(), v.trim()))
        })
        .collect()
}

pub fn unknown(item: &str, key: &str, known: &str) -> SpecError {
    SpecError::at(item, format!("unknown parameter '{key}' (known: {known})"))
}

/// Up to two positional values (`7:0.1`) or the same as named ones (`every=7,gamma=0.1`); a
/// second name of `""` means one value only.
pub fn positional_or_named<'a>(
    args: &'a str,
    names: &[&str; 2],
) -> Result<(Option<&'a str>, Option<&'a str>), SpecError> {
    if args.is_empty() {
        return Ok((None, None));
    }
    if args.contains('=') {
        let (mut a, mut b) = (None, None);
        for (item, k, v) in pairs(args)? {
            if k == names[0] {
                a = Some(v);
            } else if !names[1].is_empty() && k == names[1] {
                b = Some(v);
            } else {
                let known: Vec<&str> = names.iter().copied().filter(|n| !n.is_empty()).collect();
                return Err(unknown(item, k, &known.join(", ")));
            }
        }
        return Ok((a, b));
    }
    let mut parts = args.split(':');
    let a = parts.next();
    let b = parts.next();
    if let Some(extra) = parts.next() {
        return Err(SpecError::at(extra, "one value too many"));
    }
    if b.is_some() && names[1].is_empty() {
        return Err(SpecError::at(args, "one value too many"));
    }
    Ok((a, b))
}
