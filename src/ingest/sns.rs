//! Amazon SNS HTTP(S) deliveries: the message envelope, its signature
//! (SignatureVersion 1 = SHA1withRSA, 2 = SHA256withRSA over the
//! documented "string to sign"), and the checks on the URLs SNS sends
//! (SigningCertURL and SubscribeURL must be HTTPS on
//! `sns.<region>.amazonaws.com`, the region of the topic).
//!
//! The certificate is fetched by the caller (see [`crate::ingest::Inbound`]),
//! so everything here is pure.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsa::RsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde::Deserialize;
use x509_cert::der::{DecodePem, Encode};

use super::IngestError;

/// The message types SNS posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A published message.
    Notification,
    /// Confirm the subscription by fetching SubscribeURL.
    SubscriptionConfirmation,
    /// The subscription was deleted.
    UnsubscribeConfirmation,
}

/// An SNS envelope; field names as SNS sends them.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Envelope {
    #[serde(rename = "Type")]
    pub kind_raw: String,
    pub message_id: String,
    pub topic_arn: String,
    #[serde(default)]
    pub subject: Option<String>,
    pub message: String,
    pub timestamp: String,
    pub signature_version: String,
    pub signature: String,
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(rename = "SubscribeURL", default)]
    pub subscribe_url: Option<String>,
}

impl Envelope {
    /// Parses the POSTed JSON.
    pub fn parse(body: &[u8]) -> Result<Self, IngestError> {
        serde_json::from_slice(body).map_err(|e| super::json_error("SNS message", &e))
    }

