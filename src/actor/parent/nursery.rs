//! [`open_nursery`] and [`ActorNursery`] (tractor's `open_nursery`): start actors, run
//! one-shot actors, and the nursery's exit (see the [parent module docs](super) for the order
//! and the error rules); [`ActorOpts`], how a child is started.

use std::cell::{Cell, RefCell};
use std::ffi::OsString;
use std::fmt;
use std::future::{Future, poll_fn};
use std::path::PathBuf;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use serde::Serialize;

use crate::guest::{self, CancelScope, Nursery};
use crate::wire::{DEFAULT_MAX_FRAME, FuncKind, Msg, SpawnSpec, encode_payload};
use crate::{Error, ErrorGroup, Result};

use super::super::context::STREAM_BUFFER;
use super::super::endpoints::Function;
use super::super::launch::{self, Launched};
use super::super::peer::{MIN_FRAME, MIN_WINDOW, Peer};
use super::super::process;
use super::super::sys::os_err;
use super::super::{ActorInner, current_inner};
use super::portal::{OneShot, Portal};
use super::supervisor::Supervisor;
use super::{ChildActor, reader};

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
    debug_mode: Option<bool>,
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
            debug_mode: None,
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

    /// Runs the child in debug mode, or not (see the [`debug`](crate::debug) module docs for what
    /// debug mode turns on: crash reports on stderr today, `pause()` later). Unset, the child
    /// inherits its parent's mode: debug mode is tree-wide, set at the root with
    /// [`RootOpts::debug_mode`](super::super::RootOpts::debug_mode) (tractor's rule); this
    /// option is for the exception, a child (and so its subtree) that differs.
    pub fn debug_mode(mut self, on: bool) -> ActorOpts {
        // The process that sets it relays its children's terminal lock (its own children's
        // processes do only if their program enables the debug layer, see `debug::enable`).
        super::super::tty_lock::install();
        self.debug_mode = Some(on);
        self
    }

    /// Runs `program` instead of re-executing this binary; it must call
    /// [`actor::main`](crate::actor::main) with endpoints for the enabled namespaces. With a
    /// [`launcher`](Self::launcher) it is the path on the other side (this binary's own path by
    /// default, which must then exist there too).
    pub fn program(mut self, program: impl Into<PathBuf>) -> ActorOpts {
        self.program = Some(program.into());
        self
    }

    /// Starts the child through a launcher: the process run here is `launcher... program
    /// --infect-actor-stdio` ([`LAUNCHED_ARG`](crate::actor::LAUNCHED_ARG)), and the child speaks its
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

/// A nursery of actors (tractor's `ActorNursery`), opened by [`open_nursery`]: start actors in
/// it; it reaps them all.
///
/// - [`start_actor`](Self::start_actor): a long-lived actor serving the namespaces its
///   [`ActorOpts`] enable, called through its [`Portal`] until it is cancelled
///   ([`Portal::cancel_actor`], [`cancel`](Self::cancel), or the nursery's exit).
/// - [`run_in_actor`](Self::run_in_actor): a one-shot actor running one call, whose result the
///   nursery waits for on exit ([`OneShot`]).
///
/// No child outlives the nursery: when it returns, every child process it spawned has ended
/// and been reaped (graceful cancel, then `SIGTERM`, then `SIGKILL`, each bounded by the
/// [`ActorOpts`] timeouts). A failure (the block's, or a `run_in_actor` actor's) cancels the
/// block and every actor (one-cancels-all) and comes out of [`open_nursery`].
///
/// A nursery's bookkeeping runs anywhere [`main`](crate::actor::main) runs, a doctest
/// included; a name the handshake could not carry is refused before anything is spawned:
///
/// ```
/// use infect::actor::{self, ActorOpts, Endpoints, MAX_ACTOR_NAME};
/// use infect::Error;
///
/// let r = actor::run(Endpoints::new(), async {
///     actor::open_nursery(async |an| {
///         let long = "n".repeat(MAX_ACTOR_NAME + 1);
///         let refused = an.start_actor(&long, ActorOpts::new()).await;
///         assert!(matches!(refused, Err(Error::SpawnFailed { source: None, .. })));
///         Ok(an.live_actors())
///     })
///     .await
/// });
/// assert_eq!(r, Ok(Some(0)));
/// ```
///
/// Starting real actors (this runs as `examples/actor_tree.rs`; a doctest binary cannot be
/// re-executed as an actor):
///
/// ```no_run
/// use std::process::ExitCode;
/// use infect::actor::{self, ActorOpts, Endpoints, Function};
///
/// const SQUARE: Function<u64, u64> = Function::new("math", "square");
///
/// fn main() -> ExitCode {
///     let endpoints = Endpoints::new().serve(SQUARE, async |x: u64| Ok(x * x));
///     actor::main(endpoints, async {
///         let out = actor::open_nursery(async |an| {
///             // A long-lived actor, called twice.
///             let worker = an.start_actor("worker", ActorOpts::new().enable_modules(["math"])).await?;
///             assert_eq!(worker.run(SQUARE, &3).await?, 9);
///             assert_eq!(worker.run(SQUARE, &4).await?, 16);
///             // A one-shot actor: its namespace is enabled for it.
///             let once = an.run_in_actor(SQUARE, &5, ActorOpts::new()).await?;
///             assert_eq!(an.live_actors(), 2);
///             once.wait_for_result().await
///         })
///         .await?;
///         // Both actors are reaped here (`worker` by the nursery's exit).
///         assert_eq!(out, Some(25));
///         Ok(())
///     })
/// }
/// ```
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
/// [`main`](crate::actor::main).
///
/// Outside an actor runtime ([`main`](crate::actor::main) / [`run`](crate::actor::run)) it
/// fails with [`Error::NoActorRuntime`]. The result's shape, without actors:
///
/// ```
/// use infect::actor::{self, Endpoints};
/// use infect::{Error, guest};
/// #[derive(Debug)]
/// struct Oops;
/// impl std::fmt::Display for Oops {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("the block failed") }
/// }
/// impl std::error::Error for Oops {}
///
/// let r = actor::run(Endpoints::new(), async {
///     let value = actor::open_nursery(async |_an| Ok("done")).await;
///     let cancelled = actor::open_nursery(async |an| {
///         an.cancel().await?;
///         guest::sleep_forever().await?; // the nursery's own cancel: the block ends here
///         Ok("never")
///     })
///     .await;
///     let failed = actor::open_nursery(async |_an| Err::<(), _>(Error::user(Oops))).await;
///     Ok((value, cancelled, failed.map_err(|e| e.downcast_ref::<Oops>().is_some())))
/// });
/// assert_eq!(r, Ok((Ok(Some("done")), Ok(None), Err(true)))); // the block's own error, by type
/// ```
#[track_caller]
pub fn open_nursery<T, F>(body: F) -> impl Future<Output = Result<Option<T>>>
where
    F: AsyncFnOnce(&ActorNursery) -> Result<T>,
{
    let at = std::panic::Location::caller();
    crate::cx::at_location(at, open_nursery_at(body, at))
}

