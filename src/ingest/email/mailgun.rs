//! Mailgun routes (`forward("https://…/v1/inbound/email/mailgun")`): a
//! form with the parsed message (or `body-mime` when the URL asks for
//! MIME), signed as Mailgun documents: `signature` is the hex
//! HMAC-SHA256 of `timestamp` + `token` under the HTTP webhook signing key.
//!
//! The signature covers neither the message nor anything tying it to one,
//! so within the replay window one captured signature would carry any
//! body. As Mailgun documents, the token is therefore single-use: [`once`]
//! records it with a digest of the form through a [`ReplayGuard`] until
//! the signature could no longer pass the window. The same token with the
//! same form again is Mailgun retrying (accepted; the ticket id dedups
//! it); with a different form it is a replay, refused 401 `replayed_token`.
//! Keying on token and form, rather than recording the token once the
//! ticket is queued, keeps both properties without a window between check
//! and record: a retry after a failed enqueue is still accepted, and two
//! racing replays cannot both pass.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{Email, message_id, message_ids, mime};
use crate::domain::{Attachment, EmailAuth};
use crate::ingest::form::Form;
use crate::ingest::settings::MailgunSettings;
use crate::ingest::{IngestError, verify};
use crate::store::{ReplayGuard, TokenUse};

/// Extra time a token is remembered beyond the replay window, for clock
/// differences between front doors.
const TOKEN_GRACE_SECS: i64 = 60;

/// A verified delivery's one-time token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Mailgun's random token.
    pub token: String,
    /// Until when the signature passes the replay window (and so until
    /// when the token must be remembered).
    pub until: DateTime<Utc>,
    /// SHA-256 over the form's fields and file descriptions.
    pub digest: [u8; 32],
}

/// Parses the form (multipart or urlencoded).
pub fn form(content_type: &str, body: &[u8]) -> Result<Form, IngestError> {
    Form::parse(content_type, body)
        .map_err(|e| IngestError::Malformed(format!("Mailgun form: {e}")))
}

/// Checks `timestamp`, `token` and `signature`; the token is then still
/// to be spent with [`once`].
pub fn verify(
    form: &Form,
    settings: &MailgunSettings,
    now: DateTime<Utc>,
    window_secs: u64,
) -> Result<Signed, IngestError> {
    let field = |n: &str| {
        form.get(n)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                IngestError::MissingSignature(format!("the `{n}` form field is missing"))
            })
    };
    let (timestamp, token, signature) = (field("timestamp")?, field("token")?, field("signature")?);
    let expected = verify::hmac_sha256(
        settings.signing_key.expose().as_bytes(),
        &[timestamp.as_bytes(), token.as_bytes()],
    );
    verify::hex_matches(&expected, signature, "the Mailgun signature")?;
    let at = verify::fresh(
        timestamp,
        verify::Unit::Seconds,
        now,
        window_secs,
        "the Mailgun timestamp",
    )?;
    let window = chrono::Duration::seconds(i64::try_from(window_secs).unwrap_or(i64::MAX / 2));
    Ok(Signed {
        token: token.to_owned(),
        until: at + window + chrono::Duration::seconds(TOKEN_GRACE_SECS),
        digest: digest(form),
    })
}

/// A digest of what a form says: its fields and file descriptions, sorted
/// (a retry may order them differently), each length-prefixed. Not the raw
/// body: a retried multipart post has a new boundary.
pub fn digest(form: &Form) -> [u8; 32] {
    let mut fields: Vec<(&str, &str)> = form
        .fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    fields.sort_unstable();
    let mut files: Vec<String> = form
        .files
        .iter()
        .map(|f| {
            format!(
                "{}\0{}\0{}\0{}",
                f.field, f.filename, f.content_type, f.size
            )
        })
        .collect();
    files.sort_unstable();
    let mut h = Sha256::new();
    let mut put = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    for (k, v) in fields {
        put(k.as_bytes());
        put(v.as_bytes());
    }
    put(b"files");
    for f in &files {
        put(f.as_bytes());
    }
    h.finalize().into()
}

/// Spends a verified token: refuses it (`Replayed`, 401) if it already
/// came with another message; a guard that cannot answer is `Unavailable`
/// (503, Mailgun retries). Without a guard (`deskhand inspect`), nothing is
/// recorded.
pub async fn once(guard: Option<&dyn ReplayGuard>, signed: &Signed) -> Result<(), IngestError> {
    let Some(guard) = guard else {
        return Ok(());
    };
    match guard
        .use_token("mailgun", &signed.token, signed.digest, signed.until)
        .await
    {
        Ok(TokenUse::First) => Ok(()),
        Ok(TokenUse::Retry) => {
            tracing::info!(message = "Mailgun retried a delivery already received.");
            Ok(())
        }
        Ok(TokenUse::Reused) => Err(IngestError::Replayed(
            "this Mailgun token was already used with a different message: signatures are single-use".into(),
        )),
        Err(e) => Err(IngestError::Unavailable(format!(
            "could not check the Mailgun token: {e}"
        ))),
    }
}

