//! The host executor: asyncio's role, built on `async-task`.
//!
//! # Who touches what
//! - `Shared` is the only part another thread may touch: the injector (a `ConcurrentQueue` of
//!   jobs queued from other threads, or before the loop ran), the reactor's park gate (the
//!   `sleeping` flag and its [`Notifier`](crate::reactor::Notifier)), and the alarm requests.
//!   Task wakers, [`Remote::call_soon_threadsafe`] and the crate's wakes-from-any-thread push
//!   jobs there; a push from inside the loop on the host thread goes to the core's local FIFO
//!   instead (no atomics), and a push wakes the reactor only when the loop is parked (or about
//!   to park), so a same-thread wake costs no syscall.
//! - `Core` (task table, timers, alarms, current task, what the host carries) is owned by the
//!   host thread. It is reached through the owning [`Host`] or, while the loop runs, through the
//!   thread's current-host slot.
//! - Task futures need not be `Send`: a `Runnable` may be pushed from any thread, but it is only
//!   ever run or dropped on the host thread. Shutdown closes every task on the host thread
//!   before the queue can outlive the host, so no later wake can create a `Runnable` again.
//!
//! # Host task life cycle
//! ```text
//!  (1) spawn      (2) wake        (3) run           (4) Ready
//! ─────────▶ Idle ───────▶ Queued ───────▶ Running ──────────▶ Done (JoinHandle: Ok(v))
//!              ▲                              │
//!              └───────── Pending ────────────┤
//!                                             │ (5) cancel requested before this poll
//!                                             ▼     and the poll returned Pending
//!                                           Dropped (JoinHandle: Err(Cancelled{reason}))
//! ```
//! 1. [`Host::spawn`] registers the task and queues its first poll.
//! 2. The `async-task` waker calls the schedule function: the `Runnable` joins the queue.
//! 3. A loop turn runs the batch that was queued when the turn began.
//! 4. The output goes to the [`JoinHandle`].
//! 5. [`JoinHandle::cancel`] records the reason and wakes the task: during its next poll every
//!    host-aware await ([`sleep`], link operations, fd readiness, [`net`] socket I/O) returns
//!    `Err(Cancelled{reason})`, and stays that way (sticky). A task still pending after that
//!    poll is dropped on the spot: cancellation is cooperative for one poll, then enforced.
//!
//! A task that panics unwinds out of the loop call that polled it (`block_on`, `run`, ...); the
//! current-task state is restored on the way out, so host-aware awaits after the panic was
//! caught behave as outside that task.
//!
//! # Order of execution
//! - **A loop turn** fires the timers that are due (a [`Host::call_at`] callback is queued, a
//!   [`sleep`]'s task is woken; same deadline: arming order), then runs the *batch* of jobs
//!   queued when the turn began: first those queued from other threads (or before the loop
//!   ran), then those queued on the host thread, each in FIFO order. What a job queues runs
//!   at a later turn, so no task is polled twice in one batch and run order is wake order.
//!   A [seed](HostBuilder::seed) permutes each batch, reproducibly.
//! - **A job** is a task's poll (queued by its waker: spawn, then each wake; waking a task
//!   that is already queued does nothing), a [`call_soon`](Host::call_soon) or
//!   [`Remote::call_soon_threadsafe`] callback, a due `call_at` callback, or a wake.
//! - **Parking.** A turn that ran nothing parks the thread in the reactor's `epoll_wait` until
//!   an fd a task waits on is ready, a job arrives from another thread (the reactor's wake fd;
//!   a push from the host thread itself needs no syscall), or the next deadline. A
//!   [`VirtualClock`](crate::time::VirtualClock) with autojump jumps to that deadline instead
//!   of waiting, once no fd is ready: virtual time passes only when every task is blocked.
//!
//! # What a host offers a carried loop
//! The host knows no guest. What lets another runtime ride it (the crate's
//! [`Host::run_guest`], built in the `embed` module) is generic: a wake scheduled from any thread
//! (a [`Waker`] woken on the host thread at its next turn), an alarm (wake at a deadline, a later
//! request replacing the earlier one), and carried parts, each of which keeps [`Host::run`] going
//! while it is busy and is shut down first when the host drops.
//!
//! # Drop order
//! Dropping the [`Host`] shuts down what it carries first, in the order it was attached (a
//! guest run that has not finished is abandoned: every guest task is dropped and its `done` gets
//! [`Error::GuestRunAbandoned`]), because those parts may hold links to host tasks; then it
//! wakes and drops every task, then the timers and alarms: nothing outlives the executor. From
//! then on its queues are closed: a job or alarm request for it (a wake, from a waker of the
//! guest it carried that outlived it) is dropped where it is made, so nothing keeps the dead
//! host's shared part, and its wake fd, alive.

#[cfg(feature = "std")]
pub mod net;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::rc::{Rc, Weak};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use async_task::Runnable;
use concurrent_queue::ConcurrentQueue;

use crate::cx::kernel_slot;
use crate::error::Cancelled;
use crate::time::{Clock, Instant};
use crate::timers::{SleepTimer, Target, TimerKey, TimerLoop, Timers};
use crate::trace::{Policy, Side, Trace, TraceEvent};
use crate::{Error, Result};

/// A callback that is not `Send`, queued by the host thread for the host thread.
struct LocalFn(Box<dyn FnOnce()>);

// SAFETY: a `LocalFn` is only created by `Host::call_soon` / `call_at` (the `Host` and its
// `Core` are `!Send`, so on the host thread), and only run or dropped on the host thread: the
// loop drains the queue, and `Host::drop` drains it before the `Core` goes away. `Remote`
// handles cannot create one.
unsafe impl Send for LocalFn {}

enum Job {
    Task(Runnable<u64>),
    Call(Box<dyn FnOnce() + Send>),
    Local(LocalFn),
    /// A wake scheduled from any thread: the waker is woken on the host thread.
    Wake(Waker),
}

/// The thread-safe part of the host.
struct Shared {
    queue: ConcurrentQueue<Job>,
    /// The loop is parked or about to park: pushes must wake the reactor.
    #[cfg(feature = "std")]
    gate: crate::reactor::ParkGate,
    /// Alarm requests from any thread: `(alarm, Some((deadline, waker)))` sets, `None` clears.
    alarm_requests: ConcurrentQueue<(usize, Option<(Instant, Waker)>)>,
}

impl Shared {
    /// Queues a job: on the local FIFO when called from inside this host's loop on its own
    /// thread (no atomics, no wake-up needed), else on the injector (waking a parked loop).
    fn push(&self, job: Job) {
        #[cfg(feature = "std")]
        let job = {
            let ptr = CURRENT.get();
            // SAFETY: as in `with_core`: a non-null CURRENT is this thread's running host, alive
            // while its loop runs. CURRENT is thread-local with std, so this is the host thread.
            match unsafe { ptr.as_ref() } {
                Some(core) if core::ptr::eq(Arc::as_ptr(&core.shared), self) => {
                    core.local.borrow_mut().push(job);
                    return;
                }
                _ => job,
            }
        };
        // Unbounded, closed only when the host is dropped: a job for a host that is gone (a
        // wake of something it carried, from a waker that outlived it) is dropped here, on the
        // spot, rather than kept in a queue that nothing drains (where a wake that holds the
        // host's own `Shared` would keep it, and its wake fd, alive for ever). Only `Send`
        // jobs can come after the drop: every task was dropped with the host.
        if let Err(e) = self.queue.push(job) {
            drop(e.into_inner());
            return;
        }
        self.notify_if_sleeping();
    }

