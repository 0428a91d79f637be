//! `deskhand kb import website`: a help centre that is only a website,
//! crawled politely into articles.
//!
//! Invariants:
//! * Only the start URL's host (scheme, host and port) is fetched; links,
//!   redirects, sitemaps and canonical URLs elsewhere are skipped.
//! * robots.txt is read first and honoured for every URL, redirect hops
//!   included (RFC 9309: the group for `deskhand`, else `*`; the longest
//!   matching rule wins, `Allow` on a tie; `*` and `$` patterns). A robots.txt
//!   that answers 5xx or cannot be fetched stops the crawl: the site may
//!   have meant to disallow everything. Its `Crawl-delay` lengthens the
//!   delay, never shortens it.
//! * One request at a time, at least `delay` apart; a 429 or 503 waits its
//!   `Retry-After` (at most two minutes) and is retried.
//! * Termination: a URL is fetched at most once (fragments removed), a page
//!   is kept once under its canonical URL, redirect chains stop at
//!   [`MAX_REDIRECTS`] hops or at a hop already in the chain, and the crawl
//!   stops after `max_pages` fetches. A page above `max_bytes` is dropped,
//!   never indexed truncated, and its body is not read past the cap.
//! * The article is the page's main content: `<main>`, else `<article>`,
//!   else `[role=main]`, else `<body>`, with navigation, headers, footers,
//!   scripts, styles and forms dropped by the HTML-to-Markdown conversion.
//!   Pages marked `noindex` are not kept; `nofollow` pages' links are not
//!   followed.
//! * A re-import ([`recrawl`]) fetches the previous import's pages again
//!   (a link crawl queues them first) and reports as gone only what the
//!   site says is: a 404 or 410, a page that now redirects to another
//!   one, a page missing from a sitemap read in full. A page not reached
//!   (the page cap, a network error, a 5xx, robots.txt) is not gone, and
//!   the sync keeps its file.

use std::collections::{HashSet, VecDeque};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use html5ever::tendril::TendrilSink;
use markup5ever_rcdom::{Handle, NodeData, RcDom, SerializableHandle};
use regex::Regex;
use serde::Serialize;
use sha2::{Digest, Sha256};
use url::Url;

use super::{Article, Audience, Fetched};

/// The product token robots.txt groups are matched against.
pub const AGENT_TOKEN: &str = "deskhand";
/// Redirect hops followed for one URL.
pub const MAX_REDIRECTS: usize = 5;
/// Sitemaps read (a sitemap index and the sitemaps it lists).
const MAX_SITEMAPS: usize = 50;
/// Longest wait honoured (Retry-After, Crawl-delay).
const MAX_WAIT: Duration = Duration::from_secs(120);

/// What to crawl and how politely.
#[derive(Debug, Clone)]
pub struct Source {
    /// A start page, or a sitemap (`…/sitemap.xml`, or any URL answering a
    /// `<urlset>` or `<sitemapindex>`).
    pub start: String,
    /// Least time between two requests.
    pub delay: Duration,
    /// Most pages fetched.
    pub max_pages: usize,
    /// Largest page kept, bytes.
    pub max_bytes: usize,
    /// The User-Agent sent.
    pub user_agent: String,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Source {
    /// Defaults: 0.5 s between requests, 1,000 pages, 2 MiB a page.
    pub fn new(start: impl Into<String>) -> Self {
        Self {
            start: start.into(),
            delay: Duration::from_millis(500),
            max_pages: 1_000,
            max_bytes: 2 << 20,
            user_agent: format!(
                "{AGENT_TOKEN}/{} (knowledge-base import)",
                env!("CARGO_PKG_VERSION")
            ),
            timeout: Duration::from_secs(30),
        }
    }
}

/// What a crawl skipped, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CrawlStats {
    /// Requests made (robots.txt and sitemaps included).
    pub requests: usize,
    /// Pages kept as articles.
    pub pages: usize,
    /// URLs robots.txt disallows.
    pub disallowed: usize,
    /// Links, redirects or sitemap entries to another host.
    pub off_host: usize,
    /// Redirects followed.
    pub redirects: usize,
    /// Redirect chains that looped or were too long.
    pub redirect_loops: usize,
    /// Pages above the size cap.
    pub too_large: usize,
    /// Answers that were not HTML.
    pub not_html: usize,
    /// Pages already kept under the same canonical URL.
    pub duplicates: usize,
    /// Pages marked noindex, or with no text.
    pub empty_or_noindex: usize,
    /// Errors (4xx, 5xx, network).
    pub errors: usize,
    /// Pages of the previous import the site says are gone (404, 410,
    /// moved, out of the sitemap).
    pub gone: usize,
    /// Whether the page cap stopped the crawl.
    pub hit_page_cap: bool,
}

