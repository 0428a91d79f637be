//! Metrics: CloudWatch EMF lines have the structure the specification
//! requires, and a ticket is counted once, when its completion is written.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use deskhand::domain::{
    ConversationId, Customer, MessageText, Outcome, Provider, ReasonCode, Thread, Ticket, TicketId,
    Usage,
};
use deskhand::metrics::{Finished, MeteredStore, Metrics, emf_failed, emf_finished};
use deskhand::sqlite::Db;
use deskhand::store::{Claim, Completed, Completion, SqliteStore, Store};
use serde_json::Value;

/// The units CloudWatch accepts.
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Checks one EMF document against the specification's rules and returns
/// its metric values by name.
fn check_emf(line: &str) -> Vec<(String, f64)> {
    let doc: Value = serde_json::from_str(line).expect("one JSON object a line");
    let root = doc.as_object().expect("the root is an object");
    let aws = root["_aws"].as_object().expect("_aws is an object");
    let ts = aws["Timestamp"].as_i64().expect("Timestamp is epoch ms");
    assert!((ts - Utc::now().timestamp_millis()).abs() < 60_000);
    let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
    assert!(!directives.is_empty());
    let mut values = Vec::new();
    for d in directives {
        assert_eq!(d["Namespace"], "deskhand");
        let sets = d["Dimensions"]
            .as_array()
            .expect("Dimensions: array of sets");
        assert!(!sets.is_empty());
        for set in sets {
            let keys = set.as_array().expect("a dimension set is an array");
            assert!(keys.len() <= 30);
            for k in keys {
                let k = k.as_str().expect("dimension keys are strings");
                let v = root[k].as_str().unwrap_or_else(|| {
                    panic!("dimension `{k}` must be a string member of the root: {line}")
                });
                // Low cardinality: outcome and reason codes only.
                assert!(["outcome", "reason"].contains(&k), "{k}");
                assert!(!v.is_empty() && v.len() <= 1024);
            }
        }
        let metrics = d["Metrics"].as_array().expect("Metrics");
        assert!(!metrics.is_empty() && metrics.len() <= 100);
        for m in metrics {
            let name = m["Name"].as_str().expect("Name");
            assert!(UNITS.contains(&m["Unit"].as_str().expect("Unit")), "{m}");
            let v = root[name]
                .as_f64()
                .unwrap_or_else(|| panic!("metric `{name}` must be a number on the root: {line}"));
            values.push((name.to_owned(), v));
        }
    }
    values
}

fn finished(outcome: Outcome, reason: Option<ReasonCode>, usage: Usage) -> Finished {
    Finished {
        ticket_id: TicketId::new(),
        conversation_id: ConversationId::random(),
        outcome,
        reason,
        usage,
    }
}

#[test]
fn emf_lines_follow_the_specification() {
    let usage = Usage {
        model_id: Some("us.amazon.nova-lite-v1:0".into()),
        input_tokens: 2_000,
        output_tokens: 100,
        cache_read_tokens: 50,
        calls: 1,
        model_ms: 812,
        ..Usage::default()
    };
    let answered = finished(Outcome::Answered, None, usage.clone());
    let doc = emf_finished(&answered, Utc::now());
    let values = check_emf(&doc.to_string());
    assert_eq!(
        values,
        [
            ("Tickets".to_owned(), 1.0),
            ("ModelLatency".to_owned(), 812.0),
            ("InputTokens".to_owned(), 2000.0),
            ("OutputTokens".to_owned(), 100.0),
            ("CacheReadTokens".to_owned(), 50.0),
        ]
    );
    assert_eq!(doc["outcome"], "answered");
    assert_eq!(doc["ticket_id"], answered.ticket_id.to_string());
    assert_eq!(doc["conversation_id"], answered.conversation_id.to_string());
    assert!(doc.get("reason").is_none());

    let escalated = finished(
        Outcome::Escalated,
        Some(ReasonCode::NoKnowledge),
        Usage::default(),
    );
    let doc = emf_finished(&escalated, Utc::now());
    let values = check_emf(&doc.to_string());
    assert_eq!(
        values,
        [("Tickets".to_owned(), 1.0), ("Escalations".to_owned(), 1.0)]
    );
    assert_eq!(doc["reason"], "no_knowledge");

    let values = check_emf(&emf_failed(None, Utc::now()).to_string());
    assert_eq!(values, [("TicketFailures".to_owned(), 1.0)]);
    let doc = emf_failed(Some(ReasonCode::Unparseable), Utc::now());
    assert_eq!(check_emf(&doc.to_string()).len(), 2);
    assert_eq!(doc["reason"], "unparseable");
}

