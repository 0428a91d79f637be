//! Tools a model may call beside `answer_ticket` (the configured actions),
//! and the bound on the tool-use loop.
//!
//! The loop, in both LLM generators: the model sees `answer_ticket` and
//! every tool; each round it either answers (done) or calls tools, whose
//! results go back as tool results; after [`MAX_TOOL_ROUNDS`] rounds of
//! calls, the next request forces `answer_ticket`. What a tool returns is
//! all the model learns of the business's system (the exposed fields), and
//! it is also what the answer may be grounded in ([`Tools::evidence`]).

use async_trait::async_trait;

use crate::knowledge::Passage;

/// Rounds of tool calls before `answer_ticket` is forced.
pub const MAX_TOOL_ROUNDS: usize = 3;

/// A tool as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// `[a-z0-9_]`.
    pub name: String,
    /// When and why to call it.
    pub description: String,
    /// JSON Schema of its input object.
    pub schema: serde_json::Value,
}

/// The tools of one ticket.
#[async_trait]
pub trait Tools: Send + Sync {
    /// What the model may call.
    fn specs(&self) -> Vec<ToolSpec>;
    /// Runs `name` with the model's `input`; the result object goes back to
    /// the model (never an error: failures are results too).
    async fn call(&self, name: &str, input: &serde_json::Value) -> serde_json::Value;
    /// What the calls returned, as passages the answer may cite and link to.
    fn evidence(&self) -> Vec<Passage>;
}
