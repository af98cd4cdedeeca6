//! Guest synchronisation: [`Event`] and the bounded memory [`channel`].
//!
//! Both are single-threaded (`Rc`) and usable from host code on the same thread too: a host
//! task may `set` a guest event or `send_nowait` into a guest channel, and the woken guest task
//! runs at the guest's next tick. Their awaits are cancellation-aware when polled by a guest
//! task and plain elsewhere. Like every guest await they check for cancellation *first*
//! (trio's `checkpoint_if_cancelled`): inside a cancelled scope they return
//! [`Error::Cancelled`] even when they could complete at once (a set event, a buffered value,
//! room in the buffer). The non-waiting forms (`is_set`, `send_nowait`, `receive_nowait`) never check.
//!
//! Channel invariants: at most `capacity` values are buffered; values come out in the order
//! they went in; once every sender is gone the receiver drains the buffer and then sees
//! end-of-channel (`receive` fails with [`Error::EndOfChannel`], `try_next` gives `Ok(None)`);
//! once the receiver is gone a send fails with
//! [`Error::Closed`] and a `send_nowait` hands the value back.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use core::cell::{Cell, RefCell};
use core::future::poll_fn;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::scope::check_cancel;
use crate::sync::Waiters;
use crate::{Error, Result};

#[derive(Default)]
struct EventInner {
    set: Cell<bool>,
    waiters: Waiters,
}

/// A one-shot flag that tasks can wait for (trio's `Event`). Clones share the flag.
///
/// ```
/// use infect::guest::{self, Event};
/// let r = guest::run(async {
///     let ev = Event::new();
///     guest::open_nursery(async |n| {
///         let e = ev.clone();
///         n.start_soon(async move { e.set(); Ok(()) })?;
///         ev.wait().await
///     })
///     .await
/// });
/// assert_eq!(r, Ok(Some(())));
/// ```
#[derive(Clone, Default)]
pub struct Event {
    inner: Rc<EventInner>,
}

impl core::fmt::Debug for Event {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}

impl Event {
    /// An unset event.
    pub fn new() -> Event {
        Event::default()
    }

    /// Sets the event and wakes every waiter. Idempotent.
    pub fn set(&self) {
        if !self.inner.set.replace(true) {
            self.inner.waiters.wake_all();
        }
    }

    /// Whether the event is set.
    pub fn is_set(&self) -> bool {
        self.inner.set.get()
    }

    /// Waits until the event is set (cancellation-aware in a guest task).
    pub async fn wait(&self) -> Result<()> {
        poll_fn(|cx| {
            check_cancel()?;
            if self.inner.set.get() {
                return Poll::Ready(Ok(()));
            }
            self.inner.waiters.register(cx.waker());
            Poll::Pending
        })
        .await
    }
}

struct Chan<T> {
    buf: RefCell<VecDeque<T>>,
    capacity: usize,
    senders: Cell<usize>,
    receiver: Cell<bool>,
    recv_waiters: Waiters,
    send_waiters: Waiters,
}

/// Creates a bounded memory channel holding up to `capacity` values (at least 1).
///
/// ```
/// use infect::guest::{self, channel};
/// let r = guest::run(async {
///     let (tx, mut rx) = channel::<u32>(2);
///     guest::open_nursery(async |n| {
///         n.start_soon(async move {
///             for i in 0..5 { tx.send(i).await?; }
///             Ok(())
///         })?;
///         let mut got = Vec::new();
///         while let Some(v) = rx.try_next().await? { got.push(v); }
///         Ok(got)
///     })
///     .await
/// });
/// assert_eq!(r, Ok(Some(vec![0, 1, 2, 3, 4])));
/// ```
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let chan = Rc::new(Chan {
        buf: RefCell::new(VecDeque::new()),
        capacity: capacity.max(1),
        senders: Cell::new(1),
        receiver: Cell::new(true),
        recv_waiters: Waiters::default(),
        send_waiters: Waiters::default(),
    });
    (Sender { chan: chan.clone() }, Receiver { chan })
}

/// [`Receiver::receive_nowait`] found the channel empty while senders remain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the channel is empty")]
pub struct Empty;

/// The sending half of a [`channel`]. Clone it for more senders; drop every clone to end the
/// channel.
pub struct Sender<T> {
    chan: Rc<Chan<T>>,
}

/// Why a `send_nowait` did not go through (a guest channel's [`Sender::send_nowait`], a linked
/// pair's [`HostChannel::send_nowait`](crate::to_host::HostChannel::send_nowait)); the value is
/// handed back. As an [`Error`] (`?`): [`Error::Full`], or the error of the gone side.
///
/// ```
/// use infect::{Error, guest::{self, SendNowaitError}};
///
/// let (tx, rx) = guest::channel::<u32>(1);
/// assert_eq!(tx.send_nowait(1), Ok(()));
/// assert_eq!(tx.send_nowait(2), Err(SendNowaitError::Full(2)));
/// drop(rx);
/// assert_eq!(tx.send_nowait(3), Err(SendNowaitError::Gone(3, Error::Closed)));
/// assert_eq!(Error::from(SendNowaitError::Full(4)), Error::Full);
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendNowaitError<T> {
    /// The receiving side's buffer is full.
    #[error("the channel is full")]
    Full(T),
    /// The receiving side is gone; the error says how ([`Error::Closed`] for a guest channel's
    /// dropped receiver, the guest side's end for a linked pair).
    #[error("the receiving side is gone: {1}")]
    Gone(T, Error),
}

