//! `deskhand bench`: measurements a user can re-run. Benchmarks print
//! numbers beside their targets; no test asserts on time.
//!
//! - `core`: [`Pipeline::process`] CPU time per ticket, one ticket at a
//!   time, over the real SQLite store (in a temporary folder), the tantivy
//!   index of a synthetic knowledge base and a zero-latency generator; with
//!   the CPU time of retrieval and of the rules measured alone, so the rest
//!   (store, decision, bookkeeping) is the difference.
//! - `e2e`: local mode end to end over real HTTP on 127.0.0.1 — a client
//!   per conversation posts a question and polls until the reply is
//!   visible, then asks the next; reports throughput and latency
//!   percentiles at each concurrency.
//! - `lambda`: cold start of the built Lambda binaries (process exec → the
//!   first event's response received) and their peak RSS, under a minimal
//!   Runtime API emulator on 127.0.0.1, configured as the SAM template
//!   configures them (fake AWS settings; building clients makes no call).
//! - `retrieval`: search latency over synthetic knowledge bases of
//!   increasing size.
//! - `worker` ([`worker`]): the built worker Lambda binary against moto
//!   server and a Bedrock double: AWS calls and sequential steps per
//!   answered ticket, CPU per warm ticket, the first ticket after init,
//!   batches of 10; `--model-ms`/`--kb-ms` add latency at the double.
//! - `lambda` also times the worker over a prebuilt index, from the layer
//!   and from S3 ([`kb`]).

pub mod import;
mod kb;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Config, PipelineSettings};
use crate::domain::{
    ConversationId, Customer, MessageText, Provider, Thread, Ticket, TicketId, Usage,
};
use crate::knowledge::embed::{EmbedError, Embedder, Input, normalized};
use crate::knowledge::markdown::{self, Document};
use crate::knowledge::{Hybrid, TantivyIndex};
use crate::llm::{GenerateError, GenerateRequest, Generation, Generator};
use crate::local::Local;
use crate::notify::{EscalateError, Escalation, Escalator};
use crate::pipeline::{Pipeline, Policy, Processed, Responder, Rules};
use crate::sqlite::Db;
use crate::store::SqliteStore;

pub mod worker;

/// What to run, and how much of it.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Documents in the core scenario's synthetic knowledge base.
    pub core_documents: usize,
    /// Tickets the core scenario processes (after a warm-up).
    pub core_tickets: usize,
    /// Tickets per e2e concurrency level.
    pub e2e_tickets: usize,
    /// e2e concurrency levels.
    pub concurrency: Vec<usize>,
    /// Cold starts per Lambda binary.
    pub cold_starts: usize,
    /// Knowledge-base sizes of the retrieval scenario.
    pub retrieval_documents: Vec<usize>,
    /// Queries per retrieval size.
    pub retrieval_queries: usize,
    /// The worker scenario (`None`: skipped).
    pub worker: Option<worker::WorkerPlan>,
    /// Articles of the KB import scenario ([`import`]).
    pub import_articles: usize,
}

impl Plan {
    /// The real measurement.
    pub fn full() -> Self {
        Self {
            core_documents: 1_000,
            core_tickets: 2_000,
            e2e_tickets: 2_000,
            concurrency: vec![1, 8, 64],
            cold_starts: 9,
            retrieval_documents: vec![100, 1_000, 10_000],
            retrieval_queries: 500,
            worker: Some(worker::WorkerPlan::full()),
            import_articles: 1_000,
        }
    }

    /// Every scenario in seconds, even in a debug build: what CI runs so
    /// the bench cannot rot.
    pub fn tiny() -> Self {
        Self {
            core_documents: 100,
            core_tickets: 20,
            e2e_tickets: 12,
            concurrency: vec![1, 4],
            cold_starts: 1,
            retrieval_documents: vec![50, 200],
            retrieval_queries: 20,
            worker: Some(worker::WorkerPlan::tiny()),
            import_articles: 40,
        }
    }
}

/// Where and how the bench ran.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `/proc/cpuinfo`'s model name.
    pub cpu: String,
    /// Cores available to this process.
    pub cores: usize,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// `release` or `debug`.
    pub profile: &'static str,
    /// `x86_64`, `aarch64`…
    pub arch: &'static str,
}

impl Machine {
    /// This machine.
    pub fn detect() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            arch: std::env::consts::ARCH,
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// The worker's start-up steps, timed in this process.
    pub startup: StartupRow,
    /// Core pipeline CPU time.
    pub core: CoreRow,
    /// Local mode end to end.
    pub e2e: Vec<E2eRow>,
    /// Lambda binaries.
    pub lambda: Vec<ColdStartRow>,
    /// Lambda packages found in `target/lambda`.
    pub packages: Vec<PackageRow>,
    /// Retrieval latency.
    pub retrieval: Vec<RetrievalRow>,
    /// The worker Lambda against moto and the Bedrock double.
    pub worker: Option<worker::WorkerRow>,
    /// Why the worker scenario did not run, if it did not.
    pub worker_skipped: Option<String>,
    /// KB import throughput.
    pub import: Vec<import::ImportRow>,
}

/// Runs every scenario of `plan`; `config` gives the e2e scenario's
/// knowledge base and generator (and the cold start's knowledge base).
pub async fn run(config: &Config, plan: &Plan) -> anyhow::Result<Report> {
    let machine = Machine::detect();
    // First, while every lazy initialisation in this process is still cold.
    let startup = startup(&config.kb_dir).await.context("start-up scenario")?;
    let core = core(plan.core_documents, plan.core_tickets)
        .await
        .context("core scenario")?;
    let e2e = e2e(config, &plan.concurrency, plan.e2e_tickets)
        .await
        .context("e2e scenario")?;
    let lambda = run_lambda(config, plan).await?;
    let packages = packages();
    let retrieval = retrieval(&plan.retrieval_documents, plan.retrieval_queries)
        .await
        .context("retrieval scenario")?;
    let (worker, worker_skipped) = run_worker(config, plan).await;
    let import = import::import(plan.import_articles)
        .await
        .context("import scenario")?;
    Ok(Report {
        machine,
        startup,
        core,
        e2e,
        lambda,
        packages,
        retrieval,
        worker,
        worker_skipped,
        import,
    })
}

