//! Nurseries on a virtual clock: the first error cancels the siblings (which see `Cancelled`
//! and still run their async clean-up), a lone error comes out bare, independent errors come
//! out as one `ErrorGroup` in the order they happened, `start` hands back the started value
//! (or the error / `StartedNotCalled` from before `started`), no child outlives its nursery.

mod common;

use common::{Log, boom, s, secs, vclock};
use infect::guest::{self, CancelScope, Event, GuestConfig, Nursery, TaskStatus};
use infect::time::{Clock, Instant};
use infect::{Error, ErrorGroup, Result};

fn vrun<T: 'static>(main: impl Future<Output = Result<T>> + 'static) -> (Result<T>, Instant) {
    let clock = vclock();
    let r = guest::run_with(GuestConfig::new(clock.clone()), main);
    (r, clock.now())
}

fn at() -> String {
    format!("{}s", guest::current_time().as_nanos() as f64 / 1e9)
}

#[test]
fn the_first_error_cancels_the_siblings_which_still_clean_up() {
    let log = Log::new();
    let l = log.clone();
    let (r, end) = vrun(async move {
        guest::open_nursery(async |n| {
            let la = l.clone();
            n.start_soon(async move {
                guest::sleep(s(1)).await?;
                la.push(format!("A fails at {}", at()));
                Err(boom("A", "a failed"))
            })?;
            let lb = l.clone();
            n.start_soon(async move {
                let r = guest::sleep(s(100)).await;
                lb.push(format!("B {r:?} at {}", at()));
                // Async clean-up behind a shield: it may still await.
                CancelScope::shielded()
                    .run(async {
                        guest::sleep(s(2)).await?;
                        lb.push(format!("B cleaned up at {}", at()));
                        Ok(())
                    })
                    .await?;
                r
            })?;
            let lc = l.clone();
            n.start_soon(async move {
                let r = Event::new().wait().await;
                lc.push(format!("C {r:?} at {}", at()));
                // Unshielded, the cancellation is sticky.
                let again = guest::checkpoint().await;
                lc.push(format!("C again {again:?}"));
                r
            })?;
            let r = guest::sleep_forever().await;
            l.push(format!("body {r:?} at {}", at()));
            r.map(|_| 0)
        })
        .await
    });
    assert_eq!(r, Err(boom("A", "a failed")), "a lone error comes out bare");
    assert_eq!(end, secs(3), "the nursery waited for B's clean-up");
    assert_eq!(
        log.take(),
        [
            "A fails at 1s",
            "body Err(Cancelled) at 1s",
            "B Err(Cancelled) at 1s",
            "C Err(Cancelled) at 1s",
            "C again Err(Cancelled)",
            "B cleaned up at 3s",
        ]
    );
}

#[test]
fn two_independent_errors_come_out_as_one_group_in_order() {
    let (r, end) = vrun(async {
        guest::open_nursery(async |n| {
            n.start_soon(async { Err(boom("First", "one")) })?;
            n.start_soon(async { Err(boom("Second", "two")) })?;
            guest::sleep_forever().await
        })
        .await
    });
    let group = ErrorGroup(vec![boom("First", "one"), boom("Second", "two")]);
    assert_eq!(r, Err(Error::Group(group.clone())));
    assert_eq!(end, Instant::ZERO);
    let e = r.unwrap_err();
    assert_eq!(e.kind(), "ErrorGroup");
    assert_eq!(e.to_string(), "2 independent errors: [First: one; Second: two]");
}

#[test]
fn two_children_failing_alike_are_two_errors() {
    let (r, _) = vrun(async {
        guest::open_nursery(async |n| {
            n.start_soon(async { Err(boom("Same", "failed")) })?;
            n.start_soon(async { Err(boom("Same", "failed")) })?;
            guest::sleep_forever().await
        })
        .await
    });
    let Err(Error::Group(ErrorGroup(errs))) = &r else { panic!("expected a group, got {r:?}") };
    assert_eq!(errs, &vec![boom("Same", "failed"), boom("Same", "failed")]);
    assert!(!errs[0].is_same(&errs[1]));
}

