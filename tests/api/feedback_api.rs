//! Customers' feedback over HTTP (the real app, temporary SQLite, demo KB):
//! ratings of bot replies and the satisfaction score, guarded by the
//! conversation token, idempotent, and refused for anything but a bot reply.

use crate::common;

use common::{TestApp, with_role};
use deskhand::store::PeopleStore;
use serde_json::{Value, json};

async fn send(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = app.http.post(app.url(path)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bot_replies_are_rated_once_each_and_only_by_the_token_holder() {
    let app = TestApp::spawn().await;
    let (id, token) = app.conversation().await;
    app.post(&id, &token, "How do I export my data?").await;
    let poll = app.wait_for_reply(&id, &token, 1).await;
    let bot = with_role(&poll, "assistant")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let customer = with_role(&poll, "customer")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/conversations/{id}/messages/{bot}/feedback");

    // No token, another conversation's token: refused, nothing stored.
    let (other, other_token) = app.conversation().await;
    assert_eq!(
        send(&app, &path, None, json!({"rating": "up"})).await.0,
        401
    );
    assert_eq!(
        send(&app, &path, Some(&other_token), json!({"rating": "up"}))
            .await
            .0,
        401
    );
    // Not a bot reply, or no such message.
    for mid in [customer.as_str(), "nope"] {
        let p = format!("/v1/conversations/{id}/messages/{mid}/feedback");
        let (status, v) = send(&app, &p, Some(&token), json!({"rating": "up"})).await;
        assert_eq!(status, 404, "{mid}: {v}");
    }
    let (status, _) = send(
        &app,
        &format!("/v1/conversations/{other}/messages/{bot}/feedback"),
        Some(&other_token),
        json!({"rating": "up"}),
    )
    .await;
    assert_eq!(status, 404, "a reply of another conversation");
    // Garbage bodies.
    for bad in [
        json!({"rating": "meh"}),
        json!({}),
        json!({"rating": "down", "reason": "bored"}),
        json!({"rating": "up", "extra": 1}),
    ] {
        let (status, v) = send(&app, &path, Some(&token), bad.clone()).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("invalid_json")),
            "{bad}"
        );
    }

    // Up (a reason on a thumbs-up is dropped), again, then down with a reason.
    for _ in 0..2 {
        let (status, v) = send(
            &app,
            &path,
            Some(&token),
            json!({"rating": "up", "reason": "wrong_answer"}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            (v["rating"].as_str(), v["offer_person"].as_bool()),
            (Some("up"), Some(false))
        );
        assert!(v["reason"].is_null(), "{v}");
    }
    let (status, v) = send(
        &app,
        &path,
        Some(&token),
        json!({"rating": "down", "reason": "did_not_understand"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["offer_person"], true);

    // The score: bounds, then idempotent.
    let csat = format!("/v1/conversations/{id}/csat");
    for bad in [0, 6, 255] {
        let (status, v) = send(&app, &csat, Some(&token), json!({"score": bad})).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("invalid_score")),
            "{bad}"
        );
    }
    assert_eq!(
        send(&app, &csat, Some(&token), json!({"score": -1}))
            .await
            .0,
        400
    );
    assert_eq!(send(&app, &csat, None, json!({"score": 5})).await.0, 401);
    for score in [2, 5, 5] {
        let (status, v) = send(&app, &csat, Some(&token), json!({"score": score})).await;
        assert_eq!((status, v["score"].as_u64()), (200, Some(score)));
    }
    let (status, _) = send(
        &app,
        &format!("/v1/conversations/{other}/csat"),
        Some(&other_token),
        json!({"score": 3}),
    )
    .await;
    assert_eq!(status, 404, "no conversation has been started there yet");

    // What was stored: one rating (the latest) and the latest score.
    let data = app.stop().await;
    let db = common::test_config(data.path()).database_path();
    let store = deskhand::store::SqliteStore::new(deskhand::sqlite::Db::open(&db).unwrap());
    let conv = deskhand::domain::ConversationId::parse(&id).unwrap();
    let ratings = store.ratings(conv).await.unwrap();
    assert_eq!(ratings.len(), 1, "{ratings:?}");
    assert_eq!(ratings[0].message_id, bot);
    assert_eq!(ratings[0].rating, deskhand::domain::Rating::Down);
    assert_eq!(
        ratings[0].reason,
        Some(deskhand::domain::FeedbackReason::DidNotUnderstand)
    );
    assert_eq!(store.csat(conv).await.unwrap().unwrap().score, 5);
}

/// Emailed answers end with "Reply 'human' to reach a person": the one-word
/// reply, in each language the rules speak, asks for a person; a longer
/// message merely containing the word does not.
#[test]
fn a_one_word_human_reply_asks_for_a_person_in_every_language() {
    use deskhand::config::PipelineSettings;
    use deskhand::domain::ReasonCode;
    use deskhand::pipeline::Rules;
    assert!(deskhand::outbox::HUMAN_LINE.contains("'human'"));
    let rules = Rules::new(&PipelineSettings::default()).unwrap();
    for reply in [
        "human",
        "Human",
        "'human'",
        "HUMAN!",
        "a human",
        " human.\n",
        "humano",
        "persona",
        "humain",
        "personne",
        "Mensch",
        "pessoa",
        "atendente",
        "human\n\nSent from my phone",
    ] {
        assert_eq!(
            rules.check(reply).map(|h| h.reason),
            Some(ReasonCode::AskedForHuman),
            "{reply:?}"
        );
    }
    for other in [
        "Is there a human-readable export?",
        "The person on the invoice is wrong",
        "humanity",
        "How do I add a team member?",
    ] {
        assert_ne!(
            rules.check(other).map(|h| h.reason),
            Some(ReasonCode::AskedForHuman),
            "{other:?}"
        );
    }
}

/// The line in each built-in language asks for a word the rules take as
/// asking for a person, written as the customer would send it back: the
/// word alone, or quoted as the line quotes it.
#[test]
fn every_built_in_human_line_asks_for_a_word_the_rules_understand() {
    use deskhand::config::PipelineSettings;
    use deskhand::domain::ReasonCode;
    use deskhand::pipeline::Rules;
    let rules = Rules::new(&PipelineSettings::default()).unwrap();
    let quotes = ['\'', '"', '«', '»', '„', '“', '”'];
    for (lang, line) in deskhand::outbox::HUMAN_LINES {
        let start = line
            .find(quotes)
            .unwrap_or_else(|| panic!("{lang}: no quote"));
        let rest = &line[start..];
        let q = rest.chars().next().unwrap();
        let after = &rest[q.len_utf8()..];
        let end = after.find(quotes).unwrap();
        let close = after[end..].chars().next().unwrap();
        let quoted = &rest[..q.len_utf8() + end + close.len_utf8()];
        let word = after[..end].trim();
        for reply in [word.to_owned(), quoted.to_owned(), word.to_uppercase()] {
            assert_eq!(
                rules.check(&reply).map(|h| h.reason),
                Some(ReasonCode::AskedForHuman),
                "{lang}: {reply:?} from {line:?}"
            );
        }
    }
}
