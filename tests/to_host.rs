//! The linked task pair, scenario by scenario: each asserts the exact values each side got and
//! the exact error kind each side saw (the `to_host` module docs, "Translation").

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use infect::guest::{self, CancelScope};
use infect::host::{self, Host};
use infect::time::VirtualClock;

use infect::to_host::{self, HostChannel, LinkOpts, SendNowaitError};
use infect::{Error, ErrorGroup, Result};

fn host() -> Host {
    Host::builder().clock(Rc::new(VirtualClock::new())).build().unwrap()
}

/// What the host side saw, shared with the test.
type Seen = Rc<RefCell<Vec<String>>>;

fn seen() -> Seen {
    Rc::new(RefCell::new(Vec::new()))
}

fn note(seen: &Seen, e: &Error) {
    seen.borrow_mut().push(e.kind().to_string());
}

type BoxedHost = std::pin::Pin<Box<dyn Future<Output = Result<()>>>>;

/// Streams `0..n` to the guest with back-pressure, then does `end`.
fn streamer(
    n: u32,
    end: fn(u32) -> Result<()>,
    seen: Seen,
) -> impl FnOnce(HostChannel<(), u32, &'static str>) -> BoxedHost {
    move |chan| {
        Box::pin(async move {
            chan.started_nowait("go")?;
            for i in 0..n {
                if let Err(e) = chan.send(i).await {
                    note(&seen, &e);
                    return Err(e);
                }
                host::yield_now().await?;
            }
            end(n)
        })
    }
}

/// Streams forever (until torn down), recording what it saw.
async fn stream_forever(chan: HostChannel<(), u32, ()>, seen: Seen) -> Result<()> {
    chan.started_nowait(())?;
    let mut i = 0;
    loop {
        if let Err(e) = chan.send(i).await {
            note(&seen, &e);
            return Err(e);
        }
        i += 1;
        if let Err(c) = host::yield_now().await {
            let e = Error::from(c);
            note(&seen, &e);
            return Err(e);
        }
    }
}

#[test]
fn streaming_100_values_in_order_then_end_of_channel() {
    let h = host();
    let s = seen();
    let out = h.run_guest(async move {
        to_host::open_channel_from(streamer(100, |_| Ok(()), s), LinkOpts::new().capacity(4), async |chan, first| {
            assert_eq!(first, "go");
            let mut got = Vec::new();
            while let Some(v) = chan.try_next().await? {
                got.push(v);
            }
            // End of channel is sticky.
            assert_eq!(chan.try_next().await, Ok(None));
            Ok(got)
        })
        .await
    });
    assert_eq!(out, Ok((0..100).collect::<Vec<_>>()));
}

#[test]
fn fan_out_subscriber_and_main_consumer_both_get_all_100_and_end() {
    let h = host();
    let out = h.run_guest(async move {
        to_host::open_channel_from(streamer(100, |_| Ok(()), seen()), LinkOpts::new().capacity(8), async |chan, _| {
            let sub = chan.subscribe();
            let mut main = Vec::new();
            let mut fan = Vec::new();
            let (mut main_done, mut fan_done) = (false, false);
            // Both readers in one task, alternating: neither lags.
            while !(main_done && fan_done) {
                if !main_done {
                    match chan.try_next().await? {
                        Some(v) => main.push(v),
                        None => main_done = true,
                    }
                }
                if !fan_done {
                    match sub.try_next().await? {
                        Some(v) => fan.push(v),
                        None => fan_done = true,
                    }
                }
            }
            Ok((main, fan))
        })
        .await
    });
    let all: Vec<u32> = (0..100).collect();
    assert_eq!(out, Ok((all.clone(), all)));
}

#[test]
fn a_lagging_subscriber_gets_lagged_with_the_exact_count_then_catches_up_and_ends() {
    let h = host();
    let out = h.run_guest(async move {
        to_host::open_channel_from(streamer(20, |_| Ok(()), seen()), LinkOpts::new().capacity(4), async |chan, _| {
            let sub = chan.subscribe();
            let mut main = Vec::new();
            while let Some(v) = chan.try_next().await? {
                main.push(v);
            }
            // The subscriber never read: the ring kept only the last 4 pulled values.
            let lag = sub.try_next().await;
            let mut rest = Vec::new();
            while let Some(v) = sub.try_next().await? {
                rest.push(v);
            }
            Ok((main.len(), lag, rest))
        })
        .await
    });
    assert_eq!(out, Ok((20, Err(Error::Lagged { skipped: 16 }), vec![16, 17, 18, 19])));
}

#[test]
fn host_fails_mid_stream_at_50_guest_gets_the_values_then_the_error() {
    let h = host();
    let out = h.run_guest(async move {
        let got = Rc::new(RefCell::new(Vec::new()));
        let g = got.clone();
        let r = to_host::open_channel_from(
            streamer(50, |n| Err(Error::msg("ValueError", format!("failed at {n}"))), seen()),
            LinkOpts::new(),
            async move |chan, _| {
                loop {
                    match chan.try_next().await? {
                        Some(v) => g.borrow_mut().push(v),
                        None => return Ok(()),
                    }
                }
            },
        )
        .await;
        Ok((got.take(), r))
    });
    let (got, r) = out.unwrap();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    let e = r.unwrap_err();
    assert_eq!(e.kind(), "ValueError");
    assert_eq!(e.to_string(), "failed at 50");
}

