//! The embedded knowledge base: a tantivy (BM25) index over a folder of
//! Markdown and text files, rebuilt when the folder's content changes.
//!
//! Internal passages (agent-facing documents, sections and paragraphs, see
//! [`markdown`]) are indexed but never retrieved unless the index is told
//! to include them ([`TantivyIndex::including_internal`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer, TokenStream,
};
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument, Term, doc};

use super::filter::{self, Filter};
use super::markdown::{self, Document};
use super::{Passage, RetrieveError, Retriever};

const ANALYZER: &str = "deskhand_en";
/// The file beside an on-disk index naming the KB state it was built from.
pub const FINGERPRINT_FILE: &str = "deskhand-kb.fingerprint";
/// File endings read as knowledge-base documents.
const EXTENSIONS: &[&str] = &["md", "markdown", "txt"];
/// Greetings and sign-offs: common in tickets, never what they are about.
const SALUTATIONS: &[&str] = &[
    "hi",
    "hello",
    "hey",
    "hiya",
    "dear",
    "thanks",
    "thank",
    "thx",
    "please",
    "pls",
    "regards",
    "cheers",
    "kind",
    "best",
    "sincerely",
    "ok",
    "okay",
];
/// Field boosts: a match in a heading says more than one in the body.
const TITLE_BOOST: f32 = 1.5;
const SECTION_BOOST: f32 = 1.3;
/// Weight of a question term the KB never uses, relative to the mean
/// weight of the terms it knows. Unknown words are specific ("bitcoin",
/// "timer"): their absence says the KB may not cover the question. Chosen
/// on the dev set, checked on the hold-out KB (see README "Evaluation").
const UNKNOWN_TERM_WEIGHT: f32 = 1.5;

#[derive(Clone, Copy)]
struct Fields {
    doc_id: Field,
    title: Field,
    section: Field,
    body: Field,
    url: Field,
    audience: Field,
    locale: Field,
    label: Field,
}

/// What a build read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Documents indexed.
    pub documents: usize,
    /// Passages indexed.
    pub passages: usize,
}

/// The `audience` value of internal passages.
const INTERNAL: &str = "internal";

/// The embedded index.
#[derive(Clone)]
pub struct TantivyIndex {
    reader: IndexReader,
    fields: Fields,
    include_internal: bool,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let fields = Fields {
        doc_id: b.add_text_field("doc_id", STRING | STORED),
        title: b.add_text_field("title", text.clone()),
        section: b.add_text_field("section", text.clone()),
        body: b.add_text_field("body", text),
        url: b.add_text_field("url", STORED),
        audience: b.add_text_field("audience", STRING),
        locale: b.add_text_field("locale", STRING),
        label: b.add_text_field("label", STRING),
    };
    (b.build(), fields)
}

fn analyzer() -> TextAnalyzer {
    let stop: Vec<String> = stop_words::get(stop_words::LANGUAGE::English)
        .iter()
        .chain(SALUTATIONS)
        .map(|w| w.to_string())
        .collect();
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(StopWordFilter::remove(stop))
        .filter(Stemmer::new(Language::English))
        .build()
}

static ANALYZER_PROTO: std::sync::LazyLock<TextAnalyzer> = std::sync::LazyLock::new(analyzer);

/// The analyzed terms of `text` (lower-cased, folded, stop words removed,
/// stemmed), de-duplicated, in order: the same terms the index holds.
pub fn analyze(text: &str) -> Vec<String> {
    let mut analyzer = ANALYZER_PROTO.clone();
    let mut stream = analyzer.token_stream(text);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while stream.advance() {
        let t = &stream.token().text;
        if seen.insert(t.clone()) {
            out.push(t.clone());
        }
    }
    out
}

