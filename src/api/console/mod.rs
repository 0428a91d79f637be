//! The agent console: a small team's inbox at `/agent`, served by every
//! front door from the binary (like `/widget.js`), and the JSON API it
//! calls under `/agent/api/`.
//!
//! | route | what |
//! |---|---|
//! | `GET /agent`, `/agent/console.js`, `/agent/console.css`, `/agent/favicon.svg` | the page (plain HTML, CSS and JS; no framework, no build step) |
//! | `POST /agent/api/session` | sign in with an agent key → session cookie + CSRF token |
//! | `GET /agent/api/session` | who is signed in (and the CSRF token again, after a reload) |
//! | `POST /agent/api/session/end` | sign out: revokes every session of the agent server-side, clears the cookie |
//! | `GET /agent/api/queue?reason=&channel=` | conversations waiting for a person, newest escalation first |
//! | `GET /agent/api/conversations/{id}` | transcript with sources, confidences and ratings; notes; the bot's draft |
//! | `POST /agent/api/conversations/{id}/reply` | an agent reply (through the agent API's path: the widget polls it) |
//! | `POST /agent/api/conversations/{id}/note` | an internal note (never shown to the customer) |
//! | `POST /agent/api/conversations/{id}/close`, `…/handback` | close, or give it back to the bot |
//! | `POST /agent/api/conversations/{id}/assign`, `…/unassign` | assign to the signed-in agent, or release |
//! | `GET /agent/api/stats?since=&format=` | what `GET /v1/stats` answers (resolution figures; `format=csv` to export) |
//! | `GET /agent/api/gaps?since=` | the content-gap report ([`crate::gaps`]: grouped by embeddings when `retriever.embedder` is configured, else by terms; without closest passages, which need the retriever: `deskhand gaps`) |
//!
//! Every API route needs a session ([`session`]); every POST but sign-in
//! also needs the session's CSRF token in `X-CSRF-Token` (403
//! `csrf_failed` without it). Without `[[agents]]` or `agent_key` the
//! console is off (404 `console_disabled`).
//!
//! The queue is derived, not stored: the conversations with a ticket that
//! needed a person (escalated, forwarded to its owner, dead-lettered)
//! within `console.queue_days`, whose status is still `escalated`. It
//! reads the period's tickets once and then each candidate conversation,
//! which is cheap for a small team's volume on either store.

pub mod session;

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, JsonBody, agent};
use crate::api::ApiSettings;
use crate::domain::{
    Channel, ConversationId, ConversationStatus, Customer, Outcome, Priority, ReasonCode, Role,
    Source,
};
use crate::store::TicketRecord;
use crate::store::people::{Draft, Note};

pub use session::AgentAccount;

const INDEX_HTML: &str = include_str!("../../../console/index.html");
const CONSOLE_JS: &str = include_str!("../../../console/console.js");
const CONSOLE_CSS: &str = include_str!("../../../console/console.css");
const FAVICON: &str = include_str!("../../../console/favicon.svg");

/// The page may load only its own script and style, and call only its own
/// origin; nothing inline, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// Conversations read at once while building the queue.
const PARALLEL_READS: usize = 8;
/// Characters of the last message shown in the queue.
const PREVIEW_CHARS: usize = 160;
/// Messages of a transcript read per page.
const PAGE: usize = 200;

/// `[console]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// How long a sign-in lasts.
    pub session_hours: u32,
    /// How far back the queue looks for tickets that needed a person.
    pub queue_days: u32,
    /// The content-gap report, with an embedder configured: the least
    /// average cosine similarity for two groups of questions to merge
    /// (model-dependent; see [`crate::gaps`]).
    pub gaps_similarity: f32,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            session_hours: 12,
            queue_days: 30,
            gaps_similarity: crate::gaps::EMBED_JOIN_AT,
        }
    }
}

