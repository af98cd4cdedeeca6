//! Process tests of infected actors, contexts and streams (`harness = false`: this binary *is*
//! the actor binary).
//!
//! `main` calls `infect::actor::main`: in a child it serves the endpoints below (namespace
//! `aio`); in the root it runs every case in turn, prints one line per case and then exactly
//! `N passed, M failed`, and exits non-zero if any failed. One case re-executes this binary as
//! a separate, *infected* root (selected by `INFECTED_TEST_ROLE`).
//!
//! Every case asserts its exact outcome (values, error kinds, cancellers) and then that nothing
//! was left behind: no process whose parent is us (running or zombie), the same open
//! descriptors as before.
//!
//! Run: `cargo test --test infected` (one process; the cases run sequentially, a few seconds).

#[macro_use]
mod common_proc;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::future::join;
use infect::actor::{self, ActorOpts, Context, ContextFn, Endpoints, Function, RootOpts};
use infect::to_host::{self, HostChannel, LinkOpts};
use infect::{Error, Result, guest, host};

use common_proc::{Case, Check, ensure_ok, remote, signal, wait_until};

const NS: &str = "aio";
/// Ends the echo host task's loop.
const SENTINEL: u64 = u64::MAX;

// ---------------------------------------------------------------- host-side functions

async fn host_sleep_forever() -> Result<()> {
    host::sleep(Duration::from_secs(3600)).await?;
    Ok(())
}

fn value_error(what: &str) -> Error {
    Error::msg("ValueError", what)
}

// ---------------------------------------------------------------- function endpoints

async fn run_task_fails(ms: u64) -> Result<()> {
    to_host::run_task(async move {
        host::sleep(Duration::from_millis(ms)).await?;
        Err::<(), _>(value_error("host task failed after sleeping"))
    })
    .await
}

async fn move_on_host_forever(ms: u64) -> Result<()> {
    let r = guest::move_on_after(Duration::from_millis(ms), to_host::run_task(host_sleep_forever())).await?;
    match r {
        None => Ok(()),
        Some(()) => Err(value_error("the host task was not cancelled")),
    }
}

async fn host_forever() -> Result<()> {
    to_host::run_task(host_sleep_forever()).await
}

async fn run_task_echo(x: u64) -> Result<u64> {
    to_host::run_task(async move { Ok(x) }).await
}

async fn is_infected() -> Result<bool> {
    Ok(actor::current_actor().is_infected())
}

// ---------------------------------------------------------------- context endpoints

/// The host task fails `ms` after `started`; the guest waits on the link.
async fn host_fails_ctx(ctx: Context, ms: u64) -> Result<()> {
    let target = move |chan: HostChannel<(), (), &'static str>| async move {
        chan.started_nowait("up")?;
        host::sleep(Duration::from_millis(ms)).await?;
        Err::<(), _>(value_error("host task failed"))
    };
    to_host::open_channel_from(target, LinkOpts::new(), async |chan, first| {
        ctx.started(first).await?;
        chan.receive().await?;
        Ok(())
    })
    .await
}

/// The host task cancels itself after `started`.
async fn host_self_cancel_ctx(ctx: Context) -> Result<()> {
    let target = |chan: HostChannel<(), (), ()>| async move {
        chan.started_nowait(())?;
        host::yield_now().await?;
        host::cancel_current("the host task cancelled itself");
        host::sleep(Duration::from_secs(5)).await?;
        Ok(())
    };
    to_host::open_channel_from(target, LinkOpts::new(), async |chan, ()| {
        ctx.started(&()).await?;
        chan.receive().await?;
        Ok(())
    })
    .await
}

/// The host side counts to 100 (or stops at 50, by `mode`); the guest forwards to the parent.
async fn stream_from_host(ctx: Context, mode: String) -> Result<u64> {
    let m = mode.clone();
    let target = move |chan: HostChannel<(), u64, ()>| async move {
        chan.started_nowait(())?;
        for i in 0..100 {
            if i == 50 && m.starts_with("host_exits") {
                return Ok(());
            }
            if i == 50 && m == "host_fails" {
                return Err(value_error("host failed at 50"));
            }
            chan.send(i).await?;
            if m.starts_with("host_") {
                // In step with the guest (tractor's aio streamer paces itself the same way): a
                // host failure cancels the guest's block at once, and a value still unread then
                // is never forwarded.
                chan.get().await?;
            }
        }
        Ok(())
    };
    let opts = LinkOpts::new().suppress_graceful_exits(mode != "host_exits_strict");
    to_host::open_channel_from(target, opts, async |chan, ()| {
        ctx.started(&()).await?;
        ctx.open_stream(async |stream| {
            if mode == "subscribe" {
                // Two guest-side subscribers fan the host's values out, each tagging its copy.
                let (a, b) = (chan.subscribe(), chan.subscribe());
                let forward = async |tag: u8, sub: &to_host::BroadcastReceiver<u64>| {
                    let mut n = 0u64;
                    while let Some(v) = sub.try_next().await? {
                        stream.send(&(tag, v)).await?;
                        n += 1;
                    }
                    Ok::<u64, Error>(n)
                };
                let (x, y) = join(forward(0, &a), forward(1, &b)).await;
                return Ok(x? + y?);
            }
            let mut count = 0u64;
            while let Some(v) = chan.try_next().await? {
                if count == 50 && mode == "guest_fails" {
                    return Err(value_error("guest failed at 50"));
                }
                if count == 50 && mode == "guest_breaks" {
                    break;
                }
                stream.send(&v).await?;
                count += 1;
                if mode.starts_with("host_") {
                    chan.send(()).await?;
                }
            }
            Ok(count)
        })
        .await
    })
    .await
}

/// The seed's echo server, plus a sentinel that ends the host loop.
async fn echo_host(chan: HostChannel<u64, u64, &'static str>) -> Result<()> {
    chan.started_nowait("start")?;
    loop {
        let v = chan.get().await?;
        if v == SENTINEL {
            return Ok(());
        }
        chan.send_nowait(v)?;
        host::yield_now().await?;
    }
}

async fn echo_ctx(ctx: Context) -> Result<()> {
    to_host::open_channel_from(echo_host, LinkOpts::new(), async |chan, first| {
        ctx.started(first).await?;
        ctx.open_stream(async |stream| {
            while let Some(msg) = stream.try_next().await? {
                chan.send(msg).await?;
                match chan.try_next().await? {
                    Some(out) => stream.send(&out).await?,
                    None => break, // the host loop ended
                }
            }
            Ok(())
        })
        .await
    })
    .await
}

/// The host side fails before `started_nowait`.
async fn host_fails_before_started(ctx: Context) -> Result<()> {
    let target = |_chan: HostChannel<(), (), ()>| async move {
        host::sleep(Duration::from_millis(10)).await?;
        Err::<(), _>(value_error("failed before started"))
    };
    to_host::open_channel_from(target, LinkOpts::new(), async |_chan, ()| {
        ctx.started(&()).await?;
        Ok(())
    })
    .await
}

/// Creates `path` (removed by a teardown callback), runs a host task that writes
/// `path.host` when it is torn down, and waits.
async fn sigint_ctx(ctx: Context, path: String) -> Result<()> {
    std::fs::write(&path, b"alive").map_err(Error::user)?;
    let p = path.clone();
    actor::current_actor().on_teardown(move || {
        let _ = std::fs::remove_file(&p);
    });
    let marker = format!("{path}.host");
    let target = move |chan: HostChannel<(), (), ()>| async move {
        chan.started_nowait(())?;
        match host::sleep(Duration::from_secs(3600)).await {
            Ok(()) => Ok(()),
            Err(c) => {
                let e = Error::from(c);
                std::fs::write(&marker, e.kind()).map_err(Error::user)?;
                Err(e)
            }
        }
    };
    to_host::open_channel_from(target, LinkOpts::new(), async |_chan, ()| {
        ctx.started(&()).await?;
        guest::sleep_forever().await
    })
    .await
}

