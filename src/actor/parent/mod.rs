//! The parent side: [`open_nursery`], [`ActorNursery`], [`Portal`], and one supervisor per
//! child process.
//!
//! A parent's record of one child ([`ChildActor`]) is four parts: the connection ([`Peer`]:
//! transport, frames, the call table), the dialog state of the handshake and the teardown
//! ([`ChildState`]), the error logs ([`Logs`]) and the [`Supervisor`] (the process, the ladder,
//! the reaping); a `run_in_actor` child adds its one-shot outcome ([`OneShotOutcome`]), a child
//! started through a launcher its stderr forwarder's state ([`Launched`]).
//!
//! Per child, three internal tasks of the nursery, each in a shielded scope (they must outlive
//! any cancellation of the block, to reap the child):
//! - the **reader** (here) owns the connection's reading side: it decodes frames and routes
//!   them by call id into the waiting calls' inboxes; it records a bad frame
//!   ([`Portal::wire_errors`]: counts and a bounded window of the [`RECENT_ERRORS`] most
//!   recent, likewise the actor's own reports) and reports the first ones back to the child; it
//!   ends at end-of-file, or when the supervisor stops it: once the child is reaped,
//!   end-of-file is waited for at most [`ActorOpts::cancel_timeout`] (a foreign program's
//!   daemon may hold the child's pipe ends for as long as it lives), so the nursery's exit is
//!   bounded by the ladder's own bounds. It never waits for a consumer (see the flow-control
//!   rule in [`context`](super::context)).
//! - the **supervisor** (here, on top of [`supervisor`]'s process side) waits on the child's
//!   pidfd, on a teardown request, or on end-of-file; then climbs the ladder (graceful `Cancel{None}` → `SIGTERM` → `SIGKILL`,
//!   each rung bounded), reaps, and *closes* the connection: every call still waiting on it
//!   ends with [`Error::ActorDied`]. In debug mode, while the child's subtree holds the tree's
//!   terminal lock (an actor below is paused at a prompt), it stays on the graceful rung and
//!   climbs on (with the rung's bound again) only after the release; once the child is reaped,
//!   whatever it held or asked of the lock is released on its behalf.
//!   The reader relays the child's `TtyLock`/`TtyRelease` towards the root (see
//!   [`tty_lock`](super::tty_lock)).
//! - for `run_in_actor`, the **collector** ([`nursery`]) runs the one call and keeps its
//!   outcome for [`OneShot::wait_for_result`]; a failure that this nursery did not cause itself
//!   starts one-cancels-all.
//!
//! The nursery's own exit, in order: the block returns (or fails, or is cancelled); if it
//! returned, wait for every `run_in_actor` outcome; then, shielded, request teardown of every
//! child and wait until all are reaped; then the error rules: the block's error and every
//! collector error that is not a consequence of our own cancelling come out, one bare, several
//! as an [`ErrorGroup`](crate::ErrorGroup).
//!
//! Inside, one way: `supervisor` (the process side, knows no dialog) → this module (the child's
//! record and its two tasks) → `portal` (calls) → `nursery`.

pub(crate) mod nursery;
pub(crate) mod portal;
pub(crate) mod supervisor;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

use crate::guest::{self, CancelScope, Event};
use crate::sync::Waiters;
use crate::wire::{Aid, Cid, Msg, WireError};
use crate::{Error, Result};

use super::ActorInner;
use super::codec;
use super::launch::{self, Launched};
use super::peer::{FrameReader, Incoming, Peer};
use super::process::{self, ExitWait};
use super::tty_lock;

pub use nursery::{ActorNursery, ActorOpts, DEFAULT_START_TIMEOUT, MAX_ACTOR_NAME, open_nursery};
pub use portal::{OneShot, Portal};
use supervisor::Supervisor;

