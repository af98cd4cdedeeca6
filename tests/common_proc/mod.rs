//! Helpers shared by the process tests (`tests/actors.rs`, `tests/infected.rs`): each of those
//! binaries is its own actor binary (`harness = false`) and runs its cases through
//! [`run_cases`], which prints one line per case and checks after each that nothing was left
//! behind (no child process, running or zombie; the same open descriptors as before).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::future::Future;
use std::io::BufRead;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use infect::actor;
use infect::guest;
use infect::{Error, Result};

/// A case's outcome: `Err(why)` when it failed.
pub type Check = std::result::Result<(), String>;

/// Fails the case with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}

/// One case: its name and its future.
pub type Case = (&'static str, fn() -> Pin<Box<dyn Future<Output = Check>>>);

/// Makes the list of [`Case`]s from async functions returning [`Check`].
macro_rules! cases {
    ($($f:ident),* $(,)?) => {
        vec![$((stringify!($f), (|| Box::pin($f()) as std::pin::Pin<Box<dyn std::future::Future<Output = Check>>>) as fn() -> _)),*]
    };
}

/// This process's pid.
pub fn us() -> u32 {
    std::process::id()
}

/// `(pid, state)` of every process whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = rest.next().and_then(|p| p.parse::<u32>().ok()).unwrap_or(0);
        if ppid == parent {
            out.push((pid, state));
        }
    }
    out.sort_unstable();
    out
}

/// The state letter of process `pid` (`R`, `S`, `Z`, ...) from `/proc/<pid>/stat`, `None` if
/// there is no such process.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ...": comm may hold spaces and parentheses.
    stat[stat.rfind(')')? + 1..].split_whitespace().next()?.chars().next()
}

/// The descriptors this process has open.
pub fn open_fds() -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// This process's resident set, in KiB.
pub fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4
}

/// Whether process `pid` is gone: reaped (by us, a subreaper, if it was re-parented to us) or
/// not present at all.
pub fn gone(pid: u32) -> bool {
    let _ = actor::testing::reap_nohang(pid);
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: `kill` takes no pointers; `pid` is a process this test started and has not reaped.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// A path in the temporary directory, unique to this process and `tag`.
pub fn temp_path(prefix: &str, tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}-{}-{tag}", us()))
}

/// The remote error inside `e`, or why there is none.
pub fn remote(e: &Error) -> std::result::Result<&infect::error::RemoteActorError, String> {
    e.remote().ok_or_else(|| format!("expected a remote error, got {e:?}"))
}

/// Polls `cond` every 5 ms (guest sleeps) until it holds or `limit` passed.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        let _ = guest::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

/// `Ok(())` if `c`, else an `Assertion` error (for use inside actor blocks, which return
/// [`infect::Result`]).
pub fn ensure_ok(c: bool) -> Result<()> {
    if c { Ok(()) } else { Err(Error::msg("Assertion", "assertion failed")) }
}

/// Runs this binary again as a separate root in `role` (`<var>=role`), stdout piped.
pub fn sub_root(var: &str, role: &str) -> std::io::Result<std::process::Child> {
    Command::new(std::env::current_exe()?)
        .env(var, role)
        .env("ACTORS_TEST_DIR", std::env::temp_dir())
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
}

/// Reads `pid N` lines from a sub-root until `n` pids were seen (blocking; the sub-root prints
/// them within a second).
pub fn read_pids(out: &mut impl BufRead, n: usize) -> Vec<u32> {
    let mut pids = Vec::new();
    let mut line = String::new();
    while pids.len() < n {
        line.clear();
        match out.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Some(p) = line.trim().strip_prefix("pid ") {
                    pids.extend(p.parse::<u32>().ok());
                }
            }
        }
    }
    pids
}

/// Whether this run forces the pidfd-less exit detection (the test-only switch
/// `INFECT_TEST_NO_PIDFD=1`).
pub fn no_pidfd() -> bool {
    std::env::var("INFECT_TEST_NO_PIDFD").is_ok_and(|v| v == "1")
}

/// Where the pidfd-less fallback is forced, starts and cancels one actor with `opts`: the first
/// spawn opens the fallback's `SIGCHLD` self-pipe (kept for the process), which must happen
/// before the cases, as they check that their descriptors are unchanged. Elsewhere nothing.
pub async fn warm_up_pidfd_fallback(opts: infect::actor::ActorOpts) -> Result<()> {
    if no_pidfd() {
        actor::open_nursery(async |an| an.start_actor("warm-up", opts).await?.cancel_actor().await)
            .await
            .and_then(|v| v.ok_or(Error::Cancelled))?;
        ensure_ok(actor::testing::pidfd_fallback_in_use())?;
    }
    Ok(())
}

/// Runs the cases whose names contain one of the command-line filters (all without filters),
/// each within `limit`, printing `ok`/`FAIL` lines; after each, checks that no child process
/// is left and the open descriptors are the same as before. Returns `(passed, failed)`.
pub async fn run_cases(all: Vec<Case>, limit: Duration) -> (usize, usize) {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, case) in all {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let fds = open_fds();
        let t0 = Instant::now();
        let outcome = match guest::fail_after(limit, async { Ok(case().await) }).await {
            Ok(r) => r,
            Err(e) => Err(format!("did not finish: {e}")),
        };
        let took = t0.elapsed();
        let outcome = outcome.and_then(|()| {
            let kids = children_of(us());
            ensure!(kids.is_empty(), "left child processes behind: {kids:?}");
            let now = open_fds();
            ensure!(now == fds, "descriptors before {fds:?}, after {now:?}");
            Ok(())
        });
        match outcome {
            Ok(()) => {
                passed += 1;
                println!("ok   {name} ({} ms)", took.as_millis());
            }
            Err(why) => {
                failed += 1;
                println!("FAIL {name} ({} ms): {why}", took.as_millis());
            }
        }
    }
    (passed, failed)
}

/// Prints `N passed, M failed` (or the error) and exits non-zero if anything failed.
pub fn report(r: Result<(usize, usize)>) {
    match r {
        Ok((passed, failed)) => {
            println!("{passed} passed, {failed} failed");
            if failed > 0 {
                std::process::exit(1);
            }
        }
        Err(e) => {
            println!("error: {e}");
            std::process::exit(1);
        }
    }
}
