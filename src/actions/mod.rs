//! Actions: answers from the business's own systems ("Where's my order?"),
//! declared in configuration (`[[actions]]`), for customers whose identity
//! is verified.
//!
//! [`Actions::respond`] is the deterministic path every generator shares:
//! a message that names an action's intent words gets that action; its
//! parameters come from the message by pattern; a missing one is asked for
//! and the next customer message fills it; a write action asks for an
//! explicit "yes" first. The conversation state (which question is pending)
//! is read from the conversation's own history (the bot's last message is
//! the pending question), so it survives restarts and workers and can
//! never come from another conversation.
//!
//! Safety, by construction:
//! * an action whose `identity` needs a verified customer never runs for an
//!   unverified one: the reply asks them to sign in or to write from the
//!   address on the order, and carries no data;
//! * a call's answer is reduced to its `expose` fields and `require`
//!   ownership checks; a 404 and a failed check read the same to the
//!   customer ("not found"), so nobody learns whether someone else's order
//!   exists;
//! * nothing is cached: every answer is fetched for this ticket;
//! * secrets live in [`Actions`] and are filled into a request only;
//! * every call is recorded (action, status, latency; no payload) in a log
//!   line and in the ticket's usage (`action_calls`, `action_ms`);
//! * failures, time-outs, 5xx and the rate limit escalate `action_failed`.

pub mod call;
pub mod identity;
pub mod presets;
pub mod spec;
pub mod tools;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use regex::Regex;
use tracing::info;

use crate::domain::{Channel, Message, ReasonCode, Role, Ticket};
use crate::secret::Secret;

pub use call::{CallRecord, CallResult};
pub use identity::{Identity, IdentitySettings, VerifiedUser, WidgetUser};
pub use spec::{Action, ActionSpec, IdentityNeed};

type Limiter = governor::DefaultDirectRateLimiter;

/// What the action path decided for a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Reply with this text (an answer, a question, a refusal).
    Reply(String),
    /// Hand the ticket to a person.
    Escalate(ReasonCode, String),
}

/// The outcome of [`Actions::respond`], with the calls it made.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// What to do.
    pub step: Step,
    /// Calls made (zero or one).
    pub calls: Vec<CallRecord>,
    /// The action involved.
    pub action: String,
}

/// The configured actions, their secrets and an HTTP client.
pub struct Actions {
    actions: Vec<Compiled>,
    secrets: BTreeMap<String, Secret>,
    http: reqwest::Client,
}

struct Compiled {
    action: Action,
    intent: Regex,
    limiter: Option<Limiter>,
}

const SIGN_IN_WIDGET: &str = "I can look that up for you once you are signed in: please sign in to your account on our site, then ask me again here.";
const SIGN_IN_EMAIL: &str = "I can only look that up for the email address on the account: please write to us from that address.";
const CANCELLED: &str = "Alright, I have not changed anything.";

