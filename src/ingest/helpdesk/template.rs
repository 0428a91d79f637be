//! The JSON body deskhand asks Zendesk triggers, Freshdesk automation
//! rules and generic senders to post (those helpdesks let the admin write
//! the body with placeholders; docs/channels.md gives the templates):
//!
//! ```json
//! {"ticket_id": "…", "event_id": "…", "subject": "…", "text": "…", "html": false,
//!  "requester": {"email": "…", "name": "…"},
//!  "author": {"role": "customer|end-user|agent|admin|bot", "email": "…"}}
//! ```
//!
//! When `author.role` is absent, the author is the customer exactly when
//! `author.email` equals the requester's (a comment by anyone else, an
//! agent or a CC, is not answered).

use serde::Deserialize;
use serde_json::Value;

use super::{Author, HelpdeskEvent, Parsed, id_string, native};
use crate::domain::Attachment;
use crate::ingest::{Ignored, IngestError, json_error};

#[derive(Deserialize)]
struct Payload {
    ticket_id: Value,
    #[serde(default)]
    event_id: Option<Value>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    html: bool,
    #[serde(default)]
    requester: Option<Person>,
    #[serde(default)]
    author: Option<Person>,
    #[serde(default)]
    attachments: Vec<TemplateAttachment>,
}

#[derive(Deserialize)]
struct Person {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role: Option<String>,
}

#[derive(Deserialize)]
struct TemplateAttachment {
    name: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

fn blank(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(|v| v.trim().is_empty())
}

/// Parses the body: a Zendesk event webhook or Freshdesk's own body
/// ([`super::native`]), else the template; `fallback_event_id` (a delivery
/// header, or a hash of the body) is used when the body has no event id.
pub fn parse(
    body: &[u8],
    vendor: &str,
    fallback_event_id: impl FnOnce() -> String,
) -> Result<Parsed, IngestError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| json_error(vendor, &e))?;
    if native::is_zendesk_event(&value) {
        return native::zendesk_event(&value);
    }
    if native::is_freshdesk_webhook(&value) {
        return native::freshdesk_webhook(&value, fallback_event_id);
    }
    let p: Payload = serde_json::from_value(value).map_err(|e| {
        IngestError::Malformed(format!(
            "{vendor}: the body is none of the shapes deskhand reads: a Zendesk event webhook \
             (`\"type\": \"zen:event-type:…\"`), Freshdesk's `{{\"freshdesk_webhook\": {{…}}}}`, \
             or the template `{{\"ticket_id\", \"text\", \"requester\", \"author\", …}}` \
             ({e}); see docs/channels.md"
        ))
    })?;
    let ticket_ref = id_string(&p.ticket_id).ok_or_else(|| {
        IngestError::Malformed(format!(
            "{vendor}: `ticket_id` must be a non-empty string or number"
        ))
    })?;
    if let Some(event) = p.event.as_deref().map(str::trim)
        && matches!(event, "agent_replied" | "note_added" | "status_changed")
    {
        return Ok(Parsed::Ignored(Ignored::new(
            "unsupported_event",
            format!("{vendor} event {event}"),
        )));
    }
    if blank(&p.text) && p.attachments.is_empty() {
        return Err(IngestError::Malformed(format!(
            "{vendor}: `text` is missing or empty"
        )));
    }
    let requester_email = p
        .requester
        .as_ref()
        .and_then(|r| r.email.clone())
        .filter(|e| !e.trim().is_empty());
    let author_email = p
        .author
        .as_ref()
        .and_then(|a| a.email.clone())
        .filter(|e| !e.trim().is_empty());
    let role = p
        .author
        .as_ref()
        .and_then(|a| a.role.clone())
        .map(|r| r.trim().to_ascii_lowercase());
    let author = match role.as_deref() {
        Some(
            "customer" | "end-user" | "end_user" | "enduser" | "requester" | "contact" | "user",
        ) => Author::Customer,
        Some("agent" | "admin" | "administrator" | "staff") => Author::Agent,
        Some("bot" | "system" | "automation" | "trigger") => Author::Bot,
        Some(other) if !other.is_empty() => {
            return Err(IngestError::Malformed(format!(
                "{vendor}: `author.role` {:?} is not one of customer, end-user, agent, admin, bot",
                other.chars().take(30).collect::<String>()
            )));
        }
        _ => match (&author_email, &requester_email) {
            (Some(a), Some(r)) if !a.trim().eq_ignore_ascii_case(r.trim()) => Author::Agent,
            _ => Author::Customer,
        },
    };
    let event_id = p
        .event_id
        .as_ref()
        .and_then(id_string)
        .unwrap_or_else(fallback_event_id);
    Ok(Parsed::Event(Box::new(HelpdeskEvent {
        ticket_ref,
        event_id,
        author,
        author_identity: author_email,
        customer_email: requester_email,
        customer_name: p.requester.and_then(|r| r.name),
        subject: p.subject,
        body: p.text.unwrap_or_default(),
        html: p.html,
        attachments: p
            .attachments
            .into_iter()
            .map(|a| Attachment {
                name: a.name,
                content_type: a
                    .content_type
                    .unwrap_or_else(|| "application/octet-stream".into()),
                size: a.size.unwrap_or(0),
            })
            .collect(),
        occurred_at: None,
    })))
}

