//! The transport seam: how a [`Peer`](super::Peer) moves bytes to and from the other actor.
//!
//! A [`Transport`] is a byte stream in each direction, polled like `futures::io`: a read
//! returns at least one byte or `0` at end-of-file, a write takes at least one byte or fails
//! with [`io::ErrorKind::BrokenPipe`] once the reader is gone. Everything above it (framing,
//! the write lock, cancellation, the call table) is the connection's and does not change with
//! the transport. Two implementations:
//! - [`PipeTransport`]: a pipe pair on the reactor, each end an [`AsyncFd`] (the crate's one
//!   non-blocking I/O loop). What a spawned child and its parent use; a launcher's
//!   stdin/stdout is the same thing on other descriptors.
//! - `MemTransport`: an in-memory pipe pair (`mem_pipe`) with a bounded buffer per
//!   direction, for a whole actor tree in one process: the simulated world of
//!   [`sim`](crate::sim) (which wraps it to inject faults), and the tests (the fuzz target
//!   keeps a real pipe pair).
//!
//! Invariants:
//! - A transport never blocks the thread in `poll_*` (except `BlockingRead`, used once, for
//!   the child's handshake before any loop runs) and registers the waker it was polled with
//!   whenever it returns `Pending`.
//! - At most one task polls each direction at a time (the connection's single reader; the
//!   holder of its write lock); a pipe keeps one waker per direction, the in-memory pair a
//!   [`Waiters`](crate::sync::Waiters) list.
//! - Dropping a transport closes both of its directions: the peer reads end-of-file and its
//!   writes fail with `BrokenPipe`.

use crate::sync::Waiters;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::reactor::Reactor;
use crate::reactor::fd::AsyncFd;

/// A byte stream to the peer, one direction each way (see the [module docs](self)).
pub(crate) trait Transport {
    /// Reads what is there into `buf`: at least one byte, `0` at end-of-file, or `Pending`
    /// (waker registered) when nothing is there yet.
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;

    /// Waits until a read would find bytes (or end-of-file), without reading: lets a reader
    /// that just drained the stream skip a read that would only say "nothing yet".
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Writes some of `buf` (at least one byte), `Pending` while there is no room, or
    /// `BrokenPipe` once the reader is gone.
    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;

    /// Writes all of `bytes` now, from outside any task (a panic hook, a test hook): waits for
    /// room by yielding the thread, never through the loop.
    fn write_now(&self, bytes: &[u8]) -> io::Result<()>;
}

/// A pipe pair on the reactor: `rx` from the peer, `tx` to it.
pub(crate) struct PipeTransport {
    rx: AsyncFd,
    tx: AsyncFd,
}

impl PipeTransport {
    /// Takes the two descriptors (made non-blocking here).
    pub(crate) fn new(rx: OwnedFd, tx: OwnedFd, reactor: &Reactor) -> io::Result<PipeTransport> {
        Ok(PipeTransport { rx: AsyncFd::new(rx, reactor)?, tx: AsyncFd::new(tx, reactor)? })
    }
}

impl Transport for PipeTransport {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.rx.poll_read(cx, buf)
    }

    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.rx.poll_readable(cx)
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.tx.poll_write(cx, buf)
    }

    fn write_now(&self, bytes: &[u8]) -> io::Result<()> {
        write_fd_now(self.tx.as_fd(), bytes)
    }
}

