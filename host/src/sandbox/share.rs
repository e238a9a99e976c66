//! The CPU share between queues: how many of a queue's guests may compute
//! at once while other queues have work.
//!
//! A guest that computes past an epoch tick stops at the tick's yield point
//! and asks its queue's [`Lane`] for a turn. A lane lets as many of its
//! guests compute at once as its share of the runtime's worker threads: all
//! of them while its queue is the only one with attempts running, and its
//! `cpu_weight`'s part of them (one at least) while other queues have
//! attempts too. The others wait, parked, in order; each turn lasts until
//! the guest's next tick, when the longest waiting guest goes next. Beside
//! busy queues, a guest that computed a tick also pauses, its turn held,
//! for a tick per weight of theirs per weight of its own (at most 10 ms),
//! so that the busy queues get the threads' time, not only their number.
//!
//! Parked guests are off the runtime's run queue: sixteen spinners on one
//! queue used to stand, a millisecond each, between every wake-up of
//! another queue's short jobs and its worker thread; now one or two do.
//! Short jobs (done within a tick) never reach the yield point: their only
//! cost is marking their queue busy at the start of each call (one clock
//! read and one atomic store).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long a queue counts as busy after its last call started.
const BUSY_FOR: Duration = Duration::from_millis(100);

/// Every queue's lane: who is busy, and their weights.
#[derive(Debug)]
pub struct CpuShare {
    /// Guests that may compute at once on the whole host: the runtime's
    /// worker threads.
    threads: usize,
    started: Instant,
    lanes: Mutex<Vec<Weak<Lane>>>,
}

impl CpuShare {
    /// A share of `threads` worker threads.
    pub fn new(threads: usize) -> Arc<Self> {
        Arc::new(CpuShare {
            threads: threads.max(1),
            started: Instant::now(),
            lanes: Mutex::default(),
        })
    }

    /// A share of the current tokio runtime's worker threads (one outside a
    /// runtime).
    pub fn of_runtime() -> Arc<Self> {
        let threads = tokio::runtime::Handle::try_current()
            .map(|runtime| runtime.metrics().num_workers())
            .unwrap_or(1);
        Self::new(threads)
    }

    /// A lane for a queue of weight `weight`; it takes part in the share
    /// until dropped.
    pub fn lane(self: &Arc<Self>, queue: &str, weight: u32) -> Arc<Lane> {
        let lane = Arc::new(Lane {
            queue: queue.into(),
            weight: weight.max(1),
            share: self.clone(),
            busy_until: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            turns: Mutex::new(Turns::default()),
            waiting_now: AtomicUsize::new(0),
            said_at: AtomicU64::new(0),
        });
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes.retain(|lane| lane.strong_count() > 0);
        lanes.push(Arc::downgrade(&lane));
        lane
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// How many of `lane`'s guests may compute at once now.
    fn allowed(&self, lane: &Lane) -> usize {
        let busy_weights = self.busy_weights(lane);
        if busy_weights == 0 {
            return self.threads;
        }
        let weight = u64::from(lane.weight);
        let share = self.threads as u64 * weight / (weight + busy_weights);
        (share as usize).clamp(1, self.threads)
    }

    /// The weights of the queues busy now besides `lane`'s.
    fn busy_weights(&self, lane: &Lane) -> u64 {
        let now = self.now_ms();
        let lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|other| !std::ptr::eq(&**other, lane) && other.busy_at(now))
            .map(|other| u64::from(other.weight))
            .sum()
    }

    /// How long a guest of `lane` that just computed a tick leaves its
    /// thread to the busy queues before its next turn: [`PAUSE_PER_WEIGHT`]
    /// for each weight of theirs per weight of its own (at most
    /// [`MAX_PAUSE`]), nothing while no other queue is busy.
    fn pause(&self, lane: &Lane) -> Duration {
        let busy = self.busy_weights(lane);
        if busy == 0 {
            return Duration::ZERO;
        }
        (PAUSE_PER_WEIGHT * busy as u32 / lane.weight).min(MAX_PAUSE)
    }
}

