//! The guest scheduler: task slots, wakers, the tick, and the run handle.
//!
//! Two halves, split by thread-safety:
//! - [`Shared`] is `Send + Sync`: the queues of woken task keys (one for wakes from other
//!   threads, one without atomics for wakes on the run's own thread; a tick takes the first,
//!   then the second, each in wake order), the `tick_pending` flag that deduplicates tick
//!   requests, and the host's [`Hooks`]. Wakers hold only this half, so a guest task may be
//!   woken from any thread.
//! - [`Local`] is owned by the thread that started the run: the task futures, the scopes'
//!   timers, the current task. Only a [`GuestTick`] run on that thread reaches it.
//!
//! Task slot life cycle, each transition with the function that performs it:
//!
//! ```text
//!   (1) spawn          (2) wake             (3) tick polls it
//!  ────────▶ Blocked ──────────▶ Queued ─────────────────▶ Running
//!               ▲                                            │
//!               └──────────── (4) poll returned Pending ─────┤
//!                                                            │ (5) poll returned Ready
//!                                                            ▼
//!                                                          Exited (slot freed)
//! ```
//! 1. [`Local::spawn`]: the slot is filled and the task is queued for its first poll.
//! 2. [`TaskWaker::wake_by_ref`]: `queued` goes false → true and the key is pushed (onto the
//!    owner's queue when woken on the run's thread); a second
//!    wake before the poll is a no-op, so a task is polled at most once per batch.
//! 3. [`Local::tick`] takes the batch that was queued when the tick began, clears `queued` and
//!    polls with the task's root scope current.
//! 4. The future is put back; a cancellation-aware await noted the scope it blocked in.
//! 5. The future is dropped and the slot's generation bumped, so stale keys are skipped.
//!
//! Tick invariants: the guest never re-enters itself (a hook only schedules a tick; a tick
//! that finds another running reschedules itself); one tick polls one batch and then returns
//! to the host; after the main task exits, `done` is called exactly once and every other slot
//! is empty (nurseries guarantee it).

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use core::task::{Context, Poll, Waker};

use concurrent_queue::ConcurrentQueue;

use super::scope::ScopeInner;
use crate::Error;
use crate::cx::kernel_slot;
use crate::time::{Clock, Instant};
use crate::timers::{Target, TimerKey, TimerLoop, Timers};
use crate::trace::{Policy, Side, Trace, TraceEvent};

/// What a host must provide to carry a guest run (trio's `start_guest_run` hooks).
///
/// The contract (embassy's pender, trio's guest mode): a hook only *schedules*; the host calls
/// [`GuestTick::run`] later, on the thread that started the guest run, never from inside the
/// hook. Hooks are called from the host thread, except `run_sync_soon_threadsafe`, which a
/// waker on another thread may call. The host keeps the [`GuestRun`] until `done` was called,
/// and runs every tick it was handed (a tick of a finished run does nothing). That is all a
/// host needs: here is a complete one, a queue of ticks and one timer slot on a virtual clock.
///
/// ```
/// use infect::guest::{self, GuestConfig, GuestTick, Hooks};
/// use infect::time::{Clock, Instant, VirtualClock};
/// use std::{cell::RefCell, rc::Rc, sync::{Arc, Mutex}, time::Duration};
///
/// #[derive(Default)]
/// struct Posted {
///     soon: Vec<GuestTick>,
///     timer: Option<(Instant, GuestTick)>,
/// }
/// struct MyHooks(Arc<Mutex<Posted>>);
/// impl Hooks for MyHooks {
///     fn run_sync_soon_threadsafe(&self, tick: GuestTick) {
///         self.0.lock().unwrap().soon.push(tick);
///     }
///     fn wake_at(&self, deadline: Instant, tick: GuestTick) {
///         // A later request replaces the earlier one; NEVER clears it.
///         self.0.lock().unwrap().timer = (deadline != Instant::NEVER).then_some((deadline, tick));
///     }
/// }
///
/// let clock = Rc::new(VirtualClock::new());
/// let posted = Arc::new(Mutex::new(Posted::default()));
/// let out = Rc::new(RefCell::new(None));
/// let o = out.clone();
/// let run = guest::start_guest_run_with(
///     GuestConfig::new(clock.clone()),
///     async {
///         guest::sleep(Duration::from_secs(4)).await?;
///         Ok(guest::current_time().as_nanos())
///     },
///     MyHooks(posted.clone()),
///     move |r| *o.borrow_mut() = Some(r),
/// )?;
/// // The host's loop: run what is posted, else jump to the guest's timer.
/// while !run.is_finished() {
///     let (soon, timer) = {
///         let mut p = posted.lock().unwrap(); // not held while a tick runs: ticks call hooks
///         let soon = std::mem::take(&mut p.soon);
///         let timer = if soon.is_empty() { p.timer.take() } else { None };
///         (soon, timer)
///     };
///     soon.into_iter().for_each(GuestTick::run);
///     if let Some((at, tick)) = timer {
///         clock.advance(at - clock.now());
///         tick.run();
///     }
/// }
/// assert_eq!(out.borrow_mut().take(), Some(Ok(4_000_000_000)));
/// # Ok::<(), infect::Error>(())
/// ```
pub trait Hooks: Send + Sync + 'static {
    /// Schedules `tick` to run soon on the host thread. May be called from any thread.
    fn run_sync_soon_threadsafe(&self, tick: GuestTick);

    /// Schedules `tick` to run soon; only ever called on the host thread. Defaults to
    /// [`run_sync_soon_threadsafe`](Hooks::run_sync_soon_threadsafe).
    fn run_sync_soon_not_threadsafe(&self, tick: GuestTick) {
        self.run_sync_soon_threadsafe(tick);
    }

    /// Asks the host to run `tick` once its clock reaches `deadline`; replaces any earlier
    /// request. [`Instant::NEVER`] cancels the request (the guest has no pending deadline).
    fn wake_at(&self, deadline: Instant, tick: GuestTick);
}

kernel_slot! {
    /// The guest run the thread is ticking (null outside a tick).
    static CURRENT: *const Local = core::ptr::null();
}

/// Runs `f` with the guest run being ticked on this thread, if any.
#[inline]
pub(crate) fn with_local<R>(f: impl FnOnce(&Rc<Local>) -> R) -> Option<R> {
    let ptr = CURRENT.get();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: CURRENT is only non-null while `Local::tick` (or `GuestRun::abandon`) runs on this
    // thread, and both hold a strong `Rc<Local>` obtained from `Rc::into_raw`-compatible
    // pointers for the whole time the slot is set. We rebuild an `Rc` without taking ownership
    // (ManuallyDrop), so the count is unchanged.
    let rc = core::mem::ManuallyDrop::new(unsafe { Rc::from_raw(ptr) });
    Some(f(&rc))
}

