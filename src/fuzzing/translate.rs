//! Fuzz target `translate`: the pure translation machine [`Link`] against a reference model.
//!
//! The model ([`Facts`]) is written from the translation table of the
//! [`to_host`](crate::to_host#translation) module docs, not from the machine: it keeps only the
//! facts a spectator of the pair could log (who ended, how, in which order, whether the guest
//! asked for the host's cancellation, what the guest's end handed the host) and derives from
//! them, row by row, what each side must see. The machine keeps its own flags; the two must
//! agree on every observer after every event: [`Link::open_outcome`], [`Link::host_sees`],
//! [`Link::block_result`], [`Link::task_result`], [`Link::interruption`] and
//! [`Link::guest_op`], whether a host end interrupts the block
//! (transition 9: it ended first, after `started_nowait`, with an error for the guest — a
//! failure, a cancellation the guest did not ask for, a return with `suppress_graceful_exits`
//! off; never for a `run_task` pair), every send and receive verdict (after an interruption a
//! receive returns it before any buffered value; after the guest's end, `Closed`), the phase,
//! the readiness flags and the in-flight counts.
//!
//! Invariants checked besides the table: each side ends once (a second end changes nothing);
//! nothing is accepted for a side that has ended (no send into a side that is gone, and no
//! start, send or get by a side that is gone); in-flight counts never exceed the capacity
//! and are conserved (accepted sends = receives + in flight, per direction); `host_sees` after
//! the guest ended is exactly the translated guest end, and so is the cause the teardown
//! carries.
//!
//! The same model derives the expectations of the real-kernel target
//! ([`cancel_translation`](super::cancel_translation)).
//!
//! Input layout: byte 0 is the set-up (bit 0: `suppress_graceful_exits` *off*; bits 1–2 and 3–4:
//! the capacities guest → host and host → guest, minus one; bit 5: a `run_task` pair, already
//! linked, made by [`Link::new_started`]); every later byte is one event, `byte % 16` naming it
//! (see [`Op::decode`]) and `byte / 16` its parameter.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::to_host::translate::{GuestEnd, HostEnd, Link, Phase, RecvVerdict, SendVerdict};
use crate::{Error, ErrorGroup, Result};

/// Runs one fuzz input; panics if the machine and the model disagree.
pub fn run(data: &[u8]) {
    run_counted(data);
}

/// Reads a fuzz input one byte at a time (no `arbitrary` in the main crate).
#[derive(Debug, Clone)]
pub(crate) struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes(data)
    }

    /// The next byte, `None` at the end of the input.
    pub(crate) fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// The next byte, `0` past the end (so that every input decodes to a script).
    pub(crate) fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------------
// The reference model: the to_host module docs' translation table as a function of logged facts.
// ---------------------------------------------------------------------------------------------

/// What the reference model decides from: facts a spectator of the pair can log.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Facts {
    pub(crate) suppress: bool,
    /// `started_nowait` succeeded.
    pub(crate) started: bool,
    pub(crate) host_end: Option<HostEnd>,
    pub(crate) guest_end: Option<GuestEnd>,
    /// The host ended while the guest still held the link.
    pub(crate) host_first: bool,
    /// While the host ran, the guest asked for its cancellation: `cancel_host_task`, or the
    /// guest's own end (which tears the host down).
    pub(crate) guest_asked: bool,
    /// What the guest's end handed the running host (the errors it may echo back).
    pub(crate) handed: Vec<Error>,
    /// There is a block (`open_channel_from`, not `run_task`).
    pub(crate) block: bool,
    /// The host's end cancelled the running block: it ended first, after `started_nowait`,
    /// with an error for the guest (row "host fails with E" / "host cancelled by itself or a
    /// third party" / "host returns" with `suppress_graceful_exits` off).
    pub(crate) interrupted: bool,
}

impl Facts {
    pub(crate) fn new(suppress: bool) -> Facts {
        Facts {
            suppress,
            started: false,
            host_end: None,
            guest_end: None,
            host_first: false,
            guest_asked: false,
            handed: Vec::new(),
            block: true,
            interrupted: false,
        }
    }

