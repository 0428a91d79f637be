//! An agent's reply reaches the customer on the customer's channel, end
//! to end through the whole app: an email (Postmark's inbound webhook)
//! escalates, an agent answers through the agent API and through the
//! console, and the real SMTP server (aiosmtpd) receives replies threaded
//! under the customer's latest message; a Zendesk ticket escalates and the
//! agent's answer becomes a public comment on the helpdesk double; a
//! retried reply (same `Idempotency-Key`) is stored and sent once.

use crate::common;
use crate::inbound_support;
use crate::outbox_support;

use std::time::Duration;

use chrono::Utc;
use common::TestApp;
use deskhand::config::Config;
use deskhand::outbox::settings::{
    EmailOutSettings, EmailTransport, HelpdeskMode, HelpdeskOutSettings, SmtpSettings, SmtpTls,
};
use deskhand::secret::Secret;
use deskhand::sqlite::Db;
use deskhand::store::{SqliteStore, Store};
use outbox_support::{HelpdeskServer, Seen, SmtpSink, header};
use serde_json::{Value, json};

const AGENT_KEY: &str = "agent-out-key-0123456789";

fn configure(c: &mut Config) {
    c.inbound = inbound_support::settings(Vec::new(), None);
    c.agent_key = Some(Secret::new(AGENT_KEY));
    c.outbound.backoff_base_ms = 50;
}

fn email(port: u16) -> EmailOutSettings {
    EmailOutSettings {
        transport: EmailTransport::Smtp,
        from: "Tallybird Support <support@acme.test>".into(),
        reply_to: None,
        holding_message: false,
        smtp: Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            tls: SmtpTls::None,
            username: None,
            password: None,
        }),
        ses: None,
        human_line: Default::default(),
    }
}

/// POSTs a signed inbound webhook of `provider`; returns its 202 answer.
async fn inbound(app: &TestApp, provider: &'static str, body: &Value) -> Value {
    let req = inbound_support::signed(provider, body.to_string().as_bytes(), Utc::now());
    let mut r = app.http.post(app.url(&req.path())).body(req.body.clone());
    for (k, v) in &req.headers {
        r = r.header(k, v);
    }
    let res = r.send().await.unwrap();
    assert_eq!(res.status(), 202);
    res.json().await.unwrap()
}

/// A Postmark inbound message from Ann.
fn postmark(subject: &str, text: &str, message_id: &str, refs: &[&str]) -> Value {
    let mut headers = vec![json!({"Name": "Message-ID", "Value": message_id})];
    if let Some(parent) = refs.last() {
        headers.push(json!({"Name": "In-Reply-To", "Value": parent}));
        headers.push(json!({"Name": "References", "Value": refs.join(" ")}));
    }
    json!({
        "FromName": "Ann Lee",
        "From": "ann.lee@example.com",
        "FromFull": {"Email": "ann.lee@example.com", "Name": "Ann Lee", "MailboxHash": ""},
        "To": "support@acme.test",
        "ToFull": [{"Email": "support@acme.test", "Name": "", "MailboxHash": ""}],
        "OriginalRecipient": "support@acme.test",
        "Subject": subject,
        "MessageID": format!("pm-{}", uuid::Uuid::new_v4()),
        "Date": "Mon, 2 Mar 2026 10:00:00 +0000",
        "TextBody": text,
        "StrippedTextReply": "",
        "Headers": headers,
        "Attachments": []
    })
}

/// The app's store, opened beside it on the same file.
fn store_of(app: &TestApp) -> SqliteStore {
    SqliteStore::new(Db::open(&app.data.path().join("deskhand.db")).unwrap())
}

