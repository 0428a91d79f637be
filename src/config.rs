//! Typed settings, loaded once at start-up from (later wins): built-in
//! defaults, a TOML file (`--config`, `DESKHAND_CONFIG`, or `deskhand.toml`
//! in the working directory), `DESKHAND_*` environment variables (nested
//! keys joined by `__`, e.g. `DESKHAND_PIPELINE__MIN_CONFIDENCE=0.6`), and
//! command-line flags. Unknown keys are errors, so a typo does not silently
//! fall back to a default. Secrets never print.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::knowledge::bedrock_kb::KbSettings;
use crate::llm::bedrock::BedrockSettings;
use crate::llm::extractive::Calibration;
use crate::llm::openai::OpenAiSettings;

/// A secret string: usable, never printed or logged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

/// All settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where `serve` listens.
    pub addr: SocketAddr,
    /// Folder for the SQLite file, the generated secret and the index.
    pub data_dir: PathBuf,
    /// The knowledge-base folder (Markdown and text files).
    pub kb_dir: PathBuf,
    /// Signs conversation tokens; generated into `data_dir` when unset.
    pub secret: Option<Secret>,
    /// Worker tasks in `serve`.
    pub workers: usize,
    /// Origins allowed to call the API from a browser (`*` for any).
    pub cors_origins: Vec<String>,
    /// Request and content limits.
    pub limits: Limits,
    /// Queue behaviour.
    pub queue: QueueSettings,
    /// Retrieval, rules and the confidence gate.
    pub pipeline: PipelineSettings,
    /// Which generator answers.
    pub generator: GeneratorSettings,
    /// Which retriever finds passages.
    pub retriever: RetrieverSettings,
    /// Where escalations go.
    pub escalation: EscalationSettings,
    /// Inbound email and helpdesk channels.
    pub inbound: crate::ingest::InboundSettings,
    /// Replies back to email and helpdesks, and the outbox dispatcher.
    pub outbound: crate::outbox::OutboundSettings,
    /// Agents' API key (agent replies, close, hand back).
    pub agent_key: Option<Secret>,
    /// Administrators' API key (stats, metrics).
    pub admin_key: Option<Secret>,
    /// Agents who sign in to the console at `/agent`, each with their own
    /// key (`[[agents]]`); without any, `agent_key` signs everyone in.
    pub agents: Vec<crate::api::console::AgentAccount>,
    /// The agent console.
    pub console: crate::api::console::ConsoleSettings,
    /// How resolutions are counted (`deskhand stats`, `/v1/stats`).
    pub resolution: crate::resolution::ResolutionSettings,
    /// AWS resources (the AWS path; Bedrock in any mode).
    pub aws: crate::aws::AwsSettings,
    /// Model and AWS prices for `deskhand cost` and `GET /v1/stats`.
    pub prices: crate::cost::Prices,
    /// Metrics: CloudWatch EMF lines from the worker on Lambda.
    pub metrics: crate::metrics::MetricsSettings,
    /// Widget identity verification (`identity.secret`).
    pub identity: crate::actions::IdentitySettings,
    /// Actions: calls to the business's own systems (`[[actions]]`).
    pub actions: Vec<crate::actions::ActionSpec>,
    /// Secrets the actions name as `${secret:NAME}`.
    pub action_secrets: BTreeMap<String, Secret>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from(".deskhand"),
            kb_dir: PathBuf::from("fixtures/kb"),
            secret: None,
            workers: 4,
            cors_origins: Vec::new(),
            limits: Limits::default(),
            queue: QueueSettings::default(),
            pipeline: PipelineSettings::default(),
            generator: GeneratorSettings::default(),
            retriever: RetrieverSettings::default(),
            escalation: EscalationSettings::default(),
            inbound: Default::default(),
            outbound: Default::default(),
            agent_key: None,
            admin_key: None,
            agents: Vec::new(),
            console: Default::default(),
            resolution: Default::default(),
            aws: Default::default(),
            prices: Default::default(),
            metrics: Default::default(),
            identity: Default::default(),
            actions: Vec::new(),
            action_secrets: BTreeMap::new(),
        }
    }
}

