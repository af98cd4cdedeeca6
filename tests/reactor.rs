//! The epoll reactor: readiness wakes exactly the registered wakers, in registration order;
//! parking, notifying, deregistering, hang-up, and an `AsyncFd` round trip.
//!
//! Every test that opens descriptors runs inside [`no_fd_leak`], which serializes those tests
//! (the harness runs tests on parallel threads of one process) and asserts that the set of
//! open descriptors in `/proc/self/fd` is the same before and after.
#![cfg(all(feature = "std", target_os = "linux"))]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs::File;
use std::future::Future;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use infect::reactor::fd::{self, AsyncFd};
use infect::reactor::{Notifier, Parked, Reactor, Readiness};

/// Long enough that a correct reactor never hits it; short enough that a broken one fails
/// instead of hanging the suite.
const PATIENCE: Duration = Duration::from_secs(10);

// ---- helpers -----------------------------------------------------------------------------

static FD_TESTS: Mutex<()> = Mutex::new(());

fn open_fds() -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .map(|entry| entry.expect("fd entry").file_name().into_string().unwrap())
        .collect()
}

/// Runs `scenario` alone among the fd-opening tests and asserts it closed every descriptor
/// it opened.
fn no_fd_leak(scenario: impl FnOnce()) {
    let _alone: MutexGuard<'_, ()> = FD_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let before = open_fds();
    scenario();
    let after = open_fds();
    assert_eq!(after.difference(&before).collect::<Vec<_>>(), Vec::<&String>::new(), "descriptors leaked");
    assert_eq!(before, after, "descriptors closed that the test did not open");
}

/// A waker that counts its wakes.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting() -> (Arc<CountingWaker>, Waker) {
    let count = Arc::new(CountingWaker::default());
    let waker = Waker::from(Arc::clone(&count));
    (count, waker)
}

fn wakes(count: &CountingWaker) -> usize {
    count.0.load(Ordering::SeqCst)
}

/// A waker that appends its name to a shared log when woken.
struct NamedWaker {
    name: &'static str,
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl Wake for NamedWaker {
    fn wake(self: Arc<Self>) {
        self.log.lock().unwrap().push(self.name);
    }
}

fn named(name: &'static str, log: &Arc<Mutex<Vec<&'static str>>>) -> Waker {
    Waker::from(Arc::new(NamedWaker { name, log: Arc::clone(log) }))
}

/// Polls `future` once with `waker`.
fn poll_with<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
}

fn write_byte(tx: &OwnedFd) {
    let mut file = File::from(tx.try_clone().expect("dup"));
    file.write_all(b"x").expect("write to pipe");
}

/// A flag waker for `block_on`.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A minimal executor: poll when woken, park on the reactor when not. Returns the output and
/// how many times it parked.
fn block_on<F: Future>(reactor: &Reactor, future: F) -> (F::Output, usize) {
    let _entered = reactor.enter();
    let flag = Arc::new(Flag(AtomicBool::new(true)));
    let waker = Waker::from(Arc::clone(&flag));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let mut parks = 0;
    loop {
        if flag.0.swap(false, Ordering::SeqCst) {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return (out, parks);
            }
        } else {
            let parked = reactor.park(Some(PATIENCE)).expect("park");
            parks += 1;
            assert!(parked.woken > 0, "stalled: parked {PATIENCE:?} with nothing ready");
        }
    }
}

// ---- readiness and wake order ------------------------------------------------------------

