//! Deterministic simulation: a whole actor tree in one thread, its course fixed by one seed,
//! with faults (FoundationDB's simulation, madsim's and turmoil's for process actors).
//!
//! The program is the one that runs as processes: the same [`Endpoints`] and the same root
//! future. [`Sim::run`] runs them in a simulated world instead of processes:
//! - **Every actor in this thread**, each with its own kernel state: its own guest run, and its
//!   own host under it if it is infected ([`ActorOpts::infect_host`](crate::actor::ActorOpts::infect_host)).
//!   `start_actor` makes a simulated child instead of a process: it boots as a process does
//!   (reads its `SpawnSpec` from its pipe, then serves), has a pid of its own (from 1000 up),
//!   and exits with a status that its parent's supervisor reaps through the same ladder.
//! - **The bytes really travel**: the connections are in-memory pipe pairs (64 KiB per
//!   direction, as a Linux pipe) carrying the same frames as the real pipes.
//! - **One virtual clock** that jumps to the next deadline whenever nothing can run, so a run
//!   of minutes of timeouts takes milliseconds.
//! - **One seeded scheduler** choosing which actor steps next (one guest tick, or one pass of
//!   its host), and every fault ([`Faults`]), from the one seed. Each actor's guest also
//!   permutes its batches from the seed.
//!
//! # Reproduction
//! A run returns a [`Report`]: the root's outcome, the trace of the world's events (spawns,
//! signals, faults, exits; time-stamped in virtual nanoseconds), the trace hash (every step
//! and every byte written included), the virtual time and the step count. The same seed gives
//! the same report, byte for byte: [`Sim::check`] runs a seed twice and fails with
//! [`Error::Nondeterministic`] if the two hashes differ. [`sweep`] runs many seeds and, at the
//! first that breaks the caller's invariants, prints the seed as `INFECT_SIM_SEED=<seed>` and
//! the trace, and panics; with `INFECT_SIM_SEED` set, [`seeds`] (and so `sweep`) runs that seed
//! only.
//!
//! # Guard rails
//! Code inside a simulation that reaches outside it ends the run with
//! [`Error::OutsideSimulation`], naming what it did and in which actor, never a silent hang:
//! a real file descriptor (a socket, a pipe: [`reactor::fd::AsyncFd`](crate::reactor::fd::AsyncFd)),
//! a real wait on the reactor, the wall clock ([`MonotonicClock`](crate::time::MonotonicClock),
//! and so [`Host::new`](crate::host::Host::new) and [`guest::run`](crate::guest::run)), a real
//! process (also through [`ActorOpts::program`](crate::actor::ActorOpts::program) or
//! [`ActorOpts::launcher`](crate::actor::ActorOpts::launcher)), and a wake from another thread.
//! A world where nothing can run, no timer is pending and the root has not finished (a wait
//! on something outside it) ends with [`Error::SimulationStalled`], as does one that runs past
//! its [time limit](Sim::time_limit). What the crate cannot see is not caught:
//! `std::time::Instant::now()` called by user code, or a thread that never wakes a task.
//!
//! # What differs from processes
//! - **Identities** are the world's: pids from 1000 up (the root 1000), uids `sim<seed>-<n>`.
//! - **One thread, one address space.** A `thread_local!` or a `static` of the program is shared
//!   by every simulated actor (each process has its own); state an endpoint keeps there must be
//!   keyed by the actor (its pid, [`current_actor`](crate::actor::current_actor)). Calling
//!   `std::process::exit` ends the whole test.
//! - **The root's exit.** A root that fails after an interrupt exits a process with `128 +
//!   signo`; in a simulation its error is the report's outcome.
//! - **Panics.** A panic in an endpoint is caught at its task's boundary, as in a process built
//!   with unwinding: the call fails with kind `Panic`. One that escapes every boundary (a
//!   panicking `Drop`, say) kills its actor as `SIGABRT` would (its parent sees
//!   `ActorDied { signal: Some(6) }`, without the text a `panic = "abort"` process's hook
//!   relays); one in the root tears the world down and goes on from [`Sim::run`].
//! - **Debug mode** ([`RootOpts::debug_mode`](crate::actor::RootOpts::debug_mode)) is
//!   tree-wide as in processes (children inherit it unless their `ActorOpts` say otherwise),
//!   with crash reports and the dump; [`debug::pause`](crate::debug::pause) has no terminal to
//!   take and fails with [`Error::OutsideSimulation`].
//! - **Orphans.** A child whose parent was killed gets its death signal (`SIGTERM`) and
//!   end-of-file, as a process does, and ends within its grace period; the world lets it finish
//!   after the root has (processes would be reparented to init meanwhile).
//!
//! # Example: a user's test
//!
//! ```
//! use infect::actor::{self, ActorOpts, Endpoints, Function};
//! use infect::sim::{self, Faults, Sim};
//! use infect::{Error, guest};
//! use std::time::Duration;
//!
//! const DOUBLE: Function<u64, u64> = Function::new("math", "double");
//!
//! async fn double(x: u64) -> infect::Result<u64> {
//!     guest::sleep(Duration::from_millis(5)).await?;
//!     Ok(2 * x)
//! }
//!
//! async fn root() -> infect::Result<u64> {
//!     actor::open_nursery(async |an| {
//!         let p = an.start_actor("doubler", ActorOpts::new().enable_modules(["math"])).await?;
//!         let v = p.run(DOUBLE, &21).await?;
//!         p.cancel_actor().await?;
//!         Ok(v)
//!     })
//!     .await?
//!     .ok_or(Error::Cancelled)
//! }
//!
//! let endpoints = || Endpoints::new().serve(DOUBLE, double);
//!
//! // One seed, no faults: the same program as with processes, on the virtual clock.
//! let report = Sim::new(7).run(endpoints(), root());
//! assert_eq!(report.outcome, Ok(42));
//! assert!(report.leftovers.is_empty());
//! assert!(report.virtual_time >= Duration::from_millis(5));
//!
//! // The same seed, the same course: checked.
//! let checked = Sim::new(7).check(&endpoints(), root)?;
//! assert_eq!(checked.hash, report.hash);
//!
//! // Many seeds with faults: each run must end with the value or an error of a kind the
//! // faults explain, and leave nothing running.
//! let faults = Faults::none().split(0.3).delay(0.1).kill(0.01);
//! let stats = sim::sweep(0..50, |seed| Sim::new(seed).faults(faults.clone()), endpoints, root, |r| {
//!     match &r.outcome {
//!         Ok(v) if *v == 42 => Ok(()),
//!         Err(Error::ActorDied { .. }) if r.faults_injected() > 0 => Ok(()),
//!         other => Err(format!("unexpected outcome {other:?}")),
//!     }
//! });
//! assert_eq!(stats.runs, 50);
//! # Ok::<(), infect::Error>(())
//! ```
//!
//! A test file of processes and one of simulations can share the program: `tests/sim.rs`
//! runs the crate's own scenarios both ways and compares the outcomes.

