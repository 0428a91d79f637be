//! Splits Markdown and plain-text documents into passages by heading and
//! paragraph, keeping each passage's document id, title, section and link,
//! and marks what is written for agents rather than customers.
//!
//! The passage text keeps the structure an answer needs: a paragraph is one
//! line however it was wrapped, each list item is a line of its own that
//! starts with `- ` or its number (`1. `), and a table row reads as
//! `header: cell; header: cell.` Inline Markdown and HTML are removed.
//!
//! A document is internal when its front matter says `audience: internal`
//! (or `agents`, `staff`; `visibility: internal`; `internal: true`) or its
//! title says so ("Internal: …", "… (agents only)"); a section is internal
//! when its heading says so, until the next heading of the same or a higher
//! level; a paragraph is internal when it is written to an agent ("Instruct
//! the customer…", "Agents should…", "(internal)"), and so is the list it
//! introduces. Internal text goes into chunks of its own, flagged
//! [`Chunk::internal`], so a retriever can keep it out of customer answers.

use std::sync::LazyLock;

use regex::Regex;
use unicode_segmentation::UnicodeSegmentation;

/// Passages shorter than this are merged with the next paragraph.
const TARGET_CHARS: usize = 600;
/// Passages are split (at sentence ends) above this.
const MAX_CHARS: usize = 1_200;

/// A parsed document (serialized into a published bundle, so a worker
/// has the passages and their metadata without the Markdown).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Document {
    /// Path relative to the KB root, `/`-separated.
    pub doc_id: String,
    /// Front-matter `title`, else the first heading, else the file name.
    pub title: String,
    /// Front-matter `url`.
    pub url: Option<String>,
    /// Written for agents, not customers (front matter or title).
    pub internal: bool,
    /// Front-matter `locale` (or `lang`), normalized ([`super::filter`]).
    pub locale: Option<String>,
    /// Front-matter `labels`, `brand` and `product`, normalized.
    pub labels: Vec<String>,
    /// The passages, in document order.
    pub chunks: Vec<Chunk>,
}

/// One passage of a document.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    /// The nearest heading above it (not the document title).
    pub section: Option<String>,
    /// Plain text, Markdown markup removed.
    pub text: String,
    /// Written for agents: the document, its section or the paragraphs are
    /// internal. Never part of a customer answer unless allowed.
    pub internal: bool,
}

/// Headings and titles that mark agent-only content.
static INTERNAL_HEADING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        ^\s*[\[(]\s*internal\s*[\])]
        | ^\s*internal\s*(?:[:|–—-]|$)
        | \(\s*internal\s*\)
        | \binternal[\s-]+(?:only|use|procedures?|process|notes?|guide|guidance|playbook|runbook|policy|documentation|faq|reference|escalations?)\b
        | \b(?:agents?|staff|employees?|support\s+team|team\s+members?)[\s-]+only\b
        | \bfor\s+(?:support\s+)?(?:agents|staff|employees)\b
        | \bagent[\s-]+(?:facing|guide|guidance|notes?|playbook|script|procedures?|instructions)\b
        | \bnot\s+for\s+(?:customers|public|external)\b
        | \bconfidential\b",
    )
    .expect("static regex")
});

/// Sentences written to an agent about the customer.
static AGENT_VOICE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        \b(?:instruct|advise|tell|ask|remind|inform|offer|direct|walk|guide|transfer|escalate|reassure|assure|warn|notify|explain\s+to|confirm\s+with|check\s+with|verify|apologi[sz]e\s+to)\s+the\s+(?:customer|caller|member|subscriber|account\s+holder)s?\b
        | \b(?:the\s+)?(?:agents?|reps?|representatives?|advisors?|staff)\s+(?:should|must|shall|need\s+to|needs\s+to|are\s+to|are\s+required\s+to)\b
        | \bdo\s+not\s+(?:tell|share\s+with|disclose\s+to|inform|mention\s+to|promise)\s+(?:the\s+)?(?:customer|caller)s?\b
        | \bnever\s+(?:tell|share\s+with|disclose\s+to|promise)\s+(?:the\s+)?(?:customer|caller)s?\b
        | \(\s*internal(?:\s+only)?\s*\)
        | \bexplain\s*:
        | ^\s*(?:agent|internal|staff)\s*(?:note|tip|only)?\s*:",
    )
    .expect("static regex")
});

