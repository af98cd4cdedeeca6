//! The process-control system calls of the actor layer, one safe wrapper each. This is the only
//! `unsafe` in [`actor`](super).
//!
//! Invariants every wrapper keeps:
//! - Descriptor arguments are [`BorrowedFd`]s (open for the call) or numbers this process owns;
//!   a descriptor a call creates is wrapped in an [`OwnedFd`] at once and is `O_CLOEXEC`.
//! - The code that runs in a forked child before `exec` ([`child_after_fork`]) and the signal
//!   handlers ([`on_signal`], [`on_sigchld`]) make only async-signal-safe calls (`close_range`, `dup2`, `fcntl`, `sigemptyset`,
//!   `pthread_sigmask`, `signal`, `prctl`, `getppid`, `execve`, `_exit`, `getpid`, `write`) and touch no lock and no allocator.
//! - `-1` becomes [`io::Error::last_os_error`]; nothing retries here.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::Error;

/// Wraps an OS error with what was being done.
pub(crate) fn os_err(op: &str, e: io::Error) -> Error {
    Error::Os { op: op.to_owned(), source: e.into() }
}

use libc::c_int;

fn cvt(ret: c_int) -> io::Result<c_int> {
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// The test-only switch that makes [`pidfd_open`] fail with `ENOSYS`, as it does under
/// valgrind and on kernels before 5.3, so that the fallback can be tested here: the
/// environment variable `INFECT_TEST_NO_PIDFD=1`, read once. Not for production use. It also
/// skips `close_range` in [`spawn`] (missing before 5.11), so the `/proc/self/fd` sweep runs.
pub(crate) const NO_PIDFD_ENV: &str = "INFECT_TEST_NO_PIDFD";

fn pidfd_disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os(NO_PIDFD_ENV).is_some_and(|v| v == "1"))
}

/// `pidfd_open(pid, 0)`: a descriptor that polls readable once process `pid` has exited.
/// `pid` must be an unreaped child of ours, so that the number cannot have been reused.
/// `ENOSYS` where the kernel (or valgrind) lacks it, or under the test switch
/// ([`NO_PIDFD_ENV`]).
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    if pidfd_disabled() {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `pidfd_open` takes a pid and a flags word, no pointers; it returns a new
    // descriptor (O_CLOEXEC by definition) or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = c_int::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    let fd = cvt(fd)?;
    // SAFETY: `fd` was just returned by a successful `pidfd_open`: open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`: signals the process the pidfd refers to, and
/// never another one (a pidfd outlives its process: once it has exited, this fails with
/// `ESRCH`, even if its pid was reaped behind our back and reused).
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: c_int) -> io::Result<()> {
    // SAFETY: `pidfd` is open for the call; a null `siginfo` is allowed (as `kill` would fill it),
    // flags 0.
    let r = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0)
    };
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Re-numbers `fd` to a number of at least 3 (`F_DUPFD_CLOEXEC`) if it is one of 0, 1, 2, so
/// that a child's pipe end never collides with the standard descriptors the child sets up (a
/// root started with fd 0 closed gets pipes on 0). Other numbers are returned as they are.
pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: `F_DUPFD_CLOEXEC` takes an `int` (the lowest acceptable number); `fd` is open.
    let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: `new` was just returned by a successful `fcntl(F_DUPFD_CLOEXEC)`: open, ours.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// The descriptors this process has open, from `/proc/self/fd` (`None` if it cannot be read):
/// listed before `fork`, for the child to mark them close-on-exec where `close_range` is
/// missing.
fn open_fds() -> Option<Vec<RawFd>> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
}

