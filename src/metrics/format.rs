//! Which exposition format a scrape gets, from its `Accept` header, as Prometheus' client
//! libraries negotiate it: OpenMetrics when asked for (Prometheus asks for it first, and only
//! it carries exemplars), the text format otherwise.

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, 0.0.4.
    Text,
    /// OpenMetrics text, in the version asked for (1.0.0 or 0.0.1: the same body).
    OpenMetrics(&'static str),
}

impl Format {
    /// Whether this is OpenMetrics.
    pub fn is_open_metrics(self) -> bool {
        matches!(self, Format::OpenMetrics(_))
    }

    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics("0.0.1") => "application/openmetrics-text; version=0.0.1; charset=utf-8",
            Format::OpenMetrics(_) => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format for a request's `Accept` header: the acceptable one with the highest `q`, the
    /// first listed among equals; the text format when nothing listed is one of ours (or there
    /// is no header), as client_golang answers.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut best: Option<(f32, Format)> = None;
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let (mut q, mut version) = (1.0f32, None);
            for param in parts {
                let Some((k, v)) = param.split_once('=') else { continue };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.parse().ok().filter(|q: &f32| (0.0..=1.0).contains(q)).unwrap_or(0.0),
                    "version" => version = Some(v.to_owned()),
                    _ => {}
                }
            }
            let format = match (media.as_str(), version.as_deref()) {
                ("application/openmetrics-text", None | Some("1.0.0")) => Format::OpenMetrics("1.0.0"),
                ("application/openmetrics-text", Some("0.0.1")) => Format::OpenMetrics("0.0.1"),
                ("text/plain", None | Some("0.0.4")) | ("text/*" | "*/*", _) => Format::Text,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::Text, |(_, f)| f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_as_prometheus_asks() {
        // Prometheus 2.42's scrape header, and 3.x's.
        let p2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(p2)), Format::OpenMetrics("1.0.0"));
        let p3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(p3)), Format::OpenMetrics("1.0.0"));
        // Prometheus with scrape_protocols: [PrometheusText0.0.4] only.
        assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4;q=1,*/*;q=0.1")), Format::Text);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(Some("text/html,application/xhtml+xml")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; version=0.0.1")),
            Format::OpenMetrics("0.0.1")
        );
        assert_eq!(Format::negotiate(Some("application/openmetrics-text; version=2.0.0")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("text/plain;q=0.9, application/openmetrics-text;q=0.95")),
            Format::OpenMetrics("1.0.0")
        );
        assert_eq!(Format::negotiate(Some("application/openmetrics-text;q=0")), Format::Text);
        assert_eq!(Format::negotiate(Some("application/openmetrics-text;q=nonsense")), Format::Text);
        assert!(Format::OpenMetrics("1.0.0").content_type().starts_with("application/openmetrics-text; version=1.0.0"));
    }
}