async fn started_twice(ctx: Context) -> Result<()> {
    ctx.started(&1u32).await?;
    ctx.started(&2u32).await
}

/// Cancels itself after `started`: the caller sees a `ContextCancelled` naming this actor.
async fn cancels_itself(ctx: Context) -> Result<()> {
    ctx.started(&()).await?;
    ctx.cancel().await?;
    guest::sleep_forever().await
}

/// Fails `ms` after `started`, in a plain guest sleep (not waiting on the caller).
async fn fails_after_started(ctx: Context, ms: u64) -> Result<()> {
    ctx.started(&()).await?;
    guest::sleep(Duration::from_millis(ms)).await?;
    Err(value_error("callee failed after started"))
}

/// Cancels itself `ms` after `started`.
async fn cancels_after_started(ctx: Context, ms: u64) -> Result<()> {
    ctx.started(&()).await?;
    guest::sleep(Duration::from_millis(ms)).await?;
    ctx.cancel().await?;
    guest::sleep_forever().await
}

/// Kills its own process with `SIGKILL` `ms` after `started`.
async fn dies_after_started(ctx: Context, ms: u64) -> Result<()> {
    ctx.started(&()).await?;
    guest::sleep(Duration::from_millis(ms)).await?;
    signal(std::process::id(), libc::SIGKILL);
    guest::sleep_forever().await
}

/// Opens its stream, receives `n` items (never more), then fails.
async fn reads_then_fails(ctx: Context, n: u64) -> Result<()> {
    ctx.started(&()).await?;
    ctx.open_stream(async |stream| {
        for _ in 0..n {
            stream.receive::<u64>().await?;
        }
        Err::<(), _>(value_error("callee failed while streaming"))
    })
    .await
}

/// Panics 5 ms after `started`.
async fn panics_after_started(ctx: Context) -> Result<()> {
    ctx.started(&()).await?;
    guest::sleep(Duration::from_millis(5)).await?;
    panic!("context panicked on purpose")
}

/// Its host task panics when `x == 0` (else it returns `x`).
async fn host_task_panics(x: u64) -> Result<u64> {
    to_host::run_task(async move {
        host::yield_now().await?;
        if x == 0 {
            panic!("host task panicked on purpose");
        }
        Ok(x)
    })
    .await
}

async fn never_started(_ctx: Context) -> Result<()> {
    Ok(())
}

/// Streams `0..n` as fast as it can.
async fn count_to(ctx: Context, n: u64) -> Result<u64> {
    ctx.started(&()).await?;
    ctx.open_stream(async |stream| {
        for i in 0..n {
            stream.send(&i).await?;
        }
        Ok(n)
    })
    .await
}

