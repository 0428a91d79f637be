//! The store in the local SQLite file. Its behaviour is the `Store`
//! contract in `tests/common/store_contract.rs`, run against it by
//! `tests/store/store_sqlite.rs` (and against DynamoDB by `tests/aws/aws_adapters.rs`).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::{
    Begin, Begun, Claim, ClaimToken, Completed, Completion, ConversationState, Page, Store,
    StoreError, TicketRecord,
};
use crate::domain::{
    Conversation, ConversationId, ConversationStatus, Message, NewMessage, NewOutbox, ReasonCode,
    ReplyRoute, Ticket, TicketId,
};
use crate::sqlite::{Db, DbError};

mod guards;
mod outbox;
pub(crate) mod people;

/// [`Store`] over the local SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    db: Db,
}

impl SqliteStore {
    /// A store in `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Every finished ticket completed at or after `since` (for stats, cost
    /// and the soak's invariant check).
    pub async fn tickets_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<TicketRecord>, StoreError> {
        let since = since.to_rfc3339();
        Ok(self
            .db
            .read(move |c| {
                let mut st = c.prepare(&format!(
                    "SELECT {TICKET_COLUMNS} FROM tickets WHERE state = 'done' AND completed_at >= ?1 \
                     ORDER BY completed_at"
                ))?;
                let rows = st.query_map([since], ticket_row)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?)
    }

    /// Expires every ticket lease. Only for start-up, when this process is
    /// the store's only writer and no lease can be live.
    pub async fn release_leases(&self) -> Result<u64, StoreError> {
        Ok(self
            .db
            .write(|c| {
                Ok(c.execute(
                    "UPDATE tickets SET lease_until = 0 WHERE state = 'claimed'",
                    [],
                )? as u64)
            })
            .await?)
    }

    /// Counts of tickets by state (`claimed`, `done`).
    pub async fn ticket_states(&self) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self
            .db
            .read(|c| {
                let mut st =
                    c.prepare("SELECT state, COUNT(*) FROM tickets GROUP BY state ORDER BY state")?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?)
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Busy(e) => StoreError::Transient(e.to_string()),
            DbError::Other(e) => StoreError::Permanent(e),
        }
    }
}

const TICKET_COLUMNS: &str = "ticket_id, conversation_id, outcome, reason, confidence, notified, \
                              usage, attempts, received_at, completed_at";

fn ticket_row(r: &Row<'_>) -> rusqlite::Result<TicketRecord> {
    Ok(TicketRecord {
        ticket_id: parse_col(r, 0)?,
        conversation_id: parse_col(r, 1)?,
        outcome: parse_col(r, 2)?,
        reason: r
            .get::<_, Option<String>>(3)?
            .map(|s| s.parse::<ReasonCode>())
            .transpose()
            .map_err(|e| conversion(3, e))?,
        confidence: r.get::<_, Option<f64>>(4)?.unwrap_or(0.0) as f32,
        notified: r.get::<_, Option<bool>>(5)?.unwrap_or(true),
        usage: json_col(r, 6)?,
        attempts: r.get(7)?,
        received_at: time_col(r, 8)?,
        completed_at: time_col(r, 9)?,
    })
}

fn conversation_row(r: &Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: parse_col(r, 0)?,
        provider: parse_col(r, 1)?,
        status: parse_col(r, 2)?,
        escalation_reason: r
            .get::<_, Option<String>>(3)?
            .map(|s| s.parse::<ReasonCode>())
            .transpose()
            .map_err(|e| conversion(3, e))?,
        customer: json_col(r, 4)?,
        subject: r.get(5)?,
        created_at: time_col(r, 6)?,
        updated_at: time_col(r, 7)?,
        reply_route: r
            .get::<_, Option<String>>(8)?
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| conversion(8, e))?,
    })
}

const CONVERSATION_COLUMNS: &str = "c.id, c.provider, c.status, c.escalation_reason, c.customer, \
     c.subject, c.created_at, c.updated_at, r.route";

fn message_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        seq: r.get(0)?,
        body: NewMessage {
            id: r.get(1)?,
            role: parse_col(r, 2)?,
            text: r.get(3)?,
            sources: json_col(r, 4)?,
            ticket_id: r
                .get::<_, Option<String>>(5)?
                .map(|s| TicketId::parse(&s))
                .transpose()
                .map_err(|e| conversion(5, e))?,
            created_at: time_col(r, 6)?,
        },
    })
}

const MESSAGE_COLUMNS: &str = "seq, id, role, text, sources, ticket_id, created_at";

fn conversion<E: std::error::Error + Send + Sync + 'static>(i: usize, e: E) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

