//! What the customer actually wrote: HTML turned into text, then quoted
//! history, attribution lines ("On … wrote:", Outlook header blocks, in
//! several languages), signatures and mobile footers removed.
//!
//! Quoted history is found by structure more than by wording: an
//! attribution is a short line (at most three) ending in a colon with an
//! attribution verb, or with an address and a date, or any such line with
//! a `>` block under it; header blocks are three `Field:` lines (or a
//! From/Date line and one more) in any of the languages listed; `>` lines
//! take the hard-wrapped tails of their lines with them. The customer's
//! words are kept where it is unclear: a message they forwarded is their
//! question (kept as a `> ` block under `Forwarded message:`), a `>` block
//! between two parts of their text is a citation, a rule between table
//! rows is a table.
//!
//! Pure and linear in the input (regexes are the `regex` crate's, without
//! backtracking; every lookahead is bounded), so it is safe on hostile mail.

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

/// The start of an attribution line in the languages mail clients speak
/// (a date or weekday first counts too: Korean, Japanese, Finnish…).
static ATTRIBUTION_OPENER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^[\s\-]*(on|le|am|el|il|em|op|den|på|w|dne|dnia|vào|в|в\s+\S+|\d+|在)(\b|\s|$)",
    )
    .expect("static regex")
});
/// The same openers inside a line, after the end of a sentence: the
/// attribution glued to the reply's last words ("Thanks! On … wrote:").
static INLINE_OPENER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[.!?…)]\s+(on|le|am|el|il|em|op|den)\s").expect("static regex")
});
/// The verb of an attribution ("wrote", "a écrit", raw quoted-printable
/// too), in the languages mail clients speak.
static ATTRIBUTION_VERB: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(\b(wrote|writes|sent|a\s+\S*crit|schrieb|escribi\S*|ha\s+scritto|scrisse|het\s+volgende\s+geschreven|schreef|escreveu|skrev|napisa\S*|kirjoitti|написал\S*|пишет|a\s+scris|đã\s+viết|yazdı|napsal\S*|írta|έγραψε)|のメッセージ|写道|寫道|님이\s*작성)",
    )
    .expect("static regex")
});
/// A time or an address: what makes an attribution certain even without
/// `>` quoting below it (Gmail and Outlook HTML).
static ATTRIBUTION_STRONG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d{1,2}[:.]\d{2}|@|\d{4}").expect("static regex"));
/// An e-mail address.
static ADDRESS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\w.+-]+@[\w-]+\.[\w.-]+").expect("static regex"));
/// A line ending with an address and a colon: the verbless attribution of
/// Gmail (Russian, Japanese, ISO dates), Yandex, Mail.ru and old Outlook.
static ADDRESS_COLON_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[\w.+-]+@[\w-]+\.[\w.-]+\s*>?\s*\)?\s*[:：]$").expect("static regex")
});
/// A time of day.
static TIME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d{1,2}[:.]\d{2}\b").expect("static regex"));
/// A date: digits with separators, a CJK date, or a year.
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\d{1,4}\s*[./年-]\s*\d{1,2}|\b(19|20)\d{2}\b|\d{4}년").expect("static regex")
});
/// Old Gmail's attribution without a verb or a colon: `2011/4/7 Name <a@b>`.
static SLASHED_DATE_ATTRIBUTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d{4}/\d{1,2}/\d{1,2}\b.*@[^\s<>]+>$").expect("static regex"));
/// A header field of a quoted message (Outlook and friends), by language.
static HEADER_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*\*?\s*(from|sent|date|to|cc|subject|reply-to|de|von|van|da|od|från|fra|envoyé|envoy\S*|à|a|pour|objet|sujet|copie à|para|enviada em|enviado el|enviado|fecha|assunto|asunto|gesendet|an|betreff|datum|inviato|oggetto|data|verzonden|onderwerp|aan|skickat|till|ämne|sendt|dato|emne|til|от|отправлено|дата|кому|копия|тема|wysłano|do|temat|lähettäjä|lähetetty|vastaanottaja|aihe|发件人|发送时间|收件人|抄送|主题|寄件者|差出人|送信日時|宛先|件名|보낸\s*사람|보낸\s*날짜|받는\s*사람|제목)\s*\*?\s*[:：]",
    )
    .expect("static regex")
});
/// The fields a quoted header block starts with: who, or when.
static FROM_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*\*?\s*((from|de|von|van|da|od|från|fra|от|lähettäjä|发件人|寄件者|差出人|보낸\s*사람|date|datum|data|dato|fecha|дата)\s*\*?\s*[:：]|message du\b)",
    )
    .expect("static regex")
});
/// A Subject field whose value says the message was forwarded.
static FORWARDED_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*\*?\s*(subject|objet|sujet|betreff|asunto|assunto|oggetto|onderwerp|ämne|emne|тема|temat|aihe)\s*\*?\s*[:：]\s*(fwd?|wg|tr|rv|enc|i|doorst|vs|vb|fw|пересл)\s*:",
    )
    .expect("static regex")
});
static ONE_LINE_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(date|sent):.*\bfrom:.*\b(to|subject):").expect("static regex")
});
/// "-----Original Message-----" and its kin, by language.
static ORIGINAL_MESSAGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*-{2,}\s*(original message|original e-?mail|reply message|antwort nachricht|ursprüngliche nachricht|originalnachricht|message d'origine|message original|mensaje original|messaggio originale|oorspronkelijk bericht|origineel bericht|mensagem original|oprindelig meddelelse|oprindelig besked|opprinnelig melding|ursprungligt meddelande|alkuperäinen viesti|wiadomość oryginalna|oryginalna wiadomość|původní zpráva|исходное сообщение|원본 메시지|原始邮件|原始郵件|元のメッセージ)\s*-{2,}",
    )
    .expect("static regex")
});
/// The line that opens a forwarded message, by language and client.
static FORWARD_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*-*\s*(begin forwarded message|forwarded message|forwarded e-?mail|original message forwarded|weitergeleitete nachricht|anfang der weitergeleiteten nachricht|message transféré|début du message réexpédié|mensaje reenviado|inicio del mensaje reenviado|mensagem encaminhada|início da mensagem reencaminhada|messaggio inoltrato|inizio messaggio inoltrato|doorgestuurd bericht|begin doorgestuurd bericht|videresendt meddelelse|videresendt melding|vidarebefordrat meddelande|välitetty viesti|przekazana wiadomość|wiadomość przekazana|пересылаемое сообщение|пересланное сообщение|転送されたメッセージ|转发的邮件|轉寄的郵件|전달된 메시지)\s*-*\s*[:：]?\s*$",
    )
    .expect("static regex")
});
static RULE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*(-{10,}|_{10,}|={10,})\s*$").expect("static regex"));
static MOBILE_FOOTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(sent from|sent with|sent via|get outlook for|envoyé de|envoyé depuis|envoyé à partir de|envoyé avec|enviado desde|enviado do|enviado de|inviato da|von meinem|gesendet von|gesendet mit|verzonden vanaf|verzonden met|verstuurd vanaf|skickat från|sendt fra|lähetetty|wysłane z|отправлено с|надіслано з)\s[\w '’.-]{1,40}\.?\s*(<[^<>\s]{1,300}>)?\s*$",
    )
    .expect("static regex")
});
/// The footers of Japanese, Chinese and Korean mobile mail.
static CJK_MOBILE_FOOTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*(iPhoneから送信|从我的\s?iPhone发送|發自我的\s?iPhone|나의\s?iPhone에서\s?보냄)\s*$",
    )
    .expect("static regex")
});
static VALEDICTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*((kind|best|warm|warmest|many|with kind|with best)?\s*regards|cheers|best|best wishes|sincerely|yours sincerely|yours truly|cordialement|bien cordialement|mit freundlichen grüßen|mit freundlichen grüssen|viele grüße|beste grüße|saludos|un saludo|atentamente|cordiali saluti|distinti saluti|med venlig hilsen|venlig hilsen|mvh|met vriendelijke groet|vriendelijke groet|med vänliga hälsningar|atenciosamente|abraços)\s*([/|]\s*((kind|best|warm)?\s*regards|cheers))?[,.!]?\s*$",
    )
    .expect("static regex")
});

