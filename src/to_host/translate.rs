//! The translation state machine of a linked task pair: pure, executor-free, fuzzable.
//!
//! The executors feed it events (either side ending, the handshake, each side's sends and
//! receives) and it decides what each side sees. It holds no values, only counts: the channel
//! beside it stores the values in the same order the machine accounts for them.
//!
//! The state diagram, its numbered transitions, its invariants and the translation table are
//! in the [`to_host`](super) module docs (public); the unit tests below drive the machine by
//! hand.

// `phase`, `host_done` and the other queries are what the fuzz model (`fuzzing/translate.rs`)
// and the tests read the machine by; the executors need only the verdicts.
#![cfg_attr(not(any(test, fuzzing)), allow(dead_code))]

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;

use crate::error::Cancelled;
use crate::{Error, ErrorGroup, Result};

/// How the host task ended (what [`Link::host_ended`] is fed; examples on [`Link`]).
#[derive(Debug, Clone, PartialEq)]
pub enum HostEnd {
    /// It returned a value.
    Returned,
    /// It failed with this error (as returned by the task, not yet translated).
    Failed(Error),
    /// It was cancelled (by itself, a third party or the guest) and dropped or returned its
    /// cancellation.
    Cancelled {
        /// The cancellation's reason.
        reason: String,
    },
}

/// How the guest side ended its part (the block, or the `run_task` caller).
#[derive(Debug, Clone, PartialEq)]
pub enum GuestEnd {
    /// The block returned normally.
    Exited,
    /// The block failed with this error.
    Failed(Error),
    /// The block was cancelled by an enclosing scope.
    Cancelled,
}

impl GuestEnd {
    /// The end a block result stands for.
    pub fn of<T>(r: &Result<T>) -> GuestEnd {
        match r {
            Ok(_) => GuestEnd::Exited,
            Err(Error::Cancelled) => GuestEnd::Cancelled,
            Err(e) => GuestEnd::Failed(e.clone()),
        }
    }
}

/// The phase, derived from the facts the machine holds ([`Link::phase`]; the module docs
/// draw the transitions, and drive them in an example).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for `started_nowait`.
    Starting,
    /// Both sides run.
    Linked,
    /// The guest is done; the host is being torn down.
    TearingDown,
    /// The host is done with no error for the guest; the guest still holds the link.
    HostDone,
    /// The host is done with an error for the guest, whose block is being cancelled
    /// (transition 9); the guest still holds the link.
    Interrupted,
    /// Both are done.
    Closed,
}

/// A send decision ([`Link::guest_send`], [`Link::host_send`]; example in the
/// [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub enum SendVerdict {
    /// The value is accepted (and now counted in flight).
    Accept,
    /// The other side's buffer is full: the caller keeps the value (wait, or hand it back).
    Full,
    /// The other side is gone: this error, and the value is handed back.
    Closed(Error),
}

/// A receive decision ([`Link::guest_recv`], [`Link::host_get`]; examples on [`Link`]).
#[derive(Debug, Clone, PartialEq)]
pub enum RecvVerdict {
    /// Take the next value (now no longer in flight).
    Value,
    /// Nothing yet: wait.
    Wait,
    /// End of channel.
    End,
    /// This error.
    Fail(Error),
}

/// The translation state of one linked pair: the `to_host` module docs draw its transitions;
/// the unit tests below drive it through them.
#[derive(Debug, Clone)]
pub struct Link {
    suppress_graceful_exits: bool,
    started: bool,
    host_end: Option<HostEnd>,
    guest_end: Option<GuestEnd>,
    /// The host ended while the guest still held the link.
    host_first: bool,
    /// The guest asked for the host's cancellation (`cancel_host_task`, or teardown).
    guest_cancelled_host: bool,
    /// There is a guest block to interrupt (`open_channel_from`; `false` for `run_task`).
    has_block: bool,
    /// Transition 9 happened: the host's end cancelled the running block. Set only while the
    /// guest held the link, never cleared.
    interrupted: bool,
    /// Capacity and values in flight, guest → host.
    cap_to_host: usize,
    to_host: usize,
    /// Capacity and values in flight, host → guest.
    cap_to_guest: usize,
    to_guest: usize,
}

