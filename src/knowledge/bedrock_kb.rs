//! Retriever over an Amazon Bedrock Knowledge Base (`Retrieve`).
//!
//! Each retrieval result becomes a [`Passage`]: the chunk text, a doc id
//! and citation from its source location, a title from its metadata (or
//! the file name), and the KB's score. Bedrock KB scores are relevance
//! scores of the chunk to the query, in practice 0..=1 (vector similarity,
//! or the normalized hybrid/reranked score), so `relevance` is the score
//! clamped to 0..=1 and the `no_knowledge` threshold keeps its meaning.
//!
//! Timeouts and retries follow the Bedrock generator: a read timeout (the
//! SDK has none by default) and no SDK retries by default, since the queue
//! retries the whole ticket with backoff. Under a worker invocation the
//! cap is cut to the time left ([`crate::aws::call_timeout`]).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_bedrockagentruntime::Client;
use aws_sdk_bedrockagentruntime::types::{
    FilterAttribute, KnowledgeBaseQuery, KnowledgeBaseQueryType,
    KnowledgeBaseRetrievalConfiguration, KnowledgeBaseRetrievalResult,
    KnowledgeBaseVectorSearchConfiguration, RetrievalFilter, RetrievalResultLocation,
    RetrievalResultLocationType, SearchType,
};
use aws_smithy_types::Document;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::{Passage, RetrieveError, Retriever};
use crate::aws::AwsSettings;
use crate::llm::bedrock::{
    NO_TIME_LEFT, SdkFault, cap_override, document_to_json, json_to_document, retries, timeouts,
};

/// The metadata key Bedrock KBs fill with a chunk's source URI.
pub const SOURCE_URI_KEY: &str = "x-amz-bedrock-kb-source-uri";
/// The metadata key with a chunk's page number (PDF sources).
pub const PAGE_NUMBER_KEY: &str = "x-amz-bedrock-kb-document-page-number";

/// The KB's search strategy (`overrideSearchType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SearchKind {
    /// Vector and keyword search combined (vector stores that support it).
    #[serde(rename = "HYBRID", alias = "hybrid")]
    Hybrid,
    /// Vector search only.
    #[serde(rename = "SEMANTIC", alias = "semantic")]
    Semantic,
}

/// Settings of the Bedrock Knowledge Base retriever.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KbSettings {
    /// The knowledge base id, e.g. `ABCDEFGHIJ`.
    pub knowledge_base_id: String,
    /// Results asked of the KB per query (1..=100); the pipeline keeps its
    /// `top_k` best of them.
    #[serde(default = "default_results")]
    pub number_of_results: u32,
    /// Override the KB's search type; the KB decides when unset.
    #[serde(default)]
    pub search_type: Option<SearchKind>,
    /// A metadata filter in the `Retrieve` API's `RetrievalFilter` JSON,
    /// e.g. `{"equals": {"key": "product", "value": "invoices"}}`; checked
    /// at start-up.
    #[serde(default)]
    pub filter: Option<serde_json::Value>,
    /// Endpoint for the KB client only (a VPC endpoint, or the test
    /// double); overrides `aws.endpoint_url`.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Seconds to wait for the response.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_secs: u64,
    /// Attempts per call, SDK retries included; 1 leaves retrying to the queue.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

fn default_results() -> u32 {
    5
}
fn default_read_timeout() -> u64 {
    10
}
fn default_attempts() -> u32 {
    1
}

impl KbSettings {
    /// Settings for `knowledge_base_id` with every default.
    pub fn new(knowledge_base_id: impl Into<String>) -> Self {
        Self {
            knowledge_base_id: knowledge_base_id.into(),
            number_of_results: default_results(),
            search_type: None,
            filter: None,
            endpoint_url: None,
            read_timeout_secs: default_read_timeout(),
            max_attempts: default_attempts(),
        }
    }

    /// The cap on one `Retrieve` call: connect + read timeout.
    pub fn operation_timeout(&self, connect: Duration) -> Duration {
        connect + Duration::from_secs(self.read_timeout_secs.max(1))
    }

