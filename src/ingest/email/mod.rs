//! Inbound email: every provider's payload becomes an [`Email`], which
//! [`normalize`] turns into a ticket (or a logged reason to drop it).
//!
//! Threading, and why nobody can write into someone else's conversation:
//! a conversation is opened by a reply tag deskhand issued
//! (`support+<tag>@…`, see [`reply_token`]: a MAC over the conversation
//! and the customer's address), else it is the thread root (the first
//! `References` id, else `In-Reply-To`, else the message's own
//! `Message-ID`) **together with the sender's address**. So mail from
//! another address, a guessed or leaked conversation id in a plus address,
//! or `References` copied from someone else's thread all start a new
//! conversation of their own; none reaches a widget or helpdesk
//! conversation, whose ids an email can never derive. A forged `From`
//! is what remains: the provider's authentication results are recorded on
//! the ticket, and mail whose DMARC (or SPF without DKIM) failed is held
//! for a person, with nothing sent to the forged address.
//!
//! Loops are cut before anything else: auto-replies, bounces, list and
//! bulk mail, and mail from deskhand's own addresses are dropped.

pub mod auth;
pub mod mailgun;
pub mod mime;
pub mod postmark;
pub mod reply_token;
pub mod sendgrid;
pub mod ses;

use sha2::{Digest, Sha256};

use super::text::{html_to_text, strip_reply, tidy};
use super::{Context, Ignored, IngestError, Normalized};
use crate::domain::{
    Attachment, ConversationId, Customer, EmailAddress, EmailAuth, MessageText, Provider, Thread,
    Ticket, TicketId,
};

/// Most ids kept from a `References` header.
const MAX_REFERENCES: usize = 50;
/// Longest id kept (RFC 5322 lines are at most 998 characters).
const MAX_ID_LEN: usize = 998;
/// Most attachments listed.
const MAX_ATTACHMENTS: usize = 50;

/// An email as the providers deliver it, before normalization.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Email {
    /// Its `Message-ID`, as `<id>`.
    pub message_id: Option<String>,
    /// `In-Reply-To` ids.
    pub in_reply_to: Vec<String>,
    /// `References` ids, oldest first.
    pub references: Vec<String>,
    /// The sender's address.
    pub from: Option<String>,
    /// The sender's display name.
    pub from_name: Option<String>,
    /// Envelope and header recipients.
    pub recipients: Vec<String>,
    /// Decoded subject.
    pub subject: Option<String>,
    /// The text/plain body.
    pub text: Option<String>,
    /// The text/html body.
    pub html: Option<String>,
    /// Every header, name lower-cased.
    pub headers: Vec<(String, String)>,
    /// Attachments, listed.
    pub attachments: Vec<Attachment>,
    /// A plus-address token the provider already extracted (Postmark's
    /// `MailboxHash`).
    pub mailbox_hash: Option<String>,
    /// Sender authentication the provider reported in its own fields
    /// (Mailgun, SendGrid, SES); empty: read from the headers.
    pub auth: EmailAuth,
}

impl Email {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every `<id>` in a Message-ID list header; bare tokens when there are no
/// angle brackets (some clients omit them).
pub fn message_ids(raw: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = raw;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        let id = rest[start + 1..start + len].trim();
        if !id.is_empty() && id.len() <= MAX_ID_LEN && !id.contains(char::is_whitespace) {
            ids.push(format!("<{id}>"));
        }
        rest = &rest[start + len + 1..];
        if ids.len() >= MAX_REFERENCES {
            break;
        }
    }
    if ids.is_empty() {
        ids = raw
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| t.contains('@') && t.len() <= MAX_ID_LEN)
            .take(MAX_REFERENCES)
            .map(|t| format!("<{}>", t.trim_matches(['<', '>'])))
            .collect();
    }
    ids
}

/// One normalized id (`abc@x` → `<abc@x>`).
pub fn message_id(raw: &str) -> Option<String> {
    message_ids(raw).into_iter().next().or_else(|| {
        let t = raw.trim().trim_matches(['<', '>']);
        (!t.is_empty() && t.len() <= MAX_ID_LEN && !t.contains(char::is_whitespace))
            .then(|| format!("<{t}>"))
    })
}

