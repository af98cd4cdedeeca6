//! One-way stream throughput through an infected child, with a fast and with a deliberately
//! slow consumer, against a raw pipe in the same run (`harness = false`; this binary is also the
//! actor binary it spawns, and the raw pipe's writer):
//!
//! ```text
//! cargo bench --bench stream
//! ```
//!
//! - **infected**: a host task of an infected child sends `u64`s into its `to_host` channel, the
//!   child's guest forwards each as a stream item (`MsgStream::send`, credit-based), the root
//!   receives them. Fast: the root takes every item at once. Slow: it sleeps 1 ms after every
//!   1000 items, so the producer must wait for credit.
//! - **raw pipe**: a child process writes frames of the same size into a pipe as fast as the
//!   pipe takes them; the root reads them whole (fast, or with the same sleeps).
//!
//! For each: the median over samples of items per second, and the peak resident set (`VmHWM`)
//! of the child and of the root during the sample (the root's is reset before each sample by
//! writing `5` to `/proc/self/clear_refs`).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use infect::actor::{self, ActorOpts, Context, ContextFn, Endpoints};
use infect::to_host::{self, HostChannel, LinkOpts};
use infect::wire::{DEFAULT_MAX_FRAME, Msg, encode_frame, encode_payload};
use infect::{Result, guest};

const NS: &str = "bench";
/// Streams `n` items from a host task; returns how many it sent.
const PRODUCE: ContextFn<u64, (), u64> = ContextFn::new(NS, "produce");
const SAMPLES: usize = 5;
const FAST_ITEMS: u64 = 1_000_000;
const SLOW_ITEMS: u64 = 200_000;
/// The slow consumer sleeps 1 ms after every `SLOW_EVERY` items.
const SLOW_EVERY: u64 = 1000;

/// The infected child's stream: a host task produces `n` items, the guest forwards them.
async fn produce(ctx: Context, n: u64) -> Result<u64> {
    let target = move |chan: HostChannel<(), u64, ()>| async move {
        chan.started_nowait(())?;
        for i in 0..n {
            chan.send(i).await?;
        }
        Ok(())
    };
    to_host::open_channel_from(target, LinkOpts::new(), async |chan, ()| {
        ctx.started(&()).await?;
        ctx.open_stream(async |stream| {
            let mut sent = 0;
            while let Some(v) = chan.try_next().await? {
                stream.send(&v).await?;
                sent += 1;
            }
            Ok(sent)
        })
        .await
    })
    .await
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// `VmHWM` of process `pid` (`"self"` for this one), in KiB.
fn vm_hwm(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resets this process's `VmHWM` to its current resident set.
fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One sample of the infected stream: (items/s, child VmHWM KiB, root VmHWM KiB).
async fn infected_sample(n: u64, slow: bool) -> Result<(f64, u64, u64)> {
    actor::open_nursery(async |an| {
        let p = an.start_actor("producer", ActorOpts::new().enable_modules([NS]).infect_host(true)).await?;
        reset_hwm();
        let pid = p.pid().to_string();
        let (rate, child_hwm) = p
            .open_context(PRODUCE, &n, async |ctx, ()| {
                let got = ctx
                    .open_stream(async |stream| {
                        let t0 = Instant::now();
                        let mut got = 0u64;
                        while let Some(v) = stream.try_next::<u64>().await? {
                            assert_eq!(v, got);
                            got += 1;
                            if slow && got.is_multiple_of(SLOW_EVERY) {
                                guest::sleep(Duration::from_millis(1)).await?;
                            }
                        }
                        Ok((got, t0.elapsed()))
                    })
                    .await?;
                assert_eq!(got.0, n);
                Ok((n as f64 / got.1.as_secs_f64(), vm_hwm(&pid)))
            })
            .await?;
        let root_hwm = vm_hwm("self");
        p.cancel_actor().await?;
        Ok((rate, child_hwm, root_hwm))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))
}

/// The size of one stream frame (a `Yield` of a mid-range item), what the raw pipe sends.
fn frame_size() -> usize {
    let msg = Msg::Yield { cid: 1, value: encode_payload(&(FAST_ITEMS / 2)).expect("encode") };
    encode_frame(&msg, DEFAULT_MAX_FRAME).expect("frame").len()
}

/// The raw writer: `n` messages of `size` bytes to stdout, as fast as the pipe takes them, then
/// waits for its parent's word (one byte on stdin) so that its peak RSS can be read.
fn raw_writer(n: u64, size: usize) -> ! {
    let mut o = std::io::stdout().lock();
    let batch = vec![7u8; size * 64];
    let mut left = n;
    while left > 0 {
        let k = left.min(64);
        if o.write_all(&batch[..size * k as usize]).is_err() {
            std::process::exit(1);
        }
        left -= k;
    }
    let _ = o.flush();
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    std::process::exit(0)
}

/// One sample of the raw pipe: (items/s, writer VmHWM KiB, root VmHWM KiB).
fn raw_sample(n: u64, size: usize, slow: bool) -> (f64, u64, u64) {
    reset_hwm();
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .env("STREAM_BENCH_RAW", format!("{n},{size}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the raw writer");
    let mut rx = child.stdout.take().expect("stdout");
    let mut buf = vec![0u8; size];
    let t0 = Instant::now();
    for i in 1..=n {
        rx.read_exact(&mut buf).expect("an item");
        if slow && i.is_multiple_of(SLOW_EVERY) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    let child_hwm = vm_hwm(&child.id().to_string());
    let root_hwm = vm_hwm("self");
    let _ = child.stdin.take().expect("stdin").write_all(b"x");
    child.wait().expect("wait for the raw writer");
    (rate, child_hwm, root_hwm)
}

fn report(label: &str, samples: Vec<(f64, u64, u64)>) {
    let rate = median(samples.iter().map(|s| s.0).collect());
    let child = median_u64(samples.iter().map(|s| s.1).collect());
    let root = median_u64(samples.iter().map(|s| s.2).collect());
    println!("{label}: median {rate:.0} items/s; peak RSS child {child} KiB, root {root} KiB");
}

fn main() {
    if let Some((n, size)) = std::env::var("STREAM_BENCH_RAW").ok().and_then(|s| {
        let (n, size) = s.split_once(',')?;
        Some((n.parse().ok()?, size.parse().ok()?))
    }) {
        raw_writer(n, size);
    }
    let endpoints = Endpoints::new().serve(PRODUCE, produce);
    let r = actor::run(endpoints, async {
        let size = frame_size();
        println!(
            "{SAMPLES} samples; fast: {FAST_ITEMS} items, slow: {SLOW_ITEMS} items with 1 ms of sleep per \
             {SLOW_EVERY}; {size}-byte frames; window {} items",
            actor::STREAM_BUFFER
        );
        for (slow, n) in [(false, FAST_ITEMS), (true, SLOW_ITEMS)] {
            let kind = if slow { "slow consumer" } else { "fast consumer" };
            let mut infected = Vec::new();
            let mut raw = Vec::new();
            for _ in 0..SAMPLES {
                infected.push(infected_sample(n, slow).await?);
                raw.push(raw_sample(n, size, slow));
            }
            report(&format!("{kind}, infected child stream"), infected.clone());
            report(&format!("{kind}, raw pipe"), raw.clone());
            let ratio = median(infected.iter().map(|s| s.0).collect()) / median(raw.iter().map(|s| s.0).collect());
            println!("{kind}: infected/raw {ratio:.2}");
        }
        Ok(())
    });
    if let Err(e) = r {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}
