//! The knowledge base as a published artifact: the prebuilt tantivy index
//! packed into one versioned, checksummed bundle, a small `current`
//! pointer naming it, and [`LiveIndex`], the retriever that opens the
//! current bundle at cold start and swaps to a new one while warm.
//!
//! Invariants:
//! * A bundle is opened, never rebuilt: its files are the index
//!   `deskhand kb publish` built, written into memory and opened as is.
//! * Nothing unverified is searched. A bundle must match the SHA-256 its
//!   pointer records (or, for the layer's file, which has no pointer,
//!   every file's SHA-256 in its manifest), be well formed, and open as an
//!   index of this schema; otherwise it is refused ([`BundleError`]) and
//!   the index in use stays.
//! * Publishing uploads the bundle under a key of its own
//!   (`PREFIX/bundles/VERSION.bundle`) before the pointer (`PREFIX/current`)
//!   names it, so a pointer never names a missing bundle and a worker never
//!   sees half a publish.
//! * A warm [`LiveIndex`] reads the pointer at most once per
//!   `check_secs` (60 s by default), on a retrieval, by one caller at a
//!   time; other retrievals go on with the index in use. A failed check
//!   is logged and changes nothing.
//!
//! * Passage vectors are used only with the embedder that made them: the
//!   manifest names its identity (model, marking, dimensions), and a
//!   worker configured with another embedder, or none, answers from BM25
//!   (logged once per bundle loaded). Only the question is embedded at
//!   ticket time; a failed query embedding is answered from BM25.
//!
//! Format (version 1): the 8 bytes `DHKBND01`, the manifest's length (u32,
//! little-endian), the manifest (JSON, [`Manifest`]), then each file's bytes
//! in manifest order, nothing after. Besides the index's own files, a
//! bundle carries [`DOCUMENTS_FILE`] (the parsed documents, JSON: the
//! passages, their metadata and the spelling vocabulary's source) and, when
//! published with an embedder, [`VECTORS_FILE`] (one vector per passage,
//! internal ones included, in the vector cache's format, keyed by embedder
//! identity and passage text). Bundles without them (published by an
//! earlier deskhand) still open, as BM25 alone.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tantivy::Directory;
use tracing::{error, info, warn};

use super::embed::Embedder;
use super::hybrid::{self, Hybrid};
use super::markdown::Document;
use super::tantivy::{BuildStats, TantivyIndex, fingerprint};
use super::{Passage, RetrieveError, Retriever};

/// The bundle's first bytes.
const MAGIC: &[u8; 8] = b"DHKBND01";
/// The format this code writes and reads.
pub const FORMAT: u32 = 1;
/// A prebuilt index shipped in the Lambda layer (or any KB folder): the
/// bundle file at the folder's root. Hidden, so it is not read as a document.
pub const LAYER_FILE: &str = ".deskhand-index.bundle";
/// Largest bundle accepted (a help centre of tens of thousands of articles
/// is far below it).
pub const MAX_BUNDLE_BYTES: u64 = 512 << 20;
/// Largest pointer accepted.
const MAX_POINTER_BYTES: i64 = 64 << 10;
/// Largest manifest accepted.
const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// The bundle file holding the parsed documents (not an index file).
pub const DOCUMENTS_FILE: &str = "deskhand-documents.json";
/// The bundle file holding the passage vectors (not an index file).
pub const VECTORS_FILE: &str = "deskhand-vectors.bin";

/// What a bundle holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// When it was built (RFC 3339, UTC).
    pub created_at: String,
    /// [`fingerprint`] of the KB folder it was built from.
    pub kb_fingerprint: String,
    /// Documents indexed.
    pub documents: usize,
    /// Passages indexed.
    pub passages: usize,
    /// Whether passage vectors travel with it.
    pub vectors: bool,
    /// The embedder that computed them, when they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedder: Option<VectorsInfo>,
    /// The bundle's files (the index's, then [`DOCUMENTS_FILE`] and
    /// [`VECTORS_FILE`]), in the order their bytes follow.
    pub files: Vec<FileEntry>,
}

/// Which embedder computed a bundle's passage vectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorsInfo {
    /// [`Embedder::identity`]: the vectors are used only by an embedder of
    /// the same identity.
    pub identity: String,
    /// The model's name.
    pub model: String,
    /// Floats per vector.
    pub dimensions: usize,
    /// Vectors shipped (one per passage, internal ones included).
    pub passages: usize,
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// A plain file name (no folder).
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// The `current` pointer: which bundle workers use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// [`FORMAT`].
    pub format: u32,
    /// The bundle's version (`20261202T061500.123Z-<sha prefix>`).
    pub version: String,
    /// The bundle's key in the bucket.
    pub key: String,
    /// The bundle's SHA-256, hex.
    pub sha256: String,
    /// The bundle's size, bytes.
    pub size: u64,
    /// When it was built.
    pub created_at: String,
    /// Documents indexed.
    pub documents: usize,
    /// Passages indexed.
    pub passages: usize,
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bytes are not what the pointer says (a partial upload, an
    /// overwritten object, a bit flip).
    #[error("bundle checksum mismatch: expected sha256 {expected}, got {actual}")]
    Checksum {
        /// From the pointer.
        expected: String,
        /// Of the bytes received.
        actual: String,
    },
    /// Not a well-formed bundle, or its index does not open.
    #[error("corrupt bundle: {0}")]
    Corrupt(String),
}

/// A built bundle, ready to upload or write.
pub struct Bundle {
    /// What it holds.
    pub manifest: Manifest,
    /// The bundle's bytes.
    pub bytes: Vec<u8>,
    /// Their SHA-256, hex.
    pub sha256: String,
}

