//! Process tests of actors started through a launcher (`ActorOpts::launcher`), `harness =
//! false`: this binary is the actor binary, here and on the "other host".
//!
//! Two launchers: `sh -c 'exec "$@"' --` (the mechanism without ssh), and `ssh` to a real sshd
//! on `127.0.0.1` (`.ci/run` starts one and names it in `INFECT_TEST_SSH`; without it, a
//! private sshd is started here if an `sshd` binary exists, see `common_proc/sshd.rs`; only
//! when there is none are the ssh cases skipped, with the reason printed).
//!
//! Every case asserts its exact outcome and then that nothing was left behind: no process whose
//! parent is us (running or zombie), the same open descriptors as before, and no launched actor
//! process anywhere on the machine (a process of this binary whose last argument is
//! `--infect-actor-stdio`) within 2 s.
//!
//! Run: `cargo test --test launch` (one process; the cases run sequentially).

#[macro_use]
mod common_proc;
#[path = "common_proc/sshd.rs"]
mod sshd;

#[path = "common_proc/seed_echo.rs"]
mod seed_echo;
use seed_echo::guest_to_host_echo_server;
use std::io::BufReader;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use infect::actor::{self, ActorOpts, ContextFn, Endpoints, Function, LAUNCHED_ARG};
use infect::error::LaunchFailure;
use infect::to_host;
use infect::wire::PROTOCOL_VERSION;
use infect::{Error, Result, guest};

use common_proc::{Case, Check, gone, read_pids, remote, signal, wait_until};

// ---------------------------------------------------------------- endpoints (namespace "t")

async fn echo(x: u64) -> Result<u64> {
    Ok(x)
}

async fn pid(_: ()) -> Result<u32> {
    Ok(std::process::id())
}

async fn fail(message: String) -> Result<()> {
    Err(Error::msg("ValueError", message))
}

/// Prints to stdout (which, launched, must not reach the frame stream: each line would be a
/// damaged frame) and then answers.
async fn noisy(x: u64) -> Result<u64> {
    for i in 0..3 {
        println!("noise {i} on stdout: not a frame");
    }
    Ok(x)
}

/// Blocks the whole actor (its thread) for `ms`: it cannot answer anything meanwhile.
async fn block(ms: u64) -> Result<()> {
    std::thread::sleep(Duration::from_millis(ms));
    Ok(())
}

async fn sleep_forever(_: ()) -> Result<()> {
    guest::sleep_forever().await
}

/// Says why on stderr, then dies with status 3.
async fn die_loudly(_: ()) -> Result<()> {
    eprintln!("dying on purpose");
    std::process::exit(3)
}

/// Runs a one-shot grandchild (on this actor's host) that fails: its error comes back through us.
async fn grandchild_fails(message: String) -> Result<()> {
    actor::open_nursery(async |an| {
        an.run_in_actor(FAIL, &message, ActorOpts::new().name("grandchild")).await?;
        Ok(())
    })
    .await
    .and_then(|v| v.ok_or(Error::Cancelled))
}

/// Whether this actor is infected, and a round trip through a host task.
async fn infected_round_trip(x: u64) -> Result<(bool, u64)> {
    let back = to_host::run_task(async move { Ok(x + 1) }).await?;
    Ok((actor::current_actor().is_infected(), back))
}

/// Creates `path`, registers its removal as a teardown callback, and sleeps until cancelled.
async fn touch_then_sleep(path: String) -> Result<()> {
    std::fs::write(&path, b"alive").map_err(Error::user)?;
    actor::current_actor().on_teardown(move || {
        let _ = std::fs::remove_file(&path);
    });
    guest::sleep_forever().await
}

const ECHO: Function<u64, u64> = Function::new("t", "echo");
const PID: Function<(), u32> = Function::new("t", "pid");
const FAIL: Function<String, ()> = Function::new("t", "fail");
const NOISY: Function<u64, u64> = Function::new("t", "noisy");
const SLEEP_FOREVER: Function<(), ()> = Function::new("t", "sleep_forever");
const BLOCK: Function<u64, ()> = Function::new("t", "block");
const DIE_LOUDLY: Function<(), ()> = Function::new("t", "die_loudly");
const GRANDCHILD_FAILS: Function<String, ()> = Function::new("t", "grandchild_fails");
const INFECTED_ROUND_TRIP: Function<u64, (bool, u64)> = Function::new("t", "infected_round_trip");
const TOUCH_THEN_SLEEP: Function<String, ()> = Function::new("t", "touch_then_sleep");
const ECHO_SERVER: ContextFn<(), String> = ContextFn::new("t", "echo_server");

