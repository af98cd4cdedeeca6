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
use core::future::{Future, poll_fn};
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
/// Once set it stays set: [`set`](Self::set) wakes every waiter, and every later
/// [`wait`](Self::wait) returns at once (unless its scope is cancelled: like every guest await
/// it checks for cancellation first). Single-threaded (`Rc`): a host task on the same thread
/// may set it too; the woken guest tasks run at the guest's next tick.
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

    /// Sets the event and wakes every waiter (they run in the order they began to wait).
    /// Idempotent.
    ///
    /// ```
    /// use infect::guest::{self, Event, GuestConfig};
    /// use infect::time::{Instant, VirtualClock};
    /// use std::{cell::RefCell, rc::Rc, time::Duration};
    ///
    /// let woke = Rc::new(RefCell::new(Vec::new()));
    /// let w = woke.clone();
    /// guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async move {
    ///     let ev = Event::new();
    ///     guest::open_nursery(async |n| {
    ///         for name in ["a", "b"] {
    ///             let (ev, w) = (ev.clone(), w.clone());
    ///             n.start_soon(async move {
    ///                 ev.wait().await?;
    ///                 w.borrow_mut().push((name, guest::current_time()));
    ///                 Ok(())
    ///             })?;
    ///         }
    ///         guest::sleep(Duration::from_millis(10)).await?;
    ///         ev.set();
    ///         ev.set(); // no effect
    ///         Ok(())
    ///     })
    ///     .await?;
    ///     Ok(())
    /// })?;
    /// let at = Instant::ZERO + Duration::from_millis(10);
    /// assert_eq!(*woke.borrow(), [("a", at), ("b", at)]);
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn set(&self) {
        if !self.inner.set.replace(true) {
            self.inner.waiters.wake_all();
        }
    }

    /// Whether the event is set (never waits, never checks for cancellation).
    ///
    /// ```
    /// use infect::guest::Event;
    /// let ev = Event::new();
    /// let other = ev.clone();
    /// assert!(!ev.is_set());
    /// other.set();
    /// assert!(ev.is_set()); // clones share the flag
    /// ```
    pub fn is_set(&self) -> bool {
        self.inner.set.get()
    }

    /// Waits until the event is set (cancellation-aware in a guest task): `Ok(())`, or
    /// [`Error::Cancelled`] in a cancelled scope, even when the event is already set.
    ///
    /// ```
    /// use infect::{Error, guest::{self, CancelScope, Event}};
    ///
    /// let r = guest::run(async {
    ///     let ev = Event::new();
    ///     ev.set();
    ///     let scope = CancelScope::new();
    ///     scope.cancel();
    ///     let mut inside = None;
    ///     scope.run(async { inside = Some(ev.wait().await); Ok(()) }).await?;
    ///     Ok((inside, ev.wait().await))
    /// });
    /// assert_eq!(r, Ok((Some(Err(Error::Cancelled)), Ok(()))));
    /// ```
    #[track_caller]
    pub fn wait(&self) -> impl Future<Output = Result<()>> {
        crate::cx::at(async move {
            poll_fn(|cx| {
                check_cancel()?;
                if self.inner.set.get() {
                    return Poll::Ready(Ok(()));
                }
                self.inner.waiters.register(cx.waker());
                Poll::Pending
            })
            .await
        })
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

/// Creates a bounded memory channel holding up to `capacity` values (at least 1): trio's
/// `open_memory_channel`, one receiver and any number of senders.
///
/// - **Order:** values come out in the order they went in; none is lost or duplicated while
///   the receiver lives.
/// - **Back-pressure:** at most `capacity` values are buffered; a full buffer makes
///   [`Sender::send`] wait and [`Sender::send_nowait`] hand the value back
///   ([`SendNowaitError::Full`]).
/// - **What ends it:** once every [`Sender`] is dropped, the receiver drains the buffer, then
///   sees the end: [`Receiver::receive`] fails with [`Error::EndOfChannel`],
///   [`Receiver::try_next`] gives `Ok(None)`, the stream ends. Once the [`Receiver`] is dropped
///   (its buffered values with it), `send` fails with [`Error::Closed`] and `send_nowait`
///   hands the value back ([`SendNowaitError::Gone`]).
/// - **Cancellation:** the waiting forms (`send`, `receive`, `try_next`, the stream) check
///   for cancellation first: in a cancelled scope they return [`Error::Cancelled`] even when
///   they could complete at once, and nothing is sent or consumed. The non-waiting forms
///   (`send_nowait`, `receive_nowait`) never check.
/// - **Threads:** single-threaded (`Rc`); host code on the same thread may `send_nowait` into
///   it. Outside a guest task the awaits are plain futures (no cancellation check).
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
///
/// ```
/// use infect::guest::{self, Empty};
/// let (tx, mut rx) = guest::channel::<u32>(1);
/// assert_eq!(rx.receive_nowait(), Err(Empty));
/// drop(tx);
/// assert_eq!(rx.receive_nowait(), Ok(None)); // no sender left: the end, not `Empty`
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the channel is empty")]
pub struct Empty;

/// The sending half of a [`channel`]. Clone it for more senders; drop every clone to end the
/// channel.
///
/// Two producers, each yielding after every send: their values interleave in the order the
/// scheduler ran them (FIFO, so the same order on every run), and the consumer's loop ends
/// when both have finished and dropped their sender.
///
/// ```
/// use infect::guest::{self, Sender};
///
/// async fn producer(tx: Sender<(u32, char)>, name: char) -> infect::Result<()> {
///     for i in 0..2 {
///         tx.send((i, name)).await?;
///         guest::checkpoint().await?;
///     }
///     Ok(()) // `tx` is dropped here
/// }
///
/// let got = guest::run(async {
///     let (tx, mut rx) = guest::channel(4);
///     let tx2 = tx.clone();
///     guest::open_nursery(async move |n| {
///         n.start_soon(producer(tx, 'a'))?;
///         n.start_soon(producer(tx2, 'b'))?;
///         let mut got = Vec::new();
///         while let Some(v) = rx.try_next().await? {
///             got.push(v);
///         }
///         Ok(got)
///     })
///     .await
/// })?;
/// assert_eq!(got, Some(vec![(0, 'a'), (0, 'b'), (1, 'a'), (1, 'b')]));
/// # Ok::<(), infect::Error>(())
/// ```
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
    /// Sends without waiting: `Full(value)` when the buffer is full, `Gone(value, Closed)` once
    /// the receiver is dropped; the value is handed back either way. Never checks for
    /// cancellation. Example on [`SendNowaitError`].
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
    ///
    /// With room for one value and a consumer that takes one every 10 ms, each further send
    /// waits for the consumer (virtual time: instant, exact):
    ///
    /// ```
    /// use infect::guest::{self, GuestConfig};
    /// use infect::time::VirtualClock;
    /// use std::{cell::RefCell, rc::Rc, time::Duration};
    ///
    /// let sent_at_ms = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async {
    ///     let (tx, mut rx) = guest::channel::<u32>(1);
    ///     let sent_at_ms = Rc::new(RefCell::new(Vec::new()));
    ///     let s = sent_at_ms.clone();
    ///     guest::open_nursery(async move |n| {
    ///         n.start_soon(async move {
    ///             for v in 0..3 {
    ///                 tx.send(v).await?;
    ///                 s.borrow_mut().push(guest::current_time().as_nanos() / 1_000_000);
    ///             }
    ///             Ok(())
    ///         })?;
    ///         for want in 0..3 {
    ///             guest::sleep(Duration::from_millis(10)).await?;
    ///             assert_eq!(rx.receive().await?, want);
    ///         }
    ///         Ok(())
    ///     })
    ///     .await?;
    ///     Ok(sent_at_ms.take())
    /// })?;
    /// assert_eq!(sent_at_ms, [0, 10, 20]);
    /// # Ok::<(), infect::Error>(())
    /// ```
    ///
    /// A dropped receiver:
    ///
    /// ```
    /// use infect::{Error, guest};
    /// let r = guest::run(async {
    ///     let (tx, rx) = guest::channel::<u32>(1);
    ///     drop(rx);
    ///     Ok(tx.send(1).await)
    /// });
    /// assert_eq!(r, Ok(Err(Error::Closed)));
    /// ```
    #[track_caller]
    pub fn send(&self, value: T) -> impl Future<Output = Result<()>> {
        crate::cx::at(async move {
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
        })
    }
}

