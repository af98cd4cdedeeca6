//! [`main`]: the entry point of every actor process, root or child.
//!
//! In order, for a child (the environment names its pipes, or its last argument is
//! [`LAUNCHED_ARG`](super::LAUNCHED_ARG): it was started through a launcher and its parent is at
//! the other end of its stdin and stdout):
//! 1. adopt the inherited pipe ends (marking them `O_CLOEXEC`), forget the variable, re-check
//!    the parent is alive (the death signal was armed before `exec`); or, launched, move stdin
//!    and stdout above the standard numbers (close-on-exec) and point them at `/dev/null` and
//!    stderr ([`launch`](super::launch));
//! 2. route `SIGINT`/`SIGTERM` into the signal self-pipe;
//! 3. read the `SpawnSpec` (blocking: nothing else runs yet); if it is not a `SpawnSpec` of this
//!    build's [`PROTOCOL_VERSION`], report a `ProtocolMismatch` error to the parent and exit
//!    with [`PROTOCOL_MISMATCH_EXIT`]; build the actor;
//! 4. install the actor's panic hook; run the serving loop ([`child::serve`](super::child)) on
//!    the guest, or on the host with the guest riding it if the spec says `infect_host`; reply
//!    `Aid` first thing;
//! 5. exit with the serving loop's status (the teardown callbacks ran in it).
//!
//! For the root: route the signals, build the actor `"root"`, run the root future (boxed at
//! the entry), apply the interrupt rule ([`Interrupts`]) to `SIGINT`/`SIGTERM`, run the
//! teardown callbacks, and if the root failed after an interrupt exit with `128 + signo` (130
//! for `SIGINT`) once everything is torn down.

use std::future::Future;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::FutureExt;

use crate::guest::{self, CancelScope, TaskRef};
use crate::host::Host;
use crate::wire::{Aid, DEFAULT_MAX_FRAME, Msg, PROTOCOL_MISMATCH_EXIT, PROTOCOL_VERSION, SpawnSpec, encode_frame_fit};
use crate::{Error, Result};

use super::codec;
use super::peer::transport::BlockingRead;
use super::peer::{FrameReader, Incoming, Peer};
use super::process::CHILD_ENV;
use super::signals::{Interrupts, Signals, set_interrupts, signal_pipe};
use super::sys::{self, os_err};
use super::{ActorInner, Endpoints, child, dump, launch, set_current, tty_lock};

/// How the root actor runs.
///
/// ```
/// use infect::actor::{self, Endpoints, RootOpts};
///
/// let opts = RootOpts::new().name("supervisor");
/// let name = actor::run_with(opts, Endpoints::new(), async { Ok(actor::current_actor().name().to_owned()) });
/// assert_eq!(name.unwrap(), "supervisor");
/// ```
#[derive(Debug, Clone)]
pub struct RootOpts {
    name: String,
    infect_host: bool,
    debug_mode: bool,
}

impl Default for RootOpts {
    fn default() -> Self {
        RootOpts { name: "root".to_owned(), infect_host: false, debug_mode: false }
    }
}

impl RootOpts {
    /// The defaults: name `"root"`, not infected, not in debug mode.
    pub fn new() -> RootOpts {
        RootOpts::default()
    }

    /// The root actor's name.
    pub fn name(mut self, name: &str) -> RootOpts {
        name.clone_into(&mut self.name);
        self
    }

    /// Runs the root infected: the host executor as the loop and the root future as a guest
    /// riding it (tractor's `run_as_asyncio_guest`), so the root may use `to_host`.
    ///
    /// ```
    /// use infect::actor::{self, Endpoints, RootOpts};
    /// use infect::{Error, host, to_host};
    /// use std::time::Duration;
    ///
    /// async fn fetch() -> infect::Result<u32> {
    ///     to_host::run_task(async {
    ///         host::sleep(Duration::from_millis(1)).await?;
    ///         Ok(200)
    ///     })
    ///     .await
    /// }
    ///
    /// let infected = actor::run_with(RootOpts::new().infect_host(true), Endpoints::new(), async {
    ///     assert!(actor::current_actor().is_infected());
    ///     fetch().await
    /// });
    /// assert_eq!(infected, Ok(200));
    /// let plain = actor::run(Endpoints::new(), fetch());
    /// assert_eq!(plain, Err(Error::NotInfected));
    /// ```
    pub fn infect_host(mut self, infect: bool) -> RootOpts {
        self.infect_host = infect;
        self
    }

