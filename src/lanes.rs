//! The threads logins run on: each a single-threaded tokio runtime of its own, so that a login's
//! timers, its socket's events and the code awaiting them stay on one thread. On the shared
//! multi-threaded runtime a login's wake-ups hop between workers (about 0.1 ms per login on the
//! machine of docs/benchmarks.md), and a worker busy with something else (rendering a large
//! `/metrics`) can leave an answer unread: both would be counted as the server's time.
//!
//! The scheduler's timer wheel runs on a lane too, and starts each whole run (waiting for its
//! slot, the login, recording the outcome) on its own thread; a login asked for on a lane runs
//! right there. So a scheduled login wakes one thread when it is due and that thread when its
//! socket has news, as curl's loop does: each hop between threads would be one more wake-up
//! and context switch.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A fixed set of login threads; logins are spread over them in turn. Dropping the set stops
/// the threads (and abandons any login still on them).
pub struct Lanes {
    lanes: Vec<Lane>,
    next: AtomicUsize,
}

struct Lane {
    handle: Handle,
    /// Dropped with the lane: the thread's runtime then returns and shuts down.
    _stop: oneshot::Sender<()>,
}

thread_local! {
    /// Set on the lanes' threads.
    static ON_LANE: Cell<bool> = const { Cell::new(false) };
}

/// The process's lanes, one per CPU, started on first use.
static SHARED: OnceLock<Result<Lanes, String>> = OnceLock::new();

impl Lanes {
    /// The process's lanes, one thread per CPU, started on first use; the error if the threads
    /// could not be started.
    pub fn shared() -> std::io::Result<&'static Lanes> {
        SHARED
            .get_or_init(|| {
                let threads = std::thread::available_parallelism().map_or(1, usize::from);
                Lanes::start(threads).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| std::io::Error::other(e.clone()))
    }

    /// `count` threads (at least one), named `authprobe-login-N`.
    pub fn start(count: usize) -> std::io::Result<Lanes> {
        let mut lanes = Vec::new();
        for n in 0..count.max(1) {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            std::thread::Builder::new().name(format!("authprobe-login-{n}")).spawn(move || {
                ON_LANE.set(true);
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
            lanes.push(Lane { handle, _stop: stop });
        }
        Ok(Lanes { lanes, next: AtomicUsize::new(0) })
    }

    /// Whether the calling thread is one of the lanes.
    pub fn on_lane() -> bool {
        ON_LANE.get()
    }

    /// Runs `work` on the next thread and waits for it; on a lane already, right here. A panic
    /// in `work` resumes in the caller (where the scheduler counts it as `internal_error`);
    /// dropping the returned future aborts `work`.
    pub async fn run<T: Send + 'static>(&self, work: impl Future<Output = T> + Send + 'static) -> T {
        if ON_LANE.get() {
            return work.await;
        }
        let mut task = Aborting(self.next_lane().spawn(work));
        match (&mut task.0).await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only if the thread's runtime is gone, which outlives `self`.
            Err(e) => panic!("a login thread stopped: {e}"),
        }
    }
}

impl Lanes {
    /// Starts `work` without waiting for it: on this thread if it is a lane (no wake-up of
    /// another thread), else on the next lane.
    pub fn spawn<T: Send + 'static>(&self, work: impl Future<Output = T> + Send + 'static) -> JoinHandle<T> {
        if ON_LANE.get() {
            return tokio::spawn(work);
        }
        self.next_lane().spawn(work)
    }

    fn next_lane(&self) -> &Handle {
        &self.lanes[self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len()].handle
    }
}

/// Aborts its task when dropped, so that a caller giving up ends the login too.
struct Aborting<T>(JoinHandle<T>);

impl<T> Drop for Aborting<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_login_threads_and_panics_reach_the_caller() {
        let lanes = Lanes::start(2).unwrap();
        let mut names = Vec::new();
        for _ in 0..4 {
            names.push(lanes.run(async { std::thread::current().name().map(str::to_owned) }).await.unwrap());
        }
        assert_eq!(names, ["authprobe-login-0", "authprobe-login-1", "authprobe-login-0", "authprobe-login-1"]);
        let caught = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(lanes.run(async {
            panic!("inside a login");
        })))
        .await
        .unwrap_err();
        assert_eq!(caught.downcast_ref::<&str>(), Some(&"inside a login"));
        // The lane that panicked still serves.
        assert_eq!(lanes.run(async { 7 }).await, 7);
    }

    #[tokio::test]
    async fn work_asked_for_on_a_lane_runs_right_there() {
        let lanes = std::sync::Arc::new(Lanes::start(2).unwrap());
        let inner = lanes.clone();
        let same = lanes
            .spawn(async move {
                let outer = std::thread::current().id();
                let ran_on = inner.run(async { std::thread::current().id() }).await;
                let spawned_on = inner.spawn(async { std::thread::current().id() }).await.unwrap();
                outer == ran_on && outer == spawned_on
            })
            .await
            .unwrap();
        assert!(same, "work asked for or started on a lane does not hop to another thread");
    }

    #[tokio::test]
    async fn dropping_the_caller_aborts_the_work() {
        let lanes = Lanes::start(1).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let waiting = lanes.run(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), waiting).await.is_err());
        // Aborted: the work was dropped, and with it the sender.
        assert!(tokio::time::timeout(std::time::Duration::from_secs(5), rx).await.unwrap().is_err());
    }
}
