//! Raw MIME (RFC 5322) with mail-parser: charsets, encoded words,
//! quoted-printable and base64 decoded; HTML-only mail kept as HTML for
//! [`super::normalize`] to convert.

use mail_parser::{HeaderValue, MessageParser, MimeHeaders, PartType};

use super::{Email, message_id, message_ids};
use crate::domain::Attachment;
use crate::ingest::IngestError;

fn id_list(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => message_ids(&format!("<{t}>")),
        HeaderValue::TextList(list) => list
            .iter()
            .flat_map(|t| message_ids(&format!("<{t}>")))
            .take(50)
            .collect(),
        _ => Vec::new(),
    }
}

/// Parses a raw message.
pub fn parse(raw: &[u8]) -> Result<Email, IngestError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| IngestError::Malformed("the body is not a MIME message".into()))?;
    if message.headers().is_empty() {
        return Err(IngestError::Malformed(
            "the body is not a MIME message: it has no header fields".into(),
        ));
    }
    let headers: Vec<(String, String)> = message
        .headers_raw()
        .take(500)
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if !headers.iter().any(|(k, _)| {
        matches!(
            k.as_str(),
            "from" | "message-id" | "subject" | "to" | "date"
        )
    }) {
        return Err(IngestError::Malformed(
            "the body is not an email: it has none of From, To, Subject, Date, Message-ID".into(),
        ));
    }
    let from = message.from().and_then(|a| a.first());
    let mut recipients: Vec<String> = message
        .to()
        .into_iter()
        .chain(message.cc())
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address().map(str::to_owned))
        .take(100)
        .collect();
    for (k, v) in &headers {
        if matches!(k.as_str(), "delivered-to" | "x-original-to" | "envelope-to") {
            recipients.push(v.clone());
        }
    }
    let mut text = None;
    let mut html = None;
    if let Some(part) = message.text_part(0) {
        match &part.body {
            PartType::Text(t) => text = Some(t.to_string()),
            PartType::Html(h) => html = Some(h.to_string()),
            _ => {}
        }
    }
    if html.is_none()
        && let Some(part) = message.html_part(0)
        && let PartType::Html(h) = &part.body
    {
        html = Some(h.to_string());
    }
    let attachments = message
        .attachments()
        .take(50)
        .map(|p| Attachment {
            name: p
                .attachment_name()
                .unwrap_or("unnamed")
                .chars()
                .take(255)
                .collect(),
            content_type: p
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(s) => format!("{}/{}", ct.ctype(), s),
                    None => ct.ctype().to_owned(),
                })
                .unwrap_or_else(|| "application/octet-stream".into()),
            size: p.contents().len() as u64,
        })
        .collect();
    Ok(Email {
        message_id: message.message_id().and_then(message_id),
        in_reply_to: id_list(message.in_reply_to()),
        references: id_list(message.references()),
        from: from.and_then(|a| a.address()).map(str::to_owned),
        from_name: from.and_then(|a| a.name()).map(str::to_owned),
        recipients,
        subject: message.subject().map(str::to_owned),
        text,
        html,
        headers,
        attachments,
        mailbox_hash: None,
        auth: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_a_reason() {
        for bad in [
            &b""[..],
            b"\x00\x01\x02",
            b"hello world",
            b"\xff\xfe\xfd\n\n\n",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("not"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn charsets_and_encoded_words_are_decoded() {
        let raw = "From: =?ISO-8859-1?Q?Andr=E9?= <andre@example.fr>\r\nTo: help@acme.test\r\n\
                   Subject: =?UTF-8?B?w4fDoCBuZSBtYXJjaGUgcGFz?=\r\nMessage-ID: <m1@example.fr>\r\n\
                   In-Reply-To: <r0@acme.test>\r\nReferences: <r-1@acme.test> <r0@acme.test>\r\n\
                   Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                   Le mot de passe ne fonctionne pas, d=E9sol=E9.\r\n";
        let e = parse(raw.as_bytes()).unwrap();
        assert_eq!(e.from_name.as_deref(), Some("André"));
        assert_eq!(e.subject.as_deref(), Some("Çà ne marche pas"));
        assert!(e.text.unwrap().contains("désolé"));
        assert_eq!(e.message_id.as_deref(), Some("<m1@example.fr>"));
        assert_eq!(e.references, vec!["<r-1@acme.test>", "<r0@acme.test>"]);
        assert_eq!(e.in_reply_to, vec!["<r0@acme.test>"]);
    }
}
