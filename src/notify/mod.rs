//! The `Escalator` port: tells humans a ticket needs them.
//!
//! Locally a structured log line plus an optional webhook (Slack-compatible);
//! on AWS an SNS topic. Publishing is at-least-once: the pipeline records
//! `notified` only after [`Escalator::escalate`] returns `Ok`.

pub mod drafts;
mod settings;
pub mod sns;
pub use settings::{EscalationSettings, WebhookFormat};
pub mod webhook;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{
    Channel, ConversationId, Customer, Priority, Provider, ReasonCode, Role, TicketId,
};

pub use drafts::KeepDrafts;
pub use sns::SnsEscalator;
pub use webhook::Webhook;

/// One line of the transcript sent with an escalation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptLine {
    /// Who wrote it.
    pub role: Role,
    /// What they wrote (cut to a few hundred characters).
    pub text: String,
}

/// What a human is told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    /// The ticket.
    pub ticket_id: Option<TicketId>,
    /// Its conversation (absent only for unreadable queue records).
    pub conversation_id: Option<ConversationId>,
    /// Channel and provider it came from.
    pub channel: Option<Channel>,
    /// Provider it came from.
    pub provider: Option<Provider>,
    /// Why.
    pub reason: ReasonCode,
    /// How urgent.
    pub priority: Priority,
    /// The answer's confidence, when one was generated.
    pub confidence: f32,
    /// A short explanation (the rule that fired, the model's words).
    pub detail: String,
    /// The customer.
    pub customer: Customer,
    /// Subject, for email and helpdesk tickets.
    pub subject: Option<String>,
    /// The customer's latest message.
    pub last_message: String,
    /// The last few turns, oldest first.
    pub transcript: Vec<TranscriptLine>,
    /// The answer the bot would have given, if any.
    pub draft: Option<String>,
    /// Where an agent can act on it (API path of the conversation).
    pub link: Option<String>,
    /// When it was raised.
    pub at: DateTime<Utc>,
}

impl Escalation {
    /// A one-line summary for chat and logs (no message text).
    pub fn summary(&self) -> String {
        let conv = self
            .conversation_id
            .map_or_else(|| "unknown conversation".to_owned(), |c| c.to_string());
        let channel = self.channel.map_or("unknown", Channel::as_str);
        format!(
            "deskhand escalation [{}] {} on {channel} ({conv})",
            self.priority, self.reason
        )
    }
}

/// Escalation failures: all worth retrying (the ticket stays unnotified).
#[derive(Debug, thiserror::Error)]
#[error("escalation not delivered: {0}")]
pub struct EscalateError(pub String);

/// Tells humans.
#[async_trait]
pub trait Escalator: Send + Sync {
    /// Publishes `escalation`; `Ok` means a human will see it.
    async fn escalate(&self, escalation: &Escalation) -> Result<(), EscalateError>;
}

/// Writes every escalation as a structured log line (no message text, which
/// may hold personal data), then hands it to the next escalator, if any.
pub struct LogThen {
    next: Option<Box<dyn Escalator>>,
}

impl LogThen {
    /// Log only, or log and forward to `next`.
    pub fn new(next: Option<Box<dyn Escalator>>) -> Self {
        Self { next }
    }
}

#[async_trait]
impl Escalator for LogThen {
    async fn escalate(&self, e: &Escalation) -> Result<(), EscalateError> {
        tracing::warn!(
            message = "Ticket escalated.",
            reason = %e.reason,
            priority = %e.priority,
            confidence = e.confidence,
            ticket_id = e.ticket_id.map(|t| t.to_string()),
            conversation_id = e.conversation_id.map(|c| c.to_string()),
            channel = e.channel.map(Channel::as_str),
        );
        match &self.next {
            Some(next) => next.escalate(e).await,
            None => Ok(()),
        }
    }
}