    /// Runs the tree in debug mode (tractor's `debug_mode=True`): tree-wide, set here at the
    /// root and inherited by every child actor whose [`ActorOpts::debug_mode`](super::ActorOpts::debug_mode)
    /// does not say otherwise. What it turns on is listed in the [`debug`](crate::debug) module
    /// docs: crash reports on stderr and [`debug::pause`](crate::debug::pause).
    /// [`debug::is_debug_mode`](crate::debug::is_debug_mode) tells code which mode it runs in.
    ///
    /// ```
    /// use infect::actor::{self, Endpoints, RootOpts};
    /// use infect::debug;
    ///
    /// let on = actor::run_with(RootOpts::new().debug_mode(true), Endpoints::new(), async { Ok(debug::is_debug_mode()) });
    /// assert_eq!(on, Ok(true));
    /// assert!(!debug::is_debug_mode()); // outside an actor runtime
    /// ```
    pub fn debug_mode(mut self, on: bool) -> RootOpts {
        // Every process of the program builds its `RootOpts` in `main`: each has the dump.
        super::dump::install();
        self.debug_mode = on;
        self
    }

    /// `(name, infect_host, debug_mode)`, for a simulated root.
    pub(crate) fn parts(&self) -> (&str, bool, bool) {
        (&self.name, self.infect_host, self.debug_mode)
    }
}

/// Runs this process as an actor: the root, running `root`, or, when the process was spawned as
/// a child actor, a server of `endpoints` (in which case this never returns: the process exits
/// when its parent cancels it or goes away).
///
/// Call it first thing in `main`, before starting threads: a child adopts its inherited pipes
/// and removes one environment variable at start-up. The root returns `root`'s outcome.
///
/// Interrupts (tractor's `KeyboardInterrupt`): `SIGINT` (or `SIGTERM`) in the root cancels
/// every actor nursery open in the root; each tears its actors down and returns
/// [`Error::Interrupted`] (kind `"Interrupted"`) to the code that opened it, which can handle
/// it like any other error: run its own clean-up (its awaits work again, nothing around it is
/// cancelled) or return a value. With no actor nursery open, the interrupt is delivered once
/// to `root`'s own task, as trio raises `KeyboardInterrupt` in the main task: the await it is
/// blocked in (any of infect's, also in a shielded scope) returns `Err(Interrupted)`, and its
/// next awaits work normally; a guest nursery it is waiting in takes it as an error of its
/// block (its children are cancelled, it returns `Interrupted` once they have finished). A
/// `root` blocked in foreign futures only, which no await of infect's reaches, is cancelled
/// instead and ends as `Interrupted`. If `root` then returns a value, `run` returns it; if
/// it fails (the `Interrupted` propagated, or any other error), the process runs its teardown
/// callbacks and exits with status `128 + signo` (130 for `SIGINT`) instead of returning. A
/// second interrupt while the first has not reached an await yet changes nothing; one after a
/// handled interrupt applies the same rule again.
///
/// ```no_run
/// use infect::{Error, actor, guest};
/// use std::time::Duration;
///
/// fn main() -> infect::Result<()> {
///     let v = actor::run(actor::Endpoints::new(), async {
///         match guest::sleep(Duration::from_secs(3600)).await {
///             // Ctrl-C while we sleep: clean up (awaits work) and return a value, exit 0.
///             Err(Error::Interrupted { .. }) => {
///                 guest::sleep(Duration::from_millis(10)).await?;
///                 Ok("interrupted")
///             }
///             r => r.map(|()| "slept"),
///         }
///     })?;
///     println!("{v}");
///     Ok(())
/// }
/// ```
///
/// With actor nurseries:
///
/// ```no_run
/// use infect::actor::{self, ActorOpts, Endpoints};
/// use infect::{Error, guest};
///
/// fn main() -> infect::Result<()> {
///     let saved = actor::run(Endpoints::new(), async {
///         let r = actor::open_nursery(async |an| {
///             let _worker = an.start_actor("worker", ActorOpts::new()).await?;
///             guest::sleep_forever().await
///         })
///         .await;
///         match r {
///             // Ctrl-C: the worker is gone; save what we have and exit 0.
///             Err(Error::Interrupted { .. }) => Ok("saved"),
///             Err(e) => Err(e),
///             Ok(_) => Ok("done"),
///         }
///     })?;
///     println!("{saved}");
///     Ok(())
/// }
/// ```
///
/// `root` may be of any size: it is boxed here, first thing, and only the box is moved on (a
/// future holding a 128 KiB buffer across an await would otherwise be copied through several
/// frames of the main thread's stack).
pub fn run<T: 'static>(endpoints: Endpoints, root: impl Future<Output = Result<T>> + 'static) -> Result<T> {
    let root: RootFuture<T> = Box::pin(root);
    main_boxed(RootOpts::new(), endpoints, root)
}

