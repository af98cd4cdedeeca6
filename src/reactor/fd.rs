//! Pipes and non-blocking descriptors driven by the [`Reactor`].
//!
//! Invariants:
//! - Every descriptor made here is `O_CLOEXEC`: a child process inherits one only if the
//!   spawner duplicates it explicitly (`dup2` clears the flag on the copy).
//! - An [`AsyncFd`] owns its descriptor and keeps it non-blocking for its whole life, so its
//!   `read`/`write` never block the thread: they try the call, and on `EAGAIN` await
//!   readiness from the reactor and try again. `EINTR` is retried at once.
//! - Its readiness futures name the descriptor by number; the `AsyncFd` outlives them (they
//!   live inside it or inside its `&self` methods), so the number cannot be closed and reused
//!   under them.
//! - There is one non-blocking I/O loop, [`AsyncFd::poll_io`]: try the call; on `EAGAIN` poll
//!   a readiness slot (registering the waker) and, once a `park` saw the descriptor ready,
//!   try again; `EINTR` retries at once. A call that goes through drops the slot's registration
//!   if it still holds one, so a readiness is never reported for bytes already taken. `read`, `write`, `poll_read`, `poll_write` and the
//!   socket types above the reactor (`host::net`) are all that loop with another call.
//! - The `poll_*` methods keep one readiness slot per direction inside the `AsyncFd`, so a
//!   poll-based caller (a `futures::io::AsyncRead` implementation) needs no future of its
//!   own. One slot holds one waker: at most one task should poll each direction at a time
//!   (the last poller's waker is the one woken). The `async fn`s carry their own slot, so any
//!   number of them may wait at once.
//! - Nothing here knows a host task or its cancellation: that check sits one layer up.

use std::cell::Cell;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Reactor, Readiness, sys};

/// A new pipe as `(read end, write end)`, both `O_CLOEXEC` and blocking (see
/// [`set_nonblocking`]).
///
/// ```
/// use std::{fs::File, io::{Read, Write}};
/// let (rx, tx) = infect::reactor::fd::pipe()?;
/// File::from(tx).write_all(b"hi")?; // closes the write end
/// let mut got = String::new();
/// File::from(rx).read_to_string(&mut got)?;
/// assert_eq!(got, "hi");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    sys::pipe()
}

/// Sets or clears `O_NONBLOCK` on `fd`, keeping its other status flags.
///
/// ```
/// use std::{fs::File, io::{ErrorKind, Read}};
/// let (rx, _tx) = infect::reactor::fd::pipe()?;
/// infect::reactor::fd::set_nonblocking(&rx, true)?;
/// let err = File::from(rx).read(&mut [0u8; 1]).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::WouldBlock);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn set_nonblocking(fd: impl AsFd, nonblocking: bool) -> io::Result<()> {
    let fd = fd.as_fd();
    let flags = sys::get_status_flags(fd)?;
    let wanted = if nonblocking { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
    if wanted == flags {
        return Ok(());
    }
    sys::set_status_flags(fd, wanted)
}

/// An owned, non-blocking descriptor whose reads and writes await the [`Reactor`] instead of
/// blocking the thread.
///
/// ```
/// use infect::reactor::{Reactor, fd::{self, AsyncFd}};
/// use std::{pin::pin, task::{Context, Poll, Waker}, time::Duration};
///
/// let reactor = Reactor::new()?;
/// let (rx, tx) = fd::pipe()?;
/// let (rx, tx) = (AsyncFd::new(rx, &reactor)?, AsyncFd::new(tx, &reactor)?);
/// let mut cx = Context::from_waker(Waker::noop());
///
/// let mut buf = [0u8; 8];
/// {
///     let mut read = pin!(rx.read(&mut buf));
///     assert!(read.as_mut().poll(&mut cx).is_pending()); // EAGAIN: waits for readable
///     assert!(matches!(pin!(tx.write_all(b"ping")).poll(&mut cx), Poll::Ready(Ok(()))));
///     assert_eq!(reactor.park(Some(Duration::from_secs(5)))?.woken, 1);
///     assert!(matches!(read.as_mut().poll(&mut cx), Poll::Ready(Ok(4))));
/// }
/// assert_eq!(&buf[..4], b"ping");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct AsyncFd {
    /// The readiness slot of [`poll_read`](AsyncFd::poll_read) / [`poll_readable`](AsyncFd::poll_readable):
    /// `Some` while it holds a (possibly registered) wait, taken out while being polled.
    read_wait: Cell<Option<Readiness>>,
    /// The same for the writing direction.
    write_wait: Cell<Option<Readiness>>,
    /// Declared after the slots, so that their interests are removed before the number closes.
    fd: OwnedFd,
    reactor: Reactor,
}

