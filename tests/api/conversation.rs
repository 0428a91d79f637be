//! What a customer experiences in the chat, through the real app and the
//! widget API: pleasantries are answered in kind and never escalate; after
//! the bot could not answer one question it goes on answering the next;
//! once a person is needed (or has replied) it is silent.
//!
//! Waiting is by the ticket count in `GET /v1/stats`, not by sleeping: a
//! ticket the bot stays silent on is finished too (`forwarded`), so "no
//! answer appeared" is checked after the worker is done with it.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;

use common::{TestApp, with_role};
use deskhand::config::Config;
use deskhand::domain::{
    ConversationId, Customer, EmailAddress, MessageText, Outcome, Provider, ReasonCode, Role,
    Thread, Ticket, TicketId,
};
use deskhand::knowledge::TantivyIndex;
use deskhand::knowledge::tantivy::load_documents;
use deskhand::notify::{EscalateError, Escalation, Escalator};
use deskhand::pipeline::{Pipeline, Policy, Processed, Responder, Rules, acts};
use deskhand::secret::Secret;
use deskhand::sqlite::Db;
use deskhand::store::{SqliteStore, Store};
use deskhand::tools::eval;
use serde_json::{Value, json};

const AGENT: &str = "agent-key-for-tests-0123456789";
const ADMIN: &str = "admin-key-for-tests-0123456789";
const TWO_FA: &str = "How do I turn on two-factor authentication?";

async fn app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.agent_key = Some(Secret::new(AGENT));
        c.admin_key = Some(Secret::new(ADMIN));
    })
    .await
}

