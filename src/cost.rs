//! What deskhand costs: model tokens at the configured price table, and an
//! estimate of the AWS infrastructure at list prices.
//!
//! Two uses share one model of the infrastructure, so the README's table,
//! `deskhand cost` and `GET /v1/stats` cannot disagree:
//!
//! * [`Summary::of`] — from stored ticket records (their outcomes, tokens,
//!   model ids and measured model time) over a period;
//! * [`estimate`] — from an assumed month ([`Workload::default`]: the
//!   README's worked example), for `deskhand cost --estimate`.
//!
//! The infrastructure model counts the requests one ticket and one
//! conversation make, read off the code: per ticket one `SendMessage`, a
//! receive and a delete on SQS; in DynamoDB a claim (2 writes), the
//! customer message's transactional append (3 items, 6 write units), the
//! completion's transaction (4 items, 8 write units) and its index entry
//! (1), one more write when an escalation is marked notified, and 6
//! strongly consistent reads; per poll 2 reads; one Lambda invocation per
//! HTTP request and per ticket. Fixed monthly costs (secrets, the
//! dead-letter alarm, the event source's long polling, CloudWatch custom
//! metrics from the worker's EMF lines) are prorated over a period.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Outcome;
use crate::store::TicketRecord;

/// Prices used by `deskhand cost` and `GET /v1/stats` (the `[prices]`
/// configuration section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prices {
    /// Model prices; a stored model id takes the first entry whose
    /// `matches` it contains (so `us.amazon.nova-lite-v1:0` and
    /// `amazon.nova-lite-v1:0` both find Nova Lite).
    pub models: Vec<ModelPrice>,
    /// AWS list prices of the infrastructure.
    pub infra: InfraPrices,
}

/// One model's on-demand prices, US dollars per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// A label for tables (`Nova Lite`).
    pub name: String,
    /// A part of the model id that identifies it (`nova-lite`).
    pub matches: String,
    /// Input tokens.
    pub input: f64,
    /// Output tokens.
    pub output: f64,
    /// Input tokens read from the prompt cache.
    pub cache_read: f64,
    /// Input tokens written to the prompt cache.
    pub cache_write: f64,
}

/// AWS list prices (us-east-1, arm64, without the free tier), US dollars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InfraPrices {
    /// Lambda, per million requests.
    pub lambda_per_million_requests: f64,
    /// Lambda on arm64, per GB-second.
    pub lambda_per_gb_second: f64,
    /// API Gateway HTTP API, per million requests.
    pub http_api_per_million_requests: f64,
    /// SQS FIFO, per million requests.
    pub sqs_fifo_per_million_requests: f64,
    /// DynamoDB on demand, per million write request units.
    pub dynamodb_per_million_writes: f64,
    /// DynamoDB on demand, per million read request units.
    pub dynamodb_per_million_reads: f64,
    /// DynamoDB storage, per GB-month.
    pub dynamodb_per_gb_month: f64,
    /// DynamoDB point-in-time recovery (the template enables it), per GB-month.
    pub dynamodb_backup_per_gb_month: f64,
    /// SNS, per million publishes.
    pub sns_per_million_publishes: f64,
    /// Secrets Manager, per secret-month.
    pub secret_per_month: f64,
    /// A CloudWatch alarm, per month.
    pub alarm_per_month: f64,
    /// A CloudWatch custom metric, per month (prorated by the hour it is sent in).
    pub metric_per_month: f64,
    /// CloudWatch Logs ingestion, per GB.
    pub logs_per_gb: f64,
}

impl Default for Prices {
    fn default() -> Self {
        // Amazon Bedrock on-demand prices, us-east-1, checked November 2026.
        // Cached input is read at 25 % of the input price (Bedrock prompt
        // caching gives Nova a 75 % discount on cache reads); cache writes
        // are assumed to bill at the input price.
        let nova = |name: &str, matches: &str, input: f64, output: f64| ModelPrice {
            name: name.into(),
            matches: matches.into(),
            input,
            output,
            cache_read: input * 0.25,
            cache_write: input,
        };
        Self {
            models: vec![
                nova("Nova Micro", "nova-micro", 0.035, 0.14),
                nova("Nova Lite", "nova-lite", 0.06, 0.24),
                nova("Nova Pro", "nova-pro", 0.80, 3.20),
            ],
            infra: InfraPrices::default(),
        }
    }
}

