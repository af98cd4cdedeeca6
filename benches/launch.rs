//! Launcher benchmarks (`harness = false`; this binary is also the actor binary it starts,
//! here and through ssh on the "other host", which is this one).
//!
//! ```text
//! cargo bench --bench launch
//! ```
//!
//! In one run, for a child spawned directly (pipes), through `sh -c 'exec "$@"' --` (the
//! launcher path without a network) and through `ssh` to a loopback sshd (`INFECT_TEST_SSH`,
//! or a private sshd started here as the tests do, `tests/common_proc/sshd.rs`):
//! 1. `portal.run` round trip of a trivial echo, median µs over 2000 calls;
//! 2. the seed's echo (an infected child's context stream through its host task), median µs per
//!    round trip over 2000 items;
//! 3. start (spawn + handshake) + `cancel_actor` + reap, median ms over 5.
//!
//! Five rounds, each measuring every way in turn; each figure is the median of the rounds.

#[path = "../tests/common_proc/sshd.rs"]
mod sshd;

#[path = "../tests/common_proc/seed_echo.rs"]
mod seed_echo;
use seed_echo::guest_to_host_echo_server;
use std::time::{Duration, Instant};

use infect::actor::{self, ActorOpts, ContextFn, Endpoints, Function, LAUNCHED_ARG};
use infect::{Error, Result};

const ECHO: Function<u64, u64> = Function::new("b", "echo");
const ECHO_SERVER: ContextFn<(), String> = ContextFn::new("b", "echo_server");

async fn echo(x: u64) -> Result<u64> {
    Ok(x)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn opts(launcher: &[String]) -> ActorOpts {
    let o = ActorOpts::new().enable_modules(["b"]);
    if launcher.is_empty() { o } else { o.launcher(launcher.iter().cloned()) }
}

async fn open<T>(body: impl AsyncFnOnce(&actor::ActorNursery) -> Result<T>) -> Result<T> {
    actor::open_nursery(body).await.and_then(|v| v.ok_or(Error::Cancelled))
}

/// Median `portal.run` round trip over `n` calls (after 100 to warm up).
async fn run_round_trip(launcher: &[String], n: usize) -> Result<Duration> {
    open(async |an| {
        let p = an.start_actor("echo", opts(launcher)).await?;
        for i in 0..100u64 {
            let _: u64 = p.run(ECHO, &i).await?;
        }
        let mut times = Vec::with_capacity(n);
        for i in 0..n as u64 {
            let t0 = Instant::now();
            let back: u64 = p.run(ECHO, &i).await?;
            times.push(t0.elapsed());
            assert_eq!(back, i);
        }
        p.cancel_actor().await?;
        Ok(median(times))
    })
    .await
}

/// Median round trip of the seed's echo (infected child, context stream) over `n` items.
async fn seed_echo_round_trip(launcher: &[String], n: usize) -> Result<Duration> {
    open(async |an| {
        let p = an.start_actor("host_server", opts(launcher).infect_host(true)).await?;
        let d = p
            .open_context(ECHO_SERVER, &(), async |ctx, _first: String| {
                ctx.open_stream(async |stream| {
                    let mut times = Vec::with_capacity(n);
                    for i in 0..(n + 100) as u64 {
                        let t0 = Instant::now();
                        stream.send(&i).await?;
                        let back: u64 = stream.receive().await?;
                        assert_eq!(back, i);
                        if i >= 100 {
                            times.push(t0.elapsed());
                        }
                    }
                    Ok(median(times))
                })
                .await
            })
            .await?;
        p.cancel_actor().await?;
        Ok(d)
    })
    .await
}

/// Median start + `cancel_actor` + reap over `n` actors.
async fn start_cancel(launcher: &[String], n: usize) -> Result<Duration> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        open(async |an| an.start_actor("short", opts(launcher)).await?.cancel_actor().await.map(drop)).await?;
        times.push(t0.elapsed());
    }
    Ok(median(times))
}

fn main() {
    let child = std::env::var_os("INFECT_ACTOR_PIPE").is_some()
        || std::env::args().next_back().is_some_and(|a| a == LAUNCHED_ARG);
    let ssh = if child { Err(String::new()) } else { sshd::ssh() };
    let endpoints = Endpoints::new().serve(ECHO, echo).serve(ECHO_SERVER, guest_to_host_echo_server);
    let r = actor::run(endpoints, async move {
        let sh: Vec<String> = ["sh", "-c", "exec \"$@\"", "--"].map(String::from).to_vec();
        let mut ways: Vec<(&str, Vec<String>)> = vec![("pipes", Vec::new()), ("sh launcher", sh)];
        match &ssh {
            Ok(s) => {
                println!("ssh: {}", s.origin);
                ways.push(("ssh loopback", s.launcher.clone()));
            }
            Err(why) => println!("ssh skipped: {why}"),
        }
        // Rounds interleave the ways, so that a noisy neighbour on a shared machine weighs on
        // all of them alike; each figure is the median of the rounds' medians.
        const ROUNDS: usize = 5;
        let mut runs: Vec<[Vec<Duration>; 3]> = ways.iter().map(|_| Default::default()).collect();
        for _ in 0..ROUNDS {
            for ((_, launcher), run) in ways.iter().zip(runs.iter_mut()) {
                run[0].push(run_round_trip(launcher, 2000).await?);
                run[1].push(seed_echo_round_trip(launcher, 2000).await?);
                run[2].push(start_cancel(launcher, 5).await?);
            }
        }
        let figures: Vec<[Duration; 3]> = runs.into_iter().map(|r| r.map(median)).collect();
        let base = figures[0];
        for ((label, _), [rt, seed, start]) in ways.iter().zip(figures) {
            println!(
                "{label:>12}: portal.run round trip median {:8.1} us ({:.2}x pipes); seed echo median {:8.1} us ({:.2}x pipes); start+cancel+reap median {:8.2} ms",
                rt.as_secs_f64() * 1e6,
                rt.as_secs_f64() / base[0].as_secs_f64(),
                seed.as_secs_f64() * 1e6,
                seed.as_secs_f64() / base[1].as_secs_f64(),
                start.as_secs_f64() * 1e3,
            );
        }
        Ok(())
    });
    if let Err(e) = r {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}
