//! `to_host`: guest tasks driving host tasks through a linked, supervised pair (tractor's
//! `to_asyncio`).
//!
//! - [`open_channel_from`] starts a host task linked to the calling guest task and runs the
//!   guest's block with a [`LinkedTaskChannel`] once the host side called
//!   [`HostChannel::started_nowait`] (the mirror of `ctx.started()`).
//! - [`run_task`] runs one host future and returns its value or its translated error.
//!
//! The pair is a supervision scope: **neither task outlives the other**. When either call
//! returns, the host task has finished: it completed, or it was cancelled and (if it did not
//! finish within its one cooperative poll) dropped. What each side sees in every case is
//! decided by one pure state machine (crate-private, fuzzed: `fuzz/fuzz_targets/translate.rs`),
//! drawn under [The state machine](#the-state-machine).
//!
//! # Translation
//!
//! | what happens | the guest side sees | the host side sees |
//! |---|---|---|
//! | host returns `v` (`run_task`) | `Ok(v)` | — |
//! | host fails with `E` while the block runs | the block is cancelled at once, wherever it waits (a channel operation, `guest::sleep`, an `Event`, a nursery); `receive`/`send` return `Err(E)` (before any value still buffered), other awaits `Err(Cancelled)`; the block returns `Err(E)`, cause kept | — |
//! | host cancelled by itself or a third party ([`Canceller`]) | the same interruption, with `Err(HostCancelled{reason})` | `Cancelled` |
//! | host returns while the block runs, `suppress_graceful_exits` on (default) | no interruption: `receive` drains, then ends (`Ok(None)`); block exit `Ok` | — |
//! | host returns while the block runs, `suppress_graceful_exits(false)` | the block is cancelled at once (awaits other than the channel return `Err(Cancelled)`); `receive` still drains and ends (`Ok(None)`), `send` returns `Err(HostTaskExited)`; the block returns `Err(HostTaskExited)` | — |
//! | host fails before `started_nowait` | `Err(E)` from the open call | — |
//! | host returns before `started_nowait` | `Err(HostTaskExited)` from the open call | — |
//! | guest block exits normally while host runs | block `Ok`; with `suppress_graceful_exits` off, a host task that returns the `GuestTaskExited` it got makes the block return `Err(GuestTaskExited)` | `Err(GuestTaskExited)` at its next link op or host-aware await; dropped if it still runs after that |
//! | guest cancelled, or guest fails with `E` | block returns `Err(Cancelled)` / `Err(E)` | `Err(GuestCancelled{cause})`; then torn down |
//! | `cancel_host_task()` | no interruption: `receive` ends (`Ok(None)`) | `Cancelled` |
//! | both fail independently | `Err(ErrorGroup[guest E, host F])` | — |
//! | `run_task` caller cancelled | `Err(Cancelled)` | host task cancelled (it must not keep running) |
//! | `run_task` host fails / is cancelled | `Err(E)` / `Err(HostCancelled)`; nothing around the caller is cancelled | — |
//! | `send_nowait` into a full channel | — | `Err(Full(value))`: the value is handed back |
//! | a channel handle or subscriber used after the block | `Err(Closed)` | — |
//!
//! The interruption is the pair's own cancel scope around the block (tractor's asyncio
//! done-callback cancelling `_trio_cs`): it catches only its own cancellation, which the open
//! call then turns into the host's error. A block that swallows the cancellation and returns
//! `Ok` still returns the host's error.
//!
//! A host failure, as the guest sees it (on a virtual clock: instant, and the times exact):
//!
//! ```
//! use infect::{Error, guest, host::{self, Host}, time::{Instant, VirtualClock}};
//! use infect::to_host::{self, HostChannel, LinkOpts};
//! use std::{rc::Rc, time::Duration};
//!
//! /// The host side's own failure: a type of the user's, matched by type below.
//! #[derive(Debug)]
//! struct ConnectionLost;
//! impl std::fmt::Display for ConnectionLost {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("the upstream went away") }
//! }
//! impl std::error::Error for ConnectionLost {}
//!
//! async fn flaky(chan: HostChannel<(), u32, ()>) -> infect::Result<()> {
//!     chan.started_nowait(())?;
//!     chan.send(1).await?;
//!     host::sleep(Duration::from_millis(30)).await?;
//!     Err(Error::user(ConnectionLost))
//! }
//!
//! let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
//! let (out, at) = host.run_guest(async {
//!     let out = to_host::open_channel_from(flaky, LinkOpts::new(), async |chan, ()| {
//!         assert_eq!(chan.receive().await?, 1);
//!         guest::sleep_forever().await // interrupted when the host fails
//!     })
//!     .await;
//!     Ok((out, guest::current_time()))
//! })?;
//! // Not `Cancelled`: the cause is kept, and it is the host task's own error value.
//! assert!(out.unwrap_err().downcast_ref::<ConnectionLost>().is_some());
//! assert_eq!(at, Instant::ZERO + Duration::from_millis(30));
//! # Ok::<(), infect::Error>(())
//! ```
//!
//! # The state machine
//!
//! The executors feed one pure machine per pair the events (either side ending, the
//! handshake, each side's sends and receives), and it decides what each side sees; it holds
//! no values, only counts, and the channel beside it stores the values in the order the
//! machine accounts for them.
//!
//! ```text
//!            (1) open                 (2) started_nowait
//!   ───────────────────▶ Starting ───────────────────────▶ Linked ─────────────────┐
//!                          │   │                            │   │                 │
//!   (3) host ends ◀────────┘   │ (4) guest gives up         │   │ (5) guest block │ (9) host ends with an
//!   before started:            │     (cancelled/failed)     │   │     ends, or    │     error for the guest:
//!   open call fails            ▼                            │   │     cancel_     │     the block's scope
//!                         TearingDown ◀─────────────────────┼───┘     host_task   │     is cancelled at once
//!                              │                            │                     ▼
//!                              │ (6) host ends              │ (7) host ends       Interrupted
//!                              ▼                            ▼     first, no error    │
//!                            Closed ◀──(8) guest block ends── HostDone               │
//!                              ▲                                                     │
//!                              └────────────────(8) guest block ends─────────────────┘
//! ```
//! 1. `Link::new`: the host task is spawned; the guest waits in the open call.
//! 2. `Link::host_started`: the first value is handed over; the guest's block runs.
//! 3. `Link::host_ended` while `Starting`: `Link::open_outcome` turns the end into the open
//!    call's error (`E`, `Error::HostTaskExited` or `Error::HostCancelled`).
//! 4. `Link::guest_ended` while `Starting` (the guest was cancelled waiting).
//! 5. `Link::guest_ended` / `Link::guest_cancels_host` while `Linked`: it returns the
//!    `Cancelled` to deliver to the host task, whose next link operation or host-aware await
//!    returns `Link::host_sees` (`GuestTaskExited` or `GuestCancelled{cause}`).
//! 6. `Link::host_ended` while tearing down: the pair is closed; `Link::block_result`
//!    decides what the block returns.
//! 7. `Link::host_ended` while `Linked`, with an end that is no error for the guest (a return
//!    with `suppress_graceful_exits` on, a cancellation or an echo the guest asked for with
//!    `cancel_host_task`), or any end of a `run_task` pair: the guest drains what was sent,
//!    then its receive sees `Link::guest_recv` → end of channel (`run_task` takes the result).
//! 8. `Link::guest_ended` after the host: nothing left to tear down. Every guest operation
//!    after it (a handle used after the block) is refused with `Error::Closed`.
//! 9. `Link::host_ended` while `Linked`, with an end the guest must see as an error (a failure
//!    `E`, a cancellation by itself or a third party, a return with `suppress_graceful_exits`
//!    off): `host_ended` returns `true` and the executor cancels the scope around the block *at
//!    once*, wherever it waits (a `guest::sleep`, an `Event`, a nursery: tractor's done-callback
//!    cancelling `_trio_cs`). From then on `Link::interruption` is that error and channel
//!    operations report the host's end instead of the block's cancellation
//!    (`Link::guest_skips_scope`): after a failure or cancellation they return it at once
//!    (before any value still buffered); after a return they drain and end as after any
//!    return. `Link::block_result` turns the block's `Err(Cancelled)` into the interruption.
//!    `run_task` pairs (`Link::new_started`) have no block and never take this transition.
//!
//! Invariants: each side ends exactly once (a second end is ignored); nothing is accepted for
//! a side that has ended; a value is counted in flight from the accepted send to its receive,
//! so no value is lost or duplicated before teardown or an interruption (which leaves what is
//! still buffered unread: the block is being cancelled); an independent failure of each side is
//! never masked by the other's: both come out as an `ErrorGroup`.
//!
//! # What ends a channel
//!
//! Host → guest ([`LinkedTaskChannel::receive`], [`try_next`](LinkedTaskChannel::try_next),
//! [`stream`](LinkedTaskChannel::stream), a [`BroadcastReceiver`]):
//! - the host **returned** (or ended after [`cancel_host_task`](LinkedTaskChannel::cancel_host_task)):
//!   every value it sent is still received, then the end: `receive()` →
//!   `Err(`[`HostTaskExited`](Error::HostTaskExited)`)`, `try_next()` → `Ok(None)` (and again
//!   on every later call), the stream ends;
//! - the host **failed** with `E` or was **cancelled** by itself or a third party: `Err(E)` /
//!   `Err(`[`HostCancelled`](Error::HostCancelled)`)` at once, before any value still
//!   buffered (those are never delivered); the stream yields it as its last item;
//! - the **block ended**: every handle returns [`Error::Closed`].
//!
//! Guest → host ([`HostChannel::get`], and the host's sends): the guest's block **returned**:
//! `Err(`[`GuestTaskExited`](Error::GuestTaskExited)`)`; it **failed** with `E` or was
//! **cancelled**: `Err(`[`GuestCancelled`](Error::GuestCancelled)`{cause})` (`cause` is `E`,
//! `None` for a cancellation). The host task is cancelled at the same moment, so its next
//! operation reports that end even when values the guest sent are still buffered (those are
//! dropped), and a host task still running after its next await is dropped.
//!
//! # Ordering and back-pressure
//!
//! - Each direction is FIFO: values arrive in the order they were sent, none lost or
//!   duplicated while both sides run. The block starts only once the host has called
//!   [`HostChannel::started_nowait`], with its value.
//! - Each direction holds a bounded number of values ([`LinkOpts::capacity_to_host`],
//!   [`LinkOpts::capacity_to_guest`], 256 by default); a value counts until the other side
//!   has taken it. A full direction makes [`LinkedTaskChannel::send`] and
//!   [`HostChannel::send`] wait and [`HostChannel::send_nowait`] hand the value back in
//!   [`SendNowaitError::Full`]. With subscribers, the host's pace follows the fastest reader;
//!   a subscriber that falls more than the capacity behind gets [`Error::Lagged`].
//! - The host task runs on the host's executor, the block on the guest's scheduler, both on
//!   one thread: a value sent with no await in between is not seen by the other side until
//!   the sender awaits.
//!
//! # Handles
//!
//! [`LinkedTaskChannel`] and [`BroadcastReceiver`] are owned handles (`'static`, the channel
//! cheap to clone), so nursery tasks inside the block can each take one: clones share the
//! channel's own `receive` cursor (each value goes to one of them), a subscriber has a cursor of
//! its own and starts at the oldest value no reader has received yet. Every handle used after
//! the block returns [`Error::Closed`]; if the open call's future is dropped mid-block, the host
//! task is torn down even while a handle survives elsewhere.
//!
//! Cancellation on the guest side follows trio: the channel operations (`send`, `receive`, a
//! subscriber's `receive`, `wait_for_result`) check their scope *first*, so inside a cancelled
//! scope they return [`Error::Cancelled`] even when a value is ready (it stays buffered; nothing
//! is consumed). Two rules come before the scope's: after the block they return `Closed`; once
//! the host's end has interrupted the block they report that end instead of the cancellation it
//! caused (its error; after a return, the drain and the end of channel; `wait_for_result` the
//! host's outcome, value or error). The open call and `run_task` return an outcome the host has already decided
//! (the first value, or the host's end) before they check: a finished host's work is never
//! thrown away, and the block's first await then sees the cancellation.
//!
//! These calls need a guest that rides a [`Host`](crate::host::Host)
//! ([`Host::run_guest`](crate::host::Host::run_guest), or an actor spawned with
//! `infect_host(true)`): they find that host through the typed handle the guest run keeps to
//! it. Anywhere else (a standalone [`guest::run`](crate::guest::run), a guest on another host's
//! hooks) they return [`Error::NotInfected`].

