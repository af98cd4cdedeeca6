//! The guest: a structured-concurrency runtime in trio's image, host-agnostic by construction
//! (this module never imports [`host`](crate::host)).
//!
//! - Tasks live in nurseries ([`open_nursery`], [`Nursery::start_soon`], [`Nursery::start`]);
//!   no task outlives its nursery, the first error cancels the siblings, several errors come
//!   out as one [`ErrorGroup`](crate::ErrorGroup). A nursery is its own cancel scope: its own
//!   [`Nursery::cancel`] (or deadline) is not a failure, it returns `Ok(None)` as
//!   [`CancelScope::run`] does.
//! - Cancellation is trio's: a cancelled [`CancelScope`] makes every cancellation-aware await
//!   inside it ([`sleep`], [`checkpoint`], [`Event::wait`], channel operations, `to_host` link
//!   operations) return [`Error::Cancelled`], so code unwinds with `?` and async clean-up still
//!   runs; the scope catches the error on its way out. Dropping a future is the last resort,
//!   taken only for futures that are not infect's (see
//!   [below](self#cancellation-and-foreign-futures)).
//! - One scheduler, two ways to run it: [`run`] (standalone, parking on the reactor) and
//!   [`start_guest_run`] (riding any host through the [`Hooks`] trait, trio's guest mode;
//!   [`Host::run_guest`](crate::host::Host::run_guest) is that on our own host, with
//!   [`to_host`](crate::to_host) links).
//!
//! # Entry points
//! - [`run`]: the guest alone on this thread, on the monotonic clock; [`run_with`]
//!   for another clock (a [`VirtualClock`](crate::time::VirtualClock) in tests), a trace or
//!   a seed.
//! - [`Host::run_guest`](crate::host::Host::run_guest): the guest riding our host, host tasks
//!   beside it (infected mode).
//! - [`start_guest_run`] / [`start_guest_run_with`]: the guest riding a loop that is
//!   not ours; the [`Hooks`] docs have a complete host in thirty lines.
//!
//! The free functions ([`sleep`], [`checkpoint`], [`open_nursery`], ...) find the run that
//! polls them through the thread's current-run slot, the way trio finds its run. Outside a
//! guest task, [`sleep`] and [`open_nursery`] fail with [`Error::OutsideGuest`], the
//! cancellation checks pass, and events and channels are plain futures.
//!
//! # Scheduler
//! - **FIFO.** Tasks run in the order they were woken, one batch per tick, unless a seeded
//!   policy ([`GuestConfig::seed`]) permutes each batch (reproducibly: same seed, same
//!   order). A tick polls the batch that was queued when it began; a task woken during the
//!   tick runs in the next one, and a task woken twice before its poll is polled once.
//! - **A tick never re-enters itself**, and a hook only *schedules* a tick: the host runs it
//!   later, on the thread that started the run. One tick fires the scope deadlines and sleeps
//!   that are due (same deadline: arming order), polls one batch, and hands the host what it
//!   needs next (another tick soon, or a wake at the next deadline).
//! - **Wakers are `Send`.** A guest task may be woken from any thread (the wake asks the host
//!   for a tick through [`Hooks::run_sync_soon_threadsafe`]); its future is not `Send` and is
//!   only ever polled or dropped on the run's thread.
//! - **The end.** When the main task ends, every other task has ended too (its nurseries saw
//!   to that), and `done` (or [`run`]'s return) gets its outcome exactly once. Dropping the
//!   [`GuestRun`] earlier abandons the run: every task is dropped and `done` gets
//!   [`Error::GuestRunAbandoned`].
//! - **Time** is the run's [`Clock`]: every sleep's deadline is fixed at its first poll
//!   (`now + d`); with a virtual clock that autojumps, time moves only when every task is
//!   blocked.
//!
//! # Cancel scopes
//! - Scopes form a tree, fixed when a scope is entered: its parent is the scope that was
//!   current in the task that entered it; a nursery's children start in the nursery's scope.
//!   A scope is entered once ([`Error::ScopeReused`] otherwise).
//! - A scope is *effectively cancelled* when it, or an enclosing scope reached without crossing
//!   a [shield](CancelScope::shielded), was cancelled ([`CancelScope::cancel`], or its
//!   deadline passed). Every cancellation-aware await checks this **first** and returns
//!   [`Error::Cancelled`] while it holds, even if it could complete at once; the check is
//!   sticky, so clean-up that awaits outside a shield sees it again.
//! - A scope **catches** an [`Error::Cancelled`] that leaves its body iff it was itself
//!   cancelled: the innermost cancelled scope catches ([`CancelScope::run`] returns
//!   `Ok(None)`), code above it goes on normally; a cancellation that belongs to an enclosing
//!   scope passes through as `Err(Cancelled)`.
//! - A deadline that has already passed when the scope is entered (or set) cancels it at
//!   once: even the body's first await sees it. Moving a deadline takes effect at once, also
//!   from host code on the same thread.
//! - Whatever can make a scope effectively cancelled (cancel, deadline, unshield) wakes every
//!   task blocked inside it, at infect's awaits or in foreign futures: no cancelled task stays
//!   asleep.
//!
//! # Nurseries
//! A nursery's block and its children run in the nursery's own scope; [`open_nursery`]
//! returns only once the block *and* every child have finished. The first error (from the
//! block or a child) cancels the scope, so the siblings unwind with `Cancelled`, which the
//! nursery catches as consequences; independent errors come out together as one
//! [`ErrorGroup`](crate::ErrorGroup), in the order they happened. Children are `'static`, so
//! that dropping a nursery future (the last resort) never leaves a child with a dangling
//! borrow. The result has the shape of [`CancelScope::run`]: the nursery's own cancellation
//! is `Ok(None)`, not a failure.
//!
//! # Events and channels
//! [`Event`] and the bounded [`channel`] are single-threaded (`Rc`) and usable from host code
//! on the same thread too: a host task may set a guest event or send into a guest channel
//! without waiting, and the woken guest task runs at the guest's next tick. Their awaits are
//! cancellation-aware when polled by a guest task (checked first, as every guest await) and
//! plain elsewhere; the forms that do not wait never check. A channel buffers at most its
//! capacity, hands values out in the order they went in, and ends once every sender is gone
//! and the buffer is drained; once the receiver is gone a send fails with [`Error::Closed`].
//!
//! # Cancellation and foreign futures
//! A scope's cancellation (its `cancel()` or its deadline) reaches every await inside it, also
//! an await on a future that is not infect's (a `futures` combinator's, another library's, a
//! hand-written one that never heard of scopes). The rule, in order:
//!
//! 1. **Checkpoints first (trio).** infect's own awaits check for cancellation before anything
//!    else and return [`Error::Cancelled`] while the scope is cancelled. Code unwinds with `?`;
//!    async clean-up in a [`CancelScope::shielded`] scope still runs, because awaits inside a
//!    shield do not see the outer cancellation.
//! 2. **Foreign waits are dropped at the scope.** Every scope body, nursery block and nursery
//!    child is watched: when, after the cancellation, a poll of it ends `Pending` without having
//!    waited at any of infect's awaits, it is blocked in foreign futures only. The innermost
//!    cancelled scope then drops it on the spot and takes `Err(Cancelled)` in its place, as if
//!    the foreign future had returned it, and catches it as usual: `move_on_after(10 ms,
//!    futures::future::pending())` returns `Ok(None)` at exactly 10 ms. The scope's deadline (or
//!    `cancel()`) wakes the task itself, so a foreign future that never wakes it does not delay
//!    this.
//! 3. **What is never dropped.** A body that waits at one of infect's awaits (in a shield; or an
//!    uncancellable wait: a nursery waiting for its children, a link waiting for its host task,
//!    an actor's teardown), and anything inside a shield, foreign futures included. infect's
//!    awaits are the guest's (sleeps, checkpoints, events, channels, nurseries), `to_host` link
//!    operations, the actor layer's, and the reactor's readiness futures.
//! 4. **Closer control.** [`cancellable`] makes one foreign await a cancellation point of its
//!    own (checked first; the future is dropped when the scope is cancelled), so the code after
//!    it can run its own async clean-up; [`lowlevel`] has trio's `checkpoint_if_cancelled` and a
//!    `poll_cancelled` for hand-written futures.
//!
//! Dropping is the last resort because a dropped future gets no async clean-up: prefer infect's
//! awaits, or wrap the foreign one in [`cancellable`] and clean up after it.
//!
//! # Errors delivered to a task
//! The crate can deliver one error to one guest task (crate-internal; the root actor's
//! interrupt is its user, trio's `KeyboardInterrupt` raised in the main task): the error waits
//! in the task's slot and the task is woken. Then, in order:
//!
//! 1. **The next check takes it, once.** The cancellation check that every infect await makes
//!    first returns it in place of anything else, whatever the scope (a shield does not hold
//!    it back, a cancelled scope does not turn it into `Cancelled`): the await returns that
//!    error, and the task's next awaits work normally. An await that only asks whether its
//!    scope is cancelled leaves it for the next one.
//! 2. **A nursery wait takes it as the block's error.** A task waiting in [`open_nursery`] for
//!    its children (an uncancellable wait) takes it as if its block had failed with it: the
//!    nursery is cancelled and returns it once the children have finished, their
//!    cancellations being its consequences (other errors are grouped with it, as usual). A task
//!    waiting in [`Nursery::start`] cancels the starting child and `start` returns it.
//! 3. **Foreign futures: the fallback.** If the task's next poll neither takes it nor waits at
//!    any of infect's awaits, the task is blocked in foreign futures only, where no check will
//!    come: the delivery is dropped and the scope named with it is cancelled instead (the
//!    foreign-future rule above then applies).
//! 4. **One at a time.** A delivery while an earlier one waits changes nothing; after it was
//!    taken, a new one is delivered again. An ended task gets nothing.

