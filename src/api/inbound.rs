//! `POST /v1/inbound/email/{provider}` and `POST /v1/inbound/helpdesk/{provider}`:
//! read the body (up to the channel's limit), verify and normalize it with
//! [`crate::ingest::Inbound`] off the async runtime, queue the ticket, answer 202
//! `{"ticket_id","conversation_id"}`; deliveries not to be answered get
//! 200 `{"ignored": reason}`. Stateless: no store lookups (but Mailgun's
//! tokens, spent through the state's replay guard).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde_json::json;
use tracing::{info, warn};

use super::{ApiError, ApiState};
use crate::domain::Channel;
use crate::ingest::{self, Inbound, IngestError, Normalized, Verification};

/// The inbound routes, sharing one [`Inbound`] (and its certificate cache).
pub(super) fn routes(state: &ApiState) -> Router<ApiState> {
    let inbound = Arc::new(
        Inbound::new(
            state.config().inbound.clone(),
            state.limits().max_message_chars,
        )
        .with_reply_tokens(state.tokens().reply_tokens())
        .with_replay_guard(state.replay_guard()),
    );
    Router::new()
        .route("/v1/inbound/email/{provider}", post(email))
        .route("/v1/inbound/helpdesk/{provider}", post(helpdesk))
        // Each channel has its own limit, enforced while reading.
        .layer(DefaultBodyLimit::disable())
        .layer(Extension(inbound))
}

async fn email(
    State(state): State<ApiState>,
    Extension(inbound): Extension<Arc<Inbound>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    receive(&state, &inbound, Channel::Email, &provider, &headers, body).await
}

async fn helpdesk(
    State(state): State<ApiState>,
    Extension(inbound): Extension<Arc<Inbound>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    receive(
        &state,
        &inbound,
        Channel::Helpdesk,
        &provider,
        &headers,
        body,
    )
    .await
}

/// The HTTP answer to a refused delivery.
pub fn error(e: IngestError) -> ApiError {
    let (status, code) = match &e {
        IngestError::UnknownProvider(_) => (StatusCode::NOT_FOUND, "unknown_provider"),
        IngestError::NotConfigured(_) => (StatusCode::NOT_FOUND, "provider_not_configured"),
        IngestError::MissingSignature(_) => (StatusCode::UNAUTHORIZED, "missing_signature"),
        IngestError::InvalidSignature(_) => (StatusCode::UNAUTHORIZED, "invalid_signature"),
        IngestError::StaleTimestamp(_) => (StatusCode::UNAUTHORIZED, "stale_timestamp"),
        IngestError::Replayed(_) => (StatusCode::UNAUTHORIZED, "replayed_token"),
        IngestError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        IngestError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_payload"),
        IngestError::Unavailable(m) => return ApiError::unavailable(m.clone()),
    };
    ApiError::new(status, code, e.to_string())
}

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_large {
            ApiError::too_large(limit)
        } else {
            super::body_error(&e, format!("the body could not be read: {e}"))
        }
    })
}

async fn receive(
    state: &ApiState,
    inbound: &Arc<Inbound>,
    channel: Channel,
    provider: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Unknown providers are refused before the body is read.
    let known = ingest::provider(channel, provider).map_err(error)?;
    let bytes = read_body(headers, body, inbound.body_limit(channel)).await?;
    // Parsed off the async runtime (see `Inbound::receive_owned`).
    let outcome = inbound
        .clone()
        .receive_owned(
            channel,
            provider,
            headers.clone(),
            bytes,
            Verification::Required,
        )
        .await
        .map_err(|e| {
            let e = error(e);
            // The code, never the payload.
            warn!(message = "Inbound delivery refused.", %channel, provider = %known, status = e.status.as_u16(), code = e.code);
            e
        })?;
    Ok(match outcome {
        Normalized::Accepted(ticket) => {
            state.queue().send(&ticket).await?;
            info!(
                message = "Inbound delivery accepted.",
                %channel,
                provider = %known,
                ticket_id = %ticket.ticket_id,
                conversation_id = %ticket.conversation_id
            );
            (
                StatusCode::ACCEPTED,
                Json(json!({"ticket_id": ticket.ticket_id, "conversation_id": ticket.conversation_id})),
            )
                .into_response()
        }
        Normalized::Ignored(ignored) => {
            info!(message = "Inbound delivery ignored.", %channel, provider = %known, reason = ignored.reason, detail = %ignored.detail);
            (StatusCode::OK, Json(json!({"ignored": ignored.reason}))).into_response()
        }
        Normalized::Challenge(challenge) => {
            info!(message = "Inbound webhook handshake answered.", %channel, provider = %known);
            (
                StatusCode::OK,
                Json(json!({"challenge": challenge, "ignored": "validation_request"})),
            )
                .into_response()
        }
    })
}
