//! Helpdesk replies against a local HTTP server standing in for each
//! vendor's API: it checks method, path, auth header and body shape as the
//! vendor documents them. Shadow mode posts internal notes only and records
//! what the agent did with the draft; failures after the retry budget
//! escalate `delivery_failed`.

use crate::common;
use crate::inbound_support;
use crate::outbox_support;

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use common::TestApp;
use deskhand::domain::{
    ConversationStatus, OutboxState, Provider, ReasonCode, ShadowOutcome, Source, Ticket,
};
use deskhand::outbox::settings::{HelpdeskMode, HelpdeskOutSettings};
use deskhand::outbox::{
    Couriers, DispatchSettings, Dispatched, Dispatcher, OutboundPolicy, OutboundSettings,
};
use deskhand::secret::Secret;
use deskhand::sqlite::Db;
use deskhand::store::{OutboxStore, SqliteStore, Store};
use outbox_support::{HelpdeskServer, Recorder, Seen, complete_with, helpdesk_ticket};
use serde_json::{Value, json};

const REPLY: &str = "Go to Settings, then Security, and turn on two-factor authentication.";

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")))
}

/// A store, a dispatcher over `outbound`, and an escalation recorder.
struct Rig {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    dispatcher: Dispatcher,
    escalations: Recorder,
    outbound: OutboundSettings,
}

impl Rig {
    fn new(outbound: OutboundSettings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::new(Db::open(&dir.path().join("t.db")).unwrap());
        let escalations = Recorder::default();
        let dispatcher = Dispatcher::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(escalations.clone()),
            Couriers::from_settings(&outbound, None).unwrap(),
            DispatchSettings::from_settings(&outbound),
        );
        Self {
            _dir: dir,
            store,
            dispatcher,
            escalations,
            outbound,
        }
    }

    /// Finishes `ticket` with the answer, writing what the policy asks.
    async fn answer(&self, ticket: &Ticket) -> String {
        let id = format!("{}.reply", ticket.ticket_id);
        let sources = vec![Source {
            doc_id: "security/two-factor-authentication.md".into(),
            title: "Two-factor authentication".into(),
            url: Some("https://help.tallybird.example/articles/two-factor-authentication".into()),
        }];
        let records =
            OutboundPolicy::from_settings(&self.outbound).answer(ticket, &id, REPLY, &sources);
        assert_eq!(records.len(), 1);
        complete_with(&self.store, ticket, REPLY, records).await;
        id
    }

    async fn escalate(&self, ticket: &Ticket) -> String {
        let records = OutboundPolicy::from_settings(&self.outbound).escalation(
            ticket,
            None,
            ReasonCode::AskedForHuman,
            "asked for a person",
            Some("A draft answer."),
        );
        assert_eq!(records.len(), 1);
        let id = records[0].id.clone();
        complete_with(&self.store, ticket, "Holding", records).await;
        id
    }

    /// [`Self::answer`], dispatched: delivered at the first attempt.
    async fn answer_delivered(&self, ticket: &Ticket) -> String {
        let id = self.answer(ticket).await;
        assert_eq!(
            self.dispatcher.dispatch(&id).await.unwrap(),
            Dispatched::Delivered
        );
        id
    }

    /// [`Self::escalate`], dispatched: delivered at the first attempt.
    async fn escalate_delivered(&self, ticket: &Ticket) -> String {
        let id = self.escalate(ticket).await;
        assert_eq!(
            self.dispatcher.dispatch(&id).await.unwrap(),
            Dispatched::Delivered
        );
        id
    }

    async fn state(&self, id: &str) -> deskhand::domain::OutboxRecord {
        self.store.outbox_record(id).await.unwrap().unwrap()
    }
}

fn settings_for(provider: Provider, h: HelpdeskOutSettings) -> OutboundSettings {
    let mut o = OutboundSettings {
        backoff_base_ms: 1,
        backoff_max_secs: 0,
        max_attempts: 3,
        review_after_secs: 0,
        ..OutboundSettings::default()
    };
    match provider {
        Provider::Zendesk => o.zendesk = Some(h),
        Provider::Freshdesk => o.freshdesk = Some(h),
        Provider::Intercom => o.intercom = Some(h),
        Provider::Helpscout => o.helpscout = Some(h),
        Provider::Front => o.front = Some(h),
        _ => unreachable!(),
    }
    o
}

