//! The `Store` port: conversations, messages and ticket state.
//!
//! The worker is the single writer of conversation content; the API reads
//! (poll) and writes agent actions. Two guarantees live here:
//!
//! * **one reply per ticket**: [`Store::begin`] (or [`Store::claim`]) takes a
//!   lease on the ticket id, and [`Store::complete`] writes the reply, the
//!   outcome and the conversation status in one atomic step, only while the
//!   lease is held;
//! * **the floor**: a ticket costs the store two sequential writes.
//!   [`Store::begin`] claims the ticket, appends its customer message and
//!   reads the conversation's state in one atomic step (one conditional
//!   transaction on DynamoDB, one SQLite transaction), beside the history
//!   read; [`Store::complete`] is the other. Neither reads first.
//! * **no silent escalation loss**: a completion that needs a human records
//!   `notified = false`; the pipeline publishes (beside the completion),
//!   then, once both succeeded, [`Store::mark_notified`]. A redelivery of a
//!   completed-but-unnotified ticket publishes again.
//! * **no lost delivery**: the outbox records a completion owes its channel
//!   (email reply, helpdesk reply, note or escalation) are written in the
//!   same atomic step; the dispatcher delivers them through [`OutboxStore`].
//!   An agent's reply and its outbox record are one step too
//!   ([`Store::set_status`]), routed by the conversation's
//!   [`ReplyRoute`](crate::domain::ReplyRoute), which every claim of a
//!   ticket replaces in the same step as the claim.
//!
//! Beside the store, in the same file or table: the API's shared guards
//! ([`guards`]: single-use inbound tokens, per-conversation rate counts).

pub mod dynamodb;
pub mod guards;
pub mod outbox;
pub mod people;
pub mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    Conversation, ConversationId, ConversationStatus, Message, NewMessage, NewOutbox, Outcome,
    ReasonCode, Ticket, TicketId, Usage,
};

pub use dynamodb::DynamoStore;
pub use dynamodb::guards::DynamoConversationLimiter;
pub use guards::{Admission, ConversationLimiter, ReplayGuard, TokenUse};
pub use outbox::{OutboxClaim, OutboxStore, Settle};
pub use people::PeopleStore;
pub use sqlite::SqliteStore;

/// Proof of holding a ticket's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimToken(pub Uuid);

impl ClaimToken {
    /// A fresh token.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for ClaimToken {
    fn default() -> Self {
        Self::new()
    }
}

/// What the decision needs of a conversation, read where a ticket began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationState {
    /// Its status (`open` for a conversation created by this ticket).
    pub status: ConversationStatus,
    /// Why it was escalated, while it is.
    pub escalation_reason: Option<ReasonCode>,
}

/// A ticket held by [`Store::begin`], its customer message stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Begun {
    /// Present this to `complete`.
    pub token: ClaimToken,
    /// 1 on the first claim.
    pub attempt: u32,
    /// The ticket had been dead-lettered and was sent back (`redrive`).
    pub redriven: bool,
    /// The conversation as the customer message joined it.
    pub state: ConversationState,
}

/// The answer to [`Store::begin`].
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// Claimed, the message appended (or found appended by an earlier
    /// attempt), the conversation's state read.
    Acquired(Begun),
    /// Another worker holds an unexpired lease; nothing was written.
    Busy {
        /// When it expires.
        until: DateTime<Utc>,
    },
    /// Already finished; nothing was written.
    Done(Box<TicketRecord>),
}

/// What a finished ticket recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketRecord {
    /// The ticket.
    pub ticket_id: TicketId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, when it went to a human.
    pub reason: Option<ReasonCode>,
    /// The decision's confidence.
    pub confidence: f32,
    /// Whether the escalation (if any) has been published.
    pub notified: bool,
    /// Model usage.
    pub usage: Usage,
    /// Claims taken (1 unless a worker died or a lease expired).
    pub attempts: u32,
    /// When ingest accepted it.
    pub received_at: DateTime<Utc>,
    /// When it finished.
    pub completed_at: DateTime<Utc>,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The caller holds the lease; `attempt` counts claims of this ticket.
    Acquired {
        /// Present this to `complete`.
        token: ClaimToken,
        /// 1 on the first claim.
        attempt: u32,
        /// The ticket had been dead-lettered and was sent back (`redrive`):
        /// it is being tried again.
        redriven: bool,
    },
    /// Another worker holds an unexpired lease.
    Busy {
        /// When it expires.
        until: DateTime<Utc>,
    },
    /// Already finished; nothing more to do unless it is not yet notified.
    Done(Box<TicketRecord>),
}

/// Everything a finished ticket writes, in one atomic step.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The ticket.
    pub ticket_id: TicketId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// The lease being released; `None` finishes a ticket nobody holds
    /// (no claim yet, or its lease expired or was released). A live lease
    /// is never overridden: its holder's answer wins (`LostClaim`).
    pub token: Option<ClaimToken>,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, if a human is needed.
    pub reason: Option<ReasonCode>,
    /// The decision's confidence.
    pub confidence: f32,
    /// The reply or holding message, if any (at most one per ticket).
    pub message: Option<NewMessage>,
    /// The conversation's new status, if it changes.
    pub status: Option<ConversationStatus>,
    /// Model usage.
    pub usage: Usage,
    /// Whether a human must still be told (`notified = !needs_notification`).
    pub needs_notification: bool,
    /// Deliveries owed to the ticket's channel; one already stored (same
    /// id) is left as it is.
    pub outbox: Vec<NewOutbox>,
}