/// [`run`] with options for the root (`root` is boxed at once, as there).
pub fn run_with<T: 'static>(
    opts: RootOpts,
    endpoints: Endpoints,
    root: impl Future<Output = Result<T>> + 'static,
) -> Result<T> {
    let root: RootFuture<T> = Box::pin(root);
    main_boxed(opts, endpoints, root)
}

/// Runs this process as an actor, for a program's `main`: [`run`], then the error, if any, printed
/// to stderr as `"<program>: <error>"` (its `Display`, the program being the file name this
/// process was started as) and [`ExitCode::FAILURE`]; [`ExitCode::SUCCESS`] if `root`
/// returned `Ok`. As with [`run`], a child actor never returns from it, and a root that fails
/// after an interrupt exits with `128 + signo`.
///
/// ```no_run
/// use std::process::ExitCode;
/// use infect::actor::{self, Endpoints, Function};
///
/// const DOUBLE: Function<u64, u64> = Function::new("math", "double");
///
/// async fn double(x: u64) -> infect::Result<u64> {
///     Ok(2 * x)
/// }
///
/// async fn root() -> infect::Result<()> {
///     // start actors, call DOUBLE through their portals, ...
///     Ok(())
/// }
///
/// fn main() -> ExitCode {
///     actor::main(Endpoints::new().serve(DOUBLE, double), root())
/// }
/// ```
pub fn main(endpoints: Endpoints, root: impl Future<Output = Result<()>> + 'static) -> ExitCode {
    exit_code(run(endpoints, root))
}

/// [`main`] with options for the root. In a root with no children it runs anywhere, a doctest
/// included:
///
/// ```
/// use std::process::ExitCode;
/// use infect::actor::{self, Endpoints, RootOpts};
/// use infect::Error;
///
/// let ok = actor::main_with(RootOpts::new().name("tool"), Endpoints::new(), async { Ok(()) });
/// assert_eq!(ok, ExitCode::SUCCESS);
/// // A failing root: "<program>: I/O error: the config file is missing" on stderr, and a
/// // failure status.
/// let failed = actor::main_with(RootOpts::new(), Endpoints::new(), async {
///     Err(Error::from(std::io::Error::new(std::io::ErrorKind::NotFound, "the config file is missing")))
/// });
/// assert_eq!(failed, ExitCode::FAILURE);
/// ```
pub fn main_with(opts: RootOpts, endpoints: Endpoints, root: impl Future<Output = Result<()>> + 'static) -> ExitCode {
    exit_code(run_with(opts, endpoints, root))
}

/// Prints `"<program>: <error>"` for an error; the exit code of the outcome.
#[inline(never)]
fn exit_code(outcome: Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", sys::program_name());
            ExitCode::FAILURE
        }
    }
}

/// The root's future, boxed at the entry.
type RootFuture<T> = std::pin::Pin<Box<dyn Future<Output = Result<T>>>>;

