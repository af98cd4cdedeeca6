//! The crate's synchronisation building blocks, below both loops (crate-private): [`Waiters`],
//! the one list of parked wakers every infect await parks in.

mod waiters;

pub(crate) use waiters::Waiters;
