//! Zendesk Ticketing API.
//!
//! * Auth: HTTP Basic `{email}/token:{api_token}`.
//! * Reply or note: `PUT /api/v2/tickets/{id}.json` with
//!   `{"ticket": {"comment": {"body", "public"}, "metadata": {"deskhand_outbox_id"}}}`
//!   (`public: false` is an internal note). The comment id is taken from the
//!   answer's audit.
//! * Escalation: the same update with `group_id` (not in shadow mode) and an
//!   internal note, then `PUT /api/v2/tickets/{id}/tags.json` (Add Tags:
//!   adds without replacing the ticket's tags).
//! * Idempotency: Zendesk's `Idempotency-Key` covers ticket creation only,
//!   not updates. Each update instead carries the record id as audit
//!   metadata; a retry first reads `GET /api/v2/tickets/{id}/audits.json`
//!   and, if an audit already carries the id, records that comment instead
//!   of posting again.
//! * Shadow review: `GET /api/v2/tickets/{id}.json` (status, requester) and
//!   `GET /api/v2/tickets/{id}/comments.json` (public comments after the
//!   note by someone other than the requester are agent replies).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{
    AgentActivity, Api, content, escalation, id_of, needs, posted_at, ticket_ref, time_of,
};
use crate::domain::OutboxRecord;
use crate::outbox::settings::HelpdeskOutSettings;
use crate::outbox::{Courier, DeliverError, Sent};
use crate::secret::Secret;

/// The audit-metadata key carrying the outbox record id.
pub const METADATA_KEY: &str = "deskhand_outbox_id";

/// Zendesk adapter.
pub struct Zendesk {
    api: Api,
    user: String,
    token: Secret,
    settings: HelpdeskOutSettings,
}

impl Zendesk {
    /// From `[outbound.zendesk]`.
    pub fn new(settings: HelpdeskOutSettings, timeout: Duration) -> anyhow::Result<Self> {
        let base = needs(&settings.base_url, "zendesk", "base_url")?;
        let email = needs(&settings.email, "zendesk", "email")?;
        let token = needs(&settings.api_token, "zendesk", "api_token")?;
        Ok(Self {
            api: Api::new("Zendesk", &base, timeout)?,
            user: format!("{email}/token"),
            token,
            settings,
        })
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.api
            .request(method, path)
            .basic_auth(&self.user, Some(self.token.expose()))
            .header("Accept", "application/json")
    }

    /// The comment an earlier attempt of `record` created, if any.
    async fn earlier(
        &self,
        ticket: &str,
        record: &OutboxRecord,
    ) -> Result<Option<String>, DeliverError> {
        let audits = self
            .api
            .json(
                "list audits",
                self.req(
                    reqwest::Method::GET,
                    &format!("/api/v2/tickets/{ticket}/audits.json?sort_order=desc"),
                ),
            )
            .await?;
        for a in audits["audits"].as_array().into_iter().flatten() {
            if a["metadata"]["custom"][METADATA_KEY].as_str() == Some(&record.id) {
                return Ok(Some(comment_id(a).unwrap_or_else(|| {
                    id_of(&a["id"]).map_or_else(String::new, |id| format!("audit:{id}"))
                })));
            }
        }
        Ok(None)
    }
}

fn comment_id(audit: &Value) -> Option<String> {
    audit["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == "Comment")
        .and_then(|e| id_of(&e["id"]))
}

#[async_trait]
impl Courier for Zendesk {
    async fn deliver(&self, record: &OutboxRecord, retry: bool) -> Result<Sent, DeliverError> {
        let d = &record.delivery;
        let ticket = ticket_ref(d)?;
        let (note, plain, _) = content(d);
        let escalate = escalation(d);
        let mut comment = json!({"body": plain, "public": !note});
        if let Some(author) = self
            .settings
            .author_id
            .as_deref()
            .and_then(|a| a.parse::<u64>().ok())
        {
            comment["author_id"] = json!(author);
        }
        let existing = if retry {
            self.earlier(&ticket, record).await?
        } else {
            None
        };
        let external_id = match existing {
            Some(id) => Some(id),
            None => {
                let mut body = json!({"ticket": {
                    "comment": comment,
                    "metadata": {METADATA_KEY: record.id},
                }});
                if escalate == Some(false)
                    && let Some(group) = &self.settings.escalation_group
                {
                    body["ticket"]["group_id"] = group
                        .parse::<u64>()
                        .map_or_else(|_| json!(group), |g| json!(g));
                }
                let out = self
                    .api
                    .json(
                        "update ticket",
                        self.req(
                            reqwest::Method::PUT,
                            &format!("/api/v2/tickets/{ticket}.json"),
                        )
                        .json(&body),
                    )
                    .await?;
                comment_id(&out["audit"])
            }
        };
        if escalate.is_some() && !self.settings.escalation_tags.is_empty() {
            // Add Tags is a set union: repeating it is harmless.
            self.api
                .send(
                    "add tags",
                    self.req(
                        reqwest::Method::PUT,
                        &format!("/api/v2/tickets/{ticket}/tags.json"),
                    )
                    .json(&json!({"tags": self.settings.escalation_tags})),
                )
                .await?;
        }
        Ok(Sent { external_id })
    }

    async fn review(&self, record: &OutboxRecord) -> Result<Option<AgentActivity>, DeliverError> {
        let ticket = ticket_ref(&record.delivery)?;
        let t = self
            .api
            .json(
                "show ticket",
                self.req(
                    reqwest::Method::GET,
                    &format!("/api/v2/tickets/{ticket}.json"),
                ),
            )
            .await?;
        let requester = id_of(&t["ticket"]["requester_id"]);
        let closed = matches!(t["ticket"]["status"].as_str(), Some("solved" | "closed"));
        let comments = self
            .api
            .json(
                "list comments",
                self.req(
                    reqwest::Method::GET,
                    &format!("/api/v2/tickets/{ticket}/comments.json"),
                ),
            )
            .await?;
        let since = posted_at(record);
        let replies = comments["comments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["public"] == true)
            .filter(|c| id_of(&c["author_id"]) != requester)
            .filter(|c| id_of(&c["id"]) != record.external_id)
            .filter(|c| time_of(&c["created_at"]).is_some_and(|t| t >= since))
            .filter_map(|c| {
                c["plain_body"]
                    .as_str()
                    .or(c["body"].as_str())
                    .map(str::to_owned)
            })
            .collect();
        Ok(Some(AgentActivity { replies, closed }))
    }
}