/// Checks `[[agents]]` and `[console]` (called when the configuration loads).
pub fn validate(config: &ApiSettings) -> anyhow::Result<()> {
    let c = &config.console;
    anyhow::ensure!(
        (1..=24 * 30).contains(&c.session_hours),
        "console.session_hours must be within 1..=720"
    );
    anyhow::ensure!(
        (1..=365).contains(&c.queue_days),
        "console.queue_days must be within 1..=365"
    );
    anyhow::ensure!(
        (-1.0..=1.0).contains(&c.gaps_similarity),
        "console.gaps_similarity must be within -1..=1 (a cosine similarity)"
    );
    let mut names = std::collections::HashSet::new();
    for a in &config.agents {
        anyhow::ensure!(
            !a.name.trim().is_empty() && session::clean_name(&a.name) == a.name,
            "agents: the name {:?} must be non-empty, trimmed, without control characters and at most {} characters",
            a.name,
            crate::store::people::MAX_AGENT_NAME
        );
        anyhow::ensure!(names.insert(&a.name), "agents: {:?} appears twice", a.name);
        anyhow::ensure!(
            a.key.expose().len() >= 16,
            "agents: the key of {:?} must be at least 16 characters",
            a.name
        );
    }
    let keys: std::collections::HashSet<_> = config.agents.iter().map(|a| a.key.expose()).collect();
    anyhow::ensure!(
        keys.len() == config.agents.len(),
        "agents: two agents share a key; give each their own"
    );
    Ok(())
}

/// The console's routes.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/agent", get(page))
        .route("/agent/", get(page))
        .route("/agent/console.js", get(script))
        .route("/agent/console.css", get(style))
        .route("/agent/favicon.svg", get(icon))
        .route("/agent/api/session", post(sign_in).get(whoami))
        .route("/agent/api/session/end", post(sign_out))
        .route("/agent/api/queue", get(queue))
        .route("/agent/api/stats", get(stats))
        .route("/agent/api/gaps", get(gaps))
        .route("/agent/api/conversations/{id}", get(conversation))
        .route("/agent/api/conversations/{id}/reply", post(reply))
        .route("/agent/api/conversations/{id}/note", post(note))
        .route("/agent/api/conversations/{id}/close", post(close))
        .route("/agent/api/conversations/{id}/handback", post(handback))
        .route("/agent/api/conversations/{id}/assign", post(assign))
        .route("/agent/api/conversations/{id}/unassign", post(unassign))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", CONSOLE_JS)
}

async fn icon() -> Response {
    asset("image/svg+xml", FAVICON)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", CONSOLE_CSS)
}

fn disabled() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "console_disabled",
        "the agent console is off: configure [[agents]] or `agent_key`",
    )
}

fn not_signed_in() -> ApiError {
    ApiError::unauthorized("not_signed_in", "sign in to the agent console first")
}

/// A signed-in agent; for any method but GET also proof that the request
/// comes from the console's own page (the CSRF header).
pub(super) struct Signed {
    agent: String,
    cookie: String,
}

