//! The agent API: replies, close and hand-back, end to end on a temporary
//! SQLite file and the demo knowledge base.

use crate::common;

use std::time::Duration;

use common::{TestApp, with_role};
use deskhand::secret::Secret;
use serde_json::{Value, json};

const KEY: &str = "agent-key-for-tests-0123456789";

async fn app() -> TestApp {
    TestApp::spawn_with(|c| c.agent_key = Some(Secret::new(KEY))).await
}

/// POSTs an agent action; returns (status, body).
async fn agent(
    app: &TestApp,
    id: &str,
    action: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app
        .http
        .post(app.url(&format!("/v1/conversations/{id}/{action}")));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn reply(app: &TestApp, id: &str, text: &str) -> (u16, Value) {
    agent(
        app,
        id,
        "agent-replies",
        Some(KEY),
        Some(json!({"text": text})),
    )
    .await
}

/// A conversation the bot has answered once.
async fn answered(app: &TestApp) -> (String, String) {
    let (id, token) = app.conversation().await;
    app.post(&id, &token, "How do I export my data?").await;
    let poll = app.wait_for_reply(&id, &token, 1).await;
    assert_eq!(poll["status"], "open", "{poll}");
    assert_eq!(with_role(&poll, "assistant").len(), 1, "{poll}");
    (id, token)
}

/// Posts a customer message and waits until the worker has stored it, then
/// a little longer, so that an (unwanted) answer would have appeared.
async fn post_and_settle(app: &TestApp, id: &str, token: &str, text: &str) -> Value {
    let (status, _) = app.post(id, token, text).await;
    assert_eq!(status, 202);
    for _ in 0..200 {
        let (_, p) = app.poll(id, token, "0").await;
        if p["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["role"] == "customer" && m["text"] == text)
        {
            tokio::time::sleep(Duration::from_millis(600)).await;
            return app.poll(id, token, "0").await.1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("customer message {text:?} never stored");
}

#[tokio::test]
async fn without_a_configured_key_the_agent_api_is_off() {
    let app = TestApp::spawn().await;
    let (id, token) = answered(&app).await;
    for action in ["agent-replies", "close", "handback"] {
        for key in [None, Some(""), Some("anything"), Some(token.as_str())] {
            let (status, body) = agent(&app, &id, action, key, Some(json!({"text": "hi"}))).await;
            assert_eq!(status, 404, "{action} {key:?}: {body}");
            assert_eq!(body["error"]["code"], "agent_api_disabled");
        }
    }
    let (_, poll) = app.poll(&id, &token, "0").await;
    assert!(with_role(&poll, "agent").is_empty());
    assert_eq!(poll["status"], "open");
    app.stop().await;
}

#[tokio::test]
async fn wrong_or_missing_keys_are_refused() {
    let app = app().await;
    let (id, token) = answered(&app).await;
    for action in ["agent-replies", "close", "handback"] {
        let body = Some(json!({"text": "hi"}));
        let (s, b) = agent(&app, &id, action, None, body.clone()).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (401, Some("missing_agent_key"))
        );
        for wrong in [&format!("{KEY}x"), &KEY[1..], token.as_str()] {
            let (s, b) = agent(&app, &id, action, Some(wrong), body.clone()).await;
            assert_eq!(
                (s, b["error"]["code"].as_str()),
                (401, Some("invalid_agent_key"))
            );
        }
        // Refused before anything else is looked at.
        let (s, _) = agent(&app, "not-a-uuid", action, Some("wrong"), None).await;
        assert_eq!(s, 401);
    }
    let (_, poll) = app.poll(&id, &token, "0").await;
    assert!(with_role(&poll, "agent").is_empty(), "{poll}");
    assert_eq!(poll["status"], "open");
    app.stop().await;
}

#[tokio::test]
async fn an_agent_takes_over_closes_and_hands_back() {
    let app = app().await;
    let (id, token) = answered(&app).await;

    // A reply in an open conversation takes it over.
    let (s, body) = reply(&app, &id, "Hi, I'm Dana from support. Let me look.").await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["status"], "escalated");
    assert_eq!(body["conversation_id"], id);
    let message_id = body["message_id"].as_str().unwrap().to_owned();
    let (_, poll) = app.poll(&id, &token, "0").await;
    assert_eq!(poll["status"], "escalated");
    let agent_msgs = with_role(&poll, "agent");
    assert_eq!(agent_msgs.len(), 1, "{poll}");
    assert_eq!(agent_msgs[0]["id"], message_id);
    assert_eq!(
        agent_msgs[0]["text"],
        "Hi, I'm Dana from support. Let me look."
    );
    assert_eq!(
        poll["messages"].as_array().unwrap().last().unwrap()["role"],
        "agent"
    );

    // While a person owns it, the bot stays silent even on a question it knows.
    let p = post_and_settle(
        &app,
        &id,
        &token,
        "How do I turn on two-factor authentication?",
    )
    .await;
    assert_eq!(
        with_role(&p, "assistant").len(),
        1,
        "bot talked over the agent: {p}"
    );
    assert!(with_role(&p, "system").is_empty(), "{p}");
    assert_eq!(p["status"], "escalated");

    // Hand back: the bot answers the next message.
    let (s, body) = agent(&app, &id, "handback", Some(KEY), None).await;
    assert_eq!((s, body["status"].as_str()), (200, Some("open")), "{body}");
    app.post(&id, &token, "How do I turn on two-factor authentication?")
        .await;
    let poll = app.wait_for_reply(&id, &token, 3).await;
    assert_eq!(with_role(&poll, "assistant").len(), 2, "{poll}");
    assert_eq!(poll["status"], "open");

    // Close; the customer's next message reopens it and the bot answers.
    let (s, body) = agent(&app, &id, "close", Some(KEY), None).await;
    assert_eq!(
        (s, body["status"].as_str()),
        (200, Some("closed")),
        "{body}"
    );
    let (_, poll) = app.poll(&id, &token, "0").await;
    assert_eq!(poll["status"], "closed");
    app.post(&id, &token, "How do I create a recurring invoice?")
        .await;
    let poll = app.wait_for_reply(&id, &token, 4).await;
    assert_eq!(poll["status"], "open", "{poll}");
    assert_eq!(with_role(&poll, "assistant").len(), 3, "{poll}");
    app.stop().await;
}

#[tokio::test]
async fn an_agent_answers_an_escalated_conversation() {
    let app = app().await;
    let (id, token) = app.conversation().await;
    app.post(&id, &token, "I want to talk to a human").await;
    let poll = app.wait_for_reply(&id, &token, 1).await;
    assert_eq!(poll["status"], "escalated");
    let cursor = poll["cursor"].as_str().unwrap().to_owned();

    let (s, body) = reply(&app, &id, "Hello! <b>Dana</b> here.").await;
    assert_eq!(
        (s, body["status"].as_str()),
        (201, Some("escalated")),
        "{body}"
    );
    let (_, later) = app.poll(&id, &token, &cursor).await;
    let msgs = later["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "{later}");
    assert_eq!(msgs[0]["role"], "agent");
    assert_eq!(
        msgs[0]["text"], "Hello! <b>Dana</b> here.",
        "stored as text"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_retried_reply_is_stored_once() {
    let app = app().await;
    let (id, token) = answered(&app).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let res = app
            .http
            .post(app.url(&format!("/v1/conversations/{id}/agent-replies")))
            .bearer_auth(KEY)
            .header("Idempotency-Key", "reply-1")
            .json(&json!({"text": "On it.", "agent": "Dana"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.unwrap();
        ids.push(v["message_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], ids[1]);
    let (_, poll) = app.poll(&id, &token, "0").await;
    assert_eq!(with_role(&poll, "agent").len(), 1, "{poll}");
    app.stop().await;
}

#[tokio::test]
async fn unknown_conversations_and_bad_input_are_rejected() {
    let app = app().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for action in ["agent-replies", "close", "handback"] {
        let (s, b) = agent(
            &app,
            &unknown,
            action,
            Some(KEY),
            Some(json!({"text": "hi"})),
        )
        .await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{action}"
        );
        let (s, b) = agent(
            &app,
            "garbage",
            action,
            Some(KEY),
            Some(json!({"text": "hi"})),
        )
        .await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (400, Some("invalid_conversation_id")),
            "{action}"
        );
    }

    let (id, token) = answered(&app).await;
    for (body, code) in [
        (json!({}), "invalid_json"),
        (json!({"text": 5}), "invalid_json"),
        (json!({"text": "hi", "extra": 1}), "invalid_json"),
        (json!({"text": "  \n "}), "empty_text"),
    ] {
        let (s, b) = agent(&app, &id, "agent-replies", Some(KEY), Some(body.clone())).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let res = app
        .http
        .post(app.url(&format!("/v1/conversations/{id}/agent-replies")))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let long = "x".repeat(4001);
    let (s, b) = reply(&app, &id, &long).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("message_too_long"))
    );

    let (_, poll) = app.poll(&id, &token, "0").await;
    assert!(with_role(&poll, "agent").is_empty(), "{poll}");
    assert_eq!(poll["status"], "open");
    app.stop().await;
}
