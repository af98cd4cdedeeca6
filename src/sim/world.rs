//! The simulated world: every actor of a tree on this thread, each with its own kernel state
//! (a guest run, and a host under it if infected), one virtual clock, one seeded scheduler.
//!
//! One step of the world, in order:
//! 1. Due world timers fire (delayed writes, the ends of stalls); due guest deadlines become
//!    ticks.
//! 2. The actors that can run are listed in id order: a guest with a queued tick, an infected
//!    host with a queued job or a due timer, a booting child whose pipe has bytes. A stalled
//!    actor is not listed.
//! 3. If none can run, the clock jumps to the earliest deadline (autojump); with none, the
//!    world has stalled ([`Error::SimulationStalled`]).
//! 4. The faults of a step are drawn (kill, interrupt, stall), then one listed actor is drawn
//!    and stepped with its actor context swapped in: one guest tick, or one pass of its host.
//! 5. Actors that exited during the step (their run finished, they exited at once, or they
//!    were killed) are retired: their run is dropped in their own context, their children see
//!    their parent die (`SIGTERM`, the death signal the real spawn arms), their parent's
//!    supervisor is woken.
//!
//! Every draw comes from the world's one generator in this order, so a seed names one course
//! of the world; the trace hash covers each step (time, actor) and every byte written.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::panic::{AssertUnwindSafe, Location};
use std::pin::pin;
use std::process::ExitStatus;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;
use std::time::Duration;

use crate::actor::Endpoints;
use crate::actor::for_sim::{
    ActorContext, ActorInner, FrameReader, Incoming, Interrupts, Peer, SignalQueue, Signals, Simulated, Spawned,
    Transport, World, child_actor, mem_pipe, root_body, serve_parent, simulated, spawn_spec, swap_context,
};
use crate::guest::{GuestConfig, GuestRun, GuestTick, Hooks};
use crate::host::Host;
use crate::sync::Waiters;
use crate::time::{Clock, Instant, VirtualClock};
use crate::trace::Policy;
use crate::wire::{Aid, DEFAULT_MAX_FRAME, PROTOCOL_MISMATCH_EXIT, PROTOCOL_VERSION};
use crate::{Error, Result};

use super::faults::{Faults, FaultyEnd};

/// The ticks a guest run asked for (its hooks write here, from any thread).
#[derive(Default)]
struct Queue {
    soon: VecDeque<GuestTick>,
    at: Option<(Instant, GuestTick)>,
    /// A wake came from another thread: the name of that thread.
    foreign: Option<String>,
    /// The actor is gone: ticks asked for now (by a waker that outlived its run) are dropped,
    /// not kept (a tick holds its run, whose hooks hold this queue).
    closed: bool,
}

struct SimHooks {
    queue: Arc<Mutex<Queue>>,
    owner: ThreadId,
}

impl SimHooks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Hooks for SimHooks {
    fn run_sync_soon_threadsafe(&self, tick: GuestTick) {
        let mut q = self.lock();
        if std::thread::current().id() != self.owner && q.foreign.is_none() {
            q.foreign = Some(std::thread::current().name().unwrap_or("unnamed").to_owned());
        }
        if !q.closed {
            q.soon.push_back(tick);
        }
    }

    fn run_sync_soon_not_threadsafe(&self, tick: GuestTick) {
        let mut q = self.lock();
        if !q.closed {
            q.soon.push_back(tick);
        }
    }

    fn wake_at(&self, deadline: Instant, tick: GuestTick) {
        let mut q = self.lock();
        if !q.closed {
            q.at = (deadline != Instant::NEVER).then_some((deadline, tick));
        }
    }
}

/// Set when a booting child's pipe may have its `SpawnSpec`.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

