//! The `authprobe` command line: argument parsing, logging, exit codes. Everything else lives
//! in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use authprobe::config::{Config, Probe};
use authprobe::instance::{Instance, InstanceError, Shard};
use authprobe::logging;
use authprobe::metrics::Metrics;
use authprobe::protocol::Prober;
use authprobe::report::ProbeReport;
use authprobe::results::Results;
use authprobe::scheduler::{self, RunFn, Scheduler};
use authprobe::service::{OnDemandError, Service};
use authprobe::simulator::{Settings, Simulator};
use authprobe::web;
use clap::{Parser, Subcommand, ValueEnum};

/// Exit status: the probe ran and did not succeed.
const EXIT_FAILED: u8 = 1;
/// Exit status: bad usage or bad configuration.
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(name = "authprobe", version, about = "Synthetic monitor for the ETNA Trader /token login path")]
struct Cli {
    /// Only log messages at or above this level.
    #[arg(long = "log.level", global = true, default_value = "info", value_parser = ["trace", "debug", "info", "warn", "error"])]
    log_level: String,
    /// Log line format.
    #[arg(long = "log.format", global = true, value_enum, default_value_t = LogFormat::Logfmt)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
    /// Every request and answer (secrets and tokens redacted), then the text summary.
    Trace,
}

/// How `run` serves its endpoints.
#[derive(clap::Args)]
struct WebArgs {
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
    /// Time a client has to send a request's headers or complete a TLS handshake.
    #[arg(long = "web.read-header-timeout", default_value = "10s", value_parser = parse_duration)]
    read_header_timeout: Duration,
}

#[derive(Subcommand)]
enum Command {
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
    },
    /// Run probes once and print their outcome.
    Probe {
        /// Probes to run (by name).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
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
    /// Serve the simulated /token API.
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
enum Failure {
    Config(anyhow::Error),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Other(e.into())
    }
}

fn main() -> ExitCode {
    authprobe::memory::limit_arenas();
    let mut cli = Cli::parse();
    if cli.command.is_none() {
        // No subcommand means `run` with its defaults; global flags given still apply.
        cli = Cli::parse_from(std::env::args_os().chain(["run".into()]));
    }
    let command = cli.command.expect("a command was chosen above");
    let format = match cli.log_format {
        LogFormat::Logfmt => logging::Format::Logfmt,
        LogFormat::Json => logging::Format::Json,
    };
    logging::init(&cli.log_level, format);
    authprobe::panics::install();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command)) {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Config(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `GET /-/healthy` on `address` (`HOST:PORT`, or `:PORT` for this host) in plain HTTP/1.0,
/// within 3 s.
fn healthcheck(address: &str) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let address = if address.starts_with(':') { format!("127.0.0.1{address}") } else { address.to_owned() };
    let timeout = Duration::from_secs(3);
    let target = address.to_socket_addrs()?.next().context("the address resolves to nothing")?;
    let mut stream = std::net::TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /-/healthy HTTP/1.0\r\nHost: authprobe\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let status = String::from_utf8_lossy(&head[..n]);
    let line = status.lines().next().unwrap_or_default();
    // 401: the server answers, behind the basic authentication of --web.config.file.
    anyhow::ensure!(matches!(line.split_whitespace().nth(1), Some("200" | "401")), "answered {line:?}");
    Ok(())
}

/// This machine's host name (a StatefulSet pod's name), or "" if it cannot be read.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn load_config(path: &Path) -> Result<Config, Failure> {
    let config = Config::load(path).map_err(|e| Failure::Config(anyhow::anyhow!("invalid configuration:\n{e}")))?;
    authprobe::panics::remember(config.secrets());
    Ok(config)
}

