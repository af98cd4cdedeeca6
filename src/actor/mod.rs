//! The actor tree (std): actors are processes, each running the guest runtime (or, infected,
//! the host executor with the guest riding it), talking postcard/COBS frames over pipes.
//!
//! A binary declares typed handles on its endpoints ([`Function`], [`ContextFn`]), registers
//! them with their handlers in [`Endpoints`] and calls [`main`] (or [`run`], which returns the
//! root's `Result`). In the root process `main` runs the
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
//! # Which entry point
//!
//! | the program | its `main` |
//! |---|---|
//! | starts actors (child processes), or is one | `fn main() -> ExitCode { actor::main(endpoints, root()) }` ([`main`]): the error, if any, printed as `"<program>: <error>"`, the exit code set |
//! | the same, with the root's value or error in hand (it formats its own errors, or a `harness = false` test binary) | [`run`], returning `Result<T>` |
//! | the same, the root named otherwise or infected (the root itself uses [`to_host`](crate::to_host)) | [`main_with`] / [`run_with`] with [`RootOpts`] |
//! | one process, structured concurrency only | [`guest::run`](crate::guest::run) (or `guest::run_with`: a virtual clock, a trace, a seed) |
//! | one process, guest tasks driving host tasks | [`Host::run_guest`](crate::host::Host::run_guest) |
//!
//! Call [`main`] (or [`run`]) once, first thing in the program's `main` on its main thread,
//! before it starts threads: a child actor is this same binary re-executed (or the program
//! [`ActorOpts::program`] names, which must do the same), and in a child `main` never returns:
//! it serves `endpoints` until its parent cancels it or goes away, then exits the process.
//! In the root it runs `root` and returns. Everything in this module needs it around:
//! [`open_nursery`] outside it fails with [`Error::NoActorRuntime`](crate::Error::NoActorRuntime).
//!
//! A test harness or a doctest binary is no actor binary (re-executed, it would run the
//! harness, not serve), so the examples that start actors are marked `no_run` here and run as
//! the programs in `examples/` (`actor_tree`, `context_supervision`, `run_task`,
//! `subscribe_fanout`, `infected_echo_server`, `error_across_boundaries`, `remote_actor`;
//! `cargo run --example actor_tree`) and in `tests/actors.rs` (`harness = false`). What needs
//! no child runs anywhere, a doctest included:
//!
//! ```
//! use infect::actor::{self, Endpoints};
//!
//! let (me, root, actors) = actor::run(Endpoints::new(), async {
//!     let me = actor::current_actor();
//!     let live = actor::open_nursery(async |an| Ok(an.live_actors())).await?;
//!     Ok((me.name().to_owned(), me.is_root(), live))
//! })?;
//! assert_eq!((me.as_str(), root, actors), ("root", true, Some(0)));
//!
//! // Outside `run`, there is no actor runtime.
//! let outside = infect::guest::run(async { actor::open_nursery(async |_an| Ok(())).await });
//! assert_eq!(outside, Err(infect::Error::NoActorRuntime));
//! # Ok::<(), infect::Error>(())
//! ```
//!
//! # The message dialog
//!
//! ```text
//! parent (Portal side)                                 child (serving side)
//!  spawn: pipes on fds named by INFECT_ACTOR_PIPE ──▶  adopts them (O_CLOEXEC), death signal armed
//!   (or `launcher... program --infect-actor-stdio`:   takes its stdin/stdout as the pipes, see
//!    the launcher's stdin/stdout are the pipes)        ActorOpts::launcher
//!  SpawnSpec{protocol, parent, name, enable_modules, infect, debug} ──▶  checks the protocol version,
//!                                                       builds its actor, picks its loop
//!                       ◀── Error{ProtocolMismatch}, exit 76   (another build: refuses instead)
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
//!  (debug mode: the terminal lock of `debug::pause`, relayed up to the root and back down)
//!                       ◀── TtyLock{req}                  req (this child or one below it) asks
//!  TtyGranted{req} (when the root's queue says so) ─▶  passed down to whoever asked
//!                       ◀── TtyRelease{req, quit}         released (or withdrawn); the parent
//!                                                       relays it up, the root grants the next
//! ```
//!
//! # Inside, one way
//!
//! ```text
//! sys → process → codec → peer → world → tty_lock → launch → context → endpoints → signals → parent → child → runtime
//! ```
//!
//! `sys` holds the system calls; `process` spawns a child (directly, or a launcher with the
//! child's command line) and waits on its pidfd; `codec` is the `Msg::Error` ↔
//! [`Error`](crate::Error) codec (every kind string the layer reads spelled once); `peer` is the
//! connection, the same on both sides: a transport seam (a pipe pair on the reactor's
//! `AsyncFd`s; a launcher's stdin/stdout are such a pair; an in-memory pair in a simulation and
//! the tests), the
//! one frame reader, the frame writer and the call table; `world` is the seam to a simulated
//! world ([`sim`](crate::sim)): an actor that lives in one asks it, not the operating system,
//! for a child (a simulated process and an in-memory connection) and for an immediate exit,
//! and takes its signals from it; `launch` is what a launcher adds (the
//! child's command line, a launched child's stdio taken as its pipes, the stderr forwarder and
//! the errors of a launch that failed); [`context`] builds
//! contexts and streams on a connection; `endpoints` is the registry; `signals` the signal
//! self-pipe (or a simulated world's signal queue) and the root's interrupt rule; `parent` the nursery, the portal and the supervisor
//! (the ladder and the reaping); `child` the serve loop; `runtime` is [`main`]; `tty_lock` is
//! the tree's terminal lock of debug mode (the root's FIFO queue, relayed through the parent
//! chain; [`debug::pause`](crate::debug::pause) takes it, the parent side relays it and holds
//! back its ladder meanwhile). Each module uses
//! only those before it (a unit test reads their `use` lines and keeps it so).
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
//! - **One connection per parent and child, read by one reader.** Both sides speak through the
//!   same connection type: every frame is read by its one frame reader, in the order written,
//!   and written whole under its write lock (frames never interleave; a send is cancellable only
//!   before its first byte). Whatever the transport, the connection and the dialog above it are
//!   the same.
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
//! - **Launchers.** A child started through [`ActorOpts::launcher`] (ssh, srun, `kubectl exec`)
//!   is the same dialog over the launcher's stdin and stdout; the launcher is the process this
//!   side spawns, supervises and reaps (the ladder applies to it, the graceful cancel reaches
//!   the remote child through the pipe first), and the remote child's only tie to us is its
//!   stdin: its end-of-file is "parent gone". The launcher's stderr is forwarded to ours and
//!   its last line quoted in the errors ([`Error::LaunchFailed`](crate::Error::LaunchFailed),
//!   [`Error::ProtocolMismatch`](crate::Error::ProtocolMismatch), `ActorDied::stderr`). A
//!   terminal's Ctrl-C reaches the local launcher too (it is in the tree's process group): ssh
//!   exits on it, and the remote child ends as "parent gone".
//! - Process-wide state (the current actor, the signal pipe, the registry of live children) is
//!   thread-local to the thread that called [`main`]; an actor is single-threaded.
//!
//! # Example
//!
//! `examples/actor_tree.rs` is a complete program; in short:
//!
//! ```no_run
//! use std::process::ExitCode;
//! use infect::actor::{self, ActorOpts, Endpoints, Function};
//!
//! /// Declared once, used at both ends: registration and call.
//! const DOUBLE: Function<u64, u64> = Function::new("math", "double");
//!
//! async fn double(x: u64) -> infect::Result<u64> {
//!     Ok(2 * x)
//! }
//!
//! fn main() -> ExitCode {
//!     actor::main(Endpoints::new().serve(DOUBLE, double), async {
//!         actor::open_nursery(async |an| {
//!             let portal = an.start_actor("doubler", ActorOpts::new().enable_modules(["math"])).await?;
//!             let four = portal.run(DOUBLE, &2).await?;
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
pub(crate) mod dump;
mod endpoints;
mod launch;
mod parent;
pub(crate) mod peer;
mod process;
mod runtime;
pub(crate) mod signals;
mod sys;
pub(crate) mod tty_lock;
pub(crate) mod world;