enum State {
    /// Spawned, waiting for its `SpawnSpec` (a process blocked in its first read).
    Booting { end: Box<dyn Transport>, reader: FrameReader },
    /// Serving (or, the root, running) on a guest run of its own (held: dropping it abandons
    /// the run).
    Plain(#[allow(dead_code)] GuestRun),
    /// Infected: a host carrying its guest run.
    Infected(Host),
    /// Exited and retired.
    Gone,
}

/// One actor of the world (a process, simulated).
pub(crate) struct Slot {
    id: usize,
    name: String,
    pid: u32,
    parent: Option<usize>,
    state: RefCell<State>,
    queue: Arc<Mutex<Queue>>,
    boot: Arc<Flag>,
    cx: RefCell<ActorContext>,
    signals: Rc<SignalQueue>,
    exit_waiters: Waiters,
    status: Cell<Option<ExitStatus>>,
    /// Its run finished (or it exited at once) with this status; retired after the step.
    finished: Cell<Option<ExitStatus>>,
    /// `SIGKILL` was sent: killed after the step.
    kill_pending: Cell<bool>,
    /// Being retired: a `Proc` of a child dropped now is its parent dying, not a last resort.
    dying: Cell<bool>,
    stalled_until: Cell<Instant>,
}

impl Slot {
    fn live(&self) -> bool {
        self.status.get().is_none()
    }
}

/// The world's state, shared by its actors (through [`ActorWorld`]) and its pipe ends.
pub(crate) struct WorldState {
    seed: u64,
    rng: Policy,
    clock: Rc<VirtualClock>,
    faults: Faults,
    endpoints: Endpoints,
    actors: RefCell<Vec<Rc<Slot>>>,
    events: RefCell<Vec<String>>,
    hash: Cell<u64>,
    timers: RefCell<Vec<(Instant, u64, Waker)>>,
    timer_seq: Cell<u64>,
    buggify: RefCell<Vec<(&'static Location<'static>, bool)>>,
    owner: ThreadId,
    steps: Cell<u64>,
    /// Every step is an event of the trace too ([`Sim::trace_steps`](super::Sim::trace_steps)).
    steps_traced: bool,
    self_ref: Weak<WorldState>,
}

const FNV: u64 = 0x0100_0000_01b3;

impl WorldState {
    pub(crate) fn new(seed: u64, faults: Faults, endpoints: Endpoints, steps_traced: bool) -> Rc<WorldState> {
        Rc::new_cyclic(|me| WorldState {
            seed,
            rng: Policy::seeded(seed ^ 0x9e37_79b9_7f4a_7c15),
            clock: Rc::new(VirtualClock::without_autojump()),
            faults,
            endpoints,
            actors: RefCell::new(Vec::new()),
            events: RefCell::new(Vec::new()),
            hash: Cell::new(0xcbf2_9ce4_8422_2325),
            timers: RefCell::new(Vec::new()),
            timer_seq: Cell::new(0),
            buggify: RefCell::new(Vec::new()),
            owner: std::thread::current().id(),
            steps: Cell::new(0),
            steps_traced,
            self_ref: me.clone(),
        })
    }

    // ------------------------------------------------------------------ draws, trace, time

    /// The next draw of the world's generator (the kernel's seeded policy's splitmix64).
    pub(crate) fn next_u64(&self) -> u64 {
        self.rng.next_u64()
    }

