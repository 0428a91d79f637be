//! Actions end to end over HTTP: the real app (extractive generator, SQLite)
//! calls a shop double (`tests/actions_support`) that checks method, path,
//! auth and query. Verified and anonymous widget visitors, another
//! customer's order, a missing parameter filled by the next message, the
//! shop down, a write action's confirmation turn, and the Shopify and
//! WooCommerce presets against their documented shapes.

use crate::actions_support;
use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actions_support::{SHOPIFY_TOKEN, Shop, TOKEN, WOO_KEY, WOO_SECRET};
use common::peers::WebhookReceiver;
use common::{TestApp, with_role};
use deskhand::actions::identity::{user_hash, widget_user_hash};
use deskhand::actions::{Actions, Identity};
use deskhand::config::{Config, WebhookFormat};
use deskhand::secret::Secret;
use serde_json::{Value, json};

const SITE_SECRET: &str = "site-identity-secret-0123";

/// The issue's configuration, verbatim but for the shop's address.
fn order_status_toml(shop: &Shop) -> String {
    format!(
        r#"
[identity]
secret = "{SITE_SECRET}"

[action_secrets]
shop_token = "{TOKEN}"

[[actions]]
name = "order_status"
description = "Look up an order's status and tracking by order number"
method = "GET"
url = "{shop}/api/orders/{{order_number}}?email={{customer.email}}"
headers = {{ Authorization = "Bearer ${{secret:shop_token}}" }}
identity = "verified_email"          # or "none" for public data
timeout_secs = 5
[actions.params.order_number]
pattern = '#?(\d{{4,10}})'               # how the extractive mode finds it
description = "The order number"
[actions.expose]                       # JSON pointers kept; everything else is dropped
status = "/order/status"
tracking_url = "/order/tracking_url"
eta = "/order/estimated_delivery"
[actions.reply]                        # template for the extractive mode
template = "Order #{{order_number}} is {{status}}. Track it here: {{tracking_url}}"

[[actions]]
name = "cancel_order"
description = "Cancel an order"
intent = ["cancel"]
method = "POST"
url = "{shop}/api/orders/{{order_number}}/cancel?email={{customer.email}}"
headers = {{ Authorization = "Bearer ${{secret:shop_token}}" }}
[actions.params.order_number]
pattern = '#?(\d{{4,10}})'
description = "The order number"
[actions.expose]
status = "/order/status"
[actions.reply]
template = "Order #{{order_number}} is now {{status}}."
confirm = "Shall I cancel order #{{order_number}}? Reply \"yes\" to confirm."
"#,
        shop = shop.url()
    )
}

fn apply(c: &mut Config, toml: &str) {
    let parsed = Config::from_toml_str(toml).expect("the configuration is valid");
    c.identity = parsed.identity;
    c.actions = parsed.actions;
    c.action_secrets = parsed.action_secrets;
}

async fn app(toml: &str, hook: Option<&WebhookReceiver>) -> TestApp {
    let toml = toml.to_owned();
    let hook = hook.map(|h| h.url());
    TestApp::spawn_with(move |c| {
        apply(c, &toml);
        if let Some(url) = hook {
            c.escalation.webhook_url = Some(Secret::new(url));
            c.escalation.webhook_format = WebhookFormat::Json;
        }
    })
    .await
}

/// Opens a conversation as a signed-in user (hash by the site's backend).
async fn open_as(app: &TestApp, user: Option<Value>) -> (u16, Option<(String, String)>) {
    let mut req = app.http.post(app.url("/v1/conversations"));
    if let Some(u) = user {
        req = req.json(&json!({ "user": u }));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    let ids = v["conversation_id"]
        .as_str()
        .map(|id| (id.to_owned(), v["token"].as_str().unwrap().to_owned()));
    (status, ids)
}

fn signed_in(id: &str, email: &str) -> Value {
    json!({"id": id, "email": email, "hash": widget_user_hash(SITE_SECRET, id, Some(email))})
}

async fn ann(app: &TestApp) -> (String, String) {
    open_as(app, Some(signed_in("u_ann", "ann@example.com")))
        .await
        .1
        .expect("opened")
}

/// Posts `text` as the `n`-th customer message and returns the bot's reply text.
async fn ask(app: &TestApp, conv: &(String, String), text: &str, n: usize) -> (String, Value) {
    let (status, _) = app.post(&conv.0, &conv.1, text).await;
    assert_eq!(status, 202);
    let poll = app.wait_for_reply(&conv.0, &conv.1, n).await;
    let last = poll["messages"].as_array().unwrap().last().unwrap()["text"]
        .as_str()
        .unwrap()
        .to_owned();
    (last, poll)
}

#[tokio::test]
async fn a_verified_customer_gets_their_order_and_nothing_else() {
    let shop = Shop::start().await;
    let app = app(&order_status_toml(&shop), None).await;
    let conv = ann(&app).await;
    let (reply, _) = ask(&app, &conv, "Where's my order #1001?", 1).await;
    assert_eq!(
        reply,
        "Order #1001 is shipped. Track it here: https://track.example/1Z1001"
    );
    for private in ["Secret Street", "4242", "bob", "1002", "processing"] {
        assert!(!reply.contains(private), "{private} leaked: {reply}");
    }
    let seen = shop.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "/api/orders/1001");
    assert_eq!(seen[0].query["email"], "ann@example.com");
    assert!(seen[0].authorized);
    app.stop().await;
}

