//! The one-box runtime behind `deskhand serve`: the API and worker tasks
//! in one process over one SQLite file and the embedded index.
//!
//! One process owns a data folder (a lock file enforces it), so at start
//! every in-flight message, ticket lease and outbox lease left by a killed
//! process is released at once instead of waiting out its timeout. A
//! dispatcher task delivers outbox records (email and helpdesk replies).

use std::fs::File;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{Instrument, info, warn};

use crate::api::{self, ApiState, Tokens};
use crate::config::Config;
use crate::knowledge::TantivyIndex;
use crate::knowledge::tantivy::BuildStats;
use crate::metrics::{MeteredStore, Metrics};
use crate::notify::Escalator;
use crate::outbox::{Couriers, DispatchSettings, Dispatcher, EmailTransport, OutboundPolicy};
use crate::pipeline::Pipeline;
use crate::queue::{Received, SqliteQueue};
use crate::runtime::{self, Aws};
use crate::sqlite::Db;
use crate::store::SqliteStore;
use crate::worker::{self, Action, Backoff};

/// How long shutdown waits for in-flight tickets before leaving them to
/// the next start.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an idle worker looks for messages whose retry delay ended.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Everything `serve` runs.
pub struct Local {
    config: Config,
    store: SqliteStore,
    queue: SqliteQueue,
    pipeline: Arc<Pipeline>,
    escalator: Arc<dyn Escalator>,
    outbox_ready: Arc<tokio::sync::Notify>,
    tokens: Tokens,
    metrics: Metrics,
    /// Follows the KB folder while serving (`retriever.watch_ms`).
    kb_watch: Option<crate::knowledge::watch::KbWatch>,
    _lock: File,
}

