//! Crash reports in debug mode: a grandchild's endpoint fails, the error travels up through
//! the child to the root, and each actor on the way prints its own marked report to stderr
//! (its name, what failed, the error chain, its subtree's dump) before passing the error on.
//!
//! ```text
//! cargo run --example crash_report
//! ```

use std::process::ExitCode;

use infect::actor::{self, ActorOpts, Endpoints, Function, RootOpts};
use infect::{Error, Result};

/// Starts a grandchild and calls [`DIVIDE`] in it.
const RELAY: Function<(i64, i64), i64> = Function::new("calc", "relay");
/// Fails on a zero divisor.
const DIVIDE: Function<(i64, i64), i64> = Function::new("calc", "divide");

fn opts() -> ActorOpts {
    // No `debug_mode` here: the children inherit the root's.
    ActorOpts::new().enable_modules(["calc"])
}

async fn relay(args: (i64, i64)) -> Result<i64> {
    actor::open_nursery(async |an| {
        let leaf = an.start_actor("grandchild", opts()).await?;
        leaf.run(DIVIDE, &args).await
    })
    .await
    .map(|v| v.unwrap_or_default())
}

async fn divide((a, b): (i64, i64)) -> Result<i64> {
    if b == 0 {
        return Err(Error::msg("ZeroDivisionError", format!("cannot divide {a} by zero")));
    }
    Ok(a / b)
}

async fn root() -> Result<()> {
    actor::open_nursery(async |an| {
        let child = an.start_actor("child", opts()).await?;
        let v = child.run(RELAY, &(1, 0)).await?;
        println!("1 / 0 = {v}?");
        Ok(())
    })
    .await
    .map(drop)
}

fn main() -> ExitCode {
    let endpoints = Endpoints::new().serve(RELAY, relay).serve(DIVIDE, divide);
    actor::main_with(RootOpts::new().debug_mode(true), endpoints, root())
}
