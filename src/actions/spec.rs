//! An action as configured (`[[actions]]`): what to call, with which
//! parameters, what of the answer to keep, and how to word the reply.
//!
//! Invariants, checked once at start-up by [`ActionSpec::compile`]: every
//! `{placeholder}` in the URL, query, headers, body and templates names a
//! declared parameter, `customer.email` / `customer.id`, or (in replies) an
//! exposed field; every `${secret:NAME}` names a configured secret and
//! appears only in headers or query values (never in a reply or a body a
//! model could echo); every pattern compiles; every expose path is a JSON
//! pointer. A typo is a start-up error, never a silent empty reply.

use std::collections::BTreeMap;

use anyhow::{Context, bail, ensure};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::presets::Preset;

/// Who may trigger an action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityNeed {
    /// Public data: anyone may ask.
    None,
    /// Only a customer whose email address is verified (signed-in widget
    /// user, authenticated email sender, helpdesk requester).
    #[default]
    VerifiedEmail,
    /// Only a signed-in widget user (their id is verified).
    VerifiedUser,
}

/// HTTP method of an action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// Reads.
    #[default]
    Get,
    /// Usually writes (or a GraphQL query: set `write = false`).
    Post,
    /// Writes.
    Put,
    /// Writes.
    Patch,
    /// Writes.
    Delete,
}

/// One parameter the customer supplies.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// How the extractive mode finds it in a message: the first capture
    /// group if there is one, else the whole match.
    pub pattern: String,
    /// What it is ("The order number"), for the question and the LLM tool.
    #[serde(default)]
    pub description: String,
    /// The question when it is missing (default "What is your <description>?").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask: Option<String>,
}

/// How the extractive mode words the answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplySpec {
    /// With `{param}` and `{exposed_field}` placeholders.
    #[serde(default)]
    pub template: String,
    /// When the business's system found nothing (404, or none of the exposed
    /// fields present). Says nothing about whether it exists for someone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_found: Option<String>,
    /// Asked before a write action runs; the customer must answer yes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
}

/// One `[[actions]]` entry, as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// Unique, `[a-z0-9_]`: the tool name the model sees.
    pub name: String,
    /// What it does, for people and the model.
    #[serde(default)]
    pub description: String,
    /// When to use it (for the model); defaults to `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Words one of which a message must contain for the extractive mode
    /// to consider this action (default: the words of `name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intent: Vec<String>,
    /// A shop preset that fills method, URL, body, expose and require.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// The shop's base URL, for presets (`https://shop.example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shop_url: Option<String>,
    /// HTTP method.
    #[serde(default)]
    pub method: Method,
    /// With `{param}` / `{customer.email}` placeholders, percent-encoded
    /// when filled.
    #[serde(default)]
    pub url: String,
    /// Query parameters added to the URL, values templated and encoded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// Request headers; values may use `${secret:NAME}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A JSON body; string leaves are templated (JSON-escaped when sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// Who may trigger it.
    #[serde(default)]
    pub identity: IdentityNeed,
    /// Seconds before the call counts as failed.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Calls per minute across all conversations (0: unlimited).
    #[serde(default)]
    pub rate_limit_per_minute: u32,
    /// Changes something (default: any method but GET): runs only after
    /// the customer confirms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<bool>,
    /// Parameters, by name.
    #[serde(default)]
    pub params: BTreeMap<String, ParamSpec>,
    /// Fields kept from the response, by JSON pointer; the rest is dropped.
    #[serde(default)]
    pub expose: BTreeMap<String, String>,
    /// Response values that must equal a template (JSON pointer →
    /// template), else the answer counts as not found: e.g. the order's
    /// email must be the verified customer's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub require: BTreeMap<String, String>,
    /// The extractive mode's wording.
    #[serde(default)]
    pub reply: ReplySpec,
}

fn default_timeout() -> u64 {
    5
}

/// A placeholder in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text.
    Text(String),
    /// `{name}`: a parameter, `customer.email`, `customer.id`, or an exposed field.
    Var(String),
    /// `${secret:NAME}`.
    Secret(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template(pub Vec<Part>);

impl Template {
    /// Parses `{var}`, `${secret:NAME}`; `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if rest.starts_with("{{") || rest.starts_with("}}") {
                lit.push(c);
                rest = &rest[2..];
            } else if let Some(after) = rest.strip_prefix("${secret:") {
                let end = after
                    .find('}')
                    .with_context(|| format!("unclosed ${{secret:…}} in {text:?}"))?;
                if !lit.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut lit)));
                }
                parts.push(Part::Secret(after[..end].trim().to_owned()));
                rest = &after[end + 1..];
            } else if let Some(after) = rest.strip_prefix('{') {
                let end = after
                    .find('}')
                    .with_context(|| format!("unclosed {{…}} in {text:?}"))?;
                let name = after[..end].trim();
                ensure!(
                    !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'),
                    "bad placeholder {{{name}}} in {text:?}"
                );
                if !lit.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut lit)));
                }
                parts.push(Part::Var(name.to_owned()));
                rest = &after[end + 1..];
            } else {
                ensure!(c != '}', "stray '}}' in {text:?} (write '}}}}')");
                lit.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(Self(parts))
    }

    /// Variable names used.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// Secret names used.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Secret(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// Fills the template; `var` maps a name to its (already encoded) value.
    pub fn render(&self, var: &dyn Fn(&str) -> String, secret: &dyn Fn(&str) -> String) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => out.push_str(&var(v)),
                Part::Secret(s) => out.push_str(&secret(s)),
            }
        }
        out
    }
}

