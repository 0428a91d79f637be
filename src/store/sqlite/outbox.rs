//! Outbox records in the local SQLite file (table `outbox`).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::{SqliteStore, conversion, json_col, parse_col, time_col};
use crate::domain::{NewOutbox, OutboxRecord, OutboxState};
use crate::sqlite::DbError;
use crate::store::{ClaimToken, OutboxClaim, OutboxStore, Settle, StoreError};

const COLUMNS: &str = "id, delivery, state, attempts, next_at, last_error, external_id, \
                       delivered_at, review, created_at";

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn record_row(r: &Row<'_>) -> rusqlite::Result<OutboxRecord> {
    Ok(OutboxRecord {
        id: r.get(0)?,
        delivery: json_col(r, 1)?,
        state: parse_col(r, 2)?,
        attempts: r.get(3)?,
        next_attempt_at: from_millis(r.get(4)?),
        last_error: r.get(5)?,
        external_id: r.get(6)?,
        delivered_at: r
            .get::<_, Option<String>>(7)?
            .map(|s| DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)))
            .transpose()
            .map_err(|e| conversion(7, e))?,
        review: r
            .get::<_, Option<String>>(8)?
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| conversion(8, e))?,
        created_at: time_col(r, 9)?,
    })
}

/// Creates `new` inside a completion's transaction; an existing id is kept.
pub(super) fn insert_in(tx: &Transaction<'_>, new: &NewOutbox) -> Result<(), DbError> {
    let now = Utc::now();
    tx.execute(
        "INSERT INTO outbox (id, ticket_id, conversation_id, provider, delivery, state, attempts,
                             next_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?7, ?7)
         ON CONFLICT (id) DO NOTHING",
        params![
            new.id,
            new.delivery.ticket_id.to_string(),
            new.delivery.conversation_id.to_string(),
            new.delivery.provider.as_str(),
            serde_json::to_string(&new.delivery)?,
            millis(now),
            now.to_rfc3339(),
        ],
    )?;
    Ok(())
}

impl SqliteStore {
    /// Expires every outbox lease. Only for start-up, when this process is
    /// the store's only writer: a record a killed dispatcher was sending is
    /// then retried at once.
    pub async fn release_outbox_leases(&self) -> Result<u64, StoreError> {
        Ok(self
            .db
            .write(|c| {
                Ok(c.execute(
                    "UPDATE outbox SET lease_until = 0 WHERE lease_until IS NOT NULL",
                    [],
                )? as u64)
            })
            .await?)
    }

