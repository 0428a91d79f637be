//! Shop presets: an `[[actions]]` entry with `preset = "shopify"` or
//! `"woocommerce"` and a `shop_url` gets the method, URL, body, expose
//! paths and ownership checks of an order lookup by number and email, so
//! the user writes no URL. Anything the entry sets itself wins.
//!
//! Shapes, from the vendors' references:
//! * Shopify Admin GraphQL (`POST {shop}/admin/api/2025-01/graphql.json`,
//!   header `X-Shopify-Access-Token`): the `orders(first:, query:)`
//!   connection filtered with the search syntax `name:#1001 AND
//!   email:"a@b.c"`; the response is `{"data":{"orders":{"nodes":[{name,
//!   email, displayFulfillmentStatus, fulfillments:[{trackingInfo:[{number,
//!   url}], estimatedDeliveryAt}]}]}}}`. No order → an empty `nodes`.
//! * WooCommerce REST v3 (`GET {shop}/wp-json/wc/v3/orders?search=1001`,
//!   consumer key and secret as query parameters over HTTPS): an array of
//!   orders with `number` (a string), `status` and `billing.email`. Search
//!   matches any field (1001 also finds 11001), so the order kept is the
//!   first whose number and billing address are the customer's
//!   (`/*/…` pointers with `require`); none → "not found".
//!   WooCommerce core keeps no tracking link; shipment-tracking plugins
//!   differ, so only the status is exposed.
//!
//! Secrets the presets use: `shopify_token`; `woocommerce_key` and
//! `woocommerce_secret` (in `[action_secrets]`).

use std::collections::BTreeMap;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::spec::{ActionSpec, IdentityNeed, Method, ParamSpec};

/// A known shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Shopify Admin GraphQL.
    Shopify,
    /// WooCommerce REST v3.
    Woocommerce,
}

/// The Shopify Admin API version the preset speaks.
pub const SHOPIFY_API_VERSION: &str = "2025-01";

/// The GraphQL document of the Shopify preset.
pub const SHOPIFY_ORDER_QUERY: &str = "query OrderStatus($q: String!) { orders(first: 1, query: $q) { nodes { name email displayFulfillmentStatus fulfillments(first: 1) { trackingInfo(first: 1) { number url } estimatedDeliveryAt } } } }";

impl Preset {
    /// `spec` with the preset's defaults filled in.
    pub fn apply(self, spec: &ActionSpec) -> anyhow::Result<ActionSpec> {
        let shop = spec
            .shop_url
            .as_deref()
            .map(|s| s.trim_end_matches('/').to_owned())
            .with_context(|| format!("action {}: preset needs shop_url", spec.name))?;
        let mut out = spec.clone();
        let set = |m: &mut BTreeMap<String, String>, k: &str, v: &str| {
            m.entry(k.to_owned()).or_insert_with(|| v.to_owned());
        };
        if out.description.is_empty() {
            out.description = "Look up an order's status and tracking by order number".into();
        }
        if out.intent.is_empty() {
            out.intent = [
                "order", "package", "parcel", "delivery", "tracking", "shipped",
            ]
            .map(String::from)
            .into();
        }
        if spec.identity == IdentityNeed::None {
            // An order is personal data: a preset never serves it to anyone.
            out.identity = IdentityNeed::VerifiedEmail;
        }
        out.params
            .entry("order_number".into())
            .or_insert_with(|| ParamSpec {
                pattern: r"#\s?(\d{3,12})\b|\border\s+(?:number\s+|no\.?\s*)?(\d{3,12})\b".into(),
                description: "The order number".into(),
                ask: None,
            });
        match self {
            Preset::Shopify => {
                out.method = Method::Post;
                out.write = Some(spec.write.unwrap_or(false));
                if out.url.is_empty() {
                    out.url = format!("{shop}/admin/api/{SHOPIFY_API_VERSION}/graphql.json");
                }
                set(
                    &mut out.headers,
                    "X-Shopify-Access-Token",
                    "${secret:shopify_token}",
                );
                if out.body.is_none() {
                    out.body = Some(json!({
                        "query": SHOPIFY_ORDER_QUERY.replace('{', "{{").replace('}', "}}"),
                        "variables": {"q": "name:#{order_number} AND email:\"{customer.email}\""},
                    }));
                }
                let n = "/data/orders/nodes/0";
                set(
                    &mut out.expose,
                    "status",
                    &format!("{n}/displayFulfillmentStatus"),
                );
                set(
                    &mut out.expose,
                    "tracking_url",
                    &format!("{n}/fulfillments/0/trackingInfo/0/url"),
                );
                set(
                    &mut out.expose,
                    "eta",
                    &format!("{n}/fulfillments/0/estimatedDeliveryAt"),
                );
                set(&mut out.require, &format!("{n}/email"), "{customer.email}");
                set(&mut out.require, &format!("{n}/name"), "#{order_number}");
            }
            Preset::Woocommerce => {
                out.method = Method::Get;
                if out.url.is_empty() {
                    out.url = format!("{shop}/wp-json/wc/v3/orders");
                }
                set(&mut out.query, "search", "{order_number}");
                set(&mut out.query, "consumer_key", "${secret:woocommerce_key}");
                set(
                    &mut out.query,
                    "consumer_secret",
                    "${secret:woocommerce_secret}",
                );
                set(&mut out.expose, "status", "/*/status");
                set(&mut out.require, "/*/number", "{order_number}");
                set(&mut out.require, "/*/billing/email", "{customer.email}");
            }
        }
        if out.reply.template.is_empty() {
            out.reply.template = match self {
                Preset::Shopify => {
                    "Order #{order_number} is {status}. Tracking: {tracking_url}".into()
                }
                Preset::Woocommerce => "Order #{order_number} is {status}.".into(),
            };
        }
        Ok(out)
    }
}
