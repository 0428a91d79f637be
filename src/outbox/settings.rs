//! `[outbound]` settings: the retry budget, the email transport and one
//! optional section per helpdesk. A channel without its section keeps
//! replies in the store only (as before outbound delivery existed).

use serde::{Deserialize, Serialize};

use crate::domain::Provider;
use crate::secret::Secret;

/// Outbound delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundSettings {
    /// Delivery attempts before giving up with a `delivery_failed` escalation.
    pub max_attempts: u32,
    /// First retry delay, milliseconds; doubles per attempt, with jitter.
    pub backoff_base_ms: u64,
    /// Longest retry delay, seconds.
    pub backoff_max_secs: u64,
    /// How long a dispatcher holds a record while sending it; a crashed
    /// dispatcher's record is retried after this.
    pub lease_secs: u64,
    /// How long one send may take before it counts as failed.
    pub send_timeout_secs: u64,
    /// Local dispatcher: how often it looks for due records when idle.
    pub poll_interval_ms: u64,
    /// Records dispatched at once by one dispatcher.
    pub concurrency: usize,
    /// Shadow mode: first look at what the agent did with a draft this
    /// long after the note was posted, then with growing intervals.
    pub review_after_secs: u64,
    /// Shadow mode: a draft nobody answered within this many hours counts
    /// as `no_reply`.
    pub review_window_hours: u64,
    /// Email replies (SMTP or Amazon SES).
    pub email: Option<EmailOutSettings>,
    /// Zendesk (Ticketing API).
    pub zendesk: Option<HelpdeskOutSettings>,
    /// Freshdesk (API v2).
    pub freshdesk: Option<HelpdeskOutSettings>,
    /// Intercom (REST API).
    pub intercom: Option<HelpdeskOutSettings>,
    /// Help Scout (Mailbox API 2.0).
    pub helpscout: Option<HelpdeskOutSettings>,
    /// Front (Core API).
    pub front: Option<HelpdeskOutSettings>,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            backoff_base_ms: 5_000,
            backoff_max_secs: 1_800,
            lease_secs: 120,
            send_timeout_secs: 30,
            poll_interval_ms: 500,
            concurrency: 4,
            review_after_secs: 900,
            review_window_hours: 168,
            email: None,
            zendesk: None,
            freshdesk: None,
            intercom: None,
            helpscout: None,
            front: None,
        }
    }
}

impl OutboundSettings {
    /// The section of a helpdesk provider, if configured.
    pub fn helpdesk(&self, provider: Provider) -> Option<&HelpdeskOutSettings> {
        match provider {
            Provider::Zendesk => self.zendesk.as_ref(),
            Provider::Freshdesk => self.freshdesk.as_ref(),
            Provider::Intercom => self.intercom.as_ref(),
            Provider::Helpscout => self.helpscout.as_ref(),
            Provider::Front => self.front.as_ref(),
            _ => None,
        }
    }

    /// Checks what can be checked before start.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_attempts > 0,
            "outbound.max_attempts must be at least 1"
        );
        anyhow::ensure!(
            self.lease_secs > 0,
            "outbound.lease_secs must be at least 1"
        );
        anyhow::ensure!(
            self.lease_secs > self.send_timeout_secs,
            "outbound.lease_secs must exceed outbound.send_timeout_secs, or a slow send is taken over while it runs"
        );
        anyhow::ensure!(
            self.concurrency > 0,
            "outbound.concurrency must be at least 1"
        );
        if let Some(e) = &self.email {
            e.validate()?;
        }
        for p in [
            Provider::Zendesk,
            Provider::Freshdesk,
            Provider::Intercom,
            Provider::Helpscout,
            Provider::Front,
        ] {
            if let Some(h) = self.helpdesk(p) {
                h.validate(p)?;
            }
        }
        Ok(())
    }
}

/// Which transport sends email.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailTransport {
    /// An SMTP server (`[outbound.email.smtp]`).
    #[default]
    Smtp,
    /// Amazon SES v2 `SendEmail` with the raw message (region and
    /// endpoint from `[aws]`).
    Ses,
}

/// Email replies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailOutSettings {
    /// SMTP or SES.
    #[serde(default)]
    pub transport: EmailTransport,
    /// The sender, e.g. `Tallybird Support <support@example.com>`.
    pub from: String,
    /// An explicit Reply-To; unset: `local+<conversation id>@domain` of
    /// `from` (a second threading path for clients that drop References).
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Also email the holding message when a ticket goes to a person.
    #[serde(default = "yes")]
    pub holding_message: bool,
    /// Required for `transport = "smtp"`.
    #[serde(default)]
    pub smtp: Option<SmtpSettings>,
    /// SES options.
    #[serde(default)]
    pub ses: Option<SesOutSettings>,
    /// The last line of an emailed answer, by the language the customer
    /// wrote in (ISO 639-1 code, as detected): `{ es = "…" }` replaces or
    /// adds a language, `""` leaves the line out for it. Built in: en, es,
    /// fr, de, pt (see [`crate::outbox::HUMAN_LINES`]); an undetected or
    /// unlisted language gets English. The word it asks for must be one
    /// the rules take as asking for a person.
    #[serde(default)]
    pub human_line: std::collections::BTreeMap<String, String>,
}

