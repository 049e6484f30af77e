//! Writing the Prometheus text exposition format (0.0.4) and OpenMetrics 1.0.0 by hand, for the
//! per-probe families. The two differ in the metadata lines (an OpenMetrics counter's family is
//! named without `_total`, an info family without `_info`), in `_created` samples, exemplars and
//! the closing `# EOF`, which the callers write.

/// A sample value.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value {
    /// An integer: counters, counts, statuses.
    Int(u64),
    /// Anything else.
    Float(f64),
}

/// `# HELP` and `# TYPE` lines of a family named `name` (its samples' name for a gauge, with
/// `_total` for a counter); with `open_metrics`, as OpenMetrics names and types it.
pub(super) fn header(out: &mut Vec<u8>, name: &str, kind: &str, help: &str, open_metrics: bool) {
    let (name, kind) = if open_metrics { open_metrics_family(name, kind) } else { (name, kind) };
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    for c in help.bytes() {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            // The text format leaves quotes in help as they are; OpenMetrics escapes them.
            b'"' if open_metrics => out.extend_from_slice(b"\\\""),
            c => out.push(c),
        }
    }
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.as_bytes());
    out.push(b'\n');
}

/// The OpenMetrics family name and type of a family whose samples are called `name`: a
/// counter's family drops `_total`, and a gauge called `…_info` is an info family without it.
pub(super) fn open_metrics_family<'a>(name: &'a str, kind: &'a str) -> (&'a str, &'a str) {
    match kind {
        "counter" => (name.strip_suffix("_total").unwrap_or(name), kind),
        "gauge" => match name.strip_suffix("_info") {
            Some(family) => (family, "info"),
            None => (name, kind),
        },
        _ => (name, kind),
    }
}

/// Turns the text format of a `prometheus` crate registry (which has no OpenMetrics encoder)
/// into OpenMetrics: its families' metadata renamed as [`open_metrics_family`] does, help
/// escaped as OpenMetrics escapes it. Samples are the same in both.
pub(super) fn text_to_open_metrics(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 64);
    let mut help: Option<(&str, &str)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ');
            continue;
        }
        if let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|rest| rest.split_once(' ')) {
            // The text encoder writes each family's HELP just before its TYPE, escaped for
            // the text format: taken back to the raw text first.
            let raw = help.filter(|(n, _)| *n == name).map(|(_, h)| unescape_help(h));
            header(&mut out, name, kind, raw.as_deref().unwrap_or(""), true);
            help = None;
            continue;
        }
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
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

/// Help text as the text format escaped it (backslashes and newlines), taken back.
fn unescape_help(escaped: &str) -> String {
    let mut raw = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            raw.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => raw.push('\n'),
            Some(other) => raw.push(other),
            None => raw.push('\\'),
        }
    }
    raw
}

/// A bucket's line with the exemplar of the run that last landed in it (OpenMetrics only):
/// `… count # {run_id="…"} value timestamp`.
pub(super) fn line_with_exemplar(
    out: &mut Vec<u8>,
    head: &str,
    labels: &str,
    tail: &str,
    value: Value,
    exemplar: (&super::RunId, f64, u64),
) {
    let (id, observed, at_ms) = exemplar;
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(labels.as_bytes());
    out.extend_from_slice(tail.as_bytes());
    write_value(out, value);
    // The id is 12 hex digits, a dash and a number: nothing to escape, and far below the 128
    // characters OpenMetrics allows an exemplar's labels.
    out.extend_from_slice(b" # {run_id=\"");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..12).rev() {
        out.push(HEX[((id.probe >> (shift * 4)) & 0xf) as usize]);
    }
    out.push(b'-');
    out.extend_from_slice(itoa::Buffer::new().format(id.run).as_bytes());
    out.extend_from_slice(b"\"} ");
    float(out, observed);
    out.push(b' ');
    out.extend_from_slice(Stamp::millis(at_ms).as_bytes());
    out.push(b'\n');
}

/// A timestamp in seconds with its milliseconds, as OpenMetrics writes them (`1765020000.123`,
/// trailing zeros dropped), made without an allocation: `_created` writes one per probe and
/// family and copies it into many lines.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stamp {
    buf: [u8; 24],
    len: u8,
}

impl Stamp {
    /// Unix milliseconds.
    pub(super) fn millis(ms: u64) -> Stamp {
        let mut buf = [0u8; 24];
        let mut secs = itoa::Buffer::new();
        let secs = secs.format(ms / 1000).as_bytes();
        buf[..secs.len()].copy_from_slice(secs);
        let mut len = secs.len();
        let frac = ms % 1000;
        if frac > 0 {
            let digits = [b'.', b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8];
            let keep = if frac.is_multiple_of(100) {
                2
            } else if frac.is_multiple_of(10) {
                3
            } else {
                4
            };
            buf[len..len + keep].copy_from_slice(&digits[..keep]);
            len += keep;
        }
        Stamp { buf, len: len as u8 }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// A line whose value is already written: `head labels tail value\n`.
pub(super) fn line_raw(out: &mut Vec<u8>, head: &str, labels: &str, tail: &str, value: &[u8]) {
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(labels.as_bytes());
    out.extend_from_slice(tail.as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
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
    write_value(out, value);
    out.push(b'\n');
}

fn write_value(out: &mut Vec<u8>, value: Value) {
    match value {
        Value::Int(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
        Value::Float(v) => float(out, v),
    }
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

    #[test]
    fn open_metrics_names_types_and_exemplars() {
        assert_eq!(open_metrics_family("a_runs_total", "counter"), ("a_runs", "counter"));
        assert_eq!(open_metrics_family("a_build_info", "gauge"), ("a_build", "info"));
        assert_eq!(open_metrics_family("a_seconds", "histogram"), ("a_seconds", "histogram"));
        let registry = "# HELP process_cpu_seconds_total Total \"CPU\" time\\n, a \\\\ too.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 0.5\n\
                        # HELP a_build_info Build.\n# TYPE a_build_info gauge\na_build_info{v=\"1\"} 1\n";
        assert_eq!(
            String::from_utf8(text_to_open_metrics(registry)).unwrap(),
            "# HELP process_cpu_seconds Total \\\"CPU\\\" time\\n, a \\\\ too.\n# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total 0.5\n\
             # HELP a_build Build.\n# TYPE a_build info\na_build_info{v=\"1\"} 1\n"
        );
        let mut out = Vec::new();
        let id = super::super::RunId { probe: 0xabc, run: 42 };
        line_with_exemplar(
            &mut out,
            "h_bucket{",
            "probe=\"p\"",
            ",le=\"0.05\"} ",
            Value::Int(3),
            (&id, 0.0421, 1_765_000_000_120),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "h_bucket{probe=\"p\",le=\"0.05\"} 3 # {run_id=\"000000000abc-42\"} 0.0421 1765000000.12\n"
        );
        for (ms, text) in [
            (5_000, "5"),
            (0, "0"),
            (1_765_000_000_120, "1765000000.12"),
            (1_765_000_000_001, "1765000000.001"),
            (1_765_000_000_100, "1765000000.1"),
            (1_765_000_000_999, "1765000000.999"),
        ] {
            assert_eq!(Stamp::millis(ms).as_bytes(), text.as_bytes(), "{ms}");
        }
    }
}
