//! Outbound delivery: replies go back where the ticket came from.
//!
//! The worker writes the reply and its outbox record in one atomic step
//! ([`crate::store::Completion::outbox`], chosen by [`OutboundPolicy`]); a
//! [`Dispatcher`] then delivers each record at least once through the
//! ticket's [`Courier`] and marks it delivered:
//!
//! * claim the record (a lease; every claim counts an attempt) → send →
//!   settle `delivered` while the lease is held;
//! * a transient failure is retried with exponential backoff and jitter; a
//!   permanent one, or the last of `max_attempts`, gives up: the
//!   conversation is marked escalated and a person is told through the
//!   [`Escalator`] with reason `delivery_failed`, then the record is
//!   settled `failed`;
//! * a dispatcher that dies between the send and the settle leaves the
//!   record leased; after the lease it is claimed and sent again. Couriers
//!   that let us look (Zendesk audits, Freshdesk and Intercom
//!   conversations) check for the earlier send first; email cannot, so a
//!   crash in that window sends one duplicate (with the same Message-ID).
//!
//! Locally a task in `deskhand serve` runs [`Dispatcher::sweep`]; on AWS
//! a Lambda fed by the table's DynamoDB Stream runs [`Dispatcher::dispatch`]
//! for each new record, and a one-minute schedule sweeps retries that
//! have come due (see [`crate::lambda::dispatcher`]).
//!
//! # Layout
//!
//! - [`settings`]: the `outbound` section of the configuration.
//! - [`email`]: the threaded reply; SMTP and SES v2.
//! - [`helpdesk`]: Zendesk, Freshdesk, Intercom, Help Scout, Front.
//! - [`review`]: shadow mode: unchanged, edited or discarded.

pub mod email;
pub mod helpdesk;
pub mod review;
pub mod settings;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::Notify;
use tracing::{Instrument, info, info_span, warn};

use crate::domain::{
    Channel, ConversationStatus, Delivery, DeliveryMode, NewOutbox, OutboundAction, OutboxRecord,
    Provider, ReasonCode, ReplyRoute, Role, ShadowOutcome, ShadowReview, Ticket,
};
use crate::notify::{Escalation, Escalator, TranscriptLine};
use crate::store::{OutboxClaim, OutboxStore, Settle, Store, StoreError};
use crate::worker::Backoff;
pub use settings::{EmailTransport, HelpdeskMode, OutboundSettings};

/// The last line of an emailed answer: a one-word reply reaches a person.
pub const HUMAN_LINE: &str = "Reply 'human' to reach a person.";

/// [`HUMAN_LINE`] in each language the rules understand the one-word
/// answer in (`pipeline::rules`: human, humano, humain, Mensch); an
/// answer in another language, or of unknown language, gets English.
/// `[outbound.email] human_line` overrides or adds to these.
pub const HUMAN_LINES: &[(&str, &str)] = &[
    ("en", HUMAN_LINE),
    ("es", "Responda «humano» para hablar con una persona."),
    ("fr", "Répondez « humain » pour parler à une personne."),
    ("de", "Antworten Sie „Mensch“, um eine Person zu erreichen."),
    ("pt", "Responda \"humano\" para falar com uma pessoa."),
];

/// A delivery succeeded.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// The channel's id of what was created (comment, note, Message-ID).
    pub external_id: Option<String>,
}

/// Why a delivery failed, split by what happens next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    /// May pass (network, 429, 5xx, SMTP 4xx): retry with backoff.
    #[error("{0}")]
    Transient(String),
    /// Will not pass (bad credentials, unknown ticket, SMTP 5xx): give up.
    #[error("{0}")]
    Permanent(String),
}

/// One outbound channel: an email transport or a helpdesk API.
#[async_trait]
pub trait Courier: Send + Sync {
    /// Delivers `record`. `retry` is set when an earlier attempt may have
    /// got through (a crash or a time-out after sending): a channel that
    /// can look for it should, and report it instead of sending again.
    async fn deliver(&self, record: &OutboxRecord, retry: bool) -> Result<Sent, DeliverError>;

