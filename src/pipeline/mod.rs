//! Processes one ticket against the ports; no HTTP, SQL or AWS types here.
//!
//! claim (idempotency lease) → append the customer message → if a person
//! owns the conversation, forward and stop → history ‖ retrieval → rules →
//! generate → decide → write reply, status, usage and the outbox records
//! owed to the ticket's channel atomically → publish the escalation → mark
//! it notified.
//!
//! A duplicate delivery finds the ticket done and calls no model; a crash
//! anywhere before the atomic write leaves the ticket claimable again once
//! its lease expires; a crash after it but before the escalation was
//! published is repaired by the next delivery, which publishes again.

pub mod acts;
pub mod decide;
pub mod language;
pub mod rules;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{Instrument, info_span, warn};

use crate::config::Config;
use crate::domain::{
    ConversationStatus, Decision, Message, NewMessage, Outcome, ReasonCode, Role, Ticket, Usage,
};
use crate::knowledge::{Passage, RetrieveError, Retriever};
use crate::llm::{GenerateError, GenerateRequest, Generation, Generator};
use crate::notify::{Escalation, Escalator, TranscriptLine};
use crate::outbox::OutboundPolicy;
use crate::store::{Claim, ClaimToken, Completed, Completion, Store, StoreError, TicketRecord};

pub use decide::{Gate, decide};
pub use rules::{RuleHit, Rules};

/// Turns of transcript sent with an escalation.
const TRANSCRIPT_TURNS: usize = 6;
/// Characters of each transcript turn.
const TRANSCRIPT_CHARS: usize = 500;

/// Pipeline settings, from [`Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Earlier messages given to the generator.
    pub history_turns: usize,
    /// Passages retrieved.
    pub top_k: usize,
    /// How long a claim is held (the queue's visibility timeout).
    pub lease: Duration,
    /// Confidence threshold.
    pub gate: Gate,
    /// Below this best-passage relevance: `no_knowledge`, no model call.
    pub min_relevance: f32,
    /// What the customer sees on escalation.
    pub holding_message: String,
}

impl Settings {
    /// From the loaded configuration.
    pub fn from_config(c: &Config) -> Self {
        Self {
            history_turns: c.pipeline.history_turns,
            top_k: c.pipeline.top_k,
            lease: Duration::from_secs(c.queue.visibility_timeout_secs),
            gate: Gate {
                min_confidence: c.pipeline.min_confidence,
            },
            min_relevance: c.pipeline.min_relevance,
            holding_message: c.pipeline.holding_message.clone(),
        }
    }
}

/// How a delivery was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    /// Answered now.
    Answered,
    /// Escalated now, for this reason.
    Escalated(ReasonCode),
    /// Stored and forwarded to the person who owns the conversation.
    Forwarded,
    /// Finished by an earlier delivery; nothing done.
    AlreadyDone,
    /// Finished earlier but its escalation was not yet out; published now.
    Renotified,
}

/// Why a ticket could not be processed now, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A dependency failed in a way that may pass: retry with backoff.
    #[error("transient failure: {detail}")]
    Transient {
        /// What failed.
        detail: String,
        /// How long the dependency asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// Another worker holds the ticket: retry after its lease.
    #[error("ticket is being processed elsewhere until {until}")]
    Busy {
        /// When the other lease expires.
        until: DateTime<Utc>,
    },
    /// Retrying will not help: give up now (escalate and dead-letter).
    #[error("permanent failure: {0:#}")]
    Permanent(anyhow::Error),
}

impl From<StoreError> for ProcessError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Transient(detail) => ProcessError::Transient {
                detail,
                retry_after: None,
            },
            StoreError::NotFound(m) => ProcessError::Permanent(anyhow::anyhow!(m)),
            StoreError::Permanent(e) => ProcessError::Permanent(e),
        }
    }
}

impl From<RetrieveError> for ProcessError {
    fn from(e: RetrieveError) -> Self {
        match e {
            RetrieveError::Transient(detail) => ProcessError::Transient {
                detail,
                retry_after: None,
            },
            RetrieveError::Permanent(e) => ProcessError::Permanent(e),
        }
    }
}

