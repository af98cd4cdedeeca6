//! Nurseries: trio's structured concurrency.
//!
//! Invariants:
//! - A nursery's block and its children run inside the nursery's own [`CancelScope`].
//! - The first error (from the block or any child) cancels that scope, so every sibling unwinds
//!   with [`Error::Cancelled`]; those consequential cancellations are caught by the nursery.
//! - `open_nursery` returns only when the block *and* every child have finished: no child
//!   outlives its nursery. Children are `'static` so that dropping a nursery future (the last
//!   resort) can never leave a child holding a dangling borrow.
//! - The nursery *is* its scope, so its own cancellation is not a failure (trio): after
//!   [`Nursery::cancel`] (or a deadline set on [`Nursery::cancel_scope`]) the block and the
//!   children unwind with [`Error::Cancelled`] and the nursery catches it, exactly as
//!   [`CancelScope::run`] does. A cancellation from an enclosing scope passes through.
//! - Result, the shape of [`CancelScope::run`]: no error → `Ok(Some(value))` (also when the
//!   nursery was cancelled after the block had returned its value: the children's
//!   cancellations are caught); the nursery's own cancellation interrupted the block →
//!   `Ok(None)`, and [`Nursery::cancel_scope`]`.cancelled_caught()` is `true`; one error → that
//!   error, bare; several independent errors → one [`ErrorGroup`](crate::ErrorGroup) in the
//!   order they happened.
//! - An error delivered to the opening task while it waits for the children (see the
//!   [guest module docs](super#errors-delivered-to-a-task)) is an error of the block: it
//!   cancels the children and comes out as above. One delivered to a task waiting in
//!   [`Nursery::start`] cancels the starting child and comes out of `start`.

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::{Future, poll_fn};
use core::task::{Poll, Waker};

use super::CancelScope;
use super::sched::{Local, with_local};
use super::scope::Enforced;
use crate::{Error, ErrorGroup, Result};

struct NurseryInner {
    scope: CancelScope,
    live: Cell<usize>,
    errors: RefCell<Vec<Error>>,
    waiter: RefCell<Option<Waker>>,
    closed: Cell<bool>,
    local: alloc::rc::Weak<Local>,
}

impl NurseryInner {
    fn fail(&self, e: Error) {
        let cancel = !e.is_cancelled();
        self.errors.borrow_mut().push(e);
        if cancel {
            self.scope.cancel();
        }
    }

    fn child_done(&self, r: Result<()>) {
        if let Err(e) = r {
            self.fail(e);
        }
        self.live.set(self.live.get() - 1);
        if self.live.get() == 0
            && let Some(w) = self.waiter.borrow_mut().take()
        {
            w.wake();
        }
    }
}

/// A child task started with [`Nursery::start_soon`]: its body, then the nursery told.
///
/// A plain future rather than an `async` block, which would keep the body twice over (as the
/// block's captured variable and as the awaited future), doubling the heap of every child.
struct Child<F> {
    /// Dropped as soon as it is done, before the nursery hears of it.
    body: Option<Enforced<F>>,
    inner: Rc<NurseryInner>,
}

impl<F: Future<Output = Result<()>>> Future for Child<F> {
    type Output = ();

    fn poll(self: core::pin::Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> Poll<()> {
        // SAFETY: `body` is structurally pinned: never moved out, only dropped in place (by
        // assigning `None`), which the pinning contract allows; `inner` is not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let Some(body) = this.body.as_mut() else { return Poll::Ready(()) };
        // SAFETY: see above.
        let r = core::task::ready!(unsafe { core::pin::Pin::new_unchecked(body) }.poll(cx));
        this.body = None;
        this.inner.child_done(r);
        Poll::Ready(())
    }
}

/// A handle to an open nursery ([`open_nursery`]): start child tasks in it, or cancel it.
/// Cheap to clone; a child may keep a clone to start siblings.
///
/// ```
/// use infect::{guest::{self, GuestConfig}, time::{Instant, VirtualClock}};
/// use std::{rc::Rc, time::Duration};
/// let r = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async {
///     guest::open_nursery(async |n| {
///         for secs in [1, 2, 3] {
///             let sibling = n.clone();
///             n.start_soon(async move {
///                 guest::sleep(Duration::from_secs(secs)).await?;
///                 if secs == 3 {
///                     // A child may start siblings through its clone of the handle.
///                     sibling.start_soon(async { guest::sleep(Duration::from_secs(1)).await })?;
///                 }
///                 Ok(())
///             })?;
///         }
///         assert_eq!(n.live_children(), 3);
///         // A deadline on the whole nursery (its own scope): not reached here.
///         n.cancel_scope().set_deadline(Instant::ZERO + Duration::from_secs(10));
///         Ok(())
///     })
///     .await?; // returns once the block and all four children are done
///     Ok(guest::current_time().as_nanos())
/// });
/// assert_eq!(r, Ok(4_000_000_000));
/// ```
#[derive(Clone)]
pub struct Nursery {
    inner: Rc<NurseryInner>,
}

impl core::fmt::Debug for Nursery {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Nursery")
            .field("live_children", &self.inner.live.get())
            .field("closed", &self.inner.closed.get())
            .finish()
    }
}

