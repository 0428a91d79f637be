//! `deskhand eval`: runs labelled cases through retrieval, rules,
//! generation and the gate (no HTTP, no store) and measures them.
//!
//! Case format, one JSON object a line:
//! `{"id":"c1","question":"…","subject":"…","expect":{"decision":"answer"|"escalate","reason":"<code>","docs":["path.md"],"act":"greeting","facts":[["3 to 6 business days","3-6 business days"],["$75"]]}}`
//! (`subject`, `reason`, `docs`, `act` and `facts` optional; `act` expects
//! the reply to a greeting, thanks, acknowledgement or goodbye rather than
//! an answer).
//!
//! `facts` are groups of alternatives: a case is *answered correctly* only
//! when it is answered, cites an expected document, and every group has an
//! alternative in the answer (case-insensitive). The reliability table
//! groups generated answers by confidence and shows the share answered
//! correctly in each group.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::domain::{Decision, ReasonCode};
use crate::knowledge::Retriever;
use crate::llm::extractive::{Calibration, Extractive};
use crate::pipeline::{ActKind, Responder};

/// Expected outcome of a case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `answer` or `escalate`.
    pub decision: ExpectedDecision,
    /// The escalation reason, if it matters.
    #[serde(default)]
    pub reason: Option<ReasonCode>,
    /// Documents that hold the answer.
    #[serde(default)]
    pub docs: Vec<String>,
    /// The conversation act the message is (then the answer is its reply).
    #[serde(default)]
    pub act: Option<ActKind>,
    /// What the answer must say: every group needs one of its alternatives.
    #[serde(default)]
    pub facts: Vec<Vec<String>>,
}

/// Whether `answer` states every group of `facts` (case-insensitive, white
/// space and dashes normalized).
pub fn states_facts(answer: &str, facts: &[Vec<String>]) -> bool {
    let norm = |s: &str| {
        s.to_lowercase()
            .replace(['–', '—', '‑'], "-")
            .replace(['’', '‘'], "'")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let a = norm(answer);
    facts
        .iter()
        .all(|group| group.iter().any(|alt| a.contains(&norm(alt))))
}

/// The expected decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedDecision {
    /// The bot should answer.
    Answer,
    /// A person should.
    Escalate,
}

/// One labelled case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique id.
    pub id: String,
    /// The customer's message.
    pub question: String,
    /// Its subject line, if it has one.
    #[serde(default)]
    pub subject: Option<String>,
    /// What should happen.
    pub expect: Expect,
}

/// What happened to one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// Case id.
    pub id: String,
    /// The question.
    pub question: String,
    /// Expected decision.
    pub expected: ExpectedDecision,
    /// Expected reason.
    pub expected_reason: Option<ReasonCode>,
    /// Expected documents.
    pub expected_docs: Vec<String>,
    /// Expected conversation act.
    pub expected_act: Option<ActKind>,
    /// The conversation act recognised, if any.
    pub act: Option<ActKind>,
    /// Expected facts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expected_facts: Vec<Vec<String>>,
    /// `answer` or `escalate`.
    pub decision: ExpectedDecision,
    /// The reason, if escalated.
    pub reason: Option<ReasonCode>,
    /// The answer's confidence (0 when no answer was generated).
    pub confidence: f32,
    /// The answer text, if any (or the draft).
    pub answer: Option<String>,
    /// Documents cited.
    pub cited: Vec<String>,
    /// Documents of the top three passages.
    pub top_docs: Vec<String>,
    /// Relevance of the best passage.
    pub top_relevance: f32,
    /// Sentiment of the question (VADER compound).
    pub sentiment: f64,
    /// One of the expected docs among the top three passages (`None`
    /// without expected docs).
    pub hit_at_3: Option<bool>,
    /// The question's language (ISO 639-1), when detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The answer (or draft) states every expected fact (`None` without facts
    /// or without an answer).
    pub facts_ok: Option<bool>,
    /// An answer was generated (not stopped by a rule or retrieval).
    pub generated: bool,
    /// Decision, reason and (for answers) citation and facts all as expected.
    pub correct: bool,
}

/// The confidence from which an answer counts as confident.
pub const CONFIDENT: f32 = 0.85;

/// Reliability of the confidence, one bin.
#[derive(Debug, Clone, Serialize)]
pub struct Bin {
    /// Lower bound of confidence.
    pub from: f32,
    /// Upper bound.
    pub to: f32,
    /// Generated answers in the bin.
    pub count: usize,
    /// Mean confidence in the bin.
    pub mean_confidence: f64,
    /// Share of them answered correctly: an answer was expected, an
    /// expected document is cited and every fact is stated.
    pub accuracy: f64,
}

