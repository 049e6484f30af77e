//! The real `authprobe` binary: `probe` output and exit codes, `check-config` and every kind of
//! configuration error, `simulate`, and proof that no secret or token reaches any output.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use authprobe::simulator::{Account, Fault};
use common::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_authprobe");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn authprobe(args: &[&str]) -> Run {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(BIN).args(args).stdin(Stdio::null()).kill_on_drop(true).output(),
    )
    .await
    .expect("authprobe finished within 60 s")
    .expect("authprobe ran");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A probes file against a test simulator with two probes: `ok` (PIN flow) and `bad` (wrong password).
fn probes_file(dir: &Path, base_url: &str) -> PathBuf {
    write(
        dir,
        "probes.yaml",
        &format!(
            r#"targets:
  - name: sim
    base_url: {base_url}
    app_key: {APP_KEY}
probes:
  - name: ok
    target: sim
    username: bob
    password_file: bob.pw
    pin: ${{AUTHPROBE_TEST_PIN}}
    timeout: 5s
    labels: {{team: brokers}}
  - name: bad
    target: sim
    username: alice
    password: wrong-Pw-Q4d1
"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_json_output_and_exit_codes() {
    let sim = simulator(vec![pin_account("bob", "bob-Pw-Zr77", "pin-7731"), Account::new("alice", "alice-pw")]).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bob.pw", "bob-Pw-Zr77\n");
    let file = probes_file(dir.path(), &sim.base_url());
    let cfg = file.to_str().unwrap();
    std::env::set_var("AUTHPROBE_TEST_PIN", "pin-7731");

    let r = authprobe(&["probe", "ok", "--config.file", cfg, "--output", "json"]).await;
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let v: Value = serde_json::from_str(r.stdout.trim()).expect("one JSON object");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "probe",
        "target",
        "result",
        "state",
        "step",
        "reason",
        "reason_text",
        "http_status",
        "duration_seconds",
        "steps",
    ] {
        assert!(keys.contains(&k), "missing {k} in {keys:?}");
    }
    assert_eq!((&v["probe"], &v["target"], &v["result"]), (&"ok".into(), &"sim".into(), &"success".into()));
    assert_eq!(
        (&v["state"], &v["step"], &v["reason"], &v["http_status"]),
        (&"Succeeded".into(), &"SecutityPin".into(), &"none".into(), &200.into())
    );
    let total = v["duration_seconds"].as_f64().unwrap();
    assert!(total > 0.0 && total < 5.0);
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for (s, (step, status, state)) in
        steps.iter().zip([("BaseAuthentication", 202, "Expecting"), ("SecutityPin", 200, "Succeeded")])
    {
        assert_eq!((&s["step"], &s["http_status"], &s["state"]), (&step.into(), &status.into(), &state.into()));
        assert!(s["duration_seconds"].as_f64().unwrap() > 0.0);
    }

    let r = authprobe(&["probe", "bad", "--config.file", cfg, "--output", "json"]).await;
    assert_eq!(r.code, 1, "a failed probe exits 1");
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        (&v["result"], &v["reason"], &v["http_status"]),
        (&"auth_failed".into(), &"invalid_credentials".into(), &401.into())
    );

    let r = authprobe(&["probe", "--all", "--config.file", cfg, "--output", "json"]).await;
    assert_eq!(r.code, 1);
    let lines: Vec<Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.iter().map(|v| v["probe"].as_str().unwrap()).collect::<Vec<_>>(), ["ok", "bad"]);

    let r = authprobe(&["probe", "ok", "--config.file", cfg]).await;
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("ok (target sim): success in "), "{}", r.stdout);
    assert!(r.stdout.contains("2. SecutityPin"), "{}", r.stdout);

    let r = authprobe(&["probe", "nope", "--config.file", cfg]).await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no probe named \"nope\"") && r.stderr.contains("known: ok, bad"), "{}", r.stderr);
    assert_eq!(authprobe(&["probe"]).await.code, 2, "usage error");
    assert_eq!(authprobe(&["probe", "ok", "--output", "xml", "--config.file", cfg]).await.code, 2);
    assert_eq!(authprobe(&["frobnicate"]).await.code, 2);
}

