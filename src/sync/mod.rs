//! The crate's synchronisation building blocks, below both loops (crate-private): [`Waiters`],
//! the one list of parked wakers every infect await parks in, and [`broadcast`], the one cursor
//! ring behind every fan-out.

pub(crate) mod broadcast;
mod waiters;

pub(crate) use waiters::Waiters;