/// A `>` line. `>>> https://… <<<` (arrows around a link) is not a quote.
fn is_quoted(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('>') && !(t.starts_with(">>") && t.ends_with("<<"))
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

/// How sure an attribution is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Strength {
    /// Quoted history follows even without `>` lines.
    Strong,
    /// Only when a `>` block follows.
    Weak,
    /// Only when a `>` block follows and runs to the end of the message.
    Tail,
}

/// Whether `text` (one attribution candidate, at most a few lines joined)
/// is an attribution; `first` is its first line.
fn classify(text: &str, first: &str, multi_line: bool) -> Option<Strength> {
    let t = text.trim();
    let dashed = t.starts_with("--") && t.ends_with("--");
    let core = t.trim_matches(|c: char| c == '-' || c.is_whitespace());
    let ends_colon = core.ends_with(':') || core.ends_with('：');
    // Every form below ends with a colon, is framed by dashes, or holds an
    // address: the cheap test first.
    if !(ends_colon || dashed || core.contains('@')) {
        return None;
    }
    let opener = ATTRIBUTION_OPENER.is_match(first);
    if multi_line && !opener {
        return None;
    }
    let address = ADDRESS.is_match(core);
    if let Some(m) = ATTRIBUTION_VERB.find_iter(core).last() {
        let tail = &core[m.end()..];
        let ends_with_verb = tail
            .trim_matches(|c: char| c == ':' || c == '：' || c.is_whitespace())
            .is_empty();
        if tail.len() <= 120 && (ends_colon || (ends_with_verb && (dashed || (opener && address))))
        {
            if dashed || address || (opener && ATTRIBUTION_STRONG.is_match(core)) {
                return Some(Strength::Strong);
            }
            return Some(Strength::Weak);
        }
    }
    let time = TIME.is_match(core);
    let date = DATE.is_match(core);
    if ends_colon && ADDRESS_COLON_END.is_match(core) && (time || date) {
        return Some(Strength::Strong);
    }
    if SLASHED_DATE_ATTRIBUTION.is_match(core) {
        return Some(Strength::Weak);
    }
    if ends_colon && (address || (time && date)) {
        return Some(Strength::Tail);
    }
    None
}

