//! The AWS adapters through the real SDK against moto server.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::moto::Moto;
use common::store_contract;
use deskhand::domain::{Channel, ConversationId, Priority, Provider, ReasonCode};
use deskhand::notify::{Escalation, Escalator, SnsEscalator};
use deskhand::queue::{Queue, SqsQueue, decode};
use deskhand::store::DynamoStore;

#[tokio::test]
async fn dynamodb_store_meets_the_contract() {
    let moto = Moto::connect().await;
    let store = moto.dynamo_store().await;
    store_contract::run_all(Arc::new(store), false).await;
}

#[tokio::test]
async fn dynamodb_store_meets_the_outbox_contract() {
    let moto = Moto::connect().await;
    let store = moto.dynamo_store().await;
    store_contract::outbox_lifecycle(&store, &store).await;
    store_contract::agent_reply_route_and_outbox(&store, &store).await;
}

#[tokio::test]
async fn dynamodb_replay_guard_meets_the_contract() {
    let moto = Moto::connect().await;
    let store = moto.dynamo_store().await;
    store_contract::replay_guard_contract(&store).await;
}

#[tokio::test]
async fn dynamodb_conversation_limiter_meets_the_contract_across_instances() {
    let moto = Moto::connect().await;
    let table = moto.table().await;
    let store = |_| deskhand::store::DynamoConversationLimiter::new(moto.store_on(&table), 3);
    store_contract::conversation_limiter_contract(&store(0), 3).await;
    // Two limiters (two instances) over one table share the count.
    use deskhand::store::{Admission, ConversationLimiter};
    let (a, b) = (store(1), store(2));
    let conv = ConversationId::random();
    let second = chrono::Timelike::second(&chrono::Utc::now());
    if second >= 50 {
        tokio::time::sleep(Duration::from_secs(u64::from(61 - second))).await;
    }
    assert_eq!(a.admit(conv).await.unwrap(), Admission::Allowed);
    assert_eq!(b.admit(conv).await.unwrap(), Admission::Allowed);
    assert_eq!(a.admit(conv).await.unwrap(), Admission::Allowed);
    assert!(matches!(
        b.admit(conv).await.unwrap(),
        Admission::Limited { .. }
    ));
}

#[tokio::test]
async fn dynamodb_items_carry_a_ttl() {
    let moto = Moto::connect().await;
    let table = moto.table().await;
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk);
    let store = DynamoStore::new(client.clone(), &table, Duration::from_secs(7 * 86_400));
    let t = store_contract::ticket(ConversationId::random(), "hi");
    deskhand::store::Store::claim(&store, &t, Duration::from_secs(5))
        .await
        .unwrap();
    let items = client.scan().table_name(&table).send().await.unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(!items.items().is_empty());
    for item in items.items() {
        let exp: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
        assert!(
            (exp - now - 7 * 86_400).abs() < 60,
            "expires_at {exp} is not now + 7 days"
        );
    }
}

#[tokio::test]
async fn sqs_fifo_send_groups_dedupes_and_dead_letters() {
    let moto = Moto::connect().await;
    let (url, dlq) = moto.queues().await;
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&moto.sdk),
        &url,
        Some(dlq.clone()),
        256 * 1024,
    );
    let t = store_contract::ticket(ConversationId::random(), "Where is my refund?");
    queue.send(&t).await.unwrap();
    queue.send(&t).await.unwrap(); // the same ticket again: SQS drops it
    let got = queue.receive(&url, 0, 30).await.unwrap();
    assert_eq!(got.len(), 1, "FIFO deduplication by ticket id");
    let m = &got[0];
    assert_eq!(m.group_id, t.conversation_id.to_string());
    assert_eq!(
        m.attributes["MessageDeduplicationId"],
        t.ticket_id.to_string()
    );
    assert_eq!(m.receive_count, 1);
    assert_eq!(decode(&m.body).unwrap(), t);

    // Backoff: hidden for a while, then back with a higher receive count.
    queue.change_visibility(&m.receipt_handle, 1).await.unwrap();
    assert!(queue.receive(&url, 0, 30).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let again = queue.receive(&url, 0, 30).await.unwrap();
    assert_eq!(again[0].receive_count, 2);

    // Dead-lettered directly with a reason, then redriven (moto has no
    // StartMessageMoveTask: the explicit move runs).
    queue
        .dead_letter(
            &again[0].body,
            &again[0].group_id,
            &again[0].message_id,
            "unparseable",
        )
        .await
        .unwrap();
    queue.delete(&url, &again[0].receipt_handle).await.unwrap();
    assert_eq!(moto.depth(&dlq).await, 1);
    assert_eq!(queue.redrive().await.unwrap(), 1);
    assert_eq!(moto.depth(&dlq).await, 0);
    let back = queue.receive(&url, 0, 30).await.unwrap();
    assert_eq!(decode(&back[0].body).unwrap().ticket_id, t.ticket_id);
    assert_eq!(back[0].group_id, t.conversation_id.to_string());
}

#[tokio::test]
async fn sqs_oversized_text_is_truncated_with_a_marker() {
    let moto = Moto::connect().await;
    let (url, _) = moto.queues().await;
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&moto.sdk), &url, None, 10_000_000);
    let mut t = store_contract::ticket(ConversationId::random(), "x");
    t.text = deskhand::domain::MessageText::parse(&"é".repeat(300_000), usize::MAX).unwrap();
    queue.send(&t).await.unwrap();
    let got = queue.receive(&url, 0, 30).await.unwrap();
    assert!(got[0].body.len() <= 256 * 1024);
    assert!(
        decode(&got[0].body)
            .unwrap()
            .text
            .as_str()
            .ends_with("[…truncated]")
    );
}

#[tokio::test]
async fn sns_escalations_carry_filterable_attributes() {
    let moto = Moto::connect().await;
    // This subscriber only wants urgent escalations.
    let (topic, inbox) = moto
        .topic_with_subscriber(Some(r#"{"priority":["high"]}"#))
        .await;
    let sns = SnsEscalator::new(aws_sdk_sns::Client::new(&moto.sdk), &topic);
    let escalation = |reason: ReasonCode| Escalation {
        ticket_id: None,
        conversation_id: Some(ConversationId::random()),
        channel: Some(Channel::Email),
        provider: Some(Provider::Postmark),
        reason,
        priority: reason.priority(),
        confidence: 0.2,
        detail: "d".into(),
        customer: Default::default(),
        subject: Some("Help".into()),
        last_message: "My lawyer will call".into(),
        transcript: vec![],
        draft: None,
        link: None,
        at: chrono::Utc::now(),
    };
    sns.escalate(&escalation(ReasonCode::LowConfidence))
        .await
        .unwrap();
    sns.escalate(&escalation(ReasonCode::SensitiveTopic))
        .await
        .unwrap();
    let got = moto.notifications(&inbox).await;
    assert_eq!(
        got.len(),
        1,
        "the filter policy let a normal-priority escalation through: {got:?}"
    );
    let n = &got[0];
    assert_eq!(n["MessageAttributes"]["reason"]["Value"], "sensitive_topic");
    assert_eq!(n["MessageAttributes"]["channel"]["Value"], "email");
    assert_eq!(
        n["MessageAttributes"]["priority"]["Value"],
        Priority::High.as_str()
    );
    let body: serde_json::Value = serde_json::from_str(n["Message"].as_str().unwrap()).unwrap();
    assert_eq!(body["reason"], "sensitive_topic");
    assert_eq!(body["last_message"], "My lawyer will call");
    assert_eq!(body["subject"], "Help");
}
