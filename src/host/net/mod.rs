//! Sockets for host tasks (std, Linux): TCP and Unix-domain streams and listeners that
//! implement [`futures::io::AsyncRead`] and [`AsyncWrite`], so a protocol library generic over
//! futures-io (a websocket or HTTP stack, a vendor SDK) runs unchanged on host tasks.
//!
//! # Rules
//! - **On the host's reactor.** A socket is made inside a running host loop (a host task,
//!   [`Host::block_on`](super::Host::block_on), a `to_host` task) and is driven by that loop's
//!   [`Reactor`]. Made outside one, it fails with [`Error::NoHostLoop`] inside the `io::Error`.
//! - **Never blocks the loop.** Every descriptor is made `SOCK_NONBLOCK | SOCK_CLOEXEC`
//!   (`socket`, `accept4`, `socketpair`), so no child process inherits one and no call waits in
//!   the kernel. Reads, writes and accepts are the reactor's one I/O loop
//!   ([`AsyncFd::poll_io`]). A TCP connect is `connect(2)`; on `EINPROGRESS` it waits until the
//!   socket is writable and then reads `SO_ERROR` (so a refused connect fails with
//!   `ConnectionRefused` from [`TcpStream::connect`]).
//! - **Host-aware.** Each poll of a connect, accept, read or write first checks the polling host
//!   task's cancellation (like [`sleep`](super::sleep)): in a cancelled host task it returns an
//!   `io::Error` carrying the task's [`Cancelled`] (sticky, the same reason and cause). `?` into
//!   [`crate::Error`] turns it back into that `Cancelled`'s error, so a host task cancelled by a
//!   link teardown returns exactly the translated error; [`cancelled`] reads it from the
//!   `io::Error`. A cancelled wait consumed nothing: bytes not yet read stay in the socket for
//!   the next reader. Dropping a socket (or a connect future) closes its descriptor.
//! - **One reader and one writer at a time.** A stream keeps one readiness slot per direction,
//!   so it can be read by one task while another writes (through `&TcpStream`, or after
//!   [`futures::io::AsyncReadExt::split`]); two tasks reading at once would take each other's
//!   wake-up.
//! - **Names are not resolved here.** Connects take a [`SocketAddr`]: resolving a name can
//!   block for seconds in `getaddrinfo`, so the loop never does it behind your back.
//!   [`resolve_blocking`] is the explicit way, and blocks the whole loop while it runs (call it
//!   before starting the loop, or on another thread).
//!
//! # Example
//!
//! ```
//! use futures::io::{AsyncReadExt, AsyncWriteExt};
//! use infect::host::{self, Host, net::{TcpListener, TcpStream}};
//!
//! let host = Host::new()?;
//! let echoed = host.block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())?;
//!     let addr = listener.local_addr()?;
//!     let server = host::spawn(async move {
//!         let (mut conn, _peer) = listener.accept().await?;
//!         let mut buf = [0u8; 4];
//!         conn.read_exact(&mut buf).await?;
//!         conn.write_all(&buf).await
//!     })
//!     .unwrap();
//!     let mut client = TcpStream::connect(addr).await?;
//!     client.write_all(b"ping").await?;
//!     let mut got = Vec::new();
//!     client.read_to_end(&mut got).await?; // the server task ends: its socket closes
//!     server.await.unwrap()?;
//!     std::io::Result::Ok(got)
//! })?;
//! assert_eq!(echoed, b"ping");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A host task cancelled while it waits in a read gets its [`Cancelled`] inside the
//! `io::Error`, and the socket is left as it was:
//!
//! ```
//! use futures::io::AsyncWriteExt;
//! use infect::host::{self, Host, net::{self, UnixStream}};
//!
//! let host = Host::new()?;
//! host.block_on(async {
//!     let (mut a, b) = UnixStream::pair()?;
//!     let reader = host::spawn(async move {
//!         let e = b.read(&mut [0u8; 1]).await.unwrap_err();
//!         (net::cancelled(&e).map(|c| c.reason.clone()), b)
//!     })
//!     .unwrap();
//!     host::yield_now().await.unwrap(); // the reader's first poll: it waits for a byte
//!     reader.cancel("stop");
//!     let (reason, b) = reader.await.unwrap();
//!     assert_eq!(reason.as_deref(), Some("stop"));
//!     a.write_all(b"x").await?; // outside the cancelled task the socket works as before
//!     assert_eq!(b.read(&mut [0u8; 1]).await?, 1);
//!     std::io::Result::Ok(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod sys;

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::io::{AsyncRead, AsyncWrite};

