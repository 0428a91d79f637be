//! Reply-address tokens: the tag of deskhand's `Reply-To`
//! (`support+<tag>@domain`) that lets a customer's answer find its
//! conversation when the mail client drops `References`.
//!
//! A tag is `<conversation id, 32 hex>.<MAC, 20 hex>`, the MAC an
//! HMAC-SHA256 under the server secret over the conversation id **and the
//! customer's address**, truncated to 80 bits and checked in constant time.
//! So a tag opens one conversation, for mail from the one address it was
//! issued to: a stranger who learns a conversation id (it is not secret:
//! API responses, escalations) or even a whole Reply-To cannot write into
//! that conversation. Tags are only issued to email conversations (the
//! email outbox is the only place they are written), and their domain
//! separation keeps them apart from the widget's conversation tokens.
//! Lower-case hex survives mail systems that fold the case of local parts;
//! `support+` plus a tag is 61 characters, within RFC 5321's 64.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::{ConversationId, EmailAddress};
use crate::secret::Secret;

/// Domain separation from every other MAC made under the same secret.
const CONTEXT: &[u8] = b"deskhand email reply tag v1\0";
/// MAC bytes kept: 80 bits, beyond guessing by mail.
const MAC_BYTES: usize = 10;

/// Issues and opens reply-address tags.
#[derive(Clone)]
pub struct ReplyTokens {
    key: Secret,
}

impl std::fmt::Debug for ReplyTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyTokens(..)")
    }
}

impl ReplyTokens {
    /// Tags under `key` (the server's token secret).
    pub fn new(key: Secret) -> Self {
        Self { key }
    }

    fn mac(&self, id: ConversationId, customer: &EmailAddress) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(CONTEXT);
        mac.update(id.as_uuid().simple().to_string().as_bytes());
        mac.update(b"\0");
        mac.update(customer.as_str().to_ascii_lowercase().as_bytes());
        mac
    }

    /// The tag for `id`, for mail from `customer`.
    pub fn issue(&self, id: ConversationId, customer: &EmailAddress) -> String {
        let tag = self.mac(id, customer).finalize().into_bytes();
        format!(
            "{}.{}",
            id.as_uuid().simple(),
            hex::encode(&tag[..MAC_BYTES])
        )
    }

    /// The conversation `tag` opens for mail from `sender`, if it does.
    pub fn open(&self, tag: &str, sender: &EmailAddress) -> Option<ConversationId> {
        let tag = tag.trim().to_ascii_lowercase();
        let (id, mac) = tag.split_once('.')?;
        if id.len() != 32 || mac.len() != 2 * MAC_BYTES {
            return None;
        }
        let id = ConversationId::parse(id).ok()?;
        let mac = hex::decode(mac).ok()?;
        self.mac(id, sender)
            .verify_truncated_left(&mac)
            .ok()
            .map(|()| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    #[test]
    fn a_tag_opens_its_conversation_for_its_customer_only() {
        let t = ReplyTokens::new(Secret::new("0123456789abcdef0123"));
        let id = ConversationId::random();
        let ann = addr("ann@example.com");
        let tag = t.issue(id, &ann);
        assert_eq!(tag.len(), 32 + 1 + 20);
        assert!(format!("support+{tag}").len() <= 64);
        assert_eq!(t.open(&tag, &ann), Some(id));
        assert_eq!(t.open(&tag.to_ascii_uppercase(), &ann), Some(id));
        assert_eq!(t.open(&tag, &addr("Ann@Example.com")), Some(id));
        // Another sender, another conversation, a bare id, another key.
        assert_eq!(t.open(&tag, &addr("mallory@example.net")), None);
        let other = ConversationId::random();
        let forged = format!("{}{}", other.as_uuid().simple(), &tag[32..]);
        assert_eq!(t.open(&forged, &ann), None);
        assert_eq!(t.open(&id.to_string(), &ann), None);
        assert_eq!(t.open(&id.as_uuid().simple().to_string(), &ann), None);
        let t2 = ReplyTokens::new(Secret::new("another-secret-entirely"));
        assert_eq!(t2.open(&tag, &ann), None);
        for junk in ["", ".", "x.y", &format!("{tag}0"), &tag[..tag.len() - 1]] {
            assert_eq!(t.open(junk, &ann), None, "{junk:?}");
        }
    }
}
