//! The HTTP API Lambda: the same axum Router as `deskhand serve`, behind
//! API Gateway (HTTP API) or a Function URL.

use deskhand::config::Config;
use deskhand::lambda::AwsRuntime;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    deskhand::telemetry::init();
    let config = Config::load(None, &serde_json::Value::Null).expect("configuration is valid");
    let runtime = AwsRuntime::from_config(config)
        .await
        .expect("AWS clients can be built");
    let router = runtime.router().expect("the API can be wired");
    lambda_http::run(router).await
}
