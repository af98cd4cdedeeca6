//! # infect
//!
//! "Infected asyncio" for Rust: a small, single-threaded, deterministic **dual-executor
//! kernel**, after the mode of the Python actor runtime *tractor* in which a subactor runs the
//! asyncio loop as its host and trio on top of it as a guest.
//!
//! The layers, lowest first. A module uses only the layers above it in this table (a test,
//! `tests/layers.rs`, keeps it so); the host and the guest share a layer and know nothing of
//! each other.
//!
//! | layer | what it is |
//! |---|---|
//! | [`time`], [`trace`], [`wire`], `cx` | the [`Clock`](time::Clock) trait, monotonic and virtual (autojump) clocks; the event trace; the postcard + COBS framed IPC protocol; crate-private: the "current loop" slots |
//! | `timers`, `sync`, `reactor` (std) | crate-private: the one timer queue and sleep slot both loops use, the one waker list and broadcast ring; `poll(2)` over a handful of fds, one wake fd and the park gate |
//! | [`host`] · [`guest`] | the host executor (asyncio's role), built on `async-task`, generic: wakes from any thread, alarms, shutdown of what it carries; `host::net` (std): its sockets · the structured-concurrency runtime (trio's role), riding any host through [`guest::Hooks`] |
//! | `embed` | crate-private: our host carrying a guest ([`Host::run_guest`](host::Host::run_guest), one guest per host, the typed handle `to_host` finds its host by) |
//! | [`to_host`] | the linked task pair between the two loops |
//! | `actor` (std) | subprocess actors over pipes: nurseries, contexts, streams, supervision |
//!
//! [`error`] is every layer's: one [`Error`] type.
//!
//! Without the default `std` feature the kernel core builds as `#![no_std]` + `alloc`.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, clippy::undocumented_unsafe_blocks)]

extern crate alloc;

#[cfg(feature = "std")]
pub mod actor;
mod cx;
mod embed;
pub mod error;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub mod guest;
pub mod host;
#[cfg(feature = "std")]
mod panic;
#[cfg(feature = "std")]
pub mod reactor;
mod sync;
pub mod time;
mod timers;
pub mod to_host;
pub mod trace;
pub mod wire;

pub use error::{Cancelled, Error, ErrorGroup, Result};
