//! An SC-compliant infected echo server: the seed's `examples/infected_asyncio_echo_server.py`,
//! ported line by line.
//!
//! Three task layers: the root actor's guest task (`main`), the infected child's context
//! endpoint (`guest_to_host_echo_server`, the guest side of its linked pair) and the child's
//! host task (`host_echo_server`). Two `started` handshakes compose: the host task's
//! `chan.started_nowait("start")` unblocks the child's `open_channel_from`, and the child relays
//! that value up with `ctx.started(first)`, which unblocks the root's `open_context`. Each round
//! trip flows root `stream.send` → pipe → child `stream` → `chan.send` → host `chan.get` →
//! `chan.send_nowait` → child `chan.receive` → `stream.send` → pipe → root. When the root leaves
//! its stream block, the child's stream ends, its channel block exits, its host task is torn
//! down with it, and `cancel_actor` then ends the process: no orphaned task, no zombie.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example infected_echo_server
//! ```
//!
//! It prints one line, `mean round trip rate (Hz): N`, and exits 0.

use std::pin::pin;
use std::time::{Duration, Instant};

use futures::StreamExt;
use infect::actor::{self, ActorOpts, Context, Endpoints};
use infect::host;
use infect::to_host::{self, HostChannel, LinkOpts};
use infect::{Error, Result};

/// The endpoint namespace this binary serves (Python's `enable_modules=[__name__]`).
const NS: &str = "infected_echo_server";

async fn host_echo_server(chan: HostChannel<u64, u64, &'static str>) -> Result<()> {
    // a first message must be sent **from** this host task or the guest side will never
    // unblock from `to_host::open_channel_from()`
    chan.started_nowait("start")?;

    loop {
        // echo the msg back
        chan.send_nowait(chan.get().await?)?;
        host::yield_now().await?;
    }
}

async fn guest_to_host_echo_server(ctx: Context, _: ()) -> Result<()> {
    // this will block until the host task sends a "first" message.
    to_host::open_channel_from(host_echo_server, LinkOpts::default(), async |chan, first| {
        assert_eq!(first, "start");
        ctx.started(first).await?;

        ctx.open_stream(async |stream| {
            let mut msgs = pin!(stream.iter::<u64>());
            while let Some(msg) = msgs.next().await {
                chan.send(msg?).await?;

                let out = chan.receive().await?.ok_or(Error::HostTaskExited)?;
                // echo back to parent actor-task
                stream.send(&out).await?;
            }
            Ok(())
        })
        .await
    })
    .await
}

async fn root() -> Result<()> {
    actor::open_nursery(async |n| {
        let p = n.start_actor("host_server", ActorOpts::new().enable_modules([NS]).infect_host(true)).await?;
        let delays = p
            .open_context(NS, "guest_to_host_echo_server", &(), async |ctx, first: String| {
                assert_eq!(first, "start");

                let mut count = 0u64;
                ctx.open_stream(async |stream| {
                    let mut delays = Vec::new();
                    let mut send = Instant::now();

                    stream.send(&count).await?;
                    let mut msgs = pin!(stream.iter::<u64>());
                    while let Some(msg) = msgs.next().await {
                        let recv = Instant::now();
                        delays.push(recv - send);
                        assert_eq!(msg?, count);
                        count += 1;
                        send = Instant::now();
                        stream.send(&count).await?;

                        if count >= 1000 {
                            break;
                        }
                    }
                    Ok(delays)
                })
                .await
            })
            .await?;

        // Whole hertz: printing an integer keeps float formatting out of a minimal binary.
        println!("mean round trip rate (Hz): {}", (1.0 / mean(&delays)) as u64);
        p.cancel_actor().await?;
        Ok(())
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))
}

fn mean(delays: &[Duration]) -> f64 {
    delays.iter().map(Duration::as_secs_f64).sum::<f64>() / delays.len() as f64
}

fn main() {
    let endpoints = Endpoints::new().context(NS, "guest_to_host_echo_server", guest_to_host_echo_server);
    if let Err(e) = actor::main(endpoints, root()) {
        // `Display`, not `main() -> Result`'s `Debug`: the message is what a user needs, and
        // the derived `Debug` of every error type stays out of a minimal binary.
        eprintln!("infected_echo_server: {e}");
        std::process::exit(1);
    }
}
