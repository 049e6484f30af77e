//! A real Prometheus (Debian's package) for the tests: started on a free loopback port with a
//! configuration of the test's making, queried over its HTTP API.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use super::{closed_port, http};

/// A running Prometheus, killed when dropped.
pub struct Prometheus {
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` (job `authprobe`) every second.
    pub async fn scraping(target: &str) -> Prometheus {
        Self::start(
            &format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n  - job_name: authprobe\n    static_configs: [{{targets: ['{target}']}}]\n"
            ),
            &[],
        )
        .await
    }

    /// Starts with `config` as prometheus.yml, beside `files` (name, content), and waits until
    /// it is ready (at most 30 s).
    pub async fn start(config: &str, files: &[(&str, &str)]) -> Prometheus {
        Self::start_with(config, files, &[]).await
    }

    /// [`Prometheus::start`] with `flags` too (`--enable-feature=…`).
    pub async fn start_with(config: &str, files: &[(&str, &str)], flags: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let mut args = vec![
            format!("--config.file={}", config_file.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        let (child, base) = start_daemon("prometheus", &args).await;
        Prometheus { child, base, dir }
    }

    /// Stops it now.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// The directory its files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// An instant query's result vector.
    pub async fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let url = url::Url::parse_with_params(&format!("{}/api/v1/query", self.base), [("query", promql)]).unwrap();
        let r = http().get(url).send().await.expect("query prometheus");
        let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// `/api/v1/query_exemplars` over the last minute: each series with its exemplars.
    pub async fn exemplars(&self, promql: &str) -> Vec<serde_json::Value> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let (start, end) = ((now - 60).to_string(), (now + 10).to_string());
        let url = url::Url::parse_with_params(
            &format!("{}/api/v1/query_exemplars", self.base),
            [("query", promql), ("start", &start), ("end", &end)],
        )
        .unwrap();
        let r = http().get(url).send().await.expect("query prometheus");
        let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"].as_array().cloned().unwrap_or_default()
    }

    /// Queries until the result is non-empty, at most `within`.
    pub async fn query_until(&self, promql: &str, within: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let r = self.query(promql).await;
            if !r.is_empty() {
                return r;
            }
            assert!(Instant::now() < deadline, "{promql}: still empty after {within:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Starts `program` (a daemon of the Prometheus ecosystem from Debian's packages) with `args` and
/// `--web.listen-address` on a free loopback port, quiet and killed when dropped, and waits (at
/// most 30 s) until its `/-/ready` answers 200. The child and `http://127.0.0.1:PORT`.
pub async fn start_daemon(program: &str, args: &[String]) -> (tokio::process::Child, String) {
    let port = closed_port();
    let child = tokio::process::Command::new(program)
        .args(args)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{program} from Debian's packages (tests/run.sh installs it): {e}"));
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http().get(format!("{base}/-/ready")).send().await, Ok(r) if r.status() == 200) {
        assert!(Instant::now() < deadline, "{program} not ready within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (child, base)
}
