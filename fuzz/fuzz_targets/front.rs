#![no_main]
//! Fuzz target: front (scripts/fuzz runs it).

use deskhand::domain::Provider;
#[allow(unused_imports)]
use deskhand::ingest::{email, helpdesk, sns, text};
#[allow(unused_imports)]
use deskhand_fuzz::ctx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(helpdesk::Parsed::Event(e)) = helpdesk::front::parse(data) {
        let _ = helpdesk::normalize(Provider::Front, *e, &ctx());
    }
});
