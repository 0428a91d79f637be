//! Amazon SES receipt rules with an SNS action: the SNS `Message` is an
//! SES notification whose `content` is the raw message (base64 or UTF-8,
//! as the action's encoding says). Verification is SNS's (see
//! [`crate::ingest::sns`]).

use base64::Engine;
use serde::Deserialize;

use super::{Email, mime};
use crate::domain::EmailAuth;
use crate::ingest::{Ignored, IngestError};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    notification_type: String,
    #[serde(default)]
    receipt: Option<Receipt>,
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Receipt {
    #[serde(default)]
    recipients: Vec<String>,
    spam_verdict: Option<Verdict>,
    virus_verdict: Option<Verdict>,
    spf_verdict: Option<Verdict>,
    dkim_verdict: Option<Verdict>,
    dmarc_verdict: Option<Verdict>,
    action: Option<Action>,
}

#[derive(Deserialize)]
struct Verdict {
    status: String,
}

#[derive(Deserialize)]
struct Action {
    encoding: Option<String>,
}

/// What an SES notification holds.
pub enum Parsed {
    /// An inbound message.
    Mail(Box<Email>),
    /// Not one to answer.
    Ignored(Ignored),
}

/// Parses the SNS `Message` of an SES receipt notification.
pub fn parse(message: &str) -> Result<Parsed, IngestError> {
    let n: Notification = serde_json::from_str(message)
        .map_err(|e| crate::ingest::json_error("SES notification (SNS Message)", &e))?;
    if n.notification_type != "Received" {
        return Ok(Parsed::Ignored(Ignored::new(
            "not_inbound_mail",
            format!(
                "SES notificationType {:?}",
                n.notification_type.chars().take(40).collect::<String>()
            ),
        )));
    }
    let receipt = n.receipt.as_ref();
    for (verdict, reason) in [
        (receipt.and_then(|r| r.spam_verdict.as_ref()), "spam"),
        (receipt.and_then(|r| r.virus_verdict.as_ref()), "virus"),
    ] {
        if verdict.is_some_and(|v| v.status == "FAIL") {
            return Ok(Parsed::Ignored(Ignored::new(
                reason,
                format!("SES {reason} verdict FAIL"),
            )));
        }
    }
    let content = n.content.as_deref().ok_or_else(|| {
        IngestError::Malformed(
            "SES notification has no `content`: the receipt rule must use an SNS action (an S3 action leaves the mail in the bucket)".into(),
        )
    })?;
    let encoding = receipt
        .and_then(|r| r.action.as_ref())
        .and_then(|a| a.encoding.as_deref())
        .unwrap_or("UTF-8");
    let raw = if encoding.eq_ignore_ascii_case("BASE64") {
        base64::engine::general_purpose::STANDARD
            .decode(content.replace(['\r', '\n'], ""))
            .map_err(|_| {
                IngestError::Malformed(
                    "SES `content` is not base64 though the action's encoding is BASE64".into(),
                )
            })?
    } else {
        content.as_bytes().to_vec()
    };
    let mut email = mime::parse(&raw)?;
    // SES's own checks; the message's headers are not trusted for them.
    if let Some(r) = receipt {
        let v = |v: &Option<Verdict>| v.as_ref().and_then(|v| super::auth::verdict(&v.status));
        email.auth = EmailAuth {
            spf: v(&r.spf_verdict),
            dkim: v(&r.dkim_verdict),
            dmarc: v(&r.dmarc_verdict),
        };
    }
    email
        .recipients
        .extend(receipt.map(|r| r.recipients.clone()).unwrap_or_default());
    Ok(Parsed::Mail(Box::new(email)))
}
