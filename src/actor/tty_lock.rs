//! The tree's terminal lock (debug mode): one holder at a time, FIFO, owned by the root, its
//! dialog relayed through the parent chain (tractor's `lock_stdio_for_peer`).
//!
//! ```text
//!  actor that pauses        each ancestor on the way                    the root
//!  request() ─ TtyLock{req} ──▶ records "req came from child C" ──▶ ... ──▶ queues req (FIFO)
//!                                                                          front of the queue:
//!  granted  ◀─ TtyGranted{req} ◀── marks C's route granted ◀──── ... ◀─── grants it
//!  (prompt)                          (C's subtree holds the terminal:
//!                                     no SIGTERM/SIGKILL for C, SIGINT ignored)
//!  release() ─ TtyRelease{req, quit} ──▶ drops the route ──▶ ... ──▶ pops it, grants the next;
//!                                                                    with `quit`, interrupts
//!                                                                    the tree (as SIGINT would)
//! ```
//!
//! Invariants:
//! - **One holder.** Only the root grants, only the front of its queue, and only after the
//!   previous holder's release (or its withdrawal: a `TtyRelease` for a request not granted yet
//!   takes it out of the queue).
//! - **Every ancestor knows.** An actor marks the route of a request granted when the grant
//!   passes it on the way down, and drops it when the release passes on the way up; so every
//!   actor between the root and the holder can tell that a child's subtree holds the terminal
//!   ([`held_below`]), and holds back its reaping ladder for that child (it keeps waiting on
//!   the graceful rung instead of climbing to `SIGTERM`/`SIGKILL`) and its `SIGINT` handling
//!   ([`held`]) until the release (tractor's issue #320: a grandchild killed by an ancestor while
//!   paused).
//! - **A dead holder releases.** When a child is reaped, every request that came through it is
//!   released on its behalf ([`child_gone`]), so that its death never leaves the tree locked.
//! - **Late grants are dropped.** A request withdrawn while its grant was on its way down (the
//!   waiting task was cancelled) is not known any more when the grant arrives: the grant is
//!   ignored, and the release that withdrew it frees the lock at the root.
//! - **Linked on use.** The handlers of the lock's state machine are reached only through
//!   [`install`] (called by the debug layer's install, `ActorOpts::debug_mode` and [`acquire`]),
//!   so a program that never enables the debug layer does not link them; a process without
//!   them grants a child's request at once (see [`on_child_lock`]).
//! - State is thread-local to the actor's thread; the handlers here only change it and return
//!   the messages to send ([`Out`]), which the async callers send ([`flush`]), shielded.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use crate::guest::CancelScope;
use crate::sync::Waiters;
use crate::wire::{Msg, TtyReq};
use crate::{Error, Result};

use super::peer::Peer;

/// At most this many requests from one child may be pending here (a subtree has one per paused
/// task): the bound on what a lying child can make its parent hold.
pub(crate) const MAX_PENDING: usize = 256;

/// Where a request came from, in this actor.
enum From {
    /// A task of this actor.
    Local,
    /// A child actor (its uuid) and its connection.
    Child(String, Rc<Peer>),
}

struct Route {
    req: TtyReq,
    from: From,
    /// The grant passed here (on its way down, or to the local task).
    granted: bool,
}

/// A message to send, from a handler.
pub(crate) enum Out {
    /// To this actor's parent.
    Up(Msg),
    /// To a child.
    Down(Rc<Peer>, Msg),
    /// The root: the holder quit, interrupt the tree.
    Quit,
}

#[derive(Default)]
struct Lock {
    /// Root only: the requests in arrival order, the holder first.
    queue: VecDeque<TtyReq>,
    routes: Vec<Route>,
    next: u64,
    is_root: bool,
}

/// What the root does on `quit`, and what `cancel` means in this actor (set by the serving
/// loop and the root's body).
#[derive(Default)]
struct Hooks {
    quit: Option<Rc<dyn Fn()>>,
    cancel_work: Option<Rc<dyn Fn()>>,
}

thread_local! {
    static LOCK: RefCell<Lock> = RefCell::new(Lock::default());
    static HOOKS: RefCell<Hooks> = RefCell::new(Hooks::default());
    /// Woken on every change of the lock's state (local waiters, the supervisors' hold-back).
    static CHANGED: Rc<Waiters> = Rc::new(Waiters::default());
}

