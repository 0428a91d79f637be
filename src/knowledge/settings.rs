//! Which retriever finds passages (`[retriever]`), and its sections.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bedrock_kb::KbSettings;

/// Which retriever finds passages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetrieverKind {
    /// The embedded full-text index over `kb_dir`.
    #[default]
    Tantivy,
    /// An Amazon Bedrock Knowledge Base (`Retrieve`).
    BedrockKb,
}

/// Retriever settings: `kind` picks one; its section configures it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrieverSettings {
    /// Which one.
    pub kind: RetrieverKind,
    /// Required when `kind = "bedrock_kb"`.
    pub bedrock_kb: Option<KbSettings>,
    /// Passage vectors for the embedded index (hybrid retrieval); none by
    /// default.
    pub embedder: crate::knowledge::embed::EmbedderSettings,
    /// The KB published by `deskhand kb publish --s3` (the Lambda worker
    /// opens it at cold start and follows its pointer; `kb_dir` is the
    /// fallback while nothing is published).
    pub bundle: Option<crate::knowledge::bundle::BundleSettings>,
    /// Brand or product labels by provider or channel name (`widget =
    /// ["acme"]`, `zendesk = ["bolt"]`): tickets from there are answered
    /// from passages with one of those labels, or with none.
    pub labels: BTreeMap<String, Vec<String>>,
    /// Brands a widget may ask for with `data-brand` (its conversations
    /// are answered from passages labelled with that brand, or with no
    /// label); an unknown brand is refused with a 400. Empty: no widget
    /// may choose one.
    pub brands: Vec<String>,
    /// `serve` polls the KB folder this often (milliseconds) and re-indexes
    /// changed files; 0 turns it off. Default 2000.
    pub watch_ms: Option<u64>,
}
