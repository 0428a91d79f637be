//! Agent console sessions: signed cookies that every front door (one
//! `serve` process or many Lambda instances) checks with one read of the
//! agent's session generation, and that sign-out revokes server-side.
//!
//! * Sign-in trades an agent key for a cookie
//!   `dh_agent=v2.<name>.<generation>.<expiry>.<mac>` (`HttpOnly; Secure;
//!   SameSite=Strict; Path=/agent`): the MAC, under the server's secret,
//!   covers the agent's name, their session generation
//!   ([`crate::store::PeopleStore::session_generation`]), the expiry and a
//!   hash of the agent's key. A cookie dies when it expires, when that key
//!   is changed or removed, and when the agent signs out: sign-out moves
//!   the agent to the next generation, so every cookie issued before —
//!   on this device, on another, or copied by an attacker — is refused
//!   (401) from then on. The key itself is never stored by the browser.
//! * Every state-changing request must also carry `X-CSRF-Token`, an HMAC
//!   of the cookie that only a page that read the sign-in answer (or
//!   `GET /agent/api/session`, same-origin) knows: a cross-site form can
//!   make the browser send the cookie (were SameSite not enough) but can
//!   never add the header.
//! * Keys compare in constant time, every configured key each time, so
//!   timing tells neither which agent nor how much of a key matched.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::ApiSettings;
use crate::api::Tokens;
use crate::secret::Secret;
use crate::store::people::MAX_AGENT_NAME;

/// The cookie's name.
pub const COOKIE: &str = "dh_agent";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

const SESSION_CONTEXT: &[u8] = b"deskhand console session v2\0";
const CSRF_CONTEXT: &[u8] = b"deskhand console csrf v1\0";

/// One agent who may sign in to the console (`[[agents]]` in the
/// configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentAccount {
    /// Shown beside their notes and assignments; unique.
    pub name: String,
    /// Their key (never printed).
    pub key: Secret,
}

/// A signed-in agent, as the cookie says: still to be checked against the
/// agent's current session generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Who.
    pub agent: String,
    /// The session generation it was issued in.
    pub generation: u64,
    /// Until when.
    pub expires_at: DateTime<Utc>,
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Constant-time, length-hiding equality (both sides hashed first).
fn same(a: &str, b: &str) -> bool {
    digest(a).ct_eq(&digest(b)).into()
}

/// An agent name as shown: no control characters, bounded, trimmed.
pub fn clean_name(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_control())
        .take(MAX_AGENT_NAME)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The key that signs `agent`'s sessions: their own with `[[agents]]`,
/// else the one shared `agent_key`.
fn key_of<'a>(config: &'a ApiSettings, agent: &str) -> Option<&'a Secret> {
    if config.agents.is_empty() {
        config
            .agent_key
            .as_ref()
            .filter(|k| !k.expose().trim().is_empty())
    } else {
        config
            .agents
            .iter()
            .find(|a| a.name == agent)
            .map(|a| &a.key)
    }
}

/// Whether the console can be signed in to at all.
pub fn enabled(config: &ApiSettings) -> bool {
    !config.agents.is_empty()
        || config
            .agent_key
            .as_ref()
            .is_some_and(|k| !k.expose().trim().is_empty())
}

/// The agent `key` signs in, if any. With `[[agents]]` the key names the
/// agent; with one shared key the agent names themselves (`name`, or
/// "agent").
pub fn sign_in(config: &ApiSettings, name: Option<&str>, key: &str) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    if config.agents.is_empty() {
        let shared = key_of(config, "")?;
        let who = name.map(clean_name).filter(|n| !n.is_empty());
        return same(shared.expose(), key).then(|| who.unwrap_or_else(|| "agent".to_owned()));
    }
    let mut found = None;
    for a in &config.agents {
        if same(a.key.expose(), key) && found.is_none() {
            found = Some(a.name.clone());
        }
    }
    found
}

