//! `deskhand soak`: a fault-injection soak of the whole worker path, on the
//! local runtime (SQLite queue and store) or the AWS adapters (SQS FIFO and
//! DynamoDB, e.g. on moto), bounded in tickets and time.
//!
//! Faults are injected by wrappers around the real adapters: the model
//! throttles, times out or answers garbage; store writes fail before or
//! after they take effect; a worker "dies" between its claim and its reply
//! write (the completion hangs until the harness drops it: no clean-up runs,
//! as with `kill -9`); escalations fail to publish; tickets are delivered
//! twice; unreadable records are enqueued.
//!
//! At the end it checks the invariant: every accepted ticket is in exactly
//! one terminal state (answered, escalated, forwarded, or dead-lettered),
//! every one that needed a person was notified, no ticket has two replies,
//! and no model call for a ticket happened after it was completed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::domain::{
    Conversation, ConversationId, ConversationStatus, Customer, Message, MessageText, NewMessage,
    Outcome, Provider, ReasonCode, Role, Thread, Ticket, TicketId,
};
use crate::knowledge::Retriever;
use crate::llm::{Extractive, GenerateError, GenerateRequest, Generation, Generator};
use crate::notify::{EscalateError, Escalation, Escalator};
use crate::pipeline::{Pipeline, Policy, Responder, Rules};
use crate::store::{
    Claim, ClaimToken, Completed, Completion, Page, Store, StoreError, TicketRecord,
};
use crate::worker::{self, Action, Backoff};

/// The harness's shared records stay readable after a panicking task (a
/// "killed" worker): a poisoned lock is taken as it is.
trait Locked<T> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How often each fault happens (probabilities per opportunity).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FaultRates {
    /// A model call is throttled.
    pub model_throttle: f64,
    /// A model call times out (after a delay).
    pub model_timeout: f64,
    /// A model call returns unusable output.
    pub model_malformed: f64,
    /// A store write fails before it takes effect.
    pub store_fail_before: f64,
    /// A completion is written but its acknowledgement is lost.
    pub store_fail_after: f64,
    /// The worker dies between its claim and its reply write.
    pub worker_killed: f64,
    /// An escalation fails to publish.
    pub escalation_fails: f64,
    /// A ticket is delivered a second time.
    pub duplicate_delivery: f64,
    /// An unreadable record joins the queue (per ticket).
    pub poison: f64,
}

impl Default for FaultRates {
    fn default() -> Self {
        Self {
            model_throttle: 0.15,
            model_timeout: 0.05,
            model_malformed: 0.05,
            store_fail_before: 0.05,
            store_fail_after: 0.03,
            worker_killed: 0.05,
            escalation_fails: 0.10,
            duplicate_delivery: 0.10,
            poison: 0.03,
        }
    }
}

impl FaultRates {
    /// A model that fails most calls and a flaky notification channel:
    /// many tickets exhaust their attempts and are dead-lettered.
    pub fn harsh() -> Self {
        Self {
            model_throttle: 0.7,
            worker_killed: 0.1,
            escalation_fails: 0.3,
            ..Self::default()
        }
    }
}

/// What the soak found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakReport {
    /// Where it ran: `local` or `aws`.
    pub target: String,
    /// Tickets accepted (enqueued).
    pub tickets: u64,
    /// Unreadable records enqueued besides.
    pub poison_records: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Terminal states of the accepted tickets.
    pub outcomes: BTreeMap<String, u64>,
    /// Accepted tickets in no terminal state, or needing a person who was
    /// never told.
    pub lost: u64,
    /// Tickets with more than one reply or customer message.
    pub duplicated: u64,
    /// Model calls made for a ticket after it was completed successfully
    /// (answered, escalated or forwarded).
    pub repeated_model_calls: u64,
    /// Why each lost ticket counts as lost.
    pub lost_details: Vec<String>,
    /// Unreadable records not dead-lettered with a notification.
    pub poison_lost: u64,
    /// Model calls in all.
    pub model_calls: u64,
    /// Deliveries handled in all (retries and duplicates included).
    pub deliveries: u64,
    /// Time from the first enqueue to an empty queue, in seconds.
    pub drain_secs: f64,
    /// Whether the queue drained before the time limit.
    pub drained: bool,
}