/// The email in a verified form.
pub fn parse(form: &Form) -> Result<Email, IngestError> {
    // Mailgun's own checks, sent as fields beside the message (and among
    // its headers).
    let field = |n: &str| {
        form.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    let auth = EmailAuth {
        spf: field("x-mailgun-spf").and_then(super::auth::verdict),
        dkim: field("x-mailgun-dkim-check-result").and_then(super::auth::verdict),
        dmarc: None,
    };
    if let Some(raw) = form.get("body-mime") {
        let mut email = mime::parse(raw.as_bytes())?;
        email
            .recipients
            .extend(form.get("recipient").map(str::to_owned));
        email.auth = auth;
        return Ok(email);
    }
    // `message-headers` is a JSON list of [name, value] pairs.
    let headers: Vec<(String, String)> = match form.get("message-headers") {
        Some(raw) => serde_json::from_str::<Vec<(String, String)>>(raw)
            .map_err(|e| {
                IngestError::Malformed(format!(
                    "Mailgun `message-headers` must be a JSON list of [name, value] pairs: {e}"
                ))
            })?
            .into_iter()
            .take(500)
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        None => Vec::new(),
    };
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .or_else(|| field(n))
    };
    // The `From` header (as a field, or among `message-headers`) is the
    // author; `sender` is only the envelope sender, the last resort.
    let from = header("from").or(form.get("sender")).ok_or_else(|| {
        IngestError::Malformed(
            "Mailgun form has no `from` field, no From in `message-headers`, no `sender` and no `body-mime`".into(),
        )
    })?;
    let recipients = form
        .get("recipient")
        .map(|r| r.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default();
    Ok(Email {
        message_id: header("message-id").and_then(message_id),
        in_reply_to: header("in-reply-to").map(message_ids).unwrap_or_default(),
        references: header("references").map(message_ids).unwrap_or_default(),
        from: Some(super::address_of(from).to_owned()),
        from_name: crate::ingest::text::display_name(from).map(str::to_owned),
        recipients,
        subject: header("subject").map(str::to_owned),
        text: form.get("body-plain").map(str::to_owned),
        html: form.get("body-html").map(str::to_owned),
        headers,
        attachments: form
            .files
            .iter()
            .map(|f| Attachment {
                name: f.filename.clone(),
                content_type: f.content_type.clone(),
                size: f.size,
            })
            .collect(),
        mailbox_hash: None,
        auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_and_subject_come_from_message_headers_when_the_fields_are_absent() {
        let headers = serde_json::json!([
            ["From", "Ann Lee <ann.lee@example.com>"],
            ["Subject", "Where is my order?"],
            ["Message-Id", "<m1@example.com>"]
        ])
        .to_string();
        let body = format!(
            "recipient=support%40mg.acme.test&sender=bounces%2Bx%40mailer.example.com\
             &body-plain=When+will+it+arrive%3F&message-headers={}",
            urlencoding(&headers)
        );
        let form = super::form("application/x-www-form-urlencoded", body.as_bytes()).unwrap();
        let e = parse(&form).unwrap();
        assert_eq!(
            e.from.as_deref(),
            Some("ann.lee@example.com"),
            "not the envelope sender"
        );
        assert_eq!(e.from_name.as_deref(), Some("Ann Lee"));
        assert_eq!(e.subject.as_deref(), Some("Where is my order?"));
    }

    fn urlencoding(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    use crate::secret::Secret;

    fn signed_form(fields: &str, ts: i64, token: &str) -> Form {
        let sig = hex::encode(verify::hmac_sha256(
            b"key",
            &[ts.to_string().as_bytes(), token.as_bytes()],
        ));
        Form::urlencoded(
            format!("{fields}&timestamp={ts}&token={token}&signature={sig}").as_bytes(),
        )
    }

    #[test]
    fn the_digest_is_of_what_the_form_says_not_how() {
        let a = Form::urlencoded(b"from=a%40x.test&body-plain=hi&subject=s");
        let reordered = Form::urlencoded(b"subject=s&from=a%40x.test&body-plain=hi");
        let other = Form::urlencoded(b"from=a%40x.test&body-plain=hi!&subject=s");
        // Length prefixes: moving a byte between fields changes the digest.
        let shifted = Form::urlencoded(b"from=a%40x.tes&body-plain=thi&subject=s");
        assert_eq!(digest(&a), digest(&reordered));
        assert_ne!(digest(&a), digest(&other));
        assert_ne!(digest(&a), digest(&shifted));
    }

    #[test]
    fn a_verified_token_is_remembered_until_its_signature_leaves_the_window() {
        let settings = MailgunSettings {
            signing_key: Secret::new("key"),
        };
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let form = signed_form("from=a%40x.test", 1_699_999_900, "tok");
        let signed = verify(&form, &settings, now, 300).unwrap();
        assert_eq!(signed.token, "tok");
        assert_eq!(
            signed.until,
            DateTime::from_timestamp(1_699_999_900 + 300 + TOKEN_GRACE_SECS, 0).unwrap()
        );
        assert_eq!(signed.digest, digest(&form));
    }
}
