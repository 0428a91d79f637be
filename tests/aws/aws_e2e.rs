//! The AWS path end to end: HTTP ingest (the API Lambda's router) → SQS
//! FIFO on moto → a batch received as the event source mapping would →
//! the worker handler with a real `SqsEvent` → everything but the batch
//! item failures deleted → DynamoDB on moto → poll. Escalations arrive on
//! an SQS queue subscribed to the SNS topic. Bedrock (Converse and the
//! Knowledge Base) is the wire-level test double.

use crate::common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::bedrock_double::{BedrockDouble, Reply};
use common::moto::{Moto, global_env, sqs_event};
use deskhand::config::{Config, GeneratorKind, RetrieverKind};
use deskhand::knowledge::bedrock_kb::KbSettings;
use deskhand::lambda::{AwsRuntime, worker};
use deskhand::llm::bedrock::BedrockSettings;
use deskhand::queue::sqs::Received;
use deskhand::secret::Secret;
use serde_json::{Value, json};

struct Stack {
    moto: Moto,
    bedrock: BedrockDouble,
    runtime: AwsRuntime,
    ctx: worker::WorkerContext,
    base: String,
    http: reqwest::Client,
    queue_url: String,
    dlq_url: String,
    inbox: String,
}

impl Stack {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let moto = Moto::connect().await;
        let bedrock = BedrockDouble::start().await;
        let table = moto.table().await;
        let (queue_url, dlq_url) = moto.queues().await;
        let (topic, inbox) = moto.topic_with_subscriber(None).await;
        let mut config = Config {
            secret: Some(Secret::new("test-secret-test-secret-0123456789")),
            aws: moto.aws_settings(&table, &queue_url, &dlq_url, &topic),
            ..Config::default()
        };
        // The worker's attempts, as the template sets them.
        config.queue.max_receives = global_env("DESKHAND_QUEUE__MAX_RECEIVES").parse().unwrap();
        config.queue.backoff_base_ms = 10;
        config.queue.backoff_max_secs = 1;
        config.generator.kind = GeneratorKind::Bedrock;
        config.generator.bedrock = Some(BedrockSettings {
            endpoint_url: Some(bedrock.url()),
            read_timeout_secs: 2,
            ..BedrockSettings::default()
        });
        config.retriever.kind = RetrieverKind::BedrockKb;
        config.retriever.bedrock_kb = Some(KbSettings {
            endpoint_url: Some(bedrock.url()),
            ..KbSettings::new("KBTEST1234")
        });
        adjust(&mut config);
        let runtime = AwsRuntime::from_config(config).await.unwrap();
        let ctx = runtime.worker().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = runtime.router().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            moto,
            bedrock,
            runtime,
            ctx,
            base,
            http: reqwest::Client::new(),
            queue_url,
            dlq_url,
            inbox,
        }
    }

    async fn conversation(&self) -> (String, String) {
        let v: Value = self
            .http
            .post(format!("{}/v1/conversations", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            v["conversation_id"].as_str().unwrap().into(),
            v["token"].as_str().unwrap().into(),
        )
    }

    async fn post(&self, id: &str, token: &str, text: &str) -> Value {
        let res = self
            .http
            .post(format!("{}/v1/conversations/{id}/messages", self.base))
            .bearer_auth(token)
            .json(&json!({"text": text}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        res.json().await.unwrap()
    }

    async fn poll(&self, id: &str, token: &str) -> Value {
        self.http
            .get(format!("{}/v1/conversations/{id}/messages", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// One delivery round as the event source mapping does it: receive a
    /// batch, invoke the worker, delete what did not fail. Returns how many
    /// records were delivered and how many failed.
    async fn deliver(&self) -> (usize, usize) {
        let batch = self
            .runtime
            .queue
            .receive(&self.queue_url, 0, 180)
            .await
            .unwrap();
        if batch.is_empty() {
            return (0, 0);
        }
        let arn = self.moto.queue_arn(&self.queue_url).await;
        let response = worker::handle(&self.ctx, sqs_event(&arn, &batch)).await;
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        for m in &batch {
            if !failed.contains(&m.message_id) {
                self.runtime
                    .queue
                    .delete(&self.queue_url, &m.receipt_handle)
                    .await
                    .unwrap();
            }
        }
        (batch.len(), failed.len())
    }

    /// Delivers until the queue is empty (retries wait out their backoff).
    async fn drain(&self) {
        for _ in 0..60 {
            let (n, _) = self.deliver().await;
            if n == 0 && self.moto.depth(&self.queue_url).await == 0 {
                return;
            }
            if n == 0 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        panic!("the queue never drained");
    }
}

fn role<'a>(poll: &'a Value, role: &str) -> Vec<&'a Value> {
    poll["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == role)
        .collect()
}

#[tokio::test]
async fn a_widget_question_is_answered_through_sqs_lambda_and_dynamodb() {
    let s = Stack::start().await;
    let (id, token) = s.conversation().await;
    s.post(&id, &token, "How do I turn on two-factor authentication?")
        .await;
    assert_eq!(s.deliver().await, (1, 0));
    let poll = s.poll(&id, &token).await;
    assert_eq!(poll["status"], "open");
    let answer = role(&poll, "assistant");
    assert_eq!(answer.len(), 1, "{poll}");
    assert!(
        answer[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Go to Settings")
    );
    let sources = answer[0]["sources"].as_array().unwrap();
    assert_eq!(
        sources[0]["doc_id"],
        "s3://deskhand-kb/security/two-factor-authentication.md"
    );
    assert_eq!(
        sources[0]["url"],
        "https://help.tallybird.example/articles/two-factor-authentication"
    );
    // The model got the KB passages; the KB got the question.
    let retrieved = s.bedrock.retrieve_requests();
    assert!(
        retrieved[0].body.to_string().contains("two-factor"),
        "{:?}",
        retrieved[0].body
    );
    assert_eq!(s.bedrock.converse_requests().len(), 1);
    // Usage was recorded on the ticket.
    let ticket_id = poll["messages"][0]["id"].as_str().unwrap().parse().unwrap();
    let record = deskhand::store::Store::ticket(&s.runtime.store, ticket_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (record.usage.input_tokens, record.usage.output_tokens),
        (1432, 87)
    );
    assert!(
        s.moto.notifications(&s.inbox).await.is_empty(),
        "an answered ticket escalated"
    );
}

#[tokio::test]
async fn asking_for_a_person_escalates_through_sns_with_filterable_attributes() {
    let s = Stack::start().await;
    let (id, token) = s.conversation().await;
    s.post(&id, &token, "I want to talk to a real person please")
        .await;
    s.drain().await;
    let poll = s.poll(&id, &token).await;
    assert_eq!(poll["status"], "escalated");
    assert_eq!(role(&poll, "system").len(), 1);
    let notes = s.moto.notifications(&s.inbox).await;
    assert_eq!(notes.len(), 1);
    assert_eq!(
        notes[0]["MessageAttributes"]["reason"]["Value"],
        "asked_for_human"
    );
    assert_eq!(notes[0]["MessageAttributes"]["channel"]["Value"], "widget");
    assert_eq!(notes[0]["MessageAttributes"]["priority"]["Value"], "normal");
    let body: Value = serde_json::from_str(notes[0]["Message"].as_str().unwrap()).unwrap();
    assert_eq!(body["conversation_id"], id.as_str());
    assert_eq!(
        body["last_message"],
        "I want to talk to a real person please"
    );
    assert!(
        s.bedrock.converse_requests().is_empty(),
        "the model was asked anyway"
    );
}

#[tokio::test]
async fn a_ticket_whose_model_keeps_failing_ends_in_the_dlq_with_a_person_told() {
    let s = Stack::start().await;
    s.bedrock.set_converse_fallback(Reply::throttling());
    let (id, token) = s.conversation().await;
    s.post(&id, &token, "How do I turn on two-factor authentication?")
        .await;
    s.drain().await;
    let max: usize = global_env("DESKHAND_QUEUE__MAX_RECEIVES").parse().unwrap();
    assert_eq!(
        s.bedrock.converse_requests().len(),
        max,
        "one model call per attempt"
    );
    assert_eq!(s.moto.depth(&s.dlq_url).await, 1, "not dead-lettered");
    let poll = s.poll(&id, &token).await;
    assert_eq!(poll["status"], "escalated");
    let notes = s.moto.notifications(&s.inbox).await;
    assert_eq!(notes.len(), 1);
    assert_eq!(
        notes[0]["MessageAttributes"]["reason"]["Value"],
        "processing_failed"
    );
    assert_eq!(notes[0]["MessageAttributes"]["priority"]["Value"], "high");
}

#[tokio::test]
async fn a_duplicate_delivery_neither_calls_the_model_nor_writes_a_second_reply() {
    let s = Stack::start().await;
    let (id, token) = s.conversation().await;
    s.post(&id, &token, "How do I turn on two-factor authentication?")
        .await;
    // Receive, keep a copy of the record, process it.
    let batch = s.runtime.queue.receive(&s.queue_url, 0, 180).await.unwrap();
    let arn = s.moto.queue_arn(&s.queue_url).await;
    let first = worker::handle(&s.ctx, sqs_event(&arn, &batch)).await;
    assert!(first.batch_item_failures.is_empty());
    // The event source delivers the same record again (at-least-once).
    let again = worker::handle(&s.ctx, sqs_event(&arn, &batch)).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(
        s.bedrock.converse_requests().len(),
        1,
        "the model was called twice"
    );
    let poll = s.poll(&id, &token).await;
    assert_eq!(role(&poll, "assistant").len(), 1, "{poll}");
    assert_eq!(role(&poll, "customer").len(), 1, "{poll}");
}

#[tokio::test]
async fn an_unparseable_record_goes_to_the_dlq_at_once_with_an_escalation() {
    let s = Stack::start().await;
    let sqs = aws_sdk_sqs::Client::new(&s.moto.sdk);
    sqs.send_message()
        .queue_url(&s.queue_url)
        .message_body("{\"v\":1,\"garbage\":true}")
        .message_group_id("g1")
        .message_deduplication_id("poison-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        s.deliver().await,
        (1, 0),
        "an unreadable record must not be retried"
    );
    assert_eq!(s.moto.depth(&s.dlq_url).await, 1);
    assert_eq!(s.moto.depth(&s.queue_url).await, 0);
    let notes = s.moto.notifications(&s.inbox).await;
    assert_eq!(
        notes[0]["MessageAttributes"]["reason"]["Value"],
        "unparseable"
    );
}

#[tokio::test]
async fn a_failure_holds_back_the_rest_of_its_conversation_but_not_others() {
    let s = Stack::start().await;
    // The first model call fails; later ones answer. B's ticket asks for a
    // person and so calls no model: groups run concurrently, and only this
    // makes the failing call A's whichever group gets there first.
    s.bedrock.script_converse(vec![Reply::throttling()]);
    let (a, ta) = s.conversation().await;
    let (b, tb) = s.conversation().await;
    s.post(&a, &ta, "How do I turn on two-factor authentication?")
        .await;
    s.post(&a, &ta, "And how do I reset my password?").await;
    s.post(&b, &tb, "I want to talk to a human").await;
    let mut batch = Vec::new();
    for _ in 0..5 {
        batch.extend(s.runtime.queue.receive(&s.queue_url, 0, 180).await.unwrap());
        if batch.len() >= 2 {
            break;
        }
    }
    // FIFO hands out one in-flight group at a time per group head; make
    // sure conversation A's first message is in the batch.
    let arn = s.moto.queue_arn(&s.queue_url).await;
    let response = worker::handle(&s.ctx, sqs_event(&arn, &batch)).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    for m in &batch {
        let in_a = m.group_id == a;
        assert_eq!(
            failed.contains(&m.message_id.as_str()),
            in_a,
            "group {}: {failed:?}",
            m.group_id
        );
        if !in_a {
            s.runtime
                .queue
                .delete(&s.queue_url, &m.receipt_handle)
                .await
                .unwrap();
        }
    }
    s.drain().await;
    // Each of A's tickets answered exactly once. (Not checked: the order of
    // A's answers. SQS FIFO returns a group's records in sequence order on
    // retry; moto does not after visibility changes, so the order here
    // would test moto.)
    let pa = s.poll(&a, &ta).await;
    let answered: std::collections::HashSet<&str> = role(&pa, "assistant")
        .iter()
        .map(|m| m["id"].as_str().unwrap().trim_end_matches(".reply"))
        .collect();
    let asked: std::collections::HashSet<&str> = role(&pa, "customer")
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(role(&pa, "assistant").len(), 2, "{pa}");
    assert_eq!(answered, asked, "{pa}");
    let pb = s.poll(&b, &tb).await;
    assert_eq!(pb["status"], "escalated", "{pb}");
    assert_eq!(role(&pb, "system").len(), 1, "{pb}");
}

/// Receives one conversation's `n` records as one batch (FIFO: in order).
/// Three questions posted into one new conversation and received (hidden
/// for 180 s) as one batch: (id, token, batch).
async fn three_received(s: &Stack) -> (String, String, Vec<Received>) {
    let (id, token) = s.conversation().await;
    for text in [
        "How do I turn on two-factor authentication?",
        "And how do I reset my password?",
        "Can I export my invoices?",
    ] {
        s.post(&id, &token, text).await;
    }
    let batch = receive_n(s, 3).await;
    (id, token, batch)
}

async fn receive_n(s: &Stack, n: usize) -> Vec<Received> {
    let mut batch = Vec::new();
    for _ in 0..10 {
        batch.extend(s.runtime.queue.receive(&s.queue_url, 0, 180).await.unwrap());
        if batch.len() >= n {
            break;
        }
    }
    assert_eq!(batch.len(), n, "the batch was not received whole");
    batch
}

fn failures(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// Every customer message of the conversation answered exactly once.
async fn assert_each_answered_once(s: &Stack, id: &str, token: &str, n: usize) {
    let poll = s.poll(id, token).await;
    let asked: Vec<&str> = role(&poll, "customer")
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    let mut answered: Vec<&str> = role(&poll, "assistant")
        .iter()
        .map(|m| m["id"].as_str().unwrap().trim_end_matches(".reply"))
        .collect();
    answered.sort_unstable();
    let mut want = asked.clone();
    want.sort_unstable();
    assert_eq!(asked.len(), n, "{poll}");
    assert_eq!(answered, want, "{poll}");
}

/// Issue #14 (6): an invocation whose deadline is near starts nothing. The
/// deadline comes from the Lambda context, as the worker binary passes it.
/// Every record comes back as a batch item failure, no model or KB call is
/// made, and the records are visible again at once: the next deliveries
/// (no deadline) answer each exactly once. Before the fix the worker
/// ignored the deadline and started the batch; on Lambda the time-out then
/// returned all of it.
#[tokio::test]
async fn a_batch_whose_deadline_is_near_returns_its_records_unstarted_and_loses_none() {
    let s = Stack::start().await;
    let (id, token, batch) = three_received(&s).await;
    let mut ctx = s.ctx.clone();
    ctx.budget = worker::Budget {
        reserve: Duration::from_secs(2),
        record: Duration::from_secs(5),
    };
    // One second left: less than the reserve.
    let mut context = lambda_runtime::Context::default();
    context.deadline = (SystemTime::now() + Duration::from_secs(1))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let arn = s.moto.queue_arn(&s.queue_url).await;
    let event = lambda_runtime::LambdaEvent::new(sqs_event(&arn, &batch), context);
    let response = worker::handle_lambda(&ctx, event).await;
    let ids: Vec<String> = batch.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(failures(&response), ids, "every record, in order");
    assert!(
        s.bedrock.converse_requests().is_empty(),
        "a record was started"
    );
    assert!(
        s.bedrock.retrieve_requests().is_empty(),
        "a record was started"
    );
    assert!(
        s.moto.notifications(&s.inbox).await.is_empty(),
        "a record not started escalated"
    );
    assert_eq!(s.moto.depth(&s.dlq_url).await, 0);
    // Nothing lost: the same records, redelivered (they were made visible
    // again within a second, not after the 180 s this receive hid them for).
    s.drain().await;
    assert_each_answered_once(&s, &id, &token, 3).await;
    assert_eq!(s.bedrock.converse_requests().len(), 3);
}

/// Issue #14 (6): a record starts only while its worst case fits. The first
/// record's model call takes 4 s; after it, 5 s are left of the 9 s the
/// invocation had after its reserve, less than one record's worst case
/// (6 s): the second and third records are not started and come back as
/// batch item failures, then are answered on redelivery.
#[tokio::test]
async fn records_that_would_outlast_the_invocation_are_not_started() {
    let s = Stack::start_with(|c| {
        c.generator.bedrock.as_mut().unwrap().read_timeout_secs = 10;
    })
    .await;
    s.bedrock.script_converse(vec![Reply::slow(
        Duration::from_secs(4),
        Reply::Fixture("converse_tool_use.json"),
    )]);
    let (id, token, batch) = three_received(&s).await;
    let mut ctx = s.ctx.clone();
    ctx.budget = worker::Budget {
        reserve: Duration::from_millis(500),
        record: Duration::from_secs(6),
    };
    let deadline = Instant::now() + Duration::from_millis(9_500);
    let arn = s.moto.queue_arn(&s.queue_url).await;
    let response = worker::handle_until(&ctx, sqs_event(&arn, &batch), Some(deadline)).await;
    assert!(
        Instant::now() < deadline,
        "the invocation overran its deadline"
    );
    assert_eq!(
        failures(&response),
        [batch[1].message_id.clone(), batch[2].message_id.clone()]
    );
    assert_eq!(s.bedrock.converse_requests().len(), 1);
    s.runtime
        .queue
        .delete(&s.queue_url, &batch[0].receipt_handle)
        .await
        .unwrap();
    s.drain().await;
    assert_each_answered_once(&s, &id, &token, 3).await;
    assert_eq!(s.bedrock.converse_requests().len(), 3);
}

/// The worker's budget from the configuration: a record's worst case is
/// the KB call and the model call at their caps (connect 3.1 s + read
/// timeout each) plus the reserve.
#[tokio::test]
async fn the_worker_budget_adds_up_the_bedrock_caps() {
    let s = Stack::start_with(|c| {
        c.generator.bedrock.as_mut().unwrap().read_timeout_secs = 40;
        c.retriever.bedrock_kb.as_mut().unwrap().read_timeout_secs = 10;
        c.aws.worker_reserve_secs = 10;
    })
    .await;
    let b = s.runtime.worker_budget();
    assert_eq!(b.reserve, Duration::from_secs(10));
    assert_eq!(
        b.record,
        Duration::from_millis(40_000 + 10_000 + 2 * 3_100 + 10_000)
    );
}
