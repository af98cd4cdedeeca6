//! Fan-out with `subscribe()`, on both sides of a process boundary.
//!
//! In the infected child, a host task (`host_ticker`) sends ten ticks through its linked
//! channel; two guest nursery tasks each `chan.subscribe()` and get every tick (tractor's
//! `LinkedTaskChannel.subscribe()`): one sums them, the other forwards them over the context's
//! stream. The subscribers are owned handles, so each moves into its own task, and the nursery
//! supervises them (a failing one cancels its sibling). In the root, two consumers each `stream.subscribe()` (tractor's
//! `MsgStream.subscribe()`) and get every forwarded tick. Every subscriber sees the end of the
//! stream when the host task returns.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example subscribe_fanout
//! ```

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures::future::join;
use std::process::ExitCode;

use infect::actor::{self, ActorOpts, BroadcastReceiver, Context, ContextFn, Endpoints};
use infect::to_host::{self, HostChannel, LinkOpts};
use infect::{Result, guest, host};

const NS: &str = "fanout";

/// Takes how many ticks to send, starts with that number, returns their sum.
const TICKS: ContextFn<u32, u32, u32> = ContextFn::new(NS, "ticks");

async fn host_ticker(chan: HostChannel<(), u32, ()>, ticks: u32) -> Result<()> {
    chan.started_nowait(())?;
    for i in 0..ticks {
        chan.send(i).await?;
        host::sleep(Duration::from_millis(5)).await?;
    }
    Ok(())
}

/// Context endpoint: relays the host's ticks to the parent; returns their sum.
async fn ticks(ctx: Context, n: u32) -> Result<u32> {
    to_host::open_channel_from(
        move |chan| host_ticker(chan, n),
        LinkOpts::new(),
        async |chan, ()| {
            ctx.started(&n).await?;
            ctx.open_stream(async |stream| {
                // Two nursery tasks, each with its own subscriber (an owned handle): if either
                // fails, the nursery cancels the other and the error comes out of the block.
                let sum = Rc::new(Cell::new(0));
                guest::open_nursery(async |n| {
                    let (summer, total) = (chan.subscribe(), sum.clone());
                    n.start_soon(async move {
                        while let Some(tick) = summer.try_next().await? {
                            total.set(total.get() + tick);
                        }
                        Ok(())
                    })?;
                    let (forwarder, stream) = (chan.subscribe(), stream.clone());
                    n.start_soon(async move {
                        while let Some(tick) = forwarder.try_next().await? {
                            stream.send(&tick).await?;
                        }
                        Ok(())
                    })?;
                    Ok(())
                })
                .await?;
                Ok(sum.get())
            })
            .await
        },
    )
    .await
}

async fn consume(name: &str, sub: &BroadcastReceiver) -> Result<Vec<u32>> {
    let mut got = Vec::new();
    while let Some(tick) = sub.try_next().await? {
        got.push(tick);
    }
    println!("{name} got every tick: {got:?}");
    Ok(got)
}

async fn root() -> Result<()> {
    actor::open_nursery(async |an| {
        let portal = an.start_actor("ticker", ActorOpts::new().enable_modules([NS]).infect_host(true)).await?;
        let sum = portal
            .open_context(TICKS, &10, async |ctx, n| {
                println!("the child will send {n} ticks");
                ctx.open_stream(async |stream| {
                    let (a, b) = (stream.subscribe(), stream.subscribe());
                    let (a, b) = join(consume("consumer a", &a), consume("consumer b", &b)).await;
                    assert_eq!(a?, b?);
                    Ok(())
                })
                .await?;
                let sum: u32 = ctx.wait_for_result().await?;
                Ok(sum)
            })
            .await?;
        println!("the child's own subscriber summed them to {sum}");
        portal.cancel_actor().await?;
        Ok(())
    })
    .await
    .map(drop)
}

fn main() -> ExitCode {
    actor::main(Endpoints::new().serve(TICKS, ticks), root())
}
