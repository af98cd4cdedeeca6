//! Seeing inside a running actor tree (std): debug mode and what it turns on.
//!
//! **Debug mode** is tree-wide (tractor's `debug_mode=True`): set it at the root with
//! [`RootOpts::debug_mode`](crate::actor::RootOpts::debug_mode); every child actor inherits its
//! parent's mode unless its [`ActorOpts::debug_mode`](crate::actor::ActorOpts::debug_mode) says
//! otherwise. [`is_debug_mode`] tells code which mode the current actor runs in. Debug mode
//! turns on crash reports on stderr (an endpoint failure reports itself in the failing actor
//! before the error propagates) and, later, `pause()`.
//!
//! [`dump`] is the live state of this actor as deterministic text.
//!
//! ```
//! use infect::actor::{self, Endpoints, RootOpts};
//! use infect::debug;
//!
//! assert!(!debug::is_debug_mode()); // no actor runtime here
//! let plain = actor::run(Endpoints::new(), async { Ok(debug::is_debug_mode()) });
//! assert_eq!(plain, Ok(false));
//! let debug = actor::run_with(RootOpts::new().debug_mode(true), Endpoints::new(), async { Ok(debug::is_debug_mode()) });
//! assert_eq!(debug, Ok(true));
//! ```

mod pause;
mod tty;

pub use pause::{pause, terminal_queue};

use alloc::string::String;

/// Whether the current actor runs in debug mode; `false` outside an actor runtime (a plain
/// [`guest::run`](crate::guest::run), say).
pub fn is_debug_mode() -> bool {
    crate::actor::current_debug_mode()
}

/// The state of this actor as deterministic text.
///
/// A placeholder in this version: it returns the line `"dump: not implemented yet\n"`.
pub fn dump() -> String {
    String::from("dump: not implemented yet\n")
}
