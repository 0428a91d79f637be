//! The `Retriever` port: passages from a knowledge base for a question.
//!
//! Locally, [`TantivyIndex`] (BM25 over a folder of Markdown and text),
//! wrapped by [`Hybrid`] (spelling, near twins, and passage vectors when an
//! [`embed::Embedder`] is configured);
//! on AWS, a Bedrock Knowledge Base. Each passage carries a `relevance` in
//! 0..=1 that the decision gate compares with `no_knowledge` threshold, so
//! thresholds mean the same whichever retriever is configured.

pub mod bedrock_kb;
pub mod bundle;
pub mod embed;
pub mod filter;
pub mod hybrid;
pub mod import;
pub mod markdown;
mod settings;
pub use settings::{RetrieverKind, RetrieverSettings};
pub mod tantivy;
pub mod watch;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::Source;

pub use self::bedrock_kb::BedrockKb;
pub use self::hybrid::Hybrid;
pub use self::tantivy::TantivyIndex;

/// A piece of a knowledge-base document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    /// The document: path relative to the KB root, or the KB's URI.
    pub doc_id: String,
    /// The document's title.
    pub title: String,
    /// The heading the passage sits under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// The passage text.
    pub text: String,
    /// A link for customers, when the document has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The retriever's own score (BM25, or the KB's similarity).
    pub score: f32,
    /// How well the passage covers the question, 0..=1.
    pub relevance: f32,
}

impl Passage {
    /// The citation for this passage.
    pub fn source(&self) -> Source {
        Source {
            doc_id: self.doc_id.clone(),
            title: self.title.clone(),
            url: self.url.clone(),
        }
    }
}

static NOT_TOPICAL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}\b|\bhttps?://\S+|\bwww\.\S+|[+(]?\d[\d ()./-]{5,}\d")
        .expect("static regex")
});

/// `text` without what says nothing about its topic: e-mail addresses,
/// links, and long numbers (phones, card and order numbers). Their pieces
/// would count as words the knowledge base does not know, and make a
/// covered question look uncovered.
pub fn topical(text: &str) -> std::borrow::Cow<'_, str> {
    NOT_TOPICAL.replace_all(text, " ")
}

/// Retrieval failures, split by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    /// Throttled, timed out, unavailable: retry the ticket later.
    #[error("retrieval temporarily unavailable: {0}")]
    Transient(String),
    /// Misconfigured or broken: retrying will not help.
    #[error("retrieval failed: {0:#}")]
    Permanent(#[source] anyhow::Error),
}

/// Finds passages for a question.
#[async_trait]
pub trait Retriever: Send + Sync {
    /// The `k` best passages for `query`, best first.
    async fn retrieve(&self, query: &str, k: usize) -> Result<Vec<Passage>, RetrieveError>;

    /// The `k` best passages for `query` that `filter` allows (the
    /// customer's locale preferred, other brands' passages left out). A
    /// retriever without metadata (a Bedrock KB, which filters by its own
    /// `filter` setting) ignores it.
    async fn retrieve_filtered(
        &self,
        query: &str,
        k: usize,
        filter: &filter::Filter,
    ) -> Result<Vec<Passage>, RetrieveError> {
        let _ = filter;
        self.retrieve(query, k).await
    }
}
