//! A shop double for the actions tests: a real HTTP server speaking three
//! dialects, each checking method, path, auth and query like the real one:
//!
//! * a generic shop API: `GET /api/orders/{n}?email=` (Bearer token) →
//!   `{"order": {...}}` or 404 when the number is unknown or the email is
//!   not the order's; `POST /api/orders/{n}/cancel?email=` records a cancel;
//! * Shopify Admin GraphQL: `POST /admin/api/2025-01/graphql.json` with
//!   `X-Shopify-Access-Token`, the `orders(first:, query:)` connection
//!   filtered by `name:#N AND email:"…"`, answering
//!   `{"data":{"orders":{"nodes":[…]}}}` (the documented shape);
//! * WooCommerce REST v3: `GET /wp-json/wc/v3/orders?search=` with
//!   `consumer_key`/`consumer_secret`, answering an array of orders whose
//!   fields contain the search term (as WooCommerce's search does).
//!
//! It can be switched down (503) or slow. Test double of a remote service;
//! never used outside tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const TOKEN: &str = "shop-token-0123456789";
pub const SHOPIFY_TOKEN: &str = "shpat_0123456789abcdef";
pub const WOO_KEY: &str = "ck_0123456789";
pub const WOO_SECRET: &str = "cs_0123456789";

/// One order in the shop.
#[derive(Clone, Debug)]
pub struct Order {
    pub number: u32,
    pub email: &'static str,
    pub status: &'static str,
    pub tracking_url: &'static str,
    pub eta: &'static str,
}

pub fn orders() -> Vec<Order> {
    vec![
        Order {
            number: 1001,
            email: "ann@example.com",
            status: "shipped",
            tracking_url: "https://track.example/1Z1001",
            eta: "2026-12-05",
        },
        Order {
            number: 1002,
            email: "bob@example.com",
            status: "processing",
            tracking_url: "https://track.example/1Z1002",
            eta: "2026-12-09",
        },
        Order {
            number: 11001,
            email: "carol@example.com",
            status: "delivered",
            tracking_url: "https://track.example/1Z11001",
            eta: "2026-11-20",
        },
    ]
}

/// A request as the shop saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub authorized: bool,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    cancelled: Mutex<Vec<u32>>,
    down: Mutex<bool>,
    delay: Mutex<Duration>,
}

#[derive(Clone)]
pub struct Shop {
    pub addr: SocketAddr,
    state: Arc<Shared>,
}

impl Shop {
    pub async fn start() -> Self {
        let state = Arc::new(Shared::default());
        let app = Router::new()
            .route("/api/orders/{n}", get(generic_get))
            .route("/api/orders/{n}/cancel", post(generic_cancel))
            .route("/admin/api/2025-01/graphql.json", post(shopify))
            .route("/wp-json/wc/v3/orders", get(woo))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn cancelled(&self) -> Vec<u32> {
        self.state.cancelled.lock().unwrap().clone()
    }

    pub fn set_down(&self, down: bool) {
        *self.state.down.lock().unwrap() = down;
    }

    pub fn set_delay(&self, d: Duration) {
        *self.state.delay.lock().unwrap() = d;
    }
}

async fn gate(s: &Shared, seen: Seen) -> Option<Response> {
    let authorized = seen.authorized;
    s.seen.lock().unwrap().push(seen);
    let delay = *s.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if *s.down.lock().unwrap() {
        return Some((StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response());
    }
    if !authorized {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "unauthorized"})),
            )
                .into_response(),
        );
    }
    None
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn generic_get(
    State(s): State<Arc<Shared>>,
    Path(n): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    let seen = Seen {
        method: "GET".into(),
        path: format!("/api/orders/{n}"),
        authorized: header(&h, "authorization").as_deref() == Some(&format!("Bearer {TOKEN}")),
        query: q.clone(),
    };
    if let Some(r) = gate(&s, seen).await {
        return r;
    }
    let email = q.get("email").cloned().unwrap_or_default();
    match orders()
        .into_iter()
        .find(|o| o.number.to_string() == n && o.email.eq_ignore_ascii_case(&email))
    {
        Some(o) => axum::Json(json!({
            "order": {
                "number": o.number,
                "email": o.email,
                "status": o.status,
                "tracking_url": o.tracking_url,
                "estimated_delivery": o.eta,
                "billing_address": "1 Secret Street",
                "payment": {"card_last4": "4242"},
            }
        }))
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "not found"})),
        )
            .into_response(),
    }
}