#[test]
fn host_exits_early_at_50_with_suppress_false_is_host_task_exited() {
    let h = host();
    let out = h.run_guest(async move {
        let got = Rc::new(RefCell::new(0));
        let g = got.clone();
        let r = to_host::open_channel_from(
            streamer(50, |_| Ok(()), seen()),
            LinkOpts::new().suppress_graceful_exits(false),
            async move |chan, _| {
                while chan.try_next().await?.is_some() {
                    *g.borrow_mut() += 1;
                }
                Ok("drained")
            },
        )
        .await;
        Ok((got.take(), r))
    });
    assert_eq!(out, Ok((50, Err(Error::HostTaskExited))));
}

#[test]
fn host_exits_early_with_suppress_true_is_a_clean_exit() {
    let h = host();
    let out = h.run_guest(async move {
        to_host::open_channel_from(streamer(50, |_| Ok(()), seen()), LinkOpts::new(), async |chan, _| {
            let mut n = 0;
            while chan.try_next().await?.is_some() {
                n += 1;
            }
            Ok(n)
        })
        .await
    });
    assert_eq!(out, Ok(50));
}

#[test]
fn guest_fails_at_50_host_sees_guest_cancelled_with_the_cause() {
    let h = host();
    let s = seen();
    let s2 = s.clone();
    let out = h.run_guest(async move {
        to_host::open_channel_from(
            move |c| stream_forever(c, s2),
            LinkOpts::new(),
            async |chan, ()| {
                loop {
                    let v = chan.try_next().await?.expect("the host streams forever");
                    if v == 50 {
                        return Err::<(), _>(Error::msg("KeyError", "guest failed at 50"));
                    }
                }
            },
        )
        .await
    });
    assert_eq!(out.unwrap_err().kind(), "KeyError");
    assert_eq!(*s.borrow(), vec!["GuestCancelled".to_string()]);
}

#[test]
fn the_host_sees_the_guest_error_as_the_cause_of_guest_cancelled() {
    let h = host();
    let cause: Rc<RefCell<Option<Error>>> = Rc::new(RefCell::new(None));
    let c2 = cause.clone();
    let target = move |chan: HostChannel<u8, (), ()>| async move {
        chan.started_nowait(())?;
        match chan.get().await {
            Err(e) => {
                *c2.borrow_mut() = Some(e.clone());
                Err(e)
            }
            Ok(_) => Ok(()),
        }
    };
    let out = h.run_guest(async move {
        to_host::open_channel_from(target, LinkOpts::new(), async |_chan, ()| {
            guest::checkpoint().await?;
            Err::<(), _>(Error::msg("Boom", "guest exploded"))
        })
        .await
    });
    assert_eq!(out.unwrap_err().to_string(), "guest exploded");
    let seen = cause.borrow().clone().unwrap();
    match seen {
        Error::GuestCancelled { cause: Some(c) } => {
            assert_eq!(c.kind(), "Boom");
            assert_eq!(c.to_string(), "guest exploded");
        }
        other => panic!("host saw {other:?}"),
    }
}

#[test]
fn guest_breaks_at_50_host_sees_guest_task_exited_and_the_block_is_ok() {
    let h = host();
    let s = seen();
    let s2 = s.clone();
    let out = h.run_guest(async move {
        to_host::open_channel_from(
            move |c| stream_forever(c, s2),
            LinkOpts::new(),
            async |chan, ()| {
                loop {
                    if chan.try_next().await? == Some(50) {
                        return Ok(50);
                    }
                }
            },
        )
        .await
    });
    assert_eq!(out, Ok(50));
    assert_eq!(*s.borrow(), vec!["GuestTaskExited".to_string()]);
}

#[test]
fn guest_exit_with_suppress_false_and_host_returning_guest_task_exited_fails_the_block() {
    let h = host();
    let s = seen();
    let s2 = s.clone();
    let out = h.run_guest(async move {
        to_host::open_channel_from(
            move |c| stream_forever(c, s2),
            LinkOpts::new().suppress_graceful_exits(false),
            async |chan, ()| {
                chan.try_next().await?;
                Ok(())
            },
        )
        .await
    });
    assert_eq!(out, Err(Error::GuestTaskExited));
    assert_eq!(*s.borrow(), vec!["GuestTaskExited".to_string()]);
}

#[test]
fn host_self_cancel_is_host_cancelled_at_the_guest_with_the_reason() {
    let h = host();
    let target = |chan: HostChannel<(), u32, ()>| async move {
        chan.started_nowait(())?;
        chan.send_nowait(1)?;
        host::cancel_current("the host gave up");
        host::sleep(Duration::from_secs(1)).await?;
        Ok(())
    };
    let out = h.run_guest(async move {
        to_host::open_channel_from(target, LinkOpts::new(), async |chan, ()| {
            let first = chan.try_next().await?;
            let second = chan.try_next().await;
            Ok((first, second))
        })
        .await
    });
    let reason = String::from("the host gave up");
    assert_eq!(out, Err(Error::HostCancelled { reason: reason.clone() }));
}

