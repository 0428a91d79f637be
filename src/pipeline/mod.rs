//! Processes one ticket against the ports; no HTTP, SQL or AWS types here.
//!
//! [begin: claim (idempotency lease) + append the customer message + read
//! the conversation's state, one atomic store step ‖ history ‖ retrieval] →
//! if a person owns the conversation, forward and stop → rules →
//! conversation acts → generate → decide → [write reply, status, usage and
//! the outbox records owed to the ticket's channel atomically ‖ publish the
//! escalation] → mark it notified, off the ticket's path. An answered
//! ticket is three sequential steps: the first bracket, the model, the
//! completion; an escalated one too, its publication beside the completion.
//!
//! A duplicate delivery finds the ticket done and calls no model; a crash
//! anywhere before the atomic write leaves the ticket claimable again once
//! its lease expires; a crash after it, or a publication that failed, is
//! repaired by the next delivery, which finds the ticket done but not
//! marked notified and publishes again.
//!
//! **Escalations at the floor.** The completion records `notified = false`
//! and the escalation is published at the same time; only when both have
//! succeeded is the ticket marked notified, in a task of its own after the
//! ticket has been handled (the record may already be deleted from the
//! queue by then). Nothing is lost this way: the flag is written only after
//! a publication succeeded, so a ticket marked notified was notified; a mark
//! that never lands only means a redelivery would publish again. What the
//! overlap costs: when the completion fails (a store error, or the claim
//! lost to another worker) after the publication went out, a person hears
//! of an attempt whose result was not kept, and the retry may tell them
//! again. At-least-once, as before; never none.
//!
//! **Conversation acts.** A message that is only a greeting, thanks, an
//! acknowledgement or a goodbye ([`acts`]) gets a short reply in its
//! language and never escalates (outcome `acknowledged`, or `confirmed` for
//! thanks right after a bot answer); it leaves the conversation's status as
//! it is. A greeting around a question is the question.
//!
//! **When the bot falls silent.** An escalated conversation is silent
//! (each new message is forwarded to the person, `follow_up`) with one
//! exception: in a chat (widget) escalated for `no_knowledge`,
//! `low_confidence` or `unsupported_language`, the bot goes on answering
//! the customer's next questions until a person has replied there. Why:
//! those reasons say only that the bot could not answer *that* question.
//! The customer did not ask for a person, and is still in the chat, waiting;
//! a bot gone dumb for good after "hi" or one odd question is what made
//! customers give up. The person still gets that question (the escalation
//! is published, the status stays `escalated` until they close or hand it
//! back). Every other reason asks for a person (asked_for_human,
//! sensitive_topic, negative_sentiment, unhelpful, needs_account_data,
//! model_refused, delivery_failed…), and once an agent has replied (their
//! message is the last non-customer one in the recent history; none in
//! sight counts as a person on it) the bot must not talk over them. Email
//! and helpdesk threads are not chats: an escalated thread goes to a
//! person whole, and the bot does not interleave replies in a customer's
//! mailbox. The decision reads only what the stores already keep (status,
//! escalation reason, messages), so neither store changes.

pub mod actions;
pub mod acts;
pub mod decide;
pub mod followup;
pub mod language;
pub mod rules;
mod settings;
pub use settings::PipelineSettings;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{Instrument, info_span, warn};

use crate::domain::{
    Channel, ConversationStatus, Decision, Message, NewMessage, Outcome, ReasonCode, Reply, Role,
    Ticket, TicketId, Usage,
};
use crate::knowledge::{Passage, RetrieveError, Retriever};
use crate::llm::{GenerateError, GenerateRequest, Generation, Generator};
use crate::notify::{Escalation, Escalator, TranscriptLine};
use crate::outbox::OutboundPolicy;
use crate::store::{
    Begin, Begun, ClaimToken, Completed, Completion, Store, StoreError, TicketRecord,
};

pub use acts::{Act, ActKind, ActReplies};
pub use decide::{Gate, decide};
pub use language::Language;
pub use rules::{Assessment, RuleHit, Rules};

