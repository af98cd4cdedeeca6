//! `infect::sim` against the real thing: the crate's own actor and infected scenarios run as
//! processes and simulated, with the same outcomes; a sweep of 1,000 seeds of the seed's echo
//! with random faults, asserting the invariants every time; a bug the sweep finds and the
//! process runs do not; reproduction by seed; check mode; the guard rails.
//!
//! An actor binary (`harness = false`): the process scenarios need children that are this
//! binary re-executed. `cargo test --test sim -- <filter>` runs the cases whose names contain
//! the filter.

#[path = "common_proc/mod.rs"]
#[macro_use]
#[allow(unused_macros)]
mod common_proc;
#[path = "common_proc/seed_echo.rs"]
mod seed_echo;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use infect::actor::{self, ActorOpts, Context, ContextFn, Endpoints, Function, RootOpts};
use infect::sim::{self, Faults, Report, Sim};
use infect::{Error, Result, guest, host, to_host};

use common_proc::{Check, children_of, open_fds, us};

const NS: &str = "sim_scenarios";
const DOUBLE: Function<u64, u64> = Function::new(NS, "double");
const FAIL: Function<(), ()> = Function::new(NS, "fail");
const SLOW: Function<u64, u64> = Function::new(NS, "slow");
const ON_HOST: Function<u64, u64> = Function::new(NS, "on_host");
const RELAY: Function<u64, u64> = Function::new(NS, "relay");
const SUM: ContextFn<u64, u64, u64> = ContextFn::new(NS, "sum");
const ECHO: ContextFn<(), String> = ContextFn::new(NS, "echo");
const CLAIM: Function<(), String> = Function::new(NS, "claim");
const PANIC: Function<(), ()> = Function::new(NS, "panic");
const DEBUG_MODE: Function<(), (bool, String)> = Function::new(NS, "debug_mode");

/// A user error, matched by its type's path on the other side.
#[derive(Debug, thiserror::Error)]
#[error("the widget broke")]
struct WidgetBroke;

async fn double(x: u64) -> Result<u64> {
    guest::sleep(Duration::from_millis(2)).await?;
    Ok(2 * x)
}

async fn fail() -> Result<()> {
    guest::sleep(Duration::from_millis(1)).await?;
    Err(Error::user(WidgetBroke))
}

async fn panics() -> Result<()> {
    guest::checkpoint().await?;
    panic!("the endpoint panicked");
}

async fn slow(x: u64) -> Result<u64> {
    guest::sleep(Duration::from_secs(3600)).await?;
    Ok(x)
}

/// Needs an infected actor: the value comes back from a host task.
async fn on_host(x: u64) -> Result<u64> {
    to_host::run_task(async move {
        host::sleep(Duration::from_millis(3)).await?;
        Ok(x + 1)
    })
    .await
}

/// Calls `DOUBLE` in a grandchild of its own.
async fn relay(x: u64) -> Result<u64> {
    actor::open_nursery(async |an| {
        let g = an.start_actor("grandchild", ActorOpts::new().enable_modules([NS])).await?;
        let v = g.run(DOUBLE, &x).await?;
        g.cancel_actor().await?;
        Ok(v)
    })
    .await?
    .ok_or(Error::Cancelled)
}

/// Started with its argument; doubles every item it receives; returns their sum.
async fn sum(ctx: Context, start: u64) -> Result<u64> {
    ctx.started(&start).await?;
    ctx.open_stream(async |stream| {
        let mut total = 0;
        while let Some(v) = stream.try_next::<u64>().await? {
            total += v;
            stream.send(&(2 * v)).await?;
        }
        Ok(total)
    })
    .await
}

/// The planted bug, an ordering assumption: two workers race to claim a job, and the code
/// assumes the one started first claims it (true of a FIFO scheduler, which every process
/// runs; nothing in the guest's contract promises it under a seeded policy, and a real program
/// meets the same race whenever the two wait on different events).
async fn claim() -> Result<String> {
    let winner: Rc<RefCell<Option<&'static str>>> = Rc::default();
    guest::open_nursery(async |n| {
        for name in ["first", "second"] {
            let w = winner.clone();
            n.start_soon(async move {
                guest::checkpoint().await?;
                w.borrow_mut().get_or_insert(name);
                Ok(())
            })?;
        }
        Ok(())
    })
    .await?;
    let w = winner.borrow().unwrap_or("nobody");
    Ok(w.to_owned())
}