/// `--output trace` shows each exchange as far as it got: a stalled server, a cut connection,
/// an HTML page, a body over the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_trace_shows_every_exchange_and_where_it_failed() {
    let sim = simulator(vec![
        fault_account("stall", Fault::Stall),
        fault_account("html", Fault::Html),
        fault_account("huge", Fault::Oversized),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "probes.yaml",
        &format!(
            "defaults: {{timeout: 700ms}}\ntargets: [{{name: sim, base_url: {}, app_key: {APP_KEY}}}]\nprobes:\n{}",
            sim.base_url(),
            ["stall", "html", "huge"]
                .map(|u| format!("  - {{name: {u}, target: sim, username: {u}, password: pw}}\n"))
                .concat()
        ),
    );
    let trace = |name: &'static str| {
        let cfg = file.to_str().unwrap().to_owned();
        async move { authprobe(&["probe", name, "--config.file", &cfg, "--output", "trace"]).await }
    };
    let r = trace("stall").await;
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("> POST "), "{}", r.stdout);
    assert!(!r.stdout.contains("< HTTP"), "no answer came:\n{}", r.stdout);
    assert!(
        r.stdout.contains("No complete answer: deadline exceeded while waiting for the response headers"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("stall (target sim): timeout in "), "{}", r.stdout);

    let r = trace("html").await;
    assert!(r.stdout.contains("< HTTP/1.1 200 OK\n< content-type: text/html"), "{}", r.stdout);
    assert!(r.stdout.contains("| <!DOCTYPE html>") || r.stdout.contains("| <html"), "the page is shown:\n{}", r.stdout);
    assert!(r.stdout.contains("html (target sim): invalid_response"), "{}", r.stdout);

    let r = trace("huge").await;
    assert!(r.stdout.contains("(abandoned at the size limit)"), "{}", r.stdout);
    assert!(r.stdout.contains("more bytes not shown)"), "{}", r.stdout);
    assert!(r.stdout.len() < 16 * 1024, "the body shown is bounded: {} bytes", r.stdout.len());
}

