//! The worker's cold start with a prebuilt index (issue #17): from the
//! layer (the KB folder shipping `.deskhand-index.bundle`) and from S3 (the
//! `current` pointer and the bundle it names, served by a small S3
//! `GetObject` endpoint on 127.0.0.1, path-style, as moto or S3 answer it).
//!
//! Each run must really open the prebuilt index: the S3 runs are given a KB
//! folder with no documents, so a fallback to the layer fails the run, and
//! the endpoint counts the bundle downloads.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;

use super::{ColdStartRow, Latency, cold_start, empty_sqs_event, tempfile_dir, verdict};
use crate::knowledge::bundle;

const BUCKET: &str = "deskhand-bench-kb";

/// Issue 17's target for the worker's cold start over a prebuilt index, ms.
pub const PREBUILT_COLD_START_MS: f64 = 20.0;

struct Objects {
    by_key: HashMap<String, Vec<u8>>,
    bundle_gets: AtomicUsize,
}

/// Serves `objects` as S3 `GetObject` answers (path-style
/// `/{bucket}/{key}`); anything else is S3's `NoSuchKey`.
async fn s3_endpoint(
    objects: Arc<Objects>,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    use axum::extract::{Request, State};
    use axum::http::{StatusCode, header};
    use axum::response::{IntoResponse, Response};
    async fn get(State(o): State<Arc<Objects>>, req: Request) -> Response {
        let path = req.uri().path().trim_start_matches('/');
        let key = path
            .strip_prefix(BUCKET)
            .unwrap_or("")
            .trim_start_matches('/');
        match o.by_key.get(key) {
            Some(bytes) => {
                if key.ends_with(".bundle") {
                    o.bundle_gets.fetch_add(1, Ordering::Relaxed);
                }
                (
                    [
                        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                        (header::ETAG, "\"bench\"".to_owned()),
                        (header::LAST_MODIFIED, "Wed, 02 Dec 2026 06:00:00 GMT".to_owned()),
                    ],
                    bytes.clone(),
                )
                    .into_response()
            }
            None => (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "application/xml")],
                format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>{key}</Key></Error>"),
            )
                .into_response(),
        }
    }
    let app = axum::Router::new().fallback(get).with_state(objects);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, task))
}

/// Cold starts of the built worker over a prebuilt index of `kb`, `runs`
/// each: from the layer, and from S3.
pub async fn kb_cold_starts(kb: &Path, runs: usize) -> anyhow::Result<Vec<ColdStartRow>> {
    let dir = std::env::current_exe()?
        .parent()
        .context("the executable has no folder")?
        .to_owned();
    let binary = dir.join("deskhand-worker");
    let size_bytes = std::fs::metadata(&binary).map_or(0, |m| m.len());
    if size_bytes == 0 {
        return Ok(Vec::new());
    }
    let cwd = tempfile_dir("kb-lambda")?;
    // The layer: a copy of the KB with its bundle beside the Markdown.
    let layer = cwd.join("layer");
    for (id, path) in crate::knowledge::tantivy::kb_files(kb)? {
        let to = layer.join(&id);
        std::fs::create_dir_all(to.parent().unwrap_or(&layer))?;
        std::fs::copy(&path, &to)?;
    }
    let built = bundle::write_layer(&layer, &mut |_, _| {})?;
    // S3: the same bundle under a version, and the pointer.
    let version = built.version();
    let key = format!("kb/bundles/{version}.bundle");
    let pointer = bundle::Pointer {
        format: bundle::FORMAT,
        version,
        key: key.clone(),
        sha256: built.sha256.clone(),
        size: built.bytes.len() as u64,
        created_at: built.manifest.created_at.clone(),
        documents: built.manifest.documents,
        passages: built.manifest.passages,
    };
    let objects = Arc::new(Objects {
        by_key: HashMap::from([
            ("kb/current".to_owned(), serde_json::to_vec(&pointer)?),
            (key, built.bytes.clone()),
        ]),
        bundle_gets: AtomicUsize::new(0),
    });
    let (endpoint, server) = s3_endpoint(objects.clone()).await?;
    let no_documents = cwd.join("empty");
    std::fs::create_dir_all(&no_documents)?;
    let s3_url = format!("s3://{BUCKET}/kb");
    let s3_env: Vec<(&str, &str)> = vec![
        ("DESKHAND_RETRIEVER__BUNDLE__S3", s3_url.as_str()),
        ("DESKHAND_AWS__ENDPOINT_URL", endpoint.as_str()),
    ];
    let mut rows = Vec::new();
    for (variant, kb_dir, extra) in [
        ("prebuilt, layer", layer.as_path(), &[][..]),
        ("prebuilt, S3", no_documents.as_path(), &s3_env[..]),
    ] {
        let (mut inits, mut colds, mut peak) = (Vec::new(), Vec::new(), 0u64);
        for _ in 0..runs.max(1) {
            let (init, cold, rss) = cold_start(
                &binary,
                "deskhand-worker",
                512,
                empty_sqs_event(),
                extra,
                kb_dir,
                &cwd,
            )
            .await
            .with_context(|| format!("worker, {variant}"))?;
            inits.push(init);
            colds.push(cold);
            peak = peak.max(rss);
        }
        let init = Latency::of(&mut inits);
        let cold = Latency::of(&mut colds);
        rows.push(ColdStartRow {
            binary: "deskhand-worker".into(),
            variant,
            event: "SQS batch, no records",
            size_bytes,
            runs: colds.len(),
            init_ms: init.p50_ms,
            cold_start_ms: cold.p50_ms,
            cold_start_min_ms: colds.first().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            cold_start_max_ms: cold.max_ms,
            peak_rss_mib: peak as f64 / 1024.0,
            skipped: None,
        });
    }
    server.abort();
    let gets = objects.bundle_gets.load(Ordering::Relaxed);
    anyhow::ensure!(
        gets == runs.max(1),
        "the S3 runs downloaded the bundle {gets} times for {} cold starts",
        runs.max(1)
    );
    let _ = std::fs::remove_dir_all(&cwd);
    Ok(rows)
}

/// The verdict lines of the prebuilt-index rows of `rows`.
pub fn render(rows: &[ColdStartRow]) -> String {
    rows.iter()
        .filter(|l| l.variant.starts_with("prebuilt") && l.skipped.is_none())
        .map(|l| {
            format!(
                "  worker cold start, {} {:.1} ms   target ≤ {} ms: {}\n",
                l.variant,
                l.cold_start_ms,
                PREBUILT_COLD_START_MS,
                verdict(l.cold_start_ms <= PREBUILT_COLD_START_MS)
            )
        })
        .collect()
}
