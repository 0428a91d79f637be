//! The AWS dispatcher: outbox records written to DynamoDB (moto, table from
//! the template) reach the dispatcher Lambda's handler as the stream would
//! deliver them (a `DynamodbEvent` built from the table's items), email
//! goes out through SES v2 (moto), helpdesk replies to a local API double;
//! a schedule tick sweeps retries that came due; a store failure is a
//! batch item failure, so the stream retries it.

use crate::common;
use crate::outbox_support;

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use common::moto::{Moto, template};
use deskhand::config::Config;
use deskhand::domain::{OutboxState, Provider};
use deskhand::lambda::{AwsRuntime, dispatcher};
use deskhand::outbox::settings::{
    EmailOutSettings, EmailTransport, HelpdeskOutSettings, SmtpSettings, SmtpTls,
};
use deskhand::outbox::{Couriers, DispatchSettings, Dispatcher, OutboundPolicy};
use deskhand::secret::Secret;
use deskhand::store::{DynamoStore, OutboxStore};
use outbox_support::{
    HelpdeskServer, Recorder, Seen, SmtpSink, complete_with, email_ticket, header, helpdesk_ticket,
};
use serde_json::{Value, json};

/// The stream batch Lambda would get for every item of `table` (keys only,
/// as the template's `StreamViewType`).
async fn stream_event(moto: &Moto, table: &str) -> Value {
    let items = aws_sdk_dynamodb::Client::new(&moto.sdk)
        .scan()
        .table_name(table)
        .send()
        .await
        .unwrap();
    let records: Vec<Value> = items
        .items()
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let pk = item["pk"].as_s().unwrap();
            let sk = item["sk"].as_s().unwrap();
            json!({
                "eventID": format!("ev{i}"),
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "eventSourceARN": format!("arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/2026-01-01T00:00:00.000"),
                "dynamodb": {
                    "ApproximateCreationDateTime": 1767225600,
                    "Keys": {"pk": {"S": pk}, "sk": {"S": sk}},
                    "SequenceNumber": format!("{}", 1000 + i),
                    "SizeBytes": 64,
                    "StreamViewType": "KEYS_ONLY"
                }
            })
        })
        .collect();
    json!({ "Records": records })
}

/// SES's `SentLast24Hours` in this region (moto counts recipients).
async fn ses_sent(moto: &Moto) -> f64 {
    let body = reqwest::Client::new()
        .post(&moto.endpoint)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ses/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body("Action=GetSendQuota")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = body.find("<SentLast24Hours>").unwrap() + "<SentLast24Hours>".len();
    let end = body.find("</SentLast24Hours>").unwrap();
    body[start..end].parse().unwrap()
}

fn zendesk_double(fail_first: usize) -> impl Fn(&Seen) -> (u16, Value, Vec<(String, String)>) {
    let calls = std::sync::atomic::AtomicUsize::new(0);
    move |s: &Seen| match (s.method.clone(), s.path.as_str()) {
        (Method::PUT, "/api/v2/tickets/4711.json") => {
            if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < fail_first {
                (503, json!({}), vec![])
            } else {
                (
                    200,
                    json!({"audit": {"events": [{"id": 1, "type": "Comment"}]}}),
                    vec![],
                )
            }
        }
        (Method::GET, _) => (200, json!({"audits": []}), vec![]),
        _ => (404, json!({}), vec![]),
    }
}

async fn runtime(moto: &Moto, zendesk: &HelpdeskServer) -> (AwsRuntime, String) {
    let table = moto.table().await;
    let (queue, dlq) = moto.queues().await;
    let (topic, _) = moto.topic_with_subscriber(None).await;
    let mut config = Config {
        aws: moto.aws_settings(&table, &queue, &dlq, &topic),
        ..Config::default()
    };
    config.outbound.backoff_base_ms = 1;
    config.outbound.backoff_max_secs = 0;
    config.outbound.email = Some(EmailOutSettings {
        transport: EmailTransport::Ses,
        from: "Tallybird Support <support@acme.test>".into(),
        reply_to: None,
        holding_message: true,
        smtp: None,
        ses: None,
        human_line: Default::default(),
    });
    config.outbound.zendesk = Some(HelpdeskOutSettings {
        email: Some("bot@acme.test".into()),
        ..HelpdeskOutSettings::new(zendesk.url(), Secret::new("zd"))
    });
    (AwsRuntime::from_config(config).await.unwrap(), table)
}