async fn run(command: Command) -> Result<u8, Failure> {
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
        } => {
            let usage = |e: InstanceError| Failure::Config(anyhow::anyhow!("{e}"));
            let shard = match (shard_count, shard_index, shard_from_hostname) {
                (None, ..) => None,
                (Some(count), _, true) => Some(Shard::from_hostname(&hostname(), count).map_err(usage)?),
                (Some(count), Some(index), false) => Some(Shard::new(index, count).map_err(usage)?),
                (Some(_), None, false) => {
                    return Err(Failure::Config(anyhow::anyhow!(
                        "--shard.count needs --shard.index or --shard.from-hostname"
                    )))
                }
            };
            let instance = Instance::new(shard, location).map_err(usage)?;
            serve(&config_file, &web, concurrency as usize, on_demand_min_interval, instance).await?;
            Ok(0)
        }
        Command::Healthcheck { address } => match healthcheck(&address) {
            Ok(()) => Ok(0),
            Err(e) => {
                eprintln!("authprobe at {address} is not healthy: {e}");
                Ok(EXIT_FAILED)
            }
        },
        Command::CheckConfig { config_file } => {
            let config = load_config(&config_file)?;
            println!(
                "{}: OK, {} target(s), {} probe(s)",
                config_file.display(),
                config.targets.len(),
                config.probes.len()
            );
            if let Some(sim) = &config.simulator {
                let https = sim.tls.as_ref().map(|t| format!(" (and HTTPS on {})", t.listen)).unwrap_or_default();
                println!("simulator: listen {}{https} with {} account(s)", sim.listen, sim.settings.accounts.len());
            }
            for p in &config.probes {
                let labels: Vec<String> = p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!(
                    "probe {} target={} {} expect={} timeout={} max_steps={}{}",
                    p.name,
                    p.target,
                    p.schedule,
                    p.login.expect,
                    authprobe::duration::format(p.login.timeout),
                    p.login.max_steps,
                    if labels.is_empty() { String::new() } else { format!(" labels={{{}}}", labels.join(",")) }
                );
            }
            Ok(0)
        }
        Command::Probe { names, all, config_file, output } => {
            let config = load_config(&config_file)?;
            let selected: Vec<_> = if all {
                config.probes.iter().collect()
            } else {
                let mut v = Vec::new();
                for n in &names {
                    let known: Vec<&str> = config.probes.iter().map(|p| p.name.as_str()).collect();
                    let p = config.probe(n).ok_or_else(|| {
                        Failure::Config(anyhow::anyhow!(
                            "no probe named {n:?} in {} (known: {})",
                            config_file.display(),
                            known.join(", ")
                        ))
                    })?;
                    v.push(p);
                }
                v
            };
            let _simulator = start_embedded_simulator(&config).await?;
            let prober = Prober::new()?;
            prober.warm_up().await;
            let runs = futures_util::future::join_all(selected.iter().map(|p| async {
                if output == Output::Trace {
                    let (outcome, trace) = prober.login_traced(&p.login).await;
                    (outcome, Some(trace))
                } else {
                    (prober.login(&p.login).await, None)
                }
            }))
            .await;
            let mut all_ok = true;
            for (p, (outcome, trace)) in selected.iter().zip(&runs) {
                all_ok &= outcome.is_success();
                authprobe::report::log_run(&p.name, &p.target, outcome);
                let report = ProbeReport { probe: &p.name, target: &p.target, outcome };
                match output {
                    Output::Json => println!("{}", report.to_json()),
                    Output::Text => print!("{}", report.to_text()),
                    Output::Trace => print!("{}", report.to_trace(trace.as_ref())),
                }
            }
            Ok(if all_ok { 0 } else { EXIT_FAILED })
        }
        Command::Simulate { listen, accounts, config_file } => {
            let (settings, default_listen, tls) = match accounts {
                Some(path) => {
                    let settings = Settings::load(&path)
                        .map_err(|e| Failure::Config(anyhow::anyhow!("invalid accounts file:\n{e}")))?;
                    (settings, authprobe::simulator::DEFAULT_LISTEN.parse().expect("valid default"), None)
                }
                None => {
                    let config = load_config(&config_file)?;
                    let sim = config.simulator.ok_or_else(|| {
                        Failure::Config(anyhow::anyhow!(
                            "{} has no simulator: block; pass --accounts FILE",
                            config_file.display()
                        ))
                    })?;
                    (sim.settings, sim.listen, sim.tls)
                }
            };
            let addr = listen.unwrap_or(default_listen);
            let sim = Simulator::start(settings, addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            let mut sims = vec![sim];
            if let Some(tls) = tls {
                sims.push(also_https(&sims[0], &tls).await?);
            }
            for sim in &sims {
                tracing::info!(address = %sim.addr(), base_url = %sim.base_url(), "simulator listening");
                println!("simulator listening on {} (base_url {})", sim.addr(), sim.base_url());
            }
            tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
            for sim in sims {
                sim.shutdown().await;
            }
            Ok(0)
        }
    }
}