async fn generic_cancel(
    State(s): State<Arc<Shared>>,
    Path(n): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    let seen = Seen {
        method: "POST".into(),
        path: format!("/api/orders/{n}/cancel"),
        authorized: header(&h, "authorization").as_deref() == Some(&format!("Bearer {TOKEN}")),
        query: q.clone(),
    };
    if let Some(r) = gate(&s, seen).await {
        return r;
    }
    let email = q.get("email").cloned().unwrap_or_default();
    match orders()
        .into_iter()
        .find(|o| o.number.to_string() == n && o.email.eq_ignore_ascii_case(&email))
    {
        Some(o) => {
            s.cancelled.lock().unwrap().push(o.number);
            axum::Json(json!({"order": {"number": o.number, "status": "cancelled"}}))
                .into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "not found"})),
        )
            .into_response(),
    }
}

/// `name:#1001 AND email:"ann@example.com"` → (name, email).
fn shopify_filter(q: &str) -> Option<(String, String)> {
    let (name, rest) = q.trim().strip_prefix("name:")?.split_once(" AND ")?;
    let email = rest.strip_prefix("email:")?.trim_matches('"');
    Some((name.to_owned(), email.to_owned()))
}

async fn shopify(State(s): State<Arc<Shared>>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    let seen = Seen {
        method: "POST".into(),
        path: "/admin/api/2025-01/graphql.json".into(),
        authorized: header(&h, "x-shopify-access-token").as_deref() == Some(SHOPIFY_TOKEN)
            && header(&h, "content-type").is_some_and(|c| c.starts_with("application/json")),
        query: HashMap::new(),
    };
    if let Some(r) = gate(&s, seen).await {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "bad json").into_response();
    };
    let query = req["query"].as_str().unwrap_or_default();
    if !query.contains("orders(first:") {
        return axum::Json(json!({"errors": [{"message": "Field 'order' doesn't exist"}]}))
            .into_response();
    }
    let Some((name, email)) = req["variables"]["q"].as_str().and_then(shopify_filter) else {
        return axum::Json(json!({"data": {"orders": {"nodes": []}}})).into_response();
    };
    let nodes: Vec<Value> = orders()
        .into_iter()
        .filter(|o| format!("#{}", o.number) == name && o.email.eq_ignore_ascii_case(&email))
        .map(|o| {
            json!({
                "name": format!("#{}", o.number),
                "email": o.email,
                "displayFulfillmentStatus": o.status.to_uppercase(),
                "fulfillments": [{
                    "trackingInfo": [{"number": format!("1Z{}", o.number), "url": o.tracking_url}],
                    "estimatedDeliveryAt": format!("{}T12:00:00Z", o.eta),
                }],
            })
        })
        .collect();
    axum::Json(json!({"data": {"orders": {"nodes": nodes}}, "extensions": {"cost": {"requestedQueryCost": 5}}}))
        .into_response()
}

async fn woo(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let seen = Seen {
        method: "GET".into(),
        path: "/wp-json/wc/v3/orders".into(),
        authorized: q.get("consumer_key").map(String::as_str) == Some(WOO_KEY)
            && q.get("consumer_secret").map(String::as_str) == Some(WOO_SECRET),
        query: q.clone(),
    };
    if let Some(r) = gate(&s, seen).await {
        return r;
    }
    let term = q.get("search").cloned().unwrap_or_default();
    // WooCommerce's search matches any field: 1001 also finds 11001.
    let found: Vec<Value> = orders()
        .into_iter()
        .filter(|o| {
            !term.is_empty() && (o.number.to_string().contains(&term) || o.email.contains(&term))
        })
        .rev()
        .map(|o| {
            json!({
                "id": 700 + o.number,
                "number": o.number.to_string(),
                "status": o.status,
                "currency": "EUR",
                "total": "42.00",
                "billing": {"first_name": "X", "email": o.email, "phone": "555-0100"},
                "shipping": {"address_1": "1 Secret Street"},
            })
        })
        .collect();
    axum::Json(Value::Array(found)).into_response()
}
