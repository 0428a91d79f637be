//! The fault-injection soak, small: local runtime and the AWS adapters on
//! moto. (`deskhand soak --tickets N` runs a large one.)

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::moto::Moto;
use common::root;
use deskhand::config::Config;
use deskhand::knowledge::tantivy::load_documents;
use deskhand::knowledge::{Retriever, TantivyIndex};
use deskhand::secret::Secret;
use deskhand::tools::soak::{self, FaultRates};

fn retriever() -> Arc<dyn Retriever> {
    Arc::new(
        TantivyIndex::in_memory(
            &load_documents(&root().join("fixtures/kb"), &mut |_, _| {}).unwrap(),
        )
        .unwrap(),
    )
}

/// The AWS adapters over fresh moto resources made from the template.
async fn aws_runtime() -> deskhand::lambda::AwsRuntime {
    let moto = Moto::connect().await;
    let table = moto.table().await;
    let (queue, dlq) = moto.queues().await;
    let (topic, _) = moto.topic_with_subscriber(None).await;
    let config = Config {
        secret: Some(Secret::new("soak-secret-0123456789abcdef")),
        aws: moto.aws_settings(&table, &queue, &dlq, &topic),
        ..Config::default()
    };
    deskhand::lambda::AwsRuntime::from_config(config)
        .await
        .unwrap()
}

#[tokio::test]
async fn local_soak_loses_and_duplicates_nothing() {
    let report = soak::local(
        retriever(),
        150,
        7,
        FaultRates::default(),
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    println!("{}", report.render());
    assert!(report.ok(), "{}", report.render());
    // The faults really happened.
    for kind in [
        "model throttled",
        "worker killed before reply",
        "store write failed",
        "duplicate delivery",
        "escalation publish failed",
    ] {
        assert!(
            report.faults.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} injected: {}",
            report.render()
        );
    }
    assert!(report.outcomes.get("answered").copied().unwrap_or(0) > 0);
    assert!(report.outcomes.get("escalated").copied().unwrap_or(0) > 0);
}

#[tokio::test]
async fn aws_soak_on_moto_loses_and_duplicates_nothing() {
    let runtime = aws_runtime().await;
    let report = soak::aws(
        &runtime,
        retriever(),
        25,
        11,
        FaultRates::default(),
        Duration::from_secs(240),
    )
    .await
    .unwrap();
    println!("{}", report.render());
    assert!(report.ok(), "{}", report.render());
    assert!(report.faults.values().sum::<u64>() > 0);
}

#[tokio::test]
async fn a_harsh_local_soak_dead_letters_with_people_told_and_loses_nothing() {
    // The model fails most calls: many tickets exhaust their attempts.
    let rates = FaultRates::harsh();
    let mut dead = 0;
    for seed in 1..=5 {
        let report = soak::local(retriever(), 80, seed, rates, Duration::from_secs(120))
            .await
            .unwrap();
        println!("seed {seed}\n{}", report.render());
        assert!(report.ok(), "seed {seed}: {}", report.render());
        dead += report
            .outcomes
            .iter()
            .filter(|(k, _)| k.starts_with("dead_lettered"))
            .map(|(_, v)| v)
            .sum::<u64>();
    }
    assert!(
        dead > 0,
        "no ticket exhausted its attempts: the soak did not test dead-lettering"
    );
}

/// The large AWS soak for the README's figures (moto is slow: minutes):
/// `SOAK_TICKETS=300 cargo test --test tools soak:: large_aws -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn large_aws_soak_on_moto() {
    let n: usize = std::env::var("SOAK_TICKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let runtime = aws_runtime().await;
    let report = soak::aws(
        &runtime,
        retriever(),
        n,
        42,
        FaultRates::default(),
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    println!("{}", report.render());
    assert!(report.ok(), "{}", report.render());
}
