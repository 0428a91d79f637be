//! Outbound delivery: email over real SMTP, helpdesk API doubles, giving up.
//!
//! One test binary per group (each links the whole library once); each
//! file is a module, the shared support trees are declared here.

#[path = "../common/mod.rs"]
mod common;
#[path = "../inbound_support/mod.rs"]
mod inbound_support;
#[path = "../outbox_support/mod.rs"]
mod outbox_support;

mod agent_out;
mod email_out;
mod escalation_floor;
mod give_up;
mod helpdesk_out;
