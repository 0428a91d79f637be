#![no_main]
//! Fuzz target: reply_text (scripts/fuzz runs it).

#[allow(unused_imports)]
use deskhand::ingest::{email, helpdesk, sns, text};
#[allow(unused_imports)]
use deskhand_fuzz::ctx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = text::strip_reply(s, Some("Ann Lee"));
        let _ = text::strip_reply(&text::html_to_text(s), None);
    }
});