    /// Wakes a parked loop (the reactor's [`ParkGate`](crate::reactor::ParkGate): a job is
    /// never left in the queue of a loop that parks without being woken). Without `std` there
    /// is no reactor to wake: the loop polls its queue while it waits.
    fn notify_if_sleeping(&self) {
        #[cfg(feature = "std")]
        self.gate.notify();
    }
}

/// What a host timer fires besides a sleep's waker: a `call_at` callback.
type TimerCall = Box<dyn FnOnce()>;

struct TaskCtl {
    id: u64,
    /// Where the task last parked (the caller of the infect await it waits in), for the dump.
    waits_at: Cell<Option<&'static core::panic::Location<'static>>>,
    /// Fast path of `cancel.is_some()`, read at every host-aware await.
    requested: Cell<bool>,
    cancel: RefCell<Option<Cancelled>>,
    core: Weak<Core>,
}

impl TaskCtl {
    fn request_cancel(&self, reason: &str) {
        self.request_cancel_with(Cancelled::new(reason));
    }

    fn request_cancel_with(&self, c: Cancelled) {
        if self.requested.replace(true) {
            return;
        }
        *self.cancel.borrow_mut() = Some(c);
        crate::log::debug!("host.cancel", task = self.id);
        if let Some(core) = self.core.upgrade() {
            if let Some(t) = &core.trace {
                t.record(TraceEvent::Cancel(Side::Host, self.id));
            }
            let w = core.tasks.borrow().get(&self.id).map(|e| e.waker.clone());
            if let Some(w) = w {
                w.wake();
            }
        }
    }

    #[inline]
    fn cancelled(&self) -> Option<Cancelled> {
        if self.requested.get() { self.cancel.borrow().clone() } else { None }
    }
}

struct TaskEntry {
    waker: Waker,
    ctl: Rc<TaskCtl>,
}

pub(crate) struct Core {
    shared: Arc<Shared>,
    clock: Rc<dyn Clock>,
    timers: RefCell<Timers<TimerCall>>,
    /// Alarms by id: the pending `(deadline, waker)` of each (see [`Alarm`]).
    alarms: RefCell<Vec<Option<(Instant, Waker)>>>,
    /// Whether any of `alarms` is pending: kept by every change to them, so that a turn with
    /// nothing armed and nothing requested skips the timer work at a glance.
    alarm_pending: Cell<bool>,
    /// What the host carries, in attachment order (see [`Carried`]).
    carried: RefCell<Vec<Rc<dyn Carried>>>,
    tasks: RefCell<BTreeMap<u64, TaskEntry>>,
    next_id: Cell<u64>,
    /// The task being polled (null outside a task): set by `CurrentTask` while `HostTask::poll`
    /// runs, which holds the `Rc<TaskCtl>` it points to for that whole time.
    current: Cell<*const TaskCtl>,
    trace: Option<Trace>,
    policy: Option<Policy>,
    closed: Cell<bool>,
    /// The batch buffer, reused by every turn.
    batch: RefCell<Vec<Job>>,
    /// Jobs queued from inside the loop on the host thread (see `Shared::push`).
    local: RefCell<Vec<Job>>,
    #[cfg(feature = "std")]
    reactor: Option<crate::reactor::Reactor>,
}

impl Core {
    /// The task being polled, if any.
    #[inline]
    fn current_ctl(&self) -> Option<&TaskCtl> {
        // SAFETY: non-null only while `HostTask::poll` runs, which holds the `Rc<TaskCtl>` it
        // points to (see `Core::current`); the reference does not outlive that poll's callee.
        unsafe { self.current.get().as_ref() }
    }

    fn no_jobs(&self) -> bool {
        self.shared.queue.is_empty() && self.local.borrow().is_empty()
    }
}

kernel_slot! {
    /// The host whose loop runs on this thread (null when none).
    static CURRENT: *const Core = core::ptr::null();
}

/// Runs `f` with the host whose loop is running on this thread, if any.
#[inline]
fn with_core<R>(f: impl FnOnce(&Core) -> R) -> Option<R> {
    let ptr = CURRENT.get();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: CURRENT is only non-null while a `Host` method that borrows its `Rc<Core>` (the
    // loop, or the shutdown in `Drop`) runs on this thread; the guard restores it before that
    // borrow ends.
    Some(f(unsafe { &*ptr }))
}

/// A host task as the debug dump shows it.
#[cfg_attr(not(feature = "std"), allow(dead_code))]
pub(crate) struct HostTaskState {
    /// Its id on its host (spawn order, from 1).
    pub(crate) id: u64,
    /// Where it last parked, if at one of infect's awaits.
    pub(crate) waits_at: Option<&'static core::panic::Location<'static>>,
    /// Its cancellation was requested, with this reason.
    pub(crate) cancel: Option<alloc::string::String>,
    /// It is the task being polled.
    pub(crate) running: bool,
}

/// The live tasks of the host whose loop runs on this thread, in id order; `None` when no
/// host loop runs here.
#[cfg_attr(not(feature = "std"), allow(dead_code))]
pub(crate) fn snapshot() -> Option<Vec<HostTaskState>> {
    with_core(|core| {
        let current = core.current_ctl().map(|c| c.id);
        core.tasks
            .borrow()
            .values()
            .map(|e| HostTaskState {
                id: e.ctl.id,
                waits_at: e.ctl.waits_at.get(),
                cancel: e.ctl.cancelled().map(|c| c.reason),
                running: Some(e.ctl.id) == current,
            })
            .collect()
    })
}

/// Spawns a task on the host whose loop runs on this thread.
pub(crate) fn spawn_current<F>(fut: F) -> Option<JoinHandle<F::Output>>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let ptr = CURRENT.get();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: as in `with_core`. We need the `Rc` to hand out weak references: the pointer came
    // from `Rc::as_ptr`, and ManuallyDrop keeps the count unchanged.
    let rc = core::mem::ManuallyDrop::new(unsafe { Rc::from_raw(ptr) });
    Some(spawn_on(&rc, fut))
}

/// Configures a [`Host`]: its clock, an event trace, a scheduling seed.
///
/// Two hosts built with the same seed, fed the same program, run it in the same order: their
/// traces are equal (a different seed explores another interleaving of each batch).
///
/// ```
/// use infect::{host::{self, Host}, time::VirtualClock, trace::Trace};
/// use std::{rc::Rc, time::Duration};
///
/// fn traced_run(seed: u64) -> u64 {
///     let trace = Trace::new();
///     let host = Host::builder()
///         .clock(Rc::new(VirtualClock::new()))
///         .trace(trace.clone())
///         .seed(seed)
///         .build()
///         .unwrap();
///     for i in 0..4u64 {
///         host.spawn(async move { host::sleep(Duration::from_millis(i % 2)).await }).detach();
///     }
///     host.run();
///     trace.hash()
/// }
/// assert_eq!(traced_run(7), traced_run(7));
/// ```
pub struct HostBuilder {
    clock: Option<Rc<dyn Clock>>,
    trace: Option<Trace>,
    seed: Option<u64>,
}

impl core::fmt::Debug for HostBuilder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HostBuilder").field("seed", &self.seed).finish_non_exhaustive()
    }
}

