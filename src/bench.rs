//! `deskhand bench`: measurements a user can re-run. Benchmarks print
//! numbers; no test asserts on time.
//!
//! - `e2e`: local mode end to end over real HTTP on 127.0.0.1 — a client
//!   per conversation posts a question and polls until the reply is
//!   visible, then asks the next; reports throughput and latency
//!   percentiles at each concurrency.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::Config;
use crate::local::Local;

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
