//! The subcommands: their arguments (clap), and one module each for what they do.

mod check_config;
pub mod generate;
mod healthcheck;
mod probe;
mod serve;
mod simulate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use authprobe::config::Config;
use authprobe::simulator::{SimulatorBlock, SimulatorSpec};
use authprobe::yaml::FileErrors;
use clap::{Parser, Subcommand, ValueEnum};

/// Exit status: the probe ran and did not succeed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: bad usage or bad configuration.
pub const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "authprobe",
    version,
    long_version = authprobe::LONG_VERSION,
    about = "Synthetic monitor of login paths (ETNA Trader, OAuth 2.0 / OpenID Connect, interactive logins, LDAP / Active Directory)"
)]
pub struct Cli {
    /// Only log messages at or above this level.
    #[arg(long = "log.level", global = true, default_value = "info", value_parser = ["trace", "debug", "info", "warn", "error"])]
    pub log_level: String,
    /// Log line format.
    #[arg(long = "log.format", global = true, value_enum, default_value_t = LogFormat::Logfmt)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
    /// Every request and answer (secrets and tokens redacted), then the text summary.
    Trace,
}

/// How `run` serves its endpoints.
#[derive(clap::Args)]
pub struct WebArgs {
    /// Address to serve metrics on: HOST:PORT, or :PORT for every interface.
    #[arg(long = "web.listen-address", default_value = authprobe::web::DEFAULT_LISTEN)]
    listen_address: String,
    /// File with TLS and basic authentication settings (the Prometheus exporter-toolkit format),
    /// applied to every endpoint; re-read when it changes.
    #[arg(long = "web.config.file")]
    web_config_file: Option<PathBuf>,
    /// Enable POST /-/reload (SIGHUP reloads either way).
    #[arg(long = "web.enable-lifecycle", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    enable_lifecycle: bool,
    /// Enable GET /probe (runs a probe on demand; at most once per --probe.on-demand-min-interval).
    #[arg(long = "web.enable-on-demand", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    enable_on_demand: bool,
    /// Connections served at once; further clients wait.
    #[arg(long = "web.max-connections", default_value_t = authprobe::web::server::DEFAULT_MAX_CONNECTIONS as u32,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// Scrapes of /metrics rendered and sent at once; further scrapes wait their turn (memory
    /// stays bounded however many scrapers there are).
    #[arg(long = "web.max-concurrent-scrapes", default_value_t = authprobe::web::DEFAULT_MAX_CONCURRENT_SCRAPES as u32,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_concurrent_scrapes: u32,
    /// Write `_created` beside each counter and histogram in OpenMetrics (when Prometheus asks
    /// for it). Prometheus before 2.50, or without --enable-feature=created-timestamp-zero-ingestion,
    /// stores each as a series of its own; false leaves them out.
    #[arg(long = "web.openmetrics-created", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    openmetrics_created: bool,
    /// Time a client has to send a request's headers or complete a TLS handshake.
    #[arg(long = "web.read-header-timeout", default_value = "10s", value_parser = parse_duration)]
    read_header_timeout: Duration,
    /// Where the status page's footer links for documentation: the docs/ of this version
    /// rendered by mdbook, wherever you publish it (an http or https URL).
    #[arg(long = "web.docs-url", value_parser = parse_docs_url)]
    docs_url: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Probe on schedule and serve metrics (the default command).
    Run {
        /// The probes file.
        #[arg(long = "config.file", default_value = "probes.yaml")]
        config_file: PathBuf,
        #[command(flatten)]
        web: WebArgs,
        /// Logins in flight at most; further runs wait their turn.
        #[arg(long = "probe.concurrency", default_value_t = authprobe::scheduler::DEFAULT_CONCURRENCY as u32,
              value_parser = clap::value_parser!(u32).range(1..=65_536))]
        concurrency: u32,
        /// Least time between two on-demand runs (`GET /probe`) of one probe.
        #[arg(long = "probe.on-demand-min-interval", default_value = "10s", value_parser = parse_duration)]
        on_demand_min_interval: Duration,
        /// Run only the probes of this shard (0-based) of --shard.count.
        #[arg(long = "shard.index", requires = "shard_count", conflicts_with = "shard_from_hostname")]
        shard_index: Option<u32>,
        /// Split the probes among this many instances by a stable hash of their names.
        #[arg(long = "shard.count")]
        shard_count: Option<u32>,
        /// Take the shard index from the host name's trailing -N (a StatefulSet pod's ordinal).
        #[arg(long = "shard.from-hostname", requires = "shard_count")]
        shard_from_hostname: bool,
        /// Add location="NAME" to every probe series (for the same probes run from several places).
        #[arg(long = "location")]
        location: Option<String>,
        /// Check the configuration files (the probes file and what its probe_files match) this
        /// often and reload them when their content changed, as SIGHUP does. Off by default.
        #[arg(long = "config.auto-reload-interval", value_parser = parse_duration)]
        auto_reload_interval: Option<Duration>,
        /// Keep what a restart should not lose (history, failures, availability, lockout
        /// backoff, last outcomes) in this directory, created if missing; "" keeps it in
        /// memory only.
        #[arg(long = "storage.path", default_value = "data/", value_parser = parse_storage_path)]
        storage_path: PathBuf,
        /// Write changed state to the storage path this often (and at shutdown): at most this
        /// much is lost when the process is killed.
        #[arg(long = "storage.write-interval", default_value = "5s", value_parser = parse_write_interval)]
        storage_write_interval: Duration,
        /// Memory the traces of failed runs may take together (B, KiB, MiB or GiB): each probe
        /// keeps the trace of each of its last 20 failures while there is room; 0 traces nothing.
        /// Traces live in memory only.
        #[arg(long = "probe.failure-traces-size", default_value = "32MiB", value_parser = parse_size)]
        failure_traces_size: usize,
    },
    /// Run probes once and print their outcome.
    Probe {
        /// Probes to run (by name; `check-config` lists them).
        #[arg(conflicts_with = "all")]
        names: Vec<String>,
        /// Run every probe of the file.
        #[arg(long)]
        all: bool,
        /// The probes file.
        #[arg(long = "config.file", default_value = "probes.yaml")]
        config_file: PathBuf,
        /// Output format: text, one JSON object per probe and line, or a trace of every request
        /// and answer (secrets and tokens redacted) before the text.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Exit 0 if a running authprobe answers its health endpoint over plain HTTP (for container
    /// health checks, where no curl is installed); 401 from basic authentication counts as an
    /// answer.
    Healthcheck {
        /// The address authprobe serves on.
        #[arg(long = "web.listen-address", default_value = "127.0.0.1:9871")]
        address: String,
    },
    /// Validate the probes file without probing and list what would run.
    CheckConfig {
        /// The probes file.
        #[arg(long = "config.file", default_value = "probes.yaml")]
        config_file: PathBuf,
    },
    /// Serve the simulators on their own: the ETNA Trader API (/token), the OAuth 2.0 / OpenID
    /// Connect server with its login pages, and the Active Directory-like LDAP directory.
    Simulate {
        /// Address to listen on (default: the simulator block's, or 127.0.0.1:18080).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Accounts file; without it, the simulator: block of --config.file is served.
        #[arg(long)]
        accounts: Option<PathBuf>,
        /// The probes file whose simulator: block to serve.
        #[arg(long = "config.file", default_value = "probes.yaml")]
        config_file: PathBuf,
    },
}

