//! Front Core API.
//!
//! * Auth: `Authorization: Bearer <API token>`.
//! * Public reply: `POST /conversations/{id}/messages` `{"body", "text",
//!   "author_id"?}` (202, `message_uid`).
//! * Note: `POST /conversations/{id}/comments` `{"body", "author_id"?}`
//!   (a comment is internal to the team).
//! * Escalation: `POST /conversations/{id}/tags` `{"tag_ids"}`, (not in
//!   shadow mode) `PUT /conversations/{id}/assignee` `{"assignee_id"}`, and
//!   a comment.
//! * Idempotency: none in the API; a retry posts again (one duplicate at
//!   most per crash, see docs/outbound.md).
//! * Shadow review: `GET /conversations/{id}` (`status` archived or deleted
//!   closes) and `GET /conversations/{id}/messages`: outbound messages after
//!   the note are agent replies.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::{
    AgentActivity, Api, content, escalation, id_of, needs, posted_at, ticket_ref, time_of,
};
use crate::domain::OutboxRecord;
use crate::ingest::text::html_to_text;
use crate::outbox::settings::HelpdeskOutSettings;
use crate::outbox::{Courier, DeliverError, Sent};
use crate::secret::Secret;

/// Front adapter.
pub struct Front {
    api: Api,
    token: Secret,
    settings: HelpdeskOutSettings,
}

impl Front {
    /// From `[outbound.front]`.
    pub fn new(settings: HelpdeskOutSettings, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            api: Api::new(
                "Front",
                settings
                    .base_url
                    .as_deref()
                    .unwrap_or("https://api2.frontapp.com"),
                timeout,
            )?,
            token: needs(&settings.api_token, "front", "api_token")?,
            settings,
        })
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.api
            .request(method, path)
            .bearer_auth(self.token.expose())
            .header("Accept", "application/json")
    }
}

#[async_trait]
impl Courier for Front {
    async fn deliver(&self, record: &OutboxRecord, _retry: bool) -> Result<Sent, DeliverError> {
        let d = &record.delivery;
        let id = ticket_ref(d)?;
        let (note, plain, html) = content(d);
        if let Some(shadow) = escalation(d) {
            if !self.settings.escalation_tags.is_empty() {
                self.api
                    .send(
                        "add tags",
                        self.req(reqwest::Method::POST, &format!("/conversations/{id}/tags"))
                            .json(&json!({"tag_ids": self.settings.escalation_tags})),
                    )
                    .await?;
            }
            if !shadow && let Some(who) = &self.settings.escalation_group {
                self.api
                    .send(
                        "assign",
                        self.req(
                            reqwest::Method::PUT,
                            &format!("/conversations/{id}/assignee"),
                        )
                        .json(&json!({"assignee_id": who})),
                    )
                    .await?;
            }
        }
        let mut body = if note {
            json!({"body": plain})
        } else {
            json!({"body": html, "text": plain})
        };
        if let Some(a) = &self.settings.author_id {
            body["author_id"] = json!(a);
        }
        let path = if note {
            format!("/conversations/{id}/comments")
        } else {
            format!("/conversations/{id}/messages")
        };
        let out = self
            .api
            .json(
                if note { "add comment" } else { "reply" },
                self.req(reqwest::Method::POST, &path).json(&body),
            )
            .await?;
        Ok(Sent {
            external_id: id_of(&out["id"]).or_else(|| id_of(&out["message_uid"])),
        })
    }

    async fn review(&self, record: &OutboxRecord) -> Result<Option<AgentActivity>, DeliverError> {
        let id = ticket_ref(&record.delivery)?;
        let conv = self
            .api
            .json(
                "get conversation",
                self.req(reqwest::Method::GET, &format!("/conversations/{id}")),
            )
            .await?;
        let messages = self
            .api
            .json(
                "list messages",
                self.req(
                    reqwest::Method::GET,
                    &format!("/conversations/{id}/messages"),
                ),
            )
            .await?;
        let since = posted_at(record);
        let replies = messages["_results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["is_inbound"] == false)
            .filter(|m| time_of(&m["created_at"]).is_some_and(|t| t >= since))
            .filter_map(|m| {
                m["text"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| m["body"].as_str().map(html_to_text))
            })
            .collect();
        Ok(Some(AgentActivity {
            replies,
            closed: matches!(conv["status"].as_str(), Some("archived" | "deleted")),
        }))
    }
}
