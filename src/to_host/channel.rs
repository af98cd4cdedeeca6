//! The values of a linked pair: two queues, the first value, the host's result, and the
//! broadcast ring behind `subscribe`.
//!
//! The [`Link`](super::translate::Link) decides; this module only stores, in the order the
//! machine accounts for: a value the machine accepted is pushed here in the same call, and a
//! value the machine releases is taken here in the same call.
//!
//! Host → guest values sit in a ring addressed by sequence number. Each reader (the channel's
//! own `receive`, and each subscriber) has a cursor. The machine counts a value in flight until
//! the *first* reader pulls it (`pulled`), so the host's back-pressure follows the fastest
//! reader, as in tractor's broadcast receiver. Values already pulled stay in the ring for slower
//! readers, at most `capacity` of them; a reader whose cursor falls behind the ring's head gets
//! [`Error::Lagged`] with the count it missed, then continues from the head. Without subscribers
//! there is one cursor and values are moved out, never cloned.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use super::translate::{Link, RecvVerdict};
use crate::guest::CancelScope;
use crate::sync::Waiters;
use crate::{Error, Result};

/// The reader id of the channel's own `receive`.
pub(crate) const PRIMARY: u64 = 0;

pub(crate) struct Ring<T> {
    buf: VecDeque<T>,
    /// Sequence number of `buf[0]`.
    head: u64,
    /// Values pulled by the fastest reader (released by the machine).
    pulled: u64,
    /// The channel's own cursor (next sequence number `receive` reads).
    primary: u64,
    /// Subscribers' ids and cursors, in subscription order (few; a `Vec` beats a map).
    subs: Vec<(u64, u64)>,
    next_reader: u64,
    /// How many already-pulled values are kept for slower readers.
    retain: usize,
    /// Set by the first `subscribe` (which needs `T: Clone`).
    clone: Option<fn(&T) -> T>,
}

impl<T> Ring<T> {
    pub(crate) fn new(retain: usize) -> Ring<T> {
        Ring {
            buf: VecDeque::new(),
            head: 0,
            pulled: 0,
            primary: 0,
            subs: Vec::new(),
            next_reader: PRIMARY + 1,
            retain: retain.max(1),
            clone: None,
        }
    }

    pub(crate) fn push(&mut self, v: T) {
        self.buf.push_back(v);
    }

    /// Adds a reader that sees every value no reader has pulled yet, and all later ones.
    pub(crate) fn subscribe(&mut self, clone: fn(&T) -> T) -> u64 {
        self.clone = Some(clone);
        let id = self.next_reader;
        self.next_reader += 1;
        self.subs.push((id, self.pulled));
        id
    }

    pub(crate) fn unsubscribe(&mut self, id: u64) {
        self.subs.retain(|&(i, _)| i != id);
        self.trim();
    }

    fn cursor(&mut self, reader: u64) -> Option<&mut u64> {
        if reader == PRIMARY {
            return Some(&mut self.primary);
        }
        self.subs.iter_mut().find(|(i, _)| *i == reader).map(|(_, c)| c)
    }

    /// One read by `reader`, consulting the machine when it needs a new value or the end.
    pub(crate) fn read(&mut self, reader: u64, link: &mut Link) -> ReadOutcome<T> {
        let (head, pulled) = (self.head, self.pulled);
        let Some(cursor) = self.cursor(reader) else {
            return ReadOutcome::Done(Err(Error::Closed));
        };
        let c = *cursor;
        if c < head {
            *cursor = head;
            return ReadOutcome::Done(Err(Error::Lagged { skipped: head - c }));
        }
        if c == pulled {
            match link.guest_recv() {
                RecvVerdict::Value => self.pulled += 1,
                RecvVerdict::Wait => return ReadOutcome::Wait,
                RecvVerdict::End => return ReadOutcome::Done(Ok(None)),
                RecvVerdict::Fail(e) => return ReadOutcome::Done(Err(e)),
            }
        }
        let idx = (c - self.head) as usize;
        let shared =
            (reader != PRIMARY && self.primary <= c) || self.subs.iter().any(|&(id, other)| id != reader && other <= c);
        let v = if !shared && idx == 0 {
            self.head += 1;
            self.buf.pop_front().expect("cursor within the ring")
        } else {
            let clone = self.clone.expect("a value shared between readers implies a subscriber");
            clone(&self.buf[idx])
        };
        if let Some(cursor) = self.cursor(reader) {
            *cursor = c + 1;
        }
        if !self.subs.is_empty() {
            self.trim();
        }
        ReadOutcome::Done(Ok(Some(v)))
    }

    /// Drops values no reader needs, and pulled values beyond what is retained for laggards.
    fn trim(&mut self) {
        let min = self.subs.iter().map(|&(_, c)| c).fold(self.primary.min(self.pulled), u64::min);
        while self.head < min {
            self.buf.pop_front();
            self.head += 1;
        }
        while self.pulled - self.head > self.retain as u64 {
            self.buf.pop_front();
            self.head += 1;
        }
    }
}

pub(crate) enum ReadOutcome<T> {
    Wait,
    Done(Result<Option<T>>),
}

/// Everything both halves of one pair share (single-threaded).
pub(crate) struct Core<In, Out, S> {
    pub(crate) link: RefCell<Link>,
    pub(crate) to_host: RefCell<VecDeque<In>>,
    pub(crate) to_guest: RefCell<Ring<Out>>,
    pub(crate) first: RefCell<Option<S>>,
    pub(crate) guest_waiters: Waiters,
    pub(crate) host_waiters: Waiters,
    /// The pair's number in traces: the host task's id, set once it is spawned (0 before).
    /// Shared with every [`Canceller`](super::Canceller), which cancels that task by it.
    pub(crate) number: Rc<Cell<u64>>,
    /// The scope around the guest's block (`open_channel_from`; `None` for `run_task`): the
    /// host's end cancels it when the machine says so (transition 9).
    pub(crate) block_scope: Option<CancelScope>,
}

impl<In, Out, S> Core<In, Out, S> {
    pub(crate) fn new(link: Link, cap_to_guest: usize, block_scope: Option<CancelScope>) -> Core<In, Out, S> {
        Core {
            link: RefCell::new(link),
            to_host: RefCell::new(VecDeque::new()),
            to_guest: RefCell::new(Ring::new(cap_to_guest)),
            first: RefCell::new(None),
            guest_waiters: Waiters::default(),
            host_waiters: Waiters::default(),
            number: Rc::new(Cell::new(0)),
            block_scope,
        }
    }
}
