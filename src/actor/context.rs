//! Contexts and streams (tractor's `Context` and `MsgStream`): a call between two actors that
//! stays open, with a `started` handshake, a two-way stream and one final outcome.
//!
//! # The dialog
//!
//! The *caller* opened the context ([`Portal::open_context`](super::Portal::open_context)); the
//! *callee* serves it (an endpoint registered with
//! [`Endpoints::serve`](super::Endpoints::serve) with a [`ContextFn`](super::ContextFn)).
//! Who sends what, and when:
//!
//! ```text
//! caller (open_context)                                  callee (context endpoint)
//!  Start{cid, kind: Context} ─────────────────────────▶  looks up, decodes the arguments, runs the
//!                                                         endpoint with a Context (or Error{cid})
//!            ◀──────────────── StartAck{cid}, Started{cid, v}   ctx.started(v): one write; the
//!  open_context's body runs with (ctx, v)                       caller's body starts
//!  ── either side, in its ctx.open_stream(body) ─────────────────────────────────────────────
//!  Yield{cid, item} ──────────────────────────────────▶  stream.send / stream.receive
//!            ◀──────────────────────────────────────── Yield{cid, item}
//!  Stop{cid} (its stream block returned) ─────────────▶  receive ends (EndOfChannel) after the
//!            ◀──────────────────────────────────────── Stop{cid}  items already sent
//!  ── the end ───────────────────────────────────────────────────────────────────────────────
//!            ◀──────────────────────────────────────── Return{cid, r} | Error{cid}
//!  the body returned Ok: open_context waits for that outcome ("drains"), then returns
//!  the body failed or was cancelled, or ctx.cancel():
//!  Cancel{cid} ───────────────────────────────────────▶  cancels the endpoint's scope
//!            ◀──────────────── CancelAck{cid}, Error{cid, ContextCancelled, canceller: caller}
//! ```
//!
//! - A context endpoint that fails (or whose `to_host` partner fails) before `started` answers
//!   `StartAck, Error` in one write: `open_context` returns that error and the body never runs.
//!   One that returns without calling `started` answers [`Error::NotStarted`].
//! - `ctx.started` twice is [`Error::StartedTwice`]; the callee may open its stream only after
//!   `started` ([`Error::NotStarted`] otherwise).
//! - **A context is a supervision scope (the caller's block is interrupted).** `open_context`
//!   runs its block inside a cancel scope of the context's own. The connection's reader records
//!   the context's final outcome the moment it arrives, and if that outcome is an error this
//!   side must raise (the callee failed after `started`, the callee cancelled itself or got
//!   `SIGINT`, a `ContextCancelled` caused by `Portal::cancel_actor`), or the child died, it
//!   cancels that scope at once: wherever the block waits (a `guest::sleep`, a nursery, a
//!   stream `send` or `receive`), it gets `Err(Cancelled)` within one message delivery, and
//!   `open_context` returns the error itself, with its kind: [`Error::RemoteActor`],
//!   [`Error::ContextCancelled`] or [`Error::ActorDied`], never `Cancelled`. A block that
//!   catches the cancellation and returns `Ok` still gets the error. A callee that *returns*
//!   does not interrupt the block (its stream ends; `open_context` returns after the block).
//!   The callee side needs no such scope: the caller's failure reaches it as `Cancel{cid}`,
//!   which cancels its endpoint's scope, and the parent's death as end-of-file.
//! - **`ContextCancelled` (tractor's rule, `_is_self_cancelled`).** Only a cancellation this
//!   side asked for through [`Context::cancel`] is *absorbed*: `cancel` was called and the
//!   `ContextCancelled` names this actor as canceller. Then the stream just ends, the block is
//!   not interrupted and `open_context` returns the block's value. Any other `ContextCancelled`
//!   is *raised*, out of `receive`, `wait_for_result` and `open_context`, naming its
//!   canceller: the callee's own `cancel()` or a signal (canceller: the callee), and also
//!   `Portal::cancel_actor()` or the actor nursery's cancel inside the block (canceller: this
//!   actor, but `ctx.cancel()` was not called). [`Context::wait_for_result`] reports the
//!   outcome as it is, absorbed or not.
//! - The body's own error comes out of `open_context` bare (the remote context is cancelled
//!   and drained first, bounded by the actor's cancel timeout); so does a local cancellation.
//!
//! # Introspection
//!
//! A [`Context`] is a cheap, clonable handle; its state is readable synchronously inside the
//! block and, through a clone taken in the block, after `open_context` returned (tractor's
//! properties): [`has_outcome`](Context::has_outcome), [`outcome`](Context::outcome),
//! [`maybe_error`](Context::maybe_error), [`cancel_called`](Context::cancel_called) (this side
//! asked), [`cancel_acked`](Context::cancel_acked) (the callee acknowledged it: exactly the
//! absorbed case), [`cancelled_caught`](Context::cancelled_caught) (the remote end's failure
//! interrupted the block) and [`canceller`](Context::canceller). An absorbed `ContextCancelled`
//! reads `cancel_called && cancel_acked`; a raised one `!cancel_acked`, with
//! `maybe_error()` holding it in both cases.
//!
//! # Invariants
//! - **Flow control: per-context credit (HTTP/2-style windows), both directions.** Each side's
//!   sender starts with a window of `W` items ([`STREAM_BUFFER`] unless the actor was started
//!   with `ActorOpts::stream_window`); every `Yield` it sends takes one,
//!   and [`MsgStream::send`] *waits* (a cancellation point, checked first) while the window is
//!   empty. The receiver gives the items back with `Msg::Credit{cid, n}` as its readers take
//!   them (or a drain discards them), one `Credit` per `W / 2` items, sent before it waits for
//!   more; so a slow consumer slows its producer, nothing is lost, and a receiver never buffers
//!   more than `W` items per context (at most `W` frames of the frame limit: lower the window
//!   for big items). The connection's reader never
//!   waits for a consumer (a `Credit` is applied in place, an item goes into its context's
//!   inbox), so a stalled context does not stall the other contexts on the same connection.
//! - **Bounded, never silent.** A peer that sends past the window it was granted breaks the
//!   protocol: those items are not stored (control messages are not counted and never
//!   dropped) and the next `receive` fails with [`Error::StreamOverrun`], which says how many
//!   were not delivered; the stream is over from then on. An infect peer never does this.
//! - **One reader per connection.** Frames reach a context only through its inbox, filled by
//!   the connection's single reader, so items arrive in the order they were sent.
//! - **Every subscriber ends.** A [`MsgStream::subscribe`] receiver sees every item no reader
//!   has received yet and everything later; it gets [`Error::Lagged`] once if it falls more
//!   than the broadcast capacity behind the fastest reader, then continues; the end of the
//!   stream (or its error) reaches every subscriber.
//! - Waiting in a context is a cancellation point; a stream or context used after its block
//!   ended fails with [`Error::Closed`] instead of hanging.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{Future, poll_fn};
use std::rc::Rc;
use std::task::{Context as TaskCx, Poll};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::guest::{CancelScope, check_cancel};
use crate::sync::broadcast::{Broadcast, PRIMARY, Position, stream_of};
use crate::wire::{Cid, FuncKind, Msg, decode_payload, encode_payload};
use crate::{Error, Result};

