//! The chat widget, served from the binary: `GET /widget.js`, the one file a
//! site embeds, and in local mode a demo page at `/` that embeds it.
//!
//! The script URL is not versioned, so it is cached briefly and revalidated
//! with an `ETag` (a hash of the embedded file): a deploy reaches every page
//! within minutes, and an unchanged script costs a 304.

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const WIDGET_JS: &str = include_str!("../../widget/widget.js");
const DEMO_HTML: &str = include_str!("../../widget/demo.html");

/// Browsers reuse the script this long before revalidating it.
const SCRIPT_CACHE: &str = "public, max-age=300";

static WIDGET_ETAG: LazyLock<HeaderValue> = LazyLock::new(|| {
    let digest = hex::encode(Sha256::digest(WIDGET_JS.as_bytes()));
    HeaderValue::from_str(&format!("\"{}\"", &digest[..32])).expect("hex is a valid header")
});

/// `GET /widget.js`.
pub(super) async fn script(headers: HeaderMap) -> Response {
    let etag = WIDGET_ETAG.clone();
    let common = [
        (header::ETAG, etag.clone()),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(SCRIPT_CACHE),
        ),
        // Sites that isolate themselves (COEP) may still load it.
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("cross-origin"),
        ),
    ];
    if matches_etag(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        WIDGET_JS,
    )
        .into_response()
}

/// Whether `If-None-Match` names `etag` (weak or strong, or `*`).
fn matches_etag(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(wanted) = etag.to_str().ok() else {
        return false;
    };
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == wanted)
}

/// `GET /`: a page that embeds the widget from this same server and shows
/// the snippet to embed it elsewhere.
pub(super) async fn demo_page(headers: HeaderMap) -> Response {
    let page = DEMO_HTML.replace("{{ORIGIN}}", &origin(&headers));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; style-src 'self' 'unsafe-inline'; \
                     object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
                ),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        page,
    )
        .into_response()
}

/// This server's origin as the browser sees it, for the embed snippet. The
/// `Host` header is the caller's to choose, so anything but a plain host
/// name (or address) and port falls back to a placeholder rather than
/// reaching the page.
fn origin(headers: &HeaderMap) -> String {
    let plain = |v: &str| {
        !v.is_empty()
            && v.len() <= 255
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| plain(h));
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some(p) if p.trim().eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    match host {
        Some(host) => format!("{scheme}://{host}"),
        None => "https://support.example.com".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn etag_matching() {
        let etag = WIDGET_ETAG.clone();
        assert!(!matches_etag(&HeaderMap::new(), &etag));
        let mut h = HeaderMap::new();
        let weak = format!("\"other\", W/{}", etag.to_str().unwrap());
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&weak).unwrap());
        assert!(matches_etag(&h, &etag));
        assert!(matches_etag(&with("if-none-match", "*"), &etag));
        assert!(!matches_etag(&with("if-none-match", "\"nope\""), &etag));
    }

    #[test]
    fn the_snippet_origin_never_carries_markup() {
        assert_eq!(
            origin(&with("host", "127.0.0.1:8080")),
            "http://127.0.0.1:8080"
        );
        let mut h = with("host", "help.example.com");
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(origin(&h), "https://help.example.com");
        assert_eq!(origin(&with("host", "[::1]:8080")), "http://[::1]:8080");
        for evil in ["a\"><script>", "a b", "x/../y", ""] {
            let h = with("host", evil);
            assert_eq!(origin(&h), "https://support.example.com", "{evil}");
        }
        assert_eq!(origin(&HeaderMap::new()), "https://support.example.com");
    }

    #[test]
    fn the_demo_page_embeds_the_widget() {
        assert!(DEMO_HTML.contains(r#"<script src="/widget.js" data-deskhand-url="/""#));
        assert!(!WIDGET_JS.contains("innerHTML"), "text is never markup");
    }
}
