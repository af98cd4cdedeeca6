//! Debug mode: a grandchild pauses; the terminal lock is relayed through its parent to the
//! root (tractor's `multi_nested_subactors_error_up_through_nurseries.py`, the pausing part).
//!
//! ```text
//! cargo run --example pause_in_grandchild
//! ```
//!
//! `root → middle → leaf`: the leaf pauses. Type `c` to resume it, or `quit` to cancel the
//! whole tree from the leaf's prompt (the root exits 130, every actor is reaped).

use std::process::ExitCode;

use infect::actor::{self, ActorOpts, Endpoints, Function, RootOpts};
use infect::{Error, Result, debug};

#[path = "common.rs"]
mod common;

const MIDDLE: Function<u64, u64> = Function::new("tree", "middle");
const LEAF: Function<u64, u64> = Function::new("tree", "leaf");

fn opts(name: &str) -> ActorOpts {
    ActorOpts::new().name(name).enable_modules(["tree"])
}

async fn middle(x: u64) -> Result<u64> {
    actor::open_nursery(async |an| an.run_in_actor(LEAF, &x, opts("leaf")).await?.wait_for_result().await)
        .await?
        .ok_or(Error::Cancelled)
}

async fn leaf(x: u64) -> Result<u64> {
    println!("leaf: before pause");
    debug::pause().await?;
    println!("leaf: after pause");
    Ok(x + 1)
}

async fn root() -> Result<()> {
    let r = actor::open_nursery(async |an| an.run_in_actor(MIDDLE, &41, opts("middle")).await?.wait_for_result().await)
        .await;
    println!("root: middle {}", common::outcome(&r));
    r.map(drop)
}

fn main() -> ExitCode {
    let endpoints = Endpoints::new().serve(MIDDLE, middle).serve(LEAF, leaf);
    match actor::run_with(RootOpts::new().debug_mode(true), endpoints, root()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
