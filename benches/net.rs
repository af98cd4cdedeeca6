//! `host::net` benchmarks (`harness = false`; this binary is also the actor binary that the
//! websocket part spawns).
//!
//! ```text
//! cargo bench --bench net
//! ```
//!
//! 1. The websocket example's round trip (root → infected client actor → `async-tungstenite` on
//!    a `host::net::TcpStream` → echo server actor → back), median µs and rate.
//! 2. A loopback TCP ping-pong of 8 bytes: both ends as host tasks on one `Host` (one thread),
//!    a host-task client against a blocking `std::net::TcpStream` echo thread, and both ends
//!    blocking `std::net::TcpStream`s (the echo on a second thread), in the same run; medians
//!    of the per-round-trip time and the std/host rate ratio.
//!
//! Each part runs unpinned, then with the process pinned to CPU 0 (`sched_setaffinity`, what
//! `taskset -c 0` does; actors and threads started after that inherit it).

#[allow(dead_code)]
#[path = "../examples/infected_websocket.rs"]
mod ws;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::io::AsyncReadExt;
use infect::actor;
use infect::host::{self, Host, net};

/// Round trips per repetition and repetitions; `INFECT_BENCH_QUICK=1` runs a small set.
fn sizes() -> (u64, usize) {
    if std::env::var_os("INFECT_BENCH_QUICK").is_some() { (2_000, 3) } else { (20_000, 7) }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Both ends on host tasks of one host: per-round-trip time of `n` round trips.
fn host_ping_pong(n: u64) -> Duration {
    let host = Host::new().unwrap();
    host.block_on(async {
        let listener = net::TcpListener::bind(loopback()).unwrap();
        let client = net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.set_nodelay(true).unwrap();
        server.set_nodelay(true).unwrap();
        let echo = host::spawn(async move {
            let mut buf = [0u8; 8];
            while (&server).read_exact(&mut buf).await.is_ok() {
                server.write_all(&buf).await?;
            }
            std::io::Result::Ok(())
        })
        .unwrap();
        let t0 = Instant::now();
        let mut buf = [0u8; 8];
        for i in 0..n {
            client.write_all(&i.to_le_bytes()).await.unwrap();
            (&client).read_exact(&mut buf).await.unwrap();
            assert_eq!(u64::from_le_bytes(buf), i);
        }
        let took = t0.elapsed();
        drop(client);
        echo.await.unwrap().unwrap();
        took / n as u32
    })
}

/// A blocking std echo server on a thread; returns its address and join handle.
fn std_echo_thread() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; 8];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf).unwrap();
        }
    });
    (addr, t)
}

/// A host-task client against the blocking std echo thread.
fn host_client_std_server(n: u64) -> Duration {
    let (addr, t) = std_echo_thread();
    let host = Host::new().unwrap();
    let took = host.block_on(async {
        let mut client = net::TcpStream::connect(addr).await.unwrap();
        client.set_nodelay(true).unwrap();
        let t0 = Instant::now();
        let mut buf = [0u8; 8];
        for i in 0..n {
            client.write_all(&i.to_le_bytes()).await.unwrap();
            client.read_exact(&mut buf).await.unwrap();
            assert_eq!(u64::from_le_bytes(buf), i);
        }
        t0.elapsed()
    });
    t.join().unwrap();
    took / n as u32
}

/// Both ends blocking std streams (the echo on a second thread).
fn std_ping_pong(n: u64) -> Duration {
    let (addr, t) = std_echo_thread();
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.set_nodelay(true).unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 8];
    for i in 0..n {
        client.write_all(&i.to_le_bytes()).unwrap();
        client.read_exact(&mut buf).unwrap();
        assert_eq!(u64::from_le_bytes(buf), i);
    }
    let took = t0.elapsed();
    drop(client);
    t.join().unwrap();
    took / n as u32
}

fn sockets(label: &str) {
    let (n, reps) = sizes();
    let host: Vec<_> = (0..reps).map(|_| host_ping_pong(n)).collect();
    let mixed: Vec<_> = (0..reps).map(|_| host_client_std_server(n)).collect();
    let std: Vec<_> = (0..reps).map(|_| std_ping_pong(n)).collect();
    let (host, mixed, std) = (median(host), median(mixed), median(std));
    println!(
        "{label}: TCP ping-pong round trip median: host<->host (one thread) {:.2} us ({:.0}/s); \
         host client<->std thread {:.2} us ({:.0}/s); std<->std (two threads) {:.2} us ({:.0}/s); \
         host/std rate ratio {:.2}",
        us(host),
        1.0 / host.as_secs_f64(),
        us(mixed),
        1.0 / mixed.as_secs_f64(),
        us(std),
        1.0 / std.as_secs_f64(),
        std.as_secs_f64() / host.as_secs_f64(),
    );
}

async fn websocket(label: &str) -> infect::Result<()> {
    let (_, reps) = sizes();
    let mut medians = Vec::new();
    for _ in 0..reps {
        let out = ws::scenario("echo", 1000).await?;
        assert!(out.failure.is_none() && out.exchanged.len() == 1000);
        medians.push(median(out.delays));
    }
    let m = median(medians);
    println!("{label}: websocket example round trip median {:.2} us ({:.0}/s)", us(m), 1.0 / m.as_secs_f64());
    Ok(())
}

type CpuSet = libc::cpu_set_t;

fn get_affinity() -> CpuSet {
    // SAFETY: `set` is a valid, writable `cpu_set_t`; the kernel writes at most its size.
    unsafe {
        let mut set: CpuSet = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<CpuSet>(), &mut set);
        set
    }
}

fn set_affinity(set: &CpuSet) -> bool {
    // SAFETY: `set` is a valid `cpu_set_t`; `sched_setaffinity` reads `size_of::<cpu_set_t>()` bytes.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<CpuSet>(), set) == 0 }
}

fn cpu0() -> CpuSet {
    // SAFETY: a zeroed `cpu_set_t` is the empty set, which `CPU_SET` only modifies.
    unsafe {
        let mut set: CpuSet = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        set
    }
}

fn main() {
    let all = get_affinity();
    // The websocket part first: in a child, `actor::main` serves and exits, never reaching the
    // socket part below.
    let r = actor::run(ws::endpoints(), async move {
        websocket("unpinned").await?;
        if set_affinity(&cpu0()) {
            websocket("pinned to CPU 0").await?;
        } else {
            println!("(could not pin to CPU 0)");
        }
        Ok(())
    });
    if let Err(e) = r {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
    set_affinity(&all);
    sockets("unpinned");
    if set_affinity(&cpu0()) {
        sockets("pinned to CPU 0");
    }
}