thread_local! {
    /// Items `stream_counted` has sent so far in this (child) process.
    static SENT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Streams `0..n` as fast as credit allows, counting each item sent in [`SENT`].
async fn stream_counted(ctx: Context, n: u64) -> Result<u64> {
    ctx.started(&()).await?;
    ctx.open_stream(async |stream| {
        for i in 0..n {
            stream.send(&i).await?;
            SENT.with(|s| s.set(s.get() + 1));
        }
        Ok(n)
    })
    .await
}

async fn sent_count() -> Result<u64> {
    Ok(SENT.with(|s| s.get()))
}

/// Receives `n` items `0..n` in order; after each count in `pauses` it tells the parent (a
/// stream item back) and stops consuming for 300 ms. Returns how many arrived in order.
async fn consume_slowly(ctx: Context, (n, pauses): (u64, Vec<u64>)) -> Result<u64> {
    ctx.started(&()).await?;
    ctx.open_stream(async |stream| {
        let mut got = 0u64;
        while got < n {
            match stream.try_next::<u64>().await? {
                Some(v) if v == got => got += 1,
                Some(v) => return Err(value_error(&format!("item {v} arrived as number {got}"))),
                None => break,
            }
            if pauses.contains(&got) {
                stream.send(&got).await?;
                guest::sleep(Duration::from_millis(300)).await?;
            }
        }
        Ok(got)
    })
    .await
}

/// Opens its stream, reads nothing, and fails after 200 ms.
async fn refuse_stream(ctx: Context) -> Result<()> {
    ctx.started(&()).await?;
    ctx.open_stream(async |_stream| {
        guest::sleep(Duration::from_millis(200)).await?;
        Err::<(), _>(value_error("not reading"))
    })
    .await
}

// Typed handles on the endpoints below, declared once and used at both ends.
const RUN_TASK_FAILS: Function<u64, ()> = Function::new(NS, "run_task_fails");
const MOVE_ON_HOST_FOREVER: Function<u64, ()> = Function::new(NS, "move_on_host_forever");
const HOST_FOREVER: Function<(), ()> = Function::new(NS, "host_forever");
const RUN_TASK_ECHO: Function<u64, u64> = Function::new(NS, "run_task_echo");
const IS_INFECTED: Function<(), bool> = Function::new(NS, "is_infected");
const HOST_FAILS_CTX: ContextFn<u64, String> = ContextFn::new(NS, "host_fails_ctx");
const HOST_SELF_CANCEL_CTX: ContextFn<(), ()> = ContextFn::new(NS, "host_self_cancel_ctx");
const STREAM_FROM_HOST: ContextFn<String, (), u64> = ContextFn::new(NS, "stream_from_host");
const ECHO_CTX: ContextFn<(), String> = ContextFn::new(NS, "echo_ctx");
const HOST_FAILS_BEFORE_STARTED: ContextFn<(), ()> = ContextFn::new(NS, "host_fails_before_started");
const SIGINT_CTX: ContextFn<String, ()> = ContextFn::new(NS, "sigint_ctx");
const STARTED_TWICE: ContextFn<(), u32> = ContextFn::new(NS, "started_twice");
const NEVER_STARTED: ContextFn<(), ()> = ContextFn::new(NS, "never_started");
const CANCELS_ITSELF: ContextFn<(), ()> = ContextFn::new(NS, "cancels_itself");
const COUNT_TO: ContextFn<u64, (), u64> = ContextFn::new(NS, "count_to");
const STREAM_COUNTED: ContextFn<u64, (), u64> = ContextFn::new(NS, "stream_counted");
const SENT_COUNT: Function<(), u64> = Function::new(NS, "sent_count");
const CONSUME_SLOWLY: ContextFn<(u64, Vec<u64>), (), u64> = ContextFn::new(NS, "consume_slowly");
const REFUSE_STREAM: ContextFn<(), ()> = ContextFn::new(NS, "refuse_stream");
const FAILS_AFTER_STARTED: ContextFn<u64, ()> = ContextFn::new(NS, "fails_after_started");
const CANCELS_AFTER_STARTED: ContextFn<u64, ()> = ContextFn::new(NS, "cancels_after_started");
const DIES_AFTER_STARTED: ContextFn<u64, ()> = ContextFn::new(NS, "dies_after_started");
const READS_THEN_FAILS: ContextFn<u64, ()> = ContextFn::new(NS, "reads_then_fails");
const PANICS_AFTER_STARTED: ContextFn<(), ()> = ContextFn::new(NS, "panics_after_started");
const HOST_TASK_PANICS: Function<u64, u64> = Function::new(NS, "host_task_panics");

fn endpoints() -> Endpoints {
    Endpoints::new()
        .serve(RUN_TASK_FAILS, run_task_fails)
        .serve(MOVE_ON_HOST_FOREVER, move_on_host_forever)
        .serve(HOST_FOREVER, host_forever)
        .serve(RUN_TASK_ECHO, run_task_echo)
        .serve(IS_INFECTED, is_infected)
        .serve(HOST_FAILS_CTX, host_fails_ctx)
        .serve(HOST_SELF_CANCEL_CTX, host_self_cancel_ctx)
        .serve(STREAM_FROM_HOST, stream_from_host)
        .serve(ECHO_CTX, echo_ctx)
        .serve(HOST_FAILS_BEFORE_STARTED, host_fails_before_started)
        .serve(SIGINT_CTX, sigint_ctx)
        .serve(STARTED_TWICE, started_twice)
        .serve(NEVER_STARTED, never_started)
        .serve(CANCELS_ITSELF, cancels_itself)
        .serve(COUNT_TO, count_to)
        .serve(STREAM_COUNTED, stream_counted)
        .serve(SENT_COUNT, sent_count)
        .serve(CONSUME_SLOWLY, consume_slowly)
        .serve(REFUSE_STREAM, refuse_stream)
        .serve(FAILS_AFTER_STARTED, fails_after_started)
        .serve(CANCELS_AFTER_STARTED, cancels_after_started)
        .serve(DIES_AFTER_STARTED, dies_after_started)
        .serve(READS_THEN_FAILS, reads_then_fails)
        .serve(PANICS_AFTER_STARTED, panics_after_started)
        .serve(HOST_TASK_PANICS, host_task_panics)
}

// ---------------------------------------------------------------- helpers

fn aio() -> ActorOpts {
    ActorOpts::new().enable_modules([NS]).infect_host(true)
}

fn dbg<T: std::fmt::Debug>(e: T) -> String {
    format!("{e:?}")
}

/// Checks that `e` is a remote error of `kind` raised in `src`.
fn is_remote(e: &Error, kind: &str, src: &str) -> Check {
    ensure!(e.kind() == "RemoteActorError", "expected a RemoteActorError, got {e:?}");
    let r = remote(e)?;
    ensure!(r.boxed_type == kind && r.src.name == src, "expected {kind} from {src}, got {e:?}");
    Ok(())
}

/// Checks that `e` is a `ContextCancelled` naming `canceller`, raised in `src`.
fn is_ctxc(e: &Error, canceller: &str, src: &str) -> Check {
    match e {
        Error::ContextCancelled { canceller: c, remote } if c == canceller && remote.src.name == src => Ok(()),
        other => Err(format!("expected ContextCancelled by {canceller} in {src}, got {other:?}")),
    }
}

/// Receives every `u64` of a stream: the values and how it ended.
async fn drain_u64(stream: &actor::MsgStream) -> (Vec<u64>, Result<()>) {
    let mut got = Vec::new();
    loop {
        match stream.try_next::<u64>().await {
            Ok(Some(v)) => got.push(v),
            Ok(None) => return (got, Ok(())),
            Err(e) => return (got, Err(e)),
        }
    }
}

// ---------------------------------------------------------------- cases

async fn run_task_failure_is_boxed() -> Check {
    let r: Result<()> = actor::open_nursery(async |an| {
        let p = an.start_actor("aio_side", aio()).await?;
        p.run(RUN_TASK_FAILS, &50u64).await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let e = r.err().ok_or("no error")?;
    is_remote(&e, "ValueError", "aio_side")?;
    ensure!(remote(&e)?.message == "host task failed after sleeping", "{e:?}");
    Ok(())
}

async fn move_on_after_cancels_run_task() -> Check {
    let t0 = Instant::now();
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("aio_side", aio()).await?;
        let t1 = Instant::now();
        let unit: () = p.run(MOVE_ON_HOST_FOREVER, &200u64).await?;
        Ok((unit, t1.elapsed()))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let ((), took) = r.map_err(dbg)?;
    ensure!(took >= Duration::from_millis(200) && took < Duration::from_millis(700), "took {took:?}");
    ensure!(t0.elapsed() < Duration::from_secs(2), "nursery took {:?}", t0.elapsed());
    Ok(())
}

async fn cancel_actor_blocked_in_run_task() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("blocked", aio()).await?;
        let out = Rc::new(RefCell::new(None));
        let graceful = guest::open_nursery(async |n| {
            let (p2, o) = (p.clone(), out.clone());
            n.start_soon(async move {
                *o.borrow_mut() = Some(p2.run(HOST_FOREVER, &()).await);
                Ok(())
            })?;
            guest::sleep(Duration::from_millis(100)).await?;
            p.cancel_actor().await
        })
        .await?
        .ok_or(Error::Cancelled)?;
        let out = out.borrow_mut().take();
        Ok((graceful, out))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (graceful, out) = r.map_err(dbg)?;
    ensure!(graceful, "cancel_actor was not graceful");
    match out {
        Some(Err(e)) => is_ctxc(&e, "root", "blocked"),
        other => Err(format!("call ended with {other:?}")),
    }
}

async fn parent_deadline_cancels_the_tree() -> Check {
    let t0 = Instant::now();
    let r = guest::move_on_after(Duration::from_millis(300), async {
        actor::open_nursery(async |an| {
            let p = an.start_actor("under_deadline", aio()).await?;
            p.run(HOST_FOREVER, &()).await
        })
        .await
        .and_then(|v| v.ok_or(infect::Error::Cancelled))
    })
    .await;
    ensure!(r == Ok(None), "expected the deadline to move on, got {r:?}");
    ensure!(t0.elapsed() < Duration::from_secs(2), "took {:?}", t0.elapsed());
    Ok(())
}

/// How the parent reacts while the context's host task is about to fail.
#[derive(Clone, Copy, Debug)]
enum Reaction {
    CancelContext,
    CancelActor,
    Wait,
}

/// The outcome of `open_context` (whose block's value is `wait_for_result`'s outcome), and the
/// context handle, kept past the block for its state.
async fn host_failure_under(reaction: Reaction) -> Result<(Result<Result<()>>, Context)> {
    actor::open_nursery(async |an| {
        let p = an.start_actor("ctx_side", aio()).await?;
        let kept = Rc::new(RefCell::new(None));
        let k2 = kept.clone();
        let opened = p
            .open_context(HOST_FAILS_CTX, &300u64, async |ctx, first: String| {
                *k2.borrow_mut() = Some(ctx.clone());
                ensure_ok(first == "up")?;
                match reaction {
                    Reaction::CancelContext => ctx.cancel().await?,
                    Reaction::CancelActor => {
                        p.cancel_actor().await?;
                    }
                    Reaction::Wait => {}
                }
                Ok(ctx.wait_for_result::<()>().await)
            })
            .await;
        let ctx = kept.borrow_mut().take().ok_or(Error::Closed)?;
        Ok((opened, ctx))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))
}

async fn context_host_failure_parent_cancels_context() -> Check {
    let (opened, ctx) = host_failure_under(Reaction::CancelContext).await.map_err(dbg)?;
    // Absorbed (ctx.cancel(): tractor's self-cancellation): open_context returns the block's
    // value, which holds the ContextCancelled wait_for_result reported.
    let inner = opened.map_err(|e| format!("open_context raised {e:?}"))?;
    is_ctxc(&inner.err().ok_or("no error")?, "root", "ctx_side")?;
    // The state tells the absorbed cancellation apart.
    ensure!(ctx.cancel_called() && ctx.cancel_acked(), "{ctx:?}");
    ensure!(!ctx.cancelled_caught(), "the block was interrupted");
    ensure!(ctx.canceller().as_deref() == Some("root"), "canceller {:?}", ctx.canceller());
    is_ctxc(&ctx.maybe_error().ok_or("no maybe_error")?, "root", "ctx_side")?;
    ensure!(matches!(ctx.outcome::<()>(), Some(Err(Error::ContextCancelled { .. }))), "{:?}", ctx.outcome::<()>());
    Ok(())
}

async fn context_host_failure_parent_cancels_actor() -> Check {
    let (opened, ctx) = host_failure_under(Reaction::CancelActor).await.map_err(dbg)?;
    // Not absorbed: cancel_actor() is no ctx.cancel(). The block's wait_for_result and
    // open_context both raise ContextCancelled with the root as canceller.
    is_ctxc(&opened.err().ok_or("open_context returned Ok")?, "root", "ctx_side")?;
    ensure!(!ctx.cancel_called() && !ctx.cancel_acked(), "{ctx:?}");
    ensure!(ctx.canceller().as_deref() == Some("root"), "canceller {:?}", ctx.canceller());
    is_ctxc(&ctx.maybe_error().ok_or("no maybe_error")?, "root", "ctx_side")
}

/// `cancel_actor()` inside the block, then a long sleep: the raised `ContextCancelled` ends the
/// sleep at once.
async fn cancel_actor_in_block_interrupts_it() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("ctx_side", aio()).await?;
        let kept = Rc::new(RefCell::new(None));
        let k2 = kept.clone();
        let t0 = Instant::now();
        let opened = p
            .open_context(HOST_FAILS_CTX, &5_000u64, async |ctx, _first: String| {
                *k2.borrow_mut() = Some(ctx.clone());
                // Unresolved (the callee fails only after 5 s).
                ensure_ok(!ctx.has_outcome() && ctx.outcome::<()>().is_none())?;
                ensure_ok(ctx.maybe_error().is_none() && ctx.canceller().is_none())?;
                p.cancel_actor().await?;
                guest::sleep(Duration::from_secs(2)).await?;
                Ok(())
            })
            .await;
        let ctx = kept.borrow_mut().take().ok_or(Error::Closed)?;
        Ok((opened, ctx, t0.elapsed()))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (opened, ctx, took) = r.map_err(dbg)?;
    is_ctxc(&opened.err().ok_or("open_context returned Ok")?, "root", "ctx_side")?;
    ensure!(took < Duration::from_millis(500), "took {took:?}");
    ensure!(ctx.cancelled_caught() && !ctx.cancel_acked(), "{ctx:?}");
    Ok(())
}

/// Opens `func(arg)` and, inside the block, sleeps 1 s (or runs `streaming`): the outcome of
/// `open_context`, the context handle kept past the block, and how long the block lasted.
async fn interrupted(
    func: ContextFn<u64, ()>,
    arg: u64,
    stream_writer: bool,
) -> Result<(Result<()>, Context, Duration)> {
    actor::open_nursery(async |an| {
        let p = an.start_actor("callee", aio()).await?;
        let kept = Rc::new(RefCell::new(None));
        let k2 = kept.clone();
        let mut t0 = Instant::now();
        let opened = p
            .open_context(func, &arg, async |ctx, ()| {
                *k2.borrow_mut() = Some(ctx.clone());
                t0 = Instant::now();
                if stream_writer {
                    // Nobody on this side reads: only the interrupt can stop the writer.
                    ctx.open_stream(async |stream| {
                        let mut i = 0u64;
                        loop {
                            stream.send(&i).await?;
                            guest::sleep(Duration::from_millis(5)).await?;
                            i += 1;
                        }
                    })
                    .await
                } else {
                    guest::sleep(Duration::from_secs(1)).await?;
                    Ok(())
                }
            })
            .await;
        let took = t0.elapsed();
        let ctx = kept.borrow_mut().take().ok_or(Error::Closed)?;
        Ok((opened, ctx, took))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))
}

async fn remote_failure_interrupts_the_block() -> Check {
    let (opened, ctx, took) = interrupted(FAILS_AFTER_STARTED, 10, false).await.map_err(dbg)?;
    let e = opened.err().ok_or("open_context returned Ok")?;
    is_remote(&e, "ValueError", "callee")?;
    ensure!(remote(&e)?.message == "callee failed after started", "{e:?}");
    ensure!(took < Duration::from_millis(100), "the block ran {took:?}");
    ensure!(ctx.cancelled_caught() && !ctx.cancel_called(), "{ctx:?}");
    ensure!(ctx.maybe_error().as_ref() == Some(&e), "maybe_error {:?}", ctx.maybe_error());
    ensure!(ctx.canceller().as_deref() == Some("callee"), "canceller {:?}", ctx.canceller());
    Ok(())
}

async fn child_death_interrupts_the_block() -> Check {
    let (opened, ctx, took) = interrupted(DIES_AFTER_STARTED, 10, false).await.map_err(dbg)?;
    match opened {
        Err(Error::ActorDied { ref actor, code: None, signal: Some(9), .. }) if actor == "callee" => {}
        other => return Err(format!("expected ActorDied by SIGKILL, got {other:?}")),
    }
    ensure!(took < Duration::from_millis(100), "the block ran {took:?}");
    ensure!(ctx.cancelled_caught(), "{ctx:?}");
    Ok(())
}

async fn callee_cancel_interrupts_the_block() -> Check {
    let (opened, ctx, took) = interrupted(CANCELS_AFTER_STARTED, 10, false).await.map_err(dbg)?;
    is_ctxc(&opened.err().ok_or("open_context returned Ok")?, "callee", "callee")?;
    ensure!(took < Duration::from_millis(100), "the block ran {took:?}");
    ensure!(ctx.cancelled_caught() && !ctx.cancel_acked(), "{ctx:?}");
    ensure!(ctx.canceller().as_deref() == Some("callee"), "canceller {:?}", ctx.canceller());
    Ok(())
}

async fn remote_failure_interrupts_a_stream_writer() -> Check {
    let (opened, ctx, took) = interrupted(READS_THEN_FAILS, 3, true).await.map_err(dbg)?;
    let e = opened.err().ok_or("open_context returned Ok")?;
    is_remote(&e, "ValueError", "callee")?;
    ensure!(remote(&e)?.message == "callee failed while streaming", "{e:?}");
    // Three items 5 ms apart, then the failure, then one message delivery.
    ensure!(took < Duration::from_millis(100), "the block ran {took:?}");
    ensure!(ctx.cancelled_caught(), "{ctx:?}");
    Ok(())
}

/// A context that returned: its state after the block says so.
async fn returned_context_state() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("counter", aio()).await?;
        let kept = Rc::new(RefCell::new(None));
        let k2 = kept.clone();
        let sum = p
            .open_context(COUNT_TO, &4u64, async |ctx, ()| {
                *k2.borrow_mut() = Some(ctx.clone());
                let (got, end) = ctx.open_stream(async |stream| Ok(drain_u64(stream).await)).await?;
                end?;
                // Readable inside the block, synchronously, once the outcome is here.
                ensure_ok(ctx.wait_for_result::<u64>().await? == 4)?;
                ensure_ok(ctx.has_outcome() && ctx.outcome::<u64>() == Some(Ok(4)))?;
                Ok(got.iter().sum::<u64>())
            })
            .await?;
        let ctx = kept.borrow_mut().take().ok_or(Error::Closed)?;
        Ok((sum, ctx))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (sum, ctx) = r.map_err(dbg)?;
    ensure!(sum == 6, "sum {sum}");
    ensure!(ctx.has_outcome() && ctx.outcome::<u64>() == Some(Ok(4)), "outcome {:?}", ctx.outcome::<u64>());
    ensure!(ctx.maybe_error().is_none() && ctx.canceller().is_none(), "{ctx:?}");
    ensure!(!ctx.cancel_called() && !ctx.cancel_acked() && !ctx.cancelled_caught(), "{ctx:?}");
    Ok(())
}

