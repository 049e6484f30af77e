//! Properties of the loader: whatever the file holds, loading ends in a configuration or in
//! located errors, never in a panic, and no error quotes a secret.

use proptest::prelude::*;

use super::Config;

/// A file using most of the format, with a distinctive secret in every secret field.
const VALID: &str = "\
defaults:
  interval: 30s
  timeout: 5s
  lockout_guard: {max_failures: 3, max_backoff: 1h}
targets:
  - name: sim
    base_url: http://127.0.0.1:18080/api
    app_key: Prop-App-Key-Xx91
    tls: {insecure_skip_verify: false}
probes:
  - name: alice
    target: sim
    username: alice
    password: Prop-Pw-Qq27
    pin: Prop-Pin-4411
    expect: Succeeded
    labels: {team: brokers}
  - name: bob
    target: sim
    username: bob
    password: Prop-Pw2-Kk80
    verification_code: Prop-Code-7710
    schedule: '*/10 * * * * *'
    validate: true
    retries: 2
";

const SECRETS: [&str; 5] = ["Prop-App-Key-Xx91", "Prop-Pw-Qq27", "Prop-Pin-4411", "Prop-Pw2-Kk80", "Prop-Code-7710"];

/// One edit of a file: delete a span, or insert text that matters to YAML.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, &'static str),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let insert = prop::sample::select(vec![
        ":", " ", "\n", "-", "{", "}", "[", "]", "'", "\"", "#", "&a", "*a", "!!str ", "\t", "0", "-1", "1e9", "null",
        "\u{0}", "é", "  ", "\n  - ",
    ]);
    let edit = prop_oneof![
        (0..VALID.len(), 0usize..20).prop_map(|(at, len)| Edit::Delete(at, len)),
        (0..VALID.len(), insert).prop_map(|(at, text)| Edit::Insert(at, text)),
    ];
    prop::collection::vec(edit, 1..4)
}

