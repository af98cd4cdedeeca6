//! [`Peer`]: the connection to one other actor, the same on both sides (a parent's view of a
//! child, a child's of its parent): a [`Transport`] underneath, frames written whole under a
//! lock, one [`FrameReader`] that decodes what arrives, and the table of the calls open on the
//! connection ([`CallSlot`]s by call id). What the messages *mean* is the sides' business
//! (`parent`, `child`); errors cross it through [`codec`](super::codec).
//!
//! Invariants:
//! - **One reader.** Only the task that owns the connection's [`FrameReader`] reads the
//!   transport; it decodes and dispatches, so frames are delivered in the order sent.
//! - **Frames never interleave.** Any task may [`send`](Peer::send); a send takes the
//!   connection's write lock for the whole frame. A frame over the limit is refused
//!   before the lock is taken, so nothing of it is written.
//! - **Cancellation before the first byte only.** Waiting for the lock or for the transport
//!   to take the first byte is a cancellation point; once a byte of a frame is written the rest
//!   is written regardless (a frame is at most 64 KiB, and a dead reader ends the write with
//!   `EPIPE`). If a send is *dropped* mid-frame anyway (the last resort), the connection notes
//!   it and the next send starts with a lone `0x00`, so the peer skips the torn frame (one
//!   `Corrupt` report) and stays in sync.
//! - **A closed connection answers every waiter.** Once the side that owns the connection
//!   [`close`](Peer::close)s it (the parent, when the child is reaped), every open call's
//!   slot hears of it and every later call gets the same error.
//! - Every wait here registers with the guest's cancellation check, so cancelling the scope
//!   around it wakes and ends it.
//! - The transport is the only thing that knows pipes: an in-memory pair
//!   (`transport::mem_pipe`) runs the same connection in one process.

pub(crate) mod calls;
pub(crate) mod transport;

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::Poll;

use crate::guest::check_cancel;
use crate::reactor::Reactor;
use crate::sync::{VecMap, Waiters};
use crate::wire::{Cid, DEFAULT_MAX_FRAME, FrameDecoder, Msg, WireError, encode_frame_fit};
use crate::{Error, Result};

pub(crate) use calls::{CallSlot, MIN_WINDOW};
pub(crate) use transport::{MemTransport, Transport, mem_pipe};

use super::sys::os_err;

/// The smallest frame limit a connection accepts, delimiter included: the handshake and
/// error reports (shortened to fit) must stay sendable.
pub(crate) const MIN_FRAME: usize = 256;

/// The reactor of the loop this task runs on.
pub(crate) fn reactor() -> Result<Reactor> {
    Reactor::current().ok_or(Error::NoActorRuntime)
}

/// The connection to one peer actor (see the [module docs](self)).
pub(crate) struct Peer {
    transport: Box<dyn Transport>,
    /// The frame limit for sending, delimiter included (changed once, by `Msg::FrameLimit`).
    max_frame: Cell<usize>,
    /// A send holds the write lock.
    busy: Cell<bool>,
    /// Sends waiting for the lock.
    lock_waiters: Waiters,
    /// A frame was torn (a send dropped mid-frame): the next send starts with a delimiter.
    resync: Cell<bool>,
    /// The inboxes of the calls open on this connection, by call id.
    calls: RefCell<VecMap<Cid, Rc<CallSlot>>>,
    /// The next call id this side opens (ids below it were opened).
    next_cid: Cell<Cid>,
    /// Set once the connection is closed: what every later call gets.
    closed: RefCell<Option<Error>>,
}

impl Peer {
    /// A connection over `transport`, sending frames of at most `max_frame` bytes.
    pub(crate) fn new(transport: Box<dyn Transport>, max_frame: usize) -> Peer {
        Peer {
            transport,
            max_frame: Cell::new(max_frame),
            busy: Cell::new(false),
            lock_waiters: Waiters::default(),
            resync: Cell::new(false),
            calls: RefCell::new(VecMap::default()),
            next_cid: Cell::new(1),
            closed: RefCell::new(None),
        }
    }

    /// The transport underneath (for its one reader).
    pub(crate) fn transport(&self) -> &dyn Transport {
        &*self.transport
    }

