//! Conversation acts: greetings, thanks, acknowledgements ("ok", "got it"),
//! goodbyes and empty pleasantries ("how are you?"), in English, Spanish,
//! French, German, Portuguese, Italian and Dutch. Pure: no I/O, no state.
//!
//! A message is cut into segments at sentence and clause punctuation and
//! line breaks. A segment is an act when it is made only of act phrases and
//! filler words ("hi there", "thanks so much for your help"), optionally
//! followed by a name ("Hi Dana"); a trailing run of names after an act is a
//! signature ("Thanks,\nMaria").
//!
//! Guarantees:
//! * [`parse`] reports an act only when *every* segment is an act, filler or
//!   signature: a message with anything else in it is a question, never a
//!   pleasantry to be brushed off ("Hi, how do I reset my password?").
//! * The question it returns is the message with the leading and trailing
//!   act segments cut off, a sub-slice of the original text, so retrieval
//!   sees "how do I reset my password?" and not the greeting.
//! * An act's language is the language of the phrases it was made of
//!   ("Vielen Dank" is German), `None` for words every language uses ("ok",
//!   "👍"); replies fall back to English.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What kind of act a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActKind {
    /// "hi", "good morning", "how are you?".
    Greeting,
    /// "thanks", "that helped".
    Thanks,
    /// "ok", "got it", "perfect", "👍".
    Acknowledgement,
    /// "bye", "that's all", "kind regards".
    Goodbye,
}

impl ActKind {
    /// The stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            ActKind::Greeting => "greeting",
            ActKind::Thanks => "thanks",
            ActKind::Acknowledgement => "acknowledgement",
            ActKind::Goodbye => "goodbye",
        }
    }
}

/// A message that is nothing but an act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Act {
    /// The act answered: a goodbye wins over thanks ("thanks, bye"), thanks
    /// over a greeting, a greeting over an acknowledgement.
    pub kind: ActKind,
    /// Whether the customer thanked (or said it helped), whatever the kind:
    /// after a bot answer, that confirms the answer.
    pub thanks: bool,
    /// ISO 639-1 code of the phrases, when they belong to one language.
    pub language: Option<&'static str>,
}

/// A message split into its act and its question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The act, when the whole message is one.
    pub act: Option<Act>,
    /// The message without its leading and trailing acts (empty for an act).
    pub question: &'a str,
}

/// Replies to the acts in one language. An empty text falls back to the
/// English one, and an empty English one to the built-in text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActReplies {
    /// Reply to a greeting.
    pub greeting: String,
    /// Reply to thanks.
    pub thanks: String,
    /// Reply to an acknowledgement.
    pub acknowledgement: String,
    /// Reply to a goodbye.
    pub goodbye: String,
}

impl ActReplies {
    fn get(&self, kind: ActKind) -> &str {
        match kind {
            ActKind::Greeting => &self.greeting,
            ActKind::Thanks => &self.thanks,
            ActKind::Acknowledgement => &self.acknowledgement,
            ActKind::Goodbye => &self.goodbye,
        }
    }
}

