//! What the customer actually wrote: HTML turned into text, then quoted
//! history, attribution lines ("On … wrote:", Outlook header blocks, in
//! several languages), signatures and mobile footers removed.
//!
//! Pure and linear in the input, so it is safe on hostile mail.

use std::sync::LazyLock;

use regex::Regex;

/// Longest attribution ("On …, X <x@y> wrote:") we look for, in lines.
const MAX_ATTRIBUTION_LINES: usize = 3;
/// … and in characters.
const MAX_ATTRIBUTION_CHARS: usize = 400;

/// Converts an HTML body to plain text: block elements become line breaks,
/// `<blockquote>` content is prefixed with `> ` (so quotes are recognized
/// as in plain text), scripts, styles and comments are dropped, entities
/// decoded, runs of white space collapsed.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut quote_depth = 0usize;
    let mut skip_until: Option<&'static str> = None;
    let mut rest = html;
    let mut pending_space = false;
    while !rest.is_empty() {
        if let Some(end_tag) = skip_until {
            match find_ci(rest, end_tag) {
                Some(i) => {
                    rest = &rest[i + end_tag.len()..];
                    rest = rest.split_once('>').map_or("", |(_, r)| r);
                    skip_until = None;
                }
                None => break,
            }
            continue;
        }
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.split_once("-->").map_or("", |(_, r)| r);
            continue;
        }
        if rest.starts_with('<') {
            let Some(close) = rest.find('>') else { break };
            let tag = &rest[1..close];
            rest = &rest[close + 1..];
            let closing = tag.starts_with('/');
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            match name.as_str() {
                "script" | "style" | "head" | "title" | "template" if !closing => {
                    skip_until = Some(match name.as_str() {
                        "script" => "</script",
                        "style" => "</style",
                        "head" => "</head",
                        "title" => "</title",
                        _ => "</template",
                    });
                }
                "blockquote" => {
                    newline(&mut out, quote_depth);
                    quote_depth = if closing {
                        quote_depth.saturating_sub(1)
                    } else {
                        (quote_depth + 1).min(32)
                    };
                    pending_space = false;
                }
                "br" => {
                    out.push('\n');
                    pending_space = false;
                }
                "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "ul"
                | "ol" | "table" | "hr" | "pre" | "dt" | "dd" | "section" | "article"
                | "header" | "footer" => {
                    newline(&mut out, quote_depth);
                    if name == "hr" {
                        out.push_str("________________________________\n");
                    }
                    pending_space = false;
                }
                "td" | "th" if !closing => pending_space = true,
                _ => {}
            }
            continue;
        }
        let next = rest.find('<').unwrap_or(rest.len());
        let chunk = &rest[..next];
        rest = &rest[next..];
        let decoded = decode_entities(chunk);
        if decoded.starts_with(char::is_whitespace) {
            pending_space = true;
        }
        for (n, word) in decoded.split_whitespace().enumerate() {
            if n > 0 {
                pending_space = true;
            }
            if out.is_empty() || out.ends_with('\n') {
                for _ in 0..quote_depth {
                    out.push_str("> ");
                }
            } else if pending_space {
                out.push(' ');
            }
            out.push_str(word);
            pending_space = false;
        }
        if decoded.ends_with(char::is_whitespace) {
            pending_space = true;
        }
    }
    tidy(&out)
}

fn newline(out: &mut String, _depth: usize) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

/// Case-insensitive ASCII search.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.len() > h.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .map(|e| e + 1);
        let decoded = end.filter(|&e| e > 1 && e < 12).and_then(|e| {
            let name = &rest[1..e];
            let ch = if let Some(num) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X"))
            {
                u32::from_str_radix(num, 16).ok().and_then(char::from_u32)
            } else if let Some(num) = name.strip_prefix('#') {
                num.parse::<u32>().ok().and_then(char::from_u32)
            } else {
                named_entity(name)
            }?;
            let skip = if rest[e..].starts_with(';') { e + 1 } else { e };
            Some((ch, skip))
        });
        match decoded {
            Some((ch, skip)) => {
                out.push(ch);
                rest = &rest[skip..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn named_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "copy" => '©',
        "reg" => '®',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "euro" => '€',
        "pound" => '£',
        "eacute" => 'é',
        "egrave" => 'è',
        "agrave" => 'à',
        "aacute" => 'á',
        "iacute" => 'í',
        "oacute" => 'ó',
        "uacute" => 'ú',
        "ntilde" => 'ñ',
        "ccedil" => 'ç',
        "auml" => 'ä',
        "ouml" => 'ö',
        "uuml" => 'ü',
        "szlig" => 'ß',
        "bull" => '•',
        "middot" => '·',
        _ => return None,
    })
}

