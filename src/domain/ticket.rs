//! The normalized ticket every channel produces, and its parts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ConversationId, TicketId, named_enum};

named_enum!(
    /// Where a ticket came from.
    Channel, "channel" {
        Widget = "widget",
        Email = "email",
        Helpdesk = "helpdesk",
    }
);

named_enum!(
    /// The system that delivered a ticket, within its channel.
    Provider, "provider" {
        Widget = "widget",
        /// Raw MIME (`deskhand inspect email`, SMTP relays).
        Mime = "mime",
        Postmark = "postmark",
        Mailgun = "mailgun",
        Sendgrid = "sendgrid",
        Ses = "ses",
        Zendesk = "zendesk",
        Freshdesk = "freshdesk",
        Intercom = "intercom",
        Helpscout = "helpscout",
        Front = "front",
        Generic = "generic",
    }
);

impl Provider {
    /// The channel this provider belongs to.
    pub fn channel(self) -> Channel {
        match self {
            Provider::Widget => Channel::Widget,
            Provider::Mime
            | Provider::Postmark
            | Provider::Mailgun
            | Provider::Sendgrid
            | Provider::Ses => Channel::Email,
            Provider::Zendesk
            | Provider::Freshdesk
            | Provider::Intercom
            | Provider::Helpscout
            | Provider::Front
            | Provider::Generic => Channel::Helpdesk,
        }
    }
}

/// Why a customer's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Nothing but white space.
    #[error("message text is empty")]
    Empty,
    /// Longer than the configured limit.
    #[error("message text is {len} characters; the limit is {max}")]
    TooLong {
        /// Characters received.
        len: usize,
        /// The configured limit.
        max: usize,
    },
}

/// A customer's message: not blank, at most the configured length, control
/// characters (other than line breaks and tabs) removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageText(String);

impl MessageText {
    /// Accepts `text` if it fits in `max` characters after cleaning.
    pub fn parse(text: &str, max: usize) -> Result<Self, TextError> {
        let cleaned = clean(text);
        let len = cleaned.chars().count();
        if len == 0 {
            return Err(TextError::Empty);
        }
        if len > max {
            return Err(TextError::TooLong { len, max });
        }
        Ok(Self(cleaned))
    }

    /// Accepts `text`, cutting it at `max` characters with a visible marker
    /// instead of refusing it: for channels (email) where the sender cannot
    /// be told to shorten it. Returns whether it was cut.
    pub fn truncating(text: &str, max: usize) -> Result<(Self, bool), TextError> {
        let cleaned = clean(text);
        if cleaned.is_empty() {
            return Err(TextError::Empty);
        }
        if cleaned.chars().count() <= max {
            return Ok((Self(cleaned), false));
        }
        const MARK: &str = " […truncated]";
        let keep = max.saturating_sub(MARK.chars().count());
        let mut cut: String = cleaned.chars().take(keep).collect();
        cut.push_str(MARK);
        Ok((Self(cut), true))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A syntactically plausible e-mail address, domain lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Accepts `local@domain` with no white space and a dotted domain.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().trim_start_matches('<').trim_end_matches('>');
        let (local, domain) = s.split_once('@')?;
        let ok = !local.is_empty()
            && local.len() <= 64
            && domain.len() <= 255
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
            && !domain.contains('@');
        ok.then(|| Self(format!("{local}@{}", domain.to_ascii_lowercase())))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s).ok_or_else(|| format!("not an e-mail address: {s:?}"))
    }
}

impl From<EmailAddress> for String {
    fn from(e: EmailAddress) -> String {
        e.0
    }
}

impl std::fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A brand (or product line) a ticket is about, chosen by the widget's
/// `data-brand` attribute: lower case, `_` read as `-`, 1 to 64 letters,
/// digits, `-` or `.`, so it compares equal to the knowledge base's labels
/// (see `knowledge::filter::normalize`). Whether a brand is *allowed* is
/// the API's decision (`retriever.brands`), not the type's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Brand(String);

impl Brand {
    /// Longest brand accepted.
    pub const MAX_CHARS: usize = 64;

    /// Accepts `s` once normalized, or says why not.
    pub fn parse(s: &str) -> Result<Self, String> {
        let b = s.trim().to_lowercase().replace('_', "-");
        if b.is_empty() {
            return Err("the brand is empty".into());
        }
        if b.chars().count() > Self::MAX_CHARS {
            return Err(format!(
                "the brand is longer than {} characters",
                Self::MAX_CHARS
            ));
        }
        if !b
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
        {
            return Err(format!(
                "brand {:?} may hold only letters, digits, `-`, `_` and `.`",
                s.chars().take(Self::MAX_CHARS).collect::<String>()
            ));
        }
        Ok(Self(b))
    }

    /// The normalized brand.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Brand {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Brand> for String {
    fn from(b: Brand) -> String {
        b.0
    }
}

impl std::fmt::Display for Brand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who wrote the ticket, as far as the channel tells.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// Reply address (email, helpdesk requester).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAddress>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the receiving mail provider reported of the sender's
    /// authentication (email tickets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_auth: Option<EmailAuth>,
    /// The signed-in site user's id (widget only), present only when the
    /// site's identity hash verified it; `email` is then that user's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

named_enum!(
    /// One authentication method's result, as RFC 8601
    /// `Authentication-Results` and the mail providers report it.
    AuthVerdict, "authentication result" {
        Pass = "pass",
        Fail = "fail",
        SoftFail = "softfail",
        Neutral = "neutral",
        None = "none",
        TempError = "temperror",
        PermError = "permerror",
    }
);

