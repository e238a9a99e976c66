//! BullMQ's transitions: from an attempt's verdict to the job's next state
//! on Redis, and what the crate's worker is told. The one place a retry's
//! backoff is decided.
//!
//! The crate's worker owns fetching, locks and the final moves to completed
//! and failed. Retries are decided here, because the crate cannot decide them
//! as BullMQ does: it ignores `backoff.jitter`, cannot pass a failure's name
//! or the job to a custom strategy, writes no `failedReason`/`stacktrace` on a
//! retry, and ignores `lifo` on an immediate retry. So a retry is carried out
//! with the job's own moves (`move_to_delayed`, `move_to_wait`) and the
//! crate is told `Delayed` (nothing more to do), or, for the plain
//! immediate retry the crate does right, handed back to it.
//!
//! What is done on Redis goes through [`Moves`], and the module's strategy
//! through [`Strategy`]: the decisions are unit-tested with fakes of both.

use crate::json::{self, ReturnValue};
use crate::observe::metrics::Outcome;
use crate::outcome::options::JobOptions;
use crate::outcome::{self, RetryPlan, Verdict};
use crate::sandbox::Failure;
use crate::units::HumanDuration;
use bullmq::Error;
use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What a transition does to the job and its queue on Redis.
pub(crate) trait Moves: Send + Sync {
    /// The job's options, read field by field (its defaults, said in the
    /// log, when they cannot be read).
    fn options(&self) -> BoxFuture<'_, JobOptions>;

    /// Writes the job's `failedReason` and a `stacktrace` entry (kept to
    /// `opts.stack_trace_limit`), and with `count_attempt` adds one to
    /// `attemptsMade` in the same transaction. A write that fails is said
    /// in the log: the crate's move still decides the job's state.
    fn record_failure<'a>(
        &'a self,
        reason: &'a str,
        stack: &'a str,
        opts: &'a JobOptions,
        count_attempt: bool,
    ) -> BoxFuture<'a, ()>;

    /// Moves the job to delayed until `until_ms`.
    fn move_to_delayed(&self, until_ms: u64) -> BoxFuture<'_, Result<(), Error>>;

    /// Moves the job to the end of wait that is taken next (`lifo`).
    fn move_to_wait(&self) -> BoxFuture<'_, Result<(), Error>>;

    /// Moves the job to waiting-children if a child is pending: `true` if
    /// it did.
    fn move_to_waiting_children(&self) -> BoxFuture<'_, Result<bool, Error>>;

    /// Pauses the queue `ms` milliseconds, as BullMQ's `rateLimit` does,
    /// and tells the queue's workers.
    fn rate_limit(&self, ms: u64) -> BoxFuture<'_, Result<(), Error>>;

    /// Gives the crate the return value as JSON text to store as it is, in
    /// place of the value its worker is told.
    fn return_json(&self, json: String) -> Result<(), Error>;
}

/// What the module's `backoff` export answered for a custom strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Asked {
    /// Retry after this long (zero: at once).
    After(Duration),
    /// Do not retry: the job fails with the failure's reason.
    GiveUp,
    /// The job fails with this reason instead (the strategy crashed, or
    /// the module does not know it).
    Fails(String),
}

/// Asks the module version the attempt ran on for a custom strategy.
pub(crate) trait Strategy: Send + Sync {
    /// The module's answer for `strategy` after `failure`, the job's
    /// `attempts_made`-th.
    fn ask<'a>(
        &'a self,
        attempts_made: u32,
        strategy: &'a str,
        failure: &'a Failure,
    ) -> BoxFuture<'a, Asked>;
}

/// What a transition knows of the job besides its verdict.
pub(crate) struct Facts {
    /// `attemptsMade` before this attempt.
    pub attempts_made: u32,
    /// Whether the crate, handed a failure for this job, would retry it at
    /// once (it reads the job's options its own way).
    pub crate_retries_at_once: bool,
    /// Whether the guest moved the job to waiting-children itself.
    pub moved_to_waiting_children: bool,
}

/// One attempt's transition.
pub(crate) struct Transition<'a> {
    pub moves: &'a dyn Moves,
    pub strategy: &'a dyn Strategy,
    /// A failure's stack trace entry when the guest gave none: `Name:
    /// message` and the module, as a JS stack names its file.
    pub stack_entry: &'a (dyn Fn(&Failure) -> String + Sync),
    pub facts: Facts,
    /// Whether a `delayed` answer of this queue was brought within bounds
    /// already (said once per queue).
    pub delay_bounded: &'a AtomicBool,
    pub now_ms: u64,
    /// The draw for jitter, 0.0 to 1.0.
    pub random: f64,
}

