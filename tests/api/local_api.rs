//! The HTTP API of `deskhand serve`, end to end on a temporary SQLite file
//! and the demo knowledge base.

use crate::common;

use common::{TestApp, with_role};
use serde_json::{Value, json};

#[tokio::test]
async fn a_question_is_answered_with_sources() {
    let app = TestApp::spawn().await;
    let (id, token) = app.conversation().await;
    let (status, body) = app
        .post(&id, &token, "How do I turn on two-factor authentication?")
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["conversation_id"], id);
    let message_id = body["message_id"].as_str().unwrap().to_owned();

    let poll = app.wait_for_reply(&id, &token, 1).await;
    assert_eq!(poll["status"], "open");
    let customer = with_role(&poll, "customer");
    assert_eq!(customer[0]["id"], message_id);
    let answer = with_role(&poll, "assistant");
    assert_eq!(answer.len(), 1, "{poll}");
    assert!(
        answer[0]["text"].as_str().unwrap().contains("Settings"),
        "{poll}"
    );
    let sources = answer[0]["sources"].as_array().unwrap();
    assert_eq!(
        sources[0]["doc_id"],
        "security/two-factor-authentication.md"
    );
    assert!(sources[0]["url"].as_str().unwrap().starts_with("https://"));

    // The cursor returns only what is new.
    let cursor = poll["cursor"].as_str().unwrap();
    let (status, later) = app.poll(&id, &token, cursor).await;
    assert_eq!(status, 200);
    assert_eq!(later["messages"], json!([]));
    assert_eq!(later["cursor"], cursor);
    app.stop().await;
}