/// Which readiness an I/O call waits for when it would block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `POLLIN` (and hang-up / error).
    Read,
    /// `POLLOUT` (and hang-up / error).
    Write,
}

impl AsyncFd {
    /// Takes ownership of `fd`, makes it non-blocking, and drives it with `reactor`.
    ///
    /// ```
    /// let reactor = infect::reactor::Reactor::new()?;
    /// let (rx, _tx) = infect::reactor::fd::pipe()?;
    /// let rx = infect::reactor::fd::AsyncFd::new(rx, &reactor)?;
    /// assert!(rx.reactor().same_as(&reactor));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(fd: OwnedFd, reactor: &Reactor) -> io::Result<AsyncFd> {
        crate::cx::refuse_in_simulation(|| format!("a real file descriptor (fd {}) on the reactor", fd.as_raw_fd()));
        set_nonblocking(&fd, true)?;
        Ok(AsyncFd { fd, reactor: reactor.clone(), read_wait: Cell::new(None), write_wait: Cell::new(None) })
    }

    /// The one non-blocking I/O loop: runs `op` on the descriptor; while it fails with
    /// `EAGAIN`, waits (through the slot of `direction`) for a `park` that saw the descriptor
    /// ready, and runs it again. `EINTR` runs it again at once. Any other outcome is returned.
    ///
    /// Returns `Poll::Pending` (with the waker registered) only after `op` would block.
    ///
    /// ```
    /// use infect::reactor::{Reactor, fd::{self, AsyncFd, Direction}};
    /// use std::{io::ErrorKind, task::{Context, Poll, Waker}};
    /// let reactor = Reactor::new()?;
    /// let (rx, _tx) = fd::pipe()?;
    /// let rx = AsyncFd::new(rx, &reactor)?;
    /// let mut cx = Context::from_waker(Waker::noop());
    /// let mut calls = 0;
    /// let polled = rx.poll_io(&mut cx, Direction::Read, |_| {
    ///     calls += 1;
    ///     Err::<(), _>(ErrorKind::WouldBlock.into())
    /// });
    /// assert!(polled.is_pending() && calls == 1 && reactor.has_interests());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn poll_io<T>(
        &self,
        cx: &mut Context<'_>,
        direction: Direction,
        op: impl FnMut(BorrowedFd<'_>) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        let slot = match direction {
            Direction::Read => &self.read_wait,
            Direction::Write => &self.write_wait,
        };
        let mut wait = slot.take();
        let polled = self.io_loop(cx, direction, &mut wait, op);
        slot.set(wait);
        polled
    }

    /// [`poll_io`](Self::poll_io) with the readiness wait in `wait` (created on first need).
    fn io_loop<T>(
        &self,
        cx: &mut Context<'_>,
        direction: Direction,
        wait: &mut Option<Readiness>,
        mut op: impl FnMut(BorrowedFd<'_>) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            match op(self.fd.as_fd()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let ready = wait.get_or_insert_with(|| self.readiness(direction));
                    match Pin::new(ready).poll(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                done => {
                    // A registration left from an earlier wait (fired or not) is stale now that
                    // the call went through: drop it, or the next wait would take its old
                    // readiness for new and try a call that can only say `EAGAIN`.
                    if wait.as_ref().is_some_and(|w| w.key.is_some()) {
                        *wait = None;
                    }
                    return Poll::Ready(done);
                }
            }
        }
    }

    fn readiness(&self, direction: Direction) -> Readiness {
        match direction {
            Direction::Read => self.readable(),
            Direction::Write => self.writable(),
        }
    }

    /// Polls the loop of [`read`](Self::read) once, through this descriptor's read slot.
    ///
    /// ```
    /// use infect::reactor::{Reactor, fd::{self, AsyncFd}};
    /// use std::{fs::File, io::Write, task::{Context, Poll, Waker}, time::Duration};
    /// let reactor = Reactor::new()?;
    /// let (rx, tx) = fd::pipe()?;
    /// let rx = AsyncFd::new(rx, &reactor)?;
    /// let (mut cx, mut buf) = (Context::from_waker(Waker::noop()), [0u8; 4]);
    /// assert!(rx.poll_read(&mut cx, &mut buf).is_pending());
    /// File::from(tx).write_all(b"ok")?;
    /// assert_eq!(reactor.park(Some(Duration::from_secs(5)))?.woken, 1);
    /// assert!(matches!(rx.poll_read(&mut cx, &mut buf), Poll::Ready(Ok(2))));
    /// assert!(matches!(rx.poll_read(&mut cx, &mut buf), Poll::Ready(Ok(0)))); // writer gone
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.poll_io(cx, Direction::Read, |fd| sys::read(fd, buf))
    }

    /// Polls the loop of [`write`](Self::write) once, through this descriptor's write slot.
    ///
    /// ```
    /// use infect::reactor::{Reactor, fd::{self, AsyncFd}};
    /// use std::task::{Context, Poll, Waker};
    /// let reactor = Reactor::new()?;
    /// let (_rx, tx) = fd::pipe()?;
    /// let tx = AsyncFd::new(tx, &reactor)?;
    /// let wrote = tx.poll_write(&mut Context::from_waker(Waker::noop()), b"abc");
    /// assert!(matches!(wrote, Poll::Ready(Ok(3))));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_io(cx, Direction::Write, |fd| sys::write(fd, buf))
    }

    /// Polls for readability through the read slot: `Ready` once a `park` saw the descriptor
    /// readable since the slot registered (the first poll registers and returns `Pending`).
    ///
    /// ```
    /// use infect::reactor::{Reactor, fd::{self, AsyncFd}};
    /// use std::{task::{Context, Waker}, time::Duration};
    /// let reactor = Reactor::new()?;
    /// let (rx, tx) = fd::pipe()?;
    /// let rx = AsyncFd::new(rx, &reactor)?;
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert!(rx.poll_readable(&mut cx).is_pending());
    /// drop(tx); // hang-up counts as readable
    /// reactor.park(Some(Duration::from_secs(5)))?;
    /// assert!(rx.poll_readable(&mut cx).is_ready());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_ready(cx, Direction::Read)
    }

    /// Like [`poll_readable`](Self::poll_readable), for writability, through the write slot.
    ///
    /// ```
    /// use infect::reactor::{Reactor, fd::{self, AsyncFd}};
    /// use std::{task::{Context, Waker}, time::Duration};
    /// let reactor = Reactor::new()?;
    /// let (_rx, tx) = fd::pipe()?;
    /// let tx = AsyncFd::new(tx, &reactor)?;
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert!(tx.poll_writable(&mut cx).is_pending());
    /// reactor.park(Some(Duration::ZERO))?; // an empty pipe is writable
    /// assert!(tx.poll_writable(&mut cx).is_ready());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_ready(cx, Direction::Write)
    }

    fn poll_ready(&self, cx: &mut Context<'_>, direction: Direction) -> Poll<io::Result<()>> {
        let slot = match direction {
            Direction::Read => &self.read_wait,
            Direction::Write => &self.write_wait,
        };
        let mut wait = slot.take().unwrap_or_else(|| self.readiness(direction));
        let polled = Pin::new(&mut wait).poll(cx);
        slot.set(Some(wait));
        polled
    }

    /// Reads into `buf`: `Ok(0)` at end-of-file (or for an empty `buf`), otherwise the number
    /// of bytes read, waiting for the descriptor to become readable if need be.
    ///
    /// ```
    /// use infect::reactor::{Reactor, fd::{self, AsyncFd}};
    /// use std::{pin::pin, task::{Context, Poll, Waker}};
    /// let reactor = Reactor::new()?;
    /// let (rx, tx) = fd::pipe()?;
    /// drop(tx);
    /// let rx = AsyncFd::new(rx, &reactor)?;
    /// let mut buf = [0u8; 4];
    /// let eof = pin!(rx.read(&mut buf)).poll(&mut Context::from_waker(Waker::noop()));
    /// assert!(matches!(eof, Poll::Ready(Ok(0))));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut wait = None;
        poll_fn(|cx| self.io_loop(cx, Direction::Read, &mut wait, |fd| sys::read(fd, buf))).await
    }

    /// Writes some of `buf`, waiting for the descriptor to become writable if need be.
    /// Returns how many bytes were written (at least one, unless `buf` is empty).
    ///
    /// ```
    /// use infect::reactor::{Reactor, fd::{self, AsyncFd}};
    /// use std::{pin::pin, task::{Context, Poll, Waker}};
    /// let reactor = Reactor::new()?;
    /// let (_rx, tx) = fd::pipe()?;
    /// let tx = AsyncFd::new(tx, &reactor)?;
    /// let wrote = pin!(tx.write(b"abc")).poll(&mut Context::from_waker(Waker::noop()));
    /// assert!(matches!(wrote, Poll::Ready(Ok(3))));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut wait = None;
        poll_fn(|cx| self.io_loop(cx, Direction::Write, &mut wait, |fd| sys::write(fd, buf))).await
    }

    /// Writes all of `buf`. A write that makes no progress fails with
    /// [`io::ErrorKind::WriteZero`]; a closed reader with [`io::ErrorKind::BrokenPipe`].
    ///
    /// ```
    /// use infect::reactor::{Reactor, fd::{self, AsyncFd}};
    /// use std::{io::ErrorKind, pin::pin, task::{Context, Poll, Waker}};
    /// let reactor = Reactor::new()?;
    /// let (rx, tx) = fd::pipe()?;
    /// drop(rx);
    /// let tx = AsyncFd::new(tx, &reactor)?;
    /// let wrote = pin!(tx.write_all(b"lost")).poll(&mut Context::from_waker(Waker::noop()));
    /// assert!(matches!(wrote, Poll::Ready(Err(e)) if e.kind() == ErrorKind::BrokenPipe));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }

    /// A future that resolves once the reactor saw this descriptor readable.
    pub fn readable(&self) -> Readiness {
        self.reactor.readable(self.as_raw_fd())
    }

    /// A future that resolves once the reactor saw this descriptor writable.
    pub fn writable(&self) -> Readiness {
        self.reactor.writable(self.as_raw_fd())
    }

    /// The reactor driving this descriptor.
    pub fn reactor(&self) -> &Reactor {
        &self.reactor
    }

    /// The descriptor's number.
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Gives the descriptor back (still non-blocking).
    ///
    /// ```
    /// let reactor = infect::reactor::Reactor::new()?;
    /// let (rx, _tx) = infect::reactor::fd::pipe()?;
    /// let raw = std::os::fd::AsRawFd::as_raw_fd(&rx);
    /// let rx = infect::reactor::fd::AsyncFd::new(rx, &reactor)?.into_inner();
    /// assert_eq!(std::os::fd::AsRawFd::as_raw_fd(&rx), raw);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_inner(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for AsyncFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for AsyncFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl fmt::Debug for AsyncFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFd").field("fd", &self.fd.as_raw_fd()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Write;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use super::{AsyncFd, pipe};
    use crate::reactor::Reactor;

    /// A read that goes through after its wait fired leaves no readiness behind: the next
    /// readability wait waits for new bytes instead of sending the caller to a read that can
    /// only say `EAGAIN`.
    #[test]
    fn a_call_that_goes_through_drops_its_stale_readiness() {
        let reactor = Reactor::new().expect("a reactor");
        let (rx, tx) = pipe().expect("a pipe");
        let rx = AsyncFd::new(rx, &reactor).expect("non-blocking");
        let mut tx = File::from(tx);
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = [0u8; 8];
        assert!(rx.poll_read(&mut cx, &mut buf).is_pending());
        tx.write_all(b"a").expect("written");
        assert_eq!(reactor.park(Some(Duration::from_secs(5))).expect("parked").woken, 1);
        assert!(matches!(rx.poll_read(&mut cx, &mut buf), Poll::Ready(Ok(1))));
        assert!(!reactor.has_interests(), "the fired registration is gone");
        assert!(rx.poll_readable(&mut cx).is_pending(), "nothing new to read");
        tx.write_all(b"b").expect("written");
        assert_eq!(reactor.park(Some(Duration::from_secs(5))).expect("parked").woken, 1);
        assert!(matches!(rx.poll_readable(&mut cx), Poll::Ready(Ok(()))));
    }
}
