//! # infect
//!
//! "Infected asyncio" for Rust: a small, single-threaded, deterministic **dual-executor
//! kernel**, after the mode of the Python actor runtime *tractor* in which a subactor runs the
//! asyncio loop as its host and trio on top of it as a guest.
//!
//! | layer | what it is |
//! |---|---|
//! | [`time`] | the [`Clock`](time::Clock) trait, monotonic and virtual (autojump) clocks, timers |
//! | `reactor` (std) | `poll(2)` over a handful of fds and one wake fd |
//! | [`host`] | the host executor (asyncio's role), built on `async-task`; `host::net` (std): its sockets |
//! | [`guest`] | the structured-concurrency runtime (trio's role), host-agnostic |
//! | [`to_host`] | the linked task pair between the two loops |
//! | [`wire`] | the postcard + COBS framed IPC protocol |
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