/// Whether this actor runs in debug mode, and what `debug::pause` says here.
async fn debug_mode() -> Result<(bool, String)> {
    let pause = infect::debug::pause().await.err().map_or("resumed".to_owned(), |e| e.kind().to_owned());
    Ok((infect::debug::is_debug_mode(), pause))
}

fn endpoints() -> Endpoints {
    Endpoints::new()
        .serve(DOUBLE, double)
        .serve(FAIL, fail)
        .serve(SLOW, slow)
        .serve(ON_HOST, on_host)
        .serve(RELAY, relay)
        .serve(SUM, sum)
        .serve(ECHO, seed_echo::guest_to_host_echo_server)
        .serve(CLAIM, claim)
        .serve(PANIC, panics)
        .serve(DEBUG_MODE, debug_mode)
}

fn opts() -> ActorOpts {
    ActorOpts::new().enable_modules([NS])
}

/// The outcome as the comparison sees it: the value, or the error's kind (a remote error's
/// with the remote kind).
fn describe<T: std::fmt::Debug>(r: &Result<T>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(Error::RemoteActor(re)) => format!("err RemoteActor({})", re.boxed_type),
        Err(e) => format!("err {}", e.kind()),
    }
}

type Scenario = fn() -> Pin<Box<dyn Future<Output = Result<String>>>>;

macro_rules! scenarios {
    ($($f:ident),* $(,)?) => {
        vec![$((stringify!($f), (|| Box::pin($f()) as Pin<Box<dyn Future<Output = Result<String>>>>) as Scenario)),*]
    };
}

/// Opens an actor nursery around `body`, the nursery's own cancellation read as `Cancelled`.
async fn tree<T>(body: impl AsyncFnOnce(&actor::ActorNursery) -> Result<T>) -> Result<T> {
    actor::open_nursery(body).await?.ok_or(Error::Cancelled)
}

async fn portal_run() -> Result<String> {
    tree(async |an| {
        let p = an.start_actor("doubler", opts()).await?;
        let v = p.run(DOUBLE, &21).await?;
        let graceful = p.cancel_actor().await?;
        Ok(format!("{v} graceful={graceful}"))
    })
    .await
}

async fn remote_error() -> Result<String> {
    let r = tree(async |an| {
        let p = an.start_actor("failer", opts()).await?;
        p.run(FAIL, &()).await
    })
    .await;
    Ok(describe(&r))
}

async fn endpoint_panic() -> Result<String> {
    let r = tree(async |an| {
        let p = an.start_actor("panicker", opts()).await?;
        let r = p.run(PANIC, &()).await;
        // It keeps serving after the panic.
        let v = p.run(DOUBLE, &1).await?;
        p.cancel_actor().await?;
        Ok((describe(&r), v))
    })
    .await?;
    Ok(format!("{} then {}", r.0, r.1))
}

async fn context_stream() -> Result<String> {
    tree(async |an| {
        let p = an.start_actor("summer", opts()).await?;
        let (first, echoed, total) = p
            .open_context(SUM, &10, async |ctx, first| {
                let echoed = ctx
                    .open_stream(async |stream| {
                        let mut back = Vec::new();
                        for v in 1..=5u64 {
                            stream.send(&v).await?;
                            back.push(stream.receive::<u64>().await?);
                        }
                        Ok(back)
                    })
                    .await?;
                let total: u64 = ctx.wait_for_result().await?;
                Ok((first, echoed, total))
            })
            .await?;
        p.cancel_actor().await?;
        Ok(format!("started {first} echoed {echoed:?} total {total}"))
    })
    .await
}

