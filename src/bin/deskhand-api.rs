//! The HTTP API Lambda: the same axum Router as `deskhand serve`, behind
//! API Gateway (HTTP API) or a Function URL.

use deskhand::lambda::AwsRuntime;

// One thread: a Lambda has about one vCPU at these memory sizes, and
// the work is waiting on AWS; a multi-thread runtime only adds
// cross-thread wake-ups (kernel time) per call (`deskhand bench --worker`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let runtime = AwsRuntime::init().await;
    let router = runtime.router().expect("the API can be wired");
    lambda_http::run(router).await
}