/// The soft limit on descriptors (`RLIMIT_NOFILE`), capped at 65536: the range the child sweeps
/// when neither `close_range` nor `/proc/self/fd` is available.
fn fd_limit() -> RawFd {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `rl` is a valid, writable `rlimit`.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0;
    if ok { RawFd::try_from(rl.rlim_cur.min(65536)).unwrap_or(65536) } else { 65536 }
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

/// A close-on-exec copy of `fd` numbered 3 or more (`F_DUPFD_CLOEXEC`): how a launched child
/// takes its frame pipes off its standard descriptors 0 and 1 before it points those elsewhere
/// ([`point_stdio_away`]). Fails with `EBADF` if `fd` is not open.
pub(crate) fn dup_above_stdio(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: `F_DUPFD_CLOEXEC` takes an `int` (the lowest acceptable number); on a number that
    // is not open it fails with `EBADF`, and it reads nothing through pointers.
    let new = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: `new` was just returned by a successful `fcntl(F_DUPFD_CLOEXEC)`: open, ours.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Points stdin at `/dev/null` and stdout at stderr (`dup2`), once a launched child holds its
/// frame pipes elsewhere ([`dup_above_stdio`]): nothing the program prints can reach the frame
/// stream, and what it prints to stdout goes where its diagnostics go (to `/dev/null` if it
/// has no stderr). Called at start-up,
/// before anything else uses the standard descriptors.
pub(crate) fn point_stdio_away() -> io::Result<()> {
    // SAFETY: a NUL-terminated path and flags; the result is checked and wrapped at once.
    let null = cvt(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    // SAFETY: `null` was just opened and is owned by nobody else.
    let null = unsafe { OwnedFd::from_raw_fd(null) };
    // SAFETY: `dup2` takes two descriptor numbers: `null` is open; 0 is replaced atomically.
    cvt(unsafe { libc::dup2(null.as_raw_fd(), 0) })?;
    // SAFETY: as above; if 2 is not open this fails with `EBADF` (and 1 stays as it was).
    if cvt(unsafe { libc::dup2(2, 1) }).is_err() {
        // No stderr: stdout goes nowhere rather than into the frame stream.
        // SAFETY: as above.
        cvt(unsafe { libc::dup2(null.as_raw_fd(), 1) })?;
    }
    Ok(())
}

/// The descriptors a spawned program gets, each at least 3 (see [`above_stdio`]). Every other
/// descriptor from 3 up is closed at `exec`, whether or not it was close-on-exec in this
/// process.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ChildFds {
    /// `/dev/null` as stdin, stdout and stderr inherited, and these two kept open across `exec`
    /// under their own numbers (their `FD_CLOEXEC` is cleared in the child): an actor child's
    /// pipe ends.
    Keep([RawFd; 2]),
    /// These three become the program's stdin, stdout and stderr (`dup2` onto 0, 1, 2), nothing
    /// else is kept: a launcher's pipes.
    Stdio([RawFd; 3]),
}

impl ChildFds {
    fn all_above_stdio(&self) -> bool {
        match self {
            ChildFds::Keep(fds) => fds.iter().all(|&fd| fd > 2),
            ChildFds::Stdio(fds) => fds.iter().all(|&fd| fd > 2),
        }
    }
}

/// What [`spawn`] runs: every string is built before `fork`, so that the child only reads
/// memory and makes system calls.
pub(crate) struct SpawnArgs<'a> {
    /// The candidate paths to `execve`, in order (one if the program names a path, else one per
    /// `PATH` entry, as `execvp` would try them); non-empty.
    pub(crate) paths: &'a [CString],
    /// The arguments, `argv[0]` first; non-empty.
    pub(crate) argv: &'a [CString],
    /// The whole environment, `KEY=value` strings.
    pub(crate) env: &'a [CString],
    /// Which descriptors the program gets besides its standard ones.
    pub(crate) fds: ChildFds,
    /// The pid the child must see as its parent once `PR_SET_PDEATHSIG` is armed.
    pub(crate) parent_pid: u32,
}

/// Forks and execs a child, the way `std::process::Command::spawn` does with `stdin(null)`
/// (or three piped standard descriptors), inherited stdout/stderr and a `pre_exec` hook: in the
/// child, `/dev/null` becomes stdin (or the three [`ChildFds::Stdio`] descriptors become 0, 1,
/// 2), the signal mask is emptied and `SIGPIPE` restored to its default, every descriptor from 3
/// up is marked close-on-exec (`close_range(3, ~0, CLOSE_RANGE_CLOEXEC)`; where that is
/// missing, each one listed from `/proc/self/fd` before the `fork`, or else every number below
/// the descriptor limit), so that nothing this process inherited without close-on-exec reaches
/// the child, then the [`ChildFds::Keep`] descriptors lose `FD_CLOEXEC`,
/// `PR_SET_PDEATHSIG(SIGTERM)` is armed and the parent re-checked with `getppid`, then each
/// path is `execve`d in turn. A failure in the child reaches us as its
/// `errno` through a `O_CLOEXEC` pipe (end of file means the `exec` succeeded); the failed
/// child is reaped before we return the error. Returns the child's pid.
pub(crate) fn spawn(args: &SpawnArgs<'_>) -> io::Result<u32> {
    crate::cx::refuse_in_simulation(|| format!("a real process ({:?})", args.argv.first()));
    if args.paths.is_empty() || args.argv.is_empty() || !args.fds.all_above_stdio() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // Prepared before `fork`: the child may not allocate.
    let listed = open_fds();
    let sweep = match &listed {
        Some(fds) => Sweep::Listed(fds),
        None => Sweep::UpTo(fd_limit()),
    };
    let argv: Vec<*const libc::c_char> = args.argv.iter().map(|c| c.as_ptr()).chain([std::ptr::null()]).collect();
    let envp: Vec<*const libc::c_char> = args.env.iter().map(|c| c.as_ptr()).chain([std::ptr::null()]).collect();
    let exec =
        Exec { paths: args.paths, argv: &argv, envp: &envp, fds: args.fds, sweep, close_range: !pidfd_disabled() };
    let parent = libc::pid_t::try_from(args.parent_pid).unwrap_or(-1);
    // SAFETY: a NUL-terminated path and flags; the result is checked and wrapped at once.
    let null = cvt(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    // SAFETY: `null` was just opened and is owned by nobody else.
    let null = unsafe { OwnedFd::from_raw_fd(null) };
    let (err_rx, err_tx) = crate::reactor::fd::pipe()?;
    // SAFETY: `fork` takes no arguments. In the child (0) we call only `child_after_fork`, which
    // makes only async-signal-safe calls and never returns.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        // SAFETY: we are the freshly forked child; see `child_after_fork`.
        unsafe { child_after_fork(&exec, null.as_raw_fd(), err_tx.as_raw_fd(), parent) }
    }
    drop(err_tx);
    drop(null);
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: `buf[got..]` is valid, writable memory of the given length.
        let n = unsafe { libc::read(err_rx.as_raw_fd(), buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        match n {
            0 => break,
            n if n > 0 => got += usize::try_from(n).unwrap_or(0),
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => break,
        }
    }
    if got == 0 {
        // End of file: the `exec` closed the pipe.
        return u32::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidData));
    }
    let errno = if got == buf.len() { c_int::from_ne_bytes(buf) } else { libc::EIO };
    let mut status = 0;
    // SAFETY: `pid` is our unreaped child (it is exiting); `status` is valid and writable.
    while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
    Err(io::Error::from_raw_os_error(errno))
}

