//! Customers' feedback, behind the conversation token like the poll:
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/conversations/{id}/messages/{mid}/feedback` | `{rating: "up"\|"down", reason?}` on one bot reply |
//! | `POST /v1/conversations/{id}/csat` | `{score: 1..=5}` for the conversation |
//!
//! Both are idempotent: the latest rating of a message (and the latest
//! score of a conversation) replaces the earlier one, so a retry or a
//! change of mind leaves one answer. Only bot replies can be rated (404
//! otherwise: the token's holder learns nothing of other messages). A
//! thumbs-down answers `offer_person: true`, and the widget offers a
//! person; asking is then an ordinary customer message, so the rules and
//! the queue treat it like any other request for a human.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, JsonBody};
use crate::domain::{ConversationId, FeedbackReason, Rating, Role};
use crate::store::people::{Csat, Feedback};

/// Longest message id accepted in a path.
const MAX_MESSAGE_ID: usize = 200;
/// How far back a rated message is looked for.
const LOOKBACK: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RateBody {
    rating: Rating,
    #[serde(default)]
    reason: Option<FeedbackReason>,
}

#[derive(Serialize)]
pub(super) struct Rated {
    conversation_id: ConversationId,
    message_id: String,
    rating: Rating,
    reason: Option<FeedbackReason>,
    /// Whether the customer should be offered a person.
    offer_person: bool,
}

/// `POST /v1/conversations/{id}/messages/{mid}/feedback`.
pub(super) async fn rate(
    State(state): State<ApiState>,
    Path((id, mid)): Path<(String, String)>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RateBody>,
) -> Result<Json<Rated>, ApiError> {
    let id = super::conversation_id(&id)?;
    state.tokens().authorize(&headers, id)?;
    if mid.is_empty() || mid.len() > MAX_MESSAGE_ID {
        return Err(ApiError::bad_request(
            "invalid_message_id",
            format!("a message id is 1 to {MAX_MESSAGE_ID} characters"),
        ));
    }
    let history = state.store().history(id, LOOKBACK).await?;
    let found = history
        .iter()
        .any(|m| m.body.id == mid && m.body.role == Role::Assistant);
    if !found {
        return Err(ApiError::not_found(
            "no bot reply with that id in this conversation",
        ));
    }
    // A reason explains a thumbs-down only.
    let reason = body.reason.filter(|_| body.rating == Rating::Down);
    state
        .people()?
        .rate(Feedback {
            conversation_id: id,
            message_id: mid.clone(),
            rating: body.rating,
            reason,
            at: Utc::now(),
        })
        .await?;
    tracing::info!(message = "Reply rated.", conversation_id = %id, rating = %body.rating, reason = reason.map(FeedbackReason::as_str));
    Ok(Json(Rated {
        conversation_id: id,
        message_id: mid,
        rating: body.rating,
        reason,
        offer_person: body.rating == Rating::Down,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CsatBody {
    score: u8,
}

/// `POST /v1/conversations/{id}/csat`.
pub(super) async fn csat(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CsatBody>,
) -> Result<(StatusCode, Json<Csat>), ApiError> {
    let id = super::conversation_id(&id)?;
    state.tokens().authorize(&headers, id)?;
    if !(1..=5).contains(&body.score) {
        return Err(ApiError::bad_request(
            "invalid_score",
            "the score is a whole number from 1 to 5",
        ));
    }
    if state.store().conversation(id).await?.is_none() {
        return Err(ApiError::not_found("no such conversation"));
    }
    let c = Csat {
        conversation_id: id,
        score: body.score,
        at: Utc::now(),
    };
    state.people()?.set_csat(c.clone()).await?;
    tracing::info!(message = "Conversation scored.", conversation_id = %id, score = body.score);
    Ok((StatusCode::OK, Json(c)))
}