/// Counts of one reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReasonCount {
    /// Cases expecting it.
    pub expected: usize,
    /// Cases decided with it.
    pub predicted: usize,
    /// Both.
    pub matched: usize,
}

/// The measurements.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Cases run.
    pub total: usize,
    /// hit@3 over cases with expected docs.
    pub retrieval_hit_at_3: f64,
    /// Of the cases escalated, the share that should have been.
    pub escalation_precision: f64,
    /// Of the cases that should have been escalated, the share that were.
    pub escalation_recall: f64,
    /// Answer cases answered, citing an expected document and stating every
    /// expected fact.
    pub answered_correct: usize,
    /// Answer cases.
    pub answer_cases: usize,
    /// Answer cases with facts answered correctly.
    pub facts_correct: usize,
    /// Answer cases with facts.
    pub facts_cases: usize,
    /// Escalation cases escalated with the expected reason.
    pub reason_correct: usize,
    /// Cases fully as expected.
    pub cases_correct: usize,
    /// Counts by reason.
    pub reasons: BTreeMap<String, ReasonCount>,
    /// hit@3 by the question's language (`?` when undetected): (hits,
    /// cases with expected docs).
    pub hit_at_3_by_language: BTreeMap<String, (usize, usize)>,
    /// Reliability of the confidence of generated answers.
    pub calibration: Vec<Bin>,
    /// Generated answers with confidence of at least [`CONFIDENT`] (the
    /// issue's target: at least 90 % of them right).
    pub confident: Bin,
    /// Brier score of the confidence of generated answers (lower is better).
    pub brier: Option<f64>,
    /// Every case.
    pub cases: Vec<CaseResult>,
}

/// Reads a case file.
pub fn load_cases(path: &Path) -> anyhow::Result<Vec<Case>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut cases = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let case: Case = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a case", path.display(), n + 1))?;
        if !ids.insert(case.id.clone()) {
            bail!(
                "{}:{}: duplicate case id {:?}",
                path.display(),
                n + 1,
                case.id
            );
        }
        cases.push(case);
    }
    if cases.is_empty() {
        bail!("{} holds no cases", path.display());
    }
    Ok(cases)
}

