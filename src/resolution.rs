//! Resolution figures the way helpdesk leaders count them, per
//! conversation rather than per ticket:
//!
//! * **involved**: the bot answered at least once;
//! * **resolved — confirmed**: the customer confirmed the bot's last
//!   answer (a thumbs-up on it, a thank-you after it, or a CSAT of 4 or 5);
//! * **resolved — assumed**: no further customer message within
//!   `resolution.assume_after_hours` (24 h by default) of the bot's last
//!   answer, and no thumbs-down on it, no CSAT of 1 or 2;
//! * **pending**: the bot's last answer is too recent to assume anything;
//! * **escalated**: a ticket of it went to a person;
//! * **reopened**: a customer message (a new question, not a thank-you or
//!   goodbye) within `resolution.reopen_days` (7) of a resolution, which
//!   cancels that resolution.
//!
//! A conversation ends in at most one resolution (its last), so the rates
//! add up: `resolution_rate = (confirmed + assumed) / involved`. The cost
//! per resolution divides the period's whole cost ([`Summary`]) by these
//! resolutions, not by answered tickets.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::cost::{Percentiles, Summary};
use crate::domain::{ConversationId, Outcome, Rating};
use crate::store::people::{Csat, Feedback};
use crate::store::{PeopleStore, Store, StoreError, TicketRecord};

/// `[resolution]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResolutionSettings {
    /// Silence after the bot's last answer that counts as resolved.
    pub assume_after_hours: u32,
    /// A customer message this soon after a resolution reopens it.
    pub reopen_days: u32,
}

impl Default for ResolutionSettings {
    fn default() -> Self {
        Self {
            assume_after_hours: 24,
            reopen_days: 7,
        }
    }
}

impl ResolutionSettings {
    /// Checks the bounds (called when the configuration loads).
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=24 * 30).contains(&self.assume_after_hours),
            "resolution.assume_after_hours must be within 1..=720"
        );
        anyhow::ensure!(
            (1..=90).contains(&self.reopen_days),
            "resolution.reopen_days must be within 1..=90"
        );
        Ok(())
    }
}

/// How the bot's part in one conversation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolved {
    /// The customer said so.
    Confirmed,
    /// The customer went quiet.
    Assumed,
}

/// One conversation's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Verdict {
    /// The bot answered at least once.
    pub involved: bool,
    /// A ticket went to a person.
    pub escalated: bool,
    /// Its final resolution, if any.
    pub resolved: Option<Resolved>,
    /// A resolution was cancelled by the customer writing again.
    pub reopened: bool,
    /// The last answer is too recent to judge.
    pub pending: bool,
}

fn reply_id(t: &TicketRecord) -> String {
    format!("{}.reply", t.ticket_id)
}

/// Judges one conversation from its tickets (any order), its ratings and
/// its CSAT, as of `now`.
pub fn judge(
    tickets: &[TicketRecord],
    ratings: &[Feedback],
    csat: Option<&Csat>,
    now: DateTime<Utc>,
    settings: &ResolutionSettings,
) -> Verdict {
    let window = Duration::hours(i64::from(settings.assume_after_hours));
    let reopen = Duration::days(i64::from(settings.reopen_days));
    let rating_of: HashMap<&str, Rating> = ratings
        .iter()
        .map(|f| (f.message_id.as_str(), f.rating))
        .collect();
    let mut sorted: Vec<&TicketRecord> = tickets.iter().collect();
    sorted.sort_by_key(|t| (t.received_at, t.completed_at));
    let mut v = Verdict::default();
    // The bot's latest answer nobody has reacted to yet.
    let mut last: Option<&TicketRecord> = None;
    // The standing resolution: its kind and when it was reached.
    let mut resolved: Option<(Resolved, DateTime<Utc>)> = None;
    for t in sorted {
        match t.outcome {
            Outcome::Acknowledged => continue,
            Outcome::Confirmed => {
                if let Some(a) = last.take() {
                    resolved = Some((Resolved::Confirmed, a.completed_at));
                }
                continue;
            }
            _ => {}
        }
        // A new customer message: first settle the answer before it.
        if let Some(a) = last.take() {
            let up = rating_of.get(reply_id(a).as_str()) == Some(&Rating::Up);
            if up {
                resolved = Some((Resolved::Confirmed, a.completed_at));
            } else if rating_of.get(reply_id(a).as_str()) != Some(&Rating::Down)
                && t.received_at - a.completed_at >= window
            {
                resolved = Some((Resolved::Assumed, a.completed_at));
            }
        }
        if let Some((_, at)) = resolved.take()
            && t.received_at - at <= reopen
        {
            v.reopened = true;
        }
        match t.outcome {
            Outcome::Answered => {
                v.involved = true;
                last = Some(t);
            }
            o if o.needs_person() => v.escalated = true,
            _ => {}
        }
    }
    if let Some(a) = last {
        match rating_of.get(reply_id(a).as_str()) {
            Some(Rating::Up) => resolved = Some((Resolved::Confirmed, a.completed_at)),
            Some(Rating::Down) => {}
            None => match csat.map(|c| c.score) {
                Some(4..) => resolved = Some((Resolved::Confirmed, a.completed_at)),
                Some(..=2) => {}
                _ if now - a.completed_at >= window => {
                    resolved = Some((Resolved::Assumed, a.completed_at));
                }
                _ => v.pending = true,
            },
        }
    }
    if let Some((kind, _)) = resolved {
        let satisfied = csat.is_some_and(|c| c.score >= 4);
        v.resolved = Some(if satisfied { Resolved::Confirmed } else { kind });
    }
    v
}

