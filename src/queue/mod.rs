//! The `Queue` port and the versioned envelope every queue carries.
//!
//! Ingest only sends. Consumption differs by runtime: on AWS the Lambda
//! event source delivers SQS records to [`crate::worker`]; locally the
//! `serve` worker tasks receive from [`SqliteQueue`]. Both give the worker
//! the same thing: an envelope body and its receive count.

mod envelope;
mod settings;
pub mod sqlite;
pub mod sqs;
pub use settings::QueueSettings;

use async_trait::async_trait;

use crate::domain::Ticket;

pub use envelope::{ENVELOPE_VERSION, EnvelopeError, decode, encode};
pub use sqlite::{Received, SqliteQueue};
pub use sqs::SqsQueue;

/// Queue failures, split by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Worth retrying: the client should get a 503 and try again.
    #[error("queue temporarily unavailable: {0}")]
    Transient(String),
    /// Retrying will not help.
    #[error("queue failure: {0:#}")]
    Permanent(#[source] anyhow::Error),
}

/// Where ingest puts accepted tickets.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Enqueues a ticket, grouped by conversation (FIFO within it) and
    /// de-duplicated by ticket id. Once this returns `Ok` the ticket is
    /// durable: ingest may answer 202.
    async fn send(&self, ticket: &Ticket) -> Result<(), QueueError>;

    /// Moves every dead-lettered record back to the source queue; returns
    /// how many moved (or, where the move is asynchronous, were asked to).
    async fn redrive(&self) -> Result<u64, QueueError>;
}
