//! A context is a supervision scope across processes, and its state stays readable.
//!
//! 1. The callee fails 20 ms after `started` while the caller's block sleeps for a second: the
//!    failure cancels the caller's block at once and `open_context` returns the callee's error,
//!    with its kind.
//! 2. `ctx.cancel()` is absorbed (tractor's self-cancellation): `open_context` returns the
//!    block's value; the kept context says `cancel_acked`.
//! 3. `Portal::cancel_actor()` inside the block is not: `open_context` raises
//!    `ContextCancelled` naming the root.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example context_supervision
//! ```

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::process::ExitCode;

use infect::actor::{self, ActorOpts, Context, ContextFn, Endpoints};
use infect::{Error, Result, guest};

const NS: &str = "supervision";

/// Both endpoints take a delay in ms and start with `()`.
const FLAKY: ContextFn<u64, ()> = ContextFn::new(NS, "flaky");
const PATIENT: ContextFn<u64, ()> = ContextFn::new(NS, "patient");

/// Fails `ms` after `started`.
async fn flaky(ctx: Context, ms: u64) -> Result<()> {
    ctx.started(&()).await?;
    guest::sleep(Duration::from_millis(ms)).await?;
    Err(Error::msg("FeedLost", "the feed went away"))
}

/// Serves until cancelled.
async fn patient(ctx: Context, _: u64) -> Result<()> {
    ctx.started(&()).await?;
    guest::sleep_forever().await
}

/// Opens `func(arg)` with `block`, and hands back the outcome and the context, kept past the
/// block for its state.
async fn open_and_keep(
    p: &actor::Portal,
    func: ContextFn<u64, ()>,
    arg: u64,
    block: impl AsyncFnOnce(&Context) -> Result<&'static str>,
) -> (Result<&'static str>, Context) {
    let kept = Rc::new(RefCell::new(None));
    let k2 = kept.clone();
    let out = p
        .open_context(func, &arg, async |ctx, ()| {
            *k2.borrow_mut() = Some(ctx.clone());
            block(ctx).await
        })
        .await;
    let ctx = kept.borrow_mut().take().expect("the block ran");
    (out, ctx)
}

async fn root() -> Result<()> {
    actor::open_nursery(async |an| {
        let opts = || ActorOpts::new().enable_modules([NS]);

        // 1. A remote failure interrupts the block.
        let p = an.start_actor("flaky", opts()).await?;
        let t0 = Instant::now();
        let (out, ctx) = open_and_keep(&p, FLAKY, 20, async |_ctx| {
            guest::sleep(Duration::from_secs(1)).await?;
            Ok("slept a whole second")
        })
        .await;
        let e = out.expect_err("the callee fails");
        println!("1. after {:?}: {e}", t0.elapsed());
        println!("   kind {}, boxed {}", e.kind(), e.remote().map_or("", |r| &r.boxed_type));
        println!("   cancelled_caught {}, canceller {:?}", ctx.cancelled_caught(), ctx.canceller());
        assert_eq!(e.remote().map(|r| r.boxed_type.as_str()), Some("FeedLost"));
        assert!(t0.elapsed() < Duration::from_millis(500) && ctx.cancelled_caught());

        // 2. ctx.cancel() is absorbed.
        let p = an.start_actor("patient", opts()).await?;
        let (out, ctx) = open_and_keep(&p, PATIENT, 0, async |ctx| {
            ctx.cancel().await?;
            Ok("cancelled it myself")
        })
        .await;
        println!("2. open_context returned {out:?}");
        println!("   cancel_called {}, cancel_acked {}", ctx.cancel_called(), ctx.cancel_acked());
        println!("   maybe_error {}", ctx.maybe_error().map_or_else(String::new, |e| e.to_string()));
        assert!(out.is_ok() && ctx.cancel_acked());

        // 3. cancel_actor() inside the block is raised.
        let (out, ctx) = open_and_keep(&p, PATIENT, 0, async |_ctx| {
            p.cancel_actor().await?;
            Ok("cancelled the whole actor")
        })
        .await;
        let e = out.expect_err("raised");
        println!("3. open_context raised {}: canceller {:?}", e.kind(), ctx.canceller());
        assert!(matches!(&e, Error::ContextCancelled { canceller, .. } if canceller == "root"));
        assert!(!ctx.cancel_acked());
        Ok(())
    })
    .await
    .map(drop)
}

fn main() -> ExitCode {
    actor::main(Endpoints::new().serve(FLAKY, flaky).serve(PATIENT, patient), root())
}
