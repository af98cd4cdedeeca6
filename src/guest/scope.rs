//! Cancel scopes: trio's cancellation, with `Result` in place of exceptions.
//!
//! Invariants:
//! - Scopes form a tree through `parent`, fixed when a scope is first entered (its parent is
//!   the scope that was current in the entering task). A task's root scope is its nursery's.
//! - A scope is *effectively cancelled* when it, or an ancestor reached without crossing a
//!   shielded scope, has `cancel_called`. Every cancellation-aware guest await checks this
//!   first and returns [`Error::Cancelled`] while it holds: cancellation is sticky, so async
//!   clean-up that awaits outside a shield sees it again.
//! - A scope *catches* an [`Error::Cancelled`] leaving its body iff its own `cancel_called` is
//!   set: the innermost cancelled scope catches, and code above it continues normally.
//! - A deadline is a timer armed while the scope is entered; when it fires, it sets
//!   `cancel_called` (and remembers it was the deadline, for [`fail_after`]). A deadline that
//!   has already passed when the scope is entered (or when it is set) cancels the scope at once,
//!   without a timer, so even the body's first await sees it (trio's `__enter__` check).
//! - Any change that can make a scope effectively cancelled (cancel, deadline, unshield) wakes
//!   every task blocked inside it, so no cancelled task stays asleep: a task blocked at an
//!   infect await is noted there by [`check_cancel`], one blocked in foreign futures by the
//!   innermost [`Enforced`] watcher around it.
//! - Foreign futures ([`Enforced`]): every scope body, nursery block and nursery child is
//!   watched; a poll that ends `Pending` in an effectively cancelled scope without having parked
//!   at any of infect's awaits is blocked in foreign futures only, and is dropped there in favour
//!   of `Err(Cancelled)`. A shielded scope that is not itself cancelled counts as a park for the
//!   scopes around it: nothing under a shield is dropped.
//! - An error delivered to a task ([`TaskRef::deliver`](super::sched::TaskRef::deliver)) is
//!   not a cancellation and ignores scopes: [`check_cancel`] returns it first, once (also in a
//!   shield); only a task blocked in foreign futures falls back to a scope's cancellation (see
//!   the [guest module docs](super#errors-delivered-to-a-task)).

use alloc::rc::{Rc, Weak};
use core::cell::{Cell, OnceCell, RefCell};
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use super::sched::{Local, with_local};
use crate::time::Instant;
use crate::timers::TimerKey;
use crate::{Error, Result};

pub(crate) struct ScopeInner {
    /// Fixed on first entry; `None` for a run's root scope and for a never-entered scope.
    parent: OnceCell<Rc<ScopeInner>>,
    cancel_called: Cell<bool>,
    by_deadline: Cell<bool>,
    deadline: Cell<Instant>,
    shield: Cell<bool>,
    pub(super) caught: Cell<bool>,
    timer: Cell<Option<TimerKey>>,
    /// The run the scope was entered in (empty before entry and for standalone scopes).
    local: RefCell<Weak<Local>>,
    entered: Cell<bool>,
    exited: Cell<bool>,
    /// For the debug dump: the id and owner task the run gave the scope on entry (0 before,
    /// and for a run's root scope), and where its nursery was opened if it is a nursery's.
    id: Cell<u64>,
    owner: Cell<u64>,
    pub(super) nursery_at: Cell<Option<&'static core::panic::Location<'static>>>,
}

impl ScopeInner {
    fn new() -> ScopeInner {
        ScopeInner {
            parent: OnceCell::new(),
            cancel_called: Cell::new(false),
            by_deadline: Cell::new(false),
            deadline: Cell::new(Instant::NEVER),
            shield: Cell::new(false),
            caught: Cell::new(false),
            timer: Cell::new(None),
            local: RefCell::new(Weak::new()),
            entered: Cell::new(false),
            exited: Cell::new(false),
            id: Cell::new(0),
            owner: Cell::new(0),
            nursery_at: Cell::new(None),
        }
    }

    /// The id the run gave the scope when it was entered (0: the run's root scope).
    pub(crate) fn id(&self) -> u64 {
        self.id.get()
    }

    /// The scope's state for the debug dump.
    pub(crate) fn state(&self) -> super::ScopeState {
        super::ScopeState {
            id: self.id.get(),
            parent: self.parent.get().map_or(0, |p| p.id.get()),
            owner: self.owner.get(),
            deadline: self.deadline.get(),
            shield: self.shield.get(),
            cancel_called: self.cancel_called.get(),
            by_deadline: self.by_deadline.get(),
            effectively_cancelled: self.effectively_cancelled(),
            nursery_at: self.nursery_at.get(),
        }
    }

