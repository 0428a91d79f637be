//! The OpenAI-compatible generator and the webhook escalator against real
//! HTTP peers on 127.0.0.1.

use crate::common;

use std::time::Duration;

use common::peers::{ModelServer, Reply, WebhookReceiver};
use deskhand::config::WebhookFormat;
use deskhand::domain::{Channel, Priority, Provider, ReasonCode};
use deskhand::knowledge::Passage;
use deskhand::llm::openai::{OpenAiSettings, ResponseFormat};
use deskhand::llm::{GenerateError, GenerateRequest, Generator, OpenAi};
use deskhand::notify::{Escalation, Escalator, Webhook};
use deskhand::secret::Secret;

fn settings(model: &ModelServer, timeout_secs: u64) -> OpenAiSettings {
    OpenAiSettings {
        base_url: model.base_url(),
        model: "llama3.1:8b".into(),
        api_key: Some(Secret::new("sk-secret-value")),
        timeout_secs,
        max_tokens: 300,
        temperature: 0.1,
        response_format: ResponseFormat::JsonObject,
    }
}

fn request() -> GenerateRequest {
    GenerateRequest {
        question: "How long do refunds take?".into(),
        subject: None,
        history: vec![],
        passages: vec![Passage {
            doc_id: "billing/refunds.md".into(),
            title: "Refunds".into(),
            section: None,
            text: "Refunds reach your card within 5 to 10 business days.".into(),
            url: None,
            score: 3.0,
            relevance: 0.9,
        }],
        channel: Channel::Widget,
    }
}

#[tokio::test]
async fn openai_answer_usage_and_request_shape() {
    let model = ModelServer::start(
        vec![],
        Reply::answer("5 to 10 business days.", 0.87, "billing/refunds.md"),
    )
    .await;
    let g = OpenAi::new(settings(&model, 5), 1000)
        .unwrap()
        .generate(&request())
        .await
        .unwrap();
    assert_eq!(g.answer, "5 to 10 business days.");
    assert_eq!(g.sources, ["billing/refunds.md"]);
    assert!((g.confidence - 0.87).abs() < 1e-6);
    assert_eq!(
        (
            g.usage.input_tokens,
            g.usage.output_tokens,
            g.usage.cache_read_tokens
        ),
        (812, 64, 512)
    );
    assert_eq!(g.usage.model_id.as_deref(), Some("llama3.1:8b"));
    let req = &model.requests()[0];
    assert_eq!(req["model"], "llama3.1:8b");
    assert_eq!(req["response_format"]["type"], "json_object");
    assert_eq!(req["messages"][0]["role"], "system");
    assert!(
        req["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("<customer_message")
    );
}

#[tokio::test]
async fn openai_errors_are_classified() {
    let model = ModelServer::start(
        vec![
            Reply::Status(429, "slow down".into()),
            Reply::Status(502, "bad gateway".into()),
            Reply::Status(401, "bad key".into()),
            Reply::Content("```json\n{\"answer\": 5}\n```".into()),
            Reply::Content("{\"answer\":\"\",\"confidence\":0.1,\"needs_human\":true,\"reason\":\"asked_for_human\",\"sources\":[]}".into()),
            Reply::Delay(Duration::from_secs(5), Box::new(Reply::Status(200, "{}".into()))),
        ],
        Reply::Status(500, "x".into()),
    )
    .await;
    let g = OpenAi::new(settings(&model, 2), 1000).unwrap();
    let r = request();
    assert!(
        matches!(g.generate(&r).await, Err(GenerateError::Transient { .. })),
        "429"
    );
    assert!(
        matches!(g.generate(&r).await, Err(GenerateError::Transient { .. })),
        "502"
    );
    match g.generate(&r).await {
        Err(GenerateError::Permanent(e)) => {
            let text = format!("{e:#}");
            assert!(text.contains("401"), "{text}");
            assert!(
                !text.contains("sk-secret-value"),
                "the key leaked into an error"
            );
        }
        other => panic!("401 should be permanent: {other:?}"),
    }
    assert!(
        matches!(g.generate(&r).await, Err(GenerateError::Malformed { .. })),
        "wrong types"
    );
    let handed_over = g.generate(&r).await.unwrap();
    assert!(handed_over.needs_human);
    assert_eq!(handed_over.reason.as_deref(), Some("asked_for_human"));
    assert!(
        matches!(g.generate(&r).await, Err(GenerateError::Transient { .. })),
        "timeout"
    );
}

#[tokio::test]
async fn openai_unreachable_is_transient() {
    let settings = OpenAiSettings {
        base_url: "http://127.0.0.1:9/v1".into(),
        model: "m".into(),
        api_key: None,
        timeout_secs: 2,
        max_tokens: 10,
        temperature: 0.0,
        response_format: ResponseFormat::JsonSchema,
    };
    let r = OpenAi::new(settings, 100)
        .unwrap()
        .generate(&request())
        .await;
    assert!(matches!(r, Err(GenerateError::Transient { .. })), "{r:?}");
}

fn escalation() -> Escalation {
    Escalation {
        ticket_id: None,
        conversation_id: Some(deskhand::domain::ConversationId::random()),
        channel: Some(Channel::Widget),
        provider: Some(Provider::Widget),
        reason: ReasonCode::NegativeSentiment,
        priority: Priority::High,
        confidence: 0.0,
        detail: "sentiment -0.91".into(),
        customer: Default::default(),
        subject: None,
        last_message: "This is <b>awful</b>".into(),
        transcript: vec![],
        draft: None,
        link: None,
        at: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn webhook_posts_a_slack_compatible_body() {
    let hook = WebhookReceiver::start().await;
    let w = Webhook::new(
        Secret::new(hook.url()),
        WebhookFormat::Slack,
        Duration::from_secs(2),
    )
    .unwrap();
    let e = escalation();
    w.escalate(&e).await.unwrap();
    let body = &hook.wait_for(1).await[0];
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("negative_sentiment")
    );
    assert_eq!(body["blocks"][0]["type"], "section");
    // Customer text goes in a plain_text block, so Slack does not render markup from it.
    assert_eq!(body["blocks"][2]["text"]["type"], "plain_text");
    assert_eq!(body["blocks"][2]["text"]["text"], "This is <b>awful</b>");
    assert_eq!(body["deskhand"]["reason"], "negative_sentiment");
    assert_eq!(body["deskhand"]["priority"], "high");
}

#[tokio::test]
async fn webhook_failures_are_errors_without_the_url() {
    let hook = WebhookReceiver::start().await;
    hook.set_status(500);
    let w = Webhook::new(
        Secret::new(hook.url()),
        WebhookFormat::Json,
        Duration::from_secs(2),
    )
    .unwrap();
    let err = w.escalate(&escalation()).await.unwrap_err().to_string();
    assert!(err.contains("500"), "{err}");
    let secret_url = "http://127.0.0.1:9/T000/B000/XXXXSECRET";
    let w = Webhook::new(
        Secret::new(secret_url),
        WebhookFormat::Json,
        Duration::from_secs(2),
    )
    .unwrap();
    let err = w.escalate(&escalation()).await.unwrap_err().to_string();
    assert!(!err.contains("XXXXSECRET"), "{err}");
}