impl SoakReport {
    /// Whether the invariant held.
    pub fn ok(&self) -> bool {
        self.drained
            && self.lost == 0
            && self.duplicated == 0
            && self.repeated_model_calls == 0
            && self.poison_lost == 0
    }

    /// A human-readable summary.
    pub fn render(&self) -> String {
        let mut s = format!("soak ({})\n", self.target);
        s.push_str(&format!("  tickets accepted     {}\n", self.tickets));
        s.push_str(&format!("  unreadable records   {}\n", self.poison_records));
        s.push_str(&format!("  deliveries handled   {}\n", self.deliveries));
        s.push_str(&format!("  model calls          {}\n", self.model_calls));
        s.push_str("  faults injected\n");
        for (k, v) in &self.faults {
            s.push_str(&format!("    {k:<22} {v}\n"));
        }
        s.push_str("  outcomes\n");
        for (k, v) in &self.outcomes {
            s.push_str(&format!("    {k:<22} {v}\n"));
        }
        s.push_str(&format!("  lost                 {}\n", self.lost));
        for d in &self.lost_details {
            s.push_str(&format!("    {d}\n"));
        }
        s.push_str(&format!("  duplicated           {}\n", self.duplicated));
        s.push_str(&format!(
            "  repeated model calls {}\n",
            self.repeated_model_calls
        ));
        s.push_str(&format!("  unreadable not parked {}\n", self.poison_lost));
        s.push_str(&format!(
            "  time to drain        {:.1} s{}\n",
            self.drain_secs,
            if self.drained { "" } else { " (did NOT drain)" }
        ));
        s.push_str(if self.ok() {
            "  invariant holds\n"
        } else {
            "  INVARIANT BROKEN\n"
        });
        s
    }
}

/// Shared fault dice, counters and the sequence that orders model calls
/// against completions.
pub struct Faults {
    rates: FaultRates,
    rng: Mutex<StdRng>,
    counts: Mutex<BTreeMap<String, u64>>,
    seq: AtomicU64,
    /// ticket → sequence numbers of its successful model calls.
    model_calls: Mutex<HashMap<TicketId, Vec<u64>>>,
    /// ticket → sequence number of its completion.
    completed: Mutex<HashMap<TicketId, u64>>,
    /// ticket → escalations published for it.
    notified: Mutex<HashMap<Option<TicketId>, Vec<ReasonCode>>>,
    /// question text → ticket (the generator sees only the text).
    by_question: Mutex<HashMap<String, TicketId>>,
}

impl Faults {
    /// Dice seeded with `seed`.
    pub fn new(rates: FaultRates, seed: u64) -> Arc<Self> {
        Arc::new(Self {
            rates,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            counts: Mutex::new(BTreeMap::new()),
            seq: AtomicU64::new(0),
            model_calls: Mutex::new(HashMap::new()),
            completed: Mutex::new(HashMap::new()),
            notified: Mutex::new(HashMap::new()),
            by_question: Mutex::new(HashMap::new()),
        })
    }

    fn roll(&self, p: f64, kind: &str) -> bool {
        let hit = p > 0.0 && self.rng.locked().random_bool(p.min(1.0));
        if hit {
            *self.counts.locked().entry(kind.to_owned()).or_default() += 1;
        }
        hit
    }

    fn count(&self, kind: &str) {
        *self.counts.locked().entry(kind.to_owned()).or_default() += 1;
    }

    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst)
    }
}

/// The model, with faults.
pub struct FaultyGenerator<G> {
    inner: G,
    faults: Arc<Faults>,
    timeout_delay: Duration,
}