impl Default for InfraPrices {
    fn default() -> Self {
        // AWS list prices, us-east-1, arm64, checked November 2026.
        Self {
            lambda_per_million_requests: 0.20,
            lambda_per_gb_second: 0.000_013_333_4,
            http_api_per_million_requests: 1.00,
            sqs_fifo_per_million_requests: 0.50,
            dynamodb_per_million_writes: 0.625,
            dynamodb_per_million_reads: 0.125,
            dynamodb_per_gb_month: 0.25,
            dynamodb_backup_per_gb_month: 0.20,
            sns_per_million_publishes: 0.50,
            secret_per_month: 0.40,
            alarm_per_month: 0.10,
            metric_per_month: 0.30,
            logs_per_gb: 0.50,
        }
    }
}

impl Prices {
    /// The price entry for a stored model id, if the table knows it.
    pub fn model(&self, model_id: &str) -> Option<&ModelPrice> {
        let id = model_id.to_ascii_lowercase();
        self.models
            .iter()
            .find(|m| id.contains(&m.matches.to_ascii_lowercase()))
    }

    /// The entry a user means by `name` (`lite`, `Nova Pro`, `nova-micro`).
    pub fn model_named(&self, name: &str) -> Option<&ModelPrice> {
        let want = name.to_ascii_lowercase();
        self.models.iter().find(|m| {
            m.name.to_ascii_lowercase().contains(&want)
                || m.matches.to_ascii_lowercase().contains(&want)
        })
    }
}

impl ModelPrice {
    /// Dollars for the given tokens.
    pub fn cost(&self, t: &TokenCounts) -> f64 {
        (t.input as f64 * self.input
            + t.output as f64 * self.output
            + t.cache_read as f64 * self.cache_read
            + t.cache_write as f64 * self.cache_write)
            / 1e6
    }
}

/// Token counts by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TokenCounts {
    /// Input tokens billed.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
}

impl TokenCounts {
    fn add(&mut self, o: &TokenCounts) {
        self.input += o.input;
        self.output += o.output;
        self.cache_read += o.cache_read;
        self.cache_write += o.cache_write;
    }
}

/// How the functions are deployed (`infra/template.yaml`) and what one
/// request costs in time: the constants of the infrastructure model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Deployment {
    /// API function memory, GB.
    pub api_memory_gb: f64,
    /// Billed duration of one API request, seconds (a DynamoDB read or an
    /// SQS send and the routing around it).
    pub api_seconds: f64,
    /// Worker function memory, GB.
    pub worker_memory_gb: f64,
    /// Worker time per ticket besides waiting for the model, seconds.
    pub worker_seconds: f64,
    /// DynamoDB write units per ticket (see the module docs).
    pub writes_per_ticket: f64,
    /// DynamoDB write units per escalation (marking it notified).
    pub writes_per_escalation: f64,
    /// DynamoDB read units per ticket.
    pub reads_per_ticket: f64,
    /// DynamoDB read units per poll (the conversation and its new messages).
    pub reads_per_poll: f64,
    /// SQS requests per ticket (send, receive, delete).
    pub sqs_per_ticket: f64,
    /// Stored bytes per conversation, with DynamoDB's per-item overhead.
    pub bytes_per_conversation: f64,
    /// Days a conversation is kept (the table's TTL).
    pub retention_days: f64,
    /// Log bytes per Lambda invocation (START, END, REPORT lines).
    pub log_bytes_per_invocation: f64,
    /// Log bytes per ticket (its log lines and its EMF metrics line).
    pub log_bytes_per_ticket: f64,
    /// Secrets Manager secrets (token key, agent key).
    pub secrets: f64,
    /// CloudWatch alarms (the dead-letter alarm).
    pub alarms: f64,
    /// Long-polling `ReceiveMessage` calls a month by the SQS event source
    /// while idle: 5 pollers, one 20-second poll each.
    pub idle_sqs_polls_per_month: f64,
    /// Whether the worker prints EMF metrics (`metrics.emf`), which makes
    /// CloudWatch custom metrics.
    pub emf_metrics: bool,
}

