//! Pipes and non-blocking descriptors driven by the [`Reactor`].
//!
//! Invariants:
//! - Every descriptor made here is `O_CLOEXEC`: a child process inherits one only if the
//!   spawner duplicates it explicitly (`dup2` clears the flag on the copy).
//! - An [`AsyncFd`] owns its descriptor and keeps it non-blocking for its whole life, so its
//!   `read`/`write` never block the thread: they try the call, and on `EAGAIN` await
//!   readiness from the reactor and try again. `EINTR` is retried at once.
//! - Its readiness futures name the descriptor by number; the `AsyncFd` outlives them (they
//!   live inside its `&self` methods), so the number cannot be closed and reused under them.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

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
    fd: OwnedFd,
    reactor: Reactor,
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
        set_nonblocking(&fd, true)?;
        Ok(AsyncFd { fd, reactor: reactor.clone() })
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
        loop {
            match sys::read(self.fd.as_fd(), buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable().await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                done => return done,
            }
        }
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
        loop {
            match sys::write(self.fd.as_fd(), buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                done => return done,
            }
        }
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
