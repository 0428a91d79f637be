//! The real binaries' logs: no payload, no secret.
//!
//! One test binary per group (each links the whole library once); each
//! file is a module, the shared support trees are declared here.

#[path = "../actions_support/mod.rs"]
mod actions_support;
#[path = "../common/mod.rs"]
mod common;

mod actions_logs;
mod logs;