/// What the simulated world ([`sim`](crate::sim)) uses of this layer.
pub(crate) mod for_sim {
    pub(crate) use super::ActorInner;
    pub(crate) use super::RootOpts;
    pub(crate) use super::peer::{FrameReader, Incoming, MemTransport, Peer, Transport, mem_pipe};
    pub(crate) use super::process::{Simulated, simulated};
    pub(crate) use super::runtime::{ActorContext, child_actor, root_body, serve_parent, spawn_spec, swap_context};
    pub(crate) use super::signals::{Interrupts, SignalQueue, Signals};
    pub(crate) use super::world::{Spawned, World};
}

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

pub use crate::error::RemoteActorError;
pub use context::{BroadcastReceiver, Context, MsgStream, STREAM_BUFFER};
pub use endpoints::{ContextFn, ContextHandler, Endpoints, Function, FunctionHandler, ServedBy};
pub use launch::LAUNCHED_ARG;
pub use parent::{
    ActorNursery, ActorOpts, DEFAULT_START_TIMEOUT, MAX_ACTOR_NAME, OneShot, Portal, RECENT_ERRORS, open_nursery,
};
pub use runtime::{RootOpts, main, main_with, run, run_with};

use crate::wire::Aid;

/// How long an actor whose parent is gone (end-of-file on its pipe, or `SIGTERM`) lets its work
/// unwind before it kills its own children and exits anyway.
pub const PARENT_GONE_GRACE: Duration = Duration::from_millis(700);

