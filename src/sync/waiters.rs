//! Parked wakers, shared by the guest's `Event` and channels, the linked task pair and the actor
//! layer. Registering a waker is a *park at one of infect's awaits* (see the guest's
//! cancellation rule for foreign futures).

use alloc::vec::Vec;
use core::cell::RefCell;
use core::task::Waker;

/// A list of parked wakers, woken all at once, in registration order.
///
/// The first waiter is kept inline: an event or a channel side with a single waiter (the
/// common case) parks and wakes without allocating.
#[derive(Default)]
pub(crate) struct Waiters {
    first: RefCell<Option<Waker>>,
    rest: RefCell<Vec<Waker>>,
}

impl Waiters {
    /// Parks `w` (once; a waker that will wake the same task is not added twice). Counts as a
    /// park at one of infect's awaits ([`note_park`](crate::cx::note_park)).
    #[inline]
    pub(crate) fn register(&self, w: &Waker) {
        crate::cx::note_park();
        let mut first = self.first.borrow_mut();
        match &*first {
            None => *first = Some(w.clone()),
            Some(f) if f.will_wake(w) => {}
            Some(_) => {
                let mut rest = self.rest.borrow_mut();
                if !rest.iter().any(|x| x.will_wake(w)) {
                    rest.push(w.clone());
                }
            }
        }
    }

    #[inline]
    pub(crate) fn wake_all(&self) {
        // Take everything before waking: a waker may re-enter (register again) synchronously.
        let first = self.first.borrow_mut().take();
        if self.rest.borrow().is_empty() {
            // The common case (one waiter or none): nothing else to take.
            if let Some(w) = first {
                w.wake();
            }
            return;
        }
        let rest = core::mem::take(&mut *self.rest.borrow_mut());
        if let Some(w) = first {
            w.wake();
        }
        for w in rest {
            w.wake();
        }
    }
}