/// Waits until the conversation is escalated.
async fn wait_escalated(app: &TestApp, id: &str) {
    let store = store_of(app);
    let started = std::time::Instant::now();
    loop {
        let c = store
            .conversation(id.parse().unwrap())
            .await
            .unwrap()
            .map(|c| c.status.as_str());
        if c == Some("escalated") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not escalated: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST /v1/conversations/{id}/agent-replies` with an idempotency key.
async fn api_reply(app: &TestApp, id: &str, text: &str, key: &str) -> Value {
    let res = app
        .http
        .post(app.url(&format!("/v1/conversations/{id}/agent-replies")))
        .bearer_auth(AGENT_KEY)
        .header("Idempotency-Key", key)
        .json(&json!({"text": text, "agent": "Sam"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// Signs in to the console; returns the cookie pair and the CSRF token.
async fn console(app: &TestApp) -> (String, String) {
    let res = app
        .http
        .post(app.url("/agent/api/session"))
        .json(&json!({"key": AGENT_KEY, "name": "Dana"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let v: Value = res.json().await.unwrap();
    (cookie, v["csrf"].as_str().unwrap().to_owned())
}

fn body_text(raw: &[u8]) -> String {
    mail_parser::MessageParser::default()
        .parse(raw)
        .unwrap()
        .body_text(0)
        .unwrap()
        .into_owned()
}

#[tokio::test]
async fn an_escalated_email_gets_the_agents_threaded_replies_once_each() {
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let app = TestApp::spawn_with(|c| {
        configure(c);
        c.outbound.email = Some(email(port));
    })
    .await;
    let first = inbound(
        &app,
        "postmark",
        &postmark(
            "Can't log in",
            "I want to talk to a human please, my login is broken.",
            "<ask-1@example.com>",
            &[],
        ),
    )
    .await;
    let conv = first["conversation_id"].as_str().unwrap().to_owned();
    wait_escalated(&app, &conv).await;

    // Through the agent API, sent twice with one key (a retried request).
    let key = format!("reply-{}", uuid::Uuid::new_v4());
    let a = api_reply(&app, &conv, "Hi Ann, Sam here. I reset your login.", &key).await;
    let b = api_reply(&app, &conv, "Hi Ann, Sam here. I reset your login.", &key).await;
    assert_eq!(a["delivery"], "outbox", "{a}");
    assert_eq!(a["message_id"], b["message_id"]);
    let raw = sink.wait_for(1).await.remove(0);
    assert_eq!(
        header(&raw, "From").as_deref(),
        Some("\"Tallybird Support\" <support@acme.test>")
    );
    assert!(header(&raw, "To").unwrap().contains("ann.lee@example.com"));
    assert_eq!(header(&raw, "Subject").as_deref(), Some("Re: Can't log in"));
    assert_eq!(
        header(&raw, "In-Reply-To").as_deref(),
        Some("<ask-1@example.com>")
    );
    assert_eq!(
        header(&raw, "References").as_deref(),
        Some("<ask-1@example.com>")
    );
    let first_id = header(&raw, "Message-ID").unwrap();
    assert!(
        first_id.ends_with("@deskhand.acme.test>") && first_id.contains(".agent@"),
        "{first_id}"
    );
    assert_eq!(
        header(&raw, "Auto-Submitted"),
        None,
        "a person's reply is not automatic"
    );
    let text = body_text(&raw);
    assert!(text.contains("I reset your login."), "{text}");
    assert!(!text.contains("Reply 'human'"), "{text}");

    // The customer answers the agent's mail; the route follows the thread.
    let second = inbound(
        &app,
        "postmark",
        &postmark(
            "Re: Can't log in",
            "Still broken, I need a person to look again.",
            "<ask-2@example.com>",
            &["<ask-1@example.com>", &first_id],
        ),
    )
    .await;
    assert_eq!(second["conversation_id"], conv.as_str(), "threaded back");
    let store = store_of(&app);
    let started = std::time::Instant::now();
    while store
        .conversation(conv.parse().unwrap())
        .await
        .unwrap()
        .and_then(|c| c.reply_route)
        .and_then(|r| r.thread.message_id)
        .as_deref()
        != Some("<ask-2@example.com>")
    {
        assert!(started.elapsed() < Duration::from_secs(20), "route kept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_escalated(&app, &conv).await;

    // Through the console.
    let (cookie, csrf) = console(&app).await;
    let res = app
        .http
        .post(app.url(&format!("/agent/api/conversations/{conv}/reply")))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"text": "Dana here: fixed for good now."}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["delivery"], "outbox", "{v}");
    let all = sink.wait_for(2).await;
    let raw = &all[1];
    assert_eq!(
        header(raw, "In-Reply-To").as_deref(),
        Some("<ask-2@example.com>")
    );
    assert_eq!(
        header(raw, "References").as_deref(),
        Some(format!("<ask-1@example.com> {first_id} <ask-2@example.com>").as_str())
    );
    assert_eq!(header(raw, "Subject").as_deref(), Some("Re: Can't log in"));
    assert_ne!(header(raw, "Message-ID").unwrap(), first_id);
    assert!(body_text(raw).contains("fixed for good"));

    // Nothing more goes out: the retried API reply was sent once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.messages().len(), 2, "a reply was sent twice");
    app.stop().await;
}

/// A Zendesk double: updates of ticket 4711 answer with comment 9001.
fn zendesk_api(s: &Seen) -> (u16, Value, Vec<(String, String)>) {
    use base64::Engine;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("bot@acme.test/token:zd-token")
    );
    if s.header("authorization") != Some(auth.as_str()) {
        return (401, json!({"error": "Couldn't authenticate you"}), vec![]);
    }
    match (s.method.as_str(), s.path.as_str()) {
        ("PUT", "/api/v2/tickets/4711.json") => (
            200,
            json!({"ticket": {"id": 4711}, "audit": {"id": 1, "events": [{"id": 9001, "type": "Comment"}]}}),
            vec![],
        ),
        ("PUT", "/api/v2/tickets/4711/tags.json") => (200, json!({"tags": []}), vec![]),
        ("GET", p) if p.starts_with("/api/v2/tickets/4711/audits.json") => {
            (200, json!({"audits": []}), vec![])
        }
        _ => (404, json!({"error": "RecordNotFound"}), vec![]),
    }
}

#[tokio::test]
async fn a_helpdesk_ticket_gets_the_agents_reply_as_a_public_comment() {
    let server = HelpdeskServer::start(zendesk_api).await;
    let url = server.url();
    let app = TestApp::spawn_with(|c| {
        configure(c);
        c.outbound.zendesk = Some(HelpdeskOutSettings {
            email: Some("bot@acme.test".into()),
            mode: HelpdeskMode::Reply,
            ..HelpdeskOutSettings::new(&url, Secret::new("zd-token"))
        });
    })
    .await;
    let body = json!({"ticket_id": "4711", "event_id": "c-1", "subject": "Refund",
        "text": "I want to talk to a human about my refund",
        "requester": {"email": "ann@example.com", "name": "Ann"}, "author": {"role": "customer"}});
    let v = inbound(&app, "zendesk", &body).await;
    let conv = v["conversation_id"].as_str().unwrap().to_owned();
    wait_escalated(&app, &conv).await;
    // The escalation itself: an internal note and tags.
    let before = server.wait_for_writes(1).await.len();
    let key = format!("zd-{}", uuid::Uuid::new_v4());
    for _ in 0..2 {
        let r = api_reply(&app, &conv, "Refund issued today. — Sam", &key).await;
        assert_eq!(r["delivery"], "outbox", "{r}");
    }
    let writes = server.wait_for_writes(before + 1).await;
    let public: Vec<&Seen> = writes
        .iter()
        .filter(|s| s.json()["ticket"]["comment"]["public"] == true)
        .collect();
    assert_eq!(public.len(), 1, "{writes:?}");
    let comment = &public[0].json()["ticket"]["comment"];
    assert_eq!(comment["body"], "Refund issued today. — Sam");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        server
            .writes()
            .iter()
            .filter(|s| s.json()["ticket"]["comment"]["public"] == true)
            .count(),
        1,
        "the retried reply was posted twice"
    );
    app.stop().await;
}

#[tokio::test]
async fn widget_replies_are_polled_and_unconfigured_channels_say_so() {
    let app = TestApp::spawn_with(configure).await;
    let (id, token) = app.conversation().await;
    app.post(&id, &token, "I want to talk to a human please")
        .await;
    app.wait_for_reply(&id, &token, 1).await;
    let r = api_reply(&app, &id, "Hello from a person", "w-1").await;
    assert_eq!(r["delivery"], "poll", "{r}");
    let (status, poll) = app.poll(&id, &token, "0").await;
    assert_eq!(status, 200);
    assert!(
        common::with_role(&poll, "agent")
            .iter()
            .any(|m| m["text"] == "Hello from a person"),
        "{poll}"
    );
    // An email conversation without `[outbound.email]`: stored, not sent.
    let v = inbound(
        &app,
        "postmark",
        &postmark(
            "Help",
            "I want to talk to a human please",
            "<x-1@example.com>",
            &[],
        ),
    )
    .await;
    let conv = v["conversation_id"].as_str().unwrap().to_owned();
    wait_escalated(&app, &conv).await;
    let r = api_reply(&app, &conv, "Stored only", "e-1").await;
    assert_eq!(r["delivery"], "stored_only", "{r}");
    app.stop().await;
}
