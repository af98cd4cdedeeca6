//! The deterministic timer queue both executors keep, and the one timer slot every sleep uses
//! (crate-private).
//!
//! Invariants:
//! - [`Timers`] fires in `(deadline, arming order)` order, so two timers with the same deadline
//!   fire in the order they were armed, on every run.
//! - A timer fires a [`Target`]: a task's waker (what a sleep arms) or the loop's own payload
//!   (the host's callbacks, the guest's scope deadlines).
//! - A [`SleepTimer`] is one slot: its first poll fixes the deadline, each later poll that stays
//!   pending re-arms the slot in place with the waker of that poll (the `Future` contract: a
//!   sleep polled by another task wakes that task), and dropping it disarms the slot. The host's
//!   and the guest's `Sleep` are this slot plus their own cancellation check.

use alloc::collections::BTreeMap;
use core::num::NonZeroU64;
use core::task::{Poll, Waker};
use core::time::Duration;

use crate::time::Instant;

/// The key of an armed timer, to disarm it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerKey(Instant, NonZeroU64);

impl TimerKey {
    /// When the timer fires.
    pub(crate) fn deadline(self) -> Instant {
        self.0
    }
}

/// What a timer fires: a task's waker, or the loop's own payload `X`.
pub(crate) enum Target<X> {
    /// Wake a task (a sleep).
    Wake(Waker),
    /// The loop's payload (a host callback, a guest scope's deadline).
    Fire(X),
}

/// A deterministic timer queue keyed by `(deadline, arming order)`.
pub(crate) struct Timers<X> {
    armed: BTreeMap<TimerKey, Target<X>>,
    /// The last arming's number (keys count from 1, so that `Option<TimerKey>` needs no tag).
    seq: u64,
}

impl<X> Default for Timers<X> {
    fn default() -> Self {
        Timers { armed: BTreeMap::new(), seq: 0 }
    }
}

impl<X> Timers<X> {
    /// An empty queue.
    pub(crate) fn new() -> Timers<X> {
        Timers::default()
    }

    fn insert(&mut self, deadline: Instant, target: Target<X>) -> TimerKey {
        self.seq += 1;
        let key = TimerKey(deadline, NonZeroU64::new(self.seq).expect("counts from 1"));
        self.armed.insert(key, target);
        key
    }

    /// Arms a timer that fires `payload` at `deadline`.
    pub(crate) fn arm(&mut self, deadline: Instant, payload: X) -> TimerKey {
        self.insert(deadline, Target::Fire(payload))
    }

    /// The one registration path of every sleep: the slot wakes `waker` at `deadline`. A slot
    /// still armed for that deadline keeps its place in the queue and takes `waker` (the waker
    /// of the latest poll); an empty, fired or moved slot is armed afresh. Returns whether the
    /// slot's key changed (the queue's next deadline may have).
    pub(crate) fn register(&mut self, slot: &mut Option<TimerKey>, deadline: Instant, waker: &Waker) -> bool {
        if let Some(k) = *slot
            && k.deadline() == deadline
            && let Some(Target::Wake(w)) = self.armed.get_mut(&k)
        {
            if !w.will_wake(waker) {
                w.clone_from(waker);
            }
            return false;
        }
        if let Some(k) = slot.take() {
            self.disarm(k);
        }
        *slot = Some(self.insert(deadline, Target::Wake(waker.clone())));
        true
    }

    /// Disarms a timer (no effect if it already fired).
    pub(crate) fn disarm(&mut self, key: TimerKey) {
        self.armed.remove(&key);
    }

    /// Whether the timer is still armed.
    pub(crate) fn is_armed(&self, key: TimerKey) -> bool {
        self.armed.contains_key(&key)
    }

    /// The earliest deadline, if any timer is armed.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.armed.keys().next().map(|k| k.0)
    }

    /// Removes and returns the target of the earliest timer if its deadline is `<= now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Target<X>> {
        let first = self.armed.first_key_value().map(|(k, _)| *k)?;
        if first.0 <= now { self.armed.remove(&first) } else { None }
    }

    /// Number of armed timers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.armed.len()
    }

    /// Whether no timer is armed.
    pub(crate) fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }
}

/// The loop a [`SleepTimer`] arms its slot on (the host's core, the guest's run).
pub(crate) trait TimerLoop {
    /// The loop clock's current time.
    fn now(&self) -> Instant;
    /// [`Timers::register`] on the loop's queue (plus whatever the loop does when its next
    /// deadline may have moved).
    fn register(&self, slot: &mut Option<TimerKey>, deadline: Instant, waker: &Waker);
    /// [`Timers::disarm`] on the loop's queue.
    fn disarm(&self, key: TimerKey);
}

/// A sleep's deadline: relative until the first poll fixes it, and whether a poll returned
/// `Pending` yet. (One enum of 16 bytes, so that a sleep is as small as the slot it holds.)
#[derive(Debug, Clone, Copy)]
enum When {
    After(Duration),
    At(Instant),
    /// At the deadline, after a poll that returned `Pending`.
    Waited(Instant),
}

/// The timer slot behind every `Sleep` (see the module invariants).
#[derive(Debug)]
pub(crate) struct SleepTimer {
    when: When,
    key: Option<TimerKey>,
}

impl SleepTimer {
    /// Fires `d` after its first poll (on the clock of the loop that polls it).
    pub(crate) fn after(d: Duration) -> SleepTimer {
        SleepTimer { when: When::After(d), key: None }
    }

    /// Fires once the clock of the loop that polls it reads `deadline`.
    pub(crate) fn at(deadline: Instant) -> SleepTimer {
        SleepTimer { when: When::At(deadline), key: None }
    }