impl std::fmt::Debug for Actions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actions")
            .field(
                "actions",
                &self
                    .actions
                    .iter()
                    .map(|c| &c.action.spec.name)
                    .collect::<Vec<_>>(),
            )
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Actions {
    /// Compiles `specs` against `secrets` (every mistake is an error here).
    pub fn new(specs: &[ActionSpec], secrets: BTreeMap<String, Secret>) -> anyhow::Result<Self> {
        let names: Vec<&str> = secrets.keys().map(String::as_str).collect();
        let mut actions = Vec::new();
        for s in specs {
            let action = s.compile(&names)?;
            anyhow::ensure!(
                !actions
                    .iter()
                    .any(|c: &Compiled| c.action.spec.name == action.spec.name),
                "action {} is declared twice",
                action.spec.name
            );
            let words: Vec<String> = action.intent.iter().map(|w| regex::escape(w)).collect();
            let intent = Regex::new(&format!(r"(?i)\b(?:{})(?:s|es)?\b", words.join("|")))?;
            let limiter = NonZeroU32::new(action.spec.rate_limit_per_minute)
                .map(|n| governor::RateLimiter::direct(governor::Quota::per_minute(n)));
            actions.push(Compiled {
                action,
                intent,
                limiter,
            });
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("deskhand/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            actions,
            secrets,
            http,
        })
    }

    /// Checks `specs` as [`Actions::new`] does, without building a client;
    /// with `secrets_known` false, secret names are not checked.
    pub fn check(
        specs: &[ActionSpec],
        secrets: &BTreeMap<String, Secret>,
        secrets_known: bool,
    ) -> anyhow::Result<()> {
        let names: Vec<&str> = secrets.keys().map(String::as_str).collect();
        let mut seen = std::collections::HashSet::new();
        for s in specs {
            let a = s.compile_with(secrets_known.then_some(names.as_slice()))?;
            anyhow::ensure!(
                seen.insert(a.spec.name.clone()),
                "action {} is declared twice",
                a.spec.name
            );
        }
        Ok(())
    }

    /// Whether `text` names any action's intent words.
    pub fn intends(&self, text: &str) -> bool {
        self.actions.iter().any(|c| c.intent.is_match(text))
    }

    /// None configured.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The compiled actions, in configuration order.
    pub fn list(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter().map(|c| &c.action)
    }

    /// An action by name.
    pub fn get(&self, name: &str) -> Option<&Action> {
        self.find(name).map(|c| &c.action)
    }

    fn find(&self, name: &str) -> Option<&Compiled> {
        self.actions.iter().find(|c| c.action.spec.name == name)
    }

    /// Calls the action `name` now (rate limit, record, log). The caller
    /// has checked identity and confirmation.
    pub async fn run(
        &self,
        name: &str,
        params: &BTreeMap<String, String>,
        who: &Identity,
    ) -> (CallResult, CallRecord) {
        let Some(c) = self.find(name) else {
            return (
                CallResult::Failed(format!("no action named {name}")),
                CallRecord {
                    action: name.to_owned(),
                    status: "failed",
                    http_status: None,
                    latency: Default::default(),
                },
            );
        };
        let (result, record) = if c.limiter.as_ref().is_some_and(|l| l.check().is_err()) {
            (
                CallResult::Failed(format!(
                    "rate limit of {} calls a minute reached",
                    c.action.spec.rate_limit_per_minute
                )),
                CallRecord {
                    action: name.to_owned(),
                    status: "rate_limited",
                    http_status: None,
                    latency: Default::default(),
                },
            )
        } else {
            call::call(&self.http, &c.action, params, who, &self.secrets).await
        };
        info!(
            message = "Action called.",
            action = %record.action,
            status = record.status,
            http_status = record.http_status,
            latency_ms = record.latency.as_millis() as u64,
        );
        (result, record)
    }

    /// The action path for `ticket` given the conversation's earlier
    /// messages (oldest first, without this ticket's). `None`: no action
    /// applies; the generator answers as usual.
    ///
    /// With `fresh` false only a pending question or confirmation is
    /// handled (the LLM generators call the actions as tools instead).
    pub async fn respond(
        &self,
        ticket: &Ticket,
        history: &[Message],
        fresh: bool,
    ) -> Option<Response> {
        if self.actions.is_empty() {
            return None;
        }
        let text = ticket.text.as_str();
        let who = Identity::of(ticket);
        let last_bot = history.iter().rposition(|m| m.body.role != Role::Customer);
        let (bot_text, earlier): (Option<&str>, Vec<&str>) = match last_bot {
            Some(i) if history[i].body.role == Role::Assistant => (
                Some(history[i].body.text.as_str()),
                history[..i]
                    .iter()
                    .rev()
                    .filter(|m| m.body.role == Role::Customer)
                    .take(2)
                    .map(|m| m.body.text.as_str())
                    .collect(),
            ),
            _ => (None, Vec::new()),
        };
        if let Some(bot_text) = bot_text {
            // A confirmation pending: the bot's last message is a write
            // action's question for the parameters asked about before it.
            for c in &self.actions {
                let a = &c.action;
                if !a.write {
                    continue;
                }
                let Some(params) = extract(a, &earlier) else {
                    continue;
                };
                if render_params(&a.confirm, &params) != bot_text {
                    continue;
                }
                if affirmative(text) {
                    return Some(self.execute(a, params, &who, ticket.channel()).await);
                }
                if negative(text) {
                    return Some(reply(a, CANCELLED.into()));
                }
            }
            // A parameter pending: the bot's last message asked for it.
            for c in &self.actions {
                let a = &c.action;
                if !a.params.iter().any(|p| p.ask == bot_text) {
                    continue;
                }
                let mut sources = vec![text];
                sources.extend(&earlier);
                if let Some(params) = extract(a, &sources) {
                    return Some(self.proceed(a, params, &who, ticket.channel()).await);
                }
            }
        }
        if !fresh {
            return None;
        }
        // The action matching most of its intent words; then the one with
        // fewer (more specific); then the first declared.
        let c = self
            .actions
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let hits: std::collections::HashSet<String> = c
                    .intent
                    .find_iter(text)
                    .map(|m| {
                        m.as_str()
                            .to_lowercase()
                            .trim_end_matches("es")
                            .trim_end_matches('s')
                            .to_owned()
                    })
                    .collect();
                (!hits.is_empty()).then_some((
                    std::cmp::Reverse(hits.len()),
                    c.action.intent.len(),
                    i,
                ))
            })
            .min()
            .map(|(_, _, i)| &self.actions[i])?;
        let a = &c.action;
        if !who.satisfies(a.spec.identity) {
            return Some(reply(a, sign_in(ticket.channel()).into()));
        }
        match a.params.iter().find(|p| p.find(text).is_none()) {
            Some(missing) => Some(reply(a, missing.ask.clone())),
            None => {
                let params = extract(a, &[text]).unwrap_or_default();
                Some(self.proceed(a, params, &who, ticket.channel()).await)
            }
        }
    }

    /// Identity, then confirmation for writes, then the call.
    async fn proceed(
        &self,
        a: &Action,
        params: BTreeMap<String, String>,
        who: &Identity,
        channel: Channel,
    ) -> Response {
        if !who.satisfies(a.spec.identity) {
            return reply(a, sign_in(channel).into());
        }
        if a.write {
            return reply(a, render_params(&a.confirm, &params));
        }
        self.execute(a, params, who, channel).await
    }

    async fn execute(
        &self,
        a: &Action,
        params: BTreeMap<String, String>,
        who: &Identity,
        channel: Channel,
    ) -> Response {
        if !who.satisfies(a.spec.identity) {
            return reply(a, sign_in(channel).into());
        }
        let (result, record) = self.run(&a.spec.name, &params, who).await;
        let step = match result {
            CallResult::Found(fields) => Step::Reply(a.reply.render(
                &|v| {
                    params
                        .get(v)
                        .or_else(|| fields.get(v))
                        .cloned()
                        .unwrap_or_else(|| "not available yet".into())
                },
                &|_| String::new(),
            )),
            CallResult::NotFound => Step::Reply(render_params(&a.not_found, &params)),
            CallResult::Failed(what) => Step::Escalate(
                ReasonCode::ActionFailed,
                format!(
                    "action {} failed: {what} (after {} ms)",
                    a.spec.name,
                    record.latency.as_millis()
                ),
            ),
        };
        Response {
            step,
            calls: vec![record],
            action: a.spec.name.clone(),
        }
    }
}

