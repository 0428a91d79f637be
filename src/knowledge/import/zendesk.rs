//! Zendesk Guide through the Help Center API: categories, sections and
//! articles (`/api/v2/help_center[/{locale}]/{categories,sections,articles}.json`,
//! 100 a page, following `next_page` or, with cursor pagination,
//! `links.next` while `meta.has_more`), and user segments to tell who may
//! read an article.
//!
//! Who may read: an article without a `user_segment_id` is public; one
//! restricted to the "signed-in users" segment type is public too (it is
//! written for customers); one restricted to staff, or to a segment that
//! cannot be read (no agent credentials), is `audience: internal`. Drafts
//! are skipped. Credentials (an agent's email and API token, Basic
//! `email/token:token`) are optional for a public help centre and are
//! never printed. Pagination never leaves the help centre's host, so
//! credentials go nowhere else.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use serde_json::Value;

use super::{Article, Audience, Fetched, get_json, id_of, strings};

/// Most pages followed in one listing (100 articles a page).
const MAX_PAGES: usize = 2_000;

/// Where and how to read.
#[derive(Debug, Clone)]
pub struct Source {
    /// `https://SUBDOMAIN.zendesk.com` (or a test double).
    pub base_url: String,
    /// One locale (`en-us`); none: the help centre's default.
    pub locale: Option<String>,
    /// `(email, API token)` of an agent.
    pub credentials: Option<(String, String)>,
}

impl Source {
    fn endpoint(&self, what: &str) -> String {
        let base = self.base_url.trim_end_matches('/');
        match &self.locale {
            Some(l) => format!("{base}/api/v2/help_center/{l}/{what}.json?per_page=100"),
            None => format!("{base}/api/v2/help_center/{what}.json?per_page=100"),
        }
    }

    fn auth(&self) -> Option<(String, String)> {
        self.credentials
            .as_ref()
            .map(|(email, token)| (format!("{email}/token"), token.clone()))
    }
}

