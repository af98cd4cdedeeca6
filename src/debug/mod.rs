//! Seeing inside a running actor tree (std): debug mode, the live tree dump, crash reports,
//! and [`pause`].
//!
//! **Debug mode** is tree-wide (tractor's `debug_mode=True`): set it at the root with
//! [`RootOpts::debug_mode`](crate::actor::RootOpts::debug_mode); every child actor inherits its
//! parent's mode unless its [`ActorOpts::debug_mode`](crate::actor::ActorOpts::debug_mode) says
//! otherwise. [`is_debug_mode`] tells code which mode the current actor runs in. Debug mode
//! turns on **crash reports** (below) and [`pause`] (a prompt on the terminal, under a tree-wide
//! lock the root owns; outside debug mode it fails with
//! [`Error::NotDebugMode`](crate::Error::NotDebugMode)). The dump works in every mode.
//!
//! **The live dump** is the state of an actor as deterministic text (no addresses, no
//! wall-clock: tasks by spawn number, scopes by entry number, children in spawn order, times on
//! the loop's own clock, exact on a [`VirtualClock`](crate::time::VirtualClock)):
//! - the actor (name, pid, root / infected / debug mode);
//! - its child actors as this parent sees them: name, pid, where the dialog is (starting,
//!   serving, being torn down, gone) and the ids of the calls open with each;
//! - the guest run: every task (the main task first) with the source location of the infect
//!   await it waits at (`file:line:col` of the caller of `guest::sleep`, a channel's
//!   `send`/`receive`, `Event::wait`, `open_nursery`, `Nursery::start`, `guest::cancellable`,
//!   `to_host::run_task`, `to_host::open_channel_from`; recorded when the task parks: one
//!   `&'static` store, no allocation), nested under the nursery it runs in; nurseries (where
//!   they were opened, how many children) and cancel scopes with their deadline, shield and
//!   cancel state, each under the task that entered it;
//! - the host tasks (infected actors) with where each waits and any cancellation requested;
//! - the linked pairs (`to_host`) with their translation state: phase, values in flight, the
//!   host side's end;
//! - the reactor's interests: each descriptor waited on, and the direction.
//!
//! **Enabling it.** The dump's code is linked only into a program that enables the debug layer
//! (a program that does not, like the `release-min` echo server, carries only the hooks): call
//! [`enable`] first thing in `main`, or build a
//! [`RootOpts::debug_mode`](crate::actor::RootOpts::debug_mode) there (with `true` or `false`);
//! every process of the program does it, the child actors included (each is the program
//! re-executed). The functions here enable it in the process that calls them. An actor
//! without it answers a dump request and `SIGUSR1` with a line saying so, and in debug mode
//! (set for it alone by [`ActorOpts::debug_mode`](crate::actor::ActorOpts::debug_mode)) prints
//! a crash as one marked line without the dump. The relay of [`pause`]'s terminal lock goes
//! with it: it runs in a process that enables the debug layer, sets an `ActorOpts::debug_mode`
//! or pauses; an actor without it grants its children's requests at once (their prompts are
//! then not serialised with each other or with the rest of the tree, and it does not hold back
//! its reaping for them).
//!
//! [`dump`] is this actor's own state, at once; [`dump_tree`] adds each child's subtree, asked
//! over the existing pipes (each child answers from its serving loop, relaying to its own
//! children): it waits at most 2 s for the answers (each level below half of its parent's
//! wait), so a stuck child is shown as one that did not answer and never hangs the dump.
//! [`print_dump`] prints the tree to stderr. **`SIGUSR1`** does the same from outside: an actor
//! that receives it prints its subtree's dump to its stderr (`kill -USR1 <pid>`). The handler is
//! installed in every actor process, debug mode or not (the signal's default action would kill
//! the process; a program of its own that wants `SIGUSR1` for itself installs its handler after
//! `actor::main` started, and the dump is off for it).
//!
//! **Crash reports** (debug mode): when an endpoint fails in an actor, the actor prints a
//! marked block to stderr before the error leaves for its parent: the actor's name, what
//! failed, the error chain (`Display` of the error and of each `source`) and the actor's
//! subtree dump. Each hop prints its own: a parent whose endpoint fails with the remote error
//! (say, a child that called its own child) prints one marked with its name, and a root that
//! fails prints the last. Cancellations are no crashes and print nothing.
//!
//! ```text
//! ======== infect crash report: actor "worker" ========
//! endpoint math.divide failed
//! error: cannot divide 1 by zero
//! -------- dump --------
//! actor "worker" (pid 4242, debug mode)
//!   guest (now 0.002s, 3 tasks):
//!   ...
//! ======== end of crash report: actor "worker" ========
//! ```
//!
//! The dump of a known program, exactly (a virtual clock, so the times are exact too):
//!
//! ```
//! use infect::{debug, guest::{self, GuestConfig}, time::VirtualClock};
//! use std::{rc::Rc, time::Duration};
//!
//! let text = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async {
//!     guest::open_nursery(async |n| {
//!         n.start_soon(async { guest::sleep(Duration::from_secs(5)).await })?;
//!         guest::sleep(Duration::from_secs(1)).await?;
//!         let text = debug::dump();
//!         n.cancel();
//!         Ok(text)
//!     })
//!     .await
//! })?;
//! let nursery = line!() - 9; // where the nursery was opened
//! let file = file!();
//! assert_eq!(
//!     text.unwrap(),
//!     format!(
//!         "no actor (pid {pid})
//!   guest (now 1s, 2 tasks):
//!     task 0 (main): running (taking this dump)
//!       nursery (scope 1) opened at {file}:{nursery}:5, 1 children
//!         task 1: waits at {file}:{}:30
//! ",
//!         nursery + 1,
//!         pid = std::process::id()
//!     )
//! );
//! assert!(!debug::is_debug_mode()); // no actor runtime here
//! # Ok::<(), infect::Error>(())
//! ```
//!
//! In an actor tree (the tree's own dump, and debug mode):
//!
//! ```
//! use infect::actor::{self, Endpoints, RootOpts};
//! use infect::debug;
//!
//! let plain = actor::run(Endpoints::new(), async { Ok(debug::is_debug_mode()) });
//! assert_eq!(plain, Ok(false));
//! let text = actor::run_with(RootOpts::new().debug_mode(true), Endpoints::new(), async {
//!     assert!(debug::is_debug_mode());
//!     debug::dump_tree().await
//! })?;
//! assert!(text.starts_with(&format!("actor \"root\" (pid {}, root, debug mode)\n", std::process::id())));
//! # Ok::<(), infect::Error>(())
//! ```
//!
//! `examples/debugging/dump_tree.rs` runs a root, a child and a grandchild and prints the
//! tree's dump; `examples/debugging/crash_report.rs` shows the crash reports of a failure two
//! hops down.

