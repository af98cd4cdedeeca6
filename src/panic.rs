//! Panics at task boundaries (std): catch an unwinding panic where a task ends and turn it into
//! [`Error::Panic`] with its message and location.
//!
//! - [`catch`] wraps a task's future: a panic that unwinds out of one of its polls ends the
//!   future with `Err(Error::Panic { message, location })` instead of unwinding into the
//!   executor. The message is the payload (a `&str` or `String`; otherwise a placeholder).
//! - The location is only known to the panic hook, so [`note`] (called by a hook, see
//!   `actor::child`) records it per thread; [`catch`] takes it. Without such a hook the
//!   location is `None`.
//! - Under `panic = "abort"` nothing unwinds: the hook is the last code that runs, and
//!   [`catch`] is never reached (the actor's hook reports the panic to its parent instead).

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, PanicHookInfo};

use futures::FutureExt;

use crate::{Error, Result};

thread_local! {
    /// The location of the last panic on this thread, from [`note`], until [`catch`] takes it.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records a panic's location for [`catch`] (call it from a panic hook).
pub(crate) fn note(info: &PanicHookInfo<'_>) {
    let loc = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    LOCATION.with(|c| *c.borrow_mut() = loc);
}

/// The message of a panic payload.
pub(crate) fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<a panic payload that is not a string>".to_owned()
    }
}

/// The [`Error::Panic`] a hook's view of a panic stands for.
pub(crate) fn hook_error(info: &PanicHookInfo<'_>) -> Error {
    Error::Panic {
        message: payload_message(info.payload()),
        location: info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())),
    }
}

/// Runs `fut`, turning a panic that unwinds out of it into `Err(Error::Panic)`.
pub(crate) fn catch<T>(fut: impl Future<Output = Result<T>>) -> impl Future<Output = Result<T>> {
    AssertUnwindSafe(fut).catch_unwind().map(|r| match r {
        Ok(out) => out,
        Err(payload) => Err(Error::Panic {
            message: payload_message(&*payload),
            location: LOCATION.with(|c| c.borrow_mut().take()),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_panic_is_an_error_with_its_message() {
        // No hook recorded a location here: it is `None`, the message is the payload.
        LOCATION.with(|c| c.borrow_mut().take());
        // (The default hook prints both panics to stderr.)
        let r: Result<()> = catch(async { panic!("boom {}", 7) }).now_or_never().expect("ready");
        let s: Result<()> = catch(async { std::panic::panic_any(3u8) }).now_or_never().expect("ready");
        assert_eq!(r, Err(Error::Panic { message: "boom 7".into(), location: None }));
        assert_eq!(r.unwrap_err().kind(), "Panic");
        let Err(Error::Panic { message, .. }) = s else { panic!("{s:?}") };
        assert_eq!(message, "<a panic payload that is not a string>");
    }
}
