//! What a customer says about a bot reply: thumbs up or down, and why.

use super::named_enum;

named_enum!(
    /// A customer's verdict on one bot reply.
    Rating, "rating" {
        /// It helped.
        Up = "up",
        /// It did not.
        Down = "down",
    }
);

named_enum!(
    /// What was wrong with a reply the customer rated down.
    FeedbackReason, "feedback reason" {
        /// The answer was wrong.
        WrongAnswer = "wrong_answer",
        /// The bot did not understand the question.
        DidNotUnderstand = "did_not_understand",
        /// The customer wanted a person.
        WantedPerson = "wanted_person",
    }
);
