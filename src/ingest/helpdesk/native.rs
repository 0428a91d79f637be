//! The bodies Zendesk and Freshdesk send on their own, without a body
//! template written by the admin:
//!
//! * **Zendesk event webhooks** (the 2022-11-06 event schema): a webhook
//!   subscribed to `zen:event-type:ticket.comment_added` (the recommended
//!   set-up: no trigger needed) or `…ticket.created` posts
//!   `{"type", "id", "time", "detail": {ticket}, "event": {…}}`. A comment
//!   is the customer's when it is public and its author is not staff (and,
//!   where the requester is named, is the requester). The event `id` is the
//!   delivery's identity. The requester's email is not in the event; replies
//!   go back through the API by ticket id, which needs none.
//! * **Freshdesk's own webhook body** (an automation rule's "Trigger
//!   webhook" with the simple content type): `{"freshdesk_webhook":
//!   {"ticket_id", "ticket_subject", "ticket_description",
//!   "ticket_latest_public_comment", "ticket_requester_email", …}}`, one
//!   field per placeholder chosen. The latest public comment is the message
//!   when present (a reply), else the description (a new ticket).

use serde_json::Value;

use super::{Author, HelpdeskEvent, Parsed, id_string};
use crate::ingest::{Ignored, IngestError};

/// Zendesk event types that carry a customer message.
const ZENDESK_COMMENT: &str = "zen:event-type:ticket.comment_added";
const ZENDESK_CREATED: &str = "zen:event-type:ticket.created";

fn text(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn id(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer).and_then(id_string)
}

/// Whether `v` is a Zendesk event webhook body.
pub fn is_zendesk_event(v: &Value) -> bool {
    v.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("zen:event-type:"))
}

/// Whether `v` is Freshdesk's own webhook body.
pub fn is_freshdesk_webhook(v: &Value) -> bool {
    v.get("freshdesk_webhook").is_some_and(Value::is_object)
}

/// A Zendesk event webhook body.
pub fn zendesk_event(v: &Value) -> Result<Parsed, IngestError> {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    if kind != ZENDESK_COMMENT && kind != ZENDESK_CREATED {
        return Ok(Parsed::Ignored(Ignored::new(
            "unsupported_event",
            format!(
                "Zendesk event {}",
                kind.chars().take(80).collect::<String>()
            ),
        )));
    }
    let ticket_ref = id(v, "/detail/id").ok_or_else(|| {
        IngestError::Malformed("Zendesk event: `detail.id` (the ticket id) is missing".into())
    })?;
    let event_id = id(v, "/id").ok_or_else(|| {
        IngestError::Malformed("Zendesk event: `id` (the event id) is missing".into())
    })?;
    let requester = id(v, "/detail/requester_id");
    let (body, author, author_identity) = if kind == ZENDESK_COMMENT {
        let comment = v.pointer("/event/comment").ok_or_else(|| {
            IngestError::Malformed("Zendesk comment_added event: `event.comment` is missing".into())
        })?;
        if comment.get("is_public").and_then(Value::as_bool) == Some(false) {
            return Ok(Parsed::Ignored(Ignored::new(
                "internal_note",
                "Zendesk private comment",
            )));
        }
        let author_id = id(comment, "/author/id");
        let staff = comment
            .pointer("/author/is_staff")
            .and_then(Value::as_bool)
            .ok_or_else(|| {
                IngestError::Malformed(
                    "Zendesk comment_added event: `event.comment.author.is_staff` is missing, so the author cannot be told"
                        .into(),
                )
            })?;
        let author = match (&author_id, &requester) {
            _ if staff => Author::Agent,
            // Another end user (a CC) is not the customer the bot answers.
            (Some(a), Some(r)) if a != r => Author::Agent,
            _ => Author::Customer,
        };
        (text(comment, "/body"), author, author_id)
    } else {
        (
            text(v, "/detail/description"),
            Author::Customer,
            requester.clone(),
        )
    };
    let body = body.ok_or_else(|| {
        IngestError::Malformed("Zendesk event: the comment or description has no text".into())
    })?;
    Ok(Parsed::Event(Box::new(HelpdeskEvent {
        ticket_ref,
        event_id,
        author,
        author_identity,
        customer_email: None,
        customer_name: None,
        subject: text(v, "/detail/subject"),
        body,
        html: false,
        attachments: Vec::new(),
        // Zendesk signs a timestamp: the replay window already dates it.
        occurred_at: None,
    })))
}

