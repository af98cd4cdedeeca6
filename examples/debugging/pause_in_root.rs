//! Debug mode: the root itself pauses (tractor's `root_actor_breakpoint.py`).
//!
//! ```text
//! cargo run --example pause_in_root
//! ```
//!
//! `c` resumes the root at its next line; `quit` interrupts it as Ctrl-C would (exit 130).

use std::process::ExitCode;

use infect::actor::{self, Endpoints, RootOpts};
use infect::{Result, debug};

#[path = "common.rs"]
mod common;

async fn root() -> Result<()> {
    println!("root: before pause");
    let r = debug::pause().await;
    println!("root: pause {}", common::outcome(&r));
    r
}

fn main() -> ExitCode {
    match actor::run_with(RootOpts::new().debug_mode(true), Endpoints::new(), root()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