fn zendesk(url: &str, mode: HelpdeskMode) -> HelpdeskOutSettings {
    HelpdeskOutSettings {
        email: Some("bot@acme.test".into()),
        mode,
        escalation_group: Some("360001".into()),
        ..HelpdeskOutSettings::new(url, Secret::new("zd-token"))
    }
}

/// A Zendesk double: updates answer with an audit holding comment 9001;
/// the ticket (requester 5) is solved; its comments are `comments`.
fn zendesk_answers(comments: Value) -> impl Fn(&Seen) -> (u16, Value, Vec<(String, String)>) {
    move |s: &Seen| {
        let ok =
            s.header("authorization") == Some(basic("bot@acme.test/token", "zd-token").as_str());
        if !ok {
            return (401, json!({"error": "Couldn't authenticate you"}), vec![]);
        }
        match (s.method.clone(), s.path.as_str()) {
            (Method::PUT, "/api/v2/tickets/4711.json") => (
                200,
                json!({"ticket": {"id": 4711}, "audit": {"id": 1, "events": [{"id": 9001, "type": "Comment"}]}}),
                vec![],
            ),
            (Method::PUT, "/api/v2/tickets/4711/tags.json") => {
                (200, json!({"tags": ["deskhand_escalated"]}), vec![])
            }
            (Method::GET, "/api/v2/tickets/4711.json") => (
                200,
                json!({"ticket": {"id": 4711, "requester_id": 5, "status": "solved"}}),
                vec![],
            ),
            (Method::GET, "/api/v2/tickets/4711/comments.json") => (200, comments.clone(), vec![]),
            _ => (404, json!({"error": "RecordNotFound"}), vec![]),
        }
    }
}

#[tokio::test]
async fn zendesk_public_reply_is_a_public_comment_with_the_record_id_in_the_audit() {
    let server = HelpdeskServer::start(zendesk_answers(json!({"comments": []}))).await;
    let rig = Rig::new(settings_for(
        Provider::Zendesk,
        zendesk(&server.url(), HelpdeskMode::Reply),
    ));
    let id = rig
        .answer_delivered(&helpdesk_ticket(Provider::Zendesk, "4711", "2FA?"))
        .await;
    let w = server.writes();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].method, Method::PUT);
    assert_eq!(w[0].path, "/api/v2/tickets/4711.json");
    assert_eq!(w[0].header("content-type"), Some("application/json"));
    let b = w[0].json();
    assert_eq!(b["ticket"]["comment"]["public"], true);
    let body = b["ticket"]["comment"]["body"].as_str().unwrap();
    assert!(body.starts_with(REPLY), "{body}");
    assert!(
        body.contains("https://help.tallybird.example/articles/two-factor-authentication"),
        "sources as links: {body}"
    );
    assert_eq!(b["ticket"]["metadata"]["deskhand_outbox_id"], id.as_str());
    assert!(
        b["ticket"].get("group_id").is_none(),
        "a reply reassigns nothing"
    );
    let r = rig.state(&id).await;
    assert_eq!(r.state, OutboxState::Delivered);
    assert_eq!(r.external_id.as_deref(), Some("9001"));
}

#[tokio::test]
async fn zendesk_shadow_mode_posts_a_note_and_records_what_the_agent_sent() {
    // The agent (user 7) sent the draft as written; the requester is 5.
    let comments = json!({"comments": [
        {"id": 9001, "public": false, "author_id": 1, "plain_body": REPLY,
         "created_at": "2000-01-01T00:00:00Z"},
        {"id": 9002, "public": true, "author_id": 7,
         "plain_body": format!("{REPLY}\n\nSources:\n- Two-factor authentication: https://help.tallybird.example/articles/two-factor-authentication"),
         "created_at": "2100-01-01T00:00:00Z"},
    ]});
    let server = HelpdeskServer::start(zendesk_answers(comments)).await;
    let rig = Rig::new(settings_for(
        Provider::Zendesk,
        zendesk(&server.url(), HelpdeskMode::Shadow),
    ));
    let id = rig
        .answer_delivered(&helpdesk_ticket(Provider::Zendesk, "4711", "2FA?"))
        .await;
    let w = server.writes();
    assert_eq!(w.len(), 1);
    assert_eq!(
        w[0].json()["ticket"]["comment"]["public"],
        false,
        "shadow mode must never post a public reply"
    );
    assert_eq!(rig.state(&id).await.state, OutboxState::Reviewing);
    assert_eq!(
        rig.dispatcher.dispatch(&id).await.unwrap(),
        Dispatched::Reviewed(ShadowOutcome::Unchanged)
    );
    let r = rig.state(&id).await;
    assert_eq!(r.state, OutboxState::Delivered);
    let review = r.review.unwrap();
    assert_eq!(review.outcome, ShadowOutcome::Unchanged);
    assert!(review.similarity > 0.95);
    assert!(server.writes().len() == 1, "reviewing only reads");
    let report = deskhand::outbox::review::ShadowReport::from_records(
        &rig.store
            .outbox_since(Utc::now() - chrono::Duration::hours(1))
            .await
            .unwrap(),
    );
    assert_eq!(
        (report.drafts, report.unchanged, report.reviewed()),
        (1, 1, 1)
    );
    assert!(report.render().contains("100.0 %"), "{}", report.render());
}

