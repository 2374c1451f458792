//! How the key table writes values in the README and in errors: durations (`500ms`) and
//! numbers with thousands separators (`18,000`).

use std::time::Duration;

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
