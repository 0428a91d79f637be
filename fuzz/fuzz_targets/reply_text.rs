#![no_main]
//! Fuzz target: reply_text. Generated shape; see scripts/fuzz.

use std::sync::LazyLock;

use deskhand::domain::Provider;
#[allow(unused_imports)]
use deskhand::ingest::{Context, InboundSettings, email, helpdesk, sns, text};
use libfuzzer_sys::fuzz_target;

static SETTINGS: LazyLock<InboundSettings> = LazyLock::new(InboundSettings::default);

#[allow(dead_code)]
fn ctx(settings: &InboundSettings, now: chrono::DateTime<chrono::Utc>) -> Context<'_> {
    Context { settings, now, max_text_chars: 4000 }
}

fuzz_target!(|data: &[u8]| {
    #[allow(unused_variables)]
    let _ = Provider::Mime;
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = text::strip_reply(s, Some("Ann Lee"));
        let _ = text::strip_reply(&text::html_to_text(s), None);
    }
});
