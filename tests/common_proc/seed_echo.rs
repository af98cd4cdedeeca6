//! The seed's echo server (`examples/infected_echo_server.rs`) as a fixture for the tests and
//! benches that run it under other conditions (through a launcher, against a raw pipe). Each
//! includes this file with `#[path]`; the example itself keeps its own copy, line by line
//! like the seed.

use infect::actor::Context;
use infect::to_host::{self, HostChannel, LinkOpts};
use infect::{Result, host};

/// Host side: echo every value back.
pub async fn host_echo_server(chan: HostChannel<u64, u64, &'static str>) -> Result<()> {
    chan.started_nowait("start")?;
    loop {
        chan.send_nowait(chan.get().await?)?;
        host::yield_now().await?;
    }
}

/// Guest side: every stream item goes through the host task and back.
pub async fn guest_to_host_echo_server(ctx: Context) -> Result<()> {
    to_host::open_channel_from(host_echo_server, LinkOpts::new(), async |chan, first| {
        ctx.started(first).await?;
        ctx.open_stream(async |stream| {
            while let Some(msg) = stream.try_next::<u64>().await? {
                chan.send(msg).await?;
                let out = chan.receive().await?;
                stream.send(&out).await?;
            }
            Ok(())
        })
        .await
    })
    .await
}