// ---------------------------------------------------------------- robots.txt

/// The rules of robots.txt that apply to deskhand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Robots {
    /// (allow, pattern).
    rules: Vec<(bool, String)>,
    /// `Crawl-delay`, seconds.
    pub crawl_delay: Option<f64>,
}

impl Robots {
    /// Everything allowed (no robots.txt).
    pub fn allow_all() -> Self {
        Self::default()
    }

    /// Parses robots.txt for the agent `token` (RFC 9309).
    pub fn parse(text: &str, token: &str) -> Self {
        #[derive(Default)]
        struct Group {
            agents: Vec<String>,
            rules: Vec<(bool, String)>,
            delay: Option<f64>,
        }
        let mut groups: Vec<Group> = Vec::new();
        let mut in_agents = false;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            match key.as_str() {
                "user-agent" => {
                    if !in_agents {
                        groups.push(Group::default());
                    }
                    in_agents = true;
                    if let Some(g) = groups.last_mut() {
                        g.agents.push(value.to_ascii_lowercase());
                    }
                }
                "allow" | "disallow" => {
                    in_agents = false;
                    if let Some(g) = groups.last_mut()
                        && !value.is_empty()
                    {
                        g.rules.push((key == "allow", value.to_owned()));
                    }
                }
                "crawl-delay" => {
                    in_agents = false;
                    if let Some(g) = groups.last_mut() {
                        g.delay = value
                            .parse()
                            .ok()
                            .filter(|d: &f64| d.is_finite() && *d >= 0.0);
                    }
                }
                _ => {}
            }
        }
        let token = token.to_ascii_lowercase();
        let mine: Vec<&Group> = groups
            .iter()
            .filter(|g| {
                g.agents
                    .iter()
                    .any(|a| a != "*" && token.contains(a.as_str()))
            })
            .collect();
        let chosen = if mine.is_empty() {
            groups
                .iter()
                .filter(|g| g.agents.iter().any(|a| a == "*"))
                .collect()
        } else {
            mine
        };
        Self {
            rules: chosen.iter().flat_map(|g| g.rules.clone()).collect(),
            crawl_delay: chosen.iter().filter_map(|g| g.delay).reduce(f64::max),
        }
    }

    /// Whether `path` (path and query, starting with `/`) may be fetched.
    pub fn allowed(&self, path: &str) -> bool {
        let mut best: Option<(usize, bool)> = None;
        for (allow, pattern) in &self.rules {
            if matches(pattern, path) {
                let len = pattern.len();
                best = match best {
                    Some((l, a)) if l > len || (l == len && a) => Some((l, a)),
                    _ => Some((len, *allow)),
                };
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

/// A robots.txt pattern: a path prefix with `*` for any run of characters
/// and a final `$` for the end.
fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut at = 0;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            if !path.starts_with(part) {
                return false;
            }
            at = part.len();
        } else if i == parts.len() - 1 && anchored {
            return path.len() >= at + part.len() && path.ends_with(part);
        } else {
            match path[at..].find(part) {
                Some(p) => at += p + part.len(),
                None => return false,
            }
        }
    }
    !anchored || at == path.len()
}

// ---------------------------------------------------------------- sitemaps

static URL_ENTRY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?is)<url\b[^>]*>(.*?)</url\s*>").expect("static regex"));
static SITEMAP_ENTRY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?is)<sitemap\b[^>]*>(.*?)</sitemap\s*>").expect("static regex"));
static LOC: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?is)<loc\s*>\s*(.*?)\s*</loc\s*>").expect("static regex"));
static LASTMOD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?is)<lastmod\s*>\s*(.*?)\s*</lastmod\s*>").expect("static regex")
});