/// Opens a nursery around `body`; see the [`guest`](crate::guest) module docs for the rules.
///
/// `Ok(Some(v))`: the block returned `v` and nothing failed. `Ok(None)`: the nursery's own
/// cancellation ([`Nursery::cancel`], or its scope's deadline) interrupted the block; the nursery
/// caught it, as trio's does, and code after it goes on. `Err(e)`: a task or the block failed
/// (several failures: an [`ErrorGroup`](crate::ErrorGroup)), or an enclosing scope was cancelled.
///
/// ```
/// use infect::{Error, guest};
/// use core::time::Duration;
/// #[derive(Debug)]
/// struct Boom;
/// impl std::fmt::Display for Boom {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("child failed") }
/// }
/// impl std::error::Error for Boom {}
/// let r: Result<u32, Error> = guest::run(async {
///     guest::open_nursery(async |n| {
///         n.start_soon(async { Err(Error::user(Boom)) })?;
///         guest::sleep_forever().await?;
///         Ok(7)
///     })
///     .await
///     .map(|v| v.unwrap_or(0))
/// });
/// assert!(r.unwrap_err().downcast_ref::<Boom>().is_some()); // the child's own error
///
/// // Cancelling the nursery is the normal way to stop it: not a failure.
/// let r = guest::run(async {
///     let stopped = guest::open_nursery(async |n| {
///         let n2 = n.clone();
///         n.start_soon(async move {
///             guest::sleep(Duration::from_millis(5)).await?;
///             n2.cancel();
///             Ok(())
///         })?;
///         guest::sleep_forever().await?;
///         Ok("never")
///     })
///     .await?;
///     Ok(stopped)
/// });
/// assert_eq!(r, Ok(None));
/// ```
#[track_caller]
pub fn open_nursery<T, F>(body: F) -> impl Future<Output = Result<Option<T>>>
where
    F: AsyncFnOnce(&Nursery) -> Result<T>,
{
    let at = core::panic::Location::caller();
    crate::cx::at_location(at, open_nursery_at(body, at))
}

/// [`open_nursery`] for a caller that took its own caller's location (`actor::open_nursery`).
pub(crate) async fn open_nursery_at<T, F>(body: F, at: &'static core::panic::Location<'static>) -> Result<Option<T>>
where
    F: AsyncFnOnce(&Nursery) -> Result<T>,
{
    let local = with_local(Rc::downgrade).ok_or(Error::OutsideGuest)?;
    let scope = CancelScope::new();
    scope.inner.nursery_at.set(Some(at));
    let n = Nursery {
        inner: Rc::new(NurseryInner {
            scope: scope.clone(),
            live: Cell::new(0),
            errors: RefCell::new(Vec::new()),
            waiter: RefCell::new(None),
            closed: Cell::new(false),
            local,
        }),
    };
    // The scope stays entered until the last child has finished, not only while the block
    // runs: the children run inside it, so a deadline or a `cancel()` that reaches it after the
    // block returned must still wake them (an exited scope ignores both).
    let value = scope
        .enter(async {
            // The block gets the foreign-future rule of every scope body (`Enforced`); the wait
            // for the children below is an infect await and is never dropped.
            let value = match Enforced::new(body(&n)).await {
                Ok(v) => Some(v),
                Err(e) => {
                    n.inner.fail(e);
                    None
                }
            };
            // Wait for the children; this wait is not a cancellation point (children are being
            // cancelled if anything is, and we must outlive them). An error delivered to this
            // task meanwhile is taken here as an error of the block (trio): it cancels the
            // children and comes out once they have finished.
            poll_fn(|cx| {
                if n.inner.live.get() == 0 {
                    Poll::Ready(())
                } else {
                    if let Some(e) = with_local(|l| l.take_raise()).flatten() {
                        n.inner.fail(e);
                    }
                    *n.inner.waiter.borrow_mut() = Some(cx.waker().clone());
                    crate::cx::note_park();
                    Poll::Pending
                }
            })
            .await;
            value
        })
        .await;
    n.inner.closed.set(true);
    let mut errors = core::mem::take(&mut *n.inner.errors.borrow_mut());
    let real = errors.iter().any(|e| !e.is_cancelled());
    if real || scope.cancel_called() {
        // Cancellations that our own scope caused are ours to catch; next to a real error they
        // are only its consequences.
        let before = errors.len();
        errors.retain(|e| !e.is_cancelled());
        if !real && errors.len() < before {
            scope.inner.caught.set(true);
        }
    } else {
        errors.truncate(1);
    }
    match errors.len() {
        // `None`: our own cancellation interrupted the block (its `Cancelled` was caught above).
        0 => Ok(value),
        1 => Err(errors.pop().expect("one error")),
        _ => Err(Error::Group(ErrorGroup(errors))),
    }
}

impl Nursery {
    fn local(&self) -> Result<Rc<Local>> {
        if self.inner.closed.get() {
            return Err(Error::NurseryClosed);
        }
        self.inner.local.upgrade().ok_or_else(|| Error::NurseryClosed)
    }

