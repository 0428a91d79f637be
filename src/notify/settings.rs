//! Where escalations go (`[escalation]`).

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Payload shape of the escalation webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{text, blocks}` for a Slack (or Mattermost, Rocket.Chat) incoming
    /// webhook, with the full escalation under `deskhand`.
    #[default]
    Slack,
    /// The escalation object alone.
    Json,
}

/// Where escalations go (always also a log line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationSettings {
    /// Incoming-webhook URL; a secret, since it authorizes posting.
    pub webhook_url: Option<Secret>,
    /// Its payload shape.
    pub webhook_format: WebhookFormat,
    /// Seconds before a webhook call is abandoned (and retried later).
    pub webhook_timeout_secs: u64,
}

impl Default for EscalationSettings {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_format: WebhookFormat::Slack,
            webhook_timeout_secs: 10,
        }
    }
}
