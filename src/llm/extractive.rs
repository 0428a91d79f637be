//! The default generator: no LLM. It answers with the knowledge base's own
//! words: the smallest complete unit of the best passage that answers the
//! kind of question asked, cites that passage, and reports a calibrated
//! confidence.
//!
//! Units are what help-centre articles are made of: the numbered steps of a
//! how-to section (with their lead-in), a bullet item with the sentence that
//! introduces its list, a whole list, a table row, or a sentence (with the
//! one before it when it leans on it: "This…", "It…"). A "how do I…"
//! question prefers steps; "how much", "how many", "how long" and "when"
//! prefer a unit that holds an amount, a number, a duration or a time. A
//! unit that holds a template placeholder (`[value not available]`,
//! `{{name}}`, `TBD`…), is written to an agent ("Instruct the customer…"),
//! or sits under an internal heading is never used; the answer is cleaned
//! of any Markdown or HTML left in the passage.
//!
//! Confidence is a logistic function (parameters fitted by `deskhand eval
//! --calibrate` on the dev set) of evidence that separates right answers
//! from wrong ones: how much of the question the passage covers, how much
//! the chosen unit (with its headings) covers, the margin over the best
//! unit of any other document (near-twin products), whether the
//! question's names and numbers appear, and whether the unit holds the kind
//! of answer asked for.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use async_trait::async_trait;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{GenerateError, GenerateRequest, Generation, Generator};
use crate::domain::{Channel, Usage};
use crate::knowledge::Passage;
use crate::knowledge::hybrid::Vocabulary;
use crate::knowledge::markdown::{is_agent_voice, is_internal_heading, sentences};
use crate::knowledge::tantivy::analyze;

/// Passages considered beyond the best one, when nearly as relevant.
const CANDIDATES: usize = 5;
/// Longest reply, in characters, before we stop adding units.
const MAX_CHAT_CHARS: usize = 600;
const MAX_EMAIL_CHARS: usize = 1_000;

/// Logistic calibration of the raw evidence score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Slope.
    pub slope: f32,
    /// Raw score at which confidence is 0.5.
    pub midpoint: f32,
}

impl Default for Calibration {
    fn default() -> Self {
        // The midpoint is the gate's operating point, chosen on
        // fixtures/eval/dev.jsonl for escalation precision at the gate's
        // 0.5 (`deskhand eval --calibrate` puts it at 0.35, which holds
        // back right answers). The slope is the log-loss fit on the same
        // set with that midpoint held: a steeper curve (20 before) called
        // answers of middling evidence near-certain, and the answers at
        // 0.85 and above were not 90 % right.
        Self {
            slope: 5.0,
            midpoint: 0.23,
        }
    }
}

impl Calibration {
    /// Maps a raw score in 0..=1 to a probability.
    pub fn apply(&self, raw: f32) -> f32 {
        1.0 / (1.0 + (-self.slope * (raw - self.midpoint)).exp())
    }
}

/// The extractive generator.
#[derive(Debug, Clone, Default)]
pub struct Extractive {
    calibration: Calibration,
    allow_internal: bool,
}

/// What the question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asks {
    /// "How do I…": steps or an instruction.
    Steps,
    /// "How much", "cost", "price": an amount.
    Amount,
    /// "How many", "limit": a number.
    Count,
    /// "How long", "how soon", "how often": a duration.
    Duration,
    /// "When", "what time", "what hours": a time, date or duration.
    Time,
    /// Anything else.
    Other,
}

/// What the extractive generator found, before calibration (for eval).
#[derive(Debug, Clone, PartialEq)]
pub struct Extract {
    /// The chosen units, rendered, in document order.
    pub units: Vec<String>,
    /// Index of the passage they come from.
    pub passage: usize,
    /// What the question asks for.
    pub asks: Asks,
    /// Relevance of the chosen passage (the retriever's coverage).
    pub passage_coverage: f32,
    /// Share of the question's terms the chosen units and their headings cover.
    pub unit_coverage: f32,
    /// Score margin over the best unit of another document, 0..=1.
    pub margin: f32,
    /// Share of the question's names and numbers found in the passage.
    pub entities: f32,
    /// The units hold the kind of answer asked for (1), partly (0.5), not (0).
    pub answer_type: f32,
}

impl Extract {
    /// The uncalibrated score, at most 1.
    pub fn raw(&self) -> f32 {
        // Coverage says whether the KB covers the question; the rest take
        // away from it what says the chosen unit may still be wrong.
        0.7 * self.passage_coverage + 0.3 * self.unit_coverage
            - 0.08 * (1.0 - self.margin)
            - 0.08 * (1.0 - self.entities)
            - 0.08 * (1.0 - self.answer_type)
    }

    /// The answer text.
    pub fn text(&self) -> String {
        let multiline = self.units.iter().any(|u| u.contains('\n'));
        customer_text(&self.units.join(if multiline { "\n\n" } else { " " }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sentence,
    Steps,
    Step,
    Item,
    List,
}

struct Unit {
    passage: usize,
    /// Position in the passage, for document order and overlap.
    first: usize,
    last: usize,
    kind: Kind,
    /// What the customer sees.
    text: String,
    /// Terms of the unit's own text.
    terms: HashSet<String>,
    /// The terms a list item adds to its lead-in.
    item_terms: Option<HashSet<String>>,
}

struct Line<'a> {
    text: &'a str,
    /// Numbered (`1.`) or bulleted (`-`) list item, marker removed.
    numbered: bool,
    item: Option<&'a str>,
    paragraph: usize,
}

static ITEM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?:([-*+•◦▪‣●–])|(\d{1,3}|[a-z])[.)])\s+").expect("static regex")
});