impl Deployment {
    /// The template's deployment, with EMF metrics on or off
    /// (`metrics.emf`).
    pub fn with_emf_metrics(emf_metrics: bool) -> Self {
        Self {
            emf_metrics,
            ..Self::default()
        }
    }
}

/// What figures are priced with: the price table and the deployment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pricing {
    /// Model and AWS prices (`[prices]`).
    pub prices: Prices,
    /// The deployment's shape.
    pub deployment: Deployment,
}

impl Default for Deployment {
    fn default() -> Self {
        Self {
            api_memory_gb: 0.25,
            api_seconds: 0.02,
            worker_memory_gb: 0.5,
            worker_seconds: 0.1,
            writes_per_ticket: 17.0,
            writes_per_escalation: 1.0,
            reads_per_ticket: 6.0,
            reads_per_poll: 2.0,
            sqs_per_ticket: 3.0,
            bytes_per_conversation: 10_000.0,
            retention_days: 90.0,
            log_bytes_per_invocation: 350.0,
            log_bytes_per_ticket: 1_500.0,
            secrets: 2.0,
            alarms: 1.0,
            idle_sqs_polls_per_month: 5.0 * (30.0 * 86_400.0 / 20.0),
            emf_metrics: true,
        }
    }
}

/// Days in an average month.
const MONTH_DAYS: f64 = 365.25 / 12.0;

/// The traffic one period saw (or is assumed to see).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Traffic {
    /// Conversations.
    pub conversations: f64,
    /// Tickets (customer messages).
    pub tickets: f64,
    /// Widget polls.
    pub polls: f64,
    /// Escalations published (SNS).
    pub escalations: f64,
    /// Seconds spent waiting for the model.
    pub model_seconds: f64,
    /// Expected share of tickets emitting each CloudWatch metric (see
    /// [`crate::metrics`]), for the custom-metrics estimate.
    pub metric_shares: Vec<f64>,
    /// Length of the period, days.
    pub days: f64,
}

/// The infrastructure estimate, by service, US dollars.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Infra {
    /// Lambda requests and GB-seconds.
    pub lambda: f64,
    /// API Gateway HTTP API requests.
    pub http_api: f64,
    /// SQS requests (tickets, and the event source's idle polling).
    pub sqs: f64,
    /// DynamoDB reads and writes.
    pub dynamodb_requests: f64,
    /// DynamoDB storage and backups of the period's conversations over
    /// their retention.
    pub dynamodb_storage: f64,
    /// SNS publishes.
    pub sns: f64,
    /// CloudWatch: log ingestion, custom metrics, the alarm.
    pub cloudwatch: f64,
    /// Secrets Manager.
    pub secrets: f64,
}

impl Infra {
    /// The sum.
    pub fn total(&self) -> f64 {
        self.lambda
            + self.http_api
            + self.sqs
            + self.dynamodb_requests
            + self.dynamodb_storage
            + self.sns
            + self.cloudwatch
            + self.secrets
    }
}

