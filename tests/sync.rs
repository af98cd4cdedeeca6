//! Guest synchronisation on a virtual clock: the bounded channel's back-pressure (exact send
//! and receive instants), order, end-of-channel with several senders, a gone receiver
//! (`Closed`, values handed back), cancellation of blocked sends and receives; `Event`.

mod common;

use futures::StreamExt;

use common::{Log, s, secs, vclock};
use infect::guest::{self, CancelScope, Event, GuestConfig, SendNowaitError};
use infect::time::{Clock, Instant};
use infect::{Error, Result};

fn vrun<T: 'static>(main: impl Future<Output = Result<T>> + 'static) -> (Result<T>, Instant) {
    let clock = vclock();
    let r = guest::run_with(GuestConfig::new(clock.clone()), main);
    (r, clock.now())
}

fn at() -> u64 {
    guest::current_time().as_nanos() / 1_000_000_000
}

#[test]
fn a_full_channel_holds_the_sender_back_until_the_receiver_takes_a_value() {
    let log = Log::new();
    let l = log.clone();
    let (r, end) = vrun(async move {
        let (tx, mut rx) = guest::channel::<u32>(2);
        guest::open_nursery(async |n| {
            let lp = l.clone();
            n.start_soon(async move {
                for i in 0..5 {
                    tx.send(i).await?;
                    lp.push(format!("sent {i} at {}s", at()));
                }
                Ok(())
            })?;
            let lc = l.clone();
            n.start_soon(async move {
                let mut most = 0;
                loop {
                    guest::sleep(s(1)).await?;
                    most = most.max(rx.len());
                    match rx.try_next().await? {
                        Some(v) => lc.push(format!("got {v} at {}s", at())),
                        None => break,
                    }
                }
                lc.push(format!("end of channel at {}s, at most {most} buffered", at()));
                Ok(())
            })?;
            Ok(())
        })
        .await
    });
    assert_eq!(r, Ok(Some(())));
    assert_eq!(end, secs(6));
    assert_eq!(
        log.take(),
        [
            "sent 0 at 0s",
            "sent 1 at 0s",
            "got 0 at 1s",
            "sent 2 at 1s",
            "got 1 at 2s",
            "sent 3 at 2s",
            "got 2 at 3s",
            "sent 4 at 3s",
            "got 3 at 4s",
            "got 4 at 5s",
            "end of channel at 6s, at most 2 buffered",
        ]
    );
}

#[test]
fn end_of_channel_comes_once_every_sender_is_gone_and_repeats() {
    let (r, _) = vrun(async {
        let (tx, mut rx) = guest::channel::<&str>(4);
        let tx2 = tx.clone();
        tx.send("a").await?;
        tx2.send("b").await?;
        drop(tx);
        assert_eq!(rx.receive_nowait(), Ok(Some("a")));
        tx2.send("c").await?;
        assert_eq!(rx.receive_nowait(), Ok(Some("b")));
        // One sender is left and the buffer holds "c".
        drop(tx2);
        let mut got = Vec::new();
        while let Some(v) = rx.try_next().await? {
            got.push(v);
        }
        Ok((got, rx.try_next().await?, rx.receive_nowait(), rx.is_empty()))
    });
    assert_eq!(r, Ok((vec!["c"], None, Ok(None), true)));
}

#[test]
fn try_recv_on_an_empty_open_channel_is_err() {
    let (r, _) = vrun(async {
        let (_tx, mut rx) = guest::channel::<u8>(1);
        Ok(rx.receive_nowait())
    });
    assert_eq!(r, Ok(Err(guest::Empty)));
}

#[test]
fn a_full_or_closed_channel_hands_the_value_back() {
    let (r, _) = vrun(async {
        let (tx, rx) = guest::channel::<String>(1);
        tx.send_nowait("one".into()).unwrap();
        let full = tx.send_nowait("two".into());
        drop(rx);
        let closed = tx.send_nowait("three".into());
        let send = tx.send("four".into()).await;
        Ok((full, closed, send))
    });
    assert_eq!(
        r,
        Ok((
            Err(SendNowaitError::Full("two".to_string())),
            Err(SendNowaitError::Gone("three".to_string(), Error::Closed)),
            Err(Error::Closed)
        ))
    );
}