mod pause;
mod tty;

pub use pause::{pause, terminal_queue};

use alloc::string::String;

use crate::Result;

/// Whether the current actor runs in debug mode; `false` outside an actor runtime (a plain
/// [`guest::run`](crate::guest::run), say).
pub fn is_debug_mode() -> bool {
    crate::actor::current_debug_mode()
}

/// The state of this process's actor, at once: the actor itself, its child actors as this
/// parent sees them (without their subtrees: [`dump_tree`] asks them), its guest run, host
/// tasks, linked pairs and reactor interests (see the [module docs](self) for what each shows).
/// Outside an actor runtime the first line is `no actor (pid N)` and the rest is the loops of
/// this thread.
pub fn dump() -> String {
    crate::actor::dump::install();
    crate::actor::dump::local()
}

/// The dump of this actor's whole subtree: [`dump`] with each child's own subtree dump below
/// its line, asked over its pipe. Waits at most 2 s for the answers (all children at once);
/// a child that does not answer in time is shown as such. `Err(Cancelled)` only if the
/// caller's scope is cancelled meanwhile.
pub async fn dump_tree() -> Result<String> {
    crate::actor::dump::install();
    crate::actor::dump::tree(crate::actor::dump::DUMP_WAIT).await
}

/// Prints [`dump_tree`] to stderr in one write, between two marker lines
/// (`======== infect dump ========` and `======== end of dump ========`): what `SIGUSR1` does.
pub async fn print_dump() -> Result<()> {
    crate::actor::dump::install();
    crate::actor::dump::print_tree().await
}

/// Enables the debug layer in this process: call it first thing in `main`, before
/// `actor::main`, so that every process of the program runs it (a child actor is this same
/// program re-executed). Then every actor answers its parent's dump requests and `SIGUSR1`.
/// [`RootOpts::debug_mode`](crate::actor::RootOpts::debug_mode) (with `true` or `false`) does
/// the same, the other functions here for the process that calls them.
///
/// A program that does none of that does not link the dump at all: its actors answer a dump
/// request, `SIGUSR1` and a crash report's dump with a line saying so, and its binary does not
/// carry the dump's code (about 45 KB of a `release-min` build).
///
/// ```
/// infect::debug::enable();
/// assert!(infect::debug::dump().starts_with("no actor"));
/// ```
pub fn enable() {
    crate::actor::dump::install();
}