impl Local {
    /// Opens the data folder, (re)builds the index if the KB changed, and
    /// wires the pipeline. Returns the index build's stats if it built.
    pub fn open(
        config: Config,
        progress: &mut dyn FnMut(usize, usize),
    ) -> anyhow::Result<(Self, Option<BuildStats>)> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        let lock_path = config.data_dir.join("lock");
        let lock = File::create(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "another deskhand is using {}; stop it or pass a different --data folder",
                config.data_dir.display()
            )
        })?;
        let db = Db::open(&config.database_path())?;
        let store = SqliteStore::new(db.clone());
        let queue = SqliteQueue::new(db, config.queue.max_message_bytes);
        let mut kb_watch = None;
        let mut kb_built = None;
        let retriever = runtime::bedrock_or(&config, Aws::Lazy, || {
            let index_dir = config.data_dir.join("index");
            let (index, built) = TantivyIndex::open_or_build(&config.kb_dir, &index_dir, progress)?;
            kb_built = built;
            let index = index.including_internal(config.pipeline.answer_from_internal);
            // The watch updates the BM25 index in place (the hybrid reads
            // the same index); changed passages have no vector until the
            // next start computes it.
            if config.retriever.watch_ms != Some(0) {
                kb_watch = Some(crate::knowledge::watch::KbWatch::new(
                    &config.kb_dir,
                    Some(&index_dir),
                    index.clone(),
                )?);
            }
            let docs = crate::knowledge::tantivy::load_documents(&config.kb_dir, &mut |_, _| {})?;
            let hybrid = runtime::hybrid(
                &config,
                index,
                &docs,
                &config.data_dir.join("index-vectors.bin"),
            )?;
            // Passage vectors are computed (or loaded) in the background;
            // until they are ready, questions are answered from BM25.
            if hybrid.has_vectors()
                && let Ok(handle) = tokio::runtime::Handle::try_current()
            {
                let warm = hybrid.clone();
                handle.spawn(async move {
                    if let Err(error) = warm.prepare().await {
                        warn!(message = "Passage vectors not ready; BM25 alone for now.", %error);
                    }
                });
            }
            Ok(Arc::new(hybrid))
        })?;
        let built = kb_built;
        let responder =
            runtime::responder(&config, retriever, runtime::generator(&config, Aws::Lazy)?)?;
        let metrics = Metrics::prometheus();
        let escalator: Arc<dyn Escalator> = Arc::new(crate::notify::KeepDrafts::new(
            runtime::escalator(&config)?,
            Arc::new(store.clone()),
        ));
        let outbox_ready = Arc::new(tokio::sync::Notify::new());
        let pipeline = Arc::new(
            Pipeline::new(
                Arc::new(MeteredStore::new(Arc::new(store.clone()), metrics.clone())),
                escalator.clone(),
                responder,
            )
            .with_outbound(
                OutboundPolicy::from_settings(&config.outbound).with_nudge(outbox_ready.clone()),
            ),
        );
        let tokens = Tokens::new(config.token_secret()?);
        Ok((
            Self {
                config,
                store,
                queue,
                pipeline,
                escalator,
                outbox_ready,
                tokens,
                metrics,
                kb_watch,
                _lock: lock,
            },
            built,
        ))
    }

    /// The API router over this instance, with the widget demo page at `/`
    /// and the metrics at `/metrics`.
    pub fn router(&self) -> axum::Router {
        let state = ApiState::new(
            Arc::new(self.store.clone()),
            Arc::new(self.queue.clone()),
            self.tokens.clone(),
            Arc::new(self.config.api()),
        )
        .with_replay_guard(Arc::new(self.store.clone()))
        .with_people(Arc::new(self.store.clone()))
        .with_outbound(
            OutboundPolicy::from_settings(&self.config.outbound)
                .with_nudge(self.outbox_ready.clone()),
        )
        .with_embedder(runtime::gap_embedder(&self.config));
        api::router_with(
            state,
            api::Routes {
                demo_page: true,
                rate_limits: true,
                metrics: true,
                request_limits: true,
            },
        )
        .layer(axum::Extension(self.metrics.clone()))
    }

    /// A fresh widget conversation and its token, for the start-up hint.
    pub fn demo_conversation(&self) -> (crate::domain::ConversationId, String) {
        let id = crate::domain::ConversationId::random();
        (id, self.tokens.issue(id))
    }

    /// Moves every dead-lettered ticket back to the queue. Works beside a
    /// running `serve` (SQLite serializes the writes); its workers pick the
    /// tickets up.
    pub async fn redrive(config: &Config) -> anyhow::Result<u64> {
        let path = config.database_path();
        anyhow::ensure!(
            path.is_file(),
            "no deskhand data in {}",
            config.data_dir.display()
        );
        let queue = SqliteQueue::new(Db::open(&path)?, config.queue.max_message_bytes);
        Ok(crate::queue::Queue::redrive(&queue).await?)
    }

    /// Serves the API on `listener` and runs the workers until `shutdown`
    /// resolves; then stops taking requests, lets in-flight tickets finish
    /// (up to 30 s) and returns.
    pub async fn run(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let released = self.queue.release_in_flight().await?;
        let leases =
            self.store.release_leases().await? + self.store.release_outbox_leases().await?;
        if released + leases > 0 {
            info!(
                message = "Recovered work left by a previous run.",
                messages = released,
                leases
            );
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut workers = tokio::task::JoinSet::new();
        for n in 0..self.config.workers {
            let w = Worker {
                queue: self.queue.clone(),
                pipeline: self.pipeline.clone(),
                visibility: Duration::from_secs(self.config.queue.visibility_timeout_secs),
                max_receives: self.config.queue.max_receives,
                backoff: Backoff::from_config(&self.config.queue),
                metrics: self.metrics.clone(),
            };
            let stop = stop_rx.clone();
            workers.spawn(async move { w.run(n, stop).await });
        }
        if let Some(watch) = self.kb_watch.take() {
            let every = self.config.retriever.watch_ms.map_or(
                crate::knowledge::watch::DEFAULT_INTERVAL,
                Duration::from_millis,
            );
            workers.spawn(watch.run(every, stop_rx.clone()));
        }
        let dispatcher = self.dispatcher().await?;
        let stop = stop_rx.clone();
        let ready = self.outbox_ready.clone();
        let idle = Duration::from_millis(self.config.outbound.poll_interval_ms);
        workers.spawn(async move { run_dispatcher(dispatcher, ready, idle, stop).await });
        let server = tokio::spawn(serve(
            listener,
            self.router(),
            self.config.limits.clone(),
            stop_rx.clone(),
        ));
        shutdown.await;
        info!(message = "Shutting down: finishing in-flight tickets.");
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                message =
                    "Tickets still in flight at shutdown; they will be processed at next start."
            );
            workers.abort_all();
        }
        server.await.context("server task")?;
        Ok(())
    }
}

