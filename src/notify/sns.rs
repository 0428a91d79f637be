//! Escalations published to an SNS topic: the escalation as the JSON body,
//! and `reason`, `channel` and `priority` as message attributes, so each
//! subscriber (an email list, an agent queue, a pager) can filter.

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;

use super::{EscalateError, Escalation, Escalator};
use crate::aws::describe;

/// SNS subjects are at most 100 characters.
const MAX_SUBJECT: usize = 100;

/// [`Escalator`] over an SNS topic.
#[derive(Clone)]
pub struct SnsEscalator {
    client: Client,
    topic_arn: String,
}

impl SnsEscalator {
    /// Publishes to `topic_arn`.
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

fn attr(value: &str) -> Result<MessageAttributeValue, EscalateError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| EscalateError(format!("building an SNS attribute: {e}")))
}

#[async_trait]
impl Escalator for SnsEscalator {
    async fn escalate(&self, e: &Escalation) -> Result<(), EscalateError> {
        let body = serde_json::to_string(e).map_err(|err| EscalateError(err.to_string()))?;
        let subject: String = e
            .summary()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_SUBJECT)
            .collect();
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(body)
            .message_attributes("reason", attr(e.reason.as_str())?)
            .message_attributes(
                "channel",
                attr(e.channel.map_or("unknown", |c| c.as_str()))?,
            )
            .message_attributes("priority", attr(e.priority.as_str())?)
            .send()
            .await
            .map(|_| ())
            .map_err(|err| EscalateError(format!("SNS Publish: {}", describe(&err))))
    }
}