/// A sitemap's content (sitemaps.org protocol).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sitemap {
    /// Page URLs with their `lastmod`.
    pub urls: Vec<(String, Option<String>)>,
    /// Further sitemaps (a sitemap index).
    pub sitemaps: Vec<String>,
}

fn unescape_xml(s: &str) -> String {
    let s = s
        .trim()
        .trim_start_matches("<![CDATA[")
        .trim_end_matches("]]>");
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Whether `text` is a sitemap or sitemap index.
pub fn is_sitemap(text: &str) -> bool {
    let head: String = text
        .chars()
        .take(2_000)
        .collect::<String>()
        .to_ascii_lowercase();
    head.contains("<urlset") || head.contains("<sitemapindex")
}

/// Reads a sitemap or sitemap index; entries without a `<loc>` are skipped.
pub fn parse_sitemap(text: &str) -> Sitemap {
    let field = |re: &Regex, block: &str| re.captures(block).map(|c| unescape_xml(&c[1]));
    Sitemap {
        urls: URL_ENTRY
            .captures_iter(text)
            .filter_map(|c| {
                let loc = field(&LOC, &c[1])?;
                Some((loc, field(&LASTMOD, &c[1]).filter(|s| !s.is_empty())))
            })
            .collect(),
        sitemaps: SITEMAP_ENTRY
            .captures_iter(text)
            .filter_map(|c| field(&LOC, &c[1]))
            .collect(),
    }
}

// ---------------------------------------------------------------- pages

/// What a page holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// `<title>`, else the first `<h1>`.
    pub title: Option<String>,
    /// `<link rel=canonical href>`, as written.
    pub canonical: Option<String>,
    /// `<html lang>`.
    pub lang: Option<String>,
    /// `<meta name=robots>` says noindex.
    pub noindex: bool,
    /// `<meta name=robots>` says nofollow.
    pub nofollow: bool,
    /// `<a href>`s, as written.
    pub links: Vec<String>,
    /// The main content's HTML.
    pub main_html: String,
}

fn element(h: &Handle) -> Option<&str> {
    match &h.data {
        NodeData::Element { name, .. } => Some(&name.local),
        _ => None,
    }
}

fn attr(h: &Handle, key: &str) -> Option<String> {
    match &h.data {
        NodeData::Element { attrs, .. } => attrs
            .borrow()
            .iter()
            .find(|a| a.name.local.as_ref().eq_ignore_ascii_case(key))
            .map(|a| a.value.to_string()),
        _ => None,
    }
}

fn text_of(h: &Handle, out: &mut String) {
    if let NodeData::Text { contents } = &h.data {
        out.push_str(&contents.borrow());
    }
    for c in h.children.borrow().iter() {
        text_of(c, out);
    }
}

/// Every element under `h`, depth first, in document order.
fn elements(h: &Handle, out: &mut Vec<Handle>) {
    for c in h.children.borrow().iter() {
        if element(c).is_some() {
            out.push(c.clone());
        }
        elements(c, out);
    }
}

