//! Child processes: spawning an actor process with its pipes, waiting for it on the reactor,
//! signalling and reaping it.
//!
//! Invariants:
//! - A [`Proc`] is reaped exactly once: by [`Proc::reap`] once its pidfd polled readable, or,
//!   as the last resort, by its `Drop` (SIGKILL, then a blocking wait): no `Proc` ever leaves a
//!   zombie behind.
//! - It is reaped through its pidfd (`waitid(P_PIDFD)`), never by pid, and (`pidfd_send_signal`), never by pid: even if something
//!   else in the process reaped it behind our back (a `waitpid(-1)`) and its pid was reused,
//!   neither a signal nor a wait ever hits a stranger. (Without a pidfd, see
//!   [`sys::pidfd_open`]'s fallback.)
//! - Every live `Proc` of this process is listed in a thread-local registry, so that an actor
//!   that has to exit at once ([`kill_all_children`]) can kill and reap them first.

use std::cell::RefCell;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::rc::Rc;

use crate::error::LaunchFailure;
use crate::{Error, Result};

use super::sys::{self, os_err};

/// The environment variable that tells a process it is an actor child: `"rx,tx,ppid"`, the
/// numbers of its inherited pipe ends and its parent's pid.
pub(crate) const CHILD_ENV: &str = "INFECT_ACTOR_PIPE";

/// A spawned actor process, unreaped until [`reap`](Proc::reap).
pub(crate) struct Proc {
    pid: u32,
    /// `None` where `pidfd_open` is missing (`ENOSYS`): the `SIGCHLD` fallback is used.
    pidfd: Option<OwnedFd>,
    status: Option<ExitStatus>,
    /// A simulated process ([`sim`](crate::sim)): signals, waits and reaping go to it.
    sim: Option<Rc<dyn Simulated>>,
}