    /// One poll on `lp`: `Ready` once the deadline has passed, else the slot wakes `waker` then
    /// ([`Instant::NEVER`] arms nothing: only a cancellation ends such a sleep). A
    /// `checkpoint` sleep whose deadline has already passed at its first poll still yields once
    /// (trio's `sleep(0)`): it wakes itself and returns `Pending` first.
    pub(crate) fn poll(&mut self, lp: &impl TimerLoop, waker: &Waker, checkpoint: bool) -> Poll<()> {
        let now = lp.now();
        let (deadline, waited) = match self.when {
            When::After(d) => (now + d, false),
            When::At(deadline) => (deadline, false),
            When::Waited(deadline) => (deadline, true),
        };
        self.when = When::Waited(deadline);
        if now >= deadline {
            if let Some(k) = self.key.take() {
                lp.disarm(k);
            }
            if waited || !checkpoint {
                return Poll::Ready(());
            }
            waker.wake_by_ref();
            crate::cx::note_park();
            return Poll::Pending;
        }
        if deadline != Instant::NEVER {
            lp.register(&mut self.key, deadline, waker);
        }
        crate::cx::note_park();
        Poll::Pending
    }

    /// The armed key, taken (the caller disarms it on its loop, if that loop is still there).
    pub(crate) fn take_key(&mut self) -> Option<TimerKey> {
        self.key.take()
    }
}

/// Yields to the loop's other work once: `check` first, then one `Pending` (waking itself), then
/// `check` again. The host's `yield_now` and the guest's `checkpoint` are this with their own
/// cancellation check.
pub(crate) async fn yield_once<E>(check: impl Fn() -> Result<(), E>) -> Result<(), E> {
    check()?;
    let mut yielded = false;
    core::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(check())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            crate::cx::note_park();
            Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::{Cell, RefCell};

    /// A loop of one timer queue on a hand-set clock.
    struct Lp {
        now: Cell<Instant>,
        timers: RefCell<Timers<()>>,
    }

    impl TimerLoop for Lp {
        fn now(&self) -> Instant {
            self.now.get()
        }
        fn register(&self, slot: &mut Option<TimerKey>, deadline: Instant, waker: &Waker) {
            self.timers.borrow_mut().register(slot, deadline, waker);
        }
        fn disarm(&self, key: TimerKey) {
            self.timers.borrow_mut().disarm(key);
        }
    }

    fn at(n: u64) -> Instant {
        Instant::from_nanos(n)
    }

    /// Same deadline fires in arming order; a re-registration keeps its key and place.
    #[test]
    fn fires_in_deadline_then_arming_order_and_reregisters_in_place() {
        let mut t: Timers<u8> = Timers::new();
        t.arm(at(5), 1);
        let mut slot = None;
        assert!(t.register(&mut slot, at(5), Waker::noop()));
        let first = slot;
        assert!(!t.register(&mut slot, at(5), Waker::noop()));
        assert_eq!(slot, first);
        t.arm(at(5), 2);
        t.arm(at(3), 3);
        assert_eq!(t.len(), 4);
        assert_eq!(t.next_deadline(), Some(at(3)));
        assert!(t.pop_expired(at(4)).is_some_and(|x| matches!(x, Target::Fire(3))));
        assert!(t.pop_expired(at(4)).is_none());
        assert!(matches!(t.pop_expired(at(5)), Some(Target::Fire(1))));
        assert!(matches!(t.pop_expired(at(5)), Some(Target::Wake(_))));
        assert!(matches!(t.pop_expired(at(5)), Some(Target::Fire(2))));
        assert!(t.is_empty());
    }

    /// The deadline is fixed at the first poll; a checkpoint sleep that is already due yields
    /// once, a plain one does not; a pending slot is re-armed in place.
    #[test]
    fn the_slot_fixes_its_deadline_at_the_first_poll() {
        let lp = Lp { now: Cell::new(at(10)), timers: RefCell::new(Timers::new()) };
        let w = Waker::noop();
        let mut s = SleepTimer::after(Duration::from_nanos(5));
        assert_eq!(s.poll(&lp, w, false), Poll::Pending);
        let key = s.key;
        assert_eq!(key.map(TimerKey::deadline), Some(at(15)));
        lp.now.set(at(14));
        assert_eq!(s.poll(&lp, w, false), Poll::Pending);
        assert_eq!(s.key, key);
        assert_eq!(lp.timers.borrow().len(), 1);
        lp.now.set(at(15));
        assert_eq!(s.poll(&lp, w, false), Poll::Ready(()));
        assert!(lp.timers.borrow().is_empty());

        let mut due = SleepTimer::at(at(3));
        assert_eq!(due.poll(&lp, w, false), Poll::Ready(()));
        let mut due = SleepTimer::at(at(3));
        assert_eq!(due.poll(&lp, w, true), Poll::Pending);
        assert_eq!(due.poll(&lp, w, true), Poll::Ready(()));
        let mut never = SleepTimer::at(Instant::NEVER);
        assert_eq!(never.poll(&lp, w, true), Poll::Pending);
        assert!(lp.timers.borrow().is_empty());
    }

    /// A sleep is smaller than the guest's was before the two were one (a deadline, a key and a
    /// flag: 40 bytes): 16 for the deadline and its state, 16 for the key.
    #[test]
    fn a_sleep_is_small() {
        assert!(core::mem::size_of::<SleepTimer>() <= 32, "{}", core::mem::size_of::<SleepTimer>());
    }
}
