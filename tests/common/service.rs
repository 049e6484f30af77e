//! The real `authprobe run` as a child process, and a parser for what its `/metrics` serves.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_authprobe");

/// A running `authprobe run`, killed when dropped.
pub struct Service {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts `authprobe [global…] run --web.listen-address 127.0.0.1:0 [args…]` in `dir` and waits
    /// until it serves and is ready (at most 20 s).
    pub async fn start(dir: &Path, global: &[&str], args: &[&str]) -> Service {
        let mut argv: Vec<&str> = global.to_vec();
        argv.extend(["run", "--web.listen-address", "127.0.0.1:0"]);
        argv.extend(args);
        Self::spawn(dir, &argv).await
    }

    /// Starts the binary with exactly `argv` in `dir` and waits until it is ready.
    pub async fn spawn(dir: &Path, argv: &[&str]) -> Service {
        Self::spawn_with_env(dir, argv, &[]).await
    }

    /// [`Service::spawn`] with these environment variables set for the child.
    pub async fn spawn_with_env(dir: &Path, argv: &[&str], env: &[(&str, &str)]) -> Service {
        let mut command = Command::new(BIN);
        command.args(argv).envs(env.iter().copied());
        Self::spawn_command(dir, command).await
    }

    /// Starts `command` (which runs the binary, perhaps through a wrapper) in `dir` and waits
    /// until it is ready.
    pub async fn spawn_command(dir: &Path, mut command: Command) -> Service {
        let mut child = command
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("authprobe starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            let mut reader = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if line.contains("serving metrics") {
                    // logfmt `address=…` or JSON `"address":"…"`.
                    let logfmt = line.split_whitespace().find_map(|f| f.strip_prefix("address="));
                    let json = line.split("\"address\":\"").nth(1).and_then(|r| r.split('"').next());
                    if let Some(addr) = logfmt.or(json) {
                        if let Some(tx) = addr_tx.take() {
                            let _ = tx.send(addr.to_owned());
                        }
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = match tokio::time::timeout(Duration::from_secs(20), addr_rx).await {
            Ok(Ok(a)) => a,
            _ => panic!("authprobe did not log its address; stderr:\n{}", stderr.lock().unwrap().join("\n")),
        };
        let service = Service { child, base: format!("http://{addr}"), stderr };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // Served over TLS or behind a password, /-/ready is out of reach: the log tells.
            if service.stderr().contains("probes scheduled") {
                break;
            }
            if let Ok(r) = super::http().get(service.url("/-/ready")).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "not ready within 20 s; stderr:\n{}", service.stderr());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        service
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The raw `/metrics` text (asserting status and content type).
    pub async fn metrics_text(&self) -> String {
        let r = super::http().get(self.url("/metrics")).send().await.expect("GET /metrics");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
        r.text().await.unwrap()
    }

    /// `/metrics` as Prometheus asks for it: OpenMetrics, exemplars and `_created` included.
    pub async fn metrics_openmetrics(&self) -> String {
        let r = super::http()
            .get(self.url("/metrics"))
            .header("accept", "application/openmetrics-text;version=1.0.0")
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
        r.text().await.unwrap()
    }

    /// `/metrics`, parsed.
    pub async fn metrics(&self) -> Exposition {
        Exposition::parse(&self.metrics_text().await)
    }

    /// Scrapes until `done` holds, at most `within`.
    pub async fn metrics_until(&self, within: Duration, done: impl Fn(&Exposition) -> bool) -> Exposition {
        let deadline = Instant::now() + within;
        loop {
            let m = self.metrics().await;
            if done(&m) {
                return m;
            }
            assert!(Instant::now() < deadline, "condition not met within {within:?}; last /metrics:\n{}", m.text);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILL: the process gets no chance to save anything. Returns once it is gone.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.expect("gone within 10 s");
    }

    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.child.id().expect("still running") as i32
    }

    /// Waits for the child to exit (at most 10 s) and returns its exit code; the log stays readable.
    pub async fn wait(&mut self) -> i32 {
        let status =
            tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.expect("exits within 10 s").unwrap();
        // Let the stderr reader take the last lines.
        tokio::time::sleep(Duration::from_millis(100)).await;
        status.code().unwrap_or(-1)
    }

    /// SIGTERM, then the exit code (at most 10 s), keeping the service for its log.
    pub async fn wait_terminated(&mut self) -> i32 {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        self.wait().await
    }

    /// [`Service::terminate`], then everything it logged, shutdown included.
    pub async fn terminate_with_log(self) -> (i32, String) {
        let lines = self.stderr.clone();
        let code = self.terminate().await;
        // The reader task sees the pipe close right after the exit.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let log = lines.lock().unwrap().join("\n");
        (code, log)
    }

    /// SIGTERM, then the exit code (at most 10 s).
    pub async fn terminate(mut self) -> i32 {
        let pid = self.child.id().expect("still running") as i32;
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("exits within 10 s of SIGTERM")
            .unwrap();
        status.code().unwrap_or(-1)
    }
}

/// One sample of the text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name with suffix (`_bucket`, `_total`, …).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name` (`""` if absent).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// A parsed exposition (text format 0.0.4).
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// `# TYPE` of each family.
    pub types: BTreeMap<String, String>,
    /// `# HELP` of each family.
    pub helps: BTreeMap<String, String>,
    /// Samples in order.
    pub samples: Vec<Sample>,
    /// The text it came from.
    pub text: String,
}

impl Exposition {
    /// Parses `text`, panicking on anything malformed.
    pub fn parse(text: &str) -> Exposition {
        let mut e = Exposition { text: text.to_owned(), ..Default::default() };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(e.types.insert(name.to_owned(), kind.to_owned()).is_none(), "TYPE twice for {name}");
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                e.helps.insert(name.to_owned(), help.to_owned());
            } else if line.starts_with('#') || line.is_empty() {
                continue;
            } else {
                e.samples.push(parse_sample(line));
            }
        }
        e
    }

    /// Samples named `name` whose labels include every pair of `with`.
    pub fn series(&self, name: &str, with: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name && with.iter().all(|(k, v)| s.label(k) == *v)).collect()
    }

    /// The value of the one sample matching; panics if not exactly one.
    pub fn value(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        let found = self.series(name, with);
        assert_eq!(found.len(), 1, "exactly one {name}{with:?}, found {found:?}");
        found[0].value
    }

    /// The value of the one sample matching, if there is exactly one.
    pub fn get(&self, name: &str, with: &[(&str, &str)]) -> Option<f64> {
        match self.series(name, with).as_slice() {
            [one] => Some(one.value),
            _ => None,
        }
    }
}

fn parse_sample(line: &str) -> Sample {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => panic!("no value in {line:?}"),
    };
    let mut labels = BTreeMap::new();
    let mut rest = rest;
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end = loop {
            // name
            let start = chars.peek().map(|(i, _)| *i).expect("label or }");
            if body[start..].starts_with('}') {
                break start + 1;
            }
            let eq = body[start..].find("=\"").expect("label=\"value\"") + start;
            let lname = body[start..eq].to_owned();
            while chars.peek().is_some_and(|(i, _)| *i < eq + 2) {
                chars.next();
            }
            let mut value = String::new();
            loop {
                match chars.next().expect("closing quote") {
                    (_, '\\') => match chars.next().expect("escape").1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, '"') => break,
                    (_, c) => value.push(c),
                }
            }
            assert!(labels.insert(lname.clone(), value).is_none(), "label {lname} twice in {line:?}");
            match chars.next().expect(", or }") {
                (_, ',') => continue,
                (i, '}') => break i + 1,
                (_, c) => panic!("unexpected {c:?} in {line:?}"),
            }
        };
        rest = &body[end..];
    }
    let value = rest.trim();
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value {v:?} in {line:?}")),
    };
    Sample { name: name.to_owned(), labels, value }
}
