//! The state store: what a restart keeps of every probe ([`ProbeState`]) in one SQLite file,
//! `{storage.path}/authprobe.db`.
//!
//! Why SQLite (rusqlite, bundled) rather than redb: its crash safety is the most tested there is;
//! a full disk fails one transaction and the connection goes on working, where redb refuses
//! every later operation until the file is opened again; a damaged file is found by
//! `PRAGMA quick_check`; and an operator can read the file with the `sqlite3` shell. It costs a
//! C compile of about half a minute.
//!
//! Writes never happen on the probe path: a run marks its probe dirty, and [`writer`] writes the
//! dirty probes in one transaction every `--storage.write-interval` and at shutdown. WAL with
//! `synchronous=NORMAL`: a killed process loses nothing committed; a power cut may lose the last
//! transactions, never the file.
//!
//! A file that is not a database, is damaged, or is another application's is moved aside with a
//! warning and a fresh one is made: a bad file never keeps the service from starting.

pub mod writer;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, OpenFlags};

use crate::config::Probe;
use crate::results::{History, Layout, Layouts, ProbeState, Results};

/// The file's name in the storage directory.
pub const FILE: &str = "authprobe.db";

/// `PRAGMA application_id`: "aprb". A SQLite file without it is another application's.
const APPLICATION_ID: i32 = 0x6170_7262;

/// `PRAGMA user_version`: the layout of the tables. A file of another layout is moved aside.
const FORMAT: i32 = 1;

/// Why the store could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage directory could not be made or used.
    #[error("storage path {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A damaged or foreign file could not be moved aside.
    #[error("cannot move {path} aside: {source}")]
    MoveAside {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file could not be made or opened.
    #[error("state store {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A freshly made file is still unusable.
    #[error("state store {path}: {why}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// SQLite refused.
    #[error("state store {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
}

/// What opening found wrong with an existing file before moving it aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedAside {
    /// Where the file went.
    pub to: PathBuf,
    /// Why.
    pub why: String,
}

/// What [`Store::restore`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Probes whose state came back.
    pub probes: usize,
    /// Of those, probes whose lockout guard started fresh because their credentials changed.
    pub credentials_changed: usize,
    /// Probes whose state was dropped because they are no longer configured (or have another
    /// target or labels).
    pub dropped: usize,
    /// Probes whose state could not be read (logged each); they start fresh.
    pub unreadable: usize,
}