use crate::reactor::Reactor;
use crate::reactor::fd::{AsyncFd, Direction};
use crate::{Cancelled, Error};

use sys::SockAddr;

/// The `io::Error` a cancelled host-aware I/O call returns: it carries the task's `Cancelled`.
fn cancelled_error(c: Cancelled) -> io::Error {
    io::Error::other(c)
}

/// The host task's cancellation as an `io::Error`, checked first at every I/O poll.
fn check_cancelled() -> io::Result<()> {
    super::check_cancelled().map_err(cancelled_error)
}

/// The [`Cancelled`] inside an `io::Error` made by a cancelled host-aware I/O call, if it is one.
///
/// ```
/// use infect::{Cancelled, host::net};
/// let e = std::io::Error::other(Cancelled::new("shutting down"));
/// assert_eq!(net::cancelled(&e).map(|c| c.reason.as_str()), Some("shutting down"));
/// assert!(net::cancelled(&std::io::ErrorKind::TimedOut.into()).is_none());
/// ```
pub fn cancelled(e: &io::Error) -> Option<&Cancelled> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<Cancelled>())
}

/// The reactor of the host loop running on this thread.
fn reactor() -> io::Result<Reactor> {
    Reactor::current().ok_or_else(|| io::Error::other(Error::NoHostLoop))
}

fn wrap(fd: OwnedFd) -> io::Result<AsyncFd> {
    AsyncFd::new(fd, &reactor()?)
}

/// Resolves `host:port` with the system resolver (`getaddrinfo`, through
/// [`std::net::ToSocketAddrs`]). **This blocks the calling thread, and so the whole loop**, for as
/// long as the resolver takes (seconds, if DNS is slow): call it before the loop runs, or on
/// another thread, and hand the addresses to [`TcpStream::connect`].
///
/// ```
/// let addrs = infect::host::net::resolve_blocking("127.0.0.1", 8080)?;
/// assert_eq!(addrs, ["127.0.0.1:8080".parse().unwrap()]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn resolve_blocking(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// The host-aware half every stream shares: the cancellation check, then the reactor's loop.
struct Stream {
    fd: AsyncFd,
}

impl Stream {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        check_cancelled()?;
        self.fd.poll_read(cx, buf)
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        check_cancelled()?;
        self.fd.poll_write(cx, buf)
    }

    /// Connects `fd` to `addr`: `connect(2)`, and on `EINPROGRESS` waits writable and reads
    /// `SO_ERROR`.
    async fn connect(fd: OwnedFd, addr: &SockAddr) -> io::Result<Stream> {
        let fd = wrap(fd)?;
        check_cancelled()?;
        match sys::connect(fd.as_fd(), addr) {
            Ok(()) => return Ok(Stream { fd }),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        poll_fn(|cx| {
            check_cancelled()?;
            fd.poll_writable(cx)
        })
        .await?;
        match sys::take_error(fd.as_fd())? {
            Some(e) => Err(e),
            None => Ok(Stream { fd }),
        }
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        sys::shutdown(self.fd.as_fd(), how)
    }
}

/// Accepts one connection on a listening `fd` (host-aware).
async fn accept(fd: &AsyncFd) -> io::Result<(Stream, SockAddr)> {
    let (conn, addr) = poll_fn(|cx| {
        check_cancelled()?;
        fd.poll_io(cx, Direction::Read, sys::accept)
    })
    .await?;
    Ok((Stream { fd: AsyncFd::new(conn, fd.reactor())? }, addr))
}

fn inet(addr: SockAddr) -> io::Result<SocketAddr> {
    addr.socket_addr().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address"))
}