#[test]
fn pipe_write_wakes_exactly_the_registered_waker() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let (rx_a, tx_a) = fd::pipe().unwrap();
        let (rx_b, _tx_b) = fd::pipe().unwrap();
        let (count_a, waker_a) = counting();
        let (count_b, waker_b) = counting();
        let mut ready_a = reactor.readable(rx_a.as_raw_fd());
        let mut ready_b = reactor.readable(rx_b.as_raw_fd());

        assert!(poll_with(&mut ready_a, &waker_a).is_pending());
        assert!(poll_with(&mut ready_b, &waker_b).is_pending());
        assert!(reactor.has_interests());
        assert_eq!(reactor.park(Some(Duration::ZERO)).unwrap(), Parked::default());

        write_byte(&tx_a);
        let parked = reactor.park(Some(PATIENCE)).unwrap();
        assert_eq!(parked, Parked { woken: 1, notified: false });
        assert_eq!((wakes(&count_a), wakes(&count_b)), (1, 0));
        assert!(matches!(poll_with(&mut ready_a, &waker_a), Poll::Ready(Ok(()))));

        // A fired interest is not reported again, and B is still waiting.
        assert_eq!(reactor.park(Some(Duration::ZERO)).unwrap(), Parked::default());
        assert_eq!((wakes(&count_a), wakes(&count_b)), (1, 0));
        assert!(reactor.has_interests());
        drop(ready_b);
        assert!(!reactor.has_interests());
    });
}

#[test]
fn ready_fds_wake_in_registration_order() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let pipes: Vec<(OwnedFd, OwnedFd)> = (0..3).map(|_| fd::pipe().unwrap()).collect();
        let log = Arc::new(Mutex::new(Vec::new()));
        // Register in an order that is neither fd order nor write order: 2, 0, 1.
        let mut waits: Vec<(Readiness, Waker)> = [(2, "second pipe"), (0, "zeroth"), (1, "first")]
            .into_iter()
            .map(|(i, name)| (reactor.readable(pipes[i].0.as_raw_fd()), named(name, &log)))
            .collect();
        for (ready, waker) in &mut waits {
            assert!(poll_with(ready, waker).is_pending());
        }
        // Write in yet another order: 1, 0, 2.
        for i in [1, 0, 2] {
            write_byte(&pipes[i].1);
        }
        let parked = reactor.park(Some(PATIENCE)).unwrap();
        assert_eq!(parked.woken, 3);
        assert_eq!(*log.lock().unwrap(), ["second pipe", "zeroth", "first"]);
    });
}

/// The table stays in registration order through removals: dropping a middle interest and
/// re-registering a completed one (a new key, so the last place) wake in the order a, c, d, b.
#[test]
fn removals_keep_the_order_and_a_new_registration_goes_last() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let pipes: Vec<(OwnedFd, OwnedFd)> = (0..4).map(|_| fd::pipe().unwrap()).collect();
        let log = Arc::new(Mutex::new(Vec::new()));
        let names = ["a", "b", "c", "d", "gone"];
        let wakers: Vec<Waker> = names.iter().map(|n| named(n, &log)).collect();
        let mut a = reactor.readable(pipes[0].0.as_raw_fd());
        let mut b = reactor.readable(pipes[1].0.as_raw_fd());
        let mut gone = reactor.readable(pipes[2].0.as_raw_fd());
        let mut c = reactor.readable(pipes[2].0.as_raw_fd());
        for (ready, w) in [(&mut a, &wakers[0]), (&mut b, &wakers[1]), (&mut gone, &wakers[4]), (&mut c, &wakers[2])] {
            assert!(poll_with(ready, w).is_pending());
        }
        drop(gone);
        // `b` fires alone and completes; polled again it registers anew, after `d`.
        write_byte(&pipes[1].1);
        assert_eq!(reactor.park(Some(PATIENCE)).unwrap().woken, 1);
        assert!(poll_with(&mut b, &wakers[1]).is_ready());
        let mut d = reactor.readable(pipes[3].0.as_raw_fd());
        assert!(poll_with(&mut d, &wakers[3]).is_pending());
        assert!(poll_with(&mut b, &wakers[1]).is_pending());
        log.lock().unwrap().clear();
        for i in [3, 2, 0] {
            write_byte(&pipes[i].1);
        }
        assert_eq!(reactor.park(Some(PATIENCE)).unwrap().woken, 4);
        assert_eq!(*log.lock().unwrap(), ["a", "c", "d", "b"]);
    });
}

