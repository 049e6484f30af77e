//! Writing the Prometheus text exposition format (0.0.4) by hand, for the per-probe families.

/// A sample value.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value {
    /// An integer: counters, counts, statuses.
    Int(u64),
    /// Anything else.
    Float(f64),
}

/// `# HELP` and `# TYPE` lines of a family.
pub(super) fn header(out: &mut Vec<u8>, name: &str, kind: &str, help: &str) {
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    for c in help.bytes() {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            c => out.push(c),
        }
    }
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.as_bytes());
    out.push(b'\n');
}

/// One sample line: `{name}{suffix}{labels,extra} value`. `labels` is already rendered (see
/// [`label_pairs`]); `extra` values must not need escaping (bounded enum names and numbers).
pub(super) fn sample(out: &mut Vec<u8>, name: &str, suffix: &str, labels: &str, extra: &[(&str, &str)], value: Value) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
    if !labels.is_empty() || !extra.is_empty() {
        out.push(b'{');
        out.extend_from_slice(labels.as_bytes());
        for (i, (k, v)) in extra.iter().enumerate() {
            if i > 0 || !labels.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"=\"");
            out.extend_from_slice(v.as_bytes());
            out.push(b'"');
        }
        out.push(b'}');
    }
    out.push(b' ');
    value_line_end(out, value);
}

/// One sample line from parts rendered once: `head` is `{name}{suffix}{`, `labels` the probe's
/// label pairs (never empty), `tail` the extra pairs and `} ` (see [`tail`]). Four copies per
/// line instead of one per name, suffix, brace and pair: the per-probe families are most of a
/// large exposition.
pub(super) fn line(out: &mut Vec<u8>, head: &str, labels: &str, tail: &str, value: Value) {
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(labels.as_bytes());
    out.extend_from_slice(tail.as_bytes());
    value_line_end(out, value);
}

/// The end of a line after the given label pairs: `,k="v",…} `. Values must not need escaping.
pub(super) fn tail(extra: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (k, v) in extra {
        s.push(',');
        s.push_str(k);
        s.push_str("=\"");
        s.push_str(v);
        s.push('"');
    }
    s.push_str("} ");
    s
}

fn value_line_end(out: &mut Vec<u8>, value: Value) {
    match value {
        Value::Int(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
        Value::Float(v) => float(out, v),
    }
    out.push(b'\n');
}

fn float(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    }
}

/// Renders `name="value",…` with values escaped as the format requires.
pub(super) fn label_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = String::new();
    for (name, value) in pairs {
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(name);
        s.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s
}

/// The `le` value of a bucket bound, as Go clients write it (`1`, not `1.0`), so series keep
/// their identity if a scrape moves between implementations.
pub(super) fn le(bound: f64) -> String {
    format!("{bound}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_escapes() {
        let labels = label_pairs([("probe", "a\"b\\c\nd"), ("target", "t")]);
        assert_eq!(labels, r#"probe="a\"b\\c\nd",target="t""#);
        let mut out = Vec::new();
        sample(&mut out, "m", "_total", &labels, &[("result", "success")], Value::Int(3));
        sample(&mut out, "g", "", "", &[], Value::Float(f64::INFINITY));
        sample(&mut out, "g", "", "", &[("le", &le(1.0))], Value::Float(0.25));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "m_total{probe=\"a\\\"b\\\\c\\nd\",target=\"t\",result=\"success\"} 3\ng +Inf\ng{le=\"1\"} 0.25\n"
        );
        assert_eq!(le(0.025), "0.025");
        // The same lines from parts rendered once.
        let mut parts = Vec::new();
        line(&mut parts, "m_total{", &labels, &tail(&[("result", "success")]), Value::Int(3));
        let mut whole = Vec::new();
        sample(&mut whole, "m", "_total", &labels, &[("result", "success")], Value::Int(3));
        assert_eq!(parts, whole);
        assert_eq!(tail(&[]), "} ");
    }
}
