//! A guest riding our host, woken from host code: a host task sets a guest `Event` (exact
//! trace: the guest tick runs in the very next batch), a host task or a `call_later` callback
//! moves or cancels a guest `CancelScope` (the scope catches at exactly that virtual instant),
//! host and guest exchange values over a guest channel, and a guest task is woken from another
//! OS thread.

mod common;

use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use common::{Log, s, secs, vclock};
use infect::guest::{self, CancelScope, Event};
use infect::host::{self, Host};
use infect::time::Instant;
use infect::trace::{Side, Trace, TraceEvent as T};

fn vhost() -> Host {
    Host::builder().clock(vclock()).build().unwrap()
}

#[test]
fn a_host_task_wakes_a_guest_task_directly() {
    let trace = Trace::new();
    let host = Host::builder().clock(vclock()).trace(trace.clone()).build().unwrap();
    let ev = Event::new();
    let e = ev.clone();
    let setter = host.spawn(async move {
        host::sleep(s(3)).await.unwrap();
        e.set();
    });
    let r = host.run_guest(async move {
        ev.wait().await?;
        Ok(guest::current_time())
    });
    assert_eq!(r, Ok(secs(3)));
    assert!(setter.is_finished());
    use Side::{Guest as G, Host as H};
    assert_eq!(
        trace.take(),
        [
            T::Spawn(H, 1),
            T::Spawn(G, 0),
            T::Wake(G, 0),
            // First batch: the host task arms its sleep; the guest's first tick blocks on the
            // event.
            T::Poll(H, 1),
            T::GuestTick,
            T::Poll(G, 0),
            // 3 s later: the host task sets the event, which wakes the guest task...
            T::Poll(H, 1),
            T::Wake(G, 0),
            T::Exit(H, 1),
            // ...which runs in the very next batch.
            T::GuestTick,
            T::Poll(G, 0),
            T::Exit(G, 0),
        ]
    );
}

#[test]
fn a_host_task_moves_a_guest_deadline_earlier() {
    let host = vhost();
    let scope = CancelScope::new();
    let sc = scope.clone();
    let mover = host.spawn(async move {
        host::sleep(s(5)).await.unwrap();
        sc.set_deadline(secs(7));
    });
    let r = host.run_guest(async move {
        let out = scope.run(guest::sleep(s(600))).await?;
        Ok((out, scope.cancelled_caught(), guest::current_time()))
    });
    assert_eq!(r, Ok((None, true, secs(7))));
    assert!(mover.is_finished());
}

#[test]
fn a_host_task_sets_a_guest_deadline_to_now_and_it_catches_at_once() {
    let host = vhost();
    let scope = CancelScope::with_deadline(secs(100));
    let sc = scope.clone();
    let h = Rc::new(host);
    let hh = h.clone();
    let mover = h.spawn(async move {
        host::sleep(s(5)).await.unwrap();
        sc.set_deadline(hh.now());
    });
    let r = h.run_guest(async move {
        let out = scope.run(guest::sleep(s(600))).await?;
        Ok((out, guest::current_time()))
    });
    assert_eq!(r, Ok((None, secs(5))));
    drop(mover);
}

#[test]
fn a_call_later_callback_moves_a_guest_deadline_into_the_past() {
    let host = vhost();
    let scope = CancelScope::new();
    let sc = scope.clone();
    host.call_later(s(4), move || sc.set_deadline(secs(1)));
    let r = host.run_guest(async move {
        let out = scope.run(guest::sleep(s(600))).await?;
        Ok((out, scope.deadline(), guest::current_time()))
    });
    assert_eq!(r, Ok((None, secs(1), secs(4))));
    assert_eq!(host.now(), secs(4));
}

#[test]
fn a_call_later_callback_extends_a_guest_deadline() {
    let host = vhost();
    let scope = CancelScope::with_deadline(secs(3));
    let sc = scope.clone();
    host.call_later(s(2), move || sc.set_deadline(secs(8)));
    let r = host.run_guest(async move {
        let out = scope.run(guest::sleep(s(600))).await?;
        Ok((out, guest::current_time()))
    });
    assert_eq!(r, Ok((None, secs(8))), "the old 3 s deadline must not fire");
}

#[test]
fn a_call_later_callback_removes_a_guest_deadline() {
    let host = vhost();
    let scope = CancelScope::with_deadline(secs(3));
    let sc = scope.clone();
    host.call_later(s(2), move || sc.set_deadline(Instant::NEVER));
    let r = host.run_guest(async move {
        let out = scope.run(guest::sleep(s(10))).await?;
        Ok((out, guest::current_time()))
    });
    assert_eq!(r, Ok((Some(()), secs(10))));
}

