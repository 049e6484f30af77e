//! The query string of `GET /probe`, parsed strictly: a caller who asks ambiguously gets 400
//! and a reason, not a guess.

/// What `GET /probe` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    /// The probe to run.
    pub probe: String,
    /// Whether to answer with a trace instead of metrics.
    pub debug: bool,
}

/// Longest probe name accepted; config names are far shorter.
const MAX_NAME_BYTES: usize = 256;

/// Parses `probe=NAME[&debug=true|false|1|0]` (form-encoded, any order, other parameters
/// ignored). The error never quotes the input.
pub fn parse_probe_query(query: Option<&str>) -> Result<ProbeRequest, &'static str> {
    let mut probe = None;
    let mut debug = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "probe" if probe.is_some() => return Err("probe given more than once"),
            "probe" => probe = Some(value.into_owned()),
            "debug" if debug.is_some() => return Err("debug given more than once"),
            "debug" => {
                debug = Some(match value.as_ref() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    _ => return Err("debug must be true or false"),
                })
            }
            _ => {}
        }
    }
    let probe = probe.filter(|p| !p.is_empty()).ok_or("missing parameter: probe=NAME")?;
    if probe.len() > MAX_NAME_BYTES {
        return Err("probe name longer than 256 bytes");
    }
    Ok(ProbeRequest { probe, debug: debug.unwrap_or(false) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strict_parsing() {
        let ok = |probe: &str, debug| Ok(ProbeRequest { probe: probe.to_owned(), debug });
        assert_eq!(parse_probe_query(Some("probe=a")), ok("a", false));
        assert_eq!(parse_probe_query(Some("debug=1&probe=a%20b&x=y")), ok("a b", true));
        assert_eq!(parse_probe_query(Some("probe=a+b&debug")), ok("a b", true));
        assert_eq!(parse_probe_query(None), Err("missing parameter: probe=NAME"));
        assert_eq!(parse_probe_query(Some("probe=")), Err("missing parameter: probe=NAME"));
        assert_eq!(parse_probe_query(Some("probe=a&probe=b")), Err("probe given more than once"));
        assert_eq!(parse_probe_query(Some("probe=a&debug=yes")), Err("debug must be true or false"));
        assert_eq!(parse_probe_query(Some("probe=%ff%fe")), ok("\u{fffd}\u{fffd}", false), "invalid UTF-8 is replaced");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_query_parses_or_is_refused(query in ".{0,300}") {
            let _ = parse_probe_query(Some(&query));
        }

        #[test]
        fn any_name_round_trips(name in ".{1,100}", debug: bool, noise in "[a-z]{0,5}") {
            let encoded: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair(&noise, "x")
                .append_pair("probe", &name)
                .append_pair("debug", if debug { "true" } else { "false" })
                .finish();
            let parsed = parse_probe_query(Some(&encoded));
            if noise == "probe" || noise == "debug" {
                prop_assert!(parsed.is_err());
            } else {
                prop_assert_eq!(parsed, Ok(ProbeRequest { probe: name, debug }));
            }
        }
    }
}