/// The futures-io traits and the inherent `read`/`write`, for each stream type (and `&` it).
macro_rules! stream_io {
    ($t:ty) => {
        impl $t {
            /// Reads into `buf`: `Ok(0)` at end-of-stream, else how many bytes were read
            /// (host-aware; see the [module docs](self)).
            pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
                poll_fn(|cx| self.inner.poll_read(cx, buf)).await
            }

            /// Writes some of `buf`; how many bytes were written (host-aware).
            pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
                poll_fn(|cx| self.inner.poll_write(cx, buf)).await
            }

            /// Writes all of `buf` (host-aware). A write that makes no progress fails with
            /// `WriteZero`.
            pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
                while !buf.is_empty() {
                    match self.write(buf).await? {
                        0 => return Err(io::ErrorKind::WriteZero.into()),
                        n => buf = &buf[n..],
                    }
                }
                Ok(())
            }

            /// Shuts down the reading, writing or both halves (`shutdown(2)`): the peer reads
            /// end-of-stream after a write shutdown.
            pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
                self.inner.shutdown(how)
            }
        }

        impl AsyncRead for $t {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
                self.inner.poll_read(cx, buf)
            }
        }

        impl AsyncRead for &$t {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
                self.inner.poll_read(cx, buf)
            }
        }

        /// Writes go straight to the socket: `poll_flush` has nothing to do, `poll_close` shuts
        /// the writing half down (the descriptor closes on drop).
        impl AsyncWrite for $t {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                self.inner.poll_write(cx, buf)
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(self.inner.shutdown(Shutdown::Write))
            }
        }

        impl AsyncWrite for &$t {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                self.inner.poll_write(cx, buf)
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(self.inner.shutdown(Shutdown::Write))
            }
        }

        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.inner.fd.as_fd()
            }
        }

        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.inner.fd.as_raw_fd()
            }
        }
    };
}

/// A TCP connection on the host's reactor; [`AsyncRead`] + [`AsyncWrite`] (also through `&`).
///
/// ```
/// use futures::io::AsyncWriteExt;
/// use infect::host::{Host, net::{TcpListener, TcpStream}};
///
/// Host::new()?.block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())?;
///     let mut client = TcpStream::connect(listener.local_addr()?).await?;
///     let (server, peer) = listener.accept().await?;
///     assert_eq!(client.local_addr()?, peer);
///     assert_eq!(server.peer_addr()?, peer);
///     client.write_all(b"hi").await?;
///     client.close().await?; // shuts the writing half: the server reads end-of-stream
///     let mut buf = [0u8; 8];
///     assert_eq!(server.read(&mut buf).await?, 2);
///     assert_eq!(server.read(&mut buf).await?, 0);
///     std::io::Result::Ok(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TcpStream {
    inner: Stream,
}

stream_io!(TcpStream);

impl TcpStream {
    /// Connects to `addr` without blocking the loop (host-aware: a cancelled host task's
    /// connect returns its `Cancelled`, and the half-open socket is closed). A refused connect
    /// fails with `ConnectionRefused`.
    ///
    /// ```
    /// use infect::host::{Host, net::{TcpListener, TcpStream}};
    /// let refused = Host::new()?.block_on(async {
    ///     let addr = TcpListener::bind("127.0.0.1:0".parse().unwrap())?.local_addr()?; // closed again
    ///     std::io::Result::Ok(TcpStream::connect(addr).await.unwrap_err().kind())
    /// })?;
    /// assert_eq!(refused, std::io::ErrorKind::ConnectionRefused);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        let sa = SockAddr::from_inet(addr);
        let fd = sys::stream_socket(sa.family())?;
        Ok(TcpStream { inner: Stream::connect(fd, &sa).await? })
    }

    /// This end's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet(sys::name(self.as_fd(), false)?)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        inet(sys::name(self.as_fd(), true)?)
    }

    /// Sets `TCP_NODELAY` (no Nagle delay for small writes; what a request/response protocol
    /// wants).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        sys::set_opt(self.as_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, libc::c_int::from(nodelay))
    }

    /// Sets `SO_LINGER`. `Some(Duration::ZERO)` makes the close abortive: dropping the stream
    /// sends a reset, and the peer's next read fails with `ConnectionReset`.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        let value = libc::linger {
            l_onoff: libc::c_int::from(linger.is_some()),
            l_linger: linger.map_or(0, |d| libc::c_int::try_from(d.as_secs()).unwrap_or(libc::c_int::MAX)),
        };
        sys::set_opt(self.as_fd(), libc::SOL_SOCKET, libc::SO_LINGER, value)
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("TcpStream");
        out.field("fd", &self.as_raw_fd());
        if let Ok(a) = self.local_addr() {
            out.field("local", &a);
        }
        if let Ok(a) = self.peer_addr() {
            out.field("peer", &a);
        }
        out.finish()
    }
}

/// A listening TCP socket on the host's reactor.
///
/// ```
/// use infect::host::{Host, net::{TcpListener, TcpStream}};
/// Host::new()?.block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())?;
///     let client = TcpStream::connect(listener.local_addr()?).await?;
///     let (_conn, peer) = listener.accept().await?;
///     assert_eq!(peer, client.local_addr()?);
///     std::io::Result::Ok(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TcpListener {
    fd: AsyncFd,
}