/// A parameter, compiled.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Finds it in a message.
    pub pattern: Regex,
    /// What it is.
    pub description: String,
    /// The question when it is missing.
    pub ask: String,
}

impl Param {
    /// The value in `text`, if the pattern finds one.
    pub fn find(&self, text: &str) -> Option<String> {
        let c = self.pattern.captures(text)?;
        let m = c.iter().skip(1).flatten().next().or_else(|| c.get(0))?;
        let v = m.as_str().trim();
        (!v.is_empty() && v.len() <= 200).then(|| v.to_owned())
    }
}

/// An action ready to run: templates parsed, patterns compiled, preset applied.
#[derive(Debug, Clone)]
pub struct Action {
    /// The spec after the preset was applied.
    pub spec: ActionSpec,
    /// Parameters in declaration (name) order.
    pub params: Vec<Param>,
    /// The URL template.
    pub url: Template,
    /// Query templates.
    pub query: Vec<(String, Template)>,
    /// Header templates.
    pub headers: Vec<(String, Template)>,
    /// The reply template.
    pub reply: Template,
    /// The not-found reply.
    pub not_found: Template,
    /// The confirmation question (write actions).
    pub confirm: Template,
    /// Required response values.
    pub require: Vec<(String, Template)>,
    /// Intent words, lower case.
    pub intent: Vec<String>,
    /// Whether it changes something.
    pub write: bool,
}

const CUSTOMER_VARS: [&str; 2] = ["customer.email", "customer.id"];

impl ActionSpec {
    /// Applies the preset and checks everything (see the module docs).
    /// `secrets` are the configured secret names.
    pub fn compile(&self, secrets: &[&str]) -> anyhow::Result<Action> {
        self.compile_with(Some(secrets))
    }