mod nursery;
mod sched;
mod scope;
mod sync;

use alloc::boxed::Box;
use alloc::rc::Rc;
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

#[cfg(feature = "std")]
pub(crate) use nursery::open_nursery_at;
pub use nursery::{Nursery, TaskStatus, open_nursery};
pub use sched::{GuestRun, GuestTick, Hooks};
pub use scope::{CancelScope, fail_after, fail_at, move_on_after, move_on_at};
pub use sync::{Empty, Event, Receiver, SendNowaitError, Sender, channel};

#[cfg(feature = "std")]
pub(crate) use sched::{TaskRef, take_delivered};
pub(crate) use sched::{current_carrier, with_local};
pub(crate) use scope::check_cancel;
#[cfg(feature = "std")]
pub(crate) use scope::check_cancel_only;

/// A guest task as the debug dump shows it (see [`snapshot`]).
#[cfg_attr(not(feature = "std"), allow(dead_code))]
pub(crate) struct TaskState {
    /// Its spawn number in the run, from 0 (the main task).
    pub(crate) number: u64,
    pub(crate) main: bool,
    /// It is the task being polled (the one taking the snapshot).
    pub(crate) running: bool,
    /// The id of the scope it was started in (its nursery's; 0: the run's root scope).
    pub(crate) scope: u64,
    /// Where it last parked: the caller of the infect await it waits in, if known.
    pub(crate) waits_at: Option<&'static core::panic::Location<'static>>,
    /// An error was delivered to it and no await has taken it yet.
    pub(crate) error_waiting: bool,
}

