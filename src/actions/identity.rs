//! Who the customer verifiably is, per ticket, and the widget's identity
//! verification (as Intercom does it).
//!
//! * email: the `From` address, only when the receiving provider's
//!   SPF/DKIM/DMARC results pass ([`crate::domain::EmailAuth::verified`]);
//!   missing or failing results mean unverified;
//! * helpdesk: the requester the (signature-verified) helpdesk reports;
//! * widget: the site's backend computes `hash` = hex HMAC-SHA256 of the
//!   signed-in user's id under `identity.secret`; `POST /v1/conversations`
//!   with `{"user": {"id", "email", "hash"}}` checks it in constant time
//!   (a wrong hash is 401) and binds the user to the conversation token, so
//!   every later message of that conversation carries the same verified
//!   user and no other. No `user`: an anonymous, unverified visitor.
//!
//! When the widget passes an email, the hash covers `id + "\n" + email`
//! (`identity.bind_email`, on by default): a signed-in user holds their own
//! hash and could otherwise call the API with someone else's address and
//! read that customer's orders. `bind_email = false` is Intercom's form
//! (the id alone is signed); the email is then not covered, so it is
//! ignored: never trusted, never shown, never used by an action.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::spec::IdentityNeed;
use crate::domain::{Channel, EmailAddress, Ticket};
use crate::secret::Secret;

/// `[identity]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentitySettings {
    /// The per-site secret the backend signs user ids with. Unset: widget
    /// users cannot be verified (a `user` is refused with 401).
    pub secret: Option<Secret>,
    /// The hash covers `id + "\n" + email` when an email is passed (the
    /// default); `false`: the id alone, and the email is ignored.
    pub bind_email: bool,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            secret: None,
            bind_email: true,
        }
    }
}

/// The `user` object the widget sends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WidgetUser {
    /// The site's user id.
    pub id: String,
    /// Their email address.
    #[serde(default)]
    pub email: Option<String>,
    /// Hex HMAC-SHA256 of the id under `identity.secret`.
    pub hash: String,
}

/// A widget user whose hash checked out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedUser {
    /// The site's user id.
    pub id: String,
    /// Their email address, if the site sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAddress>,
}

/// Why a widget user was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// No `identity.secret` is configured.
    #[error("identity verification is not configured on this site")]
    NotConfigured,
    /// Id empty, too long or with control characters; email malformed.
    #[error("user: {0}")]
    Malformed(&'static str),
    /// The hash does not match.
    #[error("user.hash does not match user.id")]
    BadHash,
}

/// What the site's backend computes for a signed-in user with the default
/// settings: the hash of `id`, or of `id + "\n" + email` when it passes an
/// email.
pub fn widget_user_hash(secret: &str, id: &str, email: Option<&str>) -> String {
    match email {
        Some(e) => user_hash(secret, &format!("{id}\n{e}")),
        None => user_hash(secret, id),
    }
}

/// Hex HMAC-SHA256 of `message` under `secret`.
pub fn user_hash(secret: &str, message: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

impl WidgetUser {
    /// Checks the hash (constant time) and the fields.
    pub fn verify(&self, settings: &IdentitySettings) -> Result<VerifiedUser, UserError> {
        let secret = settings.secret.as_ref().ok_or(UserError::NotConfigured)?;
        let id = self.id.trim();
        if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
            return Err(UserError::Malformed(
                "id must be 1–256 printable characters",
            ));
        }
        let raw_email = self
            .email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty());
        let email = match raw_email {
            Some(e) => Some(
                EmailAddress::parse(e).ok_or(UserError::Malformed("email is not an address"))?,
            ),
            None => None,
        };
        // The backend signs the email exactly as it passes it.
        let message = match (raw_email, settings.bind_email) {
            (Some(e), true) => format!("{id}\n{e}"),
            _ => id.to_owned(),
        };
        let given =
            hex::decode(self.hash.trim().to_ascii_lowercase()).map_err(|_| UserError::BadHash)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(message.as_bytes());
        mac.verify_slice(&given).map_err(|_| UserError::BadHash)?;
        Ok(VerifiedUser {
            id: id.to_owned(),
            // Not covered by the hash: not the customer's to claim.
            email: email.filter(|_| settings.bind_email),
        })
    }
}

/// How a ticket's identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifiedBy {
    /// The widget's identity hash.
    WidgetHash,
    /// The mail provider's SPF/DKIM/DMARC results.
    EmailAuthentication,
    /// The helpdesk's requester.
    Helpdesk,
}

/// What is verifiably known of a ticket's customer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// A verified email address.
    pub email: Option<EmailAddress>,
    /// A verified site user id (widget).
    pub user_id: Option<String>,
    /// How, when anything is verified.
    pub by: Option<VerifiedBy>,
}

