//! The parent side: [`open_nursery`], [`ActorNursery`], [`Portal`], and one supervisor per
//! child process.
//!
//! Per child, three internal tasks of the nursery, each in a shielded scope (they must outlive
//! any cancellation of the block, to reap the child):
//! - the **reader** owns the pipe from the child: it decodes frames and routes them by call id
//!   into the waiting calls' inboxes; it records a bad frame ([`Portal::wire_errors`]: counts
//!   and a bounded window of the [`RECENT_ERRORS`] most recent, likewise the actor's own
//!   reports) and reports the first ones back to the child; it ends at end-of-file, or when the
//!   supervisor stops it: once the child is reaped, end-of-file is waited for at most
//!   [`ActorOpts::cancel_timeout`] (a foreign program's daemon may hold the child's pipe ends
//!   for as long as it lives), so the nursery's exit is bounded by the ladder's own bounds. It
//!   never waits for a consumer (see the flow-control rule in [`context`](super::context)).
//! - the **supervisor** waits on the child's pidfd, on a teardown request, or on end-of-file;
//!   then climbs the ladder (graceful `Cancel{None}` → `SIGTERM` → `SIGKILL`, each rung
//!   bounded), reaps, and *closes* the child: every call still waiting on it ends with
//!   [`Error::ActorDied`].
//! - for `run_in_actor`, the **collector** runs the one call and keeps its outcome for
//!   [`OneShot::wait_for_result`]; a failure that this nursery did not cause itself starts
//!   one-cancels-all.
//!
//! The nursery's own exit, in order: the block returns (or fails, or is cancelled); if it
//! returned, wait for every `run_in_actor` outcome; then, shielded, request teardown of every
//! child and wait until all are reaped; then the error rules: the block's error and every
//! collector error that is not a consequence of our own cancelling come out, one bare, several
//! as an [`ErrorGroup`].

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::future::{Future, poll_fn};
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::RemoteActorError;
use crate::guest::{self, CancelScope, Event, Nursery};
use crate::wire::{
    Aid, Cid, DEFAULT_MAX_FRAME, FrameDecoder, FuncKind, Msg, SpawnSpec, WireError, decode_payload, encode_payload,
};
use crate::{Error, ErrorGroup, Result};

use super::conn::{Conn, os_err, reactor};
use super::context::{CallSlot, Context, MIN_WINDOW, STREAM_BUFFER};
use super::launch::{self, Launched};
use super::endpoints::{ContextFn, Function, OneShot};
use super::process::{self, Proc};
use super::{ActorInner, current_inner};

/// How to start a child actor, builder-style: [`ActorOpts::new`] gives the defaults (listed
/// there), each method sets one option (the fields are private; the runtime reads them).
///
/// ```
/// use std::time::Duration;
/// use infect::actor::ActorOpts;
/// let opts = ActorOpts::new()
///     .enable_modules(["math", "text"])
///     .infect_host(true)
///     .cancel_timeout(Duration::from_millis(200));
/// assert_ne!(format!("{opts:?}"), format!("{:?}", ActorOpts::new()));
/// ```
#[derive(Debug, Clone)]
pub struct ActorOpts {
    enable_modules: Vec<String>,
    infect_host: bool,
    program: Option<PathBuf>,
    launcher: Vec<OsString>,
    max_frame: usize,
    stream_window: usize,
    name: Option<String>,
    cancel_timeout: Duration,
    term_timeout: Duration,
    start_timeout: Duration,
}

/// The default [`ActorOpts::start_timeout`]: how long a child may take to answer its
/// `SpawnSpec` with its `Aid`.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for ActorOpts {
    fn default() -> Self {
        ActorOpts {
            enable_modules: Vec::new(),
            infect_host: false,
            program: None,
            launcher: Vec::new(),
            max_frame: DEFAULT_MAX_FRAME,
            stream_window: STREAM_BUFFER,
            name: None,
            cancel_timeout: Duration::from_millis(500),
            term_timeout: Duration::from_millis(500),
            start_timeout: DEFAULT_START_TIMEOUT,
        }
    }
}

impl ActorOpts {
    /// The defaults: no namespace enabled, not infected, this binary, the default frame limit
    /// ([`DEFAULT_MAX_FRAME`], 64 KiB) and stream window ([`STREAM_BUFFER`]), named after the
    /// function (for [`ActorNursery::run_in_actor`]), 500 ms per rung of the ladder, a
    /// [`DEFAULT_START_TIMEOUT`] (10 s) handshake.
    pub fn new() -> ActorOpts {
        ActorOpts::default()
    }

    /// The endpoint namespaces the child may serve (tractor's `enable_modules`); adds to those
    /// already set.
    pub fn enable_modules<S: Into<String>>(mut self, ns: impl IntoIterator<Item = S>) -> ActorOpts {
        for n in ns {
            let n = n.into();
            if !self.enable_modules.contains(&n) {
                self.enable_modules.push(n);
            }
        }
        self
    }

    /// Runs the child infected: the host executor as its loop, its actor runtime as a guest
    /// riding it (tractor's `infect_asyncio=True`).
    pub fn infect_host(mut self, infect: bool) -> ActorOpts {
        self.infect_host = infect;
        self
    }

    /// Runs `program` instead of re-executing this binary; it must call
    /// [`actor::main`](super::main) with endpoints for the enabled namespaces. With a
    /// [`launcher`](Self::launcher) it is the path on the other side (this binary's own path by
    /// default, which must then exist there too).
    pub fn program(mut self, program: impl Into<PathBuf>) -> ActorOpts {
        self.program = Some(program.into());
        self
    }

    /// Starts the child through a launcher: the process run here is `launcher... program
    /// --infect-actor-stdio` ([`LAUNCHED_ARG`](super::LAUNCHED_ARG)), and the child speaks its
    /// frames over the launcher's stdin and stdout. Any command that runs its arguments as a
    /// program and relays its stdin and stdout will do: `ssh host` (use `-T -o BatchMode=yes`
    /// so that it never prompts), `srun`, `kubectl exec -i pod --`, `docker exec -i box`, or
    /// `sh -c 'exec "$@"' --` locally. Authentication, encryption and placement are the
    /// launcher's. Everything above the connection works unchanged: portals, contexts,
    /// streams, errors, infected children, grandchildren started on the other side.
    ///
    /// What the launcher writes to stderr (with the remote program's stderr) is forwarded to
    /// this process's stderr; its last line is quoted in the errors: [`Error::LaunchFailed`]
    /// when the launcher cannot be run or ends before the handshake (ssh's exit status 255:
    /// unreachable host, refused authentication; 127: program not found on the other side),
    /// [`Error::ProtocolMismatch`] when the program there is of another build,
    /// [`Error::ActorDied`] when it dies later, [`Error::StartTimeout`] when it does not answer
    /// in time. The ladder applies to the local launcher process (the graceful cancel reaches
    /// the remote child through the pipe first); the remote child exits when its stdin ends.
    /// [`Portal::pid`] is the launcher's pid, the portal's [`aid`](Portal::aid) the remote
    /// process's.
    ///
    /// ssh joins its arguments into one command line for the remote shell: keep the program's
    /// path free of spaces and shell metacharacters.
    ///
    /// ```
    /// use infect::actor::ActorOpts;
    ///
    /// let opts = ActorOpts::new()
    ///     .launcher(["ssh", "-T", "-o", "BatchMode=yes", "worker1.example"])
    ///     .program("/opt/app/bin/app");
    /// assert_eq!(opts.launch_prefix()[0], "ssh");
    /// assert!(ActorOpts::new().launch_prefix().is_empty());
    /// ```
    pub fn launcher<S: Into<OsString>>(mut self, prefix: impl IntoIterator<Item = S>) -> ActorOpts {
        self.launcher = prefix.into_iter().map(Into::into).collect();
        self
    }

