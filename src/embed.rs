//! Our host carrying a guest: the only module that knows both [`host`](crate::host) and
//! [`guest`](crate::guest).
//!
//! The host knows no guest and the guest knows no host; this module is the glue, built only on
//! what each offers any partner:
//! - **Our host's [`Hooks`].** A guest tick scheduled from any thread becomes a wake the host
//!   runs on its thread at its next turn (the tick carried as a waker: no allocation); the
//!   guest's `wake_at` becomes the host's alarm, a later request replacing the earlier one and
//!   [`Instant::NEVER`] clearing it. The callback loop of `examples/guest_on_callback_loop.rs`
//!   shows that a host needs nothing more.
//! - **[`Host::run_guest`].** Starts a guest on the host's clock (its trace, and a seed drawn from
//!   the host's seeded policy) and runs the host loop until the guest's `done` was called. A
//!   panic that unwinds out of a guest tick abandons the run on the way out, so a caller that
//!   catches it finds the host free for another guest.
//! - **One guest per host.** A host carries at most one unfinished guest run; starting another
//!   returns [`Error::GuestAlreadyRunning`] and never calls its `done`. The run is a part the host
//!   carries: while it is unfinished [`Host::run`] goes on, and dropping the host abandons it
//!   first (every guest task is dropped, `done` gets [`Error::GuestRunAbandoned`]) and only then
//!   drops the host's tasks, since guest tasks may hold links to them.
//! - **The carrier.** The run keeps a typed handle to its host, which `to_host` reads to find the
//!   host it spawns on ([`carrier_host`]); a guest with no such handle (standalone, or riding
//!   another host through its own hooks) is not infected.

use alloc::rc::{Rc, Weak};
use core::cell::RefCell;
use core::future::Future;

use crate::guest::{GuestConfig, GuestRun, GuestTick, Hooks};
use crate::host::{Alarm, Carried, Host, HostRef, Remote};
use crate::time::Instant;
use crate::{Error, Result};

/// The guest run a host carries, if any (the one-guest-per-host rule), and the host alarm its
/// `wake_at` uses (one per host, reused by each run).
struct Embedded {
    run: RefCell<Option<GuestRun>>,
    alarm: Alarm,
}

impl Embedded {
    /// Drops the run (abandoning it if unfinished) outside the borrow, and clears its alarm.
    fn release(&self) {
        let run = self.run.borrow_mut().take();
        self.alarm.clear();
        drop(run);
    }
}

impl Carried for Embedded {
    fn busy(&self) -> bool {
        self.run.borrow().as_ref().is_some_and(|g| !g.is_finished())
    }

    fn shutdown(&self) {
        self.release();
    }
}

/// Our host's [`Hooks`]: ticks as wakes from any thread, `wake_at` as the host's alarm.
struct HostHooks {
    remote: Remote,
    alarm: Alarm,
}

impl Hooks for HostHooks {
    fn run_sync_soon_threadsafe(&self, tick: GuestTick) {
        self.remote.wake_soon(tick.into_waker());
    }

    fn wake_at(&self, deadline: Instant, tick: GuestTick) {
        if deadline == Instant::NEVER {
            self.alarm.clear();
        } else {
            self.alarm.set(deadline, tick.into_waker());
        }
    }
}

/// The typed handle a guest run riding our host keeps to it (see the module docs).
struct Carrier {
    host: HostRef,
}

/// The host that carries the calling guest task's run, if that host's loop is the one running
/// on this thread; [`Error::NotInfected`] otherwise (outside a guest task, a guest that rides no
/// host of ours, or code that runs inside another host's loop nested in a guest task).
pub(crate) fn carrier_host() -> Result<HostRef> {
    let carrier = crate::guest::current_carrier().ok_or(Error::NotInfected)?;
    let carrier = carrier.downcast::<Carrier>().map_err(|_| Error::NotInfected)?;
    if carrier.host.is_running_here() { Ok(carrier.host.clone()) } else { Err(Error::NotInfected) }
}

/// Abandons the host's guest run when dropped (with the host current, as a host's own drop
/// does); [`Host::run_guest`] forgets it on a normal exit, so it only acts while a panic unwinds.
struct AbandonOnUnwind<'a> {
    host: &'a Host,
    embedded: &'a Embedded,
}

impl Drop for AbandonOnUnwind<'_> {
    fn drop(&mut self) {
        let _cx = self.host.enter();
        self.embedded.release();
    }
}

impl Host {
    /// The host's guest slot, attached on first use.
    fn embedded(&self) -> Rc<Embedded> {
        if let Some(e) = self.attached::<Embedded>() {
            return e;
        }
        let e = Rc::new(Embedded { run: RefCell::new(None), alarm: self.alarm() });
        self.attach(e.clone());
        e
    }

