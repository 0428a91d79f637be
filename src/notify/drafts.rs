//! An [`Escalator`] decorator that keeps the bot's draft of every
//! escalation for the agent console ([`PeopleStore::keep_draft`]) while
//! passing the escalation on (both at once: one round trip, not two).
//! Keeping is best effort: a store failure is logged and the escalation
//! still goes out (the person must hear of it; the draft is a convenience),
//! so the pipeline needs no console code.

use std::sync::Arc;

use async_trait::async_trait;

use super::{EscalateError, Escalation, Escalator};
use crate::store::PeopleStore;
use crate::store::people::Draft;

/// Keeps drafts in `people`, then escalates through `next`.
pub struct KeepDrafts {
    next: Arc<dyn Escalator>,
    people: Arc<dyn PeopleStore>,
}

impl KeepDrafts {
    /// Wraps `next`.
    pub fn new(next: Arc<dyn Escalator>, people: Arc<dyn PeopleStore>) -> Self {
        Self { next, people }
    }
}

#[async_trait]
impl Escalator for KeepDrafts {
    async fn escalate(&self, e: &Escalation) -> Result<(), EscalateError> {
        let keep = async {
            if let (Some(text), Some(conv), Some(ticket)) =
                (&e.draft, e.conversation_id, e.ticket_id)
                && !text.trim().is_empty()
            {
                let draft = Draft {
                    ticket_id: ticket,
                    text: text.clone(),
                    reason: e.reason,
                    confidence: e.confidence,
                    created_at: e.at,
                };
                if let Err(error) = self.people.keep_draft(conv, draft).await {
                    tracing::warn!(message = "Keeping the draft failed.", %error, conversation_id = %conv);
                }
            }
        };
        let ((), sent) = tokio::join!(keep, self.next.escalate(e));
        sent
    }
}
