//! Debug mode: a child actor pauses at a prompt on the terminal (tractor's
//! `subactor_breakpoint.py`).
//!
//! ```text
//! cargo run --example pause_in_child
//! ```
//!
//! The worker prints a line, pauses (the banner names it, its pid and this file's line), and
//! once you type `c` goes on from the very next line. Try `where`, `tree`, `attach`, `help`,
//! Ctrl-C (it stays at the prompt), `cancel` (the worker's call ends as `ContextCancelled`) and
//! `quit` (the whole tree is cancelled; the root exits 130).

use std::process::ExitCode;

use infect::actor::{self, ActorOpts, Endpoints, Function, RootOpts};
use infect::{Result, debug};

#[path = "common.rs"]
mod common;

const WORK: Function<u64, u64> = Function::new("work", "work");

async fn work(x: u64) -> Result<u64> {
    println!("worker: before pause");
    debug::pause().await?;
    println!("worker: after pause");
    Ok(2 * x)
}

async fn root() -> Result<()> {
    let r = actor::open_nursery(async |an| {
        let worker = an.run_in_actor(WORK, &21, ActorOpts::new().name("worker").enable_modules(["work"])).await?;
        worker.wait_for_result().await
    })
    .await;
    println!("root: worker {}", common::outcome(&r));
    r.map(drop)
}

fn main() -> ExitCode {
    let opts = RootOpts::new().debug_mode(true);
    match actor::run_with(opts, Endpoints::new().serve(WORK, work), root()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
