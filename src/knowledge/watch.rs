//! `serve` follows its KB folder: files added, changed or removed are
//! re-indexed one document at a time while it runs, without a restart.
//!
//! Invariants:
//! * The folder is polled (every `retriever.watch_ms`, 2 s by default):
//!   a file counts as changed when its size or modification time does; the
//!   same files [`super::tantivy::kb_files`] reads (hidden ones skipped).
//! * Only what changed is re-indexed ([`TantivyIndex::update`]): a changed
//!   file's passages are replaced, a removed file's deleted; searches go on
//!   meanwhile and see the update at once when it commits.
//! * A failed scan or update (a folder emptied, a file unreadable) is logged
//!   and retried on the next poll; the index keeps what it had. After an
//!   update the index's fingerprint is rewritten, so the next start opens
//!   it rather than rebuilding.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tracing::{info, warn};

use super::markdown;
use super::tantivy::{FINGERPRINT_FILE, TantivyIndex, fingerprint, kb_files};

/// Default poll interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

/// What a file looked like at the last scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
}

/// What one scan changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Documents (re)indexed.
    pub changed: Vec<String>,
    /// Documents removed.
    pub removed: Vec<String>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Follows one KB folder into one index.
pub struct KbWatch {
    kb: PathBuf,
    /// The on-disk index's folder (its fingerprint is kept current).
    index_dir: Option<PathBuf>,
    index: TantivyIndex,
    seen: BTreeMap<String, (PathBuf, Seen)>,
}

fn scan(kb: &Path) -> anyhow::Result<BTreeMap<String, (PathBuf, Seen)>> {
    let mut out = BTreeMap::new();
    for (id, path) in kb_files(kb)? {
        let meta =
            std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        let seen = Seen {
            len: meta.len(),
            modified: meta.modified().ok(),
        };
        out.insert(id, (path, seen));
    }
    Ok(out)
}

impl KbWatch {
    /// Starts from the folder as it is now, which `index` was built from.
    pub fn new(kb: &Path, index_dir: Option<&Path>, index: TantivyIndex) -> anyhow::Result<Self> {
        Ok(Self {
            kb: kb.to_owned(),
            index_dir: index_dir.map(Path::to_owned),
            index,
            seen: scan(kb)?,
        })
    }

    /// Scans once and re-indexes what changed since the last scan.
    pub fn poll(&mut self) -> anyhow::Result<Changes> {
        let now = scan(&self.kb)?;
        let mut changes = Changes::default();
        let mut docs = Vec::new();
        for (id, (path, seen)) in &now {
            if self.seen.get(id).map(|(_, s)| s) != Some(seen) {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                docs.push(markdown::parse(id, &String::from_utf8_lossy(&bytes)));
                changes.changed.push(id.clone());
            }
        }
        for id in self.seen.keys() {
            if !now.contains_key(id) {
                changes.removed.push(id.clone());
            }
        }
        if changes.is_empty() {
            return Ok(changes);
        }
        self.index.update(&changes.removed, &docs)?;
        self.seen = now;
        if let Some(dir) = &self.index_dir {
            let fp = fingerprint(&self.kb)?;
            std::fs::write(dir.join(FINGERPRINT_FILE), fp)
                .with_context(|| format!("writing {}", dir.join(FINGERPRINT_FILE).display()))?;
        }
        Ok(changes)
    }

    /// Polls every `interval` until `stop` turns true.
    pub async fn run(mut self, interval: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            let (back, result) = tokio::task::spawn_blocking(move || {
                let r = self.poll();
                (self, r)
            })
            .await
            .expect("the KB watch task does not panic");
            self = back;
            match result {
                Ok(c) if c.is_empty() => {}
                Ok(c) => info!(
                    message = "Re-indexed changed knowledge-base files.",
                    changed = c.changed.len(),
                    removed = c.removed.len(),
                    passages = self.index.len()
                ),
                Err(error) => warn!(
                    message = "Could not re-index the knowledge base; keeping the index as it is.",
                    error = %format!("{error:#}")
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn changed_added_and_removed_files_are_reindexed_alone() {
        let kb = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("index");
        write(kb.path(), "a.md", "# Alpha\n\nAlpha plans cost ten euros.");
        write(kb.path(), "b.md", "# Beta\n\nBeta plans cost twenty euros.");
        let (index, _) = TantivyIndex::open_or_build(kb.path(), &dir, &mut |_, _| {}).unwrap();
        let mut watch = KbWatch::new(kb.path(), Some(&dir), index.clone()).unwrap();
        assert!(watch.poll().unwrap().is_empty());

        // Same size, new content: the time changes.
        std::thread::sleep(Duration::from_millis(20));
        write(
            kb.path(),
            "a.md",
            "# Alpha\n\nAlpha plans cost nine pounds.",
        );
        write(kb.path(), "c.md", "# Gamma\n\nGamma plans are free.");
        std::fs::remove_file(kb.path().join("b.md")).unwrap();
        std::fs::write(kb.path().join(".hidden.md"), "# Hidden").unwrap();
        let c = watch.poll().unwrap();
        assert_eq!(c.changed, ["a.md", "c.md"]);
        assert_eq!(c.removed, ["b.md"]);
        // The clone `serve` searches sees it.
        assert_eq!(index.len(), 2);
        let hit = &index.search("alpha plans cost", 1).unwrap()[0];
        assert!(hit.text.contains("nine pounds"), "{hit:?}");
        assert!(index.search("beta twenty", 3).unwrap().is_empty());
        assert_eq!(index.search("gamma free", 1).unwrap()[0].doc_id, "c.md");
        // The fingerprint follows: the next start opens, not rebuilds.
        let (_, built) = TantivyIndex::open_or_build(kb.path(), &dir, &mut |_, _| {}).unwrap();
        assert_eq!(built, None);

        // An emptied folder is an error that changes nothing.
        for f in ["a.md", "c.md"] {
            std::fs::remove_file(kb.path().join(f)).unwrap();
        }
        assert!(watch.poll().is_err());
        assert_eq!(index.len(), 2);
    }
}
