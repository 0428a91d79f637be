//! The pipeline's settings (`[pipeline]`): retrieval depth, rules, the
//! confidence gate, holding messages and conversation-act replies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Retrieval, rules and the confidence gate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    /// Earlier messages given to the generator.
    pub history_turns: usize,
    /// Passages retrieved.
    pub top_k: usize,
    /// Passage text given to an LLM is cut to this many characters.
    pub max_passage_chars: usize,
    /// Answers below this confidence go to a human (`low_confidence`).
    pub min_confidence: f32,
    /// Below this best-passage relevance the KB is taken not to cover the
    /// question (`no_knowledge`), and no model is called.
    pub min_relevance: f32,
    /// VADER compound score at or below which a message counts as upset.
    pub negative_sentiment: f64,
    /// Extra phrases (case-insensitive) that ask for a person.
    pub human_phrases: Vec<String>,
    /// Topic → words or phrases; any match escalates as `sensitive_topic`.
    pub sensitive_topics: BTreeMap<String, Vec<String>>,
    /// What the customer sees when a ticket goes to a person.
    pub holding_message: String,
    /// What a chat customer sees when a question goes to a person but the
    /// bot keeps answering (`no_knowledge`, `low_confidence`,
    /// `unsupported_language`).
    pub chat_holding_message: String,
    /// Replies to greetings, thanks, acknowledgements and goodbyes, by
    /// language (`en`, `es`, `fr`, `de`, `pt`, `it`, `nl`); a missing text
    /// falls back to English.
    pub act_replies: BTreeMap<String, crate::pipeline::acts::ActReplies>,
    /// Use internal (agent-facing) KB content in answers: documents marked
    /// `audience: internal` or titled so, internal sections, and text in an
    /// agent's voice ("Instruct the customer…"). Off: they never reach a
    /// customer.
    pub answer_from_internal: bool,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        let topics = [
            (
                "legal",
                &[
                    "lawyer",
                    "attorney",
                    "lawsuit",
                    "sue",
                    "suing",
                    "legal action",
                    "court",
                    "solicitor",
                    "abogado",
                    "abogada",
                    "demanda judicial",
                    "demandar",
                    "avocat",
                    "avocate",
                    "procès",
                    "poursuites judiciaires",
                    "anwalt",
                    "anwältin",
                    "rechtsanwalt",
                    "verklagen",
                    "vor gericht",
                    "advogado",
                    "advogada",
                    "processo judicial",
                    "processar vocês",
                    "tribunal",
                ][..],
            ),
            (
                "security",
                &[
                    "hacked",
                    "hacker",
                    "hijacked",
                    "compromised",
                    "unauthorized access",
                    "unauthorised access",
                    "someone got into my account",
                    "someone logged into my account",
                    "someone logged in to my account",
                    "someone accessed my account",
                    "someone has access to my account",
                    "someone is in my account",
                    "someone changed my password",
                    "someone else logged in",
                    "took over my account",
                    "account takeover",
                    "account was taken over",
                    "data breach",
                    "breach",
                    "data leak",
                    "leaked my data",
                    "my data was leaked",
                    "my data has been leaked",
                    "data was exposed",
                    "exposed my data",
                    "phishing",
                    "stolen account",
                    "sim swap",
                    "hackeado",
                    "hackeada",
                    "hackearon",
                    "piraté",
                    "piratée",
                    "piratage",
                    "gehackt",
                    "invadida",
                    "invadiram",
                ][..],
            ),
            (
                "fraud",
                &[
                    "fraud",
                    "fraudulent",
                    "identity theft",
                    "didn't make this purchase",
                    "didnt make this purchase",
                    "did not make this purchase",
                    "didn't make this payment",
                    "did not make this payment",
                    "never made this purchase",
                    "didn't authorize",
                    "didn't authorise",
                    "did not authorize",
                    "did not authorise",
                    "never authorized",
                    "never authorised",
                    "unauthorized charge",
                    "unauthorised charge",
                    "unauthorized charges",
                    "unauthorised charges",
                    "unauthorized payment",
                    "unauthorized transaction",
                    "someone used my card",
                    "someone is using my card",
                    "someone used my credit card",
                    "my card was stolen",
                    "stolen card",
                    "don't recognize this charge",
                    "don't recognise this charge",
                    "do not recognize this charge",
                    "fraude",
                    "betrug",
                    "no reconozco este cargo",
                    "no hice esta compra",
                    "je n'ai pas fait cet achat",
                    "nicht autorisiert",
                    "não fiz essa compra",
                    "não reconheço",
                ][..],
            ),
            (
                "bereavement",
                &[
                    "passed away",
                    "has died",
                    "have died",
                    "had died",
                    "who died",
                    "died recently",
                    "recently died",
                    "died last",
                    "husband died",
                    "wife died",
                    "partner died",
                    "father died",
                    "mother died",
                    "dad died",
                    "mum died",
                    "mom died",
                    "son died",
                    "daughter died",
                    "brother died",
                    "sister died",
                    "deceased",
                    "bereavement",
                    "death certificate",
                    "probate",
                    "falleció",
                    "fallecido",
                    "fallecida",
                    "décédé",
                    "décédée",
                    "décès",
                    "verstorben",
                    "verstorbene",
                    "ist gestorben",
                    "faleceu",
                    "falecido",
                    "falecida",
                ][..],
            ),
            (
                "payment_dispute",
                &[
                    "chargeback",
                    "charge back",
                    "dispute the charge",
                    "dispute this charge",
                    "disputing",
                    "dispute with my bank",
                    "contracargo",
                    "rétrofacturation",
                    "rückbuchung",
                ][..],
            ),
            (
                "self_harm",
                &[
                    "suicide",
                    "suicidal",
                    "kill myself",
                    "self-harm",
                    "self harm",
                    "end my life",
                    "suicidio",
                    "quitarme la vida",
                    "me suicider",
                    "selbstmord",
                    "suizid",
                    "mich umbringen",
                    "suicídio",
                    "me matar",
                ][..],
            ),
            (
                "press",
                &[
                    "journalist",
                    "reporter",
                    "press inquiry",
                    "press enquiry",
                    "media inquiry",
                    "for an article",
                    "periodista",
                    "journaliste",
                    "journalistin",
                    "jornalista",
                ][..],
            ),
        ];
        Self {
            history_turns: 10,
            top_k: 5,
            max_passage_chars: 1_500,
            min_confidence: 0.5,
            min_relevance: 0.2,
            negative_sentiment: -0.7,
            human_phrases: Vec::new(),
            sensitive_topics: topics
                .iter()
                .map(|(t, ws)| (t.to_string(), ws.iter().map(|w| w.to_string()).collect()))
                .collect(),
            holding_message: "Thanks for your patience. I've passed this to our support team, and a person will follow up here.".into(),
            chat_holding_message: "I couldn't find an answer to that, so I've passed it to our support team, and a person will follow up here. In the meantime, feel free to ask me something else.".into(),
            act_replies: crate::pipeline::acts::default_replies(),
            answer_from_internal: false,
        }
    }
}