    /// Starts a guest run riding this host (trio's `start_guest_run` on asyncio): the guest's
    /// ticks run as host jobs, its deadlines as the host's alarm, and `to_host` calls inside it
    /// link host tasks of this host. `done` gets the guest's outcome exactly once; if the host
    /// is dropped first it gets [`Error::GuestRunAbandoned`]. One guest per host:
    /// [`Error::GuestAlreadyRunning`] (and `done` is never called) while another is unfinished.
    pub(crate) fn start_guest<T: 'static>(
        &self,
        main: impl Future<Output = Result<T>> + 'static,
        done: impl FnOnce(Result<T>) + 'static,
    ) -> Result<()> {
        let embedded = self.embedded();
        if embedded.busy() {
            return Err(Error::GuestAlreadyRunning);
        }
        // A run abandoned by a panic may have left its last request behind.
        embedded.alarm.clear();
        let mut config = GuestConfig::new(self.clock());
        if let Some(t) = self.trace() {
            config = config.trace(t);
        }
        if let Some(seed) = self.next_seed() {
            config = config.seed(seed);
        }
        let hooks = HostHooks { remote: self.remote_handle(), alarm: embedded.alarm.clone() };
        // Weak: the run (held by the slot) holds this callback until it is called.
        let slot: Weak<Embedded> = Rc::downgrade(&embedded);
        let run = crate::guest::start_guest_run_with(config, main, hooks, move |r| {
            // Finished: the host no longer carries it (its `Local` lives on until this tick ends).
            if let Some(e) = slot.upgrade() {
                let run = e.run.borrow_mut().take();
                drop(run);
            }
            done(r);
        })?;
        run.set_carrier(Rc::new(Carrier { host: self.handle() }));
        *embedded.run.borrow_mut() = Some(run);
        Ok(())
    }

    /// Whether a guest run is riding this host and has not finished.
    ///
    /// ```
    /// use infect::host::Host;
    /// let host = Host::new()?;
    /// assert!(!host.guest_running());
    /// assert_eq!(host.run_guest(async { Ok(1) })?, 1);
    /// assert!(!host.guest_running());
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn guest_running(&self) -> bool {
        self.attached::<Embedded>().is_some_and(|e| e.busy())
    }

    /// Runs a guest to completion on this host and returns its outcome: the host loop runs
    /// (host tasks, timers and fds included) until the guest's main task has finished. The guest
    /// reads the host's clock, records into its trace, and draws its seed from the host's seed.
    /// Inside it, `to_host` links host tasks of this host. This is the one-process form of
    /// tractor's infected asyncio: use it when structured-concurrency code must drive host-side
    /// code; for a guest alone use [`guest::run`](crate::guest::run), for host tasks alone
    /// [`block_on`](Host::block_on).
    ///
    /// What a user can rely on:
    /// - **One loop, one thread.** A guest tick is one host job: it runs in the host's FIFO
    ///   among host tasks and callbacks, polls one batch of woken guest tasks, and returns to
    ///   the host. A guest task woken by a host task (a guest [`Event`](crate::guest::Event)
    ///   set, a value sent) runs at the guest's next tick; the guest's next deadline is a
    ///   deadline of the host, so a virtual clock jumps only when both loops are blocked.
    /// - **One guest per host.** Called while another guest rides this host (from inside that
    ///   guest, say), it returns [`Error::GuestAlreadyRunning`] without running `main`. Once a
    ///   run has finished, the host takes another.
    /// - **`to_host` finds this host only.** Inside the guest, [`to_host`](crate::to_host)
    ///   spawns on the host that carries it; a guest that rides no host of ours (standalone
    ///   [`guest::run`](crate::guest::run), or another loop's hooks) gets
    ///   [`Error::NotInfected`].
    /// - **Nothing is left behind.** When it returns, every guest task has ended (nurseries
    ///   guarantee it) and the guest's alarm is cleared; host tasks the guest spawned without
    ///   linking (detached) stay on the host. A panic that unwinds out of a guest task abandons
    ///   the run on its way out (every guest task is dropped), so a caller that catches the
    ///   panic finds the host free for another guest. Dropping the host drops what it carries
    ///   (a guest run) before its tasks, because guest tasks may hold links to them.
    ///
    /// ```
    /// use infect::{guest, host::Host, time::VirtualClock, to_host};
    /// use std::{rc::Rc, time::Duration};
    /// let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
    /// let out = host.run_guest(async {
    ///     guest::sleep(Duration::from_secs(5)).await?;
    ///     to_host::run_task(async { Ok(40 + 2) }).await
    /// })?;
    /// assert_eq!(out, 42);
    /// assert_eq!(host.now().as_nanos(), 5_000_000_000);
    ///
    /// // One guest per host: a second one, started from inside the first, is refused.
    /// let h = Rc::new(host);
    /// let inner = h.clone();
    /// let refused = h.run_guest(async move { Ok(inner.run_guest(async { Ok(()) })) })?;
    /// assert!(matches!(refused, Err(infect::Error::GuestAlreadyRunning)));
    /// assert_eq!(h.run_guest(async { Ok("the host is free again") })?, "the host is free again");
    ///
    /// // `to_host` needs a carrying host: a standalone guest is not infected.
    /// let r = guest::run(async { to_host::run_task(async { Ok(1) }).await });
    /// assert!(matches!(r, Err(infect::Error::NotInfected)));
    /// # Ok::<(), infect::Error>(())
    /// ```
    pub fn run_guest<T: 'static>(&self, main: impl Future<Output = Result<T>> + 'static) -> Result<T> {
        let out: Rc<RefCell<Option<Result<T>>>> = Rc::new(RefCell::new(None));
        let o = out.clone();
        self.start_guest(main, move |r| *o.borrow_mut() = Some(r))?;
        let embedded = self.embedded();
        // A panic that unwinds out of a guest tick leaves that run half-polled: abandon it on the
        // way out, so a caller that catches the panic finds the host free for another guest.
        let abandon = AbandonOnUnwind { host: self, embedded: &embedded };
        self.run_until(|| out.borrow().is_some());
        core::mem::forget(abandon);
        let r = out.borrow_mut().take();
        r.unwrap_or(Err(Error::GuestRunAbandoned))
    }
}

