//! The store in one DynamoDB table (PAY_PER_REQUEST), keyed `pk`/`sk`:
//!
//! | item | pk | sk |
//! |---|---|---|
//! | conversation | `CONV#<id>` | `META` (status, customer, `seq` = last message) |
//! | message | `CONV#<id>` | `MSG#<seq, 12 digits>` |
//! | message-id marker | `CONV#<id>` | `MSGID#<message id>` (makes appends idempotent) |
//! | ticket state | `TICKET#<id>` | `STATE` (claim, lease, outcome, usage) |
//! | outbox record | `OUTBOX#<id>` | `STATE` (see [`outbox`](self::outbox)) |
//! | seen token, rate count | `SEEN#…`, `RATE#…` | see [`guards`](self::guards) |
//!
//! A finished ticket also carries `done_day` (`YYYY-MM-DD`, UTC) and
//! `completed_at`, the keys of the sparse index [`DONE_INDEX`]: stats and
//! cost accounting list a period's tickets with one query a day instead of
//! a scan. A re-claimed (redriven) ticket loses `completed_at` and so
//! leaves the index until it finishes again.
//!
//! Every item carries `expires_at` (epoch seconds) for the table's TTL.
//! Appends are one transaction: bump the conversation's `seq` on condition
//! it is still what was read, put the message at the new seq, put the
//! message-id marker on condition it is new — so messages are gap-free,
//! ordered by commit, and a retried append writes nothing twice. A ticket's
//! completion adds its conditional state change to the same transaction, so
//! a duplicate delivery can never write a second reply, and its outbox
//! records (the deliveries the reply owes its channel) join the same
//! transaction.
//!
//! The worker's two steps, `begin` (claim + customer message + the
//! conversation's state) and the completion, are one transaction each with
//! no read before it: each asserts what it assumes and learns the truth
//! from the cancellation when it was wrong ([`floor`]).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};
use chrono::{DateTime, Utc};

use super::{
    Begin, Claim, ClaimToken, Completed, Completion, Page, Store, StoreError, TicketRecord,
};
use crate::domain::{
    Conversation, ConversationId, ConversationStatus, Message, NewMessage, NewOutbox, Outcome,
    ReasonCode, Ticket, TicketId,
};

mod floor;
pub mod guards;
pub mod outbox;
mod people;

type Item = HashMap<String, AttributeValue>;

/// The global secondary index of finished tickets by completion day
/// (`infra/template.yaml`).
pub const DONE_INDEX: &str = "by_done_day";

/// Optimistic-concurrency retries of an append that lost a race on `seq`.
const APPEND_RETRIES: usize = 8;

/// [`Store`] over a DynamoDB table.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    retention: Duration,
    /// What this process last saw of each conversation (see [`floor`]).
    hints: std::sync::Arc<floor::Hints>,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn conv_pk(id: ConversationId) -> AttributeValue {
    s(format!("CONV#{id}"))
}

fn ticket_pk(id: TicketId) -> AttributeValue {
    s(format!("TICKET#{id}"))
}

fn msg_sk(seq: u64) -> String {
    format!("MSG#{seq:012}")
}

fn key(pk: AttributeValue, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), pk), ("sk".to_owned(), s(sk))])
}

fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n<T: std::str::FromStr>(item: &Item, k: &str) -> Option<T> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Permanent(anyhow::anyhow!("stored item is malformed: {what}"))
}

fn parse<T: std::str::FromStr>(item: &Item, k: &str) -> Result<T, StoreError> {
    get_s(item, k)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt(k))
}

fn time(item: &Item, k: &str) -> Result<DateTime<Utc>, StoreError> {
    get_s(item, k)
        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| corrupt(k))
}

fn json<T: serde::de::DeserializeOwned>(item: &Item, k: &str) -> Result<T, StoreError> {
    get_s(item, k)
        .and_then(|v| serde_json::from_str(v).ok())
        .ok_or_else(|| corrupt(k))
}

fn to_json(v: &impl serde::Serialize) -> AttributeValue {
    s(serde_json::to_string(v).unwrap_or_else(|_| "null".into()))
}

fn sdk_error<E: crate::aws::ServiceError, R: crate::aws::RawResponse>(
    op: &str,
    err: crate::aws::SdkError<E, R>,
) -> StoreError {
    crate::aws::failure("DynamoDB", op, err).into()
}

fn build<T>(r: Result<T, aws_smithy_types::error::operation::BuildError>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Permanent(anyhow::anyhow!("building a DynamoDB request: {e}")))
}

