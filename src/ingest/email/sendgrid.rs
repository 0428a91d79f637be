//! SendGrid Inbound Parse: `multipart/form-data`, either the raw message
//! (`email` field, the "POST the raw, full MIME message" setting, which
//! deskhand recommends) or SendGrid's parsed fields.
//!
//! Authenticated as SendGrid documents it ("Securing your Inbound Parse
//! Webhooks"): a security policy's ECDSA signature (P-256, SHA-256, DER,
//! base64 in `X-Twilio-Email-Event-Webhook-Signature`) over the
//! `X-Twilio-Email-Event-Webhook-Timestamp` value followed by the raw body,
//! checked with the policy's public key; and/or HTTP Basic credentials in
//! the destination URL. Whatever is configured is required.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;

use super::{Email, message_id, message_ids, mime};
use crate::domain::{Attachment, EmailAuth};
use crate::ingest::form::Form;
use crate::ingest::settings::SendgridSettings;
use crate::ingest::verify::Unit;
use crate::ingest::{IngestError, verify};

/// The signature header of a signed Inbound Parse request.
pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
/// The timestamp header it signs.
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

/// Parses the policy's public key: base64 of a DER SubjectPublicKeyInfo, as
/// SendGrid's API returns it (a PEM block is accepted too).
pub fn public_key(text: &str) -> Result<VerifyingKey, String> {
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.split_whitespace())
        .collect();
    let der = STANDARD
        .decode(body)
        .map_err(|_| "the SendGrid public key is not base64".to_owned())?;
    VerifyingKey::from_public_key_der(&der)
        .map_err(|e| format!("the SendGrid public key is not a P-256 public key: {e}"))
}