    /// A draw in `0..n` (`n > 0`).
    pub(crate) fn below(&self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A draw that holds with probability `p` (no draw at all when `p` is 0, so that enabling
    /// one fault does not change the course of a run without it more than it must).
    pub(crate) fn roll(&self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64 / ((1u64 << 53) as f64)) < p
    }

    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    pub(crate) fn now(&self) -> Instant {
        self.clock.now()
    }

    fn mix(&self, v: u64) {
        self.hash.set((self.hash.get() ^ v).wrapping_mul(FNV));
    }

    pub(crate) fn hash_bytes(&self, bytes: &[u8]) {
        for &b in bytes {
            self.mix(u64::from(b));
        }
    }

    /// Records an event of the world's trace (time-stamped).
    pub(crate) fn event(&self, what: String) {
        let line = format!("{:>12} {what}", self.now().as_nanos());
        self.hash_bytes(line.as_bytes());
        crate::log::debug!("sim.event", line = line.as_str());
        self.events.borrow_mut().push(line);
    }

    /// Wakes `w` once the clock reaches `t`.
    pub(crate) fn wake_at(&self, t: Instant, w: Waker) {
        let seq = self.timer_seq.get();
        self.timer_seq.set(seq + 1);
        let mut timers = self.timers.borrow_mut();
        let at = timers.partition_point(|(u, s, _)| (*u, *s) <= (t, seq));
        timers.insert(at, (t, seq, w));
    }

    fn fire_timers(&self) {
        let now = self.now();
        loop {
            let w = {
                let mut timers = self.timers.borrow_mut();
                match timers.first() {
                    Some((t, _, _)) if *t <= now => timers.remove(0).2,
                    _ => break,
                }
            };
            w.wake();
        }
    }

    /// `buggify!` at `site`: activated (or not) once per run, then firing with probability ¼.
    pub(crate) fn buggify(&self, site: &'static Location<'static>) -> bool {
        let known = self.buggify.borrow().iter().find(|(l, _)| *l == site).map(|(_, on)| *on);
        let on = match known {
            Some(on) => on,
            None => {
                let on = self.roll(0.25);
                self.buggify.borrow_mut().push((site, on));
                if on {
                    self.event(format!("buggify: {}:{} active", site.file(), site.line()));
                }
                on
            }
        };
        on && self.roll(0.25)
    }

    fn slot(&self, id: usize) -> Rc<Slot> {
        self.actors.borrow()[id].clone()
    }

    // ------------------------------------------------------------------ actors

    fn new_slot(&self, name: &str, parent: Option<usize>, state: State) -> Rc<Slot> {
        let mut actors = self.actors.borrow_mut();
        let id = actors.len();
        let slot = Rc::new(Slot {
            id,
            name: name.to_owned(),
            pid: 1000 + id as u32,
            parent,
            state: RefCell::new(state),
            queue: Arc::default(),
            boot: Arc::default(),
            cx: RefCell::new(ActorContext::default()),
            signals: Rc::default(),
            exit_waiters: Waiters::default(),
            status: Cell::new(None),
            finished: Cell::new(None),
            kill_pending: Cell::new(false),
            dying: Cell::new(false),
            stalled_until: Cell::new(Instant::ZERO),
        });
        actors.push(slot.clone());
        slot
    }

    fn aid(&self, slot: &Slot) -> Aid {
        Aid { name: slot.name.clone(), uuid: format!("sim{:x}-{}", self.seed, slot.id), pid: slot.pid }
    }

    fn guest_config(&self, slot: &Slot) -> GuestConfig {
        GuestConfig::new(self.clock.clone()).seed(self.seed.wrapping_add(slot.id as u64))
    }

    fn hooks(&self, slot: &Slot) -> SimHooks {
        SimHooks { queue: slot.queue.clone(), owner: self.owner }
    }

    /// Starts the root actor: `root` under the interrupt rule, as `actor::run_with` does.
    pub(crate) fn start_root<T: 'static>(
        &self,
        name: &str,
        infected: bool,
        debug_mode: bool,
        root: impl Future<Output = Result<T>> + 'static,
        out: Rc<RefCell<Option<Result<T>>>>,
    ) -> Result<()> {
        let slot = self.new_slot(name, None, State::Gone);
        let world: Rc<dyn World> = Rc::new(ActorWorld { world: self.self_ref.clone(), me: slot.id });
        let actor =
            ActorInner::unshared(self.aid(&slot), infected, None, Vec::new(), self.endpoints.clone()).in_world(world);
        actor.set_debug_mode(debug_mode);
        let ints = Rc::new(Interrupts::default());
        {
            let mut cx = slot.cx.borrow_mut();
            cx.actor = Some(actor);
            cx.interrupts = Some(ints.clone());
        }
        let body = root_body(Signals::Queue(slot.signals.clone()), root, ints);
        let s = Rc::downgrade(&slot);
        let done = move |r: Result<T>| {
            if let Some(s) = s.upgrade() {
                s.finished.set(Some(ExitStatus::from_raw(if r.is_ok() { 0 } else { 1 << 8 })));
            }
            *out.borrow_mut() = Some(r);
        };
        self.event(format!("start root '{name}'{}", if infected { " (infected)" } else { "" }));
        let state = self.start_run(&slot, infected, body, done)?;
        *slot.state.borrow_mut() = state;
        Ok(())
    }

    /// Starts `main` as `slot`'s run (on a host of its own if `infected`), in its context.
    fn start_run<T: 'static>(
        &self,
        slot: &Rc<Slot>,
        infected: bool,
        main: impl Future<Output = Result<T>> + 'static,
        done: impl FnOnce(Result<T>) + 'static,
    ) -> Result<State> {
        let _cx = Entered::new(slot);
        if infected {
            let host =
                Host::builder().clock(self.clock.clone()).seed(self.seed.wrapping_add(slot.id as u64)).build()?;
            host.start_guest(main, done)?;
            Ok(State::Infected(host))
        } else {
            let run = crate::guest::start_guest_run_with(self.guest_config(slot), main, self.hooks(slot), done)?;
            Ok(State::Plain(run))
        }
    }

