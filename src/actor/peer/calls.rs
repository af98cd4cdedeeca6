//! The call table's entries: one [`CallSlot`] per open call, the inbox the connection's
//! reader routes that call's messages into, and the call's stream credit both ways.
//!
//! Invariants (the dialog rules of one call, enforced here for both sides):
//! - A message the peer may send at most once per call (`StartAck`, `Started`, `Stop`,
//!   `CancelAck`) is refused the second time; a `CancelAck` is refused unless this side sent
//!   `Cancel{cid}`; nothing is accepted after the call's `Return`/`Error`; no `Yield` after the
//!   peer's `Stop`. A refused message is not stored: the reader reports it.
//! - The inbox holds at most `window` stream items (`received <= granted + window` for an
//!   honest peer); items past the window are counted, not stored, and end the stream with
//!   [`Error::StreamOverrun`](crate::Error::StreamOverrun) at its reader.
//! - The final outcome is handed to the call's [`CallObserver`] (a caller's context) the moment
//!   it arrives, not when a task reads it; the peer's end likewise ([`CallSlot::peer_gone`]).
//!
//! This module knows no context: a context observes its slot through [`CallObserver`].

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use crate::Error;
use crate::sync::Waiters;
use crate::wire::Msg;

/// The smallest stream window (a grant batch is half the window, at least one item).
pub(crate) const MIN_WINDOW: usize = 2;

/// Who hears of a call's end as it arrives (a caller's context; nothing for a plain call).
pub(crate) trait CallObserver {
    /// The call's final `Return` or `Error` arrived (called by the reader, once).
    fn final_arrived(&self, msg: &Msg);
    /// The peer actor is gone with `e` before the call ended.
    fn peer_gone(&self, e: &Error);
}

/// One call's inbox: the messages the connection's reader routed to it, in order, and the
/// call's stream credit in both directions.
///
/// Credit accounting (see the [module docs](self)): `received <= granted + window` for an honest
/// peer, and `granted <= consumed`, so the inbox holds at most `window` items.
pub(crate) struct CallSlot {
    /// The stream window, per direction, in items.
    pub(crate) window: u64,
    inbox: RefCell<VecDeque<Msg>>,
    pub(crate) waiters: Waiters,
    /// `Yield`s in the inbox.
    pub(crate) yields: Cell<usize>,
    /// `Yield`s that arrived past the window this side granted (a peer that broke the credit
    /// rule) and were not stored.
    pub(crate) dropped: Cell<u64>,
    /// `Yield`s received from the peer (stored or not).
    pub(crate) received: Cell<u64>,
    /// `Yield`s taken out of the inbox (received by a reader, or discarded by a drain).
    pub(crate) consumed: Cell<u64>,
    /// Credit returned to the peer (or being sent right now), in items.
    pub(crate) granted: Cell<u64>,
    /// How many more `Yield`s this side may send.
    pub(crate) send_credit: Cell<u64>,
    /// The call's final `Return` or `Error` is in the inbox (or was taken).
    pub(crate) final_seen: Cell<bool>,
    /// This side sent `Cancel{cid}` (a `CancelAck` may come).
    cancel_sent: Cell<bool>,
    /// The dialog messages the peer sent at most once: `StartAck`, `Started`, `Stop`,
    /// `CancelAck`, each a bit ([`once_bit`]).
    seen: Cell<u8>,
    /// Caller: the context this inbox feeds, so that the reader can record its final outcome
    /// and interrupt its block the moment it arrives (none for a plain call).
    observer: RefCell<Option<Weak<dyn CallObserver>>>,
}

/// The bit of a message the peer may send at most once per call (`0` for the others).
fn once_bit(msg: &Msg) -> u8 {
    match msg {
        Msg::StartAck { .. } => 1,
        Msg::Started { .. } => 2,
        Msg::Stop { .. } => 4,
        Msg::CancelAck { .. } => 8,
        _ => 0,
    }
}

