//! The serving side of an actor: reads its parent's frames, runs calls as tasks, answers.
//!
//! Life cycle of a child actor, each step with where it happens:
//!
//! ```text
//!  (1) reply Aid      (2) serve                 (3) ending                  (4) drain      (5) exit
//! ───────────────▶ Serving ──────────────▶ Ending{ParentCancel | ParentGone | Signal} ──▶ Drained ──▶
//!                     │  Start → task            every call's scope cancelled,
//!                     │  Cancel{cid} → cancel    each call answers ContextCancelled
//! ```
//! 1. [`serve`] sends `Aid` before reading anything else.
//! 2. `read_loop`: one reader; a `Start` is checked (namespace enabled, function known, kind,
//!    arguments decode) and answered with `Error`, or runs as a task of the serving nursery in
//!    its own cancel scope and is answered with `StartAck` and its outcome, in one write. `Cancel{cid}` cancels that scope, recording the
//!    parent as canceller.
//! 3. `Cancel{None}` (the parent's `cancel_actor`), end-of-file on the parent pipe (parent gone)
//!    or a signal (`SIGINT`/`SIGTERM`) ends the reading and cancels every call; a call cancelled
//!    this way reports `ContextCancelled` with the canceller: the parent for `Cancel`, this actor
//!    for a signal or a vanished parent.
//! 4. The calls drain (each sends its outcome). For a vanished parent or `SIGTERM` this is
//!    bounded by [`PARENT_GONE_GRACE`](super::PARENT_GONE_GRACE); past it, or on a second
//!    `SIGTERM`/`SIGINT` while ending, the actor exits at once: it kills and reaps its own
//!    children, runs its teardown callbacks and exits.
//!
//! In debug mode the serve loop also passes the terminal lock's grants down (`TtyGranted`, to
//! this actor's paused task or the child it leads to; [`tty_lock`](super::tty_lock)), and while
//! this actor or its subtree holds the terminal it ignores `SIGINT` and its grace period does
//! not end in a hard exit (it waits for the release).
//!
//! 5. Teardown callbacks run; after `Cancel{None}` the actor sends `CancelAck{None}`; the exit
//!    status is 0 (cancelled by the parent, parent gone) or `128 + signo` (a signal).

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::rc::Rc;
use std::task::Poll;

use crate::guest::{self, CancelScope, Nursery};
use crate::sync::{VecMap, Waiters};
use crate::wire::{Cid, DEFAULT_MAX_FRAME, FuncKind, Msg, WireError};
use crate::{Error, Result};

use super::codec;
use super::context::{CallEntry, Context, STREAM_BUFFER};
use super::endpoints::{CallFuture, Endpoint};
use super::peer::{CallSlot, FrameReader, Incoming, MIN_FRAME, MIN_WINDOW, Peer};
use super::signals::Signals;
use super::{ActorInner, PARENT_GONE_GRACE, dump, process, tty_lock};

/// Why the actor stops serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// `Cancel{None}` from the parent.
    ParentCancel,
    /// End-of-file on the parent pipe (or it failed).
    ParentGone,
    /// `SIGINT` or `SIGTERM`.
    Signal(i32),
}

struct Serve {
    actor: Rc<ActorInner>,
    /// The connection to the parent; its call table holds the inboxes of the contexts being
    /// served (the parent's `Yield`s, `Stop`s and `Credit`s go there).
    conn: Rc<Peer>,
    calls: RefCell<VecMap<Cid, Rc<CallEntry>>>,
    /// Woken when a call ends (for the drain).
    drained: Waiters,
    ending: Cell<Option<Ending>>,
    /// Stops the reader.
    read_scope: CancelScope,
    /// The stream window of the contexts served (`Msg::StreamWindow`).
    window: Cell<usize>,
    /// The background tasks (signal watcher, grace timer), cancelled once drained.
    background: RefCell<Vec<CancelScope>>,
}

impl Serve {
    fn parent_name(&self) -> String {
        self.actor.parent.as_ref().map_or_else(String::new, |p| p.name.clone())
    }