    /// Checks what can be checked without calling AWS; returns the filter
    /// in the SDK's type.
    pub fn validate(&self) -> anyhow::Result<Option<RetrievalFilter>> {
        anyhow::ensure!(
            !self.knowledge_base_id.trim().is_empty(),
            "retriever.bedrock_kb.knowledge_base_id is empty"
        );
        anyhow::ensure!(
            (1..=100).contains(&self.number_of_results),
            "retriever.bedrock_kb.number_of_results must be within 1..=100"
        );
        self.filter
            .as_ref()
            .map(|f| parse_filter(f, "filter"))
            .transpose()
            .map_err(|e| anyhow::anyhow!("retriever.bedrock_kb.{e}"))
    }
}

/// The retriever. Its SDK client is built once, at construction or on the
/// first call, and reused.
pub struct BedrockKb {
    client: OnceCell<Client>,
    aws: AwsSettings,
    settings: KbSettings,
    filter: Option<RetrievalFilter>,
    /// The client's cap on one call (connect + read timeout).
    call_cap: Duration,
}

impl BedrockKb {
    /// A retriever on the shared SDK configuration (the AWS path). Fails
    /// on an invalid filter.
    pub fn new(sdk: &SdkConfig, settings: KbSettings) -> anyhow::Result<Self> {
        let mut kb = Self::lazy(AwsSettings::default(), settings)?;
        kb.client = OnceCell::new_with(Some(client(sdk, &kb.settings)));
        kb.call_cap = kb
            .settings
            .operation_timeout(crate::aws::connect_timeout(sdk));
        Ok(kb)
    }

    /// A retriever whose SDK configuration is loaded from `aws` on the
    /// first call, for wiring that is not async. Fails on an invalid filter.
    pub fn lazy(aws: AwsSettings, settings: KbSettings) -> anyhow::Result<Self> {
        let filter = settings.validate()?;
        let call_cap = settings.operation_timeout(Duration::from_millis(3_100));
        Ok(Self {
            client: OnceCell::new(),
            aws,
            settings,
            filter,
            call_cap,
        })
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                client(&crate::aws::sdk_config(&self.aws).await, &self.settings)
            })
            .await
    }
}

fn client(sdk: &SdkConfig, settings: &KbSettings) -> Client {
    let connect = crate::aws::connect_timeout(sdk);
    let read = Duration::from_secs(settings.read_timeout_secs.max(1));
    let mut conf = aws_sdk_bedrockagentruntime::config::Builder::from(sdk)
        .timeout_config(timeouts(connect, read))
        .retry_config(retries(settings.max_attempts));
    if let Some(url) = &settings.endpoint_url {
        conf = conf.endpoint_url(url);
    }
    Client::from_conf(conf.build())
}

#[async_trait]
impl Retriever for BedrockKb {
    async fn retrieve(&self, query: &str, k: usize) -> Result<Vec<Passage>, RetrieveError> {
        let mut search = KnowledgeBaseVectorSearchConfiguration::builder()
            .number_of_results(self.settings.number_of_results as i32)
            .set_filter(self.filter.clone());
        if let Some(kind) = self.settings.search_type {
            search = search.override_search_type(match kind {
                SearchKind::Hybrid => SearchType::Hybrid,
                SearchKind::Semantic => SearchType::Semantic,
            });
        }
        let configured = self.call_cap;
        let Some(cap) = crate::aws::call_timeout(configured) else {
            return Err(RetrieveError::Transient(NO_TIME_LEFT.into()));
        };
        let call = self
            .client()
            .await
            .retrieve()
            .knowledge_base_id(&self.settings.knowledge_base_id)
            .retrieval_query(
                KnowledgeBaseQuery::builder()
                    .r#type(KnowledgeBaseQueryType::Text)
                    .text(query)
                    .build(),
            )
            .retrieval_configuration(
                KnowledgeBaseRetrievalConfiguration::builder()
                    .vector_search_configuration(search.build())
                    .build(),
            );
        let result = if cap < configured {
            call.customize()
                .config_override(
                    aws_sdk_bedrockagentruntime::config::Builder::default()
                        .timeout_config(cap_override(cap)),
                )
                .send()
                .await
        } else {
            call.send().await
        };
        let out = result.map_err(|err| {
            let fault = SdkFault::of(&err);
            if fault.transient {
                RetrieveError::Transient(fault.detail)
            } else {
                RetrieveError::Permanent(anyhow::anyhow!(
                    "Bedrock KB {} Retrieve: {}",
                    self.settings.knowledge_base_id,
                    fault.detail
                ))
            }
        })?;
        Ok(out
            .retrieval_results()
            .iter()
            .filter_map(passage)
            .take(k)
            .collect())
    }
}

