//! The current-context slots: which host task and which guest run the thread is polling, and
//! the thread's park count (how a cancelled guest scope tells a body that waits at infect's
//! awaits from one blocked in foreign futures; see the guest module's cancellation rule).
//!
//! Free functions such as `guest::sleep` and `host::sleep` find their loop here, the way trio
//! and asyncio find the running loop. With `std` each slot is a thread-local. Without `std`
//! there are no thread-locals: the slots are globals, and the kernel assumes one kernel
//! thread (the bare-metal case); this is the one documented limitation of the `no_std` build.

use core::cell::Cell;

/// A slot holding one `Copy` value, read and replaced with a guard that restores it.
pub(crate) struct Slot<T: Copy + 'static> {
    #[cfg(feature = "std")]
    key: &'static std::thread::LocalKey<Cell<T>>,
    #[cfg(not(feature = "std"))]
    cell: Global<T>,
}

#[cfg(not(feature = "std"))]
pub(crate) struct Global<T>(Cell<T>);

// SAFETY: without `std` the kernel is single-threaded by contract (module docs): the slot is only
// ever read and written by the one kernel thread.
#[cfg(not(feature = "std"))]
unsafe impl<T> Sync for Global<T> {}

impl<T: Copy + 'static> Slot<T> {
    #[cfg(feature = "std")]
    pub(crate) const fn new(key: &'static std::thread::LocalKey<Cell<T>>) -> Slot<T> {
        Slot { key }
    }

    #[cfg(not(feature = "std"))]
    pub(crate) const fn new(init: T) -> Slot<T> {
        Slot { cell: Global(Cell::new(init)) }
    }

    #[inline]
    pub(crate) fn get(&'static self) -> T {
        #[cfg(feature = "std")]
        {
            self.key.with(Cell::get)
        }
        #[cfg(not(feature = "std"))]
        {
            self.cell.0.get()
        }
    }

    #[inline]
    pub(crate) fn replace(&'static self, value: T) -> T {
        #[cfg(feature = "std")]
        {
            self.key.with(|c| c.replace(value))
        }
        #[cfg(not(feature = "std"))]
        {
            self.cell.0.replace(value)
        }
    }

    /// Sets the slot until the guard drops, which restores the previous value (nesting works).
    /// Reads, changes and writes the value back in one access; returns what `f` returns.
    #[inline]
    pub(crate) fn modify<R>(&'static self, f: impl FnOnce(&mut T) -> R) -> R {
        let run = |c: &Cell<T>| {
            let mut v = c.get();
            let r = f(&mut v);
            c.set(v);
            r
        };
        #[cfg(feature = "std")]
        {
            self.key.with(run)
        }
        #[cfg(not(feature = "std"))]
        {
            run(&self.cell.0)
        }
    }

    pub(crate) fn enter(&'static self, value: T) -> SlotGuard<T> {
        let prev = self.replace(value);
        SlotGuard { slot: self, prev }
    }
}

pub(crate) struct SlotGuard<T: Copy + 'static> {
    slot: &'static Slot<T>,
    prev: T,
}

impl<T: Copy + 'static> Drop for SlotGuard<T> {
    fn drop(&mut self) {
        self.slot.replace(self.prev);
    }
}