/// An error that maps to an exit status.
pub enum Failure {
    Config(anyhow::Error),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Other(e.into())
    }
}

/// Runs `command`: its exit status, or the failure that maps to one.
pub async fn run(command: Command) -> Result<u8, Failure> {
    match command {
        Command::Run {
            config_file,
            web,
            concurrency,
            on_demand_min_interval,
            shard_index,
            shard_count,
            shard_from_hostname,
            location,
            auto_reload_interval,
            storage_path,
            storage_write_interval,
            failure_traces_size,
        } => {
            let instance = serve::instance(shard_index, shard_count, shard_from_hostname, location)?;
            let options = serve::Options {
                concurrency: concurrency as usize,
                on_demand_min_interval,
                auto_reload_interval: auto_reload_interval.filter(|d| !d.is_zero()),
                storage_path: (!storage_path.as_os_str().is_empty()).then_some(storage_path),
                storage_write_interval,
                failure_traces_size,
            };
            serve::serve(&config_file, &web, options, instance).await?;
            Ok(0)
        }
        Command::Healthcheck { address } => Ok(healthcheck::command(&address)),
        Command::CheckConfig { config_file } => check_config::command(&config_file),
        Command::Probe { names, all, config_file, output } => probe::command(&names, all, &config_file, output).await,
        Command::Simulate { listen, accounts, config_file } => {
            simulate::command(listen, accounts.as_deref(), &config_file).await
        }
    }
}

