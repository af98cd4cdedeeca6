//! [`Portal`]: a parent's handle to one child actor, and the calls made through it (a plain
//! call's `Start` → outcome, a context's opening); [`OneShot`], the typed portal of a
//! `run_in_actor` actor.
//!
//! Invariants:
//! - **A call waits on nothing but its answer**: its inbox in the connection's call table, or
//!   the connection's close (the child's death). A remote failure or death ends it the moment
//!   it arrives.
//! - **A cancelled call does not outlive its caller.** Cancelling the caller sends
//!   `Cancel{cid}` and waits, shielded and bounded by the cancel timeout, for the call's end.
//! - A call's inbox leaves the call table however the call ends (`ForgetCall`); late traffic
//!   for it is dropped silently.

use std::fmt;
use std::future::poll_fn;
use std::marker::PhantomData;
use std::rc::Rc;
use std::task::Poll;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::guest::{self, CancelScope};
use crate::wire::{Aid, Cid, FuncKind, Msg, WireError, decode_payload, encode_payload};
use crate::{Error, Result};

use super::super::codec;
use super::super::context::{Context, shielded_for};
use super::super::endpoints::{ContextFn, Function};
use super::super::peer::CallSlot;
use super::ChildActor;
#[cfg(doc)]
use super::{ActorNursery, RECENT_ERRORS};