/// A live cancel scope as the debug dump shows it.
#[cfg_attr(not(feature = "std"), allow(dead_code))]
pub(crate) struct ScopeState {
    /// From 1, in entry order; its parent's id (0: the run's root scope).
    pub(crate) id: u64,
    pub(crate) parent: u64,
    /// The spawn number of the task that entered it.
    pub(crate) owner: u64,
    pub(crate) deadline: Instant,
    pub(crate) shield: bool,
    pub(crate) cancel_called: bool,
    pub(crate) by_deadline: bool,
    pub(crate) effectively_cancelled: bool,
    /// The scope of a nursery opened there.
    pub(crate) nursery_at: Option<&'static core::panic::Location<'static>>,
}

/// A guest run's state for the debug dump.
#[cfg_attr(not(feature = "std"), allow(dead_code))]
pub(crate) struct GuestState {
    pub(crate) now: Instant,
    /// In spawn order.
    pub(crate) tasks: alloc::vec::Vec<TaskState>,
    /// The scopes entered and not exited yet, in entry order.
    pub(crate) scopes: alloc::vec::Vec<ScopeState>,
}

/// The state of the guest run being ticked on this thread; `None` outside a guest task.
#[cfg_attr(not(feature = "std"), allow(dead_code))]
pub(crate) fn snapshot() -> Option<GuestState> {
    with_local(|l| l.snapshot())
}