/// Trailing white space off every line, at most one blank line in a row,
/// no blank lines at either end.
pub fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0usize;
    for line in text.replace("\r\n", "\n").replace('\r', "\n").lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

/// The start of an attribution line in the languages mail clients speak.
static ATTRIBUTION_OPENER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(on|le|am|el|il|em|op|den|på|w|dne|\d+)\b").expect("static regex")
});
/// The verb of an attribution ("wrote", "a écrit", raw quoted-printable too).
static ATTRIBUTION_VERB: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(wrote|writes|a\s+\S*crit|schrieb|escribi\S*|ha\s+scritto|schreef|escreveu|skrev|napisa\S*|kirjoitti|написал\S*|a\s+scris)\b",
    )
    .expect("static regex")
});
/// A time or an address: what makes an attribution certain even without
/// `>` quoting below it (Gmail and Outlook HTML).
static ATTRIBUTION_STRONG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d{1,2}[:.]\d{2}|@|\d{4}").expect("static regex"));
/// Gmail's verbless form: `2017-12-22 10:35 GMT-02:00 Name <a@b>:`.
static ISO_ATTRIBUTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*\d{4}-\d{2}-\d{2}\b.*>\s*:\s*$").expect("static regex"));
/// A header field of a quoted message (Outlook and friends), by language.
static HEADER_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*\*?\s*(from|sent|date|to|cc|subject|reply-to|de|von|van|da|od|från|fra|envoyé|envoy\S*|à|a|objet|para|enviada em|enviado|assunto|asunto|gesendet|an|betreff|datum|inviato|oggetto|data|verzonden|onderwerp|aan|skickat|till|ämne|sendt|emne|til)\s*\*?\s*:",
    )
    .expect("static regex")
});
static FROM_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*\*?\s*(from|de|von|van|da|od|från|fra)\s*\*?\s*:").expect("static regex")
});
static ONE_LINE_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(date|sent):.*\bfrom:.*\b(to|subject):").expect("static regex")
});
static ORIGINAL_MESSAGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original|messaggio originale|oorspronkelijk bericht|mensagem original)\s*-{2,}",
    )
    .expect("static regex")
});
static RULE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*(-{10,}|_{10,}|={10,})\s*$").expect("static regex"));
static MOBILE_FOOTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(sent from my|sent from|sent with|get outlook for|envoyé de mon|envoyé depuis|enviado desde mi|enviado do meu|inviato da|von meinem|verstuurd vanaf mijn|skickat från min)\s[\w ]{1,30}(gesendet)?\.?\s*$",
    )
    .expect("static regex")
});
static VALEDICTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*((kind|best|warm|warmest|many|with kind|with best)?\s*regards|cheers|best|best wishes|sincerely|yours sincerely|yours truly|cordialement|bien cordialement|mit freundlichen grüßen|mit freundlichen grüssen|viele grüße|beste grüße|saludos|un saludo|atentamente|cordiali saluti|distinti saluti|med venlig hilsen|venlig hilsen|mvh|met vriendelijke groet|vriendelijke groet|med vänliga hälsningar|atenciosamente|abraços)\s*([/|]\s*((kind|best|warm)?\s*regards|cheers))?[,.!]?\s*$",
    )
    .expect("static regex")
});

