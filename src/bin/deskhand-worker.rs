//! The worker Lambda: SQS FIFO event source → pipeline → batch item failures.

use aws_lambda_events::event::sqs::SqsEvent;
use deskhand::config::Config;
use deskhand::lambda::{AwsRuntime, worker};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    deskhand::telemetry::init();
    let config = Config::load(None, &serde_json::Value::Null).expect("configuration is valid");
    let runtime = AwsRuntime::from_config(config)
        .await
        .expect("AWS clients can be built");
    let ctx = runtime.worker().expect("the worker can be wired");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let ctx = ctx.clone();
        async move { Ok::<_, Error>(worker::handle(&ctx, event.payload).await) }
    }))
    .await
}
