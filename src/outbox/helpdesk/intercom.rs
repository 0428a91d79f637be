//! Intercom REST API (`Intercom-Version: 2.11`).
//!
//! * Auth: `Authorization: Bearer <access token>`.
//! * Reply or note: `POST /conversations/{id}/reply`
//!   `{"message_type": "comment" | "note", "type": "admin", "admin_id", "body"}`;
//!   the answer is the conversation, whose last part is ours.
//! * Escalation: a note, `POST /conversations/{id}/tags` `{"id": tag id,
//!   "admin_id"}` per tag (Intercom tags by id), and (not in shadow mode)
//!   `POST /conversations/{id}/parts` `{"message_type": "assignment",
//!   "type": "team", "admin_id", "assignee_id"}`.
//! * Idempotency: none in the API. A retry first reads the conversation and
//!   records an existing part by the same admin holding the text.
//! * Shadow review: `GET /conversations/{id}`: `comment` parts by an admin
//!   after the note are agent replies; `state: closed` closes.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{
    AgentActivity, Api, content, escalation, id_of, needs, posted_at, ticket_ref, time_of,
};
use crate::domain::{OutboundAction, OutboxRecord};
use crate::ingest::text::html_to_text;
use crate::outbox::settings::HelpdeskOutSettings;
use crate::outbox::{Courier, DeliverError, Sent};
use crate::secret::Secret;

const VERSION: &str = "2.11";

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Intercom adapter.
pub struct Intercom {
    api: Api,
    token: Secret,
    admin: String,
    settings: HelpdeskOutSettings,
}

impl Intercom {
    /// From `[outbound.intercom]`.
    pub fn new(settings: HelpdeskOutSettings, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            api: Api::new(
                "Intercom",
                settings
                    .base_url
                    .as_deref()
                    .unwrap_or("https://api.intercom.io"),
                timeout,
            )?,
            token: needs(&settings.api_token, "intercom", "api_token")?,
            admin: needs(&settings.author_id, "intercom", "author_id")?,
            settings,
        })
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.api
            .request(method, path)
            .bearer_auth(self.token.expose())
            .header("Intercom-Version", VERSION)
            .header("Accept", "application/json")
    }

    async fn conversation(&self, id: &str) -> Result<Value, DeliverError> {
        self.api
            .json(
                "retrieve conversation",
                self.req(reqwest::Method::GET, &format!("/conversations/{id}")),
            )
            .await
    }
}

fn parts(conv: &Value) -> impl Iterator<Item = &Value> {
    conv["conversation_parts"]["conversation_parts"]
        .as_array()
        .into_iter()
        .flatten()
}

#[async_trait]
impl Courier for Intercom {
    async fn deliver(&self, record: &OutboxRecord, retry: bool) -> Result<Sent, DeliverError> {
        let d = &record.delivery;
        let id = ticket_ref(d)?;
        let (note, plain, html) = content(d);
        let kind = if note { "note" } else { "comment" };
        if let Some(shadow) = escalation(d) {
            for tag in &self.settings.escalation_tags {
                self.api
                    .send(
                        "tag conversation",
                        self.req(reqwest::Method::POST, &format!("/conversations/{id}/tags"))
                            .json(&json!({"id": tag, "admin_id": self.admin})),
                    )
                    .await?;
            }
            if !shadow && let Some(team) = &self.settings.escalation_group {
                self.api
                    .send(
                        "assign conversation",
                        self.req(reqwest::Method::POST, &format!("/conversations/{id}/parts"))
                            .json(&json!({"message_type": "assignment", "type": "team",
                                          "admin_id": self.admin, "assignee_id": team})),
                    )
                    .await?;
            }
        }
        if retry {
            let needle = squash(match &d.action {
                OutboundAction::Reply { text, .. } => text,
                OutboundAction::Escalate { .. } => &plain,
            });
            let conv = self.conversation(&id).await?;
            if let Some(p) = parts(&conv).find(|p| {
                p["part_type"] == kind
                    && id_of(&p["author"]["id"]).as_deref() == Some(&self.admin)
                    && p["body"]
                        .as_str()
                        .is_some_and(|b| squash(&html_to_text(b)).contains(&needle))
            }) {
                return Ok(Sent {
                    external_id: id_of(&p["id"]),
                });
            }
        }
        let out = self
            .api
            .json(
                "reply",
                self.req(reqwest::Method::POST, &format!("/conversations/{id}/reply"))
                    .json(&json!({"message_type": kind, "type": "admin",
                                  "admin_id": self.admin, "body": html})),
            )
            .await?;
        Ok(Sent {
            external_id: parts(&out).last().and_then(|p| id_of(&p["id"])),
        })
    }

    async fn review(&self, record: &OutboxRecord) -> Result<Option<AgentActivity>, DeliverError> {
        let conv = self.conversation(&ticket_ref(&record.delivery)?).await?;
        let since = posted_at(record);
        let replies = parts(&conv)
            .filter(|p| p["part_type"] == "comment" && p["author"]["type"] == "admin")
            .filter(|p| id_of(&p["id"]) != record.external_id)
            .filter(|p| time_of(&p["created_at"]).is_some_and(|t| t >= since))
            .filter_map(|p| p["body"].as_str().map(html_to_text))
            .collect();
        Ok(Some(AgentActivity {
            replies,
            closed: conv["state"] == "closed",
        }))
    }
}
