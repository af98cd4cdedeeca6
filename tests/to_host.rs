//! The linked task pair, scenario by scenario: each asserts the exact values each side got and
//! the exact error kind each side saw (DESIGN.md, "Translation").

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
        to_host::open_channel_from(
            streamer(100, |_| Ok(()), s),
            LinkOpts::default().capacity(4),
            async |chan, first| {
                assert_eq!(first, "go");
                let mut got = Vec::new();
                while let Some(v) = chan.receive().await? {
                    got.push(v);
                }
                // End of channel is sticky.
                assert_eq!(chan.receive().await, Ok(None));
                Ok(got)
            },
        )
        .await
    });
    assert_eq!(out, Ok((0..100).collect::<Vec<_>>()));
}

#[test]
fn fan_out_subscriber_and_main_consumer_both_get_all_100_and_end() {
    let h = host();
    let out = h.run_guest(async move {
        to_host::open_channel_from(
            streamer(100, |_| Ok(()), seen()),
            LinkOpts::default().capacity(8),
            async |chan, _| {
                let sub = chan.subscribe();
                let mut main = Vec::new();
                let mut fan = Vec::new();
                let (mut main_done, mut fan_done) = (false, false);
                // Both readers in one task, alternating: neither lags.
                while !(main_done && fan_done) {
                    if !main_done {
                        match chan.receive().await? {
                            Some(v) => main.push(v),
                            None => main_done = true,
                        }
                    }
                    if !fan_done {
                        match sub.receive().await? {
                            Some(v) => fan.push(v),
                            None => fan_done = true,
                        }
                    }
                }
                Ok((main, fan))
            },
        )
        .await
    });
    let all: Vec<u32> = (0..100).collect();
    assert_eq!(out, Ok((all.clone(), all)));
}

#[test]
fn a_lagging_subscriber_gets_lagged_with_the_exact_count_then_catches_up_and_ends() {
    let h = host();
    let out = h.run_guest(async move {
        to_host::open_channel_from(
            streamer(20, |_| Ok(()), seen()),
            LinkOpts::default().capacity(4),
            async |chan, _| {
                let sub = chan.subscribe();
                let mut main = Vec::new();
                while let Some(v) = chan.receive().await? {
                    main.push(v);
                }
                // The subscriber never read: the ring kept only the last 4 pulled values.
                let lag = sub.receive().await;
                let mut rest = Vec::new();
                while let Some(v) = sub.receive().await? {
                    rest.push(v);
                }
                Ok((main.len(), lag, rest))
            },
        )
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
            LinkOpts::default(),
            async move |chan, _| {
                loop {
                    match chan.receive().await? {
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
            LinkOpts::default().suppress_graceful_exits(false),
            async move |chan, _| {
                while chan.receive().await?.is_some() {
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
        to_host::open_channel_from(streamer(50, |_| Ok(()), seen()), LinkOpts::default(), async |chan, _| {
            let mut n = 0;
            while chan.receive().await?.is_some() {
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
            LinkOpts::default(),
            async |chan, ()| {
                loop {
                    let v = chan.receive().await?.expect("the host streams forever");
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
        to_host::open_channel_from(target, LinkOpts::default(), async |_chan, ()| {
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
            LinkOpts::default(),
            async |chan, ()| {
                loop {
                    if chan.receive().await? == Some(50) {
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
            LinkOpts::default().suppress_graceful_exits(false),
            async |chan, ()| {
                chan.receive().await?;
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
        to_host::open_channel_from(target, LinkOpts::default(), async |chan, ()| {
            let first = chan.receive().await?;
            let second = chan.receive().await;
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
        let r = to_host::open_channel_from(target, LinkOpts::default(), async |chan, ()| chan.receive().await).await;
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
            LinkOpts::default(),
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
            LinkOpts::default(),
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
                LinkOpts::default(),
                async |chan, ()| chan.receive().await,
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
            LinkOpts::default(),
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
            LinkOpts::default(),
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
            LinkOpts::default(),
            async |chan, ()| chan.receive().await.map(|_| ()),
        )
        .await
    });
    assert_eq!(out.unwrap_err().kind(), "HostError");
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
            LinkOpts::default().capacity(2),
            async |chan, ()| {
                let mut got = Vec::new();
                while let Some(v) = chan.receive().await? {
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
        to_host::open_channel_from(echo, LinkOpts::default(), async |chan, first| {
            assert_eq!(first, "start");
            for i in 0..1000 {
                chan.send(i).await?;
                assert_eq!(chan.receive().await?, Some(i));
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
            LinkOpts::default(),
            async |chan, ()| {
                let v = chan.receive().await?;
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
            LinkOpts::default().capacity(1),
            async |chan, ()| {
                let first = chan.receive().await?;
                chan.cancel_host_task();
                let mut rest = 0;
                while chan.receive().await?.is_some() {
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
    assert!(e.to_string().contains("start_guest_run"), "{e}");
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
            LinkOpts::default().capacity(1),
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
