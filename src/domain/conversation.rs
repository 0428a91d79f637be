//! Conversations and the messages in them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ConversationId, Customer, Provider, ReasonCode, Thread, Ticket, TicketId, named_enum};

named_enum!(
    /// Who wrote a message.
    Role, "role" {
        Customer = "customer",
        /// deskhand's own answer.
        Assistant = "assistant",
        /// A human agent.
        Agent = "agent",
        /// Notices such as the escalation holding message.
        System = "system",
    }
);

named_enum!(
    /// Whether the bot may answer in a conversation.
    ConversationStatus, "conversation status" {
        /// The bot answers.
        Open = "open",
        /// A human owns it; the bot stays silent.
        Escalated = "escalated",
        /// Finished; a new customer message reopens it.
        Closed = "closed",
    }
);

/// A knowledge-base passage cited by a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Document id: the path relative to the KB root, or the KB's URI.
    pub doc_id: String,
    /// Human-readable title.
    pub title: String,
    /// A link for the customer, when the document has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A message to be appended; the store gives it its place in the order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    /// Unique id; appending the same id twice stores it once.
    pub id: String,
    /// Who wrote it.
    pub role: Role,
    /// The text, never rendered as HTML by clients.
    pub text: String,
    /// Citations (assistant messages).
    #[serde(default)]
    pub sources: Vec<Source>,
    /// The ticket it belongs to, if any.
    #[serde(default)]
    pub ticket_id: Option<TicketId>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

impl NewMessage {
    /// The customer message of a ticket; its id is the ticket id.
    pub fn customer(ticket_id: TicketId, text: &str, at: DateTime<Utc>) -> Self {
        Self {
            id: ticket_id.to_string(),
            role: Role::Customer,
            text: text.to_owned(),
            sources: Vec::new(),
            ticket_id: Some(ticket_id),
            created_at: at,
        }
    }

    /// The message a ticket produced (answer or holding notice); one per
    /// ticket, so its id is derived from the ticket id.
    pub fn reply_to(ticket_id: TicketId, role: Role, text: &str, sources: Vec<Source>) -> Self {
        Self {
            id: format!("{ticket_id}.reply"),
            role,
            text: text.to_owned(),
            sources,
            ticket_id: Some(ticket_id),
            created_at: Utc::now(),
        }
    }

    /// The holding notice of a ticket that failed; its own id, so an
    /// answer after a redrive is still stored beside it.
    pub fn failure_notice(ticket_id: TicketId, text: &str) -> Self {
        Self {
            id: format!("{ticket_id}.failed"),
            ..Self::reply_to(ticket_id, Role::System, text, Vec::new())
        }
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Position in the conversation, strictly increasing; the poll cursor.
    pub seq: u64,
    /// The message.
    #[serde(flatten)]
    pub body: NewMessage,
}

/// A conversation's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Its id.
    pub id: ConversationId,
    /// Who delivered its first ticket.
    pub provider: Provider,
    /// Open, escalated or closed.
    pub status: ConversationStatus,
    /// Why it was escalated, while it is.
    pub escalation_reason: Option<ReasonCode>,
    /// The customer, from its first ticket.
    pub customer: Customer,
    /// Subject of its first ticket.
    pub subject: Option<String>,
    /// Where a reply to the customer goes: the channel details of the
    /// latest ticket begun in it (`None` before any, or in data written
    /// before deskhand kept it).
    pub reply_route: Option<ReplyRoute>,
    /// When its first ticket was claimed.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// What a reply written outside the pipeline (an agent's) needs to reach
/// the customer on their channel: the provider, reply address, subject and
/// threading ids of the conversation's latest inbound ticket. The store
/// replaces it each time a ticket of the conversation begins, so a reply
/// answers the customer's newest message in its own thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyRoute {
    /// The ticket it was taken from.
    pub ticket_id: TicketId,
    /// Who delivered it.
    pub provider: Provider,
    /// Its customer (the reply address).
    #[serde(default)]
    pub customer: Customer,
    /// Its subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Its threading ids (helpdesk ticket id, email Message-ID and
    /// References).
    #[serde(default)]
    pub thread: Thread,
}

impl ReplyRoute {
    /// The route back to `ticket`'s customer.
    pub fn of(ticket: &Ticket) -> Self {
        Self {
            ticket_id: ticket.ticket_id,
            provider: ticket.provider,
            customer: ticket.customer.clone(),
            subject: ticket.subject.clone(),
            thread: ticket.thread.clone(),
        }
    }
}
