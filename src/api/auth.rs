//! Conversation tokens: an HMAC of the conversation id under the server's
//! secret. Stateless to check (ingest needs no store), compared in
//! constant time; a token opens exactly one conversation.
//!
//! A conversation opened by a verified site user (identity hash) gets a
//! token with the user appended (`<mac>.<base64url(user JSON)>`) and covered
//! by the MAC: the user cannot be changed or added to another token, and
//! ingest stays stateless.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use axum::http::HeaderMap;

use super::error::ApiError;
use crate::actions::VerifiedUser;
use crate::domain::ConversationId;
use crate::ingest::email::reply_token::ReplyTokens;
use crate::secret::Secret;

/// Domain separation: tokens for other purposes cannot be confused with these.
const CONTEXT: &[u8] = b"deskhand conversation token v1\0";

/// Issues and checks conversation tokens.
#[derive(Clone)]
pub struct Tokens {
    key: Secret,
}

impl Tokens {
    /// Tokens under `key`.
    pub fn new(key: Secret) -> Self {
        Self { key }
    }

    fn mac(&self, id: ConversationId) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(CONTEXT);
        mac.update(id.to_string().as_bytes());
        mac
    }

    fn mac_with(&self, id: ConversationId, claims: Option<&str>) -> Hmac<Sha256> {
        let mut mac = self.mac(id);
        if let Some(c) = claims {
            mac.update(b"\0user\0");
            mac.update(c.as_bytes());
        }
        mac
    }

    /// The token for `id` opened by `user` (or anonymously).
    pub fn issue_for(&self, id: ConversationId, user: Option<&VerifiedUser>) -> String {
        let Some(user) = user else {
            return self.issue(id);
        };
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(user).expect("a user serializes"));
        let mac = URL_SAFE_NO_PAD.encode(self.mac_with(id, Some(&claims)).finalize().into_bytes());
        format!("{mac}.{claims}")
    }

    /// The verified user a (valid) token carries.
    fn user_of(token: &str) -> Option<VerifiedUser> {
        let (_, claims) = token.trim().split_once('.')?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()
    }

    /// Checks the bearer token for `id` as [`Tokens::authorize`] does and
    /// returns the verified user it carries, if any.
    pub fn authorize_user(
        &self,
        headers: &HeaderMap,
        id: ConversationId,
    ) -> Result<Option<VerifiedUser>, ApiError> {
        self.authorize(headers, id)?;
        Ok(bearer(headers).and_then(Self::user_of))
    }

    /// Email reply tags under the same secret (their own domain
    /// separation: a widget token is never a reply tag, nor the reverse).
    pub fn reply_tokens(&self) -> ReplyTokens {
        ReplyTokens::new(self.key.clone())
    }

    /// An HMAC under the server's secret of `parts` (each length-prefixed,
    /// so no two part lists sign alike) in the domain `context` — for
    /// other stateless credentials (the agent console's session cookie).
    pub(crate) fn sign(&self, context: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(context);
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// The token for `id`.
    pub fn issue(&self, id: ConversationId) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(id).finalize().into_bytes())
    }

    /// Whether `token` opens `id` (constant-time).
    pub fn verify(&self, id: ConversationId, token: &str) -> bool {
        let (mac, claims) = match token.trim().split_once('.') {
            Some((m, c)) => (m, Some(c)),
            None => (token.trim(), None),
        };
        match URL_SAFE_NO_PAD.decode(mac) {
            Ok(bytes) => self.mac_with(id, claims).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    /// Checks the `Authorization: Bearer` header for `id`. The same error
    /// for a wrong token and an unknown conversation: no existence oracle.
    pub fn authorize(&self, headers: &HeaderMap, id: ConversationId) -> Result<(), ApiError> {
        let token = bearer(headers).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_token",
                "send the conversation token as `Authorization: Bearer <token>`",
            )
        })?;
        if self.verify(id, token) {
            Ok(())
        } else {
            Err(ApiError::unauthorized(
                "invalid_token",
                "the token does not open this conversation",
            ))
        }
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_open_one_conversation_only() {
        let t = Tokens::new(Secret::new("0123456789abcdef0123"));
        let (a, b) = (ConversationId::random(), ConversationId::random());
        let ta = t.issue(a);
        assert!(t.verify(a, &ta));
        assert!(!t.verify(b, &ta));
        let other = Tokens::new(Secret::new("another-secret-entirely"));
        assert!(!other.verify(a, &ta));
        for bad in ["", "x", "!!!", &ta[..ta.len() - 1], &format!("{ta}A")] {
            assert!(!t.verify(a, bad), "{bad:?}");
        }
    }

    #[test]
    fn user_tokens_bind_the_user() {
        let t = Tokens::new(Secret::new("0123456789abcdef0123"));
        let id = ConversationId::random();
        let ann = VerifiedUser {
            id: "u1".into(),
            email: crate::domain::EmailAddress::parse("ann@example.com"),
        };
        let token = t.issue_for(id, Some(&ann));
        assert!(t.verify(id, &token));
        assert!(!t.verify(ConversationId::random(), &token));
        assert_eq!(Tokens::user_of(&token), Some(ann.clone()));
        // Another user spliced onto the MAC fails, as does dropping the user.
        let bob = VerifiedUser {
            id: "u2".into(),
            email: crate::domain::EmailAddress::parse("bob@example.com"),
        };
        let other = t.issue_for(id, Some(&bob));
        let (mac, _) = token.split_once('.').unwrap();
        let (_, bob_claims) = other.split_once('.').unwrap();
        assert!(!t.verify(id, &format!("{mac}.{bob_claims}")));
        assert!(!t.verify(id, mac));
        assert!(!t.verify(id, &format!("{mac}.")));
        assert_eq!(t.issue_for(id, None), t.issue(id));
    }

    #[test]
    fn bearer_header_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", "bearer   abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