    /// Rows "guest block exits normally" / "guest cancelled, or fails with E", host column.
    pub(crate) fn guest_end_for_host(end: &GuestEnd) -> Error {
        match end {
            GuestEnd::Exited => Error::GuestTaskExited,
            GuestEnd::Failed(e) => Error::GuestCancelled { cause: Some(Box::new(e.clone())) },
            GuestEnd::Cancelled => Error::GuestCancelled { cause: None },
        }
    }

    /// The guest end a block result stands for (written here, not borrowed from the machine).
    pub(crate) fn guest_end_of(body: &Result<()>) -> GuestEnd {
        match body {
            Ok(()) => GuestEnd::Exited,
            Err(Error::Cancelled) => GuestEnd::Cancelled,
            Err(e) => GuestEnd::Failed(e.clone()),
        }
    }

    /// What the host side sees at a link operation.
    pub(crate) fn host_view(&self) -> Result<()> {
        match &self.guest_end {
            None => Ok(()),
            Some(end) => Err(Facts::guest_end_for_host(end)),
        }
    }

    /// The host gave back what the guest's teardown handed it: not an error of its own.
    fn is_echo(&self, e: &Error) -> bool {
        self.guest_asked && self.handed.contains(e)
    }

    /// The host's end as an error the guest must see; `None` when it is no error for the
    /// guest (a return, an echo, or a cancellation the guest asked for).
    pub(crate) fn host_error(&self) -> Option<Error> {
        match self.host_end.as_ref()? {
            HostEnd::Returned => None,
            HostEnd::Failed(e) if self.is_echo(e) => None,
            HostEnd::Failed(e) => Some(e.clone()),
            HostEnd::Cancelled { .. } if self.guest_asked => None,
            HostEnd::Cancelled { reason } => Some(Error::HostCancelled { reason: reason.clone() }),
        }
    }

    /// The host's end as an error for a guest that still holds the link: `host_error`, or,
    /// with `suppress_graceful_exits` off, `HostTaskExited` for a return.
    fn end_error(&self) -> Option<Error> {
        match self.host_end.as_ref()? {
            HostEnd::Returned if self.suppress => None,
            HostEnd::Returned => Some(Error::HostTaskExited),
            _ => self.host_error(),
        }
    }

    /// Once the block was interrupted: the error every channel operation returns.
    pub(crate) fn interruption(&self) -> Option<Error> {
        if self.interrupted { self.end_error() } else { None }
    }

    /// What a guest channel operation sees first: `Closed` after the block, the interruption.
    pub(crate) fn guest_op(&self) -> Result<()> {
        if self.guest_end.is_some() {
            return Err(Error::Closed);
        }
        match self.host_end {
            // "host returns while the guest still holds the link: receive ends".
            Some(HostEnd::Returned) => Ok(()),
            _ => self.interruption().map_or(Ok(()), Err),
        }
    }

    /// A guest receive with nothing buffered, once the host has ended: end of channel
    /// (`Ok(None)`), the host's error, or `HostCancelled`.
    pub(crate) fn recv_end(&self) -> Result<Option<u32>> {
        match self.host_error() {
            None => Ok(None),
            Some(e) => Err(e),
        }
    }

    /// A guest send once the host has ended.
    pub(crate) fn send_refused(&self) -> Error {
        self.host_error().unwrap_or(Error::HostTaskExited)
    }

    /// The open call: `None` while waiting; rows "host fails / returns before started_nowait".
    pub(crate) fn open(&self) -> Option<Result<()>> {
        if self.started {
            return Some(Ok(()));
        }
        match self.host_end.as_ref()? {
            HostEnd::Returned => Some(Err(Error::HostTaskExited)),
            _ => Some(Err(self.host_error().unwrap_or(Error::HostTaskExited))),
        }
    }

