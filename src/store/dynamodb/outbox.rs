//! Outbox records in the DynamoDB table.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | outbox record | `OUTBOX#<id>` | `STATE` (delivery JSON, state, attempts, lease) |
//!
//! A record still to be sent or reviewed also carries `due_pk = "OUTBOX"`
//! and `due_sk = "<epoch ms, 13 digits>#<id>"` (the next attempt, or the
//! lease's end while one is held): the sparse index `due` over them lists
//! what is due with one query, and delivered or failed records leave it.
//! Every change is a conditional update on the lease token, so two
//! dispatchers never both settle one record. Records are created by the
//! completion's transaction ([`super::DynamoStore`]'s `complete`); the
//! table's stream (keys only) feeds the AWS dispatcher.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};

use super::{DynamoStore, Item, corrupt, get_n, get_s, json, key, n, s, sdk_error, time, to_json};
use crate::domain::{NewOutbox, OutboxRecord, OutboxState};
use crate::store::{ClaimToken, OutboxClaim, OutboxStore, Settle, StoreError};

/// The sparse index of records still to be sent or reviewed.
pub const DUE_INDEX: &str = "due";
const DUE_PK: &str = "OUTBOX";

/// The partition key of record `id`.
pub fn outbox_pk(id: &str) -> String {
    format!("OUTBOX#{id}")
}