/// The open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Salts the credential digests kept beside each probe's state.
    salt: Vec<u8>,
    /// The layouts of the histories the file holds, as releases recorded them in `meta`.
    layouts: Layouts,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store in `dir`, making the directory (0700) and the file as needed. An
    /// existing file that cannot be used is moved aside (`authprobe.db.broken-<unix time>`) and
    /// a fresh one made; what was wrong with it is returned for the caller to warn about.
    pub fn open(dir: &Path) -> Result<(Store, Option<MovedAside>), StoreError> {
        make_dir(dir)?;
        let path = dir.join(FILE);
        let failed = |path: &Path, e: Unusable| match e {
            Unusable::Sqlite(source) => StoreError::Sqlite { path: path.to_owned(), source },
            Unusable::File(source) => StoreError::File { path: path.to_owned(), source },
            Unusable::Bad(why) => StoreError::Unusable { path: path.to_owned(), why },
        };
        match Store::open_file(&path) {
            Ok(store) => Ok((store, None)),
            Err(Unusable::Bad(why)) => {
                let to = move_aside(&path)?;
                // A fresh file that is still unusable is not the old file's fault.
                let store = Store::open_file(&path).map_err(|e| failed(&path, e))?;
                Ok((store, Some(MovedAside { to, why })))
            }
            Err(e) => Err(failed(&path, e)),
        }
    }

    fn open_file(path: &Path) -> Result<Store, Unusable> {
        // Made here rather than by SQLite, so that it is readable by us alone (its WAL and
        // shared-memory files take the same mode).
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(Unusable::File)?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(Unusable::classify)?;
        // Before anything else reads the file: another process holding it is not damage.
        conn.busy_timeout(Duration::from_secs(2)).map_err(Unusable::Sqlite)?;
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE").map_err(Unusable::classify)?;
        let application: i32 =
            conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(Unusable::classify)?;
        let format: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(Unusable::classify)?;
        let tables: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).map_err(Unusable::classify)?;
        if application == 0 && format == 0 && tables == 0 {
            init(&conn).map_err(Unusable::classify)?;
        } else if application != APPLICATION_ID {
            return Err(Unusable::Bad(format!("not authprobe's (SQLite application_id {application:#x})")));
        } else if format != FORMAT {
            return Err(Unusable::Bad(format!("written in layout {format}, this release reads {FORMAT}")));
        }
        let check: String = conn.pragma_query_value(None, "quick_check", |r| r.get(0)).map_err(Unusable::classify)?;
        if check != "ok" {
            return Err(Unusable::Bad(format!("damaged: {check}")));
        }
        conn.pragma_update(None, "journal_mode", "WAL").map_err(Unusable::classify)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(Unusable::classify)?;
        // A small page cache (256 KiB, the B-tree's inner pages at 10,000 probes): rows are
        // written in batches and read once, at start, so a larger one only holds memory.
        conn.pragma_update(None, "cache_size", -256).map_err(Unusable::Sqlite)?;
        let salt: Vec<u8> = conn
            .query_row("SELECT value FROM meta WHERE key = 'salt'", [], |r| r.get(0))
            .map_err(Unusable::classify)?;
        let layouts = layouts(&conn).map_err(Unusable::Sqlite)?;
        Ok(Store { conn, path: path.to_owned(), salt, layouts })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The salted digest of each probe's credentials, kept beside its state.
    pub fn credentials(&self, probes: &[Arc<Probe>]) -> HashMap<String, i64> {
        digests(&self.salt, probes)
    }

    /// Takes back the saved state of every probe in `results` that is still configured with
    /// the same target and labels; a probe whose credentials changed (its digest in
    /// `credentials`, from [`Store::credentials`], is not the saved one) gets its state without
    /// its lockout guard. The state of every other probe is deleted.
    pub fn restore(&mut self, results: &Results, credentials: &HashMap<String, i64>) -> Result<Restored, StoreError> {
        let set = results.probes();
        let mut report = Restored::default();
        let mut gone = Vec::new();
        let path = self.path.clone();
        let sqlite = |source| StoreError::Sqlite { path: path.clone(), source };
        {
            let mut rows = self.conn.prepare("SELECT name, credentials, state FROM probes").map_err(sqlite)?;
            let mut rows = rows.query([]).map_err(sqlite)?;
            while let Some(row) = rows.next().map_err(sqlite)? {
                let name: String = row.get(0).map_err(sqlite)?;
                let saved_credentials: i64 = row.get(1).map_err(sqlite)?;
                let Some(probe) = set.get(&name) else {
                    gone.push(name);
                    continue;
                };
                let bytes = row.get_ref(2).map_err(sqlite)?.as_blob().unwrap_or_default();
                let mut state = match ProbeState::decode(bytes) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(probe = %name, error = %e, "saved state unreadable; the probe starts fresh");
                        report.unreadable += 1;
                        continue;
                    }
                };
                if *state.target != *probe.target || state.labels[..] != probe.labels[..] {
                    gone.push(name);
                    continue;
                }
                if credentials.get(&name) != Some(&saved_credentials) && !state.guard.is_clear() {
                    tracing::info!(probe = %name, "credentials changed since the state was saved: the lockout guard starts fresh");
                    state.guard = Default::default();
                    state.backoff_ms = 0;
                    state.resume_at_unix_ms = None;
                    report.credentials_changed += 1;
                }
                match probe.restore(&state, &self.layouts) {
                    Ok(true) => report.probes += 1,
                    Ok(false) => {
                        tracing::warn!(probe = %name, "saved history written by another release; the rest of the state is restored");
                        report.probes += 1;
                    }
                    Err(e) => {
                        tracing::warn!(probe = %name, error = %e, "saved state unreadable; the probe starts fresh");
                        report.unreadable += 1;
                    }
                }
            }
        }
        report.dropped = gone.len();
        self.write(std::iter::empty::<(String, i64, Vec<u8>)>(), &gone).map_err(sqlite)?;
        Ok(report)
    }

    /// Writes `states` (name, credentials digest, encoded state), taken one at a time so that
    /// no batch is ever held whole, and deletes `removed`, in one transaction. Returns the rows
    /// written.
    pub fn write<S: AsRef<[u8]>>(
        &mut self,
        states: impl IntoIterator<Item = (String, i64, S)>,
        removed: &[String],
    ) -> Result<usize, rusqlite::Error> {
        let tx = self.conn.transaction()?;
        let mut written = 0;
        {
            let now = crate::results::unix_seconds(SystemTime::now()) as i64;
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO probes (name, credentials, saved_unix, state) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (name, credentials, state) in states {
                put.execute(params![name, credentials, now, state.as_ref()])?;
                written += 1;
            }
            let mut delete = tx.prepare_cached("DELETE FROM probes WHERE name = ?1")?;
            for name in removed {
                delete.execute([name])?;
            }
        }
        tx.commit()?;
        Ok(written)
    }

    /// Names of the probes with saved state.
    pub fn names(&self) -> Result<HashSet<String>, rusqlite::Error> {
        let mut q = self.conn.prepare("SELECT name FROM probes")?;
        let names = q.query_map([], |r| r.get(0))?.collect();
        names
    }
}

