//! Rules that send a ticket to a person before any model is asked, checked
//! on the subject line and the message together (a subject is written by
//! the customer too: "Subject: lawsuit" over a password question is a legal
//! matter first), in order of urgency:
//!
//! 1. a configured sensitive topic (legal, security, fraud, bereavement…);
//! 2. an upset customer (VADER sentiment; English only: VADER's lexicon is
//!    English, and German "die" is not the English verb);
//! 3. an explicit request for a person;
//! 4. the customer saying the bot's answer did not help (`unhelpful`);
//! 5. a question about the customer's own account, which no knowledge base
//!    can answer (`needs_account_data`): a balance, a particular charge, an
//!    order or refund, a numbered invoice.
//!
//! The phrase patterns cover English, Spanish, French, German and
//! Portuguese, and all of them run on every message: detecting the
//! language first would let a misdetected short message slip through.

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use vader_sentiment::SentimentIntensityAnalyzer;

use super::PipelineSettings;
use super::language::{self, Language};
use crate::domain::ReasonCode;

/// Ways of asking for a person. Config adds more.
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
    // Spanish
    r"\b(hablar|comunicarme|chatear)\s+con\s+(un|una|alguien|algún|alguna)?\s*(persona|humano|agente|representante|asesor|asesora|operador|operadora|alguien|ser\s+humano)\b",
    r"\b(persona|agente)\s+real\b",
    r"\bser\s+humano\b",
    r"\b(quiero|necesito|prefiero)\s+(a\s+)?(un|una)\s+(agente|persona|humano|representante|asesor)\b",
    r"\b(pásame|pasame|comunícame|comunicame|transfiéreme|transfiereme)\s+con\b",
    // French
    r"\bparler\s+(à|a|avec)\s+(un|une|quelqu'un)?\s*(vrai|vraie)?\s*(humain|personne|agent|conseiller|conseillère|opérateur|opératrice|quelqu'un)\b",
    r"\b(vraie\s+personne|vrai\s+humain|être\s+humain)\b",
    r"\b(je\s+veux|je\s+voudrais|j'aimerais)\s+(un|une)\s+(humain|personne|agent|conseiller|conseillère)\b",
    r"\bpas\s+(un|une|de)\s+(robot|bot|chatbot)\b",
    // German
    r"\bmit\s+(einem|einer|jemandem)?\s*(echten)?\s*(menschen|mensch|mitarbeiter|mitarbeiterin|person|berater|beraterin|agenten|jemandem)\s+(sprechen|reden|chatten)\b",
    r"\b(echten|echter|echte)\s+(menschen|mensch|person|mitarbeiter)\b",
    r"\bkein(en)?\s+(bot|roboter|chatbot)\b",
    // Portuguese
    r"\bfalar\s+com\s+(um|uma|alguém|alguem)?\s*(pessoa|humano|atendente|agente|representante|alguém|alguem|ser\s+humano)\b",
    r"\b(pessoa|atendente)\s+real\b",
    r"\batendimento\s+humano\b",
    r"\b(quero|preciso)\s+(de\s+)?(um|uma)\s+(atendente|pessoa|humano|agente)\b",
    // A line that is only the word, in any of the languages above: the
    // answer to an emailed reply's "Reply 'human' to reach a person".
    r#"(?m:^[\s'"«»„“”‘’*]*(a\s+)?(human|person|agent|humano|humana|persona|agente|humain|humaine|personne|mensch|menschen|mitarbeiter|pessoa|atendente)[\s'"«»„“”‘’*.!]*$)"#,
];