mod faults;
mod world;

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::time::Duration;

pub use faults::Faults;

use crate::actor::Endpoints;
use crate::actor::for_sim::RootOpts;
use crate::{Error, Result};

use world::{RunEnd, WorldState};

/// The prefix of the panic a guard rail raises inside a simulation (the world turns it into
/// [`Error::OutsideSimulation`]).
pub(crate) const GUARD: &str = crate::cx::OUTSIDE_SIMULATION;

thread_local! {
    /// The world running on this thread, for [`buggify!`](crate::buggify!).
    static WORLD: RefCell<Weak<WorldState>> = const { RefCell::new(Weak::new()) };
}

/// A simulated world to run a program in: its seed, its faults, its root's options and its
/// time limit. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Sim {
    seed: u64,
    faults: Faults,
    root: RootOpts,
    time_limit: Duration,
    trace_steps: bool,
}

impl Sim {
    /// A world on `seed`, without faults, the root named `"root"`, a time limit of one hour of
    /// virtual time.
    pub fn new(seed: u64) -> Sim {
        Sim {
            seed,
            faults: Faults::none(),
            root: RootOpts::new(),
            time_limit: Duration::from_secs(3600),
            trace_steps: false,
        }
    }

    /// The faults to inject.
    pub fn faults(mut self, faults: Faults) -> Sim {
        self.faults = faults;
        self
    }

