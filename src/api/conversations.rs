//! Widget conversations: create, post a message, poll for replies.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Claims;
use super::{ApiError, ApiState, JsonBody};
use crate::domain::{
    Brand, ConversationId, ConversationStatus, Customer, Provider, Role, Source, Thread, Ticket,
    TicketId,
};

pub(super) async fn healthz(State(state): State<ApiState>) -> impl IntoResponse {
    // A cheap read proves the store answers.
    match state
        .inner
        .store
        .conversation(ConversationId::random())
        .await
    {
        Ok(_) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})),
        )
            .into_response(),
        Err(e) => ApiError::unavailable(format!("store unreachable: {e}")).into_response(),
    }
}

#[derive(Serialize)]
struct Created {
    conversation_id: ConversationId,
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    user: Option<crate::actions::WidgetUser>,
    /// The widget's `data-brand`.
    #[serde(default)]
    brand: Option<String>,
}

/// `brand` if the operator allows it (`retriever.brands`), else a 400 that
/// says which are.
fn allowed_brand(raw: &str, allowed: &[String]) -> Result<Brand, ApiError> {
    let brand =
        Brand::parse(raw).map_err(|e| ApiError::bad_request("invalid_brand", e.to_string()))?;
    if allowed
        .iter()
        .any(|a| Brand::parse(a).is_ok_and(|a| a == brand))
    {
        return Ok(brand);
    }
    let message = if allowed.is_empty() {
        format!(
            "brand {:?} is not served here: this site lists no brands (retriever.brands)",
            brand.as_str()
        )
    } else {
        format!(
            "brand {:?} is not served here; known brands: {}",
            brand.as_str(),
            allowed.join(", ")
        )
    };
    Err(ApiError::bad_request("unknown_brand", message))
}

pub(super) async fn create(
    State(state): State<ApiState>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    // An empty body (or none) opens an anonymous conversation; `user` with
    // the site's identity hash opens a verified one (see `actions::identity`);
    // `brand` one answered from that brand's articles.
    let mut claims = Claims::default();
    if !body.iter().all(u8::is_ascii_whitespace) {
        let parsed: CreateBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
        if let Some(raw) = parsed.brand.as_deref().filter(|b| !b.trim().is_empty()) {
            claims.brand = Some(allowed_brand(raw, &state.config().brands)?);
        }
        if let Some(u) = parsed.user {
            claims.user = Some(
                u.verify(&state.config().identity)
                    .map_err(|e| ApiError::unauthorized("invalid_user_hash", e.to_string()))?,
            );
        }
    }
    // Stateless: nothing is stored until the first message is processed;
    // the brand lives in the token, under its MAC.
    let id = ConversationId::random();
    let token = state.tokens().issue_with(id, &claims);
    Ok((
        StatusCode::CREATED,
        Json(Created {
            conversation_id: id,
            token,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PostMessage {
    text: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Serialize)]
struct Accepted {
    message_id: TicketId,
    ticket_id: TicketId,
    conversation_id: ConversationId,
}

pub(super) async fn post_message(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PostMessage>,
) -> Result<impl IntoResponse, ApiError> {
    let id = super::conversation_id(&id)?;
    let Claims { user, brand } = state.tokens().authorize_claims(&headers, id)?;
    let text = super::message_text(&body.text, state.limits())?;
    // A client retrying a POST with the same key gets the same ticket, which
    // the queue and the store de-duplicate.
    let ticket_id = super::idempotent_id(&headers, &format!("widget:{id}"))?;
    let name = body
        .name
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect::<String>()
        })
        .filter(|n| !n.trim().is_empty());
    let ticket = Ticket {
        ticket_id,
        conversation_id: id,
        provider: Provider::Widget,
        customer: Customer {
            email: user.as_ref().and_then(|u| u.email.clone()),
            name,
            email_auth: None,
            user_id: user.map(|u| u.id),
        },
        subject: None,
        text,
        attachments: Vec::new(),
        thread: Thread::default(),
        brand,
        received_at: Utc::now(),
    };
    state.queue().send(&ticket).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            message_id: ticket_id,
            ticket_id,
            conversation_id: id,
        }),
    ))
}

#[derive(Serialize)]
struct PolledMessage {
    id: String,
    seq: u64,
    role: Role,
    text: String,
    sources: Vec<Source>,
    created_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct Polled {
    conversation_id: ConversationId,
    status: ConversationStatus,
    messages: Vec<PolledMessage>,
    cursor: String,
}

#[derive(Deserialize)]
pub(super) struct PollQuery {
    #[serde(default)]
    after: Option<String>,
}

pub(super) async fn poll(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<PollQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = super::conversation_id(&id)?;
    state.tokens().authorize(&headers, id)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let after = match query.after.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(raw) => raw.parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_cursor",
                "`after` must be a cursor returned by this endpoint",
            )
        })?,
    };
    let page = state
        .inner
        .store
        .messages_after(id, after, state.limits().max_poll_messages)
        .await?;
    let cursor = page.messages.last().map_or(after, |m| m.seq);
    Ok(Json(Polled {
        conversation_id: id,
        status: page
            .conversation
            .map_or(ConversationStatus::Open, |c| c.status),
        messages: page
            .messages
            .into_iter()
            .map(|m| PolledMessage {
                id: m.body.id,
                seq: m.seq,
                role: m.body.role,
                text: m.body.text,
                sources: m.body.sources,
                created_at: m.body.created_at,
            })
            .collect(),
        cursor: cursor.to_string(),
    }))
}
