//! `debug::pause()` outside debug mode: it refuses with `Err(NotDebugMode)` at once, in the
//! root and in a child, and pauses nothing (tractor raises too).
//!
//! ```text
//! cargo run --example pause_outside_debug
//! ```

use std::process::ExitCode;

use infect::actor::{self, ActorOpts, Endpoints, Function};
use infect::{Result, debug};

#[path = "common.rs"]
mod common;

const WORK: Function<(), ()> = Function::new("work", "work");

async fn work(_: ()) -> Result<()> {
    debug::pause().await
}

async fn root() -> Result<()> {
    println!("root: pause {}", common::outcome(&debug::pause().await));
    let r = actor::open_nursery(async |an| {
        an.run_in_actor(WORK, &(), ActorOpts::new().name("worker").enable_modules(["work"]))
            .await?
            .wait_for_result()
            .await
    })
    .await;
    println!("root: worker {}", common::outcome(&r));
    Ok(())
}

fn main() -> ExitCode {
    match actor::run(Endpoints::new().serve(WORK, work), root()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
