#![no_main]
//! Fuzz target: mailgun (scripts/fuzz runs it).

use deskhand::domain::Provider;
#[allow(unused_imports)]
use deskhand::ingest::{email, helpdesk, sns, text};
#[allow(unused_imports)]
use deskhand_fuzz::ctx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for ct in ["application/x-www-form-urlencoded", "multipart/form-data; boundary=b"] {
        if let Ok(form) = email::mailgun::form(ct, data)
            && let Ok(email) = email::mailgun::parse(&form)
        {
            let _ = email::normalize(Provider::Mailgun, email, &ctx());
        }
    }
});
