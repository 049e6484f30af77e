//! Reloading the configuration of a running service: validate the whole file first, then move
//! results and schedule to it by probe name. Reloads are serialised.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Probe};
use crate::results::Results;
use crate::scheduler::{Scheduler, SchedulerError};
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

/// Owns the schedule of a running service and re-reads its configuration on demand.
pub struct Reloader {
    file: PathBuf,
    results: Arc<Results>,
    scheduler: tokio::sync::Mutex<Scheduler>,
}

impl Reloader {
    /// A reloader for `file`, whose probes `scheduler` runs into `results`.
    pub fn new(file: PathBuf, results: Arc<Results>, scheduler: Scheduler) -> Self {
        Reloader { file, results, scheduler: tokio::sync::Mutex::new(scheduler) }
    }

    /// Re-reads the file; returns the number of probes now scheduled. An invalid file changes
    /// nothing and marks the reload failed. The `simulator:` block is not restarted.
    pub async fn reload(&self) -> Result<usize, ReloadError> {
        let mut scheduler = self.scheduler.lock().await;
        let outcome = async {
            let config = Config::load(&self.file).map_err(ReloadError::Config)?;
            let probes: Vec<Arc<Probe>> = config.probes.into_iter().map(Arc::new).collect();
            let count = probes.len();
            self.results.apply(probes.iter().map(|p| p.as_ref()));
            scheduler.reload(probes).await?;
            Ok(count)
        }
        .await;
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