fn parse_col<T>(r: &Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    r.get::<_, String>(i)?.parse().map_err(|e| conversion(i, e))
}

fn json_col<T: serde::de::DeserializeOwned>(r: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    serde_json::from_str(&r.get::<_, String>(i)?).map_err(|e| conversion(i, e))
}

fn time_col(r: &Row<'_>, i: usize) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&r.get::<_, String>(i)?)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| conversion(i, e))
}

/// Appends `m` with the conversation's next seq; a known id is left as is.
fn append_in(
    tx: &Transaction<'_>,
    conversation: ConversationId,
    m: &NewMessage,
) -> Result<Message, DbError> {
    let conv = conversation.to_string();
    tx.execute(
        "INSERT INTO messages (conversation_id, seq, id, role, text, sources, ticket_id, created_at)
         SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5, ?6, ?7
           FROM messages WHERE conversation_id = ?1
         ON CONFLICT (id) DO NOTHING",
        params![
            conv,
            m.id,
            m.role.as_str(),
            m.text,
            serde_json::to_string(&m.sources)?,
            m.ticket_id.map(|t| t.to_string()),
            m.created_at.to_rfc3339(),
        ],
    )?;
    Ok(tx.query_row(
        &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"),
        [&m.id],
        message_row,
    )?)
}

/// Takes (or re-takes) `ticket`'s lease inside `tx`, creating its
/// conversation on first sight (see [`Store::claim`]); once taken, the
/// ticket is the conversation's reply route.
fn claim_in(tx: &Transaction<'_>, ticket: &Ticket, lease_ms: i64) -> Result<Claim, DbError> {
    let claim = lease_in(tx, ticket, lease_ms)?;
    if matches!(claim, Claim::Acquired { .. }) {
        tx.execute(
            "INSERT INTO reply_routes (conversation_id, route) VALUES (?1, ?2)
             ON CONFLICT (conversation_id) DO UPDATE SET route = excluded.route",
            params![
                ticket.conversation_id.to_string(),
                serde_json::to_string(&ReplyRoute::of(ticket))?,
            ],
        )?;
    }
    Ok(claim)
}

fn lease_in(tx: &Transaction<'_>, ticket: &Ticket, lease_ms: i64) -> Result<Claim, DbError> {
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    tx.execute(
        "INSERT INTO conversations
               (id, provider, status, customer, subject, thread, created_at, updated_at)
             VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (id) DO NOTHING",
        params![
            ticket.conversation_id.to_string(),
            ticket.provider.as_str(),
            serde_json::to_string(&ticket.customer)?,
            ticket.subject,
            serde_json::to_string(&ticket.thread)?,
            now.to_rfc3339(),
        ],
    )?;
    let id = ticket.ticket_id.to_string();
    let row: Option<(String, Option<i64>, u32)> = tx
        .query_row(
            "SELECT state, lease_until, attempts FROM tickets WHERE ticket_id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let token = ClaimToken::new();
    Ok(match row {
        None => {
            tx.execute(
                "INSERT INTO tickets (ticket_id, conversation_id, state, claim_token,
                                          lease_until, attempts, received_at)
                     VALUES (?1, ?2, 'claimed', ?3, ?4, 1, ?5)",
                params![
                    id,
                    ticket.conversation_id.to_string(),
                    token.0.to_string(),
                    now_ms.saturating_add(lease_ms),
                    ticket.received_at.to_rfc3339(),
                ],
            )?;
            Claim::Acquired {
                token,
                attempt: 1,
                redriven: false,
            }
        }
        Some((state, _, attempts)) if state == "done" => {
            let redriven = tx.execute(
                "UPDATE tickets SET state = 'claimed', claim_token = ?2, lease_until = ?3,
                                        attempts = attempts + 1, outcome = NULL,
                                        reason = NULL, completed_at = NULL
                     WHERE ticket_id = ?1 AND outcome = 'dead_lettered'",
                params![id, token.0.to_string(), now_ms.saturating_add(lease_ms)],
            )? == 1;
            if redriven {
                return Ok(Claim::Acquired {
                    token,
                    attempt: attempts + 1,
                    redriven: true,
                });
            }
            let record = tx.query_row(
                &format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE ticket_id = ?1"),
                [&id],
                ticket_row,
            )?;
            Claim::Done(Box::new(record))
        }
        Some((_, Some(until), _)) if until > now_ms => Claim::Busy {
            until: DateTime::from_timestamp_millis(until).unwrap_or(now),
        },
        Some((_, _, attempts)) => {
            tx.execute(
                "UPDATE tickets SET claim_token = ?2, lease_until = ?3,
                                        attempts = attempts + 1
                     WHERE ticket_id = ?1",
                params![id, token.0.to_string(), now_ms.saturating_add(lease_ms)],
            )?;
            Claim::Acquired {
                token,
                attempt: attempts + 1,
                redriven: false,
            }
        }
    })
}

