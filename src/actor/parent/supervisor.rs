//! The supervisor of one child process: the ladder (graceful `Cancel{None}` → `SIGTERM` →
//! `SIGKILL`, each rung bounded), the reaping, and the close of the connection that follows.
//!
//! Invariants:
//! - **Every child is reaped.** The supervisor runs shielded; whatever woke it (the child's
//!   exit, a teardown request, end-of-file, a handshake that did not come within
//!   [`ActorOpts::start_timeout`](super::ActorOpts::start_timeout)), it ends the process
//!   (climbing only as far as needed), reaps it, and only then sets `reaped`.
//! - **Its death comes after its words.** Before the connection is closed with
//!   [`Error::ActorDied`], the reader is given (at most the first rung's bound) to reach
//!   end-of-file, so everything the child wrote before it died is delivered first.
//! - A child that never joined the dialog (no `Aid` in time) skips the graceful rung and the
//!   start fails with [`Error::StartTimeout`].
//! - The waits on the process go through its pidfd (or the `SIGCHLD` fallback;
//!   [`process::ExitWait`]), never a blocking `waitpid` in the loop.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use crate::guest::{self, CancelScope, Event};
use crate::wire::Msg;
use crate::{Error, Result};

use super::super::peer::reactor;
use super::super::process::{self, Proc};
use super::ChildActor;

/// The process side of one child: the process, the ladder's bounds, and how it ended.
pub(crate) struct Supervisor {
    pub(crate) proc: Rc<RefCell<Proc>>,
    pub(crate) pid: u32,
    /// The first rung of the ladder, also the bound on draining a cancelled call.
    pub(crate) cancel_timeout: Duration,
    pub(crate) term_timeout: Duration,
    pub(crate) start_timeout: Duration,
    /// Cancelled by the supervisor once the child is reaped and its pipe did not reach
    /// end-of-file within the bound (someone else holds the child's end): the reader stops.
    pub(crate) reader_stop: CancelScope,
    /// Set once the child is reaped (and the connection closed).
    pub(crate) reaped: Event,
    /// It acknowledged the graceful cancel and exited within the first rung.
    pub(crate) graceful: Cell<bool>,
}

impl Supervisor {
    /// The supervisor of `proc` (pid `pid`), with the ladder's bounds.
    pub(crate) fn new(
        proc: Rc<RefCell<Proc>>,
        pid: u32,
        cancel: Duration,
        term: Duration,
        start: Duration,
    ) -> Supervisor {
        Supervisor {
            proc,
            pid,
            cancel_timeout: cancel,
            term_timeout: term,
            start_timeout: start,
            reader_stop: CancelScope::new(),
            reaped: Event::new(),
            graceful: Cell::new(false),
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

/// The supervisor task: waits for the child to exit or to be torn down, climbs the ladder if
/// need be, reaps, closes.
pub(crate) async fn supervise(child: Rc<ChildActor>) {
    let r = match reactor() {
        Ok(r) => r,
        Err(_) => return,
    };
    let mut exit = process::ExitWait::new(child.sup.proc.clone(), r);
    // Until the handshake is done, the wait is bounded by the start timeout.
    let mut woke = Woke::Handshake;
    if child.state.aid.borrow().is_none() {
        let first = guest::move_on_after(child.sup.start_timeout, async { Ok(watch(&child, &mut exit, true).await) });
        woke = first.await.ok().flatten().unwrap_or(Woke::StartTimeout);
    }
    if woke == Woke::Handshake {
        woke = watch(&child, &mut exit, false).await;
    }
    drop(exit);
    let mut start_failed = None;
    if woke == Woke::StartTimeout {
        start_failed = Some(Error::StartTimeout { actor: child.name.clone(), timeout: child.sup.start_timeout });
    }
    // Exited within the first rung: graceful if it acknowledged the cancel, which is known once
    // the reader has everything it wrote (below).
    let mut exited_in_time = false;
    if woke != Woke::Exited {
        let mut gone = false;
        // Rung 1: graceful (or, after end-of-file, just a bounded wait for the exit). A child
        // that never joined the dialog (no `Aid` in time) skips it.
        if start_failed.is_none() {
            let graceful = guest::move_on_after(child.sup.cancel_timeout, async {
                if !child.state.eof.get() {
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
        }
        // Rung 2: SIGTERM.
        if !gone {
            child.sup.proc.borrow().signal(libc::SIGTERM);
            gone = matches!(guest::move_on_after(child.sup.term_timeout, child.sup.exited()).await, Ok(Some(())));
        }
        // Rung 3: SIGKILL, which cannot be ignored.
        if !gone {
            child.sup.proc.borrow().signal(libc::SIGKILL);
            let _ = child.sup.exited().await;
        }
    }
    // Reap. It exited, so this does not block; loop for safety all the same.
    let status = loop {
        let reaped = child.sup.proc.borrow_mut().reap();
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
    let _ = guest::move_on_after(
        child.sup.cancel_timeout,
        poll_fn(|cx| {
            if child.state.eof.get() {
                return Poll::Ready(Ok(()));
            }
            guest::check_cancel()?;
            child.register_state(cx.waker());
            Poll::Pending
        }),
    )
    .await;
    child.sup.reader_stop.cancel();
    if exited_in_time {
        child.sup.graceful.set(child.state.cancel_acked.get());
    }
    let (code, signal) = status.map_or((None, None), process::split_status);
    let panic = child.logs.panic_report.borrow().clone();
    child.close(start_failed.unwrap_or(Error::ActorDied { actor: child.name.clone(), code, signal, panic }));
    child.sup.reaped.set();
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
    c.close(Error::ActorDied {
        actor: c.name.clone(),
        code: Some(0),
        signal: None,
        panic: c.logs.panic_report.borrow().clone(),
    });
    c.sup.reaped.set();
}
