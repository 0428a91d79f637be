//! The AWS front doors: the SQS worker, the outbox dispatcher and the HTTP
//! API on Lambda, over DynamoDB, SQS FIFO and SNS. Clients are built once per cold start by
//! [`AwsRuntime::from_config`]; the binaries in `src/bin/` only wire.

pub mod dispatcher;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::api::{self, ApiState, Tokens};
use crate::aws::{AwsSettings, sdk_config};
use crate::config::{Config, GeneratorKind, RetrieverKind};
use crate::knowledge::Retriever;
use crate::knowledge::bundle::{self, LiveIndex};
use crate::llm::Generator;
use crate::metrics::{MeteredStore, Metrics};
use crate::notify::{Escalator, KeepDrafts, LogThen, SnsEscalator};
use crate::outbox::{Couriers, DispatchSettings, Dispatcher, OutboundPolicy};
use crate::pipeline::Pipeline;
use crate::queue::SqsQueue;
use crate::runtime::{self, Aws};
use crate::store::{DynamoConversationLimiter, DynamoStore};
use crate::worker::Backoff;

/// The longest the worker's init waits for its warm-up ([`AwsRuntime::warm_up`]).
pub const WARM_UP: Duration = Duration::from_millis(250);

/// Everything the AWS functions use, built once.
#[derive(Clone)]
pub struct AwsRuntime {
    /// Settings.
    pub config: Arc<Config>,
    /// The shared SDK configuration every client is built from.
    pub sdk: aws_config::SdkConfig,
    /// The DynamoDB store.
    pub store: DynamoStore,
    /// The SQS queue (with its dead-letter queue).
    pub queue: SqsQueue,
    /// SNS escalations (after a log line).
    pub escalator: Arc<dyn Escalator>,
    /// The published KB (`[retriever.bundle]`), opened at cold start.
    pub kb: Option<Arc<LiveIndex>>,
    /// The question embedder (`[retriever.embedder]`), used with a
    /// bundle's passage vectors.
    pub embedder: Option<Arc<dyn crate::knowledge::embed::Embedder>>,
}

impl AwsRuntime {
    /// What every Lambda binary does first: logging, the configuration
    /// (the TOML file `DESKHAND_CONFIG` names, e.g. `/opt/deskhand.toml`
    /// shipped in the KB layer for settings an environment variable cannot
    /// carry well, such as `[[actions]]`; then the environment), the
    /// clients. Panics with the reason, which the Lambda runtime reports as
    /// an init error.
    pub async fn init() -> Self {
        crate::telemetry::init();
        let file = std::env::var_os("DESKHAND_CONFIG").map(std::path::PathBuf::from);
        let config = Config::load(file.as_deref(), &serde_json::Value::Null)
            .expect("configuration is valid");
        Self::from_config(config)
            .await
            .expect("AWS clients can be built")
    }

