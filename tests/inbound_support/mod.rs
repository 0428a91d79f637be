//! Signing inbound deliveries the way each vendor does, for the inbound
//! tests (an independent implementation of each documented scheme, so a
//! test passes only if deskhand verifies exactly that scheme).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use deskhand::ingest::InboundSettings;
use deskhand::ingest::settings::{
    BasicAuthSettings, FreshdeskSettings, MailgunSettings, SendgridSettings, SesSettings,
    SigningSecret,
};
use deskhand::secret::Secret;
use hmac::{Hmac, Mac};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::json;

pub const SECRET: &str = "test-secret-0123456789";
pub const USER: &str = "deskhand";
pub const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:deskhand-inbound";
pub const CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem";

/// The key SendGrid's security policy would sign with (fixed, so the
/// committed fixtures stay valid; ECDSA here is deterministic, RFC 6979).
pub fn sendgrid_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap()
}

/// Its public key as SendGrid's API returns it: base64 DER SPKI.
pub fn sendgrid_public_key() -> String {
    use p256::pkcs8::EncodePublicKey;
    STANDARD.encode(
        sendgrid_key()
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes(),
    )
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/inbound")
}

pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every provider configured with the test secrets.
pub fn settings(test_hosts: Vec<String>, cert_pem: Option<&Path>) -> InboundSettings {
    let secret = || SigningSecret {
        secret: Secret::new(SECRET),
    };
    let basic = || BasicAuthSettings {
        username: USER.into(),
        password: Secret::new(SECRET),
    };
    InboundSettings {
        email_domain: Some("acme.test".into()),
        own_identities: vec!["bot@acme.test".into()],
        max_email_bytes: 256 * 1024,
        max_webhook_bytes: 64 * 1024,
        postmark: Some(basic()),
        sendgrid: Some(SendgridSettings {
            public_key: Some(sendgrid_public_key()),
            username: Some(USER.into()),
            password: Some(Secret::new(SECRET)),
        }),
        mailgun: Some(MailgunSettings {
            signing_key: Secret::new(SECRET),
        }),
        ses: Some(SesSettings {
            topic_arns: vec![TOPIC.into()],
            confirm_subscriptions: true,
            signing_cert_pem: cert_pem.map(Path::to_owned),
            insecure_test_hosts: test_hosts,
        }),
        zendesk: Some(secret()),
        freshdesk: Some(FreshdeskSettings {
            secret: Secret::new(SECRET),
            header: "X-Deskhand-Secret".into(),
        }),
        intercom: Some(secret()),
        helpscout: Some(secret()),
        front: Some(secret()),
        generic: Some(secret()),
        mime: Some(secret()),
        ..InboundSettings::default()
    }
}