/// The address part of `Name <addr>` (or the whole string).
pub fn address_of(raw: &str) -> &str {
    match (raw.rfind('<'), raw.rfind('>')) {
        (Some(a), Some(b)) if a < b => raw[a + 1..b].trim(),
        _ => raw.trim().trim_matches('"'),
    }
}

/// Why a message must not be answered, if it must not (RFC 3834 and the
/// conventions of common mailers).
pub fn loop_reason(email: &Email, own: &[String]) -> Option<Ignored> {
    let h = |n: &str| email.header(n).map(|v| v.trim().to_ascii_lowercase());
    if let Some(v) = h("auto-submitted")
        && v != "no"
    {
        return Some(Ignored::new("auto_reply", format!("Auto-Submitted: {v}")));
    }
    for name in ["x-autoreply", "x-autorespond", "x-autoresponder"] {
        if email.header(name).is_some() {
            return Some(Ignored::new("auto_reply", format!("{name} header")));
        }
    }
    if let Some(v) = h("precedence")
        && matches!(v.as_str(), "bulk" | "junk" | "list" | "auto_reply")
    {
        let reason = if v == "auto_reply" {
            "auto_reply"
        } else {
            "bulk_mail"
        };
        return Some(Ignored::new(reason, format!("Precedence: {v}")));
    }
    if email.header("list-id").is_some() || email.header("list-unsubscribe").is_some() {
        return Some(Ignored::new(
            "mailing_list",
            "List-Id or List-Unsubscribe header",
        ));
    }
    if email.header("x-failed-recipients").is_some() {
        return Some(Ignored::new("bounce", "X-Failed-Recipients header"));
    }
    if let Some(ct) = h("content-type")
        && ct.starts_with("multipart/report")
    {
        return Some(Ignored::new("bounce", "multipart/report (delivery status)"));
    }
    if let Some(rp) = h("return-path")
        && rp.replace(char::is_whitespace, "") == "<>"
    {
        return Some(Ignored::new("bounce", "null Return-Path"));
    }
    let from = email
        .from
        .as_deref()
        .map(|f| address_of(f).to_ascii_lowercase());
    if let Some(from) = &from {
        let local = from.split('@').next().unwrap_or("");
        if matches!(local, "mailer-daemon" | "postmaster" | "mail-daemon")
            || local.starts_with("mailer-daemon")
        {
            return Some(Ignored::new("bounce", format!("sender is {local}")));
        }
        if matches!(
            local,
            "noreply" | "no-reply" | "do-not-reply" | "donotreply"
        ) {
            return Some(Ignored::new("auto_reply", "sender is a no-reply address"));
        }
        if own.iter().any(|o| o.trim().eq_ignore_ascii_case(from)) {
            return Some(Ignored::new(
                "own_message",
                "sent by deskhand's own address",
            ));
        }
    }
    if let Some(subject) = &email.subject {
        let s = subject.trim_start().to_ascii_lowercase();
        if [
            "auto:",
            "automatic reply",
            "autoreply:",
            "out of office",
            "abwesenheitsnotiz",
            "réponse automatique",
        ]
        .iter()
        .any(|p| s.starts_with(p))
        {
            return Some(Ignored::new("auto_reply", "auto-reply subject"));
        }
    }
    None
}

/// A plus-address token among the recipients (in `domain` if given).
fn plus_token(email: &Email, domain: Option<&str>) -> Option<String> {
    if let Some(hash) = email
        .mailbox_hash
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        return Some(hash.to_owned());
    }
    email.recipients.iter().find_map(|r| {
        let addr = EmailAddress::parse(address_of(r))?;
        if let Some(d) = domain
            && !addr.domain().eq_ignore_ascii_case(d)
        {
            return None;
        }
        let (local, _) = addr.as_str().rsplit_once('@')?;
        let (_, token) = local.split_once('+')?;
        (!token.is_empty() && token.len() <= 128).then(|| token.to_owned())
    })
}

