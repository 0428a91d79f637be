//! The content-gap report: what to write next in the knowledge base.
//!
//! The questions of the period that escalated `no_knowledge` or
//! `low_confidence`, or whose answer got a thumbs-down, are grouped by the
//! words they share (lower-cased terms of three letters or more, minus
//! common words in the supported languages, with a crude plural/suffix
//! strip; two questions join a group when the Jaccard overlap of their
//! terms with the group's first question is at least [`JOIN_AT`]). Each
//! group lists its count, why its questions landed here, a few examples,
//! and — when a retriever is given — the passages that came closest, so a
//! writer sees what exists and what is missing. Embedding-based grouping
//! is not done yet: terms only.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{ConversationId, Rating, ReasonCode, TicketId};
use crate::knowledge::Retriever;
use crate::store::{PeopleStore, Store, StoreError};

/// Least term overlap (Jaccard) for a question to join a group.
pub const JOIN_AT: f64 = 0.34;
/// Examples kept per group.
const EXAMPLES: usize = 3;
/// Closest passages looked up per group.
const CLOSEST: usize = 3;
/// Messages read per conversation, at most, to find the questions.
const HISTORY: usize = 500;

const STOP: &[&str] = &[
    // English
    "the", "and", "for", "you", "your", "are", "can", "how", "what", "when", "where", "why", "who",
    "does", "did", "not", "but", "with", "this", "that", "have", "has", "was", "were", "will",
    "would", "could", "should", "there", "here", "from", "into", "about", "any", "all", "our",
    "out", "get", "got", "just", "also", "its", "it's", "i'm", "don't", "can't", "please",
    "thanks", "thank", "hello", "hi", "hey", "want", "need", "like", "some", "then", "than",
    "them", "they", "my", "me", "is", "do", "to", "of", "in", "on", "a", "an", "or", "be", "if",
    "so", "it", // Spanish, French, German, Portuguese
    "que", "por", "para", "con", "una", "los", "las", "del", "como", "cómo", "qué", "pour", "avec",
    "est", "les", "des", "une", "dans", "comment", "und", "der", "die", "das", "wie", "ich", "mit",
    "ist", "ein", "eine", "não", "com", "uma", "dos", "das", "meu", "minha",
];

/// Why a question is in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// Retrieval found nothing good enough.
    NoKnowledge,
    /// The answer was not sure enough.
    LowConfidence,
    /// The customer rated the answer down.
    ThumbsDown,
}

/// One question that the knowledge base did not serve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GapQuestion {
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Its ticket.
    pub ticket_id: TicketId,
    /// Why it is here.
    pub why: Why,
    /// What the customer asked.
    pub text: String,
}

/// A passage that came close.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Closest {
    /// Document id.
    pub doc_id: String,
    /// Title.
    pub title: String,
    /// Section, if any.
    pub section: Option<String>,
    /// 0..=1.
    pub relevance: f32,
}

/// Questions about the same thing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    /// The terms most of its questions share.
    pub terms: Vec<String>,
    /// Questions in it.
    pub count: usize,
    /// Why they landed here.
    pub why: BTreeMap<Why, usize>,
    /// A few of them.
    pub examples: Vec<String>,
    /// The passages that came closest to the first of them.
    pub closest: Vec<Closest>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GapReport {
    /// Start of the period.
    pub since: DateTime<Utc>,
    /// Questions considered.
    pub questions: usize,
    /// Groups, largest first.
    pub gaps: Vec<Gap>,
}

/// A word's comparable form.
fn stem(w: &str) -> String {
    let mut w = w.to_owned();
    for suffix in ["ing", "ed", "es", "s"] {
        if w.len() > suffix.len() + 3 && w.ends_with(suffix) {
            w.truncate(w.len() - suffix.len());
            break;
        }
    }
    w
}

/// The terms of a question.
pub fn terms(text: &str) -> BTreeSet<String> {
    let stop: HashSet<&str> = STOP.iter().copied().collect();
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| w.chars().count() >= 3 && !stop.contains(w))
        .map(stem)
        .collect()
}

