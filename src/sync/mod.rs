//! The crate's synchronisation building blocks, below both loops (crate-private): [`Waiters`],
//! the one list of parked wakers every infect await parks in, and [`broadcast`], the one cursor
//! ring behind every fan-out; [`VecMap`], the small ordered map over a sorted `Vec` the actor
//! layer's per-connection tables use.

pub(crate) mod broadcast;
#[cfg(feature = "std")]
mod vec_map;
mod waiters;

#[cfg(feature = "std")]
pub(crate) use vec_map::VecMap;
pub(crate) use waiters::Waiters;
