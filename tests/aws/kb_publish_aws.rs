//! The published knowledge base on moto S3 (issue #17): `deskhand kb
//! publish --s3` uploads a bundle and the `current` pointer; a worker opens
//! it at cold start (through `AwsRuntime`, as the Lambda does), a warm one
//! picks up a second publish at its next pointer check and refuses a
//! corrupt bundle, keeping the one it has.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::moto::Moto;
use deskhand::config::Config;
use deskhand::knowledge::Retriever;
use deskhand::knowledge::bundle::{self, BundleSettings, LiveIndex, Pointer, Refresh, S3Location};

fn kb(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

const REFUNDS: (&str, &str) = (
    "refunds.md",
    "# Refunds\n\nAnnual plans are refunded within 14 days of purchase.",
);
const SHIPPING: (&str, &str) = (
    "shipping.md",
    "# Shipping\n\nParcels to Canada arrive within five working days.",
);

async fn bucket(moto: &Moto) -> (aws_sdk_s3::Client, S3Location, String) {
    let client = bundle::s3_client(&moto.sdk, true);
    let name = format!("{}-kb", moto.prefix);
    client.create_bucket().bucket(&name).send().await.unwrap();
    let url = format!("s3://{name}/help");
    (client, S3Location::parse(&url).unwrap(), url)
}

fn settings(url: &str, check_secs: u64) -> BundleSettings {
    BundleSettings {
        s3: url.to_owned(),
        check_secs,
    }
}

async fn top_doc(r: &dyn Retriever, q: &str) -> Option<String> {
    r.retrieve(q, 1)
        .await
        .unwrap()
        .first()
        .map(|p| p.doc_id.clone())
}

/// `deskhand kb publish DIR --s3 URL` against moto; the pointer it printed.
fn publish_with_the_cli(moto: &Moto, dir: &Path, url: &str) -> Pointer {
    let out = Command::new(env!("CARGO_BIN_EXE_deskhand"))
        .args(["kb", "publish"])
        .arg(dir)
        .args(["--s3", url])
        .env("DESKHAND_AWS__ENDPOINT_URL", &moto.endpoint)
        .env("DESKHAND_AWS__REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kb publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    serde_json::from_value(printed["published"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_publish_is_picked_up_by_a_warm_worker() {
    let moto = Moto::connect().await;
    let (client, at, url) = bucket(&moto).await;
    let first = kb(&[REFUNDS]);
    let p1 = publish_with_the_cli(&moto, first.path(), &url);
    assert_eq!((p1.documents, p1.passages), (1, 1));
    assert!(p1.key.starts_with("help/bundles/"), "{}", p1.key);

    // Cold start as the Lambda does it: the configuration names the bundle.
    let mut config = Config {
        kb_dir: first.path().join("no-layer"),
        ..Config::default()
    };
    config.aws = moto.aws_settings("t", "q", "d", "arn:aws:sns:us-east-1:123456789012:t");
    config.retriever.bundle = Some(settings(&url, 1));
    let runtime = deskhand::lambda::AwsRuntime::from_config(config)
        .await
        .unwrap();
    let live = runtime.kb.clone().expect("the published KB is opened");
    assert_eq!(live.version(), Some(p1.version.clone()));
    let worker = runtime.retriever().unwrap();
    assert_eq!(
        top_doc(&*worker, "refund annual plan").await.as_deref(),
        Some("refunds.md")
    );
    assert_eq!(top_doc(&*worker, "parcels canada").await, None);
    // A second warm worker that checks only once an hour.
    let hourly = LiveIndex::start(client.clone(), &settings(&url, 3600), false, || {
        anyhow::bail!("no layer")
    })
    .await
    .unwrap();

    let second = kb(&[REFUNDS, SHIPPING]);
    let p2 = publish_with_the_cli(&moto, second.path(), &url);
    assert_ne!(p1.version, p2.version);
    assert_eq!(
        bundle::current(&client, &at).await.unwrap(),
        Some(p2.clone())
    );
    // Past its check interval, the warm worker's next retrieval swaps.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        top_doc(&*worker, "parcels canada").await.as_deref(),
        Some("shipping.md")
    );
    assert_eq!(live.version(), Some(p2.version.clone()));
    assert_eq!(live.refresh().await.unwrap(), Refresh::Unchanged);
    // The hourly one has not read the pointer again.
    assert_eq!(top_doc(&hourly, "parcels canada").await, None);
    assert_eq!(hourly.version(), Some(p1.version.clone()));
    assert_eq!(
        hourly.refresh().await.unwrap(),
        Refresh::Swapped(p2.version.clone())
    );
    assert_eq!(
        top_doc(&hourly, "parcels canada").await.as_deref(),
        Some("shipping.md")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_bundle_is_refused_and_the_previous_one_kept() {
    let moto = Moto::connect().await;
    let (client, at, url) = bucket(&moto).await;
    let first = kb(&[REFUNDS]);
    let b1 = bundle::build(first.path(), &mut |_, _| {}).unwrap();
    let p1 = bundle::publish(&client, &at, &b1).await.unwrap();
    let live = Arc::new(
        LiveIndex::start(client.clone(), &settings(&url, 3600), false, || {
            anyhow::bail!("no layer")
        })
        .await
        .unwrap(),
    );
    assert_eq!(live.version(), Some(p1.version.clone()));

    let second = kb(&[REFUNDS, SHIPPING]);
    let b2 = bundle::build(second.path(), &mut |_, _| {}).unwrap();
    let put = |key: String, bytes: Vec<u8>| {
        let client = client.clone();
        let bucket = at.bucket.clone();
        async move {
            client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(bytes.into())
                .send()
                .await
                .unwrap();
        }
    };
    // 1. The object was changed after the pointer was written: a byte flipped.
    let mut flipped = b2.bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    let bad = Pointer {
        version: "bad-1".into(),
        key: "help/bundles/bad-1.bundle".into(),
        ..p1.clone()
    };
    let bad = Pointer {
        sha256: b2.sha256.clone(),
        size: b2.bytes.len() as u64,
        ..bad
    };
    put(bad.key.clone(), flipped).await;
    bundle::put_pointer(&client, &at, &bad).await.unwrap();
    assert_eq!(
        live.refresh().await.unwrap(),
        Refresh::Refused("bad-1".into())
    );
    // 2. Consistent checksum, but not a bundle (a truncated upload published
    //    by hand).
    let truncated = b2.bytes[..b2.bytes.len() - 100].to_vec();
    let bad2 = Pointer {
        version: "bad-2".into(),
        key: "help/bundles/bad-2.bundle".into(),
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&truncated)),
        size: truncated.len() as u64,
        ..p1.clone()
    };
    put(bad2.key.clone(), truncated).await;
    bundle::put_pointer(&client, &at, &bad2).await.unwrap();
    assert_eq!(
        live.refresh().await.unwrap(),
        Refresh::Refused("bad-2".into())
    );
    // A refused version is not downloaded again.
    assert_eq!(live.refresh().await.unwrap(), Refresh::Unchanged);
    // The previous index answers throughout.
    assert_eq!(live.version(), Some(p1.version.clone()));
    assert_eq!(
        top_doc(&*live, "refund annual plan").await.as_deref(),
        Some("refunds.md")
    );
    assert_eq!(top_doc(&*live, "parcels canada").await, None);

    // A cold start while the pointer names the corrupt bundle uses the layer.
    let layer = kb(&[SHIPPING]);
    let cold = LiveIndex::start(client.clone(), &settings(&url, 3600), false, || {
        bundle::layer_index(layer.path())
    })
    .await
    .unwrap();
    assert_eq!(cold.version(), None);
    assert_eq!(
        top_doc(&cold, "parcels canada").await.as_deref(),
        Some("shipping.md")
    );
    // Neither corrupt nor layer: the cold start fails with both reasons.
    let err = LiveIndex::start(client.clone(), &settings(&url, 3600), false, || {
        anyhow::bail!("no layer here")
    })
    .await
    .err()
    .unwrap();
    let err = format!("{err:#}");
    assert!(
        err.contains("corrupt bundle") && err.contains("no layer here"),
        "{err}"
    );

    // A good publish after the bad ones is taken.
    let p2 = bundle::publish(&client, &at, &b2).await.unwrap();
    assert_eq!(live.refresh().await.unwrap(), Refresh::Swapped(p2.version));
    assert_eq!(
        top_doc(&*live, "parcels canada").await.as_deref(),
        Some("shipping.md")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_nothing_published_the_worker_answers_from_the_layer() {
    let moto = Moto::connect().await;
    let (client, at, url) = bucket(&moto).await;
    assert_eq!(bundle::current(&client, &at).await.unwrap(), None);
    let layer = kb(&[REFUNDS]);
    // The layer ships a prebuilt index: it is opened, not rebuilt.
    bundle::write_layer(layer.path(), &mut |_, _| {}).unwrap();
    let live = LiveIndex::start(client.clone(), &settings(&url, 3600), false, || {
        bundle::layer_index(layer.path())
    })
    .await
    .unwrap();
    assert_eq!(live.version(), None);
    assert_eq!(live.refresh().await.unwrap(), Refresh::NotPublished);
    assert_eq!(
        top_doc(&live, "refund annual plan").await.as_deref(),
        Some("refunds.md")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bundle_that_could_not_be_downloaded_is_tried_again() {
    let moto = Moto::connect().await;
    let (client, at, url) = bucket(&moto).await;
    let published = kb(&[SHIPPING]);
    let b = bundle::build(published.path(), &mut |_, _| {}).unwrap();
    // The pointer is there, the bundle not yet (an upload by another tool,
    // in the wrong order): a download failure, not a bad bundle.
    let pointer = Pointer {
        format: bundle::FORMAT,
        version: b.version(),
        key: format!("help/bundles/{}.bundle", b.version()),
        sha256: b.sha256.clone(),
        size: b.bytes.len() as u64,
        created_at: b.manifest.created_at.clone(),
        documents: 1,
        passages: 1,
    };
    bundle::put_pointer(&client, &at, &pointer).await.unwrap();
    let layer = kb(&[REFUNDS]);
    let live = LiveIndex::start(client.clone(), &settings(&url, 3600), false, || {
        bundle::layer_index(layer.path())
    })
    .await
    .unwrap();
    assert_eq!(live.version(), None, "the layer answers meanwhile");
    assert!(live.refresh().await.is_err(), "still missing");
    client
        .put_object()
        .bucket(&at.bucket)
        .key(&pointer.key)
        .body(b.bytes.clone().into())
        .send()
        .await
        .unwrap();
    assert_eq!(
        live.refresh().await.unwrap(),
        Refresh::Swapped(pointer.version.clone())
    );
    assert_eq!(
        top_doc(&live, "parcels canada").await.as_deref(),
        Some("shipping.md")
    );
}
