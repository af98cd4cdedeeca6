//! [`pause`]: a breakpoint for an actor tree in debug mode (tractor's `tractor.pause()`).
//!
//! In order, for a call of `pause().await` (from a guest task, or a host task of an infected
//! actor):
//! 1. outside debug mode: `Err(NotDebugMode)` at once, nothing else happens;
//! 2. open the controlling terminal `/dev/tty`: without one, `Err(NoTerminal)` at once;
//! 3. take the **tree's terminal lock**: the request travels up the parent chain to the root,
//!    which queues it (FIFO, one holder) and grants it down the same chain; until the release,
//!    every actor between the root and this one holds back its reaping ladder for the child
//!    it leads to (the graceful rung waits, no `SIGTERM`/`SIGKILL`) and ignores `SIGINT`
//!    (tractor's issue #320: a paused grandchild killed by an ancestor). The wait is a
//!    cancellation point (a cancelled wait withdraws the request);
//! 4. switch the terminal to raw mode, show the banner (actor, pid, the `pause()` call's
//!    source location) and read commands; the actor's thread is blocked meanwhile, like a
//!    Python actor in `pdb`;
//! 5. restore the terminal, release the lock (the next actor in the queue gets it), and return
//!    as the command says.

use core::future::Future;
use core::panic::Location;
use std::io::Write;
use std::time::Duration;

use crate::actor::tty_lock;
use crate::guest::TaskRef;
use crate::{Error, Result};

use super::tty::Tty;

/// Which side of the actor called `pause()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Guest,
    Host,
}

/// What the prompt ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Continue,
    Cancel,
    Quit,
}

/// Pauses the calling task at a prompt on the controlling terminal, in debug mode.
///
/// Works from guest tasks of every actor and from host tasks of an infected actor (the same
/// future on both sides). Debug mode is [`RootOpts::debug_mode`](crate::actor::RootOpts::debug_mode)
/// (tree-wide) or [`ActorOpts::debug_mode`](crate::actor::ActorOpts::debug_mode).
///
/// The prompt first prints a banner naming the actor, its pid and the source location of the
/// `pause()` call (`-- pause: actor 'worker' (pid 4242) at src/main.rs:12:9 --`), then reads
/// commands (`(pause worker) ` is the prompt):
///
/// | command | what it does | `pause()` returns |
/// |---|---|---|
/// | `c`, `continue` (or Ctrl-D on an empty line, or the terminal closing) | resume | `Ok(())` |
/// | `where` | the actor, its pid and parent, the location, the side (guest or host task) | stays |
/// | `tree` | this actor's state ([`dump`](super::dump)) | stays |
/// | `attach` | allows any process of the user to `ptrace` this one (`PR_SET_PTRACER_ANY`) and prints `gdb -p <pid>` to run from another terminal | stays |
/// | `cancel` | cancels this actor's work: in a child, every call it serves (each ends at its caller as `ContextCancelled` with this actor as canceller); in the root, the root future | `Err(Cancelled)` |
/// | `quit` | cancels the whole tree, as Ctrl-C in the root would (the root sees [`Error::Interrupted`]; a root that fails with it exits 130) | the cancellation that reaches the caller (`Err(Interrupted)`, `Err(Cancelled)`, ...), once it does |
/// | `help` | the commands | stays |
///
/// Ctrl-C at the prompt belongs to the prompt (the terminal is in raw mode: it sends no
/// `SIGINT` to the tree): it prints `^C` and a reminder, and the prompt goes on. Other actors
/// that pause meanwhile wait for the lock in arrival order (FIFO) and get the terminal when
/// this prompt closes.
///
/// # Errors
/// - [`Error::NotDebugMode`] outside debug mode (or outside an actor runtime): a `pause()` left
///   in code that runs without debug mode is refused, clearly, and pauses nothing. Ignore it
///   (`let _ = debug::pause().await;`) to make it a no-op there.
/// - [`Error::NoTerminal`] when the process has no controlling terminal (`/dev/tty` does not
///   open): nothing is paused, no lock is taken.
/// - [`Error::OutsideSimulation`] inside a [simulated world](crate::sim), which has no terminal.
/// - A cancellation while waiting for the lock (the request is withdrawn), and the outcomes of
///   `cancel` and `quit` above.
///
/// ```no_run
/// use infect::actor::{self, Endpoints, RootOpts};
/// use infect::debug;
///
/// fn main() -> infect::Result<()> {
///     actor::run_with(RootOpts::new().debug_mode(true), Endpoints::new(), async {
///         println!("before");
///         debug::pause().await?; // the prompt: type c
///         println!("after");
///         Ok(())
///     })
/// }
/// ```
///
/// Outside debug mode:
///
/// ```
/// use infect::actor::{self, Endpoints};
/// use infect::{Error, debug};
///
/// let r = actor::run(Endpoints::new(), async { debug::pause().await });
/// assert_eq!(r, Err(Error::NotDebugMode));
/// ```
#[track_caller]
pub fn pause() -> impl Future<Output = Result<()>> {
    let at = Location::caller();
    async move { pause_at(at).await }
}

