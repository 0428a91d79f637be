//! The `PeopleStore` contract (drafts, notes, assignments, ratings) against
//! both adapters: SQLite in a temporary file, DynamoDB through the real SDK
//! against moto server (`MOTO_ENDPOINT`; without it those tests fail, never
//! skip). Also: the `KeepDrafts` escalator keeps a draft before passing an
//! escalation on, and still escalates when keeping fails.

use crate::common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{Duration, Utc};
use common::moto::Moto;
use deskhand::domain::{
    ConversationId, Customer, FeedbackReason, Priority, Rating, ReasonCode, TicketId,
};
use deskhand::notify::{EscalateError, Escalation, Escalator, KeepDrafts};
use deskhand::sqlite::Db;
use deskhand::store::people::{Csat, Draft, Feedback, Note};
use deskhand::store::{PeopleStore, SqliteStore, StoreError};

fn note(id: &str, agent: &str, text: &str, minutes_ago: i64) -> Note {
    Note {
        id: id.into(),
        agent: agent.into(),
        text: text.into(),
        created_at: Utc::now() - Duration::minutes(minutes_ago),
    }
}

async fn contract(s: &dyn PeopleStore) {
    let (a, b) = (ConversationId::random(), ConversationId::random());

    // Drafts: none, then the latest kept wins; per conversation.
    assert_eq!(s.draft(a).await.unwrap(), None);
    let first = Draft {
        ticket_id: TicketId::new(),
        text: "Maybe restart it?".into(),
        reason: ReasonCode::LowConfidence,
        confidence: 0.31,
        created_at: Utc::now() - Duration::minutes(5),
    };
    s.keep_draft(a, first.clone()).await.unwrap();
    assert_eq!(s.draft(a).await.unwrap(), Some(first.clone()));
    let second = Draft {
        ticket_id: TicketId::new(),
        text: "Try the export page <b>now</b>".into(),
        confidence: 0.4,
        created_at: Utc::now(),
        ..first.clone()
    };
    s.keep_draft(a, second.clone()).await.unwrap();
    assert_eq!(s.draft(a).await.unwrap(), Some(second));
    assert_eq!(s.draft(b).await.unwrap(), None);

    // Notes: idempotent per id (the first text stays), oldest first, per
    // conversation.
    assert!(s.notes(a).await.unwrap().is_empty());
    let later = note("n2", "Lee", "second", 1);
    let earlier = note("n1", "Dana", "first, with \"quotes\" and ünïcode", 3);
    assert_eq!(s.add_note(a, later.clone()).await.unwrap(), later);
    assert_eq!(s.add_note(a, earlier.clone()).await.unwrap(), earlier);
    let retried = s
        .add_note(a, note("n2", "Lee", "changed on retry", 0))
        .await
        .unwrap();
    assert_eq!(
        retried.text, "second",
        "a retried note keeps what was stored"
    );
    let texts: Vec<String> = s
        .notes(a)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.text)
        .collect();
    assert_eq!(texts, [earlier.text.clone(), later.text.clone()]);
    assert!(s.notes(b).await.unwrap().is_empty());
    // The same note id in another conversation is another note.
    s.add_note(b, note("n1", "Dana", "other", 0)).await.unwrap();
    assert_eq!(s.notes(b).await.unwrap().len(), 1);
    assert_eq!(s.notes(a).await.unwrap().len(), 2);

    // Assignment: set, replace, clear (clearing twice is fine).
    assert_eq!(s.assignee(a).await.unwrap(), None);
    s.assign(a, Some("Dana")).await.unwrap();
    s.assign(a, Some("Dana")).await.unwrap();
    assert_eq!(s.assignee(a).await.unwrap().as_deref(), Some("Dana"));
    s.assign(a, Some("Lee")).await.unwrap();
    assert_eq!(s.assignee(a).await.unwrap().as_deref(), Some("Lee"));
    assert_eq!(s.assignee(b).await.unwrap(), None);
    s.assign(a, None).await.unwrap();
    s.assign(a, None).await.unwrap();
    assert_eq!(s.assignee(a).await.unwrap(), None);

    // Ratings: one per message, the latest wins, per conversation.
    let up = Feedback {
        conversation_id: a,
        message_id: "t1.reply".into(),
        rating: Rating::Up,
        reason: None,
        at: Utc::now() - Duration::minutes(2),
    };
    s.rate(up.clone()).await.unwrap();
    s.rate(up.clone()).await.unwrap();
    assert_eq!(s.ratings(a).await.unwrap(), std::slice::from_ref(&up));
    let down = Feedback {
        rating: Rating::Down,
        reason: Some(FeedbackReason::WrongAnswer),
        at: Utc::now(),
        ..up.clone()
    };
    s.rate(down.clone()).await.unwrap();
    let other = Feedback {
        message_id: "t0.reply".into(),
        at: Utc::now() - Duration::minutes(9),
        ..up.clone()
    };
    s.rate(other.clone()).await.unwrap();
    assert_eq!(s.ratings(a).await.unwrap(), [other, down]);
    assert!(s.ratings(b).await.unwrap().is_empty());

    // Satisfaction: one per conversation, the latest wins.
    assert_eq!(s.csat(a).await.unwrap(), None);
    let two = Csat {
        conversation_id: a,
        score: 2,
        at: Utc::now() - Duration::minutes(1),
    };
    s.set_csat(two.clone()).await.unwrap();
    assert_eq!(s.csat(a).await.unwrap(), Some(two.clone()));
    let five = Csat {
        score: 5,
        at: Utc::now(),
        ..two
    };
    s.set_csat(five.clone()).await.unwrap();
    assert_eq!(s.csat(a).await.unwrap(), Some(five));
    assert_eq!(s.csat(b).await.unwrap(), None);

    // Session generations: per agent, 0 until a sign-out, then counting.
    let (dana, lee) = (
        format!("Dana {}", uuid::Uuid::new_v4()),
        format!("Lee {}", uuid::Uuid::new_v4()),
    );
    assert_eq!(s.session_generation(&dana).await.unwrap(), 0);
    assert_eq!(s.end_sessions(&dana).await.unwrap(), 1);
    assert_eq!(s.end_sessions(&dana).await.unwrap(), 2);
    assert_eq!(s.session_generation(&dana).await.unwrap(), 2);
    assert_eq!(s.session_generation(&lee).await.unwrap(), 0);
}

fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::new(Db::open(&dir.path().join("t.db")).unwrap());
    (dir, store)
}

#[tokio::test]
async fn sqlite_people_store_meets_the_contract_and_survives_a_reopen() {
    let (dir, store) = sqlite();
    contract(&store).await;
    let conv = ConversationId::random();
    store
        .add_note(conv, note("kept", "Dana", "still here", 0))
        .await
        .unwrap();
    drop(store);
    let reopened = SqliteStore::new(Db::open(&dir.path().join("t.db")).unwrap());
    assert_eq!(reopened.notes(conv).await.unwrap()[0].text, "still here");
}

#[tokio::test]
async fn dynamodb_people_store_meets_the_contract() {
    let moto = Moto::connect().await;
    let store = moto.dynamo_store().await;
    contract(&store).await;
}

/// People's items live beside a conversation's messages on DynamoDB: the
/// transcript reads must not see them.
#[tokio::test]
async fn dynamodb_people_items_never_show_as_messages() {
    use deskhand::store::Store;
    let moto = Moto::connect().await;
    let store = moto.dynamo_store().await;
    let t = common::store_contract::ticket(ConversationId::random(), "hello there");
    let conv = t.conversation_id;
    store
        .claim(&t, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    store
        .append(
            conv,
            deskhand::domain::NewMessage::customer(t.ticket_id, "hello there", Utc::now()),
        )
        .await
        .unwrap();
    store
        .add_note(conv, note("n", "Dana", "secret note", 0))
        .await
        .unwrap();
    store.assign(conv, Some("Dana")).await.unwrap();
    let texts = common::store_contract::texts_of(&store, conv).await;
    assert_eq!(texts, ["hello there"]);
    assert_eq!(store.history(conv, 10).await.unwrap().len(), 1);
}

/// Records escalations; fails when told to.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Escalation>>,
}

