//! `serve` follows its KB folder (issue #17): an article edited, added or
//! removed while it runs changes the answers, without a restart.

use crate::common;

use std::time::{Duration, Instant};

use common::TestApp;
use serde_json::Value;

async fn ask(app: &TestApp, question: &str) -> Value {
    let (id, token) = app.conversation().await;
    let (status, body) = app.post(&id, &token, question).await;
    assert_eq!(status, 202, "{body}");
    let poll = app.wait_for_reply(&id, &token, 1).await;
    poll["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|m| m["role"] != "customer")
        .cloned()
        .unwrap()
}

/// Asks until `pred` holds for the answer (the watcher polls every 100 ms);
/// panics after 10 s.
async fn ask_until(app: &TestApp, question: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let answer = ask(app, question).await;
        if pred(&answer) {
            return answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the edit was not picked up: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test]
async fn edits_to_the_kb_folder_reach_answers_without_a_restart() {
    let kb = tempfile::tempdir().unwrap();
    let refunds = kb.path().join("refunds.md");
    std::fs::write(
        &refunds,
        "# Refunds for annual plans\n\nAnnual plans are refunded within 14 days of purchase.",
    )
    .unwrap();
    std::fs::write(
        kb.path().join("other.md"),
        "# Invoices\n\nInvoices are emailed monthly.",
    )
    .unwrap();
    let dir = kb.path().to_owned();
    let app = TestApp::spawn_with(move |c| {
        c.kb_dir = dir;
        c.retriever.watch_ms = Some(100);
    })
    .await;
    let q = "How long do refunds for annual plans take after purchase?";
    let first = ask(&app, q).await;
    assert!(
        first["text"].as_str().unwrap().contains("14 days"),
        "{first}"
    );

    // Edited.
    std::fs::write(
        &refunds,
        "# Refunds for annual plans\n\nAnnual plans are refunded within 30 days of purchase.",
    )
    .unwrap();
    let edited = ask_until(&app, q, |a| {
        a["text"].as_str().is_some_and(|t| t.contains("30 days"))
    })
    .await;
    assert!(
        !edited["text"].as_str().unwrap().contains("14 days"),
        "{edited}"
    );

    // Added in a sub-folder.
    std::fs::create_dir(kb.path().join("shipping")).unwrap();
    std::fs::write(
        kb.path().join("shipping/canada.md"),
        "# Shipping to Canada\n\nParcels to Canada arrive within five working days.",
    )
    .unwrap();
    let added = ask_until(
        &app,
        "How long does shipping parcels to Canada take?",
        |a| a["sources"][0]["doc_id"] == "shipping/canada.md",
    )
    .await;
    assert!(
        added["text"]
            .as_str()
            .unwrap()
            .contains("five working days"),
        "{added}"
    );

    // Removed: the question is no longer covered.
    std::fs::remove_file(&refunds).unwrap();
    ask_until(&app, q, |a| {
        a["sources"]
            .as_array()
            .is_none_or(|s| s.iter().all(|s| s["doc_id"] != "refunds.md"))
    })
    .await;
    app.stop().await;
}
