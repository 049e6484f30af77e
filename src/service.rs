//! Controlling a running service: reloading its configuration (validate the whole file first,
//! then move results and schedule to it by probe name; reloads are serialised) and running a
//! probe on demand (at most once per probe per minimum interval).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Config, Probe};
use crate::instance::Instance;
use crate::protocol::{Outcome, Trace};
use crate::results::ProbeResults;
use crate::results::Results;
use crate::scheduler::{RunNowError, Scheduler, SchedulerError};
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

/// Owns the schedule of a running service: reloads its configuration and runs probes on demand.
pub struct Service {
    file: PathBuf,
    instance: Instance,
    results: Arc<Results>,
    scheduler: tokio::sync::Mutex<Scheduler>,
    on_demand_min_interval: Duration,
    on_demand_last: Mutex<HashMap<String, Instant>>,
    on_applied: Option<AppliedFn>,
}

/// Told the probes a reload scheduled (the state store keeps their credential digests).
pub type AppliedFn = Box<dyn Fn(&[Arc<Probe>]) + Send + Sync>;

impl Service {
    /// The service of `file`, whose probes (those `instance` selects, as on every reload)
    /// `scheduler` runs into `results`; on-demand runs of a probe are at least
    /// `on_demand_min_interval` apart.
    pub fn new(
        file: PathBuf,
        instance: Instance,
        results: Arc<Results>,
        scheduler: Scheduler,
        on_demand_min_interval: Duration,
    ) -> Self {
        Service {
            file,
            instance,
            results,
            scheduler: tokio::sync::Mutex::new(scheduler),
            on_demand_min_interval,
            on_demand_last: Mutex::new(HashMap::new()),
            on_applied: None,
        }
    }

    /// Calls `f` with the probes of every successful reload, once they are scheduled.
    pub fn on_applied(mut self, f: AppliedFn) -> Self {
        self.on_applied = Some(f);
        self
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
    /// nothing and marks the reload failed. The `simulator:` block is not restarted.
    pub async fn reload(&self) -> Result<usize, ReloadError> {
        let mut scheduler = self.scheduler.lock().await;
        let outcome = async {
            let config = Config::load(&self.file).map_err(ReloadError::Config)?;
            crate::panics::remember(config.secrets());
            config.warn_insecure();
            let probes: Vec<Arc<Probe>> = self.instance.select(config.probes).into_iter().map(Arc::new).collect();
            let count = probes.len();
            self.results.apply(probes.iter().map(|p| p.as_ref()));
            scheduler.reload(probes.clone()).await?;
            if let Some(f) = &self.on_applied {
                f(&probes);
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