#[tokio::test]
async fn asking_for_a_human_escalates_once_and_the_bot_goes_silent() {
    let app = TestApp::spawn().await;
    let (id, token) = app.conversation().await;
    app.post(&id, &token, "Can I talk to a human please?").await;
    let poll = app.wait_for_reply(&id, &token, 1).await;
    assert_eq!(poll["status"], "escalated");
    let notices = with_role(&poll, "system");
    assert_eq!(notices.len(), 1);
    assert!(
        notices[0]["text"]
            .as_str()
            .unwrap()
            .contains("a person will follow up")
    );
    assert!(with_role(&poll, "assistant").is_empty());

    // A later question in the same conversation is stored, not answered.
    app.post(&id, &token, "How do I turn on two-factor authentication?")
        .await;
    let mut seen = Value::Null;
    for _ in 0..100 {
        let (_, p) = app.poll(&id, &token, "0").await;
        if with_role(&p, "customer").len() == 2 {
            seen = p;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        with_role(&seen, "customer").len(),
        2,
        "second message not stored"
    );
    // Give a (wrong) answer time to appear, then check there is none.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, p) = app.poll(&id, &token, "0").await;
    assert!(
        with_role(&p, "assistant").is_empty(),
        "bot answered in an escalated conversation: {p}"
    );
    assert_eq!(
        with_role(&p, "system").len(),
        1,
        "holding message repeated: {p}"
    );
    assert_eq!(p["status"], "escalated");
    app.stop().await;
}

#[tokio::test]
async fn unknown_questions_and_sensitive_topics_escalate() {
    let app = TestApp::spawn().await;
    for text in [
        "What's the weather like in Lisbon tomorrow?",
        "My lawyer will contact you about this invoice.",
    ] {
        let (id, token) = app.conversation().await;
        app.post(&id, &token, text).await;
        let poll = app.wait_for_reply(&id, &token, 1).await;
        assert_eq!(poll["status"], "escalated", "{text}: {poll}");
    }
    app.stop().await;
}

#[tokio::test]
async fn tokens_open_only_their_own_conversation() {
    let app = TestApp::spawn().await;
    let (a, ta) = app.conversation().await;
    let (b, tb) = app.conversation().await;
    app.post(&a, &ta, "How do I export my data?").await;
    app.wait_for_reply(&a, &ta, 1).await;

    // B's token on A: refused, for reading and writing.
    let (s, body) = app.poll(&a, &tb, "0").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );
    let (s, _) = app.post(&a, &tb, "hi").await;
    assert_eq!(s, 401);
    // Forged and missing tokens.
    let (s, _) = app
        .poll(
            &a,
            "forged-token-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "0",
        )
        .await;
    assert_eq!(s, 401);
    let res = app
        .http
        .get(app.url(&format!("/v1/conversations/{a}/messages")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "missing_token");
    // B sees nothing of A.
    let (s, body) = app.poll(&b, &tb, "0").await;
    assert_eq!(s, 200);
    assert_eq!(body["messages"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error() {
    let app = TestApp::spawn().await;
    let (id, token) = app.conversation().await;
    let url = app.url(&format!("/v1/conversations/{id}/messages"));
    let send = |body: Vec<u8>| {
        app.http
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"".to_vec(), 400, "invalid_json"),
        (b"not json".to_vec(), 400, "invalid_json"),
        (b"{\"text\":".to_vec(), 400, "invalid_json"),
        (b"[]".to_vec(), 400, "invalid_json"),
        (b"{\"txt\":\"hi\"}".to_vec(), 400, "invalid_json"),
        (b"{\"text\":42}".to_vec(), 400, "invalid_json"),
        (b"{\"text\":\"   \"}".to_vec(), 400, "empty_text"),
        (vec![0xff, 0xfe, 0x00, 0x01], 400, "invalid_json"),
        (
            json!({"text": "x".repeat(4_001)}).to_string().into_bytes(),
            413,
            "message_too_long",
        ),
        (vec![b'a'; 70_000], 413, "body_too_large"),
    ];
    for (body, status, code) in cases {
        let preview = String::from_utf8_lossy(&body[..body.len().min(30)]).into_owned();
        let res = send(body).await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{preview}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{preview}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    // Ids and cursors.
    let res = app
        .http
        .get(app.url("/v1/conversations/not-a-uuid/messages"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let (s, v) = app.poll(&id, &token, "-1").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_cursor"))
    );
    let res = app.http.get(app.url("/nowhere")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = app
        .http
        .delete(app.url("/v1/conversations"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    // Nothing bad was queued: the conversation is empty.
    let (_, v) = app.poll(&id, &token, "0").await;
    assert_eq!(v["messages"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retried_post_one_ticket() {
    let app = TestApp::spawn().await;
    let (id, token) = app.conversation().await;
    let post = || {
        app.http
            .post(app.url(&format!("/v1/conversations/{id}/messages")))
            .bearer_auth(&token)
            .header("idempotency-key", "client-retry-1")
            .json(&json!({"text": "How do I export my data?"}))
            .send()
    };
    let a: Value = post().await.unwrap().json().await.unwrap();
    let b: Value = post().await.unwrap().json().await.unwrap();
    assert_eq!(a["ticket_id"], b["ticket_id"]);
    app.wait_for_reply(&id, &token, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, v) = app.poll(&id, &token, "0").await;
    assert_eq!(with_role(&v, "customer").len(), 1, "{v}");
    assert_eq!(with_role(&v, "assistant").len(), 1, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn health_and_cors() {
    let app = TestApp::spawn_with(|c| c.cors_origins = vec!["https://shop.example".into()]).await;
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    let pre = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/v1/conversations"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let other = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/v1/conversations"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    app.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_conversations_and_tokens() {
    let app = TestApp::spawn().await;
    let (id, token) = app.conversation().await;
    app.post(&id, &token, "How do I export my data?").await;
    app.wait_for_reply(&id, &token, 1).await;
    let data = app.stop().await;
    let config = common::test_config(data.path());
    let app = TestApp::start(config, data).await;
    let (s, v) = app.poll(&id, &token, "0").await;
    assert_eq!(s, 200, "token no longer valid after restart: {v}");
    assert_eq!(with_role(&v, "assistant").len(), 1);
    app.stop().await;
}