#[test]
fn a_third_party_cancel_is_host_cancelled_at_the_guest() {
    let h = host();
    let target = |chan: HostChannel<(), u32, ()>| async move {
        chan.started_nowait(())?;
        let canceller = chan.canceller();
        host::spawn(async move {
            host::sleep(Duration::from_millis(5)).await.ok();
            canceller.cancel("third party");
        })
        .unwrap()
        .detach();
        host::sleep(Duration::from_secs(3600)).await?;
        Ok(())
    };
    let clock = h.clock();
    let out = h.run_guest(async move {
        let r = to_host::open_channel_from(target, LinkOpts::new(), async |chan, ()| chan.try_next().await).await;
        Ok((r, guest::current_time()))
    });
    let (r, at) = out.unwrap();
    assert_eq!(r, Err(Error::HostCancelled { reason: "third party".into() }));
    assert_eq!(at.as_nanos(), 5_000_000);
    assert_eq!(clock.now().as_nanos(), 5_000_000);
}

#[test]
fn host_fails_before_started_is_that_error_from_the_open_call() {
    let h = host();
    let ran_body = Rc::new(RefCell::new(false));
    let rb = ran_body.clone();
    let out = h.run_guest(async move {
        to_host::open_channel_from(
            |_chan: HostChannel<(), (), ()>| async { Err::<(), _>(Error::msg("ConnectionRefused", "no exchange")) },
            LinkOpts::new(),
            async move |_, ()| {
                *rb.borrow_mut() = true;
                Ok(())
            },
        )
        .await
    });
    let e = out.unwrap_err();
    assert_eq!((e.kind(), e.to_string().as_str()), ("ConnectionRefused", "no exchange"));
    assert!(!*ran_body.borrow());
}

#[test]
fn host_returns_before_started_is_host_task_exited_from_the_open_call() {
    let h = host();
    let out = h.run_guest(async move {
        to_host::open_channel_from(
            |_chan: HostChannel<(), (), ()>| async { Ok(()) },
            LinkOpts::new(),
            async |_, ()| Ok(()),
        )
        .await
    });
    assert_eq!(out, Err(Error::HostTaskExited));
}

#[test]
fn an_outer_move_on_after_cancels_the_block_and_tears_the_host_down() {
    let h = host();
    let s = seen();
    let s2 = s.clone();
    let out = h.run_guest(async move {
        let scope = CancelScope::with_deadline(guest::current_time() + Duration::from_millis(200));
        let r = scope
            .run(to_host::open_channel_from(
                move |chan: HostChannel<(), (), ()>| async move {
                    chan.started_nowait(())?;
                    if let Err(c) = host::sleep(Duration::from_secs(3600)).await {
                        let e = Error::from(c);
                        note(&s2, &e);
                        return Err(e);
                    }
                    Ok(())
                },
                LinkOpts::new(),
                async |chan, ()| chan.try_next().await,
            ))
            .await?;
        Ok((r, scope.cancelled_caught(), guest::current_time().as_nanos()))
    });
    assert_eq!(out, Ok((None, true, 200_000_000)));
    assert_eq!(*s.borrow(), vec!["GuestCancelled".to_string()]);
}

#[test]
fn run_task_returns_the_value_and_translates_the_error() {
    let h = host();
    let out = h.run_guest(async {
        let v = to_host::run_task(async {
            host::sleep(Duration::from_millis(300)).await?;
            Ok(7u8)
        })
        .await?;
        let e = to_host::run_task(async { Err::<u8, _>(Error::msg("OSError", "disk gone")) }).await;
        Ok((v, e.map_err(|e| e.kind().to_string()), guest::current_time().as_nanos()))
    });
    assert_eq!(out, Ok((7, Err("OSError".to_string()), 300_000_000)));
}

/// Logs "host task dropped" when the host future holding it is dropped.
struct Dropped(Rc<RefCell<Vec<&'static str>>>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.borrow_mut().push("host task dropped");
    }
}

#[test]
fn run_task_whose_caller_is_cancelled_leaves_no_host_task_running() {
    let h = host();
    let finished = Rc::new(RefCell::new(Vec::new()));
    let f2 = finished.clone();
    let out = h.run_guest(async move {
        let f3 = f2.clone();
        let r = guest::move_on_after(Duration::from_millis(200), async move {
            to_host::run_task(async move {
                let _d = Dropped(f3);
                host::sleep(Duration::from_secs(3600)).await?;
                Ok(())
            })
            .await
        })
        .await?;
        // The host task is already gone when run_task returned.
        let gone = f2.borrow().clone();
        Ok((r, gone, guest::current_time().as_nanos()))
    });
    assert_eq!(out, Ok((None, vec!["host task dropped"], 200_000_000)));
    assert_eq!(*finished.borrow(), vec!["host task dropped"]);
}

#[test]
fn an_uncooperative_host_task_is_dropped_after_its_grace_poll() {
    let h = host();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l2 = log.clone();
    let out = h.run_guest(async move {
        to_host::open_channel_from(
            move |chan: HostChannel<(), (), ()>| async move {
                let _d = Dropped(l2);
                chan.started_nowait(())?;
                // Never a host-aware await: ignores every cancellation.
                std::future::pending::<()>().await;
                Ok(())
            },
            LinkOpts::new(),
            async |_, ()| Ok("left"),
        )
        .await
    });
    assert_eq!(out, Ok("left"));
    assert_eq!(*log.borrow(), vec!["host task dropped"]);
}