use super::codec;
use super::peer::calls::CallObserver;
use super::peer::{CallSlot, Peer};

/// The default stream window: how many stream items a context's sender may have in flight
/// (sent, not yet taken by the receiver) at a time, per direction; also the most a receiver ever
/// buffers. Per actor with `ActorOpts::stream_window`.
pub const STREAM_BUFFER: usize = 1024;

/// One call being served (the callee's side of a call): its scope, who cancelled it.
pub(crate) struct CallEntry {
    /// The call's own scope: `Cancel{cid}` (or the actor's ending) cancels it.
    pub(crate) scope: CancelScope,
    /// Who cancelled the call, once someone did.
    pub(crate) canceller: RefCell<Option<String>>,
    /// `ns.func`, for messages.
    pub(crate) what: String,
}

/// Runs `body` shielded from outside cancellation, for at most `d`.
pub(crate) async fn shielded_for<T>(d: Duration, body: impl Future<Output = Result<T>>) -> Result<Option<T>> {
    let scope = CancelScope::shielded();
    scope.set_deadline(crate::guest::current_time() + d);
    scope.run(body).await
}

/// Gives back a credit reservation (granted, or taken for a send) unless the frame went out.
struct CreditGuard<'a> {
    cell: &'a Cell<u64>,
    n: u64,
    /// `true` for a grant (`granted -= n` on failure), `false` for a send (`credit += n`).
    grant: bool,
    sent: bool,
}

impl Drop for CreditGuard<'_> {
    fn drop(&mut self) {
        if !self.sent {
            let v = self.cell.get();
            self.cell.set(if self.grant { v - self.n } else { v + self.n });
        }
    }
}

/// Which end of the context this process holds.
enum Side {
    /// We opened it, through a portal to this child.
    Caller {
        peer: Rc<Peer>,
        /// How long a cancelled context may take to drain (the actor's cancel timeout).
        drain: Duration,
    },
    /// We serve it for our parent.
    Callee { peer: Rc<Peer>, entry: Rc<CallEntry> },
}

struct CtxInner {
    cid: Cid,
    side: Side,
    slot: Rc<CallSlot>,
    /// `ns.func`, for messages.
    what: String,
    /// This actor's name.
    me: String,
    /// The callee called `started` (or, at the caller, `Started` arrived).
    started: Cell<bool>,
    /// Callee: `StartAck` went out (it travels with the first message of the call).
    ack_sent: Cell<bool>,
    /// A stream block is running on this side.
    stream_open: Cell<bool>,
    /// This side sent `Stop`.
    stop_sent: Cell<bool>,
    /// The peer sent `Stop`.
    peer_stopped: Cell<bool>,
    /// This side asked for the cancellation (`cancel()`, or the caller's cancel-and-drain).
    cancel_called: Cell<bool>,
    /// Caller: the final `Return` or `Error` (or the child's death), once it arrived. Set by
    /// the connection's reader on arrival (or by the supervisor on the child's death).
    outcome: RefCell<Option<Result<Vec<u8>>>>,
    /// Caller: the scope around `open_context`'s block; the reader cancels it when an outcome
    /// arrives that this side must raise (see `CtxInner::maybe_interrupt`).
    block: CancelScope,
    /// Caller: the block's own error, if it failed (not a cancellation).
    local_error: RefCell<Option<Error>>,
    /// The broadcast ring, from the first `subscribe` on.
    bcast: RefCell<Option<Bcast>>,
}

impl CtxInner {
    fn is_caller(&self) -> bool {
        matches!(self.side, Side::Caller { .. })
    }

    /// Whether `e` is a cancellation this side asked for through [`Context::cancel`]
    /// (tractor's `_is_self_cancelled`): absorbed, not raised. A `ContextCancelled` naming this
    /// actor that `ctx.cancel()` did not ask for (`Portal::cancel_actor`, the nursery's cancel)
    /// is raised.
    fn absorbs(&self, e: &Error) -> bool {
        self.cancel_called.get() && matches!(e, Error::ContextCancelled { canceller, .. } if *canceller == self.me)
    }

    /// Records the final outcome `msg` stands for (the first one wins).
    fn set_outcome(&self, msg: &Msg) {
        let out = match msg {
            Msg::Return { value, .. } => Ok(value.clone()),
            msg => match codec::decode_msg(msg) {
                Some(e) => Err(e),
                None => return,
            },
        };
        self.outcome.borrow_mut().get_or_insert(out);
    }

    /// Caller: cancels the block's scope if the outcome is an error this side raises (a remote
    /// error, the child's death, a `ContextCancelled` not absorbed). A no-op once the block
    /// left its scope.
    fn maybe_interrupt(&self) {
        if !self.is_caller() {
            return;
        }
        let raise = matches!(self.outcome.borrow().as_ref(), Some(Err(e)) if !self.absorbs(e));
        if raise {
            self.block.cancel();
        }
    }
}

impl CallObserver for CtxInner {
    fn final_arrived(&self, msg: &Msg) {
        self.set_outcome(msg);
        self.maybe_interrupt();
    }