/// Every item of `key` in a paginated listing.
async fn list(
    http: &reqwest::Client,
    source: &Source,
    first: String,
    key: &str,
    progress: &mut dyn FnMut(usize),
) -> anyhow::Result<Vec<Value>> {
    let auth = source.auth();
    let auth = auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
    let host = reqwest::Url::parse(&source.base_url)
        .context("the Zendesk URL")?
        .host_str()
        .unwrap_or_default()
        .to_owned();
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    let mut next = Some(first);
    while let Some(url) = next.take() {
        anyhow::ensure!(
            seen.len() < MAX_PAGES,
            "more than {MAX_PAGES} pages of {key}"
        );
        if !seen.insert(url.clone()) {
            break; // a page loop: the listing is complete
        }
        let same_host = reqwest::Url::parse(&url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .is_some_and(|h| h == host);
        anyhow::ensure!(same_host, "a {key} page points off the help centre: {url}");
        let page = get_json(http, &url, auth).await?;
        let batch = page[key]
            .as_array()
            .with_context(|| format!("{url}: no `{key}` list in the answer"))?;
        items.extend(batch.iter().cloned());
        progress(items.len());
        next = page["next_page"].as_str().map(str::to_owned).or_else(|| {
            page["meta"]["has_more"]
                .as_bool()
                .filter(|m| *m)
                .and_then(|_| page["links"]["next"].as_str().map(str::to_owned))
        });
    }
    Ok(items)
}

/// Reads the help centre.
pub async fn fetch(
    http: &reqwest::Client,
    source: &Source,
    progress: &mut dyn FnMut(usize),
) -> anyhow::Result<Fetched> {
    let names = |items: Vec<Value>| -> HashMap<String, (String, Option<String>)> {
        items
            .iter()
            .filter_map(|v| {
                Some((
                    id_of(&v["id"])?,
                    (
                        v["name"].as_str().unwrap_or("").to_owned(),
                        id_of(&v["category_id"]),
                    ),
                ))
            })
            .collect()
    };
    let categories = names(
        list(
            http,
            source,
            source.endpoint("categories"),
            "categories",
            &mut |_| {},
        )
        .await?,
    );
    let sections = names(
        list(
            http,
            source,
            source.endpoint("sections"),
            "sections",
            &mut |_| {},
        )
        .await?,
    );
    // Segments need agent credentials; unreadable ones count as staff.
    let segments: HashMap<String, String> = match source.credentials {
        Some(_) => {
            let base = source.base_url.trim_end_matches('/');
            let url = format!("{base}/api/v2/help_center/user_segments.json?per_page=100");
            list(http, source, url, "user_segments", &mut |_| {})
                .await
                .unwrap_or_default()
                .iter()
                .filter_map(|s| Some((id_of(&s["id"])?, s["user_type"].as_str()?.to_owned())))
                .collect()
        }
        None => HashMap::new(),
    };
    let raw = list(
        http,
        source,
        source.endpoint("articles"),
        "articles",
        progress,
    )
    .await?;
    let mut articles = Vec::new();
    let mut drafts = 0;
    for a in raw {
        if a["draft"].as_bool() == Some(true) {
            drafts += 1;
            continue;
        }
        let Some(id) = id_of(&a["id"]) else { continue };
        let audience = match id_of(&a["user_segment_id"]) {
            None => Audience::Public,
            Some(seg) if segments.get(&seg).map(String::as_str) == Some("signed_in_users") => {
                Audience::Public
            }
            Some(_) => Audience::Internal,
        };
        let mut section = Vec::new();
        if let Some((name, category)) = id_of(&a["section_id"]).and_then(|s| sections.get(&s)) {
            if let Some((cat, _)) = category.as_ref().and_then(|c| categories.get(c)) {
                section.push(cat.clone());
            }
            section.push(name.clone());
        }
        section.retain(|s| !s.trim().is_empty());
        articles.push(Article {
            id,
            title: a["title"]
                .as_str()
                .or(a["name"].as_str())
                .unwrap_or("Untitled")
                .to_owned(),
            url: a["html_url"].as_str().map(str::to_owned),
            updated_at: a["updated_at"]
                .as_str()
                .or(a["edited_at"].as_str())
                .map(str::to_owned),
            locale: a["locale"].as_str().map(str::to_owned),
            audience,
            section,
            labels: strings(&a["label_names"]),
            html: a["body"].as_str().unwrap_or("").to_owned(),
        });
    }
    Ok(Fetched { articles, drafts })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::json;

    use super::*;

    #[derive(Clone, Default)]
    struct Double {
        /// Requests seen (the first articles page answers 429 once).
        articles_calls: Arc<AtomicUsize>,
        /// Whether the second article was deleted upstream.
        deleted: Arc<std::sync::atomic::AtomicBool>,
        base: Arc<std::sync::OnceLock<String>>,
    }

    fn authorized(headers: &HeaderMap) -> bool {
        // Basic base64("agent@acme.test/token:t0ken").
        headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some("Basic YWdlbnRAYWNtZS50ZXN0L3Rva2VuOnQwa2Vu")
    }

    async fn articles(
        State(d): State<Double>,
        headers: HeaderMap,
        Query(q): Query<HashMap<String, String>>,
    ) -> Response {
        if !authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        if d.articles_calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response();
        }
        let base = d.base.get().unwrap();
        let article = |id: u64, title: &str, segment: Value, draft: bool| {
            json!({"id": id, "title": title, "html_url": format!("{base}/hc/en-us/articles/{id}"),
                   "body": format!("<p>{title} body.</p><ul><li>one</li><li>two</li></ul>"),
                   "locale": "en-us", "section_id": 7, "user_segment_id": segment, "draft": draft,
                   "updated_at": "2026-03-01T10:00:00Z", "label_names": ["billing"]})
        };
        match q.get("page").map(String::as_str) {
            None => Json(json!({
                "articles": [article(1, "Refund times", Value::Null, false),
                             article(2, "Agent macro: refunds", json!(900), false)],
                "next_page": format!("{base}/api/v2/help_center/en-us/articles.json?per_page=100&page=2"),
            }))
            .into_response(),
            _ => {
                let mut list = vec![article(4, "Draft", Value::Null, true), article(5, "Members only", json!(901), false)];
                if !d.deleted.load(Ordering::SeqCst) {
                    list.push(article(3, "Shipping", Value::Null, false));
                }
                Json(json!({"articles": list, "next_page": null})).into_response()
            }
        }
    }

    async fn spawn() -> (Double, String) {
        let d = Double::default();
        let app = Router::new()
            .route(
                "/api/v2/help_center/en-us/categories.json",
                get(|| async { Json(json!({"categories": [{"id": 3, "name": "Billing"}], "next_page": null})) }),
            )
            .route(
                "/api/v2/help_center/en-us/sections.json",
                get(|| async {
                    Json(json!({"sections": [{"id": 7, "name": "Refunds", "category_id": 3}], "next_page": null}))
                }),
            )
            .route(
                "/api/v2/help_center/user_segments.json",
                get(|| async {
                    Json(json!({"user_segments": [{"id": 900, "user_type": "staff"}, {"id": 901, "user_type": "signed_in_users"}],
                                "next_page": null}))
                }),
            )
            .route("/api/v2/help_center/en-us/articles.json", get(articles))
            .with_state(d.clone());
        let base = crate::knowledge::import::tests::serve_double(app).await;
        d.base.set(base.clone()).unwrap();
        (d, base)
    }

    #[tokio::test]
    async fn a_help_centre_becomes_a_synced_markdown_folder() {
        let (double, base) = spawn().await;
        let source = Source {
            base_url: base.clone(),
            locale: Some("en-us".into()),
            credentials: Some(("agent@acme.test".into(), "t0ken".into())),
        };
        let http = reqwest::Client::new();
        let mut seen = 0;
        let got = fetch(&http, &source, &mut |n| seen = n).await.unwrap();
        assert_eq!(seen, 5, "both pages read");
        assert_eq!(got.drafts, 1);
        let by_id = |id: &str| got.articles.iter().find(|a| a.id == id).unwrap();
        assert_eq!(by_id("1").audience, Audience::Public);
        assert_eq!(by_id("2").audience, Audience::Internal, "staff segment");
        assert_eq!(by_id("5").audience, Audience::Public, "signed-in users");
        assert_eq!(by_id("1").section, ["Billing", "Refunds"]);
        assert!(
            double.articles_calls.load(Ordering::SeqCst) >= 3,
            "the 429 was retried"
        );

        let dir = tempfile::tempdir().unwrap();
        let s = super::super::sync(dir.path(), "zendesk", &got.articles).unwrap();
        assert_eq!((s.written, s.internal), (4, 1));
        let text = std::fs::read_to_string(dir.path().join("2-agent-macro-refunds.md")).unwrap();
        assert!(text.contains("audience: internal"), "{text}");
        let text = std::fs::read_to_string(dir.path().join("1-refund-times.md")).unwrap();
        assert!(
            text.contains(&format!("url: {base}/hc/en-us/articles/1")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with(['*', '-']) && l.ends_with("one")),
            "a list stays a list: {text}"
        );

        // Deleted upstream: the next run removes its file, rewrites nothing else.
        double.deleted.store(true, Ordering::SeqCst);
        let got = fetch(&http, &source, &mut |_| {}).await.unwrap();
        let s = super::super::sync(dir.path(), "zendesk", &got.articles).unwrap();
        assert_eq!((s.written, s.unchanged, s.removed), (0, 3, 1));
        assert!(!dir.path().join("3-shipping.md").exists());
    }

    #[tokio::test]
    async fn bad_credentials_are_an_error() {
        let (_double, base) = spawn().await;
        let source = Source {
            base_url: base,
            locale: Some("en-us".into()),
            credentials: Some(("agent@acme.test".into(), "wrong".into())),
        };
        let err = fetch(&reqwest::Client::new(), &source, &mut |_| {})
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("401"), "{err}");
    }
}