/// Zendesk: `X-Zendesk-Webhook-Signature` is
/// `base64(HMAC-SHA256(secret, X-Zendesk-Webhook-Signature-Timestamp + body))`.
pub mod zendesk {
    use axum::http::HeaderMap;
    use chrono::{DateTime, Utc};

    use crate::ingest::settings::SigningSecret;
    use crate::ingest::{IngestError, verify};

    /// Checks the signature and the timestamp.
    pub fn verify(
        headers: &HeaderMap,
        body: &[u8],
        settings: &SigningSecret,
        now: DateTime<Utc>,
        window_secs: u64,
    ) -> Result<(), IngestError> {
        let signature = verify::required(headers, "x-zendesk-webhook-signature")?;
        let timestamp = verify::required(headers, "x-zendesk-webhook-signature-timestamp")?;
        let expected = verify::hmac_sha256(
            settings.secret.expose().as_bytes(),
            &[timestamp.as_bytes(), body],
        );
        verify::base64_matches(&expected, signature, "X-Zendesk-Webhook-Signature")?;
        // An ISO 8601 instant (`2024-01-01T00:00:00Z`); Unix seconds accepted.
        match DateTime::parse_from_rfc3339(timestamp) {
            Ok(at) => verify::within(
                at.with_timezone(&Utc),
                now,
                window_secs,
                "the Zendesk signature timestamp",
            ),
            Err(_) => verify::fresh(
                timestamp,
                verify::Unit::Seconds,
                now,
                window_secs,
                "the Zendesk signature timestamp",
            )
            .map(|_| ()),
        }
    }
}

/// Freshdesk: no signature scheme; the automation rule sends a secret in a
/// custom header, compared in constant time.
pub mod freshdesk {
    use axum::http::HeaderMap;

    use crate::ingest::settings::FreshdeskSettings;
    use crate::ingest::{IngestError, verify};

    /// Checks the shared-secret header.
    pub fn verify(headers: &HeaderMap, settings: &FreshdeskSettings) -> Result<(), IngestError> {
        let given = verify::required(headers, &settings.header.to_ascii_lowercase())?;
        if verify::equal(given.as_bytes(), settings.secret.expose().as_bytes()) {
            Ok(())
        } else {
            Err(IngestError::InvalidSignature(format!(
                "the `{}` header is wrong",
                settings.header
            )))
        }
    }
}

/// Generic (and raw MIME): `X-Deskhand-Signature: sha256=<hex>`, the
/// HMAC-SHA256 of `X-Deskhand-Timestamp` (Unix seconds) immediately
/// followed by the raw body, under the shared secret.
pub mod generic {
    use axum::http::HeaderMap;
    use chrono::{DateTime, Utc};

    use crate::ingest::{IngestError, verify};
    use crate::secret::Secret;

    /// The signature header.
    pub const SIGNATURE: &str = "x-deskhand-signature";
    /// The timestamp header.
    pub const TIMESTAMP: &str = "x-deskhand-timestamp";

    /// The header value for `body` at `timestamp` (senders and tests).
    pub fn sign(secret: &Secret, timestamp: &str, body: &[u8]) -> String {
        format!(
            "sha256={}",
            hex::encode(verify::hmac_sha256(
                secret.expose().as_bytes(),
                &[timestamp.as_bytes(), body]
            ))
        )
    }

    /// Checks the signature and the timestamp.
    pub fn verify(
        headers: &HeaderMap,
        body: &[u8],
        secret: &Secret,
        now: DateTime<Utc>,
        window_secs: u64,
    ) -> Result<(), IngestError> {
        let signature = verify::required(headers, SIGNATURE)?;
        let timestamp = verify::required(headers, TIMESTAMP)?;
        let hex = signature.strip_prefix("sha256=").ok_or_else(|| {
            IngestError::InvalidSignature(
                "X-Deskhand-Signature must be `sha256=<hex digest>`".into(),
            )
        })?;
        let expected =
            verify::hmac_sha256(secret.expose().as_bytes(), &[timestamp.as_bytes(), body]);
        verify::hex_matches(&expected, hex, "X-Deskhand-Signature")?;
        verify::fresh(
            timestamp,
            verify::Unit::Seconds,
            now,
            window_secs,
            "X-Deskhand-Timestamp",
        )?;
        Ok(())
    }
}