/// The answer to `complete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    /// Written.
    Written,
    /// The lease was lost (expired and taken, or the ticket was finished by
    /// someone else), or, without a token, another worker holds a live
    /// lease; nothing was written.
    LostClaim,
}

/// A page of messages for the poll endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The conversation's state, if it exists yet.
    pub conversation: Option<Conversation>,
    /// Messages after the cursor, oldest first.
    pub messages: Vec<Message>,
}

/// Store failures, split by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Worth retrying (busy database, throttling, network).
    #[error("store temporarily unavailable: {0}")]
    Transient(String),
    /// The request was wrong (unknown conversation…).
    #[error("{0}")]
    NotFound(String),
    /// A bug or corruption; retrying will not help.
    #[error("store failure: {0:#}")]
    Permanent(#[source] anyhow::Error),
}

/// Storage of conversations, messages and ticket state.
#[async_trait]
pub trait Store: Send + Sync {
    /// Takes (or re-takes, once expired) the lease on a ticket and creates
    /// its conversation on first sight. A dead-lettered ticket can be
    /// claimed again (it was redriven); any other finished one is `Done`.
    async fn claim(&self, ticket: &Ticket, lease: Duration) -> Result<Claim, StoreError>;

    /// Claims `ticket` (as [`Store::claim`]), appends its customer
    /// `message` (as [`Store::append`]: an id already stored is left as it
    /// is) and reads the conversation's state, in one atomic step: either
    /// all of it happened, or nothing did. Busy or finished tickets write
    /// nothing. This default takes three steps (claim, append, read) and
    /// releases the lease if a later one fails; the stores override it with
    /// one.
    async fn begin(
        &self,
        ticket: &Ticket,
        message: NewMessage,
        lease: Duration,
    ) -> Result<Begin, StoreError> {
        let (token, attempt, redriven) = match self.claim(ticket, lease).await? {
            Claim::Acquired {
                token,
                attempt,
                redriven,
            } => (token, attempt, redriven),
            Claim::Busy { until } => return Ok(Begin::Busy { until }),
            Claim::Done(record) => return Ok(Begin::Done(record)),
        };
        let rest = async {
            self.append(ticket.conversation_id, message).await?;
            self.conversation(ticket.conversation_id).await
        }
        .await;
        match rest {
            Ok(conversation) => Ok(Begin::Acquired(Begun {
                token,
                attempt,
                redriven,
                state: conversation.map_or(
                    ConversationState {
                        status: ConversationStatus::Open,
                        escalation_reason: None,
                    },
                    |c| ConversationState {
                        status: c.status,
                        escalation_reason: c.escalation_reason,
                    },
                ),
            })),
            Err(e) => {
                let _ = self.release(ticket.ticket_id, token).await;
                Err(e)
            }
        }
    }

    /// Gives up a lease early (the attempt failed and will be retried), so
    /// the retry need not wait for it to expire. A no-op unless `token`
    /// still holds it.
    async fn release(&self, ticket: TicketId, token: ClaimToken) -> Result<(), StoreError>;

    /// Appends a message; appending the same `id` again returns the stored one.
    async fn append(
        &self,
        conversation: ConversationId,
        message: NewMessage,
    ) -> Result<Message, StoreError>;

    /// A conversation's state.
    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError>;

    /// The last `limit` messages, oldest first.
    async fn history(&self, id: ConversationId, limit: usize) -> Result<Vec<Message>, StoreError>;

    /// Finishes a claimed ticket atomically (see the module docs).
    async fn complete(&self, completion: Completion) -> Result<Completed, StoreError>;

    /// Records that a ticket's escalation was published.
    async fn mark_notified(&self, ticket: TicketId) -> Result<(), StoreError>;

    /// Messages with `seq > after`, oldest first, at most `limit`.
    async fn messages_after(
        &self,
        id: ConversationId,
        after: u64,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// Sets a conversation's status (agent reply, close, hand-back),
    /// optionally appending a message and the outbox records that deliver
    /// it, all in one atomic step. Repeating it with the same message and
    /// record ids writes each once (the status is set again). Fails with
    /// `NotFound` for an unknown conversation.
    async fn set_status(
        &self,
        id: ConversationId,
        status: ConversationStatus,
        reason: Option<ReasonCode>,
        message: Option<NewMessage>,
        outbox: Vec<NewOutbox>,
    ) -> Result<Conversation, StoreError>;

    /// A finished ticket's record.
    async fn ticket(&self, id: TicketId) -> Result<Option<TicketRecord>, StoreError>;

    /// Every ticket finished at or after `since`, oldest first (stats and
    /// cost accounting). A redriven ticket shows once it finishes again.
    async fn tickets_since(&self, since: DateTime<Utc>) -> Result<Vec<TicketRecord>, StoreError>;
}
