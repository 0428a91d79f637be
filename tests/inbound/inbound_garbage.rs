//! Every inbound parser fed garbage: random bytes, every truncation of
//! the fixtures, huge headers and deep nesting. None may panic or take
//! long; each must answer Ok or a typed error. (The fuzz targets in
//! `fuzz/` go further; these run in CI.)

use crate::inbound_support;

use std::time::Instant;

use chrono::Utc;
use deskhand::domain::Provider;
use deskhand::ingest::email::{self, mailgun, mime, postmark, sendgrid, ses};
use deskhand::ingest::helpdesk::{self, front, helpscout, intercom, template};
use deskhand::ingest::{Context, InboundSettings, sns, text};
use inbound_support::*;

fn all_parsers(data: &[u8]) {
    let settings = InboundSettings::default();
    let ctx = Context {
        settings: &settings,
        now: Utc::now(),
        max_text_chars: 4000,
        reply_tokens: None,
    };
    if let Ok(e) = mime::parse(data) {
        let _ = email::normalize(Provider::Mime, e, &ctx);
    }
    if let Ok(e) = postmark::parse(data) {
        let _ = email::normalize(Provider::Postmark, e, &ctx);
    }
    for ct in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=deskhandTestBoundary7MA4YWxkTrZu0gW",
    ] {
        if let Ok(form) = mailgun::form(ct, data)
            && let Ok(e) = mailgun::parse(&form)
        {
            let _ = email::normalize(Provider::Mailgun, e, &ctx);
        }
        if let Ok(e) = sendgrid::parse(ct, data) {
            let _ = email::normalize(Provider::Sendgrid, e, &ctx);
        }
    }
    if let Ok(env) = sns::Envelope::parse(data) {
        let _ = env.string_to_sign();
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(ses::Parsed::Mail(m)) = ses::parse(s) {
            let _ = email::normalize(Provider::Ses, *m, &ctx);
        }
        let _ = text::strip_reply(s, Some("Ann Lee"));
        let _ = text::html_to_text(s);
    }
    let parsed = [
        template::parse(data, "t", || "k".into()),
        intercom::parse(data),
        helpscout::parse(Some("convo.customer.reply.created"), data),
        front::parse(data),
    ];
    for p in parsed.into_iter().flatten() {
        if let helpdesk::Parsed::Event(e) = p {
            let _ = helpdesk::normalize(Provider::Generic, *e, &ctx);
        }
    }
}

/// xorshift: deterministic, so a failure reproduces.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn random_bytes_never_panic() {
    for seed in 0..300u64 {
        all_parsers(&random_bytes(seed, (seed as usize * 37) % 4096));
    }
}

#[test]
fn every_truncation_of_every_fixture_is_handled() {
    let t = Instant::now();
    for provider in PROVIDERS {
        let body = payload(provider);
        let step = (body.len() / 200).max(1);
        for cut in (0..body.len()).step_by(step) {
            all_parsers(&body[..cut]);
        }
    }
    assert!(t.elapsed().as_secs() < 120, "{:?}", t.elapsed());
}

#[test]
fn huge_headers_and_deep_nesting_are_bounded() {
    let t = Instant::now();
    let mut huge = String::from("From: a@b.co\r\nSubject: ");
    huge.push_str(&"x".repeat(2_000_000));
    huge.push_str("\r\nReferences: ");
    huge.push_str(&"<r@x> ".repeat(100_000));
    huge.push_str("\r\n\r\nhi\r\n");
    all_parsers(huge.as_bytes());
    let many = "X-H: v\r\n".repeat(200_000) + "From: a@b.co\r\n\r\nhi";
    all_parsers(many.as_bytes());
    let nested = "Content-Type: multipart/mixed; boundary=a\r\nFrom: a@b.co\r\n\r\n".to_owned()
        + &"--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n".repeat(5_000);
    all_parsers(nested.as_bytes());
    all_parsers(&"[".repeat(100_000).into_bytes());
    all_parsers(&"{\"a\":".repeat(50_000).into_bytes());
    all_parsers(&"<blockquote>".repeat(50_000).into_bytes());
    assert!(t.elapsed().as_secs() < 120, "{:?}", t.elapsed());
}
