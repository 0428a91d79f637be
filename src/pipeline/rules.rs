//! Rules that send a ticket to a person before any model is asked: the
//! customer asked for one, the message touches a configured sensitive
//! topic, or the customer is upset (VADER sentiment).

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use vader_sentiment::SentimentIntensityAnalyzer;

use crate::config::PipelineSettings;
use crate::domain::ReasonCode;

/// Ways of asking for a person, in English. Config adds more.
const HUMAN_PATTERNS: &[&str] = &[
    r"\b(talk|speak|chat|get through)\s+(to|with)\s+(a|an|some|one of your|your)?\s*(real|actual|live|human)?\s*(human|person|people|agent|representative|rep|someone|somebody|operator|staff|manager|supervisor)\b",
    r"\b(real|actual|live)\s+(human|person|agent|people)\b",
    r"\b(human|person|agent|representative|operator)\s*,?\s+please\b",
    r"\b(connect|transfer|put)\s+me\s+(to|with|through)\b",
    r"\b(can|could|would)\s+(someone|somebody|a person|an agent|a human)\s+(call|phone|ring|contact)\s+me\b",
    r"\b(call|phone|ring)\s+me\s+back\b",
    r"\bescalate\s+(this|my|it)\b",
    r"\b(get|give)\s+me\s+(a|an|to)\s+(human|person|agent|manager|supervisor|representative)\b",
    r"\b(want|need|like)\s+(to\s+)?(a\s+)?(human|person|agent|representative)\b",
    r"\b(not|no)\s+(a|another|more|the)?\s*(bot|robot|chatbot|automated)\b",
    r"\b(speak|talk)\s+to\s+(customer\s+)?(service|support)\b",
    r"\bcustomer\s+service\s+(rep|representative|agent)\b",
];

/// Why a rule fired.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHit {
    /// The reason code.
    pub reason: ReasonCode,
    /// What matched (the topic, or the sentiment score), for the agent.
    pub detail: String,
}

/// The compiled rules. Each kind is one compiled automaton (an
/// alternation, a set), not one regex a pattern: compiling is what a cold
/// start pays for them, and one automaton compiles in half the time.
pub struct Rules {
    human: Regex,
    topic_names: Vec<String>,
    topics: RegexSet,
    negative_at: f64,
    vader: SentimentIntensityAnalyzer<'static>,
}

/// A configured phrase as a pattern: whole words, and white space inside it
/// matching any run of white space.
fn phrase_pattern(phrases: &[String]) -> Option<String> {
    let alts: Vec<String> = phrases
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let words: Vec<String> = p.split_whitespace().map(regex::escape).collect();
            words.join(r"\s+")
        })
        .collect();
    (!alts.is_empty()).then(|| format!(r"\b(?:{})\b", alts.join("|")))
}

impl Rules {
    /// Compiles the rules in `settings`.
    pub fn new(settings: &PipelineSettings) -> anyhow::Result<Self> {
        let human: Vec<String> = HUMAN_PATTERNS
            .iter()
            .map(|p| format!("(?:{p})"))
            .chain(phrase_pattern(&settings.human_phrases))
            .collect();
        let human = RegexBuilder::new(&human.join("|"))
            .case_insensitive(true)
            .build()?;
        let (topic_names, patterns): (Vec<String>, Vec<String>) = settings
            .sensitive_topics
            .iter()
            .filter_map(|(topic, words)| phrase_pattern(words).map(|p| (topic.clone(), p)))
            .unzip();
        let topics = RegexSetBuilder::new(&patterns)
            .case_insensitive(true)
            .build()?;
        Ok(Self {
            human,
            topic_names,
            topics,
            negative_at: settings.negative_sentiment,
            vader: SentimentIntensityAnalyzer::new(),
        })
    }

    /// The first rule that fires for `text`: sensitive topics, then an
    /// upset customer, then an explicit request for a person.
    pub fn check(&self, text: &str) -> Option<RuleHit> {
        // In order of urgency, so the escalation carries the reason (and
        // priority) that matters most: a legal threat from someone who also
        // asks for a person is a legal threat first.
        // The first topic in configuration order that matches.
        if let Some(topic) = self
            .topics
            .matches(text)
            .iter()
            .next()
            .map(|i| &self.topic_names[i])
        {
            return Some(RuleHit {
                reason: ReasonCode::SensitiveTopic,
                detail: format!("topic: {topic}"),
            });
        }
        let score = self.sentiment(text);
        if score <= self.negative_at {
            return Some(RuleHit {
                reason: ReasonCode::NegativeSentiment,
                detail: format!("sentiment {score:.2}"),
            });
        }
        if self.human.is_match(text) {
            return Some(RuleHit {
                reason: ReasonCode::AskedForHuman,
                detail: "customer asked for a person".into(),
            });
        }
        None
    }