impl HostBuilder {
    /// Reads time from `clock` (default: the monotonic clock; required without `std`).
    pub fn clock(mut self, clock: Rc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Records the host's (and a guest run's) events into `trace`.
    pub fn trace(mut self, trace: Trace) -> Self {
        self.trace = Some(trace);
        self
    }

    /// Permutes each batch of runnable jobs with a PRNG seeded with `seed` (the guest run it
    /// carries gets a seed derived from it).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Builds the host. Fails only if the reactor's wake fd cannot be created (std), or no
    /// clock was given without std.
    pub fn build(self) -> Result<Host> {
        #[cfg(feature = "std")]
        let reactor = crate::reactor::Reactor::new()
            .map_err(|e| Error::Os { op: "creating the reactor's wake fd".into(), source: e.into() })?;
        #[cfg(feature = "std")]
        let clock = self.clock.unwrap_or_else(|| Rc::new(crate::time::MonotonicClock::new()));
        #[cfg(not(feature = "std"))]
        let clock = self.clock.ok_or(Error::NoClock)?;
        let shared = Arc::new(Shared {
            queue: ConcurrentQueue::unbounded(),
            #[cfg(feature = "std")]
            gate: crate::reactor::ParkGate::new(reactor.notifier()),
            alarm_requests: ConcurrentQueue::unbounded(),
        });
        Ok(Host {
            core: Rc::new(Core {
                shared,
                clock,
                timers: RefCell::new(Timers::new()),
                alarms: RefCell::new(Vec::new()),
                alarm_pending: Cell::new(false),
                carried: RefCell::new(Vec::new()),
                tasks: RefCell::new(BTreeMap::new()),
                next_id: Cell::new(1),
                current: Cell::new(core::ptr::null()),
                trace: self.trace,
                policy: self.seed.map(Policy::seeded),
                closed: Cell::new(false),
                batch: RefCell::new(Vec::new()),
                local: RefCell::new(Vec::new()),
                #[cfg(feature = "std")]
                reactor: Some(reactor),
            }),
        })
    }
}

/// The host executor. `!Send`: it lives on the thread that built it (other threads reach it
/// through a [`Remote`]).
///
/// Nothing runs until the host's loop does: [`block_on`](Host::block_on) runs it until one
/// future completes, [`run`](Host::run) until nothing is left, [`run_guest`](Host::run_guest)
/// until a guest riding it has finished, and [`run_until_stalled`](Host::run_until_stalled)
/// for one non-blocking pass (driving the host from another loop). See the
/// [module docs](self) for the order things run in, cancellation, and the drop order.
///
/// ```
/// use infect::host::Host;
/// let host = Host::new().unwrap();
/// let h = host.spawn(async { 40 + 2 });
/// assert_eq!(host.block_on(h), Ok(42));
/// ```
pub struct Host {
    core: Rc<Core>,
}

