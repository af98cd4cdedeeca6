//! The epoll reactor (std, Linux): fd readiness for a handful of descriptors, plus one wake fd
//! that other threads use to interrupt a parked loop.
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
//! interest table sits in a `RefCell` that only these places borrow mutably:
//! [`Reactor::park`], `Readiness::poll`, `Readiness::drop`, and an `AsyncFd`'s creation and
//! drop (the rest only read it). No borrow is held while foreign code runs: wakers are woken
//! *and dropped* only after it is released, so a waker that polls or drops futures
//! synchronously (a callback loop, a test) may re-enter the reactor without a
//! `BorrowMutError`. The only state shared across threads is the wake fd and its `pending`
//! flag, reached through [`Notifier`] (`Send + Sync`).
//!
//! **The life of an interest.** A `Readiness` registers an interest (descriptor, direction,
//! waker) when first polled and keeps it (updating the waker) while pending. `park` only
//! *marks* an interest fired (stores its `revents`) and takes its waker out to wake it; it
//! never removes one. Only the owning `Readiness` removes its interest: when it is polled
//! after the mark (it then completes) or when it is dropped. So a dropped future leaves
//! nothing behind, and a fired interest is never reported twice.
//!
//! **Registrations are kept across waits.** One epoll instance watches the wake fd (for good)
//! and every descriptor that a waiting interest names. A descriptor owned by an
//! [`fd::AsyncFd`] stays registered (level-triggered) from its first wait until the `AsyncFd`
//! drops, which deregisters it *before* the number closes; so a read-wait-read loop costs one
//! `epoll_wait` per wait and no `epoll_ctl` (what a `poll(2)` loop would pass again on every
//! wait, epoll keeps in the kernel). A registration kept for a descriptor nobody waits on
//! that fires anyway (its owner stopped reading: back-pressure) is dropped after that one
//! park, so a level-triggered readiness nobody wants never ends parks in a loop; the next wait
//! arms it again and, level-triggered, sees what is still there. A bare [`Reactor::readable`]
//! on a raw number is armed `EPOLLONESHOT` and deregistered with its last interest: a
//! registration the kernel keeps for a closed but duplicated descriptor (epoll watches the
//! open file, not the number) fires at most once, then lies disabled. `epoll_ctl` happens
//! only in `park` (arming what a wait wants and epoll does not watch yet, narrowing what fired
//! for nobody) and when a number loses its last interest or its owner.
//!
//! **Registration order is the wake order.** Each interest gets its key from a counter that
//! only grows, when its future is first polled; the table is a `Vec` sorted by key (a new
//! interest is pushed at the end, so it stays sorted; a lookup is a binary search). After
//! `epoll_wait`, `park` collects what fired per descriptor, then walks the *interest table*
//! in key order to collect wakers, and wakes them in that order. The order the kernel
//! reported events in (its ready list) is never used: two descriptors ready at once are woken
//! in the order their futures were first polled, on every run. Re-polling with another waker
//! keeps the key and thus the place.
//!
//! **Level-triggered, never early.** Registrations are level-triggered, so an interest
//! registered while its descriptor is already ready fires at the next `park`; no edge is
//! lost. A `Readiness` completes only after a `park` that saw its descriptor ready (`POLLHUP`
//! and `POLLERR` count as ready, so the reader then sees end-of-file or the error). A number
//! that epoll refuses is reported the way `poll(2)` would: a regular file (`EPERM`) as ready,
//! a closed number (`EBADF`) as an error. Sub-millisecond timeouts are rounded *up* to whole
//! milliseconds, so `park` never returns before its timeout because of rounding (a timer is
//! never woken early).
//!
//! **The wake fd dedupe is correct across threads.** A [`Notifier`] shares the eventfd and an
//! `AtomicBool` `pending` with the reactor. `notify` does `pending.swap(true)` and writes to
//! the eventfd only if the flag was `false`; `park`, when `epoll_wait` reports the eventfd
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
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use libc::{c_int, c_short};

/// An epoll reactor for the current thread: fd readiness plus a cross-thread wake fd.
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
    /// The epoll instance: the wake fd (registered once, for good) and the armed descriptors.
    epoll: OwnedFd,
    /// Touched only by this thread, never borrowed while foreign code runs.
    state: RefCell<State>,
}

