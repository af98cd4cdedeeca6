//! The broadcast ring: one sequence of values, read by several cursors (crate-private).
//!
//! Values sit in a ring addressed by sequence number. There is always one *primary* reader
//! ([`PRIMARY`]: the channel's own `receive`), plus any number of subscribers, each with a cursor
//! of its own. A value enters the ring in one of two ways: [`push`](Broadcast::push)ed ahead of
//! being released (a linked channel buffers what the host sent, and its state machine releases
//! it to the first reader that asks), or handed in by a source at the moment a reader asks.
//! Either way it counts as *pulled* once the first (fastest) reader took it, so back-pressure
//! follows the fastest reader (tractor's broadcast receiver).
//!
//! Invariants:
//! - A subscriber starts at the oldest value no reader has pulled yet, and sees every later one.
//! - Values already pulled stay for slower readers, at most `retain` of them; a reader whose
//!   cursor fell behind the ring's head gets `Lagged { skipped }` once (the count it missed) and
//!   continues from the head.
//! - A value no other reader still needs is moved out to its last reader, never cloned: without
//!   subscribers nothing is ever cloned.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::future::Future;

use crate::{Error, Result};

/// The one reader-to-[`Stream`](futures::Stream) adaptor of every fan-out (a linked channel and
/// its subscribers, an actor stream and its subscribers): an item per `Ok(Some(v))` of `read`,
/// passed through `item` (whose error is that item's and does not end the stream: an item that
/// does not decode); the stream ends at `Ok(None)`, and after a read error other than
/// [`Error::Lagged`] (which a reader gets once and then reads on from the head).
pub(crate) fn stream_of<R, T, Fut>(
    read: impl FnMut() -> Fut,
    item: impl FnMut(R) -> Result<T>,
) -> impl futures::Stream<Item = Result<T>> + Unpin
where
    Fut: Future<Output = Result<Option<R>>>,
{
    Box::pin(futures::stream::unfold((false, read, item), |(done, mut read, mut item)| async move {
        if done {
            return None;
        }
        match read().await {
            Ok(Some(v)) => Some((item(v), (false, read, item))),
            Ok(None) => None,
            Err(e) => {
                let done = !matches!(e, Error::Lagged { .. });
                Some((Err(e), (done, read, item)))
            }
        }
    }))
}

/// The reader id of the primary reader.
pub(crate) const PRIMARY: u64 = 0;

/// What a reader's next read needs (see [`Broadcast::position`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// A value already pulled waits for this reader: [`take`](Broadcast::take) it.
    Behind,
    /// The reader is the fastest: the next value must be pulled first.
    Frontier,
}

/// What the source said when a reader at the frontier asked for the next value.
pub(crate) enum Pull<T> {
    /// The oldest [`push`](Broadcast::push)ed value not yet pulled is now released.
    Buffered,
    /// Nothing yet: the reader waits.
    Wait,
    /// The read ends with this outcome (the end of the stream, an error); nothing is pulled.
    Done(Result<Option<T>>),
}

/// The outcome of one [`Broadcast::read`].
pub(crate) enum ReadOutcome<T> {
    /// Nothing to read yet.
    Wait,
    /// The read's result.
    Done(Result<Option<T>>),
}

/// The ring (see the module docs).
pub(crate) struct Broadcast<T> {
    buf: VecDeque<T>,
    /// Sequence number of `buf[0]`.
    head: u64,
    /// Values pulled by the fastest reader.
    pulled: u64,
    /// The primary reader's cursor (the next sequence number it reads).
    primary: u64,
    /// Subscribers' ids and cursors, in subscription order (few; a `Vec` beats a map).
    subs: Vec<(u64, u64)>,
    next_reader: u64,
    /// How many already-pulled values are kept for slower readers.
    retain: usize,
    /// Set by the first `subscribe` (which needs `T: Clone`).
    clone: Option<fn(&T) -> T>,
}