/// Only the Lambda cold starts of `plan`: the worker and API binaries as
/// deployed, and the worker over a prebuilt index from the layer and from
/// S3 (`deskhand bench --lambda`).
pub async fn run_lambda(config: &Config, plan: &Plan) -> anyhow::Result<Vec<ColdStartRow>> {
    let mut rows = cold_starts(&config.kb_dir, plan.cold_starts)
        .await
        .context("lambda scenario")?;
    rows.extend(
        kb::kb_cold_starts(&config.kb_dir, plan.cold_starts)
            .await
            .context("prebuilt-index cold starts")?,
    );
    Ok(rows)
}

/// The worker scenario of `plan`, or why it did not run.
pub async fn run_worker(
    config: &Config,
    plan: &Plan,
) -> (Option<worker::WorkerRow>, Option<String>) {
    let Some(p) = &plan.worker else {
        return (None, Some("not asked for".into()));
    };
    match worker::run(p, &config.kb_dir).await {
        Ok(row) => (Some(row), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    }
}

// ---------------------------------------------------------------- synthetic KB

const AREAS: &[&str] = &[
    "billing",
    "invoices",
    "payments",
    "account",
    "security",
    "integrations",
    "reports",
    "mobile app",
    "taxes",
    "team",
    "exports",
    "notifications",
    "subscriptions",
    "inventory",
    "shipping",
    "refunds",
    "expenses",
    "projects",
    "time tracking",
    "customers",
    "bank feeds",
    "payroll",
    "quotes",
    "receipts",
    "multi-currency",
];
const OBJECTS: &[&str] = &[
    "invoice template",
    "payment link",
    "API key",
    "two-factor authentication",
    "tax rate",
    "recurring schedule",
    "CSV export",
    "webhook",
    "user role",
    "password",
    "logo",
    "late fee",
    "reminder email",
    "bank account",
    "credit note",
    "discount code",
    "purchase order",
    "custom field",
    "approval rule",
    "backup",
    "single sign-on",
    "receipt scanner",
    "currency",
    "price list",
    "time sheet",
    "expense category",
    "client portal",
    "estimate",
    "deposit",
    "billing address",
];
const VERBS: &[&str] = &[
    "set up",
    "change",
    "delete",
    "export",
    "import",
    "enable",
    "turn off",
    "fix",
    "rename",
    "share",
    "restore",
    "schedule",
    "customize",
    "connect",
    "verify",
    "archive",
    "duplicate",
    "approve",
    "reset",
    "update",
];
const FILLER: &[&str] = &[
    "settings",
    "dashboard",
    "page",
    "menu",
    "button",
    "admin",
    "owner",
    "plan",
    "workspace",
    "client",
    "email",
    "link",
    "record",
    "list",
    "report",
    "status",
    "date",
    "amount",
    "balance",
    "history",
    "summary",
    "filter",
    "column",
    "draft",
    "sidebar",
    "toggle",
    "permission",
    "limit",
    "trial",
    "upgrade",
];
const PLACES: &[&str] = &[
    "Settings",
    "Billing",
    "Reports",
    "Integrations",
    "Security",
    "Team",
    "Invoices",
    "Payments",
    "Profile",
    "Advanced",
];

/// A synthetic help-centre article: (path, Markdown).
fn article(rng: &mut StdRng, n: usize) -> (String, String, String) {
    let area = *AREAS.choose(rng).expect("non-empty");
    let object = *OBJECTS.choose(rng).expect("non-empty");
    let verb = *VERBS.choose(rng).expect("non-empty");
    // A product code per article keeps 10,000 articles from sharing one vocabulary.
    let code = format!("{}{}", ["zen", "kor", "vel", "tam", "rix", "lum"][n % 6], n);
    let title = format!("How to {verb} the {object} in {area}");
    let mut md = format!(
        "---\nurl: https://help.example.com/{}/{n}\n---\n# {title}\n\n",
        area.replace(' ', "-")
    );
    md += &format!(
        "You can {verb} the {object} from the {area} {} at any time. Only workspace owners \
         and admins see this option; the {code} plan includes it at no extra cost.\n\n",
        FILLER.choose(rng).expect("non-empty")
    );
    for section in 0..rng.random_range(2..=4) {
        let place = *PLACES.choose(rng).expect("non-empty");
        let heading = match section {
            0 => format!("Before you {verb} the {object}"),
            1 => format!("Steps to {verb} it"),
            2 => "Troubleshooting".to_owned(),
            _ => "Limits".to_owned(),
        };
        md += &format!("## {heading}\n\n");
        for _ in 0..rng.random_range(1..=3) {
            let words: Vec<&str> = (0..rng.random_range(6..14))
                .map(|_| *FILLER.choose(rng).expect("non-empty"))
                .collect();
            md += &format!(
                "Go to {place} → {}. The {object} {} changes right away for every {}. {}.\n\n",
                area,
                words[..3].join(" "),
                words[3],
                capitalize(&words[4..].join(" "))
            );
        }
        if rng.random_bool(0.4) {
            md += "To do it:\n\n";
            for step in 1..=rng.random_range(3..=5) {
                md += &format!(
                    "{step}. Open the {} {} and choose **{verb}**.\n",
                    FILLER.choose(rng).expect("non-empty"),
                    FILLER.choose(rng).expect("non-empty")
                );
            }
            md.push('\n');
        }
    }
    let path = format!(
        "{}/{n:05}-{}.md",
        area.replace(' ', "-"),
        object.replace(' ', "-")
    );
    let question = format!("How do I {verb} the {object} in {area}?");
    (path, md, question)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// `n` parsed synthetic documents and a question about each, the same for
/// a given `n` on every run.
pub fn synthetic_kb(n: usize) -> (Vec<Document>, Vec<String>) {
    let mut rng = StdRng::seed_from_u64(7);
    (0..n)
        .map(|i| {
            let (path, md, q) = article(&mut rng, i);
            (markdown::parse(&path, &md), q)
        })
        .unzip()
}

// ---------------------------------------------------------------- CPU time

/// CPU time this process has used (every thread, user and system).
pub fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

// ---------------------------------------------------------------- core

/// Answers at once with a fixed reply citing the best passage: the
/// pipeline's own cost with the model's taken out.
struct InstantGenerator;

#[async_trait]
impl Generator for InstantGenerator {
    async fn generate(&self, request: &GenerateRequest) -> Result<Generation, GenerateError> {
        Ok(Generation {
            answer: "Go to Settings and follow the steps in the article.".into(),
            confidence: 0.9,
            needs_human: false,
            reason: None,
            sources: request
                .passages
                .first()
                .map(|p| vec![p.doc_id.clone()])
                .unwrap_or_default(),
            usage: Usage::default(),
        })
    }
}

/// Takes escalations and drops them (publishing is an adapter's cost).
struct NullEscalator;

#[async_trait]
impl Escalator for NullEscalator {
    async fn escalate(&self, _: &Escalation) -> Result<(), EscalateError> {
        Ok(())
    }
}

/// The core scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct CoreRow {
    /// Documents in the knowledge base.
    pub documents: usize,
    /// Passages indexed.
    pub passages: u64,
    /// Tickets measured.
    pub tickets: usize,
    /// Process CPU time per ticket, milliseconds.
    pub cpu_ms: f64,
    /// Of which retrieval (measured alone over the same questions).
    pub retrieval_cpu_ms: f64,
    /// Of which the rules: phrases, topics, sentiment (measured alone).
    pub rules_cpu_ms: f64,
    /// The rest: store, decision, bookkeeping.
    pub rest_cpu_ms: f64,
    /// Wall time per ticket, milliseconds.
    pub wall_ms: f64,
    /// Tickets by how they ended.
    pub outcomes: BTreeMap<String, usize>,
}

fn ticket(conversation: ConversationId, text: &str) -> anyhow::Result<Ticket> {
    Ok(Ticket {
        ticket_id: TicketId::new(),
        conversation_id: conversation,
        provider: Provider::Widget,
        customer: Customer::default(),
        subject: None,
        text: MessageText::parse(text, 4_000)?,
        attachments: Vec::new(),
        thread: Thread::default(),
        brand: None,
        received_at: chrono::Utc::now(),
    })
}

/// Runs the core scenario: `tickets` tickets (two a conversation) through
/// [`Pipeline::process`], one at a time.
pub async fn core(documents: usize, tickets: usize) -> anyhow::Result<CoreRow> {
    let (docs, questions) = synthetic_kb(documents);
    let index = TantivyIndex::in_memory(&docs)?;
    let dir = tempfile_dir("core")?;
    let store = SqliteStore::new(Db::open(&dir.join("deskhand.db"))?);
    let config = Config::default();
    let rules = Rules::new(&PipelineSettings::default())?;
    let pipeline = Pipeline::new(
        Arc::new(store),
        Arc::new(NullEscalator),
        Responder::new(
            Arc::new(index.clone()),
            Arc::new(InstantGenerator),
            Rules::new(&config.pipeline)?,
            Policy::from_config(&config),
        ),
    );
    let mut rng = StdRng::seed_from_u64(11);
    let asked: Vec<&String> = (0..tickets + 50)
        .map(|_| questions.choose(&mut rng).expect("non-empty"))
        .collect();
    let (warm, measured) = asked.split_at(50.min(asked.len()));
    let mut conversation = ConversationId::random();
    for (i, q) in warm.iter().enumerate() {
        if i % 2 == 0 {
            conversation = ConversationId::random();
        }
        pipeline.process(&ticket(conversation, q)?).await?;
    }
    // The tickets are built before the clock starts: ingest's work, not the pipeline's.
    let batch: Vec<Ticket> = measured
        .iter()
        .enumerate()
        .map(|(i, q)| {
            if i % 2 == 0 {
                conversation = ConversationId::random();
            }
            ticket(conversation, q)
        })
        .collect::<anyhow::Result<_>>()?;
    let mut outcomes = BTreeMap::new();
    let (cpu0, wall0) = (process_cpu(), Instant::now());
    for t in &batch {
        let done = pipeline.process(t).await?;
        let key = match done {
            Processed::Answered => "answered".to_owned(),
            Processed::Escalated(r) => format!("escalated ({r})"),
            other => format!("{other:?}").to_lowercase(),
        };
        *outcomes.entry(key).or_insert(0) += 1;
    }
    let (cpu, wall) = (process_cpu() - cpu0, wall0.elapsed());
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / batch.len().max(1) as f64;

    let cpu0 = process_cpu();
    for q in measured {
        std::hint::black_box(index.search(q, config.pipeline.top_k)?);
    }
    let retrieval = process_cpu() - cpu0;
    let cpu0 = process_cpu();
    for q in measured {
        // The pipeline asks for the sentiment and then runs the rules.
        std::hint::black_box(rules.sentiment(q));
        std::hint::black_box(rules.check(q));
    }
    let rules_cpu = process_cpu() - cpu0;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(CoreRow {
        documents,
        passages: index.len(),
        tickets: batch.len(),
        cpu_ms: per(cpu),
        retrieval_cpu_ms: per(retrieval),
        rules_cpu_ms: per(rules_cpu),
        rest_cpu_ms: per(cpu.saturating_sub(retrieval + rules_cpu)),
        wall_ms: per(wall),
        outcomes,
    })
}

fn tempfile_dir(what: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "deskhand-bench-{what}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

// ---------------------------------------------------------------- retrieval

/// Retrieval latency at one knowledge-base size.
#[derive(Debug, Clone, Serialize)]
pub struct RetrievalRow {
    /// Documents.
    pub documents: usize,
    /// Passages indexed.
    pub passages: u64,
    /// Seconds to build the in-memory index.
    pub build_secs: f64,
    /// Queries timed.
    pub queries: usize,
    /// Per query.
    pub latency: Latency,
    /// Per query through the hybrid retriever with 384-dimension passage
    /// vectors (exact cosine over all of them, fused with BM25); the
    /// embedding call is a hash, nearly free, so this is retrieval's own
    /// cost.
    pub hybrid_latency: Latency,
}

/// Dimension of the bench's vectors (multilingual-e5-small's).
const BENCH_DIM: usize = 384;

/// Hashes words into a 384-dimension vector: the cost of an embedding
/// call taken out, the shape of a real one kept.
struct HashEmbedder;

#[async_trait]
impl Embedder for HashEmbedder {
    fn identity(&self) -> String {
        "bench-hash".into()
    }

    async fn embed(&self, texts: &[String], _: Input) -> Result<Vec<Vec<f32>>, EmbedError> {
        texts
            .iter()
            .map(|t| {
                let mut v = vec![0.0f32; BENCH_DIM];
                for (i, w) in t.split_whitespace().enumerate() {
                    let h = w.bytes().fold(1469598103934665603u64, |h, b| {
                        (h ^ b as u64).wrapping_mul(1099511628211)
                    });
                    v[(h % BENCH_DIM as u64) as usize] += 1.0;
                    v[i % BENCH_DIM] += 0.01;
                }
                normalized(v)
            })
            .collect()
    }
}

/// Times `queries` searches (top 5) over synthetic KBs of each size, BM25
/// alone and hybrid.
pub async fn retrieval(sizes: &[usize], queries: usize) -> anyhow::Result<Vec<RetrievalRow>> {
    let mut rows = Vec::new();
    for &n in sizes {
        let (docs, questions) = synthetic_kb(n);
        let t0 = Instant::now();
        let index = TantivyIndex::in_memory(&docs)?;
        let build_secs = t0.elapsed().as_secs_f64();
        let mut rng = StdRng::seed_from_u64(13);
        for q in questions.iter().take(20) {
            std::hint::black_box(index.search(q, 5)?);
        }
        let mut samples = Vec::with_capacity(queries);
        for _ in 0..queries {
            let q = questions.choose(&mut rng).expect("non-empty");
            let t = Instant::now();
            std::hint::black_box(index.search(q, 5)?);
            samples.push(t.elapsed());
        }
        let hybrid = Hybrid::new(index.clone(), &docs).with_embedder(
            Arc::new(HashEmbedder),
            &docs,
            false,
            None,
        );
        hybrid.prepare().await?;
        let mut hybrid_samples = Vec::with_capacity(queries);
        for _ in 0..queries {
            let q = questions.choose(&mut rng).expect("non-empty");
            let t = Instant::now();
            std::hint::black_box(hybrid.search(q, 5).await?);
            hybrid_samples.push(t.elapsed());
        }
        rows.push(RetrievalRow {
            documents: n,
            passages: index.len(),
            build_secs,
            queries,
            latency: Latency::of(&mut samples),
            hybrid_latency: Latency::of(&mut hybrid_samples),
        });
    }
    Ok(rows)
}

// ---------------------------------------------------------------- lambda

/// The worker's start-up steps, each timed on its first call in a fresh
/// process (what a cold start pays), in the order the worker runs them.
#[derive(Debug, Clone, Serialize)]
pub struct StartupRow {
    /// The AWS SDK configuration and the DynamoDB, SQS and SNS clients
    /// (`AwsRuntime::from_config`), milliseconds.
    pub sdk_clients_ms: f64,
    /// The rules: the asks-for-a-person patterns, the sensitive-topic
    /// patterns and the VADER lexicon, milliseconds.
    pub rules_ms: f64,
    /// Reading and indexing the Markdown knowledge base in memory, milliseconds.
    pub kb_index_ms: f64,
    /// Documents and passages indexed.
    pub kb_documents: usize,
    /// Passages.
    pub kb_passages: u64,
    /// The Bedrock generator (its client), milliseconds.
    pub generator_ms: f64,
}

/// Times the worker's start-up steps in this process.
pub async fn startup(kb: &Path) -> anyhow::Result<StartupRow> {
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    let mut config = Config {
        kb_dir: kb.to_owned(),
        ..Config::default()
    };
    config.aws = crate::aws::AwsSettings {
        region: Some("us-east-1".into()),
        table: Some("deskhand-bench".into()),
        queue_url: Some(
            "https://sqs.us-east-1.amazonaws.com/123456789012/deskhand-bench.fifo".into(),
        ),
        topic_arn: Some("arn:aws:sns:us-east-1:123456789012:deskhand-bench".into()),
        ..Default::default()
    };
    config.generator.kind = crate::config::GeneratorKind::Bedrock;
    let t = Instant::now();
    let runtime = crate::lambda::AwsRuntime::from_config(config.clone()).await?;
    let sdk_clients_ms = ms(t);
    let t = Instant::now();
    std::hint::black_box(Rules::new(&config.pipeline)?);
    let rules_ms = ms(t);
    let t = Instant::now();
    let docs = crate::knowledge::tantivy::load_documents(kb, &mut |_, _| {})?;
    let index = TantivyIndex::in_memory(&docs)?;
    let kb_index_ms = ms(t);
    let t = Instant::now();
    std::hint::black_box(runtime.generator()?);
    let generator_ms = ms(t);
    Ok(StartupRow {
        sdk_clients_ms,
        rules_ms,
        kb_index_ms,
        kb_documents: docs.len(),
        kb_passages: index.len(),
        generator_ms,
    })
}

/// Cold starts of one Lambda binary.
#[derive(Debug, Clone, Serialize)]
pub struct ColdStartRow {
    /// The binary.
    pub binary: String,
    /// How it was configured, beyond the template's settings.
    pub variant: &'static str,
    /// What its first event was.
    pub event: &'static str,
    /// Its size on disk, bytes (this platform's build).
    pub size_bytes: u64,
    /// Runs measured (0 when the binary was not built).
    pub runs: usize,
    /// exec → first `next` request (start-up: configuration, clients,
    /// in-memory index), milliseconds, median.
    pub init_ms: f64,
    /// exec → the first event's response received, milliseconds, median.
    pub cold_start_ms: f64,
    /// Fastest and slowest cold start.
    pub cold_start_min_ms: f64,
    /// Slowest.
    pub cold_start_max_ms: f64,
    /// Peak resident memory after the first event (`VmHWM`), MiB, largest.
    pub peak_rss_mib: f64,
    /// Why it was skipped, if it was.
    pub skipped: Option<String>,
}

/// A Lambda package in `target/lambda`.
#[derive(Debug, Clone, Serialize)]
pub struct PackageRow {
    /// The function's binary.
    pub binary: String,
    /// The `bootstrap` executable's architecture.
    pub arch: String,
    /// `bootstrap`'s size, bytes.
    pub bootstrap_bytes: u64,
    /// `bootstrap.zip`'s size, bytes, if built with `--output-format zip`.
    pub zip_bytes: Option<u64>,
}

/// What the emulator saw of one run.
#[derive(Default)]
struct Seen {
    first_next: Option<Instant>,
    response: Option<(Instant, String)>,
    error: Option<String>,
}

struct Emulator {
    event: Value,
    seen: Mutex<Seen>,
    done: tokio::sync::Notify,
}

const RUNTIME: &str = "/2018-06-01/runtime";

/// A minimal Lambda Runtime API on 127.0.0.1: the first `next` gets
/// `event`, later ones wait forever; the response (or an error report) is
/// recorded. Returns its `host:port` and the server task.
async fn runtime_api(
    event: Value,
) -> anyhow::Result<(String, Arc<Emulator>, tokio::task::JoinHandle<()>)> {
    use axum::extract::State;
    use axum::routing::{get, post};
    let emulator = Arc::new(Emulator {
        event,
        seen: Mutex::new(Seen::default()),
        done: tokio::sync::Notify::new(),
    });
    async fn next(State(e): State<Arc<Emulator>>) -> axum::response::Response {
        use axum::response::IntoResponse;
        let first = {
            let mut seen = e.seen.lock().expect("emulator lock");
            let first = seen.first_next.is_none();
            if first {
                seen.first_next = Some(Instant::now());
            }
            first
        };
        if !first {
            // One event per run: the function waits here until it is killed.
            std::future::pending::<()>().await;
        }
        let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
        (
            [
                (
                    "lambda-runtime-aws-request-id",
                    "bench-request-1".to_owned(),
                ),
                ("lambda-runtime-deadline-ms", deadline.to_string()),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:deskhand-bench".to_owned(),
                ),
                (
                    "lambda-runtime-trace-id",
                    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
                        .to_owned(),
                ),
                ("content-type", "application/json".to_owned()),
            ],
            e.event.to_string(),
        )
            .into_response()
    }
    async fn response(State(e): State<Arc<Emulator>>, body: String) -> axum::http::StatusCode {
        e.seen.lock().expect("emulator lock").response = Some((Instant::now(), body));
        e.done.notify_one();
        axum::http::StatusCode::ACCEPTED
    }
    async fn error(State(e): State<Arc<Emulator>>, body: String) -> axum::http::StatusCode {
        e.seen.lock().expect("emulator lock").error = Some(body);
        e.done.notify_one();
        axum::http::StatusCode::ACCEPTED
    }
    let app = axum::Router::new()
        .route(&format!("{RUNTIME}/invocation/next"), get(next))
        .route(
            &format!("{RUNTIME}/invocation/{{id}}/response"),
            post(response),
        )
        .route(&format!("{RUNTIME}/invocation/{{id}}/error"), post(error))
        .route(&format!("{RUNTIME}/init/error"), post(error))
        .with_state(emulator.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, emulator, task))
}