    /// The frame limit for sending, delimiter included.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame.get()
    }

    /// Changes the frame limit for the frames sent from now on.
    pub(crate) fn set_max_frame(&self, max: usize) {
        self.max_frame.set(max);
    }

    // ------------------------------------------------------------------ the call table

    /// Opens a call of this side's: a fresh id and its inbox, with a stream window of
    /// `window` items each way.
    pub(crate) fn open_call(&self, window: usize) -> (Cid, Rc<CallSlot>) {
        let cid = self.next_cid.get();
        self.next_cid.set(cid + 1);
        let slot = Rc::new(CallSlot::new(window));
        self.calls.borrow_mut().insert(cid, slot.clone());
        (cid, slot)
    }

    /// Whether this side ever opened call `cid`.
    pub(crate) fn opened(&self, cid: Cid) -> bool {
        cid < self.next_cid.get()
    }

    /// Lists the inbox of call `cid`, opened by the peer.
    pub(crate) fn accept_call(&self, cid: Cid, slot: Rc<CallSlot>) {
        self.calls.borrow_mut().insert(cid, slot);
    }

    /// The inbox of call `cid`, if it is open.
    pub(crate) fn call(&self, cid: Cid) -> Option<Rc<CallSlot>> {
        self.calls.borrow().get(&cid).cloned()
    }

    /// Forgets call `cid` (its late traffic is dropped from now on).
    pub(crate) fn forget_call(&self, cid: Cid) {
        self.calls.borrow_mut().remove(&cid);
    }

    /// The ids of the calls open on this connection, in id order (for the debug dump).
    pub(crate) fn open_calls(&self) -> Vec<Cid> {
        let mut ids: Vec<Cid> = self.calls.borrow().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The most messages any open call holds (the fuzz target's memory check).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn largest_inbox(&self) -> usize {
        self.calls.borrow().values().map(|s| s.len()).max().unwrap_or(0)
    }

    /// Closes the connection with `e`: every open call's inbox hears of it (a context's block
    /// is interrupted), and every later call gets `e`.
    pub(crate) fn close(&self, e: Error) {
        *self.closed.borrow_mut() = Some(e.clone());
        let slots: Vec<Rc<CallSlot>> = self.calls.borrow().values().cloned().collect();
        for s in slots {
            s.peer_gone(&e);
        }
    }

    /// The error the connection was closed with, once it was.
    pub(crate) fn closed_error(&self) -> Option<Error> {
        self.closed.borrow().clone()
    }

    // ------------------------------------------------------------------ writing

    /// Writes `bytes` as they are, bypassing framing and the lock, from outside any task (a
    /// panic hook, a test hook for damaged streams).
    pub(crate) fn write_raw(&self, bytes: &[u8]) -> io::Result<()> {
        self.transport.write_now(bytes)
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
        let mut torn = TornGuard { peer: self, torn: false };
        if self.resync.replace(false) {
            self.write_frame(&[0], &mut torn).await?;
        }
        self.write_frame(&frame, &mut torn).await
    }

    /// Writes all of `frame`. A cancellation point until its first byte is written: the first
    /// attempt is made whatever the scope says, later ones check it first (while `off == 0`).
    async fn write_frame(&self, frame: &[u8], torn: &mut TornGuard<'_>) -> Result<()> {
        let mut off = 0;
        let mut first = true;
        poll_fn(|cx| {
            loop {
                if off >= frame.len() {
                    return Poll::Ready(Ok(()));
                }
                if off == 0 && !first {
                    check_cancel()?;
                }
                first = false;
                match self.transport.poll_write(cx, &frame[off..]) {
                    Poll::Ready(Ok(n)) => {
                        off += n;
                        torn.torn = off < frame.len();
                    }
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                        torn.torn = false;
                        return Poll::Ready(Err(Error::Closed));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(os_err("write", e))),
                    Poll::Pending => {
                        if off == 0 {
                            check_cancel()?;
                        }
                        return Poll::Pending;
                    }
                }
            }
        })
        .await
    }

    async fn lock(&self) -> Result<LockGuard<'_>> {
        poll_fn(|cx| {
            if !self.busy.get() {
                self.busy.set(true);
                return Poll::Ready(Ok::<(), Error>(()));
            }
            check_cancel()?;
            self.lock_waiters.register(cx.waker());
            Poll::Pending
        })
        .await?;
        Ok(LockGuard { peer: self })
    }
}

