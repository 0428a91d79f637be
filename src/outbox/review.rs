//! Shadow mode: what an agent did with a draft, from what the helpdesk
//! shows afterwards. The first public agent reply after the note is
//! compared with the draft word by word (longest common subsequence):
//! nearly identical is `unchanged`, a substantial overlap `edited`, less
//! `discarded`; a ticket closed with no agent reply is `discarded` too.

use serde::Serialize;

use crate::domain::{OutboxRecord, OutboxState, ShadowOutcome};

use super::helpdesk::AgentActivity;

/// At or above: the agent sent the draft as written.
pub const UNCHANGED: f32 = 0.95;
/// At or above: the agent sent an edited draft.
pub const EDITED: f32 = 0.5;
/// Words compared at most (keeps the quadratic comparison cheap).
const MAX_WORDS: usize = 600;

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_WORDS)
        .map(str::to_lowercase)
        .collect()
}

/// 2·LCS / (|a| + |b|) over words: 1 for the same words in the same order.
pub fn similarity(a: &str, b: &str) -> f32 {
    let (a, b) = (words(a), words(b));
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let mut prev = vec![0usize; b.len() + 1];
    for x in &a {
        let mut cur = vec![0usize; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        prev = cur;
    }
    2.0 * prev[b.len()] as f32 / (a.len() + b.len()) as f32
}

/// The outcome, if the helpdesk already tells it.
pub fn classify(draft: &str, activity: &AgentActivity) -> Option<(ShadowOutcome, f32)> {
    if let Some(reply) = activity.replies.first() {
        let s = similarity(draft, reply);
        let outcome = if s >= UNCHANGED {
            ShadowOutcome::Unchanged
        } else if s >= EDITED {
            ShadowOutcome::Edited
        } else {
            ShadowOutcome::Discarded
        };
        return Some((outcome, s));
    }
    activity.closed.then_some((ShadowOutcome::Discarded, 0.0))
}

/// What agents did with shadow drafts: the would-be resolution rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ShadowReport {
    /// Shadow drafts posted as notes.
    pub drafts: usize,
    /// Not reviewed yet (or not delivered yet).
    pub pending: usize,
    /// Sent as written.
    pub unchanged: usize,
    /// Sent after editing.
    pub edited: usize,
    /// Not used.
    pub discarded: usize,
    /// Nobody answered within the review window.
    pub no_reply: usize,
}

impl ShadowReport {
    /// Counts the shadow drafts among `records`.
    pub fn from_records(records: &[OutboxRecord]) -> Self {
        let mut r = Self::default();
        for rec in records.iter().filter(|r| r.is_shadow_draft()) {
            r.drafts += 1;
            match rec.review.as_ref().map(|v| v.outcome) {
                Some(ShadowOutcome::Unchanged) => r.unchanged += 1,
                Some(ShadowOutcome::Edited) => r.edited += 1,
                Some(ShadowOutcome::Discarded) => r.discarded += 1,
                Some(ShadowOutcome::NoReply) => r.no_reply += 1,
                None if rec.state == OutboxState::Failed => r.discarded += 1,
                None => r.pending += 1,
            }
        }
        r
    }

    /// Drafts whose fate is known.
    pub fn reviewed(&self) -> usize {
        self.unchanged + self.edited + self.discarded + self.no_reply
    }

    /// A small table.
    pub fn render(&self) -> String {
        let pct = |n: usize| {
            if self.reviewed() == 0 {
                "–".to_owned()
            } else {
                format!("{:.1} %", 100.0 * n as f64 / self.reviewed() as f64)
            }
        };
        format!(
            "shadow drafts          {}\n\
             not reviewed yet       {}\n\
             sent unchanged         {} ({})\n\
             sent edited            {} ({})\n\
             discarded              {} ({})\n\
             no agent reply         {} ({})\n\
             would-be resolution    {} unchanged, {} with edits\n",
            self.drafts,
            self.pending,
            self.unchanged,
            pct(self.unchanged),
            self.edited,
            pct(self.edited),
            self.discarded,
            pct(self.discarded),
            self.no_reply,
            pct(self.no_reply),
            pct(self.unchanged),
            pct(self.unchanged + self.edited),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(replies: &[&str], closed: bool) -> AgentActivity {
        AgentActivity {
            replies: replies.iter().map(|s| s.to_string()).collect(),
            closed,
        }
    }

    #[test]
    fn outcomes() {
        let draft = "Go to Settings, then Security, and turn on two-factor authentication.";
        assert_eq!(
            classify(draft, &seen(&[draft], false)).unwrap().0,
            ShadowOutcome::Unchanged
        );
        let edited = "Hi Ann! Go to Settings, then Security, and switch on two-factor authentication. Best, Sam";
        assert_eq!(
            classify(draft, &seen(&[edited], false)).unwrap().0,
            ShadowOutcome::Edited
        );
        let other = "We have refunded your last invoice; it takes five days.";
        assert_eq!(
            classify(draft, &seen(&[other], true)).unwrap().0,
            ShadowOutcome::Discarded
        );
        assert_eq!(
            classify(draft, &seen(&[], true)).unwrap().0,
            ShadowOutcome::Discarded
        );
        assert!(classify(draft, &seen(&[], false)).is_none());
    }

    #[test]
    fn similarity_is_symmetric_and_bounded() {
        assert_eq!(similarity("a b c", "a b c"), 1.0);
        assert_eq!(similarity("", "a"), 0.0);
        let s = similarity("a b c d", "a x c d");
        assert!((s - 0.75).abs() < 1e-6, "{s}");
        assert_eq!(similarity("a b", "b a"), similarity("b a", "a b"));
    }
}