#[test]
fn a_sender_blocked_on_a_full_channel_sees_closed_when_the_receiver_goes() {
    let log = Log::new();
    let l = log.clone();
    let (r, end) = vrun(async move {
        let (tx, rx) = guest::channel::<u8>(1);
        tx.send(1).await?;
        guest::open_nursery(async |n| {
            n.start_soon(async move {
                let r = tx.send(2).await;
                l.push(format!("send {r:?} at {}s", at()));
                Ok(())
            })?;
            guest::sleep(s(2)).await?;
            drop(rx);
            Ok(())
        })
        .await
    });
    assert_eq!(r, Ok(Some(())));
    assert_eq!(end, secs(2));
    assert_eq!(log.take(), ["send Err(Closed) at 2s"]);
}

#[test]
fn a_blocked_send_is_cancelled_and_sends_nothing() {
    let (r, end) = vrun(async {
        let (tx, mut rx) = guest::channel::<u8>(2);
        tx.send(1).await?;
        tx.send(2).await?;
        let out = guest::move_on_after(s(1), tx.send(9)).await?;
        let t = guest::current_time();
        drop(tx);
        let mut rest = Vec::new();
        while let Some(v) = rx.try_next().await? {
            rest.push(v);
        }
        Ok((out, t, rest))
    });
    assert_eq!(r, Ok((None, secs(1), vec![1, 2])));
    assert_eq!(end, secs(1));
}

#[test]
fn a_receive_in_a_cancelled_scope_is_cancelled_and_leaves_the_value() {
    let (r, _) = vrun(async {
        let (tx, mut rx) = guest::channel::<u8>(2);
        tx.send(7).await?;
        let (scope, scope2) = (CancelScope::new(), CancelScope::new());
        scope.cancel();
        scope2.cancel();
        let out = scope.run(rx.try_next()).await?;
        let send_out = scope2.run(tx.send(8)).await?;
        Ok((out, send_out, rx.len(), rx.receive_nowait()))
    });
    assert_eq!(r, Ok((None, None, 1, Ok(Some(7)))));
}

#[test]
fn a_blocked_receive_is_cancelled_by_a_deadline() {
    let (r, end) = vrun(async {
        let (_tx, mut rx) = guest::channel::<u8>(1);
        let out = guest::move_on_after(s(4), rx.try_next()).await?;
        Ok(out)
    });
    assert_eq!(r, Ok(None));
    assert_eq!(end, secs(4));
}

#[test]
fn the_receiver_is_a_stream_of_values() {
    let (r, _) = vrun(async {
        let (tx, rx) = guest::channel::<u32>(3);
        guest::open_nursery(async |n| {
            n.start_soon(async move {
                for i in 1..=6 {
                    tx.send(i * 10).await?;
                    guest::sleep(s(1)).await?;
                }
                Ok(())
            })?;
            let got: Vec<Result<u32>> = rx.collect().await;
            Ok(got)
        })
        .await
    });
    assert_eq!(r, Ok(Some(vec![Ok(10), Ok(20), Ok(30), Ok(40), Ok(50), Ok(60)])));
}

#[test]
fn an_event_wakes_every_waiter_once_and_stays_set() {
    let log = Log::new();
    let l = log.clone();
    let (r, end) = vrun(async move {
        let ev = Event::new();
        guest::open_nursery(async |n| {
            for name in ["w1", "w2", "w3"] {
                let (e, l) = (ev.clone(), l.clone());
                n.start_soon(async move {
                    e.wait().await?;
                    l.push(format!("{name} at {}s", at()));
                    Ok(())
                })?;
            }
            guest::sleep(s(2)).await?;
            ev.set();
            ev.set();
            Ok(())
        })
        .await?;
        ev.wait().await?;
        Ok(ev.is_set())
    });
    assert_eq!(r, Ok(true));
    assert_eq!(end, secs(2));
    assert_eq!(log.take(), ["w1 at 2s", "w2 at 2s", "w3 at 2s"]);
}

/// `receive()` gives each value bare, then `EndOfChannel` once every sender is gone and the
/// buffer is drained; `try_next()` says `None` at that point, `receive_nowait()` `Ok(None)`.
#[test]
fn receive_ends_with_end_of_channel_try_next_with_none() {
    let r = guest::run(async {
        let (tx, mut rx) = guest::channel::<u32>(4);
        let empty = rx.receive_nowait().map_err(|_| "empty");
        tx.send(1).await?;
        tx.send(2).await?;
        drop(tx);
        let a = rx.receive().await?;
        let b = rx.try_next().await?;
        Ok((empty, a, b, rx.receive().await, rx.try_next().await, rx.receive_nowait().map_err(|_| "empty")))
    });
    assert_eq!(r, Ok((Err("empty"), 1, Some(2), Err(Error::EndOfChannel), Ok(None), Ok(None))));
}