    /// The root's options (its name; infected or not), as for
    /// [`actor::run_with`](crate::actor::run_with).
    pub fn root(mut self, opts: RootOpts) -> Sim {
        self.root = opts;
        self
    }

    /// Ends a run that goes on past `limit` of virtual time ([`Error::SimulationStalled`]).
    pub fn time_limit(mut self, limit: Duration) -> Sim {
        self.time_limit = limit;
        self
    }

    /// Records every step (which actor ran, when) in the report's events too, not only in its
    /// hash: the whole schedule of a seed, to read when hunting what a seed does.
    ///
    /// ```
    /// use infect::sim::Sim;
    /// let r = Sim::new(1).trace_steps(true).run(infect::actor::Endpoints::new(), async { Ok(()) });
    /// assert!(r.events.iter().any(|e| e.ends_with("step 'root'")));
    /// ```
    pub fn trace_steps(mut self, on: bool) -> Sim {
        self.trace_steps = on;
        self
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Runs `root` as the root actor of a simulated world whose actors serve `endpoints`, to the
    /// end: the root's outcome and the course of the world. Nothing of the world is left when
    /// this returns (an actor still running when the root finished, or when the run could not
    /// go on, is killed and listed in [`Report::leftovers`]). Inside an actor runtime or another
    /// simulation the outcome is [`Error::OutsideSimulation`].
    ///
    /// # Panics
    /// If the root panics (the world is torn down first), the panic goes on from here.
    pub fn run<T: 'static>(&self, endpoints: Endpoints, root: impl Future<Output = Result<T>> + 'static) -> Report<T> {
        let world = WorldState::new(self.seed, self.faults.clone(), endpoints, self.trace_steps);
        let nested = crate::cx::in_simulation() || crate::actor::try_current_actor().is_some();
        let out: Rc<RefCell<Option<Result<T>>>> = Rc::new(RefCell::new(None));
        let mut leftovers = Vec::new();
        let mut failure = None;
        if nested {
            failure =
                Some(Error::OutsideSimulation { what: "Sim::run inside an actor runtime or a simulation".into() });
        } else {
            let _sim = crate::cx::enter_simulation();
            let _world = WorldGuard::enter(&world);
            let (name, infected, debug_mode) = self.root.parts();
            match world.start_root(name, infected, debug_mode, root, out.clone()) {
                Err(e) => failure = Some(e),
                Ok(()) => match world.run(self.time_limit) {
                    Ok(()) => {}
                    Err(RunEnd::Leftovers(names)) => leftovers = names,
                    Err(RunEnd::Stopped(why)) => {
                        failure = Some(Error::SimulationStalled {
                            seed: self.seed,
                            at: world.now().saturating_duration_since(crate::time::Instant::ZERO),
                            why,
                            running: world.live_names(),
                        })
                    }
                    Err(RunEnd::Outside(what)) => failure = Some(Error::OutsideSimulation { what }),
                    Err(RunEnd::Panicked(p)) => {
                        world.kill_all();
                        std::panic::resume_unwind(p);
                    }
                },
            }
            world.kill_all();
        }
        let outcome = match failure {
            Some(e) => Err(e),
            None => out.borrow_mut().take().unwrap_or(Err(Error::GuestRunAbandoned)),
        };
        Report {
            outcome,
            seed: self.seed,
            events: world.take_events(),
            hash: world.hash(),
            virtual_time: world.now().saturating_duration_since(crate::time::Instant::ZERO),
            steps: world.steps(),
            actors: world.spawned(),
            leftovers,
        }
    }

