//! The one shim between the runtime and the optional `tracing` crate (crate-private).
//!
//! With the `tracing` feature each macro here is a `tracing` event or span; without it each
//! expands to nothing (its arguments are not even evaluated), so a build without the feature
//! carries none of it. Call sites are one line: `crate::log::debug!("guest.spawn", task = n);`.
//!
//! Invariants:
//! - An event's name (its metadata name, and its message) is the first argument, a dotted
//!   literal: `<layer>.<what>` (`host.spawn`, `guest.cancel`, `link.started`, `actor.exit`...).
//!   The names are the interface a subscriber (and `tests/tracing.rs`) filters on.
//! - Fields are `key = value` (a value that is `tracing::Value`: integers, `&str`, bools) or
//!   `key = %value` (its `Display`) / `key = ?value` (its `Debug`).
//! - Levels: `trace` for what happens per message (link sends and receives), `debug` for task
//!   and scope life, `info` for actor life, `warn` for frame errors and the reaping ladder's
//!   signals.
//! - Spans: `enter_span!` opens an `info` span named by its first argument and keeps it
//!   entered to the end of the enclosing block (the span of a whole actor process, say).

// Without `std` there are no actors, whose macros (`info!`, `enter_span!`) go unused then.
#![allow(unused_macros)]

/// An event: `event!(LEVEL, "layer.what", field = value, ...)`; the level macros below are
/// what call sites use.
#[cfg(feature = "tracing")]
macro_rules! event {
    ($lvl:ident, $name:literal $(, $($fields:tt)*)?) => {
        ::tracing::event!(name: $name, target: "infect", ::tracing::Level::$lvl, $($($fields)*,)? $name)
    };
}

#[cfg(not(feature = "tracing"))]
macro_rules! event {
    ($($t:tt)*) => {};
}

/// A per-message event (link sends and receives).
macro_rules! trace {
    ($($t:tt)*) => { $crate::log::event!(TRACE, $($t)*) };
}

/// A task's or scope's life: spawn, finish, cancel.
macro_rules! debug {
    ($($t:tt)*) => { $crate::log::event!(DEBUG, $($t)*) };
}

/// An actor's life: spawn, handshake, exit.
macro_rules! info {
    ($($t:tt)*) => { $crate::log::event!(INFO, $($t)*) };
}

/// Something went wrong on the wire, or the reaping ladder had to signal.
macro_rules! warning {
    ($($t:tt)*) => { $crate::log::event!(WARN, $($t)*) };
}

/// `enter_span!("actor", name = %name);`: an `info` span entered until the end of the
/// enclosing block.
#[cfg(feature = "tracing")]
macro_rules! enter_span {
    ($name:literal $(, $($fields:tt)*)?) => {
        let _infect_span = ::tracing::span!(target: "infect", ::tracing::Level::INFO, $name $(, $($fields)*)?).entered();
    };
}

#[cfg(not(feature = "tracing"))]
macro_rules! enter_span {
    ($($t:tt)*) => {};
}

#[allow(unused_imports)] // each layer uses the few it needs
pub(crate) use {debug, enter_span, event, info, trace, warning};
