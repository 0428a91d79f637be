//! The API's settings: request and content limits, and [`ApiSettings`],
//! the sections of the configuration its handlers read.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Request and content limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Longest customer message, in characters (400 above).
    pub max_message_chars: usize,
    /// Messages returned by one poll.
    pub max_poll_messages: usize,
    /// Requests a minute from one client address in `serve` (0: no limit).
    pub per_ip_per_minute: u32,
    /// Messages a minute into one conversation in `serve` (0: no limit).
    pub per_conversation_per_minute: u32,
    /// Take the client address from `X-Forwarded-For` (behind a proxy you
    /// run): its right-most entry that is not in `trusted_proxies`.
    pub trust_forwarded_for: bool,
    /// Addresses or CIDR ranges of the proxies in front of `serve`
    /// (`"10.0.0.0/8"`, `"127.0.0.1"`). With `trust_forwarded_for`, hops
    /// they added are skipped, and a connection from anywhere else is
    /// keyed by its own address. Empty: the peer is the one proxy.
    pub trusted_proxies: Vec<String>,
    /// Seconds a client has to send a request's headers (or to start the
    /// next one on a kept-alive connection) before `serve` closes it.
    pub header_read_timeout_secs: u64,
    /// Seconds from a request's headers to its response in `serve` (408 after).
    pub request_timeout_secs: u64,
    /// Longest pause, in seconds, between two pieces of a request body in
    /// `serve` (408 after).
    pub body_timeout_secs: u64,
    /// Requests `serve` handles at once; more get 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Connections `serve` keeps open at once; more wait to be accepted.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_message_chars: 4_000,
            max_poll_messages: 100,
            per_ip_per_minute: 600,
            per_conversation_per_minute: 20,
            trust_forwarded_for: false,
            trusted_proxies: Vec::new(),
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
            body_timeout_secs: 10,
            max_concurrent_requests: 256,
            max_connections: 512,
        }
    }
}

impl Limits {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        for (name, v) in [
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            (
                "max_concurrent_requests",
                self.max_concurrent_requests as u64,
            ),
            ("max_connections", self.max_connections as u64),
        ] {
            anyhow::ensure!(v > 0, "limits.{name} must be at least 1");
        }
        crate::api::ratelimit::Proxies::parse(&self.trusted_proxies).map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

/// What the API's handlers read: the sections of the configuration that
/// concern the front door (built by the composition root, see
/// `Config::api`), so that `api` never imports the configuration.
#[derive(Debug, Clone, Default)]
pub struct ApiSettings {
    /// Origins allowed to call the API from a browser (`*` for any).
    pub cors_origins: Vec<String>,
    /// Request and content limits.
    pub limits: Limits,
    /// Agents' API key (agent replies, close, hand back).
    pub agent_key: Option<Secret>,
    /// Administrators' API key (stats, metrics).
    pub admin_key: Option<Secret>,
    /// Agents who sign in to the console, each with their own key.
    pub agents: Vec<super::console::AgentAccount>,
    /// The agent console.
    pub console: super::console::ConsoleSettings,
    /// Inbound email and helpdesk channels.
    pub inbound: crate::ingest::InboundSettings,
    /// Replies back to email and helpdesks (agents' replies go out by it).
    pub outbound: crate::outbox::OutboundSettings,
    /// Brands a widget may choose with `data-brand` (`retriever.brands`).
    pub brands: Vec<String>,
    /// Widget identity verification.
    pub identity: crate::actions::IdentitySettings,
    /// How resolutions are counted.
    pub resolution: crate::resolution::ResolutionSettings,
    /// Prices and the deployment, for the cost figures in `/v1/stats`.
    pub pricing: crate::cost::Pricing,
}
