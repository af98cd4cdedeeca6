//! Helpers shared by the kernel tests: virtual-time shorthands, drop and poll counters, a
//! shared event log, and [`CallbackLoop`], a test-local host that is *not* built on
//! `async-task` and carries a guest run through the [`Hooks`] trait only.
//!
//! Each test file is its own crate and uses a different subset of these helpers.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use infect::guest::{GuestConfig, GuestRun, GuestTick, Hooks};
use infect::time::{Clock, Instant, VirtualClock};
use infect::{Error, Result};

/// `n` whole seconds after the origin.
pub fn secs(n: u64) -> Instant {
    Instant::from_nanos(n * 1_000_000_000)
}

/// `n` milliseconds after the origin.
pub fn millis(n: u64) -> Instant {
    Instant::from_nanos(n * 1_000_000)
}

/// A duration of `n` seconds.
pub fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A virtual clock with autojump, shared as the loops want it.
pub fn vclock() -> Rc<VirtualClock> {
    Rc::new(VirtualClock::new())
}

/// A user error of kind `kind` whose message is `msg`.
pub fn boom(kind: &str, msg: &str) -> Error {
    Error::msg(kind, msg)
}

/// An append-only log of what happened, shared between tasks on one thread.
#[derive(Clone, Default)]
pub struct Log<T>(Rc<RefCell<Vec<T>>>);

impl<T: Clone> Log<T> {
    pub fn new() -> Log<T> {
        Log(Rc::new(RefCell::new(Vec::new())))
    }

    pub fn push(&self, v: T) {
        self.0.borrow_mut().push(v);
    }

    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.0.borrow_mut())
    }

    pub fn snapshot(&self) -> Vec<T> {
        self.0.borrow().clone()
    }
}

/// Counts how many [`DropGuard`]s it handed out were dropped (thread-safe, so a guard may be
/// moved anywhere).
#[derive(Clone, Default)]
pub struct DropCounter(Arc<AtomicUsize>);

impl DropCounter {
    pub fn new() -> DropCounter {
        DropCounter::default()
    }

    pub fn guard(&self) -> DropGuard {
        DropGuard(self.0.clone())
    }