/// Request and content limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Longest customer message, in characters (400 above).
    pub max_message_chars: usize,
    /// Messages returned by one poll.
    pub max_poll_messages: usize,
    /// Requests a minute from one client address in `serve` (0: no limit).
    pub per_ip_per_minute: u32,
    /// Messages a minute into one conversation in `serve` (0: no limit).
    pub per_conversation_per_minute: u32,
    /// Take the client address from `X-Forwarded-For` (behind a proxy you
    /// run): its right-most entry that is not in `trusted_proxies`.
    pub trust_forwarded_for: bool,
    /// Addresses or CIDR ranges of the proxies in front of `serve`
    /// (`"10.0.0.0/8"`, `"127.0.0.1"`). With `trust_forwarded_for`, hops
    /// they added are skipped, and a connection from anywhere else is
    /// keyed by its own address. Empty: the peer is the one proxy.
    pub trusted_proxies: Vec<String>,
    /// Seconds a client has to send a request's headers (or to start the
    /// next one on a kept-alive connection) before `serve` closes it.
    pub header_read_timeout_secs: u64,
    /// Seconds from a request's headers to its response in `serve` (408 after).
    pub request_timeout_secs: u64,
    /// Longest pause, in seconds, between two pieces of a request body in
    /// `serve` (408 after).
    pub body_timeout_secs: u64,
    /// Requests `serve` handles at once; more get 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Connections `serve` keeps open at once; more wait to be accepted.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_message_chars: 4_000,
            max_poll_messages: 100,
            per_ip_per_minute: 600,
            per_conversation_per_minute: 20,
            trust_forwarded_for: false,
            trusted_proxies: Vec::new(),
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
            body_timeout_secs: 10,
            max_concurrent_requests: 256,
            max_connections: 512,
        }
    }
}

impl Limits {
    fn validate(&self) -> anyhow::Result<()> {
        for (name, v) in [
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            (
                "max_concurrent_requests",
                self.max_concurrent_requests as u64,
            ),
            ("max_connections", self.max_connections as u64),
        ] {
            anyhow::ensure!(v > 0, "limits.{name} must be at least 1");
        }
        crate::api::ratelimit::Proxies::parse(&self.trusted_proxies).map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

/// Queue behaviour (local queue; the SQS equivalents live in the template).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Seconds a received message stays hidden; also the ticket lease.
    pub visibility_timeout_secs: u64,
    /// Receives before a message goes to the dead-letter queue.
    pub max_receives: u32,
    /// Largest envelope; longer text is cut with a marker.
    pub max_message_bytes: usize,
    /// First retry delay, milliseconds; doubles per attempt, with jitter.
    pub backoff_base_ms: u64,
    /// Longest retry delay, seconds.
    pub backoff_max_secs: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout_secs: 60,
            max_receives: 5,
            max_message_bytes: 256 * 1024,
            backoff_base_ms: 1_000,
            backoff_max_secs: 300,
        }
    }
}

