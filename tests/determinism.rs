//! Determinism: a workload of interleaving host and guest tasks (yields, checkpoints, a
//! host→guest event, a guest→host channel, timers) gives the same trace, event for event, on
//! every run with the same seed (or without one); two seeds give two interleavings; without a
//! seed both loops are FIFO (run order = wake order).

mod common;

use std::collections::BTreeSet;

use common::{Log, vclock};
use infect::guest::{self, Event, GuestConfig};
use infect::host::{self, Host};
use infect::time::Instant;
use infect::trace::{self, Side, Trace, TraceEvent as T};

/// Runs the workload on a host with a guest; returns the trace and the application log.
fn host_workload(seed: Option<u64>) -> (Vec<T>, Vec<String>) {
    let trace = Trace::new();
    let mut builder = Host::builder().clock(vclock()).trace(trace.clone());
    if let Some(s) = seed {
        builder = builder.seed(s);
    }
    let host = builder.build().unwrap();
    let log = Log::new();
    let ev = Event::new();
    let (tx, mut rx) = guest::channel::<u32>(2);
    for id in 0..3 {
        let l = log.clone();
        host.spawn(async move {
            for i in 0..4 {
                l.push(format!("h{id}.{i}"));
                host::yield_now().await.unwrap();
            }
        })
        .detach();
    }
    let (l, e) = (log.clone(), ev.clone());
    host.spawn(async move {
        host::sleep(std::time::Duration::from_millis(1)).await.unwrap();
        e.set();
        l.push("h: event set".into());
        while let Ok(Some(v)) = rx.try_next().await {
            l.push(format!("h: got {v}"));
        }
    })
    .detach();
    let lg = log.clone();
    let r = host.run_guest(async move {
        guest::open_nursery(async |n| {
            for id in 0..3 {
                let l = lg.clone();
                n.start_soon(async move {
                    for i in 0..4 {
                        l.push(format!("g{id}.{i}"));
                        guest::checkpoint().await?;
                    }
                    Ok(())
                })?;
            }
            let l = lg.clone();
            n.start_soon(async move {
                ev.wait().await?;
                l.push("g: event seen".into());
                for i in 0..3 {
                    tx.send(i).await?;
                    guest::checkpoint().await?;
                }
                Ok(())
            })?;
            Ok(())
        })
        .await
    });
    assert_eq!(r, Ok(Some(())));
    host.run();
    (trace.take(), log.take())
}

/// The same kind of workload on a standalone guest.
fn guest_workload(seed: Option<u64>) -> Vec<T> {
    let trace = Trace::new();
    let mut config = GuestConfig::new(vclock()).trace(trace.clone());
    if let Some(s) = seed {
        config = config.seed(s);
    }
    let r = guest::run_with(config, async {
        guest::open_nursery(async |n| {
            for id in 0..4u64 {
                n.start_soon(async move {
                    for _ in 0..5 {
                        guest::checkpoint().await?;
                    }
                    guest::sleep(std::time::Duration::from_millis(id)).await
                })?;
            }
            Ok(())
        })
        .await
    });
    assert_eq!(r, Ok(Some(())));
    trace.take()
}

fn subsequence(log: &[String], prefix: char) -> Vec<String> {
    log.iter().filter(|s| s.starts_with(prefix) && s.as_bytes()[1].is_ascii_digit()).cloned().collect()
}

#[test]
fn the_same_seed_gives_the_same_trace_event_for_event() {
    let (a, la) = host_workload(Some(7));
    let (b, lb) = host_workload(Some(7));
    assert!(a.len() > 80, "the workload should be busy: {} events", a.len());
    assert_eq!(a, b);
    assert_eq!(la, lb);
    assert_eq!(trace::hash_events(&a), trace::hash_events(&b));
}