/// A `Write` the test can read back.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn take(&self) -> Vec<String> {
        let text = String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap();
        text.lines().map(str::to_owned).collect()
    }
}

fn ticket() -> Ticket {
    Ticket {
        ticket_id: TicketId::new(),
        conversation_id: ConversationId::random(),
        provider: Provider::Widget,
        customer: Customer::default(),
        subject: None,
        text: MessageText::parse("Where is my invoice?", 100).unwrap(),
        attachments: vec![],
        thread: Thread::default(),
        brand: None,
        received_at: Utc::now(),
    }
}

#[tokio::test]
async fn a_ticket_is_counted_once_when_its_completion_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::new(Db::open(&dir.path().join("d.db")).unwrap());
    let lines = Lines::default();
    let metrics = Metrics::with_emf_sink(Box::new(lines.clone()));
    let store = MeteredStore::new(Arc::new(sqlite), metrics.clone());

    let t = ticket();
    let Claim::Acquired { token, .. } = store.claim(&t, Duration::from_secs(60)).await.unwrap()
    else {
        panic!("claimed")
    };
    let completion = Completion {
        ticket_id: t.ticket_id,
        conversation_id: t.conversation_id,
        token: Some(token),
        outcome: Outcome::Escalated,
        reason: Some(ReasonCode::LowConfidence),
        confidence: 0.3,
        message: None,
        status: None,
        usage: Usage {
            model_id: Some("amazon.nova-micro-v1:0".into()),
            input_tokens: 1_500,
            output_tokens: 80,
            calls: 1,
            model_ms: 400,
            ..Usage::default()
        },
        needs_notification: true,
        outbox: Vec::new(),
    };
    assert_eq!(
        store.complete(completion.clone()).await.unwrap(),
        Completed::Written
    );
    // A second completion of the same ticket writes nothing and counts nothing.
    assert_eq!(
        store.complete(completion).await.unwrap(),
        Completed::LostClaim
    );
    metrics.failed();

    let lines = lines.take();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let values = check_emf(&lines[0]);
    assert!(values.contains(&("Escalations".to_owned(), 1.0)));
    assert!(values.contains(&("InputTokens".to_owned(), 1500.0)));
    assert_eq!(check_emf(&lines[1]), [("TicketFailures".to_owned(), 1.0)]);

    let text = metrics.render();
    for line in [
        "deskhand_tickets_total{outcome=\"escalated\"} 1",
        "deskhand_escalations_total{reason=\"low_confidence\"} 1",
        "deskhand_ticket_failures_total 1",
        "deskhand_model_calls_total 1",
        "deskhand_model_tokens_total{kind=\"input\"} 1500",
        "deskhand_model_tokens_total{kind=\"output\"} 80",
        "deskhand_model_latency_seconds_count 1",
        "deskhand_model_latency_seconds_sum 0.4",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
}

#[test]
fn settling_a_record_counts_failures_and_unreadable_records() {
    use deskhand::worker::Action;
    let lines = Lines::default();
    let metrics = Metrics::with_emf_sink(Box::new(lines.clone()));
    metrics.settled(&Action::Delete);
    metrics.settled(&Action::RetryAfter(Duration::from_secs(1)));
    metrics.settled(&Action::DeadLetter("processing_failed"));
    metrics.settled(&Action::DeadLetter("unparseable"));
    let lines = lines.take();
    assert_eq!(lines.len(), 3, "a finished ticket is the store's to count");
    assert!(check_emf(&lines[2]).contains(&("Escalations".to_owned(), 1.0)));
    let text = metrics.render();
    for line in [
        "deskhand_ticket_failures_total 3",
        "deskhand_escalations_total{reason=\"unparseable\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
}
