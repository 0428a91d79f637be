//! AWS adapters with the real SDK against moto server (MOTO_ENDPOINT), and the Lambda binaries.
//!
//! One test binary per group (each links the whole library once); each
//! file is a module, the shared support trees are declared here.

#[path = "../common/mod.rs"]
mod common;
#[path = "../inbound_support/mod.rs"]
mod inbound_support;
#[path = "../outbox_support/mod.rs"]
mod outbox_support;

mod actions_aws;
mod aws_adapters;
mod aws_api_guards;
mod aws_e2e;
mod console_aws;
mod kb_publish_aws;
mod kb_vectors_aws;
mod lambda_smoke;
mod outbox_aws;
mod stats_aws;
mod store_floor;
