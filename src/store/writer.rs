//! The store's writer: a thread of its own that, every write interval and once at shutdown,
//! writes the probes whose state changed in one transaction. Runs only mark their probe dirty;
//! no login ever waits on the disk. A batch that fails (disk full, I/O error) is counted, logged
//! and tried again with the next one: nothing is lost while the process lives.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::Store;
use crate::config::Probe;
use crate::results::{ProbeSet, Results};

/// While writes keep failing, how often the failure is logged again.
const WARN_EVERY: Duration = Duration::from_secs(60);

enum Command {
    /// The probes' credential digests after a reload.
    Credentials(HashMap<String, i64>),
    /// Write what is left and stop.
    Stop,
}

/// The running writer. [`Writer::stop`] writes what is left; dropping it without stopping
/// stops the thread after a last write too, without waiting for it.
pub struct Writer {
    commands: mpsc::Sender<Command>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    salt: Vec<u8>,
}

impl Writer {
    /// Starts writing `results` into `store` every `interval`; `credentials` are the configured
    /// probes' digests ([`Store::credentials`]), kept beside their state.
    pub fn start(
        store: Store,
        results: Arc<Results>,
        credentials: HashMap<String, i64>,
        interval: Duration,
    ) -> std::io::Result<Writer> {
        let (commands, inbox) = mpsc::channel();
        let salt = store.salt.clone();
        let known = store.names().unwrap_or_default();
        let mut state =
            Batches { store, results, credentials, known, last_set: None, failing_since: None, warned: None };
        let thread = std::thread::Builder::new().name("authprobe-store".to_owned()).spawn(move || {
            let mut next = Instant::now() + interval;
            loop {
                match inbox.recv_timeout(next.saturating_duration_since(Instant::now())) {
                    Ok(Command::Credentials(c)) => state.credentials = c,
                    Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                        state.write();
                        return;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        state.write();
                        next = Instant::now() + interval;
                    }
                }
            }
        })?;
        Ok(Writer { commands, thread: std::sync::Mutex::new(Some(thread)), salt })
    }

    /// After a reload: the probes now configured, whose credential digests are kept.
    pub fn set_probes(&self, probes: &[Arc<Probe>]) {
        let _ = self.commands.send(Command::Credentials(super::digests(&self.salt, probes)));
    }

    /// Writes what changed since the last batch and stops. Blocks until it is written; a
    /// second call returns at once.
    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
        let thread = self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the state store's writer panicked; the last changes were not saved");
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
    }
}

struct Batches {
    store: Store,
    results: Arc<Results>,
    credentials: HashMap<String, i64>,
    /// Names with a row in the file.
    known: HashSet<String>,
    /// The probe set of the last batch: rows can only have become stale when it changed.
    last_set: Option<Arc<ProbeSet>>,
    failing_since: Option<Instant>,
    warned: Option<Instant>,
}

impl Batches {
    /// Writes every dirty probe and deletes the rows of probes no longer configured.
    fn write(&mut self) {
        let set = self.results.probes();
        let reloaded = !self.last_set.as_ref().is_some_and(|last| Arc::ptr_eq(last, &set));
        let removed: Vec<String> =
            if reloaded { self.known.iter().filter(|n| set.get(n).is_none()).cloned().collect() } else { Vec::new() };
        // Probes whose mark was taken, to mark again if the batch fails.
        let mut taken = Vec::new();
        let started = Instant::now();
        let credentials = &self.credentials;
        // Encoded one at a time as SQLite takes them: a batch is never held whole.
        let states = set.list.iter().enumerate().filter(|(_, p)| p.take_dirty()).filter_map(|(i, p)| {
            taken.push(i);
            match p.saved_state().encode() {
                Ok(bytes) => Some((p.name.to_string(), credentials.get(&*p.name).copied().unwrap_or(0), bytes)),
                Err(e) => {
                    tracing::error!(probe = %p.name, error = %e, "cannot encode the probe's state");
                    None
                }
            }
        });
        let outcome = self.store.write(states, &removed);
        match outcome {
            Ok(0) if removed.is_empty() => {}
            Ok(written) => {
                for name in &removed {
                    self.known.remove(name);
                }
                self.known.extend(taken.iter().map(|i| set.list[*i].name.to_string()));
                let took = started.elapsed();
                self.results.update_storage(|s| {
                    s.writes += 1;
                    s.last_write_success = Some(SystemTime::now());
                    s.last_write_duration = took;
                    s.last_write_probes = written as u64;
                });
                if let Some(since) = self.failing_since.take() {
                    tracing::info!(
                        path = %self.store.path().display(),
                        failing_seconds = since.elapsed().as_secs(),
                        "state store written again"
                    );
                }
                self.warned = None;
            }
            Err(e) => {
                for i in &taken {
                    set.list[*i].mark_dirty();
                }
                self.results.update_storage(|s| s.write_failures += 1);
                self.failing_since.get_or_insert(started);
                if self.warned.is_none_or(|w| w.elapsed() >= WARN_EVERY) {
                    self.warned = Some(started);
                    tracing::error!(
                        path = %self.store.path().display(),
                        error = %e,
                        probes = taken.len(),
                        "cannot write the state store; probing goes on and the state is kept in memory, to be written when the disk allows"
                    );
                }
                // Deletions are tried again with the next batch.
                return;
            }
        }
        self.last_set = Some(set);
    }
}