fn changed() {
    CHANGED.with(|c| c.clone()).wake_all();
}

fn same(a: &TtyReq, b: &TtyReq) -> bool {
    a.n == b.n && a.who.uuid == b.who.uuid
}

impl Lock {
    fn route(&mut self, req: &TtyReq) -> Option<&mut Route> {
        self.routes.iter_mut().find(|r| same(&r.req, req))
    }

    /// Marks `req` granted here and passes the grant on (down, or to the local task).
    fn grant(&mut self, req: &TtyReq, out: &mut Vec<Out>) {
        let Some(r) = self.route(req) else { return };
        r.granted = true;
        if let From::Child(_, peer) = &r.from {
            out.push(Out::Down(peer.clone(), Msg::TtyGranted { req: req.clone() }));
        }
    }

    /// A new request, from a local task or a child.
    fn enqueue(&mut self, req: TtyReq, from: From, out: &mut Vec<Out>) {
        self.routes.push(Route { req: req.clone(), from, granted: false });
        if self.is_root {
            self.queue.push_back(req.clone());
            if self.queue.len() == 1 {
                self.grant(&req, out);
            }
        } else {
            out.push(Out::Up(Msg::TtyLock { req }));
        }
    }

    /// `req` is released (or withdrawn); its route here is gone already.
    fn release(&mut self, req: TtyReq, quit: bool, out: &mut Vec<Out>) {
        if !self.is_root {
            out.push(Out::Up(Msg::TtyRelease { req, quit }));
            return;
        }
        let was_holder = self.queue.front().is_some_and(|h| same(h, &req));
        self.queue.retain(|q| !same(q, &req));
        if quit {
            out.push(Out::Quit);
        }
        if was_holder && let Some(next) = self.queue.front().cloned() {
            self.grant(&next, out);
        }
    }
}

fn with_lock<R>(f: impl FnOnce(&mut Lock) -> R) -> R {
    let r = LOCK.with(|l| f(&mut l.borrow_mut()));
    changed();
    r
}

/// Makes this thread's lock the root's (it queues and grants) or a child's (it relays up), and
/// forgets every earlier state (a fresh actor).
pub(crate) fn reset(is_root: bool) {
    LOCK.with(|l| *l.borrow_mut() = Lock { is_root, ..Lock::default() });
    HOOKS.with(|h| *h.borrow_mut() = Hooks::default());
}

/// Sets what `quit` does (the root's body: apply its interrupt rule).
pub(crate) fn set_quit(f: Option<Rc<dyn Fn()>>) {
    HOOKS.with(|h| h.borrow_mut().quit = f);
}

/// Sets what the prompt's `cancel` does in this actor (cancel its work).
pub(crate) fn set_cancel_work(f: Option<Rc<dyn Fn()>>) {
    HOOKS.with(|h| h.borrow_mut().cancel_work = f);
}

/// Cancels this actor's work ([`set_cancel_work`]); `false` if nothing is registered.
pub(crate) fn cancel_work() -> bool {
    let f = HOOKS.with(|h| h.borrow().cancel_work.clone());
    f.map(|f| f()).is_some()
}

/// Whether this actor or a member of its subtree holds the terminal.
pub(crate) fn held() -> bool {
    LOCK.with(|l| l.borrow().routes.iter().any(|r| r.granted))
}

/// Whether the subtree of the child with uuid `child` holds the terminal.
pub(crate) fn held_below(child: &str) -> bool {
    LOCK.with(|l| l.borrow().routes.iter().any(|r| r.granted && matches!(&r.from, From::Child(c, _) if c == child)))
}

/// Root only: the names of the actors in the queue, the holder first (empty elsewhere).
pub(crate) fn queue() -> Vec<String> {
    LOCK.with(|l| l.borrow().queue.iter().map(|r| r.who.name.clone()).collect())
}

/// Parks `w` until the lock's state changes (a park at one of infect's awaits).
pub(crate) fn register_change(w: &Waker) {
    CHANGED.with(|c| c.clone()).register(w);
}

/// Waits until neither this actor nor its subtree holds the terminal. A cancellation point.
pub(crate) async fn released() -> Result<()> {
    poll_fn(|cx| {
        if !held() {
            return Poll::Ready(Ok(()));
        }
        crate::guest::check_cancel()?;
        register_change(cx.waker());
        Poll::Pending
    })
    .await
}

