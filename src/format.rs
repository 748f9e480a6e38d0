//! How numbers read on screen and in lines: sizes, durations, counts, learning rates; and text
//! wrapped to a width. One place, so that the terminal UI, the headless lines, the figures and
//! the subcommands say things the same way.

/// `1.7 MB` style (powers of 1000, as disks and `ls -h --si` count).
pub fn human_bytes(n: u64) -> String {
    let x = n as f64;
    if x >= 1e9 {
        format!("{:.1} GB", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1} MB", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} kB", x / 1e3)
    } else {
        format!("{n} B")
    }
}

/// `m:ss` or `h:mm:ss`.
pub fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// `421,642`.
pub fn group_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `1.23e-3`: learning rates, gradient norms, ratios.
pub fn sci(x: f64) -> String {
    format!("{x:.2e}")
}

/// `1.5k`, `12k`, `2.5M`, `423`: step counts on an axis.
pub fn compact(x: f64) -> String {
    let a = x.abs();
    let (v, unit) = if a >= 1e6 {
        (x / 1e6, "M")
    } else if a >= 1e4 || (a >= 1e3 && (x / 1e3).fract().abs() < 1e-9) {
        (x / 1e3, "k")
    } else {
        return format!("{x:.0}");
    };
    let s = format!("{v:.1}");
    format!("{}{unit}", s.strip_suffix(".0").unwrap_or(&s))
}

/// `800`, `1k`, `1.2k`, `1.25k`, `2M`: a step count on a figure's axis, whose ticks are round
/// numbers; no thousands separator, which a reader may take for a decimal point.
pub fn steps_label(x: f64) -> String {
    let a = x.abs();
    let (v, unit) = if a >= 1e6 {
        (x / 1e6, "M")
    } else if a >= 1e3 {
        (x / 1e3, "k")
    } else {
        return format!("{x:.0}");
    };
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{unit}")
}

/// `2.31`, `0.0123`, `1.2e18`: a value in few characters (three significant digits).
pub fn short(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 || !x.is_finite() {
        format!("{x}")
    } else if !(1e-3..1e4).contains(&a) {
        format!("{x:.1e}")
    } else {
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    }
}

/// `text` as an error or a screen may show it: control characters (a newline, an escape that
/// would move the terminal's cursor) written as escapes, so that what a user typed or a file
/// held stays on one line and cannot drive the terminal.
pub fn shown(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Why `text` (a spec, a setting) is refused before it is read: it holds a control
/// character. Specs never need one, and every part of an error echoes the text. (A parser
/// that ignores white space around a spec asks about the text within.)
pub fn control_character(text: &str) -> Option<String> {
    text.chars().find(|c| c.is_control()).map(|c| {
        format!(
            "holds the control character {} (specs are printable text)",
            c.escape_default()
        )
    })
}

/// `text` in at most `max` characters (at least 1), its end replaced by `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max.max(1) - 1).collect();
    format!("{head}…")
}

/// `text` in lines of at most `width` characters, broken between words where it can be.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word.to_string();
        loop {
            let (have, need) = (line.chars().count(), word.chars().count());
            let sep = usize::from(have > 0);
            if have + sep + need <= width {
                if sep == 1 {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if have > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A word longer than a line: cut it.
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Serialises an `f32` as the shortest decimal that reads back as it (`0.9`, not the
/// `0.8999999761581421` of its exact f64 value), so that config files say what was written.
pub fn f32_as_written<S: serde::Serializer>(x: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(x.to_string().parse().unwrap_or(*x as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_text_cannot_break_a_line_or_drive_the_terminal() {
        assert_eq!(shown("c32\n\u{1b}[2J"), "c32\\n\\u{1b}[2J");
        assert_eq!(shown("héllo, 5×5"), "héllo, 5×5");
        let e = "c32\u{1b}[2J"
            .parse::<crate::model::Arch>()
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--arch 'c32\\u{1b}[2J': holds the control character \\u{1b} (specs are printable text)"
        );
        // White space around a spec is no part of it (`--arch "$(cat arch.txt)"`).
        assert!("cosine\n".parse::<crate::schedule::ScheduleSpec>().is_ok());
        let e = "cos\tine"
            .parse::<crate::schedule::ScheduleSpec>()
            .unwrap_err();
        assert!(!e.to_string().contains(['\n', '\t']), "{e}");
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(5_100_000), "5.1 MB");
        assert_eq!(human_bytes(1_500), "1.5 kB");
        assert_eq!(human_bytes(2_000_000_000), "2.0 GB");
        assert_eq!(clock(65.0), "1:05");
        assert_eq!(clock(3_725.4), "1:02:05");
        assert_eq!(clock(-3.0), "0:00");
        assert_eq!(group_thousands(421_642), "421,642");
        assert_eq!(group_thousands(12), "12");
        assert_eq!(group_thousands(1_000_000), "1,000,000");
        assert_eq!(sci(0.002), "2.00e-3");
        assert_eq!(short(2.3107), "2.31");
        assert_eq!(short(0.01234), "0.0123");
        assert_eq!(short(123.4), "123");
        assert_eq!(short(2e18), "2.0e18");
    }

    #[test]
    fn wrapping_keeps_every_character_and_breaks_between_words() {
        assert_eq!(
            wrap("epoch 1: val loss 0.25", 10),
            ["epoch 1:", "val loss", "0.25"]
        );
        assert_eq!(wrap("abcdefghij klm", 4), ["abcd", "efgh", "ij", "klm"]);
        assert_eq!(wrap("", 5), [""]);
        assert_eq!(wrap("short", 80), ["short"]);
        let text = "saved runs/20261201-030610/checkpoints/epoch-001.h5 (5.1 MB, 9 ms)";
        for w in 1..40 {
            let lines = wrap(text, w);
            assert!(
                lines.iter().all(|l| l.chars().count() <= w),
                "{w}: {lines:?}"
            );
            assert_eq!(
                lines.join(" ").replace(' ', ""),
                text.replace(' ', ""),
                "{w}"
            );
        }
    }

    #[test]
    fn step_counts_are_short() {
        assert_eq!(compact(0.0), "0");
        let labels: Vec<String> = [0.0, 800.0, 1000.0, 1200.0, 1250.0, 2000.0, 10_000.0, 2.5e6]
            .into_iter()
            .map(steps_label)
            .collect();
        assert_eq!(
            labels,
            ["0", "800", "1k", "1.2k", "1.25k", "2k", "10k", "2.5M"]
        );
        assert_eq!(compact(423.0), "423");
        assert_eq!(compact(1500.0), "1500");
        assert_eq!(compact(2000.0), "2k");
        assert_eq!(compact(14070.0), "14.1k");
        assert_eq!(compact(2_500_000.0), "2.5M");
    }
}