/// A computing guest's pause per weight of the busy queues beside it (per
/// weight of its own), after each tick it computed: one tick. (Two or four
/// did not keep a no-op queue beside 16 spinners more of its throughput:
/// what it loses is its wake-ups waiting behind a spinner's slice, not
/// CPU; docs/BENCHMARKS.md.)
const PAUSE_PER_WEIGHT: Duration = Duration::from_millis(1);

/// The longest a computing guest leaves its thread to busier queues at a
/// time.
const MAX_PAUSE: Duration = Duration::from_millis(10);

/// One queue's place in the [`CpuShare`].
#[derive(Debug)]
pub struct Lane {
    queue: Arc<str>,
    weight: u32,
    share: Arc<CpuShare>,
    /// Milliseconds (of the share's clock) until which the queue counts as
    /// busy.
    busy_until: AtomicU64,
    /// Turns waited for, ever.
    waits: AtomicU64,
    turns: Mutex<Turns>,
    waiting_now: AtomicUsize,
    /// When (the share's clock, plus one) the log last heard of waits.
    said_at: AtomicU64,
}

#[derive(Debug, Default)]
struct Turns {
    /// Guests computing now.
    running: usize,
    /// Guests waiting for a turn, longest first.
    waiting: VecDeque<oneshot::Sender<()>>,
}

/// Lanes are equal when they are the same lane.
impl PartialEq for Lane {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Lane {}

/// How often a lane whose guests wait says so in the log.
const SAY_EVERY: Duration = Duration::from_secs(60);

impl Lane {
    /// Turns its guests waited for because other queues were busy.
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Guests waiting for a turn now.
    pub fn waiting(&self) -> usize {
        self.waiting_now.load(Ordering::Relaxed)
    }

    fn busy_at(&self, now: u64) -> bool {
        self.busy_until.load(Ordering::Relaxed) > now
    }

    /// A call of the queue starts, or one computes on: the queue is busy
    /// for a while.
    pub fn call_started(&self) {
        let until = self.share.now_ms() + BUSY_FOR.as_millis() as u64;
        self.busy_until.fetch_max(until, Ordering::Relaxed);
    }

    /// Waits for the calling guest's next turn to compute; `held` says
    /// whether it holds one now (it gives it up first) and is set once it
    /// holds the next. Returns whether it waited because other queues are
    /// busy (a queue alone only takes turns among its own guests).
    pub async fn next_turn(self: Arc<Self>, held: Arc<Held>) -> bool {
        self.call_started();
        // Beside busy queues, a tick computed is paid for with a pause, the
        // turn still held: a queue of short jobs needs more than the
        // threads the spinners leave it (its Redis round trips run on the
        // same cores), and would keep 38 % of its throughput with one
        // thread given up to spinners whole.
        let pause = if held.is_set() {
            self.share.pause(&self)
        } else {
            Duration::ZERO
        };
        if !pause.is_zero() {
            self.waits.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(pause).await;
        }
        let waited = {
            let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            if held.take() {
                turns.running -= 1;
            }
            let allowed = self.share.allowed(&self);
            if turns.running < allowed && turns.waiting.is_empty() {
                turns.running += 1;
                held.set();
                None
            } else {
                let (tx, rx) = oneshot::channel();
                turns.waiting.push_back(tx);
                self.grant(&mut turns, allowed);
                let shared = allowed < self.share.threads;
                if shared {
                    self.say_waits(turns.waiting.len(), allowed);
                }
                Some((rx, shared))
            }
        };
        match waited {
            None => {
                if pause.is_zero() {
                    // Behind the tasks already waiting, timers and I/O
                    // included (a self-wake would take the worker's LIFO
                    // slot).
                    tokio::task::yield_now().await;
                }
                !pause.is_zero()
            }
            Some((rx, shared)) => {
                if shared {
                    self.waits.fetch_add(1, Ordering::Relaxed);
                }
                self.waiting_now.fetch_add(1, Ordering::Relaxed);
                let _counted = Uncount(&self.waiting_now);
                // Granted: `running` counts this guest already. A dropped
                // sender is only a lane being torn down: go on.
                let _ = rx.await;
                held.set();
                shared || !pause.is_zero()
            }
        }
    }