impl TcpListener {
    /// Binds `addr` (`SO_REUSEADDR`; port 0 picks a free one) and listens with a backlog of 1024.
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind_with_backlog(addr, 1024)
    }

    /// [`bind`](Self::bind) with the `listen(2)` backlog given: how many connections the kernel
    /// completes and queues before [`accept`](Self::accept) takes them. Once that queue is full,
    /// further connects wait (the kernel drops their handshakes).
    ///
    /// ```
    /// use infect::host::{Host, net::TcpListener};
    /// Host::new()?.block_on(async {
    ///     let listener = TcpListener::bind_with_backlog("127.0.0.1:0".parse().unwrap(), 1)?;
    ///     assert!(listener.local_addr()?.port() != 0);
    ///     std::io::Result::Ok(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bind_with_backlog(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
        let sa = SockAddr::from_inet(addr);
        let fd = sys::stream_socket(sa.family())?;
        sys::set_opt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1 as libc::c_int)?;
        sys::bind(fd.as_fd(), &sa)?;
        sys::listen(fd.as_fd(), libc::c_int::try_from(backlog).unwrap_or(libc::c_int::MAX))?;
        Ok(TcpListener { fd: wrap(fd)? })
    }

    /// Waits for the next connection (host-aware) and returns it with the peer's address.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (inner, addr) = accept(&self.fd).await?;
        Ok((TcpStream { inner }, inet(addr)?))
    }

    /// The bound address (with the port the kernel picked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet(sys::name(self.fd.as_fd(), false)?)
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener").field("fd", &self.fd.as_raw_fd()).field("local", &self.local_addr().ok()).finish()
    }
}

/// A Unix-domain stream socket on the host's reactor; [`AsyncRead`] + [`AsyncWrite`].
///
/// ```
/// use futures::io::{AsyncReadExt, AsyncWriteExt};
/// use infect::host::{Host, net::UnixStream};
/// Host::new()?.block_on(async {
///     let (mut a, mut b) = UnixStream::pair()?;
///     a.write_all(b"over").await?;
///     drop(a);
///     let mut got = String::new();
///     b.read_to_string(&mut got).await?;
///     assert_eq!(got, "over");
///     std::io::Result::Ok(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct UnixStream {
    inner: Stream,
}

stream_io!(UnixStream);

impl UnixStream {
    /// Connects to the listener bound at `path` (host-aware). A path nobody listens on fails
    /// with `ConnectionRefused` (a bound but closed socket) or `NotFound`; a listener whose
    /// backlog is full with `WouldBlock` (Unix connects do not wait).
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let sa = SockAddr::from_path(path.as_ref())?;
        let fd = sys::stream_socket(libc::AF_UNIX)?;
        Ok(UnixStream { inner: Stream::connect(fd, &sa).await? })
    }

    /// A connected pair (`socketpair(2)`).
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = sys::unix_pair()?;
        Ok((UnixStream { inner: Stream { fd: wrap(a)? } }, UnixStream { inner: Stream { fd: wrap(b)? } }))
    }
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream").field("fd", &self.as_raw_fd()).finish()
    }
}

/// A listening Unix-domain socket on the host's reactor. Dropping it closes the socket but
/// leaves the path on disk (as `std` does): remove it yourself.
///
/// ```
/// use infect::host::{Host, net::{UnixListener, UnixStream}};
/// let path = std::env::temp_dir().join(format!("infect-doc-{}.sock", std::process::id()));
/// Host::new()?.block_on(async {
///     let listener = UnixListener::bind(&path)?;
///     let client = UnixStream::connect(&path).await?;
///     let server = listener.accept().await?;
///     client.write_all(b"x").await?;
///     assert_eq!(server.read(&mut [0u8; 1]).await?, 1);
///     std::io::Result::Ok(())
/// })?;
/// std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct UnixListener {
    fd: AsyncFd,
}

impl UnixListener {
    /// Binds `path` (which must not exist) and listens with a backlog of 1024.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let sa = SockAddr::from_path(path.as_ref())?;
        let fd = sys::stream_socket(libc::AF_UNIX)?;
        sys::bind(fd.as_fd(), &sa)?;
        sys::listen(fd.as_fd(), 1024)?;
        Ok(UnixListener { fd: wrap(fd)? })
    }

    /// Waits for the next connection (host-aware).
    pub async fn accept(&self) -> io::Result<UnixStream> {
        let (inner, _) = accept(&self.fd).await?;
        Ok(UnixStream { inner })
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener").field("fd", &self.fd.as_raw_fd()).finish()
    }
}
