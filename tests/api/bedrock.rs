//! The Bedrock generator and Knowledge Base retriever, through the real AWS
//! SDK, against the Bedrock test double on 127.0.0.1; then the whole app
//! answering and escalating through them.

use crate::common;

use std::time::{Duration, Instant};

use common::bedrock_double::{BedrockDouble, Reply, fake_aws_env};
use common::{TestApp, with_role};
use deskhand::config::{Config, GeneratorKind, RetrieverKind};
use deskhand::domain::{Channel, Message, NewMessage, Role};
use deskhand::knowledge::bedrock_kb::{KbSettings, SearchKind};
use deskhand::knowledge::{BedrockKb, Passage, RetrieveError, Retriever};
use deskhand::llm::bedrock::{BedrockSettings, ToolChoiceMode};
use deskhand::llm::prompt::{SYSTEM_PROMPT, TOOL_NAME, answer_schema};
use deskhand::llm::{Bedrock, GenerateError, GenerateRequest, Generator};
use deskhand::store::{SqliteStore, Store};
use serde_json::{Value, json};

const DOC: &str = "security/two-factor-authentication.md";
const QUESTION: &str = "How do I turn on two-factor authentication?";
const KB_ID: &str = "KBTEST1234";

fn settings(double: &BedrockDouble) -> BedrockSettings {
    BedrockSettings {
        endpoint_url: Some(double.url()),
        read_timeout_secs: 5,
        ..BedrockSettings::default()
    }
}

async fn generator(double: &BedrockDouble, settings: BedrockSettings) -> Bedrock {
    Bedrock::new(&double.sdk_config().await, settings, 1_000)
}

fn turn(seq: u64, role: Role, text: &str) -> Message {
    Message {
        seq,
        body: NewMessage {
            id: format!("m{seq}"),
            role,
            text: text.into(),
            sources: vec![],
            ticket_id: None,
            created_at: chrono::Utc::now(),
        },
    }
}

fn request() -> GenerateRequest {
    GenerateRequest {
        question: QUESTION.into(),
        subject: None,
        history: vec![
            turn(1, Role::Assistant, "Hi! How can I help?"),
            turn(2, Role::Customer, "I want to secure my account."),
            turn(
                3,
                Role::Assistant,
                "Two-factor authentication is a good start.",
            ),
        ],
        passages: vec![Passage {
            doc_id: DOC.into(),
            title: "Two-factor authentication (2FA)".into(),
            section: None,
            text: "Go to Settings → Security → Two-factor authentication and click Enable.".into(),
            url: None,
            score: 7.5,
            relevance: 0.9,
        }],
        channel: Channel::Widget,
    }
}

fn assert_alternates(messages: &Value) {
    let roles: Vec<&str> = messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.first(), Some(&"user"), "{roles:?}");
    assert_eq!(roles.last(), Some(&"user"), "{roles:?}");
    assert!(roles.windows(2).all(|w| w[0] != w[1]), "{roles:?}");
}

