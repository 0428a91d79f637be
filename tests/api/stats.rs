//! Operators' numbers in local mode: `GET /v1/stats` and `GET /metrics`
//! behind the admin key, after real tickets went through the app.

use crate::common;

use common::TestApp;
use deskhand::secret::Secret;
use serde_json::Value;

const KEY: &str = "admin-key-for-tests-0123456789";

async fn get(app: &TestApp, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = app.http.get(app.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

/// One answered ticket and one that asks for a person, both finished.
async fn two_tickets(app: &TestApp) {
    let (id, token) = app.conversation().await;
    assert_eq!(
        app.post(&id, &token, "How do I turn on two-factor authentication?")
            .await
            .0,
        202
    );
    app.wait_for_reply(&id, &token, 1).await;
    let (id, token) = app.conversation().await;
    assert_eq!(
        app.post(&id, &token, "I want to talk to a human").await.0,
        202
    );
    app.wait_for_reply(&id, &token, 1).await;
}

#[tokio::test]
async fn stats_count_outcomes_reasons_latency_and_cost_behind_the_admin_key() {
    let app = TestApp::spawn_with(|c| c.admin_key = Some(Secret::new(KEY))).await;
    two_tickets(&app).await;

    let res = get(&app, "/v1/stats", None).await;
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_admin_key");
    let res = get(&app, "/v1/stats", Some("not-the-key")).await;
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_admin_key");
    let res = get(&app, "/v1/stats?since=yesterday-ish", Some(KEY)).await;
    assert_eq!(res.status(), 400);

    let res = get(&app, "/v1/stats", Some(KEY)).await;
    assert_eq!(res.status(), 200);
    let s: Value = res.json().await.unwrap();
    assert_eq!(s["tickets"], 2, "{s}");
    assert_eq!(s["conversations"], 2);
    assert_eq!(s["by_outcome"]["answered"], 1, "{s}");
    assert_eq!(s["by_outcome"]["escalated"], 1);
    assert_eq!(s["by_reason"]["asked_for_human"], 1);
    assert_eq!(s["resolutions"], 1);
    assert_eq!(s["escalations"], 1);
    assert_eq!(s["resolution_rate"], 0.5);
    let p50 = s["latency"]["p50_ms"].as_f64().unwrap();
    let p95 = s["latency"]["p95_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= p95 && p95 < 20_000.0, "{s}");
    // The extractive generator calls no model: the cost is infrastructure only.
    assert_eq!(s["model_cost"], 0.0);
    assert_eq!(s["model_calls"], 0);
    // Two tickets carry the period's share of the fixed monthly costs…
    let per = s["cost_per_resolution"].as_f64().unwrap();
    let fixed = s["fixed_cost"].as_f64().unwrap();
    assert!(fixed > 1.0 && fixed < 2.0, "{s}");
    assert!(
        (per - s["total_cost"].as_f64().unwrap()).abs() < 1e-9,
        "{s}"
    );
    // …while one more resolution costs a fraction of a cent (mostly the
    // hour of CloudWatch metrics it lights up, at this volume).
    let marginal = s["marginal_cost_per_resolution"].as_f64().unwrap();
    assert!(marginal > 0.0 && marginal < 0.01, "{s}");

    // A period that starts later holds nothing.
    let res = get(&app, "/v1/stats?since=2999-01-01", Some(KEY)).await;
    let s: Value = res.json().await.unwrap();
    assert_eq!(s["tickets"], 0);
    assert_eq!(s["cost_per_resolution"], 0.0);
}

#[tokio::test]
async fn metrics_are_prometheus_text_behind_the_admin_key() {
    let app = TestApp::spawn_with(|c| c.admin_key = Some(Secret::new(KEY))).await;
    two_tickets(&app).await;

    assert_eq!(get(&app, "/metrics", None).await.status(), 401);
    let res = get(&app, "/metrics", Some(KEY)).await;
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = res.text().await.unwrap();
    for line in [
        "# TYPE deskhand_tickets counter",
        "deskhand_tickets_total{outcome=\"answered\"} 1",
        "deskhand_tickets_total{outcome=\"escalated\"} 1",
        "deskhand_tickets_total{outcome=\"dead_lettered\"} 0",
        "deskhand_escalations_total{reason=\"asked_for_human\"} 1",
        "deskhand_escalations_total{reason=\"low_confidence\"} 0",
        "deskhand_ticket_failures_total 0",
        "deskhand_model_calls_total 0",
        "deskhand_model_tokens_total{kind=\"input\"} 0",
        "# TYPE deskhand_model_latency_seconds histogram",
        "deskhand_model_latency_seconds_count 0",
        "# EOF",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
}

#[tokio::test]
async fn without_an_admin_key_stats_and_metrics_are_off() {
    let app = TestApp::spawn().await;
    for path in ["/v1/stats", "/metrics"] {
        let res = get(&app, path, Some(KEY)).await;
        assert_eq!(res.status(), 404, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "admin_api_disabled", "{path}");
    }
}
