//! Numbers as a reader wants them on a projector: few digits, a unit, thousands separated.
//! Shared by the page and the loadgen's terminal summary, so both print a figure the same way.

/// A latency: `0.42 ms`, `4.2 ms`, `420 ms`, `1.23 s`.
pub fn ms(v: f64) -> String {
    if !v.is_finite() {
        "—".into()
    } else if v >= 1000.0 && (v / 1000.0).fract() == 0.0 {
        format!("{:.0} s", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

/// A count with thousands separators: `1,234,567`.
pub fn count(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate or other real number: two significant decimals when small, separators when large.
pub fn real(v: f64) -> String {
    if !v.is_finite() {
        "—".into()
    } else if v.abs() >= 100.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        format!("{sign}{}", count(v.abs().round() as u64))
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A value as a scenario states it: whole numbers without decimals (`20`, `1,000`), others as
/// [`real`] (`0.50`).
pub fn value(v: f64) -> String {
    if v.fract() == 0.0 && (0.0..1e15).contains(&v) {
        count(v as u64)
    } else {
        real(v)
    }
}

/// Bytes: `222 B`, `1.4 kB`, `2.3 MB` (powers of 1000, as network people count).
pub fn bytes(v: f64) -> String {
    if !v.is_finite() {
        "—".into()
    } else if v >= 1e9 {
        format!("{:.1} GB", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1} MB", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0} kB", v / 1e3)
    } else if v >= 1e3 {
        format!("{:.1} kB", v / 1e3)
    } else {
        format!("{v:.0} B")
    }
}

/// A share 0..=1 as a percentage: `37%`, `0.7%`.
pub fn share(v: f64) -> String {
    if !v.is_finite() {
        "—".into()
    } else if v == 0.0 || v >= 0.1 {
        format!("{:.0}%", v * 100.0)
    } else {
        format!("{:.1}%", v * 100.0)
    }
}

/// Mebibytes from bytes: `38.2 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Who each message was for, as a reader is told it (`chat.mode`; results without one were
/// all `all`), named after Socket.IO's broadcast forms.
pub fn chat_mode(mode: Option<&str>) -> String {
    match mode.unwrap_or("all") {
        "all" => "everyone in the room, the sender included (io.emit)".into(),
        "others" => "everyone but the sender (socket.broadcast.emit)".into(),
        "direct" => "one other client per message, in turn (socket.emit to one socket)".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(ms(0.423), "0.42 ms");
        assert_eq!(ms(250.0), "250 ms");
        assert_eq!(ms(1234.0), "1.23 s");
        assert_eq!(ms(25_000.0), "25 s");
        assert_eq!(real(612.4), "612");
        assert_eq!(real(2.033), "2.03");
        assert_eq!(bytes(222.0), "222 B");
        assert_eq!(bytes(1400.0), "1.4 kB");
        assert_eq!(share(0.0067), "0.7%");
        assert_eq!(share(0.37), "37%");
    }
}