/// Declares a context slot: a thread-local with `std`, a global without.
macro_rules! kernel_slot {
    ($(#[$m:meta])* $vis:vis static $name:ident: $t:ty = $init:expr;) => {
        $(#[$m])*
        #[cfg(feature = "std")]
        $vis static $name: $crate::cx::Slot<$t> = {
            std::thread_local! {
                static KEY: core::cell::Cell<$t> = const { core::cell::Cell::new($init) };
            }
            $crate::cx::Slot::new(&KEY)
        };
        $(#[$m])*
        #[cfg(not(feature = "std"))]
        $vis static $name: $crate::cx::Slot<$t> = $crate::cx::Slot::new($init);
    };
}
pub(crate) use kernel_slot;

/// A source location of an infect await (for the debug dump).
type Loc = Option<&'static core::panic::Location<'static>>;

/// The thread's park bookkeeping, in one slot so that each update is one thread-local access.
#[derive(Clone, Copy)]
pub(crate) struct Parks {
    /// How many times one of infect's own awaits has parked (or passed a cancellation check
    /// outside a cancelled scope) on this thread. Only differences matter: a cancelled scope
    /// compares it around a poll of its body to tell "waits at infect's awaits" (trio's path:
    /// deliver `Err(Cancelled)` there) from "blocked in foreign futures only" (drop the body).
    count: u64,
    /// The source location of the innermost infect await being polled on this thread (set by
    /// [`At`] around its poll), for the debug dump's "where each task waits".
    await_at: Loc,
    /// The location of the first await that parked on this thread since it was last cleared
    /// ([`note_park`] copies `await_at` here); a loop clears it before each task poll and keeps
    /// it if the poll ends `Pending`.
    parked_at: Loc,
}

kernel_slot! {
    /// This thread's [`Parks`].
    static PARKS: Parks = Parks { count: 0, await_at: None, parked_at: None };
}

/// Notes that one of infect's awaits parks (or checks for cancellation outside a cancelled
/// scope): the future being polled waits somewhere infect knows about.
#[inline]
pub(crate) fn note_park() {
    PARKS.modify(|p| {
        p.count = p.count.wrapping_add(1);
        // The first park of a poll is the innermost await (an outer one parks after its body).
        if p.parked_at.is_none() {
            p.parked_at = p.await_at;
        }
    });
}

/// The park count (see [`note_park`]).
#[inline]
pub(crate) fn parks() -> u64 {
    PARKS.get().count
}

kernel_slot! {
    /// Whether a simulated world ([`sim`](crate::sim)) is running on this thread: the guard
    /// rails (a real descriptor, the wall clock, a loop of its own) read it.
    static SIMULATED: bool = false;
}

/// Clears the location of the last park; returns it (a task poll starts with it clear).
#[inline]
pub(crate) fn take_parked_at() -> Loc {
    PARKS.modify(|p| p.parked_at.take())
}

/// Makes `at` the location of the infect await being polled until the guard drops (what
/// [`At`] does around its poll, for an await that is its own named future).
#[inline]
pub(crate) fn enter_await(at: &'static core::panic::Location<'static>) -> AwaitGuard {
    AwaitGuard(PARKS.modify(|p| p.await_at.replace(at)))
}

/// Restores the await location that was current before [`enter_await`] when dropped.
pub(crate) struct AwaitGuard(Loc);

impl Drop for AwaitGuard {
    #[inline]
    fn drop(&mut self) {
        let prev = self.0;
        PARKS.modify(|p| p.await_at = prev);
    }
}

/// An infect await that knows where its caller is: [`at`] wraps it.
pub(crate) struct At<F> {
    at: &'static core::panic::Location<'static>,
    fut: F,
}

/// Wraps `fut`, one of infect's awaits, with its caller's source location (the public
/// function that builds it is `#[track_caller]`): a park inside it is recorded there. One
/// `&'static` store per poll, no allocation.
#[track_caller]
#[inline]
pub(crate) fn at<F: core::future::Future>(fut: F) -> At<F> {
    At { at: core::panic::Location::caller(), fut }
}

/// [`at`] with the location given (a caller's, taken further up).
#[inline]
pub(crate) fn at_location<F: core::future::Future>(at: &'static core::panic::Location<'static>, fut: F) -> At<F> {
    At { at, fut }
}

impl<F: core::future::Future> core::future::Future for At<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: core::pin::Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> core::task::Poll<F::Output> {
        // SAFETY: `fut` is structurally pinned: never moved out of `self`, and `At` has no Drop
        // impl; `at` is a plain reference.
        let this = unsafe { self.get_unchecked_mut() };
        let _at = enter_await(this.at);
        // SAFETY: see above.
        unsafe { core::pin::Pin::new_unchecked(&mut this.fut) }.poll(cx)
    }
}

/// The prefix of a guard rail's panic inside a simulation: the world turns a panic that starts
/// with it into `Error::OutsideSimulation` naming what the rest of the message says.
pub(crate) const OUTSIDE_SIMULATION: &str = "infect::sim: ";

/// The guard rail: inside a simulation, `what` (a real descriptor, the wall clock, a real
/// process, a real wait) ends the run with `Error::OutsideSimulation` naming it.
#[inline]
#[track_caller]
pub(crate) fn refuse_in_simulation(what: impl FnOnce() -> alloc::string::String) {
    if in_simulation() {
        let what = what();
        // Also noted aside: a panic inside a host task is caught and becomes that task's error,
        // and the world must still see what happened.
        #[cfg(feature = "std")]
        VIOLATION.with(|v| v.borrow_mut().get_or_insert_with(|| what.clone()).len());
        panic!("{OUTSIDE_SIMULATION}{what}");
    }
}

#[cfg(feature = "std")]
std::thread_local! {
    static VIOLATION: core::cell::RefCell<Option<alloc::string::String>> = const { core::cell::RefCell::new(None) };
}

/// The first guard rail hit on this thread since the last call, if any.
#[cfg(feature = "std")]
pub(crate) fn take_violation() -> Option<alloc::string::String> {
    VIOLATION.with(|v| v.borrow_mut().take())
}

/// Whether a simulated world runs on this thread.
#[inline]
pub(crate) fn in_simulation() -> bool {
    SIMULATED.get()
}

/// Marks this thread as running a simulated world until the guard drops.
#[cfg(feature = "std")]
pub(crate) fn enter_simulation() -> SlotGuard<bool> {
    SIMULATED.enter(true)
}
