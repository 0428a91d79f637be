//! The worker binary under the Lambda runtime: `cargo lambda watch
//! --only-lambda-apis` is the Runtime API emulator, the worker binary this
//! test build made runs against it, `cargo lambda invoke` sends it the
//! fixture `SqsEvent`, and the response names the expected batch item
//! failures. Storage and escalations are on moto.
//!
//! The fixture holds three records: a question in conversation A, and in
//! conversation B an unreadable record followed by a question. The
//! dead-letter queue is configured to a queue that does not exist, so the
//! unreadable record cannot be parked: it is reported failed, and with it
//! the record after it in B (FIFO). A's question is answered and stored.

use crate::common;

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
    let worker_env = [
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
    ];

    let port = free_port().to_string();
    let watch_log = dir.path().join("watch.log");
    let mut watch = Command::new(&cargo_lambda)
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "-A",
            "127.0.0.1",
            "-P",
            &port,
        ])
        .current_dir(root())
        .stdout(std::fs::File::create(&watch_log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("watch.err")).unwrap())
        .spawn()
        .expect("cargo lambda watch starts");
    let ready = Instant::now();
    while std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err() {
        assert!(
            ready.elapsed() < Duration::from_secs(30),
            "the Runtime API emulator did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut function = Command::new(env!("CARGO_BIN_EXE_deskhand-worker"))
        .envs(worker_env)
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("function.err")).unwrap())
        .spawn()
        .expect("the worker binary starts");
    let result = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        loop {
            let mut invoke = Command::new(&cargo_lambda)
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
                .arg("_")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let invoked = Instant::now();
            while invoke.try_wait().unwrap().is_none()
                && invoked.elapsed() < Duration::from_secs(60)
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            if invoke.try_wait().unwrap().is_none() {
                let _ = invoke.kill();
            }
            let out = invoke.wait_with_output().unwrap();
            if out.status.success() {
                return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
            }
            if started.elapsed() > Duration::from_secs(90) {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
    .await
    .unwrap();
    let _ = function.kill();
    let _ = function.wait();
    let _ = watch.kill();
    let _ = watch.wait();
    let response: serde_json::Value = match &result {
        Ok(out) => serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}")),
        Err(err) => panic!(
            "invoke failed: {err}\n--- emulator:\n{}\n{}\n--- function:\n{}",
            std::fs::read_to_string(&watch_log).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("watch.err")).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("function.err")).unwrap_or_default()
        ),
    };
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
        ],
        "--- function:\n{}",
        std::fs::read_to_string(dir.path().join("function.err")).unwrap_or_default()
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