#[test]
fn two_seeds_give_two_interleavings() {
    let (a, la) = host_workload(Some(1));
    let (b, lb) = host_workload(Some(2));
    assert_ne!(a, b);
    assert_ne!(la, lb);
    // Both are complete runs of the same workload: the same log lines, in another order.
    let (ma, mb): (BTreeSet<_>, BTreeSet<_>) = (la.iter().collect(), lb.iter().collect());
    assert_eq!(ma, mb);
    // Ten seeds explore several interleavings.
    let hashes: BTreeSet<u64> = (1..=10).map(|s| trace::hash_events(&host_workload(Some(s)).0)).collect();
    assert!(hashes.len() >= 5, "only {} distinct interleavings out of 10 seeds", hashes.len());
}

#[test]
fn without_a_seed_both_loops_are_fifo_and_reproducible() {
    let (a, la) = host_workload(None);
    let (b, lb) = host_workload(None);
    assert_eq!(a, b);
    assert_eq!(la, lb);
    let rr = |p: char| -> Vec<String> { (0..4).flat_map(|i| (0..3).map(move |id| format!("{p}{id}.{i}"))).collect() };
    assert_eq!(subsequence(&la, 'h'), rr('h'));
    assert_eq!(subsequence(&la, 'g'), rr('g'));
    // The guest→host channel delivers in order, after the event crossed the other way.
    let cross: Vec<&str> = la.iter().filter(|s| s.contains(": ")).map(String::as_str).collect();
    assert_eq!(cross, ["h: event set", "g: event seen", "h: got 0", "h: got 1", "h: got 2"]);
    // Spawn numbers: host tasks 1..=4, then the guest's main task 0 and its five children.
    let spawns: Vec<&T> = a.iter().filter(|e| matches!(e, T::Spawn(..))).collect();
    assert_eq!(
        spawns,
        [
            &T::Spawn(Side::Host, 1),
            &T::Spawn(Side::Host, 2),
            &T::Spawn(Side::Host, 3),
            &T::Spawn(Side::Host, 4),
            &T::Spawn(Side::Guest, 0),
            &T::Spawn(Side::Guest, 1),
            &T::Spawn(Side::Guest, 2),
            &T::Spawn(Side::Guest, 3),
            &T::Spawn(Side::Guest, 4),
        ]
    );
}

#[test]
fn a_seeded_standalone_guest_is_reproducible_and_seeds_differ() {
    assert_eq!(guest_workload(Some(3)), guest_workload(Some(3)));
    assert_eq!(guest_workload(None), guest_workload(None));
    assert_ne!(guest_workload(Some(3)), guest_workload(Some(4)));
    assert_ne!(guest_workload(Some(3)), guest_workload(None));
}

#[test]
fn the_fifo_guest_trace_is_exact() {
    let trace = Trace::new();
    let r = guest::run_with(GuestConfig::new(vclock()).trace(trace.clone()), async {
        guest::open_nursery(async |n| {
            n.start_soon(async { guest::checkpoint().await })?;
            n.start_soon(async { guest::sleep(std::time::Duration::from_secs(1)).await })?;
            Ok(guest::current_time())
        })
        .await
    });
    assert_eq!(r, Ok(Some(Instant::ZERO)));
    use Side::Guest as G;
    assert_eq!(
        trace.take(),
        [
            T::Spawn(G, 0),
            T::Wake(G, 0),
            T::GuestTick,
            T::Poll(G, 0),
            T::Spawn(G, 1),
            T::Wake(G, 1),
            T::Spawn(G, 2),
            T::Wake(G, 2),
            T::GuestTick,
            T::Poll(G, 1),
            T::Wake(G, 1),
            T::Poll(G, 2),
            T::GuestTick,
            T::Poll(G, 1),
            T::Exit(G, 1),
            // At 1 s: the sleeper wakes; its exit wakes the main task waiting for children.
            T::GuestTick,
            T::Wake(G, 2),
            T::Poll(G, 2),
            T::Wake(G, 0),
            T::Exit(G, 2),
            T::GuestTick,
            T::Poll(G, 0),
            T::Exit(G, 0),
        ]
    );
}