/// Customers' satisfaction answers.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CsatFigures {
    /// Conversations scored.
    pub responses: u64,
    /// Mean score (0 without responses).
    pub average: f64,
    /// Share of responses scoring 4 or 5.
    pub satisfied_rate: f64,
}

/// The period's resolution figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolution {
    /// Start of the period.
    pub since: DateTime<Utc>,
    /// When the figures were made.
    pub until: DateTime<Utc>,
    /// The window and reopen period used.
    pub settings: ResolutionSettings,
    /// Conversations with a ticket in the period.
    pub conversations: u64,
    /// The bot answered at least once.
    pub involved: u64,
    /// `involved / conversations`.
    pub involvement_rate: f64,
    /// Resolved, confirmed by the customer.
    pub resolved_confirmed: u64,
    /// Resolved, assumed from silence.
    pub resolved_assumed: u64,
    /// `(confirmed + assumed) / involved`.
    pub resolution_rate: f64,
    /// `confirmed / involved`.
    pub confirmed_rate: f64,
    /// `assumed / involved`.
    pub assumed_rate: f64,
    /// Too recent to judge.
    pub pending: u64,
    /// A ticket went to a person.
    pub escalated: u64,
    /// `escalated / conversations`.
    pub escalation_rate: f64,
    /// A resolution was cancelled by a new customer message.
    pub reopened: u64,
    /// `reopened / (resolutions + reopened)`: the share of resolutions
    /// that did not hold.
    pub reopen_rate: f64,
    /// Thumbs up and down on bot replies.
    pub ratings: BTreeMap<String, u64>,
    /// Thumbs-down reasons.
    pub thumbs_down_reasons: BTreeMap<String, u64>,
    /// CSAT.
    pub csat: CsatFigures,
    /// Escalated tickets by reason.
    pub escalations_by_reason: BTreeMap<String, u64>,
    /// Accepted → finished, per ticket.
    pub latency: Percentiles,
    /// The period's whole cost (model and infrastructure), dollars.
    pub total_cost: f64,
    /// `total_cost / (confirmed + assumed)` (0 without resolutions).
    pub cost_per_resolution: f64,
}

fn rate(n: u64, of: u64) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

/// What is known of one conversation.
pub struct ConversationFacts {
    /// Its tickets in the period.
    pub tickets: Vec<TicketRecord>,
    /// Its ratings.
    pub ratings: Vec<Feedback>,
    /// Its CSAT.
    pub csat: Option<Csat>,
}