#[test]
fn a_host_task_cancels_a_guest_scope() {
    let host = vhost();
    let scope = CancelScope::new();
    let sc = scope.clone();
    let canceller = host.spawn(async move {
        host::sleep(s(9)).await.unwrap();
        sc.cancel();
    });
    let log = Log::new();
    let l = log.clone();
    let r = host.run_guest(async move {
        guest::open_nursery(async |n| {
            let (sc, l) = (scope.clone(), l.clone());
            n.start_soon(async move {
                let out = sc.run(guest::sleep_forever()).await?;
                l.push(format!("child {out:?} at {:?}", guest::current_time()));
                Ok(())
            })?;
            guest::sleep(s(20)).await?;
            Ok(guest::current_time())
        })
        .await
    });
    assert_eq!(r, Ok(Some(secs(20))));
    assert_eq!(log.take(), [format!("child None at {:?}", secs(9))]);
    drop(canceller);
}

#[test]
fn host_and_guest_exchange_values_over_guest_channels() {
    let host = vhost();
    let (to_guest, mut from_host) = guest::channel::<u32>(4);
    let (to_host, mut from_guest) = guest::channel::<u32>(4);
    let echo = host.spawn(async move {
        let mut seen = Vec::new();
        // A guest receiver awaited by a host task is a plain future.
        while let Ok(Some(v)) = from_guest.try_next().await {
            seen.push(v);
            host::sleep(s(1)).await.unwrap();
            if to_guest.send_nowait(v * 10).is_err() {
                break;
            }
        }
        seen
    });
    let r = host.run_guest(async move {
        let mut back = Vec::new();
        for i in 1..=3 {
            to_host.send(i).await?;
            back.push((from_host.try_next().await?, guest::current_time()));
        }
        Ok(back)
    });
    assert_eq!(r, Ok(vec![(Some(10), secs(1)), (Some(20), secs(2)), (Some(30), secs(3))]));
    // The guest's sender is gone: the host task sees end-of-channel and returns.
    assert_eq!(host.block_on(echo), Ok(vec![1, 2, 3]));
}

#[test]
fn host_and_guest_ping_pong_through_events() {
    let trace = Trace::new();
    let host = Host::builder().clock(vclock()).trace(trace.clone()).build().unwrap();
    const N: usize = 50;
    let pings: Rc<Vec<Event>> = Rc::new((0..N).map(|_| Event::new()).collect());
    let pongs: Rc<Vec<Event>> = Rc::new((0..N).map(|_| Event::new()).collect());
    let (pi, po) = (pings.clone(), pongs.clone());
    let player = host.spawn(async move {
        for i in 0..N {
            pi[i].set();
            po[i].wait().await.unwrap();
        }
        N
    });
    let r = host.run_guest(async move {
        for i in 0..N {
            pings[i].wait().await?;
            pongs[i].set();
        }
        Ok(guest::current_time())
    });
    assert_eq!(r, Ok(Instant::ZERO));
    assert_eq!(host.block_on(player), Ok(N));
    let events = trace.take();
    let ticks = events.iter().filter(|e| **e == T::GuestTick).count();
    let host_polls = events.iter().filter(|e| **e == T::Poll(Side::Host, 1)).count();
    // One guest tick and one host poll per round trip, plus the host task's first poll (which
    // sets the first ping before the guest's first tick answers it).
    assert_eq!((ticks, host_polls), (N, N + 1));
}

#[test]
// Miri: the loop parks in poll(2) until the other thread's wake, which Miri cannot run.
#[cfg_attr(miri, ignore)]
fn a_guest_task_is_woken_from_another_thread() {
    // Monotonic clock, nothing else to do: the host parks until the other thread's wake.
    let host = Host::new().unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let slot: Arc<Mutex<Option<Waker>>> = Arc::default();
    let (f, w) = (flag.clone(), slot.clone());
    let wall = std::time::Instant::now();
    let r = host.run_guest(async move {
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(40));
            f.store(true, Ordering::SeqCst);
            // Wait for the guest task to have parked its waker, then wake it from here.
            loop {
                if let Some(w) = w.lock().unwrap().take() {
                    w.wake();
                    break;
                }
                std::thread::yield_now();
            }
        });
        poll_fn(|cx| {
            if flag.load(Ordering::SeqCst) && slot.lock().unwrap().is_none() {
                Poll::Ready(())
            } else {
                *slot.lock().unwrap() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        t.join().unwrap();
        Ok("woken")
    });
    assert_eq!(r, Ok("woken"));
    let waited = wall.elapsed();
    assert!(waited >= Duration::from_millis(40) && waited < Duration::from_secs(5), "{waited:?}");
}