#[tokio::test]
async fn zendesk_escalation_assigns_the_group_tags_and_notes_internally() {
    let server = HelpdeskServer::start(zendesk_answers(json!({"comments": []}))).await;
    let rig = Rig::new(settings_for(
        Provider::Zendesk,
        zendesk(&server.url(), HelpdeskMode::Reply),
    ));
    rig.escalate_delivered(&helpdesk_ticket(Provider::Zendesk, "4711", "human please"))
        .await;
    let w = server.writes();
    assert_eq!(w.len(), 2, "{w:?}");
    let update = w[0].json();
    assert_eq!(update["ticket"]["group_id"], 360001);
    assert_eq!(update["ticket"]["comment"]["public"], false);
    let note = update["ticket"]["comment"]["body"].as_str().unwrap();
    assert!(
        note.contains("asked_for_human") && note.contains("A draft answer."),
        "{note}"
    );
    assert_eq!(w[1].method, Method::PUT);
    assert_eq!(w[1].path, "/api/v2/tickets/4711/tags.json");
    assert_eq!(w[1].json(), json!({"tags": ["deskhand_escalated"]}));
}

#[tokio::test]
async fn zendesk_retry_after_an_unsettled_send_does_not_post_twice() {
    // A stateful double: every update leaves an audit carrying its metadata.
    let audits: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let a = audits.clone();
    let server = HelpdeskServer::start(move |s: &Seen| match (s.method.clone(), s.path.as_str()) {
        (Method::PUT, "/api/v2/tickets/4711.json") => {
            let b = s.json();
            a.lock().unwrap().push(json!({
                "id": 77, "metadata": {"custom": b["ticket"]["metadata"].clone()},
                "events": [{"id": 9001, "type": "Comment"}]
            }));
            (
                200,
                json!({"audit": {"events": [{"id": 9001, "type": "Comment"}]}}),
                vec![],
            )
        }
        (Method::GET, "/api/v2/tickets/4711/audits.json?sort_order=desc") => {
            (200, json!({"audits": a.lock().unwrap().clone()}), vec![])
        }
        _ => (404, json!({}), vec![]),
    })
    .await;
    let mut outbound = settings_for(
        Provider::Zendesk,
        zendesk(&server.url(), HelpdeskMode::Reply),
    );
    outbound.lease_secs = 1;
    let rig = Rig::new(outbound);
    let id = rig
        .answer(&helpdesk_ticket(Provider::Zendesk, "4711", "2FA?"))
        .await;
    // First attempt: claimed, sent, and the dispatcher dies before settling.
    let deskhand::store::OutboxClaim::Acquired { record, .. } = rig
        .store
        .claim_outbox(&id, Duration::from_secs(1))
        .await
        .unwrap()
    else {
        panic!("not claimed")
    };
    let channels = Couriers::from_settings(&rig.outbound, None).unwrap();
    channels.helpdesks[&Provider::Zendesk]
        .deliver(&record, false)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The retry finds the audit and posts nothing more.
    assert_eq!(
        rig.dispatcher.dispatch(&id).await.unwrap(),
        Dispatched::Delivered
    );
    let puts = server
        .seen()
        .into_iter()
        .filter(|s| s.method == Method::PUT)
        .count();
    assert_eq!(puts, 1, "the comment was posted twice");
    let r = rig.state(&id).await;
    assert_eq!((r.state, r.attempts), (OutboxState::Delivered, 2));
    assert_eq!(r.external_id.as_deref(), Some("9001"));
}

