//! The answer schema is bounded so constrained decoding cannot run away,
//! and a reply cut at `max_tokens` says so: the OpenAI-compatible
//! generator against a test double of `/v1/chat/completions`.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use deskhand::domain::Channel;
use deskhand::knowledge::Passage;
use deskhand::llm::openai::{OpenAi, OpenAiSettings, ResponseFormat};
use deskhand::llm::prompt::{MAX_SOURCES, REASONS, answer_schema};
use deskhand::llm::{GenerateError, GenerateRequest, Generator};
use serde_json::{Value, json};

#[test]
fn the_schema_bounds_sources_and_reasons() {
    let s = answer_schema();
    assert_eq!(s["properties"]["sources"]["maxItems"], MAX_SOURCES);
    assert!(s["properties"]["sources"]["items"]["maxLength"].is_u64());
    let reasons = s["properties"]["reason"]["enum"].as_array().unwrap();
    assert!(reasons.contains(&Value::Null));
    for r in REASONS {
        assert!(reasons.contains(&json!(r)), "{r}");
    }
}

#[derive(Default)]
struct Double {
    reply: Mutex<Value>,
    requests: Mutex<Vec<Value>>,
}

async fn completions(State(d): State<Arc<Double>>, body: String) -> axum::Json<Value> {
    d.requests
        .lock()
        .unwrap()
        .push(serde_json::from_str(&body).unwrap());
    axum::Json(d.reply.lock().unwrap().clone())
}

fn completion(content: &str, finish: &str) -> Value {
    json!({"id": "c1", "object": "chat.completion", "choices": [{"index": 0,
        "finish_reason": finish, "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20}})
}

#[tokio::test]
async fn a_reply_cut_at_max_tokens_is_named_so() {
    let d = Arc::new(Double::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(d.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let g = OpenAi::new(
        OpenAiSettings {
            base_url: url,
            model: "m".into(),
            api_key: None,
            timeout_secs: 5,
            max_tokens: 64,
            temperature: 0.0,
            response_format: ResponseFormat::JsonSchema,
        },
        2_000,
    )
    .unwrap();
    let req = GenerateRequest {
        question: "How do I reset my password?".into(),
        subject: None,
        history: Vec::new(),
        passages: vec![Passage {
            doc_id: "account/password.md".into(),
            title: "Password".into(),
            section: None,
            text: "Click Forgot password on the sign-in page.".into(),
            url: None,
            score: 1.0,
            relevance: 1.0,
        }],
        channel: Channel::Widget,
    };
    let cut = r#"{"answer": "Click Forgot password on the sign-in page.", "confidence": 0.9, "needs_human": false, "reason": null, "sources": ["account/password.md", "account/password.md", "acc"#;
    *d.reply.lock().unwrap() = completion(cut, "length");
    match g.generate(&req).await {
        Err(GenerateError::Malformed { detail, .. }) => {
            assert!(detail.contains("cut at max_tokens (64)"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    // The same text, not cut: malformed, without the claim.
    *d.reply.lock().unwrap() = completion(cut, "stop");
    match g.generate(&req).await {
        Err(GenerateError::Malformed { detail, .. }) => {
            assert!(!detail.contains("max_tokens"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    // A complete reply is an answer, whatever the finish reason says.
    let whole = r#"{"answer": "Click Forgot password on the sign-in page.", "confidence": 0.9, "needs_human": false, "reason": null, "sources": ["account/password.md"]}"#;
    *d.reply.lock().unwrap() = completion(whole, "length");
    let a = g.generate(&req).await.unwrap();
    assert_eq!(a.sources, vec!["account/password.md".to_owned()]);
    // The bounded schema is what the server was sent.
    let sent = &d.requests.lock().unwrap()[0];
    assert_eq!(
        sent["response_format"]["json_schema"]["schema"],
        answer_schema()
    );
}