/// A process of a simulated world (see [`sim`](crate::sim)): what a pidfd and the kernel do for
/// a real one.
pub(crate) trait Simulated {
    /// Delivers `sig` (as `pidfd_send_signal` would).
    fn signal(&self, sig: i32);
    /// Its exit status once it has exited; otherwise registers `cx`'s waker for the exit.
    fn poll_exit(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<ExitStatus>;
    /// Its exit status, if it has exited.
    fn status(&self) -> Option<ExitStatus>;
    /// The `Proc` was dropped unreaped (the last resort, or its owner was killed).
    fn dropped(&self);
}

thread_local! {
    /// Every live `Proc` of this thread's actor runtime, in spawn order (a handful: a plain
    /// `Vec` is smaller code than a map).
    static LIVE: RefCell<Vec<(u32, Rc<RefCell<Proc>>)>> = const { RefCell::new(Vec::new()) };
}

/// Spawns `program` as actor `name`: returns the process and our ends of its pipes, `(from the
/// child, to the child)`.
pub(crate) fn spawn(program: &Path, name: &str) -> Result<(Rc<RefCell<Proc>>, OwnedFd, OwnedFd)> {
    let fail = |e: std::io::Error| Error::SpawnFailed {
        actor: name.to_owned(),
        reason: e.to_string(),
        source: Some(e.into()),
    };
    let (child_rx, our_tx) = crate::reactor::fd::pipe().map_err(fail)?;
    let (our_rx, child_tx) = crate::reactor::fd::pipe().map_err(fail)?;
    // The child's ends never sit on 0, 1 or 2 (a root started with fd 0 closed gets a pipe
    // there), which the child sets up as its standard descriptors.
    let child_rx = sys::above_stdio(child_rx).map_err(fail)?;
    let child_tx = sys::above_stdio(child_tx).map_err(fail)?;
    let exec_err = |e: std::io::Error| Error::SpawnFailed {
        actor: name.to_owned(),
        reason: format!("{}: {e}", program.display()),
        source: Some(e.into()),
    };
    let invalid = || exec_err(std::io::ErrorKind::InvalidInput.into());
    let me = std::process::id();
    let mut env = environment().ok_or_else(invalid)?;
    env.push(
        cstr(format!("{CHILD_ENV}={},{},{me}", child_rx.as_raw_fd(), child_tx.as_raw_fd()).as_bytes())
            .ok_or_else(invalid)?,
    );
    let paths = search_paths(program.as_os_str()).ok_or_else(invalid)?;
    let argv = [cstr(program.as_os_str().as_bytes()).ok_or_else(invalid)?];
    let fds = sys::ChildFds::Keep([child_rx.as_raw_fd(), child_tx.as_raw_fd()]);
    let pid =
        sys::spawn(&sys::SpawnArgs { paths: &paths, argv: &argv, env: &env, fds, parent_pid: me }).map_err(exec_err)?;
    drop((child_rx, child_tx));
    let proc = track(pid).map_err(fail)?;
    Ok((proc, our_rx, our_tx))
}

/// Spawns `launcher... program arg` for actor `name` (`shown`: the launcher as the errors
/// quote it), its stdin, stdout and stderr piped to us: returns the launcher's process and our
/// ends of its pipes, `(its stdout, its stdin, its stderr)`. The environment is ours (without
/// [`CHILD_ENV`]); the launcher gets the same process hygiene and parent-death signal as a
/// direct child.
pub(crate) fn spawn_launched(
    launcher: &[OsString],
    shown: &str,
    program: &Path,
    arg: &OsStr,
    name: &str,
) -> Result<(Rc<RefCell<Proc>>, OwnedFd, OwnedFd, OwnedFd)> {
    let fail = |e: std::io::Error| Error::SpawnFailed {
        actor: name.to_owned(),
        reason: e.to_string(),
        source: Some(e.into()),
    };
    let (child_in, our_tx) = crate::reactor::fd::pipe().map_err(fail)?;
    let (our_rx, child_out) = crate::reactor::fd::pipe().map_err(fail)?;
    let (our_err, child_err) = crate::reactor::fd::pipe().map_err(fail)?;
    let child_in = sys::above_stdio(child_in).map_err(fail)?;
    let child_out = sys::above_stdio(child_out).map_err(fail)?;
    let child_err = sys::above_stdio(child_err).map_err(fail)?;
    let not_run = |e: std::io::Error| Error::LaunchFailed {
        actor: name.to_owned(),
        launcher: shown.to_owned(),
        failure: LaunchFailure::NotRun { source: e.into() },
        code: None,
        signal: None,
        stderr: None,
    };
    let invalid = || not_run(std::io::ErrorKind::InvalidInput.into());
    let first = launcher.first().ok_or_else(invalid)?;
    let paths = search_paths(first).ok_or_else(invalid)?;
    let mut argv = Vec::new();
    for arg in launcher.iter().map(|a| a.as_os_str()).chain([program.as_os_str(), arg]) {
        argv.push(cstr(arg.as_bytes()).ok_or_else(invalid)?);
    }
    let env = environment().ok_or_else(invalid)?;
    let me = std::process::id();
    let fds = sys::ChildFds::Stdio([child_in.as_raw_fd(), child_out.as_raw_fd(), child_err.as_raw_fd()]);
    let pid =
        sys::spawn(&sys::SpawnArgs { paths: &paths, argv: &argv, env: &env, fds, parent_pid: me }).map_err(not_run)?;
    drop((child_in, child_out, child_err));
    let proc = track(pid).map_err(fail)?;
    Ok((proc, our_rx, our_tx, our_err))
}

fn cstr(b: &[u8]) -> Option<CString> {
    CString::new(b).ok()
}

/// What `execvp` would try for `prog`: the path itself if it names one, else each `PATH` entry
/// (glibc's default search path if `PATH` is unset). `None` if a candidate holds a NUL byte.
fn search_paths(prog: &OsStr) -> Option<Vec<CString>> {
    let prog = prog.as_bytes();
    if prog.contains(&b'/') {
        return Some(vec![cstr(prog)?]);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
    let mut v = Vec::new();
    for dir in path.as_bytes().split(|&b| b == b':') {
        let mut full = dir.to_vec();
        if !full.is_empty() {
            full.push(b'/');
        }
        full.extend_from_slice(prog);
        v.push(cstr(&full)?);
    }
    Some(v)
}

/// This process's environment as `KEY=value` strings, without [`CHILD_ENV`].
fn environment() -> Option<Vec<CString>> {
    let mut env = Vec::new();
    for (k, v) in std::env::vars_os() {
        if k != OsStr::new(CHILD_ENV) {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            env.push(cstr(&kv)?);
        }
    }
    Some(env)
}

/// Opens the pidfd of our new child `pid` (or installs the `SIGCHLD` fallback) and lists it in
/// the registry; on failure kills and reaps it.
fn track(pid: u32) -> std::io::Result<Rc<RefCell<Proc>>> {
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => Some(fd),
        // No pidfds here (valgrind, a kernel before 5.3): the portable path.
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => match sigchld_pipe() {
            Ok(()) => None,
            Err(e) => {
                let _ = sys::kill(pid, libc::SIGKILL);
                let _ = sys::wait_blocking(pid);
                return Err(e);
            }
        },
        Err(e) => {
            let _ = sys::kill(pid, libc::SIGKILL);
            let _ = sys::wait_blocking(pid);
            return Err(e);
        }
    };
    let proc = Rc::new(RefCell::new(Proc { pid, pidfd, status: None, sim: None }));
    LIVE.with(|l| l.borrow_mut().push((pid, proc.clone())));
    Ok(proc)
}

/// A simulated process `pid`, listed in the registry like a spawned one.
pub(crate) fn simulated(pid: u32, sim: Rc<dyn Simulated>) -> Rc<RefCell<Proc>> {
    let proc = Rc::new(RefCell::new(Proc { pid, pidfd: None, status: None, sim: Some(sim) }));
    LIVE.with(|l| l.borrow_mut().push((pid, proc.clone())));
    proc
}

/// The registry of live processes, one per actor: a simulated world keeps each actor's own list
/// and swaps it in while that actor runs.
pub(crate) type Live = Vec<(u32, Rc<RefCell<Proc>>)>;

/// Swaps this thread's registry with `other`.
pub(crate) fn swap_live(other: &mut Live) {
    LIVE.with(|l| std::mem::swap(&mut *l.borrow_mut(), other));
}

impl Proc {
    /// A stand-in for a peer that is no process of ours (the hostile-peer fuzz target drives a
    /// parent over a pipe pair in one process): already "reaped", nothing to signal or wait for.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn detached() -> Result<Proc> {
        Ok(Proc { pid: 0, pidfd: None, status: Some(ExitStatus::from_raw(0)), sim: None })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `sig` through the pidfd unless the process was already reaped: never to a pid
    /// (someone else may have reaped the process behind our back and its pid been reused).
    /// Without a pidfd, by pid: the process is unreaped (by us), so its pid is still its own.
    pub(crate) fn signal(&self, sig: i32) {
        if let Some(sim) = &self.sim {
            if self.status.is_none() {
                sim.signal(sig);
            }
            return;
        }
        if self.status.is_none() {
            let _ = match &self.pidfd {
                Some(fd) => sys::pidfd_send_signal(fd.as_fd(), sig),
                None => sys::kill(self.pid, sig),
            };
        }
    }

