//! The dispatcher Lambda: delivers outbox records on AWS.
//!
//! Two event sources call the same function:
//!
//! * the table's **DynamoDB Stream** (keys only, filtered to inserted
//!   `OUTBOX#` items): each new record is dispatched at once. A delivery
//!   that fails is not a stream failure: the record is set to retry with
//!   backoff (its `next_at`) and the record succeeds. Only a store failure
//!   (the record could not even be claimed or settled) is reported as a
//!   batch item failure (`ReportBatchItemFailures`), so Lambda retries the
//!   stream from there (`MaximumRetryAttempts`, `BisectBatchOnFunctionError`)
//!   and finally sends the batch's position to the on-failure SQS queue,
//!   whose alarm tells a person;
//! * a **schedule** (every minute): sweeps records that have come due
//!   (retries with backoff, shadow reviews, records whose dispatcher died
//!   mid-send and whose lease ended) through the table's `due` index.
//!
//! Either way [`Dispatcher`](crate::outbox::Dispatcher) does the work, as
//! in local mode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::dynamodb::Event as DynamodbEvent;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde_json::{Value, json};
use tracing::warn;

use crate::outbox::Dispatcher;

/// Records dispatched per sweep query.
const SWEEP_BATCH: usize = 50;
/// A sweep stops starting new batches after this long (the function's
/// timeout is longer).
const SWEEP_BUDGET: Duration = Duration::from_secs(40);

/// The outbox record id a stream record's keys name, if it is one.
pub fn outbox_id(record: &aws_lambda_events::event::dynamodb::EventRecord) -> Option<String> {
    let keys = serde_json::to_value(&record.change.keys).ok()?;
    let pk = keys["pk"]["S"].as_str().or(keys["pk"].as_str())?;
    pk.strip_prefix("OUTBOX#").map(str::to_owned)
}

/// Handles a stream batch.
pub async fn handle_stream(dispatcher: &Dispatcher, event: DynamodbEvent) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    for record in event.records {
        if record.event_name != "INSERT" {
            continue;
        }
        let Some(id) = outbox_id(&record) else {
            continue;
        };
        if let Err(error) = dispatcher.dispatch(&id).await {
            warn!(message = "Could not dispatch an outbox record; the stream retries it.", %error, outbox_id = %id);
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = record.change.sequence_number.clone();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// Sweeps due records until none are left or the time budget is spent.
pub async fn sweep(dispatcher: &Dispatcher) -> usize {
    let started = Instant::now();
    let mut total = 0;
    while started.elapsed() < SWEEP_BUDGET {
        match dispatcher.sweep(SWEEP_BATCH).await {
            Ok(n) => {
                total += n;
                if n < SWEEP_BATCH {
                    break;
                }
            }
            Err(error) => {
                warn!(message = "Outbox sweep failed; the next one retries.", %error);
                break;
            }
        }
    }
    total
}

/// The function's entry: a stream batch (it has `Records`) or a schedule
/// tick (anything else).
pub async fn handle(
    dispatcher: &Arc<Dispatcher>,
    event: Value,
) -> Result<Value, serde_json::Error> {
    if event.get("Records").is_some() {
        let stream: DynamodbEvent = serde_json::from_value(event)?;
        serde_json::to_value(handle_stream(dispatcher, stream).await)
    } else {
        Ok(json!({"swept": sweep(dispatcher).await}))
    }
}
