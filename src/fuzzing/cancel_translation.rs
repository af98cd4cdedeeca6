//! Fuzz target `cancel_translation`: a script of operations on a real linked pair
//! ([`to_host::open_channel_from`] or [`to_host::run_task`]) on the real kernel, under the
//! virtual clock and a seeded scheduling policy; every script is checked against the reference
//! model of [`translate`](super::translate) afterwards.
//!
//! The host task and the guest block each run their list of operations in turn and log every
//! outcome into one ordered log, together with the kernel's own trace events (drained into the
//! log before each entry, so the log interleaves both exactly as they happened). The checker
//! then walks the log, derives from the logged facts alone (which side ended first and how,
//! which cancellation reached the host first, the suppress flag, whether the guest asked for the
//! host's cancellation) what each side must have seen, and asserts:
//!
//! - **neither task outlived the pair**: the host future (a drop token inside it) is gone, and
//!   both ends are traced, before `open_channel_from` / `run_task` returns;
//! - **each side saw exactly what the table prescribes**: the open call's error, every receive's
//!   end (end of channel, the host's error, `HostCancelled`), every failed send, every
//!   `wait_for_result`, the block's / `run_task`'s result (model [`Facts`]); on the host side,
//!   every operation after the first cancellation that reached the task fails with exactly it
//!   (`GuestTaskExited`, `GuestCancelled{cause}`, or its own / a third party's `Cancelled`), no
//!   operation before it fails, and the kernel traced that cancellation at exactly the moment
//!   the model says it happened;
//! - **the host's end interrupts the block** (transition 9) exactly when the model derives it
//!   (traced `interrupt` right after `host_end`): from then on every channel operation returns
//!   the interruption (before the scope's check and before buffered values), and every guest
//!   await other than the channel ([`AwaitKind`]: an `Event` nobody sets, an `Event` a nursery
//!   child sets, a nursery of sleepers, and `guest::sleep`) that it ends returns `Cancelled` at
//!   the very virtual time the host future was gone;
//! - **no value lost or duplicated**: what each reader received is exactly the host's
//!   successful sends in order (a subscriber from where it joined, a laggard after exactly the
//!   `Lagged{n}` it was told), what the host got is exactly the guest's successful sends in
//!   order, `Full` comes exactly at capacity and hands the value back, and a reader that sees the
//!   end has seen everything;
//! - the host task is dropped only after ignoring a cancellation; nothing panicked; no payload
//!   leaked (a thread-local count of live [`Tracked`] values is back where it was once the host
//!   is dropped); the guest run's outcome is its own (never `GuestRunAbandoned`);
//! - on scripts that ask for it, a second run with the same seed logs exactly the same entries
//!   and kernel trace events.
//!
//! Input layout (every input decodes; missing bytes read as zero):
//!
//! | byte | meaning |
//! |---|---|
//! | 0 | the host's scheduling seed |
//! | 1 | flags: bit 0 `run_task` (else `open_channel_from`), 1 `suppress_graceful_exits` off, 2 the host swallows errors, 3 the guest swallows errors, 4 a sibling cancels the scope, 5 the scope has a deadline (else a 10 s watchdog), 6 run twice (determinism) |
//! | 2 | capacities: bits 0–1 guest → host, bits 2–3 host → guest (minus one) |
//! | 3 | the scope's deadline in ms |
//! | 4 | the sibling's delay in ms |
//! | 5 | the number of host operations (mod 32) |
//! | then | the host operations ([`HostOp::decode`]), then the guest operations ([`GuestOp::decode`]) |

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::time::Duration;

use super::translate::{Bytes, Facts};
use crate::error::Cancelled;
use crate::guest::{self, CancelScope};
use crate::host::{self, Host};
use crate::time::{Clock, Instant, VirtualClock};
use crate::to_host::translate::{GuestEnd, HostEnd};
use crate::to_host::{self, BroadcastReceiver, HostChannel, LinkOpts, LinkedTaskChannel, SendNowaitError};
use crate::trace::{Side, Trace, TraceEvent};
use crate::{Error, Result};

/// Runs one fuzz input; panics if an invariant does not hold.
pub fn run(data: &[u8]) {
    check_script(&Script::decode(data));
}

/// The first value (`started_nowait`), the host's return value, the block's value.
const FIRST: u32 = 1_000_000;
const RET: u32 = 2_000_000;
const BODY: u32 = 3_000_000;
const SELF_REASON: &str = "the host cancelled itself";
const THIRD_REASON: &str = "a third party cancelled the host";
/// The reason `cancel_host_task` gives (what the host sees in its `Cancelled`).
const GUEST_REASON: &str = "cancelled by the guest side (cancel_host_task)";
/// The deadline of the scope when the script sets none: it ends scripts that deadlock.
const WATCHDOG_MS: u64 = 10_000;

std::thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

/// A payload that counts its live copies (thread-local), to prove nothing leaks.
#[derive(Debug, PartialEq, Eq)]
pub struct Tracked(u32);

impl Tracked {
    fn new(v: u32) -> Tracked {
        LIVE.with(|l| l.set(l.get() + 1));
        Tracked(v)
    }
}

impl Clone for Tracked {
    fn clone(&self) -> Tracked {
        Tracked::new(self.0)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        LIVE.with(|l| l.set(l.get() - 1));
    }
}

type HostChan = HostChannel<Tracked, Tracked, Tracked>;
type GuestChan = LinkedTaskChannel<Tracked, Tracked, Tracked, Tracked>;
type Sub = BroadcastReceiver<Tracked>;

// ---------------------------------------------------------------------------------------------
// The script.
// ---------------------------------------------------------------------------------------------

/// What the host task does, in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostOp {
    Start,
    Send,
    SendNowait,
    Get,
    Sleep(u64),
    Return,
    Fail,
    /// `host::cancel_current`.
    SelfCancel,
    /// Awaits a future that is not host-aware: only the kernel can end it (by dropping).
    IgnoreCancel,
    /// Spawns a third party that cancels the host task after this many ms.
    SpawnCanceller(u64),
}