/// SPF, DKIM and DMARC results for an inbound email, where reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailAuth {
    /// SPF (the envelope sender's domain authorized the sending host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spf: Option<AuthVerdict>,
    /// DKIM (a valid signature; any passing signature counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim: Option<AuthVerdict>,
    /// DMARC (SPF or DKIM passing and aligned with the `From` domain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmarc: Option<AuthVerdict>,
}

impl EmailAuth {
    /// Whether anything was reported.
    pub fn is_empty(&self) -> bool {
        self.spf.is_none() && self.dkim.is_none() && self.dmarc.is_none()
    }

    /// The `From` address is likely forged: DMARC failed, or, where no
    /// DMARC result was reported, SPF failed and no DKIM signature passed.
    /// (SPF alone breaks on forwarding, which DKIM survives; a soft fail
    /// is not a fail.)
    pub fn spoofed(&self) -> bool {
        match self.dmarc {
            Some(AuthVerdict::Fail) => true,
            Some(_) => false,
            None => self.spf == Some(AuthVerdict::Fail) && self.dkim != Some(AuthVerdict::Pass),
        }
    }

    /// The `From` address is authenticated: DMARC passed, or, where no
    /// DMARC result was reported, DKIM or SPF passed.
    pub fn verified(&self) -> bool {
        match self.dmarc {
            Some(v) => v == AuthVerdict::Pass,
            None => self.dkim == Some(AuthVerdict::Pass) || self.spf == Some(AuthVerdict::Pass),
        }
    }
}

/// An attachment, listed but never forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// File name as sent.
    pub name: String,
    /// MIME type as sent.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
}

/// What a reply needs to land in the same thread on the way back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    /// The helpdesk's ticket id, or the email thread root's Message-ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// The incoming email's own Message-ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The incoming email's References, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// The Message-ID deskhand will use for its reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_message_id: Option<String>,
    /// The plus-address tag of deskhand's Reply-To
    /// (`support+<tag>@…`): the conversation id and a MAC binding it to
    /// the customer's address, so only that customer's mail threads back
    /// by it (see `ingest::email::reply_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_token: Option<String>,
}

/// One customer message, normalized from any channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    /// Unit of idempotency.
    pub ticket_id: TicketId,
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Who delivered it; implies the channel.
    pub provider: Provider,
    /// Who wrote it.
    #[serde(default)]
    pub customer: Customer,
    /// Email subject or helpdesk ticket title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The customer's words (quoted history and signatures removed).
    pub text: MessageText,
    /// Listed, not forwarded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Threading data for replies on the same channel.
    #[serde(default)]
    pub thread: Thread,
    /// The brand the conversation was opened for (widget `data-brand`,
    /// bound into its token): retrieval answers from that brand's
    /// passages before any channel labels apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<Brand>,
    /// When ingest accepted it.
    pub received_at: DateTime<Utc>,
}

impl Ticket {
    /// The channel, from the provider.
    pub fn channel(&self) -> Channel {
        self.provider.channel()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cleaned_and_bounded() {
        assert_eq!(
            MessageText::parse("  hi\u{0}\u{7} there \n", 100)
                .unwrap()
                .as_str(),
            "hi there"
        );
        assert_eq!(MessageText::parse(" \n\t ", 100), Err(TextError::Empty));
        assert_eq!(
            MessageText::parse("abcd", 3),
            Err(TextError::TooLong { len: 4, max: 3 })
        );
        // Characters, not bytes.
        assert!(MessageText::parse("ééé", 3).is_ok());
    }

    #[test]
    fn truncating_keeps_a_marker() {
        let (t, cut) = MessageText::truncating(&"a".repeat(100), 30).unwrap();
        assert!(cut);
        assert_eq!(t.as_str().chars().count(), 30);
        assert!(t.as_str().ends_with("[…truncated]"));
        let (t, cut) = MessageText::truncating("short", 30).unwrap();
        assert!(!cut);
        assert_eq!(t.as_str(), "short");
    }

    #[test]
    fn email_addresses() {
        assert_eq!(
            EmailAddress::parse("Ann@Example.COM").unwrap().as_str(),
            "Ann@example.com"
        );
        assert_eq!(EmailAddress::parse("<a@b.co>").unwrap().domain(), "b.co");
        for bad in [
            "", "a", "a@b", "@b.co", "a b@c.co", "a@.co", "a@co.", "a@b@c.co",
        ] {
            assert!(EmailAddress::parse(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn brands_normalize_and_garbage_is_refused() {
        assert_eq!(Brand::parse(" Acme_Pro ").unwrap().as_str(), "acme-pro");
        assert_eq!(Brand::parse("bolt.io").unwrap().as_str(), "bolt.io");
        assert_eq!(Brand::parse("Ünïcode").unwrap().as_str(), "ünïcode");
        for bad in [
            "",
            "  ",
            "a b",
            "acme/../x",
            "<script>",
            "a\u{0}b",
            &"x".repeat(65),
        ] {
            assert!(Brand::parse(bad).is_err(), "{bad:?}");
        }
        let b: Brand = serde_json::from_str("\"ACME\"").unwrap();
        assert_eq!(serde_json::to_string(&b).unwrap(), "\"acme\"");
        assert!(serde_json::from_str::<Brand>("\"a b\"").is_err());
    }

    #[test]
    fn named_enums_round_trip() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>().unwrap(), *p);
        }
        let err = "smoke-signal".parse::<Provider>().unwrap_err().to_string();
        assert!(err.contains("zendesk"), "{err}");
        assert_eq!(Provider::Ses.channel(), Channel::Email);
        assert_eq!(
            serde_json::to_string(&Channel::Helpdesk).unwrap(),
            "\"helpdesk\""
        );
    }
}