impl Resolution {
    /// The figures over `conversations`, with the period's `summary` (for
    /// latency, reasons and cost).
    pub fn of(
        conversations: &[ConversationFacts],
        summary: &Summary,
        now: DateTime<Utc>,
        settings: ResolutionSettings,
    ) -> Self {
        let (mut involved, mut confirmed, mut assumed, mut pending) = (0, 0, 0, 0);
        let (mut escalated, mut reopened) = (0, 0);
        let mut ratings: BTreeMap<String, u64> = BTreeMap::new();
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        let (mut scores, mut satisfied, mut responses) = (0u64, 0u64, 0u64);
        for c in conversations {
            let v = judge(&c.tickets, &c.ratings, c.csat.as_ref(), now, &settings);
            involved += u64::from(v.involved);
            escalated += u64::from(v.escalated);
            reopened += u64::from(v.reopened);
            pending += u64::from(v.pending);
            match v.resolved {
                Some(Resolved::Confirmed) => confirmed += 1,
                Some(Resolved::Assumed) => assumed += 1,
                None => {}
            }
            for f in &c.ratings {
                *ratings.entry(f.rating.as_str().into()).or_default() += 1;
                if let Some(r) = f.reason {
                    *reasons.entry(r.as_str().into()).or_default() += 1;
                }
            }
            if let Some(s) = &c.csat {
                responses += 1;
                scores += u64::from(s.score);
                satisfied += u64::from(s.score >= 4);
            }
        }
        let n = conversations.len() as u64;
        let resolutions = confirmed + assumed;
        Self {
            since: summary.since,
            until: now,
            settings,
            conversations: n,
            involved,
            involvement_rate: rate(involved, n),
            resolved_confirmed: confirmed,
            resolved_assumed: assumed,
            resolution_rate: rate(resolutions, involved),
            confirmed_rate: rate(confirmed, involved),
            assumed_rate: rate(assumed, involved),
            pending,
            escalated,
            escalation_rate: rate(escalated, n),
            reopened,
            reopen_rate: rate(reopened, resolutions + reopened),
            ratings,
            thumbs_down_reasons: reasons,
            csat: CsatFigures {
                responses,
                average: rate(scores, responses),
                satisfied_rate: rate(satisfied, responses),
            },
            escalations_by_reason: summary.by_reason.clone(),
            latency: summary.latency,
            total_cost: summary.total_cost,
            cost_per_resolution: if resolutions == 0 {
                0.0
            } else {
                summary.total_cost / resolutions as f64
            },
        }
    }

    /// The figures as `name,value` lines (CSV with a header).
    pub fn csv(&self) -> String {
        let mut out = String::from("figure,value\n");
        let mut row = |k: &str, v: String| out.push_str(&format!("{k},{v}\n"));
        row("since", self.since.to_rfc3339());
        row("until", self.until.to_rfc3339());
        row(
            "assume_after_hours",
            self.settings.assume_after_hours.to_string(),
        );
        row("reopen_days", self.settings.reopen_days.to_string());
        for (k, v) in [
            ("conversations", self.conversations),
            ("involved", self.involved),
            ("resolved_confirmed", self.resolved_confirmed),
            ("resolved_assumed", self.resolved_assumed),
            ("pending", self.pending),
            ("escalated", self.escalated),
            ("reopened", self.reopened),
            ("csat_responses", self.csat.responses),
        ] {
            row(k, v.to_string());
        }
        for (k, v) in [
            ("involvement_rate", self.involvement_rate),
            ("resolution_rate", self.resolution_rate),
            ("confirmed_rate", self.confirmed_rate),
            ("assumed_rate", self.assumed_rate),
            ("escalation_rate", self.escalation_rate),
            ("reopen_rate", self.reopen_rate),
            ("csat_average", self.csat.average),
            ("csat_satisfied_rate", self.csat.satisfied_rate),
            ("latency_p50_ms", self.latency.p50_ms),
            ("latency_p95_ms", self.latency.p95_ms),
            ("total_cost_usd", self.total_cost),
            ("cost_per_resolution_usd", self.cost_per_resolution),
        ] {
            row(k, format!("{v:.4}"));
        }
        for (k, v) in &self.ratings {
            row(&format!("ratings_{k}"), v.to_string());
        }
        for (k, v) in &self.thumbs_down_reasons {
            row(&format!("thumbs_down_{k}"), v.to_string());
        }
        for (k, v) in &self.escalations_by_reason {
            row(&format!("escalations_{k}"), v.to_string());
        }
        out
    }