    /// Whether the process has exited (not reaping it): `None` when only a readiness wait on
    /// [`exit_fd`](Self::exit_fd) can tell (the pidfd case).
    fn exited_now(&self) -> Option<bool> {
        if self.status.is_some() {
            return Some(true);
        }
        if let Some(sim) = &self.sim {
            return Some(sim.status().is_some());
        }
        match &self.pidfd {
            Some(_) => None,
            // An error (say, someone else reaped it) counts as exited: nothing more to wait for.
            None => Some(sys::exited_nowait(self.pid).unwrap_or(true)),
        }
    }

    /// The descriptor that polls readable when the process may have exited: its pidfd, or the
    /// `SIGCHLD` self-pipe.
    fn exit_fd(&self) -> RawFd {
        match &self.pidfd {
            Some(fd) => fd.as_raw_fd(),
            None => SIGCHLD_RX.with(|r| r.get().map_or(-1, |fd| fd.as_raw_fd())),
        }
    }

    /// Reaps the process if it has exited (`WNOHANG`): its status, once reaped.
    pub(crate) fn reap(&mut self) -> Result<Option<ExitStatus>> {
        if let (None, Some(sim)) = (self.status, &self.sim) {
            self.status = sim.status();
            if self.status.is_some() {
                let pid = self.pid();
                let _ = LIVE.try_with(|l| l.borrow_mut().retain(|(p, _)| *p != pid));
            }
        }
        if self.status.is_none() && self.sim.is_none() {
            let raw = match &self.pidfd {
                Some(fd) => sys::wait_pidfd(fd.as_fd(), true).map_err(|e| os_err("waitid", e))?,
                None => sys::reap_nohang(self.pid).map_err(|e| os_err("waitpid", e))?,
            };
            self.status = raw.map(ExitStatus::from_raw);
            if self.status.is_some() {
                let pid = self.pid();
                // `try_with`: the registry may already be gone if the thread is exiting.
                let _ = LIVE.try_with(|l| l.borrow_mut().retain(|(p, _)| *p != pid));
            }
        }
        Ok(self.status)
    }