/// A guest task to deliver an error to, once (crate-internal; the rule is in the
/// [guest module docs](super#errors-delivered-to-a-task)). The root actor's interrupt is its user.
#[derive(Clone)]
#[cfg_attr(not(feature = "std"), allow(dead_code))]
pub(crate) struct TaskRef {
    key: TaskKey,
    local: alloc::rc::Weak<Local>,
}

#[cfg_attr(not(feature = "std"), allow(dead_code))]
impl TaskRef {
    /// The task being polled; `None` outside a guest task.
    pub(crate) fn current() -> Option<TaskRef> {
        with_local(|l| l.current_task().map(|key| TaskRef { key, local: Rc::downgrade(l) })).flatten()
    }

    /// Delivers `error` to the task, to be returned by its next cancellation check (the first
    /// check of every infect await, also in a shield), or taken by a nursery it waits in (as an
    /// error of the nursery's block). Wakes the task. If the task's next poll neither takes it
    /// nor parks at any of infect's awaits (it is blocked in foreign futures only), the
    /// delivery is dropped and `fallback` is cancelled instead.
    ///
    /// One at a time: `false` (nothing changes) if an earlier delivery is still waiting, or the
    /// task (or its run) has ended.
    pub(crate) fn deliver(&self, error: Error, fallback: Option<&super::CancelScope>) -> bool {
        self.local.upgrade().is_some_and(|l| l.deliver(self.key, error, fallback.map(|s| s.inner.clone())))
    }
}

/// The carrier of the guest run being ticked on this thread (see [`GuestRun::set_carrier`]);
/// `None` outside a guest task or for a run nobody marked.
pub(crate) fn current_carrier() -> Option<Rc<dyn core::any::Any>> {
    with_local(|l| l.carrier.borrow().clone()).flatten()
}

/// Takes the error delivered to the task being polled, if one waits ([`TaskRef::deliver`]).
#[cfg(feature = "std")]
pub(crate) fn take_delivered() -> Option<Error> {
    with_local(|l| l.take_raise()).flatten()
}

/// Identifies a task slot and its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskKey {
    index: u32,
    generation: u32,
}

/// A plain `Vec` (no atomics, no block allocation per 31 pushes as in the concurrent queue) in a
/// `Sync` value, touched only on the thread that made it (a run's owner thread): what that
/// thread queues for itself (woken task keys, the standalone driver's ticks).
pub(super) struct OwnerVec<T> {
    v: core::cell::UnsafeCell<Vec<T>>,
    /// The owner thread's [`thread_mark`].
    #[cfg(feature = "std")]
    mark: usize,
}

// SAFETY: the `Vec` is only reached through `OwnerVec::with`, which hands it out only on the
// thread that made it (std: checked by `is_owner`; without std the kernel is single-threaded by
// contract, see `cx`), and no reference into it outlives the short, non-reentrant call that took
// it (a push, an append, a swap, a clear, an emptiness check: `with`'s contract). The values
// are moved to that thread only: `T: Send`.
unsafe impl<T: Send> Sync for OwnerVec<T> {}

impl<T> OwnerVec<T> {
    /// An empty `Vec` owned by the calling thread.
    pub(super) fn new() -> OwnerVec<T> {
        OwnerVec {
            v: core::cell::UnsafeCell::new(Vec::new()),
            #[cfg(feature = "std")]
            mark: thread_mark(),
        }
    }

    /// Whether the caller runs on the owner thread.
    #[inline]
    pub(super) fn is_owner(&self) -> bool {
        #[cfg(feature = "std")]
        {
            thread_mark() == self.mark
        }
        #[cfg(not(feature = "std"))]
        {
            true
        }
    }

    /// Runs `f` on the `Vec` on the owner thread; `None` (and `f` not run) on another. `f` must
    /// be a short operation on the `Vec` that runs no other code (no drop of a `T` either: take
    /// values out and drop them after `with` returns), so that it cannot re-enter.
    #[inline]
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut Vec<T>) -> R) -> Option<R> {
        if !self.is_owner() {
            return None;
        }
        // SAFETY: on the owner thread (checked above), the only thread that reaches the `Vec`;
        // `f` does not re-enter (the contract above), so no other reference to it exists.
        Some(f(unsafe { &mut *self.v.get() }))
    }
}

#[cfg(feature = "std")]
std::thread_local! {
    /// A byte whose address tells this thread from every other live thread: cheaper than
    /// `thread::current().id()` and usable even while the thread's other locals are torn down
    /// (const-initialised, no destructor).
    static THREAD_MARK: u8 = const { 0 };
}

/// This thread's id, cached: `thread::current()` takes (and drops) a reference count each time.
/// Ids are never reused, so unlike [`thread_mark`] it tells this thread from every thread ever.
#[cfg(feature = "std")]
fn current_thread_id() -> std::thread::ThreadId {
    std::thread_local! {
        static ID: Cell<Option<std::thread::ThreadId>> = const { Cell::new(None) };
    }
    ID.with(|c| match c.get() {
        Some(id) => id,
        None => {
            let id = std::thread::current().id();
            c.set(Some(id));
            id
        }
    })
}

/// This thread's [`THREAD_MARK`] address.
#[cfg(feature = "std")]
fn thread_mark() -> usize {
    THREAD_MARK.with(|m| core::ptr::from_ref(m) as usize)
}

/// The `Send + Sync` half of a guest run.
pub(crate) struct Shared {
    /// Task keys woken from other threads, in wake order.
    queue: ConcurrentQueue<TaskKey>,
    /// Task keys woken on the owner thread, in wake order. A tick takes the other threads' keys
    /// first, then these (as the host takes its injector before its local queue): with wakes
    /// from one thread only, the order is the wake order.
    owner_woken: OwnerVec<TaskKey>,
    /// A tick has been requested and has not finished yet: wakes need not request another.
    tick_pending: AtomicBool,
    hooks: Box<dyn Hooks>,
    /// The run's `Local`, or null once the run finished or was abandoned. Only dereferenced by
    /// `GuestTick::run` on the owner thread.
    local: AtomicPtr<Local>,
    #[cfg(feature = "std")]
    owner: std::thread::ThreadId,
    trace: Option<Trace>,
}

impl Shared {
    /// Runs `f` on the owner-thread queue; `None` (and `f` not run) on another thread.
    #[inline]
    fn owner_queue<R>(&self, f: impl FnOnce(&mut Vec<TaskKey>) -> R) -> Option<R> {
        self.owner_woken.with(f)
    }

    /// Queues a woken task's key and requests a tick: on the owner thread without the queue's
    /// atomics and without the fence (the tick that could miss the key runs on this same
    /// thread, in program order with this wake), else on the queue with the fence.
    fn push_woken(self: &Arc<Self>, key: TaskKey) {
        if self.owner_queue(|q| q.push(key)).is_some() {
            self.request_tick_unfenced();
        } else {
            // The queue is unbounded and never closed: a push cannot fail.
            let _ = self.queue.push(key);
            self.request_tick();
        }
    }

