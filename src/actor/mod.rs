//! The actor tree (std): actors are processes, each running the guest runtime (or, infected,
//! the host executor with the guest riding it), talking postcard/COBS frames over pipes.
//!
//! A binary registers its [`Endpoints`] and calls [`main`]. In the root process `main` runs the
//! root's future; in a process spawned as an actor (the same binary re-executed, or a named
//! program that also calls `main`) it serves the endpoints its parent enabled. Inside, a task
//! opens an [`open_nursery`], starts actors ([`ActorNursery::start_actor`],
//! [`ActorNursery::run_in_actor`]) and calls them through [`Portal`]s: one-shot calls
//! ([`Portal::run`]) or contexts ([`Portal::open_context`]: a `started` handshake, a two-way
//! [`MsgStream`], one final outcome; see [`context`] for their dialog, the supervision rule
//! (a remote failure interrupts the caller's block), the `ContextCancelled` absorption rule and
//! the context's introspection).
//!
//! An actor started with [`ActorOpts::infect_host`] (or a root run with
//! [`RootOpts::infect_host`]) runs the host executor as its loop and this whole runtime as a
//! guest riding it (`Host::run_guest`), so that its endpoints can drive host tasks with
//! [`to_host`](crate::to_host); its parent cannot tell it apart from any other actor. In an actor
//! that is not infected `to_host` calls fail with [`Error::NotInfected`](crate::Error::NotInfected),
//! which reaches the caller as a remote error of that kind; host-side errors that propagate out
//! of an endpoint reach it boxed with their own kind (`HostCancelled`, `HostTaskExited`, a user
//! error's kind).
//!
//! # The message dialog
//!
//! ```text
//! parent (Portal side)                                 child (serving side)
//!  spawn: pipes on fds named by INFECT_ACTOR_PIPE ──▶  adopts them (O_CLOEXEC), death signal armed
//!  SpawnSpec{parent, name, enable_modules, infect} ──▶  builds its actor, picks its loop
//!  [FrameLimit{max}]  (only with ActorOpts::max_frame) ▶  both directions use `max` from here on
//!  [StreamWindow{items}] (only with ActorOpts::stream_window) ▶  every context's window from here on
//!                       ◀── Aid{name, uuid, pid}         handshake done: start_actor returns
//!  Start{cid, ns, func, args, kind} ────────────────▶  looks up ns/func, decodes args
//!                       ◀── Error{cid}                    not enabled / unknown / bad args (keeps serving)
//!                                                       otherwise runs it as a task, and then
//!                       ◀── StartAck{cid, functype}      (for a plain function: in one write
//!                       ◀── Return{cid, value} | Error{cid}   with the outcome)
//!  (a context: StartAck travels with its Started{cid, v}; then Yield{cid}/Stop{cid} either way,
//!   each receiver returning Credit{cid, n} as it takes items, then Return | Error; see
//!   [`context`])
//!  Cancel{cid} ─────────────────────────────────────▶  cancels that call's scope
//!                       ◀── CancelAck{cid}, then Error{cid, ContextCancelled, canceller: parent}
//!  Cancel{None} (cancel_actor) ─────────────────────▶  cancels every call (each answers as above),
//!                                                       runs its teardown callbacks,
//!                       ◀── CancelAck{None}              and exits 0
//!  a bad frame from the peer ───────────────────────▶  Error{cid: None, boxed_type: the wire error}
//! ```
//!
//! # Invariants
//! - **No child outlives its nursery, no zombie.** An [`ActorNursery`] returns only after every
//!   child process it spawned has been reaped. Each child has a supervisor task that waits on
//!   its pidfd (never a blocking `waitpid` in the loop; where `pidfd_open` is missing, `ENOSYS`
//!   under valgrind or before Linux 5.3, on a `SIGCHLD` self-pipe and `waitid(P_PID, pid,
//!   WNOHANG | WNOWAIT)` on its own pids only; the test-only environment variable
//!   `INFECT_TEST_NO_PIDFD=1` forces that path) and, when asked to end it, climbs the
//!   ladder: `Cancel{None}` and a bounded wait ([`ActorOpts::cancel_timeout`]) → `SIGTERM` and a
//!   bounded wait ([`ActorOpts::term_timeout`]) → `SIGKILL` → reap.
//! - **A bounded handshake.** A child must answer its `SpawnSpec` with its `Aid` within
//!   [`ActorOpts::start_timeout`] ([`DEFAULT_START_TIMEOUT`], 10 s); one that does not (a
//!   program that is no infect actor, or hangs before [`main`]) skips the graceful rung (it never
//!   joined the dialog): `SIGTERM`, bounded wait, `SIGKILL`, reap, and the start fails with
//!   [`Error::StartTimeout`](crate::Error::StartTimeout) naming it.
//! - **No orphan.** A child gets `SIGTERM` when its parent dies (`PR_SET_PDEATHSIG`, armed
//!   before `exec`, with `getppid` re-checked against the race) and also takes end-of-file on
//!   its parent pipe as "parent gone": it cancels everything, runs its teardown callbacks and
//!   exits, within [`PARENT_GONE_GRACE`]; if its work does not end in time it kills and reaps
//!   its own children and exits anyway.
//! - **Frames are bounded, per actor.** Every frame between a parent and a child is at most
//!   [`ActorOpts::max_frame`] bytes (delimiter included; [`DEFAULT_MAX_FRAME`](crate::wire::DEFAULT_MAX_FRAME),
//!   64 KiB, unless lowered, at least 256 bytes), the same limit in both directions. The
//!   sender refuses a bigger message with `FrameTooLarge { size, max }` before writing a byte
//!   (a call's arguments fail at the caller; a result becomes an error for that call); the
//!   receiver, whose buffer is `heapless`-bounded, skips an over-limit frame, reports it and
//!   keeps going.
//! - **Every request gets an answer.** An error report too big for the frame limit is never
//!   dropped: it is shortened to fit (kind, source and call id kept, the message cut and
//!   marked [`CUT_MARKER`](crate::wire::CUT_MARKER); see
//!   [`encode_frame_fit`](crate::wire::encode_frame_fit)), so that no caller waits forever.
//! - **Flow control end to end.** A context's stream is credit-based in each direction (see
//!   [`context`]): a sender has at most a window of items in flight ([`STREAM_BUFFER`], or
//!   [`ActorOpts::stream_window`]) and waits for the receiver's `Credit`, so a slow consumer
//!   slows its producer, across processes, with nothing lost and at most a window of items
//!   buffered per context and direction; the connection's reader never
//!   waits for a consumer, so one stalled context does not stall the others.
//! - **Out-of-dialog messages are refused, never acted on.** The parent accepts one `Aid` (the
//!   handshake), a `CancelAck{None}` only after its own `Cancel{None}`, per call at most one
//!   `StartAck`, `Started`, `Stop` and `CancelAck` (this one only after its `Cancel{cid}`), no
//!   stream item after the peer's `Stop`, nothing after the call's `Return`/`Error`, nothing
//!   for a call id it never opened, and no `SpawnSpec`/`Start`/`Cancel`/`FrameLimit` from a
//!   child; the child likewise refuses what a parent may not send. A refused message becomes
//!   an [`Error::UnexpectedMessage`](crate::Error::UnexpectedMessage), recorded
//!   ([`Portal::protocol_errors`], a bounded window of [`RECENT_ERRORS`]) and reported to the
//!   peer as an actor-wide `Msg::Error`. This also bounds what a peer can make a call's inbox
//!   hold. (Late traffic for a call this side already gave up on is dropped silently.)
//! - **Errors cross processes by kind.** An endpoint's error travels as `Msg::Error` with its
//!   [`Error::kind`](crate::Error::kind) as `boxed_type`; the caller gets
//!   [`Error::RemoteActor`](crate::Error::RemoteActor) (or
//!   [`Error::ContextCancelled`](crate::Error::ContextCancelled)). An actor that relays a
//!   remote error appends its name to the `relay_path`. A child that dies while a call waits
//!   on it ends that call with [`Error::ActorDied`](crate::Error::ActorDied) naming the actor
//!   and the status or signal.
//! - **Panics arrive with their message; the actor serves on.** With unwinding, a panic in an
//!   endpoint, a context endpoint or a `to_host` host task is caught where that task ends and
//!   becomes [`Error::Panic`](crate::Error::Panic) (message and `file:line:col`), which the
//!   caller gets as a remote error of kind `Panic`; like tractor, which boxes the exception and
//!   keeps serving, the actor goes on serving its other and later calls. (A panic that unwinds
//!   through a guest nursery inside the endpoint leaves that nursery's tasks to run out on
//!   their own.) Under `panic = "abort"` (the `release-min` profile) nothing unwinds: the
//!   actor's panic hook writes the panic to the parent (`Msg::Error { cid: None, boxed_type:
//!   "Panic" }`, written straight to the pipe before the process aborts) and the
//!   [`Error::ActorDied`](crate::Error::ActorDied) of the `SIGABRT` that follows carries it in
//!   `panic`. The hook chains to the one installed before it (the default prints to stderr); a
//!   hook the program installs later without chaining turns both off.
//! - **One-cancels-all.** A failing `run_in_actor` child, or a failing nursery block, cancels
//!   the block and every sibling actor; the errors that caused it come out (several as one
//!   [`ErrorGroup`](crate::ErrorGroup)), the cancellations they caused do not.
//! - **Signals are data.** `SIGINT`/`SIGTERM` land in a self-pipe watched by the reactor (the
//!   handler only writes one byte); no thread, no work in the handler. `SIGINT` in the root
//!   is an interrupt the root can handle (tractor's `KeyboardInterrupt`): every actor nursery
//!   open in the root is cancelled, tears its actors down and returns
//!   [`Error::Interrupted`](crate::Error::Interrupted) to its opener, which may clean up or
//!   return a value; with no actor nursery open, the root's own task gets `Interrupted` once,
//!   from the await it is blocked in (a guest nursery it waits in returns it, after cancelling
//!   its children). If the root fails after it, the process exits with status 130 (see
//!   [`main`]). In a child it cancels that child:
//!   its calls end at the parent as `ContextCancelled { canceller: <child> }`, its teardown
//!   callbacks run, it exits 130.
//! - The tree shares the root's process group, so a terminal's Ctrl-C reaches every actor. A
//!   Ctrl-C that kills a child still being spawned (before its handler is in place) does not
//!   turn into that child's `ActorDied`: the root drains its signal pipe before it decides how
//!   it ended.
//! - **Process hygiene.** A child's pipe ends never sit on fds 0-2 (any numbering of the root's
//!   descriptors works, fd 0 closed included); every other descriptor from 3 up is closed at
//!   `exec`, whether or not the root got it close-on-exec, so an actor holds only its standard
//!   descriptors and its two pipe ends. Children are signalled and reaped through their pidfds,
//!   never by pid. A name over [`MAX_ACTOR_NAME`] bytes (or a `SpawnSpec` over the frame
//!   limit) is refused with [`Error::SpawnFailed`](crate::Error::SpawnFailed) before anything is
//!   spawned.
//! - Process-wide state (the current actor, the signal pipe, the registry of live children) is
//!   thread-local to the thread that called [`main`]; an actor is single-threaded.
//!
//! # Example
//!
//! `examples/actor_tree.rs` is a complete program; in short:
//!
//! ```no_run
//! use infect::actor::{self, ActorOpts, Endpoints};
//!
//! async fn double(x: u64) -> infect::Result<u64> {
//!     Ok(2 * x)
//! }
//!
//! fn main() -> infect::Result<()> {
//!     let endpoints = Endpoints::new().function("math", "double", double);
//!     actor::main(endpoints, async {
//!         actor::open_nursery(async |an| {
//!             let portal = an.start_actor("doubler", ActorOpts::new().enable_modules(["math"])).await?;
//!             let four: u64 = portal.run("math", "double", &2u64).await?;
//!             assert_eq!(four, 4);
//!             portal.cancel_actor().await?;
//!             Ok(())
//!         })
//!         .await
//!         .map(drop) // `Ok(None)` would mean the nursery's own cancel stopped it
//!     })
//! }
//! ```

