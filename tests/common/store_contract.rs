//! The `Store` contract: every adapter (SQLite, DynamoDB) must pass these.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use deskhand::domain::{
    ConversationId, ConversationStatus, Customer, MessageText, NewMessage, Outcome, Provider,
    ReasonCode, Role, Thread, Ticket, TicketId, Usage,
};
use deskhand::store::{Claim, ClaimToken, Completed, Completion, Store, StoreError};

pub fn ticket(conv: ConversationId, text: &str) -> Ticket {
    Ticket {
        ticket_id: TicketId::new(),
        conversation_id: conv,
        provider: Provider::Widget,
        customer: Customer {
            email: None,
            name: Some("Ann".into()),
            email_auth: None,
            user_id: None,
        },
        subject: Some("Subject".into()),
        text: MessageText::parse(text, 1000).unwrap(),
        attachments: vec![],
        thread: Thread::default(),
        brand: None,
        received_at: Utc::now(),
    }
}

fn completion(t: &Ticket, token: Option<ClaimToken>, text: &str) -> Completion {
    Completion {
        ticket_id: t.ticket_id,
        conversation_id: t.conversation_id,
        token,
        outcome: Outcome::Answered,
        reason: None,
        confidence: 0.9,
        message: Some(NewMessage::reply_to(
            t.ticket_id,
            Role::Assistant,
            text,
            vec![],
        )),
        status: None,
        usage: Usage {
            model_id: Some("m".into()),
            input_tokens: 10,
            output_tokens: 5,
            calls: 1,
            ..Usage::default()
        },
        needs_notification: false,
        outbox: Vec::new(),
    }
}

async fn acquire(s: &dyn Store, t: &Ticket, lease: Duration) -> (ClaimToken, u32, bool) {
    match s.claim(t, lease).await.unwrap() {
        Claim::Acquired {
            token,
            attempt,
            redriven,
        } => (token, attempt, redriven),
        other => panic!("expected to acquire, got {other:?}"),
    }
}

pub async fn claim_complete_and_duplicates(s: &dyn Store) {
    let t = ticket(ConversationId::random(), "hello");
    let (token, attempt, redriven) = acquire(s, &t, Duration::from_secs(60)).await;
    assert_eq!((attempt, redriven), (1, false));
    let conv = s
        .conversation(t.conversation_id)
        .await
        .unwrap()
        .expect("claim creates the conversation");
    assert_eq!(conv.status, ConversationStatus::Open);
    assert_eq!(conv.customer.name.as_deref(), Some("Ann"));
    assert!(matches!(
        s.claim(&t, Duration::from_secs(60)).await.unwrap(),
        Claim::Busy { .. }
    ));
    assert_eq!(
        s.complete(completion(&t, Some(ClaimToken::new()), "x"))
            .await
            .unwrap(),
        Completed::LostClaim
    );
    assert_eq!(
        s.complete(completion(&t, Some(token), "answer"))
            .await
            .unwrap(),
        Completed::Written
    );
    assert_eq!(
        s.complete(completion(&t, Some(token), "again"))
            .await
            .unwrap(),
        Completed::LostClaim
    );
    assert_eq!(
        s.complete(completion(&t, None, "forced")).await.unwrap(),
        Completed::LostClaim
    );
    match s.claim(&t, Duration::from_secs(60)).await.unwrap() {
        Claim::Done(r) => {
            assert_eq!(r.outcome, Outcome::Answered);
            assert!(r.notified);
            assert_eq!(r.usage.input_tokens, 10);
            assert_eq!(r.attempts, 1);
            assert_eq!(r.conversation_id, t.conversation_id);
        }
        other => panic!("expected Done, got {other:?}"),
    }
    let history = s.history(t.conversation_id, 10).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|m| m.body.text.as_str())
            .collect::<Vec<_>>(),
        ["answer"]
    );
    assert!(s.ticket(t.ticket_id).await.unwrap().is_some());
}

