//! The `poll(2)` reactor (std, Linux): fd readiness for a handful of descriptors, plus one
//! wake fd that other threads use to interrupt a parked loop.
//!
//! The reactor runs nothing. Its [`Readiness`] futures only *register wakers*, so they work
//! under any executor; whoever owns the thread's loop calls [`Reactor::park`] when it has
//! nothing to run, and `park` wakes the wakers of the descriptors that became ready. Timers
//! are not here: the loop owner keeps them in its own timer queue and passes the time to the
//! next deadline as `park`'s timeout.
//!
//! # Invariants
//!
//! **Who may touch what.** A [`Reactor`] is an `Rc` handle, so it and everything holding one
//! ([`Readiness`], [`fd::AsyncFd`], [`EnterGuard`]) stay on the thread that created it. Its
//! interest table sits in a `RefCell` that only three places borrow mutably:
//! [`Reactor::park`], `Readiness::poll` and `Readiness::drop` (the rest only read it). No
//! borrow is held while foreign code runs: wakers are woken *and dropped* only after it is
//! released, so a waker that polls or drops futures synchronously (a callback loop, a test) may
//! re-enter the reactor without a `BorrowMutError`. The only state shared across threads is
//! the wake fd and its `pending` flag, reached through [`Notifier`] (`Send + Sync`).
//!
//! **The life of an interest.** A `Readiness` registers an interest (descriptor, direction,
//! waker) when first polled and keeps it (updating the waker) while pending. `park` only
//! *marks* an interest fired (stores its `revents`) and takes its waker out to wake it; it
//! never removes one. Only the owning `Readiness` removes its interest: when it is polled
//! after the mark (it then completes) or when it is dropped. So a dropped future leaves
//! nothing behind, and a fired interest is never reported twice.
//!
//! **Registration order is the wake order.** Each interest gets its key from a counter that
//! only grows, when its future is first polled; the table is a `Vec` sorted by key (a new
//! interest is pushed at the end, so it stays sorted; a lookup is a binary search). `park`
//! builds the `pollfd` array from the table in key order, and after `poll(2)` walks the
//! array in the same order to collect wakers, then wakes them in that order. `poll(2)`
//! reports readiness per array slot, not in the order the kernel saw events, so nothing
//! about kernel timing leaks into the order: two descriptors ready at once are woken in the
//! order their futures were first polled, on every run. Re-polling with another waker keeps
//! the key and thus the place.
//!
//! **Level-triggered, never early.** `poll(2)` is level-triggered, so an interest registered
//! while its descriptor is already ready fires at the next `park`; no edge is lost. A
//! `Readiness` completes only after a `park` that saw its descriptor ready (`POLLHUP` and
//! `POLLERR` count as ready, so the reader then sees end-of-file or the error). Sub-millisecond
//! timeouts are rounded *up* to whole milliseconds, so `park` never returns before its timeout
//! because of rounding (a timer is never woken early).
//!
//! **The wake fd dedupe is correct across threads.** A [`Notifier`] shares the eventfd and an
//! `AtomicBool` `pending` with the reactor. `notify` does `pending.swap(true)` and writes to
//! the eventfd only if the flag was `false`; `park`, when `poll(2)` reports the eventfd
//! readable, first drains it (one `read` resets the counter) and *then* does
//! `pending.swap(false)`. The invariant: *while `pending` is `true`, either a token is in the
//! eventfd (or about to be written by the notifier that set the flag), or the reactor is
//! between its drain and its clear, inside a `park` that is about to return.* So no
//! notification is lost:
//! - a notifier that finds the flag `false` writes a token itself, which ends the current or
//!   the next `park`;
//! - a notifier that finds it `true` while the token is still in the eventfd is covered by
//!   that token;
//! - a notifier that finds it `true` after the drain but before the clear has its swap
//!   ordered before the clear. The clear is an acquire swap, so it reads the value of the
//!   latest notifier's release swap: everything that notifier did before `notify` (pushing
//!   onto a queue, say) is visible to the loop owner once this `park` returns.
//!
//! A notifier whose flag swap came before the clear but whose `write` lands after the drain
//! only leaves a stale token behind: one spurious early return later, never a lost wake-up.
//! N notifies before the reactor drains cost one `write(2)`.
//!
//! # Example
//!
//! ```
//! use infect::reactor::{Reactor, fd};
//! use std::{fs::File, io::Write, os::fd::AsRawFd, pin::pin, task::{Context, Poll, Waker}};
//! use std::time::Duration;
//!
//! let reactor = Reactor::new()?;
//! let (rx, tx) = fd::pipe()?;
//! let mut ready = pin!(reactor.readable(rx.as_raw_fd()));
//! let mut cx = Context::from_waker(Waker::noop());
//! assert!(ready.as_mut().poll(&mut cx).is_pending()); // registers the waker
//! File::from(tx).write_all(b"x")?;
//! assert_eq!(reactor.park(Some(Duration::from_secs(5)))?.woken, 1);
//! assert!(matches!(ready.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod fd;
pub(crate) mod sys;

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use libc::{c_int, c_short};

