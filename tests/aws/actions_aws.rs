//! Actions on AWS (moto server): the worker reads the actions' secrets from
//! the one Secrets Manager secret the template names, at cold start; a
//! malformed secret stops the start without quoting it; the template grants
//! the worker that secret and no other.

use crate::common;

use common::moto::{Moto, template};
use deskhand::aws::{parse_action_secrets, resolve_action_secrets};

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

#[tokio::test]
async fn the_worker_reads_action_secrets_once_from_secrets_manager() {
    let moto = Moto::connect().await;
    let arn = create_secret(
        &moto,
        "actions",
        r#"{"shop_token": "tok-123", "woocommerce_key": "ck_1"}"#,
    )
    .await;
    let mut settings = moto.aws_settings("t", "q", "", "arn:aws:sns:us-east-1:123456789012:t");
    settings.action_secrets_secret_id = Some(arn);
    let secrets = resolve_action_secrets(&moto.sdk, &settings).await.unwrap();
    assert_eq!(secrets.len(), 2);
    assert_eq!(secrets["shop_token"].expose(), "tok-123");
    // Not JSON: an error naming the secret, never its text.
    let bad = create_secret(&moto, "bad", "tok-SECRET-VALUE").await;
    settings.action_secrets_secret_id = Some(bad);
    let err = format!(
        "{:#}",
        resolve_action_secrets(&moto.sdk, &settings)
            .await
            .unwrap_err()
    );
    assert!(err.contains("action_secrets_secret_id"), "{err}");
    assert!(!err.contains("SECRET-VALUE"), "{err}");
    // None configured: no call, nothing.
    settings.action_secrets_secret_id = None;
    assert!(
        resolve_action_secrets(&moto.sdk, &settings)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The API function verifies widget users with `identity.secret` read
/// from Secrets Manager at cold start (its ARN only in the environment);
/// a short one stops the start; the template grants that one secret.
#[tokio::test]
async fn the_api_reads_the_identity_secret_from_secrets_manager() {
    let moto = Moto::connect().await;
    let arn = create_secret(&moto, "identity", "a-site-secret-0123456789").await;
    let mut config = deskhand::config::Config {
        aws: moto.aws_settings("t", "q", "", "arn:aws:sns:us-east-1:123456789012:t"),
        ..Default::default()
    };
    config.aws.identity_secret_id = Some(arn);
    let runtime = deskhand::lambda::AwsRuntime::from_config(config.clone())
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let secret = runtime.config.identity.secret.as_ref().map(|s| s.expose());
    assert_eq!(secret, Some("a-site-secret-0123456789"));
    // And a user signed with it verifies.
    let user = deskhand::actions::identity::WidgetUser {
        id: "u_1".into(),
        email: None,
        hash: deskhand::actions::identity::widget_user_hash(
            "a-site-secret-0123456789",
            "u_1",
            None,
        ),
    };
    assert!(user.verify(&runtime.config.identity).is_ok());
    // Set both ways: refused.
    let mut both = config.clone();
    both.identity.secret = Some(deskhand::secret::Secret::new("another-site-secret-0123"));
    let err = format!(
        "{:#}",
        deskhand::lambda::AwsRuntime::from_config(both)
            .await
            .err()
            .unwrap()
    );
    assert!(err.contains("identity_secret_id"), "{err}");
    // Too short: refused, without quoting it.
    let short = create_secret(&moto, "short", "tooSHORT").await;
    config.aws.identity_secret_id = Some(short);
    let err = format!(
        "{:#}",
        deskhand::lambda::AwsRuntime::from_config(config)
            .await
            .err()
            .unwrap()
    );
    assert!(err.contains("identity.secret"), "{err}");
    assert!(!err.contains("tooSHORT"), "{err}");
    // The template: only the API function names it, and may read only it.
    let t = template();
    let api = &t["Resources"]["ApiFunction"]["Properties"];
    assert!(
        api["Environment"]["Variables"]
            .get("DESKHAND_AWS__IDENTITY_SECRET_ID")
            .is_some()
    );
    let policy = serde_yaml::to_string(&api["Policies"]).unwrap();
    assert!(policy.contains("IdentitySecretArn"), "{policy}");
}

#[test]
fn malformed_action_secrets_are_refused_without_quoting_them() {
    for bad in ["", "[1]", "{\"a\": 1}", "nope-SECRET"] {
        let err = format!("{:#}", parse_action_secrets(bad).unwrap_err());
        assert!(!err.contains("SECRET"), "{err}");
    }
}

#[test]
fn the_template_grants_the_worker_only_the_action_secret() {
    let t = template();
    let worker = &t["Resources"]["WorkerFunction"]["Properties"];
    let env = &worker["Environment"]["Variables"];
    assert!(
        env.get("DESKHAND_AWS__ACTION_SECRETS_SECRET_ID").is_some(),
        "{env:?}"
    );
    let policy = serde_yaml::to_string(&worker["Policies"]).unwrap();
    assert!(policy.contains("secretsmanager:GetSecretValue"), "{policy}");
    assert!(policy.contains("ActionSecretsArn"), "{policy}");
    assert!(!policy.contains("TokenSecret"), "{policy}");
}