impl Transition<'_> {
    /// Carries out `verdict`: the job's moves, and what the crate's worker
    /// is told, with how the attempt ended. A failure's stack entry is
    /// `guest_stack` when the guest gave one.
    pub async fn apply(
        &self,
        verdict: Verdict,
        guest_stack: Option<String>,
    ) -> (Result<Value, Error>, Outcome) {
        match verdict {
            Verdict::Completed(json) => match json::storable_return_value(&json) {
                Ok(ReturnValue::Value(value)) => (Ok(value), Outcome::Completed),
                Ok(ReturnValue::Text(text)) => match self.moves.return_json(text) {
                    Ok(()) => (Ok(Value::Null), Outcome::Completed),
                    Err(e) => {
                        let failure = Failure {
                            message: format!("the return value cannot be stored: {e}"),
                            name: Some("ReturnValueError".into()),
                        };
                        self.fail(failure, None).await
                    }
                },
                Err(message) => {
                    let failure = Failure {
                        message,
                        name: Some("ReturnValueError".into()),
                    };
                    self.fail(failure, None).await
                }
            },
            Verdict::Failed(failure) => self.fail(failure, guest_stack).await,
            Verdict::Unrecoverable(reason) => {
                let failure = Failure {
                    message: reason.clone(),
                    name: Some("UnrecoverableError".into()),
                };
                let opts = self.moves.options().await;
                self.record(&failure, guest_stack.as_deref(), &opts, false)
                    .await;
                (Err(Error::Unrecoverable(reason)), Outcome::Unrecoverable)
            }
            Verdict::RateLimited(asked) => {
                let ms = outcome::rate_limit(asked);
                if ms != asked {
                    tracing::warn!(
                        "the module asked to pause the queue {asked} ms; paused {ms} ms, the most bullpen allows"
                    );
                }
                let told = match self.moves.rate_limit(ms).await {
                    Ok(()) => Err(Error::RateLimited { delay_ms: ms }),
                    Err(e) => Err(e),
                };
                (told, Outcome::RateLimited)
            }
            Verdict::Delayed(asked) => {
                let until = outcome::delayed_until(asked, self.now_ms);
                if until != asked && !self.delay_bounded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "the module asked to delay the job until {asked}; delayed until {until} \
                         (between {:?} and {} from now; said once per queue)",
                        outcome::MIN_DELAY,
                        HumanDuration(outcome::MAX_DELAY)
                    );
                }
                let told = match self.moves.move_to_delayed(until).await {
                    Ok(()) => Err(Error::Delayed),
                    Err(e) => Err(e),
                };
                (told, Outcome::Delayed)
            }
            Verdict::WaitingChildren => (self.wait_for_children().await, Outcome::WaitingChildren),
        }
    }

    /// BullMQ's `WaitingChildrenError`: the job waits in waiting-children
    /// (moved there by the guest already, or now); with no child pending it
    /// goes back to wait and runs again, no attempt counted (the crate's
    /// `RateLimited` path is exactly that move when no rate limit is set).
    async fn wait_for_children(&self) -> Result<Value, Error> {
        if self.facts.moved_to_waiting_children || self.moves.move_to_waiting_children().await? {
            return Err(Error::WaitingChildren);
        }
        tracing::debug!("waiting-children with no child pending: back to wait");
        Err(Error::RateLimited { delay_ms: 0 })
    }

    async fn record(
        &self,
        failure: &Failure,
        guest_stack: Option<&str>,
        opts: &JobOptions,
        count_attempt: bool,
    ) {
        let stack = match guest_stack {
            Some(stack) => stack.to_owned(),
            None => (self.stack_entry)(failure),
        };
        self.moves
            .record_failure(&failure.message, &stack, opts, count_attempt)
            .await;
    }

    async fn fail(
        &self,
        failure: Failure,
        guest_stack: Option<String>,
    ) -> (Result<Value, Error>, Outcome) {
        let opts = self.moves.options().await;
        let attempts_made = self.facts.attempts_made + 1;
        let plan = outcome::plan_retry(
            attempts_made,
            opts.attempts,
            opts.backoff.as_ref(),
            self.random,
        );
        let delay = match plan {
            RetryPlan::Exhausted => Asked::GiveUp,
            RetryPlan::After(delay) => Asked::After(delay),
            RetryPlan::AskModule { strategy } => {
                self.strategy.ask(attempts_made, &strategy, &failure).await
            }
        };
        match delay {
            Asked::GiveUp => {
                self.record(&failure, guest_stack.as_deref(), &opts, false)
                    .await;
                (Err(Error::Unrecoverable(failure.message)), Outcome::Failed)
            }
            Asked::Fails(reason) => {
                // The reason is the host's (the strategy crashed or is
                // unknown): so is the entry.
                let failure = Failure {
                    message: reason.clone(),
                    name: failure.name,
                };
                self.record(&failure, None, &opts, false).await;
                (Err(Error::Unrecoverable(reason)), Outcome::Failed)
            }
            Asked::After(delay) => (
                self.retry(&failure, guest_stack.as_deref(), &opts, delay)
                    .await,
                Outcome::Retried,
            ),
        }
    }

    async fn retry(
        &self,
        failure: &Failure,
        guest_stack: Option<&str>,
        opts: &JobOptions,
        delay: Duration,
    ) -> Result<Value, Error> {
        if delay.is_zero() && !opts.lifo && self.facts.crate_retries_at_once {
            // The crate's own immediate retry is BullMQ's (LPUSH to wait,
            // attemptsMade + 1, a `waiting` event); it only lacks the fields.
            self.record(failure, guest_stack, opts, false).await;
            return Err(Error::ProcessingError(failure.message.clone()));
        }
        self.record(failure, guest_stack, opts, true).await;
        if delay > outcome::MAX_DELAY {
            tracing::warn!(
                "the retry's backoff of {} is cut to {}, the longest bullpen waits",
                HumanDuration(delay),
                HumanDuration(outcome::MAX_DELAY)
            );
        }
        if delay.is_zero() && opts.lifo {
            // RPUSH to wait: the next job taken, as BullMQ's lifo retry.
            self.moves.move_to_wait().await?;
        } else {
            self.moves
                .move_to_delayed(outcome::retry_at(self.now_ms, delay))
                .await?;
        }
        Err(Error::Delayed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::options::JobBackoff;
    use std::sync::Mutex;

    /// Records every move, as text; answers from its fields.
    #[derive(Default)]
    struct FakeJob {
        opts: JobOptions,
        has_children: bool,
        did: Mutex<Vec<String>>,
    }

    impl FakeJob {
        fn did(&self, what: String) {
            self.did.lock().unwrap().push(what);
        }

        fn moves(&self) -> Vec<String> {
            self.did.lock().unwrap().clone()
        }
    }

    impl Moves for FakeJob {
        fn options(&self) -> BoxFuture<'_, JobOptions> {
            Box::pin(async { self.opts.clone() })
        }

        fn record_failure<'a>(
            &'a self,
            reason: &'a str,
            stack: &'a str,
            _: &'a JobOptions,
            count_attempt: bool,
        ) -> BoxFuture<'a, ()> {
            self.did(format!("record {reason:?} {stack:?} count={count_attempt}"));
            Box::pin(async {})
        }

        fn move_to_delayed(&self, until_ms: u64) -> BoxFuture<'_, Result<(), Error>> {
            self.did(format!("delayed until {until_ms}"));
            Box::pin(async { Ok(()) })
        }

        fn move_to_wait(&self) -> BoxFuture<'_, Result<(), Error>> {
            self.did("wait".into());
            Box::pin(async { Ok(()) })
        }

        fn move_to_waiting_children(&self) -> BoxFuture<'_, Result<bool, Error>> {
            self.did("waiting-children?".into());
            Box::pin(async { Ok(self.has_children) })
        }

        fn rate_limit(&self, ms: u64) -> BoxFuture<'_, Result<(), Error>> {
            self.did(format!("rate limit {ms}"));
            Box::pin(async { Ok(()) })
        }

        fn return_json(&self, json: String) -> Result<(), Error> {
            self.did(format!("return json {json}"));
            Ok(())
        }
    }

    /// A strategy that answers the same whatever it is asked.
    struct Answers(Asked);

    impl Strategy for Answers {
        fn ask<'a>(&'a self, _: u32, _: &'a str, _: &'a Failure) -> BoxFuture<'a, Asked> {
            Box::pin(async { self.0.clone() })
        }
    }

    const NOW: u64 = 1_000_000;

    fn entry(failure: &Failure) -> String {
        format!(
            "{}: {}",
            failure.name.as_deref().unwrap_or("Error"),
            failure.message
        )
    }

    async fn apply(
        job: &FakeJob,
        facts: Facts,
        strategy: Asked,
        verdict: Verdict,
    ) -> (Result<Value, Error>, Outcome) {
        let bounded = AtomicBool::new(false);
        let transition = Transition {
            moves: job,
            strategy: &Answers(strategy),
            stack_entry: &entry,
            facts,
            delay_bounded: &bounded,
            now_ms: NOW,
            random: 0.5,
        };
        transition.apply(verdict, None).await
    }

    fn facts(attempts_made: u32) -> Facts {
        Facts {
            attempts_made,
            crate_retries_at_once: false,
            moved_to_waiting_children: false,
        }
    }

    fn failed(message: &str) -> Verdict {
        Verdict::Failed(Failure {
            message: message.into(),
            name: Some("Transient".into()),
        })
    }

    fn attempts(attempts: u32, backoff: Option<(&str, u64)>) -> JobOptions {
        JobOptions {
            attempts,
            backoff: backoff.map(|(kind, delay)| JobBackoff {
                kind: kind.into(),
                delay,
                jitter: 0.0,
            }),
            ..JobOptions::default()
        }
    }

    #[tokio::test]
    async fn a_failure_with_attempts_left_is_delayed_by_its_backoff_and_counted() {
        let job = FakeJob {
            opts: attempts(3, Some(("exponential", 1000))),
            ..FakeJob::default()
        };
        // Second failure: 2^1 × 1000 ms.
        let (told, outcome) = apply(&job, facts(1), Asked::GiveUp, failed("boom")).await;
        assert!(matches!(told, Err(Error::Delayed)));
        assert_eq!(outcome, Outcome::Retried);
        assert_eq!(
            job.moves(),
            [
                "record \"boom\" \"Transient: boom\" count=true".to_owned(),
                format!("delayed until {}", NOW + 2000),
            ]
        );
    }

    #[tokio::test]
    async fn the_last_attempt_fails_the_job_without_a_move() {
        let job = FakeJob {
            opts: attempts(2, Some(("fixed", 1000))),
            ..FakeJob::default()
        };
        let (told, outcome) = apply(&job, facts(1), Asked::GiveUp, failed("boom")).await;
        assert!(matches!(told, Err(Error::Unrecoverable(reason)) if reason == "boom"));
        assert_eq!(outcome, Outcome::Failed);
        assert_eq!(
            job.moves(),
            ["record \"boom\" \"Transient: boom\" count=false"]
        );
    }

    #[tokio::test]
    async fn an_immediate_retry_goes_back_to_the_crate_unless_lifo() {
        let job = FakeJob {
            opts: attempts(3, None),
            ..FakeJob::default()
        };
        let crate_does_it = Facts {
            crate_retries_at_once: true,
            ..facts(0)
        };
        let (told, _) = apply(&job, crate_does_it, Asked::GiveUp, failed("boom")).await;
        assert!(matches!(told, Err(Error::ProcessingError(m)) if m == "boom"));
        assert_eq!(job.moves().len(), 1, "only the fields: {:?}", job.moves());

        let lifo = FakeJob {
            opts: JobOptions {
                lifo: true,
                ..attempts(3, None)
            },
            ..FakeJob::default()
        };
        let crate_does_it = Facts {
            crate_retries_at_once: true,
            ..facts(0)
        };
        let (told, _) = apply(&lifo, crate_does_it, Asked::GiveUp, failed("boom")).await;
        assert!(matches!(told, Err(Error::Delayed)));
        assert_eq!(lifo.moves()[1], "wait");
    }

    #[tokio::test]
    async fn a_custom_strategy_is_the_modules_to_decide() {
        let custom = || FakeJob {
            opts: attempts(5, Some(("linear", 0))),
            ..FakeJob::default()
        };
        let job = custom();
        let after = Asked::After(Duration::from_millis(750));
        let (told, outcome) = apply(&job, facts(0), after, failed("boom")).await;
        assert!(matches!(told, Err(Error::Delayed)));
        assert_eq!(outcome, Outcome::Retried);
        assert_eq!(job.moves()[1], format!("delayed until {}", NOW + 750));

        let job = custom();
        let (told, outcome) = apply(&job, facts(0), Asked::GiveUp, failed("boom")).await;
        assert!(matches!(told, Err(Error::Unrecoverable(m)) if m == "boom"));
        assert_eq!(outcome, Outcome::Failed);

        // A crashed strategy fails the job with the host's reason and entry.
        let job = custom();
        let crashed = Asked::Fails("boom (backoff strategy linear crashed: trapped)".into());
        let (told, _) = apply(&job, facts(0), crashed, failed("boom")).await;
        assert!(matches!(told, Err(Error::Unrecoverable(m)) if m.contains("crashed")));
        assert_eq!(
            job.moves(),
            [
                "record \"boom (backoff strategy linear crashed: trapped)\" \"Transient: boom (backoff strategy linear crashed: trapped)\" count=false"
            ]
        );
    }

    #[tokio::test]
    async fn a_backoff_past_the_longest_wait_is_cut() {
        let job = FakeJob {
            opts: attempts(2, Some(("fixed", u64::MAX / 2))),
            ..FakeJob::default()
        };
        let (told, _) = apply(&job, facts(0), Asked::GiveUp, failed("boom")).await;
        assert!(matches!(told, Err(Error::Delayed)));
        assert_eq!(
            job.moves()[1],
            format!(
                "delayed until {}",
                NOW + outcome::MAX_DELAY.as_millis() as u64
            )
        );
    }

    #[tokio::test]
    async fn unrecoverable_rate_limited_and_delayed_count_no_attempt() {
        let job = FakeJob {
            opts: attempts(5, None),
            ..FakeJob::default()
        };
        let (told, outcome) = apply(
            &job,
            facts(0),
            Asked::GiveUp,
            Verdict::Unrecoverable("bad input".into()),
        )
        .await;
        assert!(matches!(told, Err(Error::Unrecoverable(m)) if m == "bad input"));
        assert_eq!(outcome, Outcome::Unrecoverable);
        let (told, outcome) = apply(&job, facts(0), Asked::GiveUp, Verdict::RateLimited(500)).await;
        assert!(matches!(told, Err(Error::RateLimited { delay_ms: 500 })));
        assert_eq!(outcome, Outcome::RateLimited);
        let (told, outcome) =
            apply(&job, facts(0), Asked::GiveUp, Verdict::Delayed(NOW + 5000)).await;
        assert!(matches!(told, Err(Error::Delayed)));
        assert_eq!(outcome, Outcome::Delayed);
        assert_eq!(
            job.moves(),
            [
                "record \"bad input\" \"UnrecoverableError: bad input\" count=false".to_owned(),
                "rate limit 500".to_owned(),
                format!("delayed until {}", NOW + 5000),
            ]
        );
    }

    #[tokio::test]
    async fn waiting_children_waits_only_with_a_child_pending() {
        let pending = FakeJob {
            has_children: true,
            ..FakeJob::default()
        };
        let (told, _) = apply(&pending, facts(0), Asked::GiveUp, Verdict::WaitingChildren).await;
        assert!(matches!(told, Err(Error::WaitingChildren)));
        let none = FakeJob::default();
        let (told, outcome) = apply(&none, facts(0), Asked::GiveUp, Verdict::WaitingChildren).await;
        assert!(matches!(told, Err(Error::RateLimited { delay_ms: 0 })));
        assert_eq!(outcome, Outcome::WaitingChildren);
        // Moved by the guest already: nothing more to ask.
        let moved = FakeJob::default();
        let facts = Facts {
            moved_to_waiting_children: true,
            ..facts(0)
        };
        let (told, _) = apply(&moved, facts, Asked::GiveUp, Verdict::WaitingChildren).await;
        assert!(matches!(told, Err(Error::WaitingChildren)));
        assert!(moved.moves().is_empty());
    }

    #[tokio::test]
    async fn a_return_value_that_cannot_be_stored_fails_the_attempt() {
        let job = FakeJob {
            opts: attempts(1, None),
            ..FakeJob::default()
        };
        let too_deep = format!("{}{}", "[".repeat(1001), "]".repeat(1001));
        let (told, outcome) =
            apply(&job, facts(0), Asked::GiveUp, Verdict::Completed(too_deep)).await;
        assert!(matches!(told, Err(Error::Unrecoverable(m)) if m.contains("1001 levels deep")));
        assert_eq!(outcome, Outcome::Failed);
        assert!(job.moves()[0].contains("ReturnValueError: the return value cannot be stored"));
    }

    #[tokio::test]
    async fn a_return_value_with_a_lone_surrogate_is_stored_as_written() {
        let job = FakeJob::default();
        let text = r#"{"s":"x\ud800y"}"#;
        let (told, outcome) = apply(
            &job,
            facts(0),
            Asked::GiveUp,
            Verdict::Completed(text.into()),
        )
        .await;
        assert!(matches!(told, Ok(Value::Null)));
        assert_eq!(outcome, Outcome::Completed);
        assert_eq!(job.moves(), [format!("return json {text}")]);
    }
}