/// Estimates the AWS infrastructure for `t` at `p` on deployment `d`.
pub fn infra(t: &Traffic, p: &InfraPrices, d: &Deployment) -> Infra {
    let months = t.days / MONTH_DAYS;
    let http = t.conversations + t.tickets + t.polls;
    let invocations = http + t.tickets;
    let gb_seconds = http * d.api_memory_gb * d.api_seconds
        + d.worker_memory_gb * (t.tickets * d.worker_seconds + t.model_seconds);
    let writes = t.tickets * d.writes_per_ticket + t.escalations * d.writes_per_escalation;
    let reads = t.tickets * d.reads_per_ticket + t.polls * d.reads_per_poll;
    let stored_gb_months =
        t.conversations * d.bytes_per_conversation / 1e9 * (d.retention_days / MONTH_DAYS);
    let log_gb =
        (invocations * d.log_bytes_per_invocation + t.tickets * d.log_bytes_per_ticket) / 1e9;
    // A custom metric costs its monthly price prorated by the hours it is
    // sent in; with tickets arriving at random, a metric sent by a share s
    // of tickets is sent in 1 − e^(−λ·s) of the hours (λ tickets an hour).
    let per_hour = if t.days > 0.0 {
        t.tickets / (t.days * 24.0)
    } else {
        0.0
    };
    let metric_months: f64 = if d.emf_metrics {
        t.metric_shares
            .iter()
            .map(|s| 1.0 - (-per_hour * s).exp())
            .sum::<f64>()
            * months
    } else {
        0.0
    };
    Infra {
        lambda: invocations * p.lambda_per_million_requests / 1e6
            + gb_seconds * p.lambda_per_gb_second,
        http_api: http * p.http_api_per_million_requests / 1e6,
        sqs: (t.tickets * d.sqs_per_ticket + d.idle_sqs_polls_per_month * months)
            * p.sqs_fifo_per_million_requests
            / 1e6,
        dynamodb_requests: writes * p.dynamodb_per_million_writes / 1e6
            + reads * p.dynamodb_per_million_reads / 1e6,
        dynamodb_storage: stored_gb_months
            * (p.dynamodb_per_gb_month + p.dynamodb_backup_per_gb_month),
        sns: t.escalations * p.sns_per_million_publishes / 1e6,
        cloudwatch: log_gb * p.logs_per_gb
            + metric_months * p.metric_per_month
            + d.alarms * p.alarm_per_month * months,
        secrets: d.secrets * p.secret_per_month * months,
    }
}

/// The assumed month of the README's worked example.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Workload {
    /// Customer messages per conversation.
    pub tickets_per_conversation: f64,
    /// Widget polls per conversation.
    pub polls_per_conversation: f64,
    /// Share of tickets that reach the model (the rest are settled by
    /// rules or retrieval first).
    pub model_share: f64,
    /// Share of conversations resolved without a person.
    pub resolved_share: f64,
    /// Input tokens per model call.
    pub input_tokens: f64,
    /// Output tokens per model call.
    pub output_tokens: f64,
    /// Seconds per model call.
    pub model_seconds: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            tickets_per_conversation: 2.0,
            polls_per_conversation: 30.0,
            model_share: 0.8,
            resolved_share: 0.6,
            input_tokens: 2_000.0,
            output_tokens: 100.0,
            model_seconds: 2.0,
        }
    }
}

/// Widget polls assumed per ticket when only tickets are known.
pub const POLLS_PER_TICKET: f64 = 15.0;

/// Expected share of tickets sending each worker metric, for the assumed
/// month: tickets by outcome (answered, escalated), escalations by reason
/// (the 40 % spread over five common reasons), and model latency and
/// input and output tokens for the tickets that reach the model.
fn assumed_metric_shares(w: &Workload) -> Vec<f64> {
    let escalated = 1.0 - w.resolved_share;
    let no_knowledge = 1.0 - w.model_share;
    let rest = (escalated - no_knowledge).max(0.0);
    vec![
        w.resolved_share,
        escalated,
        no_knowledge,
        rest * 0.5,
        rest * 0.25,
        rest * 0.15,
        rest * 0.10,
        w.model_share,
        w.model_share,
        w.model_share,
    ]
}

/// One month of `conversations` under `w` with `model`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// Conversations a month.
    pub conversations: f64,
    /// The model's label.
    pub model: String,
    /// Model dollars.
    pub model_cost: f64,
    /// Infrastructure dollars, by service.
    pub infra: Infra,
    /// Model plus infrastructure.
    pub total: f64,
    /// Resolutions (conversations resolved without a person).
    pub resolutions: f64,
    /// Dollars per resolution.
    pub per_resolution: f64,
    /// What Intercom Fin would charge ($0.99 a resolution).
    pub intercom_fin: f64,
    /// What Zendesk AI would charge (~$1.50 a resolution).
    pub zendesk: f64,
}

/// Intercom Fin's price per resolution.
pub const FIN_PER_RESOLUTION: f64 = 0.99;
/// Zendesk's automated-resolution price (approximate; plans vary).
pub const ZENDESK_PER_RESOLUTION: f64 = 1.50;

