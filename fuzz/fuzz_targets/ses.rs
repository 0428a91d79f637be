#![no_main]
//! Fuzz target: ses (scripts/fuzz runs it).

use deskhand::domain::Provider;
#[allow(unused_imports)]
use deskhand::ingest::{email, helpdesk, sns, text};
#[allow(unused_imports)]
use deskhand_fuzz::ctx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = sns::Envelope::parse(data) {
        let _ = env.string_to_sign();
        let _ = env.region();
        let _ = sns::check_url(&env.signing_cert_url, "us-east-1", "cert", &[]);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(email::ses::Parsed::Mail(mail)) = email::ses::parse(text)
    {
        let _ = email::normalize(Provider::Ses, *mail, &ctx());
    }
});