impl HostOp {
    fn decode(b: u8) -> HostOp {
        let ms = u64::from(b / 10) * 2;
        match b % 10 {
            0 => HostOp::Start,
            1 => HostOp::Send,
            2 => HostOp::SendNowait,
            3 => HostOp::Get,
            4 => HostOp::Sleep(ms),
            5 => HostOp::Return,
            6 => HostOp::Fail,
            7 => HostOp::SelfCancel,
            8 => HostOp::IgnoreCancel,
            _ => HostOp::SpawnCanceller(ms),
        }
    }
}

/// What the guest block does, in turn (unused by `run_task` scripts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuestOp {
    Send,
    Receive,
    /// Leaves the block normally.
    Break,
    Fail,
    CancelHost,
    Subscribe,
    /// Receives through subscriber `n % count` (subscribing first if there is none).
    SubReceive(usize),
    Sleep(u64),
    WaitForResult,
    /// A guest await other than the channel: only the block's cancellation, or its own end,
    /// ends it.
    Await(AwaitKind),
}

/// The guest awaits other than the channel that the host's end must interrupt at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AwaitKind {
    /// An `Event` nobody sets: only a cancellation ends the wait.
    Forever,
    /// A nursery whose child sets an `Event` after this many ms, while the block waits on it.
    EventFromNursery(u64),
    /// A nursery with two children sleeping this many ms and twice as long.
    Sleepers(u64),
}

impl GuestOp {
    fn decode(b: u8) -> GuestOp {
        match b % 10 {
            0 => GuestOp::Send,
            1 => GuestOp::Receive,
            2 => GuestOp::Break,
            3 => GuestOp::Fail,
            4 => GuestOp::CancelHost,
            5 => GuestOp::Subscribe,
            6 => GuestOp::SubReceive(usize::from(b / 10)),
            7 => GuestOp::Sleep(u64::from(b / 10) * 2),
            8 => GuestOp::WaitForResult,
            _ => {
                let p = b / 10;
                let ms = u64::from(p / 3) * 8;
                GuestOp::Await(match p % 3 {
                    0 => AwaitKind::Forever,
                    1 => AwaitKind::EventFromNursery(ms),
                    _ => AwaitKind::Sleepers(ms),
                })
            }
        }
    }
}

/// One decoded fuzz input.
#[derive(Debug, Clone)]
struct Script {
    seed: u64,
    task: bool,
    suppress: bool,
    host_swallows: bool,
    guest_swallows: bool,
    cap_to_host: usize,
    cap_to_guest: usize,
    deadline_ms: u64,
    sibling_ms: Option<u64>,
    twice: bool,
    host: Vec<HostOp>,
    guest: Vec<GuestOp>,
}

