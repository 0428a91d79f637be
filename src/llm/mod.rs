//! The `Generator` port: a structured answer for a ticket, grounded in the
//! retrieved passages.
//!
//! Every generator returns the same shape the LLM generators ask the model
//! for through a forced tool call or JSON schema: `{answer, confidence,
//! needs_human, reason, sources}`; the decision gate does the rest.

pub mod bedrock;
pub mod breaker;
pub mod extractive;
pub mod openai;
pub mod prompt;
mod settings;
pub use settings::{GeneratorKind, GeneratorSettings};
pub mod tools;

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::domain::{Channel, Message, Usage};
use crate::knowledge::Passage;

pub use bedrock::Bedrock;
pub use extractive::Extractive;
pub use openai::OpenAi;

/// What a generator is given.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The customer's message.
    pub question: String,
    /// Email subject or helpdesk title, when there is one.
    pub subject: Option<String>,
    /// Earlier turns, oldest first, not including `question`.
    pub history: Vec<Message>,
    /// Retrieved passages, best first.
    pub passages: Vec<Passage>,
    /// Where the answer goes (email answers may be longer than chat).
    pub channel: Channel,
}

/// The structured answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The reply text (may be empty when `needs_human`).
    pub answer: String,
    /// 0..=1, how sure the generator is that `answer` is right and complete.
    pub confidence: f32,
    /// The generator itself thinks a person should answer.
    pub needs_human: bool,
    /// Why, in a few words (or a reason code).
    pub reason: Option<String>,
    /// Document ids of the passages the answer uses.
    pub sources: Vec<String>,
    /// Tokens and time spent.
    #[serde(skip)]
    pub usage: Usage,
}

/// Generation failures, split by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// Throttled, 5xx, timed out: retry the ticket later.
    #[error("model temporarily unavailable: {detail}")]
    Transient {
        /// What happened.
        detail: String,
        /// The service's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// Usage spent before failing.
        usage: Usage,
    },
    /// The model answered, but not in the required shape.
    #[error("model output unusable: {detail}")]
    Malformed {
        /// What was wrong with it.
        detail: String,
        /// Usage spent on the unusable answer.
        usage: Usage,
    },
    /// Misconfiguration or a rejected request: retrying will not help.
    #[error("model call failed: {0:#}")]
    Permanent(#[source] anyhow::Error),
}

/// Produces structured answers.
#[async_trait]
pub trait Generator: Send + Sync {
    /// Answers `request`.
    async fn generate(&self, request: &GenerateRequest) -> Result<Generation, GenerateError>;

    /// Answers `request` with `tools` callable beside `answer_ticket` (see
    /// [`tools`]). Generators without tool use (extractive) ignore them.
    async fn generate_with_tools(
        &self,
        request: &GenerateRequest,
        tools: &dyn tools::Tools,
    ) -> Result<Generation, GenerateError> {
        let _ = tools;
        self.generate(request).await
    }
}

