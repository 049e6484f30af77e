use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::Config;
use crate::protocol::{etna, http, Outcome, Reason, ResultClass, Summary};
use crate::results::{GuardState, Trigger};

fn probes(dir: &Path, password: &str, names: &[&str]) -> Vec<Arc<Probe>> {
    let path = dir.join("probes.yaml");
    let mut text = "targets:\n  - {name: t, base_url: 'http://127.0.0.1:9/api', app_key: k}\nprobes:\n".to_owned();
    for n in names {
        text.push_str(&format!("  - {{name: {n}, target: t, username: u, password: {password}}}\n"));
    }
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap().probes.into_iter().map(Arc::new).collect()
}

fn results(probes: &[Arc<Probe>]) -> Arc<Results> {
    Arc::new(Results::new(probes.iter().map(|p| p.as_ref())))
}

fn outcome(result: ResultClass) -> Outcome {
    let ok = result == ResultClass::Success;
    let (reason, status) = if ok { (Reason::NONE, 200) } else { (etna::INVALID_CREDENTIALS, 401) };
    let summary = Summary { reason, status, ..Summary::of(result, etna::BASE_AUTHENTICATION) };
    Outcome::bare(summary, &http::STATUS, Duration::from_millis(40))
}

/// Runs `a` and `b` once (`b` fails and backs off) and writes them.
fn write_two(dir: &Path, store_dir: &Path) -> Vec<Arc<Probe>> {
    let ps = probes(dir, "pw", &["a", "b"]);
    let r = results(&ps);
    let (mut store, moved) = Store::open(store_dir).unwrap();
    assert_eq!(moved, None);
    let credentials = store.credentials(&ps);
    assert_eq!(store.restore(&r, &credentials).unwrap(), Restored::default());
    let now = SystemTime::now();
    r.probe("a").unwrap().record_run(outcome(ResultClass::Success), now, now, Trigger::Scheduled);
    r.probe("b").unwrap().record_run(outcome(ResultClass::AuthFailed), now, now, Trigger::Scheduled);
    let until = now + Duration::from_secs(600);
    let guard = GuardState { strikes: 3, level: 1, until_unix_ms: crate::results::unix_millis(until) };
    r.probe("b").unwrap().set_backoff(Duration::from_secs(60), Some(until), guard);
    let writer = writer::Writer::start(store, r.clone(), credentials, Duration::from_secs(3600)).unwrap();
    writer.stop();
    assert_eq!(r.storage().map(|s| (s.writes, s.last_write_probes)), Some((1, 2)));
    ps
}

#[test]
fn state_comes_back_and_removed_probes_go() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("data");
    let before = write_two(dir.path(), &store_dir);
    assert!(store_dir.join(FILE).exists());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(store_dir.join(FILE)).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&store_dir).unwrap().permissions().mode() & 0o777, 0o700);

    // "a" is gone from the configuration, "b" stays, "c" is new.
    let ps = probes(dir.path(), "pw", &["b", "c"]);
    let r = results(&ps);
    let (mut store, _) = Store::open(&store_dir).unwrap();
    let report = store.restore(&r, &store.credentials(&ps)).unwrap();
    assert_eq!(report, Restored { probes: 1, credentials_changed: 0, dropped: 1, unreadable: 0 });
    let b = r.probe("b").unwrap().snapshot();
    assert_eq!(b.last.as_ref().map(|l| l.result()), Some(ResultClass::AuthFailed));
    assert_eq!((b.guard.strikes, b.guard.level, b.backoff), (3, 1, Duration::from_secs(60)));
    assert_eq!(r.probe("b").unwrap().history().len(), 1);
    assert!(r.probe("c").unwrap().snapshot().last.is_none());
    assert_eq!(store.names().unwrap(), ["b".to_owned()].into(), "a's row is deleted");
    drop(before);
}

#[test]
fn changed_credentials_start_a_fresh_guard() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("data");
    write_two(dir.path(), &store_dir);
    let ps = probes(dir.path(), "a-new-password", &["a", "b"]);
    let r = results(&ps);
    let (mut store, _) = Store::open(&store_dir).unwrap();
    let report = store.restore(&r, &store.credentials(&ps)).unwrap();
    assert_eq!((report.probes, report.credentials_changed), (2, 1));
    let b = r.probe("b").unwrap().snapshot();
    assert!(b.guard.is_clear() && b.backoff.is_zero() && b.resume_at.is_none());
    assert_eq!(b.last.as_ref().map(|l| l.result()), Some(ResultClass::AuthFailed), "the rest comes back");
}

