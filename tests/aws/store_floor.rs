//! Both stores pass the contract of the worker's two store steps
//! (`Store::begin`, then the completion): SQLite on a temporary file,
//! DynamoDB on moto server (as `scripts/test` starts it, DynamoDB requests
//! one at a time), each through two handles as two processes.

use crate::common;

use std::sync::Arc;

use common::moto::Moto;
use deskhand::sqlite::Db;
use deskhand::store::SqliteStore;

#[tokio::test]
async fn sqlite_begin_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::new(Db::open(&dir.path().join("t.db")).unwrap());
    common::begin_contract::run_all(Arc::new(store.clone()), Arc::new(store)).await;
}

#[tokio::test]
async fn dynamodb_begin_meets_the_contract() {
    let moto = Moto::connect().await;
    let table = moto.table().await;
    common::begin_contract::run_all(
        Arc::new(moto.store_on(&table)),
        Arc::new(moto.store_on(&table)),
    )
    .await;
}
