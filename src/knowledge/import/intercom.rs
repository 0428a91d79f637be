//! Intercom Articles through the REST API: `GET /help_center/collections`
//! for section names and `GET /articles` (`pages.next` followed), with an
//! access token (`Authorization: Bearer`, `Intercom-Version: 2.11`).
//!
//! An article whose `state` is not `published` is a draft and skipped.
//! Intercom's public articles are public; internal articles live in a
//! separate product (Intercom's internal articles) that is not imported.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use serde_json::Value;

use super::{Article, Audience, Fetched, id_of};

/// Most pages followed in one listing.
const MAX_PAGES: usize = 2_000;

/// Where and how to read.
#[derive(Debug, Clone)]
pub struct Source {
    /// `https://api.intercom.io` (`api.eu.intercom.io`, `api.au.intercom.io`, or a test double).
    pub base_url: String,
    /// An access token of the workspace's app.
    pub token: String,
}

async fn get(http: &reqwest::Client, source: &Source, url: &str) -> anyhow::Result<Value> {
    let req = http
        .get(url)
        .bearer_auth(&source.token)
        .header("intercom-version", "2.11");
    super::send_json(req, url).await
}

/// Every item of a paginated `data` listing starting at `first`.
async fn list(
    http: &reqwest::Client,
    source: &Source,
    first: String,
    progress: &mut dyn FnMut(usize),
) -> anyhow::Result<Vec<Value>> {
    let base = source.base_url.trim_end_matches('/');
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    let mut next = Some(first);
    while let Some(url) = next.take() {
        anyhow::ensure!(seen.len() < MAX_PAGES, "more than {MAX_PAGES} pages");
        if !seen.insert(url.clone()) {
            break;
        }
        anyhow::ensure!(url.starts_with(base), "a page points off the API: {url}");
        let page = get(http, source, &url).await?;
        let batch = page["data"]
            .as_array()
            .with_context(|| format!("{url}: no `data` list in the answer"))?;
        items.extend(batch.iter().cloned());
        progress(items.len());
        // `pages.next` is a URL (offset pages) or `{starting_after}` (cursor).
        next = match &page["pages"]["next"] {
            Value::String(u) if !u.is_empty() => Some(u.clone()),
            Value::Object(o) => o.get("starting_after").and_then(Value::as_str).map(|c| {
                format!(
                    "{}&starting_after={c}",
                    url.split("&starting_after=").next().unwrap_or(&url)
                )
            }),
            _ => None,
        };
    }
    Ok(items)
}

/// Reads every published article.
pub async fn fetch(
    http: &reqwest::Client,
    source: &Source,
    progress: &mut dyn FnMut(usize),
) -> anyhow::Result<Fetched> {
    let base = source.base_url.trim_end_matches('/');
    let collections: HashMap<String, String> = list(
        http,
        source,
        format!("{base}/help_center/collections?per_page=150"),
        &mut |_| {},
    )
    .await?
    .iter()
    .filter_map(|c| Some((id_of(&c["id"])?, c["name"].as_str()?.to_owned())))
    .collect();
    let raw = list(
        http,
        source,
        format!("{base}/articles?per_page=150"),
        progress,
    )
    .await?;
    let mut articles = Vec::new();
    let mut drafts = 0;
    for a in raw {
        if a["state"].as_str() != Some("published") {
            drafts += 1;
            continue;
        }
        let Some(id) = id_of(&a["id"]) else { continue };
        let section = id_of(&a["parent_id"])
            .and_then(|p| collections.get(&p).cloned())
            .into_iter()
            .collect();
        articles.push(Article {
            id,
            title: a["title"].as_str().unwrap_or("Untitled").to_owned(),
            url: a["url"]
                .as_str()
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            updated_at: a["updated_at"].as_i64().map(|t| t.to_string()),
            locale: a["default_locale"].as_str().map(str::to_owned),
            audience: Audience::Public,
            section,
            labels: Vec::new(),
            html: a["body"].as_str().unwrap_or("").to_owned(),
        });
    }
    Ok(Fetched { articles, drafts })
}

#[cfg(test)]
mod tests {
    use axum::extract::Query;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::json;

    use super::*;

    async fn articles(headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer tok") {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let article = |id: &str, title: &str, state: &str| {
            json!({"id": id, "type": "article", "title": title, "state": state,
                   "body": format!("<p>{title}.</p>"), "url": format!("https://help.acme.test/{id}"),
                   "updated_at": 1_700_000_000, "parent_id": 9, "parent_type": "collection",
                   "default_locale": "en"})
        };
        match q.get("starting_after") {
            None => Json(
                json!({"type": "list", "data": [article("1", "Refunds", "published"),
                                                        article("2", "Draft idea", "draft")],
                               "pages": {"type": "pages", "page": 1, "total_pages": 2,
                                         "next": {"page": 2, "starting_after": "abc"}}}),
            )
            .into_response(),
            Some(_) => Json(
                json!({"type": "list", "data": [article("3", "Shipping", "published")],
                                  "pages": {"type": "pages", "page": 2, "total_pages": 2}}),
            )
            .into_response(),
        }
    }

    #[tokio::test]
    async fn published_articles_with_their_collections() {
        let app = Router::new()
            .route(
                "/help_center/collections",
                get(|| async { Json(json!({"type": "list", "data": [{"id": "9", "name": "Billing"}], "pages": {}})) }),
            )
            .route("/articles", get(articles));
        let base = crate::knowledge::import::tests::serve_double(app).await;
        let source = Source {
            base_url: base.clone(),
            token: "tok".into(),
        };
        let got = fetch(&reqwest::Client::new(), &source, &mut |_| {})
            .await
            .unwrap();
        let ids: Vec<&str> = got.articles.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["1", "3"]);
        assert_eq!(got.drafts, 1);
        assert_eq!(got.articles[0].section, ["Billing"]);
        assert_eq!(
            got.articles[0].url.as_deref(),
            Some("https://help.acme.test/1")
        );
        let wrong = Source {
            base_url: base,
            token: "nope".into(),
        };
        let err = fetch(&reqwest::Client::new(), &wrong, &mut |_| {})
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("401"), "{err}");
    }
}
