//! Follow-ups read in the conversation's context: "and what if I lose my
//! phone?" after "How do I turn on two-factor authentication?" is about
//! two-factor authentication, though none of its words say so.
//!
//! A message is a follow-up when it opens the way a continuation does
//! ("and …", "what if …", "what about …", "also …", and their Spanish,
//! French, German and Portuguese forms) or is short and points back ("does
//! it work offline?", "how long does that take?"). Retrieval then sees the
//! customer's previous question with it; the generator still answers the
//! message itself. Pure: no store, no model.

use super::acts;
use crate::domain::{Message, Role};

/// Openings of a continuation, lower-case, matched at the start.
/// ("And" and its translations, "what if", "what about", "also": words a
/// new question rarely opens with; not "so" or "but", which often do.)
const OPENERS: &[&str] = &[
    "and ",
    "and,",
    "what if ",
    "what about ",
    "how about ",
    "also ",
    "ok and ",
    "okay and ",
    "y si ",
    "¿y si ",
    "y ",
    "¿y ",
    "también ",
    "et si ",
    "et pour ",
    "et ",
    "und wenn ",
    "und was ",
    "und ",
    "e se ",
    "e ",
];
/// Words that point back to something said before (not ones that also
/// open new questions, like German "das" or "es").
const POINTERS: &[&str] = &[
    "it", "that", "this", "those", "these", "them", "one", "ones", "eso", "esto", "ça", "cela",
    "isso", "isto",
];
/// At most this many words make a short message.
const SHORT_WORDS: usize = 7;

/// Whether `text` continues the conversation rather than starting anew.
pub fn is_followup(text: &str) -> bool {
    let lower = text.trim().to_lowercase();
    if OPENERS.iter().any(|o| lower.starts_with(o)) {
        return true;
    }
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .collect();
    words.len() <= SHORT_WORDS && words.iter().any(|w| POINTERS.contains(w))
}

/// The retrieval query for a follow-up: the customer's previous question
/// (the latest customer message in `history` that is not a pleasantry)
/// before `text`; none when `text` is no follow-up or nothing came before.
pub fn query(text: &str, history: &[Message]) -> Option<String> {
    if !is_followup(text) {
        return None;
    }
    let previous = history
        .iter()
        .rev()
        .filter(|m| m.body.role == Role::Customer)
        .map(|m| acts::parse(&m.body.text).question.trim().to_owned())
        .find(|q| !q.is_empty() && !is_followup(q))?;
    Some(format!("{previous}\n{text}"))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::{NewMessage, TicketId};

    fn said(role: Role, text: &str) -> Message {
        let mut body = NewMessage::customer(TicketId::new(), text, Utc::now());
        body.role = role;
        Message { seq: 1, body }
    }

    #[test]
    fn continuations_and_pointers_are_follow_ups() {
        for t in [
            "and what if I lose my phone?",
            "What about annual billing?",
            "Also, can I export it?",
            "does it work offline?",
            "how long does that take?",
            "¿Y si pierdo el teléfono?",
            "Et si je perds mon téléphone ?",
            "Und wenn ich mein Handy verliere?",
            "E se eu perder o telefone?",
        ] {
            assert!(is_followup(t), "{t}");
        }
        for t in [
            "How do I turn on two-factor authentication?",
            "Can I export my invoices to CSV?",
            "I sent an invoice with the wrong amount and there's no delete button. How do I fix this?",
            "Where do I change my billing address?",
        ] {
            assert!(!is_followup(t), "{t}");
        }
    }

    #[test]
    fn the_previous_question_comes_with_the_follow_up() {
        let history = vec![
            said(Role::Customer, "hi"),
            said(Role::Assistant, "Hello! What can I help you with today?"),
            said(
                Role::Customer,
                "Hi, how do I turn on two-factor authentication?",
            ),
            said(Role::Assistant, "Go to Settings → Security."),
        ];
        assert_eq!(
            query("and what if I lose my phone?", &history).as_deref(),
            Some("how do I turn on two-factor authentication?\nand what if I lose my phone?")
        );
        assert_eq!(query("How do I export invoices?", &history), None);
        assert_eq!(query("and what if I lose my phone?", &[]), None);
        // Only pleasantries before: nothing to lean on.
        assert_eq!(query("and then?", &history[..2]), None);
    }
}