#[test]
fn several_waiters_on_one_fd_all_wake_in_order() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let (rx, tx) = fd::pipe().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (mut first, mut second) = (reactor.readable(rx.as_raw_fd()), reactor.readable(rx.as_raw_fd()));
        let (w1, w2) = (named("first", &log), named("second", &log));
        assert!(poll_with(&mut first, &w1).is_pending());
        assert!(poll_with(&mut second, &w2).is_pending());
        write_byte(&tx);
        assert_eq!(reactor.park(Some(PATIENCE)).unwrap().woken, 2);
        assert_eq!(*log.lock().unwrap(), ["first", "second"]);
        assert!(poll_with(&mut first, &w1).is_ready());
        assert!(poll_with(&mut second, &w2).is_ready());
        assert!(!reactor.has_interests());
    });
}

#[test]
fn repolling_with_a_new_waker_keeps_the_place_and_wakes_only_the_new_waker() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let (rx_a, tx_a) = fd::pipe().unwrap();
        let (rx_b, tx_b) = fd::pipe().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut a = reactor.readable(rx_a.as_raw_fd());
        let mut b = reactor.readable(rx_b.as_raw_fd());
        assert!(poll_with(&mut a, &named("a-old", &log)).is_pending());
        assert!(poll_with(&mut b, &named("b", &log)).is_pending());
        assert!(poll_with(&mut a, &named("a-new", &log)).is_pending());
        write_byte(&tx_b);
        write_byte(&tx_a);
        assert_eq!(reactor.park(Some(PATIENCE)).unwrap().woken, 2);
        assert_eq!(*log.lock().unwrap(), ["a-new", "b"]);
    });
}

#[test]
fn a_completed_readiness_polled_again_registers_anew() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let (rx, tx) = fd::pipe().unwrap();
        let (count, waker) = counting();
        let mut ready = reactor.readable(rx.as_raw_fd());
        assert!(poll_with(&mut ready, &waker).is_pending());
        write_byte(&tx);
        assert_eq!(reactor.park(Some(PATIENCE)).unwrap().woken, 1);
        assert!(poll_with(&mut ready, &waker).is_ready());
        assert!(!reactor.has_interests());
        assert!(poll_with(&mut ready, &waker).is_pending());
        assert!(reactor.has_interests());
        // Level-triggered: the unread byte makes it fire again.
        assert_eq!(reactor.park(Some(PATIENCE)).unwrap().woken, 1);
        assert_eq!(wakes(&count), 2);
    });
}

#[test]
fn writable_fires_for_an_empty_pipe() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let (_rx, tx) = fd::pipe().unwrap();
        let (count, waker) = counting();
        let mut ready = reactor.writable(tx.as_raw_fd());
        assert!(poll_with(&mut ready, &waker).is_pending());
        assert_eq!(reactor.park(Some(Duration::ZERO)).unwrap().woken, 1);
        assert_eq!(wakes(&count), 1);
        assert!(matches!(poll_with(&mut ready, &waker), Poll::Ready(Ok(()))));
    });
}

// ---- parking and timeouts ----------------------------------------------------------------

#[test]
fn park_zero_returns_at_once_with_nothing_woken() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let (rx, _tx) = fd::pipe().unwrap();
        let (count, waker) = counting();

        let started = Instant::now();
        assert_eq!(reactor.park(Some(Duration::ZERO)).unwrap(), Parked::default());
        let mut ready = reactor.readable(rx.as_raw_fd());
        assert!(poll_with(&mut ready, &waker).is_pending());
        assert_eq!(reactor.park(Some(Duration::ZERO)).unwrap(), Parked::default());
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(wakes(&count), 0);
    });
}