mod channel;
pub(crate) mod translate;

use alloc::rc::Rc;
use core::cell::{Cell, RefCell};
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::{Context, Poll};

use channel::{Core, PRIMARY, ReadOutcome};
use translate::{GuestEnd, HostEnd, Link, RecvVerdict, SendVerdict};

use crate::error::Cancelled;
use crate::guest::{CancelScope, check_cancel};
use crate::host::{self, JoinHandle};
use crate::trace::TraceEvent;
use crate::{Error, Result};

/// Options of [`open_channel_from`], builder-style: [`LinkOpts::new`] gives the defaults, each
/// method sets one option.
///
/// ```
/// use infect::to_host::LinkOpts;
///
/// let opts = LinkOpts::new().suppress_graceful_exits(false).capacity(16);
/// assert_ne!(opts, LinkOpts::new());
/// assert_eq!(LinkOpts::new(), LinkOpts::new());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkOpts {
    suppress_graceful_exits: bool,
    capacity_to_host: usize,
    capacity_to_guest: usize,
}

impl Default for LinkOpts {
    fn default() -> Self {
        LinkOpts::new()
    }
}

impl LinkOpts {
    /// The defaults: graceful exits suppressed, 256 values buffered each way.
    pub const fn new() -> LinkOpts {
        LinkOpts { suppress_graceful_exits: true, capacity_to_host: 256, capacity_to_guest: 256 }
    }

    /// Whether to absorb the graceful-exit signals (`HostTaskExited`, `GuestTaskExited`) at
    /// block exit (default `true`, as in tractor). Off, a host task that returns while the
    /// block runs interrupts it like a failure, and the open call returns
    /// [`Error::HostTaskExited`]:
    ///
    /// ```
    /// use infect::{Error, guest, host::{self, Host}, time::VirtualClock};
    /// use infect::to_host::{self, HostChannel, LinkOpts};
    /// use std::{rc::Rc, time::Duration};
    ///
    /// async fn brief(chan: HostChannel<(), u32, ()>) -> infect::Result<()> {
    ///     chan.started_nowait(())?;
    ///     host::sleep(Duration::from_millis(5)).await?;
    ///     Ok(())
    /// }
    ///
    /// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
    /// let strict = host.run_guest(async {
    ///     let opts = LinkOpts::new().suppress_graceful_exits(false);
    ///     to_host::open_channel_from(brief, opts, async |_chan, ()| guest::sleep_forever().await).await
    /// });
    /// assert_eq!(strict, Err(Error::HostTaskExited));
    /// // The default: the return only ends the channel.
    /// let lenient = host.run_guest(async {
    ///     to_host::open_channel_from(brief, LinkOpts::new(), async |chan, ()| chan.try_next().await).await
    /// });
    /// assert_eq!(lenient, Ok(None));
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub const fn suppress_graceful_exits(mut self, yes: bool) -> Self {
        self.suppress_graceful_exits = yes;
        self
    }

    /// How many values are buffered guest → host before the guest's `send` waits (default 256).
    pub const fn capacity_to_host(mut self, n: usize) -> Self {
        self.capacity_to_host = n;
        self
    }

    /// How many values are buffered host → guest before the host's `send_nowait` says `Full`
    /// (default 256).
    pub const fn capacity_to_guest(mut self, n: usize) -> Self {
        self.capacity_to_guest = n;
        self
    }

    /// Sets both capacities.
    pub const fn capacity(mut self, n: usize) -> Self {
        self.capacity_to_host = n;
        self.capacity_to_guest = n;
        self
    }
}

pub use crate::guest::SendNowaitError;

fn trace(name: &'static str, number: u64) {
    crate::log::debug!("link", signal = name, pair = number);
    host::with_trace(|t| t.record(TraceEvent::Link(name, number)));
}

/// A linked pair's translation state, as the debug dump shows it.
#[cfg_attr(not(feature = "std"), allow(dead_code))]
pub(crate) struct LinkState {
    /// The pair's number: its host task's id.
    pub(crate) number: u64,
    /// `open_channel_from` (a block and a channel) rather than `run_task`.
    pub(crate) channel: bool,
    pub(crate) phase: translate::Phase,
    /// Values in flight, guest → host and host → guest.
    pub(crate) in_flight: (usize, usize),
    /// How the host task ended, if it did.
    pub(crate) host_end: Option<translate::HostEnd>,
}

/// A pair's state, whatever its types (the registry below holds them type-erased).
#[cfg_attr(not(feature = "std"), allow(dead_code))]
trait LinkView {
    fn view(&self) -> LinkState;
}

