//! Identifiers, parsed once at the edge.
//!
//! Conversation and ticket ids are UUIDs. Widget conversations get a random
//! id; email and helpdesk threads get a UUIDv5 derived from the thread root,
//! so ingest needs no lookup and a redelivered webhook maps to the same ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Provider;

/// Namespace of every derived (v5) id; changing it would re-key every thread.
const NAMESPACE: Uuid = uuid::uuid!("0b6f4d8e-3c1a-5f2e-9a77-6d2c5e1b9f40");

/// A string that is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} must be a UUID, got {value:?}")]
pub struct IdError {
    kind: &'static str,
    value: String,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Uuid);

        impl $name {
            /// Parses the textual (hyphenated or simple) form.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                // Cap the echo so a huge bogus id cannot bloat an error body.
                Uuid::try_parse(s.trim()).map(Self).map_err(|_| IdError {
                    kind: $kind,
                    value: s.chars().take(64).collect(),
                })
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }
    };
}

uuid_id!(
    /// One conversation: a widget session, an email thread or a helpdesk ticket.
    ConversationId,
    "conversation id"
);
uuid_id!(
    /// One customer message to be answered; the unit of idempotency.
    TicketId,
    "ticket id"
);

impl ConversationId {
    /// A fresh, unguessable id for a widget conversation.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The id of an email thread or helpdesk ticket, derived from its root so
    /// every message of the thread lands in one conversation.
    pub fn derive(provider: Provider, thread_root: &str) -> Self {
        let name = format!("conversation\u{1f}{}\u{1f}{thread_root}", provider.as_str());
        Self(Uuid::new_v5(&NAMESPACE, name.as_bytes()))
    }
}

impl TicketId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id of an external delivery (an email's Message-ID, a webhook's
    /// event id, a client's `Idempotency-Key`), so a redelivery dedupes.
    pub fn derive(scope: &str, external_id: &str) -> Self {
        let name = format!("ticket\u{1f}{scope}\u{1f}{external_id}");
        Self(Uuid::new_v5(&NAMESPACE, name.as_bytes()))
    }
}

impl Default for TicketId {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_and_rejects_garbage() {
        let id = ConversationId::random();
        assert_eq!(ConversationId::parse(&id.to_string()), Ok(id));
        for bad in [
            "",
            "x",
            "123",
            "../../etc/passwd",
            "0b6f4d8e-3c1a-5f2e-9a77-6d2c5e1b9f4",
        ] {
            assert!(ConversationId::parse(bad).is_err(), "{bad:?} parsed");
        }
        let long = "z".repeat(10_000);
        let err = TicketId::parse(&long).unwrap_err().to_string();
        assert!(
            err.len() < 200,
            "error echoes the whole input: {}",
            err.len()
        );
    }

    #[test]
    fn derived_ids_are_stable_and_scoped() {
        let a = ConversationId::derive(Provider::Zendesk, "123");
        assert_eq!(a, ConversationId::derive(Provider::Zendesk, "123"));
        assert_ne!(a, ConversationId::derive(Provider::Freshdesk, "123"));
        assert_ne!(a, ConversationId::derive(Provider::Zendesk, "1234"));
        assert_eq!(
            TicketId::derive("widget", "k"),
            TicketId::derive("widget", "k")
        );
        assert_ne!(
            TicketId::derive("widget", "k"),
            TicketId::derive("email", "k")
        );
    }

    #[test]
    fn serde_uses_the_text_form() {
        let id = TicketId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<TicketId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<TicketId>("\"nope\"").is_err());
    }
}