/// Parses the model's JSON answer object (from a tool call's input or a
/// message's content), tolerating code fences and clamping confidence.
/// Sources not among `passages` are dropped: a model cannot cite what it
/// was not given. Then [`ground`] holds the answer to its inputs.
pub fn parse_answer(value: &serde_json::Value, passages: &[Passage]) -> Result<Generation, String> {
    let obj = value.as_object().ok_or("the answer is not a JSON object")?;
    let answer = match obj.get("answer") {
        Some(serde_json::Value::String(s)) => s.trim().to_owned(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(_) => return Err("`answer` is not a string".into()),
    };
    let confidence = match obj.get("confidence") {
        Some(v) => v
            .as_f64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or("`confidence` is not a number")?,
        None => return Err("`confidence` is missing".into()),
    };
    if !confidence.is_finite() {
        return Err("`confidence` is not finite".into());
    }
    let needs_human = match obj.get("needs_human") {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        None | Some(serde_json::Value::Null) => false,
        Some(_) => return Err("`needs_human` is not a boolean".into()),
    };
    let reason = obj
        .get("reason")
        .and_then(|r| r.as_str())
        .map(|s| s.trim().chars().take(200).collect::<String>())
        .filter(|s| !s.is_empty());
    let known: std::collections::HashSet<&str> =
        passages.iter().map(|p| p.doc_id.as_str()).collect();
    let mut sources = Vec::new();
    if let Some(list) = obj.get("sources").and_then(|s| s.as_array()) {
        for s in list.iter().filter_map(|s| s.as_str()) {
            if known.contains(s) && !sources.iter().any(|x| x == s) {
                sources.push(s.to_owned());
            }
        }
    }
    if answer.is_empty() && !needs_human {
        return Err("`answer` is empty and `needs_human` is false".into());
    }
    Ok(ground(
        Generation {
            answer,
            confidence: (confidence as f32).clamp(0.0, 1.0),
            needs_human,
            reason,
            sources,
            usage: Usage::default(),
        },
        passages,
    ))
}

static URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?ix)
        \b(?:https?|ftp)://[^\s<>()\[\]{}"'`]+
        | \bwww\.[^\s<>()\[\]{}"'`]+
        | \b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:com|net|org|io|co|info|biz|app|dev|xyz|me|ly|link|site|online|top|click|help|support|live|shop|store|page|gl|to|sh|cc|ru|cn|tk|ml|ga|cf|gq|us|uk|eu|de|fr|ca|au)\b(?:/[^\s<>()\[\]{}"'`]*)?"#,
    )
    .expect("static regex")
});

/// A link as compared: lower-case, without scheme, `www.`, trailing
/// punctuation or slash.
fn link_key(url: &str) -> String {
    let u = url
        .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '\'', '"'])
        .to_lowercase();
    let u = u.split_once("://").map_or(u.as_str(), |(_, rest)| rest);
    let u = u.strip_prefix("www.").unwrap_or(u);
    u.trim_end_matches('/').to_owned()
}

fn host(key: &str) -> &str {
    key.split(['/', '?', '#']).next().unwrap_or(key)
}

/// Holds a model's answer to its inputs, whatever an injection told the
/// model:
/// * an answer that cites none of the given passages is not sent: it goes
///   to a person (`model_refused`, "answer cites no knowledge-base
///   passage"); it used to go out with the top passage as its source;
/// * links are allowed only when they appear in the passages (their text
///   or their document's link) or point at the help centre the passages
///   link to; any other link is replaced by "[link removed]" and the answer
///   goes to a person as a draft, not to the customer.
pub fn ground(mut g: Generation, passages: &[Passage]) -> Generation {
    if g.needs_human {
        return g;
    }
    let mut allowed: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut sites: std::collections::HashSet<String> = std::collections::HashSet::new();
    for p in passages {
        for m in URL.find_iter(&p.text) {
            allowed.insert(link_key(m.as_str()));
        }
        if let Some(u) = &p.url {
            let k = link_key(u);
            sites.insert(host(&k).to_owned());
            allowed.insert(k);
        }
    }
    let mut refused = Vec::new();
    let answer = URL
        .replace_all(&g.answer, |c: &regex::Captures<'_>| {
            let k = link_key(&c[0]);
            if allowed.contains(&k) || sites.contains(host(&k)) {
                c[0].to_owned()
            } else {
                refused.push(host(&k).to_owned());
                "[link removed]".to_owned()
            }
        })
        .into_owned();
    if !refused.is_empty() {
        refused.dedup();
        g.answer = answer;
        g.needs_human = true;
        g.reason = Some(format!(
            "answer links outside the knowledge base: {}",
            refused.join(", ")
        ));
    } else if g.sources.is_empty() {
        g.needs_human = true;
        g.reason = Some("answer cites no knowledge-base passage".into());
    }
    g
}