impl core::fmt::Debug for Host {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Host")
            .field("tasks", &self.core.tasks.borrow().len())
            .field("carried", &self.core.carried.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Host {
    /// A host on the monotonic clock (no trace, no seed: FIFO order). For a virtual clock,
    /// a trace or a seed, use [`Host::builder`].
    ///
    /// ```
    /// let host = infect::host::Host::new()?;
    /// assert_eq!(host.block_on(async { 1 + 1 }), 2);
    /// # Ok::<(), infect::Error>(())
    /// ```
    #[cfg(feature = "std")]
    pub fn new() -> Result<Host> {
        Host::builder().build()
    }

    /// A builder, to set the clock, the trace or the seed (see [`HostBuilder`]).
    ///
    /// ```
    /// use infect::{host::Host, time::VirtualClock};
    /// use std::rc::Rc;
    /// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
    /// assert_eq!(host.now().as_nanos(), 0);
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn builder() -> HostBuilder {
        HostBuilder { clock: None, trace: None, seed: None }
    }

    /// The host's clock: the one every host timer, [`sleep`] and a carried guest read.
    ///
    /// ```
    /// use infect::{host::{self, Host}, time::{Clock, VirtualClock}};
    /// use std::{rc::Rc, time::Duration};
    /// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
    /// host.block_on(host::sleep(Duration::from_millis(3)))?;
    /// // The virtual clock jumped straight to the sleep's deadline.
    /// assert_eq!(host.clock().now().as_nanos(), 3_000_000);
    /// assert_eq!(host.now(), host.clock().now());
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn clock(&self) -> Rc<dyn Clock> {
        self.core.clock.clone()
    }

    /// The host clock's current time.
    pub fn now(&self) -> Instant {
        self.core.clock.now()
    }

    /// Spawns `fut` as a host task and queues its first poll (after what is already queued).
    /// The future need not be `Send`. See [`JoinHandle`] for awaiting, cancelling and
    /// detaching; dropping the handle cancels the task.
    ///
    /// ```
    /// use infect::host::Host;
    /// use std::{cell::RefCell, rc::Rc};
    /// let host = Host::new()?;
    /// let log = Rc::new(RefCell::new(Vec::new()));
    /// for i in 0..3 {
    ///     let log = log.clone();
    ///     host.spawn(async move { log.borrow_mut().push(i) }).detach();
    /// }
    /// host.run();
    /// assert_eq!(*log.borrow(), [0, 1, 2]); // first polls in spawn order
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        spawn_on(&self.core, fut)
    }

    /// Queues `f` to run on the next loop turn, after what is already queued (asyncio's
    /// `call_soon`). `f` need not be `Send`; it runs on the host thread.
    ///
    /// ```
    /// use infect::host::Host;
    /// use std::{cell::RefCell, rc::Rc};
    /// let host = Host::new()?;
    /// let log = Rc::new(RefCell::new(Vec::new()));
    /// let (a, b) = (log.clone(), log.clone());
    /// host.call_soon(move || a.borrow_mut().push("first"));
    /// host.call_soon(move || b.borrow_mut().push("second"));
    /// assert!(log.borrow().is_empty()); // nothing runs before the loop does
    /// host.run();
    /// assert_eq!(*log.borrow(), ["first", "second"]);
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn call_soon(&self, f: impl FnOnce() + 'static) {
        self.core.shared.push(Job::Local(LocalFn(Box::new(f))));
    }

    /// Queues a `Send` callback from this thread, exactly as [`Remote::call_soon_threadsafe`]
    /// does from another (use a [`remote`](Host::remote) handle there).
    ///
    /// ```
    /// use infect::host::Host;
    /// use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
    /// let host = Host::new()?;
    /// let n = Arc::new(AtomicU32::new(0));
    /// let m = n.clone();
    /// host.call_soon_threadsafe(move || { m.fetch_add(1, Ordering::SeqCst); });
    /// host.run();
    /// assert_eq!(n.load(Ordering::SeqCst), 1);
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn call_soon_threadsafe(&self, f: impl FnOnce() + Send + 'static) {
        self.remote_handle().call_soon_threadsafe(f);
    }

    /// Runs `f` when the host clock reaches `deadline` (asyncio's `call_at`). The returned
    /// handle cancels it ([`cancel_call`](Host::cancel_call)). Callbacks with the same deadline
    /// run in the order they were armed; a pending callback keeps [`run`](Host::run) going.
    ///
    /// ```
    /// use infect::{host::Host, time::{Instant, VirtualClock}};
    /// use std::{cell::RefCell, rc::Rc, time::Duration};
    /// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
    /// let log = Rc::new(RefCell::new(Vec::new()));
    /// let at = Instant::ZERO + Duration::from_secs(2);
    /// for name in ["a", "b", "c"] {
    ///     let (log, clock) = (log.clone(), host.clock());
    ///     host.call_at(at, move || log.borrow_mut().push((name, clock.now().as_nanos())));
    /// }
    /// host.run();
    /// assert_eq!(*log.borrow(), [("a", 2_000_000_000), ("b", 2_000_000_000), ("c", 2_000_000_000)]);
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn call_at(&self, deadline: Instant, f: impl FnOnce() + 'static) -> CallHandle {
        CallHandle(self.core.timers.borrow_mut().arm(deadline, Box::new(f)))
    }

    /// Runs `f` once `d` has passed on the host clock (asyncio's `call_later`); see
    /// [`call_at`](Host::call_at).
    ///
    /// ```
    /// use infect::{host::Host, time::VirtualClock};
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
    /// let fired_at = Rc::new(Cell::new(0));
    /// let (f, clock) = (fired_at.clone(), host.clock());
    /// host.call_later(Duration::from_millis(250), move || f.set(clock.now().as_nanos()));
    /// host.run();
    /// assert_eq!(fired_at.get(), 250_000_000);
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn call_later(&self, d: Duration, f: impl FnOnce() + 'static) -> CallHandle {
        self.call_at(self.now() + d, f)
    }

    /// Cancels a `call_at`/`call_later` that has not run; `true` if it had not (it then never
    /// runs), `false` if it had already run or been cancelled.
    ///
    /// ```
    /// use infect::{host::Host, time::VirtualClock};
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
    /// let ran = Rc::new(Cell::new(false));
    /// let r = ran.clone();
    /// let call = host.call_later(Duration::from_secs(1), move || r.set(true));
    /// assert!(host.cancel_call(call));
    /// assert!(!host.cancel_call(call));
    /// host.run(); // returns at once: nothing is left
    /// assert!(!ran.get());
    /// assert_eq!(host.now().as_nanos(), 0);
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn cancel_call(&self, call: CallHandle) -> bool {
        let armed = self.core.timers.borrow().is_armed(call.0);
        self.core.timers.borrow_mut().disarm(call.0);
        armed
    }

    /// A `Send + Sync` handle for other threads (see [`Remote`]). Inside a
    /// [simulation](crate::sim) there are no other threads: asking for one ends the run with
    /// [`Error::OutsideSimulation`].
    pub fn remote(&self) -> Remote {
        crate::cx::refuse_in_simulation(|| "a Remote (a handle for other threads) of a host".into());
        self.remote_handle()
    }

    /// [`remote`](Host::remote) for the crate's own cross-thread wakes (a carried guest's).
    pub(crate) fn remote_handle(&self) -> Remote {
        Remote { shared: self.core.shared.clone() }
    }

    /// The trace the host records into, if it has one.
    pub(crate) fn trace(&self) -> Option<Trace> {
        self.core.trace.clone()
    }

    /// The next number of the host's seeded policy (a seed for a loop it carries), if seeded.
    pub(crate) fn next_seed(&self) -> Option<u64> {
        self.core.policy.as_ref().map(Policy::next_u64)
    }

    /// A new alarm on this host (see [`Alarm`]).
    pub(crate) fn alarm(&self) -> Alarm {
        let mut alarms = self.core.alarms.borrow_mut();
        alarms.push(None);
        Alarm { shared: self.core.shared.clone(), id: alarms.len() - 1 }
    }

    /// Attaches `part` to this host: [`Host::run`] goes on while it is busy, and the host's
    /// drop shuts it down first (see the [drop order](self#drop-order)).
    pub(crate) fn attach(&self, part: Rc<dyn Carried>) {
        self.core.carried.borrow_mut().push(part);
    }

    /// The attached part of type `T`, if any.
    pub(crate) fn attached<T: Carried>(&self) -> Option<Rc<T>> {
        self.core.carried.borrow().iter().find_map(|c| {
            let any: Rc<dyn core::any::Any> = c.clone();
            any.downcast::<T>().ok()
        })
    }

    /// A handle to this host for code that runs inside its loop (see [`HostRef`]).
    pub(crate) fn handle(&self) -> HostRef {
        HostRef(Rc::downgrade(&self.core))
    }

    /// Runs loop turns until `until()` holds; the host is current meanwhile. `until` is
    /// checked before each turn.
    pub(crate) fn run_until(&self, until: impl Fn() -> bool) {
        let _cx = self.enter();
        while !until() {
            self.turn(false);
        }
    }

    /// Runs the loop until `fut` completes and returns its output (asyncio's
    /// `run_until_complete`). `fut` need not be `'static`: it is polled by the loop itself, not
    /// spawned, so it may borrow locals. Host tasks and callbacks run meanwhile; tasks still
    /// pending when `fut` completes stay on the host (a later `block_on` or `run` goes on
    /// with them). With a virtual clock, time jumps to the next deadline whenever nothing can
    /// run.
    ///
    /// ```
    /// use infect::{host::{self, Host}, time::VirtualClock};
    /// use std::{rc::Rc, time::Duration};
    /// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
    /// let words = vec!["borrowed", "locals"];
    /// let n = host.block_on(async {
    ///     host::sleep(Duration::from_secs(10)).await?;
    ///     Ok::<_, infect::Cancelled>(words.len())
    /// })?;
    /// assert_eq!(n, 2);
    /// assert_eq!(host.now().as_nanos(), 10_000_000_000);
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        let _cx = self.enter();
        let mut fut = core::pin::pin!(fut);
        let main = Arc::new(MainWaker { woken: AtomicBool::new(true), shared: self.core.shared.clone() });
        let waker = Waker::from(main.clone());
        let mut cx = Context::from_waker(&waker);
        loop {
            if main.woken.swap(false, Ordering::SeqCst) {
                if let Some(t) = &self.core.trace {
                    t.record(TraceEvent::Poll(Side::Host, 0));
                }
                if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                    return v;
                }
            }
            self.turn_with(&main.woken);
        }
    }

    /// Runs the loop until nothing is left to do: no host task, no queued job, no pending
    /// `call_at`/`call_later` callback, no active guest run (nor other busy carried part).
    /// A task that waits forever (on an fd, say) keeps it running forever: cancel it, or use
    /// [`block_on`](Host::block_on) with the future you are waiting for.
    ///
    /// ```
    /// use infect::{host::{self, Host}, time::VirtualClock};
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
    /// let done = Rc::new(Cell::new(0));
    /// for secs in [3, 1, 2] {
    ///     let done = done.clone();
    ///     host.spawn(async move {
    ///         let _ = host::sleep(Duration::from_secs(secs)).await;
    ///         done.set(done.get() + 1);
    ///     })
    ///     .detach();
    /// }
    /// host.run();
    /// assert_eq!(done.get(), 3);
    /// assert_eq!(host.now().as_nanos(), 3_000_000_000);
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn run(&self) {
        let _cx = self.enter();
        // Armed timers count as work: a pending `call_later` callback must run, not be dropped
        // with the host. (A task's `Sleep` timer is disarmed when the sleep is dropped, so a
        // timer never outlives the task that armed it.)
        while !(self.core.tasks.borrow().is_empty()
            && !self.core.carried.borrow().iter().any(|c| c.busy())
            && self.core.no_jobs()
            && self.core.timers.borrow().is_empty())
        {
            self.turn(false);
        }
    }

    /// Runs every job that is ready now (and those they make ready), without parking; returns
    /// the number of jobs run. The building block for driving the host from another loop:
    /// call it, then wait (in that loop) until [`next_deadline`](Host::next_deadline) or until
    /// a [`Remote`] call arrives. It never moves a virtual clock.
    ///
    /// ```
    /// use infect::{host::{self, Host}, time::{Instant, VirtualClock}};
    /// use std::{rc::Rc, time::Duration};
    /// let clock = Rc::new(VirtualClock::new());
    /// let host = Host::builder().clock(clock.clone()).build()?;
    /// let h = host.spawn(async { host::sleep(Duration::from_secs(1)).await });
    /// assert_eq!(host.run_until_stalled(), 1); // the first poll: the task now sleeps
    /// assert_eq!(host.run_until_stalled(), 0);
    /// assert_eq!(host.next_deadline(), Some(Instant::ZERO + Duration::from_secs(1)));
    /// clock.advance(Duration::from_secs(1)); // the outer loop's own wait
    /// assert_eq!(host.run_until_stalled(), 1); // the timer woke the task: it finished
    /// assert!(h.is_finished());
    /// assert_eq!(host.next_deadline(), None);
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn run_until_stalled(&self) -> usize {
        let _cx = self.enter();
        let mut total = 0;
        loop {
            self.fire_timers();
            let n = self.run_batch();
            if n == 0 {
                return total;
            }
            total += n;
        }
    }

    /// Whether a job is queued (a woken task, a callback): a pass of
    /// [`run_until_stalled`](Host::run_until_stalled) would run something.
    #[cfg(feature = "std")]
    pub(crate) fn has_jobs(&self) -> bool {
        !self.core.no_jobs()
    }

    /// The earliest pending deadline (host timers, and the alarms of what it carries: a
    /// guest run's `wake_at`), if any. See [`run_until_stalled`](Host::run_until_stalled).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.collect_alarms();
        let t = self.core.timers.borrow().next_deadline();
        let a = self.core.alarms.borrow().iter().flatten().map(|w| w.0).min();
        match (t, a) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Makes this host (and its reactor) current on this thread while the guard lives.
    pub(crate) fn enter(&self) -> EnterGuard {
        EnterGuard {
            _host: CURRENT.enter(Rc::as_ptr(&self.core)),
            #[cfg(feature = "std")]
            _reactor: self.core.reactor.as_ref().map(crate::reactor::Reactor::enter),
        }
    }

    fn turn(&self, main_woken: bool) {
        let flag = AtomicBool::new(main_woken);
        self.turn_with(&flag);
    }

    /// One loop turn: timers, one batch, and park if nothing ran.
    fn turn_with(&self, main_woken: &AtomicBool) {
        self.fire_timers();
        let ran = self.run_batch();
        if ran == 0 && !main_woken.load(Ordering::SeqCst) {
            self.park(main_woken);
        }
    }

    /// Applies the alarm requests, in the order they were made.
    fn collect_alarms(&self) {
        if self.core.shared.alarm_requests.is_empty() {
            return;
        }
        let mut alarms = self.core.alarms.borrow_mut();
        while let Ok((id, req)) = self.core.shared.alarm_requests.pop() {
            if let Some(a) = alarms.get_mut(id) {
                *a = req;
            }
        }
        self.core.alarm_pending.set(alarms.iter().any(Option::is_some));
    }

    #[inline(always)]
    fn fire_timers(&self) {
        // The common turn: no timer, no alarm, no alarm request.
        if !self.core.alarm_pending.get()
            && self.core.shared.alarm_requests.is_empty()
            && self.core.timers.borrow().is_empty()
        {
            return;
        }
        self.fire_due();
    }

    /// [`fire_timers`](Self::fire_timers) once something may be due.
    fn fire_due(&self) {
        self.collect_alarms();
        let no_alarm = !self.core.alarm_pending.get();
        if self.core.timers.borrow().is_empty() && no_alarm {
            return;
        }
        let now = self.core.clock.now();
        loop {
            let t = self.core.timers.borrow_mut().pop_expired(now);
            match t {
                Some(Target::Wake(w)) => w.wake(),
                Some(Target::Fire(f)) => self.core.shared.push(Job::Local(LocalFn(f))),
                None => break,
            }
        }
        if no_alarm {
            return;
        }
        let mut due = Vec::new();
        {
            let mut alarms = self.core.alarms.borrow_mut();
            for a in alarms.iter_mut() {
                if a.as_ref().is_some_and(|w| w.0 <= now)
                    && let Some((_, w)) = a.take()
                {
                    due.push(w);
                }
            }
            self.core.alarm_pending.set(alarms.iter().any(Option::is_some));
        }
        for w in due {
            self.core.shared.push(Job::Wake(w));
        }
    }

    /// Runs the jobs queued when the turn began: the injector's (older: queued from other
    /// threads or before the loop ran), then the local FIFO's.
    fn run_batch(&self) -> usize {
        // `is_empty` first: the injector is empty on most turns, and its `len` costs more.
        let n = if self.core.shared.queue.is_empty() { 0 } else { self.core.shared.queue.len() };
        if n == 0 && self.core.local.borrow().is_empty() {
            return 0;
        }
        let mut batch = core::mem::take(&mut *self.core.batch.borrow_mut());
        if n == 0 {
            core::mem::swap(&mut batch, &mut *self.core.local.borrow_mut());
        } else {
            for _ in 0..n {
                match self.core.shared.queue.pop() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            batch.append(&mut self.core.local.borrow_mut());
        }
        if let Some(p) = &self.core.policy {
            p.permute(&mut batch);
        }
        let ran = batch.len();
        for job in batch.drain(..) {
            match job {
                Job::Task(r) => {
                    if let Some(t) = &self.core.trace {
                        t.record(TraceEvent::Poll(Side::Host, *r.metadata()));
                    }
                    r.run();
                }
                Job::Call(f) => f(),
                Job::Local(f) => (f.0)(),
                Job::Wake(w) => w.wake(),
            }
        }
        *self.core.batch.borrow_mut() = batch;
        ran
    }

    /// Nothing is runnable: wait for a wake, an fd, or the next deadline (autojumping a virtual
    /// clock when every task of both loops is blocked).
    fn park(&self, main_woken: &AtomicBool) {
        let clock = &self.core.clock;
        #[cfg(feature = "std")]
        self.core.shared.gate.park(
            || !self.core.no_jobs() || main_woken.load(Ordering::SeqCst),
            || {
                let reactor = self.core.reactor.as_ref().expect("std hosts have a reactor");
                crate::reactor::park_until(reactor, &**clock, self.next_deadline());
            },
        );
        #[cfg(not(feature = "std"))]
        {
            // No reactor (and no gate: nothing to notify): a virtual clock jumps; a real clock
            // is polled until the deadline or a cross-thread wake.
            if !self.core.no_jobs() || main_woken.load(Ordering::SeqCst) {
                return;
            }
            let deadline = self.next_deadline();
            let shared = &self.core.shared;
            match deadline {
                Some(d) if clock.now() >= d || clock.autojump(d) => {}
                _ => {
                    while shared.queue.is_empty()
                        && shared.alarm_requests.is_empty()
                        && deadline.is_none_or(|d| clock.now() < d)
                    {
                        core::hint::spin_loop();
                    }
                }
            }
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _cx = self.enter();
        self.core.closed.set(true);
        // What the host carries first (a guest run): it may hold links to host tasks.
        let carried: Vec<Rc<dyn Carried>> = self.core.carried.borrow().clone();
        for part in &carried {
            part.shutdown();
        }
        loop {
            let wakers: Vec<(u64, Waker)> =
                self.core.tasks.borrow().iter().map(|(id, e)| (*id, e.waker.clone())).collect();
            if wakers.is_empty() && self.core.no_jobs() {
                break;
            }
            for (_, w) in wakers {
                w.wake();
            }
            while let Ok(job) = self.core.shared.queue.pop() {
                drop(job);
            }
            let local: Vec<Job> = self.core.local.borrow_mut().drain(..).collect();
            drop(local);
        }
        // From here on, jobs and alarm requests for this host are dropped where they are made.
        self.core.shared.queue.close();
        while let Ok(job) = self.core.shared.queue.pop() {
            drop(job);
        }
        self.core.shared.alarm_requests.close();
        *self.core.timers.borrow_mut() = Timers::new();
        while self.core.shared.alarm_requests.pop().is_ok() {}
        self.core.alarms.borrow_mut().clear();
        self.core.alarm_pending.set(false);
        self.core.carried.borrow_mut().clear();
    }
}

/// Keeps a host current on this thread (see `Host::enter`); nests.
pub(crate) struct EnterGuard {
    _host: crate::cx::SlotGuard<*const Core>,
    #[cfg(feature = "std")]
    _reactor: Option<crate::reactor::EnterGuard>,
}

struct MainWaker {
    woken: AtomicBool,
    shared: Arc<Shared>,
}

impl alloc::task::Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.shared.notify_if_sleeping();
    }
}

