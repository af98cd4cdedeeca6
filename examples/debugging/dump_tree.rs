//! The live tree dump: a root starts a child, the child starts a grandchild, and the root
//! prints the dump of the whole tree (each actor's tasks, nurseries, scopes and where each
//! task waits, relayed up through the pipes).
//!
//! ```text
//! cargo run --example dump_tree
//! ```
//!
//! While it runs (`--hold` keeps the tree up), `kill -USR1 <pid>` makes any of the actors print
//! its own subtree's dump to stderr.

use std::process::ExitCode;
use std::time::Duration;

use infect::actor::{self, ActorOpts, Endpoints, Function};
use infect::{Result, debug, guest};

/// Starts a grandchild and waits in it: the middle of the tree.
const CHAIN: Function<(), ()> = Function::new("tree", "chain");
/// Waits until cancelled: the leaf.
const PARK: Function<(), ()> = Function::new("tree", "park");
/// The actor's pid.
const PID: Function<(), u32> = Function::new("tree", "pid");

fn opts() -> ActorOpts {
    ActorOpts::new().enable_modules(["tree"])
}

async fn chain(_: ()) -> Result<()> {
    actor::open_nursery(async |an| {
        let leaf = an.start_actor("grandchild", opts()).await?;
        leaf.run(PARK, &()).await
    })
    .await
    .map(drop)
}

async fn park(_: ()) -> Result<()> {
    guest::sleep_forever().await
}

async fn pid(_: ()) -> Result<u32> {
    Ok(std::process::id())
}

/// Waits until the dump shows the grandchild serving its call (the tree is up), then returns
/// the dump.
async fn tree_dump() -> Result<String> {
    loop {
        let text = debug::dump_tree().await?;
        if text.contains("tree.park") {
            return Ok(text);
        }
        guest::sleep(Duration::from_millis(20)).await?;
    }
}

async fn root() -> Result<()> {
    let hold = std::env::args().any(|a| a == "--hold");
    actor::open_nursery(async |an| {
        let child = an.start_actor("child", opts()).await?;
        println!("root pid {}, child pid {}", std::process::id(), child.run(PID, &()).await?);
        guest::open_nursery(async |n| {
            let c = child.clone();
            n.start_soon(async move { c.run(CHAIN, &()).await })?;
            print!("{}", tree_dump().await?);
            if hold {
                println!("holding the tree: kill -USR1 <pid> prints a subtree's dump, Ctrl-C ends");
                guest::sleep_forever().await?;
            }
            n.cancel();
            Ok(())
        })
        .await?;
        let _ = an.cancel().await;
        Ok(())
    })
    .await
    .map(drop)
}

fn main() -> ExitCode {
    // First thing: every actor of the tree (each a re-execution of this program) answers.
    debug::enable();
    let endpoints = Endpoints::new().serve(CHAIN, chain).serve(PARK, park).serve(PID, pid);
    actor::main(endpoints, root())
}