fn freshdesk_answers(
    conversations: Value,
) -> impl Fn(&Seen) -> (u16, Value, Vec<(String, String)>) {
    move |s: &Seen| {
        if s.header("authorization") != Some(basic("fd-key", "X").as_str()) {
            return (401, json!({"code": "invalid_credentials"}), vec![]);
        }
        match (s.method.clone(), s.path.as_str()) {
            (Method::POST, "/api/v2/tickets/31/reply") => {
                (201, json!({"id": 501, "body": "…"}), vec![])
            }
            (Method::POST, "/api/v2/tickets/31/notes") => {
                (201, json!({"id": 502, "private": true}), vec![])
            }
            (Method::GET, "/api/v2/tickets/31") => {
                (200, json!({"id": 31, "status": 2, "tags": ["vip"]}), vec![])
            }
            (Method::PUT, "/api/v2/tickets/31") => (200, json!({"id": 31}), vec![]),
            (Method::GET, "/api/v2/tickets/31/conversations") => {
                (200, conversations.clone(), vec![])
            }
            _ => (404, json!({}), vec![]),
        }
    }
}

fn freshdesk(url: &str, mode: HelpdeskMode) -> HelpdeskOutSettings {
    HelpdeskOutSettings {
        mode,
        escalation_group: Some("42".into()),
        ..HelpdeskOutSettings::new(url, Secret::new("fd-key"))
    }
}

#[tokio::test]
async fn freshdesk_reply_note_escalation_and_review() {
    // Public reply.
    let server = HelpdeskServer::start(freshdesk_answers(json!([]))).await;
    let rig = Rig::new(settings_for(
        Provider::Freshdesk,
        freshdesk(&server.url(), HelpdeskMode::Reply),
    ));
    let id = rig
        .answer_delivered(&helpdesk_ticket(Provider::Freshdesk, "31", "2FA?"))
        .await;
    let w = server.writes();
    assert_eq!(
        (w[0].method.clone(), w[0].path.as_str()),
        (Method::POST, "/api/v2/tickets/31/reply")
    );
    let body = w[0].json()["body"].as_str().unwrap().to_owned();
    assert!(body.contains("<p>Go to Settings"), "HTML body: {body}");
    assert!(body.contains(
        "<a href=\"https://help.tallybird.example/articles/two-factor-authentication\">"
    ));
    assert_eq!(rig.state(&id).await.external_id.as_deref(), Some("501"));

    // Escalation: tags merged with the ticket's own, group, private note.
    rig.escalate_delivered(&helpdesk_ticket(Provider::Freshdesk, "31", "human"))
        .await;
    let w = server.writes();
    let put = w.iter().find(|s| s.method == Method::PUT).unwrap().json();
    assert_eq!(
        put,
        json!({"tags": ["vip", "deskhand_escalated"], "group_id": 42})
    );
    let note = w
        .iter()
        .find(|s| s.path.ends_with("/notes"))
        .unwrap()
        .json();
    assert_eq!(note["private"], true);

    // Shadow mode: a private note, then the agent's edited reply is seen.
    let conversations = json!([
        {"id": 502, "incoming": false, "private": true, "body_text": REPLY, "created_at": "2000-01-01T00:00:00Z"},
        {"id": 503, "incoming": false, "private": false,
         "body_text": format!("Hi Ann, {REPLY} You will need your phone. Best, Sam"),
         "created_at": "2100-01-01T00:00:00Z"},
    ]);
    let server = HelpdeskServer::start(freshdesk_answers(conversations)).await;
    let rig = Rig::new(settings_for(
        Provider::Freshdesk,
        freshdesk(&server.url(), HelpdeskMode::Shadow),
    ));
    let id = rig
        .answer_delivered(&helpdesk_ticket(Provider::Freshdesk, "31", "2FA?"))
        .await;
    let w = server.writes();
    assert_eq!(w.len(), 1);
    assert_eq!(
        w[0].path, "/api/v2/tickets/31/notes",
        "shadow mode never replies"
    );
    assert_eq!(w[0].json()["private"], true);
    assert_eq!(
        rig.dispatcher.dispatch(&id).await.unwrap(),
        Dispatched::Reviewed(ShadowOutcome::Edited)
    );
}