impl Bundle {
    /// The version string: build time and checksum prefix, sortable.
    pub fn version(&self) -> String {
        let stamp = chrono::DateTime::parse_from_rfc3339(&self.manifest.created_at)
            .map(|t| t.format("%Y%m%dT%H%M%S%.3fZ").to_string())
            .unwrap_or_else(|_| "undated".into());
        format!("{stamp}-{}", &self.sha256[..12])
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Builds the index of `kb` once and packs it with its documents (no
/// passage vectors).
pub fn build(kb: &Path, progress: &mut dyn FnMut(usize, usize)) -> anyhow::Result<Bundle> {
    let docs = super::tantivy::load_documents(kb, &mut |_, _| {})?;
    build_from(kb, &docs, None, progress)
}

/// [`build`], plus the passage vectors of `embedder` (every passage,
/// internal ones included, so one bundle serves workers either way),
/// reusing the vectors in `cache` (the content-hash cache) and adding the
/// new ones to it. Returns the bundle and how many passages had to be
/// embedded.
pub async fn build_with_vectors(
    kb: &Path,
    embedder: Arc<dyn Embedder>,
    cache: Option<&Path>,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> anyhow::Result<(Bundle, usize)> {
    let docs = super::tantivy::load_documents(kb, &mut |_, _| {})?;
    let dense = Hybrid::from_index(TantivyIndex::in_memory(&[])?).with_embedder(
        embedder.clone(),
        &docs,
        true,
        cache,
    );
    let embedded = dense
        .prepare()
        .await
        .context("computing the passage vectors")?;
    let (dimensions, rows) = dense
        .export_vectors()
        .context("the passage vectors are not ready")?;
    let info = VectorsInfo {
        identity: embedder.identity(),
        model: embedder.model(),
        dimensions,
        passages: rows.len(),
    };
    let entries: Vec<([u8; 32], &[f32])> = rows.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    let vectors = hybrid::encode_vectors(&entries);
    let bundle = build_from(kb, &docs, Some((info, vectors)), progress)?;
    Ok((bundle, embedded))
}

fn build_from(
    kb: &Path,
    docs: &[Document],
    vectors: Option<(VectorsInfo, Vec<u8>)>,
    progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<Bundle> {
    let kb_fingerprint = fingerprint(kb)?;
    let work = std::env::temp_dir().join(format!(
        "deskhand-bundle-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let dir = work.join("index");
    let packed =
        TantivyIndex::build(kb, &dir, &kb_fingerprint, progress).and_then(|(index, stats)| {
            drop(index);
            let mut extras = vec![(DOCUMENTS_FILE.to_owned(), serde_json::to_vec(docs)?)];
            let info = vectors.map(|(info, bytes)| {
                extras.push((VECTORS_FILE.to_owned(), bytes));
                info
            });
            pack_with(&dir, kb_fingerprint, stats, extras, info)
        });
    let _ = std::fs::remove_dir_all(&work);
    packed
}

/// Packs the index files in `dir` (lock files left out).
pub fn pack(dir: &Path, kb_fingerprint: String, stats: BuildStats) -> anyhow::Result<Bundle> {
    pack_with(dir, kb_fingerprint, stats, Vec::new(), None)
}

/// Packs the index files in `dir` and `extras` (named files that are not
/// the index's: [`DOCUMENTS_FILE`], [`VECTORS_FILE`]).
pub fn pack_with(
    dir: &Path,
    kb_fingerprint: String,
    stats: BuildStats,
    extras: Vec<(String, Vec<u8>)>,
    embedder: Option<VectorsInfo>,
) -> anyhow::Result<Bundle> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    names.sort();
    let mut files = Vec::with_capacity(names.len());
    let mut contents = Vec::with_capacity(names.len());
    for name in names {
        let bytes = std::fs::read(dir.join(&name)).with_context(|| format!("reading {name}"))?;
        files.push(FileEntry {
            name,
            size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        });
        contents.push(bytes);
    }
    for (name, bytes) in extras {
        anyhow::ensure!(
            !files.iter().any(|f| f.name == name),
            "{name} is both an index file and a bundle file"
        );
        files.push(FileEntry {
            name,
            size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        });
        contents.push(bytes);
    }
    let manifest = Manifest {
        format: FORMAT,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        kb_fingerprint,
        documents: stats.documents,
        passages: stats.passages,
        vectors: embedder.is_some(),
        embedder,
        files,
    };
    let head = serde_json::to_vec(&manifest)?;
    let mut bytes =
        Vec::with_capacity(12 + head.len() + contents.iter().map(Vec::len).sum::<usize>());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&u32::try_from(head.len())?.to_le_bytes());
    bytes.extend_from_slice(&head);
    for c in contents {
        bytes.extend_from_slice(&c);
    }
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_BUNDLE_BYTES,
        "the bundle is {} MB, above the {} MB limit",
        bytes.len() >> 20,
        MAX_BUNDLE_BYTES >> 20
    );
    let sha256 = sha256_hex(&bytes);
    Ok(Bundle {
        manifest,
        bytes,
        sha256,
    })
}

/// What a bundle holds, verified and opened.
pub struct Loaded {
    /// The prebuilt index.
    pub index: TantivyIndex,
    /// Its manifest.
    pub manifest: Manifest,
    /// The documents, when the bundle ships them.
    pub documents: Option<Vec<Document>>,
    /// The passage vectors, when it ships them (they match
    /// `manifest.embedder`'s dimensions and count).
    pub vectors: Option<std::collections::HashMap<[u8; 32], Vec<f32>>>,
}

impl Loaded {
    /// The retriever over this bundle: hybrid with its passage vectors when
    /// `embedder` is the one that computed them (only questions are then
    /// embedded), else BM25 with spelling and near twins. Why vectors are
    /// not used is logged here, once per bundle.
    pub fn into_retriever(
        self,
        include_internal: bool,
        embedder: Option<&Arc<dyn Embedder>>,
    ) -> Hybrid {
        let index = self.index.including_internal(include_internal);
        let Some(docs) = self.documents else {
            if embedder.is_some() {
                warn!(
                    message = "The knowledge-base bundle predates shipped documents; BM25 alone. Publish it again to ship passage vectors."
                );
            }
            return Hybrid::from_index(index);
        };
        let bm25 = Hybrid::new(index, &docs);
        match (embedder, &self.manifest.embedder, &self.vectors) {
            (Some(e), Some(info), Some(vectors)) if e.identity() == info.identity => {
                match bm25
                    .clone()
                    .with_vectors(e.clone(), &docs, include_internal, vectors)
                {
                    Ok(hybrid) => {
                        info!(
                            message = "Using the bundle's passage vectors.",
                            model = %info.model,
                            dimensions = info.dimensions,
                            passages = hybrid.dense_passages()
                        );
                        hybrid
                    }
                    Err(why) => {
                        error!(message = "The bundle's passage vectors do not fit its documents; BM25 alone.", error = %why);
                        bm25
                    }
                }
            }
            (Some(e), Some(info), _) => {
                error!(
                    message = "The bundle's passage vectors are of another embedder than the one configured; BM25 alone. Publish again with this embedder, or configure the bundle's.",
                    bundle_embedder = %info.identity,
                    configured_embedder = %e.identity()
                );
                bm25
            }
            (Some(e), None, _) => {
                warn!(
                    message = "The bundle ships no passage vectors; BM25 alone. Publish it with the embedder configured to ship them.",
                    configured_embedder = %e.identity()
                );
                bm25
            }
            (None, Some(info), _) => {
                info!(
                    message = "The bundle ships passage vectors but no embedder is configured; BM25 alone.",
                    bundle_embedder = %info.identity
                );
                bm25
            }
            (None, None, _) => bm25,
        }
    }
}

/// Verifies `bytes` (against `expected_sha256` when given) and opens the
/// index they hold, in memory.
pub fn open(
    bytes: &[u8],
    expected_sha256: Option<&str>,
) -> Result<(TantivyIndex, Manifest), BundleError> {
    open_bundle(bytes, expected_sha256).map(|l| (l.index, l.manifest))
}

/// [`open`], with the documents and passage vectors the bundle ships,
/// each checked: a file that does not parse, vectors of another dimension
/// or count than the manifest says, or vectors without documents refuse
/// the whole bundle.
pub fn open_bundle(bytes: &[u8], expected_sha256: Option<&str>) -> Result<Loaded, BundleError> {
    if let Some(expected) = expected_sha256 {
        let actual = sha256_hex(bytes);
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(BundleError::Checksum {
                expected: expected.to_owned(),
                actual,
            });
        }
    }
    let corrupt = |m: String| BundleError::Corrupt(m);
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(corrupt("not a deskhand knowledge-base bundle".into()));
    }
    let head_len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    if head_len > MAX_MANIFEST_BYTES || 12 + head_len > bytes.len() {
        return Err(corrupt(format!("manifest length {head_len} out of range")));
    }
    let manifest: Manifest = serde_json::from_slice(&bytes[12..12 + head_len])
        .map_err(|e| corrupt(format!("unreadable manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(corrupt(format!(
            "format {} (this deskhand reads {FORMAT})",
            manifest.format
        )));
    }
    let body = &bytes[12 + head_len..];
    let total: u64 = manifest.files.iter().map(|f| f.size).sum();
    if total != body.len() as u64 {
        return Err(corrupt(format!(
            "the manifest lists {total} bytes of files, the bundle holds {}",
            body.len()
        )));
    }
    let directory = tantivy::directory::RamDirectory::create();
    let mut at = 0usize;
    let (mut documents, mut vectors) = (None, None);
    for f in &manifest.files {
        let plain = !f.name.is_empty()
            && f.name != "."
            && f.name != ".."
            && !f.name.contains(['/', '\\', '\0']);
        if !plain {
            return Err(corrupt(format!(
                "file name {:?} is not a plain name",
                f.name
            )));
        }
        let content = &body[at..at + f.size as usize];
        at += f.size as usize;
        // Covered already when the whole bundle matched its pointer.
        if expected_sha256.is_none() && !sha256_hex(content).eq_ignore_ascii_case(&f.sha256) {
            return Err(corrupt(format!("{} does not match its checksum", f.name)));
        }
        if f.name == DOCUMENTS_FILE {
            let docs: Vec<Document> = serde_json::from_slice(content)
                .map_err(|e| corrupt(format!("{DOCUMENTS_FILE}: {e}")))?;
            documents = Some(docs);
            continue;
        }
        if f.name == VECTORS_FILE {
            let (dim, map) = hybrid::parse_vectors(content)
                .ok_or_else(|| corrupt(format!("{VECTORS_FILE} is not a vector file")))?;
            vectors = Some((dim, map));
            continue;
        }
        directory
            .atomic_write(Path::new(&f.name), content)
            .map_err(|e| corrupt(format!("{}: {e}", f.name)))?;
    }
    if let Some(docs) = &documents
        && docs.len() != manifest.documents
    {
        return Err(corrupt(format!(
            "{DOCUMENTS_FILE} holds {} documents, the manifest says {}",
            docs.len(),
            manifest.documents
        )));
    }
    let vectors = match (&manifest.embedder, vectors) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(corrupt(format!(
                "the manifest names an embedder but there is no {VECTORS_FILE}"
            )));
        }
        (None, Some(_)) => {
            return Err(corrupt(format!(
                "{VECTORS_FILE} without an embedder in the manifest"
            )));
        }
        (Some(info), Some((dim, map))) => {
            if dim != info.dimensions || map.len() != info.passages || dim == 0 {
                return Err(corrupt(format!(
                    "{VECTORS_FILE} holds {} vectors of {dim} dimensions, the manifest says {} of {}",
                    map.len(),
                    info.passages,
                    info.dimensions
                )));
            }
            if documents.is_none() {
                return Err(corrupt(format!("{VECTORS_FILE} without {DOCUMENTS_FILE}")));
            }
            Some(map)
        }
    };
    let index = TantivyIndex::open_directory(directory).map_err(|e| corrupt(format!("{e:#}")))?;
    Ok(Loaded {
        index,
        manifest,
        documents,
        vectors,
    })
}

