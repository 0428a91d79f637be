//! The configured actions as model tools, for one ticket.
//!
//! Invariants: the identity is the ticket's, fixed here, never the model's
//! to choose (`customer.email` is not a tool parameter); a parameter the
//! model passes must match the action's pattern; a write action never runs
//! from the model (it answers `confirmation_required` with the question to
//! ask, and the customer's "yes" on the next turn runs it through
//! [`super::Actions::respond`]); the model gets the exposed fields and a
//! status, nothing else; a failed call is remembered so the ticket
//! escalates `action_failed` whatever the model then says.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Actions, CallRecord, CallResult, Identity, sign_in};
use crate::domain::Channel;
use crate::knowledge::Passage;
use crate::llm::tools::{ToolSpec, Tools};

/// The tools of one ticket, and what their calls did.
pub struct ActionTools {
    actions: Arc<Actions>,
    who: Identity,
    channel: Channel,
    calls: Mutex<Vec<CallRecord>>,
    evidence: Mutex<Vec<Passage>>,
    failed: Mutex<Option<String>>,
}

impl ActionTools {
    /// Tools for a ticket from `channel` by `who`.
    pub fn new(actions: Arc<Actions>, who: Identity, channel: Channel) -> Self {
        Self {
            actions,
            who,
            channel,
            calls: Mutex::default(),
            evidence: Mutex::default(),
            failed: Mutex::default(),
        }
    }

    /// The calls made.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Why a call failed, if one did.
    pub fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait]
impl Tools for ActionTools {
    fn specs(&self) -> Vec<ToolSpec> {
        self.actions
            .list()
            .map(|a| {
                let mut props = serde_json::Map::new();
                for p in &a.params {
                    props.insert(
                        p.name.clone(),
                        json!({"type": "string", "description": p.description}),
                    );
                }
                let names: Vec<&str> = a.params.iter().map(|p| p.name.as_str()).collect();
                let mut description = a
                    .spec
                    .when
                    .clone()
                    .unwrap_or_else(|| a.spec.description.clone());
                if a.write {
                    description.push_str(" (changes something: the customer must confirm first)");
                }
                ToolSpec {
                    name: a.spec.name.clone(),
                    description,
                    schema: json!({
                        "type": "object",
                        "properties": props,
                        "required": names,
                        "additionalProperties": false,
                    }),
                }
            })
            .collect()
    }

    async fn call(&self, name: &str, input: &Value) -> Value {
        let Some(a) = self.actions.get(name) else {
            return json!({"status": "error", "error": format!("no tool named {name}")});
        };
        if !self.who.satisfies(a.spec.identity) {
            return json!({"status": "identity_required", "tell_customer": sign_in(self.channel)});
        }
        let mut params = BTreeMap::new();
        for p in &a.params {
            let given = match input.get(&p.name) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            match p.find(&given) {
                Some(v) => {
                    params.insert(p.name.clone(), v);
                }
                None => return json!({"status": "missing_parameter", "ask_customer": p.ask}),
            }
        }
        if a.write {
            return json!({
                "status": "confirmation_required",
                "ask_customer": super::render_params(&a.confirm, &params),
            });
        }
        let (result, record) = self.actions.run(name, &params, &self.who).await;
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record.clone());
        match result {
            CallResult::Found(fields) => {
                let text = fields
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join("\n");
                self.evidence
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Passage {
                        doc_id: format!("action:{name}"),
                        title: a.spec.description.clone(),
                        section: None,
                        text,
                        url: None,
                        score: 1.0,
                        relevance: 1.0,
                    });
                let mut out = serde_json::Map::new();
                out.insert("status".into(), json!("found"));
                out.insert("source".into(), json!(format!("action:{name}")));
                for (k, v) in fields {
                    out.insert(k, json!(v));
                }
                Value::Object(out)
            }
            CallResult::NotFound => json!({"status": "not_found"}),
            CallResult::Failed(what) => {
                *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                    "action {name} failed: {what} (after {} ms)",
                    record.latency.as_millis()
                ));
                json!({"status": "failed"})
            }
        }
    }

    fn evidence(&self) -> Vec<Passage> {
        self.evidence
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