fn apply(edits: &[Edit]) -> String {
    let mut text = VALID.as_bytes().to_vec();
    for e in edits {
        match *e {
            Edit::Delete(at, len) => {
                let at = at.min(text.len());
                let end = (at + len).min(text.len());
                text.drain(at..end);
            }
            Edit::Insert(at, s) => {
                let at = at.min(text.len());
                text.splice(at..at, s.bytes());
            }
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Loads `text` as a file: the error text if it is refused.
fn load(text: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probes.yaml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).map_err(|e| {
        let shown = e.to_string();
        for line in shown.lines() {
            assert!(line.starts_with(&path.display().to_string()), "an error without its file: {line}");
        }
        shown
    })
}

#[test]
fn the_base_file_is_valid() {
    let config = load(VALID).unwrap();
    assert_eq!(config.probes.len(), 2);
    let debug = format!("{config:?}");
    for s in SECRETS {
        assert!(!debug.contains(s), "Debug shows {s}");
    }
}

#[test]
fn a_secret_cut_from_its_key_by_an_edit_is_not_quoted_on_reload() {
    // The edit proptest once found: `target: sim` + `password: Prop-Pw2-Kk80` cut into one value.
    let edited = VALID.replace("target: sim\n    username: bob\n    password: ", "target: b ");
    crate::panics::remember(SECRETS.map(secrecy::SecretString::from));
    let err = load(&edited).unwrap_err();
    assert!(err.contains("unknown target \"b <redacted>\"") && !err.contains("Prop-Pw2-Kk80"), "{err}");
}

#[test]
fn a_secret_pasted_as_a_key_is_not_quoted() {
    let err = load(&format!("Prop-Pw-Qq27{VALID}")).unwrap_err();
    assert!(err.contains("unknown field `<redacted>defaults`"), "{err}");
    let flow = "targets: [{name: t, base_url: 'http://x/', app_key: Prop-App-Key-Xx91}]\nprobes:\n  - {name: a, target: t, username: u, password: 'Flow-Pw-Ee41', Flow-Pw-Ee41: 1}\n";
    let err = load(flow).unwrap_err();
    assert!(err.contains("<redacted>") && !err.contains("Flow-Pw-Ee41"), "{err}");
}

#[test]
fn a_quoted_key_stays_on_one_bounded_line() {
    // An edit can turn lines into one multi-line key, which the parser quotes.
    let err = load("defaults:\n  lockout_guard: {max_failures: 3, ? \"a\\nb\" : 1}\n").unwrap_err();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unknown field `a\\nb`"), "{err}");
    let err = load(&format!("{}: 1\n", "k".repeat(1000))).unwrap_err();
    assert!(err.len() < 800 && err.contains("…"), "{} characters", err.len());
}

/// The README's probes files and target examples, as a user copies them, load but for what they
/// refer to that is not on this machine (secret files, variables, CA files): every field is one
/// its block takes.
#[test]
fn the_readme_examples_load() {
    const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let blocks: Vec<&str> = README.split("```yaml\n").skip(1).map(|b| b.split("```").next().unwrap()).collect();
    let probe = "probes:\n  - {name: p, target: t, grant: client_credentials}\n";
    let mut files = Vec::new();
    for block in blocks {
        if block.starts_with("targets:") || block.starts_with("defaults:") {
            files.push(block.to_owned());
        } else if block.starts_with("  - {name:") {
            // A target of the identity provider examples.
            let name = block.split("name: ").nth(1).unwrap().split(',').next().unwrap();
            files.push(format!("targets:\n{block}{}", probe.replace("target: t", &format!("target: {name}"))));
        }
    }
    assert_eq!(files.len(), 8, "the ETNA, OAuth 2.0, interactive and LDAP files and four identity providers");
    // What the examples refer to that a machine running them has.
    let allowed = ["cannot read", "is not set", "no such file"];
    for text in files {
        let err = load(&text).unwrap_err();
        for line in err.lines() {
            assert!(allowed.iter().any(|a| line.contains(a)), "{line}\nin\n{text}");
        }
    }
}

/// A field is judged by the family of the block it is in: another family's is "only for" that
/// family, even where the target it belongs to is itself invalid; one no family takes is unknown,
/// with what the block takes.
#[test]
fn fields_are_judged_by_the_family_of_their_block() {
    let err = load(
        "defaults: {max_steps: 3, grnt: 1}\ntargets:\n  - {name: idp, protocol: oauth2, issuer: 'http://127.0.0.1:9/'}\n\
         probes:\n  - {name: p, target: idp, grant: client_credentials, pin: '1234', logout: true}\n",
    )
    .unwrap_err();
    assert!(err.contains(":1:26: defaults: unknown field `grnt`, expected one of `interval`"), "{err}");
    assert!(err.contains("`max_steps`, `validate`, `logout`"), "defaults list the families' fields too: {err}");
    assert!(err.contains("targets[0].client_id: missing"), "{err}");
    assert!(
        err.contains(
            ":5:55: probes[0].pin: only for probes of protocol: etna targets (an oauth2 login's one-time codes come from totp_secret)"
        ),
        "{err}"
    );
    // Both families take logout.
    assert!(!err.contains("probes[0].logout"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_text_loads_or_is_refused_with_located_errors(text in "(?s).{0,400}") {
        let _ = load(&text);
    }

    /// As a running service reloads them: the secrets of the file it runs are remembered (as
    /// `run` does at every load), so that a secret an edit cut from its key is not quoted either.
    #[test]
    fn edited_files_load_or_are_refused_without_secrets(edits in edits()) {
        crate::panics::remember(SECRETS.map(secrecy::SecretString::from));
        if let Err(e) = load(&apply(&edits)) {
            for s in SECRETS {
                prop_assert!(!e.contains(s), "the error quotes {}: {}", s, e);
            }
        }
    }
}

/// An interactive probe's fields: each problem located, a TOTP secret never quoted, and the
/// fields only this grant takes refused on the others.
#[test]
fn interactive_probe_fields_are_checked() {
    let target = "targets:\n  - {name: idp, protocol: oauth2, issuer: 'http://127.0.0.1:9/r', client_id: web, client_secret: s}\n";
    let ok = format!(
        "{target}probes:\n  - {{name: p, target: idp, grant: authorization_code, redirect_uri: 'https://app/cb', \
         username: u, password: Pw-Int-Aa11, totp_secret: 'otpauth://totp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&digits=8', \
         consent: approve, logout: true, login: {{form: '#kc-form-login', otp_field: otp, allowed_origins: ['https://login.partner.example']}}}}\n"
    );
    let config = load(&ok).unwrap_or_else(|e| panic!("{e}"));
    let summary = config.probes[0].login.summary();
    assert!(
        summary.contains("grant=authorization_code") && summary.contains("totp=true consent=approve logout=true"),
        "{summary}"
    );
    let bad = format!(
        "{target}probes:\n  - {{name: p, target: idp, grant: authorization_code, username: u, password: p, \
         totp_secret: Not-Base32-Zz90!, consent: maybe, login: {{form: '##', allowed_origins: [ftp://x]}}}}\n  \
         - {{name: q, target: idp, grant: password, username: u, password: p, redirect_uri: 'https://app/cb'}}\n"
    );
    let err = load(&bad).unwrap_err();
    for want in [
        "probes[0].redirect_uri: missing: grant: authorization_code needs the redirect_uri registered for the client",
        "probes[0].totp_secret: not a base32 secret",
        "probes[0].consent: \"maybe\" is not a choice: use approve or fail",
        "probes[0].login.form: not a CSS selector",
        "probes[0].login.allowed_origins[0]: must be an http(s) origin",
        "probes[1].redirect_uri: only with grant: authorization_code, not grant: password",
    ] {
        assert!(err.contains(want), "{want}\nnot in\n{err}");
    }
    assert!(!err.contains("Not-Base32-Zz90"), "{err}");
}