/// Turns of transcript sent with an escalation.
const TRANSCRIPT_TURNS: usize = 6;
/// Characters of each transcript turn.
const TRANSCRIPT_CHARS: usize = 500;

/// Pipeline settings, from the configuration (`Policy::from_config`).
#[derive(Debug, Clone)]
pub struct Policy {
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
    /// What a chat customer sees when the bot stays on after escalating.
    pub chat_holding_message: String,
    /// Replies to conversation acts, by language.
    pub act_replies: std::collections::BTreeMap<String, ActReplies>,
    /// The generator is the extractive one: it answers only in the
    /// knowledge base's own words, so it cannot answer another language.
    pub extractive: bool,
    /// Brand or product labels by provider or channel (`[retriever.labels]`).
    pub labels: std::collections::BTreeMap<String, Vec<String>>,
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
    /// A greeting, thanks or goodbye, answered in kind.
    Acknowledged,
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
    /// The message's sentiment (VADER compound, -1..=1; 0 if not English).
    pub sentiment: f64,
    /// The conversation act the message was, if it was nothing else.
    pub act: Option<Act>,
    /// The message's language, when it is clear.
    pub language: Option<Language>,
}

impl Thought {
    /// A decision to hand the ticket to a person, made before any model.
    fn escalation(reason: ReasonCode, detail: String, passages: Vec<Passage>) -> Self {
        Self {
            passages,
            rule: None,
            generation: None,
            decision: Decision::Escalate(crate::domain::Escalate {
                reason,
                confidence: 0.0,
                detail,
                draft: None,
            }),
            usage: Usage::default(),
            sentiment: 0.0,
            act: None,
            language: None,
        }
    }
}

/// Why an email ticket is held for a person, if its sender failed the
/// provider's authentication checks (see `ingest::email::auth`).
fn held_sender(ticket: &Ticket) -> Option<String> {
    let auth = ticket.customer.email_auth.filter(|a| a.spoofed())?;
    let show = |v: Option<crate::domain::AuthVerdict>| v.map_or("-", |v| v.as_str());
    Some(format!(
        "sender failed authentication (spf={}, dkim={}, dmarc={}): held, nothing sent to the From address",
        show(auth.spf),
        show(auth.dkim),
        show(auth.dmarc)
    ))
}