/// A context stream read with `receive()`: each item bare, then `EndOfChannel` once the callee
/// closed its side; `try_next()` then says `None`, and a subscriber's `receive()` also ends
/// with `EndOfChannel`. The endpoint's own result is unaffected.
async fn stream_receive_ends_with_end_of_channel() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("counter", aio()).await?;
        let got = p
            .open_context(COUNT_TO, &2, async |ctx, ()| {
                let got = ctx
                    .open_stream(async |stream| {
                        let sub = stream.subscribe();
                        let a: u64 = stream.receive().await?;
                        let b: u64 = stream.receive().await?;
                        let end = stream.receive::<u64>().await;
                        let then = stream.try_next::<u64>().await;
                        let sub_items = (sub.receive::<u64>().await?, sub.receive::<u64>().await?);
                        let sub_end = sub.receive::<u64>().await;
                        Ok((a, b, end, then, sub_items, sub_end))
                    })
                    .await?;
                Ok((got, ctx.wait_for_result::<u64>().await?))
            })
            .await?;
        p.cancel_actor().await?;
        Ok(got)
    })
    .await
    .and_then(|v| v.ok_or(Error::Cancelled));
    let got = r.map_err(dbg)?;
    let want = ((0, 1, Err(Error::EndOfChannel), Ok(None), (0, 1), Err(Error::EndOfChannel)), 2);
    ensure!(got == want, "got {got:?}, want {want:?}");
    Ok(())
}