/// What the forked child reads: `argv` and `envp` are null-terminated arrays of pointers into
/// `CString`s that outlive the `fork`.
struct Exec<'a> {
    paths: &'a [CString],
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    fds: ChildFds,
    sweep: Sweep<'a>,
    /// Try `close_range` first (off under the test switch, which plays an old kernel).
    close_range: bool,
}

/// Which descriptors the child marks close-on-exec if `close_range` is missing.
enum Sweep<'a> {
    /// Those listed in `/proc/self/fd` before the `fork` (the only ones that can be open:
    /// anything opened later by this thread is `O_CLOEXEC`).
    Listed(&'a [RawFd]),
    /// Every number from 3 below this.
    UpTo(RawFd),
}

/// The forked child's side of [`spawn`]: never returns.
///
/// # Safety
/// Must be called only in a child just forked from a process where `args`, `null` and
/// `err_tx` were valid; it makes only async-signal-safe calls (`close_range`, `dup2`, `fcntl`,
/// `sigemptyset`, `pthread_sigmask`, `signal`, `prctl`, `getppid`, `execve`, `write`,
/// `_exit`), allocates nothing and takes no lock.
unsafe fn child_after_fork(args: &Exec<'_>, null: RawFd, err_tx: RawFd, parent: libc::pid_t) -> ! {
    // SAFETY: `__errno_location` returns this thread's errno slot (async-signal-safe to read).
    let errno = || unsafe { *libc::__errno_location() };
    // SAFETY: every call below is async-signal-safe and allocates nothing; the descriptors are open in the child (inherited); every pointer
    // passed points at memory built before `fork`, valid and NUL-terminated as required.
    let err = unsafe {
        'fail: {
            match args.fds {
                ChildFds::Keep(_) => {
                    if null == 0 {
                        if libc::fcntl(0, libc::F_SETFD, 0) == -1 {
                            break 'fail errno();
                        }
                    } else if libc::dup2(null, 0) == -1 {
                        break 'fail errno();
                    }
                }
                ChildFds::Stdio(fds) => {
                    // Each source is at least 3, so no `dup2` overwrites a later source; the
                    // copies on 0, 1, 2 are not close-on-exec.
                    for (target, fd) in (0..).zip(fds) {
                        if libc::dup2(fd, target) == -1 {
                            break 'fail errno();
                        }
                    }
                }
            }
            // Nothing inherited reaches the program: everything from 3 up is close-on-exec (the
            // error pipe too, which the `exec` must close), then `keep` is cleared below.
            const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
            let swept = if args.close_range {
                libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC)
            } else {
                -1
            };
            if swept != 0 {
                match args.sweep {
                    Sweep::Listed(fds) => {
                        for &fd in fds {
                            if fd > 2 {
                                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                            }
                        }
                    }
                    Sweep::UpTo(max) => {
                        for fd in 3..max {
                            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                        }
                    }
                }
            }
            if libc::signal(libc::SIGPIPE, libc::SIG_DFL) == libc::SIG_ERR {
                break 'fail errno();
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            let r = libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            if r != 0 {
                break 'fail r;
            }
            if let ChildFds::Keep(keep) = args.fds {
                for fd in keep {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        break 'fail errno();
                    }
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) == -1 {
                break 'fail errno();
            }
            if libc::getppid() != parent {
                // The parent died before the death signal was armed: nobody will ever send it.
                break 'fail libc::ESRCH;
            }
            // As `execvp`: try each candidate; report EACCES if one was seen, else the last error.
            let mut seen_eacces = false;
            let mut last = libc::ENOENT;
            for path in args.paths {
                libc::execve(path.as_ptr(), args.argv.as_ptr(), args.envp.as_ptr());
                last = errno();
                seen_eacces |= last == libc::EACCES;
                if !matches!(
                    last,
                    libc::ENOENT
                        | libc::ENOTDIR
                        | libc::EACCES
                        | libc::ELOOP
                        | libc::ENAMETOOLONG
                        | libc::ESTALE
                        | libc::ENODEV
                        | libc::ETIMEDOUT
                ) {
                    break;
                }
            }
            if seen_eacces && matches!(last, libc::ENOENT | libc::ENOTDIR) { libc::EACCES } else { last }
        }
    };
    let bytes = err.to_ne_bytes();
    // SAFETY: `bytes` is a valid 4-byte buffer; `write` and `_exit` are async-signal-safe.
    unsafe {
        libc::write(err_tx, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    }
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

/// `waitpid(pid, WNOHANG)` for an unreaped child of ours (one we spawned, or an orphan
/// re-parented to a subreaper): `Some(raw status)` once reaped.
#[doc(hidden)]
pub fn reap_nohang(pid: u32) -> io::Result<Option<c_int>> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut status: c_int = 0;
    // SAFETY: `status` is a valid, writable `c_int` for the duration of the call.
    let r = cvt(unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) })?;
    Ok((r != 0).then_some(status))
}