fn child_lock_relayed(uuid: &str, peer: &Rc<Peer>, req: TtyReq) -> Handled {
    with_lock(|l| {
        if l.route(&req).is_some() {
            return Err("this terminal lock request is pending already");
        }
        if l.routes.iter().filter(|r| matches!(&r.from, From::Child(c, _) if c == uuid)).count() >= MAX_PENDING {
            return Err("too many terminal lock requests pending from this child");
        }
        let mut out = Vec::new();
        l.enqueue(req, From::Child(uuid.to_owned(), peer.clone()), &mut out);
        Ok(out)
    })
}

fn child_release_relayed(uuid: &str, req: TtyReq, quit: bool) -> Handled {
    with_lock(|l| {
        let i = l.routes.iter().position(|r| same(&r.req, &req) && matches!(&r.from, From::Child(c, _) if c == uuid));
        let Some(i) = i else { return Err("no terminal lock request of this child is pending") };
        l.routes.remove(i);
        let mut out = Vec::new();
        l.release(req, quit, &mut out);
        Ok(out)
    })
}

fn parent_grant_relayed(req: TtyReq) -> Vec<Out> {
    with_lock(|l| {
        let mut out = Vec::new();
        if l.route(&req).is_some_and(|r| !r.granted) {
            l.grant(&req, &mut out);
        }
        out
    })
}

fn child_gone_relayed(uuid: &str) -> Vec<Out> {
    with_lock(|l| {
        let mut out = Vec::new();
        while let Some(i) = l.routes.iter().position(|r| matches!(&r.from, From::Child(c, _) if c == uuid)) {
            let r = l.routes.remove(i);
            l.release(r.req, false, &mut out);
        }
        out
    })
}

/// What a handler of a child's message returns: the messages to send, or `Err(why)` if the
/// message is out of the dialog.
pub(crate) type Handled = core::result::Result<Vec<Out>, &'static str>;

/// The relay's handlers, as the runtime reaches them: only through this, once installed
/// ([`install`]), so that a program that never enables the debug layer does not link the lock's
/// state machine (the dump engine's rule, see `dump::install`).
struct Relay {
    child_lock: fn(&str, &Rc<Peer>, TtyReq) -> Handled,
    child_release: fn(&str, TtyReq, bool) -> Handled,
    parent_grant: fn(TtyReq) -> Vec<Out>,
    child_gone: fn(&str) -> Vec<Out>,
}

static RELAY: std::sync::OnceLock<Relay> = std::sync::OnceLock::new();

/// Enables the relay in this process (idempotent): the debug layer's `install`,
/// `ActorOpts::debug_mode` and [`acquire`] call it.
pub(crate) fn install() {
    RELAY.get_or_init(|| Relay {
        child_lock: child_lock_relayed,
        child_release: child_release_relayed,
        parent_grant: parent_grant_relayed,
        child_gone: child_gone_relayed,
    });
}

/// A `TtyLock` from the child `uuid` on `peer`; `Err(why)` if it is out of the dialog.
///
/// A process without the relay (its program enables the debug layer nowhere in `main`, and
/// debug mode reached it through a parent's `ActorOpts::debug_mode`) grants every request at
/// once: its children's prompts are not serialised with each other nor with the rest of the
/// tree, and it does not hold back its reaping ladder for them.
pub(crate) fn on_child_lock(uuid: &str, peer: &Rc<Peer>, req: TtyReq) -> Handled {
    match RELAY.get() {
        Some(relay) => (relay.child_lock)(uuid, peer, req),
        None => Ok(vec![Out::Down(peer.clone(), Msg::TtyGranted { req })]),
    }
}

/// A `TtyRelease` from the child `uuid`; `Err(why)` if no such request came from it. Without
/// the relay (see [`on_child_lock`]) there is nothing to release, and `quit` interrupts the tree
/// only if this actor is the root.
pub(crate) fn on_child_release(uuid: &str, req: TtyReq, quit: bool) -> Handled {
    match RELAY.get() {
        Some(relay) => (relay.child_release)(uuid, req, quit),
        None => Ok(if quit { vec![Out::Quit] } else { Vec::new() }),
    }
}

/// A `TtyGranted` from the parent: passed on down, or to the local task; ignored if the request
/// is not known any more (it was withdrawn meanwhile), and always without the relay (nothing
/// here asked).
pub(crate) fn on_parent_grant(req: TtyReq) -> Vec<Out> {
    RELAY.get().map_or_else(Vec::new, |relay| (relay.parent_grant)(req))
}