    /// As [`ActionSpec::compile`]; `None` skips the check that secrets exist
    /// (they arrive later, from Secrets Manager).
    pub fn compile_with(&self, secrets: Option<&[&str]>) -> anyhow::Result<Action> {
        let spec = match self.preset {
            Some(p) => p.apply(self)?,
            None => self.clone(),
        };
        let name = &spec.name;
        ensure!(
            !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && name != "answer_ticket",
            "action name {name:?} must be 1–64 of a-z, 0-9 and _ (and not answer_ticket)"
        );
        let ctx = |what: &str| format!("action {name}: {what}");
        ensure!(
            spec.url.starts_with("https://") || spec.url.starts_with("http://"),
            "{}",
            ctx("url must start with https:// (or http:// for a local service)")
        );
        ensure!(
            (1..=60).contains(&spec.timeout_secs),
            "{}",
            ctx("timeout_secs must be within 1..=60")
        );
        ensure!(
            !spec.expose.is_empty(),
            "{}",
            ctx("[actions.expose] is empty: nothing would be kept")
        );
        for (field, ptr) in &spec.expose {
            ensure!(
                ptr.is_empty() || ptr.starts_with('/'),
                "{}",
                ctx(&format!("expose.{field} = {ptr:?} is not a JSON pointer"))
            );
        }
        let mut params = Vec::new();
        for (pname, p) in &spec.params {
            let pattern = Regex::new(&format!("(?i){}", p.pattern))
                .with_context(|| ctx(&format!("params.{pname}.pattern")))?;
            let description = if p.description.is_empty() {
                pname.replace('_', " ")
            } else {
                p.description.clone()
            };
            let ask = p.ask.clone().unwrap_or_else(|| {
                let d = lower_first(&description);
                let d = ["the ", "a ", "an ", "your "]
                    .iter()
                    .find_map(|a| d.strip_prefix(a))
                    .unwrap_or(&d);
                format!("What is your {d}?")
            });
            params.push(Param {
                name: pname.clone(),
                pattern,
                description,
                ask,
            });
        }
        let request_var = |v: &str| CUSTOMER_VARS.contains(&v) || spec.params.contains_key(v);
        let check_request = |what: &str, t: &Template, secrets_ok: bool| -> anyhow::Result<()> {
            for v in t.vars() {
                ensure!(
                    request_var(v),
                    "{}",
                    ctx(&format!("{what}: unknown placeholder {{{v}}}"))
                );
            }
            for s in t.secrets() {
                ensure!(
                    secrets_ok,
                    "{}",
                    ctx(&format!("{what}: secrets belong in headers or query"))
                );
                ensure!(
                    secrets.is_none_or(|k| k.contains(&s)),
                    "{}",
                    ctx(&format!(
                        "{what}: secret {s:?} is not configured (action_secrets.{s})"
                    ))
                );
            }
            Ok(())
        };
        let url = Template::parse(&spec.url).with_context(|| ctx("url"))?;
        check_request("url", &url, false)?;
        let mut query = Vec::new();
        for (k, v) in &spec.query {
            let t = Template::parse(v).with_context(|| ctx(&format!("query.{k}")))?;
            check_request(&format!("query.{k}"), &t, true)?;
            query.push((k.clone(), t));
        }
        let mut headers = Vec::new();
        for (k, v) in &spec.headers {
            axum::http::HeaderName::try_from(k.as_str())
                .with_context(|| ctx(&format!("header name {k:?}")))?;
            let t = Template::parse(v).with_context(|| ctx(&format!("headers.{k}")))?;
            check_request(&format!("headers.{k}"), &t, true)?;
            headers.push((k.clone(), t));
        }
        if let Some(body) = &spec.body {
            let mut bad = Ok(());
            walk_strings(body, &mut |s| {
                if bad.is_ok() {
                    bad = Template::parse(s).and_then(|t| check_request("body", &t, false));
                }
            });
            bad?;
        }
        let mut require = Vec::new();
        for (ptr, v) in &spec.require {
            ensure!(
                ptr.starts_with('/'),
                "{}",
                ctx(&format!("require key {ptr:?} is not a JSON pointer"))
            );
            let t = Template::parse(v).with_context(|| ctx(&format!("require.{ptr}")))?;
            check_request(&format!("require.{ptr}"), &t, false)?;
            require.push((ptr.clone(), t));
        }
        let reply_var = |v: &str| spec.params.contains_key(v) || spec.expose.contains_key(v);
        let check_reply = |what: &str, t: &Template, exposed: bool| -> anyhow::Result<()> {
            for v in t.vars() {
                let ok = if exposed {
                    reply_var(v)
                } else {
                    spec.params.contains_key(v)
                };
                ensure!(
                    ok,
                    "{}",
                    ctx(&format!("{what}: unknown placeholder {{{v}}}"))
                );
            }
            ensure!(
                t.secrets().next().is_none(),
                "{}",
                ctx(&format!("{what}: a reply never shows a secret"))
            );
            Ok(())
        };
        let template = if spec.reply.template.is_empty() {
            let fields: Vec<String> = spec
                .expose
                .keys()
                .map(|k| format!("{}: {{{k}}}", k.replace('_', " ")))
                .collect();
            fields.join("\n")
        } else {
            spec.reply.template.clone()
        };
        let reply = Template::parse(&template).with_context(|| ctx("reply.template"))?;
        check_reply("reply.template", &reply, true)?;
        let not_found = Template::parse(spec.reply.not_found.as_deref().unwrap_or(
            "I could not find that with the details I have. Please check the details, \
             or write to us from the email address you used.",
        ))
        .with_context(|| ctx("reply.not_found"))?;
        check_reply("reply.not_found", &not_found, false)?;
        let write = spec.write.unwrap_or(spec.method != Method::Get);
        let default_confirm = {
            let what = if spec.description.is_empty() {
                spec.name.replace('_', " ")
            } else {
                lower_first(&spec.description)
            };
            let given: Vec<String> = spec
                .params
                .keys()
                .map(|p| format!("{} {{{p}}}", p.replace('_', " ")))
                .collect();
            if given.is_empty() {
                format!("Please confirm: shall I {what}? Reply \"yes\" to go ahead.")
            } else {
                format!(
                    "Please confirm: shall I {what} ({})? Reply \"yes\" to go ahead.",
                    given.join(", ")
                )
            }
        };
        let confirm = Template::parse(spec.reply.confirm.as_deref().unwrap_or(&default_confirm))
            .with_context(|| ctx("reply.confirm"))?;
        check_reply("reply.confirm", &confirm, false)?;
        let intent: Vec<String> = if spec.intent.is_empty() {
            spec.name
                .split('_')
                .filter(|w| w.len() >= 3)
                .map(str::to_owned)
                .collect()
        } else {
            spec.intent
                .iter()
                .map(|w| w.trim().to_lowercase())
                .filter(|w| !w.is_empty())
                .collect()
        };
        if intent.is_empty() {
            bail!("{}", ctx("no intent words: set `intent = [\"…\"]`"));
        }
        Ok(Action {
            params,
            url,
            query,
            headers,
            reply,
            not_found,
            confirm,
            require,
            intent,
            write,
            spec,
        })
    }
}

