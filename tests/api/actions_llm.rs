//! Actions as model tools: the OpenAI-compatible generator (function
//! calling against the chat-completions double) and the Bedrock generator
//! (the Converse tool-use loop against the Bedrock double, parsed by the
//! real SDK). The model asks for the action, deskhand calls the shop double
//! for the verified customer, and the model gets the exposed fields only.

use crate::actions_support;
use crate::common;

use actions_support::{Shop, TOKEN};
use common::bedrock_double::{BedrockDouble, Reply as BedrockReply, fake_aws_env};
use common::peers::{ModelServer, Reply, WebhookReceiver};
use common::{TestApp, with_role};
use deskhand::actions::identity::widget_user_hash;
use deskhand::config::{Config, GeneratorKind, WebhookFormat};
use deskhand::llm::bedrock::BedrockSettings;
use deskhand::llm::openai::OpenAiSettings;
use deskhand::secret::Secret;
use serde_json::{Value, json};

const SITE_SECRET: &str = "site-identity-secret-0123";

fn actions_toml(shop: &Shop) -> String {
    format!(
        r#"
[identity]
secret = "{SITE_SECRET}"
[action_secrets]
shop_token = "{TOKEN}"
[[actions]]
name = "order_status"
description = "Look up an order's status and tracking by order number"
when = "The customer asks where their order is, or about its delivery"
url = "{}/api/orders/{{order_number}}?email={{customer.email}}"
headers = {{ Authorization = "Bearer ${{secret:shop_token}}" }}
[actions.params.order_number]
pattern = '#?(\d{{4,10}})'
description = "The order number"
[actions.expose]
status = "/order/status"
tracking_url = "/order/tracking_url"
"#,
        shop.url()
    )
}

fn apply(c: &mut Config, shop: &Shop) {
    let parsed = Config::from_toml_str(&actions_toml(shop)).unwrap();
    c.identity = parsed.identity;
    c.actions = parsed.actions;
    c.action_secrets = parsed.action_secrets;
}

