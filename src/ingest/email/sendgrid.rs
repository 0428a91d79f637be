//! SendGrid Inbound Parse: `multipart/form-data`, either the raw message
//! (`email` field, the "POST the raw, full MIME message" setting, which
//! deskhand recommends) or SendGrid's parsed fields. Authenticated with
//! HTTP Basic credentials in the destination URL.

use axum::http::HeaderMap;
use serde::Deserialize;

use super::{Email, message_id, message_ids, mime};
use crate::domain::Attachment;
use crate::ingest::form::Form;
use crate::ingest::settings::BasicAuthSettings;
use crate::ingest::{IngestError, verify};

/// Checks the Basic credentials.
pub fn verify(headers: &HeaderMap, settings: &BasicAuthSettings) -> Result<(), IngestError> {
    verify::basic_auth(headers, &settings.username, &settings.password)
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    to: Vec<String>,
}

#[derive(Deserialize)]
struct AttachmentInfo {
    filename: Option<String>,
    #[serde(rename = "type")]
    content_type: Option<String>,
}

/// Parses the form.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Email, IngestError> {
    let form = Form::parse(content_type, body)
        .map_err(|e| IngestError::Malformed(format!("SendGrid Inbound Parse form: {e}")))?;
    let envelope_to: Vec<String> = form
        .get("envelope")
        .and_then(|e| serde_json::from_str::<Envelope>(e).ok())
        .map(|e| e.to)
        .unwrap_or_default();
    if let Some(raw) = form.get("email") {
        let mut email = mime::parse(raw.as_bytes())?;
        email.recipients.extend(envelope_to);
        return Ok(email);
    }
    let from = form.get("from").ok_or_else(|| {
        IngestError::Malformed("SendGrid form has neither `email` (raw MIME) nor `from`".into())
    })?;
    // `headers` is the raw header block of the message.
    let headers: Vec<(String, String)> = form
        .get("headers")
        .map(|block| {
            let mut out: Vec<(String, String)> = Vec::new();
            for line in block.lines() {
                if line.starts_with([' ', '\t']) {
                    if let Some(last) = out.last_mut() {
                        last.1.push(' ');
                        last.1.push_str(line.trim());
                    }
                } else if let Some((k, v)) = line.split_once(':') {
                    out.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
                if out.len() >= 500 {
                    break;
                }
            }
            out
        })
        .unwrap_or_default();
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let info: std::collections::BTreeMap<String, AttachmentInfo> = form
        .get("attachment-info")
        .and_then(|i| serde_json::from_str(i).ok())
        .unwrap_or_default();
    let attachments = form
        .files
        .iter()
        .map(|f| {
            let i = info.get(&f.field);
            Attachment {
                name: i
                    .and_then(|i| i.filename.clone())
                    .unwrap_or_else(|| f.filename.clone()),
                content_type: i
                    .and_then(|i| i.content_type.clone())
                    .unwrap_or_else(|| f.content_type.clone()),
                size: f.size,
            }
        })
        .collect();
    let mut recipients: Vec<String> = form
        .get("to")
        .into_iter()
        .chain(form.get("cc"))
        .flat_map(|v| v.split(','))
        .map(|s| super::address_of(s).to_owned())
        .collect();
    recipients.extend(envelope_to);
    Ok(Email {
        message_id: header("message-id").and_then(message_id),
        in_reply_to: header("in-reply-to").map(message_ids).unwrap_or_default(),
        references: header("references").map(message_ids).unwrap_or_default(),
        from: Some(super::address_of(from).to_owned()),
        from_name: crate::ingest::text::display_name(from).map(str::to_owned),
        recipients,
        subject: form.get("subject").map(str::to_owned),
        text: form.get("text").map(str::to_owned),
        html: form.get("html").map(str::to_owned),
        headers,
        attachments,
        mailbox_hash: None,
    })
}