/// A panic in a context endpoint (after `started`, interrupting the caller's block) and in an
/// infected actor's host task: each arrives as a remote `Panic` with its message and location,
/// and the actor serves on.
async fn panics_in_context_and_host_task_are_boxed() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("panicker", aio()).await?;
        let t0 = Instant::now();
        let ctx_panic = p
            .open_context(PANICS_AFTER_STARTED, &(), async |_ctx, ()| {
                guest::sleep(Duration::from_secs(1)).await?;
                Ok(())
            })
            .await;
        let took = t0.elapsed();
        let host_panic = p.run(HOST_TASK_PANICS, &0u64).await;
        let after: u64 = p.run(HOST_TASK_PANICS, &7u64).await?;
        Ok((ctx_panic, took, host_panic, after))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (ctx_panic, took, host_panic, after) = r.map_err(dbg)?;
    let e = ctx_panic.err().ok_or("the context returned Ok")?;
    is_remote(&e, "Panic", "panicker")?;
    let m = &remote(&e)?.message;
    ensure!(m.starts_with("panicked at tests/infected.rs:") && m.ends_with(": context panicked on purpose"), "{m}");
    ensure!(took < Duration::from_millis(100), "the block ran {took:?}");
    let e = host_panic.err().ok_or("the host task returned Ok")?;
    is_remote(&e, "Panic", "panicker")?;
    let m = &remote(&e)?.message;
    ensure!(m.starts_with("panicked at tests/infected.rs:") && m.ends_with(": host task panicked on purpose"), "{m}");
    ensure!(after == 7, "after {after}");
    Ok(())
}

async fn context_host_failure_parent_waits() -> Check {
    let (opened, ctx) = host_failure_under(Reaction::Wait).await.map_err(dbg)?;
    // Not absorbed: the context's error is raised at the block's exit.
    let e = opened.err().ok_or("open_context returned Ok")?;
    is_remote(&e, "ValueError", "ctx_side")?;
    ensure!(remote(&e)?.message == "host task failed", "{e:?}");
    // wait_for_result saw it first (the block returned Ok of its Err): not an interrupt.
    ensure!(!ctx.cancelled_caught() && ctx.maybe_error().as_ref() == Some(&e), "{ctx:?}");
    Ok(())
}

async fn context_host_failure_seen_by_wait_for_result() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("ctx_side", aio()).await?;
        let opened = p
            .open_context(HOST_FAILS_CTX, &50u64, async |ctx, _first: String| Ok(ctx.wait_for_result::<()>().await))
            .await;
        Ok(opened)
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let opened = r.map_err(dbg)?;
    let e = opened.err().ok_or("open_context returned Ok")?;
    is_remote(&e, "ValueError", "ctx_side")
}

async fn host_self_cancel_is_boxed() -> Check {
    let r: Result<()> = actor::open_nursery(async |an| {
        let p = an.start_actor("self_canceller", aio()).await?;
        p.open_context(HOST_SELF_CANCEL_CTX, &(), async |ctx, ()| ctx.wait_for_result::<()>().await).await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let e = r.err().ok_or("no error")?;
    is_remote(&e, "HostCancelled", "self_canceller")?;
    ensure!(remote(&e)?.message.ends_with("the host task cancelled itself"), "{e:?}");
    Ok(())
}

/// Opens `stream_from_host(mode)`: the values the parent received, how its stream ended, and
/// how the context ended.
async fn stream_mode(mode: &str) -> Result<(Vec<u64>, Result<()>, Result<u64>)> {
    let mode = mode.to_owned();
    actor::open_nursery(async |an| {
        let p = an.start_actor("streamer", aio()).await?;
        let seen = Rc::new(RefCell::new((Vec::new(), Ok(()))));
        let s2 = seen.clone();
        let out = p
            .open_context(STREAM_FROM_HOST, &mode, async |ctx, ()| {
                let (got, end) = ctx.open_stream(async |stream| Ok(drain_u64(stream).await)).await?;
                *s2.borrow_mut() = (got, end);
                ctx.wait_for_result::<u64>().await
            })
            .await;
        let (got, end) = seen.replace((Vec::new(), Ok(())));
        Ok((got, end, out))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))
}

async fn stream_100_values() -> Check {
    let (got, end, out) = stream_mode("plain").await.map_err(dbg)?;
    ensure!(got == (0..100).collect::<Vec<_>>(), "got {got:?}");
    ensure!(end.is_ok(), "stream ended with {end:?}");
    ensure!(out == Ok(100), "result {out:?}");
    Ok(())
}

async fn stream_100_values_guest_fanout() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("streamer", aio()).await?;
        p.open_context(STREAM_FROM_HOST, &"subscribe".to_owned(), async |ctx, ()| {
            let got = ctx
                .open_stream(async |stream| {
                    let mut got: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
                    while let Some((tag, v)) = stream.try_next::<(u8, u64)>().await? {
                        got[usize::from(tag)].push(v);
                    }
                    Ok(got)
                })
                .await?;
            Ok((got, ctx.wait_for_result::<u64>().await?))
        })
        .await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let ([a, b], total) = r.map_err(dbg)?;
    let want: Vec<u64> = (0..100).collect();
    ensure!(a == want && b == want, "subscriber copies {a:?} / {b:?}");
    ensure!(total == 200, "forwarded {total}");
    Ok(())
}

async fn stream_100_values_parent_fanout() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("streamer", aio()).await?;
        p.open_context(STREAM_FROM_HOST, &"plain".to_owned(), async |ctx, ()| {
            ctx.open_stream(async |stream| {
                let (a, b) = (stream.subscribe(), stream.subscribe());
                let read = async |sub: &actor::BroadcastReceiver| {
                    let mut got = Vec::new();
                    while let Some(v) = sub.try_next::<u64>().await? {
                        got.push(v);
                    }
                    // Ended for good: asking again still says end of stream.
                    ensure_ok(sub.try_next::<u64>().await?.is_none())?;
                    Ok::<_, Error>(got)
                };
                let (x, y) = join(read(&a), read(&b)).await;
                Ok((x?, y?))
            })
            .await
        })
        .await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (a, b) = r.map_err(dbg)?;
    let want: Vec<u64> = (0..100).collect();
    ensure!(a == want && b == want, "subscriber copies {a:?} / {b:?}");
    Ok(())
}

