//! The queue on SQS FIFO: `MessageGroupId` = conversation (in order per
//! conversation, conversations in parallel), `MessageDeduplicationId` =
//! ticket id (a re-sent ticket within five minutes is dropped by SQS; the
//! store's idempotency claim covers the rest).

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};

use super::{Queue, QueueError, encode};
use crate::aws::describe;
use crate::domain::Ticket;

/// SQS's own limit on a message body.
pub const SQS_MAX_BYTES: usize = 256 * 1024;

/// [`Queue`] over an SQS FIFO queue and its dead-letter queue.
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    dlq_url: Option<String>,
    max_bytes: usize,
}

/// A message taken off a queue (tests and the explicit redrive).
#[derive(Debug, Clone)]
pub struct Received {
    /// SQS message id.
    pub message_id: String,
    /// For delete / visibility changes.
    pub receipt_handle: String,
    /// The envelope.
    pub body: String,
    /// The FIFO group.
    pub group_id: String,
    /// `ApproximateReceiveCount`.
    pub receive_count: u32,
    /// Every system attribute, as the Lambda event source passes them.
    pub attributes: std::collections::HashMap<String, String>,
}

fn sdk_error<E: crate::aws::ServiceError, R: crate::aws::RawResponse>(
    op: &str,
    err: crate::aws::SdkError<E, R>,
) -> QueueError {
    crate::aws::failure("SQS", op, err).into()
}

impl SqsQueue {
    /// A queue at `queue_url` with its dead-letter queue at `dlq_url`.
    pub fn new(
        client: Client,
        queue_url: impl Into<String>,
        dlq_url: Option<String>,
        max_bytes: usize,
    ) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dlq_url,
            max_bytes: max_bytes.min(SQS_MAX_BYTES),
        }
    }

    /// The source queue's URL.
    pub fn url(&self) -> &str {
        &self.queue_url
    }

    /// Hides a received message for `secs` more (retry with backoff).
    pub async fn change_visibility(
        &self,
        receipt_handle: &str,
        secs: u64,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            // SQS allows at most 12 hours.
            .visibility_timeout(secs.min(43_200) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("ChangeMessageVisibility", e))
    }

    /// Puts a record on the dead-letter queue directly (no more retries),
    /// keeping its group and recording why.
    pub async fn dead_letter(
        &self,
        body: &str,
        group_id: &str,
        dedup_id: &str,
        reason: &str,
    ) -> Result<(), QueueError> {
        let dlq = self.dlq_url.as_deref().ok_or_else(|| {
            QueueError::Permanent(anyhow::anyhow!(
                "no dead-letter queue configured (aws.dlq_url)"
            ))
        })?;
        let attr = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason)
            .build()
            .map_err(|e| QueueError::Permanent(e.into()))?;
        self.client
            .send_message()
            .queue_url(dlq)
            .message_body(body)
            .message_group_id(if group_id.is_empty() {
                "unknown"
            } else {
                group_id
            })
            .message_deduplication_id(dedup(dedup_id))
            .message_attributes("deskhand_reason", attr)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("SendMessage", e))
    }

    /// Receives up to 10 messages with their attributes, as Lambda's event
    /// source does (long poll `wait_secs`).
    pub async fn receive(
        &self,
        url: &str,
        wait_secs: i32,
        visibility: i32,
    ) -> Result<Vec<Received>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_secs)
            .visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| sdk_error("ReceiveMessage", e))?;
        Ok(out
            .messages()
            .iter()
            .map(|m| {
                let attributes: std::collections::HashMap<String, String> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                Received {
                    message_id: m.message_id().unwrap_or_default().to_owned(),
                    receipt_handle: m.receipt_handle().unwrap_or_default().to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    group_id: attributes
                        .get("MessageGroupId")
                        .cloned()
                        .unwrap_or_default(),
                    receive_count: attributes
                        .get("ApproximateReceiveCount")
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                    attributes,
                }
            })
            .collect())
    }

    /// Deletes a received message from `url`.
    pub async fn delete(&self, url: &str, receipt_handle: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("DeleteMessage", e))
    }

    async fn arn(&self, url: &str) -> Result<String, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| sdk_error("GetQueueAttributes", e))?;
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| QueueError::Permanent(anyhow::anyhow!("{url} has no QueueArn")))
    }

    /// Moves the dead-letter queue's messages back one by one: receive,
    /// send to the source queue with a fresh deduplication id, delete.
    /// Used where `StartMessageMoveTask` is unavailable.
    pub async fn move_back(&self) -> Result<u64, QueueError> {
        let dlq = self.dlq_url.clone().ok_or_else(|| {
            QueueError::Permanent(anyhow::anyhow!("no dead-letter queue configured"))
        })?;
        let mut moved = 0;
        loop {
            let batch = self.receive(&dlq, 0, 60).await?;
            if batch.is_empty() {
                return Ok(moved);
            }
            for m in batch {
                let dedup_id = format!(
                    "{}:redrive:{}",
                    m.message_id,
                    chrono::Utc::now().timestamp_millis()
                );
                self.client
                    .send_message()
                    .queue_url(&self.queue_url)
                    .message_body(&m.body)
                    .message_group_id(if m.group_id.is_empty() {
                        "unknown"
                    } else {
                        &m.group_id
                    })
                    .message_deduplication_id(dedup(&dedup_id))
                    .send()
                    .await
                    .map_err(|e| sdk_error("SendMessage", e))?;
                self.delete(&dlq, &m.receipt_handle).await?;
                moved += 1;
            }
        }
    }
}

/// SQS deduplication ids are at most 128 characters.
fn dedup(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(128)
        .collect()
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, ticket: &Ticket) -> Result<(), QueueError> {
        let (body, truncated) =
            encode(ticket, self.max_bytes).map_err(|e| QueueError::Permanent(e.into()))?;
        if truncated {
            tracing::warn!(message = "Ticket text cut to fit the queue.", ticket_id = %ticket.ticket_id);
        }
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_group_id(ticket.conversation_id.to_string())
            .message_deduplication_id(ticket.ticket_id.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("SendMessage", e))
    }

    /// `StartMessageMoveTask` from the dead-letter queue to the source
    /// queue (asynchronous on AWS: returns the number of messages waiting
    /// when it started); where the service does not offer it, moves the
    /// messages explicitly.
    async fn redrive(&self) -> Result<u64, QueueError> {
        let dlq = self.dlq_url.clone().ok_or_else(|| {
            QueueError::Permanent(anyhow::anyhow!("no dead-letter queue configured"))
        })?;
        let (source, dest) = (self.arn(&dlq).await?, self.arn(&self.queue_url).await?);
        let waiting = self
            .client
            .get_queue_attributes()
            .queue_url(&dlq)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .ok()
            .and_then(|o| {
                o.attributes()
                    .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0);
        match self
            .client
            .start_message_move_task()
            .source_arn(source)
            .destination_arn(dest)
            .send()
            .await
        {
            Ok(_) => Ok(waiting),
            Err(e) => {
                tracing::info!(message = "StartMessageMoveTask unavailable; moving messages explicitly.", error = %describe(&e));
                self.move_back().await
            }
        }
    }
}

/// A Lambda SQS event for received messages, as the event source mapping
/// builds it (the soak and the tests deliver to the worker this way).
pub fn sqs_event(
    queue_arn: &str,
    messages: &[Received],
) -> aws_lambda_events::event::sqs::SqsEvent {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            serde_json::json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": m.attributes,
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records }))
        .expect("the event source's record shape deserializes")
}