/// A part of what a host carries (the guest run of [`Host::run_guest`]): attached with
/// `Host::attach`, found again by its type.
pub(crate) trait Carried: core::any::Any {
    /// Whether it has work left: [`Host::run`] goes on while it does.
    fn busy(&self) -> bool;
    /// Called once when the host drops, before any host task is dropped.
    fn shutdown(&self);
}

/// A wake at a deadline, settable from any thread: the host wakes the waker on its thread once
/// its clock reaches the deadline. A later [`set`](Alarm::set) replaces the earlier one;
/// [`clear`](Alarm::clear) cancels it. A pending alarm is a deadline of the host (it bounds a
/// park and lets a virtual clock jump to it) but not work: it does not keep [`Host::run`] going.
#[derive(Clone)]
pub(crate) struct Alarm {
    shared: Arc<Shared>,
    id: usize,
}

impl Alarm {
    /// Wakes `waker` on the host thread once the host clock reads `deadline`.
    pub(crate) fn set(&self, deadline: Instant, waker: Waker) {
        let _ = self.shared.alarm_requests.push((self.id, Some((deadline, waker))));
        self.shared.notify_if_sleeping();
    }

    /// Cancels the pending wake, if any.
    pub(crate) fn clear(&self) {
        let _ = self.shared.alarm_requests.push((self.id, None));
    }
}

