//! Time: the [`Clock`] trait, a monotonic clock (std) and a virtual clock with *autojump*, and
//! the deterministic timer queue that both executors use.
//!
//! Invariants:
//! - The kernel never reads the wall clock directly: every deadline and timeout is an
//!   [`Instant`] read from the loop's [`Clock`].
//! - [`Timers`] fires in `(deadline, registration order)` order, so two timers with the same
//!   deadline fire in the order they were armed, on every run.
//! - A virtual clock only moves when told to: by [`VirtualClock::advance`], or by the loop that
//!   owns it calling [`Clock::autojump`] when every task of every loop is blocked (trio's
//!   `MockClock(autojump_threshold=0)`).

use alloc::collections::BTreeMap;
use core::cell::Cell;
use core::ops::{Add, Sub};
use core::task::Waker;
use core::time::Duration;

/// A point on a [`Clock`]'s time line, in nanoseconds since the clock's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant(0);
    /// The end of time: a deadline that never passes.
    pub const NEVER: Instant = Instant(u64::MAX);

    /// An instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// A source of monotonic time for a loop.
pub trait Clock {
    /// The current time.
    fn now(&self) -> Instant;

    /// Called by the loop owner when every task of every loop it carries is blocked and the
    /// earliest deadline is `deadline`: a virtual clock with autojump moves to it and returns
    /// `true`; a real clock returns `false` (the loop then sleeps until then).
    fn autojump(&self, deadline: Instant) -> bool {
        let _ = deadline;
        false
    }

    /// Whether [`autojump`](Clock::autojump) can ever move this clock (lets a loop skip the
    /// non-blocking I/O probe it makes before jumping).
    fn may_autojump(&self) -> bool {
        false
    }
}

/// A clock that only moves when told to. With autojump on, a loop that has nothing to do but
/// wait jumps it straight to the next deadline, so ten virtual minutes pass in microseconds.
///
/// ```
/// use infect::time::{Clock, Instant, VirtualClock};
/// use core::time::Duration;
/// let clock = VirtualClock::new();
/// clock.advance(Duration::from_millis(5));
/// assert_eq!(clock.now(), Instant::from_nanos(5_000_000));
/// assert!(clock.autojump(Instant::from_nanos(9_000_000)));
/// assert_eq!(clock.now().as_nanos(), 9_000_000);
/// ```
#[derive(Debug, Default)]
pub struct VirtualClock {
    now: Cell<u64>,
    no_autojump: bool,
}

impl VirtualClock {
    /// A virtual clock at [`Instant::ZERO`], with autojump.
    pub fn new() -> VirtualClock {
        VirtualClock { now: Cell::new(0), no_autojump: false }
    }

    /// A virtual clock at zero that never jumps by itself: a loop that waits on it with nothing
    /// else to do returns as stalled (or waits on its fds) until the test advances it.
    pub fn without_autojump() -> VirtualClock {
        VirtualClock { now: Cell::new(0), no_autojump: true }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.now.set((Instant(self.now.get()) + d).0);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        Instant(self.now.get())
    }

    fn may_autojump(&self) -> bool {
        !self.no_autojump
    }

    fn autojump(&self, deadline: Instant) -> bool {
        if self.no_autojump || deadline == Instant::NEVER {
            return false;
        }
        if deadline.0 > self.now.get() {
            self.now.set(deadline.0);
        }
        true
    }
}

/// The operating system's monotonic clock, with its origin at creation.
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct MonotonicClock {
    origin: std::time::Instant,
}

#[cfg(feature = "std")]
impl MonotonicClock {
    /// A monotonic clock whose origin is now.
    pub fn new() -> MonotonicClock {
        MonotonicClock { origin: std::time::Instant::now() }
    }
}

#[cfg(feature = "std")]
impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "std")]
impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        Instant(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}

/// The key of an armed timer, to disarm it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerKey(Instant, u64);

impl TimerKey {
    /// When the timer fires.
    pub fn deadline(self) -> Instant {
        self.0
    }
}

/// A deterministic timer queue: targets (wakers by default) keyed by `(deadline, arming order)`.
#[derive(Debug)]
pub struct Timers<T = Waker> {
    armed: BTreeMap<TimerKey, T>,
    seq: u64,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers { armed: BTreeMap::new(), seq: 0 }
    }
}

/// A timer target that can carry a task's waker: what a sleep arms. The host's and the guest's
/// timer queues fire other targets too (callbacks, scope deadlines); this is how a sleep's
/// registration reaches its waker in either.
pub trait WakeTarget {
    /// The target that wakes `waker`.
    fn from_waker(waker: &Waker) -> Self;
    /// The waker this target wakes, if it is a waker target.
    fn waker_mut(&mut self) -> Option<&mut Waker>;
}

impl WakeTarget for Waker {
    fn from_waker(waker: &Waker) -> Self {
        waker.clone()
    }

    fn waker_mut(&mut self) -> Option<&mut Waker> {
        Some(self)
    }
}

impl<T: WakeTarget> Timers<T> {
    /// Replaces the waker of an armed timer; `false` if it already fired or was disarmed.
    pub fn rearm(&mut self, key: TimerKey, waker: &Waker) -> bool {
        match self.armed.get_mut(&key).and_then(T::waker_mut) {
            Some(w) => {
                if !w.will_wake(waker) {
                    w.clone_from(waker);
                }
                true
            }
            None => false,
        }
    }

    /// The one registration path of every sleep (host and guest): the timer slot `slot` wakes
    /// `waker` at `deadline`. A slot that is still armed keeps its place in the queue and takes
    /// `waker`, the waker of the latest poll (the `Future` contract: a sleep polled by another
    /// task wakes that task); an empty or fired slot is armed afresh.
    ///
    /// ```
    /// use infect::time::{Instant, Timers};
    /// use std::task::Waker;
    /// let mut timers: Timers = Timers::new();
    /// let mut slot = None;
    /// timers.register(&mut slot, Instant::from_nanos(5), Waker::noop());
    /// let first = slot;
    /// timers.register(&mut slot, Instant::from_nanos(5), Waker::noop());
    /// assert_eq!(slot, first); // re-registered in place
    /// assert_eq!(timers.len(), 1);
    /// ```
    pub fn register(&mut self, slot: &mut Option<TimerKey>, deadline: Instant, waker: &Waker) {
        if let Some(k) = *slot
            && k.deadline() == deadline
            && self.rearm(k, waker)
        {
            return;
        }
        if let Some(k) = slot.take() {
            self.disarm(k);
        }
        *slot = Some(self.arm(deadline, T::from_waker(waker)));
    }
}

impl<T> Timers<T> {
    /// An empty queue.
    pub fn new() -> Timers<T> {
        Timers::default()
    }

    /// Arms a timer that fires `target` at `deadline`.
    pub fn arm(&mut self, deadline: Instant, target: T) -> TimerKey {
        self.seq += 1;
        let key = TimerKey(deadline, self.seq);
        self.armed.insert(key, target);
        key
    }

    /// Disarms a timer (no effect if it already fired).
    pub fn disarm(&mut self, key: TimerKey) {
        self.armed.remove(&key);
    }

    /// Whether the timer is still armed.
    pub fn is_armed(&self, key: TimerKey) -> bool {
        self.armed.contains_key(&key)
    }

    /// The earliest deadline, if any timer is armed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.armed.keys().next().map(|k| k.0)
    }

    /// Removes and returns the target of the earliest timer if its deadline is `<= now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<T> {
        let first = self.armed.first_key_value().map(|(k, _)| *k)?;
        if first.0 <= now { self.armed.remove(&first) } else { None }
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.armed.len()
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }
}
