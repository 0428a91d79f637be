//! The default generator: no LLM. It answers with the knowledge base's own
//! sentences, the ones that best cover the question, from the best passage,
//! cites that passage, and reports a calibrated confidence.
//!
//! Confidence is a logistic function of two coverage measures (how much of
//! the question the passage and the chosen sentence contain), with
//! parameters fitted by `deskhand eval --calibrate` on a labelled set, so
//! that a confidence of 0.7 means about 70 % of such answers were right.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{GenerateError, GenerateRequest, Generation, Generator};
use crate::domain::{Channel, Usage};
use crate::knowledge::Passage;
use crate::knowledge::markdown::sentences;
use crate::knowledge::tantivy::analyze;

/// Passages considered beyond the best one, when nearly as relevant.
const CANDIDATES: usize = 3;
/// Longest reply, in characters, before we stop adding sentences.
const MAX_CHAT_CHARS: usize = 480;
const MAX_EMAIL_CHARS: usize = 900;

/// Logistic calibration of the raw coverage score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Slope.
    pub slope: f32,
    /// Raw score at which confidence is 0.5.
    pub midpoint: f32,
}

impl Default for Calibration {
    fn default() -> Self {
        // Fitted on fixtures/eval/dev.jsonl; see README "Evaluation".
        Self {
            slope: 20.0,
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
}

/// What the extractive generator found, before calibration (for eval).
#[derive(Debug, Clone, PartialEq)]
pub struct Extract {
    /// The chosen sentences, in document order.
    pub sentences: Vec<String>,
    /// Index of the passage they come from.
    pub passage: usize,
    /// Share of the question's terms the passage covers.
    pub passage_coverage: f32,
    /// Share of the question's terms the best sentence covers.
    pub sentence_coverage: f32,
}

impl Extract {
    /// The uncalibrated score. Passage coverage carries most of the signal
    /// (whether the KB covers the question); sentence coverage keeps the
    /// chosen sentence honest.
    pub fn raw(&self) -> f32 {
        0.7 * self.passage_coverage + 0.3 * self.sentence_coverage
    }
}

struct Sentence<'a> {
    passage: usize,
    index: usize,
    text: &'a str,
    terms: HashSet<String>,
}

impl Extractive {
    /// An extractive generator with the given calibration.
    pub fn new(calibration: Calibration) -> Self {
        Self { calibration }
    }

