//! The values of a linked pair: two queues, the first value, the host's result, and the
//! broadcast ring behind `subscribe`.
//!
//! The [`Link`](super::translate::Link) decides; this module only stores, in the order the
//! machine accounts for: a value the machine accepted is pushed here in the same call, and a
//! value the machine releases is taken here in the same call.
//!
//! Host → guest values sit in the crate's broadcast ring (`sync::broadcast`), read by the
//! channel's own `receive` (its primary reader) and each subscriber. The machine counts a value
//! in flight until the *first* reader pulls it, so the host's back-pressure follows the fastest
//! reader, as in tractor's broadcast receiver. Values already pulled stay in the ring for slower
//! readers, at most `capacity` of them; a reader whose cursor falls behind the ring's head gets
//! [`Error::Lagged`](crate::Error::Lagged) with the count it missed, then continues from the
//! head. Without subscribers there is one cursor and values are moved out, never cloned.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use core::cell::{Cell, RefCell};

use super::translate::{Link, RecvVerdict};
use crate::guest::CancelScope;
use crate::sync::Waiters;

use crate::sync::broadcast::{Broadcast, Pull};
pub(crate) use crate::sync::broadcast::{PRIMARY, ReadOutcome};

/// The host → guest values: the crate's broadcast ring, its values released by the machine.
pub(crate) struct Ring<T>(Broadcast<T>);

impl<T> Ring<T> {
    pub(crate) fn new(retain: usize) -> Ring<T> {
        Ring(Broadcast::new(retain))
    }

    pub(crate) fn push(&mut self, v: T) {
        self.0.push(v);
    }

    /// Adds a reader that sees every value no reader has received yet, and all later ones.
    pub(crate) fn subscribe(&mut self, clone: fn(&T) -> T) -> u64 {
        self.0.subscribe(clone)
    }

    pub(crate) fn unsubscribe(&mut self, id: u64) {
        self.0.unsubscribe(id);
    }

    /// The primary reader's read when a value is there (see [`Broadcast::take_alone`]); `None`
    /// and nothing changed otherwise.
    #[inline]
    pub(crate) fn take_primary(&mut self, link: &mut Link) -> Option<T> {
        self.0.take_alone(|| link.guest_recv_value())
    }

    /// One read by `reader`, consulting the machine when it needs a new value or the end.
    pub(crate) fn read(&mut self, reader: u64, link: &mut Link) -> ReadOutcome<T> {
        self.0.read(reader, || match link.guest_recv() {
            RecvVerdict::Value => Pull::Buffered,
            RecvVerdict::Wait => Pull::Wait,
            RecvVerdict::End => Pull::Done(Ok(None)),
            RecvVerdict::Fail(e) => Pull::Done(Err(e)),
        })
    }
}

/// Everything both halves of one pair share (single-threaded).
pub(crate) struct Core<In, Out, S> {
    pub(crate) link: RefCell<Link>,
    pub(crate) to_host: RefCell<VecDeque<In>>,
    pub(crate) to_guest: RefCell<Ring<Out>>,
    pub(crate) first: RefCell<Option<S>>,
    /// The guest waiting for a value, the first value, or the host's end.
    pub(crate) guest_waiters: Waiters,
    /// The guest waiting for room to send (woken when the host takes a value, and at the ends).
    pub(crate) guest_room: Waiters,
    /// The host waiting for a value, or the guest's end.
    pub(crate) host_waiters: Waiters,
    /// The host waiting for room to send (woken when a guest reader takes a value or a
    /// subscriber leaves, and at the ends). Apart from `host_waiters`, so that a guest's
    /// `receive` does not wake a host task that waits in `get`.
    pub(crate) host_room: Waiters,
    /// The pair's number in traces: the host task's id, set once it is spawned (0 before).
    /// Shared with every [`Canceller`](super::Canceller), which cancels that task by it.
    pub(crate) number: Rc<Cell<u64>>,
    /// The scope around the guest's block (`open_channel_from`; `None` for `run_task`): the
    /// host's end cancels it when the machine says so (transition 9).
    pub(crate) block_scope: Option<CancelScope>,
}

impl<In, Out, S> Core<In, Out, S> {
    /// Wakes every guest waiter (an end, or a change every wait must re-check).
    pub(crate) fn wake_guest(&self) {
        self.guest_waiters.wake_all();
        self.guest_room.wake_all();
    }

    /// Wakes every host waiter.
    pub(crate) fn wake_host(&self) {
        self.host_waiters.wake_all();
        self.host_room.wake_all();
    }

    pub(crate) fn new(link: Link, cap_to_guest: usize, block_scope: Option<CancelScope>) -> Core<In, Out, S> {
        Core {
            link: RefCell::new(link),
            to_host: RefCell::new(VecDeque::new()),
            to_guest: RefCell::new(Ring::new(cap_to_guest)),
            first: RefCell::new(None),
            guest_waiters: Waiters::default(),
            guest_room: Waiters::default(),
            host_waiters: Waiters::default(),
            host_room: Waiters::default(),
            number: Rc::new(Cell::new(0)),
            block_scope,
        }
    }
}