// The module graph, one way (each module uses only those above it; a test in this file
// checks the `use super::` lines):
mod child;
mod codec;
pub mod context;
mod endpoints;
mod parent;
pub(crate) mod peer;
mod process;
mod runtime;
mod signals;
mod sys;

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

pub use crate::error::RemoteActorError;
pub use context::{BroadcastReceiver, Context, MsgStream, STREAM_BUFFER};
pub use endpoints::Endpoints;
pub use parent::{ActorNursery, ActorOpts, DEFAULT_START_TIMEOUT, MAX_ACTOR_NAME, Portal, RECENT_ERRORS, open_nursery};
pub use runtime::{RootOpts, main, main_with};

use crate::wire::Aid;

/// How long an actor whose parent is gone (end-of-file on its pipe, or `SIGTERM`) lets its work
/// unwind before it kills its own children and exits anyway.
pub const PARENT_GONE_GRACE: Duration = Duration::from_millis(700);

/// The state of the actor this process is.
pub(crate) struct ActorInner {
    aid: Aid,
    infected: bool,
    parent: Option<Aid>,
    /// The namespaces this actor serves (empty for the root).
    enabled: Vec<String>,
    endpoints: Endpoints,
    /// Teardown callbacks, run last-in first-out when the actor ends.
    teardown: RefCell<Vec<Box<dyn FnOnce()>>>,
    /// The pipe to the parent (children only, once serving), for [`Actor::write_raw_to_parent`].
    parent_conn: RefCell<Option<Rc<peer::Peer>>>,
}

