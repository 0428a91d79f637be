//! The human side of a conversation: an agent replies, closes it, or hands
//! it back to the bot.
//!
//! | route | effect on `status` |
//! |---|---|
//! | `POST /v1/conversations/{id}/agent-replies` | appends an `agent` message and, for email and helpdesk customers, the outbox record that delivers it; `open`/`closed` → `escalated` (a person has taken over, so the bot does not talk over them) |
//! | `POST /v1/conversations/{id}/close` | → `closed` (the customer's next message reopens it) |
//! | `POST /v1/conversations/{id}/handback` | → `open` (the bot answers the next message) |
//!
//! A reply reaches the customer on their channel: the widget polls it; an
//! email or helpdesk conversation gets an outbox record, written in the
//! same atomic step as the message and delivered by the dispatcher, to the
//! address and thread of the customer's latest ticket (the conversation's
//! [`ReplyRoute`](crate::domain::ReplyRoute)). The message and the record
//! share one id, derived from `Idempotency-Key`, so a retried reply is
//! stored and sent once. The answer's `delivery` says which happened:
//! `poll`, `outbox`, `stored_only` (no `[outbound]` section for that
//! channel) or `held_sender` (the email's sender failed authentication;
//! nothing is sent to an address that may be forged).
//!
//! Every route takes the agents' API key as `Authorization: Bearer <key>`,
//! compared in constant time. With no `agent_key` configured the routes
//! refuse everyone (404 `agent_api_disabled`): the API is never open.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::info;

use super::auth::bearer;
use super::{ApiError, ApiState, JsonBody};
use crate::domain::{ConversationId, ConversationStatus, NewMessage, Role};
use crate::outbox::AgentDelivery;

/// Longest `Idempotency-Key` accepted.
/// Longest agent name kept (for the log).
const MAX_AGENT_NAME: usize = 100;

/// Proof that the request carries the agents' API key. Extracted before the
/// path and body, so an unauthenticated caller learns nothing else.
pub(super) struct Agent;

impl FromRequestParts<ApiState> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let key = state
            .config()
            .agent_key
            .as_ref()
            .filter(|k| !k.expose().trim().is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "agent_api_disabled",
                    "the agent API is off: set `agent_key` in the configuration to enable it",
                )
            })?;
        let given = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_agent_key",
                "send the agent API key as `Authorization: Bearer <key>`",
            )
        })?;
        if same_secret(key.expose(), given) {
            Ok(Agent)
        } else {
            Err(ApiError::unauthorized(
                "invalid_agent_key",
                "the agent API key is not valid",
            ))
        }
    }
}

/// Constant-time equality that does not leak the length either: both sides
/// are hashed to 32 bytes first.
fn same_secret(expected: &str, given: &str) -> bool {
    let (a, b) = (
        Sha256::digest(expected.as_bytes()),
        Sha256::digest(given.as_bytes()),
    );
    a.ct_eq(&b).into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentReply {
    text: String,
    /// Who replied; recorded in the log (messages carry no author yet).
    #[serde(default)]
    agent: Option<String>,
}

/// What an agent action leaves.
#[derive(Serialize)]
pub(super) struct Updated {
    pub(super) conversation_id: ConversationId,
    pub(super) status: ConversationStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    /// How a reply reaches the customer (see the module docs).
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery: Option<&'static str>,
}

/// `POST /v1/conversations/{id}/agent-replies` → 201.
pub(super) async fn reply(
    _: Agent,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AgentReply>,
) -> Result<impl IntoResponse, ApiError> {
    let id = super::conversation_id(&id)?;
    let text = super::message_text(&body.text, state.limits())?;
    // A retried reply with the same key is the same message, stored once.
    let message_id = super::idempotent_id(&headers, &format!("agent:{id}"))?.to_string();
    let agent: Option<String> = body
        .agent
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(MAX_AGENT_NAME)
                .collect()
        })
        .filter(|n: &String| !n.trim().is_empty());
    let updated = send_reply(&state, id, text.as_str(), message_id, agent.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(updated)))
}

/// Stores an agent's reply as the conversation's next message, with the
/// outbox record that delivers it on the customer's channel, in one step
/// (the status becomes `escalated`, see the module docs). Shared by this
/// API and the agent console.
pub(super) async fn send_reply(
    state: &ApiState,
    id: ConversationId,
    text: &str,
    message_id: String,
    agent: Option<&str>,
) -> Result<Updated, ApiError> {
    let current = state
        .store()
        .conversation(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no conversation {id}")))?;
    // Keep the reason it was escalated for; a takeover has none.
    let reason = match current.status {
        ConversationStatus::Escalated => current.escalation_reason,
        _ => None,
    };
    let delivery =
        state
            .outbound()
            .agent_reply(id, current.reply_route.as_ref(), &message_id, text);
    let outbox = match &delivery {
        AgentDelivery::Outbox(record) => vec![(**record).clone()],
        _ => Vec::new(),
    };
    let message = NewMessage {
        id: message_id.clone(),
        role: Role::Agent,
        text: text.to_owned(),
        sources: Vec::new(),
        ticket_id: None,
        created_at: Utc::now(),
    };
    let updated = state
        .store()
        .set_status(
            id,
            ConversationStatus::Escalated,
            reason,
            Some(message),
            outbox,
        )
        .await?;
    if matches!(delivery, AgentDelivery::Outbox(_)) {
        state.outbound().nudge();
    }
    info!(
        message = "Agent replied.",
        conversation_id = %id,
        agent = agent.unwrap_or("-"),
        took_over = current.status != ConversationStatus::Escalated,
        delivery = delivery.as_str(),
    );
    Ok(Updated {
        conversation_id: id,
        status: updated.status,
        message_id: Some(message_id),
        delivery: Some(delivery.as_str()),
    })
}

/// `POST /v1/conversations/{id}/close`.
pub(super) async fn close(
    agent: Agent,
    state: State<ApiState>,
    id: Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    set(agent, state, id, ConversationStatus::Closed).await
}

/// `POST /v1/conversations/{id}/handback`.
pub(super) async fn handback(
    agent: Agent,
    state: State<ApiState>,
    id: Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    set(agent, state, id, ConversationStatus::Open).await
}

async fn set(
    _: Agent,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    status: ConversationStatus,
) -> Result<Json<Updated>, ApiError> {
    let id = super::conversation_id(&id)?;
    Ok(Json(change_status(&state, id, status).await?))
}

/// Closes a conversation or hands it back (shared with the console).
pub(super) async fn change_status(
    state: &ApiState,
    id: ConversationId,
    status: ConversationStatus,
) -> Result<Updated, ApiError> {
    let updated = state
        .store()
        .set_status(id, status, None, None, Vec::new())
        .await?;
    info!(message = "Agent changed a conversation's status.", conversation_id = %id, %status);
    Ok(Updated {
        conversation_id: id,
        status: updated.status,
        message_id: None,
        delivery: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("agent-key-0123456789", "agent-key-0123456789"));
        for wrong in [
            "",
            "agent-key-012345678",
            "agent-key-01234567890",
            "AGENT-KEY-0123456789",
        ] {
            assert!(!same_secret("agent-key-0123456789", wrong), "{wrong}");
        }
    }
}
