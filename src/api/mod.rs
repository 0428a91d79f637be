//! The one axum `Router`: it runs under `deskhand serve` and under
//! `lambda_http` on AWS alike.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness and store reachability |
//! | `POST /v1/conversations` | a new widget conversation and its token |
//! | `POST /v1/conversations/{id}/messages` | a customer message → 202 |
//! | `GET /v1/conversations/{id}/messages?after=` | replies since a cursor |
//! | `POST /v1/conversations/{id}/agent-replies`, `…/close`, `…/handback` | a human agent's actions (agent key) |
//! | `GET /v1/stats?since=` | outcomes, reasons, latency and cost per resolution (admin key) |
//! | `GET /agent`, `/agent/api/…` | the agent console and its API (agent sessions, see [`console`]) |
//! | `POST /v1/conversations/{id}/messages/{mid}/feedback`, `…/csat` | a customer's rating of a reply, or of the conversation (conversation token) |
//! | `GET /widget.js` | the chat widget a site embeds |
//! | `GET /` | a demo page embedding the widget (local mode only) |
//! | `GET /metrics` | Prometheus metrics (admin key; local mode only) |

mod agent;
pub mod auth;
pub mod console;
mod conversations;
pub mod error;
mod feedback;
mod inbound;
pub mod ratelimit;
mod settings;
pub use settings::{ApiSettings, Limits};
mod stats;
mod widget;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::knowledge::embed::Embedder;
use crate::outbox::OutboundPolicy;
use crate::queue::Queue;
use crate::store::{ConversationLimiter, PeopleStore, ReplayGuard, Store};

pub use auth::Tokens;
pub use error::ApiError;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    tokens: Tokens,
    config: Arc<ApiSettings>,
    replay: Option<Arc<dyn ReplayGuard>>,
    conversation_limiter: Option<Arc<dyn ConversationLimiter>>,
    people: Option<Arc<dyn PeopleStore>>,
    outbound: OutboundPolicy,
    embedder: Option<Arc<dyn Embedder>>,
}

impl ApiState {
    /// State over the given ports and settings.
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        tokens: Tokens,
        config: Arc<ApiSettings>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                queue,
                tokens,
                outbound: OutboundPolicy::from_settings(&config.outbound),
                config,
                replay: None,
                conversation_limiter: None,
                people: None,
                embedder: None,
            }),
        }
    }

    /// Routes agents' replies by `policy` (the configuration's
    /// `[outbound]` by default); a local server passes one that wakes its
    /// dispatcher.
    pub fn with_outbound(mut self, policy: OutboundPolicy) -> Self {
        Arc::make_mut(&mut self.inner).outbound = policy;
        self
    }

    /// Embeds questions for the console's content-gap report (grouped by
    /// terms without one).
    pub fn with_embedder(mut self, embedder: Option<Arc<dyn Embedder>>) -> Self {
        Arc::make_mut(&mut self.inner).embedder = embedder;
        self
    }

    /// The embedder, if one is configured.
    pub(crate) fn embedder(&self) -> Option<&dyn Embedder> {
        self.inner.embedder.as_deref()
    }

    /// Which outbox records agents' replies create.
    pub(crate) fn outbound(&self) -> &OutboundPolicy {
        &self.inner.outbound
    }

    /// Spends inbound single-use signatures (Mailgun's tokens) through
    /// `guard`, which every front door must share.
    pub fn with_replay_guard(mut self, guard: Arc<dyn ReplayGuard>) -> Self {
        Arc::make_mut(&mut self.inner).replay = Some(guard);
        self
    }

    /// Limits posted messages per conversation through `limiter` (shared
    /// by every front door) instead of in this process's memory.
    pub fn with_conversation_limiter(mut self, limiter: Arc<dyn ConversationLimiter>) -> Self {
        Arc::make_mut(&mut self.inner).conversation_limiter = Some(limiter);
        self
    }

    /// Keeps agents' notes, assignments, bot drafts and customers'
    /// ratings in `people` (the agent console and feedback need it).
    pub fn with_people(mut self, people: Arc<dyn PeopleStore>) -> Self {
        Arc::make_mut(&mut self.inner).people = Some(people);
        self
    }

    /// The people store (503 when this front door has none).
    pub(crate) fn people(&self) -> Result<&dyn PeopleStore, ApiError> {
        self.inner.people.as_deref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "people_store_missing",
                "this server keeps no notes or feedback",
            )
        })
    }

    /// The replay guard, if one is wired.
    pub fn replay_guard(&self) -> Option<Arc<dyn ReplayGuard>> {
        self.inner.replay.clone()
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// The queue.
    pub fn queue(&self) -> &dyn Queue {
        self.inner.queue.as_ref()
    }

    /// Conversation tokens.
    pub fn tokens(&self) -> &Tokens {
        &self.inner.tokens
    }

    /// The API's settings.
    pub fn config(&self) -> &ApiSettings {
        &self.inner.config
    }

    /// Request and content limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.config.limits
    }
}