/// If an attribution starts at `lines[i]`, how many lines it spans and
/// how sure it is.
fn attribution_at(lines: &[&str], i: usize) -> Option<(usize, Strength)> {
    if is_quoted(lines[i]) || is_blank(lines[i]) {
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
        if let Some(s) = classify(&joined, lines[i], k > 0) {
            return Some((k + 1, s));
        }
    }
    None
}

/// A customer line with an attribution glued to its end is split in two
/// ("Thanks! On … wrote:" → "Thanks!", "On … wrote:"); other lines are
/// kept as they are.
fn split_inline_attributions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        if line.len() <= MAX_ATTRIBUTION_CHARS && !is_quoted(line) {
            let split = INLINE_OPENER.captures_iter(line).take(3).find_map(|c| {
                let at = c.get(1)?.start();
                let rest = &line[at..];
                (ADDRESS.is_match(rest) && classify(rest, rest, false) == Some(Strength::Strong))
                    .then_some(at)
            });
            if let Some(at) = split {
                out.push(line[..at].trim_end().to_owned());
                out.push(line[at..].to_owned());
                continue;
            }
        }
        out.push(line.to_owned());
    }
    out
}

/// The lines of a header block starting at `i` (stops at a blank line).
fn header_lines<'a>(lines: &'a [&'a str], i: usize) -> impl Iterator<Item = &'a &'a str> {
    lines[i..].iter().take(6).take_while(|l| !is_blank(l))
}

/// Whether a quoted message's header block (From:/Sent:/To:…) starts here.
fn header_block_at(lines: &[&str], i: usize) -> bool {
    let line = lines[i];
    if ONE_LINE_HEADER.is_match(line) {
        return true;
    }
    let own_field = HEADER_FIELD.is_match(line);
    let who_or_when = FROM_FIELD.is_match(line);
    if !(own_field || who_or_when) {
        return false;
    }
    let fields = header_lines(lines, i)
        .filter(|l| HEADER_FIELD.is_match(l))
        .count();
    // A lone "From: foo" in prose is not a header block: another field
    // must follow, or three fields in any order.
    (who_or_when && fields > usize::from(own_field)) || fields >= 3
}