static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        \{\{[^}]*\}\} | \{%[^%]*%\} | \$\{[^}]*\}
        | \[\s*(?:insert|add|enter|value|placeholder|tbd|tbc|todo|to\s+be|n/?a\b|missing|fill|link|url|name|date|amount|price|number|phone|email|company|product)[^\]]*\]
        | \[[^\]]*\b(?:not\s+available|unavailable|missing|unknown|placeholder|goes\s+here)\b[^\]]*\]
        | <\s*(?:placeholder|insert|tbd|todo)[^>]*>
        | \b(?:TBD|TBC|TODO|FIXME|XXX+|lorem\s+ipsum)\b
        | \bx{3,}\b",
    )
    .expect("static regex")
});

static AMOUNT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[$£€¥₹]\s?\d|\d\s?(?:usd|eur|gbp|cad|aud|dollars?|euros?|pounds?|cents?|pence)\b|\d\s?%|\bfree\b|\bno (?:extra )?(?:charge|cost|fee)\b")
        .expect("static regex")
});
static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|hundred|thousand|unlimited|no limit)\b")
        .expect("static regex")
});
static DURATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?ix)
        \b(?:\d+(?:[.,]\d+)?|an?|one|two|three|four|five|six|seven|eight|nine|ten|twelve|fifteen|twenty|thirty|few|several|24)
          (?:\s*(?:-|–|to|or)\s*\d+)?\s*[-\s]?(?:business\s+|working\s+|calendar\s+|full\s+)?
          (?:seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|nights?)\b
        ")
        .expect("static regex")
});
/// Words that say when or how soon without a number.
static SOON: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:immediately|instantly|right\s+away|straight\s+away|at\s+once|overnight|same\s+day|next\s+day|real[\s-]time|daily|weekly|monthly|hourly|yearly|annually)\b")
        .expect("static regex")
});
static TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?ix)
        \b\d{1,2}(?::\d{2})?\s*(?:am|pm|a\.m\.|p\.m\.)
        | \b\d{1,2}:\d{2}\b
        | \b(?:mon|tues|wednes|thurs|fri|satur|sun)days?\b | \bweekends?\b | \bweekdays?\b
        | \b(?:january|february|march|april|may|june|july|august|september|october|november|december)\b
        | \b(?:before|after|until|by|on|at\s+the\s+end\s+of|at\s+the\s+start\s+of)\s+(?:the|your|each|every)\b
        | \b(?:24/7|around\s+the\s+clock|midnight|noon)\b")
        .expect("static regex")
});
/// "When" that asks ("when will…", "by when"), not one that sets a scene
/// ("…the codes I printed when I set it up").
static WHEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bwhen\s+(?:is|are|was|were|will|would|do|does|did|can|could|should|shall|must|'s)\b|\b(?:by|until|till|since|from)\s+when\b|^\s*when\s*\?")
        .expect("static regex")
});
/// Words that say what kind of answer is wanted ("how many", "how
/// long") or stand in for a noun ("the old one"), not what it is about.
static FORM_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bhow\s+(?:many|much|long|often|soon|quickly|fast|far)\b|\b(?:one|ones)\b")
        .expect("static regex")
});
static INSTRUCTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)→|\s>\s|\b(?:go to|click|tap|select|choose|open|press|enter|sign in|log in|visit|dial|text|scan|turn on|turn off|switch|contact|call|reply|forward|download|upload|type)\b")
        .expect("static regex")
});