/// A one-character app key is redacted where it stands as a value, not as a letter of every
/// word: the trace stays readable and still shows the key nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_character_app_key_leaves_the_trace_readable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let settings = authprobe::simulator::Settings::new(&["k"], vec![pin_account("bob", "bob-Pw-Kk41", "4417")]);
    let sim = authprobe::simulator::Simulator::serve(settings, listener);
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "probes.yaml",
        &format!(
            "targets: [{{name: sim, base_url: {}, app_key: k}}]\n\
             probes: [{{name: bob, target: sim, username: bob, password: bob-Pw-Kk41, pin: \"4417\"}}]\n",
            sim.base_url()
        ),
    );
    let r = authprobe(&["probe", "bob", "--config.file", file.to_str().unwrap(), "--output", "trace"]).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let trace = &r.stdout;
    for readable in [
        "> et-app-key: <redacted>",
        "> password: <redacted>",
        "> pincode: <redacted>",
        "(SecutityPin)",
        "bob (target sim): success",
    ] {
        assert!(trace.contains(readable), "{readable:?} in\n{trace}");
    }
    let words: Vec<&str> = trace.split(|c: char| !c.is_alphanumeric()).collect();
    assert!(words.iter().filter(|w| w.contains('k')).count() > 3, "words with a k are left alone:\n{trace}");
    for secret in ["k", "bob-Pw-Kk41", "4417"] {
        assert!(!words.contains(&secret) && !trace.contains(&format!("{secret}\n")), "{secret:?} in\n{trace}");
    }
    assert!(!trace.contains("bob-Pw-Kk41") && !trace.contains("4417"), "{trace}");
    // The warm-up before the login sent nothing to the target: its two requests are the login's.
    assert_eq!(sim.requests("bob").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_lists_probes_without_probing() {
    let sim = simulator(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bob.pw", "bob-Pw-Zr77\n");
    let file = probes_file(dir.path(), &sim.base_url());
    std::env::set_var("AUTHPROBE_TEST_PIN", "pin-7731");
    let r = authprobe(&["check-config", "--config.file", file.to_str().unwrap()]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("OK, 1 target(s), 2 probe(s)"), "{}", r.stdout);
    assert!(
        r.stdout.contains("probe ok target=sim every 1m expect=Succeeded timeout=5s max_steps=3 labels={team=brokers}"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("probe bad target=sim every 1m"), "{}", r.stdout);
    assert_eq!(sim.all_stats().len(), 0, "check-config sends no request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_file_works_out_of_the_box() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/probes.yaml");
    let r = authprobe(&["check-config", "--config.file", demo]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = authprobe(&["probe", "--all", "--config.file", demo, "--output", "json"]).await;
    let results: Vec<(String, String)> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["probe"].as_str().unwrap().to_owned(), v["result"].as_str().unwrap().to_owned()))
        .collect();
    let want = [
        ("alice-password", "success"),
        ("bob-pin", "success"),
        ("carol-sms-2fa", "success"),
        ("dave-expired", "password_expired"),
        ("erin-https", "success"),
        ("service-account", "success"),
        ("frank-oidc", "success"),
        ("grace-login", "success"),
        ("henry-directory", "success"),
        ("irene-directory-expired", "password_expired"),
        ("judy-directory-locked", "auth_failed"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(results, want, "stderr: {}", r.stderr);
    assert_eq!(r.code, 1, "the demo has failing accounts");
}

/// The small things of the command line an on-call engineer meets first.
#[tokio::test]
async fn the_command_line_says_what_it_wants_and_what_it_is() {
    let r = authprobe(&["probe"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("name the probes to run") && r.stderr.contains("--all"), "{}", r.stderr);
    let r = authprobe(&["--version"]).await;
    assert_eq!(r.code, 0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], format!("authprobe {} (revision: {})", authprobe::VERSION, authprobe::REVISION));
    let date = lines[1].strip_prefix("  build date:   ").unwrap();
    assert!(date.len() == 20 && date.starts_with("20") && date.ends_with('Z') && date.as_bytes()[10] == b'T', "{date}");
    assert!(
        lines[2].starts_with("  rust version: rustc 1.") && lines[3].starts_with("  platform:     "),
        "{}",
        r.stdout
    );
    assert_eq!(authprobe(&["-V"]).await.stdout.trim(), format!("authprobe {}", authprobe::VERSION));
    let r = authprobe(&["simulate", "--help"]).await;
    for protocol in ["ETNA", "OAuth 2.0", "OpenID Connect", "LDAP"] {
        assert!(r.stdout.contains(protocol), "simulate --help names {protocol}:\n{}", r.stdout);
    }
}

/// `simulator.tls` makes its certificate once, where the targets' `ca_file` finds it, keeps it
/// across loads, and reports files it cannot write and addresses it cannot parse where they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_makes_its_https_certificate_once_where_targets_trust_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let config = |cert: &str, listen: &str| {
        format!(
            "simulator:\n  listen: 127.0.0.1:{port}\n  app_keys: [k-Tls-91]\n  accounts: [{{username: u, password: pw-Tls-91}}]\n\
             \x20 tls:\n    listen: {listen}\n    cert_file: {cert}\n    key_file: tls/sim.key\n\
             targets: [{{name: t, base_url: 'https://{listen}/api', app_key: k-Tls-91, tls: {{ca_file: {cert}}}}}]\n\
             probes: [{{name: p, target: t, username: u, password: pw-Tls-91}}]\n"
        )
    };
    let listen = format!("127.0.0.1:{}", closed_port());
    let file = write(dir.path(), "probes.yaml", &config("tls/sim.crt", &listen));
    let cfg = file.to_str().unwrap();
    let r = authprobe(&["check-config", "--config.file", cfg]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(&format!("(and HTTPS on {listen})")), "{}", r.stdout);
    let cert = std::fs::read_to_string(dir.path().join("tls/sim.crt")).unwrap();
    let key_mode = std::fs::metadata(dir.path().join("tls/sim.key")).unwrap().permissions().mode();
    assert_eq!(key_mode & 0o777, 0o600, "the key is private");
    // Loaded again (a restart, a reload): the same certificate, and a login over it works.
    let r = authprobe(&["probe", "p", "--config.file", cfg]).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("p (target t): success"), "{}", r.stdout);
    assert_eq!(std::fs::read_to_string(dir.path().join("tls/sim.crt")).unwrap(), cert, "kept, not made again");

    for (what, text, want) in [
        ("unwritable", config("/proc/authprobe-no/sim.crt", &listen), "simulator.tls.cert_file: cannot write /proc/"),
        ("bad address", config("tls/sim.crt", "localhost"), "simulator.tls.listen: invalid address \"localhost\""),
    ] {
        let file = write(dir.path(), "bad.yaml", &text);
        let r = authprobe(&["check-config", "--config.file", file.to_str().unwrap()]).await;
        assert_eq!(r.code, 2, "{what}: {}", r.stderr);
        assert!(r.stderr.contains("bad.yaml:") && r.stderr.contains(want), "{what}: {}", r.stderr);
    }
}

/// One broken file per case: the message names file, line and field, exits 2, shows no secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_name_file_line_and_field() {
    const SECRETS: [&str; 3] = ["appkey-Sekr1t-CFG", "pw-Sekr1t-CFG", "url-Sekr1t-CFG"];
    let head = "targets:\n  - name: t1\n    base_url: http://127.0.0.1:9/api\n    app_key: appkey-Sekr1t-CFG\nprobes:\n  - name: p1\n    target: t1\n    username: u1\n";
    let cases: &[(&str, String, &str)] = &[
        (
            "unknown field",
            format!("{head}    password: pw-Sekr1t-CFG\n    passwrd: x\n"),
            ":10:5: probes[0]: unknown field `passwrd`",
        ),
        (
            "duplicate name",
            format!(
                "{head}    password: pw-Sekr1t-CFG\n  - name: p1\n    target: t1\n    username: u\n    password: x\n"
            ),
            ":10:5: probes[1].name: duplicate probe name \"p1\"",
        ),
        (
            "unknown target",
            head.replace("target: t1", "target: t2") + "    password: pw-Sekr1t-CFG\n",
            ":7:5: probes[0].target: unknown target \"t2\" (known: t1)",
        ),
        (
            "both password and file",
            format!("{head}    password: pw-Sekr1t-CFG\n    password_file: /x\n"),
            ":9:5: probes[0].password: set either password or password_file, not both",
        ),
        (
            "missing env var",
            format!("{head}    password: pre-${{AUTHPROBE_UNSET_VAR_X}}-pw-Sekr1t-CFG\n"),
            ":9:5: probes[0].password: environment variable AUTHPROBE_UNSET_VAR_X is not set",
        ),
        (
            "missing secret file",
            format!("{head}    password_file: does-not-exist.pw\n"),
            ":9:5: probes[0].password_file: cannot read ",
        ),
        ("missing password", head.to_owned(), ":6:5: probes[0].password: missing: set password or password_file"),
        (
            "bad duration",
            format!("{head}    password: pw-Sekr1t-CFG\n    interval: 5x\n"),
            ":10:15: probes[0].interval: invalid duration \"5x\"",
        ),
        (
            "validate without a final token",
            format!("{head}    password: pw-Sekr1t-CFG\n    expect: VerificationCode\n    validate: true\n"),
            ":11:5: probes[0].validate: probe \"p1\" expects VerificationCode and never gets a final token to validate",
        ),
        (
            "logout from defaults without a final token",
            format!("defaults: {{logout: true}}\n{head}    password: pw-Sekr1t-CFG\n    expect: SecutityPin\n"),
            ":1:12: defaults.logout: probe \"p1\" expects SecutityPin and never gets a final token to log out",
        ),
        (
            "tls on an http target",
            head.replace(
                "app_key: appkey-Sekr1t-CFG",
                "app_key: appkey-Sekr1t-CFG\n    tls: {insecure_skip_verify: true}",
            ) + "    password: pw-Sekr1t-CFG\n",
            ":5:11: targets[0].tls: set for a target whose base_url is http, not https",
        ),
        (
            "missing CA file",
            head.replace("http://127.0.0.1:9/api", "https://127.0.0.1:9/api").replace(
                "app_key: appkey-Sekr1t-CFG",
                "app_key: appkey-Sekr1t-CFG\n    tls: {ca_file: no-such-ca.pem}",
            ) + "    password: pw-Sekr1t-CFG\n",
            "targets[0].tls.ca_file: cannot read certificates from ",
        ),
        (
            "key without certificate",
            head.replace("http://127.0.0.1:9/api", "https://127.0.0.1:9/api")
                .replace("app_key: appkey-Sekr1t-CFG", "app_key: appkey-Sekr1t-CFG\n    tls: {key_file: k.pem}")
                + "    password: pw-Sekr1t-CFG\n",
            "targets[0].tls.cert_file: missing: key_file needs cert_file",
        ),
        (
            "bad cron",
            format!("{head}    password: pw-Sekr1t-CFG\n    schedule: \"* * *\"\n"),
            ":10:5: probes[0].schedule: invalid cron expression",
        ),
        (
            "interval and cron",
            format!("{head}    password: pw-Sekr1t-CFG\n    interval: 10s\n    schedule: \"* * * * * *\"\n"),
            ":11:5: probes[0].schedule: set either interval or schedule",
        ),
        (
            "bad url",
            head.replace("http://127.0.0.1:9/api", "not a url") + "    password: pw-Sekr1t-CFG\n",
            ":3:5: targets[0].base_url: invalid URL",
        ),
        (
            "url with credentials",
            head.replace("http://127.0.0.1:9/api", "http://u:url-Sekr1t-CFG@127.0.0.1/api")
                + "    password: pw-Sekr1t-CFG\n",
            ":3:5: targets[0].base_url: must not contain credentials",
        ),
        (
            "bad label name",
            format!("{head}    password: pw-Sekr1t-CFG\n    labels: {{bad-name: x}}\n"),
            ":10:14: probes[0].labels.bad-name: invalid label name \"bad-name\"",
        ),
        (
            "reserved label",
            format!("{head}    password: pw-Sekr1t-CFG\n    labels: {{result: x}}\n"),
            "probes[0].labels.result: label \"result\" is set by authprobe itself",
        ),
        (
            "timeout over interval",
            format!("{head}    password: pw-Sekr1t-CFG\n    interval: 5s\n    timeout: 10s\n"),
            ":11:5: probes[0].timeout: timeout 10s is longer than the interval 5s",
        ),
        (
            "unknown expect",
            format!("{head}    password: pw-Sekr1t-CFG\n    expect: Sucess\n"),
            ":10:5: probes[0].expect: unknown value \"Sucess\"",
        ),
        (
            "missing username",
            head.replace("    username: u1\n", "") + "    password: pw-Sekr1t-CFG\n",
            ":6:5: probes[0].username: missing: an ETNA probe needs username",
        ),
        ("yaml syntax", format!("{head}    password: \"pw-Sekr1t-CFG\n"), ":10:1: found unexpected end of stream"),
        (
            "secret of wrong type",
            format!("{head}    password: [pw-Sekr1t-CFG]\n"),
            ":9:15: probes[0].password: invalid type: sequence, expected a string",
        ),
        (
            "wrong type",
            format!("{head}    password: pw-Sekr1t-CFG\n    max_steps: many\n"),
            ":10:16: probes[0].max_steps: invalid type: string, expected u32",
        ),
        (
            "max_steps range",
            format!("{head}    password: pw-Sekr1t-CFG\n    max_steps: 0\n"),
            ":10:5: probes[0].max_steps: must be between 1 and 10",
        ),
        ("empty file", String::new(), "probes.yaml: the file is empty"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, text, want) in cases {
        let file = write(dir.path(), "probes.yaml", text);
        let r = authprobe(&["check-config", "--config.file", file.to_str().unwrap()]).await;
        assert_eq!(r.code, 2, "{name}: exit code; stderr {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("probes.yaml{want}")) || r.stderr.contains(want),
            "{name}: want {want:?} in:\n{}",
            r.stderr
        );
        for s in SECRETS {
            assert!(!r.stderr.contains(s) && !r.stdout.contains(s), "{name}: secret {s} printed:\n{}", r.stderr);
        }
    }
    // Several problems are reported together.
    let text = format!("{head}    password: pw-Sekr1t-CFG\n    interval: 0s\n    expect: Nope\n");
    let file = write(dir.path(), "probes.yaml", &text);
    let r = authprobe(&["check-config", "--config.file", file.to_str().unwrap()]).await;
    assert!(r.stderr.contains("probes[0].interval") && r.stderr.contains("probes[0].expect"), "{}", r.stderr);
    let r = authprobe(&["check-config", "--config.file", "/nonexistent/probes.yaml"]).await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("/nonexistent/probes.yaml: cannot read file"), "{}", r.stderr);
    // The default file, absent where the command runs: say where it was looked for and how to
    // name another.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = std::process::Command::new(BIN).arg("check-config").current_dir(&empty).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("probes.yaml: no such file in") && stderr.contains("--config.file"), "{stderr}");
}