    /// Ends serving (first reason wins) and cancels every call with `canceller`.
    fn end(&self, why: Ending, canceller: &str) {
        if self.ending.get().is_none() {
            self.ending.set(Some(why));
        }
        self.read_scope.cancel();
        for entry in self.calls.borrow().values() {
            entry.canceller.borrow_mut().get_or_insert_with(|| canceller.to_owned());
            entry.scope.cancel();
        }
    }

    fn spawn_background(self: &Rc<Self>, n: &Nursery, fut: impl Future<Output = Result<()>> + 'static) {
        let scope = CancelScope::new();
        let mut background = self.background.borrow_mut();
        // Those that ended (a dump answered, say) need no cancelling any more.
        background.retain(|s| !s.inner.is_exited());
        background.push(scope.clone());
        drop(background);
        let _ = n.start_soon(async move { scope.run(fut).await.map(drop) });
    }

    async fn send(&self, msg: &Msg) {
        // A parent that is gone cannot be told anything; the ending path handles it.
        let _ = self.conn.send(msg).await;
    }
}

/// Serves the parent until it cancels us, goes away, or a signal ends us; returns the exit
/// status. Sends `Aid` first. `reader` may hold what the parent sent after its `SpawnSpec`;
/// without a signal pipe (`sigfd: None`, an actor served in its parent's process) no signal
/// ends it. The process's panic hook is its caller's to install ([`install_panic_hook`]).
pub(crate) async fn serve(actor: Rc<ActorInner>, conn: Rc<Peer>, reader: FrameReader, signals: Option<Signals>) -> i32 {
    let s = Rc::new(Serve {
        actor: actor.clone(),
        conn,
        calls: RefCell::new(VecMap::default()),
        drained: Waiters::default(),
        ending: Cell::new(None),
        read_scope: CancelScope::new(),
        window: Cell::new(STREAM_BUFFER),
        background: RefCell::new(Vec::new()),
    });
    s.send(&Msg::Aid(actor.aid.clone())).await;
    // The prompt's `cancel` (debug mode): every call this actor serves, as if cancelled by us.
    let weak = Rc::downgrade(&s);
    tty_lock::set_cancel_work(Some(Rc::new(move || {
        if let Some(s) = weak.upgrade() {
            let me = s.actor.aid.name.clone();
            for entry in s.calls.borrow().values() {
                entry.canceller.borrow_mut().get_or_insert_with(|| me.clone());
                entry.scope.cancel();
            }
        }
    })));
    let weak = Rc::downgrade(&s);
    dump::set_serving(Some(Box::new(move || {
        let Some(s) = weak.upgrade() else { return Vec::new() };
        s.calls.borrow().iter().map(|(cid, e)| (*cid, e.what.clone())).collect()
    })));
    let s2 = s.clone();
    let _ = guest::open_nursery(async |n| {
        let s = s2;
        if let Some(signals) = signals {
            let watcher = s.clone();
            let nursery = n.clone();
            s.spawn_background(n, async move { watch_signals(watcher, nursery, signals).await });
        }
        let read = s.read_scope.run(read_loop(&s, n, reader)).await;
        if !matches!(read, Ok(None)) && s.ending.get().is_none() {
            // The reader ended by itself: end-of-file or a broken pipe.
            s.ending.set(Some(Ending::ParentGone));
        }
        let me = s.actor.aid.name.clone();
        match s.ending.get() {
            Some(Ending::ParentCancel) => s.end(Ending::ParentCancel, &s.parent_name()),
            Some(why) => {
                s.end(why, &me);
                if why != Ending::Signal(libc::SIGINT) {
                    arm_grace(&s, n);
                }
            }
            None => s.end(Ending::ParentGone, &me),
        }
        // Drain: wait until every call has sent its outcome.
        poll_fn(|cx| {
            if s.calls.borrow().is_empty() {
                Poll::Ready(())
            } else {
                // An uncancellable wait at one of infect's awaits (`register` notes the park):
                // a cancelled scope must not take it for a foreign future and drop it.
                s.drained.register(cx.waker());
                Poll::Pending
            }
        })
        .await;
        for scope in s.background.borrow().iter() {
            scope.cancel();
        }
        Ok(())
    })
    .await;
    tty_lock::set_cancel_work(None);
    dump::set_serving(None);
    actor.run_teardown();
    match s.ending.get() {
        Some(Ending::ParentCancel) => {
            s.send(&Msg::CancelAck { cid: None }).await;
            0
        }
        Some(Ending::Signal(sig)) => 128 + sig,
        _ => 0,
    }
}

