//! One safe wrapper per system call the reactor makes. This is the only `unsafe` in
//! [`reactor`](super).
//!
//! Invariants every wrapper keeps:
//! - A descriptor argument is a [`BorrowedFd`], so it is open for the whole call; the only
//!   exception is the watched number of [`epoll_ctl`]: the kernel reads no memory through it
//!   and answers a closed one with `EBADF`, so a stale number is a logic error, never
//!   undefined behaviour.
//! - A buffer argument is a Rust slice and its length is passed with it, so the kernel never
//!   touches memory outside it.
//! - A new descriptor is wrapped in an [`OwnedFd`] immediately after the call that created
//!   it, so it is closed exactly once, and every one is created `O_CLOEXEC` so no child
//!   process inherits it by accident.
//! - `-1` becomes [`io::Error::last_os_error`]; nothing retries here (`EINTR` and `EAGAIN`
//!   are the callers' business).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use libc::c_int;

/// Turns a `-1` return into the thread's `errno`.
fn cvt(ret: c_int) -> io::Result<c_int> {
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// Turns a `-1` byte count into the thread's `errno`.
fn cvt_len(ret: isize) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// `epoll_create1(EPOLL_CLOEXEC)`: a new, empty epoll instance.
pub(crate) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: `epoll_create1` takes no pointers; it returns a new descriptor or -1.
    let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    Ok(owned(fd))
}

/// `epoll_ctl(epfd, op, fd, {events, data})`: `op` is `EPOLL_CTL_ADD`, `_MOD` or `_DEL` (for
/// `_DEL` the event is ignored).
pub(crate) fn epoll_ctl(epfd: BorrowedFd<'_>, op: c_int, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: data };
    // SAFETY: `event` is a valid, initialised `epoll_event` that the kernel only reads during
    // the call; `epfd` is open for the borrow; `fd` is a plain number (see the module docs).
    cvt(unsafe { libc::epoll_ctl(epfd.as_raw_fd(), op, fd, &raw mut event) }).map(drop)
}

/// `epoll_wait(2)`: waits until an event is ready or `timeout_ms` passes (`-1`: forever) and
/// fills the front of `events`. Returns how many it filled.
pub(crate) fn epoll_wait(
    epfd: BorrowedFd<'_>,
    events: &mut [libc::epoll_event],
    timeout_ms: c_int,
) -> io::Result<usize> {
    let max = c_int::try_from(events.len()).unwrap_or(c_int::MAX);
    // SAFETY: `events` is an exclusively borrowed slice of at least `max` initialised
    // `epoll_event`s; the kernel writes at most `max` of them, inside the slice, and keeps no
    // pointer to it after returning. `epfd` is open for the borrow.
    let ready = cvt(unsafe { libc::epoll_wait(epfd.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) })?;
    Ok(usize::try_from(ready).unwrap_or(0))
}

/// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`: a counter that polls readable while non-zero.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: `eventfd` takes no pointers; it returns a new descriptor or -1.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    Ok(owned(fd))
}

/// `pipe2(O_CLOEXEC)`: a `(read end, write end)` pair, both blocking.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [c_int; 2] = [-1, -1];
    // SAFETY: `fds` is a writable array of two `c_int`s, which is what `pipe2` fills in.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((owned(fds[0]), owned(fds[1])))
}

/// Wraps a descriptor that a successful call just created.
fn owned(fd: RawFd) -> OwnedFd {
    debug_assert!(fd >= 0, "only wrap descriptors a successful call returned");
    // SAFETY: the callers pass only a descriptor that `eventfd`/`pipe2`/`epoll_create1` returned a moment ago:
    // it is open and nothing else owns it, so the `OwnedFd` becomes its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `read(2)` into `buf`.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `fd` is open for the borrow; `buf` is valid for writes of `buf.len()` bytes and
    // `read` writes at most that many.
    cvt_len(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// `write(2)` from `buf`.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `fd` is open for the borrow; `buf` is valid for reads of `buf.len()` bytes and
    // `write` reads at most that many.
    cvt_len(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
}

/// `fcntl(F_GETFL)`: the file status flags (`O_NONBLOCK`, ...).
pub(crate) fn get_status_flags(fd: BorrowedFd<'_>) -> io::Result<c_int> {
    // SAFETY: `F_GETFL` takes no third argument and `fd` is open for the borrow.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })
}

/// `fcntl(F_SETFL, flags)`.
pub(crate) fn set_status_flags(fd: BorrowedFd<'_>, flags: c_int) -> io::Result<()> {
    // SAFETY: `F_SETFL` takes an `int` third argument and `fd` is open for the borrow.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) }).map(drop)
}