/// Parses a page: its metadata, links and main content.
pub fn parse_page(html: &str) -> Page {
    let dom = html5ever::parse_document(RcDom::default(), Default::default()).one(html);
    let mut all = Vec::new();
    elements(&dom.document, &mut all);
    let mut page = Page::default();
    let mut h1 = None;
    for e in &all {
        match element(e).unwrap_or("") {
            "title" if page.title.is_none() => {
                let mut t = String::new();
                text_of(e, &mut t);
                page.title = Some(t.split_whitespace().collect::<Vec<_>>().join(" "))
                    .filter(|t| !t.is_empty());
            }
            "h1" if h1.is_none() => {
                let mut t = String::new();
                text_of(e, &mut t);
                h1 = Some(t.split_whitespace().collect::<Vec<_>>().join(" "))
                    .filter(|t| !t.is_empty());
            }
            "html" => page.lang = attr(e, "lang").filter(|l| !l.trim().is_empty()),
            "link"
                if attr(e, "rel").is_some_and(|r| {
                    r.split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("canonical"))
                }) && page.canonical.is_none() =>
            {
                page.canonical = attr(e, "href");
            }
            "meta" if attr(e, "name").is_some_and(|n| n.eq_ignore_ascii_case("robots")) => {
                let c = attr(e, "content").unwrap_or_default().to_ascii_lowercase();
                page.noindex |= c.contains("noindex") || c.contains("none");
                page.nofollow |= c.contains("nofollow") || c.contains("none");
            }
            "a" => {
                if let Some(href) = attr(e, "href") {
                    page.links.push(href);
                }
            }
            _ => {}
        }
    }
    page.title = page.title.or(h1);
    let pick = |f: &dyn Fn(&Handle) -> bool| all.iter().find(|e| f(e)).cloned();
    let main = pick(&|e| element(e) == Some("main"))
        .or_else(|| pick(&|e| element(e) == Some("article")))
        .or_else(|| pick(&|e| attr(e, "role").is_some_and(|r| r.eq_ignore_ascii_case("main"))))
        .or_else(|| pick(&|e| element(e) == Some("body")));
    if let Some(main) = main {
        let mut out = Vec::new();
        let opts = html5ever::serialize::SerializeOpts {
            traversal_scope: html5ever::serialize::TraversalScope::IncludeNode,
            ..Default::default()
        };
        if html5ever::serialize(&mut out, &SerializableHandle::from(main), opts).is_ok() {
            page.main_html = String::from_utf8_lossy(&out).into_owned();
        }
    }
    page
}

// ---------------------------------------------------------------- crawl

/// A URL without its fragment: the crawl's identity of a page.
fn normalize(mut u: Url) -> Url {
    u.set_fragment(None);
    u
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn path_of(u: &Url) -> String {
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    }
}

struct Crawler<'a> {
    http: reqwest::Client,
    source: &'a Source,
    origin: Url,
    robots: Robots,
    delay: Duration,
    last: Option<Instant>,
    stats: CrawlStats,
    /// URLs that answered 404 or 410.
    gone: HashSet<Url>,
    /// (URL, the URL it redirects to): gone once the target is kept.
    moved: Vec<(Url, Url)>,
    /// Whether every sitemap listed was read.
    sitemaps_complete: bool,
}

/// One answer, redirects resolved.
enum Got {
    Page {
        url: Url,
        body: String,
        last_modified: Option<String>,
        html: bool,
    },
    Skipped,
}