fn main_boxed<T: 'static>(opts: RootOpts, endpoints: Endpoints, root: RootFuture<T>) -> Result<T> {
    let env = std::env::var(CHILD_ENV).ok();
    if env.is_some() || launch::launched() {
        drop(root);
        sys::remove_env(CHILD_ENV);
        let pipes = match env {
            Some(spec) => inherited_pipes(&spec),
            None => launch::take_stdio().map(Some),
        };
        let code = match pipes.and_then(|p| p.map_or(Ok(0), |(rx, tx)| run_child(rx, tx, endpoints))) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("infect actor child: {e}");
                70
            }
        };
        std::process::exit(code);
    }
    run_root(opts, endpoints, root)
}

fn new_uuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}-{nanos:016x}-{n:x}", std::process::id())
}

fn run_root<T: 'static>(opts: RootOpts, endpoints: Endpoints, root: RootFuture<T>) -> Result<T> {
    crate::log::enter_span!("actor", name = opts.name.as_str());
    let signals = Signals::Pipe(signal_pipe()?);
    let aid = Aid { name: opts.name.clone(), uuid: new_uuid(), pid: std::process::id() };
    let actor = ActorInner::new(aid, opts.infect_host, None, Vec::new(), endpoints);
    actor.set_debug_mode(opts.debug_mode);
    set_current(Some(actor.clone()));
    tty_lock::reset(true);
    let ints = Rc::new(Interrupts::default());
    set_interrupts(Some(ints.clone()));
    let body = root_body(signals, root, ints.clone());
    let r = if opts.infect_host { Host::new().and_then(|h| h.run_guest(body)) } else { guest::run(body) };
    set_interrupts(None);
    actor.run_teardown();
    set_current(None);
    // An interrupted root that fails exits as the interrupt; one that returned a value (it
    // handled the interrupt) returns it.
    if let (Err(_), Some(sig)) = (&r, ints.signal()) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(128 + sig);
    }
    r
}

/// The root's main task: `root` under the interrupt rule `ints`, fed by `signals`.
pub(crate) async fn root_body<T: 'static>(
    signals: Signals,
    root: impl Future<Output = Result<T>>,
    ints: Rc<Interrupts>,
) -> Result<T> {
    // The root future runs in this task (the guest run's main task), inside the block below.
    ints.set_main(TaskRef::current());
    guest::open_nursery(async |n| {
        let scope = CancelScope::new();
        let watch = CancelScope::new();
        let (s, w, i, sig) = (scope.clone(), watch.clone(), ints.clone(), signals.clone());
        n.start_soon(async move {
            w.run(async move {
                // The dumps `SIGUSR1` asks for run beside the watcher, inside its scope.
                guest::open_nursery(async |dumps| {
                    loop {
                        sig.wait().await?;
                        if i.take(&sig, &s) {
                            dumps.start_soon(dump::print_tree())?;
                        }
                    }
                })
                .await
            })
            .await
            .map(|_: Option<Option<()>>| ())
        })?;
        // Debug mode: the prompt's `quit` interrupts the tree as Ctrl-C would; its `cancel`
        // (in the root) cancels the root's work.
        let (q, qs) = (ints.clone(), scope.clone());
        tty_lock::set_quit(Some(Rc::new(move || q.interrupt(libc::SIGINT, &qs))));
        let cs = scope.clone();
        tty_lock::set_cancel_work(Some(Rc::new(move || cs.cancel())));
        let r = scope.run(root).await;
        if let Err(e) = &r {
            // Debug mode: the root's own crash report, the last hop.
            dump::report_crash("the root", e).await;
        }
        tty_lock::reset(true);
        // A signal whose byte the watcher has not read yet still counts (a Ctrl-C to the group
        // can kill a child being spawned, whose death the body may see first): drain the pipe
        // before the watcher is cancelled.
        let _dump_asked_too_late = ints.take(&signals, &scope);
        watch.cancel();
        match (r, ints.signal()) {
            (Ok(Some(v)), _) => Ok(v),
            (Ok(None), Some(signal)) => Err(Error::Interrupted { signal }),
            (Ok(None), None) => Err(Error::Cancelled),
            (Err(e), _) => Err(e),
        }
    })
    .await
    // The guest nursery's own cancellation (`Ok(None)`) keeps its old meaning here.
    .and_then(|v| v.ok_or(Error::Cancelled))
}

