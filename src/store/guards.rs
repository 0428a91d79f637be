//! Ports for the API's shared guards. They keep their state where the
//! store keeps its own (the SQLite file, the DynamoDB table), so they hold
//! across processes and across Lambda instances:
//!
//! * [`ReplayGuard`]: a vendor's signed one-time token (Mailgun's `token`)
//!   vouches for one message. Its first use records the token with a
//!   digest of the message, atomically; the same token with the same
//!   message again is the vendor retrying (accepted: the ticket id makes
//!   the retry a no-op), with any other message a replay (refused).
//! * [`ConversationLimiter`]: at most so many posted messages per
//!   conversation per minute, counted atomically, so every front door sees
//!   the same count.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::ConversationId;

/// What a one-time token's use amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// Not seen before: recorded now.
    First,
    /// Seen before with this very message: the vendor's retry.
    Retry,
    /// Seen before with another message: a replay of the signature.
    Reused,
}

/// Records vendors' one-time tokens for as long as their signatures are
/// accepted.
#[async_trait]
pub trait ReplayGuard: Send + Sync {
    /// Records that `token` (of `scope`, the provider) came with a message
    /// whose digest is `digest`, and keeps it until `until`; says whether
    /// it had come before, and with what. Atomic: of two concurrent uses
    /// with different messages exactly one is `First`.
    async fn use_token(
        &self,
        scope: &str,
        token: &str,
        digest: [u8; 32],
        until: DateTime<Utc>,
    ) -> Result<TokenUse, StoreError>;
}

/// The answer to a posted message's admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Under the limit: counted.
    Allowed,
    /// Over the limit: not counted; try again after this long.
    Limited {
        /// Until the limit has room again.
        retry_after: Duration,
    },
}

/// A per-conversation message rate limit.
#[async_trait]
pub trait ConversationLimiter: Send + Sync {
    /// Counts one posted message in `conversation`, if the limit allows it.
    async fn admit(&self, conversation: ConversationId) -> Result<Admission, StoreError>;
}

/// The storage key of a token: the scope and a hash of the token (vendors'
/// tokens are arbitrary strings; the key stays short and printable).
pub(crate) fn token_key(scope: &str, token: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{scope}#{}", hex::encode(Sha256::digest(token.as_bytes())))
}
