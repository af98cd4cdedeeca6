//! Time: the [`Clock`] trait, a monotonic clock (std) and a virtual clock with *autojump*.
//!
//! Invariants:
//! - The kernel never reads the wall clock directly: every deadline and timeout is an
//!   [`Instant`] read from the loop's [`Clock`].
//! - Both executors keep their timers in one deterministic queue that fires in `(deadline,
//!   arming order)` order, so two timers with the same deadline fire in the order they were
//!   armed, on every run; every sleep (host and guest) is one timer slot in it, fixed at its
//!   first poll.
//! - A virtual clock only moves when told to: by [`VirtualClock::advance`], or by the loop that
//!   owns it calling [`Clock::autojump`] when every task of every loop is blocked (trio's
//!   `MockClock(autojump_threshold=0)`). Autojump waits for real I/O first: a loop jumps only
//!   when a non-blocking look at its fds found none ready either.
//!
//! Use a [`VirtualClock`] in tests: a program that sleeps for minutes runs in microseconds and
//! every instant it reads is exact. Give it to a host with
//! [`HostBuilder::clock`](crate::host::HostBuilder::clock) (a guest riding that host reads
//! the same clock) or to a standalone guest with
//! [`GuestConfig::new`](crate::guest::GuestConfig::new).
//!
//! ```
//! use infect::{host::{self, Host}, time::{Instant, VirtualClock}};
//! use std::{rc::Rc, time::Duration};
//! let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
//! host.block_on(host::sleep(Duration::from_secs(600)))?; // ten virtual minutes, no real wait
//! assert_eq!(host.now(), Instant::ZERO + Duration::from_secs(600));
//! # Ok::<(), infect::Error>(())
//! ```

use core::cell::Cell;
use core::ops::{Add, Sub};
use core::time::Duration;

/// A point on a [`Clock`]'s time line, in nanoseconds since the clock's origin. Arithmetic
/// saturates: adding to [`NEVER`](Instant::NEVER) stays `NEVER`, and a difference is never
/// negative.
///
/// ```
/// use infect::time::Instant;
/// use core::time::Duration;
/// let t = Instant::ZERO + Duration::from_millis(3);
/// assert_eq!(t.as_nanos(), 3_000_000);
/// assert_eq!(t, Instant::from_nanos(3_000_000));
/// assert_eq!(t - Instant::ZERO, Duration::from_millis(3));
/// assert_eq!(Instant::ZERO - t, Duration::ZERO); // saturating
/// assert_eq!(Instant::ZERO.saturating_duration_since(t), Duration::ZERO);
/// assert_eq!(Instant::NEVER + Duration::from_secs(1), Instant::NEVER);
/// assert!(t < Instant::NEVER);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant(0);
    /// The end of time: a deadline that never passes.
    pub const NEVER: Instant = Instant(u64::MAX);

    /// An instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// A source of monotonic time for a loop. Implement it to drive the kernel from another time
/// source; `now` must never go backwards.
///
/// ```
/// use infect::{guest::{self, GuestConfig}, time::{Clock, Instant}};
/// use std::{cell::Cell, rc::Rc, time::Duration};
///
/// /// A clock that jumps like a virtual one but counts its jumps.
/// #[derive(Default)]
/// struct Counting { now: Cell<u64>, jumps: Cell<u32> }
/// impl Clock for Counting {
///     fn now(&self) -> Instant { Instant::from_nanos(self.now.get()) }
///     fn may_autojump(&self) -> bool { true }
///     fn autojump(&self, deadline: Instant) -> bool {
///         if deadline == Instant::NEVER { return false; }
///         self.now.set(self.now.get().max(deadline.as_nanos()));
///         self.jumps.set(self.jumps.get() + 1);
///         true
///     }
/// }
/// let clock = Rc::new(Counting::default());
/// let r = guest::run_with(GuestConfig::new(clock.clone()), async {
///     guest::sleep(Duration::from_secs(1)).await?;
///     guest::sleep(Duration::from_secs(1)).await
/// });
/// assert_eq!(r, Ok(()));
/// assert_eq!(clock.now(), Instant::ZERO + Duration::from_secs(2));
/// assert_eq!(clock.jumps.get(), 2);
/// ```
pub trait Clock {
    /// The current time.
    fn now(&self) -> Instant;

