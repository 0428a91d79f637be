//! Retrieval and decision quality on the shipped case sets must not
//! regress below the figures stated in the README. The hold-out set's KB
//! was never used for tuning: it checks that the defaults generalize.

use crate::common;

use deskhand::config::Config;
use deskhand::pipeline::{Policy, Responder, Rules};
use deskhand::runtime;
use deskhand::tools::eval::{self, Report};

async fn evaluate(kb: &str, set: &str) -> Report {
    let root = common::root();
    let config = Config {
        kb_dir: root.join(kb),
        ..Config::default()
    };
    // The product's retriever: BM25 with spelling correction and near-twin
    // disambiguation (no embedder configured: tests/tools/eval_embeddings.rs).
    let responder = Responder::new(
        runtime::retriever_in_memory(&config).unwrap(),
        runtime::generator(&config, runtime::Aws::Lazy).unwrap(),
        Rules::new(&config.pipeline).unwrap(),
        Policy::from_config(&config),
    );
    let cases = eval::load_cases(&root.join(set)).unwrap();
    eval::run(&responder, &cases).await.unwrap()
}

#[tokio::test]
async fn dev_set_meets_its_thresholds() {
    let r = evaluate("fixtures/kb", "fixtures/eval/dev.jsonl").await;
    let shown = r.render();
    assert!(r.total >= 40, "{shown}");
    // The dev set asks 10 questions in other languages, which BM25 alone
    // cannot read (tests/tools/eval_embeddings.rs covers them): English is judged.
    assert!(r.retrieval_hit_at_3 >= 0.70, "{shown}");
    let (hits, n) = r.hit_at_3_by_language["en"];
    assert!(hits * 100 >= n * 80, "English hit@3 {hits} of {n}: {shown}");
    assert!(r.escalation_recall >= 0.90, "{shown}");
    assert!(r.escalation_precision >= 0.60, "{shown}");
    // Answered correctly: cites an expected document and states every
    // expected fact (9 of 30 before facts could be checked; 25 of 50
    // before answer units knew what "how many" counts: now 29).
    assert!(r.answered_correct >= 28, "{shown}");
    assert!(r.facts_cases >= 40, "the dev set must check facts");
    // Confidence means something: the most confident answers are mostly right.
    let top = r.calibration.last().unwrap();
    assert!(top.count >= 10 && top.accuracy >= 0.75, "{shown}");
    // The target: answers at 0.85 or more are 90 % right (21 of
    // them, 95 %, with the log-loss slope; 31 at 87 % with the old one).
    let confident = &r.confident;
    assert!(
        confident.count >= 15 && confident.accuracy >= 0.9,
        "{shown}"
    );
    // Rule-driven reasons must be named right.
    for reason in ["asked_for_human", "sensitive_topic", "negative_sentiment"] {
        let c = &r.reasons[reason];
        assert!(c.expected >= 4, "the dev set must exercise {reason}");
        assert!(c.matched * 4 >= c.expected * 3, "{reason}: {shown}");
    }
    // Questions the KB does not cover must reach a person; with the
    // extractive generator some arrive as low_confidence rather than
    // no_knowledge (its confidence is itself a coverage measure).
    let uncovered: Vec<_> = r
        .cases
        .iter()
        .filter(|c| c.expected_reason.map(|x| x.as_str()) == Some("no_knowledge"))
        .collect();
    assert!(
        uncovered.len() >= 4,
        "the dev set must exercise no_knowledge"
    );
    let escalated = uncovered.iter().filter(|c| c.reason.is_some()).count();
    assert!(escalated * 6 >= uncovered.len() * 5, "{shown}");
}

#[tokio::test]
async fn hold_out_knowledge_base_meets_its_thresholds() {
    let r = evaluate("fixtures/kb-holdout", "fixtures/eval/holdout.jsonl").await;
    let shown = r.render();
    assert!(r.retrieval_hit_at_3 >= 0.80, "{shown}");
    assert!(r.escalation_recall >= 0.80, "{shown}");
    // Escalating wrong answers (low_confidence) counts against precision:
    // 0.72 with facts-aware confidence (0.86 before, when confident wrong
    // answers went out).
    assert!(r.escalation_precision >= 0.70, "{shown}");
    // Now with facts (the code before this measure: 6 of 17).
    assert!(r.answered_correct >= 7, "{shown}");
}