    /// Runs the world twice on this seed (`root` makes the root future each time) and compares
    /// the two courses: the first report if their trace hashes agree, else
    /// [`Error::Nondeterministic`] with the first event that differs.
    pub fn check<T: 'static, F: Future<Output = Result<T>> + 'static>(
        &self,
        endpoints: &Endpoints,
        root: impl Fn() -> F,
    ) -> Result<Report<T>> {
        let first = self.run(endpoints.clone(), root());
        let second = self.run(endpoints.clone(), root());
        if first.hash == second.hash {
            return Ok(first);
        }
        let at = first.events.iter().zip(&second.events).take_while(|(a, b)| a == b).count();
        Err(Error::Nondeterministic {
            seed: self.seed,
            first: first.hash,
            second: second.hash,
            at,
            left: first.events.get(at).cloned().unwrap_or_default(),
            right: second.events.get(at).cloned().unwrap_or_default(),
        })
    }
}

struct WorldGuard(Weak<WorldState>);

impl WorldGuard {
    fn enter(world: &Rc<WorldState>) -> WorldGuard {
        WorldGuard(WORLD.with(|w| w.replace(Rc::downgrade(world))))
    }
}

impl Drop for WorldGuard {
    fn drop(&mut self) {
        let prev = std::mem::take(&mut self.0);
        WORLD.with(|w| *w.borrow_mut() = prev);
    }
}

/// The course of one simulated run (see [`Sim::run`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct Report<T> {
    /// The root's outcome, or why the run could not finish.
    pub outcome: Result<T>,
    /// The seed.
    pub seed: u64,
    /// The world's events, in order, each `"<virtual ns> <what>"`: spawns, the start of each
    /// actor's serving, signals, faults, `buggify!` sites activated, exits.
    pub events: Vec<String>,
    /// The hash of the whole course: every step (its time and actor) and every byte written.
    pub hash: u64,
    /// The virtual time at the end.
    pub virtual_time: Duration,
    /// How many actor steps ran.
    pub steps: u64,
    /// How many actors lived in the world, the root included.
    pub actors: usize,
    /// Actors still running when the run ended: an actor its nursery did not reap before the
    /// root finished, or an orphan (its parent was killed) still running 30 s of virtual time
    /// after that; all are killed then. An empty list is the invariant "no actor outlives its
    /// nursery, and nothing is left running".
    pub leftovers: Vec<String>,
}

impl<T> Report<T> {
    /// How many faults were injected.
    pub fn faults_injected(&self) -> usize {
        self.events.iter().filter(|e| e.contains(" fault: ")).count()
    }

    /// The environment setting that reruns this seed: `INFECT_SIM_SEED=<seed>`.
    pub fn repro(&self) -> String {
        format!("INFECT_SIM_SEED={}", self.seed)
    }
}

impl<T: fmt::Debug> fmt::Display for Report<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "simulation seed {} (rerun with {}): {:?}", self.seed, self.repro(), self.outcome)?;
        writeln!(
            f,
            "  {} actors, {} steps, {:?} of virtual time, trace hash {:#018x}",
            self.actors, self.steps, self.virtual_time, self.hash
        )?;
        if !self.leftovers.is_empty() {
            writeln!(f, "  still running at the end: {}", self.leftovers.join(", "))?;
        }
        for e in &self.events {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// The seeds a sweep runs: `default`, or only `INFECT_SIM_SEED` when it is set (a
/// reproduction), or `0..INFECT_SIM_SEEDS` when that is set.
pub fn seeds(default: Range<u64>) -> Range<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(seed) = var("INFECT_SIM_SEED") {
        return seed..seed + 1;
    }
    match var("INFECT_SIM_SEEDS") {
        Some(n) => 0..n,
        None => default,
    }
}

/// What a [`sweep`] ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepStats {
    /// Runs made.
    pub runs: u64,
    /// Runs in which at least one fault was injected.
    pub with_faults: u64,
    /// Runs whose root returned `Ok`.
    pub ok: u64,
    /// Actor steps, all runs together.
    pub steps: u64,
    /// How the runs ended: `"ok"` or the error's kind (a remote error's remote kind), and how
    /// many ended so.
    pub outcomes: std::collections::BTreeMap<String, u64>,
}

