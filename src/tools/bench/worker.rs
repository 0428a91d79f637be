//! `deskhand bench --worker`: the built worker Lambda binary, as deployed,
//! against moto server (DynamoDB) and a Bedrock double, both started here.
//!
//! The binary runs under a Runtime API emulator (one event per `next`, the
//! deadline 15 minutes out, as the longest Lambda). Its AWS endpoint is a
//! recording proxy in front of moto, and its Bedrock endpoints (Converse,
//! the Knowledge Base's Retrieve) a double answering with the fixtures of
//! `fixtures/bedrock/` after a configurable delay. Every call the worker
//! makes is recorded with its start and end, so a ticket's calls and its
//! *sequential steps* (runs of calls overlapping in time: calls made
//! concurrently count as one step) are counted, not assumed. CPU is the
//! worker process's own (the sum of its threads' `schedstat` run time), over
//! the warm tickets only.
//!
//! moto's `TransactWriteItems` copies the whole table per item written, so
//! the table is kept small: recreated (pk/sk only; the worker queries no
//! index) every [`RESET_EVERY`] tickets, between invocations. moto is
//! slower than DynamoDB by milliseconds a call: wall figures here are an
//! upper bound of the code's part; calls and steps are what carries over.
//!
//! The double here answers two fixtures and records calls; the tests'
//! double (`tests/common/bedrock_double.rs`) scripts faults. This one is
//! measurement equipment: never used by the product's code paths.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::ConversationId;

/// Tickets between two resets of moto's table.
pub const RESET_EVERY: usize = 10;

/// The question every ticket asks (the fixtures answer it).
const QUESTION: &str = "How do I turn on two-factor authentication?";

/// The question of the escalated tickets: the double answers it with the
/// fixture's answer at a confidence below the gate's, so the ticket is
/// escalated (`low_confidence`) with the answer as the agent's draft.
const ESCALATED_QUESTION: &str = "How do I turn on two-factor authentication on my old phone?";

/// What in a Converse request marks an escalated ticket's question.
const ESCALATED_MARK: &str = "my old phone";

/// How long the bench waits after a response for calls the worker makes
/// after answering (bookkeeping off the ticket's path).
const SETTLE: Duration = Duration::from_millis(40);

const CONVERSE: &str = include_str!("../../../fixtures/bedrock/converse_tool_use.json");
const RETRIEVE: &str = include_str!("../../../fixtures/bedrock/retrieve_s3_web.json");

/// What to run.
#[derive(Debug, Clone)]
pub struct WorkerPlan {
    /// Warm single-ticket invocations (after the first).
    pub tickets: usize,
    /// Batches of 10 records from 10 conversations.
    pub batches: usize,
    /// Warm tickets the model escalates (low confidence, with a draft).
    pub escalations: usize,
    /// Delay the double adds to each Converse call.
    pub model_latency: Duration,
    /// Delay the double adds to each Retrieve call.
    pub kb_latency: Duration,
    /// moto server to use; `None` starts one (`moto_server` from
    /// `.tools/venv/bin` or `PATH`).
    pub moto: Option<String>,
}

impl WorkerPlan {
    /// The real measurement: 500 warm tickets, 20 batches, no added latency.
    pub fn full() -> Self {
        Self {
            tickets: 500,
            batches: 20,
            escalations: 100,
            model_latency: Duration::ZERO,
            kb_latency: Duration::ZERO,
            moto: std::env::var("MOTO_ENDPOINT").ok(),
        }
    }

    /// A few tickets, so the scenario cannot rot (CI).
    pub fn tiny() -> Self {
        Self {
            tickets: 5,
            batches: 1,
            escalations: 2,
            ..Self::full()
        }
    }
}

/// One call the worker made.
#[derive(Debug, Clone)]
struct Call {
    op: String,
    start: Instant,
    end: Instant,
}