    pub(crate) fn root() -> Rc<ScopeInner> {
        Rc::new(ScopeInner::new())
    }

    /// Cancelled here or above, up to the first shield.
    pub(crate) fn effectively_cancelled(&self) -> bool {
        let mut s = self;
        loop {
            if s.cancel_called.get() {
                return true;
            }
            if s.shield.get() {
                return false;
            }
            match s.parent.get() {
                Some(p) => s = p,
                None => return false,
            }
        }
    }

    /// Whether the scope's body has finished (the scope can no longer be blocked in).
    pub(crate) fn is_exited(&self) -> bool {
        self.exited.get()
    }

    pub(crate) fn deadline_fired(&self) {
        self.timer.set(None);
        if !self.cancel_called.get() && !self.exited.get() {
            self.by_deadline.set(true);
            self.cancel_called.set(true);
        }
    }

    fn local(&self) -> Option<Rc<Local>> {
        self.local.borrow().upgrade()
    }

    fn rearm(self: &Rc<Self>) {
        let Some(local) = self.local() else { return };
        if let Some(k) = self.timer.take() {
            local.disarm(k);
        }
        let d = self.deadline.get();
        let live = self.entered.get() && !self.exited.get() && !self.cancel_called.get();
        if live && d != Instant::NEVER && d <= local.now() {
            // Already expired (on entry, as trio's `__enter__` checks, or moved into the past):
            // cancel at once rather than through a timer that would only fire at the next tick,
            // after the body's first await had already passed.
            self.deadline_fired();
            local.timers_changed();
            local.wake_cancelled();
        } else if live && d != Instant::NEVER {
            let key = local.arm(d, Rc::downgrade(self));
            self.timer.set(Some(key));
        } else {
            local.timers_changed();
        }
    }
}

/// A trio cancel scope. Clone it to cancel or move its deadline from elsewhere (another guest
/// task, or host code on the same thread). The rules (the scope tree, what is effectively
/// cancelled, who catches) are in the [guest module docs](super#cancel-scopes).
///
/// ```
/// use infect::guest::{self, CancelScope};
/// use core::time::Duration;
/// let r = guest::run(async {
///     let scope = CancelScope::new();
///     scope.cancel();
///     let out = scope.run(async { guest::sleep(Duration::from_secs(1)).await?; Ok(1) }).await?;
///     assert!(scope.cancelled_caught());
///     Ok(out)
/// });
/// assert_eq!(r, Ok(None));
/// ```
///
/// A deadline, moved from another task; a shield that lets clean-up wait:
///
/// ```
/// use infect::{Error, guest::{self, CancelScope, GuestConfig}, time::{Instant, VirtualClock}};
/// use std::{rc::Rc, time::Duration};
/// let secs = |s| Instant::ZERO + Duration::from_secs(s);
/// let r = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async move {
///     let scope = CancelScope::with_deadline(secs(10));
///     assert_eq!(scope.deadline(), secs(10));
///     let out = guest::open_nursery(async |n| {
///         let s = scope.clone();
///         n.start_soon(async move {
///             guest::sleep(Duration::from_secs(1)).await?;
///             s.set_deadline(secs(2)); // takes effect at once
///             Ok(())
///         })?;
///         scope
///             .run(async {
///                 let e = guest::sleep_forever().await.unwrap_err();
///                 assert_eq!(e, Error::Cancelled);
///                 // Clean-up that must wait: a shield keeps the cancellation out.
///                 let shield = CancelScope::shielded();
///                 assert!(shield.shield());
///                 shield.run(guest::sleep(Duration::from_secs(1))).await?;
///                 Err::<(), _>(e)
///             })
///             .await
///     })
///     .await?;
///     assert_eq!(out, Some(None)); // the nursery finished, the scope caught its deadline
///     assert!(scope.cancel_called() && scope.cancelled_caught());
///     Ok(guest::current_time())
/// });
/// assert_eq!(r, Ok(secs(3))); // deadline at 2 s, plus 1 s of shielded clean-up
/// ```
#[derive(Clone)]
pub struct CancelScope {
    pub(crate) inner: Rc<ScopeInner>,
}

impl core::fmt::Debug for CancelScope {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CancelScope")
            .field("cancel_called", &self.cancel_called())
            .field("deadline", &self.deadline())
            .field("shield", &self.shield())
            .field("cancelled_caught", &self.cancelled_caught())
            .finish()
    }
}

impl Default for CancelScope {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelScope {
    /// A scope with no deadline, not shielded.
    pub fn new() -> CancelScope {
        CancelScope { inner: Rc::new(ScopeInner::new()) }
    }