    /// Whether any woken key waits (either queue; the owner's counts only on its thread, which
    /// is where a tick asks).
    fn any_woken(&self) -> bool {
        !self.queue.is_empty() || self.owner_queue(|q| !q.is_empty()).unwrap_or(false)
    }

    fn request_tick(self: &Arc<Self>) {
        // Dekker pairing with the end of `Local::tick` (see there).
        core::sync::atomic::fence(Ordering::SeqCst);
        self.request_tick_unfenced();
    }

    /// [`request_tick`](Self::request_tick) for the owner thread, whose work is in program
    /// order with the end of every tick (no other thread's fence to pair with).
    fn request_tick_unfenced(self: &Arc<Self>) {
        if !self.tick_pending.swap(true, Ordering::SeqCst) {
            self.hooks.run_sync_soon_threadsafe(GuestTick(self.clone()));
        }
    }
}

/// A scheduled guest tick, handed to the host through [`Hooks`]. The host runs it (once,
/// [`GuestTick::run`]) on the thread that started the guest run, later, never from inside the
/// hook; it is `Send`, so a hook called from another thread may post it back to the host
/// thread. Example: the host in the [`Hooks`] docs.
pub struct GuestTick(Arc<Shared>);

impl core::fmt::Debug for GuestTick {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GuestTick").finish_non_exhaustive()
    }
}

impl GuestTick {
    /// Runs one guest tick: fires expired deadlines, polls one batch of woken tasks, then
    /// reports what it needs next through the hooks. A tick for a finished run does nothing.
    ///
    /// # Panics
    /// If called on a thread other than the one that started the guest run (a host bug: the
    /// guest's tasks are not `Send`).
    #[cfg(feature = "std")]
    pub fn run(self) {
        assert!(
            current_thread_id() == self.0.owner,
            "GuestTick::run called on a thread other than the one that started the guest run"
        );
        // SAFETY: we just checked that this is the owner thread.
        unsafe { self.run_unchecked() }
    }

    /// The tick as a waker that runs it when woken, without allocating (a host that schedules
    /// wakers carries the tick as one). Wake it only on the thread that started the run: on
    /// another it panics (std), as [`run`](GuestTick::run) does.
    pub(crate) fn into_waker(self) -> Waker {
        Waker::from(self.0)
    }

    /// Runs the tick without checking the thread.
    ///
    /// # Safety
    /// The caller must be on the thread that called `start_guest_run` (the guest's tasks are not
    /// `Send`).
    pub unsafe fn run_unchecked(self) {
        let ptr = self.0.local.load(Ordering::Acquire);
        if ptr.is_null() {
            return;
        }
        // SAFETY: a non-null `local` was produced by `Rc::as_ptr` of the `Rc<Local>` owned by
        // the `GuestRun` handle, which nulls it (on this thread) before releasing that Rc; we are
        // on the owner thread (caller's contract), so no release can race with us, and we take
        // our own strong count for the duration of the tick.
        let local = unsafe {
            Rc::increment_strong_count(ptr);
            Rc::from_raw(ptr)
        };
        local.tick();
    }
}

/// A guest run as a waker: waking it runs one tick ([`GuestTick::into_waker`]).
impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        let tick = GuestTick(self);
        #[cfg(feature = "std")]
        tick.run();
        // SAFETY: without `std` the kernel is single-threaded by contract (see `cx`): this is the
        // thread that started the run.
        #[cfg(not(feature = "std"))]
        unsafe {
            tick.run_unchecked()
        }
    }
}

/// Per-task waker: pushes the task key onto the shared queue once per batch.
pub(crate) struct TaskWaker {
    key: TaskKey,
    number: u64,
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            if let Some(t) = &self.shared.trace {
                t.record(TraceEvent::Wake(Side::Guest, self.number));
            }
            self.shared.push_woken(self.key);
        }
    }
}

type TaskFuture = Pin<Box<dyn Future<Output = ()>>>;

struct TaskSlot {
    /// `None` while the task is being polled (taken out so the poll can spawn).
    fut: Option<TaskFuture>,
    waker: Arc<TaskWaker>,
    /// The scope the task starts in (its nursery's scope, or the run's root scope).
    root_scope: Rc<ScopeInner>,
    /// The scopes the task is blocked in: the innermost scope current at each
    /// cancellation-aware await that returned `Pending`, kept until that scope exits. A task
    /// can wait in several scopes at once (branches of a `join` inside one task), so cancelling
    /// any of them must wake it. The first lives inline; [`Rare::blocked_more`] holds the
    /// others.
    blocked_in: Option<Rc<ScopeInner>>,
    /// Where the task last parked: the caller of the infect await it waits in (see
    /// [`crate::cx::at`]), for the debug dump.
    waits_at: Option<&'static core::panic::Location<'static>>,
    /// What few tasks ever need, out of line so that a slot stays small (56 bytes: the slot
    /// table is the largest part of a task's heap): `None` until first needed.
    rare: Option<Box<Rare>>,
}

impl TaskSlot {
    /// Whether a delivered error waits for this task.
    fn raise_waiting(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| r.raise.is_some())
    }

    /// Takes the delivered error waiting for this task, if any.
    fn take_raise(&mut self) -> Option<Raise> {
        self.rare.as_mut().and_then(|r| r.raise.take())
    }

    /// The scopes the task blocks in beyond `blocked_in` (empty, without allocating, for most).
    fn blocked_more(&self) -> &[Rc<ScopeInner>] {
        self.rare.as_ref().map_or(&[], |r| &r.blocked_more)
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }
}

/// The rarely used part of a [`TaskSlot`].
#[derive(Default)]
struct Rare {
    /// The scopes the task blocks in beyond the slot's `blocked_in` (a `join` inside one task).
    blocked_more: Vec<Rc<ScopeInner>>,
    /// An error delivered to the task ([`Local::deliver`]) that no await has taken yet.
    raise: Option<Raise>,
}

/// An error delivered to a task, waiting for the task's next cancellation check.
struct Raise {
    error: Error,
    /// Cancelled instead if the task turns out to be blocked in foreign futures only.
    fallback: Option<Rc<ScopeInner>>,
}

/// Sets a flag back to `false` when dropped (also while unwinding).
struct ClearOnDrop<'a>(&'a Cell<bool>);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// Restores the polled task's context (no current task, the previous scope) when its poll ends,
/// also when the poll panics.
struct Polling<'a> {
    local: &'a Local,
    prev_scope: Option<Option<Rc<ScopeInner>>>,
}

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        if let Some(prev) = self.prev_scope.take() {
            self.local.swap_scope(prev);
        }
        self.local.current.set(None);
    }
}

/// What a guest timer fires besides a sleep's waker: a scope's deadline.
pub(crate) type ScopeDeadline = alloc::rc::Weak<ScopeInner>;

/// Hands the outcome to the user's `done` (`true`: the run was abandoned).
type Finish = Box<dyn FnOnce(bool)>;

