#![no_main]
//! Fuzz target: intercom (scripts/fuzz runs it).

use deskhand::domain::Provider;
#[allow(unused_imports)]
use deskhand::ingest::{email, helpdesk, sns, text};
#[allow(unused_imports)]
use deskhand_fuzz::ctx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(helpdesk::Parsed::Event(e)) = helpdesk::intercom::parse(data) {
        let _ = helpdesk::normalize(Provider::Intercom, *e, &ctx());
    }
});