fn parse_child_env(spec: &str) -> Option<(RawFd, RawFd, u32)> {
    let mut it = spec.split(',');
    let rx = it.next()?.parse().ok()?;
    let tx = it.next()?.parse().ok()?;
    let ppid = it.next()?.parse().ok()?;
    Some((rx, tx, ppid))
}

/// The pipes named by `CHILD_ENV` (`env` is its value), adopted; `None` if the parent is
/// already gone.
fn inherited_pipes(env: &str) -> Result<Option<(OwnedFd, OwnedFd)>> {
    let (rx, tx, ppid) =
        parse_child_env(env).ok_or_else(|| Error::BadActorEnv { var: CHILD_ENV.into(), value: env.into() })?;
    let rx = sys::adopt_inherited(rx).map_err(|e| os_err("adopting the parent pipe", e))?;
    let tx = sys::adopt_inherited(tx).map_err(|e| os_err("adopting the parent pipe", e))?;
    Ok(sys::parent_alive(ppid).then_some((rx, tx)))
}

/// The protocol version this process claims in its handshake: [`PROTOCOL_VERSION`], unless a
/// test made it pretend otherwise ([`pretend_protocol`]); 0 means "not set".
static PRETENDED: AtomicU32 = AtomicU32::new(0);

/// Makes this process, as a child, claim protocol `version` (a test of the mismatch path).
pub(crate) fn pretend_protocol(version: u32) {
    PRETENDED.store(version, Ordering::Relaxed);
}

fn protocol_spoken() -> u32 {
    match PRETENDED.load(Ordering::Relaxed) {
        0 => PROTOCOL_VERSION,
        v => v,
    }
}

/// The child's life on its parent pipes; returns its exit status.
fn run_child(rx: OwnedFd, tx: OwnedFd, endpoints: Endpoints) -> Result<i32> {
    let sigfd = signal_pipe()?;

    // The handshake's first half, blocking: nothing else can happen before we know who we are.
    // The connection's own reader, on a blocking read end (so it is never pending); it keeps
    // whatever the parent sent after the spec for the serving loop.
    let mut reader = FrameReader::new(DEFAULT_MAX_FRAME);
    let ours = protocol_spoken();
    let blocking = BlockingRead(rx.as_fd());
    let next = reader.next(&blocking, false).now_or_never().expect("a blocking read is never pending");
    let item = match next? {
        Incoming::Frame(item) => item,
        Incoming::End(_) => return Ok(0), // the parent went away before the handshake
    };
    let spec = match spawn_spec(item, ours) {
        Ok(spec) => spec,
        // The first frame decides: a parent of another build is refused, clearly.
        Err((name, theirs)) => {
            refuse_handshake(&tx, &name, ours, &theirs);
            return Ok(PROTOCOL_MISMATCH_EXIT);
        }
    };
    let aid = Aid { name: spec.name.clone(), uuid: new_uuid(), pid: std::process::id() };
    let actor = Rc::new(child_actor(&spec, aid, endpoints));
    set_current(Some(actor.clone()));
    tty_lock::reset(false);
    crate::log::enter_span!("actor", name = spec.name.as_str());
    child::install_panic_hook();
    let fut = async move {
        let conn = Rc::new(Peer::pipe(rx, tx, DEFAULT_MAX_FRAME)?);
        Ok(serve_parent(actor, conn, reader, Some(Signals::Pipe(sigfd))).await)
    };
    crate::log::enter_span!("serve", parent = spec.parent.name.as_str());
    let code = if spec.infect_host { Host::new()?.run_guest(fut)? } else { guest::run(fut)? };
    crate::log::info!("actor.exit", code = code);
    set_current(None);
    Ok(code)
}

/// The child's first frame, which must be a `SpawnSpec` of protocol `ours`; otherwise the
/// name it gave (if any) and what came instead, for the refusal.
pub(crate) fn spawn_spec(
    item: std::result::Result<Msg, crate::wire::WireError>,
    ours: u32,
) -> std::result::Result<SpawnSpec, (String, String)> {
    match item {
        Ok(Msg::SpawnSpec(spec)) if spec.protocol == ours => Ok(spec),
        Ok(Msg::SpawnSpec(spec)) => Err((spec.name, format!("protocol {}", spec.protocol))),
        Ok(m) => Err((String::new(), format!("a {} message where a SpawnSpec belongs", m.name()))),
        Err(e) => Err((String::new(), format!("a first frame this build cannot read ({e})"))),
    }
}

