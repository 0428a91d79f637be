//! Generator over any OpenAI-compatible chat-completions endpoint (Ollama,
//! llama.cpp server, vLLM, OpenAI itself), asking for the answer object as
//! JSON constrained by a schema.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::prompt::{SYSTEM_PROMPT, TOOL_NAME, answer_schema, user_content};
use super::tools::{MAX_TOOL_ROUNDS, Tools};
use super::{GenerateError, GenerateRequest, Generation, Generator, json_in_text, parse_answer};
use crate::domain::Usage;
use crate::secret::Secret;

/// How the endpoint is asked for JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// `response_format: {type: json_schema}` (OpenAI, vLLM, llama.cpp, recent Ollama).
    #[default]
    JsonSchema,
    /// `response_format: {type: json_object}` for servers without schema support.
    JsonObject,
}

/// Settings of the OpenAI-compatible generator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiSettings {
    /// Base URL up to `/v1`, e.g. `http://127.0.0.1:11434/v1` for Ollama.
    pub base_url: String,
    /// Model name, e.g. `llama3.1:8b`.
    pub model: String,
    /// Bearer token, if the server wants one.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Whole-request timeout, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Output token limit.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Sampling temperature.
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    /// How to ask for JSON.
    #[serde(default)]
    pub response_format: ResponseFormat,
}

fn default_timeout() -> u64 {
    60
}
fn default_max_tokens() -> u32 {
    800
}
fn default_temperature() -> f32 {
    0.2
}

/// The generator.
pub struct OpenAi {
    http: reqwest::Client,
    settings: OpenAiSettings,
    max_passage_chars: usize,
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<ApiUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    /// `stop`, or `length` when the reply was cut at `max_tokens`.
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
}

#[derive(Deserialize, Serialize, Clone)]
struct ToolCall {
    id: String,
    #[serde(default = "function_type", rename = "type")]
    kind: String,
    function: FunctionCall,
}

fn function_type() -> String {
    "function".into()
}

#[derive(Deserialize, Serialize, Clone)]
struct FunctionCall {
    name: String,
    /// JSON text, as the API sends it.
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
struct ApiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: u64,
}

impl OpenAi {
    /// A generator for `settings`; passages are cut to `max_passage_chars`.
    pub fn new(settings: OpenAiSettings, max_passage_chars: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            http,
            settings,
            max_passage_chars,
        })
    }

    fn body(&self, req: &GenerateRequest) -> serde_json::Value {
        let messages = [
            json!({"role": "system", "content": SYSTEM_PROMPT}),
            json!({"role": "user", "content": user_content(req, self.max_passage_chars)}),
        ];
        let response_format = match self.settings.response_format {
            ResponseFormat::JsonSchema => json!({
                "type": "json_schema",
                "json_schema": {"name": TOOL_NAME, "strict": true, "schema": answer_schema()}
            }),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
        };
        json!({
            "model": self.settings.model,
            "messages": messages,
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
            "response_format": response_format,
            "stream": false,
        })
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl OpenAi {
    /// One chat-completions call: status split, usage, the completion.
    async fn send(
        &self,
        body: &serde_json::Value,
        usage: &mut Usage,
    ) -> Result<Completion, GenerateError> {
        let url = format!(
            "{}/chat/completions",
            self.settings.base_url.trim_end_matches('/')
        );
        let started = Instant::now();
        usage.calls += 1;
        let mut call = self.http.post(&url).json(body);
        if let Some(key) = &self.settings.api_key {
            call = call.bearer_auth(key.expose());
        }
        let response = call.send().await.map_err(|e| {
            // Connection refused, reset, timed out: the server may come back.
            GenerateError::Transient {
                detail: format!("calling {url}: {e}"),
                retry_after: None,
                usage: usage.clone(),
            }
        })?;
        let status = response.status();
        let wait = retry_after(response.headers());
        let text = response
            .text()
            .await
            .map_err(|e| GenerateError::Transient {
                detail: format!("reading the response: {e}"),
                retry_after: None,
                usage: usage.clone(),
            })?;
        usage.model_ms += started.elapsed().as_millis() as u64;
        if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
            return Err(GenerateError::Transient {
                detail: format!("{url} answered {status}"),
                retry_after: wait,
                usage: usage.clone(),
            });
        }
        if !status.is_success() {
            let excerpt: String = text.chars().take(300).collect();
            return Err(GenerateError::Permanent(anyhow::anyhow!(
                "{url} answered {status}: {excerpt}"
            )));
        }
        let completion: Completion =
            serde_json::from_str(&text).map_err(|e| GenerateError::Malformed {
                detail: format!("not a chat completion: {e}"),
                usage: usage.clone(),
            })?;
        if let Some(u) = &completion.usage {
            usage.input_tokens += u.prompt_tokens;
            usage.output_tokens += u.completion_tokens;
            usage.cache_read_tokens += u
                .prompt_tokens_details
                .as_ref()
                .map_or(0, |d| d.cached_tokens);
        }
        Ok(completion)
    }

    /// The answer in `message`: a refusal, an `answer_ticket` call's
    /// arguments, or JSON in the content.
    fn answer(
        &self,
        message: ChoiceMessage,
        cut: bool,
        passages: &[crate::knowledge::Passage],
        usage: Usage,
    ) -> Result<Generation, GenerateError> {
        if let Some(refusal) = message.refusal.filter(|r| !r.trim().is_empty()) {
            return Ok(Generation {
                answer: String::new(),
                confidence: 0.0,
                needs_human: true,
                reason: Some(format!(
                    "refused: {}",
                    refusal.chars().take(150).collect::<String>()
                )),
                sources: Vec::new(),
                usage,
            });
        }
        let text = match message
            .tool_calls
            .iter()
            .find(|c| c.function.name == TOOL_NAME)
        {
            Some(call) => call.function.arguments.clone(),
            None => message.content.unwrap_or_default(),
        };
        match json_in_text(&text).and_then(|v| parse_answer(&v, passages)) {
            Ok(mut g) => {
                g.usage = usage;
                Ok(g)
            }
            // A reply cut at max_tokens is said to be cut: the remedy is a
            // larger `max_tokens`, not a better prompt.
            Err(detail) if cut => Err(GenerateError::Malformed {
                detail: format!(
                    "the reply was cut at max_tokens ({}) before the answer object was complete: {detail}",
                    self.settings.max_tokens
                ),
                usage,
            }),
            Err(detail) => Err(GenerateError::Malformed { detail, usage }),
        }
    }
}