/// Sequential steps among `calls`: a new step starts when a call starts
/// after every earlier call has ended.
fn steps(calls: &[Call]) -> usize {
    let mut sorted: Vec<&Call> = calls.iter().collect();
    sorted.sort_by_key(|c| c.start);
    let mut steps = 0;
    let mut frontier: Option<Instant> = None;
    for c in sorted {
        match frontier {
            Some(f) if c.start < f => frontier = Some(f.max(c.end)),
            _ => {
                steps += 1;
                frontier = Some(c.end);
            }
        }
    }
    steps
}

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Call>>,
}

impl Recorder {
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().expect("recorder lock"))
    }
    fn push(&self, op: String, start: Instant) {
        self.calls.lock().expect("recorder lock").push(Call {
            op,
            start,
            end: Instant::now(),
        });
    }
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerRow {
    /// Delay added to each Converse call, ms.
    pub model_ms: u64,
    /// Delay added to each Retrieve call, ms.
    pub kb_ms: u64,
    /// exec → first `next`, ms.
    pub init_ms: f64,
    /// The first ticket after init: `next` served → response, ms.
    pub first_ticket_ms: f64,
    /// Warm tickets measured.
    pub warm_tickets: usize,
    /// Warm ticket wall, p50 and p95, ms.
    pub warm_p50_ms: f64,
    /// p95.
    pub warm_p95_ms: f64,
    /// Worker CPU per warm ticket (user + system), ms.
    pub cpu_per_ticket_ms: f64,
    /// Of which kernel time, ms (from the 10 ms clock-tick counters).
    pub kernel_per_ticket_ms: f64,
    /// AWS and Bedrock calls per answered ticket (mean over warm tickets).
    pub calls_per_ticket: f64,
    /// Sequential steps per answered ticket (the largest seen).
    pub steps_per_ticket: usize,
    /// The calls of one warm ticket, in order (operation names).
    pub call_sequence: Vec<String>,
    /// Mean duration of each operation over the warm tickets, ms (as the
    /// proxy and the double saw it: moto's or the double's own time).
    pub call_ms: std::collections::BTreeMap<String, f64>,
    /// Batches of 10 records from 10 conversations measured.
    pub batches: usize,
    /// Batch-of-10 wall, p50, ms.
    pub batch_p50_ms: f64,
    /// Batch wall over warm ticket wall (p50s).
    pub batch_ratio: f64,
    /// Tickets whose response named a failure (should be 0).
    pub failures: usize,
    /// The first ticket's calls: operation, start and end after the
    /// ticket was handed over, ms (what the first ticket pays that a warm
    /// one does not shows as gaps and longer calls).
    pub first_ticket_calls: Vec<String>,
    /// Escalated tickets measured (warm, one per invocation).
    pub escalated_tickets: usize,
    /// Escalated ticket wall, p50, ms.
    pub escalated_p50_ms: f64,
    /// AWS and Bedrock calls per escalated ticket (mean), including those
    /// made after the worker answered.
    pub escalated_calls_per_ticket: f64,
    /// Of which made after the worker answered (mean): bookkeeping off the
    /// ticket's path.
    pub escalated_calls_after_response: f64,
    /// Sequential steps per escalated ticket before the worker answered
    /// (the largest seen).
    pub escalated_steps_per_ticket: usize,
    /// The calls of one escalated ticket, in order (those after the
    /// response marked so).
    pub escalated_call_sequence: Vec<String>,
}

/// How to start moto: the repository's launcher (DynamoDB requests one at
/// a time, see `scripts/moto_server.py`) under the tools' Python, else
/// `moto_server` from `PATH`.
fn moto_command() -> Option<(PathBuf, Vec<String>)> {
    let python = PathBuf::from(".tools/venv/bin/python");
    let launcher = PathBuf::from("scripts/moto_server.py");
    if python.exists() && launcher.exists() {
        return Some((python, vec![launcher.display().to_string()]));
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("moto_server"))
            .find(|f| f.exists())
            .map(|f| (f, Vec::new()))
    })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Creates the bench's table on moto (pk/sk, TTL as in the template).