impl Script {
    fn decode(data: &[u8]) -> Script {
        let mut b = Bytes::new(data);
        let seed = u64::from(b.byte());
        let flags = b.byte();
        let caps = b.byte();
        let deadline = b.byte();
        let sibling = b.byte();
        let host_len = b.byte() % 32;
        let host = (0..host_len).map_while(|_| b.next()).map(HostOp::decode).collect();
        let guest = core::iter::from_fn(|| b.next()).take(64).map(GuestOp::decode).collect();
        Script {
            seed,
            task: flags & 1 != 0,
            suppress: flags & 2 == 0,
            host_swallows: flags & 4 != 0,
            guest_swallows: flags & 8 != 0,
            cap_to_host: 1 + usize::from(caps & 3),
            cap_to_guest: 1 + usize::from(caps >> 2 & 3),
            deadline_ms: if flags & 32 != 0 { u64::from(deadline) } else { WATCHDOG_MS },
            sibling_ms: (flags & 16 != 0).then_some(u64::from(sibling)),
            twice: flags & 64 != 0,
            host,
            guest,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The log.
// ---------------------------------------------------------------------------------------------

/// One logged fact, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    /// A kernel trace event.
    Kernel(TraceEvent),
    HostStarted,
    HostSent(u32),
    /// `send_nowait` said `Full` and handed this value back.
    HostFull(u32),
    HostGot(u32),
    HostSlept,
    /// A host operation failed (`start`: it was `started_nowait`).
    HostSaw {
        start: bool,
        error: Error,
    },
    HostSelfCancel,
    HostIgnoring,
    ThirdParty,
    /// The host future returned this (its value's number).
    HostReturned(Result<u32>),
    /// The drop token inside the host future was dropped (at this virtual time): the future
    /// is gone.
    HostDropped(Instant),
    GuestFirst(u32),
    GuestSent(u32),
    GuestSendFailed {
        error: Error,
        cancelled: bool,
    },
    /// A read by reader 0 (`receive`) or subscriber `n`; `cancelled`: the scope's state then.
    GuestRecv {
        reader: usize,
        got: Result<Option<u32>>,
        cancelled: bool,
    },
    GuestSubscribed(usize),
    GuestCancelHost,
    GuestSlept {
        got: Result<()>,
        cancelled: bool,
        at: Instant,
    },
    /// An [`AwaitKind`] ended (at this virtual time).
    GuestAwaited {
        kind: AwaitKind,
        got: Result<()>,
        cancelled: bool,
        at: Instant,
    },
    GuestWaited {
        got: Result<u32>,
        cancelled: bool,
    },
    /// The block's own result, as it returns.
    GuestBody(Result<()>),
    SiblingCancel,
    /// What `open_channel_from` / `run_task` returned.
    Returned(Result<u32>),
    /// What the scope around it returned.
    Outer(Result<Option<u32>>),
}

/// The shared log: my entries, interleaved with the kernel's trace in the order they happened.
#[derive(Clone)]
struct Log {
    entries: Rc<RefCell<Vec<Entry>>>,
    trace: Trace,
    clock: Rc<VirtualClock>,
}

impl Log {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn push(&self, e: Entry) {
        self.drain();
        self.entries.borrow_mut().push(e);
    }

    fn drain(&self) {
        let events = self.trace.take();
        self.entries.borrow_mut().extend(events.into_iter().map(Entry::Kernel));
    }
}

/// Logs the host future's end, however it ends (returned, or dropped by the kernel).
struct DropToken(Log);

impl Drop for DropToken {
    fn drop(&mut self) {
        self.0.push(Entry::HostDropped(self.0.now()));
    }
}

// ---------------------------------------------------------------------------------------------
// The two programs.
// ---------------------------------------------------------------------------------------------

async fn host_program(chan: Option<HostChan>, script: Rc<Script>, log: Log) -> Result<Tracked> {
    let _token = DropToken(log.clone());
    let r = host_ops(chan.as_ref(), &script, &log).await;
    log.push(Entry::HostReturned(r.as_ref().map(|t| t.0).map_err(Clone::clone)));
    r
}

async fn host_ops(chan: Option<&HostChan>, script: &Script, log: &Log) -> Result<Tracked> {
    let mut next = 0;
    for &op in &script.host {
        let (start, step) = match (op, chan) {
            (HostOp::Start, Some(c)) => {
                (true, c.started_nowait(Tracked::new(FIRST)).map(|()| log.push(Entry::HostStarted)))
            }
            (HostOp::Send, Some(c)) => (false, c.send(Tracked::new(next)).await.map(|()| sent(log, &mut next))),
            (HostOp::SendNowait, Some(c)) => match c.send_nowait(Tracked::new(next)) {
                Ok(()) => {
                    sent(log, &mut next);
                    (false, Ok(()))
                }
                Err(SendNowaitError::Full(v)) => {
                    assert_eq!(v.0, next, "Full hands the value back");
                    log.push(Entry::HostFull(next));
                    (false, Ok(()))
                }
                Err(SendNowaitError::Gone(v, e)) => {
                    assert_eq!(v.0, next, "Gone hands the value back");
                    (false, Err(e))
                }
            },
            (HostOp::Get, Some(c)) => (false, c.get().await.map(|v| log.push(Entry::HostGot(v.0)))),
            // A `run_task` host has no channel.
            (HostOp::Start | HostOp::Send | HostOp::SendNowait | HostOp::Get, None) => continue,
            (HostOp::Sleep(ms), _) => {
                let r = host::sleep(Duration::from_millis(ms)).await;
                (false, r.map(|()| log.push(Entry::HostSlept)).map_err(Error::from))
            }
            (HostOp::Return, _) => return Ok(Tracked::new(RET)),
            (HostOp::Fail, _) => return Err(Error::msg("HostError", "the host task failed")),
            (HostOp::SelfCancel, _) => {
                log.push(Entry::HostSelfCancel);
                host::cancel_current(SELF_REASON);
                continue;
            }
            (HostOp::IgnoreCancel, _) => {
                log.push(Entry::HostIgnoring);
                core::future::pending::<()>().await;
                continue;
            }
            (HostOp::SpawnCanceller(ms), _) => {
                spawn_canceller(chan, ms, log.clone());
                continue;
            }
        };
        if let Err(e) = step {
            log.push(Entry::HostSaw { start, error: e.clone() });
            if !script.host_swallows {
                return Err(e);
            }
        }
    }
    Ok(Tracked::new(RET))
}

fn sent(log: &Log, next: &mut u32) {
    log.push(Entry::HostSent(*next));
    *next += 1;
}

/// A third party: a host task that cancels the linked host task after `ms`.
fn spawn_canceller(chan: Option<&HostChan>, ms: u64, log: Log) {
    let canceller = chan.map(HostChannel::canceller);
    // A `run_task` host has no channel to hand out a canceller: cancel it by its number.
    let id = host::current_task_id();
    let third = host::spawn(async move {
        if host::sleep(Duration::from_millis(ms)).await.is_ok() {
            log.push(Entry::ThirdParty);
            match (canceller, id) {
                (Some(c), _) => c.cancel(THIRD_REASON),
                (None, Some(id)) => host::cancel_task(id, THIRD_REASON),
                (None, None) => {}
            }
        }
    });
    third.expect("spawned from inside a host task").detach();
}

async fn guest_body(chan: &GuestChan, first: Tracked, script: &Script, log: &Log, scope: &CancelScope) -> Result<()> {
    log.push(Entry::GuestFirst(first.0));
    drop(first);
    let cancelled = || scope.cancel_called();
    let mut subs: Vec<Sub> = Vec::new();
    let mut next = 0;
    let mut result = Ok(());
    for &op in &script.guest {
        let step = match op {
            GuestOp::Send => match chan.send(Tracked::new(next)).await {
                Ok(()) => {
                    assert!(!cancelled(), "a guest send went through in a cancelled scope");
                    log.push(Entry::GuestSent(next));
                    next += 1;
                    Ok(())
                }
                Err(error) => {
                    log.push(Entry::GuestSendFailed { error: error.clone(), cancelled: cancelled() });
                    Err(error)
                }
            },
            GuestOp::Receive => {
                let r = chan.try_next().await;
                read(log, 0, r, cancelled())
            }
            GuestOp::Subscribe => {
                subscribe(chan, &mut subs, log);
                Ok(())
            }
            GuestOp::SubReceive(n) => {
                if subs.is_empty() {
                    subscribe(chan, &mut subs, log);
                }
                let k = n % subs.len();
                let r = subs[k].try_next().await;
                read(log, k + 1, r, cancelled())
            }
            GuestOp::Break => break,
            GuestOp::Fail => {
                result = Err(Error::msg("GuestError", "the guest block failed"));
                break;
            }
            GuestOp::CancelHost => {
                log.push(Entry::GuestCancelHost);
                chan.cancel_host_task();
                Ok(())
            }
            GuestOp::Sleep(ms) => {
                let got = guest::sleep(Duration::from_millis(ms)).await;
                log.push(Entry::GuestSlept { got: got.clone(), cancelled: cancelled(), at: log.now() });
                got
            }
            GuestOp::Await(kind) => {
                let got = guest_await(kind).await;
                log.push(Entry::GuestAwaited { kind, got: got.clone(), cancelled: cancelled(), at: log.now() });
                got
            }
            GuestOp::WaitForResult => {
                let got = chan.wait_for_result().await.map(|t| t.0);
                log.push(Entry::GuestWaited { got: got.clone(), cancelled: cancelled() });
                got.map(drop)
            }
        };
        if let Err(e) = step
            && !script.guest_swallows
        {
            result = Err(e);
            break;
        }
    }
    drop(subs);
    log.push(Entry::GuestBody(result.clone()));
    result
}

/// One of the guest awaits other than the channel.
async fn guest_await(kind: AwaitKind) -> Result<()> {
    match kind {
        AwaitKind::Forever => guest::Event::new().wait().await,
        AwaitKind::EventFromNursery(ms) => {
            let ev = guest::Event::new();
            guest::open_nursery(async |n| {
                let e = ev.clone();
                n.start_soon(async move {
                    guest::sleep(Duration::from_millis(ms)).await?;
                    e.set();
                    Ok(())
                })?;
                ev.wait().await
            })
            .await
            .map(drop)
        }
        AwaitKind::Sleepers(ms) => guest::open_nursery(async |n| {
            for k in 1..=2 {
                n.start_soon(guest::sleep(Duration::from_millis(ms * k)))?;
            }
            Ok(())
        })
        .await
        .map(drop),
    }
}

fn subscribe(chan: &GuestChan, subs: &mut Vec<Sub>, log: &Log) {
    subs.push(chan.subscribe());
    log.push(Entry::GuestSubscribed(subs.len()));
}

fn read(log: &Log, reader: usize, r: Result<Option<Tracked>>, cancelled: bool) -> Result<()> {
    let got = r.map(|v| v.map(|t| t.0));
    log.push(Entry::GuestRecv { reader, got: got.clone(), cancelled });
    match got {
        Ok(_) | Err(Error::Lagged { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn guest_main(script: Rc<Script>, log: Log) -> Result<()> {
    let scope = CancelScope::with_deadline(guest::current_time() + Duration::from_millis(script.deadline_ms));
    guest::open_nursery(async |n| {
        if let Some(ms) = script.sibling_ms {
            let (s, l) = (scope.clone(), log.clone());
            n.start_soon(async move {
                guest::sleep(Duration::from_millis(ms)).await?;
                l.push(Entry::SiblingCancel);
                s.cancel();
                Ok(())
            })?;
        }
        let outer = scope
            .run(async {
                let r = if script.task {
                    to_host::run_task(host_program(None, script.clone(), log.clone())).await.map(|t| t.0)
                } else {
                    let opts = LinkOpts::new()
                        .suppress_graceful_exits(script.suppress)
                        .capacity_to_host(script.cap_to_host)
                        .capacity_to_guest(script.cap_to_guest);
                    let (s, l) = (script.clone(), log.clone());
                    to_host::open_channel_from(
                        move |chan| host_program(Some(chan), s, l),
                        opts,
                        async |chan: &GuestChan, first| {
                            guest_body(chan, first, &script, &log, &scope).await.map(|()| BODY)
                        },
                    )
                    .await
                };
                log.push(Entry::Returned(r.clone()));
                r
            })
            .await;
        log.push(Entry::Outer(outer));
        n.cancel();
        Ok(())
    })
    .await
    .map(|_: Option<()>| ())
}

/// Runs `script` once on a fresh host and returns its log.
fn execute(script: &Script) -> Vec<Entry> {
    let trace = Trace::new();
    let clock = Rc::new(VirtualClock::new());
    let log = Log { entries: Rc::new(RefCell::new(Vec::new())), trace: trace.clone(), clock: clock.clone() };
    let live_before = live();
    let host = Host::builder().clock(clock).seed(script.seed).trace(trace).build().expect("a host");
    let script = Rc::new(script.clone());
    let out = host.run_guest(guest_main(script.clone(), log.clone()));
    // The guest's own outcome (never GuestRunAbandoned): main swallows nothing but Ok.
    assert_eq!(out, Ok(()), "the guest run's outcome");
    drop(host);
    log.drain();
    assert_eq!(live(), live_before, "payloads leaked (live Tracked values)");
    log.entries.take()
}

// ---------------------------------------------------------------------------------------------
// The checker.
// ---------------------------------------------------------------------------------------------

/// How often each interesting case came up (so that a replay shows what it reached).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    scripts: usize,
    host_first: usize,
    guest_first: usize,
    teardowns: usize,
    dropped_hosts: usize,
    self_cancels: usize,
    third_party_cancels: usize,
    guest_cancels: usize,
    host_saw_error: usize,
    values: usize,
    lagged: usize,
    full: usize,
    open_failed: usize,
    groups: usize,
    caught: usize,
    host_cancelled_seen: usize,
    /// Host ends that interrupted the block (transition 9).
    interrupts: usize,
    /// Guest awaits other than the channel that an interruption ended, at the host's end.
    interrupted_awaits: usize,
}

impl core::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.scripts += o.scripts;
        self.host_first += o.host_first;
        self.guest_first += o.guest_first;
        self.teardowns += o.teardowns;
        self.dropped_hosts += o.dropped_hosts;
        self.self_cancels += o.self_cancels;
        self.third_party_cancels += o.third_party_cancels;
        self.guest_cancels += o.guest_cancels;
        self.host_saw_error += o.host_saw_error;
        self.values += o.values;
        self.lagged += o.lagged;
        self.full += o.full;
        self.open_failed += o.open_failed;
        self.groups += o.groups;
        self.caught += o.caught;
        self.host_cancelled_seen += o.host_cancelled_seen;
        self.interrupts += o.interrupts;
        self.interrupted_awaits += o.interrupted_awaits;
    }
}

/// Where the first cancellation that reached the host task came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    SelfCancel,
    ThirdParty,
    Guest,
    Teardown,
}

struct Checker<'s> {
    script: &'s Script,
    facts: Facts,
    tally: Tally,
    /// The host task's number (from the `open` link event).
    hid: Option<u64>,
    host_alive: bool,
    guest_alive: bool,
    /// The first cancellation that reached the host task, as the model derives it.
    requested: Option<(Source, Cancelled)>,
    /// The model just derived a first cancellation: the kernel must trace it next.
    expect_cancel_event: bool,
    host_returned: Option<Result<u32>>,
    host_dropped: bool,
    host_ignoring: bool,
    body_ran: bool,
    body: Option<Result<()>>,
    host_sent: u64,
    host_got: u64,
    guest_sent: u64,
    /// Each reader's next sequence number (0: `receive`, n: subscriber n).
    cursors: Vec<u64>,
    /// Values released by the fastest reader.
    pulled: u64,
    result_taken: bool,
    returned: Option<Result<u32>>,
    outer_seen: bool,
    teardown_events: usize,
    want_teardown_events: usize,
    cancel_host_task_events: usize,
    want_cancel_host_task_events: usize,
    /// When the host future was gone (the time of the host's end).
    host_end_at: Option<Instant>,
    interrupt_events: usize,
}

impl<'s> Checker<'s> {
    fn new(script: &'s Script) -> Checker<'s> {
        let mut facts = Facts::new(script.suppress);
        facts.started = script.task;
        facts.block = !script.task;
        Checker {
            script,
            facts,
            tally: Tally { scripts: 1, ..Tally::default() },
            hid: None,
            host_alive: true,
            guest_alive: true,
            requested: None,
            expect_cancel_event: false,
            host_returned: None,
            host_dropped: false,
            host_ignoring: false,
            body_ran: false,
            body: None,
            host_sent: 0,
            host_got: 0,
            guest_sent: 0,
            cursors: alloc::vec![0],
            pulled: 0,
            result_taken: false,
            returned: None,
            outer_seen: false,
            teardown_events: 0,
            want_teardown_events: 0,
            cancel_host_task_events: 0,
            want_cancel_host_task_events: 0,
            host_end_at: None,
            interrupt_events: 0,
        }
    }

    fn cap_h(&self) -> u64 {
        if self.script.task { 1 } else { self.script.cap_to_host as u64 }
    }

    fn cap_g(&self) -> u64 {
        if self.script.task { 1 } else { self.script.cap_to_guest as u64 }
    }

    /// A cancellation request reaches the host task; the first one wins (as in the kernel).
    fn request(&mut self, source: Source, c: Cancelled) {
        if self.host_alive && self.requested.is_none() {
            self.requested = Some((source, c));
            self.expect_cancel_event = true;
        }
    }

    /// What every host operation after the first cancellation must fail with.
    fn host_must_see(&self) -> Option<Error> {
        self.requested.as_ref().map(|(_, c)| Error::from(c.clone()))
    }

    fn kernel(&mut self, ev: &TraceEvent) {
        match *ev {
            TraceEvent::Link("open", n) => {
                assert_eq!(self.hid, None, "one pair per script");
                self.hid = Some(n);
            }
            TraceEvent::Cancel(Side::Host, id) if Some(id) == self.hid => {
                assert!(self.expect_cancel_event, "the kernel cancelled the host task when the model did not");
                self.expect_cancel_event = false;
            }
            TraceEvent::Link("teardown", _) => self.teardown_events += 1,
            TraceEvent::Link("cancel_host_task", _) => self.cancel_host_task_events += 1,
            TraceEvent::Link("host_end", _) => self.host_ended(),
            TraceEvent::Link("interrupt", _) => {
                // Traced right after the host's end that the model says interrupts the block.
                assert!(self.facts.interrupted && !self.host_alive, "an interrupt the model does not derive");
                self.interrupt_events += 1;
            }
            TraceEvent::Link("guest_end", _) => self.guest_ended(),
            _ => {}
        }
    }

    fn host_ended(&mut self) {
        assert!(self.host_alive, "the host ended twice");
        assert!(self.host_dropped, "the host end is reported after its future is gone");
        self.host_alive = false;
        let end = match &self.host_returned {
            Some(Ok(_)) => HostEnd::Returned,
            Some(Err(Error::HostTaskCancelled(c))) => HostEnd::Cancelled { reason: c.reason.clone() },
            Some(Err(e)) => HostEnd::Failed(e.clone()),
            None => {
                let (_, c) = self.requested.as_ref().expect("a host task is dropped only once cancelled");
                assert!(self.host_ignoring, "a host task is dropped only when it ignored its cancellation");
                self.tally.dropped_hosts += 1;
                HostEnd::Cancelled { reason: c.reason.clone() }
            }
        };
        if self.guest_alive {
            self.tally.host_first += 1;
        }
        if self.facts.host_ended(end) {
            self.tally.interrupts += 1;
        }
    }

    fn guest_ended(&mut self) {
        assert!(self.guest_alive, "the guest ended twice");
        self.guest_alive = false;
        let end = match &self.body {
            Some(r) => Facts::guest_end_of(r),
            // The open call or `run_task` left without a block: it was cancelled while the host
            // ran, or the host had ended.
            None if self.host_alive => GuestEnd::Cancelled,
            None => GuestEnd::Exited,
        };
        if self.host_alive {
            self.tally.guest_first += 1;
        }
        if let Some(handed) = self.facts.guest_ended(end) {
            self.want_teardown_events += 1;
            self.tally.teardowns += 1;
            let c = Cancelled { reason: String::from(handed.kind()), cause: Some(Box::new(handed)) };
            self.request(Source::Teardown, c);
        }
    }

    fn entry(&mut self, e: &Entry) {
        if let Entry::Kernel(ev) = e {
            return self.kernel(ev);
        }
        assert!(!self.expect_cancel_event, "the kernel did not trace the host's cancellation at {e:?}");
        match e {
            Entry::Kernel(_) => unreachable!(),
            Entry::HostSelfCancel => {
                self.request(Source::SelfCancel, Cancelled::new(SELF_REASON));
                self.tally.self_cancels += usize::from(self.expect_cancel_event);
            }
            Entry::ThirdParty => {
                self.request(Source::ThirdParty, Cancelled::new(THIRD_REASON));
                self.tally.third_party_cancels += usize::from(self.expect_cancel_event);
            }
            Entry::GuestCancelHost => {
                if self.facts.guest_cancels_host() {
                    self.want_cancel_host_task_events += 1;
                    self.request(Source::Guest, Cancelled::new(GUEST_REASON));
                    self.tally.guest_cancels += usize::from(self.expect_cancel_event);
                }
            }
            Entry::HostStarted => {
                assert_eq!(self.host_must_see(), None, "started_nowait succeeded after a cancellation");
                assert!(!self.facts.started, "started twice");
                self.facts.started = true;
            }
            Entry::HostSent(v) => {
                assert_eq!(self.host_must_see(), None, "a host send succeeded after a cancellation");
                assert_eq!(u64::from(*v), self.host_sent);
                self.host_sent += 1;
                assert!(self.host_sent - self.pulled <= self.cap_g(), "more in flight than the capacity");
            }
            Entry::HostFull(v) => {
                assert_eq!(self.host_must_see(), None, "Full after a cancellation");
                assert_eq!(u64::from(*v), self.host_sent);
                assert_eq!(self.host_sent - self.pulled, self.cap_g(), "Full below the capacity");
                self.tally.full += 1;
            }
            Entry::HostGot(v) => {
                assert_eq!(self.host_must_see(), None, "a host get succeeded after a cancellation");
                assert_eq!(u64::from(*v), self.host_got, "the host gets the guest's sends in order");
                assert!(self.host_got < self.guest_sent, "the host got a value never sent");
                self.host_got += 1;
            }
            Entry::HostSlept => {
                assert_eq!(self.host_must_see(), None, "a host sleep ended normally after a cancellation")
            }
            Entry::HostSaw { start, error } => {
                self.tally.host_saw_error += 1;
                match self.host_must_see() {
                    Some(want) => assert_eq!(error, &want, "what the host sees after {:?}", self.requested),
                    None => {
                        assert!(*start && self.facts.started, "the host saw {error:?} with no cancellation");
                        assert_eq!(error.kind(), "LinkStartedTwice");
                    }
                }
            }
            Entry::HostIgnoring => self.host_ignoring = true,
            Entry::HostReturned(r) => self.host_returned = Some(r.clone()),
            Entry::HostDropped(at) => {
                assert!(!self.host_dropped, "the host future dropped twice");
                self.host_dropped = true;
                self.host_end_at = Some(*at);
            }
            Entry::GuestFirst(v) => {
                assert!(
                    self.facts.started && *v == FIRST && !self.body_ran,
                    "the block runs once, after started_nowait"
                );
                self.body_ran = true;
            }
            Entry::GuestSent(v) => {
                assert!(self.host_alive, "a guest send was accepted after the host ended");
                assert_eq!(u64::from(*v), self.guest_sent);
                self.guest_sent += 1;
                assert!(self.guest_sent - self.host_got <= self.cap_h(), "more in flight than the capacity");
            }
            Entry::GuestSendFailed { error, cancelled } => {
                if self.facts.interrupted {
                    // The scope is not checked: the host's end that cancelled the block.
                    assert_eq!(error, &self.facts.send_refused(), "a guest send in an interrupted block");
                } else if *cancelled {
                    // Channel operations check their scope first (trio's checkpoint_if_cancelled).
                    assert_eq!(error, &Error::Cancelled, "a guest send in a cancelled scope");
                } else {
                    assert!(!self.host_alive, "a guest send failed with {error:?} while the host ran");
                    assert_eq!(error, &self.facts.send_refused(), "a guest send after the host ended");
                }
            }
            Entry::GuestRecv { reader, got, cancelled } => self.recv(*reader, got, *cancelled),
            Entry::GuestSubscribed(n) => {
                assert_eq!(*n, self.cursors.len(), "subscriber numbering");
                // A subscriber gets every value no reader has received yet.
                self.cursors.push(self.pulled);
            }
            Entry::GuestSlept { got, cancelled, at } | Entry::GuestAwaited { got, cancelled, at, .. } => {
                self.non_channel_await(e, got, *cancelled, *at)
            }
            Entry::GuestWaited { got, cancelled } => {
                if *cancelled && !self.facts.interrupted {
                    assert_eq!(got, &Err(Error::Cancelled), "wait_for_result in a cancelled scope");
                } else if self.host_alive {
                    assert!(*cancelled && got == &Err(Error::Cancelled), "wait_for_result returned {got:?} early");
                } else {
                    match (self.facts.task(), got) {
                        (Ok(()), Ok(v)) => {
                            assert!(
                                !self.result_taken && *v == RET,
                                "wait_for_result gave {v} (taken: {})",
                                self.result_taken
                            );
                            self.result_taken = true;
                        }
                        (Ok(()), Err(e)) => {
                            assert!(self.result_taken && e.kind() == "ResultTaken", "wait_for_result: {e:?}")
                        }
                        (Err(want), got) => assert_eq!(got, &Err(want), "wait_for_result"),
                    }
                }
            }
            Entry::GuestBody(r) => {
                assert!(self.body_ran && self.body.is_none());
                self.body = Some(r.clone());
            }
            Entry::SiblingCancel => {}
            Entry::Returned(r) => self.returned_(r),
            Entry::Outer(r) => {
                let ret = self.returned.clone().expect("the pair returned before the scope");
                let want = match ret {
                    Ok(v) => Ok(Some(v)),
                    Err(Error::Cancelled) => Ok(None),
                    Err(e) => Err(e),
                };
                assert_eq!(r, &want, "the scope around the pair");
                self.tally.caught += usize::from(want == Ok(None));
                self.outer_seen = true;
            }
        }
    }

    /// A guest await other than the channel: it ends normally only outside a cancelled scope
    /// and before any interruption; cancelled, it was the scope or the interruption, and an
    /// interruption ends it at the very time the host ended.
    fn non_channel_await(&mut self, e: &Entry, got: &Result<()>, cancelled: bool, at: Instant) {
        let interrupted = self.facts.interrupted;
        match got {
            // A nursery's wait for its children is no cancellation point: children that all
            // finished before the cancellation make it end normally even if the cancellation
            // came before the nursery's task resumed (found by fuzzing: seed
            // `sleepers_finish_as_the_deadline_fires`).
            Ok(()) if matches!(e, Entry::GuestAwaited { kind: AwaitKind::Sleepers(_), .. }) => {}
            Ok(()) => {
                assert!(!cancelled && !interrupted, "{e:?} ended normally in a cancelled block");
                // An `Event` nobody sets never ends normally.
                assert!(!matches!(e, Entry::GuestAwaited { kind: AwaitKind::Forever, .. }), "{e:?}");
            }
            Err(err) => {
                assert!(err.is_cancelled() && (cancelled || interrupted), "{e:?}: with no cancellation");
                if interrupted && !cancelled {
                    assert_eq!(Some(at), self.host_end_at, "{e:?}: not interrupted at the host's end");
                    self.tally.interrupted_awaits += 1;
                }
            }
        }
    }

    fn recv(&mut self, reader: usize, got: &Result<Option<u32>>, cancelled: bool) {
        if let Err(want) = self.facts.guest_op() {
            // Checked first, before the scope and any value still buffered: nothing is consumed.
            self.tally.host_cancelled_seen += usize::from(matches!(want, Error::HostCancelled { .. }));
            assert_eq!(got, &Err(want), "reader {reader} in an interrupted block");
            return;
        }
        // Once interrupted (here: by a return), reads report the host's end, not the scope.
        if cancelled && !self.facts.interrupted {
            // Checked first: nothing is consumed, no cursor moves.
            assert_eq!(got, &Err(Error::Cancelled), "reader {reader} in a cancelled scope");
            return;
        }
        let c = self.cursors[reader];
        let cap = self.cap_g();
        let in_flight = self.host_sent - self.pulled;
        let want = if self.pulled - c > cap {
            // Fell more than the ring keeps behind the fastest reader.
            self.tally.lagged += 1;
            self.cursors[reader] = self.pulled - cap;
            Err(Error::Lagged { skipped: self.pulled - cap - c })
        } else if c < self.pulled {
            self.cursors[reader] = c + 1;
            self.tally.values += 1;
            Ok(Some(c as u32))
        } else if in_flight > 0 {
            self.cursors[reader] = c + 1;
            self.pulled += 1;
            self.tally.values += 1;
            Ok(Some(c as u32))
        } else if !self.host_alive {
            // Nothing left: every value was received; now the host's end.
            let end = self.facts.recv_end();
            self.tally.host_cancelled_seen += usize::from(matches!(end, Err(Error::HostCancelled { .. })));
            end
        } else {
            panic!("reader {reader} returned {got:?} with nothing to read, the host running, outside a cancelled scope")
        };
        assert_eq!(got, &want, "reader {reader} at {c} (pulled {}, sent {})", self.pulled, self.host_sent);
    }

    fn returned_(&mut self, r: &Result<u32>) {
        // Neither task outlived the pair.
        assert!(self.host_dropped && !self.host_alive, "the host task outlived the pair");
        assert!(!self.guest_alive, "the guest side never ended");
        let f = &self.facts;
        let block = |body: Result<()>| f.block(body).map(|()| BODY);
        let want = if self.script.task {
            if f.host_first { f.task().map(|()| RET) } else { f.block(Err(Error::Cancelled)).map(|()| RET) }
        } else if let Some(body) = &self.body {
            block(body.clone())
        } else if f.host_first {
            self.tally.open_failed += 1;
            match f.open() {
                Some(Err(e)) => Err(e),
                other => panic!("the open call failed, the model says {other:?}"),
            }
        } else {
            // Cancelled in the open call, while the host ran.
            self.tally.open_failed += 1;
            block(Err(Error::Cancelled))
        };
        assert_eq!(r, &want, "the pair's result; {:?}", self.facts);
        self.tally.groups += usize::from(matches!(r, Err(Error::Group(_))));
        self.returned = Some(r.clone());
    }

    fn finish(&self) {
        assert!(self.returned.is_some() && self.outer_seen, "the script never returned");
        assert!(!self.expect_cancel_event, "the kernel never traced the host's cancellation");
        assert_eq!(self.teardown_events, self.want_teardown_events, "teardowns");
        assert_eq!(self.cancel_host_task_events, self.want_cancel_host_task_events, "cancel_host_task deliveries");
        assert_eq!(self.interrupt_events, usize::from(self.facts.interrupted), "interrupts traced");
    }
}

fn check_script(script: &Script) -> Tally {
    let log = execute(script);
    let mut checker = Checker::new(script);
    for (i, e) in log.iter().enumerate() {
        let r = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| checker.entry(e)));
        if let Err(p) = r {
            dump(script, &log, i);
            std::panic::resume_unwind(p);
        }
    }
    checker.finish();
    if script.twice {
        assert!(execute(script) == log, "the same seed and script gave two different runs");
    }
    checker.tally
}