/// Writes all of `bytes` to a non-blocking `fd`, yielding the thread while the pipe is full.
fn write_fd_now(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match super::super::sys::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A blocking read end, for the one read a child makes before any loop runs (its
/// `SpawnSpec`): `poll_read` blocks the thread until bytes come and is never `Pending`.
pub(crate) struct BlockingRead<'a>(pub(crate) BorrowedFd<'a>);

impl Transport for BlockingRead<'_> {
    fn poll_read(&self, _cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            match super::super::sys::read(self.0, buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_readable(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_write(&self, _cx: &mut Context<'_>, _buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }

    fn write_now(&self, _bytes: &[u8]) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// How many bytes an in-memory direction holds before a write waits (a Linux pipe's default).
pub(crate) const MEM_PIPE_CAPACITY: usize = 64 * 1024;

/// One direction of an in-memory pipe.
#[derive(Default)]
struct MemDir {
    state: RefCell<MemState>,
    /// The task waiting for bytes (or end-of-file).
    reader: Waiters,
    /// The task waiting for room.
    writer: Waiters,
}

#[derive(Default)]
struct MemState {
    buf: VecDeque<u8>,
    /// The writing side is gone: the reader gets end-of-file once `buf` is empty.
    writer_gone: bool,
    /// The reading side is gone: writes fail with `BrokenPipe`.
    reader_gone: bool,
}

/// One end of an in-memory pipe pair (see [`mem_pipe`]): reads what the other end wrote,
/// writes what it reads. `!Send`: both ends live on one thread.
pub(crate) struct MemTransport {
    rx: Rc<MemDir>,
    tx: Rc<MemDir>,
}

/// Two connected in-memory ends, each direction bounded by [`MEM_PIPE_CAPACITY`] bytes.
pub(crate) fn mem_pipe() -> (MemTransport, MemTransport) {
    let ab = Rc::new(MemDir::default());
    let ba = Rc::new(MemDir::default());
    (MemTransport { rx: ba.clone(), tx: ab.clone() }, MemTransport { rx: ab, tx: ba })
}

impl MemTransport {
    /// Closes the writing direction only (a peer that hung up mid-stream): the other end reads
    /// what is buffered, then end-of-file.
    pub(crate) fn shutdown_write(&self) {
        self.tx.state.borrow_mut().writer_gone = true;
        self.tx.reader.wake_all();
    }
}

impl Transport for MemTransport {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut d = self.rx.state.borrow_mut();
        if d.buf.is_empty() {
            if d.writer_gone || buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            drop(d);
            self.rx.reader.register(cx.waker());
            return Poll::Pending;
        }
        let n = buf.len().min(d.buf.len());
        for (b, x) in buf.iter_mut().zip(d.buf.drain(..n)) {
            *b = x;
        }
        drop(d);
        self.rx.writer.wake_all();
        Poll::Ready(Ok(n))
    }

    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let d = self.rx.state.borrow();
        if !d.buf.is_empty() || d.writer_gone {
            return Poll::Ready(Ok(()));
        }
        drop(d);
        self.rx.reader.register(cx.waker());
        Poll::Pending
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut d = self.tx.state.borrow_mut();
        if d.reader_gone {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = MEM_PIPE_CAPACITY - d.buf.len();
        if room == 0 && !buf.is_empty() {
            drop(d);
            self.tx.writer.register(cx.waker());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        d.buf.extend(&buf[..n]);
        drop(d);
        self.tx.reader.wake_all();
        Poll::Ready(Ok(n))
    }

    fn write_now(&self, bytes: &[u8]) -> io::Result<()> {
        // No task to wait for room in: the buffer takes it all.
        let mut d = self.tx.state.borrow_mut();
        if d.reader_gone {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        d.buf.extend(bytes);
        drop(d);
        self.tx.reader.wake_all();
        Ok(())
    }
}

impl Drop for MemTransport {
    fn drop(&mut self) {
        self.tx.state.borrow_mut().writer_gone = true;
        self.tx.reader.wake_all();
        {
            let mut d = self.rx.state.borrow_mut();
            d.reader_gone = true;
            d.buf.clear();
        }
        self.rx.writer.wake_all();
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll, Waker};

    use super::{MEM_PIPE_CAPACITY, Transport, mem_pipe};

    /// Bytes cross in order; a full direction makes the writer wait until the reader takes
    /// some; dropping one end gives the other end-of-file and `BrokenPipe`.
    #[test]
    fn a_mem_pipe_is_a_bounded_pipe_pair() {
        let (a, b) = mem_pipe();
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = [0u8; 8];
        assert!(b.poll_read(&mut cx, &mut buf).is_pending());
        assert!(b.poll_readable(&mut cx).is_pending());
        assert!(matches!(a.poll_write(&mut cx, b"hello"), Poll::Ready(Ok(5))));
        assert!(matches!(b.poll_readable(&mut cx), Poll::Ready(Ok(()))));
        assert!(matches!(b.poll_read(&mut cx, &mut buf[..3]), Poll::Ready(Ok(3))));
        assert_eq!(&buf[..3], b"hel");
        assert!(matches!(b.poll_read(&mut cx, &mut buf), Poll::Ready(Ok(2))));
        assert_eq!(&buf[..2], b"lo");

        let big = vec![7u8; MEM_PIPE_CAPACITY + 10];
        assert!(matches!(a.poll_write(&mut cx, &big), Poll::Ready(Ok(n)) if n == MEM_PIPE_CAPACITY));
        assert!(a.poll_write(&mut cx, &big[..10]).is_pending());
        assert!(matches!(b.poll_read(&mut cx, &mut buf), Poll::Ready(Ok(8))));
        assert!(matches!(a.poll_write(&mut cx, &big[..10]), Poll::Ready(Ok(8))));

        // The other direction is its own.
        assert!(matches!(b.poll_write(&mut cx, b"back"), Poll::Ready(Ok(4))));
        assert!(matches!(a.poll_read(&mut cx, &mut buf), Poll::Ready(Ok(4))));

        drop(a);
        assert!(matches!(b.poll_read(&mut cx, &mut buf), Poll::Ready(Ok(8))), "buffered bytes first");
        let mut rest = vec![0u8; MEM_PIPE_CAPACITY];
        assert!(matches!(b.poll_read(&mut cx, &mut rest), Poll::Ready(Ok(n)) if n == MEM_PIPE_CAPACITY - 8));
        assert!(matches!(b.poll_read(&mut cx, &mut buf), Poll::Ready(Ok(0))), "then end-of-file");
        let e = match b.poll_write(&mut cx, b"x") {
            Poll::Ready(Err(e)) => e.kind(),
            other => panic!("{other:?}"),
        };
        assert_eq!(e, std::io::ErrorKind::BrokenPipe);
    }
}