#[tokio::test]
async fn intercom_help_scout_and_front_reply_and_note_as_documented() {
    // Intercom: admin reply or note, Bearer token, a pinned API version.
    let server = HelpdeskServer::start(|s: &Seen| {
        let ok = s.header("authorization") == Some("Bearer ic-token")
            && s.header("intercom-version").is_some();
        match (ok, s.method.clone(), s.path.as_str()) {
            (true, Method::POST, "/conversations/123/reply") => (
                200,
                json!({"type": "conversation", "id": "123", "conversation_parts": {"conversation_parts": [{"id": "p1"}, {"id": "p2"}]}}),
                vec![],
            ),
            _ => (401, json!({"type": "error.list"}), vec![]),
        }
    })
    .await;
    for (mode, kind) in [
        (HelpdeskMode::Reply, "comment"),
        (HelpdeskMode::Shadow, "note"),
    ] {
        let rig = Rig::new(settings_for(
            Provider::Intercom,
            HelpdeskOutSettings {
                mode,
                author_id: Some("991".into()),
                ..HelpdeskOutSettings::new(server.url(), Secret::new("ic-token"))
            },
        ));
        let id = rig
            .answer_delivered(&helpdesk_ticket(Provider::Intercom, "123", "2FA?"))
            .await;
        let b = server.writes().last().unwrap().json();
        assert_eq!(b["message_type"], kind);
        assert_eq!(b["type"], "admin");
        assert_eq!(b["admin_id"], "991");
        assert!(b["body"].as_str().unwrap().contains("Go to Settings"));
        assert_eq!(rig.state(&id).await.external_id.as_deref(), Some("p2"));
    }

    // Help Scout: client-credentials token, then reply (to the customer's
    // email) or note; the thread id comes back in Resource-ID.
    let server = HelpdeskServer::start(|s: &Seen| match (s.method.clone(), s.path.as_str()) {
        (Method::POST, "/v2/oauth2/token") => {
            let form = String::from_utf8_lossy(&s.body).to_string();
            if form.contains("grant_type=client_credentials")
                && form.contains("client_id=hs-app")
                && form.contains("client_secret=hs-secret")
            {
                (200, json!({"access_token": "hs-bearer", "token_type": "bearer", "expires_in": 172800}), vec![])
            } else {
                (400, json!({}), vec![])
            }
        }
        (Method::POST, "/v2/conversations/55/reply" | "/v2/conversations/55/notes")
            if s.header("authorization") == Some("Bearer hs-bearer") =>
        {
            (201, Value::Null, vec![("Resource-ID".into(), "7001".into())])
        }
        _ => (401, json!({}), vec![]),
    })
    .await;
    for (mode, path) in [
        (HelpdeskMode::Reply, "/v2/conversations/55/reply"),
        (HelpdeskMode::Shadow, "/v2/conversations/55/notes"),
    ] {
        let rig = Rig::new(settings_for(
            Provider::Helpscout,
            HelpdeskOutSettings {
                base_url: Some(server.url()),
                mode,
                api_token: None,
                client_id: Some("hs-app".into()),
                client_secret: Some(Secret::new("hs-secret")),
                ..HelpdeskOutSettings::new("", Secret::new(""))
            },
        ));
        let id = rig
            .answer_delivered(&helpdesk_ticket(Provider::Helpscout, "55", "2FA?"))
            .await;
        let w = server.writes();
        let last = w.last().unwrap();
        assert_eq!(last.path, path);
        let b = last.json();
        assert!(b["text"].as_str().unwrap().contains("Go to Settings"));
        if mode == HelpdeskMode::Reply {
            assert_eq!(b["customer"]["email"], "ann@example.com");
        } else {
            assert!(b.get("customer").is_none());
        }
        assert_eq!(rig.state(&id).await.external_id.as_deref(), Some("7001"));
    }

    // Front: a reply is a message, a note is a comment.
    let server = HelpdeskServer::start(|s: &Seen| {
        match (
            s.header("authorization") == Some("Bearer fr-token"),
            s.path.as_str(),
        ) {
            (true, "/conversations/cnv_9/messages") => (
                202,
                json!({"status": "accepted", "message_uid": "msg_1"}),
                vec![],
            ),
            (true, "/conversations/cnv_9/comments") => (201, json!({"id": "com_1"}), vec![]),
            _ => (401, json!({}), vec![]),
        }
    })
    .await;
    for (mode, path, ext) in [
        (
            HelpdeskMode::Reply,
            "/conversations/cnv_9/messages",
            "msg_1",
        ),
        (
            HelpdeskMode::Shadow,
            "/conversations/cnv_9/comments",
            "com_1",
        ),
    ] {
        let rig = Rig::new(settings_for(
            Provider::Front,
            HelpdeskOutSettings {
                mode,
                author_id: Some("tea_1".into()),
                ..HelpdeskOutSettings::new(server.url(), Secret::new("fr-token"))
            },
        ));
        let id = rig
            .answer_delivered(&helpdesk_ticket(Provider::Front, "cnv_9", "2FA?"))
            .await;
        let last = server.writes().last().unwrap().clone();
        assert_eq!(
            (last.method.clone(), last.path.as_str()),
            (Method::POST, path)
        );
        assert_eq!(last.json()["author_id"], "tea_1");
        assert_eq!(rig.state(&id).await.external_id.as_deref(), Some(ext));
    }
}