async fn cancel_call() -> Result<String> {
    tree(async |an| {
        let p = an.start_actor("sleeper", opts()).await?;
        let t0 = guest::current_time();
        let r = guest::move_on_after(Duration::from_millis(20), p.run(SLOW, &1)).await?;
        let waited = guest::current_time().saturating_duration_since(t0) >= Duration::from_millis(20);
        let graceful = p.cancel_actor().await?;
        Ok(format!("{r:?} waited={waited} graceful={graceful}"))
    })
    .await
}

async fn infected_run_task() -> Result<String> {
    tree(async |an| {
        let p = an.start_actor("infected", opts().infect_host(true)).await?;
        let v = p.run(ON_HOST, &41).await?;
        p.cancel_actor().await?;
        Ok(format!("{v}"))
    })
    .await
}

async fn not_infected() -> Result<String> {
    let r = tree(async |an| {
        let p = an.start_actor("plain", opts()).await?;
        p.run(ON_HOST, &1).await
    })
    .await;
    Ok(describe(&r))
}

async fn grandchild() -> Result<String> {
    tree(async |an| {
        let p = an.start_actor("relay", opts()).await?;
        let v = p.run(RELAY, &21).await?;
        p.cancel_actor().await?;
        Ok(format!("{v}"))
    })
    .await
}

async fn one_cancels_all() -> Result<String> {
    let r = tree(async |an| {
        let _sleeper = an.start_actor("sleeper", opts()).await?;
        let failing = an.run_in_actor(FAIL, &(), opts().name("failing")).await?;
        let _ = failing;
        guest::sleep(Duration::from_secs(3600)).await?;
        Ok(())
    })
    .await;
    Ok(describe(&r))
}

/// The seed's echo: an infected child, a linked pair inside it, 100 values each way.
async fn echo_100() -> Result<String> {
    echo(100).await.map(|n| format!("{n} echoed"))
}

async fn echo(n: u64) -> Result<u64> {
    tree(async |an| {
        let p = an.start_actor("host_server", opts().infect_host(true)).await?;
        let count = p
            .open_context(ECHO, &(), async |ctx, first| {
                if first != "start" {
                    return Err(Error::user(WidgetBroke));
                }
                ctx.open_stream(async |stream| {
                    for i in 0..n {
                        stream.send(&i).await?;
                        let back: u64 = stream.receive().await?;
                        if back != i {
                            return Err(Error::user(WidgetBroke));
                        }
                    }
                    Ok(n)
                })
                .await
            })
            .await?;
        p.cancel_actor().await?;
        Ok(count)
    })
    .await
}

fn scenario_list() -> Vec<(&'static str, Scenario)> {
    scenarios![
        portal_run,
        remote_error,
        endpoint_panic,
        context_stream,
        cancel_call,
        infected_run_task,
        not_infected,
        grandchild,
        one_cancels_all,
        echo_100,
    ]
}

// ---------------------------------------------------------------------------- the cases

/// Every scenario as processes (in this root) and then simulated on ten seeds: the same
/// outcome each time, nothing left behind.
fn same_outcomes(proc_outcomes: &[(String, String)]) -> Check {
    for (name, want) in proc_outcomes.iter().filter(|(n, _)| n != "who_claimed x20") {
        let (_, scenario) = scenario_list().into_iter().find(|(n, _)| n == name).expect("listed");
        for seed in 0..10 {
            let r = Sim::new(seed).run(endpoints(), scenario());
            let got = r.outcome.clone().unwrap_or_else(|e| format!("error {}: {e}", e.kind()));
            ensure!(&got == want, "{name}, seed {seed}: simulated {got:?}, as processes {want:?}\n{r}");
            ensure!(r.leftovers.is_empty(), "{name}, seed {seed}: left {:?}", r.leftovers);
        }
    }
    Ok(())
}

