//! Sender authentication as the receiving side reports it: RFC 8601
//! `Authentication-Results` and `Received-SPF` headers (raw MIME,
//! Postmark), Mailgun's `X-Mailgun-Spf` / `X-Mailgun-Dkim-Check-Result`,
//! SendGrid's `SPF` and `dkim` fields, SES's receipt verdicts.
//!
//! Only what the receiving system wrote can be trusted: a sender can put
//! any header in its own mail. The receiving MTA prepends its
//! `Authentication-Results`, so the top-most one is taken, and when
//! `[inbound] authserv_ids` is set only headers from those hosts count
//! (RFC 8601 §5). Nothing reported is `EmailAuth::default()`: neither
//! spoofed nor verified.

use crate::domain::{AuthVerdict, EmailAuth};

/// A result word (`pass`, `Fail`, `softfail (…)`, SES's `PASS`/`GRAY`).
pub fn verdict(raw: &str) -> Option<AuthVerdict> {
    let word: String = raw
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<String>()
        .to_ascii_lowercase();
    Some(match word.as_str() {
        "pass" => AuthVerdict::Pass,
        "fail" | "hardfail" => AuthVerdict::Fail,
        "softfail" => AuthVerdict::SoftFail,
        "neutral" | "policy" => AuthVerdict::Neutral,
        "none" | "gray" => AuthVerdict::None,
        "temperror" | "processing_failed" => AuthVerdict::TempError,
        "permerror" => AuthVerdict::PermError,
        _ => return None,
    })
}

/// Several DKIM results (one a signature): any pass passes, else the first.
fn combine_dkim(results: impl IntoIterator<Item = AuthVerdict>) -> Option<AuthVerdict> {
    let mut first = None;
    for v in results {
        if v == AuthVerdict::Pass {
            return Some(v);
        }
        first.get_or_insert(v);
    }
    first
}

/// The text without `( … )` comments (nested, as RFC 5322 allows).
fn without_comments(s: &str) -> String {
    let mut depth = 0usize;
    s.chars()
        .filter(|&c| match c {
            '(' => {
                depth += 1;
                false
            }
            ')' => {
                depth = depth.saturating_sub(1);
                false
            }
            _ => depth == 0,
        })
        .collect()
}

/// One `Authentication-Results` value: its authserv-id and results.
pub fn authentication_results(value: &str) -> (String, EmailAuth) {
    let clean = without_comments(value);
    let mut parts = clean.split(';');
    let authserv = parts
        .next()
        .and_then(|p| p.split_whitespace().next())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut auth = EmailAuth::default();
    let mut dkim = Vec::new();
    for part in parts {
        let Some((method, rest)) = part.trim().split_once('=') else {
            continue;
        };
        let method = method.trim().to_ascii_lowercase();
        let Some(v) = verdict(rest) else { continue };
        match method.as_str() {
            "spf" => {
                auth.spf.get_or_insert(v);
            }
            "dkim" => dkim.push(v),
            "dmarc" => {
                auth.dmarc.get_or_insert(v);
            }
            _ => {}
        }
    }
    auth.dkim = combine_dkim(dkim);
    (authserv, auth)
}

/// From a message's headers (names lower-case, in order): the top-most
/// trusted `Authentication-Results`, else `Received-SPF` for SPF.
pub fn from_headers(headers: &[(String, String)], trusted: &[String]) -> EmailAuth {
    let trusted_id =
        |id: &str| trusted.is_empty() || trusted.iter().any(|t| t.eq_ignore_ascii_case(id));
    let mut auth = headers
        .iter()
        .filter(|(k, _)| k == "authentication-results")
        .map(|(_, v)| authentication_results(v))
        .find(|(id, _)| trusted_id(id))
        .map(|(_, a)| a)
        .unwrap_or_default();
    if auth.spf.is_none() {
        auth.spf = headers
            .iter()
            .find(|(k, _)| k == "received-spf")
            .and_then(|(_, v)| verdict(v));
    }
    auth
}

