//! Intercom webhooks: `X-Hub-Signature: sha1=<hex>`, the HMAC-SHA1 of the
//! raw body under the app's client secret. Topics used:
//! `conversation.user.created` (the conversation's source) and
//! `conversation.user.replied` (its newest part); `conversation.admin.*`
//! and everything else are ignored, `ping` included.
//!
//! The signature covers no timestamp, so a captured notification stays
//! valid forever; its `created_at` (when Intercom created the notification;
//! retries keep it) dates it, and one older than
//! `inbound.max_event_age_hours` is refused as a replay.

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Author, HelpdeskEvent, Parsed, id_string, json_attachments};
use crate::ingest::settings::SigningSecret;
use crate::ingest::{Ignored, IngestError, json_error, verify};

/// Checks `X-Hub-Signature`.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    settings: &SigningSecret,
) -> Result<(), IngestError> {
    let header = verify::required(headers, "x-hub-signature")?;
    let hex = header.strip_prefix("sha1=").ok_or_else(|| {
        IngestError::InvalidSignature("X-Hub-Signature must be `sha1=<hex digest>`".into())
    })?;
    let expected = verify::hmac_sha1(settings.secret.expose().as_bytes(), &[body]);
    verify::hex_matches(&expected, hex, "X-Hub-Signature")
}

/// An epoch-seconds field (a number, or digits in a string).
fn epoch(v: &Value) -> Option<DateTime<Utc>> {
    let secs = v
        .as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))?;
    // 0 is Intercom's "not yet" (`delivered_at: 0`), not 1970.
    (secs > 0)
        .then(|| DateTime::from_timestamp(secs, 0))
        .flatten()
}

fn author(v: &Value) -> Author {
    match v["type"].as_str().unwrap_or("") {
        "user" | "lead" | "contact" => Author::Customer,
        "bot" => Author::Bot,
        _ => Author::Agent,
    }
}

/// Parses a notification event.
pub fn parse(body: &[u8]) -> Result<Parsed, IngestError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| json_error("Intercom notification", &e))?;
    if !v.is_object() {
        return Err(IngestError::Malformed(
            "Intercom notification must be a JSON object".into(),
        ));
    }
    let topic = v["topic"]
        .as_str()
        .ok_or_else(|| IngestError::Malformed("Intercom notification has no `topic`".into()))?;
    let created = match topic {
        "conversation.user.created" => true,
        "conversation.user.replied" => false,
        t if t.starts_with("conversation.admin.") => {
            return Ok(Parsed::Ignored(Ignored::new(
                "agent_author",
                format!("Intercom topic {t}"),
            )));
        }
        t => {
            return Ok(Parsed::Ignored(Ignored::new(
                "unsupported_event",
                format!("Intercom topic {}", t.chars().take(60).collect::<String>()),
            )));
        }
    };
    let item = &v["data"]["item"];
    let conversation = id_string(&item["id"]).ok_or_else(|| {
        IngestError::Malformed(
            "Intercom notification: `data.item.id` (the conversation id) is missing".into(),
        )
    })?;
    let (message, event_id) = if created {
        let source = &item["source"];
        let id = id_string(&source["id"]).map(|i| format!("source:{i}"));
        (source, id)
    } else {
        let parts = item["conversation_parts"]["conversation_parts"]
            .as_array()
            .ok_or_else(|| {
                IngestError::Malformed(
                    "Intercom reply: `data.item.conversation_parts.conversation_parts` is missing"
                        .into(),
                )
            })?;
        let part = parts
            .iter()
            .rev()
            .find(|p| {
                p["part_type"]
                    .as_str()
                    .is_none_or(|t| t == "comment" || t == "open")
            })
            .ok_or_else(|| IngestError::Malformed("Intercom reply has no comment part".into()))?;
        (part, id_string(&part["id"]).map(|i| format!("part:{i}")))
    };
    let event_id = event_id.or_else(|| id_string(&v["id"])).ok_or_else(|| {
        IngestError::Malformed(
            "Intercom notification has no part, source or notification id".into(),
        )
    })?;
    let who = &message["author"];
    let contact = item["contacts"]["contacts"]
        .get(0)
        .cloned()
        .unwrap_or(Value::Null);
    let customer_email = who["email"]
        .as_str()
        .or(contact["email"].as_str())
        .map(str::to_owned);
    Ok(Parsed::Event(Box::new(HelpdeskEvent {
        ticket_ref: conversation,
        event_id,
        author: author(who),
        author_identity: who["email"]
            .as_str()
            .or(who["id"].as_str())
            .map(str::to_owned),
        customer_email: if author(who) == Author::Customer {
            customer_email
        } else {
            None
        },
        customer_name: who["name"].as_str().map(str::to_owned),
        subject: item["title"]
            .as_str()
            .or(item["source"]["subject"].as_str())
            .map(crate::ingest::text::html_to_text),
        body: message["body"].as_str().unwrap_or("").to_owned(),
        html: true,
        attachments: json_attachments(
            message["attachments"].as_array(),
            ["name", "content_type", "filesize"],
        ),
        occurred_at: epoch(&v["created_at"])
            .or_else(|| epoch(&v["first_sent_at"]))
            .or_else(|| epoch(&message["created_at"])),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notification_is_dated_by_its_created_at() {
        let body = br#"{"topic": "conversation.user.created", "created_at": 1709888401,
            "data": {"item": {"id": "1", "source": {"id": "2", "body": "hi", "created_at": 1,
            "author": {"type": "user", "email": "a@x.test"}}}}}"#;
        let Parsed::Event(e) = parse(body).unwrap() else {
            panic!("not an event")
        };
        assert_eq!(e.occurred_at, DateTime::from_timestamp(1_709_888_401, 0));
        let undated = br#"{"topic": "conversation.user.created", "delivered_at": 0,
            "data": {"item": {"id": "1", "source": {"id": "2", "body": "hi",
            "author": {"type": "user"}}}}}"#;
        let Parsed::Event(e) = parse(undated).unwrap() else {
            panic!("not an event")
        };
        assert_eq!(e.occurred_at, None);
    }
}