#[tokio::test]
async fn an_unverified_visitor_gets_no_order_data() {
    let shop = Shop::start().await;
    let app = app(&order_status_toml(&shop), None).await;
    // A wrong hash is refused outright.
    let mut forged = signed_in("u_ann", "ann@example.com");
    forged["hash"] = json!(user_hash("guessed-secret", "u_ann"));
    assert_eq!(open_as(&app, Some(forged)).await.0, 401);
    let mut other = signed_in("u_mallory", "ann@example.com");
    other["id"] = json!("u_ann");
    assert_eq!(open_as(&app, Some(other)).await.0, 401);
    // A signed-in customer with their own valid hash presenting another
    // customer's address (to read her orders) is refused: the hash covers
    // the email.
    let mut posing = signed_in("u_mallory", "mallory@example.com");
    posing["email"] = json!("ann@example.com");
    assert_eq!(open_as(&app, Some(posing)).await.0, 401);
    // Intercom's form (the id alone signed) is refused too when an email
    // is passed: that email would be unverified.
    let id_only = json!({"id": "u_mallory", "email": "ann@example.com", "hash": user_hash(SITE_SECRET, "u_mallory")});
    assert_eq!(open_as(&app, Some(id_only)).await.0, 401);
    // No user: anonymous, unverified.
    let (status, conv) = open_as(&app, None).await;
    assert_eq!(status, 201);
    let conv = conv.unwrap();
    let (reply, _) = ask(&app, &conv, "Where's my order #1001?", 1).await;
    assert!(reply.contains("sign in"), "{reply}");
    assert!(
        !reply.contains("shipped") && !reply.contains("track.example"),
        "{reply}"
    );
    assert!(
        shop.seen().is_empty(),
        "the shop was called: {:?}",
        shop.seen()
    );
    app.stop().await;
}

#[tokio::test]
async fn someone_elses_order_teaches_nothing() {
    let shop = Shop::start().await;
    let app = app(&order_status_toml(&shop), None).await;
    let conv = ann(&app).await;
    let (mine_missing, _) = ask(&app, &conv, "Where's my order #1002?", 1).await;
    let (nobodys, _) = ask(&app, &conv, "And where's my order #9999?", 2).await;
    // Bob's order and no order at all read the same.
    assert_eq!(mine_missing, nobodys);
    assert!(mine_missing.contains("could not find"), "{mine_missing}");
    for private in ["processing", "bob", "1Z1002", "2026-12-09"] {
        assert!(!mine_missing.contains(private), "{private} leaked");
    }
    // The shop was asked with Ann's verified address, never another.
    let seen = shop.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.query["email"] == "ann@example.com"));
    app.stop().await;
}

