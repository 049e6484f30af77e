//! authprobe: a synthetic monitor of login paths (ETNA Trader `/token`, OAuth 2.0 / OpenID Connect token
//! endpoints), exporting Prometheus metrics.
//!
//! Data flows one way: **config → scheduler → protocol → results → metrics / web**.
//!
//! - [`config`]: probes.yaml: what every target and probe has, its validation, `${VAR}` and
//!   `*_file` secrets; each family's own fields handed to the family.
//! - [`scheduler`]: when each probe runs (interval wheel, cron engine and its watchdog), with no
//!   overlap, a concurrency limit and panics caught.
//! - [`protocol`]: one login, by protocol family ([`protocol::etna`], [`protocol::oauth2`]), each a
//!   folder behind one interface ([`protocol::Family`]) registered in one line, over a
//!   transport-neutral run core (deadline, retries, timing, TLS facts, trace) and an HTTP layer
//!   for the HTTP families, and the [`protocol::Outcome`] it ends in. Knows nothing of
//!   scheduling, serving or metrics.
//! - [`results`]: what runs produced, per probe; written by the scheduler only.
//! - [`metrics`]: the `/metrics` exposition, read from results.
//! - [`web`]: the HTTP endpoints (axum), read from results and metrics.
//! - [`store`]: the state a restart keeps, in a SQLite file written in batches off the probe path.
//! - [`service`]: a running service: its schedule and the prober its runs go through, reloads
//!   and on-demand runs.
//! - [`simulator`]: a faithful ETNA `/token` server and an OAuth 2.0 authorization server, with
//!   faults, for tests and the demo.
//! - [`report`]: how an outcome is shown to a person (`probe` output, the per-run log line).
//! - [`logging`]: logfmt or JSON log lines on stderr.
//! - [`lanes`]: the single-threaded runtimes runs and logins execute on.
//! - [`duration`], [`yaml`]: small shared pieces (Prometheus durations, located YAML errors).

pub mod config;
pub mod duration;
pub mod hash;
pub mod instance;
pub mod lanes;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod panics;
pub mod protocol;
pub mod report;
pub mod results;
pub mod scheduler;
pub mod service;
pub mod simulator;
pub mod store;
pub mod web;
pub mod yaml;

/// Version string shown by `--version` and in outputs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Git revision of the build (`unknown` outside a git checkout).
pub const REVISION: &str = env!("AUTHPROBE_REVISION");

/// What `--version` prints, as Prometheus' exporters do: version and revision, build date, the
/// compiler and the platform.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision: ",
    env!("AUTHPROBE_REVISION"),
    ")\n  build date:   ",
    env!("AUTHPROBE_BUILD_DATE"),
    "\n  rust version: ",
    env!("AUTHPROBE_RUSTC"),
    "\n  platform:     ",
    env!("AUTHPROBE_TARGET"),
);