use crate::time::{Clock, Instant};
use crate::timers::SleepTimer;
use crate::trace::{Policy, Trace};
use crate::{Error, Result};

/// How to run a guest, builder-style: its clock, and the optional determinism tools (a
/// [`Trace`], a seed; none by default). Pass it to [`run_with`] or [`start_guest_run_with`].
///
/// ```
/// use infect::{guest::{self, GuestConfig}, time::VirtualClock, trace::{Side, Trace, TraceEvent}};
/// use std::{rc::Rc, time::Duration};
///
/// let trace = Trace::new();
/// let config = GuestConfig::new(Rc::new(VirtualClock::new())).trace(trace.clone()).seed(1);
/// let out = guest::run_with(config, async {
///     guest::sleep(Duration::from_secs(90)).await?; // virtual: no real wait
///     Ok(guest::current_time().as_nanos())
/// });
/// assert_eq!(out, Ok(90_000_000_000));
/// let events = trace.take();
/// assert_eq!(events.first(), Some(&TraceEvent::Spawn(Side::Guest, 0))); // the main task
/// assert_eq!(events.last(), Some(&TraceEvent::Exit(Side::Guest, 0)));
/// ```
pub struct GuestConfig {
    clock: Rc<dyn Clock>,
    trace: Option<Trace>,
    seed: Option<u64>,
}

impl core::fmt::Debug for GuestConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GuestConfig")
            .field("now", &self.clock.now())
            .field("trace", &self.trace.is_some())
            .field("seed", &self.seed)
            .finish()
    }
}

impl GuestConfig {
    /// A configuration reading time from `clock`.
    pub fn new(clock: Rc<dyn Clock>) -> GuestConfig {
        GuestConfig { clock, trace: None, seed: None }
    }

    /// Records the guest's events into `trace`.
    pub fn trace(mut self, trace: Trace) -> GuestConfig {
        self.trace = Some(trace);
        self
    }

    /// Permutes each batch of runnable tasks with a PRNG seeded with `seed`.
    pub fn seed(mut self, seed: u64) -> GuestConfig {
        self.seed = Some(seed);
        self
    }
}

/// [`start_guest_run`] with `config` (its clock, trace and seed).
pub fn start_guest_run_with<T: 'static>(
    config: GuestConfig,
    main: impl Future<Output = Result<T>> + 'static,
    hooks: impl Hooks,
    done: impl FnOnce(Result<T>) + 'static,
) -> Result<GuestRun> {
    let setup = sched::Setup { clock: config.clock, trace: config.trace, policy: config.seed.map(Policy::seeded) };
    Ok(sched::start(setup, main, Box::new(hooks), done))
}

/// [`run`] with `config` (its clock, trace and seed).
#[cfg(feature = "std")]
pub fn run_with<T: 'static>(config: GuestConfig, main: impl Future<Output = Result<T>> + 'static) -> Result<T> {
    standalone::run(config, main)
}

#[cfg(feature = "std")]
impl Default for GuestConfig {
    fn default() -> Self {
        GuestConfig::new(Rc::new(crate::time::MonotonicClock::new()))
    }
}

