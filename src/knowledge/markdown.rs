//! Splits Markdown and plain-text documents into passages by heading and
//! paragraph, keeping each passage's document id, title, section and link.

use std::sync::LazyLock;

use regex::Regex;

/// Passages shorter than this are merged with the next paragraph.
const TARGET_CHARS: usize = 600;
/// Passages are split (at sentence ends) above this.
const MAX_CHARS: usize = 1_200;

/// A parsed document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Path relative to the KB root, `/`-separated.
    pub doc_id: String,
    /// Front-matter `title`, else the first heading, else the file name.
    pub title: String,
    /// Front-matter `url`.
    pub url: Option<String>,
    /// The passages, in document order.
    pub chunks: Vec<Chunk>,
}

/// One passage of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// The nearest heading above it (not the document title).
    pub section: Option<String>,
    /// Plain text, Markdown markup removed.
    pub text: String,
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
    let mut chunks = Vec::new();
    let mut section: Option<String> = None;
    let mut paragraph = String::new();
    let mut pending = String::new();
    let mut in_fence = false;

    let flush_paragraph = |paragraph: &mut String,
                           pending: &mut String,
                           section: &Option<String>,
                           chunks: &mut Vec<Chunk>| {
        let p = clean_inline(paragraph.trim());
        paragraph.clear();
        if p.is_empty() {
            return;
        }
        if !pending.is_empty() {
            pending.push_str("\n\n");
        }
        pending.push_str(&p);
        if pending.chars().count() >= TARGET_CHARS {
            push_chunk(chunks, section, pending);
        }
    };

    for line in body.lines() {
        let trimmed = line.trim();
        if is_markdown && (trimmed.starts_with("```") || trimmed.starts_with("~~~")) {
            in_fence = !in_fence;
            continue;
        }
        if is_markdown
            && !in_fence
            && let Some(heading) = heading(trimmed)
        {
            flush_paragraph(&mut paragraph, &mut pending, &section, &mut chunks);
            push_chunk(&mut chunks, &section, &mut pending);
            if title.is_none() {
                title = Some(heading);
            } else {
                section = Some(heading);
            }
            continue;
        }
        if trimmed.is_empty() && !in_fence {
            flush_paragraph(&mut paragraph, &mut pending, &section, &mut chunks);
            continue;
        }
        if !paragraph.is_empty() {
            paragraph.push('\n');
        }
        paragraph.push_str(trimmed);
    }
    flush_paragraph(&mut paragraph, &mut pending, &section, &mut chunks);
    push_chunk(&mut chunks, &section, &mut pending);

    Document {
        doc_id: doc_id.to_owned(),
        title: title.unwrap_or_else(|| title_from_path(doc_id)),
        url: field("url"),
        chunks,
    }
}

fn push_chunk(chunks: &mut Vec<Chunk>, section: &Option<String>, pending: &mut String) {
    if pending.trim().is_empty() {
        pending.clear();
        return;
    }
    for piece in split_long(pending.trim()) {
        chunks.push(Chunk {
            section: section.clone(),
            text: piece,
        });
    }
    pending.clear();
}

/// Splits text above `MAX_CHARS` at sentence ends (or, failing that, at
/// word boundaries) into pieces of at most `MAX_CHARS`.
fn split_long(text: &str) -> Vec<String> {
    if text.chars().count() <= MAX_CHARS {
        return vec![text.to_owned()];
    }
    let mut out = Vec::new();
    let mut current = String::new();
    for sentence in crate::knowledge::markdown::sentences(text) {
        if !current.is_empty() && current.chars().count() + sentence.chars().count() + 1 > MAX_CHARS
        {
            out.push(std::mem::take(&mut current));
        }
        if sentence.chars().count() > MAX_CHARS {
            for word in sentence.split_whitespace() {
                if current.chars().count() + word.chars().count() + 1 > MAX_CHARS {
                    out.push(std::mem::take(&mut current));
                }
                if !current.is_empty() {
                    current.push(' ');
                }
                current.push_str(word);
            }
            continue;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(sentence);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Splits text into sentences: at `.`, `!` or `?` followed by white space,
/// and at line breaks (list items, table rows).
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut start = 0;
        let bytes = line.as_bytes();
        for (i, c) in line.char_indices() {
            if matches!(c, '.' | '!' | '?')
                && bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace())
                && !is_abbreviation(&line[start..=i])
            {
                let s = line[start..=i].trim();
                if !s.is_empty() {
                    out.push(s);
                }
                start = i + 1;
            }
        }
        let rest = line[start..].trim();
        if !rest.is_empty() {
            out.push(rest);
        }
    }
    out
}

