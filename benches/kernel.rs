//! Kernel benchmarks (`cargo bench --bench kernel`): plain `std::time::Instant` timing, several
//! repetitions, medians, and ratios measured in the same run (the machines are noisy).
//!
//! - (a) guest-mode overhead: one guest workload (100k checkpoints over 4 tasks, plus a 10k
//!   round-trip `Event` ping-pong between two guest tasks) under `guest::run` (standalone) and
//!   under `Host::run_guest` (riding the host executor through the hooks). Goal: ≤ 1.10×.
//! - (b) host↔guest wake round trip: a host task and a guest task ping-pong through guest
//!   `Event`s. Goal: < 200 ns per round trip. A guest↔guest ping-pong is shown for reference.
//! - (c) spawn+join of 100k trivial tasks on each executor (ns per task), and heap bytes per
//!   live task beyond the future itself, from a counting `#[global_allocator]`. Goal: ≤ 256.
//!
//! Repetitions are interleaved (A, B, A, B, ...) so that drift in the machine's speed hits both
//! sides of a ratio alike.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use infect::Result;
use infect::guest::{self, Event};
use infect::host::{self, Host};

// ---- a counting allocator ------------------------------------------------------------------

/// `System`, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees carry over; the counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's (valid, non-zero-size) layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

// ---- helpers --------------------------------------------------------------------------------

const REPS: usize = 11;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t0 = Instant::now();
    let out = f();
    (t0.elapsed(), out)
}

/// Runs `a` and `b` alternately `REPS` times (after one warm-up each); returns the median
/// duration of each, in nanoseconds.
fn paired(mut a: impl FnMut() -> Duration, mut b: impl FnMut() -> Duration) -> (f64, f64) {
    a();
    b();
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..REPS {
        ta.push(a().as_nanos() as f64);
        tb.push(b().as_nanos() as f64);
    }
    (median(ta), median(tb))
}

fn events(n: usize) -> Rc<Vec<Event>> {
    Rc::new((0..n).map(|_| Event::new()).collect())
}

// ---- (a) guest-mode overhead ----------------------------------------------------------------

const CHECKPOINT_TASKS: usize = 4;
const CHECKPOINTS: usize = 25_000;
const GUEST_PINGS: usize = 10_000;

/// The guest workload of (a): checkpoint-heavy tasks beside an Event ping-pong.
async fn guest_workload() -> Result<usize> {
    let (pings, pongs) = (events(GUEST_PINGS), events(GUEST_PINGS));
    guest::open_nursery(async |n| {
        for _ in 0..CHECKPOINT_TASKS {
            n.start_soon(async {
                for _ in 0..CHECKPOINTS {
                    guest::checkpoint().await?;
                }
                Ok(())
            })?;
        }
        let (pi, po) = (pings.clone(), pongs.clone());
        n.start_soon(async move {
            for i in 0..GUEST_PINGS {
                pi[i].set();
                po[i].wait().await?;
            }
            Ok(())
        })?;
        let (pi, po) = (pings.clone(), pongs.clone());
        n.start_soon(async move {
            for i in 0..GUEST_PINGS {
                pi[i].wait().await?;
                po[i].set();
            }
            Ok(())
        })?;
        Ok(CHECKPOINT_TASKS * CHECKPOINTS + GUEST_PINGS)
    })
    .await
    .map(|v| v.unwrap_or(0))
}

fn bench_guest_mode() -> (f64, f64) {
    let host = Host::new().unwrap();
    paired(
        || {
            let (d, r) = time(|| guest::run(guest_workload()));
            black_box(r.unwrap());
            d
        },
        || {
            let (d, r) = time(|| host.run_guest(guest_workload()));
            black_box(r.unwrap());
            d
        },
    )
}

// ---- (b) wake round trips -------------------------------------------------------------------

const ROUND_TRIPS: usize = 100_000;

