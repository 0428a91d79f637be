//! Help Scout Docs through the Docs API v1 (`https://docsapi.helpscout.net/v1`):
//! collections (`/collections?page=N`), their articles
//! (`/collections/{id}/articles?status=published&page=N`, `page`/`pages`
//! followed) and each article's text (`/articles/{id}`), with the Docs API
//! key as Basic credentials (`KEY:X`).
//!
//! Who may read: a `private` collection's articles are `audience:
//! internal`; `notpublished` articles are drafts and skipped.

use serde_json::Value;

use super::{Article, Audience, Fetched, get_json, id_of, strings};

/// Most pages of one listing.
const MAX_PAGES: u64 = 500;

/// Where and how to read.
#[derive(Debug, Clone)]
pub struct Source {
    /// `https://docsapi.helpscout.net/v1` (or a test double).
    pub base_url: String,
    /// The Docs API key.
    pub api_key: String,
}

async fn get(http: &reqwest::Client, source: &Source, path: &str) -> anyhow::Result<Value> {
    let url = format!("{}{path}", source.base_url.trim_end_matches('/'));
    get_json(http, &url, Some((&source.api_key, "X"))).await
}

/// Every item of `key` over the pages of `path` (which has a `?`).
async fn pages(
    http: &reqwest::Client,
    source: &Source,
    path: &str,
    key: &str,
) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut page = 1;
    loop {
        let v = get(http, source, &format!("{path}&page={page}")).await?;
        let list = &v[key];
        let batch = list["items"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("Help Scout {key}: no `{key}.items` in the answer"))?;
        items.extend(batch.iter().cloned());
        let last = list["pages"].as_u64().unwrap_or(1);
        if page >= last || page >= MAX_PAGES || batch.is_empty() {
            return Ok(items);
        }
        page += 1;
    }
}

/// Reads every published article.
pub async fn fetch(
    http: &reqwest::Client,
    source: &Source,
    progress: &mut dyn FnMut(usize),
) -> anyhow::Result<Fetched> {
    let mut articles = Vec::new();
    let mut drafts = 0;
    for c in pages(http, source, "/collections?sort=order", "collections").await? {
        let Some(cid) = id_of(&c["id"]) else { continue };
        let audience = match c["visibility"].as_str() {
            Some("public") => Audience::Public,
            _ => Audience::Internal,
        };
        let section: Vec<String> = c["name"].as_str().map(str::to_owned).into_iter().collect();
        for item in pages(
            http,
            source,
            &format!("/collections/{cid}/articles?status=all"),
            "articles",
        )
        .await?
        {
            if item["status"].as_str() != Some("published") {
                drafts += 1;
                continue;
            }
            let Some(id) = id_of(&item["id"]) else {
                continue;
            };
            let full = get(http, source, &format!("/articles/{id}")).await?;
            let a = &full["article"];
            articles.push(Article {
                id,
                title: a["name"]
                    .as_str()
                    .or(item["name"].as_str())
                    .unwrap_or("Untitled")
                    .to_owned(),
                url: a["publicUrl"]
                    .as_str()
                    .or(item["publicUrl"].as_str())
                    .map(str::to_owned),
                updated_at: a["updatedAt"]
                    .as_str()
                    .or(item["updatedAt"].as_str())
                    .map(str::to_owned),
                locale: None,
                audience,
                section: section.clone(),
                labels: strings(&a["keywords"]),
                html: a["text"].as_str().unwrap_or("").to_owned(),
            });
            progress(articles.len());
        }
    }
    Ok(Fetched { articles, drafts })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::extract::{Path, Query};
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn private_collections_are_internal_and_drafts_skipped() {
        let app = Router::new()
            .route(
                "/collections",
                get(|| async {
                    Json(json!({"collections": {"page": 1, "pages": 1, "count": 2, "items": [
                        {"id": "c1", "name": "Help", "visibility": "public"},
                        {"id": "c2", "name": "Team notes", "visibility": "private"}]}}))
                }),
            )
            .route(
                "/collections/{id}/articles",
                get(|Path(id): Path<String>, Query(q): Query<HashMap<String, String>>| async move {
                    let page: u64 = q["page"].parse().unwrap();
                    let items = match (id.as_str(), page) {
                        ("c1", 1) => json!([{"id": "a1", "status": "published", "name": "Refunds"},
                                            {"id": "a2", "status": "notpublished", "name": "Draft"}]),
                        ("c1", _) => json!([{"id": "a3", "status": "published", "name": "Shipping"}]),
                        _ => json!([{"id": "a4", "status": "published", "name": "Escalation playbook"}]),
                    };
                    let pages = if id == "c1" { 2 } else { 1 };
                    Json(json!({"articles": {"page": page, "pages": pages, "items": items}}))
                }),
            )
            .route(
                "/articles/{id}",
                get(|Path(id): Path<String>| async move {
                    Json(json!({"article": {"id": id, "name": format!("Article {id}"), "text": "<p>Body</p>",
                                            "publicUrl": format!("https://docs.acme.test/{id}"),
                                            "updatedAt": "2026-01-01T00:00:00Z", "keywords": ["k"]}}))
                }),
            );
        let base = crate::knowledge::import::tests::serve_double(app).await;
        let source = Source {
            base_url: base,
            api_key: "key".into(),
        };
        let got = fetch(&reqwest::Client::new(), &source, &mut |_| {})
            .await
            .unwrap();
        let ids: Vec<(&str, Audience)> = got
            .articles
            .iter()
            .map(|a| (a.id.as_str(), a.audience))
            .collect();
        assert_eq!(
            ids,
            [
                ("a1", Audience::Public),
                ("a3", Audience::Public),
                ("a4", Audience::Internal)
            ]
        );
        assert_eq!(got.drafts, 1);
        assert_eq!(got.articles[0].html, "<p>Body</p>");
        assert_eq!(
            got.articles[0].url.as_deref(),
            Some("https://docs.acme.test/a1")
        );
    }
}