/// A `poll(2)` reactor for the current thread: fd readiness plus a cross-thread wake fd.
///
/// Cloning is cheap and yields another handle to the same reactor. It is `!Send`: a
/// reactor belongs to the thread whose loop parks on it; other threads get a [`Notifier`].
/// See the [module docs](self) for the invariants and a complete example. A [`Host`] and
/// [`guest::run`] each own one and make it current while their loop runs, so readiness
/// futures awaited inside them park on it; use one directly only to write your own loop.
///
/// [`Host`]: crate::host::Host
/// [`guest::run`]: crate::guest::run
#[derive(Clone)]
pub struct Reactor {
    inner: Rc<Inner>,
}

struct Inner {
    /// Shared with every [`Notifier`]; outlives the reactor if a notifier does.
    wake: Arc<WakeFd>,
    /// Touched only by this thread, never borrowed while foreign code runs.
    state: RefCell<State>,
}

struct State {
    /// The key of the next interest; only grows, so key order is registration order.
    next_key: u64,
    /// Registered interests, sorted by key (see [`Interests`]). Removed only by the owning
    /// [`Readiness`].
    interests: Interests,
    /// Scratch for [`Reactor::park`], kept to reuse the allocations: the `pollfd` array
    /// (slot 0 is the wake fd) and the table index of each further slot's interest.
    pollfds: Vec<libc::pollfd>,
    slots: Vec<usize>,
    /// Scratch for [`Reactor::park`]: the wakers to wake, in registration order.
    wakers: Vec<Waker>,
}

/// The interest table: `(key, interest)` pairs in key order. Keys only grow and each new one is
/// pushed at the end, so the order holds without sorting; a handful of entries (a pipe, a pidfd,
/// the signal pipe) make a binary search over a `Vec` cheaper than a tree, and registering or
/// removing one allocates nothing once the `Vec` has grown.
#[derive(Default)]
struct Interests(Vec<(u64, Interest)>);

impl Interests {
    fn push(&mut self, key: u64, interest: Interest) {
        debug_assert!(self.0.last().is_none_or(|(k, _)| *k < key), "keys only grow");
        self.0.push((key, interest));
    }

    fn get_mut(&mut self, key: u64) -> Option<&mut Interest> {
        let i = self.0.binary_search_by_key(&key, |(k, _)| *k).ok()?;
        Some(&mut self.0[i].1)
    }

    fn remove(&mut self, key: u64) -> Option<Interest> {
        let i = self.0.binary_search_by_key(&key, |(k, _)| *k).ok()?;
        Some(self.0.remove(i).1)
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// One registered wait: a descriptor, the `poll(2)` events asked for, and who to wake.
struct Interest {
    fd: RawFd,
    events: c_short,
    /// `Some` while waiting; taken by `park` when it fires.
    waker: Option<Waker>,
    /// `0` while waiting; the `revents` `poll(2)` reported once fired.
    revents: c_short,
}

impl Interest {
    fn waiting(&self) -> bool {
        self.revents == 0
    }
}

/// The eventfd that wakes a parked reactor, and the flag that deduplicates writes to it.
struct WakeFd {
    fd: OwnedFd,
    /// `true` from the first `notify` after a drain until the next drain. See the module docs.
    pending: AtomicBool,
}

impl WakeFd {
    fn notify(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            // EAGAIN (counter saturated) still leaves the eventfd readable, and nothing else
            // can fail on an open eventfd: either way a park will return.
            let _ = sys::write(self.fd.as_fd(), &1u64.to_ne_bytes());
        }
    }

    /// Called by `park` after `poll(2)` reported the eventfd readable. The order matters:
    /// drain first, clear second (see the module docs).
    fn drain(&self) {
        let mut counter = [0u8; 8];
        // One read resets the counter to zero. Only this thread reads the eventfd, so after
        // `poll(2)` reported it readable the read cannot find it empty (and if it did, the
        // only cost would be this spurious wake-up).
        let _ = sys::read(self.fd.as_fd(), &mut counter);
        self.pending.swap(false, Ordering::AcqRel);
    }
}

/// What one [`Reactor::park`] did (example there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Parked {
    /// How many fd wakers it woke.
    pub woken: usize,
    /// Whether it consumed the wake fd's token: a [`Notifier::notify`] came since the last
    /// drain (rarely, a stale token; see the module docs on the dedupe).
    pub notified: bool,
}