#[tokio::test]
async fn failures_retry_then_escalate_delivery_failed() {
    // 503 every time: retried up to the budget, then a person is told.
    let server = HelpdeskServer::start(|_: &Seen| (503, json!({"error": "down"}), vec![])).await;
    let rig = Rig::new(settings_for(
        Provider::Zendesk,
        zendesk(&server.url(), HelpdeskMode::Reply),
    ));
    let ticket = helpdesk_ticket(Provider::Zendesk, "4711", "2FA?");
    let id = rig.answer(&ticket).await;
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        outcomes.push(rig.dispatcher.dispatch(&id).await.unwrap());
    }
    assert_eq!(
        outcomes,
        [
            Dispatched::Retrying,
            Dispatched::Retrying,
            Dispatched::Failed
        ]
    );
    let r = rig.state(&id).await;
    assert_eq!((r.state, r.attempts), (OutboxState::Failed, 3));
    assert!(r.last_error.unwrap().contains("503"));
    let e = rig.escalations.all();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].reason, ReasonCode::DeliveryFailed);
    assert_eq!(e[0].conversation_id, Some(ticket.conversation_id));
    assert_eq!(e[0].draft.as_deref(), Some(REPLY));
    let conv = rig
        .store
        .conversation(ticket.conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (conv.status, conv.escalation_reason),
        (
            ConversationStatus::Escalated,
            Some(ReasonCode::DeliveryFailed)
        )
    );

    // 401 (bad credentials) will not pass: given up at once.
    let server = HelpdeskServer::start(|_: &Seen| (401, json!({}), vec![])).await;
    let rig = Rig::new(settings_for(
        Provider::Zendesk,
        zendesk(&server.url(), HelpdeskMode::Reply),
    ));
    let id = rig
        .answer(&helpdesk_ticket(Provider::Zendesk, "4711", "2FA?"))
        .await;
    assert_eq!(
        rig.dispatcher.dispatch(&id).await.unwrap(),
        Dispatched::Failed
    );
    assert_eq!(rig.escalations.all()[0].reason, ReasonCode::DeliveryFailed);
}

#[tokio::test]
async fn shadow_mode_end_to_end_posts_an_internal_note_never_a_public_reply() {
    let server = HelpdeskServer::start(zendesk_answers(json!({"comments": []}))).await;
    let url = server.url();
    let app = TestApp::spawn_with(|c| {
        c.inbound = inbound_support::settings(Vec::new(), None);
        c.outbound.zendesk = Some(zendesk(&url, HelpdeskMode::Shadow));
        c.outbound.review_after_secs = 3600;
    })
    .await;
    let body = json!({"ticket_id": "4711", "event_id": "c-1", "subject": "2FA",
        "text": "How do I turn on two-factor authentication?",
        "requester": {"email": "ann@example.com", "name": "Ann"}, "author": {"role": "customer"}});
    let req = inbound_support::signed("zendesk", body.to_string().as_bytes(), Utc::now());
    let mut r = app.http.post(app.url(&req.path())).body(req.body.clone());
    for (k, v) in &req.headers {
        r = r.header(k, v);
    }
    assert_eq!(r.send().await.unwrap().status(), 202);
    let w = server.wait_for_writes(1).await;
    let comment = &w[0].json()["ticket"]["comment"];
    assert_eq!(comment["public"], false, "{comment}");
    assert!(comment["body"].as_str().unwrap().contains("Go to Settings"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        server
            .writes()
            .iter()
            .all(|s| s.json()["ticket"]["comment"]["public"] != true),
        "a public reply was posted in shadow mode"
    );
    app.stop().await;
}
