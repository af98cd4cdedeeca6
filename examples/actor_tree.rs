//! A small actor tree: the root starts two actors, runs functions in them, and shows a remote
//! error arriving with its kind, message and source actor.
//!
//! ```text
//! cargo run --example actor_tree
//! ```
//!
//! Every actor is this same binary re-executed: `actor::main` serves the endpoints in a child
//! and runs the root future in the root.

use std::process::ExitCode;

use infect::actor::{self, ActorOpts, Endpoints, Function};
use infect::{Error, Result};

const ADD: Function<(i64, i64), i64> = Function::new("math", "add");
const DIVIDE: Function<(i64, i64), i64> = Function::new("math", "divide");
const SHOUT: Function<String, String> = Function::new("text", "shout");

async fn add((a, b): (i64, i64)) -> Result<i64> {
    Ok(a + b)
}

async fn shout(text: String) -> Result<String> {
    let me = actor::current_actor();
    Ok(format!("{} (from actor '{}', pid {})", text.to_uppercase(), me.name(), me.aid().pid))
}

async fn divide((a, b): (i64, i64)) -> Result<i64> {
    if b == 0 {
        return Err(Error::msg("ZeroDivisionError", format!("cannot divide {a} by zero")));
    }
    Ok(a / b)
}

async fn root() -> Result<()> {
    actor::open_nursery(async |an| {
        let calc = an.start_actor("calculator", ActorOpts::new().enable_modules(["math"])).await?;
        let echo = an.start_actor("shouter", ActorOpts::new().enable_modules(["text"])).await?;

        let sum = calc.run(ADD, &(40, 2)).await?;
        println!("calculator: 40 + 2 = {sum}");

        let loud = echo.run(SHOUT, &"hello tree".to_owned()).await?;
        println!("shouter: {loud}");

        // A remote failure arrives as a RemoteActorError, boxing the remote error's kind.
        match calc.run(DIVIDE, &(1, 0)).await {
            Err(Error::RemoteActor(e)) => {
                println!(
                    "calculator failed: {} (boxed type {:?}, from actor '{}')",
                    e.message, e.boxed_type, e.src.name
                );
            }
            other => println!("unexpected: {other:?}"),
        }

        // The shouter does not serve "math": the actor says so and keeps serving.
        if let Err(e) = echo.run(ADD, &(1, 1)).await {
            println!("shouter refused: {e}");
        }

        // A one-shot actor: the nursery waits for its result.
        let once = an.run_in_actor(ADD, &(1, 2), ActorOpts::new()).await?;
        let three = once.wait_for_result().await?;
        println!("run_in_actor: 1 + 2 = {three}");

        println!("cancelled calculator gracefully: {}", calc.cancel_actor().await?);
        Ok(())
    })
    .await
    .map(drop)
}

fn main() -> ExitCode {
    let endpoints = Endpoints::new().serve(ADD, add).serve(DIVIDE, divide).serve(SHOUT, shout);
    actor::main(endpoints, root())
}