    /// Shadow mode: what agents did on the ticket after the note, if the
    /// channel can tell.
    async fn review(
        &self,
        _record: &OutboxRecord,
    ) -> Result<Option<helpdesk::AgentActivity>, DeliverError> {
        Ok(None)
    }
}

/// The configured channels, by provider.
#[derive(Clone, Default)]
pub struct Couriers {
    /// Email replies (every email provider).
    pub email: Option<Arc<dyn Courier>>,
    /// Helpdesk APIs.
    pub helpdesks: HashMap<Provider, Arc<dyn Courier>>,
}

impl Couriers {
    /// The channels `[outbound]` configures. SES clients come from `sdk`
    /// (required when `transport = "ses"`).
    pub fn from_settings(
        s: &OutboundSettings,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(s.send_timeout_secs);
        let mut out = Self::default();
        if let Some(e) = &s.email {
            out.email = Some(match e.transport {
                EmailTransport::Smtp => Arc::new(email::Smtp::new(
                    e.clone(),
                    e.smtp
                        .as_ref()
                        .ok_or_else(|| anyhow::anyhow!("[outbound.email.smtp] is missing"))?,
                    timeout,
                )?) as Arc<dyn Courier>,
                EmailTransport::Ses => {
                    let sdk = sdk.ok_or_else(|| {
                        anyhow::anyhow!("outbound email over SES needs the AWS configuration")
                    })?;
                    Arc::new(email::Ses::new(e.clone(), aws_sdk_sesv2::Client::new(sdk)))
                }
            });
        }
        let mut add = |p: Provider, c: Arc<dyn Courier>| {
            out.helpdesks.insert(p, c);
        };
        if let Some(h) = &s.zendesk {
            add(
                Provider::Zendesk,
                Arc::new(helpdesk::Zendesk::new(h.clone(), timeout)?),
            );
        }
        if let Some(h) = &s.freshdesk {
            add(
                Provider::Freshdesk,
                Arc::new(helpdesk::Freshdesk::new(h.clone(), timeout)?),
            );
        }
        if let Some(h) = &s.intercom {
            add(
                Provider::Intercom,
                Arc::new(helpdesk::Intercom::new(h.clone(), timeout)?),
            );
        }
        if let Some(h) = &s.helpscout {
            add(
                Provider::Helpscout,
                Arc::new(helpdesk::HelpScout::new(h.clone(), timeout)?),
            );
        }
        if let Some(h) = &s.front {
            add(
                Provider::Front,
                Arc::new(helpdesk::Front::new(h.clone(), timeout)?),
            );
        }
        Ok(out)
    }

    fn get(&self, provider: Provider) -> Option<&Arc<dyn Courier>> {
        match provider.channel() {
            Channel::Email => self.email.as_ref(),
            Channel::Helpdesk => self.helpdesks.get(&provider),
            Channel::Widget => None,
        }
    }
}

/// Which outbox records a finished ticket creates: only for channels with
/// an `[outbound]` section (the widget is polled and needs none).
#[derive(Clone, Default)]
pub struct OutboundPolicy {
    /// Email replies are sent; `true`: the holding message too.
    email: Option<bool>,
    /// The last line of emailed answers, by language code.
    human_lines: HashMap<String, String>,
    helpdesks: HashMap<Provider, HelpdeskMode>,
    nudge: Option<Arc<Notify>>,
}