/// A host task and a guest task ping-pong through guest Events; ns per round trip.
fn host_guest_round_trip() -> Duration {
    let host = Host::new().unwrap();
    let (pings, pongs) = (events(ROUND_TRIPS), events(ROUND_TRIPS));
    let (pi, po) = (pings.clone(), pongs.clone());
    // Keep the events alive past the timed region: freeing them is not part of a round trip.
    let _keep = (pings.clone(), pongs.clone());
    let (d, ()) = time(|| {
        let player = host.spawn(async move {
            for i in 0..ROUND_TRIPS {
                pi[i].set();
                po[i].wait().await.unwrap();
            }
        });
        host.run_guest(async move {
            for i in 0..ROUND_TRIPS {
                pings[i].wait().await?;
                pongs[i].set();
            }
            Ok(())
        })
        .unwrap();
        host.block_on(player).unwrap();
    });
    d / ROUND_TRIPS as u32
}

/// Two guest tasks ping-pong through Events (the same pattern, one loop); ns per round trip.
fn guest_guest_round_trip() -> Duration {
    let (pings, pongs) = (events(ROUND_TRIPS), events(ROUND_TRIPS));
    let _keep = (pings.clone(), pongs.clone());
    let (d, r) = time(|| {
        guest::run(async move {
            guest::open_nursery(async |n| {
                let (pi, po) = (pings.clone(), pongs.clone());
                n.start_soon(async move {
                    for i in 0..ROUND_TRIPS {
                        pi[i].set();
                        po[i].wait().await?;
                    }
                    Ok(())
                })?;
                for i in 0..ROUND_TRIPS {
                    pings[i].wait().await?;
                    pongs[i].set();
                }
                Ok(())
            })
            .await
        })
    });
    r.unwrap();
    d / ROUND_TRIPS as u32
}

// ---- (c) spawn + join, heap per task --------------------------------------------------------

const TASKS: usize = 100_000;

fn host_spawn_join() -> Duration {
    let host = Host::new().unwrap();
    let (d, sum) = time(|| {
        host.block_on(async {
            let handles: Vec<_> = (0..TASKS).map(|i| host.spawn(async move { i })).collect();
            let mut sum = 0;
            for h in handles {
                sum += h.await.unwrap();
            }
            sum
        })
    });
    assert_eq!(sum, TASKS * (TASKS - 1) / 2);
    d / TASKS as u32
}

fn guest_spawn_join() -> Duration {
    let (d, r) = time(|| {
        guest::run(async {
            let done = Rc::new(Cell::new(0usize));
            guest::open_nursery(async |n| {
                for _ in 0..TASKS {
                    let done = done.clone();
                    n.start_soon(async move {
                        done.set(done.get() + 1);
                        Ok(())
                    })?;
                }
                Ok(())
            })
            .await?;
            Ok(done.get())
        })
    });
    assert_eq!(r, Ok(TASKS));
    d / TASKS as u32
}

/// A future that counts its first poll, then stays pending forever.
struct Parked {
    polled: Rc<Cell<usize>>,
    first: bool,
}

impl Future for Parked {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.first {
            self.first = false;
            self.polled.set(self.polled.get() + 1);
        }
        Poll::Pending
    }
}

/// Heap bytes per live host task beyond its future: `(cold, warm)`, where cold is the first
/// `TASKS` tasks of a fresh host (growth of its tables included) and warm the next `TASKS`
/// once the first ones are gone.
fn host_bytes_per_task() -> (f64, f64) {
    let host = Host::new().unwrap();
    let polled = Rc::new(Cell::new(0));
    let fut_size = std::mem::size_of::<Parked>();
    let round = || {
        let mut handles = Vec::with_capacity(TASKS);
        polled.set(0);
        let per_task = host.block_on(async {
            let before = live_bytes();
            for _ in 0..TASKS {
                handles.push(host.spawn(Parked { polled: polled.clone(), first: true }));
            }
            // Let every task be polled once, so each is parked, not queued.
            while polled.get() < TASKS {
                host::yield_now().await.unwrap();
            }
            (live_bytes() - before) as f64 / TASKS as f64
        });
        // Cancel them all (handles dropped) and let the loop drop them.
        drop(handles);
        host.run();
        per_task - fut_size as f64
    };
    let cold = round();
    let warm = round();
    (cold, warm)
}

