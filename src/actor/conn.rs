//! [`Conn`]: one actor pipe pair, framed, on the reactor; and the cancellation-aware waits the
//! actor layer builds on.
//!
//! Invariants:
//! - **One reader.** Only the task that owns the connection's read loop calls
//!   [`Conn::read_some`]; it feeds a [`FrameDecoder`] and dispatches, so frames are delivered in
//!   pipe order.
//! - **Frames never interleave.** Any task may [`send`](Conn::send); a send takes the
//!   connection's write lock for the whole frame. A frame over the limit is refused
//!   before the lock is taken, so nothing of it is written.
//! - **Cancellation before the first byte only.** Waiting for the lock or for the pipe to take
//!   the first byte is a cancellation point; once a byte of a frame is written the rest is
//!   written regardless (a frame is at most 64 KiB, and a dead reader ends the write with
//!   `EPIPE`). If a send is *dropped* mid-frame anyway (the last resort), the connection notes
//!   it and the next send starts with a lone `0x00`, so the peer skips the torn frame (one
//!   `Corrupt` report) and stays in sync.
//! - Every wait here registers with the guest's cancellation check first, so cancelling the
//!   scope around it wakes and ends it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Poll, Waker};

use crate::guest::check_cancel;
use crate::reactor::Reactor;
use crate::wire::{Msg, encode_frame_fit};
use crate::{Error, Result};

use super::sys;

/// Wraps an OS error with what was being done.
pub(crate) fn os_err(op: &str, e: io::Error) -> Error {
    Error::Os { op: op.to_owned(), source: e.into() }
}

/// The reactor of the loop this task runs on.
pub(crate) fn reactor() -> Result<Reactor> {
    Reactor::current().ok_or(Error::NoActorRuntime)
}

/// Waits until `fd` is readable (or hung up). A cancellation point when `cancellable`.
pub(crate) async fn readable(reactor: &Reactor, fd: RawFd, cancellable: bool) -> Result<()> {
    let mut ready = reactor.readable(fd);
    poll_fn(move |cx| {
        if cancellable {
            check_cancel()?;
        }
        Pin::new(&mut ready).poll(cx).map_err(|e| os_err("poll", e))
    })
    .await
}

/// Waits until `fd` is writable (or its reader is gone). A cancellation point when `cancellable`.
async fn writable(reactor: &Reactor, fd: RawFd, cancellable: bool) -> Result<()> {
    let mut ready = reactor.writable(fd);
    poll_fn(move |cx| {
        if cancellable {
            check_cancel()?;
        }
        Pin::new(&mut ready).poll(cx).map_err(|e| os_err("poll", e))
    })
    .await
}

/// A framed, non-blocking pipe pair: `rx` from the peer, `tx` to it.
pub(crate) struct Conn {
    rx: OwnedFd,
    tx: OwnedFd,
    reactor: Reactor,
    /// The frame limit for sending, delimiter included (changed once, by `Msg::FrameLimit`).
    max_frame: Cell<usize>,
    /// A send holds the write lock.
    busy: Cell<bool>,
    /// Sends waiting for the lock, in arrival order.
    waiters: RefCell<VecDeque<Waker>>,
    /// A frame was torn (a send dropped mid-frame): the next send starts with a delimiter.
    resync: Cell<bool>,
}

impl Conn {
    /// Takes the two descriptors (made non-blocking here).
    pub(crate) fn new(rx: OwnedFd, tx: OwnedFd, reactor: Reactor, max_frame: usize) -> Result<Conn> {
        crate::reactor::fd::set_nonblocking(&rx, true).map_err(|e| os_err("fcntl", e))?;
        crate::reactor::fd::set_nonblocking(&tx, true).map_err(|e| os_err("fcntl", e))?;
        Ok(Conn {
            rx,
            tx,
            reactor,
            max_frame: Cell::new(max_frame),
            busy: Cell::new(false),
            waiters: RefCell::new(VecDeque::new()),
            resync: Cell::new(false),
        })
    }

