//! Issue #14 (8): the Lambda functions read their secrets from Secrets
//! Manager at cold start (on moto server), named in the environment by the
//! variables the template sets; a secret that cannot be read stops the
//! start with an error naming it.

use crate::common;

use common::moto::{Moto, template};
use deskhand::config::Config;
use deskhand::lambda::AwsRuntime;
use deskhand::secret::Secret;

async fn create_secret(moto: &Moto, name: &str, value: &str) -> String {
    aws_sdk_secretsmanager::Client::new(&moto.sdk)
        .create_secret()
        .name(format!("{}-{name}", moto.prefix))
        .secret_string(value)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateSecret: {}", deskhand::aws::describe(&e)))
        .arn()
        .unwrap()
        .to_owned()
}

/// Settings that point at moto (the clients are built, never called,
/// except Secrets Manager).
fn config(moto: &Moto) -> Config {
    Config {
        aws: moto.aws_settings(
            "table",
            &format!("{}/123456789012/q.fifo", moto.endpoint),
            "",
            "arn:aws:sns:us-east-1:123456789012:topic",
        ),
        ..Config::default()
    }
}

/// The environment variable names the template gives the agent function
/// for its secrets, set as the Lambda sets them, load into the settings
/// the runtime resolves: the values come from Secrets Manager.
#[allow(clippy::result_large_err)] // figment's Jail API
#[tokio::test]
async fn the_agent_function_reads_its_secrets_named_by_the_template() {
    let moto = Moto::connect().await;
    let token = create_secret(&moto, "token", "a-token-signing-key-0123456789abcdef").await;
    let agent = create_secret(&moto, "agent", "an-agent-key-0123456789").await;
    let agents = create_secret(
        &moto,
        "agents",
        r#"[{"name":"dana","key":"dana-console-key-0123456789"}]"#,
    )
    .await;
    let t = template();
    let names: Vec<String> =
        t["Resources"]["AgentFunction"]["Properties"]["Environment"]["Variables"]
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .filter(|k| k.ends_with("_SECRET_ID"))
            .collect();
    // The token, the agents' API key, and the console's agents (when
    // `AgentsSecretArn` is given).
    assert_eq!(names.len(), 3, "{names:?}");
    let mut loaded = None;
    figment::Jail::expect_with(|jail| {
        for name in &names {
            let arn = if name.contains("AGENTS_") {
                &agents
            } else if name.contains("AGENT") {
                &agent
            } else {
                &token
            };
            jail.set_env(name, arn);
        }
        loaded = Some(Config::load(None, &serde_json::Value::Null).map_err(|e| e.to_string())?);
        Ok(())
    });
    let mut c = config(&moto);
    let from_env = loaded.unwrap();
    c.aws.token_secret_id = from_env.aws.token_secret_id;
    c.aws.agent_key_secret_id = from_env.aws.agent_key_secret_id;
    c.aws.agents_secret_id = from_env.aws.agents_secret_id;
    assert!(c.secret.is_none() && c.agent_key.is_none() && c.agents.is_empty());
    let runtime = AwsRuntime::from_config(c)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        runtime.config.secret.as_ref().map(Secret::expose),
        Some("a-token-signing-key-0123456789abcdef")
    );
    assert_eq!(
        runtime.config.agent_key.as_ref().map(Secret::expose),
        Some("an-agent-key-0123456789")
    );
    let agents: Vec<_> = runtime
        .config
        .agents
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(agents, ["dana"]);
    assert!(runtime.config.admin_key.is_none());
    // The API wires with the resolved key.
    let _router = runtime.router().unwrap();
}

/// A configured secret that does not exist is a start-up error naming the
/// secret and the variable, not an API without a key.
#[tokio::test]
async fn a_missing_secret_is_a_clear_start_up_error() {
    let moto = Moto::connect().await;
    let mut c = config(&moto);
    let missing = format!("{}-missing", moto.prefix);
    c.aws.token_secret_id = Some(missing.clone());
    let error = match AwsRuntime::from_config(c).await {
        Ok(_) => panic!("started without its secret"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains(&missing), "{error}");
    assert!(error.contains("DESKHAND_AWS__TOKEN_SECRET_ID"), "{error}");
    assert!(error.contains("ResourceNotFoundException"), "{error}");
}

/// A key given both directly and as a secret is ambiguous: refused.
#[tokio::test]
async fn a_key_set_twice_is_refused() {
    let moto = Moto::connect().await;
    let arn = create_secret(&moto, "twice", "another-signing-key-0123456789").await;
    let mut c = config(&moto);
    c.secret = Some(Secret::new("a-direct-signing-key-0123456789"));
    c.aws.token_secret_id = Some(arn);
    let error = match AwsRuntime::from_config(c).await {
        Ok(_) => panic!("two keys accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("aws.token_secret_id"), "{error}");
}

/// Without secret ids nothing is read (the worker's cold start makes no
/// Secrets Manager call): an unreachable endpoint does not matter.
#[tokio::test]
async fn without_secret_ids_secrets_manager_is_not_called() {
    let moto = Moto::connect().await;
    let mut c = config(&moto);
    c.aws.endpoint_url = Some("http://127.0.0.1:9".into());
    c.aws.operation_timeout_secs = Some(1);
    let runtime = AwsRuntime::from_config(c).await.unwrap();
    assert!(runtime.config.secret.is_none());
}
