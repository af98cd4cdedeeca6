//! Determinism tools: the optional event [`Trace`] of [`TraceEvent`]s, and the optional seeded
//! scheduling policy (crate-private; a loop gets one from its seed).
//!
//! Invariants:
//! - Without a policy, both run queues are FIFO: run order is wake order.
//! - With a policy, each batch of runnable tasks is permuted by a PRNG seeded once; the same
//!   seed and the same inputs give the same permutations, so a run is reproducible to the
//!   event and two seeds explore two interleavings.
//! - The trace records events in the order they happen. Recording goes through a lock-free
//!   queue, so a waker may record from any thread; a single-threaded run records the same
//!   sequence every time, which [`Trace::hash`] condenses for a determinism check.

use alloc::sync::Arc;
use alloc::vec::Vec;
use concurrent_queue::ConcurrentQueue;
use core::cell::Cell;

/// Which loop an event happened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The host executor.
    Host,
    /// The guest SC runtime.
    Guest,
}

/// One traced kernel event. Task numbers are per loop, in spawn order: a host's tasks count
/// from 1 ([`JoinHandle::id`](crate::host::JoinHandle::id); `Poll(Host, 0)` is the future of
/// [`Host::block_on`](crate::host::Host::block_on)), a guest run's from 0 (its main task).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceEvent {
    /// A task was spawned.
    Spawn(Side, u64),
    /// A task was polled.
    Poll(Side, u64),
    /// A task was woken (scheduled to be polled).
    Wake(Side, u64),
    /// A task was asked to cancel (a host task's cancel, or a guest task's scope).
    Cancel(Side, u64),
    /// A task finished (returned, failed, or was dropped).
    Exit(Side, u64),
    /// A linked task pair signal (`to_host`): the signal's name and the pair's number.
    Link(&'static str, u64),
    /// A guest tick started.
    GuestTick,
}

/// A shared, append-only record of kernel events. Clone it into the loops you want traced
/// ([`HostBuilder::trace`](crate::host::HostBuilder::trace),
/// [`GuestConfig::trace`](crate::guest::GuestConfig::trace)); a guest riding a traced host
/// records into the host's trace.
///
/// ```
/// use infect::host::Host;
/// use infect::trace::{Side, Trace, TraceEvent};
/// let trace = Trace::new();
/// let host = Host::builder().trace(trace.clone()).build()?;
/// let h = host.spawn(async { 1 });
/// host.run();
/// assert_eq!(
///     trace.take(),
///     [TraceEvent::Spawn(Side::Host, 1), TraceEvent::Poll(Side::Host, 1), TraceEvent::Exit(Side::Host, 1)]
/// );
/// assert!(trace.take().is_empty()); // taken
/// drop(h);
/// # Ok::<(), infect::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Trace {
    events: Arc<ConcurrentQueue<TraceEvent>>,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Trace {
        Trace { events: Arc::new(ConcurrentQueue::unbounded()) }
    }

    /// Appends an event.
    pub fn record(&self, event: TraceEvent) {
        // An unbounded queue only refuses a push once closed, and a trace is never closed.
        let _ = self.events.push(event);
    }

    /// Takes every event recorded so far, in order.
    pub fn take(&self) -> Vec<TraceEvent> {
        self.events.try_iter().collect()
    }

    /// Takes every event recorded so far and condenses it to a 64-bit FNV-1a hash
    /// ([`hash_events`]): two runs compared by one number.
    ///
    /// ```
    /// use infect::trace::{Side, Trace, TraceEvent, hash_events};
    /// let trace = Trace::new();
    /// trace.record(TraceEvent::Spawn(Side::Guest, 0));
    /// trace.record(TraceEvent::GuestTick);
    /// assert_eq!(trace.hash(), hash_events(&[TraceEvent::Spawn(Side::Guest, 0), TraceEvent::GuestTick]));
    /// assert_eq!(trace.hash(), hash_events(&[])); // the first hash took the events
    /// ```
    pub fn hash(&self) -> u64 {
        hash_events(&self.take())
    }
}

/// FNV-1a over the events' fields: equal sequences hash equally on every run and platform (the
/// value is stable: a test may pin it); order matters.
///
/// ```
/// use infect::trace::{Side, TraceEvent::*, hash_events};
/// let a = [Spawn(Side::Host, 1), Poll(Side::Host, 1)];
/// let b = [Poll(Side::Host, 1), Spawn(Side::Host, 1)];
/// assert_eq!(hash_events(&a), hash_events(&a.clone()));
/// assert_ne!(hash_events(&a), hash_events(&b));
/// assert_eq!(hash_events(&[]), 0xcbf2_9ce4_8422_2325); // FNV-1a's offset basis
/// ```
pub fn hash_events(events: &[TraceEvent]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u64| {
        for b in x.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for e in events {
        let (tag, side, n) = match *e {
            TraceEvent::Spawn(s, n) => (1, s, n),
            TraceEvent::Poll(s, n) => (2, s, n),
            TraceEvent::Wake(s, n) => (3, s, n),
            TraceEvent::Cancel(s, n) => (4, s, n),
            TraceEvent::Exit(s, n) => (5, s, n),
            TraceEvent::Link(name, n) => {
                eat(6);
                for b in name.bytes() {
                    eat(u64::from(b));
                }
                eat(n);
                continue;
            }
            TraceEvent::GuestTick => {
                eat(7);
                continue;
            }
        };
        eat(tag);
        eat(side as u64);
        eat(n);
    }
    h
}

/// A seeded scheduling policy: permutes each batch of runnable tasks reproducibly (set with
/// [`HostBuilder::seed`](crate::host::HostBuilder::seed) or
/// [`GuestConfig::seed`](crate::guest::GuestConfig::seed)).
#[derive(Debug)]
pub(crate) struct Policy {
    state: Cell<u64>,
}

impl Policy {
    /// A policy seeded with `seed`.
    pub(crate) fn seeded(seed: u64) -> Policy {
        Policy { state: Cell::new(seed) }
    }

    /// The next pseudo-random number (splitmix64).
    pub(crate) fn next_u64(&self) -> u64 {
        let s = self.state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Shuffles `batch` in place (Fisher–Yates).
    pub(crate) fn permute<T>(&self, batch: &mut [T]) {
        for i in (1..batch.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            batch.swap(i, j);
        }
    }
}
