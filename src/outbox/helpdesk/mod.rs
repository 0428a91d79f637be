//! Helpdesk replies, notes and escalations through each vendor's REST API.
//!
//! Every adapter turns a record into the vendor's documented request: a
//! public reply, or in shadow mode an internal note; an escalation adds
//! tags, assigns a group (not in shadow mode) and posts an internal note
//! with the reason and the draft. In shadow mode the adapters that can read
//! the ticket back also report what the agent later sent, so the dispatcher
//! can record whether the draft went out unchanged, edited, or not at all.
//!
//! Status codes decide what happens next: 408, 409, 429 and 5xx (and
//! network failures) are retried; other 4xx are permanent (bad
//! credentials, unknown ticket) and escalate `delivery_failed` at once.

pub mod freshdesk;
pub mod front;
pub mod helpscout;
pub mod intercom;
pub mod zendesk;

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{RequestBuilder, Response, StatusCode};

use super::DeliverError;
use crate::domain::{Delivery, OutboundAction, OutboxRecord};

pub use freshdesk::Freshdesk;
pub use front::Front;
pub use helpscout::HelpScout;
pub use intercom::Intercom;
pub use zendesk::Zendesk;

/// What an agent did on the ticket after a shadow note, as the helpdesk
/// tells it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentActivity {
    /// Public replies by agents after the note, oldest first, as text.
    pub replies: Vec<String>,
    /// The ticket is solved or closed.
    pub closed: bool,
}

/// An HTTP client for one vendor.
#[derive(Clone)]
pub(crate) struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub vendor: &'static str,
}

impl Api {
    pub fn new(vendor: &'static str, base: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .user_agent(concat!("deskhand/", env!("CARGO_PKG_VERSION")))
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
            vendor,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path` under the vendor's base URL.
    pub fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    /// Sends `req`; a non-success status becomes the right error.
    pub async fn send(&self, op: &str, req: RequestBuilder) -> Result<Response, DeliverError> {
        let res = req.send().await.map_err(|e| {
            // The URL may carry ids but never credentials; still keep it out.
            DeliverError::Transient(format!("{} {op}: {}", self.vendor, e.without_url()))
        })?;
        let status = res.status();
        if status.is_success() {
            return Ok(res);
        }
        let body: String = res
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        let text = format!("{} {op}: HTTP {status}: {body}", self.vendor);
        Err(if retryable(status) {
            DeliverError::Transient(text)
        } else {
            DeliverError::Permanent(text)
        })
    }

    pub async fn json(
        &self,
        op: &str,
        req: RequestBuilder,
    ) -> Result<serde_json::Value, DeliverError> {
        let res = self.send(op, req).await?;
        if res.status() == StatusCode::NO_CONTENT {
            return Ok(serde_json::Value::Null);
        }
        let bytes = res
            .bytes()
            .await
            .map_err(|e| DeliverError::Transient(format!("{} {op}: {e}", self.vendor)))?;
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            DeliverError::Transient(format!("{} {op}: the answer is not JSON: {e}", self.vendor))
        })
    }
}

/// `[outbound.<section>] key`, which the vendor's API needs.
pub(crate) fn needs<T: Clone>(value: &Option<T>, section: &str, key: &str) -> anyhow::Result<T> {
    value
        .clone()
        .ok_or_else(|| anyhow::anyhow!("[outbound.{section}] needs {key}"))
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::CONFLICT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// The helpdesk's ticket id, percent-safe for a path.
pub(crate) fn ticket_ref(d: &Delivery) -> Result<String, DeliverError> {
    let r = d
        .thread
        .root
        .as_deref()
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| DeliverError::Permanent("the ticket has no helpdesk ticket id".into()))?;
    if r.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(r.to_owned())
    } else {
        Err(DeliverError::Permanent(format!(
            "helpdesk ticket id {:?} has unexpected characters",
            r.chars().take(40).collect::<String>()
        )))
    }
}

/// What a record posts: `(internal note?, plain text, HTML)`.
pub(crate) fn content(d: &Delivery) -> (bool, String, String) {
    match &d.action {
        OutboundAction::Reply {
            mode,
            text,
            sources,
            ..
        } => {
            let (plain, html) = super::email::bodies(text, sources);
            (*mode == crate::domain::DeliveryMode::Note, plain, html)
        }
        OutboundAction::Escalate {
            reason,
            detail,
            draft,
            ..
        } => {
            let mut plain = format!(
                "deskhand handed this ticket to a person: {reason} ({detail}). The customer was not answered by the bot."
            );
            if let Some(d) = draft {
                plain.push_str("\n\nDraft answer (not sent):\n");
                plain.push_str(d);
            }
            let (_, html) = super::email::bodies(&plain, &[]);
            (true, plain, html)
        }
    }
}

/// Whether the record escalates, and if so in shadow mode.
pub(crate) fn escalation(d: &Delivery) -> Option<bool> {
    match &d.action {
        OutboundAction::Escalate { shadow, .. } => Some(*shadow),
        OutboundAction::Reply { .. } => None,
    }
}

/// When the record's note was posted (the review only counts later replies).
pub(crate) fn posted_at(record: &OutboxRecord) -> DateTime<Utc> {
    record.delivered_at.unwrap_or(record.created_at)
}

/// Parses an RFC 3339 time, or Unix seconds (Intercom, Front).
pub(crate) fn time_of(v: &serde_json::Value) -> Option<DateTime<Utc>> {
    match v {
        serde_json::Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        serde_json::Value::Number(n) => {
            let secs = n.as_f64()?;
            DateTime::from_timestamp_millis((secs * 1000.0) as i64)
        }
        _ => None,
    }
}

/// A helpdesk's id field as a string (vendors send numbers or strings).
pub(crate) fn id_of(v: &serde_json::Value) -> Option<String> {
    crate::ingest::helpdesk::id_string(v)
}
