//! The tracing subscriber: human-readable locally, JSON on Lambda (or with
//! `DESKHAND_LOG_FORMAT=json`). Level from `DESKHAND_LOG` or `RUST_LOG`.

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