impl EmailOutSettings {
    fn validate(&self) -> anyhow::Result<()> {
        for (lang, line) in &self.human_line {
            anyhow::ensure!(
                (2..=3).contains(&lang.len()) && lang.chars().all(|c| c.is_ascii_lowercase()),
                "outbound.email.human_line: {lang:?} is not a language code (en, es, fr…)"
            );
            anyhow::ensure!(
                line.chars().count() <= 200 && !line.chars().any(char::is_control),
                "outbound.email.human_line.{lang}: at most 200 characters on one line"
            );
        }
        crate::outbox::email::mailbox(&self.from)
            .map_err(|e| anyhow::anyhow!("outbound.email.from: {e}"))?;
        if let Some(r) = &self.reply_to {
            crate::outbox::email::mailbox(r)
                .map_err(|e| anyhow::anyhow!("outbound.email.reply_to: {e}"))?;
        }
        if self.transport == EmailTransport::Smtp {
            anyhow::ensure!(
                self.smtp.is_some(),
                "outbound.email.transport is \"smtp\" but [outbound.email.smtp] is missing"
            );
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// STARTTLS, required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain text: only for a relay on localhost or in tests.
    None,
}

/// An SMTP server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// Host name.
    pub host: String,
    /// Port (587 with STARTTLS, 465 with TLS, 25 plain).
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// Connection security.
    #[serde(default)]
    pub tls: SmtpTls,
    /// User name, if the server wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<Secret>,
}

fn default_smtp_port() -> u16 {
    587
}

/// Amazon SES v2 options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SesOutSettings {
    /// A configuration set (event publishing, dedicated IPs).
    #[serde(default)]
    pub configuration_set: Option<String>,
}

/// How helpdesk replies are posted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HelpdeskMode {
    /// Public replies: the customer receives them.
    #[default]
    Reply,
    /// Internal notes with the draft, for an agent to review and send;
    /// what the agent did is recorded.
    Shadow,
}

/// One helpdesk's API. Which fields a vendor needs is in docs/outbound.md.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelpdeskOutSettings {
    /// The API's base URL: `https://SUBDOMAIN.zendesk.com`,
    /// `https://DOMAIN.freshdesk.com`; Intercom, Help Scout and Front
    /// default to their public API hosts.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Public replies, or shadow mode (internal notes).
    #[serde(default)]
    pub mode: HelpdeskMode,
    /// Zendesk: the agent email the API token belongs to.
    #[serde(default)]
    pub email: Option<String>,
    /// Zendesk API token, Freshdesk API key, Intercom access token, Front
    /// API token.
    #[serde(default)]
    pub api_token: Option<Secret>,
    /// Help Scout: the OAuth app id (client credentials flow).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Help Scout: the OAuth app secret.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Who writes: Intercom admin id (required), Front teammate id, Help
    /// Scout user id, Zendesk or Freshdesk agent id (optional).
    #[serde(default)]
    pub author_id: Option<String>,
    /// Tags added to an escalated ticket.
    #[serde(default = "default_tags")]
    pub escalation_tags: Vec<String>,
    /// Who an escalated ticket is assigned to: Zendesk or Freshdesk group
    /// id, Intercom team id, Help Scout user id, Front teammate id.
    #[serde(default)]
    pub escalation_group: Option<String>,
}

fn default_tags() -> Vec<String> {
    vec!["deskhand_escalated".into()]
}

impl HelpdeskOutSettings {
    /// Settings with a base URL and a token, the rest defaulted.
    pub fn new(base_url: impl Into<String>, api_token: Secret) -> Self {
        Self {
            base_url: Some(base_url.into()),
            mode: HelpdeskMode::Reply,
            email: None,
            api_token: Some(api_token),
            client_id: None,
            client_secret: None,
            author_id: None,
            escalation_tags: default_tags(),
            escalation_group: None,
        }
    }

    fn validate(&self, p: Provider) -> anyhow::Result<()> {
        let need = |ok: bool, what: &str| {
            anyhow::ensure!(ok, "[outbound.{p}] needs {what}");
            Ok(())
        };
        match p {
            Provider::Zendesk => {
                need(
                    self.base_url.is_some(),
                    "base_url (https://SUBDOMAIN.zendesk.com)",
                )?;
                need(self.email.is_some(), "email (the API token's agent)")?;
                need(self.api_token.is_some(), "api_token")?;
            }
            Provider::Freshdesk => {
                need(
                    self.base_url.is_some(),
                    "base_url (https://DOMAIN.freshdesk.com)",
                )?;
                need(self.api_token.is_some(), "api_token (the API key)")?;
            }
            Provider::Intercom => {
                need(self.api_token.is_some(), "api_token (access token)")?;
                need(
                    self.author_id.is_some(),
                    "author_id (the admin who replies)",
                )?;
            }
            Provider::Helpscout => {
                need(
                    self.client_id.is_some() && self.client_secret.is_some(),
                    "client_id and client_secret (an OAuth app)",
                )?;
            }
            Provider::Front => need(self.api_token.is_some(), "api_token")?,
            _ => {}
        }
        Ok(())
    }
}