#[test]
fn sub_millisecond_timeouts_round_up_never_early() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        for timeout in [Duration::from_nanos(1), Duration::from_micros(300)] {
            let started = Instant::now();
            assert_eq!(reactor.park(Some(timeout)).unwrap(), Parked::default());
            assert!(started.elapsed() >= timeout, "woke before {timeout:?}");
        }
        let started = Instant::now();
        let timeout = Duration::from_micros(1_500);
        assert_eq!(reactor.park(Some(timeout)).unwrap(), Parked::default());
        assert!(started.elapsed() >= timeout);
    });
}

// ---- the notifier ------------------------------------------------------------------------

#[test]
fn notify_from_another_thread_ends_park_none() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let notifier = reactor.notifier();
        let published = Arc::new(AtomicBool::new(false));
        let remote = {
            let published = Arc::clone(&published);
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(20));
                published.store(true, Ordering::Relaxed);
                notifier.notify();
            })
        };
        let parked = reactor.park(None).unwrap();
        assert_eq!(parked, Parked { woken: 0, notified: true });
        // What the notifier did before notify() is visible after park returned.
        assert!(published.load(Ordering::Relaxed));
        remote.join().unwrap();
    });
}

#[test]
fn notifies_are_deduplicated_and_drained_by_one_park() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let notifier = reactor.notifier();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let notifier = notifier.clone();
                thread::spawn(move || {
                    for _ in 0..100 {
                        notifier.notify();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        notifier.notify();
        assert_eq!(reactor.park(None).unwrap(), Parked { woken: 0, notified: true });
        assert_eq!(reactor.park(Some(Duration::ZERO)).unwrap(), Parked::default());
        // And the flag was reset: the next notify wakes the next park.
        notifier.notify();
        assert!(reactor.park(Some(PATIENCE)).unwrap().notified);
    });
}

#[test]
fn a_notifier_outliving_its_reactor_is_harmless() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let notifier = reactor.notifier();
        drop(reactor);
        notifier.notify();
        notifier.notify();
    });
}

#[test]
fn notifier_is_send_sync_clone() {
    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync_clone::<Notifier>();
}

// ---- deregistration, hang-up, bad descriptors --------------------------------------------

#[test]
fn dropping_a_readiness_deregisters_it() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let (rx, tx) = fd::pipe().unwrap();
        let (count, waker) = counting();
        let mut ready = reactor.readable(rx.as_raw_fd());
        assert!(!reactor.has_interests(), "registration happens at the first poll");
        assert!(poll_with(&mut ready, &waker).is_pending());
        assert!(reactor.has_interests());
        drop(ready);
        assert!(!reactor.has_interests());

        write_byte(&tx);
        assert_eq!(reactor.park(Some(Duration::ZERO)).unwrap(), Parked::default());
        assert_eq!(wakes(&count), 0);
        // The reactor dropped its clone of the waker: only `count` and `waker` remain.
        assert_eq!(Arc::strong_count(&count), 2);
    });
}

#[test]
fn hangup_on_a_closed_writer_is_readable_and_read_returns_eof() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let (rx, tx) = fd::pipe().unwrap();
        let (count, waker) = counting();
        let mut ready = reactor.readable(rx.as_raw_fd());
        assert!(poll_with(&mut ready, &waker).is_pending());
        drop(tx);
        assert_eq!(reactor.park(Some(PATIENCE)).unwrap().woken, 1);
        assert_eq!(wakes(&count), 1);
        assert!(matches!(poll_with(&mut ready, &waker), Poll::Ready(Ok(()))));
        drop(ready);

        let rx = AsyncFd::new(rx, &reactor).unwrap();
        let mut buf = [0u8; 16];
        let (read, parks) = block_on(&reactor, rx.read(&mut buf));
        assert_eq!(read.unwrap(), 0);
        assert_eq!(parks, 0);
    });
}

