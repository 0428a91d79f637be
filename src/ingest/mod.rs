//! Inbound channels: verify a delivery exactly as its vendor documents,
//! then normalize it into a [`crate::domain::Ticket`] (or a logged reason
//! to ignore it). Stateless, like all of ingest.

use serde::{Deserialize, Serialize};

/// Per-provider secrets and options for inbound email and helpdesk webhooks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboundSettings {}
