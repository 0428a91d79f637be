//! A test double of Amazon Bedrock that the real AWS SDK talks to: the
//! restJson1 operations `POST /model/{modelId}/converse` (bedrock-runtime)
//! and `POST /knowledgebases/{knowledgeBaseId}/retrieve`
//! (bedrock-agent-runtime), answering with JSON from `fixtures/bedrock/`.
//!
//! Each operation has a script of replies (then a fallback): fixtures,
//! inline JSON, service errors and slow answers. Errors carry the
//! `x-amzn-ErrorType` header and a `{"message"}` body, which is what the
//! SDK's restJson1 error parser reads to pick the error variant. Every
//! request is recorded for assertions on what the SDK sent. A test double
//! of a remote service; never used outside tests.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_bedrockruntime::config::Credentials;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

/// The fixtures folder.
pub fn fixture_path(name: &str) -> std::path::PathBuf {
    super::root().join("fixtures/bedrock").join(name)
}

/// A fixture as JSON.
pub fn fixture(name: &str) -> Value {
    let path = fixture_path(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with a fixture's body.
    Fixture(&'static str),
    /// 200 with this body.
    Json(Value),
    /// A service error: status, error type, and a fixture with the body.
    Error(u16, &'static str, &'static str),
    /// Wait, then answer with the inner reply.
    Delay(Duration, Box<Reply>),
}

impl Reply {
    /// 429 `ThrottlingException`.
    pub fn throttling() -> Self {
        Reply::Error(429, "ThrottlingException", "throttling.json")
    }

    /// 503 `ServiceUnavailableException`.
    pub fn unavailable() -> Self {
        Reply::Error(
            503,
            "ServiceUnavailableException",
            "service_unavailable.json",
        )
    }

    /// 500 `InternalServerException`.
    pub fn internal() -> Self {
        Reply::Error(500, "InternalServerException", "internal_server.json")
    }

    /// 400 `ValidationException`.
    pub fn validation() -> Self {
        Reply::Error(400, "ValidationException", "validation.json")
    }

    /// 403 `AccessDeniedException`.
    pub fn access_denied() -> Self {
        Reply::Error(403, "AccessDeniedException", "access_denied.json")
    }

    /// `inner`, after `delay`.
    pub fn slow(delay: Duration, inner: Reply) -> Self {
        Reply::Delay(delay, Box::new(inner))
    }
}

/// One request the double received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The model id or knowledge base id from the path (decoded).
    pub id: String,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its JSON body.
    pub body: Value,
}

struct Script {
    queue: VecDeque<Reply>,
    fallback: Reply,
}

impl Script {
    fn next(&mut self) -> Reply {
        self.queue
            .pop_front()
            .unwrap_or_else(|| self.fallback.clone())
    }
}

struct DoubleState {
    converse: Mutex<Script>,
    retrieve: Mutex<Script>,
    converse_requests: Mutex<Vec<Recorded>>,
    retrieve_requests: Mutex<Vec<Recorded>>,
}

/// The running double.
#[derive(Clone)]
pub struct BedrockDouble {
    pub addr: SocketAddr,
    state: Arc<DoubleState>,
}

impl BedrockDouble {
    /// Starts on 127.0.0.1:0, answering `converse_tool_use.json` and
    /// `retrieve_s3_web.json` unless scripted otherwise.
    pub async fn start() -> Self {
        fake_aws_env();
        let state = Arc::new(DoubleState {
            converse: Mutex::new(Script {
                queue: VecDeque::new(),
                fallback: Reply::Fixture("converse_tool_use.json"),
            }),
            retrieve: Mutex::new(Script {
                queue: VecDeque::new(),
                fallback: Reply::Fixture("retrieve_s3_web.json"),
            }),
            converse_requests: Mutex::new(Vec::new()),
            retrieve_requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/model/{model_id}/converse", post(converse))
            .route("/knowledgebases/{kb_id}/retrieve", post(retrieve))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    /// The endpoint URL to configure.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next Converse calls with `replies`, in order.
    pub fn script_converse(&self, replies: Vec<Reply>) {
        self.state.converse.lock().unwrap().queue.extend(replies);
    }

    /// What Converse answers once its script runs out.
    pub fn set_converse_fallback(&self, reply: Reply) {
        self.state.converse.lock().unwrap().fallback = reply;
    }

    /// Answers the next Retrieve calls with `replies`, in order.
    pub fn script_retrieve(&self, replies: Vec<Reply>) {
        self.state.retrieve.lock().unwrap().queue.extend(replies);
    }

    /// Converse requests so far.
    pub fn converse_requests(&self) -> Vec<Recorded> {
        self.state.converse_requests.lock().unwrap().clone()
    }

    /// Retrieve requests so far.
    pub fn retrieve_requests(&self) -> Vec<Recorded> {
        self.state.retrieve_requests.lock().unwrap().clone()
    }

    /// An SDK configuration with static test credentials and a region;
    /// the adapters' own `endpoint_url` points them here.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .load()
            .await
    }
}

/// Static test credentials in the environment, for the wiring that loads
/// the SDK configuration from the default chain (`deskhand serve`), so it
/// never looks further (profile files, instance metadata).
pub fn fake_aws_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the `Once` makes the writes happen once, before the
        // double starts; the readers are the AWS SDK and figment, which go
        // through `std::env`, whose lock serializes them with these writes.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "test");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        }
    });
}

async fn converse(
    State(state): State<Arc<DoubleState>>,
    Path(model_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    state.converse_requests.lock().unwrap().push(Recorded {
        id: model_id,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let reply = state.converse.lock().unwrap().next();
    render(reply).await
}

async fn retrieve(
    State(state): State<Arc<DoubleState>>,
    Path(kb_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    state.retrieve_requests.lock().unwrap().push(Recorded {
        id: kb_id,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let reply = state.retrieve.lock().unwrap().next();
    render(reply).await
}

async fn render(mut reply: Reply) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    loop {
        let (status, body, error_type) = match reply {
            Reply::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                reply = *inner;
                continue;
            }
            Reply::Fixture(name) => (200, fixture(name), None),
            Reply::Json(v) => (200, v, None),
            Reply::Error(status, code, name) => (status, fixture(name), Some(code)),
        };
        let mut res = (
            StatusCode::from_u16(status).unwrap(),
            [
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (
                    header::HeaderName::from_static("x-amzn-requestid"),
                    request_id,
                ),
            ],
            body.to_string(),
        )
            .into_response();
        if let Some(code) = error_type {
            // As Bedrock sends it: the shape name, then the namespace URL
            // that the SDK strips.
            res.headers_mut().insert(
                "x-amzn-errortype",
                format!("{code}:http://internal.amazon.com/coral/com.amazon.bedrock/")
                    .parse()
                    .unwrap(),
            );
        }
        return res;
    }
}
