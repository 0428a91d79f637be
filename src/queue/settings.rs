//! Queue behaviour: visibility, receives before the dead-letter queue,
//! retry back-off.

use serde::{Deserialize, Serialize};

/// Queue behaviour (local queue; the SQS equivalents live in the template).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Seconds a received message stays hidden; also the ticket lease.
    pub visibility_timeout_secs: u64,
    /// Receives before a message goes to the dead-letter queue.
    pub max_receives: u32,
    /// Largest envelope; longer text is cut with a marker.
    pub max_message_bytes: usize,
    /// First retry delay, milliseconds; doubles per attempt, with jitter.
    pub backoff_base_ms: u64,
    /// Longest retry delay, seconds.
    pub backoff_max_secs: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout_secs: 60,
            max_receives: 5,
            max_message_bytes: 256 * 1024,
            backoff_base_ms: 1_000,
            backoff_max_secs: 300,
        }
    }
}
