//! The agent console's API end to end over HTTP (the real app on a
//! temporary SQLite file and the demo KB): sign-in and its cookie, CSRF,
//! the queue, and every action an agent takes. The page itself is driven
//! in Chromium by `tests/browser/console_browser.rs`.

use crate::common;

use common::{TestApp, with_role};
use deskhand::api::console::AgentAccount;
use deskhand::secret::Secret;
use serde_json::{Value, json};

const SHARED: &str = "console-shared-key-0123456789";
const DANA: &str = "dana-console-key-0123456789";
const LEE: &str = "lee-console-key-0123456789";

/// A signed-in console session: its cookie and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

async fn sign_in(app: &TestApp, body: Value) -> (u16, Value, Option<String>) {
    let res = app
        .http
        .post(app.url("/agent/api/session"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, res.json().await.unwrap_or(Value::Null), cookie)
}

async fn session(app: &TestApp, body: Value) -> Session {
    let (status, v, cookie) = sign_in(app, body).await;
    assert_eq!(status, 200, "{v}");
    let cookie = cookie.expect("a Set-Cookie");
    let pair = cookie.split(';').next().unwrap().to_owned();
    Session {
        cookie: pair,
        csrf: v["csrf"].as_str().unwrap().to_owned(),
    }
}

async fn get(app: &TestApp, s: Option<&Session>, path: &str) -> (u16, Value) {
    let mut req = app.http.get(app.url(path));
    if let Some(s) = s {
        req = req.header("cookie", &s.cookie);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// POSTs as `s`, with its CSRF token unless `csrf` overrides it.
async fn post(
    app: &TestApp,
    s: &Session,
    path: &str,
    body: Option<Value>,
    csrf: Option<&str>,
) -> (u16, Value) {
    let mut req = app
        .http
        .post(app.url(path))
        .header("cookie", &s.cookie)
        .header("x-csrf-token", csrf.unwrap_or(&s.csrf));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A widget conversation escalated because the customer asked for a person.
async fn escalated(app: &TestApp) -> (String, String) {
    let (id, token) = app.conversation().await;
    app.post(&id, &token, "I want to talk to a human please")
        .await;
    let poll = app.wait_for_reply(&id, &token, 1).await;
    assert_eq!(poll["status"], "escalated", "{poll}");
    (id, token)
}

fn queued<'a>(queue: &'a Value, id: &str) -> Option<&'a Value> {
    queue["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["conversation_id"] == id)
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_refuses_wrong_keys() {
    let app = TestApp::spawn_with(|c| c.agent_key = Some(Secret::new(SHARED))).await;
    for wrong in [
        json!({"key": "nope"}),
        json!({"key": ""}),
        json!({"key": format!("{SHARED}x")}),
    ] {
        let (status, v, cookie) = sign_in(&app, wrong.clone()).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (401, Some("invalid_agent_key")),
            "{wrong}"
        );
        assert!(cookie.is_none(), "no cookie for a wrong key");
    }
    let (status, v, cookie) = sign_in(&app, json!({"key": SHARED, "name": "Dana"})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["agent"], "Dana");
    let cookie = cookie.unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/agent"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains(SHARED), "the key never travels back");
    let s = Session {
        cookie: cookie.split(';').next().unwrap().to_owned(),
        csrf: v["csrf"].as_str().unwrap().to_owned(),
    };
    let (status, who) = get(&app, Some(&s), "/agent/api/session").await;
    assert_eq!((status, who["agent"].as_str()), (200, Some("Dana")));
    assert_eq!(who["csrf"], s.csrf.as_str());
    // No cookie, or a forged one: not signed in.
    assert_eq!(get(&app, None, "/agent/api/queue").await.0, 401);
    let forged = Session {
        cookie: "dh_agent=v1.RGFuYQ.9999999999.AAAA".into(),
        csrf: s.csrf.clone(),
    };
    let (status, v) = get(&app, Some(&forged), "/agent/api/queue").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("not_signed_in"))
    );
    // Signing out clears the cookie.
    let res = app
        .http
        .post(app.url("/agent/api/session/end"))
        .header("cookie", &s.cookie)
        .header("x-csrf-token", &s.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    app.stop().await;
}

#[tokio::test]
async fn state_changes_without_the_csrf_token_are_refused_and_change_nothing() {
    let app = TestApp::spawn_with(|c| c.agent_key = Some(Secret::new(SHARED))).await;
    let (id, token) = escalated(&app).await;
    let s = session(&app, json!({"key": SHARED})).await;
    let other = session(&app, json!({"key": SHARED, "name": "someone else"})).await;
    let path = format!("/agent/api/conversations/{id}/reply");
    for csrf in ["", "forged", other.csrf.as_str()] {
        let (status, v) = post(&app, &s, &path, Some(json!({"text": "sneaky"})), Some(csrf)).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (403, Some("csrf_failed")),
            "{csrf:?}"
        );
    }
    // A request with no header at all, like a cross-site form post.
    let res = app
        .http
        .post(app.url(&format!("/agent/api/conversations/{id}/close")))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let poll = app.poll(&id, &token, "").await.1;
    assert!(with_role(&poll, "agent").is_empty(), "{poll}");
    assert_eq!(poll["status"], "escalated");
    app.stop().await;
}

#[tokio::test]
async fn an_escalated_conversation_is_queued_and_an_agent_works_it() {
    let app = TestApp::spawn_with(|c| {
        c.agents = vec![
            AgentAccount {
                name: "Dana".into(),
                key: Secret::new(DANA),
            },
            AgentAccount {
                name: "Lee".into(),
                key: Secret::new(LEE),
            },
        ];
    })
    .await;
    let (id, token) = escalated(&app).await;
    // An answered conversation never queues.
    let (open_id, open_token) = app.conversation().await;
    app.post(&open_id, &open_token, "How do I export my data?")
        .await;
    app.wait_for_reply(&open_id, &open_token, 1).await;

    // The key names the agent, whatever name is typed.
    let dana = session(&app, json!({"key": DANA, "name": "Lee"})).await;
    let (_, who) = get(&app, Some(&dana), "/agent/api/session").await;
    assert_eq!(who["agent"], "Dana");

    let (status, q) = get(&app, Some(&dana), "/agent/api/queue").await;
    assert_eq!(status, 200, "{q}");
    let item = queued(&q, &id).unwrap_or_else(|| panic!("{id} not queued: {q}"));
    assert_eq!(item["reason"], "asked_for_human");
    assert_eq!(item["channel"], "widget");
    assert_eq!(item["priority"], "normal");
    assert!(
        item["waiting_secs"].is_null(),
        "the holding notice came last: {item}"
    );
    assert!(queued(&q, &open_id).is_none(), "{q}");
    // Filters.
    let (_, q) = get(&app, Some(&dana), "/agent/api/queue?reason=low_confidence").await;
    assert!(queued(&q, &id).is_none());
    let (_, q) = get(
        &app,
        Some(&dana),
        "/agent/api/queue?channel=widget&reason=asked_for_human",
    )
    .await;
    assert!(queued(&q, &id).is_some());
    let (_, q) = get(&app, Some(&dana), "/agent/api/queue?channel=email").await;
    assert!(queued(&q, &id).is_none());
    let (status, v) = get(&app, Some(&dana), "/agent/api/queue?reason=bogus").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_reason"))
    );

    // The transcript.
    let conv = format!("/agent/api/conversations/{id}");
    let (status, c) = get(&app, Some(&dana), &conv).await;
    assert_eq!(status, 200, "{c}");
    let roles: Vec<&str> = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["customer", "system"], "{c}");
    assert_eq!(c["reason"], "asked_for_human");
    assert!(c["assignee"].is_null());

    // A note: the console shows it, the customer never sees it.
    let (status, n) = post(
        &app,
        &dana,
        &format!("{conv}/note"),
        Some(json!({"text": "VIP, be nice"})),
        None,
    )
    .await;
    assert_eq!(status, 201, "{n}");
    assert_eq!(n["agent"], "Dana");
    // Assign, then reply: the customer's poll shows the reply.
    let (status, a) = post(&app, &dana, &format!("{conv}/assign"), None, None).await;
    assert_eq!((status, a["assignee"].as_str()), (200, Some("Dana")));
    let (status, r) = post(
        &app,
        &dana,
        &format!("{conv}/reply"),
        Some(json!({"text": "Hi, Dana here."})),
        None,
    )
    .await;
    assert_eq!(status, 201, "{r}");
    let poll = app.poll(&id, &token, "").await.1;
    let agent = with_role(&poll, "agent");
    assert_eq!(agent.len(), 1, "{poll}");
    assert_eq!(agent[0]["text"], "Hi, Dana here.");
    assert!(
        !poll.to_string().contains("VIP"),
        "a note reached the customer: {poll}"
    );
    let (_, c) = get(&app, Some(&dana), &conv).await;
    assert_eq!(c["notes"][0]["text"], "VIP, be nice");
    assert_eq!(c["assignee"], "Dana");
    // The customer writes again: the queue shows them waiting.
    app.post(&id, &token, "Thanks Dana, one more thing").await;
    let lee = session(&app, json!({"key": LEE})).await;
    let mut waiting = Value::Null;
    for _ in 0..200 {
        let (_, q) = get(&app, Some(&lee), "/agent/api/queue").await;
        if let Some(i) = queued(&q, &id)
            && i["last_role"] == "customer"
        {
            waiting = i.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(waiting["waiting_secs"].as_i64().is_some(), "{waiting}");
    assert_eq!(waiting["assignee"], "Dana");

    // Close: off the queue. Hand back: open again, unassigned.
    let (status, v) = post(&app, &lee, &format!("{conv}/close"), None, None).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("closed")));
    let (_, q) = get(&app, Some(&lee), "/agent/api/queue").await;
    assert!(queued(&q, &id).is_none(), "{q}");
    let (status, v) = post(&app, &lee, &format!("{conv}/handback"), None, None).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("open")));
    let (_, c) = get(&app, Some(&lee), &conv).await;
    assert!(c["assignee"].is_null(), "{c}");
    // Unknown and garbage conversations.
    let (status, _) = get(
        &app,
        Some(&lee),
        &format!("/agent/api/conversations/{}", uuid::Uuid::new_v4()),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post(
        &app,
        &lee,
        "/agent/api/conversations/not-an-id/note",
        Some(json!({"text": "x"})),
        None,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post(
        &app,
        &lee,
        &format!("{conv}/note"),
        Some(json!({"text": "  "})),
        None,
    )
    .await;
    assert_eq!(status, 400);
    app.stop().await;
}

#[tokio::test]
async fn the_console_is_off_without_agent_keys_and_the_page_is_locked_down() {
    let app = TestApp::spawn().await;
    let (status, v, _) = sign_in(&app, json!({"key": "anything"})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("console_disabled"))
    );
    let res = app.http.get(app.url("/agent")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let page = res.text().await.unwrap();
    assert!(page.contains("/agent/console.js"));
    let js = app
        .http
        .get(app.url("/agent/console.js"))
        .send()
        .await
        .unwrap();
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    app.stop().await;
}

fn two_agents(c: &mut deskhand::config::Config, dana_key: &str) {
    c.agents = vec![
        AgentAccount {
            name: "Dana".into(),
            key: Secret::new(dana_key),
        },
        AgentAccount {
            name: "Lee".into(),
            key: Secret::new(LEE),
        },
    ];
}

/// The attack: Dana's cookie is copied (a shared computer, a stolen
/// laptop, a proxy log), then Dana signs out. The copy, with its CSRF token,
/// is refused for reads and writes alike, and so is Dana's session on
/// another device; Lee's is untouched; signing in again works, and the old
/// copy stays dead.
#[tokio::test]
async fn a_cookie_copied_before_sign_out_is_refused_after_it() {
    let app = TestApp::spawn_with(|c| two_agents(c, DANA)).await;
    let (id, _) = escalated(&app).await;
    let dana = session(&app, json!({"key": DANA})).await;
    let stolen = Session {
        cookie: dana.cookie.clone(),
        csrf: dana.csrf.clone(),
    };
    let phone = session(&app, json!({"key": DANA})).await;
    let lee = session(&app, json!({"key": LEE})).await;
    assert_eq!(get(&app, Some(&stolen), "/agent/api/queue").await.0, 200);

    let (status, _) = post(&app, &dana, "/agent/api/session/end", None, None).await;
    assert_eq!(status, 204);
    for s in [&stolen, &phone] {
        let (status, v) = get(&app, Some(s), "/agent/api/queue").await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (401, Some("not_signed_in")),
            "{v}"
        );
        assert_eq!(get(&app, Some(s), "/agent/api/session").await.0, 401);
        let (status, _) = post(
            &app,
            s,
            &format!("/agent/api/conversations/{id}/note"),
            Some(json!({"text": "written with a stolen cookie"})),
            None,
        )
        .await;
        assert_eq!(status, 401);
    }
    assert_eq!(get(&app, Some(&lee), "/agent/api/queue").await.0, 200);
    let (_, conv) = get(&app, Some(&lee), &format!("/agent/api/conversations/{id}")).await;
    assert_eq!(conv["notes"], json!([]), "the stolen cookie wrote a note");

    let again = session(&app, json!({"key": DANA})).await;
    assert_ne!(again.cookie, stolen.cookie);
    assert_eq!(get(&app, Some(&again), "/agent/api/queue").await.0, 200);
    assert_eq!(get(&app, Some(&stolen), "/agent/api/queue").await.0, 401);
    app.stop().await;
}

/// Changing an agent's key (the configuration, or the agents' secret on
/// AWS, read at start) ends that agent's sessions, and only theirs.
#[tokio::test]
async fn changing_an_agents_key_ends_their_sessions() {
    let app = TestApp::spawn_with(|c| two_agents(c, DANA)).await;
    let dana = session(&app, json!({"key": DANA})).await;
    let lee = session(&app, json!({"key": LEE})).await;
    let data = app.stop().await;
    let mut config = common::test_config(data.path());
    two_agents(&mut config, "dana-rotated-console-key-0123456789");
    let app = TestApp::start(config, data).await;
    let (status, v) = get(&app, Some(&dana), "/agent/api/queue").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("not_signed_in"))
    );
    assert_eq!(get(&app, Some(&lee), "/agent/api/queue").await.0, 200);
    let (status, _, _) = sign_in(&app, json!({"key": DANA})).await;
    assert_eq!(status, 401, "the old key still signs in");
    let fresh = session(&app, json!({"key": "dana-rotated-console-key-0123456789"})).await;
    assert_eq!(get(&app, Some(&fresh), "/agent/api/queue").await.0, 200);
    app.stop().await;
}
