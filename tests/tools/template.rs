//! Checks of `infra/template.yaml` that a regression in the template
//! fails (issue #14: the worker's time budget, secrets out of the
//! environment, least-privilege IAM, separate throttles, SES mail's
//! dead-letter queue). cfn-lint checks the syntax; these check the
//! arithmetic and the policies.

use crate::common;

use common::moto::template;
use serde_yaml::Value;

fn resource<'a>(t: &'a Value, name: &str) -> &'a Value {
    let r = &t["Resources"][name];
    assert!(!r.is_null(), "no resource {name}");
    r
}

fn env<'a>(t: &'a Value, function: &str) -> &'a Value {
    &resource(t, function)["Properties"]["Environment"]["Variables"]
}

/// A literal number (or numeric string) in the template.
fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{s:?} is not a number")),
        other => panic!("not a literal number: {other:?}"),
    }
}

/// The value of an `!If [cond, a, b]` for the branch taken when `cond`
/// holds, or the value itself.
fn when_true(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) if t.tag == "!If" => &t.value[1],
        other => other,
    }
}

fn tag<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Tagged(t) if t.tag == name => Some(&t.value),
        _ => None,
    }
}

/// The functions' policy statements, with `!If` branches taken.
fn statements<'a>(t: &'a Value, function: &str) -> Vec<&'a Value> {
    resource(t, function)["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|p| p["Statement"].as_sequence().unwrap())
        .map(when_true)
        .filter(|s| s.is_mapping())
        .collect()
}

fn actions(s: &Value) -> Vec<String> {
    match &s["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Sequence(a) => a.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
        other => panic!("Action {other:?}"),
    }
}

fn resources(s: &Value) -> Vec<&Value> {
    match &s["Resource"] {
        Value::Sequence(r) => r.iter().map(when_true).collect(),
        other => vec![other],
    }
}

/// A resource as text: a `!Sub` string, `!Ref X` as `Ref:X`, `!GetAtt` as
/// `GetAtt:X`.
fn text(r: &Value) -> String {
    if let Some(v) = tag(r, "!Sub") {
        return v.as_str().unwrap().to_owned();
    }
    if let Some(v) = tag(r, "!Ref") {
        return format!("Ref:{}", v.as_str().unwrap());
    }
    if let Some(v) = tag(r, "!GetAtt") {
        return format!("GetAtt:{}", v.as_str().unwrap());
    }
    r.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{r:?}"))
}

fn functions(t: &Value) -> Vec<String> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(k, _)| k.as_str().unwrap().to_owned())
        .collect()
}

const CONNECT_SECS: f64 = 3.1;

