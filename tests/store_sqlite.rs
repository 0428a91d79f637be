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
