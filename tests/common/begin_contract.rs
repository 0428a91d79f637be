//! The contract of `Store::begin` and of the completion that follows it
//! (the worker's two store steps), for every adapter. `a` and `b` are two
//! handles on the same data, as two processes hold them (on DynamoDB each
//! has its own memory of what it last wrote; its guesses must never show).

use std::sync::Arc;
use std::time::Duration;

use deskhand::domain::{
    ConversationId, ConversationStatus, NewMessage, Outcome, ReasonCode, Role, Ticket, Usage,
};
use deskhand::store::{Begin, Begun, Completed, Completion, ConversationState, Store};

use super::store_contract::{texts_of, ticket};

fn customer(t: &Ticket) -> NewMessage {
    NewMessage::customer(t.ticket_id, t.text.as_str(), t.received_at)
}

async fn begin(s: &dyn Store, t: &Ticket, lease: Duration) -> Begin {
    s.begin(t, customer(t), lease).await.unwrap()
}

async fn acquired(s: &dyn Store, t: &Ticket, lease: Duration) -> Begun {
    match begin(s, t, lease).await {
        Begin::Acquired(b) => b,
        other => panic!("expected to acquire {}, got {other:?}", t.ticket_id),
    }
}

fn reply(
    t: &Ticket,
    b: Option<&Begun>,
    text: &str,
    status: Option<ConversationStatus>,
) -> Completion {
    let escalated = status == Some(ConversationStatus::Escalated);
    Completion {
        ticket_id: t.ticket_id,
        conversation_id: t.conversation_id,
        token: b.map(|b| b.token),
        outcome: if escalated {
            Outcome::DeadLettered
        } else {
            Outcome::Answered
        },
        reason: escalated.then_some(ReasonCode::ProcessingFailed),
        confidence: 0.9,
        message: Some(NewMessage::reply_to(
            t.ticket_id,
            Role::Assistant,
            text,
            vec![],
        )),
        status,
        usage: Usage::default(),
        needs_notification: false,
        outbox: Vec::new(),
    }
}

const OPEN: ConversationState = ConversationState {
    status: ConversationStatus::Open,
    escalation_reason: None,
};

/// A new ticket: claimed, its message stored, its new conversation open;
/// while held it is busy and nothing more is stored; once completed it is
/// done, and neither the message nor the reply is ever stored twice.
pub async fn begin_claims_appends_and_reads(a: &dyn Store) {
    let t = ticket(ConversationId::random(), "how do I export?");
    let b = acquired(a, &t, Duration::from_secs(60)).await;
    assert_eq!((b.attempt, b.redriven, b.state), (1, false, OPEN));
    let conv = a
        .conversation(t.conversation_id)
        .await
        .unwrap()
        .expect("begin creates the conversation");
    assert_eq!(conv.customer.name.as_deref(), Some("Ann"));
    assert_eq!(conv.subject.as_deref(), Some("Subject"));
    assert!(matches!(
        begin(a, &t, Duration::from_secs(60)).await,
        Begin::Busy { .. }
    ));
    assert_eq!(texts_of(a, t.conversation_id).await, ["how do I export?"]);
    assert_eq!(
        a.complete(reply(&t, Some(&b), "Use Reports.", None))
            .await
            .unwrap(),
        Completed::Written
    );
    match begin(a, &t, Duration::from_secs(60)).await {
        Begin::Done(record) => assert_eq!(record.outcome, Outcome::Answered),
        other => panic!("a finished ticket is done, got {other:?}"),
    }
    assert_eq!(
        texts_of(a, t.conversation_id).await,
        ["how do I export?", "Use Reports."]
    );
    let page = a.messages_after(t.conversation_id, 0, 10).await.unwrap();
    let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 2]);
}