#[test]
fn an_error_raised_during_clean_up_joins_the_group() {
    let (r, end) = vrun(async {
        guest::open_nursery(async |n| {
            n.start_soon(async {
                guest::sleep(s(1)).await?;
                Err(boom("A", "a failed"))
            })?;
            n.start_soon(async {
                match guest::sleep(s(100)).await {
                    Err(Error::Cancelled) => Err(boom("B", "clean-up failed")),
                    other => other,
                }
            })?;
            Ok(())
        })
        .await
    });
    assert_eq!(r, Err(Error::Group(ErrorGroup(vec![boom("A", "a failed"), boom("B", "clean-up failed")]))));
    assert_eq!(end, secs(1));
}

#[test]
fn the_block_error_and_a_child_error_form_a_group() {
    let (r, _) = vrun(async {
        guest::open_nursery(async |n| {
            n.start_soon(async { Err(boom("Child", "child failed")) })?;
            Err::<(), _>(boom("Block", "block failed"))
        })
        .await
    });
    assert_eq!(r, Err(Error::Group(ErrorGroup(vec![boom("Block", "block failed"), boom("Child", "child failed")]))));
}

#[test]
fn the_block_value_comes_out_after_every_child_finished() {
    let log = Log::new();
    let l = log.clone();
    let (r, end) = vrun(async move {
        let v = guest::open_nursery(async |n| {
            for (i, d) in [(1u64, 3u64), (2, 1), (3, 2)] {
                let l = l.clone();
                n.start_soon(async move {
                    guest::sleep(s(d)).await?;
                    l.push(format!("child {i} done at {}", at()));
                    Ok(())
                })?;
            }
            assert_eq!(n.live_children(), 3);
            l.push("block done".to_string());
            Ok("value")
        })
        .await?;
        Ok((v, guest::current_time()))
    });
    assert_eq!(r, Ok((Some("value"), secs(3))));
    assert_eq!(end, secs(3));
    assert_eq!(log.take(), ["block done", "child 2 done at 1s", "child 3 done at 2s", "child 1 done at 3s"]);
}

#[test]
fn start_returns_the_started_value_and_the_child_runs_on() {
    let log = Log::new();
    let l = log.clone();
    let (r, end) = vrun(async move {
        guest::open_nursery(async |n| {
            let lc = l.clone();
            let v = n
                .start(async move |status| {
                    guest::sleep(s(1)).await?;
                    status.started(format!("ready at {}", at()));
                    guest::sleep(s(4)).await?;
                    lc.push(format!("child done at {}", at()));
                    Ok(())
                })
                .await?;
            l.push(format!("start returned {v:?} at {}", at()));
            assert_eq!(n.live_children(), 1);
            Ok(v)
        })
        .await
    });
    assert_eq!(r, Ok(Some("ready at 1s".to_string())));
    assert_eq!(end, secs(5));
    assert_eq!(log.take(), ["start returned \"ready at 1s\" at 1s", "child done at 5s"]);
}

#[test]
fn an_error_before_started_comes_out_of_start_not_the_nursery() {
    let (r, end) = vrun(async {
        guest::open_nursery(async |n| {
            n.start_soon(async { guest::sleep(s(5)).await })?;
            let r = n
                .start(async |_status: TaskStatus<u32>| {
                    guest::sleep(s(2)).await?;
                    Err(boom("Setup", "could not start"))
                })
                .await;
            Ok((r, guest::current_time()))
        })
        .await
    });
    // The sibling was not cancelled: the nursery ended at 5 s with the block's value.
    assert_eq!(r, Ok(Some((Err(boom("Setup", "could not start")), secs(2)))));
    assert_eq!(end, secs(5));
}

#[test]
fn an_error_after_started_belongs_to_the_nursery() {
    let (r, end) = vrun(async {
        guest::open_nursery(async |n| {
            let v = n
                .start(async |status| {
                    status.started(1u8);
                    guest::sleep(s(2)).await?;
                    Err(boom("Later", "failed after started"))
                })
                .await?;
            assert_eq!(v, 1);
            guest::sleep_forever().await
        })
        .await
    });
    assert_eq!(r, Err::<Option<()>, _>(boom("Later", "failed after started")));
    assert_eq!(end, secs(2));
}