/// Issue #14 (6): the worker's time budget adds up. One record at worst is
/// the KB call and the model call at their caps plus the reserve; the
/// function's timeout holds two of them with the reserve (so every
/// conversation progresses in every invocation), the queue's visibility is
/// at least 6x the timeout, the ticket lease covers an invocation, SDK
/// calls are capped within the reserve, and the worker gives up before the
/// redrive policy. The old template (timeout 30 s against a 43 s model
/// call) fails this.
#[test]
fn the_worker_time_budget_adds_up() {
    let t = template();
    let worker = &resource(&t, "WorkerFunction")["Properties"];
    let timeout = number(&worker["Timeout"]);
    let e = env(&t, "WorkerFunction");
    let model = CONNECT_SECS + number(&e["DESKHAND_GENERATOR__BEDROCK__READ_TIMEOUT_SECS"]);
    let kb = CONNECT_SECS
        + number(when_true(
            &e["DESKHAND_RETRIEVER__BEDROCK_KB__READ_TIMEOUT_SECS"],
        ));
    let reserve = number(&e["DESKHAND_AWS__WORKER_RESERVE_SECS"]);
    let record = model + kb + reserve;
    assert!(
        timeout >= 2.0 * record + reserve,
        "timeout {timeout} s does not hold two worst-case records ({record} s each) and the reserve ({reserve} s)"
    );
    assert!(timeout <= 900.0, "Lambda's limit is 900 s");
    assert_eq!(number(&e["DESKHAND_GENERATOR__BEDROCK__MAX_ATTEMPTS"]), 1.0);
    assert_eq!(
        number(when_true(
            &e["DESKHAND_RETRIEVER__BEDROCK_KB__MAX_ATTEMPTS"]
        )),
        1.0
    );
    assert!(number(&e["DESKHAND_AWS__OPERATION_TIMEOUT_SECS"]) <= reserve);
    // The ticket lease: a record cannot outlive its invocation.
    assert!(number(&e["DESKHAND_QUEUE__VISIBILITY_TIMEOUT_SECS"]) >= timeout);

    let queue = &resource(&t, "TicketQueue")["Properties"];
    assert!(
        number(&queue["VisibilityTimeout"]) >= 6.0 * timeout,
        "VisibilityTimeout must be at least 6x the worker's timeout"
    );
    let max_receives = number(
        &t["Globals"]["Function"]["Environment"]["Variables"]["DESKHAND_QUEUE__MAX_RECEIVES"],
    );
    assert!(number(&queue["RedrivePolicy"]["maxReceiveCount"]) > max_receives);

    let source = &worker["Events"]["Tickets"]["Properties"];
    assert!(number(&source["BatchSize"]) <= 10.0);
    assert_eq!(
        source["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures"),
        "records not started must be reportable one by one"
    );
}

/// Issue #14 (8): no function's environment holds a secret. Before, the
/// token secret and agent key were resolved into environment variables
/// (`{{resolve:secretsmanager}}`), which `lambda:GetFunctionConfiguration`
/// shows to anyone allowed to call it; with them any conversation token
/// can be forged. Now only secret ARNs are there, and each function may
/// read exactly the secrets it names.
#[test]
fn no_secret_is_in_a_function_environment() {
    let raw = std::fs::read_to_string(common::root().join("infra/template.yaml")).unwrap();
    assert!(
        !raw.contains("{{resolve:"),
        "a dynamic reference puts a secret value into the template's output"
    );
    let t = template();
    for name in [
        "DESKHAND_SECRET",
        "DESKHAND_AGENT_KEY",
        "DESKHAND_ADMIN_KEY",
    ] {
        assert!(
            t["Globals"]["Function"]["Environment"]["Variables"][name].is_null(),
            "{name} in Globals"
        );
    }
    let mut named = 0;
    for f in functions(&t) {
        let vars = env(&t, &f);
        for name in [
            "DESKHAND_SECRET",
            "DESKHAND_AGENT_KEY",
            "DESKHAND_ADMIN_KEY",
        ] {
            assert!(vars[name].is_null(), "{f} has {name} in its environment");
        }
        let mut ids: Vec<String> = vars
            .as_mapping()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str().unwrap().ends_with("_SECRET_ID"))
            .map(|(_, v)| text(when_true(v)))
            .collect();
        ids.sort();
        let mut readable: Vec<String> = statements(&t, &f)
            .into_iter()
            .filter(|s| actions(s).iter().any(|a| a.starts_with("secretsmanager:")))
            .inspect(|s| assert_eq!(actions(s), ["secretsmanager:GetSecretValue"], "{f}"))
            .flat_map(resources)
            .map(text)
            .collect();
        readable.sort();
        assert_eq!(readable, ids, "{f} may read other secrets than it names");
        named += ids.len();
    }
    assert_eq!(
        named, 6,
        "API: token and the identity secret; agent function: token, agent key and the agents; worker: the actions' secret"
    );
    assert_eq!(
        text(&env(&t, "AgentFunction")["DESKHAND_AWS__AGENT_KEY_SECRET_ID"]),
        "Ref:AgentKeySecret"
    );
}

