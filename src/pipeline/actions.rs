//! The pipeline's hook into [`crate::actions`]: before the generator, a
//! message an action applies to is answered by that action (or asks for
//! what it needs, or escalates `action_failed`).
//!
//! With an LLM generator, a fresh message that names an action's intent
//! goes to the model with the actions as tools ([`Acted::WithTools`]);
//! only pending questions and confirmations are handled here.
//!
//! The rules still come first: a customer who asks for a person, is upset
//! or raises a sensitive topic gets a person, not an order lookup. Only
//! `needs_account_data` (what actions exist to answer) gives way.

use crate::actions::tools::ActionTools;
use crate::actions::{Identity, Step};
use crate::domain::{Decision, Escalate, Message, ReasonCode, Reply, Ticket, Usage};

use super::{Responder, Thought, after_answer};

/// What the action path did with a ticket.
pub(super) enum Acted {
    /// Answered (or asked, or escalated): no generator.
    Answered(Box<Thought>),
    /// The generator answers, with the actions as tools.
    WithTools(ActionTools),
    /// No action applies.
    Not,
}

impl Acted {
    /// The tools for the generator, if any.
    pub(super) fn tools(&self) -> Option<&ActionTools> {
        match self {
            Acted::WithTools(t) => Some(t),
            _ => None,
        }
    }
}

impl Responder {
    /// What the actions make of `ticket`.
    pub(super) async fn act(&self, ticket: &Ticket, history: &[Message]) -> Acted {
        let Some(actions) = self.actions.as_ref() else {
            return Acted::Not;
        };
        let assessment = self.rules.assess(
            ticket.text.as_str(),
            ticket.subject.as_deref(),
            after_answer(history),
        );
        if assessment
            .hit
            .as_ref()
            .is_some_and(|h| h.reason != ReasonCode::NeedsAccountData)
        {
            return Acted::Not;
        }
        let fresh = self.settings.extractive;
        let Some(response) = actions.respond(ticket, history, fresh).await else {
            if !fresh && actions.intends(ticket.text.as_str()) {
                return Acted::WithTools(ActionTools::new(
                    actions.clone(),
                    Identity::of(ticket),
                    ticket.channel(),
                ));
            }
            return Acted::Not;
        };
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
        Acted::Answered(Box::new(Thought {
            passages: Vec::new(),
            rule: None,
            generation: None,
            decision,
            usage,
            sentiment: assessment.sentiment,
            act: None,
            language: assessment.language,
        }))
    }
}

/// After a generation with `tools`: their calls go into `usage`, their
/// results into `passages` (what the answer may cite), and a failed call
/// decides `action_failed` whatever the model said.
pub(super) fn account(
    tools: &ActionTools,
    usage: &mut Usage,
    passages: &mut Vec<crate::knowledge::Passage>,
    decision: &mut Option<Decision>,
) {
    let calls = tools.calls();
    usage.action_calls += calls.len() as u32;
    usage.action_ms += calls
        .iter()
        .map(|c| c.latency.as_millis() as u64)
        .sum::<u64>();
    passages.extend(crate::llm::tools::Tools::evidence(tools));
    if let Some(detail) = tools.failure() {
        *decision = Some(Decision::Escalate(Escalate {
            reason: ReasonCode::ActionFailed,
            confidence: 0.0,
            detail,
            draft: None,
        }));
    }
}