/// Visits every string leaf of a JSON value.
pub fn walk_strings(v: &serde_json::Value, f: &mut dyn FnMut(&str)) {
    match v {
        serde_json::Value::String(s) => f(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| walk_strings(x, f)),
        serde_json::Value::Object(o) => o.values().for_each(|x| walk_strings(x, f)),
        _ => {}
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue_spec() -> ActionSpec {
        let toml = r#"
name = "order_status"
description = "Look up an order's status and tracking by order number"
method = "GET"
url = "https://shop.example.com/api/orders/{order_number}?email={customer.email}"
headers = { Authorization = "Bearer ${secret:shop_token}" }
identity = "verified_email"
timeout_secs = 5
[params.order_number]
pattern = '#?(\d{4,10})'
description = "The order number"
[expose]
status = "/order/status"
tracking_url = "/order/tracking_url"
eta = "/order/estimated_delivery"
[reply]
template = "Order #{order_number} is {status}. Track it here: {tracking_url}"
"#;
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(toml))
            .extract()
            .unwrap()
    }

    #[test]
    fn the_issue_example_compiles() {
        let a = issue_spec().compile(&["shop_token"]).unwrap();
        assert_eq!(a.intent, ["order", "status"]);
        assert!(!a.write);
        assert_eq!(a.params[0].ask, "What is your order number?");
        assert_eq!(
            a.params[0].find("Where's my order #1001?").as_deref(),
            Some("1001")
        );
        assert_eq!(a.params[0].find("where is it"), None);
    }

    #[test]
    fn mistakes_are_start_up_errors() {
        type Change = Box<dyn Fn(&mut ActionSpec)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|s| s.url.push_str("&x={ordr}")),
                "unknown placeholder {ordr}",
            ),
            (Box::new(|s| s.name = "Order Status".into()), "must be 1–64"),
            (
                Box::new(|s| s.url = "ftp://x/{order_number}".into()),
                "https://",
            ),
            (
                Box::new(|s| s.reply.template = "{secret_field}".into()),
                "unknown placeholder",
            ),
            (
                Box::new(|s| s.reply.template = "${secret:shop_token}".into()),
                "never shows a secret",
            ),
            (
                Box::new(|s| s.url.push_str("&k=${secret:shop_token}")),
                "headers or query",
            ),
            (
                Box::new(|s| {
                    s.params.get_mut("order_number").unwrap().pattern = "(".into();
                }),
                "pattern",
            ),
            (
                Box::new(|s| {
                    s.expose.insert("x".into(), "order.x".into());
                }),
                "JSON pointer",
            ),
            (Box::new(|s| s.expose.clear()), "nothing would be kept"),
            (Box::new(|s| s.timeout_secs = 0), "timeout_secs"),
            (Box::new(|s| s.url.push_str("{unclosed")), "unclosed"),
        ];
        for (change, want) in cases {
            let mut s = issue_spec();
            change(&mut s);
            let err = format!("{:#}", s.compile(&["shop_token"]).unwrap_err());
            assert!(err.contains(want), "{want}: {err}");
        }
        let err = format!("{:#}", issue_spec().compile(&[]).unwrap_err());
        assert!(err.contains("not configured"), "{err}");
    }

    #[test]
    fn templates_parse_and_render() {
        let t = Template::parse("a{x}b${secret:k}{{c}}").unwrap();
        assert_eq!(
            t.render(&|v| format!("<{v}>"), &|s| format!("[{s}]")),
            "a<x>b[k]{c}"
        );
        for bad in ["{", "}", "{a b}", "${secret:x", "{}"] {
            assert!(Template::parse(bad).is_err(), "{bad:?}");
        }
        let cases = ["", "{{", "é{x}é", "\u{0}{y}"];
        for c in cases {
            assert!(Template::parse(c).is_ok(), "{c:?}");
        }
    }

    #[test]
    fn garbage_templates_and_patterns_never_panic() {
        use rand::Rng;
        let alphabet: Vec<char> = "{}$:secrt_.ab 1é\u{0}#".chars().collect();
        let mut rng = rand::rng();
        let a = issue_spec().compile(&["shop_token"]).unwrap();
        for _ in 0..5000 {
            let len = rng.random_range(0..24);
            let text: String = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            if let Ok(t) = Template::parse(&text) {
                // What parses renders, and literal text survives.
                let out = t.render(&|_| String::new(), &|_| String::new());
                assert!(out.len() <= text.len(), "{text:?} → {out:?}");
            }
            let _ = a.params[0].find(&text);
        }
    }
}