#[test]
fn both_sides_failing_independently_is_a_group_of_both() {
    let h = host();
    let out = h.run_guest(async move {
        to_host::open_channel_from(
            |chan: HostChannel<(), (), ()>| async move {
                chan.started_nowait(())?;
                Err::<(), _>(Error::msg("HostError", "host side broke"))
            },
            LinkOpts::new(),
            async |chan, ()| {
                // Wait until the host has failed, without receiving its error.
                while !chan.host_done() {
                    guest::checkpoint().await?;
                }
                Err::<(), _>(Error::msg("GuestError", "guest side broke"))
            },
        )
        .await
    });
    match out {
        Err(Error::Group(ErrorGroup(errs))) => {
            let kinds: Vec<&str> = errs.iter().map(Error::kind).collect();
            assert_eq!(kinds, vec!["GuestError", "HostError"]);
        }
        other => panic!("expected a group, got {other:?}"),
    }
}

#[test]
fn a_guest_error_that_is_the_host_error_is_not_doubled() {
    let h = host();
    let out = h.run_guest(async move {
        to_host::open_channel_from(
            |chan: HostChannel<(), (), ()>| async move {
                chan.started_nowait(())?;
                Err::<(), _>(Error::msg("HostError", "host side broke"))
            },
            LinkOpts::new(),
            async |chan, ()| chan.try_next().await.map(|_| ()),
        )
        .await
    });
    // The host's error, once (not a group of it and its echo).
    assert_eq!(out, Err(Error::msg("HostError", "host side broke")));
}

#[test]
fn a_guest_error_that_only_reads_like_the_host_error_is_kept_beside_it() {
    let h = host();
    let out = h.run_guest(async move {
        to_host::open_channel_from(
            |chan: HostChannel<(), (), ()>| async move {
                chan.started_nowait(())?;
                Err::<(), _>(Error::msg("HostError", "host side broke"))
            },
            LinkOpts::default(),
            async |chan, ()| {
                while !chan.host_done() {
                    guest::checkpoint().await?;
                }
                // The guest's own error, made apart from the host's: two errors, not one.
                Err::<(), _>(Error::msg("HostError", "host side broke"))
            },
        )
        .await
    });
    let Err(Error::Group(ErrorGroup(errs))) = &out else { panic!("expected a group, got {out:?}") };
    let twin = Error::msg("HostError", "host side broke");
    assert_eq!(errs, &vec![twin.clone(), twin]);
    assert!(!errs[0].is_same(&errs[1]));
}

#[test]
fn send_nowait_past_capacity_hands_the_value_back() {
    let h = host();
    let log: Rc<RefCell<Vec<String>>> = Rc::new(RefCell::new(Vec::new()));
    let l2 = log.clone();
    let out = h.run_guest(async move {
        to_host::open_channel_from(
            move |chan: HostChannel<(), String, ()>| async move {
                chan.started_nowait(())?;
                for i in 0..3 {
                    match chan.send_nowait(format!("v{i}")) {
                        Ok(()) => l2.borrow_mut().push(format!("sent v{i}")),
                        Err(SendNowaitError::Full(v)) => l2.borrow_mut().push(format!("full, got back {v}")),
                        Err(SendNowaitError::Gone(v, e)) => l2.borrow_mut().push(format!("gone {v} {e}")),
                    }
                }
                Ok(())
            },
            LinkOpts::new().capacity(2),
            async |chan, ()| {
                let mut got = Vec::new();
                while let Some(v) = chan.try_next().await? {
                    got.push(v);
                }
                Ok(got)
            },
        )
        .await
    });
    assert_eq!(out, Ok(vec!["v0".to_string(), "v1".to_string()]));
    assert_eq!(*log.borrow(), vec!["sent v0", "sent v1", "full, got back v2"]);
}

async fn echo(chan: HostChannel<u32, u32, &'static str>) -> Result<()> {
    chan.started_nowait("start")?;
    loop {
        chan.send_nowait(chan.get().await?)?;
        host::yield_now().await?;
    }
}

#[test]
fn an_echo_of_1000_values_ends_cleanly() {
    let h = host();
    let out = h.run_guest(async {
        to_host::open_channel_from(echo, LinkOpts::new(), async |chan, first| {
            assert_eq!(first, "start");
            for i in 0..1000 {
                chan.send(i).await?;
                assert_eq!(chan.try_next().await?, Some(i));
            }
            Ok(1000)
        })
        .await
    });
    assert_eq!(out, Ok(1000));
    assert!(!h.guest_running());
}

#[test]
fn wait_for_result_returns_the_host_value_after_the_stream() {
    let h = host();
    let out = h.run_guest(async {
        to_host::open_channel_from(
            |chan: HostChannel<(), u8, ()>| async move {
                chan.started_nowait(())?;
                chan.send(1).await?;
                Ok("final")
            },
            LinkOpts::new(),
            async |chan, ()| {
                let v = chan.try_next().await?;
                let r = chan.wait_for_result().await?;
                let again = chan.wait_for_result().await.map_err(|e| e.kind().to_string());
                Ok((v, r, again))
            },
        )
        .await
    });
    assert_eq!(out, Ok((Some(1), "final", Err("ResultTaken".to_string()))));
}

