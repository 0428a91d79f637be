//! Ticket metrics, counted once per finished ticket and per failed attempt.
//!
//! * Locally, a Prometheus registry served at `GET /metrics` (OpenMetrics
//!   text, behind the admin key): `deskhand_tickets_total{outcome}`,
//!   `deskhand_escalations_total{reason}`, `deskhand_ticket_failures_total`,
//!   `deskhand_model_calls_total`, `deskhand_model_tokens_total{kind}` and
//!   the histogram `deskhand_model_latency_seconds`.
//! * On Lambda, one CloudWatch Embedded Metric Format line per finished
//!   ticket (and per failed attempt) on stdout, namespace `deskhand`:
//!   `Tickets` by `outcome`, `Escalations` by `reason`, and, without
//!   dimensions, `ModelLatency`, `InputTokens`, `OutputTokens`, the cache
//!   token counts when nonzero, and `TicketFailures`. The ticket and
//!   conversation ids ride along as plain properties (searchable in Logs
//!   Insights, never dimensions: each distinct dimension value is a custom
//!   metric, billed monthly).
//!
//! A ticket is counted where it is written: [`MeteredStore`] wraps the
//! [`Store`] and records each completion that was actually written, so a
//! duplicate delivery (which writes nothing) is never counted twice, and no
//! pipeline code knows about metrics.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::domain::{
    Conversation, ConversationId, ConversationStatus, Message, NewMessage, Outcome, ReasonCode,
    Ticket, TicketId, Usage,
};
use crate::store::{
    Claim, ClaimToken, Completed, Completion, Page, Store, StoreError, TicketRecord,
};
use crate::worker::Action;

/// The CloudWatch namespace of the EMF metrics.
pub const NAMESPACE: &str = "deskhand";
/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Metrics settings (the `[metrics]` configuration section).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Print CloudWatch EMF lines from the worker on Lambda. Each distinct
    /// metric (about ten in use) is a CloudWatch custom metric at $0.30 a
    /// month, prorated by the hours it is sent in; `false` saves that.
    pub emf: bool,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self { emf: true }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Where EMF lines go.
type Sink = Mutex<Box<dyn Write + Send>>;

/// The metrics of one process; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    tickets: Family<OutcomeLabel, Counter>,
    escalations: Family<ReasonLabel, Counter>,
    failures: Counter,
    model_calls: Counter,
    tokens: Family<KindLabel, Counter>,
    model_latency: Histogram,
    emf: Option<Sink>,
}

/// One finished ticket, as metrics see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The ticket.
    pub ticket_id: TicketId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// How it ended.
    pub outcome: Outcome,
    /// Why a person got it.
    pub reason: Option<ReasonCode>,
    /// Model usage.
    pub usage: Usage,
}