/// `waitid(P_PIDFD, pidfd, WEXITED [| WNOHANG])`: reaps the process the pidfd refers to, and
/// never another one (unlike `waitpid(pid)`, which after a reap behind our back could reap a
/// new child of ours that got the same pid). `Some(raw wait status)` once reaped (in the
/// encoding of `waitpid`, for `ExitStatus::from_raw`), `None` if it is still running (with
/// `nohang`); `ECHILD` if someone else reaped it. Retries on `EINTR`.
pub(crate) fn wait_pidfd(pidfd: BorrowedFd<'_>, nohang: bool) -> io::Result<Option<c_int>> {
    let flags = libc::WEXITED | if nohang { libc::WNOHANG } else { 0 };
    let id = libc::id_t::try_from(pidfd.as_raw_fd()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: an all-zero `siginfo_t` is a valid value (and `si_pid == 0` is how `WNOHANG`
        // says "no change").
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is valid and writable; `pidfd` is open for the call.
        match cvt(unsafe { libc::waitid(libc::P_PIDFD, id, &mut info, flags) }) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        // SAFETY: `waitid` filled `info` for a child event (or left it zeroed under WNOHANG); the
        // `si_pid`/`si_status` accessors read the union member that `SIGCHLD` info uses.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some(match info.si_code {
            libc::CLD_EXITED => (status & 0xff) << 8,
            libc::CLD_DUMPED => (status & 0x7f) | 0x80,
            _ => status & 0x7f,
        }));
    }
}