/// A worker died holding the ticket: once the lease is out the next begin
/// takes it (attempt 2) and finds the message already stored.
pub async fn begin_after_a_lost_worker_stores_nothing_twice(a: &dyn Store, b: &dyn Store) {
    let t = ticket(ConversationId::random(), "first try");
    acquired(a, &t, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = acquired(b, &t, Duration::from_secs(60)).await;
    assert_eq!(
        (again.attempt, again.redriven, again.state),
        (2, false, OPEN)
    );
    assert_eq!(texts_of(a, t.conversation_id).await, ["first try"]);
    // A third, from the first handle again, is busy behind the second.
    assert!(matches!(
        begin(a, &t, Duration::from_secs(60)).await,
        Begin::Busy { .. }
    ));
    assert_eq!(
        b.complete(reply(&t, Some(&again), "answer", None))
            .await
            .unwrap(),
        Completed::Written
    );
    assert_eq!(
        texts_of(a, t.conversation_id).await,
        ["first try", "answer"]
    );
}

/// A dead-lettered ticket sent back: begin takes it again, says so, and
/// shows the escalation its failure caused.
pub async fn begin_of_a_redriven_ticket(a: &dyn Store) {
    let t = ticket(ConversationId::random(), "broken");
    let first = acquired(a, &t, Duration::from_secs(60)).await;
    let mut failed = reply(
        &t,
        Some(&first),
        "holding",
        Some(ConversationStatus::Escalated),
    );
    failed.message = Some(NewMessage::failure_notice(t.ticket_id, "holding"));
    assert_eq!(a.complete(failed).await.unwrap(), Completed::Written);
    let again = acquired(a, &t, Duration::from_secs(60)).await;
    assert_eq!((again.attempt, again.redriven), (2, true));
    assert_eq!(
        again.state,
        ConversationState {
            status: ConversationStatus::Escalated,
            escalation_reason: Some(ReasonCode::ProcessingFailed),
        }
    );
    assert_eq!(texts_of(a, t.conversation_id).await, ["broken", "holding"]);
}

/// Another writer (an agent, through the API's own store) changes the
/// conversation between tickets: the next begin reads the change, and the
/// next reply lands after the agent's message, gap-free.
pub async fn begin_and_complete_see_other_writers(a: &dyn Store, b: &dyn Store) {
    let conv = ConversationId::random();
    let t1 = ticket(conv, "one");
    let b1 = acquired(a, &t1, Duration::from_secs(60)).await;
    assert_eq!(
        a.complete(reply(&t1, Some(&b1), "r1", None)).await.unwrap(),
        Completed::Written
    );
    b.set_status(
        conv,
        ConversationStatus::Escalated,
        Some(ReasonCode::AskedForHuman),
        None,
        Vec::new(),
    )
    .await
    .unwrap();
    let t2 = ticket(conv, "two");
    let b2 = acquired(a, &t2, Duration::from_secs(60)).await;
    assert_eq!(
        b2.state,
        ConversationState {
            status: ConversationStatus::Escalated,
            escalation_reason: Some(ReasonCode::AskedForHuman),
        }
    );
    // An agent answers while the ticket is being processed.
    b.append(
        conv,
        NewMessage::reply_to(t2.ticket_id, Role::Agent, "agent here", vec![]),
    )
    .await
    .unwrap();
    let mut late = reply(&t2, Some(&b2), "r2", Some(ConversationStatus::Open));
    late.message.as_mut().unwrap().id = format!("{}-late", t2.ticket_id);
    assert_eq!(a.complete(late).await.unwrap(), Completed::Written);
    let page = a.messages_after(conv, 0, 10).await.unwrap();
    let got: Vec<(u64, &str)> = page
        .messages
        .iter()
        .map(|m| (m.seq, m.body.text.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (1, "one"),
            (2, "r1"),
            (3, "two"),
            (4, "agent here"),
            (5, "r2")
        ]
    );
    assert_eq!(page.conversation.unwrap().status, ConversationStatus::Open);
    // And a third ticket, begun where the other handle last wrote, sees it open.
    let t3 = ticket(conv, "three");
    assert_eq!(acquired(b, &t3, Duration::from_secs(60)).await.state, OPEN);
    assert_eq!(
        texts_of(a, conv).await.last().map(String::as_str),
        Some("three")
    );
}

/// A completion whose acknowledgement was lost is retried without a
/// token after the lease: it writes nothing twice.
pub async fn a_retried_completion_writes_once(a: &dyn Store) {
    let t = ticket(ConversationId::random(), "q");
    let b = acquired(a, &t, Duration::from_secs(60)).await;
    assert_eq!(
        a.complete(reply(&t, Some(&b), "once", None)).await.unwrap(),
        Completed::Written
    );
    assert_eq!(
        a.complete(reply(&t, None, "once", None)).await.unwrap(),
        Completed::LostClaim
    );
    assert_eq!(texts_of(a, t.conversation_id).await, ["q", "once"]);
}

/// Tickets of one conversation begun through two handles, each stale
/// about the other's writes, at once: all acquired, messages gap-free.
pub async fn interleaved_begins(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let conv = ConversationId::random();
    let tickets: Vec<Ticket> = (0..6).map(|i| ticket(conv, &format!("m{i}"))).collect();
    let begun = futures::future::join_all(tickets.iter().enumerate().map(|(i, t)| {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            s.begin(t, customer(t), Duration::from_secs(60))
                .await
                .unwrap()
        }
    }))
    .await;
    assert!(
        begun.iter().all(|b| matches!(b, Begin::Acquired(_))),
        "{begun:?}"
    );
    let page = a.messages_after(conv, 0, 20).await.unwrap();
    let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<u64>>());
}

/// Every case above.
pub async fn run_all(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    begin_claims_appends_and_reads(&*a).await;
    begin_after_a_lost_worker_stores_nothing_twice(&*a, &*b).await;
    begin_of_a_redriven_ticket(&*a).await;
    begin_and_complete_see_other_writers(&*a, &*b).await;
    a_retried_completion_writes_once(&*a).await;
    interleaved_begins(a, b).await;
}
