//! Serving the widget: the script, its caching, the demo page and CORS.

use crate::common;

use common::TestApp;

#[tokio::test]
async fn the_script_is_served_with_caching_headers() {
    let app = TestApp::spawn().await;
    let res = app.http.get(app.url("/widget.js")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["cache-control"].to_str().unwrap().contains("max-age="));
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let body = res.text().await.unwrap();
    assert!(body.contains("attachShadow"));

    // Revalidation with the ETag costs no body.
    let res = app
        .http
        .get(app.url("/widget.js"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
    assert!(res.text().await.unwrap().is_empty());
    let res = app
        .http
        .get(app.url("/widget.js"))
        .header("If-None-Match", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn local_mode_serves_a_demo_page_that_embeds_the_widget() {
    let app = TestApp::spawn().await;
    let res = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    assert!(res.headers().contains_key("content-security-policy"));
    let page = res.text().await.unwrap();
    assert!(page.contains(r#"<script src="/widget.js" data-deskhand-url="/""#));
    // The embed snippet names this server, escaped as text.
    let snippet = format!(
        "&lt;script src=\"http://{}/widget.js\" data-deskhand-url=\"http://{}\" defer&gt;",
        app.addr, app.addr
    );
    assert!(page.contains(&snippet), "{page}");
    app.stop().await;
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = TestApp::spawn_with(|c| c.cors_origins = vec!["https://shop.example".into()]).await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/v1/conversations"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
    };
    let res = preflight("https://shop.example").await.unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let allowed = res.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in ["authorization", "content-type", "idempotency-key"] {
        assert!(allowed.contains(h), "{allowed}");
    }
    let res = preflight("https://evil.example").await.unwrap();
    assert!(
        !res.headers().contains_key("access-control-allow-origin"),
        "{:?}",
        res.headers()
    );
    app.stop().await;
}