impl ActorInner {
    /// Runs the teardown callbacks, newest first. Each runs once.
    pub(crate) fn run_teardown(&self) {
        loop {
            let next = self.teardown.borrow_mut().pop();
            match next {
                Some(f) => f(),
                None => break,
            }
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<ActorInner>>> = const { RefCell::new(None) };
}

pub(crate) fn set_current(actor: Option<Rc<ActorInner>>) {
    let old = CURRENT.with(|c| c.replace(actor));
    drop(old);
}

pub(crate) fn current_inner() -> Option<Rc<ActorInner>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// A handle to the actor this process is (tractor's `current_actor()`).
#[derive(Clone)]
pub struct Actor {
    inner: Rc<ActorInner>,
}

impl fmt::Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Actor")
            .field("aid", &self.inner.aid)
            .field("infected", &self.inner.infected)
            .field("enabled", &self.inner.enabled)
            .finish()
    }
}

/// The actor this process is.
///
/// # Panics
/// Outside [`main`] (no actor runtime is running on this thread); see [`try_current_actor`].
pub fn current_actor() -> Actor {
    try_current_actor().expect("current_actor() called outside infect::actor::main")
}

/// The actor this process is, or `None` outside [`main`].
///
/// ```
/// assert!(infect::actor::try_current_actor().is_none());
/// ```
pub fn try_current_actor() -> Option<Actor> {
    current_inner().map(|inner| Actor { inner })
}