#[cfg(test)]
mod tests {
    //! The embedding on a virtual clock: `done` exactly once, the one-guest rule, the drop order.
    use alloc::rc::Rc;
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::cell::RefCell;
    use core::time::Duration;

    use crate::host::{self, Host};
    use crate::time::{Instant, VirtualClock};
    use crate::{Error, Result, guest};

    fn vhost() -> Host {
        Host::builder().clock(Rc::new(VirtualClock::new())).build().unwrap()
    }

    fn at(secs: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(secs)
    }

    type Log = Rc<RefCell<Vec<String>>>;

    /// Pushes `name` to the log when dropped.
    struct Noisy(&'static str, Log);

    impl Drop for Noisy {
        fn drop(&mut self) {
            self.1.borrow_mut().push(String::from(self.0));
        }
    }

    /// `done` is called once, by the host loop (not at start), at the guest's virtual instant;
    /// neither a second `run` nor the host's drop calls it again.
    #[test]
    fn done_is_called_exactly_once_at_the_guests_instant() {
        let host = vhost();
        let done: Rc<RefCell<Vec<Result<Instant>>>> = Rc::default();
        let d = done.clone();
        host.start_guest(
            async {
                guest::sleep(Duration::from_secs(3)).await?;
                Ok(guest::current_time())
            },
            move |r| d.borrow_mut().push(r),
        )
        .unwrap();
        assert!(host.guest_running());
        assert!(done.borrow().is_empty());
        host.run();
        assert_eq!(*done.borrow(), [Ok(at(3))]);
        assert!(!host.guest_running());
        assert_eq!(host.now(), at(3));
        host.run();
        drop(host);
        assert_eq!(done.borrow().len(), 1);
    }

    /// While one guest rides the host a second is refused at setup (its `done` never runs);
    /// once the first finished, a new one may start.
    #[test]
    fn one_guest_per_host() {
        let host = vhost();
        let first: Rc<RefCell<Vec<Result<u8>>>> = Rc::default();
        let f = first.clone();
        host.start_guest(
            async {
                guest::sleep(Duration::from_secs(1)).await?;
                Ok(1)
            },
            move |r| f.borrow_mut().push(r),
        )
        .unwrap();
        let second = Rc::new(RefCell::new(0));
        let s = second.clone();
        let r = host.start_guest(async { Ok(2) }, move |_: Result<u8>| *s.borrow_mut() += 1);
        assert_eq!(r, Err(Error::GuestAlreadyRunning));
        assert_eq!(host.run_guest(async { Ok(3) }), Err(Error::GuestAlreadyRunning));
        host.run();
        assert_eq!(*first.borrow(), [Ok(1)]);
        assert_eq!(*second.borrow(), 0);
        assert_eq!(host.run_guest(async { Ok(3) }), Ok(3));
    }

    /// Dropping the host with a guest blocked abandons the guest first (its tasks dropped in
    /// spawn order, then `done(Err(GuestRunAbandoned))`), and only then drops the host's own
    /// tasks: a guest task's link sees its host task still there.
    #[test]
    fn dropping_the_host_runs_the_guests_drop_order_first() {
        let host = vhost();
        let log: Log = Rc::default();
        let (l1, l2, l3, l4) = (log.clone(), log.clone(), log.clone(), log.clone());
        let h = host.spawn(async move {
            let _n = Noisy("host task", l1);
            core::future::pending::<()>().await
        });
        h.detach();
        host.start_guest(
            async move {
                let _n = Noisy("guest main", l2);
                guest::open_nursery(async |n| {
                    n.start_soon(async move {
                        let _n = Noisy("guest child", l3);
                        guest::sleep_forever().await
                    })?;
                    guest::sleep_forever().await
                })
                .await
            },
            move |r: Result<Option<()>>| l4.borrow_mut().push(alloc::format!("done {r:?}")),
        )
        .unwrap();
        host.run_until_stalled();
        assert!(host.guest_running());
        assert!(log.borrow().is_empty());
        drop(host);
        let want = ["guest main", "guest child", "done Err(GuestRunAbandoned)", "host task"];
        assert_eq!(*log.borrow(), want);
    }

    /// The guest's deadline is the host's alarm: a virtual clock jumps to it when everything is
    /// blocked, interleaved with host timers at their exact instants; a guest that finished
    /// leaves no alarm behind (the host's next deadline is its own timer's).
    #[test]
    fn guest_deadlines_ride_the_hosts_alarm() {
        let host = vhost();
        let log: Log = Rc::default();
        let l = log.clone();
        host.call_later(Duration::from_secs(2), move || l.borrow_mut().push(String::from("host 2s")));
        let l = log.clone();
        let late = host.call_later(Duration::from_secs(9), || {});
        let clock = host.clock();
        let r = host.run_guest(async move {
            guest::sleep(Duration::from_secs(1)).await?;
            l.borrow_mut().push(alloc::format!("guest {:?}", guest::current_time()));
            let t = to_host_sleep(clock, Duration::from_secs(2)).await?;
            l.borrow_mut().push(alloc::format!("host sleep ended {t:?}"));
            guest::sleep(Duration::from_secs(1)).await?;
            Ok(guest::current_time())
        });
        assert_eq!(r, Ok(at(4)));
        let want = ["guest Instant(1000000000)", "host 2s", "host sleep ended Instant(3000000000)"];
        assert_eq!(*log.borrow(), want);
        assert_eq!(host.next_deadline(), Some(at(9)));
        assert!(host.cancel_call(late));
        assert_eq!(host.next_deadline(), None);
    }

    /// A guest whose tick panicked is abandoned on the way out of `run_guest`, and leaves no
    /// deadline behind: the virtual clock does not jump to its sleeper's 100 s, and the next guest
    /// runs on the same host from the instant of the panic.
    #[test]
    fn a_panicked_guest_leaves_no_alarm_behind() {
        let host = vhost();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            host.run_guest(async {
                guest::open_nursery(async |n| {
                    n.start_soon(async { guest::sleep(Duration::from_secs(100)).await })?;
                    guest::sleep(Duration::from_secs(1)).await?;
                    // A tick ends here, reporting the sleeper's deadline to the host's alarm.
                    guest::checkpoint().await?;
                    if guest::current_time() == at(1) {
                        panic!("the guest panics at 1 s");
                    }
                    Ok(())
                })
                .await
            })
        }));
        assert!(caught.is_err());
        assert!(!host.guest_running());
        assert_eq!(host.next_deadline(), None);
        let r = host.run_guest(async {
            guest::sleep(Duration::from_secs(2)).await?;
            Ok(guest::current_time())
        });
        assert_eq!(r, Ok(at(3)));
    }

    /// `to_host` links through the carrier to the host that carries the guest, and only while
    /// that host's loop is the one running: inside another host's loop nested in a guest task it
    /// is `NotInfected`, as for a guest that rides no host of ours.
    #[test]
    fn to_host_finds_only_the_host_that_carries_the_guest() {
        let host = vhost();
        let r = host.run_guest(async {
            let other = vhost();
            let nested = other.block_on(crate::to_host::run_task(async { Ok(1) }));
            let ours = crate::to_host::run_task(async { Ok(2) }).await;
            Ok((nested, ours))
        });
        assert_eq!(r, Ok((Err(Error::NotInfected), Ok(2))));
        let standalone = guest::run_with(guest::GuestConfig::new(Rc::new(VirtualClock::new())), async {
            crate::to_host::run_task(async { Ok(3) }).await
        });
        assert_eq!(standalone, Err(Error::NotInfected));
    }

    /// A host sleep run from the guest through `to_host`: the host's clock reading at its end.
    async fn to_host_sleep(clock: Rc<dyn crate::time::Clock>, d: Duration) -> Result<Instant> {
        crate::to_host::run_task(async move {
            host::sleep(d).await?;
            Ok(clock.now())
        })
        .await
    }
}