    /// What the block returns, given its own result, once both sides are done.
    pub(crate) fn block(&self, body: Result<()>) -> Result<()> {
        let Some(end) = &self.host_end else {
            return body;
        };
        let independent = |f: &Error| !self.is_echo(f);
        match body {
            Ok(()) if self.host_first => match end {
                // "host returns while the guest still holds the link".
                HostEnd::Returned if self.suppress => Ok(()),
                HostEnd::Returned => Err(Error::HostTaskExited),
                // "host fails with E" / "host cancelled by itself or a third party".
                _ => self.host_error().map_or(Ok(()), Err),
            },
            // "guest block exits normally while host runs".
            Ok(()) => match end {
                // "with suppress_graceful_exits false, a host task that returns the
                // GuestTaskExited it got makes the block return Err(GuestTaskExited)".
                HostEnd::Failed(Error::GuestTaskExited) if !self.suppress => Err(Error::GuestTaskExited),
                HostEnd::Failed(f) if independent(f) => Err(f.clone()),
                _ => Ok(()),
            },
            // "host fails with E" (and the other interrupting rows): "the block is cancelled at
            // once, wherever it waits; Err(E) ... out of the block".
            Err(Error::Cancelled) if self.interrupted => Err(self.end_error().expect("an interruption is an error")),
            // "guest cancelled": Cancelled, unless the host failed on its own (never masked).
            Err(Error::Cancelled) => match end {
                HostEnd::Failed(f) if independent(f) => Err(f.clone()),
                _ => Err(Error::Cancelled),
            },
            // "guest fails with E"; "both fail independently" is a group of both.
            Err(e) => match end {
                HostEnd::Failed(f) if independent(f) && !f.is_same(&e) => {
                    Err(Error::Group(ErrorGroup(vec![e, f.clone()])))
                }
                _ => Err(e),
            },
        }
    }

    /// What `run_task` / `wait_for_result` give once the host has ended: `Ok` takes the value.
    pub(crate) fn task(&self) -> Result<()> {
        match self.host_end.as_ref() {
            None | Some(HostEnd::Returned) => Ok(()),
            Some(HostEnd::Failed(e)) => Err(e.clone()),
            Some(HostEnd::Cancelled { reason }) => Err(Error::HostCancelled { reason: reason.clone() }),
        }
    }

    /// The host ended (a second end is ignored); returns whether that end interrupts the
    /// block now.
    pub(crate) fn host_ended(&mut self, end: HostEnd) -> bool {
        if self.host_end.is_some() {
            return false;
        }
        self.host_first = self.guest_end.is_none();
        self.host_end = Some(end);
        self.interrupted = self.block && self.started && self.host_first && self.end_error().is_some();
        self.interrupted
    }

    /// The guest ended (a second end is ignored); returns the error handed to the host if it
    /// still ran (its teardown).
    pub(crate) fn guest_ended(&mut self, end: GuestEnd) -> Option<Error> {
        if self.guest_end.is_some() {
            return None;
        }
        let handed = Facts::guest_end_for_host(&end);
        self.guest_end = Some(end);
        if self.host_end.is_some() {
            return None;
        }
        self.guest_asked = true;
        self.handed.push(handed.clone());
        Some(handed)
    }

    /// `cancel_host_task`: whether it delivers a cancellation (the host runs and the guest had
    /// not asked yet).
    pub(crate) fn guest_cancels_host(&mut self) -> bool {
        if self.host_end.is_some() || self.guest_asked {
            return false;
        }
        self.guest_asked = true;
        true
    }
}

// ---------------------------------------------------------------------------------------------
// The script and the lock-step check.
// ---------------------------------------------------------------------------------------------

/// One event fed to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    HostStarted,
    HostReturned,
    /// An independent host failure, numbered by the parameter.
    HostFailed(u8),
    /// The host returns the teardown it was handed (a user failure if it was handed none).
    HostEchoes(u8),
    /// Cancelled: by itself (even parameter) or a third party (odd).
    HostCancelled(u8),
    GuestExited,
    GuestFailed(u8),
    /// The guest fails with the last error it saw from the link (propagated with `?`).
    GuestPropagates(u8),
    GuestCancelled,
    GuestCancelsHost,
    GuestSend,
    HostGet,
    HostSend,
    GuestRecv,
}