thread_local! {
    static CURRENT: RefCell<Option<Reactor>> = const { RefCell::new(None) };
}

/// Parks the loop that owns `reactor` until an fd is ready, a wake arrives, or `clock` reaches
/// `deadline`. Real I/O comes first: a clock that may autojump jumps to the deadline only when
/// a non-blocking poll found no fd ready either (every task of every loop is blocked). Other
/// clocks park in one `poll(2)`.
pub(crate) fn park_until(reactor: &Reactor, clock: &dyn crate::time::Clock, deadline: Option<crate::time::Instant>) {
    if deadline.is_some()
        && clock.may_autojump()
        && reactor.has_interests()
        && reactor.park(Some(Duration::ZERO)).map_or(0, |p| p.woken) > 0
    {
        return;
    }
    match deadline {
        Some(d) if clock.now() >= d => {}
        Some(d) if clock.autojump(d) => {}
        Some(d) => {
            let _ = reactor.park(Some(d - clock.now()));
        }
        None => {
            let _ = reactor.park(None);
        }
    }
}

/// The park gate of a loop that parks on a reactor: the `sleeping` flag that makes a producer
/// on another thread wake the loop only when it is parked (or about to park), so a wake that
/// the loop will see before it parks costs no syscall. The host and the standalone guest driver
/// park through it.
///
/// Dekker pairing: a producer publishes its work, then (fence) reads `sleeping`
/// ([`notify`](ParkGate::notify)); the loop sets `sleeping`, then (fence) looks for work
/// ([`park`](ParkGate::park)). The two fences make sure at least one of them sees the other's
/// write, so work is never left behind by a loop that parks without being woken.
pub(crate) struct ParkGate {
    sleeping: AtomicBool,
    notifier: Notifier,
}

impl ParkGate {
    /// A gate that wakes the loop through `notifier`.
    pub(crate) fn new(notifier: Notifier) -> ParkGate {
        ParkGate { sleeping: AtomicBool::new(false), notifier }
    }

    /// Producer side, after publishing work: wakes the loop if it is parked or about to park.
    pub(crate) fn notify(&self) {
        self.notify_if(|| true);
    }

    /// [`notify`](ParkGate::notify), when `needed()` also holds (asked only if the loop is
    /// parked or about to park: a producer on the loop's own thread needs no wake-up).
    pub(crate) fn notify_if(&self, needed: impl FnOnce() -> bool) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) && needed() {
            self.notifier.notify();
        }
    }

    /// Loop side: runs `park` unless `has_work()` (checked after the flag is raised) finds
    /// something to do.
    pub(crate) fn park(&self, has_work: impl FnOnce() -> bool, park: impl FnOnce()) {
        self.sleeping.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        if !has_work() {
            park();
        }
        self.sleeping.store(false, Ordering::SeqCst);
    }
}