/// The month of `conversations` under `w`, answering with `model`.
pub fn estimate(
    conversations: f64,
    model: &ModelPrice,
    w: &Workload,
    prices: &InfraPrices,
    d: &Deployment,
) -> Estimate {
    let tickets = conversations * w.tickets_per_conversation;
    let calls = tickets * w.model_share;
    let model_cost = model.cost(&TokenCounts {
        input: (calls * w.input_tokens).round() as u64,
        output: (calls * w.output_tokens).round() as u64,
        ..TokenCounts::default()
    });
    let traffic = Traffic {
        conversations,
        tickets,
        polls: conversations * w.polls_per_conversation,
        escalations: tickets * (1.0 - w.resolved_share),
        model_seconds: calls * w.model_seconds,
        metric_shares: assumed_metric_shares(w),
        days: MONTH_DAYS,
    };
    let infra = infra(&traffic, prices, d);
    let total = model_cost + infra.total();
    let resolutions = conversations * w.resolved_share;
    Estimate {
        conversations,
        model: model.name.clone(),
        model_cost,
        total,
        per_resolution: if resolutions > 0.0 {
            total / resolutions
        } else {
            0.0
        },
        intercom_fin: resolutions * FIN_PER_RESOLUTION,
        zendesk: resolutions * ZENDESK_PER_RESOLUTION,
        resolutions,
        infra,
    }
}

/// Model cost of one model id over a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelCost {
    /// Model calls.
    pub calls: u64,
    /// TokenCounts.
    pub tokens: TokenCounts,
    /// Dollars, or `None` when the price table does not know the model.
    pub cost: Option<f64>,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
}

/// What a period's finished tickets add up to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Start of the period.
    pub since: DateTime<Utc>,
    /// End of the period (when the summary was made).
    pub until: DateTime<Utc>,
    /// Finished tickets.
    pub tickets: u64,
    /// Conversations they belong to.
    pub conversations: u64,
    /// Tickets by outcome.
    pub by_outcome: BTreeMap<String, u64>,
    /// Tickets by escalation reason.
    pub by_reason: BTreeMap<String, u64>,
    /// Answered tickets.
    pub resolutions: u64,
    /// Tickets handed to a person (escalated, forwarded, dead-lettered).
    pub escalations: u64,
    /// `resolutions / tickets`.
    pub resolution_rate: f64,
    /// Accepted → finished.
    pub latency: Percentiles,
    /// TokenCounts of every model.
    pub tokens: TokenCounts,
    /// Model calls.
    pub model_calls: u64,
    /// Calls of configured actions (order lookups…).
    pub action_calls: u64,
    /// Time waited for actions, in milliseconds, all calls together.
    pub action_ms: u64,
    /// By model id (`extractive` when no model was called).
    pub models: BTreeMap<String, ModelCost>,
    /// Known model dollars.
    pub model_cost: f64,
    /// Model ids the price table does not know (their cost is left out).
    pub unpriced_models: Vec<String>,
    /// The AWS infrastructure this traffic would cost (widget polls
    /// assumed: 15 a ticket; fixed monthly costs prorated).
    pub infra: Infra,
    /// Model plus infrastructure.
    pub total_cost: f64,
    /// Of the infrastructure, what the period costs with no traffic at all
    /// (secrets, the alarm, the event source's idle polling).
    pub fixed_cost: f64,
    /// `total_cost / resolutions` (0 without resolutions).
    pub cost_per_resolution: f64,
    /// `(total_cost − fixed_cost) / resolutions`: what one more resolution
    /// costs (0 without resolutions).
    pub marginal_cost_per_resolution: f64,
}