/// The probes file and its `simulator:` block, as `run`, `probe` and `check-config` take them:
/// the simulator's HTTPS certificate made first (the probes' targets may trust it through
/// `ca_file`), then the probes loaded; every problem of both reported together.
fn load_config(path: &Path) -> Result<(Config, Option<SimulatorSpec>), Failure> {
    if path == Path::new("probes.yaml") && !path.exists() {
        // The default, and no such file here: most often someone who installed the package
        // and runs a command from their home directory.
        return Err(Failure::Config(anyhow::anyhow!(
            "invalid configuration:\nprobes.yaml: no such file in {}; name the probes file with --config.file \
             (the Debian package's is /etc/authprobe/probes.yaml)",
            std::env::current_dir().map_or_else(|_| "this directory".to_owned(), |d| d.display().to_string())
        )));
    }
    let simulator = SimulatorBlock::load(path).and_then(|block| block.map(SimulatorBlock::prepare).transpose());
    let loaded = FileErrors::both(Config::load(path), simulator);
    let (config, simulator) = loaded.map_err(|e| Failure::Config(anyhow::anyhow!("invalid configuration:\n{e}")))?;
    let mut secrets = config.secrets();
    if let Some(sim) = &simulator {
        secrets.extend(sim.secrets());
    }
    authprobe::panics::remember(secrets);
    Ok((config, simulator))
}

/// A storage path; "" (memory only) included, which clap's path parser refuses.
fn parse_storage_path(text: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(text))
}

/// A write interval: a duration of at least 100 ms, so that the writer never spins.
fn parse_write_interval(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_millis(100) {
        return Err(format!("{text:?} is shorter than 100ms"));
    }
    Ok(d)
}

fn parse_docs_url(text: &str) -> Result<String, String> {
    if (text.starts_with("https://") || text.starts_with("http://")) && !text.chars().any(char::is_whitespace) {
        Ok(text.to_owned())
    } else {
        Err("expected an http:// or https:// URL".to_owned())
    }
}

/// A size in bytes: a whole number with B, KiB, MiB or GiB (or no unit, for bytes).
fn parse_size(text: &str) -> Result<usize, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let shift = match unit {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return Err(format!("{text:?}: expected a whole number of B, KiB, MiB or GiB (such as 32MiB)")),
    };
    let n: usize = number.parse().map_err(|_| format!("{text:?}: expected a whole number before the unit"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("{text:?} is too large"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    authprobe::duration::parse(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_with_their_units_and_refuse_the_rest() {
        assert_eq!(super::parse_size("32MiB"), Ok(32 << 20));
        assert_eq!(super::parse_size("512KiB"), Ok(512 << 10));
        assert_eq!((super::parse_size("0"), super::parse_size("100B")), (Ok(0), Ok(100)));
        assert_eq!(super::parse_size("2GiB"), Ok(2 << 30));
        for bad in ["", "MiB", "32MB", "-1", "1.5MiB", "99999999999999999999GiB"] {
            assert!(super::parse_size(bad).is_err(), "{bad}");
        }
    }
}