async fn open_nursery_at<T, F>(body: F, at: &'static std::panic::Location<'static>) -> Result<Option<T>>
where
    F: AsyncFnOnce(&ActorNursery) -> Result<T>,
{
    let me = current_inner().ok_or(Error::NoActorRuntime)?;
    guest::open_nursery_at(
        async |n| {
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
            let interrupt = super::super::signals::interruptible(&scope);
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
        },
        at,
    )
    .await
    // The guest nursery is never cancelled on its own (its scope is not ours to cancel).
    .map(Option::flatten)
}

impl ActorNursery {
    /// Starts a child actor called `name` (tractor's `start_actor`) and returns its portal
    /// once the handshake is done. The actor serves the namespaces `opts` enables until it is
    /// cancelled ([`Portal::cancel_actor`], [`cancel`](Self::cancel), or the nursery's exit).
    ///
    /// Examples on [`ActorNursery`] (a refused name, and real actors).
    pub async fn start_actor(&self, name: &str, opts: ActorOpts) -> Result<Portal> {
        let child = self.spawn_child(name, &opts).await?;
        wait_handshake(&child).await?;
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
            debug_mode: opts.debug_mode.unwrap_or(an.me.debug_mode.get()),
        };
        let spec = Msg::SpawnSpec(spec);
        check_spawnable(name, &spec, opts.max_frame)?;
        let (proc, peer, stderr) = match &an.me.world {
            Some(world) => {
                // A simulated world runs one program, its own way.
                let what = match (&opts.program, opts.launcher.is_empty()) {
                    (Some(p), _) => Some(format!("ActorOpts::program ({}) for actor '{name}'", p.display())),
                    (None, false) => {
                        Some(format!("ActorOpts::launcher ({}) for actor '{name}'", launch::show(&opts.launcher)))
                    }
                    (None, true) => None,
                };
                if let Some(what) = what {
                    return Err(Error::OutsideSimulation { what });
                }
                let (proc, transport) = world.spawn(name)?;
                (proc, Peer::new(transport, opts.max_frame), None)
            }
            None => {
                let program = match &opts.program {
                    Some(p) => p.clone(),
                    None => std::env::current_exe().map_err(|e| os_err("current_exe", e))?,
                };
                let (proc, rx, tx, stderr) = if opts.launcher.is_empty() {
                    let (proc, rx, tx) = process::spawn(&program, name)?;
                    (proc, rx, tx, None)
                } else {
                    let (proc, rx, tx, err) = launch::spawn(&opts.launcher, &program, name)?;
                    (proc, rx, tx, Some(err))
                };
                match Peer::pipe(rx, tx, opts.max_frame) {
                    Ok(c) => (proc, c, stderr),
                    Err(e) => {
                        drop(proc); // kills and reaps
                        return Err(e);
                    }
                }
            }
        };
        let pid = proc.borrow().pid();
        crate::log::info!("actor.spawn", actor = name, pid = pid);
        let sup = Supervisor::new(proc, pid, opts.cancel_timeout, opts.term_timeout, opts.start_timeout);
        let launched = stderr.as_ref().map(|_| Rc::new(Launched::new(launch::show(&opts.launcher))));
        let child = self.new_child(name, peer, sup, opts, launched.clone());
        // The reader, the supervisor and the stderr forwarder are shielded: they must outlive
        // any cancellation of the nursery, so that the child is always read to the end and
        // always reaped.
        an.n.start_soon(shielded(reader(child.clone())))?;
        an.n.start_soon(shielded(super::supervise(child.clone())))?;
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
        let sent = child.peer.send_all(&msgs).await;
        match sent {
            Ok(()) | Err(Error::Closed) => Ok(child),
            Err(e) => Err(e),
        }
    }

    /// The parent's record of a child on `peer`, supervised by `sup` (`launched`: started
    /// through a launcher, its stderr's forwarder state), listed in this nursery.
    fn new_child(
        &self,
        name: &str,
        peer: Peer,
        sup: Supervisor,
        opts: &ActorOpts,
        launched: Option<Rc<Launched>>,
    ) -> Rc<ChildActor> {
        let an = &self.inner;
        let teardown = an.cancelling.get();
        let child = Rc::new(ChildActor::new(name, an.me.clone(), peer, sup, opts.stream_window, teardown, launched));
        an.children.borrow_mut().push(child.clone());
        super::register_child(&child);
        child
    }

    /// Adopts a peer speaking over `transport` as child `name`, with no process of its own (the
    /// hostile-peer fuzz target's fake child, a child served in this process): with `aid` the
    /// handshake is taken as done (so any `Aid` it sends is a second one), without it this
    /// waits for the peer's `Aid`. A stand-in supervisor (`stand_in`) sends it
    /// `Cancel{None}` on teardown and "reaps" it at end-of-file, closing every call with
    /// [`Error::ActorDied`], as the real one does after a child's exit.
    #[cfg(any(test, fuzzing))]
    pub(crate) async fn adopt_peer(
        &self,
        name: &str,
        aid: Option<crate::wire::Aid>,
        transport: Box<dyn crate::actor::peer::Transport>,
        max_frame: usize,
    ) -> Result<Portal> {
        let opts = ActorOpts::new().max_frame(max_frame);
        let peer = Peer::new(transport, opts.max_frame);
        let proc = Rc::new(RefCell::new(process::Proc::detached()?));
        let sup = Supervisor::new(proc, 0, opts.cancel_timeout, opts.term_timeout, opts.start_timeout);
        let child = self.new_child(name, peer, sup, &opts, None);
        let handshake = aid.is_none();
        *child.state.aid.borrow_mut() = aid;
        self.inner.n.start_soon(shielded(reader(child.clone())))?;
        self.inner.n.start_soon(shielded(super::stand_in(child.clone())))?;
        if handshake {
            wait_handshake(&child).await?;
        }
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
    ///
    /// Example on [`ActorNursery`] and [`OneShot`].
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
        child.one_shot.armed.set(true);
        let (cid, slot) = child.begin_call(ns, func, payload, FuncKind::Function).await?;
        let an = self.inner.clone();
        let c = child.clone();
        self.inner.n.start_soon(async move {
            CancelScope::shielded()
                .run(async {
                    let out = c.finish_call(cid, &slot, false).await;
                    // An outcome that only says we cancelled the actor ourselves is no error of
                    // its own.
                    let ours = c.state.teardown_requested.get()
                        && matches!(&out, Err(Error::ContextCancelled { .. } | Error::ActorDied { .. }));
                    if let (Err(e), false) = (&out, ours) {
                        an.fail(e.clone());
                    }
                    *c.one_shot.result.borrow_mut() = Some(out);
                    c.one_shot.ready.set();
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

    /// The number of actors started in this nursery that are not reaped yet (see the
    /// [`ActorNursery`] examples).
    pub fn live_actors(&self) -> usize {
        self.inner.children.borrow().iter().filter(|c| !c.sup.reaped.is_set()).count()
    }

    async fn wait_one_shots(&self) -> Result<()> {
        let mut i = 0;
        loop {
            let next = self.inner.children.borrow().get(i).cloned();
            let Some(c) = next else { return Ok(()) };
            if c.one_shot.armed.get() {
                c.one_shot.ready.wait().await?;
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
            c.sup.reaped.wait().await?;
        }
        Ok(())
    }
}

/// The longest actor name [`ActorNursery::start_actor`] accepts, in bytes: a name travels in
/// the `SpawnSpec`, every `Aid` and every error report, which must fit the smallest frame
/// limit (256 bytes; an error report too long for its frame has its message shortened, never
/// its source).
///
/// Example on [`ActorNursery`].
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

/// Waits for the child's `Aid` (the handshake), or the error it ended with first. A
/// cancellation point.
async fn wait_handshake(child: &ChildActor) -> Result<()> {
    poll_fn(|cx| {
        if child.state.aid.borrow().is_some() {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = child.closed_error() {
            return Poll::Ready(Err(e));
        }
        guest::check_cancel()?;
        child.register_state(cx.waker());
        Poll::Pending
    })
    .await
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