/// The prebuilt index of a KB folder (the Lambda layer), if it has one
/// that was built from the folder as it is: `Ok(None)` when there is no
/// bundle file or it is stale (the Markdown is then indexed instead); an
/// error when it is there and refused.
pub fn open_layer(kb: &Path) -> anyhow::Result<Option<(TantivyIndex, Manifest)>> {
    Ok(open_layer_bundle(kb)?.map(|l| (l.index, l.manifest)))
}

/// [`open_layer`], with the documents and vectors the bundle ships.
pub fn open_layer_bundle(kb: &Path) -> anyhow::Result<Option<Loaded>> {
    let path = kb.join(LAYER_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let loaded = open_bundle(&bytes, None).with_context(|| format!("{}", path.display()))?;
    if loaded.manifest.kb_fingerprint != fingerprint(kb)? {
        warn!(
            message = "The prebuilt index in the KB folder was built from other files; indexing the Markdown instead.",
            path = %path.display()
        );
        return Ok(None);
    }
    Ok(Some(loaded))
}

/// The retriever of a KB folder as the Lambda layer ships it: its prebuilt
/// bundle when it has a current one (hybrid with its passage vectors when
/// `embedder` made them), else its Markdown indexed in memory (BM25 with
/// spelling; vectors travel only in a bundle, so a worker never embeds the
/// whole KB at cold start).
pub fn layer_retriever(
    kb: &Path,
    include_internal: bool,
    embedder: Option<&Arc<dyn Embedder>>,
) -> anyhow::Result<Hybrid> {
    match open_layer_bundle(kb) {
        Ok(Some(loaded)) => return Ok(loaded.into_retriever(include_internal, embedder)),
        Ok(None) => {}
        Err(e) => {
            error!(message = "The prebuilt index in the KB folder was refused; indexing the Markdown instead.", error = %format!("{e:#}"));
        }
    }
    let docs = super::tantivy::load_documents(kb, &mut |_, _| {})
        .with_context(|| format!("loading the knowledge base from {}", kb.display()))?;
    if embedder.is_some() {
        warn!(
            message = "The KB folder has no current prebuilt bundle; BM25 alone. `deskhand kb publish --layer` with the embedder configured ships passage vectors."
        );
    }
    Ok(Hybrid::new(
        TantivyIndex::in_memory(&docs)?.including_internal(include_internal),
        &docs,
    ))
}

/// The index of a KB folder as the Lambda layer ships it: its prebuilt
/// bundle when it has a current one, else its Markdown indexed in memory.
pub fn layer_index(kb: &Path) -> anyhow::Result<TantivyIndex> {
    match open_layer(kb) {
        Ok(Some((index, _))) => return Ok(index),
        Ok(None) => {}
        Err(e) => {
            error!(message = "The prebuilt index in the KB folder was refused; indexing the Markdown instead.", error = %format!("{e:#}"));
        }
    }
    let docs = super::tantivy::load_documents(kb, &mut |_, _| {})
        .with_context(|| format!("loading the knowledge base from {}", kb.display()))?;
    TantivyIndex::in_memory(&docs)
}

/// Writes the bundle of `kb` into the folder itself ([`LAYER_FILE`]), for a
/// Lambda layer that ships the prebuilt index with the Markdown.
pub fn write_layer(kb: &Path, progress: &mut dyn FnMut(usize, usize)) -> anyhow::Result<Bundle> {
    let bundle = build(kb, progress)?;
    write_layer_bundle(kb, &bundle)?;
    Ok(bundle)
}

/// Writes `bundle` (built from `kb`) into the folder ([`LAYER_FILE`]).
pub fn write_layer_bundle(kb: &Path, bundle: &Bundle) -> anyhow::Result<()> {
    let path = kb.join(LAYER_FILE);
    let tmp = kb.join(format!("{LAYER_FILE}.tmp~"));
    std::fs::write(&tmp, &bundle.bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

// ---------------------------------------------------------------- S3

/// Settings of `[retriever.bundle]`: where the published KB lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSettings {
    /// `s3://bucket/prefix`, as given to `deskhand kb publish --s3`.
    pub s3: String,
    /// Seconds between two reads of the pointer while warm.
    #[serde(default = "default_check_secs")]
    pub check_secs: u64,
}

fn default_check_secs() -> u64 {
    60
}

/// A bucket and key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket/prefix`.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let rest = s
            .trim()
            .strip_prefix("s3://")
            .with_context(|| format!("{s:?} is not an s3://bucket/prefix address"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        anyhow::ensure!(valid_bucket, "{bucket:?} is not an S3 bucket name");
        let prefix = prefix.trim_matches('/').to_owned();
        anyhow::ensure!(
            prefix.is_empty()
                || !prefix
                    .split('/')
                    .any(|p| p.is_empty() || p == "." || p == ".."),
            "{s:?}: the prefix has an empty or relative part"
        );
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    fn key(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_owned()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    /// The pointer's key.
    pub fn pointer_key(&self) -> String {
        self.key("current")
    }
}

/// An S3 client for the bundle: path-style addressing when an endpoint is
/// configured (moto, MinIO, a VPC endpoint by address).
pub fn s3_client(sdk: &aws_config::SdkConfig, custom_endpoint: bool) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(custom_endpoint)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn sdk_error<E>(e: aws_sdk_s3::error::SdkError<E>) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e))
}

/// Uploads `bundle` under its version, then points `current` at it.
pub async fn publish(
    client: &aws_sdk_s3::Client,
    at: &S3Location,
    bundle: &Bundle,
) -> anyhow::Result<Pointer> {
    let version = bundle.version();
    let key = at.key(&format!("bundles/{version}.bundle"));
    client
        .put_object()
        .bucket(&at.bucket)
        .key(&key)
        .content_type("application/octet-stream")
        .metadata("sha256", &bundle.sha256)
        .body(bundle.bytes.clone().into())
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("uploading s3://{}/{key}", at.bucket))?;
    let pointer = Pointer {
        format: FORMAT,
        version,
        key,
        sha256: bundle.sha256.clone(),
        size: bundle.bytes.len() as u64,
        created_at: bundle.manifest.created_at.clone(),
        documents: bundle.manifest.documents,
        passages: bundle.manifest.passages,
    };
    put_pointer(client, at, &pointer).await?;
    Ok(pointer)
}