    /// A child of `parent` called `name`: booting on the far end of a new connection.
    fn spawn(&self, parent: usize, name: &str) -> Result<Spawned> {
        let (near, far) = mem_pipe();
        let pname = self.slot(parent).name.clone();
        let down: Rc<str> = format!("{pname}>{name}").into();
        let up: Rc<str> = format!("{name}>{pname}").into();
        let near = FaultyEnd::new(near, self.self_ref.clone(), down);
        let far: Box<dyn Transport> = Box::new(FaultyEnd::new(far, self.self_ref.clone(), up));
        let slot =
            self.new_slot(name, Some(parent), State::Booting { end: far, reader: FrameReader::new(DEFAULT_MAX_FRAME) });
        slot.boot.0.store(true, Ordering::SeqCst);
        self.event(format!("spawn '{name}' (pid {}) by '{pname}'", slot.pid));
        let proc = simulated(slot.pid, Rc::new(SimProcess { world: self.self_ref.clone(), id: slot.id }));
        Ok((proc, Box::new(near)))
    }

    /// A booting child's step: its `SpawnSpec`, if it has come whole, starts its run.
    fn boot(&self, slot: &Rc<Slot>) {
        slot.boot.0.store(false, Ordering::SeqCst);
        let waker = Waker::from(slot.boot.clone());
        let mut cx = Context::from_waker(&waker);
        let item = {
            let mut state = slot.state.borrow_mut();
            let State::Booting { end, reader } = &mut *state else { return };
            let next = pin!(reader.next(&**end, false)).poll(&mut cx);
            match next {
                Poll::Pending => return,
                Poll::Ready(Ok(Incoming::Frame(item))) => Some(item),
                Poll::Ready(_) => None,
            }
        };
        let State::Booting { end, reader } = slot.state.replace(State::Gone) else { return };
        let spec = match item.map(|i| spawn_spec(i, PROTOCOL_VERSION)) {
            Some(Ok(spec)) => spec,
            Some(Err((_, theirs))) => {
                self.event(format!("'{}' refuses its spawn: {theirs}", slot.name));
                drop(end);
                slot.finished.set(Some(ExitStatus::from_raw(i32::from(PROTOCOL_MISMATCH_EXIT as u8) << 8)));
                return;
            }
            None => {
                // The parent went away before the handshake.
                drop(end);
                slot.finished.set(Some(ExitStatus::from_raw(0)));
                return;
            }
        };
        let world: Rc<dyn World> = Rc::new(ActorWorld { world: self.self_ref.clone(), me: slot.id });
        let actor = child_actor(&spec, self.aid(slot), self.endpoints.clone()).in_world(world);
        slot.cx.borrow_mut().actor = Some(actor.clone());
        let conn = Rc::new(Peer::new(end, DEFAULT_MAX_FRAME));
        let signals = Signals::Queue(slot.signals.clone());
        let main = async move { Ok(serve_parent(actor, conn, reader, Some(signals)).await) };
        let s = Rc::downgrade(slot);
        let done = move |r: Result<i32>| {
            if let Some(s) = s.upgrade() {
                let code = r.unwrap_or(70);
                s.finished.set(Some(ExitStatus::from_raw((code & 0xff) << 8)));
            }
        };
        self.event(format!("'{}' serves{}", slot.name, if spec.infect_host { " (infected)" } else { "" }));
        match self.start_run(slot, spec.infect_host, main, done) {
            Ok(state) => *slot.state.borrow_mut() = state,
            Err(e) => {
                self.event(format!("'{}' failed to start: {e}", slot.name));
                slot.finished.set(Some(ExitStatus::from_raw(70 << 8)));
            }
        }
    }

    /// Delivers `sig` to actor `id`.
    fn signal(&self, id: usize, sig: i32) {
        let slot = self.slot(id);
        if !slot.live() {
            return;
        }
        self.event(format!("signal {sig} to '{}'", slot.name));
        if sig == libc::SIGKILL {
            slot.kill_pending.set(true);
        } else {
            slot.signals.raise(sig);
        }
    }

