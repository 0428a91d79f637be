//! The worker binary under the Lambda runtime: `cargo lambda watch` (the
//! Runtime API emulator) runs it, `cargo lambda invoke` sends it the
//! fixture `SqsEvent`, and the response names the expected batch item
//! failures. Storage and escalations are on moto.
//!
//! The fixture holds three records: a question in conversation A, and in
//! conversation B an unreadable record followed by a question. The
//! dead-letter queue is configured to a queue that does not exist, so the
//! unreadable record cannot be parked: it is reported failed, and with it
//! the record after it in B (FIFO). A's question is answered and stored.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::moto::Moto;
use common::root;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_worker_binary_answers_a_fixture_event_under_the_lambda_runtime() {
    let cargo_lambda = std::env::var("CARGO_LAMBDA").expect(
        "CARGO_LAMBDA is not set: run this test through scripts/test, which installs cargo-lambda",
    );
    let moto = Moto::connect().await;
    let table = moto.table().await;
    let (queue, _) = moto.queues().await;
    let (topic, inbox) = moto.topic_with_subscriber(None).await;

    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("worker.env");
    let mut f = std::fs::File::create(&env_file).unwrap();
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("DESKHAND_AWS__ENDPOINT_URL", moto.endpoint.clone()),
        ("DESKHAND_AWS__TABLE", table.clone()),
        ("DESKHAND_AWS__QUEUE_URL", queue),
        (
            "DESKHAND_AWS__DLQ_URL",
            format!(
                "{}/123456789012/{}-missing.fifo",
                moto.endpoint, moto.prefix
            ),
        ),
        ("DESKHAND_AWS__TOPIC_ARN", topic),
        (
            "DESKHAND_KB_DIR",
            root().join("fixtures/kb").display().to_string(),
        ),
        ("DESKHAND_LOG", "warn".to_owned()),
    ] {
        writeln!(f, "{k}={v}").unwrap();
    }
    drop(f);

    let port = free_port().to_string();
    let mut watch = Command::new(&cargo_lambda)
        .args([
            "lambda",
            "watch",
            "--ignore-changes",
            "-A",
            "127.0.0.1",
            "-P",
            &port,
            "--env-file",
        ])
        .arg(&env_file)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cargo lambda watch starts");
    let result = tokio::task::spawn_blocking(move || {
        // The emulator compiles the function on first use; allow for that.
        let started = Instant::now();
        loop {
            let out = Command::new(&cargo_lambda)
                .args([
                    "lambda",
                    "invoke",
                    "-A",
                    "127.0.0.1",
                    "-P",
                    &port,
                    "--data-file",
                ])
                .arg(root().join("fixtures/lambda/sqs_event.json"))
                .arg("deskhand-worker")
                .output()
                .unwrap();
            if out.status.success() {
                return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
            }
            if started.elapsed() > Duration::from_secs(240) {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
    .await
    .unwrap();
    let _ = watch.kill();
    let _ = watch.wait();
    let response: serde_json::Value =
        serde_json::from_str(result.as_ref().expect("invoke succeeded")).unwrap();
    let failures: Vec<&str> = response["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not a batch response: {response}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    assert_eq!(
        failures,
        [
            "b1b1b1b1-0000-4000-8000-000000000002",
            "b2b2b2b2-0000-4000-8000-000000000003"
        ]
    );

    // A's ticket was answered and stored; the unreadable record escalated.
    let store = deskhand::store::DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&moto.sdk),
        &table,
        Duration::from_secs(60),
    );
    let record = deskhand::store::Store::ticket(
        &store,
        "0197c1a0-0000-7000-8000-0000000000a1".parse().unwrap(),
    )
    .await
    .unwrap()
    .expect("A's ticket is finished");
    assert_eq!(record.outcome, deskhand::domain::Outcome::Answered);
    let notes = moto.notifications(&inbox).await;
    assert!(
        notes
            .iter()
            .any(|n| n["MessageAttributes"]["reason"]["Value"] == "unparseable"),
        "{notes:?}"
    );
}