    /// Picks the sentences that answer `question` from `passages`.
    pub fn extract(question: &str, passages: &[Passage], max_chars: usize) -> Option<Extract> {
        let q = analyze(&crate::knowledge::topical(question));
        let best = passages.first()?;
        if q.is_empty() {
            return None;
        }
        let floor = best.relevance * 0.6;
        let pool: Vec<(usize, &Passage)> = passages
            .iter()
            .enumerate()
            .take(CANDIDATES)
            .filter(|(_, p)| p.relevance >= floor)
            .collect();
        let mut all = Vec::new();
        for &(pi, p) in &pool {
            for (si, text) in sentences(&p.text).into_iter().enumerate() {
                let mut terms: HashSet<String> = analyze(text).into_iter().collect();
                if si == 0 {
                    // The heading is part of what the first sentence says.
                    terms.extend(analyze(p.section.as_deref().unwrap_or(&p.title)));
                }
                all.push(Sentence {
                    passage: pi,
                    index: si,
                    text,
                    terms,
                });
            }
        }
        if all.is_empty() {
            return None;
        }
        // Term weights from the candidate sentences themselves: a term in
        // every sentence tells them apart less than a rare one.
        let n = all.len() as f32;
        let mut df: HashMap<&str, f32> = HashMap::new();
        for s in &all {
            for t in &q {
                if s.terms.contains(t) {
                    *df.entry(t).or_default() += 1.0;
                }
            }
        }
        let weight = |t: &str| (1.0 + n / (1.0 + df.get(t).copied().unwrap_or(0.0))).ln();
        let total: f32 = q.iter().map(|t| weight(t)).sum();
        let coverage = |s: &Sentence<'_>| {
            q.iter()
                .filter(|t| s.terms.contains(*t))
                .map(|t| weight(t))
                .sum::<f32>()
                / total
        };
        let scored: Vec<(f32, f32)> = all
            .iter()
            .map(|s| {
                let cov = coverage(s);
                let p = &passages[s.passage];
                // Prefer the retriever's order a little on ties.
                (
                    0.55 * cov + 0.45 * p.relevance - 0.02 * s.passage as f32,
                    cov,
                )
            })
            .collect();
        let (best_i, &(_, best_cov)) = scored
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.0.total_cmp(&b.1.0))?;
        if best_cov == 0.0 {
            return None;
        }
        let chosen = &all[best_i];
        let same: Vec<usize> = (0..all.len())
            .filter(|&i| all[i].passage == chosen.passage)
            .collect();
        let mut pick: Vec<usize> = vec![best_i];
        let mut len = chosen.text.chars().count();
        // A sentence that leans on the previous one ("This…", "It…") needs it.
        let leans = [
            "it ", "this ", "that ", "these ", "those ", "they ", "then ",
        ];
        if chosen.index > 0
            && leans
                .iter()
                .any(|w| chosen.text.to_lowercase().starts_with(w))
        {
            pick.insert(0, best_i - 1);
            len += all[best_i - 1].text.chars().count();
        }
        // Follow on: a list the sentence introduces, or sentences that keep
        // covering the question.
        let introduces_list = chosen.text.trim_end().ends_with(':');
        for &i in same.iter().filter(|&&i| i > best_i) {
            let s = &all[i];
            let continues = if introduces_list {
                i - best_i <= 8
            } else {
                scored[i].1 >= 0.3 * best_cov && i - best_i <= 2
            };
            if !continues || len + s.text.chars().count() > max_chars {
                break;
            }
            len += s.text.chars().count();
            pick.push(i);
        }
        Some(Extract {
            sentences: pick.iter().map(|&i| all[i].text.to_owned()).collect(),
            passage: chosen.passage,
            passage_coverage: passages[chosen.passage].relevance,
            sentence_coverage: best_cov,
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
        let Some(x) = Self::extract(&question, &req.passages, max) else {
            return Ok(Generation {
                answer: String::new(),
                confidence: 0.0,
                needs_human: true,
                reason: Some("no_knowledge".into()),
                sources: Vec::new(),
                usage: Usage::default(),
            });
        };
        let lines_are_items = x.sentences.len() > 1 && x.sentences[0].trim_end().ends_with(':');
        let answer = x.sentences.join(if lines_are_items { "\n" } else { " " });
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

    fn passage(doc: &str, text: &str, relevance: f32) -> Passage {
        Passage {
            doc_id: doc.into(),
            title: doc.into(),
            section: None,
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

    #[tokio::test]
    async fn answers_with_the_covering_sentence_and_cites_it() {
        let p = vec![
            passage(
                "billing/refunds.md",
                "We love our customers. Annual plans can be refunded within 14 days of purchase. Monthly plans are not refunded.",
                0.9,
            ),
            passage(
                "account/password.md",
                "Reset your password from the sign-in page.",
                0.2,
            ),
        ];
        let g = Extractive::default()
            .generate(&request("can I get a refund on an annual plan?", p))
            .await
            .unwrap();
        assert!(
            g.answer
                .starts_with("Annual plans can be refunded within 14 days"),
            "{}",
            g.answer
        );
        assert!(!g.answer.contains("love"));
        assert_eq!(g.sources, ["billing/refunds.md"]);
        assert!(g.confidence > 0.6, "{}", g.confidence);
        assert!(!g.needs_human);
    }

    #[tokio::test]
    async fn a_list_intro_brings_its_items() {
        let p = vec![passage(
            "a.md",
            "To export invoices:\nOpen Reports.\nChoose Export.\nPick CSV.\nUnrelated closing remark about weather.",
            0.9,
        )];
        let g = Extractive::default()
            .generate(&request("how do I export invoices", p))
            .await
            .unwrap();
        assert!(
            g.answer
                .starts_with("To export invoices:\nOpen Reports.\nChoose Export.\nPick CSV."),
            "{}",
            g.answer
        );
    }

    #[tokio::test]
    async fn nothing_relevant_means_no_answer() {
        let g = Extractive::default()
            .generate(&request("what's the weather", vec![]))
            .await
            .unwrap();
        assert!(g.needs_human);
        assert_eq!(g.confidence, 0.0);
        let p = vec![passage("a.md", "Invoices are numbered.", 0.1)];
        let g = Extractive::default()
            .generate(&request("parrots?", p))
            .await
            .unwrap();
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
