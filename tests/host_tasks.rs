//! The host executor on its own: join values, `call_soon` FIFO order, `call_at` order by
//! `(deadline, arming order)` at exact virtual instants, `yield_now` fairness, cancellation
//! (the exact reason at every host-aware await, one cooperative poll then enforced drop, poll
//! and drop counters), detach, `cancel_current`, shutdown that drops every task and callback,
//! and `call_soon_threadsafe` from another thread waking a parked loop.

mod common;

use std::cell::Cell;
use std::future::{Future, pending, poll_fn};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{Counted, DropCounter, Log, s, secs, vclock};
use infect::Cancelled;
use infect::guest::Event;
use infect::host::{self, Host, Remote};
use infect::time::Instant;

fn vhost() -> Host {
    Host::builder().clock(vclock()).build().unwrap()
}

fn cancelled(reason: &str) -> Cancelled {
    Cancelled::new(reason)
}

#[test]
fn spawned_tasks_are_joined_with_their_values_and_numbered_in_order() {
    let host = vhost();
    let a = host.spawn(async { 1 });
    let b = host.spawn(async {
        host::sleep(s(2)).await.unwrap();
        "two"
    });
    assert_eq!((a.id(), b.id()), (1, 2));
    // `block_on`'s future is no task: cancelling "the current task" there cancels nothing.
    let r = host.block_on(async {
        host::cancel_current("not a task");
        (a.await, b.await, host::check_cancelled())
    });
    assert_eq!(r, (Ok(1), Ok("two"), Ok(())));
    assert_eq!(host.now(), secs(2));
}

#[test]
fn block_on_polls_a_borrowing_future() {
    let host = vhost();
    let mut local = vec![1, 2];
    let r = host.block_on(async {
        host::sleep(s(1)).await.unwrap();
        local.push(3);
        local.len()
    });
    assert_eq!(r, 3);
    assert_eq!(local, [1, 2, 3]);
}

#[test]
fn call_soon_runs_callbacks_in_fifo_order_interleaved_with_tasks() {
    let host = Rc::new(vhost());
    let log = Log::new();
    let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
    let h = host.clone();
    host.call_soon(move || {
        l1.push("a");
        let l = l1.clone();
        // Queued from a callback: after everything already queued.
        h.call_soon(move || l.push("a-nested"));
    });
    let lt = log.clone();
    host.spawn(async move {
        lt.push("task 0");
        host::yield_now().await.unwrap();
        lt.push("task 1");
    })
    .detach();
    host.call_soon(move || l2.push("b"));
    host.call_soon(move || l3.push("c"));
    host.run();
    assert_eq!(log.take(), ["a", "task 0", "b", "c", "a-nested", "task 1"]);
}

#[test]
fn call_at_runs_by_deadline_then_arming_order_at_exact_instants() {
    let host = Rc::new(vhost());
    let log = Log::new();
    let rec = |name: &'static str| {
        let (l, h) = (log.clone(), host.clone());
        move || l.push((name, h.now()))
    };
    host.call_at(secs(3), rec("c"));
    host.call_at(secs(1), rec("a1"));
    let x = host.call_at(secs(2), rec("cancelled"));
    host.call_at(secs(2), rec("b"));
    host.call_at(secs(1), rec("a2"));
    host.call_later(s(1), rec("a3"));
    assert!(host.cancel_call(x));
    assert!(!host.cancel_call(x), "a cancelled call cannot be cancelled twice");
    assert_eq!(host.next_deadline(), Some(secs(1)));
    host.run();
    assert_eq!(log.take(), [("a1", secs(1)), ("a2", secs(1)), ("a3", secs(1)), ("b", secs(2)), ("c", secs(3))]);
    assert_eq!(host.now(), secs(3));
    assert_eq!(host.next_deadline(), None);
}

#[test]
fn a_call_that_already_ran_cannot_be_cancelled() {
    let host = vhost();
    let ran = Rc::new(Cell::new(0));
    let r = ran.clone();
    let call = host.call_later(s(1), move || r.set(r.get() + 1));
    host.block_on(host::sleep(s(2))).unwrap();
    assert_eq!(ran.get(), 1);
    assert!(!host.cancel_call(call));
}