/// OAuth 2.0 targets and probes: each unknown or contradictory field is a located error that
/// exits 2 and quotes no secret; a valid file is listed with each probe's grant and checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_config_errors_name_file_line_and_field() {
    const SECRETS: [&str; 2] = ["cs-Sekr1t-OAUTH", "pw-Sekr1t-OAUTH"];
    let target = "targets:\n  - name: idp\n    protocol: oauth2\n    issuer: http://127.0.0.1:9/realms/main\n    client_id: authprobe\n    client_secret: cs-Sekr1t-OAUTH\n";
    let probe = "probes:\n  - name: svc\n    target: idp\n    grant: client_credentials\n";
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, String, &str)] = &[
        ("pin on an oauth2 probe", format!("{target}{probe}    pin: pw-Sekr1t-OAUTH\n"), ":11:5: probes[0].pin: only for probes of protocol: etna targets"),
        ("app_key on an oauth2 target", target.replace("    client_id:", "    app_key: x1234\n    client_id:") + probe, ":5:5: targets[0].app_key: only for protocol: etna targets"),
        (
            "grant on an ETNA probe",
            "targets:\n  - {name: t, base_url: 'http://127.0.0.1:9/api', app_key: k1234}\nprobes:\n  - {name: p, target: t, username: u, password: pw-Sekr1t-OAUTH, grant: password}\n".to_owned(),
            ":4:66: probes[0].grant: only for probes of protocol: oauth2 targets",
        ),
        ("refresh with client_credentials", format!("{target}{probe}    refresh: true\n"), ":11:5: probes[0].refresh: grant: client_credentials issues no refresh token"),
        ("userinfo without openid", format!("{target}{probe}    validate: userinfo\n"), ":11:5: probes[0].validate: validate: userinfo needs the openid scope"),
        ("unknown validate method", format!("{target}{probe}    validate: signature\n"), ":11:5: probes[0].validate: \"signature\" is not a method"),
        ("validate true on oauth2", format!("{target}{probe}    validate: true\n"), ":11:5: probes[0].validate: true is not a method"),
        ("missing grant", target.to_owned() + "probes:\n  - name: svc\n    target: idp\n", ":8:5: probes[0].grant: missing: an oauth2 probe needs grant"),
        ("unknown grant", format!("{target}{}", probe.replace("client_credentials", "implicit")), ":10:5: probes[0].grant: unknown grant \"implicit\""),
        ("password grant without password", format!("{target}{}    username: u\n", probe.replace("client_credentials", "password")), ":8:5: probes[0].password: missing: set password or password_file"),
        ("username with client_credentials", format!("{target}{probe}    username: u\n"), ":11:5: probes[0].username: not used with grant: client_credentials"),
        ("unknown protocol", target.replace("protocol: oauth2", "protocol: saml") + probe, ":3:5: targets[0].protocol: unknown protocol \"saml\""),
        ("neither issuer nor token endpoint", target.replace("    issuer: http://127.0.0.1:9/realms/main\n", "") + probe, "targets[0].issuer: missing: set issuer (for discovery) or token_endpoint"),
        ("unknown client_auth", target.replace("    client_id:", "    client_auth: mtls\n    client_id:") + probe, ":5:5: targets[0].client_auth: unknown method \"mtls\""),
        ("secret with private_key_jwt", target.replace("    client_id:", "    client_auth: private_key_jwt\n    client_key_file: nope.pem\n    client_id:") + probe, "targets[0].client_secret: not used with client_auth: private_key_jwt"),
        ("unreadable client key", target.replace("    client_secret: cs-Sekr1t-OAUTH\n", "    client_auth: private_key_jwt\n    client_key_file: nope.pem\n") + probe, ":7:5: targets[0].client_key_file: cannot read "),
        (
            "introspection without an endpoint",
            target.replace("    issuer: http://127.0.0.1:9/realms/main\n", "    token_endpoint: http://127.0.0.1:9/token\n") + probe + "    validate: introspection\n",
            ":11:5: probes[0].validate: validate: introspection, but the target has neither issuer discovery nor introspection_endpoint",
        ),
        (
            "jwt without an issuer",
            target.replace("    issuer: http://127.0.0.1:9/realms/main\n", "    token_endpoint: http://127.0.0.1:9/token\n    jwks_uri: http://127.0.0.1:9/jwks\n") + probe + "    validate: jwt\n",
            "probes[0].validate: validate: jwt needs the target's issuer",
        ),
        ("tls on an http issuer", target.replace("    client_id:", "    tls: {insecure_skip_verify: true}\n    client_id:") + probe, ":5:11: targets[0].tls: set for a target whose issuer is http, not https"),
    ];
    for (name, text, want) in cases {
        let file = write(dir.path(), "probes.yaml", text);
        let r = authprobe(&["check-config", "--config.file", file.to_str().unwrap()]).await;
        assert_eq!(r.code, 2, "{name}: exit code; stderr {}", r.stderr);
        assert!(r.stderr.contains(want), "{name}: want {want:?} in:\n{}", r.stderr);
        for s in SECRETS {
            assert!(!r.stderr.contains(s) && !r.stdout.contains(s), "{name}: secret {s} printed:\n{}", r.stderr);
        }
    }
    let text = format!("{target}{probe}    scope: \"openid api\"\n    validate: jwt\n  - name: user\n    target: idp\n    grant: password\n    username: probe-user\n    password: pw-Sekr1t-OAUTH\n    refresh: true\n    revoke: true\n");
    let file = write(dir.path(), "probes.yaml", &text);
    let r = authprobe(&["check-config", "--config.file", file.to_str().unwrap()]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("probe svc target=idp every 1m protocol=oauth2 grant=client_credentials client_auth=client_secret_basic validate=jwt refresh=false revoke=false timeout=10s"), "{}", r.stdout);
    assert!(r.stdout.contains("probe user target=idp every 1m protocol=oauth2 grant=password client_auth=client_secret_basic validate=false refresh=true revoke=true"), "{}", r.stdout);
    for s in SECRETS {
        assert!(!r.stdout.contains(s), "{}", r.stdout);
    }
}