/// The customer says the answer did not help.
const UNHELPFUL_PATTERNS: &[&str] = &[
    r"\b(that|this|it|which|your\s+(answer|reply|response)|the\s+(answer|reply|response))\s+(didn't|didnt|doesn't|doesnt|don't|did\s+not|does\s+not|do\s+not|wasn't|isn't|was\s+not|is\s+not)\s+(help|helpful|answer|address|make\s+sense)",
    r"\b(not|never)\s+helpful\b",
    r"\bunhelpful\b",
    r"\b(this|that|you|it)('re|\s+are|'s|\s+is|\s+was)\s+(useless|no\s+help|not\s+helping|not\s+helpful)\b",
    r"\b(that|this)('s|\s+is|\s+was)\s+(wrong|incorrect|not\s+right|not\s+correct|not\s+it|not\s+the\s+answer)\b",
    r"\bnot\s+what\s+i\s*('m|\s+am|\s+was)?\s*(asked|asking|meant|wanted|needed|need|looking\s+for)\b",
    r"\b(didn't|didnt|doesn't|doesnt|did\s+not|does\s+not|haven't|have\s+not)\s+answer(ed)?\s+(my|the)\s+question\b",
    r"\byou\s+(don't|dont|didn't|do\s+not|aren't|are\s+not)\s+(understand|understanding|get\s+it|listening|helping)\b",
    r"\byou're\s+not\s+(understanding|listening|helping)\b",
    r"\b(wrong|useless|irrelevant)\s+(answer|reply|response)\b",
    r"\bno\s+help\s+(at\s+all|whatsoever)\b",
    // Spanish
    r"\bno\s+me\s+(ayud[óo]|ayuda|sirve|sirvi[óo])\b",
    r"\beso\s+no\s+(ayuda|sirve)\b",
    r"\bno\s+es\s+lo\s+que\s+(pregunt[ée]|quer[ií]a|ped[ií])\b",
    r"\bno\s+(responde|contesta|respondi[óo]|contest[óo])\s+(a\s+)?mi\s+pregunta\b",
    r"\b(es|eres|esto\s+es)\s+in[úu]til\b",
    r"\bno\s+me\s+entiendes\b",
    // French
    r"\b(ça|ca|cela|ceci)\s+ne\s+m'(aide|a\s+pas\s+aid[ée]|sert)\b",
    r"\b(ça|ca|cela)\s+n'aide\s+pas\b",
    r"\bce\s+n'est\s+pas\s+ce\s+que\s+j'(ai\s+demand[ée]|attendais|voulais)\b",
    r"\bne\s+r[ée]pond\s+pas\s+[àa]\s+ma\s+question\b",
    r"\bc'est\s+inutile\b",
    r"\bpas\s+utile\b",
    r"\b(vous\s+ne\s+comprenez|tu\s+ne\s+comprends)\s+pas\b",
    // German
    r"\b(das|es)\s+hilft\s+(mir\s+)?(nicht|nichts|gar\s+nicht|überhaupt\s+nicht)\b",
    r"\b(das|es)\s+hat\s+(mir\s+)?(nicht|nichts|gar\s+nicht|überhaupt\s+nicht)\s+geholfen\b",
    r"\bhilft\s+mir\s+nicht\b",
    r"\bnicht\s+(das|was),?\s+(was\s+)?ich\s+gefragt\s+habe\b",
    r"\bbeantwortet\s+(meine|die)\s+frage\s+nicht\b",
    r"\b(das\s+ist|völlig|total)\s+(nutzlos|unbrauchbar)\b",
    r"\b(sie\s+verstehen|du\s+verstehst)\s+(mich\s+)?nicht\b",
    // Portuguese
    r"\b(isso|isto)\s+n[ãa]o\s+(me\s+)?ajud(ou|a)\b",
    r"\bn[ãa]o\s+me\s+ajudou\b",
    r"\bn[ãa]o\s+[ée]\s+o\s+que\s+eu\s+(perguntei|pedi|queria)\b",
    r"\bn[ãa]o\s+respond(e|eu)\s+(a\s+|à\s+)?minha\s+pergunta\b",
    r"\b(isso\s+[ée]|[ée])\s+in[úu]til\b",
    r"\bvoc[êe]\s+n[ãa]o\s+(entende|entendeu)\b",
];