/// Runs the scenarios as processes, in an actor root: each outcome, and nothing left behind;
/// then the planted bug's program 20 times (it never shows as processes).
async fn process_outcomes() -> Result<Vec<(String, String)>> {
    let mut claims = Vec::new();
    for _ in 0..20 {
        claims.push(who_claimed().await?);
    }
    let mut out = vec![("who_claimed x20".to_owned(), format!("{:?}", claims.iter().all(|c| c == "first")))];
    for (name, scenario) in scenario_list() {
        let fds = open_fds();
        let got = match scenario().await {
            Ok(s) => s,
            Err(e) => format!("error {}: {e}", e.kind()),
        };
        let kids = children_of(us());
        if !kids.is_empty() || open_fds() != fds {
            return Err(Error::user(std::io::Error::other(format!("{name} left {kids:?} / descriptors behind"))));
        }
        out.push((name.to_owned(), got));
    }
    Ok(out)
}

/// The outcomes the scenarios must have (as processes, and so simulated).
fn expected() -> Vec<(&'static str, &'static str)> {
    vec![
        ("who_claimed x20", "true"),
        ("portal_run", "42 graceful=true"),
        ("remote_error", "err RemoteActor(sim::WidgetBroke)"),
        ("endpoint_panic", "err RemoteActor(Panic) then 2"),
        ("context_stream", "started 10 echoed [2, 4, 6, 8, 10] total 15"),
        ("cancel_call", "None waited=true graceful=true"),
        ("infected_run_task", "42"),
        ("not_infected", "err RemoteActor(NotInfected)"),
        ("grandchild", "42"),
        ("one_cancels_all", "err RemoteActor(sim::WidgetBroke)"),
        ("echo_100", "100 echoed"),
    ]
}

/// The invariants of one faulty echo run.
fn echo_invariants(r: &Report<u64>) -> std::result::Result<(), String> {
    if !r.leftovers.is_empty() {
        return Err(format!("actors outlived the root: {:?}", r.leftovers));
    }
    match &r.outcome {
        Ok(50) => Ok(()),
        Ok(n) => Err(format!("echoed {n} of 50")),
        // Without a fault nothing may fail.
        Err(e) if r.faults_injected() == 0 => Err(format!("failed without a fault: {e}")),
        // A bit flipped in transit: frames carry no checksum, so the frame may still decode, as
        // another message or another value (any error may follow), or be skipped and reported
        // (the wire layer's rule), its message lost, so that the call waiting for it waits on and
        // the world stops as stalled. Any failure is explained; nothing may be left running.
        Err(_) if r.events.iter().any(|e| e.contains(" fault: corrupt ")) => Ok(()),
        Err(Error::SimulationStalled { .. }) => Err("stalled without a corrupted frame".into()),
        // A failure reaches the root with a kind a fault explains.
        Err(e) => {
            let kind = match e {
                Error::RemoteActor(re) => re.boxed_type.clone(),
                e => e.kind().to_owned(),
            };
            const EXPLAINED: &[&str] = &[
                "ActorDied",
                "Interrupted",
                "ContextCancelled",
                "Corrupt",
                "Undecodable",
                "Truncated",
                "Decode",
                "UnexpectedMessage",
                "StartTimeout",
                "ProtocolMismatch",
                "HostTaskExited",
                "Cancelled",
                "sim::WidgetBroke",
            ];
            if EXPLAINED.contains(&kind.as_str()) {
                Ok(())
            } else {
                Err(format!("failed with an unexplained kind {kind}: {e}"))
            }
        }
    }
}

fn echo_faults() -> Faults {
    Faults::all().split(0.3).corrupt(0.0005)
}

/// 1,000 seeds of the echo with random faults: the invariants hold every time, and the faults
/// did happen (most runs met one; some still echoed everything).
fn sweep_1000_echo_seeds() -> Check {
    let stats =
        sim::sweep(0..1000, |seed| Sim::new(seed).faults(echo_faults()), endpoints, || echo(50), echo_invariants);
    if std::env::var_os("INFECT_SIM_SEED").is_none() && std::env::var_os("INFECT_SIM_SEEDS").is_none() {
        ensure!(stats.runs == 1000, "{stats:?}");
        ensure!(stats.with_faults > 500 && stats.ok > 100 && stats.ok < 1000, "{stats:?}");
    }
    println!("     {stats:?}");
    Ok(())
}