#[tokio::test]
async fn converse_answer_usage_and_request_shape() {
    let double = BedrockDouble::start().await;
    let g = generator(&double, settings(&double)).await;
    let started = Instant::now();
    let answer = g.generate(&request()).await.unwrap();
    assert!(answer.answer.starts_with("Go to Settings → Security"));
    assert!((answer.confidence - 0.91).abs() < 1e-6);
    assert!(!answer.needs_human);
    // The fixture also cites a KB URI and a document it was never given.
    assert_eq!(answer.sources, [DOC]);
    let u = &answer.usage;
    assert_eq!(u.model_id.as_deref(), Some("amazon.nova-lite-v1:0"));
    assert_eq!((u.input_tokens, u.output_tokens, u.calls), (1432, 87, 1));
    assert!(u.model_ms <= started.elapsed().as_millis() as u64);

    let sent = double.converse_requests();
    assert_eq!(sent.len(), 1);
    let (req, body) = (&sent[0], &sent[0].body);
    assert_eq!(req.id, "amazon.nova-lite-v1:0");
    let auth = req.headers["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=test/"),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
    assert_eq!(req.headers["content-type"], "application/json");
    // System prompt; the shared prefix is below Nova's 1K-token minimum,
    // so no cache point.
    assert_eq!(body["system"], json!([{"text": SYSTEM_PROMPT}]));
    // One tool, forced by name, with the answer schema.
    let tools = &body["toolConfig"];
    assert_eq!(tools["toolChoice"], json!({"tool": {"name": TOOL_NAME}}));
    assert_eq!(tools["tools"].as_array().unwrap().len(), 1);
    assert_eq!(tools["tools"][0]["toolSpec"]["name"], TOOL_NAME);
    assert_eq!(
        tools["tools"][0]["toolSpec"]["inputSchema"]["json"],
        answer_schema()
    );
    assert_eq!(
        body["inferenceConfig"],
        json!({"maxTokens": 800, "temperature": 0.0})
    );
    // History as alternating turns (the leading assistant greeting dropped),
    // then the passages and the question.
    assert_alternates(&body["messages"]);
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{}", body["messages"]);
    assert!(
        messages[0]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("<turn role=\"customer\">I want to secure my account.</turn>")
    );
    assert_eq!(
        messages[1]["content"][0]["text"],
        "Two-factor authentication is a good start."
    );
    let last = messages[2]["content"][0]["text"].as_str().unwrap();
    assert!(last.contains(&format!("<passage id=\"{DOC}\"")), "{last}");
    assert!(last.contains(QUESTION));
    assert!(
        !last.contains("<conversation_history>"),
        "history sent twice"
    );
}

#[tokio::test]
async fn cache_point_and_tool_choice_follow_the_settings() {
    let double = BedrockDouble::start().await;
    let mut reply = common::bedrock_double::fixture("converse_tool_use.json");
    reply["usage"]["cacheReadInputTokens"] = json!(1024);
    reply["usage"]["cacheWriteInputTokens"] = json!(0);
    double.script_converse(vec![Reply::Json(reply)]);
    let g = generator(
        &double,
        BedrockSettings {
            model_id: "us.amazon.nova-pro-v1:0".into(),
            cache_min_tokens: Some(100),
            tool_choice: ToolChoiceMode::Any,
            max_tokens: 300,
            temperature: 0.2,
            ..settings(&double)
        },
    )
    .await;
    assert!(g.cache_point());
    let answer = g.generate(&request()).await.unwrap();
    assert_eq!(answer.usage.cache_read_tokens, 1024);
    assert_eq!(
        answer.usage.model_id.as_deref(),
        Some("us.amazon.nova-pro-v1:0")
    );
    let sent = &double.converse_requests()[0];
    assert_eq!(sent.id, "us.amazon.nova-pro-v1:0");
    assert_eq!(
        sent.body["system"],
        json!([{"text": SYSTEM_PROMPT}, {"cachePoint": {"type": "default"}}])
    );
    assert_eq!(sent.body["toolConfig"]["toolChoice"], json!({"any": {}}));
    assert_eq!(sent.body["inferenceConfig"]["maxTokens"], 300);

    // Off when asked, whatever the threshold.
    let off = generator(
        &double,
        BedrockSettings {
            cache_min_tokens: Some(1),
            prompt_cache: false,
            ..settings(&double)
        },
    )
    .await;
    assert!(!off.cache_point());
}

