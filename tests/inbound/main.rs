//! Inbound email and helpdesk deliveries: signatures, fixtures, garbage, replays, reply stripping.
//!
//! One test binary per group (each links the whole library once); each
//! file is a module, the shared support trees are declared here.

#[path = "../common/mod.rs"]
mod common;
#[path = "../inbound_support/mod.rs"]
mod inbound_support;

mod email_reply_corpus;
mod inbound;
mod inbound_fixtures;
mod inbound_garbage;
mod inbound_replay;
