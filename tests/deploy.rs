//! deploy/: the Prometheus rules with promtool's checks and unit tests, the Prometheus and
//! Alertmanager configurations with their own tools, the runbook, and an end-to-end test: a
//! failing probe account reaches an Alertmanager webhook through a real Prometheus evaluating
//! the same rules, and its recovery resolves the alert.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authprobe::simulator::Account;
use common::prometheus::{start_daemon, Prometheus};
use common::service::Service;
use common::*;

const RULES: &str = "deploy/prometheus/rules/authprobe.rules.yml";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs a tool from Debian's packages in the repository; its exit code and output.
fn tool(program: &str, args: &[&str], dir: &Path) -> (i32, String) {
    let out = std::process::Command::new(program).args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("{program} (Debian's prometheus / prometheus-alertmanager; tests/run.sh installs them): {e}")
    });
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// The alerts the issue asks for; each must exist, be documented and be unit-tested.
const ALERTS: [&str; 19] = [
    "AuthprobeLoginFailing",
    "AuthprobeTargetDown",
    "AuthprobeLoginSlow",
    "AuthprobeLoginAvailabilityBurnRate",
    "AuthprobeRateLimited",
    "AuthprobeCredentialsNeedAttention",
    "AuthprobeAppKeyRejected",
    "AuthprobeClientRejected",
    "AuthprobeTokenLifetimeDropped",
    "AuthprobeDiscoveryFailing",
    "AuthprobeProbeStale",
    "AuthprobeTLSCertExpiringSoon",
    "AuthprobeConfigReloadFailed",
    "AuthprobeStateNotSaved",
    "AuthprobeExporterDown",
    "AuthprobeDirectoryBindRefused",
    "AuthprobeAccountLocked",
    "AuthprobePasswordExpiringSoon",
    "AuthprobeGraceLoginsInUse",
];