#[test]
// Miri: the loop parks in poll(2) until the other thread's wake, which Miri cannot run.
#[cfg_attr(miri, ignore)]
fn a_standalone_guest_task_is_woken_from_another_thread() {
    let flag = Arc::new(AtomicBool::new(false));
    let slot: Arc<Mutex<Option<Waker>>> = Arc::default();
    let (f, w) = (flag.clone(), slot.clone());
    let r = guest::run(async move {
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            f.store(true, Ordering::SeqCst);
            loop {
                if let Some(w) = w.lock().unwrap().take() {
                    w.wake();
                    break;
                }
                std::thread::yield_now();
            }
        });
        poll_fn(|cx| {
            if flag.load(Ordering::SeqCst) && slot.lock().unwrap().is_none() {
                Poll::Ready(())
            } else {
                *slot.lock().unwrap() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        t.join().unwrap();
        Ok(1)
    });
    assert_eq!(r, Ok(1));
}

/// One guest batch takes the tasks woken from other threads first, then those woken on the
/// run's own thread, each in wake order (the host's rule for its injector and local queue): tasks
/// 1 and 0 woken here, then task 2 woken from a thread that is joined before the tick, are polled
/// 2, 1, 0. With wakes from one thread only the order is the wake order (every other test).
#[test]
fn a_guest_batch_polls_other_threads_wakes_first_then_its_own_in_wake_order() {
    use std::cell::{Cell, RefCell};
    let log: Rc<RefCell<Vec<usize>>> = Rc::default();
    let wakers: Rc<RefCell<[Option<Waker>; 3]>> = Rc::default();
    let go = Rc::new(Cell::new(false));
    let (l, w, g) = (log.clone(), wakers.clone(), go.clone());
    let r = guest::run_with(guest::GuestConfig::new(Rc::new(infect::time::VirtualClock::new())), async move {
        guest::open_nursery(async |n| {
            for i in 0..3 {
                let (l, w, g) = (l.clone(), w.clone(), g.clone());
                n.start_soon(async move {
                    poll_fn(|cx| {
                        if g.get() {
                            l.borrow_mut().push(i);
                            Poll::Ready(())
                        } else {
                            w.borrow_mut()[i] = Some(cx.waker().clone());
                            Poll::Pending
                        }
                    })
                    .await;
                    Ok(())
                })?;
            }
            // One tick: the children run and park.
            guest::checkpoint().await?;
            assert!(w.borrow().iter().all(Option::is_some), "every child parked");
            g.set(true);
            let [w0, w1, w2] = std::mem::take(&mut *w.borrow_mut()).map(Option::unwrap);
            w1.wake();
            w0.wake();
            std::thread::spawn(move || w2.wake()).join().unwrap();
            Ok(())
        })
        .await
    });
    assert_eq!(r, Ok(Some(())));
    assert_eq!(*log.borrow(), [2, 1, 0]);
}

#[test]
fn guest_and_host_share_one_virtual_timeline() {
    let host = vhost();
    let log = Log::new();
    let (lh, lg) = (log.clone(), log.clone());
    let ticker = host.spawn(async move {
        for _ in 0..3 {
            host::sleep(s(2)).await.unwrap();
            lh.push(("host", host::sleep(Duration::ZERO).await.is_ok(), 0));
        }
    });
    let h = Rc::new(host);
    let hc = h.clone();
    let r = h.run_guest(async move {
        for _ in 0..2 {
            guest::sleep(s(3)).await?;
            lg.push(("guest", true, guest::current_time().as_nanos() / 1_000_000_000));
        }
        Ok(hc.now())
    });
    assert_eq!(r, Ok(secs(6)));
    h.block_on(ticker).unwrap();
    // Host at 2, 4, 6 s; guest at 3, 6 s. At 6 s both are due: the host timer fired in the
    // same turn as the guest's wake-up, host first (it was armed first).
    assert_eq!(
        log.take(),
        [("host", true, 0), ("guest", true, 3), ("host", true, 0), ("host", true, 0), ("guest", true, 6)]
    );
}

#[test]
fn a_host_whose_guest_panicked_runs_a_new_guest_and_its_tasks() {
    // A guest task panics inside `run_guest`; the caller catches the panic and reuses the host.
    // The unwinding tick must leave the guest scheduler as it found it, or the next guest (and
    // the host's own tasks) never get to run.
    let host = vhost();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        host.run_guest(async {
            guest::sleep(s(1)).await?;
            panic!("guest task panics");
            #[allow(unreachable_code)]
            Ok(())
        })
    }));
    assert!(caught.is_err());
    let t = host.spawn(async {
        host::sleep(s(2)).await.unwrap();
        7
    });
    let r = host.run_guest(async {
        guest::sleep(s(1)).await?;
        Ok(guest::current_time())
    });
    assert_eq!(r, Ok(secs(2)));
    assert_eq!(host.block_on(t), Ok(7));
}