#[tokio::test]
async fn the_dispatcher_lambda_delivers_stream_records_by_ses_and_to_a_helpdesk_once() {
    let moto = Moto::connect().await;
    aws_sdk_sesv2::Client::new(&moto.sdk)
        .create_email_identity()
        .email_identity("acme.test")
        .send()
        .await
        .unwrap();
    let zendesk = HelpdeskServer::start(zendesk_double(0)).await;
    let (rt, table) = runtime(&moto, &zendesk).await;
    let policy = OutboundPolicy::from_settings(&rt.config.outbound);
    let email = email_ticket("How do I turn on two-factor authentication?");
    let zd = helpdesk_ticket(Provider::Zendesk, "4711", "Two-factor?");
    for t in [&email, &zd] {
        let id = format!("{}.reply", t.ticket_id);
        let records = policy.answer(t, &id, "Go to Settings, then Security.", &[]);
        complete_with(&rt.store, t, "Go to Settings, then Security.", records).await;
    }
    let before = ses_sent(&moto).await;
    let d = rt.dispatcher().unwrap();
    let event = stream_event(&moto, &table).await;
    assert!(
        event["Records"].as_array().unwrap().len() > 2,
        "conversation and ticket items are in the batch too"
    );
    let out = dispatcher::handle(&d, event.clone()).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    // moto counts recipients of the envelope and the headers alike.
    let sent = ses_sent(&moto).await;
    assert!(sent > before, "nothing went through SES");
    assert_eq!(zendesk.writes().len(), 1);
    for t in [&email, &zd] {
        let r = rt
            .store
            .outbox_record(&format!("{}.reply", t.ticket_id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.state, OutboxState::Delivered, "{r:?}");
    }
    let email_record = rt
        .store
        .outbox_record(&format!("{}.reply", email.ticket_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        email_record.external_id, email.thread.reply_message_id,
        "the Message-ID is recorded"
    );

    // The stream delivers the batch again: nothing is sent twice.
    let out = dispatcher::handle(&d, event).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    assert_eq!(ses_sent(&moto).await, sent, "an email was sent twice");
    assert_eq!(zendesk.writes().len(), 1);
}

#[tokio::test]
async fn a_schedule_tick_sweeps_retries_and_store_failures_are_batch_item_failures() {
    let moto = Moto::connect().await;
    let zendesk = HelpdeskServer::start(zendesk_double(1)).await;
    let (rt, table) = runtime(&moto, &zendesk).await;
    let policy = OutboundPolicy::from_settings(&rt.config.outbound);
    let zd = helpdesk_ticket(Provider::Zendesk, "4711", "Two-factor?");
    let id = format!("{}.reply", zd.ticket_id);
    complete_with(
        &rt.store,
        &zd,
        "Go to Settings.",
        policy.answer(&zd, &id, "Go to Settings.", &[]),
    )
    .await;
    let d = rt.dispatcher().unwrap();
    let event = stream_event(&moto, &table).await;
    assert_eq!(
        dispatcher::handle(&d, event.clone()).await.unwrap(),
        json!({"batchItemFailures": []}),
        "a failed delivery is retried by the outbox, not the stream"
    );
    let r = rt.store.outbox_record(&id).await.unwrap().unwrap();
    assert_eq!((r.state, r.attempts), (OutboxState::Pending, 1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let tick = json!({"version": "0", "source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}});
    assert_eq!(
        dispatcher::handle(&d, tick).await.unwrap(),
        json!({"swept": 1})
    );
    let r = rt.store.outbox_record(&id).await.unwrap().unwrap();
    assert_eq!((r.state, r.attempts), (OutboxState::Delivered, 2));

    // The table is unreachable: every outbox record is reported failed.
    let broken = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&moto.sdk),
        "no-such-table",
        Duration::from_secs(60),
    );
    let d = Arc::new(Dispatcher::new(
        Arc::new(broken.clone()),
        Arc::new(broken),
        Arc::new(Recorder::default()),
        Couriers::default(),
        DispatchSettings::from_settings(&rt.config.outbound),
    ));
    let out = dispatcher::handle(&d, event).await.unwrap();
    let failed: Vec<&str> = out["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    assert_eq!(failed.len(), 1, "{out}");
}

#[test]
fn the_template_feeds_the_dispatcher_inserted_outbox_keys_with_retries_and_a_dlq() {
    let t = template();
    let f = &t["Resources"]["DispatcherFunction"]["Properties"];
    let stream = &f["Events"]["Outbox"]["Properties"];
    assert_eq!(
        stream["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    assert_eq!(stream["BisectBatchOnFunctionError"].as_bool(), Some(true));
    assert!(stream["MaximumRetryAttempts"].as_u64().is_some());
    assert!(!stream["DestinationConfig"]["OnFailure"].is_null());
    let pattern: Value = serde_json::from_str(
        stream["FilterCriteria"]["Filters"][0]["Pattern"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(pattern["eventName"], json!(["INSERT"]));
    assert_eq!(
        pattern["dynamodb"]["Keys"]["pk"]["S"][0]["prefix"],
        deskhand::store::dynamodb::outbox::outbox_pk("")
    );
    let table = &t["Resources"]["Table"]["Properties"];
    assert_eq!(
        table["StreamSpecification"]["StreamViewType"].as_str(),
        Some("KEYS_ONLY")
    );
    assert!(
        table["GlobalSecondaryIndexes"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|i| i["IndexName"].as_str() == Some(deskhand::store::dynamodb::outbox::DUE_INDEX)),
        "the table has no {} index",
        deskhand::store::dynamodb::outbox::DUE_INDEX
    );
    assert_eq!(
        f["Events"]["Sweep"]["Properties"]["ScheduleExpression"].as_str(),
        Some("rate(1 minute)")
    );
}

/// An agent's replies through the API Lambda's router over DynamoDB: the
/// message and its outbox record are one transaction, the stream hands the
/// record to the dispatcher, and a retried request (same key) and a
/// redelivered stream batch send once: one threaded mail to the SMTP
/// server, one public comment on the helpdesk. (SMTP rather than SES here:
/// moto's SES send count is shared by every test on the server.)
#[tokio::test]
async fn agent_replies_through_the_lambda_router_reach_email_and_helpdesk_once() {
    let moto = Moto::connect().await;
    let sink = SmtpSink::start().await;
    let zendesk = HelpdeskServer::start(zendesk_double(0)).await;
    let table = moto.table().await;
    let (queue, dlq) = moto.queues().await;
    let (topic, _) = moto.topic_with_subscriber(None).await;
    let mut config = Config {
        aws: moto.aws_settings(&table, &queue, &dlq, &topic),
        secret: Some(Secret::new("agent-aws-secret-0123456789abcdef")),
        agent_key: Some(Secret::new("agent-aws-key-0123456789")),
        ..Config::default()
    };
    config.outbound.email = Some(EmailOutSettings {
        transport: EmailTransport::Smtp,
        from: "Tallybird Support <support@acme.test>".into(),
        reply_to: None,
        holding_message: false,
        smtp: Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port: sink.port,
            tls: SmtpTls::None,
            username: None,
            password: None,
        }),
        ses: None,
        human_line: Default::default(),
    });
    config.outbound.zendesk = Some(HelpdeskOutSettings {
        email: Some("bot@acme.test".into()),
        ..HelpdeskOutSettings::new(zendesk.url(), Secret::new("zd"))
    });
    let rt = AwsRuntime::from_config(config).await.unwrap();
    let email = email_ticket("I want to talk to a human please");
    let zd = helpdesk_ticket(
        Provider::Zendesk,
        "4711",
        "I want to talk to a human please",
    );
    for t in [&email, &zd] {
        rt.pipeline().unwrap().process(t).await.unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = rt.router().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for t in [&email, &zd] {
        // Twice with one key: a retried request.
        for _ in 0..2 {
            let res = http
                .post(format!(
                    "{base}/v1/conversations/{}/agent-replies",
                    t.conversation_id
                ))
                .bearer_auth("agent-aws-key-0123456789")
                .header("Idempotency-Key", format!("k-{}", t.ticket_id))
                .json(&json!({"text": "Sam here: sorted."}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
            let v: Value = res.json().await.unwrap();
            assert_eq!(v["delivery"], "outbox", "{v}");
            ids.push(v["message_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!((ids[0] == ids[1], ids[2] == ids[3]), (true, true));
    let public = |z: &HelpdeskServer| {
        z.writes()
            .iter()
            .filter(|s| s.json()["ticket"]["comment"]["public"] == true)
            .count()
    };
    let d = rt.dispatcher().unwrap();
    for _ in 0..2 {
        let out = dispatcher::handle(&d, stream_event(&moto, &table).await)
            .await
            .unwrap();
        assert_eq!(out, json!({"batchItemFailures": []}));
    }
    let mails = sink.wait_for(1).await;
    assert_eq!(mails.len(), 1, "the agent's mail was sent more than once");
    assert_eq!(
        header(&mails[0], "In-Reply-To").as_deref(),
        Some("<cust-1@example.com>")
    );
    assert_eq!(
        header(&mails[0], "Subject").as_deref(),
        Some("Re: Two-factor")
    );
    assert_eq!(public(&zendesk), 1, "{:?}", zendesk.writes());
    let mail = rt.store.outbox_record(&ids[0]).await.unwrap().unwrap();
    assert_eq!(mail.state, OutboxState::Delivered, "{mail:?}");
    let sent_id = mail.external_id.unwrap();
    assert_eq!(
        header(&mails[0], "Message-ID").as_deref(),
        Some(sent_id.as_str())
    );
    assert!(
        sent_id.contains(".agent@deskhand.acme.test")
            && Some(&sent_id) != email.thread.reply_message_id.as_ref(),
        "{sent_id}"
    );
    let comment = rt.store.outbox_record(&ids[2]).await.unwrap().unwrap();
    assert_eq!(comment.state, OutboxState::Delivered, "{comment:?}");
}
