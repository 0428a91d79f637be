//! The tracing subscriber: human-readable locally, JSON on Lambda (or with
//! `DESKHAND_LOG_FORMAT=json`). Level from `DESKHAND_LOG` or `RUST_LOG`.
//! Every line about a ticket carries its `ticket_id` and `conversation_id`
//! (from the span around it: [`record_span`] for a queue record, the
//! pipeline's own inside). Metrics are in [`crate::metrics`].

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; call once, first thing.
pub fn init() {
    let filter = std::env::var("DESKHAND_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| {
            "info,tantivy=warn,aws_config=warn,aws_smithy_runtime=warn,hyper=warn".into()
        });
    let json = std::env::var("DESKHAND_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"))
        || std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}

/// The span around handling one queue record, carrying the ticket and
/// conversation ids of its envelope when they can be read (an unreadable
/// record gets an empty span and is reported as such).
pub fn record_span(body: &str) -> tracing::Span {
    #[derive(serde::Deserialize)]
    struct Ids {
        ticket_id: Option<String>,
        conversation_id: Option<String>,
    }
    let ids = serde_json::from_str::<Ids>(body).ok();
    let (ticket_id, conversation_id) = ids
        .map(|i| (i.ticket_id, i.conversation_id))
        .unwrap_or_default();
    tracing::info_span!(
        "record",
        ticket_id = ticket_id.as_deref().unwrap_or(""),
        conversation_id = conversation_id.as_deref().unwrap_or("")
    )
}