async fn lagging_subscriber_gets_lagged() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("flooder", ActorOpts::new().enable_modules([NS])).await?;
        p.open_context(COUNT_TO, &200u64, async |ctx, ()| {
            ctx.open_stream(async |stream| {
                let fast = stream.subscribe_with_capacity(16);
                let slow = stream.subscribe();
                let fast_read = async {
                    let mut got = Vec::new();
                    while let Some(v) = fast.try_next::<u64>().await? {
                        got.push(v);
                    }
                    Ok::<_, Error>(got)
                };
                let slow_read = async {
                    guest::sleep(Duration::from_millis(300)).await?;
                    let mut got = Vec::new();
                    let mut lagged = Vec::new();
                    loop {
                        match slow.try_next::<u64>().await {
                            Ok(Some(v)) => got.push(v),
                            Ok(None) => break,
                            Err(Error::Lagged { skipped }) => lagged.push(skipped),
                            Err(e) => return Err(e),
                        }
                    }
                    Ok((got, lagged))
                };
                let (f, s) = join(fast_read, slow_read).await;
                Ok((f?, s?))
            })
            .await
        })
        .await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (fast, (slow, lagged)) = r.map_err(dbg)?;
    ensure!(fast == (0..200).collect::<Vec<_>>(), "fast got {fast:?}");
    ensure!(lagged == [184], "lagged {lagged:?}");
    ensure!(slow == (184..200).collect::<Vec<_>>(), "slow got {slow:?}");
    Ok(())
}

async fn stream_guest_fails_at_50() -> Check {
    let (got, end, out) = stream_mode("guest_fails").await.map_err(dbg)?;
    ensure!(got == (0..50).collect::<Vec<_>>(), "got {got:?}");
    is_remote(&end.err().ok_or("the stream ended cleanly")?, "ValueError", "streamer")?;
    is_remote(&out.err().ok_or("the context returned")?, "ValueError", "streamer")
}

async fn stream_guest_breaks_at_50() -> Check {
    let (got, end, out) = stream_mode("guest_breaks").await.map_err(dbg)?;
    ensure!(got == (0..50).collect::<Vec<_>>(), "got {got:?}");
    ensure!(end.is_ok() && out == Ok(50), "end {end:?}, result {out:?}");
    Ok(())
}

async fn stream_host_exits_at_50() -> Check {
    let (got, end, out) = stream_mode("host_exits").await.map_err(dbg)?;
    ensure!(got == (0..50).collect::<Vec<_>>(), "got {got:?}");
    ensure!(end.is_ok() && out == Ok(50), "end {end:?}, result {out:?}");
    // Without suppressing graceful exits, the early exit is an error of its own kind.
    let (got, end, out) = stream_mode("host_exits_strict").await.map_err(dbg)?;
    ensure!(got == (0..50).collect::<Vec<_>>(), "strict: got {got:?}");
    ensure!(end.is_ok(), "strict: stream ended with {end:?}");
    is_remote(&out.err().ok_or("strict: the context returned")?, "HostTaskExited", "streamer")
}

async fn stream_host_fails_at_50() -> Check {
    let (got, end, out) = stream_mode("host_fails").await.map_err(dbg)?;
    ensure!(got == (0..50).collect::<Vec<_>>(), "got {got:?}");
    let e = end.err().ok_or("the stream ended cleanly")?;
    is_remote(&e, "ValueError", "streamer")?;
    ensure!(remote(&e)?.message == "host failed at 50", "{e:?}");
    is_remote(&out.err().ok_or("the context returned")?, "ValueError", "streamer")
}

/// Where the root raises its own error during the echo dialog.
#[derive(Clone, Copy, PartialEq)]
enum RootRaises {
    Never,
    InStream,
    InContext,
}

async fn echo_dialog(raise: RootRaises) -> Result<(u64, Option<u64>)> {
    actor::open_nursery(async |an| {
        let p = an.start_actor("echo_server", aio()).await?;
        p.open_context(ECHO_CTX, &(), async |ctx, first: String| {
            ensure_ok(first == "start")?;
            let (count, after) = ctx
                .open_stream(async |stream| {
                    let mut count = 0u64;
                    while count < 100 {
                        stream.send(&count).await?;
                        let back = stream.try_next::<u64>().await?;
                        ensure_ok(back == Some(count))?;
                        count += 1;
                        if count == 50 && raise == RootRaises::InStream {
                            return Err(value_error("root raised at 50"));
                        }
                        if count == 50 && raise == RootRaises::InContext {
                            return Ok((count, None));
                        }
                    }
                    stream.send(&SENTINEL).await?;
                    Ok((count, stream.try_next::<u64>().await?))
                })
                .await?;
            if raise == RootRaises::InContext {
                return Err(value_error("root raised at 50"));
            }
            Ok((count, after))
        })
        .await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))
}

async fn echo_server_100_round_trips_then_sentinel() -> Check {
    let (count, after) = echo_dialog(RootRaises::Never).await.map_err(dbg)?;
    ensure!(count == 100, "{count} round trips");
    ensure!(after.is_none(), "after the sentinel the stream gave {after:?}");
    Ok(())
}

async fn echo_server_root_raises_at_50() -> Check {
    for raise in [RootRaises::InStream, RootRaises::InContext] {
        let r = echo_dialog(raise).await;
        match r {
            Err(Error::User(u)) if u.kind() == "ValueError" && u.to_string() == "root raised at 50" => {}
            other => return Err(format!("expected the bare ValueError, got {other:?}")),
        }
    }
    Ok(())
}