/// Right after a bot answer these also mean it did not help; on their own
/// ("it doesn't work") they are a problem report the KB may answer.
const UNHELPFUL_AFTER_ANSWER: &[&str] = &[
    r"^\W*(no|nope|nah|wrong|incorrect|not\s+really|no\s+it\s+doesn't|nein|non|não|nao)\W*$",
    r"\b(that|this|it)\s+(didn't|didnt|doesn't|doesnt|did\s+not|does\s+not|isn't|is\s+not|won't)\s+(work|fix|solve)",
    r"\bstill\s+(not\s+working|doesn't\s+work|does\s+not\s+work|broken|can't|cannot|the\s+same|nothing)\b",
    r"\bsame\s+(problem|issue|error)\b",
    r"\bsigue\s+sin\s+funcionar\b",
    r"\bno\s+funcion(a|ó)\b",
    r"\b(ça|ca)\s+ne\s+(marche|fonctionne)\s+(toujours\s+)?pas\b",
    r"\b(funktioniert|geht)\s+(immer\s+noch\s+)?nicht\b",
    r"\bn[ãa]o\s+funcion(a|ou)\b",
];

/// About the customer's own account: only someone who can see it can answer.
const ACCOUNT_PATTERNS: &[&str] = &[
    r"\b(my|our)\s+(current\s+|account\s+|outstanding\s+|remaining\s+|credit\s+)?balance\b",
    r"\bhow\s+much\s+(do|did|does)\s+(i|we)\s+(still\s+)?owe\b",
    r"\b(why|when)\s+(was|were|am|have|has|did|do|does)\s+(i|we|you|my\s+card|my\s+account)\s+(been\s+|being\s+|get\s+|got\s+|just\s+)?(charged|billed|debited|charge\s+me|bill\s+me|charge\s+us|bill\s+us|charge\s+my|take\s+money|took\s+money)\b",
    r"\b(was|were|been|got|you|just)\s+(charged|billed|debited)\s+(me\s+|us\s+)?(twice\s+|again\s+)?[$€£]\s?\d",
    r"\bcharged\s+(me|us)\s+[$€£]?\s?\d",
    r"\b(where|what)('s|\s+is|\s+are|\s+happened\s+to)\s+(my|our)\s+(order|orders|refund|package|parcel|delivery|payment|money)\b",
    r"\b(status|progress)\s+of\s+(my|our)\s+(order|refund|payment|invoice|request|ticket|claim|account)\b",
    r"\b(has|have|did)\s+(my|our)\s+(refund|order|payment|money)\b",
    r"\bmy\s+(order|refund|ticket|customer|transaction)\s+(number|no|#|id)\b",
    r"\b(order|invoice|receipt|transaction|ticket|case)\s*(#|no\.?\s|number\s)\s*[a-z]{0,4}-?\d{3,}\b",
    r"\b(inv|ord|txn)-?\d{3,}\b",
    r"\b(what|which)\s+plan\s+(am\s+i|are\s+we|i'm|we're)\s+on\b",
    r"\bwhen\s+(does|will|is)\s+my\s+(trial|subscription|plan|renewal|next\s+payment|next\s+bill)\s+(end|expire|renew|due|happen)",
    r"\bwhy\s+(is|was|has)\s+my\s+account\s+(been\s+)?(locked|suspended|closed|blocked|frozen|disabled|deactivated|restricted)\b",
    r"\b(my|our)\s+(latest|last|recent|most\s+recent|next)\s+(bill|statement)\b",
    r"\bcan\s+you\s+(check|look\s+up|look\s+at|see|find|pull\s+up)\s+(my|our)\s+(account|order|invoice|payment|refund|subscription|charge|bill)\b",
    // Spanish, French, German, Portuguese
    r"\bmi\s+saldo\b",
    r"\bpor\s+qu[ée]\s+(me\s+)?(cobraron|cobr[óo]|han\s+cobrado|cobran)\b",
    r"\b(d[óo]nde\s+est[áa]|estado\s+de)\s+mi\s+(pedido|reembolso|pago)\b",
    r"\bmon\s+solde\b",
    r"\bpourquoi\s+(ai-je|j'ai)\s+[ée]t[ée]\s+(d[ée]bit[ée]|factur[ée]|pr[ée]lev[ée])",
    r"\b(o[ùu]\s+en\s+est|statut\s+de)\s+(ma\s+commande|mon\s+remboursement|mon\s+paiement)\b",
    r"\bmein\s+kontostand\b",
    r"\bwarum\s+wurde\s+(mir|ich)\b.{0,40}\b(berechnet|abgebucht|belastet)\b",
    r"\b(wo\s+ist|status)\s+(meiner?\s+|meines\s+)?(bestellung|rückerstattung|erstattung|zahlung)\b",
    r"\bmeu\s+saldo\b",
    r"\bpor\s+que\s+(fui|me)\s+(cobrad[oa]|cobraram|cobrou)\b",
    r"\b(cad[êe]|onde\s+est[áa]|status\s+d[oa])\s+(o\s+|a\s+)?(meu|minha)\s+(pedido|reembolso|pagamento)\b",
];

