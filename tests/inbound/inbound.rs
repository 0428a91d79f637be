//! The inbound endpoints end to end: the real app on port 0, every
//! provider signed the way its vendor documents, then tampered with,
//! replayed late, malformed, oversized and delivered twice.

use crate::common;
use crate::inbound_support;

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use chrono::Utc;
use common::TestApp;
use deskhand::domain::{ConversationId, Role, TicketId};
use deskhand::sqlite::Db;
use deskhand::store::{SqliteStore, Store};
use inbound_support::*;
use serde_json::Value;

async fn app() -> TestApp {
    let cert = fixtures().join("ses/test-signing-cert.pem");
    TestApp::spawn_with(|c| c.inbound = settings(Vec::new(), Some(&cert))).await
}

async fn post(app: &TestApp, req: &Req) -> (u16, Value) {
    let mut r = app.http.post(app.url(&req.path())).body(req.body.clone());
    for (k, v) in &req.headers {
        r = r.header(k, v);
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn store(app: &TestApp) -> SqliteStore {
    SqliteStore::new(Db::open(&app.data.path().join("deskhand.db")).unwrap())
}

#[tokio::test]
async fn every_provider_accepts_a_signed_delivery_once_even_when_delivered_twice() {
    let app = app().await;
    let mut accepted = Vec::new();
    for provider in PROVIDERS {
        let req = signed(provider, &fresh_payload(provider), Utc::now());
        let (status, body) = post(&app, &req).await;
        assert_eq!(status, 202, "{provider}: {body}");
        let ticket = body["ticket_id"].as_str().unwrap().to_owned();
        let conversation = body["conversation_id"].as_str().unwrap().to_owned();
        // The vendor retries the very same delivery.
        let (status, again) = post(&app, &req).await;
        assert_eq!(status, 202, "{provider} redelivery: {again}");
        assert_eq!(
            again["ticket_id"],
            ticket.as_str(),
            "{provider}: a redelivery is the same ticket"
        );
        assert_eq!(again["conversation_id"], conversation.as_str());
        accepted.push((
            provider,
            TicketId::parse(&ticket).unwrap(),
            ConversationId::parse(&conversation).unwrap(),
        ));
    }
    let store = store(&app);
    let started = Instant::now();
    for (provider, ticket, conversation) in accepted {
        while store.ticket(ticket).await.unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{provider}: ticket never finished"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let history = store.history(conversation, 100).await.unwrap();
        let customer: Vec<_> = history
            .iter()
            .filter(|m| m.body.role == Role::Customer)
            .collect();
        assert_eq!(
            customer.len(),
            1,
            "{provider}: one customer message, not two: {history:?}"
        );
        assert_eq!(customer[0].body.ticket_id, Some(ticket));
        let replies = history
            .iter()
            .filter(|m| m.body.role != Role::Customer)
            .count();
        assert_eq!(
            replies, 1,
            "{provider}: one answer or holding message: {history:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn tampered_deliveries_are_401_invalid_signature() {
    let app = app().await;
    for provider in PROVIDERS {
        let req = tampered(signed(provider, &payload(provider), Utc::now()));
        let (status, body) = post(&app, &req).await;
        assert_eq!(status, 401, "{provider}: {body}");
        assert_eq!(
            body["error"]["code"], "invalid_signature",
            "{provider}: {body}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn unsigned_deliveries_are_401_missing_signature() {
    let app = app().await;
    for provider in PROVIDERS.iter().filter(|p| **p != "ses") {
        let mut req = signed(provider, &payload(provider), Utc::now());
        req.headers.retain(|(k, _)| {
            let k = k.to_ascii_lowercase();
            !(k.contains("signature") || k == "authorization" || k == "x-deskhand-secret")
        });
        if *provider == "mailgun" {
            let s = String::from_utf8(req.body.clone()).unwrap();
            req.body = s.split("&timestamp=").next().unwrap().as_bytes().to_vec();
        }
        let (status, body) = post(&app, &req).await;
        assert_eq!(status, 401, "{provider}: {body}");
        assert_eq!(
            body["error"]["code"], "missing_signature",
            "{provider}: {body}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn deliveries_signed_outside_the_replay_window_are_401_stale_timestamp() {
    let app = app().await;
    let late = Utc::now() - chrono::Duration::minutes(20);
    for provider in TIMESTAMPED {
        let req = signed(provider, &payload(provider), late);
        let (status, body) = post(&app, &req).await;
        assert_eq!(status, 401, "{provider}: {body}");
        assert_eq!(
            body["error"]["code"], "stale_timestamp",
            "{provider}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("replay window"),
            "{body}"
        );
    }
    app.stop().await;
}

/// Issue #15.11/12: Zendesk's own event webhooks (no trigger template) and
/// Freshdesk's own webhook body are accepted as they are sent.
#[tokio::test]
async fn zendesk_event_webhooks_and_freshdesk_native_bodies_are_tickets() {
    let app = app().await;
    for (provider, file, text) in [
        ("zendesk", "zendesk/event-comment-added.json", "two-factor"),
        ("freshdesk", "freshdesk/native-webhook.json", "two-factor"),
    ] {
        let req = signed(provider, &fixture(file), Utc::now());
        let (status, body) = post(&app, &req).await;
        assert_eq!(status, 202, "{provider}: {body}");
        let conversation =
            ConversationId::parse(body["conversation_id"].as_str().unwrap()).unwrap();
        let store = store(&app);
        let started = Instant::now();
        loop {
            let history = store.history(conversation, 10).await.unwrap();
            if let Some(m) = history.iter().find(|m| m.body.role == Role::Customer) {
                assert!(m.body.text.contains(text), "{provider}: {}", m.body.text);
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{provider}: not stored"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // A private comment and an agent's comment are not answered.
    let mut v: Value =
        serde_json::from_slice(&fixture("zendesk/event-comment-added.json")).unwrap();
    v["event"]["comment"]["author"]["is_staff"] = Value::Bool(true);
    let (status, body) = post(
        &app,
        &signed("zendesk", v.to_string().as_bytes(), Utc::now()),
    )
    .await;
    assert_eq!(
        (status, body["ignored"].as_str()),
        (200, Some("agent_author")),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn malformed_bodies_are_400_saying_what_is_wrong() {
    let app = app().await;
    let ses_garbage = r#"{"notificationType": 42}"#;
    let cases: &[(&str, &[u8], &str)] = &[
        ("mime", b"hello, this is not an email", "not"),
        ("postmark", br#"{"Subject": "no sender"}"#, "From"),
        ("mailgun", b"subject=hi", "from"),
        ("sendgrid", b"--deskhandTestBoundary7MA4YWxkTrZu0gW\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nhi\r\n--deskhandTestBoundary7MA4YWxkTrZu0gW--\r\n", "email"),
        ("ses", ses_garbage.as_bytes(), "expected a string"),
        ("zendesk", br#"{"subject": "no ticket"}"#, "ticket_id"),
        ("freshdesk", br#"{"ticket_id": 5, "text": ""}"#, "text"),
        ("generic", b"[1, 2, 3]", "expected"),
        ("intercom", br#"{"type": "notification_event"}"#, "topic"),
        ("helpscout", br#"{"subject": "no id"}"#, "id"),
        ("front", br#"{"type": "inbound_received", "payload": {"conversation": {}}}"#, "conversation.id"),
    ];
    for (provider, body, names) in cases {
        let req = signed(provider, body, Utc::now());
        let (status, res) = post(&app, &req).await;
        assert_eq!(status, 400, "{provider}: {res}");
        assert_eq!(
            res["error"]["code"], "malformed_payload",
            "{provider}: {res}"
        );
        let message = res["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(names),
            "{provider}: {message:?} should name {names:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = app().await;
    for provider in PROVIDERS {
        let limit = if channel_of(provider) == "email" {
            256 * 1024
        } else {
            64 * 1024
        };
        let mut big = payload(provider);
        big.extend(std::iter::repeat_n(b' ', limit));
        let req = signed(provider, &big, Utc::now());
        let (status, body) = post(&app, &req).await;
        assert_eq!(status, 413, "{provider}: {body}");
        assert_eq!(
            body["error"]["code"], "body_too_large",
            "{provider}: {body}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn loops_agents_and_handshakes_are_answered_200_and_not_queued() {
    let app = app().await;
    let cases = [
        ("mime", fixture("email/auto-reply.eml"), "auto_reply"),
        ("mime", fixture("email/bounce.eml"), "bounce"),
        (
            "intercom",
            fixture("intercom/admin-replied.json"),
            "agent_author",
        ),
        (
            "zendesk",
            fixture("zendesk/agent-comment.json"),
            "agent_author",
        ),
        ("front", fixture("front/sync.json"), "validation_request"),
    ];
    for (provider, body, reason) in cases {
        let (status, res) = post(&app, &signed(provider, &body, Utc::now())).await;
        assert_eq!(status, 200, "{provider}: {res}");
        assert_eq!(res["ignored"], reason, "{provider}: {res}");
    }
    // Front's webhook validation echoes the challenge.
    let mut req = signed("front", &fixture("front/sync.json"), Utc::now());
    req.set("X-Front-Challenge", "ch4ll3nge");
    let (status, res) = post(&app, &req).await;
    assert_eq!(
        (status, res["challenge"].as_str()),
        (200, Some("ch4ll3nge")),
        "{res}"
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_and_unconfigured_providers_are_404() {
    let app = TestApp::spawn().await;
    let (status, body) = post(&app, &signed("zendesk", &payload("zendesk"), Utc::now())).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "provider_not_configured");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[inbound.zendesk]")
    );
    let mut req = signed("zendesk", &payload("zendesk"), Utc::now());
    req.provider = "pigeon";
    let (status, body) = post(&app, &req).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_provider")),
        "{body}"
    );
    // A helpdesk is not an email provider.
    req.provider = "zendesk";
    req.channel = "email";
    let (status, body) = post(&app, &req).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_provider")),
        "{body}"
    );
    app.stop().await;
}

/// A stand-in for SNS: serves the signing certificate and records
/// subscription confirmations.
async fn fake_sns() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let confirmed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = confirmed.clone();
    let cert = std::fs::read_to_string(fixtures().join("ses/test-signing-cert.pem")).unwrap();
    let router = Router::new()
        .route("/cert.pem", get(move || async move { cert }))
        .route(
            "/confirm",
            get(move || async move {
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "<ConfirmSubscriptionResponse/>"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, confirmed)
}

#[tokio::test]
async fn ses_over_sns_fetches_the_certificate_confirms_subscriptions_and_checks_everything() {
    let (host, confirmed) = fake_sns().await;
    let app = TestApp::spawn_with(|c| c.inbound = settings(vec![host.clone()], None)).await;
    let cert_url = format!("http://{host}/cert.pem");
    let message = String::from_utf8(payload("ses")).unwrap();
    let post_raw = |body: Vec<u8>| Req {
        channel: "email",
        provider: "ses",
        headers: vec![("Content-Type".into(), "text/plain".into())],
        body,
    };

    // Subscription confirmation: verified, then SubscribeURL fetched.
    let confirm_url = format!("http://{host}/confirm");
    let body = sns_envelope(
        "SubscriptionConfirmation",
        "You have chosen to subscribe.",
        Utc::now(),
        "1",
        Some(&confirm_url),
        &cert_url,
    );
    let (status, res) = post(&app, &post_raw(body)).await;
    assert_eq!(
        (status, res["ignored"].as_str()),
        (200, Some("subscription_confirmed")),
        "{res}"
    );
    assert_eq!(confirmed.load(std::sync::atomic::Ordering::SeqCst), 1);

    // SignatureVersion 1 and 2 notifications, certificate fetched once.
    for version in ["1", "2"] {
        let mut mail = message.clone();
        mail = mail
            .replace("\"Received\"", "\"Received\" ")
            .replace("ses-1", &format!("ses-v{version}"));
        let body = sns_envelope("Notification", &mail, Utc::now(), version, None, &cert_url);
        let (status, res) = post(&app, &post_raw(body)).await;
        assert_eq!(status, 202, "SignatureVersion {version}: {res}");
    }

    // A certificate URL off SNS's hosts is refused before any fetch.
    let body = sns_envelope(
        "Notification",
        &message,
        Utc::now(),
        "2",
        None,
        "https://evil.example.com/cert.pem",
    );
    let (status, res) = post(&app, &post_raw(body)).await;
    assert_eq!(
        (status, res["error"]["code"].as_str()),
        (401, Some("invalid_signature")),
        "{res}"
    );
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SigningCertURL"),
        "{res}"
    );

    // A SubscribeURL off SNS's hosts is not fetched.
    let body = sns_envelope(
        "SubscriptionConfirmation",
        "x",
        Utc::now(),
        "2",
        Some("https://evil.example.com/confirm"),
        &cert_url,
    );
    let (status, res) = post(&app, &post_raw(body)).await;
    assert_eq!(status, 401, "{res}");
    assert_eq!(confirmed.load(std::sync::atomic::Ordering::SeqCst), 1);

    // A topic off the allow-list is refused.
    let body = String::from_utf8(sns_envelope(
        "Notification",
        &message,
        Utc::now(),
        "2",
        None,
        &cert_url,
    ))
    .unwrap()
    .replace("deskhand-inbound", "someone-else");
    let (status, res) = post(&app, &post_raw(body.into_bytes())).await;
    assert_eq!(
        (status, res["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{res}"
    );
    app.stop().await;
}

// ---- Parsing off the async runtime (issue 14, finding 4) --------------

/// A mail of about `mb` MB whose HTML part the parser has to walk.
fn big_mail(mb: usize, n: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Ann Lee <ann.lee@example.com>\r\nTo: ACME Support <support@acme.test>\r\n\
         Subject: Big {n}\r\nMessage-ID: <big-{n}@example.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=\"UTF-8\"\r\n\r\n<html><body>"
    )
    .into_bytes();
    let para = b"<div><p>How do I <b>export</b> my invoices &amp; receipts?</p></div>\r\n";
    while m.len() < mb * 1024 * 1024 {
        m.extend_from_slice(para);
    }
    m.extend_from_slice(b"</body></html>\r\n");
    m
}

fn inbound_with(
    slots: &std::sync::Arc<tokio::sync::Semaphore>,
) -> std::sync::Arc<deskhand::ingest::Inbound> {
    let cert = fixtures().join("ses/test-signing-cert.pem");
    std::sync::Arc::new(
        deskhand::ingest::Inbound::new(settings(Vec::new(), Some(&cert)), 4000)
            .with_parse_slots(slots.clone()),
    )
}

fn receive(
    inbound: &std::sync::Arc<deskhand::ingest::Inbound>,
    req: &Req,
) -> impl std::future::Future<
    Output = Result<deskhand::ingest::Normalized, deskhand::ingest::IngestError>,
> + Send
+ 'static {
    let channel = match req.channel {
        "email" => deskhand::domain::Channel::Email,
        _ => deskhand::domain::Channel::Helpdesk,
    };
    inbound.clone().receive_owned(
        channel,
        req.provider,
        req.header_map(),
        req.body.clone().into(),
        deskhand::ingest::Verification::Required,
    )
}

/// Two 9 MB mails are parsed to the end while the (single-threaded)
/// runtime that received them is not running at all: the parse cannot be
/// on it, so it cannot stall `/healthz` or any other request. (Parsed on
/// the runtime, as before, both would finish inside the first poll.)
#[test]
fn big_mails_are_parsed_off_the_async_runtime() {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(2));
    let inbound = inbound_with(&slots);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mails: Vec<_> = (0..2)
        .map(|n| {
            rt.spawn(receive(
                &inbound,
                &signed("mime", &big_mail(9, n), Utc::now()),
            ))
        })
        .collect();
    // Let the runtime start both: each takes a parse slot and hands the
    // parse to the blocking pool (bounded: 1000 turns of the runtime).
    rt.block_on(async {
        for _ in 0..1000 {
            if slots.available_permits() == 0 || mails.iter().all(|m| m.is_finished()) {
                break;
            }
            tokio::task::yield_now().await;
        }
    });
    assert!(
        !mails.iter().any(|m| m.is_finished()),
        "a 9 MB mail was parsed on the runtime, blocking it until done"
    );
    // The runtime is idle now; the parses still finish and give their
    // slots back (within 120 s even on a loaded debug build).
    let started = Instant::now();
    while slots.available_permits() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the parses made no progress while the runtime was idle"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for mail in mails {
        let outcome = rt.block_on(mail).unwrap();
        assert!(
            matches!(outcome, Ok(deskhand::ingest::Normalized::Accepted(_))),
            "{outcome:?}"
        );
    }
}

/// A Mailgun delivery with a bad signature is refused while every parse
/// slot is taken: it was judged on its three signature fields, without
/// parsing the (big) form. A well-signed one waits for a slot, then parses.
#[tokio::test]
async fn a_forged_mailgun_delivery_is_refused_before_its_form_is_parsed() {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    let inbound = inbound_with(&slots);
    let mut payload = payload("mailgun");
    payload.extend_from_slice(b"&attachment-note=");
    payload.extend(std::iter::repeat_n(b'x', 8 * 1024 * 1024));
    let good = signed("mailgun", &payload, Utc::now());
    let forged = tampered(good.clone());
    let taken = slots.clone().acquire_owned().await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(10), receive(&inbound, &forged))
        .await
        .expect("a forged delivery waited for a parse slot");
    assert!(
        matches!(
            refused,
            Err(deskhand::ingest::IngestError::InvalidSignature(_))
        ),
        "{refused:?}"
    );
    // The genuine delivery needs a slot: it cannot finish while the only
    // one is held, and finishes once it is given back.
    let genuine = tokio::spawn(receive(&inbound, &good));
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(!genuine.is_finished(), "parsed without a parse slot");
    drop(taken);
    let accepted = tokio::time::timeout(Duration::from_secs(60), genuine)
        .await
        .expect("the genuine delivery was never parsed")
        .unwrap();
    assert!(
        matches!(accepted, Ok(deskhand::ingest::Normalized::Accepted(_))),
        "{accepted:?}"
    );
}

/// End to end on one runtime thread: two 9 MB mails and `/healthz` at
/// once; all answered, both mails accepted. (That the parse is off the
/// runtime is proved above, without timing.)
#[tokio::test]
async fn healthz_answers_while_big_mails_are_received() {
    let cert = fixtures().join("ses/test-signing-cert.pem");
    let app = TestApp::spawn_with(|c| {
        c.inbound = settings(Vec::new(), Some(&cert));
        c.inbound.max_email_bytes = 10 * 1024 * 1024;
    })
    .await;
    let mails: Vec<_> = (0..2)
        .map(|n| {
            let req = signed("mime", &big_mail(9, n + 10), Utc::now());
            let mut r = app.http.post(app.url(&req.path())).body(req.body.clone());
            for (k, v) in &req.headers {
                r = r.header(k, v);
            }
            tokio::spawn(r.send())
        })
        .collect();
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    for mail in mails {
        let res = mail.await.unwrap().unwrap();
        assert_eq!(res.status(), 202);
    }
    app.stop().await;
}
