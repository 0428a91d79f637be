//! Rate limits: per client on every request, and per conversation on
//! posted messages. Over a limit: 429 with `Retry-After`. Local mode keeps
//! both in memory; on AWS the per-conversation limit is a
//! [`ConversationLimiter`] over DynamoDB shared by every Lambda instance
//! (`store::DynamoConversationLimiter`), and the per-client one is the
//! HTTP API's throttling (`infra/template.yaml`).
//!
//! A budget cannot be multiplied by respelling its key: a conversation is
//! keyed by its parsed [`ConversationId`] (every spelling the handler
//! accepts is one key), a client by the address the nearest untrusted hop
//! connected from (never a header entry the client wrote itself), and an
//! IPv6 client by its /64, the smallest block a host is usually given.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;

use super::ApiError;
use super::Limits;
use crate::domain::ConversationId;
use crate::store::{Admission, ConversationLimiter, StoreError};

/// Keyed limiters forget idle keys every this many checks.
const SWEEP_EVERY: u64 = 4096;

/// The limiters.
pub struct RateLimits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_conversation: Option<Arc<dyn ConversationLimiter>>,
    trust_forwarded_for: bool,
    proxies: Proxies,
    checks: AtomicU64,
}

/// The proxies in front of `serve` (`limits.trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub struct Proxies(Vec<IpNet>);

impl Proxies {
    /// Parses addresses (`10.0.0.1`, `::1`) and CIDR ranges (`10.0.0.0/8`).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| {
                let e = e.trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("limits.trusted_proxies: {e:?} is not an IP address or CIDR range")
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }
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
            // Validated when the configuration loads.
            proxies: Proxies::parse(&limits.trusted_proxies).unwrap_or_default(),
            checks: AtomicU64::new(0),
        }
    }

    /// No limits (add some with the `with_` methods).
    pub fn none() -> Self {
        Self {
            per_ip: None,
            per_conversation: None,
            trust_forwarded_for: false,
            proxies: Proxies::default(),
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

/// The client's address: the connection's peer or, when `serve` sits
/// behind proxies (`trust_forwarded_for`), the right-most
/// `X-Forwarded-For` entry that is not a trusted proxy. Entries left of
/// it were written by the client and prove nothing.
fn client_ip(req: &Request, trust_forwarded_for: bool, proxies: &Proxies) -> Option<IpAddr> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if !trust_forwarded_for {
        return peer;
    }
    // With proxies listed, only a connection from one of them may speak
    // for somebody else.
    if !proxies.is_empty() && !peer.is_some_and(|p| proxies.contains(p)) {
        return peer;
    }
    let mut hops: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    while let Some(hop) = hops.pop() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if proxies.contains(ip) => continue,
            Ok(ip) => return Some(ip),
            // Whatever the nearest untrusted hop wrote is unusable: key on
            // the proxy that forwarded it instead.
            Err(_) => return peer,
        }
    }
    peer
}

/// The rate-limit key of a client address: IPv4 as is (IPv4-mapped IPv6
/// too), IPv6 by its /64 network.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// The conversation a `POST …/messages` is for, parsed the way its handler
/// parses it (this runs after routing: the segment is already decoded).
async fn posted_conversation(parts: &mut Parts) -> Option<ConversationId> {
    if parts.method != Method::POST
        || parts.extensions.get::<MatchedPath>()?.as_str() != "/v1/conversations/{id}/messages"
    {
        return None;
    }
    let params = RawPathParams::from_request_parts(parts, &()).await.ok()?;
    let (_, raw) = params.iter().find(|(k, _)| *k == "id")?;
    // An unparseable id is refused with 400 by the handler, doing no work.
    ConversationId::parse(raw).ok()
}

/// The middleware.
pub async fn enforce(State(limits): State<Arc<RateLimits>>, req: Request, next: Next) -> Response {
    limits.sweep();
    let now = DefaultClock::default().now();
    if let (Some(l), Some(ip)) = (
        &limits.per_ip,
        client_ip(&req, limits.trust_forwarded_for, &limits.proxies),
    ) && let Err(not_until) = l.check_key(&client_key(ip))
    {
        return too_many("from this address", not_until.wait_time_from(now));
    }
    // An unparseable id is left to the handler (400).
    let req = match &limits.per_conversation {
        Some(l) => {
            let (mut parts, body) = req.into_parts();
            if let Some(conv) = posted_conversation(&mut parts).await {
                match l.admit(conv).await {
                    Ok(Admission::Allowed) => {}
                    Ok(Admission::Limited { retry_after }) => {
                        return too_many("in this conversation", retry_after);
                    }
                    // A limit that cannot be counted lets the message
                    // through: the limit protects against floods, and
                    // refusing would lose messages while the counter's
                    // store is down.
                    Err(error) => {
                        tracing::warn!(message = "Could not count a message against its conversation's limit; letting it through.", %error);
                    }
                }
            }
            Request::from_parts(parts, body)
        }
        None => req,
    };
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(peer: &str, xff: &[&str]) -> Request {
        let mut b = Request::builder().uri("/healthz");
        for v in xff {
            b = b.header("x-forwarded-for", *v);
        }
        let mut r = b.body(axum::body::Body::empty()).unwrap();
        r.extensions_mut()
            .insert(ConnectInfo::<SocketAddr>(peer.parse().unwrap()));
        r
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop() {
        let none = Proxies::default();
        let p = Proxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        // Not trusting the header: the peer, whatever it says.
        assert_eq!(
            client_ip(&req("127.0.0.1:1", &["1.1.1.1"]), false, &none),
            ip("127.0.0.1")
        );
        // One proxy: the entry it appended (the right-most).
        let r = req("127.0.0.1:1", &["6.6.6.6, 2.2.2.2"]);
        assert_eq!(client_ip(&r, true, &none), ip("2.2.2.2"));
        // Repeated headers are one list.
        let r = req("127.0.0.1:1", &["6.6.6.6", "2.2.2.2"]);
        assert_eq!(client_ip(&r, true, &none), ip("2.2.2.2"));
        // Trusted hops are skipped.
        let r = req("127.0.0.1:1", &["6.6.6.6, 2.2.2.2, 10.0.0.5"]);
        assert_eq!(client_ip(&r, true, &p), ip("2.2.2.2"));
        // A peer that is not a trusted proxy speaks for itself.
        let r = req("192.0.2.7:1", &["2.2.2.2"]);
        assert_eq!(client_ip(&r, true, &p), ip("192.0.2.7"));
        // Garbage from the nearest untrusted hop: the proxy's address.
        let r = req("127.0.0.1:1", &["2.2.2.2, unknown"]);
        assert_eq!(client_ip(&r, true, &none), ip("127.0.0.1"));
        // No header: the peer.
        assert_eq!(
            client_ip(&req("127.0.0.1:1", &[]), true, &none),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let k = |s: &str| client_key(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2:aaaa::1"), k("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:192.0.2.1"), k("192.0.2.1"));
        assert_ne!(k("192.0.2.1"), k("192.0.2.2"));
    }

    #[test]
    fn trusted_proxies_must_be_addresses_or_ranges() {
        assert!(Proxies::parse(&["10.0.0.0/8".into(), "::1".into(), " 192.0.2.1 ".into()]).is_ok());
        let e = Proxies::parse(&["10.0.0.0/33".into()]).unwrap_err();
        assert!(e.contains("10.0.0.0/33"), "{e}");
        assert!(Proxies::parse(&["proxy.local".into()]).is_err());
    }
}