/// Distinctive secrets and the tokens the server issued appear in no output of any command,
/// at trace level, in both log formats, for passing and failing probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_in_any_output() {
    let mut echo = Account::new("echo", "echo-Pw-L33k");
    echo.fault = Fault::RandomReason;
    let sim =
        simulator(vec![pin_account("bob", "bob-Pw-Zr77", "pin-7731"), Account::new("alice", "alice-pw"), echo]).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bob.pw", "bob-Pw-Zr77\n");
    let file = probes_file(dir.path(), &sim.base_url());
    std::env::set_var("AUTHPROBE_TEST_PIN", "pin-7731");
    let cfg = file.to_str().unwrap();
    let mut outputs = String::new();
    for format in ["logfmt", "json"] {
        for output in ["text", "json", "trace"] {
            let r = authprobe(&[
                "probe",
                "--all",
                "--config.file",
                cfg,
                "--output",
                output,
                "--log.level",
                "trace",
                "--log.format",
                format,
            ])
            .await;
            assert_eq!(r.code, 1, "{}", r.stderr);
            assert!(r.stderr.contains("probe failed"), "a failed run logs a line:\n{}", r.stderr);
            for line in r.stderr.lines() {
                let ok = match format {
                    "logfmt" => line.starts_with("ts=") && line.contains(" level="),
                    _ => serde_json::from_str::<Value>(line).is_ok_and(|v| v["level"].is_string()),
                };
                assert!(ok, "not a {format} line: {line}");
            }
            outputs += &r.stdout;
            outputs += &r.stderr;
        }
        let r =
            authprobe(&["check-config", "--config.file", cfg, "--log.level", "trace", "--log.format", format]).await;
        outputs += &r.stdout;
        outputs += &r.stderr;
    }
    assert!(outputs.contains("success") && outputs.contains("auth_failed"));
    let mut needles: Vec<String> = ["bob-Pw-Zr77", "pin-7731", "wrong-Pw-Q4d1", APP_KEY].map(String::from).to_vec();
    needles.extend(sim.issued_tokens("bob"));
    assert_eq!(sim.issued_tokens("bob").len(), 6);
    needles
        .extend(sim.requests("bob").iter().filter_map(|r| r.header("authorization")).map(|b| b.replace("Bearer ", "")));
    for n in &needles {
        assert!(!outputs.contains(n.as_str()), "leaked {n}:\n{outputs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_serves_an_accounts_file() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = write(
        dir.path(),
        "accounts.yaml",
        &format!("app_keys: [{APP_KEY}]\naccounts:\n  - {{username: zed, password: zed-pw, pin: \"99\"}}\n"),
    );
    let port = closed_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(BIN)
        .args(["simulate", "--listen", &listen, "--accounts", accounts.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://{listen}/api");
    let mut s = None;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&listen).await.is_ok() {
            s = Some(());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.is_some(), "simulate did not listen within 5 s");
    let mut spec = common::spec_at(&base, "zed", "zed-pw");
    common::etna(&mut spec).pin = Some("99".into());
    let o = authprobe::protocol::Prober::new().unwrap().login(&spec).await;
    assert!(o.is_success(), "{}", o.detail);
    let (status, body) = get(&format!("http://{listen}/_sim/stats")).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["zed"]["tokens_issued"], 1);
    child.kill().await.unwrap();

    let bad = write(dir.path(), "bad.yaml", "accounts:\n  - {username: a}\n");
    let r = authprobe(&["simulate", "--accounts", bad.to_str().unwrap()]).await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("bad.yaml:2:5: accounts[0]: missing field `password`"), "{}", r.stderr);
}