/// The built-in replies, by language.
pub fn default_replies() -> BTreeMap<String, ActReplies> {
    let r = |g: &str, t: &str, a: &str, b: &str| ActReplies {
        greeting: g.into(),
        thanks: t.into(),
        acknowledgement: a.into(),
        goodbye: b.into(),
    };
    [
        (
            "en",
            r(
                "Hello! What can I help you with today?",
                "You're welcome! Is there anything else I can help with?",
                "Great. Is there anything else I can help with?",
                "Thanks for getting in touch. Have a great day!",
            ),
        ),
        (
            "es",
            r(
                "¡Hola! ¿En qué puedo ayudarte hoy?",
                "¡De nada! ¿Hay algo más en lo que pueda ayudarte?",
                "Perfecto. ¿Hay algo más en lo que pueda ayudarte?",
                "Gracias por escribirnos. ¡Que tengas un buen día!",
            ),
        ),
        (
            "fr",
            r(
                "Bonjour ! Comment puis-je vous aider aujourd'hui ?",
                "Avec plaisir ! Puis-je vous aider pour autre chose ?",
                "Parfait. Puis-je vous aider pour autre chose ?",
                "Merci de nous avoir contactés. Bonne journée !",
            ),
        ),
        (
            "de",
            r(
                "Hallo! Wie kann ich Ihnen heute helfen?",
                "Gern geschehen! Kann ich Ihnen sonst noch helfen?",
                "Prima. Kann ich Ihnen sonst noch helfen?",
                "Danke für Ihre Nachricht. Einen schönen Tag noch!",
            ),
        ),
        (
            "pt",
            r(
                "Olá! Como posso ajudar hoje?",
                "De nada! Posso ajudar com mais alguma coisa?",
                "Perfeito. Posso ajudar com mais alguma coisa?",
                "Obrigado pelo contato. Tenha um ótimo dia!",
            ),
        ),
        (
            "it",
            r(
                "Ciao! Come posso aiutarti oggi?",
                "Prego! Posso aiutarti con qualcos'altro?",
                "Perfetto. Posso aiutarti con qualcos'altro?",
                "Grazie per averci scritto. Buona giornata!",
            ),
        ),
        (
            "nl",
            r(
                "Hallo! Waarmee kan ik je vandaag helpen?",
                "Graag gedaan! Kan ik je nog ergens anders mee helpen?",
                "Prima. Kan ik je nog ergens anders mee helpen?",
                "Bedankt voor je bericht. Fijne dag!",
            ),
        ),
    ]
    .into_iter()
    .map(|(l, r)| (l.to_owned(), r))
    .collect()
}

