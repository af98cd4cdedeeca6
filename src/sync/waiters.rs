//! Parked wakers, shared by the guest's `Event` and channels, the linked task pair and the actor
//! layer. Registering a waker is a *park at one of infect's awaits* (see the guest's
//! cancellation rule for foreign futures).

use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::task::Waker;

/// A list of parked wakers, woken all at once, in registration order.
///
/// The first waiter is kept inline: an event or a channel side with a single waiter (the
/// common case) parks and wakes without allocating, and waking a list with none or one waiter
/// touches no borrow flag.
#[derive(Default)]
pub(crate) struct Waiters {
    first: Cell<Option<Waker>>,
    /// The waiters after the first, in registration order; `many` says whether there are any.
    rest: RefCell<Vec<Waker>>,
    many: Cell<bool>,
    /// Whether any waker is parked (in `first` or `rest`).
    any: Cell<bool>,
}

impl Waiters {
    /// Parks `w` (once; a waker that will wake the same task is not added twice). Counts as a
    /// park at one of infect's awaits ([`note_park`](crate::cx::note_park)).
    #[inline]
    pub(crate) fn register(&self, w: &Waker) {
        crate::cx::note_park();
        self.any.set(true);
        match self.first.take() {
            None => self.first.set(Some(w.clone())),
            Some(f) if f.will_wake(w) => self.first.set(Some(f)),
            Some(f) => {
                self.first.set(Some(f));
                let mut rest = self.rest.borrow_mut();
                if !rest.iter().any(|x| x.will_wake(w)) {
                    rest.push(w.clone());
                    self.many.set(true);
                }
            }
        }
    }

    /// Wakes every parked waker (none: a glance at one flag, inlined at every call site).
    #[inline(always)]
    pub(crate) fn wake_all(&self) {
        if self.any.get() {
            self.wake_parked();
        }
    }

    /// [`wake_all`](Self::wake_all) with at least one waker parked.
    fn wake_parked(&self) {
        self.any.set(false);
        // Take everything before waking: a waker may re-enter (register again) synchronously.
        let first = self.first.take();
        if !self.many.get() {
            // The common case (one waiter or none): nothing else to take.
            if let Some(w) = first {
                w.wake();
            }
            return;
        }
        self.many.set(false);
        let rest = core::mem::take(&mut *self.rest.borrow_mut());
        if let Some(w) = first {
            w.wake();
        }
        for w in rest {
            w.wake();
        }
    }
}