fn jaccard(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    let union = a.union(b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(b).count() as f64 / union as f64
}

/// Groups `questions` by shared terms; largest group first.
pub fn cluster(questions: &[GapQuestion]) -> Vec<(Vec<String>, Vec<&GapQuestion>)> {
    let mut groups: Vec<(BTreeSet<String>, Vec<&GapQuestion>)> = Vec::new();
    for q in questions {
        let t = terms(&q.text);
        let best = groups
            .iter_mut()
            .map(|g| (jaccard(&g.0, &t), g))
            .filter(|(s, _)| *s >= JOIN_AT)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match best {
            Some((_, g)) => g.1.push(q),
            None => groups.push((t, vec![q])),
        }
    }
    let mut out: Vec<(Vec<String>, Vec<&GapQuestion>)> = groups
        .into_iter()
        .map(|(_, qs)| {
            // The group's terms: those in at least half its questions.
            let mut freq: BTreeMap<String, usize> = BTreeMap::new();
            for q in &qs {
                for t in terms(&q.text) {
                    *freq.entry(t).or_default() += 1;
                }
            }
            let mut shared: Vec<(String, usize)> = freq
                .into_iter()
                .filter(|(_, n)| *n * 2 >= qs.len())
                .collect();
            shared.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            (shared.into_iter().take(5).map(|(t, _)| t).collect(), qs)
        })
        .collect();
    out.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    out
}

/// The questions of tickets finished since `since` that the knowledge base
/// did not serve.
pub async fn questions(
    store: &dyn Store,
    people: &dyn PeopleStore,
    since: DateTime<Utc>,
) -> Result<Vec<GapQuestion>, StoreError> {
    let records = store.tickets_since(since).await?;
    let mut by_conv: HashMap<ConversationId, Vec<(TicketId, Option<ReasonCode>)>> = HashMap::new();
    for r in &records {
        by_conv
            .entry(r.conversation_id)
            .or_default()
            .push((r.ticket_id, r.reason));
    }
    let mut out = Vec::new();
    for (conv, tickets) in by_conv {
        let down: HashSet<String> = people
            .ratings(conv)
            .await?
            .into_iter()
            .filter(|f| f.rating == Rating::Down)
            .map(|f| f.message_id)
            .collect();
        let wanted: Vec<(TicketId, Why)> = tickets
            .into_iter()
            .filter_map(|(t, reason)| match reason {
                Some(ReasonCode::NoKnowledge) => Some((t, Why::NoKnowledge)),
                Some(ReasonCode::LowConfidence) => Some((t, Why::LowConfidence)),
                _ if down.contains(&format!("{t}.reply")) => Some((t, Why::ThumbsDown)),
                _ => None,
            })
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let history = store.history(conv, HISTORY).await?;
        for (t, why) in wanted {
            if let Some(m) = history.iter().find(|m| m.body.id == t.to_string()) {
                out.push(GapQuestion {
                    conversation_id: conv,
                    ticket_id: t,
                    why,
                    text: m.body.text.clone(),
                });
            }
        }
    }
    out.sort_by_key(|q| q.ticket_id.to_string());
    Ok(out)
}

/// The report over `questions`; with a retriever, each group's closest
/// passages (a failed lookup leaves them empty).
pub async fn report(
    questions: &[GapQuestion],
    since: DateTime<Utc>,
    retriever: Option<&dyn Retriever>,
) -> GapReport {
    let mut gaps = Vec::new();
    for (terms, qs) in cluster(questions) {
        let mut why = BTreeMap::new();
        for q in &qs {
            *why.entry(q.why).or_default() += 1;
        }
        let closest = match retriever {
            Some(r) => r
                .retrieve(&qs[0].text, CLOSEST)
                .await
                .map(|ps| {
                    ps.into_iter()
                        .map(|p| Closest {
                            doc_id: p.doc_id,
                            title: p.title,
                            section: p.section,
                            relevance: p.relevance,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            None => Vec::new(),
        };
        gaps.push(Gap {
            terms,
            count: qs.len(),
            why,
            examples: qs.iter().take(EXAMPLES).map(|q| q.text.clone()).collect(),
            closest,
        });
    }
    GapReport {
        since,
        questions: questions.len(),
        gaps,
    }
}

impl GapReport {
    /// A plain-text report for the terminal.
    pub fn render(&self) -> String {
        let mut s = format!(
            "Content gaps since {}: {} questions in {} groups\n",
            self.since.format("%Y-%m-%d %H:%M UTC"),
            self.questions,
            self.gaps.len()
        );
        for (i, g) in self.gaps.iter().enumerate() {
            let why: Vec<String> = g
                .why
                .iter()
                .map(|(w, n)| {
                    format!(
                        "{} {n}",
                        serde_json::to_value(w)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    )
                })
                .collect();
            s.push_str(&format!(
                "\n{}. [{}] {} question(s) — {}\n",
                i + 1,
                g.terms.join(", "),
                g.count,
                why.join(", ")
            ));
            for e in &g.examples {
                let short: String = e.chars().take(120).collect();
                s.push_str(&format!("   “{}”\n", short.replace('\n', " ")));
            }
            for c in &g.closest {
                s.push_str(&format!(
                    "   closest: {} ({}{}) relevance {:.2}\n",
                    c.title,
                    c.doc_id,
                    c.section
                        .as_deref()
                        .map(|x| format!(" § {x}"))
                        .unwrap_or_default(),
                    c.relevance
                ));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str, why: Why) -> GapQuestion {
        GapQuestion {
            conversation_id: ConversationId::random(),
            ticket_id: TicketId::new(),
            why,
            text: text.into(),
        }
    }

    #[test]
    fn terms_drop_common_words_and_plurals() {
        let t = terms("How do I pay invoices with a purchase order?");
        assert_eq!(
            t.into_iter().collect::<Vec<_>>(),
            ["invoic", "order", "pay", "purchase"]
        );
        assert!(terms("hi!! the and ?").is_empty());
    }

    #[test]
    fn questions_about_the_same_thing_group_together() {
        let qs = [
            q("Can I pay with a purchase order?", Why::NoKnowledge),
            q(
                "Do you accept purchase orders for payment?",
                Why::LowConfidence,
            ),
            q("Is there a Linux desktop app?", Why::NoKnowledge),
            q("purchase order payment terms", Why::ThumbsDown),
        ];
        let groups = cluster(&qs);
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(groups[0].1.len(), 3);
        assert!(
            groups[0].0.contains(&"purchase".to_string()),
            "{:?}",
            groups[0].0
        );
        assert_eq!(groups[1].1[0].text, "Is there a Linux desktop app?");
        assert!(cluster(&[]).is_empty());
    }
}