struct LockGuard<'a> {
    peer: &'a Peer,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.peer.busy.set(false);
        // Wake every waiter: whoever is polled first takes the lock, the others queue again. A
        // waiter whose send was dropped meanwhile costs one spurious wake-up, nothing more.
        self.peer.lock_waiters.wake_all();
    }
}

/// Notes a frame left half-written when its send is dropped.
struct TornGuard<'a> {
    peer: &'a Peer,
    torn: bool,
}

impl Drop for TornGuard<'_> {
    fn drop(&mut self) {
        if self.torn {
            self.peer.resync.set(true);
        }
    }
}

/// What the reader got next.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A frame: a message, or the error that made it unreadable (skipped; the stream goes on).
    Frame(core::result::Result<Msg, WireError>),
    /// End-of-file, and the error of a frame it cut short, if any.
    End(Option<WireError>),
}

/// The connection's one frame reader (both sides use it, and the child's handshake): bytes
/// from a transport into a bounded decoder, out as [`Incoming`] items in order.
pub(crate) struct FrameReader {
    decoder: Box<FrameDecoder<DEFAULT_MAX_FRAME>>,
    buf: Vec<u8>,
    /// The last read drained the transport (it returned less than asked): wait for readiness
    /// before the next one, which saves a read that would only find nothing.
    drained: bool,
}

impl FrameReader {
    /// A reader skipping frames over `limit` bytes (delimiter included).
    pub(crate) fn new(limit: usize) -> FrameReader {
        FrameReader { decoder: Box::new(FrameDecoder::with_limit(limit)), buf: vec![0u8; 16 * 1024], drained: false }
    }

    /// Changes the frame limit for the frames read from now on.
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.decoder.set_limit(limit);
    }

    /// The next item from `transport`, reading as needed. Waiting for bytes is a cancellation
    /// point when `cancellable` (`Err(Cancelled)`); a failed read is `Err(Os)`.
    pub(crate) async fn next(&mut self, transport: &dyn Transport, cancellable: bool) -> Result<Incoming> {
        loop {
            if let Some(item) = self.decoder.next() {
                return Ok(Incoming::Frame(item));
            }
            let got = read_some(transport, &mut self.buf, cancellable, self.drained).await?;
            self.drained = got < self.buf.len();
            if got == 0 {
                return Ok(Incoming::End(self.decoder.finish()));
            }
            self.decoder.push(&self.buf[..got]);
        }
    }
}

