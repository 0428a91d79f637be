#![no_main]
//! Fuzz target: ses. Generated shape; see scripts/fuzz.

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
    if let Ok(env) = sns::Envelope::parse(data) {
        let _ = env.string_to_sign();
        let _ = env.region();
        let _ = sns::check_url(&env.signing_cert_url, "us-east-1", "cert", &[]);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(email::ses::Parsed::Mail(mail)) = email::ses::parse(text)
    {
        let _ = email::normalize(Provider::Ses, *mail, &ctx(&SETTINGS, chrono::Utc::now()));
    }
});