    /// Called by the loop owner when every task of every loop it carries is blocked and the
    /// earliest deadline is `deadline`: a virtual clock with autojump moves to it and returns
    /// `true`; a real clock returns `false` (the loop then sleeps until then).
    fn autojump(&self, deadline: Instant) -> bool {
        let _ = deadline;
        false
    }

    /// Whether [`autojump`](Clock::autojump) can ever move this clock (lets a loop skip the
    /// non-blocking I/O probe it makes before jumping).
    fn may_autojump(&self) -> bool {
        false
    }
}

/// A clock that only moves when told to. With autojump on, a loop that has nothing to do but
/// wait jumps it straight to the next deadline, so ten virtual minutes pass in microseconds.
///
/// ```
/// use infect::time::{Clock, Instant, VirtualClock};
/// use core::time::Duration;
/// let clock = VirtualClock::new();
/// clock.advance(Duration::from_millis(5));
/// assert_eq!(clock.now(), Instant::from_nanos(5_000_000));
/// assert!(clock.autojump(Instant::from_nanos(9_000_000)));
/// assert_eq!(clock.now().as_nanos(), 9_000_000);
/// ```
#[derive(Debug, Default)]
pub struct VirtualClock {
    now: Cell<u64>,
    no_autojump: bool,
}

impl VirtualClock {
    /// A virtual clock at [`Instant::ZERO`], with autojump.
    pub fn new() -> VirtualClock {
        VirtualClock { now: Cell::new(0), no_autojump: false }
    }

    /// A virtual clock at zero that never jumps by itself: a loop that waits on it with nothing
    /// else to do returns as stalled (or waits on its fds) until the test advances it. For a
    /// test that steps time by hand:
    ///
    /// ```
    /// use infect::{host::{self, Host}, time::{Clock, Instant, VirtualClock}};
    /// use std::{rc::Rc, time::Duration};
    /// let clock = Rc::new(VirtualClock::without_autojump());
    /// let host = Host::builder().clock(clock.clone()).build()?;
    /// let nap = host.spawn(host::sleep(Duration::from_secs(1)));
    /// host.run_until_stalled();
    /// assert!(!clock.autojump(Instant::ZERO + Duration::from_secs(1))); // it will not jump
    /// clock.advance(Duration::from_millis(999));
    /// host.run_until_stalled();
    /// assert!(!nap.is_finished());
    /// clock.advance(Duration::from_millis(1));
    /// host.run_until_stalled();
    /// assert!(nap.is_finished());
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn without_autojump() -> VirtualClock {
        VirtualClock { now: Cell::new(0), no_autojump: true }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.now.set((Instant(self.now.get()) + d).0);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        Instant(self.now.get())
    }

    fn may_autojump(&self) -> bool {
        !self.no_autojump
    }

    fn autojump(&self, deadline: Instant) -> bool {
        if self.no_autojump || deadline == Instant::NEVER {
            return false;
        }
        if deadline.0 > self.now.get() {
            self.now.set(deadline.0);
        }
        true
    }
}

/// The operating system's monotonic clock, with its origin at creation: the default clock of
/// [`Host::new`](crate::host::Host::new) and [`guest::run`](crate::guest::run). It never
/// autojumps.
///
/// ```
/// use infect::time::{Clock, Instant, MonotonicClock};
/// let clock = MonotonicClock::new();
/// let (a, b) = (clock.now(), clock.now());
/// assert!(a <= b);
/// assert!(!clock.autojump(Instant::NEVER) && !clock.may_autojump());
/// ```
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct MonotonicClock {
    origin: std::time::Instant,
}

#[cfg(feature = "std")]
impl MonotonicClock {
    /// A monotonic clock whose origin is now.
    pub fn new() -> MonotonicClock {
        crate::cx::refuse_in_simulation(|| {
            "the wall clock (a MonotonicClock, the default clock of Host::new and guest::run)".into()
        });
        MonotonicClock { origin: std::time::Instant::now() }
    }
}

#[cfg(feature = "std")]
impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "std")]
impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        crate::cx::refuse_in_simulation(|| "the wall clock (MonotonicClock::now)".into());
        Instant(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}