#[tokio::test]
async fn unusable_model_output_is_malformed() {
    let double = BedrockDouble::start().await;
    double.script_converse(vec![
        Reply::Fixture("converse_text_only.json"),
        Reply::Fixture("converse_malformed_tool_input.json"),
        Reply::Fixture("converse_max_tokens.json"),
        Reply::Fixture("converse_text_json.json"),
        Reply::Fixture("converse_content_filtered.json"),
    ]);
    let g = generator(&double, settings(&double)).await;
    let r = request();
    match g.generate(&r).await {
        Err(GenerateError::Malformed { detail, usage }) => {
            assert!(detail.contains("no JSON object"), "{detail}");
            assert_eq!(usage.input_tokens, 1432, "usage kept on malformed output");
        }
        other => panic!("text without JSON: {other:?}"),
    }
    match g.generate(&r).await {
        Err(GenerateError::Malformed { detail, .. }) => {
            assert!(detail.contains("`answer` is not a string"), "{detail}")
        }
        other => panic!("wrong tool input types: {other:?}"),
    }
    match g.generate(&r).await {
        Err(GenerateError::Malformed { detail, .. }) => {
            assert!(detail.contains("max_tokens (800)"), "{detail}")
        }
        other => panic!("cut at max_tokens: {other:?}"),
    }
    // A model that answers in text rather than through the tool still
    // counts when the text holds the answer object.
    let g2 = g.generate(&r).await.unwrap();
    assert!(g2.answer.starts_with("Open Settings"));
    assert_eq!(g2.sources, [DOC]);
    // Content filters hand the ticket to a person.
    let filtered = g.generate(&r).await.unwrap();
    assert!(filtered.needs_human);
    assert_eq!(
        filtered.reason.as_deref(),
        Some("refused: content_filtered")
    );
}

#[tokio::test]
async fn service_errors_are_transient_or_permanent() {
    let double = BedrockDouble::start().await;
    double.script_converse(vec![
        Reply::throttling(),
        Reply::unavailable(),
        Reply::internal(),
        Reply::validation(),
        Reply::access_denied(),
    ]);
    let g = generator(&double, settings(&double)).await;
    let r = request();
    for fault in [
        "ThrottlingException",
        "ServiceUnavailableException",
        "InternalServerException",
    ] {
        match g.generate(&r).await {
            Err(GenerateError::Transient { detail, usage, .. }) => {
                assert!(detail.contains(fault), "{detail}");
                assert_eq!(usage.calls, 1);
            }
            other => panic!("{fault} should be transient: {other:?}"),
        }
    }
    for (fault, message) in [
        ("ValidationException", "model identifier is invalid"),
        ("AccessDeniedException", "don't have access"),
    ] {
        match g.generate(&r).await {
            Err(GenerateError::Permanent(e)) => {
                let text = format!("{e:#}");
                assert!(text.contains(fault) && text.contains(message), "{text}");
            }
            other => panic!("{fault} should be permanent: {other:?}"),
        }
    }
    // The SDK did not retry: one request per call; the queue retries.
    assert_eq!(double.converse_requests().len(), 5);
}

#[tokio::test]
async fn sdk_retries_only_when_configured() {
    let double = BedrockDouble::start().await;
    double.script_converse(vec![Reply::throttling()]);
    let g = generator(
        &double,
        BedrockSettings {
            max_attempts: 2,
            ..settings(&double)
        },
    )
    .await;
    let answer = g.generate(&request()).await.unwrap();
    assert_eq!(answer.sources, [DOC]);
    assert_eq!(double.converse_requests().len(), 2);
}