impl Identity {
    /// From the ticket: see the module docs.
    pub fn of(ticket: &Ticket) -> Self {
        let c = &ticket.customer;
        match ticket.channel() {
            Channel::Widget => match &c.user_id {
                Some(id) => Self {
                    email: c.email.clone(),
                    user_id: Some(id.clone()),
                    by: Some(VerifiedBy::WidgetHash),
                },
                None => Self::default(),
            },
            Channel::Email => match (&c.email, c.email_auth) {
                (Some(e), Some(auth)) if auth.verified() && !auth.spoofed() => Self {
                    email: Some(e.clone()),
                    user_id: None,
                    by: Some(VerifiedBy::EmailAuthentication),
                },
                _ => Self::default(),
            },
            Channel::Helpdesk => match &c.email {
                Some(e) => Self {
                    email: Some(e.clone()),
                    user_id: None,
                    by: Some(VerifiedBy::Helpdesk),
                },
                None => Self::default(),
            },
        }
    }

    /// Whether this identity may run an action needing `need`.
    pub fn satisfies(&self, need: IdentityNeed) -> bool {
        match need {
            IdentityNeed::None => true,
            IdentityNeed::VerifiedEmail => self.email.is_some() && self.by.is_some(),
            IdentityNeed::VerifiedUser => self.user_id.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuthVerdict, EmailAuth};

    fn settings(bind: bool) -> IdentitySettings {
        IdentitySettings {
            secret: Some(Secret::new("site-secret")),
            bind_email: bind,
        }
    }

    #[test]
    fn hashes_check_out_in_either_case_and_nothing_else_does() {
        let s = settings(false);
        let hash = user_hash("site-secret", "u_42");
        let user = |id: &str, hash: &str| WidgetUser {
            id: id.into(),
            email: Some("Ann@Example.com".into()),
            hash: hash.into(),
        };
        // Intercom's form: the id alone is signed, so the email is ignored.
        let v = user("u_42", &hash).verify(&s).unwrap();
        assert_eq!(v.email, None);
        assert!(user("u_42", &hash.to_uppercase()).verify(&s).is_ok());
        for bad in ["", "zz", &hash[..10], &user_hash("other", "u_42")] {
            assert_eq!(
                user("u_42", bad).verify(&s),
                Err(UserError::BadHash),
                "{bad}"
            );
        }
        assert_eq!(user("u_43", &hash).verify(&s), Err(UserError::BadHash));
        assert!(matches!(
            user("", &hash).verify(&s),
            Err(UserError::Malformed(_))
        ));
        assert_eq!(
            user("u_42", &hash).verify(&IdentitySettings::default()),
            Err(UserError::NotConfigured)
        );
        // Bound to the email: the id's hash alone no longer does.
        let b = settings(true);
        assert_eq!(user("u_42", &hash).verify(&b), Err(UserError::BadHash));
        let bound = widget_user_hash("site-secret", "u_42", Some("Ann@Example.com"));
        let v = user("u_42", &bound).verify(&b).unwrap();
        assert_eq!(v.email.unwrap().as_str(), "Ann@example.com");
        // Someone else's address with one's own bound hash: refused.
        let other = WidgetUser {
            email: Some("bob@example.com".into()),
            ..user("u_42", &bound)
        };
        assert_eq!(other.verify(&b), Err(UserError::BadHash));
        assert!(IdentitySettings::default().bind_email);
    }

    #[test]
    fn email_identity_needs_passing_authentication() {
        let ticket = |auth: Option<EmailAuth>| {
            let mut t: Ticket = serde_json::from_value(serde_json::json!({
                "ticket_id": "7b0e8f4e-2a55-4c8e-9d0e-1f2a3b4c5d6e",
                "conversation_id": crate::domain::ConversationId::random(),
                "provider": "postmark",
                "customer": {"email": "ann@example.com"},
                "text": "hi",
                "received_at": "2026-01-01T00:00:00Z",
            }))
            .unwrap();
            t.customer.email_auth = auth;
            t
        };
        let pass = EmailAuth {
            spf: Some(AuthVerdict::Pass),
            dkim: Some(AuthVerdict::Pass),
            dmarc: Some(AuthVerdict::Pass),
        };
        let fail = EmailAuth {
            dmarc: Some(AuthVerdict::Fail),
            ..pass
        };
        assert!(Identity::of(&ticket(Some(pass))).satisfies(IdentityNeed::VerifiedEmail));
        assert!(!Identity::of(&ticket(Some(fail))).satisfies(IdentityNeed::VerifiedEmail));
        assert!(!Identity::of(&ticket(None)).satisfies(IdentityNeed::VerifiedEmail));
        assert!(Identity::of(&ticket(None)).satisfies(IdentityNeed::None));
        assert!(!Identity::of(&ticket(Some(pass))).satisfies(IdentityNeed::VerifiedUser));
        // Helpdesk: the requester; widget: only a verified user.
        let mut t = ticket(None);
        t.provider = crate::domain::Provider::Zendesk;
        assert_eq!(Identity::of(&t).by, Some(VerifiedBy::Helpdesk));
        t.provider = crate::domain::Provider::Widget;
        assert!(!Identity::of(&t).satisfies(IdentityNeed::VerifiedEmail));
        t.customer.user_id = Some("u1".into());
        assert!(Identity::of(&t).satisfies(IdentityNeed::VerifiedEmail));
        assert!(Identity::of(&t).satisfies(IdentityNeed::VerifiedUser));
    }
}
