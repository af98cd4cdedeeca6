//! An error crossing both boundaries: from a host task, across the loop boundary into the guest,
//! out of a context endpoint, across two process boundaries to the root.
//!
//! The tree: `root` → `middle` (a plain actor) → `exchange` (an infected actor). In `exchange`,
//! the host task `host_exchange_client` fails with a user error, `ExchangeError`. The linked
//! channel hands it to the guest side as it is (its kind kept), it propagates out of the context
//! endpoint `subscribe_quotes`, travels to `middle` boxed as a `RemoteActorError` of kind
//! `error_across_boundaries::ExchangeError` (a user error's kind is its type's full path), and
//! `middle`, which does not handle it, relays it to the root, adding its name to the relay path.
//! One SC discipline end to end: every task and process on the way was torn down before the
//! error reached the root.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example error_across_boundaries
//! ```
//!
//! It prints the error as the root sees it and exits 0.

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use infect::actor::{self, ActorOpts, Context, ContextFn, Endpoints, Function};
use infect::error::RemoteKind;
use infect::to_host::{self, HostChannel, LinkOpts};
use infect::{Error, Result, host};

const NS: &str = "boundaries";

/// The infected actor's context endpoint: streams the exchange's quotes.
const SUBSCRIBE_QUOTES: ContextFn<(), ()> = ContextFn::new(NS, "subscribe_quotes");
/// The middle actor's function: how many quotes it read before the stream ended.
const WATCH_QUOTES: Function<(), u32> = Function::new(NS, "watch_quotes");

/// A library's own error type, on the host side.
#[derive(Debug)]
struct ExchangeError {
    code: u16,
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the exchange closed the session (code {})", self.code)
    }
}

impl std::error::Error for ExchangeError {}

/// A host task, say a vendor SDK's client loop, that fails after a few quotes.
async fn host_exchange_client(chan: HostChannel<(), f64, ()>) -> Result<()> {
    chan.started_nowait(())?;
    for quote in [101.5, 101.7, 101.6] {
        chan.send(quote).await?;
        host::sleep(Duration::from_millis(10)).await?;
    }
    Err(Error::user(ExchangeError { code: 1006 }))
}

/// In the infected actor: relays the quotes until the host side fails.
async fn subscribe_quotes(ctx: Context) -> Result<()> {
    to_host::open_channel_from(host_exchange_client, LinkOpts::new(), async |chan, ()| {
        ctx.started(&()).await?;
        ctx.open_stream(async |stream| {
            while let Some(quote) = chan.try_next().await? {
                stream.send(&quote).await?;
            }
            Ok(())
        })
        .await
    })
    .await
}

/// In the middle actor: starts the infected actor and reads its quotes; does not handle errors.
async fn watch_quotes() -> Result<u32> {
    actor::open_nursery(async |an| {
        let p = an.start_actor("exchange", ActorOpts::new().enable_modules([NS]).infect_host(true)).await?;
        p.open_context(SUBSCRIBE_QUOTES, &(), async |ctx, ()| {
            ctx.open_stream(async |stream| {
                let mut quotes: Vec<f64> = Vec::new();
                while let Some(quote) = stream.try_next().await? {
                    quotes.push(quote);
                }
                Ok(quotes.len() as u32)
            })
            .await
        })
        .await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))
}

async fn root() -> Result<()> {
    let r: Result<u32> = actor::open_nursery(async |an| {
        let middle = an.start_actor("middle", ActorOpts::new().enable_modules([NS])).await?;
        middle.run(WATCH_QUOTES, &()).await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let e = r.expect_err("the exchange client fails");
    let remote = e.remote().expect("a remote error");
    println!("the root got: {e}");
    println!("  kind:       {}", e.kind());
    println!("  boxed type: {}", remote.boxed_type);
    println!("  raised in:  {}", remote.src.name);
    println!("  relayed by: {:?}", remote.relay_path);
    println!("  message:    {}", remote.message);
    assert_eq!(remote.boxed_type, std::any::type_name::<ExchangeError>());
    assert_eq!(remote.kind(), RemoteKind::User("error_across_boundaries::ExchangeError"));
    assert_eq!(remote.relay_path, ["middle"]);
    Ok(())
}

fn main() -> ExitCode {
    let endpoints = Endpoints::new().serve(SUBSCRIBE_QUOTES, subscribe_quotes).serve(WATCH_QUOTES, watch_quotes);
    actor::main(endpoints, root())
}