/// Past the grace period the actor exits at once.
fn arm_grace(s: &Rc<Serve>, n: &Nursery) {
    let s2 = s.clone();
    s.spawn_background(n, async move {
        guest::sleep(PARENT_GONE_GRACE).await?;
        // Debug mode: not while a prompt of this actor or of its subtree is open.
        tty_lock::released().await?;
        hard_exit(&s2).await
    });
}

/// Exits now: kill and reap our children, run the teardown callbacks, exit. In a process this
/// never returns; in a simulated world the world drops the actor's run once this step ends, so
/// it waits for that.
async fn hard_exit(s: &Serve) -> Result<()> {
    process::kill_all_children();
    s.actor.run_teardown();
    let code = match s.ending.get() {
        Some(Ending::Signal(sig)) => 128 + sig,
        _ => 0,
    };
    match &s.actor.world {
        Some(world) => {
            world.exit_now(code);
            // Uncancellable: nothing of this actor runs after this step.
            poll_fn(|cx| {
                s.drained.register(cx.waker());
                Poll::<Result<()>>::Pending
            })
            .await
        }
        None => std::process::exit(code),
    }
}

async fn watch_signals(s: Rc<Serve>, n: Nursery, signals: Signals) -> Result<()> {
    loop {
        signals.wait().await?;
        for sig in signals.take() {
            if sig == libc::SIGUSR1 {
                s.spawn_background(&n, dump::print_tree());
                continue;
            }
            if sig != libc::SIGINT && sig != libc::SIGTERM {
                continue;
            }
            // Debug mode: while this actor or its subtree holds the terminal, Ctrl-C is the
            // prompt's, never the tree's.
            if sig == libc::SIGINT && tty_lock::held() {
                continue;
            }
            if s.ending.get().is_some() {
                // Asked again while ending: no more patience.
                if sig == libc::SIGTERM || matches!(s.ending.get(), Some(Ending::Signal(_))) {
                    return hard_exit(&s).await;
                }
                continue;
            }
            let me = s.actor.aid.name.clone();
            s.end(Ending::Signal(sig), &me);
            if sig == libc::SIGTERM {
                arm_grace(&s, &n);
            }
        }
    }
}

async fn read_loop(s: &Rc<Serve>, n: &Nursery, mut reader: FrameReader) -> Result<()> {
    loop {
        match crate::cx::at(reader.next(s.conn.transport(), true)).await? {
            Incoming::Frame(Ok(msg)) => {
                if dispatch(s, n, msg, &mut reader).await {
                    return Ok(());
                }
            }
            Incoming::Frame(Err(w)) => report_wire_error(s, w).await,
            // The parent is gone; a torn last frame is of no interest to anyone now.
            Incoming::End(_) => {
                s.ending.set(Some(Ending::ParentGone));
                return Ok(());
            }
        }
    }
}

async fn report_wire_error(s: &Serve, w: WireError) {
    let msg = codec::encode(None, &Error::Wire(w), &s.actor.aid);
    s.send(&msg).await;
}