impl<In, Out, S> LinkView for Core<In, Out, S> {
    fn view(&self) -> LinkState {
        let link = self.link.borrow();
        LinkState {
            number: self.number.get(),
            channel: self.block_scope.is_some(),
            phase: link.phase(),
            in_flight: link.in_flight(),
            host_end: link.host_end().cloned(),
        }
    }
}

#[cfg(feature = "std")]
std::thread_local! {
    /// The pairs opened on this thread (weakly; pruned as the list doubles), for the dump.
    static LINKS: RefCell<alloc::vec::Vec<alloc::rc::Weak<dyn LinkView>>> = const { RefCell::new(alloc::vec::Vec::new()) };
}

/// The pairs a thread's [`snapshot`] lists (a simulated world keeps one per actor:
/// [`swap_links`]).
#[cfg(feature = "std")]
#[derive(Default)]
pub(crate) struct LinkRegistry(alloc::vec::Vec<alloc::rc::Weak<dyn LinkView>>);

/// Swaps this thread's pairs with `other`.
#[cfg(feature = "std")]
pub(crate) fn swap_links(other: &mut LinkRegistry) {
    LINKS.with(|l| core::mem::swap(&mut *l.borrow_mut(), &mut other.0));
}

/// Registers a new pair for the debug dump (nothing without `std`).
fn register<In: 'static, Out: 'static, S: 'static>(core: &Rc<Core<In, Out, S>>) {
    #[cfg(feature = "std")]
    LINKS.with(|l| {
        let mut l = l.borrow_mut();
        if l.len() >= 16 && l.len() == l.capacity() {
            l.retain(|w| w.strong_count() > 0);
        }
        let view: Rc<dyn LinkView> = core.clone();
        l.push(Rc::downgrade(&view));
    });
    #[cfg(not(feature = "std"))]
    let _ = core;
}

/// The pairs open on this thread, in the order they were opened (closed ones left out).
#[cfg(feature = "std")]
pub(crate) fn snapshot() -> alloc::vec::Vec<LinkState> {
    LINKS.with(|l| {
        let l = l.borrow();
        let views = l.iter().filter_map(alloc::rc::Weak::upgrade).map(|v| v.view());
        views.filter(|v| v.phase != translate::Phase::Closed).collect()
    })
}

/// The guest half's handle to the host task, shared by the channel.
struct Pair<In, Out, S, R> {
    core: Rc<Core<In, Out, S>>,
    result: Rc<RefCell<Option<R>>>,
    handle: RefCell<Option<JoinHandle<()>>>,
    result_taken: Cell<bool>,
}

impl<In: 'static, Out: 'static, S: 'static, R: 'static> Pair<In, Out, S, R> {
    fn spawn<Fut>(
        link: Link,
        cap_to_guest: usize,
        block_scope: Option<CancelScope>,
        target: impl FnOnce(HostChannel<In, Out, S>) -> Fut,
    ) -> Result<Self>
    where
        Fut: Future<Output = Result<R>> + 'static,
    {
        let host = crate::embed::carrier_host()?;
        let core = Rc::new(Core::new(link, cap_to_guest, block_scope));
        let result = Rc::new(RefCell::new(None));
        let fut = target(HostChannel { core: core.clone() });
        // A panic in the host task ends it with `Error::Panic` (the guest sees that error), so
        // that it does not unwind through the host executor.
        #[cfg(feature = "std")]
        let fut = crate::panic::catch(fut);
        let side =
            HostSide { fut, guard: EndGuard { core: core.clone(), result: result.clone(), seen: None, done: false } };
        let handle = host.spawn(side).ok_or(Error::NotInfected)?;
        core.number.set(handle.id());
        register(&core);
        trace("open", handle.id());
        Ok(Pair { core, result, handle: RefCell::new(Some(handle)), result_taken: Cell::new(false) })
    }

    /// The guest side is done: deliver the teardown and wait (not cancellable) until the host
    /// task has finished.
    async fn finish_guest(&self, end: GuestEnd) {
        trace("guest_end", self.core.number.get());
        let teardown = self.core.link.borrow_mut().guest_ended(end);
        if let Some(c) = teardown {
            trace("teardown", self.core.number.get());
            if let Some(h) = self.handle.borrow().as_ref() {
                h.cancel_with(c);
            }
        }
        self.core.wake_host();
        poll_fn(|cx| {
            if self.core.link.borrow().host_done() {
                Poll::Ready(())
            } else {
                self.core.guest_waiters.register(cx.waker());
                Poll::Pending
            }
        })
        .await;
        if let Some(h) = self.handle.borrow_mut().take() {
            h.detach();
        }
        // Both sides are done: nothing can read what is still buffered (every guest operation
        // is refused with `Closed`, every host one too), so a handle that outlives the block
        // does not keep the values alive.
        self.core.to_host.borrow_mut().clear();
        *self.core.to_guest.borrow_mut() = channel::Ring::new(1);
    }

