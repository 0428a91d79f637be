//! Inbound channels: verify a delivery exactly as its vendor documents,
//! then normalize it into a [`crate::domain::Ticket`] (or a logged reason
//! to ignore it). Stateless, like all of ingest: no store lookups, except
//! that Mailgun's single-use tokens are spent through a
//! [`crate::store::ReplayGuard`].
//!
//! # Layout
//!
//! - [`settings`]: `[inbound]`, one section per provider (no section: refused).
//! - [`verify`]: HMACs in constant time, Basic credentials, the replay window.
//! - [`sns`]: SNS envelopes, their signatures and URL checks (SES).
//! - [`form`]: multipart and urlencoded bodies (Mailgun, SendGrid).
//! - [`text`]: HTML → text, quoted replies and signatures stripped.
//! - [`email`]: raw MIME, Postmark, Mailgun, SendGrid, SES → [`email::Email`] → ticket.
//! - [`helpdesk`]: Zendesk, Freshdesk, Intercom, Help Scout, Front, generic → ticket.
//!
//! Every parser is pure (bytes in, typed result out): the HTTP handler,
//! `deskhand inspect` and the fuzz targets run the same code. The HTTP
//! handler runs them through [`Inbound::receive_owned`]: on tokio's
//! blocking pool, a bounded number at once, so a big mail never stalls the
//! async runtime (and with it every other request).

pub mod email;
pub mod form;
pub mod helpdesk;
pub mod settings;
pub mod sns;
pub mod text;
pub mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use rsa::RsaPublicKey;
use sha2::{Digest, Sha256};

use crate::domain::{Channel, Provider, Ticket};
use crate::store::ReplayGuard;
use email::reply_token::ReplyTokens;
use email::ses;
use helpdesk::template::{freshdesk, generic, zendesk};
use tokio::sync::Semaphore;

pub use settings::InboundSettings;

/// Most signing certificates kept in memory.
const MAX_CERTS: usize = 16;
/// Largest signing certificate fetched.
const MAX_CERT_BYTES: usize = 64 * 1024;

/// Why a delivery was refused, split by what the sender should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// No such provider in this channel (404).
    #[error("{0}")]
    UnknownProvider(String),
    /// The provider has no section in `[inbound]` (404): nothing is
    /// accepted unverified.
    #[error("{0}")]
    NotConfigured(String),
    /// No signature or credentials (401).
    #[error("{0}")]
    MissingSignature(String),
    /// Wrong signature or credentials (401).
    #[error("{0}")]
    InvalidSignature(String),
    /// Signed, but outside the replay window (401).
    #[error("{0}")]
    StaleTimestamp(String),
    /// A single-use signature used again for another message (401).
    #[error("{0}")]
    Replayed(String),
    /// Authentic but not allowed (an SNS topic off the allow-list) (403).
    #[error("{0}")]
    Forbidden(String),
    /// Not the payload the vendor documents (400); says what is wrong.
    #[error("{0}")]
    Malformed(String),
    /// A dependency failed (certificate fetch); the vendor should retry (503).
    #[error("{0}")]
    Unavailable(String),
}

/// A JSON error as a 400 naming the payload and serde's position and
/// expectation.
pub fn json_error(what: &str, e: &serde_json::Error) -> IngestError {
    IngestError::Malformed(format!("{what}: the body is not the expected JSON: {e}"))
}

/// A delivery that is authentic but not to be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// Machine-readable (`auto_reply`, `agent_author`, …).
    pub reason: &'static str,
    /// For the log line; never message content.
    pub detail: String,
}

impl Ignored {
    /// A reason and a detail.
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// What a delivery amounts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalized {
    /// A ticket to queue.
    Accepted(Box<Ticket>),
    /// Nothing to answer (logged with its reason).
    Ignored(Ignored),
    /// A vendor handshake to answer (Front's `X-Front-Challenge`).
    Challenge(String),
}

/// What normalizers need besides the payload.
pub struct Context<'a> {
    /// `[inbound]`.
    pub settings: &'a InboundSettings,
    /// The time of receipt.
    pub now: DateTime<Utc>,
    /// Longest ticket text (longer is cut with a marker).
    pub max_text_chars: usize,
    /// Reply tags: issued to email tickets and checked on the way back.
    /// None (offline inspection): no tag is issued or honoured.
    pub reply_tokens: Option<&'a ReplyTokens>,
}

/// Whether signatures are checked: always, except `inspect --no-verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Check as configured; refuse unconfigured providers.
    Required,
    /// Skip every authenticity check (offline inspection only).
    Skip,
}

