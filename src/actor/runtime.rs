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
//! 4. run the serving loop ([`child::serve`](super::child)) on the guest, or on the host with
//!    the guest riding it if the spec says `infect_host`; reply `Aid` first thing;
//! 5. exit with the serving loop's status (the teardown callbacks ran in it).
//!
//! For the root: route the signals, build the actor `"root"`, run the root future (boxed at
//! the entry), apply the interrupt rule ([`Interrupts`]) to `SIGINT`/`SIGTERM`, run the
//! teardown callbacks, and if the root failed after an interrupt exit with `128 + signo` (130
//! for `SIGINT`) once everything is torn down.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::guest::{self, CancelScope, TaskRef};
use crate::host::Host;
use crate::wire::{
    Aid, DEFAULT_MAX_FRAME, FrameDecoder, Msg, PROTOCOL_MISMATCH_EXIT, PROTOCOL_VERSION, encode_frame_fit,
};
use crate::{Error, Result};

use super::conn::{Conn, os_err, reactor, readable};
use super::process::CHILD_ENV;
use super::{ActorInner, Endpoints, child, launch, set_current, sys};

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
}

impl Default for RootOpts {
    fn default() -> Self {
        RootOpts { name: "root".to_owned(), infect_host: false }
    }
}

impl RootOpts {
    /// The defaults: name `"root"`, not infected.
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
    pub fn infect_host(mut self, infect: bool) -> RootOpts {
        self.infect_host = infect;
        self
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

/// [`main`] with options for the root.
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

/// The signal self-pipe's read end: installed once per process, never closed (the handler may
/// write into its pipe at any time).
pub(crate) fn signal_pipe() -> Result<&'static OwnedFd> {
    static PIPE: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = PIPE.get() {
        return Ok(fd);
    }
    let fd = sys::install_signal_pipe(&[libc::SIGINT, libc::SIGTERM]).map_err(|e| os_err("sigaction", e))?;
    Ok(PIPE.get_or_init(|| fd))
}

/// Reads the signal numbers waiting in the self-pipe (non-blocking), oldest first.
pub(crate) fn take_signals(pipe: &OwnedFd) -> Vec<i32> {
    let mut buf = [0u8; 32];
    let mut out = Vec::new();
    while let Ok(n) = sys::read(pipe.as_fd(), &mut buf) {
        out.extend(buf[..n].iter().map(|&b| i32::from(b)));
        if n < buf.len() {
            break;
        }
    }
    out
}

fn new_uuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}-{nanos:016x}-{n:x}", std::process::id())
}

fn run_root<T: 'static>(opts: RootOpts, endpoints: Endpoints, root: RootFuture<T>) -> Result<T> {
    let sigfd = signal_pipe()?;
    let actor = Rc::new(ActorInner {
        aid: Aid { name: opts.name.clone(), uuid: new_uuid(), pid: std::process::id() },
        infected: opts.infect_host,
        parent: None,
        enabled: Vec::new(),
        endpoints,
        teardown: Default::default(),
        parent_conn: Default::default(),
    });
    set_current(Some(actor.clone()));
    let ints = Rc::new(Interrupts::default());
    INTERRUPTS.with(|i| *i.borrow_mut() = Some(ints.clone()));
    let body = root_body(sigfd, root, ints.clone());
    let r = if opts.infect_host { Host::new().and_then(|h| h.run_guest(body)) } else { guest::run(body) };
    INTERRUPTS.with(|i| *i.borrow_mut() = None);
    actor.run_teardown();
    set_current(None);
    // An interrupted root that fails exits as the interrupt; one that returned a value (it
    // handled the interrupt) returns it.
    if let (Err(_), Some(sig)) = (&r, ints.signal.get()) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(128 + sig);
    }
    r
}

