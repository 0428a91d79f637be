#![no_main]
//! Fuzz target: helpdesk_template (scripts/fuzz runs it).

use deskhand::domain::Provider;
#[allow(unused_imports)]
use deskhand::ingest::{email, helpdesk, sns, text};
#[allow(unused_imports)]
use deskhand_fuzz::ctx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(helpdesk::Parsed::Event(e)) = helpdesk::template::parse(data, "fuzz", || "k".into()) {
        let _ = helpdesk::normalize(Provider::Generic, *e, &ctx());
    }
});