fn endpoints() -> Endpoints {
    Endpoints::new()
        .serve(ECHO, echo)
        .serve(PID, pid)
        .serve(FAIL, fail)
        .serve(NOISY, noisy)
        .serve(SLEEP_FOREVER, sleep_forever)
        .serve(BLOCK, block)
        .serve(DIE_LOUDLY, die_loudly)
        .serve(GRANDCHILD_FAILS, grandchild_fails)
        .serve(INFECTED_ROUND_TRIP, infected_round_trip)
        .serve(TOUCH_THEN_SLEEP, touch_then_sleep)
        .serve(ECHO_SERVER, guest_to_host_echo_server)
}

// ---------------------------------------------------------------- helpers

/// The local launcher: runs its arguments as they are.
const SH: [&str; 4] = ["sh", "-c", "exec \"$@\"", "--"];

/// The ssh launcher (set in `main` when one is available).
static SSH: OnceLock<sshd::Ssh> = OnceLock::new();

fn ssh() -> Vec<String> {
    SSH.get().map(|s| s.launcher.clone()).unwrap_or_default()
}

fn t() -> ActorOpts {
    ActorOpts::new().enable_modules(["t"])
}

fn via(launcher: &[impl AsRef<str>]) -> ActorOpts {
    t().launcher(launcher.iter().map(|w| w.as_ref().to_owned()))
}

