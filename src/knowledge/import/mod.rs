//! `deskhand kb import`: a help centre where it already lives becomes a
//! folder of Markdown files with front matter (`title`, `url`,
//! `updated_at`, `locale`, `audience`, `section`, `labels`), which the
//! embedded index reads like any hand-written KB.
//!
//! Re-running an import into the same folder is a sync: an article whose
//! `updated_at` is unchanged is not rewritten, a changed one is, and the
//! file of an article that no longer exists upstream is removed. What was
//! written is remembered in `DIR/.deskhand-import.json` (source, article
//! id → file, `updated_at`); files deskhand did not write are never
//! touched. A source that cannot list everything it has (a website: a page
//! cap, a fetch error) says which previous articles are known to be gone
//! ([`Removal::Gone`]); the others are kept, not removed. Articles meant
//! for agents only are written with
//! `audience: internal`, so customer answers never use them.
//!
//! Sources: [`zendesk`] (Zendesk Guide's Help Center API), [`intercom`]
//! (Intercom Articles), [`freshdesk`] (Freshdesk Solutions), [`helpscout`]
//! (Help Scout Docs). Every request waits out rate limiting (429 with
//! `Retry-After`) and 5xx answers; no listing follows a page off the
//! vendor's host, so credentials go nowhere else.

pub mod freshdesk;
pub mod helpscout;
pub mod intercom;
pub mod website;
pub mod zendesk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Most attempts for one request that is rate limited (429) or fails with
/// a 5xx, waiting as `Retry-After` says (or backing off).
const MAX_ATTEMPTS: u32 = 6;
/// Longest `Retry-After` honoured; a longer one is an error.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// The sync record's file name.
pub const STATE_FILE: &str = ".deskhand-import.json";

/// Who may read an article.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    /// Anyone (the customer answers may use it).
    Public,
    /// Agents or staff only (never in a customer answer).
    Internal,
}

/// One article, as a source delivers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Article {
    /// The source's id, stable across runs.
    pub id: String,
    /// Title.
    pub title: String,
    /// The public URL.
    pub url: Option<String>,
    /// Last change upstream (as the source writes it).
    pub updated_at: Option<String>,
    /// Locale (`en-us`).
    pub locale: Option<String>,
    /// Public or internal.
    pub audience: Audience,
    /// Section or collection (and category) names, outermost first.
    pub section: Vec<String>,
    /// Labels.
    pub labels: Vec<String>,
    /// The body, HTML.
    pub html: String,
}

/// What a source read: the articles, and how many drafts were skipped.
pub struct Fetched {
    /// Published articles.
    pub articles: Vec<Article>,
    /// Drafts skipped.
    pub drafts: usize,
}

/// An id as a string (vendors send numbers or strings).
pub(crate) fn id_of(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// The strings of a JSON array (labels, tags, keywords); none otherwise.
pub(crate) fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Articles the source listed.
    pub listed: usize,
    /// Files written (new or changed).
    pub written: usize,
    /// Unchanged, not rewritten.
    pub unchanged: usize,
    /// Files removed (deleted upstream).
    pub removed: usize,
    /// Articles of the previous import not reached this time (a page cap,
    /// a fetch error) and so kept as they were.
    pub kept_unreached: usize,
    /// Of those written or kept, internal.
    pub internal: usize,
    /// Drafts skipped.
    pub drafts: usize,
}

/// Which articles of the previous import a sync removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Every one not listed this time: the source lists all it has (the
    /// help-centre APIs).
    Unlisted,
    /// Only those not listed whose URL is among these (normalized as the
    /// source writes them): the source saw them gone (a website's 404 or
    /// 410, a moved page, a page no longer in a complete sitemap). The
    /// others were not reached and are kept.
    Gone(std::collections::HashSet<String>),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    source: String,
    articles: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    file: String,
    updated_at: Option<String>,
    /// The article's URL (absent in records written before it was kept:
    /// read from the file's front matter then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

