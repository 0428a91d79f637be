//! Mailgun routes (`forward("https://…/v1/inbound/email/mailgun")`): a
//! form with the parsed message (or `body-mime` when the URL asks for
//! MIME), signed as Mailgun documents: `signature` is the hex
//! HMAC-SHA256 of `timestamp` + `token` under the HTTP webhook signing key.

use chrono::{DateTime, Utc};

use super::{Email, message_id, message_ids, mime};
use crate::domain::{Attachment, EmailAuth};
use crate::ingest::form::Form;
use crate::ingest::settings::MailgunSettings;
use crate::ingest::{IngestError, verify};

/// Parses the form (multipart or urlencoded).
pub fn form(content_type: &str, body: &[u8]) -> Result<Form, IngestError> {
    Form::parse(content_type, body)
        .map_err(|e| IngestError::Malformed(format!("Mailgun form: {e}")))
}

/// Checks `timestamp`, `token` and `signature`.
pub fn verify(
    form: &Form,
    settings: &MailgunSettings,
    now: DateTime<Utc>,
    window_secs: u64,
) -> Result<(), IngestError> {
    let field = |n: &str| {
        form.get(n)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                IngestError::MissingSignature(format!("the `{n}` form field is missing"))
            })
    };
    let (timestamp, token, signature) = (field("timestamp")?, field("token")?, field("signature")?);
    let expected = verify::hmac_sha256(
        settings.signing_key.expose().as_bytes(),
        &[timestamp.as_bytes(), token.as_bytes()],
    );
    verify::hex_matches(&expected, signature, "the Mailgun signature")?;
    verify::fresh(
        timestamp,
        verify::Unit::Seconds,
        now,
        window_secs,
        "the Mailgun timestamp",
    )?;
    Ok(())
}

/// The email in a verified form.
pub fn parse(form: &Form) -> Result<Email, IngestError> {
    // Mailgun's own checks, sent as fields beside the message (and among
    // its headers).
    let field = |n: &str| {
        form.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    let auth = EmailAuth {
        spf: field("x-mailgun-spf").and_then(super::auth::verdict),
        dkim: field("x-mailgun-dkim-check-result").and_then(super::auth::verdict),
        dmarc: None,
    };
    if let Some(raw) = form.get("body-mime") {
        let mut email = mime::parse(raw.as_bytes())?;
        email
            .recipients
            .extend(form.get("recipient").map(str::to_owned));
        email.auth = auth;
        return Ok(email);
    }
    // `message-headers` is a JSON list of [name, value] pairs.
    let headers: Vec<(String, String)> = match form.get("message-headers") {
        Some(raw) => serde_json::from_str::<Vec<(String, String)>>(raw)
            .map_err(|e| {
                IngestError::Malformed(format!(
                    "Mailgun `message-headers` must be a JSON list of [name, value] pairs: {e}"
                ))
            })?
            .into_iter()
            .take(500)
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        None => Vec::new(),
    };
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .or_else(|| field(n))
    };
    // The `From` header (as a field, or among `message-headers`) is the
    // author; `sender` is only the envelope sender, the last resort.
    let from = header("from").or(form.get("sender")).ok_or_else(|| {
        IngestError::Malformed(
            "Mailgun form has no `from` field, no From in `message-headers`, no `sender` and no `body-mime`".into(),
        )
    })?;
    let recipients = form
        .get("recipient")
        .map(|r| r.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default();
    Ok(Email {
        message_id: header("message-id").and_then(message_id),
        in_reply_to: header("in-reply-to").map(message_ids).unwrap_or_default(),
        references: header("references").map(message_ids).unwrap_or_default(),
        from: Some(super::address_of(from).to_owned()),
        from_name: crate::ingest::text::display_name(from).map(str::to_owned),
        recipients,
        subject: header("subject").map(str::to_owned),
        text: form.get("body-plain").map(str::to_owned),
        html: form.get("body-html").map(str::to_owned),
        headers,
        attachments: form
            .files
            .iter()
            .map(|f| Attachment {
                name: f.filename.clone(),
                content_type: f.content_type.clone(),
                size: f.size,
            })
            .collect(),
        mailbox_hash: None,
        auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_and_subject_come_from_message_headers_when_the_fields_are_absent() {
        let headers = serde_json::json!([
            ["From", "Ann Lee <ann.lee@example.com>"],
            ["Subject", "Where is my order?"],
            ["Message-Id", "<m1@example.com>"]
        ])
        .to_string();
        let body = format!(
            "recipient=support%40mg.acme.test&sender=bounces%2Bx%40mailer.example.com\
             &body-plain=When+will+it+arrive%3F&message-headers={}",
            urlencoding(&headers)
        );
        let form = super::form("application/x-www-form-urlencoded", body.as_bytes()).unwrap();
        let e = parse(&form).unwrap();
        assert_eq!(
            e.from.as_deref(),
            Some("ann.lee@example.com"),
            "not the envelope sender"
        );
        assert_eq!(e.from_name.as_deref(), Some("Ann Lee"));
        assert_eq!(e.subject.as_deref(), Some("Where is my order?"));
    }

    fn urlencoding(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
}