/// Writes the `current` pointer (publish's last step; also how a
/// rollback names an older bundle).
pub async fn put_pointer(
    client: &aws_sdk_s3::Client,
    at: &S3Location,
    pointer: &Pointer,
) -> anyhow::Result<()> {
    client
        .put_object()
        .bucket(&at.bucket)
        .key(at.pointer_key())
        .content_type("application/json")
        .cache_control("no-cache")
        .body(serde_json::to_vec_pretty(pointer)?.into())
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("writing s3://{}/{}", at.bucket, at.pointer_key()))?;
    Ok(())
}

/// The current pointer; `None` when nothing was published there.
pub async fn current(
    client: &aws_sdk_s3::Client,
    at: &S3Location,
) -> anyhow::Result<Option<Pointer>> {
    let key = at.pointer_key();
    let out = match client
        .get_object()
        .bucket(&at.bucket)
        .key(&key)
        .send()
        .await
    {
        Ok(o) => o,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        Err(e) => {
            return Err(sdk_error(e)).with_context(|| format!("reading s3://{}/{key}", at.bucket));
        }
    };
    anyhow::ensure!(
        out.content_length().unwrap_or(0) <= MAX_POINTER_BYTES,
        "s3://{}/{key} is too large to be a pointer",
        at.bucket
    );
    let bytes = out
        .body
        .collect()
        .await
        .with_context(|| format!("reading s3://{}/{key}", at.bucket))?
        .into_bytes();
    let pointer: Pointer = serde_json::from_slice(&bytes)
        .with_context(|| format!("s3://{}/{key} is not a bundle pointer", at.bucket))?;
    anyhow::ensure!(
        pointer.format == FORMAT,
        "s3://{}/{key}: pointer format {} (this deskhand reads {FORMAT})",
        at.bucket,
        pointer.format
    );
    Ok(Some(pointer))
}

