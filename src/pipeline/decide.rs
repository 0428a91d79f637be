//! The confidence gate: turns a generation and the retrieval into a
//! decision with a machine-readable reason.

use std::str::FromStr;

use crate::domain::{Decision, Escalate, ReasonCode, Reply, Source};
use crate::knowledge::Passage;
use crate::llm::Generation;

/// Thresholds of the gate.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    /// Answers below this confidence go to a person.
    pub min_confidence: f32,
}

/// Reasons a generator may give that keep their meaning; anything else it
/// says becomes `model_refused` with its words as detail.
const MODEL_REASONS: &[ReasonCode] = &[
    ReasonCode::AskedForHuman,
    ReasonCode::SensitiveTopic,
    ReasonCode::NegativeSentiment,
    ReasonCode::NoKnowledge,
    ReasonCode::LowConfidence,
];

/// Decides on `generation`, grounded in `passages`.
pub fn decide(gate: Gate, generation: &Generation, passages: &[Passage]) -> Decision {
    let sources = cited(generation, passages);
    let reply = (!generation.answer.trim().is_empty()).then(|| Reply {
        text: generation.answer.trim().to_owned(),
        sources,
        confidence: generation.confidence,
    });
    let escalate = |reason, detail: String| {
        Decision::Escalate(Escalate {
            reason,
            confidence: generation.confidence,
            detail,
            draft: reply.clone(),
        })
    };
    if generation.needs_human {
        let said = generation.reason.clone().unwrap_or_default();
        let reason = ReasonCode::from_str(said.trim())
            .ok()
            .filter(|r| MODEL_REASONS.contains(r))
            .unwrap_or(ReasonCode::ModelRefused);
        return escalate(
            reason,
            format!(
                "generator: {}",
                if said.is_empty() {
                    "needs a person"
                } else {
                    &said
                }
            ),
        );
    }
    let Some(reply) = reply.clone() else {
        return escalate(ReasonCode::ModelRefused, "generator gave no answer".into());
    };
    if generation.confidence < gate.min_confidence {
        return escalate(
            ReasonCode::LowConfidence,
            format!(
                "confidence {:.2} < {:.2}",
                generation.confidence, gate.min_confidence
            ),
        );
    }
    Decision::Answer(reply)
}

/// The passages the generation cites, or the best passage when it cites none.
fn cited(generation: &Generation, passages: &[Passage]) -> Vec<Source> {
    let mut out: Vec<Source> = Vec::new();
    for id in &generation.sources {
        if let Some(p) = passages.iter().find(|p| &p.doc_id == id)
            && !out.iter().any(|s| s.doc_id == p.doc_id)
        {
            out.push(p.source());
        }
    }
    if out.is_empty() {
        out.extend(passages.first().map(Passage::source));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Usage;

    fn generation(
        answer: &str,
        confidence: f32,
        needs_human: bool,
        reason: Option<&str>,
    ) -> Generation {
        Generation {
            answer: answer.into(),
            confidence,
            needs_human,
            reason: reason.map(Into::into),
            sources: vec!["b.md".into()],
            usage: Usage::default(),
        }
    }

    fn passages() -> Vec<Passage> {
        ["a.md", "b.md"]
            .iter()
            .map(|d| Passage {
                doc_id: d.to_string(),
                title: d.to_string(),
                section: None,
                text: String::new(),
                url: None,
                score: 1.0,
                relevance: 0.9,
            })
            .collect()
    }

    const GATE: Gate = Gate {
        min_confidence: 0.5,
    };

    #[test]
    fn answers_when_confident_citing_what_was_used() {
        let Decision::Answer(r) = decide(GATE, &generation("Yes.", 0.8, false, None), &passages())
        else {
            panic!()
        };
        assert_eq!(
            r.sources
                .iter()
                .map(|s| s.doc_id.as_str())
                .collect::<Vec<_>>(),
            ["b.md"]
        );
    }

    #[test]
    fn escalates_with_the_right_reason() {
        let p = passages();
        assert_eq!(
            decide(GATE, &generation("Maybe.", 0.3, false, None), &p).reason(),
            Some(ReasonCode::LowConfidence)
        );
        assert_eq!(
            decide(
                GATE,
                &generation("", 0.9, true, Some("asked_for_human")),
                &p
            )
            .reason(),
            Some(ReasonCode::AskedForHuman)
        );
        assert_eq!(
            decide(GATE, &generation("", 0.9, true, Some("I won't")), &p).reason(),
            Some(ReasonCode::ModelRefused)
        );
        assert_eq!(
            decide(
                GATE,
                &generation("", 0.9, true, Some("processing_failed")),
                &p
            )
            .reason(),
            Some(ReasonCode::ModelRefused)
        );
        assert_eq!(
            decide(GATE, &generation("  ", 0.9, false, None), &p).reason(),
            Some(ReasonCode::ModelRefused)
        );
        // The low-confidence draft is kept for the agent.
        let Decision::Escalate(e) = decide(GATE, &generation("Maybe.", 0.3, false, None), &p)
        else {
            panic!()
        };
        assert_eq!(e.draft.unwrap().text, "Maybe.");
    }
}
