//! The engine of the live tree dump and of crash reports (the public face is
//! [`infect::debug`](crate::debug)): it sits in the actor layer because the runtime itself
//! produces both, with no user code involved (a child answers its parent's `DumpRequest` from
//! its serving loop, an actor prints its subtree on `SIGUSR1`, an endpoint failure in debug mode
//! prints a report), and the actor layer may not name the `debug` module above it.
//!
//! The text is deterministic: no addresses and no wall-clock reading; tasks by spawn number,
//! scopes by entry number, children in spawn order, times on the loop's own clock (exact on a
//! [`VirtualClock`](crate::time::VirtualClock)). Process ids and descriptor numbers are what
//! they are.

use std::fmt::Write as _;
use std::panic::Location;
use std::rc::Rc;
use std::time::Duration;

use crate::guest::{self, GuestState, ScopeState, TaskState};
use crate::time::Instant;
use crate::wire::Msg;
use crate::{Error, Result};

use super::parent;

/// How long [`tree`] waits for the children's answers by default; each level below waits half
/// of what its parent waits.
pub(crate) const DUMP_WAIT: Duration = Duration::from_secs(2);

/// The longest a child waits for its own children when its parent asks for a dump.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// A time on the loop's clock: seconds, without trailing zeros (`3s`, `1.5s`, `0.000001s`).
fn secs(d: Duration) -> String {
    let (s, ns) = (d.as_secs(), d.subsec_nanos());
    if ns == 0 {
        return format!("{s}s");
    }
    let frac = format!("{ns:09}");
    format!("{s}.{}s", frac.trim_end_matches('0'))
}

fn at(l: Option<&'static Location<'static>>) -> String {
    match l {
        Some(l) => format!("{}:{}:{}", l.file(), l.line(), l.column()),
        None => "an await infect does not locate".to_owned(),
    }
}

/// Lists the calls an actor serves for its parent: id and `ns.func`.
pub(crate) type ServingCalls = Box<dyn Fn() -> Vec<(u64, String)>>;

std::thread_local! {
    /// The calls this actor serves for its parent, by id (set by the serving loop).
    static SERVING: std::cell::RefCell<Option<ServingCalls>> = const { std::cell::RefCell::new(None) };
}

/// Swaps this thread's source of the "serving" lines with `other` (a simulated world keeps one
/// per actor).
pub(crate) fn swap_serving(other: &mut Option<ServingCalls>) {
    SERVING.with(|s| std::mem::swap(&mut *s.borrow_mut(), other));
}

/// Makes `calls` the source of the "serving" lines (`None`: not serving).
pub(crate) fn set_serving(calls: Option<ServingCalls>) {
    SERVING.with(|s| *s.borrow_mut() = calls);
}

fn serving(out: &mut String) {
    let calls = SERVING.with(|s| s.borrow().as_ref().map(|f| f()));
    let Some(mut calls) = calls else { return };
    let parent = super::current_inner().and_then(|a| a.parent.clone()).map_or_else(String::new, |p| p.name);
    calls.sort();
    let list: Vec<String> = calls.iter().map(|(cid, what)| format!("#{cid} {what}")).collect();
    let list = if list.is_empty() { "no calls".to_owned() } else { list.join(", ") };
    let _ = writeln!(out, "  serving \"{parent}\": {list}");
}

/// This actor's header line: name, pid, modes.
fn header(out: &mut String) {
    match super::current_inner() {
        Some(a) => {
            let mut modes = Vec::new();
            if a.parent.is_none() {
                modes.push("root");
            }
            if a.infected {
                modes.push("infected");
            }
            if a.debug_mode.get() {
                modes.push("debug mode");
            }
            let modes = if modes.is_empty() { String::new() } else { format!(", {}", modes.join(", ")) };
            let _ = writeln!(out, "actor \"{}\" (pid {}{modes})", a.aid.name, a.aid.pid);
        }
        None => {
            let _ = writeln!(out, "no actor (pid {})", std::process::id());
        }
    }
}

/// The state of this process's loops, without its children's subtrees: the guest run (tasks,
/// nurseries, scopes), the host tasks, the linked pairs, the reactor's interests, and (in an
/// actor) the child actors as this parent sees them.
pub(crate) fn local() -> String {
    let mut out = String::new();
    header(&mut out);
    serving(&mut out);
    children(&mut out, &parent::live_children(), None);
    loops(&mut out);
    out
}

