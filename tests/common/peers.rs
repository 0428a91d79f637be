//! HTTP peers for tests: an OpenAI-compatible chat-completions server that
//! answers from a script, and a webhook receiver that records bodies.
//! Test doubles of remote services; never used outside tests.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One scripted answer of the model server.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with this message content.
    Content(String),
    /// This status and body.
    Status(u16, String),
    /// Wait, then answer with the inner reply.
    Delay(Duration, Box<Reply>),
}

impl Reply {
    /// A well-formed answer object citing `source`.
    pub fn answer(text: &str, confidence: f64, source: &str) -> Self {
        Reply::Content(
            json!({"answer": text, "confidence": confidence, "needs_human": false, "reason": null, "sources": [source]})
                .to_string(),
        )
    }
}

#[derive(Default)]
struct ModelState {
    script: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Option<Reply>>,
    requests: Mutex<Vec<Value>>,
}

/// The model server.
#[derive(Clone)]
pub struct ModelServer {
    pub addr: SocketAddr,
    state: Arc<ModelState>,
}

impl ModelServer {
    /// Starts on 127.0.0.1:0; answers `fallback` once the script runs out.
    pub async fn start(script: Vec<Reply>, fallback: Reply) -> Self {
        let state = Arc::new(ModelState {
            script: Mutex::new(script.into()),
            fallback: Mutex::new(Some(fallback)),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    /// The base URL to configure.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Replaces what is answered once the script runs out.
    pub fn set_fallback(&self, reply: Reply) {
        *self.state.fallback.lock().unwrap() = Some(reply);
    }
}

async fn complete(State(state): State<Arc<ModelState>>, body: axum::body::Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.requests.lock().unwrap().push(request);
    let next = state.script.lock().unwrap().pop_front();
    let reply = next.unwrap_or_else(|| state.fallback.lock().unwrap().clone().expect("fallback"));
    render(reply).await
}

async fn render(reply: Reply) -> Response {
    let mut reply = reply;
    loop {
        match reply {
            Reply::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                reply = *inner;
            }
            Reply::Status(code, body) => {
                return (StatusCode::from_u16(code).unwrap(), body).into_response();
            }
            Reply::Content(content) => {
                return axum::Json(json!({
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "model": "test-model",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 812, "completion_tokens": 64, "total_tokens": 876,
                              "prompt_tokens_details": {"cached_tokens": 512}}
                }))
                .into_response();
            }
        }
    }
}

/// A webhook receiver recording every JSON body.
#[derive(Clone)]
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Value>>>,
    status: Arc<Mutex<u16>>,
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(Mutex::new(200u16));
        let (b, s) = (bodies.clone(), status.clone());
        let app = Router::new().route(
            "/hook",
            post(move |body: axum::body::Bytes| {
                let (b, s) = (b.clone(), s.clone());
                async move {
                    let code = *s.lock().unwrap();
                    if code == 200 {
                        b.lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    }
                    StatusCode::from_u16(code).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            bodies,
            status,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Answers every call with `code` (and records only 200s).
    pub fn set_status(&self, code: u16) {
        *self.status.lock().unwrap() = code;
    }

    /// Waits until `n` bodies arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..400 {
            let b = self.bodies();
            if b.len() >= n {
                return b;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} webhook calls, got {}", self.bodies().len());
    }
}