impl Op {
    fn decode(b: u8) -> Op {
        let p = b / 16;
        match b % 16 {
            0 => Op::HostStarted,
            1 => Op::HostReturned,
            2 => Op::HostFailed(p),
            3 => Op::HostEchoes(p),
            4 => Op::HostCancelled(p),
            5 => Op::GuestExited,
            6 => Op::GuestFailed(p),
            7 => Op::GuestPropagates(p),
            8 => Op::GuestCancelled,
            9 => Op::GuestCancelsHost,
            10 | 11 => Op::GuestSend,
            12 => Op::HostGet,
            13 | 14 => Op::HostSend,
            _ => Op::GuestRecv,
        }
    }
}

/// The model's side of the lock-step: the facts plus the counts of each direction.
#[derive(Debug, Clone)]
struct Model {
    facts: Facts,
    cap_to_host: usize,
    cap_to_guest: usize,
    sent_to_host: usize,
    got_by_host: usize,
    sent_to_guest: usize,
    got_by_guest: usize,
    /// The last error the guest saw from the link (what `GuestPropagates` fails with).
    guest_saw: Option<Error>,
}

impl Model {
    fn to_host(&self) -> usize {
        self.sent_to_host - self.got_by_host
    }

    fn to_guest(&self) -> usize {
        self.sent_to_guest - self.got_by_guest
    }

    fn phase(&self) -> Phase {
        let f = &self.facts;
        match (f.host_end.is_some(), f.guest_end.is_some()) {
            (true, true) => Phase::Closed,
            (false, true) => Phase::TearingDown,
            (true, false) if f.interrupted => Phase::Interrupted,
            (true, false) => Phase::HostDone,
            (false, false) if f.started => Phase::Linked,
            (false, false) => Phase::Starting,
        }
    }
}

/// How often each interesting outcome came up (so that a replay shows what it reached).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    events: usize,
    teardowns: usize,
    echoes: usize,
    groups: usize,
    host_cancelled_seen: usize,
    end_of_channel: usize,
    full: usize,
    refused_ended_side: usize,
    open_failed: usize,
    interrupts: usize,
}

impl core::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.events += o.events;
        self.teardowns += o.teardowns;
        self.echoes += o.echoes;
        self.groups += o.groups;
        self.host_cancelled_seen += o.host_cancelled_seen;
        self.end_of_channel += o.end_of_channel;
        self.full += o.full;
        self.refused_ended_side += o.refused_ended_side;
        self.open_failed += o.open_failed;
        self.interrupts += o.interrupts;
    }
}

fn user(kind: &str, n: u8) -> Error {
    Error::msg(kind, format!("{kind} #{n}"))
}

fn run_counted(data: &[u8]) -> Tally {
    let mut bytes = Bytes::new(data);
    let setup = bytes.byte();
    let task_pair = setup & 0x20 != 0;
    let (suppress, cap_h, cap_g) = if task_pair {
        (true, 1, 1)
    } else {
        (setup & 1 == 0, 1 + usize::from(setup >> 1 & 3), 1 + usize::from(setup >> 3 & 3))
    };
    let mut link = if task_pair { Link::new_started() } else { Link::new(suppress, cap_h, cap_g) };
    let mut facts = Facts::new(suppress);
    facts.started = task_pair;
    facts.block = !task_pair;
    let mut m = Model {
        facts,
        cap_to_host: cap_h,
        cap_to_guest: cap_g,
        sent_to_host: 0,
        got_by_host: 0,
        sent_to_guest: 0,
        got_by_guest: 0,
        guest_saw: None,
    };
    let mut tally = Tally::default();
    check(&link, &m, &mut tally);
    while let Some(b) = bytes.next() {
        step(&mut link, &mut m, Op::decode(b), &mut tally);
        check(&link, &m, &mut tally);
        tally.events += 1;
    }
    tally
}

