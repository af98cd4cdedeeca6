//! Cancel scopes on a virtual clock: which scope catches (`cancelled_caught`), at exactly
//! which virtual instant, through nesting, shields and deadlines; `move_on_after` /
//! `fail_after` (`TooSlow`); sticky cancellation; `checkpoint` in a cancelled scope; and that
//! async clean-up still runs after a cancellation.

mod common;

use std::time::Duration;

use common::{Log, boom, s, secs, vclock};
use infect::guest::{self, CancelScope, Event, GuestConfig};
use infect::time::{Clock, Instant};
use infect::{Error, Result};

/// Runs `main` standalone on a fresh virtual clock; returns the outcome and the final time.
fn vrun<T: 'static>(main: impl Future<Output = Result<T>> + 'static) -> (Result<T>, Instant) {
    let clock = vclock();
    let r = guest::run_with(GuestConfig::new(clock.clone()), main);
    (r, clock.now())
}

#[test]
fn ten_virtual_minutes_pass_instantly_and_exactly() {
    let wall = std::time::Instant::now();
    let (r, end) = vrun(async {
        guest::sleep(Duration::from_secs(600)).await?;
        Ok(guest::current_time())
    });
    assert_eq!(r, Ok(secs(600)));
    assert_eq!(end, secs(600));
    assert!(wall.elapsed() < Duration::from_secs(2));
}

#[test]
fn move_on_after_catches_at_its_deadline() {
    let (r, end) = vrun(async {
        let out = guest::move_on_after(s(5), async {
            guest::sleep(s(10)).await?;
            Ok("slept")
        })
        .await?;
        Ok((out, guest::current_time()))
    });
    assert_eq!(r, Ok((None, secs(5))));
    assert_eq!(end, secs(5));
}

#[test]
fn move_on_after_lets_a_fast_body_finish_and_disarms_its_deadline() {
    let (r, end) = vrun(async {
        let out = guest::move_on_after(s(5), async {
            guest::sleep(s(1)).await?;
            Ok(3)
        })
        .await?;
        let t1 = guest::current_time();
        // The dead scope's deadline (5 s) must not cancel anything later.
        guest::sleep(s(10)).await?;
        Ok((out, t1, guest::current_time()))
    });
    assert_eq!(r, Ok((Some(3), secs(1), secs(11))));
    assert_eq!(end, secs(11));
}

#[test]
fn fail_after_reports_too_slow_at_its_deadline() {
    let (r, end) = vrun(async {
        guest::fail_after(s(2), async {
            guest::sleep(s(3)).await?;
            Ok(())
        })
        .await
    });
    assert_eq!(r, Err(Error::TooSlow));
    assert_eq!(end, secs(2));
}

#[test]
fn fail_after_returns_the_value_of_a_fast_body() {
    let (r, end) = vrun(async {
        guest::fail_after(s(2), async {
            guest::sleep(s(1)).await?;
            Ok(8)
        })
        .await
    });
    assert_eq!(r, Ok(8));
    assert_eq!(end, secs(1));
}

#[test]
fn fail_after_passes_an_outer_cancellation_through() {
    // The outer deadline fires first: that is the outer scope's cancellation, not TooSlow.
    let (r, end) = vrun(async {
        let outer = CancelScope::with_deadline(secs(1));
        let out = outer
            .run(async {
                let r = guest::fail_after(s(5), guest::sleep(s(10))).await;
                assert_eq!(r, Err(Error::Cancelled));
                r
            })
            .await?;
        Ok((out, outer.cancelled_caught()))
    });
    assert_eq!(r, Ok((None, true)));
    assert_eq!(end, secs(1));
}