/// Routes beyond the API that only some front doors serve.
#[derive(Debug, Clone, Copy, Default)]
pub struct Routes {
    /// A demo page at `/` that embeds the widget (`deskhand serve`).
    pub demo_page: bool,
    /// Per-IP and per-conversation rate limits in memory (`deskhand
    /// serve`; on AWS the HTTP API throttles per client instead). A
    /// conversation limiter in the state
    /// ([`ApiState::with_conversation_limiter`]) limits conversations
    /// either way.
    pub rate_limits: bool,
    /// `GET /metrics`, serving the [`crate::metrics::Metrics`] put in the
    /// router as an `Extension` (`deskhand serve`).
    pub metrics: bool,
    /// Request and body time-outs (408) and a cap on requests in flight
    /// (503 with `Retry-After`), from [`Limits`] (`deskhand serve`; on AWS
    /// the function's timeout and reserved concurrency bound both).
    pub request_limits: bool,
}

/// The router over `state`, without the demo page.
pub fn router(state: ApiState) -> Router {
    router_with(state, Routes::default())
}

/// The router over `state`, with the optional `routes`.
pub fn router_with(state: ApiState, routes: Routes) -> Router {
    let limit = state.limits().max_body_bytes;
    let cors_origins = state.config().cors_origins.clone();
    let mut app = Router::new()
        .route("/healthz", get(conversations::healthz))
        .route("/v1/conversations", post(conversations::create))
        .route(
            "/v1/conversations/{id}/messages",
            post(conversations::post_message).get(conversations::poll),
        )
        .route(
            "/v1/conversations/{id}/messages/{mid}/feedback",
            post(feedback::rate),
        )
        .route("/v1/conversations/{id}/csat", post(feedback::csat))
        .route("/v1/conversations/{id}/agent-replies", post(agent::reply))
        .route("/v1/conversations/{id}/close", post(agent::close))
        .route("/v1/conversations/{id}/handback", post(agent::handback))
        .route("/v1/stats", get(stats::stats))
        .route("/widget.js", get(widget::script))
        .merge(console::routes())
        .merge(inbound::routes(&state));
    if routes.demo_page {
        app = app.route("/", get(widget::demo_page));
    }
    if routes.metrics {
        app = app.route("/metrics", get(stats::metrics));
    }
    let app = app
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(limit));
    let app = if routes.request_limits {
        with_request_limits(app, state.limits())
    } else {
        app
    };
    // Outside the cap: a rate-limited request takes no slot.
    let shared = state.inner.conversation_limiter.clone();
    let app = if routes.rate_limits || shared.is_some() {
        let mut limits = if routes.rate_limits {
            ratelimit::RateLimits::new(state.limits())
        } else {
            ratelimit::RateLimits::none()
        };
        if let Some(limiter) = shared {
            limits = limits.with_conversation_limiter(limiter);
        }
        app.layer(axum::middleware::from_fn_with_state(
            Arc::new(limits),
            ratelimit::enforce,
        ))
    } else {
        app
    };
    app.layer(cors(&cors_origins))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Slow or piled-up requests, bounded with tower's own middleware: at most