#[async_trait]
impl Escalator for Recorder {
    async fn escalate(&self, e: &Escalation) -> Result<(), EscalateError> {
        self.seen.lock().unwrap().push(e.clone());
        Ok(())
    }
}

fn escalation(conv: ConversationId, draft: Option<&str>) -> Escalation {
    Escalation {
        ticket_id: Some(TicketId::new()),
        conversation_id: Some(conv),
        channel: None,
        provider: None,
        reason: ReasonCode::LowConfidence,
        priority: Priority::Normal,
        confidence: 0.42,
        detail: "low confidence".into(),
        customer: Customer::default(),
        subject: None,
        last_message: "help".into(),
        transcript: Vec::new(),
        draft: draft.map(str::to_owned),
        link: None,
        at: Utc::now(),
    }
}

#[tokio::test]
async fn keep_drafts_keeps_the_draft_then_escalates() {
    let (dir, store) = sqlite();
    let store = Arc::new(store);
    let next = Arc::new(Recorder::default());
    let keeper = KeepDrafts::new(next.clone(), store.clone());
    let conv = ConversationId::random();
    keeper.escalate(&escalation(conv, None)).await.unwrap();
    assert_eq!(store.draft(conv).await.unwrap(), None);
    let e = escalation(conv, Some("Try turning it off and on."));
    keeper.escalate(&e).await.unwrap();
    let d = store.draft(conv).await.unwrap().expect("draft kept");
    assert_eq!(
        (d.text.as_str(), d.ticket_id, d.confidence),
        ("Try turning it off and on.", e.ticket_id.unwrap(), 0.42)
    );
    assert_eq!(
        next.seen.lock().unwrap().len(),
        2,
        "every escalation goes on"
    );

    // A store that cannot keep it: the escalation still goes out.
    let keeper = KeepDrafts::new(next.clone(), Arc::new(Unavailable));
    keeper.escalate(&escalation(conv, Some("x"))).await.unwrap();
    assert_eq!(next.seen.lock().unwrap().len(), 3);
    drop(dir);
}

/// A people store that is down (fault injection for `KeepDrafts`).
struct Unavailable;

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::Transient("down for the test".into()))
}

#[async_trait]
impl PeopleStore for Unavailable {
    async fn keep_draft(&self, _: ConversationId, _: Draft) -> Result<(), StoreError> {
        down()
    }
    async fn draft(&self, _: ConversationId) -> Result<Option<Draft>, StoreError> {
        down()
    }
    async fn add_note(&self, _: ConversationId, _: Note) -> Result<Note, StoreError> {
        down()
    }
    async fn notes(&self, _: ConversationId) -> Result<Vec<Note>, StoreError> {
        down()
    }
    async fn assign(&self, _: ConversationId, _: Option<&str>) -> Result<(), StoreError> {
        down()
    }
    async fn assignee(&self, _: ConversationId) -> Result<Option<String>, StoreError> {
        down()
    }
    async fn rate(&self, _: Feedback) -> Result<(), StoreError> {
        down()
    }
    async fn ratings(&self, _: ConversationId) -> Result<Vec<Feedback>, StoreError> {
        down()
    }
    async fn set_csat(&self, _: Csat) -> Result<(), StoreError> {
        down()
    }
    async fn session_generation(&self, _: &str) -> Result<u64, StoreError> {
        down()
    }
    async fn end_sessions(&self, _: &str) -> Result<u64, StoreError> {
        down()
    }
    async fn csat(&self, _: ConversationId) -> Result<Option<Csat>, StoreError> {
        down()
    }
}