#[test]
fn a_file_that_is_not_ours_is_moved_aside_and_a_fresh_one_made() {
    let dir = tempfile::tempdir().unwrap();
    let ps = probes(dir.path(), "pw", &["a", "b"]);
    let store_dir = dir.path().join("data");
    std::fs::create_dir(&store_dir).unwrap();
    let file = store_dir.join(FILE);

    // Not a database at all.
    std::fs::write(&file, b"this is not a database, just text that is long enough to look like a header").unwrap();
    let (mut store, moved) = Store::open(&store_dir).unwrap();
    let moved = moved.expect("moved aside");
    assert_eq!(moved.why, "not a SQLite database");
    assert!(moved.to.file_name().unwrap().to_str().unwrap().starts_with("authprobe.db.broken-"));
    assert!(std::fs::read(&moved.to).unwrap().starts_with(b"this is not"), "kept for a person to look at");
    assert_eq!(store.restore(&results(&ps), &store.credentials(&ps)).unwrap(), Restored::default());
    drop(store);

    // Another application's SQLite file.
    std::fs::remove_file(&file).unwrap();
    let other = rusqlite::Connection::open(&file).unwrap();
    other.execute_batch("CREATE TABLE photos (id INTEGER); INSERT INTO photos VALUES (1);").unwrap();
    drop(other);
    let (_, moved) = Store::open(&store_dir).unwrap();
    assert_eq!(moved.unwrap().why, "not authprobe's (SQLite application_id 0x0)");

    // Ours, truncated in the middle of its pages.
    let _ = std::fs::remove_dir_all(&store_dir);
    write_two(dir.path(), &store_dir);
    let whole = std::fs::read(&file).unwrap();
    assert!(whole.len() >= 3 * 4096, "{} bytes", whole.len());
    std::fs::write(&file, &whole[..whole.len() - 4096 - 100]).unwrap();
    let (mut store, moved) = Store::open(&store_dir).unwrap();
    assert!(moved.is_some(), "a truncated file is moved aside");
    let r = results(&ps);
    assert_eq!(store.restore(&r, &store.credentials(&ps)).unwrap(), Restored::default());

    // Ours, with the probes table's page (the 4th: meta and its index come first) overwritten.
    let _ = std::fs::remove_dir_all(&store_dir);
    write_two(dir.path(), &store_dir);
    let mut bytes = std::fs::read(&file).unwrap();
    for b in &mut bytes[3 * 4096..4 * 4096] {
        *b = 0xa5;
    }
    std::fs::write(&file, &bytes).unwrap();
    let (_, moved) = Store::open(&store_dir).unwrap();
    assert!(moved.as_ref().is_some_and(|m| m.why.starts_with("damaged")), "a damaged page is found: {moved:?}");
}

#[test]
fn an_unreadable_row_starts_its_probe_fresh_and_the_others_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("data");
    let ps = write_two(dir.path(), &store_dir);
    {
        let conn = rusqlite::Connection::open(store_dir.join(FILE)).unwrap();
        conn.execute("UPDATE probes SET state = x'ffffff' WHERE name = 'a'", []).unwrap();
    }
    let r = results(&ps);
    let (mut store, moved) = Store::open(&store_dir).unwrap();
    assert_eq!(moved, None);
    let report = store.restore(&r, &store.credentials(&ps)).unwrap();
    assert_eq!((report.probes, report.unreadable), (1, 1));
    assert!(r.probe("a").unwrap().snapshot().last.is_none());
    assert!(r.probe("b").unwrap().snapshot().last.is_some());
}

#[test]
fn a_second_process_on_the_same_file_is_refused_not_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("data");
    let (first, _) = Store::open(&store_dir).unwrap();
    let second = Store::open(&store_dir);
    assert!(matches!(second, Err(StoreError::Sqlite { .. })), "{second:?}");
    assert!(second.unwrap_err().to_string().contains("locked"));
    drop(first);
    assert!(std::fs::read_dir(&store_dir).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_str()
        .unwrap()
        .contains("broken")));
}