impl OutboundPolicy {
    /// From `[outbound]`.
    pub fn from_settings(s: &OutboundSettings) -> Self {
        let helpdesks = [
            Provider::Zendesk,
            Provider::Freshdesk,
            Provider::Intercom,
            Provider::Helpscout,
            Provider::Front,
        ]
        .into_iter()
        .filter_map(|p| s.helpdesk(p).map(|h| (p, h.mode)))
        .collect();
        let mut human_lines: HashMap<String, String> = HUMAN_LINES
            .iter()
            .map(|(l, t)| ((*l).to_owned(), (*t).to_owned()))
            .collect();
        if let Some(e) = &s.email {
            human_lines.extend(e.human_line.clone());
        }
        Self {
            email: s.email.as_ref().map(|e| e.holding_message),
            human_lines,
            helpdesks,
            nudge: None,
        }
    }

    /// Wakes `notify` whenever records were created (the local dispatcher).
    pub fn with_nudge(mut self, notify: Arc<Notify>) -> Self {
        self.nudge = Some(notify);
        self
    }

    /// Tells the local dispatcher there is work.
    pub fn nudge(&self) {
        if let Some(n) = &self.nudge {
            n.notify_one();
        }
    }

    fn delivery(ticket: &Ticket, action: OutboundAction) -> Delivery {
        Delivery {
            ticket_id: ticket.ticket_id,
            conversation_id: ticket.conversation_id,
            provider: ticket.provider,
            customer: ticket.customer.clone(),
            subject: ticket.subject.clone(),
            thread: ticket.thread.clone(),
            action,
        }
    }

    /// The records of an answer (message `message_id`); an emailed one
    /// ends with [`HUMAN_LINE`].
    pub fn answer(
        &self,
        ticket: &Ticket,
        message_id: &str,
        text: &str,
        sources: &[crate::domain::Source],
    ) -> Vec<NewOutbox> {
        self.answer_in(ticket, message_id, text, sources, None)
    }

    /// The line that ends an emailed answer in `language` (a detected
    /// ISO 639-1 code): configured, built in ([`HUMAN_LINES`]), or English;
    /// `None` where it was configured empty.
    pub fn human_line(&self, language: Option<&str>) -> Option<&str> {
        let line = language
            .and_then(|l| self.human_lines.get(l))
            .or_else(|| self.human_lines.get("en"))
            .map_or(HUMAN_LINE, String::as_str)
            .trim();
        (!line.is_empty()).then_some(line)
    }

    /// [`Self::answer`] for a message in `language`: an emailed answer ends
    /// with [`Self::human_line`] in the customer's language.
    pub fn answer_in(
        &self,
        ticket: &Ticket,
        message_id: &str,
        text: &str,
        sources: &[crate::domain::Source],
        language: Option<&str>,
    ) -> Vec<NewOutbox> {
        let mode = match ticket.channel() {
            Channel::Email if self.email.is_some() => DeliveryMode::Public,
            Channel::Helpdesk => match self.helpdesks.get(&ticket.provider) {
                Some(HelpdeskMode::Reply) => DeliveryMode::Public,
                Some(HelpdeskMode::Shadow) => DeliveryMode::Note,
                None => return Vec::new(),
            },
            _ => return Vec::new(),
        };
        // An emailed answer says how to reach a person (the rules know
        // the one-word reply in every language they speak).
        let text = match (ticket.channel(), self.human_line(language)) {
            (Channel::Email, Some(line)) => format!("{}\n\n{line}", text.trim_end()),
            _ => text.to_owned(),
        };
        vec![NewOutbox::message(
            message_id,
            Self::delivery(
                ticket,
                OutboundAction::Reply {
                    mode,
                    text,
                    sources: sources.to_vec(),
                    by_agent: false,
                },
            ),
        )]
    }

