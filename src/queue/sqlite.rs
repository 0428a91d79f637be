//! A queue in the local SQLite file with SQS FIFO semantics: messages are
//! grouped (FIFO per conversation: a group's next message waits while one
//! is in flight), de-duplicated by id for five minutes, invisible for a
//! visibility timeout after each receive, counted, and moved to a
//! dead-letter table once received the configured maximum number of times.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{Queue, QueueError, encode};
use crate::domain::Ticket;
use crate::sqlite::{Db, DbError, now_ms};

/// As SQS FIFO: a repeated deduplication id within five minutes is dropped.
const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;

/// A received message, invisible to others until its visibility times out.
#[derive(Debug, Clone)]
pub struct Received {
    /// Queue position.
    pub id: i64,
    /// Valid until the message is received again.
    pub receipt: String,
    /// The envelope.
    pub body: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
}

/// How many messages are where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Waiting or in flight.
    pub queued: u64,
    /// Received and not yet deleted or visible again.
    pub in_flight: u64,
    /// In the dead-letter table.
    pub dead: u64,
}

/// The local queue.
#[derive(Clone)]
pub struct SqliteQueue {
    db: Db,
    max_bytes: usize,
    arrived: Arc<Notify>,
}

impl From<DbError> for QueueError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Busy(e) => QueueError::Transient(e.to_string()),
            DbError::Other(e) => QueueError::Permanent(e),
        }
    }
}

impl SqliteQueue {
    /// A queue in `db` whose bodies are at most `max_bytes`.
    pub fn new(db: Db, max_bytes: usize) -> Self {
        Self {
            db,
            max_bytes,
            arrived: Arc::new(Notify::new()),
        }
    }

    /// Enqueues a raw body (tests inject poison messages this way).
    pub async fn send_raw(&self, group: &str, dedup: &str, body: &str) -> Result<bool, QueueError> {
        let (group, dedup, body) = (group.to_owned(), dedup.to_owned(), body.to_owned());
        // Accepting work: on disk before the sender hears 202.
        let sent = self
            .db
            .write_durable(move |c| {
                let now = now_ms();
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let seen: Option<i64> = tx
                    .query_row(
                        "SELECT at FROM queue_dedup WHERE dedup_id = ?1",
                        [&dedup],
                        |r| r.get(0),
                    )
                    .optional()?;
                if seen.is_some_and(|at| now - at < DEDUP_WINDOW_MS) {
                    return Ok(false);
                }
                tx.execute(
                    "INSERT INTO queue_dedup (dedup_id, at) VALUES (?1, ?2)
                     ON CONFLICT (dedup_id) DO UPDATE SET at = excluded.at",
                    params![dedup, now],
                )?;
                tx.execute(
                    "INSERT INTO queue (group_id, dedup_id, body, visible_at, enqueued_at)
                     VALUES (?1, ?2, ?3, ?4, ?4)",
                    params![group, dedup, body, now],
                )?;
                // Forget old dedup ids now and then, not on every send.
                if now % 64 == 0 {
                    tx.execute(
                        "DELETE FROM queue_dedup WHERE at < ?1",
                        [now - DEDUP_WINDOW_MS],
                    )?;
                }
                tx.commit()?;
                Ok(true)
            })
            .await?;
        if sent {
            self.arrived.notify_waiters();
        }
        Ok(sent)
    }

