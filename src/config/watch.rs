//! Noticing that the configuration files changed (`--config.auto-reload-interval`): the main
//! file and every file its `probe_files` globs match now, compared by content, so that an
//! updated Kubernetes ConfigMap (a swapped symlink, a new mtime or none) applies without a
//! sidecar or a signal.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What a check compares: the content of the configuration files, as last seen.
#[derive(Debug)]
pub struct Watched {
    main: PathBuf,
    main_hash: u64,
    /// The main file's `probe_files`, read again whenever the main file changes.
    patterns: Vec<String>,
    fingerprint: u64,
}

/// The part of the main file a check needs.
#[derive(Deserialize)]
struct Globs {
    #[serde(default)]
    probe_files: Vec<String>,
}

impl Watched {
    /// The files of `main` as they are now.
    pub fn new(main: &Path) -> Self {
        let mut w = Watched { main: main.to_owned(), main_hash: 0, patterns: Vec::new(), fingerprint: 0 };
        w.fingerprint = w.fingerprint();
        w
    }

    /// Whether any file changed, appeared or went since the last call (or since [`Watched::new`]).
    pub fn changed(&mut self) -> bool {
        let now = self.fingerprint();
        let changed = now != self.fingerprint;
        self.fingerprint = now;
        changed
    }

    fn fingerprint(&mut self) -> u64 {
        let main = std::fs::read(&self.main).ok();
        let main_hash = hash_of(&self.main, main.as_deref());
        if main_hash != self.main_hash {
            self.main_hash = main_hash;
            // A main file that does not parse has no globs: the reload will say what is wrong.
            self.patterns = main
                .and_then(|bytes| serde_yaml_ng::from_slice::<Globs>(&bytes).ok())
                .map(|g| g.probe_files)
                .unwrap_or_default();
        }
        let mut h = DefaultHasher::new();
        main_hash.hash(&mut h);
        let base = self.main.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        for pattern in &self.patterns {
            let Ok(files) = super::glob_files(base, pattern) else { continue };
            for f in files {
                hash_of(&f, std::fs::read(&f).ok().as_deref()).hash(&mut h);
            }
        }
        h.finish()
    }
}

/// A file's name and content (or its absence) in one number.
fn hash_of(path: &Path, content: Option<&[u8]>) -> u64 {
    let mut h = DefaultHasher::new();
    path.hash(&mut h);
    content.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_edits_new_files_and_removals_but_not_touches() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("probes.yaml");
        std::fs::write(&main, "probe_files: [d/*.yaml]\n").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let mut w = Watched::new(&main);
        assert!(!w.changed());
        std::fs::write(dir.path().join("d/a.yaml"), "probes: []\n").unwrap();
        assert!(w.changed(), "a new file the glob matches");
        assert!(!w.changed());
        std::fs::write(dir.path().join("d/a.yaml"), "probes: []\n").unwrap();
        assert!(!w.changed(), "the same content written again");
        std::fs::write(dir.path().join("d/a.yaml"), "probes: [ ]\n").unwrap();
        assert!(w.changed(), "an edit");
        std::fs::write(dir.path().join("d/notes.txt"), "x").unwrap();
        assert!(!w.changed(), "a file the glob does not match");
        std::fs::remove_file(dir.path().join("d/a.yaml")).unwrap();
        assert!(w.changed(), "a removal");
        std::fs::write(&main, "probe_files: [d/*.txt]\n").unwrap();
        assert!(w.changed(), "the main file, and with it the globs");
        std::fs::write(dir.path().join("d/notes.txt"), "y").unwrap();
        assert!(w.changed(), "a file the new glob matches");
    }
}
