//! The scheduler against real time: interval phases, overlap, the concurrency limit, panics, and
//! cron probes on tokio-cron-scheduler for 30+ ticks with none lost.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authprobe::config::{Probe, Schedule};
use authprobe::protocol::etna::{self, EtnaTarget};
use authprobe::protocol::{http, EtnaLogin, Expect, Login, LoginSpec, Outcome, ResultClass, StepRecord, Summary};
use authprobe::results::{Results, SkipReason};
use authprobe::scheduler::{phase_offset, Options, RunFn, Scheduler};

fn probe(name: &str, schedule: Schedule) -> Arc<Probe> {
    Arc::new(Probe {
        name: name.into(),
        target: "t".into(),
        schedule,
        labels: Vec::new().into(),
        login: LoginSpec {
            login: Login::Etna(EtnaLogin {
                target: Arc::new(EtnaTarget {
                    base_url: "http://127.0.0.1:9/api".parse().unwrap(),
                    app_key: "k".into(),
                }),
                username: name.to_owned(),
                password: "p".into(),
                pin: None,
                verification_code: None,
                expect: Expect::Succeeded,
                max_steps: 3,
                validate: false,
                logout: false,
            }),
            timeout: Duration::from_secs(5),
            max_body_bytes: 65536,
            retries: 0,
            tls: Default::default(),
            proxy: None,
        },
        lockout_guard: Default::default(),
    })
}

fn every(ms: u64) -> Schedule {
    Schedule::Interval(Duration::from_millis(ms))
}

fn success(duration: Duration) -> Outcome {
    let succeeded = Some(etna::State::Succeeded.into());
    let summary =
        Summary { state: succeeded, status: 200, ..Summary::of(ResultClass::Success, etna::BASE_AUTHENTICATION) };
    Outcome {
        steps: vec![StepRecord { step: etna::BASE_AUTHENTICATION, status: 200, state: succeeded, duration }],
        detail: "login succeeded".to_owned(),
        ..Outcome::bare(summary, &http::STATUS, duration)
    }
}