/// The `data` of the wake fd's epoll registration (a descriptor's is its number, never this).
const WAKE_TOKEN: u64 = u64::MAX;

struct State {
    /// The key of the next interest; only grows, so key order is registration order.
    next_key: u64,
    /// Registered interests, sorted by key (see [`Interests`]). Removed only by the owning
    /// [`Readiness`].
    interests: Interests,
    /// The descriptors that have an interest or an owner, and what is armed in epoll for them.
    fds: FdTable,
    /// Scratch for [`Reactor::park`], kept to reuse the allocation: what `epoll_wait` filled.
    events: Vec<libc::epoll_event>,
    /// Scratch for [`Reactor::park`]: the wakers to wake, in registration order.
    wakers: Vec<Waker>,
    /// Whether a number may need arming (a wait wants what epoll does not watch for yet), so
    /// that a park in the steady state walks no table.
    dirty: bool,
    /// Scratch for [`Reactor::park`]: what it found per number (usually one).
    hits: Vec<Hit>,
    /// How many `epoll_ctl` calls this reactor made (for the tests that prove registrations
    /// are kept across waits).
    ctl_calls: u64,
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

/// One registered wait: a descriptor, the `poll(2)`-style events asked for, and who to wake.
struct Interest {
    fd: RawFd,
    events: c_short,
    /// `Some` while waiting; taken by `park` when it fires.
    waker: Option<Waker>,
    /// `0` while waiting; once fired, the readiness `park` saw (`POLLNVAL` if the descriptor
    /// could not be watched, with the error in `errno`).
    revents: c_short,
    errno: c_int,
}

impl Interest {
    fn waiting(&self) -> bool {
        self.revents == 0
    }
}

/// What the reactor knows of one descriptor number, in [`FdTable`].
///
/// An *owned* number (an [`fd::AsyncFd`] holds it) keeps its epoll registration across waits,
/// level-triggered, until the owner drops, which deregisters it before the descriptor closes:
/// a wait on it costs no `epoll_ctl` in the steady state. A number with interests but no owner
/// (a bare [`Reactor::readable`] on a raw number) is armed `EPOLLONESHOT` and deregistered when
/// its last interest goes, so a registration the kernel keeps for a closed but duplicated
/// descriptor fires at most once and then lies disabled: it can never misfire in a loop.
struct FdReg {
    fd: RawFd,
    /// How many [`fd::AsyncFd`]s own the number (0 or 1).
    owners: u32,
    /// How many registered interests (waiting or fired) name it.
    interests: u32,
    /// How many of them are waiting, per direction.
    waiting_in: u32,
    waiting_out: u32,
    /// Whether epoll holds a registration for it (possibly disarmed, after a one-shot fire).
    in_epoll: bool,
    /// The events armed in that registration (0: none, or a one-shot that fired).
    armed: u32,
}

impl FdReg {
    /// The epoll events that its waiting interests want.
    fn wanted(&self) -> u32 {
        let mut wanted = 0;
        if self.waiting_in > 0 {
            wanted |= libc::EPOLLIN as u32;
        }
        if self.waiting_out > 0 {
            wanted |= libc::EPOLLOUT as u32;
        }
        wanted
    }

    /// Whether a wait wants something that epoll does not watch for yet.
    fn needs_arming(&self) -> bool {
        self.wanted() & !self.armed != 0
    }

    fn count_waiting(&mut self, events: c_short, up: bool) {
        let n = if events & libc::POLLIN != 0 { &mut self.waiting_in } else { &mut self.waiting_out };
        if up {
            *n += 1;
        } else {
            *n -= 1;
        }
    }
}

/// The descriptor table, in no particular order (the wake order comes from the interests' keys,
/// never from here): a handful of entries, found by a linear scan, removed by `swap_remove`.
#[derive(Default)]
struct FdTable(Vec<FdReg>);

impl FdTable {
    fn find(&self, fd: RawFd) -> Option<usize> {
        self.0.iter().position(|r| r.fd == fd)
    }