/// How many of the most recent errors a [`Portal`] keeps of each kind (the damaged frames
/// received, the errors the actor reported, the messages refused as out of the dialog); older
/// ones are only counted. The actor is also told about the first `RECENT_ERRORS` damaged frames
/// it sent (each as one `Msg::Error`); later ones are only counted, so a flooding peer costs
/// this process a bounded amount of memory and of writing, however long it floods.
pub const RECENT_ERRORS: usize = 64;

/// A count of errors and the [`RECENT_ERRORS`] most recent of them, oldest first.
pub(crate) struct ErrorLog<T> {
    total: Cell<u64>,
    recent: RefCell<VecDeque<T>>,
}

impl<T: Clone> ErrorLog<T> {
    fn new() -> ErrorLog<T> {
        ErrorLog { total: Cell::new(0), recent: RefCell::new(VecDeque::new()) }
    }

    /// Records `e`; returns how many have been recorded, this one included.
    fn push(&self, e: T) -> u64 {
        let mut recent = self.recent.borrow_mut();
        if recent.len() == RECENT_ERRORS {
            recent.pop_front();
        }
        recent.push_back(e);
        self.total.set(self.total.get() + 1);
        self.total.get()
    }

    fn recent(&self) -> Vec<T> {
        self.recent.borrow().iter().cloned().collect()
    }

    fn total(&self) -> u64 {
        self.total.get()
    }
}

/// What went wrong on the connection, as the parent saw it.
pub(crate) struct Logs {
    wire_errors: ErrorLog<WireError>,
    peer_errors: ErrorLog<Error>,
    /// Messages refused as out of the dialog ([`Error::UnexpectedMessage`]).
    protocol_errors: ErrorLog<Error>,
    /// The panic the child reported just before dying (its hook, under `panic = "abort"`).
    panic_report: RefCell<Option<String>>,
}

/// The dialog state of the handshake and the teardown. Every change wakes `waiters` (the
/// supervisor, `start_actor`).
pub(crate) struct ChildState {
    /// The child's identity, once the handshake is done.
    aid: RefCell<Option<Aid>>,
    /// Woken on handshake, end-of-file, teardown request and close.
    waiters: Waiters,
    teardown_requested: Cell<bool>,
    /// The reader reached end-of-file (or was stopped).
    eof: Cell<bool>,
    /// The supervisor sent `Cancel{None}` (a `CancelAck{None}` may come).
    cancel_sent: Cell<bool>,
    cancel_acked: Cell<bool>,
}

/// `run_in_actor` only: the outcome of the one call.
#[derive(Default)]
pub(crate) struct OneShotOutcome {
    armed: Cell<bool>,
    result: RefCell<Option<Result<Vec<u8>>>>,
    ready: Event,
}

/// The parent's view of one child actor (see the [module docs](self)).
pub(crate) struct ChildActor {
    name: String,
    me: Rc<ActorInner>,
    /// The connection: transport, frames, the call table, the closing error.
    peer: Rc<Peer>,
    /// The stream window of every context with this child.
    window: usize,
    state: ChildState,
    logs: Logs,
    sup: Supervisor,
    one_shot: OneShotOutcome,
    /// Started through a launcher: its stderr's forwarder state.
    launched: Option<Rc<Launched>>,
    /// The child's answers to our `DumpRequest`s, by request id, and who waits for them.
    dumps: RefCell<Vec<(u64, String)>>,
    dump_waiters: Waiters,
    /// The id of our last `DumpRequest` to this child (ids are per connection, so that a
    /// simulated world's runs do not depend on what ran before them on the thread).
    dump_ids: Cell<u64>,
}

thread_local! {
    /// This actor's child records (weakly, in spawn order; pruned as the list doubles), for the
    /// debug dump.
    static LIVE: RefCell<Vec<std::rc::Weak<ChildActor>>> = const { RefCell::new(Vec::new()) };
}

/// This actor's child records as [`live_children`] reads them (a simulated world keeps one per
/// actor: [`swap_live_children`]).
pub(crate) type LiveChildren = Vec<std::rc::Weak<ChildActor>>;