/// Issue #14 (15): the worker may invoke only the configured model (or
/// the foundation models behind the configured inference profile, when
/// called through it), and the dispatcher may send only as the configured
/// From identity. Before: `foundation-model/*` in every Region without a
/// condition, and `identity/*`.
#[test]
fn iam_is_scoped_to_the_configured_model_and_sender() {
    let t = template();
    let profile = "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:inference-profile/${ModelId}";
    for f in functions(&t) {
        for s in statements(&t, &f) {
            let acts = actions(s);
            for r in resources(s) {
                let r = text(r);
                assert!(r != "*", "{f}: {acts:?} on every resource");
                if acts.iter().any(|a| a.starts_with("bedrock:InvokeModel")) {
                    if r.ends_with("foundation-model/*") {
                        let cond = &s["Condition"]["StringEquals"]["bedrock:InferenceProfileArn"];
                        assert_eq!(
                            text(cond),
                            profile,
                            "{f}: every foundation model, not only through the profile"
                        );
                    } else {
                        assert!(
                            r == profile
                                || r == "arn:${AWS::Partition}:bedrock:${AWS::Region}::foundation-model/${ModelId}",
                            "{f}: InvokeModel on {r}"
                        );
                    }
                }
                if acts.iter().any(|a| a.starts_with("ses:")) {
                    assert!(
                        r.ends_with(":identity/${ReplyFromIdentity}")
                            || r.ends_with(":configuration-set/${ReplyConfigurationSet}"),
                        "{f}: SES on {r}"
                    );
                }
            }
        }
    }
    // A model id that is a wildcard (or an ARN) would widen the policy
    // again; the parameter refuses it.
    let pattern = regex::Regex::new(
        t["Parameters"]["ModelId"]["AllowedPattern"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    for ok in [
        "amazon.nova-lite-v1:0",
        "us.amazon.nova-lite-v1:0",
        "eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
    ] {
        assert!(pattern.is_match(ok), "{ok}");
    }
    for bad in [
        "*",
        "amazon.*",
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0",
    ] {
        assert!(!pattern.is_match(bad), "{bad}");
    }
    // The SES statement exists only with a From address, and a From
    // address needs its identity.
    let rule = &t["Rules"]["ReplyFromNeedsIdentity"]["Assertions"][0]["Assert"];
    assert!(format!("{rule:?}").contains("ReplyFromIdentity"));
}

/// Issue #14 (7): the widget and the inbound webhooks each have their own
/// route-level throttle, so a flood on one cannot starve the other; the
/// routes exist in the API (SAM merges event RouteSettings into the stage).
#[test]
fn widget_and_webhooks_have_separate_throttles() {
    let t = template();
    let events = &resource(&t, "ApiFunction")["Properties"]["Events"];
    let throttle = |path: &str, method: &str| -> (String, String) {
        let e = events
            .as_mapping()
            .unwrap()
            .values()
            .find(|e| {
                e["Properties"]["Path"].as_str() == Some(path)
                    && e["Properties"]["Method"].as_str() == Some(method)
            })
            .unwrap_or_else(|| panic!("no route {method} {path}"));
        let s = &e["Properties"]["RouteSettings"];
        (
            text(&s["ThrottlingRateLimit"]),
            text(&s["ThrottlingBurstLimit"]),
        )
    };
    let widget = (
        "Ref:WidgetRateLimit".to_owned(),
        "Ref:WidgetBurstLimit".to_owned(),
    );
    let webhooks = (
        "Ref:WebhookRateLimit".to_owned(),
        "Ref:WebhookBurstLimit".to_owned(),
    );
    assert_eq!(throttle("/v1/conversations", "POST"), widget);
    assert_eq!(throttle("/v1/conversations/{proxy+}", "ANY"), widget);
    assert_eq!(throttle("/widget.js", "GET"), widget);
    assert_eq!(throttle("/v1/inbound/{proxy+}", "POST"), webhooks);
    assert_eq!(throttle("/v1/inbound/email/ses", "POST"), webhooks);
    for p in [
        "WidgetRateLimit",
        "WidgetBurstLimit",
        "WebhookRateLimit",
        "WebhookBurstLimit",
    ] {
        assert!(!t["Parameters"][p]["Default"].is_null(), "{p}");
    }
    // WAF cannot be associated with an HTTP API: none is pretended.
    assert!(
        t["Resources"]
            .as_mapping()
            .unwrap()
            .values()
            .all(|r| r["Type"].as_str() != Some("AWS::WAFv2::WebACLAssociation")),
        "a web ACL association with an HTTP API fails at deploy time"
    );
}

/// Issue #14 (7): SES mail over SNS is not lost in a flood: the HTTPS
/// subscription retries longer than SNS's default minute, but within the
/// API's replay window (later deliveries would be refused as stale), is
/// throttled below its route's limit, and whatever still fails goes to a
/// dead-letter queue that SNS may write to and whose alarm tells a person.
#[test]
fn ses_mail_over_sns_has_retries_a_dead_letter_queue_and_an_alarm() {
    let t = template();
    let sub = &resource(&t, "InboundEmailSubscription")["Properties"];
    assert_eq!(sub["Protocol"].as_str(), Some("https"));
    assert!(text(&sub["Endpoint"]).ends_with("/v1/inbound/email/ses"));
    assert_eq!(
        text(&sub["RedrivePolicy"]["deadLetterTargetArn"]),
        "GetAtt:InboundEmailDeadLetterQueue.Arn"
    );
    let retry = &sub["DeliveryPolicy"]["healthyRetryPolicy"];
    let n = number(&retry["numRetries"]);
    let (min, max) = (
        number(&retry["minDelayTarget"]),
        number(&retry["maxDelayTarget"]),
    );
    // No-delay retries take no time; min-delay ones `min` each; the rest
    // back off between `min` and `max`, the last ones at `max`.
    let at_min = number(&retry["numMinDelayRetries"]) * min;
    let rest = n - number(&retry["numNoDelayRetries"]) - number(&retry["numMinDelayRetries"]);
    let longest = at_min + rest * max;
    let shortest = at_min + rest * min + number(&retry["numMaxDelayRetries"]) * (max - min);
    let window = deskhand::ingest::InboundSettings::default().replay_window_secs as f64;
    assert!(shortest > 60.0, "retries end within SNS's default minute");
    assert!(
        longest < window,
        "retries run past the {window} s replay window: late deliveries are refused as stale"
    );
    let per_second = number(&sub["DeliveryPolicy"]["throttlePolicy"]["maxReceivesPerSecond"]);
    assert!(per_second <= number(&t["Parameters"]["WebhookRateLimit"]["Default"]));

    let policy = &resource(&t, "InboundEmailDeadLetterQueuePolicy")["Properties"]["PolicyDocument"]
        ["Statement"][0];
    assert_eq!(
        policy["Principal"]["Service"].as_str(),
        Some("sns.amazonaws.com")
    );
    assert_eq!(policy["Action"].as_str(), Some("sqs:SendMessage"));
    assert_eq!(
        text(&policy["Condition"]["ArnEquals"]["aws:SourceArn"]),
        "Ref:InboundEmailTopic"
    );
    let alarm = &resource(&t, "InboundEmailDeadLetterAlarm")["Properties"];
    assert_eq!(
        text(&alarm["Dimensions"][0]["Value"]),
        "GetAtt:InboundEmailDeadLetterQueue.QueueName"
    );
    assert_eq!(text(&alarm["AlarmActions"][0]), "Ref:EscalationTopic");
    // The API accepts the topic's messages.
    let topics = when_true(&env(&t, "ApiFunction")["DESKHAND_INBOUND__SES__TOPIC_ARNS"]);
    assert_eq!(text(topics), "[${InboundEmailTopic}]");
}

#[test]
fn the_published_kb_bucket_is_private_versioned_encrypted_and_read_only_to_the_worker() {
    let t = template();
    let b = &resource(&t, "KnowledgeBaseBucket")["Properties"];
    assert_eq!(b["VersioningConfiguration"]["Status"], "Enabled");
    let sse = &b["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        ["SSEAlgorithm"];
    assert!(sse == "AES256" || sse == "aws:kms", "{sse:?}");
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(
            b["PublicAccessBlockConfiguration"][flag],
            Value::Bool(true),
            "{flag}"
        );
    }
    // The worker follows the bucket's pointer...
    let bundle = text(when_true(
        &env(&t, "WorkerFunction")["DESKHAND_RETRIEVER__BUNDLE__S3"],
    ));
    assert_eq!(bundle, "s3://${KnowledgeBaseBucket}/kb");
    // ... and may only read it: every S3 action it has is a read, on the
    // bucket's `kb/` prefix.
    let s3: Vec<&Value> = statements(&t, "WorkerFunction")
        .into_iter()
        .filter(|s| actions(s).iter().any(|a| a.starts_with("s3:")))
        .collect();
    let granted: Vec<String> = s3.iter().flat_map(|s| actions(s)).collect();
    assert!(granted.contains(&"s3:GetObject".to_owned()), "{granted:?}");
    for a in &granted {
        assert!(
            a == "s3:GetObject" || a == "s3:ListBucket",
            "the worker may {a} on the KB bucket"
        );
    }
    for s in &s3 {
        assert_eq!(s["Effect"], "Allow");
        for r in resources(s) {
            let r = text(r);
            assert!(
                r == "${KnowledgeBaseBucket.Arn}/kb/*" || r == "GetAtt:KnowledgeBaseBucket.Arn",
                "S3 resource {r}"
            );
        }
        if actions(s).contains(&"s3:ListBucket".to_owned()) {
            assert_eq!(s["Condition"]["StringLike"]["s3:prefix"], "kb/*");
        }
    }
    // No other function reads or writes the bucket.
    for f in functions(&t) {
        if f == "WorkerFunction" {
            continue;
        }
        for s in statements(&t, &f) {
            assert!(
                !actions(s).iter().any(|a| a.starts_with("s3:")),
                "{f} has S3 access"
            );
        }
    }
}

/// The agent console is served by the agent function (the one with write
/// access to the table), which names the agents' secret and may read it,
/// and the query index the queue needs; the public API function neither
/// names nor reads it.
#[test]
fn the_console_runs_in_the_agent_function_with_the_agents_secret() {
    let t = template();
    let events = &resource(&t, "AgentFunction")["Properties"]["Events"];
    let paths: Vec<&str> = events
        .as_mapping()
        .unwrap()
        .values()
        .map(|e| e["Properties"]["Path"].as_str().unwrap())
        .collect();
    for p in [
        "/agent",
        "/agent/{proxy+}",
        "/v1/conversations/{id}/agent-replies",
    ] {
        assert!(
            paths.contains(&p),
            "{p} is not routed to the agent function: {paths:?}"
        );
    }
    let var = &env(&t, "AgentFunction")["DESKHAND_AWS__AGENTS_SECRET_ID"];
    assert_eq!(text(when_true(var)), "Ref:AgentsSecretArn");
    let reads = |f: &str| -> Vec<String> {
        statements(&t, f)
            .into_iter()
            .filter(|s| actions(s).iter().any(|a| a.starts_with("secretsmanager:")))
            .flat_map(resources)
            .map(text)
            .collect()
    };
    assert!(reads("AgentFunction").contains(&"Ref:AgentsSecretArn".to_owned()));
    assert!(env(&t, "ApiFunction")["DESKHAND_AWS__AGENTS_SECRET_ID"].is_null());
    assert!(!reads("ApiFunction").contains(&"Ref:AgentsSecretArn".to_owned()));
    let queries: Vec<String> = statements(&t, "AgentFunction")
        .into_iter()
        .filter(|s| actions(s).contains(&"dynamodb:Query".to_owned()))
        .flat_map(resources)
        .map(text)
        .collect();
    assert!(
        queries.iter().any(|r| r.ends_with("/index/by_done_day")),
        "{queries:?}"
    );
}
