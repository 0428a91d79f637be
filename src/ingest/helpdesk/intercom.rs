//! Intercom webhooks: `X-Hub-Signature: sha1=<hex>`, the HMAC-SHA1 of the
//! raw body under the app's client secret. Topics used:
//! `conversation.user.created` (the conversation's source) and
//! `conversation.user.replied` (its newest part); `conversation.admin.*`
//! and everything else are ignored, `ping` included.
//!
//! Both payload generations are read: API 2.x (`source`, `contacts`) and
//! the 1.x shape older apps still receive (`conversation_message`, `user`).
//! The author's `type` decides who wrote; a payload without one is a 400
//! saying so, never a silent ignore.
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

fn author(v: &Value) -> Result<Author, IngestError> {
    match v["type"].as_str().map(str::trim) {
        Some("user" | "lead" | "contact") => Ok(Author::Customer),
        Some("admin" | "team") => Ok(Author::Agent),
        Some("bot") => Ok(Author::Bot),
        Some(other) if !other.is_empty() => Err(IngestError::Malformed(format!(
            "Intercom: author type {:?} is not one of user, lead, contact, admin, team, bot",
            other.chars().take(30).collect::<String>()
        ))),
        _ => Err(IngestError::Malformed(
            "Intercom: the message's `author.type` is missing, so who wrote it cannot be told"
                .into(),
        )),
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
        // 2.x: `source`; 1.x: `conversation_message`.
        let source = if item["source"].is_object() {
            &item["source"]
        } else {
            &item["conversation_message"]
        };
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
    let by = author(who)?;
    // 2.x: `contacts.contacts[0]`; 1.x: `user`.
    let contact = item["contacts"]["contacts"]
        .get(0)
        .or(item.get("user"))
        .cloned()
        .unwrap_or(Value::Null);
    let customer_email = who["email"]
        .as_str()
        .or(contact["email"].as_str())
        .map(str::to_owned);
    Ok(Parsed::Event(Box::new(HelpdeskEvent {
        ticket_ref: conversation,
        event_id,
        author: by,
        author_identity: who["email"]
            .as_str()
            .or(who["id"].as_str())
            .map(str::to_owned),
        customer_email: if by == Author::Customer {
            customer_email
        } else {
            None
        },
        customer_name: who["name"].as_str().map(str::to_owned),
        subject: item["title"]
            .as_str()
            .or(item["source"]["subject"].as_str())
            .or(item["conversation_message"]["subject"].as_str())
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

    fn fixture(name: &str) -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/inbound/intercom/");
        std::fs::read(format!("{path}{name}")).unwrap()
    }

    #[test]
    fn api_1x_conversations_are_the_customers() {
        let Parsed::Event(e) = parse(&fixture("v1-user-created.json")).unwrap() else {
            panic!("a 1.x conversation.user.created is a ticket, not ignored")
        };
        assert_eq!(e.author, Author::Customer);
        assert_eq!(e.ticket_ref, "147");
        assert_eq!(e.event_id, "source:2001");
        assert_eq!(e.customer_email.as_deref(), Some("ann.lee@example.com"));
        assert!(e.body.contains("two-factor"));
    }

    #[test]
    fn an_author_that_cannot_be_told_is_an_error_not_an_ignore() {
        let mut v: Value = serde_json::from_slice(&fixture("v1-user-created.json")).unwrap();
        v["data"]["item"]["conversation_message"]["author"] = serde_json::json!({"id": "x"});
        let err = parse(v.to_string().as_bytes()).unwrap_err().to_string();
        assert!(err.contains("author.type"), "{err}");
        v["data"]["item"]["conversation_message"]["author"]["type"] = "robot".into();
        assert!(parse(v.to_string().as_bytes()).is_err());
        v["data"]["item"]["conversation_message"]["author"]["type"] = "admin".into();
        let Parsed::Event(e) = parse(v.to_string().as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(e.author, Author::Agent);
    }

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
