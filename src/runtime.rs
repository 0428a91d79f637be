//! Where adapters are chosen: one function per port builds the adapter the
//! configuration names. Every composition root (`serve`, the Lambda
//! binaries, the CLI, the tools) goes through here, so a new LLM backend is
//! its file, a [`GeneratorKind`] variant and one arm in [`generator`]; a new
//! retriever, a [`RetrieverKind`] variant and one arm in [`bedrock_or`].
//!
//! AWS clients are made one of two ways ([`Aws`]): from an SDK
//! configuration already loaded (the Lambdas, `--aws`), or on first use
//! (`serve`, `eval`, `ask`: the wiring stays synchronous and nothing
//! touches AWS unless a Bedrock adapter is configured).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_config::SdkConfig;
use tracing::warn;

use crate::config::{Config, GeneratorKind, RetrieverKind};
use crate::knowledge::markdown::Document;
use crate::knowledge::{BedrockKb, Hybrid, Retriever, TantivyIndex, embed};
use crate::llm::breaker::Breaker;
use crate::llm::{Bedrock, Extractive, Generator, OpenAi};
use crate::notify::{Escalator, LogThen, Webhook};
use crate::pipeline::{Policy, Responder, Rules};

/// How AWS clients are made.
#[derive(Clone, Copy)]
pub enum Aws<'a> {
    /// From the SDK configuration the caller loaded.
    Shared(&'a SdkConfig),
    /// From `aws` settings, loaded on the first call.
    Lazy,
}

/// The generator the configuration asks for.
pub fn generator(config: &Config, aws: Aws<'_>) -> anyhow::Result<Arc<dyn Generator>> {
    let max_chars = config.pipeline.max_passage_chars;
    let breaker = config.generator.breaker;
    Ok(match config.generator.kind {
        GeneratorKind::Extractive => Arc::new(
            Extractive::new(config.generator.extractive)
                .allowing_internal(config.pipeline.answer_from_internal),
        ),
        GeneratorKind::Openai => {
            let s = config
                .generator
                .openai
                .clone()
                .context("[generator.openai] is missing")?;
            Arc::new(Breaker::new(OpenAi::new(s, max_chars)?, breaker))
        }
        GeneratorKind::Bedrock => {
            let settings = config.generator.bedrock.clone().unwrap_or_default();
            let bedrock = match aws {
                Aws::Shared(sdk) => Bedrock::new(sdk, settings, max_chars),
                Aws::Lazy => Bedrock::lazy(config.aws.clone(), settings, max_chars),
            };
            Arc::new(Breaker::new(bedrock, breaker))
        }
    })
}

/// A Bedrock Knowledge Base when the configuration asks for one, else
/// `embedded()` (the embedded index, however the caller opens it).
pub fn bedrock_or(
    config: &Config,
    aws: Aws<'_>,
    embedded: impl FnOnce() -> anyhow::Result<Arc<dyn Retriever>>,
) -> anyhow::Result<Arc<dyn Retriever>> {
    match config.retriever.kind {
        RetrieverKind::Tantivy => embedded(),
        RetrieverKind::BedrockKb => {
            let kb = config
                .retriever
                .bedrock_kb
                .clone()
                .context("[retriever.bedrock_kb] is missing")?;
            Ok(match aws {
                Aws::Shared(sdk) => Arc::new(BedrockKb::new(sdk, kb)?),
                Aws::Lazy => Arc::new(BedrockKb::lazy(config.aws.clone(), kb)?),
            })
        }
    }
}

/// The retriever the configuration asks for, without a data folder: the KB
/// folder indexed in memory, or a Bedrock Knowledge Base (eval, ask).
pub fn retriever_in_memory(config: &Config) -> anyhow::Result<Arc<dyn Retriever>> {
    bedrock_or(config, Aws::Lazy, || {
        Ok(Arc::new(hybrid_in_memory(config)?))
    })
}

/// The KB folder indexed in memory as a [`Hybrid`] retriever, with the
/// configured embedder; passage vectors are cached in the data folder
/// (one file per KB folder) when an embedder is configured.
pub fn hybrid_in_memory(config: &Config) -> anyhow::Result<Hybrid> {
    let docs = crate::knowledge::tantivy::load_documents(&config.kb_dir, &mut |_, _| {})?;
    let index =
        TantivyIndex::in_memory(&docs)?.including_internal(config.pipeline.answer_from_internal);
    let name = {
        use sha2::Digest;
        let path = config
            .kb_dir
            .canonicalize()
            .unwrap_or_else(|_| config.kb_dir.clone());
        let digest = sha2::Sha256::digest(path.to_string_lossy().as_bytes());
        format!("vectors-{}.bin", &hex::encode(digest)[..16])
    };
    hybrid(config, index, &docs, &config.data_dir.join(name))
}

/// `index` (built from `docs`) as a [`Hybrid`] retriever with the
/// configured embedder, vectors cached in `cache`.
pub fn hybrid(
    config: &Config,
    index: TantivyIndex,
    docs: &[Document],
    cache: &Path,
) -> anyhow::Result<Hybrid> {
    let hybrid = Hybrid::new(index, docs);
    Ok(
        match embed::from_settings(&config.retriever.embedder, &config.aws)? {
            Some(embedder) => hybrid.with_embedder(
                embedder,
                docs,
                config.pipeline.answer_from_internal,
                Some(cache),
            ),
            None => hybrid,
        },
    )
}

/// The configured embedder for the content-gap report; a broken setting
/// (already reported by the retriever) leaves the report to terms.
pub fn gap_embedder(config: &Config) -> Option<Arc<dyn embed::Embedder>> {
    embed::from_settings(&config.retriever.embedder, &config.aws)
        .inspect_err(|error| warn!(message = "No embedder for the gap report.", error = %format!("{error:#}")))
        .ok()
        .flatten()
}

/// The escalator for one box: a log line, plus the webhook when one is
/// configured (on AWS the SNS topic takes the webhook's place).
pub fn escalator(config: &Config) -> anyhow::Result<Arc<dyn Escalator>> {
    let e = &config.escalation;
    let webhook = match &e.webhook_url {
        Some(url) => Some(Box::new(Webhook::new(
            url.clone(),
            e.webhook_format,
            Duration::from_secs(e.webhook_timeout_secs),
        )?) as Box<dyn Escalator>),
        None => None,
    };
    Ok(Arc::new(LogThen::new(webhook)))
}

/// The responder over `retriever` and `generator`: the configured rules,
/// pipeline settings and actions.
pub fn responder(
    config: &Config,
    retriever: Arc<dyn Retriever>,
    generator: Arc<dyn Generator>,
) -> anyhow::Result<Responder> {
    Ok(Responder::new(
        retriever,
        generator,
        Rules::new(&config.pipeline)?,
        Policy::from_config(config),
    )
    .with_actions(Arc::new(crate::actions::Actions::new(
        &config.actions,
        config.action_secrets.clone(),
    )?)))
}