/// What the pipeline concluded about a question (see [`Pipeline::think`]).
#[derive(Debug, Clone)]
pub struct Thought {
    /// Retrieved passages, best first.
    pub passages: Vec<Passage>,
    /// The rule that fired, if one did (then no model was called).
    pub rule: Option<RuleHit>,
    /// The generator's answer, if it was asked.
    pub generation: Option<Generation>,
    /// The decision.
    pub decision: Decision,
    /// Model usage.
    pub usage: Usage,
    /// The message's sentiment (VADER compound, -1..=1).
    pub sentiment: f64,
}

/// Retrieval, rules, generation and the gate: the part of the pipeline
/// that touches no store, and what `deskhand eval` measures.
pub struct Responder {
    retriever: Arc<dyn Retriever>,
    generator: Arc<dyn Generator>,
    rules: Rules,
    settings: Settings,
}

/// The ticket processor: a [`Responder`] between the store and the escalator.
pub struct Pipeline {
    store: Arc<dyn Store>,
    escalator: Arc<dyn Escalator>,
    responder: Responder,
    outbound: OutboundPolicy,
}

impl Responder {
    /// Wires a responder.
    pub fn new(
        retriever: Arc<dyn Retriever>,
        generator: Arc<dyn Generator>,
        rules: Rules,
        settings: Settings,
    ) -> Self {
        Self {
            retriever,
            generator,
            rules,
            settings,
        }
    }

    /// Retrieval, rules, generation and the gate for one question.
    pub async fn think(
        &self,
        question: &str,
        subject: Option<&str>,
    ) -> Result<Thought, ProcessError> {
        let query = match subject {
            Some(s) => format!("{s}\n{question}"),
            None => question.to_owned(),
        };
        let passages = self.retriever.retrieve(&query, self.settings.top_k).await?;
        self.think_with(
            question,
            subject,
            crate::domain::Channel::Widget,
            Vec::new(),
            passages,
        )
        .await
    }

    async fn think_with(
        &self,
        question: &str,
        subject: Option<&str>,
        channel: crate::domain::Channel,
        history: Vec<Message>,
        passages: Vec<Passage>,
    ) -> Result<Thought, ProcessError> {
        let escalate = |reason, detail: String| {
            Decision::Escalate(crate::domain::Escalate {
                reason,
                confidence: 0.0,
                detail,
                draft: None,
            })
        };
        let sentiment = self.rules.sentiment(question);
        if let Some(hit) = self.rules.check(question) {
            let decision = escalate(hit.reason, hit.detail.clone());
            return Ok(Thought {
                passages,
                rule: Some(hit),
                generation: None,
                decision,
                usage: Usage::default(),
                sentiment,
            });
        }
        let best = passages.first().map_or(0.0, |p| p.relevance);
        if best < self.settings.min_relevance {
            let decision = escalate(
                ReasonCode::NoKnowledge,
                format!(
                    "best passage relevance {best:.2} < {:.2}",
                    self.settings.min_relevance
                ),
            );
            return Ok(Thought {
                passages,
                rule: None,
                generation: None,
                decision,
                usage: Usage::default(),
                sentiment,
            });
        }
        let request = GenerateRequest {
            question: question.to_owned(),
            subject: subject.map(str::to_owned),
            history,
            passages,
            channel,
        };
        let mut usage = Usage::default();
        // Malformed output is retried once, then handed to a person.
        let mut malformed = None;
        for _ in 0..2 {
            match self.generator.generate(&request).await {
                Ok(generation) => {
                    usage.add(&generation.usage);
                    let decision = decide(self.settings.gate, &generation, &request.passages);
                    return Ok(Thought {
                        passages: request.passages,
                        rule: None,
                        generation: Some(generation),
                        decision,
                        usage,
                        sentiment,
                    });
                }
                Err(GenerateError::Malformed {
                    detail,
                    usage: spent,
                }) => {
                    usage.add(&spent);
                    warn!(message = "Model output unusable.", error = %detail);
                    malformed = Some(detail);
                }
                Err(GenerateError::Transient {
                    detail,
                    retry_after,
                    ..
                }) => {
                    return Err(ProcessError::Transient {
                        detail,
                        retry_after,
                    });
                }
                Err(GenerateError::Permanent(e)) => return Err(ProcessError::Permanent(e)),
            }
        }
        let detail = format!(
            "model output unusable twice: {}",
            malformed.unwrap_or_default()
        );
        Ok(Thought {
            passages: request.passages,
            rule: None,
            generation: None,
            decision: escalate(ReasonCode::ModelRefused, detail),
            usage,
            sentiment,
        })
    }
}