/// Serves `app` on `listener` until `stop` turns true, then stops
/// accepting and waits for open connections to finish their requests.
///
/// HTTP/1.1, by hyper itself: a client has `header_read_timeout_secs` to
/// send a request's headers (the next request's too, on a kept-alive
/// connection) or its connection is closed, and at most `max_connections`
/// are open at once (more wait in the listen backlog). The router bounds
/// the rest: request and body time-outs, requests in flight. HTTP/2 is not
/// offered: cleartext HTTP/2 has no header-read timeout to bound a client
/// that stalls, and browsers only speak it over TLS.
async fn serve(
    mut listener: TcpListener,
    app: axum::Router,
    limits: crate::config::Limits,
    mut stop: watch::Receiver<bool>,
) {
    use axum::serve::Listener;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs));
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let slot = tokio::select! {
            slot = connections.clone().acquire_owned() => slot,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok(slot) = slot else { break };
        // `Listener::accept` retries failed accepts (e.g. out of file
        // descriptors) after a pause.
        let (io, peer) = tokio::select! {
            conn = Listener::accept(&mut listener) => conn,
            _ = stop.wait_for(|s| *s) => break,
        };
        let service =
            app.clone()
                .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    req
                });
        let conn = http.serve_connection(
            TokioIo::new(io),
            hyper_util::service::TowerToHyperService::new(service),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A closed or timed-out connection is the client's business.
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

impl Local {
    /// The outbox dispatcher over this instance's store.
    async fn dispatcher(&self) -> anyhow::Result<Dispatcher> {
        let o = &self.config.outbound;
        let sdk = match &o.email {
            Some(e) if e.transport == EmailTransport::Ses => {
                Some(crate::aws::sdk_config(&self.config.aws).await)
            }
            _ => None,
        };
        let channels = Couriers::from_settings(o, sdk.as_ref())?;
        if channels.email.is_none() && self.config.inbound.email_providers_configured() {
            warn!(
                message = "Inbound email is configured but [outbound.email] is not: email replies stay in the store and are not sent."
            );
        }
        Ok(Dispatcher::new(
            Arc::new(self.store.clone()),
            Arc::new(self.store.clone()),
            self.escalator.clone(),
            channels,
            DispatchSettings::from_settings(o),
        ))
    }
}

/// Delivers due outbox records until `stop`; woken by new records, and
/// every `idle` for retries that came due.
async fn run_dispatcher(
    dispatcher: Dispatcher,
    ready: Arc<tokio::sync::Notify>,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) {
    const BATCH: usize = 32;
    while !*stop.borrow() {
        let woken = ready.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let n = match dispatcher.sweep(BATCH).await {
            Ok(n) => n,
            Err(error) => {
                warn!(message = "Outbox sweep failed.", %error);
                0
            }
        };
        if n < BATCH {
            tokio::select! {
                _ = &mut woken => {}
                _ = tokio::time::sleep(idle) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

struct Worker {
    queue: SqliteQueue,
    pipeline: Arc<Pipeline>,
    visibility: Duration,
    max_receives: u32,
    backoff: Backoff,
    metrics: Metrics,
}

impl Worker {
    async fn run(self, n: usize, mut stop: watch::Receiver<bool>) {
        let arrivals = self.queue.arrivals();
        while !*stop.borrow() {
            let arrived = arrivals.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let batch = match self.queue.receive(1, self.visibility, None).await {
                Ok(b) => b,
                Err(error) => {
                    warn!(message = "Queue receive failed.", worker = n, %error);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = &mut arrived => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            for d in batch {
                let action = worker::handle_guarded(
                    &self.pipeline,
                    &d.body,
                    d.receive_count,
                    self.max_receives,
                    self.backoff,
                )
                .instrument(crate::telemetry::record_span(&d.body))
                .await;
                self.apply(&d, action).await;
            }
        }
    }

    async fn apply(&self, d: &Received, action: Action) {
        self.metrics.settled(&action);
        let done = match &action {
            Action::Delete => self.queue.delete(d).await,
            Action::RetryAfter(delay) => self.queue.retry_after(d, *delay).await,
            Action::DeadLetter(reason) => self.queue.dead_letter(d, reason).await,
        };
        match done {
            Ok(true) => {}
            // The visibility timed out and another worker took it; the
            // ticket's claim keeps the work from being done twice.
            Ok(false) => warn!(
                message = "Queue receipt expired before the record was settled.",
                ?action
            ),
            Err(error) => {
                warn!(message = "Could not settle a queue record; it will be redelivered.", %error, ?action)
            }
        }
    }
}
