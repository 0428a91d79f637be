//! Authenticity checks shared by the providers: HMACs compared in
//! constant time, HTTP Basic credentials, and the replay window.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::IngestError;
use crate::secret::Secret;

/// The value of header `name`, trimmed; `None` when absent or not text.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The value of a signature header, or `missing_signature`.
pub fn required<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, IngestError> {
    header(headers, name)
        .ok_or_else(|| IngestError::MissingSignature(format!("the `{name}` header is missing")))
}

/// HMAC-SHA256 of the concatenated `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// HMAC-SHA1 of the concatenated `parts` under `key`.
pub fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Constant-time equality of two byte strings (lengths are not secret).
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Checks a base64 signature against the expected MAC.
pub fn base64_matches(expected: &[u8], given: &str, what: &str) -> Result<(), IngestError> {
    let given = STANDARD
        .decode(given.trim())
        .map_err(|_| IngestError::InvalidSignature(format!("{what} is not base64")))?;
    if equal(expected, &given) {
        Ok(())
    } else {
        Err(IngestError::InvalidSignature(format!(
            "{what} does not match the body"
        )))
    }
}

/// Checks a hex signature against the expected MAC.
pub fn hex_matches(expected: &[u8], given: &str, what: &str) -> Result<(), IngestError> {
    let given = hex::decode(given.trim())
        .map_err(|_| IngestError::InvalidSignature(format!("{what} is not hexadecimal")))?;
    if equal(expected, &given) {
        Ok(())
    } else {
        Err(IngestError::InvalidSignature(format!(
            "{what} does not match the body"
        )))
    }
}

/// Units of a vendor's timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Millis,
}

/// Parses an integer Unix timestamp and rejects it outside `window_secs`
/// of `now` (either side: a clock ahead is as suspicious as one behind).
pub fn fresh(
    raw: &str,
    unit: Unit,
    now: DateTime<Utc>,
    window_secs: u64,
    what: &str,
) -> Result<DateTime<Utc>, IngestError> {
    let n: i64 = raw.trim().parse().map_err(|_| {
        IngestError::InvalidSignature(format!("{what} must be an integer Unix timestamp"))
    })?;
    let at = match unit {
        Unit::Seconds => DateTime::from_timestamp(n, 0),
        Unit::Millis => DateTime::from_timestamp_millis(n),
    }
    .ok_or_else(|| IngestError::InvalidSignature(format!("{what} is out of range")))?;
    within(at, now, window_secs, what)?;
    Ok(at)
}

/// Rejects `at` outside `window_secs` of `now`.
pub fn within(
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    window_secs: u64,
    what: &str,
) -> Result<(), IngestError> {
    let skew = (now - at).num_seconds().unsigned_abs();
    if skew > window_secs {
        return Err(IngestError::StaleTimestamp(format!(
            "{what} is {skew} s from this server's clock; the replay window is {window_secs} s"
        )));
    }
    Ok(())
}

/// Checks `Authorization: Basic` against the configured credentials.
pub fn basic_auth(
    headers: &HeaderMap,
    username: &str,
    password: &Secret,
) -> Result<(), IngestError> {
    let value = header(headers, "authorization").ok_or_else(|| {
        IngestError::MissingSignature(
            "HTTP Basic credentials are missing: put them in the webhook URL (https://user:password@host/…)".into(),
        )
    })?;
    let encoded = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, v)| v.trim())
        .ok_or_else(|| {
            IngestError::MissingSignature("the Authorization header is not HTTP Basic".into())
        })?;
    let decoded = STANDARD.decode(encoded).map_err(|_| {
        IngestError::InvalidSignature("the Basic credentials are not base64".into())
    })?;
    let expected = format!("{username}:{}", password.expose());
    if equal(&decoded, expected.as_bytes()) {
        Ok(())
    } else {
        Err(IngestError::InvalidSignature(
            "the Basic credentials are wrong".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hmac_vectors() {
        // RFC 4231 test case 2 and RFC 2202 test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(
                b"Jefe",
                &[b"what do ya want ", b"for nothing?"]
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha1(b"Jefe", &[b"what do ya want for nothing?"])),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    #[test]
    fn signatures_compare_exactly() {
        let mac = hmac_sha256(b"k", &[b"body"]);
        assert!(hex_matches(&mac, &hex::encode(&mac), "sig").is_ok());
        assert!(base64_matches(&mac, &STANDARD.encode(&mac), "sig").is_ok());
        let mut bad = mac.clone();
        bad[0] ^= 1;
        assert!(matches!(
            hex_matches(&mac, &hex::encode(&bad), "sig"),
            Err(IngestError::InvalidSignature(_))
        ));
        assert!(hex_matches(&mac, "zz", "sig").is_err());
        assert!(base64_matches(&mac, "!!", "sig").is_err());
        assert!(hex_matches(&mac, "", "sig").is_err());
    }

    #[test]
    fn replay_window_both_ways() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert!(fresh("1700000000", Unit::Seconds, now, 300, "t").is_ok());
        assert!(fresh("1699999800", Unit::Seconds, now, 300, "t").is_ok());
        assert!(matches!(
            fresh("1699999000", Unit::Seconds, now, 300, "t"),
            Err(IngestError::StaleTimestamp(_))
        ));
        assert!(matches!(
            fresh("1700001000", Unit::Seconds, now, 300, "t"),
            Err(IngestError::StaleTimestamp(_))
        ));
        assert!(fresh("1700000000000", Unit::Millis, now, 300, "t").is_ok());
        assert!(fresh("soon", Unit::Seconds, now, 300, "t").is_err());
        assert!(fresh("99999999999999999", Unit::Seconds, now, 300, "t").is_err());
    }

    #[test]
    fn basic_credentials() {
        let mut h = HeaderMap::new();
        let pw = Secret::new("s3cret");
        assert!(matches!(
            basic_auth(&h, "u", &pw),
            Err(IngestError::MissingSignature(_))
        ));
        h.insert(
            "authorization",
            format!("Basic {}", STANDARD.encode("u:s3cret"))
                .parse()
                .unwrap(),
        );
        assert!(basic_auth(&h, "u", &pw).is_ok());
        h.insert(
            "authorization",
            format!("Basic {}", STANDARD.encode("u:nope"))
                .parse()
                .unwrap(),
        );
        assert!(matches!(
            basic_auth(&h, "u", &pw),
            Err(IngestError::InvalidSignature(_))
        ));
        h.insert("authorization", "Bearer x".parse().unwrap());
        assert!(basic_auth(&h, "u", &pw).is_err());
    }
}