#[test]
fn cancel_host_task_ends_the_channel_without_an_error() {
    let h = host();
    let s = seen();
    let s2 = s.clone();
    let out = h.run_guest(async move {
        to_host::open_channel_from(
            move |c| stream_forever(c, s2),
            LinkOpts::new().capacity(1),
            async |chan, ()| {
                let first = chan.try_next().await?;
                chan.cancel_host_task();
                let mut rest = 0;
                while chan.try_next().await?.is_some() {
                    rest += 1;
                }
                Ok((first, rest <= 1))
            },
        )
        .await
    });
    assert_eq!(out, Ok((Some(0), true)));
    assert_eq!(*s.borrow(), vec!["HostTaskCancelled".to_string()]);
}

#[test]
fn to_host_outside_a_host_is_not_infected_with_a_how_to_fix_message() {
    let r = guest::run(async { to_host::run_task(async { Ok(1) }).await });
    let e = r.unwrap_err();
    assert_eq!(e, Error::NotInfected);
    assert!(e.to_string().contains("Host::run_guest"), "{e}");
}

#[test]
fn the_guest_send_waits_for_room_back_pressure() {
    let h = host();
    let out = h.run_guest(async {
        to_host::open_channel_from(
            |chan: HostChannel<u32, (), ()>| async move {
                chan.started_nowait(())?;
                host::sleep(Duration::from_secs(10)).await?;
                let mut got = Vec::new();
                for _ in 0..3 {
                    got.push(chan.get().await?);
                }
                Ok(got)
            },
            LinkOpts::new().capacity(1),
            async |chan, ()| {
                chan.send(1).await?;
                let t0 = guest::current_time();
                chan.send(2).await?; // waits until the host reads after its 10 s sleep
                let waited = guest::current_time() - t0;
                chan.send(3).await?;
                let r = chan.wait_for_result().await?;
                Ok((waited, r))
            },
        )
        .await
    });
    assert_eq!(out, Ok((Duration::from_secs(10), vec![1, 2, 3])));
}

// ---------------------------------------------------------------------------------------------
// A failing host task interrupts the guest block wherever it waits (transition 9).
// ---------------------------------------------------------------------------------------------

/// Starts, sleeps `ms` on the host, then ends with `end`.
fn ends_after(ms: u64, end: fn() -> Result<()>) -> impl FnOnce(HostChannel<(), u32, ()>) -> BoxedHost {
    move |chan| {
        Box::pin(async move {
            chan.started_nowait(())?;
            host::sleep(Duration::from_millis(ms)).await?;
            end()
        })
    }
}

fn value_error() -> Result<()> {
    Err(Error::msg("ValueError", "the host failed at 10 ms"))
}

/// Runs `body` against `target` and returns the pair's result and the virtual time it ended.
fn run_pair<O: 'static>(
    target: impl FnOnce(HostChannel<(), u32, ()>) -> BoxedHost + 'static,
    opts: LinkOpts,
    body: impl AsyncFnOnce(&to_host::LinkedTaskChannel<(), u32, (), ()>, ()) -> Result<O> + 'static,
) -> (Result<O>, u64) {
    let h = host();
    h.run_guest(async move {
        let r = to_host::open_channel_from(target, opts, body).await;
        Ok((r, guest::current_time().as_nanos()))
    })
    .unwrap()
}

const MS10: u64 = 10_000_000;

#[test]
fn a_host_failure_at_10ms_ends_a_block_sleeping_1s_at_10ms_with_that_error() {
    let slept = Rc::new(RefCell::new(None));
    let s = slept.clone();
    let (r, at) = run_pair(ends_after(10, value_error), LinkOpts::new(), async move |_chan, ()| {
        let got = guest::sleep(Duration::from_secs(1)).await;
        *s.borrow_mut() = Some((got.clone(), guest::current_time().as_nanos()));
        got?;
        Ok("slept a full second")
    });
    let e = r.unwrap_err();
    assert_eq!((e.kind(), e.to_string().as_str()), ("ValueError", "the host failed at 10 ms"));
    assert_eq!(at, MS10);
    // The sleep itself was cancelled at 10 ms (the pair's scope), not at its deadline.
    assert_eq!(*slept.borrow(), Some((Err(Error::Cancelled), MS10)));
}

#[test]
fn a_third_party_cancel_at_10ms_ends_a_sleeping_block_at_10ms_with_host_cancelled() {
    let target = |chan: HostChannel<(), u32, ()>| -> BoxedHost {
        Box::pin(async move {
            chan.started_nowait(())?;
            let canceller = chan.canceller();
            host::spawn(async move {
                host::sleep(Duration::from_millis(10)).await.ok();
                canceller.cancel("the exchange closed");
            })
            .unwrap()
            .detach();
            host::sleep(Duration::from_secs(3600)).await?;
            Ok(())
        })
    };
    let (r, at) = run_pair(target, LinkOpts::new(), async |_chan, ()| {
        guest::sleep(Duration::from_secs(1)).await?;
        Ok(())
    });
    assert_eq!(r, Err(Error::HostCancelled { reason: "the exchange closed".into() }));
    assert_eq!(at, MS10);
}

