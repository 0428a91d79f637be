//! The HTTP API over the real app (SQLite, the embedded index): widget, agent, console, feedback, stats, actions, limits, the LLM doubles.
//!
//! One test binary per group (each links the whole library once); each
//! file is a module, the shared support trees are declared here.

#[path = "../actions_support/mod.rs"]
mod actions_support;
#[path = "../common/mod.rs"]
mod common;

mod actions;
mod actions_llm;
mod agent_api;
mod bedrock;
mod console_api;
mod conversation;
mod feedback_api;
mod kb_filters;
mod kb_watch;
mod limits;
mod llm_bounds;
mod local_api;
mod metrics;
mod prompt_injection;
mod resolution_stats;
mod stats;
mod widget_api;