    /// The frame limit for sending, delimiter included.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame.get()
    }

    /// Changes the frame limit for the frames sent from now on.
    pub(crate) fn set_max_frame(&self, max: usize) {
        self.max_frame.set(max);
    }

    /// Writes `bytes` as they are, bypassing framing and the lock (a test hook for damaged
    /// streams); spins on a full pipe.
    pub(crate) fn write_raw(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match sys::write(self.tx.as_fd(), bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what the pipe has (at least one byte, or `0` at end-of-file). A cancellation point
    /// when `cancellable`.
    ///
    /// `wait_first`: the previous read drained the pipe (it returned less than asked), so wait
    /// for readiness before trying, which saves a read that would only say `EAGAIN`.
    pub(crate) async fn read_some(&self, buf: &mut [u8], cancellable: bool, wait_first: bool) -> Result<usize> {
        if wait_first {
            readable(&self.reactor, self.rx.as_raw_fd(), cancellable).await?;
        }
        loop {
            match sys::read(self.rx.as_fd(), buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    readable(&self.reactor, self.rx.as_raw_fd(), cancellable).await?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(os_err("read", e)),
            }
        }
    }

    /// Sends `msg` as one frame. `Err(Wire(FrameTooLarge))` before anything is written if it
    /// is over the limit (an error report is shortened to fit instead: `encode_frame_fit`);
    /// `Err(Closed)` if the peer is gone.
    pub(crate) async fn send(&self, msg: &Msg) -> Result<()> {
        let frame = encode_frame_fit(msg, self.max_frame.get())?;
        self.send_frames(frame).await
    }

    /// Sends several messages in one write (each its own frame, in order). If any is over the
    /// limit, nothing is sent.
    pub(crate) async fn send_all(&self, msgs: &[&Msg]) -> Result<()> {
        let mut frames = Vec::new();
        for msg in msgs {
            frames.extend(encode_frame_fit(msg, self.max_frame.get())?);
        }
        self.send_frames(frames).await
    }

    /// Writes `bytes` as they are, under the write lock like a frame (the hostile-peer fuzz
    /// target's fake child writes whatever it likes this way).
    #[cfg(any(test, fuzzing))]
    pub(crate) async fn send_raw(&self, bytes: Vec<u8>) -> Result<()> {
        self.send_frames(bytes).await
    }

    async fn send_frames(&self, frame: Vec<u8>) -> Result<()> {
        let _lock = self.lock().await?;
        let mut torn = TornGuard { conn: self, torn: false };
        if self.resync.replace(false) {
            self.write_frame(&[0], &mut torn).await?;
        }
        self.write_frame(&frame, &mut torn).await
    }

    async fn write_frame(&self, frame: &[u8], torn: &mut TornGuard<'_>) -> Result<()> {
        let mut off = 0;
        while off < frame.len() {
            match sys::write(self.tx.as_fd(), &frame[off..]) {
                Ok(n) => {
                    off += n;
                    torn.torn = off < frame.len();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    writable(&self.reactor, self.tx.as_raw_fd(), off == 0).await?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    torn.torn = false;
                    return Err(Error::Closed);
                }
                Err(e) => return Err(os_err("write", e)),
            }
        }
        Ok(())
    }

    async fn lock(&self) -> Result<LockGuard<'_>> {
        poll_fn(|cx| {
            if !self.busy.get() {
                self.busy.set(true);
                return Poll::Ready(Ok::<(), Error>(()));
            }
            check_cancel()?;
            let mut q = self.waiters.borrow_mut();
            if !q.iter().any(|w| w.will_wake(cx.waker())) {
                q.push_back(cx.waker().clone());
            }
            // A wait at one of infect's awaits (the guest's rule for foreign futures).
            crate::cx::note_park();
            Poll::Pending
        })
        .await?;
        Ok(LockGuard { conn: self })
    }
}

struct LockGuard<'a> {
    conn: &'a Conn,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.conn.busy.set(false);
        // Wake every waiter: whoever is polled first takes the lock, the others queue again. A
        // waiter whose send was dropped meanwhile costs one spurious wake-up, nothing more.
        let waiters = std::mem::take(&mut *self.conn.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }
}

/// Notes a frame left half-written when its send is dropped.
struct TornGuard<'a> {
    conn: &'a Conn,
    torn: bool,
}

impl Drop for TornGuard<'_> {
    fn drop(&mut self) {
        if self.torn {
            self.conn.resync.set(true);
        }
    }
}