    /// Retires `slot` with `status`: drops its run in its own context, tells its children
    /// their parent died, wakes its parent's supervisor.
    fn retire(&self, slot: &Rc<Slot>, status: ExitStatus) {
        if !slot.live() {
            return;
        }
        slot.dying.set(true);
        {
            let _cx = Entered::new(slot);
            let state = slot.state.replace(State::Gone);
            drop(state);
            // Its ticks go with it (taken out first: dropping one may ask for another).
            let left = {
                let mut q = slot.queue.lock().unwrap_or_else(|p| p.into_inner());
                q.closed = true;
                (std::mem::take(&mut q.soon), q.at.take())
            };
            drop(left);
        }
        // Its registry of children (the `Proc`s it still held) goes with it.
        drop(std::mem::take(&mut *slot.cx.borrow_mut()));
        slot.status.set(Some(status));
        match (status.code(), status.signal()) {
            (Some(c), _) => self.event(format!("exit '{}' code {c}", slot.name)),
            (_, s) => self.event(format!("exit '{}' signal {}", slot.name, s.unwrap_or(0))),
        }
        let children: Vec<Rc<Slot>> =
            self.actors.borrow().iter().filter(|s| s.parent == Some(slot.id) && s.live()).cloned().collect();
        for child in children {
            // The death signal armed at spawn (`PR_SET_PDEATHSIG(SIGTERM)`); its pipe's end-of-file
            // came with the parent's run.
            self.signal(child.id, libc::SIGTERM);
        }
        slot.exit_waiters.wake_all();
    }

    /// Retires whoever finished or was killed in the last step, in id order.
    fn reap_finished(&self) {
        let all: Vec<Rc<Slot>> = self.actors.borrow().clone();
        for slot in all {
            if !slot.live() {
                continue;
            }
            if slot.kill_pending.get() {
                self.retire(&slot, ExitStatus::from_raw(libc::SIGKILL));
            } else if let Some(st) = slot.finished.get() {
                self.retire(&slot, st);
            }
        }
    }

    // ------------------------------------------------------------------ scheduling

    /// Whether `slot` can run now (and moves its due guest deadline into its queue).
    fn runnable(&self, slot: &Slot, now: Instant) -> bool {
        if !slot.live() || slot.stalled_until.get() > now {
            return false;
        }
        match &*slot.state.borrow() {
            State::Booting { .. } => slot.boot.0.load(Ordering::SeqCst),
            State::Plain(_) => {
                let mut q = slot.queue.lock().unwrap_or_else(|p| p.into_inner());
                if q.at.as_ref().is_some_and(|(t, _)| *t <= now) {
                    let (_, tick) = q.at.take().expect("checked");
                    q.soon.push_back(tick);
                }
                !q.soon.is_empty()
            }
            State::Infected(host) => host.has_jobs() || host.next_deadline().is_some_and(|t| t <= now),
            State::Gone => false,
        }
    }

    /// The earliest deadline of anything in the world.
    fn next_deadline(&self) -> Option<Instant> {
        let mut next = self.timers.borrow().first().map(|t| t.0);
        let mut fold = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        let now = self.now();
        for slot in self.actors.borrow().iter().filter(|s| s.live()) {
            let until = slot.stalled_until.get();
            if until > now {
                fold(until);
            }
            match &*slot.state.borrow() {
                State::Plain(_) => {
                    if let Some((t, _)) = &slot.queue.lock().unwrap_or_else(|p| p.into_inner()).at {
                        fold((*t).max(until));
                    }
                }
                State::Infected(host) => {
                    if let Some(t) = host.next_deadline() {
                        fold(t.max(until));
                    }
                }
                State::Booting { .. } | State::Gone => {}
            }
        }
        next
    }

    /// The faults of one step.
    fn step_faults(&self) {
        let f = self.faults.clone();
        if self.roll(f.kill_rate())
            && let Some(victim) = self.pick_live(false)
        {
            self.event(format!("fault: kill '{}'", victim.name));
            self.signal(victim.id, libc::SIGKILL);
        }
        if self.roll(f.interrupt_rate())
            && let Some(victim) = self.pick_live(true)
        {
            let sig = if self.below(2) == 0 { libc::SIGINT } else { libc::SIGTERM };
            self.event(format!("fault: interrupt '{}'", victim.name));
            self.signal(victim.id, sig);
        }
        if self.roll(f.stall_rate())
            && let Some(victim) = self.pick_live(true)
        {
            let d = Duration::from_nanos(self.below(f.stall_bound().as_nanos() as u64 + 1));
            self.event(format!("fault: stall '{}' for {} ns", victim.name, d.as_nanos()));
            victim.stalled_until.set(self.now() + d);
        }
    }