    /// Receives up to `max` messages, each the oldest of its group, hiding
    /// them for `visibility`. With `dead_letter_after`, a message already
    /// received that many times is moved to the dead-letter table instead,
    /// as SQS's redrive policy does. (`serve` passes `None`: there, only a
    /// worker that has told a person dead-letters, since no alarm watches
    /// the local table.)
    pub async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        dead_letter_after: Option<u32>,
    ) -> Result<Vec<Received>, QueueError> {
        self.receive_at(now_ms(), max, visibility, dead_letter_after)
            .await
    }

    /// [`Self::receive`] at a given clock reading (for tests).
    pub async fn receive_at(
        &self,
        now: i64,
        max: usize,
        visibility: Duration,
        dead_letter_after: Option<u32>,
    ) -> Result<Vec<Received>, QueueError> {
        let max_receives = dead_letter_after.unwrap_or(u32::MAX);
        let visibility_ms = i64::try_from(visibility.as_millis()).unwrap_or(i64::MAX);
        Ok(self
            .db
            .write(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut out = Vec::with_capacity(max);
                // Dead-lettering a group's head makes its next message the
                // head, so select again until nothing more moves.
                loop {
                    let heads: Vec<(i64, String, u32)> = {
                        let mut st = tx.prepare_cached(
                            "SELECT q.id, q.body, q.receive_count FROM queue q
                             WHERE q.visible_at <= ?1
                               AND q.id = (SELECT MIN(p.id) FROM queue p WHERE p.group_id = q.group_id)
                             ORDER BY q.id LIMIT ?2",
                        )?;
                        let want = (max - out.len()) as i64;
                        st.query_map(params![now, want], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                            .collect::<Result<_, _>>()?
                    };
                    let mut moved = false;
                    for (id, body, count) in heads {
                        if count >= max_receives {
                            move_to_dead(&tx, id, "max_receives_exceeded", now)?;
                            moved = true;
                            continue;
                        }
                        let receipt = Uuid::new_v4().to_string();
                        tx.execute(
                            "UPDATE queue SET receive_count = receive_count + 1, receipt = ?2,
                                              visible_at = ?3
                             WHERE id = ?1",
                            params![id, receipt, now.saturating_add(visibility_ms)],
                        )?;
                        out.push(Received { id, receipt, body, receive_count: count + 1 });
                    }
                    if !moved || out.len() >= max {
                        break;
                    }
                }
                tx.commit()?;
                Ok(out)
            })
            .await?)
    }

    /// Deletes a processed message. `false` if the receipt is stale (the
    /// message was received again after its visibility timed out).
    pub async fn delete(&self, d: &Received) -> Result<bool, QueueError> {
        let (id, receipt) = (d.id, d.receipt.clone());
        Ok(self
            .db
            .write(move |c| {
                Ok(c.execute(
                    "DELETE FROM queue WHERE id = ?1 AND receipt = ?2",
                    params![id, receipt],
                )? == 1)
            })
            .await?)
    }

    /// Makes a message visible again after `delay` (retry with backoff).
    pub async fn retry_after(&self, d: &Received, delay: Duration) -> Result<bool, QueueError> {
        let (id, receipt) = (d.id, d.receipt.clone());
        let at = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        let changed = self
            .db
            .write(move |c| {
                Ok(c.execute(
                    "UPDATE queue SET visible_at = ?3 WHERE id = ?1 AND receipt = ?2",
                    params![id, receipt, at],
                )? == 1)
            })
            .await?;
        if changed && delay.is_zero() {
            self.arrived.notify_waiters();
        }
        Ok(changed)
    }

    /// Moves a message to the dead-letter table at once (no more retries).
    pub async fn dead_letter(&self, d: &Received, reason: &str) -> Result<bool, QueueError> {
        let (id, receipt, reason) = (d.id, d.receipt.clone(), reason.to_owned());
        Ok(self
            .db
            .write(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let held: Option<i64> = tx
                    .query_row(
                        "SELECT id FROM queue WHERE id = ?1 AND receipt = ?2",
                        params![id, receipt],
                        |r| r.get(0),
                    )
                    .optional()?;
                if held.is_none() {
                    return Ok(false);
                }
                move_to_dead(&tx, id, &reason, now_ms())?;
                tx.commit()?;
                Ok(true)
            })
            .await?)
    }

    /// Waits until a message may have arrived, or `timeout` passes.
    pub async fn wait(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.arrived.notified()).await;
    }

    /// Notified on every send; subscribe before receiving so an arrival
    /// between an empty receive and the wait is not missed.
    pub fn arrivals(&self) -> Arc<Notify> {
        self.arrived.clone()
    }

    /// Makes every in-flight message visible now. Only for start-up, when
    /// this process is the queue's only consumer and nothing is in flight.
    pub async fn release_in_flight(&self) -> Result<u64, QueueError> {
        Ok(self
            .db
            .write(|c| {
                let now = now_ms();
                Ok(c.execute(
                    "UPDATE queue SET visible_at = ?1 WHERE receipt IS NOT NULL AND visible_at > ?1",
                    [now],
                )? as u64)
            })
            .await?)
    }

    /// Where the messages are.
    pub async fn depth(&self) -> Result<Depth, QueueError> {
        Ok(self
            .db
            .read(|c| {
                let now = now_ms();
                let (queued, in_flight): (u64, u64) = c.query_row(
                    "SELECT COUNT(*), COALESCE(SUM(receipt IS NOT NULL AND visible_at > ?1), 0)
                     FROM queue",
                    [now],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let dead = c.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?;
                Ok(Depth {
                    queued,
                    in_flight,
                    dead,
                })
            })
            .await?)
    }

    /// Dead-lettered bodies with their reasons, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<(String, String, u32)>, QueueError> {
        Ok(self
            .db
            .read(|c| {
                let mut st =
                    c.prepare("SELECT body, reason, receive_count FROM dead_letters ORDER BY id")?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?)
    }
}

fn move_to_dead(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    reason: &str,
    now: i64,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO dead_letters (group_id, dedup_id, body, receive_count, reason, enqueued_at, dead_at)
         SELECT group_id, dedup_id, body, receive_count, ?2, enqueued_at, ?3 FROM queue WHERE id = ?1",
        params![id, reason, now],
    )?;
    tx.execute("DELETE FROM queue WHERE id = ?1", [id])?;
    Ok(())
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send(&self, ticket: &Ticket) -> Result<(), QueueError> {
        let (body, _) =
            encode(ticket, self.max_bytes).map_err(|e| QueueError::Permanent(e.into()))?;
        self.send_raw(
            &ticket.conversation_id.to_string(),
            &ticket.ticket_id.to_string(),
            &body,
        )
        .await?;
        Ok(())
    }

    async fn redrive(&self) -> Result<u64, QueueError> {
        let moved = self
            .db
            .write(|c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = now_ms();
                // Back in their original order, with a fresh receive count.
                let n = tx.execute(
                    "INSERT INTO queue (group_id, dedup_id, body, visible_at, enqueued_at)
                     SELECT group_id, dedup_id, body, ?1, enqueued_at FROM dead_letters ORDER BY id",
                    [now],
                )?;
                tx.execute("DELETE FROM dead_letters", [])?;
                tx.commit()?;
                Ok(n as u64)
            })
            .await?;
        self.arrived.notify_waiters();
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIS: Duration = Duration::from_secs(30);

    fn queue() -> (tempfile::TempDir, SqliteQueue) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("q.db")).unwrap();
        (dir, SqliteQueue::new(db, 262_144))
    }

    #[tokio::test]
    async fn visibility_timeout_hides_then_redelivers_with_a_higher_count() {
        let (_d, q) = queue();
        q.send_raw("g", "m1", "one").await.unwrap();
        let t0 = now_ms();
        let first = q.receive_at(t0, 10, VIS, Some(5)).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].receive_count, 1);
        assert!(
            q.receive_at(t0 + 29_000, 10, VIS, Some(5))
                .await
                .unwrap()
                .is_empty(),
            "visible too early"
        );
        let again = q.receive_at(t0 + 30_001, 10, VIS, Some(5)).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].receive_count, 2);
        // The first receipt is stale now.
        assert!(!q.delete(&first[0]).await.unwrap());
        assert!(q.delete(&again[0]).await.unwrap());
        assert_eq!(q.depth().await.unwrap(), Depth::default());
    }

    #[tokio::test]
    async fn fifo_per_group_and_groups_independent() {
        let (_d, q) = queue();
        q.send_raw("a", "a1", "a1").await.unwrap();
        q.send_raw("a", "a2", "a2").await.unwrap();
        q.send_raw("b", "b1", "b1").await.unwrap();
        let got = q.receive(10, VIS, Some(5)).await.unwrap();
        let bodies: Vec<_> = got.iter().map(|d| d.body.as_str()).collect();
        assert_eq!(bodies, ["a1", "b1"], "a2 must wait for a1");
        assert!(q.receive(10, VIS, Some(5)).await.unwrap().is_empty());
        q.delete(&got[0]).await.unwrap();
        let next = q.receive(10, VIS, Some(5)).await.unwrap();
        assert_eq!(
            next.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(),
            ["a2"]
        );
    }

    #[tokio::test]
    async fn duplicates_within_the_window_are_dropped() {
        let (_d, q) = queue();
        assert!(q.send_raw("g", "same", "x").await.unwrap());
        assert!(!q.send_raw("g", "same", "x").await.unwrap());
        assert_eq!(q.depth().await.unwrap().queued, 1);
    }

    #[tokio::test]
    async fn moved_to_dead_letters_after_max_receives_and_redriven() {
        let (_d, q) = queue();
        q.send_raw("g", "m", "poison").await.unwrap();
        q.send_raw("g", "n", "behind").await.unwrap();
        let mut t = now_ms();
        for attempt in 1..=3 {
            let got = q.receive_at(t, 1, VIS, Some(3)).await.unwrap();
            assert_eq!(got.len(), 1, "attempt {attempt}");
            assert_eq!(
                (got[0].body.as_str(), got[0].receive_count),
                ("poison", attempt)
            );
            t += 31_000;
        }
        // The fourth receive moves it and delivers the next in its group.
        let got = q.receive_at(t, 1, VIS, Some(3)).await.unwrap();
        assert_eq!(
            got.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(),
            ["behind"]
        );
        let dead = q.dead_letters().await.unwrap();
        assert_eq!(
            dead,
            [("poison".to_owned(), "max_receives_exceeded".to_owned(), 3)]
        );
        q.delete(&got[0]).await.unwrap();
        assert_eq!(q.redrive().await.unwrap(), 1);
        let back = q.receive(1, VIS, Some(3)).await.unwrap();
        assert_eq!(
            (back[0].body.as_str(), back[0].receive_count),
            ("poison", 1)
        );
    }

    #[tokio::test]
    async fn explicit_dead_letter_and_retry_after() {
        let (_d, q) = queue();
        q.send_raw("g", "m", "junk").await.unwrap();
        let got = q.receive(1, VIS, Some(5)).await.unwrap();
        assert!(q.dead_letter(&got[0], "unparseable").await.unwrap());
        assert_eq!(
            q.depth().await.unwrap(),
            Depth {
                queued: 0,
                in_flight: 0,
                dead: 1
            }
        );

        q.send_raw("h", "r", "retry me").await.unwrap();
        let got = q.receive(1, VIS, Some(5)).await.unwrap();
        assert!(q.retry_after(&got[0], Duration::ZERO).await.unwrap());
        let again = q.receive(1, VIS, Some(5)).await.unwrap();
        assert_eq!(again[0].receive_count, 2);
    }
}
