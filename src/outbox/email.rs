//! Email replies: one composer, two transports (SMTP through lettre, Amazon
//! SES v2 with the same raw message).
//!
//! The reply threads: `Message-ID` is the id ingest recorded for it
//! (`thread.reply_message_id`, `<ticket@deskhand.DOMAIN>`), `In-Reply-To`
//! is the customer's Message-ID, `References` the customer's References
//! followed by it, and the subject is the customer's with one `Re:`. A
//! customer who answers quotes these ids, so ingest finds the same thread
//! root and the same conversation. `Reply-To` also carries the conversation
//! id as a plus address, for clients that drop References. The body has a
//! plain-text and an HTML part, sources as links, and `Auto-Submitted:
//! auto-replied` (RFC 3834) so other robots do not answer it. An agent's
//! reply threads the same way (under the customer's latest message, with
//! its own Message-ID) and, written by a person, is not marked automatic.
//!
//! Neither SMTP nor SES has a deduplication key: a dispatcher that dies
//! between a successful send and marking the record delivered sends it once
//! more. The copy has the same Message-ID, which many clients (Gmail among
//! them) show once.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::settings::{EmailOutSettings, SesOutSettings, SmtpSettings, SmtpTls};
use super::{Courier, DeliverError, Sent};
use crate::domain::{Delivery, OutboundAction, OutboxRecord, Source};

/// Most References ids carried (the root and the newest are kept).
const MAX_REFERENCES: usize = 20;

/// Parses `Name <addr>` or `addr`.
pub fn mailbox(s: &str) -> Result<Mailbox, String> {
    s.trim()
        .parse::<Mailbox>()
        .map_err(|e| format!("{s:?} is not an email address: {e}"))
}

/// The subject of a reply: the customer's with exactly one `Re:`.
pub fn reply_subject(subject: Option<&str>) -> String {
    let s = subject.map(str::trim).unwrap_or("");
    let mut rest = s;
    loop {
        let lower = rest.to_ascii_lowercase();
        if let Some(stripped) = ["re:", "re :", "aw:", "sv:"]
            .iter()
            .find(|p| lower.starts_with(**p))
        {
            rest = rest[stripped.len()..].trim_start();
        } else {
            break;
        }
    }
    if rest.is_empty() {
        "Re: your message".to_owned()
    } else {
        format!("Re: {rest}")
    }
}