    /// The records of an escalation: the holding message by email (when
    /// `holding` is the message being stored), or the helpdesk's tags,
    /// group and internal note.
    pub fn escalation(
        &self,
        ticket: &Ticket,
        holding: Option<(&str, &str)>,
        reason: ReasonCode,
        detail: &str,
        draft: Option<&str>,
    ) -> Vec<NewOutbox> {
        match ticket.channel() {
            // Held mail (a forged sender) gets nothing back: a holding
            // message would go to whoever was impersonated.
            Channel::Email if reason == ReasonCode::UnverifiedSender => Vec::new(),
            Channel::Email => match (self.email, holding) {
                (Some(true), Some((id, text))) => vec![NewOutbox::message(
                    id,
                    Self::delivery(
                        ticket,
                        OutboundAction::Reply {
                            mode: DeliveryMode::Public,
                            text: text.to_owned(),
                            sources: Vec::new(),
                            by_agent: false,
                        },
                    ),
                )],
                _ => Vec::new(),
            },
            Channel::Helpdesk => match self.helpdesks.get(&ticket.provider) {
                Some(mode) => vec![NewOutbox::escalation(
                    ticket.ticket_id,
                    Self::delivery(
                        ticket,
                        OutboundAction::Escalate {
                            reason,
                            detail: detail.chars().take(500).collect(),
                            draft: draft.map(str::to_owned),
                            shadow: *mode == HelpdeskMode::Shadow,
                        },
                    ),
                )],
                None => Vec::new(),
            },
            Channel::Widget => Vec::new(),
        }
    }
}

/// How an agent's reply reaches the customer ([`OutboundPolicy::agent_reply`]).
#[derive(Debug, Clone, PartialEq)]
pub enum AgentDelivery {
    /// The widget polls it: the stored message is the delivery.
    Poll,
    /// This outbox record delivers it (written with the message).
    Outbox(Box<NewOutbox>),
    /// The customer's channel has no `[outbound]` section (or the
    /// conversation no reply route): the reply is only stored.
    Unconfigured,
    /// The email's sender failed authentication: a reply would go to
    /// whoever was impersonated, so none is sent.
    HeldSender,
}

impl AgentDelivery {
    /// Its name in API answers.
    pub fn as_str(&self) -> &'static str {
        match self {
            AgentDelivery::Poll => "poll",
            AgentDelivery::Outbox(_) => "outbox",
            AgentDelivery::Unconfigured => "stored_only",
            AgentDelivery::HeldSender => "held_sender",
        }
    }
}

impl OutboundPolicy {
    /// How an agent's reply `message_id` reaches the customer whose latest
    /// ticket left `route`. A person wrote it, so it is always public (also
    /// when the helpdesk is in shadow mode) and carries no "reply 'human'"
    /// line. An email reply threads under the customer's latest message
    /// (In-Reply-To, References, "Re:" subject) with its own Message-ID,
    /// derived from the message id, in the domain ingest chose for replies.
    pub fn agent_reply(
        &self,
        conversation: crate::domain::ConversationId,
        route: Option<&ReplyRoute>,
        message_id: &str,
        text: &str,
    ) -> AgentDelivery {
        let Some(route) = route else {
            return AgentDelivery::Unconfigured;
        };
        let configured = match route.provider.channel() {
            Channel::Widget => return AgentDelivery::Poll,
            Channel::Email if route.customer.email_auth.is_some_and(|a| a.spoofed()) => {
                return AgentDelivery::HeldSender;
            }
            Channel::Email => self.email.is_some(),
            Channel::Helpdesk => self.helpdesks.contains_key(&route.provider),
        };
        if !configured {
            return AgentDelivery::Unconfigured;
        }
        let mut thread = route.thread.clone();
        if route.provider.channel() == Channel::Email {
            thread.reply_message_id = thread
                .reply_message_id
                .as_deref()
                .and_then(|id| id.trim_end_matches('>').rsplit_once('@'))
                .map(|(_, domain)| {
                    let local: String = message_id
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
                        .collect();
                    format!("<{local}.agent@{domain}>")
                });
        }
        AgentDelivery::Outbox(Box::new(NewOutbox::message(
            message_id,
            Delivery {
                ticket_id: route.ticket_id,
                conversation_id: conversation,
                provider: route.provider,
                customer: route.customer.clone(),
                subject: route.subject.clone(),
                thread,
                action: OutboundAction::Reply {
                    mode: DeliveryMode::Public,
                    text: text.to_owned(),
                    sources: Vec::new(),
                    by_agent: true,
                },
            },
        )))
    }
}

