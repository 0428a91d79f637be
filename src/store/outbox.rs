//! The `OutboxStore` port: the dispatcher's view of outbox records.
//!
//! A record is created by [`super::Store::complete`] with the reply it
//! delivers. The dispatcher claims it (a lease, like a ticket's), sends,
//! and settles it while still holding the lease:
//!
//! ```text
//! pending ──claim──► delivering ──sent──► delivered
//!    ▲                   │   └──sent (shadow note)──► reviewing ──reviewed──► delivered
//!    └──── retry at ─────┤                               ▲   │
//!                        └──budget spent──► failed       └───┘ review later
//! ```
//!
//! A dispatcher that dies after sending but before settling leaves the
//! record `delivering`; once its lease expires the record is claimed again
//! (at-least-once delivery). Every claim of a `pending`/`delivering`
//! record counts as an attempt, so a record whose sends keep crashing still
//! reaches its retry budget.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ClaimToken, StoreError};
use crate::domain::{OutboxRecord, ShadowReview};

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxClaim {
    /// The caller holds the lease: deliver (or review) and settle.
    Acquired {
        /// Present this to `settle_outbox`.
        token: ClaimToken,
        /// The record, `attempts` already counting this claim.
        record: Box<OutboxRecord>,
    },
    /// Not due before this instant.
    NotDue(DateTime<Utc>),
    /// Another dispatcher holds the lease until this instant.
    Busy(DateTime<Utc>),
    /// Delivered or failed: nothing to do.
    Finished(Box<OutboxRecord>),
    /// No such record.
    Missing,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Sent. A shadow note is then reviewed from `review_at` on.
    Delivered {
        /// The channel's id of what was created.
        external_id: Option<String>,
        /// When to first look at what the agent did (shadow notes only).
        review_at: Option<DateTime<Utc>>,
    },
    /// Failed in a way that may pass: try again at `at`.
    Retry {
        /// What failed.
        error: String,
        /// The next attempt.
        at: DateTime<Utc>,
    },
    /// Given up (retry budget spent or a permanent failure); a person has
    /// been told.
    Failed {
        /// What failed.
        error: String,
    },
    /// The shadow draft's fate is known.
    Reviewed(ShadowReview),
    /// The helpdesk does not tell yet: look again at `at`.
    ReviewLater {
        /// The next look.
        at: DateTime<Utc>,
    },
}

/// Storage of outbox records for the dispatcher.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Takes the lease on record `id` if it is due (see the module docs).
    async fn claim_outbox(&self, id: &str, lease: Duration) -> Result<OutboxClaim, StoreError>;

    /// Settles an attempt; `false` (nothing written) if `token` no longer
    /// holds the lease.
    async fn settle_outbox(
        &self,
        id: &str,
        token: ClaimToken,
        settle: Settle,
    ) -> Result<bool, StoreError>;

    /// Ids of records due now (pending or reviewing and due, or delivering
    /// with an expired lease), the most overdue first, at most `limit`.
    async fn due_outbox(&self, limit: usize) -> Result<Vec<String>, StoreError>;

    /// One record.
    async fn outbox_record(&self, id: &str) -> Result<Option<OutboxRecord>, StoreError>;
}