/// The owner-thread half of a guest run.
pub(crate) struct Local {
    shared: Arc<Shared>,
    pub(crate) clock: Rc<dyn Clock>,
    slots: RefCell<Vec<Option<TaskSlot>>>,
    generations: RefCell<Vec<u32>>,
    free: RefCell<Vec<u32>>,
    live: Cell<usize>,
    timers: RefCell<Timers<ScopeDeadline>>,
    /// The task being polled, and its current innermost scope.
    current: Cell<Option<TaskKey>>,
    current_scope: RefCell<Option<Rc<ScopeInner>>>,
    spawned: Cell<u64>,
    main: Cell<Option<TaskKey>>,
    running: Cell<bool>,
    finished: Cell<bool>,
    reported_deadline: Cell<Instant>,
    finish: RefCell<Option<Finish>>,
    pub(crate) root_scope: Rc<ScopeInner>,
    trace: Option<Trace>,
    policy: Option<Policy>,
    batch: RefCell<Vec<TaskKey>>,
    /// Set by the host that carries this run (for `to_host`): opaque to the guest.
    carrier: RefCell<Option<Rc<dyn core::any::Any>>>,
    /// How many slots may hold a delivered error (`raise`): raised by [`deliver`](Local::deliver),
    /// lowered when one is taken. Never too low (a slot freed with its delivery still waiting
    /// leaves it one too high, which only costs the slow path), so at zero no slot holds one and
    /// [`take_raise`](Local::take_raise), called at every cancellation check, looks at none.
    raises: Cell<usize>,
    /// The last [`note_blocked`](Local::note_blocked): that task, in that scope. The scope is
    /// then held in the task's lists (a strong reference, so its address is not reused), and
    /// only `note_blocked` removes one from them, updating this as it does; a freed slot's next
    /// task has another key. So a note that matches it has nothing to do.
    noted: Cell<Option<(TaskKey, *const ScopeInner)>>,
    /// Bumped each time a scope's foreign-future watcher notes where its task blocks, so that
    /// enclosing watchers in the same poll keep the innermost note.
    pub(crate) foreign_notes: Cell<u64>,
    /// Every scope entered in this run (weakly, pruned as they exit), for the debug dump; and
    /// the last scope id given out (the run's root scope is 0).
    scopes: RefCell<Vec<alloc::rc::Weak<ScopeInner>>>,
    scope_ids: Cell<u64>,
    /// The waker of the task being polled when every task was dropped inside that poll (the run
    /// abandoned from a task): kept until the poll has ended, since the poll borrows it.
    kept_waker: RefCell<Option<Arc<TaskWaker>>>,
}

/// The handle to a guest run. Keep it until `done` has been called: dropping it earlier
/// abandons the run (every task is dropped and `done` gets [`Error::GuestRunAbandoned`]).
/// Example of a run to its end: the host in the [`Hooks`] docs.
///
/// ```
/// use infect::{Error, guest::{self, GuestConfig, GuestTick, Hooks}, time::{Instant, VirtualClock}};
/// use std::{cell::RefCell, rc::Rc};
///
/// struct Ignore; // a host that never runs a tick
/// impl Hooks for Ignore {
///     fn run_sync_soon_threadsafe(&self, _: GuestTick) {}
///     fn wake_at(&self, _: Instant, _: GuestTick) {}
/// }
/// let out = Rc::new(RefCell::new(None));
/// let o = out.clone();
/// let config = GuestConfig::new(Rc::new(VirtualClock::new()));
/// let run = guest::start_guest_run_with(config, guest::sleep_forever(), Ignore, move |r| *o.borrow_mut() = Some(r))?;
/// assert!(!run.is_finished());
/// drop(run); // abandoned
/// assert_eq!(out.borrow_mut().take(), Some(Err(Error::GuestRunAbandoned)));
/// # Ok::<(), infect::Error>(())
/// ```
pub struct GuestRun {
    local: Rc<Local>,
}

impl core::fmt::Debug for GuestRun {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GuestRun").field("finished", &self.is_finished()).finish()
    }
}

impl GuestRun {
    /// Whether `done` has been called.
    pub fn is_finished(&self) -> bool {
        self.local.finished.get()
    }

    /// Marks the run as carried by `carrier`, which the guest keeps for whoever carries it
    /// (the `embed` module's typed handle to its host, which `to_host` reads) and never opens.
    pub(crate) fn set_carrier(&self, carrier: Rc<dyn core::any::Any>) {
        *self.local.carrier.borrow_mut() = Some(carrier);
    }
}

impl Drop for GuestRun {
    fn drop(&mut self) {
        if !self.local.finished.get() {
            self.local.abandon();
        }
    }
}

pub(crate) struct Setup {
    pub(crate) clock: Rc<dyn Clock>,
    pub(crate) trace: Option<Trace>,
    pub(crate) policy: Option<Policy>,
}

/// Creates the run, queues `main` as its first task and requests the first tick.
pub(crate) fn start<T: 'static>(
    setup: Setup,
    main: impl Future<Output = crate::Result<T>> + 'static,
    hooks: Box<dyn Hooks>,
    done: impl FnOnce(crate::Result<T>) + 'static,
) -> GuestRun {
    let shared = Arc::new(Shared {
        queue: ConcurrentQueue::unbounded(),
        owner_woken: OwnerVec::new(),
        tick_pending: AtomicBool::new(false),
        hooks,
        local: AtomicPtr::new(core::ptr::null_mut()),
        #[cfg(feature = "std")]
        owner: std::thread::current().id(),
        trace: setup.trace.clone(),
    });
    let out: Rc<RefCell<Option<crate::Result<T>>>> = Rc::new(RefCell::new(None));
    let out2 = out.clone();
    let finish = move |abandoned: bool| {
        let r = if abandoned {
            Err(Error::GuestRunAbandoned)
        } else {
            out2.borrow_mut().take().unwrap_or(Err(Error::GuestRunAbandoned))
        };
        done(r);
    };
    let local = Rc::new(Local {
        shared: shared.clone(),
        clock: setup.clock,
        slots: RefCell::new(Vec::new()),
        generations: RefCell::new(Vec::new()),
        free: RefCell::new(Vec::new()),
        live: Cell::new(0),
        timers: RefCell::new(Timers::new()),
        current: Cell::new(None),
        current_scope: RefCell::new(None),
        spawned: Cell::new(0),
        main: Cell::new(None),
        running: Cell::new(false),
        finished: Cell::new(false),
        reported_deadline: Cell::new(Instant::NEVER),
        finish: RefCell::new(Some(Box::new(finish))),
        root_scope: ScopeInner::root(),
        trace: setup.trace,
        policy: setup.policy,
        batch: RefCell::new(Vec::new()),
        carrier: RefCell::new(None),
        raises: Cell::new(0),
        noted: Cell::new(None),
        foreign_notes: Cell::new(0),
        scopes: RefCell::new(Vec::new()),
        scope_ids: Cell::new(0),
        kept_waker: RefCell::new(None),
    });
    shared.local.store(Rc::as_ptr(&local).cast_mut(), Ordering::Release);
    let root = local.root_scope.clone();
    let key = local.spawn(
        async move {
            let r = main.await;
            *out.borrow_mut() = Some(r);
        },
        root,
    );
    local.main.set(Some(key));
    GuestRun { local }
}

