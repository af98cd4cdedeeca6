//! Process tests of the debug layer (`harness = false`: this binary *is* the actor binary): the
//! tree dump relayed from a child and a grandchild, `SIGUSR1` to a child, debug mode inherited,
//! and the crash reports of a failure two hops down, one per hop.
//!
//! The dumps are compared exactly after one normalisation of what a process tree cannot fix:
//! process ids (`pid P`), descriptor numbers (`fd N`), the monotonic clock's readings
//! (`now T`) and the line and column of infect's own source (`src/actor/child.rs`, no
//! `:line:col`, so that editing the runtime does not break these tests); the locations in this
//! file are exact.
//!
//! Run: `cargo test --test debug`.

#[macro_use]
mod common_proc;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::Duration;

use infect::actor::{self, ActorOpts, Context, ContextFn, Endpoints, Function, RootOpts};
use infect::{Error, Result, debug, guest};

use common_proc::{Case, Check, signal, wait_until};

const F: &str = file!();

/// Starts a grandchild, opens [`PARK`] in it, then starts.
const CHAIN: ContextFn<(), ()> = ContextFn::new("t", "chain");
/// Starts, then waits until cancelled.
const PARK: ContextFn<(), ()> = ContextFn::new("t", "park");
/// The actor's pid.
const PID: Function<(), u32> = Function::new("t", "pid");
/// Whether the actor runs in debug mode.
const DEBUG: Function<(), bool> = Function::new("t", "debug");
/// Starts a grandchild and calls [`DIVIDE`] in it.
const RELAY: Function<(i64, i64), i64> = Function::new("t", "relay");
/// Fails on a zero divisor.
const DIVIDE: Function<(i64, i64), i64> = Function::new("t", "divide");

fn t() -> ActorOpts {
    ActorOpts::new().enable_modules(["t"])
}

async fn chain(ctx: Context, _: ()) -> Result<()> {
    // @open
    actor::open_nursery(async |an| {
        let leaf = an.start_actor("grandchild", t()).await?;
        leaf.open_context(PARK, &(), async |_c, ()| {
            ctx.started(&()).await?;
            // @chain
            guest::sleep_forever().await
        })
        .await
    })
    .await
    .map(drop)
}

async fn park(ctx: Context, _: ()) -> Result<()> {
    ctx.started(&()).await?;
    // @park
    guest::sleep_forever().await
}

async fn pid(_: ()) -> Result<u32> {
    Ok(std::process::id())
}

async fn debug_mode(_: ()) -> Result<bool> {
    Ok(debug::is_debug_mode())
}

async fn relay(args: (i64, i64)) -> Result<i64> {
    actor::open_nursery(async |an| {
        let leaf = an.start_actor("grandchild", t()).await?;
        leaf.run(DIVIDE, &args).await
    })
    .await
    .map(|v| v.unwrap_or_default())
}

async fn divide((a, b): (i64, i64)) -> Result<i64> {
    if b == 0 {
        return Err(Error::msg("ZeroDivisionError", format!("cannot divide {a} by zero")));
    }
    Ok(a / b)
}

fn endpoints() -> Endpoints {
    Endpoints::new()
        .serve(CHAIN, chain)
        .serve(PARK, park)
        .serve(PID, pid)
        .serve(DEBUG, debug_mode)
        .serve(RELAY, relay)
        .serve(DIVIDE, divide)
}

/// The line of this file after the comment line `// @marker`.
fn line_of(marker: &str) -> u32 {
    let src = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(F)).unwrap_or_default();
    let tag = format!("// @{marker}");
    let i = src.lines().position(|l| l.trim() == tag).unwrap_or_else(|| panic!("no {tag} in {F}"));
    i as u32 + 2
}