/// Why a rule fired.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHit {
    /// The reason code.
    pub reason: ReasonCode,
    /// What matched (the topic, or the sentiment score), for the agent.
    pub detail: String,
}

/// What the rules found in a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// The rule that fired, if one did.
    pub hit: Option<RuleHit>,
    /// VADER compound score (-1..=1); 0 when the message is not English.
    pub sentiment: f64,
    /// The message's language, when it is clear.
    pub language: Option<Language>,
}

/// The compiled rules. Each kind is one compiled automaton (an
/// alternation, a set), not one regex a pattern: compiling is what a cold
/// start pays for them, and one automaton compiles in half the time.
pub struct Rules {
    human: Regex,
    unhelpful: Regex,
    unhelpful_after_answer: Regex,
    account: Regex,
    topic_names: Vec<String>,
    topics: RegexSet,
    negative_at: f64,
    vader: SentimentIntensityAnalyzer<'static>,
}

fn alternation(patterns: &[&str]) -> Result<Regex, regex::Error> {
    let joined: Vec<String> = patterns.iter().map(|p| format!("(?:{p})")).collect();
    RegexBuilder::new(&joined.join("|"))
        .case_insensitive(true)
        .build()
}

/// Curly quotes as straight ones, so "didn’t" matches "didn't".
fn straight_quotes(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['’', '‘']) {
        text.replace(['’', '‘'], "'").into()
    } else {
        text.into()
    }
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
            unhelpful: alternation(UNHELPFUL_PATTERNS)?,
            unhelpful_after_answer: alternation(UNHELPFUL_AFTER_ANSWER)?,
            account: alternation(ACCOUNT_PATTERNS)?,
            topic_names,
            topics,
            negative_at: settings.negative_sentiment,
            vader: SentimentIntensityAnalyzer::new(),
        })
    }

    /// The first rule that fires for a message with no subject, not
    /// following a bot answer (see [`Rules::assess`]).
    pub fn check(&self, text: &str) -> Option<RuleHit> {
        self.assess(text, None, false).hit
    }

    /// Checks a message and its subject, in the order of the module docs,
    /// so the escalation carries the reason (and priority) that matters
    /// most: a legal threat from someone who also asks for a person is a
    /// legal threat first. `after_answer`: the bot's last message was an
    /// answer, so a bare "no" or "still not working" means it did not help.
    pub fn assess(&self, text: &str, subject: Option<&str>, after_answer: bool) -> Assessment {
        let text = straight_quotes(text);
        let both = match subject.map(straight_quotes) {
            Some(s) if !s.trim().is_empty() => format!("{s}\n{text}").into(),
            _ => text.clone(),
        };
        let language = language::detect(&text);
        let sentiment = if language::english_or_unknown(language.as_ref()) {
            self.sentiment(&text)
        } else {
            0.0
        };
        let fire = |reason, detail: String| Some(RuleHit { reason, detail });
        // The first topic in configuration order that matches.
        let hit = if let Some(topic) = self
            .topics
            .matches(&both)
            .iter()
            .next()
            .map(|i| &self.topic_names[i])
        {
            fire(ReasonCode::SensitiveTopic, format!("topic: {topic}"))
        } else if sentiment <= self.negative_at {
            fire(
                ReasonCode::NegativeSentiment,
                format!("sentiment {sentiment:.2}"),
            )
        } else if self.human.is_match(&both) {
            fire(
                ReasonCode::AskedForHuman,
                "customer asked for a person".into(),
            )
        } else if self.unhelpful.is_match(&both)
            || (after_answer && self.unhelpful_after_answer.is_match(&text))
        {
            fire(
                ReasonCode::Unhelpful,
                "customer said the answer did not help".into(),
            )
        } else if self.account.is_match(&both) {
            fire(
                ReasonCode::NeedsAccountData,
                "about the customer's own account".into(),
            )
        } else {
            None
        };
        Assessment {
            hit,
            sentiment,
            language,
        }
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

    fn reason(r: &Rules, text: &str) -> Option<ReasonCode> {
        r.check(text).map(|h| h.reason)
    }

    #[test]
    fn the_subject_line_is_checked_too() {
        // Security finding #14.9: a legal threat in the subject, a harmless
        // question in the body, was answered.
        let r = rules();
        let a = r.assess("How do I reset my password?", Some("lawsuit"), false);
        assert_eq!(
            a.hit.map(|h| (h.reason, h.detail)),
            Some((ReasonCode::SensitiveTopic, "topic: legal".to_owned()))
        );
        let a = r.assess("See subject", Some("I want to speak to a person"), false);
        assert_eq!(a.hit.map(|h| h.reason), Some(ReasonCode::AskedForHuman));
        assert_eq!(
            r.assess("How do I reset my password?", Some("Password"), false)
                .hit,
            None
        );
    }

    #[test]
    fn dissatisfaction_is_unhelpful() {
        let r = rules();
        for t in [
            "that didn't help",
            "That didn’t help at all",
            "not what I asked",
            "That's not what I was asking",
            "this is useless",
            "That doesn't answer my question",
            "you don't understand",
            "wrong answer",
            "Eso no me ayudó",
            "No es lo que pregunté",
            "Ça ne m'aide pas du tout",
            "Ce n'est pas ce que j'ai demandé",
            "Das hat mir nicht geholfen",
            "Das hilft mir nicht",
            "Isso não ajudou",
            "Não é o que eu perguntei",
        ] {
            assert_eq!(reason(&r, t), Some(ReasonCode::Unhelpful), "{t}");
        }
        // A bare "no" or "still broken" only after an answer.
        for t in ["no", "Nope.", "it still doesn't work", "same problem"] {
            assert_eq!(reason(&r, t), None, "{t}");
            assert_eq!(
                r.assess(t, None, true).hit.map(|h| h.reason),
                Some(ReasonCode::Unhelpful),
                "{t}"
            );
        }
        for t in [
            "The export button doesn't work on Safari",
            "Is the receipt scanner helpful for mileage?",
            "How do I answer a client's question in the portal?",
        ] {
            assert_eq!(reason(&r, t), None, "{t}");
        }
    }

    #[test]
    fn account_questions_need_account_data() {
        let r = rules();
        for t in [
            "what's my balance",
            "why was I charged $34.50 yesterday",
            "Why did you charge me twice?",
            "Where is my refund?",
            "What's the status of my order?",
            "Has my refund been processed?",
            "Can you check invoice INV-2041 for me?",
            "Which plan am I on?",
            "Can you check my account?",
            "¿Por qué me cobraron dos veces?",
            "Où en est mon remboursement ?",
            "Wo ist meine Rückerstattung?",
            "Cadê o meu reembolso?",
        ] {
            assert_eq!(reason(&r, t), Some(ReasonCode::NeedsAccountData), "{t}");
        }
        for t in [
            "How do I add my logo to my invoice?",
            "How much is the Team plan?",
            "Will I be charged $12 a month on Solo?",
            "Can I get my money back?",
            "There's a charge on my credit card statement that says TALLYBIRD.EXAMPLE SUBSCR, what is that for?",
            "How do I see which invoices are overdue?",
        ] {
            assert_eq!(reason(&r, t), None, "{t}");
        }
    }

    #[test]
    fn fraud_takeover_bereavement_and_breaches_are_sensitive() {
        let r = rules();
        for (t, topic) in [
            ("I didn't make this purchase", "fraud"),
            ("I didn’t make this purchase!", "fraud"),
            ("Someone used my card to pay for a subscription", "fraud"),
            ("There are unauthorized charges on my card", "fraud"),
            (
                "someone got into my account and changed my email",
                "security",
            ),
            ("I think I've been hacked", "security"),
            ("Was my data exposed in a data leak?", "security"),
            (
                "My husband passed away, how do I close his account?",
                "bereavement",
            ),
            (
                "My father died last month and I need his invoices",
                "bereavement",
            ),
            ("The account owner is deceased", "bereavement"),
            ("Mi abogado se pondrá en contacto con ustedes", "legal"),
            ("Mein Konto wurde gehackt", "security"),
            ("Mon mari est décédé", "bereavement"),
            // Fraud, takeover and bereavement in other words.
            (
                "There's a charge I don't recognise from last Tuesday",
                "fraud",
            ),
            ("I see two transactions I didn't make", "fraud"),
            (
                "I think I got scammed, money is missing from my account",
                "fraud",
            ),
            ("Someone changed my email without asking me", "security"),
            (
                "I keep getting sign-in codes but I didn't request a code",
                "security",
            ),
            (
                "I'm the executor of my late father's business",
                "bereavement",
            ),
            (
                "We lost my husband in March; his subscription still renews",
                "bereavement",
            ),
        ] {
            let hit = r.check(t);
            assert_eq!(
                hit.as_ref().map(|h| (h.reason, h.detail.as_str())),
                Some((
                    ReasonCode::SensitiveTopic,
                    format!("topic: {topic}").as_str()
                )),
                "{t}"
            );
        }
        for t in [
            "My phone died while I was scanning a receipt",
            "Is there a quick hack to duplicate an invoice?",
            "I made a purchase order template, can I reuse it?",
            "I lost my phone, how do I sign in?",
            "Can I change my email address?",
        ] {
            assert_eq!(reason(&r, t), None, "{t}");
        }
    }

    #[test]
    fn other_languages_ask_for_people_and_are_not_read_by_vader() {
        let r = rules();
        for t in [
            "Ich möchte mit einem Menschen sprechen",
            "Quiero hablar con una persona",
            "Je voudrais parler à un conseiller",
            "Quero falar com um atendente",
        ] {
            assert_eq!(reason(&r, t), Some(ReasonCode::AskedForHuman), "{t}");
        }
        // "die" is German for "the"; VADER reads it as the English verb.
        let t = "Die Rechnung ist falsch, die Summe stimmt nicht und die Steuer fehlt";
        assert!(r.sentiment(t) < 0.0, "VADER on its own: {}", r.sentiment(t));
        let a = r.assess(t, None, false);
        assert_eq!((a.hit, a.sentiment), (None, 0.0));
        assert_eq!(a.language.map(|l| l.code), Some("de"));
        // English is still read.
        let a = r.assess(
            "This is the worst, most useless app ever. I am furious!!!",
            None,
            false,
        );
        assert_eq!(a.hit.map(|h| h.reason), Some(ReasonCode::NegativeSentiment));
    }
}