/// The child `uuid` is gone: every request that came through it is released on its behalf.
pub(crate) fn child_gone(uuid: &str) -> Vec<Out> {
    RELAY.get().map_or_else(Vec::new, |relay| (relay.child_gone)(uuid))
}

/// Sends what a handler returned, shielded (a lock message must not be lost to a cancellation);
/// runs the quit hook. A message that cannot be sent (the peer is gone) is dropped: that peer's
/// own end releases on its behalf ([`child_gone`], or its parent-gone ending).
pub(crate) async fn flush(out: Vec<Out>) {
    for o in out {
        let (peer, msg) = match o {
            Out::Up(msg) => (super::current_inner().and_then(|a| a.parent_conn.borrow().clone()), msg),
            Out::Down(peer, msg) => (Some(peer), msg),
            Out::Quit => {
                let f = HOOKS.with(|h| h.borrow().quit.clone());
                if let Some(f) = f {
                    f();
                }
                continue;
            }
        };
        if let Some(peer) = peer {
            // `send_all` as the serve loop sends a call's outcome: one shielded send, one copy.
            let _ = CancelScope::shielded().run(peer.send_all(&[&msg])).await;
        }
    }
}

/// A local task's request for the terminal (see [`acquire`]).
pub(crate) struct Request {
    req: TtyReq,
    done: bool,
}

impl Request {
    /// Releases the lock (or withdraws the request); with `quit`, the root interrupts the tree.
    pub(crate) async fn release(mut self, quit: bool) {
        self.done = true;
        let out = take_local(&self.req, quit);
        flush(out).await;
    }
}

fn take_local(req: &TtyReq, quit: bool) -> Vec<Out> {
    with_lock(|l| {
        let mut out = Vec::new();
        if let Some(i) = l.routes.iter().position(|r| same(&r.req, req) && matches!(r.from, From::Local)) {
            l.routes.remove(i);
            l.release(req.clone(), quit, &mut out);
        }
        out
    })
}

impl Drop for Request {
    /// A request dropped unreleased (its task was dropped): released here, its messages sent
    /// from a detached host task if a host loop runs (an infected actor), otherwise only
    /// forgotten here (the root frees it when this actor ends, [`child_gone`]).
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let out = take_local(&self.req, false);
        if !out.is_empty()
            && let Some(task) = crate::host::spawn(flush(out))
        {
            task.detach();
        }
    }
}