    /// Says, at most once a minute, that the queue's guests take turns.
    fn say_waits(&self, waiting: usize, allowed: usize) {
        let now = self.share.now_ms() + 1;
        let said = self.said_at.load(Ordering::Relaxed);
        if said != 0 && now < said + SAY_EVERY.as_millis() as u64 {
            return;
        }
        if self
            .said_at
            .compare_exchange(said, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::info!(
                queue = %self.queue,
                "{waiting} of the queue's attempts wait for their turn to compute: other queues \
                 are busy, and its cpu_weight ({}) gives it {allowed} of the {} threads at once \
                 (said at most once a minute)",
                self.weight,
                self.share.threads
            );
        }
    }

    /// Gives up the turn `held` holds, if any (a call ends).
    pub fn release(&self, held: &Held) {
        if held.take() {
            let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            turns.running -= 1;
            let allowed = self.share.allowed(self);
            self.grant(&mut turns, allowed);
        }
    }

    /// Hands free turns to the longest waiting guests still waiting.
    fn grant(&self, turns: &mut Turns, allowed: usize) {
        while turns.running < allowed {
            let Some(next) = turns.waiting.pop_front() else {
                return;
            };
            // A guest whose call ended while waiting has dropped its end.
            if next.send(()).is_ok() {
                turns.running += 1;
            }
        }
    }
}

struct Uncount<'a>(&'a AtomicUsize);

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether one call holds a turn of its lane.
#[derive(Debug, Default)]
pub struct Held(std::sync::atomic::AtomicBool);

impl Held {
    fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_queue_alone_takes_every_thread_and_shares_them_once_another_is_busy() {
        let share = CpuShare::new(4);
        let spinner = share.lane("a", 1);
        let held: Vec<Arc<Held>> = (0..6).map(|_| Arc::default()).collect();
        // Alone: four turns at once, the fifth waits.
        for h in &held[..4] {
            assert!(!spinner.clone().next_turn(h.clone()).await);
        }
        let fifth = tokio::spawn(spinner.clone().next_turn(held[4].clone()));
        tokio::task::yield_now().await;
        assert_eq!(spinner.waiting(), 1);

        // Another queue gets busy (weight 3): the spinner's share is one
        // thread of four. Its guests give up their turns at their ticks and
        // only one comes back.
        assert_eq!(share.pause(&spinner), Duration::ZERO, "alone");
        let other = share.lane("b", 3);
        other.call_started();
        // A tick per weight of the busy queue's, per weight of its own.
        assert_eq!(share.pause(&spinner), Duration::from_millis(3));
        assert_eq!(share.pause(&other), Duration::from_millis(1) / 3);
        for h in &held[..4] {
            spinner.release(h);
        }
        // It waited among its own queue's guests, not for another queue.
        assert!(!fifth.await.unwrap(), "the waiting guest goes first");
        assert!(held[4].0.load(Ordering::Relaxed));
        let sixth = tokio::spawn(spinner.clone().next_turn(held[5].clone()));
        tokio::task::yield_now().await;
        assert_eq!(spinner.waiting(), 1);
        spinner.release(&held[4]);
        assert!(sixth.await.unwrap(), "it waited for the other queue");
        assert_eq!(spinner.waits(), 1);
    }

    #[tokio::test]
    async fn a_waiting_guest_that_gives_up_passes_its_turn_on() {
        let share = CpuShare::new(1);
        let lane = share.lane("a", 1);
        let (first, second, third) = (Arc::default(), Arc::default(), Arc::default());
        assert!(!lane.clone().next_turn(first).await);
        let gone = tokio::spawn(lane.clone().next_turn(second));
        let waiting = tokio::spawn(lane.clone().next_turn(third));
        tokio::task::yield_now().await;
        gone.abort();
        let _ = gone.await;
        let first: Arc<Held> = {
            let h = Arc::new(Held::default());
            h.set();
            h
        };
        lane.release(&first);
        assert!(!waiting.await.unwrap());
        assert_eq!(lane.waiting(), 0);
    }
}