/// The normalisation of the module docs: `pid P`, `fd N`, `now T,`, infect's own
/// `src/...rs:line:col` without its line and column.
fn normalize(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut l = line.to_owned();
        l = replace_number_after(&l, "pid ", "P");
        l = replace_number_after(&l, "fd ", "N");
        if let Some(i) = l.find("now ")
            && let Some(j) = l[i..].find("s,")
        {
            l.replace_range(i + 4..i + j + 1, "T");
        }
        if let Some(i) = l.find(" src/")
            && let Some(j) = l[i..].find(".rs:")
        {
            let end = l[i + j + 3..].find(|c: char| c != ':' && !c.is_ascii_digit()).map_or(l.len(), |k| i + j + 3 + k);
            l.replace_range(i + j + 3..end, "");
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn replace_number_after(l: &str, prefix: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = l;
    while let Some(i) = rest.find(prefix) {
        out.push_str(&rest[..i + prefix.len()]);
        rest = &rest[i + prefix.len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            out.push_str(with);
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// The lines of `text` from the one starting with `head` (after its indentation) to the last
/// one indented deeper, the common indentation removed.
fn block(text: &str, head: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines.iter().position(|l| l.trim_start().starts_with(head)) else {
        return format!("(no line starting with {head:?} in)\n{text}");
    };
    let indent = lines[start].len() - lines[start].trim_start().len();
    let mut out = String::new();
    for l in &lines[start..] {
        let ind = l.len() - l.trim_start().len();
        if !out.is_empty() && ind <= indent {
            break;
        }
        out.push_str(&l[indent..]);
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------- cases

/// The root's tree dump holds the child's subtree as the child tells it, and in it the
/// grandchild's: each actor's serving calls, tasks and where they wait.
async fn a_tree_dump_relays_the_child_and_the_grandchild() -> Check {
    let text = actor::open_nursery(async |an| {
        let p = an.start_actor("child", t()).await?;
        let text = p
            .open_context(CHAIN, &(), async |ctx, ()| {
                let text = debug::dump_tree().await?;
                // The context would otherwise be drained to its outcome, which never comes.
                ctx.cancel().await?;
                Ok(text)
            })
            .await?;
        an.cancel().await?;
        Ok(text)
    })
    .await
    .map_err(|e| e.to_string())?
    .ok_or("cancelled")?;
    let got = normalize(&block(&text, "\"child\" (pid"));
    let expected = format!(
        r#""child" (pid P): serving, open calls #1
  actor "child" (pid P)
    serving "root": #1 t.chain
    child actors:
      "grandchild" (pid P): serving, open calls #1
        actor "grandchild" (pid P)
          serving "child": #1 t.park
          guest (now T, 4 tasks):
            task 0 (main): waits at src/actor/child.rs
              nursery (scope 1) opened at src/actor/child.rs, 3 children
                task 1: waits at src/actor/signals.rs
                task 2: waits at {F}:{park}:5
                task 3: running (taking this dump)
          reactor interests:
            fd N readable
            fd N readable
    guest (now T, 6 tasks):
      task 0 (main): waits at src/actor/child.rs
        nursery (scope 1) opened at src/actor/child.rs, 3 children
          task 1: waits at src/actor/signals.rs
          task 2: waits at {F}:{chain}:13
            nursery (scope 5) opened at {F}:{open}:5, 2 children
              task 3: waits at src/actor/parent/mod.rs
                scope 7, shielded
              task 4: waits at src/actor/parent/mod.rs
                scope 9, shielded
          task 5: running (taking this dump)
    reactor interests:
      fd N readable
      fd N readable
      fd N readable
      fd N readable
"#,
        park = line_of("park"),
        chain = line_of("chain"),
        open = line_of("open"),
    );
    ensure!(got == expected, "the child's block:\n{got}\nexpected:\n{expected}\nthe whole dump:\n{text}");
    ensure!(text.starts_with("actor \"root\" (pid "), "the root's header: {text}");
    Ok(())
}

/// A child whose pipe gives no answer in time is shown as such: the dump does not wait for it
/// longer than its bound. (A child blocked in a system call answers nothing.)
async fn a_stuck_child_is_shown_and_does_not_hang_the_dump() -> Check {
    let text = actor::open_nursery(async |an| {
        let p = an.start_actor("stuck", t()).await?;
        let pid = p.run(PID, &()).await?;
        // SIGSTOP: the child cannot answer anything until SIGCONT.
        signal(pid, libc::SIGSTOP);
        let text = debug::dump_tree().await;
        signal(pid, libc::SIGCONT);
        an.cancel().await?;
        text
    })
    .await
    .map_err(|e| e.to_string())?
    .ok_or("cancelled")?;
    let got = normalize(&block(&text, "\"stuck\" (pid"));
    let expected = "\"stuck\" (pid P): serving, no open calls\n  (no dump: it did not answer within 2s)\n";
    ensure!(got == expected, "got:\n{got}\nexpected:\n{expected}");
    Ok(())
}

/// Debug mode is tree-wide: set at the root, a child inherits it, unless its own options say
/// otherwise; and the grandchild of a child with debug mode off has it off too.
async fn debug_mode_is_inherited_unless_set() -> Check {
    let mut root = common_proc::sub_root("DEBUG_TEST_ROLE", "inherit").map_err(|e| e.to_string())?;
    let mut out = root.stdout.take().ok_or("no stdout")?;
    let status = exit_of(&mut root).await?;
    let mut text = String::new();
    out.read_to_string(&mut text).map_err(|e| e.to_string())?;
    ensure!(status.success() && text == "root true, inherits true, off false\n", "{status:?}: {text:?}");
    Ok(())
}

async fn role_inherit() -> Result<()> {
    actor::open_nursery(async |an| {
        let a = an.start_actor("inherits", t()).await?;
        let b = an.start_actor("off", t().debug_mode(false)).await?;
        let (x, y) = (a.run(DEBUG, &()).await?, b.run(DEBUG, &()).await?);
        println!("root {}, inherits {x}, off {y}", debug::is_debug_mode());
        an.cancel().await
    })
    .await
    .map(drop)
}

/// `SIGUSR1` to a child: it prints its subtree's dump to its stderr (here the sub-root's,
/// which its children share), marked, and goes on serving.
async fn sigusr1_makes_a_child_print_its_dump() -> Check {
    let mut root = std::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .env("DEBUG_TEST_ROLE", "usr1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut out = root.stdout.take().ok_or("no stdout")?;
    let mut err = root.stderr.take().ok_or("no stderr")?;
    nonblocking(&out)?;
    nonblocking(&err)?;
    let mut said = String::new();
    let mut logged = String::new();
    let up = wait_until(Duration::from_secs(10), || {
        drain(&mut out, &mut said);
        said.contains("ready\n")
    })
    .await;
    let child = said.lines().find_map(|l| l.strip_prefix("child ")).and_then(|p| p.parse::<u32>().ok());
    let outcome = match (up, child) {
        (true, Some(child)) => {
            signal(child, libc::SIGUSR1);
            let done = wait_until(Duration::from_secs(10), || {
                drain(&mut err, &mut logged);
                logged.contains("======== end of dump ========\n")
            })
            .await;
            if done { Ok(()) } else { Err(format!("no dump on stderr: {logged:?}")) }
        }
        _ => Err(format!("the sub-root did not come up: {said:?}")),
    };
    signal(root.id(), libc::SIGINT);
    let status = exit_of(&mut root).await?;
    outcome?;
    let expected = format!(
        r#"======== infect dump ========
actor "child" (pid P)
  serving "root": #2 t.park
  guest (now T, 4 tasks):
    task 0 (main): waits at src/actor/child.rs
      nursery (scope 1) opened at src/actor/child.rs, 3 children
        task 1: waits at src/actor/signals.rs
        task 3: waits at {F}:{park}:5
        task 4: running (taking this dump)
  reactor interests:
    fd N readable
    fd N readable
======== end of dump ========
"#,
        park = line_of("park")
    );
    let got = normalize(&logged);
    ensure!(got == expected, "got:\n{got}\nexpected:\n{expected}");
    ensure!(status.code() == Some(130), "the sub-root ended {status:?}");
    Ok(())
}

async fn role_usr1() -> Result<()> {
    actor::open_nursery(async |an| {
        let p = an.start_actor("child", t()).await?;
        println!("child {}", p.run(PID, &()).await?);
        // Started: the endpoint runs on to its wait in the same step.
        p.open_context(PARK, &(), async |_ctx, ()| {
            println!("ready");
            guest::sleep_forever().await
        })
        .await
    })
    .await
    .map(drop)
}

/// Debug mode: a failure two hops down prints three crash reports, in order and each marked
/// with its actor: the grandchild's (its endpoint failed), the child's (its endpoint failed
/// with the remote error), the root's (it failed with it); then the program's error line.
async fn crash_reports_one_per_hop() -> Check {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let program = exe.file_name().ok_or("no file name")?.to_string_lossy().into_owned();
    let mut root = std::process::Command::new(&exe)
        .env("DEBUG_TEST_ROLE", "crash")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut err = root.stderr.take().ok_or("no stderr")?;
    let status = exit_of(&mut root).await?;
    let mut text = String::new();
    err.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let expected = format!(
        r#"======== infect crash report: actor "grandchild" ========
endpoint t.divide failed
error: cannot divide 1 by zero
-------- dump --------
actor "grandchild" (pid P, debug mode)
  serving "child": #1 t.divide
  guest (now T, 3 tasks):
    task 0 (main): waits at src/actor/child.rs
      nursery (scope 1) opened at src/actor/child.rs, 2 children
        task 1: waits at src/actor/signals.rs
        task 2: running (taking this dump)
          scope 5, shielded
  reactor interests:
    fd N readable
    fd N readable
======== end of crash report: actor "grandchild" ========
======== infect crash report: actor "child" ========
endpoint t.relay failed
error: ZeroDivisionError raised in actor 'grandchild': cannot divide 1 by zero
-------- dump --------
actor "child" (pid P, debug mode)
  serving "root": #1 t.relay
  guest (now T, 3 tasks):
    task 0 (main): waits at src/actor/child.rs
      nursery (scope 1) opened at src/actor/child.rs, 2 children
        task 1: waits at src/actor/signals.rs
        task 2: running (taking this dump)
          scope 14, shielded
  reactor interests:
    fd N readable
    fd N readable
======== end of crash report: actor "child" ========
======== infect crash report: actor "root" ========
the root failed
error: ZeroDivisionError raised in actor 'grandchild' (relayed by child): cannot divide 1 by zero
-------- dump --------
actor "root" (pid P, root, debug mode)
  guest (now T, 2 tasks):
    task 0 (main): running (taking this dump)
      nursery (scope 1) opened at src/actor/runtime.rs, 1 children
        scope 14, shielded
        task 1: waits at src/actor/signals.rs
          nursery (scope 6) opened at src/actor/runtime.rs, 0 children
  reactor interests:
    fd N readable
======== end of crash report: actor "root" ========
{program}: ZeroDivisionError raised in actor 'grandchild' (relayed by child): cannot divide 1 by zero
"#
    );
    let got = normalize(&text);
    ensure!(status.code() == Some(1), "the sub-root ended {status:?}");
    ensure!(got == expected, "got:\n{got}\nexpected:\n{expected}");
    Ok(())
}

async fn role_crash() -> Result<()> {
    actor::open_nursery(async |an| {
        let child = an.start_actor("child", t()).await?;
        child.run(RELAY, &(1, 0)).await
    })
    .await
    .map(drop)
}

/// Outside debug mode the same failure prints no report: only the program's error line.
async fn no_crash_report_outside_debug_mode() -> Check {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let program = exe.file_name().ok_or("no file name")?.to_string_lossy().into_owned();
    let mut root = std::process::Command::new(&exe)
        .env("DEBUG_TEST_ROLE", "crash_plain")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut err = root.stderr.take().ok_or("no stderr")?;
    let status = exit_of(&mut root).await?;
    let mut text = String::new();
    err.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let expected = format!(
        "{program}: ZeroDivisionError raised in actor 'grandchild' (relayed by child): cannot divide 1 by zero\n"
    );
    ensure!(status.code() == Some(1) && text == expected, "{status:?}: {text:?}");
    Ok(())
}

/// A program that does not enable the debug layer in `main`: its child answers the root's dump
/// request with a line saying so (the root itself has it: it called `dump_tree`).
async fn a_child_without_the_debug_layer_says_so() -> Check {
    let mut root = common_proc::sub_root("DEBUG_TEST_ROLE", "noenable").map_err(|e| e.to_string())?;
    let mut out = root.stdout.take().ok_or("no stdout")?;
    let status = exit_of(&mut root).await?;
    let mut text = String::new();
    out.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let expected = "\"child\" (pid P): serving, no open calls
  actor \"child\" (pid P)
    (no dump: this program does not enable the debug layer; see infect::debug::enable)
";
    ensure!(status.success() && normalize(&text) == expected, "{status:?}: {text}");
    Ok(())
}

async fn role_noenable() -> Result<()> {
    actor::open_nursery(async |an| {
        an.start_actor("child", t()).await?;
        print!("{}", block(&debug::dump_tree().await?, "\"child\" (pid"));
        an.cancel().await
    })
    .await
    .map(drop)
}

// ---------------------------------------------------------------- helpers

fn nonblocking(fd: &impl AsRawFd) -> Check {
    // SAFETY: `fcntl` on a descriptor we own, with integer arguments only.
    let r = unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK)
    };
    if r < 0 { Err("fcntl failed".into()) } else { Ok(()) }
}

/// Appends what can be read from `r` now (non-blocking) to `into`.
fn drain(r: &mut impl Read, into: &mut String) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        into.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

async fn exit_of(root: &mut std::process::Child) -> std::result::Result<std::process::ExitStatus, String> {
    let exited = wait_until(Duration::from_secs(20), || matches!(root.try_wait(), Ok(Some(_)))).await;
    if !exited {
        let _ = root.kill();
        let _ = root.wait();
        return Err(format!("sub-root {} still running", root.id()));
    }
    root.wait().map_err(|e| e.to_string())
}

async fn run_all() -> Result<(usize, usize)> {
    let all: Vec<Case> = cases![
        a_tree_dump_relays_the_child_and_the_grandchild,
        a_stuck_child_is_shown_and_does_not_hang_the_dump,
        debug_mode_is_inherited_unless_set,
        sigusr1_makes_a_child_print_its_dump,
        crash_reports_one_per_hop,
        no_crash_report_outside_debug_mode,
        a_child_without_the_debug_layer_says_so,
    ];
    Ok(common_proc::run_cases(all, Duration::from_secs(30)).await)
}

fn main() -> std::process::ExitCode {
    if std::env::var("DEBUG_TEST_ROLE").is_ok_and(|r| r == "noenable") {
        // A program that never enables the debug layer in `main`: its children do not have it.
        return actor::main(endpoints(), role_noenable());
    }
    // Every process of this program (the children are re-executions) runs the dump.
    debug::enable();
    match std::env::var("DEBUG_TEST_ROLE").unwrap_or_default().as_str() {
        "inherit" => actor::main_with(RootOpts::new().debug_mode(true), endpoints(), role_inherit()),
        "usr1" => actor::main(endpoints(), role_usr1()),
        "crash" => actor::main_with(RootOpts::new().debug_mode(true), endpoints(), role_crash()),
        "crash_plain" => actor::main(endpoints(), role_crash()),
        _ => {
            common_proc::report(actor::run(endpoints(), run_all()));
            std::process::ExitCode::SUCCESS
        }
    }
}
