//! A circuit breaker in front of a generator, so a throttling or failing
//! model is not hammered: after `threshold` transient failures in a row it
//! opens and fails fast for `cooldown` (telling the queue when to retry);
//! then one trial call goes through (half-open), and a success closes it.
//!
//! Per process (per Lambda instance): each instance backs off on its own,
//! which is what matters for the request rate it causes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{GenerateError, GenerateRequest, Generation, Generator};
use crate::domain::Usage;

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    /// Transient failures in a row that open the breaker (0 disables it).
    pub threshold: u32,
    /// How long it stays open before a trial call.
    pub cooldown_secs: u64,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            threshold: 5,
            cooldown_secs: 30,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A trial call is in flight; others fail fast until it reports.
    HalfOpen,
}

/// A generator behind a breaker.
pub struct Breaker<G> {
    inner: G,
    settings: BreakerSettings,
    state: Mutex<State>,
}

impl<G: Generator> Breaker<G> {
    /// Wraps `inner`.
    pub fn new(inner: G, settings: BreakerSettings) -> Self {
        Self {
            inner,
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// Whether calls are being refused now.
    pub fn is_open(&self) -> bool {
        matches!(*self.state.lock().unwrap_or_else(|p| p.into_inner()), State::Open { until } if until > Instant::now())
    }

    /// May this call go through? `Err(wait)` when refused.
    fn admit(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::HalfOpen;
                    Ok(())
                } else {
                    Err(until - now)
                }
            }
            State::HalfOpen => Err(Duration::from_secs(self.settings.cooldown_secs.max(1))),
        }
    }

    fn record(&self, transient_failure: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let cooldown = Duration::from_secs(self.settings.cooldown_secs);
        *state = match (&*state, transient_failure) {
            (_, false) => State::Closed { failures: 0 },
            (State::HalfOpen, true) => {
                tracing::warn!(
                    message = "Model circuit breaker re-opened after a failed trial call."
                );
                State::Open {
                    until: Instant::now() + cooldown,
                }
            }
            (State::Closed { failures }, true) if failures + 1 >= self.settings.threshold => {
                tracing::warn!(
                    message = "Model circuit breaker opened.",
                    failures = failures + 1,
                    cooldown_secs = cooldown.as_secs()
                );
                State::Open {
                    until: Instant::now() + cooldown,
                }
            }
            (State::Closed { failures }, true) => State::Closed {
                failures: failures + 1,
            },
            (State::Open { until }, true) => State::Open { until: *until },
        };
    }
}

#[async_trait]
impl<G: Generator> Generator for Breaker<G> {
    async fn generate(&self, request: &GenerateRequest) -> Result<Generation, GenerateError> {
        if self.settings.threshold == 0 {
            return self.inner.generate(request).await;
        }
        if let Err(wait) = self.admit() {
            return Err(GenerateError::Transient {
                detail: "model circuit breaker is open after repeated failures".into(),
                retry_after: Some(wait),
                usage: Usage::default(),
            });
        }
        let result = self.inner.generate(request).await;
        // Only transient failures count against the model; malformed output
        // and permanent errors say nothing about its availability.
        self.record(matches!(result, Err(GenerateError::Transient { .. })));
        result
    }

    async fn generate_with_tools(
        &self,
        request: &GenerateRequest,
        tools: &dyn super::tools::Tools,
    ) -> Result<Generation, GenerateError> {
        if self.settings.threshold == 0 {
            return self.inner.generate_with_tools(request, tools).await;
        }
        if let Err(wait) = self.admit() {
            return Err(GenerateError::Transient {
                detail: "model circuit breaker is open after repeated failures".into(),
                retry_after: Some(wait),
                usage: Usage::default(),
            });
        }
        let result = self.inner.generate_with_tools(request, tools).await;
        self.record(matches!(result, Err(GenerateError::Transient { .. })));
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::domain::Channel;

    struct Flaky {
        calls: AtomicU32,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl Generator for Flaky {
        async fn generate(&self, _: &GenerateRequest) -> Result<Generation, GenerateError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                Err(GenerateError::Transient {
                    detail: "429".into(),
                    retry_after: None,
                    usage: Usage::default(),
                })
            } else {
                Ok(Generation {
                    answer: "ok".into(),
                    confidence: 1.0,
                    needs_human: false,
                    reason: None,
                    sources: vec![],
                    usage: Usage::default(),
                })
            }
        }
    }

    fn request() -> GenerateRequest {
        GenerateRequest {
            question: "q".into(),
            subject: None,
            history: vec![],
            passages: vec![],
            channel: Channel::Widget,
        }
    }

    #[tokio::test]
    async fn opens_after_failures_fails_fast_then_half_opens() {
        let inner = Flaky {
            calls: AtomicU32::new(0),
            fail: true.into(),
        };
        let b = Breaker::new(
            inner,
            BreakerSettings {
                threshold: 3,
                cooldown_secs: 1,
            },
        );
        for _ in 0..3 {
            assert!(b.generate(&request()).await.is_err());
        }
        assert!(b.is_open());
        // Refused without calling the model, with a retry hint.
        for _ in 0..10 {
            match b.generate(&request()).await {
                Err(GenerateError::Transient {
                    retry_after: Some(w),
                    ..
                }) => assert!(w <= Duration::from_secs(1)),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(b.inner.calls.load(Ordering::SeqCst), 3);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // The trial call fails: open again.
        assert!(b.generate(&request()).await.is_err());
        assert_eq!(b.inner.calls.load(Ordering::SeqCst), 4);
        assert!(b.is_open());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // The model is back: the trial succeeds and the breaker closes.
        b.inner.fail.store(false, Ordering::SeqCst);
        assert!(b.generate(&request()).await.is_ok());
        assert!(!b.is_open());
        assert!(b.generate(&request()).await.is_ok());
        assert_eq!(b.inner.calls.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn successes_reset_the_count_and_zero_disables() {
        let b = Breaker::new(
            Flaky {
                calls: AtomicU32::new(0),
                fail: true.into(),
            },
            BreakerSettings {
                threshold: 2,
                cooldown_secs: 60,
            },
        );
        assert!(b.generate(&request()).await.is_err());
        b.inner.fail.store(false, Ordering::SeqCst);
        assert!(b.generate(&request()).await.is_ok());
        b.inner.fail.store(true, Ordering::SeqCst);
        assert!(b.generate(&request()).await.is_err());
        assert!(!b.is_open(), "a success in between must reset the count");
        let off = Breaker::new(
            Flaky {
                calls: AtomicU32::new(0),
                fail: true.into(),
            },
            BreakerSettings {
                threshold: 0,
                cooldown_secs: 60,
            },
        );
        for _ in 0..10 {
            let _ = off.generate(&request()).await;
        }
        assert_eq!(off.inner.calls.load(Ordering::SeqCst), 10);
    }
}