/// The pids of every live process of this binary started as a launched child (its last
/// argument is [`LAUNCHED_ARG`]), anywhere on the machine (the "other host" is this one).
fn launched_processes() -> Vec<u32> {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        // A zombie's command line reads empty: only live processes count.
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty()).collect();
        let ours = std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == exe);
        if ours && args.last().is_some_and(|a| *a == LAUNCHED_ARG.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// Whether process `pid` is dead: gone (reaped by us if it was ours, see [`gone`]), or a
/// zombie of someone else's. (An sshd session that loses its client exits without reaping its
/// command, which then waits as a zombie for PID 1 to reap it, as slowly as PID 1 likes: over a
/// second in some containers. It has exited all the same.)
fn dead(pid: u32) -> bool {
    gone(pid) || common_proc::process_state(pid) == Some('Z')
}

/// Nothing launched is left running within 2 s (and `pids`, if given, are dead).
async fn nothing_launched_left(pids: &[u32]) -> Check {
    let clean =
        wait_until(Duration::from_secs(2), || pids.iter().all(|&p| dead(p)) && launched_processes().is_empty()).await;
    let alive: Vec<u32> = pids.iter().copied().filter(|&p| !dead(p)).collect();
    ensure!(clean, "left running after 2 s: of {pids:?}, {alive:?}; launched actors {:?}", launched_processes());
    Ok(())
}

/// `open_nursery` whose block's value is required.
async fn nursery<T>(body: impl AsyncFnOnce(&actor::ActorNursery) -> Result<T>) -> Result<T> {
    actor::open_nursery(body).await.and_then(|v| v.ok_or(Error::Cancelled))
}

// ---------------------------------------------------------------- cases: sh launcher

/// Through `sh -c 'exec "$@"' --`: the handshake, calls, lines the child prints to stdout
/// (which must not reach the frames), a graceful `cancel_actor`. The launcher execs the program,
/// so the actor's pid is the launcher's.
async fn sh_launcher_echo() -> Check {
    let (x, noisy, pids, graceful, errs) = nursery(async |an| {
        let p = an.start_actor("local", via(&SH)).await?;
        let x: u64 = p.run(ECHO, &41u64).await?;
        let noisy: u64 = p.run(NOISY, &5u64).await?;
        let theirs: u32 = p.run(PID, &()).await?;
        let aid = p.aid().map(|a| a.pid);
        let errs = p.wire_error_count() + p.protocol_error_count();
        let graceful = p.cancel_actor().await?;
        Ok((x, noisy, (theirs, aid, p.pid()), graceful, errs))
    })
    .await
    .map_err(|e| format!("{e:?}"))?;
    ensure!(x == 41 && noisy == 5, "echo {x}, noisy {noisy}");
    ensure!(pids.0 == pids.2 && pids.1 == Some(pids.0), "pids (endpoint, aid, launcher) {pids:?}");
    ensure!(graceful && errs == 0, "graceful {graceful}, wire+protocol errors {errs}");
    nothing_launched_left(&[pids.0]).await
}

/// An infected child through the local launcher: `is_infected`, a host task round trip.
async fn sh_launcher_infected() -> Check {
    let r = nursery(async |an| {
        let p = an.start_actor("local-infected", via(&SH).infect_host(true)).await?;
        let out: (bool, u64) = p.run(INFECTED_ROUND_TRIP, &9u64).await?;
        p.cancel_actor().await?;
        Ok(out)
    })
    .await;
    ensure!(r == Ok((true, 10)), "{r:?}");
    nothing_launched_left(&[]).await
}

/// A launcher that does not exec (`sh -c '"$@"; exit $?'`) is killed: the call in flight ends
/// with `ActorDied` (the launcher's `SIGKILL`); the actor itself, orphaned, takes end-of-file
/// on its stdin as "parent gone" once the nursery lets go of the pipe, and exits within its
/// grace.
async fn killing_the_launcher_leaves_no_actor() -> Check {
    let launcher = ["sh", "-c", "\"$@\"; exit $?", "--"];
    let r = nursery(async |an| {
        let p = an.start_actor("orphan", via(&launcher)).await?;
        let theirs: u32 = p.run(PID, &()).await?;
        if theirs == p.pid() {
            return Err(Error::msg("Assertion", "the launcher exec'd the program"));
        }
        signal(p.pid(), libc::SIGKILL);
        let r: Result<()> = p.run(SLEEP_FOREVER, &()).await;
        Ok((theirs, r))
    })
    .await;
    let (theirs, r) = r.map_err(|e| format!("{e:?}"))?;
    match r {
        Err(Error::ActorDied { actor, code: None, signal: Some(9), panic: None, stderr: None })
            if actor == "orphan" => {}
        other => return Err(format!("expected the launcher's ActorDied (SIGKILL), got {other:?}")),
    }
    let t0 = Instant::now();
    nothing_launched_left(&[theirs]).await?;
    ensure!(t0.elapsed() < Duration::from_secs(2), "took {:?}", t0.elapsed());
    Ok(())
}

/// The ladder climbs on the local launcher process: an actor that cannot answer the graceful
/// cancel (its thread is blocked for 2 s) behind a launcher that does not exec gets no
/// `CancelAck`; the launcher gets `SIGTERM` after the first rung and is reaped, `cancel_actor`
/// says it was not graceful, and the actor, orphaned, exits once it unblocks and finds its stdin
/// ended.
async fn the_ladder_reaches_the_launcher() -> Check {
    let launcher = ["sh", "-c", "\"$@\"; exit $?", "--"];
    let opts = via(&launcher).cancel_timeout(Duration::from_millis(200)).term_timeout(Duration::from_millis(300));
    let r = nursery(async |an| {
        let p = an.start_actor("blocked", opts).await?;
        let theirs: u32 = p.run(PID, &()).await?;
        let blocker = p.clone();
        let graceful = guest::open_nursery(async |n| {
            n.start_soon(async move { blocker.run(BLOCK, &2000u64).await.or(Ok(())) })?;
            guest::sleep(Duration::from_millis(100)).await?;
            let t0 = Instant::now();
            let graceful = p.cancel_actor().await?;
            Ok((graceful, t0.elapsed()))
        })
        .await?;
        Ok((theirs, p.pid(), graceful))
    })
    .await;
    let (theirs, launcher_pid, out) = r.map_err(|e| format!("{e:?}"))?;
    let (graceful, took) = out.ok_or("the guest nursery was cancelled")?;
    ensure!(!graceful, "cancel_actor said graceful");
    ensure!(took < Duration::from_millis(1500), "the ladder took {took:?}: it waited for the actor");
    ensure!(gone(launcher_pid), "the launcher {launcher_pid} is not reaped");
    nothing_launched_left(&[theirs]).await
}

/// After the handshake the program writes a line to stderr and exits 3: `ActorDied` with the
/// launcher's (here the program's own) status and that line.
async fn launched_death_quotes_stderr() -> Check {
    let r: Result<()> = nursery(async |an| an.start_actor("loud", via(&SH)).await?.run(DIE_LOUDLY, &()).await).await;
    match r {
        Err(
            ref e @ Error::ActorDied { ref actor, code: Some(3), signal: None, panic: None, stderr: Some(ref line) },
        ) if actor == "loud" && line == "dying on purpose" => {
            ensure!(e.to_string().contains("\"dying on purpose\""), "message {e}");
        }
        other => return Err(format!("expected ActorDied(3) quoting stderr, got {other:?}")),
    }
    nothing_launched_left(&[]).await
}

/// A launcher that does not exist: `LaunchFailed` / `NotRun`, before anything runs.
async fn launcher_not_found() -> Check {
    let r =
        nursery(async |an| an.start_actor("nolauncher", via(&["/nonexistent/launcher", "-x"])).await.map(drop)).await;
    match r {
        Err(
            ref e @ Error::LaunchFailed {
                ref actor,
                ref launcher,
                failure: LaunchFailure::NotRun { ref source },
                code: None,
                signal: None,
                stderr: None,
            },
        ) if actor == "nolauncher" && launcher == "/nonexistent/launcher -x" => {
            ensure!(source.raw_os_error() == Some(libc::ENOENT), "source {source:?}");
            ensure!(e.to_string().contains("No such file or directory"), "message {e}");
            ensure!(e.kind() == "LaunchFailed", "kind {}", e.kind());
        }
        other => return Err(format!("expected LaunchFailed/NotRun, got {other:?}")),
    }
    Ok(())
}

/// The program does not exist on the other side: the launcher's shell exits 127.
async fn program_missing() -> Check {
    let r = nursery(async |an| an.start_actor("noprog", via(&SH).program("/nonexistent/prog")).await.map(drop)).await;
    match r {
        Err(Error::LaunchFailed {
            ref actor,
            failure: LaunchFailure::ProgramMissing,
            code: Some(127),
            signal: None,
            stderr: Some(ref line),
            ..
        }) if actor == "noprog" && line.contains("/nonexistent/prog") => {}
        other => return Err(format!("expected LaunchFailed/ProgramMissing quoting sh, got {other:?}")),
    }
    Ok(())
}

/// A program of another protocol version (this binary pretending, through `env`): the child
/// refuses the handshake, the parent says which versions met.
async fn protocol_mismatch() -> Check {
    let launcher = ["env", "LAUNCH_TEST_PROTOCOL=99"];
    let r = nursery(async |an| an.start_actor("otherbuild", via(&launcher)).await.map(drop)).await;
    match r {
        Err(ref e @ Error::ProtocolMismatch { ref actor, ours, ref report }) if actor == "otherbuild" => {
            ensure!(ours == PROTOCOL_VERSION, "ours {ours}");
            ensure!(
                report.contains("speaks actor protocol 99")
                    && report.contains(&format!("sent protocol {PROTOCOL_VERSION}")),
                "report {report:?}"
            );
            ensure!(e.kind() == "ProtocolMismatch", "kind {}", e.kind());
        }
        other => return Err(format!("expected ProtocolMismatch, got {other:?}")),
    }
    nothing_launched_left(&[]).await
}

/// A launcher that never starts the program (it says why on stderr, then sleeps) is bounded by
/// the start timeout, whose error quotes it.
async fn hung_launcher_times_out() -> Check {
    let opts = via(&["sh", "-c", "echo still connecting >&2; exec sleep 30", "--"])
        .start_timeout(Duration::from_millis(300))
        .term_timeout(Duration::from_millis(200));
    let t0 = Instant::now();
    let r = nursery(async |an| an.start_actor("hung", opts).await.map(drop)).await;
    ensure!(
        matches!(&r, Err(Error::StartTimeout { actor, timeout, stderr: Some(line) })
            if actor == "hung" && *timeout == Duration::from_millis(300) && line == "still connecting"),
        "{r:?}"
    );
    ensure!(t0.elapsed() < Duration::from_secs(2), "took {:?}", t0.elapsed());
    Ok(())
}

// ---------------------------------------------------------------- cases: ssh

/// Plain calls over ssh: the actor is another process than the local launcher, and is not ours.
async fn ssh_echo() -> Check {
    let (x, theirs, launcher_pid, graceful) = nursery(async |an| {
        let p = an.start_actor("far", via(&ssh())).await?;
        let x: u64 = p.run(ECHO, &7u64).await?;
        let theirs: u32 = p.run(PID, &()).await?;
        let noisy: u64 = p.run(NOISY, &8u64).await?;
        ensure_ok(noisy == 8 && p.aid().map(|a| a.pid) == Some(theirs))?;
        ensure_ok(p.wire_error_count() + p.protocol_error_count() == 0)?;
        let graceful = p.cancel_actor().await?;
        Ok((x, theirs, p.pid(), graceful))
    })
    .await
    .map_err(|e| format!("{e:?}"))?;
    ensure!(x == 7 && theirs != launcher_pid, "echo {x}, remote pid {theirs}, launcher pid {launcher_pid}");
    ensure!(graceful, "cancel_actor over ssh was not graceful");
    nothing_launched_left(&[theirs]).await
}

/// The seed's echo server over ssh: an infected child whose context stream goes through its
/// host task, 200 round trips in order.
async fn ssh_seed_echo() -> Check {
    let r = nursery(async |an| {
        let p = an.start_actor("host_server", via(&ssh()).infect_host(true)).await?;
        let got = p
            .open_context(ECHO_SERVER, &(), async |ctx, first: String| {
                ensure_ok(first == "start")?;
                ctx.open_stream(async |stream| {
                    let mut got = Vec::new();
                    for i in 0..200u64 {
                        stream.send(&i).await?;
                        got.push(stream.receive::<u64>().await?);
                    }
                    Ok(got)
                })
                .await
            })
            .await?;
        p.cancel_actor().await?;
        Ok(got)
    })
    .await;
    ensure!(r == Ok((0..200).collect()), "{r:?}");
    nothing_launched_left(&[]).await
}

/// An infected child over ssh: `is_infected`, a host task round trip.
async fn ssh_infected_child() -> Check {
    let r = nursery(async |an| {
        let p = an.start_actor("far-infected", via(&ssh()).infect_host(true)).await?;
        let out: (bool, u64) = p.run(INFECTED_ROUND_TRIP, &41u64).await?;
        p.cancel_actor().await?;
        Ok(out)
    })
    .await;
    ensure!(r == Ok((true, 42)), "{r:?}");
    nothing_launched_left(&[]).await
}

/// A remote error over ssh: raised in a grandchild the remote actor started on its host,
/// relayed through it: its kind, source and relay path.
async fn ssh_remote_error_relays() -> Check {
    let r: Result<()> = nursery(async |an| {
        an.start_actor("middle", via(&ssh())).await?.run(GRANDCHILD_FAILS, &"far trouble".to_owned()).await
    })
    .await;
    let e = r.err().ok_or("no error")?;
    let r = remote(&e)?;
    ensure!(e.kind() == "RemoteActorError" && r.boxed_type == "ValueError" && r.message == "far trouble", "{e:?}");
    ensure!(r.src.name == "grandchild" && r.relay_path == ["middle"], "src {:?}, relay_path {:?}", r.src, r.relay_path);
    nothing_launched_left(&[]).await
}

/// The graceful cancel reaches the remote actor through the pipe: its teardown callback runs
/// (the file it made is removed) and `cancel_actor` says it was graceful.
async fn ssh_cancel_runs_remote_teardown() -> Check {
    let path = common_proc::temp_path("infect-launch", "teardown").display().to_string();
    let r = nursery(async |an| {
        let p = an.start_actor("far-teardown", via(&ssh())).await?;
        let sleeper = p.clone();
        let arg = path.clone();
        guest::open_nursery(async |n| {
            n.start_soon(async move { sleeper.run(TOUCH_THEN_SLEEP, &arg).await.or(Ok(())) })?;
            let made = wait_until(Duration::from_secs(5), || std::path::Path::new(&path).exists()).await;
            ensure_ok(made)?;
            p.cancel_actor().await
        })
        .await
        .and_then(|v| v.ok_or(Error::Cancelled))
    })
    .await;
    ensure!(r == Ok(true), "cancel_actor {r:?}");
    ensure!(!std::path::Path::new(&path).exists(), "the remote teardown did not run: {path} still exists");
    nothing_launched_left(&[]).await
}

/// The local ssh is killed mid-echo: the call ends with its `ActorDied`, and the remote actor
/// (its stdin ended) is gone within 2 s.
async fn ssh_killed_launcher_leaves_no_remote() -> Check {
    let r = nursery(async |an| {
        let p = an.start_actor("far-victim", via(&ssh())).await?;
        let theirs: u32 = p.run(PID, &()).await?;
        for i in 0..20u64 {
            let _: u64 = p.run(ECHO, &i).await?;
        }
        signal(p.pid(), libc::SIGKILL);
        let mut last = Ok(0);
        for i in 0..1000u64 {
            last = p.run(ECHO, &i).await;
            if last.is_err() {
                break;
            }
        }
        Ok((theirs, last))
    })
    .await;
    let (theirs, last) = r.map_err(|e| format!("{e:?}"))?;
    ensure!(
        matches!(&last, Err(Error::ActorDied { actor, code: None, signal: Some(9), .. }) if actor == "far-victim"),
        "expected ActorDied (SIGKILL), got {last:?}"
    );
    nothing_launched_left(&[theirs]).await
}

/// The root is SIGKILLed mid-echo (a sub-root running the echo over ssh): its ssh and the
/// remote actor are gone within 2 s.
async fn ssh_root_sigkilled_leaves_no_remote() -> Check {
    let mut root = std::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .env("LAUNCH_TEST_ROLE", "sshecho")
        .env(sshd::SSH_ENV, ssh().join(" "))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut out = BufReader::new(root.stdout.take().ok_or("no stdout")?);
    let pids = read_pids(&mut out, 2);
    signal(root.id(), libc::SIGKILL);
    let _ = root.wait();
    let killed_at = Instant::now();
    ensure!(pids.len() == 2, "the sub-root printed pids {pids:?}");
    nothing_launched_left(&pids).await?;
    ensure!(killed_at.elapsed() < Duration::from_secs(2), "took {:?}", killed_at.elapsed());
    Ok(())
}

/// The sub-root of [`ssh_root_sigkilled_leaves_no_remote`]: 20 echoes, its remote actor's and
/// its launcher's pids, then echoes until killed.
async fn role_sshecho() -> Result<()> {
    nursery(async |an| {
        let p = an.start_actor("far-echo", via(&ssh())).await?;
        for i in 0..20u64 {
            let _: u64 = p.run(ECHO, &i).await?;
        }
        let theirs: u32 = p.run(PID, &()).await?;
        println!("pid {theirs}");
        println!("pid {}", p.pid());
        let mut i = 0u64;
        loop {
            let back: u64 = p.run(ECHO, &i).await?;
            ensure_ok(back == i)?;
            i += 1;
        }
    })
    .await
}

/// A key the server does not know: `LaunchFailed` / `Launcher` (ssh's 255), quoting ssh.
async fn ssh_refused_key() -> Check {
    let key = common_proc::temp_path("infect-launch", "stranger_key");
    sshd::keygen(&key)?;
    let launcher = SSH.get().ok_or("no ssh")?.with_key(&key);
    let r = nursery(async |an| an.start_actor("stranger", via(&launcher)).await.map(drop)).await;
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    match r {
        Err(
            ref e @ Error::LaunchFailed {
                ref actor,
                failure: LaunchFailure::Launcher,
                code: Some(255),
                signal: None,
                stderr: Some(ref line),
                ..
            },
        ) if actor == "stranger" && line.contains("Permission denied") => {
            ensure!(e.to_string().contains("Permission denied"), "message {e}");
        }
        other => return Err(format!("expected LaunchFailed/Launcher quoting ssh, got {other:?}")),
    }
    Ok(())
}

/// The program is missing on the other host: the remote shell's 127, quoted.
async fn ssh_program_missing() -> Check {
    let r = nursery(async |an| {
        an.start_actor("far-noprog", via(&ssh()).program("/nonexistent/infect-prog")).await.map(drop)
    })
    .await;
    match r {
        Err(Error::LaunchFailed {
            ref actor,
            failure: LaunchFailure::ProgramMissing,
            code: Some(127),
            stderr: Some(ref line),
            ..
        }) if actor == "far-noprog" && line.contains("/nonexistent/infect-prog") => Ok(()),
        other => Err(format!("expected LaunchFailed/ProgramMissing quoting the remote shell, got {other:?}")),
    }
}

/// The program on the other host speaks another protocol version.
async fn ssh_protocol_mismatch() -> Check {
    let mut launcher = ssh();
    launcher.extend(["env".to_owned(), "LAUNCH_TEST_PROTOCOL=99".to_owned()]);
    let r = nursery(async |an| an.start_actor("far-otherbuild", via(&launcher)).await.map(drop)).await;
    match r {
        Err(Error::ProtocolMismatch { ref actor, ours, ref report })
            if actor == "far-otherbuild" && ours == PROTOCOL_VERSION && report.contains("speaks actor protocol 99") => {
        }
        other => return Err(format!("expected ProtocolMismatch, got {other:?}")),
    }
    nothing_launched_left(&[]).await
}

/// The remote actor dies after the handshake: ssh passes its status on, and its stderr line.
async fn ssh_remote_death_quotes_stderr() -> Check {
    let r: Result<()> =
        nursery(async |an| an.start_actor("far-loud", via(&ssh())).await?.run(DIE_LOUDLY, &()).await).await;
    match r {
        Err(Error::ActorDied { ref actor, code: Some(3), signal: None, stderr: Some(ref line), .. })
            if actor == "far-loud" && line == "dying on purpose" => {}
        other => return Err(format!("expected ActorDied(3) quoting the remote stderr, got {other:?}")),
    }
    nothing_launched_left(&[]).await
}

fn ensure_ok(c: bool) -> Result<()> {
    common_proc::ensure_ok(c)
}

async fn run_all() -> Result<(usize, usize)> {
    let mut cases: Vec<Case> = cases![
        sh_launcher_echo,
        sh_launcher_infected,
        killing_the_launcher_leaves_no_actor,
        the_ladder_reaches_the_launcher,
        launched_death_quotes_stderr,
        launcher_not_found,
        program_missing,
        protocol_mismatch,
        hung_launcher_times_out,
    ];
    match SSH.get() {
        Some(s) => {
            println!("ssh: {}", s.origin);
            cases.extend(cases![
                ssh_echo,
                ssh_seed_echo,
                ssh_infected_child,
                ssh_remote_error_relays,
                ssh_cancel_runs_remote_teardown,
                ssh_killed_launcher_leaves_no_remote,
                ssh_root_sigkilled_leaves_no_remote,
                ssh_refused_key,
                ssh_program_missing,
                ssh_protocol_mismatch,
                ssh_remote_death_quotes_stderr,
            ]);
        }
        None => println!("skipped the 11 ssh cases: {}", SSH_SKIP.get().map_or("no ssh", String::as_str)),
    }
    Ok(common_proc::run_cases(cases, Duration::from_secs(30)).await)
}

/// Why there is no ssh launcher, when there is none.
static SSH_SKIP: OnceLock<String> = OnceLock::new();

fn main() {
    if let Some(v) = std::env::var("LAUNCH_TEST_PROTOCOL").ok().and_then(|v| v.parse().ok()) {
        actor::testing::pretend_protocol(v);
    }
    let child = std::env::var_os("INFECT_ACTOR_PIPE").is_some()
        || std::env::args().next_back().is_some_and(|a| a == LAUNCHED_ARG);
    let role = std::env::var("LAUNCH_TEST_ROLE").unwrap_or_default();
    if !child {
        // First, before this process becomes a subreaper: a private sshd must not be our child.
        match sshd::ssh() {
            Ok(s) => {
                let _ = SSH.set(s);
            }
            Err(why) => {
                let _ = SSH_SKIP.set(why);
            }
        }
    }
    let r = actor::run(endpoints(), async move {
        if role == "sshecho" {
            return role_sshecho().await.map(|()| (0, 0));
        }
        // Orphans (a killed launcher's actor, a killed sub-root's ssh) come to us, so that we can
        // reap them and check they are gone.
        actor::testing::set_child_subreaper().map_err(Error::user)?;
        run_all().await
    });
    common_proc::report(r);
}
