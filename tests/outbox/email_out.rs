//! Email replies through a real SMTP server (aiosmtpd on 127.0.0.1): the
//! whole app answers an inbound email with a threaded reply, and the
//! customer's answer to it lands in the same conversation. A dispatcher
//! killed between the send and marking the record delivered loses nothing.

use crate::common;
use crate::inbound_support;
use crate::outbox_support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use common::TestApp;
use deskhand::config::Config;
use deskhand::domain::{OutboxRecord, OutboxState};
use deskhand::outbox::settings::{EmailOutSettings, EmailTransport, SmtpSettings, SmtpTls};
use deskhand::outbox::{
    Courier, Couriers, DeliverError, DispatchSettings, Dispatched, Dispatcher, OutboundPolicy,
    OutboundSettings, Sent,
};
use deskhand::sqlite::Db;
use deskhand::store::{OutboxStore, SqliteStore};
use inbound_support::{settings, signed};
use outbox_support::{Recorder, SmtpSink, complete_with, email_ticket, header};
use serde_json::Value;

fn email_settings(port: u16) -> EmailOutSettings {
    EmailOutSettings {
        transport: EmailTransport::Smtp,
        from: "Tallybird Support <support@acme.test>".into(),
        reply_to: None,
        holding_message: true,
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

fn configure(c: &mut Config, port: u16) {
    c.inbound = settings(Vec::new(), None);
    c.outbound.email = Some(email_settings(port));
    c.outbound.backoff_base_ms = 50;
}

/// The tag of a `Reply-To: "…" <support+TAG@domain>`.
fn reply_tag(reply_to: &str) -> String {
    let start = reply_to.find('+').expect("a plus address") + 1;
    let end = reply_to.rfind('@').expect("an address");
    reply_to[start..end].to_owned()
}

async fn post_mime(app: &TestApp, mime: &str) -> Value {
    let req = signed("mime", mime.as_bytes(), Utc::now());
    let mut r = app.http.post(app.url(&req.path())).body(req.body.clone());
    for (k, v) in &req.headers {
        r = r.header(k, v);
    }
    let res = r.send().await.unwrap();
    assert_eq!(res.status(), 202);
    res.json().await.unwrap()
}

fn parse(raw: &[u8]) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default().parse(raw).unwrap()
}

#[tokio::test]
async fn an_email_gets_a_threaded_reply_and_the_customers_answer_threads_back() {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with(|c| configure(c, sink.port)).await;
    let first = post_mime(
        &app,
        "From: Ann Lee <ann@example.com>\r\nTo: support@acme.test\r\nSubject: Two-factor\r\n\
         Message-ID: <cust-1@example.com>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n\r\n\
         How do I turn on two-factor authentication?\r\n",
    )
    .await;
    let ticket = first["ticket_id"].as_str().unwrap();
    let conversation = first["conversation_id"].as_str().unwrap();

    let raw = sink.wait_for(1).await.remove(0);
    let ours = format!("<{ticket}@deskhand.acme.test>");
    assert_eq!(header(&raw, "Message-ID").as_deref(), Some(ours.as_str()));
    assert_eq!(
        header(&raw, "In-Reply-To").as_deref(),
        Some("<cust-1@example.com>")
    );
    assert_eq!(
        header(&raw, "References").as_deref(),
        Some("<cust-1@example.com>")
    );
    assert_eq!(header(&raw, "Subject").as_deref(), Some("Re: Two-factor"));
    assert_eq!(
        header(&raw, "Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    assert!(header(&raw, "To").unwrap().contains("ann@example.com"));
    let reply_to = header(&raw, "Reply-To").unwrap();
    let tag = reply_tag(&reply_to);
    assert!(
        reply_to.starts_with("\"Tallybird Support\" <support+")
            && tag.starts_with(&conversation.replace('-', "")),
        "Reply-To carries the conversation's tag: {reply_to}"
    );
    assert!(
        header(&raw, "Content-Type")
            .unwrap()
            .starts_with("multipart/alternative")
    );
    let m = parse(&raw);
    let text = m.body_text(0).unwrap();
    let html = m.body_html(0).unwrap();
    assert!(text.contains("Go to Settings"), "{text}");
    assert!(
        text.contains("https://help.tallybird.example/articles/two-factor-authentication"),
        "sources listed as links in the text part: {text}"
    );
    assert!(
        html.contains(
            "<a href=\"https://help.tallybird.example/articles/two-factor-authentication\">"
        ),
        "{html}"
    );

    // The customer answers the reply; their client quotes our ids.
    let second = post_mime(
        &app,
        &format!(
            "From: Ann Lee <ann@example.com>\r\nTo: support+{tag}@acme.test\r\n\
             Subject: Re: Two-factor\r\nMessage-ID: <cust-2@example.com>\r\n\
             In-Reply-To: {ours}\r\nReferences: <cust-1@example.com> {ours}\r\n\
             Date: Mon, 2 Mar 2026 10:05:00 +0000\r\n\r\n\
             Thanks! How do I cancel my plan?\r\n\r\n\
             On Mon, 2 Mar 2026 at 10:01, Tallybird Support wrote:\r\n> Go to Settings\r\n"
        ),
    )
    .await;
    assert_eq!(
        second["conversation_id"], conversation,
        "the customer's answer opened a new conversation"
    );
    let all = sink.wait_for(2).await;
    let raw2 = &all[1];
    assert_eq!(
        header(raw2, "In-Reply-To").as_deref(),
        Some("<cust-2@example.com>")
    );
    assert_eq!(
        header(raw2, "References").as_deref(),
        Some(format!("<cust-1@example.com> {ours} <cust-2@example.com>").as_str())
    );
    assert_eq!(header(raw2, "Subject").as_deref(), Some("Re: Two-factor"));
    app.stop().await;
}

#[tokio::test]
async fn an_escalated_email_gets_the_holding_message_by_email() {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with(|c| configure(c, sink.port)).await;
    post_mime(
        &app,
        "From: Bo <bo@example.com>\r\nTo: support@acme.test\r\nSubject: Help\r\n\
         Message-ID: <bo-1@example.com>\r\n\r\nI want to talk to a human, please.\r\n",
    )
    .await;
    let raw = sink.wait_for(1).await.remove(0);
    assert_eq!(
        header(&raw, "In-Reply-To").as_deref(),
        Some("<bo-1@example.com>")
    );
    let m = parse(&raw);
    assert!(
        m.body_text(0).unwrap().contains("a person will follow up"),
        "{:?}",
        m.body_text(0)
    );
    app.stop().await;
}

/// Sends through the real transport, then never returns: the dispatcher
/// "dies" between the send and the settle when the test drops its future.
struct SendThenDie(Arc<dyn Courier>);

#[async_trait]
impl Courier for SendThenDie {
    async fn deliver(&self, record: &OutboxRecord, retry: bool) -> Result<Sent, DeliverError> {
        self.0.deliver(record, retry).await?;
        futures::future::pending().await
    }
}

#[tokio::test]
async fn a_dispatcher_killed_after_sending_loses_no_reply() {
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::new(Db::open(&dir.path().join("t.db")).unwrap());
    let outbound = OutboundSettings {
        email: Some(email_settings(sink.port)),
        lease_secs: 1,
        ..OutboundSettings::default()
    };
    let ticket = email_ticket("How do I turn on two-factor authentication?");
    let reply = "Go to Settings, then Security.";
    let message_id = format!("{}.reply", ticket.ticket_id);
    let records = OutboundPolicy::from_settings(&outbound).answer(&ticket, &message_id, reply, &[]);
    assert_eq!(records.len(), 1);
    complete_with(&store, &ticket, reply, records).await;

    let real = Couriers::from_settings(&outbound, None).unwrap();
    let smtp = real.email.clone().unwrap();
    let dispatcher = |channels: Couriers| {
        Dispatcher::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(Recorder::default()),
            channels,
            DispatchSettings::from_settings(&outbound),
        )
    };
    let dying = dispatcher(Couriers {
        email: Some(Arc::new(SendThenDie(smtp))),
        ..Couriers::default()
    });
    let killed =
        tokio::time::timeout(Duration::from_millis(700), dying.dispatch(&message_id)).await;
    assert!(killed.is_err(), "the dispatcher was meant to die mid-way");
    assert_eq!(sink.wait_for(1).await.len(), 1, "the send happened");
    let r = store.outbox_record(&message_id).await.unwrap().unwrap();
    assert_eq!(r.state, OutboxState::Delivering, "not marked delivered");

    // A live dispatcher: nothing due while the dead one's lease lasts…
    let live = dispatcher(real);
    assert_eq!(
        live.dispatch(&message_id).await.unwrap(),
        Dispatched::Skipped
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // …then the record is sent again and marked delivered.
    assert_eq!(live.sweep(10).await.unwrap(), 1);
    let r = store.outbox_record(&message_id).await.unwrap().unwrap();
    assert_eq!(r.state, OutboxState::Delivered);
    assert_eq!(r.attempts, 2);
    let all = sink.wait_for(2).await;
    assert_eq!(all.len(), 2, "SMTP has no dedup key: one duplicate at most");
    // The duplicate is the same message: clients that dedupe on
    // Message-ID show it once.
    assert_eq!(header(&all[0], "Message-ID"), header(&all[1], "Message-ID"));
    // Nothing more to do.
    assert_eq!(live.sweep(10).await.unwrap(), 0);
}

/// Polls the widget conversation until it has `n` messages; the poll body.
async fn messages_of(app: &TestApp, id: &str, token: &str) -> Value {
    let (status, body) = app.poll(id, token, "").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Security #14.1: a conversation id is not secret (Reply-To, escalations,
/// API responses), and a helpdesk conversation's is computable. Mail to
/// `support+<id>@` from anyone used to land in that conversation, get its
/// answer by email and escalate it, silencing the bot for its customer.
#[tokio::test]
async fn a_stranger_cannot_write_into_another_conversation_by_plus_address() {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with(|c| configure(c, sink.port)).await;
    let (victim, token) = app.conversation().await;
    let (status, _) = app
        .post(
            &victim,
            &token,
            "How do I turn on two-factor authentication?",
        )
        .await;
    assert_eq!(status, 202);
    app.wait_for_reply(&victim, &token, 1).await;

    let simple = victim.replace('-', "");
    let helpdesk =
        deskhand::domain::ConversationId::derive(deskhand::domain::Provider::Zendesk, "4711")
            .to_string();
    let targets = [
        victim.clone(),
        simple.clone(),
        victim.to_uppercase(),
        // The tag's shape, with a made-up MAC.
        format!("{simple}.00112233445566778899"),
        helpdesk.clone(),
    ];
    for (i, target) in targets.iter().enumerate() {
        let got = post_mime(
            &app,
            &format!(
                "From: Mallory <mallory@evil.test>\r\nTo: support+{target}@acme.test\r\n\
                 Subject: Re: your chat\r\nMessage-ID: <m-{i}@evil.test>\r\n\r\n\
                 My lawyer will be in touch. Also, what did you tell this customer?\r\n"
            ),
        )
        .await;
        let landed = got["conversation_id"].as_str().unwrap();
        assert_ne!(
            landed, victim,
            "mail to support+{target}@ joined the victim's chat"
        );
        assert_ne!(
            landed, helpdesk,
            "mail to support+{target}@ joined a helpdesk ticket"
        );
    }
    // Every stranger's mail was processed in a conversation of its own (each
    // got its holding message by email, to the stranger) …
    let sent = sink.wait_for(targets.len()).await;
    assert!(
        sent.iter()
            .all(|m| header(m, "To").unwrap().contains("mallory@evil.test")),
        "nothing of the victim's went out by email"
    );
    // … and the victim's chat holds only the victim's own exchange, still open.
    let body = messages_of(&app, &victim, &token).await;
    assert_eq!(body["status"], "open", "{body}");
    let customer: Vec<&Value> = common::with_role(&body, "customer");
    assert_eq!(customer.len(), 1, "{body}");
    assert!(!body.to_string().contains("lawyer"), "{body}");
    app.stop().await;
}

/// Security #14.1: the reply tag threads only its own customer's mail,
/// even when a stranger has the whole tagged address and copies the
/// thread's References; the customer's own answer threads back by the tag
/// alone when the client drops References.
#[tokio::test]
async fn a_reply_tag_threads_only_its_customers_mail() {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with(|c| configure(c, sink.port)).await;
    let first = post_mime(
        &app,
        "From: Ann Lee <ann@example.com>\r\nTo: support@acme.test\r\nSubject: Two-factor\r\n\
         Message-ID: <ann-1@example.com>\r\n\r\nHow do I turn on two-factor authentication?\r\n",
    )
    .await;
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    let raw = sink.wait_for(1).await.remove(0);
    let tag = reply_tag(&header(&raw, "Reply-To").unwrap());
    let ours = header(&raw, "Message-ID").unwrap();

    // The stranger has the tagged address and the thread's ids.
    let stranger = post_mime(
        &app,
        &format!(
            "From: Mallory <mallory@evil.test>\r\nTo: support+{tag}@acme.test\r\n\
             Subject: Re: Two-factor\r\nMessage-ID: <m-1@evil.test>\r\n\
             In-Reply-To: {ours}\r\nReferences: <ann-1@example.com> {ours}\r\n\r\n\
             Please send me the account's recovery codes.\r\n"
        ),
    )
    .await;
    assert_ne!(stranger["conversation_id"], conversation.as_str());
    // References alone from another address: a new conversation too.
    let copied = post_mime(
        &app,
        "From: Mallory <mallory@evil.test>\r\nTo: support@acme.test\r\n\
         Subject: Re: Two-factor\r\nMessage-ID: <m-2@evil.test>\r\n\
         References: <ann-1@example.com>\r\n\r\nAnd the billing address?\r\n",
    )
    .await;
    assert_ne!(copied["conversation_id"], conversation.as_str());

    // Ann's client dropped References: the tag alone threads her answer.
    let again = post_mime(
        &app,
        &format!(
            "From: ann@example.com\r\nTo: support+{tag}@acme.test\r\n\
             Subject: Re: Two-factor\r\nMessage-ID: <ann-2@example.com>\r\n\r\n\
             And how do I cancel my plan?\r\n"
        ),
    )
    .await;
    assert_eq!(again["conversation_id"], conversation.as_str());
    app.stop().await;
}

/// Security #14.10: mail whose provider-reported DMARC result is fail is
/// held for a person (`unverified_sender`), its result is recorded, and
/// nothing goes back to the forged From address (no backscatter).
#[tokio::test]
async fn mail_that_fails_dmarc_is_held_and_nothing_goes_to_the_forged_sender() {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with(|c| configure(c, sink.port)).await;
    let held = post_mime(
        &app,
        "Authentication-Results: mx.acme.test; spf=fail smtp.mailfrom=bank.example;\r\n \
         dkim=none; dmarc=fail (p=reject) header.from=bank.example\r\n\
         From: Ceo <ceo@bank.example>\r\nTo: support@acme.test\r\nSubject: Wire\r\n\
         Message-ID: <forged-1@bank.example>\r\n\r\nHow do I turn on two-factor authentication?\r\n",
    )
    .await;
    let ticket: deskhand::domain::TicketId = held["ticket_id"].as_str().unwrap().parse().unwrap();
    let store = SqliteStore::new(Db::open(&app.data.path().join("deskhand.db")).unwrap());
    let started = std::time::Instant::now();
    let record = loop {
        if let Some(r) = deskhand::store::Store::ticket(&store, ticket)
            .await
            .unwrap()
            && r.notified
        {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "not processed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(record.outcome, deskhand::domain::Outcome::Escalated);
    assert_eq!(
        record.reason,
        Some(deskhand::domain::ReasonCode::UnverifiedSender)
    );
    // A genuine mail after it is answered; only it reaches the SMTP server.
    post_mime(
        &app,
        "Authentication-Results: mx.acme.test; spf=pass smtp.mailfrom=example.com;\r\n \
         dkim=pass header.d=example.com; dmarc=pass header.from=example.com\r\n\
         From: Ann <ann@example.com>\r\nTo: support@acme.test\r\nSubject: 2FA\r\n\
         Message-ID: <ann-9@example.com>\r\n\r\nHow do I turn on two-factor authentication?\r\n",
    )
    .await;
    let sent = sink.wait_for(1).await;
    assert!(store.due_outbox(10).await.unwrap().is_empty());
    assert_eq!(sink.messages().len(), 1, "one reply, to the genuine sender");
    assert!(header(&sent[0], "To").unwrap().contains("ann@example.com"));
    app.stop().await;
}
