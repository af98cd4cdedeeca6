//! The process side of supervising one child: its process, the ladder's bounds, the waits for
//! its exit, the signal rungs (`SIGTERM` → `SIGKILL`), the reaping, and how it ended. The
//! supervisor *task*, which also speaks the dialog (the graceful `Cancel{None}` rung, the
//! handshake bound, the close of the connection), is [`supervise`](super::supervise); it
//! climbs only as far as needed.
//!
//! Invariants (of the two together):
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
//!   [`ExitWait`]), never a blocking `waitpid` in the loop.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::process::ExitStatus;
use std::rc::Rc;
use std::time::Duration;

use crate::Result;
use crate::guest::{self, CancelScope, Event};

use super::super::process::{ExitWait, Proc};

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

    /// A wait for the child's exit, on this loop's reactor (a future that is ready once the
    /// child exited; not a cancellation point of its own).
    pub(crate) fn exit_wait(&self) -> Result<ExitWait> {
        ExitWait::new(self.proc.clone())
    }

    /// Waits until the child exited (its pidfd is readable, or the `SIGCHLD` fallback says so).
    /// A cancellation point.
    pub(crate) async fn exited(&self) -> Result<()> {
        let mut exit = self.exit_wait()?;
        poll_fn(|cx| {
            guest::check_cancel()?;
            Pin::new(&mut exit).poll(cx).map(Ok)
        })
        .await
    }

    /// The ladder's last rungs: `SIGTERM` and a wait bounded by the term timeout, then
    /// `SIGKILL` (which cannot be ignored) and a wait for the exit.
    pub(crate) async fn terminate(&self) {
        crate::log::warning!("actor.sigterm", pid = self.pid);
        self.proc.borrow().signal(libc::SIGTERM);
        if matches!(guest::move_on_after(self.term_timeout, self.exited()).await, Ok(Some(()))) {
            return;
        }
        crate::log::warning!("actor.sigkill", pid = self.pid);
        self.proc.borrow().signal(libc::SIGKILL);
        let _ = self.exited().await;
    }

    /// Reaps the child, which has exited (so this does not block; it retries for safety all
    /// the same): its status, `None` if it could not be had.
    pub(crate) async fn reap(&self) -> Option<ExitStatus> {
        loop {
            let reaped = self.proc.borrow_mut().reap();
            match reaped {
                Ok(Some(st)) => return Some(st),
                Ok(None) => {
                    let _ = guest::sleep(Duration::from_millis(1)).await;
                }
                Err(_) => return None,
            }
        }
    }
}