fn is_quoted(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

/// If an attribution starts at `lines[i]`, how many lines it spans.
fn attribution_at(lines: &[&str], i: usize) -> Option<usize> {
    if !ATTRIBUTION_OPENER.is_match(lines[i]) || is_quoted(lines[i]) {
        return None;
    }
    let mut joined = String::new();
    for (k, line) in lines[i..].iter().take(MAX_ATTRIBUTION_LINES).enumerate() {
        if is_blank(line) {
            break;
        }
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(line.trim());
        if joined.len() > MAX_ATTRIBUTION_CHARS {
            return None;
        }
        let ends = joined.trim_end().ends_with(':');
        if ends && (ATTRIBUTION_VERB.is_match(&joined) || ISO_ATTRIBUTION.is_match(&joined)) {
            return Some(k + 1);
        }
    }
    None
}

/// Whether an attribution (of `span` lines at `i`) is certain on its own.
fn strong_attribution(lines: &[&str], i: usize, span: usize) -> bool {
    lines[i..i + span]
        .iter()
        .any(|l| ATTRIBUTION_STRONG.is_match(l))
}

/// Whether a quoted message's header block (From:/Sent:/To:…) starts here.
fn header_block_at(lines: &[&str], i: usize) -> bool {
    let line = lines[i];
    if ONE_LINE_HEADER.is_match(line) {
        return true;
    }
    if !HEADER_FIELD.is_match(line) {
        return false;
    }
    let is_from = FROM_FIELD.is_match(line);
    let starts_date = line.trim_start().to_ascii_lowercase().starts_with("date:");
    if !(is_from || starts_date) {
        return false;
    }
    // Another field must follow within a few lines (a lone "From: foo" in
    // prose is not a header block).
    lines[i + 1..]
        .iter()
        .take(4)
        .take_while(|l| !is_blank(l))
        .filter(|l| HEADER_FIELD.is_match(l))
        .count()
        >= 1
}

/// A separator line: "-----Original Message-----", or a long rule that is
/// not part of a table (the line above it is not indented).
fn separator_at(lines: &[&str], i: usize) -> bool {
    if ORIGINAL_MESSAGE.is_match(lines[i]) {
        return true;
    }
    if !RULE.is_match(lines[i]) {
        return false;
    }
    let above_indented =
        i > 0 && lines[i - 1].starts_with(char::is_whitespace) && !is_blank(lines[i - 1]);
    let below_indented = lines
        .get(i + 1)
        .is_some_and(|l| l.starts_with(char::is_whitespace) && !is_blank(l));
    !(above_indented || below_indented)
}

/// The customer's own words of a plain-text reply.
///
/// `sender_name` (the From display name) lets an undelimited signature
/// that starts with the sender's name be removed.
pub fn strip_reply(text: &str, sender_name: Option<&str>) -> String {
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = normalized.split('\n').collect();
    let mut kept: Vec<&str> = Vec::with_capacity(lines.len());
    let mut has_content = false;
    let mut i = 0;
    'scan: while i < lines.len() {
        let line = lines[i];
        if let Some(span) = attribution_at(&lines, i) {
            // Blank lines, then a `>` block: drop both and go on (bottom
            // posting and inline replies keep what follows).
            let mut j = i + span;
            while j < lines.len() && is_blank(lines[j]) {
                j += 1;
            }
            if j < lines.len() && is_quoted(lines[j]) {
                while j < lines.len() && (is_quoted(lines[j]) || is_blank(lines[j])) {
                    j += 1;
                }
                i = j;
                continue 'scan;
            }
            if j >= lines.len() || strong_attribution(&lines, i, span) {
                break 'scan;
            }
        }
        if header_block_at(&lines, i) || separator_at(&lines, i) {
            break 'scan;
        }
        if is_quoted(line) {
            i += 1;
            continue;
        }
        let trimmed = line.trim();
        if trimmed == "--" || trimmed == "-- " || line == "-- " || trimmed == "—" {
            break 'scan;
        }
        if MOBILE_FOOTER.is_match(line) {
            break 'scan;
        }
        if VALEDICTION.is_match(line) && tail_is_short(&lines[i + 1..]) {
            break 'scan;
        }
        if let Some(name) = sender_name
            && has_content
            && starts_with_name(trimmed, name)
            && tail_is_short(&lines[i + 1..])
        {
            break 'scan;
        }
        has_content |= !trimmed.is_empty();
        kept.push(line);
        i += 1;
    }
    tidy(&kept.join("\n"))
}

/// What follows a signature start: a few short lines at most.
fn tail_is_short(rest: &[&str]) -> bool {
    let mut n = 0;
    for line in rest.iter().filter(|l| !is_blank(l)) {
        n += 1;
        if n > 6 || line.chars().count() > 80 {
            return false;
        }
    }
    true
}