/// Freshdesk's own webhook body; `fallback_event_id` identifies the
/// delivery (it has no event id of its own).
pub fn freshdesk_webhook(
    v: &Value,
    fallback_event_id: impl FnOnce() -> String,
) -> Result<Parsed, IngestError> {
    let w = &v["freshdesk_webhook"];
    let ticket_ref = id(w, "/ticket_id").ok_or_else(|| {
        IngestError::Malformed(
            "Freshdesk webhook: `freshdesk_webhook.ticket_id` is missing: add the {{ticket.id}} placeholder"
                .into(),
        )
    })?;
    let body = text(w, "/ticket_latest_public_comment")
        .or_else(|| text(w, "/ticket_description"))
        .ok_or_else(|| {
            IngestError::Malformed(
                "Freshdesk webhook: neither `ticket_latest_public_comment` nor `ticket_description` has text: add those placeholders"
                    .into(),
            )
        })?;
    let email = text(w, "/ticket_requester_email")
        .or_else(|| text(w, "/ticket_contact_email"))
        .or_else(|| text(w, "/requester_email"));
    let name = text(w, "/ticket_requester_name")
        .or_else(|| text(w, "/ticket_contact_name"))
        .or_else(|| text(w, "/requester_name"));
    Ok(Parsed::Event(Box::new(HelpdeskEvent {
        ticket_ref,
        event_id: fallback_event_id(),
        author: Author::Customer,
        author_identity: email.clone(),
        customer_email: email,
        customer_name: name,
        subject: text(w, "/ticket_subject"),
        // Freshdesk renders descriptions and comments as HTML.
        html: true,
        body,
        attachments: Vec::new(),
        // Freshdesk's body carries no time (and no signature to replay).
        occurred_at: None,
    })))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(parsed: Parsed) -> HelpdeskEvent {
        match parsed {
            Parsed::Event(e) => *e,
            Parsed::Ignored(i) => panic!("ignored: {i:?}"),
        }
    }

    fn comment(is_staff: bool, is_public: bool, author: u64) -> Value {
        json!({
            "account_id": 22129848,
            "detail": {"id": "5158", "subject": "Cannot log in", "requester_id": "901",
                       "status": "OPEN", "created_at": "2026-01-08T10:12:07Z"},
            "event": {"comment": {"id": 9876543210u64, "body": "I still cannot log in.",
                       "is_public": is_public,
                       "author": {"id": author, "is_staff": is_staff, "name": "Ann"}}},
            "id": "d4f5c389-8f4a-4c2e-a1b9-8e4f39c71d52",
            "subject": "zen:ticket:5158",
            "time": "2026-01-08T14:25:30.123456789Z",
            "type": "zen:event-type:ticket.comment_added",
            "zendesk_event_version": "2022-11-06"
        })
    }

    #[test]
    fn zendesk_comment_events_by_author() {
        let v = comment(false, true, 901);
        assert!(is_zendesk_event(&v));
        let e = event(zendesk_event(&v).unwrap());
        assert_eq!(e.ticket_ref, "5158");
        assert_eq!(e.event_id, "d4f5c389-8f4a-4c2e-a1b9-8e4f39c71d52");
        assert_eq!(e.author, Author::Customer);
        assert_eq!(e.body, "I still cannot log in.");
        assert_eq!(e.subject.as_deref(), Some("Cannot log in"));
        assert_eq!(
            event(zendesk_event(&comment(true, true, 77)).unwrap()).author,
            Author::Agent
        );
        // A CC'd end user is not the requester.
        assert_eq!(
            event(zendesk_event(&comment(false, true, 55)).unwrap()).author,
            Author::Agent
        );
        let Parsed::Ignored(i) = zendesk_event(&comment(false, false, 901)).unwrap() else {
            panic!()
        };
        assert_eq!(i.reason, "internal_note");
        let mut no_author = comment(false, true, 901);
        no_author["event"]["comment"]["author"] = json!({"id": 901});
        let err = zendesk_event(&no_author).unwrap_err().to_string();
        assert!(err.contains("is_staff"), "{err}");
    }

    #[test]
    fn zendesk_created_and_other_events() {
        let v = json!({"type": "zen:event-type:ticket.created", "id": "e-1",
                       "detail": {"id": 42, "subject": "Refund", "description": "Where is my refund?",
                                  "requester_id": "901"},
                       "event": {}});
        let e = event(zendesk_event(&v).unwrap());
        assert_eq!(
            (e.ticket_ref.as_str(), e.body.as_str()),
            ("42", "Where is my refund?")
        );
        let v = json!({"type": "zen:event-type:ticket.status_changed", "id": "e-2", "detail": {"id": 42}});
        assert!(matches!(zendesk_event(&v).unwrap(), Parsed::Ignored(_)));
        let v = json!({"type": "zen:event-type:ticket.comment_added", "id": "e-3"});
        assert!(
            zendesk_event(&v)
                .unwrap_err()
                .to_string()
                .contains("detail.id")
        );
    }

    #[test]
    fn freshdesk_native_bodies() {
        let v = json!({"freshdesk_webhook": {
            "ticket_id": 1228307, "ticket_subject": "Refund request",
            "ticket_description": "<div>Where is my refund?</div>",
            "ticket_requester_email": "ann@example.com", "ticket_requester_name": "Ann",
            "ticket_status": "Open", "triggered_event": "{ticket_action:created}"}});
        assert!(is_freshdesk_webhook(&v));
        let e = event(freshdesk_webhook(&v, || "h1".into()).unwrap());
        assert_eq!(e.ticket_ref, "1228307");
        assert_eq!(e.customer_email.as_deref(), Some("ann@example.com"));
        assert!(e.html && e.body.contains("refund"));
        assert_eq!(e.event_id, "h1");
        let mut reply = v.clone();
        reply["freshdesk_webhook"]["ticket_latest_public_comment"] = json!("Any news?");
        assert_eq!(
            event(freshdesk_webhook(&reply, || "h2".into()).unwrap()).body,
            "Any news?"
        );
        let err = freshdesk_webhook(&json!({"freshdesk_webhook": {}}), || "x".into())
            .unwrap_err()
            .to_string();
        assert!(err.contains("ticket_id"), "{err}");
    }
}