impl Summary {
    /// Adds up `records` finished between `since` and `until`, at the
    /// configured prices, for a deployment as configured (EMF on or off).
    pub fn of(
        records: &[TicketRecord],
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        pricing: &Pricing,
    ) -> Self {
        let prices = &pricing.prices;
        let mut by_outcome: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
        let mut models: BTreeMap<String, ModelCost> = BTreeMap::new();
        let mut conversations = std::collections::HashSet::new();
        let mut latencies = Vec::with_capacity(records.len());
        let (mut tokens, mut calls, mut model_ms) = (TokenCounts::default(), 0u64, 0u64);
        let (mut action_calls, mut action_ms) = (0u64, 0u64);
        for r in records {
            *by_outcome.entry(r.outcome.as_str().into()).or_default() += 1;
            if let Some(reason) = r.reason {
                *by_reason.entry(reason.as_str().into()).or_default() += 1;
            }
            conversations.insert(r.conversation_id);
            latencies.push(
                (r.completed_at - r.received_at)
                    .num_microseconds()
                    .unwrap_or(i64::MAX)
                    .max(0) as f64
                    / 1000.0,
            );
            let u = &r.usage;
            let t = TokenCounts {
                input: u.input_tokens,
                output: u.output_tokens,
                cache_read: u.cache_read_tokens,
                cache_write: u.cache_write_tokens,
            };
            tokens.add(&t);
            calls += u64::from(u.calls);
            model_ms += u.model_ms;
            action_calls += u64::from(u.action_calls);
            action_ms += u.action_ms;
            if u.calls > 0 || u.model_id.is_some() {
                let id = u.model_id.clone().unwrap_or_else(|| "unknown".into());
                let m = models.entry(id).or_default();
                m.calls += u64::from(u.calls);
                m.tokens.add(&t);
            }
        }
        let mut unpriced_models = Vec::new();
        let mut model_cost = 0.0;
        for (id, m) in &mut models {
            m.cost = prices.model(id).map(|p| p.cost(&m.tokens));
            match m.cost {
                Some(c) => model_cost += c,
                None => unpriced_models.push(id.clone()),
            }
        }
        let count = |o: Outcome| by_outcome.get(o.as_str()).copied().unwrap_or(0);
        let tickets = records.len() as u64;
        let resolutions = count(Outcome::Answered);
        let escalations =
            count(Outcome::Escalated) + count(Outcome::Forwarded) + count(Outcome::DeadLettered);
        let days = ((until - since).num_seconds().max(0) as f64 / 86_400.0).max(1.0 / 24.0);
        let share = |n: u64| {
            if tickets == 0 {
                0.0
            } else {
                n as f64 / tickets as f64
            }
        };
        // The metrics these tickets sent: one per outcome and reason seen,
        // and the three model metrics.
        let mut metric_shares: Vec<f64> = by_outcome.values().map(|n| share(*n)).collect();
        metric_shares.extend(by_reason.values().map(|n| share(*n)));
        let with_model = records.iter().filter(|r| r.usage.calls > 0).count() as u64;
        metric_shares.extend([share(with_model); 3]);
        let traffic = Traffic {
            conversations: conversations.len() as f64,
            tickets: tickets as f64,
            polls: tickets as f64 * POLLS_PER_TICKET,
            escalations: escalations as f64,
            model_seconds: model_ms as f64 / 1000.0,
            metric_shares,
            days,
        };
        let deployment = &pricing.deployment;
        let fixed_cost = infra(
            &Traffic {
                days,
                ..Traffic::default()
            },
            &prices.infra,
            deployment,
        )
        .total();
        let infra = infra(&traffic, &prices.infra, deployment);
        let total_cost = model_cost + infra.total();
        let per_resolution = |v: f64| {
            if resolutions > 0 {
                v / resolutions as f64
            } else {
                0.0
            }
        };
        latencies.sort_by(f64::total_cmp);
        Self {
            since,
            until,
            tickets,
            conversations: conversations.len() as u64,
            resolutions,
            escalations,
            resolution_rate: share(resolutions),
            latency: Percentiles {
                p50_ms: nearest_rank(&latencies, 0.50),
                p95_ms: nearest_rank(&latencies, 0.95),
            },
            by_outcome,
            by_reason,
            tokens,
            model_calls: calls,
            action_calls,
            action_ms,
            models,
            model_cost,
            unpriced_models,
            total_cost,
            fixed_cost,
            cost_per_resolution: per_resolution(total_cost),
            marginal_cost_per_resolution: per_resolution(total_cost - fixed_cost),
            infra,
        }
    }