/// Asks for the tree's terminal lock for a task of this actor and waits until it is granted.
/// A cancellation point, on both sides: in a guest task its scope's cancellation, in a host
/// task the task's cancellation ends the wait, and the request is withdrawn first.
pub(crate) async fn acquire() -> Result<Request> {
    install();
    let me = super::current_inner().ok_or(Error::NoActorRuntime)?;
    let (req, out) = with_lock(|l| {
        let req = TtyReq { who: me.aid.clone(), n: l.next };
        l.next += 1;
        let mut out = Vec::new();
        l.enqueue(req.clone(), From::Local, &mut out);
        (req, out)
    });
    let request = Request { req, done: false };
    flush(out).await;
    let granted = || LOCK.with(|l| l.borrow_mut().route(&request.req).is_some_and(|r| r.granted));
    let waited: Result<()> = poll_fn(|cx| {
        if granted() {
            return Poll::Ready(Ok(()));
        }
        crate::guest::check_cancel()?;
        crate::host::check_cancelled()?;
        register_change(cx.waker());
        if granted() { Poll::Ready(Ok(())) } else { Poll::Pending }
    })
    .await;
    match waited {
        Ok(()) => Ok(request),
        Err(e) => {
            request.release(false).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::{
        Out, child_gone, held, held_below, install, on_child_lock, on_child_release, on_parent_grant, queue, reset,
    };
    use crate::actor::peer::Peer;
    use crate::actor::peer::transport::mem_pipe;
    use crate::wire::{Aid, DEFAULT_MAX_FRAME, Msg, TtyReq};

    fn req(name: &str, n: u64) -> TtyReq {
        TtyReq { who: Aid { name: name.into(), uuid: format!("{name}-uuid"), pid: 1 }, n }
    }

    fn peer() -> Rc<Peer> {
        let (a, _b) = mem_pipe();
        Rc::new(Peer::new(Box::new(a), DEFAULT_MAX_FRAME))
    }

    /// What a handler sends, as text: `up:<msg>`, `down:<msg>`, `quit`.
    fn sent(out: Vec<Out>) -> Vec<String> {
        let show = |m: &Msg| match m {
            Msg::TtyLock { req } => format!("TtyLock({}#{})", req.who.name, req.n),
            Msg::TtyGranted { req } => format!("TtyGranted({}#{})", req.who.name, req.n),
            Msg::TtyRelease { req, quit } => format!("TtyRelease({}#{}, quit={quit})", req.who.name, req.n),
            other => other.name().to_owned(),
        };
        out.into_iter()
            .map(|o| match o {
                Out::Up(m) => format!("up:{}", show(&m)),
                Out::Down(_, m) => format!("down:{}", show(&m)),
                Out::Quit => "quit".to_owned(),
            })
            .collect()
    }

    /// The root: FIFO, one holder; a release grants the next; a withdrawal of a waiting request
    /// takes it out of the queue; `quit` comes out as the quit effect; a dead child's requests
    /// are released on its behalf; what a child did not ask is refused.
    #[test]
    fn the_root_queues_in_order_and_grants_one_at_a_time() {
        install();
        reset(true);
        let (a, b) = (peer(), peer());
        assert_eq!(sent(on_child_lock("A", &a, req("x", 0)).unwrap()), ["down:TtyGranted(x#0)"]);
        assert_eq!(sent(on_child_lock("B", &b, req("y", 0)).unwrap()), Vec::<String>::new());
        assert_eq!(sent(on_child_lock("B", &b, req("z", 0)).unwrap()), Vec::<String>::new());
        assert_eq!(queue(), ["x", "y", "z"]);
        assert!(held() && held_below("A") && !held_below("B"));
        assert!(on_child_lock("A", &a, req("x", 0)).is_err(), "a duplicate request is refused");
        assert!(on_child_release("A", req("y", 0), false).is_err(), "y came through B, not A");
        // z withdraws while waiting: nobody is granted anything.
        assert_eq!(sent(on_child_release("B", req("z", 0), false).unwrap()), Vec::<String>::new());
        // The holder releases: the next in line gets it.
        assert_eq!(sent(on_child_release("A", req("x", 0), false).unwrap()), ["down:TtyGranted(y#0)"]);
        assert!(held_below("B") && !held_below("A"));
        // B dies holding it: released on its behalf.
        assert_eq!(sent(child_gone("B")), Vec::<String>::new());
        assert!(!held() && queue().is_empty());
        // quit from the holder.
        assert_eq!(sent(on_child_lock("A", &a, req("x", 1)).unwrap()), ["down:TtyGranted(x#1)"]);
        assert_eq!(sent(on_child_release("A", req("x", 1), true).unwrap()), ["quit"]);
        reset(false);
    }

    /// An actor between the root and the holder: requests and releases go up, the grant comes
    /// down and marks the child's subtree as holding; a grant for a withdrawn request is
    /// dropped.
    #[test]
    fn an_intermediate_actor_relays_and_knows_its_subtree_holds() {
        install();
        reset(false);
        let c = peer();
        assert_eq!(sent(on_child_lock("C", &c, req("leaf", 0)).unwrap()), ["up:TtyLock(leaf#0)"]);
        assert!(!held_below("C"));
        assert_eq!(sent(on_parent_grant(req("leaf", 0))), ["down:TtyGranted(leaf#0)"]);
        assert!(held() && held_below("C"));
        // A second grant of the same request changes nothing.
        assert_eq!(sent(on_parent_grant(req("leaf", 0))), Vec::<String>::new());
        assert_eq!(sent(on_child_release("C", req("leaf", 0), true).unwrap()), ["up:TtyRelease(leaf#0, quit=true)"]);
        assert!(!held());
        // A late grant (the request was withdrawn meanwhile) is dropped.
        assert_eq!(sent(on_parent_grant(req("leaf", 0))), Vec::<String>::new());
        // A child that dies with a request pending: withdrawn upwards on its behalf.
        assert_eq!(sent(on_child_lock("C", &c, req("leaf", 1)).unwrap()), ["up:TtyLock(leaf#1)"]);
        assert_eq!(sent(child_gone("C")), ["up:TtyRelease(leaf#1, quit=false)"]);
        reset(false);
    }
}
