//! Nothing lost, nothing twice, in local mode: a killed server, a failing
//! model, an unreadable queue record, malformed model output, a webhook
//! outage and duplicate deliveries.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::peers::{ModelServer, Reply, WebhookReceiver};
use common::{TestApp, root, with_role};
use deskhand::config::{Config, GeneratorKind, WebhookFormat};
use deskhand::llm::openai::OpenAiSettings;
use deskhand::queue::SqliteQueue;
use deskhand::secret::Secret;
use deskhand::sqlite::Db;
use serde_json::Value;

const QUESTION: &str = "How do I turn on two-factor authentication?";
const DOC: &str = "security/two-factor-authentication.md";

fn use_model(c: &mut Config, model: &ModelServer) {
    c.generator.kind = GeneratorKind::Openai;
    c.generator.openai = Some(OpenAiSettings {
        base_url: model.base_url(),
        model: "test-model".into(),
        api_key: Some(Secret::new("sk-test")),
        timeout_secs: 5,
        max_tokens: 500,
        temperature: 0.0,
        response_format: Default::default(),
    });
}

fn use_webhook(c: &mut Config, hook: &WebhookReceiver) {
    c.escalation.webhook_url = Some(Secret::new(hook.url()));
    c.escalation.webhook_format = WebhookFormat::Json;
}

/// Starts the real binary; returns it and its address.
fn spawn_binary(data: &std::path::Path, model: &ModelServer) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_deskhand"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data)
        .arg("--kb")
        .arg(root().join("fixtures/kb"))
        .env("DESKHAND_GENERATOR__KIND", "openai")
        .env("DESKHAND_GENERATOR__OPENAI__BASE_URL", model.base_url())
        .env("DESKHAND_GENERATOR__OPENAI__MODEL", "test-model")
        .env("DESKHAND_LOG", "warn")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("deskhand binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(rest) = line.split("on http://").nth(1) {
            break rest.trim().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, format!("http://{addr}"))
}

