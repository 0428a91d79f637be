//! What the pipeline decides, and how a ticket ends.

use serde::{Deserialize, Serialize};

use super::{Source, named_enum};

named_enum!(
    /// Why a ticket went to a human; machine-readable, used in SNS filter
    /// policies, metrics and the eval report.
    ReasonCode, "reason" {
        /// The customer asked for a person.
        AskedForHuman = "asked_for_human",
        /// The answer's confidence is below the threshold.
        LowConfidence = "low_confidence",
        /// Retrieval found nothing relevant enough.
        NoKnowledge = "no_knowledge",
        /// The customer is upset.
        NegativeSentiment = "negative_sentiment",
        /// A configured sensitive topic (legal, security…).
        SensitiveTopic = "sensitive_topic",
        /// The model declined, or its output was unusable.
        ModelRefused = "model_refused",
        /// Processing kept failing; the ticket is going to the dead-letter queue.
        ProcessingFailed = "processing_failed",
        /// The queued record could not be read at all.
        Unparseable = "unparseable",
        /// The reply could not be delivered on the ticket's channel.
        DeliveryFailed = "delivery_failed",
        /// A customer wrote again in a conversation a human already owns.
        FollowUp = "follow_up",
        /// The email's sender failed authentication (DMARC, or SPF without
        /// DKIM): held for a person, nothing is sent to the forged address.
        UnverifiedSender = "unverified_sender",
        /// The customer said the bot's answer did not help.
        Unhelpful = "unhelpful",
        /// The question is about the customer's own account (a balance, a
        /// charge, an order), which no knowledge base holds.
        NeedsAccountData = "needs_account_data",
        /// Written in a language the generator cannot answer in.
        UnsupportedLanguage = "unsupported_language",
        /// A configured action (an order lookup…) failed, timed out or
        /// answered 5xx: a person answers from the business's own systems.
        ActionFailed = "action_failed",
    }
);

named_enum!(
    /// How urgently a human should look; an SNS attribute for filter policies.
    Priority, "priority" {
        High = "high",
        Normal = "normal",
    }
);

impl ReasonCode {
    /// Upset customers, risky topics and lost tickets first.
    pub fn priority(self) -> Priority {
        match self {
            ReasonCode::NegativeSentiment
            | ReasonCode::SensitiveTopic
            | ReasonCode::ProcessingFailed
            | ReasonCode::Unparseable
            | ReasonCode::DeliveryFailed
            | ReasonCode::ActionFailed => Priority::High,
            ReasonCode::AskedForHuman
            | ReasonCode::LowConfidence
            | ReasonCode::NoKnowledge
            | ReasonCode::ModelRefused
            | ReasonCode::FollowUp
            | ReasonCode::UnverifiedSender
            | ReasonCode::Unhelpful
            | ReasonCode::NeedsAccountData
            | ReasonCode::UnsupportedLanguage => Priority::Normal,
        }
    }
}

/// An answer for the customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Plain text.
    pub text: String,
    /// The passages it is grounded in.
    pub sources: Vec<Source>,
    /// 0..=1, how likely the answer is right.
    pub confidence: f32,
}

/// A decision to hand the ticket to a human.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalate {
    /// Why.
    pub reason: ReasonCode,
    /// The answer's confidence, when one was generated (else 0).
    pub confidence: f32,
    /// A short explanation for the agent (rule that fired, model's reason).
    pub detail: String,
    /// The answer the bot would have given, for the agent to reuse.
    pub draft: Option<Reply>,
}

/// What the confidence gate decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Send the reply.
    Answer(Reply),
    /// Hand over to a human.
    Escalate(Escalate),
}

impl Decision {
    /// The escalation reason, if it escalates.
    pub fn reason(&self) -> Option<ReasonCode> {
        match self {
            Decision::Answer(_) => None,
            Decision::Escalate(e) => Some(e.reason),
        }
    }
}

/// Model usage of one ticket, for cost accounting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// The model that answered (`None` for the extractive generator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// Input tokens billed.
    pub input_tokens: u64,
    /// Output tokens billed.
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Model calls made (retries included).
    #[serde(default)]
    pub calls: u32,
    /// Time spent waiting for the model, in milliseconds.
    #[serde(default)]
    pub model_ms: u64,
    /// Calls of configured actions (order lookups…), attempted or refused
    /// by the rate limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub action_calls: u32,
    /// Time spent waiting for actions, in milliseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub action_ms: u64,
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl Usage {
    /// Adds another call's usage.
    pub fn add(&mut self, other: &Usage) {
        if other.model_id.is_some() {
            self.model_id.clone_from(&other.model_id);
        }
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.calls += other.calls;
        self.model_ms += other.model_ms;
        self.action_calls += other.action_calls;
        self.action_ms += other.action_ms;
    }
}

named_enum!(
    /// How a ticket ended. Every accepted ticket ends in exactly one.
    Outcome, "outcome" {
        /// The bot answered.
        Answered = "answered",
        /// Handed to a human.
        Escalated = "escalated",
        /// Stored and forwarded to the human who owns the conversation.
        Forwarded = "forwarded",
        /// Given up after retries; a human was notified.
        DeadLettered = "dead_lettered",
        /// The message was only a greeting, thanks, acknowledgement or
        /// goodbye: answered in kind, neither a resolution nor an escalation.
        Acknowledged = "acknowledged",
        /// The customer thanked the bot after its answer: that answer is
        /// confirmed (nobody else is needed).
        Confirmed = "confirmed",
    }
);

impl Outcome {
    /// Whether a person had to be told about the ticket.
    pub fn needs_person(self) -> bool {
        matches!(
            self,
            Outcome::Escalated | Outcome::Forwarded | Outcome::DeadLettered
        )
    }
}
