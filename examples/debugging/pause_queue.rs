//! Debug mode: two actors pause at once and queue for the terminal, in order (tractor's
//! `multi_subactors.py`): the root owns the lock, one prompt at a time, first come first
//! served.
//!
//! ```text
//! cargo run --example pause_queue
//! ```
//!
//! `first` pauses; once it holds the terminal, `second` pauses too and waits in the root's
//! queue (the root prints the queue). Type `c` at first's prompt: second's prompt opens.

use std::process::ExitCode;
use std::time::Duration;

use infect::actor::{self, ActorOpts, Endpoints, Function, RootOpts};
use infect::{Result, debug, guest};

#[path = "common.rs"]
mod common;

const PAUSE: Function<(), String> = Function::new("q", "pause");

async fn pause(_: ()) -> Result<String> {
    let me = actor::current_actor().name().to_owned();
    println!("{me}: before pause");
    debug::pause().await?;
    println!("{me}: after pause");
    Ok(me)
}

/// Waits until the root's terminal queue reads `want` (holder first).
async fn queue_is(want: &[&str]) -> Result<()> {
    while debug::terminal_queue() != want {
        guest::sleep(Duration::from_millis(5)).await?;
    }
    Ok(())
}

async fn root() -> Result<()> {
    let opts = |name: &str| ActorOpts::new().name(name).enable_modules(["q"]);
    let r = actor::open_nursery(async |an| {
        let first = an.run_in_actor(PAUSE, &(), opts("first")).await?;
        queue_is(&["first"]).await?;
        let second = an.run_in_actor(PAUSE, &(), opts("second")).await?;
        queue_is(&["first", "second"]).await?;
        println!("root: queue {}", debug::terminal_queue().join(", "));
        Ok((first.wait_for_result().await?, second.wait_for_result().await?))
    })
    .await;
    println!("root: {}", common::outcome(&r));
    r.map(drop)
}

fn main() -> ExitCode {
    match actor::run_with(RootOpts::new().debug_mode(true), Endpoints::new().serve(PAUSE, pause), root()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