/// The state of the actor this process is.
pub(crate) struct ActorInner {
    aid: Aid,
    infected: bool,
    /// Debug mode ([`ActorOpts::debug_mode`], [`RootOpts::debug_mode`]): tree-wide, set at the
    /// root, inherited by every child whose options do not say otherwise (set by the runtime
    /// right after [`ActorInner::new`]).
    debug_mode: std::cell::Cell<bool>,
    parent: Option<Aid>,
    /// The namespaces this actor serves (empty for the root).
    enabled: Vec<String>,
    endpoints: Endpoints,
    /// Teardown callbacks, run last-in first-out when the actor ends.
    teardown: RefCell<Vec<Box<dyn FnOnce()>>>,
    /// The pipe to the parent (children only, once serving), for [`Actor::write_raw_to_parent`].
    parent_conn: RefCell<Option<Rc<peer::Peer>>>,
    /// The simulated world this actor lives in ([`sim`](crate::sim)); `None` for a process.
    world: Option<Rc<dyn world::World>>,
}

impl ActorInner {
    /// An actor of a process: `aid`, infected or not, its parent (`None` for the root), the
    /// namespaces it serves, its endpoints.
    pub(crate) fn new(
        aid: Aid,
        infected: bool,
        parent: Option<Aid>,
        enabled: Vec<String>,
        endpoints: Endpoints,
    ) -> Rc<ActorInner> {
        Rc::new(ActorInner::unshared(aid, infected, parent, enabled, endpoints))
    }

    /// [`ActorInner::new`] before it is shared: a simulated world gives it its world
    /// ([`ActorInner::in_world`]) first.
    ///
    /// The world is not a parameter of `new` on purpose: a `None` there leaves the vtable half
    /// of the `Option<Rc<dyn World>>` undefined, and LLVM fills it with the one vtable it knows
    /// (the simulated world's), which then links the whole simulation into every binary.
    pub(crate) fn unshared(
        aid: Aid,
        infected: bool,
        parent: Option<Aid>,
        enabled: Vec<String>,
        endpoints: Endpoints,
    ) -> ActorInner {
        ActorInner {
            aid,
            infected,
            parent,
            enabled,
            endpoints,
            teardown: Default::default(),
            parent_conn: Default::default(),
            world: None,
            debug_mode: Default::default(),
        }
    }