/// The planted bug's program: ask a worker actor who claimed the job; it must be "first".
async fn who_claimed() -> Result<String> {
    tree(async |an| {
        let p = an.start_actor("workers", opts()).await?;
        let w = p.run(CLAIM, &()).await?;
        p.cancel_actor().await?;
        Ok(w)
    })
    .await
}

/// As processes the program always passes (a FIFO scheduler starts the first worker first);
/// a seed sweep finds the run where the second claims the job, and the seed reproduces it.
fn planted_bug_found_by_seed() -> Check {
    let found =
        (0..100u64).find(|&seed| Sim::new(seed).run(endpoints(), who_claimed()).outcome.as_deref() == Ok("second"));
    let Some(seed) = found else { return Err("no seed in 0..100 found the ordering bug".into()) };
    // The seed reproduces it, course and all.
    let a = Sim::new(seed).run(endpoints(), who_claimed());
    let b = Sim::new(seed).run(endpoints(), who_claimed());
    ensure!(a.outcome.as_deref() == Ok("second") && b.outcome.as_deref() == Ok("second"), "{a}\n{b}");
    ensure!(a.hash == b.hash && a.events == b.events, "seed {seed} did not reproduce");
    // Other seeds let the first claim it: the bug is an interleaving, not every run.
    let right =
        (0..100u64).filter(|&s| Sim::new(s).run(endpoints(), who_claimed()).outcome.as_deref() == Ok("first")).count();
    ensure!(right > 0, "no seed let the first worker claim the job");
    println!("     the ordering bug: first found at seed {seed}; {right} of 100 seeds claimed in start order");
    Ok(())
}

/// Check mode: a deterministic program passes; one that reads something outside the seed
/// (here a counter that differs between the two runs) is reported with the first difference.
fn check_mode_reports_nondeterminism() -> Check {
    let ok = Sim::new(5).check(&endpoints(), portal_run).map_err(|e| e.to_string())?;
    ensure!(ok.outcome.as_deref() == Ok("42 graceful=true"), "{ok}");
    let runs = Rc::new(Cell::new(0u64));
    let r = Sim::new(5).check(&endpoints(), || {
        let runs = runs.clone();
        async move {
            runs.set(runs.get() + 1);
            // A sleep whose length is not the seed's: the two courses differ.
            guest::sleep(Duration::from_millis(runs.get())).await?;
            tree(async |an| {
                let p = an.start_actor("doubler", opts()).await?;
                p.run(DOUBLE, &1).await
            })
            .await
        }
    });
    match r {
        Err(Error::Nondeterministic { seed: 5, first, second, .. }) if first != second => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// `INFECT_SIM_SEED` narrows a sweep to one seed; the report names it.
fn reproduction_by_seed() -> Check {
    ensure!(sim::seeds(0..1000) == (0..1000) || std::env::var_os("INFECT_SIM_SEED").is_some(), "seeds");
    let r = Sim::new(42).faults(echo_faults()).run(endpoints(), echo(50));
    let again = Sim::new(42).faults(echo_faults()).run(endpoints(), echo(50));
    ensure!(r.repro() == "INFECT_SIM_SEED=42", "{}", r.repro());
    ensure!(r.hash == again.hash && r.events == again.events && r.steps == again.steps, "{r}\n{again}");
    ensure!(format!("{r}").starts_with("simulation seed 42 (rerun with INFECT_SIM_SEED=42)"), "{r}");
    // A different seed, a different course.
    let other = Sim::new(43).faults(echo_faults()).run(endpoints(), echo(50));
    ensure!(other.hash != r.hash, "seeds 42 and 43 ran the same course");
    Ok(())
}

/// A sweep that finds a broken invariant prints the seed and panics with it.
fn a_failing_sweep_names_its_seed() -> Check {
    if std::env::var_os("INFECT_SIM_SEED").is_some() {
        println!("     (skipped: INFECT_SIM_SEED narrows every sweep to one seed)");
        return Ok(());
    }
    // The sweep prints the failing report to stderr and panics; keep the panic quiet here.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let caught = std::panic::catch_unwind(|| {
        sim::sweep(0..100, Sim::new, endpoints, who_claimed, |r| match r.outcome.as_deref() {
            Ok("first") => Ok(()),
            other => Err(format!("got {other:?}")),
        })
    });
    std::panic::set_hook(hook);
    let msg = match caught {
        Err(p) => p.downcast_ref::<String>().cloned().unwrap_or_default(),
        Ok(stats) => return Err(format!("the sweep passed: {stats:?}")),
    };
    ensure!(msg.contains("rerun it with INFECT_SIM_SEED="), "{msg}");
    Ok(())
}