    /// The launcher prefix set so far (empty: the child is spawned directly).
    pub fn launch_prefix(&self) -> &[OsString] {
        &self.launcher
    }

    /// The frame limit between this parent and the child, delimiter included, in both
    /// directions: [`DEFAULT_MAX_FRAME`] (64 KiB) by default, clamped to
    /// `MIN_FRAME..=DEFAULT_MAX_FRAME` (256 bytes to 64 KiB; the receive buffers are
    /// `heapless`-bounded at 64 KiB, the floor keeps the handshake and error reports
    /// sendable). The child learns it in a `Msg::FrameLimit` right after its `SpawnSpec`.
    ///
    /// A message over the limit is refused at its sender before a byte is written: here,
    /// [`Portal::run`] fails with `Error::Wire(FrameTooLarge { size, max })` and the actor keeps
    /// serving; in the child, a result over the limit becomes an error for that call.
    pub fn max_frame(mut self, max: usize) -> ActorOpts {
        self.max_frame = max.clamp(MIN_FRAME, DEFAULT_MAX_FRAME);
        self
    }

    /// The stream window between this parent and the child, per context and direction: how
    /// many stream items a sender may have in flight before it waits for the receiver's credit,
    /// and so the most a receiver buffers ([`STREAM_BUFFER`] by default, at least 2). Lower it
    /// for big items: a context buffers at most `window` frames of the frame limit per
    /// direction. The child learns it in a `Msg::StreamWindow` right after its `SpawnSpec`.
    pub fn stream_window(mut self, items: usize) -> ActorOpts {
        self.stream_window = items.clamp(MIN_WINDOW, u32::MAX as usize);
        self
    }

    /// The child's name for [`ActorNursery::run_in_actor`] (default: the function's name).
    pub fn name(mut self, name: &str) -> ActorOpts {
        self.name = Some(name.to_owned());
        self
    }

    /// The first rung of the ladder: how long a graceful cancel (`Cancel{None}`) may take
    /// before the child gets `SIGTERM`.
    pub fn cancel_timeout(mut self, d: Duration) -> ActorOpts {
        self.cancel_timeout = d;
        self
    }

    /// The second rung: how long the child may take to exit after `SIGTERM` before `SIGKILL`.
    pub fn term_timeout(mut self, d: Duration) -> ActorOpts {
        self.term_timeout = d;
        self
    }

    /// The bound on the handshake: how long the child may take from its spawn to its `Aid`
    /// ([`DEFAULT_START_TIMEOUT`], 10 s, by default). A child that does not answer in time (a
    /// program that is no infect actor, one that hangs before `actor::main`) gets no graceful
    /// cancel (it never joined the dialog): it gets `SIGTERM`, then after
    /// [`term_timeout`](Self::term_timeout) `SIGKILL`, is reaped, and
    /// [`ActorNursery::start_actor`] (or the [`run_in_actor`](ActorNursery::run_in_actor)
    /// call) fails with [`Error::StartTimeout`] naming it.
    pub fn start_timeout(mut self, d: Duration) -> ActorOpts {
        self.start_timeout = d;
        self
    }
}

/// How many of the most recent errors a [`Portal`] keeps of each kind (the damaged frames
/// received, the errors the actor reported, the messages refused as out of the dialog); older
/// ones are only counted. The actor is also told about the first `RECENT_ERRORS` damaged frames
/// it sent (each as one `Msg::Error`); later ones are only counted, so a flooding peer costs
/// this process a bounded amount of memory and of writing, however long it floods.
pub const RECENT_ERRORS: usize = 64;

/// A count of errors and the [`RECENT_ERRORS`] most recent of them, oldest first.
pub(crate) struct ErrorLog<T> {
    total: Cell<u64>,
    recent: RefCell<std::collections::VecDeque<T>>,
}

