//! What the debugging examples share: how they print an outcome, one line each, so that a
//! test on a terminal (`tests/debugging.rs`) can read it.

use std::fmt::Debug;

use infect::Error;

/// `returned <value>` or `failed: <kind>` (a remote error's boxed kind, as its caller sees it).
pub fn outcome<T: Debug>(r: &infect::Result<T>) -> String {
    match r {
        Ok(v) => format!("returned {v:?}"),
        Err(e) => format!("failed: {}", kind(e)),
    }
}

/// The kind of `e`, or of the remote error inside it.
pub fn kind(e: &Error) -> String {
    e.remote().map_or_else(|| e.kind().to_owned(), |r| r.boxed_type.clone())
}
