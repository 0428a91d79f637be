//! The `PeopleStore` port: what people add beside the bot's record of a
//! conversation — the agent it is assigned to, agents' internal notes, the
//! bot's draft kept for the agent, and the customer's feedback on replies.
//!
//! None of it is ever a conversation message: notes and drafts never reach
//! the poll endpoint (the customer cannot see them), and nothing here
//! changes a conversation's status, so the worker's guarantees
//! ([`super::Store`]) are untouched. Every write is idempotent: a note is
//! stored once per id, a draft, an assignment and a rating are replaced
//! (the same request twice leaves the same state).
//!
//! Beside them, per agent, the console's session generation: a session
//! cookie names the generation it was issued in, and signing out moves the
//! agent to the next one, so every cookie issued before (a copied or
//! stolen one too) is refused from then on. The generation is never
//! expired or deleted (were it, revoked cookies would count again).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::domain::{ConversationId, ReasonCode, TicketId};
pub use crate::domain::{FeedbackReason, Rating};

/// Longest agent name kept.
pub const MAX_AGENT_NAME: usize = 100;

/// An agent's internal note on a conversation; never shown to the customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    /// Unique within the conversation; adding the same id again is a no-op.
    pub id: String,
    /// Who wrote it.
    pub agent: String,
    /// Plain text, never rendered as HTML.
    pub text: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// The answer the bot would have given when it escalated, kept for the
/// agent to send as is or edit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    /// The escalated ticket.
    pub ticket_id: TicketId,
    /// The draft text.
    pub text: String,
    /// Why the ticket escalated.
    pub reason: ReasonCode,
    /// The decision's confidence.
    pub confidence: f32,
    /// When it was kept.
    pub created_at: DateTime<Utc>,
}

/// A customer's rating of one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The rated message's id.
    pub message_id: String,
    /// Up or down.
    pub rating: Rating,
    /// Why, for a thumbs-down.
    pub reason: Option<FeedbackReason>,
    /// When it was given (the latest rating of a message wins).
    pub at: DateTime<Utc>,
}

/// A customer's satisfaction with a closed conversation (CSAT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Csat {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// 1 (very unhappy) to 5 (very happy).
    pub score: u8,
    /// When it was given (the latest answer wins).
    pub at: DateTime<Utc>,
}

/// Agents' and customers' additions to conversations.
#[async_trait]
pub trait PeopleStore: Send + Sync {
    /// Keeps `draft` as the conversation's latest bot draft (replacing an
    /// older one).
    async fn keep_draft(&self, id: ConversationId, draft: Draft) -> Result<(), StoreError>;

    /// The conversation's latest bot draft.
    async fn draft(&self, id: ConversationId) -> Result<Option<Draft>, StoreError>;

    /// Adds an internal note; adding a note with a stored id returns the
    /// stored note unchanged.
    async fn add_note(&self, id: ConversationId, note: Note) -> Result<Note, StoreError>;

    /// The conversation's notes, oldest first.
    async fn notes(&self, id: ConversationId) -> Result<Vec<Note>, StoreError>;

    /// Assigns the conversation to `agent`, or unassigns it (`None`).
    async fn assign(&self, id: ConversationId, agent: Option<&str>) -> Result<(), StoreError>;

    /// Who the conversation is assigned to.
    async fn assignee(&self, id: ConversationId) -> Result<Option<String>, StoreError>;

    /// Records a rating of one message, replacing an earlier rating of it.
    async fn rate(&self, feedback: Feedback) -> Result<(), StoreError>;

    /// The conversation's ratings, one per rated message, oldest first.
    async fn ratings(&self, id: ConversationId) -> Result<Vec<Feedback>, StoreError>;

    /// Records the customer's satisfaction score, replacing an earlier one.
    async fn set_csat(&self, csat: Csat) -> Result<(), StoreError>;

    /// The conversation's satisfaction score, if given.
    async fn csat(&self, id: ConversationId) -> Result<Option<Csat>, StoreError>;

    /// `agent`'s console session generation (0 until they first sign out).
    async fn session_generation(&self, agent: &str) -> Result<u64, StoreError>;

    /// Ends every console session of `agent`: moves them to the next
    /// generation and returns it.
    async fn end_sessions(&self, agent: &str) -> Result<u64, StoreError>;
}
