//! Peers for the outbound tests: a real SMTP server (aiosmtpd, pinned in
//! scripts/requirements-test.txt) writing to a Maildir, a recording
//! helpdesk API server, a recording escalator, and helpers that put outbox
//! records into a store the way the pipeline does.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use deskhand::domain::{
    ConversationId, Customer, EmailAddress, MessageText, NewMessage, NewOutbox, Outcome, Provider,
    Role, Thread, Ticket, TicketId, Usage,
};
use deskhand::notify::{EscalateError, Escalation, Escalator};
use deskhand::store::{Claim, Completion, Store};
use serde_json::Value;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// aiosmtpd on 127.0.0.1, storing every message in a Maildir.
pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let bin = root().join(".tools/venv/bin/aiosmtpd");
        assert!(
            bin.is_file(),
            "{} is missing: run scripts/setup-tools (scripts/test does)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("mail");
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-n", "-l", &format!("127.0.0.1:{port}"), "-c"])
            .arg("aiosmtpd.handlers.Mailbox")
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd starts");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "aiosmtpd did not listen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { port, dir, child }
    }

    /// Every message received so far, raw, oldest first.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let new = self.dir.path().join("mail/new");
        let mut files: Vec<_> = std::fs::read_dir(&new)
            .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    /// Waits until at least `n` messages arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Vec<u8>> {
        let started = Instant::now();
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the SMTP server got {} messages, expected {n}",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A header of a raw message (first occurrence, unfolded).
pub fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let head = text.split("\n\n").next().unwrap_or("");
    let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
    unfolded.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// One request a helpdesk server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Answer = dyn Fn(&Seen) -> (u16, Value, Vec<(String, String)>) + Send + Sync;

/// A helpdesk API test double: records every request, answers through a
/// function of the request.
#[derive(Clone)]
pub struct HelpdeskServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl HelpdeskServer {
    pub async fn start(
        answer: impl Fn(&Seen) -> (u16, Value, Vec<(String, String)>) + Send + Sync + 'static,
    ) -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let answer: Arc<Answer> = Arc::new(answer);
        let s = seen.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                let answer = answer.clone();
                async move {
                    let req = Seen {
                        method,
                        path: uri
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                        headers,
                        body: body.to_vec(),
                    };
                    let (status, json, extra) = answer(&req);
                    s.lock().unwrap().push(req);
                    let mut res: Response =
                        (StatusCode::from_u16(status).unwrap(), axum::Json(json)).into_response();
                    for (k, v) in extra {
                        res.headers_mut().insert(
                            axum::http::HeaderName::try_from(k).unwrap(),
                            v.parse().unwrap(),
                        );
                    }
                    res
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests other than GETs.
    pub fn writes(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method != Method::GET)
            .collect()
    }

    pub async fn wait_for_writes(&self, n: usize) -> Vec<Seen> {
        let started = Instant::now();
        loop {
            let w = self.writes();
            if w.len() >= n {
                return w;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the helpdesk got {} writes, expected {n}: {:?}",
                w.len(),
                self.seen()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An escalator that records what it is given, and can be made to fail.
#[derive(Default, Clone)]
pub struct Recorder {
    pub got: Arc<Mutex<Vec<Escalation>>>,
}

#[async_trait]
impl Escalator for Recorder {
    async fn escalate(&self, e: &Escalation) -> Result<(), EscalateError> {
        self.got.lock().unwrap().push(e.clone());
        Ok(())
    }
}

impl Recorder {
    pub fn all(&self) -> Vec<Escalation> {
        self.got.lock().unwrap().clone()
    }
}

/// A helpdesk ticket from `provider` with helpdesk ticket id `reference`.
pub fn helpdesk_ticket(provider: Provider, reference: &str, text: &str) -> Ticket {
    Ticket {
        ticket_id: TicketId::new(),
        conversation_id: ConversationId::derive(provider, reference),
        provider,
        customer: Customer {
            email: EmailAddress::parse("ann@example.com"),
            name: Some("Ann Lee".into()),
            email_auth: None,
            user_id: None,
        },
        subject: Some("Two-factor".into()),
        text: MessageText::parse(text, 4000).unwrap(),
        attachments: vec![],
        thread: Thread {
            root: Some(reference.into()),
            ..Thread::default()
        },
        brand: None,
        received_at: Utc::now(),
    }
}

/// An email ticket as ingest makes it.
pub fn email_ticket(text: &str) -> Ticket {
    let ticket_id = TicketId::new();
    Ticket {
        ticket_id,
        conversation_id: ConversationId::derive(Provider::Mime, "<cust-1@example.com>"),
        provider: Provider::Mime,
        customer: Customer {
            email: EmailAddress::parse("ann@example.com"),
            name: Some("Ann Lee".into()),
            email_auth: None,
            user_id: None,
        },
        subject: Some("Two-factor".into()),
        text: MessageText::parse(text, 4000).unwrap(),
        attachments: vec![],
        thread: Thread {
            root: Some("<cust-1@example.com>".into()),
            message_id: Some("<cust-1@example.com>".into()),
            references: vec![],
            reply_message_id: Some(format!("<{ticket_id}@deskhand.acme.test>")),
            reply_token: None,
        },
        brand: None,
        received_at: Utc::now(),
    }
}

/// Finishes `ticket` with `reply` and `outbox`, as the pipeline does.
pub async fn complete_with(
    store: &dyn Store,
    ticket: &Ticket,
    reply: &str,
    outbox: Vec<NewOutbox>,
) {
    let Claim::Acquired { token, .. } = store.claim(ticket, Duration::from_secs(60)).await.unwrap()
    else {
        panic!("not acquired")
    };
    store
        .complete(Completion {
            ticket_id: ticket.ticket_id,
            conversation_id: ticket.conversation_id,
            token: Some(token),
            outcome: Outcome::Answered,
            reason: None,
            confidence: 0.9,
            message: Some(NewMessage::reply_to(
                ticket.ticket_id,
                Role::Assistant,
                reply,
                vec![],
            )),
            status: None,
            usage: Usage::default(),
            needs_notification: false,
            outbox,
        })
        .await
        .unwrap();
}
