//! The simulation's speed against the real thing, in one run (`harness = false`; this binary
//! is also the actor binary its process echo starts):
//!
//! ```text
//! cargo bench --bench sim
//! ```
//!
//! 1. The seed's echo (an infected child, its context stream through its host task): round
//!    trips per second as processes (pipes) and simulated (in-memory pipes, no faults), over
//!    2000 items.
//! 2. A whole run of the 50-item echo (start the child, echo, tear it down, reap): as a process
//!    tree, and simulated with [`Faults::all`]; for the simulation, as seeds per second of a
//!    1,000-seed sweep.
//!
//! Five rounds, alternating the two ways; each figure is the median of the rounds.

#[path = "../tests/common_proc/seed_echo.rs"]
mod seed_echo;

use std::time::{Duration, Instant};

use infect::actor::{self, ActorOpts, ContextFn, Endpoints};
use infect::sim::{Faults, Sim};
use infect::{Error, Result};

const ECHO: ContextFn<(), String> = ContextFn::new("b", "echo_server");

fn endpoints() -> Endpoints {
    Endpoints::new().serve(ECHO, seed_echo::guest_to_host_echo_server)
}

/// The echo of `n` items: the wall time of the items alone.
async fn echo(n: u64) -> Result<Duration> {
    actor::open_nursery(async |an| {
        let p = an.start_actor("host_server", ActorOpts::new().enable_modules(["b"]).infect_host(true)).await?;
        let d = p
            .open_context(ECHO, &(), async |ctx, _first: String| {
                ctx.open_stream(async |stream| {
                    let t0 = Instant::now();
                    for i in 0..n {
                        stream.send(&i).await?;
                        let back: u64 = stream.receive().await?;
                        assert_eq!(back, i);
                    }
                    Ok(t0.elapsed())
                })
                .await
            })
            .await?;
        p.cancel_actor().await?;
        Ok(d)
    })
    .await?
    .ok_or(Error::Cancelled)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::var_os("INFECT_ACTOR_PIPE").is_some() {
        let _ = actor::run(endpoints(), async { Ok(()) });
        return;
    }
    const ROUNDS: usize = 5;
    const ITEMS: u64 = 2000;
    const SEEDS: u64 = 1000;
    let (mut proc_rt, mut sim_rt, mut proc_run, mut sim_run, mut sweep) = (vec![], vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        // As processes.
        let items = actor::run(endpoints(), echo(ITEMS)).expect("the process echo");
        proc_rt.push(ITEMS as f64 / items.as_secs_f64());
        let t0 = Instant::now();
        let runs = 20;
        for _ in 0..runs {
            actor::run(endpoints(), echo(50)).expect("the process echo");
        }
        proc_run.push(runs as f64 / t0.elapsed().as_secs_f64());
        // Simulated.
        let r = Sim::new(round as u64).run(endpoints(), echo(ITEMS));
        let items = r.outcome.expect("the simulated echo");
        sim_rt.push(ITEMS as f64 / items.as_secs_f64());
        let t0 = Instant::now();
        for seed in 0..runs {
            Sim::new(seed as u64).run(endpoints(), echo(50)).outcome.expect("the simulated echo");
        }
        sim_run.push(runs as f64 / t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        for seed in 0..SEEDS {
            let _ = Sim::new(seed).faults(Faults::all()).run(endpoints(), echo(50));
        }
        sweep.push(SEEDS as f64 / t0.elapsed().as_secs_f64());
    }
    let (proc_rt, sim_rt, proc_run, sim_run, sweep) =
        (median(proc_rt), median(sim_rt), median(proc_run), median(sim_run), median(sweep));
    println!("seed echo round trips/s: processes {proc_rt:.0}, simulated {sim_rt:.0} ({:.2}x)", sim_rt / proc_rt);
    println!(
        "whole 50-item echo runs/s: processes {proc_run:.1}, simulated {sim_run:.1} ({:.1}x), \
         1,000-seed sweep with Faults::all {sweep:.1} seeds/s ({:.1}x the process runs)",
        sim_run / proc_run,
        sweep / proc_run
    );
}
