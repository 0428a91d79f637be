//! HTML form bodies, as Mailgun and SendGrid post them:
//! `multipart/form-data` (parsed with the same MIME parser as mail) or
//! `application/x-www-form-urlencoded`. Pure: bytes in, fields out.

use mail_parser::{MessageParser, MimeHeaders};

/// One uploaded file, described but not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePart {
    /// The form field's name (`attachment-1`, `attachment1`).
    pub field: String,
    /// The file name as sent.
    pub filename: String,
    /// Its MIME type as sent.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A parsed form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    /// Text fields in order; a name may repeat.
    pub fields: Vec<(String, String)>,
    /// File fields.
    pub files: Vec<FilePart>,
}

impl Form {
    /// Parses `body` according to its `Content-Type`.
    pub fn parse(content_type: &str, body: &[u8]) -> Result<Self, String> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "multipart/form-data" => Self::multipart(content_type, body),
            "application/x-www-form-urlencoded" => Ok(Self::urlencoded(body)),
            "" => Err("the Content-Type header is missing; expected multipart/form-data or application/x-www-form-urlencoded".into()),
            other => Err(format!(
                "Content-Type is {other:?}; expected multipart/form-data or application/x-www-form-urlencoded"
            )),
        }
    }

    /// `a=1&b=2`.
    pub fn urlencoded(body: &[u8]) -> Self {
        Self {
            fields: form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            files: Vec::new(),
        }
    }

    /// `multipart/form-data; boundary=…`.
    pub fn multipart(content_type: &str, body: &[u8]) -> Result<Self, String> {
        let boundary = content_type
            .split(';')
            .skip(1)
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
            .map(|(_, v)| v.trim().trim_matches('"'))
            .filter(|b| !b.is_empty() && b.len() <= 200 && !b.contains(['\r', '\n']))
            .ok_or("multipart/form-data without a boundary parameter")?;
        let opening = format!("--{boundary}");
        if !body.windows(opening.len()).any(|w| w == opening.as_bytes()) {
            return Err("the multipart body does not contain its boundary".into());
        }
        // A form is a MIME multipart: give it a header and let the mail
        // parser (already hardened against hostile mail) split it.
        let mut raw = format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/form-data; boundary=\"{boundary}\"\r\n\r\n"
        )
        .into_bytes();
        raw.extend_from_slice(body);
        let message = MessageParser::default()
            .parse(&raw)
            .ok_or("the multipart body could not be parsed")?;
        let mut form = Form::default();
        for part in message.parts.iter().skip(1) {
            let Some(disposition) = part.content_disposition() else {
                continue;
            };
            let Some(name) = disposition.attribute("name") else {
                continue;
            };
            let filename = disposition.attribute("filename");
            let content_type = part.content_type().map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_owned(),
            });
            if let Some(filename) = filename {
                form.files.push(FilePart {
                    field: name.to_owned(),
                    filename: filename.to_owned(),
                    content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
                    size: part.contents().len() as u64,
                });
            } else {
                let value = match part.text_contents() {
                    Some(t) => t.to_owned(),
                    None => String::from_utf8_lossy(part.contents()).into_owned(),
                };
                form.fields.push((name.to_owned(), value));
            }
        }
        Ok(form)
    }

    /// The first value of field `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_fields() {
        let f = Form::parse(
            "application/x-www-form-urlencoded",
            b"a=1&b=x+y&c=%C3%A9&a=2",
        )
        .unwrap();
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get("b"), Some("x y"));
        assert_eq!(f.get("c"), Some("é"));
    }

    #[test]
    fn multipart_fields_and_files() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nHello é\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"attachment-1\"; filename=\"a.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4 abc\r\n\
                    --XyZ--\r\n";
        let f = Form::parse("multipart/form-data; boundary=XyZ", body.as_bytes()).unwrap();
        assert_eq!(f.get("subject"), Some("Hello é"));
        assert_eq!(f.files.len(), 1);
        assert_eq!(f.files[0].filename, "a.pdf");
        assert_eq!(f.files[0].content_type, "application/pdf");
        assert_eq!(f.files[0].size, 12);
    }

    #[test]
    fn bad_forms_say_why() {
        assert!(
            Form::parse("multipart/form-data", b"x")
                .unwrap_err()
                .contains("boundary")
        );
        assert!(
            Form::parse("multipart/form-data; boundary=q", b"x")
                .unwrap_err()
                .contains("boundary")
        );
        assert!(
            Form::parse("text/plain", b"x")
                .unwrap_err()
                .contains("text/plain")
        );
        assert!(Form::parse("", b"x").unwrap_err().contains("missing"));
    }
}