/// The URLs of the articles the previous import of `source` wrote into
/// `dir` (none when there was none): what a website import checks again.
pub fn previous_urls(dir: &Path, source: &str) -> anyhow::Result<Vec<String>> {
    let state = read_state(dir)?;
    if state.source != source {
        return Ok(Vec::new());
    }
    Ok(state
        .articles
        .values()
        .filter_map(|e| entry_url(dir, e))
        .collect())
}

fn entry_url(dir: &Path, e: &Entry) -> Option<String> {
    e.url.clone().or_else(|| {
        let text = std::fs::read_to_string(dir.join(&e.file)).ok()?;
        crate::knowledge::markdown::parse(&e.file, &text).url
    })
}

fn read_state(dir: &Path) -> anyhow::Result<State> {
    let state_path = dir.join(STATE_FILE);
    match std::fs::read(&state_path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a sync record", state_path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", state_path.display())),
    }
}

/// HTML as Markdown: headings, lists, tables, code and links kept;
/// scripts, styles, navigation and forms dropped.
pub fn html_to_markdown(html: &str) -> String {
    let converter = htmd::HtmlToMarkdown::builder()
        .skip_tags(vec![
            "script", "style", "nav", "header", "footer", "form", "noscript", "iframe", "svg",
        ])
        .build();
    let md = converter.convert(html).unwrap_or_default();
    // At most one blank line in a row.
    let mut out = String::with_capacity(md.len());
    let mut blank = 0;
    for line in md.lines() {
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.trim().to_owned() + "\n"
}

/// A front-matter value: one line, quoted when YAML would misread it.
fn yaml_value(s: &str) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let one = one.trim();
    let plain = !one.is_empty()
        && !one.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@`".contains(c))
        && !one.contains(": ")
        && !one.contains(" #");
    if plain {
        one.to_owned()
    } else {
        format!("\"{}\"", one.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The file's text: front matter, then the body as Markdown.
pub fn render(a: &Article) -> String {
    let mut s = String::from("---\n");
    s.push_str(&format!("title: {}\n", yaml_value(&a.title)));
    if let Some(u) = &a.url {
        s.push_str(&format!("url: {}\n", yaml_value(u)));
    }
    if let Some(u) = &a.updated_at {
        s.push_str(&format!("updated_at: {}\n", yaml_value(u)));
    }
    if let Some(l) = &a.locale {
        s.push_str(&format!("locale: {}\n", yaml_value(l)));
    }
    let audience = match a.audience {
        Audience::Public => "public",
        Audience::Internal => "internal",
    };
    s.push_str(&format!("audience: {audience}\n"));
    if !a.section.is_empty() {
        s.push_str(&format!(
            "section: {}\n",
            yaml_value(&a.section.join(" / "))
        ));
    }
    if !a.labels.is_empty() {
        s.push_str(&format!("labels: {}\n", yaml_value(&a.labels.join(", "))));
    }
    s.push_str("---\n\n");
    s.push_str(&format!("# {}\n\n", a.title.trim()));
    s.push_str(&html_to_markdown(&a.html));
    s
}

/// A file name for the article: `<id>-<slug>.md`.
fn file_name(a: &Article) -> String {
    let mut slug = String::new();
    for c in a.title.to_lowercase().chars() {
        if c.is_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.chars().count() >= 60 {
            break;
        }
    }
    let id: String =
        a.id.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(40)
            .collect();
    format!("{id}-{}.md", slug.trim_matches('-'))
}

/// Writes `articles` of `source` into `dir` as a sync (see the module
/// doc), removing every previous article not listed.
pub fn sync(dir: &Path, source: &str, articles: &[Article]) -> anyhow::Result<Summary> {
    sync_with(dir, source, articles, &Removal::Unlisted)
}

/// [`sync`], removing only what `removal` says is gone.
pub fn sync_with(
    dir: &Path,
    source: &str,
    articles: &[Article],
    removal: &Removal,
) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let state_path = dir.join(STATE_FILE);
    let old = read_state(dir)?;
    anyhow::ensure!(
        old.source.is_empty() || old.source == source,
        "{} was imported from {}, not {source}: import into another folder",
        dir.display(),
        old.source
    );
    let mut summary = Summary {
        listed: articles.len(),
        ..Summary::default()
    };
    let mut new = State {
        source: source.to_owned(),
        articles: BTreeMap::new(),
    };
    for a in articles {
        let file = file_name(a);
        let path = dir.join(&file);
        let unchanged = old.articles.get(&a.id).is_some_and(|e| {
            e.file == file && e.updated_at.is_some() && e.updated_at == a.updated_at
        }) && path.is_file();
        if unchanged {
            summary.unchanged += 1;
        } else {
            write_atomically(&path, render(a).as_bytes())?;
            summary.written += 1;
        }
        if a.audience == Audience::Internal {
            summary.internal += 1;
        }
        if let Some(e) = old.articles.get(&a.id)
            && e.file != file
        {
            remove(dir, &e.file)?;
        }
        new.articles.insert(
            a.id.clone(),
            Entry {
                file,
                updated_at: a.updated_at.clone(),
                url: a.url.clone(),
            },
        );
    }
    for (id, e) in &old.articles {
        if new.articles.contains_key(id) {
            continue;
        }
        let gone = match removal {
            Removal::Unlisted => true,
            Removal::Gone(urls) => entry_url(dir, e).is_some_and(|u| urls.contains(&u)),
        };
        if gone {
            if remove(dir, &e.file)? {
                summary.removed += 1;
            }
        } else if dir.join(&e.file).is_file() {
            tracing::warn!(
                message = "Not reached this time; kept as it was.",
                file = %e.file,
                url = %entry_url(dir, e).unwrap_or_default()
            );
            summary.kept_unreached += 1;
            new.articles.insert(id.clone(), e.clone());
        }
    }
    write_atomically(&state_path, &serde_json::to_vec_pretty(&new)?)?;
    Ok(summary)
}

fn remove(dir: &Path, file: &str) -> anyhow::Result<bool> {
    // Only plain names deskhand wrote: never a path out of `dir`.
    if file.contains(['/', '\\']) || file.starts_with('.') {
        return Ok(false);
    }
    match std::fs::remove_file(dir.join(file)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {file}")),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp: PathBuf = path.with_extension("tmp~");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// GETs `url` as JSON (with Basic credentials if given); see [`send_json`].
pub async fn get_json(
    http: &reqwest::Client,
    url: &str,
    auth: Option<(&str, &str)>,
) -> anyhow::Result<serde_json::Value> {
    let mut req = http.get(url);
    if let Some((user, password)) = auth {
        req = req.basic_auth(user, Some(password));
    }
    send_json(req, url).await
}

/// Sends `req` (a GET) for JSON, waiting out 429 and 5xx answers
/// (`Retry-After`, or a doubling back-off) up to [`MAX_ATTEMPTS`].
pub async fn send_json(
    req: reqwest::RequestBuilder,
    url: &str,
) -> anyhow::Result<serde_json::Value> {
    let req = req.header("accept", "application/json");
    let mut backoff = Duration::from_millis(500);
    for attempt in 1..=MAX_ATTEMPTS {
        let attempt_req = req
            .try_clone()
            .context("a request with a streaming body cannot be retried")?;
        let res = attempt_req
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = res.status();
        if status.is_success() {
            return res
                .json()
                .await
                .with_context(|| format!("GET {url}: the answer is not JSON"));
        }
        let retryable = status.as_u16() == 429 || status.is_server_error();
        if !retryable || attempt == MAX_ATTEMPTS {
            anyhow::bail!("GET {url}: {status}");
        }
        let wait = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(backoff);
        anyhow::ensure!(
            wait <= MAX_RETRY_AFTER,
            "GET {url}: {status}, Retry-After {}s is longer than {}s",
            wait.as_secs(),
            MAX_RETRY_AFTER.as_secs()
        );
        tokio::time::sleep(wait).await;
        backoff *= 2;
    }
    unreachable!("the loop returns or bails on its last attempt")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Serves a vendor's API double on a free 127.0.0.1 port; its base URL.
    pub(crate) async fn serve_double(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    fn article(id: &str, title: &str, updated: &str) -> Article {
        Article {
            id: id.into(),
            title: title.into(),
            url: Some(format!("https://help.example.com/hc/en-us/articles/{id}")),
            updated_at: Some(updated.into()),
            locale: Some("en-us".into()),
            audience: Audience::Public,
            section: vec!["Billing".into(), "Refunds".into()],
            labels: vec!["refund".into()],
            html: "<h2>Steps</h2><ol><li>Open <b>Billing</b></li><li>Click <a href=\"/x\">Refund</a></li></ol>\
                   <table><tr><th>Plan</th><th>Price</th></tr><tr><td>Pro</td><td>$10</td></tr></table>\
                   <script>alert(1)</script><nav>Home</nav>"
                .into(),
        }
    }

    #[test]
    fn html_becomes_markdown_without_scripts_or_navigation() {
        let md = html_to_markdown(&article("1", "x", "t").html);
        assert!(md.contains("## Steps"), "{md}");
        assert!(
            md.lines()
                .any(|l| l.starts_with("1.") && l.ends_with("Open **Billing**")),
            "{md}"
        );
        assert!(md.contains("[Refund](/x)"), "{md}");
        assert!(md.contains("| Pro"), "a table stays a table: {md}");
        assert!(!md.contains("alert") && !md.contains("Home"), "{md}");
    }

    #[test]
    fn front_matter_is_what_the_kb_reads() {
        let mut a = article("42", "Refunds: how long?", "2026-01-01T00:00:00Z");
        a.audience = Audience::Internal;
        let text = render(&a);
        assert!(
            text.starts_with("---\ntitle: \"Refunds: how long?\"\n"),
            "{text}"
        );
        assert!(text.contains("audience: internal\n"));
        assert!(text.contains("section: Billing / Refunds\n"));
        let doc = crate::knowledge::markdown::parse("42-refunds.md", &text);
        assert_eq!(doc.title, "Refunds: how long?");
        assert_eq!(
            doc.url.as_deref(),
            Some("https://help.example.com/hc/en-us/articles/42")
        );
    }

    #[test]
    fn a_second_run_syncs_changes_and_deletions_and_leaves_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mine.md"), "# Hand-written\n").unwrap();
        let first = [article("1", "One", "t1"), article("2", "Two", "t1")];
        let s = sync(dir.path(), "zendesk", &first).unwrap();
        assert_eq!((s.written, s.unchanged, s.removed), (2, 0, 0));
        // 1 unchanged, 2 deleted upstream, 3 new, 1's title kept.
        let second = [article("1", "One", "t1"), article("3", "Three", "t2")];
        let s = sync(dir.path(), "zendesk", &second).unwrap();
        assert_eq!((s.written, s.unchanged, s.removed), (1, 1, 1));
        let mut files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, [STATE_FILE, "1-one.md", "3-three.md", "mine.md"]);
        // A changed article is rewritten; a renamed one moves.
        let third = [
            article("1", "One, renamed", "t3"),
            article("3", "Three", "t2"),
        ];
        let s = sync(dir.path(), "zendesk", &third).unwrap();
        assert_eq!((s.written, s.unchanged, s.removed), (1, 1, 0));
        assert!(dir.path().join("1-one-renamed.md").is_file());
        assert!(!dir.path().join("1-one.md").exists());
        // Another source into the same folder is refused.
        assert!(sync(dir.path(), "intercom", &third).is_err());
    }
}
