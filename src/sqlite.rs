//! The one SQLite file of local mode: schema, pragmas and a blocking-call
//! helper. The store and the queue both live in it, so an enqueue, a claim
//! and a reply are each one local transaction and survive `kill -9`.
//!
//! Writes that accept work (a message answered 202, a spent inbound token,
//! an agent's action) go through [`Db::write_durable`]: their commit is
//! synced to disk before it returns, so they also survive an OS crash or a
//! power loss. The others commit `NORMAL` (no sync): an OS crash can undo
//! the last few of them, never an earlier durable one (the WAL is
//! recovered as a prefix), and what they record — claims, replies,
//! deliveries, deletions of processed records — is redone from the work
//! that was accepted.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use anyhow::Context;
use rusqlite::{Connection, ErrorCode, OpenFlags};

/// Bumped when `SCHEMA` changes incompatibly.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
    id                TEXT PRIMARY KEY,
    provider          TEXT NOT NULL,
    status            TEXT NOT NULL,
    escalation_reason TEXT,
    customer          TEXT NOT NULL,
    subject           TEXT,
    thread            TEXT NOT NULL DEFAULT '{}',
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reply_routes (
    conversation_id TEXT PRIMARY KEY,
    route           TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    id              TEXT NOT NULL UNIQUE,
    role            TEXT NOT NULL,
    text            TEXT NOT NULL,
    sources         TEXT NOT NULL,
    ticket_id       TEXT,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tickets (
    ticket_id       TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('claimed', 'done')),
    claim_token     TEXT,
    lease_until     INTEGER,
    attempts        INTEGER NOT NULL,
    outcome         TEXT,
    reason          TEXT,
    confidence      REAL,
    notified        INTEGER,
    usage           TEXT,
    received_at     TEXT NOT NULL,
    completed_at    TEXT
);
CREATE INDEX IF NOT EXISTS tickets_completed ON tickets (completed_at);
CREATE TABLE IF NOT EXISTS outbox (
    id              TEXT PRIMARY KEY,
    ticket_id       TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    provider        TEXT NOT NULL,
    delivery        TEXT NOT NULL,
    state           TEXT NOT NULL
                    CHECK (state IN ('pending', 'delivering', 'reviewing', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at         INTEGER NOT NULL,
    lease_until     INTEGER,
    lease_token     TEXT,
    last_error      TEXT,
    external_id     TEXT,
    delivered_at    TEXT,
    review          TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
CREATE TABLE IF NOT EXISTS queue (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id      TEXT NOT NULL,
    dedup_id      TEXT NOT NULL,
    body          TEXT NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    visible_at    INTEGER NOT NULL,
    receipt       TEXT,
    enqueued_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_group ON queue (group_id, id);
CREATE INDEX IF NOT EXISTS queue_visible ON queue (visible_at);
CREATE TABLE IF NOT EXISTS queue_dedup (
    dedup_id TEXT PRIMARY KEY,
    at       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS seen_tokens (
    key        TEXT PRIMARY KEY,
    digest     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_tokens_expiry ON seen_tokens (expires_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id      TEXT NOT NULL,
    dedup_id      TEXT NOT NULL,
    body          TEXT NOT NULL,
    receive_count INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    enqueued_at   INTEGER NOT NULL,
    dead_at       INTEGER NOT NULL
);
"#;

/// Readers beside the one writer; WAL lets them run while it writes.
const READERS: usize = 4;

/// Why a database call failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Locked or busy past the timeout: retry.
    #[error("database busy: {0}")]
    Busy(rusqlite::Error),
    /// Anything else.
    #[error("database error: {0:#}")]
    Other(anyhow::Error),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DbError::Busy(e),
            _ => DbError::Other(e.into()),
        }
    }
}

impl From<serde_json::Error> for DbError {
    fn from(e: serde_json::Error) -> Self {
        DbError::Other(e.into())
    }
}

impl From<anyhow::Error> for DbError {
    fn from(e: anyhow::Error) -> Self {
        DbError::Other(e)
    }
}

/// A handle on the database file: one writer connection, a few readers.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    durable_writes: AtomicU64,
}

impl Db {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let writer =
            Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        configure(&writer)?;
        writer
            .execute_batch(SCHEMA)
            .context("creating the schema")?;
        writer
            .execute_batch(crate::store::sqlite::people::SCHEMA)
            .context("creating the people tables")?;
        check_version(&writer)?;
        let readers = (0..READERS)
            .map(|_| {
                let c = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&c)?;
                Ok(Mutex::new(c))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                durable_writes: AtomicU64::new(0),
            }),
        })
    }

    /// Runs `f` on the writer connection, off the async runtime.
    pub async fn write<F, R>(&self, f: F) -> Result<R, DbError>
    where
        F: FnOnce(&mut Connection) -> Result<R, DbError> + Send + 'static,
        R: Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // A poisoned lock only means another call panicked mid-way; the
            // transaction it held was rolled back when its guard dropped.
            let mut conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| DbError::Other(anyhow::anyhow!("database task failed: {e}")))?
    }

    /// [`Self::write`] for work being accepted: `f`'s commit is synced to
    /// disk (`synchronous = FULL`, for this call only) before this returns,
    /// and with it every commit before it.
    pub async fn write_durable<F, R>(&self, f: F) -> Result<R, DbError>
    where
        F: FnOnce(&mut Connection) -> Result<R, DbError> + Send + 'static,
        R: Send + 'static,
    {
        self.inner.durable_writes.fetch_add(1, Ordering::Relaxed);
        self.write(move |conn| {
            conn.pragma_update(None, "synchronous", "FULL")?;
            let result = f(conn);
            // Back to NORMAL whatever `f` did (if this fails, or `f`
            // panicked, the writer stays FULL: slower, never less safe).
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            result
        })
        .await
    }

    /// Calls of [`Self::write_durable`] so far (what the durability tests
    /// count).
    pub fn durable_writes(&self) -> u64 {
        self.inner.durable_writes.load(Ordering::Relaxed)
    }

    /// Runs `f` on a reader connection, off the async runtime.
    pub async fn read<F, R>(&self, f: F) -> Result<R, DbError>
    where
        F: FnOnce(&Connection) -> Result<R, DbError> + Send + 'static,
        R: Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let conn = inner.readers[i].lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| DbError::Other(anyhow::anyhow!("database task failed: {e}")))?
    }
}

fn configure(conn: &Connection) -> anyhow::Result<()> {
    // WAL + NORMAL: a commit survives the process being killed (it is in
    // the WAL); an OS crash can lose the last ones unless they were made
    // with `write_durable`, which syncs.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

fn check_version(conn: &Connection) -> anyhow::Result<()> {
    let found: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .ok();
    match found {
        None => {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION.to_string()],
            )?;
        }
        Some(v) if v == SCHEMA_VERSION.to_string() => {}
        Some(v) => anyhow::bail!(
            "the database has schema version {v}; this deskhand expects {SCHEMA_VERSION}"
        ),
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