#[test]
fn returning_before_started_is_started_not_called() {
    let (r, _) = vrun(async {
        guest::open_nursery(async |n| {
            let r = n.start(async |_status: TaskStatus<u32>| Ok(())).await;
            Ok(r)
        })
        .await
    });
    assert_eq!(r, Ok(Some(Err(Error::StartedNotCalled))));
    assert_eq!(
        Error::StartedNotCalled.to_string(),
        "the task passed to Nursery::start returned without calling task_status.started()"
    );
}

#[test]
fn cancelling_the_start_caller_cancels_the_child() {
    let log = Log::new();
    let l = log.clone();
    let (r, end) = vrun(async move {
        guest::open_nursery(async |n| {
            let lc = l.clone();
            let out = guest::move_on_after(
                s(1),
                n.start(async move |status| {
                    let r = guest::sleep(s(10)).await;
                    lc.push(format!("child {r:?} at {}", at()));
                    r?;
                    status.started(5u32);
                    Ok(())
                }),
            )
            .await?;
            Ok((out, n.live_children()))
        })
        .await
    });
    assert_eq!(r, Ok(Some((None, 0))));
    assert_eq!(end, secs(1));
    assert_eq!(log.take(), ["child Err(Cancelled) at 1s"]);
}

#[test]
fn nursery_cancel_cancels_children_and_keeps_the_block_value() {
    let (r, end) = vrun(async {
        guest::open_nursery(async |n| {
            n.start_soon(async { guest::sleep_forever().await })?;
            n.start_soon(async { guest::sleep(s(100)).await })?;
            guest::sleep(s(2)).await?;
            n.cancel();
            Ok(7)
        })
        .await
    });
    assert_eq!(r, Ok(Some(7)));
    assert_eq!(end, secs(2));
}

#[test]
fn a_nursery_swallows_its_own_cancel_with_the_block_at_an_await() {
    // trio: cancelling a nursery's own scope is the normal way to stop it, not a failure. The
    // block was interrupted, so there is no value: `Ok(None)`, and code after it goes on.
    let (r, end) = vrun(async {
        let mut scope = None;
        let r = guest::open_nursery(async |n| {
            scope = Some(n.cancel_scope().clone());
            n.start_soon(async { guest::sleep_forever().await })?;
            let nc = n.clone();
            n.start_soon(async move {
                guest::sleep(s(3)).await?;
                nc.cancel();
                Ok(())
            })?;
            guest::sleep_forever().await?;
            Ok(1)
        })
        .await;
        let caught = scope.expect("the block ran").cancelled_caught();
        // After the nursery: not cancelled any more.
        guest::sleep(s(1)).await?;
        Ok((r, caught, guest::current_time()))
    });
    assert_eq!(r, Ok((Ok(None), true, secs(4))));
    assert_eq!(end, secs(4));
}

#[test]
fn a_nursery_cancelled_by_its_own_deadline_is_not_a_failure_of_the_run() {
    let (r, end) = vrun(async {
        guest::open_nursery(async |n| {
            n.cancel_scope().set_deadline(secs(2));
            n.start_soon(async { guest::sleep(s(100)).await })?;
            guest::sleep_forever().await?;
            Ok("never")
        })
        .await
    });
    assert_eq!(r, Ok(None));
    assert_eq!(end, secs(2));
}

#[test]
fn a_nursery_cancelled_after_its_block_returned_keeps_the_value_and_no_cancel_leaks() {
    let (r, end) = vrun(async {
        let mut scope = None;
        let r = guest::open_nursery(async |n| {
            scope = Some(n.cancel_scope().clone());
            let nc = n.clone();
            n.start_soon(async move {
                guest::sleep(s(1)).await?;
                nc.cancel();
                Ok(())
            })?;
            n.start_soon(async { guest::sleep(s(100)).await })?;
            Ok(5)
        })
        .await?;
        Ok((r, scope.expect("ran").cancelled_caught()))
    });
    assert_eq!(r, Ok((Some(5), true)));
    assert_eq!(end, secs(1));
}

