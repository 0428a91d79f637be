//! Resolution figures and the content-gap report over a seeded demo: the
//! real app on a temporary SQLite file and the demo KB, customers chatting
//! and rating through the HTTP API, then the figures as `/v1/stats`, the
//! console's stats and `resolution::gather` count them (the latter also
//! two days later, when silence counts as resolved). Prints the figures
//! (`--nocapture` shows the README's demo numbers).

use crate::common;

use chrono::{Duration, Utc};
use common::{TestApp, test_config, with_role};
use deskhand::secret::Secret;
use deskhand::sqlite::Db;
use deskhand::store::SqliteStore;
use serde_json::{Value, json};

const ADMIN: &str = "stats-admin-key-0123456789";

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> Value {
    let res = app
        .http
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.json().await.unwrap()
}

/// A conversation with one question; returns (id, token, the bot reply's id, status).
async fn ask(app: &TestApp, text: &str) -> (String, String, Option<String>, String) {
    let (id, token) = app.conversation().await;
    app.post(&id, &token, text).await;
    let poll = app.wait_for_reply(&id, &token, 1).await;
    let bot = with_role(&poll, "assistant")
        .first()
        .map(|m| m["id"].as_str().unwrap().to_owned());
    (id, token, bot, poll["status"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_seeded_demo_counts_resolutions_the_way_helpdesks_do() {
    let app = TestApp::spawn_with(|c| c.admin_key = Some(Secret::new(ADMIN))).await;
    // 1. answered, thumbs up → confirmed.
    let (id, token, bot, _) = ask(&app, "How do I export my data?").await;
    let bot = bot.expect("answered");
    post(
        &app,
        &format!("/v1/conversations/{id}/messages/{bot}/feedback"),
        &token,
        json!({"rating": "up"}),
    )
    .await;
    // 2. answered, then silence → pending now, assumed in two days.
    let (_, _, bot, _) = ask(&app, "How do I turn on two-factor authentication?").await;
    assert!(bot.is_some());
    // 3. answered, thumbs down "wrong answer" → never resolved.
    let (id, token, bot, _) = ask(&app, "How do I change my billing email?").await;
    let bot = bot.expect("answered");
    post(
        &app,
        &format!("/v1/conversations/{id}/messages/{bot}/feedback"),
        &token,
        json!({"rating": "down", "reason": "wrong_answer"}),
    )
    .await;
    // 4. answered, CSAT 5 → confirmed.
    let (id, token, bot, _) = ask(&app, "How do I reset my password?").await;
    assert!(bot.is_some());
    post(
        &app,
        &format!("/v1/conversations/{id}/csat"),
        &token,
        json!({"score": 5}),
    )
    .await;
    // 5. asks for a person → escalated, not involved.
    let (_, _, bot, status) = ask(&app, "I want to talk to a human").await;
    assert_eq!((bot, status.as_str()), (None, "escalated"));

    // The API's figures now: nothing is old enough to assume.
    let res = app
        .http
        .get(app.url("/v1/stats"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let r = &v["resolution"];
    assert_eq!(r["conversations"], 5, "{r}");
    assert_eq!(r["involved"], 4, "{r}");
    assert_eq!(r["resolved_confirmed"], 2, "{r}");
    assert_eq!(r["resolved_assumed"], 0, "{r}");
    assert_eq!(r["pending"], 1, "{r}");
    assert_eq!(r["escalated"], 1, "{r}");
    assert_eq!(r["ratings"], json!({"down": 1, "up": 1}));
    assert_eq!(r["thumbs_down_reasons"], json!({"wrong_answer": 1}));
    assert_eq!(r["csat"]["responses"], 1);
    assert_eq!(v["tickets"], 5, "the ticket summary is still there: {v}");
    let csv = app
        .http
        .get(app.url("/v1/stats?format=csv"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = csv.text().await.unwrap();
    assert!(
        csv.starts_with("figure,value\n") && csv.contains("\nresolved_confirmed,2\n"),
        "{csv}"
    );
    let bad = app
        .http
        .get(app.url("/v1/stats?format=xml"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // Two days on: the silent one is assumed resolved.
    let data = app.stop().await;
    let config = test_config(data.path());
    let store = SqliteStore::new(Db::open(&config.database_path()).unwrap());
    let now = Utc::now() + Duration::days(2);
    let (_, later) = deskhand::resolution::gather(
        &store,
        &store,
        &config.pricing(),
        config.resolution,
        now - Duration::days(30),
        now,
    )
    .await
    .unwrap();
    println!("{}", later.render());
    assert_eq!(
        (
            later.resolved_confirmed,
            later.resolved_assumed,
            later.pending
        ),
        (2, 1, 0)
    );
    assert!(
        (later.resolution_rate - 0.75).abs() < 1e-9,
        "{}",
        later.resolution_rate
    );
    assert!((later.involvement_rate - 0.8).abs() < 1e-9);
    assert_eq!(later.reopened, 0);

    // The gap report holds the thumbs-down question.
    let questions = deskhand::gaps::questions(&store, &store, now - Duration::days(30))
        .await
        .unwrap();
    let texts: Vec<&str> = questions.iter().map(|q| q.text.as_str()).collect();
    assert!(
        texts.contains(&"How do I change my billing email?"),
        "{texts:?}"
    );
    let report = deskhand::gaps::report(
        &questions,
        now - Duration::days(30),
        None,
        deskhand::gaps::Grouping::terms(),
    )
    .await;
    println!("{}", report.render());
    assert_eq!(report.questions, questions.len());
}
