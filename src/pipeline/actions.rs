//! The pipeline's hook into [`crate::actions`]: before the generator, a
//! message an action applies to is answered by that action (or asks for
//! what it needs, or escalates `action_failed`).
//!
//! The rules still come first: a customer who asks for a person, is upset
//! or raises a sensitive topic gets a person, not an order lookup. Only
//! `needs_account_data` (what actions exist to answer) gives way.

use crate::domain::{Decision, Escalate, Message, ReasonCode, Reply, Ticket, Usage};
use crate::actions::Step;

use super::{Responder, Thought, after_answer};

impl Responder {
    /// The action's answer for `ticket`, if one applies.
    pub(super) async fn act(&self, ticket: &Ticket, history: &[Message]) -> Option<Thought> {
        let actions = self.actions.as_ref()?;
        let assessment =
            self.rules
                .assess(ticket.text.as_str(), ticket.subject.as_deref(), after_answer(history));
        if assessment
            .hit
            .as_ref()
            .is_some_and(|h| h.reason != ReasonCode::NeedsAccountData)
        {
            return None;
        }
        let response = actions.respond(ticket, history).await?;
        let usage = Usage {
            action_calls: response.calls.len() as u32,
            action_ms: response
                .calls
                .iter()
                .map(|c| c.latency.as_millis() as u64)
                .sum(),
            ..Usage::default()
        };
        let decision = match response.step {
            Step::Reply(text) => Decision::Answer(Reply {
                text,
                sources: Vec::new(),
                confidence: 1.0,
            }),
            Step::Escalate(reason, detail) => Decision::Escalate(Escalate {
                reason,
                confidence: 0.0,
                detail,
                draft: None,
            }),
        };
        Some(Thought {
            passages: Vec::new(),
            rule: None,
            generation: None,
            decision,
            usage,
            sentiment: assessment.sentiment,
            act: None,
            language: assessment.language,
        })
    }
}
