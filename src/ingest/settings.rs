//! `[inbound]` settings: one optional section per provider. A provider
//! without its section refuses every delivery.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Per-provider secrets and options for inbound email and helpdesk webhooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboundSettings {
    /// Deliveries whose signed timestamp is further than this from the
    /// server's clock are refused (`stale_timestamp`).
    pub replay_window_secs: u64,
    /// Intercom and Help Scout sign no timestamp, only the body: events
    /// (notification or thread) created longer ago than this are refused
    /// (`stale_timestamp`), so a captured delivery cannot be replayed once
    /// its ticket's dedup record may have expired. Keep it above the
    /// vendors' retry horizon and below `aws.retention_days`.
    pub max_event_age_hours: u64,
    /// Largest email delivery (raw MIME, Mailgun/SendGrid forms, SNS).
    pub max_email_bytes: usize,
    /// Largest helpdesk webhook body.
    pub max_webhook_bytes: usize,
    /// The domain of deskhand's own mail: reply Message-IDs are
    /// `<ticket_id@deskhand.DOMAIN>` and plus-address tokens are only read
    /// from recipients in this domain. Unset: the recipient's domain.
    pub email_domain: Option<String>,
    /// Addresses and helpdesk user ids deskhand itself writes as; mail or
    /// events from them are ignored so it never answers itself.
    pub own_identities: Vec<String>,
    /// Hosts whose `Authentication-Results` headers are trusted (your
    /// receiving MTA's authserv-id, RFC 8601). Empty: the top-most header,
    /// which the receiving MTA prepends. Mailgun, SendGrid and SES report
    /// results in their own fields, which are always used.
    pub authserv_ids: Vec<String>,
    /// Postmark inbound webhook (HTTP Basic credentials in the URL).
    pub postmark: Option<BasicAuthSettings>,
    /// Mailgun routes (`forward()` to the inbound URL).
    pub mailgun: Option<MailgunSettings>,
    /// SendGrid Inbound Parse (a signing security policy's public key
    /// and/or HTTP Basic credentials in the URL).
    pub sendgrid: Option<SendgridSettings>,
    /// Amazon SES receipt rule → SNS topic → HTTPS subscription.
    pub ses: Option<SesSettings>,
    /// Zendesk webhook, connected to a trigger.
    pub zendesk: Option<SigningSecret>,
    /// Freshdesk automation rule "Trigger webhook".
    pub freshdesk: Option<FreshdeskSettings>,
    /// Intercom Developer Hub webhooks.
    pub intercom: Option<SigningSecret>,
    /// Help Scout Webhooks app.
    pub helpscout: Option<SigningSecret>,
    /// Front application webhook.
    pub front: Option<SigningSecret>,
    /// Any system that can sign its requests the generic way.
    pub generic: Option<SigningSecret>,
    /// Raw MIME from your own relay, signed the generic way.
    pub mime: Option<SigningSecret>,
}

impl Default for InboundSettings {
    fn default() -> Self {
        Self {
            replay_window_secs: 300,
            max_event_age_hours: 14 * 24,
            max_email_bytes: 10 * 1024 * 1024,
            max_webhook_bytes: 1024 * 1024,
            email_domain: None,
            own_identities: Vec::new(),
            authserv_ids: Vec::new(),
            postmark: None,
            mailgun: None,
            sendgrid: None,
            ses: None,
            zendesk: None,
            freshdesk: None,
            intercom: None,
            helpscout: None,
            front: None,
            generic: None,
            mime: None,
        }
    }
}

impl InboundSettings {
    /// Whether any inbound email provider is configured.
    pub fn email_providers_configured(&self) -> bool {
        self.postmark.is_some()
            || self.mailgun.is_some()
            || self.sendgrid.is_some()
            || self.ses.is_some()
            || self.mime.is_some()
    }
}

/// HTTP Basic credentials the vendor sends (taken from the webhook URL).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthSettings {
    /// User name.
    pub username: String,
    /// Password.
    pub password: Secret,
}

/// SendGrid Inbound Parse: the signed-webhook security policy's public
/// key, HTTP Basic credentials in the destination URL, or both (all that is
/// configured is checked).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SendgridSettings {
    /// `signature.public_key` of the security policy attached to the Parse
    /// setting (base64 DER, as SendGrid's API returns it).
    pub public_key: Option<String>,
    /// Basic user name (with `password`).
    pub username: Option<String>,
    /// Basic password (with `username`).
    pub password: Option<Secret>,
}

impl SendgridSettings {
    /// The section must configure a check, and whole ones.
    pub fn validate(&self) -> Result<(), String> {
        if self.username.is_some() != self.password.is_some() {
            return Err("inbound.sendgrid: set both username and password, or neither".into());
        }
        match &self.public_key {
            Some(key) => crate::ingest::email::sendgrid::public_key(key)
                .map(|_| ())
                .map_err(|e| format!("inbound.sendgrid.public_key: {e}")),
            None if self.username.is_none() => Err(
                "inbound.sendgrid needs public_key (signed webhooks) or username and password"
                    .into(),
            ),
            None => Ok(()),
        }
    }
}

/// A shared signing secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningSecret {
    /// The secret the vendor signs with (its name varies: signing secret,
    /// client secret, secret key, app secret).
    pub secret: Secret,
}

/// Mailgun's HTTP webhook signing key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailgunSettings {
    /// Sending → Webhooks → "HTTP webhook signing key".
    pub signing_key: Secret,
}

/// Freshdesk has no signature: the rule sends a secret header.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshdeskSettings {
    /// The header's value.
    pub secret: Secret,
    /// The header's name.
    #[serde(default = "default_freshdesk_header")]
    pub header: String,
}

fn default_freshdesk_header() -> String {
    "X-Deskhand-Secret".into()
}

/// SES via SNS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SesSettings {
    /// SNS topics whose messages are accepted (full ARNs); required.
    pub topic_arns: Vec<String>,
    /// Confirm subscriptions to allowed topics by fetching SubscribeURL.
    #[serde(default = "yes")]
    pub confirm_subscriptions: bool,
    /// A PEM certificate to verify with instead of fetching
    /// SigningCertURL (air-gapped hosts, tests). The URL is still checked.
    #[serde(default)]
    pub signing_cert_pem: Option<PathBuf>,
    /// TESTS ONLY: `host:port`s also trusted for SigningCertURL and
    /// SubscribeURL, over plain HTTP. Never set this in production.
    #[serde(default)]
    pub insecure_test_hosts: Vec<String>,
}

fn yes() -> bool {
    true
}