/// `waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)`: whether our child `pid` has exited,
/// without reaping it (the pidfd-less exit check). `pid` must be an unreaped child of ours.
pub(crate) fn exited_nowait(pid: u32) -> io::Result<bool> {
    let id = libc::id_t::from(pid);
    loop {
        // SAFETY: an all-zero `siginfo_t` is a valid value (`si_pid == 0`: no change).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is valid and writable for the call.
        let r = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
        match cvt(r) {
            // SAFETY: `waitid` filled `info` for a child event or left it zeroed.
            Ok(_) => return Ok(unsafe { info.si_pid() } != 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The write end of the `SIGCHLD` self-pipe, or -1 before [`install_sigchld_pipe`].
static SIGCHLD_PIPE: AtomicI32 = AtomicI32::new(-1);

/// The `SIGCHLD` handler: one byte into its self-pipe (non-blocking; a full pipe drops it, the
/// reader has one to wake on already); `errno` saved and restored.
extern "C" fn on_sigchld(_sig: c_int) {
    // SAFETY: as in `on_signal`: only `getpid`, `write` and the errno slot.
    unsafe {
        let errno = *libc::__errno_location();
        if libc::getpid() == SIGNAL_OWNER.load(Ordering::Relaxed) {
            let fd = SIGCHLD_PIPE.load(Ordering::Relaxed);
            if fd >= 0 {
                let byte = 0u8;
                libc::write(fd, (&raw const byte).cast(), 1);
            }
        }
        *libc::__errno_location() = errno;
    }
}

/// Routes `SIGCHLD` into a self-pipe of its own (the pidfd-less way to learn that a child
/// exited) and returns its read end (non-blocking, `O_CLOEXEC`). Call once per process (after
/// [`install_signal_pipe`], whose owner pid it shares); the write end stays open for the life of
/// the process.
pub(crate) fn install_sigchld_pipe() -> io::Result<OwnedFd> {
    let (rx, tx) = crate::reactor::fd::pipe()?;
    crate::reactor::fd::set_nonblocking(&rx, true)?;
    crate::reactor::fd::set_nonblocking(&tx, true)?;
    SIGCHLD_PIPE.store(tx.as_raw_fd(), Ordering::Relaxed);
    std::mem::forget(tx);
    // SAFETY: as in `install_signal_pipe`; `SA_NOCLDSTOP`: only exits (and kills) matter.
    unsafe {
        if SIGNAL_OWNER.load(Ordering::Relaxed) == -1 {
            SIGNAL_OWNER.store(libc::getpid(), Ordering::Relaxed);
        }
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigchld as extern "C" fn(c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
        libc::sigemptyset(&mut action.sa_mask);
        cvt(libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut()))?;
    }
    Ok(rx)
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

/// Blocking `waitpid(pid, 0)` (retrying on `EINTR`) for an unreaped child of ours: its raw
/// status.
pub(crate) fn wait_blocking(pid: u32) -> io::Result<c_int> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut status: c_int = 0;
    loop {
        // SAFETY: `status` is a valid, writable `c_int` for the duration of the call.
        match cvt(unsafe { libc::waitpid(pid, &mut status, 0) }) {
            Ok(_) => return Ok(status),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

unsafe extern "C" {
    /// argv[0]'s last path component, set by the C library (glibc and musl) before `main`.
    static program_invocation_short_name: *const libc::c_char;
}

/// This program's name as it was started (argv[0]'s last path component), for error lines.
/// (`std::env::args_os` would copy the whole argument vector, which costs a minimal binary
/// close to a kilobyte of code.)
pub(crate) fn program_name() -> String {
    // SAFETY: the C library points `program_invocation_short_name` into argv[0] (or at an empty
    // string) before `main` and never frees or moves it; it is NUL-terminated and only read.
    let name = unsafe { program_invocation_short_name };
    if name.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated, as above; it lives as long as the process.
    unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
}
