//! Secrets are never logged and personal data is redacted: the real binary
//! runs at debug level with JSON logs and every kind of secret configured;
//! customer messages, escalations, bad requests and agent replies carry
//! e-mail addresses, phone and card numbers; then every captured log line
//! is scanned.

use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::peers::{ModelServer, Reply, WebhookReceiver};
use common::root;
use serde_json::json;

const SECRETS: &[&str] = &[
    "token-secret-5f1e9c2ab7d04e63",
    "agent-key-0c9d8e7f6a5b4c3d",
    "sk-openai-key-77e2d1c0b9a8",
];
const PII: &[&str] = &[
    "jane.doe@customer-mail.example",
    "4111 1111 1111 1111",
    "4111111111111111",
    "+44 20 7946 0958",
    "(415) 555-2671",
];

#[tokio::test]
async fn logs_hold_no_secrets_and_no_personal_data() {
    // The second model call fails with an error body echoing the customer's
    // words, as model APIs' validation errors do: the failure's detail is
    // logged, and must come out redacted.
    let model = ModelServer::start(
        vec![
            Reply::answer(
                "Use Settings → Security.",
                0.9,
                "security/two-factor-authentication.md",
            ),
            Reply::Status(
                400,
                format!(
                    "{{\"error\":\"bad input near '{} {} {}'\"}}",
                    PII[0], PII[1], PII[3]
                ),
            ),
        ],
        Reply::answer(
            "Use Settings → Security.",
            0.9,
            "security/two-factor-authentication.md",
        ),
    )
    .await;
    let hook = WebhookReceiver::start().await;
    let hook_url = format!("{}?token=hook-secret-9a8b7c6d", hook.url());
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_deskhand"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .arg("--kb")
        .arg(root().join("fixtures/kb"))
        .env("DESKHAND_LOG", "debug")
        .env("DESKHAND_LOG_FORMAT", "json")
        .env("DESKHAND_SECRET", SECRETS[0])
        .env("DESKHAND_AGENT_KEY", SECRETS[1])
        .env("DESKHAND_GENERATOR__KIND", "openai")
        .env("DESKHAND_GENERATOR__OPENAI__BASE_URL", model.base_url())
        .env("DESKHAND_GENERATOR__OPENAI__MODEL", "m")
        .env("DESKHAND_GENERATOR__OPENAI__API_KEY", SECRETS[2])
        .env("DESKHAND_ESCALATION__WEBHOOK_URL", &hook_url)
        .env("DESKHAND_ESCALATION__WEBHOOK_FORMAT", "json")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.split("on http://").nth(1) {
            break format!("http://{}", rest.trim());
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let http = reqwest::Client::new();
    let (id, token) = common::open_conversation(&http, &base).await;
    let post = |text: String| {
        http.post(format!("{base}/v1/conversations/{id}/messages"))
            .bearer_auth(&token)
            .json(&json!({"text": text}))
            .send()
    };
    post(format!(
        "How do I turn on 2FA? I'm {} and my card is {}",
        PII[0], PII[1]
    ))
    .await
    .unwrap();
    common::wait_for_reply(&http, &base, &id, &token, 1, Duration::from_secs(20)).await;
    post(format!(
        "And how do I set up two-factor authentication on a new phone? {}",
        PII[0]
    ))
    .await
    .unwrap();
    hook.wait_for(1).await; // the model's 400 is permanent: escalated at once
    post(format!(
        "I want to speak to a human, call me on {} or {}",
        PII[3], PII[4]
    ))
    .await
    .unwrap();
    hook.wait_for(2).await;
    // Bad requests that echo input.
    http.post(format!("{base}/v1/conversations/{id}/messages"))
        .bearer_auth(&token)
        .body(format!("{{\"text\": {}", PII[2]))
        .send()
        .await
        .unwrap();
    http.get(format!("{base}/v1/conversations/{id}/messages"))
        .bearer_auth(SECRETS[1])
        .send()
        .await
        .unwrap();
    http.post(format!("{base}/v1/conversations/{id}/agent-replies"))
        .bearer_auth(SECRETS[1])
        .json(&json!({"text": format!("Hi, I emailed you at {}", PII[0]), "agent": "Sam"}))
        .send()
        .await
        .unwrap();
    http.post(format!("{base}/v1/conversations/{id}/agent-replies"))
        .bearer_auth("wrong-agent-key")
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SIGTERM: a graceful stop flushes the logs.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let log = log.join().unwrap();

    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines.len() > 20,
        "too few log lines to mean anything: {}",
        lines.len()
    );
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    assert!(
        log.contains("Ticket escalated."),
        "the escalation was not logged"
    );
    assert!(
        log.contains("[email]") && log.contains("[card]"),
        "the echoed error was not logged redacted: {}",
        log.lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for secret in SECRETS.iter().chain(&["hook-secret-9a8b7c6d"]) {
        assert!(!log.contains(secret), "a secret reached the log: {secret}");
    }
    for pii in PII {
        assert!(!log.contains(pii), "personal data reached the log: {pii}");
    }
    assert!(
        !log.contains("customer-mail.example"),
        "an e-mail domain reached the log"
    );
}