impl Link {
    /// A new pair (transition 1). Capacities are at least 1.
    pub fn new(suppress_graceful_exits: bool, cap_to_host: usize, cap_to_guest: usize) -> Link {
        Link {
            suppress_graceful_exits,
            started: false,
            host_end: None,
            guest_end: None,
            host_first: false,
            guest_cancelled_host: false,
            has_block: true,
            interrupted: false,
            cap_to_host: cap_to_host.max(1),
            to_host: 0,
            cap_to_guest: cap_to_guest.max(1),
            to_guest: 0,
        }
    }

    /// A pair with no handshake (`run_task`): already linked.
    pub fn new_started() -> Link {
        let mut l = Link::new(true, 1, 1);
        l.started = true;
        l.has_block = false;
        l
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match (self.started || self.host_end.is_some(), &self.host_end, &self.guest_end) {
            (_, Some(_), Some(_)) => Phase::Closed,
            (_, None, Some(_)) => Phase::TearingDown,
            (false, None, None) => Phase::Starting,
            (true, None, None) => Phase::Linked,
            (_, Some(_), None) if self.interrupted => Phase::Interrupted,
            (_, Some(_), None) => Phase::HostDone,
        }
    }

    /// Whether the host has ended.
    #[inline]
    pub fn host_done(&self) -> bool {
        self.host_end.is_some()
    }

    /// Whether the guest side has ended.
    #[inline]
    pub fn guest_done(&self) -> bool {
        self.guest_end.is_some()
    }

    /// How the host ended, if it did.
    pub fn host_end(&self) -> Option<&HostEnd> {
        self.host_end.as_ref()
    }

    /// Whether the guest requested the host's cancellation.
    pub fn guest_cancelled_host(&self) -> bool {
        self.guest_cancelled_host
    }

    /// Values in flight (guest → host, host → guest).
    pub fn in_flight(&self) -> (usize, usize) {
        (self.to_host, self.to_guest)
    }

    /// Transition 2: `started_nowait`. `Err` if already started, or if the guest is gone.
    pub fn host_started(&mut self) -> Result<()> {
        // Nothing is accepted from a side that has ended (found by fuzzing/translate.rs: a
        // `HostChannel` that outlived its task, e.g. moved into a detached host task, could start
        // the pair, or send and get, after the host had ended).
        if self.host_end.is_some() {
            return Err(Error::Closed);
        }
        self.host_sees()?;
        if self.started {
            return Err(Error::LinkStartedTwice);
        }
        self.started = true;
        Ok(())
    }

    /// Transitions 3, 6, 7, 9: the host task ended. Returns `true` when the guest's running
    /// block must be cancelled now (transition 9). A second end is ignored.
    pub fn host_ended(&mut self, end: HostEnd) -> bool {
        if self.host_end.is_some() {
            return false;
        }
        self.host_first = self.guest_end.is_none();
        self.host_end = Some(end);
        self.interrupted = self.has_block && self.started && self.host_first && self.end_error().is_some();
        self.interrupted
    }

    /// Whether the host's end cancelled the block (transition 9).
    pub fn interrupted(&self) -> bool {
        self.interrupted
    }

    /// After transition 9: the error the host's end is for the guest, which every channel
    /// operation returns and the block's cancellation turns into.
    #[inline]
    pub fn interruption(&self) -> Option<Error> {
        if self.interrupted { self.end_error() } else { None }
    }