/// Retrieval, rules, generation and the gate: the part of the pipeline
/// that touches no store, and what `deskhand eval` measures.
pub struct Responder {
    retriever: Arc<dyn Retriever>,
    generator: Arc<dyn Generator>,
    rules: Rules,
    settings: Policy,
    actions: Option<Arc<crate::actions::Actions>>,
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
        settings: Policy,
    ) -> Self {
        Self {
            retriever,
            generator,
            rules,
            settings,
            actions: None,
        }
    }

    /// Answers from the configured actions first (see [`actions`]).
    pub fn with_actions(mut self, actions: Arc<crate::actions::Actions>) -> Self {
        self.actions = (!actions.is_empty()).then_some(actions);
        self
    }

    /// Retrieval, rules, generation and the gate for one question.
    pub async fn think(
        &self,
        question: &str,
        subject: Option<&str>,
    ) -> Result<Thought, ProcessError> {
        let passages = self
            .retriever
            .retrieve(&query(question, subject), self.settings.top_k)
            .await?;
        self.think_with(
            question,
            subject,
            Channel::Widget,
            Vec::new(),
            passages,
            None,
        )
        .await
    }

    async fn think_with(
        &self,
        text: &str,
        subject: Option<&str>,
        channel: Channel,
        history: Vec<Message>,
        passages: Vec<Passage>,
        tools: Option<&crate::actions::tools::ActionTools>,
    ) -> Result<Thought, ProcessError> {
        let escalate = |reason, detail: String| {
            Decision::Escalate(crate::domain::Escalate {
                reason,
                confidence: 0.0,
                detail,
                draft: None,
            })
        };
        let assessment = self.rules.assess(text, subject, after_answer(&history));
        let (sentiment, language) = (assessment.sentiment, assessment.language);
        let thought = |passages, rule, generation, decision, usage, act| Thought {
            passages,
            rule,
            generation,
            decision,
            usage,
            sentiment,
            act,
            language,
        };
        // With action tools, an account question is what the tools answer.
        if let Some(hit) = assessment
            .hit
            .filter(|h| !(tools.is_some() && h.reason == ReasonCode::NeedsAccountData))
        {
            let decision = escalate(hit.reason, hit.detail.clone());
            return Ok(thought(
                passages,
                Some(hit),
                None,
                decision,
                Usage::default(),
                None,
            ));
        }
        let parsed = acts::parse(text);
        if let Some(act) = parsed.act.filter(|_| subject_is_no_question(subject)) {
            let reply = Reply {
                text: acts::reply(&self.settings.act_replies, &act),
                sources: Vec::new(),
                confidence: 1.0,
            };
            return Ok(thought(
                passages,
                None,
                None,
                Decision::Answer(reply),
                Usage::default(),
                Some(act),
            ));
        }
        let question = if parsed.question.is_empty() {
            text
        } else {
            parsed.question
        };
        // The extractive generator quotes the knowledge base: it cannot
        // answer in another language, and saying so is the honest reason.
        let foreign = language.filter(|l| self.settings.extractive && !l.is_english());
        let unanswerable = |reason: ReasonCode, detail: String| match foreign {
            Some(l) if matches!(reason, ReasonCode::NoKnowledge | ReasonCode::LowConfidence) => (
                ReasonCode::UnsupportedLanguage,
                format!(
                    "written in {}; the extractive generator answers only in the knowledge base's words ({detail})",
                    l.name
                ),
            ),
            _ => (reason, detail),
        };
        let best = passages.first().map_or(0.0, |p| p.relevance);
        if best < self.settings.min_relevance && tools.is_none() {
            let (reason, detail) = unanswerable(
                ReasonCode::NoKnowledge,
                format!(
                    "best passage relevance {best:.2} < {:.2}",
                    self.settings.min_relevance
                ),
            );
            return Ok(thought(
                passages,
                None,
                None,
                escalate(reason, detail),
                Usage::default(),
                None,
            ));
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
            let generated = match tools {
                Some(t) => self.generator.generate_with_tools(&request, t).await,
                None => self.generator.generate(&request).await,
            };
            match generated {
                Ok(generation) => {
                    usage.add(&generation.usage);
                    let (mut request, mut decision) = (request.clone(), None);
                    if let Some(t) = tools {
                        actions::account(t, &mut usage, &mut request.passages, &mut decision);
                    }
                    let mut decision = decision.unwrap_or_else(|| {
                        decide(self.settings.gate, &generation, &request.passages)
                    });
                    if let Decision::Escalate(e) = &mut decision {
                        (e.reason, e.detail) =
                            unanswerable(e.reason, std::mem::take(&mut e.detail));
                    }
                    return Ok(thought(
                        request.passages,
                        None,
                        Some(generation),
                        decision,
                        usage,
                        None,
                    ));
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
        let mut decision = Some(escalate(ReasonCode::ModelRefused, detail));
        let mut passages = request.passages;
        if let Some(t) = tools {
            actions::account(t, &mut usage, &mut passages, &mut decision);
        }
        Ok(thought(
            passages,
            None,
            None,
            decision.expect("set above"),
            usage,
            None,
        ))
    }
}

/// The retrieval query: the subject and the question without the
/// greetings and thanks around it.
/// What retrieval prefers and admits for `ticket`: the customer's language
/// preferred, the conversation's brand (or else the channel's) only.
fn retrieval_filter(ticket: &Ticket, settings: &Policy) -> crate::knowledge::filter::Filter {
    crate::knowledge::filter::Filter::for_ticket(
        language::detect(ticket.text.as_str()).map(|l| l.code),
        ticket.brand.as_ref().map(|b| b.as_str()),
        ticket.provider.as_str(),
        ticket.channel().as_str(),
        &settings.labels,
    )
}

fn query(text: &str, subject: Option<&str>) -> String {
    let question = acts::parse(text).question;
    let question = if question.is_empty() { text } else { question };
    match subject {
        Some(s) => format!("{s}\n{question}"),
        None => question.to_owned(),
    }
}

/// A subject that asks nothing itself: none, a reply's ("Re: …", whose
/// question was answered in the thread), or a pleasantry. Under any other
/// ("How do I export?") a body of "Hi, thanks" is no act: the question is
/// the subject.
fn subject_is_no_question(subject: Option<&str>) -> bool {
    let Some(s) = subject.map(str::trim).filter(|s| !s.is_empty()) else {
        return true;
    };
    let lower = s.to_lowercase();
    [
        "re:", "aw:", "sv:", "antw:", "r:", "res:", "rv:", "wg:", "fw:", "fwd:", "tr:",
    ]
    .iter()
    .any(|p| lower.starts_with(p))
        || acts::parse(s).act.is_some()
}

/// Whether the bot's last message in `history` was an answer from the
/// knowledge base (it cites sources), not an act's reply or a notice.
fn after_answer(history: &[Message]) -> bool {
    history
        .iter()
        .rev()
        .find(|m| m.body.role != Role::Customer)
        .is_some_and(|m| m.body.role == Role::Assistant && !m.body.sources.is_empty())
}

/// Escalations after which the bot keeps answering a chat: it could not
/// answer *this* question, but nothing says the customer wants a person
/// for the next one (see [`Pipeline`]).
fn bot_stays_on(reason: ReasonCode) -> bool {
    matches!(
        reason,
        ReasonCode::NoKnowledge | ReasonCode::LowConfidence | ReasonCode::UnsupportedLanguage
    )
}

/// In a conversation escalated for a [`bot_stays_on`] reason, whether a
/// person has taken over since: the last message not from the customer is
/// an agent's (or there is none in sight: then a person is assumed to be on
/// it, the safe side).
fn person_took_over(history: &[Message]) -> bool {
    history
        .iter()
        .rev()
        .find(|m| m.body.role != Role::Customer)
        .is_none_or(|m| m.body.role == Role::Agent)
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

    /// Runs the ticket path's pure parts once on a made-up message, so what
    /// they build on first use (the rules' regex caches, VADER's tables, the
    /// conversation acts' and languages' patterns) is built at start-up
    /// rather than by the first ticket.
    pub fn warm_up(&self) {
        const TEXT: &str = "Hi! How do I turn on two-factor authentication? Thanks.";
        let r = &self.responder;
        let _ = r.rules.assess(TEXT, None, false);
        let _ = query(TEXT, Some("Two-factor authentication"));
        let _ = subject_is_no_question(Some("Re: two-factor"));
        let _ = followup::query(TEXT, &[]);
        let _ = language::detect(TEXT);
    }

    /// The settings in use.
    pub fn settings(&self) -> &Policy {
        &self.responder.settings
    }

    /// Processes one delivery of `ticket`.
    pub async fn process(&self, ticket: &Ticket) -> Result<Processed, ProcessError> {
        let span = info_span!("ticket", ticket_id = %ticket.ticket_id, conversation_id = %ticket.conversation_id);
        self.process_inner(ticket).instrument(span).await
    }

    async fn process_inner(&self, ticket: &Ticket) -> Result<Processed, ProcessError> {
        // The first of at most three sequential steps: the store's one
        // atomic begin (claim + customer message + conversation state) beside
        // the history read and the retrieval (see the module docs).
        let conv = ticket.conversation_id;
        let r = &self.responder;
        let query = query(ticket.text.as_str(), ticket.subject.as_deref());
        let customer =
            NewMessage::customer(ticket.ticket_id, ticket.text.as_str(), ticket.received_at);
        let filter = retrieval_filter(ticket, &r.settings);
        let (begun, history, passages) = tokio::join!(
            self.store.begin(ticket, customer, self.settings().lease),
            self.store.history(conv, r.settings.history_turns + 1),
            r.retriever
                .retrieve_filtered(&query, r.settings.top_k, &filter),
        );
        let begun = match begun? {
            Begin::Done(record) if record.notified => return Ok(Processed::AlreadyDone),
            Begin::Done(record) => {
                self.renotify(ticket, &record, history.ok()).await?;
                return Ok(Processed::Renotified);
            }
            Begin::Busy { until } => return Err(ProcessError::Busy { until }),
            Begin::Acquired(begun) => begun,
        };
        let token = begun.token;
        let result = async {
            let mut history = history?;
            history.retain(|m| m.body.ticket_id != Some(ticket.ticket_id));
            // Read beside `begin`, the history may or may not hold this
            // ticket's own message yet: either way, the turns before it.
            let keep = r.settings.history_turns;
            if history.len() > keep {
                history.drain(..history.len() - keep);
            }
            self.process_claimed(ticket, &begun, history, passages, &filter)
                .await
        }
        .await;
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
        begun: &Begun,
        mut history: Vec<Message>,
        passages: Result<Vec<Passage>, RetrieveError>,
        filter: &crate::knowledge::filter::Filter,
    ) -> Result<Processed, ProcessError> {
        let conv = ticket.conversation_id;
        let token = begun.token;
        let (mut status, escalated_for) = (begun.state.status, begun.state.escalation_reason);
        // A redriven ticket is tried again even though its own failure
        // escalated the conversation; any other escalation silences the bot.
        let resumed = begun.redriven
            && status == ConversationStatus::Escalated
            && escalated_for == Some(ReasonCode::ProcessingFailed);
        if resumed {
            status = ConversationStatus::Open;
        }

        // After an escalation the bot stays silent, except in a chat
        // escalated only because the bot could not answer, until a person
        // has replied there (see the module docs).
        let chat = ticket.channel() == Channel::Widget;
        let stays_on = status == ConversationStatus::Escalated
            && chat
            && escalated_for.is_some_and(bot_stays_on);
        if status == ConversationStatus::Escalated && (!stays_on || person_took_over(&history)) {
            return self.forward(ticket, token, history).await;
        }

        let r = &self.responder;
        // A follow-up is retrieved with the question it follows (a second
        // lookup, only for such messages).
        let passages = match followup::query(ticket.text.as_str(), &history) {
            Some(q) => {
                r.retriever
                    .retrieve_filtered(&q, r.settings.top_k, filter)
                    .await
            }
            None => passages,
        };
        let confirms = after_answer(&history);
        let thought = match held_sender(ticket) {
            // A forged sender is answered by nobody but a person.
            Some(detail) => Thought::escalation(ReasonCode::UnverifiedSender, detail, passages?),
            None => match r.act(ticket, &history).await {
                actions::Acted::Answered(thought) => *thought,
                acted => {
                    r.think_with(
                        ticket.text.as_str(),
                        ticket.subject.as_deref(),
                        ticket.channel(),
                        history.clone(),
                        passages?,
                        acted.tools(),
                    )
                    .await?
                }
            },
        };

        let reopen =
            (status == ConversationStatus::Closed || resumed).then_some(ConversationStatus::Open);
        let (outcome, reason, confidence, message, new_status) =
            match (&thought.decision, thought.act) {
                // A pleasantry is answered in kind and changes nothing; thanks
                // after an answer confirm it. Outside a chat only a greeting
                // gets a reply: a "you're welcome" email to a "thanks" email is
                // noise.
                (Decision::Answer(reply), Some(act)) => (
                    if act.thanks && confirms {
                        Outcome::Confirmed
                    } else {
                        Outcome::Acknowledged
                    },
                    None,
                    reply.confidence,
                    (chat || act.kind == ActKind::Greeting).then(|| {
                        NewMessage::reply_to(
                            ticket.ticket_id,
                            Role::Assistant,
                            &reply.text,
                            Vec::new(),
                        )
                    }),
                    resumed.then_some(ConversationStatus::Open),
                ),
                (Decision::Answer(reply), None) => (
                    Outcome::Answered,
                    None,
                    reply.confidence,
                    Some(NewMessage::reply_to(
                        ticket.ticket_id,
                        Role::Assistant,
                        &reply.text,
                        reply.sources.clone(),
                    )),
                    reopen,
                ),
                (Decision::Escalate(e), _) => (
                    Outcome::Escalated,
                    Some(e.reason),
                    e.confidence,
                    Some(NewMessage::reply_to(
                        ticket.ticket_id,
                        Role::System,
                        if chat && bot_stays_on(e.reason) {
                            &self.settings().chat_holding_message
                        } else {
                            &self.settings().holding_message
                        },
                        Vec::new(),
                    )),
                    Some(ConversationStatus::Escalated),
                ),
            };
        let outbox = match (&thought.decision, &message) {
            (_, None) => Vec::new(),
            (Decision::Answer(reply), Some(m)) => self.outbound.answer_in(
                ticket,
                &m.id,
                &reply.text,
                &reply.sources,
                thought.language.map(|l| l.code),
            ),
            (Decision::Escalate(e), Some(m)) => self.outbound.escalation(
                ticket,
                Some((&m.id, &m.text)),
                e.reason,
                &e.detail,
                e.draft.as_ref().map(|d| d.text.as_str()),
            ),
        };
        let escalation = match &thought.decision {
            Decision::Answer(_) => None,
            Decision::Escalate(e) => {
                history.push(Message {
                    seq: u64::MAX,
                    body: NewMessage::customer(
                        ticket.ticket_id,
                        ticket.text.as_str(),
                        ticket.received_at,
                    ),
                });
                let draft = e.draft.as_ref().map(|d| d.text.clone());
                Some(self.escalation(
                    ticket,
                    e.reason,
                    e.confidence,
                    e.detail.clone(),
                    draft,
                    &history,
                ))
            }
        };
        self.finish(
            Completion {
                ticket_id: ticket.ticket_id,
                conversation_id: conv,
                token: Some(token),
                outcome,
                reason,
                confidence,
                message,
                status: new_status,
                usage: thought.usage.clone(),
                needs_notification: reason.is_some(),
                outbox,
            },
            escalation.as_ref(),
        )
        .await?;
        match thought.decision {
            Decision::Answer(_) if thought.act.is_some() => Ok(Processed::Acknowledged),
            Decision::Answer(_) => Ok(Processed::Answered),
            Decision::Escalate(e) => Ok(Processed::Escalated(e.reason)),
        }
    }

    /// Writes `done` and, when a person must hear of the ticket, publishes
    /// `escalation` at the same time; then marks it notified off the
    /// ticket's path (see the module docs). An `Err` when either failed:
    /// the completion's error first (nothing was kept; the ticket is retried
    /// whole), else the publication's (the ticket is done and not marked
    /// notified: its redelivery publishes again).
    async fn finish(
        &self,
        done: Completion,
        escalation: Option<&Escalation>,
    ) -> Result<(), ProcessError> {
        let ticket = done.ticket_id;
        let Some(e) = escalation else {
            lost_claim(self.store.complete(done).await?)?;
            self.outbound.nudge();
            return Ok(());
        };
        let (written, published) =
            tokio::join!(self.store.complete(done), self.escalator.escalate(e));
        lost_claim(written?)?;
        self.outbound.nudge();
        published.map_err(|err| ProcessError::Transient {
            detail: err.to_string(),
            retry_after: None,
        })?;
        self.mark_notified_later(ticket);
        Ok(())
    }

    /// Records that a person was told of `ticket`, in a task of its own: the
    /// ticket does not wait for this bookkeeping write (see the module docs).
    fn mark_notified_later(&self, ticket: TicketId) {
        let store = self.store.clone();
        tokio::spawn(
            async move {
                if let Err(error) = store.mark_notified(ticket).await {
                    warn!(message = "Escalation sent but not recorded; a redelivery may send it again.", %error, ticket_id = %ticket);
                }
            }
            .in_current_span(),
        );
    }

    /// A person owns this conversation: the bot stays silent, the message
    /// is stored (it was appended) and the person hears about it.
    async fn forward(
        &self,
        ticket: &Ticket,
        token: ClaimToken,
        mut history: Vec<Message>,
    ) -> Result<Processed, ProcessError> {
        let conv = ticket.conversation_id;
        // The history read beside the claim, with the message it stored.
        history.push(Message {
            seq: u64::MAX,
            body: NewMessage::customer(ticket.ticket_id, ticket.text.as_str(), ticket.received_at),
        });
        let e = self.escalation(
            ticket,
            ReasonCode::FollowUp,
            0.0,
            "customer wrote again".into(),
            None,
            &history,
        );
        self.finish(
            Completion {
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
            },
            Some(&e),
        )
        .await?;
        Ok(Processed::Forwarded)
    }

    /// The last attempt failed (or the failure is permanent): mark the
    /// conversation escalated, record the ticket as dead-lettered, and tell
    /// a person. The store part is best effort; the notification is not:
    /// an `Err` means nobody was told and the caller must retry.
    ///
    /// A live lease held by another worker is waited out, never overridden:
    /// that worker may still answer, and its answer wins. Then this returns
    /// [`ProcessError::Busy`] with the lease's end, and nobody is told yet;
    /// the retry finds the ticket finished, or the lease gone.
    pub async fn give_up(&self, ticket: &Ticket, detail: &str) -> Result<(), ProcessError> {
        let conv = ticket.conversation_id;
        let mut held = None;
        let stored: Result<GaveUp, StoreError> = async {
            let customer =
                NewMessage::customer(ticket.ticket_id, ticket.text.as_str(), ticket.received_at);
            let begun = match self
                .store
                .begin(ticket, customer, self.settings().lease)
                .await?
            {
                Begin::Done(record) => {
                    // Finished after all (a slow worker): only its escalation may be owed.
                    if !record.notified {
                        self.renotify(ticket, &record, None)
                            .await
                            .map_err(|e| StoreError::Transient(e.to_string()))?;
                    }
                    return Ok(GaveUp::Finished);
                }
                Begin::Busy { until } => return Ok(GaveUp::Held(until)),
                Begin::Acquired(begun) => begun,
            };
            let token = begun.token;
            held = Some(token);
            let already = begun.state.status == ConversationStatus::Escalated;
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
            let written = self
                .store
                .complete(Completion {
                    ticket_id: ticket.ticket_id,
                    conversation_id: conv,
                    token: Some(token),
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
            held = None;
            if written == Completed::LostClaim {
                // Our lease ran out mid-way and another worker took it.
                return Ok(GaveUp::Held(Utc::now()));
            }
            self.outbound.nudge();
            Ok(GaveUp::DeadLettered)
        }
        .await;
        if let Some(token) = held
            && let Err(error) = self.store.release(ticket.ticket_id, token).await
        {
            warn!(message = "Could not release a given-up ticket's lease.", %error);
        }
        let history = match &stored {
            Ok(GaveUp::Finished) => return Ok(()),
            Ok(GaveUp::Held(until)) => return Err(ProcessError::Busy { until: *until }),
            Ok(GaveUp::DeadLettered) => self
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

    /// Publishes a finished ticket's escalation again; `history` is the
    /// conversation's, if the caller read it already.
    async fn renotify(
        &self,
        ticket: &Ticket,
        record: &TicketRecord,
        history: Option<Vec<Message>>,
    ) -> Result<(), ProcessError> {
        let reason = record.reason.unwrap_or(ReasonCode::ProcessingFailed);
        let history = match history {
            Some(h) => h,
            None => {
                self.store
                    .history(ticket.conversation_id, TRANSCRIPT_TURNS)
                    .await?
            }
        };
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
        self.mark_notified_later(ticket.ticket_id);
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

/// What [`Pipeline::give_up`] could record.
enum GaveUp {
    /// The ticket had finished after all.
    Finished,
    /// Another worker holds it until then.
    Held(DateTime<Utc>),
    /// Recorded as dead-lettered: a person must be told.
    DeadLettered,
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