#[async_trait]
impl<G: Generator> Generator for FaultyGenerator<G> {
    async fn generate(&self, request: &GenerateRequest) -> Result<Generation, GenerateError> {
        let usage = crate::domain::Usage::default();
        if self
            .faults
            .roll(self.faults.rates.model_throttle, "model throttled")
        {
            return Err(GenerateError::Transient {
                detail: "429 (injected)".into(),
                retry_after: None,
                usage,
            });
        }
        if self
            .faults
            .roll(self.faults.rates.model_timeout, "model timed out")
        {
            tokio::time::sleep(self.timeout_delay).await;
            return Err(GenerateError::Transient {
                detail: "timeout (injected)".into(),
                retry_after: None,
                usage,
            });
        }
        if self
            .faults
            .roll(self.faults.rates.model_malformed, "model output malformed")
        {
            return Err(GenerateError::Malformed {
                detail: "garbage (injected)".into(),
                usage,
            });
        }
        let result = self.inner.generate(request).await;
        if result.is_ok() {
            let ticket = self
                .faults
                .by_question
                .locked()
                .get(&request.question)
                .copied();
            if let Some(t) = ticket {
                let seq = self.faults.next();
                self.faults
                    .model_calls
                    .locked()
                    .entry(t)
                    .or_default()
                    .push(seq);
            }
        }
        result
    }
}

/// The store, with faults on writes.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    faults: Arc<Faults>,
}