#[test]
fn fail_after_a_zero_timeout_fails_at_the_first_checkpoint() {
    let log = Log::new();
    let l = log.clone();
    let (r, end) = vrun(async move {
        guest::fail_after(Duration::ZERO, async move {
            guest::checkpoint().await?;
            l.push("after the checkpoint");
            Ok(())
        })
        .await
    });
    assert_eq!(r, Err(Error::TooSlow));
    assert_eq!(end, Instant::ZERO);
    assert_eq!(log.take(), Vec::<&str>::new());
}

#[test]
fn a_scope_entered_past_its_deadline_is_cancelled_at_once() {
    let log = Log::new();
    let l = log.clone();
    let (r, end) = vrun(async move {
        guest::sleep(s(5)).await?;
        let scope = CancelScope::with_deadline(secs(2));
        let out = scope
            .run(async move {
                // An Event that is already set: the await still checks for cancellation.
                let ev = Event::new();
                ev.set();
                ev.wait().await?;
                l.push("waited");
                Ok(())
            })
            .await?;
        Ok((out, scope.cancelled_caught(), guest::current_time()))
    });
    assert_eq!(r, Ok((None, true, secs(5))));
    assert_eq!(end, secs(5));
    assert_eq!(log.take(), Vec::<&str>::new());
}

#[test]
fn the_inner_deadline_catches_first_then_the_outer() {
    let log = Log::new();
    let l = log.clone();
    let (r, end) = vrun(async move {
        let outer = CancelScope::with_deadline(secs(10));
        let inner = CancelScope::with_deadline(secs(5));
        let (o2, i2) = (outer.clone(), inner.clone());
        let out = outer
            .run(async move {
                let r = i2.run(guest::sleep(s(20))).await?;
                l.push(("inner done", r, i2.cancelled_caught(), guest::current_time()));
                guest::sleep(s(20)).await?;
                l.push(("not reached", None, false, guest::current_time()));
                Ok(())
            })
            .await?;
        assert!(!o2.cancelled_caught() || out.is_none());
        Ok((out, outer.cancelled_caught(), inner.cancelled_caught(), guest::current_time()))
    });
    assert_eq!(r, Ok((None, true, true, secs(10))));
    assert_eq!(end, secs(10));
    assert_eq!(log.take(), vec![("inner done", None, true, secs(5))]);
}

#[test]
fn an_earlier_outer_deadline_passes_through_the_inner_scope() {
    let (r, end) = vrun(async {
        let outer = CancelScope::with_deadline(secs(3));
        let inner = CancelScope::with_deadline(secs(5));
        let i2 = inner.clone();
        let out = outer
            .run(async move {
                let r = i2.run(guest::sleep(s(20))).await;
                // The Cancelled belongs to the outer scope: the inner one lets it through.
                assert_eq!(r, Err(Error::Cancelled));
                r.map(|_| ())
            })
            .await?;
        Ok((out, outer.cancelled_caught(), inner.cancelled_caught(), inner.cancel_called()))
    });
    assert_eq!(r, Ok((None, true, false, false)));
    assert_eq!(end, secs(3));
}

#[test]
fn when_both_are_cancelled_the_innermost_catches_and_the_outer_sees_it_next() {
    let (r, _) = vrun(async {
        let outer = CancelScope::new();
        let inner = CancelScope::new();
        let (o2, i2) = (outer.clone(), inner.clone());
        let steps = Log::new();
        let st = steps.clone();
        let out = outer
            .run(async move {
                let r = i2
                    .run(async {
                        o2.cancel();
                        i2.cancel();
                        guest::checkpoint().await
                    })
                    .await?;
                st.push(format!("inner returned {r:?}"));
                // Cancellation is sticky: the outer scope is still cancelled.
                guest::checkpoint().await?;
                st.push("not reached".to_string());
                Ok(())
            })
            .await?;
        Ok((out, outer.cancelled_caught(), inner.cancelled_caught(), steps.take()))
    });
    assert_eq!(r, Ok((None, true, true, vec!["inner returned None".to_string()])));
}