#[test]
fn a_closed_fd_resolves_to_ebadf() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let closed = {
            let (rx, _tx) = fd::pipe().unwrap();
            rx.as_raw_fd()
        };
        // No other fd-opening test runs meanwhile (no_fd_leak), so the number stays free.
        let (_count, waker) = counting();
        let mut ready = reactor.readable(closed);
        assert!(poll_with(&mut ready, &waker).is_pending());
        assert_eq!(reactor.park(Some(Duration::ZERO)).unwrap().woken, 1);
        let Poll::Ready(Err(err)) = poll_with(&mut ready, &waker) else {
            panic!("expected EBADF");
        };
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    });
}

#[test]
fn a_waker_may_reenter_the_reactor_while_it_wakes() {
    thread_local! {
        static SLOT: RefCell<Option<Readiness>> = const { RefCell::new(None) };
    }
    /// When woken (inside `park`), drops the future in `SLOT`, which deregisters it, and
    /// registers a new one in its place through `Reactor::current()`.
    struct Reenter;
    impl Wake for Reenter {
        fn wake(self: Arc<Self>) {
            let old = SLOT.take().expect("a future to drop");
            let fd = old.fd();
            drop(old);
            let reactor = Reactor::current().expect("entered");
            assert!(!reactor.has_interests());
            let mut new = reactor.readable(fd);
            assert!(poll_with(&mut new, Waker::noop()).is_pending());
            SLOT.set(Some(new));
        }
    }
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let _entered = reactor.enter();
        let (rx, tx) = fd::pipe().unwrap();
        let (idle_rx, _idle_tx) = fd::pipe().unwrap();
        let mut idle = reactor.readable(idle_rx.as_raw_fd());
        assert!(poll_with(&mut idle, Waker::noop()).is_pending());
        SLOT.set(Some(idle));
        let mut ready = reactor.readable(rx.as_raw_fd());
        assert!(poll_with(&mut ready, &Waker::from(Arc::new(Reenter))).is_pending());

        write_byte(&tx);
        assert_eq!(reactor.park(Some(PATIENCE)).unwrap().woken, 1);
        assert!(matches!(poll_with(&mut ready, Waker::noop()), Poll::Ready(Ok(()))));
        assert!(reactor.has_interests(), "the future registered inside wake() waits");
        assert_eq!(SLOT.take().map(|r| r.fd()), Some(idle_rx.as_raw_fd()));
        assert!(!reactor.has_interests());
    });
}

// ---- AsyncFd -----------------------------------------------------------------------------

#[test]
fn async_fd_round_trip_through_a_full_pipe() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let (rx, tx) = fd::pipe().unwrap();
        let rx = AsyncFd::new(rx, &reactor).unwrap();
        let tx = AsyncFd::new(tx, &reactor).unwrap();
        // Four times a default pipe buffer: the writer must wait for the reader.
        let sent: Vec<u8> = (0..256 * 1024).map(|i: u32| (i % 251) as u8).collect();

        let writer = async {
            tx.write_all(&sent).await?;
            drop(tx); // end-of-file for the reader
            io::Result::Ok(())
        };
        let reader = async {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match rx.read(&mut buf).await? {
                    0 => return io::Result::Ok(got),
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        };
        let ((wrote, got), parks) = block_on(&reactor, futures::future::join(writer, reader));
        wrote.unwrap();
        assert_eq!(got.unwrap(), sent);
        assert!(parks > 0, "the writer filled the pipe, so the loop parked");
        assert!(!reactor.has_interests());
        assert!(Reactor::current().is_none(), "block_on's enter guard restored None");
    });
}

#[test]
fn async_fd_read_waits_for_a_write_from_another_thread() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let (rx, tx) = fd::pipe().unwrap();
        let rx = AsyncFd::new(rx, &reactor).unwrap();
        let remote = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            File::from(tx).write_all(b"ping").unwrap();
        });
        let mut buf = [0u8; 8];
        let (read, parks) = block_on(&reactor, rx.read(&mut buf));
        assert_eq!(read.unwrap(), 4);
        assert_eq!(&buf[..4], b"ping");
        assert_eq!(parks, 1);
        remote.join().unwrap();
        let fd = rx.into_inner();
        assert!(fd.as_raw_fd() >= 0);
    });
}

