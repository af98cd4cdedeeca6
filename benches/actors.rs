//! Actor benchmarks (`harness = false`; this binary is also the actor binary it spawns).
//!
//! ```text
//! cargo bench --bench actors
//! ```
//!
//! 1. Spawn + handshake + `cancel_actor` + reap of one child actor, median ms, against
//!    fork+exec+wait of `/bin/true` in the same run.
//! 2. `portal.run` round trip of a trivial function, median µs, against a raw ping-pong of the
//!    same 8 bytes over two pipes between two processes; unpinned, then with this process (and
//!    so every child it spawns after that) pinned to CPU 0 (`sched_setaffinity`, what
//!    `taskset -c 0` does).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use infect::Result;
use infect::actor::{self, ActorOpts, Endpoints, Function};

const ECHO: Function<u64, u64> = Function::new("b", "echo");

async fn echo(x: u64) -> Result<u64> {
    Ok(x)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The raw peer: echo 8-byte messages from stdin to stdout until end-of-file.
fn pong() -> ! {
    let (mut i, mut o) = (std::io::stdin().lock(), std::io::stdout().lock());
    let mut buf = [0u8; 8];
    while i.read_exact(&mut buf).is_ok() {
        if o.write_all(&buf).and_then(|()| o.flush()).is_err() {
            break;
        }
    }
    std::process::exit(0)
}

fn raw_ping_pong(n: usize) -> Duration {
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .env("ACTORS_BENCH_PONG", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn pong");
    let mut tx = child.stdin.take().expect("stdin");
    let mut rx = child.stdout.take().expect("stdout");
    let mut buf = [0u8; 8];
    let mut times = Vec::with_capacity(n);
    for i in 0..(n + n / 10) {
        let t0 = Instant::now();
        tx.write_all(&(i as u64).to_le_bytes()).expect("ping");
        rx.read_exact(&mut buf).expect("pong");
        if i >= n / 10 {
            times.push(t0.elapsed());
        }
    }
    drop(tx);
    child.wait().expect("wait pong");
    median(times)
}

fn bin_true(n: usize) -> Duration {
    let times = (0..n)
        .map(|_| {
            let t0 = Instant::now();
            let st = Command::new("/bin/true").status().expect("/bin/true");
            assert!(st.success());
            t0.elapsed()
        })
        .collect();
    median(times)
}

async fn spawn_cancel(n: usize) -> Result<Duration> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 5 {
        let t0 = Instant::now();
        let graceful = actor::open_nursery(async |an| {
            let p = an.start_actor("bench", ActorOpts::new().enable_modules(["b"])).await?;
            p.cancel_actor().await
        })
        .await
        .and_then(|v| v.ok_or(infect::Error::Cancelled))?;
        assert!(graceful);
        if i >= 5 {
            times.push(t0.elapsed());
        }
    }
    Ok(median(times))
}

async fn portal_round_trip(n: usize) -> Result<Duration> {
    actor::open_nursery(async |an| {
        let p = an.start_actor("echo", ActorOpts::new().enable_modules(["b"])).await?;
        let mut times = Vec::with_capacity(n);
        for i in 0..(n + n / 10) as u64 {
            let t0 = Instant::now();
            let v = p.run(ECHO, &i).await?;
            assert_eq!(v, i);
            if i >= (n / 10) as u64 {
                times.push(t0.elapsed());
            }
        }
        p.cancel_actor().await?;
        Ok(median(times))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))
}

fn pin_to_cpu0() -> bool {
    // SAFETY: `set` is a zero-initialised `cpu_set_t` (a valid empty set) that we only modify
    // through `CPU_SET`; `sched_setaffinity` reads `size_of::<cpu_set_t>()` bytes from it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

fn main() {
    if std::env::var_os("ACTORS_BENCH_PONG").is_some() {
        pong();
    }
    let endpoints = Endpoints::new().serve(ECHO, echo);
    let r = actor::run(endpoints, async {
        for pinned in [false, true] {
            if pinned && !pin_to_cpu0() {
                println!("(could not pin to CPU 0)");
                break;
            }
            let label = if pinned { "pinned to CPU 0" } else { "unpinned" };
            let spawn = spawn_cancel(50).await?;
            let truth = bin_true(50);
            println!(
                "{label}: spawn+handshake+cancel_actor+reap median {:.3} ms; fork+exec+wait /bin/true median {:.3} ms; ratio {:.2}",
                ms(spawn),
                ms(truth),
                spawn.as_secs_f64() / truth.as_secs_f64()
            );
            let rt = portal_round_trip(5000).await?;
            let raw = raw_ping_pong(5000);
            println!(
                "{label}: portal.run round trip median {:.2} us ({:.0}/s); raw pipe ping-pong median {:.2} us ({:.0}/s); raw/portal rate ratio {:.2}",
                us(rt),
                1.0 / rt.as_secs_f64(),
                us(raw),
                1.0 / raw.as_secs_f64(),
                raw.as_secs_f64() / rt.as_secs_f64()
            );
        }
        Ok(())
    });
    if let Err(e) = r {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}
