//! Actors started through a launcher ([`ActorOpts::launcher`](super::ActorOpts::launcher)):
//! `ssh host`, `srun`, `kubectl exec -i`, or any command that runs its arguments as a program
//! whose stdin and stdout it relays.
//!
//! How it works, end to end:
//! 1. **Spawn.** The parent runs `launcher... program LAUNCHED_ARG` (a direct `fork` + `execve`
//!    with the usual hygiene and parent-death signal) with three pipes as its stdin, stdout and
//!    stderr. No environment variable is involved: `ssh host a b` runs `a b` through the remote
//!    user's shell with the remote environment, so only the arguments reach the program, and
//!    the trailing [`LAUNCHED_ARG`] is what tells `actor::main` it is a launched child.
//! 2. **The child's descriptors.** Seeing that last argument, the child's runtime moves its
//!    stdin and stdout (the launcher's pipes, or whatever the launcher relays them through)
//!    above the standard numbers, close-on-exec, and points stdin at `/dev/null` and stdout at
//!    stderr: the frames travel on the moved descriptors only, so nothing the program prints can
//!    corrupt them, and its own children inherit nothing of them. From there it is a child like
//!    any other: `SpawnSpec`, `Aid`, the dialog, the same connection code.
//! 3. **Stderr** stays a diagnostic channel: the parent forwards everything the launcher writes
//!    there (its own messages, the remote program's stderr) to its own stderr as it arrives, and
//!    keeps the last line ([`StderrTail`]) to quote in the errors below.
//! 4. **Zombie safety across the launcher.** The ladder applies to the local launcher process
//!    (the graceful `Cancel{None}` travels through the pipe to the remote child first; `SIGTERM`
//!    and `SIGKILL` go to the launcher). The remote child takes end-of-file on its stdin as
//!    "parent gone" (the launcher exited, was killed, or lost its connection: ssh closes the
//!    remote command's stdin when its session ends) and exits within
//!    [`PARENT_GONE_GRACE`](super::PARENT_GONE_GRACE). A root that is killed outright takes its
//!    launchers with it (their parent-death signal, and end-of-file on their stdin), and so their
//!    remote children.
//! 5. **Errors.** A launcher that cannot be run, or that ends (with its program) before the
//!    handshake, gives [`Error::LaunchFailed`] (by exit status: 255 is ssh's own failure, 126/127
//!    the remote shell's "not found"); a program of another protocol version
//!    [`Error::ProtocolMismatch`]; a death after the handshake [`Error::ActorDied`] with the
//!    launcher's last stderr line; a launcher that hangs [`Error::StartTimeout`] (the bounded
//!    handshake).

use std::cell::{Cell, RefCell};
use std::ffi::{OsStr, OsString};
use std::future::poll_fn;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::rc::Rc;

use crate::error::LaunchFailure;
use crate::guest::{CancelScope, check_cancel};
use crate::reactor::fd::AsyncFd;
use crate::wire::PROTOCOL_MISMATCH_EXIT;
use crate::{Error, Result};

use super::peer::reactor;
use super::process::{self, Proc};
use super::sys::{self, os_err};

/// The last argument a launched child gets (`launcher... program --infect-actor-stdio`): it
/// tells [`actor::main`](super::main) to serve its parent over stdin and stdout. A program named
/// with [`ActorOpts::program`](super::ActorOpts::program) that parses its own arguments before
/// calling `actor::main` must let this one through.
pub const LAUNCHED_ARG: &str = "--infect-actor-stdio";

/// The longest stderr line kept for an error report, in bytes (a longer one is cut).
const MAX_LINE: usize = 512;

/// The launcher prefix as one string, its words joined by spaces (for error messages).
pub(crate) fn show(launcher: &[OsString]) -> String {
    let words: Vec<String> = launcher.iter().map(|w| w.to_string_lossy().into_owned()).collect();
    words.join(" ")
}

/// Spawns `launcher... program LAUNCHED_ARG` for actor `name`: the launcher's process and our
/// ends of its pipes, `(its stdout, its stdin, its stderr)` (see [`process::spawn_launched`]).
pub(crate) fn spawn(
    launcher: &[OsString],
    program: &Path,
    name: &str,
) -> Result<(Rc<RefCell<Proc>>, OwnedFd, OwnedFd, OwnedFd)> {
    process::spawn_launched(launcher, &show(launcher), program, OsStr::new(LAUNCHED_ARG), name)
}