    /// A table for the terminal.
    pub fn render(&self) -> String {
        let pct = |r: f64| format!("{:.1} %", r * 100.0);
        let mut s = format!(
            "Resolution since {} (assumed after {} h of silence, reopened within {} days)\n\n",
            self.since.format("%Y-%m-%d %H:%M UTC"),
            self.settings.assume_after_hours,
            self.settings.reopen_days
        );
        let lines = [
            ("conversations", self.conversations.to_string()),
            (
                "involved (bot answered)",
                format!("{}  ({})", self.involved, pct(self.involvement_rate)),
            ),
            (
                "resolved, confirmed",
                format!(
                    "{}  ({} of involved)",
                    self.resolved_confirmed,
                    pct(self.confirmed_rate)
                ),
            ),
            (
                "resolved, assumed",
                format!(
                    "{}  ({} of involved)",
                    self.resolved_assumed,
                    pct(self.assumed_rate)
                ),
            ),
            ("resolution rate", pct(self.resolution_rate)),
            ("pending (too recent)", self.pending.to_string()),
            (
                "escalated",
                format!("{}  ({})", self.escalated, pct(self.escalation_rate)),
            ),
            (
                "reopened",
                format!(
                    "{}  ({} of resolutions)",
                    self.reopened,
                    pct(self.reopen_rate)
                ),
            ),
            (
                "CSAT",
                if self.csat.responses == 0 {
                    "no responses".into()
                } else {
                    format!(
                        "{:.2} / 5 from {}  ({} satisfied)",
                        self.csat.average,
                        self.csat.responses,
                        pct(self.csat.satisfied_rate)
                    )
                },
            ),
            (
                "latency p50 / p95",
                format!(
                    "{:.0} ms / {:.0} ms",
                    self.latency.p50_ms, self.latency.p95_ms
                ),
            ),
            (
                "cost per resolution",
                format!(
                    "${:.4}  (total ${:.2})",
                    self.cost_per_resolution, self.total_cost
                ),
            ),
        ];
        for (k, v) in lines {
            s.push_str(&format!("  {k:<26} {v}\n"));
        }
        if !self.ratings.is_empty() {
            let r: Vec<String> = self
                .ratings
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            s.push_str(&format!("  {:<26} {}\n", "ratings", r.join(", ")));
        }
        if !self.thumbs_down_reasons.is_empty() {
            let r: Vec<String> = self
                .thumbs_down_reasons
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            s.push_str(&format!(
                "  {:<26} {}\n",
                "thumbs-down reasons",
                r.join(", ")
            ));
        }
        if !self.escalations_by_reason.is_empty() {
            s.push_str("\n  escalated tickets by reason\n");
            for (k, v) in &self.escalations_by_reason {
                s.push_str(&format!("    {k:<24} {v}\n"));
            }
        }
        s
    }
}

/// Conversations read at once.
const PARALLEL: usize = 8;