impl Local {
    /// Fills a slot with `fut` and queues it for its first poll.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + 'static, root_scope: Rc<ScopeInner>) -> TaskKey {
        let number = self.spawned.get();
        self.spawned.set(number + 1);
        let index = match self.free.borrow_mut().pop() {
            Some(i) => i,
            None => {
                let mut slots = self.slots.borrow_mut();
                slots.push(None);
                self.generations.borrow_mut().push(0);
                u32::try_from(slots.len() - 1).expect("more than 4 billion live guest tasks")
            }
        };
        let generation = self.generations.borrow()[index as usize];
        let key = TaskKey { index, generation };
        let waker = Arc::new(TaskWaker { key, number, queued: AtomicBool::new(false), shared: self.shared.clone() });
        self.slots.borrow_mut()[index as usize] = Some(TaskSlot {
            fut: Some(Box::pin(fut)),
            waker: waker.clone(),
            root_scope,
            blocked_in: None,
            waits_at: None,
            rare: None,
        });
        self.live.set(self.live.get() + 1);
        crate::log::debug!("guest.spawn", task = number);
        if let Some(t) = &self.trace {
            t.record(TraceEvent::Spawn(Side::Guest, number));
        }
        waker.wake_by_ref();
        key
    }

    /// The task being polled, if any.
    pub(crate) fn current_task(&self) -> Option<TaskKey> {
        self.current.get()
    }

    /// Registers a scope entered by the task being polled: its id (from 1, in entry order) and
    /// its owner's task number. Prunes the exited ones first once the list has doubled, so it
    /// stays proportional to the scopes alive.
    pub(crate) fn register_scope(&self, scope: &Rc<ScopeInner>) -> (u64, u64) {
        let id = self.scope_ids.get() + 1;
        self.scope_ids.set(id);
        let mut scopes = self.scopes.borrow_mut();
        if scopes.len() >= 16 && scopes.len() == scopes.capacity() {
            scopes.retain(|s| s.upgrade().is_some_and(|s| !s.is_exited()));
        }
        scopes.push(Rc::downgrade(scope));
        let owner = self.current.get().and_then(|k| self.number_of(k)).unwrap_or(0);
        (id, owner)
    }

    /// The spawn number of a live task (the task being polled included: its slot stays).
    fn number_of(&self, key: TaskKey) -> Option<u64> {
        let slots = self.slots.borrow();
        slots.get(key.index as usize)?.as_ref().map(|s| s.waker.number)
    }

    /// The run's state for the debug dump: its tasks in spawn order, its live scopes in entry
    /// order.
    pub(crate) fn snapshot(&self) -> super::GuestState {
        let current = self.current.get().and_then(|k| self.number_of(k));
        let main = self.main.get().and_then(|k| self.number_of(k));
        let mut tasks: Vec<super::TaskState> = self
            .slots
            .borrow()
            .iter()
            .flatten()
            .map(|s| super::TaskState {
                number: s.waker.number,
                main: Some(s.waker.number) == main,
                running: Some(s.waker.number) == current,
                scope: s.root_scope.id(),
                waits_at: s.waits_at,
                error_waiting: s.raise_waiting(),
            })
            .collect();
        tasks.sort_by_key(|t| t.number);
        let scopes = self
            .scopes
            .borrow()
            .iter()
            .filter_map(alloc::rc::Weak::upgrade)
            .filter(|s| !s.is_exited())
            .map(|s| s.state())
            .collect();
        super::GuestState { now: self.clock.now(), tasks, scopes }
    }

    /// Delivers `error` to the task `key`, once (see [`TaskRef::deliver`]): `false` (and nothing
    /// changes) if the task has exited or an earlier delivery has not been taken yet.
    pub(crate) fn deliver(&self, key: TaskKey, error: Error, fallback: Option<Rc<ScopeInner>>) -> bool {
        let waker = {
            if self.generations.borrow().get(key.index as usize) != Some(&key.generation) {
                return false;
            }
            let mut slots = self.slots.borrow_mut();
            let Some(Some(slot)) = slots.get_mut(key.index as usize) else { return false };
            if slot.raise_waiting() {
                return false;
            }
            slot.rare_mut().raise = Some(Raise { error, fallback });
            self.raises.set(self.raises.get() + 1);
            slot.waker.clone()
        };
        waker.wake_by_ref();
        true
    }

    /// Whether no task of the run has a delivered error waiting (then [`take_raise`] takes
    /// nothing).
    ///
    /// [`take_raise`]: Local::take_raise
    #[inline]
    pub(crate) fn no_raise_waiting(&self) -> bool {
        self.raises.get() == 0
    }

    /// Takes the error delivered to the task being polled, if one waits.
    #[inline]
    pub(crate) fn take_raise(&self) -> Option<Error> {
        if self.raises.get() == 0 {
            return None;
        }
        let key = self.current.get()?;
        let mut slots = self.slots.borrow_mut();
        let slot = slots.get_mut(key.index as usize)?.as_mut()?;
        let raise = slot.take_raise()?;
        self.raises.set(self.raises.get() - 1);
        Some(raise.error)
    }

    /// The scope that is current for the task being polled.
    #[inline]
    pub(crate) fn current_scope(&self) -> Option<Rc<ScopeInner>> {
        self.current_scope.borrow().clone()
    }

    /// Makes `scope` current for the task being polled; returns the previous one.
    #[inline]
    pub(crate) fn swap_scope(&self, scope: Option<Rc<ScopeInner>>) -> Option<Rc<ScopeInner>> {
        core::mem::replace(&mut *self.current_scope.borrow_mut(), scope)
    }

    /// Records that the task being polled blocks in its current scope, so that cancelling that
    /// scope wakes it (see [`TaskSlot::blocked_in`]).
    #[inline]
    pub(crate) fn note_blocked(&self) {
        let Some(key) = self.current.get() else { return };
        let current = self.current_scope.borrow();
        let Some(scope) = &*current else { return };
        let note = Some((key, Rc::as_ptr(scope)));
        if self.noted.get() == note {
            return;
        }
        if let Some(Some(slot)) = self.slots.borrow_mut().get_mut(key.index as usize) {
            self.noted.set(note);
            match &slot.blocked_in {
                Some(a) if Rc::ptr_eq(a, scope) => {}
                // Already noted (the common case: a task that blocks at the same await again):
                // nothing to do. Exited scopes left in the list are skipped by `wake_cancelled`
                // and pruned at the next push.
                Some(a) if !a.is_exited() && slot.blocked_more().iter().any(|s| Rc::ptr_eq(s, scope)) => {}
                Some(a) if !a.is_exited() => {
                    let more = &mut slot.rare_mut().blocked_more;
                    more.retain(|s| !s.is_exited());
                    more.push(scope.clone());
                }
                _ => slot.blocked_in = Some(scope.clone()),
            }
        }
    }

    /// Whether the current scope of the task being polled is effectively cancelled.
    #[inline]
    pub(crate) fn current_scope_cancelled(&self) -> bool {
        self.current_scope.borrow().as_ref().is_some_and(|s| s.effectively_cancelled())
    }

    /// Wakes every blocked task whose blocking scope is now effectively cancelled.
    pub(crate) fn wake_cancelled(&self) {
        let mut to_wake = Vec::new();
        for slot in self.slots.borrow().iter().flatten() {
            let cancelled = |s: &Rc<ScopeInner>| !s.is_exited() && s.effectively_cancelled();
            if slot.blocked_in.as_ref().is_some_and(cancelled) || slot.blocked_more().iter().any(cancelled) {
                to_wake.push(slot.waker.clone());
            }
        }
        for w in to_wake {
            crate::log::debug!("guest.cancel", task = w.number);
            if let Some(t) = &self.trace {
                t.record(TraceEvent::Cancel(Side::Guest, w.number));
            }
            w.wake_by_ref();
        }
    }

    /// Arms a timer.
    pub(crate) fn arm(&self, deadline: Instant, scope: ScopeDeadline) -> TimerKey {
        let key = self.timers.borrow_mut().arm(deadline, scope);
        self.timers_changed();
        key
    }

    /// Disarms a timer.
    pub(crate) fn disarm(&self, key: TimerKey) {
        self.timers.borrow_mut().disarm(key);
    }

    /// Called when deadlines change outside a tick (host code moved a deadline): tells the host.
    pub(crate) fn timers_changed(&self) {
        if !self.running.get() {
            self.report_deadline();
        }
    }

    fn report_deadline(&self) {
        if self.finished.get() {
            return;
        }
        let next = self.timers.borrow().next_deadline().unwrap_or(Instant::NEVER);
        if next != Instant::NEVER && next <= self.clock.now() {
            self.shared.request_tick();
        } else if next != self.reported_deadline.get() {
            self.reported_deadline.set(next);
            self.shared.hooks.wake_at(next, GuestTick(self.shared.clone()));
        }
    }

    pub(crate) fn now(&self) -> Instant {
        self.clock.now()
    }

    /// One tick: expired deadlines, one batch, then report.
    fn tick(self: &Rc<Self>) {
        if self.finished.get() {
            return;
        }
        if self.running.get() {
            // A host ran a tick from inside a tick: never re-enter, run it later.
            self.shared.hooks.run_sync_soon_not_threadsafe(GuestTick(self.shared.clone()));
            return;
        }
        self.running.set(true);
        // Cleared on every way out, unwinding included: a host that catches a panic from a tick
        // and goes on must not find the scheduler "running" forever (every later tick would
        // only reschedule itself).
        let running = ClearOnDrop(&self.running);
        // Usually already set (by the request that scheduled this tick): then no store.
        if !self.shared.tick_pending.load(Ordering::Relaxed) {
            self.shared.tick_pending.store(true, Ordering::SeqCst);
        }
        let _cx = CURRENT.enter(Rc::as_ptr(self));
        if let Some(t) = &self.trace {
            t.record(TraceEvent::GuestTick);
        }
        self.fire_timers();
        let mut batch = core::mem::take(&mut *self.batch.borrow_mut());
        batch.clear();
        // `is_empty` first: other threads' queue is empty on most ticks, and its `len` costs more.
        if !self.shared.queue.is_empty() {
            for _ in 0..self.shared.queue.len() {
                match self.shared.queue.pop() {
                    Ok(k) => batch.push(k),
                    Err(_) => break,
                }
            }
        }
        // A tick runs on the owner thread: this always takes the owner's keys (by swapping
        // buffers when there is nothing else in the batch).
        self.shared.owner_queue(|q| if batch.is_empty() { core::mem::swap(&mut batch, q) } else { batch.append(q) });
        if let Some(p) = &self.policy {
            p.permute(&mut batch);
        }
        for &key in &batch {
            self.poll_task(key);
            if self.finished.get() {
                break;
            }
        }
        *self.batch.borrow_mut() = batch;
        drop(running);
        if self.finished.get() {
            return;
        }
        if self.main_exited() {
            self.complete();
            return;
        }
        // A waker on another thread pushes its key, then (fence) swaps `tick_pending`; we clear
        // `tick_pending`, then (fence) look at the queue: one of us sees the other, so a woken
        // task never waits for a tick nobody requested.
        // The fence orders the clear before the look (fence to fence with the waker's side), so
        // the clear itself needs no ordering of its own (a plain store on x86, not an exchange).
        self.shared.tick_pending.store(false, Ordering::Relaxed);
        core::sync::atomic::fence(Ordering::SeqCst);
        if self.shared.any_woken() {
            self.shared.request_tick();
        }
        self.report_deadline();
    }

    fn fire_timers(&self) {
        if self.timers.borrow().is_empty() {
            return;
        }
        let now = self.clock.now();
        let mut cancelled_any = false;
        loop {
            let target = self.timers.borrow_mut().pop_expired(now);
            match target {
                Some(Target::Wake(w)) => w.wake(),
                Some(Target::Fire(s)) => {
                    if let Some(s) = s.upgrade() {
                        s.deadline_fired();
                        cancelled_any = true;
                    }
                }
                None => break,
            }
        }
        if cancelled_any {
            self.wake_cancelled();
        }
    }

    fn main_exited(&self) -> bool {
        match self.main.get() {
            Some(k) => !self.slot_alive(k),
            None => false,
        }
    }

    fn slot_alive(&self, key: TaskKey) -> bool {
        self.generations.borrow()[key.index as usize] == key.generation
            && self.slots.borrow()[key.index as usize].is_some()
    }

    fn poll_task(&self, key: TaskKey) {
        let taken = {
            let gens = self.generations.borrow();
            if gens.get(key.index as usize) != Some(&key.generation) {
                return;
            }
            let mut slots = self.slots.borrow_mut();
            match slots[key.index as usize].as_mut() {
                Some(slot) => {
                    slot.waker.queued.store(false, Ordering::Release);
                    let raising = slot.raise_waiting();
                    let waker = Arc::as_ptr(&slot.waker);
                    slot.fut.take().map(|f| (f, waker, slot.root_scope.clone(), raising))
                }
                None => None,
            }
        };
        let Some((mut fut, waker_ptr, root, raising)) = taken else { return };
        // SAFETY: `waker_ptr` is the slot's `Arc<TaskWaker>`, which the slot keeps until the poll
        // has ended: only `drop_all_tasks` can empty the slot meanwhile (the run abandoned from
        // inside the poll), and it moves that Arc to `kept_waker`, released below after the
        // poll. The `Waker` built on it owns no reference count of its own: it is never dropped
        // (ManuallyDrop) nor woken by value (a poll only sees `&Waker`; a clone takes a count).
        let waker = core::mem::ManuallyDrop::new(Waker::from(unsafe { Arc::from_raw(waker_ptr) }));
        // SAFETY: as above, the Arc is alive.
        let number = unsafe { &*waker_ptr }.number;
        if let Some(t) = &self.trace {
            t.record(TraceEvent::Poll(Side::Guest, number));
        }
        let mut cx = Context::from_waker(&waker);
        self.current.set(Some(key));
        let polling = Polling { local: self, prev_scope: Some(self.swap_scope(Some(root))) };
        let parks = crate::cx::parks();
        crate::cx::take_parked_at();
        let r = fut.as_mut().poll(&mut cx);
        drop(polling);
        if self.kept_waker.borrow().is_some() {
            // The run was abandoned during the poll: the waker it borrowed can go now.
            drop(self.kept_waker.borrow_mut().take());
        }
        match r {
            Poll::Pending => {
                let mut fallback = None;
                if let Some(slot) = self.slots.borrow_mut()[key.index as usize].as_mut() {
                    slot.fut = Some(fut);
                    slot.waits_at = crate::cx::take_parked_at();
                    // An error waited for this poll, which neither took it nor parked at any of
                    // infect's awaits: the task is blocked in foreign futures only, where no
                    // check will ever take it. The delivery falls back to its scope's
                    // cancellation (which the foreign-future rule enforces).
                    if raising && crate::cx::parks() == parks && slot.raise_waiting() {
                        fallback = slot.take_raise().and_then(|r| r.fallback);
                        self.raises.set(self.raises.get() - 1);
                    }
                }
                if let Some(scope) = fallback {
                    super::CancelScope { inner: scope }.cancel();
                }
            }
            Poll::Ready(()) => {
                let slot = self.slots.borrow_mut()[key.index as usize].take();
                self.generations.borrow_mut()[key.index as usize] += 1;
                self.free.borrow_mut().push(key.index);
                self.live.set(self.live.get() - 1);
                crate::log::debug!("guest.finish", task = number);
                if let Some(t) = &self.trace {
                    t.record(TraceEvent::Exit(Side::Guest, number));
                }
                drop(fut);
                drop(slot);
            }
        }
    }

    /// The main task exited: hand the outcome to `done`, exactly once.
    fn complete(&self) {
        self.finished.set(true);
        self.shared.local.store(core::ptr::null_mut(), Ordering::Release);
        self.shared.hooks.wake_at(Instant::NEVER, GuestTick(self.shared.clone()));
        // Nurseries guarantee no other task is alive; drop any stragglers (e.g. spawned by
        // drop glue) before telling the host.
        self.drop_all_tasks();
        let finish = self.finish.borrow_mut().take();
        if let Some(f) = finish {
            f(false);
        }
    }

    fn drop_all_tasks(&self) {
        // The task being polled, if this runs inside its poll: its waker must outlive the poll.
        let polled = self.current.get().map(|k| k.index as usize);
        loop {
            let futs: Vec<TaskSlot> = self
                .slots
                .borrow_mut()
                .iter_mut()
                .enumerate()
                .filter_map(|(i, s)| {
                    let s = s.take()?;
                    if Some(i) == polled {
                        *self.kept_waker.borrow_mut() = Some(s.waker.clone());
                    }
                    Some(s)
                })
                .collect();
            if futs.is_empty() {
                break;
            }
            self.live.set(0);
            drop(futs);
        }
        while self.shared.queue.pop().is_ok() {}
        self.shared.owner_queue(Vec::clear);
        *self.timers.borrow_mut() = Timers::new();
    }

    /// The run handle was dropped before `done`: drop every task, then `done(Err(abandoned))`.
    fn abandon(self: &Rc<Self>) {
        self.finished.set(true);
        self.shared.local.store(core::ptr::null_mut(), Ordering::Release);
        {
            let _cx = CURRENT.enter(Rc::as_ptr(self));
            self.drop_all_tasks();
        }
        let finish = self.finish.borrow_mut().take();
        if let Some(f) = finish {
            f(true);
        }
    }
}