impl Pipeline {
    /// Wires a pipeline.
    pub fn new(store: Arc<dyn Store>, escalator: Arc<dyn Escalator>, responder: Responder) -> Self {
        Self {
            store,
            escalator,
            responder,
            outbound: OutboundPolicy::default(),
        }
    }

    /// Also writes the outbox records `policy` asks for (email and helpdesk
    /// replies, helpdesk escalations) with each completion.
    pub fn with_outbound(mut self, policy: OutboundPolicy) -> Self {
        self.outbound = policy;
        self
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.responder.settings
    }

    /// Processes one delivery of `ticket`.
    pub async fn process(&self, ticket: &Ticket) -> Result<Processed, ProcessError> {
        let span = info_span!("ticket", ticket_id = %ticket.ticket_id, conversation_id = %ticket.conversation_id);
        self.process_inner(ticket).instrument(span).await
    }

    async fn process_inner(&self, ticket: &Ticket) -> Result<Processed, ProcessError> {
        let token = match self.store.claim(ticket, self.settings().lease).await? {
            Claim::Done(record) if record.notified => return Ok(Processed::AlreadyDone),
            Claim::Done(record) => {
                self.renotify(ticket, &record).await?;
                return Ok(Processed::Renotified);
            }
            Claim::Busy { until } => return Err(ProcessError::Busy { until }),
            Claim::Acquired {
                token, redriven, ..
            } => (token, redriven),
        };
        let (token, redriven) = token;
        let result = self.process_claimed(ticket, token, redriven).await;
        if result.is_err()
            && let Err(error) = self.store.release(ticket.ticket_id, token).await
        {
            warn!(message = "Could not release a failed ticket's lease; its retry waits for expiry.", %error);
        }
        result
    }

    async fn process_claimed(
        &self,
        ticket: &Ticket,
        token: ClaimToken,
        redriven: bool,
    ) -> Result<Processed, ProcessError> {
        let conv = ticket.conversation_id;
        self.store
            .append(
                conv,
                NewMessage::customer(ticket.ticket_id, ticket.text.as_str(), ticket.received_at),
            )
            .await?;
        let (mut status, escalated_for) = self
            .store
            .conversation(conv)
            .await?
            .map_or((ConversationStatus::Open, None), |c| {
                (c.status, c.escalation_reason)
            });
        // A redriven ticket is tried again even though its own failure
        // escalated the conversation; any other escalation silences the bot.
        let resumed = redriven
            && status == ConversationStatus::Escalated
            && escalated_for == Some(ReasonCode::ProcessingFailed);
        if resumed {
            status = ConversationStatus::Open;
        }

        if status == ConversationStatus::Escalated {
            // A person owns this conversation: the bot stays silent and the
            // person hears about the new message.
            let written = self
                .store
                .complete(Completion {
                    ticket_id: ticket.ticket_id,
                    conversation_id: conv,
                    token: Some(token),
                    outcome: Outcome::Forwarded,
                    reason: Some(ReasonCode::FollowUp),
                    confidence: 0.0,
                    message: None,
                    status: None,
                    usage: Usage::default(),
                    needs_notification: true,
                    outbox: Vec::new(),
                })
                .await?;
            lost_claim(written)?;
            let history = self.store.history(conv, TRANSCRIPT_TURNS).await?;
            let e = self.escalation(
                ticket,
                ReasonCode::FollowUp,
                0.0,
                "customer wrote again".into(),
                None,
                &history,
            );
            self.publish(ticket, &e).await?;
            return Ok(Processed::Forwarded);
        }

        let query = match &ticket.subject {
            Some(s) => format!("{s}\n{}", ticket.text.as_str()),
            None => ticket.text.as_str().to_owned(),
        };
        let r = &self.responder;
        let (history, passages) = tokio::join!(
            self.store.history(conv, r.settings.history_turns + 1),
            r.retriever.retrieve(&query, r.settings.top_k),
        );
        let mut history = history?;
        history.retain(|m| m.body.ticket_id != Some(ticket.ticket_id));
        let thought = r
            .think_with(
                ticket.text.as_str(),
                ticket.subject.as_deref(),
                ticket.channel(),
                history.clone(),
                passages?,
            )
            .await?;

        let (outcome, reason, confidence, message, new_status) = match &thought.decision {
            Decision::Answer(reply) => (
                Outcome::Answered,
                None,
                reply.confidence,
                NewMessage::reply_to(
                    ticket.ticket_id,
                    Role::Assistant,
                    &reply.text,
                    reply.sources.clone(),
                ),
                (status == ConversationStatus::Closed || resumed)
                    .then_some(ConversationStatus::Open),
            ),
            Decision::Escalate(e) => (
                Outcome::Escalated,
                Some(e.reason),
                e.confidence,
                NewMessage::reply_to(
                    ticket.ticket_id,
                    Role::System,
                    &self.settings().holding_message,
                    Vec::new(),
                ),
                Some(ConversationStatus::Escalated),
            ),
        };
        let outbox = match &thought.decision {
            Decision::Answer(reply) => {
                self.outbound
                    .answer(ticket, &message.id, &reply.text, &reply.sources)
            }
            Decision::Escalate(e) => self.outbound.escalation(
                ticket,
                Some((&message.id, &message.text)),
                e.reason,
                &e.detail,
                e.draft.as_ref().map(|d| d.text.as_str()),
            ),
        };
        let written = self
            .store
            .complete(Completion {
                ticket_id: ticket.ticket_id,
                conversation_id: conv,
                token: Some(token),
                outcome,
                reason,
                confidence,
                message: Some(message),
                status: new_status,
                usage: thought.usage.clone(),
                needs_notification: reason.is_some(),
                outbox,
            })
            .await?;
        lost_claim(written)?;
        self.outbound.nudge();
        match thought.decision {
            Decision::Answer(_) => Ok(Processed::Answered),
            Decision::Escalate(e) => {
                history.push(Message {
                    seq: u64::MAX,
                    body: NewMessage::customer(
                        ticket.ticket_id,
                        ticket.text.as_str(),
                        ticket.received_at,
                    ),
                });
                let draft = e.draft.map(|d| d.text);
                let esc =
                    self.escalation(ticket, e.reason, e.confidence, e.detail, draft, &history);
                self.publish(ticket, &esc).await?;
                Ok(Processed::Escalated(e.reason))
            }
        }
    }