/// Swaps this thread's child records with `other`.
pub(crate) fn swap_live_children(other: &mut LiveChildren) {
    LIVE.with(|l| std::mem::swap(&mut *l.borrow_mut(), other));
}

/// Lists `child` among this actor's children for the debug dump.
pub(crate) fn register_child(child: &Rc<ChildActor>) {
    LIVE.with(|l| {
        let mut l = l.borrow_mut();
        if l.len() >= 16 && l.len() == l.capacity() {
            l.retain(|w| w.strong_count() > 0);
        }
        l.push(Rc::downgrade(child));
    });
}

/// This actor's children that are still supervised (not reaped yet), in spawn order.
pub(crate) fn live_children() -> Vec<Rc<ChildActor>> {
    LIVE.with(|l| l.borrow().iter().filter_map(std::rc::Weak::upgrade).filter(|c| !c.sup.reaped.is_set()).collect())
}

impl ChildActor {
    /// The record of child `name` of actor `me` on `peer`, supervised by `sup`; with
    /// `teardown` its teardown is requested already (the nursery is cancelling); `launched`
    /// for a child started through a launcher.
    fn new(
        name: &str,
        me: Rc<ActorInner>,
        peer: Peer,
        sup: Supervisor,
        window: usize,
        teardown: bool,
        launched: Option<Rc<Launched>>,
    ) -> ChildActor {
        ChildActor {
            name: name.to_owned(),
            me,
            peer: Rc::new(peer),
            window,
            state: ChildState {
                aid: RefCell::new(None),
                waiters: Waiters::default(),
                teardown_requested: Cell::new(teardown),
                eof: Cell::new(false),
                cancel_sent: Cell::new(false),
                cancel_acked: Cell::new(false),
            },
            logs: Logs {
                wire_errors: ErrorLog::new(),
                peer_errors: ErrorLog::new(),
                protocol_errors: ErrorLog::new(),
                panic_report: RefCell::new(None),
            },
            sup,
            one_shot: OneShotOutcome::default(),
            launched,
            dumps: RefCell::new(Vec::new()),
            dump_waiters: Waiters::default(),
            dump_ids: Cell::new(0),
        }
    }

    /// The child's line in the debug dump: name, pid, open calls, where its dialog is.
    pub(crate) fn describe(&self) -> String {
        let st = &self.state;
        let calls = self.peer.open_calls();
        let phase = if self.closed_error().is_some() {
            "gone"
        } else if st.aid.borrow().is_none() {
            "starting (no handshake yet)"
        } else if st.teardown_requested.get() {
            "being torn down"
        } else {
            "serving"
        };
        let calls = match calls.len() {
            0 => "no open calls".to_owned(),
            _ => format!("open calls {}", calls.iter().map(|c| format!("#{c}")).collect::<Vec<_>>().join(", ")),
        };
        format!("\"{}\" (pid {}): {phase}, {calls}", self.name, self.sup.pid)
    }