fn hmac256(parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn hmac1(body: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<sha1::Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// A request ready to post.
#[derive(Clone, Debug)]
pub struct Req {
    pub channel: &'static str,
    pub provider: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn path(&self) -> String {
        format!("/v1/inbound/{}/{}", self.channel, self.provider)
    }

    pub fn header_map(&self) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        for (k, v) in &self.headers {
            h.append(
                axum::http::HeaderName::try_from(k.as_str()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
    }
}

pub fn channel_of(provider: &str) -> &'static str {
    match provider {
        "mime" | "postmark" | "mailgun" | "sendgrid" | "ses" => "email",
        _ => "helpdesk",
    }
}

/// The SNS envelope around `message`, signed with the test key.
pub fn sns_envelope(
    kind: &str,
    message: &str,
    ts: DateTime<Utc>,
    version: &str,
    subscribe_url: Option<&str>,
    cert_url: &str,
) -> Vec<u8> {
    let id = format!("{:x}", md5ish(message.as_bytes()));
    let timestamp = ts.to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut signed = format!("Message\n{message}\nMessageId\n{id}\n");
    if let Some(url) = subscribe_url {
        signed.push_str(&format!("SubscribeURL\n{url}\nTimestamp\n{timestamp}\nToken\ntok-123\nTopicArn\n{TOPIC}\nType\n{kind}\n"));
    } else {
        signed.push_str(&format!(
            "Timestamp\n{timestamp}\nTopicArn\n{TOPIC}\nType\n{kind}\n"
        ));
    }
    let pem = std::fs::read_to_string(fixtures().join("ses/test-signing-key.pem")).unwrap();
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
    let sig = match version {
        "1" => SigningKey::<sha1::Sha1>::new(key)
            .sign(signed.as_bytes())
            .to_vec(),
        _ => SigningKey::<sha2::Sha256>::new(key)
            .sign(signed.as_bytes())
            .to_vec(),
    };
    let mut v = json!({
        "Type": kind, "MessageId": id, "TopicArn": TOPIC, "Message": message, "Timestamp": timestamp,
        "SignatureVersion": version, "Signature": STANDARD.encode(sig), "SigningCertURL": cert_url,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
    });
    if let Some(url) = subscribe_url {
        v["SubscribeURL"] = json!(url);
        v["Token"] = json!("tok-123");
    }
    serde_json::to_vec_pretty(&v).unwrap()
}

fn md5ish(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, c| {
        (h ^ *c as u64).wrapping_mul(0x100000001b3)
    })
}

/// Signs `payload` for `provider` at `ts`, as the vendor would.
pub fn signed(provider: &'static str, payload: &[u8], ts: DateTime<Utc>) -> Req {
    let secs = ts.timestamp().to_string();
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut body = payload.to_vec();
    let basic = format!("Basic {}", STANDARD.encode(format!("{USER}:{SECRET}")));
    match provider {
        "mime" | "generic" => {
            headers.push(("X-Deskhand-Timestamp".into(), secs.clone()));
            headers.push((
                "X-Deskhand-Signature".into(),
                format!(
                    "sha256={}",
                    hex::encode(hmac256(&[secs.as_bytes(), payload]))
                ),
            ));
            headers.push((
                "Content-Type".into(),
                if provider == "mime" {
                    "message/rfc822"
                } else {
                    "application/json"
                }
                .into(),
            ));
        }
        "postmark" => {
            headers.push(("Authorization".into(), basic));
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        "sendgrid" => {
            use p256::ecdsa::signature::Signer as _;
            let signed = [secs.as_bytes(), payload].concat();
            let signature: p256::ecdsa::Signature = sendgrid_key().sign(&signed);
            headers.push((
                "X-Twilio-Email-Event-Webhook-Signature".into(),
                STANDARD.encode(signature.to_der().as_bytes()),
            ));
            headers.push((
                "X-Twilio-Email-Event-Webhook-Timestamp".into(),
                secs.clone(),
            ));
            headers.push(("Authorization".into(), basic));
            let ct = String::from_utf8(fixture("sendgrid/parse-raw.content-type")).unwrap();
            headers.push(("Content-Type".into(), ct.trim().into()));
        }
        "mailgun" => {
            let token = format!("tok{}", md5ish(payload));
            let sig = hex::encode(hmac256(&[secs.as_bytes(), token.as_bytes()]));
            body.extend_from_slice(
                format!("&timestamp={secs}&token={token}&signature={sig}").as_bytes(),
            );
            headers.push((
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
        }
        "ses" => {
            body = sns_envelope(
                "Notification",
                std::str::from_utf8(payload).unwrap(),
                ts,
                "2",
                None,
                CERT_URL,
            );
            headers.push(("Content-Type".into(), "text/plain; charset=UTF-8".into()));
            headers.push(("x-amz-sns-message-type".into(), "Notification".into()));
        }
        "zendesk" => {
            let t = ts.to_rfc3339_opts(SecondsFormat::Secs, true);
            headers.push((
                "X-Zendesk-Webhook-Signature".into(),
                STANDARD.encode(hmac256(&[t.as_bytes(), payload])),
            ));
            headers.push(("X-Zendesk-Webhook-Signature-Timestamp".into(), t));
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        "freshdesk" => {
            headers.push(("X-Deskhand-Secret".into(), SECRET.into()));
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        "intercom" => {
            headers.push((
                "X-Hub-Signature".into(),
                format!("sha1={}", hex::encode(hmac1(payload))),
            ));
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        "helpscout" => {
            headers.push((
                "X-HelpScout-Signature".into(),
                STANDARD.encode(hmac1(payload)),
            ));
            headers.push((
                "X-HelpScout-Event".into(),
                "convo.customer.reply.created".into(),
            ));
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        "front" => {
            let ms = ts.timestamp_millis().to_string();
            headers.push((
                "X-Front-Signature".into(),
                STANDARD.encode(hmac256(&[ms.as_bytes(), b":", payload])),
            ));
            headers.push(("X-Front-Request-Timestamp".into(), ms));
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        other => panic!("no signer for {other}"),
    }
    Req {
        channel: channel_of(provider),
        provider,
        headers,
        body,
    }
}

/// The happy-path payload of each provider.
pub fn payload(provider: &str) -> Vec<u8> {
    match provider {
        "mime" => fixture("email/gmail-reply.eml"),
        "postmark" => fixture("postmark/inbound.json"),
        "mailgun" => fixture("mailgun/route.form"),
        "sendgrid" => fixture("sendgrid/parse-raw.multipart"),
        "ses" => fixture("ses/received.json"),
        "zendesk" => fixture("zendesk/comment.json"),
        "freshdesk" => fixture("freshdesk/ticket-created.json"),
        "generic" => fixture("generic/message.json"),
        "intercom" => fixture("intercom/user-replied.json"),
        "helpscout" => fixture("helpscout/customer-reply.json"),
        "front" => fixture("front/inbound.json"),
        other => panic!("no payload for {other}"),
    }
}

/// [`payload`], with the event times Intercom and Help Scout payloads
/// carry set to now (deliveries older than `inbound.max_event_age_hours`
/// are refused as replays; the fixtures date from 2024).
pub fn fresh_payload(provider: &str) -> Vec<u8> {
    let raw = payload(provider);
    let now = Utc::now();
    let mut v: serde_json::Value = match provider {
        "intercom" | "helpscout" => serde_json::from_slice(&raw).unwrap(),
        _ => return raw,
    };
    if provider == "intercom" {
        v["created_at"] = json!(now.timestamp());
        v["first_sent_at"] = json!(now.timestamp());
    } else {
        // Keep the threads' order: newest first, a minute apart.
        for (i, t) in v["_embedded"]["threads"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .enumerate()
        {
            let at = now - chrono::Duration::minutes(i as i64);
            t["createdAt"] = json!(at.to_rfc3339_opts(SecondsFormat::Secs, true));
        }
    }
    serde_json::to_vec_pretty(&v).unwrap()
}

pub const PROVIDERS: &[&str] = &[
    "mime",
    "postmark",
    "mailgun",
    "sendgrid",
    "ses",
    "zendesk",
    "freshdesk",
    "generic",
    "intercom",
    "helpscout",
    "front",
];

/// Providers whose signature covers a timestamp (the others have none).
pub const TIMESTAMPED: &[&str] = &[
    "mime", "mailgun", "sendgrid", "ses", "zendesk", "generic", "front",
];

/// The same request with its authenticity broken: a changed body byte
/// after signing, or wrong credentials where nothing covers the body.
pub fn tampered(mut req: Req) -> Req {
    match req.provider {
        "postmark" => {
            req.set(
                "Authorization",
                &format!("Basic {}", STANDARD.encode(format!("{USER}:wrong"))),
            );
        }
        "freshdesk" => req.set("X-Deskhand-Secret", "wrong-secret"),
        "mailgun" => {
            let s = String::from_utf8(req.body.clone()).unwrap();
            req.body = s.replace("signature=", "signature=00").into_bytes();
        }
        _ => {
            let s = String::from_utf8_lossy(&req.body).into_owned();
            let pos = s
                .find("Ann")
                .or(s.find("order"))
                .or(s.find("Two-factor"))
                .expect("a word to tamper with");
            let mut b = req.body.clone();
            b[pos] = b'E';
            req.body = b;
        }
    }
    req
}