/// One retrieval result as a passage; `None` for results without text
/// (images, table rows).
pub fn passage(r: &KnowledgeBaseRetrievalResult) -> Option<Passage> {
    let text = r.content()?.text().trim();
    if text.is_empty() {
        return None;
    }
    let empty = HashMap::new();
    let meta = r.metadata().unwrap_or(&empty);
    let source_uri = meta_str(meta, SOURCE_URI_KEY);
    let (doc_id, url) = match r.location() {
        Some(l) => citation(l),
        None => (None, None),
    };
    let doc_id = doc_id
        .or(source_uri)
        .or_else(|| r.document_id().map(str::to_owned))?;
    // A link for customers: the web page, or a public link the metadata
    // carries (S3 objects and internal systems are not customer links).
    let url = url.or_else(|| {
        ["url", "source_url", "link"]
            .iter()
            .filter_map(|k| meta_str(meta, k))
            .find(|u| u.starts_with("https://") || u.starts_with("http://"))
    });
    let title = ["title", "x-amz-bedrock-kb-title", "name"]
        .iter()
        .find_map(|k| meta_str(meta, k).filter(|t| !t.trim().is_empty()))
        .unwrap_or_else(|| title_from(&doc_id));
    let section = meta
        .get(PAGE_NUMBER_KEY)
        .map(document_to_json)
        .and_then(|v| v.as_f64())
        .map(|p| format!("page {p}"));
    let score = r.score().unwrap_or(0.0) as f32;
    Some(Passage {
        doc_id,
        title,
        section,
        text: text.to_owned(),
        url,
        score,
        relevance: if score.is_finite() {
            score.clamp(0.0, 1.0)
        } else {
            0.0
        },
    })
}

/// (doc id, customer link) from a result location. Web pages are linked;
/// S3 objects are cited by `s3://bucket/key`; Confluence, Salesforce,
/// SharePoint, OneDrive and Google Drive URLs and Kendra URIs are cited
/// (an agent can follow them) but not linked for customers, since those
/// systems are usually internal; custom documents by their id.
fn citation(l: &RetrievalResultLocation) -> (Option<String>, Option<String>) {
    let s = |v: Option<&str>| v.map(str::to_owned).filter(|v| !v.is_empty());
    match l.r#type() {
        RetrievalResultLocationType::Web => {
            let url = s(l.web_location().and_then(|w| w.url()));
            (url.clone(), url)
        }
        RetrievalResultLocationType::S3 => (s(l.s3_location().and_then(|x| x.uri())), None),
        RetrievalResultLocationType::Confluence => {
            (s(l.confluence_location().and_then(|x| x.url())), None)
        }
        RetrievalResultLocationType::Salesforce => {
            (s(l.salesforce_location().and_then(|x| x.url())), None)
        }
        RetrievalResultLocationType::Sharepoint => {
            (s(l.share_point_location().and_then(|x| x.url())), None)
        }
        RetrievalResultLocationType::Onedrive => {
            (s(l.one_drive_location().and_then(|x| x.url())), None)
        }
        RetrievalResultLocationType::Googledrive => {
            (s(l.google_drive_location().and_then(|x| x.url())), None)
        }
        RetrievalResultLocationType::Kendra => {
            (s(l.kendra_document_location().and_then(|x| x.uri())), None)
        }
        RetrievalResultLocationType::Custom => {
            (s(l.custom_document_location().and_then(|x| x.id())), None)
        }
        _ => (None, None),
    }
}