/// Whether the header block at `i` is a forwarded message's ("Subject: Fwd:").
fn forwarded_header_block(lines: &[&str], i: usize) -> bool {
    header_lines(lines, i).any(|l| FORWARDED_SUBJECT.is_match(l))
}

/// A separator line: "-----Original Message-----", or a long rule that
/// does not rule a table (no line right above or below it is laid out in
/// columns).
fn separator_at(lines: &[&str], i: usize) -> bool {
    if ORIGINAL_MESSAGE.is_match(lines[i]) {
        return true;
    }
    if !RULE.is_match(lines[i]) {
        return false;
    }
    let above = i.checked_sub(1).map(|j| lines[j]);
    let below = lines.get(i + 1).copied();
    !(above.is_some_and(is_table_row) || below.is_some_and(is_table_row))
}

/// A line laid out in columns (indented, tabs, `|`, or a run of spaces
/// inside it).
fn is_table_row(line: &str) -> bool {
    !is_blank(line)
        && (line.starts_with(char::is_whitespace)
            || line.contains(['|', '\t'])
            || line.trim().contains("  "))
}

/// The content of a quoted line, without its `>` marks.
fn quote_content(line: &str) -> &str {
    line.trim_start_matches(|c: char| c == '>' || c.is_whitespace())
        .trim_end()
}

/// Width past which a mail client wraps a line (72 to 80 in practice).
const WRAP_WIDTH: usize = 70;

/// Whether `line` (not quoted) is the hard-wrapped tail of the quoted line
/// `above`: that one stops mid-sentence where the tail's first word would
/// have run past the wrap width, and the tail goes on in lower case or is
/// itself followed by more quoted lines. (A customer's answer typed right
/// under a short quoted question is not a tail.)
fn is_continuation(above: &str, line: &str, sandwiched: bool) -> bool {
    let width = above.trim_end().chars().count();
    let content = quote_content(above);
    let first_word = line
        .split_whitespace()
        .next()
        .map_or(0, |w| w.chars().count());
    let cut_mid_sentence = content.chars().count() >= 40
        && width + 1 + first_word > WRAP_WIDTH
        && !content.ends_with(['.', '?', '!', ':', ';', '。', '？', '！']);
    let lower = line
        .trim()
        .chars()
        .find(|c| c.is_alphabetic())
        .is_some_and(char::is_lowercase);
    cut_mid_sentence && (lower || sandwiched)
}

/// The end of the quote block starting at `start` (a `>` line): its `>`
/// lines, blank lines between them, and the hard-wrapped tails of its
/// lines.
fn quote_block_end(lines: &[&str], start: usize) -> usize {
    let mut j = start;
    // The line the next one would continue (quoted or a wrapped tail).
    let mut above: Option<usize> = None;
    while j < lines.len() {
        let line = lines[j];
        if is_quoted(line) {
            above = Some(j);
        } else if is_blank(line) {
            above = None;
        } else {
            let sandwiched = lines.get(j + 1).is_some_and(|l| is_quoted(l));
            match above {
                Some(a) if is_continuation(lines[a], line, sandwiched) => above = Some(j),
                _ => break,
            }
        }
        j += 1;
    }
    j
}

/// Whether the customer's own words follow at `j` (blank lines skipped):
/// a `>` block between two parts of the customer's text is a citation,
/// not quoted history.
fn customer_text_at(lines: &[&str], j: usize) -> bool {
    let Some(k) = (j..lines.len()).find(|&k| !is_blank(lines[k])) else {
        return false;
    };
    let line = lines[k];
    !(is_quoted(line)
        || attribution_at(lines, k).is_some()
        || header_block_at(lines, k)
        || separator_at(lines, k)
        || is_signature_delimiter(line)
        || is_mobile_footer(line)
        || (VALEDICTION.is_match(line) && tail_is_short(&lines[k + 1..])))
}

fn is_signature_delimiter(line: &str) -> bool {
    let trimmed = line.trim();
    trimmed == "--" || line == "-- " || trimmed == "—"
}