/// A sleep's slot on the guest run (see [`SleepTimer`](crate::timers::SleepTimer)).
impl TimerLoop for Local {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn register(&self, slot: &mut Option<TimerKey>, deadline: Instant, waker: &Waker) {
        if self.timers.borrow_mut().register(slot, deadline, waker) {
            self.timers_changed();
        }
    }

    fn disarm(&self, key: TimerKey) {
        self.timers.borrow_mut().disarm(key);
    }
}

#[cfg(test)]
mod tests {
    //! One-shot delivery of an error to a task ([`TaskRef::deliver`]) on a virtual clock.
    use alloc::rc::Rc;
    use alloc::vec::Vec;
    use core::cell::RefCell;
    use core::time::Duration;

    use super::TaskRef;
    use crate::guest::{self, CancelScope, GuestConfig};
    use crate::time::{Instant, VirtualClock};
    use crate::{Error, Result};

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn at(n: u64) -> Instant {
        Instant::ZERO + s(n)
    }

    fn vrun<T: 'static>(main: impl Future<Output = Result<T>> + 'static) -> Result<T> {
        crate::guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), main)
    }

    const INT: Error = Error::Interrupted { signal: 2 };
    const TERM: Error = Error::Interrupted { signal: 15 };

    /// Taken once, by the await the task is blocked in, at the instant of the delivery; a
    /// second delivery while the first waits changes nothing; the next await works again.
    #[test]
    fn delivered_once_at_the_blocked_await() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let r = vrun(async move {
            let me = TaskRef::current().expect("in a guest task");
            let l2 = l.clone();
            let out = guest::open_nursery(async |n| {
                n.start_soon(async move {
                    guest::sleep(s(3)).await?;
                    let first = me.deliver(INT, None);
                    // Not taken yet: the second changes nothing.
                    let second = me.deliver(TERM, None);
                    l2.borrow_mut().push(format!("deliver {first} {second}"));
                    Ok(())
                })?;
                let r = guest::sleep(s(10)).await;
                l.borrow_mut().push(format!("sleep {r:?} at {:?}", guest::current_time()));
                let r = guest::sleep(s(1)).await;
                l.borrow_mut().push(format!("clean-up {r:?} at {:?}", guest::current_time()));
                Ok(guest::current_time())
            })
            .await;
            Ok(out)
        });
        assert_eq!(r, Ok(Ok(Some(at(4)))));
        let want = [
            "deliver true false".to_owned(),
            format!("sleep {:?} at {:?}", Err::<(), _>(INT), at(3)),
            format!("clean-up Ok(()) at {:?}", at(4)),
        ];
        assert_eq!(*log.borrow(), want);
    }

    /// A task waiting in a nursery for its children takes it as an error of the block: the
    /// children are cancelled at that instant and the nursery returns it; a second delivery
    /// after the first was taken is delivered again.
    #[test]
    fn a_nursery_wait_takes_it_and_cancels_the_children() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let r = vrun(async move {
            let me = TaskRef::current().expect("in a guest task");
            let first = guest::open_nursery(async |n| {
                let me = me.clone();
                n.start_soon(async move {
                    guest::sleep(s(2)).await?;
                    assert!(me.deliver(INT, None));
                    Ok(())
                })?;
                for name in ["a", "b"] {
                    let l = l.clone();
                    n.start_soon(async move {
                        let r = guest::sleep(s(10)).await;
                        l.borrow_mut().push(format!("{name} {r:?} at {:?}", guest::current_time()));
                        r
                    })?;
                }
                Ok(1)
            })
            .await;
            let t1 = guest::current_time();
            // Taken: the next one is delivered again, here at the sleep.
            let second = guest::open_nursery(async |n| {
                let me = me.clone();
                n.start_soon(async move {
                    guest::sleep(s(1)).await?;
                    assert!(me.deliver(TERM, None));
                    Ok(())
                })?;
                guest::sleep(s(10)).await?;
                Ok(2)
            })
            .await;
            Ok((first, t1, second, guest::current_time()))
        });
        assert_eq!(r, Ok((Err(INT), at(2), Err(TERM), at(3))));
        let want = [format!("a Err(Cancelled) at {:?}", at(2)), format!("b Err(Cancelled) at {:?}", at(2))];
        assert_eq!(*log.borrow(), want);
    }

    /// In a shield too (trio's `KeyboardInterrupt`): the check takes it first.
    #[test]
    fn a_shield_does_not_hold_it_back() {
        let r = vrun(async move {
            let me = TaskRef::current().expect("in a guest task");
            guest::open_nursery(async |n| {
                n.start_soon(async move {
                    guest::sleep(s(5)).await?;
                    assert!(me.deliver(INT, None));
                    Ok(())
                })?;
                let r = CancelScope::shielded().run(guest::sleep(s(10))).await;
                Ok((r, guest::current_time()))
            })
            .await
        });
        assert_eq!(r, Ok(Some((Err(INT), at(5)))));
    }

    /// A task blocked in foreign futures only (no check reaches it): the fallback scope is
    /// cancelled instead, at that instant, and nothing stays pending.
    #[test]
    fn blocked_in_foreign_futures_falls_back_to_the_scope() {
        let r = vrun(async move {
            let me = TaskRef::current().expect("in a guest task");
            let fallback = CancelScope::new();
            let fb = fallback.clone();
            guest::open_nursery(async |n| {
                n.start_soon(async move {
                    guest::sleep(s(4)).await?;
                    assert!(me.deliver(INT, Some(&fb)));
                    Ok(())
                })?;
                let r = fallback.run(futures::future::pending::<Result<()>>()).await;
                let t = guest::current_time();
                // The delivery was dropped in favour of the scope: this sleep is not interrupted.
                guest::sleep(s(1)).await?;
                Ok((r, fallback.cancelled_caught(), t, guest::current_time()))
            })
            .await
        });
        assert_eq!(r, Ok(Some((Ok(None), true, at(4), at(5)))));
    }

    /// A task waiting in `Nursery::start`: the child is cancelled and `start` returns it.
    #[test]
    fn a_start_wait_cancels_the_child_and_returns_it() {
        let r = vrun(async move {
            let me = TaskRef::current().expect("in a guest task");
            guest::open_nursery(async |n| {
                n.start_soon(async move {
                    guest::sleep(s(3)).await?;
                    assert!(me.deliver(INT, None));
                    Ok(())
                })?;
                let r = n
                    .start(async |status: guest::TaskStatus<u8>| {
                        guest::sleep(s(10)).await?;
                        status.started(1);
                        Ok(())
                    })
                    .await;
                Ok((r, guest::current_time()))
            })
            .await
        });
        assert_eq!(r, Ok(Some((Err(INT), at(3)))));
    }

    /// An ended task gets nothing.
    #[test]
    fn an_ended_task_refuses_it() {
        let r = vrun(async move {
            let child = Rc::new(RefCell::new(None));
            let c = child.clone();
            guest::open_nursery(async |n| {
                n.start_soon(async move {
                    *c.borrow_mut() = TaskRef::current();
                    Ok(())
                })
            })
            .await?;
            let task = child.borrow_mut().take().expect("the child ran");
            Ok(task.deliver(INT, None))
        });
        assert_eq!(r, Ok(false));
    }
    /// A task that abandons its own run during its poll (drops the run handle) still holds a
    /// valid waker for the rest of that poll: it can clone and wake it; `done` hears of the
    /// abandon once, and the task's future is dropped after its poll.
    #[test]
    fn a_run_abandoned_inside_a_task_poll_keeps_that_polls_waker() {
        use crate::guest::{GuestRun, GuestTick, Hooks};
        use std::sync::{Arc, Mutex};
        struct Queue(Arc<Mutex<Vec<GuestTick>>>);
        impl Hooks for Queue {
            fn run_sync_soon_threadsafe(&self, tick: GuestTick) {
                self.0.lock().unwrap().push(tick);
            }
            fn wake_at(&self, _: Instant, _: GuestTick) {}
        }
        struct Noisy(Rc<RefCell<Vec<&'static str>>>);
        impl Drop for Noisy {
            fn drop(&mut self) {
                self.0.borrow_mut().push("future dropped");
            }
        }
        let ticks = Arc::new(Mutex::new(Vec::new()));
        let handle: Rc<RefCell<Option<GuestRun>>> = Rc::default();
        let log: Rc<RefCell<Vec<&'static str>>> = Rc::default();
        let (h, l, noisy) = (handle.clone(), log.clone(), Noisy(log.clone()));
        let main = core::future::poll_fn(move |cx| {
            let _keep = &noisy;
            drop(h.borrow_mut().take());
            l.borrow_mut().push("abandoned");
            let w = cx.waker().clone();
            w.wake_by_ref();
            drop(w);
            cx.waker().wake_by_ref();
            l.borrow_mut().push("woke");
            core::task::Poll::<Result<()>>::Pending
        });
        let l = log.clone();
        let config = GuestConfig::new(Rc::new(VirtualClock::new()));
        let run = guest::start_guest_run_with(config, main, Queue(ticks.clone()), move |r| {
            assert_eq!(r, Err(Error::GuestRunAbandoned));
            l.borrow_mut().push("done");
        })
        .unwrap();
        *handle.borrow_mut() = Some(run);
        loop {
            let batch: Vec<GuestTick> = core::mem::take(&mut *ticks.lock().unwrap());
            if batch.is_empty() {
                break;
            }
            batch.into_iter().for_each(GuestTick::run);
        }
        assert_eq!(*log.borrow(), ["done", "abandoned", "woke", "future dropped"]);
    }
}