/// Whether `line` starts with `name` ("Jim Smith"), a middle initial
/// ("Jim P. Smith") allowed.
fn starts_with_name(line: &str, name: &str) -> bool {
    let parts: Vec<&str> = name.split_whitespace().collect();
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return false;
    };
    if parts.len() < 2 {
        return false;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let eq = |a: &str, b: &str| {
        a.trim_matches(|c: char| !c.is_alphanumeric())
            .eq_ignore_ascii_case(b)
    };
    match words.as_slice() {
        [a, b, ..] if eq(a, first) && eq(b, last) => true,
        [a, m, b, ..] if eq(a, first) && m.len() <= 2 && m.ends_with('.') && eq(b, last) => true,
        _ => false,
    }
}

/// The display name of a `Name <addr>` string, if any.
pub fn display_name(from: &str) -> Option<&str> {
    let (name, _) = from.split_once('<')?;
    let name = name.trim().trim_matches('"').trim();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_posted_replies_in_several_languages() {
        let cases = [
            "Thanks!\n\nOn Mon, Jan 1, 2024 at 10:00 AM Support <help@x.com> wrote:\n> How can we help?\n",
            "Merci !\n\nLe lun. 1 janv. 2024 à 10:00, Support <help@x.com> a écrit :\n> Bonjour\n",
            "Danke!\n\nAm Mo., 1. Jan. 2024 um 10:00 Uhr schrieb Support <help@x.com>:\n> Hallo\n",
            "¡Gracias!\n\nEl lun, 1 ene 2024 a las 10:00, Support (<help@x.com>) escribió:\n> Hola\n",
        ];
        for c in cases {
            let got = strip_reply(c, None);
            assert!(
                !got.contains('>') && !got.contains("wrote") && got.lines().count() == 1,
                "{c:?} → {got:?}"
            );
        }
    }

    #[test]
    fn outlook_blocks_signatures_and_footers() {
        let outlook = "Please cancel my plan.\n\n-----Original Message-----\nFrom: Support\nSent: Monday\nTo: Ann\nSubject: Re: plan\n\nHello Ann";
        assert_eq!(strip_reply(outlook, None), "Please cancel my plan.");
        let block = "Yes please.\n\nFrom: Support <help@x.com>\nSent: Monday, 1 January 2024 10:00\nTo: Ann\nSubject: plan\n\nHello";
        assert_eq!(strip_reply(block, None), "Yes please.");
        assert_eq!(
            strip_reply("Is it down?\n\nSent from my iPhone", None),
            "Is it down?"
        );
        assert_eq!(
            strip_reply("Is it down?\n-- \nAnn\n+1 555", None),
            "Is it down?"
        );
        assert_eq!(
            strip_reply(
                "Sent from my desk, is much easier then my mobile phone.",
                None
            ),
            "Sent from my desk, is much easier then my mobile phone."
        );
        assert_eq!(
            strip_reply("Help!\n\nBest regards,\nAnn Lee\nACME", None),
            "Help!"
        );
    }

    #[test]
    fn html_becomes_text_with_quotes_marked() {
        let html = "<html><head><style>p{}</style></head><body><div>Hi&nbsp;there &amp; all</div><div><br></div>\
                    <div class=\"gmail_quote\"><div>On Mon, Jan 1, 2024 at 10:00 AM Support &lt;help@x.com&gt; wrote:<br></div>\
                    <blockquote>How can we <b>help</b>?</blockquote></div><script>alert(1)</script></body></html>";
        let text = html_to_text(html);
        assert!(text.starts_with("Hi there & all"), "{text:?}");
        assert!(text.contains("> How can we help?"), "{text:?}");
        assert!(!text.contains("alert") && !text.contains("p{}"), "{text:?}");
        assert_eq!(strip_reply(&text, None), "Hi there & all");
        assert_eq!(html_to_text("&#233;&#x41;&bogus;&"), "éA&bogus;&");
    }

    #[test]
    fn hostile_input_is_linear_and_safe() {
        let long = ">".repeat(500_000);
        let t = std::time::Instant::now();
        strip_reply(&format!("Hi\n{long}\n"), Some("A B"));
        html_to_text(&"<blockquote>".repeat(100_000));
        html_to_text(&"<".repeat(100_000));
        html_to_text("<a href='x'");
        strip_reply(&"On x\n".repeat(100_000), None);
        assert!(t.elapsed().as_secs() < 5, "{:?}", t.elapsed());
    }
}
