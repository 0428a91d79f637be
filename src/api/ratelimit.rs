//! Rate limits: per client IP on every request, and per conversation on
//! posted messages. Over a limit: 429 with `Retry-After`. Local mode keeps
//! both in memory; on AWS the per-conversation limit is a
//! [`ConversationLimiter`] over DynamoDB shared by every Lambda instance
//! (`store::DynamoConversationLimiter`), and the per-client one is the
//! HTTP API's throttling (`infra/template.yaml`).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::ApiError;
use crate::config::Limits;
use crate::domain::ConversationId;
use crate::store::{Admission, ConversationLimiter, StoreError};

/// Keyed limiters forget idle keys every this many checks.
const SWEEP_EVERY: u64 = 4096;

/// The limiters.
pub struct RateLimits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_conversation: Option<Arc<dyn ConversationLimiter>>,
    trust_forwarded_for: bool,
    checks: AtomicU64,
}

impl RateLimits {
    /// In-memory limiters for `limits` (a limit of 0 is off).
    pub fn new(limits: &Limits) -> Self {
        let quota = |n: u32| NonZeroU32::new(n).map(Quota::per_minute);
        Self {
            per_ip: quota(limits.per_ip_per_minute).map(DefaultKeyedRateLimiter::keyed),
            per_conversation: MemoryLimiter::new(limits.per_conversation_per_minute)
                .map(|l| Arc::new(l) as Arc<dyn ConversationLimiter>),
            trust_forwarded_for: limits.trust_forwarded_for,
            checks: AtomicU64::new(0),
        }
    }

    /// No limits (add some with the `with_` methods).
    pub fn none() -> Self {
        Self {
            per_ip: None,
            per_conversation: None,
            trust_forwarded_for: false,
            checks: AtomicU64::new(0),
        }
    }

    /// Limits conversations through `limiter` instead.
    pub fn with_conversation_limiter(mut self, limiter: Arc<dyn ConversationLimiter>) -> Self {
        self.per_conversation = Some(limiter);
        self
    }

    fn sweep(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1
            && let Some(l) = &self.per_ip
        {
            l.retain_recent();
        }
    }
}

/// The per-conversation limit in this process's memory (local mode, one
/// process): `per_minute` messages a minute, replenished evenly.
pub struct MemoryLimiter {
    limiter: DefaultKeyedRateLimiter<ConversationId>,
    checks: AtomicU64,
}

impl MemoryLimiter {
    /// A limiter of `per_minute` (0: none).
    pub fn new(per_minute: u32) -> Option<Self> {
        NonZeroU32::new(per_minute).map(|n| Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)),
            checks: AtomicU64::new(0),
        })
    }
}

#[async_trait::async_trait]
impl ConversationLimiter for MemoryLimiter {
    async fn admit(&self, conversation: ConversationId) -> Result<Admission, StoreError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        Ok(match self.limiter.check_key(&conversation) {
            Ok(()) => Admission::Allowed,
            Err(not_until) => Admission::Limited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            },
        })
    }
}

fn too_many(scope: &str, wait: std::time::Duration) -> Response {
    let secs = wait.as_secs() + 1;
    let mut res = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests {scope}; retry in {secs} s"),
    )
    .into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

/// The client's address: the connection's peer, or the first
/// `X-Forwarded-For` entry when a trusted proxy sets it.
fn client_ip(req: &Request, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for
        && let Some(ip) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return Some(ip);
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The conversation a `POST …/messages` is for.
fn posted_conversation(req: &Request) -> Option<String> {
    if req.method() != Method::POST {
        return None;
    }
    let rest = req.uri().path().strip_prefix("/v1/conversations/")?;
    let (id, tail) = rest.split_once('/')?;
    (tail == "messages").then(|| id.to_owned())
}

/// The middleware.
pub async fn enforce(State(limits): State<Arc<RateLimits>>, req: Request, next: Next) -> Response {
    limits.sweep();
    let now = DefaultClock::default().now();
    if let (Some(l), Some(ip)) = (&limits.per_ip, client_ip(&req, limits.trust_forwarded_for))
        && let Err(not_until) = l.check_key(&ip)
    {
        return too_many("from this address", not_until.wait_time_from(now));
    }
    // An unparseable id is left to the handler (400).
    if let (Some(l), Some(conv)) = (
        &limits.per_conversation,
        posted_conversation(&req).and_then(|c| ConversationId::parse(&c).ok()),
    ) {
        match l.admit(conv).await {
            Ok(Admission::Allowed) => {}
            Ok(Admission::Limited { retry_after }) => {
                return too_many("in this conversation", retry_after);
            }
            // A limit that cannot be counted lets the message through: the
            // limit protects against floods, and refusing would lose
            // messages while the counter's store is down.
            Err(error) => {
                tracing::warn!(message = "Could not count a message against its conversation's limit; letting it through.", %error);
            }
        }
    }
    next.run(req).await
}