/// The conversation (and the thread root recorded for it): the one a
/// valid reply tag opens, else the thread root bound to the sender.
fn thread_of(
    provider: Provider,
    email: &Email,
    sender: &EmailAddress,
    ctx: &Context<'_>,
    fallback_id: &str,
) -> (ConversationId, String) {
    let domain = ctx.settings.email_domain.as_deref();
    if let (Some(tokens), Some(tag)) = (ctx.reply_tokens, plus_token(email, domain))
        && let Some(id) = tokens.open(&tag, sender)
    {
        return (id, format!("+{tag}"));
    }
    let root = email
        .references
        .first()
        .or(email.in_reply_to.first())
        .cloned()
        .unwrap_or_else(|| fallback_id.to_owned());
    let bound = format!("{root}\n{}", sender.as_str().to_ascii_lowercase());
    (ConversationId::derive(provider, &bound), root)
}

fn clean_line(s: &str, max: usize) -> Option<String> {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let s: String = s.chars().take(max).collect();
    (!s.is_empty()).then_some(s)
}

/// Turns an email into a ticket, or says why it is dropped.
pub fn normalize(
    provider: Provider,
    email: Email,
    ctx: &Context<'_>,
) -> Result<Normalized, IngestError> {
    if let Some(ignored) = loop_reason(&email, &ctx.settings.own_identities) {
        return Ok(Normalized::Ignored(ignored));
    }
    let Some(from) = email
        .from
        .as_deref()
        .and_then(|f| EmailAddress::parse(address_of(f)))
    else {
        return Ok(Normalized::Ignored(Ignored::new(
            "no_sender",
            "no usable From address",
        )));
    };
    let full = match (&email.text, &email.html) {
        (Some(t), _) if !t.trim().is_empty() => tidy(t),
        (_, Some(h)) => html_to_text(h),
        _ => String::new(),
    };
    let name = email
        .from_name
        .as_deref()
        .and_then(|n| clean_line(n.trim_matches('"'), 100));
    let mut text = strip_reply(&full, name.as_deref());
    if text.is_empty() {
        // A forward, or a reply that is all quote: better the whole text
        // than nothing.
        text = full;
    }
    let attachments: Vec<Attachment> = email
        .attachments
        .iter()
        .take(MAX_ATTACHMENTS)
        .cloned()
        .collect();
    if text.trim().is_empty() {
        if attachments.is_empty() {
            return Ok(Normalized::Ignored(Ignored::new(
                "empty_message",
                "no text and no attachments",
            )));
        }
        let names: Vec<&str> = attachments.iter().map(|a| a.name.as_str()).collect();
        text = format!("(No message text; attachments: {})", names.join(", "));
    }
    let (text, _) = MessageText::truncating(&text, ctx.max_text_chars)
        .map_err(|e| IngestError::Malformed(e.to_string()))?;
    // Without a Message-ID the content identifies the delivery.
    let content_key = || {
        let mut h = Sha256::new();
        for part in [
            from.as_str(),
            email.subject.as_deref().unwrap_or(""),
            email.header("date").unwrap_or(""),
            text.as_str(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        format!("<{}@content.deskhand>", hex::encode(&h.finalize()[..16]))
    };
    let message_id = email.message_id.clone().unwrap_or_else(content_key);
    let ticket_id = TicketId::derive("email", &message_id);
    let domain = ctx.settings.email_domain.as_deref();
    let (conversation_id, root) = thread_of(provider, &email, &from, ctx, &message_id);
    let email_auth = if email.auth.is_empty() {
        auth::from_headers(&email.headers, &ctx.settings.authserv_ids)
    } else {
        email.auth
    };
    let reply_token = ctx.reply_tokens.map(|t| t.issue(conversation_id, &from));
    let reply_domain = domain
        .map(str::to_owned)
        .or_else(|| {
            email
                .recipients
                .iter()
                .find_map(|r| EmailAddress::parse(address_of(r)).map(|a| a.domain().to_owned()))
        })
        .unwrap_or_else(|| "localhost".into());
    let mut references = email.references.clone();
    if references.is_empty() {
        references = email.in_reply_to.clone();
    }
    Ok(Normalized::Accepted(Box::new(Ticket {
        ticket_id,
        conversation_id,
        provider,
        customer: Customer {
            email: Some(from),
            name,
            email_auth: (!email_auth.is_empty()).then_some(email_auth),
            user_id: None,
        },
        subject: email.subject.as_deref().and_then(|s| clean_line(s, 300)),
        text,
        attachments,
        thread: Thread {
            root: Some(root),
            message_id: Some(message_id),
            references,
            reply_message_id: Some(format!("<{ticket_id}@deskhand.{reply_domain}>")),
            reply_token,
        },
        brand: None,
        received_at: ctx.now,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_lists() {
        assert_eq!(
            message_ids("<a@b> <c@d>\r\n <e@f>"),
            vec!["<a@b>", "<c@d>", "<e@f>"]
        );
        assert_eq!(message_ids("a@b, c@d"), vec!["<a@b>", "<c@d>"]);
        assert_eq!(message_ids("<>"), Vec::<String>::new());
        assert_eq!(message_id("x@y").as_deref(), Some("<x@y>"));
        assert_eq!(message_ids(&"<a@b>".repeat(1000)).len(), MAX_REFERENCES);
        assert_eq!(address_of("Ann <ann@x.io>"), "ann@x.io");
        assert_eq!(address_of("ann@x.io"), "ann@x.io");
    }

    #[test]
    fn loops_are_recognized() {
        let base = Email {
            from: Some("ann@example.com".into()),
            ..Email::default()
        };
        assert!(loop_reason(&base, &[]).is_none());
        let with = |k: &str, v: &str| {
            let mut e = base.clone();
            e.headers.push((k.into(), v.into()));
            loop_reason(&e, &[]).map(|i| i.reason)
        };
        assert_eq!(with("auto-submitted", "auto-replied"), Some("auto_reply"));
        assert_eq!(with("auto-submitted", "no"), None);
        assert_eq!(with("x-autoreply", "yes"), Some("auto_reply"));
        assert_eq!(with("precedence", "bulk"), Some("bulk_mail"));
        assert_eq!(with("list-id", "<x.lists>"), Some("mailing_list"));
        assert_eq!(with("return-path", "<>"), Some("bounce"));
        let mut daemon = base.clone();
        daemon.from = Some("MAILER-DAEMON@mx.example.com".into());
        assert_eq!(loop_reason(&daemon, &[]).unwrap().reason, "bounce");
        assert_eq!(
            loop_reason(&base, &["Ann@Example.com".into()])
                .unwrap()
                .reason,
            "own_message"
        );
    }

    #[test]
    fn each_provider_reports_sender_authentication_its_own_way() {
        use crate::domain::AuthVerdict::{Fail, Pass, SoftFail};
        let ct = "application/x-www-form-urlencoded";
        let form = mailgun::form(
            ct,
            b"from=ann%40example.com&recipient=support%40acme.test&body-plain=hi\
              &X-Mailgun-Spf=SoftFail&X-Mailgun-Dkim-Check-Result=Pass",
        )
        .unwrap();
        let m = mailgun::parse(&form).unwrap().auth;
        assert_eq!((m.spf, m.dkim, m.dmarc), (Some(SoftFail), Some(Pass), None));

        let s = sendgrid::parse(
            ct,
            b"from=ann%40example.com&to=support%40acme.test&text=hi&SPF=fail\
              &dkim=%7B%40example.com+%3A+fail%7D",
        )
        .unwrap()
        .auth;
        assert_eq!((s.spf, s.dkim), (Some(Fail), Some(Fail)));
        assert!(s.spoofed());

        let raw = "From: ann@example.com\r\nTo: support@acme.test\r\n\
                   Authentication-Results: forged.example; dmarc=pass\r\n\r\nhi\r\n";
        let note = serde_json::json!({
            "notificationType": "Received",
            "receipt": {
                "recipients": ["support@acme.test"],
                "spfVerdict": {"status": "FAIL"},
                "dkimVerdict": {"status": "GRAY"},
                "dmarcVerdict": {"status": "FAIL"},
                "action": {"type": "SNS", "encoding": "UTF8"}
            },
            "content": raw,
        });
        let ses::Parsed::Mail(e) = ses::parse(&note.to_string()).unwrap() else {
            panic!("a mail")
        };
        assert!(
            e.auth.spoofed(),
            "SES's verdicts, not the message's own header"
        );
        // A raw message's header is read when nothing else reported.
        let m = mime::parse(raw.as_bytes()).unwrap();
        assert!(m.auth.is_empty());
        let auth = auth::from_headers(&m.headers, &[]);
        assert_eq!(auth.dmarc, Some(Pass));
    }
}
