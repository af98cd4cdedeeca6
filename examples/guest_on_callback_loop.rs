//! A guest run carried by a host that knows nothing about `infect`'s executor.
//!
//! The host here is a plain callback loop, the shape of a GUI main loop: a FIFO of boxed
//! closures behind an `Arc<Mutex<..>>` plus a `Condvar` (so any thread can post work and wake
//! it), and a sorted list of timed callbacks. It is *not* built on `async-task` and never polls
//! a future. It carries an `infect` guest run only through the `guest::Hooks` trait, the
//! contract of trio's `start_guest_run`:
//!
//! - `run_sync_soon_threadsafe(tick)`: post `tick.run()` as an ordinary closure;
//! - `wake_at(deadline, tick)`: keep one "guest timer" and run `tick` when it is due;
//! - `done(outcome)`: called exactly once with what `guest::run` would have returned.
//!
//! The guest opens a nursery with a producer and a consumer that sleep and exchange messages
//! over a bounded channel, while a "button click" (a timed callback of the loop, i.e. host-side
//! code) sets a guest `Event` that a third task waits for. The program prints what happened and
//! exits 0 when the outcome is the expected one.
//!
//! Run it with `cargo run --example guest_on_callback_loop`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use infect::guest::{self, Event, GuestConfig, GuestTick, Hooks};
use infect::time::{Clock, Instant, MonotonicClock};

type Job = Box<dyn FnOnce() + Send>;

/// A timed callback of the loop itself (only the loop's own thread adds them).
type Timer = (Instant, Box<dyn FnOnce()>);

/// What other threads (and the hooks) may touch: the posted closures and the guest's timer.
#[derive(Default)]
struct Posted {
    jobs: VecDeque<Job>,
    guest_timer: Option<(Instant, GuestTick)>,
}

#[derive(Default)]
struct Shared {
    posted: Mutex<Posted>,
    wakeup: Condvar,
}

/// The loop: posted closures first, then due timers, else sleep until the next timer or a post.
struct MainLoop {
    shared: Arc<Shared>,
    clock: Rc<MonotonicClock>,
    /// The loop's own timed callbacks, sorted by deadline (stable for equal deadlines).
    timers: RefCell<Vec<Timer>>,
}

impl MainLoop {
    fn new() -> MainLoop {
        MainLoop { shared: Arc::default(), clock: Rc::new(MonotonicClock::new()), timers: RefCell::default() }
    }

    /// Schedules `f` to run `after` from now (like `g_timeout_add` or `QTimer::singleShot`).
    fn call_later(&self, after: Duration, f: impl FnOnce() + 'static) {
        let at = self.clock.now() + after;
        let mut timers = self.timers.borrow_mut();
        let i = timers.partition_point(|(t, _)| *t <= at);
        timers.insert(i, (at, Box::new(f)));
    }

    /// Runs until `stop()` says so.
    fn run(&self, stop: impl Fn() -> bool) {
        while !stop() {
            let mut posted = self.shared.posted.lock().unwrap();
            if let Some(job) = posted.jobs.pop_front() {
                drop(posted);
                job();
                continue;
            }
            let now = self.clock.now();
            if posted.guest_timer.as_ref().is_some_and(|(t, _)| *t <= now) {
                let (_, tick) = posted.guest_timer.take().unwrap();
                drop(posted);
                tick.run();
                continue;
            }
            let first = self.timers.borrow().first().map(|(t, _)| *t);
            if first.is_some_and(|t| t <= now) {
                drop(posted);
                let (_, f) = self.timers.borrow_mut().remove(0);
                f();
                continue;
            }
            let next = [first, posted.guest_timer.as_ref().map(|(t, _)| *t)].into_iter().flatten().min();
            match next {
                Some(t) => {
                    let _ = self.shared.wakeup.wait_timeout(posted, t - now).unwrap();
                }
                None => drop(self.shared.wakeup.wait(posted).unwrap()),
            }
        }
    }
}

/// The hooks: they only post; the loop runs the tick later, on its own thread.
struct LoopHooks(Arc<Shared>);

impl Hooks for LoopHooks {
    fn run_sync_soon_threadsafe(&self, tick: GuestTick) {
        self.0.posted.lock().unwrap().jobs.push_back(Box::new(move || tick.run()));
        self.0.wakeup.notify_one();
    }

    fn wake_at(&self, deadline: Instant, tick: GuestTick) {
        self.0.posted.lock().unwrap().guest_timer = (deadline != Instant::NEVER).then_some((deadline, tick));
        self.0.wakeup.notify_one();
    }
}

fn ms(t: Instant) -> u64 {
    t.as_nanos() / 1_000_000
}

fn main() {
    let main_loop = MainLoop::new();
    let clicked = Event::new();

    // The guest program: three tasks in a nursery.
    let c = clicked.clone();
    let guest_main = async move {
        let (tx, mut rx) = guest::channel::<String>(1);
        guest::open_nursery(async |n| {
            n.start_soon(async move {
                for i in 1..=3 {
                    guest::sleep(Duration::from_millis(20)).await?;
                    let msg = format!("tick {i}");
                    println!("[{:>3} ms] guest producer: sending {msg:?}", ms(guest::current_time()));
                    tx.send(msg).await?;
                }
                println!("[{:>3} ms] guest producer: done, closing the channel", ms(guest::current_time()));
                Ok(())
            })?;
            n.start_soon(async move {
                c.wait().await?;
                println!("[{:>3} ms] guest watcher: saw the button click", ms(guest::current_time()));
                Ok(())
            })?;
            let mut got = Vec::new();
            while let Some(msg) = rx.try_next().await? {
                println!("[{:>3} ms] guest consumer: got {msg:?}", ms(guest::current_time()));
                got.push(msg);
            }
            Ok(got)
        })
        .await
        // `None` only if the nursery itself were cancelled, which this program never does.
        .map(Option::unwrap_or_default)
    };

    // Host-side code: a "button click" 30 ms in sets the guest's event.
    let clock = main_loop.clock.clone();
    main_loop.call_later(Duration::from_millis(30), move || {
        println!("[{:>3} ms] main loop: button clicked, setting the guest event", ms(clock.now()));
        clicked.set();
    });

    let outcome: Rc<RefCell<Option<infect::Result<Vec<String>>>>> = Rc::default();
    let out = outcome.clone();
    let config = GuestConfig::new(main_loop.clock.clone());
    let hooks = LoopHooks(main_loop.shared.clone());
    let run = guest::start_guest_run_with(config, guest_main, hooks, move |r| *out.borrow_mut() = Some(r))
        .expect("starting the guest run");
    main_loop.run(|| outcome.borrow().is_some());
    assert!(run.is_finished());
    drop(run);

    let outcome = outcome.borrow_mut().take().expect("done was called");
    println!("[{:>3} ms] guest run done: {outcome:?}", ms(main_loop.clock.now()));
    let expected: Vec<String> = (1..=3).map(|i| format!("tick {i}")).collect();
    if outcome != Ok(expected) {
        eprintln!("unexpected outcome");
        std::process::exit(1);
    }
}