fn mac(tokens: &Tokens, agent: &str, generation: u64, expires: i64, key: &Secret) -> [u8; 32] {
    tokens.sign(
        SESSION_CONTEXT,
        &[
            agent.as_bytes(),
            generation.to_string().as_bytes(),
            expires.to_string().as_bytes(),
            &digest(key.expose()),
        ],
    )
}

/// The cookie value of a new session for `agent` in session `generation`,
/// or `None` when the agent has no key (cannot happen right after
/// [`sign_in`]).
pub fn issue(
    config: &ApiSettings,
    tokens: &Tokens,
    agent: &str,
    generation: u64,
    until: DateTime<Utc>,
) -> Option<String> {
    let key = key_of(config, agent)?;
    let exp = until.timestamp();
    Some(format!(
        "v2.{}.{generation}.{exp}.{}",
        URL_SAFE_NO_PAD.encode(agent.as_bytes()),
        URL_SAFE_NO_PAD.encode(mac(tokens, agent, generation, exp, key))
    ))
}

/// The session a cookie value proves, if it is genuine and unexpired (the
/// caller still compares its generation with the agent's current one).
pub fn verify(
    config: &ApiSettings,
    tokens: &Tokens,
    value: &str,
    now: DateTime<Utc>,
) -> Option<Session> {
    let mut parts = value.split('.');
    let (v, name, generation, exp, sig) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if v != "v2" || parts.next().is_some() {
        return None;
    }
    let agent = String::from_utf8(URL_SAFE_NO_PAD.decode(name).ok()?).ok()?;
    let generation: u64 = generation.parse().ok()?;
    let exp: i64 = exp.parse().ok()?;
    let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
    let key = key_of(config, &agent)?;
    let ok: bool = mac(tokens, &agent, generation, exp, key)
        .ct_eq(sig.as_slice())
        .into();
    let expires_at = DateTime::from_timestamp(exp, 0)?;
    (ok && expires_at > now).then_some(Session {
        agent,
        generation,
        expires_at,
    })
}

/// The CSRF token bound to a cookie value.
pub fn csrf(tokens: &Tokens, cookie: &str) -> String {
    URL_SAFE_NO_PAD.encode(tokens.sign(CSRF_CONTEXT, &[cookie.as_bytes()]))
}

/// Whether `given` is the CSRF token of `cookie` (constant-time).
pub fn csrf_ok(tokens: &Tokens, cookie: &str, given: &str) -> bool {
    same(&csrf(tokens, cookie), given)
}