    /// Every record created at or after `since`, oldest first (reports,
    /// tests).
    pub async fn outbox_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let since = since.to_rfc3339();
        Ok(self
            .db
            .read(move |c| {
                let mut st = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM outbox WHERE created_at >= ?1 ORDER BY created_at, id"
                ))?;
                let rows = st.query_map([since], record_row)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?)
    }
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn claim_outbox(&self, id: &str, lease: Duration) -> Result<OutboxClaim, StoreError> {
        let id = id.to_owned();
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        Ok(self
            .db
            .write(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = millis(Utc::now());
                let row: Option<(String, i64, Option<i64>)> = tx
                    .query_row(
                        "SELECT state, next_at, lease_until FROM outbox WHERE id = ?1",
                        [&id],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?;
                let Some((state, next_at, lease_until)) = row else {
                    return Ok(OutboxClaim::Missing);
                };
                let state: OutboxState = state
                    .parse()
                    .map_err(|e| DbError::Other(anyhow::Error::new(e)))?;
                let leased = lease_until.filter(|u| *u > now);
                let token = ClaimToken::new();
                let counts = match state {
                    OutboxState::Delivered | OutboxState::Failed => {
                        let record = tx.query_row(
                            &format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"),
                            [&id],
                            record_row,
                        )?;
                        return Ok(OutboxClaim::Finished(Box::new(record)));
                    }
                    _ if leased.is_some() => {
                        return Ok(OutboxClaim::Busy(from_millis(leased.unwrap_or(now))));
                    }
                    OutboxState::Delivering => true,
                    OutboxState::Pending | OutboxState::Reviewing if next_at > now => {
                        return Ok(OutboxClaim::NotDue(from_millis(next_at)));
                    }
                    OutboxState::Pending => true,
                    OutboxState::Reviewing => false,
                };
                tx.execute(
                    "UPDATE outbox SET state = CASE WHEN state = 'reviewing' THEN state
                                                    ELSE 'delivering' END,
                                       attempts = attempts + ?2, lease_until = ?3,
                                       lease_token = ?4, updated_at = ?5
                     WHERE id = ?1",
                    params![
                        id,
                        i64::from(counts),
                        now.saturating_add(lease_ms),
                        token.0.to_string(),
                        Utc::now().to_rfc3339(),
                    ],
                )?;
                let record = tx.query_row(
                    &format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"),
                    [&id],
                    record_row,
                )?;
                tx.commit()?;
                Ok(OutboxClaim::Acquired {
                    token,
                    record: Box::new(record),
                })
            })
            .await?)
    }

    async fn settle_outbox(
        &self,
        id: &str,
        token: ClaimToken,
        settle: Settle,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        Ok(self
            .db
            .write(move |c| {
                let now = Utc::now();
                let (sql, values): (&str, Vec<Box<dyn rusqlite::ToSql>>) = match settle {
                    Settle::Delivered {
                        external_id,
                        review_at,
                    } => (
                        "state = ?3, external_id = ?4, delivered_at = ?5, next_at = ?6,
                         last_error = NULL",
                        vec![
                            Box::new(
                                if review_at.is_some() {
                                    OutboxState::Reviewing
                                } else {
                                    OutboxState::Delivered
                                }
                                .as_str(),
                            ),
                            Box::new(external_id),
                            Box::new(now.to_rfc3339()),
                            Box::new(millis(review_at.unwrap_or(now))),
                        ],
                    ),
                    Settle::Retry { error, at } => (
                        "state = 'pending', last_error = ?3, next_at = ?4",
                        vec![Box::new(error), Box::new(millis(at))],
                    ),
                    Settle::Failed { error } => {
                        ("state = 'failed', last_error = ?3", vec![Box::new(error)])
                    }
                    Settle::Reviewed(review) => (
                        "state = 'delivered', review = ?3",
                        vec![Box::new(serde_json::to_string(&review)?)],
                    ),
                    Settle::ReviewLater { at } => ("next_at = ?3", vec![Box::new(millis(at))]),
                };
                let sql = format!(
                    "UPDATE outbox SET {sql}, lease_until = NULL, lease_token = NULL,
                                       updated_at = '{}'
                     WHERE id = ?1 AND lease_token = ?2",
                    now.to_rfc3339()
                );
                let mut all: Vec<&dyn rusqlite::ToSql> = Vec::new();
                let token = token.0.to_string();
                all.push(&id);
                all.push(&token);
                all.extend(values.iter().map(|v| v.as_ref()));
                Ok(c.execute(&sql, all.as_slice())? == 1)
            })
            .await?)
    }

    async fn due_outbox(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(self
            .db
            .read(move |c| {
                let now = millis(Utc::now());
                let mut st = c.prepare_cached(
                    "SELECT id FROM outbox
                     WHERE (state IN ('pending', 'reviewing') AND next_at <= ?1
                            AND COALESCE(lease_until, 0) <= ?1)
                        OR (state = 'delivering' AND COALESCE(lease_until, 0) <= ?1)
                     ORDER BY next_at LIMIT ?2",
                )?;
                let rows = st.query_map(params![now, limit as i64], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<String>, _>>()?)
            })
            .await?)
    }

    async fn outbox_record(&self, id: &str) -> Result<Option<OutboxRecord>, StoreError> {
        let id = id.to_owned();
        Ok(self
            .db
            .read(move |c| {
                Ok(c.query_row(
                    &format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"),
                    [&id],
                    record_row,
                )
                .optional()?)
            })
            .await?)
    }
}
