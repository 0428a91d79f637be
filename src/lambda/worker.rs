//! The worker Lambda: an `SqsEvent` from the FIFO queue's event source →
//! the pipeline, record by record → an `SqsBatchResponse` naming the
//! records to retry (`ReportBatchItemFailures`).
//!
//! Records of one message group (one conversation) are handled in order;
//! after the first failure in a group, it and every later record of that
//! group are reported failed, so FIFO order holds on the retry. Groups run
//! concurrently (bounded). A record to retry is hidden for its backoff
//! delay; a record given up on goes to the dead-letter queue directly (a
//! person has already been told) and counts as handled. Each finished
//! ticket and failed attempt prints a CloudWatch EMF metrics line
//! ([`crate::metrics`]).
//!
//! Time budget ([`handle_lambda`]): the invocation's deadline (from the
//! Lambda context) less [`Budget::reserve`] bounds every Bedrock call
//! ([`crate::aws::with_call_deadline`]), so no call outlives the
//! invocation; and a record starts only while its worst case
//! ([`Budget::record`]) still fits. A record not started, and every later
//! one of its group, is reported as a batch item failure and made visible
//! again within a second: SQS redelivers it, in order, to the next
//! invocation; nothing is lost. The Lambda time-out itself, which would
//! return the whole batch (and count a receive against each record), is not
//! reached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use lambda_runtime::LambdaEvent;
use tracing::{Instrument, error, warn};

use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::queue::SqsQueue;
use crate::worker::{self, Action, Backoff};

/// Message groups handled at once within one batch: a FIFO event source
/// delivers at most 10 records, so a batch of 10 conversations runs all
/// at once and takes about as long as its slowest ticket (the work is
/// waiting on AWS; the records of one conversation stay in order).
pub const GROUP_CONCURRENCY: usize = 10;

/// Seconds a record not started for lack of time stays hidden before SQS
/// redelivers it.
pub const NOT_STARTED_DELAY_SECS: u64 = 1;

/// The least time left (after the reserve) in which a record is started,
/// even when the invocation is too short for a record's worst case.
pub const MIN_START: Duration = Duration::from_secs(2);

/// How an invocation's time is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Kept at the end of the invocation for writing results, changing
    /// visibilities and answering: Bedrock calls end this long before the
    /// deadline.
    pub reserve: Duration,
    /// One record's worst case: its Bedrock calls at their caps, plus the
    /// reserve. A record starts only if this much time is left.
    pub record: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            reserve: Duration::from_secs(10),
            record: Duration::from_secs(10),
        }
    }
}

/// When records may still start in one invocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    deadline: Option<Instant>,
    reserve: Duration,
    need: Duration,
}

impl Clock {
    fn new(deadline: Option<Instant>, budget: Budget) -> Self {
        let mut need = budget.record;
        if let Some(d) = deadline {
            let left = d
                .saturating_duration_since(Instant::now())
                .saturating_sub(budget.reserve);
            if left < need && !left.is_zero() {
                // The function's time-out is shorter than one record's
                // worst case: records still start while half of what the
                // invocation had is left, their calls cut to the deadline.
                error!(
                    message = "The invocation is shorter than one record's worst case; raise the function's timeout or lower the Bedrock read timeouts.",
                    left_ms = left.as_millis() as u64,
                    record_ms = need.as_millis() as u64
                );
                need = (left / 2).max(MIN_START);
            }
        }
        Self {
            deadline,
            reserve: budget.reserve,
            need,
        }
    }

    /// Whether a record may start now.
    fn may_start(&self) -> bool {
        self.deadline
            .is_none_or(|d| d.saturating_duration_since(Instant::now()) >= self.reserve + self.need)
    }
}

/// What the worker needs.
#[derive(Clone)]
pub struct WorkerContext {
    /// The ticket pipeline.
    pub pipeline: Arc<Pipeline>,
    /// For visibility changes and dead-lettering.
    pub queue: SqsQueue,
    /// Attempts before giving up (below the queue's `maxReceiveCount`).
    pub max_receives: u32,
    /// Retry delays.
    pub backoff: Backoff,
    /// Groups handled at once.
    pub group_concurrency: usize,
    /// Failed attempts are counted here; finished tickets by the
    /// pipeline's store.
    pub metrics: Metrics,
    /// How an invocation's time is spent.
    pub budget: Budget,
}

/// Handles one invocation: the batch, within the deadline of its context.
pub async fn handle_lambda(ctx: &WorkerContext, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
    handle_until(ctx, event.payload, deadline_of(&event.context)).await
}

/// The invocation's deadline as an `Instant`; `None` when the context has
/// none (0) or one already past when the invocation starts, which Lambda
/// never sends (it would have ended the invocation) but emulators do
/// (`cargo lambda watch` sends a duration, 600000, not a time).
pub fn deadline_of(context: &lambda_runtime::Context) -> Option<Instant> {
    if context.deadline == 0 {
        return None;
    }
    match context.deadline().duration_since(SystemTime::now()) {
        Ok(left) => Some(Instant::now() + left),
        Err(_) => {
            warn!(
                message = "The invocation's deadline is already past; ignoring it.",
                deadline_ms = context.deadline
            );
            None
        }
    }
}

/// Handles one batch with no deadline.
pub async fn handle(ctx: &WorkerContext, event: SqsEvent) -> SqsBatchResponse {
    handle_until(ctx, event, None).await
}

/// Handles one batch that must be answered by `deadline`: Bedrock calls end
/// `budget.reserve` before it, and records that cannot finish in time are
/// not started (they come back as batch item failures).
pub async fn handle_until(
    ctx: &WorkerContext,
    event: SqsEvent,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let clock = Clock::new(deadline, ctx.budget);
    match deadline {
        Some(d) => {
            let calls_end = d
                .checked_sub(ctx.budget.reserve)
                .unwrap_or_else(Instant::now);
            crate::aws::with_call_deadline(calls_end, handle_batch(ctx, event, clock)).await
        }
        None => handle_batch(ctx, event, clock).await,
    }
}