#[test]
fn a_shield_keeps_an_outer_deadline_out_until_it_exits() {
    let log = Log::new();
    let l = log.clone();
    let (r, end) = vrun(async move {
        let outer = CancelScope::with_deadline(secs(1));
        let out = outer
            .run(async move {
                let shielded = CancelScope::shielded();
                let r = shielded.run(guest::sleep(s(5))).await?;
                l.push(("shielded body", r, guest::current_time()));
                guest::checkpoint().await?;
                l.push(("not reached", None, guest::current_time()));
                Ok(())
            })
            .await?;
        Ok((out, outer.cancelled_caught(), guest::current_time()))
    });
    assert_eq!(r, Ok((None, true, secs(5))));
    assert_eq!(end, secs(5));
    assert_eq!(log.take(), vec![("shielded body", Some(()), secs(5))]);
}

#[test]
fn a_shielded_scope_with_its_own_deadline_catches_it() {
    let (r, end) = vrun(async {
        let outer = CancelScope::new();
        outer.cancel();
        let o2 = outer.clone();
        let shielded = CancelScope::shielded();
        shielded.set_deadline(secs(2));
        let s2 = shielded.clone();
        let out = o2
            .run(async move {
                let r = s2.run(guest::sleep(s(100))).await?;
                Ok((r, guest::current_time()))
            })
            .await?;
        Ok((out, shielded.cancelled_caught(), outer.cancelled_caught()))
    });
    // The body returned normally (the shield's cancellation was caught inside), so the
    // cancelled outer scope caught nothing.
    assert_eq!(r, Ok((Some((None, secs(2))), true, false)));
    assert_eq!(end, secs(2));
}

#[test]
fn unshielding_inside_a_cancelled_scope_wakes_the_body() {
    let log = Log::new();
    let l = log.clone();
    let (r, end) = vrun(async move {
        let outer = CancelScope::with_deadline(secs(1));
        let shielded = CancelScope::shielded();
        let sh = shielded.clone();
        let out = guest::open_nursery(async |n| {
            n.start_soon(async move {
                guest::sleep(s(3)).await?;
                sh.set_shield(false);
                Ok(())
            })?;
            let s2 = shielded.clone();
            let l2 = l.clone();
            outer
                .run(async move {
                    let r = s2.run(guest::sleep(s(100))).await;
                    l2.push((format!("{r:?}"), guest::current_time()));
                    r.map(|_| ())
                })
                .await
        })
        .await?;
        Ok((out, outer.cancelled_caught(), shielded.cancelled_caught()))
    });
    // The nursery's value is the outer scope's `None`.
    assert_eq!(r, Ok((Some(None), true, false)));
    assert_eq!(end, secs(3));
    assert_eq!(log.take(), vec![("Err(Cancelled)".to_string(), secs(3))]);
}

#[test]
fn another_task_cancels_a_scope_at_its_own_instant() {
    let (r, end) = vrun(async {
        let scope = CancelScope::new();
        let sc = scope.clone();
        guest::open_nursery(async |n| {
            n.start_soon(async move {
                guest::sleep(s(2)).await?;
                sc.cancel();
                Ok(())
            })?;
            let out = scope.run(guest::sleep(s(100))).await?;
            Ok((out, scope.cancelled_caught(), guest::current_time()))
        })
        .await
    });
    assert_eq!(r, Ok(Some((None, true, secs(2)))));
    assert_eq!(end, secs(2));
}

#[test]
fn another_task_moves_a_deadline_earlier() {
    let (r, end) = vrun(async {
        let scope = CancelScope::with_deadline(secs(50));
        let sc = scope.clone();
        guest::open_nursery(async |n| {
            n.start_soon(async move {
                guest::sleep(s(2)).await?;
                sc.set_deadline(secs(4));
                Ok(())
            })?;
            let out = scope.run(guest::sleep(s(100))).await?;
            Ok((out, scope.deadline(), guest::current_time()))
        })
        .await
    });
    assert_eq!(r, Ok(Some((None, secs(4), secs(4)))));
    assert_eq!(end, secs(4));
}

