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

/// The fenced code blocks of the README and of every page of docs/, with the file and line each
/// opens at: (file, line, info string, text).
fn documentation_blocks() -> Vec<(String, usize, String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut pages: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    files.extend(pages);
    let mut blocks = Vec::new();
    for path in files {
        let name = path.strip_prefix(root).unwrap().display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut open: Option<(usize, String, String)> = None;
        for (i, line) in text.lines().enumerate() {
            match open.take() {
                None => {
                    if let Some(info) = line.strip_prefix("```") {
                        open = Some((i + 1, info.trim().to_owned(), String::new()));
                    }
                }
                Some((at, info, body)) if line.trim_start().starts_with("```") => {
                    blocks.push((name.clone(), at, info, body));
                }
                Some((at, info, mut body)) => {
                    body.push_str(line);
                    body.push('\n');
                    open = Some((at, info, body));
                }
            }
        }
        assert!(open.is_none(), "{name}: a code block is never closed");
    }
    blocks
}

/// Every YAML example of the README and of docs/ is loaded by what reads files of its kind, as a user
/// copies it: the documentation cannot drift from the code. A block's info string says its kind:
/// `yaml` is a probes file (what `check-config` loads), `yaml target` one entry of its `targets:`
/// list, `yaml accounts` a simulator accounts file (`simulate --accounts`, `accounts_file:`),
/// `yaml web-config` a `--web.config.file`, and `yaml prometheus` a file of Prometheus' own, which is
/// only parsed as YAML here (tests/deploy.rs runs promtool on deploy/). Any other kind fails, so no
/// example is skipped unseen. Examples fail on nothing but what they refer to that is not on this
/// machine (secret files, variables, CA files).
#[test]
fn the_documentation_examples_load() {
    let probe = "probes:\n  - {name: p, target: t, grant: client_credentials}\n";
    let allowed = ["cannot read", "is not set", "no such file"];
    let dir = tempfile::tempdir().unwrap();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for (file, line, info, text) in documentation_blocks() {
        let mut words = info.split_whitespace();
        let lang = words.next().unwrap_or("");
        if lang != "yaml" && lang != "yml" {
            continue;
        }
        let kind = words.next().unwrap_or("probes").to_owned();
        let at = format!("the {kind} example of {file}:{line}");
        let errors = match kind.as_str() {
            "probes" => {
                let top = text.lines().find(|l| !l.trim().is_empty() && !l.starts_with('#')).unwrap_or("");
                let keys = ["defaults:", "simulator:", "targets:", "probes:", "probe_files:"];
                assert!(
                    keys.iter().any(|k| top.starts_with(k)),
                    "{at} does not begin as a probes file does: tag it (```yaml target, accounts, web-config or prometheus)"
                );
                load(&text).err()
            }
            "target" => {
                let name = text.split("name: ").nth(1).unwrap().split([',', '\n']).next().unwrap();
                let file = format!("targets:\n{text}{}", probe.replace("target: t", &format!("target: {name}")));
                load(&file).err()
            }
            "accounts" => {
                let path = dir.path().join(format!("accounts-{line}.yaml"));
                std::fs::write(&path, &text).unwrap();
                crate::simulator::Settings::load(&path).err().map(|e| e.to_string())
            }
            "web-config" => {
                let path = dir.path().join(format!("web-{line}.yaml"));
                std::fs::write(&path, &text).unwrap();
                crate::web::config::WebConfig::load(&path).err().map(|e| e.to_string())
            }
            "prometheus" => serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text).map_err(|e| e.to_string()).err(),
            _ => panic!("{at}: unknown kind of YAML example (probes, target, accounts, web-config, prometheus)"),
        };
        for line in errors.iter().flat_map(|e| e.lines()) {
            assert!(allowed.iter().any(|a| line.contains(a)), "{at}: {line}\nin\n{text}");
        }
        *kinds.entry(kind).or_default() += 1;
    }
    // The README's tour alone has a probes file of each family; the reference has every kind.
    for kind in ["probes", "target", "accounts", "web-config", "prometheus"] {
        assert!(kinds.get(kind).is_some_and(|n| *n > 0), "no {kind} example found: {kinds:?}");
    }
    assert!(kinds["probes"] >= 9, "{kinds:?}");
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
