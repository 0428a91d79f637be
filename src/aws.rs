//! Shared AWS SDK configuration, built once per cold start. The endpoint
//! override points every client at moto server in tests (or at a VPC
//! endpoint in production); region and credentials come from the usual
//! chain (environment, profile, Lambda role).
//!
//! Every client built from it shares one HTTP client ([`shared_http_client`]):
//! one TLS set-up per connection settings and one connection pool, instead
//! of the SDK's default of an HTTP client per service client, each of which
//! builds a TLS configuration from the platform's roots when the client is
//! built and again at its first request.
//!
//! Also here: the secrets the Lambda functions read from Secrets Manager
//! at cold start ([`resolve_secrets`]: only their ids are in the
//! environment), and the invocation deadline that bounds every Bedrock call
//! a worker invocation makes ([`with_call_deadline`], [`call_timeout`]).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

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
    /// Secrets Manager secret (ARN or name) holding the conversation-token
    /// signing key; read once at cold start into `secret`.
    pub token_secret_id: Option<String>,
    /// Secrets Manager secret holding the agent API key (`agent_key`).
    pub agent_key_secret_id: Option<String>,
    /// Secrets Manager secret holding the admin key (`admin_key`).
    pub admin_key_secret_id: Option<String>,
    /// Secrets Manager secret holding the widget's identity secret
    /// (`identity.secret`), for the API function.
    pub identity_secret_id: Option<String>,
    /// Secrets Manager secret holding the actions' secrets as a JSON
    /// object (`{"shop_token": "…"}`); merged into `action_secrets`.
    pub action_secrets_secret_id: Option<String>,
    /// Secrets Manager secret holding the console's agents (`[[agents]]`)
    /// as JSON: `[{"name": "Dana", "key": "…"}, …]`.
    pub agents_secret_id: Option<String>,
    /// Cap on one call of the shared clients (DynamoDB, SQS, SNS, SES,
    /// Secrets Manager), SDK retries included; unset: the SDK's default (no
    /// cap). Bedrock's clients have their own (`read_timeout_secs`).
    pub operation_timeout_secs: Option<u64>,
    /// Seconds of a worker invocation kept for finishing: every Bedrock
    /// call ends this long before the deadline, and a record starts only if
    /// its worst case fits before it.
    pub worker_reserve_secs: u64,
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
            token_secret_id: None,
            agent_key_secret_id: None,
            admin_key_secret_id: None,
            identity_secret_id: None,
            action_secrets_secret_id: None,
            agents_secret_id: None,
            operation_timeout_secs: None,
            worker_reserve_secs: 10,
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

/// The SDK configuration for `settings`, over one [`shared_http_client`].
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).http_client(shared_http_client());
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(secs) = settings.operation_timeout_secs {
        loader = loader.timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(secs.max(1)))
                .build(),
        );
    }
    loader.load().await
}

/// The HTTP client of every SDK client of this process: the SDK's default
/// (hyper 1, rustls with aws-lc, the platform's roots, proxies from the
/// environment), built once. The SDK validates its HTTP client whenever a
/// service client is built, and its validation builds and drops a whole
/// TLS connector (to load the roots early); here that happens for the
/// first client only. Connectors are still made per connection settings
/// (connect and read timeouts), as the SDK does, and pooled.
pub fn shared_http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_runtime_api::client::http::SharedHttpClient;
    static CLIENT: std::sync::LazyLock<SharedHttpClient> = std::sync::LazyLock::new(|| {
        use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig, tls};
        let inner = Builder::new().build_with_connector_fn(|settings, components| {
            let mut conn = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ));
            conn.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                conn.set_sleep_impl(components.sleep_impl());
            }
            conn.set_proxy_config(Some(ProxyConfig::from_env()));
            conn.build()
        });
        SharedHttpClient::new(OnceValidated {
            inner,
            validated: std::sync::OnceLock::new(),
        })
    });
    CLIENT.clone()
}

/// An HTTP client whose base-configuration check runs once per process.
#[derive(Debug)]
struct OnceValidated {
    inner: aws_smithy_runtime_api::client::http::SharedHttpClient,
    validated: std::sync::OnceLock<()>,
}

impl aws_smithy_runtime_api::client::http::HttpClient for OnceValidated {
    fn http_connector(
        &self,
        settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
        components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
    ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
        self.inner.http_connector(settings, components)
    }

    fn validate_base_client_config(
        &self,
        components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder,
        cfg: &aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if self.validated.set(()).is_ok() {
            self.inner.validate_base_client_config(components, cfg)
        } else {
            Ok(())
        }
    }