impl Reactor {
    /// A new reactor with no interests. Opens one descriptor (the wake eventfd).
    ///
    /// ```
    /// let reactor = infect::reactor::Reactor::new()?;
    /// assert!(!reactor.has_interests());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new() -> io::Result<Reactor> {
        let wake = Arc::new(WakeFd { fd: sys::eventfd()?, pending: AtomicBool::new(false) });
        let state = RefCell::new(State {
            next_key: 0,
            interests: Interests::default(),
            pollfds: Vec::new(),
            slots: Vec::new(),
            wakers: Vec::new(),
        });
        Ok(Reactor { inner: Rc::new(Inner { wake, state }) })
    }

    /// A `Send + Sync + Clone` handle that any thread may use to make a parked `park` (or the
    /// next one) return promptly.
    ///
    /// ```
    /// let reactor = infect::reactor::Reactor::new()?;
    /// let notifier = reactor.notifier();
    /// std::thread::spawn(move || notifier.notify()).join().unwrap();
    /// assert!(reactor.park(None)?.notified); // returns at once: the token is there
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn notifier(&self) -> Notifier {
        Notifier { wake: Arc::clone(&self.inner.wake) }
    }

    /// A future that resolves once a [`park`](Self::park) saw `fd` readable (`POLLIN`, or
    /// `POLLHUP`/`POLLERR`, so that the reader then sees end-of-file or the error).
    ///
    /// It registers its waker when first polled and deregisters when dropped; several
    /// futures may wait on one descriptor. It resolves to an error only if `fd` is not open
    /// (`POLLNVAL`: `EBADF`). The caller keeps `fd` open while the future lives: a closed
    /// and reused number would be watched in its new role. Polled again after it resolved,
    /// the future registers anew.
    ///
    /// ```
    /// use infect::reactor::{Reactor, fd};
    /// use std::{os::fd::AsRawFd, pin::pin, task::{Context, Waker}};
    ///
    /// let reactor = Reactor::new()?;
    /// let (rx, _tx) = fd::pipe()?;
    /// let mut ready = pin!(reactor.readable(rx.as_raw_fd()));
    /// assert!(ready.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending());
    /// assert!(reactor.has_interests());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn readable(&self, fd: RawFd) -> Readiness {
        Readiness::new(self, fd, libc::POLLIN)
    }

    /// Like [`readable`](Self::readable), for `POLLOUT` (`POLLHUP`/`POLLERR` also count, so
    /// the writer then sees `EPIPE` or the error).
    ///
    /// ```
    /// use infect::reactor::{Reactor, fd};
    /// use std::{os::fd::AsRawFd, pin::pin, task::{Context, Waker}, time::Duration};
    ///
    /// let reactor = Reactor::new()?;
    /// let (_rx, tx) = fd::pipe()?;
    /// let mut ready = pin!(reactor.writable(tx.as_raw_fd()));
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert!(ready.as_mut().poll(&mut cx).is_pending());
    /// assert_eq!(reactor.park(Some(Duration::ZERO))?.woken, 1); // an empty pipe is writable
    /// assert!(ready.as_mut().poll(&mut cx).is_ready());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn writable(&self, fd: RawFd) -> Readiness {
        Readiness::new(self, fd, libc::POLLOUT)
    }

    /// Waits in `poll(2)` over every waiting interest and the wake fd, for at most `timeout`
    /// (`None`: until something happens; `Some(Duration::ZERO)`: not at all). Timeouts are
    /// rounded up to whole milliseconds and capped at `i32::MAX` ms (about 24 days; the
    /// caller loops anyway).
    ///
    /// Then it marks the ready interests fired, drains the wake fd, and wakes the fired
    /// interests' wakers in registration order, after releasing its own state (so a waker
    /// may re-enter the reactor). A signal interrupting `poll(2)` (`EINTR`) returns
    /// `Ok(Parked::default())`: the caller loops.
    ///
    /// ```
    /// use std::time::Duration;
    /// let reactor = infect::reactor::Reactor::new()?;
    /// let parked = reactor.park(Some(Duration::ZERO))?;
    /// assert_eq!(parked, infect::reactor::Parked { woken: 0, notified: false });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn park(&self, timeout: Option<Duration>) -> io::Result<Parked> {
        crate::cx::refuse_in_simulation(|| "a real wait on the reactor (a loop of its own)".into());
        let mut state = self.inner.state.borrow_mut();
        let State { interests, pollfds, slots, wakers, .. } = &mut *state;
        pollfds.clear();
        slots.clear();
        pollfds.push(libc::pollfd { fd: self.inner.wake.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        for (i, (_, interest)) in interests.0.iter().enumerate().filter(|(_, (_, i))| i.waiting()) {
            slots.push(i);
            pollfds.push(libc::pollfd { fd: interest.fd, events: interest.events, revents: 0 });
        }
        match sys::poll(pollfds, timeout_ms(timeout)) {
            Ok(0) => return Ok(Parked::default()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Parked::default()),
            Err(e) => return Err(e),
        }
        let notified = pollfds[0].revents != 0;
        for (slot, &i) in pollfds[1..].iter().zip(slots.iter()) {
            if slot.revents == 0 {
                continue;
            }
            // The same entry: we have held the borrow since building the array, so the table
            // has not changed (the indices walk it in key order).
            let interest = &mut interests.0[i].1;
            interest.revents = slot.revents;
            wakers.extend(interest.waker.take());
        }
        let mut woken = mem::take(wakers);
        drop(state);

        if notified {
            self.inner.wake.drain();
        }
        let parked = Parked { woken: woken.len(), notified };
        for waker in woken.drain(..) {
            waker.wake();
        }
        // Give the (empty) buffer back to reuse its capacity, unless a re-entrant park
        // already put one there.
        let mut state = self.inner.state.borrow_mut();
        if state.wakers.capacity() == 0 {
            state.wakers = woken;
        }
        Ok(parked)
    }

    /// Whether any interest is still waiting for readiness (registered by a live, pending
    /// [`Readiness`] and not yet fired). A loop owner with no runnable task, no timer and no
    /// interest would park forever.
    ///
    /// ```
    /// let reactor = infect::reactor::Reactor::new()?;
    /// assert!(!reactor.has_interests());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn has_interests(&self) -> bool {
        self.inner.state.borrow().interests.0.iter().any(|(_, i)| i.waiting())
    }

    /// The interests still waiting, in registration order: each descriptor and whether it
    /// waits to read (`true`) or to write (for the debug dump).
    pub(crate) fn waiting_interests(&self) -> Vec<(RawFd, bool)> {
        let state = self.inner.state.borrow();
        let waiting = state.interests.0.iter().filter(|(_, i)| i.waiting());
        waiting.map(|(_, i)| (i.fd, i.events & libc::POLLIN != 0)).collect()
    }

    /// The reactor that this thread's loop owner [entered](Self::enter), if any.
    ///
    /// ```
    /// use infect::reactor::Reactor;
    /// assert!(Reactor::current().is_none());
    /// let reactor = Reactor::new()?;
    /// let guard = reactor.enter();
    /// assert!(Reactor::current().is_some_and(|r| r.same_as(&reactor)));
    /// drop(guard);
    /// assert!(Reactor::current().is_none());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn current() -> Option<Reactor> {
        CURRENT.with(|current| current.borrow().clone())
    }

    /// Makes this reactor [current](Self::current) on this thread until the guard drops,
    /// which restores the previous one. Guards nest; drop them in reverse order.
    ///
    /// ```
    /// use infect::reactor::Reactor;
    /// let (a, b) = (Reactor::new()?, Reactor::new()?);
    /// let outer = a.enter();
    /// {
    ///     let _inner = b.enter();
    ///     assert!(Reactor::current().is_some_and(|r| r.same_as(&b)));
    /// }
    /// assert!(Reactor::current().is_some_and(|r| r.same_as(&a)));
    /// drop(outer);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn enter(&self) -> EnterGuard {
        let previous = CURRENT.with(|current| current.replace(Some(self.clone())));
        EnterGuard { previous }
    }

    /// Whether `self` and `other` are handles to the same reactor.
    ///
    /// ```
    /// let reactor = infect::reactor::Reactor::new()?;
    /// assert!(reactor.same_as(&reactor.clone()));
    /// assert!(!reactor.same_as(&infect::reactor::Reactor::new()?));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn same_as(&self, other: &Reactor) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("Reactor");
        out.field("wake_fd", &self.inner.wake.fd.as_raw_fd());
        if let Ok(state) = self.inner.state.try_borrow() {
            out.field("interests", &state.interests.len());
        }
        out.finish()
    }
}