async fn stats(app: &TestApp) -> Value {
    let res = app
        .http
        .get(app.url("/v1/stats"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Posts a customer message, waits until the worker has finished `n`
/// tickets in all, and returns (every message of the conversation, stats).
async fn say(app: &TestApp, id: &str, token: &str, text: &str, n: u64) -> (Value, Value) {
    let (status, body) = app.post(id, token, text).await;
    assert_eq!(status, 202, "{body}");
    let started = Instant::now();
    loop {
        let s = stats(app).await;
        if s["tickets"].as_u64() >= Some(n) {
            return (app.poll(id, token, "0").await.1, s);
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "ticket {n} not finished: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn texts<'a>(poll: &'a Value, role: &str) -> Vec<&'a str> {
    with_role(poll, role)
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect()
}

fn answers_two_fa(message: &Value) -> bool {
    message["sources"].as_array().is_some_and(|s| {
        s.iter()
            .any(|d| d["doc_id"] == "security/two-factor-authentication.md")
    })
}

#[tokio::test]
async fn a_greeting_gets_a_greeting_and_the_next_question_an_answer() {
    let app = app().await;
    let replies = acts::default_replies();
    let (id, token) = app.conversation().await;

    let (poll, s) = say(&app, &id, &token, "hi", 1).await;
    assert_eq!(texts(&poll, "assistant"), [replies["en"].greeting.as_str()]);
    assert!(with_role(&poll, "system").is_empty(), "escalated: {poll}");
    assert_eq!(poll["status"], "open");
    assert_eq!(s["by_outcome"]["acknowledged"], 1, "{s}");
    assert_eq!(s["escalations"], 0, "{s}");

    let (poll, _) = say(&app, &id, &token, TWO_FA, 2).await;
    let answers = with_role(&poll, "assistant");
    assert_eq!(answers.len(), 2, "{poll}");
    assert!(answers_two_fa(answers[1]), "{poll}");

    // A greeting in another language is answered in it.
    let (id, token) = app.conversation().await;
    let (poll, _) = say(&app, &id, &token, "Hallo!", 3).await;
    assert_eq!(texts(&poll, "assistant"), [replies["de"].greeting.as_str()]);
    app.stop().await;
}

/// A follow-up is retrieved in the conversation's context: "and what if I
/// lose my phone?" after the two-factor question is answered from the
/// two-factor article (on its own it retrieved the team-members article).
#[tokio::test]
async fn a_follow_up_is_read_with_the_question_it_follows() {
    let app = app().await;
    let (id, token) = app.conversation().await;
    say(&app, &id, &token, TWO_FA, 1).await;
    let (poll, _) = say(&app, &id, &token, "and what if I lose my phone?", 2).await;
    let answers = with_role(&poll, "assistant");
    assert_eq!(answers.len(), 2, "{poll}");
    assert_eq!(
        answers[1]["sources"][0]["doc_id"], "security/two-factor-authentication.md",
        "{poll}"
    );
    assert!(
        !answers[1]["text"]
            .as_str()
            .unwrap()
            .contains("Remove from team"),
        "{poll}"
    );
    app.stop().await;
}

#[tokio::test]
async fn thanks_after_an_answer_confirm_it() {
    let app = app().await;
    let (id, token) = app.conversation().await;
    say(&app, &id, &token, TWO_FA, 1).await;
    let (poll, s) = say(&app, &id, &token, "Thanks, that helped!", 2).await;
    let replies = texts(&poll, "assistant");
    assert_eq!(replies.len(), 2, "{poll}");
    assert_eq!(replies[1], acts::default_replies()["en"].thanks);
    assert_eq!(s["by_outcome"]["answered"], 1, "{s}");
    assert_eq!(s["by_outcome"]["confirmed"], 1, "{s}");
    assert_eq!(s["escalations"], 0, "{s}");
    assert_eq!(poll["status"], "open");
    app.stop().await;
}

#[tokio::test]
async fn after_an_unanswerable_question_the_bot_answers_the_next() {
    let app = app().await;
    let config = Config::default();
    let (id, token) = app.conversation().await;
    let (poll, s) = say(
        &app,
        &id,
        &token,
        "What's the weather like in Lisbon tomorrow?",
        1,
    )
    .await;
    assert_eq!(s["by_reason"]["no_knowledge"], 1, "{s}");
    assert_eq!(poll["status"], "escalated");
    assert_eq!(
        texts(&poll, "system"),
        [config.pipeline.chat_holding_message.as_str()]
    );

    let (poll, s) = say(&app, &id, &token, TWO_FA, 2).await;
    let answers = with_role(&poll, "assistant");
    assert_eq!(answers.len(), 1, "the bot stayed silent: {poll}");
    assert!(answers_two_fa(answers[0]), "{poll}");
    assert_eq!(s["by_outcome"]["answered"], 1, "{s}");
    // The person still owes an answer to the first question.
    assert_eq!(poll["status"], "escalated");
    app.stop().await;
}

#[tokio::test]
async fn after_asking_for_a_person_the_bot_stays_silent() {
    let app = app().await;
    let (id, token) = app.conversation().await;
    let (poll, _) = say(
        &app,
        &id,
        &token,
        "Ich möchte mit einem Menschen sprechen",
        1,
    )
    .await;
    assert_eq!(poll["status"], "escalated");
    let (poll, s) = say(&app, &id, &token, TWO_FA, 2).await;
    assert_eq!(s["by_reason"]["asked_for_human"], 1, "{s}");
    assert_eq!(s["by_outcome"]["forwarded"], 1, "{s}");
    assert!(with_role(&poll, "assistant").is_empty(), "{poll}");
    assert_eq!(with_role(&poll, "system").len(), 1, "{poll}");
    app.stop().await;
}

#[tokio::test]
async fn after_an_agent_replied_the_bot_stays_silent() {
    let app = app().await;
    let (id, token) = app.conversation().await;
    say(&app, &id, &token, "Do you sell garden furniture?", 1).await;
    let res = app
        .http
        .post(app.url(&format!("/v1/conversations/{id}/agent-replies")))
        .bearer_auth(AGENT)
        .json(&json!({"text": "Hi, Dana here. We don't, sorry!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let (poll, s) = say(&app, &id, &token, TWO_FA, 2).await;
    assert_eq!(s["by_outcome"]["forwarded"], 1, "{s}");
    assert!(
        with_role(&poll, "assistant").is_empty(),
        "bot talked over the agent: {poll}"
    );
    assert_eq!(poll["status"], "escalated");
    app.stop().await;
}

#[tokio::test]
async fn dissatisfaction_offers_a_person_instead_of_another_guess() {
    let app = app().await;
    let config = Config::default();
    let (id, token) = app.conversation().await;
    say(&app, &id, &token, TWO_FA, 1).await;
    let (poll, s) = say(&app, &id, &token, "that didn't help", 2).await;
    assert_eq!(s["by_reason"]["unhelpful"], 1, "{s}");
    assert_eq!(texts(&poll, "assistant").len(), 1, "another guess: {poll}");
    assert_eq!(
        texts(&poll, "system"),
        [config.pipeline.holding_message.as_str()]
    );
    // A person is needed now: the bot stays out of it.
    let (poll, s) = say(&app, &id, &token, "How do I export my data?", 3).await;
    assert_eq!(s["by_outcome"]["forwarded"], 1, "{s}");
    assert_eq!(texts(&poll, "assistant").len(), 1, "{poll}");
    app.stop().await;
}

fn responder() -> Responder {
    let root = common::root();
    let config = Config {
        kb_dir: root.join("fixtures/kb"),
        ..Config::default()
    };
    let docs = load_documents(&config.kb_dir, &mut |_, _| {}).unwrap();
    Responder::new(
        Arc::new(TantivyIndex::in_memory(&docs).unwrap()),
        deskhand::runtime::generator(&config, deskhand::runtime::Aws::Lazy).unwrap(),
        Rules::new(&config.pipeline).unwrap(),
        Policy::from_config(&config),
    )
}

#[derive(Default)]
struct Told(Mutex<Vec<ReasonCode>>);

#[async_trait]
impl Escalator for Told {
    async fn escalate(&self, e: &Escalation) -> Result<(), EscalateError> {
        self.0.lock().unwrap().push(e.reason);
        Ok(())
    }
}

/// An email in the thread rooted at `root`.
fn email(root: &str, subject: &str, text: &str) -> Ticket {
    let ticket_id = TicketId::new();
    Ticket {
        ticket_id,
        conversation_id: ConversationId::derive(Provider::Mime, root),
        provider: Provider::Mime,
        customer: Customer {
            email: EmailAddress::parse("ann@example.com"),
            name: Some("Ann Lee".into()),
            email_auth: None,
            user_id: None,
        },
        subject: Some(subject.into()),
        text: MessageText::parse(text, 4000).unwrap(),
        attachments: vec![],
        thread: Thread {
            root: Some(root.into()),
            message_id: Some(format!("<{ticket_id}@example.com>")),
            references: vec![root.into()],
            reply_message_id: Some(format!("<{ticket_id}@deskhand.acme.test>")),
            reply_token: None,
        },
        brand: None,
        received_at: Utc::now(),
    }
}

/// Email is not a chat: thanks are recorded without a "you're welcome"
/// mail, a question under a real subject is a question whatever the body's
/// pleasantries, and an escalated thread stays with the person.
#[tokio::test]
async fn email_threads_get_no_pleasantry_mail_and_stay_with_a_person() {
    let data = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::new(
        Db::open(&data.path().join("db.sqlite")).unwrap(),
    ));
    let told = Arc::new(Told::default());
    let pipeline = Pipeline::new(store.clone(), told.clone(), responder());
    let record = |t: &Ticket| {
        let store = store.clone();
        let id = t.ticket_id;
        async move { store.ticket(id).await.unwrap().unwrap() }
    };

    let first = email("<a-1@example.com>", "Two-factor", TWO_FA);
    assert_eq!(pipeline.process(&first).await.unwrap(), Processed::Answered);
    let thanks = email(
        "<a-1@example.com>",
        "Re: Two-factor",
        "Thanks, that worked!\n\nAnn",
    );
    assert_eq!(
        pipeline.process(&thanks).await.unwrap(),
        Processed::Acknowledged
    );
    assert_eq!(record(&thanks).await.outcome, Outcome::Confirmed);
    let history = store.history(first.conversation_id, 10).await.unwrap();
    let roles: Vec<Role> = history.iter().map(|m| m.body.role).collect();
    assert_eq!(
        roles,
        [Role::Customer, Role::Assistant, Role::Customer],
        "a reply to the thanks was written"
    );

    // The question is in the subject; the body is only pleasantries.
    let wrapped = email("<b-1@example.com>", TWO_FA, "Hi team,\n\nThanks,\nMaria");
    assert_eq!(
        pipeline.process(&wrapped).await.unwrap(),
        Processed::Answered
    );

    // An escalated email thread is a person's, even for no_knowledge.
    let odd = email(
        "<c-1@example.com>",
        "Furniture",
        "Do you sell garden furniture?",
    );
    assert!(matches!(
        pipeline.process(&odd).await.unwrap(),
        Processed::Escalated(_)
    ));
    let next = email("<c-1@example.com>", "Re: Furniture", TWO_FA);
    assert_eq!(pipeline.process(&next).await.unwrap(), Processed::Forwarded);
    assert_eq!(told.0.lock().unwrap().last(), Some(&ReasonCode::FollowUp));
}

/// Security finding #14.9: the rules read only the body, so a legal threat
/// in the subject line over a harmless question was answered.
#[tokio::test]
async fn a_sensitive_subject_line_escalates_a_harmless_question() {
    let responder = responder();
    let question = "How do I reset my password?";
    let plain = responder.think(question, Some("Password")).await.unwrap();
    assert_eq!(plain.decision.reason(), None, "{:?}", plain.decision);
    let attack = responder.think(question, Some("lawsuit")).await.unwrap();
    assert_eq!(
        attack.decision.reason().map(|r| r.as_str()),
        Some("sensitive_topic"),
        "{:?}",
        attack.decision
    );
    assert!(
        attack.generation.is_none(),
        "the generator was asked anyway"
    );
}

/// The conversation case set (`fixtures/eval/conversation.jsonl`, over the
/// demo KB): acts, questions wrapped in pleasantries, dissatisfaction,
/// account questions, sensitive topics in other words and other languages.
#[tokio::test]
async fn the_conversation_case_set_meets_its_thresholds() {
    let responder = responder();
    let cases = eval::load_cases(&common::root().join("fixtures/eval/conversation.jsonl")).unwrap();
    let r = eval::run(&responder, &cases).await.unwrap();
    let shown = r.render();
    assert!(r.total >= 70, "{shown}");
    // A pleasantry is never escalated, and never answered from the KB.
    for c in r.cases.iter().filter(|c| c.expected_act.is_some()) {
        assert_eq!(c.reason, None, "{}: escalated\n{shown}", c.id);
        assert!(
            c.cited.is_empty(),
            "{}: answered from the KB\n{shown}",
            c.id
        );
    }
    for reason in [
        "unhelpful",
        "needs_account_data",
        "sensitive_topic",
        "asked_for_human",
        "unsupported_language",
    ] {
        let c = &r.reasons[reason];
        assert!(c.expected >= 4, "the set must exercise {reason}");
        assert!(c.matched * 10 >= c.expected * 9, "{reason}: {shown}");
    }
    assert!(r.cases_correct * 20 >= r.total * 19, "{shown}");
}
