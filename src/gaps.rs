//! The content-gap report: what to write next in the knowledge base.
//!
//! The questions of the period that escalated `no_knowledge` or
//! `low_confidence`, or whose answer got a thumbs-down, are grouped by
//! meaning when an embedder is configured (`retriever.embedder`), else by
//! the words they share:
//!
//! * **embeddings**: each question is embedded as a query and the groups
//!   are built by average-linkage agglomerative clustering on cosine
//!   similarity: the two groups whose questions are most alike on average
//!   merge, until no two reach `console.gaps_similarity` (0.87 by default,
//!   measured for multilingual-e5-small, whose unrelated questions sit near
//!   0.80 and paraphrases above 0.87; other models need their own value).
//!   "I can't log in" and "sign-in fails every time" share no word but
//!   land together. Deterministic for the same questions and vectors. At
//!   most [`MAX_EMBEDDED`] questions (the clustering is cubic); with more,
//!   or when the embedder fails, the report falls back to terms and says
//!   why ([`GapReport::clustering_note`]).
//! * **terms**: lower-cased terms of three letters or more, minus common
//!   words in the supported languages, with a crude plural/suffix strip;
//!   a question joins the group whose first question's terms overlap its
//!   own (Jaccard) the most, if by at least [`JOIN_AT`].
//!
//! Each group lists its count, why its questions landed here, the terms
//! most of them share, a few examples, and — when a retriever is given —
//! the passages that came closest, so a writer sees what exists and what
//! is missing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{ConversationId, Rating, ReasonCode, TicketId};
use crate::knowledge::Retriever;
use crate::knowledge::embed::{Embedder, Input};
use crate::store::{PeopleStore, Store, StoreError};

/// Least term overlap (Jaccard) for a question to join a group.
pub const JOIN_AT: f64 = 0.34;
/// Default least average cosine similarity for two groups to merge when
/// clustering embeddings (`console.gaps_similarity`).
pub const EMBED_JOIN_AT: f32 = 0.87;
/// Most questions clustered by embeddings; past this, terms.
pub const MAX_EMBEDDED: usize = 500;
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

/// How the questions were grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Clustering {
    /// By the cosine similarity of their embeddings.
    Embeddings,
    /// By the terms they share.
    Terms,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GapReport {
    /// Start of the period.
    pub since: DateTime<Utc>,
    /// Questions considered.
    pub questions: usize,
    /// How they were grouped.
    pub clustering: Clustering,
    /// Why terms were used although an embedder is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clustering_note: Option<String>,
    /// Groups, largest first.
    pub gaps: Vec<Gap>,
}

/// How to group: the embedder (if any) and its merge threshold.
#[derive(Clone, Copy)]
pub struct Grouping<'a> {
    /// Embeds the questions; `None`: terms.
    pub embedder: Option<&'a dyn Embedder>,
    /// Least average cosine similarity for two groups to merge.
    pub join_at: f32,
}

impl Grouping<'_> {
    /// By terms.
    pub fn terms() -> Self {
        Self {
            embedder: None,
            join_at: EMBED_JOIN_AT,
        }
    }
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
    let mut groups: Vec<(BTreeSet<String>, Vec<usize>)> = Vec::new();
    for (i, q) in questions.iter().enumerate() {
        let t = terms(&q.text);
        let best = groups
            .iter_mut()
            .map(|g| (jaccard(&g.0, &t), g))
            .filter(|(s, _)| *s >= JOIN_AT)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match best {
            Some((_, g)) => g.1.push(i),
            None => groups.push((t, vec![i])),
        }
    }
    labelled(questions, groups.into_iter().map(|(_, g)| g).collect())
}

