//! Action calls are logged (action, status, latency) and nothing else of
//! them: the real binary at debug level with JSON logs, a found order and
//! a failing shop; no secret, order field, address or URL reaches a line.

use crate::actions_support;
use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use actions_support::{Shop, TOKEN};
use common::root;
use deskhand::actions::identity::widget_user_hash;
use serde_json::{Value, json};

const SITE_SECRET: &str = "site-identity-secret-7c1d";

#[tokio::test]
async fn action_calls_are_logged_without_payload_or_secrets() {
    let shop = Shop::start().await;
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("deskhand.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[identity]
secret = "{SITE_SECRET}"
[action_secrets]
shop_token = "{TOKEN}"
[[actions]]
name = "order_status"
url = "{}/api/orders/{{order_number}}?email={{customer.email}}"
headers = {{ Authorization = "Bearer ${{secret:shop_token}}" }}
[actions.params.order_number]
pattern = '#?(\d{{4,10}})'
[actions.expose]
status = "/order/status"
tracking_url = "/order/tracking_url"
"#,
            shop.url()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_deskhand"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data.path().join("data"))
        .arg("--kb")
        .arg(root().join("fixtures/kb"))
        .arg("--config")
        .arg(&config)
        .env("DESKHAND_LOG", "debug")
        .env("DESKHAND_LOG_FORMAT", "json")
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
    let open = |user: Value| {
        http.post(format!("{base}/v1/conversations"))
            .json(&json!({ "user": user }))
            .send()
    };
    let v: Value = open(
        json!({"id": "u_ann", "email": "ann@example.com", "hash": widget_user_hash(SITE_SECRET, "u_ann", Some("ann@example.com"))}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let (id, token) = (
        v["conversation_id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    );
    let post = |text: &str| {
        http.post(format!("{base}/v1/conversations/{id}/messages"))
            .bearer_auth(&token)
            .json(&json!({ "text": text }))
            .send()
    };
    post("Where's my order #1001?").await.unwrap();
    common::wait_for_reply(&http, &base, &id, &token, 1, Duration::from_secs(20)).await;
    shop.set_down(true);
    post("And where's my order #1002?").await.unwrap();
    common::wait_for_reply(&http, &base, &id, &token, 2, Duration::from_secs(20)).await;
    // A wrong hash, refused: its text must not be logged either.
    open(json!({"id": "u_ann", "hash": "deadbeef"}))
        .await
        .unwrap();

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let log = log.join().unwrap();
    let calls: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "Action called.")
        .collect();
    assert_eq!(calls.len(), 2, "{log}");
    assert_eq!(calls[0]["status"], "found");
    assert_eq!(calls[1]["status"], "failed");
    assert_eq!(calls[1]["http_status"], 503);
    assert!(calls[0]["latency_ms"].is_u64());
    for forbidden in [
        TOKEN,
        SITE_SECRET,
        &widget_user_hash(SITE_SECRET, "u_ann", Some("ann@example.com")),
        "shipped",
        "1Z1001",
        "Secret Street",
        "ann@example.com",
        "/api/orders/",
    ] {
        assert!(!log.contains(forbidden), "{forbidden} in the log");
    }
}