/// Dispatcher timing and budget, from `[outbound]`.
#[derive(Debug, Clone, Copy)]
pub struct DispatchSettings {
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// Retry delays.
    pub backoff: Backoff,
    /// How long a claim holds a record.
    pub lease: Duration,
    /// Longest single send.
    pub send_timeout: Duration,
    /// Records dispatched at once.
    pub concurrency: usize,
    /// Shadow review: first look after this long.
    pub review_after: Duration,
    /// Shadow review: give up looking after this long (`no_reply`).
    pub review_window: Duration,
}

impl DispatchSettings {
    /// From `[outbound]`.
    pub fn from_settings(s: &OutboundSettings) -> Self {
        Self {
            max_attempts: s.max_attempts,
            backoff: Backoff {
                base: Duration::from_millis(s.backoff_base_ms),
                max: Duration::from_secs(s.backoff_max_secs),
            },
            lease: Duration::from_secs(s.lease_secs),
            send_timeout: Duration::from_secs(s.send_timeout_secs),
            concurrency: s.concurrency,
            review_after: Duration::from_secs(s.review_after_secs),
            review_window: Duration::from_secs(s.review_window_hours * 3600),
        }
    }
}

/// What one dispatch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatched {
    /// Sent and settled.
    Delivered,
    /// Failed for now; tried again at the record's next attempt time.
    Retrying,
    /// Given up: a person was told (`delivery_failed`).
    Failed,
    /// Shadow review done, with this outcome.
    Reviewed(ShadowOutcome),
    /// Shadow review: not known yet.
    ReviewLater,
    /// Nothing to do now (not due, leased elsewhere, finished, missing).
    Skipped,
}

/// Delivers outbox records.
pub struct Dispatcher {
    outbox: Arc<dyn OutboxStore>,
    store: Arc<dyn Store>,
    escalator: Arc<dyn Escalator>,
    channels: Couriers,
    settings: DispatchSettings,
}

impl Dispatcher {
    /// Wires a dispatcher. `outbox` and `store` are normally the same store.
    pub fn new(
        outbox: Arc<dyn OutboxStore>,
        store: Arc<dyn Store>,
        escalator: Arc<dyn Escalator>,
        channels: Couriers,
        settings: DispatchSettings,
    ) -> Self {
        Self {
            outbox,
            store,
            escalator,
            channels,
            settings,
        }
    }

    /// Dispatches every record due now (at most `limit`), a few at once.
    /// Returns how many were dispatched.
    pub async fn sweep(&self, limit: usize) -> Result<usize, StoreError> {
        let due = self.outbox.due_outbox(limit).await?;
        let n = due.len();
        let results: Vec<Result<Dispatched, StoreError>> = futures::stream::iter(due)
            .map(|id| async move { self.dispatch(&id).await })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for r in results {
            if let Err(error) = r {
                warn!(message = "Outbox dispatch failed; the record is retried after its lease.", %error);
            }
        }
        Ok(n)
    }

    /// Dispatches record `id` if it is due. `Err` only when the store
    /// failed; the record is then retried after its lease.
    pub async fn dispatch(&self, id: &str) -> Result<Dispatched, StoreError> {
        let span = info_span!("outbox", outbox_id = %id);
        self.dispatch_inner(id).instrument(span).await
    }