/// The reply to `act`: in its language when configured, else English.
pub fn reply(replies: &BTreeMap<String, ActReplies>, act: &Act) -> String {
    let configured = |lang: &str| {
        replies
            .get(lang)
            .map(|r| r.get(act.kind).trim())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    act.language
        .and_then(configured)
        .or_else(|| configured("en"))
        .unwrap_or_else(|| default_replies()["en"].get(act.kind).to_owned())
}

use ActKind::{Acknowledgement as Ack, Goodbye as Bye, Greeting as Hi, Thanks as Ty};

/// Act phrases: words separated by single spaces, lower case, straight
/// apostrophes. Longer phrases win over their prefixes.
const PHRASES: &[(&str, ActKind, Option<&str>)] = &[
    // English
    ("hi", Hi, Some("en")),
    ("hello", Hi, Some("en")),
    ("hey", Hi, Some("en")),
    ("heya", Hi, Some("en")),
    ("hiya", Hi, Some("en")),
    ("howdy", Hi, Some("en")),
    ("yo", Hi, Some("en")),
    ("greetings", Hi, Some("en")),
    ("good morning", Hi, Some("en")),
    ("good afternoon", Hi, Some("en")),
    ("good evening", Hi, Some("en")),
    ("morning", Hi, Some("en")),
    ("how are you", Hi, Some("en")),
    ("how are you doing", Hi, Some("en")),
    ("how are things", Hi, Some("en")),
    ("how's it going", Hi, Some("en")),
    ("how is it going", Hi, Some("en")),
    ("what's up", Hi, Some("en")),
    ("are you there", Hi, Some("en")),
    ("is anyone there", Hi, Some("en")),
    ("anyone there", Hi, Some("en")),
    ("anybody there", Hi, Some("en")),
    ("is somebody there", Hi, Some("en")),
    ("nice to meet you", Hi, Some("en")),
    ("thanks", Ty, Some("en")),
    ("thank you", Ty, Some("en")),
    ("thank u", Ty, Some("en")),
    ("thanx", Ty, Some("en")),
    ("thx", Ty, Some("en")),
    ("ty", Ty, Some("en")),
    ("tysm", Ty, Some("en")),
    ("many thanks", Ty, Some("en")),
    ("much appreciated", Ty, Some("en")),
    ("appreciate it", Ty, Some("en")),
    ("i appreciate it", Ty, Some("en")),
    ("appreciated", Ty, Some("en")),
    ("cheers", Ty, Some("en")),
    ("that helped", Ty, Some("en")),
    ("that helps", Ty, Some("en")),
    ("this helped", Ty, Some("en")),
    ("very helpful", Ty, Some("en")),
    ("that was helpful", Ty, Some("en")),
    ("that worked", Ty, Some("en")),
    ("it worked", Ty, Some("en")),
    ("that did it", Ty, Some("en")),
    ("that fixed it", Ty, Some("en")),
    ("problem solved", Ty, Some("en")),
    ("works now", Ty, Some("en")),
    ("it works now", Ty, Some("en")),
    ("that's what i needed", Ty, Some("en")),
    ("exactly what i needed", Ty, Some("en")),
    ("that answers it", Ty, Some("en")),
    ("that answers my question", Ty, Some("en")),
    ("ok", Ack, None),
    ("okay", Ack, None),
    ("okey", Ack, None),
    ("k", Ack, None),
    ("kk", Ack, None),
    ("got it", Ack, Some("en")),
    ("gotcha", Ack, Some("en")),
    ("i see", Ack, Some("en")),
    ("understood", Ack, Some("en")),
    ("perfect", Ack, Some("en")),
    ("great", Ack, Some("en")),
    ("cool", Ack, Some("en")),
    ("nice", Ack, Some("en")),
    ("awesome", Ack, Some("en")),
    ("excellent", Ack, Some("en")),
    ("wonderful", Ack, Some("en")),
    ("brilliant", Ack, Some("en")),
    ("lovely", Ack, Some("en")),
    ("alright", Ack, Some("en")),
    ("all right", Ack, Some("en")),
    ("sounds good", Ack, Some("en")),
    ("makes sense", Ack, Some("en")),
    ("that makes sense", Ack, Some("en")),
    ("noted", Ack, Some("en")),
    ("will do", Ack, Some("en")),
    ("all good", Ack, Some("en")),
    ("sure", Ack, Some("en")),
    ("fine", Ack, Some("en")),
    ("bye", Bye, Some("en")),
    ("goodbye", Bye, Some("en")),
    ("good bye", Bye, Some("en")),
    ("bye bye", Bye, Some("en")),
    ("see you", Bye, Some("en")),
    ("see ya", Bye, Some("en")),
    ("see you later", Bye, Some("en")),
    ("later", Bye, Some("en")),
    ("take care", Bye, Some("en")),
    ("have a nice day", Bye, Some("en")),
    ("have a good day", Bye, Some("en")),
    ("have a great day", Bye, Some("en")),
    ("have a good one", Bye, Some("en")),
    ("have a nice weekend", Bye, Some("en")),
    ("have a good weekend", Bye, Some("en")),
    ("that's all", Bye, Some("en")),
    ("that is all", Bye, Some("en")),
    ("that's it", Bye, Some("en")),
    ("nothing else", Bye, Some("en")),
    ("no thanks", Bye, Some("en")),
    ("no thank you", Bye, Some("en")),
    ("i'm done", Bye, Some("en")),
    ("all set", Bye, Some("en")),
    ("i'm all set", Bye, Some("en")),
    ("i'm good", Bye, Some("en")),
    ("best", Bye, Some("en")),
    ("regards", Bye, Some("en")),
    ("best regards", Bye, Some("en")),
    ("kind regards", Bye, Some("en")),
    ("warm regards", Bye, Some("en")),
    ("best wishes", Bye, Some("en")),
    ("sincerely", Bye, Some("en")),
    // Spanish
    ("hola", Hi, Some("es")),
    ("buenos días", Hi, Some("es")),
    ("buenos dias", Hi, Some("es")),
    ("buen día", Hi, Some("es")),
    ("buenas tardes", Hi, Some("es")),
    ("buenas noches", Hi, Some("es")),
    ("buenas", Hi, Some("es")),
    ("qué tal", Hi, Some("es")),
    ("que tal", Hi, Some("es")),
    ("cómo estás", Hi, Some("es")),
    ("como estas", Hi, Some("es")),
    ("cómo está", Hi, Some("es")),
    ("hay alguien", Hi, Some("es")),
    ("gracias", Ty, Some("es")),
    ("muchas gracias", Ty, Some("es")),
    ("mil gracias", Ty, Some("es")),
    ("te lo agradezco", Ty, Some("es")),
    ("se lo agradezco", Ty, Some("es")),
    ("muy amable", Ty, Some("es")),
    ("eso me ayudó", Ty, Some("es")),
    ("funcionó", Ty, Some("es")),
    ("ya funciona", Ty, Some("es")),
    ("vale", Ack, Some("es")),
    ("perfecto", Ack, Some("es")),
    ("entendido", Ack, Some("es")),
    ("entiendo", Ack, Some("es")),
    ("de acuerdo", Ack, Some("es")),
    ("genial", Ack, Some("es")),
    ("muy bien", Ack, Some("es")),
    ("claro", Ack, Some("es")),
    ("adiós", Bye, Some("es")),
    ("adios", Bye, Some("es")),
    ("hasta luego", Bye, Some("es")),
    ("hasta pronto", Bye, Some("es")),
    ("nos vemos", Bye, Some("es")),
    ("chao", Bye, Some("es")),
    ("chau", Bye, Some("es")),
    ("que tengas un buen día", Bye, Some("es")),
    ("saludos", Bye, Some("es")),
    ("un saludo", Bye, Some("es")),
    ("eso es todo", Bye, Some("es")),
    ("nada más", Bye, Some("es")),
    // French
    ("bonjour", Hi, Some("fr")),
    ("bonsoir", Hi, Some("fr")),
    ("salut", Hi, Some("fr")),
    ("coucou", Hi, Some("fr")),
    ("ça va", Hi, Some("fr")),
    ("ca va", Hi, Some("fr")),
    ("comment ça va", Hi, Some("fr")),
    ("comment allez-vous", Hi, Some("fr")),
    ("il y a quelqu'un", Hi, Some("fr")),
    ("merci", Ty, Some("fr")),
    ("merci beaucoup", Ty, Some("fr")),
    ("merci bien", Ty, Some("fr")),
    ("mille mercis", Ty, Some("fr")),
    ("je vous remercie", Ty, Some("fr")),
    ("c'est gentil", Ty, Some("fr")),
    ("ça marche", Ty, Some("fr")),
    ("ça a marché", Ty, Some("fr")),
    ("ça fonctionne", Ty, Some("fr")),
    ("d'accord", Ack, Some("fr")),
    ("parfait", Ack, Some("fr")),
    ("compris", Ack, Some("fr")),
    ("entendu", Ack, Some("fr")),
    ("très bien", Ack, Some("fr")),
    ("tres bien", Ack, Some("fr")),
    ("génial", Ack, Some("fr")),
    ("au revoir", Bye, Some("fr")),
    ("à bientôt", Bye, Some("fr")),
    ("a bientot", Bye, Some("fr")),
    ("à plus", Bye, Some("fr")),
    ("bonne journée", Bye, Some("fr")),
    ("bonne soirée", Bye, Some("fr")),
    ("cordialement", Bye, Some("fr")),
    ("bien cordialement", Bye, Some("fr")),
    ("c'est tout", Bye, Some("fr")),
    // German
    ("hallo", Hi, Some("de")),
    ("guten morgen", Hi, Some("de")),
    ("guten tag", Hi, Some("de")),
    ("guten abend", Hi, Some("de")),
    ("moin", Hi, Some("de")),
    ("servus", Hi, Some("de")),
    ("grüß gott", Hi, Some("de")),
    ("grüezi", Hi, Some("de")),
    ("wie geht's", Hi, Some("de")),
    ("wie gehts", Hi, Some("de")),
    ("wie geht es ihnen", Hi, Some("de")),
    ("wie geht es dir", Hi, Some("de")),
    ("ist da jemand", Hi, Some("de")),
    ("danke", Ty, Some("de")),
    ("danke schön", Ty, Some("de")),
    ("dankeschön", Ty, Some("de")),
    ("danke sehr", Ty, Some("de")),
    ("vielen dank", Ty, Some("de")),
    ("herzlichen dank", Ty, Some("de")),
    ("besten dank", Ty, Some("de")),
    ("danke vielmals", Ty, Some("de")),
    ("vielen lieben dank", Ty, Some("de")),
    ("das hat geholfen", Ty, Some("de")),
    ("hat funktioniert", Ty, Some("de")),
    ("es funktioniert", Ty, Some("de")),
    ("alles klar", Ack, Some("de")),
    ("verstanden", Ack, Some("de")),
    ("perfekt", Ack, Some("de")),
    ("gut", Ack, Some("de")),
    ("sehr gut", Ack, Some("de")),
    ("prima", Ack, Some("de")),
    ("klasse", Ack, Some("de")),
    ("in ordnung", Ack, Some("de")),
    ("alles gut", Ack, Some("de")),
    ("super", Ack, None),
    ("tschüss", Bye, Some("de")),
    ("tschüs", Bye, Some("de")),
    ("tschuss", Bye, Some("de")),
    ("auf wiedersehen", Bye, Some("de")),
    ("bis bald", Bye, Some("de")),
    ("bis dann", Bye, Some("de")),
    ("schönen tag", Bye, Some("de")),
    ("schönen tag noch", Bye, Some("de")),
    ("einen schönen tag", Bye, Some("de")),
    ("einen schönen tag noch", Bye, Some("de")),
    ("mit freundlichen grüßen", Bye, Some("de")),
    ("viele grüße", Bye, Some("de")),
    ("liebe grüße", Bye, Some("de")),
    ("beste grüße", Bye, Some("de")),
    ("grüße", Bye, Some("de")),
    ("mfg", Bye, Some("de")),
    ("das war's", Bye, Some("de")),
    ("das wars", Bye, Some("de")),
    ("das ist alles", Bye, Some("de")),
    // Portuguese
    ("olá", Hi, Some("pt")),
    ("ola", Hi, Some("pt")),
    ("oi", Hi, Some("pt")),
    ("bom dia", Hi, Some("pt")),
    ("boa tarde", Hi, Some("pt")),
    ("boa noite", Hi, Some("pt")),
    ("tudo bem", Hi, Some("pt")),
    ("tudo bom", Hi, Some("pt")),
    ("como vai", Hi, Some("pt")),
    ("obrigado", Ty, Some("pt")),
    ("obrigada", Ty, Some("pt")),
    ("muito obrigado", Ty, Some("pt")),
    ("muito obrigada", Ty, Some("pt")),
    ("brigado", Ty, Some("pt")),
    ("brigada", Ty, Some("pt")),
    ("valeu", Ty, Some("pt")),
    ("agradeço", Ty, Some("pt")),
    ("isso ajudou", Ty, Some("pt")),
    ("funcionou", Ty, Some("pt")),
    ("deu certo", Ty, Some("pt")),
    ("entendi", Ack, Some("pt")),
    ("perfeito", Ack, Some("pt")),
    ("certo", Ack, Some("pt")),
    ("beleza", Ack, Some("pt")),
    ("tá bom", Ack, Some("pt")),
    ("ta bom", Ack, Some("pt")),
    ("ótimo", Ack, Some("pt")),
    ("otimo", Ack, Some("pt")),
    ("combinado", Ack, Some("pt")),
    ("tchau", Bye, Some("pt")),
    ("até logo", Bye, Some("pt")),
    ("até mais", Bye, Some("pt")),
    ("até breve", Bye, Some("pt")),
    ("tenha um bom dia", Bye, Some("pt")),
    ("abraços", Bye, Some("pt")),
    ("abraço", Bye, Some("pt")),
    ("atenciosamente", Bye, Some("pt")),
    ("é só isso", Bye, Some("pt")),
    ("só isso", Bye, Some("pt")),
    // Italian
    ("ciao", Hi, Some("it")),
    ("buongiorno", Hi, Some("it")),
    ("buonasera", Hi, Some("it")),
    ("salve", Hi, Some("it")),
    ("come stai", Hi, Some("it")),
    ("grazie", Ty, Some("it")),
    ("grazie mille", Ty, Some("it")),
    ("ti ringrazio", Ty, Some("it")),
    ("perfetto", Ack, Some("it")),
    ("capito", Ack, Some("it")),
    ("va bene", Ack, Some("it")),
    ("d'accordo", Ack, Some("it")),
    ("ottimo", Ack, Some("it")),
    ("arrivederci", Bye, Some("it")),
    ("a presto", Bye, Some("it")),
    ("buona giornata", Bye, Some("it")),
    // Dutch
    ("hoi", Hi, Some("nl")),
    ("goedemorgen", Hi, Some("nl")),
    ("goedemiddag", Hi, Some("nl")),
    ("goedenavond", Hi, Some("nl")),
    ("hoe gaat het", Hi, Some("nl")),
    ("dank je", Ty, Some("nl")),
    ("dank je wel", Ty, Some("nl")),
    ("dank u", Ty, Some("nl")),
    ("dank u wel", Ty, Some("nl")),
    ("bedankt", Ty, Some("nl")),
    ("hartelijk dank", Ty, Some("nl")),
    ("begrepen", Ack, Some("nl")),
    ("duidelijk", Ack, Some("nl")),
    ("oké", Ack, Some("nl")),
    ("doei", Bye, Some("nl")),
    ("tot ziens", Bye, Some("nl")),
    ("fijne dag", Bye, Some("nl")),
    ("met vriendelijke groet", Bye, Some("nl")),
    // Symbols
    ("👍", Ack, None),
    ("👌", Ack, None),
    ("✅", Ack, None),
    ("😊", Ack, None),
    ("🙂", Ack, None),
    ("😀", Ack, None),
    ("😄", Ack, None),
    ("🙏", Ty, None),
    ("❤", Ty, None),
    ("👋", Hi, None),
];

/// Words that may stand beside act phrases without making the segment a
/// question ("hi *there*", "thanks *so much for your help*").
const FILLERS: &[&str] = &[
    "there",
    "team",
    "all",
    "everyone",
    "everybody",
    "guys",
    "folks",
    "y'all",
    "again",
    "so",
    "much",
    "very",
    "a",
    "lot",
    "you",
    "really",
    "just",
    "oh",
    "ah",
    "well",
    "yes",
    "yeah",
    "yep",
    "no",
    "nope",
    "sir",
    "madam",
    "friend",
    "mate",
    "dear",
    "and",
    "&",
    "for",
    "your",
    "the",
    "help",
    "helping",
    "assistance",
    "info",
    "information",
    "reply",
    "answer",
    "quick",
    "fast",
    "response",
    "support",
    "bot",
    "in",
    "advance",
    "now",
    "then",
    "to",
    "both",
    "again",
    "that",
    "it",
    "is",
    "was",
    "all",
    "y",
    "e",
    "et",
    "und",
    "sí",
    "si",
    "oui",
    "ja",
    "sim",
    "nee",
    "nein",
    "non",
    "não",
    "equipo",
    "équipe",
    "equipe",
    "leute",
    "zusammen",
    "pessoal",
    "gente",
    "todos",
    "tous",
    "tutti",
    "allemaal",
    "por",
    "la",
    "ayuda",
    "aide",
    "hilfe",
    "ajuda",
    "aiuto",
    "pela",
    "pelo",
    "pour",
    "votre",
    "ton",
    "für",
    "ihre",
    "deine",
    "die",
    "su",
    "tu",
    "de",
    "de",
    "nochmal",
    "encore",
    "otra",
    "vez",
    "muito",
    "molto",
    "beaucoup",
    "sehr",
];

/// Where segments break.
fn is_break(c: char) -> bool {
    matches!(
        c,
        ',' | '.'
            | ';'
            | ':'
            | '!'
            | '?'
            | '¡'
            | '¿'
            | '\n'
            | '\r'
            | '…'
            | '('
            | ')'
            | '—'
            | '–'
            | '"'
            | '“'
            | '”'
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seg {
    /// Act phrases (and fillers, and names after them).
    Act,
    /// Fillers only ("yes", "no").
    Filler,
    /// One to three capitalized words: a signature.
    Name,
    /// Anything else: a question.
    Other,
}

/// One token: normalized text and whether the original looked like a name.
struct Token {
    norm: String,
    name: bool,
}

fn tokens(segment: &str) -> Vec<Token> {
    segment
        .split_whitespace()
        .filter_map(|raw| {
            let raw = raw.replace(['’', '‘', '`'], "'");
            let word = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'');
            let word = word.trim_matches('\'');
            if word.is_empty() {
                // Only symbols: keep an emoji that is an act, drop the rest.
                return PHRASES
                    .iter()
                    .find(|(p, _, _)| !p.chars().any(char::is_alphanumeric) && raw.contains(*p))
                    .map(|(p, _, _)| Token {
                        norm: (*p).to_owned(),
                        name: false,
                    });
            }
            let mut chars = word.chars();
            let name = chars.next().is_some_and(char::is_uppercase)
                && chars.all(|c| c.is_alphabetic() || c == '-');
            Some(Token {
                norm: word.to_lowercase(),
                name,
            })
        })
        .collect()
}

/// Classifies one segment, adding its act phrases to `found`.
fn segment(text: &str, found: &mut Vec<(ActKind, Option<&'static str>)>) -> Seg {
    let toks = tokens(text);
    if toks.is_empty() {
        return Seg::Filler;
    }
    let mut local = Vec::new();
    let mut i = 0;
    let mut names = 0;
    while i < toks.len() {
        if let Some((len, kind, lang)) = longest(&toks, i) {
            local.push((kind, lang));
            i += len;
        } else if FILLERS.contains(&toks[i].norm.as_str()) {
            i += 1;
        } else if toks[i].name && !local.is_empty() && names < 2 {
            names += 1;
            i += 1;
        } else {
            return if toks.len() <= 3 && toks.iter().all(|t| t.name) {
                Seg::Name
            } else {
                Seg::Other
            };
        }
    }
    if local.is_empty() {
        Seg::Filler
    } else {
        found.extend(local);
        Seg::Act
    }
}

/// The longest phrase starting at token `i`: (tokens, kind, language).
fn longest(toks: &[Token], i: usize) -> Option<(usize, ActKind, Option<&'static str>)> {
    PHRASES
        .iter()
        .filter_map(|(p, kind, lang)| {
            let words: Vec<&str> = p.split(' ').collect();
            let fits = i + words.len() <= toks.len()
                && words.iter().zip(&toks[i..]).all(|(w, t)| *w == t.norm);
            fits.then_some((words.len(), *kind, *lang))
        })
        .max_by_key(|(len, _, _)| *len)
}

/// Splits `text` into its act and its question (see the module docs).
pub fn parse(text: &str) -> Parsed<'_> {
    // Segments as byte ranges of `text`.
    let mut segs: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if is_break(c) {
            segs.push((start, i));
            start = i + c.len_utf8();
        }
    }
    segs.push((start, text.len()));
    let mut found = Vec::new();
    let kinds: Vec<Seg> = segs
        .iter()
        .map(|&(a, b)| segment(&text[a..b], &mut found))
        .collect();

    // Leading acts and fillers, if the run holds an act.
    let lead = kinds
        .iter()
        .take_while(|k| matches!(k, Seg::Act | Seg::Filler))
        .count();
    let lead = if kinds[..lead].contains(&Seg::Act) {
        lead
    } else {
        0
    };
    // Trailing acts, fillers and signatures, starting at an act.
    let mut trail = kinds.len();
    while trail > lead && matches!(kinds[trail - 1], Seg::Act | Seg::Filler | Seg::Name) {
        trail -= 1;
    }
    while trail < kinds.len() && kinds[trail] != Seg::Act {
        trail += 1;
    }
    if !found.is_empty() && !kinds[lead..trail].contains(&Seg::Other) {
        return Parsed {
            act: Some(act(&found)),
            question: "",
        };
    }
    let from = if lead == 0 { 0 } else { segs[lead - 1].1 };
    let to = if trail >= kinds.len() {
        text.len()
    } else {
        segs[trail].0
    };
    let question = text[from..to.max(from)]
        .trim_start_matches(|c: char| {
            c.is_whitespace() || matches!(c, ',' | ';' | ':' | '!' | '.' | '—' | '–' | '-' | '…')
        })
        .trim_end_matches(|c: char| {
            c.is_whitespace() || matches!(c, ',' | ';' | ':' | '—' | '–' | '-')
        });
    Parsed {
        act: None,
        question: if question.is_empty() { text } else { question },
    }
}

fn act(found: &[(ActKind, Option<&'static str>)]) -> Act {
    let has = |k: ActKind| found.iter().any(|(f, _)| *f == k);
    let kind = [Bye, Ty, Hi, Ack]
        .into_iter()
        .find(|k| has(*k))
        .unwrap_or(Ack);
    Act {
        kind,
        thanks: has(Ty),
        language: found.iter().find_map(|(_, l)| *l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Option<ActKind> {
        parse(text).act.map(|a| a.kind)
    }

    #[test]
    fn acts_alone_in_every_language() {
        for (text, want, lang) in [
            ("hi", Hi, Some("en")),
            ("Hello there!", Hi, Some("en")),
            ("Good morning team", Hi, Some("en")),
            ("how are you?", Hi, Some("en")),
            ("Hi Dana", Hi, Some("en")),
            ("thanks!", Ty, Some("en")),
            ("Thank you so much for your help", Ty, Some("en")),
            ("Thanks, Maria", Ty, Some("en")),
            ("that helped, thanks", Ty, Some("en")),
            ("ok", Ack, None),
            ("got it, perfect", Ack, Some("en")),
            ("👍", Ack, None),
            ("ok 👍", Ack, None),
            ("Bye, have a nice day", Bye, Some("en")),
            ("No, that's all. Thanks!", Bye, Some("en")),
            ("Kind regards,\nMaria Lopez", Bye, Some("en")),
            ("Hola", Hi, Some("es")),
            ("¡Muchas gracias!", Ty, Some("es")),
            ("Vale, entendido", Ack, Some("es")),
            ("Bonjour", Hi, Some("fr")),
            ("Merci beaucoup", Ty, Some("fr")),
            ("Au revoir, bonne journée", Bye, Some("fr")),
            ("Hallo!", Hi, Some("de")),
            ("Vielen Dank", Ty, Some("de")),
            ("Super, danke!", Ty, Some("de")),
            ("Tschüss, schönen Tag noch", Bye, Some("de")),
            ("Olá, bom dia", Hi, Some("pt")),
            ("Obrigada!", Ty, Some("pt")),
            ("Ciao, grazie mille", Ty, Some("it")),
            ("Hoi, dank je wel", Ty, Some("nl")),
        ] {
            let p = parse(text);
            let act = p
                .act
                .unwrap_or_else(|| panic!("{text:?} is not an act: {p:?}"));
            assert_eq!((act.kind, act.language), (want, lang), "{text:?}");
            assert_eq!(p.question, "", "{text:?}");
        }
        assert!(parse("thanks!").act.unwrap().thanks);
        assert!(parse("Thanks, bye").act.unwrap().thanks);
        assert!(!parse("ok").act.unwrap().thanks);
    }

    #[test]
    fn a_question_with_an_act_around_it_is_the_question() {
        for (text, question) in [
            (
                "Hi, how do I reset my password?",
                "how do I reset my password?",
            ),
            (
                "Hello! How do I turn on two-factor authentication? Thanks",
                "How do I turn on two-factor authentication?",
            ),
            (
                "Hi team,\n\nCan I export my invoices to CSV?\n\nThanks,\nMaria",
                "Can I export my invoices to CSV?",
            ),
            (
                "Hola, ¿cómo cambio mi contraseña?",
                "¿cómo cambio mi contraseña?",
            ),
            ("Great, and how do I export?", "and how do I export?"),
            (
                "How do I add a team member? Thanks in advance!",
                "How do I add a team member?",
            ),
            ("Hi Dana, I can't log in", "I can't log in"),
        ] {
            let p = parse(text);
            assert_eq!(p.act, None, "{text:?}");
            assert_eq!(p.question, question, "{text:?}");
        }
    }

    #[test]
    fn questions_and_complaints_are_not_acts() {
        for text in [
            "How do I turn on two-factor authentication?",
            "that didn't help",
            "this is useless",
            "not what I asked",
            "Thanks, but that didn't help",
            "no",
            "yes",
            "Maria",
            "help",
            "?",
            "Is the Solo plan fine for two people?",
            "Hi, is there a real human I can chat with?",
            "Thank you for nothing",
            "Good morning, my invoice is wrong",
            "ok so how do I delete an invoice",
        ] {
            assert_eq!(kind(text), None, "{text:?}");
        }
        // Nothing to strip: the question is the message.
        assert_eq!(parse("that didn't help").question, "that didn't help");
        assert_eq!(parse("no").question, "no");
    }

    #[test]
    fn replies_in_the_act_language_or_english() {
        let replies = default_replies();
        let de = parse("Vielen Dank").act.unwrap();
        assert_eq!(reply(&replies, &de), replies["de"].thanks);
        let ok = parse("ok").act.unwrap();
        assert_eq!(reply(&replies, &ok), replies["en"].acknowledgement);
        // An unconfigured or emptied language falls back to English, then to
        // the built-in text.
        let mut custom = BTreeMap::new();
        custom.insert(
            "en".to_owned(),
            ActReplies {
                greeting: "Hey! Ask away.".into(),
                ..ActReplies::default()
            },
        );
        let hola = parse("hola").act.unwrap();
        assert_eq!(reply(&custom, &hola), "Hey! Ask away.");
        assert_eq!(reply(&custom, &de), default_replies()["en"].thanks);
    }

    #[test]
    fn odd_input_does_not_panic() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        for text in [
            "",
            " ",
            ",,,",
            "\n\n",
            "¿¡",
            "’’’",
            "🙏🙏🙏",
            &String::from_utf8_lossy(&bytes),
        ] {
            let p = parse(text);
            assert!(p.question.len() <= text.len());
        }
    }
}