    /// The entry of `fd`, created empty if missing.
    fn entry(&mut self, fd: RawFd) -> &mut FdReg {
        let i = self.find(fd).unwrap_or_else(|| {
            self.0.push(FdReg {
                fd,
                owners: 0,
                interests: 0,
                waiting_in: 0,
                waiting_out: 0,
                in_epoll: false,
                armed: 0,
            });
            self.0.len() - 1
        });
        &mut self.0[i]
    }
}

/// What one `park` found for one number: the events epoll reported, or the error that arming
/// it met, and what its waiting interests wanted before any of them fired.
#[derive(Clone, Copy)]
struct Hit {
    fd: RawFd,
    /// Its entry in the [`FdTable`], which no park changes before it is done with its hits.
    reg: usize,
    events: u32,
    errno: c_int,
    wanted: u32,
}

// On Linux the epoll bits of readiness are the `poll(2)` bits; the conversions below rely on it.
const _: () = assert!(
    libc::EPOLLIN == libc::POLLIN as c_int
        && libc::EPOLLOUT == libc::POLLOUT as c_int
        && libc::EPOLLERR == libc::POLLERR as c_int
        && libc::EPOLLHUP == libc::POLLHUP as c_int
);

/// `poll(2)` events (`POLLIN`/`POLLOUT`) as epoll events.
fn epoll_events(events: c_short) -> u32 {
    u32::from((events & (libc::POLLIN | libc::POLLOUT)).cast_unsigned())
}

/// Epoll readiness (in, out, error, hang-up) as `poll(2)` `revents`.
fn poll_revents(events: u32) -> c_short {
    let mask = (libc::POLLIN | libc::POLLOUT | libc::POLLERR | libc::POLLHUP).cast_unsigned();
    (u16::try_from(events & u32::from(mask)).unwrap_or(mask)).cast_signed()
}

/// Hang-up and error: reported whatever was armed, and ready for either direction.
const ALWAYS: u32 = (libc::EPOLLERR | libc::EPOLLHUP) as u32;

/// Added to every registration under Miri, whose `epoll` supports edge-triggered ones only.
/// The wake eventfd is drained whenever it is reported, so it keeps its meaning; a kept
/// registration is reported again only on new readiness there, which the Miri-run tests (the
/// kernel's, on the wake fd and short pipes read until they come up short) do not tell apart.
#[cfg(miri)]
const MIRI_EDGE: u32 = libc::EPOLLET as u32;
#[cfg(not(miri))]
const MIRI_EDGE: u32 = 0;

/// The `data` of `fd`'s epoll registration.
fn token(fd: RawFd) -> u64 {
    u64::from(fd.cast_unsigned())
}

impl State {
    /// Registers a waiting interest and returns its key.
    fn register(&mut self, fd: RawFd, events: c_short, waker: Waker) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        self.interests.push(key, Interest { fd, events, waker: Some(waker), revents: 0, errno: 0 });
        let reg = self.fds.entry(fd);
        reg.interests += 1;
        reg.count_waiting(events, true);
        self.dirty |= reg.needs_arming();
        key
    }

    /// Removes an interest (only its [`Readiness`] calls this). A number left with neither
    /// interest nor owner is deregistered at once: its owner may close it next. A kept
    /// registration that wants less now is narrowed lazily, if it fires for nobody.
    #[inline]
    fn remove(&mut self, epoll: BorrowedFd<'_>, key: u64) -> Option<Interest> {
        let interest = self.interests.remove(key)?;
        if let Some(i) = self.fds.find(interest.fd) {
            let reg = &mut self.fds.0[i];
            reg.interests -= 1;
            if interest.waiting() {
                reg.count_waiting(interest.events, false);
            }
            if reg.interests == 0 && reg.owners == 0 {
                Self::deregister(epoll, &mut self.ctl_calls, reg);
                self.fds.0.swap_remove(i);
            }
        }
        Some(interest)
    }