    /// Builds the SDK clients and adapters from `config.aws`, and reads
    /// the secrets it names from Secrets Manager (`aws.token_secret_id`,
    /// `aws.agent_key_secret_id`, `aws.admin_key_secret_id`,
    /// `aws.agents_secret_id` (the console's agents, JSON): one
    /// `GetSecretValue` each, concurrently, only those configured). A
    /// secret both named and given directly is an error.
    pub async fn from_config(mut config: Config) -> anyhow::Result<Self> {
        let sdk = sdk_config(&config.aws).await;
        // Questions are embedded (Bedrock InvokeModel, or an
        // OpenAI-compatible server) only when the bundle ships passage
        // vectors of the same embedder; the KB itself never is, here.
        let embedder =
            crate::knowledge::embed::from_settings(&config.retriever.embedder, &config.aws)?;
        // The published KB downloads while the secrets are read.
        let kb = async {
            match (&config.retriever.kind, &config.retriever.bundle) {
                (RetrieverKind::Tantivy, Some(settings)) => {
                    let client = bundle::s3_client(&sdk, config.aws.endpoint_url.is_some());
                    let kb_dir = config.kb_dir.clone();
                    let internal = config.pipeline.answer_from_internal;
                    let layer_embedder = embedder.clone();
                    LiveIndex::start_with(client, settings, internal, embedder.clone(), move || {
                        bundle::layer_retriever(&kb_dir, internal, layer_embedder.as_ref())
                    })
                    .await
                    .map(|live| Some(Arc::new(live)))
                }
                _ => Ok(None),
            }
        };
        let (secrets, kb) = tokio::join!(crate::aws::resolve_secrets(&sdk, &config.aws), kb);
        let [token, agent, admin, identity] = secrets?;
        let kb = kb?;
        for (value, slot, name) in [
            (
                token,
                &mut config.secret,
                "secret (DESKHAND_SECRET) and aws.token_secret_id",
            ),
            (
                agent,
                &mut config.agent_key,
                "agent_key (DESKHAND_AGENT_KEY) and aws.agent_key_secret_id",
            ),
            (
                admin,
                &mut config.admin_key,
                "admin_key (DESKHAND_ADMIN_KEY) and aws.admin_key_secret_id",
            ),
            (
                identity,
                &mut config.identity.secret,
                "identity.secret (DESKHAND_IDENTITY__SECRET) and aws.identity_secret_id",
            ),
        ] {
            if let Some(value) = value {
                anyhow::ensure!(slot.is_none(), "both {name} are set; keep one");
                *slot = Some(value);
            }
        }
        if let Some(s) = &config.identity.secret {
            anyhow::ensure!(
                s.expose().len() >= 16,
                "identity.secret must be at least 16 characters"
            );
        }
        for (name, value) in crate::aws::resolve_action_secrets(&sdk, &config.aws).await? {
            anyhow::ensure!(
                !config.action_secrets.contains_key(&name),
                "action secret {name} is set both in action_secrets and aws.action_secrets_secret_id; keep one"
            );
            config.action_secrets.insert(name, value);
        }
        // Now every `${secret:…}` must resolve.
        crate::actions::Actions::new(&config.actions, config.action_secrets.clone())?;
        if let Some(agents) = crate::aws::resolve_agents(&sdk, &config.aws).await? {
            anyhow::ensure!(
                config.agents.is_empty(),
                "both [[agents]] and aws.agents_secret_id are set; keep one"
            );
            config.agents = agents;
            crate::api::console::validate(&config.api())?;
        }
        let aws = &config.aws;
        let table = AwsSettings::require(&aws.table, "table")?;
        let queue_url = AwsSettings::require(&aws.queue_url, "queue_url")?;
        let topic = AwsSettings::require(&aws.topic_arn, "topic_arn")?;
        let store = DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            table,
            Duration::from_secs(u64::from(aws.retention_days) * 86_400),
        );
        let queue = SqsQueue::new(
            aws_sdk_sqs::Client::new(&sdk),
            queue_url,
            aws.dlq_url.clone(),
            config.queue.max_message_bytes,
        );
        let escalator: Arc<dyn Escalator> = Arc::new(KeepDrafts::new(
            Arc::new(LogThen::new(Some(Box::new(SnsEscalator::new(
                aws_sdk_sns::Client::new(&sdk),
                topic,
            ))))),
            Arc::new(store.clone()),
        ));
        Ok(Self {
            config: Arc::new(config),
            sdk,
            store,
            queue,
            escalator,
            kb,
            embedder,
        })
    }

    /// The retriever the configuration asks for: a Bedrock Knowledge Base;
    /// the KB published to S3 (`[retriever.bundle]`, opened at cold start,
    /// followed while warm); or the KB folder (the template's layer at
    /// `/opt`): its prebuilt index when it ships one, else its Markdown
    /// indexed in memory.
    pub fn retriever(&self) -> anyhow::Result<Arc<dyn Retriever>> {
        runtime::bedrock_or(&self.config, Aws::Shared(&self.sdk), || match &self.kb {
            Some(live) => Ok(live.clone()),
            None => Ok(Arc::new(bundle::layer_retriever(
                &self.config.kb_dir,
                self.config.pipeline.answer_from_internal,
                self.embedder.as_ref(),
            )?)),
        })
    }

    /// The generator the configuration asks for; Bedrock's client comes
    /// from the shared SDK configuration.
    pub fn generator(&self) -> anyhow::Result<Arc<dyn Generator>> {
        runtime::generator(&self.config, Aws::Shared(&self.sdk))
    }

    /// The ticket pipeline over these adapters.
    pub fn pipeline(&self) -> anyhow::Result<Arc<Pipeline>> {
        self.pipeline_over(Arc::new(self.store.clone()))
    }

    fn pipeline_over(&self, store: Arc<dyn crate::store::Store>) -> anyhow::Result<Arc<Pipeline>> {
        let responder = runtime::responder(&self.config, self.retriever()?, self.generator()?)?;
        Ok(Arc::new(
            Pipeline::new(store, self.escalator.clone(), responder)
                .with_outbound(OutboundPolicy::from_settings(&self.config.outbound)),
        ))
    }

    /// The outbox dispatcher over these adapters (SES from the shared SDK
    /// configuration).
    pub fn dispatcher(&self) -> anyhow::Result<Arc<Dispatcher>> {
        let channels = Couriers::from_settings(&self.config.outbound, Some(&self.sdk))?;
        Ok(Arc::new(Dispatcher::new(
            Arc::new(self.store.clone()),
            Arc::new(self.store.clone()),
            self.escalator.clone(),
            channels,
            DispatchSettings::from_settings(&self.config.outbound),
        )))
    }

    /// What the worker's first ticket would otherwise pay, paid at init:
    /// one `GetItem` of a key no item has (the connection to DynamoDB, the
    /// client's credentials, endpoint and TLS set-up) while the pipeline's
    /// pure parts run once on a made-up message ([`Pipeline::warm_up`]).
    /// Bounded by [`WARM_UP`]; failures are ignored (the tickets report
    /// their own).
    pub async fn warm_up(&self, ctx: &worker::WorkerContext) {
        let store = self.store.warm_up();
        let code = async { ctx.pipeline.warm_up() };
        let _ = tokio::time::timeout(WARM_UP, async { tokio::join!(store, code) }).await;
    }

    /// The worker's context; it prints EMF metrics lines unless
    /// `metrics.emf` is off.
    pub fn worker(&self) -> anyhow::Result<worker::WorkerContext> {
        let metrics = Metrics::lambda(&self.config.metrics);
        Ok(worker::WorkerContext {
            pipeline: self.pipeline_over(Arc::new(MeteredStore::new(
                Arc::new(self.store.clone()),
                metrics.clone(),
            )))?,
            metrics,
            queue: self.queue.clone(),
            max_receives: self.config.queue.max_receives,
            backoff: Backoff::from_config(&self.config.queue),
            group_concurrency: worker::GROUP_CONCURRENCY,
            budget: self.worker_budget(),
        })
    }

    /// The worker's time budget: the reserve, and the worst case of one
    /// record: the KB `Retrieve` call and the `Converse` call at their caps
    /// (connect + read timeout each), plus the reserve for the store writes
    /// around them.
    pub fn worker_budget(&self) -> worker::Budget {
        let reserve = Duration::from_secs(self.config.aws.worker_reserve_secs);
        let connect = crate::aws::connect_timeout(&self.sdk);
        let mut record = reserve;
        if self.config.generator.kind == GeneratorKind::Bedrock {
            let b = self.config.generator.bedrock.clone().unwrap_or_default();
            record += b.operation_timeout(connect);
        }
        if self.config.retriever.kind == RetrieverKind::BedrockKb
            && let Some(kb) = &self.config.retriever.bedrock_kb
        {
            record += kb.operation_timeout(connect);
        }
        worker::Budget { reserve, record }
    }

    /// The HTTP API router over these adapters, with Mailgun's tokens and
    /// the per-conversation limit kept in the table.
    pub fn router(&self) -> anyhow::Result<axum::Router> {
        let secret = self
            .config
            .secret
            .clone()
            .context("secret is not set (DESKHAND_SECRET)")?;
        let mut state = ApiState::new(
            Arc::new(self.store.clone()),
            Arc::new(self.queue.clone()),
            Tokens::new(secret),
            Arc::new(self.config.api()),
        )
        .with_replay_guard(Arc::new(self.store.clone()))
        .with_people(Arc::new(self.store.clone()))
        .with_embedder(runtime::gap_embedder(&self.config));
        // Lambda instances share no memory: the conversation limit is
        // counted in the table.
        let per_minute = self.config.limits.per_conversation_per_minute;
        if per_minute > 0 {
            state = state.with_conversation_limiter(Arc::new(DynamoConversationLimiter::new(
                self.store.clone(),
                per_minute,
            )));
        }
        Ok(api::router(state))
    }
}
