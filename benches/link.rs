//! In-process cross-loop round trip through a `LinkedTaskChannel`:
//! guest `send` → host `get` → host `send_nowait` → guest `receive`,
//! against a bare `VecDeque` ping-pong measured in the same run.
//!
//! Run: `cargo bench --bench link`. Prints medians of several repetitions and the ratio.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Instant;

use infect::host::Host;
use infect::to_host::{self, HostChannel, LinkOpts};

/// Round trips per repetition and repetitions; `INFECT_BENCH_QUICK=1` runs one small
/// repetition (for `valgrind --tool=callgrind`, which counts instructions deterministically).
fn sizes() -> (u64, usize) {
    if std::env::var_os("INFECT_BENCH_QUICK").is_some() { (20_000, 1) } else { (200_000, 9) }
}

async fn echo(chan: HostChannel<u64, u64, ()>) -> infect::Result<()> {
    chan.started_nowait(())?;
    loop {
        chan.send_nowait(chan.get().await?)?;
    }
}

fn link_round_trips(round_trips: u64) -> f64 {
    let host = Host::new().unwrap();
    let t0 = Instant::now();
    let n = host
        .run_guest(async move {
            to_host::open_channel_from(echo, LinkOpts::new(), async |chan, ()| {
                let mut sum = 0u64;
                for i in 0..round_trips {
                    chan.send(i).await?;
                    sum += chan.receive().await?;
                }
                Ok(sum)
            })
            .await
        })
        .unwrap();
    black_box(n);
    t0.elapsed().as_secs_f64()
}

fn vecdeque_round_trips(round_trips: u64) -> f64 {
    let mut a: VecDeque<u64> = VecDeque::new();
    let mut b: VecDeque<u64> = VecDeque::new();
    let t0 = Instant::now();
    let mut sum = 0u64;
    for i in 0..round_trips {
        a.push_back(black_box(i));
        let v = a.pop_front().unwrap();
        b.push_back(black_box(v));
        sum += b.pop_front().unwrap();
    }
    black_box(sum);
    t0.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (round_trips, reps) = sizes();
    let mut link = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..reps {
        link.push(link_round_trips(round_trips));
        bare.push(vecdeque_round_trips(round_trips));
    }
    let link_s = median(link);
    let bare_s = median(bare);
    let rate = round_trips as f64 / link_s;
    let bare_rate = round_trips as f64 / bare_s;
    println!("link round trip ({round_trips} per rep, median of {reps}):");
    println!("  LinkedTaskChannel  {:>12.0} round trips/s  {:>8.1} ns each", rate, link_s * 1e9 / round_trips as f64);
    println!(
        "  bare VecDeque      {:>12.0} round trips/s  {:>8.1} ns each",
        bare_rate,
        bare_s * 1e9 / round_trips as f64
    );
    println!("  ratio (link / bare time): {:.1}x   goal: >= 5,000,000 round trips/s", link_s / bare_s);
}