    /// Starts `task` as a child. Its error, if any, cancels the nursery and comes out of
    /// `open_nursery`. `Err(NurseryClosed)` once the nursery has finished.
    pub fn start_soon(&self, task: impl Future<Output = Result<()>> + 'static) -> Result<()> {
        let local = self.local()?;
        self.inner.live.set(self.inner.live.get() + 1);
        let inner = self.inner.clone();
        // A child blocked in a foreign future when the nursery is cancelled is dropped there
        // (the guest's rule for foreign futures): the nursery still ends.
        local.spawn(Child { body: Some(Enforced::new(task)), inner }, self.inner.scope.inner.clone());
        Ok(())
    }

    /// Starts a child and waits until it calls [`TaskStatus::started`]; returns the value it
    /// passed. An error (or return) before `started` comes out of `start` instead of the
    /// nursery. If the caller is cancelled while waiting, the child is cancelled too.
    ///
    /// ```
    /// use infect::guest;
    /// let r = guest::run(async {
    ///     guest::open_nursery(async |n| {
    ///         let port = n.start(async |status| { status.started(8080u16); Ok(()) }).await?;
    ///         Ok(port)
    ///     })
    ///     .await
    /// });
    /// assert_eq!(r, Ok(Some(8080)));
    /// ```
    #[track_caller]
    pub fn start<V: 'static, F>(&self, task: F) -> impl Future<Output = Result<V>>
    where
        F: AsyncFnOnce(TaskStatus<V>) -> Result<()> + 'static,
    {
        crate::cx::at(async move {
            let local = self.local()?;
            let cell = Rc::new(StartCell { state: RefCell::new(StartState::Waiting), waiter: RefCell::new(None) });
            let status = TaskStatus { cell: cell.clone() };
            let child_scope = CancelScope::new();
            let inner = self.inner.clone();
            let cs = child_scope.clone();
            let cell2 = cell.clone();
            self.inner.live.set(self.inner.live.get() + 1);
            local.spawn(
                async move {
                    let r = cs.enter(Enforced::new(task(status))).await;
                    let started = matches!(*cell2.state.borrow(), StartState::Started(_) | StartState::Taken);
                    if started {
                        inner.child_done(r);
                    } else {
                        let e = match r {
                            Ok(()) => Error::StartedNotCalled,
                            Err(e) => e,
                        };
                        *cell2.state.borrow_mut() = StartState::Failed(e);
                        if let Some(w) = cell2.waiter.borrow_mut().take() {
                            w.wake();
                        }
                        inner.child_done(Ok(()));
                    }
                },
                self.inner.scope.inner.clone(),
            );
            // An error delivered to this task while it waits: the child is cancelled as for a
            // cancellation, and the error comes out of `start` once the child has reported.
            let mut raised = None;
            poll_fn(|cx| {
                let mut st = cell.state.borrow_mut();
                match core::mem::replace(&mut *st, StartState::Taken) {
                    StartState::Started(_) | StartState::Failed(_) if raised.is_some() => {
                        Poll::Ready(Err(raised.take().expect("a raised error")))
                    }
                    StartState::Started(v) => Poll::Ready(Ok(v)),
                    StartState::Failed(e) => Poll::Ready(Err(e)),
                    other => {
                        *st = other;
                        drop(st);
                        match super::scope::check_cancel() {
                            Ok(()) => {}
                            Err(e) => {
                                if !e.is_cancelled() {
                                    raised = Some(e);
                                }
                                child_scope.cancel();
                            }
                        }
                        *cell.waiter.borrow_mut() = Some(cx.waker().clone());
                        crate::cx::note_park();
                        Poll::Pending
                    }
                }
            })
            .await
        })
    }

    /// Cancels the nursery: its block and every child. Not a failure: the nursery catches its
    /// own cancellation, and [`open_nursery`] returns `Ok(None)` if it interrupted the block (the
    /// block's value if the block had already returned).
    pub fn cancel(&self) {
        self.inner.scope.cancel();
    }

    /// The nursery's cancel scope (to set a deadline on the whole nursery, say).
    pub fn cancel_scope(&self) -> &CancelScope {
        &self.inner.scope
    }

    /// Number of children still running.
    pub fn live_children(&self) -> usize {
        self.inner.live.get()
    }
}

enum StartState<V> {
    Waiting,
    Started(V),
    Failed(Error),
    Taken,
}

struct StartCell<V> {
    state: RefCell<StartState<V>>,
    waiter: RefCell<Option<Waker>>,
}

/// Passed to a task started with [`Nursery::start`]: call [`started`](TaskStatus::started)
/// once it is ready.
pub struct TaskStatus<V> {
    cell: Rc<StartCell<V>>,
}

impl<V> core::fmt::Debug for TaskStatus<V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TaskStatus").finish_non_exhaustive()
    }
}

impl<V> TaskStatus<V> {
    /// Hands `value` to the `start` caller, which returns it. Consumes the status: a task
    /// can be started only once.
    pub fn started(self, value: V) {
        *self.cell.state.borrow_mut() = StartState::Started(value);
        if let Some(w) = self.cell.waiter.borrow_mut().take() {
            w.wake();
        }
    }
}