    /// The summary as a table for the terminal.
    pub fn render(&self) -> String {
        let mut s = format!(
            "tickets finished from {} to {}\n\n",
            self.since.format("%Y-%m-%d %H:%M UTC"),
            self.until.format("%Y-%m-%d %H:%M UTC")
        );
        let pct = |n: u64| {
            if self.tickets == 0 {
                0.0
            } else {
                100.0 * n as f64 / self.tickets as f64
            }
        };
        s += &format!(
            "tickets              {:>10}   in {} conversations\n",
            self.tickets, self.conversations
        );
        s += &format!(
            "  resolutions        {:>10}   {:.1} % (answered by the bot)\n",
            self.resolutions,
            pct(self.resolutions)
        );
        s += &format!(
            "  escalations        {:>10}   {:.1} %\n",
            self.escalations,
            pct(self.escalations)
        );
        for (outcome, n) in &self.by_outcome {
            s += &format!("    outcome {outcome:<18} {n:>6}\n");
        }
        for (reason, n) in &self.by_reason {
            s += &format!("    reason  {reason:<18} {n:>6}\n");
        }
        s += &format!(
            "latency              p50 {:.0} ms, p95 {:.0} ms (accepted → finished)\n",
            self.latency.p50_ms, self.latency.p95_ms
        );
        s += &format!(
            "tokens               input {}, output {}, cache read {}, cache write {} ({} model calls)\n",
            self.tokens.input,
            self.tokens.output,
            self.tokens.cache_read,
            self.tokens.cache_write,
            self.model_calls
        );
        if self.action_calls > 0 {
            s += &format!(
                "actions              {} calls, {} ms waited\n",
                self.action_calls, self.action_ms
            );
        }
        s += &format!("model cost           {}\n", dollars(self.model_cost));
        for (id, m) in &self.models {
            let cost = m.cost.map_or("not in the price table".into(), dollars);
            s += &format!("    {id:<36} {cost} ({} calls)\n", m.calls);
        }
        if self.models.is_empty() {
            s += "    no model calls (extractive generator)\n";
        }
        let i = &self.infra;
        s += &format!("infra (AWS estimate) {}\n", dollars(self.infra.total()));
        for (name, v) in [
            ("Lambda", i.lambda),
            ("HTTP API", i.http_api),
            ("SQS", i.sqs),
            ("DynamoDB requests", i.dynamodb_requests),
            ("DynamoDB storage", i.dynamodb_storage),
            ("SNS", i.sns),
            ("CloudWatch", i.cloudwatch),
            ("Secrets Manager", i.secrets),
        ] {
            s += &format!("    {name:<36} {}\n", dollars(v));
        }
        s += &format!(
            "total                {}   of which fixed monthly costs for the period {}\n",
            dollars(self.total_cost),
            dollars(self.fixed_cost)
        );
        s += &format!(
            "cost per resolution  {}   without the fixed costs {}   (Intercom Fin ${FIN_PER_RESOLUTION:.2}, Zendesk ~${ZENDESK_PER_RESOLUTION:.2})\n",
            dollars(self.cost_per_resolution),
            dollars(self.marginal_cost_per_resolution)
        );
        s += "\nThe infrastructure is what this traffic would cost on AWS at list prices, \
              assuming 15 widget polls a ticket, with the period's share of the fixed monthly costs.\n";
        if !self.unpriced_models.is_empty() {
            s += &format!(
                "Not priced (add them to [prices.models]): {}\n",
                self.unpriced_models.join(", ")
            );
        }
        s
    }
}

/// Renders estimates as the README's table.
pub fn render_estimates(rows: &[Estimate]) -> String {
    let mut s = String::from(
        "conversations/month  model        model $     infra $     total $   $/resolution   Intercom Fin      Zendesk\n",
    );
    for e in rows {
        s += &format!(
            "{:>19}  {:<10} {:>9.2} {:>11.2} {:>11.2} {:>14.5} {:>14.0} {:>12.0}\n",
            thousands(e.conversations as u64),
            e.model,
            e.model_cost,
            e.infra.total(),
            e.total,
            e.per_resolution,
            e.intercom_fin,
            e.zendesk
        );
    }
    s
}