/// An SQS event with no records: the worker wires everything and answers
/// an empty batch response without calling AWS.
fn empty_sqs_event() -> Value {
    json!({"Records": []})
}

/// An HTTP API (payload 2.0) request opening a conversation: routing, the
/// token's HMAC and the JSON answer, no AWS call (ingest is stateless).
fn open_conversation_event() -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/v1/conversations",
        "rawQueryString": "",
        "headers": {"host": "bench.example.com", "content-length": "0"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "domainName": "bench.example.com",
            "domainPrefix": "bench",
            "http": {
                "method": "POST",
                "path": "/v1/conversations",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "deskhand-bench"
            },
            "requestId": "bench-request-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "27/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1_795_780_800_000_i64
        },
        "isBase64Encoded": false
    })
}

/// Peak and current resident memory of a process, KiB (`VmHWM`, `VmRSS`).
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// The environment the SAM template gives a function, with fake resources
/// (building SDK clients makes no network call; the events used need none).
fn lambda_env(name: &str, memory_mb: u32, runtime_api: &str, kb: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "bench".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "bench".to_owned()),
        ("AWS_SESSION_TOKEN", "bench".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("DESKHAND_AWS__TABLE", "deskhand-bench".to_owned()),
        (
            "DESKHAND_AWS__QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/deskhand-bench.fifo".to_owned(),
        ),
        (
            "DESKHAND_AWS__DLQ_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/deskhand-bench-dlq.fifo".to_owned(),
        ),
        (
            "DESKHAND_AWS__TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:deskhand-bench".to_owned(),
        ),
        ("DESKHAND_KB_DIR", kb.display().to_string()),
        ("DESKHAND_LOG_FORMAT", "json".to_owned()),
        (
            "DESKHAND_SECRET",
            "bench-secret-bench-secret-0123456789".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if name == "deskhand-worker" {
        env.push(("DESKHAND_GENERATOR__KIND".into(), "bedrock".into()));
        env.push((
            "DESKHAND_GENERATOR__BEDROCK__MODEL_ID".into(),
            "us.amazon.nova-lite-v1:0".into(),
        ));
    }
    if let Some(path) = std::env::var_os("PATH") {
        env.push(("PATH".into(), path.to_string_lossy().into_owned()));
    }
    env
}

/// One cold start: (init, cold start, peak RSS KiB).
async fn cold_start(
    binary: &Path,
    name: &str,
    memory_mb: u32,
    event: Value,
    extra_env: &[(&str, &str)],
    kb: &Path,
    cwd: &Path,
) -> anyhow::Result<(Duration, Duration, u64)> {
    let (addr, emulator, server) = runtime_api(event).await?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.env_clear()
        .envs(lambda_env(name, memory_mb, &addr, kb))
        .envs(extra_env.iter().copied())
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let waited = tokio::time::timeout(Duration::from_secs(60), emulator.done.notified()).await;
    let pid = child.id().unwrap_or(0);
    let memory = memory_kib(pid);
    let _ = child.kill().await;
    server.abort();
    waited.map_err(|_| anyhow::anyhow!("{name} answered no event within 60 s"))?;
    let seen = emulator.seen.lock().expect("emulator lock");
    if let Some(e) = &seen.error {
        anyhow::bail!("{name} reported an error: {e}");
    }
    let (answered, body) = seen.response.clone().context("no response recorded")?;
    let ok = match name {
        "deskhand-worker" => body.contains("batchItemFailures"),
        _ => body.contains("201") || body.contains("conversation_id"),
    };
    anyhow::ensure!(ok, "{name} answered something unexpected: {body}");
    let init = seen.first_next.map_or(Duration::ZERO, |t| t - started);
    Ok((init, answered - started, memory.map_or(0, |(hwm, _)| hwm)))
}

/// Cold starts of the worker and API binaries beside this executable (the
/// same build profile), `runs` each.
pub async fn cold_starts(kb: &Path, runs: usize) -> anyhow::Result<Vec<ColdStartRow>> {
    let dir = std::env::current_exe()?
        .parent()
        .context("the executable has no folder")?
        .to_owned();
    let kb = std::fs::canonicalize(kb).with_context(|| format!("finding {}", kb.display()))?;
    // An empty working folder: no deskhand.toml is picked up.
    let cwd = tempfile_dir("lambda")?;
    let mut rows = Vec::new();
    // The worker as deployed indexes the bundled Markdown layer in memory
    // at start; with a Bedrock Knowledge Base it builds a client instead.
    const KB: &[(&str, &str)] = &[
        ("DESKHAND_RETRIEVER__KIND", "bedrock_kb"),
        (
            "DESKHAND_RETRIEVER__BEDROCK_KB__KNOWLEDGE_BASE_ID",
            "KBBENCH123",
        ),
    ];
    for (name, variant, extra, memory, event, what) in [
        (
            "deskhand-worker",
            "Markdown layer",
            &[][..],
            512,
            empty_sqs_event(),
            "SQS batch, no records",
        ),
        (
            "deskhand-worker",
            "Bedrock KB",
            KB,
            512,
            empty_sqs_event(),
            "SQS batch, no records",
        ),
        (
            "deskhand-api",
            "",
            &[][..],
            256,
            open_conversation_event(),
            "POST /v1/conversations",
        ),
    ] {
        let binary = dir.join(name);
        let size_bytes = std::fs::metadata(&binary).map_or(0, |m| m.len());
        if size_bytes == 0 {
            rows.push(ColdStartRow {
                binary: name.into(),
                variant,
                event: what,
                size_bytes,
                runs: 0,
                init_ms: 0.0,
                cold_start_ms: 0.0,
                cold_start_min_ms: 0.0,
                cold_start_max_ms: 0.0,
                peak_rss_mib: 0.0,
                skipped: Some(format!(
                    "{} not built (cargo build{} --bins)",
                    binary.display(),
                    if cfg!(debug_assertions) {
                        ""
                    } else {
                        " --release"
                    }
                )),
            });
            continue;
        }
        let (mut inits, mut colds, mut peak) = (Vec::new(), Vec::new(), 0u64);
        for _ in 0..runs.max(1) {
            let (init, cold, rss) =
                cold_start(&binary, name, memory, event.clone(), extra, &kb, &cwd).await?;
            inits.push(init);
            colds.push(cold);
            peak = peak.max(rss);
        }
        let init = Latency::of(&mut inits);
        let cold = Latency::of(&mut colds);
        rows.push(ColdStartRow {
            binary: name.into(),
            variant,
            event: what,
            size_bytes,
            runs: colds.len(),
            init_ms: init.p50_ms,
            cold_start_ms: cold.p50_ms,
            cold_start_min_ms: colds.first().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            cold_start_max_ms: cold.max_ms,
            peak_rss_mib: peak as f64 / 1024.0,
            skipped: None,
        });
    }
    let _ = std::fs::remove_dir_all(&cwd);
    Ok(rows)
}

/// The packages `cargo lambda build --release --arm64 --output-format zip`
/// left in `target/lambda`, if any.
pub fn packages() -> Vec<PackageRow> {
    let Some(target) = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.to_owned()))
    else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for name in ["deskhand-worker", "deskhand-api"] {
        let dir = target.join("lambda").join(name);
        let zip = std::fs::read(dir.join("bootstrap.zip")).ok();
        let bootstrap = std::fs::metadata(dir.join("bootstrap"))
            .ok()
            .map(|m| m.len());
        let Some(bootstrap_bytes) = bootstrap.or_else(|| zip.as_deref().and_then(zip_entry_size))
        else {
            continue;
        };
        // The executable itself, or the one cargo lambda zipped.
        let arch = [
            dir.join("bootstrap"),
            target.join("aarch64-unknown-linux-gnu/release").join(name),
        ]
        .iter()
        .find_map(|p| elf_machine(p))
        .unwrap_or("unknown");
        rows.push(PackageRow {
            binary: name.into(),
            arch: arch.into(),
            bootstrap_bytes,
            zip_bytes: zip.map(|z| z.len() as u64),
        });
    }
    rows
}

