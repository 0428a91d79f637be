//! The HTTP API Lambda: the same axum Router as `deskhand serve`, behind
//! API Gateway (HTTP API) or a Function URL.

use deskhand::lambda::AwsRuntime;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let runtime = AwsRuntime::init().await;
    let router = runtime.router().expect("the API can be wired");
    lambda_http::run(router).await
}