/// Whether `heading` (a title or section heading) marks agent-only content.
pub fn is_internal_heading(heading: &str) -> bool {
    INTERNAL_HEADING.is_match(heading)
}

/// Whether `text` is written to an agent rather than to the customer.
pub fn is_agent_voice(text: &str) -> bool {
    AGENT_VOICE.is_match(text)
}

/// Parses `source`, the content of the file at `doc_id`.
pub fn parse(doc_id: &str, source: &str) -> Document {
    let (front, body) = front_matter(source);
    let field = |key: &str| {
        front
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    let is_markdown = !doc_id.to_ascii_lowercase().ends_with(".txt");
    let mut title = field("title");
    let front_internal = ["audience", "visibility", "access", "internal"]
        .iter()
        .filter_map(|k| field(k))
        .any(|v| {
            let v = v.to_ascii_lowercase();
            [
                "internal",
                "agent",
                "agents",
                "staff",
                "employees",
                "private",
                "true",
            ]
            .iter()
            .any(|w| v.split([',', ' ', '[', ']']).any(|x| x == *w))
        });
    let mut state = State::default();
    let mut lines: Vec<String> = Vec::new();
    let mut in_fence = false;
    // The level of the internal heading we are under, if any.
    let mut internal_level: Option<usize> = None;

    for line in body.lines() {
        let trimmed = line.trim();
        if is_markdown && (trimmed.starts_with("```") || trimmed.starts_with("~~~")) {
            in_fence = !in_fence;
            continue;
        }
        if is_markdown
            && !in_fence
            && let Some((level, heading)) = heading(trimmed)
        {
            state.paragraph(&mut lines);
            state.flush();
            if title.is_none() {
                title = Some(heading);
            } else {
                if internal_level.is_some_and(|l| level <= l) {
                    internal_level = None;
                }
                if internal_level.is_none() && is_internal_heading(&heading) {
                    internal_level = Some(level);
                }
                state.section = Some(heading);
            }
            state.section_internal = internal_level.is_some();
            continue;
        }
        if trimmed.is_empty() && !in_fence {
            state.paragraph(&mut lines);
            continue;
        }
        let hard_break = line.ends_with("  ") || line.ends_with('\\');
        let trimmed = trimmed.trim_end_matches('\\').trim_end();
        let trimmed = trimmed.strip_prefix('>').map_or(trimmed, str::trim_start);
        match lines.last_mut() {
            Some(last)
                if !in_fence
                    && !starts_block(trimmed)
                    && !last.starts_with('|')
                    && !last.ends_with('\n') =>
            {
                // A wrapped line continues its paragraph or list item.
                last.push(' ');
                last.push_str(trimmed);
            }
            _ => lines.push(trimmed.to_owned()),
        }
        if hard_break && let Some(last) = lines.last_mut() {
            last.push('\n');
        }
    }
    state.paragraph(&mut lines);
    state.flush();

    let title = title.unwrap_or_else(|| title_from_path(doc_id));
    let internal = front_internal || is_internal_heading(&title);
    let mut chunks = state.chunks;
    if internal {
        for c in &mut chunks {
            c.internal = true;
        }
    }
    Document {
        doc_id: doc_id.to_owned(),
        title,
        url: field("url"),
        internal,
        locale: field("locale")
            .or_else(|| field("lang"))
            .and_then(|l| super::filter::normalize(&l)),
        labels: super::filter::labels_from(
            &["labels", "brand", "product"]
                .iter()
                .filter_map(|k| field(k))
                .collect::<Vec<_>>(),
        ),
        chunks,
    }
}

/// A line that starts a block of its own: a list item or a table row.
fn starts_block(line: &str) -> bool {
    LIST_MARK.is_match(line) || line.starts_with('|')
}

#[derive(Default)]
struct State {
    section: Option<String>,
    section_internal: bool,
    /// Customer-facing paragraphs not yet in a chunk.
    pending: String,
    /// Agent-facing paragraphs not yet in a chunk.
    pending_internal: String,
    /// The last internal paragraph introduced a list (ends with `:`).
    carry_internal: bool,
    chunks: Vec<Chunk>,
}

impl State {
    /// Ends the paragraph made of `lines`.
    fn paragraph(&mut self, lines: &mut Vec<String>) {
        let raw = lines.join("\n");
        lines.clear();
        let p = clean_inline(raw.trim());
        if p.is_empty() {
            return;
        }
        let is_list = p.lines().all(|l| LIST_MARK.is_match(l));
        let internal =
            self.section_internal || is_agent_voice(&p) || (self.carry_internal && is_list);
        self.carry_internal = internal && p.trim_end().ends_with(':');
        let pending = if internal {
            &mut self.pending_internal
        } else {
            &mut self.pending
        };
        if !pending.is_empty() {
            pending.push_str("\n\n");
        }
        pending.push_str(&p);
        if pending.chars().count() >= TARGET_CHARS {
            let text = std::mem::take(pending);
            push_chunk(&mut self.chunks, &self.section, &text, internal);
        }
    }

    /// Ends the section: what is pending becomes chunks.
    fn flush(&mut self) {
        let text = std::mem::take(&mut self.pending);
        push_chunk(&mut self.chunks, &self.section, &text, false);
        let text = std::mem::take(&mut self.pending_internal);
        push_chunk(&mut self.chunks, &self.section, &text, true);
        self.carry_internal = false;
    }
}

fn push_chunk(chunks: &mut Vec<Chunk>, section: &Option<String>, text: &str, internal: bool) {
    if text.trim().is_empty() {
        return;
    }
    for piece in split_long(text.trim()) {
        chunks.push(Chunk {
            section: section.clone(),
            text: piece,
            internal,
        });
    }
}

/// Splits text above `MAX_CHARS` at paragraph, line or sentence ends (or,
/// failing that, at word boundaries) into pieces of at most `MAX_CHARS`.
fn split_long(text: &str) -> Vec<String> {
    if text.chars().count() <= MAX_CHARS {
        return vec![text.to_owned()];
    }
    let mut out = Vec::new();
    let mut current = String::new();
    let push = |current: &mut String, piece: &str, sep: &str, out: &mut Vec<String>| {
        if !current.is_empty() && current.chars().count() + piece.chars().count() + 2 > MAX_CHARS {
            out.push(std::mem::take(current));
        }
        if !current.is_empty() {
            current.push_str(sep);
        }
        current.push_str(piece);
    };
    for (pi, para) in text.split("\n\n").enumerate() {
        for (li, line) in para.lines().enumerate() {
            let sep = if li > 0 {
                "\n"
            } else if pi > 0 {
                "\n\n"
            } else {
                ""
            };
            if line.chars().count() <= MAX_CHARS {
                push(&mut current, line, sep, &mut out);
                continue;
            }
            for (si, sentence) in sentences(line).into_iter().enumerate() {
                let sep = if si == 0 { sep } else { " " };
                if sentence.chars().count() <= MAX_CHARS {
                    push(&mut current, sentence, sep, &mut out);
                    continue;
                }
                for word in sentence.split_whitespace() {
                    push(&mut current, word, " ", &mut out);
                }
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Abbreviations after which a sentence never ends.
const ABBREVIATIONS: &[&str] = &[
    "e.g.", "i.e.", "p.o.", "u.s.", "u.s.a.", "u.k.", "e.u.", "vs.", "mr.", "mrs.", "ms.", "dr.",
    "prof.", "st.", "approx.", "appx.", "est.", "dept.", "apt.", "fig.", "cf.", "inc.", "ltd.",
    "co.", "corp.", "jr.", "sr.", "a.m.", "p.m.", "min.", "max.", "incl.", "excl.",
];
/// Abbreviations that end a sentence unless a number follows ("No. 5").
const BEFORE_NUMBERS: &[&str] = &[
    "no.", "nos.", "nr.", "ext.", "tel.", "vol.", "ch.", "p.", "pp.", "art.", "sec.", "jan.",
    "feb.", "mar.", "apr.", "jun.", "jul.", "aug.", "sep.", "sept.", "oct.", "nov.", "dec.",
];

/// Splits text into sentences: Unicode sentence boundaries (UAX #29) within
/// each line, kept together after abbreviations (`e.g.`, `P.O.`, `No. 5`),
/// initials and list numbers; decimals, versions, links and e-mail
/// addresses never end a sentence. Line breaks (list items, table rows)
/// always do.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.lines() {
        let base = line.as_ptr() as usize;
        let mut start: Option<usize> = None;
        let mut end = 0;
        let segments: Vec<&str> = line.split_sentence_bounds().collect();
        for (i, seg) in segments.iter().enumerate() {
            let off = seg.as_ptr() as usize - base;
            if start.is_none() {
                if seg.trim().is_empty() {
                    continue;
                }
                start = Some(off);
            }
            end = off + seg.len();
            let s = start.unwrap_or(0);
            let so_far = line[s..end].trim_end();
            let next = segments.get(i + 1).map_or("", |n| n.trim_start());
            if next.is_empty() && i + 1 < segments.len() {
                continue;
            }
            if i + 1 < segments.len() && keeps_going(so_far, next) {
                continue;
            }
            let sentence = so_far.trim();
            if !sentence.is_empty() {
                out.push(sentence);
            }
            start = None;
        }
        if let Some(s) = start {
            let sentence = line[s..end].trim();
            if !sentence.is_empty() {
                out.push(sentence);
            }
        }
    }
    out
}

/// Whether the sentence so far does not end before `next`.
fn keeps_going(so_far: &str, next: &str) -> bool {
    let last = so_far
        .split_whitespace()
        .last()
        .unwrap_or("")
        .trim_start_matches(['(', '"', '\'', '“', '‘']);
    let lower = last.to_lowercase();
    if ABBREVIATIONS.contains(&lower.as_str()) {
        return true;
    }
    let next_is_number = next.starts_with(|c: char| c.is_ascii_digit() || c == '#');
    if next_is_number && BEFORE_NUMBERS.contains(&lower.as_str()) {
        return true;
    }
    // A list number ("1.") or an initial ("J.") alone.
    let word = last.trim_end_matches('.');
    if last.ends_with('.')
        && !word.is_empty()
        && (word.chars().all(|c| c.is_ascii_digit()) && word.len() <= 3
            || word.chars().count() == 1 && word.chars().all(char::is_uppercase))
        && so_far.split_whitespace().count() <= 2
    {
        return true;
    }
    // A closing mark UAX #29 set apart, or text that continues in lower case.
    next.starts_with(|c: char| c.is_lowercase() || matches!(c, ')' | ']' | ',' | ';'))
}

fn heading(line: &str) -> Option<(usize, String)> {
    let hashes = line.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
        return None;
    }
    let text = clean_inline(line[hashes..].trim().trim_end_matches('#').trim());
    let text = text.trim_start_matches("- ").to_owned();
    (!text.is_empty()).then_some((hashes, text))
}

/// Reads a leading `---` block of `key: value` lines.
fn front_matter(source: &str) -> (Vec<(String, String)>, &str) {
    let src = source.trim_start_matches('\u{feff}');
    let Some(rest) = src
        .strip_prefix("---\n")
        .or_else(|| src.strip_prefix("---\r\n"))
    else {
        return (Vec::new(), src);
    };
    let Some(end) = rest.find("\n---") else {
        return (Vec::new(), src);
    };
    let fields = rest[..end]
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| {
            (
                k.trim().to_owned(),
                v.trim().trim_matches('"').trim_matches('\'').to_owned(),
            )
        })
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .collect();
    let after = &rest[end + 4..];
    (fields, after.split_once('\n').map_or("", |(_, b)| b))
}

static IMAGE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"!\[[^\]]*\]\([^)]*\)").expect("static regex"));
static LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[([^\]]*)\](?:\([^)]*\)|\[[^\]]*\])").expect("static regex"));
static LINK_DEFINITION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^\s*\[[^\]]+\]:\s*\S+.*$").expect("static regex"));
static AUTOLINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"<((?:https?://|mailto:)[^>\s]+|[^>\s@]+@[^>\s@]+)>").expect("static regex")
});
static BREAK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)<br\s*/?>").expect("static regex"));
static HTML_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"</?[a-zA-Z][^>]*>|<!--.*?-->").expect("static regex"));
static EMPHASIS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(\*\*|__|\*|`|~~)").expect("static regex"));
/// A list item's marker: a bullet (`-`, `*`, `+`, `•`…) or a number.
static LIST_MARK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?:[-*+•◦▪‣●○■□–]|\d{1,3}[.)]|[a-z][.)])\s+").expect("static regex")
});
static TABLE_RULE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\|?[\s:|-]+\|[\s:|-]*$").expect("static regex"));

/// Removes inline Markdown (links keep their text, images go) and HTML
/// tags; list items keep a plain marker (`- ` or `1. `); table rows read
/// "header: cell; header: cell."
fn clean_inline(text: &str) -> String {
    let t = LINK_DEFINITION.replace_all(text, "");
    let t = IMAGE.replace_all(&t, "");
    let t = LINK.replace_all(&t, "$1");
    let t = AUTOLINK.replace_all(&t, "$1");
    let t = BREAK.replace_all(&t, "\u{1}");
    let t = HTML_TAG.replace_all(&t, "");
    let t = decode_entities(&t);
    let lines: Vec<&str> = t.lines().collect();
    let mut out: Vec<String> = Vec::new();
    let mut header: Option<Vec<String>> = None;
    for (i, raw) in lines.iter().enumerate() {
        let l = raw.trim();
        if l.contains('|') {
            if TABLE_RULE.is_match(l) {
                continue;
            }
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| tidy(&c.replace('\u{1}', "; ")))
                .collect();
            let is_header = lines
                .get(i + 1)
                .is_some_and(|n| TABLE_RULE.is_match(n.trim()));
            if is_header {
                header = Some(cells);
                continue;
            }
            let row: Vec<String> = cells
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.is_empty())
                .map(|(j, c)| match header.as_ref().and_then(|h| h.get(j)) {
                    Some(h) if !h.is_empty() && h != c => format!("{h}: {c}"),
                    _ => c.clone(),
                })
                .collect();
            match row.as_slice() {
                [] => {}
                [one] => out.push(one.clone()),
                [first, rest @ ..] if header.is_none() => {
                    out.push(format!("{first}: {}.", rest.join("; ")))
                }
                all => out.push(format!("{}.", all.join("; "))),
            }
            continue;
        }
        header = None;
        for piece in l.split('\u{1}') {
            let piece = piece.trim();
            let (mark, rest) = match LIST_MARK.find(piece) {
                Some(m) => {
                    let m_text = m.as_str().trim();
                    let mark = if m_text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                        format!("{}. ", m_text.trim_end_matches(['.', ')']))
                    } else {
                        "- ".to_owned()
                    };
                    (mark, &piece[m.end()..])
                }
                None => (String::new(), piece),
            };
            let body = tidy(rest);
            if !body.is_empty() {
                out.push(format!("{mark}{body}"));
            }
        }
    }
    out.join("\n")
}

/// Emphasis marks gone, white space collapsed.
fn tidy(text: &str) -> String {
    let t = EMPHASIS.replace_all(text, "");
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut t = text.to_owned();
    for (e, c) in [
        ("&nbsp;", " "),
        ("&amp;", "&"),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#39;", "'"),
        ("&apos;", "'"),
        ("&rsquo;", "’"),
        ("&lsquo;", "‘"),
        ("&ldquo;", "“"),
        ("&rdquo;", "”"),
        ("&mdash;", "—"),
        ("&ndash;", "–"),
        ("&rarr;", "→"),
        ("&hellip;", "…"),
        ("&euro;", "€"),
        ("&pound;", "£"),
    ] {
        t = t.replace(e, c);
    }
    t
}

fn title_from_path(doc_id: &str) -> String {
    let stem = doc_id.rsplit('/').next().unwrap_or(doc_id);
    let stem = stem.rsplit_once('.').map_or(stem, |(s, _)| s);
    let words: String = stem.replace(['-', '_'], " ");
    let mut chars = words.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().collect::<String>() + chars.as_str()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_title_sections_and_markup() {
        let doc = parse(
            "billing/refunds.md",
            "---\nurl: https://help.example/refunds\n---\n# Refunds\n\nIntro **bold** and a [link](https://x).\n\n## How long\n\n- Refunds take 5 days.\n- Cards only.\n\n```\ncode here\n```\n",
        );
        assert_eq!(doc.title, "Refunds");
        assert_eq!(doc.url.as_deref(), Some("https://help.example/refunds"));
        assert!(!doc.internal);
        assert_eq!(doc.chunks.len(), 2);
        assert_eq!(doc.chunks[0].section, None);
        assert_eq!(doc.chunks[0].text, "Intro bold and a link.");
        assert_eq!(doc.chunks[1].section.as_deref(), Some("How long"));
        assert!(
            doc.chunks[1]
                .text
                .starts_with("- Refunds take 5 days.\n- Cards only."),
            "{:?}",
            doc.chunks[1].text
        );
        assert!(doc.chunks[1].text.contains("code here"));
    }

    #[test]
    fn wrapped_lines_join_and_list_items_stay_apart() {
        let doc = parse(
            "a.md",
            "# T\n\nWe cannot ship to P.O.\nboxes with expedited or\novernight service.\n\nTo reset it:\n1) Open **Settings**.\n2. Click\n   *Reset*.\n* First bullet\n+ Second bullet\n• Third bullet\n\nLine one<br>line two &amp; more.  \nHard break.\n\n![screenshot](x.png) See [the guide][1] or <https://help.example/a>.\n\n[1]: https://help.example/guide\n",
        );
        let text = &doc.chunks[0].text;
        assert_eq!(
            text,
            "We cannot ship to P.O. boxes with expedited or overnight service.\n\n\
             To reset it:\n1. Open Settings.\n2. Click Reset.\n- First bullet\n- Second bullet\n- Third bullet\n\n\
             Line one\nline two & more.\nHard break.\n\n\
             See the guide or https://help.example/a."
        );
    }

    #[test]
    fn table_rows_read_as_lines() {
        let doc = parse(
            "p.md",
            "# Plans\n\n| Plan | Monthly | Annual |\n|---|---:|---|\n| Solo | $12 | $120 |\n| Team | $29 |  |\n",
        );
        assert_eq!(
            doc.chunks[0].text,
            "Plan: Solo; Monthly: $12; Annual: $120.\nPlan: Team; Monthly: $29."
        );
        // Without a header row, the first cell leads.
        let doc = parse(
            "p.md",
            "# Plans\n\n| Solo | $12 | $120 |\n| Team | $29 |  |\n",
        );
        assert_eq!(doc.chunks[0].text, "Solo: $12; $120.\nTeam: $29.");
        // `<br>` inside a cell and stray rules leave no debris.
        let doc = parse(
            "p.md",
            "# P\n\n| Step | What |\n|---|---|\n| 1 | Open<br>Settings |\n",
        );
        assert_eq!(doc.chunks[0].text, "Step: 1; What: Open; Settings.");
        assert!(!doc.chunks[0].text.contains('|'));
    }

    #[test]
    fn plain_text_and_missing_title() {
        let doc = parse(
            "status/system-status.txt",
            "# not a heading in text\n\nAll systems go.",
        );
        assert_eq!(doc.title, "System status");
        assert_eq!(doc.url, None);
        assert_eq!(doc.chunks.len(), 1);
    }

    #[test]
    fn long_paragraphs_are_split_at_sentences() {
        let para = "This is a sentence about invoices. ".repeat(80);
        let doc = parse("a.md", &format!("# T\n\n{para}"));
        assert!(doc.chunks.len() > 1);
        for c in &doc.chunks {
            assert!(c.text.chars().count() <= MAX_CHARS);
            assert!(
                c.text.ends_with('.'),
                "cut mid-sentence: {:?}",
                &c.text[c.text.len() - 20..]
            );
        }
    }

    #[test]
    fn sentences_respect_abbreviations_and_numbers() {
        let s = sentences("Pay by card, e.g. Visa. It costs $9.99 a month! Done? Yes\n- item one");
        assert_eq!(
            s,
            [
                "Pay by card, e.g. Visa.",
                "It costs $9.99 a month!",
                "Done?",
                "Yes",
                "- item one"
            ]
        );
    }

    #[test]
    fn each_abbreviation_keeps_its_sentence_whole() {
        for (text, first) in [
            (
                "We cannot ship to P.O. boxes with expedited service. Other text.",
                "We cannot ship to P.O. boxes with expedited service.",
            ),
            (
                "Ships to the U.S. Virgin Islands in 5 days. Other text.",
                "Ships to the U.S. Virgin Islands in 5 days.",
            ),
            (
                "Use a card, e.g. Visa or Mastercard. Other text.",
                "Use a card, e.g. Visa or Mastercard.",
            ),
            (
                "Use the owner account, i.e. The one that pays. Other text.",
                "Use the owner account, i.e. The one that pays.",
            ),
            (
                "Bring ID, a bill, etc. and a pen. Other text.",
                "Bring ID, a bill, etc. and a pen.",
            ),
            (
                "Quote invoice No. 1234 when you call. Other text.",
                "Quote invoice No. 1234 when you call.",
            ),
            (
                "Ask for Mr. Smith at the desk. Other text.",
                "Ask for Mr. Smith at the desk.",
            ),
            (
                "Dr. Jones signs the form. Other text.",
                "Dr. Jones signs the form.",
            ),
            (
                "Compare Solo vs. Team before you buy. Other text.",
                "Compare Solo vs. Team before you buy.",
            ),
            (
                "It takes approx. 3 days. Other text.",
                "It takes approx. 3 days.",
            ),
            (
                "The fee is 3.5 percent of the total. Other text.",
                "The fee is 3.5 percent of the total.",
            ),
            (
                "Update to v1.2.3 or later. Other text.",
                "Update to v1.2.3 or later.",
            ),
            (
                "See https://help.example.com/a.b?x=1.2 for more. Other text.",
                "See https://help.example.com/a.b?x=1.2 for more.",
            ),
            (
                "Write to help.desk@example.co.uk today. Other text.",
                "Write to help.desk@example.co.uk today.",
            ),
        ] {
            let s = sentences(text);
            assert_eq!(s, [first, "Other text."], "{text}");
        }
        // A sentence that ends in an abbreviation before a new one ends there
        // when the abbreviation can end one.
        assert_eq!(
            sentences("We reply in 2 days. No. We never call."),
            ["We reply in 2 days.", "No.", "We never call."]
        );
        assert_eq!(
            sentences("1. Open Settings. Then click Save."),
            ["1. Open Settings.", "Then click Save."]
        );
    }

    #[test]
    fn internal_documents_sections_and_paragraphs_are_marked() {
        let doc = parse(
            "a.md",
            "---\naudience: internal\n---\n# Refund procedure\n\nApprove refunds under $50.",
        );
        assert!(doc.internal);
        assert!(doc.chunks.iter().all(|c| c.internal));
        for title in [
            "Internal: bypass codes",
            "[Internal] Verification",
            "Refund playbook (agents only)",
            "Escalations - staff only",
        ] {
            let doc = parse("a.md", &format!("# {title}\n\nSome text."));
            assert!(doc.internal, "{title}");
        }
        // A customer title that merely contains the word is not internal.
        let doc = parse(
            "a.md",
            "# Internal transfers between accounts\n\nMove money.",
        );
        assert!(!doc.internal);
        assert!(!doc.chunks[0].internal);

        let doc = parse(
            "b.md",
            "# Resetting your PIN\n\nOpen the app and tap Reset PIN.\n\nAfter enhanced verification, explain: the PIN can be reset once a day.\n\nInstruct the customer to restart the phone. Agents should check:\n\n- the account status\n- the last reset\n\nThe new PIN works at once.\n\n## Agent notes\n\nUse the bypass code 1234.\n\n### Details\n\nMore internal detail.\n\n## Still stuck?\n\nContact us any time.",
        );
        assert!(!doc.internal);
        let public: Vec<&str> = doc
            .chunks
            .iter()
            .filter(|c| !c.internal)
            .map(|c| c.text.as_str())
            .collect();
        let internal: String = doc
            .chunks
            .iter()
            .filter(|c| c.internal)
            .map(|c| c.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            public,
            [
                "Open the app and tap Reset PIN.\n\nThe new PIN works at once.",
                "Contact us any time."
            ]
        );
        for s in [
            "explain:",
            "Instruct the customer",
            "- the account status",
            "bypass code",
            "More internal detail",
        ] {
            assert!(internal.contains(s), "{s} not internal: {internal}");
        }
    }

    #[test]
    fn agent_voice_is_recognized() {
        for s in [
            "Instruct the customer to restart the device.",
            "Advise the customer that refunds take 5 days.",
            "Tell the customer we are looking into it.",
            "Ask the customer to confirm their date of birth.",
            "Agents should verify the last four digits.",
            "Do not tell the customer about the bypass code.",
            "Refunds over $100 need approval (internal).",
            "After enhanced verification, explain: the code is valid once.",
            "Verify the caller's identity first.",
        ] {
            assert!(is_agent_voice(s), "{s}");
        }
        for s in [
            "Tell us what went wrong and we will help.",
            "Ask your bank to allow the payment.",
            "You can ask the Owner to remove you.",
            "Our agents can help you 24/7.",
            "The caller hears your greeting.",
        ] {
            assert!(!is_agent_voice(s), "{s}");
        }
    }

    #[test]
    fn garbage_does_not_panic() {
        for src in [
            "",
            "---",
            "---\n",
            "---\nurl",
            "#",
            "######## x",
            "```",
            "\u{feff}",
            "[](",
            "|---|",
            "# \n## \n",
            "| a |\n|---|\n",
            "- \n1. \n<br>",
            "a  \n  \n\\",
        ] {
            let _ = parse("x.md", src);
        }
        let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let _ = parse("x.md", &String::from_utf8_lossy(&bytes));
        let _ = sentences("..... ?! . 1. a. P.O.");
    }
}