#[test]
fn a_host_failure_ends_a_block_waiting_on_an_event_at_once() {
    let (r, at) = run_pair(ends_after(10, value_error), LinkOpts::new(), async |_chan, ()| {
        // Nobody sets it: only a cancellation ends this wait (or, bounded, the 1 s deadline).
        guest::fail_after(Duration::from_secs(1), guest::Event::new().wait()).await
    });
    assert_eq!(r.unwrap_err().kind(), "ValueError");
    assert_eq!(at, MS10);
}

#[test]
fn a_host_failure_cancels_every_task_of_a_nursery_inside_the_block_at_once() {
    type Log = Rc<RefCell<Vec<(usize, Result<()>, u64)>>>;
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let (r, at) = run_pair(ends_after(10, value_error), LinkOpts::new(), async move |_chan, ()| {
        guest::open_nursery(async |n| {
            for k in 0..3 {
                let l = l.clone();
                n.start_soon(async move {
                    let got = guest::sleep(Duration::from_secs(1 + k as u64)).await;
                    l.borrow_mut().push((k, got.clone(), guest::current_time().as_nanos()));
                    got
                })?;
            }
            guest::sleep(Duration::from_secs(5)).await
        })
        .await
    });
    assert_eq!(r.unwrap_err().kind(), "ValueError");
    assert_eq!(at, MS10);
    let want: Vec<_> = (0..3).map(|k| (k, Err(Error::Cancelled), MS10)).collect();
    assert_eq!(*log.borrow(), want);
}

#[test]
fn a_host_return_with_suppress_false_ends_a_sleeping_block_at_once_with_host_task_exited() {
    let (r, at) =
        run_pair(ends_after(10, || Ok(())), LinkOpts::new().suppress_graceful_exits(false), async |_c, ()| {
            guest::sleep(Duration::from_secs(1)).await?;
            Ok(())
        });
    assert_eq!((r, at), (Err(Error::HostTaskExited), MS10));
}

#[test]
fn a_host_return_with_the_default_suppress_does_not_interrupt_the_block() {
    let (r, at) = run_pair(ends_after(10, || Ok(())), LinkOpts::new(), async |chan, ()| {
        guest::sleep(Duration::from_secs(1)).await?;
        // The channel simply ended.
        chan.try_next().await
    });
    assert_eq!((r, at), (Ok(None), 1_000_000_000));
}

#[test]
fn an_interrupted_block_gets_the_host_error_from_receive_before_buffered_values() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let target = |chan: HostChannel<(), u32, ()>| -> BoxedHost {
        Box::pin(async move {
            chan.started_nowait(())?;
            for i in 0..3 {
                chan.send_nowait(i)?;
            }
            host::sleep(Duration::from_millis(10)).await?;
            value_error()
        })
    };
    let (r, at) = run_pair(target, LinkOpts::new(), async move |chan, ()| {
        let slept = guest::sleep(Duration::from_secs(1)).await;
        let received = chan.try_next().await;
        let sent = chan.send(()).await;
        s.borrow_mut().push((slept, received.map(drop), sent));
        // Even a block that swallows the cancellation returns the host's error.
        Ok(())
    });
    assert_eq!(r.unwrap_err().kind(), "ValueError");
    assert_eq!(at, MS10);
    let e = || Error::msg("ValueError", "the host failed at 10 ms");
    assert_eq!(*seen.borrow(), vec![(Err(Error::Cancelled), Err(e()), Err(e()))]);
}

#[test]
fn run_task_is_unaffected_by_interruption_its_caller_scope_stays_uncancelled() {
    let h = host();
    let out = h.run_guest(async {
        let r = to_host::run_task(async {
            host::sleep(Duration::from_millis(10)).await?;
            Err::<u8, _>(Error::msg("OSError", "disk gone"))
        })
        .await;
        let t = guest::current_time().as_nanos();
        // Nothing around the caller was cancelled: a later sleep runs its full length.
        guest::sleep(Duration::from_millis(20)).await?;
        Ok((r.map_err(|e| e.kind().to_string()), t, guest::current_time().as_nanos()))
    });
    assert_eq!(out, Ok((Err("OSError".to_string()), MS10, 30_000_000)));
}

// ---------------------------------------------------------------------------------------------
// HostChannel::canceller() names the link's host task.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_canceller_taken_before_the_host_task_runs_cancels_the_link_task() {
    let slot: Rc<RefCell<Option<to_host::Canceller>>> = Rc::new(RefCell::new(None));
    let s = slot.clone();
    let target = move |chan: HostChannel<(), u32, ()>| -> BoxedHost {
        // Taken in the target function, while the guest (not the link's task) is running.
        let canceller = chan.canceller();
        Box::pin(async move {
            chan.started_nowait(())?;
            host::spawn(async move {
                host::sleep(Duration::from_millis(10)).await.ok();
                canceller.cancel("cancelled from outside");
            })
            .unwrap()
            .detach();
            drop(s);
            host::sleep(Duration::from_secs(3600)).await?;
            Ok(())
        })
    };
    let (r, at) = run_pair(target, LinkOpts::new(), async |chan, ()| chan.try_next().await);
    assert_eq!((r, at), (Err(Error::HostCancelled { reason: "cancelled from outside".into() }), MS10));
    assert!(slot.borrow().is_none());
}

