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

/// Opens a widget conversation for `brand` as `data-brand` does: (status,
/// body).
async fn open_for_brand(app: &TestApp, brand: &str) -> (u16, Value) {
    let res = app
        .http
        .post(app.url("/v1/conversations"))
        .json(&serde_json::json!({ "brand": brand }))
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

async fn answer(app: &TestApp, id: &str, token: &str) -> Value {
    let (status, body) = app
        .post(
            id,
            token,
            "How long do refunds for annual plans take after purchase?",
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let poll = app.wait_for_reply(id, token, 1).await;
    poll["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "assistant")
        .unwrap_or_else(|| panic!("no answer: {poll}"))
        .clone()
}

#[tokio::test]
async fn each_widgets_data_brand_gets_its_own_brands_answer() {
    let kb = kb();
    let dir = kb.path().to_owned();
    // One site serving two brands; the widget channel's own label (acme)
    // is what a conversation without a brand gets.
    let app = TestApp::spawn_with(move |c| {
        c.kb_dir = dir;
        c.retriever.brands = vec!["acme".into(), "Bolt".into()];
        c.retriever
            .labels
            .insert("widget".into(), vec!["acme".into()]);
    })
    .await;
    let open = |brand: &'static str| {
        let app = &app;
        async move {
            let (status, body) = open_for_brand(app, brand).await;
            assert_eq!(status, 201, "{body}");
            (
                body["conversation_id"].as_str().unwrap().to_owned(),
                body["token"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (acme_id, acme_token) = open("acme").await;
    let (bolt_id, bolt_token) = open("BOLT").await;

    let a = answer(&app, &acme_id, &acme_token).await;
    assert_eq!(a["sources"][0]["doc_id"], "acme-refunds.md", "{a}");
    assert!(a["text"].as_str().unwrap().contains("14 days"), "{a}");
    // The brand comes before the widget channel's label (acme).
    let b = answer(&app, &bolt_id, &bolt_token).await;
    assert_eq!(b["sources"][0]["doc_id"], "bolt-refunds.md", "{b}");
    let text = b["text"].as_str().unwrap();
    assert!(text.contains("30 days") && !text.contains("14 days"), "{b}");
    for s in b["sources"].as_array().unwrap() {
        assert_ne!(s["doc_id"], "acme-refunds.md", "{b}");
    }
    // Without a brand, the channel's label still applies.
    let (id, token) = app.conversation().await;
    let plain = answer(&app, &id, &token).await;
    assert_eq!(plain["sources"][0]["doc_id"], "acme-refunds.md", "{plain}");

    // The attack: the acme customer keeps the conversation and its MAC but
    // writes the bolt brand into the token's claims. Refused, not re-branded.
    let (mac, _) = acme_token
        .split_once('.')
        .expect("a brand token has claims");
    use base64::Engine;
    let forged_claims =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"brand":"bolt"}"#);
    let (status, body) = app
        .post(&acme_id, &format!("{mac}.{forged_claims}"), "Refunds?")
        .await;
    assert_eq!(status, 401, "{body}");
    // Nor does a brand in the message body do anything: it is refused.
    let res = app
        .http
        .post(app.url(&format!("/v1/conversations/{acme_id}/messages")))
        .bearer_auth(&acme_token)
        .json(&serde_json::json!({"text": "Refunds?", "brand": "bolt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn an_unknown_or_malformed_brand_is_a_clear_400() {
    let app = TestApp::spawn_with(|c| c.retriever.brands = vec!["acme".into()]).await;
    let (status, body) = open_for_brand(&app, "nova").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "unknown_brand", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("nova") && message.contains("acme"),
        "{body}"
    );
    for bad in ["a b", "<script>", &"x".repeat(65)] {
        let (status, body) = open_for_brand(&app, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_brand", "{body}");
    }
    // A site that lists no brands takes none, and says where to list them.
    let none = TestApp::spawn().await;
    let (status, body) = open_for_brand(&none, "acme").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retriever.brands"),
        "{body}"
    );
    // An empty attribute is no brand.
    let (status, body) = open_for_brand(&none, " ").await;
    assert_eq!(status, 201, "{body}");
}