/// [`local`] with each child's own subtree dump (asked over its pipe, at most `wait` for the
/// answers, all children at once) below its line. A child that does not answer in time is
/// shown as such; the dump never waits longer than `wait` for it. `Err` only if the caller's
/// scope is cancelled meanwhile.
pub(crate) async fn tree(wait: Duration) -> Result<String> {
    let kids = parent::live_children();
    let mut answers: Vec<Option<String>> = vec![None; kids.len()];
    if !kids.is_empty() {
        let slots: Vec<Rc<std::cell::RefCell<Option<String>>>> =
            kids.iter().map(|_| Rc::new(std::cell::RefCell::new(None))).collect();
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        guest::open_nursery(async |n| {
            for (kid, slot) in kids.iter().zip(&slots) {
                let (kid, slot) = (kid.clone(), slot.clone());
                n.start_soon(async move {
                    let r = guest::move_on_after(wait, kid.request_dump(wait_ms / 2)).await;
                    if let Ok(Some(Some(text))) = r {
                        *slot.borrow_mut() = Some(text);
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })
        .await?
        .ok_or(Error::Cancelled)?;
        answers = slots.iter().map(|s| s.borrow_mut().take()).collect();
    }
    let mut out = String::new();
    header(&mut out);
    serving(&mut out);
    children(&mut out, &kids, Some((&answers, wait)));
    loops(&mut out);
    Ok(out)
}

/// The child actors' lines; with `answers`, each child's subtree (or why it is missing) below.
fn children(out: &mut String, kids: &[Rc<parent::ChildActor>], answers: Option<(&[Option<String>], Duration)>) {
    if kids.is_empty() {
        return;
    }
    let _ = writeln!(out, "  child actors:");
    for (i, kid) in kids.iter().enumerate() {
        let _ = writeln!(out, "    {}", kid.describe());
        if let Some((answers, wait)) = answers {
            match answers.get(i).cloned().flatten() {
                Some(text) => {
                    for line in text.lines() {
                        let _ = writeln!(out, "      {line}");
                    }
                }
                None => {
                    let _ = writeln!(out, "      (no dump: it did not answer within {})", secs(wait));
                }
            }
        }
    }
}

/// The guest run, the host's tasks, the linked pairs and the reactor.
fn loops(out: &mut String) {
    if let Some(g) = guest::snapshot() {
        guest_run(out, &g);
    }
    if let Some(tasks) = crate::host::snapshot()
        && !tasks.is_empty()
    {
        let _ = writeln!(out, "  host tasks:");
        for t in tasks {
            let mut line = format!("    host task {}", t.id);
            if t.running {
                line.push_str(": running (taking this dump)");
            } else {
                let _ = write!(line, ": waits at {}", at(t.waits_at));
            }
            if let Some(reason) = t.cancel {
                let _ = write!(line, ", cancel requested ({reason:?})");
            }
            let _ = writeln!(out, "{line}");
        }
    }
    let links = crate::to_host::snapshot();
    if !links.is_empty() {
        let _ = writeln!(out, "  linked pairs:");
        for l in links {
            let kind = if l.channel { "open_channel_from" } else { "run_task" };
            let mut line = format!(
                "    pair {} ({kind}): {:?}, in flight {} to host, {} to guest",
                l.number, l.phase, l.in_flight.0, l.in_flight.1
            );
            if let Some(end) = l.host_end {
                let _ = write!(line, ", host {}", host_end(&end));
            }
            let _ = writeln!(out, "{line}");
        }
    }
    if let Some(r) = crate::reactor::Reactor::current() {
        let interests = r.waiting_interests();
        if !interests.is_empty() {
            let _ = writeln!(out, "  reactor interests:");
            for (fd, read) in interests {
                let _ = writeln!(out, "    fd {fd} {}", if read { "readable" } else { "writable" });
            }
        }
    }
}

fn host_end(end: &crate::to_host::translate::HostEnd) -> String {
    use crate::to_host::translate::HostEnd;
    match end {
        HostEnd::Returned => "returned".to_owned(),
        HostEnd::Failed(e) => format!("failed: {e}"),
        HostEnd::Cancelled { reason } => format!("cancelled ({reason:?})"),
    }
}

/// The guest run: its tasks nested under the nursery scopes they run in, each task's own scopes
/// below it.
fn guest_run(out: &mut String, g: &GuestState) {
    let _ = writeln!(out, "  guest (now {}, {} tasks):", secs(g.now - Instant::ZERO), g.tasks.len());
    let mut shown = vec![false; g.tasks.len()];
    // The tasks started in the run's root scope (the main task), then any whose scope is not
    // live any more (none, with nurseries).
    for (i, t) in g.tasks.iter().enumerate() {
        if t.scope == 0 || !g.scopes.iter().any(|s| s.id == t.scope) {
            task(out, g, t, 2, &mut shown);
            shown[i] = true;
        }
    }
}

fn task(out: &mut String, g: &GuestState, t: &TaskState, depth: usize, shown: &mut [bool]) {
    let pad = "  ".repeat(depth);
    let name = if t.main { format!("task {} (main)", t.number) } else { format!("task {}", t.number) };
    let state =
        if t.running { "running (taking this dump)".to_owned() } else { format!("waits at {}", at(t.waits_at)) };
    let raise = if t.error_waiting { ", an error delivered to it waits" } else { "" };
    let _ = writeln!(out, "{pad}{name}: {state}{raise}");
    // Its own outermost scopes: entered by it, inside the scope it was started in.
    for s in g.scopes.iter().filter(|s| s.owner == t.number && s.parent == t.scope) {
        scope(out, g, s, depth + 1, shown);
    }
}

/// A scope with nothing to show (no nursery, deadline or shield, not cancelled) is left out:
/// what is inside it is shown in its place.
fn scope(out: &mut String, g: &GuestState, s: &ScopeState, depth: usize, shown: &mut [bool]) {
    let plain = s.nursery_at.is_none()
        && s.deadline == Instant::NEVER
        && !s.shield
        && !s.cancel_called
        && !s.effectively_cancelled;
    let inner_depth = if plain { depth } else { depth + 1 };
    if !plain {
        scope_line(out, g, s, depth);
    }
    // Inside it: the owner's next scopes, and the tasks started in it.
    for inner in g.scopes.iter().filter(|i| i.parent == s.id && i.owner == s.owner) {
        scope(out, g, inner, inner_depth, shown);
    }
    for (i, t) in g.tasks.iter().enumerate() {
        if t.scope == s.id && !shown[i] {
            shown[i] = true;
            task(out, g, t, inner_depth, shown);
        }
    }
}

fn scope_line(out: &mut String, g: &GuestState, s: &ScopeState, depth: usize) {
    let pad = "  ".repeat(depth);
    let mut line = match s.nursery_at {
        Some(l) => {
            let kids = g.tasks.iter().filter(|t| t.scope == s.id).count();
            format!("nursery (scope {}) opened at {}:{}:{}, {kids} children", s.id, l.file(), l.line(), l.column())
        }
        None => format!("scope {}", s.id),
    };
    if s.deadline != Instant::NEVER {
        let now = g.now;
        let left = if s.deadline > now { format!("in {}", secs(s.deadline - now)) } else { "passed".to_owned() };
        let _ = write!(line, ", deadline {} ({left})", secs(s.deadline - Instant::ZERO));
    }
    if s.shield {
        line.push_str(", shielded");
    }
    if s.cancel_called {
        line.push_str(if s.by_deadline { ", cancelled by its deadline" } else { ", cancel called" });
    } else if s.effectively_cancelled {
        line.push_str(", cancelled from outside");
    }
    let _ = writeln!(out, "{pad}{line}");
}

/// Cuts `text` to fit a `DumpReply` frame of `max_frame` bytes (COBS adds a byte per 254, the
/// message a few more), at a line end, with a marker.
pub(crate) fn fit(mut text: String, max_frame: usize) -> String {
    let room = max_frame.saturating_sub(max_frame / 254 + 48);
    if text.len() <= room {
        return text;
    }
    const CUT: &str = "  (cut: the dump did not fit a frame)\n";
    let mut end = room.saturating_sub(CUT.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end = text[..end].rfind('\n').map_or(0, |i| i + 1);
    text.truncate(end);
    text.push_str(CUT);
    text
}

/// The reply to a parent's `DumpRequest`: this subtree, waiting `wait_ms` for the children.
pub(crate) async fn reply(id: u64, wait_ms: u64, max_frame: usize) -> Result<Msg> {
    match ENGINE.get() {
        Some(engine) => (engine.reply)(id, wait_ms, max_frame).await,
        None => Ok(Msg::DumpReply { id, text: NOT_ENABLED_LINE.to_owned() }),
    }
}

async fn reply_installed(id: u64, wait_ms: u64, max_frame: usize) -> Result<Msg> {
    // A parent's wait is its own business, but ours stays sane (a deadline must not overflow).
    let wait = Duration::from_millis(wait_ms).min(MAX_WAIT);
    let text = tree(wait).await?;
    Ok(Msg::DumpReply { id, text: fit(text, max_frame) })
}

/// The engine behind the dump, as the runtime reaches it: only through this, once installed
/// ([`install`]), so that a program that never enables the debug layer does not link the
/// engine at all (its `release-min` binary does not grow).
struct Engine {
    tree: fn(Duration) -> Boxed<Result<String>>,
    reply: fn(u64, u64, usize) -> Boxed<Result<Msg>>,
    crash: fn(String, Error) -> Boxed<String>,
}

/// A future of the engine's, boxed.
type Boxed<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T>>>;

static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();

/// Enables the dump engine and the terminal lock's relay ([`tty_lock::install`](super::tty_lock::install))
/// in this process (idempotent): `debug::enable`, `RootOpts::debug_mode` and the `debug`
/// functions call it.
pub(crate) fn install() {
    super::tty_lock::install();
    ENGINE.get_or_init(|| Engine {
        tree: |wait| Box::pin(tree(wait)),
        reply: |id, wait_ms, max_frame| Box::pin(reply_installed(id, wait_ms, max_frame)),
        crash: |what, e| Box::pin(async move { crash_report(&what, &e).await }),
    });
}

/// What a process without the engine says instead of its dump.
const NOT_ENABLED_LINE: &str = "(no dump: this program does not enable the debug layer; see infect::debug::enable)\n";

/// The marked block [`print_tree`] prints.
pub(crate) fn marked(text: &str) -> String {
    format!("======== infect dump ========\n{text}======== end of dump ========\n")
}

/// Prints this subtree's dump to stderr (on `SIGUSR1`), in one write.
pub(crate) async fn print_tree() -> Result<()> {
    match ENGINE.get() {
        Some(engine) => eprint(&marked(&(engine.tree)(DUMP_WAIT).await?)),
        None => eprint(NOT_ENABLED_LINE),
    }
    Ok(())
}

/// Writes `text` to stderr in one call (so that actors sharing the terminal do not interleave
/// within it), ignoring errors.
pub(crate) fn eprint(text: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// The crash report of this actor for `e` (debug mode): a marked block with the actor's name,
/// what failed, the error chain and the subtree dump.
pub(crate) async fn crash_report(what: &str, e: &Error) -> String {
    let name = super::current_inner().map_or_else(|| "?".to_owned(), |a| a.aid.name.clone());
    let mut out = format!("======== infect crash report: actor \"{name}\" ========\n{what} failed\n");
    let _ = writeln!(out, "error: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let _ = writeln!(out, "caused by: {s}");
        source = s.source();
    }
    out.push_str("-------- dump --------\n");
    // Shielded: the failure may already be cancelling what is around us.
    match guest::CancelScope::shielded().run(tree(DUMP_WAIT)).await {
        Ok(Some(text)) => out.push_str(&text),
        Ok(None) => {}
        Err(e) => {
            let _ = writeln!(out, "(no dump: {e})");
        }
    }
    let _ = writeln!(out, "======== end of crash report: actor \"{name}\" ========");
    out
}

/// In debug mode, prints the crash report of this actor for `e` to stderr (nothing for a
/// cancellation, which is no crash).
///
/// The report is the engine's: a process in debug mode without it (its program sets debug
/// mode only through `ActorOpts::debug_mode`, and enables the debug layer nowhere in `main`)
/// prints the error alone, on one marked line.
pub(crate) async fn report_crash(what: &str, e: &Error) {
    if !super::current_debug_mode() || e.is_cancelled() {
        return;
    }
    match ENGINE.get() {
        Some(engine) => eprint(&(engine.crash)(what.to_owned(), e.clone()).await),
        None => eprint(&format!("======== infect crash: {what} failed: {e} ========\n{NOT_ENABLED_LINE}")),
    }
}

#[cfg(test)]
mod tests {
    use super::{fit, secs};
    use std::time::Duration;

    #[test]
    fn times_are_seconds_without_trailing_zeros() {
        assert_eq!(secs(Duration::from_secs(3)), "3s");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5s");
        assert_eq!(secs(Duration::from_nanos(1_000)), "0.000001s");
    }

    /// A dump that does not fit a frame is cut at a line end, marked, and then fits.
    #[test]
    fn a_long_dump_is_cut_to_fit_its_frame() {
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(fit(text.clone(), 64 * 1024), text);
        let cut = fit(text.clone(), 256);
        assert!(cut.len() <= 256 - 48, "{}", cut.len());
        assert!(cut.ends_with("  (cut: the dump did not fit a frame)\n"));
        let kept = cut.trim_end_matches("  (cut: the dump did not fit a frame)\n");
        assert!(text.starts_with(kept) && kept.ends_with('\n'));
        let frame = crate::wire::encode_frame(&crate::wire::Msg::DumpReply { id: 1, text: cut }, 256);
        assert!(frame.is_ok());
    }
}