    fn pick_live(&self, with_root: bool) -> Option<Rc<Slot>> {
        let live: Vec<Rc<Slot>> =
            self.actors.borrow().iter().filter(|s| s.live() && (with_root || s.parent.is_some())).cloned().collect();
        (!live.is_empty()).then(|| live[self.below(live.len() as u64) as usize].clone())
    }

    /// One step of `slot`.
    fn step(&self, slot: &Rc<Slot>) {
        self.mix(self.now().as_nanos());
        self.mix(slot.id as u64);
        if self.steps_traced {
            self.event(format!("step '{}'", slot.name));
        }
        if matches!(&*slot.state.borrow(), State::Booting { .. }) {
            // Its context is made in `boot` (the run starts in it).
            self.boot(slot);
            return;
        }
        let _cx = Entered::new(slot);
        let state = slot.state.borrow();
        match &*state {
            State::Plain(_) => {
                let tick = slot.queue.lock().unwrap_or_else(|p| p.into_inner()).soon.pop_front();
                drop(state);
                if let Some(tick) = tick {
                    tick.run();
                }
            }
            State::Infected(host) => {
                host.run_until_stalled();
            }
            State::Booting { .. } | State::Gone => {}
        }
    }

    /// Runs the world until the root has finished and every actor is gone, or it stalls, or
    /// runs past `limit`. `Err` for a run that could not go on (the root's own outcome is its).
    pub(crate) fn run(&self, limit: Duration) -> std::result::Result<(), RunEnd> {
        let _ = crate::cx::take_violation();
        let mut root_end: Option<Instant> = None;
        loop {
            self.fire_timers();
            let all: Vec<Rc<Slot>> = self.actors.borrow().clone();
            let now = self.now();
            let live = || all.iter().filter(|s| s.live()).map(|s| s.name.clone()).collect::<Vec<_>>();
            if all.first().is_none_or(|r| !r.live()) {
                // The root is done. Its direct children were reaped by its nurseries; an
                // orphan (a grandchild whose parent was killed) ends on its own, within its
                // grace and ladder bounds, as it would as a process: let it.
                let end = *root_end.get_or_insert(now);
                if live().is_empty() {
                    return Ok(());
                }
                if now.saturating_duration_since(end) > ORPHAN_BOUND {
                    return Err(RunEnd::Leftovers(live()));
                }
            }
            let ready: Vec<Rc<Slot>> = all.iter().filter(|s| self.runnable(s, now)).cloned().collect();
            if ready.is_empty() {
                match self.next_deadline() {
                    _ if root_end.is_some() && self.next_deadline().is_none() => return Err(RunEnd::Leftovers(live())),
                    Some(t) if t.saturating_duration_since(Instant::ZERO) > limit => {
                        return Err(RunEnd::Stopped(format!("it ran past its time limit of {limit:?}")));
                    }
                    Some(t) => {
                        self.clock.advance(t.saturating_duration_since(now));
                        continue;
                    }
                    None => {
                        return Err(RunEnd::Stopped(
                            "no actor can run and no timer is pending, but the root has not finished".to_owned(),
                        ));
                    }
                }
            }
            self.step_faults();
            let pick = ready[self.below(ready.len() as u64) as usize].clone();
            self.steps.set(self.steps.get() + 1);
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| self.step(&pick)));
            if let Err(payload) = r {
                let msg = crate::panic::payload_message(&*payload);
                if let Some(what) = msg.strip_prefix(super::GUARD) {
                    let _ = crate::cx::take_violation();
                    return Err(RunEnd::Outside(format!("{what} (in actor '{}')", pick.name)));
                }
                self.event(format!("panic in '{}': {msg}", pick.name));
                if pick.parent.is_none() {
                    return Err(RunEnd::Panicked(payload));
                }
                pick.finished.set(Some(ExitStatus::from_raw(libc::SIGABRT)));
            }
            if let Some(what) = crate::cx::take_violation() {
                return Err(RunEnd::Outside(format!("{what} (in actor '{}')", pick.name)));
            }
            if let Some(thread) = self.actors.borrow().iter().find_map(|s| {
                s.queue.lock().unwrap_or_else(|p| p.into_inner()).foreign.take().map(|t| (s.name.clone(), t))
            }) {
                return Err(RunEnd::Outside(format!(
                    "a wake of a task of actor '{}' from another thread ('{}')",
                    thread.0, thread.1
                )));
            }
            self.reap_finished();
        }
    }

    /// Kills whatever still runs (the end of a run that could not finish), in id order.
    pub(crate) fn kill_all(&self) {
        let all: Vec<Rc<Slot>> = self.actors.borrow().clone();
        for slot in all.iter().rev() {
            self.retire(slot, ExitStatus::from_raw(libc::SIGKILL));
        }
        self.timers.borrow_mut().clear();
    }

    pub(crate) fn take_events(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.borrow_mut())
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash.get()
    }

    pub(crate) fn steps(&self) -> u64 {
        self.steps.get()
    }

    pub(crate) fn spawned(&self) -> usize {
        self.actors.borrow().len()
    }

    pub(crate) fn live_names(&self) -> String {
        let names: Vec<String> =
            self.actors.borrow().iter().filter(|s| s.live()).map(|s| format!("'{}'", s.name)).collect();
        if names.is_empty() { "nothing".to_owned() } else { names.join(", ") }
    }
}