#[test]
fn async_fd_write_to_a_closed_reader_is_broken_pipe() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let (rx, tx) = fd::pipe().unwrap();
        drop(rx);
        let tx = AsyncFd::new(tx, &reactor).unwrap();
        let (wrote, _) = block_on(&reactor, tx.write_all(b"lost"));
        assert_eq!(wrote.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    });
}

#[test]
fn set_nonblocking_toggles_only_o_nonblock() {
    no_fd_leak(|| {
        let (rx, _tx) = fd::pipe().unwrap();
        fd::set_nonblocking(&rx, true).unwrap();
        let mut file = File::from(rx);
        let err = io::Read::read(&mut file, &mut [0u8; 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        fd::set_nonblocking(&file, false).unwrap();
        fd::set_nonblocking(&file, false).unwrap();
    });
}

// ---- current / enter ---------------------------------------------------------------------

#[test]
fn enter_nests_and_restores_the_previous_reactor() {
    no_fd_leak(|| {
        assert!(Reactor::current().is_none());
        let (a, b) = (Reactor::new().unwrap(), Reactor::new().unwrap());
        {
            let _outer = a.enter();
            assert!(Reactor::current().unwrap().same_as(&a));
            {
                let _inner = b.enter();
                assert!(Reactor::current().unwrap().same_as(&b));
            }
            assert!(Reactor::current().unwrap().same_as(&a));
        }
        assert!(Reactor::current().is_none());
        // Another thread has its own (empty) current reactor.
        let _entered = a.enter();
        assert!(thread::spawn(|| Reactor::current().is_none()).join().unwrap());
    });
}

// ---- epoll: kept registrations, closed and duplicated descriptors --------------------------

/// Kept registrations (an `AsyncFd`'s) are armed in epoll in one order and become ready in
/// another; the wakers still run in the order their interests were registered.
#[test]
fn kept_registrations_wake_in_registration_order_not_kernel_order() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let (rx_x, tx_x) = fd::pipe().unwrap();
        let (rx_y, tx_y) = fd::pipe().unwrap();
        let (x, y) = (AsyncFd::new(rx_x, &reactor).unwrap(), AsyncFd::new(rx_y, &reactor).unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let (wx, wy) = (named("x", &log), named("y", &log));
        let mut buf = [0u8; 4];
        // First wait: x registers (and is armed) before y.
        assert!(x.poll_read(&mut Context::from_waker(&wx), &mut buf).is_pending());
        assert!(y.poll_read(&mut Context::from_waker(&wy), &mut buf).is_pending());
        write_byte(&tx_x);
        write_byte(&tx_y);
        assert_eq!(reactor.park(Some(PATIENCE)).unwrap().woken, 2);
        assert!(matches!(x.poll_read(&mut Context::from_waker(&wx), &mut buf), Poll::Ready(Ok(1))));
        assert!(matches!(y.poll_read(&mut Context::from_waker(&wy), &mut buf), Poll::Ready(Ok(1))));
        assert_eq!(*log.lock().unwrap(), ["x", "y"]);
        log.lock().unwrap().clear();
        // Second wait: y registers first this time, and x becomes ready first.
        assert!(y.poll_read(&mut Context::from_waker(&wy), &mut buf).is_pending());
        assert!(x.poll_read(&mut Context::from_waker(&wx), &mut buf).is_pending());
        write_byte(&tx_x);
        write_byte(&tx_y);
        assert_eq!(reactor.park(Some(PATIENCE)).unwrap().woken, 2);
        assert_eq!(*log.lock().unwrap(), ["y", "x"]);
    });
}

