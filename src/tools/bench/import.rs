//! Import throughput (issue #17): `kb import zendesk` and `kb import
//! website` against HTTP doubles on 127.0.0.1 shaped as the real services
//! answer (Zendesk's Help Center API, 100 articles a page with
//! `next_page`; a site with a sitemap), into a temporary folder; then the
//! same import again, which is a sync with nothing to write.
//!
//! What it measures is deskhand's side: listing, HTML to Markdown, front
//! matter and files. Network latency and the vendors' rate limits decide a
//! real import's time; the crawler's politeness delay is set to 0 here and
//! is 0.5 s a page by default.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use super::tempfile_dir;
use crate::knowledge::import::{self, website, zendesk};

/// One import's throughput.
#[derive(Debug, Clone, Serialize)]
pub struct ImportRow {
    /// The source.
    pub source: &'static str,
    /// Articles listed.
    pub articles: usize,
    /// First import: seconds and articles a second.
    pub first_secs: f64,
    /// First import, articles a second.
    pub first_per_sec: f64,
    /// The re-run (a sync, nothing changed), articles a second.
    pub resync_per_sec: f64,
}

/// An article body like a help centre's: headings, a list, a table, links.
fn body(i: usize) -> String {
    format!(
        "<h2>Before you start</h2><p>Article {i} explains how to change the <strong>billing \
         address</strong> on an invoice, and what happens to invoices already sent.</p>\
         <ol><li>Open <a href=\"/settings\">Settings</a>.</li><li>Choose <em>Billing</em>.</li>\
         <li>Edit the address and save.</li></ol><table><tr><th>Plan</th><th>Invoices</th></tr>\
         <tr><td>Starter</td><td>Monthly</td></tr><tr><td>Pro</td><td>Monthly or yearly</td></tr></table>\
         <p>Invoices already sent keep the old address; <a href=\"/contact\">contact us</a> to reissue one.</p>"
    )
}

async fn serve(app: axum::Router) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((base, task))
}

async fn zendesk_double(n: usize) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    use axum::extract::{Query, State};
    use axum::routing::get;
    #[derive(serde::Deserialize)]
    struct Page {
        page: Option<usize>,
    }
    let base = Arc::new(std::sync::OnceLock::<String>::new());
    let articles = {
        let base = base.clone();
        move |Query(p): Query<Page>, State(n): State<usize>| {
            let base = base.get().cloned().unwrap_or_default();
            async move {
                let page = p.page.unwrap_or(1);
                let from = (page - 1) * 100;
                let items: Vec<_> = (from..(from + 100).min(n))
                    .map(|i| {
                        json!({
                            "id": 1_000_000 + i, "title": format!("Changing the billing address, part {i}"),
                            "html_url": format!("{base}/hc/en-us/articles/{}", 1_000_000 + i),
                            "updated_at": "2026-11-20T10:00:00Z", "locale": "en-us",
                            "section_id": 10 + i % 5, "label_names": ["billing", "invoices"],
                            "draft": false, "user_segment_id": null, "body": body(i),
                        })
                    })
                    .collect();
                let next = (from + 100 < n).then(|| {
                    format!(
                        "{base}/api/v2/help_center/articles.json?per_page=100&page={}",
                        page + 1
                    )
                });
                axum::Json(json!({"articles": items, "next_page": next, "count": n}))
            }
        }
    };
    let app = axum::Router::new()
        .route(
            "/api/v2/help_center/categories.json",
            get(|| async {
                axum::Json(json!({"categories": [{"id": 1, "name": "Billing"}], "next_page": null}))
            }),
        )
        .route(
            "/api/v2/help_center/sections.json",
            get(|| async {
                let sections: Vec<_> = (10..15)
                    .map(|i| json!({"id": i, "name": format!("Section {i}"), "category_id": 1}))
                    .collect();
                axum::Json(json!({"sections": sections, "next_page": null}))
            }),
        )
        .route("/api/v2/help_center/articles.json", get(articles))
        .with_state(n);
    let (url, task) = serve(app).await?;
    let _ = base.set(url.clone());
    Ok((url, task))
}

