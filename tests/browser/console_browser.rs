//! The agent console in a real headless Chromium: Debian's `chromium`,
//! driven by `playwright-core` from `tests/browser/` (installed by
//! `scripts/setup-browser`; nothing is downloaded by the test).
//!
//! The app runs on port 0 over a temporary SQLite file and the demo KB; a
//! customer chats in the widget on the demo page while an agent signs in
//! to `/agent`, sees the escalation arrive, replies (the widget shows it),
//! notes, closes and hands back, and a wrong key and a request without the
//! CSRF token are refused. The steps live in
//! `tests/browser/console.test.mjs`; failures leave screenshots in
//! `target/tmp/console-browser/`.
//!
//! A missing browser or Playwright is a failure, never a skip.

use crate::common;
use crate::harness::{require_browser, run_node};

use std::path::{Path, PathBuf};

use common::{TestApp, root};
use deskhand::secret::Secret;

const AGENT_KEY: &str = "console-browser-agent-key-0123456789";

fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_console_works_in_headless_chromium() {
    require_browser();
    let app = TestApp::spawn_with(|c| c.agent_key = Some(Secret::new(AGENT_KEY))).await;
    let artifacts = artifacts();
    let _ = std::fs::remove_dir_all(&artifacts);
    run_node(
        "console.test.mjs",
        &[
            &app.url(""),
            AGENT_KEY,
            artifacts.to_str().expect("UTF-8 path"),
        ],
    )
    .await;
    app.stop().await;
}

/// Regenerates `docs/console.png`, `docs/console-phone.png` and
/// `docs/stats.png` over a few
/// seeded conversations (the README's pictures of the console).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/console*.png; run with --ignored"]
async fn screenshot_for_the_docs() {
    require_browser();
    let app = TestApp::spawn_with(|c| c.agent_key = Some(Secret::new(AGENT_KEY))).await;
    for (text, rating) in [
        ("How do I export my data?", Some("up")),
        ("How do I turn on two-factor authentication?", None),
        ("How do I change my billing email?", Some("down")),
        (
            "This is terrible, I am furious, nothing works and I want a refund now",
            None,
        ),
        (
            "Can I pay with a purchase order from our procurement system?",
            None,
        ),
        ("I want to talk to a human about my invoice", None),
    ] {
        let (id, token) = app.conversation().await;
        app.post(&id, &token, text).await;
        let poll = app.wait_for_reply(&id, &token, 1).await;
        let bot = common::with_role(&poll, "assistant");
        if let (Some(rating), Some(m)) = (rating, bot.first()) {
            let mid = m["id"].as_str().unwrap();
            let res = app
                .http
                .post(app.url(&format!("/v1/conversations/{id}/messages/{mid}/feedback")))
                .bearer_auth(&token)
                .json(&serde_json::json!({"rating": rating, "reason": "wrong_answer"}))
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success());
        }
    }
    let out = root().join("docs");
    std::fs::create_dir_all(&out).unwrap();
    run_node(
        "console.test.mjs",
        &[
            "--screenshot",
            &app.url(""),
            AGENT_KEY,
            out.to_str().expect("UTF-8 path"),
        ],
    )
    .await;
    app.stop().await;
}