async fn ann(app: &TestApp) -> (String, String) {
    let res = app
        .http
        .post(app.url("/v1/conversations"))
        .json(&json!({"user": {"id": "u_ann", "email": "ann@example.com", "hash": widget_user_hash(SITE_SECRET, "u_ann", Some("ann@example.com"))}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    (
        v["conversation_id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

const ANSWER: &str = "Order #1001 is shipped. Track it here: https://track.example/1Z1001";

fn completion(message: Value) -> Reply {
    Reply::Status(
        200,
        json!({"id": "c", "object": "chat.completion", "model": "m",
               "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}],
               "usage": {"prompt_tokens": 100, "completion_tokens": 20}})
        .to_string(),
    )
}

fn function_call(id: &str, name: &str, args: Value) -> Value {
    json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}
    ]})
}

#[tokio::test]
async fn openai_tools_call_the_action_and_see_only_exposed_fields() {
    let shop = Shop::start().await;
    let model = ModelServer::start(
        vec![
            completion(function_call("call_1", "order_status", json!({"order_number": "1001"}))),
            completion(function_call(
                "call_2",
                "answer_ticket",
                json!({"answer": ANSWER, "confidence": 0.9, "needs_human": false, "reason": null, "sources": ["action:order_status"]}),
            )),
        ],
        Reply::Status(500, "script exhausted".into()),
    )
    .await;
    let app = TestApp::spawn_with(|c| {
        apply(c, &shop);
        c.generator.kind = GeneratorKind::Openai;
        c.generator.openai = Some(OpenAiSettings {
            base_url: model.base_url(),
            model: "m".into(),
            api_key: Some(Secret::new("sk-test")),
            timeout_secs: 5,
            max_tokens: 300,
            temperature: 0.0,
            response_format: Default::default(),
        });
    })
    .await;
    let (id, token) = ann(&app).await;
    app.post(&id, &token, "Where's my order #1001?").await;
    let poll = app.wait_for_reply(&id, &token, 1).await;
    let answers = with_role(&poll, "assistant");
    assert_eq!(answers.len(), 1, "{poll}");
    assert_eq!(answers[0]["text"], ANSWER);
    let requests = model.requests();
    assert_eq!(requests.len(), 2, "one tool round, then the answer");
    // Both tools offered; the customer's email is not the model's to pass.
    let tools: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["answer_ticket", "order_status"]);
    assert_eq!(requests[0]["tool_choice"], "required");
    let schema = &requests[0]["tools"][1]["function"]["parameters"];
    assert!(schema["properties"].get("email").is_none(), "{schema}");
    // The tool result the model saw: exposed fields, nothing else.
    let msgs = requests[1]["messages"].as_array().unwrap();
    let result = msgs
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("a tool message");
    assert_eq!(result["tool_call_id"], "call_1");
    let content = result["content"].as_str().unwrap();
    assert!(
        content.contains("shipped") && content.contains("1Z1001"),
        "{content}"
    );
    for private in ["Secret Street", "4242", "ann@example.com", TOKEN] {
        assert!(!content.contains(private), "{private} reached the model");
    }
    assert_eq!(shop.seen().len(), 1);
    assert_eq!(shop.seen()[0].query["email"], "ann@example.com");
    app.stop().await;
}

#[tokio::test]
async fn openai_tools_for_an_unverified_visitor_never_reach_the_shop() {
    let shop = Shop::start().await;
    let model = ModelServer::start(
        vec![
            completion(function_call("call_1", "order_status", json!({"order_number": "1001"}))),
            completion(function_call(
                "call_2",
                "answer_ticket",
                json!({"answer": "", "confidence": 0.2, "needs_human": true, "reason": "needs sign-in", "sources": []}),
            )),
        ],
        Reply::Status(500, "script exhausted".into()),
    )
    .await;
    let app = TestApp::spawn_with(|c| {
        apply(c, &shop);
        c.generator.kind = GeneratorKind::Openai;
        c.generator.openai = Some(OpenAiSettings {
            base_url: model.base_url(),
            model: "m".into(),
            api_key: None,
            timeout_secs: 5,
            max_tokens: 300,
            temperature: 0.0,
            response_format: Default::default(),
        });
    })
    .await;
    let (id, token) = app.conversation().await;
    app.post(&id, &token, "Where's my order #1001?").await;
    let poll = app.wait_for_reply(&id, &token, 1).await;
    let requests = model.requests();
    let msgs = requests[1]["messages"].as_array().unwrap();
    let result = msgs.iter().find(|m| m["role"] == "tool").unwrap();
    assert!(
        result["content"]
            .as_str()
            .unwrap()
            .contains("identity_required")
    );
    assert!(shop.seen().is_empty());
    assert!(!poll.to_string().contains("shipped"));
    app.stop().await;
}

fn converse(content: Value, stop: &str) -> BedrockReply {
    BedrockReply::Json(json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": {"inputTokens": 500, "outputTokens": 40, "totalTokens": 540},
        "metrics": {"latencyMs": 300}
    }))
}