    /// The last attempt failed (or the failure is permanent): mark the
    /// conversation escalated, record the ticket as dead-lettered, and tell
    /// a person. The store part is best effort; the notification is not:
    /// an `Err` means nobody was told and the caller must retry.
    pub async fn give_up(&self, ticket: &Ticket, detail: &str) -> Result<(), ProcessError> {
        let conv = ticket.conversation_id;
        let stored: Result<bool, StoreError> = async {
            if let Claim::Done(record) = self.store.claim(ticket, self.settings().lease).await? {
                // Finished after all (a slow worker): only its escalation may be owed.
                if !record.notified {
                    self.renotify(ticket, &record)
                        .await
                        .map_err(|e| StoreError::Transient(e.to_string()))?;
                }
                return Ok(false);
            }
            self.store
                .append(
                    conv,
                    NewMessage::customer(
                        ticket.ticket_id,
                        ticket.text.as_str(),
                        ticket.received_at,
                    ),
                )
                .await?;
            let already = self
                .store
                .conversation(conv)
                .await?
                .is_some_and(|c| c.status == ConversationStatus::Escalated);
            let notice = (!already).then(|| {
                NewMessage::failure_notice(ticket.ticket_id, &self.settings().holding_message)
            });
            let outbox = self.outbound.escalation(
                ticket,
                notice.as_ref().map(|m| (m.id.as_str(), m.text.as_str())),
                ReasonCode::ProcessingFailed,
                detail,
                None,
            );
            self.store
                .complete(Completion {
                    ticket_id: ticket.ticket_id,
                    conversation_id: conv,
                    token: None,
                    outcome: Outcome::DeadLettered,
                    reason: Some(ReasonCode::ProcessingFailed),
                    confidence: 0.0,
                    message: notice,
                    status: Some(ConversationStatus::Escalated),
                    usage: Usage::default(),
                    needs_notification: true,
                    outbox,
                })
                .await?;
            self.outbound.nudge();
            Ok(true)
        }
        .await;
        let history = match &stored {
            Ok(false) => return Ok(()),
            Ok(true) => self
                .store
                .history(conv, TRANSCRIPT_TURNS)
                .await
                .unwrap_or_default(),
            Err(error) => {
                warn!(message = "Could not record a failed ticket; notifying anyway.", %error, ticket_id = %ticket.ticket_id);
                Vec::new()
            }
        };
        let mut e = self.escalation(
            ticket,
            ReasonCode::ProcessingFailed,
            0.0,
            detail.to_owned(),
            None,
            &history,
        );
        if history.is_empty() {
            e.transcript = vec![TranscriptLine {
                role: Role::Customer,
                text: excerpt(ticket.text.as_str()),
            }];
        }
        self.escalator
            .escalate(&e)
            .await
            .map_err(|err| ProcessError::Transient {
                detail: err.to_string(),
                retry_after: None,
            })?;
        // A person has been told about this ticket: record it, whether or not
        // the completion above could be written (if the ticket was finished
        // earlier, this settles its pending notification too).
        if let Err(error) = self.store.mark_notified(ticket.ticket_id).await {
            warn!(message = "Escalation sent but not recorded; it may be sent again.", %error);
        }
        Ok(())
    }