fn reply(a: &Action, text: String) -> Response {
    Response {
        step: Step::Reply(text),
        calls: Vec::new(),
        action: a.spec.name.clone(),
    }
}

pub(crate) fn sign_in(channel: Channel) -> &'static str {
    match channel {
        Channel::Widget => SIGN_IN_WIDGET,
        Channel::Email | Channel::Helpdesk => SIGN_IN_EMAIL,
    }
}

/// Every parameter of `a`, each from the first of `texts` that has it.
fn extract(a: &Action, texts: &[&str]) -> Option<BTreeMap<String, String>> {
    a.params
        .iter()
        .map(|p| Some((p.name.clone(), texts.iter().find_map(|t| p.find(t))?)))
        .collect()
}

pub(crate) fn render_params(t: &spec::Template, params: &BTreeMap<String, String>) -> String {
    t.render(&|v| params.get(v).cloned().unwrap_or_default(), &|_| {
        String::new()
    })
}

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A short yes ("yes", "yes please", "go ahead", "confirm").
pub fn affirmative(text: &str) -> bool {
    let w = words(text);
    if w.is_empty()
        || w.len() > 6
        || w.iter()
            .any(|x| ["no", "not", "don't", "dont", "nope"].contains(&x.as_str()))
    {
        return false;
    }
    let yes = [
        "yes",
        "yep",
        "yeah",
        "yup",
        "confirm",
        "confirmed",
        "sure",
        "ok",
        "okay",
        "correct",
        "please",
        "y",
    ];
    yes.contains(&w[0].as_str())
        || (w.len() >= 2 && w[0] == "go" && w[1] == "ahead")
        || (w[0] == "do" && w.get(1).is_some_and(|x| x == "it"))
}

/// A short no ("no", "don't", "cancel that").
pub fn negative(text: &str) -> bool {
    let w = words(text);
    !w.is_empty()
        && w.len() <= 6
        && ["no", "nope", "don't", "dont", "stop", "cancel", "n"].contains(&w[0].as_str())
}

/// Shared handle.
pub type SharedActions = Arc<Actions>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_and_no() {
        for y in ["yes", "Yes please", "go ahead", "OK", "confirm", "do it!"] {
            assert!(affirmative(y), "{y}");
            assert!(!negative(y), "{y}");
        }
        for n in ["no", "No, don't", "cancel that", "nope"] {
            assert!(negative(n), "{n}");
            assert!(!affirmative(n), "{n}");
        }
        for neither in [
            "",
            "what?",
            "yes but actually I meant a different order number, not that one at all",
        ] {
            assert!(!affirmative(neither), "{neither}");
        }
        assert!(!affirmative("ok, do not"));
    }
}
