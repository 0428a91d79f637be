#![no_main]
//! Fuzz target: mime. Generated shape; see scripts/fuzz.

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
    let now = chrono::Utc::now();
    if let Ok(email) = email::mime::parse(data) {
        let _ = email::normalize(Provider::Mime, email, &ctx(&SETTINGS, now));
    }
});