pub async fn leases_expire_and_release(s: &dyn Store) {
    let t = ticket(ConversationId::random(), "hello");
    let (first, _, _) = acquire(s, &t, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (second, attempt, _) = acquire(s, &t, Duration::from_secs(60)).await;
    assert_eq!(attempt, 2);
    assert_eq!(
        s.complete(completion(&t, Some(first), "stale"))
            .await
            .unwrap(),
        Completed::LostClaim
    );
    s.release(t.ticket_id, first).await.unwrap();
    assert!(matches!(
        s.claim(&t, Duration::from_secs(60)).await.unwrap(),
        Claim::Busy { .. }
    ));
    s.release(t.ticket_id, second).await.unwrap();
    let (third, attempt, _) = acquire(s, &t, Duration::from_secs(60)).await;
    assert_eq!(attempt, 3);
    assert_eq!(
        s.complete(completion(&t, Some(third), "ok")).await.unwrap(),
        Completed::Written
    );
}

pub async fn dead_lettered_tickets_are_reclaimable(s: &dyn Store) {
    let t = ticket(ConversationId::random(), "hello");
    let (held, _, _) = acquire(s, &t, Duration::from_secs(60)).await;
    let mut c = completion(&t, Some(held), "A person will follow up.");
    c.message = Some(NewMessage::failure_notice(
        t.ticket_id,
        "A person will follow up.",
    ));
    c.outcome = Outcome::DeadLettered;
    c.reason = Some(ReasonCode::ProcessingFailed);
    c.status = Some(ConversationStatus::Escalated);
    c.needs_notification = true;
    assert_eq!(s.complete(c).await.unwrap(), Completed::Written);
    let (token, attempt, redriven) = acquire(s, &t, Duration::from_secs(60)).await;
    assert_eq!((attempt, redriven), (2, true));
    assert!(s.ticket(t.ticket_id).await.unwrap().is_none());
    assert_eq!(
        s.complete(completion(&t, Some(token), "answer"))
            .await
            .unwrap(),
        Completed::Written
    );
    let texts = texts_of(s, t.conversation_id).await;
    assert_eq!(texts, ["A person will follow up.", "answer"]);
}

pub async fn appends_are_idempotent_ordered_and_paged(s: &dyn Store) {
    let (a, b) = (ConversationId::random(), ConversationId::random());
    let t1 = ticket(a, "one");
    let m1 = NewMessage::customer(t1.ticket_id, "one", Utc::now());
    assert_eq!(s.append(a, m1.clone()).await.unwrap().seq, 1);
    assert_eq!(
        s.append(a, m1).await.unwrap().seq,
        1,
        "a duplicate got a new seq"
    );
    let tb = ticket(b, "x");
    assert_eq!(
        s.append(b, NewMessage::customer(tb.ticket_id, "x", Utc::now()))
            .await
            .unwrap()
            .seq,
        1
    );
    for i in 2..=5 {
        let t = ticket(a, "n");
        let m = s
            .append(
                a,
                NewMessage::customer(t.ticket_id, &format!("m{i}"), Utc::now()),
            )
            .await
            .unwrap();
        assert_eq!(m.seq, i);
    }
    let page = s.messages_after(a, 2, 2).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [3, 4]
    );
    assert!(
        page.conversation.is_none(),
        "a bare append does not make a conversation"
    );
    let hist = s.history(a, 2).await.unwrap();
    assert_eq!(hist.iter().map(|m| m.seq).collect::<Vec<_>>(), [4, 5]);
    assert!(
        s.messages_after(a, 5, 10)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    let mine = s.messages_after(b, 0, 10).await.unwrap().messages;
    assert_eq!(mine.len(), 1, "messages leaked across conversations");
}

pub async fn concurrent_appends_get_distinct_gapless_seqs(s: Arc<dyn Store>) {
    let conv = ConversationId::random();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12 {
        let s = s.clone();
        tasks.spawn(async move {
            let t = ticket(conv, "x");
            s.append(
                conv,
                NewMessage::customer(t.ticket_id, &format!("m{i}"), Utc::now()),
            )
            .await
            .unwrap()
            .seq
        });
    }
    let mut seqs = Vec::new();
    while let Some(seq) = tasks.join_next().await {
        seqs.push(seq.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=12).collect::<Vec<u64>>());
}

pub async fn escalation_status_and_notification(s: &dyn Store) {
    let t = ticket(ConversationId::random(), "human please");
    let (token, _, _) = acquire(s, &t, Duration::from_secs(60)).await;
    let mut c = completion(&t, Some(token), "A person will follow up.");
    c.outcome = Outcome::Escalated;
    c.reason = Some(ReasonCode::AskedForHuman);
    c.status = Some(ConversationStatus::Escalated);
    c.needs_notification = true;
    s.complete(c).await.unwrap();
    let conv = s.conversation(t.conversation_id).await.unwrap().unwrap();
    assert_eq!(
        (conv.status, conv.escalation_reason),
        (
            ConversationStatus::Escalated,
            Some(ReasonCode::AskedForHuman)
        )
    );
    let rec = s.ticket(t.ticket_id).await.unwrap().unwrap();
    assert!(!rec.notified);
    assert_eq!(rec.reason, Some(ReasonCode::AskedForHuman));
    match s.claim(&t, Duration::from_secs(60)).await.unwrap() {
        Claim::Done(r) => assert!(!r.notified),
        other => panic!("{other:?}"),
    }
    s.mark_notified(t.ticket_id).await.unwrap();
    assert!(s.ticket(t.ticket_id).await.unwrap().unwrap().notified);

    let agent = NewMessage {
        id: "agent-1".into(),
        role: Role::Agent,
        text: "Hi, Sam here.".into(),
        sources: vec![],
        ticket_id: None,
        created_at: Utc::now(),
    };
    let closed = s
        .set_status(
            t.conversation_id,
            ConversationStatus::Closed,
            None,
            Some(agent.clone()),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        (closed.status, closed.escalation_reason),
        (ConversationStatus::Closed, None)
    );
    s.set_status(
        t.conversation_id,
        ConversationStatus::Open,
        None,
        Some(agent),
        Vec::new(),
    )
    .await
    .unwrap();
    let texts = texts_of(s, t.conversation_id).await;
    assert_eq!(
        texts,
        ["A person will follow up.", "Hi, Sam here."],
        "agent message duplicated or lost"
    );
    let missing = s
        .set_status(
            ConversationId::random(),
            ConversationStatus::Closed,
            None,
            None,
            Vec::new(),
        )
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

/// A completion without a claim token: never over a live lease (that
/// worker's answer must win), but once the lease has expired or been
/// released.
pub async fn completion_without_a_token_waits_out_a_live_lease(s: &dyn Store) {
    let dead_letter = |t: &Ticket| {
        let mut c = completion(t, None, "A person will follow up.");
        c.message = Some(NewMessage::failure_notice(
            t.ticket_id,
            "A person will follow up.",
        ));
        c.outcome = Outcome::DeadLettered;
        c.reason = Some(ReasonCode::ProcessingFailed);
        c.status = Some(ConversationStatus::Escalated);
        c.needs_notification = true;
        c
    };
    // Worker A holds a live lease: a tokenless completion writes nothing.
    let t = ticket(ConversationId::random(), "hello");
    let (a, _, _) = acquire(s, &t, Duration::from_secs(60)).await;
    assert_eq!(
        s.complete(dead_letter(&t)).await.unwrap(),
        Completed::LostClaim,
        "a tokenless completion overrode a live lease"
    );
    assert!(s.ticket(t.ticket_id).await.unwrap().is_none());
    // A's answer wins.
    assert_eq!(
        s.complete(completion(&t, Some(a), "answer")).await.unwrap(),
        Completed::Written
    );
    let texts = texts_of(s, t.conversation_id).await;
    assert_eq!(texts, ["answer"]);
    let conv = s.conversation(t.conversation_id).await.unwrap().unwrap();
    assert_eq!(conv.status, ConversationStatus::Open);
    assert_eq!(
        s.ticket(t.ticket_id).await.unwrap().unwrap().outcome,
        Outcome::Answered
    );

    // An expired lease no longer holds the ticket.
    let t = ticket(ConversationId::random(), "hello");
    let (a, _, _) = acquire(s, &t, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        s.complete(dead_letter(&t)).await.unwrap(),
        Completed::Written
    );
    assert_eq!(
        s.complete(completion(&t, Some(a), "late")).await.unwrap(),
        Completed::LostClaim
    );
    // Nor does a released one.
    let t = ticket(ConversationId::random(), "hello");
    let (a, _, _) = acquire(s, &t, Duration::from_secs(60)).await;
    s.release(t.ticket_id, a).await.unwrap();
    assert_eq!(
        s.complete(dead_letter(&t)).await.unwrap(),
        Completed::Written
    );
}

/// Every property above. `concurrency` runs the concurrent-append check:
/// off against moto, whose threaded server applies `TransactWriteItems`
/// without a lock (two transactions can both pass the same condition),
/// so it would test moto, not the adapter; DynamoDB itself serializes
/// transactions.
pub async fn run_all(s: Arc<dyn Store>, concurrency: bool) {
    claim_complete_and_duplicates(s.as_ref()).await;
    leases_expire_and_release(s.as_ref()).await;
    dead_lettered_tickets_are_reclaimable(s.as_ref()).await;
    completion_without_a_token_waits_out_a_live_lease(s.as_ref()).await;
    appends_are_idempotent_ordered_and_paged(s.as_ref()).await;
    if concurrency {
        concurrent_appends_get_distinct_gapless_seqs(s.clone()).await;
    }
    escalation_status_and_notification(s.as_ref()).await;
}

fn outbox_for(t: &Ticket, id: &str) -> deskhand::domain::NewOutbox {
    use deskhand::domain::{Delivery, DeliveryMode, NewOutbox, OutboundAction};
    NewOutbox {
        id: id.to_owned(),
        delivery: Delivery {
            ticket_id: t.ticket_id,
            conversation_id: t.conversation_id,
            provider: Provider::Zendesk,
            customer: t.customer.clone(),
            subject: t.subject.clone(),
            thread: Thread {
                root: Some("4711".into()),
                ..Thread::default()
            },
            action: OutboundAction::Reply {
                mode: DeliveryMode::Public,
                text: "answer".into(),
                sources: vec![],
                by_agent: false,
            },
        },
    }
}

/// Outbox records: created with the completion, claimed with a lease,
/// settled only by the lease holder, listed while due.
pub async fn outbox_lifecycle(s: &dyn Store, o: &dyn deskhand::store::OutboxStore) {
    use chrono::Duration as Span;
    use deskhand::domain::{OutboxState, ShadowOutcome, ShadowReview};
    use deskhand::store::{OutboxClaim, Settle};

    let t = ticket(ConversationId::random(), "hello");
    let id = format!("{}.reply", t.ticket_id);
    let (token, _, _) = acquire(s, &t, Duration::from_secs(60)).await;
    let mut c = completion(&t, Some(token), "answer");
    c.outbox = vec![
        outbox_for(&t, &id),
        outbox_for(&t, &format!("{}.escalate", t.ticket_id)),
    ];
    assert_eq!(s.complete(c).await.unwrap(), Completed::Written);
    let r = o
        .outbox_record(&id)
        .await
        .unwrap()
        .expect("created with the reply");
    assert_eq!((r.state, r.attempts), (OutboxState::Pending, 0));
    assert_eq!(r.delivery, outbox_for(&t, &id).delivery);
    assert!(o.due_outbox(100).await.unwrap().contains(&id));

    // Another completion naming the same record leaves it as it is.
    let t2 = ticket(ConversationId::random(), "other");
    let (token2, _, _) = acquire(s, &t2, Duration::from_secs(60)).await;
    let mut c2 = completion(&t2, Some(token2), "answer");
    c2.outbox = vec![outbox_for(&t2, &id)];
    assert_eq!(s.complete(c2).await.unwrap(), Completed::Written);
    assert_eq!(
        o.outbox_record(&id)
            .await
            .unwrap()
            .unwrap()
            .delivery
            .ticket_id,
        t.ticket_id
    );

    let claim = |lease: Duration| o.claim_outbox(&id, lease);
    let OutboxClaim::Acquired { token: a, record } = claim(Duration::from_secs(60)).await.unwrap()
    else {
        panic!("not acquired")
    };
    assert_eq!(
        (record.state, record.attempts),
        (OutboxState::Delivering, 1)
    );
    assert!(matches!(
        claim(Duration::from_secs(60)).await.unwrap(),
        OutboxClaim::Busy(_)
    ));
    assert!(
        !o.due_outbox(100).await.unwrap().contains(&id),
        "leased yet due"
    );
    assert!(
        !o.settle_outbox(&id, ClaimToken::new(), Settle::Failed { error: "x".into() })
            .await
            .unwrap(),
        "a stranger settled the record"
    );
    let later = Utc::now() + Span::hours(1);
    assert!(
        o.settle_outbox(
            &id,
            a,
            Settle::Retry {
                error: "HTTP 503".into(),
                at: later
            }
        )
        .await
        .unwrap()
    );
    let r = o.outbox_record(&id).await.unwrap().unwrap();
    assert_eq!(r.state, OutboxState::Pending);
    assert_eq!(r.last_error.as_deref(), Some("HTTP 503"));
    assert!(matches!(
        claim(Duration::from_secs(60)).await.unwrap(),
        OutboxClaim::NotDue(_)
    ));
    assert!(!o.due_outbox(100).await.unwrap().contains(&id));

    // A lease that ends is taken over; the old holder can no longer settle.
    let id = format!("{}.escalate", t.ticket_id);
    let claim = |lease: Duration| o.claim_outbox(&id, lease);
    let OutboxClaim::Acquired { token: b, .. } = claim(Duration::ZERO).await.unwrap() else {
        panic!("not acquired")
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(
        o.due_outbox(100).await.unwrap().contains(&id),
        "an ended lease is due"
    );
    let OutboxClaim::Acquired { token: c3, record } = claim(Duration::from_secs(60)).await.unwrap()
    else {
        panic!("not taken over")
    };
    assert_eq!(
        (record.state, record.attempts),
        (OutboxState::Delivering, 2)
    );
    assert!(
        !o.settle_outbox(&id, b, Settle::Failed { error: "x".into() })
            .await
            .unwrap()
    );

    // Delivered as a shadow note: reviewed later, then done.
    assert!(
        o.settle_outbox(
            &id,
            c3,
            Settle::Delivered {
                external_id: Some("9001".into()),
                review_at: Some(Utc::now() - Span::seconds(1)),
            },
        )
        .await
        .unwrap()
    );
    let r = o.outbox_record(&id).await.unwrap().unwrap();
    assert_eq!(r.state, OutboxState::Reviewing);
    assert_eq!(r.external_id.as_deref(), Some("9001"));
    assert!(r.delivered_at.is_some());
    assert!(o.due_outbox(100).await.unwrap().contains(&id));
    let OutboxClaim::Acquired { token: d, record } = claim(Duration::from_secs(60)).await.unwrap()
    else {
        panic!("review not claimed")
    };
    assert_eq!(
        (record.state, record.attempts),
        (OutboxState::Reviewing, 2),
        "a review is not a delivery attempt"
    );
    let review = ShadowReview {
        outcome: ShadowOutcome::Edited,
        similarity: 0.7,
        at: Utc::now(),
    };
    assert!(
        o.settle_outbox(&id, d, Settle::Reviewed(review.clone()))
            .await
            .unwrap()
    );
    let r = o.outbox_record(&id).await.unwrap().unwrap();
    assert_eq!((r.state, r.review), (OutboxState::Delivered, Some(review)));
    assert!(matches!(
        claim(Duration::from_secs(60)).await.unwrap(),
        OutboxClaim::Finished(_)
    ));
    assert!(!o.due_outbox(100).await.unwrap().contains(&id));
    assert_eq!(
        o.claim_outbox("nope", Duration::from_secs(1))
            .await
            .unwrap(),
        OutboxClaim::Missing
    );
}

/// The reply route and an agent's reply: every claimed ticket becomes the
/// conversation's route (provider, address, subject, thread); a reply and
/// its outbox record are written together, and repeating it (a retried
/// request) writes each once.
pub async fn agent_reply_route_and_outbox(s: &dyn Store, o: &dyn deskhand::store::OutboxStore) {
    use deskhand::domain::{EmailAddress, OutboxState, ReplyRoute};
    let conv = ConversationId::random();
    let mut t1 = ticket(conv, "first");
    t1.provider = Provider::Postmark;
    t1.customer.email = EmailAddress::parse("ann@example.com");
    t1.thread = Thread {
        root: Some("<root@mail.example>".into()),
        message_id: Some("<root@mail.example>".into()),
        reply_message_id: Some(format!("<{}@deskhand.example.com>", t1.ticket_id)),
        ..Thread::default()
    };
    let (token, _, _) = acquire(s, &t1, Duration::from_secs(60)).await;
    let c = s.conversation(conv).await.unwrap().unwrap();
    assert_eq!(
        c.reply_route,
        Some(ReplyRoute::of(&t1)),
        "claim keeps the route"
    );
    assert_eq!(
        s.complete(completion(&t1, Some(token), "r1"))
            .await
            .unwrap(),
        Completed::Written
    );
    // The customer answers in the thread: the route follows.
    let mut t2 = t1.clone();
    t2.ticket_id = TicketId::new();
    t2.subject = Some("Re: Subject".into());
    t2.thread.message_id = Some("<second@mail.example>".into());
    t2.thread.references = vec!["<root@mail.example>".into()];
    let message = NewMessage::customer(t2.ticket_id, "second", Utc::now());
    match s
        .begin(&t2, message, Duration::from_secs(60))
        .await
        .unwrap()
    {
        deskhand::store::Begin::Acquired(_) => {}
        other => panic!("{other:?}"),
    }
    let c = s.conversation(conv).await.unwrap().unwrap();
    assert_eq!(
        c.reply_route,
        Some(ReplyRoute::of(&t2)),
        "begin moves the route"
    );
    assert_eq!(
        c.subject.as_deref(),
        Some("Subject"),
        "the first subject stays"
    );

    let agent = NewMessage {
        id: format!("agent-{}", TicketId::new()),
        role: Role::Agent,
        text: "Hi, Sam here.".into(),
        sources: vec![],
        ticket_id: None,
        created_at: Utc::now(),
    };
    let record = outbox_for(&t2, &agent.id);
    for _ in 0..2 {
        let c = s
            .set_status(
                conv,
                ConversationStatus::Escalated,
                Some(ReasonCode::AskedForHuman),
                Some(agent.clone()),
                vec![record.clone()],
            )
            .await
            .unwrap();
        assert_eq!(c.status, ConversationStatus::Escalated);
    }
    let texts = texts_of(s, conv).await;
    assert_eq!(
        texts.iter().filter(|t| *t == "Hi, Sam here.").count(),
        1,
        "{texts:?}"
    );
    let r = o
        .outbox_record(&agent.id)
        .await
        .unwrap()
        .expect("written with the reply");
    assert_eq!((r.state, r.attempts), (OutboxState::Pending, 0));
    assert_eq!(r.delivery, record.delivery);
    assert!(o.due_outbox(100).await.unwrap().contains(&agent.id));
    // A record missing beside a stored message (the message of an earlier
    // attempt) is still written; the message is not repeated.
    let late = outbox_for(&t2, &format!("{}.late", agent.id));
    s.set_status(
        conv,
        ConversationStatus::Escalated,
        None,
        Some(agent.clone()),
        vec![late.clone()],
    )
    .await
    .unwrap();
    assert!(o.outbox_record(&late.id).await.unwrap().is_some());
    assert_eq!(texts_of(s, conv).await, texts);
}

/// The replay guard: a token's first use is recorded with its message's
/// digest; the same message again is a retry, another one a replay; an
/// expired record is forgotten; scopes are apart.
pub async fn replay_guard_contract(g: &dyn deskhand::store::ReplayGuard) {
    use deskhand::store::TokenUse;
    let token = format!("tok-{}", uuid::Uuid::new_v4());
    // A token whose signature has left the window is forgotten.
    let gone = format!("tok-{}", uuid::Uuid::new_v4());
    let until = Utc::now() + chrono::Duration::minutes(6);
    let past = Utc::now() - chrono::Duration::seconds(5);
    let (mine, other) = ([1u8; 32], [2u8; 32]);
    let steps = [
        ("mailgun", &token, mine, until, TokenUse::First, "first use"),
        (
            "mailgun",
            &token,
            mine,
            until,
            TokenUse::Retry,
            "the same message again",
        ),
        (
            "mailgun",
            &token,
            other,
            until,
            TokenUse::Reused,
            "a token carried another message",
        ),
        (
            "mailgun",
            &token,
            mine,
            until,
            TokenUse::Retry,
            "a retry after the refused replay",
        ),
        (
            "other",
            &token,
            other,
            until,
            TokenUse::First,
            "scopes are apart",
        ),
        (
            "mailgun",
            &gone,
            mine,
            past,
            TokenUse::First,
            "first use, already expired",
        ),
        (
            "mailgun",
            &gone,
            other,
            until,
            TokenUse::First,
            "the expired record is forgotten",
        ),
        (
            "mailgun",
            &gone,
            mine,
            until,
            TokenUse::Reused,
            "and the new one holds",
        ),
    ];
    for (scope, token, digest, until, expected, what) in steps {
        assert_eq!(
            g.use_token(scope, token, digest, until).await.unwrap(),
            expected,
            "{what}"
        );
    }
}

/// Of concurrent uses of one token with different messages, exactly one is
/// the first; every other is a replay.
pub async fn replay_guard_is_atomic(g: Arc<dyn deskhand::store::ReplayGuard>) {
    use deskhand::store::TokenUse;
    let token = format!("tok-{}", uuid::Uuid::new_v4());
    let until = Utc::now() + chrono::Duration::minutes(6);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8u8 {
        let (g, token) = (g.clone(), token.clone());
        tasks.spawn(async move {
            g.use_token("mailgun", &token, [i; 32], until)
                .await
                .unwrap()
        });
    }
    let mut uses = Vec::new();
    while let Some(u) = tasks.join_next().await {
        uses.push(u.unwrap());
    }
    assert_eq!(
        uses.iter().filter(|u| **u == TokenUse::First).count(),
        1,
        "{uses:?}"
    );
    assert_eq!(
        uses.iter().filter(|u| **u == TokenUse::Reused).count(),
        7,
        "{uses:?}"
    );
}

/// A conversation limiter of `per_minute`: that many admitted, then
/// limited with a wait of at most a minute; other conversations unaffected.
/// Starts well inside a calendar minute, so a fixed-window counter is
/// tested within one window.
pub async fn conversation_limiter_contract(
    l: &dyn deskhand::store::ConversationLimiter,
    per_minute: u32,
) {
    use chrono::Timelike;
    use deskhand::store::Admission;
    let second = Utc::now().second();
    if second >= 50 {
        tokio::time::sleep(Duration::from_secs(u64::from(61 - second))).await;
    }
    let conv = ConversationId::random();
    for i in 0..per_minute {
        assert_eq!(
            l.admit(conv).await.unwrap(),
            Admission::Allowed,
            "message {i}"
        );
    }
    match l.admit(conv).await.unwrap() {
        Admission::Limited { retry_after } => {
            assert!(
                retry_after > Duration::ZERO && retry_after <= Duration::from_secs(60),
                "{retry_after:?}"
            )
        }
        Admission::Allowed => panic!("over the limit, admitted"),
    }
    assert_eq!(
        l.admit(ConversationId::random()).await.unwrap(),
        Admission::Allowed
    );
}

/// The texts of a conversation's first ten messages, in order.
pub async fn texts_of(s: &dyn Store, conversation: ConversationId) -> Vec<String> {
    s.history(conversation, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.body.text)
        .collect()
}
