//! `authprobe run`: probe on schedule and serve metrics until SIGINT or SIGTERM; SIGHUP reloads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use authprobe::config::Probe;
use authprobe::instance::{Instance, InstanceError, Shard};
use authprobe::metrics::Metrics;
use authprobe::protocol::Prober;
use authprobe::results::Results;
use authprobe::service::{self, Service};
use authprobe::web;

use super::simulate::start_embedded_simulator;
use super::{load_config, Failure, WebArgs};

/// This instance's shard and location, from the flags.
pub fn instance(
    shard_index: Option<u32>,
    shard_count: Option<u32>,
    shard_from_hostname: bool,
    location: Option<String>,
) -> Result<Instance, Failure> {
    let usage = |e: InstanceError| Failure::Config(anyhow::anyhow!("{e}"));
    let shard = match (shard_count, shard_index, shard_from_hostname) {
        (None, ..) => None,
        (Some(count), _, true) => Some(Shard::from_hostname(&hostname(), count).map_err(usage)?),
        (Some(count), Some(index), false) => Some(Shard::new(index, count).map_err(usage)?),
        (Some(_), None, false) => {
            return Err(Failure::Config(anyhow::anyhow!("--shard.count needs --shard.index or --shard.from-hostname")))
        }
    };
    Instance::new(shard, location).map_err(usage)
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

/// How `run` schedules, reloads and keeps its state, from its flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// Logins in flight at most.
    pub concurrency: usize,
    /// Least time between two on-demand runs of one probe.
    pub on_demand_min_interval: Duration,
    /// How often to check the configuration files for changes; `None`: never.
    pub auto_reload_interval: Option<Duration>,
    /// Where state survives a restart; `None`: in memory only.
    pub storage_path: Option<PathBuf>,
    /// How often changed state is written.
    pub storage_write_interval: Duration,
    /// The bytes failures' traces may take together; 0 traces nothing.
    pub failure_traces_size: usize,
}