/// Runs `root` in the world `sim(seed)` makes for every seed of [`seeds(range)`](seeds),
/// and checks each [`Report`] with `check`; at the first failure (an `Err` from `check`, or
/// actors left running), prints the report (seed, `INFECT_SIM_SEED=…`, trace) to stderr and
/// panics with the seed. With `INFECT_SIM_CHECK=1` in the environment every seed runs twice
/// and a seed whose two runs differ fails as [`Error::Nondeterministic`] ([`Sim::check`]).
pub fn sweep<T: fmt::Debug + 'static, F: Future<Output = Result<T>> + 'static>(
    range: Range<u64>,
    sim: impl Fn(u64) -> Sim,
    endpoints: impl Fn() -> Endpoints,
    root: impl Fn() -> F,
    check: impl Fn(&Report<T>) -> std::result::Result<(), String>,
) -> SweepStats {
    let mut stats = SweepStats::default();
    let twice = std::env::var("INFECT_SIM_CHECK").is_ok_and(|v| v.trim() == "1");
    for seed in seeds(range) {
        let report = if twice {
            match sim(seed).check(&endpoints(), &root) {
                Ok(report) => report,
                Err(e) => panic!("simulation seed {seed} failed: {e}; rerun it with INFECT_SIM_SEED={seed}"),
            }
        } else {
            sim(seed).run(endpoints(), root())
        };
        stats.runs += 1;
        stats.steps += report.steps;
        stats.with_faults += u64::from(report.faults_injected() > 0);
        stats.ok += u64::from(report.outcome.is_ok());
        let kind = match &report.outcome {
            Ok(_) => "ok".to_owned(),
            Err(Error::RemoteActor(re)) => re.boxed_type.clone(),
            Err(e) => e.kind().to_owned(),
        };
        *stats.outcomes.entry(kind).or_default() += 1;
        let verdict = match check(&report) {
            Ok(()) if !report.leftovers.is_empty() => Err(format!("actors left running: {:?}", report.leftovers)),
            v => v,
        };
        if let Err(why) = verdict {
            eprintln!("{report}");
            panic!("simulation seed {seed} failed: {why}; rerun it with {}", report.repro());
        }
    }
    stats
}

/// Whether this code runs inside a simulation.
///
/// ```
/// use infect::sim::{self, Sim};
/// assert!(!sim::is_simulated());
/// let r = Sim::new(1).run(infect::actor::Endpoints::new(), async { Ok(sim::is_simulated()) });
/// assert_eq!(r.outcome, Ok(true));
/// ```
pub fn is_simulated() -> bool {
    crate::cx::in_simulation()
}

/// [`buggify!`](crate::buggify!) at `site`: `false` outside a simulation; inside, each site is
/// activated (or not) with probability ¼ the first time it is reached in a run, and an active
/// site then fires with probability ¼ each time, all from the world's seed.
pub fn buggify_at(site: &'static Location<'static>) -> bool {
    WORLD.with(|w| w.borrow().upgrade()).is_some_and(|w| w.buggify(site))
}

/// FoundationDB's `BUGGIFY`: `true` now and then inside a simulation (see
/// [`sim::buggify_at`](crate::sim::buggify_at)), never outside one. Put it where a rare path of
/// your own code should be taken more often under test: a short write, a spurious retry, an
/// early timeout.
///
/// ```
/// use infect::{buggify, sim::Sim};
/// assert!(!buggify!()); // outside a simulation: never
/// let fired = Sim::new(3).run(infect::actor::Endpoints::new(), async {
///     Ok((0..100).filter(|_| buggify!()).count())
/// });
/// let n = fired.outcome.unwrap();
/// assert!(n <= 100);
/// // The same seed fires the same way.
/// assert_eq!(Sim::new(3).run(infect::actor::Endpoints::new(), async {
///     Ok((0..100).filter(|_| buggify!()).count())
/// }).outcome, Ok(n));
/// ```
#[macro_export]
macro_rules! buggify {
    () => {
        $crate::sim::buggify_at(::core::panic::Location::caller())
    };
}