    /// Tells a person about a queue record nobody can read. `body` is the
    /// raw record; only an excerpt is sent.
    pub async fn escalate_unreadable(&self, body: &str, detail: &str) -> Result<(), ProcessError> {
        let ids: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let id = |k: &str| ids.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let e = Escalation {
            ticket_id: id("ticket_id").and_then(|s| s.parse().ok()),
            conversation_id: id("conversation_id").and_then(|s| s.parse().ok()),
            channel: id("channel").and_then(|s| s.parse().ok()),
            provider: id("provider").and_then(|s| s.parse().ok()),
            reason: ReasonCode::Unparseable,
            priority: ReasonCode::Unparseable.priority(),
            confidence: 0.0,
            detail: detail.to_owned(),
            customer: Default::default(),
            subject: None,
            last_message: excerpt(body),
            transcript: Vec::new(),
            draft: None,
            link: None,
            at: Utc::now(),
        };
        self.escalator
            .escalate(&e)
            .await
            .map_err(|err| ProcessError::Transient {
                detail: err.to_string(),
                retry_after: None,
            })
    }

    async fn renotify(&self, ticket: &Ticket, record: &TicketRecord) -> Result<(), ProcessError> {
        let reason = record.reason.unwrap_or(ReasonCode::ProcessingFailed);
        let history = self
            .store
            .history(ticket.conversation_id, TRANSCRIPT_TURNS)
            .await?;
        let e = self.escalation(
            ticket,
            reason,
            record.confidence,
            "re-sent after an interrupted delivery".into(),
            None,
            &history,
        );
        self.publish(ticket, &e).await
    }

    async fn publish(&self, ticket: &Ticket, e: &Escalation) -> Result<(), ProcessError> {
        self.escalator
            .escalate(e)
            .await
            .map_err(|err| ProcessError::Transient {
                detail: err.to_string(),
                retry_after: None,
            })?;
        self.store.mark_notified(ticket.ticket_id).await?;
        Ok(())
    }

    fn escalation(
        &self,
        ticket: &Ticket,
        reason: ReasonCode,
        confidence: f32,
        detail: String,
        draft: Option<String>,
        history: &[Message],
    ) -> Escalation {
        let start = history.len().saturating_sub(TRANSCRIPT_TURNS);
        Escalation {
            ticket_id: Some(ticket.ticket_id),
            conversation_id: Some(ticket.conversation_id),
            channel: Some(ticket.channel()),
            provider: Some(ticket.provider),
            reason,
            priority: reason.priority(),
            confidence,
            detail,
            customer: ticket.customer.clone(),
            subject: ticket.subject.clone(),
            last_message: excerpt(ticket.text.as_str()),
            transcript: history[start..]
                .iter()
                .map(|m| TranscriptLine {
                    role: m.body.role,
                    text: excerpt(&m.body.text),
                })
                .collect(),
            draft,
            link: Some(format!(
                "/v1/conversations/{}/messages",
                ticket.conversation_id
            )),
            at: Utc::now(),
        }
    }
}

fn lost_claim(written: Completed) -> Result<(), ProcessError> {
    match written {
        Completed::Written => Ok(()),
        // Someone else finished or re-took it; let the queue deliver again,
        // and the next delivery will find it done.
        Completed::LostClaim => Err(ProcessError::Busy { until: Utc::now() }),
    }
}

fn excerpt(text: &str) -> String {
    let mut s: String = text.chars().take(TRANSCRIPT_CHARS).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}
