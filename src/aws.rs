//! Shared AWS SDK configuration, built once per cold start. The endpoint
//! override points every client at moto server in tests (or at a VPC
//! endpoint in production); region and credentials come from the usual
//! chain (environment, profile, Lambda role).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use serde::{Deserialize, Serialize};

/// Where the AWS resources are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsSettings {
    /// Region; defaults to the environment's (`AWS_REGION`).
    pub region: Option<String>,
    /// One endpoint for every AWS service client (moto server in tests).
    pub endpoint_url: Option<String>,
}

/// The SDK configuration for `settings`.
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