/// Whether this process was started as a launched child: its last argument is
/// [`LAUNCHED_ARG`] (and it has a program name before it).
pub(crate) fn launched() -> bool {
    let mut args = std::env::args_os();
    args.len() >= 2 && args.next_back().is_some_and(|a| a == OsStr::new(LAUNCHED_ARG))
}

/// A launched child's frame pipes, `(from the parent, to the parent)`: its stdin and stdout,
/// moved above the standard numbers (close-on-exec), with stdin then pointed at `/dev/null`
/// and stdout at stderr.
pub(crate) fn take_stdio() -> Result<(OwnedFd, OwnedFd)> {
    let rx = sys::dup_above_stdio(0).map_err(|e| os_err("taking stdin as the parent pipe", e))?;
    let tx = sys::dup_above_stdio(1).map_err(|e| os_err("taking stdout as the parent pipe", e))?;
    sys::point_stdio_away().map_err(|e| os_err("redirecting stdin and stdout", e))?;
    Ok((rx, tx))
}

/// What the parent keeps of a launched child: the launcher (for messages), the last line of
/// its stderr, and the forwarder's stop scope.
pub(crate) struct Launched {
    /// The launcher prefix, shown.
    pub(crate) launcher: String,
    tail: RefCell<StderrTail>,
    /// Set when the launcher's stderr reached end-of-file (or the forwarder was stopped).
    done: Cell<bool>,
    /// Cancelled by the supervisor once the child is reaped and the bound passed: the forwarder
    /// stops even if someone else still holds the launcher's stderr.
    stop: CancelScope,
}

impl Launched {
    pub(crate) fn new(launcher: String) -> Launched {
        Launched {
            launcher,
            tail: RefCell::new(StderrTail::default()),
            done: Cell::new(false),
            stop: CancelScope::new(),
        }
    }

    /// The last non-empty line the launcher wrote to stderr (a last line without its newline
    /// counts once the stream ended).
    pub(crate) fn last_line(&self) -> Option<String> {
        self.tail.borrow().last(self.done.get())
    }

    /// Whether the forwarder is done.
    pub(crate) fn done(&self) -> bool {
        self.done.get()
    }

    /// Stops the forwarder.
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }

    /// The error for a launched child that ended before its handshake, exiting with `code`
    /// or killed by `signal`.
    pub(crate) fn failed(&self, actor: &str, code: Option<i32>, signal: Option<i32>) -> Error {
        Error::LaunchFailed {
            actor: actor.to_owned(),
            launcher: self.launcher.clone(),
            failure: LaunchFailure::from_exit(code, signal),
            code,
            signal,
            stderr: self.last_line(),
        }
    }
}

/// The last line of a byte stream, kept as it arrives (bounded: at most [`MAX_LINE`] bytes of
/// each line).
#[derive(Debug, Default)]
pub(crate) struct StderrTail {
    /// The last complete non-empty line.
    last: Option<String>,
    /// The line being written (no newline yet).
    partial: Vec<u8>,
}

impl StderrTail {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                if let Some(line) = line_of(&self.partial) {
                    self.last = Some(line);
                }
                self.partial.clear();
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            }
        }
    }

    /// The last non-empty line; with `ended`, an unfinished last line counts.
    pub(crate) fn last(&self, ended: bool) -> Option<String> {
        if ended && let Some(line) = line_of(&self.partial) {
            return Some(line);
        }
        self.last.clone()
    }
}