/// `authprobe run`: the embedded simulator if configured, the metrics server, the schedule; until
/// SIGINT or SIGTERM.
async fn serve(
    config_file: &Path,
    web_args: &WebArgs,
    concurrency: usize,
    on_demand_min_interval: Duration,
    instance: Instance,
) -> Result<(), Failure> {
    let config = load_config(config_file)?;
    config.warn_insecure();
    authprobe::memory::release_freed();
    let simulator = start_embedded_simulator(&config).await?;
    let web_config = match &web_args.web_config_file {
        None => web::config::WebConfigSource::none(),
        Some(path) => web::config::WebConfigSource::file(path)
            .map_err(|e| Failure::Config(anyhow::anyhow!("invalid web configuration:\n{e}")))?,
    };
    let listener = web::bind(&web_args.listen_address).await?;
    let address = listener.local_addr().context("reading the bound address")?;

    let configured = config.probes.len();
    let probes: Vec<Arc<Probe>> = instance.select(config.probes).into_iter().map(Arc::new).collect();
    if let Some(shard) = instance.shard {
        tracing::info!(
            shard = shard.index(),
            shards = shard.count(),
            probes = probes.len(),
            configured,
            "running one shard of the probes"
        );
    }
    let results = Arc::new(Results::new(probes.iter().map(|p| p.as_ref())));
    let metrics = Arc::new(Metrics::new(results.clone())?);
    let mut signals = Signals::register();
    let ready = Arc::new(AtomicBool::new(false));
    let service: Arc<tokio::sync::OnceCell<Service>> = Arc::new(tokio::sync::OnceCell::new());
    let reload: web::ReloadFn = {
        let service = service.clone();
        Arc::new(move || {
            let service = service.clone();
            Box::pin(async move {
                match service.get() {
                    Some(r) => r.reload().await.map_err(|e| e.to_string()),
                    None => Err("not started yet".to_owned()),
                }
            })
        })
    };
    let on_demand: web::OnDemandFn = {
        let service = service.clone();
        Arc::new(move |name: String, traced: bool| {
            let service = service.clone();
            Box::pin(async move {
                match service.get() {
                    Some(s) => s.run_now(&name, traced).await,
                    None => Err(OnDemandError::Unknown(name)),
                }
            })
        })
    };
    let state = web::AppState {
        metrics,
        results: results.clone(),
        ready: ready.clone(),
        reload: web_args.enable_lifecycle.then(|| reload.clone()),
        on_demand: web_args.enable_on_demand.then_some(on_demand),
        instance: instance.clone(),
        scrapes: Arc::new(tokio::sync::Semaphore::new(web_args.max_concurrent_scrapes as usize)),
    };
    let (stop_web, web_stopped) = tokio::sync::oneshot::channel::<()>();
    let options = web::ServeOptions {
        max_connections: web_args.max_connections as usize,
        read_header_timeout: web_args.read_header_timeout,
        web_config: Arc::new(web_config),
    };
    let server = tokio::spawn(web::serve(listener, web::router(state), options, async move {
        let _ = web_stopped.await;
    }));
    tracing::info!(%address, "serving metrics");

    let prober = Prober::new()?;
    let run: RunFn = Arc::new(move |probe: Arc<Probe>, traced: bool| {
        let prober = prober.clone();
        Box::pin(async move {
            #[cfg(debug_assertions)]
            inject_panic(&probe);
            if traced {
                let (outcome, trace) = prober.login_traced(&probe.login).await;
                scheduler::Run { outcome, trace: Some(trace) }
            } else {
                scheduler::Run { outcome: prober.login(&probe.login).await, trace: None }
            }
        })
    });
    let count = probes.len();
    let scheduler =
        Scheduler::start(probes, results.clone(), run, scheduler::Options { concurrency, ..Default::default() })
            .await?;
    let _ = service.set(Service::new(config_file.to_owned(), instance, results, scheduler, on_demand_min_interval));
    ready.store(true, Ordering::Release);
    tracing::info!(probes = count, config = %config_file.display(), concurrency, "probes scheduled");

    let signal = loop {
        match signals.next().await {
            Signal::Reload => {
                // The outcome is logged by the service.
                let _ = reload().await;
            }
            Signal::Stop(name) => break name,
        }
    };
    tracing::info!(signal, "shutting down: no new runs; waiting for runs in flight");
    // /-/ready turns 503 at once; /metrics keeps serving until the last run is recorded.
    ready.store(false, Ordering::Release);
    if let Some(service) = service.get() {
        // In-flight runs may finish: each ends by its own deadline.
        service.stop(RUN_GRACE).await;
    }
    let _ = stop_web.send(());
    match tokio::time::timeout(SCRAPE_GRACE, server).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "metrics server ended with an error"),
        Err(_) => tracing::warn!("metrics server did not stop in time"),
        _ => {}
    }
    for sim in simulator {
        sim.shutdown().await;
    }
    Ok(())
}