impl<T> Broadcast<T> {
    /// An empty ring that keeps up to `retain` (at least one) pulled values for slower readers.
    pub(crate) fn new(retain: usize) -> Broadcast<T> {
        Broadcast {
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

    /// Buffers `v` ahead of its release (see [`Pull::Buffered`]).
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

    /// Removes a subscriber (and the values only it still needed).
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

    /// Where `reader` stands: `Err(Closed)` for an unknown reader, `Err(Lagged)` once if it fell
    /// behind the head (its cursor then moves to the head), else [`Position`].
    pub(crate) fn position(&mut self, reader: u64) -> Result<Position> {
        let (head, pulled) = (self.head, self.pulled);
        let cursor = self.cursor(reader).ok_or_else(|| Error::Closed)?;
        let c = *cursor;
        if c < head {
            *cursor = head;
            return Err(Error::Lagged { skipped: head - c });
        }
        Ok(if c < pulled { Position::Behind } else { Position::Frontier })
    }

    /// Pulls `v`, a new value the source handed in when a reader at the frontier asked (the
    /// reader then [`take`](Self::take)s it).
    #[cfg_attr(not(feature = "std"), allow(dead_code))] // the actor layer's fan-out
    pub(crate) fn pull_got(&mut self, v: T) {
        self.buf.push_back(v);
        self.pulled += 1;
    }

    /// Takes the value at `reader`'s cursor (which [`position`](Self::position) said is
    /// `Behind`) and moves the cursor on: moved out if no other reader still needs it, else
    /// cloned.
    pub(crate) fn take(&mut self, reader: u64) -> T {
        let c = match reader {
            PRIMARY => self.primary,
            _ => self.subs.iter().find(|(i, _)| *i == reader).map_or(self.pulled, |&(_, c)| c),
        };
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
        v
    }

    /// One read by `reader`, asking `pull` for the next value when the reader is the fastest.
    pub(crate) fn read(&mut self, reader: u64, pull: impl FnOnce() -> Pull<T>) -> ReadOutcome<T> {
        if reader == PRIMARY && self.subs.is_empty() {
            return self.read_alone(pull);
        }
        self.read_general(reader, pull)
    }

    fn read_general(&mut self, reader: u64, pull: impl FnOnce() -> Pull<T>) -> ReadOutcome<T> {
        match self.position(reader) {
            Err(e) => return ReadOutcome::Done(Err(e)),
            Ok(Position::Behind) => {}
            Ok(Position::Frontier) => match pull() {
                Pull::Buffered => self.pulled += 1,
                Pull::Wait => return ReadOutcome::Wait,
                Pull::Done(r) => return ReadOutcome::Done(r),
            },
        }
        ReadOutcome::Done(Ok(Some(self.take(reader))))
    }

    /// [`read`](Self::read) by the primary reader with no subscriber (the common case): the same
    /// outcome without the cursor search. Without subscribers the head never passes a cursor
    /// that has caught up (the primary moves each value out as it reads it, and the last
    /// `unsubscribe` trims the ring up to it), so a primary at the head reads the front value
    /// or pulls the next one; a primary behind the head (it lagged while subscribers were
    /// faster) takes the general path, which reports the lag.
    fn read_alone(&mut self, pull: impl FnOnce() -> Pull<T>) -> ReadOutcome<T> {
        if self.primary != self.head {
            return self.read_general(PRIMARY, pull);
        }
        if self.primary >= self.pulled {
            match pull() {
                Pull::Buffered => self.pulled += 1,
                Pull::Wait => return ReadOutcome::Wait,
                Pull::Done(r) => return ReadOutcome::Done(r),
            }
        }
        let v = self.buf.pop_front().expect("cursor within the ring");
        self.head += 1;
        self.primary += 1;
        ReadOutcome::Done(Ok(Some(v)))
    }

    /// The common case of [`read`](Self::read) by the primary reader with no subscriber, without
    /// building a [`ReadOutcome`]: the next value if one is there or `release` (the source, asked
    /// only when the reader is at the frontier) releases the next buffered one; `None` and
    /// nothing changed otherwise (`read` then says what holds).
    #[inline]
    pub(crate) fn take_alone(&mut self, release: impl FnOnce() -> bool) -> Option<T> {
        if !self.subs.is_empty() || self.primary != self.head {
            return None;
        }
        if self.primary >= self.pulled {
            if !release() {
                return None;
            }
            self.pulled += 1;
        }
        let v = self.buf.pop_front().expect("cursor within the ring");
        self.head += 1;
        self.primary += 1;
        Some(v)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn got(r: ReadOutcome<u32>) -> Result<Option<u32>> {
        match r {
            ReadOutcome::Wait => panic!("waits"),
            ReadOutcome::Done(r) => r,
        }
    }

    /// Buffered values released to the fastest reader, a subscriber that starts at the oldest
    /// unpulled value, a laggard told how many it missed, and values handed in by a source.
    #[test]
    fn cursors_lag_and_both_ways_in() {
        let mut b: Broadcast<u32> = Broadcast::new(2);
        for v in 1..=2 {
            b.push(v);
        }
        assert_eq!(got(b.read(PRIMARY, || Pull::Buffered)), Ok(Some(1)));
        let sub = b.subscribe(u32::clone);
        assert_eq!(got(b.read(PRIMARY, || Pull::Buffered)), Ok(Some(2)));
        // The subscriber starts at 2 (1 was pulled before it subscribed).
        assert_eq!(got(b.read(sub, || unreachable!())), Ok(Some(2)));
        for v in 3..=6 {
            assert_eq!(b.position(PRIMARY), Ok(Position::Frontier));
            b.pull_got(v);
            assert_eq!(b.take(PRIMARY), v);
        }
        // Retains 2 pulled values: 3 and 4 are gone for the subscriber.
        assert_eq!(got(b.read(sub, || unreachable!())), Err(Error::Lagged { skipped: 2 }));
        assert_eq!(got(b.read(sub, || unreachable!())), Ok(Some(5)));
        assert_eq!(got(b.read(sub, || unreachable!())), Ok(Some(6)));
        assert!(matches!(b.read(sub, || Pull::Wait), ReadOutcome::Wait));
        assert_eq!(got(b.read(sub, || Pull::Done(Ok(None)))), Ok(None));
        b.unsubscribe(sub);
        assert_eq!(got(b.read(sub, || unreachable!())), Err(Error::Closed));
        assert!(b.buf.is_empty(), "nothing kept once no reader needs it");
    }

    /// The primary reader alone (the fast path): values moved out in order, a wait, the end;
    /// and a primary that lagged while a faster subscriber was there is still told how many it
    /// missed once that subscriber has left, then reads on from the head.
    #[test]
    fn the_primary_alone_reads_in_order_and_still_reports_a_lag() {
        let mut b: Broadcast<u32> = Broadcast::new(1);
        b.push(1);
        b.push(2);
        assert_eq!(got(b.read(PRIMARY, || Pull::Buffered)), Ok(Some(1)));
        assert_eq!(got(b.read(PRIMARY, || Pull::Buffered)), Ok(Some(2)));
        assert!(matches!(b.read(PRIMARY, || Pull::Wait), ReadOutcome::Wait));
        let sub = b.subscribe(u32::clone);
        for v in 3..=5 {
            b.push(v);
            assert_eq!(got(b.read(sub, || Pull::Buffered)), Ok(Some(v)));
        }
        b.unsubscribe(sub);
        // Retains 1 pulled value: 3 and 4 are gone for the primary.
        assert_eq!(got(b.read(PRIMARY, || unreachable!())), Err(Error::Lagged { skipped: 2 }));
        assert_eq!(got(b.read(PRIMARY, || unreachable!())), Ok(Some(5)));
        assert_eq!(got(b.read(PRIMARY, || Pull::Done(Ok(None)))), Ok(None));
        assert!(b.buf.is_empty());
    }

    /// The stream adaptor: an item error is that item's, a lag is reported and read past, and
    /// any other read error is the last item.
    #[test]
    fn a_stream_reads_past_item_errors_and_lags_and_ends_at_any_other_error() {
        use futures::StreamExt;
        let reads: VecDeque<Result<Option<i32>>> = [
            Ok(Some(1)),
            Err(Error::Lagged { skipped: 2 }),
            Ok(Some(-1)),
            Ok(Some(3)),
            Err(Error::Closed),
            Ok(Some(4)),
        ]
        .into();
        let reads = alloc::rc::Rc::new(core::cell::RefCell::new(reads));
        let r = reads.clone();
        let s = stream_of(
            move || core::future::ready(r.borrow_mut().pop_front().unwrap_or(Ok(None))),
            |v: i32| if v < 0 { Err(Error::EndOfChannel) } else { Ok(v as u32) },
        );
        let got = crate::guest::run(async { Ok(s.collect::<Vec<_>>().await) }).unwrap();
        assert_eq!(
            got,
            [Ok(1), Err(Error::Lagged { skipped: 2 }), Err(Error::EndOfChannel), Ok(3), Err(Error::Closed)]
        );
        assert_eq!(reads.borrow().len(), 1, "nothing is read after the stream ended");
    }
}
