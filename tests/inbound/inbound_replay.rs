//! Replays of captured inbound deliveries (security issue #14, findings 2
//! and 13), against the real local app:
//!
//! * Mailgun signs only `timestamp` + `token`: one captured signature put
//!   on other messages is refused 401 `replayed_token` (also after a
//!   restart); Mailgun's own retry of the same message is accepted as the
//!   same ticket.
//! * Intercom and Help Scout sign no timestamp: a captured delivery
//!   replayed later than `inbound.max_event_age_hours` is refused 401
//!   `stale_timestamp`; a fresh one is accepted.

use crate::common;
use crate::inbound_support;

use chrono::Utc;
use common::{TestApp, test_config};
use inbound_support::*;
use serde_json::Value;

async fn post(app: &TestApp, req: &Req) -> (u16, Value) {
    let mut r = app.http.post(app.url(&req.path())).body(req.body.clone());
    for (k, v) in &req.headers {
        r = r.header(k, v);
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The `&timestamp=…&token=…&signature=…` a signed Mailgun form ends with.
fn signature_of(req: &Req) -> String {
    let body = String::from_utf8(req.body.clone()).unwrap();
    let at = body.find("&timestamp=").expect("a signed form");
    body[at..].to_owned()
}

/// The captured signature on another message (another text and
/// Message-Id, so it would be a new ticket).
fn forged(captured: &Req, n: u32) -> Req {
    let form = String::from_utf8(payload("mailgun")).unwrap();
    assert!(form.contains("order+%235521") && form.contains("CAJ0aBc"));
    let other = form
        .replace("order+%235521", &format!("order+%23{}", 7000 + n))
        .replace("CAJ0aBc", &format!("FORGED{n}"));
    let mut req = captured.clone();
    req.body = format!("{other}{}", signature_of(captured)).into_bytes();
    req
}

fn config_for(data: &std::path::Path) -> deskhand::config::Config {
    let mut c = test_config(data);
    c.inbound = settings(Vec::new(), None);
    c
}

#[tokio::test]
async fn a_mailgun_signature_replayed_with_other_messages_is_401_even_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let app = TestApp::start(config_for(data.path()), data).await;
    let captured = signed("mailgun", &payload("mailgun"), Utc::now());
    let (status, first) = post(&app, &captured).await;
    assert_eq!(status, 202, "{first}");

    // The same signature on three other messages, inside the window.
    for n in 0..3 {
        let (status, body) = post(&app, &forged(&captured, n)).await;
        assert_eq!(status, 401, "replay {n} accepted: {body}");
        assert_eq!(body["error"]["code"], "replayed_token", "{body}");
    }
    // Mailgun retrying the very same delivery (after a 5xx, say) is the
    // same ticket, accepted again; the ticket dedup makes it a no-op.
    let (status, again) = post(&app, &captured).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["ticket_id"], first["ticket_id"]);

    // The tokens are in the SQLite file: a restart does not forget them.
    let data = app.stop().await;
    let app = TestApp::start(config_for(data.path()), data).await;
    let (status, body) = post(&app, &forged(&captured, 9)).await;
    assert_eq!(status, 401, "replay after restart accepted: {body}");
    assert_eq!(body["error"]["code"], "replayed_token");
    let (status, again) = post(&app, &captured).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["ticket_id"], first["ticket_id"]);
    app.stop().await;
}

#[tokio::test]
async fn old_intercom_and_help_scout_deliveries_are_refused_and_fresh_ones_accepted() {
    let data = tempfile::tempdir().unwrap();
    let app = TestApp::start(config_for(data.path()), data).await;
    for provider in ["intercom", "helpscout"] {
        // A delivery captured in March 2024 (the fixture), replayed now:
        // its signature is still good, its event far older than the horizon.
        let old = signed(provider, &payload(provider), Utc::now());
        let (status, body) = post(&app, &old).await;
        assert_eq!(
            status, 401,
            "{provider}: a stale event was accepted: {body}"
        );
        assert_eq!(
            body["error"]["code"], "stale_timestamp",
            "{provider}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("max_event_age_hours"),
            "{provider}: {body}"
        );
        // The same event, just created.
        let fresh = signed(provider, &fresh_payload(provider), Utc::now());
        let (status, body) = post(&app, &fresh).await;
        assert_eq!(status, 202, "{provider}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_event_age_horizon_is_configurable() {
    let data = tempfile::tempdir().unwrap();
    let mut config = config_for(data.path());
    // Two hours: an Intercom notification created three hours ago is out.
    config.inbound.max_event_age_hours = 2;
    let app = TestApp::start(config, data).await;
    let mut v: Value = serde_json::from_slice(&fresh_payload("intercom")).unwrap();
    let three_hours_ago = Utc::now().timestamp() - 3 * 3600;
    v["created_at"] = three_hours_ago.into();
    v["first_sent_at"] = three_hours_ago.into();
    let req = signed("intercom", &serde_json::to_vec(&v).unwrap(), Utc::now());
    let (status, body) = post(&app, &req).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "stale_timestamp");
    app.stop().await;
}