impl FromRequestParts<ApiState> for Signed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        if !session::enabled(state.config()) {
            return Err(disabled());
        }
        let cookie = session::cookie_value(&parts.headers).ok_or_else(not_signed_in)?;
        let s = session::verify(state.config(), state.tokens(), cookie, Utc::now())
            .ok_or_else(not_signed_in)?;
        // Signed out since (here or on another device): revoked.
        if state.people()?.session_generation(&s.agent).await? != s.generation {
            tracing::warn!(message = "Console session refused: signed out.", agent = %s.agent);
            return Err(not_signed_in());
        }
        if parts.method != Method::GET && parts.method != Method::HEAD {
            let given = parts
                .headers
                .get(session::CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !session::csrf_ok(state.tokens(), cookie, given) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf_failed",
                    "this request did not come from the console page (missing or wrong X-CSRF-Token)",
                ));
            }
        }
        Ok(Signed {
            agent: s.agent,
            cookie: cookie.to_owned(),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SignIn {
    key: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Serialize)]
struct Who {
    agent: String,
    csrf: String,
    /// Agents with their own keys (else one shared key).
    named_agents: bool,
}

fn private(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `POST /agent/api/session`.
async fn sign_in(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<SignIn>,
) -> Result<Response, ApiError> {
    let config = state.config();
    if !session::enabled(config) {
        return Err(disabled());
    }
    let agent =
        session::sign_in(config, body.name.as_deref(), body.key.trim()).ok_or_else(|| {
            tracing::warn!(message = "Console sign-in refused.");
            ApiError::unauthorized("invalid_agent_key", "that agent key is not valid")
        })?;
    let hours = i64::from(config.console.session_hours);
    let until = Utc::now() + Duration::hours(hours);
    let generation = state.people()?.session_generation(&agent).await?;
    let cookie = session::issue(config, state.tokens(), &agent, generation, until)
        .ok_or_else(not_signed_in)?;
    tracing::info!(message = "Agent signed in to the console.", agent = %agent);
    let mut res = Json(Who {
        csrf: session::csrf(state.tokens(), &cookie),
        agent,
        named_agents: !config.agents.is_empty(),
    })
    .into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::set_cookie(Some((&cookie, hours * 3600))))
            .map_err(|_| not_signed_in())?,
    );
    Ok(private(res))
}

/// `GET /agent/api/session`.
async fn whoami(s: Signed, State(state): State<ApiState>) -> Response {
    private(
        Json(Who {
            csrf: session::csrf(state.tokens(), &s.cookie),
            agent: s.agent,
            named_agents: !state.config().agents.is_empty(),
        })
        .into_response(),
    )
}

/// `POST /agent/api/session/end`: ends every session of the agent (this
/// cookie and any copy of it, and the agent's other devices), then clears
/// the cookie.
async fn sign_out(s: Signed, State(state): State<ApiState>) -> Result<Response, ApiError> {
    let generation = state.people()?.end_sessions(&s.agent).await?;
    tracing::info!(message = "Agent signed out of the console.", agent = %s.agent, generation);
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::set_cookie(None)).expect("static cookie"),
    );
    Ok(res)
}

#[derive(Deserialize)]
pub(super) struct QueueQuery {
    reason: Option<String>,
    channel: Option<String>,
}

/// One conversation waiting for a person.
#[derive(Serialize)]
struct QueueItem {
    conversation_id: ConversationId,
    reason: Option<ReasonCode>,
    priority: Priority,
    channel: Channel,
    customer: String,
    subject: Option<String>,
    /// When its latest ticket needing a person finished.
    escalated_at: DateTime<Utc>,
    /// Since the customer's last message, if they wrote last.
    waiting_secs: Option<i64>,
    assignee: Option<String>,
    last_role: Option<Role>,
    last_text: String,
}

#[derive(Serialize)]
struct QueueOut {
    conversations: Vec<QueueItem>,
    now: DateTime<Utc>,
}

/// Who the customer is, for a list: name, else address, else the channel.
fn customer_label(c: &Customer, channel: Channel) -> String {
    c.name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .or_else(|| c.email.as_ref().map(|e| e.to_string()))
        .unwrap_or_else(|| format!("{channel} visitor"))
}

fn needs_person(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Escalated | Outcome::Forwarded | Outcome::DeadLettered
    )
}

fn preview(text: &str) -> String {
    let mut p: String = text.chars().take(PREVIEW_CHARS).collect();
    if text.chars().count() > PREVIEW_CHARS {
        p.push('…');
    }
    p
}