async fn handle_batch(ctx: &WorkerContext, event: SqsEvent, clock: Clock) -> SqsBatchResponse {
    // Group records, keeping each group's order and the groups' first-seen order.
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<SqsMessage>> = HashMap::new();
    for record in event.records {
        let group = record
            .attributes
            .get("MessageGroupId")
            .cloned()
            .unwrap_or_default();
        if !groups.contains_key(&group) {
            order.push(group.clone());
        }
        groups.entry(group).or_default().push(record);
    }
    let failed: Vec<Vec<String>> = futures::stream::iter(order.into_iter().map(|g| {
        let records = groups.remove(&g).unwrap_or_default();
        handle_group(ctx, g, records, clock)
    }))
    .buffer_unordered(ctx.group_concurrency.max(1))
    .collect()
    .await;
    let mut response = SqsBatchResponse::default();
    for id in failed.into_iter().flatten() {
        response.add_failure(id);
    }
    response
}

/// Handles one group's records in order; returns the ids to report failed.
async fn handle_group(
    ctx: &WorkerContext,
    group: String,
    records: Vec<SqsMessage>,
    clock: Clock,
) -> Vec<String> {
    let mut failed = Vec::new();
    // The delay of the group's first failure: the records held back behind
    // it come back with it, not a whole visibility timeout later (an
    // in-flight record blocks its FIFO group).
    let mut held_for: Option<u64> = None;
    let mut why_held = "held back behind failures in its conversation until out of attempts";
    for record in records {
        if held_for.is_none() && !clock.may_start() {
            // Out of time: this record and the rest of its group go back
            // untried, in order, for the next invocation.
            warn!(
                message = "Not enough invocation time left to start a record; it and the rest of its conversation go back to the queue.",
                group = %group
            );
            held_for = Some(NOT_STARTED_DELAY_SECS);
            why_held = "not started for lack of invocation time until out of attempts";
        }
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or_default();
        let count = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        if let Some(secs) = held_for {
            // FIFO: nothing after a failure in this group may go ahead of it.
            // Held-back records are received (and counted) without being
            // tried; one out of attempts goes to a person now, rather than
            // to the dead-letter queue by the redrive policy unannounced.
            if count >= ctx.max_receives
                && let Action::DeadLetter(reason) =
                    worker::give_up_record(&ctx.pipeline, body, why_held).await
                && ctx
                    .queue
                    .dead_letter(body, &group, &id, reason)
                    .await
                    .is_ok()
            {
                continue;
            }
            delay(ctx, &record, secs).await;
            failed.push(id);
            continue;
        }
        let action = worker::handle(&ctx.pipeline, body, count, ctx.max_receives, ctx.backoff)
            .instrument(crate::telemetry::record_span(body))
            .await;
        ctx.metrics.settled(&action);
        match action {
            Action::Delete => {}
            Action::RetryAfter(wait) => {
                let secs = wait.as_secs().max(1);
                delay(ctx, &record, secs).await;
                held_for = Some(secs);
                failed.push(id);
            }
            Action::DeadLetter(reason) => {
                if let Err(error) = ctx.queue.dead_letter(body, &group, &id, reason).await {
                    warn!(message = "Could not dead-letter a record; it will be retried.", %error);
                    held_for = Some(1);
                    failed.push(id);
                }
            }
        }
    }
    failed
}

/// Hides a record to be retried for `secs` (best effort: on failure the
/// queue's visibility timeout applies).
async fn delay(ctx: &WorkerContext, record: &SqsMessage, secs: u64) {
    if let Some(receipt) = &record.receipt_handle
        && let Err(error) = ctx.queue.change_visibility(receipt, secs).await
    {
        warn!(message = "Could not delay a retry; the queue's visibility timeout applies.", %error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Budget = Budget {
        reserve: Duration::from_secs(10),
        record: Duration::from_secs(60),
    };

    #[test]
    fn a_record_starts_only_while_its_worst_case_fits() {
        let now = Instant::now();
        assert!(Clock::new(None, BUDGET).may_start());
        assert!(Clock::new(Some(now + Duration::from_secs(180)), BUDGET).may_start());
        // 69 s left: the reserve and one worst case need 70.
        let short = Clock {
            deadline: Some(now + Duration::from_secs(69)),
            reserve: BUDGET.reserve,
            need: BUDGET.record,
        };
        assert!(!short.may_start());
        // Inside the reserve: nothing starts.
        assert!(!Clock::new(Some(now + Duration::from_secs(5)), BUDGET).may_start());
    }

    #[test]
    fn an_invocation_shorter_than_a_worst_case_still_progresses() {
        // 30 s function, 60 s worst case: records start while half of the
        // 20 s after the reserve is left.
        let clock = Clock::new(Some(Instant::now() + Duration::from_secs(30)), BUDGET);
        assert!(clock.may_start());
        assert!(clock.need <= Duration::from_secs(10), "{:?}", clock.need);
    }

    #[test]
    fn deadlines_come_from_the_context() {
        let mut c = lambda_runtime::Context::default();
        assert_eq!(deadline_of(&c), None, "no deadline");
        c.deadline = 600_000; // cargo lambda watch: not a time
        assert_eq!(deadline_of(&c), None);
        let in_a_minute = SystemTime::now() + Duration::from_secs(60);
        c.deadline = in_a_minute
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let d = deadline_of(&c).unwrap();
        let left = d.saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(55) && left <= Duration::from_secs(60));
    }
}