fn is_mobile_footer(line: &str) -> bool {
    MOBILE_FOOTER.is_match(line) || CJK_MOBILE_FOOTER.is_match(line)
}

/// The customer's own words of a plain-text reply.
///
/// `sender_name` (the From display name) lets an undelimited signature
/// that starts with the sender's name be removed. A message the customer
/// forwarded is their question: it is kept, after their own words, as a
/// `> ` block under a `Forwarded message:` line.
pub fn strip_reply(text: &str, sender_name: Option<&str>) -> String {
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let owned = split_inline_attributions(&normalized);
    let lines: Vec<&str> = owned.iter().map(String::as_str).collect();
    let (mut out, forward) = strip_own_words(&lines, sender_name);
    let Some(start) = forward else {
        return out;
    };
    let forwarded = forwarded_block(&lines[start..]);
    if !forwarded.is_empty() {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str("Forwarded message:\n");
        out.push_str(&forwarded);
    }
    out
}

/// How far past a signature or a mobile footer a forward marker is looked
/// for ("Sent from my iPhone" above "Begin forwarded message:").
const FORWARD_LOOKAHEAD_LINES: usize = 10;

/// The first line of a forwarded message that a signature at `i` ends
/// the customer's words above, if any.
fn forward_after_signature(lines: &[&str], i: usize) -> Option<usize> {
    (i + 1..lines.len().min(i + 1 + FORWARD_LOOKAHEAD_LINES))
        .find(|&j| FORWARD_MARKER.is_match(lines[j]))
        .map(|j| j + 1)
}

/// The first line of a forwarded message whose header block (`Subject:
/// Fwd: …`) starts at or just below the separator at `i`.
fn forwarded_header_near(lines: &[&str], i: usize) -> Option<usize> {
    (i..lines.len().min(i + 3))
        .find(|&j| !is_blank(lines[j]) && !separator_at(lines, j))
        .filter(|&j| header_block_at(lines, j) && forwarded_header_block(lines, j))
}

/// A forwarded message as a `> ` block (one level of `>` it already had,
/// as in Apple Mail's HTML, taken off first).
fn forwarded_block(lines: &[&str]) -> String {
    let quoted = lines
        .iter()
        .find(|l| !is_blank(l))
        .is_some_and(|l| is_quoted(l));
    let mut out = String::new();
    for line in lines {
        let line = if quoted {
            let t = line.trim_start();
            t.strip_prefix('>')
                .map_or(t, |r| r.strip_prefix(' ').unwrap_or(r))
        } else {
            line
        };
        out.push_str(if is_blank(line) { ">" } else { "> " });
        out.push_str(line.trim_end());
        out.push('\n');
    }
    // Blank quoted lines at either end go.
    let tidied = tidy(&out);
    let body: Vec<&str> = tidied.lines().collect();
    let first = body.iter().position(|l| *l != ">").unwrap_or(body.len());
    let last = body
        .iter()
        .rposition(|l| *l != ">")
        .map_or(first, |p| p + 1);
    body[first..last.max(first)].join("\n")
}