    fn peer_gone(&self, e: &Error) {
        self.outcome.borrow_mut().get_or_insert_with(|| Err(e.clone()));
        self.maybe_interrupt();
    }
}

/// One side of a context between two actors (tractor's `Context`): the caller gets it in
/// [`Portal::open_context`](super::Portal::open_context)'s block, the callee as its endpoint's
/// first argument. Cheap to clone; a clone keeps the context's state readable after the
/// block (see [Introspection](self#introspection)). A caller's handle kept past its actor
/// nursery also keeps that (reaped) child's two pipe descriptors open until it is dropped.
///
/// See the [module docs](self) for the dialog, the supervision and the cancellation rule.
///
/// Both sides, with the one cancellation that is absorbed (this side's own [`cancel`](Self::cancel))
/// and the introspection after the block (this needs a child process, so it is `no_run` here;
/// `examples/context_supervision.rs` runs these cases and the other two, a callee that fails
/// and a `Portal::cancel_actor` that is raised):
///
/// ```no_run
/// use std::process::ExitCode;
/// use infect::actor::{self, ActorOpts, Context, ContextFn, Endpoints};
/// use infect::guest;
///
/// /// Started with "ready"; then serves until cancelled.
/// const SERVE: ContextFn<(), String> = ContextFn::new("demo", "serve");
///
/// async fn serve(ctx: Context) -> infect::Result<()> {
///     assert!(!ctx.is_caller());
///     ctx.started(&"ready").await?;
///     guest::sleep_forever().await // until the caller's cancel
/// }
///
/// fn main() -> ExitCode {
///     actor::main(Endpoints::new().serve(SERVE, serve), async {
///         actor::open_nursery(async |an| {
///             let p = an.start_actor("server", ActorOpts::new().enable_modules(["demo"])).await?;
///             let mut kept = None;
///             let out = p
///                 .open_context(SERVE, &(), async |ctx, first| {
///                     assert_eq!(first, "ready");
///                     assert_eq!(ctx.func(), "demo.serve");
///                     kept = Some(ctx.clone());
///                     ctx.cancel().await?; // ends the callee; absorbed: not an error here
///                     Ok("the block's value")
///                 })
///                 .await?;
///             assert_eq!(out, "the block's value");
///             let ctx = kept.expect("set in the block");
///             assert!(ctx.cancel_called() && ctx.cancel_acked() && !ctx.cancelled_caught());
///             assert!(matches!(ctx.maybe_error(), Some(infect::Error::ContextCancelled { .. })));
///             assert_eq!(ctx.canceller().as_deref(), Some("root"));
///             Ok(())
///         })
///         .await
///         .map(drop)
///     })
/// }
/// ```
#[derive(Clone)]
pub struct Context {
    inner: Rc<CtxInner>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Context")
            .field("cid", &i.cid)
            .field("func", &i.what)
            .field("side", &if self.is_caller() { "caller" } else { "callee" })
            .field("started", &i.started.get())
            .field("cancel_called", &i.cancel_called.get())
            .field("cancel_acked", &self.cancel_acked())
            .field("has_outcome", &self.has_outcome())
            .finish()
    }
}

impl Context {
    /// The caller's side of call `cid` on `peer`, opened by actor `me`; a cancelled context
    /// drains for at most `drain`.
    pub(crate) fn caller(
        peer: Rc<Peer>,
        cid: Cid,
        slot: Rc<CallSlot>,
        what: String,
        me: String,
        drain: Duration,
    ) -> Context {
        let ctx = Context::new(Side::Caller { peer, drain }, cid, slot.clone(), what, me);
        let observer: Rc<dyn CallObserver> = ctx.inner.clone();
        slot.observe(Rc::downgrade(&observer));
        ctx
    }

    /// The callee's side of call `cid` from `peer`, served by actor `me`.
    pub(crate) fn callee(peer: Rc<Peer>, entry: Rc<CallEntry>, cid: Cid, slot: Rc<CallSlot>, me: String) -> Context {
        let what = entry.what.clone();
        Context::new(Side::Callee { peer, entry }, cid, slot, what, me)
    }

    fn new(side: Side, cid: Cid, slot: Rc<CallSlot>, what: String, me: String) -> Context {
        Context {
            inner: Rc::new(CtxInner {
                cid,
                side,
                slot,
                what,
                me,
                started: Cell::new(false),
                ack_sent: Cell::new(false),
                stream_open: Cell::new(false),
                stop_sent: Cell::new(false),
                peer_stopped: Cell::new(false),
                cancel_called: Cell::new(false),
                outcome: RefCell::new(None),
                block: CancelScope::new(),
                local_error: RefCell::new(None),
                bcast: RefCell::new(None),
            }),
        }
    }

    /// Whether this is the caller's side (the one that called `open_context`).
    pub fn is_caller(&self) -> bool {
        self.inner.is_caller()
    }

    /// Whether this side asked for the context's cancellation ([`cancel`](Self::cancel)).
    pub fn cancel_called(&self) -> bool {
        self.inner.cancel_called.get()
    }

    /// The endpoint this context runs, as `ns.func`.
    pub fn func(&self) -> &str {
        &self.inner.what
    }

    // ------------------------------------------------------------------ state (tractor's)

    /// Caller: whether the final outcome arrived (tractor's `has_outcome`): the callee's
    /// `Return` or `Error`, or the child's death. Set by the connection's reader the moment it
    /// arrives, whatever the block is doing. Always `false` at the callee (its outcome is its
    /// own return value).
    pub fn has_outcome(&self) -> bool {
        self.inner.outcome.borrow().is_some()
    }

    /// Caller: the final outcome, synchronously (tractor's `outcome`): `None` while unresolved,
    /// `Some(Err(e))` with [`maybe_error`](Self::maybe_error) if the context failed (a
    /// cancellation included, absorbed or not), else `Some(Ok(value))` with the callee's
    /// return value. Readable inside the block and, through a clone of the handle, after
    /// `open_context` returned. `None` at the callee.
    pub fn outcome<R: DeserializeOwned>(&self) -> Option<Result<R>> {
        if let Some(e) = self.maybe_error() {
            return Some(Err(e));
        }
        match self.inner.outcome.borrow().as_ref()? {
            Ok(bytes) => Some(decode_payload(bytes).map_err(Error::from)),
            Err(e) => Some(Err(e.clone())),
        }
    }

