//! One HTTP call of an action, and what of its answer may be kept.
//!
//! Invariants: values the customer supplied are percent-encoded into the
//! URL and query and JSON-escaped into bodies, never spliced raw; secrets
//! are filled in here and nowhere else, and neither they nor the URL (which
//! may carry them) nor any payload reach a log or an error message; of the
//! response only the `expose` fields survive, as strings. Nothing is cached.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::identity::Identity;
use super::spec::{Action, Method, Template};
use crate::secret::Secret;

/// What a call produced.
#[derive(Debug, Clone, PartialEq)]
pub enum CallResult {
    /// The exposed fields (missing ones absent).
    Found(BTreeMap<String, String>),
    /// 404/410, or a 2xx where nothing exposed is present or an ownership
    /// check (`require`) failed: nothing is known, and nothing is told.
    NotFound,
    /// The call failed: time-out, connection, 5xx, 429, other 4xx, or a body
    /// that is not JSON. The text is for a person and carries no payload.
    Failed(String),
}

/// One recorded call: no payload, no parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// The action.
    pub action: String,
    /// `found`, `not_found`, `failed`, `timeout`, `rate_limited`.
    pub status: &'static str,
    /// The HTTP status, when one came back.
    pub http_status: Option<u16>,
    /// Wall time of the call.
    pub latency: Duration,
}

/// The largest response read.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// The value of a request placeholder.
fn var_value(name: &str, params: &BTreeMap<String, String>, who: &Identity) -> String {
    match name {
        "customer.email" => who.email.as_ref().map(|e| e.as_str().to_owned()),
        "customer.id" => who.user_id.clone(),
        p => params.get(p).cloned(),
    }
    .unwrap_or_default()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Renders the request parts of `action`.
pub struct Request {
    /// Method.
    pub method: Method,
    /// The full URL (may carry secrets: never logged).
    pub url: String,
    /// Headers (may carry secrets: never logged).
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Option<Value>,
}

impl Action {
    /// The request for `params` on behalf of `who`.
    pub fn request(
        &self,
        params: &BTreeMap<String, String>,
        who: &Identity,
        secrets: &BTreeMap<String, Secret>,
    ) -> Request {
        let secret = |s: &str| {
            secrets
                .get(s)
                .map(|v| v.expose().to_owned())
                .unwrap_or_default()
        };
        let encoded = |v: &str| encode_component(&var_value(v, params, who));
        let raw = |v: &str| var_value(v, params, who);
        let mut url = self.url.render(&encoded, &|_| String::new());
        if !self.query.is_empty() {
            let q: Vec<String> = self
                .query
                .iter()
                .map(|(k, t)| {
                    format!(
                        "{}={}",
                        encode_component(k),
                        encode_component(&t.render(&raw, &secret))
                    )
                })
                .collect();
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&q.join("&"));
        }
        let headers = self
            .headers
            .iter()
            .map(|(k, t)| (k.clone(), t.render(&raw, &secret).replace(['\r', '\n'], "")))
            .collect();
        let body = self.spec.body.as_ref().map(|b| fill_body(b, &raw));
        Request {
            method: self.spec.method,
            url,
            headers,
            body,
        }
    }

    /// What of `response` may be kept: the `require` checks, then the
    /// exposed fields.
    pub fn extract(
        &self,
        response: &Value,
        params: &BTreeMap<String, String>,
        who: &Identity,
    ) -> CallResult {
        // `/*/…` pointers pick the first element of a top-level array that
        // passes every `require` check (search endpoints answer lists).
        if let Value::Array(items) = response
            && self
                .require
                .iter()
                .map(|(p, _)| p.as_str())
                .chain(self.spec.expose.values().map(String::as_str))
                .any(|p| p.starts_with("/*/"))
        {
            return items
                .iter()
                .map(|item| self.extract_one(item, params, who, "/*"))
                .find(|r| matches!(r, CallResult::Found(_)))
                .unwrap_or(CallResult::NotFound);
        }
        self.extract_one(response, params, who, "")
    }

    fn extract_one(
        &self,
        response: &Value,
        params: &BTreeMap<String, String>,
        who: &Identity,
        strip: &str,
    ) -> CallResult {
        let at = |ptr: &str| {
            let ptr = ptr.strip_prefix(strip).unwrap_or(ptr);
            response.pointer(ptr).and_then(scalar)
        };
        let raw = |v: &str| var_value(v, params, who);
        for (ptr, want) in &self.require {
            let want = want.render(&raw, &|_| String::new());
            match at(ptr) {
                Some(got) if !want.is_empty() && got.eq_ignore_ascii_case(&want) => {}
                _ => return CallResult::NotFound,
            }
        }
        let fields: BTreeMap<String, String> = self
            .spec
            .expose
            .iter()
            .filter_map(|(k, ptr)| Some((k.clone(), at(ptr)?)))
            .collect();
        if fields.is_empty() {
            CallResult::NotFound
        } else {
            CallResult::Found(fields)
        }
    }
}