/// The customer's own words, and where a message they forwarded starts
/// (forwarded before any quoted history: a forward inside the history is
/// history).
fn strip_own_words(lines: &[&str], sender_name: Option<&str>) -> (String, Option<usize>) {
    let mut kept: Vec<&str> = Vec::with_capacity(lines.len());
    let mut has_content = false;
    // An attribution with its `>` block was seen: `>` blocks are history.
    let mut in_reply = false;
    let mut forward = None;
    let mut i = 0;
    'scan: while i < lines.len() {
        let line = lines[i];
        if !in_reply && !is_quoted(line) && FORWARD_MARKER.is_match(line) {
            forward = Some(i + 1);
            break 'scan;
        }
        if let Some((span, strength)) = attribution_at(lines, i) {
            // Blank lines, then a `>` block: drop both and go on (bottom
            // posting and inline replies keep what follows).
            let mut j = i + span;
            while j < lines.len() && is_blank(lines[j]) {
                j += 1;
            }
            if j < lines.len() && is_quoted(lines[j]) {
                let end = quote_block_end(lines, j);
                if strength != Strength::Tail || lines[end..].iter().all(|l| is_blank(l)) {
                    in_reply = true;
                    i = end;
                    continue 'scan;
                }
            } else if strength == Strength::Strong
                || (j >= lines.len() && strength == Strength::Weak)
            {
                break 'scan;
            }
        }
        if header_block_at(lines, i) || separator_at(lines, i) {
            if !in_reply {
                forward = forwarded_header_near(lines, i);
            }
            break 'scan;
        }
        if is_quoted(line) {
            let end = quote_block_end(lines, i);
            if !in_reply && has_content && customer_text_at(lines, end) {
                kept.extend_from_slice(&lines[i..end]);
            }
            i = end;
            continue;
        }
        let trimmed = line.trim();
        let signature = is_signature_delimiter(line)
            || is_mobile_footer(line)
            || (VALEDICTION.is_match(line) && tail_is_short(&lines[i + 1..]))
            || sender_name.is_some_and(|name| {
                has_content && starts_with_name(trimmed, name) && tail_is_short(&lines[i + 1..])
            });
        if signature {
            if !in_reply {
                forward = forward_after_signature(lines, i);
            }
            break 'scan;
        }
        has_content |= !trimmed.is_empty();
        kept.push(line);
        i += 1;
    }
    (tidy(&kept.join("\n")), forward)
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
        // A quadratic pass over these inputs takes hours; the generous bound
        // catches only that (a loaded 2-core CI box took over 5 s here).
        assert!(t.elapsed().as_secs() < 120, "{:?}", t.elapsed());
    }

    #[test]
    fn hostile_replies_stay_linear() {
        let t = std::time::Instant::now();
        // Attributions glued to every line, one giant line of openers.
        strip_reply(
            &"Ok. On Fri, 8 Mar 2024 10:00 a <a@b.co> wrote:\n".repeat(10_000),
            None,
        );
        strip_reply(&"x. On a@b.co ".repeat(20_000), None);
        // Header fields, rules, wrapped quote tails, forward markers.
        strip_reply(&"From: a\nTo: b\n".repeat(10_000), None);
        strip_reply(&"a\n----------\n".repeat(10_000), None);
        let wrapped = format!("> {}\n", "word ".repeat(20)) + "tail of it\n";
        strip_reply(&format!("Hi\n{}", wrapped.repeat(10_000)), None);
        strip_reply(&"Begin forwarded message:\n".repeat(20_000), None);
        strip_reply(&"Hi\n\n> quoted\nmore\n".repeat(10_000), None);
        strip_reply(&"10:00 2024 a@b.co:\n> q\nx\n".repeat(10_000), None);
        assert!(t.elapsed().as_secs() < 120, "{:?}", t.elapsed());
    }

    #[test]
    fn forwarded_messages_and_citations_are_the_customers() {
        let fwd =
            "FYI\n\n---------- Forwarded message ---------\nFrom: A <a@b.co>\nSubject: x\n\nBody";
        assert_eq!(
            strip_reply(fwd, None),
            "FYI\n\nForwarded message:\n> From: A <a@b.co>\n> Subject: x\n>\n> Body"
        );
        let outlook_fw =
            "See below\n\nFrom: A <a@b.co>\nSent: Friday\nTo: me\nSubject: FW: x\n\nBody";
        assert!(strip_reply(outlook_fw, None).ends_with("> Body"));
        let cite = "You say:\n> rows are capped\nbut they are not.";
        assert_eq!(strip_reply(cite, None), cite);
        // The same block under an attribution is history.
        let reply = "Hi\n\nOn Mon, 1 Jan 2024 at 10:00 A <a@b.co> wrote:\n> rows are capped\n\nok";
        assert_eq!(strip_reply(reply, None), "Hi\n\nok");
        // An answer typed right under a quoted question is not its wrapped tail.
        let inline = "On Mon, 1 Jan 2024 at 10:00 A <a@b.co> wrote:\n> Which plan are you on and how many seats do you need\nwe are on pro, 5 seats\n> Anything else";
        assert_eq!(strip_reply(inline, None), "we are on pro, 5 seats");
    }
}