/// Downloads the bundle `pointer` names and opens it; a download failure is
/// an `Err`, a refused bundle an `Ok(Err(..))`.
pub async fn fetch(
    client: &aws_sdk_s3::Client,
    at: &S3Location,
    pointer: &Pointer,
) -> anyhow::Result<Result<Loaded, BundleError>> {
    if pointer.size > MAX_BUNDLE_BYTES {
        return Ok(Err(BundleError::Corrupt(format!(
            "{} bytes, above the {} MB limit",
            pointer.size,
            MAX_BUNDLE_BYTES >> 20
        ))));
    }
    let out = client
        .get_object()
        .bucket(&at.bucket)
        .key(&pointer.key)
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("downloading s3://{}/{}", at.bucket, pointer.key))?;
    if out
        .content_length()
        .is_some_and(|n| n as u64 > MAX_BUNDLE_BYTES)
    {
        return Ok(Err(BundleError::Corrupt("the object is too large".into())));
    }
    let bytes = out
        .body
        .collect()
        .await
        .with_context(|| format!("downloading s3://{}/{}", at.bucket, pointer.key))?
        .into_bytes();
    // Opening is CPU work (checksums, the index's files): off the runtime.
    let sha = pointer.sha256.clone();
    tokio::task::spawn_blocking(move || open_bundle(&bytes, Some(&sha)))
        .await
        .context("the bundle task failed")
}

// ---------------------------------------------------------------- live index

/// What a pointer check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The pointer names the bundle in use (or one already refused).
    Unchanged,
    /// Nothing is published at the location.
    NotPublished,
    /// Swapped to this version.
    Swapped(String),
    /// This version was refused; the index in use stays.
    Refused(String),
}

struct Checks {
    last: Option<Instant>,
    /// The last version the pointer named (used or refused).
    seen: Option<String>,
}

/// The retriever over a published KB: the index in use (with its passage
/// vectors), swapped atomically when the pointer names a new, valid bundle
/// (see the module doc).
pub struct LiveIndex {
    current: RwLock<Arc<Hybrid>>,
    version: RwLock<Option<String>>,
    checks: tokio::sync::Mutex<Checks>,
    client: aws_sdk_s3::Client,
    at: S3Location,
    every: Duration,
    include_internal: bool,
    embedder: Option<Arc<dyn Embedder>>,
}

impl LiveIndex {
    /// Cold start: the current bundle at `settings.s3`, or, when nothing is
    /// published or the bundle is refused or unreachable, `fallback` (the
    /// layer's KB). Fails only when both fail. BM25 alone; see
    /// [`LiveIndex::start_with`] for passage vectors.
    pub async fn start(
        client: aws_sdk_s3::Client,
        settings: &BundleSettings,
        include_internal: bool,
        fallback: impl FnOnce() -> anyhow::Result<TantivyIndex>,
    ) -> anyhow::Result<Self> {
        Self::start_with(client, settings, include_internal, None, move || {
            fallback().map(|index| Hybrid::from_index(index.including_internal(include_internal)))
        })
        .await
    }

