//! Conversation tokens: an HMAC of the conversation id under the server's
//! secret. Stateless to check (ingest needs no store), compared in
//! constant time; a token opens exactly one conversation.
//!
//! A conversation opened by a verified site user (identity hash), or for a
//! brand (the widget's `data-brand`), gets a token with those claims
//! appended (`<mac>.<base64url(JSON)>`) and covered by the MAC: neither the
//! user nor the brand can be changed, dropped or added to another token,
//! so a customer cannot switch brand mid-conversation by editing requests,
//! and ingest stays stateless. The JSON is the user alone
//! (`{"id":…,"email":…}`, the form tokens had before brands) when there is
//! no brand, else `{"brand":…,"user":{…}}`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use axum::http::HeaderMap;

use super::error::ApiError;
use crate::actions::VerifiedUser;
use crate::domain::{Brand, ConversationId};
use crate::ingest::email::reply_token::ReplyTokens;
use crate::secret::Secret;

/// Domain separation: tokens for other purposes cannot be confused with these.
const CONTEXT: &[u8] = b"deskhand conversation token v1\0";

/// What a token binds besides its conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// The site's verified user, if the conversation was opened by one.
    pub user: Option<VerifiedUser>,
    /// The brand the conversation was opened for.
    pub brand: Option<Brand>,
}

/// The claims' JSON when a brand is bound.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Bound {
    brand: Brand,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<VerifiedUser>,
}

/// Either form of the claims' JSON (see the module doc).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Wire {
    Bound(Bound),
    User(VerifiedUser),
}

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
        self.issue_with(
            id,
            &Claims {
                user: user.cloned(),
                brand: None,
            },
        )
    }

    /// The token for `id` binding `claims`.
    pub fn issue_with(&self, id: ConversationId, claims: &Claims) -> String {
        let json = match (&claims.user, &claims.brand) {
            (None, None) => return self.issue(id),
            (Some(user), None) => serde_json::to_vec(user),
            (user, Some(brand)) => serde_json::to_vec(&Bound {
                brand: brand.clone(),
                user: user.clone(),
            }),
        }
        .expect("claims serialize");
        let claims = URL_SAFE_NO_PAD.encode(json);
        let mac = URL_SAFE_NO_PAD.encode(self.mac_with(id, Some(&claims)).finalize().into_bytes());
        format!("{mac}.{claims}")
    }

    /// The claims a (valid) token carries; none when it has none or they
    /// do not read (which a token that verified cannot be: the MAC covers
    /// them, and only this code writes them).
    fn claims_of(token: &str) -> Claims {
        let read = || -> Option<Wire> {
            let (_, claims) = token.trim().split_once('.')?;
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()
        };
        match read() {
            Some(Wire::Bound(b)) => Claims {
                user: b.user,
                brand: Some(b.brand),
            },
            Some(Wire::User(user)) => Claims {
                user: Some(user),
                brand: None,
            },
            None => Claims::default(),
        }
    }

    /// Checks the bearer token for `id` as [`Tokens::authorize`] does and
    /// returns the claims it carries (verified user, brand).
    pub fn authorize_claims(
        &self,
        headers: &HeaderMap,
        id: ConversationId,
    ) -> Result<Claims, ApiError> {
        self.authorize(headers, id)?;
        Ok(bearer(headers).map(Self::claims_of).unwrap_or_default())
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
        assert_eq!(Tokens::claims_of(&token).user, Some(ann.clone()));
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
    fn brand_tokens_bind_the_brand() {
        let t = Tokens::new(Secret::new("0123456789abcdef0123"));
        let id = ConversationId::random();
        let claims = |brand: &str, user: Option<&str>| Claims {
            user: user.map(|u| VerifiedUser {
                id: u.into(),
                email: None,
            }),
            brand: Some(Brand::parse(brand).unwrap()),
        };
        let acme = t.issue_with(id, &claims("acme", None));
        assert!(t.verify(id, &acme));
        assert_eq!(Tokens::claims_of(&acme), claims("acme", None));
        let with_user = t.issue_with(id, &claims("acme", Some("u1")));
        assert_eq!(Tokens::claims_of(&with_user), claims("acme", Some("u1")));
        // The attack: keep the MAC, swap the brand for another one (a valid
        // claim the server issued for another conversation, or one written
        // by hand), or drop it.
        let (mac, _) = acme.split_once('.').unwrap();
        let bolt = t.issue_with(ConversationId::random(), &claims("bolt", None));
        let (_, bolt_claims) = bolt.split_once('.').unwrap();
        assert!(!t.verify(id, &format!("{mac}.{bolt_claims}")));
        let forged = URL_SAFE_NO_PAD.encode(br#"{"brand":"bolt"}"#);
        assert!(!t.verify(id, &format!("{mac}.{forged}")));
        assert!(!t.verify(id, mac), "a dropped brand");
        // A user-only token keeps the form it had before brands.
        let ann = VerifiedUser {
            id: "u1".into(),
            email: None,
        };
        let legacy = t.issue_for(id, Some(&ann));
        let (_, c) = legacy.split_once('.').unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(c).unwrap(), br#"{"id":"u1"}"#);
        assert_eq!(
            Tokens::claims_of(&legacy),
            Claims {
                user: Some(ann),
                brand: None
            }
        );
        assert_eq!(Tokens::claims_of(&t.issue(id)), Claims::default());
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