/// The `dh_agent` cookie's value in a `Cookie` header, if any.
pub fn cookie_value(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a session (or, with `None`, one that clears it).
pub fn set_cookie(value: Option<(&str, i64)>) -> String {
    let attrs = "Path=/agent; HttpOnly; Secure; SameSite=Strict";
    match value {
        Some((v, max_age)) => format!("{COOKIE}={v}; Max-Age={max_age}; {attrs}"),
        None => format!("{COOKIE}=; Max-Age=0; {attrs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(agents: &[(&str, &str)], shared: Option<&str>) -> ApiSettings {
        ApiSettings {
            agents: agents
                .iter()
                .map(|(n, k)| AgentAccount {
                    name: (*n).into(),
                    key: Secret::new(*k),
                })
                .collect(),
            agent_key: shared.map(Secret::new),
            ..ApiSettings::default()
        }
    }

    fn tokens() -> Tokens {
        Tokens::new(Secret::new("console-session-test-secret-0123456789"))
    }

    #[test]
    fn keys_name_their_agent() {
        let c = config(
            &[
                ("dana", "dana-key-0123456789"),
                ("lee", "lee-key-0123456789"),
            ],
            None,
        );
        assert_eq!(
            sign_in(&c, None, "lee-key-0123456789").as_deref(),
            Some("lee")
        );
        // The name given is ignored when keys name their agents.
        assert_eq!(
            sign_in(&c, Some("lee"), "dana-key-0123456789").as_deref(),
            Some("dana")
        );
        for wrong in ["", "lee-key-012345678", "LEE-KEY-0123456789", "dana"] {
            assert_eq!(sign_in(&c, None, wrong), None, "{wrong}");
        }
        let shared = config(&[], Some("shared-key-0123456789"));
        assert_eq!(
            sign_in(&shared, Some(" Dana\u{7}  "), "shared-key-0123456789").as_deref(),
            Some("Dana")
        );
        assert_eq!(
            sign_in(&shared, None, "shared-key-0123456789").as_deref(),
            Some("agent")
        );
        assert_eq!(sign_in(&shared, None, "nope"), None);
        assert_eq!(sign_in(&config(&[], None), None, "anything"), None);
        assert!(!enabled(&config(&[], Some("  "))));
    }

    #[test]
    fn sessions_are_bound_to_secret_key_and_time() {
        let c = config(&[("dana", "dana-key-0123456789")], None);
        let t = tokens();
        let now = Utc::now();
        let until = now + chrono::Duration::hours(1);
        let v = issue(&c, &t, "dana", 3, until).unwrap();
        let s = verify(&c, &t, &v, now).unwrap();
        assert_eq!((s.agent.as_str(), s.generation), ("dana", 3));
        // Expired.
        assert_eq!(
            verify(&c, &t, &v, until + chrono::Duration::seconds(1)),
            None
        );
        // Another server secret.
        let other = Tokens::new(Secret::new("another-secret-entirely-0123"));
        assert_eq!(verify(&c, &other, &v, now), None);
        // The agent's key rotated.
        let rotated = config(&[("dana", "dana-new-key-0123456789")], None);
        assert_eq!(verify(&rotated, &t, &v, now), None);
        // The agent removed.
        assert_eq!(verify(&config(&[("lee", "x")], None), &t, &v, now), None);
        // Tampered: another name, a later generation or expiry, garbage.
        let parts: Vec<&str> = v.split('.').collect();
        let renamed = format!(
            "v2.{}.{}.{}.{}",
            URL_SAFE_NO_PAD.encode("lee"),
            parts[2],
            parts[3],
            parts[4]
        );
        let newer = format!("v2.{}.4.{}.{}", parts[1], parts[3], parts[4]);
        let later = format!(
            "v2.{}.{}.{}.{}",
            parts[1],
            parts[2],
            until.timestamp() + 999,
            parts[4]
        );
        let old_format = format!("v1.{}.{}.{}", parts[1], parts[3], parts[4]);
        for bad in [
            renamed.as_str(),
            newer.as_str(),
            later.as_str(),
            old_format.as_str(),
            "",
            "v2",
            "v2....",
            "v2.a.b.c.d",
            "v2.ZGFuYQ.-1.1.x",
            &format!("{v}.x"),
        ] {
            assert_eq!(verify(&c, &t, bad, now), None, "{bad}");
        }
    }

    #[test]
    fn csrf_tokens_belong_to_one_cookie() {
        let t = tokens();
        let a = csrf(&t, "cookie-a");
        assert!(csrf_ok(&t, "cookie-a", &a));
        assert!(!csrf_ok(&t, "cookie-b", &a));
        assert!(!csrf_ok(&t, "cookie-a", ""));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(cookie_value(&h), None);
        h.insert("cookie", "a=1; dh_agent=v1.x.y.z; b=2".parse().unwrap());
        assert_eq!(cookie_value(&h), Some("v1.x.y.z"));
        h.insert("cookie", "dh_agent=v2.a.0.1.z".parse().unwrap());
        assert_eq!(cookie_value(&h), Some("v2.a.0.1.z"));
        h.insert("cookie", "dh_agentx=1; dh_agent=".parse().unwrap());
        assert_eq!(cookie_value(&h), None);
        assert!(set_cookie(Some(("v", 60))).contains("HttpOnly; Secure; SameSite=Strict"));
    }
}