    /// Asks the child for its subtree's dump (it waits at most `wait_ms` for its own children)
    /// and waits for the answer (a cancellation point: the caller bounds the wait); `None` if
    /// the child is gone or cannot be asked.
    pub(crate) async fn request_dump(&self, wait_ms: u64) -> Result<Option<String>> {
        if self.closed_error().is_some() || self.state.aid.borrow().is_none() {
            return Ok(None);
        }
        let id = self.dump_ids.get() + 1;
        self.dump_ids.set(id);
        if self.send(&Msg::DumpRequest { id, wait_ms }).await.is_err() {
            return Ok(None);
        }
        poll_fn(|cx| {
            guest::check_cancel()?;
            let mut dumps = self.dumps.borrow_mut();
            if let Some(i) = dumps.iter().position(|(d, _)| *d == id) {
                return Poll::Ready(Ok(Some(dumps.remove(i).1)));
            }
            if self.closed_error().is_some() {
                return Poll::Ready(Ok(None));
            }
            // Woken by the answer and by the close (`wake_state`).
            self.dump_waiters.register(cx.waker());
            self.state.waiters.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    fn wake_state(&self) {
        self.state.waiters.wake_all();
    }

    /// Parks `w` until the dialog state changes (a park at one of infect's awaits).
    fn register_state(&self, w: &Waker) {
        self.state.waiters.register(w);
    }

    fn request_teardown(&self) {
        if !self.state.teardown_requested.replace(true) {
            self.wake_state();
        }
    }

    /// The child is gone with `e`: every call waiting on it ends with `e`, and so does every
    /// later one.
    fn close(&self, e: Error) {
        self.peer.close(e);
        self.wake_state();
    }

    fn closed_error(&self) -> Option<Error> {
        self.peer.closed_error()
    }

    /// What the child said when it refused the handshake for a protocol mismatch, if it did.
    fn mismatch_report(&self) -> Option<String> {
        self.logs.peer_errors.recent().into_iter().find_map(|e| match e.remote() {
            Some(r) if r.boxed_type == codec::PROTOCOL_MISMATCH && r.relay_path.is_empty() => Some(r.message.clone()),
            _ => None,
        })
    }

    async fn send(&self, msg: &Msg) -> Result<()> {
        self.peer.send(msg).await
    }

    /// Routes one decoded item from the child. A message out of the dialog is refused: recorded
    /// ([`Portal::protocol_errors`]) and reported to the child, never acted on.
    async fn dispatch(&self, item: core::result::Result<Msg, WireError>) {
        let st = &self.state;
        match item {
            Ok(Msg::Aid(aid)) if st.aid.borrow().is_none() => {
                crate::log::info!("actor.handshake", actor = aid.name.as_str(), pid = aid.pid);
                *st.aid.borrow_mut() = Some(aid);
                self.wake_state();
            }
            Ok(m @ Msg::Aid(_)) => self.refuse(&m, "the handshake is over: an actor's identity does not change").await,
            Ok(Msg::CancelAck { cid: None }) if st.cancel_sent.get() && !st.cancel_acked.get() => {
                st.cancel_acked.set(true);
                self.wake_state();
            }
            Ok(m @ Msg::CancelAck { cid: None }) => {
                self.refuse(&m, "no Cancel{None} was sent to this actor, or it was already acknowledged").await
            }
            Ok(Msg::Error { cid: None, src, boxed_type, message, relay_path, canceller }) => {
                if boxed_type == codec::PANIC && relay_path.is_empty() {
                    // Its panic hook's last word (`panic = "abort"`): the death that follows
                    // carries it.
                    *self.logs.panic_report.borrow_mut() = Some(message.clone());
                }
                let e = codec::decode(src, boxed_type, message, relay_path, canceller);
                self.logs.peer_errors.push(e);
            }
            // Debug mode: the terminal lock's dialog, relayed towards the root.
            Ok(m @ (Msg::TtyLock { .. } | Msg::TtyRelease { .. })) => {
                let uuid = st.aid.borrow().as_ref().map(|a| a.uuid.clone());
                let Some(uuid) = uuid else {
                    return self.refuse(&m, "the handshake is not done").await;
                };
                let name = m.name();
                let handled = match m {
                    Msg::TtyLock { req } => tty_lock::on_child_lock(&uuid, &self.peer, req),
                    Msg::TtyRelease { req, quit } => {
                        // A SIGINT still unread came while the subtree held the terminal: the
                        // prompt's, not ours (the signal watcher may not have run since).
                        super::signals::drop_pending_interrupts();
                        tty_lock::on_child_release(&uuid, req, quit)
                    }
                    _ => unreachable!("matched above"),
                };
                match handled {
                    Ok(out) => tty_lock::flush(out).await,
                    Err(why) => self.refuse_named(name, None, why).await,
                }
            }
            Ok(Msg::DumpReply { id, text }) => {
                let mut dumps = self.dumps.borrow_mut();
                // Only answers someone may wait for: a bounded list.
                if dumps.len() < RECENT_ERRORS {
                    dumps.push((id, text));
                }
                drop(dumps);
                self.dump_waiters.wake_all();
            }
            Ok(
                m @ (Msg::SpawnSpec(_)
                | Msg::DumpRequest { .. }
                | Msg::Start { .. }
                | Msg::Cancel { .. }
                | Msg::FrameLimit { .. }
                | Msg::StreamWindow { .. }
                | Msg::TtyGranted { .. }),
            ) => {
                self.refuse(&m, "a child does not send this to its parent").await;
            }
            Ok(msg) => {
                let Some(cid) = msg.cid() else { return };
                if !self.peer.opened(cid) {
                    return self.refuse(&msg, "no call with this id was opened").await;
                }
                // A call that ended here already: late traffic of a call we gave up on.
                let Some(slot) = self.peer.call(cid) else { return };
                let name = msg.name();
                if let Err(why) = slot.deliver(msg) {
                    self.refuse_named(name, Some(cid), why).await;
                }
            }
            Err(w) => {
                let report = codec::encode(None, &Error::Wire(w.clone()), &self.me.aid);
                if self.logs.wire_errors.push(w) <= RECENT_ERRORS as u64 {
                    let _ = self.send(&report).await;
                }
            }
        }
    }

    async fn refuse(&self, msg: &Msg, why: &str) {
        self.refuse_named(msg.name(), msg.cid(), why).await;
    }

    /// Records a refused message and tells the child (the first [`RECENT_ERRORS`] times).
    async fn refuse_named(&self, name: &str, cid: Option<Cid>, why: &str) {
        let call = cid.map_or_else(String::new, |c| format!(" (call {c})"));
        let e = Error::UnexpectedMessage { peer: self.name.clone(), msg: name.to_owned(), why: format!("{why}{call}") };
        let report = codec::encode(None, &e, &self.me.aid);
        if self.logs.protocol_errors.push(e) <= RECENT_ERRORS as u64 {
            let _ = self.send(&report).await;
        }
    }
}

/// The reader task: routes the child's frames until end-of-file, or until the supervisor stops
/// it (the child was reaped but someone else still holds its end of the pipe).
async fn reader(child: Rc<ChildActor>) {
    let stop: CancelScope = child.sup.reader_stop.clone();
    let _ = stop
        .run(async {
            let mut reader = FrameReader::new(child.peer.max_frame());
            loop {
                // Only `reader_stop` can cancel this (the task is shielded).
                match crate::cx::at(reader.next(child.peer.transport(), true)).await {
                    Err(Error::Cancelled) => return Ok(()),
                    Ok(Incoming::Frame(item)) => child.dispatch(item).await,
                    // End-of-file, or a read that failed (taken as the end).
                    end => {
                        let torn = match end {
                            Ok(Incoming::End(torn)) => torn,
                            _ => reader.finish(),
                        };
                        if let Some(w) = torn {
                            child.logs.wire_errors.push(w);
                        }
                        return Ok(());
                    }
                }
            }
        })
        .await;
    child.state.eof.set(true);
    child.wake_state();
}

/// The supervisor task: waits for the child to exit or to be torn down, climbs the ladder if
/// need be, reaps, closes.
pub(crate) async fn supervise(child: Rc<ChildActor>) {
    let Ok(mut exit) = child.sup.exit_wait() else { return };
    // Until the handshake is done, the wait is bounded by the start timeout.
    let mut woke = Woke::Handshake;
    if child.state.aid.borrow().is_none() {
        let first = guest::move_on_after(child.sup.start_timeout, async {
            Ok(crate::cx::at(watch(&child, &mut exit, true)).await)
        });
        woke = first.await.ok().flatten().unwrap_or(Woke::StartTimeout);
    }
    if woke == Woke::Handshake {
        woke = crate::cx::at(watch(&child, &mut exit, false)).await;
    }
    drop(exit);
    let timed_out = woke == Woke::StartTimeout;
    // Exited within the first rung: graceful if it acknowledged the cancel, which is known once
    // the reader has everything it wrote (below).
    let mut exited_in_time = false;
    if woke != Woke::Exited {
        let mut gone = false;
        // Rung 1: graceful (or, after end-of-file, just a bounded wait for the exit). A child
        // that never joined the dialog (no `Aid` in time) skips it.
        if !timed_out {
            let graceful = guest::move_on_after(child.sup.cancel_timeout, async {
                if !child.state.eof.get() {
                    crate::log::info!("actor.cancel", actor = %child.name);
                    child.state.cancel_sent.set(true);
                    let _ = child.send(&Msg::Cancel { cid: None }).await;
                }
                child.sup.exited().await
            })
            .await;
            if matches!(graceful, Ok(Some(()))) {
                gone = true;
                exited_in_time = true;
            }
            // Debug mode: while the child's subtree holds the terminal (someone is paused at a
            // prompt), the ladder waits on this rung; after the release the child gets the
            // rung's bound again.
            if !gone && child.holds_terminal() && hold_back(&child).await {
                gone = true;
                exited_in_time = true;
            }
        }
        // Rungs 2 and 3: SIGTERM, then SIGKILL.
        if !gone {
            child.sup.terminate().await;
        }
    }
    let status = child.sup.reap().await;
    // Whatever it held or asked of the terminal lock is released on its behalf.
    let uuid = child.state.aid.borrow().as_ref().map(|a| a.uuid.clone());
    if let Some(uuid) = uuid {
        tty_lock::flush(tty_lock::child_gone(&uuid)).await;
    }
    // Everything the child wrote before it died is delivered before its death is: wait for the
    // reader to reach end-of-file (immediate, since the child held the only write end). A
    // foreign program may have handed its end to someone else (a daemon it forked): the wait is
    // bounded by the first rung's bound, then the reader is stopped, so that the nursery's exit
    // never waits on a process that is not ours.
    // A launcher's stderr likewise, so that its last line is complete.
    let _ = guest::move_on_after(
        child.sup.cancel_timeout,
        poll_fn(|cx| {
            if child.state.eof.get() && child.launched.as_ref().is_none_or(|l| l.done()) {
                return Poll::Ready(Ok(()));
            }
            guest::check_cancel()?;
            child.register_state(cx.waker());
            Poll::Pending
        }),
    )
    .await;
    child.sup.reader_stop.cancel();
    if let Some(l) = &child.launched {
        l.stop();
    }
    if exited_in_time {
        child.sup.graceful.set(child.state.cancel_acked.get());
    }
    let (code, signal) = status.map_or((None, None), process::split_status);
    crate::log::info!("actor.exit", actor = %child.name, code = ?code, signal = ?signal);
    let panic = child.logs.panic_report.borrow().clone();
    let launched = child.launched.as_deref();
    let stderr = launched.and_then(Launched::last_line);
    let early = match (timed_out, child.state.aid.borrow().is_none()) {
        (true, _) => Some(Error::StartTimeout {
            actor: child.name.clone(),
            timeout: child.sup.start_timeout,
            stderr: stderr.clone(),
        }),
        // Ended before its handshake: a mismatch it reported, or a launch that failed.
        (false, true) => launch::before_handshake(&child.name, launched, child.mismatch_report(), code, signal),
        (false, false) => None,
    };
    let died = Error::ActorDied { actor: child.name.clone(), code, signal, panic, stderr };
    child.close(early.unwrap_or(died));
    child.sup.reaped.set();
}

impl ChildActor {
    /// Whether this child's subtree holds the tree's terminal lock (debug mode).
    fn holds_terminal(&self) -> bool {
        self.state.aid.borrow().as_ref().is_some_and(|a| tty_lock::held_below(&a.uuid))
    }
}

/// The ladder's hold-back: while the child's subtree holds the terminal, waits until it released
/// it or the child exited; after each release, waits the first rung's bound again for the exit.
/// `true` once the child exited. Not a cancellation point (the supervisor runs shielded).
async fn hold_back(child: &ChildActor) -> bool {
    while child.holds_terminal() {
        crate::log::info!("actor.hold_back", actor = %child.name);
        let Ok(mut exit) = child.sup.exit_wait() else { return false };
        poll_fn(|cx| {
            if Pin::new(&mut exit).poll(cx).is_ready() || !child.holds_terminal() {
                return Poll::Ready(());
            }
            tty_lock::register_change(cx.waker());
            Poll::Pending
        })
        .await;
        let again = guest::move_on_after(child.sup.cancel_timeout, child.sup.exited()).await;
        if matches!(again, Ok(Some(()))) {
            return true;
        }
    }
    false
}

/// What ended a supervisor's wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Woke {
    /// The child's `Aid` arrived (only while `handshake` is waited for).
    Handshake,
    /// The child exited on its own.
    Exited,
    /// Teardown was requested, or the child closed its pipe.
    Teardown,
    /// No `Aid` within the start timeout.
    StartTimeout,
}

/// Waits until the child exits, is to be torn down, closes its pipe, or (if `handshake`)
/// completes its handshake. A cancellation point only while waiting for the handshake (which
/// the start timeout bounds).
async fn watch(child: &ChildActor, exit: &mut ExitWait, handshake: bool) -> Woke {
    poll_fn(|cx| {
        if Pin::new(&mut *exit).poll(cx).is_ready() {
            return Poll::Ready(Woke::Exited);
        }
        if child.state.teardown_requested.get() || child.state.eof.get() {
            return Poll::Ready(Woke::Teardown);
        }
        if handshake && child.state.aid.borrow().is_some() {
            return Poll::Ready(Woke::Handshake);
        }
        // While waiting for the handshake, the start timeout's scope cancels the wait.
        if handshake && guest::check_cancel_only().is_err() {
            return Poll::Ready(Woke::StartTimeout);
        }
        child.register_state(cx.waker());
        Poll::Pending
    })
    .await
}

/// The stand-in supervisor of a peer adopted without a process (the hostile-peer fuzz target,
/// an in-memory child): on a teardown request it sends `Cancel{None}` once (the graceful rung,
/// unbounded: the peer is in this process), and at end-of-file it "reaps" the peer, closing
/// every call with [`Error::ActorDied`] (exit code 0), as the real one does after an exit.
#[cfg(any(test, fuzzing))]
pub(crate) async fn stand_in(child: Rc<ChildActor>) {
    let c = &*child;
    let ended = |teardown: bool| {
        poll_fn(move |cx| {
            if c.state.eof.get() || (teardown && c.state.teardown_requested.get()) {
                return Poll::Ready(());
            }
            c.register_state(cx.waker());
            Poll::Pending
        })
    };
    ended(true).await;
    if !c.state.eof.get() {
        c.state.cancel_sent.set(true);
        let _ = c.send(&Msg::Cancel { cid: None }).await;
        ended(false).await;
    }
    c.sup.graceful.set(c.state.cancel_acked.get());
    let uuid = c.state.aid.borrow().as_ref().map(|a| a.uuid.clone());
    if let Some(uuid) = uuid {
        tty_lock::flush(tty_lock::child_gone(&uuid)).await;
    }
    c.close(Error::ActorDied {
        actor: c.name.clone(),
        code: Some(0),
        signal: None,
        panic: c.logs.panic_report.borrow().clone(),
        stderr: None,
    });
    c.sup.reaped.set();
}