/// The root only: the names of the actors holding (first) and waiting for the tree's terminal
/// lock, in order; empty elsewhere, or when nobody paused.
///
/// ```
/// use infect::actor::{self, Endpoints, RootOpts};
/// use infect::debug;
///
/// let q = actor::run_with(RootOpts::new().debug_mode(true), Endpoints::new(), async { Ok(debug::terminal_queue()) });
/// assert_eq!(q, Ok(Vec::<String>::new()));
/// ```
pub fn terminal_queue() -> Vec<String> {
    tty_lock::queue()
}

async fn pause_at(at: &'static Location<'static>) -> Result<()> {
    if !super::is_debug_mode() {
        return Err(Error::NotDebugMode);
    }
    if crate::cx::in_simulation() {
        // A simulated world has no terminal of its own, and must not block on the real one.
        return Err(Error::OutsideSimulation { what: "debug::pause() (a prompt on the real terminal)".into() });
    }
    let tty = Tty::open()?;
    let side = if TaskRef::current().is_some() { Side::Guest } else { Side::Host };
    let lock = tty_lock::acquire().await?;
    // The prompt owns the terminal (and the thread) from here until it returns; the terminal is
    // restored before the lock goes to the next actor.
    let then = prompt(&tty, at, side);
    // A SIGINT that came while the thread was blocked at the prompt was the prompt's.
    crate::actor::signals::drop_pending_interrupts();
    match then {
        Ok(Then::Continue) => {
            lock.release(false).await;
            Ok(())
        }
        Ok(Then::Cancel) => {
            tty_lock::cancel_work();
            lock.release(false).await;
            Err(Error::Cancelled)
        }
        Ok(Then::Quit) => {
            lock.release(true).await;
            cancelled(side).await
        }
        Err(e) => {
            lock.release(false).await;
            Err(e)
        }
    }
}

/// Waits until a cancellation reaches the caller (after `quit`), and returns it.
async fn cancelled(side: Side) -> Result<()> {
    match side {
        Side::Guest => crate::guest::sleep_forever().await,
        Side::Host => loop {
            crate::host::sleep(Duration::from_secs(3600)).await?;
        },
    }
}

const HELP: &str = "\
commands:
  c, continue   resume the paused task (also Ctrl-D on an empty line)
  where         this actor, its pid and parent, and where it paused
  tree          this actor's state (debug::dump)
  attach        allow a native debugger to attach, and print its command
  cancel        cancel this actor's work, then resume with Err(Cancelled)
  quit          cancel the whole tree (as Ctrl-C in the root would)
  help          this list
Ctrl-C belongs to this prompt while it is open.
";

