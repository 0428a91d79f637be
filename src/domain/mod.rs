//! Pure domain types: what a ticket, a message, a reply and a decision are.
//!
//! Everything here is parsed at the edge (`parse`, `TryFrom`) and carries no
//! HTTP, SQL or AWS types, so the pipeline never handles raw strings.

mod conversation;
mod decision;
mod feedback;
mod ids;
mod outbox;
mod ticket;

pub use conversation::{
    Conversation, ConversationStatus, Message, NewMessage, ReplyRoute, Role, Source,
};
pub use decision::{Decision, Escalate, Outcome, Priority, ReasonCode, Reply, Usage};
pub use feedback::{FeedbackReason, Rating};
pub use ids::{ConversationId, IdError, TicketId};
pub use outbox::{
    Delivery, DeliveryMode, NewOutbox, OutboundAction, OutboxRecord, OutboxState, ShadowOutcome,
    ShadowReview,
};
pub use ticket::{
    Attachment, AuthVerdict, Brand, Channel, Customer, EmailAddress, EmailAuth, MessageText,
    Provider, TextError, Thread, Ticket,
};

/// An unknown name for one of the closed sets below (channel, role, reason…).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}; expected one of: {expected}")]
pub struct UnknownName {
    kind: &'static str,
    value: String,
    expected: String,
}

/// Declares a closed set of names with one text form used everywhere:
/// JSON, SQL columns, SNS attributes and log fields.
macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable text form.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::domain::UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::domain::UnknownName {
                        kind: $kind,
                        value: s.chars().take(64).collect(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::domain::UnknownName;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for &'static str {
            fn from(v: $name) -> &'static str {
                v.as_str()
            }
        }
    };
}
pub(crate) use named_enum;
