//! The worker Lambda: SQS FIFO event source → pipeline → batch item
//! failures, within the invocation's deadline.

use aws_lambda_events::event::sqs::SqsEvent;
use deskhand::lambda::{AwsRuntime, worker};
use lambda_runtime::{Error, LambdaEvent, service_fn};

// One thread: a Lambda has about one vCPU at these memory sizes, and
// the work is waiting on AWS; a multi-thread runtime only adds
// cross-thread wake-ups (kernel time) per call (`deskhand bench --worker`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let runtime = AwsRuntime::init().await;
    let ctx = runtime.worker().expect("the worker can be wired");
    runtime.warm_up(&ctx).await;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let ctx = ctx.clone();
        async move { Ok::<_, Error>(worker::handle_lambda(&ctx, event).await) }
    }))
    .await
}
