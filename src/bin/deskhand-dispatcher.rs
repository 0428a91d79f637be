//! The dispatcher Lambda: DynamoDB Stream and a schedule → outbox deliveries.

use deskhand::lambda::{AwsRuntime, dispatcher};
use lambda_runtime::{Error, LambdaEvent, service_fn};

// One thread: a Lambda has about one vCPU at these memory sizes, and
// the work is waiting on AWS; a multi-thread runtime only adds
// cross-thread wake-ups (kernel time) per call (`deskhand bench --worker`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let runtime = AwsRuntime::init().await;
    let d = runtime.dispatcher().expect("the dispatcher can be wired");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let d = d.clone();
        async move { Ok::<_, Error>(dispatcher::handle(&d, event.payload).await?) }
    }))
    .await
}