fn is_abbreviation(sentence: &str) -> bool {
    let last = sentence
        .split_whitespace()
        .last()
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(
        last.as_str(),
        "e.g." | "i.e." | "etc." | "vs." | "mr." | "mrs." | "dr." | "no." | "approx."
    ) || (last.len() <= 3
        && last.ends_with('.')
        && last[..last.len() - 1].chars().all(|c| c.is_ascii_digit()))
}

fn heading(line: &str) -> Option<String> {
    let hashes = line.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
        return None;
    }
    let text = clean_inline(line[hashes..].trim().trim_end_matches('#').trim());
    (!text.is_empty()).then_some(text)
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

static LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"!?\[([^\]]*)\]\([^)]*\)").expect("static regex"));
static HTML_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"</?[a-zA-Z][^>]*>").expect("static regex"));
static EMPHASIS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(\*\*|__|\*|`)").expect("static regex"));
static LIST_MARK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^\s*(?:[-*+]|\d+[.)])\s+").expect("static regex"));
static TABLE_RULE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^\|?[\s:|-]+\|[\s:|-]*$").expect("static regex"));

/// Removes inline Markdown (links keep their text) and HTML tags; list
/// items and table rows become lines of their own, a row reading
/// "first cell: other cells; …".
fn clean_inline(text: &str) -> String {
    let t = LINK.replace_all(text, "$1");
    let t = HTML_TAG.replace_all(&t, "");
    let t = EMPHASIS.replace_all(&t, "");
    let t = TABLE_RULE.replace_all(&t, "");
    let t = LIST_MARK.replace_all(&t, "");
    t.lines()
        .map(|l| {
            let l = l.trim().trim_start_matches("> ").trim();
            if l.contains('|') {
                let cells: Vec<&str> = l
                    .trim_matches('|')
                    .split('|')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect();
                match cells.split_first() {
                    Some((first, rest)) if !rest.is_empty() => {
                        format!("{first}: {}.", rest.join("; "))
                    }
                    Some((first, _)) => first.to_string(),
                    None => String::new(),
                }
            } else {
                l.split_whitespace().collect::<Vec<_>>().join(" ")
            }
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
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
        assert_eq!(doc.chunks.len(), 2);
        assert_eq!(doc.chunks[0].section, None);
        assert_eq!(doc.chunks[0].text, "Intro bold and a link.");
        assert_eq!(doc.chunks[1].section.as_deref(), Some("How long"));
        assert!(
            doc.chunks[1]
                .text
                .starts_with("Refunds take 5 days.\nCards only."),
            "{:?}",
            doc.chunks[1].text
        );
        assert!(doc.chunks[1].text.contains("code here"));
    }

    #[test]
    fn table_rows_read_as_lines() {
        let doc = parse(
            "p.md",
            "# Plans\n\n| Plan | Monthly | Annual |\n|---|---:|---|\n| Solo | $12 | $120 |\n| Team | $29 |  |\n",
        );
        assert_eq!(
            doc.chunks[0].text,
            "Plan: Monthly; Annual.\nSolo: $12; $120.\nTeam: $29."
        );
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
        ] {
            let _ = parse("x.md", src);
        }
        let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let _ = parse("x.md", &String::from_utf8_lossy(&bytes));
    }
}