impl<T> From<SendNowaitError<T>> for Error {
    fn from(e: SendNowaitError<T>) -> Error {
        match e {
            SendNowaitError::Full(_) => Error::Full,
            SendNowaitError::Gone(_, e) => e,
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.senders.set(self.chan.senders.get() + 1);
        Sender { chan: self.chan.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let n = self.chan.senders.get() - 1;
        self.chan.senders.set(n);
        if n == 0 {
            self.chan.recv_waiters.wake_all();
        }
    }
}

impl<T> core::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sender").field("buffered", &self.chan.buf.borrow().len()).finish()
    }
}

impl<T> Sender<T> {
    /// Sends without waiting.
    pub fn send_nowait(&self, value: T) -> core::result::Result<(), SendNowaitError<T>> {
        if !self.chan.receiver.get() {
            return Err(SendNowaitError::Gone(value, Error::Closed));
        }
        let mut buf = self.chan.buf.borrow_mut();
        if buf.len() >= self.chan.capacity {
            return Err(SendNowaitError::Full(value));
        }
        buf.push_back(value);
        drop(buf);
        self.chan.recv_waiters.wake_all();
        Ok(())
    }

    /// Sends, waiting for room (back-pressure). [`Error::Closed`] if the receiver is gone
    /// (the value is dropped), [`Error::Cancelled`] in a cancelled scope (the value is dropped).
    pub async fn send(&self, value: T) -> Result<()> {
        let mut slot = Some(value);
        poll_fn(|cx| {
            check_cancel()?;
            let v = slot.take().expect("polled after completion");
            match self.send_nowait(v) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(SendNowaitError::Gone(_, e)) => Poll::Ready(Err(e)),
                Err(SendNowaitError::Full(v)) => {
                    slot = Some(v);
                    self.chan.send_waiters.register(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// The receiving half of a [`channel`]. Also a [`Stream`](futures::Stream) of values.
pub struct Receiver<T> {
    chan: Rc<Chan<T>>,
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.chan.receiver.set(false);
        self.chan.buf.borrow_mut().clear();
        self.chan.send_waiters.wake_all();
    }
}

impl<T> core::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Receiver").field("buffered", &self.chan.buf.borrow().len()).finish()
    }
}

impl<T> Receiver<T> {
    /// Receives without waiting: `Ok(Some(v))`, `Ok(None)` at end-of-channel, `Err(Empty)`
    /// when empty but senders remain.
    pub fn receive_nowait(&mut self) -> core::result::Result<Option<T>, Empty> {
        let v = self.chan.buf.borrow_mut().pop_front();
        match v {
            Some(v) => {
                self.chan.send_waiters.wake_all();
                Ok(Some(v))
            }
            None if self.chan.senders.get() == 0 => Ok(None),
            None => Err(Empty),
        }
    }

    /// Receives the next value (trio's `await rx.receive()`): `Ok(v)`; [`Error::EndOfChannel`]
    /// once every sender is gone and the buffer is empty; [`Error::Cancelled`] in a cancelled
    /// scope (a buffered value stays in the buffer).
    ///
    /// ```
    /// use infect::{Error, guest};
    /// let r = guest::run(async {
    ///     let (tx, mut rx) = guest::channel::<u32>(1);
    ///     tx.send(7).await?;
    ///     drop(tx);
    ///     let seven = rx.receive().await?;
    ///     Ok((seven, rx.receive().await))
    /// });
    /// assert_eq!(r, Ok((7, Err(Error::EndOfChannel))));
    /// ```
    pub async fn receive(&mut self) -> Result<T> {
        self.try_next().await?.ok_or(Error::EndOfChannel)
    }

    /// Receives the next value, `Ok(None)` at the end of the channel (trio's `async for v in
    /// rx`: `while let Some(v) = rx.try_next().await? { .. }`); otherwise as
    /// [`receive`](Self::receive).
    pub async fn try_next(&mut self) -> Result<Option<T>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<T>>> {
        check_cancel()?;
        match self.receive_nowait() {
            Ok(v) => Poll::Ready(Ok(v)),
            Err(Empty) => {
                self.chan.recv_waiters.register(cx.waker());
                Poll::Pending
            }
        }
    }

    /// Number of buffered values.
    pub fn len(&self) -> usize {
        self.chan.buf.borrow().len()
    }

    /// Whether no value is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> futures::Stream for Receiver<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        self.get_mut().poll_recv(cx).map(Result::transpose)
    }
}
