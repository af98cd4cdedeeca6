//! One safe wrapper per socket system call of [`host::net`](super). This and
//! `reactor/sys.rs` are where the sockets' `unsafe` lives.
//!
//! Invariants every wrapper keeps (those of `reactor/sys.rs`):
//! - A descriptor argument is a [`BorrowedFd`], open for the whole call.
//! - An address argument is a [`SockAddr`], whose length never exceeds its storage; an address
//!   result is written into one with the kernel told its full size.
//! - A new descriptor is wrapped in an [`OwnedFd`] right after the call that created it, and is
//!   created `SOCK_CLOEXEC | SOCK_NONBLOCK` (`socket`, `accept4`), so no child inherits it and no
//!   call on it blocks the loop.
//! - `-1` becomes [`io::Error::last_os_error`]; nothing retries here.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use libc::{c_int, c_void, socklen_t};

fn cvt(ret: c_int) -> io::Result<c_int> {
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// A socket address in the kernel's layout.
#[derive(Clone, Copy)]
pub(crate) struct SockAddr {
    storage: libc::sockaddr_storage,
    len: socklen_t,
}

impl SockAddr {
    fn empty() -> SockAddr {
        // SAFETY: `sockaddr_storage` is plain old data; all-zero is a valid (AF_UNSPEC) value.
        let storage = unsafe { mem::zeroed() };
        SockAddr { storage, len: mem::size_of::<libc::sockaddr_storage>() as socklen_t }
    }

    /// The address family (`AF_INET`, `AF_INET6`, `AF_UNIX`).
    pub(crate) fn family(&self) -> c_int {
        c_int::from(self.storage.ss_family)
    }

    pub(crate) fn from_inet(addr: SocketAddr) -> SockAddr {
        let mut out = SockAddr::empty();
        match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                    sin_zero: [0; 8],
                };
                // SAFETY: `sockaddr_storage` is larger than and aligned for every sockaddr type.
                unsafe { (&raw mut out.storage).cast::<libc::sockaddr_in>().write(sin) };
                out.len = mem::size_of::<libc::sockaddr_in>() as socklen_t;
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: as above.
                unsafe { (&raw mut out.storage).cast::<libc::sockaddr_in6>().write(sin6) };
                out.len = mem::size_of::<libc::sockaddr_in6>() as socklen_t;
            }
        }
        out
    }

    /// A path address; `InvalidInput` if the path (plus its NUL) does not fit `sun_path`.
    pub(crate) fn from_path(path: &Path) -> io::Result<SockAddr> {
        let bytes = path.as_os_str().as_bytes();
        let mut sun = libc::sockaddr_un { sun_family: libc::AF_UNIX as libc::sa_family_t, sun_path: [0; 108] };
        if bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "unix socket path too long or contains NUL"));
        }
        for (dst, &src) in sun.sun_path.iter_mut().zip(bytes) {
            *dst = src as libc::c_char;
        }
        let mut out = SockAddr::empty();
        // SAFETY: as in `from_inet`.
        unsafe { (&raw mut out.storage).cast::<libc::sockaddr_un>().write(sun) };
        out.len = (mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1) as socklen_t;
        Ok(out)
    }

    /// The IP address and port, if this is an `AF_INET`/`AF_INET6` address.
    pub(crate) fn socket_addr(&self) -> Option<SocketAddr> {
        match self.family() {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a `sockaddr_in`.
                let sin = unsafe { (&raw const self.storage).cast::<libc::sockaddr_in>().read() };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a `sockaddr_in6`.
                let sin6 = unsafe { (&raw const self.storage).cast::<libc::sockaddr_in6>().read() };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        (&raw const self.storage).cast()
    }
}

/// `socket(domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)`.
pub(crate) fn stream_socket(domain: c_int) -> io::Result<OwnedFd> {
    // SAFETY: `socket` takes no pointers; it returns a new descriptor or -1.
    let fd = cvt(unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by `socket`: open and owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `connect(2)`: `EINPROGRESS` on a non-blocking socket means "wait writable, then `SO_ERROR`".
pub(crate) fn connect(fd: BorrowedFd<'_>, addr: &SockAddr) -> io::Result<()> {
    // SAFETY: `addr` points at `addr.len` initialised bytes of a sockaddr; `fd` is open.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), addr.as_ptr(), addr.len) }).map(drop)
}

/// `bind(2)`.
pub(crate) fn bind(fd: BorrowedFd<'_>, addr: &SockAddr) -> io::Result<()> {
    // SAFETY: as in `connect`.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), addr.as_ptr(), addr.len) }).map(drop)
}

/// `listen(2)`.
pub(crate) fn listen(fd: BorrowedFd<'_>, backlog: c_int) -> io::Result<()> {
    // SAFETY: no pointers; `fd` is open.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(drop)
}

/// `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`: the connection and the peer's address.
pub(crate) fn accept(fd: BorrowedFd<'_>) -> io::Result<(OwnedFd, SockAddr)> {
    let mut addr = SockAddr::empty();
    // SAFETY: `addr.storage` is writable for `addr.len` bytes, which the kernel is told and
    // updates to the length it wrote; `fd` is open.
    let new = cvt(unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            (&raw mut addr.storage).cast(),
            &mut addr.len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: `new` was just returned by `accept4`: open and owned by nothing else.
    Ok((unsafe { OwnedFd::from_raw_fd(new) }, addr))
}

/// `getsockname(2)` (`peer == false`) or `getpeername(2)`.
pub(crate) fn name(fd: BorrowedFd<'_>, peer: bool) -> io::Result<SockAddr> {
    let mut addr = SockAddr::empty();
    let call = if peer { libc::getpeername } else { libc::getsockname };
    // SAFETY: as in `accept`.
    cvt(unsafe { call(fd.as_raw_fd(), (&raw mut addr.storage).cast(), &mut addr.len) })?;
    Ok(addr)
}

/// `shutdown(2)`.
pub(crate) fn shutdown(fd: BorrowedFd<'_>, how: std::net::Shutdown) -> io::Result<()> {
    let how = match how {
        std::net::Shutdown::Read => libc::SHUT_RD,
        std::net::Shutdown::Write => libc::SHUT_WR,
        std::net::Shutdown::Both => libc::SHUT_RDWR,
    };
    // SAFETY: no pointers; `fd` is open.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), how) }).map(drop)
}

/// `setsockopt` of a plain value.
pub(crate) fn set_opt<T: Copy>(fd: BorrowedFd<'_>, level: c_int, name: c_int, value: T) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of `size_of::<T>()` bytes; the kernel only reads it.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast::<c_void>(),
            mem::size_of::<T>() as socklen_t,
        )
    })
    .map(drop)
}

/// `getsockopt(SOL_SOCKET, SO_ERROR)`: the pending error (clearing it), if any.
pub(crate) fn take_error(fd: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    let mut err: c_int = 0;
    let mut len = mem::size_of::<c_int>() as socklen_t;
    // SAFETY: `err` is a writable `c_int` and the kernel is told its size.
    cvt(unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ERROR, (&raw mut err).cast(), &mut len)
    })?;
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
}

/// `socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC)`.
pub(crate) fn unix_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [c_int; 2] = [-1, -1];
    // SAFETY: `fds` is a writable array of two `c_int`s, which `socketpair` fills in.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: both were just returned by `socketpair`: open and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