impl ChildActor {
    /// The next message for `slot`, or the child's closing error. A cancellation point when
    /// `cancellable`.
    async fn next_msg(&self, slot: &CallSlot, cancellable: bool) -> Result<Msg> {
        poll_fn(|cx| {
            if let Some(m) = slot.pop() {
                return Poll::Ready(Ok(m));
            }
            if let Some(e) = self.closed_error() {
                return Poll::Ready(Err(e));
            }
            if cancellable {
                guest::check_cancel()?;
            }
            slot.waiters.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Runs `ns.func(args)` in the child: the result's payload bytes, or the error.
    pub(crate) async fn call(&self, ns: &str, func: &str, args: Vec<u8>, cancellable: bool) -> Result<Vec<u8>> {
        let (cid, slot) = self.begin_call(ns, func, args, FuncKind::Function).await?;
        self.finish_call(cid, &slot, cancellable).await
    }

    /// Opens call `cid` and sends its `Start`. On a fresh pipe this does not block.
    pub(crate) async fn begin_call(
        &self,
        ns: &str,
        func: &str,
        args: Vec<u8>,
        kind: FuncKind,
    ) -> Result<(Cid, Rc<CallSlot>)> {
        if let Some(e) = self.closed_error() {
            return Err(e);
        }
        let (cid, slot) = self.peer.open_call(self.window);
        let start = Msg::Start { cid, ns: ns.to_owned(), func: func.to_owned(), args, kind };
        match self.send(&start).await {
            Ok(()) | Err(Error::Closed) => Ok((cid, slot)), // a dead child: the wait reports how it died
            Err(e) => {
                self.peer.forget_call(cid);
                Err(e)
            }
        }
    }

    /// Waits for the outcome of call `cid`; forgets the call however this ends.
    pub(crate) async fn finish_call(&self, cid: Cid, slot: &CallSlot, cancellable: bool) -> Result<Vec<u8>> {
        let _forget = ForgetCall { child: self, cid };
        loop {
            match self.next_msg(slot, cancellable).await {
                Ok(Msg::StartAck { .. } | Msg::CancelAck { .. }) => {}
                Ok(Msg::Return { value, .. }) => return Ok(value),
                Ok(Msg::Error { src, boxed_type, message, relay_path, canceller, .. }) => {
                    return Err(codec::decode(src, boxed_type, message, relay_path, canceller));
                }
                Ok(_) => {} // context traffic: not for a plain call
                Err(Error::Cancelled) => {
                    // Cancel the remote call and wait (bounded) for it to end, so that it does
                    // not outlive us.
                    let d = self.sup.cancel_timeout;
                    let _ = shielded_for(d, async {
                        slot.note_cancel_sent();
                        self.send(&Msg::Cancel { cid: Some(cid) }).await?;
                        loop {
                            match self.next_msg(slot, true).await? {
                                Msg::Return { .. } | Msg::Error { .. } => return Ok(()),
                                _ => {}
                            }
                        }
                    })
                    .await;
                    return Err(Error::Cancelled);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Removes a call's slot when the call ends, however it ends.
pub(crate) struct ForgetCall<'a> {
    pub(crate) child: &'a ChildActor,
    pub(crate) cid: Cid,
}

impl Drop for ForgetCall<'_> {
    fn drop(&mut self) {
        self.child.peer.forget_call(self.cid);
    }
}

/// A handle to a child actor: call its endpoints, cancel it (tractor's `Portal`), returned by
/// [`ActorNursery::start_actor`] (and, as a [`OneShot`], by
/// [`ActorNursery::run_in_actor`]). Cheap to clone; it does not keep the actor alive: the
/// nursery decides when it ends.
///
/// - [`run`](Self::run): a one-shot call of a [`Function`]; [`open_context`](Self::open_context):
///   a context with a [`ContextFn`] (handshake, two-way stream, final outcome).
/// - [`cancel_actor`](Self::cancel_actor): ends the actor and waits until it is reaped.
/// - A remote failure comes back as [`Error::RemoteActor`] with the remote error's kind, a
///   child that dies as [`Error::ActorDied`]; a call to a namespace the actor was not started
///   with is the remote `ModuleNotExposed`.
/// - [`name`](Self::name), [`pid`](Self::pid), [`aid`](Self::aid), and the counters of what the
///   actor sent that was damaged or out of the dialog ([`wire_errors`](Self::wire_errors),
///   [`peer_errors`](Self::peer_errors), [`protocol_errors`](Self::protocol_errors)).
///
/// It needs a child process, so this is `no_run` here; `examples/actor_tree.rs` runs the same
/// calls (`cargo run --example actor_tree`).
///
/// ```no_run
/// use std::process::ExitCode;
/// use infect::actor::{self, ActorOpts, Endpoints, Function};
/// use infect::Error;
///
/// const GREET: Function<String, String> = Function::new("hello", "greet");
/// const FAIL: Function<(), ()> = Function::new("hello", "fail");
///
/// async fn greet(who: String) -> infect::Result<String> {
///     Ok(format!("hello, {who}"))
/// }
///
/// /// The endpoint's own error type: its full path is the kind the caller sees.
/// #[derive(Debug)]
/// struct NoSuchGreeting;
/// impl std::fmt::Display for NoSuchGreeting {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("no such greeting")
///     }
/// }
/// impl std::error::Error for NoSuchGreeting {}
///
/// async fn fail() -> infect::Result<()> {
///     Err(Error::user(NoSuchGreeting))
/// }
///
/// fn main() -> ExitCode {
///     actor::main(Endpoints::new().serve(GREET, greet).serve(FAIL, fail), async {
///         actor::open_nursery(async |an| {
///             let p = an.start_actor("greeter", ActorOpts::new().enable_modules(["hello"])).await?;
///             assert_eq!(p.name(), "greeter");
///             assert_eq!(p.aid().map(|a| a.pid), Some(p.pid())); // spawned directly: its own pid
///             assert_eq!(p.run(GREET, &"world".to_owned()).await?, "hello, world");
///             match p.run(FAIL, &()).await {
///                 Err(Error::RemoteActor(r)) => {
///                     assert_eq!(r.boxed_type, std::any::type_name::<NoSuchGreeting>());
///                     assert_eq!(r.src.name, "greeter");
///                 }
///                 other => panic!("{other:?}"),
///             }
///             assert!(p.cancel_actor().await?); // acknowledged the cancel and exited in time
///             assert_eq!(p.protocol_error_count(), 0);
///             Ok(())
///         })
///         .await
///         .map(drop)
///     })
/// }
/// ```
#[derive(Clone)]
pub struct Portal {
    pub(crate) child: Rc<ChildActor>,
}

impl fmt::Debug for Portal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Portal")
            .field("name", &self.child.name)
            .field("pid", &self.child.sup.pid)
            .field("closed", &self.child.closed_error().is_some())
            .finish()
    }
}

impl Portal {
    /// Runs the function `func` names in the actor with `args` and returns its result (both
    /// typed by the handle).
    ///
    /// ```no_run
    /// # use infect::actor::{ActorOpts, Function, Portal};
    /// const ADD: Function<(u32, u32), u32> = Function::new("math", "add");
    ///
    /// # async fn demo(portal: &Portal) -> infect::Result<()> {
    /// let three = portal.run(ADD, &(1, 2)).await?;
    /// assert_eq!(three, 3);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A failure in the actor comes back as [`Error::RemoteActor`] (its `boxed_type` is the
    /// remote error's kind); an actor that dies meanwhile as [`Error::ActorDied`]; arguments
    /// too big for a frame as `Error::Wire(FrameTooLarge)` before anything is sent. The call
    /// waits on nothing but its answer, so a remote failure or death ends it the moment it
    /// arrives (the same supervision as a context's block). Cancelling
    /// the caller cancels the remote call and waits (at most the cancel timeout) for it to end.
    #[track_caller]
    pub fn run<A: Serialize, R: DeserializeOwned>(
        &self,
        func: Function<A, R>,
        args: &A,
    ) -> impl Future<Output = Result<R>> {
        crate::cx::at(async move {
            let args = encode_payload(args)?;
            let value = self.child.call(func.ns(), func.name(), args, true).await?;
            Ok(decode_payload(&value)?)
        })
    }

    /// Opens a context with the actor (tractor's `Portal.open_context`): starts the context
    /// endpoint `func` names with `args`, waits for its `ctx.started(first)`, and
    /// runs `body(&ctx, first)`, the `async with` block, inside the context's own cancel scope.
    /// The context is a supervision scope: if the callee fails (or cancels itself, or a
    /// `ContextCancelled` arrives that `ctx.cancel()` did not ask for, or the actor dies) while
    /// the block runs, the block is cancelled wherever it waits and this returns that error
    /// with its kind ([`Error::RemoteActor`], [`Error::ContextCancelled`], [`Error::ActorDied`]).
    /// Otherwise, on the way out, it drains the context to its final outcome: the body's value
    /// if the context returned (or was cancelled by this side's `ctx.cancel()`: absorbed), else
    /// the context's error; the body's own error, or a cancellation of this task, comes out bare
    /// after the remote context was cancelled and drained (bounded by the cancel timeout). An
    /// error before `started` (say, the endpoint's `to_host` partner failed first) is returned
    /// and the body does not run. Keep a clone of `ctx` to read its state afterwards. See
    /// [`Context`] for the dialog and the rules.
    ///
    /// ```no_run
    /// use std::process::ExitCode;
    /// use infect::actor::{self, ActorOpts, Context, ContextFn, Endpoints};
    ///
    /// /// Takes the bound, starts with a `String`, returns the bound.
    /// const COUNTER: ContextFn<u32, String, u32> = ContextFn::new("demo", "counter");
    ///
    /// async fn counter(ctx: Context, upto: u32) -> infect::Result<u32> {
    ///     ctx.started(&"counting").await?;
    ///     ctx.open_stream(async |stream| {
    ///         for i in 0..upto {
    ///             stream.send(&i).await?;
    ///         }
    ///         Ok(())
    ///     })
    ///     .await?;
    ///     Ok(upto)
    /// }
    ///
    /// fn main() -> ExitCode {
    ///     actor::main(Endpoints::new().serve(COUNTER, counter), async {
    ///         actor::open_nursery(async |an| {
    ///             let p = an.start_actor("counter", ActorOpts::new().enable_modules(["demo"])).await?;
    ///             let sum = p
    ///                 .open_context(COUNTER, &3, async |ctx, first| {
    ///                     assert_eq!(first, "counting");
    ///                     let sum = ctx
    ///                         .open_stream(async |stream| {
    ///                             let mut sum = 0;
    ///                             while let Some(i) = stream.try_next::<u32>().await? {
    ///                                 sum += i;
    ///                             }
    ///                             Ok(sum)
    ///                         })
    ///                         .await?;
    ///                     assert_eq!(ctx.wait_for_result::<u32>().await?, 3);
    ///                     Ok(sum)
    ///                 })
    ///                 .await?;
    ///             assert_eq!(sum, 3);
    ///             p.cancel_actor().await?;
    ///             Ok(())
    ///         })
    ///         .await
    ///         .map(drop)
    ///     })
    /// }
    /// ```
    pub async fn open_context<A, S, R, T>(
        &self,
        func: ContextFn<A, S, R>,
        args: &A,
        body: impl AsyncFnOnce(&Context, S) -> Result<T>,
    ) -> Result<T>
    where
        A: Serialize,
        S: DeserializeOwned,
    {
        let (ns, func) = (func.ns(), func.name());
        let args = encode_payload(args)?;
        let (cid, slot) = self.child.begin_call(ns, func, args, FuncKind::Context).await?;
        let _forget = ForgetCall { child: &self.child, cid };
        let c = &self.child;
        let ctx = Context::caller(
            c.peer.clone(),
            cid,
            slot,
            format!("{ns}.{func}"),
            c.me.aid.name.clone(),
            c.sup.cancel_timeout,
        );
        let first = match ctx.wait_started().await {
            Ok(bytes) => decode_payload::<S>(&bytes).map_err(Error::from),
            Err(e) => Err(e),
        };
        let first = match first {
            Ok(v) => v,
            Err(e) => {
                ctx.cancel_and_drain().await;
                return Err(e);
            }
        };
        ctx.run_block(body(&ctx, first)).await
    }

    /// Cancels the actor and waits until its process is reaped (tractor's `cancel_actor`),
    /// climbing the ladder if need be. `Ok(true)` if it ended gracefully (acknowledged the
    /// cancel and exited in time), `Ok(false)` if it had to be signalled or was already gone.
    /// Not a cancellation point: the child is reaped before this returns. Example on
    /// [`Portal`].
    #[track_caller]
    pub fn cancel_actor(&self) -> impl Future<Output = Result<bool>> {
        crate::cx::at(async move {
            self.child.request_teardown();
            let reaped = self.child.sup.reaped.clone();
            CancelScope::shielded().run(reaped.wait()).await?;
            Ok(self.child.sup.graceful.get())
        })
    }

    /// The result of a [`run_in_actor`](ActorNursery::run_in_actor) actor's call, once it
    /// arrived (the error as `Err`). [`Error::NoResult`] for a `start_actor` portal. (Public
    /// as [`OneShot::wait_for_result`], typed by the call's handle.)
    pub(crate) async fn wait_for_result<R: DeserializeOwned>(&self) -> Result<R> {
        if !self.child.one_shot.armed.get() {
            return Err(Error::NoResult { actor: self.child.name.clone() });
        }
        self.child.one_shot.ready.wait().await?;
        let r = self.child.one_shot.result.borrow().clone();
        match r {
            Some(Ok(bytes)) => Ok(decode_payload(&bytes)?),
            Some(Err(e)) => Err(e),
            None => Err(Error::NoResult { actor: self.child.name.clone() }),
        }
    }

    /// The actor's name.
    ///
    /// Example on [`Portal`].
    pub fn name(&self) -> &str {
        &self.child.name
    }

    /// The actor's process id: of the process this side spawned, so for an actor started
    /// through a [launcher](super::ActorOpts::launcher) the launcher's (the actor's own pid on the other
    /// side is in its [`aid`](Self::aid)).
    pub fn pid(&self) -> u32 {
        self.child.sup.pid
    }

    /// The actor's identity, as it announced it in the handshake.
    ///
    /// Example on [`Portal`].
    pub fn aid(&self) -> Option<Aid> {
        self.child.state.aid.borrow().clone()
    }

    /// The damaged frames received from this actor (skipped): the [`RECENT_ERRORS`] most
    /// recent, oldest first; [`wire_error_count`](Self::wire_error_count) counts them all. The
    /// first `RECENT_ERRORS` were reported back to it.
    pub fn wire_errors(&self) -> Vec<WireError> {
        self.child.logs.wire_errors.recent()
    }

    /// How many damaged frames were received from this actor in all.
    pub fn wire_error_count(&self) -> u64 {
        self.child.logs.wire_errors.total()
    }

    /// The actor-wide errors it reported (`Msg::Error` without a call: a frame of ours it could
    /// not decode, say): the [`RECENT_ERRORS`] most recent, oldest first.
    pub fn peer_errors(&self) -> Vec<Error> {
        self.child.logs.peer_errors.recent()
    }

    /// How many actor-wide errors it reported in all.
    pub fn peer_error_count(&self) -> u64 {
        self.child.logs.peer_errors.total()
    }

    /// The messages from this actor that were refused as out of the dialog, each an
    /// [`Error::UnexpectedMessage`] (a second `Aid`, a `CancelAck` nobody asked for, ...): the
    /// [`RECENT_ERRORS`] most recent, oldest first. Each was reported to the actor (the first
    /// `RECENT_ERRORS`) and otherwise ignored.
    pub fn protocol_errors(&self) -> Vec<Error> {
        self.child.logs.protocol_errors.recent()
    }

    /// The fuzz target's memory check: the most messages any open call of this actor holds.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn largest_inbox(&self) -> usize {
        self.child.peer.largest_inbox()
    }

    /// How many messages from this actor were refused in all.
    pub fn protocol_error_count(&self) -> u64 {
        self.child.logs.protocol_errors.total()
    }
}

/// The portal of a one-shot actor started by
/// [`ActorNursery::run_in_actor`] with a [`Function<A, R>`]:
/// a [`Portal`] (it derefs to one) whose [`wait_for_result`](OneShot::wait_for_result) gives
/// the call's `R`.
///
/// ```no_run
/// use std::process::ExitCode;
/// use infect::actor::{self, ActorOpts, Endpoints, Function};
///
/// const ADD: Function<(i64, i64), i64> = Function::new("math", "add");
///
/// fn main() -> ExitCode {
///     actor::main(Endpoints::new().serve(ADD, async |(a, b): (i64, i64)| Ok(a + b)), async {
///         actor::open_nursery(async |an| {
///             let once = an.run_in_actor(ADD, &(1, 2), ActorOpts::new()).await?;
///             let three = once.wait_for_result().await?; // an i64, from the handle
///             assert_eq!(three, 3);
///             println!("{} answered", once.name()); // a `Portal` method, through `Deref`
///             Ok(())
///         })
///         .await
///         .map(drop)
///     })
/// }
/// ```
pub struct OneShot<R> {
    portal: Portal,
    result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for OneShot<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OneShot").field(&self.portal).finish()
    }
}

impl<R> OneShot<R> {
    pub(crate) fn new(portal: Portal) -> OneShot<R> {
        OneShot { portal, result: PhantomData }
    }

    /// The untyped portal.
    pub fn portal(&self) -> &Portal {
        &self.portal
    }
}

impl<R: DeserializeOwned> OneShot<R> {
    /// The call's result, once it arrived (its error as `Err`: the remote error, or
    /// [`Error::ActorDied`] if the actor died first). The nursery also waits for it on exit and
    /// raises its error (one-cancels-all).
    ///
    /// Example on [`OneShot`].
    #[track_caller]
    pub fn wait_for_result(&self) -> impl Future<Output = Result<R>> {
        crate::cx::at(async move { self.portal.wait_for_result().await })
    }
}

impl<R> std::ops::Deref for OneShot<R> {
    type Target = Portal;
    fn deref(&self) -> &Portal {
        &self.portal
    }
}
