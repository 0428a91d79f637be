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

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use tracing::{Instrument, warn};

use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::queue::SqsQueue;
use crate::worker::{self, Action, Backoff};

/// Message groups handled at once within one batch.
pub const GROUP_CONCURRENCY: usize = 4;

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
}

/// Handles one batch.
pub async fn handle(ctx: &WorkerContext, event: SqsEvent) -> SqsBatchResponse {
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
        handle_group(ctx, g, records)
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
async fn handle_group(ctx: &WorkerContext, group: String, records: Vec<SqsMessage>) -> Vec<String> {
    let mut failed = Vec::new();
    // The delay of the group's first failure: the records held back behind
    // it come back with it, not a whole visibility timeout later (an
    // in-flight record blocks its FIFO group).
    let mut held_for: Option<u64> = None;
    for record in records {
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
                && let Action::DeadLetter(reason) = worker::give_up_record(
                    &ctx.pipeline,
                    body,
                    "held back behind failures in its conversation until out of attempts",
                )
                .await
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
