//! The committed signed and tampered deliveries of every provider
//! (`fixtures/inbound/signed/`, signed at a fixed instant with the test
//! secrets) verify, or fail to, through the same code as the endpoint.
//! `DESKHAND_REGENERATE_FIXTURES=1 cargo test --test inbound inbound_fixtures::`
//! rewrites them.

use crate::inbound_support;

use chrono::{DateTime, Utc};
use deskhand::domain::Channel;
use deskhand::ingest::{Inbound, IngestError, Normalized, Verification};
use inbound_support::*;

fn signed_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-03-08T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn write(name: &str, req: &Req) {
    let dir = fixtures().join("signed");
    std::fs::create_dir_all(&dir).unwrap();
    let headers: String = req
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect();
    std::fs::write(dir.join(format!("{name}.headers")), headers).unwrap();
    std::fs::write(dir.join(format!("{name}.body")), &req.body).unwrap();
}

fn read(provider: &'static str, name: &str) -> Req {
    let dir = fixtures().join("signed");
    let headers = std::fs::read_to_string(dir.join(format!("{name}.headers"))).unwrap();
    Req {
        channel: channel_of(provider),
        provider,
        headers: headers
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        body: std::fs::read(dir.join(format!("{name}.body"))).unwrap(),
    }
}

#[tokio::test]
async fn committed_signed_fixtures_verify_and_tampered_ones_do_not() {
    if std::env::var_os("DESKHAND_REGENERATE_FIXTURES").is_some() {
        for provider in PROVIDERS {
            let req = signed(provider, &payload(provider), signed_at());
            write(provider, &req);
            write(&format!("{provider}.tampered"), &tampered(req));
        }
    }
    let cert = fixtures().join("ses/test-signing-cert.pem");
    let inbound = Inbound::new(settings(Vec::new(), Some(&cert)), 4000);
    for provider in PROVIDERS {
        let channel = if channel_of(provider) == "email" {
            Channel::Email
        } else {
            Channel::Helpdesk
        };
        let good = read(provider, provider);
        let outcome = inbound
            .receive_at(
                channel,
                provider,
                &good.header_map(),
                &good.body,
                Verification::Required,
                signed_at(),
            )
            .await
            .unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert!(
            matches!(outcome, Normalized::Accepted(_)),
            "{provider}: {outcome:?}"
        );
        let bad = read(provider, &format!("{provider}.tampered"));
        let err = inbound
            .receive_at(
                channel,
                provider,
                &bad.header_map(),
                &bad.body,
                Verification::Required,
                signed_at(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, IngestError::InvalidSignature(_)),
            "{provider}: {err:?}"
        );
        // Today, the signed fixtures are replays.
        if TIMESTAMPED.contains(provider) {
            let err = inbound
                .receive(
                    channel,
                    provider,
                    &good.header_map(),
                    &good.body,
                    Verification::Required,
                )
                .await
                .unwrap_err();
            assert!(
                matches!(err, IngestError::StaleTimestamp(_)),
                "{provider}: {err:?}"
            );
        }
    }
}

/// Issue #15.13: `deskhand inspect email FILE.eml`, as the README shows it,
/// works without a configuration and without `--no-verify` (a file has no
/// signature); a provider whose deliveries are signed still needs its
/// secret.
#[test]
fn inspect_reads_an_eml_file_as_it_is() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_deskhand"))
            .args(args)
            .current_dir(std::env::temp_dir())
            .env("DESKHAND_LOG", "error")
            .output()
            .unwrap()
    };
    let eml = fixtures().join("email/gmail-reply.eml");
    let out = run(&["inspect", "email", eml.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ticket: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ticket["channel"], "email", "{ticket}");
    assert!(!ticket["text"].as_str().unwrap().is_empty());
    let json = fixtures().join("zendesk/comment.json");
    let out = run(&["inspect", "zendesk", json.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not configured"));
}