fn digests(salt: &[u8], probes: &[Arc<Probe>]) -> HashMap<String, i64> {
    // SQLite integers are signed: the digest's bits, read as one.
    probes.iter().map(|p| (p.name.to_string(), p.login.credentials_digest(salt) as i64)).collect()
}

/// Why an existing file cannot be used.
enum Unusable {
    /// It is not a store of ours, or it is damaged: move it aside.
    Bad(String),
    /// Anything else (busy, permissions, I/O): not the file's fault, so it is left alone.
    Sqlite(rusqlite::Error),
    /// The file cannot be made or opened.
    File(std::io::Error),
}

impl Unusable {
    fn classify(e: rusqlite::Error) -> Unusable {
        use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
        match e.sqlite_error_code() {
            Some(NotADatabase) => Unusable::Bad("not a SQLite database".to_owned()),
            Some(DatabaseCorrupt) => Unusable::Bad(format!("damaged: {e}")),
            _ if matches!(e, rusqlite::Error::QueryReturnedNoRows) => Unusable::Bad("no salt in meta".to_owned()),
            _ => Unusable::Sqlite(e),
        }
    }
}

/// The history layouts `meta` records (a release writes its own there before any history), and
/// the ones every release knows. A layout of a later release that cannot be read is left out:
/// its histories are then dropped, the rest of their state restored.
fn layouts(conn: &Connection) -> rusqlite::Result<Layouts> {
    let recorded: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = 'layouts'", [], |r| r.get(0))
        .map(Some)
        .or_else(|e| if matches!(e, rusqlite::Error::QueryReturnedNoRows) { Ok(None) } else { Err(e) })?;
    let mut recorded: Vec<Layout> = recorded.and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default();
    let mut known = Layouts::default();
    for layout in &recorded {
        known.add(layout.clone());
    }
    let current = History::layout();
    if !recorded.contains(current) {
        recorded.push(current.clone());
        let bytes = serde_json::to_vec(&recorded).expect("layouts serialise");
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('layouts', ?1)", [bytes])?;
    }
    Ok(known)
}

/// Makes a new file's tables and salt.
fn init(conn: &Connection) -> rusqlite::Result<()> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    conn.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {FORMAT};
         BEGIN;
         CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
         CREATE TABLE probes (name TEXT PRIMARY KEY, credentials INTEGER NOT NULL,
                              saved_unix INTEGER NOT NULL, state BLOB NOT NULL);
         COMMIT;"
    ))?;
    conn.execute("INSERT INTO meta (key, value) VALUES ('salt', ?1)", [&salt[..]])?;
    Ok(())
}

fn make_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::Directory { path: dir.to_owned(), source })
}

/// Renames `path` (and its WAL and shared-memory files) to `…broken-<unix time>`.
fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let stamp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", path.display()));
    let to = with(&format!(".broken-{stamp}"));
    std::fs::rename(path, &to).map_err(|source| StoreError::MoveAside { path: path.to_owned(), source })?;
    for extra in ["-wal", "-shm"] {
        let from = with(extra);
        if from.exists() {
            let _ = std::fs::rename(&from, with(&format!(".broken-{stamp}{extra}")));
        }
    }
    Ok(to)
}

#[cfg(test)]
mod tests;