#[test]
fn a_scope_cancelled_before_entry_cancels_the_first_await() {
    let log = Log::new();
    let l = log.clone();
    let (r, _) = vrun(async move {
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope
            .run(async move {
                l.push("body starts");
                guest::sleep(s(1)).await?;
                l.push("not reached");
                Ok(())
            })
            .await?;
        Ok((out, scope.cancel_called(), scope.cancelled_caught(), guest::current_time()))
    });
    assert_eq!(r, Ok((None, true, true, Instant::ZERO)));
    assert_eq!(log.take(), vec!["body starts"]);
}

#[test]
fn a_cancelled_scope_with_a_body_that_never_awaits_catches_nothing() {
    let (r, _) = vrun(async {
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope.run(async { Ok(4) }).await?;
        Ok((out, scope.cancelled_caught()))
    });
    assert_eq!(r, Ok((Some(4), false)));
}

#[test]
fn checkpoint_in_a_cancelled_scope_is_sticky_and_async_cleanup_still_runs() {
    let log = Log::new();
    let l = log.clone();
    let (r, end) = vrun(async move {
        let scope = CancelScope::new();
        let sc = scope.clone();
        let out = scope
            .run(async move {
                sc.cancel();
                let first = guest::checkpoint().await;
                let second = guest::checkpoint().await;
                let sleep = guest::sleep(s(1)).await;
                l.push(format!("{first:?} {second:?} {sleep:?} at {:?}", guest::current_time()));
                // Async clean-up: a shielded scope lets it await.
                CancelScope::shielded()
                    .run(async {
                        guest::sleep(s(3)).await?;
                        l.push(format!("cleaned up at {:?}", guest::current_time()));
                        Ok(())
                    })
                    .await?;
                first
            })
            .await?;
        Ok((out, scope.cancelled_caught()))
    });
    assert_eq!(r, Ok((None, true)));
    assert_eq!(end, secs(3));
    assert_eq!(
        log.take(),
        vec![
            "Err(Cancelled) Err(Cancelled) Err(Cancelled) at Instant(0)".to_string(),
            format!("cleaned up at {:?}", secs(3)),
        ]
    );
}

#[test]
fn checkpoint_sees_a_cancellation_that_arrives_while_it_yields() {
    // Task B cancels A's scope while A is yielding in a checkpoint: A's checkpoint returns
    // Cancelled (trio checks after the schedule point, with the freshest information).
    let log = Log::new();
    let (r, _) = vrun({
        let log = log.clone();
        async move {
            let scope = CancelScope::new();
            let sc = scope.clone();
            guest::open_nursery(async |n| {
                let la = log.clone();
                let sa = scope.clone();
                n.start_soon(async move {
                    let r = sa.run(guest::checkpoint()).await?;
                    la.push(format!("A {r:?} caught={}", sa.cancelled_caught()));
                    Ok(())
                })?;
                let lb = log.clone();
                n.start_soon(async move {
                    sc.cancel();
                    lb.push("B cancelled A".to_string());
                    Ok(())
                })?;
                Ok(())
            })
            .await
        }
    });
    assert_eq!(r, Ok(Some(())));
    assert_eq!(log.take(), vec!["B cancelled A".to_string(), "A None caught=true".to_string()]);
}