/// Every KB file under `kb`, as (id relative to `kb`, path), sorted.
pub fn kb_files(kb: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    if !kb.is_dir() {
        bail!("knowledge base folder {} does not exist", kb.display());
    }
    let mut files = Vec::new();
    let walk = walkdir::WalkDir::new(kb)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walk {
        let entry = entry.with_context(|| format!("reading {}", kb.display()))?;
        let path = entry.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if entry.file_type().is_file() && EXTENSIONS.contains(&ext.as_str()) {
            let rel = path.strip_prefix(kb).unwrap_or(path);
            let id = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            files.push((id, path.to_owned()));
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("no .md, .markdown or .txt files under {}", kb.display());
    }
    Ok(files)
}

/// A digest of the KB's file names and contents: the index is rebuilt
/// when it changes.
pub fn fingerprint(kb: &Path) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    h.update(b"deskhand-kb-v2\0");
    for (id, path) in kb_files(kb)? {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        h.update(id.as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(hex::encode(h.finalize()))
}

/// Reads and parses every KB document.
pub fn load_documents(
    kb: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<Vec<Document>> {
    let files = kb_files(kb)?;
    let total = files.len();
    files
        .into_iter()
        .enumerate()
        .map(|(i, (id, path))| {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            progress(i + 1, total);
            Ok(markdown::parse(&id, &String::from_utf8_lossy(&bytes)))
        })
        .collect()
}

impl TantivyIndex {
    /// Opens the index in `dir` if it was built from `kb` as it is now;
    /// otherwise (re)builds it. Returns the build's stats when it built.
    pub fn open_or_build(
        kb: &Path,
        dir: &Path,
        progress: &mut dyn FnMut(usize, usize),
    ) -> anyhow::Result<(Self, Option<BuildStats>)> {
        let current = fingerprint(kb)?;
        let stored = std::fs::read_to_string(dir.join(FINGERPRINT_FILE)).ok();
        if stored.as_deref() == Some(current.as_str())
            && let Ok(index) = Self::open(dir)
        {
            return Ok((index, None));
        }
        let (index, stats) = Self::build(kb, dir, &current, progress)?;
        Ok((index, Some(stats)))
    }

    /// Builds the index for `kb` into `dir`, replacing what is there.
    pub fn build(
        kb: &Path,
        dir: &Path,
        fingerprint: &str,
        progress: &mut dyn FnMut(usize, usize),
    ) -> anyhow::Result<(Self, BuildStats)> {
        let docs = load_documents(kb, progress)?;
        // Build beside the old index and swap, so a crash mid-build leaves
        // either the old index or none, never a half-built one.
        let tmp = dir.with_extension(format!("building-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let directory = tantivy::directory::MmapDirectory::open(&tmp)
            .with_context(|| format!("opening {}", tmp.display()))?;
        let (index, stats) = Self::write(directory, &docs).context("building the index")?;
        std::fs::write(tmp.join(FINGERPRINT_FILE), fingerprint)?;
        drop(index);
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::rename(&tmp, dir)
            .with_context(|| format!("moving the index to {}", dir.display()))?;
        Ok((Self::open(dir)?, stats))
    }

    /// An index in memory (the Lambda worker's bundled KB, eval,
    /// benchmarks, tests).
    pub fn in_memory(docs: &[Document]) -> anyhow::Result<Self> {
        let (index, _) = Self::write(tantivy::directory::RamDirectory::create(), docs)?;
        Self::from_index(index, schema().1)
    }

    /// Opens a prebuilt index held in `directory` (a published bundle's
    /// files, see [`super::bundle`]) without rebuilding it; an index of
    /// another schema is refused.
    pub fn open_directory(directory: impl tantivy::Directory) -> anyhow::Result<Self> {
        let index = Index::open(directory).context("opening the prebuilt index")?;
        let (expected, fields) = schema();
        anyhow::ensure!(
            index.schema() == expected,
            "the prebuilt index has another schema (built by another deskhand version)"
        );
        Self::from_index(index, fields)
    }

    fn open(dir: &Path) -> anyhow::Result<Self> {
        let index =
            Index::open_in_dir(dir).with_context(|| format!("opening {}", dir.display()))?;
        let (expected, fields) = schema();
        if index.schema() != expected {
            bail!("the index in {} has an older schema", dir.display());
        }
        Self::from_index(index, fields)
    }

    fn from_index(index: Index, fields: Fields) -> anyhow::Result<Self> {
        index.tokenizers().register(ANALYZER, analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            reader,
            fields,
            include_internal: false,
        })
    }

    /// Whether internal (agent-facing) passages may be retrieved; off by
    /// default, so they never reach a customer answer.
    pub fn including_internal(mut self, include: bool) -> Self {
        self.include_internal = include;
        self
    }

    /// Indexes `docs` into the empty `directory` as one segment, on this
    /// thread. The KB is indexed in one go and never updated, which is what
    /// tantivy's single-segment writer is for: no indexing and merging
    /// threads to start, and a term table sized to the text rather than the
    /// 15 MB minimum of a threaded writer. For the bundled KB that is about
    /// 5 ms instead of 12-16 (release build), most of a Lambda cold start's
    /// index step. (The API is `doc(hidden)` in tantivy 0.27; the lock file
    /// pins it, and a change there fails to compile rather than misbehaving.)
    fn write(
        directory: impl tantivy::Directory,
        docs: &[Document],
    ) -> anyhow::Result<(Index, BuildStats)> {
        let (schema, f) = schema();
        let tokenizers = tantivy::tokenizer::TokenizerManager::default();
        tokenizers.register(ANALYZER, analyzer());
        let text_bytes: usize = docs
            .iter()
            .flat_map(|d| &d.chunks)
            .map(|c| c.text.len())
            .sum();
        let budget = (text_bytes * 4).clamp(1 << 20, 50 << 20);
        let mut writer = Index::builder()
            .schema(schema)
            .tokenizers(tokenizers)
            .single_segment_index_writer::<TantivyDocument>(directory, budget)?;
        let mut stats = BuildStats::default();
        for d in docs {
            stats.documents += 1;
            for passage in passages_of(&f, d) {
                stats.passages += 1;
                writer.add_document(passage)?;
            }
        }
        Ok((writer.finalize()?, stats))
    }

    /// Replaces the passages of `changed` documents and removes those of
    /// `removed` ones (by document id), then makes every clone of this index
    /// see the result. What `serve` does when KB files change
    /// ([`super::watch`]); a crash mid-update leaves the last commit.
    pub fn update(&self, removed: &[String], changed: &[Document]) -> anyhow::Result<()> {
        let index = self.reader.searcher().index().clone();
        let mut writer: tantivy::IndexWriter<TantivyDocument> = index
            .writer_with_num_threads(1, 15_000_000)
            .context("opening the index for an update")?;
        for id in removed.iter().chain(changed.iter().map(|d| &d.doc_id)) {
            writer.delete_term(Term::from_field_text(self.fields.doc_id, id));
        }
        for d in changed {
            for passage in passages_of(&self.fields, d) {
                writer.add_document(passage)?;
            }
        }
        writer.commit().context("committing the index update")?;
        writer
            .wait_merging_threads()
            .context("finishing the index update")?;
        self.reader.reload().context("reloading the index")?;
        Ok(())
    }

    /// Passages indexed.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

/// The index documents of `d`'s passages.
fn passages_of(f: &Fields, d: &Document) -> Vec<TantivyDocument> {
    d.chunks
        .iter()
        .map(|c| {
            let mut passage = doc!(
                f.doc_id => d.doc_id.as_str(),
                f.title => d.title.as_str(),
                f.section => c.section.as_deref().unwrap_or(""),
                f.body => c.text.as_str(),
                f.url => d.url.as_deref().unwrap_or(""),
                f.audience => if c.internal { INTERNAL } else { "public" },
            );
            // Metadata filters (see `filter`): "_none" marks a passage
            // that has no locale, or no labels.
            match &d.locale {
                Some(l) => filter::locale_terms(l)
                    .iter()
                    .for_each(|t| passage.add_text(f.locale, t)),
                None => passage.add_text(f.locale, filter::NONE),
            }
            if d.labels.is_empty() {
                passage.add_text(f.label, filter::NONE);
            }
            d.labels.iter().for_each(|l| passage.add_text(f.label, l));
            passage
        })
        .collect()
}

impl TantivyIndex {
    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `k` best passages for `query`, with BM25 scores and relevance.
    ///
    /// Relevance is the IDF-weighted share of the question's terms that the
    /// passage (with its title and heading) contains; a term the KB never
    /// uses weighs [`UNKNOWN_TERM_WEIGHT`] times an average known term.
    pub fn search(&self, query: &str, k: usize) -> anyhow::Result<Vec<Passage>> {
        self.search_filtered(query, k, &Filter::default())
    }

    /// [`Self::search`] within `filter`: passages of its labels (or of
    /// none), in its locale (or none) when any match, else in any locale.
    pub fn search_filtered(
        &self,
        query: &str,
        k: usize,
        filter: &Filter,
    ) -> anyhow::Result<Vec<Passage>> {
        if let Some(locale) = &filter.locale {
            let hits = self.search_within(query, k, Some(locale), &filter.labels)?;
            if !hits.is_empty() {
                return Ok(hits);
            }
        }
        self.search_within(query, k, None, &filter.labels)
    }

    fn search_within(
        &self,
        query: &str,
        k: usize,
        locale: Option<&str>,
        labels: &[String],
    ) -> anyhow::Result<Vec<Passage>> {
        let terms = analyze(&super::topical(query));
        if terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let n = searcher.num_docs() as f32;
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut weights = Vec::with_capacity(terms.len());
        for t in &terms {
            let mut df = 0;
            for (field, boost) in [
                (f.title, TITLE_BOOST),
                (f.section, SECTION_BOOST),
                (f.body, 1.0),
            ] {
                let term = Term::from_field_text(field, t);
                df = df.max(searcher.doc_freq(&term)?);
                let q = TermQuery::new(term, IndexRecordOption::WithFreqs);
                clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(q), boost))));
            }
            weights.push((df > 0).then(|| idf(df as f32, n)));
        }
        let known: Vec<f32> = weights.iter().flatten().copied().collect();
        if known.is_empty() {
            return Ok(Vec::new());
        }
        let neutral = known.iter().sum::<f32>() / known.len() as f32;
        let weights: Vec<f32> = weights
            .into_iter()
            .map(|w| w.unwrap_or(neutral * UNKNOWN_TERM_WEIGHT))
            .collect();
        let total: f32 = weights.iter().sum();

        let mut query: Box<dyn Query> = Box::new(BooleanQuery::new(clauses));
        if !self.include_internal {
            let internal = TermQuery::new(
                Term::from_field_text(f.audience, INTERNAL),
                IndexRecordOption::Basic,
            );
            query = Box::new(BooleanQuery::new(vec![
                (Occur::Must, query),
                (Occur::MustNot, Box::new(internal)),
            ]));
        }
        // Filters only: they must match, and add nothing to the score.
        let any_of = |field, values: Vec<String>| -> Box<dyn Query> {
            let any = BooleanQuery::new(
                values
                    .iter()
                    .map(|v| {
                        let q: Box<dyn Query> = Box::new(TermQuery::new(
                            Term::from_field_text(field, v),
                            IndexRecordOption::Basic,
                        ));
                        (Occur::Should, q)
                    })
                    .collect(),
            );
            Box::new(ConstScoreQuery::new(Box::new(any), 0.0))
        };
        let mut musts = Vec::new();
        if let Some(l) = locale {
            let mut values = filter::locale_terms(l);
            values.push(filter::NONE.to_owned());
            musts.push((Occur::Must, any_of(f.locale, values)));
        }
        if !labels.is_empty() {
            let mut values = labels.to_vec();
            values.push(filter::NONE.to_owned());
            musts.push((Occur::Must, any_of(f.label, values)));
        }
        if !musts.is_empty() {
            musts.insert(0, (Occur::Must, query));
            query = Box::new(BooleanQuery::new(musts));
        }
        let hits = searcher.search(&*query, &TopDocs::with_limit(k).order_by_score())?;
        let mut out = Vec::with_capacity(hits.len());
        for (score, address) in hits {
            let d: TantivyDocument = searcher.doc(address)?;
            let get = |field| {
                d.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned()
            };
            let (title, section, text) = (get(f.title), get(f.section), get(f.body));
            let present: HashSet<String> = analyze(&format!("{title}\n{section}\n{text}"))
                .into_iter()
                .collect();
            let covered: f32 = terms
                .iter()
                .zip(&weights)
                .filter(|(t, _)| present.contains(*t))
                .map(|(_, w)| w)
                .sum();
            let url = get(f.url);
            out.push(Passage {
                doc_id: get(f.doc_id),
                title,
                section: (!section.is_empty()).then_some(section),
                text,
                url: (!url.is_empty()).then_some(url),
                score,
                relevance: (covered / total).clamp(0.0, 1.0),
            });
        }
        Ok(out)
    }
}

/// BM25's inverse document frequency.
fn idf(df: f32, n: f32) -> f32 {
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
}

#[async_trait]
impl Retriever for TantivyIndex {
    async fn retrieve(&self, query: &str, k: usize) -> Result<Vec<Passage>, RetrieveError> {
        let index = self.clone();
        let query = query.to_owned();
        tokio::task::spawn_blocking(move || index.search(&query, k))
            .await
            .map_err(|e| RetrieveError::Permanent(anyhow::anyhow!("search task failed: {e}")))?
            .map_err(RetrieveError::Permanent)
    }

    async fn retrieve_filtered(
        &self,
        query: &str,
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>, RetrieveError> {
        let index = self.clone();
        let (query, filter) = (query.to_owned(), filter.clone());
        tokio::task::spawn_blocking(move || index.search_filtered(&query, k, &filter))
            .await
            .map_err(|e| RetrieveError::Permanent(anyhow::anyhow!("search task failed: {e}")))?
            .map_err(RetrieveError::Permanent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> Vec<Document> {
        vec![
            markdown::parse(
                "billing/refunds.md",
                "---\nurl: https://help.example/refunds\n---\n# Refunds\n\nWe refund annual plans within 14 days of purchase.\n\n## Monthly plans\n\nMonthly plans are not refunded; cancel any time.",
            ),
            markdown::parse(
                "account/password.md",
                "# Resetting your password\n\nClick Forgot password on the sign-in page and follow the emailed link.",
            ),
            markdown::parse(
                "misc/about.txt",
                "We make invoicing software for freelancers.",
            ),
        ]
    }

    #[test]
    fn finds_the_right_passage_with_relevance_and_citation() {
        let idx = TantivyIndex::in_memory(&docs()).unwrap();
        assert_eq!(idx.len(), 4);
        let hits = idx
            .search("How do I get a refund on my annual plan?", 3)
            .unwrap();
        let top = &hits[0];
        assert_eq!(top.doc_id, "billing/refunds.md");
        assert_eq!(top.url.as_deref(), Some("https://help.example/refunds"));
        assert!(top.text.contains("14 days"), "{}", top.text);
        assert!(top.relevance > 0.6, "relevance {}", top.relevance);
        let pw = idx.search("I forgot my password", 3).unwrap();
        assert_eq!(pw[0].doc_id, "account/password.md");
        assert_eq!(pw[0].section, None);
    }

    #[test]
    fn addresses_links_and_numbers_do_not_dilute_relevance() {
        let idx = TantivyIndex::in_memory(&docs()).unwrap();
        let plain = idx
            .search("How do I get a refund on my annual plan?", 1)
            .unwrap()[0]
            .relevance;
        let noisy = idx
            .search("How do I get a refund on my annual plan? jane.doe@mail.example 4411-2290-1188 https://x.example/a/b +44 20 7946 0958", 1)
            .unwrap()[0]
            .relevance;
        assert!((plain - noisy).abs() < 1e-6, "{plain} vs {noisy}");
    }

    #[test]
    fn unrelated_or_empty_questions_find_little() {
        let idx = TantivyIndex::in_memory(&docs()).unwrap();
        assert!(idx.search("", 3).unwrap().is_empty());
        assert!(idx.search("hello thanks!!", 3).unwrap().is_empty());
        assert!(idx.search("weather forecast paris", 3).unwrap().is_empty());
        // Query syntax is not interpreted: these are just words.
        for q in [
            "title:refunds AND (",
            "\"unbalanced",
            "*:*",
            "refund^999",
            "-refund",
        ] {
            let hits = idx.search(q, 3).unwrap();
            assert!(hits.iter().all(|h| h.relevance <= 1.0), "{q}");
        }
    }

    #[test]
    fn builds_on_disk_and_rebuilds_only_when_the_kb_changes() {
        let kb = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("index");
        std::fs::write(kb.path().join("a.md"), "# Alpha\n\nAlpha facts here.").unwrap();
        std::fs::create_dir(kb.path().join(".git")).unwrap();
        std::fs::write(kb.path().join(".git/x.md"), "# hidden").unwrap();
        let (_, built) = TantivyIndex::open_or_build(kb.path(), &dir, &mut |_, _| {}).unwrap();
        assert_eq!(
            built,
            Some(BuildStats {
                documents: 1,
                passages: 1
            })
        );
        let (_, built) = TantivyIndex::open_or_build(kb.path(), &dir, &mut |_, _| {}).unwrap();
        assert_eq!(built, None, "rebuilt an unchanged KB");
        std::fs::write(kb.path().join("b.md"), "# Beta\n\nBeta facts.").unwrap();
        let (idx, built) = TantivyIndex::open_or_build(kb.path(), &dir, &mut |_, _| {}).unwrap();
        assert_eq!(built.map(|b| b.documents), Some(2));
        assert_eq!(idx.search("beta", 1).unwrap()[0].doc_id, "b.md");
    }

    #[test]
    fn internal_passages_are_retrieved_only_when_allowed() {
        let docs = vec![
            markdown::parse(
                "agents/bypass.md",
                "---\naudience: internal\n---\n# Bypass codes\n\nThe bypass code for a locked account is 4242.",
            ),
            markdown::parse(
                "account/locked.md",
                "# Locked account\n\nA locked account opens again after 15 minutes.\n\n## Agent notes\n\nRead the bypass code to a verified caller.\n\nAdvise the customer that the bypass code works once.",
            ),
        ];
        let idx = TantivyIndex::in_memory(&docs).unwrap();
        let hits = idx.search("bypass code locked account", 5).unwrap();
        assert!(!hits.is_empty());
        for h in &hits {
            assert!(!h.text.contains("bypass"), "internal text retrieved: {h:?}");
        }
        let all = idx
            .including_internal(true)
            .search("bypass code locked account", 5)
            .unwrap();
        assert!(all.iter().any(|h| h.doc_id == "agents/bypass.md"));
        assert!(all.iter().any(|h| h.text.contains("Advise the customer")));
    }

    #[test]
    fn empty_or_missing_kb_is_a_clear_error() {
        let kb = tempfile::tempdir().unwrap();
        let err = fingerprint(kb.path()).unwrap_err().to_string();
        assert!(err.contains("no .md"), "{err}");
        let err = fingerprint(&kb.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