/// `bytes` as a line (lossy UTF-8, trimmed, `\r` dropped), `None` if blank.
fn line_of(bytes: &[u8]) -> Option<String> {
    let line = String::from_utf8_lossy(bytes);
    let line = line.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

/// The forwarder task: copies the launcher's stderr to ours as it arrives, keeping its last
/// line, until end-of-file or until the supervisor stops it; then calls `on_done`.
pub(crate) async fn forward_stderr(launched: Rc<Launched>, fd: OwnedFd, on_done: impl FnOnce()) {
    let stop = launched.stop.clone();
    let l = launched.clone();
    let _ = stop
        .run(async move {
            let fd = AsyncFd::new(fd, &reactor()?).map_err(|e| os_err("registering the launcher's stderr", e))?;
            let mut buf = vec![0u8; 4096];
            loop {
                let got = poll_fn(|cx| {
                    check_cancel()?;
                    fd.poll_read(cx, &mut buf).map_err(|e| os_err("read", e))
                })
                .await?;
                if got == 0 {
                    return Ok(());
                }
                l.tail.borrow_mut().push(&buf[..got]);
                // Diagnostics: ours is the only place they can go. A stderr we cannot write to
                // loses them, nothing else.
                let _ = std::io::stderr().write_all(&buf[..got]);
            }
        })
        .await;
    launched.done.set(true);
    on_done();
}

/// The error for a child that ended before its handshake, if it is more than a death:
/// [`Error::ProtocolMismatch`] when the child reported one (`report`) or exited with
/// [`PROTOCOL_MISMATCH_EXIT`]; [`Error::LaunchFailed`] for a launched child; `None` otherwise
/// (the caller reports an [`Error::ActorDied`]).
pub(crate) fn before_handshake(
    actor: &str,
    launched: Option<&Launched>,
    report: Option<String>,
    code: Option<i32>,
    signal: Option<i32>,
) -> Option<Error> {
    let stderr = launched.and_then(Launched::last_line);
    if report.is_some() || code == Some(PROTOCOL_MISMATCH_EXIT) {
        let report = report.or(stderr).unwrap_or_else(|| {
            format!("it exited with status {PROTOCOL_MISMATCH_EXIT} (EX_PROTOCOL) before its handshake")
        });
        return Some(Error::ProtocolMismatch { actor: actor.to_owned(), ours: crate::wire::PROTOCOL_VERSION, report });
    }
    launched.map(|l| l.failed(actor, code, signal))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tail keeps the last non-empty line, trimmed; an unfinished last line counts once the
    /// stream ended; long lines are cut at `MAX_LINE` bytes.
    #[test]
    fn the_tail_keeps_the_last_line() {
        let mut t = StderrTail::default();
        assert_eq!(t.last(true), None);
        t.push(b"Warning: something\r\nroot@127.0.0.1: Permission ");
        assert_eq!(t.last(false).as_deref(), Some("Warning: something"));
        t.push(b"denied (publickey).\n\n  \n");
        assert_eq!(t.last(false).as_deref(), Some("root@127.0.0.1: Permission denied (publickey)."));
        t.push(b"no newline");
        assert_eq!(t.last(false).as_deref(), Some("root@127.0.0.1: Permission denied (publickey)."));
        assert_eq!(t.last(true).as_deref(), Some("no newline"));
        t.push(b"\n");
        t.push(&[b'x'; 2000]);
        t.push(b"\n");
        assert_eq!(t.last(false).map(|l| l.len()), Some(MAX_LINE));
    }

    /// A mismatch report or exit status 76 is a `ProtocolMismatch`; a launched child's other
    /// early end a `LaunchFailed` classified by its status; a direct child's nothing more.
    #[test]
    fn early_ends_are_classified() {
        let l = Launched::new("ssh -p 2222 host".into());
        l.tail.borrow_mut().push(b"host: Permission denied (publickey).\n");
        match before_handshake("w", Some(&l), None, Some(255), None) {
            Some(Error::LaunchFailed {
                actor,
                launcher,
                failure: LaunchFailure::Launcher,
                code: Some(255),
                signal: None,
                stderr,
            }) => {
                assert_eq!((actor.as_str(), launcher.as_str()), ("w", "ssh -p 2222 host"));
                assert_eq!(stderr.as_deref(), Some("host: Permission denied (publickey)."));
            }
            other => panic!("{other:?}"),
        }
        match before_handshake("w", Some(&l), None, Some(76), None) {
            Some(Error::ProtocolMismatch { actor, ours, report }) => {
                assert_eq!((actor.as_str(), ours), ("w", crate::wire::PROTOCOL_VERSION));
                assert_eq!(report, "host: Permission denied (publickey).");
            }
            other => panic!("{other:?}"),
        }
        let said = before_handshake("w", None, Some("speaks 9".into()), Some(76), None);
        assert_eq!(
            said,
            Some(Error::ProtocolMismatch {
                actor: "w".into(),
                ours: crate::wire::PROTOCOL_VERSION,
                report: "speaks 9".into()
            })
        );
        assert_eq!(before_handshake("w", None, None, Some(1), None), None);
    }
}
