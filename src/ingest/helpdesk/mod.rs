//! Helpdesk webhooks: each vendor's event becomes a [`HelpdeskEvent`]
//! (or a reason to ignore it); [`normalize`] turns it into a ticket whose
//! conversation is the helpdesk's ticket id. Events written by agents or
//! by deskhand itself are ignored, so deskhand never answers itself.

pub mod front;
pub mod helpscout;
pub mod intercom;
pub mod native;
pub mod template;

use chrono::{DateTime, Utc};

use super::text::{html_to_text, strip_reply, tidy};
use super::{Context, Ignored, IngestError, Normalized};
use crate::domain::{
    Attachment, ConversationId, Customer, EmailAddress, MessageText, Provider, Thread, Ticket,
    TicketId,
};

/// Who wrote an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Author {
    /// The customer (end user, lead, requester).
    Customer,
    /// A person on the support team.
    Agent,
    /// An automation or bot.
    Bot,
}

/// A customer-visible message from a helpdesk, before normalization.
#[derive(Debug, Clone, PartialEq)]
pub struct HelpdeskEvent {
    /// The helpdesk's ticket (conversation) id.
    pub ticket_ref: String,
    /// What identifies this delivery (comment, part, thread or event id).
    pub event_id: String,
    /// Who wrote it.
    pub author: Author,
    /// The author's email or helpdesk user id, for the own-identity check.
    pub author_identity: Option<String>,
    /// The customer.
    pub customer_email: Option<String>,
    /// The customer's name.
    pub customer_name: Option<String>,
    /// Ticket subject.
    pub subject: Option<String>,
    /// The message.
    pub body: String,
    /// Whether `body` is HTML.
    pub html: bool,
    /// Attachments, listed.
    pub attachments: Vec<Attachment>,
    /// When the vendor created the event, from a payload whose signature
    /// covers no timestamp (Intercom, Help Scout); older than
    /// `inbound.max_event_age_hours` is refused as a replay.
    pub occurred_at: Option<DateTime<Utc>>,
}

/// What a vendor payload holds.
#[derive(Debug)]
pub enum Parsed {
    /// A message.
    Event(Box<HelpdeskEvent>),
    /// Nothing to answer.
    Ignored(Ignored),
}

/// A string or number field as a non-empty string (vendors send ids as
/// either).
pub fn id_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => {
            Some(s.trim().chars().take(200).collect())
        }
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The attachments a vendor lists as JSON objects, read through the names
/// it gives the file name, content type and size: listed, never fetched.
pub fn json_attachments(
    list: Option<&Vec<serde_json::Value>>,
    [name, content_type, size]: [&str; 3],
) -> Vec<Attachment> {
    list.into_iter()
        .flatten()
        .take(50)
        .map(|a| Attachment {
            name: a[name].as_str().unwrap_or("unnamed").to_owned(),
            content_type: a[content_type]
                .as_str()
                .unwrap_or("application/octet-stream")
                .to_owned(),
            size: a[size].as_u64().unwrap_or(0),
        })
        .collect()
}

/// Turns an event into a ticket, or says why it is dropped.
pub fn normalize(
    provider: Provider,
    event: HelpdeskEvent,
    ctx: &Context<'_>,
) -> Result<Normalized, IngestError> {
    if let Some(at) = event.occurred_at {
        let max = ctx.settings.max_event_age_hours;
        let age = (ctx.now - at).num_seconds();
        if age > i64::try_from(max.saturating_mul(3600)).unwrap_or(i64::MAX) {
            return Err(IngestError::StaleTimestamp(format!(
                "the {provider} event was created {} h ago; events older than \
                 inbound.max_event_age_hours ({max} h) are refused as replays",
                age / 3600
            )));
        }
    }
    match event.author {
        Author::Agent => {
            return Ok(Normalized::Ignored(Ignored::new(
                "agent_author",
                "written by an agent",
            )));
        }
        Author::Bot => {
            return Ok(Normalized::Ignored(Ignored::new(
                "bot_author",
                "written by a bot or automation",
            )));
        }
        Author::Customer => {}
    }
    if let Some(who) = &event.author_identity
        && ctx
            .settings
            .own_identities
            .iter()
            .any(|o| o.trim().eq_ignore_ascii_case(who.trim()))
    {
        return Ok(Normalized::Ignored(Ignored::new(
            "own_message",
            "written by deskhand's own identity",
        )));
    }
    let full = if event.html {
        html_to_text(&event.body)
    } else {
        tidy(&event.body)
    };
    let mut text = strip_reply(&full, None);
    if text.is_empty() {
        text = full;
    }
    if text.trim().is_empty() {
        if event.attachments.is_empty() {
            return Ok(Normalized::Ignored(Ignored::new(
                "empty_message",
                "no text and no attachments",
            )));
        }
        let names: Vec<&str> = event.attachments.iter().map(|a| a.name.as_str()).collect();
        text = format!("(No message text; attachments: {})", names.join(", "));
    }
    let (text, _) = MessageText::truncating(&text, ctx.max_text_chars)
        .map_err(|e| IngestError::Malformed(e.to_string()))?;
    let ticket_id = TicketId::derive(&format!("{provider}:{}", event.ticket_ref), &event.event_id);
    Ok(Normalized::Accepted(Box::new(Ticket {
        ticket_id,
        conversation_id: ConversationId::derive(provider, &event.ticket_ref),
        provider,
        customer: Customer {
            email: event
                .customer_email
                .as_deref()
                .and_then(EmailAddress::parse),
            name: event
                .customer_name
                .map(|n| {
                    n.chars()
                        .filter(|c| !c.is_control())
                        .take(100)
                        .collect::<String>()
                })
                .filter(|n| !n.trim().is_empty()),
            email_auth: None,
            user_id: None,
        },
        subject: event
            .subject
            .map(|s| {
                s.chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .take(300)
                    .collect::<String>()
            })
            .filter(|s| !s.trim().is_empty()),
        text,
        attachments: event.attachments.into_iter().take(50).collect(),
        thread: Thread {
            root: Some(event.ticket_ref),
            ..Thread::default()
        },
        brand: None,
        received_at: ctx.now,
    })))
}
