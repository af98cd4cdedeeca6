//! Signals as data: the `SIGINT`/`SIGTERM` self-pipe every actor watches, and the root's
//! interrupt rule ([`Interrupts`]) that decides where an interrupt goes.
//!
//! Invariants:
//! - The handlers only write the signal's number into a self-pipe (one byte, async-signal-safe);
//!   the loop reads it like any descriptor, so no thread and no work runs in a handler.
//! - The pipe is installed once per process and never closed: a handler may write into it at
//!   any time.
//! - Process-wide state here ([`Interrupts`]) is thread-local to the thread that called
//!   [`main`](super::main).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::OnceLock;
use std::task::Poll;

use crate::guest::{self, CancelScope, TaskRef, check_cancel};
use crate::reactor::Reactor;
use crate::sync::Waiters;
use crate::{Error, Result};

use super::sys::{self, os_err};
use super::tty_lock;

/// Where an actor's `SIGINT`/`SIGTERM` come from: the process's self-pipe, or, in a
/// simulation ([`sim`](crate::sim)), a queue the simulated world raises them into.
#[derive(Clone)]
pub(crate) enum Signals {
    Pipe(&'static OwnedFd),
    Queue(Rc<SignalQueue>),
}

/// The signals raised into a simulated actor, oldest first, and the task waiting for them.
#[derive(Default)]
pub(crate) struct SignalQueue {
    raised: RefCell<Vec<i32>>,
    waiter: Waiters,
}

impl SignalQueue {
    /// Raises `sig` (as a handler writing its number into the self-pipe would).
    pub(crate) fn raise(&self, sig: i32) {
        self.raised.borrow_mut().push(sig);
        self.waiter.wake_all();
    }
}

impl Signals {
    /// Waits until a signal may be waiting. A cancellation point.
    pub(crate) async fn wait(&self) -> Result<()> {
        match self {
            Signals::Pipe(fd) => readable(&super::peer::reactor()?, fd).await,
            Signals::Queue(q) => {
                poll_fn(|cx| {
                    check_cancel()?;
                    if q.raised.borrow().is_empty() {
                        q.waiter.register(cx.waker());
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(()))
                })
                .await
            }
        }
    }

    /// The signals waiting (without waiting), oldest first.
    pub(crate) fn take(&self) -> Vec<i32> {
        match self {
            Signals::Pipe(fd) => take_signals(fd),
            Signals::Queue(q) => std::mem::take(&mut *q.raised.borrow_mut()),
        }
    }
}

/// Waits until the signal pipe `fd` is readable. A cancellation point.
#[track_caller]
pub(crate) fn readable(reactor: &Reactor, fd: &OwnedFd) -> impl Future<Output = Result<()>> {
    crate::cx::at(async move {
        let mut ready = reactor.readable(fd.as_raw_fd());
        poll_fn(move |cx| {
            check_cancel()?;
            Pin::new(&mut ready).poll(cx).map_err(|e| os_err("poll", e))
        })
        .await
    })
}

/// The signal self-pipe's read end, once installed.
static PIPE: OnceLock<OwnedFd> = OnceLock::new();

/// The signal self-pipe's read end: installed once per process, never closed (the handler may
/// write into its pipe at any time).
pub(crate) fn signal_pipe() -> Result<&'static OwnedFd> {
    if let Some(fd) = PIPE.get() {
        return Ok(fd);
    }
    let fd =
        sys::install_signal_pipe(&[libc::SIGINT, libc::SIGTERM, libc::SIGUSR1]).map_err(|e| os_err("sigaction", e))?;
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

/// Forgets the `SIGINT`s that wait in the signal pipe (debug mode: they came while this actor or
/// its subtree held the terminal, and belong to the prompt, never to the tree: the holder calls
/// it before it releases, each ancestor as the release passes it, since its signal watcher may
/// not have read them yet); any other signal read on the way is raised again, not lost.
/// Nothing if this process has no signal pipe (an actor served in its parent's process).
pub(crate) fn drop_pending_interrupts() {
    let Some(pipe) = PIPE.get() else { return };
    for sig in take_signals(pipe) {
        if sig != libc::SIGINT {
            // SAFETY: `raise` takes an integer; the handler only writes into the pipe.
            unsafe {
                libc::raise(sig);
            }
        }
    }
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
///
/// Debug mode: while an actor of the tree holds the terminal lock, `SIGINT` is ignored (the
/// prompt owns Ctrl-C); the prompt's `quit` applies this rule as a `SIGINT` would
/// ([`Interrupts::interrupt`]).
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
    /// Takes the signals waiting and applies the rule to each interrupt; `true` if a `SIGUSR1`
    /// (print the tree dump) was among them.
    pub(crate) fn take(&self, signals: &Signals, root: &CancelScope) -> bool {
        let mut dump = false;
        for sig in signals.take() {
            if sig == libc::SIGUSR1 {
                dump = true;
            }
            if sig != libc::SIGINT && sig != libc::SIGTERM {
                continue;
            }
            // Debug mode: while an actor of the tree holds the terminal (a prompt is open, or
            // about to be), Ctrl-C is the prompt's, never the tree's.
            if sig == libc::SIGINT && tty_lock::held() {
                continue;
            }
            self.interrupt(sig, root);
        }
        dump
    }

    /// Applies the rule to one interrupt `sig` (a signal, or the debug prompt's `quit`).
    pub(crate) fn interrupt(&self, sig: i32, root: &CancelScope) {
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

/// The interrupt rule of this thread's root, if one runs.
pub(crate) fn current_interrupts() -> Option<Rc<Interrupts>> {
    INTERRUPTS.with(|i| i.borrow().clone())
}

/// Makes `ints` the interrupt rule of this thread's root (`None`: no root runs).
pub(crate) fn set_interrupts(ints: Option<Rc<Interrupts>>) {
    INTERRUPTS.with(|i| *i.borrow_mut() = ints);
}

impl Interrupts {
    /// The first interrupt's signal, if one came.
    pub(crate) fn signal(&self) -> Option<i32> {
        self.signal.get()
    }

    /// Names the task running the root future (the one an interrupt with no actor nursery
    /// open is delivered to).
    pub(crate) fn set_main(&self, task: Option<TaskRef>) {
        *self.main.borrow_mut() = task;
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
