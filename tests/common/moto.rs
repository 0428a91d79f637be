//! AWS resources on moto server, created from `infra/template.yaml`'s own
//! definitions so the code under test and the deployed infrastructure
//! cannot drift. `scripts/test` starts moto and exports its endpoint in
//! `MOTO_ENDPOINT`; without it these tests fail (never skip).

use std::collections::HashMap;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_yaml::Value;

/// The template, parsed (CloudFormation tags kept as tagged values).
pub fn template() -> Value {
    let path = super::root().join("infra/template.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn properties<'a>(t: &'a Value, resource: &str) -> &'a Value {
    &t["Resources"][resource]["Properties"]
}

/// A worker environment variable from the template's `Globals`.
pub fn global_env(name: &str) -> String {
    let t = template();
    match &t["Globals"]["Function"]["Environment"]["Variables"][name] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("{name} is not a literal in the template: {other:?}"),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn key_element(k: &Value) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(k["AttributeName"].as_str().unwrap())
        .key_type(KeyType::from(k["KeyType"].as_str().unwrap()))
        .build()
        .unwrap()
}

/// A connection to the test's moto server.
#[derive(Clone)]
pub struct Moto {
    pub endpoint: String,
    pub sdk: SdkConfig,
    /// Makes resource names unique per test, so tests share one server.
    pub prefix: String,
}

impl Moto {
    pub async fn connect() -> Self {
        let endpoint = std::env::var("MOTO_ENDPOINT").unwrap_or_else(|_| {
            panic!("MOTO_ENDPOINT is not set: run the AWS tests through scripts/test, which starts moto server")
        });
        // moto accepts any credentials; the SDK needs some.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        }
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .load()
            .await;
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        Self {
            endpoint,
            sdk,
            prefix,
        }
    }

    /// The settings that point deskhand at these resources.
    pub fn aws_settings(
        &self,
        table: &str,
        queue_url: &str,
        dlq_url: &str,
        topic_arn: &str,
    ) -> deskhand::aws::AwsSettings {
        deskhand::aws::AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(self.endpoint.clone()),
            table: Some(table.into()),
            queue_url: Some(queue_url.into()),
            dlq_url: Some(dlq_url.into()),
            topic_arn: Some(topic_arn.into()),
            retention_days: 90,
            ..Default::default()
        }
    }

    /// A DynamoDB store over a new `Table` (one-day retention).
    pub async fn dynamo_store(&self) -> deskhand::store::DynamoStore {
        let table = self.table().await;
        self.store_on(&table)
    }

    /// A DynamoDB store over `table` (one-day retention).
    pub fn store_on(&self, table: &str) -> deskhand::store::DynamoStore {
        deskhand::store::DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            table,
            std::time::Duration::from_secs(86_400),
        )
    }

    /// The `Table` resource.
    pub async fn table(&self) -> String {
        let t = template();
        let p = properties(&t, "Table");
        let client = aws_sdk_dynamodb::Client::new(&self.sdk);
        let name = format!("{}-table", self.prefix);
        let mut create = client.create_table().table_name(&name);
        assert_eq!(p["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
        create = create.billing_mode(BillingMode::PayPerRequest);
        for a in p["AttributeDefinitions"].as_sequence().unwrap() {
            create = create.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(a["AttributeName"].as_str().unwrap())
                    .attribute_type(ScalarAttributeType::from(
                        a["AttributeType"].as_str().unwrap(),
                    ))
                    .build()
                    .unwrap(),
            );
        }
        for k in p["KeySchema"].as_sequence().unwrap() {
            create = create.key_schema(key_element(k));
        }
        for g in p["GlobalSecondaryIndexes"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            let mut projection = Projection::builder().projection_type(ProjectionType::from(
                g["Projection"]["ProjectionType"].as_str().unwrap(),
            ));
            for a in g["Projection"]["NonKeyAttributes"]
                .as_sequence()
                .into_iter()
                .flatten()
            {
                projection = projection.non_key_attributes(a.as_str().unwrap());
            }
            let mut index = GlobalSecondaryIndex::builder()
                .index_name(g["IndexName"].as_str().unwrap())
                .projection(projection.build());
            for k in g["KeySchema"].as_sequence().unwrap() {
                index = index.key_schema(key_element(k));
            }
            create = create.global_secondary_indexes(index.build().unwrap());
        }
        if let Some(view) = p["StreamSpecification"]["StreamViewType"].as_str() {
            create = create.stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::from(view))
                    .build()
                    .unwrap(),
            );
        }
        create.send().await.expect("CreateTable on moto");
        let ttl = &p["TimeToLiveSpecification"];
        client
            .update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(ttl["AttributeName"].as_str().unwrap())
                    .enabled(ttl["Enabled"].as_bool().unwrap())
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("UpdateTimeToLive on moto");
        name
    }

    async fn queue(&self, resource: &str, redrive_to: Option<&str>) -> String {
        let t = template();
        let p = properties(&t, resource).as_mapping().unwrap().clone();
        let client = aws_sdk_sqs::Client::new(&self.sdk);
        let fifo = p.get("FifoQueue").and_then(Value::as_bool) == Some(true);
        let name = format!(
            "{}-{}{}",
            self.prefix,
            resource,
            if fifo { ".fifo" } else { "" }
        );
        let mut attrs: HashMap<QueueAttributeName, String> = HashMap::new();
        for (k, v) in &p {
            let key = k.as_str().unwrap();
            if key == "RedrivePolicy" {
                let arn = redrive_to.expect("redrive target");
                let max = scalar(&v["maxReceiveCount"]).unwrap();
                attrs.insert(
                    QueueAttributeName::RedrivePolicy,
                    format!("{{\"deadLetterTargetArn\":\"{arn}\",\"maxReceiveCount\":{max}}}"),
                );
            } else if let Some(value) = scalar(v) {
                attrs.insert(QueueAttributeName::from(key), value);
            }
        }
        let out = client
            .create_queue()
            .queue_name(&name)
            .set_attributes(Some(attrs))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "CreateQueue {resource}: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )
            });
        out.queue_url().unwrap().to_owned()
    }

    /// The `TicketQueue` and its `DeadLetterQueue`: (queue URL, DLQ URL).
    pub async fn queues(&self) -> (String, String) {
        let dlq = self.queue("DeadLetterQueue", None).await;
        let arn = self.queue_arn(&dlq).await;
        let queue = self.queue("TicketQueue", Some(&arn)).await;
        (queue, dlq)
    }

    pub async fn queue_arn(&self, url: &str) -> String {
        aws_sdk_sqs::Client::new(&self.sdk)
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .unwrap()[&QueueAttributeName::QueueArn]
            .clone()
    }

    /// The `EscalationTopic`, and a standard queue subscribed to it (with an
    /// optional filter policy), as an agents' tool would subscribe.
    pub async fn topic_with_subscriber(&self, filter_policy: Option<&str>) -> (String, String) {
        let sns = aws_sdk_sns::Client::new(&self.sdk);
        let topic = sns
            .create_topic()
            .name(format!("{}-escalations", self.prefix))
            .send()
            .await
            .unwrap()
            .topic_arn()
            .unwrap()
            .to_owned();
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let inbox = sqs
            .create_queue()
            .queue_name(format!("{}-agent-inbox", self.prefix))
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_owned();
        let mut sub = sns
            .subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(self.queue_arn(&inbox).await);
        if let Some(policy) = filter_policy {
            sub = sub.attributes("FilterPolicy", policy);
        }
        sub.send().await.unwrap();
        (topic, inbox)
    }

    /// Every SNS notification delivered to `inbox` so far, as JSON envelopes.
    pub async fn notifications(&self, inbox: &str) -> Vec<serde_json::Value> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let mut out = Vec::new();
        loop {
            let got = sqs
                .receive_message()
                .queue_url(inbox)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            if got.messages().is_empty() {
                return out;
            }
            for m in got.messages() {
                out.push(serde_json::from_str(m.body().unwrap()).unwrap());
                sqs.delete_message()
                    .queue_url(inbox)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// Messages visible on `url` right now.
    pub async fn depth(&self, url: &str) -> u64 {
        aws_sdk_sqs::Client::new(&self.sdk)
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap()
            .attributes()
            .unwrap()
            .values()
            .map(|v| v.parse::<u64>().unwrap())
            .sum()
    }
}

#[allow(unused_imports)] // used by some test binaries
pub use deskhand::queue::sqs::sqs_event;
