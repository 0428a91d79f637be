#![no_main]
//! Fuzz target: front. Generated shape; see scripts/fuzz.

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
    if let Ok(helpdesk::Parsed::Event(e)) = helpdesk::front::parse(data) {
        let _ = helpdesk::normalize(Provider::Front, *e, &ctx(&SETTINGS, chrono::Utc::now()));
    }
});