/// A handle to a host for code that runs inside its loop: it spawns there without looking up
/// the thread's current host. Holds the host weakly (spawning fails once it is gone).
#[derive(Clone)]
pub(crate) struct HostRef(Weak<Core>);

impl HostRef {
    /// Spawns `fut` on the host; `None` if the host is gone.
    pub(crate) fn spawn<F>(&self, fut: F) -> Option<JoinHandle<F::Output>>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.0.upgrade().map(|core| spawn_on(&core, fut))
    }

    /// Whether this host's loop is the one running on this thread.
    pub(crate) fn is_running_here(&self) -> bool {
        with_core(|core| core::ptr::eq(core, self.0.as_ptr())).unwrap_or(false)
    }
}

/// A `Send + Sync` handle to a host, for other threads: the only way to reach a host from
/// another thread (the host itself and its tasks stay on theirs). A call queued through it
/// wakes a parked loop; callbacks queued from one thread run in the order they were queued.
/// A callback queued to a host that is gone never runs.
///
/// ```
/// use infect::host::Host;
/// let host = Host::new()?;
/// let remote = host.remote();
/// let (tx, rx) = futures::channel::oneshot::channel();
/// let worker = std::thread::spawn(move || {
///     // Runs on the host thread, at the host's next turn.
///     remote.call_soon_threadsafe(move || { let _ = tx.send(std::thread::current().id()); });
/// });
/// let ran_on = host.block_on(rx).unwrap();
/// assert_eq!(ran_on, std::thread::current().id());
/// worker.join().unwrap();
/// # Ok::<(), infect::Error>(())
/// ```
#[derive(Clone)]
pub struct Remote {
    shared: Arc<Shared>,
}

impl core::fmt::Debug for Remote {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Remote").finish_non_exhaustive()
    }
}

impl Remote {
    /// Queues `f` to run on the host thread at its next turn; wakes a parked loop. Callable
    /// from any thread (asyncio's `call_soon_threadsafe`).
    pub fn call_soon_threadsafe(&self, f: impl FnOnce() + Send + 'static) {
        self.shared.push(Job::Call(Box::new(f)));
    }

    /// Wakes `waker` on the host thread at the next turn (after what is already queued); wakes
    /// a parked loop. Callable from any thread; allocates nothing.
    pub(crate) fn wake_soon(&self, waker: Waker) {
        self.shared.push(Job::Wake(waker));
    }
}

/// Identifies a `call_at` / `call_later` callback, to cancel it with [`Host::cancel_call`]
/// (example there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallHandle(TimerKey);

fn spawn_on<F>(core: &Rc<Core>, fut: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let id = core.next_id.get();
    core.next_id.set(id + 1);
    let ctl = Rc::new(TaskCtl {
        id,
        waits_at: Cell::new(None),
        requested: Cell::new(false),
        cancel: RefCell::new(None),
        core: Rc::downgrade(core),
    });
    let shared = core.shared.clone();
    let schedule = move |r: Runnable<u64>| shared.push(Job::Task(r));
    let wrapped = HostTask { fut, ctl: ctl.clone() };
    // SAFETY: `spawn_unchecked` lets the future be `!Send`. Its contract: the `Runnable` must be
    // run and dropped on this thread. The schedule function only pushes it onto the queue; the
    // queue is drained (run or dropped) only by this `Host` on its own thread, and `Host::drop`
    // closes every task before returning, so no `Runnable` is created afterwards. The future is
    // `'static` and the schedule function is `Send + Sync + 'static`.
    let (runnable, task) =
        unsafe { async_task::Builder::new().metadata(id).spawn_unchecked(move |_| wrapped, schedule) };
    crate::log::debug!("host.spawn", task = id);
    if let Some(t) = &core.trace {
        t.record(TraceEvent::Spawn(Side::Host, id));
    }
    if core.closed.get() {
        ctl.request_cancel("host shut down");
        drop(runnable);
    } else {
        core.tasks.borrow_mut().insert(id, TaskEntry { waker: runnable.waker(), ctl: ctl.clone() });
        runnable.schedule();
    }
    JoinHandle { task: Some(task.fallible()), ctl }
}

/// Wraps a host task's future: sets the current task while polling, enforces cancellation.
struct HostTask<F> {
    fut: F,
    ctl: Rc<TaskCtl>,
}

