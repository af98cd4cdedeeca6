//! The hook contract on a host that is not built on `async-task` (the test-local
//! [`CallbackLoop`]): hooks only schedule, never run guest code; tick requests are
//! deduplicated; `wake_at` reports exactly the next deadline (and `NEVER` when done); loop
//! callbacks that set a guest `Event`, move a deadline or cancel a scope take effect at exactly
//! their virtual instant.

mod common;

use common::{CallbackLoop, Log, boom, s, secs};
use infect::guest::{self, CancelScope, Event};
use infect::time::Instant;

#[test]
fn hooks_only_schedule_and_one_tick_serves_many_wakes() {
    let lp = CallbackLoop::new();
    let events: Vec<Event> = (0..3).map(|_| Event::new()).collect();
    let log = Log::new();
    let (evs, l) = (events.clone(), log.clone());
    let (run, out) = lp.start(async move {
        guest::open_nursery(async |n| {
            for (i, ev) in evs.iter().enumerate() {
                let (ev, l) = (ev.clone(), l.clone());
                n.start_soon(async move {
                    ev.wait().await?;
                    l.push(format!("task {i} at {:?}", guest::current_time()));
                    Ok(())
                })?;
            }
            Ok(())
        })
        .await
    });
    // Starting only asked for a tick; nothing of the guest has run.
    assert_eq!(lp.soon_calls(), 1);
    assert_eq!(lp.jobs_run.get(), 0);
    while lp.run_one() {}
    assert_eq!(log.snapshot(), Vec::<String>::new());
    let soon_before = lp.soon_calls();
    // Host-side code (a loop callback) sets all three events at 5 s.
    let evs = events.clone();
    lp.call_at(secs(5), move || evs.iter().for_each(Event::set));
    lp.run_until(|| lp.now() == secs(5) && lp.pending_jobs() > 0);
    // Three wakes, one tick request, and still no guest code ran inside the callback.
    assert_eq!(lp.soon_calls(), soon_before + 1);
    assert_eq!(log.snapshot(), Vec::<String>::new());
    lp.run_until(|| !out.borrow().is_empty());
    assert!(run.is_finished());
    assert_eq!(*out.borrow(), vec![Ok(Some(()))]);
    let at5 = format!("{:?}", secs(5));
    assert_eq!(log.take(), [0, 1, 2].map(|i| format!("task {i} at {at5}")));
}

#[test]
fn wake_at_reports_exactly_the_next_deadline_as_it_moves() {
    let lp = CallbackLoop::new();
    let scope = CancelScope::with_deadline(secs(30));
    let sc = scope.clone();
    lp.call_at(secs(10), move || sc.set_deadline(secs(12)));
    let r = lp.run_guest(async move {
        let out = scope.run(guest::sleep(s(600))).await?;
        Ok((out, guest::current_time()))
    });
    assert_eq!(r, Ok((None, secs(12))));
    assert_eq!(lp.wake_at_calls(), [secs(30), secs(12), Instant::NEVER]);
    assert_eq!(lp.soon_calls(), 1, "the deadline alone carried the run after its first tick");
}

#[test]
fn a_loop_callback_wakes_a_guest_task_at_its_instant() {
    let lp = CallbackLoop::new();
    let ev = Event::new();
    let e = ev.clone();
    lp.call_at(secs(7), move || e.set());
    let r = lp.run_guest(async move {
        ev.wait().await?;
        Ok(guest::current_time())
    });
    assert_eq!(r, Ok(secs(7)));
}

#[test]
fn a_loop_callback_cancels_a_guest_scope_at_its_instant() {
    let lp = CallbackLoop::new();
    let scope = CancelScope::new();
    let sc = scope.clone();
    lp.call_at(secs(2), move || sc.cancel());
    let r = lp.run_guest(async move {
        let out = scope.run(guest::sleep_forever()).await?;
        Ok((out, scope.cancelled_caught(), guest::current_time()))
    });
    assert_eq!(r, Ok((None, true, secs(2))));
}

#[test]
fn a_loop_callback_moves_a_deadline_into_the_past() {
    let lp = CallbackLoop::new();
    let scope = CancelScope::new();
    let sc = scope.clone();
    lp.call_at(secs(3), move || sc.set_deadline(Instant::ZERO));
    let r = lp.run_guest(async move {
        let r = guest::fail_at(Instant::NEVER, async {
            scope.run(guest::sleep(s(60))).await?;
            Ok(guest::current_time())
        })
        .await;
        Ok(r)
    });
    assert_eq!(r, Ok(Ok(secs(3))));
}

#[test]
fn an_error_in_a_nursery_reaches_done_on_the_callback_loop() {
    let lp = CallbackLoop::new();
    let r: infect::Result<Option<()>> = lp.run_guest(async {
        guest::open_nursery(async |n| {
            n.start_soon(async {
                guest::sleep(s(4)).await?;
                Err(boom("Late", "failed at 4 s"))
            })?;
            guest::sleep_forever().await
        })
        .await
    });
    assert_eq!(r, Err(boom("Late", "failed at 4 s")));
    assert_eq!(lp.now(), secs(4));
}

#[test]
fn a_too_slow_guest_fails_at_its_deadline_on_the_callback_loop() {
    let lp = CallbackLoop::new();
    let r = lp.run_guest(async { guest::fail_after(s(1), guest::sleep(s(2))).await });
    assert_eq!(r, Err(infect::Error::TooSlow));
    assert_eq!(lp.now(), secs(1));
}