impl FaultyStore {
    fn injected(what: &str) -> StoreError {
        StoreError::Transient(format!("{what} (injected)"))
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn claim(&self, ticket: &Ticket, lease: Duration) -> Result<Claim, StoreError> {
        if self
            .faults
            .roll(self.faults.rates.store_fail_before, "store write failed")
        {
            return Err(Self::injected("claim failed"));
        }
        self.inner.claim(ticket, lease).await
    }

    async fn begin(
        &self,
        ticket: &Ticket,
        message: NewMessage,
        lease: Duration,
    ) -> Result<crate::store::Begin, StoreError> {
        if self
            .faults
            .roll(self.faults.rates.store_fail_before, "store write failed")
        {
            return Err(Self::injected("begin failed"));
        }
        let begun = self.inner.begin(ticket, message, lease).await?;
        // Written, but the worker never hears so: the claim is held and the
        // message stored; the redelivery waits out the lease and finds it.
        if matches!(begun, crate::store::Begin::Acquired(_))
            && self
                .faults
                .roll(self.faults.rates.store_fail_after, "store ack lost")
        {
            return Err(Self::injected("begin written, acknowledgement lost"));
        }
        Ok(begun)
    }

    async fn release(&self, ticket: TicketId, token: ClaimToken) -> Result<(), StoreError> {
        self.inner.release(ticket, token).await
    }

    async fn append(
        &self,
        conversation: ConversationId,
        message: NewMessage,
    ) -> Result<Message, StoreError> {
        if self
            .faults
            .roll(self.faults.rates.store_fail_before, "store write failed")
        {
            return Err(Self::injected("append failed"));
        }
        self.inner.append(conversation, message).await
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        self.inner.conversation(id).await
    }

    async fn history(&self, id: ConversationId, limit: usize) -> Result<Vec<Message>, StoreError> {
        self.inner.history(id, limit).await
    }

    async fn complete(&self, completion: Completion) -> Result<Completed, StoreError> {
        if completion.token.is_some()
            && self.faults.roll(
                self.faults.rates.worker_killed,
                "worker killed before reply",
            )
        {
            // Dies here: the harness drops this future after its deadline.
            std::future::pending::<()>().await;
        }
        if self
            .faults
            .roll(self.faults.rates.store_fail_before, "store write failed")
        {
            return Err(Self::injected("completion failed"));
        }
        let ticket = completion.ticket_id;
        // A dead-lettered ticket is not a success: a later delivery (a
        // redrive, or a late duplicate) may try it again.
        let success = completion.outcome != Outcome::DeadLettered;
        let written = self.inner.complete(completion).await?;
        if written == Completed::Written && success {
            let seq = self.faults.next();
            // The first completion counts: any model call after it is a repeat.
            self.faults.completed.locked().entry(ticket).or_insert(seq);
        }
        if self
            .faults
            .roll(self.faults.rates.store_fail_after, "store ack lost")
        {
            return Err(Self::injected("completion written, acknowledgement lost"));
        }
        Ok(written)
    }

    async fn mark_notified(&self, ticket: TicketId) -> Result<(), StoreError> {
        if self
            .faults
            .roll(self.faults.rates.store_fail_before, "store write failed")
        {
            return Err(Self::injected("mark_notified failed"));
        }
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

    async fn tickets_since(
        &self,
        since: chrono::DateTime<Utc>,
    ) -> Result<Vec<TicketRecord>, StoreError> {
        self.inner.tickets_since(since).await
    }
}

/// Records every escalation that reached "a person", failing some.
pub struct RecordingEscalator {
    faults: Arc<Faults>,
}

#[async_trait]
impl Escalator for RecordingEscalator {
    async fn escalate(&self, e: &Escalation) -> Result<(), EscalateError> {
        if self.faults.roll(
            self.faults.rates.escalation_fails,
            "escalation publish failed",
        ) {
            return Err(EscalateError("publish failed (injected)".into()));
        }
        self.faults
            .notified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(e.ticket_id)
            .or_default()
            .push(e.reason);
        Ok(())
    }
}

/// Questions the soak asks (answerable, escalating and uncovered alike).
const QUESTIONS: &[&str] = &[
    "How do I turn on two-factor authentication?",
    "Can I export my invoices to CSV?",
    "How much is the Solo plan per year?",
    "I want to talk to a real person",
    "How do I reset my password?",
    "This app is useless and I am furious!!! Worst service ever.",
    "Do you sell garden furniture?",
    "How do I add a team member?",
    "My lawyer will be in touch about this invoice.",
    "Can I send recurring invoices every month?",
];

/// The tickets of a soak: three in five conversations get a follow-up.
pub fn tickets(n: usize, seed: u64) -> Vec<Ticket> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut out = Vec::with_capacity(n);
    let mut conversation = ConversationId::random();
    for i in 0..n {
        if i == 0 || !rng.random_bool(0.6) {
            conversation = ConversationId::random();
        }
        let q = QUESTIONS[rng.random_range(0..QUESTIONS.len())];
        out.push(Ticket {
            ticket_id: TicketId::new(),
            conversation_id: conversation,
            provider: Provider::Widget,
            customer: Customer::default(),
            subject: None,
            // A unique tag lets the generator tell tickets apart.
            text: MessageText::parse(&format!("{q} (soak #{i})"), 4000)
                .expect("soak text is valid"),
            attachments: Vec::new(),
            thread: Thread::default(),
            brand: None,
            received_at: Utc::now(),
        });
    }
    out
}

/// A soak's pieces: the pipeline over faulty adapters, and the real store
/// underneath for checking.
pub struct Harness {
    /// The pipeline over the faulty wrappers.
    pub pipeline: Arc<Pipeline>,
    /// The real store (no faults), for the final check.
    pub store: Arc<dyn Store>,
    /// The dice and the records.
    pub faults: Arc<Faults>,
}

impl Harness {
    /// Wraps `store` and an extractive generator over `retriever`.
    pub fn new(
        store: Arc<dyn Store>,
        retriever: Arc<dyn Retriever>,
        rates: FaultRates,
        seed: u64,
        lease: Duration,
    ) -> anyhow::Result<Self> {
        let faults = Faults::new(rates, seed);
        let config = crate::config::Config::default();
        let mut settings = Policy::from_config(&config);
        settings.lease = lease;
        let generator = FaultyGenerator {
            inner: Extractive::default(),
            faults: faults.clone(),
            timeout_delay: Duration::from_millis(50),
        };
        let responder = Responder::new(
            retriever,
            Arc::new(generator),
            Rules::new(&config.pipeline)?,
            settings,
        );
        let faulty = FaultyStore {
            inner: store.clone(),
            faults: faults.clone(),
        };
        let pipeline = Pipeline::new(
            Arc::new(faulty),
            Arc::new(RecordingEscalator {
                faults: faults.clone(),
            }),
            responder,
        );
        Ok(Self {
            pipeline: Arc::new(pipeline),
            store,
            faults,
        })
    }

    /// Registers `tickets` so model calls can be attributed.
    pub fn expect(&self, tickets: &[Ticket]) {
        let mut by = self.faults.by_question.locked();
        for t in tickets {
            by.insert(t.text.as_str().to_owned(), t.ticket_id);
        }
    }

    /// Handles one delivery as a worker that may die: the handling is cut
    /// off after `deadline` (the "kill"), leaving the record in flight.
    pub async fn deliver(
        &self,
        body: &str,
        receive_count: u32,
        max_receives: u32,
        backoff: Backoff,
        deadline: Duration,
    ) -> Option<Action> {
        tokio::time::timeout(
            deadline,
            worker::handle_guarded(&self.pipeline, body, receive_count, max_receives, backoff),
        )
        .await
        .ok()
    }