    /// Deregisters `reg` from epoll if it is there. Returns whether a wait still wants it
    /// (it must be armed again).
    #[cold]
    fn deregister(epoll: BorrowedFd<'_>, ctl_calls: &mut u64, reg: &mut FdReg) -> bool {
        if reg.in_epoll {
            *ctl_calls += 1;
            let _ = sys::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, reg.fd, 0, 0);
            reg.in_epoll = false;
            reg.armed = 0;
        }
        reg.wanted() != 0
    }

    /// Arms every number that a waiting interest wants and epoll does not watch for yet; an
    /// error goes to `hits`, so that its interests fire at once. Returns whether one failed.
    #[cold]
    fn arm(&mut self, epoll: BorrowedFd<'_>) -> bool {
        let State { fds, ctl_calls, hits, .. } = self;
        let mut failed = false;
        for (i, reg) in fds.0.iter_mut().enumerate().filter(|(_, r)| r.needs_arming()) {
            let wanted = reg.wanted();
            let op = if reg.in_epoll { libc::EPOLL_CTL_MOD } else { libc::EPOLL_CTL_ADD };
            let mode = if reg.owners > 0 { 0 } else { libc::EPOLLONESHOT as u32 };
            *ctl_calls += 1;
            match sys::epoll_ctl(epoll, op, reg.fd, wanted | mode | MIRI_EDGE, token(reg.fd)) {
                Ok(()) => {
                    reg.in_epoll = true;
                    reg.armed = wanted;
                }
                // Not pollable (a regular file): `poll(2)` calls such a file always ready.
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    hits.push(Hit { fd: reg.fd, reg: i, events: wanted, errno: 0, wanted });
                    failed = true;
                }
                Err(e) => {
                    let errno = e.raw_os_error().unwrap_or(libc::EBADF);
                    hits.push(Hit { fd: reg.fd, reg: i, events: 0, errno, wanted });
                    failed = true;
                }
            }
        }
        // Every waiting interest of a number that failed fires in this park.
        self.dirty = false;
        failed
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

    /// Called by `park` after `epoll_wait` reported the eventfd readable. The order matters:
    /// drain first, clear second (see the module docs).
    fn drain(&self) {
        let mut counter = [0u8; 8];
        // One read resets the counter to zero. Only this thread reads the eventfd, so after
        // `epoll_wait` reported it readable the read cannot find it empty (and if it did, the
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
/// clocks park in one `epoll_wait`.
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
    /// A new reactor with no interests. Opens two descriptors (the wake eventfd and the epoll
    /// instance that watches it).
    ///
    /// ```
    /// let reactor = infect::reactor::Reactor::new()?;
    /// assert!(!reactor.has_interests());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new() -> io::Result<Reactor> {
        let wake = Arc::new(WakeFd { fd: sys::eventfd()?, pending: AtomicBool::new(false) });
        let epoll = sys::epoll_create()?;
        sys::epoll_ctl(
            epoll.as_fd(),
            libc::EPOLL_CTL_ADD,
            wake.fd.as_raw_fd(),
            libc::EPOLLIN as u32 | MIRI_EDGE,
            WAKE_TOKEN,
        )?;
        let state = RefCell::new(State {
            next_key: 0,
            interests: Interests::default(),
            fds: FdTable::default(),
            events: Vec::new(),
            wakers: Vec::new(),
            dirty: false,
            hits: Vec::new(),
            ctl_calls: 0,
        });
        Ok(Reactor { inner: Rc::new(Inner { wake, epoll, state }) })
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

    /// Waits in `epoll_wait` for the waiting interests and the wake fd, for at most `timeout`
    /// (`None`: until something happens; `Some(Duration::ZERO)`: not at all). Timeouts are
    /// rounded up to whole milliseconds and capped at `i32::MAX` ms (about 24 days; the
    /// caller loops anyway).
    ///
    /// Then it marks the ready interests fired, drains the wake fd, and wakes the fired
    /// interests' wakers in registration order, after releasing its own state (so a waker
    /// may re-enter the reactor). A signal interrupting `epoll_wait` (`EINTR`) returns
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
        let epoll = self.inner.epoll.as_fd();
        let mut state = self.inner.state.borrow_mut();
        state.hits.clear();
        let failed = state.dirty && state.arm(epoll);
        let State { interests, fds, events, wakers, ctl_calls, dirty, hits, .. } = &mut *state;
        // One slot per watched number and the wake fd: a level-triggered event that does not
        // fit would only wait for the next park, but then every ready one fits.
        let room = fds.0.len() + 1;
        if events.len() < room {
            events.resize(room, libc::epoll_event { events: 0, u64: 0 });
        }
        let timeout = if failed { 0 } else { timeout_ms(timeout) };
        let n = match sys::epoll_wait(epoll, events, timeout) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        let mut notified = false;
        for event in &events[..n] {
            let (bits, data) = (event.events, event.u64);
            if data == WAKE_TOKEN {
                notified = true;
                continue;
            }
            // A number no longer in the table had its registration removed before this wait,
            // or is a disabled one-shot: either way nothing waits for it.
            let Some(i) = RawFd::try_from(data).ok().and_then(|fd| fds.find(fd)) else { continue };
            let reg = &mut fds.0[i];
            hits.push(Hit { fd: reg.fd, reg: i, events: bits, errno: 0, wanted: reg.wanted() });
            if reg.owners == 0 {
                reg.armed = 0; // the one-shot fired and is disabled until armed again
            }
        }
        if hits.is_empty() && !notified {
            return Ok(Parked::default());
        }
        // Readiness is handed out in key order, never in the kernel's order.
        if !hits.is_empty() {
            for (_, interest) in interests.0.iter_mut().filter(|(_, i)| i.waiting()) {
                let Some(hit) = hits.iter().find(|h| h.fd == interest.fd) else { continue };
                let bits = hit.events & (epoll_events(interest.events) | ALWAYS);
                if hit.errno != 0 {
                    interest.revents = libc::POLLNVAL;
                    interest.errno = hit.errno;
                } else if bits != 0 {
                    interest.revents = poll_revents(bits);
                } else {
                    continue;
                }
                fds.0[hit.reg].count_waiting(interest.events, false);
                wakers.extend(interest.waker.take());
            }
        }
        for hit in hits.iter().filter(|h| h.errno == 0) {
            let reg = &mut fds.0[hit.reg];
            if reg.owners == 0 {
                // A fired one-shot that another direction still waits on is armed again.
                *dirty |= reg.needs_arming();
                continue;
            }
            // A kept registration that fired for nobody (its owner is busy, or reads without
            // waiting) is narrowed to what was wanted, or dropped, so that a level-triggered
            // readiness nobody waits for cannot end every park at once. It is armed again when
            // a wait wants it; level-triggered, it then reports what is still there.
            if hit.wanted == 0 {
                *dirty |= State::deregister(epoll, ctl_calls, reg);
            } else if hit.events & !hit.wanted & !ALWAYS != 0 && reg.in_epoll {
                *ctl_calls += 1;
                if sys::epoll_ctl(epoll, libc::EPOLL_CTL_MOD, reg.fd, hit.wanted, token(reg.fd)).is_ok() {
                    reg.armed = hit.wanted;
                }
                *dirty |= reg.needs_arming();
            }
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

    /// Records that an [`fd::AsyncFd`] owns `fd`: its registration is then kept across waits.
    /// A one-shot registration made before (a bare readiness on the number) is dropped, to be
    /// armed anew as a kept one.
    fn own(&self, fd: RawFd) {
        let mut state = self.inner.state.borrow_mut();
        let State { fds, ctl_calls, dirty, .. } = &mut *state;
        let reg = fds.entry(fd);
        reg.owners += 1;
        *dirty |= State::deregister(self.inner.epoll.as_fd(), ctl_calls, reg);
    }

    /// The owner of `fd` is about to close it: deregisters it now, while the number still
    /// names the same file (a registration left behind for a duplicated descriptor would fire
    /// under a number that no longer means it). Interests left on it arm it anew.
    fn disown(&self, fd: RawFd) {
        let mut state = self.inner.state.borrow_mut();
        let State { fds, ctl_calls, dirty, .. } = &mut *state;
        let Some(i) = fds.find(fd) else { return };
        let reg = &mut fds.0[i];
        reg.owners -= 1;
        *dirty |= State::deregister(self.inner.epoll.as_fd(), ctl_calls, reg);
        if reg.interests == 0 && reg.owners == 0 {
            fds.0.swap_remove(i);
        }
    }

    /// How many `epoll_ctl` calls this reactor made.
    #[cfg(test)]
    fn ctl_calls(&self) -> u64 {
        self.inner.state.borrow().ctl_calls
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

/// Milliseconds for `epoll_wait`: `-1` for "forever", sub-millisecond parts rounded up.
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
            this.key = Some(inner.state.borrow_mut().register(this.fd, this.events, cx.waker().clone()));
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
        let (revents, errno) = (interest.revents, interest.errno);
        let removed = state.remove(inner.epoll.as_fd(), key);
        drop(state);
        drop(removed);
        this.key = None;
        if revents & libc::POLLNVAL != 0 {
            Poll::Ready(Err(io::Error::from_raw_os_error(errno)))
        } else {
            Poll::Ready(Ok(()))
        }
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let inner = &self.reactor.inner;
            let removed = inner.state.borrow_mut().remove(inner.epoll.as_fd(), key);
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

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use super::Reactor;
    use super::fd::{AsyncFd, pipe};

    const PATIENCE: Duration = Duration::from_secs(10);

    /// An `AsyncFd`'s registration is kept across waits: a hundred read-wait-read cycles cost
    /// one `EPOLL_CTL_ADD`, and dropping the `AsyncFd` one `EPOLL_CTL_DEL`.
    #[test]
    fn a_kept_registration_costs_no_epoll_ctl_per_wait() {
        let reactor = Reactor::new().expect("a reactor");
        let (rx, tx) = pipe().expect("a pipe");
        let rx = AsyncFd::new(rx, &reactor).expect("non-blocking");
        let mut tx = File::from(tx);
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = [0u8; 8];
        for _ in 0..100 {
            assert!(rx.poll_read(&mut cx, &mut buf).is_pending());
            tx.write_all(b"a").expect("written");
            assert_eq!(reactor.park(Some(PATIENCE)).expect("parked").woken, 1);
            assert!(matches!(rx.poll_read(&mut cx, &mut buf), Poll::Ready(Ok(1))));
        }
        assert_eq!(reactor.ctl_calls(), 1);
        drop(rx);
        assert_eq!(reactor.ctl_calls(), 2);
        assert!(reactor.inner.state.borrow().fds.0.is_empty());
    }

    /// A bare readiness on a raw number is armed one-shot and deregistered with its last
    /// interest: ADD, (fire), DEL per wait.
    #[test]
    fn a_bare_readiness_deregisters_with_its_last_interest() {
        let reactor = Reactor::new().expect("a reactor");
        let (rx, tx) = pipe().expect("a pipe");
        let mut tx = File::from(tx);
        let mut cx = Context::from_waker(Waker::noop());
        {
            let mut ready = pin!(reactor.readable(rx.as_raw_fd()));
            assert!(ready.as_mut().poll(&mut cx).is_pending());
            tx.write_all(b"a").expect("written");
            assert_eq!(reactor.park(Some(PATIENCE)).expect("parked").woken, 1);
            assert!(ready.as_mut().poll(&mut cx).is_ready());
        }
        assert_eq!(reactor.ctl_calls(), 2);
        assert!(reactor.inner.state.borrow().fds.0.is_empty());
    }

    /// A kept registration that fires while nobody waits on it (a consumer that stopped
    /// reading: back-pressure) is dropped after that one park, so later parks wait instead of
    /// returning at once; the next wait arms it again and sees the bytes still there.
    #[test]
    fn a_kept_registration_nobody_waits_on_is_dropped_after_one_spurious_park() {
        let reactor = Reactor::new().expect("a reactor");
        let (rx, tx) = pipe().expect("a pipe");
        let rx = AsyncFd::new(rx, &reactor).expect("non-blocking");
        let mut tx = File::from(tx);
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = [0u8; 8];
        {
            let mut read = pin!(rx.read(&mut buf));
            assert!(read.as_mut().poll(&mut cx).is_pending());
            assert_eq!(reactor.park(Some(Duration::ZERO)).expect("parked").woken, 0); // armed
        } // the wait is gone; the registration is kept
        tx.write_all(b"a").expect("written");
        assert_eq!(reactor.park(Some(Duration::ZERO)).expect("parked").woken, 0);
        assert_eq!(reactor.ctl_calls(), 2, "ADD, then DEL after the spurious event");
        assert!(!reactor.inner.state.borrow().fds.0[0].in_epoll);
        assert_eq!(reactor.park(Some(Duration::ZERO)).expect("parked").woken, 0);
        assert_eq!(reactor.ctl_calls(), 2, "nothing fired: nothing to do");
        assert!(rx.poll_readable(&mut cx).is_pending());
        assert_eq!(reactor.park(Some(PATIENCE)).expect("parked").woken, 1, "level-triggered: the byte is still there");
        assert!(matches!(rx.poll_read(&mut cx, &mut buf), Poll::Ready(Ok(1))));
    }
}