#[test]
fn a_canceller_taken_inside_another_host_task_still_cancels_the_link_task() {
    let target = |chan: HostChannel<(), u32, ()>| -> BoxedHost {
        Box::pin(async move {
            chan.started_nowait(())?;
            let chan = Rc::new(chan);
            let c = chan.clone();
            host::spawn(async move {
                // Taken while this helper task is the one being polled.
                let canceller = c.canceller();
                host::sleep(Duration::from_millis(10)).await.ok();
                canceller.cancel("the helper cancelled the link");
                // The helper itself was not cancelled: it goes on.
                host::sleep(Duration::from_millis(1)).await.map_err(Error::from)?;
                Ok::<(), Error>(())
            })
            .unwrap()
            .detach();
            host::sleep(Duration::from_secs(3600)).await?;
            Ok(())
        })
    };
    let (r, at) = run_pair(target, LinkOpts::new(), async |_chan, ()| {
        guest::sleep(Duration::from_secs(3600)).await?;
        Ok(())
    });
    assert_eq!((r, at), (Err(Error::HostCancelled { reason: "the helper cancelled the link".into() }), MS10));
}

// ---------------------------------------------------------------------------------------------
// Owned channel handles: nursery tasks take clones and subscribers.
// ---------------------------------------------------------------------------------------------

/// Ticks 0..n, 1 ms apart, then returns; on a teardown, records it and ends with `on_teardown`.
fn ticker(n: u32, seen: Seen, on_teardown: fn(Error) -> Error) -> impl FnOnce(HostChannel<(), u32, ()>) -> BoxedHost {
    move |chan| {
        Box::pin(async move {
            chan.started_nowait(())?;
            for i in 0..n {
                let step = match chan.send(i).await {
                    Ok(()) => host::sleep(Duration::from_millis(1)).await.map_err(Error::from),
                    Err(e) => Err(e),
                };
                if let Err(e) = step {
                    note(&seen, &e);
                    return Err(on_teardown(e));
                }
            }
            Ok(())
        })
    }
}

type Got = Rc<RefCell<Vec<(usize, Vec<u32>, Result<()>)>>>;

/// Subscribes in each of `n` nursery tasks; task `fail` (if any) fails on value 3.
async fn fan_out(
    chan: &to_host::LinkedTaskChannel<(), u32, (), ()>,
    n: usize,
    fail: Option<usize>,
    got: Got,
) -> Result<()> {
    guest::open_nursery(async |nursery| {
        for k in 0..n {
            // An owned subscriber, moved into a 'static nursery task.
            let sub = chan.subscribe();
            let got = got.clone();
            nursery.start_soon(async move {
                let mut mine = Vec::new();
                let r = async {
                    while let Some(v) = sub.try_next().await? {
                        if Some(k) == fail && v == 3 {
                            return Err(Error::msg("SubscriberError", format!("subscriber {k} refused 3")));
                        }
                        mine.push(v);
                    }
                    Ok(())
                }
                .await;
                got.borrow_mut().push((k, mine, r.clone()));
                r
            })?;
        }
        Ok(())
    })
    .await
    .map(drop)
}

#[test]
fn fan_out_to_n_nursery_tasks_each_subscribing_every_one_gets_every_value() {
    let got: Got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let (r, at) =
        run_pair(ticker(10, seen(), |e| e), LinkOpts::new(), async move |chan, ()| fan_out(chan, 4, None, g).await);
    assert_eq!((r, at), (Ok(()), 10_000_000));
    let all: Vec<u32> = (0..10).collect();
    let want: Vec<_> = (0..4).map(|k| (k, all.clone(), Ok(()))).collect();
    assert_eq!(*got.borrow(), want);
}

#[test]
fn one_failing_subscriber_task_cancels_its_siblings_and_its_error_is_grouped_with_the_hosts() {
    let got: Got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let s = seen();
    // The host, torn down, fails on its own: an independent error next to the guest's.
    let on_teardown = |_: Error| Error::msg("HostCleanupError", "the host's clean-up failed");
    let (r, at) = run_pair(ticker(10, s.clone(), on_teardown), LinkOpts::new(), async move |chan, ()| {
        fan_out(chan, 3, Some(0), g).await
    });
    let refused = Error::msg("SubscriberError", "subscriber 0 refused 3");
    let cleanup = Error::msg("HostCleanupError", "the host's clean-up failed");
    assert_eq!(r, Err(Error::Group(ErrorGroup(vec![refused.clone(), cleanup]))));
    assert_eq!(at, 3_000_000);
    // Subscriber 0 failed on 3; its siblings were cancelled before they got it.
    assert_eq!(
        *got.borrow(),
        vec![
            (0, vec![0, 1, 2], Err(refused)),
            (1, vec![0, 1, 2], Err(Error::Cancelled)),
            (2, vec![0, 1, 2], Err(Error::Cancelled))
        ]
    );
    // The host saw the guest's failure as the cause of its teardown.
    assert_eq!(*s.borrow(), vec!["GuestCancelled".to_string()]);
}

