//! Postmark inbound webhook: JSON, authenticated by HTTP Basic credentials
//! embedded in the webhook URL (Postmark's documented way to protect
//! inbound webhooks; it sends no signature).

use axum::http::HeaderMap;
use base64::Engine;
use serde::Deserialize;

use super::{Email, message_id, message_ids, mime};
use crate::domain::Attachment;
use crate::ingest::settings::BasicAuthSettings;
use crate::ingest::{IngestError, json_error, verify};

/// Checks the Basic credentials.
pub fn verify(headers: &HeaderMap, settings: &BasicAuthSettings) -> Result<(), IngestError> {
    verify::basic_auth(headers, &settings.username, &settings.password)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Payload {
    from: Option<String>,
    from_name: Option<String>,
    from_full: Option<Mailbox>,
    #[serde(default)]
    to_full: Vec<Mailbox>,
    #[serde(default)]
    cc_full: Vec<Mailbox>,
    original_recipient: Option<String>,
    subject: Option<String>,
    #[serde(rename = "MessageID")]
    message_id: Option<String>,
    mailbox_hash: Option<String>,
    text_body: Option<String>,
    html_body: Option<String>,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    attachments: Vec<PostmarkAttachment>,
    /// Present when "Include raw email content in JSON payload" is on.
    raw_email: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Mailbox {
    email: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Header {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PostmarkAttachment {
    name: Option<String>,
    content_type: Option<String>,
    content_length: Option<u64>,
    content: Option<String>,
}

/// Parses Postmark's inbound JSON.
pub fn parse(body: &[u8]) -> Result<Email, IngestError> {
    let p: Payload =
        serde_json::from_slice(body).map_err(|e| json_error("Postmark inbound", &e))?;
    if let Some(raw) = p.raw_email.as_deref().filter(|r| !r.trim().is_empty()) {
        let mut email = mime::parse(raw.as_bytes())?;
        email.mailbox_hash = p.mailbox_hash.clone();
        return Ok(email);
    }
    if p.from.is_none() && p.from_full.is_none() {
        return Err(IngestError::Malformed(
            "Postmark inbound JSON has neither `From` nor `FromFull`".into(),
        ));
    }
    let headers: Vec<(String, String)> = p
        .headers
        .iter()
        .take(500)
        .map(|h| (h.name.to_ascii_lowercase(), h.value.trim().to_owned()))
        .collect();
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let from_full = p.from_full.as_ref();
    let mut recipients: Vec<String> = p
        .to_full
        .iter()
        .chain(&p.cc_full)
        .filter_map(|m| m.email.clone())
        .collect();
    recipients.extend(p.original_recipient.clone());
    let attachments = p
        .attachments
        .iter()
        .map(|a| Attachment {
            name: a.name.clone().unwrap_or_else(|| "unnamed".into()),
            content_type: a
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
            size: a.content_length.unwrap_or_else(|| {
                a.content
                    .as_deref()
                    .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
                    .map_or(0, |d| d.len() as u64)
            }),
        })
        .collect();
    Ok(Email {
        // Postmark's own MessageID is stable across retries; the mail's
        // Message-ID header (for threading) is in Headers when present.
        message_id: header("message-id").and_then(message_id).or_else(|| {
            p.message_id
                .as_deref()
                .and_then(|id| message_id(&format!("{id}@inbound.postmarkapp.com")))
        }),
        in_reply_to: header("in-reply-to").map(message_ids).unwrap_or_default(),
        references: header("references").map(message_ids).unwrap_or_default(),
        from: from_full.and_then(|f| f.email.clone()).or(p.from),
        from_name: from_full.and_then(|f| f.name.clone()).or(p.from_name),
        recipients,
        subject: p.subject,
        text: p.text_body,
        html: p.html_body,
        headers,
        attachments,
        mailbox_hash: p.mailbox_hash,
        auth: Default::default(),
    })
}