/// The References of a reply: the parent's References, then the parent's
/// Message-ID (RFC 5322 §3.6.4), shortened to the root and the newest.
pub fn reply_references(references: &[String], parent: Option<&str>) -> Vec<String> {
    let mut ids: Vec<String> = references.to_vec();
    if let Some(p) = parent
        && ids.last().map(String::as_str) != Some(p)
    {
        ids.push(p.to_owned());
    }
    if ids.len() > MAX_REFERENCES {
        let tail = ids.split_off(ids.len() - (MAX_REFERENCES - 1));
        ids.truncate(1);
        ids.extend(tail);
    }
    ids
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Only http(s) links become anchors.
fn safe_url(url: &str) -> Option<&str> {
    let u = url.trim();
    (u.starts_with("https://") || u.starts_with("http://")).then_some(u)
}

/// The plain-text and HTML (a fragment: paragraphs and a list) bodies of
/// a reply.
pub fn bodies(text: &str, sources: &[Source]) -> (String, String) {
    let mut plain = text.trim().to_owned();
    let mut html = String::new();
    for para in text.trim().split("\n\n") {
        html.push_str("<p>");
        html.push_str(&escape_html(para.trim()).replace('\n', "<br>"));
        html.push_str("</p>");
    }
    if !sources.is_empty() {
        plain.push_str("\n\nSources:\n");
        html.push_str("<p>Sources:</p><ul>");
        for s in sources {
            match s.url.as_deref().and_then(safe_url) {
                Some(url) => {
                    plain.push_str(&format!("- {}: {url}\n", s.title));
                    html.push_str(&format!(
                        "<li><a href=\"{}\">{}</a></li>",
                        escape_html(url),
                        escape_html(&s.title)
                    ));
                }
                None => {
                    plain.push_str(&format!("- {}\n", s.title));
                    html.push_str(&format!("<li>{}</li>", escape_html(&s.title)));
                }
            }
        }
        html.push_str("</ul>");
    }
    (plain.trim_end().to_owned(), html)
}

/// The Reply-To: configured, or `local+<reply tag>@domain` of `from` (the
/// tag ingest issued for this conversation and customer); none without a
/// tag (the reply's References thread it back all the same).
fn reply_to(settings: &EmailOutSettings, from: &Mailbox, d: &Delivery) -> Option<Mailbox> {
    if let Some(r) = &settings.reply_to {
        return mailbox(r).ok();
    }
    let tag = d.thread.reply_token.as_deref()?;
    let user = from.email.user();
    let base = user.split('+').next().unwrap_or(user);
    format!("{base}+{tag}@{}", from.email.domain())
        .parse()
        .ok()
        .map(|email| Mailbox::new(from.name.clone(), email))
}

/// Composes the reply a record delivers.
pub fn compose(
    settings: &EmailOutSettings,
    record: &OutboxRecord,
) -> Result<Message, DeliverError> {
    let d = &record.delivery;
    let OutboundAction::Reply {
        text,
        sources,
        by_agent,
        ..
    } = &d.action
    else {
        return Err(DeliverError::Permanent(
            "an email channel has no escalation action".into(),
        ));
    };
    let from = mailbox(&settings.from).map_err(DeliverError::Permanent)?;
    let to_addr = d.customer.email.as_ref().ok_or_else(|| {
        DeliverError::Permanent("the ticket has no customer email address".into())
    })?;
    let to_email = to_addr
        .as_str()
        .parse()
        .map_err(|e| DeliverError::Permanent(format!("customer address: {e}")))?;
    let name = d
        .customer
        .name
        .as_deref()
        .map(|n| n.replace(['"', '\\', '<', '>'], ""));
    let mut b = Message::builder()
        .from(from.clone())
        .to(Mailbox::new(name, to_email))
        .subject(reply_subject(d.subject.as_deref()))
        .message_id(d.thread.reply_message_id.clone());
    if !by_agent {
        b = b
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-replied".into(),
            ))
            // Asks Exchange/Outlook not to send out-of-office replies back.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Auto-Response-Suppress"),
                "All".into(),
            ));
    }
    if let Some(r) = reply_to(settings, &from, d) {
        b = b.reply_to(r);
    }
    let parent = d.thread.message_id.as_deref();
    if let Some(p) = parent {
        b = b.in_reply_to(p.to_owned());
    }
    let refs = reply_references(&d.thread.references, parent);
    if !refs.is_empty() {
        b = b.references(refs.join(" "));
    }
    let (plain, html) = bodies(text, sources);
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>{html}</body></html>"
    );
    b.multipart(MultiPart::alternative_plain_html(plain, html))
        .map_err(|e| DeliverError::Permanent(format!("composing the reply: {e}")))
}

/// SMTP delivery.
pub struct Smtp {
    settings: EmailOutSettings,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Smtp {
    /// A transport to `smtp`, pooled.
    pub fn new(
        settings: EmailOutSettings,
        smtp: &SmtpSettings,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        type T = AsyncSmtpTransport<Tokio1Executor>;
        let builder = match smtp.tls {
            SmtpTls::None => T::builder_dangerous(&smtp.host),
            SmtpTls::Starttls => T::starttls_relay(&smtp.host)?,
            SmtpTls::Tls => T::relay(&smtp.host)?,
        };
        let mut builder = builder.port(smtp.port).timeout(Some(timeout));
        if let (Some(user), Some(pass)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(user.clone(), pass.expose().to_owned()));
        }
        Ok(Self {
            settings,
            transport: builder.build(),
        })
    }
}