/// Leftover markup: emphasis, inline code, HTML tags, link syntax, table rules.
static DEBRIS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\*\*|__|`|~~|<br\s*/?>|</?[a-z][a-z0-9]*(?:\s[^<>]*)?/?>|^#{1,6}\s+|\s*\|\s*")
        .expect("static regex")
});
static LINK_SYNTAX: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[([^\]]*)\]\([^)]*\)").expect("static regex"));
/// Images: Markdown syntax (alt text is not for the reader of a reply),
/// bare image file names and "[image]"-style markers.
static IMAGE_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)!\[[^\]]*\]\([^)]*\)|\[(?:image|screenshot|img|figure|video)[^\]]*\]|\(\s*(?:image|screenshot)\s*\)|[^\s()\[\]]+\.(?:png|jpe?g|gif|svg|webp|bmp)\b")
        .expect("static regex")
});
/// Help-centre chrome, not content: feedback widgets, navigation, share
/// and print links, "updated" stamps.
static CHROME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        ^\s*(?:was\s+this\s+(?:article|page|answer|information)\s+helpful
        | did\s+this\s+(?:article|page|answer)\s+(?:help|answer)
        | (?:related|popular|recommended|more|other|similar)\s+(?:articles|topics|questions)\b
        | see\s+also\b | in\s+this\s+article\b | (?:table\s+of\s+)?contents\s*:?\s*$ | back\s+to\s+top\b
        | (?:share|print|email)\s+this\s+(?:article|page)\b
        | (?:last\s+)?(?:updated|modified|edited)\s*(?::|on\b|\d|an?\s+\w+\s+ago|\d+\s+\w+\s+ago)
        | \d+\s+(?:out\s+of\s+)?(?:of\s+)?\d+\s+(?:people\s+)?found\s+this\s+helpful
        | (?:yes|no)\s*[/|]?\s*(?:yes|no)?\s*$
        | (?:still\s+need\s+help|have\s+more\s+questions|can'?t\s+find\s+what\s+you'?re\s+looking\s+for)\??\s*(?:submit\s+a\s+request|contact\s+us)?\.?\s*$
        | (?:thumbs\s+up|thumbs\s+down|helpful\s*\?|not\s+helpful)\s*$)",
    )
    .expect("static regex")
});

/// Whether `text` (a line or a heading) is help-centre chrome rather than
/// content: "Was this article helpful?", "Related articles", "Updated 3
/// days ago"…
pub fn is_chrome(text: &str) -> bool {
    CHROME.is_match(text)
}

/// `text` as a customer may see it: no Markdown or HTML debris, white
/// space tidied, list markers plain.
pub fn customer_text(text: &str) -> String {
    let t = IMAGE_REF.replace_all(text, "");
    let t = LINK_SYNTAX.replace_all(&t, "$1");
    let mut lines = Vec::new();
    let mut blank = false;
    for line in t.lines() {
        let l = line.trim();
        if l.is_empty() {
            blank = !lines.is_empty();
            continue;
        }
        if l.chars()
            .all(|c| matches!(c, '|' | '-' | ':' | ' ' | '=' | '*' | '_'))
        {
            continue;
        }
        let cleaned = DEBRIS.replace_all(l, |c: &regex::Captures<'_>| {
            if c[0].contains('|') {
                "; "
            } else if c[0].starts_with('<') {
                " "
            } else {
                ""
            }
        });
        let cleaned = cleaned
            .trim_matches(|c: char| c == ';' || c.is_whitespace())
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if cleaned.is_empty() {
            continue;
        }
        if blank {
            lines.push(String::new());
            blank = false;
        }
        lines.push(cleaned);
    }
    lines.join("\n")
}

/// Whether `text` holds a template placeholder that must not reach a customer.
pub fn has_placeholder(text: &str) -> bool {
    PLACEHOLDER.is_match(text)
}

/// What `question` asks for.
pub fn asks(question: &str) -> Asks {
    let q = question.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| contains_words(&q, w));
    if has(&[
        "how long",
        "how soon",
        "how quickly",
        "how fast",
        "how often",
        "how many days",
        "how many hours",
        "how many weeks",
    ]) {
        Asks::Duration
    } else if has(&[
        "how much",
        "cost",
        "costs",
        "price",
        "prices",
        "pricing",
        "fee",
        "fees",
        "charge for",
        "expensive",
        "cheapest",
        "rate",
    ]) {
        Asks::Amount
    } else if has(&[
        "how many",
        "limit",
        "limits",
        "maximum",
        "minimum",
        "max",
        "how big",
        "how large",
    ]) {
        Asks::Count
    } else if has(&[
        "how do i",
        "how can i",
        "how to",
        "how would i",
        "how should i",
        "how do you",
        "how do we",
        "how can we",
        "where do i",
        "where can i",
        "what are the steps",
        "steps to",
        "walk me through",
        "what do i need to do",
        "what should i do",
        "what do i do",
        "what now",
        "how i can",
        "how i do",
    ]) {
        Asks::Steps
    } else if WHEN.is_match(&q)
        || has(&[
            "what time",
            "what hours",
            "which hours",
            "what days",
            "which days",
            "deadline",
            "opening hours",
            "open hours",
        ])
    {
        Asks::Time
    } else {
        Asks::Other
    }
}

fn contains_words(haystack: &str, phrase: &str) -> bool {
    haystack.match_indices(phrase).any(|(i, _)| {
        let before = haystack[..i].chars().next_back();
        let after = haystack[i + phrase.len()..].chars().next();
        before.is_none_or(|c| !c.is_alphanumeric()) && after.is_none_or(|c| !c.is_alphanumeric())
    })
}

/// How well `unit` holds the kind of answer `asks` wants: 1, 0.5 or 0.
fn answer_type(want: &Want, kind: Kind, text: &str) -> f32 {
    let (asks, noun) = (want.asks, want.noun.as_deref());
    // List numbers are not numbers the customer asked for, nor are the
    // ones the customer gave ("I get 429 errors").
    let mut bare: String = text
        .lines()
        .map(|l| ITEM.replace(l, ""))
        .collect::<Vec<_>>()
        .join("\n");
    if !want.given.is_empty() {
        bare = GIVEN_NUMBER
            .replace_all(&bare, |c: &regex::Captures<'_>| {
                if want.given.iter().any(|g| g == &c[0]) {
                    String::from(" ")
                } else {
                    c[0].to_owned()
                }
            })
            .into_owned();
    }
    let text = bare.as_str();
    // Steps say how, rarely how much or how long.
    let scale = if kind == Kind::Steps && asks != Asks::Steps {
        0.5
    } else {
        1.0
    };
    scale
        * match asks {
            Asks::Steps => match kind {
                Kind::Steps => 1.0,
                Kind::List => 0.25,
                _ if INSTRUCTION.is_match(text) => 0.5,
                _ => 0.0,
            },
            Asks::Amount => f32::from(AMOUNT.is_match(text)),
            Asks::Count => match noun {
                _ if !NUMBER.is_match(text) => 0.0,
                Some(n) if !counts(text, n) => 0.25,
                _ => 1.0,
            },
            Asks::Duration => {
                if DURATION.is_match(text) {
                    1.0
                } else if SOON.is_match(text) || NUMBER.is_match(text) {
                    0.5
                } else {
                    0.0
                }
            }
            Asks::Time => {
                if TIME.is_match(text) || DURATION.is_match(text) {
                    1.0
                } else if SOON.is_match(text) {
                    0.5
                } else {
                    0.0
                }
            }
            Asks::Other => 0.0,
        }
}

/// What the question asks for, in detail.
struct Want {
    asks: Asks,
    /// What "how many" counts, as an index term.
    noun: Option<String>,
    /// Numbers the question itself gives.
    given: Vec<String>,
}

static GIVEN_NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d+(?:[.,]\d+)*").expect("static regex"));

/// What "how many" counts ("how many API keys can…" → `key`), as an
/// index term.
fn counted(question: &str) -> Option<String> {
    let q = question.to_lowercase();
    let rest = q
        .find("how many ")
        .map(|i| &q[i + 9..])
        .or_else(|| q.find("number of ").map(|i| &q[i + 10..]))?;
    const STOP: &[&str] = &[
        "can", "could", "do", "does", "did", "is", "are", "was", "were", "will", "would", "should",
        "may", "might", "i", "we", "you", "they", "there", "per", "in", "on", "for", "of", "at",
        "to", "my", "our", "your", "a", "an", "the", "that", "which", "allowed",
    ];
    let words: Vec<&str> = rest
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(3)
        .take_while(|w| !STOP.contains(w))
        .collect();
    words.last().and_then(|w| analyze(w).into_iter().next())
}

/// Whether a number in `text` counts `noun` (an index term): the noun is
/// among the three words after it ("up to 5 active keys") or the two
/// before it ("keys: 5").
fn counts(text: &str, noun: &str) -> bool {
    let is_noun = |w: &str| analyze(w).iter().any(|t| t == noun);
    text.lines().any(|line| {
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ':' | ';' | '/'))
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
            .filter(|w| !w.is_empty())
            .collect();
        words.iter().enumerate().any(|(i, w)| {
            NUMBER.is_match(w)
                && (words[i + 1..].iter().take(3).any(|x| is_noun(x))
                    || words[i.saturating_sub(2)..i].iter().any(|x| is_noun(x)))
        })
    })
}

/// The question's names and numbers: words capitalized inside a sentence,
/// all-caps words and numbers, as index terms.
fn entities(question: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    for s in sentences(question) {
        for (i, w) in s.split_whitespace().enumerate() {
            let w = w.trim_matches(|c: char| !c.is_alphanumeric());
            if w.is_empty() || w.eq_ignore_ascii_case("i") {
                continue;
            }
            let capital = i > 0 && w.chars().next().is_some_and(char::is_uppercase);
            let digits = w.chars().any(|c| c.is_ascii_digit());
            if capital || digits {
                out.extend(analyze(w));
            }
        }
    }
    out
}

/// The passage's lines, split into paragraphs and list items.
fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    for (pi, para) in text.split("\n\n").enumerate() {
        for l in para.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (item, numbered) = match ITEM.captures(l) {
                Some(c) => (
                    Some(&l[c.get(0).map_or(0, |m| m.end())..]),
                    c.get(2).is_some(),
                ),
                None => (None, false),
            };
            out.push(Line {
                text: l,
                numbered,
                item,
                paragraph: pi,
            });
        }
    }
    out
}

/// Every answer unit of passage `pi`.
fn units(pi: usize, text: &str) -> Vec<Unit> {
    let ls = lines(text);
    let mut out = Vec::new();
    let mut pos = 0;
    // Sentences of prose lines, with their position.
    let mut prose: Vec<(usize, usize, &str)> = Vec::new(); // (position, line, sentence)
    let mut line_pos = Vec::with_capacity(ls.len());
    for (li, l) in ls.iter().enumerate() {
        line_pos.push(pos);
        if l.item.is_none() {
            for s in sentences(l.text) {
                prose.push((pos, li, s));
                pos += 1;
            }
        } else {
            pos += 1;
        }
    }
    let mk = |first, last, kind, text: String| Unit {
        passage: pi,
        first,
        last,
        kind,
        terms: analyze(&text).into_iter().collect(),
        item_terms: None,
        text,
    };
    // Sentences, leaning on the one before when they start with a pronoun.
    let leans = [
        "it ",
        "its ",
        "this ",
        "that ",
        "these ",
        "those ",
        "they ",
        "then ",
        "also ",
        "however",
        "for example",
        "for instance",
        "otherwise",
        "in that case",
        "if so",
        "when it does",
    ];
    let refers = [
        "that time",
        "this time",
        "that period",
        "this period",
        "the above",
        "as above",
        "this case",
        "that case",
        "the same way",
    ];
    for (k, &(p, li, s)) in prose.iter().enumerate() {
        let lower = s.to_lowercase();
        let leaning =
            leans.iter().any(|w| lower.starts_with(w)) || refers.iter().any(|w| lower.contains(w));
        let prev = k
            .checked_sub(1)
            .map(|j| prose[j])
            .filter(|&(pp, pli, _)| pp + 1 == p && ls[pli].paragraph == ls[li].paragraph);
        match prev {
            Some((pp, _, ps)) if leaning => {
                out.push(mk(pp, p, Kind::Sentence, format!("{ps} {s}")));
            }
            _ => out.push(mk(p, p, Kind::Sentence, s.to_owned())),
        }
    }
    // Short paragraphs whole: often the complete answer to their heading.
    let mut k = 0;
    while k < prose.len() {
        let (p0, li0, _) = prose[k];
        let mut j = k;
        while j + 1 < prose.len() && prose[j + 1].1 == li0 {
            j += 1;
        }
        let text = ls[li0].text;
        if j > k && text.chars().count() <= 400 {
            out.push(mk(p0, prose[j].0, Kind::Sentence, text.to_owned()));
        }
        k = j + 1;
    }
    // Lists: runs of items, with the sentence before them when it ends with ':'.
    let mut i = 0;
    while i < ls.len() {
        if ls[i].item.is_none() {
            i += 1;
            continue;
        }
        let numbered = ls[i].numbered;
        let mut j = i;
        while j + 1 < ls.len() && ls[j + 1].item.is_some() && ls[j + 1].numbered == numbered {
            j += 1;
        }
        let lead = i
            .checked_sub(1)
            .and_then(|h| sentences(ls[h].text).last().copied().map(|s| (h, s)))
            .filter(|(h, s)| ls[*h].item.is_none() && s.trim_end().ends_with(':'));
        let lead_text = lead.map(|(_, s)| s.trim().to_owned());
        let first = lead.map_or(line_pos[i], |(h, _)| {
            line_pos[h] + sentences(ls[h].text).len().saturating_sub(1)
        });
        let items: Vec<&str> = (i..=j).filter_map(|k| ls[k].item).collect();
        let render = |marks: bool, sel: &[usize]| {
            let mut t = lead_text.clone().map(|l| l + "\n").unwrap_or_default();
            for (n, &k) in sel.iter().enumerate() {
                if marks && numbered {
                    t.push_str(&format!("{}. {}\n", n + 1, items[k]));
                } else {
                    t.push_str(&format!("- {}\n", items[k]));
                }
            }
            t.trim_end().to_owned()
        };
        let all: Vec<usize> = (0..items.len()).collect();
        if numbered {
            out.push(mk(first, line_pos[j], Kind::Steps, render(true, &all)));
            for (k, item) in items.iter().enumerate() {
                out.push(mk(
                    line_pos[i + k],
                    line_pos[i + k],
                    Kind::Step,
                    (*item).to_owned(),
                ));
            }
        } else {
            if items.len() > 1 {
                out.push(mk(first, line_pos[j], Kind::List, render(false, &all)));
            }
            for (k, item) in items.iter().enumerate() {
                let text = match &lead_text {
                    Some(l) => format!("{l}\n- {item}"),
                    None => (*item).to_owned(),
                };
                let mut unit = mk(line_pos[i + k], line_pos[i + k], Kind::Item, text);
                // What the item says that its lead-in does not.
                let lead: HashSet<String> = lead_text.iter().flat_map(|l| analyze(l)).collect();
                unit.item_terms = Some(
                    analyze(item)
                        .into_iter()
                        .filter(|t| !lead.contains(t))
                        .collect(),
                );
                out.push(unit);
            }
        }
        i = j + 1;
    }
    out
}

impl Extractive {
    /// An extractive generator with the given calibration.
    pub fn new(calibration: Calibration) -> Self {
        Self {
            calibration,
            allow_internal: false,
        }
    }

    /// Whether agent-facing text may be used in answers (off by default).
    pub fn allowing_internal(mut self, allow: bool) -> Self {
        self.allow_internal = allow;
        self
    }

    /// Picks the units that answer `question` from `passages`, leaving
    /// agent-facing text out.
    pub fn extract(question: &str, passages: &[Passage], max_chars: usize) -> Option<Extract> {
        Self::extract_with(question, passages, max_chars, false)
    }

    /// [`Extractive::extract`], with agent-facing text allowed or not.
    pub fn extract_with(
        question: &str,
        passages: &[Passage],
        max_chars: usize,
        allow_internal: bool,
    ) -> Option<Extract> {
        let best = passages.first()?;
        // The question's topic words, spelled as the passages spell them
        // (the retriever forgave the typo; the units must too).
        let vocabulary = Vocabulary::of_texts(passages.iter().take(CANDIDATES).flat_map(|p| {
            [
                p.title.as_str(),
                p.section.as_deref().unwrap_or(""),
                p.text.as_str(),
            ]
        }));
        let topic = FORM_WORDS
            .replace_all(&crate::knowledge::topical(question), " ")
            .into_owned();
        let q = analyze(&vocabulary.correct(&topic));
        if q.is_empty() {
            return None;
        }
        let kind = asks(question);
        let want = Want {
            asks: kind,
            noun: counted(question),
            given: GIVEN_NUMBER
                .find_iter(question)
                .map(|m| m.as_str().to_owned())
                .collect(),
        };
        let floor = best.relevance * 0.6;
        let mut all: Vec<Unit> = Vec::new();
        let mut heading_terms: HashMap<usize, HashSet<String>> = HashMap::new();
        for (pi, p) in passages.iter().enumerate().take(CANDIDATES) {
            if p.relevance < floor {
                continue;
            }
            if p.section.as_deref().is_some_and(is_chrome) {
                continue;
            }
            let internal = is_internal_heading(&p.title)
                || p.section.as_deref().is_some_and(is_internal_heading);
            if internal && !allow_internal {
                continue;
            }
            let mut heads: HashSet<String> = analyze(&p.title).into_iter().collect();
            heads.extend(analyze(p.section.as_deref().unwrap_or("")));
            heading_terms.insert(pi, heads);
            // Images go before the text is cut into sentences: "![…]" is
            // no sentence end.
            let text = IMAGE_REF.replace_all(&p.text, "");
            all.extend(units(pi, &text).into_iter().filter(|u| {
                // A lead-in alone is a fragment: it comes with its list.
                let lead_in_alone = !matches!(u.kind, Kind::Steps | Kind::List | Kind::Item)
                    && u.text.trim_end().ends_with(':');
                !lead_in_alone
                    && !u.text.lines().any(is_chrome)
                    && !has_placeholder(&u.text)
                    && (allow_internal || !is_agent_voice(&u.text))
            }));
        }
        if all.is_empty() {
            return None;
        }
        // Term weights from the candidate units: a term in every unit tells
        // them apart less than a rare one.
        let n = all.len() as f32;
        let mut df: HashMap<&str, f32> = HashMap::new();
        for u in &all {
            for t in &q {
                if u.terms.contains(t) {
                    *df.entry(t).or_default() += 1.0;
                }
            }
        }
        let weight = |t: &str| (1.0 + n / (1.0 + df.get(t).copied().unwrap_or(0.0))).ln();
        let total: f32 = q.iter().map(|t| weight(t)).sum();
        let cover = |has: &dyn Fn(&str) -> bool| {
            q.iter()
                .filter(|t| has(t.as_str()))
                .map(|t| weight(t))
                .sum::<f32>()
                / total
        };
        let type_weight = if kind == Asks::Steps { 0.25 } else { 0.2 };
        let scored: Vec<(f32, f32, f32)> = all
            .iter()
            .map(|u| {
                let heads = &heading_terms[&u.passage];
                let own = cover(&|t| u.terms.contains(t));
                let ctx = cover(&|t| u.terms.contains(t) || heads.contains(t));
                // The heading speaks for the unit that opens its section
                // fully, for the others by half.
                let ctx = if u.first == 0 { ctx } else { (own + ctx) / 2.0 };
                // Steps under a heading that names the task ("Updating your
                // card") answer "how do I update my card".
                let task = if kind == Asks::Steps && u.kind == Kind::Steps {
                    cover(&|t| heads.contains(t))
                } else {
                    0.0
                };
                let typ = answer_type(&want, u.kind, &u.text);
                // An item that matches the question only through its
                // lead-in answers no more than its whole list does.
                let generic_item = u
                    .item_terms
                    .as_ref()
                    .is_some_and(|t| cover(&|x| t.contains(x)) == 0.0);
                let len = u.text.chars().count() as f32;
                let score = 0.40 * own
                    + 0.25 * ctx
                    + 0.20 * passages[u.passage].relevance
                    + 0.25 * task
                    + type_weight * typ
                    - if generic_item { 0.1 } else { 0.0 }
                    - 0.02 * u.passage as f32
                    - 0.0002 * len
                    - 0.0004 * (len - 200.0).max(0.0)
                    - if len > max_chars as f32 { 1.0 } else { 0.0 };
                (score, own, ctx)
            })
            .collect();
        let (bi, &(best_score, best_own, _)) = scored
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.0.total_cmp(&b.1.0))?;
        if best_own == 0.0 && scored[bi].2 == 0.0 {
            return None;
        }
        let chosen = &all[bi];
        let doc = &passages[chosen.passage].doc_id;
        let mut pick = vec![bi];
        // A second unit of the same passage when it covers what the first
        // leaves out (a two-part question), or holds the asked-for kind of
        // answer the first lacks.
        let heads = &heading_terms[&chosen.passage];
        let covered: HashSet<&String> = q
            .iter()
            .filter(|t| chosen.terms.contains(*t) || heads.contains(*t))
            .collect();
        let chosen_type = answer_type(&want, chosen.kind, &chosen.text);
        let mut extra: Option<(usize, f32)> = None;
        for (i, u) in all.iter().enumerate() {
            if u.passage != chosen.passage
                || (u.first <= chosen.last && chosen.first <= u.last)
                || u.text.chars().count() + chosen.text.chars().count() > max_chars
            {
                continue;
            }
            let gain = q
                .iter()
                .filter(|t| !covered.contains(t) && u.terms.contains(*t))
                .map(|t| weight(t))
                .sum::<f32>()
                / total;
            let typed = kind != Asks::Other
                && chosen_type < 1.0
                && answer_type(&want, u.kind, &u.text) == 1.0
                && scored[i].1 >= 0.5 * best_own;
            let value = gain + if typed { 0.3 } else { 0.0 };
            if (gain >= 0.2 || typed) && extra.is_none_or(|(_, v)| value > v) {
                extra = Some((i, value));
            }
        }
        if let Some((i, _)) = extra {
            pick.push(i);
        }
        pick.sort_by_key(|&i| all[i].first);
        let terms: HashSet<String> = pick
            .iter()
            .flat_map(|&i| all[i].terms.iter())
            .chain(heads.iter())
            .cloned()
            .collect();
        let unit_coverage = cover(&|t| terms.contains(t));
        let answer_type = pick
            .iter()
            .map(|&i| answer_type(&want, all[i].kind, &all[i].text))
            .fold(0.0, f32::max);
        let answer_type = if kind == Asks::Other {
            0.7
        } else {
            answer_type
        };
        let runner_up = all
            .iter()
            .zip(&scored)
            .filter(|(u, _)| &passages[u.passage].doc_id != doc)
            .map(|(_, s)| s.0)
            .fold(f32::NEG_INFINITY, f32::max);
        let margin = if runner_up.is_finite() {
            ((best_score - runner_up) / 0.2).clamp(0.0, 1.0)
        } else {
            1.0
        };
        let names = entities(question);
        let p = &passages[chosen.passage];
        let in_passage: HashSet<String> = analyze(&format!(
            "{}\n{}\n{}",
            p.title,
            p.section.as_deref().unwrap_or(""),
            p.text
        ))
        .into_iter()
        .collect();
        let entities = if names.is_empty() {
            1.0
        } else {
            names.iter().filter(|t| in_passage.contains(*t)).count() as f32 / names.len() as f32
        };
        Some(Extract {
            units: pick.iter().map(|&i| all[i].text.clone()).collect(),
            passage: chosen.passage,
            asks: kind,
            passage_coverage: p.relevance,
            unit_coverage,
            margin,
            entities,
            answer_type,
        })
    }
}

#[async_trait]
impl Generator for Extractive {
    async fn generate(&self, req: &GenerateRequest) -> Result<Generation, GenerateError> {
        let question = match &req.subject {
            Some(s) => format!("{s}\n{}", req.question),
            None => req.question.clone(),
        };
        let max = if req.channel == Channel::Email {
            MAX_EMAIL_CHARS
        } else {
            MAX_CHAT_CHARS
        };
        let found = Self::extract_with(&question, &req.passages, max, self.allow_internal);
        let answer = found.as_ref().map(Extract::text).unwrap_or_default();
        let Some(x) = found.filter(|_| !answer.is_empty() && !has_placeholder(&answer)) else {
            return Ok(Generation {
                answer: String::new(),
                confidence: 0.0,
                needs_human: true,
                reason: Some("no_knowledge".into()),
                sources: Vec::new(),
                usage: Usage::default(),
            });
        };
        Ok(Generation {
            answer,
            confidence: self.calibration.apply(x.raw()),
            needs_human: false,
            reason: None,
            sources: vec![req.passages[x.passage].doc_id.clone()],
            usage: Usage::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(doc: &str, section: Option<&str>, text: &str, relevance: f32) -> Passage {
        Passage {
            doc_id: doc.into(),
            title: doc.trim_end_matches(".md").replace(['-', '/'], " "),
            section: section.map(Into::into),
            text: text.into(),
            url: None,
            score: 1.0,
            relevance,
        }
    }

    fn request(q: &str, passages: Vec<Passage>) -> GenerateRequest {
        GenerateRequest {
            question: q.into(),
            subject: None,
            history: vec![],
            passages,
            channel: Channel::Widget,
        }
    }

    async fn answer(q: &str, passages: Vec<Passage>) -> Generation {
        Extractive::default()
            .generate(&request(q, passages))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn answers_with_the_covering_sentence_and_cites_it() {
        let p = vec![
            passage(
                "billing/refunds.md",
                None,
                "We love our customers. Annual plans can be refunded within 14 days of purchase. Monthly plans are not refunded.",
                0.9,
            ),
            passage(
                "account/password.md",
                None,
                "Reset your password from the sign-in page.",
                0.2,
            ),
        ];
        let g = answer("can I get a refund on an annual plan?", p).await;
        assert!(
            g.answer
                .starts_with("Annual plans can be refunded within 14 days"),
            "{}",
            g.answer
        );
        assert!(!g.answer.contains("love"));
        assert_eq!(g.sources, ["billing/refunds.md"]);
        assert!(!g.needs_human);
    }

    #[tokio::test]
    async fn a_how_to_question_gets_the_numbered_steps() {
        let p = vec![passage(
            "account/sign-in.md",
            Some("Reset your password"),
            "1. On the sign-in page, click Forgot password?\n2. Enter the email address you use.\n3. Open the email and click Reset password.\n4. Choose a new password of at least 10 characters.\n\nThe link is valid for 60 minutes. Resetting your password signs you out of every other device.",
            0.9,
        )];
        let g = answer("How do I reset my password?", p.clone()).await;
        assert!(
            g.answer
                .starts_with("1. On the sign-in page, click Forgot password?\n2. Enter"),
            "{}",
            g.answer
        );
        assert!(
            g.answer.contains("4. Choose a new password"),
            "{}",
            g.answer
        );
        // The number asked for, not the steps.
        let g = answer("how long is the password reset link valid?", p).await;
        assert!(
            g.answer.starts_with("The link is valid for 60 minutes."),
            "{}",
            g.answer
        );
        assert!(!g.answer.contains("1."), "{}", g.answer);
    }

    #[tokio::test]
    async fn a_list_lead_in_comes_with_its_item() {
        let p = vec![passage(
            "shipping.md",
            Some("Delivery times"),
            "Orders ship from our warehouse on weekdays. Delivery depends on the service you choose:\n- Standard: 3 to 6 business days, $5.\n- Expedited: 2 business days, $15.\n- Overnight: next business day, $25.\n\nWe cannot ship to P.O. boxes with expedited or overnight service.",
            0.9,
        )];
        let g = answer("how long does expedited delivery take?", p.clone()).await;
        assert_eq!(
            g.answer,
            "Delivery depends on the service you choose:\n- Expedited: 2 business days, $15."
        );
        let g = answer("can you ship overnight to a P.O. box?", p).await;
        assert!(
            g.answer
                .contains("We cannot ship to P.O. boxes with expedited or overnight service."),
            "{}",
            g.answer
        );
    }

    #[tokio::test]
    async fn a_how_much_question_gets_the_amount() {
        let p = vec![passage(
            "plans.md",
            Some("Unlimited plan"),
            "The Unlimited plan is our most popular choice for heavy users. It costs $40 a month including taxes. Hotspot use is included up to 10 GB.",
            0.9,
        )];
        let g = answer("how much is the unlimited plan?", p).await;
        assert!(g.answer.contains("$40 a month"), "{}", g.answer);
    }

    #[tokio::test]
    async fn placeholders_and_agent_text_never_reach_the_customer() {
        let p = vec![passage(
            "fees.md",
            Some("Late fees"),
            "The late fee is [value not available] per invoice. Late fees are charged after {{grace_days}} days. Instruct the customer to pay the late fee by card. Late fees can be waived once a year on request.",
            0.9,
        )];
        let g = answer("what is the late fee?", p.clone()).await;
        assert!(!g.answer.contains("[value"), "{}", g.answer);
        assert!(!g.answer.contains("{{"), "{}", g.answer);
        assert!(!g.answer.contains("Instruct"), "{}", g.answer);
        assert!(g.answer.contains("waived once a year"), "{}", g.answer);
        // Allowed by the setting, agent text may be used.
        let x = Extractive::extract_with("instruct pay late fee card", &p, 600, true).unwrap();
        assert!(x.text().contains("Instruct the customer"), "{}", x.text());
        // A passage under an internal heading is not used at all.
        let p = vec![passage(
            "pin.md",
            Some("Internal: bypass codes"),
            "The bypass code for a locked PIN is 0000.",
            0.9,
        )];
        let g = answer("what is the bypass code for a locked PIN?", p).await;
        assert!(g.needs_human && g.answer.is_empty(), "{}", g.answer);
        let g = answer(
            "what is the price?",
            vec![passage("p.md", None, "The price is TBD.", 0.9)],
        )
        .await;
        assert!(g.needs_human, "{}", g.answer);
    }

    #[tokio::test]
    async fn near_twin_documents_lower_confidence() {
        let twins = vec![
            passage(
                "bronze.md",
                Some("Bronze plan"),
                "The Bronze plan costs $20 a month and includes 5 GB of data.",
                0.8,
            ),
            passage(
                "business-bronze.md",
                Some("Business Bronze plan"),
                "The Business Bronze plan costs $35 a month and includes 5 GB of data.",
                0.8,
            ),
        ];
        let alone = vec![twins[0].clone()];
        let q = "how much is the Bronze plan a month?";
        let a = Extractive::extract(q, &twins, 600).unwrap();
        let b = Extractive::extract(q, &alone, 600).unwrap();
        assert!(a.margin < b.margin, "{} vs {}", a.margin, b.margin);
        let c = Calibration::default();
        assert!(c.apply(a.raw()) < c.apply(b.raw()));
    }

    #[tokio::test]
    async fn a_unit_without_the_asked_for_kind_is_weak() {
        let with = vec![passage(
            "a.md",
            Some("Transfers"),
            "Transfers to another bank take 2 business days.",
            0.8,
        )];
        let without = vec![passage(
            "a.md",
            Some("Transfers"),
            "Transfers to another bank are shown in your activity.",
            0.8,
        )];
        let q = "how long do transfers to another bank take?";
        let a = Extractive::extract(q, &with, 600).unwrap();
        let b = Extractive::extract(q, &without, 600).unwrap();
        assert_eq!(a.answer_type, 1.0);
        assert_eq!(b.answer_type, 0.0);
        assert!(a.raw() > b.raw());
    }

    #[tokio::test]
    async fn how_many_wants_the_number_of_what_it_counts() {
        let p = vec![
            passage(
                "limits.md",
                Some("Usage limits"),
                "Every workspace has two limits:\n- 500 uploads per day per workspace\n- 50 GB of storage per workspace",
                0.9,
            ),
            passage(
                "members.md",
                Some("Adding members"),
                "Open Settings and click Add member. Each workspace can have up to 8 members.",
                0.8,
            ),
        ];
        let g = answer("How many members can one workspace have?", p.clone()).await;
        assert!(g.answer.contains("up to 8 members"), "{}", g.answer);
        assert_eq!(g.sources, ["members.md"]);
        // The question names the list, not one item: the whole list.
        let g = answer("what are the workspace limits?", p).await;
        assert!(
            g.answer.contains("500 uploads") && g.answer.contains("50 GB"),
            "{}",
            g.answer
        );
        assert_eq!(
            counted("how many API keys can I create?").as_deref(),
            Some("key")
        );
        assert_eq!(
            counted("what's the maximum number of seats per plan").as_deref(),
            Some("seat")
        );
        assert_eq!(counted("how much is it"), None);
        assert!(counts("Keys: 5 per account.", "key"));
        assert!(counts("You can add 25 more users.", "user"));
        assert!(!counts("- 100 requests per minute\n- per API key", "key"));
    }

    #[tokio::test]
    async fn a_number_the_customer_gave_is_not_the_answer() {
        let p = vec![passage(
            "api.md",
            Some("Rate limits"),
            "The API allows 60 requests per minute per token. A request over the limit gets a 503 error with a Retry-After header.",
            0.9,
        )];
        let g = answer("we keep getting 503 errors, what is the limit?", p).await;
        assert!(g.answer.contains("60 requests per minute"), "{}", g.answer);
    }

    #[tokio::test]
    async fn misspelled_words_still_find_their_unit() {
        let p = vec![passage(
            "receipts.md",
            Some("Adding receipts"),
            "Upload: drag files into the Receipts page, up to 10 MB each.\n\nForward: send receipts by email to your personal forwarding address, shown under Settings → Email.",
            0.9,
        )];
        let g = answer("can i forwrd my reciepts by email", p).await;
        assert!(g.answer.contains("forwarding address"), "{}", g.answer);
    }

    #[test]
    fn a_when_that_sets_a_scene_does_not_ask_for_a_time() {
        assert_eq!(asks("when will my refund arrive?"), Asks::Time);
        assert_eq!(asks("by when do I have to pay"), Asks::Time);
        assert_eq!(
            asks("I printed backup codes when I set it up, do they still work?"),
            Asks::Other
        );
    }

    #[tokio::test]
    async fn help_centre_chrome_and_images_never_reach_the_customer() {
        let p = vec![
            passage(
                "export.md",
                Some("Export your data"),
                "![Export button](export.png) Go to Settings → Data and click Export CSV.\n\nWas this article helpful?\n\nYes No\n\nUpdated 3 days ago",
                0.9,
            ),
            passage(
                "export.md",
                Some("Related articles"),
                "- Export your data to a spreadsheet\n- Import data from a spreadsheet",
                0.9,
            ),
        ];
        let g = answer("how do I export my data to a spreadsheet?", p).await;
        assert_eq!(g.answer, "Go to Settings → Data and click Export CSV.");
        for chrome in [
            "Was this article helpful?",
            "Related articles",
            "Updated 3 days ago",
            "12 out of 15 found this helpful",
            "Still need help? Contact us",
            "Yes No",
        ] {
            assert!(is_chrome(chrome), "{chrome}");
        }
        for content in [
            "Still need help with a refund? Write to billing@example.com.",
            "Yes, you can change your plan at any time.",
            "Updated invoices are sent again automatically.",
        ] {
            assert!(!is_chrome(content), "{content}");
        }
        assert_eq!(
            customer_text("See [the guide](https://x.example) ![shot](a.png) and [screenshot]."),
            "See the guide and ."
        );
    }

    #[test]
    fn question_kinds() {
        for (q, k) in [
            ("How do I reset my password?", Asks::Steps),
            ("where can I enter the code", Asks::Steps),
            ("how much is the Team plan", Asks::Amount),
            ("what does it cost per user", Asks::Amount),
            ("how many users can I add", Asks::Count),
            ("what are the API limits?", Asks::Count),
            ("how long does a refund take", Asks::Duration),
            ("when are invoices sent?", Asks::Time),
            ("does the app have a dark theme?", Asks::Other),
        ] {
            assert_eq!(asks(q), k, "{q}");
        }
    }

    #[test]
    fn customer_text_has_no_debris() {
        assert_eq!(
            customer_text(
                "**Go to** `Settings`<br>then [click here](https://x.example).\n|---|---|\n| a | b |"
            ),
            "Go to Settings then click here.\na; b"
        );
        for p in [
            "Call [insert phone number].",
            "It costs {{price}}.",
            "Shipping is [value not available].",
            "Ready by TBD.",
            "Your code is XXX.",
            "See <placeholder>.",
        ] {
            assert!(has_placeholder(p), "{p}");
        }
        assert!(!has_placeholder("See [the guide] for details, 10 x 20 cm."));
    }

    #[tokio::test]
    async fn nothing_relevant_means_no_answer() {
        let g = answer("what's the weather", vec![]).await;
        assert!(g.needs_human);
        assert_eq!(g.confidence, 0.0);
        let g = answer(
            "parrots?",
            vec![passage("a.md", None, "Invoices are numbered.", 0.1)],
        )
        .await;
        assert!(g.needs_human);
    }

    #[test]
    fn calibration_is_monotonic() {
        let c = Calibration::default();
        let xs: Vec<f32> = (0..=10).map(|i| c.apply(i as f32 / 10.0)).collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]));
        assert!((c.apply(c.midpoint) - 0.5).abs() < 1e-6);
    }
}
