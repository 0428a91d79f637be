//! The queue message: a versioned JSON envelope around a [`Ticket`].
//!
//! `{"v":1,"ticket_id":…,"conversation_id":…,"channel":…,"provider":…,
//! "customer":{…},"subject":…,"text":…,"attachments":[…],"thread":{…},
//! "received_at":…,"truncated":false}`. Text too long for the queue's
//! size limit is cut with a visible marker and `truncated: true`.

use serde::{Deserialize, Serialize};

use crate::domain::{Channel, MessageText, Ticket};

/// The envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// Upper bound on text a reader accepts, whatever the queue allowed.
const MAX_TEXT_CHARS: usize = 1 << 20;

/// Why a queued body could not be read. Such a record can never succeed:
/// it goes to the dead-letter queue with an `unparseable` escalation.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON, or not the envelope's shape.
    #[error("queue record is not a deskhand envelope: {0}")]
    Malformed(String),
    /// Written by a newer (or unknown) deskhand.
    #[error("queue record has envelope version {0}; this build reads version {ENVELOPE_VERSION}")]
    Version(u32),
    /// The fields disagree with each other.
    #[error("queue record is inconsistent: {0}")]
    Inconsistent(String),
}

#[derive(Serialize)]
struct Out<'a> {
    v: u32,
    channel: Channel,
    #[serde(flatten)]
    ticket: &'a Ticket,
    truncated: bool,
}

#[derive(Deserialize)]
struct In {
    channel: Channel,
    #[serde(flatten)]
    ticket: Ticket,
}

/// Peeks at the version first so a future envelope gets a clear error.
#[derive(Deserialize)]
struct Version {
    v: u32,
}

/// Serializes `ticket`, cutting its text so the body fits in `max_bytes`.
/// Returns the body and whether the text was cut.
pub fn encode(ticket: &Ticket, max_bytes: usize) -> Result<(String, bool), EnvelopeError> {
    let render = |t: &Ticket, truncated: bool| {
        serde_json::to_string(&Out {
            v: ENVELOPE_VERSION,
            channel: t.channel(),
            ticket: t,
            truncated,
        })
        .map_err(|e| EnvelopeError::Malformed(e.to_string()))
    };
    let body = render(ticket, false)?;
    if body.len() <= max_bytes {
        return Ok((body, false));
    }
    // Binary search the longest text (in characters) that fits; JSON
    // escaping makes the byte size of a cut hard to predict otherwise.
    let text = ticket.text.as_str();
    let (mut lo, mut hi) = (0usize, text.chars().count());
    let mut best = None;
    while lo <= hi {
        let mid = (lo + hi) / 2;
        let mut cut = ticket.clone();
        cut.text = MessageText::truncating(text, mid.max(16))
            .map_err(|e| EnvelopeError::Inconsistent(e.to_string()))?
            .0;
        let body = render(&cut, true)?;
        if body.len() <= max_bytes {
            best = Some(body);
            lo = mid + 1;
        } else if mid == 0 {
            break;
        } else {
            hi = mid - 1;
        }
    }
    best.map(|b| (b, true)).ok_or_else(|| {
        EnvelopeError::Inconsistent(format!(
            "the ticket's other fields alone exceed the queue's {max_bytes}-byte limit"
        ))
    })
}

/// Parses a queued body back into a ticket.
pub fn decode(body: &str) -> Result<Ticket, EnvelopeError> {
    let Version { v } =
        serde_json::from_str(body).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    if v != ENVELOPE_VERSION {
        return Err(EnvelopeError::Version(v));
    }
    let envelope: In =
        serde_json::from_str(body).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    let ticket = envelope.ticket;
    if envelope.channel != ticket.channel() {
        return Err(EnvelopeError::Inconsistent(format!(
            "channel {} does not match provider {}",
            envelope.channel, ticket.provider
        )));
    }
    // Re-check the text: the envelope may come from outside (a redrive, a
    // hand-written test message), not only from our own ingest.
    MessageText::parse(ticket.text.as_str(), MAX_TEXT_CHARS)
        .map_err(|e| EnvelopeError::Inconsistent(e.to_string()))?;
    Ok(ticket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConversationId, Customer, EmailAddress, Provider, Thread, TicketId};

    fn ticket(text: &str) -> Ticket {
        Ticket {
            ticket_id: TicketId::new(),
            conversation_id: ConversationId::random(),
            provider: Provider::Postmark,
            customer: Customer {
                email: EmailAddress::parse("ann@example.com"),
                name: Some("Ann".into()),
                email_auth: None,
                user_id: None,
            },
            subject: Some("Refund".into()),
            text: MessageText::parse(text, usize::MAX).unwrap(),
            attachments: vec![],
            thread: Thread {
                root: Some("<a@b>".into()),
                ..Thread::default()
            },
            brand: None,
            received_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn round_trip() {
        let t = ticket("Where is my refund?");
        let (body, cut) = encode(&t, 262_144).unwrap();
        assert!(!cut);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["v"], 1);
        assert_eq!(v["channel"], "email");
        assert_eq!(v["ticket_id"], t.ticket_id.to_string());
        assert_eq!(decode(&body).unwrap(), t);
        assert!(v.get("brand").is_none(), "no brand, no field");
        // A widget ticket's brand travels with it.
        let mut w = ticket("Where is my refund?");
        w.provider = Provider::Widget;
        w.brand = Some(crate::domain::Brand::parse("acme").unwrap());
        let (body, _) = encode(&w, 262_144).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["brand"], "acme");
        assert_eq!(decode(&body).unwrap(), w);
        // A brand no ingest would accept is refused on the way out too.
        let bad = body.replace("\"brand\":\"acme\"", "\"brand\":\"a b\"");
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn oversized_text_is_cut_to_fit_with_a_marker() {
        // Quotes and non-ASCII make the JSON larger than the text.
        let t = ticket(&"\"é\" ".repeat(50_000));
        let (body, cut) = encode(&t, 10_000).unwrap();
        assert!(cut);
        assert!(body.len() <= 10_000, "{} bytes", body.len());
        let back = decode(&body).unwrap();
        assert!(back.text.as_str().ends_with("[…truncated]"));
        assert!(back.text.as_str().len() > 4_000, "cut far more than needed");
        assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["truncated"] == true);
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        let good = encode(&ticket("hi"), 262_144).unwrap().0;
        let cases = [
            ("", "not a deskhand envelope"),
            ("null", "not a deskhand envelope"),
            ("{\"v\":1}", "not a deskhand envelope"),
            ("\u{0}\u{1}binary", "not a deskhand envelope"),
            (&good.replacen("\"v\":1", "\"v\":2", 1), "version 2"),
            (
                &good.replace("\"channel\":\"email\"", "\"channel\":\"widget\""),
                "does not match",
            ),
            (
                &good.replace("\"provider\":\"postmark\"", "\"provider\":\"pigeon\""),
                "unknown provider",
            ),
            (&good.replace("\"text\":\"hi\"", "\"text\":\"  \""), "empty"),
        ];
        for (body, want) in cases {
            let err = decode(body).unwrap_err().to_string();
            assert!(err.contains(want), "{body:?}: {err}");
        }
    }
}