#[tokio::test]
async fn a_missing_order_number_is_asked_for_and_the_next_message_completes_it() {
    let shop = Shop::start().await;
    let app = app(&order_status_toml(&shop), None).await;
    let conv = ann(&app).await;
    let (question, _) = ask(&app, &conv, "Hi, where is my order?", 1).await;
    assert_eq!(question, "What is your order number?");
    assert!(shop.seen().is_empty());
    let (reply, poll) = ask(&app, &conv, "It's 1001", 2).await;
    assert!(reply.starts_with("Order #1001 is shipped."), "{reply}");
    // One conversation, still open: conversation state, not a new ticket.
    assert_eq!(poll["status"], "open");
    assert_eq!(with_role(&poll, "customer").len(), 2);
    assert_eq!(shop.seen().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_shop_down_escalates_action_failed_and_loses_nothing() {
    let shop = Shop::start().await;
    shop.set_down(true);
    let hook = WebhookReceiver::start().await;
    let app = app(&order_status_toml(&shop), Some(&hook)).await;
    let conv = ann(&app).await;
    let (_, poll) = ask(&app, &conv, "Where's my order #1001?", 1).await;
    assert_eq!(poll["status"], "escalated");
    let customer = with_role(&poll, "customer");
    assert_eq!(customer[0]["text"], "Where's my order #1001?");
    let esc = hook.wait_for(1).await;
    assert_eq!(esc[0]["reason"], "action_failed", "{}", esc[0]);
    let detail = esc[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("order_status") && detail.contains("503"),
        "{detail}"
    );
    // The escalation carries the verified identity and no secret.
    assert_eq!(esc[0]["customer"]["user_id"], "u_ann");
    assert!(!esc[0].to_string().contains(TOKEN));
    app.stop().await;
}

#[tokio::test]
async fn a_write_action_does_nothing_without_the_confirmation_turn() {
    let shop = Shop::start().await;
    let app = app(&order_status_toml(&shop), None).await;
    let conv = ann(&app).await;
    // A bare "yes" confirms nothing.
    let _ = ask(&app, &conv, "yes", 1).await;
    let (prompt, _) = ask(&app, &conv, "Please cancel order #1001", 2).await;
    assert_eq!(
        prompt,
        "Shall I cancel order #1001? Reply \"yes\" to confirm."
    );
    assert!(shop.cancelled().is_empty());
    // Declining leaves it alone.
    let (no, _) = ask(&app, &conv, "no", 3).await;
    assert!(no.contains("not changed"), "{no}");
    assert!(shop.cancelled().is_empty());
    // Asked again and confirmed, it runs once.
    let _ = ask(&app, &conv, "Please cancel order #1001", 4).await;
    assert!(shop.cancelled().is_empty());
    let (done, _) = ask(&app, &conv, "Yes please", 5).await;
    assert_eq!(done, "Order #1001 is now cancelled.");
    assert_eq!(shop.cancelled(), [1001]);
    app.stop().await;
}

#[tokio::test]
async fn the_shopify_preset_speaks_admin_graphql() {
    let shop = Shop::start().await;
    let toml = format!(
        r#"
[identity]
secret = "{SITE_SECRET}"
[action_secrets]
shopify_token = "{SHOPIFY_TOKEN}"
[[actions]]
name = "order_status"
preset = "shopify"
shop_url = "{}"
"#,
        shop.url()
    );
    let app = app(&toml, None).await;
    let conv = ann(&app).await;
    let (reply, _) = ask(&app, &conv, "where is my package? order #1001", 1).await;
    assert_eq!(
        reply,
        "Order #1001 is SHIPPED. Tracking: https://track.example/1Z1001"
    );
    let (other, _) = ask(&app, &conv, "and order #1002?", 2).await;
    assert!(other.contains("could not find"), "{other}");
    let seen = shop.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.authorized && s.path.ends_with("/graphql.json"))
    );
    app.stop().await;
}

#[tokio::test]
async fn the_woocommerce_preset_picks_the_customers_order_from_a_search() {
    let shop = Shop::start().await;
    let toml = format!(
        r#"
[identity]
secret = "{SITE_SECRET}"
[action_secrets]
woocommerce_key = "{WOO_KEY}"
woocommerce_secret = "{WOO_SECRET}"
[[actions]]
name = "order_status"
preset = "woocommerce"
shop_url = "{}"
"#,
        shop.url()
    );
    let app = app(&toml, None).await;
    let conv = ann(&app).await;
    // The search for 1001 also returns 11001 (first); Ann's is kept.
    let (reply, _) = ask(&app, &conv, "Has order #1001 shipped?", 1).await;
    assert_eq!(reply, "Order #1001 is shipped.");
    // Carol's 11001 is found by the search but is not Ann's.
    let (other, _) = ask(&app, &conv, "what about order #11001?", 2).await;
    assert!(other.contains("could not find"), "{other}");
    let seen = shop.seen();
    assert!(seen.iter().all(|s| s.authorized), "{seen:?}");
    assert_eq!(seen[0].query["search"], "1001");
    app.stop().await;
}

