//! Debug mode: a *host* task of an infected child pauses (tractor's `asyncio_bp.py`): the same
//! `debug::pause()` works on the host side, where the task runs on the host executor.
//!
//! ```text
//! cargo run --example pause_in_host_task
//! ```
//!
//! `where` at the prompt says "in a host task"; `c` resumes the host task, whose value the
//! guest side returns to the root.

use std::process::ExitCode;

use infect::actor::{self, ActorOpts, Endpoints, Function, RootOpts};
use infect::{Result, debug, to_host};

#[path = "common.rs"]
mod common;

const FETCH: Function<(), u64> = Function::new("host", "fetch");

async fn fetch(_: ()) -> Result<u64> {
    to_host::run_task(async {
        println!("host: before pause");
        debug::pause().await?;
        println!("host: after pause");
        Ok(7)
    })
    .await
}

async fn root() -> Result<()> {
    let r = actor::open_nursery(async |an| {
        let opts = ActorOpts::new().name("infected").enable_modules(["host"]).infect_host(true);
        an.run_in_actor(FETCH, &(), opts).await?.wait_for_result().await
    })
    .await;
    println!("root: infected {}", common::outcome(&r));
    r.map(drop)
}

fn main() -> ExitCode {
    match actor::run_with(RootOpts::new().debug_mode(true), Endpoints::new().serve(FETCH, fetch), root()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