    /// Checks the invariant over `tickets` (and the `poison` records, by
    /// count), filling in `report`. `dead` holds the tickets found in the
    /// dead-letter queue, `dead_lettered_unparseable` the unreadable records
    /// there.
    pub async fn check(
        &self,
        tickets: &[Ticket],
        dead: &HashSet<TicketId>,
        poison: u64,
        dead_lettered_unparseable: u64,
        alarm_watches_dlq: bool,
        report: &mut SoakReport,
    ) -> anyhow::Result<()> {
        let notified = self.faults.notified.locked().clone();
        let model_calls = self.faults.model_calls.locked().clone();
        let completed = self.faults.completed.locked().clone();
        report.faults = self.faults.counts.locked().clone();
        report.model_calls = model_calls.values().map(|v| v.len() as u64).sum();
        let mut conversations = HashSet::new();
        for t in tickets {
            conversations.insert(t.conversation_id);
            match self.store.ticket(t.ticket_id).await? {
                Some(record) => {
                    *report
                        .outcomes
                        .entry(record.outcome.as_str().to_owned())
                        .or_default() += 1;
                    // Judged by what reached a person, not by the `notified`
                    // flag: a flag write that failed after a successful
                    // publish only means the escalation may be sent again.
                    let needs_person = record.outcome.needs_person();
                    let told = notified
                        .get(&Some(t.ticket_id))
                        .is_some_and(|r| !r.is_empty());
                    if needs_person && !told && alarm_watches_dlq && dead.contains(&t.ticket_id) {
                        // On AWS the redrive policy may park a record the
                        // worker could not settle; the DLQ alarm tells a person.
                        *report
                            .outcomes
                            .entry("dead-lettered by the queue (DLQ alarm)".into())
                            .or_default() += 1;
                    } else if needs_person && !told {
                        report.lost += 1;
                        report.lost_details.push(format!(
                            "{}: {} (notified flag {}, escalations {:?})",
                            t.ticket_id,
                            record.outcome,
                            record.notified,
                            notified.get(&Some(t.ticket_id))
                        ));
                    }
                }
                // Dead-lettered while the store was failing: terminal if it
                // is in the dead-letter queue and a person was told.
                None if dead.contains(&t.ticket_id)
                    && notified
                        .get(&Some(t.ticket_id))
                        .is_some_and(|r| r.contains(&ReasonCode::ProcessingFailed)) =>
                {
                    *report
                        .outcomes
                        .entry("dead_lettered (unrecorded)".into())
                        .or_default() += 1;
                }
                None if alarm_watches_dlq && dead.contains(&t.ticket_id) => {
                    *report
                        .outcomes
                        .entry("dead-lettered by the queue (DLQ alarm)".into())
                        .or_default() += 1;
                }
                None => {
                    report.lost += 1;
                    report.lost_details.push(format!(
                        "{}: no terminal state (in dead-letter queue: {}, escalations {:?})",
                        t.ticket_id,
                        dead.contains(&t.ticket_id),
                        notified.get(&Some(t.ticket_id))
                    ));
                }
            }
            if let (Some(calls), Some(done)) =
                (model_calls.get(&t.ticket_id), completed.get(&t.ticket_id))
            {
                report.repeated_model_calls += calls.iter().filter(|s| *s > done).count() as u64;
            }
        }
        for c in conversations {
            let messages = self.store.history(c, 10_000).await?;
            let mut per_ticket: HashMap<(TicketId, bool), u64> = HashMap::new();
            for m in messages {
                // Failure notices are notices, neither the customer's words nor a reply.
                if let Some(t) = m.body.ticket_id.filter(|_| !m.body.id.ends_with(".failed")) {
                    *per_ticket
                        .entry((t, m.body.role != Role::Customer))
                        .or_default() += 1;
                }
            }
            report.duplicated += per_ticket.values().filter(|n| **n > 1).count() as u64;
        }
        let unparseable_told = notified.get(&None).map_or(0, |r| {
            r.iter().filter(|x| **x == ReasonCode::Unparseable).count()
        }) as u64;
        report.poison_lost = poison.saturating_sub(dead_lettered_unparseable.min(unparseable_told));
        Ok(())
    }
}

/// Runs a soak on the local runtime: the SQLite queue and store in a
/// temporary folder, `workers` concurrent workers, visibility (and lease)
/// `visibility`.
pub async fn local(
    retriever: Arc<dyn Retriever>,
    n: usize,
    seed: u64,
    rates: FaultRates,
    time_limit: Duration,
) -> anyhow::Result<SoakReport> {
    let dir = std::env::temp_dir().join(format!("deskhand-soak-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = crate::sqlite::Db::open(&dir.join("soak.db"))?;
    let store: Arc<dyn Store> = Arc::new(crate::store::SqliteStore::new(db.clone()));
    let queue = crate::queue::SqliteQueue::new(db, 256 * 1024);
    let visibility = Duration::from_millis(400);
    let max_receives = 6;
    let backoff = Backoff {
        base: Duration::from_millis(10),
        max: Duration::from_millis(200),
    };
    let harness = Arc::new(Harness::new(store, retriever, rates, seed, visibility)?);
    let tickets = tickets(n, seed);
    harness.expect(&tickets);

    let started = Instant::now();
    let mut poison = 0;
    for (i, t) in tickets.iter().enumerate() {
        crate::queue::Queue::send(&queue, t).await?;
        if harness
            .faults
            .roll(rates.duplicate_delivery, "duplicate delivery")
        {
            let (body, _) = crate::queue::encode(t, 256 * 1024)?;
            queue
                .send_raw(&t.conversation_id.to_string(), &format!("dup-{i}"), &body)
                .await?;
        }
        if harness.faults.roll(rates.poison, "unreadable record") {
            queue
                .send_raw(
                    &format!("poison-{i}"),
                    &format!("poison-{i}"),
                    "{\"v\":1,\"not\":\"a ticket\"}",
                )
                .await?;
            poison += 1;
        }
    }
    let deliveries = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (queue, harness, deliveries) = (queue.clone(), harness.clone(), deliveries.clone());
        workers.spawn(async move {
            while started.elapsed() < time_limit {
                let batch = match queue.receive(1, visibility, None).await {
                    Ok(b) => b,
                    Err(_) => continue,
                };
                let Some(d) = batch.into_iter().next() else {
                    if queue.depth().await.map(|x| x.queued).unwrap_or(1) == 0 {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                deliveries.fetch_add(1, Ordering::Relaxed);
                match harness
                    .deliver(&d.body, d.receive_count, max_receives, backoff, visibility)
                    .await
                {
                    Some(Action::Delete) => drop(queue.delete(&d).await),
                    Some(Action::RetryAfter(w)) => drop(queue.retry_after(&d, w).await),
                    Some(Action::DeadLetter(r)) => drop(queue.dead_letter(&d, r).await),
                    None => {} // killed: the record stays in flight until its visibility ends
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let depth = queue.depth().await?;
    let mut report = SoakReport {
        target: "local".into(),
        tickets: tickets.len() as u64,
        poison_records: poison,
        deliveries: deliveries.load(Ordering::Relaxed),
        drain_secs: started.elapsed().as_secs_f64(),
        drained: depth.queued == 0,
        ..SoakReport::default()
    };
    let letters = queue.dead_letters().await?;
    let parked = letters
        .iter()
        .filter(|(_, reason, _)| reason == "unparseable")
        .count() as u64;
    let dead: HashSet<TicketId> = letters
        .iter()
        .filter_map(|(body, _, _)| crate::queue::decode(body).ok())
        .map(|t| t.ticket_id)
        .collect();
    harness
        .check(&tickets, &dead, poison, parked, false, &mut report)
        .await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

/// Runs a soak on the AWS adapters in `runtime` (SQS FIFO and DynamoDB,
/// e.g. on moto): tickets are sent to the queue, batches are received as
/// the event source would and handed to the Lambda worker handler; a
/// "killed" worker drops a whole batch, which SQS redelivers after its
/// visibility (received here with `visibility_secs`).
pub async fn aws(
    runtime: &crate::lambda::AwsRuntime,
    retriever: Arc<dyn Retriever>,
    n: usize,
    seed: u64,
    rates: FaultRates,
    time_limit: Duration,
) -> anyhow::Result<SoakReport> {
    use crate::queue::sqs::sqs_event;
    let visibility_secs = 6;
    let lease = Duration::from_secs(visibility_secs as u64);
    let harness = Harness::new(
        Arc::new(runtime.store.clone()),
        retriever,
        rates,
        seed,
        lease,
    )?;
    let tickets = tickets(n, seed);
    harness.expect(&tickets);
    let queue = &runtime.queue;
    let dlq = crate::aws::AwsSettings::require(&runtime.config.aws.dlq_url, "dlq_url")?.to_owned();
    let ctx = crate::lambda::worker::WorkerContext {
        pipeline: harness.pipeline.clone(),
        queue: queue.clone(),
        max_receives: 6,
        backoff: Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_secs(1),
        },
        group_concurrency: crate::lambda::worker::GROUP_CONCURRENCY,
        metrics: crate::metrics::Metrics::default(),
        budget: crate::lambda::worker::Budget::default(),
    };
    let sqs = aws_sdk_sqs::Client::new(&runtime.sdk);
    let arn = "arn:aws:sqs:soak";

    let started = Instant::now();
    let mut poison = 0;
    for (i, t) in tickets.iter().enumerate() {
        crate::queue::Queue::send(queue, t).await?;
        if harness
            .faults
            .roll(rates.duplicate_delivery, "duplicate delivery")
        {
            let (body, _) = crate::queue::encode(t, 256 * 1024)?;
            sqs.send_message()
                .queue_url(queue.url())
                .message_body(body)
                .message_group_id(t.conversation_id.to_string())
                .message_deduplication_id(format!("dup-{i}"))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(crate::aws::describe(&e)))?;
        }
        if harness.faults.roll(rates.poison, "unreadable record") {
            sqs.send_message()
                .queue_url(queue.url())
                .message_body("{\"v\":1,\"not\":\"a ticket\"}")
                .message_group_id(format!("poison-{i}"))
                .message_deduplication_id(format!("poison-{i}"))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(crate::aws::describe(&e)))?;
            poison += 1;
        }
    }
    let mut deliveries = 0u64;
    let mut drained = false;
    while started.elapsed() < time_limit {
        let batch = queue.receive(queue.url(), 0, visibility_secs).await?;
        if batch.is_empty() {
            let left: u64 = sqs
                .get_queue_attributes()
                .queue_url(queue.url())
                .attribute_names(
                    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
                )
                .attribute_names(
                    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                )
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(crate::aws::describe(&e)))?
                .attributes()
                .map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum())
                .unwrap_or(1);
            if left == 0 {
                drained = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        deliveries += batch.len() as u64;
        let event = sqs_event(arn, &batch);
        // A worker killed mid-batch (a hang injected in the store, or a batch
        // slower than its deadline) reports nothing: everything is redelivered.
        let Ok(response) =
            tokio::time::timeout(lease, crate::lambda::worker::handle(&ctx, event)).await
        else {
            harness.faults.count("batch cut off (worker killed)");
            continue;
        };
        let failed: HashSet<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        for m in batch.iter().filter(|m| !failed.contains(&m.message_id)) {
            queue.delete(queue.url(), &m.receipt_handle).await?;
        }
    }
    let mut report = SoakReport {
        target: "aws".into(),
        tickets: tickets.len() as u64,
        poison_records: poison,
        deliveries,
        drain_secs: started.elapsed().as_secs_f64(),
        drained,
        ..SoakReport::default()
    };
    // Count what the dead-letter queue holds.
    let (mut parked, mut dead) = (0, HashSet::new());
    loop {
        let got = queue.receive(&dlq, 0, 30).await?;
        if got.is_empty() {
            break;
        }
        for m in got {
            match crate::queue::decode(&m.body) {
                Ok(t) => {
                    dead.insert(t.ticket_id);
                }
                Err(_) => parked += 1,
            }
        }
    }
    harness
        .check(&tickets, &dead, poison, parked, true, &mut report)
        .await?;
    Ok(report)
}
