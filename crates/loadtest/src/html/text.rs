//! Text for people: escaped, with thousands grouped, durations in units that read.

/// Escapes text for HTML element content and quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `50000` → `50,000`.
pub(super) fn thousands(n: u64) -> String {
    let digits: Vec<char> = n.to_string().chars().collect();
    let groups: Vec<String> = digits
        .rchunks(3)
        .rev()
        .map(|group| group.iter().collect())
        .collect();
    groups.join(",")
}

pub(super) fn signed_thousands(n: i64) -> String {
    let magnitude = thousands(n.unsigned_abs());
    if n < 0 {
        format!("−{magnitude}")
    } else {
        magnitude
    }
}

/// A tick value with as many decimals as its step needs, grouped by thousands.
pub(super) fn number(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        // The tolerance keeps 0.1 (whose log is not exactly -1) at one decimal.
        (-step.log10() - 1e-9).ceil() as usize
    };
    if decimals == 0 {
        return signed_thousands(value.round() as i64);
    }
    format!("{value:.decimals$}")
}

/// Milliseconds for people: `12.3 ms`, `2,533.4 ms`, or seconds from 10 s on.
pub(super) fn duration_ms(value_ms: f64) -> String {
    if value_ms >= 10_000.0 {
        return format!("{:.2} s", value_ms / 1e3);
    }
    let tenths = (value_ms.max(0.0) * 10.0).round() as u64;
    format!("{}.{} ms", thousands(tenths / 10), tenths % 10)
}
