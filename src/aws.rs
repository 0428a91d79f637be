//! Shared AWS SDK configuration, built once per cold start. The endpoint
//! override points every client at moto server in tests (or at a VPC
//! endpoint in production); region and credentials come from the usual
//! chain (environment, profile, Lambda role).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use serde::{Deserialize, Serialize};

/// Where the AWS resources are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsSettings {
    /// Region; defaults to the environment's (`AWS_REGION`).
    pub region: Option<String>,
    /// One endpoint for every AWS service client (moto server in tests).
    pub endpoint_url: Option<String>,
    /// The DynamoDB table (store).
    pub table: Option<String>,
    /// The SQS FIFO queue URL (tickets).
    pub queue_url: Option<String>,
    /// The SQS FIFO dead-letter queue URL.
    pub dlq_url: Option<String>,
    /// The SNS topic ARN (escalations).
    pub topic_arn: Option<String>,
    /// Days before stored items expire (DynamoDB TTL).
    pub retention_days: u32,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            table: None,
            queue_url: None,
            dlq_url: None,
            topic_arn: None,
            retention_days: 90,
        }
    }
}

impl AwsSettings {
    /// A required setting, or an error naming its environment variable.
    pub fn require<'a>(value: &'a Option<String>, key: &str) -> anyhow::Result<&'a str> {
        value.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "aws.{key} is not set (DESKHAND_AWS__{})",
                key.to_ascii_uppercase()
            )
        })
    }
}

/// The SDK configuration for `settings`.
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// Whether an SDK error may pass on retry: throttling, 5xx, time-outs and
/// connection failures are transient; validation, access and missing
/// resources are not.
pub fn is_transient<E, R>(err: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
    R: std::fmt::Debug + HttpStatus,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status_code();
            status == 429
                || status >= 500
                || matches!(
                    ctx.err().code(),
                    Some(
                        "ThrottlingException"
                            | "Throttling"
                            | "ProvisionedThroughputExceededException"
                            | "RequestLimitExceeded"
                            | "TransactionConflictException"
                            | "InternalServerError"
                            | "ServiceUnavailable"
                            | "RequestThrottled"
                            | "KMSThrottlingException"
                    )
                )
        }
        _ => false,
    }
}

/// The HTTP status of a raw SDK response.
pub trait HttpStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// An SDK error with its full context (the SDK's own `Display` says only
/// "service error").
pub fn describe<E: std::error::Error + 'static>(err: &E) -> String {
    aws_smithy_types::error::display::DisplayErrorContext(err).to_string()
}

/// An AWS SDK failure, classified: adapters turn it into their own error's
/// retry-or-give-up variants.
#[derive(Debug)]
pub struct SdkFailure {
    /// Whether retrying may help (see [`is_transient`]).
    pub transient: bool,
    /// "Service Operation: the SDK's full error chain".
    pub text: String,
}

/// An operation's error type, as every SDK client's operations have.
pub trait ServiceError:
    aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static
{
}

impl<E> ServiceError for E where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static
{
}

/// The raw response type of an SDK error.
pub trait RawResponse: std::fmt::Debug + HttpStatus + Send + Sync + 'static {}

impl<R> RawResponse for R where R: std::fmt::Debug + HttpStatus + Send + Sync + 'static {}

/// Any SDK operation's error.
pub type SdkError<E, R> = aws_smithy_runtime_api::client::result::SdkError<E, R>;

/// Classifies `err` from `service`'s `op`.
pub fn failure<E: ServiceError, R: RawResponse>(
    service: &str,
    op: &str,
    err: SdkError<E, R>,
) -> SdkFailure {
    SdkFailure {
        transient: is_transient(&err),
        text: format!("{service} {op}: {}", describe(&err)),
    }
}

impl From<SdkFailure> for crate::store::StoreError {
    fn from(f: SdkFailure) -> Self {
        if f.transient {
            Self::Transient(f.text)
        } else {
            Self::Permanent(anyhow::anyhow!(f.text))
        }
    }
}

impl From<SdkFailure> for crate::queue::QueueError {
    fn from(f: SdkFailure) -> Self {
        if f.transient {
            Self::Transient(f.text)
        } else {
            Self::Permanent(anyhow::anyhow!(f.text))
        }
    }
}
