//! The SQLite store passes the store contract.

use crate::common;

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
    common::store_contract::agent_reply_route_and_outbox(&store, &store).await;
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

/// Finding 12: writes that accept work — queue sends (a message answered
/// 202, with its dedup record), spent inbound tokens, agents' actions —
/// commit with `synchronous = FULL`, so they survive an OS crash or power
/// loss; the pipeline's own writes stay `NORMAL`. (A crash test is not
/// possible here; this checks the setting in force and who uses it.)
#[tokio::test]
async fn writes_that_accept_work_sync_their_commit() {
    use deskhand::domain::{ConversationId, ConversationStatus};
    use deskhand::store::{ReplayGuard, Store};
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("t.db")).unwrap();
    let pragma =
        |c: &mut rusqlite::Connection| -> Result<(String, i64), deskhand::sqlite::DbError> {
            Ok((
                c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
                c.query_row("PRAGMA synchronous", [], |r| r.get(0))?,
            ))
        };
    assert_eq!(
        db.write_durable(pragma).await.unwrap(),
        ("wal".to_owned(), 2),
        "a durable write is not synchronous = FULL (2)"
    );
    assert_eq!(
        db.write(pragma).await.unwrap(),
        ("wal".to_owned(), 1),
        "FULL leaked past the durable write"
    );
    let queue = deskhand::queue::SqliteQueue::new(db.clone(), 256 * 1024);
    let store = SqliteStore::new(db.clone());
    let t = common::store_contract::ticket(ConversationId::random(), "hi");
    let before = db.durable_writes();
    deskhand::queue::Queue::send(&queue, &t).await.unwrap();
    assert_eq!(
        db.durable_writes(),
        before + 1,
        "a queue send was not durable"
    );
    let until = chrono::Utc::now() + chrono::Duration::minutes(6);
    store
        .use_token("mailgun", "t", [0; 32], until)
        .await
        .unwrap();
    assert_eq!(
        db.durable_writes(),
        before + 2,
        "a spent token was not durable"
    );
    store
        .claim(&t, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(db.durable_writes(), before + 2, "a claim paid for a sync");
    store
        .set_status(
            t.conversation_id,
            ConversationStatus::Closed,
            None,
            None,
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        db.durable_writes(),
        before + 3,
        "an agent's action was not durable"
    );
}

/// What `FULL` costs on this disk: a one-row transaction committed
/// `NORMAL` and `FULL`, and a real queue send (durable, as ingest makes
/// it). A measurement, not a check: `cargo test --test store store_sqlite:: --
/// --ignored --nocapture measure_full_sync_cost` (DESKHAND_MEASURE_DIR
/// picks the disk).
#[tokio::test]
#[ignore]
async fn measure_full_sync_cost() {
    let base = std::env::var_os("DESKHAND_MEASURE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    let db = Db::open(&dir.path().join("m.db")).unwrap();
    db.write(|c| Ok(c.execute_batch("CREATE TABLE m (x INTEGER)")?))
        .await
        .unwrap();
    let queue = deskhand::queue::SqliteQueue::new(db.clone(), 256 * 1024);
    let n = 300u32;
    let report = |what: &str, took: std::time::Duration| {
        println!(
            "{what}: {:.3} ms per commit, {:.0} commits/s",
            took.as_secs_f64() * 1e3 / f64::from(n),
            f64::from(n) / took.as_secs_f64()
        )
    };
    for _ in 0..2 {
        let started = std::time::Instant::now();
        for i in 0..n {
            db.write(move |c| Ok(c.execute("INSERT INTO m VALUES (?1)", [i])?))
                .await
                .unwrap();
        }
        report("one-row transaction, NORMAL", started.elapsed());
        let started = std::time::Instant::now();
        for i in 0..n {
            db.write_durable(move |c| Ok(c.execute("INSERT INTO m VALUES (?1)", [i])?))
                .await
                .unwrap();
        }
        report("one-row transaction, FULL", started.elapsed());
        let tickets: Vec<_> = (0..n)
            .map(|_| {
                common::store_contract::ticket(deskhand::domain::ConversationId::random(), "hi")
            })
            .collect();
        let started = std::time::Instant::now();
        for t in &tickets {
            deskhand::queue::Queue::send(&queue, t).await.unwrap();
        }
        report("queue send (durable)", started.elapsed());
    }
}