/// What the root's signal watcher reaches on `SIGINT`/`SIGTERM` (root process only).
///
/// The rule (tractor's `KeyboardInterrupt` in the root task): an interrupt cancels every actor
/// nursery open in the root, each tears its actors down and returns
/// [`Error::Interrupted`](crate::Error::Interrupted) to the code that opened it, which may
/// handle it like any error (clean up, return a value) outside any cancelled scope. With no
/// actor nursery open, `Interrupted { signal }` is delivered once to the root's main task (the
/// task running the root future; [`TaskRef::deliver`](crate::guest::TaskRef::deliver)): the
/// next cancellation check there (the first check of every infect await) returns it, or a guest
/// nursery waiting for its children there takes it as its block's error; a second interrupt
/// before it was taken changes nothing, one after is delivered again. A root blocked in foreign
/// futures only gets the delivery's fallback: its scope is cancelled and it ends as
/// `Interrupted`. One delivered and not taken yet when the root's task opens an actor nursery
/// goes to that nursery instead (cancelled before its block starts, it returns `Interrupted`),
/// so that no await of its shielded teardown returns it. An interrupt that arrives after the root future returned is not delivered
/// (it still makes a failed root exit as the interrupt); one delivered but not taken yet when
/// the root future returns (it returned without another await) is raised at the root's exit,
/// as trio does, so that no interrupt is lost. A root that returns a value after an interrupt
/// returns it from [`main`]; one that fails after an interrupt (with `Interrupted` or anything
/// else) makes the process exit with `128 + signo`.
#[derive(Default)]
pub(crate) struct Interrupts {
    /// The first interrupt's signal.
    signal: Cell<Option<i32>>,
    /// The open actor nurseries: id, body scope, the signal that cancelled it.
    nurseries: RefCell<Vec<(u64, CancelScope, Hit)>>,
    next: Cell<u64>,
    /// The task running the root future, which an interrupt with no actor nursery open is
    /// delivered to.
    main: RefCell<Option<TaskRef>>,
}

/// Where the signal that cancelled one actor nursery is recorded.
type Hit = Rc<Cell<Option<i32>>>;

thread_local! {
    static INTERRUPTS: RefCell<Option<Rc<Interrupts>>> = const { RefCell::new(None) };
}

/// An actor nursery of the root, registered so that an interrupt cancels it.
pub(crate) struct Interruptible {
    id: u64,
    hit: Hit,
    all: Rc<Interrupts>,
}

impl Interruptible {
    /// The signal that cancelled this nursery, if one did.
    pub(crate) fn signal(&self) -> Option<i32> {
        self.hit.get()
    }
}

impl Drop for Interruptible {
    fn drop(&mut self) {
        self.all.nurseries.borrow_mut().retain(|(id, _, _)| *id != self.id);
    }
}

/// Registers an actor nursery's body scope with the root's interrupt rule (`None` outside the
/// root process).
pub(crate) fn interruptible(scope: &CancelScope) -> Option<Interruptible> {
    let all = INTERRUPTS.with(|i| i.borrow().clone())?;
    let id = all.next.get();
    all.next.set(id + 1);
    let hit = Rc::new(Cell::new(None));
    // An interrupt delivered to this task and not taken yet now falls under the nursery rule:
    // it cancels this nursery (before its block starts), which returns it, rather than coming
    // out of an await of the nursery's shielded teardown (which must reap every actor).
    match guest::take_delivered() {
        Some(Error::Interrupted { signal }) => {
            hit.set(Some(signal));
            scope.cancel();
        }
        Some(other) => {
            if let Some(task) = TaskRef::current() {
                task.deliver(other, None);
            }
        }
        None => {}
    }
    all.nurseries.borrow_mut().push((id, scope.clone(), hit.clone()));
    Some(Interruptible { id, hit, all })
}

impl Interrupts {
    /// Takes the signals waiting in the pipe and applies the rule to each interrupt.
    fn take(&self, sigfd: &OwnedFd, root: &CancelScope) {
        for sig in take_signals(sigfd) {
            if sig != libc::SIGINT && sig != libc::SIGTERM {
                continue;
            }
            if self.signal.get().is_none() {
                self.signal.set(Some(sig));
            }
            let open: Vec<(CancelScope, Hit)> =
                self.nurseries.borrow().iter().map(|(_, s, h)| (s.clone(), h.clone())).collect();
            // Once the root future has returned there is nothing left to interrupt: the signal
            // only counts for the exit status.
            if open.is_empty() && !root.inner.is_exited() {
                // To the await the root's task is blocked in, once: a second interrupt before
                // that await took the first one changes nothing. A root blocked in foreign
                // futures only (which no check reaches) has its scope cancelled instead.
                let main = self.main.borrow().clone();
                match main {
                    Some(task) => {
                        task.deliver(Error::Interrupted { signal: sig }, Some(root));
                    }
                    None => root.cancel(),
                }
            }
            for (scope, hit) in open {
                if hit.get().is_none() {
                    hit.set(Some(sig));
                }
                scope.cancel();
            }
        }
    }
}