/// Starts `main` as a guest run riding a host (trio's `start_guest_run`), on the monotonic
/// clock. The host keeps the returned [`GuestRun`] until `done` has been called, runs every
/// [`GuestTick`] the hooks hand it on this thread, and honours `wake_at`. `done` is called
/// exactly once, with what [`run`] would have returned. Errors in setting up come back from this
/// call; everything else goes to `done`.
///
/// A complete host is in the [`Hooks`] docs; `examples/guest_on_callback_loop.rs` is one that
/// is a plain callback loop (a GUI main loop's shape). On our own host, use
/// [`Host::run_guest`](crate::host::Host::run_guest).
#[cfg(feature = "std")]
pub fn start_guest_run<T: 'static>(
    main: impl Future<Output = Result<T>> + 'static,
    hooks: impl Hooks,
    done: impl FnOnce(Result<T>) + 'static,
) -> Result<GuestRun> {
    start_guest_run_with(GuestConfig::default(), main, hooks, done)
}

/// Runs `main` to completion on this thread, parking on the reactor when idle, on the
/// monotonic clock, and returns its outcome. The entry point for a structured-concurrency
/// program that needs no host tasks (with them, use
/// [`Host::run_guest`](crate::host::Host::run_guest)); [`run_with`] takes another
/// clock, a trace or a seed. Leaves nothing behind: every task, timer and fd of the run is
/// gone when it returns, on every way out.
///
/// ```
/// use infect::guest;
/// assert_eq!(guest::run(async { Ok(6 * 7) }), Ok(42));
/// ```
#[cfg(feature = "std")]
pub fn run<T: 'static>(main: impl Future<Output = Result<T>> + 'static) -> Result<T> {
    run_with(GuestConfig::default(), main)
}

/// The guest's current time (trio's `current_time`), on the run's clock; [`Instant::ZERO`]
/// outside a guest task.
///
/// ```
/// use infect::{guest::{self, GuestConfig}, time::{Instant, VirtualClock}};
/// use std::{rc::Rc, time::Duration};
/// assert_eq!(guest::current_time(), Instant::ZERO); // no guest task here
/// let t = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async {
///     guest::sleep(Duration::from_millis(20)).await?;
///     Ok(guest::current_time())
/// });
/// assert_eq!(t, Ok(Instant::ZERO + Duration::from_millis(20)));
/// ```
pub fn current_time() -> Instant {
    with_local(|l| l.now()).unwrap_or(Instant::ZERO)
}

/// Sleeps for `d` (cancellation-aware); the deadline is `now + d` at the first poll.
///
/// Every sleep is a checkpoint, as in trio: `sleep(Duration::ZERO)` (or a deadline that has
/// already passed) checks for cancellation, yields to the other tasks once, and checks again
/// ([`checkpoint`]). A sleep polled by another task than before wakes that task (the waker of the
/// latest poll is the one registered). Sleeps with the same deadline wake in the order they
/// were first polled.
///
/// ```
/// use infect::{Error, guest::{self, CancelScope, GuestConfig}, time::VirtualClock};
/// use std::{rc::Rc, time::Duration};
/// let r = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async {
///     guest::sleep(Duration::from_secs(2)).await?;
///     let scope = CancelScope::new();
///     scope.cancel();
///     // In a cancelled scope even a zero sleep is a cancellation point.
///     let inside = scope.run(async { guest::sleep(Duration::ZERO).await }).await;
///     assert_eq!(inside, Ok(None)); // the scope caught its own cancellation
///     Ok(guest::current_time().as_nanos())
/// });
/// assert_eq!(r, Ok(2_000_000_000));
/// # let _ = Error::Cancelled;
/// ```
#[track_caller]
pub fn sleep(d: Duration) -> impl Future<Output = Result<()>> {
    crate::cx::at(async move { Sleep(SleepTimer::at(current_time() + d)).await })
}

/// Sleeps until the guest clock reads `deadline` (cancellation-aware; a checkpoint, see
/// [`sleep`]).
///
/// ```
/// use infect::{guest::{self, GuestConfig}, time::{Instant, VirtualClock}};
/// use std::{rc::Rc, time::Duration};
/// let at = Instant::ZERO + Duration::from_secs(7);
/// let r = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async move {
///     guest::sleep_until(at).await?;
///     Ok(guest::current_time())
/// });
/// assert_eq!(r, Ok(at));
/// ```
#[track_caller]
pub fn sleep_until(deadline: Instant) -> impl Future<Output = Result<()>> {
    crate::cx::at(Sleep(SleepTimer::at(deadline)))
}