/// The provider named in the URL, if it belongs to `channel`.
pub fn provider(channel: Channel, name: &str) -> Result<Provider, IngestError> {
    let known: Vec<&str> = Provider::ALL
        .iter()
        .filter(|p| p.channel() == channel)
        .map(|p| p.as_str())
        .collect();
    name.parse::<Provider>()
        .ok()
        .filter(|p| p.channel() == channel)
        .ok_or_else(|| {
            IngestError::UnknownProvider(format!(
                "no {channel} provider {:?}; expected one of: {}",
                name.chars().take(40).collect::<String>(),
                known.join(", ")
            ))
        })
}

/// The inbound channels, wired once: settings, an HTTP client (SNS
/// certificates and subscription confirmation), a certificate cache and
/// the slots for parsing off the async runtime.
pub struct Inbound {
    settings: InboundSettings,
    max_text_chars: usize,
    http: reqwest::Client,
    certs: Mutex<HashMap<String, RsaPublicKey>>,
    reply_tokens: Option<ReplyTokens>,
    parse_slots: Arc<Semaphore>,
    replay: Option<Arc<dyn ReplayGuard>>,
}

/// What the SNS checks leave to do.
enum SesNext {
    Done(Normalized),
    /// A verified notification: its SES message is still to be parsed.
    Notification,
}