/// Peak RSS of a finished child, in KiB, from wait4(2) (which reaps it in place of `wait()`).
#[allow(clippy::zombie_processes)]
fn run_and_measure_peak_rss(args: &[&str]) -> (i32, i64) {
    let child = std::process::Command::new(BIN).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain old data, zero is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}

/// A 20 MiB answer is abandoned after the 64 KiB cap: the prober's peak memory stays close to
/// that of a normal login instead of growing by the body's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_keeps_memory_bounded() {
    let big = fault_account("big", Fault::Oversized);
    let sim = simulator(vec![Account::new("small", "pw"), big]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!("targets:\n  - {{name: s, base_url: {}, app_key: {APP_KEY}}}\nprobes:\n", sim.base_url());
    for name in ["small", "big"] {
        text += &format!("  - {{name: {name}, target: s, username: {name}, password: pw}}\n");
    }
    let file = write(dir.path(), "probes.yaml", &text);
    let cfg = file.to_str().unwrap().to_owned();
    let measure = |name: &'static str| {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || run_and_measure_peak_rss(&["probe", name, "--config.file", &cfg]))
    };
    let (code, small_kib) = measure("small").await.unwrap();
    assert_eq!(code, 0);
    let (code, big_kib) = measure("big").await.unwrap();
    eprintln!("peak RSS: normal login {small_kib} KiB, 20 MiB body {big_kib} KiB");
    assert_eq!(code, 1);
    assert!(
        big_kib < small_kib + 8 * 1024,
        "peak RSS {big_kib} KiB for a 20 MiB body vs {small_kib} KiB for a normal login"
    );
}

