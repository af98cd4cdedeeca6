//! # infect
//!
//! "Infected asyncio" for Rust: a small, single-threaded, deterministic **dual-executor
//! kernel**, after the mode of the Python actor runtime *tractor* in which a subactor runs the
//! asyncio loop as its host and trio on top of it as a guest.
//!
//! # Quick start: pick the entry point
//!
//! | you want | call | runs |
//! |---|---|---|
//! | a structured-concurrency program (nurseries, cancel scopes, deadlines), no host | [`guest::run`] (or [`guest::run_with`] for a virtual clock, a trace, a seed) | the guest alone on this thread, parking on the reactor when idle |
//! | host tasks only: futures, callbacks, timers, sockets (asyncio's role) | [`Host::block_on`](host::Host::block_on) (one future, its output) or [`Host::run`](host::Host::run) (until nothing is left) | the host executor alone |
//! | the guest riding our host in one process, with linked host tasks ("infected" mode) | [`Host::run_guest`](host::Host::run_guest) | the host loop until the guest's main task is done; [`to_host`] links host tasks to guest tasks |
//! | a tree of processes, each an actor (tractor's role) | `actor::main` in `fn main` | the root actor; children are started by actor nurseries (see the `actor` module docs) |
//! | the guest on a loop that is not ours (a GUI loop, say) | [`guest::start_guest_run`] with your [`guest::Hooks`] | your loop calls each [`GuestTick`](guest::GuestTick) it is handed |
//!
//! Every example below runs on a [`VirtualClock`](time::VirtualClock): time only moves when
//! every task is blocked, and then jumps to the next deadline, so a five-second sleep takes
//! no time and every instant is exact.
//!
//! **A structured-concurrency program**: the first error cancels the siblings, a deadline
//! cancels a block and the block's scope catches it.
//!
//! ```
//! use infect::{guest::{self, GuestConfig}, time::VirtualClock};
//! use std::{rc::Rc, time::Duration};
//!
//! let out = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async {
//!     let (tx, mut rx) = guest::channel::<u32>(1);
//!     let total = guest::open_nursery(async |n| {
//!         n.start_soon(async move {
//!             for i in 1..=3 {
//!                 guest::sleep(Duration::from_secs(1)).await?;
//!                 tx.send(i).await?;
//!             }
//!             Ok(())
//!         })?;
//!         let mut total = 0;
//!         while let Some(v) = rx.try_next().await? {
//!             total += v;
//!         }
//!         Ok(total)
//!     })
//!     .await?;
//!     // A deadline: the body is cancelled at 3 s + 500 ms, `move_on_after` returns `None`.
//!     let timed_out = guest::move_on_after(Duration::from_millis(500), guest::sleep_forever()).await?;
//!     Ok((total, timed_out, guest::current_time().as_nanos()))
//! });
//! assert_eq!(out, Ok((Some(6), None, 3_500_000_000)));
//! ```
//!
//! (With the monotonic clock it is just `guest::run(async { .. })`.)
//!
//! **Host tasks only**: spawn, sleep, join; cancel with a reason.
//!
//! ```
//! use infect::{host::{self, Host}, time::VirtualClock};
//! use std::{rc::Rc, time::Duration};
//!
//! let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
//! let slow = host.spawn(async {
//!     host::sleep(Duration::from_secs(60)).await?;
//!     Ok::<_, infect::Cancelled>("done")
//! });
//! let fast = host.spawn(async {
//!     host::sleep(Duration::from_secs(2)).await?;
//!     Ok::<_, infect::Cancelled>(2)
//! });
//! let (v, r) = host.block_on(async move {
//!     let v = fast.await;
//!     slow.cancel("not needed");
//!     (v, slow.await)
//! });
//! assert_eq!(v, Ok(Ok(2)));
//! // `slow` was woken, its `sleep` returned `Err(Cancelled)` and the task returned that error
//! // itself (a task still pending after that one poll is dropped: `Err(Cancelled)` outside).
//! assert_eq!(r.unwrap().unwrap_err().reason, "not needed");
//! assert_eq!(host.now().as_nanos(), 2_000_000_000);
//! # Ok::<(), infect::Error>(())
//! ```
//!
//! **Infected mode**: the guest rides the host; a guest task calls a host task and waits for
//! it, with the host task's failure or cancellation arriving as the guest's error.
//!
//! ```
//! use infect::{guest, host::{self, Host}, time::VirtualClock, to_host};
//! use std::{rc::Rc, time::Duration};
//!
//! let host = Host::builder().clock(Rc::new(VirtualClock::new())).build()?;
//! let out = host.run_guest(async {
//!     guest::sleep(Duration::from_secs(1)).await?;
//!     // Runs as a host task of `host`; the guest task waits for its result.
//!     let v = to_host::run_task(async {
//!         host::sleep(Duration::from_secs(2)).await?;
//!         Ok(21 * 2)
//!     })
//!     .await?;
//!     Ok((v, guest::current_time().as_nanos()))
//! })?;
//! assert_eq!(out, (42, 3_000_000_000));
//! # Ok::<(), infect::Error>(())
//! ```
//!
//! **An actor tree**: `fn main() -> ExitCode { actor::main(endpoints, root()) }` runs the root
//! actor, a guest riding a host like the one above, whose actor nurseries start child
//! processes of the same binary. The API is in the `actor` module docs;
//! `examples/infected_echo_server.rs` is a complete program (a root driving an infected child).
//!
//! # Which to use
//! - [`guest::run`] when the program is structured concurrency and needs no host tasks: the
//!   smallest loop, the guest's tasks only.
//! - [`Host::block_on`](host::Host::block_on) / [`Host::run`](host::Host::run) when the code
//!   is plain futures (asyncio-style tasks, `call_soon`, `call_later`, [`host::net`]
//!   sockets) and no structured concurrency; `block_on` returns one future's output (the
//!   future need not be `'static`), `run` returns once no task, job, timer or guest is left.
//! - [`Host::run_guest`](host::Host::run_guest) when structured-concurrency code must drive
//!   host-side code (a library written for the host, a socket served by a host task): the
//!   one-process form of tractor's infected asyncio. One guest per host at a time; `to_host`
//!   works only inside it (elsewhere it returns [`Error::NotInfected`]).
//! - `actor::main` when the program is a tree of processes (each child may itself be infected).
//! - [`sim::Sim::run`] to run that same tree in one thread from a seed, with faults: the
//!   deterministic test of an actor program.
//!
//! # The promises every entry point keeps
//! - **One thread, deterministic.** Both loops run on the thread that calls the entry point;
//!   their run queues are FIFO (run order = wake order), timers with the same deadline fire in
//!   the order they were armed, fds ready together are woken in the order they were first
//!   awaited, and every timeout reads the loop's [`Clock`](time::Clock), never the wall clock.
//!   A seed ([`HostBuilder::seed`](host::HostBuilder::seed),
//!   [`GuestConfig::seed`](guest::GuestConfig::seed)) permutes each batch reproducibly; a
//!   [`Trace`](trace::Trace) records what ran, for a test to compare.
//! - **Cancellation is a value.** A cancelled guest scope makes every infect await inside it
//!   return [`Error::Cancelled`] (trio's rule, with `?` in place of exceptions; see
//!   [`guest`]); a cancelled host task's host-aware awaits return [`Cancelled`] for one
//!   poll, after which the task is dropped (see [`host`]).
//! - **Nothing outlives its owner.** No guest task outlives its nursery; dropping a
//!   [`Host`](host::Host) first abandons the guest it carries, then drops every host task, then
//!   its timers.
//!
//! # Layers
//!
//! The layers, lowest first. A module uses only the layers above it in this table (a test,
//! `tests/layers.rs`, keeps it so); the host and the guest share a layer and know nothing of
//! each other.
//!
//! | layer | what it is |
//! |---|---|
//! | `log` | crate-private: the one shim to the optional `tracing` crate (events and spans; nothing at all without the `tracing` feature) |
//! | `cx` | crate-private: the "current loop" slots, and whether a simulation runs on this thread (the guard rails read it) |
//! | [`time`], [`trace`], [`wire`], `panic` | the [`Clock`](time::Clock) trait, monotonic and virtual (autojump) clocks; the event trace; the postcard + COBS framed IPC protocol; crate-private: panic capture (std) |
//! | `timers`, `sync`, `reactor` (std) | crate-private: the one timer queue and sleep slot both loops use, the one waker list and broadcast ring; `epoll` over a handful of fds (registrations kept across waits), one wake fd and the park gate |
//! | [`host`] · [`guest`] | the host executor (asyncio's role), built on `async-task`, generic: wakes from any thread, alarms, shutdown of what it carries; `host::net` (std): its sockets · the structured-concurrency runtime (trio's role), riding any host through [`guest::Hooks`] |
//! | `embed` | crate-private: our host carrying a guest ([`Host::run_guest`](host::Host::run_guest), one guest per host, the typed handle `to_host` finds its host by) |
//! | [`to_host`] | the linked task pair between the two loops |
//! | `actor` (std) | subprocess actors over pipes: nurseries, contexts, streams, supervision |
//! | [`sim`] (std) · [`debug`] (std) | the whole actor tree in one thread, deterministic from a seed, with faults · debug mode and what it turns on: the live tree dump, crash reports, [`pause`](debug::pause) at a prompt |
//!
//! [`error`] is every layer's: one [`Error`] type.
//!
//! Without the default `std` feature the kernel core (`time`, `trace`, `wire`, `host`, `guest`,
//! `to_host`) builds as `#![no_std]` + `alloc` (`cargo build --no-default-features`): there is
//! no reactor then (a host polls its queue while it waits, and needs a clock from
//! [`HostBuilder::clock`](host::HostBuilder::clock)), and no thread-locals, so the "current
//! loop" slots are globals and the kernel assumes one kernel thread.
//!
//! The optional `tracing` feature (off by default; with or without `std`) emits `tracing`
//! events and spans for the life of tasks, scopes, linked pairs, actors and frame errors (the
//! README's "Seeing what the runtime does" lists them); without it none of that is compiled.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, clippy::undocumented_unsafe_blocks)]

extern crate alloc;

#[cfg(feature = "std")]
pub mod actor;
mod cx;
#[cfg(feature = "std")]
pub mod debug;
mod embed;
pub mod error;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub mod guest;
pub mod host;
mod log;
#[cfg(feature = "std")]
mod panic;
#[cfg(feature = "std")]
pub mod reactor;
#[cfg(feature = "std")]
pub mod sim;
mod sync;
pub mod time;
mod timers;
pub mod to_host;
pub mod trace;
pub mod wire;

pub use error::{Cancelled, Error, ErrorGroup, Result};