    async fn dispatch_inner(&self, id: &str) -> Result<Dispatched, StoreError> {
        let (token, record) = match self.outbox.claim_outbox(id, self.settings.lease).await? {
            OutboxClaim::Acquired { token, record } => (token, record),
            _ => return Ok(Dispatched::Skipped),
        };
        if record.state == crate::domain::OutboxState::Reviewing {
            return self.review(token, &record).await;
        }
        if record.attempts > self.settings.max_attempts {
            // Earlier attempts died without settling (or giving up failed).
            let error = record
                .last_error
                .clone()
                .unwrap_or_else(|| "every attempt was interrupted".into());
            return self.give_up(token, &record, &error).await;
        }
        let Some(channel) = self.channels.get(record.delivery.provider) else {
            let error = format!(
                "no outbound channel is configured for {}",
                record.delivery.provider
            );
            return self.give_up(token, &record, &error).await;
        };
        let retry = record.attempts > 1;
        let result =
            match tokio::time::timeout(self.settings.send_timeout, channel.deliver(&record, retry))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(DeliverError::Transient(format!(
                    "no answer within {:?}",
                    self.settings.send_timeout
                ))),
            };
        match result {
            Ok(sent) => {
                let review_at = record
                    .is_shadow_draft()
                    .then(|| Utc::now() + self.settings.review_after);
                let written = self
                    .outbox
                    .settle_outbox(
                        id,
                        token,
                        Settle::Delivered {
                            external_id: sent.external_id.clone(),
                            review_at,
                        },
                    )
                    .await?;
                if !written {
                    warn!(
                        message = "Outbox lease lost after sending; the record may be sent again."
                    );
                }
                info!(
                    message = "Reply delivered.",
                    provider = %record.delivery.provider,
                    external_id = sent.external_id.as_deref(),
                    attempts = record.attempts,
                );
                Ok(Dispatched::Delivered)
            }
            Err(DeliverError::Transient(error)) if record.attempts < self.settings.max_attempts => {
                let at = Utc::now() + self.settings.backoff.delay(record.attempts);
                warn!(message = "Delivery failed; retrying.", %error, attempts = record.attempts, retry_at = %at);
                self.outbox
                    .settle_outbox(id, token, Settle::Retry { error, at })
                    .await?;
                Ok(Dispatched::Retrying)
            }
            Err(DeliverError::Transient(error) | DeliverError::Permanent(error)) => {
                self.give_up(token, &record, &error).await
            }
        }
    }

    /// Marks the conversation escalated, tells a person (`delivery_failed`)
    /// and settles the record `failed`. If the person cannot be told, the
    /// record is set to retry, and the next claim gives up again.
    async fn give_up(
        &self,
        token: crate::store::ClaimToken,
        record: &OutboxRecord,
        error: &str,
    ) -> Result<Dispatched, StoreError> {
        let d = &record.delivery;
        warn!(message = "Delivery given up; escalating.", provider = %d.provider, attempts = record.attempts, %error);
        match self
            .store
            .set_status(
                d.conversation_id,
                ConversationStatus::Escalated,
                Some(ReasonCode::DeliveryFailed),
                None,
                Vec::new(),
            )
            .await
        {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let history = self
            .store
            .history(d.conversation_id, 6)
            .await
            .unwrap_or_default();
        let excerpt = |s: &str| s.chars().take(500).collect::<String>();
        let last = history
            .iter()
            .rev()
            .find(|m| m.body.role == Role::Customer)
            .map(|m| excerpt(&m.body.text))
            .unwrap_or_default();
        let draft = match &d.action {
            OutboundAction::Reply { text, .. } => Some(text.clone()),
            OutboundAction::Escalate { draft, .. } => draft.clone(),
        };
        let e = Escalation {
            ticket_id: Some(d.ticket_id),
            conversation_id: Some(d.conversation_id),
            channel: Some(d.provider.channel()),
            provider: Some(d.provider),
            reason: ReasonCode::DeliveryFailed,
            priority: ReasonCode::DeliveryFailed.priority(),
            confidence: 0.0,
            detail: format!(
                "could not deliver to {} after {} attempts: {}",
                d.provider,
                record.attempts,
                excerpt(error)
            ),
            customer: d.customer.clone(),
            subject: d.subject.clone(),
            last_message: last,
            transcript: history
                .iter()
                .map(|m| TranscriptLine {
                    role: m.body.role,
                    text: excerpt(&m.body.text),
                })
                .collect(),
            draft,
            link: Some(format!("/v1/conversations/{}/messages", d.conversation_id)),
            at: Utc::now(),
        };
        if let Err(err) = self.escalator.escalate(&e).await {
            warn!(message = "Could not report a failed delivery; retrying the report.", error = %err);
            let at = Utc::now() + self.settings.backoff.delay(record.attempts);
            self.outbox
                .settle_outbox(
                    &record.id,
                    token,
                    Settle::Retry {
                        error: format!("{error} (escalation failed: {err})"),
                        at,
                    },
                )
                .await?;
            return Ok(Dispatched::Retrying);
        }
        self.outbox
            .settle_outbox(
                &record.id,
                token,
                Settle::Failed {
                    error: excerpt(error),
                },
            )
            .await?;
        Ok(Dispatched::Failed)
    }

    /// Shadow mode: looks at what the agent did with the draft.
    async fn review(
        &self,
        token: crate::store::ClaimToken,
        record: &OutboxRecord,
    ) -> Result<Dispatched, StoreError> {
        let now = Utc::now();
        let posted = record.delivered_at.unwrap_or(record.created_at);
        let elapsed = (now - posted).to_std().unwrap_or_default();
        let expired = elapsed >= self.settings.review_window;
        let seen = match self.channels.get(record.delivery.provider) {
            Some(c) => match c.review(record).await {
                Ok(seen) => seen,
                Err(error) => {
                    warn!(message = "Shadow review failed; looking again later.", %error);
                    None
                }
            },
            None => None,
        };
        let draft = helpdesk::content(&record.delivery).1;
        let decided = seen.as_ref().and_then(|s| review::classify(&draft, s));
        let settle = match decided {
            Some((outcome, similarity)) => Settle::Reviewed(ShadowReview {
                outcome,
                similarity,
                at: now,
            }),
            None if expired => Settle::Reviewed(ShadowReview {
                outcome: ShadowOutcome::NoReply,
                similarity: 0.0,
                at: now,
            }),
            None => {
                // Look again after as long again as it has been (at least
                // `review_after`, at most six hours).
                let wait = elapsed
                    .max(self.settings.review_after)
                    .min(Duration::from_secs(6 * 3600));
                Settle::ReviewLater { at: now + wait }
            }
        };
        let result = match &settle {
            Settle::Reviewed(r) => {
                info!(
                    message = "Shadow draft reviewed.",
                    provider = %record.delivery.provider,
                    outcome = %r.outcome,
                    similarity = r.similarity,
                    conversation_id = %record.delivery.conversation_id,
                );
                Dispatched::Reviewed(r.outcome)
            }
            _ => Dispatched::ReviewLater,
        };
        self.outbox.settle_outbox(&record.id, token, settle).await?;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        AuthVerdict, ConversationId, Customer, EmailAddress, EmailAuth, MessageText, Thread,
        TicketId,
    };

    fn email_ticket() -> Ticket {
        let ticket_id = TicketId::new();
        Ticket {
            ticket_id,
            conversation_id: ConversationId::random(),
            provider: Provider::Postmark,
            customer: Customer {
                email: EmailAddress::parse("ann@example.com"),
                ..Customer::default()
            },
            subject: Some("Login".into()),
            text: MessageText::parse("hola", 100).unwrap(),
            attachments: vec![],
            thread: Thread {
                root: Some("<a@example.com>".into()),
                message_id: Some("<b@example.com>".into()),
                references: vec!["<a@example.com>".into()],
                reply_message_id: Some(format!("<{ticket_id}@deskhand.acme.test>")),
                reply_token: None,
            },
            received_at: Utc::now(),
            brand: None,
        }
    }

    fn settings(human_line: &[(&str, &str)]) -> OutboundSettings {
        OutboundSettings {
            email: Some(settings::EmailOutSettings {
                transport: EmailTransport::Smtp,
                from: "support@acme.test".into(),
                reply_to: None,
                holding_message: false,
                smtp: None,
                ses: None,
                human_line: human_line
                    .iter()
                    .map(|(l, t)| ((*l).to_owned(), (*t).to_owned()))
                    .collect(),
            }),
            ..OutboundSettings::default()
        }
    }

    fn text_of(records: &[NewOutbox]) -> &str {
        match &records[0].delivery.action {
            OutboundAction::Reply { text, .. } => text,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn emailed_answers_end_in_the_customers_language() {
        let p = OutboundPolicy::from_settings(&settings(&[]));
        let t = email_ticket();
        let line = |lang| text_of(&p.answer_in(&t, "m", "Answer.", &[], lang)).to_owned();
        assert_eq!(line(Some("es")), format!("Answer.\n\n{}", HUMAN_LINES[1].1));
        assert!(line(Some("fr")).ends_with("« humain » pour parler à une personne."));
        assert!(line(Some("de")).ends_with("„Mensch“, um eine Person zu erreichen."));
        // Unknown or unlisted: English.
        assert!(line(None).ends_with(HUMAN_LINE));
        assert!(line(Some("nl")).ends_with(HUMAN_LINE));
        // Configured: replaced, added, or left out.
        let p = OutboundPolicy::from_settings(&settings(&[
            ("es", "Escriba «humano» y le atiende una persona."),
            ("it", "Rispondi «umano» per parlare con una persona."),
            ("fr", ""),
        ]));
        let line = |lang| text_of(&p.answer_in(&t, "m", "Answer.", &[], lang)).to_owned();
        assert!(line(Some("es")).ends_with("le atiende una persona."));
        assert!(line(Some("it")).ends_with("con una persona."));
        assert_eq!(line(Some("fr")), "Answer.");
        assert!(settings(&[("EN!", "x")]).validate().is_err());
        assert!(settings(&[("es", "two\nlines")]).validate().is_err());
    }

    #[test]
    fn agent_replies_thread_under_the_latest_message_with_their_own_id() {
        let p = OutboundPolicy::from_settings(&settings(&[]));
        let t = email_ticket();
        let route = ReplyRoute::of(&t);
        let AgentDelivery::Outbox(r) =
            p.agent_reply(t.conversation_id, Some(&route), "0b1e-x y", "Hi")
        else {
            panic!("no record")
        };
        assert_eq!(r.id, "0b1e-x y");
        let th = &r.delivery.thread;
        assert_eq!(th.message_id.as_deref(), Some("<b@example.com>"));
        assert_eq!(th.references, ["<a@example.com>"]);
        assert_eq!(
            th.reply_message_id.as_deref(),
            Some("<0b1e-xy.agent@deskhand.acme.test>")
        );
        assert!(matches!(
            &r.delivery.action,
            OutboundAction::Reply { mode: DeliveryMode::Public, text, by_agent: true, .. } if text == "Hi"
        ));
        // Widget: polled. No route or no section: stored only. A forged
        // sender: nothing sent.
        let mut w = route.clone();
        w.provider = Provider::Widget;
        assert_eq!(
            p.agent_reply(t.conversation_id, Some(&w), "m", "x"),
            AgentDelivery::Poll
        );
        assert_eq!(
            p.agent_reply(t.conversation_id, None, "m", "x"),
            AgentDelivery::Unconfigured
        );
        let none = OutboundPolicy::default();
        assert_eq!(
            none.agent_reply(t.conversation_id, Some(&route), "m", "x"),
            AgentDelivery::Unconfigured
        );
        let mut forged = route.clone();
        forged.customer.email_auth = Some(EmailAuth {
            dmarc: Some(AuthVerdict::Fail),
            ..EmailAuth::default()
        });
        assert_eq!(
            p.agent_reply(t.conversation_id, Some(&forged), "m", "x"),
            AgentDelivery::HeldSender
        );
    }
}