impl Actor {
    /// The name it was started under (`"root"` for the root, unless [`RootOpts::name`] says
    /// otherwise).
    pub fn name(&self) -> &str {
        &self.inner.aid.name
    }

    /// Its unique id (chosen by the actor itself when it started).
    pub fn uid(&self) -> &str {
        &self.inner.aid.uuid
    }

    /// Its full identity: name, uid and pid.
    pub fn aid(&self) -> &Aid {
        &self.inner.aid
    }

    /// Whether it runs infected: the host executor as its loop, the guest riding it, so that
    /// `to_host` calls work.
    pub fn is_infected(&self) -> bool {
        self.inner.infected
    }

    /// Whether it is the root of the tree.
    pub fn is_root(&self) -> bool {
        self.inner.parent.is_none()
    }

    /// Its parent's identity (`None` for the root).
    pub fn parent(&self) -> Option<&Aid> {
        self.inner.parent.as_ref()
    }

    /// The endpoint namespaces it serves.
    pub fn enabled_modules(&self) -> &[String] {
        &self.inner.enabled
    }

    /// Registers `f` to run when the actor ends (tractor's `lifetime_stack`): after its work was
    /// cancelled or finished, before the process exits, newest first. They run however the
    /// actor ends (returned, cancelled by its parent, parent gone, `SIGINT`/`SIGTERM`), except
    /// when it is killed outright (`SIGKILL`).
    pub fn on_teardown(&self, f: impl FnOnce() + 'static) {
        self.inner.teardown.borrow_mut().push(Box::new(f));
    }

    /// Writes `bytes` as they are into the pipe to the parent, bypassing the framing: a test
    /// hook for damaged streams. Does nothing in the root.
    #[doc(hidden)]
    pub fn write_raw_to_parent(&self, bytes: &[u8]) -> std::io::Result<()> {
        let conn = self.inner.parent_conn.borrow().clone();
        match conn {
            Some(c) => c.write_raw(bytes),
            None => Ok(()),
        }
    }
}

/// Runs `root` as a root actor named `name` on a standalone guest run, without the signal
/// watcher or any process-wide set-up: the hostile-peer fuzz target's parent.
#[cfg(any(test, fuzzing))]
pub(crate) fn run_bare_root<T: 'static>(
    name: &str,
    root: impl std::future::Future<Output = crate::Result<T>> + 'static,
) -> crate::Result<T> {
    let actor = Rc::new(ActorInner {
        aid: Aid { name: name.to_owned(), uuid: format!("{name}-uuid"), pid: std::process::id() },
        infected: false,
        parent: None,
        enabled: Vec::new(),
        endpoints: Endpoints::new(),
        teardown: Default::default(),
        parent_conn: Default::default(),
    });
    set_current(Some(actor));
    // On our host rather than `guest::run`'s standalone driver, which leaks a descriptor per run
    // (issue 9, item 2): a fuzzer runs this hundreds of thousands of times in one process.
    let r = crate::host::Host::new().and_then(|h| h.run_guest(root));
    set_current(None);
    r
}

/// Test hooks (hidden): reaping orphans of a killed sub-root; whether the pidfd-less fallback
/// is in use (forced by the test-only environment variable `INFECT_TEST_NO_PIDFD=1`).
#[doc(hidden)]
pub mod testing {
    pub use super::process::pidfd_fallback_in_use;
    pub use super::sys::{reap_nohang, set_child_subreaper};

    /// Makes every later panic in this actor take the `panic = "abort"` path of its panic hook
    /// (report the panic to the parent, then abort), so that unwinding builds can test it.
    pub fn abort_on_panic() {
        super::child::abort_on_panic();
    }
}