#[tokio::test]
async fn kill_9_mid_ticket_then_restart_answers_it_once() {
    let model = ModelServer::start(
        // The first call hangs: the process is killed while waiting for it.
        vec![Reply::Delay(
            Duration::from_secs(60),
            Box::new(Reply::answer("too late", 0.9, DOC)),
        )],
        Reply::answer(
            "Go to Settings → Security → Two-factor authentication.",
            0.92,
            DOC,
        ),
    )
    .await;
    let data = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();

    let (mut first, base) = spawn_binary(data.path(), &model);
    let (id, token) = common::open_conversation(&http, &base).await;
    let (id, token) = (id.as_str(), token.as_str());
    let res = http
        .post(format!("{base}/v1/conversations/{id}/messages"))
        .bearer_auth(token)
        .json(&serde_json::json!({"text": QUESTION}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    for _ in 0..200 {
        if !model.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        model.requests().len(),
        1,
        "the worker never called the model"
    );
    first.kill().unwrap(); // SIGKILL: no shutdown code runs.
    first.wait().unwrap();

    let (mut second, base) = spawn_binary(data.path(), &model);
    let poll = common::wait_for_reply(&http, &base, id, token, 1, Duration::from_secs(20)).await;
    let answers = with_role(&poll, "assistant");
    assert_eq!(answers.len(), 1, "{poll}");
    assert!(
        answers[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Go to Settings")
    );
    // Give a duplicate time to show up; there must be none.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let again: Value = http
        .get(format!("{base}/v1/conversations/{id}/messages"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        with_role(&again, "assistant").len(),
        1,
        "answered twice: {again}"
    );
    assert_eq!(
        with_role(&again, "customer").len(),
        1,
        "customer message stored twice: {again}"
    );
    assert_eq!(model.requests().len(), 2);
    second.kill().unwrap();
    second.wait().unwrap();
}

#[tokio::test]
async fn a_model_that_keeps_failing_ends_dead_lettered_with_a_person_told() {
    let model = ModelServer::start(vec![], Reply::Status(503, "overloaded".into())).await;
    let hook = WebhookReceiver::start().await;
    let app = TestApp::spawn_with(|c| {
        use_model(c, &model);
        use_webhook(c, &hook);
        c.queue.max_receives = 3;
    })
    .await;
    let (id, token) = app.conversation().await;
    app.post(&id, &token, QUESTION).await;
    let poll = app.wait_for_reply(&id, &token, 1).await;
    assert_eq!(poll["status"], "escalated", "{poll}");
    assert_eq!(with_role(&poll, "system").len(), 1);
    let calls = hook.wait_for(1).await;
    assert_eq!(calls[0]["reason"], "processing_failed");
    assert_eq!(calls[0]["priority"], "high");
    assert_eq!(calls[0]["conversation_id"], id.as_str());
    assert_eq!(calls[0]["last_message"], QUESTION);
    assert_eq!(model.requests().len(), 3, "one model call per attempt");
    let data = app.stop().await;
    let queue = SqliteQueue::new(Db::open(&data.path().join("deskhand.db")).unwrap(), 262_144);
    let dead = queue.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1, "processing_failed");
    assert_eq!(queue.depth().await.unwrap().queued, 0);
}

#[tokio::test]
async fn an_unreadable_record_is_dead_lettered_at_once_and_reported() {
    let hook = WebhookReceiver::start().await;
    let app = TestApp::spawn_with(|c| use_webhook(c, &hook)).await;
    let queue = SqliteQueue::new(
        Db::open(&app.data.path().join("deskhand.db")).unwrap(),
        262_144,
    );
    queue
        .send_raw("g", "poison-1", "{\"v\":1,\"ticket_id\":\"nope\"}")
        .await
        .unwrap();
    let calls = hook.wait_for(1).await;
    assert_eq!(calls[0]["reason"], "unparseable");
    for _ in 0..100 {
        if queue.depth().await.unwrap().dead == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dead = queue.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].1.as_str(), dead[0].2),
        ("unparseable", 1),
        "retried an unreadable record"
    );
    app.stop().await;
}

#[tokio::test]
async fn malformed_model_output_is_retried_once_then_escalated() {
    let model = ModelServer::start(
        vec![],
        Reply::Content("Sure! Here is my answer, no JSON at all.".into()),
    )
    .await;
    let hook = WebhookReceiver::start().await;
    let app = TestApp::spawn_with(|c| {
        use_model(c, &model);
        use_webhook(c, &hook);
    })
    .await;
    let (id, token) = app.conversation().await;
    app.post(&id, &token, QUESTION).await;
    let poll = app.wait_for_reply(&id, &token, 1).await;
    assert_eq!(poll["status"], "escalated");
    assert!(
        with_role(&poll, "assistant").is_empty(),
        "a blank or garbage reply was sent: {poll}"
    );
    let calls = hook.wait_for(1).await;
    assert_eq!(calls[0]["reason"], "model_refused");
    assert_eq!(model.requests().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn the_model_gets_passages_and_history_and_a_good_answer_is_sent() {
    let model = ModelServer::start(
        vec![
            Reply::answer("First answer.", 0.9, DOC),
            Reply::answer("Second answer.", 0.3, DOC),
        ],
        Reply::Status(500, "unexpected".into()),
    )
    .await;
    let hook = WebhookReceiver::start().await;
    let app = TestApp::spawn_with(|c| {
        use_model(c, &model);
        use_webhook(c, &hook);
    })
    .await;
    let (id, token) = app.conversation().await;
    app.post(&id, &token, QUESTION).await;
    let poll = app.wait_for_reply(&id, &token, 1).await;
    let answer = with_role(&poll, "assistant");
    assert_eq!(answer[0]["text"], "First answer.");
    assert_eq!(answer[0]["sources"][0]["doc_id"], DOC);

    // The second answer is below the confidence threshold: escalated, with a draft.
    app.post(
        &id,
        &token,
        "And what if I lose my phone with the authenticator app on it?",
    )
    .await;
    let poll = app.wait_for_reply(&id, &token, 2).await;
    assert_eq!(poll["status"], "escalated");
    let calls = hook.wait_for(1).await;
    assert_eq!(calls[0]["reason"], "low_confidence");
    assert_eq!(calls[0]["draft"], "Second answer.");
    assert_eq!(
        calls[0]["transcript"].as_array().unwrap().len(),
        3,
        "{}",
        calls[0]
    );

    let requests = model.requests();
    let user = requests[1]["messages"][1]["content"].as_str().unwrap();
    assert!(
        user.contains("<passage id=\"security/two-factor-authentication.md\""),
        "{user}"
    );
    assert!(
        user.contains("<turn role=\"assistant\">First answer.</turn>"),
        "history missing: {user}"
    );
    assert!(user.contains("lose my phone"));
    assert_eq!(requests[1]["response_format"]["type"], "json_schema");
    app.stop().await;
}

#[tokio::test]
async fn a_webhook_outage_delays_the_escalation_but_does_not_lose_it() {
    let hook = WebhookReceiver::start().await;
    hook.set_status(500);
    let app = TestApp::spawn_with(|c| use_webhook(c, &hook)).await;
    let (id, token) = app.conversation().await;
    app.post(&id, &token, "I need to speak to a real person")
        .await;
    let poll = app.wait_for_reply(&id, &token, 1).await;
    assert_eq!(poll["status"], "escalated");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(hook.bodies().is_empty());
    hook.set_status(200);
    let calls = hook.wait_for(1).await;
    assert_eq!(calls[0]["reason"], "asked_for_human");
    // Exactly once: the redelivery that succeeded recorded it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.bodies().len(), 1);
    let (_, p) = app.poll(&id, &token, "0").await;
    assert_eq!(
        with_role(&p, "system").len(),
        1,
        "holding message repeated: {p}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_duplicate_delivery_neither_calls_the_model_nor_replies_twice() {
    let model = ModelServer::start(vec![], Reply::answer("Only once.", 0.9, DOC)).await;
    let app = TestApp::spawn_with(|c| use_model(c, &model)).await;
    let (id, token) = app.conversation().await;
    let (_, accepted) = app.post(&id, &token, QUESTION).await;
    app.wait_for_reply(&id, &token, 1).await;
    assert_eq!(model.requests().len(), 1);

    // Deliver the same ticket again under a new queue dedup id, as an
    // at-least-once queue may.
    let queue = SqliteQueue::new(
        Db::open(&app.data.path().join("deskhand.db")).unwrap(),
        262_144,
    );
    let ticket = deskhand::domain::Ticket {
        ticket_id: accepted["ticket_id"].as_str().unwrap().parse().unwrap(),
        conversation_id: id.parse().unwrap(),
        provider: deskhand::domain::Provider::Widget,
        customer: Default::default(),
        subject: None,
        text: deskhand::domain::MessageText::parse(QUESTION, 1000).unwrap(),
        attachments: vec![],
        thread: Default::default(),
        brand: None,
        received_at: chrono::Utc::now(),
    };
    let (body, _) = deskhand::queue::encode(&ticket, 262_144).unwrap();
    queue.send_raw(&id, "redelivery", &body).await.unwrap();
    for _ in 0..100 {
        if queue.depth().await.unwrap().queued == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        queue.depth().await.unwrap().queued,
        0,
        "duplicate not consumed"
    );
    let (_, p) = app.poll(&id, &token, "0").await;
    assert_eq!(with_role(&p, "assistant").len(), 1, "{p}");
    assert_eq!(with_role(&p, "customer").len(), 1, "{p}");
    assert_eq!(model.requests().len(), 1, "the model was called again");
    app.stop().await;
}

#[tokio::test]
async fn a_redriven_ticket_is_answered_once_the_model_is_back() {
    let model = ModelServer::start(vec![], Reply::Status(503, "overloaded".into())).await;
    let hook = WebhookReceiver::start().await;
    let app = TestApp::spawn_with(|c| {
        use_model(c, &model);
        use_webhook(c, &hook);
        c.queue.max_receives = 2;
    })
    .await;
    let (id, token) = app.conversation().await;
    app.post(&id, &token, QUESTION).await;
    hook.wait_for(1).await;
    let queue = SqliteQueue::new(
        Db::open(&app.data.path().join("deskhand.db")).unwrap(),
        262_144,
    );
    for _ in 0..100 {
        if queue.depth().await.unwrap().dead == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(queue.depth().await.unwrap().dead, 1);

    // The outage ends; an operator redrives.
    model.set_fallback(Reply::answer("Go to Settings → Security.", 0.9, DOC));
    assert_eq!(deskhand::queue::Queue::redrive(&queue).await.unwrap(), 1);
    let mut answered = Value::Null;
    for _ in 0..200 {
        let (_, p) = app.poll(&id, &token, "0").await;
        if !with_role(&p, "assistant").is_empty() {
            answered = p;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(with_role(&answered, "assistant").len(), 1, "{answered}");
    assert_eq!(
        answered["status"], "open",
        "the failure escalation should be lifted: {answered}"
    );
    assert_eq!(with_role(&answered, "customer").len(), 1);
    app.stop().await;
}
