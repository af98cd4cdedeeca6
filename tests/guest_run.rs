//! The two ways to run a guest, one scheduler: the outcome of `main` reaches the caller (or
//! `done`, exactly once) unchanged under `guest::run`, `GuestConfig::run`, `Host::run_guest`,
//! `Host::start_guest_run`, and a callback loop that only implements `guest::Hooks`; virtual
//! time is exact under each; setup errors come back from the call; a run that is abandoned
//! reports `GuestRunAbandoned` and drops its tasks.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::{CallbackLoop, DropCounter, Outcomes, boom, s, secs, vclock};
use infect::guest::{self, GuestConfig};
use infect::host::Host;
use infect::time::{Clock, Instant, MonotonicClock};
use infect::{Error, Result};

/// The guest workload whose outcome every runner must report unchanged: a nursery of two
/// tasks that sleep, then the main task's own sleep; returns the time and a value.
async fn sleepy_main(value: u32) -> Result<(Instant, u32)> {
    guest::open_nursery(async |n| {
        n.start_soon(async { guest::sleep(s(3)).await })?;
        n.start_soon(async { guest::sleep(s(5)).await })?;
        guest::sleep(s(1)).await?;
        Ok(())
    })
    .await?;
    guest::sleep(Duration::from_secs(600)).await?;
    Ok((guest::current_time(), value))
}

async fn failing_main() -> Result<u32> {
    guest::sleep(s(2)).await?;
    Err(boom("Boom", "main failed"))
}

// ---- guest::run -------------------------------------------------------------------------------

#[test]
fn run_returns_the_value_of_main() {
    assert_eq!(guest::run(async { Ok(6 * 7) }), Ok(42));
}

#[test]
fn run_returns_the_error_of_main() {
    let r: Result<u32> = guest::run(async { Err(boom("Boom", "main failed")) });
    let e = r.unwrap_err();
    assert_eq!(e, boom("Boom", "main failed"));
    assert_eq!(e.kind(), "Boom");
    assert_eq!(e.to_string(), "main failed");
}

#[test]
// Miri: the monotonic clock parks the loop in poll(2), which Miri cannot run.
#[cfg_attr(miri, ignore)]
fn run_on_the_monotonic_clock_really_sleeps() {
    let wall = std::time::Instant::now();
    let r = guest::run(async {
        let t0 = guest::current_time();
        guest::sleep(Duration::from_millis(30)).await?;
        Ok(guest::current_time() - t0)
    });
    let slept = r.unwrap();
    assert!(slept >= Duration::from_millis(30), "guest clock advanced only {slept:?}");
    assert!(wall.elapsed() >= Duration::from_millis(30));
}

#[test]
fn config_run_on_a_virtual_clock_is_exact_and_instant() {
    let clock = vclock();
    let wall = std::time::Instant::now();
    let r = GuestConfig::new(clock.clone()).run(sleepy_main(7));
    // 5 s (the nursery waits for its slowest child) + 600 s.
    assert_eq!(r, Ok((secs(605), 7)));
    assert_eq!(clock.now(), secs(605));
    assert!(wall.elapsed() < Duration::from_secs(5), "autojump should make this instant");
}

#[test]
fn config_run_reports_the_error_at_its_virtual_instant() {
    let clock = vclock();
    let r = GuestConfig::new(clock.clone()).run(failing_main());
    assert_eq!(r, Err(boom("Boom", "main failed")));
    assert_eq!(clock.now(), secs(2));
}

// ---- on our host ------------------------------------------------------------------------------

#[test]
fn host_run_guest_returns_the_value_of_main() {
    let clock = vclock();
    let host = Host::builder().clock(clock.clone()).build().unwrap();
    assert_eq!(host.run_guest(sleepy_main(9)), Ok((secs(605), 9)));
    assert_eq!(host.now(), secs(605));
    assert!(!host.guest_running());
}

#[test]
fn host_run_guest_returns_the_error_of_main() {
    let clock = vclock();
    let host = Host::builder().clock(clock.clone()).build().unwrap();
    assert_eq!(host.run_guest(failing_main()), Err(boom("Boom", "main failed")));
    assert_eq!(host.now(), secs(2));
}

#[test]
fn host_start_guest_run_calls_done_exactly_once_with_ok() {
    let host = Host::builder().clock(vclock()).build().unwrap();
    let done: Outcomes<(Instant, u32)> = Rc::default();
    let d = done.clone();
    host.start_guest_run(sleepy_main(3), move |r| d.borrow_mut().push(r)).unwrap();
    assert!(host.guest_running());
    assert!(done.borrow().is_empty(), "done must not be called before the host runs");
    host.run();
    assert_eq!(*done.borrow(), vec![Ok((secs(605), 3))]);
    assert!(!host.guest_running());
    // Running the host again, or dropping it, never calls done a second time.
    host.run();
    drop(host);
    assert_eq!(done.borrow().len(), 1);
}

