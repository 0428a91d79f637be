//! The SQLite store passes the store contract.

mod common;

use std::sync::Arc;

use deskhand::sqlite::Db;
use deskhand::store::SqliteStore;

#[tokio::test]
async fn sqlite_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::new(Db::open(&dir.path().join("t.db")).unwrap());
    common::store_contract::run_all(Arc::new(store), true).await;
}

#[tokio::test]
async fn sqlite_store_meets_the_outbox_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::new(Db::open(&dir.path().join("t.db")).unwrap());
    common::store_contract::outbox_lifecycle(&store, &store).await;
}

#[tokio::test]
async fn sqlite_replay_guard_meets_the_contract_and_survives_a_reopen() {
    use deskhand::store::{ReplayGuard, TokenUse};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::new(Db::open(&path).unwrap());
    common::store_contract::replay_guard_contract(&store).await;
    common::store_contract::replay_guard_is_atomic(Arc::new(store.clone())).await;
    let until = chrono::Utc::now() + chrono::Duration::minutes(6);
    assert_eq!(
        store
            .use_token("mailgun", "kept", [1; 32], until)
            .await
            .unwrap(),
        TokenUse::First
    );
    drop(store);
    let reopened = SqliteStore::new(Db::open(&path).unwrap());
    assert_eq!(
        reopened
            .use_token("mailgun", "kept", [2; 32], until)
            .await
            .unwrap(),
        TokenUse::Reused
    );
}

#[tokio::test]
async fn the_in_memory_conversation_limiter_meets_the_contract() {
    let limiter = deskhand::api::ratelimit::MemoryLimiter::new(3).unwrap();
    common::store_contract::conversation_limiter_contract(&limiter, 3).await;
}

/// Finding 12: the connection every write goes through (queue sends and
/// their dedup, claims, replies) syncs each commit to disk (`FULL`), so a
/// message answered 202 survives an OS crash or power loss. (A crash test
/// is not possible here; this checks the setting in force.)
#[tokio::test]
async fn the_accepting_connection_syncs_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("t.db")).unwrap();
    let (journal, sync): (String, i64) = db
        .write(|c| {
            Ok((
                c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
                c.query_row("PRAGMA synchronous", [], |r| r.get(0))?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    assert_eq!(sync, 2, "synchronous is not FULL (2) on the writer");
    // The queue and the store write through that same connection.
    let queue = deskhand::queue::SqliteQueue::new(db.clone(), 256 * 1024);
    let t = common::store_contract::ticket(deskhand::domain::ConversationId::random(), "hi");
    deskhand::queue::Queue::send(&queue, &t).await.unwrap();
    let sync: i64 = db
        .write(|c| Ok(c.query_row("PRAGMA synchronous", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(sync, 2);
}

/// What `FULL` costs: accepted messages (queue sends, each its own
/// transaction) per second with `FULL` and with `NORMAL`, on this disk.
/// A measurement, not a check: `cargo test --test store_sqlite -- --ignored
/// --nocapture measure_full_sync_cost` (DESKHAND_MEASURE_DIR picks the disk).
#[tokio::test]
#[ignore]
async fn measure_full_sync_cost() {
    let base = std::env::var_os("DESKHAND_MEASURE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    let n = 500;
    for mode in ["FULL", "NORMAL", "FULL", "NORMAL"] {
        let db = Db::open(
            &dir.path()
                .join(format!("{mode}-{}.db", uuid::Uuid::new_v4())),
        )
        .unwrap();
        db.write(move |c| Ok(c.pragma_update(None, "synchronous", mode)?))
            .await
            .unwrap();
        let queue = deskhand::queue::SqliteQueue::new(db.clone(), 256 * 1024);
        let tickets: Vec<_> = (0..n)
            .map(|_| {
                common::store_contract::ticket(deskhand::domain::ConversationId::random(), "hi")
            })
            .collect();
        let started = std::time::Instant::now();
        for t in &tickets {
            deskhand::queue::Queue::send(&queue, t).await.unwrap();
        }
        let took = started.elapsed();
        println!(
            "synchronous={mode}: {n} sends in {:.1} ms: {:.3} ms per send, {:.0} sends/s",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e3 / f64::from(n),
            f64::from(n) / took.as_secs_f64()
        );
    }
}