/// `GET /agent/api/queue`.
async fn queue(
    _: Signed,
    State(state): State<ApiState>,
    q: Result<Query<QueueQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let reason: Option<ReasonCode> = match q.reason.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => Some(r.parse().map_err(|e: crate::domain::UnknownName| {
            ApiError::bad_request("invalid_reason", e.to_string())
        })?),
        None => None,
    };
    let channel: Option<Channel> = match q.channel.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(c.parse().map_err(|e: crate::domain::UnknownName| {
            ApiError::bad_request("invalid_channel", e.to_string())
        })?),
        None => None,
    };
    let now = Utc::now();
    let since = now - Duration::days(i64::from(state.config().console.queue_days));
    let records = state.store().tickets_since(since).await?;
    let mut latest: HashMap<ConversationId, TicketRecord> = HashMap::new();
    for r in records.into_iter().filter(|r| needs_person(r.outcome)) {
        match latest.get(&r.conversation_id) {
            Some(old) if old.completed_at >= r.completed_at => {}
            _ => {
                latest.insert(r.conversation_id, r);
            }
        }
    }
    let state = &state;
    let mut items: Vec<QueueItem> = futures::stream::iter(latest.into_values())
        .map(|r| async move {
            let Some(c) = state.store().conversation(r.conversation_id).await? else {
                return Ok::<_, ApiError>(None);
            };
            if c.status != ConversationStatus::Escalated {
                return Ok(None);
            }
            let last = state.store().history(c.id, 1).await?.pop();
            let assignee = state.people()?.assignee(c.id).await?;
            let channel = c.provider.channel();
            let reason = c.escalation_reason.or(r.reason);
            let waiting_secs = last
                .as_ref()
                .filter(|m| m.body.role == Role::Customer)
                .map(|m| (now - m.body.created_at).num_seconds().max(0));
            Ok(Some(QueueItem {
                conversation_id: c.id,
                priority: reason.map_or(Priority::Normal, ReasonCode::priority),
                reason,
                channel,
                customer: customer_label(&c.customer, channel),
                subject: c.subject.clone(),
                escalated_at: r.completed_at,
                waiting_secs,
                assignee,
                last_role: last.as_ref().map(|m| m.body.role),
                last_text: last.map(|m| preview(&m.body.text)).unwrap_or_default(),
            }))
        })
        .buffer_unordered(PARALLEL_READS)
        .try_filter_map(|i| async move { Ok(i) })
        .try_collect()
        .await?;
    items.retain(|i| {
        reason.is_none_or(|r| i.reason == Some(r)) && channel.is_none_or(|c| i.channel == c)
    });
    items.sort_by_key(|i| std::cmp::Reverse(i.escalated_at));
    Ok(private(
        Json(QueueOut {
            conversations: items,
            now,
        })
        .into_response(),
    ))
}

#[derive(Deserialize)]
pub(super) struct PeriodQuery {
    since: Option<String>,
    format: Option<String>,
}

/// `GET /agent/api/stats`.
async fn stats(
    _: Signed,
    State(state): State<ApiState>,
    q: Result<Query<PeriodQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    Ok(private(
        super::stats::figures(&state, q.since.as_deref(), q.format.as_deref()).await?,
    ))
}

/// `GET /agent/api/gaps`.
async fn gaps(
    _: Signed,
    State(state): State<ApiState>,
    q: Result<Query<PeriodQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let now = Utc::now();
    let since = crate::cost::parse_since(q.since.as_deref(), now)
        .map_err(|m| ApiError::bad_request("invalid_since", m))?;
    let questions = crate::gaps::questions(state.store(), state.people()?, since).await?;
    let how = crate::gaps::Grouping {
        embedder: state.embedder(),
        join_at: state.config().console.gaps_similarity,
    };
    let report = crate::gaps::report(&questions, since, None, how).await;
    Ok(private(Json(report).into_response()))
}

#[derive(Serialize)]
struct MessageOut {
    id: String,
    seq: u64,
    role: Role,
    text: String,
    sources: Vec<Source>,
    created_at: DateTime<Utc>,
    /// The decision's confidence (bot messages).
    #[serde(skip_serializing_if = "Option::is_none")]
    confidence: Option<f32>,
    /// The customer's rating (bot messages).
    #[serde(skip_serializing_if = "Option::is_none")]
    rating: Option<crate::store::people::Feedback>,
}

