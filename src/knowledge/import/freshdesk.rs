//! Freshdesk Solutions through the REST API v2: categories → folders →
//! articles (`/api/v2/solutions/categories`, `…/categories/{id}/folders`,
//! `…/folders/{id}/articles?page=N&per_page=100` until a short page), with
//! the API key as Basic credentials (`KEY:X`).
//!
//! Who may read: folder `visibility` 1 (all users) and 2 (logged-in users)
//! are public; 3 (agents) and every other restriction (selected
//! companies, contact segments) are `audience: internal`. `status` 1 is a
//! draft and skipped. URLs are the portal's `/support/solutions/articles/{id}`.

use serde_json::Value;

use super::{Article, Audience, Fetched, get_json, id_of, strings};

/// Articles a page (Freshdesk's maximum).
const PER_PAGE: usize = 100;
/// Most pages of one folder.
const MAX_PAGES: usize = 500;

/// Where and how to read.
#[derive(Debug, Clone)]
pub struct Source {
    /// `https://DOMAIN.freshdesk.com` (or a test double).
    pub base_url: String,
    /// An agent's API key.
    pub api_key: String,
}

async fn get(http: &reqwest::Client, source: &Source, path: &str) -> anyhow::Result<Value> {
    let url = format!("{}{path}", source.base_url.trim_end_matches('/'));
    get_json(http, &url, Some((&source.api_key, "X"))).await
}

fn list(v: Value, what: &str) -> anyhow::Result<Vec<Value>> {
    match v {
        Value::Array(items) => Ok(items),
        _ => anyhow::bail!("Freshdesk {what}: the answer is not a list"),
    }
}

/// Reads every published article.
pub async fn fetch(
    http: &reqwest::Client,
    source: &Source,
    progress: &mut dyn FnMut(usize),
) -> anyhow::Result<Fetched> {
    let base = source.base_url.trim_end_matches('/');
    let mut articles = Vec::new();
    let mut drafts = 0;
    let categories = list(
        get(http, source, "/api/v2/solutions/categories").await?,
        "categories",
    )?;
    for category in &categories {
        let Some(cid) = id_of(&category["id"]) else {
            continue;
        };
        let cname = category["name"].as_str().unwrap_or("").to_owned();
        let folders = list(
            get(
                http,
                source,
                &format!("/api/v2/solutions/categories/{cid}/folders"),
            )
            .await?,
            "folders",
        )?;
        for folder in &folders {
            let Some(fid) = id_of(&folder["id"]) else {
                continue;
            };
            let audience = match folder["visibility"].as_i64() {
                Some(1 | 2) => Audience::Public,
                _ => Audience::Internal,
            };
            let section: Vec<String> = [
                cname.clone(),
                folder["name"].as_str().unwrap_or("").to_owned(),
            ]
            .into_iter()
            .filter(|s| !s.trim().is_empty())
            .collect();
            for page in 1..=MAX_PAGES {
                let batch = list(
                    get(
                        http,
                        source,
                        &format!("/api/v2/solutions/folders/{fid}/articles?page={page}&per_page={PER_PAGE}"),
                    )
                    .await?,
                    "articles",
                )?;
                let short = batch.len() < PER_PAGE;
                for a in batch {
                    if a["status"].as_i64() == Some(1) {
                        drafts += 1;
                        continue;
                    }
                    let Some(id) = id_of(&a["id"]) else { continue };
                    articles.push(Article {
                        url: Some(format!("{base}/support/solutions/articles/{id}")),
                        id,
                        title: a["title"].as_str().unwrap_or("Untitled").to_owned(),
                        updated_at: a["updated_at"].as_str().map(str::to_owned),
                        locale: None,
                        audience,
                        section: section.clone(),
                        labels: strings(&a["tags"]),
                        html: a["description"].as_str().unwrap_or("").to_owned(),
                    });
                }
                progress(articles.len());
                if short {
                    break;
                }
            }
        }
    }
    Ok(Fetched { articles, drafts })
}

#[cfg(test)]
mod tests {
    use axum::extract::{Path, Query};
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::json;
    use std::collections::HashMap;

    use super::*;

    #[tokio::test]
    async fn folders_decide_who_may_read_and_pages_are_followed() {
        let app = Router::new()
            .route(
                "/api/v2/solutions/categories",
                get(|| async { Json(json!([{"id": 1, "name": "Help"}])) }),
            )
            .route(
                "/api/v2/solutions/categories/{id}/folders",
                get(|| async {
                    Json(json!([{"id": 10, "name": "FAQ", "visibility": 1},
                                {"id": 11, "name": "Agent playbooks", "visibility": 3}]))
                }),
            )
            .route(
                "/api/v2/solutions/folders/{id}/articles",
                get(|Path(id): Path<u64>, Query(q): Query<HashMap<String, String>>| async move {
                    let page: usize = q["page"].parse().unwrap();
                    let n = if id == 10 && page == 1 { 100 } else if id == 10 { 3 } else { 1 };
                    let items: Vec<Value> = (0..n)
                        .map(|i| json!({"id": id * 1000 + (page * 100 + i) as u64, "title": format!("A{i}"),
                                        "description": "<p>text</p>", "status": if i == 0 { 1 } else { 2 },
                                        "updated_at": "2026-01-01T00:00:00Z", "tags": ["t"]}))
                        .collect();
                    Json(Value::Array(items))
                }),
            );
        let base = crate::knowledge::import::tests::serve_double(app).await;
        let source = Source {
            base_url: base.clone(),
            api_key: "key".into(),
        };
        let got = fetch(&reqwest::Client::new(), &source, &mut |_| {})
            .await
            .unwrap();
        // Folder 10: pages of 100 and 3, one draft each; folder 11: its one article is a draft.
        assert_eq!(got.drafts, 3);
        assert_eq!(got.articles.len(), 99 + 2);
        let internal: Vec<&Article> = got
            .articles
            .iter()
            .filter(|a| a.audience == Audience::Internal)
            .collect();
        assert!(internal.is_empty(), "folder 11's only article was a draft");
        let a = &got.articles[0];
        assert_eq!(a.section, ["Help", "FAQ"]);
        assert_eq!(
            a.url.as_deref(),
            Some(format!("{base}/support/solutions/articles/{}", a.id).as_str())
        );
    }
}
