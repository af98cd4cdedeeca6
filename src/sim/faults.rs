//! The faults a simulated world injects, all drawn from its one seed: [`Faults`] (the rates),
//! the faulty pipe end every connection of the world goes through ([`FaultyEnd`]), and
//! [`buggify`](crate::buggify!) for user code.

use std::cell::Cell;
use std::io;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::actor::for_sim::{MemTransport, Transport};
use crate::time::Instant;

use super::world::WorldState;

/// Which faults a simulated world injects, and how often (each a probability in `0.0..=1.0`).
/// Every decision is drawn from the world's seed, so a seed names one course of faults.
///
/// - per scheduling step: [`kill`](Faults::kill) (an actor other than the root dies as
///   `SIGKILL` makes it: nothing of it runs again, no teardown; its children see their parent
///   die), [`interrupt`](Faults::interrupt) (`SIGINT` or `SIGTERM` to an actor, the root
///   included: Ctrl-C), [`stall`](Faults::stall) (an actor stops being scheduled for up to
///   [`max_stall`](Faults::max_stall) of virtual time, as `SIGSTOP`/`SIGCONT` would);
/// - per write on a connection: [`split`](Faults::split) (only part of it is taken, so frames
///   arrive in arbitrary chunks), [`delay`](Faults::delay) (it waits up to
///   [`max_delay`](Faults::max_delay) first), [`garbage`](Faults::garbage) (a damaged frame
///   goes first, between two frames: the receiver skips and reports it, and nothing else is
///   lost), [`corrupt`](Faults::corrupt) (one bit of it is flipped: the frame it falls in is
///   damaged and skipped, so its message is lost, and a call that waited for that message
///   waits on; such a run may end as [`Error::SimulationStalled`](crate::Error::SimulationStalled)),
///   [`truncate`](Faults::truncate) (a prefix goes through, then that direction of the
///   connection is cut, as a peer that died mid-write).
///
/// ```
/// use infect::sim::Faults;
/// use std::time::Duration;
/// let f = Faults::none().split(0.5).delay(0.1).max_delay(Duration::from_millis(3));
/// assert_eq!(f.split_rate(), 0.5);
/// assert!(Faults::none().is_none() && !f.is_none());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    kill: f64,
    interrupt: f64,
    stall: f64,
    max_stall: Duration,
    split: f64,
    delay: f64,
    max_delay: Duration,
    garbage: f64,
    corrupt: f64,
    truncate: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults::none()
    }
}