#[async_trait]
impl Generator for OpenAi {
    async fn generate(&self, req: &GenerateRequest) -> Result<Generation, GenerateError> {
        let mut usage = Usage {
            model_id: Some(self.settings.model.clone()),
            ..Usage::default()
        };
        let completion = self.send(&self.body(req), &mut usage).await?;
        let Some(choice) = completion.choices.into_iter().next() else {
            return Err(GenerateError::Malformed {
                detail: "no choices".into(),
                usage,
            });
        };
        let cut = choice.finish_reason.as_deref() == Some("length");
        self.answer(choice.message, cut, &req.passages, usage)
    }

    /// OpenAI function calling: `answer_ticket` and the action tools as
    /// `tools` with `tool_choice: "required"`; each round's `tool_calls`
    /// are run and sent back as `role: "tool"` messages, at most
    /// [`MAX_TOOL_ROUNDS`] times; then `answer_ticket` is forced.
    async fn generate_with_tools(
        &self,
        req: &GenerateRequest,
        tools: &dyn Tools,
    ) -> Result<Generation, GenerateError> {
        let specs = tools.specs();
        if specs.is_empty() {
            return self.generate(req).await;
        }
        let mut usage = Usage {
            model_id: Some(self.settings.model.clone()),
            ..Usage::default()
        };
        let mut functions = vec![json!({"type": "function", "function": {
            "name": TOOL_NAME,
            "description": "Reply to the customer's message with the answer object.",
            "parameters": answer_schema(),
        }})];
        for t in &specs {
            functions.push(json!({"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.schema,
            }}));
        }
        let mut messages = vec![
            json!({"role": "system", "content": SYSTEM_PROMPT}),
            json!({"role": "user", "content": user_content(req, self.max_passage_chars)}),
        ];
        for round in 0..=MAX_TOOL_ROUNDS {
            let choice = if round == MAX_TOOL_ROUNDS {
                json!({"type": "function", "function": {"name": TOOL_NAME}})
            } else {
                json!("required")
            };
            let body = json!({
                "model": self.settings.model,
                "messages": messages,
                "temperature": self.settings.temperature,
                "max_tokens": self.settings.max_tokens,
                "tools": functions,
                "tool_choice": choice,
                "stream": false,
            });
            let completion = self.send(&body, &mut usage).await?;
            let Some(choice) = completion.choices.into_iter().next() else {
                return Err(GenerateError::Malformed {
                    detail: "no choices".into(),
                    usage,
                });
            };
            let cut = choice.finish_reason.as_deref() == Some("length");
            let message = choice.message;
            let calls: Vec<ToolCall> = message
                .tool_calls
                .iter()
                .filter(|c| c.function.name != TOOL_NAME)
                .cloned()
                .collect();
            let answered = message
                .tool_calls
                .iter()
                .any(|c| c.function.name == TOOL_NAME);
            if answered || calls.is_empty() || round == MAX_TOOL_ROUNDS {
                let mut passages = req.passages.clone();
                passages.extend(tools.evidence());
                return self.answer(message, cut, &passages, usage);
            }
            messages.push(
                json!({"role": "assistant", "content": message.content, "tool_calls": calls}),
            );
            for call in &calls {
                let input: serde_json::Value =
                    serde_json::from_str(&call.function.arguments).unwrap_or_default();
                let result = tools.call(&call.function.name, &input).await;
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": call.id,
                    "content": result.to_string(),
                }));
            }
        }
        Err(GenerateError::Malformed {
            detail: "tool-use loop ended without an answer".into(),
            usage,
        })
    }
}
