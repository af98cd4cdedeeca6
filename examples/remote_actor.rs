//! An actor on another machine, started through a launcher (`ActorOpts::launcher`): the same
//! binary runs on the other side, its frames travel over the launcher's stdin and stdout.
//!
//! ```text
//! cargo run --example remote_actor                                   # sh -c 'exec "$@"' --, locally
//! cargo run --example remote_actor -- ssh -T -o BatchMode=yes HOST   # through ssh
//! ```
//!
//! With ssh, this binary must exist at the same path on `HOST` (copy it there, or name the path
//! with `ActorOpts::program`). It prints where the actor ran, a remote error's kind and relay
//! path, and exits 0.

use std::process::ExitCode;

use infect::actor::{self, ActorOpts, Endpoints, Function};
use infect::{Error, Result};

/// The endpoints this binary serves, declared once and used at both ends.
const WHEREAMI: Function<(), (String, u32)> = Function::new("remote", "whereami");
const FAIL: Function<String, ()> = Function::new("remote", "fail");

/// Where this actor runs: host name and pid.
async fn whereami() -> Result<(String, u32)> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    Ok((host.trim().to_owned(), std::process::id()))
}

async fn fail(message: String) -> Result<()> {
    Err(Error::msg("ValueError", message))
}

async fn root() -> Result<()> {
    let mut launcher: Vec<String> = std::env::args().skip(1).collect();
    if launcher.is_empty() {
        launcher = ["sh", "-c", "exec \"$@\"", "--"].map(String::from).to_vec();
    }
    let shown = launcher.join(" ");
    actor::open_nursery(async |an| {
        let opts = ActorOpts::new().enable_modules(["remote"]).launcher(launcher);
        let far = an.start_actor("far", opts).await?;
        let (host, pid) = far.run(WHEREAMI, &()).await?;
        println!("through `{shown}`: actor 'far' runs on {host} as pid {pid} (launcher pid {})", far.pid());
        match far.run(FAIL, &"on purpose".to_owned()).await {
            Err(e) => println!("its error: {} {:?} from {}", e.kind(), e.to_string(), far.name()),
            Ok(()) => println!("no error?"),
        }
        far.cancel_actor().await?;
        Ok(())
    })
    .await
    .map(drop)
}

fn main() -> ExitCode {
    actor::main(Endpoints::new().serve(WHEREAMI, whereami).serve(FAIL, fail), root())
}