/// The architecture in an ELF header.
fn elf_machine(path: &Path) -> Option<&'static str> {
    use std::io::Read;
    let mut head = [0u8; 20];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    (head[..4] == *b"\x7fELF").then_some(())?;
    Some(match u16::from_le_bytes([head[18], head[19]]) {
        0xB7 => "aarch64",
        0x3E => "x86_64",
        _ => "other",
    })
}

/// The uncompressed size of `bootstrap` in a zip, from its central directory.
fn zip_entry_size(zip: &[u8]) -> Option<u64> {
    let u16_at = |i: usize| Some(u16::from_le_bytes(zip.get(i..i + 2)?.try_into().ok()?));
    let u32_at = |i: usize| Some(u32::from_le_bytes(zip.get(i..i + 4)?.try_into().ok()?));
    let eocd = (0..zip.len().saturating_sub(21))
        .rev()
        .take(65_557)
        .find(|&i| u32_at(i) == Some(0x0605_4b50))?;
    let mut at = u32_at(eocd + 16)? as usize;
    for _ in 0..u16_at(eocd + 10)? {
        (u32_at(at)? == 0x0201_4b50).then_some(())?;
        let size = u32_at(at + 24)?;
        let (name_len, extra, comment) = (
            u16_at(at + 28)? as usize,
            u16_at(at + 30)? as usize,
            u16_at(at + 32)? as usize,
        );
        if zip.get(at + 46..at + 46 + name_len)? == b"bootstrap" {
            return Some(u64::from(size));
        }
        at += 46 + name_len + extra + comment;
    }
    None
}