#[derive(Serialize)]
struct ConversationOut {
    conversation_id: ConversationId,
    status: ConversationStatus,
    reason: Option<ReasonCode>,
    priority: Option<Priority>,
    channel: Channel,
    customer: String,
    subject: Option<String>,
    created_at: DateTime<Utc>,
    assignee: Option<String>,
    messages: Vec<MessageOut>,
    notes: Vec<Note>,
    /// The bot's draft of an answer to the latest escalation, while no
    /// agent has replied since.
    draft: Option<Draft>,
}

/// `GET /agent/api/conversations/{id}`.
async fn conversation(
    _: Signed,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = super::conversation_id(&id)?;
    let c = state
        .store()
        .conversation(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no conversation {id}")))?;
    let mut messages = Vec::new();
    let mut after = 0;
    loop {
        let page = state.store().messages_after(id, after, PAGE).await?;
        let n = page.messages.len();
        after = page.messages.last().map_or(after, |m| m.seq);
        messages.extend(page.messages);
        if n < PAGE {
            break;
        }
    }
    let people = state.people()?;
    let ratings: HashMap<String, _> = people
        .ratings(id)
        .await?
        .into_iter()
        .map(|f| (f.message_id.clone(), f))
        .collect();
    let state = &state;
    let bot_tickets: Vec<crate::domain::TicketId> = messages
        .iter()
        .filter(|m| m.body.role == Role::Assistant)
        .filter_map(|m| m.body.ticket_id)
        .collect();
    let confidences: HashMap<crate::domain::TicketId, f32> = futures::stream::iter(bot_tickets)
        .map(|t| async move {
            Ok::<_, ApiError>(state.store().ticket(t).await?.map(|r| (t, r.confidence)))
        })
        .buffer_unordered(PARALLEL_READS)
        .try_filter_map(|x| async move { Ok(x) })
        .try_collect()
        .await?;
    let last_agent_at = messages
        .iter()
        .filter(|m| m.body.role == Role::Agent)
        .map(|m| m.body.created_at)
        .max();
    let draft = people.draft(id).await?.filter(|d| {
        c.status == ConversationStatus::Escalated && last_agent_at.is_none_or(|a| a < d.created_at)
    });
    let out = ConversationOut {
        conversation_id: id,
        status: c.status,
        reason: c.escalation_reason,
        priority: c.escalation_reason.map(ReasonCode::priority),
        channel: c.provider.channel(),
        customer: customer_label(&c.customer, c.provider.channel()),
        subject: c.subject.clone(),
        created_at: c.created_at,
        assignee: people.assignee(id).await?,
        notes: people.notes(id).await?,
        draft,
        messages: messages
            .into_iter()
            .map(|m| MessageOut {
                confidence: m
                    .body
                    .ticket_id
                    .filter(|_| m.body.role == Role::Assistant)
                    .and_then(|t| confidences.get(&t).copied()),
                rating: ratings.get(&m.body.id).cloned(),
                id: m.body.id,
                seq: m.seq,
                role: m.body.role,
                text: m.body.text,
                sources: m.body.sources,
                created_at: m.body.created_at,
            })
            .collect(),
    };
    Ok(private(Json(out).into_response()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Text {
    text: String,
}

/// `POST /agent/api/conversations/{id}/reply` → 201. Replying to an
/// unassigned conversation assigns it to the agent.
async fn reply(
    s: Signed,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Text>,
) -> Result<impl IntoResponse, ApiError> {
    let id = super::conversation_id(&id)?;
    let text = super::message_text(&body.text, state.limits())?;
    let message_id = super::idempotent_id(&headers, &format!("agent:{id}"))?.to_string();
    let updated = agent::send_reply(&state, id, text.as_str(), message_id, Some(&s.agent)).await?;
    let people = state.people()?;
    if people.assignee(id).await?.is_none() {
        people.assign(id, Some(&s.agent)).await?;
    }
    Ok((StatusCode::CREATED, Json(updated)))
}

/// `POST /agent/api/conversations/{id}/note` → 201.
async fn note(
    s: Signed,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Text>,
) -> Result<impl IntoResponse, ApiError> {
    let id = super::conversation_id(&id)?;
    let text = super::message_text(&body.text, state.limits())?;
    exists(&state, id).await?;
    let note = Note {
        id: super::idempotent_id(&headers, &format!("note:{id}"))?.to_string(),
        agent: s.agent,
        text: text.as_str().to_owned(),
        created_at: Utc::now(),
    };
    let stored = state.people()?.add_note(id, note).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

async fn exists(state: &ApiState, id: ConversationId) -> Result<(), ApiError> {
    state
        .store()
        .conversation(id)
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found(format!("no conversation {id}")))
}

/// `POST /agent/api/conversations/{id}/close`.
async fn close(
    s: Signed,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = super::conversation_id(&id)?;
    tracing::info!(message = "Console: close.", agent = %s.agent, conversation_id = %id);
    Ok(Json(
        agent::change_status(&state, id, ConversationStatus::Closed).await?,
    ))
}

/// `POST /agent/api/conversations/{id}/handback`: the bot answers again,
/// and nobody owns the conversation.
async fn handback(
    s: Signed,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = super::conversation_id(&id)?;
    tracing::info!(message = "Console: hand back.", agent = %s.agent, conversation_id = %id);
    let updated = agent::change_status(&state, id, ConversationStatus::Open).await?;
    state.people()?.assign(id, None).await?;
    Ok(Json(updated))
}

#[derive(Serialize)]
struct Assigned {
    conversation_id: ConversationId,
    assignee: Option<String>,
}

/// `POST /agent/api/conversations/{id}/assign`.
async fn assign(
    s: Signed,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Assigned>, ApiError> {
    let id = super::conversation_id(&id)?;
    exists(&state, id).await?;
    state.people()?.assign(id, Some(&s.agent)).await?;
    Ok(Json(Assigned {
        conversation_id: id,
        assignee: Some(s.agent),
    }))
}

/// `POST /agent/api/conversations/{id}/unassign`.
async fn unassign(
    _: Signed,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Assigned>, ApiError> {
    let id = super::conversation_id(&id)?;
    exists(&state, id).await?;
    state.people()?.assign(id, None).await?;
    Ok(Json(Assigned {
        conversation_id: id,
        assignee: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_never_renders_text_as_markup() {
        for bad in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "localStorage",
            "eval(",
        ] {
            assert!(!CONSOLE_JS.contains(bad), "console.js uses {bad}");
        }
        assert!(INDEX_HTML.contains(r#"<script src="/agent/console.js""#));
        assert!(
            !INDEX_HTML.contains("<script>"),
            "no inline script (the CSP forbids it)"
        );
    }

    #[test]
    fn agents_are_checked() {
        let mut c = ApiSettings {
            agents: vec![AgentAccount {
                name: "dana".into(),
                key: crate::secret::Secret::new("short"),
            }],
            ..ApiSettings::default()
        };
        assert!(validate(&c).is_err());
        c.agents[0].key = crate::secret::Secret::new("a-long-enough-key-0123");
        assert!(validate(&c).is_ok());
        c.agents.push(c.agents[0].clone());
        assert!(validate(&c).unwrap_err().to_string().contains("twice"));
        c.agents[1].name = "lee".into();
        assert!(
            validate(&c)
                .unwrap_err()
                .to_string()
                .contains("share a key")
        );
        c.agents[1].name = " lee".into();
        assert!(validate(&c).is_err());
    }
}