/// The guard rails: a real descriptor, the wall clock, a real process, a wake from another
/// thread; and a stall.
fn guard_rails() -> Check {
    let outside = |r: &Result<()>, what: &str| match r {
        Err(Error::OutsideSimulation { what: w }) if w.contains(what) => Ok(()),
        other => Err(format!("wanted OutsideSimulation naming {what:?}, got {other:?}")),
    };
    let infected = || Sim::new(1).root(RootOpts::new().infect_host(true));
    let sock = infected().run(endpoints(), async {
        to_host::run_task(async {
            let addr = "127.0.0.1:0".parse().expect("an address");
            host::net::TcpListener::bind(addr).map(drop).map_err(Error::from)
        })
        .await
    });
    outside(&sock.outcome, "a real file descriptor")?;
    let clock = Sim::new(1).run(endpoints(), async {
        let _ = infect::time::MonotonicClock::new();
        Ok(())
    });
    outside(&clock.outcome, "the wall clock")?;
    let nested = Sim::new(1).run(endpoints(), async { guest::run(async { Ok(()) }) });
    outside(&nested.outcome, "the wall clock")?;
    let launcher = Sim::new(1).run(endpoints(), async {
        tree(async |an| an.start_actor("ssh", opts().launcher(["ssh", "elsewhere"])).await.map(drop)).await
    });
    outside(&launcher.outcome, "ActorOpts::launcher")?;
    let program = Sim::new(1).run(endpoints(), async {
        tree(async |an| an.start_actor("other", opts().program("/bin/true")).await.map(drop)).await
    });
    outside(&program.outcome, "ActorOpts::program")?;
    // A handle for other threads: there are none in a simulation.
    let thread = Sim::new(1).run(endpoints(), async {
        let h = host::Host::builder().clock(Rc::new(infect::time::VirtualClock::new())).build()?;
        let _for_a_thread = h.remote();
        Ok(())
    });
    outside(&thread.outcome, "a Remote")?;
    let stalled = Sim::new(1).run(endpoints(), async {
        let (_tx, rx) = futures::channel::oneshot::channel::<()>();
        guest::CancelScope::shielded().run(guest::cancellable(rx)).await.map(drop)
    });
    ensure!(matches!(&stalled.outcome, Err(Error::SimulationStalled { seed: 1, .. })), "stall: {:?}", stalled.outcome);
    let limit = Sim::new(1)
        .time_limit(Duration::from_secs(10))
        .run(endpoints(), async { guest::sleep(Duration::from_secs(60)).await });
    ensure!(matches!(&limit.outcome, Err(Error::SimulationStalled { .. })), "limit: {:?}", limit.outcome);
    Ok(())
}

/// Faults reach where they should: a killed child is `ActorDied` in its parent, with the
/// signal; a child whose parent was killed sees it and ends (nothing left).
fn a_kill_is_actor_died_and_parent_death_reaches_grandchildren() -> Check {
    let mut died = 0;
    let mut orphaned = 0;
    for seed in 0..200 {
        let r = Sim::new(seed).faults(Faults::none().kill(0.02)).run(endpoints(), grandchild());
        ensure!(r.leftovers.is_empty(), "seed {seed}: left {:?}\n{r}", r.leftovers);
        let killed_relay = r.events.iter().any(|e| e.ends_with("fault: kill 'relay'"));
        if killed_relay && r.events.iter().any(|e| e.contains("signal 15 to 'grandchild'")) {
            orphaned += 1;
        }
        let killed = |name: &str| r.events.iter().any(|e| e.ends_with(&format!("fault: kill '{name}'")));
        match &r.outcome {
            Ok(s) => ensure!(s == "42", "seed {seed}: {s}"),
            // The child itself died: its parent (the root) says so, with the signal.
            Err(Error::ActorDied { actor, signal: Some(9), code: None, .. }) if actor == "relay" => {
                ensure!(killed_relay, "seed {seed}: relay died unkilled\n{r}");
                died += 1;
            }
            // The grandchild died: the relay's call failed with it, and the root hears of it
            // as the relay's error.
            Err(Error::RemoteActor(re)) if re.boxed_type == "ActorDied" && re.src.name == "relay" => {
                ensure!(killed("grandchild"), "seed {seed}: the grandchild died unkilled\n{r}");
                died += 1;
            }
            Err(e) => return Err(format!("seed {seed}: {e:?}\n{r}")),
        }
    }
    ensure!(died > 0 && orphaned > 0, "kills that failed the root: {died}, orphaned grandchildren: {orphaned}");
    Ok(())
}

