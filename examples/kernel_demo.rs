//! A tour of the kernel: the host executor (asyncio's role) carrying a guest run (trio's role),
//! with host tasks and guest tasks talking to each other.
//!
//! What it shows, in order of appearance:
//! - a [`Host`] on a *virtual* clock with autojump: the tour "takes" 10 seconds and runs in
//!   microseconds, and every time printed is exact;
//! - host tasks (`Host::spawn`, `host::sleep`) and a `call_later` callback;
//! - a guest run on the host with `Host::run_guest`, which runs the host loop (host tasks and
//!   callbacks included) until the guest has finished, and returns its outcome;
//! - host → guest: a host task feeds a guest channel with `send_nowait`, and sets a guest `Event`;
//! - guest → host: a guest task sets an `Event` that a host task awaits;
//! - host-side code moving a guest deadline (`CancelScope::set_deadline` from `call_later`);
//! - structured concurrency in the guest: a nursery, `move_on_after`, a cancel scope that
//!   catches its cancellation;
//! - host task cancellation: `JoinHandle::cancel(reason)` makes the task's host-aware await
//!   return `Err(Cancelled { reason })`.
//!
//! Run it with `cargo run --example kernel_demo`.

use std::rc::Rc;
use std::time::Duration;

use infect::guest::{self, CancelScope, Event};
use infect::host::{self, Host};
use infect::time::{Clock, Instant, VirtualClock};

fn secs(t: Instant) -> f64 {
    t.as_nanos() as f64 / 1e9
}

fn main() -> infect::Result<()> {
    let clock = Rc::new(VirtualClock::new());
    let host = Host::builder().clock(clock.clone()).build()?;
    let now = {
        let clock = clock.clone();
        move || secs(clock.now())
    };

    // Channels and events are guest objects, but host code on the same thread may use them.
    let (readings_tx, mut readings_rx) = guest::channel::<u32>(4);
    let guest_ready = Event::new();
    let go = Event::new();
    let window = CancelScope::with_deadline(Instant::NEVER);

    // Host task 1: a "sensor" that pushes a reading into the guest every 2 s.
    let n = now.clone();
    let sensor = host.spawn(async move {
        for reading in [17, 23, 42, 8, 15] {
            host::sleep(Duration::from_secs(2)).await?;
            println!("[{:>5.1} s] host sensor: reading {reading}", n());
            if readings_tx.send_nowait(reading).is_err() {
                println!("[{:>5.1} s] host sensor: guest stopped listening", n());
                break;
            }
        }
        Ok::<_, infect::Cancelled>(())
    });

    // Host task 2: waits for the guest to say it is ready, then tells it to go.
    let (n, ready, g) = (now.clone(), guest_ready.clone(), go.clone());
    let handshake = host.spawn(async move {
        ready.wait().await.expect("a host task is not in a cancel scope");
        println!("[{:>5.1} s] host: guest says it is ready; sending go", n());
        g.set();
    });

    // Host task 3: a poller that will be cancelled with a reason.
    let n = now.clone();
    let poller = host.spawn(async move {
        loop {
            if let Err(c) = host::sleep(Duration::from_secs(3)).await {
                println!("[{:>5.1} s] host poller: stopped: {}", n(), c.reason);
                return c.reason;
            }
            println!("[{:>5.1} s] host poller: poll", n());
        }
    });

    // Host-side code moves a guest deadline: at 5 s, the guest's reading window closes at 9 s.
    let (n, w) = (now.clone(), window.clone());
    host.call_later(Duration::from_secs(5), move || {
        println!("[{:>5.1} s] host callback: the reading window closes at 9 s", n());
        w.set_deadline(Instant::from_nanos(9_000_000_000));
    });

    // Cancel the poller at 10 s, after the guest is done, from a host task.
    let n = now.clone();
    let canceller = host.spawn(async move {
        host::sleep(Duration::from_secs(10)).await?;
        println!("[{:>5.1} s] host: cancelling the poller", n());
        poller.cancel("the demo is over");
        poller.await
    });

    // The guest: a nursery with a reader and a slow job under a timeout.
    let n = now.clone();
    let outcome = host.run_guest(async move {
        guest::open_nursery(async |nursery| {
            let n2 = n.clone();
            nursery.start_soon(async move {
                // Without `go`, this would give up after 1 s.
                let waited = guest::move_on_after(Duration::from_secs(1), go.wait()).await?;
                println!("[{:>5.1} s] guest job: got go: {}", n2(), waited.is_some());
                Ok(())
            })?;
            guest_ready.set();
            println!("[{:>5.1} s] guest: ready", n());
            let mut got = Vec::new();
            window
                .run(async {
                    while let Some(r) = readings_rx.try_next().await? {
                        println!("[{:>5.1} s] guest reader: got {r}", n());
                        got.push(r);
                    }
                    Ok(())
                })
                .await?;
            println!("[{:>5.1} s] guest reader: window closed (caught: {})", n(), window.cancelled_caught());
            Ok((got, window.cancelled_caught()))
        })
        .await
        // `None` only if the nursery itself were cancelled, which this program never does.
        .map(Option::unwrap_or_default)
    });

    let stopped = host.block_on(canceller);
    println!("[{:>5.1} s] guest outcome: {outcome:?}", now());
    println!("[{:>5.1} s] poller returned: {stopped:?}", now());
    host.block_on(handshake).expect("handshake task");
    let sensor = host.block_on(sensor);
    println!("[{:>5.1} s] sensor task: {sensor:?}", now());

    assert_eq!(outcome, Ok((vec![17, 23, 42, 8], true)));
    assert_eq!(stopped, Ok(Ok("the demo is over".to_string())));
    Ok(())
}