    /// This actor living in the simulated `world` (see [`ActorInner::unshared`]).
    pub(crate) fn in_world(mut self, world: Rc<dyn world::World>) -> Rc<ActorInner> {
        self.world = Some(world);
        Rc::new(self)
    }

    /// Sets debug mode (the root's from its `RootOpts`, a child's from its `SpawnSpec`).
    pub(crate) fn set_debug_mode(&self, on: bool) {
        self.debug_mode.set(on);
    }

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

/// Whether the current actor runs in debug mode; `false` outside an actor runtime.
pub(crate) fn current_debug_mode() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|a| a.debug_mode.get()))
}

/// A handle to the actor this process is (tractor's `current_actor()`), from
/// [`current_actor`] or [`try_current_actor`] inside [`main`] / [`run`].
///
/// ```
/// use infect::actor::{self, Endpoints, RootOpts};
/// use std::{cell::RefCell, rc::Rc};
///
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let l = log.clone();
/// actor::run_with(RootOpts::new().name("boss"), Endpoints::new(), async move {
///     let me = actor::current_actor();
///     assert_eq!(me.name(), "boss");
///     assert!(me.is_root() && me.parent().is_none());
///     assert!(!me.is_infected());
///     assert_eq!(me.aid().pid, std::process::id());
///     assert!(me.enabled_modules().is_empty()); // the root serves nothing
///     let (a, b) = (l.clone(), l.clone());
///     me.on_teardown(move || a.borrow_mut().push("registered first"));
///     me.on_teardown(move || b.borrow_mut().push("registered second"));
///     l.borrow_mut().push("root done");
///     Ok(())
/// })?;
/// // Teardown callbacks run when the actor ends, newest first.
/// assert_eq!(*log.borrow(), ["root done", "registered second", "registered first"]);
/// # Ok::<(), infect::Error>(())
/// ```
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
///
/// Example on [`Actor`].
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
    ///
    /// Example on [`Actor`].
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
    let aid = Aid { name: name.to_owned(), uuid: format!("{name}-uuid"), pid: std::process::id() };
    let actor = ActorInner::new(aid, false, None, Vec::new(), Endpoints::new());
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

    /// Makes this process, when it starts as a child actor, claim actor protocol `version`
    /// instead of [`PROTOCOL_VERSION`](crate::wire::PROTOCOL_VERSION) in its handshake (call it
    /// before [`main`](super::main)): a stand-in for a program of another build.
    pub fn pretend_protocol(version: u32) {
        super::runtime::pretend_protocol(version);
    }

    /// Makes every later panic in this actor take the `panic = "abort"` path of its panic hook
    /// (report the panic to the parent, then abort), so that unwinding builds can test it.
    pub fn abort_on_panic() {
        super::child::abort_on_panic();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::peer::transport::mem_pipe;
    use super::peer::{FrameReader, Peer};
    use super::{ActorInner, Context, ContextFn, Endpoints, Function, child};
    use crate::wire::{Aid, DEFAULT_MAX_FRAME};
    use crate::{Error, guest};

    const DOUBLE: Function<u64, u64> = Function::new("math", "double");
    const FAIL: Function<(), ()> = Function::new("math", "fail");
    const COUNT: ContextFn<u32, String, u32> = ContextFn::new("math", "count");

    async fn double(x: u64) -> crate::Result<u64> {
        Ok(2 * x)
    }

    async fn fail(_: ()) -> crate::Result<()> {
        Err(Error::NotStarted { ctx: "from the child".into() })
    }

    async fn count(ctx: Context, upto: u32) -> crate::Result<u32> {
        ctx.started(&"counting").await?;
        ctx.open_stream(async |s| {
            for i in 0..upto {
                s.send(&i).await?;
            }
            Ok(())
        })
        .await?;
        Ok(upto)
    }

    /// A parent's connection against a child's serve loop in one process, over the in-memory
    /// transport: the handshake, a call, a remote error by kind, a context with its stream,
    /// and the graceful cancel (`Cancel{None}`, `CancelAck{None}`, the child's exit status 0),
    /// with nothing refused or damaged on the way.
    #[test]
    fn a_parent_connection_drives_a_child_serve_loop_in_memory() {
        let code = Rc::new(Cell::new(None));
        let code2 = code.clone();
        let r = super::run_bare_root("parent", async move {
            let (up, down) = mem_pipe();
            let me = super::current_inner().expect("the root");
            let kid = ActorInner::new(
                Aid { name: "kid".into(), uuid: "kid-uuid".into(), pid: 2 },
                false,
                Some(me.aid.clone()),
                vec!["math".into()],
                Endpoints::new().serve(DOUBLE, double).serve(FAIL, fail).serve(COUNT, count),
            );
            guest::open_nursery(async |n| {
                let peer = Rc::new(Peer::new(Box::new(down), DEFAULT_MAX_FRAME));
                n.start_soon(async move {
                    code2.set(Some(child::serve(kid, peer, FrameReader::new(DEFAULT_MAX_FRAME), None).await));
                    Ok(())
                })?;
                let out = super::open_nursery(async |an| {
                    let p = an.adopt_peer("kid", None, Box::new(up), DEFAULT_MAX_FRAME).await?;
                    assert_eq!(p.aid().map(|a| a.name), Some("kid".to_owned()));
                    let four = p.run(DOUBLE, &2).await?;
                    let failed = p.run(FAIL, &()).await;
                    let kind = match failed {
                        Err(Error::RemoteActor(r)) => (r.boxed_type.clone(), r.src.name.clone()),
                        other => panic!("{other:?}"),
                    };
                    let (sum, ret) = p
                        .open_context(COUNT, &4, async |ctx, first| {
                            assert_eq!(first, "counting");
                            let sum = ctx
                                .open_stream(async |s| {
                                    let mut sum = 0;
                                    while let Some(i) = s.try_next::<u32>().await? {
                                        sum += i;
                                    }
                                    Ok(sum)
                                })
                                .await?;
                            Ok((sum, ctx.wait_for_result::<u32>().await?))
                        })
                        .await?;
                    let graceful = p.cancel_actor().await?;
                    let clean = (p.protocol_error_count(), p.wire_error_count(), p.peer_error_count());
                    Ok((four, kind, sum, ret, graceful, clean))
                })
                .await?;
                Ok(out)
            })
            .await
        });
        let got = r.expect("the tree ends cleanly").flatten();
        assert_eq!(got, Some((4, ("NotStarted".to_owned(), "kid".to_owned()), 6, 4, true, (0, 0, 0))));
        assert_eq!(code.get(), Some(0), "the child's exit status after the parent's cancel");
    }
}