    fn kill_and_wait(&mut self) {
        if let Some(sim) = &self.sim {
            if self.status.is_none() {
                sim.dropped();
                self.status = sim.status();
            }
            return;
        }
        if self.status.is_none() {
            self.signal(libc::SIGKILL);
            let raw = match &self.pidfd {
                Some(fd) => sys::wait_pidfd(fd.as_fd(), false).ok().flatten(),
                None => sys::wait_blocking(self.pid).ok(),
            };
            self.status = raw.map(ExitStatus::from_raw);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // The last resort (a nursery future dropped mid-teardown): never leave a zombie.
        self.kill_and_wait();
    }
}

/// Kills (SIGKILL) and reaps every child process this runtime still has: used by an actor
/// that must exit at once, so that it leaves nothing behind.
pub(crate) fn kill_all_children() {
    let live: Vec<Rc<RefCell<Proc>>> =
        LIVE.with(|l| std::mem::take(&mut *l.borrow_mut()).into_iter().map(|(_, p)| p).collect());
    for p in &live {
        p.borrow().signal(libc::SIGKILL);
    }
    for p in live {
        p.borrow_mut().kill_and_wait();
    }
}

thread_local! {
    /// The read end of the `SIGCHLD` self-pipe, installed the first time a spawn finds no pidfd.
    static SIGCHLD_RX: std::cell::OnceCell<OwnedFd> = const { std::cell::OnceCell::new() };
}

/// Installs the `SIGCHLD` self-pipe once (the pidfd-less path).
fn sigchld_pipe() -> std::io::Result<()> {
    SIGCHLD_RX.with(|r| {
        if r.get().is_none() {
            let _ = r.set(sys::install_sigchld_pipe()?);
        }
        Ok(())
    })
}

/// Waits until `proc` has exited (not reaping it). With a pidfd: until it polls readable.
/// Without: until `waitid(P_PID, pid, WNOWAIT)` says so, re-checked whenever the `SIGCHLD`
/// self-pipe polls readable. Every waiter re-checks its own pid after each wake-up, and the
/// check and the registration happen in one poll, so whichever waiter drains the pipe, none
/// misses its child's exit (the pipe is level-triggered, the check follows each drain).
pub(crate) struct ExitWait {
    proc: Rc<RefCell<Proc>>,
    /// `None` for a simulated process, which needs none.
    reactor: Option<crate::reactor::Reactor>,
    ready: Option<crate::reactor::Readiness>,
}

impl ExitWait {
    /// A wait for `proc`'s exit; a real process needs the loop's reactor.
    pub(crate) fn new(proc: Rc<RefCell<Proc>>) -> Result<ExitWait> {
        let reactor = match proc.borrow().sim {
            Some(_) => None,
            None => Some(crate::reactor::Reactor::current().ok_or(Error::NoActorRuntime)?),
        };
        Ok(ExitWait { proc, reactor, ready: None })
    }
}

impl std::future::Future for ExitWait {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let this = &mut *self;
        if let Some(sim) = this.proc.borrow().sim.clone() {
            return sim.poll_exit(cx).map(drop);
        }
        let Some(reactor) = this.reactor.clone() else { return std::task::Poll::Ready(()) };
        loop {
            let exited = this.proc.borrow().exited_now();
            if exited == Some(true) {
                return std::task::Poll::Ready(());
            }
            let fd = this.proc.borrow().exit_fd();
            let ready = this.ready.get_or_insert_with(|| reactor.readable(fd));
            match std::pin::Pin::new(ready).poll(cx) {
                std::task::Poll::Pending => return std::task::Poll::Pending,
                // The pidfd is readable (or failed): it exited.
                std::task::Poll::Ready(_) if exited.is_none() => return std::task::Poll::Ready(()),
                std::task::Poll::Ready(_) => {
                    // A `SIGCHLD`: drain the pipe, re-check.
                    this.ready = None;
                    SIGCHLD_RX.with(|r| {
                        if let Some(fd) = r.get() {
                            let mut buf = [0u8; 64];
                            while matches!(sys::read(fd.as_fd(), &mut buf), Ok(n) if n == buf.len()) {}
                        }
                    });
                }
            }
        }
    }
}

/// Whether spawns here run without pidfds (test hook for the `SIGCHLD` fallback): set once a
/// spawn found `pidfd_open` missing.
#[doc(hidden)]
pub fn pidfd_fallback_in_use() -> bool {
    SIGCHLD_RX.with(|r| r.get().is_some())
}

/// `(exit code, signal)` of a status.
pub(crate) fn split_status(status: ExitStatus) -> (Option<i32>, Option<i32>) {
    (status.code(), status.signal())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child reaped behind its `Proc`'s back, and a stranger placed at its pid: neither the
    /// ladder's signals nor the last-resort kill-and-wait touch the stranger.
    #[test]
    fn a_reused_pid_is_never_signalled_or_reaped() {
        use std::os::unix::fs::PermissionsExt;
        let script = std::env::temp_dir().join(format!("infect-proc-reuse-{}", std::process::id()));
        std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (proc, rx, tx) = spawn(&script, "victim").unwrap();
        let _ = std::fs::remove_file(&script);
        drop((rx, tx));
        let pid = proc.borrow().pid();
        // Someone else reaps it (a `waitpid(-1)` elsewhere in the process, say).
        sys::kill(pid, libc::SIGKILL).unwrap();
        sys::wait_blocking(pid).unwrap();
        // A stranger (also our child) at the same pid: `ns_last_pid` needs CAP_SYS_ADMIN.
        let mut stranger = None;
        // Other processes of a busy machine (or this test binary's other threads) may take the
        // pid between the write and the spawn: try a while, and skip if it never comes free.
        for _ in 0..500 {
            if std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", pid - 1)).is_err() {
                eprintln!("a_reused_pid_is_never_signalled_or_reaped: skipped (cannot set ns_last_pid)");
                kill_all_children();
                return;
            }
            let mut c = std::process::Command::new("sleep").arg("30").spawn().unwrap();
            if c.id() == pid {
                stranger = Some(c);
                break;
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let Some(mut stranger) = stranger else {
            eprintln!("a_reused_pid_is_never_signalled_or_reaped: skipped (the pid never came free)");
            kill_all_children();
            return;
        };
        proc.borrow().signal(libc::SIGTERM);
        assert!(proc.borrow_mut().reap().is_err(), "reaped something that is not the victim");
        kill_all_children();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let alive = stranger.try_wait().unwrap().is_none();
        let _ = stranger.kill();
        let _ = stranger.wait();
        assert!(alive, "the stranger at pid {pid} was signalled or reaped");
    }
}
