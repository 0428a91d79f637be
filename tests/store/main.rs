//! The store contract on SQLite, local adapters and faults.
//!
//! One test binary per group (each links the whole library once); each
//! file is a module, the shared support trees are declared here.

#[path = "../common/mod.rs"]
mod common;

mod adapters_local;
mod local_faults;
mod people_store;
mod store_sqlite;