    /// A scope that cancels itself at `deadline` (on the guest's clock).
    pub fn with_deadline(deadline: Instant) -> CancelScope {
        let s = CancelScope::new();
        s.inner.deadline.set(deadline);
        s
    }

    /// A shielded scope: cancellation from outside does not reach its body.
    pub fn shielded() -> CancelScope {
        let s = CancelScope::new();
        s.inner.shield.set(true);
        s
    }

    /// Cancels the scope: every cancellation-aware await in its body returns
    /// [`Error::Cancelled`], now and until the body leaves the scope. Idempotent.
    pub fn cancel(&self) {
        if self.inner.cancel_called.replace(true) || self.inner.exited.get() {
            return;
        }
        crate::log::debug!("guest.scope_cancel");
        if let Some(local) = self.inner.local() {
            if let Some(k) = self.inner.timer.take() {
                local.disarm(k);
                local.timers_changed();
            }
            local.wake_cancelled();
        }
    }

    /// Whether [`cancel`](Self::cancel) was called or the deadline passed.
    pub fn cancel_called(&self) -> bool {
        self.inner.cancel_called.get()
    }

    /// Whether this scope caught the cancellation of its body.
    pub fn cancelled_caught(&self) -> bool {
        self.inner.caught.get()
    }

    /// The deadline ([`Instant::NEVER`] if none).
    pub fn deadline(&self) -> Instant {
        self.inner.deadline.get()
    }

    /// Moves the deadline; takes effect at once, also when called from host code.
    pub fn set_deadline(&self, deadline: Instant) {
        self.inner.deadline.set(deadline);
        self.inner.rearm();
    }

    /// Whether the scope is shielded.
    pub fn shield(&self) -> bool {
        self.inner.shield.get()
    }

    /// Shields or unshields the scope; unshielding inside a cancelled scope wakes the body.
    pub fn set_shield(&self, shield: bool) {
        self.inner.shield.set(shield);
        if !shield && let Some(local) = self.inner.local() {
            local.wake_cancelled();
        }
    }