/// `authprobe run`: the embedded simulator if configured, the metrics server, the schedule; until
/// SIGINT or SIGTERM.
pub async fn serve(
    config_file: &Path,
    web_args: &WebArgs,
    options: Options,
    instance: Instance,
) -> Result<(), Failure> {
    let Options {
        concurrency,
        on_demand_min_interval,
        auto_reload_interval,
        storage_path,
        storage_write_interval,
        failure_traces_size,
    } = options;
    let (config, simulator) = load_config(config_file)?;
    config.warn_insecure();
    authprobe::memory::release_freed();
    let simulator = start_embedded_simulator(simulator.as_ref()).await?;
    let web_config = match &web_args.web_config_file {
        None => web::config::WebConfigSource::none(),
        Some(path) => web::config::WebConfigSource::file(path)
            .map_err(|e| Failure::Config(anyhow::anyhow!("invalid web configuration:\n{e}")))?,
    };
    let listener = web::bind(&web_args.listen_address).await?;
    let address = listener.local_addr().context("reading the bound address")?;

    let configured = config.probes.len();
    let config_files = config.files.len();
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
    results.traces().set_limit(failure_traces_size);
    // Restored before anything reads the results or schedules a run: the lockout guard resumes.
    let writer = match &storage_path {
        Some(dir) => {
            let (dir, results, probes) = (dir.clone(), results.clone(), probes.clone());
            tokio::task::spawn_blocking(move || open_storage(&dir, results, &probes, storage_write_interval))
                .await
                .context("opening the state store")?
        }
        None => None,
    };
    let writer = writer.map(Arc::new);
    let metrics = Metrics::new(results.clone())?;
    let metrics = Arc::new(if web_args.openmetrics_created { metrics } else { metrics.without_created() });
    let mut signals = Signals::register();
    let ready = Arc::new(AtomicBool::new(false));
    let count = probes.len();
    let options = service::Options { concurrency, on_demand_min_interval };
    let prober = Prober::new()?;
    let service = Arc::new(
        Service::start(
            config_file.to_owned(),
            instance.clone(),
            probes,
            results.clone(),
            prober,
            writer.clone(),
            options,
        )
        .await?,
    );
    let state = web::AppState {
        metrics,
        results: results.clone(),
        ready: ready.clone(),
        service: Some(service.clone()),
        lifecycle: web_args.enable_lifecycle,
        on_demand: web_args.enable_on_demand,
        instance,
        docs_url: web_args.docs_url.clone(),
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
    ready.store(true, Ordering::Release);
    tracing::info!(
        probes = count,
        config = %config_file.display(),
        files = config_files,
        concurrency,
        "probes scheduled"
    );

    let watcher = auto_reload_interval.map(|every| {
        let (service, main) = (service.clone(), config_file.to_owned());
        tokio::spawn(async move {
            let mut watched = tokio::task::spawn_blocking(move || authprobe::config::watch::Watched::new(&main))
                .await
                .expect("the first look at the files does not panic");
            loop {
                tokio::time::sleep(every).await;
                let check = tokio::task::spawn_blocking(move || {
                    let changed = watched.changed();
                    (watched, changed)
                });
                let changed;
                (watched, changed) = check.await.expect("a look at the files does not panic");
                if changed {
                    tracing::info!("the configuration files changed: reloading");
                    // The outcome is logged by the service; a broken edit is refused as on SIGHUP.
                    let _ = service.reload().await;
                }
            }
        })
    });
    let signal = loop {
        match signals.next().await {
            Signal::Reload => {
                // The outcome is logged by the service.
                let _ = service.reload().await;
            }
            Signal::Stop(name) => break name,
        }
    };
    if let Some(w) = watcher {
        w.abort();
    }
    tracing::info!(signal, "shutting down: no new runs; waiting for runs in flight");
    // /-/ready turns 503 at once; /metrics keeps serving until the last run is recorded.
    ready.store(false, Ordering::Release);
    // In-flight runs may finish: each ends by its own deadline.
    service.stop(RUN_GRACE).await;
    if let Some(writer) = writer {
        // The service's hook holds the other handle; a last write does not need it gone.
        tokio::task::spawn_blocking(move || writer.stop()).await.context("writing the state store at shutdown")?;
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

/// Opens the state store in `dir`, restores what it holds into `results`, and starts its
/// writer. Any failure is logged and the service goes on with its state in memory only.
fn open_storage(
    dir: &Path,
    results: Arc<Results>,
    probes: &[Arc<Probe>],
    interval: Duration,
) -> Option<authprobe::store::writer::Writer> {
    use authprobe::store::{writer::Writer, Store};
    let started = std::time::Instant::now();
    let unusable = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "state store unusable: state is kept in memory only and will not survive a restart");
        results.update_storage(|s| s.up = false);
    };
    let (mut store, moved) = match Store::open(dir) {
        Ok(opened) => opened,
        Err(e) => {
            unusable(&e);
            return None;
        }
    };
    if let Some(moved) = moved {
        tracing::warn!(
            path = %store.path().display(),
            moved_to = %moved.to.display(),
            why = %moved.why,
            "state store file unusable: moved aside; starting with no saved state"
        );
    }
    // Worked out once (a SHA-256 a probe): the restore compares them, the writer keeps them.
    let credentials = store.credentials(probes);
    let restored = match store.restore(&results, &credentials) {
        Ok(r) => r,
        Err(e) => {
            unusable(&e);
            return None;
        }
    };
    tracing::info!(
        path = %store.path().display(),
        restored = restored.probes,
        dropped = restored.dropped,
        unreadable = restored.unreadable,
        guards_reset = restored.credentials_changed,
        took_ms = started.elapsed().as_millis() as u64,
        "state restored"
    );
    results.update_storage(|s| {
        s.up = true;
        s.restored_probes = restored.probes as u64;
    });
    match Writer::start(store, results.clone(), credentials, interval) {
        Ok(w) => Some(w),
        Err(e) => {
            unusable(&e);
            None
        }
    }
}

/// Beyond the longest probe timeout, how long shutdown waits for runs in flight to be recorded.
const RUN_GRACE: Duration = Duration::from_secs(1);
/// How long shutdown waits for open scrapes once every run is recorded.
const SCRAPE_GRACE: Duration = Duration::from_secs(5);

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
