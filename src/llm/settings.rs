//! Which generator answers (`[generator]`), and each one's section.

use serde::{Deserialize, Serialize};

use super::bedrock::BedrockSettings;
use super::extractive::Calibration;
use super::openai::OpenAiSettings;

/// Which generator answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorKind {
    /// Sentences from the knowledge base; no model.
    #[default]
    Extractive,
    /// An OpenAI-compatible chat-completions endpoint.
    Openai,
    /// Amazon Bedrock `Converse` (Nova Lite unless configured).
    Bedrock,
}

/// Generator settings: `kind` picks one; its section configures it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorSettings {
    /// Which one.
    pub kind: GeneratorKind,
    /// The extractive generator's confidence calibration.
    pub extractive: Calibration,
    /// Required when `kind = "openai"`.
    pub openai: Option<OpenAiSettings>,
    /// Used when `kind = "bedrock"`; every key has a default.
    pub bedrock: Option<BedrockSettings>,
    /// The circuit breaker in front of model generators (openai, bedrock).
    pub breaker: crate::llm::breaker::BreakerSettings,
}
