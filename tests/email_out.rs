//! Email replies through a real SMTP server (aiosmtpd on 127.0.0.1): the
//! whole app answers an inbound email with a threaded reply, and the
//! customer's answer to it lands in the same conversation. A dispatcher
//! killed between the send and marking the record delivered loses nothing.

mod common;
mod inbound_support;
mod outbox_support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use common::TestApp;
use deskhand::config::Config;
use deskhand::domain::{OutboxRecord, OutboxState};
use deskhand::outbox::settings::{EmailOutSettings, EmailTransport, SmtpSettings, SmtpTls};
use deskhand::outbox::{
    Channel, Channels, DeliverError, DispatchSettings, Dispatched, Dispatcher, OutboundPolicy,
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
    }
}

fn configure(c: &mut Config, port: u16) {
    c.inbound = settings(Vec::new(), None);
    c.outbound.email = Some(email_settings(port));
    c.outbound.backoff_base_ms = 50;
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
    assert_eq!(
        header(&raw, "Reply-To").as_deref(),
        Some(format!("\"Tallybird Support\" <support+{conversation}@acme.test>").as_str())
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
            "From: Ann Lee <ann@example.com>\r\nTo: support+{conversation}@acme.test\r\n\
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
struct SendThenDie(Arc<dyn Channel>);

#[async_trait]
impl Channel for SendThenDie {
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

    let real = Channels::from_settings(&outbound, None).unwrap();
    let smtp = real.email.clone().unwrap();
    let dispatcher = |channels: Channels| {
        Dispatcher::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(Recorder::default()),
            channels,
            DispatchSettings::from_settings(&outbound),
        )
    };
    let dying = dispatcher(Channels {
        email: Some(Arc::new(SendThenDie(smtp))),
        ..Channels::default()
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
