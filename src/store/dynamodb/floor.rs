//! The ticket's two store steps on DynamoDB, each one `TransactWriteItems`
//! with no read before it: [`DynamoStore::begin_ticket`] (claim the ticket,
//! append its customer message, learn the conversation's state) and the
//! completion (`Store::complete`).
//!
//! A transaction returns no item when it succeeds, so each one *asserts*
//! what it assumes instead of reading it: the ticket is new (or, as last
//! seen, its lease expired or it was dead-lettered), the conversation's
//! `META` is at the `seq`, status and escalation reason last seen, the
//! message and its id marker are not stored yet. Every conditional item
//! asks for itself as it was when its condition fails
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`). When the assumptions
//! hold, that one round trip is the whole step, and its success *is* the
//! read: the conversation was what the condition said. When they do not,
//! the cancellation carries the truth and the retry asserts it. A wrong
//! guess costs a round trip, never correctness: nothing is written unless
//! every condition holds.
//!
//! The guesses come from [`Hints`], what this process last wrote or was
//! told of each conversation (bounded; a miss is guessed as a new
//! conversation). On a warm worker the conversation's last write is
//! usually its own previous completion, so later tickets of a conversation
//! take one round trip too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};

use super::{
    APPEND_RETRIES, DynamoStore, Item, build, cancellation_reasons, conv_pk, corrupt, get_n, get_s,
    key, msg_sk, n, s, sdk_error, ticket_from, ticket_pk, to_json,
};
use crate::domain::{ConversationId, ConversationStatus, NewMessage, Outcome, Ticket};
use crate::store::{
    Begin, Begun, ClaimToken, Completed, Completion, ConversationState, StoreError,
};

/// Conversations remembered; past this the memory starts over (a miss
/// costs one round trip, nothing else).
const HINTS: usize = 4096;

/// What this process last saw of a conversation's `META` item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Seen {
    /// Whether the item exists.
    pub exists: bool,
    /// Its `seq` (the last message's), 0 if none.
    pub seq: u64,
    /// Its `status`, if set.
    pub status: Option<String>,
    /// Its `escalation_reason`, if set.
    pub reason: Option<String>,
}

impl Seen {
    /// From a `META` item as a cancellation returned it (`None`: absent).
    pub fn of(item: Option<&Item>) -> Self {
        match item {
            None => Self::default(),
            Some(i) => Self {
                exists: true,
                seq: get_n(i, "seq").unwrap_or(0),
                status: get_s(i, "status").map(str::to_owned),
                reason: get_s(i, "escalation_reason").map(str::to_owned),
            },
        }
    }

    /// The condition that `META` is still as seen, with its values.
    fn condition(&self, names: &mut HashMap<String, String>, values: &mut Item) -> String {
        if !self.exists {
            return "attribute_not_exists(pk)".into();
        }
        names.insert("#seq".into(), "seq".into());
        names.insert("#status".into(), "status".into());
        let mut parts = Vec::with_capacity(3);
        if self.seq == 0 {
            parts.push("(attribute_not_exists(#seq) OR #seq = :cur)".to_owned());
        } else {
            parts.push("#seq = :cur".to_owned());
        }
        values.insert(":cur".into(), n(self.seq));
        match &self.status {
            Some(st) => {
                parts.push("#status = :seen_status".into());
                values.insert(":seen_status".into(), s(st));
            }
            None => parts.push("attribute_not_exists(#status)".into()),
        }
        match &self.reason {
            Some(r) => {
                parts.push("escalation_reason = :seen_reason".into());
                values.insert(":seen_reason".into(), s(r));
            }
            None => parts.push("attribute_not_exists(escalation_reason)".into()),
        }
        parts.join(" AND ")
    }
}

/// What this process last saw of each conversation (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Hints(Mutex<HashMap<ConversationId, Seen>>);

impl Hints {
    pub fn get(&self, id: ConversationId) -> Seen {
        self.0
            .lock()
            .map(|m| m.get(&id).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    pub fn put(&self, id: ConversationId, seen: Seen) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= HINTS && !m.contains_key(&id) {
                m.clear();
            }
            m.insert(id, seen);
        }
    }

    pub fn forget(&self, id: ConversationId) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&id);
        }
    }
}

/// What the claim asserts about the ticket's state item.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TicketSeen {
    /// Absent.
    New,
    /// Claimed with this many attempts, its lease expired.
    Expired(Option<u32>),
    /// Dead-lettered with this many attempts (a redrive).
    DeadLettered(Option<u32>),
}

/// One conditional item of a transaction, for reading its cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Ticket,
    Meta,
    Message,
    Marker,
    Outbox(usize),
}

fn attempts_condition(attempts: Option<u32>, values: &mut Item) -> &'static str {
    match attempts {
        Some(a) => {
            values.insert(":att".into(), n(a));
            "attempts = :att"
        }
        None => "attribute_not_exists(attempts)",
    }
}

impl DynamoStore {
    /// A conditional `Put` that fails (returning the stored item) if the
    /// key is taken.
    pub(super) fn put_new(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        Ok(TransactWriteItem::builder()
            .put(build(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)")
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build(),
            )?)
            .build())
    }

    /// The message item and its id marker at `seq`.
    pub(super) fn message_items(
        &self,
        conv: ConversationId,
        m: &NewMessage,
        seq: u64,
        expires: &AttributeValue,
    ) -> (Item, Item) {
        let mut msg = key(conv_pk(conv), &msg_sk(seq));
        msg.insert("seq".into(), n(seq));
        msg.insert("id".into(), s(&m.id));
        msg.insert("role".into(), s(m.role.as_str()));
        msg.insert("text".into(), s(&m.text));
        msg.insert("sources".into(), to_json(&m.sources));
        msg.insert("created_at".into(), s(m.created_at.to_rfc3339()));
        msg.insert("expires_at".into(), expires.clone());
        if let Some(t) = m.ticket_id {
            msg.insert("ticket_id".into(), s(t.to_string()));
        }
        let mut marker = key(conv_pk(conv), &format!("MSGID#{}", m.id));
        marker.insert("seq".into(), n(seq));
        marker.insert("expires_at".into(), expires.clone());
        (msg, marker)
    }

    /// Claims `ticket`, appends `message` and reads the conversation's
    /// state in one transaction (see the module docs).
    pub(super) async fn begin_ticket(
        &self,
        ticket: &Ticket,
        message: &NewMessage,
        lease: Duration,
    ) -> Result<Begin, StoreError> {
        let conv = ticket.conversation_id;
        let mut seen = self.hints.get(conv);
        let mut ticket_seen = TicketSeen::New;
        // Whether the message is already stored (an earlier attempt's).
        let mut appended = false;
        let token = ClaimToken::new();
        let token_s = s(token.0.to_string());
        let (tid, cid) = (
            s(ticket.ticket_id.to_string()),
            s(ticket.conversation_id.to_string()),
        );
        let customer = to_json(&ticket.customer);
        let thread = to_json(&ticket.thread);
        let route = to_json(&crate::domain::ReplyRoute::of(ticket));
        let received = s(ticket.received_at.to_rfc3339());
        for _ in 0..APPEND_RETRIES {
            let now = Utc::now();
            let now_ms = now.timestamp_millis();
            let expires = self.expires_at();

            // 0: the ticket's claim.
            let mut tv: Item = HashMap::from([
                (":claimed".to_owned(), s("claimed")),
                (":tok".to_owned(), token_s.clone()),
                (
                    ":until".to_owned(),
                    n(now_ms.saturating_add(lease.as_millis() as i64)),
                ),
                (":tid".to_owned(), tid.clone()),
                (":cid".to_owned(), cid.clone()),
                (":rcv".to_owned(), received.clone()),
                (":exp".to_owned(), expires.clone()),
                (":one".to_owned(), n(1)),
            ]);
            let ticket_condition = match ticket_seen {
                TicketSeen::New => "attribute_not_exists(pk)".to_owned(),
                TicketSeen::Expired(a) => {
                    tv.insert(":now".into(), n(now_ms));
                    format!(
                        "#state = :claimed AND (attribute_not_exists(lease_until) OR lease_until < :now) AND {}",
                        attempts_condition(a, &mut tv)
                    )
                }
                TicketSeen::DeadLettered(a) => {
                    tv.insert(":done".into(), s("done"));
                    tv.insert(":dead".into(), s(Outcome::DeadLettered.as_str()));
                    format!(
                        "#state = :done AND outcome = :dead AND {}",
                        attempts_condition(a, &mut tv)
                    )
                }
            };
            let claim = TransactWriteItem::builder()
                .update(build(
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(ticket_pk(ticket.ticket_id), "STATE")))
                        .update_expression(
                            "SET #state = :claimed, claim_token = :tok, lease_until = :until, \
                             ticket_id = :tid, conversation_id = :cid, \
                             received_at = if_not_exists(received_at, :rcv), expires_at = :exp \
                             ADD attempts :one REMOVE outcome, completed_at, done_day",
                        )
                        .condition_expression(ticket_condition)
                        .expression_attribute_names("#state", "state")
                        .set_expression_attribute_values(Some(tv))
                        .return_values_on_condition_check_failure(
                            ReturnValuesOnConditionCheckFailure::AllOld,
                        )
                        .build(),
                )?)
                .build();

            // 1: the conversation's META: created on first sight, `seq`
            // bumped for the message, on condition it is as seen.
            let mut names = HashMap::from([
                ("#status".to_owned(), "status".to_owned()),
                ("#seq".to_owned(), "seq".to_owned()),
            ]);
            let mut mv: Item = HashMap::from([
                (":p".to_owned(), s(ticket.provider.as_str())),
                (":open".to_owned(), s(ConversationStatus::Open.as_str())),
                (":c".to_owned(), customer.clone()),
                (
                    ":subj".to_owned(),
                    ticket
                        .subject
                        .as_ref()
                        .map_or(AttributeValue::Null(true), s),
                ),
                (":t".to_owned(), thread.clone()),
                (":route".to_owned(), route.clone()),
                (":now".to_owned(), s(now.to_rfc3339())),
                (":exp".to_owned(), expires.clone()),
            ]);
            let next = seen.seq + 1;
            let seq_set = if appended {
                mv.insert(":zero".into(), n(0));
                "#seq = if_not_exists(#seq, :zero)"
            } else {
                mv.insert(":next".into(), n(next));
                "#seq = :next"
            };
            let meta_condition = seen.condition(&mut names, &mut mv);
            let meta = TransactWriteItem::builder()
                .update(build(
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(conv_pk(conv), "META")))
                        .update_expression(format!(
                            "SET provider = if_not_exists(provider, :p), \
                             #status = if_not_exists(#status, :open), \
                             customer = if_not_exists(customer, :c), \
                             subject = if_not_exists(subject, :subj), \
                             thread = if_not_exists(thread, :t), reply_route = :route, \
                             created_at = if_not_exists(created_at, :now), \
                             updated_at = if_not_exists(updated_at, :now), \
                             {seq_set}, expires_at = :exp"
                        ))
                        .condition_expression(meta_condition)
                        .set_expression_attribute_names(Some(names))
                        .set_expression_attribute_values(Some(mv))
                        .return_values_on_condition_check_failure(
                            ReturnValuesOnConditionCheckFailure::AllOld,
                        )
                        .build(),
                )?)
                .build();
            let mut items = vec![claim, meta];
            let mut parts = vec![Part::Ticket, Part::Meta];
            if !appended {
                let (msg, marker) = self.message_items(conv, message, next, &expires);
                items.push(self.put_new(msg)?);
                items.push(self.put_new(marker)?);
                parts.extend([Part::Message, Part::Marker]);
            }

            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            let reasons = match sent {
                Ok(_) => {
                    let status = seen.status.clone().unwrap_or_else(|| "open".into());
                    let reason = seen.reason.clone();
                    let state = ConversationState {
                        status: status.parse().map_err(|_| corrupt("status"))?,
                        escalation_reason: reason.as_deref().and_then(|r| r.parse().ok()),
                    };
                    self.hints.put(
                        conv,
                        Seen {
                            exists: true,
                            seq: if appended { seen.seq } else { next },
                            status: Some(status),
                            reason,
                        },
                    );
                    let (attempt, redriven) = match ticket_seen {
                        TicketSeen::New => (1, false),
                        TicketSeen::Expired(a) => (a.unwrap_or(0) + 1, false),
                        TicketSeen::DeadLettered(a) => (a.unwrap_or(0) + 1, true),
                    };
                    return Ok(Begin::Acquired(Begun {
                        token,
                        attempt,
                        redriven,
                        state,
                    }));
                }
                Err(e) => match cancellation_reasons(&e) {
                    Some(r) => r,
                    None => return Err(sdk_error("TransactWriteItems", e)),
                },
            };
            // Learn from every failed condition, then decide.
            for (part, (code, item)) in parts.iter().zip(&reasons) {
                if code.as_deref() != Some("ConditionalCheckFailed") {
                    continue;
                }
                match part {
                    Part::Ticket => {
                        let Some(item) = item else {
                            ticket_seen = TicketSeen::New;
                            continue;
                        };
                        let attempts = get_n::<u32>(item, "attempts");
                        match get_s(item, "state") {
                            Some("done")
                                if get_s(item, "outcome")
                                    == Some(Outcome::DeadLettered.as_str()) =>
                            {
                                ticket_seen = TicketSeen::DeadLettered(attempts);
                            }
                            Some("done") => return Ok(Begin::Done(Box::new(ticket_from(item)?))),
                            _ => {
                                let until = get_n::<i64>(item, "lease_until").unwrap_or(0);
                                if until >= now_ms {
                                    return Ok(Begin::Busy {
                                        until: DateTime::from_timestamp_millis(until)
                                            .unwrap_or(now),
                                    });
                                }
                                ticket_seen = TicketSeen::Expired(attempts);
                            }
                        }
                    }
                    Part::Meta => seen = Seen::of(item.as_ref()),
                    // An earlier attempt stored the message: leave it.
                    Part::Marker => appended = true,
                    Part::Message | Part::Outbox(_) => {}
                }
            }
            if reasons.iter().all(|(c, _)| c.is_none()) {
                // Cancelled for no item's condition (a conflict with a
                // concurrent transaction): try again as it stands.
                continue;
            }
        }
        self.hints.forget(conv);
        Err(StoreError::Transient(format!(
            "beginning {} kept conflicting",
            ticket.ticket_id
        )))
    }

    /// Finishes a ticket in one transaction (see the module docs): the
    /// ticket's state change on condition of its claim, the message at the
    /// `seq` last seen, the status, the outbox records.
    pub(super) async fn complete_ticket(&self, done: &Completion) -> Result<Completed, StoreError> {
        let conv = done.conversation_id;
        let completed = Utc::now();
        let now = s(completed.to_rfc3339());
        let day = s(completed.format("%Y-%m-%d").to_string());
        let mut seen = self.hints.get(conv);
        let mut message = done.message.as_ref();
        let mut stored = vec![false; done.outbox.len()];
        let escalation_reason = done
            .status
            .filter(|st| *st == ConversationStatus::Escalated)
            .and(done.reason);
        for _ in 0..APPEND_RETRIES {
            let expires = self.expires_at();
            let mut items = vec![self.completion_update(done, &now, &day, completed, &expires)?];
            let mut parts = vec![Part::Ticket];

            // The conversation: message append and/or status, one update of META.
            let next = seen.seq + 1;
            if message.is_some() || done.status.is_some() {
                let (mut set, mut remove) = (Vec::with_capacity(5), Vec::new());
                let mut names = HashMap::new();
                let mut values: Item = HashMap::new();
                let mut condition = None;
                if message.is_some() {
                    set.push("#seq = :next");
                    set.push("expires_at = :exp");
                    names.insert("#seq".to_owned(), "seq".to_owned());
                    values.insert(":cur".into(), n(seen.seq));
                    values.insert(":next".into(), n(next));
                    values.insert(":exp".into(), expires.clone());
                    condition = Some(if seen.seq == 0 {
                        "attribute_not_exists(#seq) OR #seq = :cur"
                    } else {
                        "#seq = :cur"
                    });
                }
                if let Some(status) = done.status {
                    set.push("#status = :status");
                    set.push("updated_at = :now");
                    names.insert("#status".into(), "status".into());
                    values.insert(":status".into(), s(status.as_str()));
                    values.insert(":now".into(), now.clone());
                    match escalation_reason {
                        Some(r) => {
                            set.push("escalation_reason = :reason");
                            values.insert(":reason".into(), s(r.as_str()));
                        }
                        None => remove.push("escalation_reason"),
                    }
                }
                let mut expr = format!("SET {}", set.join(", "));
                if !remove.is_empty() {
                    expr.push_str(" REMOVE ");
                    expr.push_str(&remove.join(", "));
                }
                items.push(
                    TransactWriteItem::builder()
                        .update(build(
                            Update::builder()
                                .table_name(&self.table)
                                .set_key(Some(key(conv_pk(conv), "META")))
                                .update_expression(expr)
                                .set_condition_expression(condition.map(str::to_owned))
                                .set_expression_attribute_names(Some(names))
                                .set_expression_attribute_values(Some(values))
                                .return_values_on_condition_check_failure(
                                    ReturnValuesOnConditionCheckFailure::AllOld,
                                )
                                .build(),
                        )?)
                        .build(),
                );
                parts.push(Part::Meta);
                if let Some(m) = message {
                    let (msg, marker) = self.message_items(conv, m, next, &expires);
                    items.push(self.put_new(msg)?);
                    items.push(self.put_new(marker)?);
                    parts.extend([Part::Message, Part::Marker]);
                }
            }
            for (i, new) in done.outbox.iter().enumerate() {
                if !stored[i] {
                    items.push(self.put_new(self.new_outbox_item(new))?);
                    parts.push(Part::Outbox(i));
                }
            }
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            let reasons = match sent {
                Ok(_) => {
                    if seen.exists {
                        if message.is_some() {
                            seen.seq = next;
                        }
                        if let Some(st) = done.status {
                            seen.status = Some(st.as_str().to_owned());
                            seen.reason = escalation_reason.map(|r| r.as_str().to_owned());
                        }
                        self.hints.put(conv, seen);
                    }
                    return Ok(Completed::Written);
                }
                Err(e) => match cancellation_reasons(&e) {
                    Some(r) => r,
                    None => return Err(sdk_error("TransactWriteItems", e)),
                },
            };
            for (part, (code, item)) in parts.iter().zip(&reasons) {
                if code.as_deref() != Some("ConditionalCheckFailed") {
                    continue;
                }
                match part {
                    // The ticket's own condition failed: the claim is lost.
                    Part::Ticket => return Ok(Completed::LostClaim),
                    // Another message landed since: append after it.
                    Part::Meta => seen = Seen::of(item.as_ref()),
                    // Stored already (an acknowledgement lost): leave it.
                    Part::Marker => message = None,
                    Part::Outbox(i) => stored[*i] = true,
                    Part::Message => {}
                }
            }
        }
        self.hints.forget(conv);
        Err(StoreError::Transient(format!(
            "completing {} kept conflicting",
            done.ticket_id
        )))
    }

    /// The ticket's state change of a completion, conditional on holding
    /// its claim (or, without a token, on nobody holding a live one).
    fn completion_update(
        &self,
        done: &Completion,
        now: &AttributeValue,
        day: &AttributeValue,
        completed: DateTime<Utc>,
        expires: &AttributeValue,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut values: Item = HashMap::from([
            (":done".to_owned(), s("done")),
            (":outcome".to_owned(), s(done.outcome.as_str())),
            (":conf".to_owned(), n(done.confidence)),
            (
                ":notified".to_owned(),
                AttributeValue::Bool(!done.needs_notification),
            ),
            (":usage".to_owned(), to_json(&done.usage)),
            (":now".to_owned(), now.clone()),
            (":day".to_owned(), day.clone()),
            (":cid".to_owned(), s(done.conversation_id.to_string())),
            (":tid".to_owned(), s(done.ticket_id.to_string())),
            (":exp".to_owned(), expires.clone()),
            (":zero".to_owned(), n(0)),
        ]);
        let mut expr = String::from(
            "SET #state = :done, outcome = :outcome, confidence = :conf, notified = :notified, \
             #usage = :usage, completed_at = :now, done_day = :day, conversation_id = :cid, \
             ticket_id = :tid, received_at = if_not_exists(received_at, :now), \
             attempts = if_not_exists(attempts, :zero), expires_at = :exp",
        );
        match done.reason {
            Some(r) => {
                expr.push_str(", reason = :reason REMOVE claim_token, lease_until");
                values.insert(":reason".into(), s(r.as_str()));
            }
            None => expr.push_str(" REMOVE claim_token, lease_until, reason"),
        }
        values.insert(":claimed".into(), s("claimed"));
        let condition = match done.token {
            Some(t) => {
                values.insert(":tok".into(), s(t.0.to_string()));
                "#state = :claimed AND claim_token = :tok"
            }
            // Without a token only an unheld ticket: a live lease's
            // holder may still answer, and its answer wins.
            None => {
                values.insert(":nowms".into(), n(completed.timestamp_millis()));
                "attribute_not_exists(pk) OR (#state = :claimed AND \
                 (attribute_not_exists(lease_until) OR lease_until <= :nowms))"
            }
        };
        Ok(TransactWriteItem::builder()
            .update(build(
                Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(ticket_pk(done.ticket_id), "STATE")))
                    .update_expression(expr)
                    .condition_expression(condition)
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_names("#usage", "usage")
                    .set_expression_attribute_values(Some(values))
                    .build(),
            )?)
            .build())
    }
}
