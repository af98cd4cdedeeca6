//! Infected-actor benchmarks (`harness = false`; this binary is also the actor binary it
//! spawns). Everything in one run:
//!
//! ```text
//! cargo bench --bench infected
//! ```
//!
//! 1. The seed's echo server (root → infected child's context → its host task and back):
//!    round-trip rate, against a raw two-process pipe ping-pong of the same payload size (the
//!    size of one echo frame); unpinned, then with this process (and so every child it spawns
//!    after that) pinned to CPU 0 (`sched_setaffinity`, what `taskset -c 0` does). Each figure
//!    is the median over samples of `1 / mean(round trip)` (the seed's formula).
//! 2. Spawn + handshake + `cancel_actor` + reap of an infected child, median ms.
//! 3. Peak resident memory of the infected child during the echo (`VmHWM` of
//!    `/proc/<pid>/status`, read after 20,000 round trips, before it is cancelled).

#[path = "../tests/common_proc/seed_echo.rs"]
mod seed_echo;
use seed_echo::guest_to_host_echo_server;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use infect::Result;
use infect::actor::{self, ActorOpts, ContextFn, Endpoints};
use infect::wire::{DEFAULT_MAX_FRAME, Msg, encode_frame, encode_payload};

const NS: &str = "bench";
const GUEST_TO_HOST_ECHO_SERVER: ContextFn<(), String> = ContextFn::new(NS, "guest_to_host_echo_server");
const SAMPLES: usize = 9;
const TRIPS: u64 = 2000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The size of one echo frame (a `Yield` of a mid-range count), what the raw ping-pong sends.
fn frame_size() -> usize {
    let msg = Msg::Yield { cid: 1, value: encode_payload(&(TRIPS / 2)).expect("encode") };
    encode_frame(&msg, DEFAULT_MAX_FRAME).expect("frame").len()
}

/// The raw peer: echo `size`-byte messages from stdin to stdout until end-of-file.
fn pong(size: usize) -> ! {
    let (mut i, mut o) = (std::io::stdin().lock(), std::io::stdout().lock());
    let mut buf = vec![0u8; size];
    while i.read_exact(&mut buf).is_ok() {
        if o.write_all(&buf).and_then(|()| o.flush()).is_err() {
            break;
        }
    }
    std::process::exit(0)
}

/// Median round-trip rate (Hz) of a raw pipe ping-pong of `size` bytes.
fn raw_ping_pong(size: usize) -> f64 {
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .env("INFECTED_BENCH_PONG", size.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn pong");
    let mut tx = child.stdin.take().expect("stdin");
    let mut rx = child.stdout.take().expect("stdout");
    let msg = vec![7u8; size];
    let mut buf = vec![0u8; size];
    let mut trip = || {
        tx.write_all(&msg).expect("ping");
        rx.read_exact(&mut buf).expect("pong");
    };
    for _ in 0..TRIPS {
        trip();
    }
    let rates = (0..SAMPLES)
        .map(|_| {
            let t0 = Instant::now();
            for _ in 0..TRIPS * 10 {
                trip();
            }
            (TRIPS * 10) as f64 / t0.elapsed().as_secs_f64()
        })
        .collect();
    drop(tx);
    child.wait().expect("wait pong");
    median(rates)
}

/// The echo server's median round-trip rate (Hz), and the child's peak RSS (KiB) after it.
async fn echo_rate() -> Result<(f64, u64)> {
    actor::open_nursery(async |an| {
        let p = an.start_actor("host_server", ActorOpts::new().enable_modules([NS]).infect_host(true)).await?;
        let rates = p
            .open_context(GUEST_TO_HOST_ECHO_SERVER, &(), async |ctx, first| {
                assert_eq!(first, "start");
                ctx.open_stream(async |stream| {
                    let mut count = 0u64;
                    let mut trip = async || -> Result<()> {
                        stream.send(&count).await?;
                        let back: u64 = stream.receive().await?;
                        assert_eq!(back, count);
                        count += 1;
                        Ok(())
                    };
                    for _ in 0..TRIPS {
                        trip().await?;
                    }
                    let mut rates = Vec::new();
                    for _ in 0..SAMPLES {
                        let t0 = Instant::now();
                        for _ in 0..TRIPS {
                            trip().await?;
                        }
                        rates.push(TRIPS as f64 / t0.elapsed().as_secs_f64());
                    }
                    Ok(rates)
                })
                .await
            })
            .await?;
        let hwm = vm_hwm(p.pid());
        p.cancel_actor().await?;
        Ok((median(rates), hwm))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))
}

/// `VmHWM` of process `pid`, in KiB.
fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Median ms of spawn + handshake + `cancel_actor` + reap of an infected child.
async fn spawn_cancel(n: usize) -> Result<f64> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 5 {
        let t0 = Instant::now();
        let graceful = actor::open_nursery(async |an| {
            let p = an.start_actor("bench", ActorOpts::new().enable_modules([NS]).infect_host(true)).await?;
            p.cancel_actor().await
        })
        .await
        .and_then(|v| v.ok_or(infect::Error::Cancelled))?;
        assert!(graceful);
        if i >= 5 {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(median(times))
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
    if let Some(size) = std::env::var("INFECTED_BENCH_PONG").ok().and_then(|s| s.parse().ok()) {
        pong(size);
    }
    let endpoints = Endpoints::new().serve(GUEST_TO_HOST_ECHO_SERVER, guest_to_host_echo_server);
    let r = actor::run(endpoints, async {
        let size = frame_size();
        println!("echo frame: {size} bytes; {SAMPLES} samples of {TRIPS} round trips (raw: of {})", TRIPS * 10);
        for pinned in [false, true] {
            if pinned && !pin_to_cpu0() {
                println!("(could not pin to CPU 0)");
                break;
            }
            let label = if pinned { "pinned to CPU 0" } else { "unpinned" };
            let (echo, hwm) = echo_rate().await?;
            let raw = raw_ping_pong(size);
            println!(
                "{label}: infected echo median {echo:.0} Hz; raw pipe ping-pong median {raw:.0} Hz; echo/raw {:.2}; \
                 infected child VmHWM {hwm} KiB",
                echo / raw
            );
            let spawn = spawn_cancel(40).await?;
            println!("{label}: infected spawn+handshake+cancel_actor+reap median {spawn:.3} ms");
        }
        Ok(())
    });
    if let Err(e) = r {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}
