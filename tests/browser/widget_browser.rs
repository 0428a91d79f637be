//! The widget in a real headless Chromium: Debian's `chromium`, driven by
//! `playwright-core` from `tests/browser/` (both installed by
//! `scripts/setup-browser`; nothing is downloaded by the test).
//!
//! The app runs on port 0 over a temporary SQLite file and the demo KB.
//! Beside it this test serves a host page on another origin (allowed by
//! `cors_origins`) that embeds the widget under a hostile stylesheet, and
//! `/strict`, the same page under a strict Content-Security-Policy. The
//! steps themselves live in `tests/browser/widget.test.mjs`; failures leave
//! screenshots in `target/tmp/widget-browser/`.
//!
//! A missing browser or Playwright is a failure, never a skip: CI must not
//! pass without having run these.

use crate::common;
use crate::harness::{browser_dir, require_browser, run_node};

use std::path::{Path, PathBuf};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use common::{TestApp, root};
use deskhand::secret::Secret;
use tokio::net::TcpListener;

const AGENT_KEY: &str = "browser-test-agent-key-0123456789";

/// A page on another origin that embeds the widget, like a customer's site.
struct HostSite {
    listener: TcpListener,
    origin: String,
}

impl HostSite {
    async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let origin = format!("http://{}", listener.local_addr().unwrap());
        Self { listener, origin }
    }

    /// Serves the pages, embedding the widget from `deskhand`; returns the URL.
    fn serve(self, deskhand: &str) -> String {
        let read = |name: &str| {
            std::fs::read_to_string(browser_dir().join(name))
                .unwrap_or_else(|e| panic!("reading tests/browser/{name}: {e}"))
        };
        let page = read("host.html").replace("{{DESKHAND}}", deskhand);
        let css = read("host.css");
        // Only the widget's own origin may run scripts or be fetched from;
        // no inline styles at all.
        let csp = format!(
            "default-src 'none'; script-src {deskhand}; connect-src {deskhand}; \
             style-src 'self'; img-src 'self'; base-uri 'none'"
        );
        let html = |page: String, csp: Option<String>| {
            let mut res =
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response();
            if let Some(csp) = csp {
                res.headers_mut()
                    .insert(header::CONTENT_SECURITY_POLICY, csp.parse().unwrap());
            }
            res
        };
        let strict_page = page.clone();
        let app = Router::new()
            .route(
                "/",
                get(move || std::future::ready(html(page.clone(), None))),
            )
            .route(
                "/strict",
                get(move || std::future::ready(html(strict_page.clone(), Some(csp.clone())))),
            )
            .route(
                "/host.css",
                get(move || {
                    std::future::ready(
                        (
                            [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                            css.clone(),
                        )
                            .into_response(),
                    )
                }),
            );
        tokio::spawn(async move { axum::serve(self.listener, app).await });
        self.origin
    }
}

fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("widget-browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_works_in_headless_chromium() {
    require_browser();
    let site = HostSite::bind().await;
    let origin = site.origin.clone();
    let app = TestApp::spawn_with(|c| {
        c.cors_origins = vec![origin];
        c.agent_key = Some(Secret::new(AGENT_KEY));
    })
    .await;
    let deskhand = app.url("");
    let host_page = site.serve(&deskhand);
    let artifacts = artifacts();
    let _ = std::fs::remove_dir_all(&artifacts);
    run_node(
        "widget.test.mjs",
        &[
            &deskhand,
            AGENT_KEY,
            artifacts.to_str().expect("UTF-8 path"),
            &host_page,
        ],
    )
    .await;
    app.stop().await;
}

/// Regenerates `docs/widget.png` (the README's picture of the widget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/widget.png; run with --ignored"]
async fn screenshot_for_the_docs() {
    require_browser();
    let app = TestApp::spawn().await;
    let out = root().join("docs/widget.png");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    run_node(
        "widget.test.mjs",
        &[
            "--screenshot",
            &app.url(""),
            out.to_str().expect("UTF-8 path"),
        ],
    )
    .await;
    app.stop().await;
}