/// `probe_files` splits targets and probes across files: globs relative to the main file, names
/// unique across all files, references across files, `*_file` paths relative to their own file,
/// and every error located in its own file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_files_split_the_configuration_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("probes.d/secrets")).unwrap();
    let main = write(
        d,
        "probes.yaml",
        "defaults: {interval: 30s}\nprobe_files: [probes.d/*.yaml, extra.yaml]\ntargets:\n  - {name: main, base_url: 'http://127.0.0.1:9/api', app_key: key-main}\n",
    );
    write(&d.join("probes.d"), "secrets/b.pw", "pw-Sekr1t-FILES\n");
    let a = write(
        &d.join("probes.d"),
        "a.yaml",
        "targets:\n  - {name: team-a, base_url: 'http://127.0.0.1:9/api', app_key: key-a}\nprobes:\n  - {name: pa, target: main, username: ua, password: pw-a}\n",
    );
    let b = write(
        &d.join("probes.d"),
        "b.yaml",
        "probes:\n  - name: pb\n    target: team-a\n    username: ub\n    password_file: secrets/b.pw\n",
    );
    write(d, "extra.yaml", "probes:\n  - {name: pc, target: team-a, username: uc, password: pw-c}\n");
    write(&d.join("probes.d"), "ignored.yml", "not: [a probes file");
    let cfg = main.to_str().unwrap();
    let r = authprobe(&["check-config", "--config.file", cfg]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("OK, 2 target(s), 3 probe(s)"), "{}", r.stdout);
    for p in ["probe pa target=main", "probe pb target=team-a", "probe pc target=team-a"] {
        assert!(r.stdout.contains(p), "{p} in {}", r.stdout);
    }

    // Each error in its own file, all at once.
    std::fs::write(
        &b,
        "probes:\n  - name: pa\n    target: team-a\n    username: ub\n    password_file: secrets/b.pw\n",
    )
    .unwrap();
    std::fs::write(
        &a,
        "targets:\n  - {name: team-a, base_url: 'http://127.0.0.1:9/api', app_key: key-a, colour: red}\n",
    )
    .unwrap();
    let r = authprobe(&["check-config", "--config.file", cfg]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("probes.d/a.yaml:2:72: targets[0]: unknown field `colour`"), "{}", r.stderr);
    std::fs::write(&a, "targets:\n  - {name: team-a, base_url: 'http://127.0.0.1:9/api', app_key: key-a}\nprobes:\n  - {name: pa, target: main, username: ua, password: pw-a}\n").unwrap();
    let r = authprobe(&["check-config", "--config.file", cfg]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    let want = format!("probes.d/b.yaml:2:5: probes[0].name: duplicate probe name \"pa\" (also in {})", a.display());
    assert!(r.stderr.contains(&want), "want {want} in {}", r.stderr);
    assert!(!r.stderr.contains("pw-Sekr1t-FILES"), "{}", r.stderr);

    // A probe file holds targets and probes only; a glob that cannot be read is located.
    std::fs::write(&b, "defaults: {interval: 5s}\n").unwrap();
    let r = authprobe(&["check-config", "--config.file", cfg]).await;
    assert!(r.stderr.contains("probes.d/b.yaml:1:1: unknown field `defaults`"), "{}", r.stderr);
    std::fs::write(&main, "probe_files: ['probes.d/[*.yaml']\n").unwrap();
    let r = authprobe(&["check-config", "--config.file", cfg]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("probes.yaml:1:15: probe_files[0]: invalid glob"), "{}", r.stderr);
}