impl Crawler<'_> {
    async fn pause(&mut self) {
        if let Some(last) = self.last {
            let due = last + self.delay;
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
        self.last = Some(Instant::now());
    }

    /// One GET, rate limited, waiting out 429/503 `Retry-After`.
    async fn get(&mut self, url: &Url) -> anyhow::Result<reqwest::Response> {
        for attempt in 1..=3 {
            self.pause().await;
            self.stats.requests += 1;
            let res = self
                .http
                .get(url.as_str())
                .send()
                .await
                .with_context(|| format!("GET {url}"))?;
            let status = res.status().as_u16();
            if (status == 429 || status == 503) && attempt < 3 {
                let wait = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(self.delay * 4, Duration::from_secs);
                anyhow::ensure!(
                    wait <= MAX_WAIT,
                    "GET {url}: {status}, Retry-After {}s",
                    wait.as_secs()
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            return Ok(res);
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// Reads a body up to `max_bytes`; `None` when it is larger.
    async fn body(&self, mut res: reqwest::Response) -> anyhow::Result<Option<Vec<u8>>> {
        if res
            .content_length()
            .is_some_and(|n| n as usize > self.source.max_bytes)
        {
            return Ok(None);
        }
        let mut out = Vec::new();
        while let Some(chunk) = res.chunk().await? {
            if out.len() + chunk.len() > self.source.max_bytes {
                return Ok(None);
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Some(out))
    }

    /// Fetches `url`, following same-host redirects that robots.txt allows.
    async fn fetch(&mut self, url: &Url, visited: &mut HashSet<Url>) -> Got {
        let mut chain = vec![url.clone()];
        let mut at = url.clone();
        loop {
            let res = match self.get(&at).await {
                Ok(r) => r,
                Err(error) => {
                    tracing::warn!(message = "A page could not be fetched.", url = %at, error = %format!("{error:#}"));
                    self.stats.errors += 1;
                    return Got::Skipped;
                }
            };
            let status = res.status();
            if status.is_redirection() {
                let next = res
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| at.join(l).ok())
                    .map(normalize);
                let Some(next) = next else {
                    self.stats.errors += 1;
                    return Got::Skipped;
                };
                if !same_origin(&next, &self.origin) {
                    self.stats.off_host += 1;
                    return Got::Skipped;
                }
                if chain.contains(&next) || chain.len() > MAX_REDIRECTS {
                    self.stats.redirect_loops += 1;
                    return Got::Skipped;
                }
                if !self.robots.allowed(&path_of(&next)) {
                    self.stats.disallowed += 1;
                    return Got::Skipped;
                }
                self.stats.redirects += 1;
                // The target is fetched now: not again from the queue.
                if !visited.insert(next.clone()) {
                    self.moved
                        .extend(chain.iter().map(|from| (from.clone(), next.clone())));
                    return Got::Skipped;
                }
                chain.push(next.clone());
                at = next;
                continue;
            }
            if !status.is_success() {
                // The site says these are no more; any other failure
                // (5xx, 403, 429 after retries) says nothing about them.
                if status.as_u16() == 404 || status.as_u16() == 410 {
                    self.gone.extend(chain.iter().cloned());
                }
                self.stats.errors += 1;
                return Got::Skipped;
            }
            // Moved: what was at the first URLs now lives at this one.
            self.moved.extend(
                chain[..chain.len() - 1]
                    .iter()
                    .map(|from| (from.clone(), at.clone())),
            );
            let content_type = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            let html = content_type.contains("html") || content_type.is_empty();
            let last_modified = res
                .headers()
                .get("last-modified")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return match self.body(res).await {
                Ok(Some(bytes)) => Got::Page {
                    url: at,
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                    last_modified,
                    html,
                },
                Ok(None) => {
                    self.stats.too_large += 1;
                    Got::Skipped
                }
                Err(_) => {
                    self.stats.errors += 1;
                    Got::Skipped
                }
            };
        }
    }

    /// The page URLs of the sitemap at `url` (and the sitemaps it lists).
    async fn sitemap_urls(
        &mut self,
        first: Sitemap,
        visited: &mut HashSet<Url>,
    ) -> Vec<(Url, Option<String>)> {
        let mut out = Vec::new();
        let mut pending: VecDeque<Sitemap> = VecDeque::from([first]);
        let mut read = 1;
        while let Some(map) = pending.pop_front() {
            for (loc, lastmod) in map.urls {
                match self.origin.join(&loc).map(normalize) {
                    Ok(u) if same_origin(&u, &self.origin) => out.push((u, lastmod)),
                    Ok(_) => self.stats.off_host += 1,
                    Err(_) => self.stats.errors += 1,
                }
            }
            for loc in map.sitemaps {
                let Ok(u) = self.origin.join(&loc).map(normalize) else {
                    self.stats.errors += 1;
                    continue;
                };
                if !same_origin(&u, &self.origin) {
                    self.stats.off_host += 1;
                    continue;
                }
                if !visited.insert(u.clone()) {
                    continue;
                }
                if read >= MAX_SITEMAPS {
                    self.sitemaps_complete = false;
                    continue;
                }
                read += 1;
                match self.fetch(&u, visited).await {
                    Got::Page { body, .. } if is_sitemap(&body) => {
                        pending.push_back(parse_sitemap(&body))
                    }
                    _ => self.sitemaps_complete = false,
                }
            }
        }
        out
    }
}

/// Crawls `source` into articles (see the module doc).
pub async fn fetch(
    source: &Source,
    progress: &mut dyn FnMut(usize),
) -> anyhow::Result<(Fetched, CrawlStats)> {
    let (fetched, stats, _) = recrawl(source, &[], progress).await?;
    Ok((fetched, stats))
}

/// [`fetch`] again after an import that wrote the pages at `previous`
/// (URLs): they are checked again, and those the site says are gone are
/// returned (as [`super::Removal::Gone`] wants them).
pub async fn recrawl(
    source: &Source,
    previous: &[String],
    progress: &mut dyn FnMut(usize),
) -> anyhow::Result<(Fetched, CrawlStats, HashSet<String>)> {
    let start = Url::parse(source.start.trim())
        .with_context(|| format!("{:?} is not a URL", source.start))?;
    anyhow::ensure!(
        matches!(start.scheme(), "http" | "https") && start.host_str().is_some(),
        "{start} is not an http(s) URL"
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(source.user_agent.clone())
        .timeout(source.timeout)
        .build()?;
    let mut origin = start.clone();
    origin.set_path("/");
    origin.set_query(None);
    origin.set_fragment(None);
    let mut c = Crawler {
        http,
        source,
        origin: origin.clone(),
        robots: Robots::allow_all(),
        delay: source.delay,
        last: None,
        stats: CrawlStats::default(),
        gone: HashSet::new(),
        moved: Vec::new(),
        sitemaps_complete: true,
    };
    let previous: Vec<Url> = previous
        .iter()
        .filter_map(|u| Url::parse(u).ok())
        .map(normalize)
        .filter(|u| same_origin(u, &origin))
        .collect();

    // robots.txt first.
    let mut robots_url = origin.join("/robots.txt")?;
    let mut res = c.get(&robots_url).await.context("fetching robots.txt")?;
    // RFC 9309 2.3.1.2: at least five redirects are followed (here, on the
    // same host only; elsewhere the rules are taken as unavailable).
    for _ in 0..MAX_REDIRECTS {
        let next = res
            .status()
            .is_redirection()
            .then(|| {
                res.headers()
                    .get("location")?
                    .to_str()
                    .ok()
                    .map(str::to_owned)
            })
            .flatten()
            .and_then(|l| robots_url.join(&l).ok())
            .filter(|u| same_origin(u, &origin));
        let Some(next) = next else { break };
        robots_url = next;
        res = c.get(&robots_url).await.context("fetching robots.txt")?;
    }
    let status = res.status();
    if status.is_success() {
        let text = c.body(res).await?.unwrap_or_default();
        c.robots = Robots::parse(&String::from_utf8_lossy(&text), AGENT_TOKEN);
        if let Some(d) = c.robots.crawl_delay {
            c.delay = c.delay.max(Duration::from_secs_f64(d).min(MAX_WAIT));
        }
    } else if status.is_server_error() {
        anyhow::bail!(
            "{robots_url} answered {status}: not crawling a site whose rules are unknown"
        );
    }
    if !c.robots.allowed(&path_of(&start)) {
        anyhow::bail!("robots.txt of {origin} disallows {start}");
    }

    let mut visited: HashSet<Url> = HashSet::new();
    let mut canonical_seen: HashSet<Url> = HashSet::new();
    let mut queue: VecDeque<(Url, Option<String>)> = VecDeque::new();
    let mut follow_links = true;
    let start = normalize(start);
    visited.insert(start.clone());
    let mut first = match c.fetch(&start, &mut visited).await {
        Got::Page {
            url,
            body,
            last_modified,
            html,
        } => Some((url, body, last_modified, html)),
        Got::Skipped => anyhow::bail!("{start} could not be fetched ({:?})", c.stats),
    };
    let mut listed: Option<HashSet<Url>> = None;
    if let Some((_, body, _, _)) = &first
        && is_sitemap(body)
    {
        let map = parse_sitemap(body);
        first = None;
        follow_links = false;
        let mut all = HashSet::new();
        for (u, lastmod) in c.sitemap_urls(map, &mut visited).await {
            all.insert(u.clone());
            if visited.insert(u.clone()) {
                queue.push_back((u, lastmod));
            }
        }
        listed = Some(all);
    }
    match &listed {
        // A page a sitemap read in full no longer lists is gone; one that
        // a partly read sitemap does not list may be in the part unread.
        Some(all) if c.sitemaps_complete => {
            let out: Vec<Url> = previous
                .iter()
                .filter(|u| !all.contains(*u))
                .cloned()
                .collect();
            c.gone.extend(out);
        }
        Some(_) => {
            tracing::warn!(
                message = "A sitemap could not be read in full; pages it does not list are kept."
            );
        }
        // A link crawl checks the previous pages first: a page no longer
        // linked is still on the site unless it answers 404 or 410.
        None => {
            for u in &previous {
                if visited.insert(u.clone()) {
                    queue.push_back((u.clone(), None));
                }
            }
        }
    }

    let mut articles = Vec::new();
    let mut fetched_pages = 0usize;
    loop {
        let (url, body, updated, html) = if let Some(f) = first.take() {
            (f.0, f.1, f.2, f.3)
        } else {
            let Some((u, lastmod)) = queue.pop_front() else {
                break;
            };
            if fetched_pages >= source.max_pages {
                c.stats.hit_page_cap = true;
                break;
            }
            if !c.robots.allowed(&path_of(&u)) {
                c.stats.disallowed += 1;
                continue;
            }
            match c.fetch(&u, &mut visited).await {
                Got::Page {
                    url,
                    body,
                    last_modified,
                    html,
                } => (url, body, lastmod.or(last_modified), html),
                Got::Skipped => continue,
            }
        };
        fetched_pages += 1;
        if !html {
            c.stats.not_html += 1;
            continue;
        }
        let page = tokio::task::spawn_blocking(move || parse_page(&body))
            .await
            .context("the page parser failed")?;
        if follow_links && !page.nofollow {
            for href in &page.links {
                let Ok(u) = url.join(href.trim()).map(normalize) else {
                    continue;
                };
                if !matches!(u.scheme(), "http" | "https") {
                    continue;
                }
                if !same_origin(&u, &origin) {
                    c.stats.off_host += 1;
                    continue;
                }
                if visited.insert(u.clone()) {
                    queue.push_back((u, None));
                }
            }
        }
        let canonical = page
            .canonical
            .as_deref()
            .and_then(|h| url.join(h.trim()).ok())
            .map(normalize)
            .filter(|u| same_origin(u, &origin))
            .unwrap_or_else(|| url.clone());
        if !canonical_seen.insert(canonical.clone()) {
            c.stats.duplicates += 1;
            continue;
        }
        let markdown = super::html_to_markdown(&page.main_html);
        if page.noindex || markdown.trim().is_empty() {
            c.stats.empty_or_noindex += 1;
            continue;
        }
        let id = hex::encode(&Sha256::digest(canonical.as_str().as_bytes())[..6]);
        let section: Vec<String> = canonical
            .path_segments()
            .and_then(|mut s| s.next().map(str::to_owned))
            .filter(|s| !s.is_empty() && canonical.path_segments().is_some_and(|p| p.count() > 1))
            .into_iter()
            .collect();
        articles.push(Article {
            id,
            title: page.title.unwrap_or_else(|| canonical.path().to_owned()),
            url: Some(canonical.to_string()),
            updated_at: updated,
            locale: page.lang.map(|l| l.to_ascii_lowercase()),
            audience: Audience::Public,
            section,
            labels: Vec::new(),
            html: page.main_html,
        });
        c.stats.pages += 1;
        progress(articles.len());
    }
    // Only the previous import's pages matter; a URL kept this time (a
    // redirect to it from elsewhere) is never gone.
    let kept: HashSet<String> = articles.iter().filter_map(|a| a.url.clone()).collect();
    // A page that moved is gone from its old URL once it is kept at the
    // new one (a target that failed this time leaves the old copy).
    for (from, to) in std::mem::take(&mut c.moved) {
        if kept.contains(to.as_str()) {
            c.gone.insert(from);
        }
    }
    let gone: HashSet<String> = previous
        .iter()
        .filter(|u| c.gone.contains(*u))
        .map(|u| u.to_string())
        .filter(|u| !kept.contains(u))
        .collect();
    c.stats.gone = gone.len();
    Ok((
        Fetched {
            articles,
            drafts: 0,
        },
        c.stats,
        gone,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robots_groups_and_longest_match() {
        let r = Robots::parse(
            "# comment\nUser-agent: Googlebot\nDisallow: /\n\nUser-agent: *\nDisallow: /private/\nAllow: /private/ok$\nDisallow: /*.pdf$\nCrawl-delay: 2\n",
            AGENT_TOKEN,
        );
        assert!(r.allowed("/docs/a"));
        assert!(!r.allowed("/private/x"));
        assert!(r.allowed("/private/ok"));
        assert!(!r.allowed("/private/ok/more"));
        assert!(!r.allowed("/files/a.pdf"));
        assert!(r.allowed("/files/a.pdf?x=1"));
        assert_eq!(r.crawl_delay, Some(2.0));
        // A group naming deskhand replaces `*`.
        let r = Robots::parse(
            "User-agent: *\nDisallow: /\n\nUser-agent: deskhand\nUser-agent: other\nDisallow: /admin\n",
            AGENT_TOKEN,
        );
        assert!(r.allowed("/docs"));
        assert!(!r.allowed("/admin/x"));
        // Empty Disallow allows all; garbage is ignored.
        let r = Robots::parse(
            "User-agent: *\nDisallow:\n\u{0}\u{ff}garbage: :\n",
            AGENT_TOKEN,
        );
        assert!(r.allowed("/anything"));
        assert!(Robots::parse("", AGENT_TOKEN).allowed("/"));
        assert!(
            Robots::parse("Disallow: /\n", AGENT_TOKEN).allowed("/"),
            "rules outside a group"
        );
    }

    #[test]
    fn sitemaps_and_indexes_parse() {
        let s = parse_sitemap(
            r#"<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
            <url><loc> https://h.example/a?x=1&amp;y=2 </loc><lastmod>2026-11-01</lastmod></url>
            <url><loc>https://h.example/b</loc></url><url><lastmod>no loc</lastmod></url></urlset>"#,
        );
        assert_eq!(
            s.urls,
            [
                (
                    "https://h.example/a?x=1&y=2".to_owned(),
                    Some("2026-11-01".to_owned())
                ),
                ("https://h.example/b".to_owned(), None)
            ]
        );
        let i = parse_sitemap(
            "<sitemapindex><sitemap><loc>https://h.example/s1.xml</loc></sitemap></sitemapindex>",
        );
        assert_eq!(i.sitemaps, ["https://h.example/s1.xml"]);
        assert!(is_sitemap("<?xml version='1.0'?>\n<urlset>"));
        assert!(!is_sitemap("<html><body>urlset</body></html>") || is_sitemap("<urlset"));
        assert_eq!(
            parse_sitemap("<<<>>> garbage <url><loc>"),
            Sitemap::default()
        );
    }

    #[test]
    fn the_main_content_is_kept_and_the_chrome_dropped() {
        let p = parse_page(
            r#"<html lang="fr"><head><title> Réinitialiser
            le mot de passe </title><link rel="canonical" href="/docs/reset">
            <meta name="robots" content="nofollow"><script>track()</script></head>
            <body><header>Logo</header><nav><a href="/home">Home</a></nav>
            <main><h1>Reset</h1><p>Click <a href="/forgot">Forgot password</a>.</p></main>
            <footer>© 2026</footer></body></html>"#,
        );
        assert_eq!(p.title.as_deref(), Some("Réinitialiser le mot de passe"));
        assert_eq!(p.canonical.as_deref(), Some("/docs/reset"));
        assert_eq!(p.lang.as_deref(), Some("fr"));
        assert!(p.nofollow && !p.noindex);
        assert_eq!(p.links, ["/home", "/forgot"]);
        let md = super::super::html_to_markdown(&p.main_html);
        assert!(md.contains("Forgot password"), "{md}");
        for chrome in ["Logo", "Home", "2026", "track"] {
            assert!(!md.contains(chrome), "{chrome} in {md}");
        }
        // No <main>: <article>, else the body without its chrome.
        let p = parse_page(
            "<body><nav>Menu</nav><article><p>Only this.</p></article><p>Not this.</p></body>",
        );
        assert!(p.main_html.contains("Only this") && !p.main_html.contains("Not this"));
        let p = parse_page("<body><nav>Menu</nav><p>Body text.</p><footer>Foot</footer></body>");
        let md = super::super::html_to_markdown(&p.main_html);
        assert_eq!(md.trim(), "Body text.");
        // Garbage parses to something empty, never panics.
        for junk in [
            "",
            "<<<",
            "\u{0}\u{ffff}",
            "<html><main>",
            &"<div>".repeat(5_000),
        ] {
            let _ = parse_page(junk);
        }
    }
}
