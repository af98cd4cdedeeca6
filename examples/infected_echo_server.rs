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
//!
//! To see what the runtime does meanwhile (each actor's spans, its tasks, the link's signals,
//! the reaping), build it with the `tracing` feature: the events go to stderr, at `debug`
//! level unless `INFECT_LOG` names another (`INFECT_LOG=trace` adds every message of the link):
//!
//! ```text
//! cargo run --example infected_echo_server --features tracing
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use infect::Result;
use infect::actor::{self, ActorOpts, Context, ContextFn, Endpoints};
use infect::host;
use infect::to_host::{self, HostChannel, LinkOpts};

/// The endpoint namespace this binary serves (Python's `enable_modules=[__name__]`).
const NS: &str = "infected_echo_server";

/// The context endpoint (`@tractor.context`): no arguments, started with a `String`.
const GUEST_TO_HOST_ECHO_SERVER: ContextFn<(), String> = ContextFn::new(NS, "guest_to_host_echo_server");

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

async fn guest_to_host_echo_server(ctx: Context) -> Result<()> {
    // this will block until the host task sends a "first" message.
    to_host::open_channel_from(host_echo_server, LinkOpts::new(), async |chan, first| {
        assert_eq!(first, "start");
        ctx.started(first).await?;

        ctx.open_stream(async |stream| {
            while let Some(msg) = stream.try_next().await? {
                chan.send(msg).await?;

                let out = chan.receive().await?;
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
            .open_context(GUEST_TO_HOST_ECHO_SERVER, &(), async |ctx, first| {
                assert_eq!(first, "start");

                let mut count = 0u64;
                ctx.open_stream(async |stream| {
                    let mut delays = Vec::new();
                    let mut send = Instant::now();

                    stream.send(&count).await?;
                    while let Some(msg) = stream.try_next().await? {
                        let recv = Instant::now();
                        delays.push(recv - send);
                        assert_eq!(count, msg);
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

        println!("mean round trip rate (Hz): {}", Duration::from_secs(1).as_nanos() / mean(&delays).as_nanos());
        p.cancel_actor().await?;
        Ok(())
    })
    .await
    .map(drop)
}

fn mean(delays: &[Duration]) -> Duration {
    delays.iter().sum::<Duration>() / delays.len() as u32
}

/// Prints the runtime's events to stderr (the `tracing` feature only; a build without it has
/// no subscriber and no events). The child actors run this binary too, so they print theirs.
#[cfg(feature = "tracing")]
fn init_tracing() {
    let level = std::env::var("INFECT_LOG").ok().and_then(|l| l.parse().ok());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level.unwrap_or(tracing::Level::DEBUG))
        .init();
}

fn main() -> ExitCode {
    #[cfg(feature = "tracing")]
    init_tracing();
    actor::main(Endpoints::new().serve(GUEST_TO_HOST_ECHO_SERVER, guest_to_host_echo_server), root())
}