impl<T: Clone> ErrorLog<T> {
    fn new() -> ErrorLog<T> {
        ErrorLog { total: Cell::new(0), recent: RefCell::new(std::collections::VecDeque::new()) }
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

/// The smallest frame limit [`ActorOpts::max_frame`] accepts, delimiter included.
pub(crate) const MIN_FRAME: usize = 256;

/// The parent's view of one child actor.
pub(crate) struct ChildActor {
    name: String,
    me: Rc<ActorInner>,
    conn: Conn,
    proc: Rc<RefCell<Proc>>,
    pid: u32,
    cancel_timeout: Duration,
    term_timeout: Duration,
    /// The stream window of every context with this child.
    window: usize,
    start_timeout: Duration,
    /// The child's identity, once the handshake is done.
    aid: RefCell<Option<Aid>>,
    calls: RefCell<BTreeMap<Cid, Rc<CallSlot>>>,
    next_cid: Cell<Cid>,
    /// Woken on handshake, end-of-file, teardown request and close.
    state_waiters: RefCell<Vec<Waker>>,
    teardown_requested: Cell<bool>,
    eof: Cell<bool>,
    /// Cancelled by the supervisor once the child is reaped and its pipe did not reach
    /// end-of-file within the bound (someone else holds the child's end): the reader stops.
    reader_stop: CancelScope,
    cancel_acked: Cell<bool>,
    /// Set once the child is reaped: what every later call gets.
    closed: RefCell<Option<Error>>,
    graceful: Cell<bool>,
    reaped: Event,
    wire_errors: ErrorLog<WireError>,
    peer_errors: ErrorLog<Error>,
    /// The panic the child reported just before dying (its hook, under `panic = "abort"`).
    panic_report: RefCell<Option<String>>,
    /// Messages refused as out of the dialog ([`Error::UnexpectedMessage`]).
    protocol_errors: ErrorLog<Error>,
    /// The supervisor sent `Cancel{None}` (a `CancelAck{None}` may come).
    cancel_sent: Cell<bool>,
    /// `run_in_actor` only: the outcome of the one call.
    one_shot: Cell<bool>,
    result: RefCell<Option<Result<Vec<u8>>>>,
    result_ready: Event,
    /// Started through a launcher: its stderr's forwarder state.
    launched: Option<Rc<Launched>>,
}

impl ChildActor {
    fn wake_state(&self) {
        let ws = std::mem::take(&mut *self.state_waiters.borrow_mut());
        for w in ws {
            w.wake();
        }
    }

    fn register_state(&self, w: &Waker) {
        // A wait at one of infect's awaits (the guest's rule for foreign futures).
        crate::cx::note_park();
        let mut ws = self.state_waiters.borrow_mut();
        if !ws.iter().any(|x| x.will_wake(w)) {
            ws.push(w.clone());
        }
    }

    fn request_teardown(&self) {
        if !self.teardown_requested.replace(true) {
            self.wake_state();
        }
    }

    fn close(&self, e: Error) {
        *self.closed.borrow_mut() = Some(e.clone());
        let slots: Vec<Rc<CallSlot>> = self.calls.borrow().values().cloned().collect();
        for s in slots {
            s.peer_gone(&e);
        }
        self.wake_state();
    }

    pub(crate) fn closed_error(&self) -> Option<Error> {
        self.closed.borrow().clone()
    }

    /// What the child said when it refused the handshake for a protocol mismatch, if it did.
    fn mismatch_report(&self) -> Option<String> {
        self.peer_errors.recent().into_iter().find_map(|e| match e.remote() {
            Some(r) if r.boxed_type == "ProtocolMismatch" && r.relay_path.is_empty() => Some(r.message.clone()),
            _ => None,
        })
    }

    /// The error a peer's `Msg::Error` stands for.
    pub(crate) fn remote_error(
        src: Aid,
        boxed_type: String,
        message: String,
        relay_path: Vec<String>,
        canceller: Option<String>,
    ) -> Error {
        let remote = std::sync::Arc::new(RemoteActorError { boxed_type, message, src, relay_path });
        if remote.boxed_type == "ContextCancelled" {
            let canceller = canceller.unwrap_or_else(|| remote.src.name.clone());
            Error::ContextCancelled { canceller, remote }
        } else {
            Error::RemoteActor(remote)
        }
    }

    pub(crate) async fn send(&self, msg: &Msg) -> Result<()> {
        self.conn.send(msg).await
    }

    /// The name of the actor this process is (the parent's side of the pipe).
    pub(crate) fn me_name(&self) -> &str {
        &self.me.aid.name
    }

    /// The first rung of the ladder, also the bound on draining a cancelled call.
    pub(crate) fn cancel_timeout(&self) -> Duration {
        self.cancel_timeout
    }

    /// Routes one decoded item from the child. A message out of the dialog is refused: recorded
    /// ([`Portal::protocol_errors`]) and reported to the child, never acted on.
    async fn dispatch(&self, item: core::result::Result<Msg, WireError>) {
        match item {
            Ok(Msg::Aid(aid)) if self.aid.borrow().is_none() => {
                *self.aid.borrow_mut() = Some(aid);
                self.wake_state();
            }
            Ok(m @ Msg::Aid(_)) => self.refuse(&m, "the handshake is over: an actor's identity does not change").await,
            Ok(Msg::CancelAck { cid: None }) if self.cancel_sent.get() && !self.cancel_acked.get() => {
                self.cancel_acked.set(true);
                self.wake_state();
            }
            Ok(m @ Msg::CancelAck { cid: None }) => {
                self.refuse(&m, "no Cancel{None} was sent to this actor, or it was already acknowledged").await
            }
            Ok(Msg::Error { cid: None, src, boxed_type, message, relay_path, canceller }) => {
                if boxed_type == "Panic" && relay_path.is_empty() {
                    // Its panic hook's last word (`panic = "abort"`): the death that follows
                    // carries it.
                    *self.panic_report.borrow_mut() = Some(message.clone());
                }
                let e = ChildActor::remote_error(src, boxed_type, message, relay_path, canceller);
                self.peer_errors.push(e);
            }
            Ok(
                m @ (Msg::SpawnSpec(_)
                | Msg::Start { .. }
                | Msg::Cancel { .. }
                | Msg::FrameLimit { .. }
                | Msg::StreamWindow { .. }),
            ) => {
                self.refuse(&m, "a child does not send this to its parent").await;
            }
            Ok(msg) => {
                let Some(cid) = msg.cid() else { return };
                if cid >= self.next_cid.get() {
                    return self.refuse(&msg, "no call with this id was opened").await;
                }
                // A call that ended here already: late traffic of a call we gave up on.
                let Some(slot) = self.calls.borrow().get(&cid).cloned() else { return };
                let name = msg.name();
                if let Err(why) = slot.deliver(msg) {
                    self.refuse_named(name, Some(cid), why).await;
                }
            }
            Err(w) => {
                let report = super::child::error_msg(None, &Error::Wire(w.clone()), &self.me);
                if self.wire_errors.push(w) <= RECENT_ERRORS as u64 {
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
        let report = super::child::error_msg(None, &e, &self.me);
        if self.protocol_errors.push(e) <= RECENT_ERRORS as u64 {
            let _ = self.send(&report).await;
        }
    }

    /// The next message for `slot`, or the child's closing error. A cancellation point when
    /// `cancellable`.
    async fn next_msg(&self, slot: &CallSlot, cancellable: bool) -> Result<Msg> {
        poll_fn(|cx| {
            if let Some(m) = slot.pop() {
                return Poll::Ready(Ok(m));
            }
            if let Some(e) = self.closed_error() {
                return Poll::Ready(Err(e));
            }
            if cancellable {
                guest::check_cancel()?;
            }
            slot.waiters.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Runs `ns.func(args)` in the child: the result's payload bytes, or the error.
    async fn call(&self, ns: &str, func: &str, args: Vec<u8>, cancellable: bool) -> Result<Vec<u8>> {
        let (cid, slot) = self.begin_call(ns, func, args, FuncKind::Function).await?;
        self.finish_call(cid, &slot, cancellable).await
    }

    /// Opens call `cid` and sends its `Start`. On a fresh pipe this does not block.
    async fn begin_call(&self, ns: &str, func: &str, args: Vec<u8>, kind: FuncKind) -> Result<(Cid, Rc<CallSlot>)> {
        if let Some(e) = self.closed_error() {
            return Err(e);
        }
        let cid = self.next_cid.get();
        self.next_cid.set(cid + 1);
        let slot = Rc::new(CallSlot::new(self.window));
        self.calls.borrow_mut().insert(cid, slot.clone());
        let start = Msg::Start { cid, ns: ns.to_owned(), func: func.to_owned(), args, kind };
        match self.send(&start).await {
            Ok(()) | Err(Error::Closed) => Ok((cid, slot)), // a dead child: the wait reports how it died
            Err(e) => {
                self.calls.borrow_mut().remove(&cid);
                Err(e)
            }
        }
    }

    /// Waits for the outcome of call `cid`; forgets the call however this ends.
    async fn finish_call(&self, cid: Cid, slot: &CallSlot, cancellable: bool) -> Result<Vec<u8>> {
        let _forget = ForgetCall { child: self, cid };
        loop {
            match self.next_msg(slot, cancellable).await {
                Ok(Msg::StartAck { .. } | Msg::CancelAck { .. }) => {}
                Ok(Msg::Return { value, .. }) => return Ok(value),
                Ok(Msg::Error { src, boxed_type, message, relay_path, canceller, .. }) => {
                    return Err(ChildActor::remote_error(src, boxed_type, message, relay_path, canceller));
                }
                Ok(_) => {} // context traffic: not for a plain call
                Err(Error::Cancelled) => {
                    // Cancel the remote call and wait (bounded) for it to end, so that it does
                    // not outlive us.
                    let d = self.cancel_timeout;
                    let _ = shielded_for(d, async {
                        slot.note_cancel_sent();
                        self.send(&Msg::Cancel { cid: Some(cid) }).await?;
                        loop {
                            match self.next_msg(slot, true).await? {
                                Msg::Return { .. } | Msg::Error { .. } => return Ok(()),
                                _ => {}
                            }
                        }
                    })
                    .await;
                    return Err(Error::Cancelled);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until the child exited (its pidfd is readable, or the `SIGCHLD` fallback says so).
    /// A cancellation point.
    async fn exited(&self) -> Result<()> {
        let mut exit = process::ExitWait::new(self.proc.clone(), reactor()?);
        poll_fn(|cx| {
            guest::check_cancel()?;
            Pin::new(&mut exit).poll(cx).map(Ok)
        })
        .await
    }
}

/// Removes a call's slot when the call ends, however it ends.
struct ForgetCall<'a> {
    child: &'a ChildActor,
    cid: Cid,
}

impl Drop for ForgetCall<'_> {
    fn drop(&mut self) {
        self.child.calls.borrow_mut().remove(&self.cid);
    }
}

/// Runs `body` shielded from outside cancellation, for at most `d`.
pub(crate) async fn shielded_for<T>(d: Duration, body: impl Future<Output = Result<T>>) -> Result<Option<T>> {
    let scope = CancelScope::shielded();
    scope.set_deadline(guest::current_time() + d);
    scope.run(body).await
}

/// The reader task: routes the child's frames until end-of-file, or until the supervisor stops
/// it (the child was reaped but someone else still holds its end of the pipe).
async fn reader(child: Rc<ChildActor>) {
    let stop = child.reader_stop.clone();
    let _ = stop
        .run(async {
            let mut decoder = Box::new(FrameDecoder::<DEFAULT_MAX_FRAME>::with_limit(child.conn.max_frame()));
            let mut buf = vec![0u8; 16 * 1024];
            let mut drained = false;
            loop {
                // Only `reader_stop` can cancel this (the task is shielded).
                let got = match child.conn.read_some(&mut buf, true, drained).await {
                    Err(Error::Cancelled) => return Ok(()),
                    r => r.unwrap_or(0),
                };
                drained = got < buf.len();
                if got == 0 {
                    if let Some(w) = decoder.finish() {
                        child.wire_errors.push(w);
                    }
                    return Ok(());
                }
                decoder.push(&buf[..got]);
                for item in decoder.by_ref() {
                    child.dispatch(item).await;
                }
            }
        })
        .await;
    child.eof.set(true);
    child.wake_state();
}

/// The supervisor task: waits for the child to exit or to be torn down, climbs the ladder if
/// need be, reaps, closes.
async fn supervise(child: Rc<ChildActor>) {
    let r = match reactor() {
        Ok(r) => r,
        Err(_) => return,
    };
    let mut exit = process::ExitWait::new(child.proc.clone(), r);
    // Until the handshake is done, the wait is bounded by the start timeout.
    let mut woke = Woke::Handshake;
    if child.aid.borrow().is_none() {
        let first = guest::move_on_after(child.start_timeout, async { Ok(watch(&child, &mut exit, true).await) });
        woke = first.await.ok().flatten().unwrap_or(Woke::StartTimeout);
    }
    if woke == Woke::Handshake {
        woke = watch(&child, &mut exit, false).await;
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
            let graceful = guest::move_on_after(child.cancel_timeout, async {
                if !child.eof.get() {
                    child.cancel_sent.set(true);
                    let _ = child.send(&Msg::Cancel { cid: None }).await;
                }
                child.exited().await
            })
            .await;
            if matches!(graceful, Ok(Some(()))) {
                gone = true;
                exited_in_time = true;
            }
        }
        // Rung 2: SIGTERM.
        if !gone {
            child.proc.borrow().signal(libc::SIGTERM);
            gone = matches!(guest::move_on_after(child.term_timeout, child.exited()).await, Ok(Some(())));
        }
        // Rung 3: SIGKILL, which cannot be ignored.
        if !gone {
            child.proc.borrow().signal(libc::SIGKILL);
            let _ = child.exited().await;
        }
    }
    // Reap. It exited, so this does not block; loop for safety all the same.
    let status = loop {
        let reaped = child.proc.borrow_mut().reap();
        match reaped {
            Ok(Some(st)) => break Some(st),
            Ok(None) => {
                let _ = guest::sleep(Duration::from_millis(1)).await;
            }
            Err(_) => break None,
        }
    };
    // Everything the child wrote before it died is delivered before its death is: wait for the
    // reader to reach end-of-file (immediate, since the child held the only write end). A
    // foreign program may have handed its end to someone else (a daemon it forked): the wait is
    // bounded by the first rung's bound, then the reader is stopped, so that the nursery's exit
    // never waits on a process that is not ours.
    // A launcher's stderr likewise, so that its last line is complete.
    let _ = guest::move_on_after(
        child.cancel_timeout,
        poll_fn(|cx| {
            if child.eof.get() && child.launched.as_ref().is_none_or(|l| l.done()) {
                return Poll::Ready(Ok(()));
            }
            guest::check_cancel()?;
            child.register_state(cx.waker());
            Poll::Pending
        }),
    )
    .await;
    child.reader_stop.cancel();
    if let Some(l) = &child.launched {
        l.stop();
    }
    if exited_in_time {
        child.graceful.set(child.cancel_acked.get());
    }
    let (code, signal) = status.map_or((None, None), process::split_status);
    let panic = child.panic_report.borrow().clone();
    let launched = child.launched.as_deref();
    let stderr = launched.and_then(Launched::last_line);
    let early = match (timed_out, child.aid.borrow().is_none()) {
        (true, _) => Some(Error::StartTimeout {
            actor: child.name.clone(),
            timeout: child.start_timeout,
            stderr: stderr.clone(),
        }),
        // Ended before its handshake: a mismatch it reported, or a launch that failed.
        (false, true) => launch::before_handshake(&child.name, launched, child.mismatch_report(), code, signal),
        (false, false) => None,
    };
    let died = Error::ActorDied { actor: child.name.clone(), code, signal, panic, stderr };
    child.close(early.unwrap_or(died));
    child.reaped.set();
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
async fn watch(child: &ChildActor, exit: &mut process::ExitWait, handshake: bool) -> Woke {
    poll_fn(|cx| {
        if Pin::new(&mut *exit).poll(cx).is_ready() {
            return Poll::Ready(Woke::Exited);
        }
        if child.teardown_requested.get() || child.eof.get() {
            return Poll::Ready(Woke::Teardown);
        }
        if handshake && child.aid.borrow().is_some() {
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

/// A handle to a child actor: call its endpoints, cancel it (tractor's `Portal`).
#[derive(Clone)]
pub struct Portal {
    child: Rc<ChildActor>,
}

impl fmt::Debug for Portal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Portal")
            .field("name", &self.child.name)
            .field("pid", &self.child.pid)
            .field("closed", &self.child.closed.borrow().is_some())
            .finish()
    }
}

impl Portal {
    /// Runs the function `func` names in the actor with `args` and returns its result (both
    /// typed by the handle).
    ///
    /// ```no_run
    /// # use infect::actor::{ActorOpts, Function, Portal};
    /// const ADD: Function<(u32, u32), u32> = Function::new("math", "add");
    ///
    /// # async fn demo(portal: &Portal) -> infect::Result<()> {
    /// let three = portal.run(ADD, &(1, 2)).await?;
    /// assert_eq!(three, 3);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A failure in the actor comes back as [`Error::RemoteActor`] (its `boxed_type` is the
    /// remote error's kind); an actor that dies meanwhile as [`Error::ActorDied`]; arguments
    /// too big for a frame as `Error::Wire(FrameTooLarge)` before anything is sent. The call
    /// waits on nothing but its answer, so a remote failure or death ends it the moment it
    /// arrives (the same supervision as a context's block). Cancelling
    /// the caller cancels the remote call and waits (at most the cancel timeout) for it to end.
    pub async fn run<A: Serialize, R: DeserializeOwned>(&self, func: Function<A, R>, args: &A) -> Result<R> {
        let args = encode_payload(args)?;
        let value = self.child.call(func.ns(), func.name(), args, true).await?;
        Ok(decode_payload(&value)?)
    }

    /// Opens a context with the actor (tractor's `Portal.open_context`): starts the context
    /// endpoint `func` names with `args`, waits for its `ctx.started(first)`, and
    /// runs `body(&ctx, first)`, the `async with` block, inside the context's own cancel scope.
    /// The context is a supervision scope: if the callee fails (or cancels itself, or a
    /// `ContextCancelled` arrives that `ctx.cancel()` did not ask for, or the actor dies) while
    /// the block runs, the block is cancelled wherever it waits and this returns that error
    /// with its kind ([`Error::RemoteActor`], [`Error::ContextCancelled`], [`Error::ActorDied`]).
    /// Otherwise, on the way out, it drains the context to its final outcome: the body's value
    /// if the context returned (or was cancelled by this side's `ctx.cancel()`: absorbed), else
    /// the context's error; the body's own error, or a cancellation of this task, comes out bare
    /// after the remote context was cancelled and drained (bounded by the cancel timeout). An
    /// error before `started` (say, the endpoint's `to_host` partner failed first) is returned
    /// and the body does not run. Keep a clone of `ctx` to read its state afterwards. See
    /// [`Context`] for the dialog and the rules.
    ///
    /// ```no_run
    /// use std::process::ExitCode;
    /// use infect::actor::{self, ActorOpts, Context, ContextFn, Endpoints};
    ///
    /// /// Takes the bound, starts with a `String`, returns the bound.
    /// const COUNTER: ContextFn<u32, String, u32> = ContextFn::new("demo", "counter");
    ///
    /// async fn counter(ctx: Context, upto: u32) -> infect::Result<u32> {
    ///     ctx.started(&"counting").await?;
    ///     ctx.open_stream(async |stream| {
    ///         for i in 0..upto {
    ///             stream.send(&i).await?;
    ///         }
    ///         Ok(())
    ///     })
    ///     .await?;
    ///     Ok(upto)
    /// }
    ///
    /// fn main() -> ExitCode {
    ///     actor::main(Endpoints::new().serve(COUNTER, counter), async {
    ///         actor::open_nursery(async |an| {
    ///             let p = an.start_actor("counter", ActorOpts::new().enable_modules(["demo"])).await?;
    ///             let sum = p
    ///                 .open_context(COUNTER, &3, async |ctx, first| {
    ///                     assert_eq!(first, "counting");
    ///                     let sum = ctx
    ///                         .open_stream(async |stream| {
    ///                             let mut sum = 0;
    ///                             while let Some(i) = stream.try_next::<u32>().await? {
    ///                                 sum += i;
    ///                             }
    ///                             Ok(sum)
    ///                         })
    ///                         .await?;
    ///                     assert_eq!(ctx.wait_for_result::<u32>().await?, 3);
    ///                     Ok(sum)
    ///                 })
    ///                 .await?;
    ///             assert_eq!(sum, 3);
    ///             p.cancel_actor().await?;
    ///             Ok(())
    ///         })
    ///         .await
    ///         .map(drop)
    ///     })
    /// }
    /// ```
    pub async fn open_context<A, S, R, T>(
        &self,
        func: ContextFn<A, S, R>,
        args: &A,
        body: impl AsyncFnOnce(&Context, S) -> Result<T>,
    ) -> Result<T>
    where
        A: Serialize,
        S: DeserializeOwned,
    {
        let (ns, func) = (func.ns(), func.name());
        let args = encode_payload(args)?;
        let (cid, slot) = self.child.begin_call(ns, func, args, FuncKind::Context).await?;
        let _forget = ForgetCall { child: &self.child, cid };
        let ctx = Context::caller(self.child.clone(), cid, slot, format!("{ns}.{func}"));
        let first = match ctx.wait_started().await {
            Ok(bytes) => decode_payload::<S>(&bytes).map_err(Error::from),
            Err(e) => Err(e),
        };
        let first = match first {
            Ok(v) => v,
            Err(e) => {
                ctx.cancel_and_drain().await;
                return Err(e);
            }
        };
        ctx.run_block(body(&ctx, first)).await
    }

    /// Cancels the actor and waits until its process is reaped (tractor's `cancel_actor`),
    /// climbing the ladder if need be. `Ok(true)` if it ended gracefully (acknowledged the
    /// cancel and exited in time), `Ok(false)` if it had to be signalled or was already gone.
    /// Not a cancellation point: the child is reaped before this returns.
    pub async fn cancel_actor(&self) -> Result<bool> {
        self.child.request_teardown();
        let reaped = self.child.reaped.clone();
        CancelScope::shielded().run(reaped.wait()).await?;
        Ok(self.child.graceful.get())
    }

    /// The result of a [`run_in_actor`](ActorNursery::run_in_actor) actor's call, once it
    /// arrived (the error as `Err`). [`Error::NoResult`] for a `start_actor` portal. (Public
    /// as [`OneShot::wait_for_result`], typed by the call's handle.)
    pub(crate) async fn wait_for_result<R: DeserializeOwned>(&self) -> Result<R> {
        if !self.child.one_shot.get() {
            return Err(Error::NoResult { actor: self.child.name.clone() });
        }
        self.child.result_ready.wait().await?;
        let r = self.child.result.borrow().clone();
        match r {
            Some(Ok(bytes)) => Ok(decode_payload(&bytes)?),
            Some(Err(e)) => Err(e),
            None => Err(Error::NoResult { actor: self.child.name.clone() }),
        }
    }

    /// The actor's name.
    pub fn name(&self) -> &str {
        &self.child.name
    }

    /// The actor's process id: of the process this side spawned, so for an actor started
    /// through a [launcher](ActorOpts::launcher) the launcher's (the actor's own pid on the other
    /// side is in its [`aid`](Self::aid)).
    pub fn pid(&self) -> u32 {
        self.child.pid
    }

    /// The actor's identity, as it announced it in the handshake.
    pub fn aid(&self) -> Option<Aid> {
        self.child.aid.borrow().clone()
    }

    /// The damaged frames received from this actor (skipped): the [`RECENT_ERRORS`] most
    /// recent, oldest first; [`wire_error_count`](Self::wire_error_count) counts them all. The
    /// first `RECENT_ERRORS` were reported back to it.
    pub fn wire_errors(&self) -> Vec<WireError> {
        self.child.wire_errors.recent()
    }

    /// How many damaged frames were received from this actor in all.
    pub fn wire_error_count(&self) -> u64 {
        self.child.wire_errors.total()
    }

    /// The actor-wide errors it reported (`Msg::Error` without a call: a frame of ours it could
    /// not decode, say): the [`RECENT_ERRORS`] most recent, oldest first.
    pub fn peer_errors(&self) -> Vec<Error> {
        self.child.peer_errors.recent()
    }

    /// How many actor-wide errors it reported in all.
    pub fn peer_error_count(&self) -> u64 {
        self.child.peer_errors.total()
    }

    /// The messages from this actor that were refused as out of the dialog, each an
    /// [`Error::UnexpectedMessage`] (a second `Aid`, a `CancelAck` nobody asked for, ...): the
    /// [`RECENT_ERRORS`] most recent, oldest first. Each was reported to the actor (the first
    /// `RECENT_ERRORS`) and otherwise ignored.
    pub fn protocol_errors(&self) -> Vec<Error> {
        self.child.protocol_errors.recent()
    }

    /// The fuzz target's memory check: the most messages any open call of this actor holds.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn largest_inbox(&self) -> usize {
        self.child.calls.borrow().values().map(|s| s.len()).max().unwrap_or(0)
    }

    /// How many messages from this actor were refused in all.
    pub fn protocol_error_count(&self) -> u64 {
        self.child.protocol_errors.total()
    }
}

struct AnInner {
    me: Rc<ActorInner>,
    n: Nursery,
    children: RefCell<Vec<Rc<ChildActor>>>,
    errors: RefCell<Vec<Error>>,
    /// Cancelled for one-cancels-all.
    body_scope: CancelScope,
    /// One-cancels-all was triggered.
    cancelling: Cell<bool>,
}

impl AnInner {
    /// Records a real error and cancels everything: the block and every child.
    fn fail(&self, e: Error) {
        self.errors.borrow_mut().push(e);
        self.cancelling.set(true);
        self.body_scope.cancel();
        for c in self.children.borrow().iter() {
            c.request_teardown();
        }
    }
}

/// A nursery of actors (tractor's `ActorNursery`): start actors in it; it reaps them all.
#[derive(Clone)]
pub struct ActorNursery {
    inner: Rc<AnInner>,
}

impl fmt::Debug for ActorNursery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.inner.children.borrow().iter().map(|c| c.name.clone()).collect();
        f.debug_struct("ActorNursery").field("children", &names).finish()
    }
}

/// Opens an actor nursery around `body` (tractor's `open_nursery`).
///
/// When the block returns, the nursery waits for every [`run_in_actor`](ActorNursery::run_in_actor)
/// result, then cancels every actor still running (the graceful ladder) and returns once all
/// are reaped. Supervision is one-cancels-all: the block failing, or a `run_in_actor` actor
/// failing, cancels the block and every actor.
///
/// The nursery is its own scope (trio's rule, as [`guest::open_nursery`]): its own
/// [`cancel`](ActorNursery::cancel) is the normal way to stop it, not a failure. The result has
/// the shape of `guest::open_nursery`'s: `Ok(Some(v))`, the block returned `v` and nothing
/// failed; `Ok(None)`, the nursery's own cancel interrupted the block (every actor reaped, the
/// calls it cut short ended with `Cancelled` inside the block and were caught here); `Err(e)`:
/// the error, bare, several independent errors as one [`ErrorGroup`], or the cancellation of an
/// enclosing scope.
///
/// In the root process, an interrupt (`SIGINT`/`SIGTERM`) cancels the block and the nursery
/// returns [`Error::Interrupted`] once every actor is reaped (even if the block still returned
/// its value, so that no interrupt is lost): the caller handles it like any error, see
/// [`main`](super::main).
pub async fn open_nursery<T, F>(body: F) -> Result<Option<T>>
where
    F: AsyncFnOnce(&ActorNursery) -> Result<T>,
{
    let me = current_inner().ok_or(Error::NoActorRuntime)?;
    guest::open_nursery(async |n| {
        let an = ActorNursery {
            inner: Rc::new(AnInner {
                me,
                n: n.clone(),
                children: RefCell::new(Vec::new()),
                errors: RefCell::new(Vec::new()),
                body_scope: CancelScope::new(),
                cancelling: Cell::new(false),
            }),
        };
        let scope = an.inner.body_scope.clone();
        // In the root, an interrupt cancels this block (see `actor::main`).
        let interrupt = super::runtime::interruptible(&scope);
        let r = scope
            .run(async {
                let v = body(&an).await?;
                an.wait_one_shots().await?;
                Ok(v)
            })
            .await;
        if r.as_ref().is_err_and(|e| !e.is_cancelled()) {
            an.inner.cancelling.set(true);
        }
        // Tear everything down, whatever cancels us meanwhile.
        let _ = CancelScope::shielded().run(an.teardown_all()).await;
        let interrupted = interrupt.and_then(|i| i.signal());
        let mut errors = std::mem::take(&mut *an.inner.errors.borrow_mut());
        let value = match r {
            Ok(Some(v)) => Some(v),
            Ok(None) => None,
            Err(Error::Cancelled) if !errors.is_empty() => None, // a consequence of the errors
            Err(e) => {
                // The block re-raising a child's error (say, from `wait_for_result`) is the
                // same error: it counts once.
                if !errors.iter().any(|x| x.is_same(&e)) {
                    errors.insert(0, e);
                }
                None
            }
        };
        if let Some(signal) = interrupted {
            // Delivered here even if the block still returned a value (trio raises a
            // `KeyboardInterrupt` at the nursery's exit too), so that no interrupt is lost.
            // Whatever the actors said as they went (a Ctrl-C reaches them too) is a
            // consequence of it.
            return Err(Error::Interrupted { signal });
        }
        match (value, errors.len()) {
            (Some(v), 0) => Ok(Some(v)),
            // Only our own `cancel()` cancels the block without an error or an interrupt.
            (None, 0) => Ok(None),
            (_, 1) => Err(errors.pop().expect("one error")),
            _ => Err(Error::Group(ErrorGroup(errors))),
        }
    })
    .await
    // The guest nursery is never cancelled on its own (its scope is not ours to cancel).
    .map(Option::flatten)
}

impl ActorNursery {
    /// Starts a child actor called `name` (tractor's `start_actor`) and returns its portal
    /// once the handshake is done. The actor serves the namespaces `opts` enables until it is
    /// cancelled ([`Portal::cancel_actor`], [`cancel`](Self::cancel), or the nursery's exit).
    pub async fn start_actor(&self, name: &str, opts: ActorOpts) -> Result<Portal> {
        let child = self.spawn_child(name, &opts).await?;
        poll_fn(|cx| {
            if child.aid.borrow().is_some() {
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = child.closed_error() {
                return Poll::Ready(Err(e));
            }
            guest::check_cancel()?;
            child.register_state(cx.waker());
            Poll::Pending
        })
        .await?;
        Ok(Portal { child })
    }

    /// Spawns the process, starts its reader and supervisor, and sends the `SpawnSpec` (which
    /// does not block on a fresh pipe); the handshake's answer is left to the caller.
    async fn spawn_child(&self, name: &str, opts: &ActorOpts) -> Result<Rc<ChildActor>> {
        let an = &self.inner;
        let spec = SpawnSpec {
            protocol: crate::wire::PROTOCOL_VERSION,
            parent: an.me.aid.clone(),
            name: name.to_owned(),
            enable_modules: opts.enable_modules.clone(),
            infect_host: opts.infect_host,
        };
        let spec = Msg::SpawnSpec(spec);
        check_spawnable(name, &spec, opts.max_frame)?;
        let program = match &opts.program {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(|e| os_err("current_exe", e))?,
        };
        let (proc, rx, tx, stderr) = if opts.launcher.is_empty() {
            let (proc, rx, tx) = process::spawn(&program, name)?;
            (proc, rx, tx, None)
        } else {
            let (proc, rx, tx, err) = process::spawn_launched(&opts.launcher, &program, name)?;
            (proc, rx, tx, Some(err))
        };
        let pid = proc.borrow().pid();
        let conn = match Conn::new(rx, tx, reactor()?, opts.max_frame) {
            Ok(c) => c,
            Err(e) => {
                drop(proc); // kills and reaps
                return Err(e);
            }
        };
        let launched = stderr.as_ref().map(|_| Rc::new(Launched::new(launch::show(&opts.launcher))));
        let child = self.new_child(name, conn, proc, pid, opts, launched.clone());
        // The reader, the supervisor and the stderr forwarder are shielded: they must outlive
        // any cancellation of the nursery, so that the child is always read to the end and
        // always reaped.
        an.n.start_soon(shielded(reader(child.clone())))?;
        an.n.start_soon(shielded(supervise(child.clone())))?;
        if let (Some(l), Some(fd)) = (launched, stderr) {
            let c = child.clone();
            an.n.start_soon(shielded(launch::forward_stderr(l, fd, move || c.wake_state())))?;
        }

        // In one write: the child applies the settings before it reads anything else.
        let limit = Msg::FrameLimit { max: opts.max_frame as u32 };
        let window = Msg::StreamWindow { items: opts.stream_window as u32 };
        let mut msgs = vec![&spec];
        if opts.max_frame != DEFAULT_MAX_FRAME {
            msgs.push(&limit);
        }
        if opts.stream_window != STREAM_BUFFER {
            msgs.push(&window);
        }
        let sent = child.conn.send_all(&msgs).await;
        match sent {
            Ok(()) | Err(Error::Closed) => Ok(child),
            Err(e) => Err(e),
        }
    }

    /// The parent's record of a child on `conn`, listed in this nursery.
    fn new_child(
        &self,
        name: &str,
        conn: Conn,
        proc: Rc<RefCell<Proc>>,
        pid: u32,
        opts: &ActorOpts,
        launched: Option<Rc<Launched>>,
    ) -> Rc<ChildActor> {
        let an = &self.inner;
        let child = Rc::new(ChildActor {
            name: name.to_owned(),
            me: an.me.clone(),
            conn,
            proc,
            pid,
            cancel_timeout: opts.cancel_timeout,
            term_timeout: opts.term_timeout,
            window: opts.stream_window,
            start_timeout: opts.start_timeout,
            aid: RefCell::new(None),
            calls: RefCell::new(BTreeMap::new()),
            next_cid: Cell::new(1),
            state_waiters: RefCell::new(Vec::new()),
            teardown_requested: Cell::new(an.cancelling.get()),
            eof: Cell::new(false),
            reader_stop: CancelScope::new(),
            cancel_acked: Cell::new(false),
            closed: RefCell::new(None),
            graceful: Cell::new(false),
            reaped: Event::new(),
            wire_errors: ErrorLog::new(),
            peer_errors: ErrorLog::new(),
            panic_report: RefCell::new(None),
            protocol_errors: ErrorLog::new(),
            cancel_sent: Cell::new(false),
            one_shot: Cell::new(false),
            result: RefCell::new(None),
            result_ready: Event::new(),
            launched,
        });
        an.children.borrow_mut().push(child.clone());
        child
    }

    /// The hostile-peer fuzz target's entry: adopts a peer speaking on `rx`/`tx` as child
    /// `aid.name`, handshake taken as done (so any `Aid` it sends is a second one). No process:
    /// a stand-in supervisor "reaps" it at end-of-file on `rx`, closing every call with
    /// [`Error::ActorDied`], as the real one does after a child's exit.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn adopt_peer(
        &self,
        aid: Aid,
        rx: std::os::fd::OwnedFd,
        tx: std::os::fd::OwnedFd,
        max_frame: usize,
    ) -> Result<Portal> {
        let opts = ActorOpts::new().max_frame(max_frame);
        let conn = Conn::new(rx, tx, reactor()?, opts.max_frame)?;
        let proc = Rc::new(RefCell::new(Proc::detached()?));
        let child = self.new_child(&aid.name.clone(), conn, proc, 0, &opts, None);
        *child.aid.borrow_mut() = Some(aid);
        self.inner.n.start_soon(shielded(reader(child.clone())))?;
        let c = child.clone();
        self.inner.n.start_soon(shielded(async move {
            let _ = poll_fn(|cx| {
                if c.eof.get() {
                    return Poll::Ready(());
                }
                c.register_state(cx.waker());
                Poll::Pending
            })
            .await;
            c.close(Error::ActorDied {
                actor: c.name.clone(),
                code: Some(0),
                signal: None,
                panic: c.panic_report.borrow().clone(),
                stderr: None,
            });
            c.reaped.set();
        }))?;
        Ok(Portal { child })
    }

    /// Starts a one-shot actor running `func(args)` (tractor's `run_in_actor`): the returned
    /// [`OneShot`]'s [`wait_for_result`](OneShot::wait_for_result) gives the result, typed by
    /// the handle; the nursery waits for it
    /// on exit and raises its error (one-cancels-all). The actor is named after the function unless
    /// `opts` names it, and its namespace is enabled for it.
    ///
    /// The call is pipelined behind the handshake: this returns once the process is spawned and
    /// the request is written, without waiting for an answer, so that several one-shot actors
    /// started in a row are all under way before any of their outcomes is looked at.
    pub async fn run_in_actor<A: Serialize, R>(
        &self,
        func: Function<A, R>,
        args: &A,
        opts: ActorOpts,
    ) -> Result<OneShot<R>> {
        let (ns, func) = (func.ns(), func.name());
        let name = opts.name.clone().unwrap_or_else(|| func.to_owned());
        let payload = encode_payload(args)?;
        let opts = opts.enable_modules([ns]);
        let child = self.spawn_child(&name, &opts).await?;
        child.one_shot.set(true);
        let (cid, slot) = child.begin_call(ns, func, payload, FuncKind::Function).await?;
        let an = self.inner.clone();
        let c = child.clone();
        self.inner.n.start_soon(async move {
            CancelScope::shielded()
                .run(async {
                    let out = c.finish_call(cid, &slot, false).await;
                    // An outcome that only says we cancelled the actor ourselves is no error of
                    // its own.
                    let ours = c.teardown_requested.get()
                        && matches!(&out, Err(Error::ContextCancelled { .. } | Error::ActorDied { .. }));
                    if let (Err(e), false) = (&out, ours) {
                        an.fail(e.clone());
                    }
                    *c.result.borrow_mut() = Some(out);
                    c.result_ready.set();
                    c.request_teardown();
                    Ok(())
                })
                .await
                .map(drop)
        })?;
        Ok(OneShot::new(Portal { child }))
    }

    /// Cancels the nursery (tractor's `ActorNursery.cancel`, trio's `nursery.cancel_scope.cancel()`):
    /// its block and every actor (the ladder, concurrently), and waits until all are reaped.
    /// Not a failure: the calls it cuts short end with `Cancelled` inside the block, the block
    /// unwinds at its next await, and [`open_nursery`] returns `Ok(None)` (or the block's
    /// value, if it returned one without awaiting again).
    ///
    /// ```no_run
    /// use infect::actor::{self, ActorOpts, Endpoints};
    /// use infect::guest;
    ///
    /// fn main() -> infect::Result<()> {
    ///     let r = actor::run(Endpoints::new(), async {
    ///         actor::open_nursery(async |an| {
    ///             an.start_actor("worker", ActorOpts::new()).await?;
    ///             an.cancel().await?;
    ///             guest::sleep_forever().await?; // cancelled: the block ends here
    ///             Ok("never")
    ///         })
    ///         .await
    ///     })?;
    ///     assert_eq!(r, None);
    ///     Ok(())
    /// }
    /// ```
    pub async fn cancel(&self) -> Result<()> {
        self.inner.body_scope.cancel();
        CancelScope::shielded().run(self.teardown_all()).await.map(drop)
    }

    /// The number of actors started in this nursery that are not reaped yet.
    pub fn live_actors(&self) -> usize {
        self.inner.children.borrow().iter().filter(|c| !c.reaped.is_set()).count()
    }

    async fn wait_one_shots(&self) -> Result<()> {
        let mut i = 0;
        loop {
            let next = self.inner.children.borrow().get(i).cloned();
            let Some(c) = next else { return Ok(()) };
            if c.one_shot.get() {
                c.result_ready.wait().await?;
            }
            i += 1;
        }
    }

    async fn teardown_all(&self) -> Result<()> {
        let children: Vec<Rc<ChildActor>> = self.inner.children.borrow().clone();
        for c in &children {
            c.request_teardown();
        }
        for c in &children {
            c.reaped.wait().await?;
        }
        Ok(())
    }
}

/// The longest actor name [`ActorNursery::start_actor`] accepts, in bytes: a name travels in
/// the `SpawnSpec`, every `Aid` and every error report, which must fit the smallest frame
/// limit (256 bytes; an error report too long for its frame has its message shortened, never
/// its source).
pub const MAX_ACTOR_NAME: usize = 128;

/// Refuses, before anything is spawned, a name over [`MAX_ACTOR_NAME`] or a `SpawnSpec` that
/// does not fit the frame limit (many long namespaces).
fn check_spawnable(name: &str, spec: &Msg, max_frame: usize) -> Result<()> {
    let refuse = |reason: String| {
        let mut shown = name.to_owned();
        if shown.len() > MAX_ACTOR_NAME {
            let mut cut = MAX_ACTOR_NAME;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
            shown.push_str("...");
        }
        Err(Error::SpawnFailed { actor: shown, reason, source: None })
    };
    if name.is_empty() || name.len() > MAX_ACTOR_NAME {
        return refuse(format!(
            "an actor name must be 1 to {MAX_ACTOR_NAME} bytes long, this one is {} bytes",
            name.len()
        ));
    }
    if let Err(e) = crate::wire::encode_frame(spec, max_frame) {
        return refuse(format!("its SpawnSpec does not fit a frame ({e}): enable fewer or shorter namespaces"));
    }
    Ok(())
}

/// Runs `work` in a shielded scope, as a nursery child.
async fn shielded(work: impl Future<Output = ()>) -> Result<()> {
    CancelScope::shielded()
        .run(async {
            work.await;
            Ok(())
        })
        .await
        .map(drop)
}

#[cfg(test)]
mod opts_tests {
    use super::*;

    /// The documented defaults and clamps of [`ActorOpts`].
    #[test]
    fn actor_opts_defaults_and_clamps() {
        let d = ActorOpts::new();
        assert_eq!(d.enable_modules, Vec::<String>::new());
        assert!(!d.infect_host && d.program.is_none() && d.name.is_none());
        assert_eq!((d.max_frame, d.stream_window), (DEFAULT_MAX_FRAME, STREAM_BUFFER));
        assert_eq!((d.cancel_timeout, d.term_timeout), (Duration::from_millis(500), Duration::from_millis(500)));
        assert_eq!(d.start_timeout, DEFAULT_START_TIMEOUT);
        assert_eq!(
            ActorOpts::new().enable_modules(["a", "b"]).enable_modules(["a", "c"]).enable_modules,
            ["a", "b", "c"]
        );
        assert_eq!(ActorOpts::new().max_frame(4096).max_frame, 4096);
        assert_eq!(ActorOpts::new().max_frame(1).max_frame, 256);
        assert_eq!(ActorOpts::new().max_frame(1 << 20).max_frame, 64 * 1024);
        assert_eq!(ActorOpts::new().stream_window(16).stream_window, 16);
        assert_eq!(ActorOpts::new().stream_window(0).stream_window, 2);
        assert_eq!(
            ActorOpts::new().start_timeout(Duration::from_millis(300)).start_timeout,
            Duration::from_millis(300)
        );
    }
}