impl Inbound {
    /// Inbound channels over `settings`.
    pub fn new(settings: InboundSettings, max_text_chars: usize) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            settings,
            max_text_chars,
            http,
            certs: Mutex::new(HashMap::new()),
            reply_tokens: None,
            replay: None,
            // One parse per core: more would only share the same cores
            // while holding more bodies in memory.
            parse_slots: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
        }
    }

    /// Parses in [`Self::receive_owned`] take one permit of `slots` each
    /// (default: one per core).
    pub fn with_parse_slots(mut self, slots: Arc<Semaphore>) -> Self {
        self.parse_slots = slots;
        self
    }

    /// Issues and honours email reply tags under the server secret.
    pub fn with_reply_tokens(mut self, tokens: ReplyTokens) -> Self {
        self.reply_tokens = Some(tokens);
        self
    }

    /// Spends single-use signatures (Mailgun's tokens) through `guard`.
    pub fn with_replay_guard(mut self, guard: Option<Arc<dyn ReplayGuard>>) -> Self {
        self.replay = guard;
        self
    }

    /// The settings.
    pub fn settings(&self) -> &InboundSettings {
        &self.settings
    }

    /// Largest body accepted on `channel`.
    pub fn body_limit(&self, channel: Channel) -> usize {
        match channel {
            Channel::Email => self.settings.max_email_bytes,
            _ => self.settings.max_webhook_bytes,
        }
    }

    fn section<'a, T>(
        &self,
        section: &'a Option<T>,
        provider: Provider,
        verification: Verification,
    ) -> Result<Option<&'a T>, IngestError> {
        match (section, verification) {
            (Some(s), _) => Ok(Some(s)),
            (None, Verification::Skip) => Ok(None),
            (None, Verification::Required) => Err(IngestError::NotConfigured(format!(
                "the {provider} channel is not configured: add [inbound.{provider}] with its secret (see docs/channels.md)"
            ))),
        }
    }

    /// Verifies and normalizes one delivery received now.
    pub async fn receive(
        &self,
        channel: Channel,
        provider_name: &str,
        headers: &HeaderMap,
        body: &[u8],
        verification: Verification,
    ) -> Result<Normalized, IngestError> {
        self.receive_at(
            channel,
            provider_name,
            headers,
            body,
            verification,
            Utc::now(),
        )
        .await
    }

    /// Verifies and normalizes one delivery received at `now` (replay
    /// windows are measured from it; signed fixtures use their own time),
    /// on the calling task.
    pub async fn receive_at(
        &self,
        channel: Channel,
        provider_name: &str,
        headers: &HeaderMap,
        body: &[u8],
        verification: Verification,
        now: DateTime<Utc>,
    ) -> Result<Normalized, IngestError> {
        let provider = provider(channel, provider_name)?;
        if provider == Provider::Ses {
            let envelope = sns::Envelope::parse(body)?;
            return match self.ses(&envelope, verification, now).await? {
                SesNext::Done(outcome) => Ok(outcome),
                SesNext::Notification => self.ses_notification(&envelope.message, now),
            };
        }
        let (outcome, spent) = self.normalize_at(provider, headers, body, verification, now)?;
        self.spend(spent).await?;
        Ok(outcome)
    }

    /// Spends a single-use signature the parse verified (Mailgun's token),
    /// after the parse and before the ticket is queued.
    async fn spend(&self, signed: Option<email::mailgun::Signed>) -> Result<(), IngestError> {
        match signed {
            Some(signed) => email::mailgun::once(self.replay.as_deref(), &signed).await,
            None => Ok(()),
        }
    }

    /// [`Self::receive`] for a server: every parse (and every signature
    /// over the whole body) runs on tokio's blocking pool, at most one per
    /// parse slot at once, so the async runtime stays free for other
    /// requests however big the mail. A Mailgun delivery's signature is
    /// checked on its three signature fields before it waits for a slot: a
    /// forged delivery costs no parse.
    pub async fn receive_owned(
        self: Arc<Self>,
        channel: Channel,
        provider_name: &str,
        headers: HeaderMap,
        body: Bytes,
        verification: Verification,
    ) -> Result<Normalized, IngestError> {
        let now = Utc::now();
        let provider = provider(channel, provider_name)?;
        match provider {
            Provider::Ses => {
                let envelope = self
                    .off_runtime(move |_| sns::Envelope::parse(&body))
                    .await?;
                match self.ses(&envelope, verification, now).await? {
                    SesNext::Done(outcome) => Ok(outcome),
                    SesNext::Notification => {
                        self.off_runtime(move |this| this.ses_notification(&envelope.message, now))
                            .await
                    }
                }
            }
            _ => {
                if provider == Provider::Mailgun {
                    self.mailgun_signature(&headers, &body, verification, now)?;
                }
                let (outcome, spent) = self
                    .off_runtime(move |this| {
                        this.normalize_at(provider, &headers, &body, verification, now)
                    })
                    .await?;
                self.spend(spent).await?;
                Ok(outcome)
            }
        }
    }

    /// Runs `parse` on the blocking pool once a parse slot is free; the
    /// slot is given back as soon as `parse` returns.
    async fn off_runtime<T: Send + 'static>(
        self: &Arc<Self>,
        parse: impl FnOnce(&Self) -> Result<T, IngestError> + Send + 'static,
    ) -> Result<T, IngestError> {
        let slot = self
            .parse_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| IngestError::Unavailable("inbound parsing is shutting down".into()))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let parsed = parse(&this);
            drop(slot);
            parsed
        })
        .await
        .map_err(|e| IngestError::Unavailable(format!("the delivery could not be parsed: {e}")))?
    }

    /// Mailgun signs only `timestamp` and `token`: checks them, read from
    /// the form without parsing the rest of it. (The full form's fields
    /// are checked again after the parse, so the two views cannot differ.)
    fn mailgun_signature(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        verification: Verification,
        now: DateTime<Utc>,
    ) -> Result<(), IngestError> {
        if let Some(c) = self.section(&self.settings.mailgun, Provider::Mailgun, verification)? {
            let content_type = verify::header(headers, "content-type").unwrap_or("");
            let fields =
                form::Form::fields_only(content_type, body, &["timestamp", "token", "signature"])
                    .map_err(|e| IngestError::Malformed(format!("Mailgun form: {e}")))?;
            email::mailgun::verify(&fields, c, now, self.settings.replay_window_secs)?;
        }
        Ok(())
    }

    /// Verifies and normalizes a delivery of any provider but SES; all
    /// synchronous, CPU-bound work. A single-use signature it verified is
    /// returned to be spent (asynchronously, through the replay guard).
    fn normalize_at(
        &self,
        provider: Provider,
        headers: &HeaderMap,
        body: &[u8],
        verification: Verification,
        now: DateTime<Utc>,
    ) -> Result<(Normalized, Option<email::mailgun::Signed>), IngestError> {
        let ctx = Context {
            settings: &self.settings,
            now,
            max_text_chars: self.max_text_chars,
            reply_tokens: self.reply_tokens.as_ref(),
        };
        let window = self.settings.replay_window_secs;
        let s = &self.settings;
        let content_type = verify::header(headers, "content-type").unwrap_or("");
        let mut spent = None;
        let outcome = match provider {
            Provider::Mime => {
                if let Some(c) = self.section(&s.mime, provider, verification)? {
                    generic::verify(headers, body, &c.secret, now, window)?;
                }
                email::normalize(provider, email::mime::parse(body)?, &ctx)
            }
            Provider::Postmark => {
                if let Some(c) = self.section(&s.postmark, provider, verification)? {
                    email::postmark::verify(headers, c)?;
                }
                email::normalize(provider, email::postmark::parse(body)?, &ctx)
            }
            Provider::Mailgun => {
                self.mailgun_signature(headers, body, verification, now)?;
                let form = email::mailgun::form(content_type, body)?;
                if let Some(c) = self.section(&s.mailgun, provider, verification)? {
                    spent = Some(email::mailgun::verify(&form, c, now, window)?);
                }
                email::normalize(provider, email::mailgun::parse(&form)?, &ctx)
            }
            Provider::Sendgrid => {
                if let Some(c) = self.section(&s.sendgrid, provider, verification)? {
                    email::sendgrid::verify(headers, body, c, now, window)?;
                }
                email::normalize(provider, email::sendgrid::parse(content_type, body)?, &ctx)
            }
            Provider::Ses => Err(IngestError::Malformed(
                "an SES delivery is an SNS envelope, handled apart".into(),
            )),
            Provider::Zendesk => {
                if let Some(c) = self.section(&s.zendesk, provider, verification)? {
                    zendesk::verify(headers, body, c, now, window)?;
                }
                let fallback = || {
                    verify::header(headers, "x-zendesk-webhook-invocation-id")
                        .map(str::to_owned)
                        .unwrap_or_else(|| body_key(body))
                };
                self.helpdesk(
                    provider,
                    helpdesk::template::parse(body, "Zendesk webhook", fallback)?,
                    &ctx,
                )
            }
            Provider::Freshdesk => {
                if let Some(c) = self.section(&s.freshdesk, provider, verification)? {
                    freshdesk::verify(headers, c)?;
                }
                self.helpdesk(
                    provider,
                    helpdesk::template::parse(body, "Freshdesk webhook", || body_key(body))?,
                    &ctx,
                )
            }
            Provider::Generic => {
                if let Some(c) = self.section(&s.generic, provider, verification)? {
                    generic::verify(headers, body, &c.secret, now, window)?;
                }
                self.helpdesk(
                    provider,
                    helpdesk::template::parse(body, "generic webhook", || body_key(body))?,
                    &ctx,
                )
            }
            Provider::Intercom => {
                if let Some(c) = self.section(&s.intercom, provider, verification)? {
                    helpdesk::intercom::verify(headers, body, c)?;
                }
                self.helpdesk(provider, helpdesk::intercom::parse(body)?, &ctx)
            }
            Provider::Helpscout => {
                if let Some(c) = self.section(&s.helpscout, provider, verification)? {
                    helpdesk::helpscout::verify(headers, body, c)?;
                }
                let event = verify::header(headers, "x-helpscout-event");
                self.helpdesk(provider, helpdesk::helpscout::parse(event, body)?, &ctx)
            }
            Provider::Front => {
                if let Some(c) = self.section(&s.front, provider, verification)? {
                    helpdesk::front::verify(headers, body, c, now, window)?;
                }
                if let Some(challenge) = helpdesk::front::challenge(headers) {
                    return Ok((Normalized::Challenge(challenge), None));
                }
                self.helpdesk(provider, helpdesk::front::parse(body)?, &ctx)
            }
            Provider::Widget => Err(IngestError::UnknownProvider(
                "the widget is not an inbound provider".into(),
            )),
        }?;
        Ok((outcome, spent))
    }

    fn helpdesk(
        &self,
        provider: Provider,
        parsed: helpdesk::Parsed,
        ctx: &Context<'_>,
    ) -> Result<Normalized, IngestError> {
        match parsed {
            helpdesk::Parsed::Event(e) => helpdesk::normalize(provider, *e, ctx),
            helpdesk::Parsed::Ignored(i) => Ok(Normalized::Ignored(i)),
        }
    }

    /// Authenticates an SNS envelope and answers its handshakes; a
    /// notification is left to [`Self::ses_notification`].
    async fn ses(
        &self,
        envelope: &sns::Envelope,
        verification: Verification,
        now: DateTime<Utc>,
    ) -> Result<SesNext, IngestError> {
        let kind = envelope.kind()?;
        let ses = self.section(&self.settings.ses, Provider::Ses, verification)?;
        let test_hosts = ses.map(|s| s.insecure_test_hosts.as_slice()).unwrap_or(&[]);
        if let Some(ses) = ses {
            if !ses.topic_arns.iter().any(|t| t == &envelope.topic_arn) {
                return Err(IngestError::Forbidden(format!(
                    "SNS topic {:?} is not in inbound.ses.topic_arns",
                    envelope.topic_arn.chars().take(256).collect::<String>()
                )));
            }
            let region = envelope.region()?;
            sns::check_url(
                &envelope.signing_cert_url,
                region,
                "SigningCertURL",
                test_hosts,
            )?;
            let key = self.signing_key(&envelope.signing_cert_url, ses).await?;
            envelope.verify(&key)?;
            // SNS signs its Timestamp; its retries reuse the message, and
            // the default HTTP delivery policy finishes within a minute.
            if let Ok(at) = DateTime::parse_from_rfc3339(&envelope.timestamp) {
                verify::within(
                    at.with_timezone(&Utc),
                    now,
                    self.settings.replay_window_secs,
                    "the SNS Timestamp",
                )?;
            } else {
                return Err(IngestError::Malformed(
                    "SNS `Timestamp` is not an ISO 8601 instant".into(),
                ));
            }
        }
        Ok(match kind {
            sns::Kind::SubscriptionConfirmation => {
                let url = envelope.subscribe_url.as_deref().unwrap_or("");
                SesNext::Done(match ses {
                    Some(s) if s.confirm_subscriptions => {
                        sns::check_url(url, envelope.region()?, "SubscribeURL", test_hosts)?;
                        self.confirm(url).await?;
                        tracing::info!(message = "SNS subscription confirmed.", topic = %envelope.topic_arn);
                        Normalized::Ignored(Ignored::new(
                            "subscription_confirmed",
                            "SNS SubscriptionConfirmation",
                        ))
                    }
                    _ => Normalized::Ignored(Ignored::new(
                        "subscription_not_confirmed",
                        "SNS SubscriptionConfirmation (confirmation disabled or not verified)",
                    )),
                })
            }
            sns::Kind::UnsubscribeConfirmation => SesNext::Done(Normalized::Ignored(Ignored::new(
                "unsubscribed",
                "SNS UnsubscribeConfirmation",
            ))),
            sns::Kind::Notification => SesNext::Notification,
        })
    }

    /// The SES notification inside a verified SNS envelope.
    fn ses_notification(
        &self,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<Normalized, IngestError> {
        let ctx = Context {
            settings: &self.settings,
            now,
            max_text_chars: self.max_text_chars,
            reply_tokens: self.reply_tokens.as_ref(),
        };
        match ses::parse(message)? {
            ses::Parsed::Mail(mail) => email::normalize(Provider::Ses, *mail, &ctx),
            ses::Parsed::Ignored(i) => Ok(Normalized::Ignored(i)),
        }
    }

    /// The signing certificate's key: the configured PEM, the cache, or a
    /// fetch of the (already host-checked) URL.
    async fn signing_key(
        &self,
        url: &str,
        ses: &settings::SesSettings,
    ) -> Result<RsaPublicKey, IngestError> {
        if let Some(path) = &ses.signing_cert_pem {
            let pem = std::fs::read(path).map_err(|e| {
                IngestError::Unavailable(format!(
                    "inbound.ses.signing_cert_pem {}: {e}",
                    path.display()
                ))
            })?;
            return sns::key_from_pem(&pem).map_err(|e| {
                IngestError::Unavailable(format!(
                    "inbound.ses.signing_cert_pem {}: {e}",
                    path.display()
                ))
            });
        }
        if let Some(key) = self
            .certs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
        {
            return Ok(key.clone());
        }
        let fetch = async {
            let res = self.http.get(url).send().await.map_err(|e| e.to_string())?;
            if !res.status().is_success() {
                return Err(format!("status {}", res.status()));
            }
            let bytes = res.bytes().await.map_err(|e| e.to_string())?;
            if bytes.len() > MAX_CERT_BYTES {
                return Err("certificate too large".into());
            }
            sns::key_from_pem(&bytes)
        };
        let key = fetch.await.map_err(|e| {
            IngestError::Unavailable(format!("could not fetch the SNS signing certificate: {e}"))
        })?;
        let mut certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
        if certs.len() >= MAX_CERTS {
            certs.clear();
        }
        certs.insert(url.to_owned(), key.clone());
        Ok(key)
    }

    async fn confirm(&self, url: &str) -> Result<(), IngestError> {
        let res = self.http.get(url).send().await.map_err(|e| {
            IngestError::Unavailable(format!("could not confirm the SNS subscription: {e}"))
        })?;
        if !res.status().is_success() {
            return Err(IngestError::Unavailable(format!(
                "SNS refused the subscription confirmation: status {}",
                res.status()
            )));
        }
        Ok(())
    }
}

/// A delivery key from the body, for payloads without an event id.
fn body_key(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(&Sha256::digest(body)[..16]))
}