/// Reads the period's tickets, ratings and scores and makes the figures.
pub async fn gather(
    store: &dyn Store,
    people: &dyn PeopleStore,
    pricing: &crate::cost::Pricing,
    settings: ResolutionSettings,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(Summary, Resolution), StoreError> {
    let records = store.tickets_since(since).await?;
    let summary = Summary::of(&records, since, now, pricing);
    let mut by_conv: HashMap<ConversationId, Vec<TicketRecord>> = HashMap::new();
    for r in records {
        by_conv.entry(r.conversation_id).or_default().push(r);
    }
    let facts: Vec<ConversationFacts> = futures::stream::iter(by_conv)
        .map(|(id, tickets)| async move {
            Ok::<_, StoreError>(ConversationFacts {
                tickets,
                ratings: people.ratings(id).await?,
                csat: people.csat(id).await?,
            })
        })
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    let resolution = Resolution::of(&facts, &summary, now, settings);
    Ok((summary, resolution))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{TicketId, Usage};

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::hours(h)
    }

    fn t(outcome: Outcome, hour: i64) -> TicketRecord {
        TicketRecord {
            ticket_id: TicketId::new(),
            conversation_id: ConversationId::random(),
            outcome,
            reason: None,
            confidence: 0.9,
            notified: true,
            usage: Usage::default(),
            attempts: 1,
            received_at: at(hour),
            completed_at: at(hour),
        }
    }

    fn rated(r: &TicketRecord, rating: Rating) -> Feedback {
        Feedback {
            conversation_id: r.conversation_id,
            message_id: reply_id(r),
            rating,
            reason: None,
            at: r.completed_at,
        }
    }

    fn csat(score: u8) -> Csat {
        Csat {
            conversation_id: ConversationId::random(),
            score,
            at: at(0),
        }
    }

    const S: ResolutionSettings = ResolutionSettings {
        assume_after_hours: 24,
        reopen_days: 7,
    };

    fn verdict(
        tickets: &[TicketRecord],
        ratings: &[Feedback],
        c: Option<Csat>,
        now_h: i64,
    ) -> Verdict {
        judge(tickets, ratings, c.as_ref(), at(now_h), &S)
    }

    #[test]
    fn silence_after_an_answer_is_assumed_only_once_the_window_passes() {
        let a = [t(Outcome::Answered, 0)];
        let v = verdict(&a, &[], None, 1);
        assert_eq!((v.involved, v.resolved, v.pending), (true, None, true));
        let v = verdict(&a, &[], None, 24);
        assert_eq!((v.resolved, v.pending), (Some(Resolved::Assumed), false));
    }

    #[test]
    fn thumbs_up_thanks_and_good_csat_confirm() {
        let a = [t(Outcome::Answered, 0)];
        assert_eq!(
            verdict(&a, &[rated(&a[0], Rating::Up)], None, 1).resolved,
            Some(Resolved::Confirmed)
        );
        let thanked = [t(Outcome::Answered, 0), t(Outcome::Confirmed, 1)];
        assert_eq!(
            verdict(&thanked, &[], None, 2).resolved,
            Some(Resolved::Confirmed)
        );
        assert_eq!(
            verdict(&a, &[], Some(csat(4)), 1).resolved,
            Some(Resolved::Confirmed)
        );
        // A good score upgrades an assumed resolution too.
        assert_eq!(
            verdict(&a, &[], Some(csat(5)), 48).resolved,
            Some(Resolved::Confirmed)
        );
    }

    #[test]
    fn thumbs_down_and_bad_csat_are_not_resolutions() {
        let a = [t(Outcome::Answered, 0)];
        let v = verdict(&a, &[rated(&a[0], Rating::Down)], None, 100);
        assert_eq!((v.involved, v.resolved, v.pending), (true, None, false));
        assert_eq!(verdict(&a, &[], Some(csat(2)), 100).resolved, None);
        assert_eq!(
            verdict(&a, &[], Some(csat(3)), 100).resolved,
            Some(Resolved::Assumed)
        );
    }

    #[test]
    fn a_new_question_within_seven_days_reopens_and_later_is_a_new_issue() {
        // Answer, silence (assumed at +24 h), a new question on day 3.
        let reopened = [t(Outcome::Answered, 0), t(Outcome::Answered, 72)];
        let v = verdict(&reopened, &[], None, 200);
        assert!(v.reopened);
        assert_eq!(
            v.resolved,
            Some(Resolved::Assumed),
            "the second answer resolves"
        );
        // A follow-up within the window is no reopen: nothing was resolved yet.
        let follow = [t(Outcome::Answered, 0), t(Outcome::Answered, 2)];
        assert!(!verdict(&follow, &[], None, 200).reopened);
        // After eight days: a new issue, not a reopen.
        let later = [t(Outcome::Answered, 0), t(Outcome::Answered, 8 * 24 + 1)];
        assert!(!verdict(&later, &[], None, 400).reopened);
        // A thumbs-up, then another question the same hour: reopened.
        let a = [t(Outcome::Answered, 0), t(Outcome::Answered, 1)];
        assert!(verdict(&a, &[rated(&a[0], Rating::Up)], None, 100).reopened);
        // Greetings and goodbyes do not reopen.
        let bye = [t(Outcome::Answered, 0), t(Outcome::Acknowledged, 30)];
        let v = verdict(&bye, &[], None, 100);
        assert_eq!((v.reopened, v.resolved), (false, Some(Resolved::Assumed)));
    }

    #[test]
    fn escalations_end_unresolved_and_can_reopen() {
        let e = [t(Outcome::Escalated, 0)];
        let v = verdict(&e, &[], None, 100);
        assert_eq!(
            (v.involved, v.escalated, v.resolved, v.pending),
            (false, true, None, false)
        );
        let after = [t(Outcome::Answered, 0), t(Outcome::Escalated, 30)];
        let v = verdict(&after, &[], None, 100);
        assert_eq!(
            (v.involved, v.escalated, v.reopened, v.resolved),
            (true, true, true, None)
        );
        let quick = [t(Outcome::Answered, 0), t(Outcome::Escalated, 1)];
        let v = verdict(&quick, &[], None, 100);
        assert_eq!((v.reopened, v.resolved), (false, None));
    }
}
