//! One-time tokens and per-conversation rate counts in the DynamoDB table:
//!
//! | item | pk | sk |
//! |---|---|---|
//! | seen token | `SEEN#<scope>#<sha256(token)>` | `TOKEN` (message digest) |
//! | rate count | `RATE#<conversation id>` | `MIN#<epoch minute>` (`n`) |
//!
//! Both are single conditional writes, so they hold across Lambda
//! instances, and both carry `expires_at` for the table's TTL. TTL deletes
//! lazily (up to days late), so an expired token is treated as absent by
//! the condition itself, and a rate count is keyed by its minute.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use chrono::{DateTime, Utc};

use super::{DynamoStore, get_n, get_s, key, n, s, sdk_error};
use crate::domain::ConversationId;
use crate::store::StoreError;
use crate::store::guards::{Admission, ConversationLimiter, ReplayGuard, TokenUse, token_key};

/// How long a rate count outlives its minute (only for the TTL).
const RATE_ITEM_GRACE_SECS: i64 = 120;

#[async_trait]
impl ReplayGuard for DynamoStore {
    async fn use_token(
        &self,
        scope: &str,
        token: &str,
        digest: [u8; 32],
        until: DateTime<Utc>,
    ) -> Result<TokenUse, StoreError> {
        let digest = hex::encode(digest);
        let mut item = key(s(format!("SEEN#{}", token_key(scope, token))), "TOKEN");
        item.insert("digest".into(), s(&digest));
        item.insert("expires_at".into(), n(until.timestamp()));
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now OR digest = :d")
            .expression_attribute_values(":now", n(Utc::now().timestamp()))
            .expression_attribute_values(":d", s(&digest))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match out {
            Ok(out) => {
                let old = out.attributes.unwrap_or_default();
                let live = get_n::<i64>(&old, "expires_at")
                    .is_some_and(|exp| exp >= Utc::now().timestamp());
                Ok(if live && get_s(&old, "digest") == Some(digest.as_str()) {
                    TokenUse::Retry
                } else {
                    TokenUse::First
                })
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|x| x.is_conditional_check_failed_exception()) =>
            {
                Ok(TokenUse::Reused)
            }
            Err(e) => Err(sdk_error("PutItem", e)),
        }
    }
}

/// A per-conversation limit of `per_minute` posted messages in each
/// calendar minute, counted in the table: one conditional `ADD` per
/// message, refused once the minute's count reached the limit. (A fixed
/// window: a burst can straddle two minutes, so at most twice the limit
/// passes in any 60 s — enough to stop a flood, and one write a message.)
#[derive(Clone)]
pub struct DynamoConversationLimiter {
    store: DynamoStore,
    per_minute: u32,
}

impl DynamoConversationLimiter {
    /// A limiter over `store`'s table.
    pub fn new(store: DynamoStore, per_minute: u32) -> Self {
        Self { store, per_minute }
    }
}

#[async_trait]
impl ConversationLimiter for DynamoConversationLimiter {
    async fn admit(&self, conversation: ConversationId) -> Result<Admission, StoreError> {
        let now = Utc::now().timestamp();
        let minute = now.div_euclid(60);
        let out = self
            .store
            .client
            .update_item()
            .table_name(&self.store.table)
            .set_key(Some(key(
                s(format!("RATE#{conversation}")),
                &format!("MIN#{minute}"),
            )))
            .update_expression("ADD #n :one SET expires_at = :exp")
            .condition_expression("attribute_not_exists(#n) OR #n < :limit")
            .expression_attribute_names("#n", "n")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(self.per_minute))
            .expression_attribute_values(":exp", n((minute + 1) * 60 + RATE_ITEM_GRACE_SECS))
            .send()
            .await;
        match out {
            Ok(_) => Ok(Admission::Allowed),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|x| x.is_conditional_check_failed_exception()) =>
            {
                let left = (minute + 1) * 60 - now;
                Ok(Admission::Limited {
                    retry_after: Duration::from_secs(left.clamp(1, 60) as u64),
                })
            }
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }
}