#[test]
fn host_start_guest_run_calls_done_exactly_once_with_err() {
    let host = Host::builder().clock(vclock()).build().unwrap();
    let done: Outcomes<u32> = Rc::default();
    let d = done.clone();
    host.start_guest_run(failing_main(), move |r| d.borrow_mut().push(r)).unwrap();
    host.run();
    drop(host);
    assert_eq!(*done.borrow(), vec![Err(boom("Boom", "main failed"))]);
}

#[test]
fn a_second_guest_run_on_one_host_is_refused_at_setup() {
    let host = Host::builder().clock(vclock()).build().unwrap();
    let first: Outcomes<u32> = Rc::default();
    let f = first.clone();
    host.start_guest_run(
        async {
            guest::sleep(s(1)).await?;
            Ok(1)
        },
        move |r| f.borrow_mut().push(r),
    )
    .unwrap();
    let second_done = Rc::new(RefCell::new(0));
    let sd = second_done.clone();
    let r = host.start_guest_run(async { Ok(2) }, move |_: Result<u32>| *sd.borrow_mut() += 1);
    assert_eq!(r, Err(Error::GuestAlreadyRunning));
    host.run();
    assert_eq!(*first.borrow(), vec![Ok(1)]);
    assert_eq!(*second_done.borrow(), 0, "a refused run never calls its done");
    // Once the first finished, a new run may start.
    assert_eq!(host.run_guest(async { Ok(3) }), Ok(3));
}

#[test]
fn dropping_the_host_abandons_a_running_guest() {
    let host = Host::builder().clock(vclock()).build().unwrap();
    let drops = DropCounter::new();
    let done: Outcomes<Option<()>> = Rc::default();
    let d = done.clone();
    let (g_main, g_child) = (drops.guard(), drops.guard());
    host.start_guest_run(
        async move {
            let _g = g_main;
            guest::open_nursery(async |n| {
                n.start_soon(async move {
                    let _g = g_child;
                    guest::sleep_forever().await
                })?;
                guest::sleep_forever().await
            })
            .await
        },
        move |r| d.borrow_mut().push(r),
    )
    .unwrap();
    // Let the guest block, without finishing: run the host until it stalls.
    host.run_until_stalled();
    assert!(host.guest_running());
    assert_eq!(drops.dropped(), 0);
    drop(host);
    assert_eq!(*done.borrow(), vec![Err(Error::GuestRunAbandoned)]);
    assert_eq!(drops.dropped(), 2, "both guest tasks were dropped");
}

#[test]
fn dropping_the_guest_run_handle_abandons_the_run() {
    let lp = CallbackLoop::new();
    let drops = DropCounter::new();
    let g = drops.guard();
    let (run, out) = lp.start(async move {
        let _g = g;
        guest::sleep(s(10)).await?;
        Ok(5)
    });
    while lp.run_one() {}
    assert!(!run.is_finished());
    assert!(out.borrow().is_empty());
    drop(run);
    assert_eq!(*out.borrow(), vec![Err(Error::GuestRunAbandoned)]);
    assert_eq!(drops.dropped(), 1);
    // A tick the loop still holds does nothing once the run is gone.
    lp.run_until(|| lp.next_deadline().is_none() && lp.pending_jobs() == 0);
    assert_eq!(out.borrow().len(), 1);
}

// ---- on a callback loop -----------------------------------------------------------------------

#[test]
fn callback_loop_guest_returns_the_value_of_main() {
    let lp = CallbackLoop::new();
    assert_eq!(lp.run_guest(sleepy_main(11)), Ok((secs(605), 11)));
    assert_eq!(lp.now(), secs(605));
}

#[test]
fn callback_loop_guest_returns_the_error_of_main() {
    let lp = CallbackLoop::new();
    assert_eq!(lp.run_guest(failing_main()), Err(boom("Boom", "main failed")));
    assert_eq!(lp.now(), secs(2));
}

#[test]
fn the_monotonic_guest_start_guest_run_rides_a_callback_loop() {
    // `guest::start_guest_run` (monotonic clock) with a loop that never has to wait: the
    // hooks alone carry the run to `done`.
    let lp = CallbackLoop::new();
    let out: Outcomes<u32> = Rc::default();
    let o = out.clone();
    let run = guest::start_guest_run(
        async {
            guest::checkpoint().await?;
            guest::open_nursery(async |n| {
                n.start_soon(async { guest::checkpoint().await })?;
                Ok(21)
            })
            .await
            .map(|v| v.map_or(0, |v| v * 2))
        },
        lp.hooks(),
        move |r| o.borrow_mut().push(r),
    )
    .unwrap();
    while lp.run_one() {}
    assert!(run.is_finished());
    assert_eq!(*out.borrow(), vec![Ok(42)]);
}

// ---- outside a guest --------------------------------------------------------------------------

#[test]
fn guest_apis_outside_a_guest_say_so() {
    let host = Host::builder().clock(Rc::new(MonotonicClock::new())).build().unwrap();
    let r = host.block_on(guest::open_nursery(async |_n| Ok(1)));
    assert_eq!(r, Err(Error::OutsideGuest));
    let r = host.block_on(guest::sleep(s(1)));
    assert_eq!(r, Err(Error::OutsideGuest));
    assert_eq!(guest::current_time(), Instant::ZERO);
}