    /// What every guest channel operation checks first, before its cancellation check:
    /// [`Error::Closed`] once the guest side has ended (a handle used after the block), the
    /// [`interruption`](Self::interruption) once the host's end cancelled the block.
    ///
    /// An interruption by a *return* (`suppress_graceful_exits` off) is no error here: the
    /// channel then drains and ends as after any return (the table's "receive ends"); only the
    /// block's exit is `HostTaskExited`.
    #[inline]
    pub fn guest_op(&self) -> Result<()> {
        if self.guest_op_clear() {
            return Ok(());
        }
        self.guest_op_ended()
    }

    /// The common case of [`guest_op`](Self::guest_op) (neither side ended, nothing
    /// interrupted), without building a `Result` the size of an `Error`.
    #[inline]
    fn guest_op_clear(&self) -> bool {
        self.guest_end.is_none() && !self.interrupted
    }

    /// [`guest_op`](Self::guest_op) once something ended (out of line).
    #[cold]
    #[inline(never)]
    fn guest_op_ended(&self) -> Result<()> {
        if self.guest_end.is_some() {
            return Err(Error::Closed);
        }
        match self.interruption() {
            Some(_) if matches!(self.host_end, Some(HostEnd::Returned)) => Ok(()),
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether guest channel operations skip their cancellation check: once interrupted, they
    /// report the host's end (its error, or for a return the drain and the end of channel),
    /// never the block's own cancellation, which that end caused.
    #[inline]
    pub fn guest_skips_scope(&self) -> bool {
        self.interrupted
    }

    /// The host's end as an error for a guest that still holds the link: its failure, a
    /// cancellation the guest did not ask for, or (with `suppress_graceful_exits` off) a return.
    fn end_error(&self) -> Option<Error> {
        match self.host_end.as_ref()? {
            HostEnd::Returned if self.suppress_graceful_exits => None,
            HostEnd::Returned => Some(Error::HostTaskExited),
            end => self.translate_host_failure(end),
        }
    }

    /// Transitions 4, 5, 8: the guest side ended. Returns the cancellation to deliver to the
    /// host task if it still runs. A second end is ignored.
    pub fn guest_ended(&mut self, end: GuestEnd) -> Option<Cancelled> {
        if self.guest_end.is_some() {
            return None;
        }
        self.guest_end = Some(end);
        if self.host_end.is_some() {
            return None;
        }
        self.guest_cancelled_host = true;
        let cause = self.host_sees().err()?;
        Some(Cancelled { reason: String::from(cause.kind()), cause: Some(Box::new(cause)) })
    }

    /// The guest asks for the host's cancellation (`cancel_host_task`): the cancellation to
    /// deliver, if the host still runs.
    pub fn guest_cancels_host(&mut self) -> Option<Cancelled> {
        if self.host_end.is_some() || self.guest_cancelled_host {
            return None;
        }
        self.guest_cancelled_host = true;
        Some(Cancelled::new("cancelled by the guest side (cancel_host_task)"))
    }

    /// What the host side sees at a link operation: `Ok` while the guest holds the link, else
    /// the translated end of the guest.
    #[inline]
    pub fn host_sees(&self) -> Result<()> {
        if self.guest_end.is_none() {
            return Ok(());
        }
        self.host_sees_end()
    }

    /// Whether [`host_sees`](Self::host_sees) is `Ok` (the guest holds the link).
    #[inline]
    pub fn host_sees_nothing(&self) -> bool {
        self.guest_end.is_none()
    }

    /// [`host_sees`](Self::host_sees) once the guest side ended (out of line).
    #[cold]
    #[inline(never)]
    fn host_sees_end(&self) -> Result<()> {
        match &self.guest_end {
            None => Ok(()),
            Some(GuestEnd::Exited) => Err(Error::GuestTaskExited),
            Some(GuestEnd::Failed(e)) => Err(Error::GuestCancelled { cause: Some(Box::new(e.clone())) }),
            Some(GuestEnd::Cancelled) => Err(Error::GuestCancelled { cause: None }),
        }
    }

    /// What the guest's open call sees: `None` to keep waiting, `Some(Ok)` once started,
    /// `Some(Err)` if the host ended first (transition 3).
    pub fn open_outcome(&self) -> Option<Result<()>> {
        if self.started {
            return Some(Ok(()));
        }
        match self.host_end.as_ref()? {
            HostEnd::Returned => Some(Err(Error::HostTaskExited)),
            end => Some(Err(self.translate_host_failure(end).unwrap_or(Error::HostTaskExited))),
        }
    }

    /// The host's end as the guest sees it when it has drained every value: `Ok` is end of
    /// channel.
    fn host_end_for_guest(&self, end: &HostEnd) -> Result<()> {
        match end {
            HostEnd::Returned => Ok(()),
            other => match self.translate_host_failure(other) {
                Some(e) => Err(e),
                None => Ok(()),
            },
        }
    }

    /// A host failure or cancellation as the guest sees it; `None` when it is only the echo of
    /// what the guest itself asked for.
    fn translate_host_failure(&self, end: &HostEnd) -> Option<Error> {
        match end {
            HostEnd::Returned => None,
            HostEnd::Failed(e) if self.is_echo(e) => None,
            HostEnd::Failed(e) => Some(e.clone()),
            HostEnd::Cancelled { .. } if self.guest_cancelled_host => None,
            HostEnd::Cancelled { reason } => Some(Error::HostCancelled { reason: reason.clone() }),
        }
    }

    /// Whether `e` is the host returning the teardown it was handed (not an independent error).
    fn is_echo(&self, e: &Error) -> bool {
        self.guest_cancelled_host
            && matches!(e, Error::GuestTaskExited | Error::GuestCancelled { .. } | Error::HostTaskCancelled(_))
    }

    /// Guest → host send (`send`): accept, full, or the host's end.
    #[inline]
    pub fn guest_send(&mut self) -> SendVerdict {
        // Nothing is accepted from a side that has ended (fuzzing/translate.rs): the value could
        // never be received, the host's `get` fails once the guest has ended.
        if self.guest_end.is_some() {
            return SendVerdict::Closed(Error::Closed);
        }
        if let Some(end) = &self.host_end {
            return SendVerdict::Closed(match self.host_end_for_guest(end) {
                Ok(()) => Error::HostTaskExited,
                Err(e) => e,
            });
        }
        if self.to_host >= self.cap_to_host {
            return SendVerdict::Full;
        }
        self.to_host += 1;
        SendVerdict::Accept
    }

    /// Host `get`: a value, wait, or the guest's end.
    #[inline]
    pub fn host_get(&mut self) -> RecvVerdict {
        // Nothing is accepted from a side that has ended (see `host_started`).
        if self.host_end.is_some() {
            return RecvVerdict::Fail(Error::Closed);
        }
        if let Err(e) = self.host_sees() {
            return RecvVerdict::Fail(e);
        }
        if self.to_host > 0 {
            self.to_host -= 1;
            return RecvVerdict::Value;
        }
        RecvVerdict::Wait
    }

    /// Host → guest send (`send_nowait`, `send`).
    #[inline]
    pub fn host_send(&mut self) -> SendVerdict {
        // Nothing is accepted from a side that has ended (see `host_started`).
        if self.host_end.is_some() {
            return SendVerdict::Closed(Error::Closed);
        }
        if let Err(e) = self.host_sees() {
            return SendVerdict::Closed(e);
        }
        if self.to_guest >= self.cap_to_guest {
            return SendVerdict::Full;
        }
        self.to_guest += 1;
        SendVerdict::Accept
    }

    /// Guest `receive`: after the block, [`Error::Closed`]; once interrupted, the interruption;
    /// else buffered values first, then the host's end.
    #[inline]
    pub fn guest_recv(&mut self) -> RecvVerdict {
        if let Err(e) = self.guest_op() {
            return RecvVerdict::Fail(e);
        }
        if self.to_guest > 0 {
            self.to_guest -= 1;
            return RecvVerdict::Value;
        }
        match &self.host_end {
            None => RecvVerdict::Wait,
            Some(end) => match self.host_end_for_guest(end) {
                Ok(()) => RecvVerdict::End,
                Err(e) => RecvVerdict::Fail(e),
            },
        }
    }

    /// [`guest_recv`](Self::guest_recv) when it releases a value (the common case, answered
    /// without building a verdict): `true` and the value is released; `false` and nothing
    /// changed (`guest_recv` then says what else holds).
    #[inline]
    pub fn guest_recv_value(&mut self) -> bool {
        if self.guest_op_clear() && self.to_guest > 0 {
            self.to_guest -= 1;
            return true;
        }
        false
    }

    /// Whether a receive would not wait (a value is buffered or the host has ended).
    pub fn guest_recv_ready(&self) -> bool {
        self.to_guest > 0 || self.host_end.is_some()
    }

    /// Whether the guest has room to send (or the send would fail at once).
    pub fn guest_send_ready(&self) -> bool {
        self.to_host < self.cap_to_host || self.host_end.is_some()
    }

    /// Whether the host has room to send (or the send would fail at once).
    pub fn host_send_ready(&self) -> bool {
        self.to_guest < self.cap_to_guest || self.guest_end.is_some()
    }

    /// What `open_channel_from` returns once both sides are done (transitions 6, 8): the block's
    /// own result, the host's error, or both as a group.
    pub fn block_result<T>(&self, body: Result<T>) -> Result<T> {
        let Some(end) = &self.host_end else {
            // Only when the host could not be waited for (never in a run that finishes).
            return body;
        };
        match body {
            Ok(v) => match end {
                HostEnd::Returned if self.host_first && !self.suppress_graceful_exits => Err(Error::HostTaskExited),
                HostEnd::Returned => Ok(v),
                HostEnd::Failed(Error::GuestTaskExited) if !self.host_first && !self.suppress_graceful_exits => {
                    Err(Error::GuestTaskExited)
                }
                _ => match self.translate_host_failure(end) {
                    Some(e) => Err(e),
                    None => Ok(v),
                },
            },
            Err(Error::Cancelled) => match end {
                // The host's end cancelled the block (transition 9): the block's cancellation is
                // that error's consequence, and the error comes out (tractor's
                // `maybe_raise_aio_err` after the scope caught its cancel).
                _ if self.interrupted => Err(self.end_error().unwrap_or(Error::Cancelled)),
                // A real host failure outlives the cancellation (trio: the group's Cancelled
                // part is caught above, the failure propagates).
                HostEnd::Failed(f) if !self.is_echo(f) => Err(f.clone()),
                _ => Err(Error::Cancelled),
            },
            Err(e) => match end {
                HostEnd::Failed(f) if f.is_same(&e) || self.is_echo(f) => Err(e),
                HostEnd::Failed(f) => Err(Error::Group(ErrorGroup(vec![e, f.clone()]))),
                _ => Err(e),
            },
        }
    }

    /// What `run_task` and `wait_for_result` return once the host is done: `Ok(())` means
    /// "take the value", else the host's error or [`Error::HostCancelled`] (also when the guest
    /// asked for the cancellation: there is no value to return).
    pub fn task_result(&self) -> Result<()> {
        match &self.host_end {
            None | Some(HostEnd::Returned) => Ok(()),
            Some(HostEnd::Failed(e)) => Err(e.clone()),
            Some(HostEnd::Cancelled { reason }) => Err(Error::HostCancelled { reason: reason.clone() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host side's own failure, as a user error of its type.
    #[derive(Debug, thiserror::Error)]
    #[error("the connection is gone")]
    struct ConnectionLost;

    #[derive(Debug, thiserror::Error)]
    #[error("the guest body failed")]
    struct GuestBug;

    #[derive(Debug, thiserror::Error)]
    #[error("the host task failed worse")]
    struct HostBug;

    /// A host that fails while the block runs, with room for one value guest → host
    /// (transitions 1, 2, 9).
    #[test]
    fn a_host_failure_interrupts_the_block_and_is_reported_before_buffered_values() -> Result<()> {
        let mut link = Link::new(true, 1, 1); // (1) open
        assert_eq!(link.phase(), Phase::Starting);
        assert_eq!(link.open_outcome(), None); // the open call waits
        link.host_started()?; // (2) started_nowait
        assert_eq!(link.phase(), Phase::Linked);
        assert_eq!(link.guest_send(), SendVerdict::Accept);
        assert_eq!(link.guest_send(), SendVerdict::Full); // back-pressure: the host has not taken it
        assert_eq!(link.host_get(), RecvVerdict::Value);
        assert_eq!(link.in_flight(), (0, 0));
        assert_eq!(link.host_send(), SendVerdict::Accept); // one value for the guest, unread

        let lost = Error::user(ConnectionLost);
        assert!(link.host_ended(HostEnd::Failed(lost))); // (9): cancel the block now
        assert_eq!(link.phase(), Phase::Interrupted);
        // The guest's receive reports the failure, not the value still buffered...
        assert!(matches!(link.guest_recv(), RecvVerdict::Fail(e) if e.downcast_ref::<ConnectionLost>().is_some()));
        // ...and the block's cancellation comes out as the host's error.
        let out = link.block_result::<()>(Err(Error::Cancelled)).unwrap_err();
        assert!(out.downcast_ref::<ConnectionLost>().is_some(), "{out:?}");
        Ok(())
    }

    #[test]
    fn a_block_result_stands_for_its_end() {
        assert_eq!(GuestEnd::of(&Ok(1)), GuestEnd::Exited);
        assert_eq!(GuestEnd::of::<()>(&Err(Error::Cancelled)), GuestEnd::Cancelled);
        assert_eq!(GuestEnd::of::<()>(&Err(Error::Full)), GuestEnd::Failed(Error::Full));
    }

    /// The guest's block returns while the host still runs (transition 5, then 6): the host is
    /// handed a cancellation, sees `GuestTaskExited`, and its returning that error is an echo,
    /// not a failure of its own; independent failures of both sides both come out.
    #[test]
    fn a_host_echoing_the_guests_exit_is_no_error_and_two_failures_are_a_group() -> Result<()> {
        let mut link = Link::new(true, 4, 4);
        link.host_started()?;
        let teardown = link.guest_ended(GuestEnd::Exited).expect("the host still runs");
        assert_eq!(teardown.reason, "GuestTaskExited");
        assert_eq!(link.phase(), Phase::TearingDown);
        assert_eq!(link.host_sees(), Err(Error::GuestTaskExited));
        assert_eq!(link.host_get(), RecvVerdict::Fail(Error::GuestTaskExited));
        assert!(!link.host_ended(HostEnd::Failed(Error::GuestTaskExited)));
        assert_eq!(link.phase(), Phase::Closed);
        assert_eq!(link.block_result(Ok(7)), Ok(7)); // the echo is no error
        assert_eq!(link.guest_recv(), RecvVerdict::Fail(Error::Closed)); // a handle used after the block

        let mut link = Link::new(true, 4, 4);
        link.host_started()?;
        let mine = Error::user(GuestBug);
        link.guest_ended(GuestEnd::Failed(mine.clone()));
        link.host_ended(HostEnd::Failed(Error::user(HostBug)));
        match link.block_result::<()>(Err(mine)) {
            Err(Error::Group(g)) => {
                assert_eq!(g.0.len(), 2);
                assert!(g.0[0].downcast_ref::<GuestBug>().is_some() && g.0[1].downcast_ref::<HostBug>().is_some())
            }
            other => panic!("{other:?}"),
        }
        Ok(())
    }
}