fn meta_str(meta: &HashMap<String, Document>, key: &str) -> Option<String> {
    match meta.get(key)? {
        Document::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// "s3://kb/billing/failed-payments.md" → "Failed payments".
fn title_from(doc_id: &str) -> String {
    let path = doc_id.split(['?', '#']).next().unwrap_or(doc_id);
    let name = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path);
    let stem = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.len() <= 5 => stem,
        _ => name,
    };
    let words = stem.replace(['-', '_', '+'], " ");
    let words = words.trim();
    if words.is_empty() {
        return doc_id.to_owned();
    }
    let mut chars = words.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

const LEAF_OPS: &[&str] = &[
    "equals",
    "notEquals",
    "greaterThan",
    "greaterThanOrEquals",
    "lessThan",
    "lessThanOrEquals",
    "in",
    "notIn",
    "startsWith",
    "listContains",
    "stringContains",
];

/// A `RetrievalFilter` in the API's JSON (one operator per object:
/// `equals`, `notEquals`, `greaterThan`, `greaterThanOrEquals`, `lessThan`,
/// `lessThanOrEquals`, `in`, `notIn`, `startsWith`, `listContains`,
/// `stringContains` with `{key, value}`; `andAll`, `orAll` with a list of
/// at least two filters) as the SDK's type.
pub fn parse_filter(v: &serde_json::Value, at: &str) -> anyhow::Result<RetrievalFilter> {
    let obj = v
        .as_object()
        .with_context(|| format!("{at}: a filter is an object"))?;
    anyhow::ensure!(
        obj.len() == 1,
        "{at}: a filter has exactly one operator, found {}",
        obj.len()
    );
    let (op, arg) = obj.iter().next().expect("one entry");
    let at = format!("{at}.{op}");
    if op == "andAll" || op == "orAll" {
        let list = arg
            .as_array()
            .with_context(|| format!("{at}: expected a list of filters"))?;
        anyhow::ensure!(list.len() >= 2, "{at}: needs at least two filters");
        let inner = list
            .iter()
            .enumerate()
            .map(|(i, f)| parse_filter(f, &format!("{at}[{i}]")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        return Ok(if op == "andAll" {
            RetrievalFilter::AndAll(inner)
        } else {
            RetrievalFilter::OrAll(inner)
        });
    }
    anyhow::ensure!(
        LEAF_OPS.contains(&op.as_str()),
        "{at}: unknown operator (expected one of {}, andAll, orAll)",
        LEAF_OPS.join(", ")
    );
    let attr = arg
        .as_object()
        .with_context(|| format!("{at}: expected {{\"key\": …, \"value\": …}}"))?;
    let key = attr
        .get("key")
        .and_then(|k| k.as_str())
        .filter(|k| !k.is_empty())
        .with_context(|| format!("{at}.key: expected a non-empty string"))?;
    let value = attr
        .get("value")
        .with_context(|| format!("{at}.value is missing"))?;
    if let Some(extra) = attr.keys().find(|k| *k != "key" && *k != "value") {
        anyhow::bail!("{at}: unknown field `{extra}`");
    }
    let ok = match op.as_str() {
        "in" | "notIn" => value.is_array(),
        "startsWith" | "stringContains" => value.is_string(),
        "greaterThan" | "greaterThanOrEquals" | "lessThan" | "lessThanOrEquals" => {
            value.is_number()
        }
        _ => !value.is_null() && !value.is_object(),
    };
    anyhow::ensure!(ok, "{at}.value has the wrong type for `{op}`");
    let attr = FilterAttribute::builder()
        .key(key)
        .value(json_to_document(value))
        .build()?;
    Ok(match op.as_str() {
        "equals" => RetrievalFilter::Equals(attr),
        "notEquals" => RetrievalFilter::NotEquals(attr),
        "greaterThan" => RetrievalFilter::GreaterThan(attr),
        "greaterThanOrEquals" => RetrievalFilter::GreaterThanOrEquals(attr),
        "lessThan" => RetrievalFilter::LessThan(attr),
        "lessThanOrEquals" => RetrievalFilter::LessThanOrEquals(attr),
        "in" => RetrievalFilter::In(attr),
        "notIn" => RetrievalFilter::NotIn(attr),
        "startsWith" => RetrievalFilter::StartsWith(attr),
        "listContains" => RetrievalFilter::ListContains(attr),
        _ => RetrievalFilter::StringContains(attr),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockagentruntime::types::{
        RetrievalResultContent, RetrievalResultS3Location, RetrievalResultWebLocation,
    };
    use serde_json::json;

    #[test]
    fn filters_parse_or_say_where_they_are_wrong() {
        let f = json!({"andAll": [
            {"equals": {"key": "product", "value": "invoices"}},
            {"orAll": [
                {"in": {"key": "lang", "value": ["en", "de"]}},
                {"startsWith": {"key": "x-amz-bedrock-kb-source-uri", "value": "s3://kb/public/"}}
            ]}
        ]});
        let RetrievalFilter::AndAll(parts) = parse_filter(&f, "filter").unwrap() else {
            panic!("not andAll");
        };
        assert!(matches!(&parts[0], RetrievalFilter::Equals(a) if a.key() == "product"));
        assert!(matches!(&parts[1], RetrievalFilter::OrAll(inner) if inner.len() == 2));
        for (bad, want) in [
            (
                json!({"equals": {"key": "a", "value": 1}, "in": {}}),
                "exactly one",
            ),
            (
                json!({"like": {"key": "a", "value": "b"}}),
                "unknown operator",
            ),
            (
                json!({"andAll": [{"equals": {"key": "a", "value": 1}}]}),
                "at least two",
            ),
            (
                json!({"in": {"key": "a", "value": "x"}}),
                "filter.in.value has the wrong type",
            ),
            (
                json!({"equals": {"key": "", "value": 1}}),
                "filter.equals.key",
            ),
            (json!({"equals": {"key": "a"}}), "value is missing"),
            (
                json!({"orAll": [{"equals": {"key": "a", "value": 1}}, {"equals": 3}]}),
                "filter.orAll[1].equals",
            ),
        ] {
            let err = format!("{:#}", parse_filter(&bad, "filter").unwrap_err());
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    fn result(
        location: RetrievalResultLocation,
        meta: &[(&str, &str)],
        score: f64,
    ) -> KnowledgeBaseRetrievalResult {
        KnowledgeBaseRetrievalResult::builder()
            .content(
                RetrievalResultContent::builder()
                    .text("Chunk text.")
                    .build(),
            )
            .location(location)
            .set_metadata(Some(
                meta.iter()
                    .map(|(k, v)| (k.to_string(), Document::String(v.to_string())))
                    .collect(),
            ))
            .score(score)
            .build()
    }

    #[test]
    fn results_become_cited_passages() {
        let s3 = RetrievalResultLocation::builder()
            .r#type(RetrievalResultLocationType::S3)
            .s3_location(
                RetrievalResultS3Location::builder()
                    .uri("s3://kb/billing/failed-payments.md")
                    .build(),
            )
            .build()
            .unwrap();
        let p = passage(&result(
            s3,
            &[(SOURCE_URI_KEY, "s3://kb/billing/failed-payments.md")],
            1.3,
        ))
        .unwrap();
        assert_eq!(p.doc_id, "s3://kb/billing/failed-payments.md");
        assert_eq!(p.title, "Failed payments");
        assert_eq!(p.url, None);
        assert_eq!((p.score, p.relevance), (1.3, 1.0));

        let web = RetrievalResultLocation::builder()
            .r#type(RetrievalResultLocationType::Web)
            .web_location(
                RetrievalResultWebLocation::builder()
                    .url("https://help.example.com/refunds")
                    .build(),
            )
            .build()
            .unwrap();
        let p = passage(&result(web, &[("title", "Refunds")], 0.42)).unwrap();
        assert_eq!(p.doc_id, "https://help.example.com/refunds");
        assert_eq!(p.url.as_deref(), Some("https://help.example.com/refunds"));
        assert_eq!(p.title, "Refunds");
        assert!((p.relevance - 0.42).abs() < 1e-6);
    }

    #[test]
    fn titles_come_from_file_names() {
        assert_eq!(title_from("s3://b/a/two_factor-auth.md"), "Two factor auth");
        assert_eq!(title_from("https://x.example/docs/"), "Docs");
        assert_eq!(title_from("abc"), "Abc");
    }
}
