//! Help Scout Mailbox API 2.0.
//!
//! * Auth: OAuth 2.0 client credentials: `POST /v2/oauth2/token`
//!   (form: `grant_type=client_credentials`, `client_id`, `client_secret`),
//!   then `Authorization: Bearer <access_token>` until it expires (48 h);
//!   a 401 fetches a new token once.
//! * Public reply: `POST /v2/conversations/{id}/reply` `{"customer":
//!   {"email"}, "text", "user"?}`.
//! * Note: `POST /v2/conversations/{id}/notes` `{"text", "user"?}`.
//!   Both answer 201 with the thread id in `Resource-ID`.
//! * Escalation: `GET /v2/conversations/{id}` for its tags, `PUT
//!   /v2/conversations/{id}/tags` `{"tags"}` (replaces, hence the read),
//!   (not in shadow mode) `PATCH /v2/conversations/{id}` `{"op": "replace",
//!   "path": "/assignTo", "value": user id}`, and a note.
//! * Idempotency: none in the API; a retry posts again.
//! * Shadow review: `GET /v2/conversations/{id}?embed=threads`: `reply`
//!   threads by a user after the note are agent replies; `status: closed`.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{AgentActivity, Api, content, escalation, needs, posted_at, ticket_ref, time_of};
use crate::domain::OutboxRecord;
use crate::ingest::text::html_to_text;
use crate::outbox::settings::HelpdeskOutSettings;
use crate::outbox::{Courier, DeliverError, Sent};
use crate::secret::Secret;

/// Help Scout adapter.
pub struct HelpScout {
    api: Api,
    client_id: String,
    client_secret: Secret,
    token: Mutex<Option<(Secret, Instant)>>,
    settings: HelpdeskOutSettings,
}

impl HelpScout {
    /// From `[outbound.helpscout]`.
    pub fn new(settings: HelpdeskOutSettings, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            api: Api::new(
                "Help Scout",
                settings
                    .base_url
                    .as_deref()
                    .unwrap_or("https://api.helpscout.net"),
                timeout,
            )?,
            client_id: needs(&settings.client_id, "helpscout", "client_id")?,
            client_secret: needs(&settings.client_secret, "helpscout", "client_secret")?,
            token: Mutex::new(None),
            settings,
        })
    }

    async fn bearer(&self, fresh: bool) -> Result<Secret, DeliverError> {
        let mut slot = self.token.lock().await;
        if !fresh
            && let Some((t, until)) = slot.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let out = self
            .api
            .json(
                "token",
                self.api
                    .request(reqwest::Method::POST, "/v2/oauth2/token")
                    .form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", self.client_id.as_str()),
                        ("client_secret", self.client_secret.expose()),
                    ]),
            )
            .await?;
        let token = out["access_token"]
            .as_str()
            .ok_or_else(|| DeliverError::Permanent("Help Scout token: no access_token".into()))?;
        let ttl = out["expires_in"]
            .as_u64()
            .unwrap_or(3600)
            .saturating_sub(60);
        let token = Secret::new(token);
        *slot = Some((token.clone(), Instant::now() + Duration::from_secs(ttl)));
        Ok(token)
    }

    /// Sends an authorized request, renewing the token once on 401.
    async fn call(
        &self,
        op: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, DeliverError> {
        let mut fresh = false;
        loop {
            let mut req = self
                .api
                .request(method.clone(), path)
                .bearer_auth(self.bearer(fresh).await?.expose());
            if let Some(b) = body {
                req = req.json(b);
            }
            match self.api.send(op, req).await {
                Err(DeliverError::Permanent(e)) if !fresh && e.contains("HTTP 401") => fresh = true,
                other => return other,
            }
        }
    }

    async fn conversation(&self, id: &str, embed: bool) -> Result<Value, DeliverError> {
        let path = if embed {
            format!("/v2/conversations/{id}?embed=threads")
        } else {
            format!("/v2/conversations/{id}")
        };
        let res = self
            .call("get conversation", reqwest::Method::GET, &path, None)
            .await?;
        res.json()
            .await
            .map_err(|e| DeliverError::Transient(format!("Help Scout get conversation: {e}")))
    }
}

#[async_trait]
impl Courier for HelpScout {
    async fn deliver(&self, record: &OutboxRecord, _retry: bool) -> Result<Sent, DeliverError> {
        let d = &record.delivery;
        let id = ticket_ref(d)?;
        let (note, _, html) = content(d);
        if let Some(shadow) = escalation(d) {
            let conv = self.conversation(&id, false).await?;
            let mut tags: Vec<String> = conv["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["tag"].as_str().map(str::to_owned))
                .collect();
            for t in &self.settings.escalation_tags {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
            self.call(
                "update tags",
                reqwest::Method::PUT,
                &format!("/v2/conversations/{id}/tags"),
                Some(&json!({"tags": tags})),
            )
            .await?;
            if !shadow && let Some(user) = &self.settings.escalation_group {
                let value = user
                    .parse::<u64>()
                    .map_or_else(|_| json!(user), |u| json!(u));
                self.call(
                    "assign",
                    reqwest::Method::PATCH,
                    &format!("/v2/conversations/{id}"),
                    Some(&json!({"op": "replace", "path": "/assignTo", "value": value})),
                )
                .await?;
            }
        }
        let mut body = json!({"text": html});
        if let Some(u) = self
            .settings
            .author_id
            .as_deref()
            .and_then(|u| u.parse::<u64>().ok())
        {
            body["user"] = json!(u);
        }
        let path = if note {
            format!("/v2/conversations/{id}/notes")
        } else {
            let email = d.customer.email.as_ref().ok_or_else(|| {
                DeliverError::Permanent("Help Scout reply: the ticket has no customer email".into())
            })?;
            body["customer"] = json!({"email": email.as_str()});
            format!("/v2/conversations/{id}/reply")
        };
        let res = self
            .call(
                if note { "create note" } else { "create reply" },
                reqwest::Method::POST,
                &path,
                Some(&body),
            )
            .await?;
        Ok(Sent {
            external_id: res
                .headers()
                .get("resource-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        })
    }

    async fn review(&self, record: &OutboxRecord) -> Result<Option<AgentActivity>, DeliverError> {
        let conv = self
            .conversation(&ticket_ref(&record.delivery)?, true)
            .await?;
        let since = posted_at(record);
        let replies = conv["_embedded"]["threads"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["type"] == "reply" && t["createdBy"]["type"] == "user")
            .filter(|t| time_of(&t["createdAt"]).is_some_and(|at| at >= since))
            .filter_map(|t| t["body"].as_str().map(html_to_text))
            .collect();
        Ok(Some(AgentActivity {
            replies,
            closed: conv["status"] == "closed",
        }))
    }
}