#[test]
fn ten_virtual_minutes_of_host_sleep_pass_instantly() {
    let host = vhost();
    let wall = std::time::Instant::now();
    let t = host.block_on(async {
        host::sleep(Duration::from_secs(600)).await.unwrap();
        host::sleep_until(secs(601)).await.unwrap();
        Instant::from_nanos(0)
    });
    assert_eq!(t, Instant::ZERO);
    assert_eq!(host.now(), secs(601));
    assert!(wall.elapsed() < Duration::from_secs(2));
}

#[test]
fn yield_now_is_fair_round_robin() {
    let host = vhost();
    let log = Log::new();
    for id in 1..=3 {
        let l = log.clone();
        host.spawn(async move {
            for i in 0..3 {
                l.push((id, i));
                host::yield_now().await.unwrap();
            }
        })
        .detach();
    }
    host.run();
    assert_eq!(log.take(), [(1, 0), (2, 0), (3, 0), (1, 1), (2, 1), (3, 1), (1, 2), (2, 2), (3, 2)]);
}

#[test]
fn a_cancelled_task_sees_the_reason_at_every_host_aware_await() {
    let host = vhost();
    let r = host.block_on(async {
        let h = host::spawn(async {
            let first = host::sleep(s(100)).await;
            let at = host::sleep(Duration::ZERO).await;
            let second = host::sleep(s(1)).await;
            let yielded = host::yield_now().await;
            (first, at, second, yielded, host::check_cancelled())
        })
        .unwrap();
        host::sleep(s(5)).await.unwrap();
        h.cancel("stop please");
        h.cancel("a second reason is ignored");
        assert!(h.is_cancel_requested());
        h.await
    });
    let c = || Err(cancelled("stop please"));
    assert_eq!(r, Ok((c(), c(), c(), c(), c())));
    assert_eq!(host.now(), secs(5));
    assert_eq!(cancelled("stop please").to_string(), "host task cancelled: stop please");
}

#[test]
fn an_uncooperative_task_is_dropped_after_its_grace_poll() {
    let host = vhost();
    let drops = DropCounter::new();
    let guard = drops.guard();
    let (fut, polls) = Counted::new(async move {
        let _g = guard;
        pending::<()>().await;
    });
    let h = host.spawn(fut);
    host.block_on(host::sleep(s(1))).unwrap();
    assert_eq!(polls.get(), 1);
    assert_eq!(drops.dropped(), 0);
    h.cancel("enough");
    assert_eq!(polls.get(), 1, "cancel only requests; the loop polls");
    let r = host.block_on(h);
    assert_eq!(r, Err(cancelled("enough")));
    assert_eq!(polls.get(), 2, "exactly one grace poll");
    assert_eq!(drops.dropped(), 1);
    assert_eq!(host.now(), secs(1));
}

#[test]
fn a_task_still_pending_after_seeing_its_cancellation_is_dropped() {
    let host = vhost();
    let drops = DropCounter::new();
    let guard = drops.guard();
    let log = Log::new();
    let l = log.clone();
    let h = host.spawn(async move {
        let _g = guard;
        let r = host::sleep(s(100)).await;
        l.push(format!("saw {r:?}"));
        // "Clean-up" that waits on something that is not host-aware: never finishes.
        Event::new().wait().await.unwrap();
        l.push("not reached".to_string());
    });
    host.call_later(s(3), move || h.cancel("shutting down"));
    host.run();
    assert_eq!(log.take(), [format!("saw {:?}", Err::<(), _>(cancelled("shutting down")))]);
    assert_eq!(drops.dropped(), 1);
    assert_eq!(host.now(), secs(3));
}

#[test]
fn cancel_current_cancels_the_running_task() {
    let host = vhost();
    let r = host.block_on(async {
        host::spawn(async {
            host::cancel_current("self-inflicted");
            host::sleep(s(1)).await
        })
        .unwrap()
        .await
    });
    assert_eq!(r, Ok(Err(cancelled("self-inflicted"))));
    assert_eq!(host.now(), Instant::ZERO);
}