/// Why a transaction was cancelled, item by item (`None` where it was not).
fn cancellation_codes(
    err: &aws_smithy_runtime_api::client::result::SdkError<
        TransactWriteItemsError,
        aws_smithy_runtime_api::http::Response,
    >,
) -> Option<Vec<Option<String>>> {
    match err.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(e) => Some(
            e.cancellation_reasons()
                .iter()
                .map(|r| r.code().filter(|c| *c != "None").map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}

/// Each item's cancellation code (`None` where it was not cancelled) and,
/// for a failed condition that asked for it, the item as it was.
fn cancellation_reasons(
    err: &aws_smithy_runtime_api::client::result::SdkError<
        TransactWriteItemsError,
        aws_smithy_runtime_api::http::Response,
    >,
) -> Option<Vec<(Option<String>, Option<Item>)>> {
    match err.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(e) => Some(
            e.cancellation_reasons()
                .iter()
                .map(|r| {
                    (
                        r.code().filter(|c| *c != "None").map(str::to_owned),
                        r.item().cloned(),
                    )
                })
                .collect(),
        ),
        _ => None,
    }
}

fn message_from(item: &Item) -> Result<Message, StoreError> {
    Ok(Message {
        seq: get_n(item, "seq").ok_or_else(|| corrupt("seq"))?,
        body: NewMessage {
            id: get_s(item, "id").ok_or_else(|| corrupt("id"))?.to_owned(),
            role: parse(item, "role")?,
            text: get_s(item, "text").unwrap_or_default().to_owned(),
            sources: json(item, "sources")?,
            ticket_id: get_s(item, "ticket_id").and_then(|t| t.parse().ok()),
            created_at: time(item, "created_at")?,
        },
    })
}

fn conversation_from(id: ConversationId, item: &Item) -> Result<Option<Conversation>, StoreError> {
    // A META item holding only `seq` was made by a bare append: no
    // conversation has been claimed yet.
    if get_s(item, "status").is_none() {
        return Ok(None);
    }
    Ok(Some(Conversation {
        id,
        provider: parse(item, "provider")?,
        status: parse(item, "status")?,
        escalation_reason: get_s(item, "escalation_reason").and_then(|r| r.parse().ok()),
        customer: json(item, "customer")?,
        subject: get_s(item, "subject").map(str::to_owned),
        created_at: time(item, "created_at")?,
        updated_at: time(item, "updated_at")?,
        reply_route: match get_s(item, "reply_route") {
            Some(r) => Some(serde_json::from_str(r).map_err(|_| corrupt("reply_route"))?),
            None => None,
        },
    }))
}

fn ticket_from(item: &Item) -> Result<TicketRecord, StoreError> {
    Ok(TicketRecord {
        ticket_id: parse(item, "ticket_id")?,
        conversation_id: parse(item, "conversation_id")?,
        outcome: parse(item, "outcome")?,
        reason: get_s(item, "reason").and_then(|r| r.parse().ok()),
        confidence: get_n(item, "confidence").unwrap_or(0.0),
        notified: item
            .get("notified")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(true),
        usage: get_s(item, "usage")
            .and_then(|u| serde_json::from_str(u).ok())
            .unwrap_or_default(),
        attempts: get_n(item, "attempts").unwrap_or(0),
        received_at: time(item, "received_at")?,
        completed_at: time(item, "completed_at")?,
    })
}

/// The pieces of a message append inside a transaction.
struct Append {
    /// Update of the conversation's META item (seq bump, plus whatever the
    /// caller adds).
    set: Vec<String>,
    names: HashMap<String, String>,
    values: Item,
    condition: String,
    /// The message and its id marker.
    puts: Vec<TransactWriteItem>,
    seq: u64,
}

impl DynamoStore {
    /// A store over `table`, expiring items after `retention`.
    pub fn new(client: Client, table: impl Into<String>, retention: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            retention,
            hints: Default::default(),
        }
    }

    /// One `GetItem` of a key no item has (`WARMUP`/`WARMUP`), for a cold
    /// start: the first ticket then finds the connection open and the
    /// client's first-request set-up (credentials, endpoint, TLS connector)
    /// done. The answer, even an error, is of no interest.
    pub async fn warm_up(&self) {
        let _ = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(s("WARMUP"), "WARMUP")))
            .send()
            .await;
    }

    fn expires_at(&self) -> AttributeValue {
        n(Utc::now().timestamp() + self.retention.as_secs() as i64)
    }

    async fn get(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item)
    }

    async fn current_seq(&self, conv: ConversationId) -> Result<u64, StoreError> {
        Ok(self
            .get(key(conv_pk(conv), "META"))
            .await?
            .and_then(|i| get_n(&i, "seq"))
            .unwrap_or(0))
    }

    async fn message_with_id(
        &self,
        conv: ConversationId,
        id: &str,
    ) -> Result<Option<Message>, StoreError> {
        let Some(marker) = self.get(key(conv_pk(conv), &format!("MSGID#{id}"))).await? else {
            return Ok(None);
        };
        let seq: u64 = get_n(&marker, "seq").ok_or_else(|| corrupt("marker seq"))?;
        let item = self
            .get(key(conv_pk(conv), &msg_sk(seq)))
            .await?
            .ok_or_else(|| corrupt("marker without message"))?;
        message_from(&item).map(Some)
    }

    /// The META update and puts that append `m` at `current + 1`.
    fn append_parts(
        &self,
        conv: ConversationId,
        m: &NewMessage,
        current: u64,
    ) -> Result<Append, StoreError> {
        let seq = current + 1;
        let (msg, marker) = self.message_items(conv, m, seq, &self.expires_at());
        let put = |item: Item| -> Result<TransactWriteItem, StoreError> {
            Ok(TransactWriteItem::builder()
                .put(build(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(pk)")
                        .build(),
                )?)
                .build())
        };
        let condition = if current == 0 {
            "(attribute_not_exists(#seq) OR #seq = :cur)"
        } else {
            "#seq = :cur"
        };
        Ok(Append {
            set: vec!["#seq = :next".into(), "expires_at = :exp".into()],
            names: HashMap::from([("#seq".to_owned(), "seq".to_owned())]),
            values: HashMap::from([
                (":cur".to_owned(), n(current)),
                (":next".to_owned(), n(seq)),
                (":exp".to_owned(), self.expires_at()),
            ]),
            condition: condition.into(),
            puts: vec![put(msg)?, put(marker)?],
            seq,
        })
    }

    fn meta_update(
        &self,
        conv: ConversationId,
        set: Vec<String>,
        remove: Vec<String>,
        names: HashMap<String, String>,
        values: Item,
        condition: Option<String>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut expr = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        Ok(TransactWriteItem::builder()
            .update(build(
                Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(conv_pk(conv), "META")))
                    .update_expression(expr)
                    .set_condition_expression(condition)
                    .set_expression_attribute_names((!names.is_empty()).then_some(names))
                    .set_expression_attribute_values((!values.is_empty()).then_some(values))
                    .build(),
            )?)
            .build())
    }

    /// Status fields of a META update.
    fn status_parts(
        status: ConversationStatus,
        reason: Option<ReasonCode>,
        set: &mut Vec<String>,
        remove: &mut Vec<String>,
        names: &mut HashMap<String, String>,
        values: &mut Item,
    ) {
        set.push("#status = :status".into());
        set.push("updated_at = :now".into());
        names.insert("#status".into(), "status".into());
        values.insert(":status".into(), s(status.as_str()));
        values.insert(":now".into(), s(Utc::now().to_rfc3339()));
        match reason.filter(|_| status == ConversationStatus::Escalated) {
            Some(r) => {
                set.push("escalation_reason = :reason".into());
                values.insert(":reason".into(), s(r.as_str()));
            }
            None => remove.push("escalation_reason".into()),
        }
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn claim(&self, ticket: &Ticket, lease: Duration) -> Result<Claim, StoreError> {
        let now = Utc::now();
        // The conversation's META, created on first sight and left alone after.
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(conv_pk(ticket.conversation_id), "META")))
            .update_expression(
                "SET provider = if_not_exists(provider, :p), #status = if_not_exists(#status, :open), \
                 customer = if_not_exists(customer, :c), subject = if_not_exists(subject, :subj), \
                 thread = if_not_exists(thread, :t), created_at = if_not_exists(created_at, :now), \
                 updated_at = if_not_exists(updated_at, :now), #seq = if_not_exists(#seq, :zero), \
                 expires_at = :exp",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#seq", "seq")
            .expression_attribute_values(":p", s(ticket.provider.as_str()))
            .expression_attribute_values(":open", s(ConversationStatus::Open.as_str()))
            .expression_attribute_values(":c", to_json(&ticket.customer))
            .expression_attribute_values(
                ":subj",
                ticket.subject.as_ref().map_or(AttributeValue::Null(true), s),
            )
            .expression_attribute_values(":t", to_json(&ticket.thread))
            .expression_attribute_values(":now", s(now.to_rfc3339()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":exp", self.expires_at())
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem", e))?;

        let token = ClaimToken::new();
        let now_ms = now.timestamp_millis();
        let until = now_ms.saturating_add(lease.as_millis() as i64);
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(ticket_pk(ticket.ticket_id), "STATE")))
            .update_expression(
                "SET #state = :claimed, claim_token = :tok, lease_until = :until, \
                 ticket_id = :tid, conversation_id = :cid, received_at = if_not_exists(received_at, :rcv), \
                 expires_at = :exp ADD attempts :one REMOVE outcome, completed_at, done_day",
            )
            .condition_expression(
                "attribute_not_exists(pk) OR (#state = :claimed AND lease_until < :now) \
                 OR (#state = :done AND outcome = :dead)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":done", s("done"))
            .expression_attribute_values(":dead", s(Outcome::DeadLettered.as_str()))
            .expression_attribute_values(":tok", s(token.0.to_string()))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":tid", s(ticket.ticket_id.to_string()))
            .expression_attribute_values(":cid", s(ticket.conversation_id.to_string()))
            .expression_attribute_values(":rcv", s(ticket.received_at.to_rfc3339()))
            .expression_attribute_values(":exp", self.expires_at())
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match claimed {
            Ok(out) => {
                // The claimed ticket is the conversation's reply route.
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key(conv_pk(ticket.conversation_id), "META")))
                    .update_expression("SET reply_route = :route")
                    .expression_attribute_values(
                        ":route",
                        to_json(&crate::domain::ReplyRoute::of(ticket)),
                    )
                    .send()
                    .await
                    .map_err(|e| sdk_error("UpdateItem", e))?;
                let old = out.attributes.unwrap_or_default();
                let attempt = get_n::<u32>(&old, "attempts").unwrap_or(0) + 1;
                let redriven = get_s(&old, "state") == Some("done");
                Ok(Claim::Acquired {
                    token,
                    attempt,
                    redriven,
                })
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|x| x.is_conditional_check_failed_exception()) =>
            {
                let item = self
                    .get(key(ticket_pk(ticket.ticket_id), "STATE"))
                    .await?
                    .unwrap_or_default();
                if get_s(&item, "state") == Some("done") {
                    return Ok(Claim::Done(Box::new(ticket_from(&item)?)));
                }
                let until = get_n::<i64>(&item, "lease_until").unwrap_or(now_ms);
                Ok(Claim::Busy {
                    until: DateTime::from_timestamp_millis(until).unwrap_or(now),
                })
            }
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    async fn release(&self, ticket: TicketId, token: ClaimToken) -> Result<(), StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(ticket_pk(ticket), "STATE")))
            .update_expression("SET lease_until = :zero")
            .condition_expression("#state = :claimed AND claim_token = :tok")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":tok", s(token.0.to_string()))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|x| x.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    async fn append(
        &self,
        conversation: ConversationId,
        message: NewMessage,
    ) -> Result<Message, StoreError> {
        for _ in 0..APPEND_RETRIES {
            if let Some(existing) = self.message_with_id(conversation, &message.id).await? {
                return Ok(existing);
            }
            let current = self.current_seq(conversation).await?;
            let a = self.append_parts(conversation, &message, current)?;
            let mut items = vec![self.meta_update(
                conversation,
                a.set,
                vec![],
                a.names,
                a.values,
                Some(a.condition),
            )?];
            items.extend(a.puts);
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(_) => {
                    return Ok(Message {
                        seq: a.seq,
                        body: message,
                    });
                }
                Err(e) if cancellation_codes(&e).is_some() => continue, // lost a race; re-read
                Err(e) => return Err(sdk_error("TransactWriteItems", e)),
            }
        }
        Err(StoreError::Transient(format!(
            "append to {conversation} kept conflicting"
        )))
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        match self.get(key(conv_pk(id), "META")).await? {
            Some(item) => conversation_from(id, &item),
            None => Ok(None),
        }
    }

    async fn history(&self, id: ConversationId, limit: usize) -> Result<Vec<Message>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :msg)")
            .expression_attribute_values(":pk", conv_pk(id))
            .expression_attribute_values(":msg", s("MSG#"))
            .scan_index_forward(false)
            .limit(limit.clamp(1, 1000) as i32)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        let mut msgs = out
            .items()
            .iter()
            .map(message_from)
            .collect::<Result<Vec<_>, _>>()?;
        msgs.reverse();
        Ok(msgs)
    }

    async fn begin(
        &self,
        ticket: &Ticket,
        message: NewMessage,
        lease: Duration,
    ) -> Result<Begin, StoreError> {
        self.begin_ticket(ticket, &message, lease).await
    }

    async fn complete(&self, done: Completion) -> Result<Completed, StoreError> {
        self.complete_ticket(&done).await
    }

    async fn mark_notified(&self, ticket: TicketId) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(ticket_pk(ticket), "STATE")))
            .update_expression("SET notified = :t")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await
            .map(|_| ())
            .or_else(|e| {
                if e.as_service_error()
                    .is_some_and(|x| x.is_conditional_check_failed_exception())
                {
                    Ok(())
                } else {
                    Err(sdk_error("UpdateItem", e))
                }
            })
    }

    async fn messages_after(
        &self,
        id: ConversationId,
        after: u64,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let conversation = self.conversation(id).await?;
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", conv_pk(id))
            .expression_attribute_values(":from", s(msg_sk(after.saturating_add(1))))
            .expression_attribute_values(":to", s(msg_sk(999_999_999_999)))
            .limit(limit.clamp(1, 1000) as i32)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        let messages = out
            .items()
            .iter()
            .map(message_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            conversation,
            messages,
        })
    }

    async fn set_status(
        &self,
        id: ConversationId,
        status: ConversationStatus,
        reason: Option<ReasonCode>,
        message: Option<NewMessage>,
        outbox: Vec<NewOutbox>,
    ) -> Result<Conversation, StoreError> {
        // Records found stored by an earlier attempt (same ids) are left out.
        let mut stored = vec![false; outbox.len()];
        for _ in 0..APPEND_RETRIES {
            let (mut set, mut remove, mut names, mut values) =
                (Vec::new(), Vec::new(), HashMap::new(), HashMap::new());
            let mut puts = Vec::new();
            let mut condition = "attribute_exists(#status)".to_owned();
            if let Some(m) = &message
                && self.message_with_id(id, &m.id).await?.is_none()
            {
                let a = self.append_parts(id, m, self.current_seq(id).await?)?;
                set = a.set;
                names = a.names;
                values = a.values;
                condition = format!("{} AND attribute_exists(#status)", a.condition);
                puts = a.puts;
            }
            Self::status_parts(
                status,
                reason,
                &mut set,
                &mut remove,
                &mut names,
                &mut values,
            );
            let mut items =
                vec![self.meta_update(id, set, remove, names, values, Some(condition))?];
            items.extend(puts);
            // Which item is which outbox record, to read a cancellation.
            let mut records = Vec::new();
            for (i, new) in outbox.iter().enumerate() {
                if !stored[i] {
                    records.push((items.len(), i));
                    items.push(self.put_new(self.new_outbox_item(new))?);
                }
            }
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(_) => {
                    return self
                        .conversation(id)
                        .await?
                        .ok_or_else(|| StoreError::NotFound(format!("no conversation {id}")));
                }
                Err(e) => match cancellation_reasons(&e) {
                    Some(reasons) => {
                        let mut known = false;
                        for (at, i) in &records {
                            if reasons.get(*at).and_then(|r| r.0.as_deref())
                                == Some("ConditionalCheckFailed")
                            {
                                stored[*i] = true;
                                known = true;
                            }
                        }
                        if !known && self.conversation(id).await?.is_none() {
                            return Err(StoreError::NotFound(format!("no conversation {id}")));
                        }
                        continue;
                    }
                    None => return Err(sdk_error("TransactWriteItems", e)),
                },
            }
        }
        Err(StoreError::Transient(format!(
            "updating {id} kept conflicting"
        )))
    }

    async fn ticket(&self, id: TicketId) -> Result<Option<TicketRecord>, StoreError> {
        match self.get(key(ticket_pk(id), "STATE")).await? {
            Some(item) if get_s(&item, "state") == Some("done") => ticket_from(&item).map(Some),
            _ => Ok(None),
        }
    }

    async fn tickets_since(&self, since: DateTime<Utc>) -> Result<Vec<TicketRecord>, StoreError> {
        let from = since.to_rfc3339();
        let mut out = Vec::new();
        let mut day = since.date_naive();
        let today = Utc::now().date_naive();
        while day <= today {
            let mut start: Option<Item> = None;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(DONE_INDEX)
                    .key_condition_expression("done_day = :day AND completed_at >= :from")
                    .expression_attribute_values(":day", s(day.format("%Y-%m-%d").to_string()))
                    .expression_attribute_values(":from", s(&from))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|e| sdk_error("Query", e))?;
                for item in page.items() {
                    out.push(ticket_from(item)?);
                }
                start = page.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
            day = day.succ_opt().unwrap_or(today + chrono::Days::new(1));
        }
        Ok(out)
    }
}