/// Checks what the section configures: the ECDSA signature within the
/// replay window, the Basic credentials, or both.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    settings: &SendgridSettings,
    now: DateTime<Utc>,
    window_secs: u64,
) -> Result<(), IngestError> {
    if let Some(key) = &settings.public_key {
        let key = public_key(key).map_err(IngestError::Unavailable)?;
        let signature = verify::required(headers, SIGNATURE_HEADER)?;
        let timestamp = verify::required(headers, TIMESTAMP_HEADER)?;
        verify::fresh(timestamp, Unit::Seconds, now, window_secs, TIMESTAMP_HEADER)?;
        let signature = STANDARD
            .decode(signature.trim())
            .ok()
            .and_then(|der| Signature::from_der(&der).ok())
            .ok_or_else(|| {
                IngestError::InvalidSignature(format!(
                    "{SIGNATURE_HEADER} is not a base64 DER ECDSA signature"
                ))
            })?;
        let mut signed = Vec::with_capacity(timestamp.len() + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.extend_from_slice(body);
        key.verify(&signed, &signature).map_err(|_| {
            IngestError::InvalidSignature(format!(
                "{SIGNATURE_HEADER} does not match the body and the policy's public key"
            ))
        })?;
    }
    if let (Some(username), Some(password)) = (&settings.username, &settings.password) {
        verify::basic_auth(headers, username, password)?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    to: Vec<String>,
}

#[derive(Deserialize)]
struct AttachmentInfo {
    filename: Option<String>,
    #[serde(rename = "type")]
    content_type: Option<String>,
}

/// Parses the form.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Email, IngestError> {
    let form = Form::parse(content_type, body)
        .map_err(|e| IngestError::Malformed(format!("SendGrid Inbound Parse form: {e}")))?;
    let envelope_to: Vec<String> = form
        .get("envelope")
        .and_then(|e| serde_json::from_str::<Envelope>(e).ok())
        .map(|e| e.to)
        .unwrap_or_default();
    // SendGrid's own checks, sent as the `SPF` and `dkim` fields.
    let auth = EmailAuth {
        spf: form.get("SPF").and_then(super::auth::verdict),
        dkim: form.get("dkim").and_then(super::auth::sendgrid_dkim),
        dmarc: None,
    };
    if let Some(raw) = form.get("email") {
        let mut email = mime::parse(raw.as_bytes())?;
        email.recipients.extend(envelope_to);
        email.auth = auth;
        return Ok(email);
    }
    let from = form.get("from").ok_or_else(|| {
        IngestError::Malformed("SendGrid form has neither `email` (raw MIME) nor `from`".into())
    })?;
    // `headers` is the raw header block of the message.
    let headers: Vec<(String, String)> = form
        .get("headers")
        .map(|block| {
            let mut out: Vec<(String, String)> = Vec::new();
            for line in block.lines() {
                if line.starts_with([' ', '\t']) {
                    if let Some(last) = out.last_mut() {
                        last.1.push(' ');
                        last.1.push_str(line.trim());
                    }
                } else if let Some((k, v)) = line.split_once(':') {
                    out.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
                if out.len() >= 500 {
                    break;
                }
            }
            out
        })
        .unwrap_or_default();
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let info: std::collections::BTreeMap<String, AttachmentInfo> = form
        .get("attachment-info")
        .and_then(|i| serde_json::from_str(i).ok())
        .unwrap_or_default();
    let attachments = form
        .files
        .iter()
        .map(|f| {
            let i = info.get(&f.field);
            Attachment {
                name: i
                    .and_then(|i| i.filename.clone())
                    .unwrap_or_else(|| f.filename.clone()),
                content_type: i
                    .and_then(|i| i.content_type.clone())
                    .unwrap_or_else(|| f.content_type.clone()),
                size: f.size,
            }
        })
        .collect();
    let mut recipients: Vec<String> = form
        .get("to")
        .into_iter()
        .chain(form.get("cc"))
        .flat_map(|v| v.split(','))
        .map(|s| super::address_of(s).to_owned())
        .collect();
    recipients.extend(envelope_to);
    Ok(Email {
        message_id: header("message-id").and_then(message_id),
        in_reply_to: header("in-reply-to").map(message_ids).unwrap_or_default(),
        references: header("references").map(message_ids).unwrap_or_default(),
        from: Some(super::address_of(from).to_owned()),
        from_name: crate::ingest::text::display_name(from).map(str::to_owned),
        recipients,
        subject: form.get("subject").map(str::to_owned),
        text: form.get("text").map(str::to_owned),
        html: form.get("html").map(str::to_owned),
        headers,
        attachments,
        mailbox_hash: None,
        auth,
    })
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    use super::*;
    use crate::secret::Secret;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9u8; 32].into()).unwrap()
    }

    fn public(k: &SigningKey) -> String {
        STANDARD.encode(k.verifying_key().to_public_key_der().unwrap().as_bytes())
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn signed(k: &SigningKey, ts: &str, body: &[u8]) -> HeaderMap {
        let signature: Signature = k.sign(&[ts.as_bytes(), body].concat());
        let mut h = HeaderMap::new();
        h.insert(
            SIGNATURE_HEADER,
            STANDARD
                .encode(signature.to_der().as_bytes())
                .parse()
                .unwrap(),
        );
        h.insert(TIMESTAMP_HEADER, ts.parse().unwrap());
        h
    }

    fn ecdsa_only() -> SendgridSettings {
        SendgridSettings {
            public_key: Some(public(&key())),
            ..SendgridSettings::default()
        }
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_does_not() {
        let s = ecdsa_only();
        let h = signed(&key(), "1700000000", b"body");
        verify(&h, b"body", &s, now(), 300).unwrap();
        assert!(matches!(
            verify(&h, b"bodY", &s, now(), 300),
            Err(IngestError::InvalidSignature(_))
        ));
        // The timestamp is signed too.
        let mut moved = h.clone();
        moved.insert(TIMESTAMP_HEADER, "1700000001".parse().unwrap());
        assert!(matches!(
            verify(&moved, b"body", &s, now(), 300),
            Err(IngestError::InvalidSignature(_))
        ));
        // Another key's signature.
        let other = SigningKey::from_bytes(&[3u8; 32].into()).unwrap();
        assert!(matches!(
            verify(
                &signed(&other, "1700000000", b"body"),
                b"body",
                &s,
                now(),
                300
            ),
            Err(IngestError::InvalidSignature(_))
        ));
    }

    #[test]
    fn missing_garbage_and_stale_signatures_are_refused() {
        let s = ecdsa_only();
        assert!(matches!(
            verify(&HeaderMap::new(), b"body", &s, now(), 300),
            Err(IngestError::MissingSignature(_))
        ));
        for garbage in ["not base64!", "AAAA", "MEUCIQ=="] {
            let mut h = signed(&key(), "1700000000", b"body");
            h.insert(SIGNATURE_HEADER, garbage.parse().unwrap());
            assert!(
                matches!(
                    verify(&h, b"body", &s, now(), 300),
                    Err(IngestError::InvalidSignature(_))
                ),
                "{garbage}"
            );
        }
        let h = signed(&key(), "1699990000", b"body");
        assert!(matches!(
            verify(&h, b"body", &s, now(), 300),
            Err(IngestError::StaleTimestamp(_))
        ));
    }

    #[test]
    fn basic_credentials_alone_or_with_the_signature() {
        let basic = SendgridSettings {
            username: Some("u".into()),
            password: Some(Secret::new("p")),
            ..SendgridSettings::default()
        };
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            format!("Basic {}", STANDARD.encode("u:p")).parse().unwrap(),
        );
        verify(&h, b"body", &basic, now(), 300).unwrap();
        // Both configured: a valid signature without the credentials fails.
        let both = SendgridSettings {
            public_key: Some(public(&key())),
            ..basic
        };
        let signed_only = signed(&key(), "1700000000", b"body");
        assert!(matches!(
            verify(&signed_only, b"body", &both, now(), 300),
            Err(IngestError::MissingSignature(_))
        ));
        let mut all = signed_only;
        all.extend(h);
        verify(&all, b"body", &both, now(), 300).unwrap();
    }

    #[test]
    fn the_section_must_configure_a_whole_check_with_a_real_key() {
        assert!(SendgridSettings::default().validate().is_err());
        let half = SendgridSettings {
            username: Some("u".into()),
            ..SendgridSettings::default()
        };
        assert!(half.validate().unwrap_err().contains("both"));
        let bad_key = SendgridSettings {
            public_key: Some("aGVsbG8=".into()),
            ..SendgridSettings::default()
        };
        assert!(bad_key.validate().unwrap_err().contains("P-256"));
        ecdsa_only().validate().unwrap();
        // The PEM form is accepted too.
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            public(&key())
        );
        public_key(&pem).unwrap();
    }
}
