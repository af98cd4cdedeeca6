//! The two ways to run a guest, one scheduler: the outcome of `main` reaches the caller (or
//! `done`, exactly once) unchanged under `guest::run`, `guest::run_with`, `Host::run_guest`
//! and a callback loop that only implements `guest::Hooks`; virtual
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
    let r = guest::run_with(GuestConfig::new(clock.clone()), sleepy_main(7));
    // 5 s (the nursery waits for its slowest child) + 600 s.
    assert_eq!(r, Ok((secs(605), 7)));
    assert_eq!(clock.now(), secs(605));
    assert!(wall.elapsed() < Duration::from_secs(5), "autojump should make this instant");
}

#[test]
fn config_run_reports_the_error_at_its_virtual_instant() {
    let clock = vclock();
    let r = guest::run_with(GuestConfig::new(clock.clone()), failing_main());
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

// `done` exactly once, the one-guest rule at setup and the drop order when the host is dropped
// with a guest blocked are unit tests of the embedding (`src/embed.rs`): the call that starts a
// guest without running the host is crate-internal.

#[test]
fn a_second_guest_on_one_host_is_refused_while_the_first_runs() {
    let host = Rc::new(Host::builder().clock(vclock()).build().unwrap());
    let h = host.clone();
    let ran = Rc::new(RefCell::new(false));
    let r = ran.clone();
    let out = host.run_guest(async move {
        guest::sleep(s(1)).await?;
        let second = h.run_guest(async move {
            *r.borrow_mut() = true;
            Ok(2)
        });
        Ok((second, guest::current_time()))
    });
    assert_eq!(out, Ok((Err(Error::GuestAlreadyRunning), secs(1))));
    assert!(!*ran.borrow(), "a refused guest's main never runs");
    assert!(!host.guest_running());
    // Once the first finished, a new guest may ride the host.
    assert_eq!(host.run_guest(async { Ok(3) }), Ok(3));
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