/// Applies one event to both, comparing the machine's answer with the model's.
fn step(link: &mut Link, m: &mut Model, op: Op, tally: &mut Tally) {
    let host_gone = m.facts.host_end.is_some();
    let guest_gone = m.facts.guest_end.is_some();
    match op {
        Op::HostStarted => {
            let got = link.host_started();
            if host_gone {
                // Nothing is accepted from a side that has ended.
                assert!(got.is_err(), "started_nowait accepted after the host ended: {m:?}");
                tally.refused_ended_side += 1;
            } else if guest_gone {
                assert_eq!(got, m.facts.host_view(), "started_nowait after the guest ended");
            } else if m.facts.started {
                assert_eq!(got.map_err(|e| String::from(e.kind())), Err(String::from("LinkStartedTwice")));
            } else {
                assert_eq!(got, Ok(()));
                m.facts.started = true;
            }
        }
        Op::HostReturned => host_end(link, m, HostEnd::Returned, tally),
        Op::HostFailed(n) => host_end(link, m, HostEnd::Failed(user("HostError", n)), tally),
        Op::HostEchoes(n) => {
            let e = match m.facts.host_view() {
                Err(handed) => {
                    tally.echoes += 1;
                    handed
                }
                Ok(()) => user("HostError", n),
            };
            host_end(link, m, HostEnd::Failed(e), tally);
        }
        Op::HostCancelled(n) => {
            let reason = if n % 2 == 0 { "self" } else { "third party" };
            host_end(link, m, HostEnd::Cancelled { reason: String::from(reason) }, tally);
        }
        Op::GuestExited => guest_end(link, m, GuestEnd::Exited, tally),
        Op::GuestFailed(n) => guest_end(link, m, GuestEnd::Failed(user("GuestError", n)), tally),
        Op::GuestPropagates(n) => {
            let e = m.guest_saw.clone().unwrap_or_else(|| user("GuestError", n));
            let end = if e.is_cancelled() { GuestEnd::Cancelled } else { GuestEnd::Failed(e) };
            guest_end(link, m, end, tally);
        }
        Op::GuestCancelled => guest_end(link, m, GuestEnd::Cancelled, tally),
        Op::GuestCancelsHost => {
            let got = link.guest_cancels_host();
            let want = m.facts.guest_cancels_host();
            assert_eq!(got.is_some(), want, "cancel_host_task delivered? {m:?}");
            if let Some(c) = got {
                assert_eq!(c.cause, None, "cancel_host_task carries no teardown cause");
            }
        }
        Op::GuestSend => {
            let got = link.guest_send();
            if guest_gone {
                assert!(matches!(got, SendVerdict::Closed(_)), "a send of the guest accepted after its end: {got:?}");
                tally.refused_ended_side += 1;
            } else if host_gone {
                assert_eq!(got, SendVerdict::Closed(m.facts.send_refused()), "guest send, host gone");
                if let SendVerdict::Closed(e) = got {
                    m.guest_saw = Some(e);
                }
            } else if m.to_host() >= m.cap_to_host {
                assert_eq!(got, SendVerdict::Full);
                tally.full += 1;
            } else {
                assert_eq!(got, SendVerdict::Accept);
                m.sent_to_host += 1;
            }
        }
        Op::HostGet => {
            let got = link.host_get();
            if host_gone {
                assert!(matches!(got, RecvVerdict::Fail(_)), "a get of the host accepted after its end: {got:?}");
                tally.refused_ended_side += 1;
            } else if let Err(e) = m.facts.host_view() {
                assert_eq!(got, RecvVerdict::Fail(e), "host get after the guest ended");
            } else if m.to_host() > 0 {
                assert_eq!(got, RecvVerdict::Value);
                m.got_by_host += 1;
            } else {
                assert_eq!(got, RecvVerdict::Wait);
            }
        }
        Op::HostSend => {
            let got = link.host_send();
            if host_gone {
                assert!(matches!(got, SendVerdict::Closed(_)), "a send of the host accepted after its end: {got:?}");
                tally.refused_ended_side += 1;
            } else if let Err(e) = m.facts.host_view() {
                assert_eq!(got, SendVerdict::Closed(e), "host send after the guest ended");
            } else if m.to_guest() >= m.cap_to_guest {
                assert_eq!(got, SendVerdict::Full);
                tally.full += 1;
            } else {
                assert_eq!(got, SendVerdict::Accept);
                m.sent_to_guest += 1;
            }
        }
        Op::GuestRecv => {
            let got = link.guest_recv();
            if guest_gone {
                assert_eq!(got, RecvVerdict::Fail(Error::Closed), "a receive after the block");
                tally.refused_ended_side += 1;
            } else if let Err(e) = m.facts.guest_op() {
                // The interruption comes before any value still buffered.
                assert_eq!(got, RecvVerdict::Fail(e.clone()), "a receive in an interrupted block");
                tally.host_cancelled_seen += usize::from(matches!(e, Error::HostCancelled { .. }));
                m.guest_saw = Some(e);
            } else if m.to_guest() > 0 {
                assert_eq!(got, RecvVerdict::Value, "buffered values come first");
                m.got_by_guest += 1;
            } else if !host_gone {
                assert_eq!(got, RecvVerdict::Wait);
            } else {
                let want = match m.facts.recv_end() {
                    Ok(_) => RecvVerdict::End,
                    Err(e) => RecvVerdict::Fail(e),
                };
                assert_eq!(got, want, "guest receive after the host ended: {m:?}");
                match got {
                    RecvVerdict::Fail(e) => {
                        tally.host_cancelled_seen += usize::from(matches!(e, Error::HostCancelled { .. }));
                        m.guest_saw = Some(e);
                    }
                    _ => tally.end_of_channel += 1,
                }
            }
        }
    }
}