fn conversation_in(
    c: &rusqlite::Connection,
    id: ConversationId,
) -> Result<Option<Conversation>, DbError> {
    Ok(c.query_row(
        &format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c
               LEFT JOIN reply_routes r ON r.conversation_id = c.id WHERE c.id = ?1"
        ),
        [id.to_string()],
        conversation_row,
    )
    .optional()?)
}

#[async_trait]
impl Store for SqliteStore {
    async fn claim(&self, ticket: &Ticket, lease: Duration) -> Result<Claim, StoreError> {
        let ticket = ticket.clone();
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        Ok(self
            .db
            .write(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let claim = claim_in(&tx, &ticket, lease_ms)?;
                tx.commit()?;
                Ok(claim)
            })
            .await?)
    }

    async fn begin(
        &self,
        ticket: &Ticket,
        message: NewMessage,
        lease: Duration,
    ) -> Result<Begin, StoreError> {
        let ticket = ticket.clone();
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        Ok(self
            .db
            .write(move |c| {
                // One transaction: the claim, the message and the read land
                // together or not at all.
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let begin = match claim_in(&tx, &ticket, lease_ms)? {
                    Claim::Acquired {
                        token,
                        attempt,
                        redriven,
                    } => {
                        append_in(&tx, ticket.conversation_id, &message)?;
                        let (status, reason): (String, Option<String>) = tx.query_row(
                            "SELECT status, escalation_reason FROM conversations WHERE id = ?1",
                            [ticket.conversation_id.to_string()],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )?;
                        let bad = |e: String| DbError::Other(anyhow::anyhow!(e));
                        Begin::Acquired(Begun {
                            token,
                            attempt,
                            redriven,
                            state: ConversationState {
                                status: status.parse().map_err(|e| bad(format!("{e}")))?,
                                escalation_reason: reason.and_then(|r| r.parse().ok()),
                            },
                        })
                    }
                    Claim::Busy { until } => return Ok(Begin::Busy { until }),
                    Claim::Done(record) => return Ok(Begin::Done(record)),
                };
                tx.commit()?;
                Ok(begin)
            })
            .await?)
    }

    async fn release(&self, ticket: TicketId, token: ClaimToken) -> Result<(), StoreError> {
        Ok(self
            .db
            .write(move |c| {
                c.execute(
                    "UPDATE tickets SET lease_until = 0
                     WHERE ticket_id = ?1 AND claim_token = ?2 AND state = 'claimed'",
                    params![ticket.to_string(), token.0.to_string()],
                )?;
                Ok(())
            })
            .await?)
    }

    async fn append(
        &self,
        conversation: ConversationId,
        message: NewMessage,
    ) -> Result<Message, StoreError> {
        Ok(self
            .db
            .write(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let m = append_in(&tx, conversation, &message)?;
                tx.commit()?;
                Ok(m)
            })
            .await?)
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        Ok(self.db.read(move |c| conversation_in(c, id)).await?)
    }

    async fn history(&self, id: ConversationId, limit: usize) -> Result<Vec<Message>, StoreError> {
        Ok(self
            .db
            .read(move |c| {
                let mut st = c.prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1
                     ORDER BY seq DESC LIMIT ?2"
                ))?;
                let rows = st.query_map(params![id.to_string(), limit as i64], message_row)?;
                let mut out = rows.collect::<Result<Vec<_>, _>>()?;
                out.reverse();
                Ok(out)
            })
            .await?)
    }

    async fn complete(&self, done: Completion) -> Result<Completed, StoreError> {
        Ok(self
            .db
            .write(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let id = done.ticket_id.to_string();
                let row: Option<(String, Option<String>, Option<i64>)> = tx
                    .query_row(
                        "SELECT state, claim_token, lease_until FROM tickets WHERE ticket_id = ?1",
                        [&id],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?;
                let holds = match (&row, done.token) {
                    (Some((state, _, _)), _) if state == "done" => false,
                    (Some((_, held, _)), Some(token)) => {
                        held.as_deref() == Some(&token.0.to_string())
                    }
                    // Without a token only an unheld ticket: a live lease's
                    // holder may still answer, and its answer wins.
                    (Some((_, _, lease)), None) => {
                        lease.is_none_or(|until| until <= Utc::now().timestamp_millis())
                    }
                    (None, Some(_)) => false,
                    (None, None) => {
                        tx.execute(
                            "INSERT INTO tickets (ticket_id, conversation_id, state, attempts,
                                                  received_at)
                             VALUES (?1, ?2, 'claimed', 0, ?3)",
                            params![
                                id,
                                done.conversation_id.to_string(),
                                Utc::now().to_rfc3339()
                            ],
                        )?;
                        true
                    }
                };
                if !holds {
                    return Ok(Completed::LostClaim);
                }
                let now = Utc::now().to_rfc3339();
                if let Some(m) = &done.message {
                    append_in(&tx, done.conversation_id, m)?;
                }
                for new in &done.outbox {
                    outbox::insert_in(&tx, new)?;
                }
                if let Some(status) = done.status {
                    let reason = (status == ConversationStatus::Escalated)
                        .then_some(done.reason)
                        .flatten();
                    tx.execute(
                        "UPDATE conversations SET status = ?2, escalation_reason = ?3,
                                                  updated_at = ?4
                         WHERE id = ?1",
                        params![
                            done.conversation_id.to_string(),
                            status.as_str(),
                            reason.map(ReasonCode::as_str),
                            now,
                        ],
                    )?;
                }
                tx.execute(
                    "UPDATE tickets SET state = 'done', claim_token = NULL, lease_until = NULL,
                                        outcome = ?2, reason = ?3, confidence = ?4,
                                        notified = ?5, usage = ?6, completed_at = ?7
                     WHERE ticket_id = ?1",
                    params![
                        id,
                        done.outcome.as_str(),
                        done.reason.map(ReasonCode::as_str),
                        f64::from(done.confidence),
                        !done.needs_notification,
                        serde_json::to_string(&done.usage)?,
                        now,
                    ],
                )?;
                tx.commit()?;
                Ok(Completed::Written)
            })
            .await?)
    }

    async fn mark_notified(&self, ticket: TicketId) -> Result<(), StoreError> {
        Ok(self
            .db
            .write(move |c| {
                c.execute(
                    "UPDATE tickets SET notified = 1 WHERE ticket_id = ?1",
                    [ticket.to_string()],
                )?;
                Ok(())
            })
            .await?)
    }

    async fn messages_after(
        &self,
        id: ConversationId,
        after: u64,
        limit: usize,
    ) -> Result<Page, StoreError> {
        Ok(self
            .db
            .read(move |c| {
                // One read transaction, so status and messages agree.
                c.execute_batch("BEGIN")?;
                let result = (|| {
                    let conversation = conversation_in(c, id)?;
                    let mut st = c.prepare_cached(&format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages
                         WHERE conversation_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                    ))?;
                    let rows = st.query_map(
                        params![id.to_string(), after as i64, limit as i64],
                        message_row,
                    )?;
                    let messages = rows.collect::<Result<Vec<_>, _>>()?;
                    Ok::<_, DbError>(Page {
                        conversation,
                        messages,
                    })
                })();
                c.execute_batch("COMMIT")?;
                result
            })
            .await?)
    }

    async fn set_status(
        &self,
        id: ConversationId,
        status: ConversationStatus,
        reason: Option<ReasonCode>,
        message: Option<NewMessage>,
        deliveries: Vec<NewOutbox>,
    ) -> Result<Conversation, StoreError> {
        // An agent's action: on disk before the agent hears it was done.
        let found = self
            .db
            .write_durable(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let n = tx.execute(
                    "UPDATE conversations SET status = ?2, escalation_reason = ?3, updated_at = ?4
                     WHERE id = ?1",
                    params![
                        id.to_string(),
                        status.as_str(),
                        reason.map(ReasonCode::as_str),
                        Utc::now().to_rfc3339()
                    ],
                )?;
                if n == 0 {
                    return Ok(None);
                }
                if let Some(m) = &message {
                    append_in(&tx, id, m)?;
                }
                for new in &deliveries {
                    outbox::insert_in(&tx, new)?;
                }
                let conv = conversation_in(&tx, id)?;
                tx.commit()?;
                Ok(conv)
            })
            .await?;
        found.ok_or_else(|| StoreError::NotFound(format!("no conversation {id}")))
    }

    async fn ticket(&self, id: TicketId) -> Result<Option<TicketRecord>, StoreError> {
        Ok(self
            .db
            .read(move |c| {
                Ok(c.query_row(
                    &format!(
                        "SELECT {TICKET_COLUMNS} FROM tickets WHERE ticket_id = ?1 AND state = 'done'"
                    ),
                    [id.to_string()],
                    ticket_row,
                )
                .optional()?)
            })
            .await?)
    }

    async fn tickets_since(&self, since: DateTime<Utc>) -> Result<Vec<TicketRecord>, StoreError> {
        SqliteStore::tickets_since(self, since).await
    }
}
