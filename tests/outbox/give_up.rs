//! `Pipeline::give_up` waits out a live lease instead of overriding it
//! (security issue #14, finding 14): a slow worker's answer wins over the
//! holding message, on SQLite and on DynamoDB (moto).

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use common::moto::Moto;
use common::store_contract::{self, ticket};
use deskhand::config::Config;
use deskhand::domain::{
    ConversationId, ConversationStatus, NewMessage, Outcome, ReasonCode, Role, Usage,
};
use deskhand::knowledge::{Passage, RetrieveError, Retriever};
use deskhand::llm::{GenerateError, GenerateRequest, Generation, Generator};
use deskhand::notify::{EscalateError, Escalation, Escalator};
use deskhand::pipeline::{Pipeline, Policy, ProcessError, Responder, Rules};
use deskhand::sqlite::Db;
use deskhand::store::{Claim, Completed, Completion, SqliteStore, Store};

/// give_up never retrieves or generates.
struct Unused;

#[async_trait]
impl Retriever for Unused {
    async fn retrieve(&self, _: &str, _: usize) -> Result<Vec<Passage>, RetrieveError> {
        panic!("give_up retrieved")
    }
}

#[async_trait]
impl Generator for Unused {
    async fn generate(&self, _: &GenerateRequest) -> Result<Generation, GenerateError> {
        panic!("give_up generated")
    }
}

/// Keeps every escalation published.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<Escalation>>>);

#[async_trait]
impl Escalator for Recorded {
    async fn escalate(&self, e: &Escalation) -> Result<(), EscalateError> {
        self.0.lock().unwrap().push(e.clone());
        Ok(())
    }
}

fn pipeline(store: Arc<dyn Store>, told: Recorded) -> Pipeline {
    let config = Config::default();
    Pipeline::new(
        store,
        Arc::new(told),
        Responder::new(
            Arc::new(Unused),
            Arc::new(Unused),
            Rules::new(&config.pipeline).unwrap(),
            Policy::from_config(&config),
        ),
    )
}

fn answer(t: &deskhand::domain::Ticket, token: deskhand::store::ClaimToken) -> Completion {
    Completion {
        ticket_id: t.ticket_id,
        conversation_id: t.conversation_id,
        token: Some(token),
        outcome: Outcome::Answered,
        reason: None,
        confidence: 0.9,
        message: Some(NewMessage::reply_to(
            t.ticket_id,
            Role::Assistant,
            "Go to Settings.",
            vec![],
        )),
        status: None,
        usage: Usage::default(),
        needs_notification: false,
        outbox: Vec::new(),
    }
}

async fn give_up_waits_out_a_live_lease(store: Arc<dyn Store>) {
    let told = Recorded::default();
    let p = pipeline(store.clone(), told.clone());

    // Worker A holds a live lease on the ticket (it is slow, not dead).
    let t = ticket(ConversationId::random(), "How do I export?");
    let Claim::Acquired { token: a, .. } = store.claim(&t, Duration::from_secs(60)).await.unwrap()
    else {
        panic!("A did not acquire")
    };
    // Another delivery of the same ticket runs out of attempts and gives up.
    match p.give_up(&t, "out of attempts").await {
        Err(ProcessError::Busy { until }) => assert!(until > Utc::now(), "{until}"),
        other => panic!("give_up overrode a live lease: {other:?}"),
    }
    assert!(told.0.lock().unwrap().is_empty(), "a person was told");
    assert!(store.ticket(t.ticket_id).await.unwrap().is_none());
    // A's answer wins: written, and no holding message beside it.
    assert_eq!(
        store.complete(answer(&t, a)).await.unwrap(),
        Completed::Written
    );
    let texts = store_contract::texts_of(store.as_ref(), t.conversation_id).await;
    assert_eq!(texts, ["Go to Settings."]);
    // The deferred give-up comes back and finds the ticket finished.
    p.give_up(&t, "out of attempts").await.unwrap();
    assert!(told.0.lock().unwrap().is_empty(), "told about an answer");
    let conv = store
        .conversation(t.conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conv.status, ConversationStatus::Open);
    assert_eq!(
        store.ticket(t.ticket_id).await.unwrap().unwrap().outcome,
        Outcome::Answered
    );

    // A worker that died: once its lease has expired, give_up works.
    let t = ticket(ConversationId::random(), "How do I export?");
    let Claim::Acquired { token: dead, .. } = store.claim(&t, Duration::ZERO).await.unwrap() else {
        panic!("not acquired")
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    p.give_up(&t, "out of attempts").await.unwrap();
    let escalations = told.0.lock().unwrap().clone();
    assert_eq!(escalations.len(), 1);
    assert_eq!(escalations[0].reason, ReasonCode::ProcessingFailed);
    assert_eq!(escalations[0].ticket_id, Some(t.ticket_id));
    let record = store.ticket(t.ticket_id).await.unwrap().unwrap();
    assert_eq!(record.outcome, Outcome::DeadLettered);
    assert!(record.notified);
    assert_eq!(
        store
            .conversation(t.conversation_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ConversationStatus::Escalated
    );
    // The dead worker's late answer is refused.
    assert_eq!(
        store.complete(answer(&t, dead)).await.unwrap(),
        Completed::LostClaim
    );
}

#[tokio::test]
async fn give_up_waits_out_a_live_lease_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::new(Db::open(&dir.path().join("t.db")).unwrap());
    give_up_waits_out_a_live_lease(Arc::new(store)).await;
}

#[tokio::test]
async fn give_up_waits_out_a_live_lease_on_dynamodb() {
    let moto = Moto::connect().await;
    let store = moto.dynamo_store().await;
    give_up_waits_out_a_live_lease(Arc::new(store)).await;
}