fn host_end(link: &mut Link, m: &mut Model, end: HostEnd, tally: &mut Tally) {
    let first = link.host_end().cloned();
    let interrupt = link.host_ended(end.clone());
    let want = m.facts.host_ended(end);
    assert_eq!(interrupt, want, "the host's end interrupts the block? {m:?}");
    tally.interrupts += usize::from(interrupt);
    if let Some(first) = first {
        // Each side ends once: a second end changes nothing.
        assert_eq!(link.host_end(), Some(&first), "a second host end replaced the first");
    }
}

fn guest_end(link: &mut Link, m: &mut Model, end: GuestEnd, tally: &mut Tally) {
    let seen_before = link.host_sees();
    let got = link.guest_ended(end.clone());
    let want = m.facts.guest_ended(end);
    match (got, want) {
        (None, None) => {
            if m.facts.guest_end.is_some() && seen_before.is_err() {
                // A second guest end changes nothing.
                assert_eq!(link.host_sees(), seen_before, "a second guest end replaced the first");
            }
        }
        (Some(c), Some(handed)) => {
            // The teardown carries exactly what the host must see, and names it.
            assert_eq!(c.reason, handed.kind(), "teardown reason");
            assert_eq!(Error::from(c), handed, "teardown cause");
            tally.teardowns += 1;
        }
        (got, want) => panic!("teardown delivered: machine {got:?}, model {want:?}; {m:?}"),
    }
}