/// Retrieval, rules and the confidence gate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    /// Earlier messages given to the generator.
    pub history_turns: usize,
    /// Passages retrieved.
    pub top_k: usize,
    /// Passage text given to an LLM is cut to this many characters.
    pub max_passage_chars: usize,
    /// Answers below this confidence go to a human (`low_confidence`).
    pub min_confidence: f32,
    /// Below this best-passage relevance the KB is taken not to cover the
    /// question (`no_knowledge`), and no model is called.
    pub min_relevance: f32,
    /// VADER compound score at or below which a message counts as upset.
    pub negative_sentiment: f64,
    /// Extra phrases (case-insensitive) that ask for a person.
    pub human_phrases: Vec<String>,
    /// Topic → words or phrases; any match escalates as `sensitive_topic`.
    pub sensitive_topics: BTreeMap<String, Vec<String>>,
    /// What the customer sees when a ticket goes to a person.
    pub holding_message: String,
    /// What a chat customer sees when a question goes to a person but the
    /// bot keeps answering (`no_knowledge`, `low_confidence`,
    /// `unsupported_language`).
    pub chat_holding_message: String,
    /// Replies to greetings, thanks, acknowledgements and goodbyes, by
    /// language (`en`, `es`, `fr`, `de`, `pt`, `it`, `nl`); a missing text
    /// falls back to English.
    pub act_replies: BTreeMap<String, crate::pipeline::acts::ActReplies>,
    /// Use internal (agent-facing) KB content in answers: documents marked
    /// `audience: internal` or titled so, internal sections, and text in an
    /// agent's voice ("Instruct the customer…"). Off: they never reach a
    /// customer.
    pub answer_from_internal: bool,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        let topics = [
            (
                "legal",
                &[
                    "lawyer",
                    "attorney",
                    "lawsuit",
                    "sue",
                    "suing",
                    "legal action",
                    "court",
                    "solicitor",
                    "abogado",
                    "abogada",
                    "demanda judicial",
                    "demandar",
                    "avocat",
                    "avocate",
                    "procès",
                    "poursuites judiciaires",
                    "anwalt",
                    "anwältin",
                    "rechtsanwalt",
                    "verklagen",
                    "vor gericht",
                    "advogado",
                    "advogada",
                    "processo judicial",
                    "processar vocês",
                    "tribunal",
                ][..],
            ),
            (
                "security",
                &[
                    "hacked",
                    "hacker",
                    "hijacked",
                    "compromised",
                    "unauthorized access",
                    "unauthorised access",
                    "someone got into my account",
                    "someone logged into my account",
                    "someone logged in to my account",
                    "someone accessed my account",
                    "someone has access to my account",
                    "someone is in my account",
                    "someone changed my password",
                    "someone else logged in",
                    "took over my account",
                    "account takeover",
                    "account was taken over",
                    "data breach",
                    "breach",
                    "data leak",
                    "leaked my data",
                    "my data was leaked",
                    "my data has been leaked",
                    "data was exposed",
                    "exposed my data",
                    "phishing",
                    "stolen account",
                    "sim swap",
                    "hackeado",
                    "hackeada",
                    "hackearon",
                    "piraté",
                    "piratée",
                    "piratage",
                    "gehackt",
                    "invadida",
                    "invadiram",
                ][..],
            ),
            (
                "fraud",
                &[
                    "fraud",
                    "fraudulent",
                    "identity theft",
                    "didn't make this purchase",
                    "didnt make this purchase",
                    "did not make this purchase",
                    "didn't make this payment",
                    "did not make this payment",
                    "never made this purchase",
                    "didn't authorize",
                    "didn't authorise",
                    "did not authorize",
                    "did not authorise",
                    "never authorized",
                    "never authorised",
                    "unauthorized charge",
                    "unauthorised charge",
                    "unauthorized charges",
                    "unauthorised charges",
                    "unauthorized payment",
                    "unauthorized transaction",
                    "someone used my card",
                    "someone is using my card",
                    "someone used my credit card",
                    "my card was stolen",
                    "stolen card",
                    "don't recognize this charge",
                    "don't recognise this charge",
                    "do not recognize this charge",
                    "fraude",
                    "betrug",
                    "no reconozco este cargo",
                    "no hice esta compra",
                    "je n'ai pas fait cet achat",
                    "nicht autorisiert",
                    "não fiz essa compra",
                    "não reconheço",
                ][..],
            ),
            (
                "bereavement",
                &[
                    "passed away",
                    "has died",
                    "have died",
                    "had died",
                    "who died",
                    "died recently",
                    "recently died",
                    "died last",
                    "husband died",
                    "wife died",
                    "partner died",
                    "father died",
                    "mother died",
                    "dad died",
                    "mum died",
                    "mom died",
                    "son died",
                    "daughter died",
                    "brother died",
                    "sister died",
                    "deceased",
                    "bereavement",
                    "death certificate",
                    "probate",
                    "falleció",
                    "fallecido",
                    "fallecida",
                    "décédé",
                    "décédée",
                    "décès",
                    "verstorben",
                    "verstorbene",
                    "ist gestorben",
                    "faleceu",
                    "falecido",
                    "falecida",
                ][..],
            ),
            (
                "payment_dispute",
                &[
                    "chargeback",
                    "charge back",
                    "dispute the charge",
                    "dispute this charge",
                    "disputing",
                    "dispute with my bank",
                    "contracargo",
                    "rétrofacturation",
                    "rückbuchung",
                ][..],
            ),
            (
                "self_harm",
                &[
                    "suicide",
                    "suicidal",
                    "kill myself",
                    "self-harm",
                    "self harm",
                    "end my life",
                    "suicidio",
                    "quitarme la vida",
                    "me suicider",
                    "selbstmord",
                    "suizid",
                    "mich umbringen",
                    "suicídio",
                    "me matar",
                ][..],
            ),
            (
                "press",
                &[
                    "journalist",
                    "reporter",
                    "press inquiry",
                    "press enquiry",
                    "media inquiry",
                    "for an article",
                    "periodista",
                    "journaliste",
                    "journalistin",
                    "jornalista",
                ][..],
            ),
        ];
        Self {
            history_turns: 10,
            top_k: 5,
            max_passage_chars: 1_500,
            min_confidence: 0.5,
            min_relevance: 0.2,
            negative_sentiment: -0.7,
            human_phrases: Vec::new(),
            sensitive_topics: topics
                .iter()
                .map(|(t, ws)| (t.to_string(), ws.iter().map(|w| w.to_string()).collect()))
                .collect(),
            holding_message: "Thanks for your patience. I've passed this to our support team, and a person will follow up here.".into(),
            chat_holding_message: "I couldn't find an answer to that, so I've passed it to our support team, and a person will follow up here. In the meantime, feel free to ask me something else.".into(),
            act_replies: crate::pipeline::acts::default_replies(),
            answer_from_internal: false,
        }
    }
}