fn due_sk(at_ms: i64, id: &str) -> AttributeValue {
    s(format!("{:013}#{id}", at_ms.max(0)))
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn record_from(item: &Item) -> Result<OutboxRecord, StoreError> {
    Ok(OutboxRecord {
        id: get_s(item, "id").ok_or_else(|| corrupt("id"))?.to_owned(),
        delivery: json(item, "delivery")?,
        state: super::parse(item, "state")?,
        attempts: get_n(item, "attempts").unwrap_or(0),
        next_attempt_at: DateTime::from_timestamp_millis(get_n(item, "next_at").unwrap_or(0))
            .unwrap_or_default(),
        last_error: get_s(item, "last_error").map(str::to_owned),
        external_id: get_s(item, "external_id").map(str::to_owned),
        delivered_at: time(item, "delivered_at").ok(),
        review: get_s(item, "review").and_then(|r| serde_json::from_str(r).ok()),
        created_at: time(item, "created_at")?,
    })
}

impl DynamoStore {
    /// The item a new outbox record is stored as (pending, due now). The
    /// completion puts it on condition its key is free: one already stored
    /// (same id) is left as it is.
    pub(super) fn new_outbox_item(&self, new: &NewOutbox) -> Item {
        let now = Utc::now();
        let mut item = key(s(outbox_pk(&new.id)), "STATE");
        item.insert("id".into(), s(&new.id));
        item.insert("kind".into(), s("outbox"));
        item.insert("ticket_id".into(), s(new.delivery.ticket_id.to_string()));
        item.insert(
            "conversation_id".into(),
            s(new.delivery.conversation_id.to_string()),
        );
        item.insert("provider".into(), s(new.delivery.provider.as_str()));
        item.insert("delivery".into(), to_json(&new.delivery));
        item.insert("state".into(), s(OutboxState::Pending.as_str()));
        item.insert("attempts".into(), n(0));
        item.insert("next_at".into(), n(millis(now)));
        item.insert("due_pk".into(), s(DUE_PK));
        item.insert("due_sk".into(), due_sk(millis(now), &new.id));
        item.insert("created_at".into(), s(now.to_rfc3339()));
        item.insert("expires_at".into(), self.expires_at());
        item
    }

    async fn outbox_item(&self, id: &str) -> Result<Option<Item>, StoreError> {
        self.get(key(s(outbox_pk(id)), "STATE")).await
    }
}

fn conditional_failed<E: aws_smithy_types::error::metadata::ProvideErrorMetadata>(
    e: &aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> bool {
    e.as_service_error()
        .and_then(|x| x.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

#[async_trait]
impl OutboxStore for DynamoStore {
    async fn claim_outbox(&self, id: &str, lease: Duration) -> Result<OutboxClaim, StoreError> {
        let Some(item) = self.outbox_item(id).await? else {
            return Ok(OutboxClaim::Missing);
        };
        let record = record_from(&item)?;
        let now = millis(Utc::now());
        let lease_until: Option<i64> = get_n(&item, "lease_until").filter(|u| *u > now);
        let next_at: i64 = get_n(&item, "next_at").unwrap_or(0);
        let counts = match record.state {
            OutboxState::Delivered | OutboxState::Failed => {
                return Ok(OutboxClaim::Finished(Box::new(record)));
            }
            _ if lease_until.is_some() => {
                return Ok(OutboxClaim::Busy(
                    DateTime::from_timestamp_millis(lease_until.unwrap_or(now)).unwrap_or_default(),
                ));
            }
            OutboxState::Delivering => true,
            OutboxState::Pending | OutboxState::Reviewing if next_at > now => {
                return Ok(OutboxClaim::NotDue(
                    DateTime::from_timestamp_millis(next_at).unwrap_or_default(),
                ));
            }
            OutboxState::Pending => true,
            OutboxState::Reviewing => false,
        };
        let token = ClaimToken::new();
        let until = now.saturating_add(lease.as_millis() as i64);
        let new_state = if counts {
            OutboxState::Delivering
        } else {
            OutboxState::Reviewing
        };
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(s(outbox_pk(id)), "STATE")))
            .update_expression(
                "SET #state = :new, lease_until = :until, lease_token = :tok, due_sk = :due, \
                 updated_at = :at ADD attempts :inc",
            )
            .condition_expression(
                "#state = :old AND (attribute_not_exists(lease_until) OR lease_until <= :now) \
                 AND (#state = :delivering OR next_at <= :now)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":new", s(new_state.as_str()))
            .expression_attribute_values(":old", s(record.state.as_str()))
            .expression_attribute_values(":delivering", s(OutboxState::Delivering.as_str()))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":tok", s(token.0.to_string()))
            .expression_attribute_values(":due", due_sk(until, id))
            .expression_attribute_values(":at", s(Utc::now().to_rfc3339()))
            .expression_attribute_values(":inc", n(i32::from(counts)))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(o) => Ok(OutboxClaim::Acquired {
                token,
                record: Box::new(record_from(&o.attributes.unwrap_or_default())?),
            }),
            // Someone else claimed it between the read and the write.
            Err(e) if conditional_failed(&e) => Ok(OutboxClaim::Busy(
                DateTime::from_timestamp_millis(until).unwrap_or_default(),
            )),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    async fn settle_outbox(
        &self,
        id: &str,
        token: ClaimToken,
        settle: Settle,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let mut set: Vec<&str> = vec!["updated_at = :at"];
        let mut remove: Vec<&str> = vec!["lease_until", "lease_token"];
        let mut values: Item = HashMap::from([
            (":at".to_owned(), s(now.to_rfc3339())),
            (":tok".to_owned(), s(token.0.to_string())),
        ]);
        let state = |st: OutboxState, values: &mut Item, set: &mut Vec<&str>| {
            set.push("#state = :state");
            values.insert(":state".into(), s(st.as_str()));
        };
        let leave_index = |remove: &mut Vec<&str>| remove.extend(["due_pk", "due_sk"]);
        match settle {
            Settle::Delivered {
                external_id,
                review_at,
            } => {
                set.push("delivered_at = :at");
                remove.push("last_error");
                if let Some(x) = external_id {
                    set.push("external_id = :ext");
                    values.insert(":ext".into(), s(x));
                }
                match review_at {
                    Some(at) => {
                        state(OutboxState::Reviewing, &mut values, &mut set);
                        set.extend(["next_at = :next", "due_sk = :due"]);
                        values.insert(":next".into(), n(millis(at)));
                        values.insert(":due".into(), due_sk(millis(at), id));
                    }
                    None => {
                        state(OutboxState::Delivered, &mut values, &mut set);
                        leave_index(&mut remove);
                    }
                }
            }
            Settle::Retry { error, at } => {
                state(OutboxState::Pending, &mut values, &mut set);
                set.extend(["last_error = :err", "next_at = :next", "due_sk = :due"]);
                values.insert(":err".into(), s(error));
                values.insert(":next".into(), n(millis(at)));
                values.insert(":due".into(), due_sk(millis(at), id));
            }
            Settle::Failed { error } => {
                state(OutboxState::Failed, &mut values, &mut set);
                set.push("last_error = :err");
                values.insert(":err".into(), s(error));
                leave_index(&mut remove);
            }
            Settle::Reviewed(review) => {
                state(OutboxState::Delivered, &mut values, &mut set);
                set.push("review = :review");
                values.insert(":review".into(), to_json(&review));
                leave_index(&mut remove);
            }
            Settle::ReviewLater { at } => {
                set.extend(["next_at = :next", "due_sk = :due"]);
                values.insert(":next".into(), n(millis(at)));
                values.insert(":due".into(), due_sk(millis(at), id));
            }
        }
        let uses_state = values.contains_key(":state");
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(s(outbox_pk(id)), "STATE")))
            .update_expression(format!(
                "SET {} REMOVE {}",
                set.join(", "),
                remove.join(", ")
            ))
            .condition_expression("lease_token = :tok")
            .set_expression_attribute_values(Some(values));
        if uses_state {
            req = req.expression_attribute_names("#state", "state");
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    async fn due_outbox(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let upper = format!("{:013}$", millis(Utc::now()));
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("due_pk = :pk AND due_sk <= :upper")
            .expression_attribute_values(":pk", s(DUE_PK))
            .expression_attribute_values(":upper", s(upper))
            .limit(limit.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        Ok(out
            .items()
            .iter()
            .filter_map(|i| get_s(i, "pk"))
            .filter_map(|pk| pk.strip_prefix("OUTBOX#"))
            .map(str::to_owned)
            .collect())
    }

    async fn outbox_record(&self, id: &str) -> Result<Option<OutboxRecord>, StoreError> {
        self.outbox_item(id)
            .await?
            .map(|i| record_from(&i))
            .transpose()
    }
}