#[tokio::test]
async fn slow_or_unreachable_bedrock_is_transient() {
    let double = BedrockDouble::start().await;
    double.script_converse(vec![Reply::slow(
        Duration::from_secs(4),
        Reply::Fixture("converse_tool_use.json"),
    )]);
    let g = generator(
        &double,
        BedrockSettings {
            read_timeout_secs: 1,
            ..settings(&double)
        },
    )
    .await;
    let started = Instant::now();
    match g.generate(&request()).await {
        Err(GenerateError::Transient { detail, .. }) => {
            assert!(detail.contains("timeout"), "{detail}")
        }
        other => panic!("a read timeout should be transient: {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "read timeout not applied"
    );

    let nowhere = BedrockSettings {
        endpoint_url: Some("http://127.0.0.1:9".into()),
        ..settings(&double)
    };
    let r = generator(&double, nowhere).await.generate(&request()).await;
    assert!(matches!(r, Err(GenerateError::Transient { .. })), "{r:?}");
}

/// Issue #14 (6): under a worker invocation's call deadline, a Converse
/// call is cut to the time left (here 1 s of a 20 s read timeout, against
/// a model that takes 4 s: without the cut it would answer), and past the
/// deadline no call is made at all. Both are transient: the queue retries.
#[tokio::test]
async fn the_invocation_deadline_cuts_bedrock_calls() {
    let double = BedrockDouble::start().await;
    double.script_converse(vec![Reply::slow(
        Duration::from_secs(4),
        Reply::Fixture("converse_tool_use.json"),
    )]);
    let g = generator(
        &double,
        BedrockSettings {
            read_timeout_secs: 20,
            ..settings(&double)
        },
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(1);
    let r = deskhand::aws::with_call_deadline(deadline, g.generate(&request())).await;
    match r {
        Err(GenerateError::Transient { detail, .. }) => {
            assert!(detail.contains("timeout"), "{detail}")
        }
        other => panic!("the call should have been cut to the deadline: {other:?}"),
    }
    assert_eq!(double.converse_requests().len(), 1);

    let passed = Instant::now();
    match deskhand::aws::with_call_deadline(passed, g.generate(&request())).await {
        Err(GenerateError::Transient { detail, .. }) => {
            assert!(detail.contains("no time left"), "{detail}")
        }
        other => panic!("past the deadline nothing should be called: {other:?}"),
    }
    assert_eq!(
        double.converse_requests().len(),
        1,
        "a call was made anyway"
    );

    // The KB retriever likewise.
    double.script_retrieve(vec![Reply::slow(
        Duration::from_secs(4),
        Reply::Fixture("retrieve_s3_web.json"),
    )]);
    let kb = BedrockKb::new(
        &double.sdk_config().await,
        KbSettings {
            read_timeout_secs: 20,
            ..kb_settings(&double)
        },
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    match deskhand::aws::with_call_deadline(deadline, kb.retrieve(QUESTION, 5)).await {
        Err(RetrieveError::Transient(detail)) => assert!(detail.contains("timeout"), "{detail}"),
        other => panic!("the KB call should have been cut to the deadline: {other:?}"),
    }
    match deskhand::aws::with_call_deadline(Instant::now(), kb.retrieve(QUESTION, 5)).await {
        Err(RetrieveError::Transient(detail)) => {
            assert!(detail.contains("no time left"), "{detail}")
        }
        other => panic!("past the deadline nothing should be called: {other:?}"),
    }
    assert_eq!(double.retrieve_requests().len(), 1);
    // Without a deadline the same slow answers arrive.
    double.script_converse(vec![Reply::slow(
        Duration::from_millis(1_500),
        Reply::Fixture("converse_tool_use.json"),
    )]);
    g.generate(&request()).await.unwrap();
}

fn kb_settings(double: &BedrockDouble) -> KbSettings {
    KbSettings {
        endpoint_url: Some(double.url()),
        ..KbSettings::new(KB_ID)
    }
}

#[tokio::test]
async fn kb_results_become_cited_passages() {
    let double = BedrockDouble::start().await;
    let filter = json!({"andAll": [
        {"equals": {"key": "product", "value": "tallybird"}},
        {"in": {"key": "lang", "value": ["en", "de"]}}
    ]});
    let kb = BedrockKb::new(
        &double.sdk_config().await,
        KbSettings {
            number_of_results: 8,
            search_type: Some(SearchKind::Hybrid),
            filter: Some(filter.clone()),
            ..kb_settings(&double)
        },
    )
    .unwrap();
    let passages = kb.retrieve(QUESTION, 5).await.unwrap();
    assert_eq!(passages.len(), 3);

    let s3 = &passages[0];
    assert_eq!(
        s3.doc_id,
        "s3://deskhand-kb/security/two-factor-authentication.md"
    );
    assert_eq!(s3.title, "Two-factor authentication (2FA)");
    assert_eq!(
        s3.url.as_deref(),
        Some("https://help.tallybird.example/articles/two-factor-authentication"),
        "the link the metadata carries"
    );
    assert!(s3.text.starts_with("Turn on 2FA"));
    assert!((s3.relevance - 0.712_345_6).abs() < 1e-6);

    let web = &passages[1];
    assert_eq!(
        web.doc_id,
        "https://help.tallybird.example/articles/lost-phone"
    );
    assert_eq!(web.url.as_deref(), Some(web.doc_id.as_str()));
    assert_eq!(web.title, "Lost phone");

    let pdf = &passages[2];
    assert_eq!(pdf.doc_id, "s3://deskhand-kb/account/sign-in-problems.pdf");
    assert_eq!(pdf.url, None, "an S3 object is no customer link");
    assert_eq!(pdf.title, "Sign in problems");
    assert_eq!(pdf.section.as_deref(), Some("page 2"));
    assert!(passages.windows(2).all(|w| w[0].score >= w[1].score));

    let sent = double.retrieve_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].id, KB_ID);
    assert_eq!(
        sent[0].body["retrievalQuery"],
        json!({"type": "TEXT", "text": QUESTION})
    );
    assert_eq!(
        sent[0].body["retrievalConfiguration"],
        json!({"vectorSearchConfiguration": {
            "numberOfResults": 8,
            "overrideSearchType": "HYBRID",
            "filter": filter
        }})
    );
    let auth = sent[0].headers["authorization"].to_str().unwrap();
    assert!(auth.contains("/bedrock/aws4_request"), "{auth}");

    // The pipeline's k caps what is kept.
    assert_eq!(kb.retrieve(QUESTION, 2).await.unwrap().len(), 2);
}

#[tokio::test]
async fn kb_errors_are_transient_or_permanent() {
    let double = BedrockDouble::start().await;
    double.script_retrieve(vec![
        Reply::throttling(),
        Reply::internal(),
        Reply::access_denied(),
        Reply::slow(
            Duration::from_secs(3),
            Reply::Fixture("retrieve_s3_web.json"),
        ),
    ]);
    let kb = BedrockKb::new(
        &double.sdk_config().await,
        KbSettings {
            read_timeout_secs: 1,
            ..kb_settings(&double)
        },
    )
    .unwrap();
    let default_request = |r: &Value| {
        assert_eq!(
            r["retrievalConfiguration"],
            json!({"vectorSearchConfiguration": {"numberOfResults": 5}})
        )
    };
    for want in ["ThrottlingException", "InternalServerException"] {
        match kb.retrieve(QUESTION, 5).await {
            Err(RetrieveError::Transient(detail)) => assert!(detail.contains(want), "{detail}"),
            other => panic!("{want} should be transient: {other:?}"),
        }
    }
    match kb.retrieve(QUESTION, 5).await {
        Err(RetrieveError::Permanent(e)) => {
            assert!(format!("{e:#}").contains("AccessDeniedException"))
        }
        other => panic!("access denied should be permanent: {other:?}"),
    }
    assert!(matches!(
        kb.retrieve(QUESTION, 5).await,
        Err(RetrieveError::Transient(_))
    ));
    default_request(&double.retrieve_requests()[0].body);
}

#[test]
fn an_invalid_kb_filter_stops_start_up() {
    fake_aws_env();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deskhand.toml");
    std::fs::write(
        &path,
        "[retriever]\nkind = \"bedrock_kb\"\n[retriever.bedrock_kb]\nknowledge_base_id = \"KB1\"\nfilter = { like = { key = \"a\", value = \"b\" } }\n",
    )
    .unwrap();
    let err = format!("{:#}", Config::load(Some(&path), &Value::Null).unwrap_err());
    assert!(err.contains("unknown operator"), "{err}");

    std::fs::write(
        &path,
        "[retriever]\nkind = \"bedrock_kb\"\n[retriever.bedrock_kb]\nknowledge_base_id = \"KB1\"\nsearch_type = \"HYBRID\"\nfilter = { startsWith = { key = \"x-amz-bedrock-kb-source-uri\", value = \"s3://kb/public/\" } }\n[generator]\nkind = \"bedrock\"\n[generator.bedrock]\nmodel_id = \"eu.amazon.nova-lite-v1:0\"\n",
    )
    .unwrap();
    let c = Config::load(Some(&path), &Value::Null).unwrap();
    assert_eq!(c.retriever.kind, RetrieverKind::BedrockKb);
    assert_eq!(c.generator.kind, GeneratorKind::Bedrock);
    let b = c.generator.bedrock.unwrap();
    assert_eq!(b.model_id, "eu.amazon.nova-lite-v1:0");
    assert_eq!(b.read_timeout_secs, 40, "defaults fill the rest");
}

/// The app configured like the AWS path, on the double: the Bedrock
/// generator, and the KB retriever when `kb` is set.
async fn app_on(double: &BedrockDouble, kb: bool, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let url = double.url();
    TestApp::spawn_with(move |c| {
        c.aws.region = Some("us-east-1".into());
        c.generator.kind = GeneratorKind::Bedrock;
        c.generator.bedrock = Some(BedrockSettings {
            endpoint_url: Some(url.clone()),
            read_timeout_secs: 5,
            ..BedrockSettings::default()
        });
        if kb {
            c.retriever.kind = RetrieverKind::BedrockKb;
            c.retriever.bedrock_kb = Some(KbSettings {
                endpoint_url: Some(url),
                ..KbSettings::new(KB_ID)
            });
        }
        adjust(c);
    })
    .await
}

#[tokio::test]
async fn a_widget_question_is_answered_through_bedrock() {
    let double = BedrockDouble::start().await;
    let app = app_on(&double, false, |_| {}).await;
    let (id, token) = app.conversation().await;
    let (status, accepted) = app.post(&id, &token, QUESTION).await;
    assert_eq!(status, 202);
    let poll = app.wait_for_reply(&id, &token, 1).await;
    let answers = with_role(&poll, "assistant");
    assert_eq!(answers.len(), 1, "{poll}");
    assert!(
        answers[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Go to Settings → Security")
    );
    assert_eq!(answers[0]["sources"][0]["doc_id"], DOC);

    let sent = double.converse_requests();
    assert_eq!(sent.len(), 1);
    let last = sent[0].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        last["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains(&format!("<passage id=\"{DOC}\"")),
        "tantivy's passages reach the model"
    );

    // Usage is recorded with the ticket.
    let store =
        SqliteStore::new(deskhand::sqlite::Db::open(&app.data.path().join("deskhand.db")).unwrap());
    let ticket = store
        .ticket(accepted["ticket_id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .expect("ticket recorded");
    assert_eq!(
        ticket.usage.model_id.as_deref(),
        Some("amazon.nova-lite-v1:0")
    );
    assert_eq!(
        (
            ticket.usage.input_tokens,
            ticket.usage.output_tokens,
            ticket.usage.calls
        ),
        (1432, 87, 1)
    );
    app.stop().await;
}

#[tokio::test]
async fn the_aws_path_answers_with_kb_citations() {
    let double = BedrockDouble::start().await;
    let app = app_on(&double, true, |_| {}).await;
    let (id, token) = app.conversation().await;
    app.post(&id, &token, QUESTION).await;
    let poll = app.wait_for_reply(&id, &token, 1).await;
    let answers = with_role(&poll, "assistant");
    assert_eq!(answers.len(), 1, "{poll}");
    let source = &answers[0]["sources"][0];
    assert_eq!(
        source["doc_id"],
        "s3://deskhand-kb/security/two-factor-authentication.md"
    );
    assert_eq!(
        source["url"],
        "https://help.tallybird.example/articles/two-factor-authentication"
    );
    let retrieved = double.retrieve_requests();
    assert_eq!(retrieved.len(), 1);
    assert_eq!(retrieved[0].body["retrievalQuery"]["text"], QUESTION);
    app.stop().await;
}

#[tokio::test]
async fn bedrock_that_keeps_throttling_ends_in_an_escalation() {
    let double = BedrockDouble::start().await;
    double.set_converse_fallback(Reply::throttling());
    let app = app_on(&double, false, |c| c.queue.max_receives = 2).await;
    let (id, token) = app.conversation().await;
    app.post(&id, &token, QUESTION).await;
    let poll = app.wait_for_reply(&id, &token, 1).await;
    assert_eq!(poll["status"], "escalated", "{poll}");
    assert!(with_role(&poll, "assistant").is_empty(), "{poll}");
    assert_eq!(with_role(&poll, "system").len(), 1, "holding message");
    assert_eq!(
        double.converse_requests().len(),
        2,
        "one call per delivery, no SDK retries"
    );
    app.stop().await;
}