/// Which generator answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorKind {
    /// Sentences from the knowledge base; no model.
    #[default]
    Extractive,
    /// An OpenAI-compatible chat-completions endpoint.
    Openai,
    /// Amazon Bedrock `Converse` (Nova Lite unless configured).
    Bedrock,
}

/// Generator settings: `kind` picks one; its section configures it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorSettings {
    /// Which one.
    pub kind: GeneratorKind,
    /// The extractive generator's confidence calibration.
    pub extractive: Calibration,
    /// Required when `kind = "openai"`.
    pub openai: Option<OpenAiSettings>,
    /// Used when `kind = "bedrock"`; every key has a default.
    pub bedrock: Option<BedrockSettings>,
    /// The circuit breaker in front of model generators (openai, bedrock).
    pub breaker: crate::llm::breaker::BreakerSettings,
}

/// Which retriever finds passages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetrieverKind {
    /// The embedded full-text index over `kb_dir`.
    #[default]
    Tantivy,
    /// An Amazon Bedrock Knowledge Base (`Retrieve`).
    BedrockKb,
}

/// Retriever settings: `kind` picks one; its section configures it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrieverSettings {
    /// Which one.
    pub kind: RetrieverKind,
    /// Required when `kind = "bedrock_kb"`.
    pub bedrock_kb: Option<KbSettings>,
    /// Passage vectors for the embedded index (hybrid retrieval); none by
    /// default.
    pub embedder: crate::knowledge::embed::EmbedderSettings,
    /// The KB published by `deskhand kb publish --s3` (the Lambda worker
    /// opens it at cold start and follows its pointer; `kb_dir` is the
    /// fallback while nothing is published).
    pub bundle: Option<crate::knowledge::bundle::BundleSettings>,
    /// Brand or product labels by provider or channel name (`widget =
    /// ["acme"]`, `zendesk = ["bolt"]`): tickets from there are answered
    /// from passages with one of those labels, or with none.
    pub labels: BTreeMap<String, Vec<String>>,
    /// Brands a widget may ask for with `data-brand` (its conversations
    /// are answered from passages labelled with that brand, or with no
    /// label); an unknown brand is refused with a 400. Empty: no widget
    /// may choose one.
    pub brands: Vec<String>,
    /// `serve` polls the KB folder this often (milliseconds) and re-indexes
    /// changed files; 0 turns it off. Default 2000.
    pub watch_ms: Option<u64>,
}

/// Payload shape of the escalation webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{text, blocks}` for a Slack (or Mattermost, Rocket.Chat) incoming
    /// webhook, with the full escalation under `deskhand`.
    #[default]
    Slack,
    /// The escalation object alone.
    Json,
}