/// `max_concurrent_requests` in flight (the next is shed at once with 503,
/// never queued), each answered within `request_timeout_secs` (408), its
/// body never idle longer than `body_timeout_secs` (408, see
/// [`body_error`]). The slot is shared by every route.
fn with_request_limits(app: Router<ApiState>, limits: &Limits) -> Router<ApiState> {
    use std::time::Duration;
    app.layer(
        tower::ServiceBuilder::new()
            .layer(axum::error_handling::HandleErrorLayer::new(
                |e: tower::BoxError| async move { shed_or_timed_out(&e) },
            ))
            .load_shed()
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                limits.max_concurrent_requests,
            ))
            .timeout(Duration::from_secs(limits.request_timeout_secs))
            .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
                Duration::from_secs(limits.body_timeout_secs),
            )),
    )
}

/// Seconds a shed client is asked to wait.
const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

fn shed_or_timed_out(e: &tower::BoxError) -> axum::response::Response {
    use axum::response::IntoResponse;
    if e.is::<tower::load_shed::error::Overloaded>() {
        let mut res = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("too many requests in flight; retry in {OVERLOADED_RETRY_AFTER_SECS} s"),
        )
        .into_response();
        res.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(OVERLOADED_RETRY_AFTER_SECS),
        );
        res
    } else if e.is::<tower::timeout::error::Elapsed>() {
        timed_out().into_response()
    } else {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed",
        )
        .into_response()
    }
}

fn timed_out() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "the request took too long to arrive; send it again",
    )
}

/// The answer to a body that could not be read: 408 when it stalled past
/// `limits.body_timeout_secs`, 400 otherwise.
pub(crate) fn body_error(e: &(dyn std::error::Error + 'static), detail: String) -> ApiError {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<tower_http::timeout::TimeoutError>() {
            return timed_out();
        }
        cause = c.source();
    }
    ApiError::bad_request("unreadable_body", detail)
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            "idempotency-key".parse().expect("static header"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// A conversation id from a path segment (400 on garbage).
pub(crate) fn conversation_id(raw: &str) -> Result<crate::domain::ConversationId, ApiError> {
    crate::domain::ConversationId::parse(raw)
        .map_err(|e| ApiError::bad_request("invalid_conversation_id", e.to_string()))
}

/// Message text within the configured length: 400 when blank, 413 when too long.
pub(crate) fn message_text(
    raw: &str,
    limits: &Limits,
) -> Result<crate::domain::MessageText, ApiError> {
    use crate::domain::{MessageText, TextError};
    MessageText::parse(raw, limits.max_message_chars).map_err(|e| match e {
        TextError::Empty => ApiError::bad_request("empty_text", e.to_string()),
        TextError::TooLong { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_long",
            e.to_string(),
        ),
    })
}

/// The id of what a request creates: derived from its `Idempotency-Key`
/// within `scope` (so a retried request creates the same thing, which is
/// then stored once), or fresh without one.
pub(crate) fn idempotent_id(
    headers: &axum::http::HeaderMap,
    scope: &str,
) -> Result<crate::domain::TicketId, ApiError> {
    use crate::domain::TicketId;
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(TicketId::new());
    };
    let key = v
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                format!(
                    "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                ),
            )
        })?;
    Ok(TicketId::derive(scope, key))
}

/// A JSON request body whose every failure is an [`ApiError`]: 413 above
/// the size limit, 400 naming what is wrong otherwise.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<ApiState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        let limit = state.limits().max_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(limit)
            } else {
                body_error(&r, r.body_text())
            }
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::bad_request(
                "invalid_json",
                format!("the body is not the expected JSON: {e}"),
            )
        })
    }
}