/// A child killed while the root streams to it: the root's stream fails with the child's death
/// (`ActorDied`, with the signal), never a bare `Closed` from the broken pipe, whichever side of
/// the echo the kill hit.
fn a_stream_to_a_killed_child_fails_with_its_death() -> Check {
    let mut died = 0;
    for seed in 0..300 {
        let r = Sim::new(seed).faults(Faults::none().kill(0.01)).run(endpoints(), echo(50));
        ensure!(r.leftovers.is_empty(), "seed {seed}: left {:?}", r.leftovers);
        match &r.outcome {
            Ok(50) => {}
            Err(Error::ActorDied { actor, code: None, signal: Some(9), .. }) if actor == "host_server" => died += 1,
            other => return Err(format!("seed {seed}: {other:?}\n{r}")),
        }
    }
    ensure!(died > 20, "only {died} of 300 runs killed the echo server");
    Ok(())
}

/// Killed infected actors leave nothing behind in the process that simulated them: each had a
/// host of its own (with the reactor's descriptors), dropped mid-run with its guest; wakes of
/// its guest that came after the drop used to be queued on the dead host, where they kept it,
/// and its descriptors, alive for ever (one run in six here).
fn killed_infected_actors_leak_no_descriptor() -> Check {
    let before = open_fds();
    let mut killed = 0;
    for seed in 0..300 {
        let r = Sim::new(seed).faults(Faults::none().kill(0.01)).run(endpoints(), echo(50));
        killed += usize::from(r.outcome.is_err());
    }
    let after = open_fds();
    ensure!(killed > 20, "only {killed} runs killed the echo server");
    ensure!(after == before, "descriptors before {before:?}, after {after:?}");
    Ok(())
}

/// A simulated infected root uses `to_host` as a process root does.
fn an_infected_root() -> Check {
    let r = Sim::new(3).root(RootOpts::new().name("boss").infect_host(true)).run(endpoints(), async {
        let me = actor::current_actor();
        let v = to_host::run_task(async { Ok(5) }).await?;
        Ok(format!("{} {} {v}", me.name(), me.is_infected()))
    });
    ensure!(r.outcome.as_deref() == Ok("boss true 5"), "{r}");
    Ok(())
}