    fn validate_final_config(
        &self,
        components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.inner.validate_final_config(components, cfg)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

/// The connect timeout of `sdk`'s clients (the SDK's default, 3.1 s,
/// unless configured).
pub fn connect_timeout(sdk: &SdkConfig) -> Duration {
    sdk.timeout_config()
        .and_then(|t| t.connect_timeout())
        .unwrap_or(Duration::from_millis(3_100))
}

/// The secrets named by `aws.*_secret_id`, read from Secrets Manager
/// (concurrently; no call when none is configured): (token secret, agent
/// key, admin key, widget identity secret). A secret that is configured but cannot be read is an
/// error naming it, so the function fails its cold start instead of
/// serving without a key.
pub async fn resolve_secrets(
    sdk: &SdkConfig,
    settings: &AwsSettings,
) -> anyhow::Result<[Option<Secret>; 4]> {
    let ids = [
        (&settings.token_secret_id, "token_secret_id"),
        (&settings.agent_key_secret_id, "agent_key_secret_id"),
        (&settings.admin_key_secret_id, "admin_key_secret_id"),
        (&settings.identity_secret_id, "identity_secret_id"),
    ];
    if ids.iter().all(|(id, _)| id.is_none()) {
        return Ok([None, None, None, None]);
    }
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let read = |id: &Option<String>, key: &'static str| {
        let client = client.clone();
        let id = id.clone();
        async move {
            match id {
                None => Ok(None),
                Some(id) => read_secret(&client, &id, key).await.map(Some),
            }
        }
    };
    let (token, agent, admin, identity) = tokio::try_join!(
        read(ids[0].0, ids[0].1),
        read(ids[1].0, ids[1].1),
        read(ids[2].0, ids[2].1),
        read(ids[3].0, ids[3].1),
    )?;
    Ok([token, agent, admin, identity])
}

/// The actions' secrets named by `aws.action_secrets_secret_id` (one
/// `GetSecretValue`, at cold start): a JSON object of names to strings.
/// Values never appear in an error.
pub async fn resolve_action_secrets(
    sdk: &SdkConfig,
    settings: &AwsSettings,
) -> anyhow::Result<std::collections::BTreeMap<String, Secret>> {
    let Some(id) = &settings.action_secrets_secret_id else {
        return Ok(Default::default());
    };
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let raw = read_secret(&client, id, "action_secrets_secret_id").await?;
    parse_action_secrets(raw.expose())
        .with_context(|| format!("secret {id} (aws.action_secrets_secret_id)"))
}

/// `{"name": "value", …}` → secrets; anything else is an error that does
/// not quote the text.
pub fn parse_action_secrets(
    text: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, Secret>> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|_| anyhow::anyhow!("is not a JSON object of names to strings"))?;
    let obj = value
        .as_object()
        .context("is not a JSON object of names to strings")?;
    obj.iter()
        .map(|(k, v)| {
            v.as_str()
                .map(|s| (k.clone(), Secret::new(s)))
                .with_context(|| format!("value of {k:?} is not a string"))
        })
        .collect()
}

/// The console's agents from `aws.agents_secret_id`, if named: a JSON
/// list of `{name, key}`. A malformed value is an error that says where,
/// never what (it holds keys).
pub async fn resolve_agents(
    sdk: &SdkConfig,
    settings: &AwsSettings,
) -> anyhow::Result<Option<Vec<crate::api::console::AgentAccount>>> {
    let Some(id) = &settings.agents_secret_id else {
        return Ok(None);
    };
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let value = read_secret(&client, id, "agents_secret_id").await?;
    serde_json::from_str(value.expose()).map(Some).map_err(|e| {
        anyhow::anyhow!(
            "secret {id} (aws.agents_secret_id) is not a JSON list of {{\"name\", \"key\"}} \
             objects (line {}, column {}, {:?} error)",
            e.line(),
            e.column(),
            e.classify()
        )
    })
}

async fn read_secret(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
    key: &str,
) -> anyhow::Result<Secret> {
    let env = format!("DESKHAND_AWS__{}", key.to_ascii_uppercase());
    let out = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))
        .with_context(|| format!("reading secret {id} (aws.{key}, {env}) from Secrets Manager"))?;
    let value = out
        .secret_string()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .with_context(|| format!("secret {id} (aws.{key}, {env}) has no string value"))?;
    Ok(Secret::new(value))
}

tokio::task_local! {
    /// When the Bedrock calls of the current task must have ended.
    static CALL_DEADLINE: Instant;
}

/// Runs `f` with every Bedrock call in it (the generator's and the KB
/// retriever's, through [`call_timeout`]) bounded to end by `deadline`:
/// the worker passes its invocation's deadline less its reserve.
pub async fn with_call_deadline<F: Future>(deadline: Instant, f: F) -> F::Output {
    CALL_DEADLINE.scope(deadline, f).await
}

/// The time a call whose own cap is `configured` may take: `configured`,
/// or less when the current task has a call deadline
/// ([`with_call_deadline`]) that comes first. `None`: the deadline has
/// passed, and the call should not start.
pub fn call_timeout(configured: Duration) -> Option<Duration> {
    match CALL_DEADLINE.try_with(|d| d.saturating_duration_since(Instant::now())) {
        Err(_) => Some(configured),
        Ok(left) if left.is_zero() => None,
        Ok(left) => Some(configured.min(left)),
    }
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
