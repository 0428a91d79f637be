//! One queued record → the pipeline → what the queue should do with it.
//!
//! The same decisions drive the local worker tasks and the Lambda worker:
//! delete on success; retry with exponential backoff and jitter on a
//! transient failure; on the last attempt, or a permanent failure, escalate
//! `processing_failed` and dead-letter; an unreadable record is escalated
//! `unparseable` and dead-lettered without retries. A record is only
//! dead-lettered once a person has been told.

use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use tracing::{info, warn};

use crate::pipeline::{Pipeline, ProcessError, Processed};
use crate::queue::decode;

/// What to do with a record after handling it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Done: delete it.
    Delete,
    /// Make it visible again after this delay.
    RetryAfter(Duration),
    /// Move it to the dead-letter queue now (a person has been told).
    DeadLetter(&'static str),
}

/// Exponential backoff with full jitter, capped.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay scale of the first retry.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// From the queue settings.
    pub fn from_config(c: &crate::queue::QueueSettings) -> Self {
        Self {
            base: Duration::from_millis(c.backoff_base_ms),
            max: Duration::from_secs(c.backoff_max_secs),
        }
    }

    /// The delay before retry number `attempt` (1-based): uniformly
    /// random in [cap/2, cap] where cap = base·2^(attempt−1), at most `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max);
        let ms = cap.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms.max(1)))
    }
}

/// Handles one delivery of `body`, received `receive_count` times of at
/// most `max_receives`.
pub async fn handle(
    pipeline: &Pipeline,
    body: &str,
    receive_count: u32,
    max_receives: u32,
    backoff: Backoff,
) -> Action {
    let ticket = match decode(body) {
        Ok(t) => t,
        Err(error) => {
            warn!(message = "Unreadable queue record.", %error);
            return match pipeline.escalate_unreadable(body, &error.to_string()).await {
                Ok(()) => Action::DeadLetter("unparseable"),
                Err(error) => {
                    warn!(message = "Could not report an unreadable record; keeping it.", %error);
                    Action::RetryAfter(backoff.delay(receive_count))
                }
            };
        }
    };
    let last = receive_count >= max_receives;
    let error = match pipeline.process(&ticket).await {
        Ok(done) => {
            if !matches!(done, Processed::AlreadyDone) {
                info!(message = "Ticket processed.", ticket_id = %ticket.ticket_id, outcome = ?done);
            }
            return Action::Delete;
        }
        Err(e) => e,
    };
    let (give_up, wait) = match &error {
        ProcessError::Permanent(_) => (true, None),
        ProcessError::Transient { retry_after, .. } => (last, *retry_after),
        ProcessError::Busy { until } => {
            let left = (*until - Utc::now()).to_std().unwrap_or_default();
            (last, Some(left.max(Duration::from_secs(1))))
        }
    };
    warn!(message = "Ticket failed.", ticket_id = %ticket.ticket_id, attempt = receive_count, give_up, %error);
    if give_up {
        return match pipeline.give_up(&ticket, &error.to_string()).await {
            Ok(()) => Action::DeadLetter("processing_failed"),
            Err(error) => {
                warn!(message = "Could not notify about a failed ticket; keeping it.", %error);
                Action::RetryAfter(not_before(&error, backoff.delay(receive_count)))
            }
        };
    }
    // The service's own Retry-After wins when it asks for longer.
    let delay = backoff.delay(receive_count);
    Action::RetryAfter(wait.map_or(delay, |w| w.max(delay)))
}

/// The retry delay after a failed give-up: at least until another
/// worker's lease ends (`Busy`), so the retry finds the ticket finished or
/// free rather than spending an attempt.
fn not_before(error: &ProcessError, delay: Duration) -> Duration {
    match error {
        ProcessError::Busy { until } => {
            let left = (*until - Utc::now()).to_std().unwrap_or_default();
            delay.max(left).max(Duration::from_secs(1))
        }
        _ => delay,
    }
}

/// Gives up on a record without trying it: a person is told
/// (`processing_failed`, or `unparseable`) and, once they are, the record
/// may be dead-lettered; if nobody could be told it is retried.
pub async fn give_up_record(pipeline: &Pipeline, body: &str, detail: &str) -> Action {
    let told = match decode(body) {
        Ok(ticket) => pipeline.give_up(&ticket, detail).await,
        Err(_) => pipeline.escalate_unreadable(body, detail).await,
    };
    match told {
        Ok(()) => Action::DeadLetter("processing_failed"),
        Err(error) => {
            warn!(message = "Could not notify about a failed record; keeping it.", %error);
            Action::RetryAfter(not_before(&error, Duration::from_secs(1)))
        }
    }
}

/// [`handle`], with a panic anywhere in it treated as a failure: the
/// ticket goes to a person and the record to the dead-letter queue, rather
/// than crashing the worker on every redelivery.
pub async fn handle_guarded(
    pipeline: &Pipeline,
    body: &str,
    receive_count: u32,
    max_receives: u32,
    backoff: Backoff,
) -> Action {
    use futures::FutureExt;
    let attempt =
        std::panic::AssertUnwindSafe(handle(pipeline, body, receive_count, max_receives, backoff));
    match attempt.catch_unwind().await {
        Ok(action) => action,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(message = "The worker panicked handling a record.", error = %what);
            let detail = format!("the worker panicked: {what}");
            let reported = match decode(body) {
                Ok(ticket) => {
                    std::panic::AssertUnwindSafe(pipeline.give_up(&ticket, &detail))
                        .catch_unwind()
                        .await
                }
                Err(_) => {
                    std::panic::AssertUnwindSafe(pipeline.escalate_unreadable(body, &detail))
                        .catch_unwind()
                        .await
                }
            };
            match reported {
                Ok(Ok(())) => Action::DeadLetter("processing_failed"),
                // The panicked attempt's lease is still live: wait it out.
                Ok(Err(error)) => {
                    Action::RetryAfter(not_before(&error, backoff.delay(receive_count)))
                }
                Err(_) => Action::RetryAfter(backoff.delay(receive_count)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for _ in 0..100 {
            let d1 = b.delay(1);
            assert!((50..=100).contains(&(d1.as_millis() as u64)), "{d1:?}");
            let d3 = b.delay(3);
            assert!((200..=400).contains(&(d3.as_millis() as u64)), "{d3:?}");
            assert!(b.delay(30) <= Duration::from_secs(2));
            assert!(b.delay(u32::MAX) <= Duration::from_secs(2));
        }
    }
}