    pub fn dropped(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Increments its counter when dropped.
pub struct DropGuard(Arc<AtomicUsize>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Wraps a future and counts its polls.
pub struct Counted<F> {
    pub polls: Rc<Cell<usize>>,
    fut: Pin<Box<F>>,
}

impl<F: Future> Counted<F> {
    pub fn new(fut: F) -> (Counted<F>, Rc<Cell<usize>>) {
        let polls = Rc::new(Cell::new(0));
        (Counted { polls: polls.clone(), fut: Box::pin(fut) }, polls)
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.set(self.polls.get() + 1);
        self.fut.as_mut().poll(cx)
    }
}

// ---- a host that is a plain callback loop ----------------------------------------------------

type SendJob = Box<dyn FnOnce() + Send>;

/// A timed callback of the loop: deadline, arming order, callback.
type Timer = (Instant, u64, Box<dyn FnOnce()>);

/// Where a `done` callback records the outcomes it was called with (exactly one, we check).
pub type Outcomes<T> = Rc<RefCell<Vec<Result<T>>>>;

/// The part of the loop the hooks (and so any thread) may touch.
#[derive(Default)]
struct LoopShared {
    jobs: Mutex<VecDeque<SendJob>>,
    guest_timer: Mutex<Option<(Instant, GuestTick)>>,
    /// Every `run_sync_soon_*` call, to check that tick requests are deduplicated.
    soon_calls: AtomicUsize,
    /// Every `wake_at` deadline the guest asked for, in order.
    wake_at_calls: Mutex<Vec<Instant>>,
}

struct LoopHooks(Arc<LoopShared>);

impl Hooks for LoopHooks {
    fn run_sync_soon_threadsafe(&self, tick: GuestTick) {
        self.0.soon_calls.fetch_add(1, Ordering::SeqCst);
        self.0.jobs.lock().unwrap().push_back(Box::new(move || tick.run()));
    }

    fn wake_at(&self, deadline: Instant, tick: GuestTick) {
        self.0.wake_at_calls.lock().unwrap().push(deadline);
        *self.0.guest_timer.lock().unwrap() = (deadline != Instant::NEVER).then_some((deadline, tick));
    }
}

/// A GUI-style main loop: a FIFO of closures and a sorted list of timed callbacks, on a
/// virtual clock that it advances itself when it has nothing else to do (autojump). It knows
/// nothing about `async-task` or the `host` module.
pub struct CallbackLoop {
    shared: Arc<LoopShared>,
    pub clock: Rc<VirtualClock>,
    local: RefCell<VecDeque<Box<dyn FnOnce()>>>,
    timers: RefCell<Vec<Timer>>,
    seq: Cell<u64>,
    /// Jobs run so far (closures, timed callbacks and guest ticks).
    pub jobs_run: Cell<usize>,
}

impl Default for CallbackLoop {
    fn default() -> Self {
        Self::new()
    }
}

impl CallbackLoop {
    pub fn new() -> CallbackLoop {
        CallbackLoop {
            shared: Arc::new(LoopShared::default()),
            clock: vclock(),
            local: RefCell::new(VecDeque::new()),
            timers: RefCell::new(Vec::new()),
            seq: Cell::new(0),
            jobs_run: Cell::new(0),
        }
    }

    /// The loop's time.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// A guest configuration on this loop's clock.
    pub fn config(&self) -> GuestConfig {
        GuestConfig::new(self.clock.clone())
    }

    /// The hooks a guest run needs to ride this loop.
    pub fn hooks(&self) -> impl Hooks + use<> {
        LoopHooks(self.shared.clone())
    }

    /// Starts `main` as a guest run on this loop; the outcome lands in the returned cell.
    pub fn start<T: 'static>(&self, main: impl Future<Output = Result<T>> + 'static) -> (GuestRun, Outcomes<T>) {
        let out = Rc::new(RefCell::new(Vec::new()));
        let o = out.clone();
        let run =
            infect::guest::start_guest_run_with(self.config(), main, self.hooks(), move |r| o.borrow_mut().push(r))
                .expect("start_guest_run");
        (run, out)
    }

    /// Queues a closure from the loop's own thread.
    pub fn call_soon(&self, f: impl FnOnce() + 'static) {
        self.local.borrow_mut().push_back(Box::new(f));
    }

    /// Runs `f` once the clock reads `at`.
    pub fn call_at(&self, at: Instant, f: impl FnOnce() + 'static) {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        let mut timers = self.timers.borrow_mut();
        timers.push((at, seq, Box::new(f)));
        timers.sort_by_key(|t| (t.0, t.1));
    }

    /// How many times the guest asked to be ticked soon.
    pub fn soon_calls(&self) -> usize {
        self.shared.soon_calls.load(Ordering::SeqCst)
    }

    /// The deadlines the guest reported through `wake_at`, in order.
    pub fn wake_at_calls(&self) -> Vec<Instant> {
        self.shared.wake_at_calls.lock().unwrap().clone()
    }

    /// Closures queued and not yet run.
    pub fn pending_jobs(&self) -> usize {
        self.shared.jobs.lock().unwrap().len() + self.local.borrow().len()
    }

    /// Runs one job if one is ready: a queued closure first, then a due timer (the guest's or a
    /// user one, earliest first). `false` if nothing was ready.
    pub fn run_one(&self) -> bool {
        let job = self.shared.jobs.lock().unwrap().pop_front();
        if let Some(job) = job {
            self.jobs_run.set(self.jobs_run.get() + 1);
            job();
            return true;
        }
        let local = self.local.borrow_mut().pop_front();
        if let Some(job) = local {
            self.jobs_run.set(self.jobs_run.get() + 1);
            job();
            return true;
        }
        let now = self.clock.now();
        let guest_due = self.shared.guest_timer.lock().unwrap().as_ref().map(|t| t.0);
        let user_due = self.timers.borrow().first().map(|t| t.0);
        match (guest_due, user_due) {
            (Some(g), u) if g <= now && u.is_none_or(|u| g <= u) => {
                let tick = self.shared.guest_timer.lock().unwrap().take();
                if let Some((_, tick)) = tick {
                    self.jobs_run.set(self.jobs_run.get() + 1);
                    tick.run();
                }
                true
            }
            (_, Some(u)) if u <= now => {
                let (_, _, f) = self.timers.borrow_mut().remove(0);
                self.jobs_run.set(self.jobs_run.get() + 1);
                f();
                true
            }
            _ => false,
        }
    }

    /// The earliest timer, the guest's or a user one.
    pub fn next_deadline(&self) -> Option<Instant> {
        let g = self.shared.guest_timer.lock().unwrap().as_ref().map(|t| t.0);
        let u = self.timers.borrow().first().map(|t| t.0);
        match (g, u) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs jobs until `until()` holds, jumping the clock to the next timer whenever nothing
    /// is ready. Panics if nothing is ready and no timer is set (a deadlock).
    pub fn run_until(&self, until: impl Fn() -> bool) {
        while !until() {
            if self.run_one() {
                continue;
            }
            match self.next_deadline() {
                Some(d) => assert!(self.clock.autojump(d)),
                None => panic!("callback loop deadlocked: nothing to run and no timer set"),
            }
        }
    }

    /// Runs a guest to completion on this loop and returns its outcome (exactly one).
    pub fn run_guest<T: 'static>(&self, main: impl Future<Output = Result<T>> + 'static) -> Result<T> {
        let (run, out) = self.start(main);
        self.run_until(|| !out.borrow().is_empty());
        assert!(run.is_finished());
        // Nothing may call `done` again, whatever still runs.
        while self.run_one() {}
        let mut out = out.borrow_mut();
        assert_eq!(out.len(), 1, "done must be called exactly once");
        out.pop().unwrap()
    }
}

/// A waker that only counts its wakes: to poll a future by hand with a waker that is not the
/// task's own (a future must wake the waker of its *latest* poll).
#[derive(Clone, Default)]
pub struct WakeCount(Arc<AtomicUsize>);

impl WakeCount {
    pub fn new() -> WakeCount {
        WakeCount::default()
    }

    pub fn waker(&self) -> std::task::Waker {
        std::task::Waker::from(Arc::new(self.clone()))
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl std::task::Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
