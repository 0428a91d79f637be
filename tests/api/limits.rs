//! Limits, one test each: request body size and message length (see
//! local_api.rs), rate limits per conversation and per client address,
//! history turns and passage size given to the model; and the attacks on
//! them (issue 14): slow clients (stalled headers, stalled and trickling
//! bodies, more requests than the cap) and rate-limit keys respelled
//! (conversation ids, forged `X-Forwarded-For`, one IPv6 /64).

use crate::common;

use common::TestApp;
use common::peers::{ModelServer, Reply};
use deskhand::config::GeneratorKind;
use deskhand::llm::openai::OpenAiSettings;
use deskhand::secret::Secret;
use serde_json::json;

#[tokio::test]
async fn too_many_messages_in_one_conversation_get_429_with_retry_after() {
    let app = TestApp::spawn_with(|c| c.limits.per_conversation_per_minute = 3).await;
    let (a, ta) = app.conversation().await;
    for _ in 0..3 {
        assert_eq!(app.post(&a, &ta, "How do I export my data?").await.0, 202);
    }
    let res = app
        .http
        .post(app.url(&format!("/v1/conversations/{a}/messages")))
        .bearer_auth(&ta)
        .json(&json!({"text": "again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&wait), "{wait}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Polling that conversation, and posting to another, still work.
    assert_eq!(app.poll(&a, &ta, "0").await.0, 200);
    let (b, tb) = app.conversation().await;
    assert_eq!(app.post(&b, &tb, "hello").await.0, 202);
    app.stop().await;
}

#[tokio::test]
async fn too_many_requests_from_one_address_get_429() {
    let app = TestApp::spawn_with(|c| c.limits.per_ip_per_minute = 5).await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            app.http
                .get(app.url("/healthz"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    app.stop().await;
}

#[tokio::test]
async fn the_model_gets_at_most_history_turns_and_cut_passages() {
    let model = ModelServer::start(
        vec![],
        Reply::answer("ok.", 0.9, "security/two-factor-authentication.md"),
    )
    .await;
    let app = TestApp::spawn_with(|c| {
        c.pipeline.history_turns = 2;
        c.pipeline.max_passage_chars = 120;
        c.limits.per_conversation_per_minute = 0;
        c.generator.kind = GeneratorKind::Openai;
        c.generator.openai = Some(OpenAiSettings {
            base_url: model.base_url(),
            model: "m".into(),
            api_key: Some(Secret::new("k")),
            timeout_secs: 5,
            max_tokens: 100,
            temperature: 0.0,
            response_format: Default::default(),
        });
    })
    .await;
    let (id, token) = app.conversation().await;
    for i in 1..=4 {
        app.post(
            &id,
            &token,
            &format!("Question {i}: how do I turn on two-factor authentication?"),
        )
        .await;
        app.wait_for_reply(&id, &token, i).await;
    }
    let last = model.requests().pop().unwrap();
    let user = last["messages"][1]["content"].as_str().unwrap();
    assert_eq!(
        user.matches("<turn ").count(),
        2,
        "more than history_turns earlier turns: {user}"
    );
    assert!(user.contains("Question 4"));
    assert!(
        !user.contains("Question 2:"),
        "an old turn leaked into the prompt"
    );
    for passage in user.split("<passage ").skip(1) {
        let body = passage
            .split_once(">\n")
            .unwrap()
            .1
            .split("\n</passage>")
            .next()
            .unwrap();
        assert!(
            body.chars().count() <= 120,
            "passage of {} chars",
            body.chars().count()
        );
    }
    app.stop().await;
}

// ---- Slow clients (issue 14, finding 3) -------------------------------
//
// Every wait below is bounded (count and time) with a wide margin over
// the 1 s limits configured: a pass never depends on timing, a failure
// is a limit that did not act within ten times its setting.

/// Reads from `stream` until the server closes it (or resets it), at most
/// `within`; returns what it sent, or `None` if it was still open.
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    within: std::time::Duration,
) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test]
async fn a_client_that_stalls_in_its_headers_is_disconnected() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn_with(|c| c.limits.header_read_timeout_secs = 1).await;
    let started = std::time::Instant::now();
    // Half a request, then silence; and a connection that never speaks.
    let mut half = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    half.write_all(b"POST /v1/conversations HTTP/1.1\r\nHost: deskhand\r\nContent-")
        .await
        .unwrap();
    let mut mute = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let ten = std::time::Duration::from_secs(10);
    assert!(
        read_until_closed(&mut half, ten).await.is_some(),
        "a half-sent request was still held open after {:?}",
        started.elapsed()
    );
    assert!(
        read_until_closed(&mut mute, ten).await.is_some(),
        "a silent connection was still held open after {:?}",
        started.elapsed()
    );
    // The server itself is fine.
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await;
}

/// Sends the headers of a message post declaring a 1000-byte body, and
/// `sent` bytes of it.
async fn slow_post(app: &TestApp, sent: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let (id, token) = app.conversation().await;
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/conversations/{id}/messages HTTP/1.1\r\nHost: deskhand\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{}",
        " ".repeat(sent)
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

#[tokio::test]
async fn a_body_that_stalls_gets_408() {
    let app = TestApp::spawn_with(|c| c.limits.body_timeout_secs = 1).await;
    let mut s = slow_post(&app, 10).await;
    let answer = read_until_closed(&mut s, std::time::Duration::from_secs(10))
        .await
        .expect("a stalled body was still held open after 10 s");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_trickles_gets_408() {
    use tokio::io::AsyncWriteExt;
    // Each byte arrives well within the body timeout; the request as a
    // whole may not take longer than 1 s.
    let app = TestApp::spawn_with(|c| c.limits.request_timeout_secs = 1).await;
    let s = slow_post(&app, 1).await;
    let (mut read, mut write) = s.into_split();
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let _ = read.read_to_end(&mut got).await;
        String::from_utf8_lossy(&got).into_owned()
    });
    // 50 bytes, 200 ms apart: 10 s at most, a fifth of the body.
    for _ in 0..50 {
        if reader.is_finished() || write.write_all(b" ").await.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let _ = write.shutdown().await;
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), reader)
        .await
        .expect("no answer to a trickling body")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn requests_over_the_concurrency_cap_get_503_with_retry_after() {
    let app = TestApp::spawn_with(|c| c.limits.max_concurrent_requests = 2).await;
    // Two requests whose bodies never come take both slots (until the
    // 10 s body timeout, far beyond this test's need).
    let slow = [slow_post(&app, 1).await, slow_post(&app, 1).await];
    // They reach the router a moment after their headers: ask until the
    // next request is shed (at most 50 times, 100 ms apart).
    let mut shed = None;
    for _ in 0..50 {
        let res = app.http.get(app.url("/healthz")).send().await.unwrap();
        if res.status() == 503 {
            shed = Some(res);
            break;
        }
        assert_eq!(res.status(), 200);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let res = shed.expect("a third request in flight was not shed");
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    // Hanging up frees the slots.
    drop(slow);
    let mut ok = false;
    for _ in 0..50 {
        if app
            .http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "slots were not freed when the slow clients hung up");
    app.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_one() {
    let app = TestApp::spawn_with(|c| {
        c.limits.max_connections = 1;
        c.limits.header_read_timeout_secs = 1;
    })
    .await;
    let started = std::time::Instant::now();
    // A silent client holds the only connection until the header-read
    // timeout closes it (its clock starts after this connect).
    let _mute = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let res = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        app.http.get(app.url("/healthz")).send(),
    )
    .await
    .expect("the waiting connection was never served")
    .unwrap();
    assert_eq!(res.status(), 200);
    // Served, but not before the slot was free: never earlier than the
    // timeout (timers do not fire early).
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "served after {waited:?}, beside a connection holding the only slot"
    );
    app.stop().await;
}

// ---- Rate-limit keys (issue 14, finding 5) ----------------------------

#[tokio::test]
async fn every_spelling_of_a_conversation_id_shares_one_budget() {
    let app = TestApp::spawn_with(|c| c.limits.per_conversation_per_minute = 4).await;
    let (id, token) = app.conversation().await;
    let simple = id.replace('-', "");
    let spellings = [
        id.clone(),
        id.to_uppercase(),
        simple.clone(),
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
    ];
    let mut statuses = Vec::new();
    for spelling in &spellings {
        statuses.push(
            app.post(spelling, &token, "How do I export my data?")
                .await
                .0,
        );
    }
    assert_eq!(statuses, [202, 202, 202, 202, 429], "{spellings:?}");
    app.stop().await;
}

async fn statuses_with_forwarded_for(app: &TestApp, hops: &[String]) -> Vec<u16> {
    let mut statuses = Vec::new();
    for xff in hops {
        statuses.push(
            app.http
                .get(app.url("/healthz"))
                .header("x-forwarded-for", xff)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    statuses
}

#[tokio::test]
async fn a_forged_left_most_forwarded_for_entry_gets_no_fresh_budget() {
    // (trusted proxies, the header of request i): each time the client
    // forges new entries, and the address that counts stays the same.
    type Case = (&'static [&'static str], fn(u32) -> String);
    let cases: [Case; 3] = [
        // One proxy (the peer) appends the real client; the client forges
        // entries in front of it.
        (&[], |i| format!("198.51.100.{i}, 203.0.113.9")),
        // A chain of trusted proxies: the right-most hop not among them.
        (&["127.0.0.1", "10.0.0.0/8"], |i| {
            format!("198.51.100.{i}, 203.0.113.9, 10.1.2.{i}")
        }),
        // A connection from outside the trusted proxies speaks for itself,
        // whatever it claims.
        (&["10.0.0.0/8"], |i| format!("203.0.113.{i}")),
    ];
    for (proxies, header) in cases {
        let app = TestApp::spawn_with(|c| {
            c.limits.per_ip_per_minute = 3;
            c.limits.trust_forwarded_for = true;
            c.limits.trusted_proxies = proxies.iter().map(|p| p.to_string()).collect();
        })
        .await;
        let forged: Vec<String> = (1..=5).map(header).collect();
        assert_eq!(
            statuses_with_forwarded_for(&app, &forged).await,
            [200, 200, 200, 429, 429],
            "trusted proxies {proxies:?}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn addresses_in_one_ipv6_64_share_one_budget() {
    let app = TestApp::spawn_with(|c| {
        c.limits.per_ip_per_minute = 3;
        c.limits.trust_forwarded_for = true;
    })
    .await;
    let one_64: Vec<String> = (1..=5u32)
        .map(|i| format!("2001:db8:1:2:{i:x}:{:x}::1", i * 7919))
        .collect();
    assert_eq!(
        statuses_with_forwarded_for(&app, &one_64).await,
        [200, 200, 200, 429, 429]
    );
    // Another /64 has its own budget.
    assert_eq!(
        statuses_with_forwarded_for(&app, &["2001:db8:1:3::1".into()]).await,
        [200]
    );
    app.stop().await;
}