/// Milliseconds for `poll(2)`: `-1` for "forever", sub-millisecond parts rounded up.
fn timeout_ms(timeout: Option<Duration>) -> c_int {
    match timeout {
        None => -1,
        Some(timeout) => c_int::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(c_int::MAX),
    }
}

/// Wakes a [`Reactor`] from any thread. Cheap to clone; `Send + Sync`.
///
/// ```
/// let reactor = infect::reactor::Reactor::new()?;
/// let notifier = reactor.notifier();
/// notifier.notify();
/// notifier.notify(); // deduplicated: one token
/// assert!(reactor.park(None)?.notified);
/// assert!(!reactor.park(Some(std::time::Duration::ZERO))?.notified);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Notifier {
    wake: Arc<WakeFd>,
}

impl Notifier {
    /// Makes a parked [`Reactor::park`] return promptly, or the next one if none is parked.
    /// Notifies before the reactor drains are merged into one. Whatever the calling thread
    /// did before `notify` is visible to the loop owner once that `park` has returned.
    pub fn notify(&self) {
        self.wake.notify();
    }
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("wake_fd", &self.wake.fd.as_raw_fd())
            .field("pending", &self.wake.pending.load(Ordering::Relaxed))
            .finish()
    }
}

/// The future of [`Reactor::readable`] and [`Reactor::writable`] (examples there, and in the
/// [module docs](self)): `Ok(())` once a [`park`](Reactor::park) saw the fd ready (hang-up
/// and error count as ready). It only registers a waker, so it works under any executor;
/// dropping it removes its interest.
#[must_use = "a Readiness does nothing unless polled"]
pub struct Readiness {
    reactor: Reactor,
    fd: RawFd,
    events: c_short,
    /// The key of our interest while registered.
    key: Option<u64>,
}