    /// [`LiveIndex::start`] with `embedder` for the questions: each bundle
    /// whose vectors it made is searched hybrid ([`Loaded::into_retriever`]).
    pub async fn start_with(
        client: aws_sdk_s3::Client,
        settings: &BundleSettings,
        include_internal: bool,
        embedder: Option<Arc<dyn Embedder>>,
        fallback: impl FnOnce() -> anyhow::Result<Hybrid>,
    ) -> anyhow::Result<Self> {
        let at = S3Location::parse(&settings.s3)?;
        let mut seen = None;
        let loaded = match current(&client, &at).await {
            Ok(Some(pointer)) => {
                // A refused version is not downloaded again; one that could
                // not be downloaded is retried at the next check.
                match fetch(&client, &at, &pointer).await {
                    Ok(Ok(loaded)) => {
                        seen = Some(pointer.version.clone());
                        Ok((
                            loaded.into_retriever(include_internal, embedder.as_ref()),
                            pointer.version,
                        ))
                    }
                    Ok(Err(refused)) => {
                        seen = Some(pointer.version.clone());
                        error!(message = "The published knowledge base was refused; using the layer's.", version = %pointer.version, error = %refused);
                        Err(anyhow::Error::new(refused))
                    }
                    Err(e) => {
                        error!(message = "The published knowledge base could not be downloaded; using the layer's.", error = %format!("{e:#}"));
                        Err(e)
                    }
                }
            }
            Ok(None) => {
                info!(message = "No knowledge base is published yet; using the layer's.", bucket = %at.bucket, prefix = %at.prefix);
                Err(anyhow::anyhow!("nothing published at {}", settings.s3))
            }
            Err(e) => {
                error!(message = "The knowledge-base pointer could not be read; using the layer's.", error = %format!("{e:#}"));
                Err(e)
            }
        };
        let (index, version) = match loaded {
            Ok((index, version)) => (index, Some(version)),
            Err(published) => {
                let index = fallback().map_err(|layer| {
                    anyhow::anyhow!(
                        "no knowledge base: the published one: {published:#}; the layer's: {layer:#}"
                    )
                })?;
                (index, None)
            }
        };
        Ok(Self {
            current: RwLock::new(Arc::new(index)),
            version: RwLock::new(version),
            checks: tokio::sync::Mutex::new(Checks {
                last: Some(Instant::now()),
                seen,
            }),
            client,
            at,
            every: Duration::from_secs(settings.check_secs),
            include_internal,
            embedder,
        })
    }

    /// The version in use; `None` for the fallback.
    pub fn version(&self) -> Option<String> {
        self.version.read().expect("version lock").clone()
    }

    /// The retriever in use.
    pub fn retriever(&self) -> Arc<Hybrid> {
        self.current.read().expect("index lock").clone()
    }

    /// Reads the pointer now and swaps to a new valid bundle.
    pub async fn refresh(&self) -> anyhow::Result<Refresh> {
        let mut checks = self.checks.lock().await;
        self.refresh_locked(&mut checks).await
    }

    async fn refresh_locked(&self, checks: &mut Checks) -> anyhow::Result<Refresh> {
        checks.last = Some(Instant::now());
        let Some(pointer) = current(&self.client, &self.at).await? else {
            return Ok(Refresh::NotPublished);
        };
        if checks.seen.as_deref() == Some(pointer.version.as_str()) {
            return Ok(Refresh::Unchanged);
        }
        match fetch(&self.client, &self.at, &pointer).await? {
            Ok(loaded) => {
                let manifest = loaded.manifest.clone();
                let retriever =
                    loaded.into_retriever(self.include_internal, self.embedder.as_ref());
                *self.current.write().expect("index lock") = Arc::new(retriever);
                *self.version.write().expect("version lock") = Some(pointer.version.clone());
                checks.seen = Some(pointer.version.clone());
                info!(
                    message = "Swapped to the published knowledge base.",
                    version = %pointer.version,
                    documents = manifest.documents,
                    passages = manifest.passages
                );
                Ok(Refresh::Swapped(pointer.version))
            }
            Err(refused) => {
                // Remembered, so a bad bundle is not downloaded again every
                // minute; a new publish changes the version.
                checks.seen = Some(pointer.version.clone());
                error!(
                    message = "Refused the published knowledge base; keeping the one in use.",
                    version = %pointer.version,
                    error = %refused
                );
                Ok(Refresh::Refused(pointer.version))
            }
        }
    }

    /// Checks the pointer if it is due and nobody else is checking.
    async fn maybe_refresh(&self) {
        let Ok(mut checks) = self.checks.try_lock() else {
            return;
        };
        if checks.last.is_some_and(|t| t.elapsed() < self.every) {
            return;
        }
        if let Err(e) = self.refresh_locked(&mut checks).await {
            warn!(message = "Could not check the published knowledge base; keeping the one in use.", error = %format!("{e:#}"));
        }
    }
}

#[async_trait]
impl Retriever for LiveIndex {
    async fn retrieve(&self, query: &str, k: usize) -> Result<Vec<Passage>, RetrieveError> {
        self.maybe_refresh().await;
        let index = self.retriever();
        index.retrieve(query, k).await
    }