/// Runs every case.
pub async fn run(responder: &Responder, cases: &[Case]) -> anyhow::Result<Report> {
    let mut results = Vec::with_capacity(cases.len());
    for case in cases {
        let thought = responder
            .think(&case.question, case.subject.as_deref())
            .await
            .with_context(|| format!("case {}", case.id))?;
        let top_docs: Vec<String> = thought
            .passages
            .iter()
            .take(3)
            .map(|p| p.doc_id.clone())
            .collect();
        let hit_at_3 = (!case.expect.docs.is_empty())
            .then(|| top_docs.iter().any(|d| case.expect.docs.contains(d)));
        let confidence = thought.generation.as_ref().map_or(0.0, |g| g.confidence);
        let generated = thought.generation.is_some();
        let (decision, reason, answer, cited): (_, _, _, Vec<String>) = match &thought.decision {
            Decision::Answer(r) => (
                ExpectedDecision::Answer,
                None,
                Some(r.text.clone()),
                r.sources.iter().map(|s| s.doc_id.clone()).collect(),
            ),
            Decision::Escalate(e) => (
                ExpectedDecision::Escalate,
                Some(e.reason),
                e.draft.as_ref().map(|d| d.text.clone()),
                e.draft
                    .as_ref()
                    .map(|d| d.sources.iter().map(|s| s.doc_id.clone()).collect())
                    .unwrap_or_default(),
            ),
        };
        let cites_expected =
            case.expect.docs.is_empty() || cited.iter().any(|d| case.expect.docs.contains(d));
        let act = thought.act.map(|a| a.kind);
        let facts_ok = (!case.expect.facts.is_empty())
            .then(|| {
                answer
                    .as_deref()
                    .map(|a| states_facts(a, &case.expect.facts))
            })
            .flatten();
        let correct = decision == case.expect.decision
            && match decision {
                ExpectedDecision::Answer => {
                    cites_expected
                        && facts_ok != Some(false)
                        && (case.expect.act.is_none() || case.expect.act == act)
                }
                ExpectedDecision::Escalate => {
                    case.expect.reason.is_none() || case.expect.reason == reason
                }
            };
        results.push(CaseResult {
            id: case.id.clone(),
            question: case.question.clone(),
            expected: case.expect.decision,
            expected_reason: case.expect.reason,
            expected_docs: case.expect.docs.clone(),
            expected_act: case.expect.act,
            act,
            expected_facts: case.expect.facts.clone(),
            decision,
            reason,
            confidence,
            answer,
            cited,
            top_docs,
            top_relevance: thought.passages.first().map_or(0.0, |p| p.relevance),
            sentiment: thought.sentiment,
            hit_at_3,
            language: crate::pipeline::language::detect(&case.question).map(|l| l.code.to_owned()),
            facts_ok,
            generated,
            correct,
        });
    }
    Ok(report(results))
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn report(cases: Vec<CaseResult>) -> Report {
    let with_docs: Vec<&CaseResult> = cases.iter().filter(|c| c.hit_at_3.is_some()).collect();
    let hits = with_docs
        .iter()
        .filter(|c| c.hit_at_3 == Some(true))
        .count();
    let esc = |d: ExpectedDecision| d == ExpectedDecision::Escalate;
    let tp = cases
        .iter()
        .filter(|c| esc(c.expected) && esc(c.decision))
        .count();
    let predicted = cases.iter().filter(|c| esc(c.decision)).count();
    let actual = cases.iter().filter(|c| esc(c.expected)).count();
    let answer_cases = cases.iter().filter(|c| !esc(c.expected)).count();
    let answered_correct = cases
        .iter()
        .filter(|c| !esc(c.expected) && c.correct)
        .count();
    let reason_correct = cases
        .iter()
        .filter(|c| esc(c.expected) && c.correct)
        .count();
    let mut reasons: BTreeMap<String, ReasonCount> = BTreeMap::new();
    for c in &cases {
        if let Some(r) = c.expected_reason {
            reasons.entry(r.to_string()).or_default().expected += 1;
        }
        if let Some(r) = c.reason {
            let e = reasons.entry(r.to_string()).or_default();
            e.predicted += 1;
            if c.expected_reason == Some(r) {
                e.matched += 1;
            }
        }
    }
    let facts_cases = cases
        .iter()
        .filter(|c| !esc(c.expected) && !c.expected_facts.is_empty())
        .count();
    let facts_correct = cases
        .iter()
        .filter(|c| !esc(c.expected) && !c.expected_facts.is_empty() && c.correct)
        .count();
    // Reliability over every answer the generator produced (answered or
    // escalated with a draft): "right" means an answer was expected, and
    // it cites an expected document and states every expected fact.
    let scored: Vec<(f32, bool)> = cases
        .iter()
        .filter(|c| c.generated && c.answer.is_some())
        .map(|c| {
            let right = !esc(c.expected)
                && c.cited.iter().any(|d| c.expected_docs.contains(d))
                && c.facts_ok != Some(false);
            (c.confidence, right)
        })
        .collect();
    let bin = |w: &[f32]| {
        let inside: Vec<&(f32, bool)> = scored
            .iter()
            .filter(|(c, _)| *c >= w[0] && *c < w[1])
            .collect();
        Bin {
            from: w[0],
            to: w[1].min(1.0),
            count: inside.len(),
            mean_confidence: if inside.is_empty() {
                0.0
            } else {
                inside.iter().map(|(c, _)| f64::from(*c)).sum::<f64>() / inside.len() as f64
            },
            accuracy: ratio(inside.iter().filter(|(_, ok)| *ok).count(), inside.len()),
        }
    };
    let edges = [0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0001];
    let calibration = edges.windows(2).map(bin).collect();
    let confident = bin(&[CONFIDENT, 1.0001]);
    let brier = (!scored.is_empty()).then(|| {
        scored
            .iter()
            .map(|(c, ok)| (f64::from(*c) - if *ok { 1.0 } else { 0.0 }).powi(2))
            .sum::<f64>()
            / scored.len() as f64
    });
    Report {
        total: cases.len(),
        retrieval_hit_at_3: ratio(hits, with_docs.len()),
        escalation_precision: ratio(tp, predicted),
        escalation_recall: ratio(tp, actual),
        answered_correct,
        answer_cases,
        facts_correct,
        facts_cases,
        reason_correct,
        cases_correct: cases.iter().filter(|c| c.correct).count(),
        reasons,
        hit_at_3_by_language: {
            let mut by: BTreeMap<String, (usize, usize)> = BTreeMap::new();
            for c in &with_docs {
                let e = by
                    .entry(c.language.clone().unwrap_or_else(|| "?".into()))
                    .or_default();
                e.0 += usize::from(c.hit_at_3 == Some(true));
                e.1 += 1;
            }
            by
        },
        calibration,
        confident,
        brier,
        cases,
    }
}

/// Fits the extractive generator's calibration: the logistic curve (grid
/// search, log-loss) from its raw evidence score to "the answer is right",
/// where an answer is right when the case expects an answer, the chosen
/// passage is an expected document and the answer states every expected
/// fact, and never right when the case expects `no_knowledge`. Rule-driven
/// cases are left out: no answer is generated.
pub async fn calibrate(
    retriever: &dyn Retriever,
    top_k: usize,
    cases: &[Case],
) -> anyhow::Result<(Calibration, usize)> {
    let mut points = Vec::new();
    for case in cases {
        let answerable =
            case.expect.decision == ExpectedDecision::Answer && !case.expect.docs.is_empty();
        if !answerable && case.expect.reason != Some(ReasonCode::NoKnowledge) {
            continue;
        }
        let passages = retriever.retrieve(&case.question, top_k).await?;
        if let Some(x) = Extractive::extract(&case.question, &passages, 600) {
            let right = answerable
                && case.expect.docs.contains(&passages[x.passage].doc_id)
                && states_facts(&x.text(), &case.expect.facts);
            points.push((x.raw(), right));
        }
    }
    if points.len() < 5 {
        bail!(
            "too few answerable or no_knowledge cases to calibrate ({})",
            points.len()
        );
    }
    let loss = |c: &Calibration| {
        points
            .iter()
            .map(|(x, y)| {
                let p = f64::from(c.apply(*x)).clamp(1e-6, 1.0 - 1e-6);
                if *y { -p.ln() } else { -(1.0 - p).ln() }
            })
            .sum::<f64>()
    };
    let mut best = Calibration::default();
    let mut best_loss = f64::INFINITY;
    for s in 1..=40 {
        for m in 0..=100 {
            let c = Calibration {
                slope: s as f32 * 0.5,
                midpoint: m as f32 * 0.01,
            };
            let l = loss(&c);
            if l < best_loss {
                best_loss = l;
                best = c;
            }
        }
    }
    Ok((best, points.len()))
}

impl Report {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let pct = |x: f64| format!("{:.1}%", x * 100.0);
        out.push_str(&format!("cases                 {}\n", self.total));
        out.push_str(&format!(
            "retrieval hit@3       {}\n",
            pct(self.retrieval_hit_at_3)
        ));
        if self.hit_at_3_by_language.len() > 1 {
            let by: Vec<String> = self
                .hit_at_3_by_language
                .iter()
                .map(|(l, (h, n))| format!("{l} {} of {n}", h))
                .collect();
            out.push_str(&format!("  by language         {}\n", by.join(", ")));
        }
        out.push_str(&format!(
            "escalation precision  {}\n",
            pct(self.escalation_precision)
        ));
        out.push_str(&format!(
            "escalation recall     {}\n",
            pct(self.escalation_recall)
        ));
        out.push_str(&format!(
            "answered correctly    {} of {}\n",
            self.answered_correct, self.answer_cases
        ));
        out.push_str(&format!(
            "facts correct         {} of {}\n",
            self.facts_correct, self.facts_cases
        ));
        out.push_str(&format!(
            "escalation reason ok  {} of {}\n",
            self.reason_correct,
            self.total - self.answer_cases
        ));
        out.push_str(&format!(
            "all as expected       {} of {}\n",
            self.cases_correct, self.total
        ));
        out.push_str("\nreason                 expected  decided  matched\n");
        for (r, c) in &self.reasons {
            out.push_str(&format!(
                "{r:<22} {:>8} {:>8} {:>8}\n",
                c.expected, c.predicted, c.matched
            ));
        }
        out.push_str("\nreliability: confidence  answers  mean conf  answered correctly\n");
        for b in &self.calibration {
            out.push_str(&format!(
                "             {:.2}–{:.2}  {:>7}  {:>9.2}  {:>18}\n",
                b.from,
                b.to,
                b.count,
                b.mean_confidence,
                if b.count == 0 {
                    "-".into()
                } else {
                    pct(b.accuracy)
                }
            ));
        }
        out.push_str(&format!(
            "confidence ≥ {CONFIDENT:.2}: {} answers, {} answered correctly\n",
            self.confident.count,
            if self.confident.count == 0 {
                "-".into()
            } else {
                pct(self.confident.accuracy)
            }
        ));
        if let Some(b) = self.brier {
            out.push_str(&format!("brier score {b:.3}\n"));
        }
        let failing: Vec<&CaseResult> = self.cases.iter().filter(|c| !c.correct).collect();
        if !failing.is_empty() {
            out.push_str(&format!("\nfailing cases ({})\n", failing.len()));
            for c in failing {
                let got = match (c.reason, c.act) {
                    (Some(r), _) => format!("escalate/{r}"),
                    (None, Some(a)) => format!("reply to {}", a.as_str()),
                    (None, None) if c.facts_ok == Some(false) => format!(
                        "answer without the facts (conf {:.2}, cited {})",
                        c.confidence,
                        c.cited.join(",")
                    ),
                    (None, None) => format!(
                        "answer (conf {:.2}, cited {})",
                        c.confidence,
                        c.cited.join(",")
                    ),
                };
                let want = match (c.expected, c.expected_reason) {
                    (ExpectedDecision::Escalate, Some(r)) => format!("escalate/{r}"),
                    (ExpectedDecision::Escalate, None) => "escalate".into(),
                    (ExpectedDecision::Answer, _) => match c.expected_act {
                        Some(a) => format!("reply to {}", a.as_str()),
                        None => format!("answer from {}", c.expected_docs.join(",")),
                    },
                };
                let q: String = c.question.chars().take(90).collect();
                out.push_str(&format!(
                    "  {}: want {want}, got {got}; top {} (rel {:.2})\n      {q}\n",
                    c.id,
                    c.top_docs.first().map_or("-", |s| s.as_str()),
                    c.top_relevance
                ));
                if c.facts_ok == Some(false)
                    && let Some(a) = &c.answer
                {
                    let missing: Vec<String> = c
                        .expected_facts
                        .iter()
                        .filter(|g| !states_facts(a, std::slice::from_ref(g)))
                        .map(|g| g.join(" | "))
                        .collect();
                    let a: String = a.replace('\n', " / ").chars().take(160).collect();
                    out.push_str(&format!(
                        "      missing [{}] in: {a}\n",
                        missing.join("], [")
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(groups: &[&[&str]]) -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| g.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn facts_need_one_alternative_of_every_group() {
        let f = facts(&[&["3 to 6 business days", "3-6 business days"], &["$75"]]);
        assert!(states_facts(
            "Refunds take 3–6 Business Days and cost $75.",
            &f
        ));
        assert!(states_facts(
            "It costs $75; allow 3 to 6 business days.",
            &f
        ));
        assert!(!states_facts("Refunds take 3 to 6 business days.", &f));
        assert!(!states_facts("It costs $75.", &f));
        assert!(states_facts("anything", &[]));
    }

    fn result(
        expected: ExpectedDecision,
        cited: &[&str],
        facts_ok: Option<bool>,
        conf: f32,
    ) -> CaseResult {
        let decision = if cited.is_empty() {
            ExpectedDecision::Escalate
        } else {
            ExpectedDecision::Answer
        };
        let cites = cited.contains(&"a.md");
        CaseResult {
            id: "x".into(),
            question: "q".into(),
            expected,
            expected_reason: None,
            expected_docs: vec!["a.md".into()],
            expected_facts: if facts_ok.is_some() {
                facts(&[&["f"]])
            } else {
                vec![]
            },
            expected_act: None,
            act: None,
            decision,
            reason: None,
            confidence: conf,
            answer: Some("text".into()),
            cited: cited.iter().map(|s| s.to_string()).collect(),
            top_docs: vec![],
            top_relevance: 0.5,
            sentiment: 0.0,
            hit_at_3: Some(true),
            language: None,
            facts_ok,
            generated: true,
            correct: decision == expected && cites && facts_ok != Some(false),
        }
    }

    #[test]
    fn an_answer_without_its_facts_is_not_answered_correctly() {
        let r = report(vec![
            result(ExpectedDecision::Answer, &["a.md"], Some(true), 0.95),
            result(ExpectedDecision::Answer, &["a.md"], Some(false), 0.92),
            result(ExpectedDecision::Answer, &["a.md"], None, 0.75),
            result(ExpectedDecision::Answer, &["b.md"], None, 0.55),
            result(ExpectedDecision::Escalate, &["a.md"], None, 0.3),
        ]);
        assert_eq!(r.answer_cases, 4);
        assert_eq!(r.answered_correct, 2);
        assert_eq!((r.facts_correct, r.facts_cases), (1, 2));
        let bin = |from: f32| r.calibration.iter().find(|b| b.from == from).unwrap();
        assert_eq!((bin(0.9).count, bin(0.9).accuracy), (2, 0.5));
        assert_eq!((bin(0.7).count, bin(0.7).accuracy), (1, 1.0));
        assert_eq!((bin(0.5).count, bin(0.5).accuracy), (1, 0.0));
        // An answer to a case that wanted a person is never right.
        assert_eq!((bin(0.0).count, bin(0.0).accuracy), (1, 0.0));
        let shown = r.render();
        assert!(shown.contains("facts correct         1 of 2"), "{shown}");
        assert!(shown.contains("answered correctly"), "{shown}");
    }
}