    /// VADER's compound score in -1..=1. The library indexes tokens without
    /// bounds checks, so a panic on odd input counts as neutral instead of
    /// taking the worker down.
    pub fn sentiment(&self, text: &str) -> f64 {
        // Long messages: the opening carries the mood, and VADER is O(n²)-ish.
        let text: String = text.chars().take(2_000).collect();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.vader
                .polarity_scores(&text)
                .get("compound")
                .copied()
                .unwrap_or(0.0)
        }))
        .unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules::new(&PipelineSettings::default()).unwrap()
    }

    #[test]
    fn asks_for_a_person() {
        let r = rules();
        for t in [
            "Can I talk to a human please?",
            "I want to speak with a real person",
            "agent please",
            "connect me to someone who can help",
            "Could someone call me about this?",
            "I'd like a human, not a bot",
            "get me a manager",
            "let me speak to customer service",
        ] {
            assert_eq!(
                r.check(t).map(|h| h.reason),
                Some(ReasonCode::AskedForHuman),
                "{t}"
            );
        }
        for t in [
            "How do I add a team member?",
            "Can someone on my team see invoices?",
            "Is the phone app free?",
            "Are you a person?",
        ] {
            assert_ne!(
                r.check(t).map(|h| h.reason),
                Some(ReasonCode::AskedForHuman),
                "{t}"
            );
        }
    }

    #[test]
    fn sensitive_topics_match_whole_words() {
        let r = rules();
        let hit = r.check("My lawyer will be in touch").unwrap();
        assert_eq!(
            (hit.reason, hit.detail.as_str()),
            (ReasonCode::SensitiveTopic, "topic: legal")
        );
        assert_eq!(
            r.check("I think my account was HACKED").unwrap().detail,
            "topic: security"
        );
        assert_eq!(
            r.check("I will file a chargeback").unwrap().detail,
            "topic: payment_dispute"
        );
        // Two topics: the first in configuration (name) order is reported.
        assert_eq!(
            r.check("A chargeback, and my lawyer knows").unwrap().detail,
            "topic: legal"
        );
        // Non-ASCII text still folds case.
        let s = PipelineSettings {
            sensitive_topics: [("legal".to_owned(), vec!["Anwältin".to_owned()])].into(),
            ..PipelineSettings::default()
        };
        assert_eq!(
            Rules::new(&s)
                .unwrap()
                .check("MEINE ANWÄLTIN")
                .unwrap()
                .detail,
            "topic: legal"
        );
        // "issue" contains "sue"; "courtesy" contains "court".
        assert_eq!(r.check("I have an issue with a courtesy discount"), None);
    }

    #[test]
    fn upset_customers() {
        let r = rules();
        let hit = r
            .check("This is the worst, most useless app ever. I am furious!!!")
            .unwrap();
        assert_eq!(hit.reason, ReasonCode::NegativeSentiment);
        assert_eq!(r.check("Thanks, the export worked great"), None);
        assert_eq!(r.check("I can't find the export button"), None);
    }

    #[test]
    fn extra_phrases_from_config() {
        let s = PipelineSettings {
            human_phrases: vec!["hable con   alguien".into(), "(".into()],
            ..PipelineSettings::default()
        };
        let r = Rules::new(&s).unwrap();
        assert_eq!(
            r.check("Quiero HABLE CON alguien").map(|h| h.reason),
            Some(ReasonCode::AskedForHuman)
        );
    }

    #[test]
    fn garbage_does_not_panic() {
        let r = rules();
        let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        for t in [
            "",
            "!",
            "?!?!",
            "no",
            "not not not",
            "never so",
            "without doubt",
            "kind of",
            "ಠ_ಠ 😡😡",
            &String::from_utf8_lossy(&bytes),
        ] {
            let s = r.sentiment(t);
            assert!((-1.0..=1.0).contains(&s), "{t:?} → {s}");
            let _ = r.check(t);
        }
    }
}