/// Heap bytes per live guest task beyond its future: `(cold, warm)` as for the host.
fn guest_bytes_per_task() -> (f64, f64) {
    let r = guest::run(async {
        let mut out = Vec::new();
        for _ in 0..2 {
            let polled = Rc::new(Cell::new(0));
            let mut fut_size = 0;
            let mut per_task = 0.0;
            guest::open_nursery(async |n| {
                let before = live_bytes();
                for _ in 0..TASKS {
                    let polled = polled.clone();
                    let fut = async move {
                        polled.set(polled.get() + 1);
                        guest::sleep_forever().await
                    };
                    fut_size = std::mem::size_of_val(&fut);
                    n.start_soon(fut)?;
                }
                // Tasks queued before this checkpoint's wake-up are polled before it returns.
                while polled.get() < TASKS {
                    guest::checkpoint().await?;
                }
                per_task = (live_bytes() - before) as f64 / TASKS as f64;
                n.cancel();
                Ok(())
            })
            .await?;
            out.push(per_task - fut_size as f64);
        }
        Ok(out)
    })
    .unwrap();
    (r[0], r[1])
}

// ---- report ---------------------------------------------------------------------------------

fn main() {
    let ms = |ns: f64| ns / 1e6;
    println!("infect kernel benchmarks: medians of {REPS} runs (after one warm-up), interleaved");
    println!();

    let (standalone, hosted) = bench_guest_mode();
    let ratio = hosted / standalone;
    println!(
        "(a) guest-mode overhead: {}k checkpoints over {CHECKPOINT_TASKS} tasks + {}k guest Event round trips",
        CHECKPOINT_TASKS * CHECKPOINTS / 1000,
        GUEST_PINGS / 1000
    );
    println!("    guest::run (standalone)           {:>9.2} ms", ms(standalone));
    println!("    Host::run_guest (guest mode)      {:>9.2} ms", ms(hosted));
    println!("    ratio guest mode / standalone     {ratio:>9.3}x   (goal <= 1.10)");
    println!();

    let (hg, gg) = paired(host_guest_round_trip, guest_guest_round_trip);
    println!("(b) wake round trip through guest Events, {}k round trips", ROUND_TRIPS / 1000);
    println!("    host task <-> guest task          {hg:>9.0} ns   (goal < 200 ns)");
    println!("    guest task <-> guest task (ref.)  {gg:>9.0} ns");
    println!("    ratio host<->guest / guest<->guest {:>8.2}x", hg / gg);
    println!();

    let (hs, gs) = paired(host_spawn_join, guest_spawn_join);
    let (mut hb, mut gb) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        hb.push(host_bytes_per_task());
        gb.push(guest_bytes_per_task());
    }
    let med = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| median(v.iter().map(f).collect());
    println!("(c) spawn + join of {}k trivial tasks", TASKS / 1000);
    println!("    host  (Host::spawn + JoinHandle)  {hs:>9.0} ns/task");
    println!("    guest (Nursery::start_soon)       {gs:>9.0} ns/task");
    println!("    ratio guest / host                {:>9.2}x", gs / hs);
    println!("    heap bytes per live task beyond the future (goal <= 256):");
    println!("                                     cold (fresh executor)   warm (tables grown)");
    println!(
        "    host                              {:>9.0} B             {:>9.0} B",
        med(&hb, |x| x.0),
        med(&hb, |x| x.1)
    );
    println!(
        "    guest                             {:>9.0} B             {:>9.0} B",
        med(&gb, |x| x.0),
        med(&gb, |x| x.1)
    );
}
