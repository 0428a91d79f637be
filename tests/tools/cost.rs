//! Cost accounting: the README's table is what `deskhand cost --estimate`
//! computes from the price table, the sums over stored tickets are right,
//! and `deskhand cost` reads a local data folder.

use crate::common;

use std::process::Command;

use chrono::{Duration, Utc};
use common::{TestApp, root};
use deskhand::config::Config;
use deskhand::cost::{self, Deployment, Prices, Summary, Workload};
use deskhand::domain::{ConversationId, Outcome, ReasonCode, TicketId, Usage};
use deskhand::store::TicketRecord;

#[test]
fn the_readme_cost_table_is_what_the_tool_computes() {
    let table = cost::markdown_table(&Prices::default(), &Deployment::default());
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(&table),
        "README.md's cost table is stale; replace it with the output of \
         `deskhand cost --estimate --markdown`:\n{table}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_deskhand"))
        .args(["cost", "--estimate", "--markdown"])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), table);
}

#[test]
fn the_estimate_adds_up() {
    let prices = Prices::default();
    let lite = prices.model_named("lite").unwrap();
    let (w, d) = (Workload::default(), Deployment::default());
    let e = cost::estimate(5_000.0, lite, &w, &prices.infra, &d);
    // 5,000 × 2 tickets × 80 % = 8,000 calls of 2,000 in / 100 out tokens.
    let model = 8_000.0 * (2_000.0 * 0.06 + 100.0 * 0.24) / 1e6;
    assert!((e.model_cost - model).abs() < 1e-9, "{e:?}");
    // 5,000 × (1 + 2 + 30) HTTP requests at $1 a million.
    assert!((e.infra.http_api - 0.165).abs() < 1e-9);
    // Two secrets a month.
    assert!((e.infra.secrets - 0.80).abs() < 1e-9);
    assert!((e.total - (e.model_cost + e.infra.total())).abs() < 1e-9);
    assert_eq!(e.resolutions, 3_000.0);
    assert!((e.intercom_fin - 2_970.0).abs() < 1e-9);
    // Without EMF metrics the CloudWatch line is logs and the alarm only.
    let quiet = cost::estimate(
        5_000.0,
        lite,
        &w,
        &prices.infra,
        &Deployment {
            emf_metrics: false,
            ..d
        },
    );
    assert!(quiet.infra.cloudwatch < 0.2, "{quiet:?}");
    assert!(e.infra.cloudwatch > quiet.infra.cloudwatch + 1.0);
}

fn record(outcome: Outcome, reason: Option<ReasonCode>, usage: Usage, ms: i64) -> TicketRecord {
    let done = Utc::now();
    TicketRecord {
        ticket_id: TicketId::new(),
        conversation_id: ConversationId::random(),
        outcome,
        reason,
        confidence: 0.5,
        notified: true,
        usage,
        attempts: 1,
        received_at: done - Duration::milliseconds(ms),
        completed_at: done,
    }
}

#[test]
fn a_summary_adds_up_stored_tickets() {
    let lite = Usage {
        model_id: Some("us.amazon.nova-lite-v1:0".into()),
        input_tokens: 1_000_000,
        output_tokens: 100_000,
        cache_read_tokens: 200_000,
        calls: 2,
        model_ms: 1_500,
        ..Usage::default()
    };
    let other = Usage {
        model_id: Some("acme.secret-model".into()),
        input_tokens: 10,
        output_tokens: 10,
        calls: 1,
        ..Usage::default()
    };
    let records = [
        record(Outcome::Answered, None, lite.clone(), 1_000),
        record(Outcome::Answered, None, Usage::default(), 2_000),
        record(
            Outcome::Escalated,
            Some(ReasonCode::LowConfidence),
            lite,
            3_000,
        ),
        record(
            Outcome::Forwarded,
            Some(ReasonCode::FollowUp),
            Usage::default(),
            4_000,
        ),
        record(
            Outcome::DeadLettered,
            Some(ReasonCode::ProcessingFailed),
            other,
            5_000,
        ),
    ];
    let now = Utc::now();
    let s = Summary::of(
        &records,
        now - Duration::days(30),
        now,
        &Config::default().pricing(),
    );
    assert_eq!(s.tickets, 5);
    assert_eq!(s.conversations, 5);
    assert_eq!(s.resolutions, 2);
    assert_eq!(s.escalations, 3);
    assert_eq!(s.by_outcome["answered"], 2);
    assert_eq!(s.by_reason["low_confidence"], 1);
    assert_eq!(s.resolution_rate, 0.4);
    assert_eq!(s.latency.p50_ms, 3_000.0);
    assert_eq!(s.latency.p95_ms, 5_000.0);
    assert_eq!(s.model_calls, 5);
    assert_eq!(s.tokens.input, 2_000_010);
    // Two tickets of Nova Lite: 2 M input, 0.2 M output, 0.4 M cache reads.
    let lite_cost = 2.0 * 0.06 + 0.2 * 0.24 + 0.4 * 0.015;
    assert!((s.model_cost - lite_cost).abs() < 1e-9, "{}", s.model_cost);
    assert_eq!(s.unpriced_models, ["acme.secret-model"]);
    assert!(s.infra.total() > 0.0);
    assert!((s.cost_per_resolution - s.total_cost / 2.0).abs() < 1e-12);
    assert!(s.fixed_cost > 0.0 && s.fixed_cost < s.total_cost);
    assert!((s.marginal_cost_per_resolution - (s.total_cost - s.fixed_cost) / 2.0).abs() < 1e-12);
    let text = s.render();
    assert!(text.contains("not in the price table"), "{text}");
}

#[tokio::test]
async fn deskhand_cost_reads_the_local_data_folder() {
    let app = TestApp::spawn().await;
    let (id, token) = app.conversation().await;
    app.post(&id, &token, "How do I reset my password?").await;
    app.wait_for_reply(&id, &token, 1).await;
    let data = app.stop().await;

    let out = Command::new(env!("CARGO_BIN_EXE_deskhand"))
        .args(["cost", "--json", "--since", "2020-01-01", "--data"])
        .arg(data.path())
        .current_dir(std::env::temp_dir())
        .env("DESKHAND_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["tickets"], 1, "{s}");
    assert_eq!(s["resolutions"], 1);

    let out = Command::new(env!("CARGO_BIN_EXE_deskhand"))
        .args(["cost", "--data"])
        .arg(data.path())
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("cost per resolution"), "{text}");

    let out = Command::new(env!("CARGO_BIN_EXE_deskhand"))
        .args(["cost", "--since", "last tuesday", "--data"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
}
