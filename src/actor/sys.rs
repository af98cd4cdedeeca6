//! The process-control system calls of the actor layer, one safe wrapper each. This is the only
//! `unsafe` in [`actor`](super).
//!
//! Invariants every wrapper keeps:
//! - Descriptor arguments are [`BorrowedFd`]s (open for the call) or numbers this process owns;
//!   a descriptor a call creates is wrapped in an [`OwnedFd`] at once and is `O_CLOEXEC`.
//! - The code that runs in a forked child before `exec` ([`prepare_child`]) and the signal
//!   handler ([`on_signal`]) make only async-signal-safe calls (`fcntl`, `prctl`, `getppid`,
//!   `getpid`, `write`) and touch no lock and no allocator.
//! - `-1` becomes [`io::Error::last_os_error`]; nothing retries here.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use libc::c_int;

fn cvt(ret: c_int) -> io::Result<c_int> {
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// `pidfd_open(pid, 0)`: a descriptor that polls readable once process `pid` has exited.
/// `pid` must be an unreaped child of ours, so that the number cannot have been reused.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `pidfd_open` takes a pid and a flags word, no pointers; it returns a new
    // descriptor (O_CLOEXEC by definition) or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = c_int::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    let fd = cvt(fd)?;
    // SAFETY: `fd` was just returned by a successful `pidfd_open`: open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `kill(pid, sig)`.
pub(crate) fn kill(pid: u32, sig: c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `kill` takes no pointers. Callers only signal an unreaped child of theirs (its pid
    // cannot have been reused) or themselves.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Takes ownership of a descriptor this process inherited and nobody else in it owns (the
/// actor pipes named in the environment), checking that it is open, and marks it `O_CLOEXEC` so
/// that no process we spawn inherits it.
pub(crate) fn adopt_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: `F_GETFD` takes no third argument and reads nothing through pointers; on a number
    // that is not open it fails with EBADF.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: `F_SETFD` takes an `int`; `fd` is open (checked above).
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    // SAFETY: the parent passed us this descriptor for our exclusive use (the actor protocol's
    // contract, see the module docs of `actor`), it is open (checked above), and the caller
    // adopts each number once, when the runtime starts, before anything else could own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arranges for the child `cmd` spawns: keep `keep` open across `exec` (clear their
/// `FD_CLOEXEC`), get `SIGTERM` when this thread dies (`PR_SET_PDEATHSIG`), and give up if the
/// parent (`parent_pid`) already died before the signal was armed (the race `getppid` closes).
pub(crate) fn prepare_child(cmd: &mut Command, keep: [RawFd; 2], parent_pid: u32) {
    let parent = libc::pid_t::try_from(parent_pid).unwrap_or(-1);
    // SAFETY: the closure runs in the forked child before `exec`; it only calls `fcntl`, `prctl`
    // and `getppid`, which are async-signal-safe, allocates nothing and takes no lock. The
    // descriptors in `keep` are open in the child (it inherited every descriptor of ours).
    unsafe {
        cmd.pre_exec(move || {
            for fd in keep {
                cvt(libc::fcntl(fd, libc::F_SETFD, 0))?;
            }
            cvt(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0))?;
            if libc::getppid() != parent {
                // The parent died before the death signal was armed: nobody will ever send it.
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    };
}

/// Re-checks, in a freshly started child, that its parent is still `parent_pid` (the death
/// signal armed before `exec` covers every later death).
pub(crate) fn parent_alive(parent_pid: u32) -> bool {
    // SAFETY: `getppid` takes no arguments and cannot fail.
    let ppid = unsafe { libc::getppid() };
    u32::try_from(ppid).is_ok_and(|p| p == parent_pid)
}

/// `PR_SET_CHILD_SUBREAPER`: orphaned descendants are re-parented to this process (tests use it
/// to reap the grandchildren of a process they killed).
#[doc(hidden)]
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: `prctl(PR_SET_CHILD_SUBREAPER, 1)` takes integers only.
    cvt(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) }).map(drop)
}

/// `waitpid(pid, WNOHANG)` for a process that is not a `std::process::Child` (an orphan
/// re-parented to a subreaper): `Some(raw status)` once reaped.
#[doc(hidden)]
pub fn reap_nohang(pid: u32) -> io::Result<Option<c_int>> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut status: c_int = 0;
    // SAFETY: `status` is a valid, writable `c_int` for the duration of the call.
    let r = cvt(unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) })?;
    Ok((r != 0).then_some(status))
}

/// The write end of the signal self-pipe, or -1 before [`install_signal_pipe`].
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);
/// The pid that installed the handler: a forked child (between `fork` and `exec`) must not
/// write into its parent's self-pipe.
static SIGNAL_OWNER: AtomicI32 = AtomicI32::new(-1);

/// The signal handler: writes the signal's number as one byte into the self-pipe. The write end
/// is non-blocking (a full pipe drops the byte: the reader already has one to wake on), and
/// `errno` is saved and restored around the call.
extern "C" fn on_signal(sig: c_int) {
    // SAFETY: `__errno_location` returns this thread's errno slot; reading and writing it is
    // async-signal-safe. `getpid` and `write` are async-signal-safe; `byte` is a valid one-byte
    // buffer.
    unsafe {
        let errno = *libc::__errno_location();
        if libc::getpid() == SIGNAL_OWNER.load(Ordering::Relaxed) {
            let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
            if fd >= 0 {
                let byte = u8::try_from(sig).unwrap_or(0);
                libc::write(fd, (&raw const byte).cast(), 1);
            }
        }
        *libc::__errno_location() = errno;
    }
}

/// Routes `signals` into a self-pipe and returns its read end (non-blocking, `O_CLOEXEC`): each
/// delivery makes one byte, the signal number, readable. Call once per process; the write end
/// stays open for the life of the process.
pub(crate) fn install_signal_pipe(signals: &[c_int]) -> io::Result<OwnedFd> {
    let (rx, tx) = crate::reactor::fd::pipe()?;
    crate::reactor::fd::set_nonblocking(&rx, true)?;
    crate::reactor::fd::set_nonblocking(&tx, true)?;
    let raw_tx = tx.as_raw_fd();
    // The write end lives as long as the process: the handler may run at any time.
    std::mem::forget(tx);
    // SAFETY: `getpid` takes no arguments and cannot fail.
    SIGNAL_OWNER.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    SIGNAL_PIPE.store(raw_tx, Ordering::Relaxed);
    for &sig in signals {
        // SAFETY: an all-zero `sigaction` is a valid value (empty mask, no flags); we then set
        // the handler (an `extern "C" fn(c_int)`, what `sa_sigaction` holds without
        // `SA_SIGINFO`) and `SA_RESTART`, and pass valid pointers for the new action and a null
        // old one.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            cvt(libc::sigaction(sig, &action, std::ptr::null_mut()))?;
        }
    }
    Ok(rx)
}

/// Removes an environment variable. Called once at start-up by the actor runtime, before it
/// starts anything that could read the environment from another thread.
pub(crate) fn remove_env(key: &str) {
    // SAFETY: the actor runtime calls this first thing in `actor::main`, on the main thread,
    // before it spawns anything; the contract of `actor::main` (documented) is that the process
    // has no other threads reading the environment at that point.
    unsafe { std::env::remove_var(key) };
}

/// `read(2)` on a borrowed descriptor (blocking or not, as the descriptor is).
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    crate::reactor::sys::read(fd, buf)
}

/// `write(2)` on a borrowed descriptor.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    crate::reactor::sys::write(fd, buf)
}