/// The child actor `spec` describes, identified as `aid`, serving `endpoints` (unshared: a
/// simulated world gives it its world first, see [`ActorInner::unshared`]).
pub(crate) fn child_actor(spec: &SpawnSpec, aid: Aid, endpoints: Endpoints) -> ActorInner {
    let actor =
        ActorInner::unshared(aid, spec.infect_host, Some(spec.parent.clone()), spec.enable_modules.clone(), endpoints);
    actor.set_debug_mode(spec.debug_mode);
    actor
}

/// A child's life once it knows who it is: serves its parent on `conn` (`reader` holds what
/// came after the `SpawnSpec`) until the end; returns its exit status.
pub(crate) async fn serve_parent(
    actor: Rc<ActorInner>,
    conn: Rc<Peer>,
    reader: FrameReader,
    signals: Option<Signals>,
) -> i32 {
    *actor.parent_conn.borrow_mut() = Some(conn.clone());
    let code = child::serve(actor.clone(), conn, reader, signals).await;
    *actor.parent_conn.borrow_mut() = None;
    code
}

/// Refuses the handshake: tells the parent (one `Msg::Error` of kind `ProtocolMismatch`,
/// written as it is, blocking) and our stderr (which a launcher relays) which protocols met.
fn refuse_handshake(tx: &OwnedFd, name: &str, ours: u32, theirs: &str) {
    let message = format!(
        "the program {} ({}, infect {}) speaks actor protocol {ours}, its parent sent {theirs}",
        std::env::args().next().unwrap_or_default(),
        if name.is_empty() { "an actor child".to_owned() } else { format!("actor '{name}'") },
        env!("CARGO_PKG_VERSION"),
    );
    eprintln!("infect actor child: protocol mismatch: {message}");
    let report = Msg::Error {
        cid: None,
        src: Aid { name: name.to_owned(), uuid: new_uuid(), pid: std::process::id() },
        boxed_type: codec::PROTOCOL_MISMATCH.to_owned(),
        message,
        relay_path: Vec::new(),
        canceller: None,
    };
    if let Ok(frame) = encode_frame_fit(&report, DEFAULT_MAX_FRAME) {
        let mut left: &[u8] = &frame;
        while !left.is_empty() {
            match sys::write(tx.as_fd(), left) {
                Ok(n) => left = &left[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
}

/// What makes an actor "the current one" on this thread: the actor, its registry of live child
/// processes, (the root only) its interrupt rule, and what the debug dump lists of it (its
/// child records, the calls it serves, its linked pairs). A process has one, set once by
/// [`main`]; a simulated world ([`sim`](crate::sim)) keeps one per actor and swaps it in around
/// each of that actor's steps ([`swap_context`]). The terminal lock of `debug::pause` stays
/// per thread: in a simulation `pause` fails before it takes the lock.
#[derive(Default)]
pub(crate) struct ActorContext {
    pub(crate) actor: Option<Rc<ActorInner>>,
    live: super::process::Live,
    pub(crate) interrupts: Option<Rc<Interrupts>>,
    children: super::parent::LiveChildren,
    serving: Option<dump::ServingCalls>,
    links: crate::to_host::LinkRegistry,
}

/// Swaps this thread's actor context with `cx` (call it again to swap back).
pub(crate) fn swap_context(cx: &mut ActorContext) {
    let actor = cx.actor.take();
    cx.actor = super::current_inner();
    super::set_current(actor);
    super::process::swap_live(&mut cx.live);
    super::parent::swap_live_children(&mut cx.children);
    dump::swap_serving(&mut cx.serving);
    crate::to_host::swap_links(&mut cx.links);
    let ints = cx.interrupts.take();
    cx.interrupts = super::signals::current_interrupts();
    set_interrupts(ints);
}
