//! Limits, one test each: request body size and message length (see
//! local_api.rs), rate limits per conversation and per client address,
//! history turns and passage size given to the model.

mod common;

use common::TestApp;
use common::peers::{ModelServer, Reply};
use deskhand::config::{GeneratorKind, Secret};
use deskhand::llm::openai::OpenAiSettings;
use serde_json::json;

#[tokio::test]
async fn too_many_messages_in_one_conversation_get_429_with_retry_after() {
    let app = TestApp::spawn_with(|c| c.limits.per_conversation_per_minute = 3).await;
    let (a, ta) = app.conversation().await;
    for _ in 0..3 {
        assert_eq!(app.post(&a, &ta, "How do I export my data?").await.0, 202);
    }
    let res = app
        .http
        .post(app.url(&format!("/v1/conversations/{a}/messages")))
        .bearer_auth(&ta)
        .json(&json!({"text": "again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&wait), "{wait}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Polling that conversation, and posting to another, still work.
    assert_eq!(app.poll(&a, &ta, "0").await.0, 200);
    let (b, tb) = app.conversation().await;
    assert_eq!(app.post(&b, &tb, "hello").await.0, 202);
    app.stop().await;
}

#[tokio::test]
async fn too_many_requests_from_one_address_get_429() {
    let app = TestApp::spawn_with(|c| c.limits.per_ip_per_minute = 5).await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            app.http
                .get(app.url("/healthz"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    app.stop().await;
}

#[tokio::test]
async fn the_model_gets_at_most_history_turns_and_cut_passages() {
    let model = ModelServer::start(
        vec![],
        Reply::answer("ok.", 0.9, "security/two-factor-authentication.md"),
    )
    .await;
    let app = TestApp::spawn_with(|c| {
        c.pipeline.history_turns = 2;
        c.pipeline.max_passage_chars = 120;
        c.limits.per_conversation_per_minute = 0;
        c.generator.kind = GeneratorKind::Openai;
        c.generator.openai = Some(OpenAiSettings {
            base_url: model.base_url(),
            model: "m".into(),
            api_key: Some(Secret::new("k")),
            timeout_secs: 5,
            max_tokens: 100,
            temperature: 0.0,
            response_format: Default::default(),
        });
    })
    .await;
    let (id, token) = app.conversation().await;
    for i in 1..=4 {
        app.post(
            &id,
            &token,
            &format!("Question {i}: how do I turn on two-factor authentication?"),
        )
        .await;
        app.wait_for_reply(&id, &token, i).await;
    }
    let last = model.requests().pop().unwrap();
    let user = last["messages"][1]["content"].as_str().unwrap();
    assert_eq!(
        user.matches("<turn ").count(),
        2,
        "more than history_turns earlier turns: {user}"
    );
    assert!(user.contains("Question 4"));
    assert!(
        !user.contains("Question 2:"),
        "an old turn leaked into the prompt"
    );
    for passage in user.split("<passage ").skip(1) {
        let body = passage
            .split_once(">\n")
            .unwrap()
            .1
            .split("\n</passage>")
            .next()
            .unwrap();
        assert!(
            body.chars().count() <= 120,
            "passage of {} chars",
            body.chars().count()
        );
    }
    app.stop().await;
}