/// Handles one message from the parent; `true` when serving ends.
async fn dispatch(s: &Rc<Serve>, n: &Nursery, msg: Msg, reader: &mut FrameReader) -> bool {
    match msg {
        Msg::Start { cid, .. } if s.calls.borrow().contains_key(&cid) => {
            refuse(s, "Start", "a call with this id is still running").await;
        }
        Msg::Start { cid, ns, func, args, kind } => start_call(s, n, cid, &ns, &func, &args, kind).await,
        Msg::Yield { cid, .. } | Msg::Stop { cid } | Msg::Credit { cid, .. } => {
            // Stream traffic for a context that already ended is of no interest to anyone.
            let slot = s.conn.call(cid);
            let name = msg.name();
            if let Some(Err(why)) = slot.map(|slot| slot.deliver(msg)) {
                refuse(s, name, why).await;
            }
        }

        Msg::Cancel { cid: Some(cid) } => {
            let entry = s.calls.borrow().get(&cid).cloned();
            s.send(&Msg::CancelAck { cid: Some(cid) }).await;
            if let Some(entry) = entry {
                entry.canceller.borrow_mut().get_or_insert_with(|| s.parent_name());
                entry.scope.cancel();
            }
        }
        Msg::Cancel { cid: None } => {
            s.ending.set(Some(Ending::ParentCancel));
            return true;
        }
        // The parent's frame limit for this actor: both directions use it from now on.
        Msg::FrameLimit { max } => {
            let max = (max as usize).clamp(MIN_FRAME, DEFAULT_MAX_FRAME);
            s.conn.set_max_frame(max);
            reader.set_limit(max);
        }
        // The parent's stream window for this actor: the contexts opened from now on use it.
        Msg::StreamWindow { items } => s.window.set((items as usize).max(MIN_WINDOW)),
        // Debug mode: the terminal lock was granted to us or to someone below us.
        Msg::TtyGranted { req } => tty_lock::flush(tty_lock::on_parent_grant(req)).await,
        // The parent asks for our subtree's dump: answered by a task of its own, so that serving
        // goes on meanwhile (its wait for our children is bounded by the request).
        Msg::DumpRequest { id, wait_ms } => {
            let s2 = s.clone();
            s.spawn_background(n, async move {
                let reply = dump::reply(id, wait_ms, s2.conn.max_frame()).await?;
                s2.send(&reply).await;
                Ok(())
            });
        }
        // The parent reports a bad frame of ours, or ends a call we do not have: nothing to do.
        Msg::Error { .. } => {}
        other => refuse(s, other.name(), "a child actor does not expect this from its parent").await,
    }
    false
}

/// Reports a message from the parent that is out of the dialog (it was not acted on).
async fn refuse(s: &Serve, msg: &str, why: &str) {
    let e = Error::UnexpectedMessage { peer: s.parent_name(), msg: msg.to_owned(), why: why.to_owned() };
    s.send(&codec::encode(None, &e, &s.actor.aid)).await;
}

async fn start_call(s: &Rc<Serve>, n: &Nursery, cid: Cid, ns: &str, func: &str, args: &[u8], kind: FuncKind) {
    let entry =
        Rc::new(CallEntry { scope: CancelScope::new(), canceller: RefCell::new(None), what: format!("{ns}.{func}") });
    let mut ctx: Option<(Context, Rc<CallSlot>)> = None;
    let prepared: Result<CallFuture> = (|| {
        let endpoint = s.actor.endpoints.lookup(&s.actor.enabled, &s.actor.aid.name, ns, func)?;
        if endpoint.kind() != kind {
            return Err(Error::WrongFunctionKind {
                func: format!("{ns}.{func}"),
                is: format!("{:?}", endpoint.kind()),
                called: format!("{kind:?}"),
            });
        }
        match endpoint {
            Endpoint::Function(f) => f(args),
            Endpoint::Context(f) => {
                let slot = Rc::new(CallSlot::new(s.window.get()));
                let c = Context::callee(s.conn.clone(), entry.clone(), cid, slot.clone(), s.actor.aid.name.clone());
                ctx = Some((c.clone(), slot));
                f(c, args)
            }
        }
    })();
    let fut = match prepared {
        Ok(fut) => fut,
        Err(e) => {
            s.send(&codec::encode(Some(cid), &e, &s.actor.aid)).await;
            return;
        }
    };
    // A plain function's `StartAck` travels in the same write as its outcome (the caller
    // needs nothing from it earlier), which saves a write and a wake-up per call; a context's
    // with its `Started` (or its outcome, if it ends before that).
    s.calls.borrow_mut().insert(cid, entry.clone());
    if let Some((_, slot)) = &ctx {
        s.conn.accept_call(cid, slot.clone());
    }
    let ctx = ctx.map(|(c, _)| c);
    let s2 = s.clone();
    let started = n.start_soon(async move {
        let s = s2;
        // A panic in the endpoint ends this call with `Error::Panic`; the actor keeps serving.
        let out = entry.scope.run(crate::panic::catch(fut)).await;
        let msg = match out {
            Ok(Some(_)) if ctx.as_ref().is_some_and(|c| !c.is_started()) => {
                codec::encode(Some(cid), &Error::NotStarted { ctx: entry.what.clone() }, &s.actor.aid)
            }
            Ok(Some(value)) => Msg::Return { cid, value },
            Ok(None) | Err(Error::Cancelled) => {
                let canceller = entry.canceller.borrow().clone().unwrap_or_else(|| s.actor.aid.name.clone());
                codec::cancelled(cid, &entry.what, &s.actor.aid, canceller)
            }
            Err(e) => {
                // Debug mode: this hop's crash report, before the error leaves for the parent.
                dump::report_crash(&format!("endpoint {}", entry.what), &e).await;
                codec::encode(Some(cid), &e, &s.actor.aid)
            }
        };
        // The outcome is sent whatever cancels us meanwhile.
        let ack = Msg::StartAck { cid, functype: kind };
        let with_ack = ctx.as_ref().is_none_or(Context::take_ack);
        let send = |msg: Msg| {
            let s = &s;
            let ack = &ack;
            async move {
                let msgs: &[&Msg] = if with_ack { &[ack, &msg] } else { &[&msg] };
                CancelScope::shielded().run(s.conn.send_all(msgs)).await
            }
        };
        if let Err(Error::Wire(w)) = send(msg).await {
            // The result does not fit in a frame: say so instead.
            let _ = send(codec::encode(Some(cid), &Error::Wire(w), &s.actor.aid)).await;
        }
        s.calls.borrow_mut().remove(&cid);
        s.conn.forget_call(cid);
        s.drained.wake_all();
        Ok(())
    });
    if started.is_err() {
        s.calls.borrow_mut().remove(&cid);
    }
}