/// `RootOpts::debug_mode` turns on debug mode in a simulated tree as in processes: the root
/// has it, a child inherits it unless its `ActorOpts` say otherwise; `debug::pause` there has
/// no terminal to take and fails with `OutsideSimulation`. The dump is each actor's own (the
/// simulated actors share a thread): the root lists its two children, each child's subtree,
/// asked over its connection, lists none of its own; and the text is the seed's.
fn debug_mode_is_tree_wide() -> Check {
    type Seen = ((bool, String), (bool, String));
    let run = |debug: bool| {
        Sim::new(4).root(RootOpts::new().debug_mode(debug)).run(endpoints(), async {
            let me = infect::debug::is_debug_mode();
            tree(async |an| {
                let inherits = an.start_actor("inherits", opts()).await?;
                let opted_out = an.start_actor("opted_out", opts().debug_mode(false)).await?;
                let dump = infect::debug::dump_tree().await?;
                let seen: Seen = (inherits.run(DEBUG_MODE, &()).await?, opted_out.run(DEBUG_MODE, &()).await?);
                Ok((me, seen, dump))
            })
            .await
        })
    };
    let not_debug = || (false, "NotDebugMode".to_owned());
    let (on, off) = (run(true), run(false));
    let Ok((true, seen, dump)) = &on.outcome else { return Err(format!("{on}")) };
    ensure!(*seen == ((true, "OutsideSimulation".to_owned()), not_debug()), "{seen:?}");
    let Ok((false, seen, _)) = &off.outcome else { return Err(format!("{off}")) };
    ensure!(*seen == (not_debug(), not_debug()), "{seen:?}");
    ensure!(on.leftovers.is_empty() && off.leftovers.is_empty(), "{on}\n{off}");
    for (kid, mode) in [("inherits\" (pid 1001", ", debug mode"), ("opted_out\" (pid 1002", "")] {
        let lines = format!(
            "    \"{kid}): serving, no open calls\n      actor \"{kid}{mode})\n        serving \"root\": no calls\n"
        );
        ensure!(dump.contains(&lines), "no {lines:?} in\n{dump}");
    }
    ensure!(dump.matches("child actors:").count() == 1, "{dump}");
    let again = run(true);
    ensure!(matches!(&again.outcome, Ok((_, _, d)) if d == dump) && again.hash == on.hash, "{again}");
    Ok(())
}

fn main() -> ExitCode {
    // The planted endpoint panic and the guard rails' panics are expected: keep them out of the
    // output (the actor's own hook, which a child installs, chains to this one).
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let planted = info.payload().downcast_ref::<&str>() == Some(&"the endpoint panicked");
        let guard = info.payload().downcast_ref::<String>().is_some_and(|s| s.starts_with("infect::sim: "));
        if !planted && !guard {
            default(info);
        }
    }));
    if std::env::var_os("INFECT_ACTOR_PIPE").is_some() {
        return actor::main(endpoints(), async { Ok(()) });
    }
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let mut failed = 0;
    let mut passed = 0;
    let mut record = |name: &str, c: Check| match c {
        Ok(()) => {
            passed += 1;
            println!("ok   {name}");
        }
        Err(why) => {
            failed += 1;
            println!("FAIL {name}: {why}");
        }
    };
    if wanted("same_outcomes") || wanted("processes") {
        match actor::run(endpoints(), process_outcomes()) {
            Ok(outcomes) => {
                let want: Vec<(String, String)> =
                    expected().into_iter().map(|(n, o)| (n.to_owned(), o.to_owned())).collect();
                record(
                    "processes: each scenario's outcome",
                    if outcomes == want { Ok(()) } else { Err(format!("{outcomes:#?}")) },
                );
                record("same_outcomes: simulated as processes, ten seeds each", same_outcomes(&outcomes));
            }
            Err(e) => record("processes", Err(e.to_string())),
        }
    }
    type Case = (&'static str, fn() -> Check);
    let cases: Vec<Case> = vec![
        ("sweep_1000_echo_seeds", sweep_1000_echo_seeds),
        ("planted_bug_found_by_seed", planted_bug_found_by_seed),
        ("check_mode_reports_nondeterminism", check_mode_reports_nondeterminism),
        ("reproduction_by_seed", reproduction_by_seed),
        ("a_failing_sweep_names_its_seed", a_failing_sweep_names_its_seed),
        ("guard_rails", guard_rails),
        (
            "a_kill_is_actor_died_and_parent_death_reaches_grandchildren",
            a_kill_is_actor_died_and_parent_death_reaches_grandchildren,
        ),
        ("a_stream_to_a_killed_child_fails_with_its_death", a_stream_to_a_killed_child_fails_with_its_death),
        ("killed_infected_actors_leak_no_descriptor", killed_infected_actors_leak_no_descriptor),
        ("an_infected_root", an_infected_root),
        ("debug_mode_is_tree_wide", debug_mode_is_tree_wide),
    ];
    for (name, case) in cases {
        if wanted(name) {
            record(name, case());
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