/// The README's table: each model's monthly total at 500, 5,000 and
/// 50,000 conversations beside what per-resolution pricing would charge.
pub fn markdown_table(prices: &Prices, d: &Deployment) -> String {
    let w = Workload::default();
    let mut s = String::from("| conversations a month |");
    for m in &prices.models {
        s += &format!(" {} |", m.name);
    }
    s += " Intercom Fin ($0.99 / resolution) | Zendesk (~$1.50 / resolution) |\n|---|";
    s += &"---|".repeat(prices.models.len() + 2);
    s.push('\n');
    for n in [500.0, 5_000.0, 50_000.0] {
        let rows: Vec<Estimate> = prices
            .models
            .iter()
            .map(|m| estimate(n, m, &w, &prices.infra, d))
            .collect();
        s += &format!("| {} |", thousands(n as u64));
        for e in &rows {
            s += &format!(" ${:.2} |", e.total);
        }
        let first = &rows[0];
        s += &format!(
            " ${} | ${} |\n",
            thousands(first.intercom_fin.round() as u64),
            thousands(first.zendesk.round() as u64)
        );
    }
    s
}

/// What [`estimate`] assumes, for the terminal.
pub fn describe_assumptions(w: &Workload, d: &Deployment) -> String {
    format!(
        "Assumed per conversation: {} customer messages, {} widget polls; {:.0} % of messages reach the model \
         ({} input and {} output tokens, {} s a call); {:.0} % of conversations resolved without a person.\n\
         Deployed as infra/template.yaml: API {} MB × {} ms a request, worker {} MB × ({} ms + model time) a ticket; \
         {} DynamoDB writes and {} reads a ticket, {} reads a poll; ~{} KB stored a conversation for {} days \
         with point-in-time recovery; {} from the worker; two secrets, one alarm, the event source's idle polling.\n\
         List prices, us-east-1, arm64, November 2026, no free tier (`[prices]` in the configuration).\n",
        w.tickets_per_conversation,
        w.polls_per_conversation,
        w.model_share * 100.0,
        w.input_tokens,
        w.output_tokens,
        w.model_seconds,
        w.resolved_share * 100.0,
        d.api_memory_gb * 1024.0,
        d.api_seconds * 1000.0,
        d.worker_memory_gb * 1024.0,
        d.worker_seconds * 1000.0,
        d.writes_per_ticket,
        d.reads_per_ticket,
        d.reads_per_poll,
        d.bytes_per_conversation / 1000.0,
        d.retention_days,
        if d.emf_metrics {
            "EMF metrics"
        } else {
            "no EMF metrics"
        },
    )
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Dollars with enough digits to show sub-cent amounts.
pub fn dollars(v: f64) -> String {
    if v == 0.0 {
        "$0".into()
    } else if v.abs() >= 1.0 {
        format!("${v:.2}")
    } else if v.abs() >= 0.01 {
        format!("${v:.4}")
    } else {
        format!("${v:.6}")
    }
}

/// The default period of `deskhand cost` and `GET /v1/stats`, days.
pub const DEFAULT_DAYS: i64 = 30;

/// Parses a period start: a date (`2026-11-01`, midnight UTC) or an RFC 3339
/// time; `None` means [`DEFAULT_DAYS`] ago.
pub fn parse_since(since: Option<&str>, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let Some(s) = since.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(now - chrono::Duration::days(DEFAULT_DAYS));
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("`{s}` is neither a date (2026-11-01) nor an RFC 3339 time"))
}

fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_find_their_prices() {
        let p = Prices::default();
        assert_eq!(
            p.model("us.amazon.nova-lite-v1:0").unwrap().name,
            "Nova Lite"
        );
        assert_eq!(p.model("amazon.nova-pro-v1:0").unwrap().name, "Nova Pro");
        assert!(p.model("anthropic.claude-3-haiku").is_none());
        assert_eq!(p.model_named("micro").unwrap().name, "Nova Micro");
        let lite = p.model_named("lite").unwrap();
        let t = TokenCounts {
            input: 1_000_000,
            output: 1_000_000,
            cache_read: 1_000_000,
            cache_write: 0,
        };
        assert!((lite.cost(&t) - (0.06 + 0.24 + 0.015)).abs() < 1e-12);
    }

    #[test]
    fn thousands_and_dollars() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(500), "500");
        assert_eq!(thousands(50_000), "50,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(dollars(1.234), "$1.23");
        assert_eq!(dollars(0.0123), "$0.0123");
        assert_eq!(dollars(0.000_123), "$0.000123");
    }
}
