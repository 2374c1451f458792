//! How the key table writes values in the README and in errors: durations (`500ms`) and
//! numbers with thousands separators (`18,000`).

use std::fmt;
use std::time::Duration;

use super::keys::Range;

/// A duration as the README and errors show it: `0`, `10ms`, `1s`, `10m`, `1h`.
pub fn duration_text(d: Duration) -> String {
    if d.is_zero() {
        "0".to_owned()
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// A number with thousands separators (`18,000`, `0.5`), as the README writes numbers.
pub fn grouped(x: f64) -> String {
    if x.fract() != 0.0 || x.abs() >= 1e15 {
        return format!("{x}");
    }
    let digits = format!("{}", x.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

impl fmt::Display for Range {
    /// As the README's "allowed" column shows it (before any note).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Range::Name { max_len } => write!(f, "1 ..= {max_len} of `A-Z a-z 0-9 _ -`"),
            Range::NotEmpty => f.write_str("not empty"),
            Range::Transports => f.write_str("at least one, each at most once"),
            Range::Duration { min, max } => {
                write!(f, "{} ..= {}", duration_text(min), duration_text(max))
            }
            Range::Integer { min, max } if max == i64::MAX => {
                write!(f, "at least {}", grouped(min as f64))
            }
            Range::Integer { min, max } => {
                write!(f, "{} ..= {}", grouped(min as f64), grouped(max as f64))
            }
            Range::IntegerUpTo { min, key } => write!(f, "{} ..= `{key}`", grouped(min as f64)),
            Range::Number {
                min,
                min_exclusive,
                max,
            } => {
                let above = if min_exclusive { "> " } else { "" };
                write!(f, "{above}{} ..= {}", grouped(min), grouped(max))
            }
            Range::AtLeast(min) => write!(f, "at least {}", grouped(min)),
            Range::Thresholds => f.write_str("see [Thresholds](#thresholds)"),
            Range::OneOf(words) => {
                let quoted: Vec<String> = words.iter().map(|w| format!("`\"{w}\"`")).collect();
                write!(f, "one of {}", quoted.join(", "))
            }
        }
    }
}
