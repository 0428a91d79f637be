//! `deskhand kb import website` against a local site double (a real HTTP
//! server on 127.0.0.1): a sitemap, a robots.txt disallow, redirects (one
//! kept, one off the host, one looping), a link cycle, a page above the size
//! cap, a duplicate under its canonical URL, a non-HTML file, and a politeness
//! delay checked from the server's side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use deskhand::knowledge::import::website::{self, Source};

#[derive(Default)]
struct Site {
    /// (when, path and query) of every request.
    seen: Mutex<Vec<(Instant, String)>>,
    robots_status: Mutex<Option<StatusCode>>,
}

fn page(title: &str, main: &str, extra_head: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en-GB\"><head><title>{title}</title>{extra_head}\
         <script>trackVisitor()</script><style>.x{{}}</style></head><body>\
         <header>Acme Help header</header><nav><a href=\"/\">Home</a> <a href=\"/docs/a\">Docs</a></nav>\
         {main}<footer>Copyright Acme footer</footer></body></html>"
    )
}

async fn serve(State(site): State<Arc<Site>>, req: Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    site.seen
        .lock()
        .unwrap()
        .push((Instant::now(), path.clone()));
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let html =
        |body: String| ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    let redirect = |status: StatusCode, to: &str| {
        (status, [(header::LOCATION, to.to_owned())]).into_response()
    };
    match path.as_str() {
        "/robots.txt" => match *site.robots_status.lock().unwrap() {
            Some(status) if status.is_redirection() => redirect(status, "/moved/robots.txt"),
            Some(status) => status.into_response(),
            None => "User-agent: *\nDisallow: /private/\n\nUser-agent: BadBot\nDisallow: /\n"
                .into_response(),
        },
        "/moved/robots.txt" => "User-agent: *\nDisallow: /docs/\n".into_response(),
        "/sitemap.xml" => (
            [(header::CONTENT_TYPE, "application/xml")],
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>http://{host}/docs/a</loc><lastmod>2026-11-01</lastmod></url>
  <url><loc>http://{host}/docs/b</loc></url>
  <url><loc>http://{host}/private/secret</loc></url>
  <url><loc>http://{host}/old</loc></url>
  <url><loc>http://{host}/loop/1</loc></url>
  <url><loc>http://{host}/away</loc></url>
  <url><loc>http://{host}/huge</loc></url>
  <url><loc>http://{host}/docs/a?ref=sitemap&amp;x=1</loc></url>
  <url><loc>http://{host}/manual.pdf</loc></url>
  <url><loc>https://elsewhere.example/docs/x</loc></url>
</urlset>"#
            ),
        )
            .into_response(),
        "/" => html(page(
            "Acme Help",
            "<main><h1>Acme Help</h1><p>Welcome to the Acme help centre.</p>\
             <ul><li><a href=\"/docs/a\">Refunds</a></li><li><a href=\"docs/b#top\">Shipping</a></li>\
             <li><a href=\"/private/secret\">Staff</a></li><li><a href=\"/cycle/1\">Cycle</a></li>\
             <li><a href=\"/old\">Old</a></li><li><a href=\"https://elsewhere.example/\">Partner</a></li>\
             <li><a href=\"mailto:help@acme.example\">Mail us</a></li></ul></main>",
            "",
        )),
        "/docs/a" | "/docs/a?ref=sitemap&x=1" => html(page(
            "Refunds",
            "<main><h1>Refunds</h1><p>Annual plans are refunded within <strong>14 days</strong>.</p>\
             <table><tr><th>Plan</th><th>Refund</th></tr><tr><td>Annual</td><td>14 days</td></tr></table></main>",
            "<link rel=\"canonical\" href=\"/docs/a\">",
        )),
        "/docs/b" => html(page(
            "Shipping",
            "<div class=\"sidebar\">Sidebar links</div><article><h1>Shipping</h1>\
             <p>Parcels to Canada arrive within five working days.</p></article>",
            "",
        )),
        "/docs/c" => html(page(
            "Moved page",
            "<main><h1>Invoices</h1><p>Invoices are emailed on the first of the month.</p></main>",
            "",
        )),
        "/old" => redirect(StatusCode::MOVED_PERMANENTLY, "/docs/c"),
        "/loop/1" => redirect(StatusCode::FOUND, "/loop/2"),
        "/loop/2" => redirect(StatusCode::FOUND, "/loop/1"),
        "/away" => redirect(StatusCode::FOUND, "https://elsewhere.example/landing"),
        "/cycle/1" => html(page(
            "Cycle one",
            "<main><p>One of a cycle.</p><a href=\"/cycle/2\">next</a></main>",
            "",
        )),
        "/cycle/2" => html(page(
            "Cycle two",
            "<main><p>Two of a cycle.</p><a href=\"/cycle/1\">back</a> <a href=\"/cycle/2?\">self</a></main>",
            "",
        )),
        "/huge" => html(page(
            "Huge",
            &format!("<main><p>{}</p></main>", "lorem ipsum ".repeat(200_000)),
            "",
        )),
        "/manual.pdf" => ([(header::CONTENT_TYPE, "application/pdf")], "%PDF-1.4").into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn site() -> (String, Arc<Site>) {
    let state = Arc::new(Site::default());
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, state)
}