/// Not a timed test: prints what one action call adds, for the report.
#[tokio::test]
async fn added_latency_per_action_call_is_logged() {
    let shop = Shop::start().await;
    let config = Config::from_toml_str(&order_status_toml(&shop)).unwrap();
    let actions = Actions::new(&config.actions, config.action_secrets.clone()).unwrap();
    let who = Identity {
        email: deskhand::domain::EmailAddress::parse("ann@example.com"),
        user_id: Some("u_ann".into()),
        by: Some(deskhand::actions::identity::VerifiedBy::WidgetHash),
    };
    let params = BTreeMap::from([("order_number".to_owned(), "1001".to_owned())]);
    let mut times = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let (result, record) = actions.run("order_status", &params, &who).await;
        times.push(started.elapsed());
        assert!(matches!(result, deskhand::actions::CallResult::Found(_)));
        assert_eq!(record.status, "found");
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    eprintln!(
        "action call against a local shop double: mean {:?}, p50 {:?}, p95 {:?}",
        mean,
        times[times.len() / 2],
        times[times.len() * 95 / 100]
    );
}

#[tokio::test]
async fn every_call_is_counted_in_stats_without_its_payload() {
    let shop = Shop::start().await;
    let toml = order_status_toml(&shop);
    let app = TestApp::spawn_with(move |c| {
        apply(c, &toml);
        c.admin_key = Some(Secret::new("admin-key-0123456789"));
    })
    .await;
    let conv = ann(&app).await;
    let _ = ask(&app, &conv, "Where's my order #1001?", 1).await;
    // Asking for the number makes no call.
    let _ = ask(&app, &conv, "where is my order?", 2).await;
    let stats: Value = app
        .http
        .get(app.url("/v1/stats"))
        .bearer_auth("admin-key-0123456789")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["action_calls"], 1, "{stats}");
    assert!(stats["action_ms"].as_u64().is_some(), "{stats}");
    let text = stats.to_string();
    for payload in ["shipped", "ann@example.com", TOKEN] {
        assert!(!text.contains(payload), "{payload} in stats");
    }
    app.stop().await;
}

/// An email whose sender passes the provider's authentication is verified
/// (its address is the one looked up); without passing results it is not.
#[tokio::test]
async fn email_senders_are_verified_only_by_passing_authentication_results() {
    let shop = Shop::start().await;
    let toml = order_status_toml(&shop);
    let app = TestApp::spawn_with(move |c| {
        apply(c, &toml);
        c.admin_key = Some(Secret::new("admin-key-0123456789"));
        c.inbound.postmark = Some(deskhand::ingest::settings::BasicAuthSettings {
            username: "postmark".into(),
            password: Secret::new("inbound-pass-0123"),
        });
    })
    .await;
    let mail = |from: &str, id: &str, auth: Option<&str>| {
        let mut headers =
            vec![json!({"Name": "Message-ID", "Value": format!("<{id}@example.com>")})];
        if let Some(a) = auth {
            headers.insert(0, json!({"Name": "Authentication-Results", "Value": a}));
        }
        json!({
            "From": from, "FromFull": {"Email": from, "Name": "", "MailboxHash": ""},
            "To": "support@inbound.acme.test", "Subject": "Order",
            "MessageID": id, "TextBody": "Where's my order #1001?", "StrippedTextReply": "",
            "Headers": headers, "Attachments": [],
        })
    };
    let post = |body: Value| {
        app.http
            .post(app.url("/v1/inbound/email/postmark"))
            .basic_auth("postmark", Some("inbound-pass-0123"))
            .json(&body)
            .send()
    };
    let pass = "mx.postmarkapp.com; spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com; dmarc=pass header.from=example.com";
    let none = "mx.postmarkapp.com; spf=none; dkim=none; dmarc=none header.from=example.com";
    for (from, id, auth) in [
        ("ann@example.com", "m-1", Some(pass)),
        ("ann@example.com", "m-2", None),
        ("ann@example.com", "m-3", Some(none)),
    ] {
        let res = post(mail(from, id, auth)).await.unwrap();
        assert!(res.status().is_success(), "{}", res.status());
    }
    // Wait until all three tickets are finished.
    let started = Instant::now();
    loop {
        let stats: Value = app
            .http
            .get(app.url("/v1/stats"))
            .bearer_auth("admin-key-0123456789")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if stats["tickets"] == 3 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = shop.seen();
    assert_eq!(
        seen.len(),
        1,
        "only the authenticated sender is looked up: {seen:?}"
    );
    assert_eq!(seen[0].query["email"], "ann@example.com");
    app.stop().await;
}
