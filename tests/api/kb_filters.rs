//! Retrieval's metadata filters through the running app (issue #17): a
//! widget configured for one brand is answered from that brand's article
//! (or an unlabelled one), never another brand's, and internal articles
//! never answer.

use crate::common;

use common::TestApp;
use serde_json::Value;

fn kb() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        (
            "acme-refunds.md",
            "---\nbrand: acme\nlocale: en\n---\n# Refunds for annual plans\n\nAcme refunds annual plans within 14 days of purchase from the Billing page.",
        ),
        (
            "bolt-refunds.md",
            "---\nbrand: bolt\nlocale: en\n---\n# Refunds for annual plans\n\nBolt refunds annual plans within 30 days of purchase from the Billing page.",
        ),
        (
            "agents-refunds.md",
            "---\naudience: internal\nbrand: acme\n---\n# Refunds for annual plans (agents)\n\nRefunds of annual plans after 14 days of purchase are approved with code 7731.",
        ),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

async fn answer_source(brand: &str, kb: &std::path::Path) -> (String, Value) {
    let brand = brand.to_owned();
    let kb = kb.to_owned();
    let app = TestApp::spawn_with(move |c| {
        c.kb_dir = kb;
        c.retriever.labels.insert("widget".into(), vec![brand]);
    })
    .await;
    let (id, token) = app.conversation().await;
    let (status, body) = app
        .post(
            &id,
            &token,
            "How long do refunds for annual plans take after purchase?",
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let poll = app.wait_for_reply(&id, &token, 1).await;
    let answer = poll["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "assistant")
        .unwrap_or_else(|| panic!("no answer: {poll}"))
        .clone();
    let doc = answer["sources"][0]["doc_id"].as_str().unwrap().to_owned();
    (doc, answer)
}

#[tokio::test]
async fn a_brands_widget_is_answered_from_that_brands_articles() {
    let kb = kb();
    let (doc, answer) = answer_source("acme", kb.path()).await;
    assert_eq!(doc, "acme-refunds.md", "{answer}");
    let text = answer["text"].as_str().unwrap();
    assert!(
        text.contains("14 days") && !text.contains("30 days"),
        "{answer}"
    );
    assert!(
        !text.contains("7731"),
        "internal text answered a customer: {answer}"
    );
    let (doc, answer) = answer_source("bolt", kb.path()).await;
    assert_eq!(doc, "bolt-refunds.md", "{answer}");
    for s in answer["sources"].as_array().unwrap() {
        assert_ne!(s["doc_id"], "acme-refunds.md", "{answer}");
        assert_ne!(s["doc_id"], "agents-refunds.md", "{answer}");
    }
}
