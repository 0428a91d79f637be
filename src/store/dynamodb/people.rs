//! Agents' and customers' additions in the one DynamoDB table, under the
//! conversation's partition beside its messages (so they expire with it):
//!
//! | item | pk | sk |
//! |---|---|---|
//! | bot draft | `CONV#<id>` | `DRAFT` (the draft as JSON) |
//! | assignment | `CONV#<id>` | `ASSIGNEE` (`agent`) |
//! | internal note | `CONV#<id>` | `NOTE#<note id>` (put on condition it is new) |
//! | rating | `CONV#<id>` | `FEEDBACK#<message id>` |
//! | satisfaction | `CONV#<id>` | `CSAT` (`score`, `at`) |
//!
//! | session generation | `AGENT#<name>` | `SESSIONS` (`generation`; no `expires_at`: never expired, see [`PeopleStore`]) |
//!
//! The message reads (`MSG#` prefixes and ranges) never see these items.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{DynamoStore, Item, conv_pk, get_s, json, key, parse, s, sdk_error, time, to_json};
use crate::domain::ConversationId;
use crate::store::StoreError;
use crate::store::people::{Csat, Draft, Feedback, Note, PeopleStore};

impl DynamoStore {
    async fn put(&self, item: Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        Ok(())
    }

    /// Every item of the conversation whose sort key starts with `prefix`.
    async fn prefixed(&self, id: ConversationId, prefix: &str) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                .expression_attribute_values(":pk", conv_pk(id))
                .expression_attribute_values(":p", s(prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            out.extend(page.items().iter().cloned());
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    fn item(&self, id: ConversationId, sk: &str, fields: Vec<(&str, AttributeValue)>) -> Item {
        let mut item = key(conv_pk(id), sk);
        item.insert("expires_at".into(), self.expires_at());
        item.extend(fields.into_iter().map(|(k, v)| (k.to_owned(), v)));
        item
    }
}

fn note_from(item: &Item) -> Result<Note, StoreError> {
    Ok(Note {
        id: get_s(item, "id").unwrap_or_default().to_owned(),
        agent: get_s(item, "agent").unwrap_or_default().to_owned(),
        text: get_s(item, "text").unwrap_or_default().to_owned(),
        created_at: time(item, "created_at")?,
    })
}

fn feedback_from(item: &Item) -> Result<Feedback, StoreError> {
    Ok(Feedback {
        conversation_id: parse(item, "conversation_id")?,
        message_id: get_s(item, "message_id").unwrap_or_default().to_owned(),
        rating: parse(item, "rating")?,
        reason: match get_s(item, "reason") {
            Some(_) => Some(parse(item, "reason")?),
            None => None,
        },
        at: time(item, "at")?,
    })
}

#[async_trait]
impl PeopleStore for DynamoStore {
    async fn keep_draft(&self, id: ConversationId, draft: Draft) -> Result<(), StoreError> {
        self.put(self.item(id, "DRAFT", vec![("draft", to_json(&draft))]))
            .await
    }

    async fn draft(&self, id: ConversationId) -> Result<Option<Draft>, StoreError> {
        match self.get(key(conv_pk(id), "DRAFT")).await? {
            Some(item) => json(&item, "draft").map(Some),
            None => Ok(None),
        }
    }

    async fn add_note(&self, id: ConversationId, note: Note) -> Result<Note, StoreError> {
        let sk = format!("NOTE#{}", note.id);
        let item = self.item(
            id,
            &sk,
            vec![
                ("id", s(&note.id)),
                ("agent", s(&note.agent)),
                ("text", s(&note.text)),
                ("created_at", s(note.created_at.to_rfc3339())),
            ],
        );
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(note),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                let stored = self
                    .get(key(conv_pk(id), &sk))
                    .await?
                    .ok_or_else(|| StoreError::Transient(format!("note {sk} vanished")))?;
                note_from(&stored)
            }
            Err(e) => Err(sdk_error("PutItem", e)),
        }
    }

    async fn notes(&self, id: ConversationId) -> Result<Vec<Note>, StoreError> {
        let mut notes = self
            .prefixed(id, "NOTE#")
            .await?
            .iter()
            .map(note_from)
            .collect::<Result<Vec<_>, _>>()?;
        notes.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(notes)
    }

    async fn assign(&self, id: ConversationId, agent: Option<&str>) -> Result<(), StoreError> {
        match agent {
            Some(a) => {
                self.put(self.item(id, "ASSIGNEE", vec![("agent", s(a))]))
                    .await
            }
            None => {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(key(conv_pk(id), "ASSIGNEE")))
                    .send()
                    .await
                    .map_err(|e| sdk_error("DeleteItem", e))?;
                Ok(())
            }
        }
    }

    async fn assignee(&self, id: ConversationId) -> Result<Option<String>, StoreError> {
        Ok(self
            .get(key(conv_pk(id), "ASSIGNEE"))
            .await?
            .and_then(|i| get_s(&i, "agent").map(str::to_owned)))
    }

    async fn rate(&self, f: Feedback) -> Result<(), StoreError> {
        let mut fields = vec![
            ("conversation_id", s(f.conversation_id.to_string())),
            ("message_id", s(&f.message_id)),
            ("rating", s(f.rating.as_str())),
            ("at", s(f.at.to_rfc3339())),
        ];
        if let Some(r) = f.reason {
            fields.push(("reason", s(r.as_str())));
        }
        let sk = format!("FEEDBACK#{}", f.message_id);
        self.put(self.item(f.conversation_id, &sk, fields)).await
    }

    async fn ratings(&self, id: ConversationId) -> Result<Vec<Feedback>, StoreError> {
        let mut all = self
            .prefixed(id, "FEEDBACK#")
            .await?
            .iter()
            .map(feedback_from)
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by(|a, b| (a.at, &a.message_id).cmp(&(b.at, &b.message_id)));
        Ok(all)
    }

    async fn set_csat(&self, c: Csat) -> Result<(), StoreError> {
        let fields = vec![("score", super::n(c.score)), ("at", s(c.at.to_rfc3339()))];
        self.put(self.item(c.conversation_id, "CSAT", fields)).await
    }

    async fn session_generation(&self, agent: &str) -> Result<u64, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(s(format!("AGENT#{agent}")), "SESSIONS")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?
            .item;
        Ok(item
            .and_then(|i| super::get_n::<u64>(&i, "generation"))
            .unwrap_or(0))
    }

    async fn end_sessions(&self, agent: &str) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(s(format!("AGENT#{agent}")), "SESSIONS")))
            .update_expression("ADD generation :one")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem", e))?;
        out.attributes
            .as_ref()
            .and_then(|a| super::get_n::<u64>(a, "generation"))
            .ok_or_else(|| super::corrupt("session generation"))
    }

    async fn csat(&self, id: ConversationId) -> Result<Option<Csat>, StoreError> {
        match self.get(key(conv_pk(id), "CSAT")).await? {
            Some(item) => Ok(Some(Csat {
                conversation_id: id,
                score: super::get_n(&item, "score").ok_or_else(|| super::corrupt("score"))?,
                at: time(&item, "at")?,
            })),
            None => Ok(None),
        }
    }
}