    /// Waits (cancellation-aware) until the host has ended. With `checkpoint`, a cancelled scope
    /// fails it even when the host has already ended (the rule of every channel operation);
    /// without, an end that already happened is returned first (`run_task`: no finished work
    /// is thrown away).
    async fn wait_host_done(&self, checkpoint: bool) -> Result<()> {
        poll_fn(|cx| {
            // Once the host's end interrupted the block, that end is what we waited for: it is
            // returned, not the block's cancellation.
            if checkpoint && !self.core.link.borrow().guest_skips_scope() {
                check_cancel()?;
            }
            if self.core.link.borrow().host_done() {
                return Poll::Ready(Ok(()));
            }
            check_cancel()?;
            self.core.guest_waiters.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    fn take_result(&self) -> Result<R> {
        self.core.link.borrow().task_result()?;
        if self.result_taken.replace(true) {
            return Err(Error::ResultTaken);
        }
        self.result.borrow_mut().take().ok_or_else(|| Error::HostTaskExited)
    }
}

/// Opens a linked pair: starts `target(host_channel)` as a host task, waits until it calls
/// `started_nowait(first)`, runs `body(&channel, first)` inside a cancel scope of the pair's
/// own, then tears the pair down together and waits for the host task to finish. If the host
/// task fails, is cancelled by itself or a third party, or returns with
/// `suppress_graceful_exits(false)` while the block runs, that scope is cancelled at once,
/// wherever the block waits, and the block's cancellation comes out as the host's error. See
/// the [module docs](self) for what comes out in each case.
///
/// The channel is an owned handle: clone it (or [`subscribe`](LinkedTaskChannel::subscribe))
/// into nursery tasks inside the block. Used after the block has ended, every handle returns
/// [`Error::Closed`].
///
/// ```
/// use infect::host::Host;
/// use infect::to_host::{self, HostChannel, LinkOpts};
///
/// async fn doubler(chan: HostChannel<u32, u32, &'static str>) -> infect::Result<()> {
///     chan.started_nowait("ready")?;
///     loop {
///         let v = chan.get().await?;
///         chan.send_nowait(v * 2)?;
///     }
/// }
///
/// let host = Host::new().unwrap();
/// let out = host.run_guest(async {
///     to_host::open_channel_from(doubler, LinkOpts::new(), async |chan, first| {
///         assert_eq!(first, "ready");
///         chan.send(21).await?;
///         chan.receive().await
///     })
///     .await
/// });
/// assert_eq!(out, Ok(42));
/// ```
#[track_caller]
pub fn open_channel_from<In, Out, S, R, O, Fut>(
    target: impl FnOnce(HostChannel<In, Out, S>) -> Fut,
    opts: LinkOpts,
    body: impl AsyncFnOnce(&LinkedTaskChannel<In, Out, S, R>, S) -> Result<O>,
) -> impl Future<Output = Result<O>>
where
    In: 'static,
    Out: 'static,
    S: 'static,
    R: 'static,
    Fut: Future<Output = Result<R>> + 'static,
{
    crate::cx::at(async move {
        let link = Link::new(opts.suppress_graceful_exits, opts.capacity_to_host, opts.capacity_to_guest);
        let scope = CancelScope::new();
        let pair = Rc::new(Pair::spawn(link, opts.capacity_to_guest, Some(scope.clone()), target)?);
        let _abandon = Abandon(pair.clone());
        let chan = LinkedTaskChannel { pair };
        let started = poll_fn(|cx| {
            let outcome = chan.pair.core.link.borrow().open_outcome();
            match outcome {
                Some(Ok(())) => Poll::Ready(Ok(chan.pair.core.first.borrow_mut().take())),
                Some(Err(e)) => Poll::Ready(Err(e)),
                None => {
                    check_cancel()?;
                    chan.pair.core.guest_waiters.register(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await;
        let first = match started {
            Ok(Some(first)) => first,
            Ok(None) => {
                // started_nowait was called, but its value was already taken: impossible by
                // construction; fail loudly rather than hang.
                chan.pair.finish_guest(GuestEnd::Failed(Error::HostTaskExited)).await;
                return Err(Error::HostTaskExited);
            }
            Err(e) => {
                let end = if e.is_cancelled() { GuestEnd::Cancelled } else { GuestEnd::Exited };
                chan.pair.finish_guest(end).await;
                // The same rule as at block exit: a host failure of its own (say, after the open call
                // was cancelled) is not masked by the cancellation. Returning `Err(e)` here lost it
                // (found by fuzzing/cancel_translation.rs, seed `bug_open_cancelled_masks_host_failure`).
                let out = chan.pair.core.link.borrow().block_result(Err(e));
                return out;
            }
        };
        // The pair's scope catches only its own cancellation (the host's end interrupted the
        // block); `block_result` then turns it into the host's error.
        let r = match scope.run(body(&chan, first)).await {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(Error::Cancelled),
            Err(e) => Err(e),
        };
        chan.pair.finish_guest(GuestEnd::of(&r)).await;
        chan.pair.core.link.borrow().block_result(r)
    })
}

/// Runs `task` as a host task and returns its value or its translated error
/// ([`Error::HostCancelled`] if it was cancelled by itself or a third party). If the caller is
/// cancelled, the host task is cancelled too and has finished when this returns
/// `Err(Cancelled)`.
///
/// ```
/// use infect::host::{self, Host};
/// use infect::to_host;
/// use core::time::Duration;
///
/// let host = Host::new().unwrap();
/// let page = host.run_guest(async {
///     to_host::run_task(async {
///         host::sleep(Duration::from_millis(1)).await?;
///         Ok(String::from("<html>sup</html>"))
///     })
///     .await
/// });
/// assert_eq!(page.as_deref(), Ok("<html>sup</html>"));
/// ```
#[track_caller]
pub fn run_task<R: 'static>(task: impl Future<Output = Result<R>> + 'static) -> impl Future<Output = Result<R>> {
    crate::cx::at(async move {
        let pair: Pair<(), (), (), R> = Pair::spawn(Link::new_started(), 1, None, |_chan| task)?;
        match pair.wait_host_done(false).await {
            Ok(()) => {
                pair.finish_guest(GuestEnd::Exited).await;
                pair.take_result()
            }
            Err(e) => {
                pair.finish_guest(GuestEnd::Cancelled).await;
                pair.core.link.borrow().block_result::<R>(Err(e))
            }
        }
    })
}

/// Tears the host task down if `open_channel_from` is dropped before its block ended (the last
/// resort: the future itself is dropped). A handle that outlives the future must not keep the
/// host task running, so the guard delivers the teardown and lets go of the task's handle.
struct Abandon<In, Out, S, R>(Rc<Pair<In, Out, S, R>>);

impl<In, Out, S, R> Drop for Abandon<In, Out, S, R> {
    fn drop(&mut self) {
        let pair = &self.0;
        if !pair.core.link.borrow().guest_done() {
            let teardown = pair.core.link.borrow_mut().guest_ended(GuestEnd::Cancelled);
            if let (Some(c), Some(h)) = (teardown, pair.handle.borrow().as_ref()) {
                h.cancel_with(c);
            }
            pair.core.wake_host();
        }
        // Normally already taken (and detached) by `finish_guest`; dropping it cancels the task.
        drop(pair.handle.borrow_mut().take());
    }
}

/// The guest side of a linked pair: `send`, `receive`, `subscribe`, `wait_for_result`,
/// `cancel_host_task`.
///
/// An owned handle: a clone is the same channel (clones share one `receive` cursor, so each
/// value goes to one of them, like clones of a trio memory channel); a nursery task can take a
/// clone, or a [`subscribe`](Self::subscribe)r of its own. Once the block has ended, every
/// handle's operations return [`Error::Closed`].
///
/// Values come out in the order the host sent them; what ends the channel is the host's end
/// (see [What ends a channel](self#what-ends-a-channel)). A host task streaming three ticks,
/// 10 ms apart, on a virtual clock (instant and deterministic):
///
/// ```
/// use infect::host::{self, Host};
/// use infect::time::{Instant, VirtualClock};
/// use infect::to_host::{self, HostChannel, LinkOpts};
/// use infect::guest;
/// use std::{rc::Rc, time::Duration};
///
/// async fn ticker(chan: HostChannel<(), u32, ()>) -> infect::Result<u32> {
///     chan.started_nowait(())?;
///     for i in 0..3 {
///         host::sleep(Duration::from_millis(10)).await?;
///         chan.send(i).await?;
///     }
///     Ok(3) // what `wait_for_result` returns
/// }
///
/// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
/// let (ticks, sent) = host.run_guest(async {
///     to_host::open_channel_from(ticker, LinkOpts::new(), async |chan, ()| {
///         let mut ticks = Vec::new();
///         while let Some(i) = chan.try_next().await? {
///             ticks.push((i, guest::current_time()));
///         }
///         Ok((ticks, chan.wait_for_result().await?))
///     })
///     .await
/// })?;
/// let ms = |n| Instant::ZERO + Duration::from_millis(n);
/// assert_eq!(ticks, [(0, ms(10)), (1, ms(20)), (2, ms(30))]);
/// assert_eq!(sent, 3);
/// # Ok::<(), infect::Error>(())
/// ```
pub struct LinkedTaskChannel<In, Out, S, R> {
    pair: Rc<Pair<In, Out, S, R>>,
}

impl<In, Out, S, R> Clone for LinkedTaskChannel<In, Out, S, R> {
    fn clone(&self) -> Self {
        LinkedTaskChannel { pair: self.pair.clone() }
    }
}

impl<In, Out, S, R> core::fmt::Debug for LinkedTaskChannel<In, Out, S, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LinkedTaskChannel").field("link", &*self.pair.core.link.borrow()).finish()
    }
}

impl<In: 'static, Out: 'static, S: 'static, R: 'static> LinkedTaskChannel<In, Out, S, R> {
    /// Sends `value` to the host task, waiting for room (back-pressure). Fails with the host's
    /// end if it has ended ([`Error::HostTaskExited`], its error, or `HostCancelled`), with
    /// [`Error::Cancelled`] in a cancelled scope, and with [`Error::Closed`] after the block;
    /// the value is dropped then.
    ///
    /// At most [`LinkOpts::capacity_to_host`] values wait for the host's
    /// [`get`](HostChannel::get); a value counts until the host has taken it. With room for one
    /// and a host that takes a value every 10 ms, each further `send` waits for the host:
    ///
    /// ```
    /// use infect::host::{self, Host};
    /// use infect::time::VirtualClock;
    /// use infect::to_host::{self, HostChannel, LinkOpts};
    /// use infect::guest;
    /// use std::{rc::Rc, time::Duration};
    ///
    /// async fn slow_reader(chan: HostChannel<u32, (), ()>) -> infect::Result<Vec<u32>> {
    ///     chan.started_nowait(())?;
    ///     let mut got = Vec::new();
    ///     for _ in 0..3 {
    ///         host::sleep(Duration::from_millis(10)).await?;
    ///         got.push(chan.get().await?);
    ///     }
    ///     Ok(got)
    /// }
    ///
    /// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
    /// let opts = LinkOpts::new().capacity_to_host(1);
    /// let (sent_at_ms, got) = host.run_guest(async move {
    ///     to_host::open_channel_from(slow_reader, opts, async |chan, ()| {
    ///         let mut sent_at_ms = Vec::new();
    ///         for v in 0..3 {
    ///             chan.send(v).await?;
    ///             sent_at_ms.push(guest::current_time().as_nanos() / 1_000_000);
    ///         }
    ///         Ok((sent_at_ms, chan.wait_for_result().await?))
    ///     })
    ///     .await
    /// })?;
    /// assert_eq!(sent_at_ms, [0, 10, 20]); // the 2nd and 3rd waited for room
    /// assert_eq!(got, [0, 1, 2]);
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub async fn send(&self, value: In) -> Result<()> {
        let mut slot = Some(value);
        poll_fn(|cx| {
            {
                let link = self.pair.core.link.borrow();
                link.guest_op()?;
                if !link.guest_skips_scope() {
                    check_cancel()?;
                }
            }
            let verdict = self.pair.core.link.borrow_mut().guest_send();
            match verdict {
                SendVerdict::Accept => {
                    let v = slot.take().expect("send polled after completion");
                    crate::log::trace!("link.guest_send", pair = self.pair.core.number.get());
                    self.pair.core.to_host.borrow_mut().push_back(v);
                    self.pair.core.host_waiters.wake_all();
                    Poll::Ready(Ok(()))
                }
                SendVerdict::Closed(e) => Poll::Ready(Err(e)),
                SendVerdict::Full => {
                    self.pair.core.guest_room.register(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Receives the next value from the host task (the seed's `out = await chan.receive()`):
    /// `Ok(v)`; [`Error::HostTaskExited`] once the host has returned (or ended by
    /// [`cancel_host_task`](Self::cancel_host_task)) and every value sent before was received;
    /// the host's error or [`Error::HostCancelled`] if it failed or was cancelled (at once,
    /// before any value still buffered: the block is being cancelled); [`Error::Closed`] after
    /// the block. [`try_next`](Self::try_next) gives `Ok(None)` at the end instead.
    ///
    /// A host that returns: every value it sent is received, then the end.
    ///
    /// ```
    /// use infect::{Error, host::Host};
    /// use infect::to_host::{self, HostChannel, LinkOpts};
    ///
    /// async fn two(chan: HostChannel<(), u32, ()>) -> infect::Result<()> {
    ///     chan.started_nowait(())?;
    ///     chan.send_nowait(1)?;
    ///     chan.send_nowait(2)?;
    ///     Ok(())
    /// }
    ///
    /// let host = Host::new()?;
    /// let got = host.run_guest(async {
    ///     to_host::open_channel_from(two, LinkOpts::new(), async |chan, ()| {
    ///         Ok([chan.receive().await, chan.receive().await, chan.receive().await])
    ///     })
    ///     .await
    /// })?;
    /// assert_eq!(got, [Ok(1), Ok(2), Err(Error::HostTaskExited)]);
    /// # Ok::<(), infect::Error>(())
    /// ```
    ///
    /// A host that fails: the block is interrupted wherever it waits, and `receive` reports the
    /// failure before the value still buffered.
    ///
    /// ```
    /// use infect::{Error, guest, host::{self, Host}, time::{Instant, VirtualClock}};
    /// use infect::to_host::{self, HostChannel, LinkOpts};
    /// use std::{rc::Rc, time::Duration};
    ///
    /// #[derive(Debug)]
    /// struct FeedLost;
    /// impl std::fmt::Display for FeedLost {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("the feed went away") }
    /// }
    /// impl std::error::Error for FeedLost {}
    ///
    /// async fn feed(chan: HostChannel<(), u32, ()>) -> infect::Result<()> {
    ///     chan.started_nowait(())?;
    ///     chan.send_nowait(1)?;
    ///     host::sleep(Duration::from_millis(5)).await?;
    ///     Err(Error::user(FeedLost))
    /// }
    ///
    /// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
    /// let out = host.run_guest(async {
    ///     to_host::open_channel_from(feed, LinkOpts::new(), async |chan, ()| {
    ///         // The failure cancels this sleep at once (at 5 ms, not 60 s)...
    ///         assert_eq!(guest::sleep(Duration::from_secs(60)).await, Err(Error::Cancelled));
    ///         assert_eq!(guest::current_time(), Instant::ZERO + Duration::from_millis(5));
    ///         // ...and the channel reports it, not the value 1 still buffered.
    ///         chan.receive().await
    ///     })
    ///     .await
    /// });
    /// assert!(out.unwrap_err().downcast_ref::<FeedLost>().is_some());
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub async fn receive(&self) -> Result<Out> {
        self.try_next().await?.ok_or_else(|| Error::HostTaskExited)
    }

    /// Receives the next value, `Ok(None)` at the end of the channel (the seed's
    /// `async for msg in chan`: `while let Some(msg) = chan.try_next().await? { .. }`); otherwise
    /// as [`receive`](Self::receive).
    ///
    /// ```
    /// use infect::{Error, host::Host};
    /// use infect::to_host::{self, HostChannel, LinkOpts};
    ///
    /// async fn words(chan: HostChannel<(), &'static str, ()>) -> infect::Result<()> {
    ///     chan.started_nowait(())?;
    ///     for w in ["hello", "from", "the", "host"] {
    ///         chan.send(w).await?;
    ///     }
    ///     Ok(())
    /// }
    ///
    /// let host = Host::new()?;
    /// let (all, after) = host.run_guest(async {
    ///     to_host::open_channel_from(words, LinkOpts::new(), async |chan, ()| {
    ///         let mut all = Vec::new();
    ///         while let Some(w) = chan.try_next().await? {
    ///             all.push(w);
    ///         }
    ///         Ok((all.join(" "), chan.try_next().await))
    ///     })
    ///     .await
    /// })?;
    /// assert_eq!(all, "hello from the host");
    /// assert_eq!(after, Ok(None)); // the end stays the end
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub async fn try_next(&self) -> Result<Option<Out>> {
        poll_fn(|cx| self.pair.core.poll_read(PRIMARY, cx)).await
    }

    /// The values from the host as a [`Stream`](futures::Stream) (ends at end of channel; an
    /// error is its last item). It holds a handle of its own, so it can move into a task.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use infect::host::Host;
    /// use infect::to_host::{self, HostChannel, LinkOpts};
    ///
    /// async fn squares(chan: HostChannel<(), u64, ()>) -> infect::Result<()> {
    ///     chan.started_nowait(())?;
    ///     for i in 1..=4 {
    ///         chan.send(i * i).await?;
    ///     }
    ///     Ok(())
    /// }
    ///
    /// let host = Host::new()?;
    /// let got: Vec<infect::Result<u64>> = host.run_guest(async {
    ///     to_host::open_channel_from(squares, LinkOpts::new(), async |chan, ()| {
    ///         Ok(chan.stream().collect().await)
    ///     })
    ///     .await
    /// })?;
    /// assert_eq!(got, [Ok(1), Ok(4), Ok(9), Ok(16)]);
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn stream(&self) -> impl futures::Stream<Item = Result<Out>> + Unpin + use<In, Out, S, R> {
        reader_stream(self.pair.core.clone(), PRIMARY)
    }

    /// Waits for the host task to finish and returns its value, or its translated error
    /// ([`Error::Closed`] after the block). Once the host's end has interrupted the block, it
    /// returns that end at once (the value, or the error) instead of the block's cancellation.
    ///
    /// ```
    /// use infect::host::Host;
    /// use infect::to_host::{self, HostChannel, LinkOpts};
    ///
    /// // The host sums what the guest sends until the guest says 0.
    /// async fn summer(chan: HostChannel<u32, (), ()>) -> infect::Result<u32> {
    ///     chan.started_nowait(())?;
    ///     let mut sum = 0;
    ///     loop {
    ///         match chan.get().await? {
    ///             0 => return Ok(sum),
    ///             v => sum += v,
    ///         }
    ///     }
    /// }
    ///
    /// let host = Host::new()?;
    /// let (sum, again) = host.run_guest(async {
    ///     to_host::open_channel_from(summer, LinkOpts::new(), async |chan, ()| {
    ///         for v in [3, 4, 5, 0] {
    ///             chan.send(v).await?;
    ///         }
    ///         Ok((chan.wait_for_result().await?, chan.wait_for_result().await))
    ///     })
    ///     .await
    /// })?;
    /// assert_eq!(sum, 12);
    /// assert_eq!(again, Err(infect::Error::ResultTaken)); // the value is handed out once
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub async fn wait_for_result(&self) -> Result<R> {
        if self.pair.core.link.borrow().guest_done() {
            return Err(Error::Closed);
        }
        self.pair.wait_host_done(true).await?;
        self.pair.take_result()
    }

    /// Asks the host task to cancel. It sees `Cancelled` at its next link operation or
    /// host-aware await; the guest's `receive` then ends (end of channel) instead of failing.
    ///
    /// ```
    /// use infect::{Error, host::{self, Host}, time::VirtualClock};
    /// use infect::to_host::{self, HostChannel, LinkOpts};
    /// use std::{rc::Rc, time::Duration};
    ///
    /// // Counts forever, one value a second.
    /// async fn counter(chan: HostChannel<(), u32, ()>) -> infect::Result<()> {
    ///     chan.started_nowait(())?;
    ///     for i in 0.. {
    ///         chan.send(i).await?;
    ///         host::sleep(Duration::from_secs(1)).await?;
    ///     }
    ///     Ok(())
    /// }
    ///
    /// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
    /// let (first, rest, done) = host.run_guest(async {
    ///     to_host::open_channel_from(counter, LinkOpts::new(), async |chan, ()| {
    ///         let first = chan.receive().await?;
    ///         assert!(!chan.host_done());
    ///         chan.cancel_host_task();
    ///         // No error: the channel just ends.
    ///         Ok((first, chan.try_next().await?, chan.host_done()))
    ///     })
    ///     .await
    /// })?;
    /// assert_eq!((first, rest, done), (0, None, true));
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn cancel_host_task(&self) {
        let c = self.pair.core.link.borrow_mut().guest_cancels_host();
        if let Some(c) = c {
            trace("cancel_host_task", self.pair.core.number.get());
            if let Some(h) = self.pair.handle.borrow().as_ref() {
                h.cancel_with(c);
            }
        }
    }

    /// Whether the host task has ended (any way: returned, failed, cancelled). See the
    /// [`cancel_host_task`](Self::cancel_host_task) example.
    pub fn host_done(&self) -> bool {
        self.pair.core.link.borrow().host_done()
    }

    /// A broadcast receiver, an owned handle a nursery task can take: it gets a copy of what
    /// the channel's own `receive` (and every other subscriber) gets.
    ///
    /// **Where it starts:** at the oldest value that *no* reader has received yet (the first
    /// value still in flight), then every value the host sends later. Values some reader has
    /// already received are not replayed, even if a slower subscriber still holds them: a
    /// subscriber made after the channel's `receive` took values 0..k starts at k.
    ///
    /// A subscriber that falls more than the channel's capacity behind the fastest reader gets
    /// [`Error::Lagged`] once, then continues. Every subscriber sees the end of the channel,
    /// and the host's error or the interruption like `receive`. Once a channel has a
    /// subscriber, the host's back-pressure follows the fastest reader. After the block, its
    /// `receive` returns [`Error::Closed`].
    ///
    /// ```
    /// use infect::host::Host;
    /// use infect::to_host::{self, HostChannel, LinkOpts};
    ///
    /// async fn three(chan: HostChannel<(), u32, ()>) -> infect::Result<()> {
    ///     chan.started_nowait(())?;
    ///     for i in 0..3 {
    ///         chan.send(i).await?;
    ///     }
    ///     Ok(())
    /// }
    ///
    /// async fn drain(rx: &to_host::BroadcastReceiver<u32>) -> infect::Result<Vec<u32>> {
    ///     let mut got = Vec::new();
    ///     while let Some(v) = rx.try_next().await? {
    ///         got.push(v);
    ///     }
    ///     Ok(got)
    /// }
    ///
    /// let host = Host::new()?;
    /// let (early, late, primary) = host.run_guest(async {
    ///     to_host::open_channel_from(three, LinkOpts::new(), async |chan, ()| {
    ///         let early = chan.subscribe(); // before any value was received: sees 0, 1, 2
    ///         let zero = chan.receive().await?;
    ///         let late = chan.subscribe(); // 0 was received already: starts at 1
    ///         let mut primary = vec![zero];
    ///         while let Some(v) = chan.try_next().await? {
    ///             primary.push(v);
    ///         }
    ///         Ok((drain(&early).await?, drain(&late).await?, primary))
    ///     })
    ///     .await
    /// })?;
    /// assert_eq!(early, [0, 1, 2]);
    /// assert_eq!(late, [1, 2]);
    /// assert_eq!(primary, [0, 1, 2]);
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn subscribe(&self) -> BroadcastReceiver<Out>
    where
        Out: Clone,
    {
        let id = self.pair.core.to_guest.borrow_mut().subscribe(Out::clone);
        BroadcastReceiver { reader: self.pair.core.clone(), id }
    }
}

/// What a reader of the host → guest values needs from a pair (the types of the other
/// direction erased, so a subscriber is `BroadcastReceiver<Out>`).
trait Reader<Out> {
    fn poll_read(&self, reader: u64, cx: &mut Context<'_>) -> Poll<Result<Option<Out>>>;
    fn unsubscribe(&self, reader: u64);
}

impl<In, Out, S> Reader<Out> for Core<In, Out, S> {
    fn poll_read(&self, reader: u64, cx: &mut Context<'_>) -> Poll<Result<Option<Out>>> {
        {
            let link = self.link.borrow();
            link.guest_op()?;
            if !link.guest_skips_scope() {
                check_cancel()?;
            }
        }
        if reader == PRIMARY {
            // The common case first, without an `Error`-sized outcome to move around.
            let v = {
                let mut link = self.link.borrow_mut();
                self.to_guest.borrow_mut().take_primary(&mut link)
            };
            if let Some(v) = v {
                crate::log::trace!("link.guest_receive", pair = self.number.get(), end = false);
                self.host_room.wake_all();
                return Poll::Ready(Ok(Some(v)));
            }
        }
        let outcome = {
            let mut link = self.link.borrow_mut();
            self.to_guest.borrow_mut().read(reader, &mut link)
        };
        match outcome {
            ReadOutcome::Done(r) => {
                crate::log::trace!("link.guest_receive", pair = self.number.get(), end = !matches!(r, Ok(Some(_))));
                self.host_room.wake_all();
                Poll::Ready(r)
            }
            ReadOutcome::Wait => {
                self.guest_waiters.register(cx.waker());
                Poll::Pending
            }
        }
    }

    fn unsubscribe(&self, reader: u64) {
        self.to_guest.borrow_mut().unsubscribe(reader);
        self.host_room.wake_all();
    }
}

fn reader_stream<Out, C: Reader<Out> + ?Sized>(
    chan: Rc<C>,
    reader: u64,
) -> impl futures::Stream<Item = Result<Out>> + Unpin {
    crate::sync::broadcast::stream_of(
        move || {
            let chan = chan.clone();
            poll_fn(move |cx| chan.poll_read(reader, cx))
        },
        Ok,
    )
}

/// A subscriber made by [`LinkedTaskChannel::subscribe`]: an owned (`'static`) handle with a
/// cursor of its own; dropping it unsubscribes.
///
/// It ends like the channel (see [What ends a channel](self#what-ends-a-channel)), plus one
/// error of its own: a subscriber more than the channel's capacity behind the fastest reader
/// gets [`Error::Lagged`] once, with the count it missed, then continues from the oldest value
/// still kept.
///
/// ```
/// use infect::{Error, host::Host};
/// use infect::to_host::{self, HostChannel, LinkOpts};
///
/// async fn five(chan: HostChannel<(), u32, ()>) -> infect::Result<()> {
///     chan.started_nowait(())?;
///     for i in 0..5 {
///         chan.send(i).await?;
///     }
///     Ok(())
/// }
///
/// let host = Host::new()?;
/// let (primary, slow) = host.run_guest(async {
///     // Room for two values: the channel keeps at most two for a slow subscriber.
///     to_host::open_channel_from(five, LinkOpts::new().capacity(2), async |chan, ()| {
///         let slow = chan.subscribe();
///         let mut primary = Vec::new();
///         while let Some(v) = chan.try_next().await? {
///             primary.push(v); // the fastest reader sets the host's pace
///         }
///         Ok((primary, [slow.receive().await, slow.receive().await, slow.receive().await, slow.receive().await]))
///     })
///     .await
/// })?;
/// assert_eq!(primary, [0, 1, 2, 3, 4]);
/// assert_eq!(slow, [Err(Error::Lagged { skipped: 3 }), Ok(3), Ok(4), Err(Error::HostTaskExited)]);
/// # Ok::<(), infect::Error>(())
/// ```
pub struct BroadcastReceiver<Out> {
    reader: Rc<dyn Reader<Out>>,
    id: u64,
}

impl<Out> core::fmt::Debug for BroadcastReceiver<Out> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BroadcastReceiver").field("id", &self.id).finish()
    }
}

impl<Out> BroadcastReceiver<Out> {
    /// Receives the next value: like [`LinkedTaskChannel::receive`], plus
    /// [`Error::Lagged`] when this subscriber fell behind. Example on [`BroadcastReceiver`].
    pub async fn receive(&self) -> Result<Out> {
        self.try_next().await?.ok_or_else(|| Error::HostTaskExited)
    }

    /// Receives the next value, `Ok(None)` at the end of the channel: like
    /// [`LinkedTaskChannel::try_next`], plus [`Error::Lagged`] when this subscriber fell behind.
    /// Example on [`LinkedTaskChannel::subscribe`].
    pub async fn try_next(&self) -> Result<Option<Out>> {
        poll_fn(|cx| self.reader.poll_read(self.id, cx)).await
    }

    /// The values as a [`Stream`](futures::Stream) (it borrows the subscriber, whose drop
    /// unsubscribes). After a [`Error::Lagged`] item the stream goes on; any other error is its
    /// last item.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use infect::host::Host;
    /// use infect::to_host::{self, HostChannel, LinkOpts};
    ///
    /// async fn letters(chan: HostChannel<(), char, ()>) -> infect::Result<()> {
    ///     chan.started_nowait(())?;
    ///     for c in ['a', 'b', 'c'] {
    ///         chan.send(c).await?;
    ///     }
    ///     Ok(())
    /// }
    ///
    /// let host = Host::new()?;
    /// let (mine, theirs) = host.run_guest(async {
    ///     to_host::open_channel_from(letters, LinkOpts::new(), async |chan, ()| {
    ///         let sub = chan.subscribe();
    ///         let mine: String = chan.stream().map(|c| c.unwrap()).collect().await;
    ///         let theirs: Vec<infect::Result<char>> = sub.stream().collect().await;
    ///         Ok((mine, theirs))
    ///     })
    ///     .await
    /// })?;
    /// assert_eq!(mine, "abc");
    /// assert_eq!(theirs, [Ok('a'), Ok('b'), Ok('c')]);
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn stream(&self) -> impl futures::Stream<Item = Result<Out>> + Unpin + '_ {
        reader_stream(self.reader.clone(), self.id)
    }
}

impl<Out> Drop for BroadcastReceiver<Out> {
    fn drop(&mut self) {
        self.reader.unsubscribe(self.id);
    }
}

/// The host side of a linked pair, handed to the target function: `started_nowait`, `get`,
/// `send_nowait`, `send`.
///
/// Every operation checks the host task's own cancellation first, then the guest side: once
/// the guest's block has ended they fail with [`Error::GuestTaskExited`] (it returned) or
/// [`Error::GuestCancelled`] (it was cancelled, or failed: `cause` is its error), and the host
/// task is torn down. A host task that returns that error ends the pair quietly. An echo
/// server that records what ended it:
///
/// ```
/// use infect::{Error, host::Host};
/// use infect::to_host::{self, HostChannel, LinkOpts};
/// use std::{cell::RefCell, rc::Rc};
///
/// async fn echo(chan: HostChannel<u32, u32, ()>, ended: Rc<RefCell<Option<Error>>>) -> infect::Result<()> {
///     chan.started_nowait(())?;
///     loop {
///         match chan.get().await {
///             Ok(v) => chan.send(v + 1).await?,
///             Err(e) => {
///                 *ended.borrow_mut() = Some(e.clone());
///                 return Err(e);
///             }
///         }
///     }
/// }
///
/// let ended = Rc::new(RefCell::new(None));
/// let e = ended.clone();
/// let host = Host::new()?;
/// let out = host.run_guest(async move {
///     to_host::open_channel_from(move |chan| echo(chan, e), LinkOpts::new(), async |chan, ()| {
///         chan.send(1).await?;
///         chan.receive().await
///     })
///     .await
/// });
/// assert_eq!(out, Ok(2));
/// assert_eq!(*ended.borrow(), Some(Error::GuestTaskExited)); // the block returned
/// # Ok::<(), infect::Error>(())
/// ```
pub struct HostChannel<In, Out, S> {
    core: Rc<Core<In, Out, S>>,
}

impl<In, Out, S> core::fmt::Debug for HostChannel<In, Out, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HostChannel").field("link", &*self.core.link.borrow()).finish()
    }
}

impl<In, Out, S> HostChannel<In, Out, S> {
    /// Checks the host task's own cancellation, then the guest side.
    #[inline]
    fn check(&self) -> Result<()> {
        // The common case without building (and moving) a `Result` the size of an `Error`.
        if !host::cancel_requested() && self.core.link.borrow().host_sees_nothing() {
            return Ok(());
        }
        self.check_slow()
    }

    /// [`check`](Self::check) once something may have ended (out of line).
    #[cold]
    #[inline(never)]
    fn check_slow(&self) -> Result<()> {
        host::check_cancelled()?;
        self.core.link.borrow().host_sees()
    }

    /// Delivers the first value; unblocks the guest's `open_channel_from`. Once only: a second
    /// call fails with [`Error::LinkStartedTwice`]. A host task that ends without calling it
    /// makes the open call fail (with its error, or [`Error::HostTaskExited`]).
    ///
    /// ```
    /// use infect::{Error, host::Host};
    /// use infect::to_host::{self, HostChannel, LinkOpts};
    ///
    /// async fn twice(chan: HostChannel<(), (), &'static str>) -> infect::Result<infect::Result<()>> {
    ///     chan.started_nowait("first")?;
    ///     Ok(chan.started_nowait("second"))
    /// }
    /// async fn never(_chan: HostChannel<(), (), &'static str>) -> infect::Result<()> {
    ///     Ok(())
    /// }
    ///
    /// let host = Host::new()?;
    /// let (first, again) = host.run_guest(async {
    ///     to_host::open_channel_from(twice, LinkOpts::new(), async |chan, first| {
    ///         Ok((first, chan.wait_for_result().await?))
    ///     })
    ///     .await
    /// })?;
    /// assert_eq!((first, again), ("first", Err(Error::LinkStartedTwice)));
    ///
    /// let r = host.run_guest(async {
    ///     to_host::open_channel_from(never, LinkOpts::new(), async |_chan, _first| Ok(())).await
    /// });
    /// assert_eq!(r, Err(Error::HostTaskExited)); // the block never ran
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn started_nowait(&self, first: S) -> Result<()> {
        self.check()?;
        self.core.link.borrow_mut().host_started()?;
        *self.core.first.borrow_mut() = Some(first);
        trace("started", self.core.number.get());
        self.core.guest_waiters.wake_all();
        Ok(())
    }

    /// Waits for the next value from the guest. Fails with `GuestTaskExited` /
    /// `GuestCancelled{cause}` once the guest side is gone, and with the task's own
    /// cancellation. Values come in the order the guest sent them.
    ///
    /// A guest block that fails: the host's `get` sees the failure as the cause.
    ///
    /// ```
    /// use infect::{Error, guest, host::Host, time::VirtualClock};
    /// use infect::to_host::{self, HostChannel, LinkOpts};
    /// use std::{cell::RefCell, rc::Rc, time::Duration};
    ///
    /// #[derive(Debug)]
    /// struct BadInput;
    /// impl std::fmt::Display for BadInput {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("the guest gave up") }
    /// }
    /// impl std::error::Error for BadInput {}
    ///
    /// async fn collect(chan: HostChannel<u32, (), ()>, seen: Rc<RefCell<Vec<infect::Result<u32>>>>) -> infect::Result<()> {
    ///     chan.started_nowait(())?;
    ///     loop {
    ///         let r = chan.get().await;
    ///         let end = r.is_err();
    ///         seen.borrow_mut().push(r);
    ///         if end {
    ///             return Ok(());
    ///         }
    ///     }
    /// }
    ///
    /// let seen = Rc::new(RefCell::new(Vec::new()));
    /// let s = seen.clone();
    /// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
    /// let out: infect::Result<()> = host.run_guest(async move {
    ///     to_host::open_channel_from(move |chan| collect(chan, s), LinkOpts::new(), async |chan, ()| {
    ///         chan.send(7).await?;
    ///         chan.send(8).await?;
    ///         guest::sleep(Duration::from_millis(1)).await?; // the host takes both meanwhile
    ///         Err(Error::user(BadInput))
    ///     })
    ///     .await
    /// });
    /// assert!(out.unwrap_err().downcast_ref::<BadInput>().is_some());
    /// let seen = seen.borrow();
    /// assert_eq!(seen[..2], [Ok(7), Ok(8)]);
    /// match &seen[2] {
    ///     Err(Error::GuestCancelled { cause: Some(cause) }) => assert!(cause.downcast_ref::<BadInput>().is_some()),
    ///     other => panic!("unexpected {other:?} in {seen:?}"),
    /// }
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub async fn get(&self) -> Result<In> {
        poll_fn(|cx| {
            self.check()?;
            let verdict = self.core.link.borrow_mut().host_get();
            match verdict {
                RecvVerdict::Value => {
                    crate::log::trace!("link.host_get", pair = self.core.number.get());
                    let v = self.core.to_host.borrow_mut().pop_front().expect("counted in flight");
                    self.core.guest_room.wake_all();
                    Poll::Ready(Ok(v))
                }
                RecvVerdict::Fail(e) => Poll::Ready(Err(e)),
                RecvVerdict::End | RecvVerdict::Wait => {
                    self.core.host_waiters.register(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Sends to the guest without waiting. `Full(value)` when the guest's buffer is full,
    /// `Gone(value, error)` once the guest side is gone: the value is handed back either way.
    /// At most [`LinkOpts::capacity_to_guest`] values wait for the guest's `receive`.
    ///
    /// ```
    /// use infect::host::Host;
    /// use infect::to_host::{self, HostChannel, LinkOpts, SendNowaitError};
    ///
    /// async fn eager(chan: HostChannel<(), u32, ()>) -> infect::Result<Vec<Result<(), SendNowaitError<u32>>>> {
    ///     chan.started_nowait(())?;
    ///     Ok(vec![chan.send_nowait(1), chan.send_nowait(2)])
    /// }
    ///
    /// let host = Host::new()?;
    /// let (tries, one) = host.run_guest(async {
    ///     to_host::open_channel_from(eager, LinkOpts::new().capacity_to_guest(1), async |chan, ()| {
    ///         let tries = chan.wait_for_result().await?;
    ///         Ok((tries, chan.receive().await?))
    ///     })
    ///     .await
    /// })?;
    /// assert_eq!(tries, [Ok(()), Err(SendNowaitError::Full(2))]); // 2 is handed back
    /// assert_eq!(one, 1);
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn send_nowait(&self, value: Out) -> core::result::Result<(), SendNowaitError<Out>> {
        if let Err(e) = self.check() {
            return Err(SendNowaitError::Gone(value, e));
        }
        let verdict = self.core.link.borrow_mut().host_send();
        match verdict {
            SendVerdict::Accept => {
                crate::log::trace!("link.host_send", pair = self.core.number.get());
                self.core.to_guest.borrow_mut().push(value);
                self.core.guest_waiters.wake_all();
                Ok(())
            }
            SendVerdict::Full => Err(SendNowaitError::Full(value)),
            SendVerdict::Closed(e) => Err(SendNowaitError::Gone(value, e)),
        }
    }

    /// Sends to the guest, waiting for room (back-pressure): at most
    /// [`LinkOpts::capacity_to_guest`] values wait for the guest (with subscribers, for the
    /// fastest reader). Fails like [`get`](Self::get) once the guest side is gone.
    ///
    /// ```
    /// use infect::{guest, host::{self, Host}, time::{Clock, Instant, VirtualClock}};
    /// use infect::to_host::{self, HostChannel, LinkOpts};
    /// use std::{rc::Rc, time::Duration};
    ///
    /// // Returns when (in ms) each send got through.
    /// async fn producer(chan: HostChannel<(), u32, ()>, clock: Rc<VirtualClock>) -> infect::Result<Vec<u64>> {
    ///     chan.started_nowait(())?;
    ///     let mut at = Vec::new();
    ///     for i in 0..3 {
    ///         chan.send(i).await?;
    ///         at.push(clock.now().as_nanos() / 1_000_000);
    ///     }
    ///     Ok(at)
    /// }
    ///
    /// let clock = Rc::new(VirtualClock::new());
    /// let host = Host::builder().clock(clock.clone()).build()?;
    /// let c = clock.clone();
    /// let sent_at_ms = host.run_guest(async move {
    ///     let opts = LinkOpts::new().capacity_to_guest(1);
    ///     to_host::open_channel_from(move |chan| producer(chan, c), opts, async |chan, ()| {
    ///         for want in 0..3 {
    ///             guest::sleep(Duration::from_millis(10)).await?; // a slow consumer
    ///             assert_eq!(chan.receive().await?, want);
    ///         }
    ///         chan.wait_for_result().await
    ///     })
    ///     .await
    /// })?;
    /// assert_eq!(sent_at_ms, [0, 10, 20]); // each send waited for the guest to take the last
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub async fn send(&self, value: Out) -> Result<()> {
        let mut slot = Some(value);
        poll_fn(|cx| {
            let v = slot.take().expect("send polled after completion");
            match self.send_nowait(v) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(SendNowaitError::Gone(_, e)) => Poll::Ready(Err(e)),
                Err(SendNowaitError::Full(v)) => {
                    slot = Some(v);
                    self.core.host_room.register(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// A handle with which any host code (a third party) can cancel this pair's host task:
    /// always the link's own task, whichever task (or none) calls this, also from the target
    /// function before the task runs. Example on [`Canceller`].
    pub fn canceller(&self) -> Canceller {
        Canceller { task: self.core.number.clone() }
    }
}

/// Cancels a linked host task from outside the pair (a third party), made by
/// [`HostChannel::canceller`]. The guest's block is interrupted at once with
/// [`Error::HostCancelled`] carrying the reason (unlike the guest's own
/// [`cancel_host_task`](LinkedTaskChannel::cancel_host_task), which just ends the channel).
///
/// ```
/// use infect::{Error, guest, host::{self, Host}, time::{Instant, VirtualClock}};
/// use infect::to_host::{self, HostChannel, LinkOpts};
/// use std::{rc::Rc, time::Duration};
///
/// async fn watched(chan: HostChannel<(), (), ()>) -> infect::Result<()> {
///     let canceller = chan.canceller();
///     // Some other host code (here a host task) decides after 5 ms that the task must stop.
///     host::spawn(async move {
///         let _ = host::sleep(Duration::from_millis(5)).await;
///         canceller.cancel("operator said stop");
///     })
///     .expect("on a host")
///     .detach();
///     chan.started_nowait(())?;
///     host::sleep(Duration::from_secs(60)).await?;
///     Ok(())
/// }
///
/// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
/// let (out, at) = host.run_guest(async {
///     let out = to_host::open_channel_from(watched, LinkOpts::new(), async |_chan, ()| {
///         guest::sleep_forever().await
///     })
///     .await;
///     Ok((out, guest::current_time()))
/// })?;
/// assert_eq!(out, Err(Error::HostCancelled { reason: "operator said stop".into() }));
/// assert_eq!(at, Instant::ZERO + Duration::from_millis(5));
/// # Ok::<(), infect::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Canceller {
    /// The link's host task id, shared with the pair (0 until it is spawned).
    task: Rc<Cell<u64>>,
}

impl Canceller {
    /// Cancels the task with `reason`; the guest side will see [`Error::HostCancelled`] (and
    /// its block is interrupted at once). Nothing happens once the task has finished.
    ///
    /// Example on [`Canceller`].
    pub fn cancel(&self, reason: &str) {
        let id = self.task.get();
        if id != 0 {
            host::cancel_task(id, reason);
        }
    }
}

/// The host task's future: the target, plus the guard that reports how it ended.
struct HostSide<F> {
    fut: F,
    guard: EndGuard,
}

/// Reports the host task's end to the link exactly once: from its result, or, if the task is
/// dropped first, as cancelled with the reason it saw.
struct EndGuard {
    core: Rc<dyn EndSink>,
    result: Rc<dyn ResultSink>,
    seen: Option<Cancelled>,
    done: bool,
}

trait EndSink {
    fn ended(&self, end: HostEnd);
}

impl<In, Out, S> EndSink for Core<In, Out, S> {
    fn ended(&self, end: HostEnd) {
        let interrupt = self.link.borrow_mut().host_ended(end);
        crate::log::debug!("link", signal = "host_end", pair = self.number.get());
        host::with_trace(|t| t.record(TraceEvent::Link("host_end", self.number.get())));
        if interrupt && let Some(scope) = &self.block_scope {
            // Transition 9: the host's end cancels the block wherever it waits.
            crate::log::debug!("link", signal = "interrupt", pair = self.number.get());
            host::with_trace(|t| t.record(TraceEvent::Link("interrupt", self.number.get())));
            scope.cancel();
        }
        self.wake_guest();
    }
}

trait ResultSink {
    fn as_any(&self) -> &dyn core::any::Any;
}

impl<R: 'static> ResultSink for RefCell<Option<R>> {
    fn as_any(&self) -> &dyn core::any::Any {
        self
    }
}

impl<F, R> Future for HostSide<F>
where
    F: Future<Output = Result<R>>,
    R: 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: `fut` is structurally pinned (never moved out; no Drop impl on HostSide moves
        // it); `guard` is not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above.
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        match fut.poll(cx) {
            Poll::Ready(r) => {
                let end = match r {
                    Ok(v) => {
                        if let Some(cell) = this.guard.result.as_any().downcast_ref::<RefCell<Option<R>>>() {
                            *cell.borrow_mut() = Some(v);
                        }
                        HostEnd::Returned
                    }
                    Err(Error::HostTaskCancelled(c)) => HostEnd::Cancelled { reason: c.reason },
                    Err(e) => HostEnd::Failed(e),
                };
                this.guard.done = true;
                this.guard.core.ended(end);
                Poll::Ready(())
            }
            Poll::Pending => {
                if let Err(c) = host::check_cancelled() {
                    this.guard.seen = Some(c);
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if !self.done {
            let reason = match self.seen.take() {
                Some(c) => c.reason,
                None => alloc::string::String::from("host task dropped"),
            };
            self.core.ended(HostEnd::Cancelled { reason });
        }
    }
}