impl CallSlot {
    /// A call's inbox with a stream window of `window` items each way.
    pub(crate) fn new(window: usize) -> CallSlot {
        let window = window.max(MIN_WINDOW) as u64;
        CallSlot {
            window,
            inbox: RefCell::new(VecDeque::new()),
            waiters: Waiters::default(),
            yields: Cell::new(0),
            dropped: Cell::new(0),
            received: Cell::new(0),
            consumed: Cell::new(0),
            granted: Cell::new(0),
            send_credit: Cell::new(window),
            final_seen: Cell::new(false),
            cancel_sent: Cell::new(false),
            seen: Cell::new(0),
            observer: RefCell::new(None),
        }
    }

    /// Makes `observer` hear of the call's final outcome and of the peer's end.
    pub(crate) fn observe(&self, observer: Weak<dyn CallObserver>) {
        *self.observer.borrow_mut() = Some(observer);
    }

    fn observer(&self) -> Option<Rc<dyn CallObserver>> {
        self.observer.borrow().as_ref().and_then(Weak::upgrade)
    }

    /// The peer actor is gone (reaped) with `e`: a context this inbox feeds ends with it (and
    /// its block is interrupted); every waiter wakes.
    pub(crate) fn peer_gone(&self, e: &Error) {
        if let Some(o) = self.observer() {
            o.peer_gone(e);
        }
        self.waiters.wake_all();
    }

    /// Notes that this side sent `Cancel{cid}` for the call.
    pub(crate) fn note_cancel_sent(&self) {
        self.cancel_sent.set(true);
    }

    /// Stores a message for the call and wakes its waiters. A `Credit` adds to this side's
    /// send window. A message out of the call's dialog is refused (not stored): `Err(why)`, for
    /// the caller to report. That bounds the inbox: at most `window` items and one of
    /// each control message. A stream item past the window this side granted (or after such an
    /// overrun) is counted, not stored; the first one is also refused.
    pub(crate) fn deliver(&self, msg: Msg) -> core::result::Result<(), &'static str> {
        if self.final_seen.get() {
            return Err("the call already ended (its Return or Error arrived)");
        }
        let bit = once_bit(&msg);
        if bit != 0 && self.seen.get() & bit != 0 {
            return Err("a second one in the same call");
        }
        match msg {
            Msg::Credit { n, .. } => {
                self.send_credit.set(self.send_credit.get().saturating_add(u64::from(n)));
                self.waiters.wake_all();
                return Ok(());
            }
            Msg::CancelAck { .. } if !self.cancel_sent.get() => {
                return Err("no Cancel was sent for this call");
            }
            Msg::Yield { .. } if self.seen.get() & once_bit(&Msg::Stop { cid: 0 }) != 0 => {
                return Err("a stream item after the peer's Stop");
            }
            Msg::Yield { .. } => {
                let received = self.received.get();
                self.received.set(received + 1);
                if received >= self.granted.get() + self.window || self.dropped.get() > 0 {
                    self.dropped.set(self.dropped.get() + 1);
                    self.waiters.wake_all();
                    return if self.dropped.get() == 1 { Err("a stream item past the credit window") } else { Ok(()) };
                }
                self.yields.set(self.yields.get() + 1);
            }
            Msg::Return { .. } | Msg::Error { .. } => {
                self.final_seen.set(true);
                // The final outcome counts from its arrival, not from when a task reads it: an
                // error interrupts the caller's block wherever it waits.
                if let Some(o) = self.observer() {
                    o.final_arrived(&msg);
                }
            }
            _ => {}
        }
        self.seen.set(self.seen.get() | bit);
        self.inbox.borrow_mut().push_back(msg);
        self.waiters.wake_all();
        Ok(())
    }

    pub(crate) fn pop(&self) -> Option<Msg> {
        let m = self.inbox.borrow_mut().pop_front()?;
        if matches!(m, Msg::Yield { .. }) {
            self.yields.set(self.yields.get() - 1);
            self.consumed.set(self.consumed.get() + 1);
        }
        Some(m)
    }

    /// How many messages wait in the inbox.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn len(&self) -> usize {
        self.inbox.borrow().len()
    }

    /// Items taken but not yet returned to the peer as credit.
    pub(crate) fn owed(&self) -> u64 {
        self.consumed.get() - self.granted.get()
    }

    /// The call's final message, if it already arrived (still in the inbox).
    pub(crate) fn peek_final(&self) -> Option<Msg> {
        self.inbox.borrow().iter().rev().find(|m| matches!(m, Msg::Return { .. } | Msg::Error { .. })).cloned()
    }
}