    /// Runs `body` inside this scope. `Ok(Some(v))` if it finished, `Ok(None)` if this scope
    /// caught its cancellation, `Err(e)` for any other error (including a cancellation that
    /// belongs to an enclosing scope).
    ///
    /// A scope is entered once (as in trio): running it again fails at once with an error of
    /// kind `ScopeReused`, without running `body`.
    pub async fn run<T>(&self, body: impl Future<Output = Result<T>>) -> Result<Option<T>> {
        if self.inner.entered.get() {
            return Err(Error::ScopeReused);
        }
        let r = Enter::new(self.inner.clone(), Enforced::new(body)).await;
        match r {
            Ok(v) => Ok(Some(v)),
            Err(Error::Cancelled) if self.inner.cancel_called.get() => {
                self.inner.caught.set(true);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) fn enter<F: Future>(&self, body: F) -> Enter<F> {
        Enter::new(self.inner.clone(), body)
    }

    pub(crate) fn cancelled_by_deadline(&self) -> bool {
        self.inner.by_deadline.get()
    }
}

/// The future that runs a body with a scope current (no result interpretation).
pub(crate) struct Enter<F> {
    scope: Rc<ScopeInner>,
    body: F,
}

impl<F> Enter<F> {
    fn new(scope: Rc<ScopeInner>, body: F) -> Enter<F> {
        Enter { scope, body }
    }
}

impl<F: Future> Future for Enter<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `body` is structurally pinned: it is never moved out of `self` and `Enter` has
        // no Drop impl that moves it; `scope` is not pinned (an `Rc`, only cloned).
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above; `this` was obtained from a pinned reference.
        let body = unsafe { Pin::new_unchecked(&mut this.body) };
        let scope = &this.scope;
        let Some(local) = with_local(Rc::clone) else {
            // Polled outside a guest task: the scope is inert.
            return body.poll(cx);
        };
        if !scope.entered.replace(true) {
            if let Some(parent) = local.current_scope() {
                let _ = scope.parent.set(parent);
            }
            *scope.local.borrow_mut() = Rc::downgrade(&local);
            let (id, owner) = local.register_scope(scope);
            scope.id.set(id);
            scope.owner.set(owner);
            scope.rearm();
        }
        let prev = local.swap_scope(Some(scope.clone()));
        let r = body.poll(cx);
        if r.is_pending() && scope.shield.get() && !scope.effectively_cancelled() {
            // A shield protects whatever its body waits in, foreign futures included: to the
            // enclosing (cancelled) scopes this counts as a wait at one of infect's awaits.
            crate::cx::note_park();
        }
        local.swap_scope(prev);
        if r.is_ready() {
            scope.exited.set(true);
            if let Some(k) = scope.timer.take()
                && let Some(local) = scope.local()
            {
                local.disarm(k);
            }
        }
        r
    }
}

/// Runs `body` with a deadline `d` from now (trio's `move_on_after`); `Ok(Some(v))` if it
/// finished, `Ok(None)` if the deadline cancelled it.
///
/// ```
/// use infect::{guest::{self, GuestConfig}, time::VirtualClock};
/// use std::{rc::Rc, time::Duration};
/// let r = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async {
///     let quick = guest::move_on_after(Duration::from_secs(5), async { Ok("in time") }).await?;
///     let slow = guest::move_on_after(Duration::from_secs(5), async {
///         guest::sleep(Duration::from_secs(60)).await?;
///         Ok("late")
///     })
///     .await?;
///     Ok((quick, slow, guest::current_time().as_nanos()))
/// });
/// assert_eq!(r, Ok((Some("in time"), None, 5_000_000_000)));
/// ```
pub async fn move_on_after<T>(d: Duration, body: impl Future<Output = Result<T>>) -> Result<Option<T>> {
    move_on_at(super::current_time() + d, body).await
}

/// Runs `body` with an absolute deadline (trio's `move_on_at`); `Ok(None)` if the deadline
/// cancelled it. A deadline already past cancels the body's first await.
///
/// ```
/// use infect::{guest::{self, GuestConfig}, time::{Instant, VirtualClock}};
/// use std::{rc::Rc, time::Duration};
/// let r = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async {
///     let past = guest::move_on_at(Instant::ZERO, guest::checkpoint()).await?;
///     let at = Instant::ZERO + Duration::from_millis(40);
///     let later = guest::move_on_at(at, guest::sleep_forever()).await?;
///     Ok((past, later, guest::current_time().as_nanos()))
/// });
/// assert_eq!(r, Ok((None, None, 40_000_000)));
/// ```
pub async fn move_on_at<T>(deadline: Instant, body: impl Future<Output = Result<T>>) -> Result<Option<T>> {
    CancelScope::with_deadline(deadline).run(body).await
}

/// Runs `body` with a deadline `d` from now (trio's `fail_after`); [`Error::TooSlow`] if the
/// deadline cancelled it (a `cancel()` of an enclosing scope still comes out as
/// `Cancelled`).
///
/// ```
/// use infect::{Error, guest::{self, GuestConfig}, time::VirtualClock};
/// use std::{rc::Rc, time::Duration};
/// let r = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async {
///     let ok = guest::fail_after(Duration::from_secs(1), async { Ok(1) }).await?;
///     let late = guest::fail_after(Duration::from_secs(1), guest::sleep_forever()).await;
///     assert!(matches!(late, Err(Error::TooSlow)));
///     Ok((ok, guest::current_time().as_nanos()))
/// });
/// assert_eq!(r, Ok((1, 1_000_000_000)));
/// ```
pub async fn fail_after<T>(d: Duration, body: impl Future<Output = Result<T>>) -> Result<T> {
    fail_at(super::current_time() + d, body).await
}

/// Runs `body` with an absolute deadline (trio's `fail_at`); [`Error::TooSlow`] if the
/// deadline cancelled it.
///
/// ```
/// use infect::{Error, guest::{self, GuestConfig}, time::{Instant, VirtualClock}};
/// use std::{rc::Rc, time::Duration};
/// let at = Instant::ZERO + Duration::from_secs(3);
/// let r = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async move {
///     guest::fail_at(at, guest::sleep(Duration::from_secs(4))).await
/// });
/// assert!(matches!(r, Err(Error::TooSlow)));
/// ```
pub async fn fail_at<T>(deadline: Instant, body: impl Future<Output = Result<T>>) -> Result<T> {
    let scope = CancelScope::with_deadline(deadline);
    match scope.run(body).await? {
        Some(v) => Ok(v),
        None if scope.cancelled_by_deadline() => Err(Error::TooSlow),
        None => Err(Error::Cancelled),
    }
}

/// The cancellation check of every cancellation-aware guest await: `Err(Cancelled)` if the
/// current task's current scope is effectively cancelled. Outside a guest task: `Ok`.
/// Also notes the scope the task may block in, so that cancelling it wakes the task.
///
/// An await that then returns `Pending` must also count as a park at one of infect's awaits
/// ([`crate::cx::note_park`]; [`Waiters::register`](crate::sync::Waiters::register) does it),
/// so that a cancelled scope does not take it for a foreign future (see [`Enforced`]). Passing
/// the check alone does not count: an await that completes at once does not wait anywhere.
///
/// An error delivered to the task ([`TaskRef::deliver`](super::sched::TaskRef::deliver)) comes
/// first, once, whatever the scope (also in a shield): the check takes it and returns it.
#[inline]
pub(crate) fn check_cancel() -> Result<()> {
    check(true)
}

/// [`check_cancel`] for a caller that only wants to know whether its scope is cancelled: a
/// delivered error stays for the next await that can return it.
#[cfg(feature = "std")]
pub(crate) fn check_cancel_only() -> Result<()> {
    check(false)
}

#[inline]
fn check(take: bool) -> Result<()> {
    // The common case without building (and moving) a `Result` the size of an `Error`: no
    // delivered error waits, and the scope is not cancelled.
    let clear = with_local(|local| {
        let clear = local.no_raise_waiting() && !local.current_scope_cancelled();
        if clear {
            local.note_blocked();
        }
        clear
    });
    if clear != Some(false) {
        return Ok(());
    }
    check_slow(take)
}

/// [`check`] once a delivered error may wait or the scope is cancelled (out of line).
#[cold]
#[inline(never)]
fn check_slow(take: bool) -> Result<()> {
    with_local(|local| {
        if take && let Some(e) = local.take_raise() {
            return Err(e);
        }
        if local.current_scope_cancelled() {
            Err(Error::Cancelled)
        } else {
            local.note_blocked();
            Ok(())
        }
    })
    .unwrap_or(Ok(()))
}

/// Enforces a cancellation on a body that waits outside infect's awaits (the guest's rule for
/// foreign futures, see the [module docs](super#cancellation-and-foreign-futures)).
///
/// Each poll of the body is watched through the thread's park count: if the poll ends `Pending`
/// without any of infect's awaits having parked (or passed a cancellation check) inside it, the
/// body is blocked in foreign futures only. Then, if the current scope is effectively cancelled,
/// the body is dropped on the spot and `Err(Cancelled)` returned in its place, as if the foreign
/// future had returned it; otherwise the task notes the current scope as the one it blocks in,
/// so that cancelling it (or its deadline) wakes the task even though no infect await will.
///
/// A body that parks at any infect await (a cancellable one outside the cancellation, i.e. in a
/// shield; or an uncancellable wait, such as a nursery waiting for its children or a link
/// waiting for its host task) is never dropped: trio's checkpoints stay the path. Only awaits
/// that return `Pending` count: one that completed earlier in the same poll (a send into a
/// channel with room) does not hide a foreign future awaited after it.
pub(crate) struct Enforced<F> {
    body: Option<F>,
}

impl<F> Enforced<F> {
    pub(crate) fn new(body: F) -> Enforced<F> {
        Enforced { body: Some(body) }
    }
}

impl<T, F: Future<Output = Result<T>>> Future for Enforced<F> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        // SAFETY: `body` is structurally pinned: it is never moved out; it is only dropped in
        // place (by assigning `None`), which the pinning contract allows.
        let this = unsafe { self.get_unchecked_mut() };
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(Err(Error::Cancelled));
        };
        let before = crate::cx::parks();
        let notes = with_local(|l| l.foreign_notes.get());
        // SAFETY: see above; `this` came from a pinned reference and `body` is not moved.
        let r = unsafe { Pin::new_unchecked(body) }.poll(cx);
        if r.is_ready() || crate::cx::parks() != before {
            return r;
        }
        if blocked_in_foreign_futures(notes) {
            this.body = None;
            return Poll::Ready(Err(Error::Cancelled));
        }
        Poll::Pending
    }
}

/// [`Enforced`]'s cold half, once per build instead of once per body type: its body is pending
/// without having parked at one of infect's awaits (it waits in foreign futures only). `true`
/// if the current scope is cancelled (the body is to be dropped); otherwise, if this is the
/// innermost watcher (`notes` is still the run's count), notes where the task blocks.
#[inline(never)]
fn blocked_in_foreign_futures(notes: Option<u64>) -> bool {
    let cancelled = with_local(|local| {
        if local.current_scope_cancelled() {
            true
        } else {
            // Only the innermost watcher notes where the task blocks: its scope is the one
            // whose cancellation (or an enclosing one's, up to a shield) must wake the task.
            if Some(local.foreign_notes.get()) == notes {
                local.note_blocked();
                local.foreign_notes.set(local.foreign_notes.get().wrapping_add(1));
            }
            false
        }
    });
    cancelled == Some(true)
}