impl Finished {
    fn of(c: &Completion) -> Self {
        Self {
            ticket_id: c.ticket_id,
            conversation_id: c.conversation_id,
            outcome: c.outcome,
            reason: c.reason,
            usage: c.usage.clone(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Metrics {
    /// Metrics kept for `/metrics` only (local mode).
    pub fn prometheus() -> Self {
        Self::new(None)
    }

    /// Metrics that also print an EMF line per event to stdout (Lambda),
    /// when `emf` is on.
    pub fn lambda(settings: &MetricsSettings) -> Self {
        Self::new(
            settings
                .emf
                .then(|| Box::new(std::io::stdout()) as Box<dyn Write + Send>),
        )
    }

    /// Metrics whose EMF lines go to `sink` (tests).
    pub fn with_emf_sink(sink: Box<dyn Write + Send>) -> Self {
        Self::new(Some(sink))
    }

    fn new(emf: Option<Box<dyn Write + Send>>) -> Self {
        let mut registry = Registry::with_prefix("deskhand");
        let tickets = Family::<OutcomeLabel, Counter>::default();
        let escalations = Family::<ReasonLabel, Counter>::default();
        let failures = Counter::default();
        let model_calls = Counter::default();
        let tokens = Family::<KindLabel, Counter>::default();
        // 50 ms … ~51 s.
        let model_latency = Histogram::new(exponential_buckets(0.05, 2.0, 11));
        registry.register("tickets", "Tickets finished, by outcome", tickets.clone());
        registry.register(
            "escalations",
            "Tickets handed to a person, by reason",
            escalations.clone(),
        );
        registry.register(
            "ticket_failures",
            "Processing attempts that failed (retried or dead-lettered)",
            failures.clone(),
        );
        registry.register(
            "model_calls",
            "Model calls made (retries included)",
            model_calls.clone(),
        );
        registry.register(
            "model_tokens",
            "Model tokens, by kind (input, output, cache_read, cache_write)",
            tokens.clone(),
        );
        registry.register_with_unit(
            "model_latency",
            "Time spent waiting for the model per ticket",
            Unit::Seconds,
            model_latency.clone(),
        );
        // Every label value from the start, so a rate over zero is zero
        // rather than missing.
        for o in Outcome::ALL {
            let _ = tickets.get_or_create(&OutcomeLabel {
                outcome: o.as_str(),
            });
        }
        for r in ReasonCode::ALL {
            let _ = escalations.get_or_create(&ReasonLabel { reason: r.as_str() });
        }
        for kind in ["input", "output", "cache_read", "cache_write"] {
            let _ = tokens.get_or_create(&KindLabel { kind });
        }
        Self {
            inner: Arc::new(Inner {
                registry,
                tickets,
                escalations,
                failures,
                model_calls,
                tokens,
                model_latency,
                emf: emf.map(Mutex::new),
            }),
        }
    }

    /// Counts a finished ticket.
    pub fn finished(&self, f: &Finished) {
        let i = &self.inner;
        i.tickets
            .get_or_create(&OutcomeLabel {
                outcome: f.outcome.as_str(),
            })
            .inc();
        if let Some(r) = f.reason {
            i.escalations
                .get_or_create(&ReasonLabel { reason: r.as_str() })
                .inc();
        }
        let u = &f.usage;
        if u.calls > 0 {
            i.model_calls.inc_by(u64::from(u.calls));
            i.model_latency
                .observe(Duration::from_millis(u.model_ms).as_secs_f64());
        }
        for (kind, n) in [
            ("input", u.input_tokens),
            ("output", u.output_tokens),
            ("cache_read", u.cache_read_tokens),
            ("cache_write", u.cache_write_tokens),
        ] {
            if n > 0 {
                i.tokens.get_or_create(&KindLabel { kind }).inc_by(n);
            }
        }
        self.emit(|| emf_finished(f, Utc::now()));
    }

    /// Counts how a worker settled a queue record: nothing for a finished
    /// ticket (the store counted it), a failure for a retry or a
    /// dead-letter, and for an unreadable record its escalation too.
    pub fn settled(&self, action: &Action) {
        match action {
            Action::Delete => {}
            Action::DeadLetter(reason) if *reason == ReasonCode::Unparseable.as_str() => {
                self.unreadable()
            }
            Action::RetryAfter(_) | Action::DeadLetter(_) => self.failed(),
        }
    }

    /// Counts a failed processing attempt (it will be retried, or was
    /// dead-lettered).
    pub fn failed(&self) {
        self.inner.failures.inc();
        self.emit(|| emf_failed(None, Utc::now()));
    }

    /// Counts a queue record nobody could read: a failure, escalated as
    /// `unparseable`.
    pub fn unreadable(&self) {
        let i = &self.inner;
        i.failures.inc();
        i.escalations
            .get_or_create(&ReasonLabel {
                reason: ReasonCode::Unparseable.as_str(),
            })
            .inc();
        self.emit(|| emf_failed(Some(ReasonCode::Unparseable), Utc::now()));
    }

    /// The registry in OpenMetrics text (what Prometheus scrapes).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    fn emit(&self, line: impl FnOnce() -> Value) {
        if let Some(sink) = &self.inner.emf {
            let mut text = line().to_string();
            text.push('\n');
            // One write per line, so lines from concurrent tickets never
            // interleave; a failed write loses a metric, never a ticket.
            if let Ok(mut w) = sink.lock() {
                let _ = w.write_all(text.as_bytes()).and_then(|_| w.flush());
            }
        }
    }
}

fn directive(dimensions: &[&str], metrics: &[(&str, &str)]) -> Value {
    json!({
        "Namespace": NAMESPACE,
        "Dimensions": [dimensions],
        "Metrics": metrics
            .iter()
            .map(|(name, unit)| json!({"Name": name, "Unit": unit}))
            .collect::<Vec<_>>(),
    })
}

fn emf_document(
    at: DateTime<Utc>,
    directives: Vec<Value>,
    mut members: Map<String, Value>,
) -> Value {
    members.insert(
        "_aws".into(),
        json!({"Timestamp": at.timestamp_millis(), "CloudWatchMetrics": directives}),
    );
    Value::Object(members)
}

/// The EMF document for a finished ticket.
pub fn emf_finished(f: &Finished, at: DateTime<Utc>) -> Value {
    let mut directives = vec![directive(&["outcome"], &[("Tickets", "Count")])];
    let mut m = Map::new();
    m.insert("message".into(), json!("Ticket metrics."));
    m.insert("ticket_id".into(), json!(f.ticket_id.to_string()));
    m.insert(
        "conversation_id".into(),
        json!(f.conversation_id.to_string()),
    );
    m.insert("outcome".into(), json!(f.outcome.as_str()));
    m.insert("Tickets".into(), json!(1));
    if let Some(r) = f.reason {
        directives.push(directive(&["reason"], &[("Escalations", "Count")]));
        m.insert("reason".into(), json!(r.as_str()));
        m.insert("Escalations".into(), json!(1));
    }
    let u = &f.usage;
    if u.calls > 0 {
        let mut metrics = vec![
            ("ModelLatency", "Milliseconds"),
            ("InputTokens", "Count"),
            ("OutputTokens", "Count"),
        ];
        m.insert("ModelLatency".into(), json!(u.model_ms));
        m.insert("InputTokens".into(), json!(u.input_tokens));
        m.insert("OutputTokens".into(), json!(u.output_tokens));
        if u.cache_read_tokens > 0 {
            metrics.push(("CacheReadTokens", "Count"));
            m.insert("CacheReadTokens".into(), json!(u.cache_read_tokens));
        }
        if u.cache_write_tokens > 0 {
            metrics.push(("CacheWriteTokens", "Count"));
            m.insert("CacheWriteTokens".into(), json!(u.cache_write_tokens));
        }
        directives.push(directive(&[], &metrics));
        m.insert("model_calls".into(), json!(u.calls));
        if let Some(id) = &u.model_id {
            m.insert("model_id".into(), json!(id));
        }
    }
    emf_document(at, directives, m)
}

/// The EMF document for a failed attempt (with the escalation reason when
/// the failure itself was escalated, as for an unreadable record).
pub fn emf_failed(reason: Option<ReasonCode>, at: DateTime<Utc>) -> Value {
    let mut directives = vec![directive(&[], &[("TicketFailures", "Count")])];
    let mut m = Map::new();
    m.insert("message".into(), json!("Ticket failure metrics."));
    m.insert("TicketFailures".into(), json!(1));
    if let Some(r) = reason {
        directives.push(directive(&["reason"], &[("Escalations", "Count")]));
        m.insert("reason".into(), json!(r.as_str()));
        m.insert("Escalations".into(), json!(1));
    }
    emf_document(at, directives, m)
}

/// A [`Store`] that counts every completion it writes.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Metrics,
}

impl MeteredStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn claim(&self, ticket: &Ticket, lease: Duration) -> Result<Claim, StoreError> {
        self.inner.claim(ticket, lease).await
    }

    async fn begin(
        &self,
        ticket: &Ticket,
        message: NewMessage,
        lease: Duration,
    ) -> Result<crate::store::Begin, StoreError> {
        self.inner.begin(ticket, message, lease).await
    }

    async fn release(&self, ticket: TicketId, token: ClaimToken) -> Result<(), StoreError> {
        self.inner.release(ticket, token).await
    }

    async fn append(
        &self,
        conversation: ConversationId,
        message: NewMessage,
    ) -> Result<Message, StoreError> {
        self.inner.append(conversation, message).await
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        self.inner.conversation(id).await
    }

    async fn history(&self, id: ConversationId, limit: usize) -> Result<Vec<Message>, StoreError> {
        self.inner.history(id, limit).await
    }

    async fn complete(&self, completion: Completion) -> Result<Completed, StoreError> {
        let finished = Finished::of(&completion);
        let written = self.inner.complete(completion).await?;
        if written == Completed::Written {
            self.metrics.finished(&finished);
        }
        Ok(written)
    }

    async fn mark_notified(&self, ticket: TicketId) -> Result<(), StoreError> {
        self.inner.mark_notified(ticket).await
    }

    async fn messages_after(
        &self,
        id: ConversationId,
        after: u64,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.inner.messages_after(id, after, limit).await
    }

    async fn set_status(
        &self,
        id: ConversationId,
        status: ConversationStatus,
        reason: Option<ReasonCode>,
        message: Option<NewMessage>,
        outbox: Vec<crate::domain::NewOutbox>,
    ) -> Result<Conversation, StoreError> {
        self.inner
            .set_status(id, status, reason, message, outbox)
            .await
    }

    async fn ticket(&self, id: TicketId) -> Result<Option<TicketRecord>, StoreError> {
        self.inner.ticket(id).await
    }

    async fn tickets_since(&self, since: DateTime<Utc>) -> Result<Vec<TicketRecord>, StoreError> {
        self.inner.tickets_since(since).await
    }
}
