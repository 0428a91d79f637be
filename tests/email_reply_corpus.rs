//! Reply stripping scored on GitHub's public `email_reply_parser` test
//! corpus (MIT, `fixtures/email_reply_parser/`): the expected visible
//! reply of each fixture is in `expected.json`. The score may only go up.

use std::path::PathBuf;

use deskhand::ingest::text::{display_name, strip_reply, tidy};
use serde_json::Value;

/// Fixtures passing when this test was last tightened.
const FLOOR: usize = 39;

fn normalize(s: &str) -> String {
    tidy(s)
}

#[test]
fn reply_stripping_score_on_the_public_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/email_reply_parser");
    let expected: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let mut passed = 0;
    let mut failures = Vec::new();
    for (name, case) in &expected {
        let body = std::fs::read_to_string(dir.join("emails").join(format!("{name}.txt"))).unwrap();
        let from = case["from"].as_str();
        let got = strip_reply(&body, from.and_then(display_name));
        let want = normalize(case["expected"].as_str().unwrap());
        if normalize(&got) == want {
            passed += 1;
        } else {
            failures.push(format!("--- {name}\nwant: {want:?}\n got: {got:?}"));
        }
    }
    let total = expected.len();
    eprintln!("reply stripping: {passed} of {total} fixtures");
    for f in &failures {
        eprintln!("{f}");
    }
    assert!(
        passed >= FLOOR,
        "score fell to {passed} of {total} (floor {FLOOR})"
    );
}