/// Every run's start: probe name, monotonic and wall-clock time.
#[derive(Default)]
struct Journal {
    starts: Mutex<Vec<(String, Instant, SystemTime)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Journal {
    fn starts_of(&self, name: &str) -> Vec<(Instant, SystemTime)> {
        self.starts.lock().unwrap().iter().filter(|(n, ..)| n == name).map(|(_, i, w)| (*i, *w)).collect()
    }
}

/// A run that takes `work` and succeeds; panics for probes named `panic*`.
fn recording_run(journal: Arc<Journal>, work: Duration) -> RunFn {
    Arc::new(move |p: Arc<Probe>, _traced: bool| {
        let journal = journal.clone();
        Box::pin(async move {
            journal.starts.lock().unwrap().push((p.name.to_string(), Instant::now(), SystemTime::now()));
            let now = journal.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            journal.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(work).await;
            journal.in_flight.fetch_sub(1, Ordering::SeqCst);
            if p.name.starts_with("panic") {
                panic!("deliberate test panic in {}", p.name);
            }
            authprobe::scheduler::Run { outcome: success(work), trace: None }
        })
    })
}

async fn start(probes: Vec<Arc<Probe>>, run: RunFn, options: Options) -> (Scheduler, Arc<Results>) {
    let results = Arc::new(Results::new(probes.iter().map(|p| p.as_ref())));
    let s = Scheduler::start(probes, results.clone(), run, options).await.expect("scheduler starts");
    (s, results)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_probes_run_on_their_wall_clock_phase_every_interval() {
    let journal = Arc::new(Journal::default());
    let names = ["alpha", "beta", "gamma"];
    let probes = names.iter().map(|n| probe(n, every(400))).collect();
    let started = Instant::now();
    let (mut s, results) =
        start(probes, recording_run(journal.clone(), Duration::from_millis(5)), Options::default()).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Each probe's next start is published for the status page: its next phase point.
    for name in names {
        let next = results.probe(name).unwrap().next_run().expect("next run published");
        let ahead = next.duration_since(SystemTime::now()).unwrap_or_default();
        assert!(ahead <= Duration::from_millis(400), "{name}: next run {ahead:?} ahead");
        let pos = (next.duration_since(UNIX_EPOCH).unwrap().as_millis() % 400) as i64;
        let want = phase_offset(name, Duration::from_millis(400)).as_millis() as i64;
        assert!((pos - want).rem_euclid(400) <= 1, "{name}: next run off its phase point");
    }
    s.stop(Duration::from_secs(1)).await;

    for name in names {
        let starts = journal.starts_of(name);
        assert!((5..=7).contains(&starts.len()), "{name}: {} runs in 2.5 s at 400 ms", starts.len());
        assert!(starts[0].0 - started < Duration::from_millis(450), "{name}: first run within one interval");
        for pair in starts.windows(2) {
            let gap = pair[1].0 - pair[0].0;
            assert!(
                gap > Duration::from_millis(300) && gap < Duration::from_millis(500),
                "{name}: gap {gap:?} between runs, want about 400 ms"
            );
        }
        // The phase is anchored to wall-clock time: a restarted process runs at the same points.
        let want = phase_offset(name, Duration::from_millis(400)).as_millis() as i64;
        for (_, wall) in &starts {
            let pos = (wall.duration_since(UNIX_EPOCH).unwrap().as_millis() % 400) as i64;
            let off = (pos - want).rem_euclid(400);
            assert!(off < 80, "{name}: ran {off} ms after its phase point");
        }
        let r = results.probe(name).unwrap().snapshot();
        assert_eq!(r.runs_of(ResultClass::Success), starts.len() as u64);
        assert_eq!(r.skipped_of(SkipReason::Overlap), 0);
    }
    assert!(results.delay().count >= 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_during_a_run_is_skipped_and_counted() {
    let journal = Arc::new(Journal::default());
    // Runs take 700 ms, ticks come every 200 ms: at most one run at a time, the rest skipped.
    let (mut s, results) = start(
        vec![probe("slow", every(200))],
        recording_run(journal.clone(), Duration::from_millis(700)),
        Options::default(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2300)).await;
    s.stop(Duration::from_secs(2)).await;
    let r = results.probe("slow").unwrap().snapshot();
    assert_eq!(journal.max_in_flight.load(Ordering::SeqCst), 1, "runs of one probe never overlap");
    let runs = journal.starts_of("slow").len() as u64;
    assert!((2..=4).contains(&runs), "{runs} runs");
    let skipped = r.skipped_of(SkipReason::Overlap);
    assert!(skipped >= 6, "ticks during runs are counted as skipped: {skipped}");
    // Every tick either started a run or was skipped.
    let ticks = runs + skipped;
    assert!((10..=13).contains(&ticks), "{ticks} ticks in 2.3 s at 200 ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_limit_holds_and_queued_runs_count_as_delay() {
    let journal = Arc::new(Journal::default());
    let probes = (0..12).map(|i| probe(&format!("p{i:02}"), every(1000))).collect();
    let options = Options { concurrency: 3, ..Options::default() };
    let (mut s, results) = start(probes, recording_run(journal.clone(), Duration::from_millis(300)), options).await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    s.stop(Duration::from_secs(3)).await;
    assert_eq!(journal.max_in_flight.load(Ordering::SeqCst), 3, "never more than 3 logins at once, and 3 reached");
    let total: u64 = results.probes().list.iter().map(|p| p.snapshot().total_runs()).sum();
    assert!(total >= 12, "every probe ran: {total}");
    let delay = results.delay();
    assert_eq!(delay.count, total);
    // 12 runs of 300 ms through 3 slots in 1 s cannot all start on time.
    assert!(delay.sum > 0.3, "queueing shows as start delay: {} s in total", delay.sum);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_run_is_counted_and_the_schedule_goes_on() {
    let journal = Arc::new(Journal::default());
    let probes = vec![probe("panicky", every(300)), probe("steady", every(300))];
    let (mut s, results) =
        start(probes, recording_run(journal.clone(), Duration::from_millis(10)), Options::default()).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    s.stop(Duration::from_secs(1)).await;
    let panicky = results.probe("panicky").unwrap().snapshot();
    let steady = results.probe("steady").unwrap().snapshot();
    assert!(panicky.runs_of(ResultClass::InternalError) >= 4, "every panic counted: {:?}", panicky.runs);
    assert_eq!(panicky.runs_of(ResultClass::InternalError), panicky.total_runs());
    assert_eq!(panicky.consecutive_failures, panicky.total_runs());
    assert_eq!(panicky.last.as_ref().unwrap().result(), ResultClass::InternalError);
    assert!(steady.runs_of(ResultClass::Success) >= 4, "the other probe kept running: {:?}", steady.runs);
    assert_eq!(panicky.skipped_of(SkipReason::Overlap), 0, "a panic releases the probe for its next tick");
}

/// Seconds (since the epoch) at which runs of `name` started.
fn start_seconds(journal: &Journal, name: &str) -> Vec<u64> {
    journal.starts_of(name).iter().map(|(_, w)| w.duration_since(UNIX_EPOCH).unwrap().as_secs()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_probes_on_the_engine_lose_no_tick_in_32_seconds() {
    let journal = Arc::new(Journal::default());
    let probes = vec![
        probe("every-second", Schedule::Cron("* * * * * *".into())),
        probe("every-2s", Schedule::Cron("*/2 * * * * *".into())),
    ];
    let (mut s, results) =
        start(probes, recording_run(journal.clone(), Duration::from_millis(20)), Options::default()).await;
    tokio::time::sleep(Duration::from_secs(32)).await;
    s.stop(Duration::from_secs(1)).await;

    let seconds = start_seconds(&journal, "every-second");
    assert!(seconds.len() >= 30, "{} runs in 32 s", seconds.len());
    let distinct: BTreeSet<u64> = seconds.iter().copied().collect();
    assert_eq!(distinct.len(), seconds.len(), "no tick ran twice: {seconds:?}");
    let (first, last) = (*distinct.first().unwrap(), *distinct.last().unwrap());
    assert_eq!(
        distinct.len() as u64,
        last - first + 1,
        "no second without a run between {first} and {last}: {seconds:?}"
    );

    let even = start_seconds(&journal, "every-2s");
    assert!(even.len() >= 15, "{} runs of */2 in 32 s", even.len());
    assert!(even.iter().all(|s| s % 2 == 0), "*/2 runs on even seconds: {even:?}");
    assert!(even.windows(2).all(|w| w[1] - w[0] == 2), "no */2 tick lost: {even:?}");

    for name in ["every-second", "every-2s"] {
        let r = results.probe(name).unwrap().snapshot();
        assert_eq!(r.skipped_of(SkipReason::Missed), 0, "{name}");
        assert_eq!(r.total_runs(), journal.starts_of(name).len() as u64, "{name}");
    }
    eprintln!("cron ticks started by the watchdog instead of the engine: {}", results.cron_watchdog_runs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_alone_keeps_every_cron_tick() {
    // With the engine switched off, the watchdog is the only source: as if every activation of
    // tokio-cron-scheduler were lost.
    let journal = Arc::new(Journal::default());
    let options = Options { cron_engine: false, ..Options::default() };
    let (mut s, results) = start(
        vec![probe("orphan", Schedule::Cron("* * * * * *".into()))],
        recording_run(journal.clone(), Duration::ZERO),
        options,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let next = results.probe("orphan").unwrap().next_run().expect("next tick published");
    // The watchdog starts a tick 0.75 s after it is due, so the published tick may have passed.
    let ahead = next.duration_since(SystemTime::now() - Duration::from_secs(1)).expect("due at most 1 s ago");
    assert!(ahead <= Duration::from_millis(2050), "next tick {ahead:?} after one second ago");
    assert_eq!(next.duration_since(UNIX_EPOCH).unwrap().subsec_millis(), 0, "cron ticks are whole seconds");
    s.stop(Duration::from_secs(1)).await;
    let seconds = start_seconds(&journal, "orphan");
    assert!(seconds.len() >= 4, "{seconds:?}");
    assert!(seconds.windows(2).all(|w| w[1] - w[0] == 1), "consecutive seconds: {seconds:?}");
    assert_eq!(results.cron_watchdog_runs(), seconds.len() as u64);
    // Started three quarters of a second late (the grace of a per-second expression), and
    // measured as such.
    let delay = results.delay();
    let mean = delay.sum / delay.count as f64;
    assert!((0.7..1.0).contains(&mean), "mean delay {mean} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_unchanged_probes_on_their_ticks_and_applies_changes() {
    let journal = Arc::new(Journal::default());
    let a = probe("a", every(400));
    let v1 = vec![a.clone(), probe("b", every(400)), probe("c", Schedule::Cron("* * * * * *".into()))];
    let (mut s, results) =
        start(v1, recording_run(journal.clone(), Duration::from_millis(5)), Options::default()).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;

    // a: same settings (a new but equal Probe); b: slower; c: removed; d: new.
    let v2 = vec![probe("a", every(400)), probe("b", every(1000)), probe("d", every(400))];
    results.apply(v2.iter().map(|p| p.as_ref()));
    let reloaded = Instant::now();
    s.reload(v2).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2600)).await;
    s.stop(Duration::from_secs(1)).await;

    let a_starts = journal.starts_of("a");
    assert!(a_starts.len() >= 10, "{} runs of a", a_starts.len());
    for pair in a_starts.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap > Duration::from_millis(300) && gap < Duration::from_millis(500), "a's rhythm broke: {gap:?}");
    }
    let b_after: Vec<Instant> = journal.starts_of("b").iter().map(|(i, _)| *i).filter(|i| *i > reloaded).collect();
    assert!((2..=3).contains(&b_after.len()), "b at its new 1 s interval: {} runs in 2.6 s", b_after.len());
    assert!(b_after.windows(2).all(|w| w[1] - w[0] > Duration::from_millis(900)), "{b_after:?}");
    let c_after = journal.starts_of("c").iter().filter(|(i, _)| *i > reloaded + Duration::from_millis(50)).count();
    assert_eq!(c_after, 0, "the removed cron probe stopped");
    assert!(!journal.starts_of("c").is_empty(), "c ran before the reload");
    assert!(journal.starts_of("d").len() >= 5, "the new probe runs");
    assert!(results.probe("c").is_none());
    // a's record carried over the reload: every run is counted in one record.
    assert_eq!(results.probe("a").unwrap().snapshot().total_runs(), a_starts.len() as u64);
}

/// A reload lets runs in flight finish; a run is recorded if its probe is still configured, and
/// an unchanged probe keeps its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_in_flight_finish_across_a_reload_and_count_only_for_kept_probes() {
    let journal = Arc::new(Journal::default());
    let v1 = vec![probe("kept", every(2000)), probe("dropped", every(2000))];
    let (mut s, results) =
        start(v1, recording_run(journal.clone(), Duration::from_millis(700)), Options::default()).await;
    let kept = results.probe("kept").unwrap();
    // Wait until both are in flight at once, then reload without `dropped`.
    let deadline = Instant::now() + Duration::from_secs(8);
    while journal.in_flight.load(Ordering::SeqCst) < 2 || journal.starts_of("kept").len() < 2 {
        assert!(Instant::now() < deadline, "both probes never ran at once");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let v2 = vec![probe("kept", every(2000))];
    results.apply(v2.iter().map(|p| p.as_ref()));
    s.reload(v2).await.unwrap();
    assert!(results.probe("dropped").is_none());
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(journal.in_flight.load(Ordering::SeqCst), 0, "the runs in flight were not cut short");
    s.stop(Duration::from_secs(1)).await;

    let starts = journal.starts_of("kept").len() as u64;
    assert!(Arc::ptr_eq(&kept, &results.probe("kept").unwrap()), "the kept probe keeps its record");
    assert_eq!(kept.snapshot().total_runs(), starts, "every run of the kept probe recorded, the one in flight too");
    assert_eq!(kept.history().len() as u64, starts, "its history too");
    let dropped_runs = journal.starts_of("dropped").len();
    assert!(
        results.probes().list.iter().all(|p| *p.name != *"dropped"),
        "{dropped_runs} runs of dropped left no trace"
    );
}