#[test]
fn dropping_a_join_handle_cancels_and_detaching_lets_it_run() {
    let host = vhost();
    let log = Log::new();
    let (l1, l2) = (log.clone(), log.clone());
    let dropped = host.spawn(async move {
        let r = host::sleep(s(10)).await;
        l1.push(format!("dropped handle: {r:?}"));
    });
    let detached = host.spawn(async move {
        let r = host::sleep(s(10)).await;
        l2.push(format!("detached: {r:?}"));
    });
    drop(dropped);
    detached.detach();
    host.run();
    assert_eq!(
        log.take(),
        [
            format!("dropped handle: {:?}", Err::<(), _>(cancelled("join handle dropped"))),
            "detached: Ok(())".to_string(),
        ]
    );
    assert_eq!(host.now(), secs(10));
}

#[test]
fn a_finished_task_ignores_cancellation() {
    let host = vhost();
    let h = host.spawn(async { 5 });
    host.run_until_stalled();
    assert!(h.is_finished());
    h.cancel("too late");
    assert_eq!(host.block_on(h), Ok(5));
}

#[test]
fn host_spawn_and_checks_outside_a_loop() {
    assert!(host::spawn(async {}).is_none());
    host::cancel_current("no task: no effect");
    assert_eq!(host::check_cancelled(), Ok(()));
}

#[test]
fn dropping_the_host_drops_every_task_and_callback() {
    let host = vhost();
    let drops = DropCounter::new();
    // Blocked in a host-aware sleep.
    let g = drops.guard();
    let sleeping = host.spawn(async move {
        let _g = g;
        host::sleep(s(1000)).await
    });
    // Detached, blocked forever on a foreign future.
    let g = drops.guard();
    host.spawn(async move {
        let _g = g;
        pending::<()>().await
    })
    .detach();
    // Blocked on a guest Event (no guest run at all).
    let g = drops.guard();
    let ev = Event::new();
    let e = ev.clone();
    let waiting = host.spawn(async move {
        let _g = g;
        e.wait().await
    });
    host.run_until_stalled();
    // Spawned but never polled, and callbacks that never ran.
    let g = drops.guard();
    let never_polled = host.spawn(async move {
        let _g = g;
    });
    let g = drops.guard();
    host.call_soon(move || drop(g));
    let g = drops.guard();
    host.call_later(s(5), move || drop(g));
    assert_eq!(drops.dropped(), 0);
    drop(host);
    assert_eq!(drops.dropped(), 6, "nothing outlives the executor");
    // The handles report the shutdown.
    let mut cx = Context::from_waker(Waker::noop());
    let mut h = sleeping;
    assert!(h.is_finished());
    assert_eq!(Pin::new(&mut h).poll(&mut cx), Poll::Ready(Err(cancelled("host shut down"))));
    let mut w = waiting;
    assert_eq!(Pin::new(&mut w).poll(&mut cx), Poll::Ready(Err(cancelled("host shut down"))));
    let mut n = never_polled;
    assert_eq!(Pin::new(&mut n).poll(&mut cx), Poll::Ready(Err(cancelled("host shut down"))));
    // Setting the event now wakes nothing and breaks nothing.
    ev.set();
}

#[test]
fn the_remote_handle_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Remote>();
}