/// In debug builds only (the tests'), `AUTHPROBE_TEST_PANIC=NAME` makes every run of probe NAME
/// panic with a message quoting its password, pin and app key: the seam through which the tests
/// prove that a bug's panic is counted, logged, and leaks no secret.
#[cfg(debug_assertions)]
fn inject_panic(probe: &Probe) {
    use secrecy::ExposeSecret as _;
    if std::env::var("AUTHPROBE_TEST_PANIC").is_ok_and(|n| n == probe.name) {
        let l = &probe.login;
        let pin = l.pin.as_ref().map(|p| p.expose_secret().to_owned()).unwrap_or_default();
        panic!(
            "injected panic: password {} pin {pin} app key {} body {{\"Token\":\"{}\"}}",
            l.password.expose_secret(),
            l.app_key.expose_secret(),
            l.password.expose_secret()
        );
    }
}

/// Beyond the longest probe timeout, how long shutdown waits for runs in flight to be recorded.
const RUN_GRACE: Duration = Duration::from_secs(1);
/// How long shutdown waits for open scrapes once every run is recorded.
const SCRAPE_GRACE: Duration = Duration::from_secs(5);

fn parse_duration(text: &str) -> Result<Duration, String> {
    authprobe::duration::parse(text).map_err(|e| e.to_string())
}

/// What a signal asks of `run`.
enum Signal {
    /// SIGHUP: re-read the configuration.
    Reload,
    /// SIGINT or SIGTERM (named): shut down.
    Stop(&'static str),
}

/// The signals `run` acts on, registered once so that none arriving between two waits is lost.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn register() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let register = |kind, name| {
                signal(kind).map_err(|e| tracing::warn!(signal = name, error = %e, "cannot listen for signal")).ok()
            };
            Signals {
                term: register(SignalKind::terminate(), "SIGTERM"),
                hup: register(SignalKind::hangup(), "SIGHUP"),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Waits for the next signal.
    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = tokio::signal::ctrl_c() => Signal::Stop("SIGINT"),
                _ = recv(&mut self.term) => Signal::Stop("SIGTERM"),
                _ = recv(&mut self.hup) => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop("Ctrl-C")
        }
    }
}

/// Starts the file's `simulator:` block, if any, on its address and, with `tls:`, on its HTTPS
/// address too (one world on both). If its address is taken, another simulator (e.g.
/// `authprobe simulate` or a running `authprobe run`) is assumed to serve it.
async fn start_embedded_simulator(config: &Config) -> Result<Vec<Simulator>, Failure> {
    let Some(spec) = &config.simulator else { return Ok(Vec::new()) };
    let sim = match Simulator::start(spec.settings.clone(), spec.listen).await {
        Ok(sim) => sim,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(address = %spec.listen, "simulator address in use; probing whatever serves it");
            return Ok(Vec::new());
        }
        Err(e) => return Err(Failure::Config(anyhow::anyhow!("simulator.listen {}: {e}", spec.listen))),
    };
    tracing::debug!(address = %sim.addr(), "embedded simulator started");
    let mut started = vec![sim];
    if let Some(tls) = &spec.tls {
        started.push(also_https(&started[0], tls).await.map_err(Failure::Config)?);
    }
    Ok(started)
}

/// `sim`'s world served over HTTPS as `tls` says.
async fn also_https(sim: &Simulator, tls: &authprobe::simulator::SimulatorTls) -> anyhow::Result<Simulator> {
    let listener = tokio::net::TcpListener::bind(tls.listen)
        .await
        .with_context(|| format!("simulator.tls.listen {}", tls.listen))?;
    Ok(sim.serve_tls_too(listener, tls.config.clone()))
}
