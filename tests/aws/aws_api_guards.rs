//! The API Lambda's shared guards (security issue #14, findings 2 and 7),
//! through the real router built by `AwsRuntime` over moto: two routers
//! built separately stand for two Lambda instances sharing the table.
//!
//! * a captured Mailgun signature put on another message is refused 401
//!   `replayed_token`, whichever instance sees it; the identical retry is
//!   accepted as the same ticket;
//! * the per-conversation limit holds across instances: over it, 429 with
//!   `Retry-After`.

use crate::common;
use crate::inbound_support;

use chrono::{Timelike, Utc};
use common::moto::Moto;
use deskhand::config::Config;
use deskhand::lambda::AwsRuntime;
use deskhand::secret::Secret;
use inbound_support::{Req, payload, settings, signed};
use serde_json::{Value, json};

/// Two API instances over one moto stack; their base URLs.
async fn two_instances(adjust: impl Fn(&mut Config)) -> (String, String) {
    let moto = Moto::connect().await;
    let table = moto.table().await;
    let (queue_url, dlq_url) = moto.queues().await;
    let (topic, _) = moto.topic_with_subscriber(None).await;
    let mut bases = Vec::new();
    for _ in 0..2 {
        let mut config = Config {
            secret: Some(Secret::new("test-secret-test-secret-0123456789")),
            aws: moto.aws_settings(&table, &queue_url, &dlq_url, &topic),
            ..Config::default()
        };
        adjust(&mut config);
        let runtime = AwsRuntime::from_config(config).await.unwrap();
        let router = runtime.router().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        bases.push(format!("http://{}", listener.local_addr().unwrap()));
        tokio::spawn(async move { axum::serve(listener, router).await });
    }
    (bases.remove(0), bases.remove(0))
}

async fn post(base: &str, req: &Req) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .post(format!("{base}{}", req.path()))
        .body(req.body.clone());
    for (k, v) in &req.headers {
        r = r.header(k, v);
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_mailgun_signature_replayed_with_another_message_is_401_on_dynamodb() {
    let (a, b) = two_instances(|c| c.inbound = settings(Vec::new(), None)).await;
    let captured = signed("mailgun", &payload("mailgun"), Utc::now());
    let (status, first) = post(&a, &captured).await;
    assert_eq!(status, 202, "{first}");

    let body = String::from_utf8(captured.body.clone()).unwrap();
    let signature = &body[body.find("&timestamp=").unwrap()..];
    let form = String::from_utf8(payload("mailgun")).unwrap();
    for (n, base) in [&a, &b, &b].into_iter().enumerate() {
        let other = form
            .replace("order+%235521", &format!("order+%23{}", 7000 + n))
            .replace("CAJ0aBc", &format!("FORGED{n}"));
        let mut replay = captured.clone();
        replay.body = format!("{other}{signature}").into_bytes();
        let (status, body) = post(base, &replay).await;
        assert_eq!(status, 401, "replay {n} accepted: {body}");
        assert_eq!(body["error"]["code"], "replayed_token", "{body}");
    }
    // Mailgun's retry of the same delivery, on the other instance.
    let (status, again) = post(&b, &captured).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["ticket_id"], first["ticket_id"]);
}

#[tokio::test]
async fn the_conversation_limit_holds_across_lambda_instances() {
    let (a, b) = two_instances(|c| c.limits.per_conversation_per_minute = 3).await;
    let http = reqwest::Client::new();
    let (id, token) = common::open_conversation(&http, &a).await;
    let send = |base: String| {
        let (http, id, token) = (http.clone(), id.clone(), token.clone());
        async move {
            http.post(format!("{base}/v1/conversations/{id}/messages"))
                .bearer_auth(token)
                .json(&json!({"text": "How do I export my data?"}))
                .send()
                .await
                .unwrap()
        }
    };
    // The limit counts per calendar minute: start well inside one, so the
    // few requests below cannot straddle two.
    let second = Utc::now().second();
    if second >= 45 {
        tokio::time::sleep(std::time::Duration::from_secs(u64::from(61 - second))).await;
    }
    // Three messages spread over both instances: each instance saw fewer
    // than three, so only a shared count stops the fourth.
    for base in [&a, &b, &a] {
        assert_eq!(send(base.clone()).await.status(), 202);
    }
    let res = send(b.clone()).await;
    assert_eq!(res.status(), 429);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&wait), "{wait}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(send(a.clone()).await.status(), 429);
    // Another conversation is not affected.
    let (other, other_token) = common::open_conversation(&http, &b).await;
    let res = http
        .post(format!("{b}/v1/conversations/{other}/messages"))
        .bearer_auth(&other_token)
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
}