fn yaml(path: &str) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn alert_rules() -> Vec<serde_yaml_ng::Value> {
    let rules = yaml(RULES);
    rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

#[test]
fn rules_pass_promtool_and_every_alert_is_complete_tested_and_documented() {
    let (code, out) = tool("promtool", &["check", "rules", RULES], &repo(""));
    assert_eq!(code, 0, "{out}");
    let (code, out) =
        tool("promtool", &["test", "rules", "deploy/prometheus/rules/authprobe.rules.test.yml"], &repo(""));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    let rules = alert_rules();
    let names: BTreeSet<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(names, ALERTS.into_iter().collect(), "the alerts of the rules file");
    for r in &rules {
        let name = r["alert"].as_str().unwrap();
        let severity = r["labels"]["severity"].as_str().unwrap_or_default();
        assert!(["page", "ticket"].contains(&severity), "{name}: severity {severity:?}");
        for a in ["summary", "description", "runbook_url"] {
            assert!(r["annotations"][a].as_str().is_some_and(|t| !t.is_empty()), "{name}: {a}");
        }
        let anchor = name.to_ascii_lowercase();
        assert_eq!(r["annotations"]["runbook_url"].as_str().unwrap(), format!("docs/runbook.md#{anchor}"));
    }
    // Credential problems never page.
    let credentials = rules.iter().find(|r| r["alert"] == "AuthprobeCredentialsNeedAttention").unwrap();
    assert_eq!(credentials["labels"]["severity"], "ticket");

    // Every alert has a unit test in which it fires.
    let tests = yaml("deploy/prometheus/rules/authprobe.rules.test.yml");
    let fired: BTreeSet<String> = tests["tests"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().cloned().unwrap_or_default())
        .filter(|c| c["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty()))
        .map(|c| c["alertname"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fired, ALERTS.iter().map(|a| a.to_string()).collect(), "alerts with a firing unit test");

    // And a section in the runbook.
    let runbook = read("docs/runbook.md");
    for a in ALERTS {
        assert!(runbook.contains(&format!("\n## {a}\n")), "docs/runbook.md has no section {a}");
    }
}

#[test]
fn prometheus_and_alertmanager_configurations_pass_their_tools() {
    let (code, out) = tool("promtool", &["check", "config", "prometheus.yml"], &repo("deploy/prometheus"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");
    let (code, out) = tool("amtool", &["check-config", "deploy/alertmanager/alertmanager.yml"], &repo(""));
    assert_eq!(code, 0, "{out}");
    // Debian's Prometheus has no Kubernetes discovery to check the sharded example with: check
    // that it scrapes the StatefulSet's metrics port under the job name the alerts watch.
    let k8s = yaml("deploy/prometheus/prometheus-kubernetes.yml");
    let job = &k8s["scrape_configs"][0];
    assert_eq!(job["job_name"], "authprobe");
    assert_eq!(job["kubernetes_sd_configs"][0]["role"], "pod");
    let keep: Vec<&str> =
        job["relabel_configs"].as_sequence().unwrap().iter().filter_map(|r| r["regex"].as_str()).collect();
    assert!(keep.contains(&"authprobe") && keep.contains(&"metrics"), "{keep:?}");
}

/// The files generated from the monitoring mixin (deploy/mixin), as deploy/mixin/generate.sh
/// writes them.
const GENERATED: [&str; 4] = [
    "deploy/prometheus/rules/authprobe.rules.yml",
    "deploy/kubernetes/prometheusrule.yaml",
    "deploy/grafana/provisioning/alerting/authprobe-alerts.yaml",
    "deploy/grafana/dashboards/authprobe.json",
];

/// The files under `dir`, relative to it.
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.insert(path.strip_prefix(dir).unwrap().to_str().unwrap().to_owned());
            }
        }
    }
    found
}

/// As kube-prometheus checks its `make generate`: the mixin rendered afresh into a temporary
/// folder gives exactly the checked-in files, byte for byte.
#[test]
fn generated_files_match_a_fresh_rendering_of_the_mixin() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let (code, text) = tool("bash", &["deploy/mixin/generate.sh", out], &repo(""));
    assert_eq!(code, 0, "deploy/mixin/generate.sh (it needs Debian's jsonnet, which tests/run.sh installs):\n{text}");
    assert_eq!(files_under(dir.path()), GENERATED.iter().map(|f| f.to_string()).collect(), "the files it writes");
    let mut stale = Vec::new();
    for f in GENERATED {
        let fresh = dir.path().join(f);
        if std::fs::read_to_string(&fresh).unwrap() != read(f) {
            let (_, diff) = tool("diff", &["-u", f, fresh.to_str().unwrap()], &repo(""));
            stale.push(format!("{f}:\n{diff}"));
        }
    }
    assert!(
        stale.is_empty(),
        "generated files differ from the mixin: run deploy/mixin/generate.sh and commit them\n{}",
        stale.join("\n")
    );
}

/// The mixin imported as a user would, with `_config` overridden: the overrides reach the alerts,
/// the Grafana alert rules and the dashboard; with separateRecordingRules the recording rules move
/// to prometheusRules.
#[test]
fn the_mixin_follows_its_config() {
    let program = r#"
        local authprobe = (import 'mixin.libsonnet') + { _config+:: {
          authprobeSelector: 'job="synthetic-logins"',
          runbookURLPattern: 'https://runbooks.example/authprobe#%s',
          loginSlowSeconds: 3,
          alertFor+: { AuthprobeLoginSlow: '30m' },
          dashboardUid: 'mine',
          dashboardTags: ['sre'],
          separateRecordingRules: true,
        } };
        {
          rules: authprobe.prometheusRules,
          alerts: authprobe.prometheusAlerts,
          grafana: authprobe.grafanaAlerting,
          dashboard: authprobe.grafanaDashboards['authprobe.json'],
        }
    "#;
    let out = std::process::Command::new("jsonnet")
        .args(["-J", "deploy/mixin", "-e", program])
        .current_dir(repo(""))
        .output()
        .expect("jsonnet (Debian's jsonnet; tests/run.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let recording = v["rules"]["groups"][0]["rules"].as_array().unwrap();
    assert_eq!(v["rules"]["groups"][0]["name"], "authprobe.rules");
    assert!(!recording.is_empty() && recording.iter().all(|r| r.get("record").is_some()));
    let alerts = v["alerts"]["groups"][0]["rules"].as_array().unwrap();
    assert!(alerts.iter().all(|r| r.get("alert").is_some()), "only alerts in prometheusAlerts");
    let names: BTreeSet<&str> = alerts.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(names, ALERTS.into_iter().collect());
    for a in alerts {
        let url = a["annotations"]["runbook_url"].as_str().unwrap();
        assert_eq!(url, format!("https://runbooks.example/authprobe#{}", a["alert"].as_str().unwrap().to_lowercase()));
    }
    let alert = |name: &str| alerts.iter().find(|r| r["alert"] == name).unwrap();
    assert_eq!(
        alert("AuthprobeExporterDown")["expr"],
        r#"up{job="synthetic-logins"} == 0 or absent(up{job="synthetic-logins"})"#
    );
    let slow = alert("AuthprobeLoginSlow");
    assert_eq!(slow["expr"], "target:authprobe_login_duration_seconds:p95_5m > 3");
    assert_eq!(slow["for"], "30m");
    assert!(slow["annotations"]["description"].as_str().unwrap().contains("(over 3 s for 30 minutes)"));
    let grafana = v["grafana"]["groups"][0]["rules"].as_array().unwrap();
    let down = grafana.iter().find(|r| r["title"] == "AuthprobeExporterDown").unwrap();
    assert_eq!(down["data"][0]["model"]["expr"], r#"min(up{job="synthetic-logins"})"#);
    assert_eq!(v["dashboard"]["uid"], "mine");
    assert_eq!(v["dashboard"]["tags"], serde_json::json!(["sre"]));
}

/// `for:` durations divided by `factor` (at least 1 s): the documented way the end-to-end test
/// runs the real rules in seconds instead of minutes.
fn scale_for(rules: &str, factor: u64) -> String {
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(rules).unwrap();
    for group in doc["groups"].as_sequence_mut().unwrap() {
        for rule in group["rules"].as_sequence_mut().unwrap() {
            if let Some(text) = rule.get("for").and_then(|f| f.as_str()).map(str::to_owned) {
                let d = authprobe::duration::parse(&text).unwrap();
                let scaled = (d.as_secs() / factor).max(1);
                rule["for"] = serde_yaml_ng::Value::from(format!("{scaled}s"));
            }
        }
    }
    serde_yaml_ng::to_string(&doc).unwrap()
}

/// Notifications received by the test's webhook: receiver path and body.
type Inbox = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

async fn webhook() -> (std::net::SocketAddr, Inbox, tokio::task::JoinHandle<()>) {
    let inbox: Inbox = Arc::default();
    let kept = inbox.clone();
    let app = axum::Router::new().route(
        "/{receiver}",
        axum::routing::post(
            move |axum::extract::Path(receiver): axum::extract::Path<String>, body: axum::Json<serde_json::Value>| {
                let kept = kept.clone();
                async move {
                    kept.lock().unwrap().push((receiver, body.0));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, inbox, task)
}

/// Waits (bounded) for a notification on `receiver` about `alert` for `probe` with `status`.
async fn notified(inbox: &Inbox, receiver: &str, alert: &str, probe: &str, status: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let found = inbox.lock().unwrap().iter().any(|(r, body)| {
            r == receiver
                && body["alerts"].as_array().unwrap().iter().any(|a| {
                    a["labels"]["alertname"] == alert && a["labels"]["probe"] == probe && a["status"] == status
                })
        });
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {status} {alert} for {probe} at /{receiver} within {within:?}; received: {:?}",
            inbox.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A running Alertmanager (Debian's prometheus-alertmanager), killed when dropped.
struct Alertmanager {
    _child: tokio::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts with deploy/alertmanager/alertmanager.yml, its receivers pointed at `webhook` and
    /// its timers shortened to a second.
    async fn start(webhook: std::net::SocketAddr) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let mut config: serde_yaml_ng::Value = yaml("deploy/alertmanager/alertmanager.yml");
        for receiver in config["receivers"].as_sequence_mut().unwrap() {
            let name = receiver["name"].as_str().unwrap().to_owned();
            for hook in receiver["webhook_configs"].as_sequence_mut().unwrap() {
                hook["url"] = format!("http://{webhook}/{name}").into();
            }
        }
        let shorten = |route: &mut serde_yaml_ng::Value| {
            for timer in ["group_wait", "group_interval", "repeat_interval"] {
                if route.get(timer).is_some() {
                    route[timer] = "1s".into();
                }
            }
        };
        shorten(&mut config["route"]);
        for route in config["route"]["routes"].as_sequence_mut().unwrap() {
            shorten(route);
        }
        let file = dir.path().join("alertmanager.yml");
        std::fs::write(&file, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
        let (child, base) = start_daemon(
            "prometheus-alertmanager",
            &[
                format!("--config.file={}", file.display()),
                format!("--storage.path={}", dir.path().join("data").display()),
                "--cluster.listen-address=".to_owned(),
            ],
        )
        .await;
        Alertmanager { _child: child, base: base.trim_start_matches("http://").to_owned(), _dir: dir }
    }
}

/// The whole path: simulator → authprobe → Prometheus with the real rules (`for:` scaled 60×) →
/// Alertmanager with the example routing → the test's webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_account_reaches_alertmanager_and_its_recovery_resolves_it() {
    let sim = simulator(vec![Account::new("steady", "pw"), Account::new("flaky", "pw")]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probes.yaml");
    std::fs::write(
        &file,
        format!(
            "defaults: {{interval: 1s, timeout: 900ms, lockout_guard: {{max_backoff: 2s}}}}\n\
             targets: [{{name: sim, base_url: {}, app_key: {APP_KEY}}}]\n\
             probes:\n\
             \x20 - {{name: steady, target: sim, username: steady, password: pw}}\n\
             \x20 - {{name: flaky, target: sim, username: flaky, password: pw}}\n",
            sim.base_url()
        ),
    )
    .unwrap();
    let svc = Service::start(dir.path(), &[], &["--config.file", file.to_str().unwrap()]).await;
    let (hook, inbox, _hook_task) = webhook().await;
    let am = Alertmanager::start(hook).await;
    let rules = scale_for(&read(RULES), 60);
    assert!(rules.contains("for: 5s") && !rules.contains("for: 5m"), "scaled");
    let prom = Prometheus::start(
        &format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
             rule_files: [authprobe.rules.yml]\n\
             alerting: {{alertmanagers: [{{static_configs: [{{targets: ['{am}']}}]}}]}}\n\
             scrape_configs:\n  - job_name: authprobe\n    static_configs: [{{targets: ['{target}']}}]\n",
            am = am.base,
            target = svc.base.trim_start_matches("http://"),
        ),
        &[("authprobe.rules.yml", &rules)],
    )
    .await;
    prom.query_until(r#"authprobe_probe_success{probe="flaky"} == 1"#, Duration::from_secs(20)).await;

    // The account breaks (its password changed): a ticket names the probe.
    sim.update_account("flaky", |a| a.password = "rotated".into());
    notified(&inbox, "tickets", "AuthprobeLoginFailing", "flaky", "firing", Duration::from_secs(60)).await;
    let firing = inbox.lock().unwrap().clone();
    let (_, body) = firing.iter().find(|(r, _)| r == "tickets").unwrap();
    let alert = body["alerts"].as_array().unwrap().iter().find(|a| a["labels"]["probe"] == "flaky").unwrap();
    assert_eq!(alert["labels"]["severity"], "ticket");
    assert_eq!(alert["labels"]["target"], "sim");
    let description = alert["annotations"]["description"].as_str().unwrap();
    assert!(
        description.contains("Probe flaky (target sim)") && description.contains("reason invalid_credentials"),
        "{description}"
    );
    assert!(
        firing.iter().all(|(_, b)| b["alerts"].as_array().unwrap().iter().all(|a| a["labels"]["probe"] != "steady")),
        "the healthy probe raised nothing"
    );
    assert!(firing.iter().all(|(r, _)| r != "pager"), "one failing probe of two pages nobody: {firing:?}");

    // Fixed: the alert resolves.
    sim.update_account("flaky", |a| a.password = "pw".into());
    notified(&inbox, "tickets", "AuthprobeLoginFailing", "flaky", "resolved", Duration::from_secs(60)).await;
}

/// Every PromQL expression of the dashboard (panels and variables) and of the Grafana alert
/// rules, with the dashboard's variables substituted, against a real Prometheus that scrapes
/// authprobe probing healthy, failing, PIN, validated and HTTPS accounts and an OAuth 2.0 service
/// account (discovery, JWKS, token lifetime) and evaluates the rules:
/// each one returns data. And the files have the structure Grafana reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grafana_query_returns_data_from_a_real_prometheus() {
    let pki = pki(&["127.0.0.1"]);
    let tls_sim = tls_simulator(vec![Account::new("secure", "pw")], &pki).await;
    let sim = oauth2_simulator(
        vec![authprobe::simulator::oauth2::SimClient::new("svc", CLIENT_SECRET, &["client_credentials"])],
        vec![Account::new("good", "pw"), pin_account("pinned", "pw", "1234"), Account::new("victim", "pw"), {
            let mut a = Account::new("expired", "pw");
            a.password_expired = true;
            a
        }],
    )
    .await;
    // A real directory for the Directories row: a good account, one whose password expires in
    // 5 days, one on grace logins, one locked (ppolicy_use_lockout: account_locked).
    let ldap = common::slapd::Slapd::start(common::slapd::Options { use_lockout: true, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let file = dir.path().join("probes.yaml");
    std::fs::write(
        &file,
        format!(
            "defaults: {{interval: 1s, timeout: 900ms, lockout_guard: {{max_failures: 0}}}}\n\
             targets:\n\
             \x20 - {{name: plain, base_url: {plain}, app_key: {APP_KEY}}}\n\
             \x20 - {{name: secure, base_url: {secure}, app_key: {APP_KEY}, tls: {{ca_file: ca.pem}}}}\n\
             \x20 - {{name: idp, protocol: oauth2, issuer: {issuer}, client_id: svc, client_secret: {CLIENT_SECRET}}}\n\
             \x20 - {{name: directory, protocol: ldap, url: '{ldaps}', tls: {{ca_file: '{ldap_ca}'}}}}\n\
             probes:\n\
             \x20 - {{name: good, target: plain, username: good, password: pw, validate: true, logout: true}}\n\
             \x20 - {{name: pinned, target: plain, username: pinned, password: pw, pin: '1234'}}\n\
             \x20 - {{name: bad, target: plain, username: victim, password: wrong}}\n\
             \x20 - {{name: expired, target: plain, username: expired, password: pw}}\n\
             \x20 - {{name: secure, target: secure, username: secure, password: pw}}\n\
             \x20 - {{name: service, target: idp, grant: client_credentials, validate: jwt}}\n\
             \x20 - {{name: ldap-good, target: directory, bind_dn: '{user_dn}', password: '{user_pw}', whoami: true}}\n\
             \x20 - {{name: ldap-expiring, target: directory, bind_dn: '{exp_dn}', password: '{exp_pw}'}}\n\
             \x20 - {{name: ldap-grace, target: directory, bind_dn: '{grace_dn}', password: '{grace_pw}', interval: 20s}}\n\
             \x20 - {{name: ldap-locked, target: directory, bind_dn: '{locked_dn}', password: '{locked_pw}'}}\n",
            plain = sim.base_url(),
            issuer = sim.issuer().unwrap(),
            secure = tls_sim.base_url(),
            ldaps = ldap.ldaps_url(),
            ldap_ca = ldap.ca_pem.display(),
            user_dn = common::slapd::USER_DN,
            user_pw = common::slapd::USER_PASSWORD,
            exp_dn = common::slapd::EXPIRING_DN,
            exp_pw = common::slapd::EXPIRING_PASSWORD,
            grace_dn = common::slapd::GRACE_DN,
            grace_pw = common::slapd::GRACE_PASSWORD,
            locked_dn = common::slapd::LOCKED_DN,
            locked_pw = common::slapd::LOCKED_PASSWORD,
        ),
    )
    .unwrap();
    let svc = Service::start(dir.path(), &[], &["--config.file", file.to_str().unwrap(), "--location", "lab"]).await;
    let prom = Prometheus::start(
        &format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
             rule_files: [authprobe.rules.yml]\n\
             scrape_configs:\n  - job_name: authprobe\n    static_configs: [{{targets: ['{}']}}]\n",
            svc.base.trim_start_matches("http://")
        ),
        &[("authprobe.rules.yml", &read(RULES))],
    )
    .await;
    // Rates need a few scrapes, and the recording rules a few evaluations over them.
    prom.query_until("target:authprobe_login_availability:ratio_rate1h", Duration::from_secs(30)).await;
    prom.query_until(
        r#"histogram_quantile(0.95, sum by (le) (rate(authprobe_probe_login_duration_seconds_bucket[10s])))"#,
        Duration::from_secs(30),
    )
    .await;
    // Each grace bind uses one of 3 grace logins: at 20 s the series lasts a minute from the first run.
    prom.query_until("authprobe_probe_grace_logins_remaining", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let substitute = |expr: &str| {
        expr.replace("$__rate_interval", "10s")
            .replace("$__interval", "5s")
            .replace("$__range", "1m")
            .replace("$target", ".*")
            .replace("$probe", ".*")
            .replace("$location", ".*")
            .replace("$job", ".*")
    };

    // The dashboard: the structure Grafana expects, then every query.
    let dash: serde_json::Value = serde_json::from_str(&read("deploy/grafana/dashboards/authprobe.json")).unwrap();
    assert_eq!(dash["uid"], "authprobe-logins");
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 36);
    let vars: Vec<&str> =
        dash["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(vars, ["datasource", "job", "target", "location", "probe"]);
    let mut exprs: Vec<(String, String)> = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in dash["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "panel ids are unique");
        assert!(panel["gridPos"]["w"].as_u64().is_some() && panel["gridPos"]["h"].as_u64().is_some());
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap();
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        assert!(panel["description"].as_str().is_some_and(|d| d.len() > 20), "{title}: a description");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: targets");
        for t in targets {
            assert!(t["refId"].is_string() && t["datasource"]["uid"] == "${datasource}", "{title}");
            // The duration histograms carry exemplars (the run that last landed in each bucket).
            let expr = t["expr"].as_str().unwrap();
            if expr.contains("_login_duration_seconds_bucket") || expr.contains("_step_duration_seconds_bucket") {
                assert_eq!(t["exemplar"], true, "{title}: exemplars on a duration panel");
            }
            exprs.push((title.to_owned(), t["expr"].as_str().unwrap().to_owned()));
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap().iter().filter(|v| v["type"] == "query") {
        // label_values(METRIC{…}, LABEL): the metric selector must find series with that label.
        let q = v["query"]["query"].as_str().unwrap();
        let inner = q.strip_prefix("label_values(").and_then(|r| r.strip_suffix(')')).unwrap();
        let (selector, label) = inner.rsplit_once(',').unwrap();
        exprs.push((format!("variable {}", v["name"]), format!("count by ({}) ({})", label.trim(), selector.trim())));
    }
    assert!(exprs.len() >= 25, "{} expressions", exprs.len());

    // The Grafana alert rules and their provisioning.
    let alerts = yaml("deploy/grafana/provisioning/alerting/authprobe-alerts.yaml");
    let datasource = yaml("deploy/grafana/provisioning/datasources/prometheus.yaml");
    let ds_uid = datasource["datasources"][0]["uid"].as_str().unwrap().to_owned();
    let rules = alerts["groups"][0]["rules"].as_sequence().unwrap();
    let titles: BTreeSet<&str> = rules.iter().map(|r| r["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["AuthprobeExporterDown", "AuthprobeLoginAvailabilityBurnRate", "AuthprobeTargetDown"].into());
    for r in rules {
        let title = r["title"].as_str().unwrap();
        assert_eq!(r["labels"]["severity"], "page", "{title}: a paging alert");
        let refs: Vec<&str> = r["data"].as_sequence().unwrap().iter().map(|d| d["refId"].as_str().unwrap()).collect();
        assert!(refs.contains(&r["condition"].as_str().unwrap()), "{title}: condition names a query");
        assert_eq!(r["data"][0]["datasourceUid"].as_str().unwrap(), ds_uid, "{title}");
        assert!(r["annotations"]["runbook_url"].as_str().unwrap().starts_with("docs/runbook.md#"));
        exprs.push((format!("Grafana alert {title}"), r["data"][0]["model"]["expr"].as_str().unwrap().to_owned()));
    }
    let policy_receiver = alerts["policies"][0]["receiver"].as_str().unwrap();
    assert_eq!(alerts["contactPoints"][0]["name"].as_str().unwrap(), policy_receiver);
    let provider = yaml("deploy/grafana/provisioning/dashboards/authprobe.yaml");
    assert_eq!(provider["providers"][0]["type"], "file");

    let mut empty = Vec::new();
    for (what, expr) in &exprs {
        let result = prom.query(&substitute(expr)).await;
        if result.is_empty() {
            empty.push(format!("{what}: {expr}"));
        }
    }
    assert!(empty.is_empty(), "queries that returned nothing:\n{}", empty.join("\n"));
}

/// The URL template of the Grafana datasource's exemplar link for `run_id`, `$$` read as
/// Grafana's provisioning reads it.
fn exemplar_link(datasource: &serde_yaml_ng::Value) -> String {
    let destinations = datasource["datasources"][0]["jsonData"]["exemplarTraceIdDestinations"].as_sequence().unwrap();
    let run_id = destinations.iter().find(|d| d["name"] == "run_id").expect("an exemplar link named run_id");
    run_id["url"].as_str().unwrap().replace("$$", "$")
}

/// The duration panels' exemplars, end to end: a real Prometheus with exemplar storage scrapes
/// authprobe (in OpenMetrics, which it asks for first), and each exemplar it keeps names a run
/// that the Grafana datasource's link opens on the probe's page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemplars_in_a_real_prometheus_lead_to_their_runs() {
    let sim = simulator(vec![Account::new("good", "pw"), pin_account("pinned", "pw", "1234")]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probes.yaml");
    std::fs::write(
        &file,
        format!(
            "defaults: {{interval: 1s, timeout: 900ms, lockout_guard: {{max_failures: 0}}}}\n\
             targets:\n  - {{name: plain, base_url: {}, app_key: {APP_KEY}}}\n\
             probes:\n\
             \x20 - {{name: good, target: plain, username: good, password: pw}}\n\
             \x20 - {{name: pinned, target: plain, username: pinned, password: pw, pin: '1234'}}\n\
             \x20 - {{name: bad, target: plain, username: good, password: wrong}}\n",
            sim.base_url()
        ),
    )
    .unwrap();
    let svc = Service::start(dir.path(), &[], &["--config.file", file.to_str().unwrap()]).await;
    let prom = Prometheus::start_with(
        &format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
             scrape_configs:\n  - job_name: authprobe\n    static_configs: [{{targets: ['{}']}}]\n",
            svc.base.trim_start_matches("http://")
        ),
        &[],
        &["--enable-feature=exemplar-storage"],
    )
    .await;
    // The dashboard's query of its login latency panel, as Grafana asks for its exemplars.
    let query = r#"authprobe_probe_login_duration_seconds_bucket{job="authprobe"}"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let series = loop {
        let series = prom.exemplars(query).await;
        let probes: BTreeSet<&str> = series.iter().filter_map(|s| s["seriesLabels"]["probe"].as_str()).collect();
        if probes.len() == 3 {
            break series;
        }
        assert!(std::time::Instant::now() < deadline, "exemplars of 3 probes within 30 s: {series:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let link = exemplar_link(&yaml("deploy/grafana/provisioning/datasources/prometheus.yaml"));
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut followed = 0;
    for s in &series {
        let (probe, le) = (s["seriesLabels"]["probe"].as_str().unwrap(), s["seriesLabels"]["le"].as_str().unwrap());
        for e in s["exemplars"].as_array().unwrap() {
            let id = e["labels"]["run_id"].as_str().unwrap();
            assert_eq!(e["labels"].as_object().unwrap().len(), 1, "only the run id: {e}");
            let value: f64 = e["value"].as_str().unwrap().parse().unwrap();
            let bound: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
            assert!(value <= bound, "{probe}: {value} in the bucket le={le}");
            // The datasource's link, on this test's authprobe, leads to the run's page.
            let url = link.replace("http://localhost:9871", &svc.base).replace("${__value.raw}", id);
            let r = no_redirects.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 303, "{url}");
            let location = r.headers()["location"].to_str().unwrap().to_owned();
            let n = id.rsplit('-').next().unwrap();
            assert_eq!(location, format!("/probes/{probe}/runs/{n}"));
            let (status, page) = get(&svc.url(&location)).await;
            assert_eq!(status, 200);
            assert!(page.contains(&format!("<h1>Run {id} of {probe}</h1>")), "{probe}: run {id}'s page");
            // Its step times, whose sum the exemplar's duration holds.
            assert!(page.contains("<h2>Steps</h2>\n<table>"), "{probe}: run {id}'s steps");
            // And the API says it is that run: its probe, duration and time.
            let (_, run) = get(&svc.url(&format!("/api/v1/runs/{id}"))).await;
            let run: serde_json::Value = serde_json::from_str(&run).unwrap();
            assert_eq!(run["probe"], probe);
            assert!((run["run"]["duration_seconds"].as_f64().unwrap() - value).abs() < 2e-6, "{run} {e}");
            let at = e["timestamp"].as_f64().unwrap();
            assert!((run["run"]["finished_unix"].as_f64().unwrap() - at).abs() <= 1.0, "{run} {e}");
            followed += 1;
        }
    }
    assert!(followed >= 3, "{followed} exemplars followed");
    // The step histogram carries them too, a PIN step's among them.
    let steps = prom.exemplars(r#"authprobe_probe_step_duration_seconds_bucket{step="SecutityPin"}"#).await;
    assert!(steps.iter().any(|s| s["exemplars"].as_array().is_some_and(|e| !e.is_empty())), "{steps:?}");
}

#[test]
fn dockerfile_passes_hadolint_and_bakes_in_no_configuration() {
    let (code, out) = tool(&pytool("hadolint"), &["Dockerfile"], &repo(""));
    assert_eq!(code, 0, "hadolint:\n{out}");
    let dockerfile = read("Dockerfile");
    let last_stage = &dockerfile[dockerfile.rfind("\nFROM ").unwrap()..];
    assert!(dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")) >= 2, "multi-stage");
    assert!(last_stage.contains("\nUSER 65532:65532\n"), "runs as non-root");
    assert!(last_stage.contains("\nEXPOSE 9871\n"));
    assert!(last_stage.contains("HEALTHCHECK") && last_stage.contains("\"healthcheck\""));
    for baked in ["COPY probes.yaml", "COPY deploy", "secrets"] {
        assert!(!last_stage.contains(baked), "{baked:?} in the runtime image");
    }
    assert!(read(".dockerignore").lines().any(|l| l == "target"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_command_answers_for_a_running_service() {
    let sim = simulator(vec![Account::new("a", "pw")]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probes.yaml");
    std::fs::write(
        &file,
        format!(
            "targets: [{{name: t, base_url: {}, app_key: {APP_KEY}}}]\nprobes: [{{name: a, target: t, username: a, password: pw}}]\n",
            sim.base_url()
        ),
    )
    .unwrap();
    let svc = Service::start(dir.path(), &[], &["--config.file", file.to_str().unwrap()]).await;
    let address = svc.base.trim_start_matches("http://").to_owned();
    let (code, out) = tool(common::service::BIN, &["healthcheck", "--web.listen-address", &address], dir.path());
    assert_eq!(code, 0, "{out}");
    let (code, out) = tool(
        common::service::BIN,
        &["healthcheck", "--web.listen-address", &format!("127.0.0.1:{}", closed_port())],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(out.contains("is not healthy: Connection refused"), "{out}");
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let unit = read("deploy/systemd/authprobe.service");
    for setting in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "LoadCredential=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=authprobe",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(setting)), "{setting} missing");
    }
    // The state survives restarts in the directory systemd makes for the service.
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(exec.ends_with("--storage.path ${STATE_DIRECTORY}"), "{exec}");
    // systemd-analyze checks that the binary exists: point the unit at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("authprobe.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/authprobe", common::service::BIN)).unwrap();
    let copy = copy.to_str().unwrap();
    let (code, out) = tool("systemd-analyze", &["verify", copy], dir.path());
    assert_eq!(code, 0, "systemd-analyze verify:\n{out}");
    assert!(!out.contains("Unknown key") && !out.contains("Failed"), "{out}");
    let (_, out) = tool("systemd-analyze", &["security", "--offline=yes", copy], dir.path());
    let exposure: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for authprobe.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    assert!(exposure <= 2.0, "exposure {exposure} (systemd's scale: 0 safe .. 10 unsafe)");
}

#[test]
fn kubernetes_manifests_validate_and_match_the_rules_and_the_binary() {
    let k8s = |f: &str| format!("deploy/kubernetes/{f}");
    let core = ["statefulset.yaml", "deployment.yaml", "service.yaml"];
    let (code, out) =
        tool(&pytool("kubernetes-validate"), &[&["--strict"][..], &core[..]].concat(), &repo("deploy/kubernetes"));
    assert_eq!(code, 0, "kubernetes-validate:\n{out}");
    assert_eq!(out.matches(" passed for resource ").count(), core.len(), "{out}");

    // The kustomization names files that exist.
    let kustomization = yaml(&k8s("kustomization.yaml"));
    let mut listed: Vec<String> =
        kustomization["resources"].as_sequence().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
    for generator in ["configMapGenerator", "secretGenerator"] {
        for g in kustomization[generator].as_sequence().unwrap() {
            listed.extend(g["files"].as_sequence().unwrap().iter().map(|f| f.as_str().unwrap().to_owned()));
        }
    }
    for f in &listed {
        assert!(repo(&k8s(f)).exists(), "kustomization names {f}, which is missing");
    }

    // The PrometheusRule is the rules file.
    let rule = yaml(&k8s("prometheusrule.yaml"));
    assert_eq!(
        rule["spec"]["groups"],
        yaml(RULES)["groups"],
        "prometheusrule.yaml is out of date: see its first lines"
    );

    // The StatefulSet: as many shards as replicas, probes on the named port, hardened.
    let ss = yaml(&k8s("statefulset.yaml"));
    let pod = &ss["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let replicas = ss["spec"]["replicas"].as_u64().unwrap();
    assert!(
        args.contains(&format!("--shard.count={replicas}").as_str()) && args.contains(&"--shard.from-hostname"),
        "{args:?}"
    );
    assert_eq!(container["ports"][0]["name"], "metrics");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/-/ready");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(
        container["resources"]["requests"]["memory"].is_string()
            && container["resources"]["limits"]["memory"].is_string()
    );
    // State: each pod's own volume claim, mounted where --storage.path points, writable by the
    // pod's group; the Deployment keeps it in an emptyDir.
    let path = args.iter().find_map(|a| a.strip_prefix("--storage.path=")).expect("--storage.path");
    let claim = &ss["spec"]["volumeClaimTemplates"][0];
    let mount = container["volumeMounts"].as_sequence().unwrap().iter().find(|m| m["mountPath"] == path);
    assert_eq!(mount.map(|m| &m["name"]), Some(&claim["metadata"]["name"]), "{path} is the claim's mount");
    assert_eq!(claim["spec"]["accessModes"][0], "ReadWriteOnce");
    assert_eq!(pod["securityContext"]["fsGroup"], pod["securityContext"]["runAsGroup"]);
    let deployment = yaml(&k8s("deployment.yaml"));
    let dpod = &deployment["spec"]["template"]["spec"];
    let dargs: Vec<&str> =
        dpod["containers"][0]["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(dargs.contains(&format!("--storage.path={path}").as_str()), "{dargs:?}");
    assert!(dpod["volumes"].as_sequence().unwrap().iter().any(|v| v["name"] == "data" && v["emptyDir"].is_mapping()));
    let monitor = yaml(&k8s("servicemonitor.yaml"));
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");

    // The binary accepts the StatefulSet's arguments and the ConfigMap's probes file, with the
    // Secret's files where the pod mounts them.
    let dir = tempfile::tempdir().unwrap();
    let probes =
        read(&k8s("probes.yaml")).replace("/etc/authprobe/secrets/", &format!("{}/", repo(&k8s("secrets")).display()));
    std::fs::write(dir.path().join("probes.yaml"), probes).unwrap();
    let (code, out) = tool(common::service::BIN, &["check-config", "--config.file", "probes.yaml"], dir.path());
    assert_eq!(code, 0, "{out}");
    // Its arguments parse: the run stops at the configuration (or the host name), not at clap.
    let run_args: Vec<&str> = args.iter().copied().filter(|a| !a.starts_with("--config.file")).collect();
    let (code, out) = tool(
        common::service::BIN,
        &[&run_args[..], &["--config.file=/nonexistent/probes.yaml"][..]].concat(),
        dir.path(),
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("host name") || out.contains("/nonexistent/probes.yaml"), "{out}");
    assert!(!out.contains("unexpected argument") && !out.contains("invalid value"), "{out}");
}

/// No Docker here: the compose file is checked for what ties the stack together — every mounted
/// path exists, and the names the configurations use are the services' names.
#[test]
fn compose_stack_wires_the_same_files_and_names() {
    let compose = yaml("deploy/docker-compose.yml");
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(names, ["alertmanager", "authprobe", "grafana", "prometheus"].into());
    let named = compose["volumes"].as_mapping().unwrap();
    for (name, service) in services {
        for volume in service["volumes"].as_sequence().unwrap() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            let declared = named.contains_key(source);
            assert!(declared || repo("deploy").join(source).exists(), "{name:?}: {source} does not exist");
        }
    }
    // authprobe's state is on a named volume, where its command puts it.
    let authprobe = &compose["services"]["authprobe"];
    let command: Vec<&str> = authprobe["command"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let path = command[command.iter().position(|a| *a == "--storage.path").unwrap() + 1];
    assert!(
        authprobe["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|v| v.as_str() == Some(&format!("authprobe-data:{path}"))),
        "{path}"
    );
    assert_eq!(compose["services"]["authprobe"]["build"], "..");
    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    assert_eq!(prometheus["scrape_configs"][0]["static_configs"][0]["targets"][0], "authprobe:9871");
    assert_eq!(prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0], "alertmanager:9093");
    let datasource = yaml("deploy/grafana/provisioning/datasources/prometheus.yaml");
    assert_eq!(datasource["datasources"][0]["url"], "http://prometheus:9090");
    // Exemplars: kept by Prometheus, linked by Grafana to the port compose publishes authprobe on.
    let command = compose["services"]["prometheus"]["command"].as_sequence().unwrap();
    assert!(command.iter().any(|a| a.as_str() == Some("--enable-feature=exemplar-storage")));
    let link = exemplar_link(&datasource);
    assert!(link.starts_with("http://localhost:9871/runs/"), "{link}");
    assert!(compose["services"]["authprobe"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|p| p.as_str() == Some("9871:9871")));
    let provider = yaml("deploy/grafana/provisioning/dashboards/authprobe.yaml");
    let mounted = compose["services"]["grafana"]["volumes"][1].as_str().unwrap();
    assert!(
        mounted.ends_with(&format!(":{}:ro", provider["providers"][0]["options"]["path"].as_str().unwrap())),
        "{mounted}"
    );
    // The demo configuration listens where the image exposes it.
    assert!(read("Dockerfile").contains("EXPOSE 9871"));
}