/// Sleeps until cancelled (trio's `sleep_forever`); always returns `Err(Cancelled)` (so `?`
/// unwinds).
///
/// ```
/// use infect::{guest::{self, GuestConfig}, time::VirtualClock};
/// use std::{rc::Rc, time::Duration};
/// let r = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async {
///     let out = guest::move_on_after(Duration::from_secs(3), guest::sleep_forever()).await?;
///     Ok((out, guest::current_time().as_nanos()))
/// });
/// assert_eq!(r, Ok((None, 3_000_000_000)));
/// ```
#[track_caller]
pub fn sleep_forever() -> impl Future<Output = Result<()>> {
    crate::cx::at(async move {
        Sleep(SleepTimer::at(Instant::NEVER)).await?;
        Err(Error::Cancelled)
    })
}

/// The guest's sleep: the one timer slot ([`SleepTimer`]) behind the guest's cancellation check.
struct Sleep(SleepTimer);

impl Future for Sleep {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Err(e) = check_cancel() {
            self.disarm();
            return Poll::Ready(Err(e));
        }
        match with_local(|local| self.0.poll(&**local, cx.waker(), true)) {
            None => Poll::Ready(Err(Error::OutsideGuest)),
            Some(Poll::Ready(())) => Poll::Ready(Ok(())),
            Some(Poll::Pending) => Poll::Pending,
        }
    }
}