/// Every observer of the machine against the model, after every event.
fn check(link: &Link, m: &Model, tally: &mut Tally) {
    let f = &m.facts;
    assert_eq!(link.phase(), m.phase(), "phase; {m:?}");
    assert_eq!(link.host_done(), f.host_end.is_some());
    assert_eq!(link.guest_done(), f.guest_end.is_some());
    assert_eq!(link.host_end(), f.host_end.as_ref());
    assert_eq!(link.guest_cancelled_host(), f.guest_asked, "guest asked; {m:?}");

    // Conservation and capacity: accepted = received + in flight, in flight <= capacity.
    assert_eq!(link.in_flight(), (m.to_host(), m.to_guest()), "in flight; {m:?}");
    assert!(m.to_host() <= m.cap_to_host && m.to_guest() <= m.cap_to_guest);

    assert_eq!(link.host_sees(), f.host_view(), "host_sees; {m:?}");
    assert_eq!(link.interrupted(), f.interrupted, "interrupted; {m:?}");
    assert_eq!(link.interruption(), f.interruption(), "interruption; {m:?}");
    assert_eq!(link.guest_op(), f.guest_op(), "guest_op; {m:?}");
    assert_eq!(link.guest_skips_scope(), f.interrupted, "guest_skips_scope; {m:?}");
    let open = link.open_outcome();
    assert_eq!(open, f.open(), "open_outcome; {m:?}");
    tally.open_failed += usize::from(matches!(open, Some(Err(_))));
    if f.host_end.is_some() {
        assert_eq!(link.task_result(), f.task(), "task_result; {m:?}");
    }

    // The block's result, for the body that ended the guest, or (while it holds the link) for
    // every body it could end with now.
    let bodies: Vec<Result<()>> = match &f.guest_end {
        Some(GuestEnd::Exited) => vec![Ok(())],
        Some(GuestEnd::Cancelled) => vec![Err(Error::Cancelled)],
        Some(GuestEnd::Failed(e)) => vec![Err(e.clone())],
        None => {
            let mut b = vec![Ok(()), Err(Error::Cancelled), Err(user("GuestError", 99))];
            b.extend(m.guest_saw.clone().map(Err));
            b
        }
    };
    for body in bodies {
        let mut hypothetical = f.clone();
        if hypothetical.guest_end.is_none() && hypothetical.host_end.is_some() {
            hypothetical.guest_ended(Facts::guest_end_of(&body));
        }
        let want = if hypothetical.guest_end.is_some() { hypothetical.block(body.clone()) } else { body.clone() };
        let got = link.block_result(body.clone());
        assert_eq!(got, want, "block_result({body:?}); {m:?}");
        tally.groups += usize::from(matches!(got, Err(Error::Group(_))));
    }

    // Readiness agrees with the verdicts.
    let host_gone = f.host_end.is_some();
    assert_eq!(link.guest_recv_ready(), m.to_guest() > 0 || host_gone);
    assert_eq!(link.guest_send_ready(), m.to_host() < m.cap_to_host || host_gone);
    assert_eq!(link.host_send_ready(), m.to_guest() < m.cap_to_guest || f.guest_end.is_some());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// xorshift64: a fixed, dependency-free pseudo-random sequence.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        pub(crate) fn below(&mut self, n: u64) -> u8 {
            (self.next() % n) as u8
        }
    }

    /// A script that usually starts the pair, then mixes traffic with the ends.
    fn random_script(rng: &mut Rng) -> Vec<u8> {
        let mut s = vec![rng.below(64)];
        if rng.below(4) != 0 {
            s.push(0);
        }
        let n = rng.below(24);
        for _ in 0..n {
            let b = rng.next() as u8;
            // Ends are rarer than traffic, so that traffic happens in every phase.
            if matches!(b % 16, 1..=8) && rng.below(3) != 0 {
                s.push(10 + rng.below(6));
            } else {
                s.push(b);
            }
        }
        s
    }

    /// The committed seeds of `target`, sorted by name.
    pub(crate) fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = format!("{}/fuzz/seeds/{target}", env!("CARGO_MANIFEST_DIR"));
        let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|entry| {
                let path = entry.expect("a seed entry").path();
                (path.display().to_string(), std::fs::read(&path).expect("a readable seed"))
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn replays_the_committed_seeds() {
        let seeds = seeds("translate");
        assert!(seeds.len() >= 10, "{} seeds", seeds.len());
        let mut tally = Tally::default();
        for (name, data) in seeds {
            println!("{name}");
            tally += run_counted(&data);
        }
        assert!(tally.teardowns > 0 && tally.echoes > 0 && tally.groups > 0, "{tally:?}");
        assert!(tally.interrupts > 0, "{tally:?}");
    }

    #[test]
    fn replays_5000_pseudo_random_scripts() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let mut tally = Tally::default();
        for _ in 0..5000 {
            tally += run_counted(&random_script(&mut rng));
        }
        println!("{tally:?}");
        // Every row of the table was reached, many times over.
        assert!(tally.teardowns > 1000, "{tally:?}");
        assert!(tally.echoes > 100, "{tally:?}");
        assert!(tally.groups > 100, "{tally:?}");
        assert!(tally.host_cancelled_seen > 50, "{tally:?}");
        assert!(tally.end_of_channel > 100, "{tally:?}");
        assert!(tally.full > 100, "{tally:?}");
        assert!(tally.refused_ended_side > 100, "{tally:?}");
        assert!(tally.open_failed > 100, "{tally:?}");
        assert!(tally.interrupts > 100, "{tally:?}");
    }

    #[test]
    fn handles_the_degenerate_inputs() {
        run(&[]);
        run(&[0xFF]);
        run(&[0x20; 64]);
        run(&[0; 300]);
        run(&[0xFF; 300]);
    }

    #[test]
    fn the_model_reads_the_table_rows() {
        // Host fails mid-stream, guest propagates it: not doubled.
        let mut f = Facts::new(true);
        f.started = true;
        let host_error = user("HostError", 1);
        f.host_ended(HostEnd::Failed(host_error.clone()));
        assert_eq!(f.recv_end(), Err(host_error.clone()));
        f.guest_ended(GuestEnd::Failed(host_error.clone()));
        assert_eq!(f.block(Err(host_error.clone())), Err(host_error.clone()));
        // An error of the guest's own that only reads like the host's is not the host's: both.
        let twin = Err(Error::Group(ErrorGroup(vec![user("HostError", 1), host_error.clone()])));
        assert_eq!(f.block(Err(user("HostError", 1))), twin);
        // Both fail independently: a group, guest first.
        let g = Err(Error::Group(ErrorGroup(vec![user("GuestError", 2), user("HostError", 1)])));
        assert_eq!(f.block(Err(user("GuestError", 2))), g);
        // Guest exits with suppress off, host returns the GuestTaskExited it got.
        let mut f = Facts::new(false);
        f.started = true;
        assert_eq!(f.guest_ended(GuestEnd::Exited), Some(Error::GuestTaskExited));
        f.host_ended(HostEnd::Failed(Error::GuestTaskExited));
        assert_eq!(f.block(Ok(())), Err(Error::GuestTaskExited));
        // Host fails while the block waits elsewhere: interrupted, the block's Cancelled is E.
        let mut f = Facts::new(true);
        f.started = true;
        assert!(f.host_ended(HostEnd::Failed(user("HostError", 3))));
        assert_eq!(f.block(Err(Error::Cancelled)), Err(user("HostError", 3)));
        // A return interrupts only with suppress off, and then is HostTaskExited.
        let mut f = Facts::new(true);
        f.started = true;
        assert!(!f.host_ended(HostEnd::Returned));
        let mut f = Facts::new(false);
        f.started = true;
        assert!(f.host_ended(HostEnd::Returned));
        assert_eq!(f.block(Err(Error::Cancelled)), Err(Error::HostTaskExited));
        // A cancellation the guest asked for does not interrupt; a run_task pair never does.
        let mut f = Facts::new(true);
        f.started = true;
        assert!(f.guest_cancels_host());
        assert!(!f.host_ended(HostEnd::Cancelled { reason: String::from("asked") }));
        let mut f = Facts::new(true);
        (f.started, f.block) = (true, false);
        assert!(!f.host_ended(HostEnd::Failed(user("HostError", 4))));
    }
}
