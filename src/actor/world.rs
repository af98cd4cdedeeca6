//! The seam between the actor layer and a simulated world ([`sim`](crate::sim)): what an actor
//! asks of the operating system (a child process with its pipes, an immediate exit) it asks of
//! its world instead, when it has one. The actor layer knows the trait only; `sim` implements it.
//!
//! Invariants:
//! - An actor has a world from birth or never ([`ActorInner`](super::ActorInner)'s `world`):
//!   a simulated actor never spawns a real process, and a real one never a simulated one.
//! - What the world hands back behaves as the real thing does to everything above it: the
//!   transport is a byte stream (the frames really travel), the process a [`Proc`] whose exit,
//!   signals and reaping the supervisor drives unchanged.

use std::cell::RefCell;
use std::rc::Rc;

use crate::Result;

use super::peer::Transport;
use super::process::Proc;

/// A child's stand-in process and the parent's end of its connection.
pub(crate) type Spawned = (Rc<RefCell<Proc>>, Box<dyn Transport>);

/// A simulated world, as one of its actors sees it.
pub(crate) trait World {
    /// Starts child actor `name` of this actor: its stand-in process and this actor's end of
    /// the connection (the child reads its `SpawnSpec` from the other end, as a process would).
    fn spawn(&self, name: &str) -> Result<Spawned>;

    /// This actor exits now with status `code`, nothing else of it running (a process's
    /// `exit`): its run is dropped once the current step returns.
    fn exit_now(&self, code: i32);
}