#[test]
fn checkpoints_interleave_tasks_in_fifo_order() {
    let log = Log::new();
    let (r, end) = vrun({
        let log = log.clone();
        async move {
            guest::open_nursery(async |n| {
                for name in ["a", "b", "c"] {
                    let l = log.clone();
                    n.start_soon(async move {
                        for i in 0..3 {
                            l.push(format!("{name}{i}"));
                            guest::checkpoint().await?;
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })
            .await
        }
    });
    assert_eq!(r, Ok(Some(())));
    assert_eq!(end, Instant::ZERO);
    assert_eq!(log.take(), ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]);
}

#[test]
fn an_event_wait_is_cancelled_by_its_scope_and_the_event_still_works() {
    let (r, end) = vrun(async {
        let ev = Event::new();
        let out = guest::move_on_after(s(3), ev.wait()).await?;
        let t = guest::current_time();
        assert!(!ev.is_set());
        ev.set();
        ev.wait().await?;
        Ok((out, t, ev.is_set()))
    });
    assert_eq!(r, Ok((None, secs(3), true)));
    assert_eq!(end, secs(3));
}

#[test]
fn an_event_wait_on_a_set_event_in_a_cancelled_scope_is_cancelled() {
    let (r, _) = vrun(async {
        let ev = Event::new();
        ev.set();
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope.run(ev.wait()).await?;
        Ok((out, scope.cancelled_caught()))
    });
    assert_eq!(r, Ok((None, true)));
}

#[test]
fn sleep_forever_returns_cancelled_when_its_scope_is_cancelled() {
    let (r, end) = vrun(async {
        let r = guest::move_on_after(s(7), async {
            let e = guest::sleep_forever().await;
            assert_eq!(e, Err(Error::Cancelled));
            e
        })
        .await?;
        Ok(r)
    });
    assert_eq!(r, Ok(None));
    assert_eq!(end, secs(7));
}

#[test]
fn a_user_error_is_not_caught_by_a_cancelled_scope() {
    let (r, _) = vrun(async {
        let scope = CancelScope::new();
        scope.cancel();
        let r = scope
            .run(async {
                let _ = guest::checkpoint().await;
                Err::<(), _>(boom("Cleanup", "failed during clean-up"))
            })
            .await;
        Ok((r, scope.cancelled_caught()))
    });
    assert_eq!(r, Ok((Err(boom("Cleanup", "failed during clean-up")), false)));
}

#[test]
fn a_scope_runs_once_and_a_second_run_is_a_clear_error() {
    let r = infect::guest::run(async {
        let scope = infect::guest::CancelScope::new();
        let first = scope.run(async { Ok(1) }).await?;
        let ran_again = std::rc::Rc::new(std::cell::Cell::new(false));
        let flag = ran_again.clone();
        let second = scope
            .run(async move {
                flag.set(true);
                Ok(2)
            })
            .await;
        Ok((first, second.map_err(|e| (e.kind().to_string(), e.to_string())), ran_again.get()))
    });
    assert_eq!(
        r,
        Ok((
            Some(1),
            Err(("ScopeReused".to_string(), "a CancelScope can be entered only once: make a new one".to_string())),
            false
        ))
    );
}

// ---- sleeps: the waker of the latest poll; sleep(0) is a checkpoint ----------------------------

#[test]
fn a_guest_sleep_wakes_the_waker_of_its_latest_poll() {
    let other = common::WakeCount::new();
    let o = other.clone();
    let (r, end) = vrun(async move {
        guest::move_on_after(s(5), async move {
            let mut sleep = Box::pin(guest::sleep(s(1)));
            // First polled with a foreign waker, then awaited by this task: the timer must wake
            // this task at 1 s (it used to wake only the first waker; the 5 s deadline ended it).
            let first = sleep.as_mut().poll(&mut std::task::Context::from_waker(&o.waker()));
            assert!(first.is_pending());
            sleep.await?;
            Ok(guest::current_time())
        })
        .await
    });
    assert_eq!(r, Ok(Some(secs(1))));
    assert_eq!(end, secs(1));
    assert_eq!(other.count(), 0, "the replaced waker is not woken");
}

#[test]
fn sleep_zero_yields_to_the_other_tasks_like_a_checkpoint() {
    let log = Log::new();
    let (l1, l2) = (log.clone(), log.clone());
    let (r, end) = vrun(async move {
        guest::open_nursery(async |n| {
            n.start_soon(async move {
                l1.push("a1");
                guest::sleep(Duration::ZERO).await?;
                l1.push("a2");
                Ok(())
            })?;
            n.start_soon(async move {
                l2.push("b1");
                guest::sleep(Duration::ZERO).await?;
                l2.push("b2");
                Ok(())
            })?;
            Ok(())
        })
        .await
    });
    assert_eq!(r, Ok(Some(())));
    assert_eq!(end, Instant::ZERO);
    assert_eq!(log.take(), vec!["a1", "b1", "a2", "b2"]);
}

#[test]
fn sleep_zero_sees_a_cancel_made_while_it_yields() {
    let log = Log::new();
    let (l1, l2) = (log.clone(), log.clone());
    let (r, end) = vrun(async move {
        let scope = CancelScope::new();
        let sc = scope.clone();
        guest::open_nursery(async |n| {
            n.start_soon(async move {
                let out = sc
                    .run(async {
                        let r = guest::sleep(Duration::ZERO).await;
                        l1.push(format!("sleep(0) -> {r:?}"));
                        r
                    })
                    .await?;
                l1.push(format!("scope -> {out:?}"));
                Ok(())
            })?;
            n.start_soon(async move {
                // Runs while the first task yields inside its sleep(0).
                scope.cancel();
                l2.push("cancelled".to_string());
                Ok(())
            })?;
            Ok(())
        })
        .await
    });
    assert_eq!(r, Ok(Some(())));
    assert_eq!(end, Instant::ZERO);
    assert_eq!(log.take(), vec!["cancelled", "sleep(0) -> Err(Cancelled)", "scope -> None"]);
}

// ---- deadlines around foreign futures (the guest's rule for futures that are not infect's) -----

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A foreign future that never completes and never wakes anyone.
fn foreign_forever<T>() -> futures::future::Pending<Result<T>> {
    futures::future::pending()
}

#[test]
fn move_on_after_ends_a_foreign_pending_future_at_exactly_its_deadline() {
    // On a loop that panics when it deadlocks: the old scope never woke the task.
    let lp = common::CallbackLoop::new();
    let r = lp.run_guest(async {
        let out = guest::move_on_after(ms(10), foreign_forever::<u32>()).await?;
        Ok((out, guest::current_time()))
    });
    assert_eq!(r, Ok((None, common::millis(10))));
}

#[test]
fn fail_after_reports_too_slow_for_a_foreign_future_at_its_deadline() {
    let lp = common::CallbackLoop::new();
    let r = lp.run_guest(async { guest::fail_after(s(3), foreign_forever::<()>()).await });
    assert_eq!(r, Err(Error::TooSlow));
    assert_eq!(lp.now(), secs(3));
}

#[test]
// Miri: parks in poll(2) (the monotonic clock), which Miri cannot run.
#[cfg_attr(miri, ignore)]
fn a_foreign_future_under_a_real_deadline_ends_on_time() {
    // The foreign future would complete after 400 ms (woken from another thread); the 20 ms
    // deadline must end it at 20 ms, not when the foreign future happens to wake the task.
    let (tx, rx) = futures::channel::oneshot::channel::<u32>();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        let _ = tx.send(7);
    });
    let wall = std::time::Instant::now();
    let r = guest::run(async move { guest::move_on_after(ms(20), async move { Ok(rx.await) }).await });
    let took = wall.elapsed();
    sender.join().unwrap();
    assert_eq!(r, Ok(None));
    assert!(took >= ms(20) && took < ms(200), "returned after {took:?}");
}

#[test]
fn a_nursery_child_blocked_in_a_foreign_future_is_dropped_when_the_nursery_is_cancelled() {
    let drops = common::DropCounter::new();
    let g = drops.guard();
    let lp = common::CallbackLoop::new();
    let r = lp.run_guest(async move {
        guest::open_nursery(async |n| {
            n.start_soon(async move {
                let _g = g;
                foreign_forever::<()>().await
            })?;
            guest::sleep(s(1)).await?;
            n.cancel();
            Ok(1)
        })
        .await
    });
    assert_eq!(r, Ok(Some(1)));
    assert_eq!(lp.now(), secs(1));
    assert_eq!(drops.dropped(), 1);
}

#[test]
fn a_dropped_foreign_block_leaves_the_children_their_shielded_clean_up() {
    // The outer deadline cancels the nursery: its block, blocked in a foreign future, is dropped;
    // the child, at an infect await, unwinds with `?` and its shielded clean-up runs to the end
    // before the nursery (an uncancellable wait) returns.
    let log = Log::new();
    let l = log.clone();
    let lp = common::CallbackLoop::new();
    let r = lp.run_guest(async move {
        let out = guest::move_on_after(
            ms(10),
            guest::open_nursery(async |n| {
                let l = l.clone();
                n.start_soon(async move {
                    let r = guest::sleep(s(1)).await;
                    l.push(("child cancelled", guest::current_time()));
                    CancelScope::shielded().run(guest::sleep(ms(5))).await?;
                    l.push(("child cleaned up", guest::current_time()));
                    r
                })?;
                foreign_forever::<()>().await
            }),
        )
        .await?;
        Ok((out, guest::current_time()))
    });
    assert_eq!(r, Ok((None, common::millis(15))));
    assert_eq!(log.take(), vec![("child cancelled", common::millis(10)), ("child cleaned up", common::millis(15))]);
}

#[test]
fn clean_up_in_a_shielded_scope_after_a_cancelled_foreign_await_still_runs() {
    // `cancellable` turns the foreign await into a cancellation point: the code after it runs,
    // and a shielded clean-up may itself await a foreign future (a shield protects it).
    let log = Log::new();
    let l = log.clone();
    let lp = common::CallbackLoop::new();
    let r = lp.run_guest(async move {
        let (tx, rx) = futures::channel::oneshot::channel::<u32>();
        guest::open_nursery(async |n| {
            n.start_soon(async move {
                guest::sleep(ms(25)).await?;
                let _ = tx.send(7);
                Ok(())
            })?;
            let out = guest::move_on_after(ms(10), async move {
                let r = guest::cancellable(futures::future::pending::<()>()).await;
                l.push(format!("foreign await -> {r:?} at {:?}", guest::current_time()));
                let got = CancelScope::shielded().run(async move { Ok(rx.await) }).await?;
                l.push(format!("clean-up got {got:?} at {:?}", guest::current_time()));
                r
            })
            .await?;
            Ok((out, guest::current_time()))
        })
        .await
    });
    assert_eq!(r, Ok(Some((None, common::millis(25)))));
    assert_eq!(
        log.take(),
        vec![
            format!("foreign await -> Err(Cancelled) at {:?}", common::millis(10)),
            format!("clean-up got Some(Ok(7)) at {:?}", common::millis(25)),
        ]
    );
}

#[test]
fn a_foreign_future_inside_a_shield_is_not_dropped_by_an_outer_deadline() {
    // Two foreign awaits in a shield under a 10 ms deadline: the first one wakes the task at
    // 20 ms, after the deadline, and the body is still blocked in the second one; the shield
    // protects it, so it finishes at 30 ms.
    let lp = common::CallbackLoop::new();
    let r = lp.run_guest(async move {
        let (tx1, rx1) = futures::channel::oneshot::channel::<u32>();
        let (tx2, rx2) = futures::channel::oneshot::channel::<u32>();
        guest::open_nursery(async |n| {
            n.start_soon(async move {
                guest::sleep(ms(20)).await?;
                let _ = tx1.send(1);
                guest::sleep(ms(10)).await?;
                let _ = tx2.send(2);
                Ok(())
            })?;
            let shield = CancelScope::shielded();
            let out = guest::move_on_after(ms(10), shield.run(async move { Ok((rx1.await, rx2.await)) })).await?;
            Ok((out, guest::current_time()))
        })
        .await
    });
    assert_eq!(r, Ok(Some((Some(Some((Ok(1), Ok(2)))), common::millis(30)))));
}

#[test]
fn a_foreign_deadline_inside_a_nursery_block_wakes_the_task() {
    // The nursery's own watcher must not hide the inner scope the task blocks in.
    let lp = common::CallbackLoop::new();
    let r = lp.run_guest(async {
        guest::open_nursery(async |_n| {
            let out = guest::move_on_after(ms(10), foreign_forever::<u32>()).await?;
            Ok((out, guest::current_time()))
        })
        .await
    });
    assert_eq!(r, Ok(Some((None, common::millis(10)))));
}

#[test]
fn cancellable_returns_the_foreign_output_when_it_finishes_first() {
    let lp = common::CallbackLoop::new();
    let r = lp.run_guest(async {
        let out = guest::move_on_after(s(5), async { guest::cancellable(futures::future::ready(4)).await }).await?;
        Ok((out, guest::current_time()))
    });
    assert_eq!(r, Ok((Some(4), Instant::ZERO)));
}

#[test]
fn checkpoint_if_cancelled_checks_without_yielding() {
    let log = Log::new();
    let (l1, l2) = (log.clone(), log.clone());
    let (r, _) = vrun(async move {
        guest::open_nursery(async |n| {
            n.start_soon(async move {
                l1.push("a1".to_string());
                guest::lowlevel::checkpoint_if_cancelled().await?;
                l1.push("a2".to_string());
                let scope = CancelScope::new();
                scope.cancel();
                let r = scope.run(guest::lowlevel::checkpoint_if_cancelled()).await;
                l1.push(format!("cancelled scope -> {r:?}, caught {}", scope.cancelled_caught()));
                Ok(())
            })?;
            n.start_soon(async move {
                l2.push("b1".to_string());
                Ok(())
            })?;
            Ok(())
        })
        .await
    });
    assert_eq!(r, Ok(Some(())));
    assert_eq!(log.take(), vec!["a1", "a2", "cancelled scope -> Ok(None), caught true", "b1"]);
}

#[test]
fn an_infect_await_that_completed_does_not_hide_a_foreign_await_after_it() {
    // In the same poll: an Event that is already set (an infect await that completes at once),
    // then a foreign future. The deadline must still wake the task and drop the foreign wait.
    let lp = common::CallbackLoop::new();
    let r = lp.run_guest(async {
        let ev = Event::new();
        ev.set();
        let out = guest::move_on_after(ms(10), async {
            CancelScope::new().run(ev.wait()).await?;
            foreign_forever::<u32>().await
        })
        .await?;
        Ok((out, guest::current_time()))
    });
    assert_eq!(r, Ok((None, common::millis(10))));
}

#[test]
fn a_branch_of_a_join_cancels_a_scope_another_branch_of_the_same_task_waits_in() {
    // One task waits in two scopes at once (two branches of a `join`): the branch that cancels
    // the other's scope runs inside the same task, so the cancel must wake that task for the
    // waiting branch to see it.
    let (r, end) = vrun(async {
        let scope = CancelScope::new();
        let waiting = async {
            let out = scope
                .run(async {
                    guest::sleep(s(3)).await?;
                    Ok("slept")
                })
                .await?;
            Ok::<_, Error>((out, guest::current_time()))
        };
        let cancelling = async {
            guest::sleep(Duration::from_millis(10)).await?;
            scope.cancel();
            Ok::<_, Error>(())
        };
        let (w, c) = futures::join!(waiting, cancelling);
        c?;
        w
    });
    assert_eq!(r, Ok((None, Instant::ZERO + Duration::from_millis(10))));
    assert_eq!(end, Instant::ZERO + Duration::from_millis(10));
}