async fn root_body<T: 'static>(sigfd: &'static OwnedFd, root: RootFuture<T>, ints: Rc<Interrupts>) -> Result<T> {
    // The root future runs in this task (the guest run's main task), inside the block below.
    *ints.main.borrow_mut() = TaskRef::current();
    guest::open_nursery(async |n| {
        let scope = CancelScope::new();
        let watch = CancelScope::new();
        let (s, w, i) = (scope.clone(), watch.clone(), ints.clone());
        n.start_soon(async move {
            w.run(async move {
                let r = reactor()?;
                loop {
                    readable(&r, sigfd.as_raw_fd(), true).await?;
                    i.take(sigfd, &s);
                }
            })
            .await
            .map(|_: Option<()>| ())
        })?;
        let r = scope.run(root).await;
        // A signal whose byte the watcher has not read yet still counts (a Ctrl-C to the group
        // can kill a child being spawned, whose death the body may see first): drain the pipe
        // before the watcher is cancelled.
        ints.take(sigfd, &scope);
        watch.cancel();
        match (r, ints.signal.get()) {
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
    let mut decoder = Box::new(FrameDecoder::<DEFAULT_MAX_FRAME>::new());
    let mut buf = vec![0u8; 16 * 1024];
    let ours = protocol_spoken();
    let spec = loop {
        if let Some(item) = decoder.next() {
            match item {
                Ok(Msg::SpawnSpec(spec)) if spec.protocol == ours => break spec,
                // The first frame decides: a parent of another build is refused, clearly.
                other => {
                    let (name, theirs) = match other {
                        Ok(Msg::SpawnSpec(spec)) => (spec.name, format!("protocol {}", spec.protocol)),
                        Ok(m) => (String::new(), format!("a {} message where a SpawnSpec belongs", m.name())),
                        Err(e) => (String::new(), format!("a first frame this build cannot read ({e})")),
                    };
                    refuse_handshake(&tx, &name, ours, &theirs);
                    return Ok(PROTOCOL_MISMATCH_EXIT);
                }
            }
        }
        match sys::read(rx.as_fd(), &mut buf) {
            Ok(0) => return Ok(0), // the parent went away before the handshake
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(os_err("read", e)),
        }
    };
    let actor = Rc::new(ActorInner {
        aid: Aid { name: spec.name.clone(), uuid: new_uuid(), pid: std::process::id() },
        infected: spec.infect_host,
        parent: Some(spec.parent.clone()),
        enabled: spec.enable_modules.clone(),
        endpoints,
        teardown: Default::default(),
        parent_conn: Default::default(),
    });
    set_current(Some(actor.clone()));
    let fut = async move {
        let conn = Rc::new(Conn::new(rx, tx, reactor()?, DEFAULT_MAX_FRAME)?);
        *actor.parent_conn.borrow_mut() = Some(conn.clone());
        let code = child::serve(actor.clone(), conn, decoder, sigfd).await;
        *actor.parent_conn.borrow_mut() = None;
        Ok(code)
    };
    let code = if spec.infect_host { Host::new()?.run_guest(fut)? } else { guest::run(fut)? };
    set_current(None);
    Ok(code)
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
        boxed_type: "ProtocolMismatch".to_owned(),
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

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::{INTERRUPTS, Interrupts, interruptible};
    use crate::Error;
    use crate::guest::{self, CancelScope, GuestConfig, TaskRef};
    use crate::time::VirtualClock;

    /// An interrupt delivered to the root's task and not taken yet when it opens an actor
    /// nursery falls under the nursery rule: the nursery's block scope is cancelled before it
    /// starts and the nursery records the signal; nothing stays for the teardown's awaits.
    #[test]
    fn a_pending_interrupt_goes_to_an_actor_nursery_opened_next() {
        let ints = Rc::new(Interrupts::default());
        INTERRUPTS.with(|i| *i.borrow_mut() = Some(ints.clone()));
        let all = ints.clone();
        let r = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async move {
            let me = TaskRef::current().expect("in a guest task");
            assert!(me.deliver(Error::Interrupted { signal: 2 }, None));
            let scope = CancelScope::new();
            let reg = interruptible(&scope).expect("registered");
            let open = all.nurseries.borrow().len();
            // The delivery was taken over: this await is not interrupted.
            let slept = guest::sleep(std::time::Duration::from_secs(1)).await;
            let out = (reg.signal(), scope.cancel_called(), open, slept);
            drop(reg);
            Ok((out, all.nurseries.borrow().len()))
        });
        INTERRUPTS.with(|i| *i.borrow_mut() = None);
        assert_eq!(r, Ok(((Some(2), true, 1, Ok(())), 0)));
    }
}
