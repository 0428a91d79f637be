//! deskhand answers customer-support tickets with retrieval and an LLM.
//!
//! A message arrives (widget, email, helpdesk webhook), is acknowledged at
//! once and queued; a worker retrieves knowledge-base passages, asks a model
//! for a structured answer, and either stores the reply (the widget polls
//! for it) or hands the ticket to a human. Every accepted message ends as
//! answered, escalated, or dead-lettered with a human notified.
//!
//! # Layout
//!
//! The path of a ticket: `api` (ingest) → `queue` → `worker` → `pipeline`
//! (`knowledge` → `llm` → decide) → `store` / `notify` → `api` (poll).
//!
//! - [`config`]: typed settings, loaded once at start-up; secrets never printed.
//! - [`telemetry`]: the tracing subscriber.
//! - [`metrics`]: ticket metrics: Prometheus registry locally, CloudWatch EMF on Lambda.
//! - [`cost`]: model and AWS cost from stored tickets, and the monthly estimate.
//! - [`resolution`]: per-conversation resolution figures (confirmed, assumed, reopened, CSAT).
//! - [`gaps`]: the content-gap report: what the knowledge base does not answer.
//! - [`domain`]: pure types: tickets, ids, messages, replies, decisions.
//! - [`actions`]: calls to the business's own systems (order status…) for verified customers.
//! - [`api`]: the one axum `Router` (widget, poll, health), errors → status codes.
//! - [`ingest`]: inbound email and helpdesk webhooks: verify, normalize.
//! - [`aws`]: the shared AWS SDK configuration.
//! - [`queue`]: the `Queue` port, the envelope, and its SQLite adapter.
//! - [`worker`]: one queued record → pipeline → delete, retry or dead-letter.
//! - [`pipeline`]: processes one ticket against the ports; rules and the gate.
//! - [`knowledge`]: the `Retriever` port, the embedded tantivy index, the
//!   hybrid retriever (spelling, near twins, passage vectors) and the
//!   `Embedder` port.
//! - [`llm`]: the `Generator` port: extractive, OpenAI-compatible.
//! - [`store`]: the `Store` port and its SQLite adapter.
//! - [`notify`]: the `Escalator` port: log line and webhook.
//! - [`outbox`]: outbound delivery: email (SMTP, SES) and helpdesk replies, the dispatcher.
//! - [`sqlite`]: the local SQLite file shared by the store and the queue.
//! - [`lambda`]: the AWS front doors: SQS worker and HTTP API on Lambda.
//! - [`local`]: `deskhand serve`: the one-box runtime (API + worker tasks).
//! - [`tools`]: off the ticket path: `eval`, `soak`, `bench`.

pub mod actions;
pub mod api;
pub mod aws;
pub mod config;
pub mod cost;
pub mod domain;
pub mod gaps;
pub mod ingest;
pub mod knowledge;
pub mod lambda;
pub mod llm;
pub mod local;
pub mod metrics;
pub mod notify;
pub mod outbox;
pub mod pipeline;
pub mod queue;
pub mod resolution;
pub mod runtime;
pub mod secret;
pub mod sqlite;
pub mod store;
pub mod telemetry;
pub mod tools;
pub mod worker;