macro_rules! rate {
    ($(#[$m:meta])* $name:ident, $get:ident) => {
        $(#[$m])*
        pub fn $name(mut self, p: f64) -> Faults {
            self.$name = p.clamp(0.0, 1.0);
            self
        }

        #[doc = concat!("The rate set by [`", stringify!($name), "`](Faults::", stringify!($name), ").")]
        pub fn $get(&self) -> f64 {
            self.$name
        }
    };
}

impl Faults {
    /// No faults: the world only schedules (still from the seed).
    pub fn none() -> Faults {
        Faults {
            kill: 0.0,
            interrupt: 0.0,
            stall: 0.0,
            max_stall: Duration::from_millis(50),
            split: 0.0,
            delay: 0.0,
            max_delay: Duration::from_millis(5),
            garbage: 0.0,
            corrupt: 0.0,
            truncate: 0.0,
        }
    }

    /// Every fault that loses nothing the protocol promises to keep (all but
    /// [`corrupt`](Faults::corrupt)), at rates that let most runs get somewhere and many runs
    /// meet one: what a seed sweep starts from.
    pub fn all() -> Faults {
        Faults::none().kill(0.002).interrupt(0.001).stall(0.005).split(0.2).delay(0.05).garbage(0.005).truncate(0.001)
    }

    /// Whether no fault is enabled.
    pub fn is_none(&self) -> bool {
        [self.kill, self.interrupt, self.stall, self.split, self.delay, self.garbage, self.corrupt, self.truncate]
            .iter()
            .all(|&p| p == 0.0)
    }

    rate!(
        /// Per step: an actor other than the root is killed (`SIGKILL`).
        kill, kill_rate
    );
    rate!(
        /// Per step: `SIGINT` or `SIGTERM` to an actor (the root included).
        interrupt, interrupt_rate
    );
    rate!(
        /// Per step: an actor is not scheduled for up to [`max_stall`](Faults::max_stall).
        stall, stall_rate
    );
    rate!(
        /// Per write: only part of it is taken.
        split, split_rate
    );
    rate!(
        /// Per write: it waits up to [`max_delay`](Faults::max_delay) first.
        delay, delay_rate
    );
    rate!(
        /// Per write at a frame boundary: a damaged frame goes first.
        garbage, garbage_rate
    );
    rate!(
        /// Per write: one bit of it is flipped (the message of the frame it hits is lost).
        corrupt, corrupt_rate
    );
    rate!(
        /// Per write: a prefix goes through, then that direction is cut.
        truncate, truncate_rate
    );

    /// The longest stall (default 50 ms of virtual time).
    pub fn max_stall(mut self, d: Duration) -> Faults {
        self.max_stall = d;
        self
    }

    /// The longest delay of a write (default 5 ms of virtual time).
    pub fn max_delay(mut self, d: Duration) -> Faults {
        self.max_delay = d;
        self
    }

    pub(crate) fn stall_bound(&self) -> Duration {
        self.max_stall
    }
}

/// One end of a connection of the world: an in-memory pipe end whose writes go through the
/// world's write faults, and whose bytes feed the world's trace hash.
pub(crate) struct FaultyEnd {
    inner: MemTransport,
    world: Weak<WorldState>,
    /// Which connection and direction, for the trace (`"root>echo"`).
    label: Rc<str>,
    /// A delayed write may go once the clock reaches this.
    delayed_until: Cell<Option<Instant>>,
    /// Cut by a `truncate` fault: writes fail from now on.
    cut: Cell<bool>,
    /// The last byte written ended a frame (or nothing was written yet): a `garbage` frame
    /// may go here without damaging a real one.
    at_boundary: Cell<bool>,
}

impl FaultyEnd {
    pub(crate) fn new(inner: MemTransport, world: Weak<WorldState>, label: Rc<str>) -> FaultyEnd {
        FaultyEnd {
            inner,
            world,
            label,
            delayed_until: Cell::new(None),
            cut: Cell::new(false),
            at_boundary: Cell::new(true),
        }
    }
}

impl Transport for FaultyEnd {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.inner.poll_read(cx, buf)
    }

    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_readable(cx)
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.cut.get() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let Some(world) = self.world.upgrade() else { return self.inner.poll_write(cx, buf) };
        if buf.is_empty() {
            return self.inner.poll_write(cx, buf);
        }
        let now = world.now();
        match self.delayed_until.get() {
            Some(t) if now < t => {
                world.wake_at(t, cx.waker().clone());
                return Poll::Pending;
            }
            Some(_) => self.delayed_until.set(None),
            None => {
                let f = world.faults();
                if world.roll(f.delay) {
                    let d = world.below(f.max_delay.as_nanos() as u64 + 1);
                    let until = now + Duration::from_nanos(d);
                    world.event(format!("fault: delay {} by {d} ns", self.label));
                    self.delayed_until.set(Some(until));
                    world.wake_at(until, cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
        let f = world.faults();
        if self.at_boundary.get() && world.roll(f.garbage) {
            let len = 1 + world.below(12) as usize;
            let mut junk: Vec<u8> = (0..len).map(|_| 1 + world.below(255) as u8).collect();
            junk.push(0);
            world.event(format!("fault: garbage frame of {len} bytes on {}", self.label));
            world.hash_bytes(&junk);
            // The in-memory pipe takes it whole (its room is checked by the real write below).
            let _ = self.inner.write_now(&junk);
        }
        let mut take = buf.len();
        if take > 1 && world.roll(f.split) {
            take = 1 + world.below(take as u64 - 1) as usize;
        }
        if world.roll(f.truncate) {
            let keep = world.below(take as u64) as usize;
            world.event(format!("fault: truncate {} after {keep} of {} bytes", self.label, buf.len()));
            let written = match keep {
                0 => 0,
                n => match self.inner.poll_write(cx, &buf[..n]) {
                    Poll::Ready(Ok(n)) => n,
                    _ => 0,
                },
            };
            world.hash_bytes(&buf[..written]);
            self.cut.set(true);
            self.inner.shutdown_write();
            return Poll::Ready(if written == 0 { Err(io::ErrorKind::BrokenPipe.into()) } else { Ok(written) });
        }
        if world.roll(f.corrupt) {
            let mut copy = buf[..take].to_vec();
            let at = world.below(copy.len() as u64) as usize;
            let bit = world.below(8) as u8;
            copy[at] ^= 1 << bit;
            world.event(format!("fault: corrupt {} byte {at} bit {bit}", self.label));
            let r = self.inner.poll_write(cx, &copy);
            if let Poll::Ready(Ok(n)) = r {
                world.hash_bytes(&copy[..n]);
                self.at_boundary.set(n > 0 && buf[n - 1] == 0);
            }
            r
        } else {
            let r = self.inner.poll_write(cx, &buf[..take]);
            if let Poll::Ready(Ok(n)) = r {
                world.hash_bytes(&buf[..n]);
                self.at_boundary.set(n > 0 && buf[n - 1] == 0);
            }
            r
        }
    }

    fn write_now(&self, bytes: &[u8]) -> io::Result<()> {
        if self.cut.get() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if let Some(world) = self.world.upgrade() {
            world.hash_bytes(bytes);
        }
        if let Some(&last) = bytes.last() {
            self.at_boundary.set(last == 0);
        }
        self.inner.write_now(bytes)
    }
}
