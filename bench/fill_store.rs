//! Fills a state store as a long-running service would have: every probe of a probes file with a
//! full history (100 runs, one a minute, every tenth failed with a reason text), its failures,
//! availability over the days those runs cover, its last outcome, and every twentieth probe
//! held back by the lockout guard. bench/store.sh restarts `authprobe run` on it to time a
//! restart at 10,000 probes.
//!
//!   cargo bench --bench fill_store -- PROBES_FILE STORE_DIR

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use authprobe::config::Config;
use authprobe::protocol::{etna, http, Outcome, Reason, ResultClass, StepRecord, Summary};
use authprobe::results::{unix_millis, GuardState, Results, Trigger, HISTORY_RUNS};
use authprobe::store::{writer::Writer, Store};

fn outcome(ok: bool, i: usize) -> Outcome {
    let duration = Duration::from_micros(20_000 + (i as u64 * 7919) % 30_000);
    let (result, reason, status, state) = if ok {
        (ResultClass::Success, Reason::NONE, 200, etna::State::Succeeded)
    } else {
        (ResultClass::AuthFailed, etna::INVALID_CREDENTIALS, 401, etna::State::Failed)
    };
    let state = Some(state.into());
    let summary = Summary { state, reason, status, ..Summary::of(result, etna::BASE_AUTHENTICATION) };
    Outcome {
        reason_text: if ok { String::new() } else { "Invalid username or password".to_owned() },
        steps: vec![StepRecord { step: etna::BASE_AUTHENTICATION, status, state, duration }],
        detail: if ok { "login succeeded".to_owned() } else { "login failed at BaseAuthentication".to_owned() },
        ..Outcome::bare(summary, &http::STATUS, duration)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let [file, dir] = &args[..] else {
        return Err("usage: fill_store PROBES_FILE STORE_DIR".into());
    };
    let config = Config::load(file.as_ref()).map_err(|e| e.to_string())?;
    let probes: Vec<Arc<_>> = config.probes.into_iter().map(Arc::new).collect();
    let results = Arc::new(Results::new(probes.iter().map(|p| p.as_ref())));
    let now = SystemTime::now();
    let set = results.probes();
    for (n, p) in set.list.iter().enumerate() {
        for i in 0..HISTORY_RUNS {
            let finished = now - Duration::from_secs(60 * (HISTORY_RUNS - i) as u64);
            let o = outcome((i + n) % 10 != 0, i);
            p.record_run(o, finished - Duration::from_millis(30), finished, Trigger::Scheduled);
        }
        if n % 20 == 0 {
            let until = now + Duration::from_secs(1800);
            p.set_backoff(
                Duration::from_secs(900),
                Some(until),
                GuardState { strikes: 5, level: 4, until_unix_ms: unix_millis(until) },
            );
        }
    }
    let (mut store, _) = Store::open(dir.as_ref())?;
    let credentials = store.credentials(&probes);
    store.restore(&results, &credentials)?;
    let started = Instant::now();
    let writer = Writer::start(store, results.clone(), credentials, Duration::from_secs(3600))?;
    writer.stop();
    let status = results.storage().unwrap_or_default();
    let bytes = std::fs::metadata(std::path::Path::new(dir).join(authprobe::store::FILE))?.len();
    println!(
        "filled {} probes in one batch of {} in {:.0} ms: {:.1} MB, {:.2} KB a probe",
        probes.len(),
        status.last_write_probes,
        started.elapsed().as_secs_f64() * 1000.0,
        bytes as f64 / 1e6,
        bytes as f64 / 1e3 / probes.len().max(1) as f64
    );
    Ok(())
}