/// Groups of indices into `questions`, each labelled with the terms at
/// least half its questions share; largest group first.
fn labelled(
    questions: &[GapQuestion],
    groups: Vec<Vec<usize>>,
) -> Vec<(Vec<String>, Vec<&GapQuestion>)> {
    let mut out: Vec<(Vec<String>, Vec<&GapQuestion>)> = groups
        .into_iter()
        .map(|idx| {
            let qs: Vec<&GapQuestion> = idx.iter().map(|&i| &questions[i]).collect();
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

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}

/// Average-linkage agglomerative clustering of `vectors`: the two groups
/// with the highest mean pairwise cosine similarity merge while it is at
/// least `join_at`. Groups of indices, each in ascending order, ordered by
/// their first index. Ties merge the earliest pair, so the result depends
/// only on the input.
pub fn cluster_vectors(vectors: &[Vec<f32>], join_at: f32) -> Vec<Vec<usize>> {
    let n = vectors.len();
    // Sum of pairwise similarities between groups (Lance–Williams for the
    // average: sums add up on a merge; the mean is sum / (|a| |b|)).
    let mut sum = vec![vec![0.0f64; n]; n];
    for i in 0..n {
        for j in (i + 1)..n {
            let s = f64::from(cosine(&vectors[i], &vectors[j]));
            sum[i][j] = s;
            sum[j][i] = s;
        }
    }
    let mut members: Vec<Option<Vec<usize>>> = (0..n).map(|i| Some(vec![i])).collect();
    loop {
        let mut best: Option<(f64, usize, usize)> = None;
        for i in 0..n {
            let Some(a) = &members[i] else { continue };
            for j in (i + 1)..n {
                let Some(b) = &members[j] else { continue };
                let mean = sum[i][j] / (a.len() * b.len()) as f64;
                if best.is_none_or(|(m, _, _)| mean > m) {
                    best = Some((mean, i, j));
                }
            }
        }
        let Some((_, i, j)) = best.filter(|(m, _, _)| *m >= f64::from(join_at)) else {
            break;
        };
        let b = members[j].take().unwrap_or_default();
        if let Some(a) = members[i].as_mut() {
            a.extend(b);
            a.sort_unstable();
        }
        let from_j = sum[j].clone();
        for (k, s) in from_j.iter().enumerate() {
            if k != i && k != j {
                sum[i][k] += s;
            }
        }
        let to_i = sum[i].clone();
        for (k, row) in sum.iter_mut().enumerate() {
            if k != i && k != j {
                row[i] = to_i[k];
            }
        }
    }
    members.into_iter().flatten().collect()
}

/// Groups `questions` as `how` says: by embeddings when an embedder is
/// given and answers, else by terms (with the reason in the note).
pub async fn group<'q>(
    questions: &'q [GapQuestion],
    how: Grouping<'_>,
) -> (
    Vec<(Vec<String>, Vec<&'q GapQuestion>)>,
    Clustering,
    Option<String>,
) {
    let Some(embedder) = how.embedder else {
        return (cluster(questions), Clustering::Terms, None);
    };
    if questions.len() > MAX_EMBEDDED {
        let note = format!(
            "{} questions: more than {MAX_EMBEDDED} are grouped by terms",
            questions.len()
        );
        return (cluster(questions), Clustering::Terms, Some(note));
    }
    if questions.is_empty() {
        return (Vec::new(), Clustering::Embeddings, None);
    }
    let texts: Vec<String> = questions.iter().map(|q| q.text.clone()).collect();
    match embedder.embed(&texts, Input::Query).await {
        Ok(vectors) if vectors.len() == texts.len() => (
            labelled(questions, cluster_vectors(&vectors, how.join_at)),
            Clustering::Embeddings,
            None,
        ),
        Ok(vectors) => {
            let note = format!(
                "the embedder returned {} vectors for {} questions; grouped by terms",
                vectors.len(),
                texts.len()
            );
            tracing::warn!(message = "Gap clustering fell back to terms.", note = %note);
            (cluster(questions), Clustering::Terms, Some(note))
        }
        Err(error) => {
            tracing::warn!(message = "Gap clustering fell back to terms.", %error);
            (
                cluster(questions),
                Clustering::Terms,
                Some(format!("embedding failed ({error}); grouped by terms")),
            )
        }
    }
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

/// The report over `questions`, grouped as `how` says ([`group`]); with a
/// retriever, each group's closest passages (a failed lookup leaves them
/// empty).
pub async fn report(
    questions: &[GapQuestion],
    since: DateTime<Utc>,
    retriever: Option<&dyn Retriever>,
    how: Grouping<'_>,
) -> GapReport {
    let mut gaps = Vec::new();
    let (groups, clustering, clustering_note) = group(questions, how).await;
    for (terms, qs) in groups {
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
        clustering,
        clustering_note,
        gaps,
    }
}

impl GapReport {
    /// A plain-text report for the terminal.
    pub fn render(&self) -> String {
        let mut s = format!(
            "Content gaps since {}: {} questions in {} groups (by {})\n",
            self.since.format("%Y-%m-%d %H:%M UTC"),
            self.questions,
            self.gaps.len(),
            match self.clustering {
                Clustering::Embeddings => "meaning: embeddings",
                Clustering::Terms => "shared terms",
            }
        );
        if let Some(note) = &self.clustering_note {
            s.push_str(&format!("note: {note}\n"));
        }
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

    #[test]
    fn vectors_merge_by_average_similarity_down_to_the_threshold() {
        let v = |x: f32, y: f32, z: f32| vec![x, y, z];
        let vectors = [
            v(1.0, 0.0, 0.0),
            v(0.0, 1.0, 0.0),
            v(0.95, 0.05, 0.0),
            v(0.0, 0.0, 1.0),
            v(0.05, 0.97, 0.0),
            v(0.9, 0.1, 0.05),
        ];
        assert_eq!(
            cluster_vectors(&vectors, 0.9),
            vec![vec![0, 2, 5], vec![1, 4], vec![3]]
        );
        // Nothing is similar enough: singletons; everything is: one group.
        assert_eq!(cluster_vectors(&vectors, 1.01).len(), 6);
        assert_eq!(
            cluster_vectors(&vectors, -1.0),
            vec![vec![0, 1, 2, 3, 4, 5]]
        );
        assert!(cluster_vectors(&[], 0.5).is_empty());
        // A zero vector is similar to nothing (no NaN).
        assert_eq!(
            cluster_vectors(&[vec![0.0; 3], v(1.0, 0.0, 0.0)], 0.5).len(),
            2
        );
    }

    /// An embedder that fails, or answers the wrong number of vectors.
    struct Broken(bool);

    #[async_trait::async_trait]
    impl Embedder for Broken {
        fn identity(&self) -> String {
            "broken".into()
        }
        async fn embed(
            &self,
            texts: &[String],
            _: Input,
        ) -> Result<Vec<Vec<f32>>, crate::knowledge::embed::EmbedError> {
            if self.0 {
                Ok(vec![vec![1.0]; texts.len() + 1])
            } else {
                Err(crate::knowledge::embed::EmbedError::Transient(
                    "down".into(),
                ))
            }
        }
    }

    #[tokio::test]
    async fn a_failing_embedder_falls_back_to_terms_and_says_so() {
        let qs = [
            q("Can I pay with a purchase order?", Why::NoKnowledge),
            q("purchase order payment terms", Why::ThumbsDown),
            q("Is there a Linux desktop app?", Why::NoKnowledge),
        ];
        for broken in [Broken(false), Broken(true)] {
            let how = Grouping {
                embedder: Some(&broken),
                join_at: 0.5,
            };
            let r = report(&qs, Utc::now(), None, how).await;
            assert_eq!(r.clustering, Clustering::Terms);
            assert!(r.clustering_note.is_some());
            assert_eq!(r.gaps.len(), 2, "{r:?}");
            assert!(r.render().contains("note:"));
        }
        let r = report(&qs, Utc::now(), None, Grouping::terms()).await;
        assert_eq!((r.clustering, r.clustering_note), (Clustering::Terms, None));
    }
}