/// The receiving half of a [`channel`]. Also a [`Stream`](futures::Stream) of values (an
/// error is its last item). Dropping it closes the channel: senders then fail with
/// [`Error::Closed`].
///
/// ```
/// use futures::StreamExt;
/// use infect::guest;
///
/// let got = guest::run(async {
///     let (tx, rx) = guest::channel::<u32>(8);
///     for v in [3, 1, 2] {
///         tx.send_nowait(v)?;
///     }
///     drop(tx);
///     assert_eq!(rx.len(), 3);
///     let all: Vec<infect::Result<u32>> = rx.collect().await;
///     Ok(all)
/// })?;
/// assert_eq!(got, [Ok(3), Ok(1), Ok(2)]);
/// # Ok::<(), infect::Error>(())
/// ```
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
    /// when empty but senders remain. Never waits, never checks for cancellation; works outside
    /// a guest task too.
    ///
    /// ```
    /// use infect::guest::{self, Empty};
    /// let (tx, mut rx) = guest::channel::<&str>(2);
    /// tx.send_nowait("x").unwrap();
    /// assert_eq!(rx.receive_nowait(), Ok(Some("x")));
    /// assert_eq!(rx.receive_nowait(), Err(Empty));
    /// drop(tx);
    /// assert_eq!(rx.receive_nowait(), Ok(None));
    /// ```
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
    #[track_caller]
    pub fn receive(&mut self) -> impl Future<Output = Result<T>> {
        crate::cx::at(async move { poll_fn(|cx| self.poll_recv(cx)).await?.ok_or_else(|| Error::EndOfChannel) })
    }

    /// Receives the next value, `Ok(None)` at the end of the channel (trio's `async for v in
    /// rx`: `while let Some(v) = rx.try_next().await? { .. }`); otherwise as
    /// [`receive`](Self::receive).
    ///
    /// In a cancelled scope it returns [`Error::Cancelled`] and the buffered value stays:
    ///
    /// ```
    /// use infect::{Error, guest::{self, CancelScope}};
    /// let r = guest::run(async {
    ///     let (tx, mut rx) = guest::channel::<u32>(1);
    ///     tx.send(5).await?;
    ///     let scope = CancelScope::new();
    ///     scope.cancel();
    ///     let mut inside = None;
    ///     scope.run(async { inside = Some(rx.try_next().await); Ok(()) }).await?;
    ///     assert_eq!(rx.len(), 1); // nothing consumed
    ///     drop(tx);
    ///     Ok((inside, rx.try_next().await?, rx.try_next().await?))
    /// });
    /// assert_eq!(r, Ok((Some(Err(Error::Cancelled)), Some(5), None)));
    /// ```
    #[track_caller]
    pub fn try_next(&mut self) -> impl Future<Output = Result<Option<T>>> {
        crate::cx::at(async move { poll_fn(|cx| self.poll_recv(cx)).await })
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

    /// Number of buffered values (at most the channel's capacity). Example on [`Receiver`].
    pub fn len(&self) -> usize {
        self.chan.buf.borrow().len()
    }

    /// Whether no value is buffered (says nothing of whether senders remain: see
    /// [`receive_nowait`](Self::receive_nowait)).
    ///
    /// ```
    /// let (tx, rx) = infect::guest::channel::<u8>(1);
    /// assert!(rx.is_empty());
    /// tx.send_nowait(1).unwrap();
    /// assert!(!rx.is_empty());
    /// ```
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