// ---------------------------------------------------------------- e2e

/// Questions the e2e clients cycle through (all answerable from the demo KB).
const QUESTIONS: &[&str] = &[
    "How do I turn on two-factor authentication?",
    "How much is the Solo plan per year?",
    "Can I export my invoices to CSV?",
    "How do I reset my password?",
    "Can I send recurring invoices every month?",
    "How do I add a team member?",
];

/// Latency percentiles of one run, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles of `samples` (nearest rank).
    pub fn of(samples: &mut [Duration]) -> Self {
        samples.sort();
        let at = |q: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i].as_secs_f64() * 1000.0
        };
        Self {
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// One e2e run.
#[derive(Debug, Clone, Serialize)]
pub struct E2eRow {
    /// Conversations posting at once.
    pub concurrency: usize,
    /// Tickets answered.
    pub tickets: usize,
    /// Tickets per second.
    pub throughput: f64,
    /// POST → reply visible on poll.
    pub latency: Latency,
}

/// Runs the e2e scenario: `tickets` tickets at each concurrency, local
/// mode with `config`'s generator over `config.kb_dir`, a fresh data
/// folder per run.
pub async fn e2e(
    config: &Config,
    concurrency: &[usize],
    tickets: usize,
) -> anyhow::Result<Vec<E2eRow>> {
    let mut rows = Vec::new();
    for &c in concurrency {
        let data = std::env::temp_dir().join(format!("deskhand-bench-{}-{c}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let mut cfg = config.clone();
        cfg.data_dir = data.clone();
        cfg.workers = cfg.workers.max(c.min(16));
        // The load is the point: no rate limits.
        cfg.limits.per_ip_per_minute = 0;
        cfg.limits.per_conversation_per_minute = 0;
        let (app, _) = Local::open(cfg, &mut |_, _| {})?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run(listener, async move {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(c * 2)
            .build()?;
        // Warm up: one ticket, so index and caches are hot.
        one_conversation(&http, &base, 1).await?;
        let per_client = tickets.div_ceil(c);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..c {
            let (http, base) = (http.clone(), base.clone());
            tasks.spawn(async move { one_conversation(&http, &base, per_client).await });
        }
        let mut samples = Vec::with_capacity(per_client * c);
        while let Some(r) = tasks.join_next().await {
            samples.extend(r??);
        }
        let elapsed = started.elapsed();
        let _ = stop.send(());
        server.await??;
        let _ = std::fs::remove_dir_all(&data);
        rows.push(E2eRow {
            concurrency: c,
            tickets: samples.len(),
            throughput: samples.len() as f64 / elapsed.as_secs_f64(),
            latency: Latency::of(&mut samples),
        });
    }
    Ok(rows)
}

/// One client: `n` questions in a row in one conversation; returns each
/// POST → reply-visible time.
async fn one_conversation(
    http: &reqwest::Client,
    base: &str,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let conv: Value = http
        .post(format!("{base}/v1/conversations"))
        .send()
        .await?
        .json()
        .await?;
    let id = conv["conversation_id"]
        .as_str()
        .context("no conversation id")?
        .to_owned();
    let token = conv["token"].as_str().context("no token")?.to_owned();
    let messages = format!("{base}/v1/conversations/{id}/messages");
    let mut cursor = "0".to_owned();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        let res = http
            .post(&messages)
            .bearer_auth(&token)
            .json(&json!({"text": QUESTIONS[i % QUESTIONS.len()]}))
            .send()
            .await?;
        anyhow::ensure!(res.status() == 202, "POST answered {}", res.status());
        let mut wait = Duration::from_millis(1);
        loop {
            let page: Value = http
                .get(format!("{messages}?after={cursor}"))
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            let msgs = page["messages"].as_array().context("no messages")?;
            if let Some(last) = msgs.last() {
                cursor = page["cursor"].as_str().unwrap_or(&cursor).to_owned();
                if last["role"] != "customer" {
                    break;
                }
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(30),
                "no reply within 30 s"
            );
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(8));
        }
        out.push(t0.elapsed());
    }
    Ok(out)
}

/// Targets of issue 7 (benchmarks, not tests).
pub mod targets {
    /// Core pipeline CPU per ticket, ms.
    pub const CORE_CPU_MS: f64 = 1.0;
    /// Local mode tickets per second (2 cores, extractive generator).
    pub const LOCAL_TICKETS_PER_SEC: f64 = 500.0;
    /// Worker cold start, ms.
    pub const COLD_START_MS: f64 = 30.0;
    /// Peak RSS of a Lambda binary, MiB.
    pub const RSS_MIB: f64 = 40.0;
    /// arm64 zipped package, MB.
    pub const PACKAGE_MB: f64 = 15.0;
}

fn verdict(met: bool) -> &'static str {
    if cfg!(debug_assertions) {
        "not judged in a debug build"
    } else if met {
        "met"
    } else {
        "MISSED"
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Renders the whole report as tables.
pub fn render(r: &Report) -> String {
    let m = &r.machine;
    let mut s = format!(
        "deskhand bench: {} build, {} × {} cores ({}), {:.1} GiB RAM\n\n",
        m.profile, m.cpu, m.cores, m.arch, m.memory_gib
    );
    let c = &r.core;
    s += &format!(
        "core pipeline: Pipeline::process, one ticket at a time; SQLite store in a temp folder, \
         zero-latency generator, {} synthetic documents ({} passages), {} tickets\n",
        c.documents, c.passages, c.tickets
    );
    s += &format!(
        "  CPU per ticket        {:>8.3} ms   target ≤ {} ms: {}\n",
        c.cpu_ms,
        targets::CORE_CPU_MS,
        verdict(c.cpu_ms <= targets::CORE_CPU_MS)
    );
    s += &format!("    retrieval           {:>8.3} ms\n", c.retrieval_cpu_ms);
    s += &format!("    rules, sentiment    {:>8.3} ms\n", c.rules_cpu_ms);
    s += &format!("    store and the rest  {:>8.3} ms\n", c.rest_cpu_ms);
    s += &format!("  wall per ticket       {:>8.3} ms\n", c.wall_ms);
    let outcomes: Vec<String> = c.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    s += &format!("  outcomes: {}\n\n", outcomes.join(", "));

    s += &render_e2e(&r.e2e);
    if let Some(best) = r.e2e.iter().map(|e| e.throughput).max_by(f64::total_cmp) {
        s += &format!(
            "  best throughput {:.0} tickets/s   target ≥ {} on 2 cores: {}\n",
            best,
            targets::LOCAL_TICKETS_PER_SEC,
            verdict(best >= targets::LOCAL_TICKETS_PER_SEC)
        );
    }
    s.push('\n');

    s += &render_lambda(m, &r.lambda);
    let st = &r.startup;
    s += &format!(
        "  worker start-up steps, first call in this process: SDK config and clients {:.1} ms, \
         rules {:.1} ms, Markdown KB ({} documents, {} passages) read and indexed {:.1} ms, \
         Bedrock generator {:.1} ms\n",
        st.sdk_clients_ms,
        st.rules_ms,
        st.kb_documents,
        st.kb_passages,
        st.kb_index_ms,
        st.generator_ms
    );
    if let Some(peak) = r
        .lambda
        .iter()
        .filter(|l| l.skipped.is_none())
        .map(|l| l.peak_rss_mib)
        .max_by(f64::total_cmp)
    {
        s += &format!(
            "  peak RSS {:.1} MiB   target ≤ {} MiB: {}\n",
            peak,
            targets::RSS_MIB,
            verdict(peak <= targets::RSS_MIB)
        );
    }
    if r.packages.is_empty() {
        s += "  packages: none in target/lambda (cargo lambda build --release --arm64 --output-format zip)\n";
    }
    for p in &r.packages {
        match p.zip_bytes {
            Some(z) => {
                s += &format!(
                    "  package {} ({}): bootstrap {:.1} MB, zipped {:.1} MB   target ≤ {} MB: {}\n",
                    p.binary,
                    p.arch,
                    mb(p.bootstrap_bytes),
                    mb(z),
                    targets::PACKAGE_MB,
                    // The packages are release builds whatever this build is.
                    if mb(z) <= targets::PACKAGE_MB {
                        "met"
                    } else {
                        "MISSED"
                    }
                )
            }
            None => {
                s += &format!(
                    "  package {} ({}): bootstrap {:.1} MB (no bootstrap.zip)\n",
                    p.binary,
                    p.arch,
                    mb(p.bootstrap_bytes)
                )
            }
        }
    }
    s.push('\n');

    s += "retrieval: top 5 passages from the in-memory tantivy index, one query at a time;\n\
          hybrid: the same with 384-dimension passage vectors fused in (embedding call excluded)\n\
          documents  passages  build s  queries    p50 ms    p95 ms    p99 ms  hybrid p50  hybrid p95\n";
    for q in &r.retrieval {
        s += &format!(
            "{:>9} {:>9} {:>8.2} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>11.3} {:>11.3}\n",
            q.documents,
            q.passages,
            q.build_secs,
            q.queries,
            q.latency.p50_ms,
            q.latency.p95_ms,
            q.latency.p99_ms,
            q.hybrid_latency.p50_ms,
            q.hybrid_latency.p95_ms
        );
    }
    match (&r.worker, &r.worker_skipped) {
        (Some(w), _) => s += &worker::render(w),
        (None, Some(why)) => s += &format!("\nworker Lambda against moto: skipped ({why})\n"),
        (None, None) => {}
    }
    s.push('\n');
    s += &import::render(&r.import);
    s
}

/// The Lambda cold-start rows, with their verdicts.
pub fn render_lambda(m: &Machine, rows: &[ColdStartRow]) -> String {
    let mut s = format!(
        "Lambda binaries ({} build, {}): exec → first event's response, under a Runtime API emulator\n\
         binary, retriever                 event                    size MB  runs   init ms   cold ms (min–max)      peak RSS MiB\n",
        m.profile, m.arch
    );
    for l in rows {
        let label = if l.variant.is_empty() {
            l.binary.clone()
        } else {
            format!("{}, {}", l.binary, l.variant)
        };
        if let Some(why) = &l.skipped {
            s += &format!("{label:<33} skipped: {why}\n");
            continue;
        }
        s += &format!(
            "{:<33} {:<24} {:>7.1} {:>5} {:>9.1} {:>9.1} ({:.1}–{:.1}) {:>12.1}\n",
            label,
            l.event,
            mb(l.size_bytes),
            l.runs,
            l.init_ms,
            l.cold_start_ms,
            l.cold_start_min_ms,
            l.cold_start_max_ms,
            l.peak_rss_mib
        );
    }
    if let Some(w) = rows
        .iter()
        .find(|l| l.binary == "deskhand-worker" && l.skipped.is_none())
    {
        s += &format!(
            "  worker cold start (as deployed) {:.1} ms   target ≤ {} ms: {}\n",
            w.cold_start_ms,
            targets::COLD_START_MS,
            verdict(w.cold_start_ms <= targets::COLD_START_MS)
        );
    }
    s += &kb::render(rows);
    s
}

/// Renders e2e rows as a table.
pub fn render_e2e(rows: &[E2eRow]) -> String {
    let mut s = String::from(
        "local mode end to end (POST → reply visible on poll)\nconcurrency  tickets  tickets/s    p50 ms    p95 ms    p99 ms    max ms\n",
    );
    for r in rows {
        s.push_str(&format!(
            "{:>11}  {:>7}  {:>9.1}  {:>8.2}  {:>8.2}  {:>8.2}  {:>8.2}\n",
            r.concurrency,
            r.tickets,
            r.throughput,
            r.latency.p50_ms,
            r.latency.p95_ms,
            r.latency.p99_ms,
            r.latency.max_ms
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(&mut s);
        assert_eq!(
            (l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms),
            (50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(Latency::of(&mut []).p50_ms, 0.0);
    }
}