/// Shows the banner and reads commands until one ends the prompt. Blocking.
fn prompt(tty: &Tty, at: &Location<'_>, side: Side) -> Result<Then> {
    let me = crate::actor::current_actor();
    let (name, pid) = (me.name().to_owned(), std::process::id());
    // What the program printed before the pause comes before the banner.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let _raw = tty.raw()?;
    tty.write(&format!(
        "\n-- pause: actor '{name}' (pid {pid}) at {}:{}:{} --\ntype c to continue, help for the commands\n",
        at.file(),
        at.line(),
        at.column()
    ));
    loop {
        tty.write(&format!("(pause {name}) "));
        let line = match read_line(tty) {
            Line::Text(l) => l,
            Line::Interrupt => {
                tty.write("(Ctrl-C belongs to this prompt while it is open: c continues, quit cancels the tree)\n");
                continue;
            }
            Line::End => {
                tty.write("\n-- the terminal closed: continuing --\n");
                return Ok(Then::Continue);
            }
        };
        match line.trim() {
            "" => {}
            "c" | "cont" | "continue" => return Ok(Then::Continue),
            "cancel" => return Ok(Then::Cancel),
            "q" | "quit" => return Ok(Then::Quit),
            "where" | "w" => {
                let parent = me
                    .parent()
                    .map_or_else(|| "none: the root".to_owned(), |p| format!("'{}' (pid {})", p.name, p.pid));
                let task = match side {
                    Side::Guest => "a guest task",
                    Side::Host => "a host task",
                };
                tty.write(&format!(
                    "actor '{name}' (pid {pid}), parent {parent}\npaused at {}:{}:{} in {task}\n",
                    at.file(),
                    at.line(),
                    at.column()
                ));
            }
            "tree" => tty.write(&super::dump()),
            "attach" => tty.write(&attach(pid)),
            "h" | "help" | "?" => tty.write(HELP),
            other => tty.write(&format!("unknown command '{other}': help lists the commands\n")),
        }
    }
}

/// Allows any process of this user to `ptrace` this one (Yama's `PR_SET_PTRACER_ANY`) and says
/// how to attach.
fn attach(pid: u32) -> String {
    // From linux/prctl.h (the libc crate has them for Android only).
    const PR_SET_PTRACER: libc::c_int = 0x5961_6d61;
    const PR_SET_PTRACER_ANY: libc::c_ulong = !0;
    // SAFETY: `prctl(PR_SET_PTRACER, ..)` takes integers only.
    let r = unsafe { libc::prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0) };
    let allowed = if r == 0 {
        "ptrace by any process of this user is allowed now (PR_SET_PTRACER_ANY)".to_owned()
    } else {
        format!("PR_SET_PTRACER failed ({}): ptrace rules unchanged", std::io::Error::last_os_error())
    };
    format!(
        "{allowed}; from another terminal:\n    gdb -p {pid}\nthis actor stays paused at this prompt meanwhile: type c here when done\n"
    )
}

/// One line read at the prompt.
enum Line {
    Text(String),
    /// Ctrl-C.
    Interrupt,
    /// Ctrl-D on an empty line, or the terminal is gone.
    End,
}

/// The longest line the prompt takes; longer input is ignored past it.
const MAX_LINE: usize = 256;

/// Reads a line in raw mode with a minimal line editor: printable bytes are echoed, backspace
/// erases, Enter ends the line, Ctrl-C abandons it, escape sequences (arrow keys) are skipped.
fn read_line(tty: &Tty) -> Line {
    let mut line: Vec<u8> = Vec::new();
    loop {
        let Some(b) = tty.read_byte() else { return Line::End };
        match b {
            b'\r' | b'\n' => {
                tty.write("\n");
                return Line::Text(String::from_utf8_lossy(&line).into_owned());
            }
            0x03 => {
                tty.write("^C\n");
                return Line::Interrupt;
            }
            0x04 if line.is_empty() => {
                tty.write("\n");
                return Line::End;
            }
            0x7f | 0x08 if !line.is_empty() => {
                line.pop();
                tty.write("\x08 \x08");
            }
            0x1b => skip_escape(tty),
            // Commands are ASCII: other bytes are ignored.
            b if (0x20..0x7f).contains(&b) && line.len() < MAX_LINE => {
                line.push(b);
                let mut buf = [0u8; 4];
                tty.write(char::from(b).encode_utf8(&mut buf));
            }
            _ => {}
        }
    }
}

/// Skips the rest of an escape sequence (`ESC [ ... final` or `ESC O x`).
fn skip_escape(tty: &Tty) {
    match tty.read_byte() {
        Some(b'[') => {
            while let Some(b) = tty.read_byte() {
                if (0x40..=0x7e).contains(&b) {
                    break;
                }
            }
        }
        Some(b'O') => {
            let _ = tty.read_byte();
        }
        _ => {}
    }
}