async fn create_table(sdk: &aws_config::SdkConfig, table: &str) -> anyhow::Result<()> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |n: &str, t| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "CreateTable on moto: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(&e)
            )
        })?;
    Ok(())
}

/// The proxy's handler: forward to moto, record the operation.
async fn forward(
    State((rec, client, moto)): State<(Arc<Recorder>, reqwest::Client, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let start = Instant::now();
    let op = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .map(str::to_owned)
        .or_else(|| {
            std::str::from_utf8(&body).ok().and_then(|b| {
                b.split('&')
                    .find_map(|kv| kv.strip_prefix("Action="))
                    .map(str::to_owned)
            })
        })
        .unwrap_or_else(|| format!("{method} {}", uri.path()));
    let url = format!("{moto}{}", uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut req = client.request(method, url).body(body);
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    let answer = match req.send().await {
        Ok(r) => {
            let status = r.status();
            let mut out = HeaderMap::new();
            for (k, v) in r.headers() {
                if k != "content-length" && k != "transfer-encoding" && k != "connection" {
                    out.insert(k.clone(), v.clone());
                }
            }
            let bytes = r.bytes().await.unwrap_or_default();
            (status, out, bytes).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    rec.push(op, start);
    answer
}

/// The Bedrock double's state.
struct Double {
    rec: Arc<Recorder>,
    model: Duration,
    kb: Duration,
    /// The Converse answer to [`ESCALATED_QUESTION`].
    unsure: String,
}

impl Double {
    /// The fixture's answer at confidence 0.2 (below the gate).
    fn unsure() -> anyhow::Result<String> {
        let mut v: Value = serde_json::from_str(CONVERSE)?;
        for block in v["output"]["message"]["content"]
            .as_array_mut()
            .context("the Converse fixture has no content")?
        {
            if let Some(input) = block.pointer_mut("/toolUse/input") {
                input["confidence"] = json!(0.2);
            }
        }
        Ok(v.to_string())
    }
}

async fn converse(State(d): State<Arc<Double>>, body: Bytes) -> Response {
    let start = Instant::now();
    tokio::time::sleep(d.model).await;
    d.rec.push("Converse".into(), start);
    let answer = if std::str::from_utf8(&body).is_ok_and(|b| b.contains(ESCALATED_MARK)) {
        d.unsure.clone()
    } else {
        CONVERSE.to_owned()
    };
    ([("content-type", "application/json")], answer).into_response()
}

async fn retrieve(State(d): State<Arc<Double>>) -> Response {
    let start = Instant::now();
    tokio::time::sleep(d.kb).await;
    d.rec.push("Retrieve".into(), start);
    ([("content-type", "application/json")], RETRIEVE).into_response()
}

async fn serve(app: axum::Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

/// The Runtime API: events are handed out one per `next`, in order;
/// responses come back on a channel.
struct Runtime {
    events: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Value>>,
    served: Mutex<VecDeque<Instant>>,
    first_next: Mutex<Option<Instant>>,
    responses: tokio::sync::mpsc::Sender<(Instant, String)>,
    counter: std::sync::atomic::AtomicU64,
}

const RUNTIME: &str = "/2018-06-01/runtime";

async fn next(State(r): State<Arc<Runtime>>) -> Response {
    r.first_next
        .lock()
        .expect("runtime lock")
        .get_or_insert_with(Instant::now);
    let Some(event) = r.events.lock().await.recv().await else {
        std::future::pending::<()>().await;
        unreachable!()
    };
    r.served
        .lock()
        .expect("runtime lock")
        .push_back(Instant::now());
    let n = r.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let deadline = chrono::Utc::now().timestamp_millis() + 900_000;
    (
        [
            ("lambda-runtime-aws-request-id", format!("bench-{n}")),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:deskhand-bench".to_owned(),
            ),
            ("content-type", "application/json".to_owned()),
        ],
        event.to_string(),
    )
        .into_response()
}

async fn respond(State(r): State<Arc<Runtime>>, body: String) -> StatusCode {
    let _ = r.responses.send((Instant::now(), body)).await;
    StatusCode::ACCEPTED
}

/// An SQS record of a new ticket in a new conversation.
fn record(n: usize) -> anyhow::Result<Value> {
    record_asking(n, QUESTION)
}

/// An SQS record of a new ticket asking `question` in a new conversation.
fn record_asking(n: usize, question: &str) -> anyhow::Result<Value> {
    let conv = ConversationId::random();
    let ticket = super::ticket(conv, question)?;
    let (body, _) = crate::queue::encode(&ticket, 256 * 1024)?;
    Ok(json!({
        "messageId": format!("m-{n}-{}", ticket.ticket_id),
        "receiptHandle": format!("rh-{n}"),
        "body": body,
        "md5OfBody": "",
        "attributes": {
            "ApproximateReceiveCount": "1",
            "MessageGroupId": conv.to_string(),
            "MessageDeduplicationId": ticket.ticket_id.to_string(),
            "SentTimestamp": "1795780800000",
        },
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:deskhand-bench.fifo",
        "awsRegion": "us-east-1",
    }))
}

/// CPU time of every thread of `pid`, and the kernel part (ticks).
fn cpu_of(pid: u32) -> (Duration, Duration) {
    let mut run = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                run += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    // Field 15 of stat (after the command in parentheses): stime, in ticks.
    let stime = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_owned();
            rest.split_whitespace().nth(12)?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    (
        Duration::from_nanos(run),
        Duration::from_nanos(stime * 1_000_000_000 / hz),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the scenario with the worker binary beside this executable.
pub async fn run(plan: &WorkerPlan, kb: &Path) -> anyhow::Result<WorkerRow> {
    let binary = std::env::current_exe()?
        .parent()
        .context("the executable has no folder")?
        .join("deskhand-worker");
    anyhow::ensure!(
        binary.exists(),
        "{} is not built (cargo build --bins, with the same profile)",
        binary.display()
    );
    // moto.
    let mut moto_child = None;
    let moto = match &plan.moto {
        Some(url) => url.clone(),
        None => {
            let (bin, pre) = moto_command()
                .context("moto server not found (.tools/venv or PATH); or set MOTO_ENDPOINT")?;
            let port = free_port()?;
            let child = tokio::process::Command::new(bin)
                .args(pre)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("starting moto_server")?;
            moto_child = Some(child);
            format!("http://127.0.0.1:{port}")
        }
    };
    let http = reqwest::Client::new();
    let up = Instant::now();
    while http.get(format!("{moto}/moto-api/")).send().await.is_err() {
        anyhow::ensure!(
            up.elapsed() < Duration::from_secs(30),
            "moto at {moto} did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The bench's own client (the table), with moto's fake credentials.
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&moto)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "bench", "bench", None, None, "bench",
        ))
        .load()
        .await;
    let table = format!(
        "deskhand-bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    create_table(&sdk, &table).await?;

    // The recording proxy and the Bedrock double.
    let rec = Arc::new(Recorder::default());
    let proxy = serve(axum::Router::new().fallback(forward).with_state((
        rec.clone(),
        http.clone(),
        moto.clone(),
    )))
    .await?;
    let double = Arc::new(Double {
        rec: rec.clone(),
        model: plan.model_latency,
        kb: plan.kb_latency,
        unsure: Double::unsure()?,
    });
    let bedrock = serve(
        axum::Router::new()
            .route("/model/{id}/converse", axum::routing::post(converse))
            .route(
                "/knowledgebases/{id}/retrieve",
                axum::routing::post(retrieve),
            )
            .with_state(double),
    )
    .await?;

    // The Runtime API.
    let (event_tx, event_rx) = tokio::sync::mpsc::channel::<Value>(4);
    let (resp_tx, mut resp_rx) = tokio::sync::mpsc::channel(4);
    let runtime = Arc::new(Runtime {
        events: tokio::sync::Mutex::new(event_rx),
        served: Mutex::new(VecDeque::new()),
        first_next: Mutex::new(None),
        responses: resp_tx,
        counter: Default::default(),
    });
    let api = serve(
        axum::Router::new()
            .route(
                &format!("{RUNTIME}/invocation/next"),
                axum::routing::get(next),
            )
            .route(
                &format!("{RUNTIME}/invocation/{{id}}/response"),
                axum::routing::post(respond),
            )
            .route(
                &format!("{RUNTIME}/invocation/{{id}}/error"),
                axum::routing::post(respond),
            )
            .route(
                &format!("{RUNTIME}/init/error"),
                axum::routing::post(respond),
            )
            .with_state(runtime.clone()),
    )
    .await?;
    let api_host = api.trim_start_matches("http://").to_owned();

    let cwd = super::tempfile_dir("worker")?;
    let mut env = super::lambda_env("deskhand-worker", 1024, &api_host, kb);
    for (k, v) in [
        ("DESKHAND_AWS__ENDPOINT_URL", proxy.as_str()),
        ("DESKHAND_AWS__TABLE", table.as_str()),
        (
            "DESKHAND_GENERATOR__BEDROCK__ENDPOINT_URL",
            bedrock.as_str(),
        ),
        ("DESKHAND_RETRIEVER__KIND", "bedrock_kb"),
        (
            "DESKHAND_RETRIEVER__BEDROCK_KB__KNOWLEDGE_BASE_ID",
            "KBBENCH123",
        ),
        (
            "DESKHAND_RETRIEVER__BEDROCK_KB__ENDPOINT_URL",
            bedrock.as_str(),
        ),
    ] {
        env.retain(|(name, _)| name != k);
        env.push((k.to_owned(), v.to_owned()));
    }
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&binary)
        .env_clear()
        .envs(env)
        .current_dir(&cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id().unwrap_or(0);

    let mut failures = 0;
    // One invocation: (handed over, wall, calls).
    let mut invoke = async |event: Value| -> anyhow::Result<(Instant, Duration, Vec<Call>)> {
        rec.take();
        event_tx.send(event).await?;
        let (answered, body) = tokio::time::timeout(Duration::from_secs(120), resp_rx.recv())
            .await
            .context("the worker answered no event within 120 s")?
            .context("runtime API closed")?;
        let served = runtime
            .served
            .lock()
            .expect("runtime lock")
            .pop_front()
            .unwrap_or(answered);
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        match v["batchItemFailures"].as_array() {
            Some(f) => failures += f.len(),
            None => anyhow::bail!("the worker answered something unexpected: {body}"),
        }
        Ok((served, answered - served, rec.take()))
    };
    let mut n = 0;
    let (served, first, mut first_calls) = invoke(json!({"Records": [record(n)?]})).await?;
    first_calls.sort_by_key(|c| c.start);
    let first_ticket_calls = first_calls
        .iter()
        .map(|c| {
            format!(
                "{} {:.1}–{:.1}",
                c.op,
                ms(c.start.saturating_duration_since(served)),
                ms(c.end.saturating_duration_since(served))
            )
        })
        .collect();
    let init = runtime
        .first_next
        .lock()
        .expect("runtime lock")
        .map_or(Duration::ZERO, |t| t - started);

    let mut walls = Vec::new();
    let mut calls_total = 0;
    let mut max_steps = 0;
    let mut sequence = Vec::new();
    let mut per_op: std::collections::BTreeMap<String, (usize, Duration)> = Default::default();
    let mut cpu = Duration::ZERO;
    let mut kernel = Duration::ZERO;
    for i in 0..plan.tickets {
        if (i + 1) % RESET_EVERY == 0 {
            http.post(format!("{moto}/moto-api/reset")).send().await?;
            create_table(&sdk, &table).await?;
        }
        n += 1;
        let event = json!({"Records": [record(n)?]});
        let (c0, k0) = cpu_of(pid);
        let (_, wall, calls) = invoke(event).await?;
        let (c1, k1) = cpu_of(pid);
        cpu += c1.saturating_sub(c0);
        kernel += k1.saturating_sub(k0);
        walls.push(wall);
        calls_total += calls.len();
        max_steps = max_steps.max(steps(&calls));
        for c in &calls {
            let e = per_op
                .entry(c.op.clone())
                .or_insert((0usize, Duration::ZERO));
            e.0 += 1;
            e.1 += c.end - c.start;
        }
        if sequence.is_empty() {
            let mut sorted = calls;
            sorted.sort_by_key(|c| c.start);
            sequence = sorted.into_iter().map(|c| c.op).collect();
        }
    }
    // Escalated tickets: the topic is created after each reset.
    let sns = aws_sdk_sns::Client::new(&sdk);
    let mut escalated_walls = Vec::new();
    let (mut escalated_calls, mut escalated_late, mut escalated_steps) = (0, 0, 0);
    let mut escalated_sequence = Vec::new();
    for i in 0..plan.escalations {
        if i % RESET_EVERY == 0 {
            http.post(format!("{moto}/moto-api/reset")).send().await?;
            create_table(&sdk, &table).await?;
            sns.create_topic()
                .name("deskhand-bench")
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "CreateTopic on moto: {}",
                        aws_sdk_sns::error::DisplayErrorContext(&e)
                    )
                })?;
        }
        n += 1;
        let event = json!({"Records": [record_asking(n, ESCALATED_QUESTION)?]});
        let (served, wall, mut calls) = invoke(event).await?;
        let answered = served + wall;
        tokio::time::sleep(SETTLE).await;
        let late = rec.take();
        escalated_walls.push(wall);
        escalated_calls += calls.len() + late.len();
        escalated_late += late.len();
        escalated_steps = usize::max(escalated_steps, steps(&calls));
        if escalated_sequence.is_empty() {
            calls.sort_by_key(|c| c.start);
            escalated_sequence = calls.iter().map(|c| c.op.clone()).collect();
            escalated_sequence.extend(late.iter().map(|c| {
                format!(
                    "{} (+{:.1} ms after the response)",
                    c.op,
                    ms(c.start.saturating_duration_since(answered))
                )
            }));
        }
    }
    let mut batch_walls = Vec::new();
    for _ in 0..plan.batches {
        http.post(format!("{moto}/moto-api/reset")).send().await?;
        create_table(&sdk, &table).await?;
        let records = (0..10)
            .map(|_| {
                n += 1;
                record(n)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (_, wall, _) = invoke(json!({"Records": records})).await?;
        batch_walls.push(wall);
    }
    let _ = child.kill().await;
    if let Some(mut m) = moto_child {
        let _ = m.kill().await;
    }
    let warm = super::Latency::of(&mut walls);
    let batch = super::Latency::of(&mut batch_walls);
    let escalated = super::Latency::of(&mut escalated_walls);
    let per_escalated = |k: usize| k as f64 / plan.escalations.max(1) as f64;
    let per = |d: Duration| ms(d) / plan.tickets.max(1) as f64;
    Ok(WorkerRow {
        model_ms: plan.model_latency.as_millis() as u64,
        kb_ms: plan.kb_latency.as_millis() as u64,
        init_ms: ms(init),
        first_ticket_ms: ms(first),
        warm_tickets: plan.tickets,
        warm_p50_ms: warm.p50_ms,
        warm_p95_ms: warm.p95_ms,
        cpu_per_ticket_ms: per(cpu),
        kernel_per_ticket_ms: per(kernel),
        calls_per_ticket: calls_total as f64 / plan.tickets.max(1) as f64,
        steps_per_ticket: max_steps,
        call_sequence: sequence,
        call_ms: per_op
            .into_iter()
            .map(|(op, (n, d))| (op, ms(d) / n.max(1) as f64))
            .collect(),
        batches: plan.batches,
        batch_p50_ms: batch.p50_ms,
        batch_ratio: if warm.p50_ms > 0.0 {
            batch.p50_ms / warm.p50_ms
        } else {
            0.0
        },
        failures,
        first_ticket_calls,
        escalated_tickets: plan.escalations,
        escalated_p50_ms: escalated.p50_ms,
        escalated_calls_per_ticket: per_escalated(escalated_calls),
        escalated_calls_after_response: per_escalated(escalated_late),
        escalated_steps_per_ticket: escalated_steps,
        escalated_call_sequence: escalated_sequence,
    })
}

/// The scenario as a table.
pub fn render(r: &WorkerRow) -> String {
    let verdict = super::verdict;
    format!(
        "\nWorker Lambda against moto + Bedrock double (model {} ms, KB {} ms added)\n\
         | figure | value | target |\n|---|---|---|\n\
         | init (exec → first next) | {:.1} ms | ≤ 21 ms {} |\n\
         | first ticket after init | {:.1} ms | ≤ 25 ms + added latency {} |\n\
         | warm ticket wall p50 / p95 ({} tickets) | {:.1} / {:.1} ms | |\n\
         | CPU per warm ticket (kernel) | {:.2} ms ({:.2}) | ≤ 2.5 ms {} |\n\
         | calls per answered ticket | {:.2} | ≤ 5 {} |\n\
         | sequential steps per answered ticket | {} | ≤ 3 {} |\n\
         | batch of 10 (10 conversations) wall p50 ({} batches) | {:.1} ms = {:.2}× a ticket | ≤ 2× {} |\n\
         | failed records | {} | 0 |\n\
         | escalated ticket wall p50 ({} tickets) | {:.1} ms | |\n\
         | calls per escalated ticket (after the response) | {:.2} ({:.2}) | |\n\
         | sequential steps per escalated ticket, until the response | {} | ≤ 3 {} |\n\
         calls of a ticket, in order: {}\n\
         calls of an escalated ticket, in order: {}\n\
         the first ticket's calls (ms after it was handed over): {}\n\
         mean time per call: {}\n",
        r.model_ms,
        r.kb_ms,
        r.init_ms,
        verdict(r.init_ms <= 21.0),
        r.first_ticket_ms,
        verdict(r.first_ticket_ms <= 25.0 + (r.model_ms + r.kb_ms) as f64),
        r.warm_tickets,
        r.warm_p50_ms,
        r.warm_p95_ms,
        r.cpu_per_ticket_ms,
        r.kernel_per_ticket_ms,
        verdict(r.cpu_per_ticket_ms <= 2.5),
        r.calls_per_ticket,
        verdict(r.calls_per_ticket <= 5.0),
        r.steps_per_ticket,
        verdict(r.steps_per_ticket <= 3),
        r.batches,
        r.batch_p50_ms,
        r.batch_ratio,
        verdict(r.batch_ratio <= 2.0),
        r.failures,
        r.escalated_tickets,
        r.escalated_p50_ms,
        r.escalated_calls_per_ticket,
        r.escalated_calls_after_response,
        r.escalated_steps_per_ticket,
        verdict(r.escalated_steps_per_ticket <= 3),
        r.call_sequence.join(" → "),
        r.escalated_call_sequence.join(" → "),
        r.first_ticket_calls.join(", "),
        r.call_ms
            .iter()
            .map(|(op, ms)| format!("{op} {ms:.1} ms"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_calls_are_one_step() {
        let t = Instant::now();
        let at = |a: u64, b: u64, op: &str| Call {
            op: op.into(),
            start: t + Duration::from_millis(a),
            end: t + Duration::from_millis(b),
        };
        // [begin ‖ history ‖ retrieve] → model → complete
        let calls = vec![
            at(0, 10, "TransactWriteItems"),
            at(1, 8, "Query"),
            at(1, 12, "Retrieve"),
            at(13, 20, "Converse"),
            at(21, 30, "TransactWriteItems"),
        ];
        assert_eq!(steps(&calls), 3);
        assert_eq!(steps(&calls[..1]), 1);
        assert_eq!(steps(&[]), 0);
        // Back to back, each after the last ended.
        assert_eq!(steps(&[at(0, 5, "a"), at(5, 6, "b"), at(7, 9, "c")]), 3);
    }
}
