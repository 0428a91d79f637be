//! An escalation at the floor: its publication runs beside the completion
//! and the ticket is marked notified afterwards, off its path. The
//! guarantee that survives the overlap: a ticket is marked notified only
//! after a publication succeeded, and a failed publication leaves it done
//! but unmarked, so its redelivery publishes again (SQLite store).

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::store_contract::ticket;
use deskhand::config::Config;
use deskhand::domain::{ConversationId, Outcome, ReasonCode};
use deskhand::knowledge::{Passage, RetrieveError, Retriever};
use deskhand::llm::{GenerateError, GenerateRequest, Generation, Generator};
use deskhand::notify::{EscalateError, Escalation, Escalator};
use deskhand::pipeline::{Pipeline, Policy, ProcessError, Processed, Responder, Rules};
use deskhand::sqlite::Db;
use deskhand::store::{SqliteStore, Store};

/// Finds nothing (the ticket asks for a person: the rules decide).
struct Nothing;

#[async_trait]
impl Retriever for Nothing {
    async fn retrieve(&self, _: &str, _: usize) -> Result<Vec<Passage>, RetrieveError> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl Generator for Nothing {
    async fn generate(&self, _: &GenerateRequest) -> Result<Generation, GenerateError> {
        panic!("a ticket that asks for a person needs no model")
    }
}

/// Fails its first `failures` publications, then keeps each one.
#[derive(Default)]
struct Flaky {
    failures: AtomicUsize,
    told: Mutex<Vec<Escalation>>,
}

#[async_trait]
impl Escalator for Flaky {
    async fn escalate(&self, e: &Escalation) -> Result<(), EscalateError> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(EscalateError("topic unreachable".into()));
        }
        self.told.lock().unwrap().push(e.clone());
        Ok(())
    }
}

async fn notified(store: &SqliteStore, t: &deskhand::domain::Ticket) -> bool {
    store
        .ticket(t.ticket_id)
        .await
        .unwrap()
        .is_some_and(|r| r.notified)
}

#[tokio::test]
async fn a_failed_publication_is_repaired_by_the_redelivery_and_only_then_marked() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::new(Db::open(&dir.path().join("floor.db")).unwrap());
    let flaky = Arc::new(Flaky {
        failures: AtomicUsize::new(1),
        ..Default::default()
    });
    let config = Config::default();
    let pipeline = Pipeline::new(
        Arc::new(store.clone()),
        flaky.clone(),
        Responder::new(
            Arc::new(Nothing),
            Arc::new(Nothing),
            Rules::new(&config.pipeline).unwrap(),
            Policy::from_config(&config),
        ),
    );
    let t = ticket(
        ConversationId::random(),
        "I want to talk to a human, please.",
    );

    // The publication fails beside a completion that lands: the attempt
    // fails (the queue redelivers), the ticket is done, not marked.
    let first = pipeline.process(&t).await;
    assert!(
        matches!(first, Err(ProcessError::Transient { .. })),
        "{first:?}"
    );
    let record = store.ticket(t.ticket_id).await.unwrap().unwrap();
    assert_eq!(record.outcome, Outcome::Escalated);
    assert_eq!(record.reason, Some(ReasonCode::AskedForHuman));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!notified(&store, &t).await, "marked without a publication");
    assert!(flaky.told.lock().unwrap().is_empty());

    // The redelivery finds it done and unannounced: published, then marked.
    assert_eq!(pipeline.process(&t).await.unwrap(), Processed::Renotified);
    assert_eq!(flaky.told.lock().unwrap().len(), 1);
    let started = Instant::now();
    while !notified(&store, &t).await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never marked notified"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Once marked, a duplicate delivery publishes nothing more.
    assert_eq!(pipeline.process(&t).await.unwrap(), Processed::AlreadyDone);
    assert_eq!(flaky.told.lock().unwrap().len(), 1);

    // A publication that succeeds the first time: escalated, told once, marked.
    let u = ticket(ConversationId::random(), "Can I speak to a real person?");
    assert_eq!(
        pipeline.process(&u).await.unwrap(),
        Processed::Escalated(ReasonCode::AskedForHuman)
    );
    assert_eq!(flaky.told.lock().unwrap().len(), 2);
    let started = Instant::now();
    while !notified(&store, &u).await {
        assert!(started.elapsed() < Duration::from_secs(10), "never marked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
