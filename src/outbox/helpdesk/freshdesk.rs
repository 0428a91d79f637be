//! Freshdesk API v2.
//!
//! * Auth: HTTP Basic with the API key as user name and `X` as password.
//! * Public reply: `POST /api/v2/tickets/{id}/reply` `{"body": html}`.
//! * Note: `POST /api/v2/tickets/{id}/notes` `{"body": html, "private": true}`.
//! * Escalation: `GET /api/v2/tickets/{id}` for its tags, then
//!   `PUT /api/v2/tickets/{id}` `{"tags": old ∪ new, "group_id"}` (the
//!   update replaces the tag list, hence the read), then a private note.
//! * Idempotency: Freshdesk has no idempotency key. A retry first lists
//!   `GET /api/v2/tickets/{id}/conversations` and, if an outgoing entry of
//!   the same kind already holds the text, records it instead of posting
//!   again.
//! * Shadow review: the ticket's `status` (4 resolved, 5 closed) and its
//!   conversations: outgoing (`incoming: false`), public (`private: false`)
//!   entries after the note are agent replies.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{
    AgentActivity, Api, content, escalation, id_of, needs, posted_at, ticket_ref, time_of,
};
use crate::domain::{OutboundAction, OutboxRecord};
use crate::outbox::settings::HelpdeskOutSettings;
use crate::outbox::{Courier, DeliverError, Sent};
use crate::secret::Secret;

/// Freshdesk adapter.
pub struct Freshdesk {
    api: Api,
    key: Secret,
    settings: HelpdeskOutSettings,
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Freshdesk {
    /// From `[outbound.freshdesk]`.
    pub fn new(settings: HelpdeskOutSettings, timeout: Duration) -> anyhow::Result<Self> {
        let base = needs(&settings.base_url, "freshdesk", "base_url")?;
        let key = needs(&settings.api_token, "freshdesk", "api_token")?;
        Ok(Self {
            api: Api::new("Freshdesk", &base, timeout)?,
            key,
            settings,
        })
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.api
            .request(method, path)
            .basic_auth(self.key.expose(), Some("X"))
    }

    async fn ticket(&self, ticket: &str) -> Result<Value, DeliverError> {
        self.api
            .json(
                "view ticket",
                self.req(reqwest::Method::GET, &format!("/api/v2/tickets/{ticket}")),
            )
            .await
    }

    async fn conversations(&self, ticket: &str) -> Result<Vec<Value>, DeliverError> {
        let v = self
            .api
            .json(
                "list conversations",
                self.req(
                    reqwest::Method::GET,
                    &format!("/api/v2/tickets/{ticket}/conversations"),
                ),
            )
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// The conversation an earlier attempt created, if any.
    async fn earlier(
        &self,
        ticket: &str,
        private: bool,
        needle: &str,
    ) -> Result<Option<String>, DeliverError> {
        let needle = squash(needle);
        Ok(self
            .conversations(ticket)
            .await?
            .iter()
            .filter(|c| c["incoming"] == false && c["private"] == private)
            .find(|c| {
                c["body_text"]
                    .as_str()
                    .is_some_and(|t| squash(t).contains(&needle))
            })
            .and_then(|c| id_of(&c["id"])))
    }
}

#[async_trait]
impl Courier for Freshdesk {
    async fn deliver(&self, record: &OutboxRecord, retry: bool) -> Result<Sent, DeliverError> {
        let d = &record.delivery;
        let ticket = ticket_ref(d)?;
        let (note, _, html) = content(d);
        if let Some(shadow) = escalation(d) {
            let t = self.ticket(&ticket).await?;
            let mut tags: Vec<String> = t["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect();
            for tag in &self.settings.escalation_tags {
                if !tags.contains(tag) {
                    tags.push(tag.clone());
                }
            }
            let mut update = json!({"tags": tags});
            if !shadow && let Some(g) = self.settings.escalation_group.as_deref() {
                update["group_id"] = g.parse::<u64>().map_or_else(|_| json!(g), |g| json!(g));
            }
            self.api
                .send(
                    "update ticket",
                    self.req(reqwest::Method::PUT, &format!("/api/v2/tickets/{ticket}"))
                        .json(&update),
                )
                .await?;
        }
        let needle = match &d.action {
            OutboundAction::Reply { text, .. } => text.clone(),
            OutboundAction::Escalate { reason, .. } => reason.to_string(),
        };
        if retry && let Some(id) = self.earlier(&ticket, note, &needle).await? {
            return Ok(Sent {
                external_id: Some(id),
            });
        }
        let mut body = json!({"body": html});
        if let Some(user) = self
            .settings
            .author_id
            .as_deref()
            .and_then(|a| a.parse::<u64>().ok())
        {
            body["user_id"] = json!(user);
        }
        let (op, path) = if note {
            body["private"] = json!(true);
            ("create note", format!("/api/v2/tickets/{ticket}/notes"))
        } else {
            ("reply", format!("/api/v2/tickets/{ticket}/reply"))
        };
        let out = self
            .api
            .json(op, self.req(reqwest::Method::POST, &path).json(&body))
            .await?;
        Ok(Sent {
            external_id: id_of(&out["id"]),
        })
    }

    async fn review(&self, record: &OutboxRecord) -> Result<Option<AgentActivity>, DeliverError> {
        let ticket = ticket_ref(&record.delivery)?;
        let t = self.ticket(&ticket).await?;
        let closed = matches!(t["status"].as_u64(), Some(4 | 5));
        let since = posted_at(record);
        let replies = self
            .conversations(&ticket)
            .await?
            .iter()
            .filter(|c| c["incoming"] == false && c["private"] == false)
            .filter(|c| id_of(&c["id"]) != record.external_id)
            .filter(|c| time_of(&c["created_at"]).is_some_and(|t| t >= since))
            .filter_map(|c| c["body_text"].as_str().map(str::to_owned))
            .collect();
        Ok(Some(AgentActivity { replies, closed }))
    }
}