/// Where escalations go (always also a log line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationSettings {
    /// Incoming-webhook URL; a secret, since it authorizes posting.
    pub webhook_url: Option<Secret>,
    /// Its payload shape.
    pub webhook_format: WebhookFormat,
    /// Seconds before a webhook call is abandoned (and retried later).
    pub webhook_timeout_secs: u64,
}

impl Default for EscalationSettings {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_format: WebhookFormat::Slack,
            webhook_timeout_secs: 10,
        }
    }
}

impl Config {
    /// Loads defaults ← `file` (or `deskhand.toml` if present) ←
    /// environment ← `overrides` (flags actually given).
    pub fn load(file: Option<&Path>, overrides: &serde_json::Value) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                anyhow::ensure!(path.is_file(), "config file {} not found", path.display());
                fig = fig.merge(Toml::file(path));
            }
            None if Path::new("deskhand.toml").is_file() => {
                fig = fig.merge(Toml::file("deskhand.toml"))
            }
            None => {}
        }
        fig = fig.merge(
            Env::prefixed("DESKHAND_")
                .ignore(&["config", "log", "log_format"])
                .split("__"),
        );
        if overrides.as_object().is_some_and(|o| !o.is_empty()) {
            fig = fig.merge(Serialized::defaults(overrides));
        }
        let config: Config = fig.extract().context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    /// Settings from a TOML document alone (defaults beneath, no environment
    /// or flags): what a configuration file parses to.
    pub fn from_toml_str(text: &str) -> anyhow::Result<Self> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let p = &self.pipeline;
        anyhow::ensure!(
            (0.0..=1.0).contains(&p.min_confidence),
            "pipeline.min_confidence must be within 0..=1"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&p.min_relevance),
            "pipeline.min_relevance must be within 0..=1"
        );
        anyhow::ensure!(
            (-1.0..=1.0).contains(&p.negative_sentiment),
            "pipeline.negative_sentiment must be within -1..=1"
        );
        anyhow::ensure!(p.top_k > 0, "pipeline.top_k must be at least 1");
        for b in &self.retriever.brands {
            crate::domain::Brand::parse(b)
                .map_err(|e| anyhow::anyhow!("retriever.brands: {b:?}: {e}"))?;
        }
        crate::api::console::validate(self)?;
        self.resolution.validate()?;
        anyhow::ensure!(
            self.queue.max_receives > 0,
            "queue.max_receives must be at least 1"
        );
        anyhow::ensure!(
            self.queue.visibility_timeout_secs > 0,
            "queue.visibility_timeout_secs must be at least 1"
        );
        anyhow::ensure!(self.workers > 0, "workers must be at least 1");
        anyhow::ensure!(
            self.limits.max_body_bytes >= 1024,
            "limits.max_body_bytes must be at least 1024"
        );
        self.limits.validate()?;
        if self.generator.kind == GeneratorKind::Openai {
            anyhow::ensure!(
                self.generator.openai.is_some(),
                "generator.kind is \"openai\" but [generator.openai] is missing"
            );
        }
        self.outbound.validate()?;
        anyhow::ensure!(
            self.inbound.max_event_age_hours > 0
                && self.inbound.max_event_age_hours < u64::from(self.aws.retention_days) * 24,
            "inbound.max_event_age_hours must be at least 1 and below aws.retention_days × 24 \
             (older events would outlive their dedup records)"
        );
        if let Some(sendgrid) = &self.inbound.sendgrid {
            sendgrid.validate().map_err(anyhow::Error::msg)?;
        }
        if let Some(s) = &self.identity.secret {
            anyhow::ensure!(
                s.expose().len() >= 16,
                "identity.secret must be at least 16 characters"
            );
        }
        // Secrets read from Secrets Manager at cold start are checked then.
        crate::actions::Actions::check(
            &self.actions,
            &self.action_secrets,
            self.aws.action_secrets_secret_id.is_none(),
        )?;
        if let Some(bundle) = &self.retriever.bundle {
            crate::knowledge::bundle::S3Location::parse(&bundle.s3)
                .context("retriever.bundle.s3")?;
        }
        if self.retriever.kind == RetrieverKind::BedrockKb {
            self.retriever
                .bedrock_kb
                .as_ref()
                .context("retriever.kind is \"bedrock_kb\" but [retriever.bedrock_kb] is missing")?
                .validate()?;
        }
        Ok(())
    }

    /// The SQLite file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("deskhand.db")
    }

    /// The configured token secret, or the one generated into `data_dir`
    /// on first start (mode 0600).
    pub fn token_secret(&self) -> anyhow::Result<Secret> {
        if let Some(s) = &self.secret {
            anyhow::ensure!(
                s.expose().len() >= 16,
                "secret must be at least 16 characters"
            );
            return Ok(s.clone());
        }
        let path = self.data_dir.join("secret");
        if let Ok(s) = std::fs::read_to_string(&path) {
            let s = s.trim().to_owned();
            anyhow::ensure!(
                s.len() >= 16,
                "{} is too short to be a secret",
                path.display()
            );
            return Ok(Secret(s));
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        let value = hex::encode(rand::random::<[u8; 32]>());
        write_private(&path, &value)?;
        Ok(Secret(value))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, value: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(value.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, value: &str) -> anyhow::Result<()> {
    std::fs::write(path, value).with_context(|| format!("creating {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API
    fn layers_apply_in_order_and_typos_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "deskhand.toml",
                "workers = 2\n[pipeline]\nmin_confidence = 0.7\n",
            )?;
            jail.set_env("DESKHAND_PIPELINE__TOP_K", "7");
            jail.set_env("DESKHAND_WORKERS", "3");
            let flags = serde_json::json!({"addr": "127.0.0.1:9999"});
            let c = Config::load(None, &flags).map_err(|e| e.to_string())?;
            assert_eq!(c.workers, 3, "env beats file");
            assert_eq!(c.pipeline.min_confidence, 0.7);
            assert_eq!(c.pipeline.top_k, 7);
            assert_eq!(c.addr.port(), 9999);

            jail.create_file("typo.toml", "[pipeline]\nmin_confidense = 0.7\n")?;
            let err = format!(
                "{:#}",
                Config::load(Some(Path::new("typo.toml")), &serde_json::Value::Null).unwrap_err()
            );
            assert!(err.contains("min_confidense"), "{err}");

            jail.create_file("bad.toml", "[pipeline]\nmin_confidence = 7\n")?;
            let err = format!(
                "{:#}",
                Config::load(Some(Path::new("bad.toml")), &serde_json::Value::Null).unwrap_err()
            );
            assert!(err.contains("min_confidence must be within"), "{err}");

            jail.create_file("garbage.toml", "\u{0}[[[ = = =")?;
            assert!(
                Config::load(Some(Path::new("garbage.toml")), &serde_json::Value::Null).is_err()
            );
            assert!(
                Config::load(Some(Path::new("missing.toml")), &serde_json::Value::Null).is_err()
            );
            Ok(())
        });
    }

    #[test]
    fn the_example_file_loads_and_garbage_is_an_error() {
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/config/example.toml"
        ))
        .unwrap();
        let c = Config::from_toml_str(&example).unwrap();
        assert_eq!(c.generator.kind, GeneratorKind::Openai);
        assert_eq!(c.pipeline.sensitive_topics["press"], ["journalist"]);
        assert_eq!(
            c.retriever.embedder.kind,
            crate::knowledge::embed::EmbedderKind::Openai
        );
        let openai = c.retriever.embedder.openai.unwrap();
        assert_eq!(openai.marking, crate::knowledge::embed::Marking::InputType);
        assert_eq!(openai.model, "multilingual-e5-small");
        for bad in [
            "[[[",
            "workers = -1",
            "workers = \"four\"",
            "addr = 5",
            "[pipeline]\nmin_relevance = 2",
            "\u{0}",
        ] {
            assert!(Config::from_toml_str(bad).is_err(), "{bad:?} loaded");
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2-hunter2-hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        let c = Config {
            secret: Some(s),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));
    }

    #[test]
    fn generated_secret_is_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config {
            data_dir: dir.path().join("d"),
            ..Config::default()
        };
        let a = c.token_secret().unwrap();
        let b = c.token_secret().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.expose().len(), 64);
    }
}