#[test]
fn handles_used_after_the_block_return_closed() {
    let h = host();
    let out = h.run_guest(async {
        let (chan, sub) = to_host::open_channel_from(
            |chan: HostChannel<u32, u32, ()>| async move {
                chan.started_nowait(())?;
                chan.send_nowait(7)?;
                Ok(())
            },
            LinkOpts::new(),
            async |chan, ()| Ok((chan.clone(), chan.subscribe())),
        )
        .await?;
        let got = (chan.try_next().await, sub.try_next().await, chan.send(1).await, chan.wait_for_result().await);
        // A subscriber made after the block is closed too.
        let late = chan.subscribe().try_next().await;
        Ok((got, late, chan.host_done()))
    });
    let c = Err(Error::Closed);
    assert_eq!(out, Ok(((c.clone(), c.clone(), Err(Error::Closed), Err(Error::Closed)), c, true)));
}

#[test]
fn a_subscriber_made_after_reads_starts_at_the_first_value_no_reader_has_received() {
    let (r, _) = run_pair(
        |chan: HostChannel<(), u32, ()>| -> BoxedHost {
            Box::pin(async move {
                chan.started_nowait(())?;
                for i in 0..5 {
                    chan.send_nowait(i)?;
                }
                Ok(())
            })
        },
        LinkOpts::new(),
        async |chan, ()| {
            let first = (chan.try_next().await?, chan.try_next().await?);
            let early = chan.subscribe();
            let third = chan.try_next().await?;
            // Made after the channel took 0, 1 and 2: it starts at 3, as `early` is at 2.
            let late = chan.subscribe();
            let (mut e, mut l) = (Vec::new(), Vec::new());
            while let Some(v) = early.try_next().await? {
                e.push(v);
            }
            while let Some(v) = late.try_next().await? {
                l.push(v);
            }
            Ok((first, third, e, l))
        },
    );
    assert_eq!(r, Ok(((Some(0), Some(1)), Some(2), vec![2, 3, 4], vec![3, 4])));
}

#[test]
fn dropping_the_open_call_with_a_handle_kept_outside_still_tears_the_host_task_down() {
    let h = host();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l2 = log.clone();
    type Kept = Rc<RefCell<Option<to_host::LinkedTaskChannel<(), (), (), ()>>>>;
    let kept: Kept = Rc::new(RefCell::new(None));
    let k2 = kept.clone();
    let l3 = log.clone();
    let out = h.run_guest(async move {
        let log = l3;
        let k3 = k2.clone();
        let mut open = Box::pin(to_host::open_channel_from(
            move |chan: HostChannel<(), (), ()>| async move {
                let _d = Dropped(l2);
                chan.started_nowait(())?;
                host::sleep(Duration::from_secs(3600)).await?;
                Ok(())
            },
            LinkOpts::new(),
            async move |chan, ()| {
                *k3.borrow_mut() = Some(chan.clone());
                guest::sleep_forever().await
            },
        ));
        // Run the block until it waits, then drop the open call (the last resort).
        assert!(futures::poll!(open.as_mut()).is_pending(), "waits for started_nowait");
        guest::sleep(Duration::from_millis(1)).await?;
        assert!(futures::poll!(open.as_mut()).is_pending(), "the block sleeps");
        assert!(k2.borrow().is_some() && log.borrow().is_empty());
        drop(open);
        guest::sleep(Duration::from_millis(1)).await?;
        let chan = k2.borrow_mut().take().expect("the block kept a handle");
        Ok((chan.host_done(), chan.try_next().await))
    });
    assert_eq!(out, Ok((true, Err(Error::Closed))));
    assert_eq!(*log.borrow(), vec!["host task dropped"]);
}

/// `receive()` gives each value bare and, once the host returned and every value was read,
/// `HostTaskExited` (the seed's `out = await chan.receive()` ports as one line); a subscriber's
/// `receive()` does the same; `try_next()` and `stream()` give the `Option`-shaped end (`None`)
/// on the same channel state, and `stream()` needs no `pin!`.
#[test]
fn receive_ends_with_host_task_exited_and_try_next_with_none() {
    use futures::StreamExt;
    let (r, _) = run_pair(
        |chan: HostChannel<(), u32, ()>| -> BoxedHost {
            Box::pin(async move {
                chan.started_nowait(())?;
                for i in 0..3 {
                    chan.send_nowait(i)?;
                }
                Ok(())
            })
        },
        LinkOpts::new(),
        async |chan, ()| {
            let sub = chan.subscribe();
            let a = chan.receive().await?;
            let b = chan.receive().await?;
            let rest: Vec<Result<u32>> = chan.stream().collect().await;
            let end = (chan.receive().await, chan.try_next().await);
            let subbed = (sub.receive().await?, sub.try_next().await?, sub.receive().await?);
            let sub_end = (sub.receive().await, sub.try_next().await);
            let mut s = sub.stream();
            let sub_stream_end = s.next().await.is_none();
            Ok((a, b, rest, end, subbed, sub_end, sub_stream_end))
        },
    );
    assert_eq!(
        r,
        Ok((
            0,
            1,
            vec![Ok(2)],
            (Err(Error::HostTaskExited), Ok(None)),
            (0, Some(1), 2),
            (Err(Error::HostTaskExited), Ok(None)),
            true
        ))
    );
}
