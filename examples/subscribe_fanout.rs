//! Fan-out with `subscribe()`, on both sides of a process boundary.
//!
//! In the infected child, a host task (`host_ticker`) sends ten ticks through its linked
//! channel; two guest tasks each `chan.subscribe()` and get every tick (tractor's
//! `LinkedTaskChannel.subscribe()`): one sums them, the other forwards them over the context's
//! stream. In the root, two consumers each `stream.subscribe()` (tractor's
//! `MsgStream.subscribe()`) and get every forwarded tick. Every subscriber sees the end of the
//! stream when the host task returns.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example subscribe_fanout
//! ```

use std::time::Duration;

use futures::future::join;
use infect::actor::{self, ActorOpts, BroadcastReceiver, Context, Endpoints};
use infect::to_host::{self, HostChannel, LinkOpts};
use infect::{Result, host};

const NS: &str = "fanout";

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
        LinkOpts::default(),
        async |chan, ()| {
            ctx.started(&n).await?;
            ctx.open_stream(async |stream| {
                let (summer, forwarder) = (chan.subscribe(), chan.subscribe());
                let sum = async {
                    let mut sum = 0;
                    while let Some(tick) = summer.receive().await? {
                        sum += tick;
                    }
                    Ok(sum)
                };
                let forward = async {
                    while let Some(tick) = forwarder.receive().await? {
                        stream.send(&tick).await?;
                    }
                    Ok::<(), infect::Error>(())
                };
                let (sum, forwarded) = join(sum, forward).await;
                forwarded?;
                sum
            })
            .await
        },
    )
    .await
}

async fn consume(name: &str, sub: &BroadcastReceiver) -> Result<Vec<u32>> {
    let mut got = Vec::new();
    while let Some(tick) = sub.receive::<u32>().await? {
        got.push(tick);
    }
    println!("{name} got every tick: {got:?}");
    Ok(got)
}

async fn root() -> Result<()> {
    actor::open_nursery(async |an| {
        let portal = an.start_actor("ticker", ActorOpts::new().enable_modules([NS]).infect_host(true)).await?;
        let sum = portal
            .open_context(NS, "ticks", &10u32, async |ctx, n: u32| {
                println!("the child will send {n} ticks");
                ctx.open_stream(async |stream| {
                    let (a, b) = (stream.subscribe(), stream.subscribe());
                    let (a, b) = join(consume("consumer a", &a), consume("consumer b", &b)).await;
                    assert_eq!(a?, b?);
                    Ok(())
                })
                .await?;
                ctx.wait_for_result::<u32>().await
            })
            .await?;
        println!("the child's own subscriber summed them to {sum}");
        portal.cancel_actor().await?;
        Ok(())
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))
}

fn main() -> Result<()> {
    actor::main(Endpoints::new().context(NS, "ticks", ticks), root())
}