impl Readiness {
    fn new(reactor: &Reactor, fd: RawFd, events: c_short) -> Readiness {
        Readiness { reactor: reactor.clone(), fd, events, key: None }
    }

    /// The descriptor this future waits on.
    ///
    /// ```
    /// let reactor = infect::reactor::Reactor::new()?;
    /// assert_eq!(reactor.readable(7).fd(), 7);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn fd(&self) -> RawFd {
        self.fd
    }
}

impl Future for Readiness {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = self.get_mut().poll_ready(cx);
        if r.is_pending() {
            // A wait at one of infect's awaits (the guest's rule for foreign futures).
            crate::cx::note_park();
        }
        r
    }
}

impl Readiness {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self;
        let inner = &this.reactor.inner;
        let Some(key) = this.key else {
            let mut state = inner.state.borrow_mut();
            let key = state.next_key;
            state.next_key += 1;
            state
                .interests
                .push(key, Interest { fd: this.fd, events: this.events, waker: Some(cx.waker().clone()), revents: 0 });
            this.key = Some(key);
            return Poll::Pending;
        };

        let mut state = inner.state.borrow_mut();
        // Only we remove our interest, so it is there.
        let Some(interest) = state.interests.get_mut(key) else {
            unreachable!("a registered interest is removed only by its Readiness");
        };
        if interest.waiting() {
            if interest.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                return Poll::Pending;
            }
            let old = interest.waker.replace(cx.waker().clone());
            drop(state);
            drop(old); // outside the borrow: dropping a waker may run executor code
            return Poll::Pending;
        }
        let revents = interest.revents;
        let removed = state.interests.remove(key);
        drop(state);
        drop(removed);
        this.key = None;
        if revents & libc::POLLNVAL != 0 {
            Poll::Ready(Err(io::Error::from_raw_os_error(libc::EBADF)))
        } else {
            Poll::Ready(Ok(()))
        }
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let removed = self.reactor.inner.state.borrow_mut().interests.remove(key);
            drop(removed); // outside the borrow
        }
    }
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let direction = if self.events == libc::POLLIN { "readable" } else { "writable" };
        f.debug_struct("Readiness")
            .field("fd", &self.fd)
            .field("direction", &direction)
            .field("registered", &self.key.is_some())
            .finish()
    }
}

/// Keeps a reactor [current](Reactor::current) on this thread; restores the previous one
/// when dropped (guards nest). `!Send`. Example: [`Reactor::enter`].
pub struct EnterGuard {
    previous: Option<Reactor>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let entered = CURRENT.with(|current| current.replace(self.previous.take()));
        drop(entered); // outside the thread-local borrow
    }
}

impl fmt::Debug for EnterGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnterGuard").field("previous", &self.previous).finish()
    }
}