thread_local! {
    /// Test switch: make the panic hook behave as under `panic = "abort"` (report, then abort).
    static ABORT_ON_PANIC: Cell<bool> = const { Cell::new(false) };
}

/// Makes every later panic in this actor take the `panic = "abort"` path of its hook: report the
/// panic to the parent, then `std::process::abort()` (a test hook for unwinding builds).
pub(crate) fn abort_on_panic() {
    ABORT_ON_PANIC.with(|a| a.set(true));
}

/// Installs the actor's panic hook (once per process), chained before the hook that was there
/// (the default one prints the panic to stderr, as always):
/// - it records the panic's location, so that a panic caught at a task boundary
///   ([`crate::panic::catch`]) arrives with `file:line:col`;
/// - under `panic = "abort"` nothing unwinds and the process dies right after the hook, so the
///   hook first writes the panic to the parent as `Msg::Error { cid: None, boxed_type: "Panic" }`
///   (one frame, preceded by a delimiter in case a frame of ours is half-written, shortened to
///   the frame limit; written directly to the pipe, it waits only for room in it). The parent
///   keeps it, and the `ActorDied` of the abort that follows carries it.
///
/// A hook of the program's own, set later without chaining to this one, turns both off.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            crate::panic::note(info);
            let aborting = cfg!(panic = "abort") || ABORT_ON_PANIC.with(Cell::get);
            if aborting {
                report_panic(info);
            }
            prev(info);
            if aborting {
                std::process::abort();
            }
        }));
    });
}

/// Writes the panic to the parent, bypassing the connection's lock (the process is about to die).
fn report_panic(info: &std::panic::PanicHookInfo<'_>) {
    let Some(actor) = super::current_inner() else { return };
    let Some(conn) = actor.parent_conn.try_borrow().ok().and_then(|c| c.clone()) else { return };
    let msg = codec::encode(None, &crate::panic::hook_error(info), &actor.aid);
    let Ok(frame) = crate::wire::encode_frame_fit(&msg, conn.max_frame()) else { return };
    let mut bytes = Vec::with_capacity(frame.len() + 1);
    bytes.push(0);
    bytes.extend_from_slice(&frame);
    let _ = conn.write_raw(&bytes);
}