#[test]
// Miri: the loop parks in poll(2) until the other thread's wake, which Miri cannot run.
#[cfg_attr(miri, ignore)]
fn call_soon_threadsafe_from_another_thread_wakes_a_parked_loop() {
    // Monotonic clock, no timers, no fds: the loop parks with no timeout; only the wake fd can
    // get it going again.
    let host = Host::new().unwrap();
    let remote = host.remote();
    let flag = Arc::new(AtomicBool::new(false));
    let waker: Arc<Mutex<Option<Waker>>> = Arc::default();
    let (f, w) = (flag.clone(), waker.clone());
    let other = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let on = std::thread::current().id();
        remote.call_soon_threadsafe(move || {
            // Runs on the host thread, not on the caller's.
            assert_ne!(std::thread::current().id(), on);
            f.store(true, Ordering::SeqCst);
            if let Some(w) = w.lock().unwrap().take() {
                w.wake();
            }
        });
    });
    let wall = std::time::Instant::now();
    let host_thread = std::thread::current().id();
    let r = host.block_on(poll_fn(|cx| {
        if flag.load(Ordering::SeqCst) {
            Poll::Ready(std::thread::current().id())
        } else {
            *waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }));
    other.join().unwrap();
    assert_eq!(r, host_thread);
    let waited = wall.elapsed();
    assert!(waited >= Duration::from_millis(50), "returned before the callback: {waited:?}");
    assert!(waited < Duration::from_secs(5), "the parked loop was not woken promptly: {waited:?}");
}

#[test]
fn call_soon_threadsafe_callbacks_from_many_threads_all_run() {
    let host = Host::new().unwrap();
    let count = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (remote, count) = (host.remote(), count.clone());
            std::thread::spawn(move || {
                for i in 0..25 {
                    let c = count.clone();
                    remote.call_soon_threadsafe(move || c.lock().unwrap().push((t, i)));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    host.run();
    let got = count.lock().unwrap().clone();
    assert_eq!(got.len(), 100);
    // Each thread's callbacks run in the order that thread queued them.
    for t in 0..4 {
        let mine: Vec<_> = got.iter().filter(|(th, _)| *th == t).map(|(_, i)| *i).collect();
        assert_eq!(mine, (0..25).collect::<Vec<_>>());
    }
}

#[test]
fn a_task_that_panics_does_not_stay_current_after_the_panic_is_caught() {
    let host = vhost();
    let h = host.spawn(async {
        if let Err(c) = host::sleep(s(10)).await {
            panic!("task saw {c:?} and panicked");
        }
    });
    h.cancel("stop");
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| host.block_on(h)));
    assert!(caught.is_err(), "the task's panic unwinds out of the loop");
    // Outside any task again: no current task, no cancellation, a sleep that sleeps.
    let start = host.now();
    // Were the panicked task still current, `cancel_current` would cancel it and the sleep
    // and the check would see that.
    let r = host.block_on(async {
        host::cancel_current("is the panicked task still current?");
        let slept = host::sleep(s(2)).await;
        (slept, host::check_cancelled())
    });
    assert_eq!(r, (Ok(()), Ok(())));
    assert_eq!(host.now(), start + s(2));
}

#[test]
fn a_host_sleep_wakes_the_waker_of_its_latest_poll() {
    let host = vhost();
    let other = common::WakeCount::new();
    let o = other.clone();
    let h = host.spawn(async move {
        let mut sleep = Box::pin(host::sleep(s(1)));
        assert!(sleep.as_mut().poll(&mut Context::from_waker(&o.waker())).is_pending());
        // Now awaited by this task, next to a 5 s guard: the 1 s timer must wake this task.
        let guard = Box::pin(host::sleep(s(5)));
        match futures::future::select(sleep, guard).await {
            futures::future::Either::Left((r, _)) => (r, "sleep", host::sleep(Duration::ZERO).await),
            futures::future::Either::Right((r, _)) => (r, "guard", Ok(())),
        }
    });
    assert_eq!(host.block_on(h), Ok((Ok(()), "sleep", Ok(()))));
    assert_eq!(host.now(), secs(1));
    assert_eq!(other.count(), 0, "the replaced waker is not woken");
}

#[test]
fn host_sleep_fixes_its_deadline_at_the_first_poll() {
    let clock = vclock();
    let host = Host::builder().clock(clock.clone()).build().unwrap();
    // Made outside the loop, awaited 10 s later: it still sleeps 2 s from its first poll.
    let sleep = host::sleep(s(2));
    clock.advance(s(10));
    assert_eq!(host.block_on(sleep), Ok(()));
    assert_eq!(host.now(), secs(12));
}
