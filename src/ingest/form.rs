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
        let boundary = boundary(content_type)?;
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

    /// Only the text fields named in `names` (first value of each), found
    /// without decoding the rest of the body: one linear scan, no MIME
    /// parse, so a sender's signature can be checked before the form costs
    /// anything. A field this view cannot read as plain text (encoded, a
    /// file, a parameter continuation) is left out, never guessed.
    pub fn fields_only(content_type: &str, body: &[u8], names: &[&str]) -> Result<Self, String> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let mut form = Form::default();
        let want = |name: &str, value: &[u8], form: &mut Form| {
            if names.contains(&name)
                && form.get(name).is_none()
                && let Ok(v) = std::str::from_utf8(value)
            {
                form.fields.push((name.to_owned(), v.to_owned()));
            }
            form.fields.len() == names.len()
        };
        match essence.as_str() {
            "application/x-www-form-urlencoded" => {
                let longest = names.iter().map(|n| n.len()).max().unwrap_or(0);
                for pair in body.split(|b| *b == b'&') {
                    let (k, v) = match memchr::memchr(b'=', pair) {
                        Some(i) => (&pair[..i], &pair[i + 1..]),
                        None => (pair, &pair[..0]),
                    };
                    // Names are short: a long key is not one of them
                    // (and is not decoded).
                    if k.len() > 3 * longest {
                        continue;
                    }
                    let k = decode(k);
                    if names.contains(&k.as_str())
                        && form.get(&k).is_none()
                        && want(&k, decode(v).as_bytes(), &mut form)
                    {
                        break;
                    }
                }
                Ok(form)
            }
            "multipart/form-data" => {
                let boundary = boundary(content_type)?;
                let delimiter = format!("--{boundary}");
                let finder = memchr::memmem::Finder::new(delimiter.as_bytes());
                // Delimiters at the start of a line; each part runs from
                // the end of one delimiter line to the line break before
                // the next.
                let starts: Vec<usize> = finder
                    .find_iter(body)
                    .filter(|&i| i == 0 || body[i - 1] == b'\n')
                    .collect();
                for pair in starts.windows(2) {
                    let (from, to) = (pair[0] + delimiter.len(), pair[1]);
                    let part = &body[from..to];
                    let Some(nl) = memchr::memchr(b'\n', part) else {
                        continue;
                    };
                    let part = &part[nl + 1..];
                    let part = part
                        .strip_suffix(b"\r\n")
                        .or_else(|| part.strip_suffix(b"\n"))
                        .unwrap_or(part);
                    if let Some((name, value)) = plain_field(part)
                        && want(name, value, &mut form)
                    {
                        break;
                    }
                }
                Ok(form)
            }
            _ => Self::parse(content_type, &[]).map(|_| form),
        }
    }

    /// The first value of field `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The `boundary` parameter of a multipart `Content-Type`.
fn boundary(content_type: &str) -> Result<&str, String> {
    content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|b| !b.is_empty() && b.len() <= 200 && !b.contains(['\r', '\n']))
        .ok_or_else(|| "multipart/form-data without a boundary parameter".to_owned())
}

/// `%41+b` → `A b`.
fn decode(raw: &[u8]) -> String {
    form_urlencoded::parse(raw)
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

/// A part's field name and raw value, when it is a plain text field: a
/// `form-data` disposition with a simple `name` and no `filename`, and no
/// transfer encoding. Its header block must end within 4 KB.
fn plain_field(part: &[u8]) -> Option<(&str, &[u8])> {
    const MAX_HEADERS: usize = 4096;
    let head = &part[..part.len().min(MAX_HEADERS)];
    let (end, sep) = match memchr::memmem::find(head, b"\r\n\r\n") {
        Some(i) => (i, 4),
        None => (memchr::memmem::find(head, b"\n\n")?, 2),
    };
    let headers = std::str::from_utf8(&part[..end]).ok()?;
    let mut name = None;
    for line in headers.lines() {
        let (k, v) = line.split_once(':')?;
        let k = k.trim();
        if k.eq_ignore_ascii_case("content-transfer-encoding")
            && !["7bit", "8bit", "binary"]
                .iter()
                .any(|e| v.trim().eq_ignore_ascii_case(e))
        {
            return None;
        }
        if k.eq_ignore_ascii_case("content-disposition") {
            let mut params = v.split(';');
            if !params.next()?.trim().eq_ignore_ascii_case("form-data") {
                return None;
            }
            for p in params {
                let (pk, pv) = p.split_once('=')?;
                match pk.trim().to_ascii_lowercase().as_str() {
                    "name" => name = Some(pv.trim().trim_matches('"')),
                    // A file, or a name in RFC 2231 pieces: not a plain field.
                    "filename" | "filename*" | "name*" => return None,
                    _ => {}
                }
            }
        }
    }
    Some((name?, &part[end + sep..]))
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

    #[test]
    fn fields_only_reads_the_named_plain_fields_and_nothing_else() {
        let f = Form::fields_only(
            "application/x-www-form-urlencoded",
            b"body-plain=hello&token=t%41+b&timestamp=1&token=second&signature=ab",
            &["timestamp", "token", "signature"],
        )
        .unwrap();
        assert_eq!(f.get("token"), Some("tA b"));
        assert_eq!(f.get("timestamp"), Some("1"));
        assert_eq!(f.get("body-plain"), None);
        let body = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"token\"; filename=\"t\"\r\n\r\nfile\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"signature\"\r\nContent-Transfer-Encoding: base64\r\n\r\nYWI=\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"timestamp\"\r\n\r\n1700000000\r\n\
                    --XyZ\nContent-Disposition: form-data; name=token\n\ntok\n\
                    --XyZ--\r\n";
        let ct = "multipart/form-data; boundary=XyZ";
        let f =
            Form::fields_only(ct, body.as_bytes(), &["timestamp", "token", "signature"]).unwrap();
        assert_eq!(f.get("timestamp"), Some("1700000000"));
        // The file named `token` is not the field; the plain one is.
        assert_eq!(f.get("token"), Some("tok"));
        // An encoded field is left out, not guessed.
        assert_eq!(f.get("signature"), None);
        // The full parse agrees on what both read.
        let full = Form::parse(ct, body.as_bytes()).unwrap();
        assert_eq!(full.get("timestamp"), f.get("timestamp"));
        assert_eq!(full.get("token"), f.get("token"));
        assert!(Form::fields_only("text/plain", b"", &["token"]).is_err());
    }
}