/// Extracts a JSON object from model text: bare, fenced, or with prose around it.
pub fn json_in_text(text: &str) -> Result<serde_json::Value, String> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str(t) {
        return Ok(v);
    }
    let (Some(start), Some(end)) = (t.find('{'), t.rfind('}')) else {
        return Err("no JSON object in the model's reply".into());
    };
    if end <= start {
        return Err("no JSON object in the model's reply".into());
    }
    serde_json::from_str(&t[start..=end])
        .map_err(|e| format!("the model's JSON does not parse: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn passages() -> Vec<Passage> {
        vec![Passage {
            doc_id: "a.md".into(),
            title: "A".into(),
            section: None,
            text: "t".into(),
            url: None,
            score: 1.0,
            relevance: 1.0,
        }]
    }

    #[test]
    fn parses_and_sanitizes() {
        let g = parse_answer(
            &json!({"answer":" Yes. ","confidence":"1.7","needs_human":false,"reason":null,"sources":["a.md","evil.md","a.md"]}),
            &passages(),
        )
        .unwrap();
        assert_eq!(g.answer, "Yes.");
        assert_eq!(g.confidence, 1.0);
        assert_eq!(g.sources, ["a.md"]);
    }

    #[test]
    fn rejects_unusable_answers() {
        for (v, want) in [
            (json!([1]), "not a JSON object"),
            (json!({"answer":1,"confidence":0.5}), "not a string"),
            (json!({"answer":"x"}), "missing"),
            (json!({"answer":"x","confidence":"high"}), "not a number"),
            (
                json!({"answer":"","confidence":0.9,"needs_human":false}),
                "empty",
            ),
            (
                json!({"answer":"x","confidence":0.9,"needs_human":3}),
                "boolean",
            ),
        ] {
            let err = parse_answer(&v, &passages()).unwrap_err();
            assert!(err.contains(want), "{v}: {err}");
        }
        // Handing over with no answer is fine.
        let g = parse_answer(
            &json!({"answer":"","confidence":0.1,"needs_human":true,"reason":"billing dispute"}),
            &passages(),
        )
        .unwrap();
        assert!(g.needs_human);
    }

    #[test]
    fn answers_are_held_to_their_inputs() {
        let mut given = passages();
        given[0].text = "See https://help.example/refunds or www.example.com/faq.".into();
        given[0].url = Some("https://help.example/articles/a".into());
        // Links from the passages, or on the help centre's site, pass.
        let g = parse_answer(
            &json!({"answer":"See https://help.example/refunds, www.example.com/faq/ or https://help.example/articles/b.","confidence":0.9,"needs_human":false,"sources":["a.md"]}),
            &given,
        )
        .unwrap();
        assert!(!g.needs_human, "{g:?}");
        // Any other link is removed and the answer goes to a person.
        for link in [
            "https://help-example.verify-login.com/x",
            "http://evil.example/refunds",
            "evil-site.com/login",
            "www.phish.co",
        ] {
            let g = parse_answer(
                &json!({"answer": format!("Confirm your card at {link} today."),"confidence":0.9,"needs_human":false,"sources":["a.md"]}),
                &given,
            )
            .unwrap();
            assert!(g.needs_human, "{link}");
            assert!(!g.answer.contains(link), "{}", g.answer);
            assert!(g.answer.contains("[link removed]"), "{}", g.answer);
            assert!(g.reason.unwrap().contains("links outside"));
        }
        // An answer citing nothing goes to a person.
        let g = parse_answer(
            &json!({"answer":"Yes.","confidence":0.9,"needs_human":false,"sources":["other.md"]}),
            &given,
        )
        .unwrap();
        assert!(g.needs_human);
        assert_eq!(
            g.reason.as_deref(),
            Some("answer cites no knowledge-base passage")
        );
    }

    #[test]
    fn finds_json_in_model_text() {
        assert_eq!(
            json_in_text("```json\n{\"a\":1}\n```").unwrap(),
            json!({"a":1})
        );
        assert_eq!(
            json_in_text("Sure! {\"a\":1} hope it helps").unwrap(),
            json!({"a":1})
        );
        assert!(json_in_text("no json").is_err());
        assert!(json_in_text("} {").is_err());
        assert!(json_in_text("{\"a\":").is_err());
    }
}