async fn host_fails_before_started_nowait() -> Check {
    let ran = Rc::new(RefCell::new(false));
    let r2 = ran.clone();
    let r: Result<()> = actor::open_nursery(async |an| {
        let p = an.start_actor("early_failer", aio()).await?;
        p.open_context(HOST_FAILS_BEFORE_STARTED, &(), async |_ctx, ()| {
            *r2.borrow_mut() = true;
            Ok(())
        })
        .await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let e = r.err().ok_or("no error")?;
    is_remote(&e, "ValueError", "early_failer")?;
    ensure!(remote(&e)?.message == "failed before started", "{e:?}");
    ensure!(!*ran.borrow(), "the block ran");
    Ok(())
}

async fn sigint_to_an_infected_child() -> Check {
    let path = common_proc::temp_path("infect-infected", "sigint");
    let marker = path.with_extension("host");
    let _ = std::fs::remove_file(&marker);
    let arg = path.to_string_lossy().into_owned();
    let p2 = path.clone();
    let r: Result<()> = actor::open_nursery(async |an| {
        let p = an.start_actor("interrupted", aio()).await?;
        p.open_context(SIGINT_CTX, &arg, async |ctx, ()| {
            ensure_ok(wait_until(Duration::from_secs(5), || p2.exists()).await)?;
            signal(p.pid(), libc::SIGINT);
            ctx.wait_for_result::<()>().await
        })
        .await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let e = r.err().ok_or("no error")?;
    is_ctxc(&e, "interrupted", "interrupted")?;
    ensure!(!path.exists(), "the teardown callback did not remove {}", path.display());
    let host_saw = std::fs::read_to_string(&marker).map_err(|e| format!("host task marker: {e}"))?;
    let _ = std::fs::remove_file(&marker);
    ensure!(host_saw == "GuestCancelled", "the host task saw {host_saw}");
    Ok(())
}

async fn not_infected_child_says_so() -> Check {
    let r = actor::open_nursery(async |an| {
        let plain = an.start_actor("plain", ActorOpts::new().enable_modules([NS])).await?;
        let infected = an.start_actor("infected", aio()).await?;
        let a = plain.run(RUN_TASK_ECHO, &5u64).await;
        let b: u64 = infected.run(RUN_TASK_ECHO, &5u64).await?;
        let x: bool = plain.run(IS_INFECTED, &()).await?;
        let y: bool = infected.run(IS_INFECTED, &()).await?;
        Ok((a, b, x, y))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (a, b, x, y) = r.map_err(dbg)?;
    let e = a.err().ok_or("run_task worked in a plain child")?;
    is_remote(&e, "NotInfected", "plain")?;
    ensure!(remote(&e)?.message.starts_with("to_host called outside an infected guest"), "{e:?}");
    ensure!(b == 5 && !x && y, "{b} {x} {y}");
    ensure!(!actor::current_actor().is_infected(), "the test root is not infected");
    Ok(())
}

async fn run_in_actor_infected() -> Check {
    let r: Result<()> = actor::open_nursery(async |an| {
        an.run_in_actor(RUN_TASK_FAILS, &10u64, ActorOpts::new().infect_host(true)).await?;
        Ok(())
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let e = r.err().ok_or("no error")?;
    is_remote(&e, "ValueError", "run_task_fails")
}

async fn started_twice_is_an_error() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("twice", aio()).await?;
        let a = p.open_context(STARTED_TWICE, &(), async |_ctx, first: u32| Ok(first)).await;
        let b = p.open_context(NEVER_STARTED, &(), async |_ctx, ()| Ok(())).await;
        Ok((a, b))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (a, b) = r.map_err(dbg)?;
    let e = a.err().ok_or("started twice went through")?;
    is_remote(&e, "StartedTwice", "twice")?;
    let e = b.err().ok_or("never started went through")?;
    is_remote(&e, "NotStarted", "twice")
}

async fn callee_cancel_is_raised_at_the_caller() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("quitter", aio()).await?;
        let seen = Rc::new(RefCell::new(None));
        let s2 = seen.clone();
        let opened = p
            .open_context(CANCELS_ITSELF, &(), async |ctx, ()| {
                *s2.borrow_mut() = Some(ctx.wait_for_result::<()>().await);
                Ok(())
            })
            .await;
        let seen = seen.borrow_mut().take();
        Ok((opened, seen))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (opened, seen) = r.map_err(dbg)?;
    // Not asked for by the root: raised out of open_context, as wait_for_result saw it.
    is_ctxc(&opened.err().ok_or("open_context returned Ok")?, "quitter", "quitter")?;
    match seen {
        Some(Err(e)) => is_ctxc(&e, "quitter", "quitter"),
        other => Err(format!("wait_for_result gave {other:?}")),
    }
}

async fn function_kinds_are_checked() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("kinds", aio()).await?;
        // The right names with the wrong kinds: handles made for the mistake.
        let a = p.run(Function::<u64, u64>::new(NS, "count_to"), &3).await;
        let b = p.open_context(ContextFn::<(), bool>::new(NS, "is_infected"), &(), async |_ctx, _first| Ok(())).await;
        let still: bool = p.run(IS_INFECTED, &()).await?;
        Ok((a, b, still))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (a, b, still) = r.map_err(dbg)?;
    is_remote(&a.err().ok_or("a context ran as a function")?, "WrongFunctionKind", "kinds")?;
    is_remote(&b.err().ok_or("a function ran as a context")?, "WrongFunctionKind", "kinds")?;
    ensure!(still, "the actor stopped serving");
    Ok(())
}

/// A receiver that sleeps before it reads still gets every item: the sender waited for credit.
async fn late_receiver_gets_every_item() -> Check {
    let r: Result<Vec<u64>> = actor::open_nursery(async |an| {
        let p = an.start_actor("flooder", ActorOpts::new().enable_modules([NS])).await?;
        p.open_context(COUNT_TO, &1500u64, async |ctx, ()| {
            ctx.open_stream(async |stream| {
                guest::sleep(Duration::from_millis(300)).await?;
                let (got, end) = drain_u64(stream).await;
                end?;
                Ok(got)
            })
            .await
        })
        .await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let got = r.map_err(dbg)?;
    ensure!(got == (0..1500).collect::<Vec<_>>(), "got {} items, first {:?}", got.len(), got.first());
    Ok(())
}

/// `VmHWM` (peak resident set) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

const W: u64 = actor::STREAM_BUFFER as u64;
/// Items of the big back-pressure streams.
const FLOOD: u64 = 1_000_000;

/// An infected child streams 1M items to a parent that stops consuming four times: every
/// item arrives in order; at each stop the producer is blocked at the credit window
/// (`consumed + W/2 <= sent <= consumed + W`, read through a call on the same connection, which
/// is served meanwhile); both processes' memory stays bounded.
async fn backpressure_slow_consumer() -> Check {
    let rss0 = common_proc::rss_kib();
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("producer", aio()).await?;
        let pid = p.pid();
        let (stops, in_order, child_peak) = p
            .open_context(STREAM_COUNTED, &FLOOD, async |ctx, ()| {
                let stops = ctx
                    .open_stream(async |stream| {
                        let mut consumed = 0u64;
                        let mut in_order = true;
                        let mut stops = Vec::new();
                        while let Some(v) = stream.try_next::<u64>().await? {
                            in_order &= v == consumed;
                            consumed += 1;
                            if [1, 5_000, 500_000, 999_000].contains(&consumed) {
                                guest::sleep(Duration::from_millis(200)).await?;
                                let sent: u64 = p.run(SENT_COUNT, &()).await?;
                                stops.push((consumed, sent));
                            }
                        }
                        Ok((stops, in_order && consumed == FLOOD))
                    })
                    .await?;
                let peak = peak_rss_kib(pid);
                Ok((stops.0, stops.1, peak))
            })
            .await?;
        Ok((stops, in_order, child_peak))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (stops, in_order, child_peak) = r.map_err(dbg)?;
    let grown = common_proc::rss_kib().saturating_sub(rss0);
    ensure!(in_order, "items lost or out of order");
    ensure!(stops.len() == 4, "stops {stops:?}");
    for &(consumed, sent) in &stops {
        let upper = (consumed + W).min(FLOOD);
        ensure!(sent <= upper && sent >= (consumed + W / 2).min(FLOOD), "stops (consumed, sent) {stops:?}");
    }
    ensure!(child_peak > 0 && child_peak < 16 * 1024, "child peak RSS {child_peak} KiB");
    ensure!(grown < 4 * 1024, "parent RSS grew by {grown} KiB");
    Ok(())
}

/// A configured window of 16 items (`ActorOpts::stream_window`): at a stop of the consumer the
/// producer is blocked at 16 ahead, no further.
async fn configured_stream_window() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("small_window", aio().stream_window(16)).await?;
        p.open_context(STREAM_COUNTED, &5_000u64, async |ctx, ()| {
            ctx.open_stream(async |stream| {
                let mut consumed = 0u64;
                let mut stops = Vec::new();
                while let Some(v) = stream.try_next::<u64>().await? {
                    ensure_ok(v == consumed)?;
                    consumed += 1;
                    if [1, 100, 4_000].contains(&consumed) {
                        guest::sleep(Duration::from_millis(100)).await?;
                        stops.push((consumed, p.run(SENT_COUNT, &()).await?));
                    }
                }
                Ok((consumed, stops))
            })
            .await
        })
        .await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (consumed, stops) = r.map_err(dbg)?;
    ensure!(consumed == 5_000, "consumed {consumed}");
    ensure!(stops.iter().all(|&(c, s)| s >= c + 8 && s <= c + 16) && stops.len() == 3, "stops {stops:?}");
    Ok(())
}

/// Two streams on one connection: the parent does not read the first until the second is done.
/// The second finishes all the same (the connection's reader never waits for a consumer); the
/// first then delivers every item.
async fn slow_context_does_not_stall_its_neighbour() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("two_streams", aio()).await?;
        let fast_done = guest::Event::new();
        let slow = p.open_context(COUNT_TO, &20_000u64, async |ctx, ()| {
            ctx.open_stream(async |stream| {
                fast_done.wait().await?;
                let (got, end) = drain_u64(stream).await;
                end?;
                Ok(got)
            })
            .await
        });
        let fast = p.open_context(COUNT_TO, &20_000u64, async |ctx, ()| {
            let got = ctx
                .open_stream(async |stream| {
                    let (got, end) = drain_u64(stream).await;
                    end?;
                    Ok(got)
                })
                .await;
            fast_done.set();
            got
        });
        let (slow, fast) = join(slow, fast).await;
        Ok((slow?, fast?))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (slow, fast) = r.map_err(dbg)?;
    let want: Vec<u64> = (0..20_000).collect();
    ensure!(fast == want, "fast stream: {} items", fast.len());
    ensure!(slow == want, "slow stream: {} items", slow.len());
    Ok(())
}

/// A sender blocked on credit ends with the context's error when the receiver fails: it sent
/// exactly one window, then `send` returns the remote error (it used to send everything into a
/// receiver that dropped it).
async fn blocked_sender_gets_the_receivers_error() -> Check {
    let sent = std::cell::Cell::new(0u64);
    let r: Result<Result<()>> = actor::open_nursery(async |an| {
        let p = an.start_actor("refuser", aio()).await?;
        let out = p
            .open_context(REFUSE_STREAM, &(), async |ctx, ()| {
                ctx.open_stream(async |stream| {
                    for i in 0..10_000u64 {
                        stream.send(&i).await?;
                        sent.set(sent.get() + 1);
                    }
                    Ok(())
                })
                .await
            })
            .await;
        Ok(out)
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let out = r.map_err(dbg)?;
    ensure!(sent.get() == W, "sent {} items", sent.get());
    is_remote(&out.err().ok_or("the context returned")?, "ValueError", "refuser")
}

/// The other direction: the parent streams 1M items to a child that stops consuming three
/// times and says so; at each stop the parent's sender is blocked at the window.
async fn backpressure_parent_to_child() -> Check {
    let rss0 = common_proc::rss_kib();
    let pauses = vec![1u64, 50_000, 900_000];
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("consumer", aio()).await?;
        let pid = p.pid();
        let sent = std::cell::Cell::new(0u64);
        let (stops, got) = p
            .open_context(CONSUME_SLOWLY, &(FLOOD, pauses.clone()), async |ctx, ()| {
                let stops = ctx
                    .open_stream(async |stream| {
                        let send_all = async {
                            for i in 0..FLOOD {
                                stream.send(&i).await?;
                                sent.set(sent.get() + 1);
                            }
                            Ok::<(), Error>(())
                        };
                        let watch = async {
                            let mut stops = Vec::new();
                            while let Some(k) = stream.try_next::<u64>().await? {
                                guest::sleep(Duration::from_millis(150)).await?;
                                stops.push((k, sent.get(), peak_rss_kib(pid)));
                            }
                            Ok::<_, Error>(stops)
                        };
                        let (a, b) = join(send_all, watch).await;
                        a?;
                        b
                    })
                    .await?;
                Ok((stops, ctx.wait_for_result::<u64>().await?))
            })
            .await?;
        Ok((stops, got))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (stops, got) = r.map_err(dbg)?;
    let grown = common_proc::rss_kib().saturating_sub(rss0);
    ensure!(got == FLOOD, "the child received {got} items in order");
    ensure!(stops.iter().map(|s| s.0).collect::<Vec<_>>() == pauses, "stops {stops:?}");
    for &(consumed, sent, peak) in &stops {
        ensure!(sent >= consumed + W / 2 && sent <= consumed + W, "stops (consumed, sent, peak) {stops:?}");
        ensure!(peak > 0 && peak < 16 * 1024, "child peak RSS {peak} KiB");
    }
    ensure!(grown < 4 * 1024, "parent RSS grew by {grown} KiB");
    Ok(())
}

async fn infected_root_echo() -> Check {
    let out = common_proc::sub_root("INFECTED_TEST_ROLE", "infected_root")
        .and_then(|c| c.wait_with_output())
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "infected root exited with {:?}: {stdout}", out.status);
    ensure!(stdout.trim() == "infected root: 1000 round trips", "printed {stdout:?}");
    Ok(())
}

// ---------------------------------------------------------------- sub-root role

/// An infected root (the analogue of `run_as_asyncio_guest`): 1000 echo round trips through
/// `open_channel_from`, no child.
async fn role_infected_root() -> Result<()> {
    ensure_ok(actor::current_actor().is_infected())?;
    let n = to_host::open_channel_from(echo_host, LinkOpts::new(), async |chan, first| {
        ensure_ok(first == "start")?;
        let mut n = 0u64;
        while n < 1000 {
            chan.send(n).await?;
            ensure_ok(chan.try_next().await? == Some(n))?;
            n += 1;
        }
        chan.send(SENTINEL).await?;
        ensure_ok(chan.try_next().await?.is_none())?;
        Ok(n)
    })
    .await?;
    println!("infected root: {n} round trips");
    Ok(())
}

// ---------------------------------------------------------------- runner

async fn run_all() -> Result<(usize, usize)> {
    let all: Vec<Case> = cases![
        run_task_failure_is_boxed,
        move_on_after_cancels_run_task,
        cancel_actor_blocked_in_run_task,
        parent_deadline_cancels_the_tree,
        context_host_failure_parent_cancels_context,
        context_host_failure_parent_cancels_actor,
        cancel_actor_in_block_interrupts_it,
        remote_failure_interrupts_the_block,
        child_death_interrupts_the_block,
        callee_cancel_interrupts_the_block,
        remote_failure_interrupts_a_stream_writer,
        returned_context_state,
        panics_in_context_and_host_task_are_boxed,
        context_host_failure_parent_waits,
        context_host_failure_seen_by_wait_for_result,
        host_self_cancel_is_boxed,
        stream_100_values,
        stream_100_values_guest_fanout,
        stream_100_values_parent_fanout,
        lagging_subscriber_gets_lagged,
        stream_guest_fails_at_50,
        stream_guest_breaks_at_50,
        stream_host_exits_at_50,
        stream_host_fails_at_50,
        echo_server_100_round_trips_then_sentinel,
        echo_server_root_raises_at_50,
        host_fails_before_started_nowait,
        sigint_to_an_infected_child,
        not_infected_child_says_so,
        run_in_actor_infected,
        started_twice_is_an_error,
        callee_cancel_is_raised_at_the_caller,
        function_kinds_are_checked,
        stream_receive_ends_with_end_of_channel,
        late_receiver_gets_every_item,
        backpressure_slow_consumer,
        slow_context_does_not_stall_its_neighbour,
        configured_stream_window,
        backpressure_parent_to_child,
        blocked_sender_gets_the_receivers_error,
        infected_root_echo,
    ];
    Ok(common_proc::run_cases(all, Duration::from_secs(20)).await)
}

fn main() {
    if std::env::var_os("INFECT_ACTOR_PIPE").is_some() {
        // A child: keep the test output quiet (the actor's hook chains to this one).
        std::panic::set_hook(Box::new(|_| {}));
    }
    let role = std::env::var("INFECTED_TEST_ROLE").unwrap_or_default();
    if role == "infected_root" {
        let r = actor::run_with(RootOpts::new().infect_host(true), endpoints(), role_infected_root());
        if let Err(e) = r {
            println!("error: {e}");
            std::process::exit(1);
        }
        return;
    }
    common_proc::report(actor::run(endpoints(), async {
        common_proc::warm_up_pidfd_fallback(aio()).await?;
        run_all().await
    }));
}