/// SendGrid's `dkim` field: `{@a.com : pass}`, `{@a.com : pass, @b.com : fail}`, `none`.
pub fn sendgrid_dkim(raw: &str) -> Option<AuthVerdict> {
    let raw = raw.trim().trim_matches(['{', '}']);
    if !raw.contains(':') {
        return verdict(raw);
    }
    combine_dkim(
        raw.split(',')
            .filter_map(|sig| sig.rsplit_once(':'))
            .filter_map(|(_, v)| verdict(v)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use AuthVerdict::*;

    #[test]
    fn authentication_results_as_receivers_write_them() {
        let (id, a) = authentication_results(
            "mx.google.com;\r\n       dkim=pass header.i=@example.com header.s=s1 header.b=abc;\r\n       \
             spf=pass (google.com: domain of ann@example.com designates 1.2.3.4 as permitted sender; ok) \
             smtp.mailfrom=ann@example.com;\r\n       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.com",
        );
        assert_eq!(id, "mx.google.com");
        assert_eq!(
            (a.spf, a.dkim, a.dmarc),
            (Some(Pass), Some(Pass), Some(Pass))
        );
        assert!(a.verified() && !a.spoofed());

        let (_, a) = authentication_results(
            "mx.acme.test 1; spf=fail smtp.mailfrom=bank.example; dkim=none; dmarc=fail header.from=bank.example",
        );
        assert_eq!(
            (a.spf, a.dkim, a.dmarc),
            (Some(Fail), Some(None), Some(Fail))
        );
        assert!(a.spoofed() && !a.verified());

        // Two signatures, one good: DKIM passes.
        let (_, a) = authentication_results("x; dkim=fail header.d=a; dkim=pass header.d=b");
        assert_eq!(a.dkim, Some(Pass));
        // Nothing usable.
        let (_, a) = authentication_results("garbage without results (;;;");
        assert!(a.is_empty());
        assert!(authentication_results("").1.is_empty());
    }

    #[test]
    fn only_trusted_receivers_count() {
        let h = |v: &str| ("authentication-results".to_owned(), v.to_owned());
        let headers = vec![
            h("mx.acme.test; dmarc=fail header.from=bank.example"),
            // Added by the sender, below the receiver's: ignored.
            h("forged.example; dmarc=pass header.from=bank.example"),
        ];
        assert!(from_headers(&headers, &[]).spoofed());
        assert!(from_headers(&headers, &["MX.acme.test".into()]).spoofed());
        // Only the forged one names a trusted host? Then it is the one, by
        // configuration; with an unlisted receiver nothing counts.
        assert!(from_headers(&headers, &["other.test".into()]).is_empty());
        let spf = vec![(
            "received-spf".to_owned(),
            "Fail (x: domain of y does not designate z)".to_owned(),
        )];
        assert_eq!(from_headers(&spf, &[]).spf, Some(Fail));
        assert!(from_headers(&spf, &[]).spoofed(), "SPF fail and no DKIM");
    }

    #[test]
    fn verdict_words_and_sendgrid_dkim() {
        assert_eq!(verdict("Pass (sender SPF authorized)"), Some(Pass));
        assert_eq!(verdict("SoftFail"), Some(SoftFail));
        assert_eq!(verdict("GRAY"), Some(None));
        assert_eq!(verdict("PROCESSING_FAILED"), Some(TempError));
        assert_eq!(verdict("whatever"), Option::None);
        assert_eq!(sendgrid_dkim("{@sendgrid.com : pass}"), Some(Pass));
        assert_eq!(sendgrid_dkim("{@a.com : fail, @b.com : pass}"), Some(Pass));
        assert_eq!(sendgrid_dkim("{@a.com : fail}"), Some(Fail));
        assert_eq!(sendgrid_dkim("none"), Some(None));
        assert_eq!(sendgrid_dkim(""), Option::None);
    }

    #[test]
    fn soft_fail_and_forwarding_are_not_spoofing() {
        let a = EmailAuth {
            spf: Some(SoftFail),
            ..EmailAuth::default()
        };
        assert!(!a.spoofed());
        // Forwarded mail: SPF fails, the DKIM signature survives.
        let a = EmailAuth {
            spf: Some(Fail),
            dkim: Some(Pass),
            dmarc: Option::None,
        };
        assert!(!a.spoofed() && a.verified());
        assert!(!EmailAuth::default().spoofed() && !EmailAuth::default().verified());
    }
}