#[test]
fn a_cancel_scope_around_the_nursery_turns_its_cancellation_into_none() {
    let (r, end) = vrun(async {
        let scope = CancelScope::new();
        let sc = scope.clone();
        let out = scope
            .run(guest::open_nursery(async |n| {
                n.start_soon(async { guest::sleep_forever().await })?;
                n.start_soon(async move {
                    guest::sleep(s(3)).await?;
                    sc.cancel();
                    Ok(())
                })?;
                guest::sleep_forever().await?;
                Ok(1)
            }))
            .await?;
        Ok((out, scope.cancelled_caught()))
    });
    assert_eq!(r, Ok((None, true)));
    assert_eq!(end, secs(3));
}

#[test]
fn an_outer_deadline_cancels_the_whole_nursery() {
    let (r, end) = vrun(async {
        guest::move_on_after(
            s(2),
            guest::open_nursery(async |n| {
                n.start_soon(async { guest::sleep_forever().await })?;
                n.start_soon(async { guest::sleep(s(100)).await })?;
                guest::sleep_forever().await?;
                Ok(())
            }),
        )
        .await
    });
    assert_eq!(r, Ok(None));
    assert_eq!(end, secs(2));
}

#[test]
fn a_deadline_on_the_nursery_scope_cancels_its_children() {
    let (r, end) = vrun(async {
        guest::open_nursery(async |n| {
            n.cancel_scope().set_deadline(secs(4));
            n.start_soon(async { guest::sleep_forever().await })?;
            Ok("block value")
        })
        .await
    });
    assert_eq!(r, Ok(Some("block value")));
    assert_eq!(end, secs(4));
}

#[test]
fn an_inner_nursery_error_cancels_the_outer_siblings() {
    let log = Log::new();
    let l = log.clone();
    let (r, end) = vrun(async move {
        guest::open_nursery(async |outer| {
            let lo = l.clone();
            outer.start_soon(async move {
                let r = guest::sleep(s(100)).await;
                lo.push(format!("outer sibling {r:?} at {}", at()));
                r
            })?;
            guest::open_nursery(async |inner| {
                inner.start_soon(async {
                    guest::sleep(s(1)).await?;
                    Err(boom("Inner", "inner child failed"))
                })?;
                guest::sleep_forever().await
            })
            .await
        })
        .await
    });
    assert_eq!(r, Err::<Option<Option<()>>, _>(boom("Inner", "inner child failed")));
    assert_eq!(end, secs(1));
    assert_eq!(log.take(), ["outer sibling Err(Cancelled) at 1s"]);
}

#[test]
fn a_closed_nursery_refuses_new_tasks() {
    let (r, _) = vrun(async {
        let mut kept: Option<Nursery> = None;
        guest::open_nursery(async |n| {
            kept = Some(n.clone());
            Ok(())
        })
        .await?;
        let n = kept.unwrap();
        let soon = n.start_soon(async { Ok(()) });
        let start = n.start(async |st| {
            st.started(());
            Ok(())
        });
        Ok((soon, start.await))
    });
    assert_eq!(r, Ok((Err(Error::NurseryClosed), Err(Error::NurseryClosed))));
}

#[test]
fn a_child_may_start_siblings_through_a_cloned_handle() {
    let log = Log::new();
    let l = log.clone();
    let (r, end) = vrun(async move {
        guest::open_nursery(async |n| {
            let nc = n.clone();
            let l1 = l.clone();
            n.start_soon(async move {
                guest::sleep(s(1)).await?;
                let l2 = l1.clone();
                nc.start_soon(async move {
                    guest::sleep(s(1)).await?;
                    l2.push(format!("grandchild at {}", at()));
                    Ok(())
                })?;
                l1.push(format!("child at {}", at()));
                Ok(())
            })?;
            Ok(())
        })
        .await
    });
    assert_eq!(r, Ok(Some(())));
    assert_eq!(end, secs(2));
    assert_eq!(log.take(), ["child at 1s", "grandchild at 2s"]);
}