    /// Caller: the error this context ended with, if any (tractor's `maybe_error`): the remote
    /// end's error (a [`Error::RemoteActor`] takes precedence), else the block's own error,
    /// else the remote [`Error::ContextCancelled`] (absorbed or not; tell them apart with
    /// [`cancel_acked`](Self::cancel_acked)) or [`Error::ActorDied`]. `None` at the callee.
    pub fn maybe_error(&self) -> Option<Error> {
        let local = self.inner.local_error.borrow().clone();
        let remote = match self.inner.outcome.borrow().as_ref() {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        };
        match (local, remote) {
            (_, Some(r @ Error::RemoteActor(_))) => Some(r),
            (Some(l), _) => Some(l),
            (None, r) => r,
        }
    }

    /// Caller: whether the callee acknowledged this side's [`cancel`](Self::cancel) (tractor's
    /// `cancel_acked`, its `_is_self_cancelled`): `cancel` was called and the context ended with
    /// a `ContextCancelled` naming this actor. Exactly the cancellations that are absorbed:
    /// `open_context` returns the block's value. A `ContextCancelled` caused otherwise (by
    /// `Portal::cancel_actor`, the callee, a signal) leaves this `false` and is raised.
    pub fn cancel_acked(&self) -> bool {
        matches!(self.inner.outcome.borrow().as_ref(), Some(Err(e)) if self.inner.absorbs(e))
    }

    /// Caller: whether the remote end's failure interrupted the block (tractor's
    /// `cancelled_caught`): the context's scope around the block was cancelled and caught the
    /// cancellation. `false` while the block runs, for a block that ended by itself, and at
    /// the callee.
    pub fn cancelled_caught(&self) -> bool {
        self.is_caller() && self.inner.block.cancelled_caught()
    }

    /// The actor whose cancellation or failure ended this side of the context (tractor's
    /// `canceller`), once known. Caller: for a `ContextCancelled`, its canceller if that is
    /// this actor, else the callee's actor (the peer that was cancelled); for any other remote
    /// error or a death, the callee's actor; `None` while unresolved or after a normal return.
    /// Callee: the actor that cancelled its endpoint (the caller's, by `Cancel{cid}` or
    /// `cancel_actor`; this actor for its own `cancel()` or a signal), `None` if none did.
    pub fn canceller(&self) -> Option<String> {
        match &self.inner.side {
            Side::Callee { entry, .. } => entry.canceller.borrow().clone(),
            Side::Caller { .. } => match self.inner.outcome.borrow().as_ref()? {
                Ok(_) => None,
                Err(Error::ContextCancelled { canceller, .. }) if *canceller == self.inner.me => {
                    Some(canceller.clone())
                }
                Err(Error::ActorDied { actor, .. }) => Some(actor.clone()),
                Err(e) => e.remote().map(|r| r.src.name.clone()),
            },
        }
    }

    /// Callee: delivers the first value; the caller's `open_context` returns it and runs its
    /// block. Exactly once ([`Error::StartedTwice`] after that), before any stream.
    ///
    /// Example on [`Context`] (and [`Portal::open_context`](super::Portal::open_context)).
    pub async fn started<S: Serialize + ?Sized>(&self, value: &S) -> Result<()> {
        let i = &self.inner;
        let Side::Callee { peer: conn, .. } = &i.side else {
            return Err(wrong_side("started", "the callee (the context endpoint)"));
        };
        if i.started.get() {
            return Err(Error::StartedTwice { ctx: i.what.clone() });
        }
        let started = Msg::Started { cid: i.cid, value: encode_payload(value)? };
        i.started.set(true);
        if i.ack_sent.replace(true) {
            conn.send(&started).await
        } else {
            conn.send_all(&[&Msg::StartAck { cid: i.cid, functype: FuncKind::Context }, &started]).await
        }
    }

    /// Opens this side's stream for the duration of `body` (tractor's `ctx.open_stream()`). When
    /// `body` returns `Ok` this side sends `Stop` (the peer's `receive` then ends after the
    /// items already sent; a failed body sends nothing, its error ends the context); receiving
    /// goes on until the peer's `Stop`. Items the peer sent before
    /// this side opened its stream are kept (up to the stream window, [`STREAM_BUFFER`] by
    /// default).
    ///
    /// Examples on [`MsgStream`] (both sides) and [`Context`].
    pub async fn open_stream<T>(&self, body: impl AsyncFnOnce(&MsgStream) -> Result<T>) -> Result<T> {
        let i = &self.inner;
        if !i.started.get() {
            return Err(Error::NotStarted { ctx: i.what.clone() });
        }
        if i.stream_open.replace(true) {
            return Err(Error::StreamAlreadyOpen { ctx: i.what.clone() });
        }
        let stream = MsgStream { ctx: self.clone(), closed: Rc::new(Cell::new(false)) };
        let r = body(&stream).await;
        stream.closed.set(true);
        i.stream_open.set(false);
        // A failed block sends no `Stop`: the context's error (or the caller's cancel) ends
        // the peer's stream instead, so the peer never mistakes a failure for a clean end.
        if r.is_ok() && !i.stop_sent.get() && i.outcome.borrow().is_none() {
            i.stop_sent.set(true);
            // Nothing to do if the peer is gone: the context's outcome says what happened.
            let _ = self.send_msg(&Msg::Stop { cid: i.cid }).await;
        }
        r
    }