/// Prints the script and the log up to the failing entry (kernel polls and wakes left out).
fn dump(script: &Script, log: &[Entry], at: usize) {
    std::eprintln!("{script:?}");
    for (i, e) in log.iter().enumerate().take(at + 1) {
        match e {
            Entry::Kernel(TraceEvent::Poll(..) | TraceEvent::Wake(..) | TraceEvent::GuestTick) => {}
            e => std::eprintln!("{i:4} {e:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::translate::tests::{Rng, seeds};

    /// A script biased towards the interesting: the host usually starts first thing and
    /// streams; ends, cancellations and sleeps are sprinkled in.
    fn random_script(rng: &mut Rng) -> Vec<u8> {
        let mut bit = |p: u64, b: u8| if rng.below(p) == 0 { b } else { 0 };
        // run_task 1/5, suppress off 1/3, swallows 1/4, sibling 1/4, deadline 1/3, twice 1/8.
        let flags = bit(5, 1) | bit(3, 2) | bit(4, 4) | bit(4, 8) | bit(4, 16) | bit(3, 32) | bit(8, 64);
        let mut s = vec![rng.below(256), flags, rng.below(16), rng.below(60), rng.below(60)];
        // A calm script streams until its lists run out; the others end or cancel on the way.
        let calm = rng.below(3) == 0;
        let host_len = 1 + rng.below(24);
        s.push(host_len);
        for i in 0..host_len {
            let op = match rng.below(100) {
                _ if i == 0 && rng.below(6) != 0 => 0,
                0..=61 => 1 + rng.below(2),
                62..=69 => 3,
                70..=79 => 4 + 10 * rng.below(6),
                _ if calm => 1,
                80..=82 => 5,
                83..=85 => 6,
                86..=89 => 7,
                90..=93 => 8,
                94..=97 => 9 + 10 * rng.below(6),
                _ => 0,
            };
            s.push(op);
        }
        for _ in 0..rng.below(32) {
            let op = match rng.below(100) {
                0..=54 => 1,
                55..=64 => 0,
                65..=71 => 6 + 10 * rng.below(3),
                72..=74 => 5,
                75..=79 => 7 + 10 * rng.below(6),
                80..=84 => 9 + 10 * rng.below(24),
                _ if calm => 1,
                85..=87 => 2,
                88..=90 => 3,
                91..=95 => 4,
                _ => 8,
            };
            s.push(op);
        }
        s
    }

    #[test]
    fn replays_the_committed_seeds() {
        let seeds = seeds("cancel_translation");
        assert!(seeds.len() >= 10, "{} seeds", seeds.len());
        let mut tally = Tally::default();
        for (name, data) in seeds {
            std::println!("{name}");
            tally += check_script(&Script::decode(&data));
        }
        std::println!("{tally:?}");
    }

    #[test]
    fn replays_4000_pseudo_random_scripts() {
        let mut rng = Rng(0x853C_49E6_748F_EA9B);
        let mut tally = Tally::default();
        for _ in 0..4000 {
            tally += check_script(&Script::decode(&random_script(&mut rng)));
        }
        std::println!("{tally:?}");
        // Every kind of end, cancellation and traffic outcome was reached, many times over.
        assert!(tally.host_first > 300 && tally.guest_first > 300, "{tally:?}");
        assert!(tally.teardowns > 300 && tally.dropped_hosts > 30, "{tally:?}");
        assert!(tally.self_cancels > 30 && tally.third_party_cancels > 30 && tally.guest_cancels > 30, "{tally:?}");
        assert!(tally.values > 1000 && tally.lagged > 10 && tally.full > 30, "{tally:?}");
        assert!(tally.open_failed > 100 && tally.groups > 10 && tally.caught > 100, "{tally:?}");
        assert!(tally.host_cancelled_seen > 30 && tally.host_saw_error > 300, "{tally:?}");
        assert!(tally.interrupts > 100 && tally.interrupted_awaits > 30, "{tally:?}");
    }

    /// The seeds double as scenario tests: each ends the way its row of the table says.
    #[test]
    fn the_seeds_end_as_the_table_says() {
        let host_error = || Error::msg("HostError", "the host task failed");
        let guest_error = || Error::msg("GuestError", "the guest block failed");
        let cases: Vec<(&str, Result<u32>)> = vec![
            ("streaming_then_end_of_channel", Ok(BODY)),
            ("fan_out_subscriber_and_main", Ok(BODY)),
            ("host_fails_mid_stream", Err(host_error())),
            ("host_exits_early_suppress_off", Err(Error::HostTaskExited)),
            ("guest_fails_mid_stream", Err(guest_error())),
            ("guest_breaks_suppress_off", Err(Error::GuestTaskExited)),
            ("host_self_cancels", Err(Error::HostCancelled { reason: SELF_REASON.into() })),
            ("third_party_cancels_host", Err(Error::HostCancelled { reason: THIRD_REASON.into() })),
            ("host_fails_before_started", Err(host_error())),
            ("host_returns_before_started", Err(Error::HostTaskExited)),
            ("outer_deadline_cancels_the_block", Err(Error::Cancelled)),
            ("sibling_cancels_the_block", Err(Error::Cancelled)),
            ("run_task_caller_cancelled", Err(Error::Cancelled)),
            ("run_task_returns", Ok(RET)),
            ("run_task_self_cancel", Err(Error::HostCancelled { reason: SELF_REASON.into() })),
            ("run_task_third_party_cancel", Err(Error::HostCancelled { reason: THIRD_REASON.into() })),
            ("both_fail_independently", Err(Error::Group(crate::ErrorGroup(vec![guest_error(), host_error()])))),
            ("cancel_host_task_ends_the_channel", Ok(BODY)),
            ("uncooperative_host_is_dropped", Ok(BODY)),
            ("cancelled_while_starting", Err(Error::Cancelled)),
            ("host_swallows_teardown_then_returns", Ok(BODY)),
            ("host_swallows_teardown_then_fails", Err(host_error())),
            ("bug_open_cancelled_masks_host_failure", Err(host_error())),
            // Transition 9: the host's end interrupts the block wherever it waits.
            ("interrupt_host_fails_while_guest_sleeps", Err(host_error())),
            ("interrupt_host_fails_while_guest_waits_on_an_unset_event", Err(host_error())),
            ("interrupt_host_fails_while_guest_waits_in_a_nursery", Err(host_error())),
            (
                "interrupt_third_party_cancel_while_guest_waits_in_a_nursery",
                Err(Error::HostCancelled { reason: THIRD_REASON.into() }),
            ),
            (
                "interrupt_host_self_cancels_while_guest_waits_on_an_event_from_a_nursery",
                Err(Error::HostCancelled { reason: SELF_REASON.into() }),
            ),
            ("interrupt_suppress_off_return_while_guest_sleeps", Err(Error::HostTaskExited)),
            ("interrupt_host_fails_with_values_buffered_guest_receives_the_error_first", Err(host_error())),
            ("no_interrupt_suppress_on_return_while_guest_sleeps", Ok(BODY)),
            ("no_interrupt_run_task_host_fails", Err(host_error())),
        ];
        for (name, want) in cases {
            let path = format!("{}/fuzz/seeds/cancel_translation/{name}", env!("CARGO_MANIFEST_DIR"));
            let script = Script::decode(&std::fs::read(&path).expect("the seed exists"));
            let got = execute(&script).into_iter().find_map(|e| match e {
                Entry::Returned(r) => Some(r),
                _ => None,
            });
            assert_eq!(got, Some(want), "{name}");
            let tally = check_script(&script);
            let interrupted = name.starts_with("interrupt_");
            if interrupted || name.starts_with("no_interrupt_") {
                assert_eq!(tally.interrupts, usize::from(interrupted), "{name}: {tally:?}");
            }
            if interrupted && !name.contains("values_buffered") {
                assert_eq!(tally.interrupted_awaits, 1, "{name}: the await ended at the host's end; {tally:?}");
            }
        }
    }

    #[test]
    fn handles_the_degenerate_inputs() {
        run(&[]);
        run(&[0; 8]);
        run(&[0xFF; 64]);
        run(&[7, 0x41, 0, 0, 0, 0]);
    }
}