/// Reads what `transport` has (at least one byte, or `0` at end-of-file). A cancellation point
/// when `cancellable`: checked before every wait, and before the first attempt when
/// `wait_first` (the previous read drained it, so wait for readiness before trying).
async fn read_some(transport: &dyn Transport, buf: &mut [u8], cancellable: bool, wait_first: bool) -> Result<usize> {
    let mut waiting = wait_first;
    let mut first = true;
    poll_fn(|cx| {
        if cancellable && (waiting || !first) {
            check_cancel()?;
        }
        first = false;
        if waiting {
            match transport.poll_readable(cx) {
                Poll::Ready(Ok(())) => waiting = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(os_err("poll", e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        match transport.poll_read(cx, buf) {
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(n)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(os_err("read", e))),
            Poll::Pending => {
                if cancellable {
                    check_cancel()?;
                }
                Poll::Pending
            }
        }
    })
    .await
}

impl Peer {
    /// A connection over the pipe pair `rx`/`tx` on this loop's reactor (made non-blocking).
    pub(crate) fn pipe(rx: std::os::fd::OwnedFd, tx: std::os::fd::OwnedFd, max_frame: usize) -> Result<Peer> {
        let t = transport::PipeTransport::new(rx, tx, &reactor()?).map_err(|e| os_err("fcntl", e))?;
        Ok(Peer::new(Box::new(t), max_frame))
    }
}

impl FrameReader {
    /// Ends the stream here (a read failed): the error of a frame it cut short, if any.
    pub(crate) fn finish(&mut self) -> Option<WireError> {
        self.decoder.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::pin::pin;
    use std::rc::Rc;
    use std::task::{Context, Poll, Waker};

    use super::transport::{MEM_PIPE_CAPACITY, mem_pipe};
    use super::{FrameReader, Incoming, Peer};
    use crate::guest::{self, GuestConfig};
    use crate::time::VirtualClock;
    use crate::wire::{DEFAULT_MAX_FRAME, Msg, WireError, encode_frame};

    fn ret(cid: u64, n: usize) -> Msg {
        Msg::Return { cid, value: vec![7; n] }
    }

    /// A send dropped after part of its frame went out leaves the stream in sync: the next send
    /// starts with a delimiter, so the reader skips the torn frame (one error, of exactly the
    /// bytes that went out) and reads on; a full transport makes a send wait for room, nothing
    /// lost. Over the in-memory transport, so the torn point is exact.
    #[test]
    fn a_torn_frame_costs_one_error_and_the_stream_reads_on() {
        let (near, far) = mem_pipe();
        let first = ret(1, 60_000);
        let first_len = encode_frame(&first, DEFAULT_MAX_FRAME).expect("fits").len();
        let torn_len = MEM_PIPE_CAPACITY - first_len;
        let r = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async move {
            let peer = Peer::new(Box::new(near), DEFAULT_MAX_FRAME);
            let items = Rc::new(RefCell::new(Vec::new()));
            let seen = items.clone();
            guest::open_nursery(async |n| {
                n.start_soon(async move {
                    let mut reader = FrameReader::new(DEFAULT_MAX_FRAME);
                    loop {
                        match reader.next(&far, true).await? {
                            Incoming::Frame(Ok(m)) => {
                                let cid = m.cid();
                                seen.borrow_mut().push(Ok(cid));
                                if cid == Some(3) {
                                    return Ok(());
                                }
                            }
                            Incoming::Frame(Err(e)) => seen.borrow_mut().push(Err(e)),
                            Incoming::End(_) => return Ok(()),
                        }
                    }
                })?;
                peer.send(&first).await?;
                {
                    // The rest of the pipe takes only part of this frame: the send waits for
                    // room, and is dropped there.
                    let second = ret(2, 10_000);
                    let mut send = pin!(peer.send(&second));
                    assert!(send.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending());
                }
                assert!(peer.resync.get(), "the torn frame is noted");
                peer.send(&ret(3, 10)).await
            })
            .await?;
            Ok(items.take())
        });
        let items = r.expect("the run ends");
        assert_eq!(items.len(), 3, "{items:?}");
        assert_eq!(items[0], Ok(Some(1)));
        assert!(
            matches!(&items[1], Err(WireError::Corrupt { size } | WireError::Undecodable { size, .. }) if *size == torn_len + 1),
            "{:?}, torn at {torn_len}",
            items[1]
        );
        assert_eq!(items[2], Ok(Some(3)));
    }

    /// Waiting for room is a cancellation point only before a frame's first byte: a send
    /// cancelled there writes nothing.
    #[test]
    fn a_send_cancelled_before_its_first_byte_writes_nothing() {
        let (near, far) = mem_pipe();
        let r = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async move {
            let peer = Peer::new(Box::new(near), DEFAULT_MAX_FRAME);
            // Fill the pipe to the last byte.
            let fill = vec![1u8; MEM_PIPE_CAPACITY];
            peer.send_raw(fill).await?;
            let scope = guest::CancelScope::new();
            scope.cancel();
            let cancelled = scope.run(peer.send(&ret(9, 10))).await;
            let mut buf = vec![0u8; 2 * MEM_PIPE_CAPACITY];
            let cx = &mut Context::from_waker(Waker::noop());
            let Poll::Ready(Ok(n)) = super::Transport::poll_read(&far, cx, &mut buf) else { panic!("bytes") };
            Ok((cancelled, n, peer.resync.get(), super::Transport::poll_read(&far, cx, &mut buf).is_pending()))
        });
        assert_eq!(r, Ok((Ok(None), MEM_PIPE_CAPACITY, false, true)));
    }
}