impl<F: Future> Future for HostTask<F> {
    type Output = core::result::Result<F::Output, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `fut` is structurally pinned (never moved; the Drop impl below does not move
        // it); `ctl` is not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above.
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        let cancel_before = this.ctl.cancelled();
        let Some(core) = this.ctl.core.upgrade() else {
            return Poll::Ready(Err(cancel_before.unwrap_or(Cancelled::new("host shut down"))));
        };
        let r = {
            // Restores the current task on every way out, unwinding included: a panicking task
            // must not stay "current" for the awaits that run after the panic was caught.
            let _current = CurrentTask::enter(&core, &this.ctl);
            crate::cx::take_parked_at();
            let r = fut.poll(cx);
            this.ctl.waits_at.set(crate::cx::take_parked_at());
            r
        };
        match r {
            Poll::Ready(v) => Poll::Ready(Ok(v)),
            // The task had its one cooperative poll after the cancellation: enforce it.
            Poll::Pending => match cancel_before {
                Some(c) => Poll::Ready(Err(c)),
                None => Poll::Pending,
            },
        }
    }
}

/// Makes a task current on its host while it lives; dropping it (also while unwinding) restores
/// the task that was current before.
struct CurrentTask<'a> {
    core: &'a Core,
    prev: *const TaskCtl,
}

impl<'a> CurrentTask<'a> {
    #[inline]
    fn enter(core: &'a Core, ctl: &Rc<TaskCtl>) -> CurrentTask<'a> {
        // `Rc::as_ptr`: a pointer that may reach the count (`cancel_current` takes one).
        let prev = core.current.replace(Rc::as_ptr(ctl));
        CurrentTask { core, prev }
    }
}

impl Drop for CurrentTask<'_> {
    #[inline]
    fn drop(&mut self) {
        self.core.current.set(self.prev);
    }
}

impl<F> Drop for HostTask<F> {
    fn drop(&mut self) {
        if let Some(core) = self.ctl.core.upgrade() {
            core.tasks.borrow_mut().remove(&self.ctl.id);
            crate::log::debug!("host.finish", task = self.ctl.id);
            if let Some(t) = &core.trace {
                t.record(TraceEvent::Exit(Side::Host, self.ctl.id));
            }
        }
    }
}

/// The handle to a host task: await it for `Ok(output)` or `Err(Cancelled)`, cancel it with a
/// reason, or detach it. Dropping the handle cancels the task (reason `"join handle
/// dropped"`); call [`detach`](JoinHandle::detach) to let it run on.
///
/// Cancellation is cooperative for one poll, then enforced: [`cancel`](JoinHandle::cancel)
/// wakes the task, its host-aware awaits ([`sleep`], [`yield_now`], [`check_cancelled`],
/// link operations, [`net`] socket I/O) return `Err(Cancelled{reason})` during that poll, and
/// a task still pending after it is dropped on the spot (the handle then gives
/// `Err(Cancelled)`). A task that returns during that poll gives its own output.
///
/// ```
/// use infect::{host::{self, Host}, time::VirtualClock};
/// use std::{cell::Cell, rc::Rc, time::Duration};
/// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
///
/// // Awaited: the output.
/// let a = host.spawn(async { 1 });
/// assert_eq!(a.id(), 1); // spawn order on this host, from 1
/// assert_eq!(host.block_on(a), Ok(1));
///
/// // Cancelled while it ignores the error: dropped after its one cooperative poll.
/// let b = host.spawn(async {
///     let _ = host::sleep(Duration::from_secs(5)).await; // Err(Cancelled), ignored
///     std::future::pending::<()>().await; // would wait forever
/// });
/// host.run_until_stalled();
/// b.cancel("stop");
/// assert!(b.is_cancel_requested());
/// assert_eq!(host.block_on(b).unwrap_err().reason, "stop");
///
/// // Detached: runs on without its handle.
/// let ran = Rc::new(Cell::new(false));
/// let r = ran.clone();
/// host.spawn(async move { r.set(true) }).detach();
///
/// // Dropped: cancelled before it ever ran.
/// let never = Rc::new(Cell::new(false));
/// let n = never.clone();
/// drop(host.spawn(async move {
///     if host::yield_now().await.is_ok() { n.set(true) }
/// }));
/// host.run();
/// assert!(ran.get());
/// assert!(!never.get());
/// # Ok::<(), infect::Error>(())
/// ```
#[must_use = "dropping a JoinHandle cancels its task; call .detach() to let it run"]
pub struct JoinHandle<T> {
    task: Option<async_task::FallibleTask<core::result::Result<T, Cancelled>, u64>>,
    ctl: Rc<TaskCtl>,
}

impl<T> core::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JoinHandle").field("id", &self.ctl.id).field("finished", &self.is_finished()).finish()
    }
}

impl<T> JoinHandle<T> {
    /// Requests cancellation: the task's host-aware awaits return `Err(Cancelled{reason})` on
    /// its next poll; if it is still pending after that poll, it is dropped. Idempotent (the
    /// first reason wins).
    pub fn cancel(&self, reason: &str) {
        self.ctl.request_cancel(reason);
    }

    /// Requests cancellation with a full [`Cancelled`] (a link teardown carries its cause).
    pub(crate) fn cancel_with(&self, c: Cancelled) {
        self.ctl.request_cancel_with(c);
    }

    /// Whether cancellation was requested.
    pub fn is_cancel_requested(&self) -> bool {
        self.ctl.requested.get()
    }

    /// Whether the task has finished (returned or been dropped).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// The task's number (its order of spawning on this host, from 1).
    pub fn id(&self) -> u64 {
        self.ctl.id
    }

