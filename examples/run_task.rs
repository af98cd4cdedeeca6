//! One-shot host calls with `to_host::run_task` (tractor's `to_asyncio.run_task`) inside an
//! infected actor: no channel, no streaming, one value back.
//!
//! The root starts an infected child (`infect_host(true)`) and calls its `fetch` endpoint, a
//! guest function that runs a host future (`host_fetch`, "pretend-IO, host style") and returns
//! its value. Then it shows the two other outcomes of a one-shot call: a guest deadline
//! (`move_on_after`) that cancels the host task (it does not keep running), and the same
//! endpoint in a `run_in_actor` one-shot infected actor.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example run_task
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use infect::actor::{self, ActorOpts, Endpoints, Function};
use infect::to_host;
use infect::{Result, guest, host};

const NS: &str = "run_task";

const FETCH: Function<String, String> = Function::new(NS, "fetch");
const FETCH_WITH_DEADLINE: Function<u64, Option<String>> = Function::new(NS, "fetch_with_deadline");

/// A host-side future: it only uses host-aware awaits.
async fn host_fetch(url: String) -> Result<String> {
    host::sleep(Duration::from_millis(300)).await?; // pretend-IO, host style
    Ok(format!("<html>sup {url}</html>"))
}

/// From any guest task inside the infected actor.
async fn fetch(url: String) -> Result<String> {
    to_host::run_task(host_fetch(url)).await
}

/// The same call under a guest deadline shorter than the host task: the host task is cancelled
/// and has finished by the time `run_task` returns.
async fn fetch_with_deadline(ms: u64) -> Result<Option<String>> {
    guest::move_on_after(Duration::from_millis(ms), to_host::run_task(host_fetch("https://slow.io".into()))).await
}

async fn root() -> Result<()> {
    actor::open_nursery(async |an| {
        let portal = an.start_actor("host_side", ActorOpts::new().enable_modules([NS]).infect_host(true)).await?;

        let t0 = Instant::now();
        let page = portal.run(FETCH, &"https://x.io".to_owned()).await?;
        println!("fetched {page} in {} ms", t0.elapsed().as_millis());

        let late = portal.run(FETCH_WITH_DEADLINE, &100).await?;
        println!("with a 100 ms deadline: {late:?}");
        portal.cancel_actor().await?;

        // The one-shot flavour: an infected actor that runs one call and is reaped after it.
        let one_shot = an.run_in_actor(FETCH, &"https://y.io".to_owned(), ActorOpts::new().infect_host(true)).await?;
        println!("run_in_actor: {}", one_shot.wait_for_result().await?);
        Ok(())
    })
    .await
    .map(drop)
}

fn main() -> ExitCode {
    let endpoints = Endpoints::new().serve(FETCH, fetch).serve(FETCH_WITH_DEADLINE, fetch_with_deadline);
    actor::main(endpoints, root())
}