    async fn retrieve_filtered(
        &self,
        query: &str,
        k: usize,
        filter: &super::filter::Filter,
    ) -> Result<Vec<Passage>, RetrieveError> {
        self.maybe_refresh().await;
        let index = self.retriever();
        index.retrieve_filtered(query, k, filter).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kb(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn refunds() -> tempfile::TempDir {
        kb(&[
            (
                "refunds.md",
                "# Refunds\n\nAnnual plans are refunded within 14 days.",
            ),
            (
                "password.md",
                "# Password\n\nClick Forgot password to reset it.",
            ),
        ])
    }

    #[test]
    fn a_bundle_opens_as_the_index_it_was_built_from() {
        let kb = refunds();
        let b = build(kb.path(), &mut |_, _| {}).unwrap();
        assert_eq!((b.manifest.documents, b.manifest.passages), (2, 2));
        assert!(b.version().ends_with(&b.sha256[..12]), "{}", b.version());
        let (index, manifest) = open(&b.bytes, Some(&b.sha256)).unwrap();
        assert_eq!(manifest, b.manifest);
        let hits = index.search("refund annual plan", 1).unwrap();
        assert_eq!(hits[0].doc_id, "refunds.md");
    }

    #[test]
    fn a_damaged_bundle_is_refused() {
        let kb = refunds();
        let b = build(kb.path(), &mut |_, _| {}).unwrap();
        // Against the pointer's checksum: any changed byte.
        let mut flipped = b.bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(matches!(
            open(&flipped, Some(&b.sha256)),
            Err(BundleError::Checksum { .. })
        ));
        // Without one (the layer file): each file's own checksum.
        assert!(matches!(open(&flipped, None), Err(BundleError::Corrupt(_))));
        for bad in [
            &b.bytes[..b.bytes.len() / 2],
            &b.bytes[..10],
            b"",
            b"DHKBND01\xff\xff\xff\xffgarbage",
            b"PK\x03\x04 a zip file, not a bundle",
        ] {
            assert!(matches!(open(bad, None), Err(BundleError::Corrupt(_))));
        }
    }

    /// Words hashed into `dim` coordinates: texts sharing words are close.
    struct Words {
        identity: &'static str,
        dim: usize,
        calls: std::sync::atomic::AtomicUsize,
    }

    fn words(identity: &'static str, dim: usize) -> Arc<Words> {
        Arc::new(Words {
            identity,
            dim,
            calls: Default::default(),
        })
    }

    #[async_trait]
    impl Embedder for Words {
        fn identity(&self) -> String {
            self.identity.into()
        }

        async fn embed(
            &self,
            texts: &[String],
            _: super::super::embed::Input,
        ) -> Result<Vec<Vec<f32>>, super::super::embed::EmbedError> {
            self.calls
                .fetch_add(texts.len(), std::sync::atomic::Ordering::SeqCst);
            texts
                .iter()
                .map(|t| {
                    let mut v = vec![0.01f32; self.dim];
                    for w in t.to_lowercase().split(|c: char| !c.is_alphanumeric()) {
                        if !w.is_empty() {
                            let h = w.bytes().fold(7u64, |h, b| h.wrapping_mul(31) ^ b as u64);
                            v[(h % self.dim as u64) as usize] += 1.0;
                        }
                    }
                    super::super::embed::normalized(v)
                })
                .collect()
        }
    }

    /// `bytes` with file `name` replaced by `content` (checksums redone,
    /// so only the content is wrong) and the manifest edited by `edit`.
    fn repack(
        bytes: &[u8],
        name: &str,
        content: Option<&[u8]>,
        edit: impl Fn(&mut Manifest),
    ) -> Vec<u8> {
        let head_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let mut manifest: Manifest = serde_json::from_slice(&bytes[12..12 + head_len]).unwrap();
        let mut at = 12 + head_len;
        let mut contents = Vec::new();
        for f in &mut manifest.files {
            let mut c = bytes[at..at + f.size as usize].to_vec();
            at += f.size as usize;
            if f.name == name
                && let Some(new) = content
            {
                c = new.to_vec();
                f.size = c.len() as u64;
                f.sha256 = sha256_hex(&c);
            }
            contents.push(c);
        }
        edit(&mut manifest);
        let head = serde_json::to_vec(&manifest).unwrap();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(head.len() as u32).to_le_bytes());
        out.extend_from_slice(&head);
        contents.iter().for_each(|c| out.extend_from_slice(c));
        out
    }

    #[tokio::test]
    async fn vectors_travel_with_their_embedder_and_only_it_uses_them() {
        let kb = refunds();
        std::fs::write(
            kb.path().join("agents.md"),
            "---\naudience: internal\n---\n# Refund overrides\n\nAgents approve late refunds with code 7731.",
        )
        .unwrap();
        let cache = tempfile::tempdir().unwrap();
        let cache_file = cache.path().join("v.bin");
        let e = words("words:v1", 16);
        let (b, embedded) =
            build_with_vectors(kb.path(), e.clone(), Some(&cache_file), &mut |_, _| {})
                .await
                .unwrap();
        assert_eq!(embedded, 3, "every passage, the internal one too");
        let info = b.manifest.embedder.clone().unwrap();
        assert_eq!((info.dimensions, info.passages), (16, 3));
        assert!(b.manifest.vectors);
        // The cache is reused: a second publish embeds nothing.
        let (again, embedded) =
            build_with_vectors(kb.path(), e.clone(), Some(&cache_file), &mut |_, _| {})
                .await
                .unwrap();
        assert_eq!(embedded, 0);
        assert_eq!(again.manifest.embedder, b.manifest.embedder);

        let calls = e.calls.load(std::sync::atomic::Ordering::SeqCst);
        let same: Arc<dyn Embedder> = e.clone();
        let loaded = open_bundle(&b.bytes, Some(&b.sha256)).unwrap();
        assert_eq!(loaded.documents.as_ref().map(Vec::len), Some(3));
        let hybrid = loaded.into_retriever(false, Some(&same));
        assert_eq!(hybrid.dense_passages(), 2, "customer-visible passages only");
        let hits = hybrid.search("refund annual plan", 2).await.unwrap();
        assert_eq!(hits[0].doc_id, "refunds.md");
        assert!(hits.iter().all(|h| h.doc_id != "agents.md"));
        // Loading embedded no passage; the question was embedded once.
        assert_eq!(e.calls.load(std::sync::atomic::Ordering::SeqCst), calls + 1);
        let with_internal = open_bundle(&b.bytes, None)
            .unwrap()
            .into_retriever(true, Some(&same));
        assert_eq!(with_internal.dense_passages(), 3);

        // Another embedder (or none): BM25 alone, nothing embedded.
        let other: Arc<dyn Embedder> = words("words:v2", 16);
        for embedder in [Some(&other), None] {
            let bm25 = open_bundle(&b.bytes, None)
                .unwrap()
                .into_retriever(false, embedder);
            assert_eq!(bm25.dense_passages(), 0);
            let hits = bm25.search("refund annual plan", 1).await.unwrap();
            assert_eq!(hits[0].doc_id, "refunds.md");
        }
        // Same identity but vectors of another length (a server that
        // changed model under the same name): BM25 from the first
        // question on, and the embedder is not asked again.
        let lying = words("words:v1", 8);
        let as_dyn: Arc<dyn Embedder> = lying.clone();
        let hybrid = open_bundle(&b.bytes, None)
            .unwrap()
            .into_retriever(false, Some(&as_dyn));
        assert_eq!(hybrid.dense_passages(), 2);
        let hits = hybrid.search("refund annual plan", 1).await.unwrap();
        assert_eq!(hits[0].doc_id, "refunds.md");
        assert_eq!(hybrid.dense_passages(), 0, "turned off");
        hybrid.search("password", 1).await.unwrap();
        assert_eq!(lying.calls.load(std::sync::atomic::Ordering::SeqCst), 1);

        // A bundle without vectors carries its documents (spelling works).
        let plain = build(kb.path(), &mut |_, _| {}).unwrap();
        assert!(plain.manifest.embedder.is_none() && !plain.manifest.vectors);
        assert!(b.bytes.len() > plain.bytes.len());
        let hybrid = open_bundle(&plain.bytes, None)
            .unwrap()
            .into_retriever(false, Some(&same));
        let hits = hybrid.search("anual refnuds", 1).await.unwrap();
        assert_eq!(hits[0].doc_id, "refunds.md");
    }

    #[tokio::test]
    async fn garbage_documents_or_vectors_refuse_the_bundle() {
        let kb = refunds();
        let (b, _) = build_with_vectors(kb.path(), words("words:v1", 16), None, &mut |_, _| {})
            .await
            .unwrap();
        let refused = |bytes: Vec<u8>, why: &str| {
            let err = open_bundle(&bytes, None)
                .err()
                .expect("refused")
                .to_string();
            assert!(err.contains(why), "{why}: {err}");
        };
        refused(
            repack(
                &b.bytes,
                VECTORS_FILE,
                Some(b"garbage, not vectors"),
                |_| {},
            ),
            "not a vector file",
        );
        refused(
            repack(
                &b.bytes,
                VECTORS_FILE,
                Some(b"DHVEC1\0\0\x10\0\0\0short"),
                |_| {},
            ),
            "not a vector file",
        );
        refused(
            repack(
                &b.bytes,
                DOCUMENTS_FILE,
                Some(b"{\"not\": \"documents\"}"),
                |_| {},
            ),
            DOCUMENTS_FILE,
        );
        refused(
            repack(&b.bytes, DOCUMENTS_FILE, Some(b"[]"), |_| {}),
            "holds 0 documents",
        );
        // Vectors of another dimension than the manifest says.
        let eight =
            hybrid::encode_vectors(&[([1u8; 32], &[1.0f32; 8][..]), ([2u8; 32], &[1.0f32; 8][..])]);
        refused(
            repack(&b.bytes, VECTORS_FILE, Some(&eight), |_| {}),
            "8 dimensions",
        );
        // NaN in a vector.
        let mut nan = hybrid::encode_vectors(&[
            ([1u8; 32], &[1.0f32; 16][..]),
            ([2u8; 32], &[1.0f32; 16][..]),
        ]);
        let l = nan.len();
        nan[l - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
        refused(
            repack(&b.bytes, VECTORS_FILE, Some(&nan), |_| {}),
            "not a vector file",
        );
        // A manifest that names an embedder without vectors, and the reverse.
        refused(
            repack(&b.bytes, "", None, |m| {
                m.files.retain(|f| f.name != VECTORS_FILE);
            }),
            "",
        );
        let plain = build(kb.path(), &mut |_, _| {}).unwrap();
        let info = b.manifest.embedder.clone();
        refused(
            repack(&plain.bytes, "", None, move |m| m.embedder = info.clone()),
            "no deskhand-vectors.bin",
        );
        // Random bytes after a valid-looking head.
        for seed in 0..64u64 {
            let mut bytes = b.bytes.clone();
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for _ in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = 12 + (x as usize % (bytes.len() - 12));
                bytes[at] ^= (x >> 32) as u8 | 1;
            }
            assert!(open_bundle(&bytes, None).is_err(), "seed {seed}");
        }
    }

    #[test]
    fn file_names_that_leave_the_folder_are_refused() {
        let manifest = Manifest {
            format: FORMAT,
            created_at: "2026-12-02T00:00:00Z".into(),
            kb_fingerprint: String::new(),
            documents: 0,
            passages: 0,
            vectors: false,
            embedder: None,
            files: vec![FileEntry {
                name: "../evil".into(),
                size: 1,
                sha256: sha256_hex(b"x"),
            }],
        };
        let head = serde_json::to_vec(&manifest).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(head.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&head);
        bytes.push(b'x');
        let err = open(&bytes, None).err().unwrap().to_string();
        assert!(err.contains("plain name"), "{err}");
    }

    #[test]
    fn the_layer_file_is_used_only_while_it_matches_the_folder() {
        let kb = refunds();
        assert!(open_layer(kb.path()).unwrap().is_none(), "no file yet");
        write_layer(kb.path(), &mut |_, _| {}).unwrap();
        let (index, _) = open_layer(kb.path()).unwrap().expect("a fresh bundle");
        assert_eq!(index.len(), 2);
        // The bundle is not read as a document.
        assert_eq!(fingerprint(kb.path()).unwrap().len(), 64);
        std::fs::write(kb.path().join("new.md"), "# New\n\nNew text.").unwrap();
        assert!(
            open_layer(kb.path()).unwrap().is_none(),
            "stale bundle used"
        );
        std::fs::write(kb.path().join(LAYER_FILE), b"garbage").unwrap();
        assert!(open_layer(kb.path()).is_err());
    }

    #[test]
    fn s3_addresses_parse() {
        let l = S3Location::parse("s3://my-kb.bucket/help/centre/").unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("my-kb.bucket", "help/centre")
        );
        assert_eq!(l.pointer_key(), "help/centre/current");
        let l = S3Location::parse("s3://bucket").unwrap();
        assert_eq!(l.pointer_key(), "current");
        for bad in [
            "bucket/x",
            "s3://",
            "s3://UPPER/x",
            "s3://b/x",
            "s3://bucket/a//b",
            "s3://bucket/../x",
        ] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
    }
}