fn source(url: String) -> Source {
    let mut s = Source::new(url);
    s.delay = Duration::from_millis(60);
    s.max_bytes = 1 << 20;
    s
}

fn paths(site: &Site) -> Vec<String> {
    site.seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, p)| p.clone())
        .collect()
}

fn assert_polite(site: &Site, delay: Duration) {
    let seen = site.seen.lock().unwrap();
    // The server stamps on arrival, so a gap grows or shrinks by how late
    // each request was scheduled (the machine is shared): the median gap
    // is at least 80 % of the delay, and all together at least 90 % of it
    // each. A crawler without a delay sends these within a millisecond or
    // two.
    let mut gaps: Vec<Duration> = seen.windows(2).map(|p| p[1].0 - p[0].0).collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    assert!(
        median >= delay.mul_f64(0.8),
        "median gap {median:?}: {gaps:?}"
    );
    let span = seen.last().unwrap().0 - seen[0].0;
    let least = delay.mul_f64(0.9 * (seen.len() - 1) as f64);
    assert!(span >= least, "{} requests in {span:?}", seen.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sitemap_crawl_keeps_the_main_content_of_allowed_same_host_pages() {
    let (base, site) = site().await;
    let (fetched, stats) = website::fetch(&source(format!("{base}/sitemap.xml")), &mut |_| {})
        .await
        .unwrap();
    let by_url: HashMap<String, &deskhand::knowledge::import::Article> = fetched
        .articles
        .iter()
        .map(|a| (a.url.clone().unwrap(), a))
        .collect();
    let mut urls: Vec<&str> = by_url
        .keys()
        .map(|u| u.strip_prefix(&base).unwrap())
        .collect();
    urls.sort();
    // The redirect's target is kept under its own URL; the duplicate of
    // /docs/a under its canonical URL once.
    assert_eq!(urls, ["/docs/a", "/docs/b", "/docs/c"], "{stats:?}");
    let a = by_url[&format!("{base}/docs/a")];
    assert_eq!(a.title, "Refunds");
    assert_eq!(a.updated_at.as_deref(), Some("2026-11-01"));
    assert_eq!(a.locale.as_deref(), Some("en-gb"));
    assert_eq!(a.section, ["docs"]);
    let md = deskhand::knowledge::import::html_to_markdown(&a.html);
    assert!(
        md.contains("**14 days**") && md.contains("| Annual"),
        "{md}"
    );
    let b = deskhand::knowledge::import::html_to_markdown(&by_url[&format!("{base}/docs/b")].html);
    assert!(
        b.contains("five working days") && !b.contains("Sidebar"),
        "{b}"
    );
    for a in &fetched.articles {
        let md = deskhand::knowledge::import::html_to_markdown(&a.html);
        for chrome in ["Acme Help header", "footer", "trackVisitor", "Home"] {
            assert!(!md.contains(chrome), "{chrome} kept in {md}");
        }
    }

    let seen = paths(&site);
    assert_eq!(seen[0], "/robots.txt", "robots.txt is read first");
    assert!(!seen.iter().any(|p| p.starts_with("/private")), "{seen:?}");
    // Every URL once, the loop's hops included.
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "fetched twice: {seen:?}");
    assert!(seen.contains(&"/loop/2".to_owned()));
    assert_eq!(stats.disallowed, 1);
    assert_eq!(stats.redirect_loops, 1);
    assert_eq!(stats.redirects, 2, "/old → /docs/c, /loop/1 → /loop/2");
    assert_eq!(stats.off_host, 2, "the sitemap entry and the redirect away");
    assert_eq!(stats.too_large, 1);
    assert_eq!(stats.not_html, 1);
    assert_eq!(stats.duplicates, 1);
    assert_eq!(stats.pages, 3);
    assert_eq!(stats.requests, seen.len());
    assert_polite(&site, Duration::from_millis(60));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_page_crawl_follows_same_host_links_once_and_stops_at_the_cap() {
    let (base, site) = site().await;
    let (fetched, stats) = website::fetch(&source(format!("{base}/")), &mut |_| {})
        .await
        .unwrap();
    let mut titles: Vec<&str> = fetched.articles.iter().map(|a| a.title.as_str()).collect();
    titles.sort();
    assert_eq!(
        titles,
        [
            "Acme Help",
            "Cycle one",
            "Cycle two",
            "Moved page",
            "Refunds",
            "Shipping"
        ],
        "{stats:?}"
    );
    let seen = paths(&site);
    assert!(!seen.iter().any(|p| p.starts_with("/private")), "{seen:?}");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "fetched twice: {seen:?}");
    assert!(!stats.hit_page_cap);

    // The cap: the start page and one more.
    let mut capped = source(format!("{base}/"));
    capped.max_pages = 2;
    let (fetched, stats) = website::fetch(&capped, &mut |_| {}).await.unwrap();
    assert_eq!(fetched.articles.len(), 2);
    assert!(stats.hit_page_cap);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_whose_rules_are_unknown_or_forbid_the_start_is_not_crawled() {
    let (base, site) = site().await;
    *site.robots_status.lock().unwrap() = Some(StatusCode::SERVICE_UNAVAILABLE);
    let mut s = source(format!("{base}/"));
    s.delay = Duration::from_millis(1);
    let err = website::fetch(&s, &mut |_| {}).await.err().unwrap();
    assert!(format!("{err:#}").contains("503"), "{err:#}");
    // A missing robots.txt allows everything.
    *site.robots_status.lock().unwrap() = Some(StatusCode::NOT_FOUND);
    let (fetched, _) = website::fetch(&source(format!("{base}/docs/b")), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(fetched.articles.len(), 6, "/docs/b and the pages it links");
    assert!(paths(&site).contains(&"/private/secret".to_owned()));
    // A robots.txt that moved is followed.
    *site.robots_status.lock().unwrap() = Some(StatusCode::MOVED_PERMANENTLY);
    let err = website::fetch(&source(format!("{base}/docs/b")), &mut |_| {})
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("disallows"), "{err:#}");
    // The start URL itself disallowed.
    *site.robots_status.lock().unwrap() = None;
    let err = website::fetch(&source(format!("{base}/private/secret")), &mut |_| {})
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("disallows"), "{err:#}");
    for bad in ["ftp://x.example/", "not a url", "http://"] {
        assert!(
            website::fetch(&source(bad.into()), &mut |_| {})
                .await
                .is_err(),
            "{bad}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_writes_a_kb_the_index_reads_and_a_rerun_is_a_sync() {
    let (base, _site) = site().await;
    let out = tempfile::tempdir().unwrap();
    let run = || {
        let out = out.path().to_owned();
        let url = format!("{base}/sitemap.xml");
        async move {
            let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_deskhand"))
                .args(["kb", "import", "website", "--url", &url, "--out"])
                .arg(&out)
                .args(["--delay-ms", "5", "--max-page-kib", "512"])
                .output()
                .await
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
        }
    };
    let first = run().await;
    assert_eq!(first["summary"]["written"], 3, "{first}");
    assert_eq!(first["crawl"]["too_large"], 1, "{first}");
    let docs = deskhand::knowledge::tantivy::load_documents(out.path(), &mut |_, _| {}).unwrap();
    let refunds = docs.iter().find(|d| d.title == "Refunds").unwrap();
    assert_eq!(
        refunds.url.as_deref(),
        Some(format!("{base}/docs/a").as_str())
    );
    let index = deskhand::knowledge::TantivyIndex::in_memory(&docs).unwrap();
    let hits = index.search("how long do annual refunds take", 1).unwrap();
    assert!(hits[0].text.contains("14 days"), "{hits:?}");
    // Again: the page with a lastmod is unchanged, the others rewritten.
    let second = run().await;
    assert_eq!(second["summary"]["unchanged"], 1, "{second}");
    assert_eq!(second["summary"]["removed"], 0, "{second}");
}

// ---- Re-imports: what is gone upstream goes, what was not reached stays.

/// A site whose pages change between imports: path → (status, body; for
/// a redirect, its target).
#[derive(Default)]
struct Evolving {
    pages: Mutex<HashMap<String, (StatusCode, String)>>,
}

impl Evolving {
    fn set(&self, path: &str, status: StatusCode, body: String) {
        self.pages
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body));
    }

    fn article(&self, path: &str, title: &str, links: &[&str]) {
        let links: String = links
            .iter()
            .map(|l| format!("<a href=\"{l}\">{l}</a> "))
            .collect();
        self.set(
            path,
            StatusCode::OK,
            page(
                title,
                &format!("<main><h1>{title}</h1><p>All about {title}.</p>{links}</main>"),
                "",
            ),
        );
    }

    fn sitemap(&self, base: &str, paths: &[&str]) {
        let urls: String = paths
            .iter()
            .map(|p| format!("<url><loc>{base}{p}</loc></url>"))
            .collect();
        self.set(
            "/sitemap.xml",
            StatusCode::OK,
            format!(
                "<?xml version=\"1.0\"?><urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">{urls}</urlset>"
            ),
        );
    }
}

async fn serve_evolving(State(site): State<Arc<Evolving>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    match site.pages.lock().unwrap().get(&path) {
        // A redirect's body is where it points.
        Some((status, to)) if status.is_redirection() => {
            (*status, [(header::LOCATION, to.clone())]).into_response()
        }
        Some((status, body)) if path.ends_with(".xml") => (
            *status,
            [(header::CONTENT_TYPE, "application/xml")],
            body.clone(),
        )
            .into_response(),
        Some((status, body)) => (
            *status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn evolving() -> (String, Arc<Evolving>) {
    let state = Arc::new(Evolving::default());
    let app = axum::Router::new()
        .fallback(serve_evolving)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, state)
}

/// `deskhand kb import website --url URL --out OUT --max-pages N`: its JSON.
async fn import(url: &str, out: &std::path::Path, max_pages: usize) -> serde_json::Value {
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_deskhand"))
        .args(["kb", "import", "website", "--url", url, "--out"])
        .arg(out)
        .args(["--delay-ms", "5", "--max-pages", &max_pages.to_string()])
        .output()
        .await
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn titles(out: &std::path::Path) -> Vec<String> {
    let mut t: Vec<String> = deskhand::knowledge::tantivy::load_documents(out, &mut |_, _| {})
        .unwrap()
        .into_iter()
        .map(|d| d.title)
        .collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_crawl_reimport_removes_404_410_and_moved_pages_and_keeps_unreached_ones() {
    let (base, site) = evolving().await;
    site.article("/", "Home", &["/a", "/b", "/c", "/d", "/m"]);
    for (p, t) in [
        ("/a", "Alpha"),
        ("/b", "Bravo"),
        ("/c", "Charlie"),
        ("/d", "Delta"),
        ("/m", "Mike"),
    ] {
        site.article(p, t, &[]);
    }
    let out = tempfile::tempdir().unwrap();
    let start = format!("{base}/");
    let first = import(&start, out.path(), 100).await;
    assert_eq!(first["summary"]["written"], 6, "{first}");

    // Upstream: Alpha is deleted (404), Bravo gone for good (410), Charlie
    // errs (503, retried, then a fetch error), Delta is no longer linked
    // but still there, Mike moved to /mike, and Echo is new.
    site.article("/", "Home", &["/e", "/mike"]);
    site.set("/a", StatusCode::NOT_FOUND, String::new());
    site.set("/b", StatusCode::GONE, String::new());
    site.set("/c", StatusCode::SERVICE_UNAVAILABLE, String::new());
    site.set("/m", StatusCode::MOVED_PERMANENTLY, "/mike".into());
    site.article("/mike", "Mike", &[]);
    site.article("/e", "Echo", &[]);
    let second = import(&start, out.path(), 100).await;
    let summary = &second["summary"];
    assert_eq!(summary["removed"], 3, "{second}");
    assert_eq!(summary["kept_unreached"], 1, "{second}");
    assert_eq!(second["crawl"]["gone"], 3, "{second}");
    assert_eq!(
        titles(out.path()),
        ["Charlie", "Delta", "Echo", "Home", "Mike"],
        "{second}"
    );

    // A page cap that stops the crawl at the start page: nothing else is
    // reached, and nothing is removed.
    let capped = import(&start, out.path(), 1).await;
    assert_eq!(capped["crawl"]["hit_page_cap"], true, "{capped}");
    assert_eq!(capped["summary"]["removed"], 0, "{capped}");
    assert_eq!(capped["summary"]["kept_unreached"], 4, "{capped}");
    assert_eq!(
        titles(out.path()),
        ["Charlie", "Delta", "Echo", "Home", "Mike"]
    );
    // Charlie back: it is listed again, not duplicated.
    site.article("/c", "Charlie", &[]);
    let back = import(&start, out.path(), 100).await;
    assert_eq!(back["summary"]["kept_unreached"], 0, "{back}");
    assert_eq!(
        titles(out.path()),
        ["Charlie", "Delta", "Echo", "Home", "Mike"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sitemap_reimport_removes_pages_it_no_longer_lists_only_when_read_in_full() {
    let (base, site) = evolving().await;
    for (p, t) in [("/a", "Alpha"), ("/b", "Bravo"), ("/c", "Charlie")] {
        site.article(p, t, &[]);
    }
    site.sitemap(&base, &["/a", "/b", "/c"]);
    let out = tempfile::tempdir().unwrap();
    let url = format!("{base}/sitemap.xml");
    let first = import(&url, out.path(), 100).await;
    assert_eq!(first["summary"]["written"], 3, "{first}");

    // Bravo is dropped from the sitemap (the page itself still answers);
    // Charlie is listed but errs this time.
    site.sitemap(&base, &["/a", "/c"]);
    site.set("/c", StatusCode::INTERNAL_SERVER_ERROR, String::new());
    let second = import(&url, out.path(), 100).await;
    assert_eq!(second["summary"]["removed"], 1, "{second}");
    assert_eq!(second["summary"]["kept_unreached"], 1, "{second}");
    assert_eq!(titles(out.path()), ["Alpha", "Charlie"]);

    // A sitemap index whose second sitemap cannot be read: a page missing
    // from the part read may be in the other, so it stays.
    site.set(
        "/sitemap.xml",
        StatusCode::OK,
        format!(
            "<?xml version=\"1.0\"?><sitemapindex><sitemap><loc>{base}/s1.xml</loc></sitemap>\
             <sitemap><loc>{base}/s2.xml</loc></sitemap></sitemapindex>"
        ),
    );
    site.set(
        "/s1.xml",
        StatusCode::OK,
        format!("<?xml version=\"1.0\"?><urlset><url><loc>{base}/a</loc></url></urlset>"),
    );
    site.set("/s2.xml", StatusCode::INTERNAL_SERVER_ERROR, String::new());
    let partial = import(&url, out.path(), 100).await;
    assert_eq!(partial["summary"]["removed"], 0, "{partial}");
    assert_eq!(partial["summary"]["kept_unreached"], 1, "{partial}");
    assert_eq!(titles(out.path()), ["Alpha", "Charlie"]);
}
