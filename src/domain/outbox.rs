//! Outbound deliveries: what a finished ticket owes its channel (an email
//! reply, a helpdesk reply or internal note, a helpdesk escalation), written
//! in the same atomic step as the reply and delivered later by the
//! dispatcher, at least once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ConversationId, Customer, Provider, ReasonCode, Source, Thread, TicketId, named_enum};

named_enum!(
    /// Where an outbox record is in its life.
    OutboxState, "outbox state" {
        /// Waiting for its next attempt (`next_attempt_at`).
        Pending = "pending",
        /// A dispatcher holds its lease and is sending it.
        Delivering = "delivering",
        /// Delivered as a shadow-mode note; waiting to see what the agent
        /// did with the draft.
        Reviewing = "reviewing",
        /// Delivered (and reviewed, for a shadow note).
        Delivered = "delivered",
        /// Given up after the retry budget; a person was told (`delivery_failed`).
        Failed = "failed",
    }
);

named_enum!(
    /// How a helpdesk reply is posted.
    DeliveryMode, "delivery mode" {
        /// A public reply the customer receives.
        Public = "public",
        /// An internal note for an agent to review (shadow mode).
        Note = "note",
    }
);

named_enum!(
    /// What an agent did with a shadow-mode draft, as the helpdesk tells.
    ShadowOutcome, "shadow outcome" {
        /// Sent it as written.
        Unchanged = "unchanged",
        /// Sent an edited version of it.
        Edited = "edited",
        /// Answered differently, or closed the ticket without using it.
        Discarded = "discarded",
        /// Nobody answered within the review window.
        NoReply = "no_reply",
    }
);

/// What to do on the ticket's channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum OutboundAction {
    /// Send this text: the bot's answer, or the holding message of an
    /// escalated email ticket.
    Reply {
        /// Public reply or internal note (helpdesks; email is always public).
        mode: DeliveryMode,
        /// Plain text.
        text: String,
        /// Cited passages, listed as links.
        #[serde(default)]
        sources: Vec<Source>,
        /// A person wrote it (an agent's reply): email sends it without the
        /// `Auto-Submitted` marking of the bot's answers.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        by_agent: bool,
    },
    /// Tell the helpdesk a person is needed: tag, assign, and an internal
    /// note with the reason (and the draft, if the bot had one).
    Escalate {
        /// Why.
        reason: ReasonCode,
        /// The rule or model's explanation.
        detail: String,
        /// The answer the bot would have given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        draft: Option<String>,
        /// Shadow mode: note and tags only, no reassignment.
        #[serde(default)]
        shadow: bool,
    },
}

/// Everything the dispatcher needs, without reading the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The ticket that produced it.
    pub ticket_id: TicketId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// The channel's provider (the email provider, or the helpdesk).
    pub provider: Provider,
    /// The customer (reply address).
    #[serde(default)]
    pub customer: Customer,
    /// Subject of the ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Threading: the helpdesk ticket id, or the email's ids.
    #[serde(default)]
    pub thread: Thread,
    /// What to do.
    pub action: OutboundAction,
}

/// A record to create with a ticket's completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewOutbox {
    /// Unique and derived from the ticket (`<ticket>.reply`,
    /// `<ticket>.escalate`…), so a retried completion creates it once.
    pub id: String,
    /// What to deliver.
    pub delivery: Delivery,
}

impl NewOutbox {
    /// The record delivering a conversation message (answer or notice);
    /// it shares the message's id.
    pub fn message(message_id: &str, delivery: Delivery) -> Self {
        Self {
            id: message_id.to_owned(),
            delivery,
        }
    }

    /// The record telling a helpdesk about an escalation of `ticket`.
    pub fn escalation(ticket: TicketId, delivery: Delivery) -> Self {
        Self {
            id: format!("{ticket}.escalate"),
            delivery,
        }
    }
}

/// What became of a shadow-mode draft.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowReview {
    /// Unchanged, edited, discarded, or no reply.
    pub outcome: ShadowOutcome,
    /// Word-level similarity of the agent's reply to the draft (0..=1; 0
    /// when there was no reply).
    pub similarity: f32,
    /// When this was decided.
    pub at: DateTime<Utc>,
}

/// A stored outbox record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// Its id.
    pub id: String,
    /// What to deliver.
    pub delivery: Delivery,
    /// Where it is.
    pub state: OutboxState,
    /// Delivery attempts started (claims in `pending`/`delivering`).
    pub attempts: u32,
    /// When it may be tried (or reviewed) next.
    pub next_attempt_at: DateTime<Utc>,
    /// The last failure, for the log and the escalation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The channel's id of what was created (comment, note, message id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// When it was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// Shadow mode: what the agent did with the draft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ShadowReview>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl OutboxRecord {
    /// A record as created from `new`, due now.
    pub fn new(new: NewOutbox, now: DateTime<Utc>) -> Self {
        Self {
            id: new.id,
            delivery: new.delivery,
            state: OutboxState::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            external_id: None,
            delivered_at: None,
            review: None,
            created_at: now,
        }
    }

    /// Whether this delivers a shadow-mode draft (reviewed afterwards).
    pub fn is_shadow_draft(&self) -> bool {
        matches!(
            self.delivery.action,
            OutboundAction::Reply {
                mode: DeliveryMode::Note,
                ..
            }
        )
    }
}