    /// Cancels the context. Caller: sends `Cancel{cid}`; the callee's task is cancelled and the
    /// context ends with a `ContextCancelled` naming this actor, which this side absorbs (the
    /// only cancellation that is absorbed; see the module docs). The block is not cancelled by
    /// this: it goes on until it returns (wrap it in a `CancelScope` of your own to stop it).
    /// Callee: cancels its own endpoint; the caller sees `ContextCancelled` naming this actor
    /// (raised there). Idempotent; a no-op once the context ended.
    ///
    /// Example on [`Context`]: the caller's cancel, absorbed.
    pub async fn cancel(&self) -> Result<()> {
        let i = &self.inner;
        match &i.side {
            Side::Caller { .. } => {
                if i.outcome.borrow().is_some() || i.cancel_called.replace(true) {
                    return Ok(());
                }
                i.slot.note_cancel_sent();
                let sent = CancelScope::shielded().run(self.send_msg(&Msg::Cancel { cid: Some(i.cid) })).await;
                match sent {
                    Ok(_) | Err(Error::Closed) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Side::Callee { entry, .. } => {
                i.cancel_called.set(true);
                entry.canceller.borrow_mut().get_or_insert_with(|| i.me.clone());
                entry.scope.cancel();
                Ok(())
            }
        }
    }

    /// Caller: waits for the context's final outcome (tractor's `ctx.wait_for_result()`): the
    /// callee's return value, or its error (a [`Error::RemoteActor`], a
    /// [`Error::ContextCancelled`] — also one this side asked for with `cancel()`, which
    /// `open_context` then absorbs — or [`Error::ActorDied`]). Stream items that arrive
    /// meanwhile are discarded. A cancellation point; an outcome already here is returned
    /// even inside an interrupted block.
    ///
    /// Example on [`MsgStream`].
    pub async fn wait_for_result<R: DeserializeOwned>(&self) -> Result<R> {
        if !self.is_caller() {
            return Err(wrong_side("wait_for_result", "the caller (inside open_context)"));
        }
        let bytes = self.result_bytes().await?;
        Ok(decode_payload(&bytes)?)
    }

    // ------------------------------------------------------------------ internals

    pub(crate) fn is_started(&self) -> bool {
        self.inner.started.get()
    }

    /// Callee: `true` if `StartAck` has not gone out yet (the caller sends it now).
    pub(crate) fn take_ack(&self) -> bool {
        !self.inner.ack_sent.replace(true)
    }

    async fn send_msg(&self, msg: &Msg) -> Result<()> {
        match &self.inner.side {
            Side::Caller { peer, .. } | Side::Callee { peer, .. } => peer.send(msg).await,
        }
    }

    /// Whether enough taken items are owed to the peer for a `Credit` to go out now.
    fn grant_needed(&self) -> bool {
        let i = &self.inner;
        i.slot.owed() >= i.slot.window / 2 && !i.peer_stopped.get() && i.outcome.borrow().is_none()
    }

    /// Returns the credit owed to the peer (one `Credit` for every half window of items taken),
    /// before this side waits for more items. A cancellation point; a peer that is gone is no
    /// error here (the wait that follows reports how the context ended).
    async fn grant_due(&self) -> Result<()> {
        if !self.grant_needed() {
            return Ok(());
        }
        let slot = &self.inner.slot;
        let n = slot.owed().min(u64::from(u32::MAX));
        // Reserved first, so that two readers of one stream never grant the same items twice.
        slot.granted.set(slot.granted.get() + n);
        let mut guard = CreditGuard { cell: &slot.granted, n, grant: true, sent: false };
        match self.send_msg(&Msg::Credit { cid: self.inner.cid, n: n as u32 }).await {
            Ok(()) => {
                guard.sent = true;
                Ok(())
            }
            Err(Error::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Takes one item of send credit, waiting for the peer's `Credit` when the window is empty
    /// (a cancellation point, checked first). Fails with the context's end once it is over.
    async fn take_send_credit(&self, closed: &Cell<bool>) -> Result<()> {
        let i = &self.inner;
        poll_fn(|cx| {
            check_cancel()?;
            if let Some(e) = self.send_end(closed) {
                return Poll::Ready(Err(e));
            }
            let credit = i.slot.send_credit.get();
            if credit > 0 {
                i.slot.send_credit.set(credit - 1);
                return Poll::Ready(Ok(()));
            }
            i.slot.waiters.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Why this side can send no more, if it cannot: the stream block ended (`closed`) or this
    /// side stopped (`Closed`), the context's error (`Closed` for a normal end), or, for the
    /// caller, the connection's closing error (the child's death).
    fn send_end(&self, closed: &Cell<bool>) -> Option<Error> {
        let i = &self.inner;
        if closed.get() || i.stop_sent.get() {
            return Some(Error::Closed);
        }
        if let Some(out) = i.outcome.borrow().as_ref() {
            return Some(match out {
                Err(e) if !self.inner.absorbs(e) => e.clone(),
                _ => Error::Closed,
            });
        }
        // The call's end arrived but no reader took it yet: it ends the sending too.
        if i.slot.final_seen.get() {
            return Some(match i.slot.peek_final() {
                Some(Msg::Error { src, boxed_type, message, relay_path, canceller, .. }) => {
                    let e = codec::decode(src, boxed_type, message, relay_path, canceller);
                    if self.inner.absorbs(&e) { Error::Closed } else { e }
                }
                _ => Error::Closed,
            });
        }
        if let Side::Caller { peer, .. } = &i.side
            && let Some(e) = peer.closed_error()
        {
            return Some(e);
        }
        None
    }

    /// The pipe broke under a send of the caller: the child is gone, and how it ended is on its
    /// way (its supervisor reaps it and closes the connection with [`Error::ActorDied`], within
    /// the ladder's bounds). Waits for that end and returns it, so that the send fails with the
    /// child's death rather than a bare `Closed`. A cancellation point.
    async fn end_after_broken_pipe(&self, closed: &Cell<bool>) -> Error {
        if !matches!(self.inner.side, Side::Caller { .. }) {
            return Error::Closed;
        }
        poll_fn(|cx| {
            if let Err(e) = check_cancel() {
                return Poll::Ready(e);
            }
            match self.send_end(closed) {
                Some(e) => Poll::Ready(e),
                None => {
                    self.inner.slot.waiters.register(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Caller: notes the child's death as the outcome if nothing else ended the context.
    fn note_closed(&self) -> bool {
        if let Side::Caller { peer, .. } = &self.inner.side
            && let Some(e) = peer.closed_error()
        {
            self.inner.outcome.borrow_mut().get_or_insert(Err(e));
            return true;
        }
        false
    }

    /// Caller: waits for `Started` (its payload), or the error that ended the context first.
    pub(crate) async fn wait_started(&self) -> Result<Vec<u8>> {
        let i = &self.inner;
        poll_fn(|cx| {
            loop {
                if let Some(msg) = i.slot.pop() {
                    match msg {
                        Msg::Started { value, .. } => {
                            i.started.set(true);
                            return Poll::Ready(Ok(value));
                        }
                        m @ (Msg::Return { .. } | Msg::Error { .. }) => self.inner.set_outcome(&m),
                        _ => continue,
                    }
                }
                if let Some(out) = i.outcome.borrow().clone() {
                    return Poll::Ready(Err(match out {
                        Ok(_) => Error::NotStarted { ctx: i.what.clone() },
                        Err(e) => e,
                    }));
                }
                if self.note_closed() {
                    continue;
                }
                check_cancel()?;
                i.slot.waiters.register(cx.waker());
                return Poll::Pending;
            }
        })
        .await
    }

    /// Caller: the final outcome's bytes, draining (discarding) stream items on the way and
    /// returning their credit, so that a callee still streaming can finish.
    async fn result_bytes(&self) -> Result<Vec<u8>> {
        let i = &self.inner;
        loop {
            self.grant_due().await?;
            let out = poll_fn(|cx| {
                loop {
                    if let Some(out) = i.outcome.borrow().clone() {
                        return Poll::Ready(Some(out));
                    }
                    if self.grant_needed() {
                        return Poll::Ready(None);
                    }
                    if let Some(msg) = i.slot.pop() {
                        match msg {
                            Msg::Stop { .. } => i.peer_stopped.set(true),
                            m @ (Msg::Return { .. } | Msg::Error { .. }) => self.inner.set_outcome(&m),
                            _ => {}
                        }
                        continue;
                    }
                    if self.note_closed() {
                        continue;
                    }
                    if let Err(e) = check_cancel() {
                        return Poll::Ready(Some(Err(e)));
                    }
                    i.slot.waiters.register(cx.waker());
                    return Poll::Pending;
                }
            })
            .await;
            if let Some(out) = out {
                return out;
            }
        }
    }

    /// Caller: runs `open_context`'s block inside the context's scope, which the connection's
    /// reader cancels when the remote end fails (see the module docs), then leaves the context:
    /// the block's value once the context drained, or the error that comes out.
    pub(crate) async fn run_block<T>(&self, body: impl Future<Output = Result<T>>) -> Result<T> {
        let r = self.inner.block.run(body).await;
        self.finish(r).await
    }

    async fn finish<T>(&self, r: Result<Option<T>>) -> Result<T> {
        match r {
            Ok(Some(v)) => match self.result_bytes().await {
                Ok(_) => Ok(v),
                Err(e) if self.inner.absorbs(&e) => Ok(v),
                Err(Error::Cancelled) => {
                    self.cancel_and_drain().await;
                    Err(Error::Cancelled)
                }
                Err(e) => Err(e),
            },
            // The remote end interrupted the block: its error (already here) comes out.
            Ok(None) => match self.result_bytes().await {
                Err(e) => Err(e),
                Ok(_) => Err(Error::Cancelled),
            },
            Err(e) => {
                if !e.is_cancelled() {
                    self.inner.local_error.borrow_mut().get_or_insert_with(|| e.clone());
                }
                self.cancel_and_drain().await;
                Err(e)
            }
        }
    }

    /// Caller: cancels the remote context (if it still runs) and waits, shielded and bounded by
    /// the actor's cancel timeout, for its outcome, so that it does not outlive us.
    pub(crate) async fn cancel_and_drain(&self) {
        let Side::Caller { drain, .. } = &self.inner.side else { return };
        if self.inner.outcome.borrow().is_some() {
            return;
        }
        let _ = shielded_for(*drain, async {
            self.cancel().await?;
            let _ = self.result_bytes().await;
            Ok(())
        })
        .await;
    }

    /// One stream item from the peer: `Ok(None)` at its `Stop` or at the end of the context.
    fn poll_item(&self, cx: &mut TaskCx<'_>) -> Poll<Result<Option<Vec<u8>>>> {
        let i = &self.inner;
        loop {
            if i.slot.dropped.get() > 0 {
                return Poll::Ready(Err(Error::StreamOverrun {
                    ctx: i.what.clone(),
                    capacity: i.slot.window as usize,
                    dropped: i.slot.dropped.get(),
                }));
            }
            if let Some(msg) = i.slot.pop() {
                match msg {
                    Msg::Yield { value, .. } => return Poll::Ready(Ok(Some(value))),
                    Msg::Stop { .. } => {
                        i.peer_stopped.set(true);
                        return Poll::Ready(Ok(None));
                    }
                    m @ (Msg::Return { .. } | Msg::Error { .. }) => self.inner.set_outcome(&m),
                    _ => {}
                }
                continue;
            }
            if i.peer_stopped.get() {
                return Poll::Ready(Ok(None));
            }
            if let Some(out) = i.outcome.borrow().as_ref() {
                return Poll::Ready(match out {
                    Ok(_) => Ok(None),
                    Err(e) if self.inner.absorbs(e) => Ok(None),
                    Err(e) => Err(e.clone()),
                });
            }
            if self.note_closed() {
                continue;
            }
            check_cancel()?;
            i.slot.waiters.register(cx.waker());
            return Poll::Pending;
        }
    }
}

fn wrong_side(what: &str, side: &str) -> Error {
    Error::WrongContextSide { what: what.into(), side: side.into() }
}

/// The reader id of the stream's own `receive`.
/// The broadcast ring behind [`MsgStream::subscribe`] (the crate's one cursor ring), and how
/// the stream ended.
struct Bcast {
    ring: Broadcast<Vec<u8>>,
    /// How the stream ended, after every item pulled.
    end: Option<Result<()>>,
}

/// A context's two-way stream of items (tractor's `MsgStream`), open for the duration of
/// [`Context::open_stream`]'s block. Items are any serde type (postcard on the wire); each
/// `receive` names the type it expects. Cheap to clone; a clone used after the block ended gets
/// [`Error::Closed`].
///
/// Items arrive in the order they were sent; each direction has a window of items in flight
/// ([`STREAM_BUFFER`], or `ActorOpts::stream_window`), so a slow receiver slows its sender;
/// the stream ends (`receive` → [`Error::EndOfChannel`], `try_next` → `Ok(None)`) when the peer's
/// stream block returns, and fails with the context's error when the peer fails.
///
/// A two-way stream: the caller sends words, the callee answers each with its length and
/// ends when the caller's stream block ends (this needs a child process, so it is `no_run`
/// here; `examples/infected_echo_server.rs` runs a stream the same way, with a host task
/// behind the callee):
///
/// ```no_run
/// use std::process::ExitCode;
/// use infect::actor::{self, ActorOpts, Context, ContextFn, Endpoints};
///
/// /// Answers each word with its length; returns how many it answered.
/// const LENGTHS: ContextFn<(), (), u32> = ContextFn::new("text", "lengths");
///
/// async fn lengths(ctx: Context) -> infect::Result<u32> {
///     ctx.started(&()).await?;
///     ctx.open_stream(async |stream| {
///         let mut n = 0;
///         while let Some(word) = stream.try_next::<String>().await? {
///             stream.send(&word.len()).await?;
///             n += 1;
///         }
///         Ok(n) // the caller's stream block ended
///     })
///     .await
/// }
///
/// fn main() -> ExitCode {
///     actor::main(Endpoints::new().serve(LENGTHS, lengths), async {
///         actor::open_nursery(async |an| {
///             let p = an.start_actor("counter", ActorOpts::new().enable_modules(["text"])).await?;
///             let answered = p
///                 .open_context(LENGTHS, &(), async |ctx, ()| {
///                     ctx.open_stream(async |stream| {
///                         for word in ["one", "three", "seventeen"] {
///                             stream.send(word).await?;
///                             let len: usize = stream.receive().await?;
///                             assert_eq!(len, word.len());
///                         }
///                         Ok(())
///                     })
///                     .await?;
///                     ctx.wait_for_result::<u32>().await
///                 })
///                 .await?;
///             assert_eq!(answered, 3);
///             p.cancel_actor().await?;
///             Ok(())
///         })
///         .await
///         .map(drop)
///     })
/// }
/// ```
#[derive(Clone)]
pub struct MsgStream {
    ctx: Context,
    closed: Rc<Cell<bool>>,
}

impl fmt::Debug for MsgStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsgStream").field("ctx", &self.ctx).field("closed", &self.closed.get()).finish()
    }
}

impl MsgStream {
    /// The context this stream belongs to.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Sends one item to the peer. Waits for send credit (the peer's receiver has at most
    /// a window of items in flight from us, [`STREAM_BUFFER`] by default: a slow receiver slows
    /// this sender) and for the
    /// pipe; both waits are cancellation points, and a cancelled send sends nothing. Fails with
    /// [`Error::Closed`] after the block ended or once the context is over (its error, if it
    /// failed), and with `Error::Wire(FrameTooLarge)` before anything is sent if the item is
    /// over the frame limit.
    ///
    /// Example on [`MsgStream`].
    pub async fn send<T: Serialize + ?Sized>(&self, item: &T) -> Result<()> {
        let i = &self.ctx.inner;
        let value = encode_payload(item)?;
        self.ctx.take_send_credit(&self.closed).await?;
        let mut guard = CreditGuard { cell: &i.slot.send_credit, n: 1, grant: false, sent: false };
        match self.ctx.send_msg(&Msg::Yield { cid: i.cid, value }).await {
            Ok(()) => {
                guard.sent = true;
                Ok(())
            }
            Err(Error::Closed) => Err(self.ctx.end_after_broken_pipe(&self.closed).await),
            Err(e) => Err(e),
        }
    }

    /// Receives the next item (tractor's `await stream.receive()`): `Ok(item)`;
    /// [`Error::EndOfChannel`] once the peer closed its side (`Stop`) or the context ended
    /// normally (or by a cancellation this side asked for); the context's error otherwise;
    /// [`Error::StreamOverrun`] if this side fell too far behind. The item's type is inferred
    /// from its use (or named: `receive::<u64>()`). Example on [`MsgStream`].
    pub async fn receive<T: DeserializeOwned>(&self) -> Result<T> {
        self.try_next().await?.ok_or(Error::EndOfChannel)
    }

    /// Receives the next item, `Ok(None)` at the end of the stream (tractor's
    /// `async for msg in stream`: `while let Some(msg) = stream.try_next().await? { .. }`);
    /// otherwise as [`receive`](Self::receive). Example on [`MsgStream`] (the callee's loop).
    pub async fn try_next<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let bytes = self.read(PRIMARY).await?;
        match bytes {
            Some(b) => Ok(Some(decode_payload(&b)?)),
            None => Ok(None),
        }
    }

    /// The items as a [`Stream`](futures::Stream): it ends at the end of the stream; an error
    /// is its last item.
    pub fn stream<T: DeserializeOwned>(&self) -> impl futures::Stream<Item = Result<T>> + Unpin {
        item_stream(self, PRIMARY)
    }

    /// A broadcast receiver (tractor's `MsgStream.subscribe()`): it gets every item no reader
    /// has received yet and every later one, as does the stream's own `receive` and every
    /// other subscriber. A reader more than [`STREAM_BUFFER`] items behind the fastest gets
    /// [`Error::Lagged`] once, then continues from the oldest item kept. Every subscriber sees
    /// the end of the stream. Irreversible for the stream's lifetime.
    ///
    /// Example on [`BroadcastReceiver`].
    pub fn subscribe(&self) -> BroadcastReceiver {
        self.subscribe_with_capacity(STREAM_BUFFER)
    }

    /// [`subscribe`](Self::subscribe), keeping `capacity` items for the slower readers (set by
    /// the first subscription; later ones share it).
    pub fn subscribe_with_capacity(&self, capacity: usize) -> BroadcastReceiver {
        let mut b = self.ctx.inner.bcast.borrow_mut();
        let b = b.get_or_insert_with(|| Bcast { ring: Broadcast::new(capacity), end: None });
        let id = b.ring.subscribe(Vec::clone);
        BroadcastReceiver { stream: self.clone(), id }
    }

    /// The next item for `reader`, returning the credit owed to the peer before each wait.
    async fn read(&self, reader: u64) -> Result<Option<Vec<u8>>> {
        loop {
            self.ctx.grant_due().await?;
            let got = poll_fn(|cx| match self.poll_read(reader, cx) {
                Poll::Pending if self.ctx.grant_needed() => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
                Poll::Ready(r) => Poll::Ready(Some(r)),
            })
            .await;
            if let Some(r) = got {
                return r;
            }
        }
    }

    fn poll_read(&self, reader: u64, cx: &mut TaskCx<'_>) -> Poll<Result<Option<Vec<u8>>>> {
        if self.closed.get() {
            return Poll::Ready(Err(Error::Closed));
        }
        let i = &self.ctx.inner;
        let mut guard = i.bcast.borrow_mut();
        let Some(b) = guard.as_mut() else {
            drop(guard);
            return self.ctx.poll_item(cx);
        };
        match b.ring.position(reader) {
            Err(e) => return Poll::Ready(Err(e)),
            Ok(Position::Behind) => return Poll::Ready(Ok(Some(b.ring.take(reader)))),
            Ok(Position::Frontier) => {}
        }
        if let Some(end) = &b.end {
            return Poll::Ready(end.clone().map(|()| None));
        }
        drop(guard);
        let got = self.ctx.poll_item(cx);
        let mut guard = i.bcast.borrow_mut();
        let b = guard.as_mut().expect("the ring is never removed");
        match got {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(v))) => {
                b.ring.pull_got(v);
                let v = b.ring.take(reader);
                drop(guard);
                // The other readers have an item now.
                i.slot.waiters.wake_all();
                Poll::Ready(Ok(Some(v)))
            }
            Poll::Ready(Ok(None)) => {
                b.end = Some(Ok(()));
                drop(guard);
                i.slot.waiters.wake_all();
                Poll::Ready(Ok(None))
            }
            // This reader's own cancellation is not the stream's end.
            Poll::Ready(Err(Error::Cancelled)) => Poll::Ready(Err(Error::Cancelled)),
            Poll::Ready(Err(e)) => {
                b.end = Some(Err(e.clone()));
                drop(guard);
                i.slot.waiters.wake_all();
                Poll::Ready(Err(e))
            }
        }
    }
}

fn item_stream<T: DeserializeOwned>(stream: &MsgStream, reader: u64) -> impl futures::Stream<Item = Result<T>> + Unpin {
    stream_of(move || stream.read(reader), |b: Vec<u8>| decode_payload(&b).map_err(Error::from))
}

/// A subscriber made by [`MsgStream::subscribe`]: an owned handle (it may move into another
/// task) that reads its own copy of the stream.
///
/// It starts at the oldest item no reader has received yet, gets [`Error::Lagged`] once if it
/// falls more than the broadcast capacity behind the fastest reader (then continues), and sees
/// the end of the stream like every reader. Two consumers of one stream (this needs a child
/// process, so it is `no_run` here; `examples/subscribe_fanout.rs` runs it, with subscribers
/// on both sides of the process boundary):
///
/// ```no_run
/// use futures::future::join;
/// use std::process::ExitCode;
/// use infect::actor::{self, ActorOpts, BroadcastReceiver, Context, ContextFn, Endpoints};
///
/// const COUNT: ContextFn<u32, ()> = ContextFn::new("demo", "count");
///
/// async fn count(ctx: Context, n: u32) -> infect::Result<()> {
///     ctx.started(&()).await?;
///     ctx.open_stream(async |stream| {
///         for i in 0..n {
///             stream.send(&i).await?;
///         }
///         Ok(())
///     })
///     .await
/// }
///
/// async fn all(sub: &BroadcastReceiver) -> infect::Result<Vec<u32>> {
///     let mut got = Vec::new();
///     while let Some(i) = sub.try_next().await? {
///         got.push(i);
///     }
///     Ok(got)
/// }
///
/// fn main() -> ExitCode {
///     actor::main(Endpoints::new().serve(COUNT, count), async {
///         actor::open_nursery(async |an| {
///             let p = an.start_actor("counter", ActorOpts::new().enable_modules(["demo"])).await?;
///             p.open_context(COUNT, &4, async |ctx, ()| {
///                 ctx.open_stream(async |stream| {
///                     let (a, b) = (stream.subscribe(), stream.subscribe());
///                     let (a, b) = join(all(&a), all(&b)).await;
///                     assert_eq!(a?, [0, 1, 2, 3]); // each subscriber gets every item
///                     assert_eq!(b?, [0, 1, 2, 3]);
///                     Ok(())
///                 })
///                 .await
///             })
///             .await?;
///             p.cancel_actor().await?;
///             Ok(())
///         })
///         .await
///         .map(drop)
///     })
/// }
/// ```
#[derive(Debug)]
pub struct BroadcastReceiver {
    stream: MsgStream,
    id: u64,
}

impl BroadcastReceiver {
    /// Receives the next item: like [`MsgStream::receive`], plus [`Error::Lagged`] when this
    /// subscriber fell behind.
    pub async fn receive<T: DeserializeOwned>(&self) -> Result<T> {
        self.try_next().await?.ok_or(Error::EndOfChannel)
    }

    /// Receives the next item, `Ok(None)` at the end: like [`MsgStream::try_next`], plus
    /// [`Error::Lagged`] when this subscriber fell behind. Example on [`BroadcastReceiver`].
    pub async fn try_next<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let bytes = self.stream.read(self.id).await?;
        match bytes {
            Some(b) => Ok(Some(decode_payload(&b)?)),
            None => Ok(None),
        }
    }

    /// The items as a [`Stream`](futures::Stream).
    pub fn stream<T: DeserializeOwned>(&self) -> impl futures::Stream<Item = Result<T>> + Unpin {
        item_stream(&self.stream, self.id)
    }
}

impl Drop for BroadcastReceiver {
    fn drop(&mut self) {
        let mut b = self.stream.ctx.inner.bcast.borrow_mut();
        if let Some(b) = b.as_mut() {
            b.ring.unsubscribe(self.id);
        }
    }
}
