#![no_main]
//! Fuzz target: the queue envelope. Any bytes a queue could hand the worker
//! must decode to a ticket or an error, never panic; a decoded ticket must
//! encode and decode back to itself.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else { return };
    if let Ok(ticket) = deskhand::queue::decode(body) {
        let (again, _) = deskhand::queue::encode(&ticket, 1 << 20).expect("a decoded ticket encodes");
        assert_eq!(deskhand::queue::decode(&again).expect("round trip"), ticket);
    }
});
