//! A running service: the schedule of its probes and the prober that performs their runs,
//! scheduled or on demand; reloading its configuration (validate the whole file first, then move
//! results, schedule and state store to it by probe name; reloads are serialised) and running a
//! probe on demand (at most once per probe per minimum interval).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Config, Probe};
use crate::instance::Instance;
use crate::protocol::{Outcome, Prober, Trace};
use crate::results::ProbeResults;
use crate::results::Results;
use crate::scheduler::{self, RunNowError, Scheduler, SchedulerError};
use crate::store::writer::Writer;
use crate::yaml::FileErrors;

/// Why a reload changed nothing (or, for the scheduler, not everything).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is invalid: every problem, located, without secret values.
    #[error("invalid configuration, nothing changed:\n{0}")]
    Config(FileErrors),
    /// The scheduler refused the new probes.
    #[error("cannot schedule the new configuration: {0}")]
    Schedule(#[from] SchedulerError),
}

/// Why a run on demand did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnDemandError {
    /// No probe of that name.
    #[error("no probe named {0:?}")]
    Unknown(String),
    /// Too soon after the last on-demand run of this probe, or a run of it is going: retry after.
    #[error("probe {probe:?} ran {why}; retry in {retry_after:?}")]
    TooSoon {
        /// The probe.
        probe: String,
        /// In words.
        why: &'static str,
        /// When a retry can succeed.
        retry_after: Duration,
    },
}

/// A finished run on demand.
#[derive(Debug)]
pub struct OnDemandRun {
    /// How the login ended.
    pub outcome: Outcome,
    /// What it sent and received, if a trace was asked for and the run did not panic.
    pub trace: Option<Trace>,
    /// The probe's results, now holding this run.
    pub probe: Arc<ProbeResults>,
}

/// A running service: owns the schedule and the prober its runs go through, reloads its
/// configuration and runs probes on demand.
pub struct Service {
    file: PathBuf,
    instance: Instance,
    results: Arc<Results>,
    scheduler: tokio::sync::Mutex<Scheduler>,
    on_demand_min_interval: Duration,
    on_demand_last: Mutex<HashMap<String, Instant>>,
    /// The state store's writer, told the probes of every reload (it keeps their credential
    /// digests and drops the state of removed ones).
    store: Option<Arc<Writer>>,
}

/// How a [`Service`] runs its probes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Logins in flight at most.
    pub concurrency: usize,
    /// Least time between two on-demand runs of one probe.
    pub on_demand_min_interval: Duration,
}

impl Service {
    /// Starts the service of `file`: schedules `probes` (those `instance` selects, as on every
    /// reload), whose runs `prober` performs and records into `results`, the state store
    /// `store` (if any) told of every reload.
    pub async fn start(
        file: PathBuf,
        instance: Instance,
        probes: Vec<Arc<Probe>>,
        results: Arc<Results>,
        prober: Prober,
        store: Option<Arc<Writer>>,
        options: Options,
    ) -> Result<Service, SchedulerError> {
        let schedule = scheduler::Options { concurrency: options.concurrency, ..Default::default() };
        let scheduler = Scheduler::start(probes, results.clone(), prober, schedule).await?;
        Ok(Service {
            file,
            instance,
            results,
            scheduler: tokio::sync::Mutex::new(scheduler),
            on_demand_min_interval: options.on_demand_min_interval,
            on_demand_last: Mutex::new(HashMap::new()),
            store,
        })
    }

    /// Runs the probe called `name` now, protecting its account: at most one on-demand run per
    /// minimum interval, and never beside a run already going. With `traced`, the run records
    /// a trace.
    pub async fn run_now(&self, name: &str, traced: bool) -> Result<OnDemandRun, OnDemandError> {
        let unknown = || OnDemandError::Unknown(crate::config::bounded_name(name));
        let results = self.results.probe(name).ok_or_else(unknown)?;
        {
            let mut last = self.on_demand_last.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if let Some(previous) = last.get(name) {
                let since = now - *previous;
                if since < self.on_demand_min_interval {
                    return Err(OnDemandError::TooSoon {
                        probe: name.to_owned(),
                        why: "on demand too recently",
                        retry_after: self.on_demand_min_interval - since,
                    });
                }
            }
            last.retain(|_, t| now - *t < self.on_demand_min_interval);
            last.insert(name.to_owned(), now);
        }
        let run = self.scheduler.lock().await.run_now(name, traced).map_err(|_| unknown())?;
        match run.await {
            Ok(run) => Ok(OnDemandRun { outcome: run.outcome, trace: run.trace, probe: results }),
            Err(RunNowError::Busy(within)) => {
                Err(OnDemandError::TooSoon { probe: name.to_owned(), why: "is running now", retry_after: within })
            }
            Err(RunNowError::Unknown) => Err(unknown()),
        }
    }

    /// Re-reads the file; returns the number of probes now scheduled. An invalid file changes
    /// nothing and marks the reload failed. The `simulator:` block is validated but not
    /// restarted.
    pub async fn reload(&self) -> Result<usize, ReloadError> {
        let mut scheduler = self.scheduler.lock().await;
        let outcome = async {
            let simulator = crate::simulator::SimulatorBlock::load(&self.file);
            let (config, _) = FileErrors::both(Config::load(&self.file), simulator).map_err(ReloadError::Config)?;
            crate::panics::remember(config.secrets());
            config.warn_insecure();
            let probes: Vec<Arc<Probe>> = self.instance.select(config.probes).into_iter().map(Arc::new).collect();
            let count = probes.len();
            self.results.apply(probes.iter().map(|p| p.as_ref()));
            scheduler.reload(probes.clone()).await?;
            if let Some(store) = &self.store {
                store.set_probes(&probes);
            }
            Ok(count)
        }
        .await;
        crate::memory::release_freed();
        match &outcome {
            Ok(count) => {
                self.results.record_reload(true);
                tracing::info!(probes = count, config = %self.file.display(), "configuration reloaded");
            }
            Err(e) => {
                self.results.record_reload(false);
                tracing::error!(config = %self.file.display(), error = %e, "reload failed; the previous configuration stays");
            }
        }
        outcome
    }

    /// Stops the schedule after any reload in progress, waiting for runs in flight up to the
    /// longest probe timeout plus `extra` (see [`Scheduler::stop`]). Later reloads change nothing
    /// that runs.
    pub async fn stop(&self, extra: Duration) {
        let mut scheduler = self.scheduler.lock().await;
        let grace = scheduler.longest_timeout() + extra;
        scheduler.stop(grace).await;
    }
}