#[async_trait]
impl Courier for Smtp {
    async fn deliver(&self, record: &OutboxRecord, _retry: bool) -> Result<Sent, DeliverError> {
        let message = compose(&self.settings, record)?;
        let id = record.delivery.thread.reply_message_id.clone();
        match self.transport.send(message).await {
            Ok(_) => Ok(Sent { external_id: id }),
            // 5xx: the server refuses this message for good.
            Err(e) if e.is_permanent() => Err(DeliverError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(DeliverError::Transient(format!("SMTP: {e}"))),
        }
    }
}

/// Amazon SES v2 delivery of the same raw message.
pub struct Ses {
    settings: EmailOutSettings,
    ses: SesOutSettings,
    client: aws_sdk_sesv2::Client,
}

impl Ses {
    /// Sends through `client`.
    pub fn new(settings: EmailOutSettings, client: aws_sdk_sesv2::Client) -> Self {
        Self {
            ses: settings.ses.clone().unwrap_or_default(),
            settings,
            client,
        }
    }
}

#[async_trait]
impl Courier for Ses {
    async fn deliver(&self, record: &OutboxRecord, _retry: bool) -> Result<Sent, DeliverError> {
        use aws_sdk_sesv2::primitives::Blob;
        use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
        let message = compose(&self.settings, record)?;
        let to: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(|a| a.to_string())
            .collect();
        let raw = RawMessage::builder()
            .data(Blob::new(message.formatted()))
            .build()
            .map_err(|e| DeliverError::Permanent(format!("SES raw message: {e}")))?;
        let out = self
            .client
            .send_email()
            .from_email_address(&self.settings.from)
            .destination(Destination::builder().set_to_addresses(Some(to)).build())
            .content(EmailContent::builder().raw(raw).build())
            .set_configuration_set_name(self.ses.configuration_set.clone())
            .send()
            .await;
        match out {
            Ok(o) => Ok(Sent {
                external_id: record
                    .delivery
                    .thread
                    .reply_message_id
                    .clone()
                    .or(o.message_id),
            }),
            Err(e) if crate::aws::is_transient(&e) => Err(DeliverError::Transient(format!(
                "SES SendEmail: {}",
                crate::aws::describe(&e)
            ))),
            Err(e) => Err(DeliverError::Permanent(format!(
                "SES SendEmail: {}",
                crate::aws::describe(&e)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_get_one_re() {
        assert_eq!(reply_subject(Some("Refund")), "Re: Refund");
        assert_eq!(reply_subject(Some("RE: Re:  Refund")), "Re: Refund");
        assert_eq!(reply_subject(Some("  ")), "Re: your message");
        assert_eq!(reply_subject(None), "Re: your message");
    }

    #[test]
    fn references_end_with_the_parent_and_keep_the_root() {
        assert_eq!(reply_references(&[], Some("<a@x>")), ["<a@x>"]);
        let refs: Vec<String> = (0..30).map(|i| format!("<{i}@x>")).collect();
        let out = reply_references(&refs, Some("<p@x>"));
        assert_eq!(out.len(), MAX_REFERENCES);
        assert_eq!(out[0], "<0@x>");
        assert_eq!(out.last().unwrap(), "<p@x>");
    }

    #[test]
    fn html_is_escaped_and_only_web_links_are_anchors() {
        let sources = vec![
            Source {
                doc_id: "a".into(),
                title: "Refunds <b>".into(),
                url: Some("https://help.example/refunds".into()),
            },
            Source {
                doc_id: "b".into(),
                title: "Evil".into(),
                url: Some("javascript:alert(1)".into()),
            },
        ];
        let (plain, html) = bodies("Hi <there>\n\nBye", &sources);
        assert!(plain.contains("- Refunds <b>: https://help.example/refunds"));
        assert!(html.contains("<p>Hi &lt;there&gt;</p><p>Bye</p>"));
        assert!(html.contains("<a href=\"https://help.example/refunds\">Refunds &lt;b&gt;</a>"));
        assert!(!html.contains("javascript:"));
    }
}
