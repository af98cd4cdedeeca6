//! Debug mode: the tree is torn down while a grandchild is paused, and nobody kills it
//! (tractor's `root_cancelled_but_child_is_in_tty_lock.py`, and its open issue #320).
//!
//! ```text
//! cargo run --example pause_while_cancelled
//! ```
//!
//! `root → middle → leaf`: once the leaf holds the terminal, the root fails, which cancels
//! `middle` and, through it, `leaf`. Their reaping ladders are short here (100 ms per rung),
//! yet neither the root nor `middle` climbs to `SIGTERM`/`SIGKILL` while the leaf's prompt is
//! open: take your time, type `where`, then `c`; the leaf resumes, sees its cancellation, and
//! the tree ends with the root's error.

use std::process::ExitCode;
use std::time::Duration;

use infect::actor::{self, ActorOpts, Endpoints, Function, RootOpts};
use infect::{Error, Result, debug, guest};

#[path = "common.rs"]
mod common;

const MIDDLE: Function<(), ()> = Function::new("tree", "middle");
const LEAF: Function<(), ()> = Function::new("tree", "leaf");

fn opts(name: &str) -> ActorOpts {
    let rung = Duration::from_millis(100);
    ActorOpts::new().name(name).enable_modules(["tree"]).cancel_timeout(rung).term_timeout(rung)
}

async fn middle(_: ()) -> Result<()> {
    actor::open_nursery(async |an| an.run_in_actor(LEAF, &(), opts("leaf")).await?.wait_for_result().await)
        .await
        .map(drop)
}

async fn leaf(_: ()) -> Result<()> {
    println!("leaf: before pause");
    debug::pause().await?;
    println!("leaf: after pause");
    guest::sleep_forever().await
}

async fn root() -> Result<()> {
    let r = actor::open_nursery(async |an| {
        let _middle = an.run_in_actor(MIDDLE, &(), opts("middle")).await?;
        while debug::terminal_queue() != ["leaf"] {
            guest::sleep(Duration::from_millis(5)).await?;
        }
        Err::<(), _>(Error::msg("RootError", "the root fails while 'leaf' is paused"))
    })
    .await;
    println!("root: {}", common::outcome(&r));
    r.map(drop)
}

fn main() -> ExitCode {
    let endpoints = Endpoints::new().serve(MIDDLE, middle).serve(LEAF, leaf);
    match actor::run_with(RootOpts::new().debug_mode(true), endpoints, root()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