/// An `AsyncFd` dropped while its number is registered deregisters it before the number
/// closes: the file stays open through a duplicate and becomes readable, and a new pipe that
/// reuses the number is not woken by it.
#[test]
fn a_dropped_async_fd_leaves_no_registration_behind_for_a_duplicate() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let (rx, tx) = fd::pipe().unwrap();
        let _dup = rx.try_clone().unwrap();
        let number = rx.as_raw_fd();
        let rx = AsyncFd::new(rx, &reactor).unwrap();
        let mut buf = [0u8; 4];
        assert!(rx.poll_read(&mut Context::from_waker(Waker::noop()), &mut buf).is_pending());
        assert_eq!(reactor.park(Some(Duration::ZERO)).unwrap().woken, 0); // armed, not ready
        drop(rx);
        write_byte(&tx); // the old file, still open through `_dup`, is readable now
        let (rx2, tx2) = fd::pipe().unwrap();
        assert_eq!(rx2.as_raw_fd(), number, "the lowest free number is reused");
        let (count, waker) = counting();
        let mut ready = reactor.readable(rx2.as_raw_fd());
        assert!(poll_with(&mut ready, &waker).is_pending());
        assert_eq!(reactor.park(Some(Duration::ZERO)).unwrap().woken, 0, "no misfire");
        write_byte(&tx2);
        assert_eq!(reactor.park(Some(PATIENCE)).unwrap().woken, 1);
        assert_eq!(wakes(&count), 1);
    });
}

/// A bare readiness whose number is closed under it (against its contract) while a duplicate
/// keeps the file open can leave the kernel a registration that `EPOLL_CTL_DEL` no longer
/// reaches. It is one-shot: it fires once (for the interest on that number) and then lies
/// disabled, so neither later parks nor a new descriptor on the same number see it again.
#[test]
fn a_closed_duplicated_fd_under_a_bare_readiness_fires_at_most_once() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let (rx, tx) = fd::pipe().unwrap();
        let dup = rx.try_clone().unwrap();
        let number = rx.as_raw_fd();
        let (_count, waker) = counting();
        let mut ready = reactor.readable(number);
        assert!(poll_with(&mut ready, &waker).is_pending());
        assert_eq!(reactor.park(Some(Duration::ZERO)).unwrap().woken, 0); // armed, not ready
        drop(rx); // the contract broken: closed while its readiness lives
        write_byte(&tx);
        assert_eq!(reactor.park(Some(PATIENCE)).unwrap().woken, 1, "the stale registration fires once");
        assert!(matches!(poll_with(&mut ready, &waker), Poll::Ready(Ok(()))));
        drop(ready);
        assert_eq!(reactor.park(Some(Duration::ZERO)).unwrap(), Parked::default());
        let (rx2, tx2) = fd::pipe().unwrap();
        assert_eq!(rx2.as_raw_fd(), number, "the lowest free number is reused");
        let (count, waker) = counting();
        let mut ready = reactor.readable(rx2.as_raw_fd());
        assert!(poll_with(&mut ready, &waker).is_pending());
        write_byte(&tx); // more for the old file: its disabled registration stays quiet
        assert_eq!(reactor.park(Some(Duration::ZERO)).unwrap().woken, 0, "no misfire");
        write_byte(&tx2);
        assert_eq!(reactor.park(Some(PATIENCE)).unwrap().woken, 1);
        assert_eq!(wakes(&count), 1);
        drop(dup);
    });
}

/// A regular file cannot be watched by epoll; like `poll(2)`, the reactor reports it ready at
/// once instead of waiting forever.
#[test]
fn a_regular_file_is_always_ready() {
    no_fd_leak(|| {
        let reactor = Reactor::new().unwrap();
        let file = File::open(std::env::current_exe().unwrap()).unwrap(); // a regular file on disk
        let (count, waker) = counting();
        let mut ready = reactor.readable(file.as_raw_fd());
        assert!(poll_with(&mut ready, &waker).is_pending());
        assert_eq!(reactor.park(Some(PATIENCE)).unwrap().woken, 1);
        assert_eq!(wakes(&count), 1);
        assert!(matches!(poll_with(&mut ready, &waker), Poll::Ready(Ok(()))));
    });
}