#[tokio::test]
async fn the_bedrock_tool_use_loop_calls_the_action_then_answers() {
    fake_aws_env();
    let shop = Shop::start().await;
    let double = BedrockDouble::start().await;
    double.script_converse(vec![
        converse(
            json!([{"toolUse": {"toolUseId": "tu_1", "name": "order_status", "input": {"order_number": "#1001"}}}]),
            "tool_use",
        ),
        converse(
            json!([{"toolUse": {"toolUseId": "tu_2", "name": "answer_ticket", "input":
                {"answer": ANSWER, "confidence": 0.9, "needs_human": false, "reason": null, "sources": ["action:order_status"]}}}]),
            "tool_use",
        ),
    ]);
    let url = double.url();
    let app = TestApp::spawn_with(|c| {
        apply(c, &shop);
        c.aws.region = Some("us-east-1".into());
        c.generator.kind = GeneratorKind::Bedrock;
        c.generator.bedrock = Some(BedrockSettings {
            endpoint_url: Some(url),
            read_timeout_secs: 5,
            ..BedrockSettings::default()
        });
    })
    .await;
    let (id, token) = ann(&app).await;
    app.post(&id, &token, "Where's my order #1001?").await;
    let poll = app.wait_for_reply(&id, &token, 1).await;
    let answers = with_role(&poll, "assistant");
    assert_eq!(answers.len(), 1, "{poll}");
    assert_eq!(answers[0]["text"], ANSWER);
    let reqs = double.converse_requests();
    assert_eq!(reqs.len(), 2);
    let tools: Vec<&str> = reqs[0].body["toolConfig"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["toolSpec"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["answer_ticket", "order_status"]);
    assert!(
        reqs[0].body["toolConfig"]["toolChoice"]
            .get("any")
            .is_some()
    );
    // The second call carries the model's toolUse and our toolResult.
    let msgs = reqs[1].body["messages"].as_array().unwrap();
    let last = msgs.last().unwrap();
    assert_eq!(last["role"], "user");
    let result = &last["content"][0]["toolResult"];
    assert_eq!(result["toolUseId"], "tu_1");
    let json = result["content"][0]["json"].to_string();
    assert!(json.contains("shipped"), "{json}");
    for private in ["Secret Street", "4242", "ann@example.com"] {
        assert!(!json.contains(private), "{private} reached the model");
    }
    assert_eq!(
        msgs[msgs.len() - 2]["content"][0]["toolUse"]["toolUseId"],
        "tu_1"
    );
    assert_eq!(shop.seen()[0].path, "/api/orders/1001");
    app.stop().await;
}

#[tokio::test]
async fn the_bedrock_loop_is_bounded_and_a_failed_action_escalates() {
    fake_aws_env();
    let shop = Shop::start().await;
    shop.set_down(true);
    let double = BedrockDouble::start().await;
    // A model that keeps calling the tool: after the bound, answer_ticket is forced.
    let again = converse(
        json!([{"toolUse": {"toolUseId": "tu", "name": "order_status", "input": {"order_number": "1001"}}}]),
        "tool_use",
    );
    double.set_converse_fallback(again);
    let url = double.url();
    let hook = WebhookReceiver::start().await;
    let hook_url = hook.url();
    let app = TestApp::spawn_with(|c| {
        apply(c, &shop);
        c.aws.region = Some("us-east-1".into());
        c.generator.kind = GeneratorKind::Bedrock;
        c.generator.bedrock = Some(BedrockSettings {
            endpoint_url: Some(url),
            read_timeout_secs: 5,
            ..BedrockSettings::default()
        });
        c.escalation.webhook_url = Some(Secret::new(hook_url));
        c.escalation.webhook_format = WebhookFormat::Json;
    })
    .await;
    let (id, token) = ann(&app).await;
    app.post(&id, &token, "Where's my order #1001?").await;
    let poll = app.wait_for_reply(&id, &token, 1).await;
    assert_eq!(poll["status"], "escalated", "{poll}");
    let esc = hook.wait_for(1).await;
    assert_eq!(esc[0]["reason"], "action_failed", "{}", esc[0]);
    assert!(esc[0]["detail"].as_str().unwrap().contains("503"));
    let reqs = double.converse_requests();
    let rounds = deskhand::llm::tools::MAX_TOOL_ROUNDS;
    // Per attempt: the bound's rounds plus the forced answer; the unusable
    // answer is retried once.
    assert_eq!(reqs.len(), 2 * (rounds + 1), "{}", reqs.len());
    let last = &reqs[rounds].body["toolConfig"]["toolChoice"];
    assert_eq!(last["tool"]["name"], "answer_ticket", "{last}");
    app.stop().await;
}
