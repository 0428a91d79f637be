//! Rate limits in local mode: per client IP on every request, and per
//! conversation on posted messages. Over a limit: 429 with `Retry-After`.
//! (On AWS the equivalents are the HTTP API's throttling and the worker's
//! maximum concurrency, in `infra/template.yaml`.)

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

/// Keyed limiters forget idle keys every this many checks.
const SWEEP_EVERY: u64 = 4096;

/// The limiters.
pub struct RateLimits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_conversation: Option<DefaultKeyedRateLimiter<String>>,
    trust_forwarded_for: bool,
    checks: AtomicU64,
}

impl RateLimits {
    /// Limiters for `limits` (a limit of 0 is off).
    pub fn new(limits: &Limits) -> Self {
        let quota = |n: u32| NonZeroU32::new(n).map(Quota::per_minute);
        Self {
            per_ip: quota(limits.per_ip_per_minute).map(DefaultKeyedRateLimiter::keyed),
            per_conversation: quota(limits.per_conversation_per_minute)
                .map(DefaultKeyedRateLimiter::keyed),
            trust_forwarded_for: limits.trust_forwarded_for,
            checks: AtomicU64::new(0),
        }
    }

    fn sweep(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            if let Some(l) = &self.per_ip {
                l.retain_recent();
            }
            if let Some(l) = &self.per_conversation {
                l.retain_recent();
            }
        }
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
    if let (Some(l), Some(conv)) = (&limits.per_conversation, posted_conversation(&req))
        && let Err(not_until) = l.check_key(&conv)
    {
        return too_many("in this conversation", not_until.wait_time_from(now));
    }
    next.run(req).await
}
