//! Listing finished tickets for stats and cost on DynamoDB (moto): the
//! template's `by_done_day` index, created from the template, returns a
//! period's tickets; a redriven ticket leaves it until it finishes again.
//! The same checks run on SQLite, so the two adapters agree.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::moto::Moto;
use common::store_contract::ticket;
use deskhand::domain::{ConversationId, Outcome, ReasonCode, Usage};
use deskhand::store::{Claim, Completed, Completion, DynamoStore, SqliteStore, Store};

async fn finish(
    store: &dyn Store,
    outcome: Outcome,
    reason: Option<ReasonCode>,
) -> deskhand::domain::TicketId {
    let t = ticket(ConversationId::random(), "Where is my invoice?");
    let Claim::Acquired { token, .. } = store.claim(&t, Duration::from_secs(60)).await.unwrap()
    else {
        panic!("claimed")
    };
    let written = store
        .complete(Completion {
            ticket_id: t.ticket_id,
            conversation_id: t.conversation_id,
            token: Some(token),
            outcome,
            reason,
            confidence: 0.8,
            message: None,
            status: None,
            usage: Usage {
                model_id: Some("us.amazon.nova-lite-v1:0".into()),
                input_tokens: 2_000,
                output_tokens: 100,
                calls: 1,
                model_ms: 700,
                ..Usage::default()
            },
            needs_notification: reason.is_some(),
            outbox: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(written, Completed::Written);
    t.ticket_id
}

async fn lists_a_periods_tickets(store: Arc<dyn Store>) {
    let before = Utc::now() - chrono::Duration::seconds(1);
    let answered = finish(store.as_ref(), Outcome::Answered, None).await;
    let dead = finish(
        store.as_ref(),
        Outcome::DeadLettered,
        Some(ReasonCode::ProcessingFailed),
    )
    .await;

    let listed = store.tickets_since(before).await.unwrap();
    let ids: Vec<_> = listed.iter().map(|r| r.ticket_id).collect();
    assert!(ids.contains(&answered) && ids.contains(&dead), "{listed:?}");
    let a = listed.iter().find(|r| r.ticket_id == answered).unwrap();
    assert_eq!(a.outcome, Outcome::Answered);
    assert_eq!(a.usage.input_tokens, 2_000);
    assert_eq!(
        a.usage.model_id.as_deref(),
        Some("us.amazon.nova-lite-v1:0")
    );
    assert!(a.completed_at >= a.received_at);
    let d = listed.iter().find(|r| r.ticket_id == dead).unwrap();
    assert_eq!(d.reason, Some(ReasonCode::ProcessingFailed));
    assert!(
        listed
            .windows(2)
            .all(|w| w[0].completed_at <= w[1].completed_at),
        "oldest first"
    );

    // Nothing finished after now.
    let later = Utc::now() + chrono::Duration::seconds(5);
    assert!(store.tickets_since(later).await.unwrap().is_empty());

    // A redriven ticket is being processed again: it is not a finished one.
    let t = ticket(ConversationId::random(), "again");
    let mut t = t;
    t.ticket_id = dead;
    assert!(matches!(
        store.claim(&t, Duration::from_secs(60)).await.unwrap(),
        Claim::Acquired { redriven: true, .. }
    ));
    let ids: Vec<_> = store
        .tickets_since(before)
        .await
        .unwrap()
        .iter()
        .map(|r| r.ticket_id)
        .collect();
    assert!(ids.contains(&answered) && !ids.contains(&dead), "{ids:?}");
}

#[tokio::test]
async fn dynamodb_lists_finished_tickets_by_day() {
    let moto = Moto::connect().await;
    let table = moto.table().await;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&moto.sdk),
        &table,
        Duration::from_secs(3600),
    );
    lists_a_periods_tickets(Arc::new(store)).await;
}

#[tokio::test]
async fn sqlite_lists_finished_tickets_alike() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::new(deskhand::sqlite::Db::open(&dir.path().join("d.db")).unwrap());
    lists_a_periods_tickets(Arc::new(store)).await;
}
