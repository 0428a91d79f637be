//! The tracing subscriber: human-readable locally, JSON on Lambda (or with
//! `DESKHAND_LOG_FORMAT=json`). Level from `DESKHAND_LOG` or `RUST_LOG`.
//!
//! Every line passes through [`redact`] on its way out: e-mail addresses,
//! phone numbers and payment-card numbers are replaced, whatever logged
//! them (an error message echoing input, a vendor's error body…). Message
//! text is never logged on purpose; this is the net under that rule.
//!
//! Every line about a ticket carries its `ticket_id` and `conversation_id`
//! (from the span around it: [`record_span`] for a queue record, the
//! pipeline's own inside). Metrics are in [`crate::metrics`].

use std::borrow::Cow;
use std::io::Write;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Installs the global subscriber; call once, first thing.
pub fn init() {
    let filter = std::env::var("DESKHAND_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| {
            "info,tantivy=warn,aws_config=warn,aws_smithy_runtime=warn,hyper=warn".into()
        });
    let json = std::env::var("DESKHAND_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"))
        || std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(Redacting(std::io::stderr));
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}

/// A `MakeWriter` whose writers redact personal data.
pub struct Redacting<M>(pub M);

/// A writer that redacts each chunk (the formatter writes one event per call).
pub struct RedactingWriter<W>(W);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Things that look like personal data but are not, matched first and left
/// alone: UUIDs, timestamps, IP addresses with ports, hex digests.
const KEEP: &str = r"(?P<keep>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)?|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b|\b[0-9a-f]{32,}\b)";
const EMAIL: &str = r"(?P<email>[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})";
/// 13 to 19 digits, optionally in groups separated by a space or dash.
const CARD: &str = r"(?P<card>\b\d(?:[ -]?\d){12,18}\b)";
/// International (+…) or grouped national numbers of 8 to 15 digits.
const PHONE: &str = r"(?P<phone>(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,6}(?:[\s.-]\d{2,6}){1,4}\b|\+\d{8,15}\b|\b\d{10,15}\b)";

static PII: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("{KEEP}|{EMAIL}|{CARD}|{PHONE}")).expect("static regex"));

fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.chars().rev().enumerate() {
        let mut d = c.to_digit(10).unwrap_or(0);
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// `text` with e-mail addresses, payment-card numbers (Luhn-valid) and
/// phone numbers (8 to 15 digits) replaced by `[email]`, `[card]`, `[phone]`.
pub fn redact(text: &str) -> Cow<'_, str> {
    PII.replace_all(text, |c: &Captures<'_>| {
        if let Some(k) = c.name("keep") {
            return k.as_str().to_owned();
        }
        if c.name("email").is_some() {
            return "[email]".to_owned();
        }
        if let Some(card) = c.name("card") {
            let digits: String = card.as_str().chars().filter(char::is_ascii_digit).collect();
            if luhn(&digits) {
                return "[card]".to_owned();
            }
            // Not a card number: a long number still may be a phone.
            return if (8..=15).contains(&digits.len()) {
                "[phone]".to_owned()
            } else {
                card.as_str().to_owned()
            };
        }
        let m = c.get(0).map_or("", |m| m.as_str());
        let digits = m.chars().filter(char::is_ascii_digit).count();
        if (8..=15).contains(&digits) {
            "[phone]".to_owned()
        } else {
            m.to_owned()
        }
    })
}

/// The span around handling one queue record, carrying the ticket and
/// conversation ids of its envelope when they can be read (an unreadable
/// record gets an empty span and is reported as such).
pub fn record_span(body: &str) -> tracing::Span {
    #[derive(serde::Deserialize)]
    struct Ids {
        ticket_id: Option<String>,
        conversation_id: Option<String>,
    }
    let ids = serde_json::from_str::<Ids>(body).ok();
    let (ticket_id, conversation_id) = ids
        .map(|i| (i.ticket_id, i.conversation_id))
        .unwrap_or_default();
    tracing::info_span!(
        "record",
        ticket_id = ticket_id.as_deref().unwrap_or(""),
        conversation_id = conversation_id.as_deref().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_is_replaced() {
        let cases = [
            ("mail ann.lee+billing@Example.co.uk now", "mail [email] now"),
            ("card 4111 1111 1111 1111 ok", "card [card] ok"),
            ("card 4111-1111-1111-1111", "card [card]"),
            ("card 5500005555555559.", "card [card]."),
            ("call +44 20 7946 0958 today", "call [phone] today"),
            ("call (415) 555-2671", "call [phone]"),
            (
                "call 415.555.2671 or +14155552671",
                "call [phone] or [phone]",
            ),
            ("ring 07700 900123", "ring [phone]"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn identifiers_and_numbers_are_kept() {
        let keep = [
            "ticket_id=0197c1a0-0000-7000-8000-0000000000a1",
            "at 2026-11-27T15:13:10.821388469Z",
            "on 127.0.0.1:8080 and 10.0.0.12",
            "latency_ms=1234 attempt=3 tokens=812",
            "digest 3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b",
            "order 12345 of 2026",
            "version 1.13.0",
            "since 2026-11-01",
        ];
        for input in keep {
            assert_eq!(redact(input), input);
        }
        // A long number failing Luhn is not called a card.
        assert_eq!(redact("ref 4111 1111 1111 1112"), "ref 4111 1111 1111 1112");
    }

    #[test]
    fn the_writer_redacts_what_passes_through() {
        let mut out = Vec::new();
        {
            let mut w = RedactingWriter(&mut out);
            w.write_all(b"error: bad address bob@example.com\n")
                .unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "error: bad address [email]\n"
        );
    }
}
