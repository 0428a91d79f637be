//! What the fuzz targets share: default inbound settings and the context
//! the parsers normalize under.

use std::sync::LazyLock;

use deskhand::ingest::{Context, InboundSettings};

static SETTINGS: LazyLock<InboundSettings> = LazyLock::new(InboundSettings::default);

/// A normalization context with default settings, at the current time.
pub fn ctx() -> Context<'static> {
    Context { settings: &SETTINGS, now: chrono::Utc::now(), max_text_chars: 4000, reply_tokens: None }
}