/// How long, after the root finished, the world lets orphans end by themselves (their parent
/// was killed): past [`PARENT_GONE_GRACE`](crate::actor::PARENT_GONE_GRACE) and a ladder's
/// worth of bounds. One still running then is a leftover.
const ORPHAN_BOUND: Duration = Duration::from_secs(30);

/// Why a run of the world ended early.
pub(crate) enum RunEnd {
    /// Stalled, or past its limit.
    Stopped(String),
    /// Guard rails: something reached outside the world.
    Outside(String),
    /// The root panicked (resumed by the caller once the world is torn down).
    Panicked(Box<dyn std::any::Any + Send>),
    /// The root finished with actors still running.
    Leftovers(Vec<String>),
}

/// An actor's context swapped in while the guard lives (restored on unwind too).
struct Entered<'a> {
    slot: &'a Slot,
}

impl<'a> Entered<'a> {
    fn new(slot: &'a Slot) -> Entered<'a> {
        swap_context(&mut slot.cx.borrow_mut());
        Entered { slot }
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        swap_context(&mut self.slot.cx.borrow_mut());
    }
}

/// The world as actor `me` sees it.
struct ActorWorld {
    world: Weak<WorldState>,
    me: usize,
}

impl World for ActorWorld {
    fn spawn(&self, name: &str) -> Result<Spawned> {
        let world = self.world.upgrade().ok_or(Error::NoActorRuntime)?;
        world.spawn(self.me, name)
    }

    fn exit_now(&self, code: i32) {
        if let Some(world) = self.world.upgrade() {
            let slot = world.slot(self.me);
            world.event(format!("'{}' exits at once with {code}", slot.name));
            slot.finished.set(Some(ExitStatus::from_raw((code & 0xff) << 8)));
        }
    }
}

/// A child's process, as its parent's supervisor drives it.
struct SimProcess {
    world: Weak<WorldState>,
    id: usize,
}

impl Simulated for SimProcess {
    fn signal(&self, sig: i32) {
        if let Some(w) = self.world.upgrade() {
            w.signal(self.id, sig);
        }
    }

    fn poll_exit(&self, cx: &mut Context<'_>) -> Poll<ExitStatus> {
        let Some(w) = self.world.upgrade() else { return Poll::Ready(ExitStatus::from_raw(libc::SIGKILL)) };
        let slot = w.slot(self.id);
        match slot.status.get() {
            Some(st) => Poll::Ready(st),
            None => {
                slot.exit_waiters.register(cx.waker());
                Poll::Pending
            }
        }
    }

    fn status(&self) -> Option<ExitStatus> {
        let w = self.world.upgrade()?;
        w.slot(self.id).status.get()
    }

    fn dropped(&self) {
        let Some(w) = self.world.upgrade() else { return };
        let slot = w.slot(self.id);
        let parent_dying = slot.parent.is_some_and(|p| w.slot(p).dying.get());
        if !parent_dying && slot.live() {
            // The last resort of a live parent (a nursery future dropped mid-teardown).
            w.signal(self.id, libc::SIGKILL);
        }
    }
}