async fn site_double(n: usize) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    use axum::extract::Path;
    use axum::http::header;
    use axum::response::IntoResponse;
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/robots.txt", get(|| async { "User-agent: *\nDisallow: /admin/\n" }))
        .route(
            "/sitemap.xml",
            get(move || async move {
                let urls: String = (0..n)
                    .map(|i| format!("<url><loc>/docs/{i}</loc><lastmod>2026-11-20</lastmod></url>"))
                    .collect();
                (
                    [(header::CONTENT_TYPE, "application/xml")],
                    format!("<?xml version=\"1.0\"?><urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">{urls}</urlset>"),
                )
            }),
        )
        .route(
            "/docs/{i}",
            get(|Path(i): Path<usize>| async move {
                (
                    [(header::CONTENT_TYPE, "text/html")],
                    format!(
                        "<!doctype html><html lang=\"en\"><head><title>Billing address {i}</title>\
                         <link rel=\"canonical\" href=\"/docs/{i}\"><script>track()</script></head>\
                         <body><header>Acme</header><nav><a href=\"/docs/0\">Home</a></nav>\
                         <main><h1>Billing address {i}</h1>{}</main><footer>© Acme</footer></body></html>",
                        body(i)
                    ),
                )
                    .into_response()
            }),
        );
    serve(app).await
}

/// Imports `n` articles from each double, twice.
pub async fn import(n: usize) -> anyhow::Result<Vec<ImportRow>> {
    let http = reqwest::Client::new();
    let mut rows = Vec::new();

    let (base, server) = zendesk_double(n).await?;
    let out = tempfile_dir("import-zendesk")?;
    let source = zendesk::Source {
        base_url: base,
        locale: None,
        credentials: None,
    };
    let mut times = Vec::new();
    let mut listed = 0;
    for _ in 0..2 {
        let t = Instant::now();
        let fetched = zendesk::fetch(&http, &source, &mut |_| {}).await?;
        let summary = import::sync(&out, "zendesk", &fetched.articles)?;
        times.push(t.elapsed().as_secs_f64());
        listed = summary.listed;
    }
    server.abort();
    let _ = std::fs::remove_dir_all(&out);
    anyhow::ensure!(listed == n, "the Zendesk import listed {listed} of {n}");
    rows.push(row("zendesk", listed, &times));

    let pages = (n / 4).max(1);
    let (base, server) = site_double(pages).await?;
    let out = tempfile_dir("import-website")?;
    let mut site = website::Source::new(format!("{base}/sitemap.xml"));
    site.delay = std::time::Duration::ZERO;
    let mut times = Vec::new();
    let mut listed = 0;
    for _ in 0..2 {
        let t = Instant::now();
        let (fetched, _) = website::fetch(&site, &mut |_| {}).await?;
        let summary = import::sync(&out, "website", &fetched.articles)?;
        times.push(t.elapsed().as_secs_f64());
        listed = summary.listed;
    }
    server.abort();
    let _ = std::fs::remove_dir_all(&out);
    anyhow::ensure!(listed == pages, "the crawl kept {listed} of {pages} pages");
    rows.push(row("website (no delay)", listed, &times));
    Ok(rows)
}

fn row(source: &'static str, articles: usize, times: &[f64]) -> ImportRow {
    let per = |s: f64| (articles as f64 / s.max(1e-6) * 10.0).round() / 10.0;
    ImportRow {
        source,
        articles,
        first_secs: times[0],
        first_per_sec: per(times[0]),
        resync_per_sec: per(times[1]),
    }
}

/// The import table.
pub fn render(rows: &[ImportRow]) -> String {
    let mut s = String::from(
        "KB import against local doubles (HTML to Markdown, front matter, files)\n\
         source                 articles   first s   articles/s   re-sync articles/s\n",
    );
    for r in rows {
        s += &format!(
            "{:<22} {:>8} {:>9.2} {:>12.1} {:>20.1}\n",
            r.source, r.articles, r.first_secs, r.first_per_sec, r.resync_per_sec
        );
    }
    s.push('\n');
    s
}
