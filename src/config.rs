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

pub use crate::api::Limits;
pub use crate::knowledge::{RetrieverKind, RetrieverSettings};
pub use crate::llm::{GeneratorKind, GeneratorSettings};
pub use crate::notify::{EscalationSettings, WebhookFormat};
pub use crate::pipeline::PipelineSettings;
pub use crate::queue::QueueSettings;
use crate::secret::Secret;

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
        crate::api::console::validate(&self.api())?;
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

    /// The sections the API's handlers read.
    pub fn api(&self) -> crate::api::ApiSettings {
        crate::api::ApiSettings {
            cors_origins: self.cors_origins.clone(),
            limits: self.limits.clone(),
            agent_key: self.agent_key.clone(),
            admin_key: self.admin_key.clone(),
            agents: self.agents.clone(),
            console: self.console.clone(),
            inbound: self.inbound.clone(),
            outbound: self.outbound.clone(),
            brands: self.retriever.brands.clone(),
            identity: self.identity.clone(),
            resolution: self.resolution,
            pricing: self.pricing(),
        }
    }

    /// The price table and the deployment as configured.
    pub fn pricing(&self) -> crate::cost::Pricing {
        crate::cost::Pricing {
            prices: self.prices.clone(),
            deployment: crate::cost::Deployment::with_emf_metrics(self.metrics.emf),
        }
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
            return Ok(Secret::new(s));
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        let value = hex::encode(rand::random::<[u8; 32]>());
        write_private(&path, &value)?;
        Ok(Secret::new(value))
    }
}

impl crate::pipeline::Policy {
    /// From the loaded configuration.
    pub fn from_config(c: &Config) -> Self {
        Self {
            history_turns: c.pipeline.history_turns,
            top_k: c.pipeline.top_k,
            lease: std::time::Duration::from_secs(c.queue.visibility_timeout_secs),
            gate: crate::pipeline::Gate {
                min_confidence: c.pipeline.min_confidence,
            },
            min_relevance: c.pipeline.min_relevance,
            holding_message: c.pipeline.holding_message.clone(),
            chat_holding_message: c.pipeline.chat_holding_message.clone(),
            act_replies: c.pipeline.act_replies.clone(),
            extractive: c.generator.kind == GeneratorKind::Extractive,
            labels: c.retriever.labels.clone(),
        }
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
