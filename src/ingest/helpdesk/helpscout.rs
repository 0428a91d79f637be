//! Help Scout webhooks: `X-HelpScout-Signature` is the base64 HMAC-SHA1
//! of the raw body under the webhook's secret key; `X-HelpScout-Event`
//! names the event. Used: `convo.created` and
//! `convo.customer.reply.created` (the newest customer thread); agent
//! replies, notes and the rest are ignored.
//!
//! The signature covers no timestamp, so a captured delivery stays valid
//! forever; the customer thread's `createdAt` dates it, and one older than
//! `inbound.max_event_age_hours` is refused as a replay.

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Author, HelpdeskEvent, Parsed, id_string, json_attachments};
use crate::ingest::settings::SigningSecret;
use crate::ingest::{Ignored, IngestError, json_error, verify};

/// Checks `X-HelpScout-Signature`.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    settings: &SigningSecret,
) -> Result<(), IngestError> {
    let signature = verify::required(headers, "x-helpscout-signature")?;
    let expected = verify::hmac_sha1(settings.secret.expose().as_bytes(), &[body]);
    verify::base64_matches(&expected, signature, "X-HelpScout-Signature")
}

/// An ISO 8601 instant field.
fn instant(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn name(person: &Value) -> Option<String> {
    let full = [person["first"].as_str(), person["last"].as_str()]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    (!full.is_empty()).then_some(full)
}

/// Parses a conversation payload for `event` (the X-HelpScout-Event value).
pub fn parse(event: Option<&str>, body: &[u8]) -> Result<Parsed, IngestError> {
    let event = event
        .ok_or_else(|| IngestError::Malformed("the X-HelpScout-Event header is missing".into()))?;
    match event {
        "convo.created" | "convo.customer.reply.created" => {}
        "convo.agent.reply.created" | "convo.note.created" => {
            return Ok(Parsed::Ignored(Ignored::new(
                "agent_author",
                format!("Help Scout event {event}"),
            )));
        }
        other => {
            return Ok(Parsed::Ignored(Ignored::new(
                "unsupported_event",
                format!(
                    "Help Scout event {}",
                    other.chars().take(60).collect::<String>()
                ),
            )));
        }
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| json_error("Help Scout conversation", &e))?;
    let conversation = id_string(&v["id"])
        .ok_or_else(|| IngestError::Malformed("Help Scout conversation: `id` is missing".into()))?;
    let threads = v["_embedded"]["threads"]
        .as_array()
        .or(v["threads"].as_array())
        .ok_or_else(|| {
            IngestError::Malformed("Help Scout conversation: `_embedded.threads` is missing".into())
        })?;
    // Newest customer thread (threads come newest first; sort to be sure).
    let thread = threads
        .iter()
        .filter(|t| t["type"].as_str() == Some("customer"))
        .max_by(|a, b| {
            a["createdAt"]
                .as_str()
                .unwrap_or("")
                .cmp(b["createdAt"].as_str().unwrap_or(""))
                .then(a["id"].as_u64().cmp(&b["id"].as_u64()))
        });
    let Some(thread) = thread else {
        return Ok(Parsed::Ignored(Ignored::new(
            "agent_author",
            "no customer thread in the conversation",
        )));
    };
    let thread_id = id_string(&thread["id"])
        .ok_or_else(|| IngestError::Malformed("Help Scout thread: `id` is missing".into()))?;
    // The thread's type decides: a `customer` thread is the customer's
    // words even when a user (an agent logging an email or a call) created
    // it, so `createdBy` names the author only when it is the customer.
    let by = &thread["createdBy"];
    let by = if by["type"].as_str() == Some("user") {
        &Value::Null
    } else {
        by
    };
    let author = Author::Customer;
    let customer = if v["primaryCustomer"].is_object() {
        &v["primaryCustomer"]
    } else {
        &v["customer"]
    };
    Ok(Parsed::Event(Box::new(HelpdeskEvent {
        ticket_ref: conversation,
        event_id: thread_id,
        author,
        author_identity: by["email"].as_str().map(str::to_owned),
        customer_email: customer["email"]
            .as_str()
            .or(by["email"].as_str())
            .map(str::to_owned),
        customer_name: name(customer).or_else(|| name(by)),
        subject: v["subject"].as_str().map(str::to_owned),
        body: thread["body"].as_str().unwrap_or("").to_owned(),
        html: true,
        attachments: json_attachments(
            thread["_embedded"]["attachments"]
                .as_array()
                .or(thread["attachments"].as_array()),
            ["filename", "mimeType", "size"],
        ),
        occurred_at: instant(&thread["createdAt"]).or_else(|| instant(&v["createdAt"])),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_thread_logged_by_an_agent_is_the_customers() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/inbound/helpscout/customer-reply.json"
        );
        let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        // An agent logged the customer's phone call as a customer thread.
        v["_embedded"]["threads"][0]["createdBy"] = serde_json::json!(
            {"id": 12, "type": "user", "first": "Sam", "last": "Agent", "email": "sam@acme.test"}
        );
        let Parsed::Event(e) = parse(
            Some("convo.customer.reply.created"),
            v.to_string().as_bytes(),
        )
        .unwrap() else {
            panic!("the thread type decides: a customer thread is answered")
        };
        assert_eq!(e.author, Author::Customer);
        assert_eq!(e.customer_email.as_deref(), Some("ann.lee@example.com"));
        assert_eq!(e.customer_name.as_deref(), Some("Ann Lee"));
        assert_eq!(e.author_identity, None, "not the agent's identity");
    }

    #[test]
    fn the_delivery_is_dated_by_its_newest_customer_thread() {
        let body = br#"{"id": 5, "createdAt": "2024-03-08T08:00:00Z", "_embedded": {"threads": [
            {"id": 2, "type": "customer", "body": "b", "createdAt": "2024-03-08T10:05:00Z", "createdBy": {"type": "customer"}},
            {"id": 1, "type": "customer", "body": "a", "createdAt": "2024-03-08T09:00:00Z", "createdBy": {"type": "customer"}}]}}"#;
        let Parsed::Event(e) = parse(Some("convo.customer.reply.created"), body).unwrap() else {
            panic!("not an event")
        };
        assert_eq!(
            e.occurred_at,
            Some("2024-03-08T10:05:00Z".parse::<DateTime<Utc>>().unwrap())
        );
    }
}