fn fill_body(v: &Value, raw: &dyn Fn(&str) -> String) -> Value {
    match v {
        Value::String(s) => Value::String(
            Template::parse(s)
                .map(|t| t.render(raw, &|_| String::new()))
                .unwrap_or_else(|_| s.clone()),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| fill_body(x, raw)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), fill_body(x, raw)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A JSON scalar as text (strings, numbers, booleans; not null, arrays or objects).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.chars().take(500).collect()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Calls `action`: the [`CallResult`] and its record.
pub async fn call(
    http: &reqwest::Client,
    action: &Action,
    params: &BTreeMap<String, String>,
    who: &Identity,
    secrets: &BTreeMap<String, Secret>,
) -> (CallResult, CallRecord) {
    let req = action.request(params, who, secrets);
    let started = Instant::now();
    let method = match req.method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    };
    let mut builder = http
        .request(method, &req.url)
        .timeout(Duration::from_secs(action.spec.timeout_secs))
        .header(reqwest::header::ACCEPT, "application/json");
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    if let Some(body) = &req.body {
        builder = builder.json(body);
    }
    let record = |status, http_status| CallRecord {
        action: action.spec.name.clone(),
        status,
        http_status,
        latency: started.elapsed(),
    };
    let response = match builder.send().await {
        Ok(r) => r,
        Err(e) => {
            // reqwest's error text names the URL, which may carry secrets.
            let (status, what) = if e.is_timeout() {
                (
                    "timeout",
                    format!("timed out after {} s", action.spec.timeout_secs),
                )
            } else if e.is_connect() {
                ("failed", "could not connect".to_owned())
            } else {
                ("failed", "request failed".to_owned())
            };
            return (CallResult::Failed(what), record(status, None));
        }
    };
    let code = response.status().as_u16();
    if matches!(code, 404 | 410) {
        return (CallResult::NotFound, record("not_found", Some(code)));
    }
    if !response.status().is_success() {
        return (
            CallResult::Failed(format!("the service answered HTTP {code}")),
            record("failed", Some(code)),
        );
    }
    let body = match read_capped(response).await {
        Ok(b) => b,
        Err(what) => return (CallResult::Failed(what), record("failed", Some(code))),
    };
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return (
            CallResult::Failed(format!("HTTP {code} with a body that is not JSON")),
            record("failed", Some(code)),
        );
    };
    // GraphQL reports failures in a 200 with `errors`.
    if json
        .get("errors")
        .is_some_and(|e| e.as_array().is_some_and(|a| !a.is_empty()))
        && json.get("data").is_none_or(Value::is_null)
    {
        return (
            CallResult::Failed("the service answered with errors".into()),
            record("failed", Some(code)),
        );
    }
    let result = action.extract(&json, params, who);
    let status = if matches!(result, CallResult::Found(_)) {
        "found"
    } else {
        "not_found"
    };
    (result, record(status, Some(code)))
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(c)) => {
                body.extend_from_slice(&c);
                if body.len() > MAX_RESPONSE_BYTES {
                    return Err("response larger than 1 MiB".into());
                }
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => return Err("timed out reading the response".into()),
            Err(_) => return Err("the response was cut off".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::spec::ActionSpec;
    use serde_json::json;

    fn action() -> Action {
        let spec: ActionSpec = serde_json::from_value(json!({
            "name": "order_status",
            "url": "https://shop.example/api/orders/{order_number}?email={customer.email}",
            "query": {"q": "{order_number} {customer.email}"},
            "headers": {"Authorization": "Bearer ${secret:t}"},
            "params": {"order_number": {"pattern": "#?(\\d{4})"}},
            "expose": {"status": "/*/status"},
            "require": {"/*/email": "{customer.email}"},
        }))
        .unwrap();
        spec.compile(&["t"]).unwrap()
    }

    fn who(email: &str) -> Identity {
        Identity {
            email: crate::domain::EmailAddress::parse(email),
            user_id: None,
            by: Some(super::super::identity::VerifiedBy::Helpdesk),
        }
    }

    #[test]
    fn customer_values_are_encoded_and_secrets_filled_only_in_headers() {
        let a = action();
        let params = BTreeMap::from([("order_number".to_owned(), "1/0?&#".to_owned())]);
        let secrets = BTreeMap::from([("t".to_owned(), Secret::new("s3cr3t"))]);
        let r = a.request(&params, &who("a+b@example.com"), &secrets);
        assert_eq!(
            r.url,
            "https://shop.example/api/orders/1%2F0%3F%26%23?email=a%2Bb%40example.com&q=1%2F0%3F%26%23%20a%2Bb%40example.com"
        );
        assert_eq!(
            r.headers,
            [("Authorization".to_owned(), "Bearer s3cr3t".to_owned())]
        );
    }

    #[test]
    fn only_the_customers_element_and_exposed_fields_survive() {
        let a = action();
        let p = BTreeMap::new();
        let body = json!([
            {"email": "bob@example.com", "status": "bob's", "card": "4242"},
            {"email": "ANN@example.com", "status": "shipped", "card": "4242"},
        ]);
        assert_eq!(
            a.extract(&body, &p, &who("ann@example.com")),
            CallResult::Found(BTreeMap::from([("status".into(), "shipped".into())]))
        );
        assert_eq!(
            a.extract(&body, &p, &who("eve@example.com")),
            CallResult::NotFound
        );
        // Garbage shapes are "not found", never a panic or a leak.
        for junk in [
            json!(null),
            json!(1),
            json!("x"),
            json!({}),
            json!([[]]),
            json!([{"email": null}]),
        ] {
            assert_eq!(
                a.extract(&junk, &p, &who("ann@example.com")),
                CallResult::NotFound,
                "{junk}"
            );
        }
    }
}