impl Sleep {
    fn disarm(&mut self) {
        if let Some(k) = self.0.take_key() {
            with_local(|l| l.disarm(k));
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// A cancellation point that also yields to the other tasks (trio's `checkpoint`).
///
/// It checks for cancellation before *and after* the yield: a deadline that fires, or a
/// `cancel()` by another task, while this task yields is seen by this checkpoint (trio does the
/// schedule point first "so that the cancel point has the most up-to-date info").
///
/// ```
/// use infect::{Error, guest};
/// use std::{cell::RefCell, rc::Rc};
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let l = log.clone();
/// let r = guest::run(async move {
///     guest::open_nursery(async |n| {
///         for name in ["a", "b"] {
///             let log = l.clone();
///             n.start_soon(async move {
///                 for i in 0..2 {
///                     log.borrow_mut().push(format!("{name}{i}"));
///                     guest::checkpoint().await?; // lets the other task run
///                 }
///                 Ok(())
///             })?;
///         }
///         Ok(())
///     })
///     .await?;
///     // A nursery cancelled by its own block: the child's checkpoint returns Cancelled.
///     guest::open_nursery(async |n| {
///         n.start_soon(async { loop { guest::checkpoint().await? } })?;
///         n.cancel();
///         Ok(())
///     })
///     .await
/// });
/// assert_eq!(r, Ok(Some(())));
/// assert_eq!(*log.borrow(), ["a0", "b0", "a1", "b1"]);
/// # let _ = Error::Cancelled;
/// ```
pub async fn checkpoint() -> Result<()> {
    crate::timers::yield_once(check_cancel).await
}

/// Awaits a foreign future (one that is not infect's) as a cancellation point: `Ok(output)` if it
/// finishes first, `Err(Cancelled)` as soon as the current scope is cancelled, and then the
/// future is dropped. Cancellation is checked first on every poll (trio's
/// `checkpoint_if_cancelled`), so a cancelled scope wins over a future that is ready too; and the
/// scope's cancellation wakes the task, whether or not the foreign future ever does.
///
/// ```
/// use infect::guest::{self, CancelScope};
/// use core::time::Duration;
/// let r = guest::run(async {
///     guest::move_on_after(Duration::from_millis(5), async {
///         let r = guest::cancellable(futures::future::pending::<()>()).await;
///         assert!(r.is_err()); // the deadline: the code after the await still runs
///         CancelScope::shielded().run(guest::sleep(Duration::from_millis(1))).await?;
///         r
///     })
///     .await
/// });
/// assert_eq!(r, Ok(None));
/// ```
#[track_caller]
pub fn cancellable<F: Future>(fut: F) -> impl Future<Output = Result<F::Output>> {
    crate::cx::at(async move {
        check_cancel()?;
        let mut fut = core::pin::pin!(fut);
        poll_fn(|cx| {
            check_cancel()?;
            let r = fut.as_mut().poll(cx).map(Ok);
            if r.is_pending() {
                // This await delivers the cancellation itself (the check above noted the scope, so
                // its cancellation wakes the task): enclosing scopes must not drop it.
                crate::cx::note_park();
            }
            r
        })
        .await
    })
}

/// Building blocks for futures that are not infect's, after `trio.lowlevel`.
pub mod lowlevel {
    use core::task::{Context, Poll};

    use super::check_cancel;
    use crate::{Error, Result};

    /// trio's `checkpoint_if_cancelled`: `Err(Cancelled)` if the current scope is (effectively)
    /// cancelled, `Ok` at once otherwise, without yielding. Outside a guest task: `Ok`. An error
    /// delivered to the task (see [the rule](super#errors-delivered-to-a-task)) comes first.
    ///
    /// ```
    /// use infect::{Error, guest::{self, CancelScope, lowlevel}};
    /// let r = guest::run(async {
    ///     assert_eq!(lowlevel::checkpoint_if_cancelled().await, Ok(()));
    ///     let scope = CancelScope::new();
    ///     scope.cancel();
    ///     scope
    ///         .run(async {
    ///             assert_eq!(lowlevel::checkpoint_if_cancelled().await, Err(Error::Cancelled));
    ///             Err::<(), _>(Error::Cancelled)
    ///         })
    ///         .await
    /// });
    /// assert_eq!(r, Ok(None));
    /// ```
    pub async fn checkpoint_if_cancelled() -> Result<()> {
        check_cancel()
    }

    /// For a hand-written `poll`: `Ready(Error::Cancelled)` if the current scope is cancelled;
    /// otherwise `Pending`, and the guest task will be woken when that scope (or an enclosing
    /// one it is not shielded from) is cancelled or its deadline passes. An error delivered to
    /// the task ([the rule](super#errors-delivered-to-a-task)) comes first, as `Ready` with
    /// that error, and the delivery wakes the task too. The wake goes to the
    /// task's own waker: a sub-executor between the task and this poll must re-poll its children
    /// when woken. Outside a guest task: always `Pending`.
    ///
    /// ```
    /// use infect::guest::{self, lowlevel};
    /// use core::future::poll_fn;
    /// use core::time::Duration;
    /// let r = guest::run(async {
    ///     guest::move_on_after(Duration::from_millis(2), async {
    ///         // A future that only ever ends by cancellation.
    ///         let e = poll_fn(|cx| lowlevel::poll_cancelled(cx)).await;
    ///         Err::<(), _>(e)
    ///     })
    ///     .await
    /// });
    /// assert_eq!(r, Ok(None));
    /// ```
    pub fn poll_cancelled(cx: &mut Context<'_>) -> Poll<Error> {
        let _ = cx;
        match check_cancel() {
            Err(e) => Poll::Ready(e),
            Ok(()) => {
                crate::cx::note_park();
                Poll::Pending
            }
        }
    }
}

#[cfg(feature = "std")]
mod standalone {
    //! `guest::run`: the guest on the smallest possible host, a tick queue parked on the reactor.
    use super::*;
    use crate::reactor::{ParkGate, Reactor};
    use alloc::sync::Arc;
    use concurrent_queue::ConcurrentQueue;
    use core::cell::RefCell;

    struct Driver {
        /// Ticks scheduled from other threads.
        ticks: ConcurrentQueue<GuestTick>,
        /// Ticks scheduled on the run's own thread (the common case): no atomics.
        local_ticks: sched::OwnerVec<GuestTick>,
        timer: ConcurrentQueue<(Instant, GuestTick)>,
        /// A tick request wakes the reactor only while the loop is parked (or about to park).
        gate: ParkGate,
        /// The loop's thread: a request from it (a waker fired while the reactor dispatches)
        /// needs no wake-up, the loop looks at the queue before it parks again.
        owner: std::thread::ThreadId,
    }

    struct DriverHooks(Arc<Driver>);

    impl Hooks for DriverHooks {
        fn run_sync_soon_threadsafe(&self, tick: GuestTick) {
            // On the run's own thread the loop is not parked (it runs this): nothing to notify.
            let mut tick = Some(tick);
            if self.0.local_ticks.with(|v| v.push(tick.take().expect("not pushed yet"))).is_some() {
                return;
            }
            let _ = self.0.ticks.push(tick.take().expect("not pushed yet"));
            self.0.gate.notify_if(|| std::thread::current().id() != self.0.owner);
        }

        fn wake_at(&self, deadline: Instant, tick: GuestTick) {
            let _ = self.0.timer.push((deadline, tick));
        }
    }

    struct DrainOnExit<'a>(&'a Driver);

    impl Drop for DrainOnExit<'_> {
        fn drop(&mut self) {
            while self.0.timer.pop().is_ok() {}
            while self.0.ticks.pop().is_ok() {}
            drop(self.0.local_ticks.with(core::mem::take));
        }
    }

    pub(super) fn run<T: 'static>(config: GuestConfig, main: impl Future<Output = Result<T>> + 'static) -> Result<T> {
        let reactor = match Reactor::new() {
            Ok(r) => r,
            Err(e) => return Err(Error::Os { op: "creating the reactor's wake fd".into(), source: e.into() }),
        };
        let _enter = reactor.enter();
        let driver = Arc::new(Driver {
            ticks: ConcurrentQueue::unbounded(),
            local_ticks: sched::OwnerVec::new(),
            timer: ConcurrentQueue::unbounded(),
            gate: ParkGate::new(reactor.notifier()),
            owner: std::thread::current().id(),
        });
        // Emptied on every way out (also unwinding): a queued tick holds the run's `Shared`, whose
        // hooks hold this driver, so a tick left in a queue is a reference cycle that leaks the
        // driver, the run and the reactor's wake fd. `Local::complete` always queues one (its
        // `wake_at(NEVER, ..)`).
        let _drain = DrainOnExit(&driver);
        let clock = config.clock.clone();
        let out: Rc<RefCell<Option<Result<T>>>> = Rc::new(RefCell::new(None));
        let out2 = out.clone();
        let run = super::start_guest_run_with(config, main, DriverHooks(driver.clone()), move |r| {
            *out2.borrow_mut() = Some(r);
        })?;
        let mut wake: Option<(Instant, GuestTick)> = None;
        let mut local: Vec<GuestTick> = Vec::new();
        loop {
            if let Some(r) = out.borrow_mut().take() {
                drop(run);
                return r;
            }
            while let Ok((d, t)) = driver.timer.pop() {
                wake = (d != Instant::NEVER).then_some((d, t));
            }
            // Every tick of a run is the same tick, so the two queues' order does not matter.
            let n = if driver.ticks.is_empty() { 0 } else { driver.ticks.len() };
            // The owner's ticks, by swapping buffers (two of them take turns: no allocation).
            driver.local_ticks.with(|v| core::mem::swap(v, &mut local));
            if n > 0 || !local.is_empty() {
                for _ in 0..n {
                    if let Ok(t) = driver.ticks.pop() {
                        t.run();
                    }
                }
                local.drain(..).for_each(GuestTick::run);
                continue;
            }
            let deadline = wake.as_ref().map(|w| w.0);
            if deadline.is_some_and(|d| clock.now() >= d) {
                if let Some((_, t)) = wake.take() {
                    t.run();
                }
                continue;
            }
            driver.gate.park(
                || {
                    !(driver.ticks.is_empty()
                        && driver.timer.is_empty()
                        && driver.local_ticks.with(|v| v.is_empty()).unwrap_or(true))
                },
                || crate::reactor::park_until(&reactor, &*clock, deadline),
            );
        }
    }
}
