//! Escalations posted to an incoming-webhook URL (Slack, Mattermost,
//! Rocket.Chat, or anything that takes JSON).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::WebhookFormat;
use super::{EscalateError, Escalation, Escalator};
use crate::secret::Secret;

/// Characters of customer text put in a chat message.
const CHAT_EXCERPT: usize = 500;

/// Posts escalations to a webhook.
pub struct Webhook {
    http: reqwest::Client,
    url: Secret,
    format: WebhookFormat,
}

impl Webhook {
    /// A webhook escalator.
    pub fn new(url: Secret, format: WebhookFormat, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self { http, url, format })
    }

    /// The request body for `e`.
    pub fn body(&self, e: &Escalation) -> serde_json::Value {
        match self.format {
            WebhookFormat::Json => json!(e),
            WebhookFormat::Slack => {
                let excerpt: String = e.last_message.chars().take(CHAT_EXCERPT).collect();
                let mut fields = vec![
                    json!({"type": "mrkdwn", "text": format!("*Reason*\n{}", e.reason)}),
                    json!({"type": "mrkdwn", "text": format!("*Priority*\n{}", e.priority)}),
                    json!({"type": "mrkdwn", "text": format!("*Channel*\n{}", e.channel.map_or("unknown", |c| c.as_str()))}),
                    json!({"type": "mrkdwn", "text": format!("*Confidence*\n{:.2}", e.confidence)}),
                ];
                if let Some(c) = e.conversation_id {
                    fields
                        .push(json!({"type": "mrkdwn", "text": format!("*Conversation*\n`{c}`")}));
                }
                json!({
                    "text": e.summary(),
                    "blocks": [
                        {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*", e.summary())}},
                        {"type": "section", "fields": fields},
                        {"type": "section", "text": {"type": "plain_text", "text": if excerpt.is_empty() { "(no message text)".to_owned() } else { excerpt }}},
                    ],
                    "deskhand": e,
                })
            }
        }
    }
}

#[async_trait]
impl Escalator for Webhook {
    async fn escalate(&self, e: &Escalation) -> Result<(), EscalateError> {
        let res = self
            .http
            .post(self.url.expose())
            .json(&self.body(e))
            .send()
            .await
            // Never print the URL: it is the credential.
            .map_err(|err| EscalateError(format!("webhook call failed: {}", without_url(&err))))?;
        let status = res.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(EscalateError(format!("webhook answered {status}")))
        }
    }
}

fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_request() {
        "request error"
    } else {
        "error"
    };
    kind.to_owned()
}