    /// Lets the task run on without a handle.
    pub fn detach(mut self) {
        if let Some(t) = self.task.take() {
            t.detach();
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            if !t.is_finished() {
                self.ctl.request_cancel("join handle dropped");
            }
            t.detach();
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = core::result::Result<T, Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let ctl = self.ctl.clone();
        let Some(task) = self.task.as_mut() else {
            return Poll::Ready(Err(Cancelled::new("polled after completion")));
        };
        match Pin::new(task).poll(cx) {
            Poll::Ready(r) => {
                self.task = None;
                Poll::Ready(r.unwrap_or_else(|| Err(ctl.cancelled().unwrap_or(Cancelled::new("host shut down")))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The cancellation check of host-aware awaits: `Err(Cancelled{reason})` if the host task being
/// polled has been cancelled. `Ok` outside a host task. Call it in a loop that does not
/// otherwise await anything host-aware, to make the loop cancellable; the check is sticky
/// (once cancelled, every later check fails too).
///
/// ```
/// use infect::host::{self, Host};
/// let host = Host::new()?;
/// let out = host.block_on(host.spawn(async {
///     assert!(host::check_cancelled().is_ok());
///     host::cancel_current("enough");
///     host::check_cancelled().unwrap_err().reason
/// }));
/// assert_eq!(out, Ok("enough".to_owned()));
/// assert!(host::check_cancelled().is_ok()); // outside a host task
/// # Ok::<(), infect::Error>(())
/// ```
#[inline]
pub fn check_cancelled() -> core::result::Result<(), Cancelled> {
    let ptr = CURRENT.get();
    // SAFETY: as in `with_core`: a non-null CURRENT is this thread's running host.
    match unsafe { ptr.as_ref() }.and_then(Core::current_ctl) {
        Some(ctl) if ctl.requested.get() => requested_cancel(ctl),
        _ => Ok(()),
    }
}

/// Whether the cancellation of the host task being polled was requested (then
/// [`check_cancelled`] returns it); `false` outside a host task.
#[inline]
pub(crate) fn cancel_requested() -> bool {
    let ptr = CURRENT.get();
    // SAFETY: as in `with_core`: a non-null CURRENT is this thread's running host.
    unsafe { ptr.as_ref() }.and_then(Core::current_ctl).is_some_and(|c| c.requested.get())
}

/// [`check_cancelled`] once the task's cancellation was requested (the rare path, out of line).
#[cold]
#[inline(never)]
fn requested_cancel(ctl: &TaskCtl) -> core::result::Result<(), Cancelled> {
    ctl.cancelled().map_or(Ok(()), Err)
}

/// Runs `f` with the trace of the host running on this thread, if it has one.
pub(crate) fn with_trace(f: impl FnOnce(&Trace)) {
    with_core(|core| {
        if let Some(t) = &core.trace {
            f(t);
        }
    });
}

/// Cancels host task `id` of the host running on this thread (a third party's cancel).
pub(crate) fn cancel_task(id: u64, reason: &str) {
    let w = with_core(|core| core.tasks.borrow().get(&id).map(|e| e.ctl.clone())).flatten();
    if let Some(ctl) = w {
        ctl.request_cancel(reason);
    }
}

/// The number of the host task being polled on this thread, if any (the fuzz targets cancel a
/// `run_task` host by it).
#[cfg(any(test, fuzzing))]
pub(crate) fn current_task_id() -> Option<u64> {
    with_core(|core| core.current_ctl().map(|c| c.id)).flatten()
}

/// Spawns a host task on the host running on this thread (asyncio's `create_task`), so code
/// inside the loop needs no `&Host`. `None` outside a host loop.
///
/// ```
/// use infect::host::{self, Host};
/// assert!(host::spawn(async {}).is_none()); // no loop runs here
/// let host = Host::new()?;
/// let out = host.block_on(async {
///     let h = host::spawn(async { 6 * 7 }).expect("inside the loop");
///     h.await
/// });
/// assert_eq!(out, Ok(42));
/// # Ok::<(), infect::Error>(())
/// ```
pub fn spawn<F>(fut: F) -> Option<JoinHandle<F::Output>>
where
    F: Future + 'static,
    F::Output: 'static,
{
    spawn_current(fut)
}

/// Cancels the host task being polled (asyncio's `current_task().cancel()`): from its next
/// host-aware await on, it sees `Err(Cancelled{reason})`. Nothing outside a host task
/// (example at [`check_cancelled`]).
pub fn cancel_current(reason: &str) {
    let ctl = with_core(|core| {
        let c = core.current.get();
        // SAFETY: a non-null `current` is `Rc::as_ptr` of the `Rc<TaskCtl>` the polled
        // `HostTask` holds (see `Core::current`), so it may reach the count; a new strong count
        // keeps it for the cancel below. (The raw pointer, not a `&TaskCtl` made from it: a
        // reference's provenance does not cover the count.)
        (!c.is_null()).then(|| unsafe {
            Rc::increment_strong_count(c);
            Rc::from_raw(c)
        })
    })
    .flatten();
    if let Some(ctl) = ctl {
        ctl.request_cancel(reason);
    }
}

/// Sleeps for `d` on the clock of the host that polls it (host-aware: `Err(Cancelled)` once the
/// task is cancelled).
///
/// The deadline is fixed at the **first poll** (`now + d` on that host's clock), not when `sleep`
/// is called: a `Sleep` made outside a loop, or long before it is awaited, still sleeps `d`.
/// Polled outside a host loop it returns `Err(Cancelled)` at once. Sleeps with the same
/// deadline wake in the order they were first polled.
///
/// ```
/// use infect::{host::{self, Host}, time::VirtualClock};
/// use std::{rc::Rc, time::Duration};
/// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
/// let later = host::sleep(Duration::from_secs(5)); // made now, armed at its first poll
/// host.block_on(async {
///     host::sleep(Duration::from_secs(1)).await?;
///     later.await
/// })?;
/// assert_eq!(host.now().as_nanos(), 6_000_000_000);
/// # Ok::<(), infect::Error>(())
/// ```
#[track_caller]
pub fn sleep(d: Duration) -> Sleep {
    Sleep(SleepTimer::after(d), core::panic::Location::caller())
}

/// Sleeps until the clock of the host that polls it reads `deadline` (host-aware); a deadline
/// that has passed completes at the first poll.
///
/// ```
/// use infect::{host::{self, Host}, time::{Instant, VirtualClock}};
/// use std::{rc::Rc, time::Duration};
/// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
/// let at = Instant::ZERO + Duration::from_millis(1500);
/// host.block_on(host::sleep_until(at))?;
/// assert_eq!(host.now(), at);
/// host.block_on(host::sleep_until(Instant::ZERO))?; // in the past: at once
/// assert_eq!(host.now(), at);
/// # Ok::<(), infect::Error>(())
/// ```
#[track_caller]
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep(SleepTimer::at(deadline), core::panic::Location::caller())
}

/// Yields to the other host jobs once (asyncio's `sleep(0)`), host-aware: the task is queued
/// behind what is queued now, so two tasks that yield in turn interleave.
///
/// ```
/// use infect::host::{self, Host};
/// use std::{cell::RefCell, rc::Rc};
/// let host = Host::new()?;
/// let log = Rc::new(RefCell::new(Vec::new()));
/// for name in ["a", "b"] {
///     let log = log.clone();
///     host.spawn(async move {
///         for i in 0..2 {
///             log.borrow_mut().push(format!("{name}{i}"));
///             host::yield_now().await?;
///         }
///         Ok::<_, infect::Cancelled>(())
///     })
///     .detach();
/// }
/// host.run();
/// assert_eq!(*log.borrow(), ["a0", "b0", "a1", "b1"]);
/// # Ok::<(), infect::Error>(())
/// ```
pub async fn yield_now() -> core::result::Result<(), Cancelled> {
    crate::timers::yield_once(check_cancelled).await
}

/// The future of [`sleep`] and [`sleep_until`] (examples there): the crate's one timer slot
/// behind the host's cancellation check. Each poll that returns `Pending` registers the waker
/// of that poll: whichever task polled it last is woken. Dropping it disarms its timer, so a
/// dropped sleep keeps no loop running.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep(SleepTimer, &'static core::panic::Location<'static>);

impl Future for Sleep {
    type Output = core::result::Result<(), Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Err(c) = check_cancelled() {
            self.disarm();
            return Poll::Ready(Err(c));
        }
        let _at = crate::cx::enter_await(self.1);
        match with_core(|core| self.0.poll(core, cx.waker(), false)) {
            None => Poll::Ready(Err(Cancelled::new("host::sleep polled outside a host loop"))),
            Some(Poll::Ready(())) => Poll::Ready(Ok(())),
            Some(Poll::Pending) => Poll::Pending,
        }
    }
}

impl Sleep {
    fn disarm(&mut self) {
        if let Some(k) = self.0.take_key() {
            with_core(|c| c.timers.borrow_mut().disarm(k));
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// A sleep's slot on the host (see [`SleepTimer`]).
impl TimerLoop for Core {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn register(&self, slot: &mut Option<TimerKey>, deadline: Instant, waker: &Waker) {
        self.timers.borrow_mut().register(slot, deadline, waker);
    }

    fn disarm(&self, key: TimerKey) {
        self.timers.borrow_mut().disarm(key);
    }
}