    /// Its type.
    pub fn kind(&self) -> Result<Kind, IngestError> {
        match self.kind_raw.as_str() {
            "Notification" => Ok(Kind::Notification),
            "SubscriptionConfirmation" => Ok(Kind::SubscriptionConfirmation),
            "UnsubscribeConfirmation" => Ok(Kind::UnsubscribeConfirmation),
            other => Err(IngestError::Malformed(format!(
                "SNS `Type` is {:?}; expected Notification, SubscriptionConfirmation or UnsubscribeConfirmation",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }

    /// The region in the topic ARN (`arn:aws:sns:REGION:ACCOUNT:NAME`).
    pub fn region(&self) -> Result<&str, IngestError> {
        let parts: Vec<&str> = self.topic_arn.split(':').collect();
        match parts.as_slice() {
            ["arn", _, "sns", region, _, _] if !region.is_empty() => Ok(region),
            _ => Err(IngestError::Malformed(
                "SNS `TopicArn` is not an SNS topic ARN".into(),
            )),
        }
    }

    /// The string SNS signs: `Key\nValue\n` for the documented keys of
    /// this message type, in byte order; `Subject` only when present.
    pub fn string_to_sign(&self) -> Result<String, IngestError> {
        let mut s = String::new();
        let mut add = |k: &str, v: &str| {
            s.push_str(k);
            s.push('\n');
            s.push_str(v);
            s.push('\n');
        };
        match self.kind()? {
            Kind::Notification => {
                add("Message", &self.message);
                add("MessageId", &self.message_id);
                if let Some(subject) = &self.subject {
                    add("Subject", subject);
                }
                add("Timestamp", &self.timestamp);
                add("TopicArn", &self.topic_arn);
                add("Type", &self.kind_raw);
            }
            Kind::SubscriptionConfirmation | Kind::UnsubscribeConfirmation => {
                let missing = |f: &str| {
                    IngestError::Malformed(format!("SNS {} without `{f}`", self.kind_raw))
                };
                add("Message", &self.message);
                add("MessageId", &self.message_id);
                add(
                    "SubscribeURL",
                    self.subscribe_url
                        .as_deref()
                        .ok_or_else(|| missing("SubscribeURL"))?,
                );
                add("Timestamp", &self.timestamp);
                add(
                    "Token",
                    self.token.as_deref().ok_or_else(|| missing("Token"))?,
                );
                add("TopicArn", &self.topic_arn);
                add("Type", &self.kind_raw);
            }
        }
        Ok(s)
    }

    /// Verifies the signature with the signing certificate's key.
    pub fn verify(&self, key: &RsaPublicKey) -> Result<(), IngestError> {
        let signed = self.string_to_sign()?;
        let sig = STANDARD
            .decode(self.signature.trim())
            .map_err(|_| IngestError::InvalidSignature("SNS `Signature` is not base64".into()))?;
        let sig = Signature::try_from(sig.as_slice())
            .map_err(|_| IngestError::InvalidSignature("SNS `Signature` is malformed".into()))?;
        let ok = match self.signature_version.as_str() {
            "1" => VerifyingKey::<sha1::Sha1>::new(key.clone()).verify(signed.as_bytes(), &sig),
            "2" => VerifyingKey::<sha2::Sha256>::new(key.clone()).verify(signed.as_bytes(), &sig),
            other => {
                return Err(IngestError::InvalidSignature(format!(
                    "SNS SignatureVersion {:?} is not supported (1 or 2)",
                    other.chars().take(8).collect::<String>()
                )));
            }
        };
        ok.map_err(|_| {
            IngestError::InvalidSignature("the SNS signature does not match the message".into())
        })
    }
}

/// Checks that `url` is HTTPS on `sns.<region>.amazonaws.com` (or
/// `.amazonaws.com.cn`), or plain HTTP on one of `test_hosts`.
pub fn check_url(
    url: &str,
    region: &str,
    what: &str,
    test_hosts: &[String],
) -> Result<(), IngestError> {
    let bad = |why: &str| IngestError::InvalidSignature(format!("{what} {why}"));
    let parsed = reqwest::Url::parse(url).map_err(|_| bad("is not a URL"))?;
    let host = parsed.host_str().ok_or_else(|| bad("has no host"))?;
    let authority = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    if test_hosts.iter().any(|h| h == &authority) && matches!(parsed.scheme(), "http" | "https") {
        return Ok(());
    }
    if parsed.scheme() != "https" {
        return Err(bad("is not HTTPS"));
    }
    if parsed.port().is_some_and(|p| p != 443)
        || parsed.username() != ""
        || parsed.password().is_some()
    {
        return Err(bad("has an unexpected port or user"));
    }
    let ok = [
        format!("sns.{region}.amazonaws.com"),
        format!("sns.{region}.amazonaws.com.cn"),
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(host));
    if !ok {
        return Err(bad(&format!(
            "is on host {host:?}, not sns.{region}.amazonaws.com"
        )));
    }
    Ok(())
}

/// The RSA key of a PEM certificate.
pub fn key_from_pem(pem: &[u8]) -> Result<RsaPublicKey, String> {
    let cert =
        x509_cert::Certificate::from_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| format!("bad public key info: {e}"))?;
    RsaPublicKey::from_public_key_der(&spki).map_err(|e| format!("not an RSA key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(kind: &str) -> Envelope {
        Envelope {
            kind_raw: kind.into(),
            message_id: "m".into(),
            topic_arn: "arn:aws:sns:eu-west-1:123456789012:inbound".into(),
            subject: None,
            message: "hi".into(),
            timestamp: "2024-01-01T00:00:00.000Z".into(),
            signature_version: "1".into(),
            signature: String::new(),
            signing_cert_url: String::new(),
            token: Some("tok".into()),
            subscribe_url: Some(
                "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription".into(),
            ),
        }
    }

    #[test]
    fn strings_to_sign_follow_the_documented_field_order() {
        let mut n = envelope("Notification");
        assert_eq!(
            n.string_to_sign().unwrap(),
            "Message\nhi\nMessageId\nm\nTimestamp\n2024-01-01T00:00:00.000Z\nTopicArn\narn:aws:sns:eu-west-1:123456789012:inbound\nType\nNotification\n"
        );
        n.subject = Some("s".into());
        assert!(
            n.string_to_sign()
                .unwrap()
                .contains("MessageId\nm\nSubject\ns\nTimestamp")
        );
        let c = envelope("SubscriptionConfirmation");
        assert!(c.string_to_sign().unwrap().contains("SubscribeURL\nhttps://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription\nTimestamp\n2024-01-01T00:00:00.000Z\nToken\ntok\nTopicArn"));
        assert_eq!(n.region().unwrap(), "eu-west-1");
    }

    #[test]
    fn urls_must_be_sns_in_the_topic_region() {
        let ok = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem";
        assert!(check_url(ok, "eu-west-1", "cert", &[]).is_ok());
        for bad in [
            "http://sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com.evil.com/x.pem",
            "https://evil.com/sns.eu-west-1.amazonaws.com/x.pem",
            "https://user@sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
            "not a url",
        ] {
            assert!(check_url(bad, "eu-west-1", "cert", &[]).is_err(), "{bad}");
        }
        assert!(
            check_url(
                "http://127.0.0.1:9/x.pem",
                "eu-west-1",
                "cert",
                &["127.0.0.1:9".into()]
            )
            .is_ok()
        );
    }
}
