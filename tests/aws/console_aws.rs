//! The agent console on the AWS path: the API Lambda's router
//! ([`AwsRuntime::router`]) over DynamoDB, SQS and SNS on moto server
//! (`MOTO_ENDPOINT`; without it this fails, never skips). A ticket runs
//! through the real pipeline into the table; the console, signed in with
//! an `[[agents]]` key, queues it, shows the draft the Lambda's escalator
//! kept, takes a note and a reply (which the customer's poll shows), and
//! the stats include the people's figures read from the table.

use crate::common;

use chrono::Utc;
use common::moto::Moto;
use common::store_contract::ticket;
use deskhand::api::console::AgentAccount;
use deskhand::config::Config;
use deskhand::domain::{ConversationId, Customer, Priority, ReasonCode};
use deskhand::lambda::AwsRuntime;
use deskhand::notify::Escalation;
use deskhand::secret::Secret;
use serde_json::{Value, json};

const SECRET: &str = "console-aws-secret-0123456789abcdef";
const KEY: &str = "dana-aws-console-key-0123456789";

#[tokio::test]
async fn the_lambda_router_serves_the_console_over_dynamodb() {
    let moto = Moto::connect().await;
    let table = moto.table().await;
    let (queue_url, dlq_url) = moto.queues().await;
    let (topic, _inbox) = moto.topic_with_subscriber(None).await;
    let config = Config {
        secret: Some(Secret::new(SECRET)),
        admin_key: Some(Secret::new("console-aws-admin-key-0123456789")),
        agents: vec![AgentAccount {
            name: "Dana".into(),
            key: Secret::new(KEY),
        }],
        aws: moto.aws_settings(&table, &queue_url, &dlq_url, &topic),
        ..Config::default()
    };
    let runtime = AwsRuntime::from_config(config).await.unwrap();
    // A customer asks for a person; the pipeline escalates into the table.
    let t = ticket(ConversationId::random(), "I want to talk to a human");
    let conv = t.conversation_id;
    runtime.pipeline().unwrap().process(&t).await.unwrap();
    // The Lambda's escalator keeps drafts in the table.
    runtime
        .escalator
        .escalate(&Escalation {
            ticket_id: Some(t.ticket_id),
            conversation_id: Some(conv),
            channel: None,
            provider: None,
            reason: ReasonCode::AskedForHuman,
            priority: Priority::Normal,
            confidence: 0.2,
            detail: "test".into(),
            customer: Customer::default(),
            subject: None,
            last_message: "human".into(),
            transcript: Vec::new(),
            draft: Some("Here is what I would have said.".into()),
            link: None,
            at: Utc::now(),
        })
        .await
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = runtime.router().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();

    let page = http.get(format!("{base}/agent")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let wrong = http
        .post(format!("{base}/agent/api/session"))
        .json(&json!({"key": "wrong-key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let res = http
        .post(format!("{base}/agent/api/session"))
        .json(&json!({"key": KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = res.json::<Value>().await.unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    let q: Value = http
        .get(format!("{base}/agent/api/queue"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item = q["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["conversation_id"] == conv.to_string())
        .unwrap_or_else(|| panic!("not queued: {q}"));
    assert_eq!(item["reason"], "asked_for_human");
    assert_eq!(item["customer"], "Ann");

    let path = format!("{base}/agent/api/conversations/{conv}");
    let before: Value = http
        .get(&path)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        before["draft"]["text"], "Here is what I would have said.",
        "{before}"
    );
    for (action, body) in [
        ("note", json!({"text": "on DynamoDB"})),
        ("reply", json!({"text": "Dana here, from the console."})),
    ] {
        let r = http
            .post(format!("{path}/{action}"))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{action}");
    }
    let c: Value = http
        .get(&path)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["notes"][0]["text"], "on DynamoDB", "{c}");
    assert_eq!(c["assignee"], "Dana");
    assert!(
        c["draft"].is_null(),
        "an agent replied after the draft: {c}"
    );
    let roles: Vec<&str> = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["customer", "system", "agent"], "{c}");

    // The customer's poll shows the reply, never the note.
    let token = runtime_token(conv);
    let poll: Value = http
        .get(format!("{base}/v1/conversations/{conv}/messages"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = poll.to_string();
    assert!(
        text.contains("Dana here") && !text.contains("on DynamoDB"),
        "{poll}"
    );

    // Stats over the table, through the console.
    let s: Value = http
        .get(format!("{base}/agent/api/stats"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["resolution"]["escalated"], 1, "{s}");
}

/// The widget token for `conv` under the test secret.
fn runtime_token(conv: ConversationId) -> String {
    deskhand::api::Tokens::new(Secret::new(SECRET)).issue(conv)
}

/// `aws.agents_secret_id`: the console's agents come from Secrets Manager
/// (moto) at cold start; a malformed secret stops the start with an error
/// that names the secret and never shows its value.
#[tokio::test]
async fn agents_are_read_from_secrets_manager() {
    let moto = Moto::connect().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&moto.sdk);
    let create = |name: &str, value: &str| {
        let (secrets, name, value) = (
            secrets.clone(),
            format!("{}-{name}", moto.prefix),
            value.to_owned(),
        );
        async move {
            secrets
                .create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await
                .unwrap()
                .arn()
                .unwrap()
                .to_owned()
        }
    };
    let good = create("agents", r#"[{"name": "Dana", "key": "dana-from-secrets-0123456789"}, {"name": "Lee", "key": "lee-from-secrets-0123456789"}]"#).await;
    let bad = create("agents-bad", r#"["super-secret-key-value-0123"]"#).await;
    let settings = |id: &str| {
        let mut aws = moto.aws_settings(
            "t",
            &format!("{}/123456789012/q.fifo", moto.endpoint),
            "",
            "arn:aws:sns:us-east-1:123456789012:t",
        );
        aws.agents_secret_id = Some(id.to_owned());
        Config {
            secret: Some(Secret::new(SECRET)),
            aws,
            ..Config::default()
        }
    };
    let runtime = AwsRuntime::from_config(settings(&good))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let names: Vec<&str> = runtime
        .config
        .agents
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["Dana", "Lee"]);
    let err = match AwsRuntime::from_config(settings(&bad)).await {
        Ok(_) => panic!("a malformed agents secret must stop the start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("agents_secret_id") && !err.contains("super-secret"),
        "{err}"
    );
    let mut both = settings(&good);
    both.agents = vec![AgentAccount {
        name: "Sam".into(),
        key: Secret::new("sam-in-the-file-0123456789"),
    }];
    assert!(AwsRuntime::from_config(both).await.is_err());
}