/// The module graph inside `actor/` is one way: every `super::` or `crate::actor::` path in a
/// module names only modules before it in the order written at the top of this file (and in
/// `peer/` and `parent/`). The hubs (`mod.rs` files) declare and re-export; their own items
/// (`ActorInner`, `ChildActor`) sit between the modules they use and those that use them, which
/// this check does not follow.
#[cfg(test)]
mod graph {
    use std::path::{Path, PathBuf};

    /// Each directory's modules, in their one-way order.
    const ORDER: &[(&str, &[&str])] = &[
        (
            "",
            &[
                "sys",
                "process",
                "codec",
                "peer",
                "world",
                "tty_lock",
                "launch",
                "context",
                "endpoints",
                "signals",
                "parent",
                "dump",
                "child",
                "runtime",
            ],
        ),
        ("peer", &["transport", "calls"]),
        ("parent", &["supervisor", "portal", "nursery"]),
    ];

    fn order_of(dir: &[String]) -> &'static [&'static str] {
        let key = dir.join("/");
        ORDER.iter().find(|(d, _)| *d == key).map_or(&[], |(_, o)| o)
    }

    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("src/actor") {
            let p = e.expect("an entry").path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// The module path of a file under `src/actor` (`parent/mod.rs` is `["parent"]`).
    fn module_of(root: &Path, file: &Path) -> Vec<String> {
        let rel = file.strip_prefix(root).expect("under src/actor");
        let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        let last = parts.pop().expect("a file name");
        if last != "mod.rs" {
            parts.push(last.trim_end_matches(".rs").to_owned());
        }
        parts
    }

    /// The modules a piece of code names: `(level, name)`, `level` the depth of the directory
    /// the named module is in. Follows `super::` chains, `crate::actor::`, and one `{a, b}`
    /// group after them.
    fn edges(me: &[String], code: &str) -> Vec<(usize, String)> {
        let ident = |s: &str| s.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
        let names = |tail: &str| -> Vec<String> {
            match tail.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or("").split(',').map(ident).collect(),
                None => vec![ident(tail)],
            }
        };
        let mut out = Vec::new();
        let mut rest = code;
        while let Some(i) = rest.find("super::") {
            let mut tail = &rest[i..];
            let mut ups = 0;
            while let Some(t) = tail.strip_prefix("super::") {
                ups += 1;
                tail = t;
            }
            if ups <= me.len() {
                out.extend(names(tail).into_iter().map(|n| (me.len() - ups, n)));
            }
            rest = tail;
        }
        let mut rest = code;
        while let Some(i) = rest.find("crate::actor::") {
            let tail = &rest[i + "crate::actor::".len()..];
            out.extend(names(tail).into_iter().map(|n| (0, n)));
            rest = tail;
        }
        out
    }

    /// The uses in `code` (of module `me`) against the order.
    fn against_order(me: &[String], code: &str) -> (usize, Vec<String>) {
        let (mut checked, mut wrong) = (0, Vec::new());
        for (level, name) in edges(me, code) {
            let order = order_of(&me[..level]);
            let (Some(to), Some(from)) = (
                order.iter().position(|m| *m == name),
                me.get(level).and_then(|own| order.iter().position(|m| m == own)),
            ) else {
                continue;
            };
            checked += 1;
            if to >= from {
                wrong.push(format!("{} uses {name}", me.join("/")));
            }
        }
        (checked, wrong)
    }

    #[test]
    fn the_actor_modules_use_each_other_one_way() {
        // The check itself: a use against the order is seen, grouped or not.
        let calls = ["peer".to_owned(), "calls".to_owned()];
        assert_eq!(against_order(&calls, "use super::super::{codec, context::X};").1, ["peer/calls uses context"]);
        assert_eq!(against_order(&calls, "use super::transport::T;"), (1, vec![]));

        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/actor");
        let mut all = Vec::new();
        files(&root, &mut all);
        all.sort();
        let (mut checked, mut wrong) = (0, Vec::new());
        for file in &all {
            let me = module_of(&root, file);
            let text = std::fs::read_to_string(file).expect("readable");
            // Test modules (at the end of a file) may reach anywhere.
            let code: Vec<&str> = text
                .split("#[cfg(test)]\nmod ")
                .next()
                .unwrap_or("")
                .lines()
                .map(str::trim)
                .filter(|l| !l.starts_with("//"))
                .collect();
            let (n, w) = against_order(&me, &code.join(" "));
            checked += n;
            wrong.extend(w);
        }
        assert!(wrong.is_empty(), "uses against the order:\n{}", wrong.join("\n"));
        assert!(checked >= 30, "only {checked} edges seen: is the check still reading the files?");
    }
}
