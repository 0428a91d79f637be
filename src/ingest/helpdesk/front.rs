//! Front application webhooks: `X-Front-Signature` is the base64
//! HMAC-SHA256 of `<X-Front-Request-Timestamp>:<raw body>` under the app
//! secret; the timestamp (milliseconds) must be recent. Saving the
//! webhook sends a signed `sync` request carrying `X-Front-Challenge`,
//! which is echoed back. Used: inbound messages (`inbound_received`);
//! outbound messages, comments and other events are ignored.

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Author, HelpdeskEvent, Parsed, id_string, json_attachments};
use crate::ingest::settings::SigningSecret;
use crate::ingest::{Ignored, IngestError, json_error, verify};

/// Checks the signature and the timestamp.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    settings: &SigningSecret,
    now: DateTime<Utc>,
    window_secs: u64,
) -> Result<(), IngestError> {
    let signature = verify::required(headers, "x-front-signature")?;
    let timestamp = verify::required(headers, "x-front-request-timestamp")?;
    let expected = verify::hmac_sha256(
        settings.secret.expose().as_bytes(),
        &[timestamp.as_bytes(), b":", body],
    );
    verify::base64_matches(&expected, signature, "X-Front-Signature")?;
    // Documented in milliseconds; accept seconds too.
    let unit = if timestamp.len() >= 12 {
        verify::Unit::Millis
    } else {
        verify::Unit::Seconds
    };
    verify::fresh(
        timestamp,
        unit,
        now,
        window_secs,
        "X-Front-Request-Timestamp",
    )?;
    Ok(())
}

/// The handshake challenge, if this is one.
pub fn challenge(headers: &HeaderMap) -> Option<String> {
    verify::header(headers, "x-front-challenge").map(|c| c.chars().take(256).collect())
}

/// Parses an application webhook body (`{type, authorization, payload}`)
/// or a bare event.
pub fn parse(body: &[u8]) -> Result<Parsed, IngestError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| json_error("Front webhook", &e))?;
    if !v.is_object() {
        return Err(IngestError::Malformed(
            "Front webhook body must be a JSON object".into(),
        ));
    }
    let event = if v["payload"].is_object() {
        &v["payload"]
    } else {
        &v
    };
    let kind = v["type"].as_str().or(event["type"].as_str()).unwrap_or("");
    match kind {
        "inbound_received" | "inbound" => {}
        "sync" => {
            return Ok(Parsed::Ignored(Ignored::new(
                "validation_request",
                "Front sync",
            )));
        }
        "outbound_sent" | "outbound" | "out_reply" | "outbound_reply" => {
            return Ok(Parsed::Ignored(Ignored::new(
                "agent_author",
                format!("Front event {kind}"),
            )));
        }
        other => {
            return Ok(Parsed::Ignored(Ignored::new(
                "unsupported_event",
                format!("Front event {}", other.chars().take(60).collect::<String>()),
            )));
        }
    }
    let conversation = id_string(&event["conversation"]["id"]).ok_or_else(|| {
        IngestError::Malformed("Front event: `conversation.id` is missing".into())
    })?;
    let message = &event["target"]["data"];
    if !message.is_object() {
        return Err(IngestError::Malformed(
            "Front inbound event: `target.data` (the message) is missing".into(),
        ));
    }
    let message_id = id_string(&message["id"])
        .or_else(|| id_string(&event["id"]))
        .ok_or_else(|| IngestError::Malformed("Front event has no message or event id".into()))?;
    let sender = message["recipients"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["role"].as_str() == Some("from")))
        .cloned()
        .unwrap_or(Value::Null);
    let author = if message["is_inbound"].as_bool() == Some(false) {
        Author::Agent
    } else {
        Author::Customer
    };
    let (body, html) = match (message["text"].as_str(), message["body"].as_str()) {
        (Some(t), _) if !t.trim().is_empty() => (t.to_owned(), false),
        (_, Some(b)) => (b.to_owned(), true),
        _ => (String::new(), false),
    };
    Ok(Parsed::Event(Box::new(HelpdeskEvent {
        ticket_ref: conversation,
        event_id: message_id,
        author,
        author_identity: sender["handle"].as_str().map(str::to_owned),
        customer_email: sender["handle"]
            .as_str()
            .or(event["conversation"]["recipient"]["handle"].as_str())
            .map(str::to_owned),
        customer_name: sender["name"]
            .as_str()
            .or(message["author"]["first_name"].as_str())
            .map(str::to_owned),
        subject: message["subject"]
            .as_str()
            .or(event["conversation"]["subject"].as_str())
            .map(str::to_owned),
        body,
        html,
        attachments: json_attachments(
            message["attachments"].as_array(),
            ["filename", "content_type", "size"],
        ),
        occurred_at: None,
    })))
}
