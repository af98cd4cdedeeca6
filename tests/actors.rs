//! Process tests of the actor tree (`harness = false`: this binary *is* the actor binary).
//!
//! `main` calls `infect::actor::main`: in a child it serves the endpoints below; in the root it
//! runs every case in turn, prints one line per case and then exactly `N passed, M failed`, and
//! exits non-zero if any failed. Some cases re-execute this binary as a separate root (a
//! "sub-root", selected by `ACTORS_TEST_ROLE`) to kill or interrupt it from outside.
//!
//! Every case asserts its exact outcome and then that nothing was left behind: no process whose
//! parent is us (running or zombie), the same open descriptors as before.
//!
//! Run: `cargo test --test actors` (one process; the cases run sequentially, about 10 s).

#[macro_use]
mod common_proc;

use std::io::BufReader;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use infect::actor::{self, ActorOpts, ContextFn, Endpoints, Function};
use infect::error::{ErrorKind, RemoteKind};
use infect::guest;
use infect::wire::{
    Aid, CUT_MARKER, DEFAULT_MAX_FRAME, FrameDecoder, FuncKind, Msg, WireError, encode_frame, encode_payload,
};
use infect::{Error, Result};

use common_proc::{
    Case, Check, children_of, ensure_ok, gone, no_pidfd, open_fds, read_pids, remote, rss_kib, signal, us, wait_until,
};

// ---------------------------------------------------------------- endpoints (namespace "t")

async fn echo(x: u64) -> Result<u64> {
    Ok(x)
}

async fn fail(message: String) -> Result<()> {
    Err(Error::msg("ValueError", message))
}

/// A user error type of this binary: its kind is its type path, `actors::FeedLost`.
#[derive(Debug, thiserror::Error)]
#[error("feed {0} lost")]
struct FeedLost(String);

async fn fail_typed(feed: String) -> Result<()> {
    Err(Error::user(FeedLost(feed)))
}

/// A user error whose explicit kind is a crate kind's name.
async fn fail_clashing() -> Result<()> {
    Err(Error::msg("StartedTwice", "my own StartedTwice"))
}

async fn sleep_forever() -> Result<()> {
    guest::sleep_forever().await
}

/// Ignores cancellation entirely: blocks the whole process.
async fn stubborn() -> Result<()> {
    std::thread::sleep(Duration::from_secs(30));
    Ok(())
}

async fn pid() -> Result<u32> {
    Ok(std::process::id())
}

async fn abort() -> Result<()> {
    std::process::abort()
}

/// The line of the `panic!` in [`panics`], for the expected location.
const PANIC_LINE: u32 = line!() + 3;

async fn panics() -> Result<()> {
    panic!("endpoint panicked on purpose")
}

/// Panics the way a `panic = "abort"` build does: the hook reports, then the process aborts.
async fn panics_aborting() -> Result<()> {
    actor::testing::abort_on_panic();
    panic!("aborting panic on purpose")
}

async fn infected() -> Result<bool> {
    Ok(actor::current_actor().is_infected())
}

/// Writes a corrupt frame into the pipe to the parent, then answers normally.
async fn garbage() -> Result<u64> {
    actor::current_actor().write_raw_to_parent(b"garbage\x00").map_err(Error::user)?;
    Ok(7)
}

/// Writes a frame over the limit (no zero inside) into the pipe, then answers normally.
async fn oversize_raw() -> Result<u64> {
    let mut bytes = vec![0x11u8; 70_000];
    bytes.push(0);
    actor::current_actor().write_raw_to_parent(&bytes).map_err(Error::user)?;
    Ok(7)
}

/// Writes three bytes of a frame and dies.
async fn truncate() -> Result<()> {
    actor::current_actor().write_raw_to_parent(&[0x05, 0x01, 0x02]).map_err(Error::user)?;
    std::process::exit(3)
}

async fn echo_bytes(b: Vec<u8>) -> Result<Vec<u8>> {
    Ok(b)
}

async fn big(n: u32) -> Result<Vec<u8>> {
    Ok(vec![1u8; n as usize])
}

/// Runs a one-shot grandchild that fails: its error comes back through us.
async fn grandchild_fails(message: String) -> Result<()> {
    actor::open_nursery(async |an| {
        an.run_in_actor(FAIL, &message, ActorOpts::new().name("grandchild")).await?;
        Ok(())
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))
}

/// Starts a grandchild, prints its pid, and holds it until cancelled.
async fn hold_grandchild() -> Result<()> {
    actor::open_nursery(async |an| {
        let gc = an.start_actor("grandchild", ActorOpts::new().enable_modules(["t"])).await?;
        println!("pid {}", gc.pid());
        guest::sleep_forever().await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))
}

/// Creates `path`, registers its removal as a teardown callback, and sleeps until cancelled.
async fn touch_then_sleep(path: String) -> Result<()> {
    std::fs::write(&path, b"alive").map_err(Error::user)?;
    actor::current_actor().on_teardown(move || {
        let _ = std::fs::remove_file(&path);
    });
    guest::sleep_forever().await
}

// Typed handles on the endpoints below, declared once and used at both ends.
/// `examples/actor_tree.rs`'s `math.add`, for the case that runs that program as an actor.
const MATH_ADD: Function<(i64, i64), i64> = Function::new("math", "add");
/// What the hostile children (which are no infect actors) are asked to run.
const ANYTHING: Function<(), u64> = Function::new("t", "anything");
const ECHO: Function<u64, u64> = Function::new("t", "echo");
const FAIL: Function<String, ()> = Function::new("t", "fail");
const FAIL_TYPED: Function<String, ()> = Function::new("t", "fail_typed");
const FAIL_CLASHING: Function<(), ()> = Function::new("t", "fail_clashing");
const SLEEP_FOREVER: Function<(), ()> = Function::new("t", "sleep_forever");
const STUBBORN: Function<(), ()> = Function::new("t", "stubborn");
const PID: Function<(), u32> = Function::new("t", "pid");
const ABORT: Function<(), ()> = Function::new("t", "abort");
const PANICS: Function<(), ()> = Function::new("t", "panics");
const PANICS_ABORTING: Function<(), ()> = Function::new("t", "panics_aborting");
const INFECTED: Function<(), bool> = Function::new("t", "infected");
const GARBAGE: Function<(), u64> = Function::new("t", "garbage");
const OVERSIZE_RAW: Function<(), u64> = Function::new("t", "oversize_raw");
const TRUNCATE: Function<(), ()> = Function::new("t", "truncate");
const BIG: Function<u32, Vec<u8>> = Function::new("t", "big");
const ECHO_BYTES: Function<Vec<u8>, Vec<u8>> = Function::new("t", "echo_bytes");
const GRANDCHILD_FAILS: Function<String, ()> = Function::new("t", "grandchild_fails");
const HOLD_GRANDCHILD: Function<(), ()> = Function::new("t", "hold_grandchild");
const TOUCH_THEN_SLEEP: Function<String, ()> = Function::new("t", "touch_then_sleep");

fn endpoints() -> Endpoints {
    Endpoints::new()
        .serve(ECHO, echo)
        .serve(FAIL, fail)
        .serve(FAIL_TYPED, fail_typed)
        .serve(FAIL_CLASHING, fail_clashing)
        .serve(SLEEP_FOREVER, sleep_forever)
        .serve(STUBBORN, stubborn)
        .serve(PID, pid)
        .serve(ABORT, abort)
        .serve(PANICS, panics)
        .serve(PANICS_ABORTING, panics_aborting)
        .serve(INFECTED, infected)
        .serve(GARBAGE, garbage)
        .serve(OVERSIZE_RAW, oversize_raw)
        .serve(TRUNCATE, truncate)
        .serve(BIG, big)
        .serve(ECHO_BYTES, echo_bytes)
        .serve(GRANDCHILD_FAILS, grandchild_fails)
        .serve(HOLD_GRANDCHILD, hold_grandchild)
        .serve(TOUCH_THEN_SLEEP, touch_then_sleep)
}

// ---------------------------------------------------------------- helpers

fn t() -> ActorOpts {
    ActorOpts::new().enable_modules(["t"])
}

fn temp_path(tag: &str) -> PathBuf {
    common_proc::temp_path("infect-actors", tag)
}

fn sub_root(role: &str) -> std::io::Result<std::process::Child> {
    common_proc::sub_root("ACTORS_TEST_ROLE", role)
}

// ---------------------------------------------------------------- hostile children

/// Items of the garbage flood: corrupt frames, then actor-wide error reports.
const FLOOD_GARBAGE: u64 = 2_000_000;
const FLOOD_REPORTS: u64 = 100_000;

/// A hostile child: this binary, run under a symbolic link named `hostile-<script>-<pid>`,
/// speaking the wire protocol by hand with the crate's own encoder (no actor runtime). After the
/// handshake it plays `script`, then serves: every `Start` of a function gets `StartAck` and
/// `Return(7u64)`; `Cancel{None}` or end-of-file makes it exit 0 *without* a `CancelAck`.
fn hostile_child(script: &str) -> ! {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    let env = std::env::var("INFECT_ACTOR_PIPE").expect("spawned as an actor");
    let mut fds = env.split(',').map(|f| f.parse::<i32>().expect("an fd"));
    let (rx, tx) = (fds.next().expect("rx"), fds.next().expect("tx"));
    // SAFETY: the parent handed us these two pipe ends (INFECT_ACTOR_PIPE); nothing else owns them.
    let (mut rx, mut tx) = unsafe { (std::fs::File::from_raw_fd(rx), std::fs::File::from_raw_fd(tx)) };
    let mut decoder = Box::new(FrameDecoder::<DEFAULT_MAX_FRAME>::new());
    let mut buf = vec![0u8; 16 * 1024];
    let mut next = move |decoder: &mut FrameDecoder<DEFAULT_MAX_FRAME>| loop {
        if let Some(item) = decoder.next() {
            return item.ok();
        }
        match rx.read(&mut buf) {
            Ok(0) | Err(_) => std::process::exit(0),
            Ok(n) => decoder.push(&buf[..n]),
        }
    };
    let spec = loop {
        if let Some(Msg::SpawnSpec(spec)) = next(&mut decoder) {
            break spec;
        }
    };
    let me = Aid { name: spec.name.clone(), uuid: "hostile".into(), pid: std::process::id() };
    let frame = |m: &Msg| encode_frame(m, DEFAULT_MAX_FRAME).expect("fits");
    let mut send = |bytes: &[u8]| {
        if tx.write_all(bytes).is_err() {
            std::process::exit(0);
        }
    };
    send(&frame(&Msg::Aid(me.clone())));
    match script {
        // An impostor's identity after the handshake, a call on its parent, traffic for a call
        // that was never opened.
        "out_of_dialog" => {
            send(&frame(&Msg::Aid(Aid { name: "impostor".into(), uuid: "x".into(), pid: 1 })));
            let start =
                Msg::Start { cid: 99, ns: "t".into(), func: "echo".into(), args: vec![1], kind: FuncKind::Function };
            send(&frame(&start));
            send(&frame(&Msg::Stop { cid: 12345 }));
        }
        // An acknowledgement of a cancel nobody asked for.
        "cancelack" => send(&frame(&Msg::CancelAck { cid: None })),
        "flood" => {
            let chunk = b"garbage\x00".repeat(10_000);
            for _ in 0..FLOOD_GARBAGE / 10_000 {
                send(&chunk);
            }
            let report = frame(&Msg::Error {
                cid: None,
                src: me.clone(),
                boxed_type: "Flood".into(),
                message: "x".repeat(200),
                relay_path: Vec::new(),
                canceller: None,
            });
            let chunk = report.repeat(100);
            for _ in 0..FLOOD_REPORTS / 100 {
                send(&chunk);
            }
        }
        _ => {}
    }
    loop {
        match next(&mut decoder) {
            Some(Msg::Start { cid, kind: FuncKind::Function, .. }) => {
                let value = encode_payload(&7u64).expect("a u64");
                let mut out = frame(&Msg::StartAck { cid, functype: FuncKind::Function });
                out.extend(frame(&Msg::Return { cid, value }));
                send(&out);
            }
            // Ignores the credit window: 10 items more than it may send.
            Some(Msg::Start { cid, kind: FuncKind::Context, .. }) if script == "overrun" => {
                let mut out = frame(&Msg::StartAck { cid, functype: FuncKind::Context });
                out.extend(frame(&Msg::Started { cid, value: encode_payload(&()).expect("()") }));
                for i in 0..actor::STREAM_BUFFER as u64 + 10 {
                    out.extend(frame(&Msg::Yield { cid, value: encode_payload(&i).expect("a u64") }));
                }
                out.extend(frame(&Msg::Return { cid, value: encode_payload(&()).expect("()") }));
                send(&out);
            }
            Some(Msg::Cancel { cid: None }) => std::process::exit(0),
            _ => {}
        }
    }
}

/// A link to this binary that makes it a [`hostile_child`] playing `script`; removed on drop.
struct Hostile(PathBuf);

impl Hostile {
    fn new(script: &str) -> std::result::Result<Hostile, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let link = std::env::temp_dir().join(format!("hostile-{script}-{}", us()));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(exe, &link).map_err(|e| e.to_string())?;
        Ok(Hostile(link))
    }

    fn opts(&self) -> ActorOpts {
        t().program(&self.0).cancel_timeout(Duration::from_millis(200)).term_timeout(Duration::from_millis(200))
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The script, if this process was started through a [`Hostile`] link.
fn hostile_script() -> Option<String> {
    let argv0 = std::env::args_os().next()?;
    let name = std::path::Path::new(&argv0).file_name()?.to_string_lossy().into_owned();
    let rest = name.strip_prefix("hostile-")?;
    Some(rest[..rest.rfind('-')?].to_owned())
}

// ---------------------------------------------------------------- cases

async fn portal_run_returns_value() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("echoer", t()).await?;
        let v: u64 = p.run(ECHO, &42u64).await?;
        let aid = p.aid().ok_or(Error::Closed)?;
        let graceful = p.cancel_actor().await?;
        Ok((v, aid, graceful, p.pid()))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (v, aid, graceful, pid) = r.map_err(|e| format!("{e:?}"))?;
    ensure!(v == 42, "value {v}");
    ensure!(aid.name == "echoer" && aid.pid == pid, "aid {aid:?}");
    ensure!(graceful, "cancel_actor was not graceful");
    Ok(())
}

async fn remote_failure_is_boxed() -> Check {
    let r: Result<()> = actor::open_nursery(async |an| {
        let p = an.start_actor("failer", t()).await?;
        p.run(FAIL, &"bad thing".to_owned()).await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let e = r.err().ok_or("no error")?;
    ensure!(e.kind() == "RemoteActorError", "kind {}", e.kind());
    let r = remote(&e)?;
    ensure!(r.boxed_type == "ValueError", "boxed {}", r.boxed_type);
    ensure!(r.message == "bad thing", "message {}", r.message);
    ensure!(r.src.name == "failer" && r.relay_path.is_empty(), "{r:?}");
    Ok(())
}

async fn remote_user_error_kind_is_its_type_path() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("typed", t()).await?;
        let typed = p.run(FAIL_TYPED, &"prices".to_owned()).await;
        let clash = p.run(FAIL_CLASHING, &()).await;
        p.cancel_actor().await?;
        Ok((typed, clash))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (typed, clash) = r.map_err(|e| format!("{e:?}"))?;
    let typed = typed.err().ok_or("no error")?;
    let rt = remote(&typed)?;
    ensure!(std::any::type_name::<FeedLost>() == "actors::FeedLost", "{}", std::any::type_name::<FeedLost>());
    ensure!(rt.boxed_type == "actors::FeedLost" && rt.message == "feed prices lost", "{rt:?}");
    ensure!(rt.kind() == RemoteKind::User("actors::FeedLost"), "{:?}", rt.kind());
    // A user kind named like a crate kind arrives as a user kind, not as the crate's.
    let clash = clash.err().ok_or("no error")?;
    let rc = remote(&clash)?;
    ensure!(rc.boxed_type == "user:StartedTwice" && rc.message == "my own StartedTwice", "{rc:?}");
    ensure!(rc.kind() == RemoteKind::User("user:StartedTwice") && !rc.is(ErrorKind::StartedTwice), "{rc:?}");
    Ok(())
}

async fn run_in_actor_result() -> Check {
    let v = actor::open_nursery(async |an| {
        let p = an.run_in_actor(ECHO, &5u64, ActorOpts::new()).await?;
        ensure_ok(p.name() == "echo")?;
        p.wait_for_result().await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))
    .map_err(|e| format!("{e:?}"))?;
    ensure!(v == 5, "value {v}");
    Ok(())
}

async fn run_in_actor_error() -> Check {
    // The block does not look at the result: the nursery raises it on exit.
    let r: Result<()> = actor::open_nursery(async |an| {
        an.run_in_actor(FAIL, &"one-shot failed".to_owned(), ActorOpts::new()).await?;
        Ok(())
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let e = r.err().ok_or("no error")?;
    let rem = remote(&e)?;
    ensure!(rem.boxed_type == "ValueError" && rem.message == "one-shot failed", "{e:?}");
    // The block re-raising it from wait_for_result: still one error.
    let r: Result<()> = actor::open_nursery(async |an| {
        let p = an.run_in_actor(FAIL, &"seen twice".to_owned(), ActorOpts::new()).await?;
        p.wait_for_result().await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let e = r.err().ok_or("no error")?;
    // Counted once by identity (the portal's result and the nursery's record are one error).
    ensure!(matches!(&e, Error::RemoteActor(r) if r.message == "seen twice"), "{e:?}");
    Ok(())
}

async fn two_failures_make_a_group() -> Check {
    let r: Result<()> = actor::open_nursery(async |an| {
        an.run_in_actor(FAIL, &"one".to_owned(), ActorOpts::new().name("first")).await?;
        an.run_in_actor(FAIL, &"two".to_owned(), ActorOpts::new().name("second")).await?;
        Ok(())
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let Err(Error::Group(g)) = r else {
        return Err(format!("expected a group, got {r:?}"));
    };
    ensure!(g.0.len() == 2, "{} errors", g.0.len());
    let mut got: Vec<(String, String, String)> = Vec::new();
    for e in &g.0 {
        let r = remote(e)?;
        got.push((r.src.name.clone(), r.boxed_type.clone(), r.message.clone()));
    }
    got.sort();
    ensure!(
        got == [
            ("first".into(), "ValueError".into(), "one".into()),
            ("second".into(), "ValueError".into(), "two".into())
        ],
        "{got:?}"
    );
    Ok(())
}

async fn bad_requests_keep_the_child_serving() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("picky", t()).await?;
        let a = p.run(Function::<u64, u64>::new("other", "echo"), &1).await;
        let b = p.run(Function::<u64, u64>::new("t", "nope"), &1).await;
        let c = p.run(Function::<_, u64>::new("t", "echo"), &"not a number").await;
        let ok: u64 = p.run(ECHO, &9u64).await?;
        Ok((a, b, c, ok))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (a, b, c, ok) = r.map_err(|e| format!("{e:?}"))?;
    let a = a.err().ok_or("namespace accepted")?;
    let ra = remote(&a)?;
    ensure!(ra.boxed_type == "ModuleNotExposed", "{a:?}");
    // Matched without comparing strings.
    ensure!(ra.kind() == RemoteKind::Crate(ErrorKind::ModuleNotExposed) && ra.is(ErrorKind::ModuleNotExposed), "{a:?}");
    ensure!(
        ra.message
            == "namespace 'other' is not enabled in actor 'picky': add it to the actor's `ActorOpts::enable_modules` when starting it",
        "{}",
        ra.message
    );
    let b = b.err().ok_or("unknown function accepted")?;
    let rb = remote(&b)?;
    ensure!(rb.boxed_type == "UnknownFunction" && rb.is(ErrorKind::UnknownFunction), "{b:?}");
    ensure!(rb.message.starts_with("no function 'nope' in namespace 't' of actor 'picky'"), "{}", rb.message);
    let c = c.err().ok_or("bad argument accepted")?;
    let rc = remote(&c)?;
    ensure!(rc.boxed_type == "Decode" && rc.kind() == RemoteKind::Crate(ErrorKind::Decode), "{c:?}");
    ensure!(rc.message.starts_with("could not decode the payload as a `u64`"), "{}", rc.message);
    ensure!(ok == 9, "then {ok}");
    Ok(())
}

async fn grandchild_error_relays_to_root() -> Check {
    let r: Result<()> = actor::open_nursery(async |an| {
        let p = an.start_actor("middle", t()).await?;
        p.run(GRANDCHILD_FAILS, &"deep trouble".to_owned()).await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let e = r.err().ok_or("no error")?;
    let r = remote(&e)?;
    ensure!(r.boxed_type == "ValueError" && r.message == "deep trouble", "{e:?}");
    ensure!(r.src.name == "grandchild", "src {:?}", r.src);
    ensure!(r.relay_path == ["middle"], "relay_path {:?}", r.relay_path);
    Ok(())
}

async fn cancel_actor_on_a_busy_child() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("busy", t()).await?;
        let out = std::rc::Rc::new(std::cell::RefCell::new(None));
        let graceful = guest::open_nursery(async |n| {
            let (p2, o) = (p.clone(), out.clone());
            n.start_soon(async move {
                *o.borrow_mut() = Some(p2.run(SLEEP_FOREVER, &()).await);
                Ok(())
            })?;
            guest::sleep(Duration::from_millis(100)).await?;
            p.cancel_actor().await
        })
        .await?
        .ok_or(Error::Cancelled)?;
        let out = out.borrow_mut().take();
        Ok((graceful, out))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (graceful, out) = r.map_err(|e| format!("{e:?}"))?;
    ensure!(graceful, "not graceful");
    match out {
        Some(Err(Error::ContextCancelled { canceller, remote })) => {
            ensure!(canceller == "root" && remote.src.name == "busy", "{canceller} {remote:?}");
        }
        other => return Err(format!("call ended with {other:?}")),
    }
    Ok(())
}

async fn stubborn_child_is_killed_by_the_ladder() -> Check {
    let opts = t().cancel_timeout(Duration::from_millis(200)).term_timeout(Duration::from_millis(200));
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("stubborn", opts).await?;
        let out = std::rc::Rc::new(std::cell::RefCell::new(None));
        let (graceful, took) = guest::open_nursery(async |n| {
            let (p2, o) = (p.clone(), out.clone());
            n.start_soon(async move {
                *o.borrow_mut() = Some(p2.run(STUBBORN, &()).await);
                Ok(())
            })?;
            guest::sleep(Duration::from_millis(100)).await?;
            let t0 = Instant::now();
            let g = p.cancel_actor().await?;
            Ok((g, t0.elapsed()))
        })
        .await?
        .ok_or(Error::Cancelled)?;
        let out = out.borrow_mut().take();
        Ok((graceful, took, out))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (graceful, took, out) = r.map_err(|e| format!("{e:?}"))?;
    ensure!(!graceful, "reported graceful");
    ensure!(took >= Duration::from_millis(400) && took < Duration::from_millis(900), "ladder took {took:?}");
    match out {
        Some(Err(Error::ActorDied { actor, code: None, signal: Some(9), panic: None, stderr: None })) => {
            ensure!(actor == "stubborn", "{actor}")
        }
        other => return Err(format!("call ended with {other:?}")),
    }
    Ok(())
}

async fn killed_child_mid_call_is_an_error() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("victim", t()).await?;
        let pid: u32 = p.run(PID, &()).await?;
        let out = guest::open_nursery(async |n| {
            n.start_soon(async move {
                guest::sleep(Duration::from_millis(50)).await?;
                signal(pid, libc::SIGKILL);
                Ok(())
            })?;
            Ok(guest::fail_after(Duration::from_secs(5), p.run(SLEEP_FOREVER, &())).await)
        })
        .await?
        .ok_or(Error::Cancelled)?;
        Ok(out)
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    match r.map_err(|e| format!("{e:?}"))? {
        Err(Error::ActorDied { actor, code: None, signal: Some(9), panic: None, stderr: None }) => {
            ensure!(actor == "victim", "{actor}")
        }
        other => return Err(format!("call ended with {other:?}")),
    }
    Ok(())
}

async fn abort_reaches_the_parent() -> Check {
    let r = actor::open_nursery(async |an| {
        let a = an.start_actor("aborter", t()).await?;
        Ok(a.run(ABORT, &()).await)
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    match r.map_err(|e| format!("{e:?}"))? {
        Err(Error::ActorDied { ref actor, code: None, signal: Some(6), panic: None, stderr: None })
            if actor == "aborter" =>
        {
            Ok(())
        }
        other => Err(format!("abort: {other:?}")),
    }
}

/// With unwinding, a panic in an endpoint is caught where the call's task ends: the caller gets
/// a remote error of kind `Panic` with the message and `file:line:col`, and the actor serves on.
/// Built with `panic = "abort"` (`cargo test --profile release-min --test actors`), the actor
/// dies of `SIGABRT` instead and its `ActorDied` carries the same report.
async fn panic_in_endpoint_is_boxed_and_the_actor_serves_on() -> Check {
    let want = format!("panicked at tests/actors.rs:{PANIC_LINE}:5: endpoint panicked on purpose");
    if cfg!(panic = "abort") {
        let r = actor::open_nursery(async |an| {
            let p = an.start_actor("panicker", t()).await?;
            Ok(p.run(PANICS, &()).await)
        })
        .await
        .and_then(|v| v.ok_or(infect::Error::Cancelled));
        return match r.map_err(|e| format!("{e:?}"))? {
            Err(Error::ActorDied { code: None, signal: Some(6), panic: Some(msg), .. }) if msg == want => Ok(()),
            other => Err(format!("expected ActorDied with {want:?}, got {other:?}")),
        };
    }
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("panicker", t()).await?;
        let panicked = p.run(PANICS, &()).await;
        let after: u64 = p.run(ECHO, &3u64).await?;
        let graceful = p.cancel_actor().await?;
        Ok((panicked, after, graceful))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (panicked, after, graceful) = r.map_err(|e| format!("{e:?}"))?;
    let e = panicked.err().ok_or("the panic returned Ok")?;
    ensure!(e.kind() == "RemoteActorError", "{e:?}");
    let re = remote(&e)?;
    ensure!(re.boxed_type == "Panic" && re.src.name == "panicker", "{e:?}");
    ensure!(re.message == want, "message {:?}, expected {want:?}", re.message);
    ensure!(after == 3 && graceful, "after {after}, graceful {graceful}");
    Ok(())
}

/// Under `panic = "abort"` (taken here through the test switch), the hook writes the panic to
/// the parent before the abort: the call's `ActorDied` carries it.
async fn panic_under_abort_reports_its_message() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("abort_panicker", t()).await?;
        Ok(p.run(PANICS_ABORTING, &()).await)
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    match r.map_err(|e| format!("{e:?}"))? {
        Err(
            ref e @ Error::ActorDied { ref actor, code: None, signal: Some(6), panic: Some(ref msg), stderr: None },
        ) if actor == "abort_panicker" => {
            let line = PANIC_LINE + 6;
            let want = format!("panicked at tests/actors.rs:{line}:5: aborting panic on purpose");
            ensure!(*msg == want, "panic {msg:?}, expected {want:?}");
            ensure!(e.to_string().ends_with(&format!("after it {want}")), "{e}");
            Ok(())
        }
        other => Err(format!("expected ActorDied by SIGABRT with the panic, got {other:?}")),
    }
}

async fn damaged_streams() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("garbler", t()).await?;
        // Arguments too big for a frame: refused here, before a byte is written (cid 1).
        let huge = vec![0u64; 70_000];
        let too_big = p.run(Function::<_, u64>::new("t", "echo"), &huge).await;
        let expected = encode_frame(
            &Msg::Start {
                cid: 1,
                ns: "t".into(),
                func: "echo".into(),
                args: encode_payload(&huge)?,
                kind: FuncKind::Function,
            },
            usize::MAX,
        )?
        .len();
        let after: u64 = p.run(ECHO, &3u64).await?;
        // Garbage, then a valid answer.
        let g: u64 = p.run(GARBAGE, &()).await?;
        let errors_after_garbage = p.wire_errors();
        // A raw frame over the limit, then a valid answer.
        let o: u64 = p.run(OVERSIZE_RAW, &()).await?;
        // A result too big for a frame: the child says so.
        let big = p.run(BIG, &70_000).await;
        Ok((too_big, expected, after, g, errors_after_garbage, o, p.wire_errors(), big))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (too_big, expected, after, g, errs1, o, errs2, big) = r.map_err(|e| format!("{e:?}"))?;
    match too_big {
        Err(Error::Wire(WireError::FrameTooLarge { size, max })) => {
            ensure!(size == expected && max == DEFAULT_MAX_FRAME, "size {size} (expected {expected}) max {max}")
        }
        other => return Err(format!("oversized args: {other:?}")),
    }
    ensure!(after == 3 && g == 7 && o == 7, "values {after} {g} {o}");
    ensure!(errs1 == [WireError::Corrupt { size: 8 }], "{errs1:?}");
    ensure!(
        errs2 == [WireError::Corrupt { size: 8 }, WireError::FrameTooLarge { size: 70_001, max: DEFAULT_MAX_FRAME }],
        "{errs2:?}"
    );
    let e = big.err().ok_or("big result arrived")?;
    let rb = remote(&e)?;
    ensure!(rb.boxed_type == "FrameTooLarge" && rb.message.contains("exceeds the 65536-byte frame limit"), "{e:?}");
    Ok(())
}

async fn truncated_frame_at_eof() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("truncator", t()).await?;
        let out = p.run(TRUNCATE, &()).await;
        Ok((out, p.wire_errors()))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (out, errs) = r.map_err(|e| format!("{e:?}"))?;
    match out {
        Err(Error::ActorDied { actor, code: Some(3), signal: None, panic: None, stderr: None }) => {
            ensure!(actor == "truncator", "{actor}")
        }
        other => return Err(format!("call ended with {other:?}")),
    }
    ensure!(errs == [WireError::Truncated { bytes: 3 }], "{errs:?}");
    Ok(())
}

async fn infected_and_plain_children() -> Check {
    let r = actor::open_nursery(async |an| {
        let a = an.start_actor("plain", t()).await?;
        let b = an.start_actor("infected", t().infect_host(true)).await?;
        let x: bool = a.run(INFECTED, &()).await?;
        let y: bool = b.run(INFECTED, &()).await?;
        let v: u64 = b.run(ECHO, &11u64).await?;
        Ok((x, y, v, b.cancel_actor().await?))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (x, y, v, graceful) = r.map_err(|e| format!("{e:?}"))?;
    ensure!(!x && y && v == 11 && graceful, "{x} {y} {v} {graceful}");
    ensure!(actor::current_actor().name() == "root" && !actor::current_actor().is_infected(), "root actor");
    Ok(())
}

async fn sigint_to_a_child() -> Check {
    let path = temp_path("sigint-child");
    let p2 = path.clone();
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("interrupted", t()).await?;
        let out = std::rc::Rc::new(std::cell::RefCell::new(None));
        guest::open_nursery(async |n| {
            let (pc, o) = (p.clone(), out.clone());
            let arg = p2.to_string_lossy().into_owned();
            n.start_soon(async move {
                *o.borrow_mut() = Some(pc.run(TOUCH_THEN_SLEEP, &arg).await);
                Ok(())
            })?;
            let up = wait_until(Duration::from_secs(5), || p2.exists()).await;
            ensure_ok(up)?;
            signal(p.pid(), libc::SIGINT);
            Ok(())
        })
        .await?;
        let out = out.borrow_mut().take();
        Ok(out)
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let out = r.map_err(|e| format!("{e:?}"))?;
    match out {
        Some(Err(Error::ContextCancelled { canceller, remote })) => {
            ensure!(canceller == "interrupted" && remote.src.name == "interrupted", "{canceller} {remote:?}")
        }
        other => return Err(format!("call ended with {other:?}")),
    }
    ensure!(!path.exists(), "the teardown callback did not remove {}", path.display());
    Ok(())
}

async fn sigkill_to_the_root_leaves_nothing() -> Check {
    let mut root = sub_root("tree").map_err(|e| e.to_string())?;
    let mut out = BufReader::new(root.stdout.take().ok_or("no stdout")?);
    // Two children and their two grandchildren.
    let pids = read_pids(&mut out, 4);
    ensure!(pids.len() == 4, "saw pids {pids:?}");
    signal(root.id(), libc::SIGKILL);
    let status = root.wait().map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let all_gone = wait_until(Duration::from_secs(1), || pids.iter().all(|&p| gone(p))).await;
    let left: Vec<u32> = pids.iter().copied().filter(|&p| !gone(p)).collect();
    ensure!(all_gone, "still alive after {:?}: {left:?}", t0.elapsed());
    use std::os::unix::process::ExitStatusExt;
    ensure!(status.signal() == Some(9), "sub-root status {status:?}");
    Ok(())
}

async fn sigint_to_the_root_tears_the_tree_down() -> Check {
    let mut root = sub_root("sigint").map_err(|e| e.to_string())?;
    let mut out = BufReader::new(root.stdout.take().ok_or("no stdout")?);
    let pids = read_pids(&mut out, 2);
    ensure!(pids.len() == 2, "saw pids {pids:?}");
    let files: Vec<PathBuf> =
        pids.iter().map(|p| std::env::temp_dir().join(format!("infect-actors-sub-{p}"))).collect();
    let up = wait_until(Duration::from_secs(5), || files.iter().all(|f| f.exists())).await;
    ensure!(up, "children did not start their work");
    signal(root.id(), libc::SIGINT);
    let t0 = Instant::now();
    let exited = wait_until(Duration::from_secs(5), || matches!(root.try_wait(), Ok(Some(_)))).await;
    ensure!(exited, "sub-root still running after SIGINT");
    let status = root.wait().map_err(|e| e.to_string())?;
    ensure!(status.code() == Some(130), "sub-root exited with {status:?} after {:?}", t0.elapsed());
    ensure!(pids.iter().all(|&p| gone(p)), "children left: {pids:?}");
    for f in &files {
        ensure!(!f.exists(), "teardown callback did not remove {}", f.display());
    }
    Ok(())
}

async fn root_catches_the_interrupt() -> Check {
    let mut root = sub_root("catch").map_err(|e| e.to_string())?;
    let mut out = BufReader::new(root.stdout.take().ok_or("no stdout")?);
    let pids = read_pids(&mut out, 2);
    ensure!(pids.len() == 2, "saw pids {pids:?}");
    let files: Vec<PathBuf> =
        pids.iter().map(|p| std::env::temp_dir().join(format!("infect-actors-sub-{p}"))).collect();
    let up = wait_until(Duration::from_secs(5), || files.iter().all(|f| f.exists())).await;
    ensure!(up, "children did not start their work");
    signal(root.id(), libc::SIGINT);
    let status = exit_of(&mut root, Duration::from_secs(5)).await?;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).map_err(|e| e.to_string())?;
    // The root handled it: its value's effect, exit 0, the children gone and torn down.
    ensure!(status.code() == Some(0) && rest.starts_with("caught 2 9\n"), "sub-root {status:?}, said {rest:?}");
    ensure!(pids.iter().all(|&p| gone(p)), "children left: {pids:?}");
    for f in &files {
        ensure!(!f.exists(), "teardown callback did not remove {}", f.display());
    }
    // No actor nursery open: the interrupt cancels the root future, which exits 130.
    let mut root = sub_root("bare").map_err(|e| e.to_string())?;
    let mut out = BufReader::new(root.stdout.take().ok_or("no stdout")?);
    ensure!(read_pids(&mut out, 1).len() == 1, "bare root did not start");
    signal(root.id(), libc::SIGINT);
    let status = exit_of(&mut root, Duration::from_secs(5)).await?;
    ensure!(status.code() == Some(130), "bare root {status:?}");
    Ok(())
}

/// Runs a sub-root in `role`, interrupts it once it said its pid: its status and what it said
/// after the pid.
async fn interrupt_sub_root(role: &str) -> std::result::Result<(std::process::ExitStatus, String), String> {
    let mut root = sub_root(role).map_err(|e| e.to_string())?;
    let mut out = BufReader::new(root.stdout.take().ok_or("no stdout")?);
    ensure!(read_pids(&mut out, 1).len() == 1, "{role} root did not start");
    signal(root.id(), libc::SIGINT);
    let status = exit_of(&mut root, Duration::from_secs(5)).await?;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).map_err(|e| e.to_string())?;
    Ok((status, rest))
}

/// No actor nursery open: the interrupt is `Interrupted{SIGINT}` at the root's blocked await
/// (not a cancellation), once; the root's clean-up sleep works and its value comes out of
/// `actor::main`: exit 0.
async fn root_handles_the_interrupt_at_its_await() -> Check {
    let (status, rest) = interrupt_sub_root("handle").await?;
    ensure!(status.code() == Some(0) && rest == "handled 2 after 0s\nvalue 42\n", "sub-root {status:?}, said {rest:?}");
    Ok(())
}

/// A root that propagates the interrupt from its await exits 130.
async fn root_propagating_the_interrupt_exits_130() -> Check {
    let (status, rest) = interrupt_sub_root("propagate").await?;
    ensure!(status.code() == Some(130) && rest == "sleep: Interrupted\n", "sub-root {status:?}, said {rest:?}");
    Ok(())
}

/// The root's task waiting in a guest nursery: the children are cancelled and the nursery
/// returns `Interrupted`; the root returns its value.
async fn root_waiting_in_a_guest_nursery_gets_the_interrupt() -> Check {
    let (status, rest) = interrupt_sub_root("guestnursery").await?;
    let want = "nursery Err(Interrupted { signal: 2 }), children [\"Cancelled\", \"Cancelled\"]\nvalue 7\n";
    ensure!(status.code() == Some(0) && rest == want, "sub-root {status:?}, said {rest:?}");
    Ok(())
}

/// The first interrupt handled at one sleep, the second delivered again at the next: exit 130.
async fn a_second_interrupt_after_a_handled_one_is_delivered_again() -> Check {
    let mut root = sub_root("twice").map_err(|e| e.to_string())?;
    let mut out = BufReader::new(root.stdout.take().ok_or("no stdout")?);
    ensure!(read_pids(&mut out, 1).len() == 1, "twice root did not start");
    signal(root.id(), libc::SIGINT);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).map_err(|e| e.to_string())?;
    ensure!(line == "first: Interrupted\n", "after the first interrupt: {line:?}");
    signal(root.id(), libc::SIGINT);
    let status = exit_of(&mut root, Duration::from_secs(5)).await?;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).map_err(|e| e.to_string())?;
    ensure!(status.code() == Some(130) && rest.is_empty(), "sub-root {status:?}, said {rest:?}");
    Ok(())
}

/// A root blocked in a foreign future only: the interrupt cancels it (the fallback), exit 130.
async fn root_blocked_in_a_foreign_future_is_cancelled_by_the_interrupt() -> Check {
    let (status, rest) = interrupt_sub_root("foreign").await?;
    ensure!(status.code() == Some(130) && rest.is_empty(), "sub-root {status:?}, said {rest:?}");
    Ok(())
}

/// The exit-detection path in use is the one the environment asks for.
async fn exit_detection_mode() -> Check {
    let v = actor::open_nursery(async |an| an.start_actor("mode", t()).await?.run(ECHO, &3u64).await)
        .await
        .and_then(|v| v.ok_or(infect::Error::Cancelled))
        .map_err(|e| format!("{e:?}"))?;
    ensure!(v == 3, "echo {v}");
    let fallback = actor::testing::pidfd_fallback_in_use();
    ensure!(fallback == no_pidfd(), "fallback in use: {fallback}, forced: {}", no_pidfd());
    Ok(())
}

/// Without pidfds (as under valgrind, or before Linux 5.3): the spawn / cancel / ladder / reap
/// and death-detection cases pass on the SIGCHLD fallback, in a re-run of this binary (which
/// also plays a kernel without `close_range`: the descriptor sweep goes by `/proc/self/fd`).
async fn without_pidfd_the_fallback_runs_the_cases() -> Check {
    if no_pidfd() {
        return Ok(()); // already the re-run
    }
    let cases = [
        "exit_detection_mode",
        "portal_run_returns_value",
        "run_in_actor_result",
        "run_in_actor_error",
        "two_failures_make_a_group",
        "grandchild_error_relays_to_root",
        "cancel_actor_on_a_busy_child",
        "stubborn_child_is_killed_by_the_ladder",
        "killed_child_mid_call_is_an_error",
        "abort_reaches_the_parent",
        "truncated_frame_at_eof",
        "infected_and_plain_children",
        "silent_program_times_out_the_handshake",
        "inherited_descriptors_do_not_reach_actors",
        "spawn_cancel_cycles",
    ];
    let mut run = std::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(cases)
        .env("INFECT_TEST_NO_PIDFD", "1")
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut out = run.stdout.take().ok_or("no stdout")?;
    let status = exit_of(&mut run, Duration::from_secs(60)).await?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut out, &mut text).map_err(|e| e.to_string())?;
    let want = format!("{} passed, 0 failed", cases.len());
    ensure!(status.code() == Some(0) && text.lines().last() == Some(want.as_str()), "re-run {status:?}:\n{text}");
    Ok(())
}

/// `ActorNursery::cancel()` from inside the block is the nursery's own cancel: the block
/// unwinds, the call it cut short ends `Cancelled` there, every actor is reaped, and
/// `open_nursery` returns `Ok(None)`; a block that returns right after it keeps its value.
async fn nursery_cancel_is_not_a_failure() -> Check {
    let call = std::rc::Rc::new(std::cell::RefCell::new(None));
    let c2 = call.clone();
    let live = std::rc::Rc::new(std::cell::Cell::new(usize::MAX));
    let l2 = live.clone();
    let t0 = Instant::now();
    let r: Result<Option<u32>> = infect::actor::open_nursery(async |an| {
        let a = an.start_actor("first", t()).await?;
        an.start_actor("second", t()).await?;
        guest::open_nursery(async |n| {
            n.start_soon(async move {
                *c2.borrow_mut() = Some(a.run(SLEEP_FOREVER, &()).await);
                Ok(())
            })?;
            guest::sleep(Duration::from_millis(50)).await?;
            an.cancel().await?;
            l2.set(an.live_actors());
            guest::sleep_forever().await
        })
        .await?;
        Ok(1)
    })
    .await;
    let took = t0.elapsed();
    ensure!(matches!(r, Ok(None)), "open_nursery returned {r:?}");
    ensure!(live.get() == 0, "{} actors alive after cancel()", live.get());
    let call = call.borrow_mut().take();
    ensure!(matches!(call, Some(Err(Error::Cancelled))), "the cut call ended with {call:?}");
    ensure!(took < Duration::from_secs(2), "took {took:?}");
    // Returning at once after cancel(): the block's value.
    let r = infect::actor::open_nursery(async |an| {
        an.start_actor("third", t()).await?;
        an.cancel().await?;
        Ok(an.live_actors() as u32 + 7)
    })
    .await;
    ensure!(r == Ok(Some(7)), "open_nursery returned {r:?}");
    Ok(())
}

async fn spawn_cancel_cycles() -> Check {
    async fn cycle(i: usize) -> Result<bool> {
        actor::open_nursery(async |an| {
            let p = an.start_actor(&format!("cycle{i}"), t()).await?;
            p.cancel_actor().await
        })
        .await
        .and_then(|v| v.ok_or(infect::Error::Cancelled))
    }
    for i in 0..10 {
        ensure!(cycle(i).await.map_err(|e| format!("{e:?}"))?, "cycle {i} not graceful");
    }
    let fds = open_fds();
    let rss = rss_kib();
    for i in 0..200 {
        ensure!(cycle(i).await.map_err(|e| format!("{e:?}"))?, "cycle {i} not graceful");
    }
    let grown = rss_kib().saturating_sub(rss);
    ensure!(open_fds() == fds, "descriptors changed");
    ensure!(children_of(us()).is_empty(), "children left");
    ensure!(grown <= 512, "RSS grew by {grown} KiB over 200 cycles");
    Ok(())
}

// ---------------------------------------------------------------- sub-root roles

/// Two actors at work, then the interrupt caught: clean-up that awaits and even starts an actor,
/// then a value.
async fn role_catch() -> Result<()> {
    let dir = PathBuf::from(std::env::var("ACTORS_TEST_DIR").unwrap_or_else(|_| "/tmp".into()));
    let r = actor::open_nursery(async |an| {
        guest::open_nursery(async |n| {
            for name in ["one", "two"] {
                let p = an.start_actor(name, t()).await?;
                println!("pid {}", p.pid());
                let file = dir.join(format!("infect-actors-sub-{}", p.pid())).to_string_lossy().into_owned();
                n.start_soon(async move { p.run(TOUCH_THEN_SLEEP, &file).await })?;
            }
            guest::sleep_forever().await
        })
        .await
        .map(drop)
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let Err(Error::Interrupted { signal }) = r else {
        println!("not interrupted: {r:?}");
        return Ok(());
    };
    // Nothing around us is cancelled: awaits and actors work again.
    guest::sleep(Duration::from_millis(5)).await?;
    let v: u64 = actor::open_nursery(async |an| {
        let p = an.start_actor("cleaner", t()).await?;
        p.run(ECHO, &9u64).await
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))?;
    println!("caught {signal} {v}");
    Ok(())
}

/// A root with no actor nursery, interrupted while it sleeps.
async fn role_bare() -> Result<()> {
    println!("pid {}", std::process::id());
    guest::sleep_forever().await
}

/// No actor nursery: the interrupt comes out of the sleep the root is blocked in, once; the
/// root sleeps again for its clean-up and returns a value (printed by `main`).
async fn role_handle() -> Result<u64> {
    println!("pid {}", std::process::id());
    let t0 = Instant::now();
    let r = guest::sleep(Duration::from_secs(10)).await;
    let Err(Error::Interrupted { signal }) = r else {
        println!("sleep ended with {r:?}");
        return Ok(0);
    };
    // Clean-up that awaits: nothing is cancelled, the interrupt was delivered once.
    guest::sleep(Duration::from_millis(10)).await?;
    println!("handled {signal} after {}s", t0.elapsed().as_secs());
    Ok(42)
}

/// No actor nursery: the interrupt propagates out of the root.
async fn role_propagate() -> Result<()> {
    println!("pid {}", std::process::id());
    let r = guest::sleep(Duration::from_secs(10)).await;
    println!("sleep: {}", r.as_ref().map_or_else(|e| e.kind().to_owned(), |()| "ok".to_owned()));
    r
}

/// Handles a first interrupt at its sleep, says so, sleeps again: a second interrupt after the
/// first was taken is delivered again, and this time it propagates.
async fn role_twice() -> Result<()> {
    println!("pid {}", std::process::id());
    let r = guest::sleep(Duration::from_secs(10)).await;
    println!("first: {}", r.as_ref().map_or_else(|e| e.kind().to_owned(), |()| "ok".to_owned()));
    guest::sleep(Duration::from_secs(10)).await
}

/// Blocked in a foreign future only, which no check of infect's reaches: the interrupt falls
/// back to cancelling the root, which ends as `Interrupted`.
async fn role_foreign() -> Result<()> {
    println!("pid {}", std::process::id());
    futures::future::pending::<Result<()>>().await
}

/// The root's task waits in a guest nursery whose children sleep: the interrupt cancels them and
/// the nursery returns it.
async fn role_guest_nursery() -> Result<u64> {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let r = guest::open_nursery(async |n| {
        for _ in 0..2 {
            let seen = seen.clone();
            n.start_soon(async move {
                let r = guest::sleep(Duration::from_secs(10)).await;
                seen.borrow_mut().push(r.as_ref().map_or_else(|e| e.kind().to_owned(), |()| "ok".to_owned()));
                r
            })?;
        }
        println!("pid {}", std::process::id());
        Ok(())
    })
    .await;
    println!("nursery {r:?}, children {:?}", seen.borrow());
    Ok(7)
}

/// With fd 0 closed (the next pipe lands on it): spawn an actor and call it.
async fn role_nostdin() -> Result<()> {
    // SAFETY: closing our own standard input, which nothing in this role reads.
    unsafe { libc::close(0) };
    let v: u64 = actor::open_nursery(async |an| {
        let p = an.start_actor("stdinless", t()).await?;
        let v = p.run(ECHO, &5u64).await?;
        p.cancel_actor().await?;
        Ok(v)
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))?;
    println!("echo {v}");
    Ok(())
}

/// Spawns and cancels actors in a loop until interrupted.
async fn role_spawnloop() -> Result<()> {
    println!("pid {}", std::process::id());
    let mut i = 0u64;
    loop {
        actor::open_nursery(async |an| {
            let p = an.start_actor(&format!("loop{i}"), t()).await?;
            p.cancel_actor().await.map(drop)
        })
        .await
        .and_then(|v| v.ok_or(infect::Error::Cancelled))?;
        i += 1;
    }
}

async fn role_tree() -> Result<()> {
    actor::open_nursery(async |an| {
        guest::open_nursery(async |n| {
            for name in ["left", "right"] {
                let p = an.start_actor(name, t()).await?;
                println!("pid {}", p.pid());
                n.start_soon(async move { p.run(HOLD_GRANDCHILD, &()).await })?;
            }
            guest::sleep_forever().await
        })
        .await
        .map(|_| ())
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))
}

async fn role_sigint() -> Result<()> {
    let dir = PathBuf::from(std::env::var("ACTORS_TEST_DIR").unwrap_or_else(|_| "/tmp".into()));
    actor::open_nursery(async |an| {
        guest::open_nursery(async |n| {
            for name in ["one", "two"] {
                let p = an.start_actor(name, t()).await?;
                println!("pid {}", p.pid());
                let file = dir.join(format!("infect-actors-sub-{}", p.pid())).to_string_lossy().into_owned();
                n.start_soon(async move { p.run(TOUCH_THEN_SLEEP, &file).await })?;
            }
            guest::sleep_forever().await
        })
        .await
        .map(|_| ())
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))
}

/// The example binary `actor_tree` (built by `cargo test`), next to this test's `deps/` dir.
fn example_program(name: &str) -> std::result::Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().and_then(|d| d.parent()).ok_or("no target dir")?;
    let path = dir.join("examples").join(name);
    ensure!(path.is_file(), "{} is missing (cargo test builds the examples)", path.display());
    Ok(path)
}

async fn another_program_serves_its_endpoints() -> Check {
    let program = example_program("actor_tree")?;
    let opts = ActorOpts::new().enable_modules(["math", "t"]).program(&program);
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("calculator", opts).await?;
        let sum = p.run(MATH_ADD, &(40, 2)).await?;
        let not_enabled = p.run(Function::<String, String>::new("text", "shout"), &"hi".to_owned()).await;
        let not_served = p.run(ECHO, &1u64).await;
        let unknown = p.run(Function::<(i64, i64), i64>::new("math", "nope"), &(1, 2)).await;
        let again = p.run(MATH_ADD, &(1, 2)).await?;
        let graceful = p.cancel_actor().await?;
        Ok((sum, not_enabled, not_served, unknown, again, graceful))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (sum, not_enabled, not_served, unknown, again, graceful) = r.map_err(|e| format!("{e:?}"))?;
    ensure!(sum == 42 && again == 3, "sums {sum} {again}");
    // "text" is served by that program but not enabled for this actor.
    let e = not_enabled.err().ok_or("namespace accepted")?;
    let r = remote(&e)?;
    ensure!(r.boxed_type == "ModuleNotExposed", "{e:?}");
    ensure!(
        r.message
            == "namespace 'text' is not enabled in actor 'calculator': add it to the actor's `ActorOpts::enable_modules` when starting it",
        "{}",
        r.message
    );
    // "t" is enabled, but that program registers nothing in it (this binary does).
    let fn_msg = |func: &str, ns: &str| {
        format!(
            "no function '{func}' in namespace '{ns}' of actor 'calculator': register it with `Endpoints::serve` in the binary the actor runs"
        )
    };
    for (e, func, ns) in [(not_served.err(), "echo", "t"), (unknown.err(), "nope", "math")] {
        let e = e.ok_or("unknown function accepted")?;
        let r = remote(&e)?;
        ensure!(r.boxed_type == "UnknownFunction", "{e:?}");
        ensure!(r.message == fn_msg(func, ns), "{}", r.message);
        ensure!(r.src.name == "calculator" && r.relay_path.is_empty(), "{r:?}");
    }
    ensure!(graceful, "cancel_actor was not graceful");
    Ok(())
}

async fn missing_program_is_a_spawn_error() -> Check {
    let program = temp_path("no-such-program");
    let t0 = Instant::now();
    let r = actor::open_nursery(async |an| {
        an.start_actor("ghost", ActorOpts::new().enable_modules(["t"]).program(&program)).await?;
        Ok(())
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    ensure!(t0.elapsed() < Duration::from_secs(2), "took {:?}", t0.elapsed());
    let Err(Error::SpawnFailed { actor, reason, source }) = &r else {
        return Err(format!("expected SpawnFailed, got {r:?}"));
    };
    ensure!(actor == "ghost", "actor {actor}");
    // The OS error is kept whole: execve's ENOENT.
    let errno = source.as_ref().and_then(|s| s.raw_os_error());
    ensure!(errno == Some(libc::ENOENT), "source {source:?}");
    ensure!(
        r.as_ref().err().and_then(|e| e.io_error()).map(|e| e.kind()) == Some(std::io::ErrorKind::NotFound),
        "{r:?}"
    );
    ensure!(reason.starts_with(&format!("{}: ", program.display())), "reason {reason:?}");
    let shown = r.as_ref().err().map(|e| e.to_string()).unwrap_or_default();
    ensure!(shown.starts_with(&format!("could not start actor 'ghost': {}: ", program.display())), "{shown}");
    Ok(())
}

async fn configured_frame_limit() -> Check {
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("small", t().max_frame(256)).await?;
        // Arguments over 256 bytes: refused here, before a byte is written (cid 1).
        let arg = vec![7u8; 300];
        let too_big = p.run(ECHO_BYTES, &arg).await;
        let expected = encode_frame(
            &Msg::Start {
                cid: 1,
                ns: "t".into(),
                func: "echo_bytes".into(),
                args: encode_payload(&arg)?,
                kind: FuncKind::Function,
            },
            usize::MAX,
        )?
        .len();
        // Still serving, with small payloads both ways.
        let small = p.run(ECHO_BYTES, &vec![1u8; 100]).await?;
        // A result over 256 bytes: the child refuses to send it and reports an error instead.
        let big = p.run(BIG, &300).await;
        let after: u64 = p.run(ECHO, &11u64).await?;
        let graceful = p.cancel_actor().await?;
        Ok((too_big, expected, small, big, after, graceful, p.wire_errors()))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (too_big, expected, small, big, after, graceful, errs) = r.map_err(|e| format!("{e:?}"))?;
    match too_big {
        Err(Error::Wire(WireError::FrameTooLarge { size, max })) => {
            ensure!(size == expected && expected > 256 && max == 256, "size {size} (expected {expected}) max {max}")
        }
        other => return Err(format!("oversized args: {other:?}")),
    }
    ensure!(small == vec![1u8; 100], "small echo {} bytes", small.len());
    let e = big.err().ok_or("big result arrived")?;
    let rb = remote(&e)?;
    ensure!(rb.boxed_type == "FrameTooLarge" && rb.message.contains("exceeds the 256-byte frame limit"), "{e:?}");
    ensure!(rb.src.name == "small", "{rb:?}");
    ensure!(after == 11 && graceful, "after {after}, graceful {graceful}");
    ensure!(errs.is_empty(), "wire errors {errs:?}");
    Ok(())
}

/// An `UnknownFunction` report for a 120-byte function name does not fit in a 256-byte frame
/// (with the 78 bytes, whether it fits depends on the width of the pid and the uuid):
/// it arrives shortened (kind and source kept, the message cut and marked), and the actor goes
/// on serving. (It used to be dropped, and the call waited forever.)
async fn oversized_unknown_function_report_is_shortened() -> Check {
    let func = "f".repeat(120);
    let r = guest::fail_after(
        Duration::from_secs(5),
        actor::open_nursery(async |an| {
            let p = an.start_actor("small", t().max_frame(256)).await?;
            let unknown = p.run(Function::<u64, u64>::new("t", func.clone().leak()), &1).await;
            let after: u64 = p.run(ECHO, &5u64).await?;
            Ok((unknown, after, p.cancel_actor().await?))
        }),
    )
    .await;
    let (unknown, after, graceful) = r.and_then(|v| v.ok_or(Error::Cancelled)).map_err(|e| format!("{e:?}"))?;
    let e = unknown.err().ok_or("an unknown function answered")?;
    let rb = remote(&e)?;
    ensure!(rb.boxed_type == "UnknownFunction" && rb.src.name == "small", "{e:?}");
    let full = format!(
        "no function '{func}' in namespace 't' of actor 'small': register it with `Endpoints::serve` in the binary the actor runs"
    );
    let kept = rb.message.strip_suffix(CUT_MARKER).ok_or_else(|| format!("not marked as cut: {:?}", rb.message))?;
    ensure!(full.starts_with(kept) && kept.len() > 100 && kept.len() < full.len(), "message {:?}", rb.message);
    ensure!(after == 5 && graceful, "after {after}, graceful {graceful}");
    Ok(())
}

/// An actor with an 80-character name fails with a 200-byte message at a 256-byte frame limit:
/// the report is shortened to fit, with its kind and its full source name.
async fn oversized_endpoint_error_is_shortened() -> Check {
    let name = "n".repeat(80);
    let message = "e".repeat(200);
    let r = guest::fail_after(
        Duration::from_secs(5),
        actor::open_nursery(async |an| {
            let p = an.start_actor(&name, t().max_frame(256)).await?;
            let failed = p.run(FAIL, &message).await;
            Ok((failed, p.cancel_actor().await?))
        }),
    )
    .await;
    let (failed, graceful) = r.and_then(|v| v.ok_or(Error::Cancelled)).map_err(|e| format!("{e:?}"))?;
    let e = failed.err().ok_or("the call succeeded")?;
    let rb = remote(&e)?;
    ensure!(rb.boxed_type == "ValueError" && rb.src.name == name, "{e:?}");
    let kept = rb.message.strip_suffix(CUT_MARKER).ok_or_else(|| format!("not marked as cut: {:?}", rb.message))?;
    ensure!(message.starts_with(kept) && !kept.is_empty() && kept.len() < 200, "message {:?}", rb.message);
    ensure!(graceful, "cancel_actor was not graceful");
    Ok(())
}

/// A child floods its parent with 2M corrupt frames and 100k actor-wide error reports: the
/// parent counts every one exactly, keeps only the most recent [`actor::RECENT_ERRORS`] of each,
/// reports only the first ones back, and its memory stays flat.
async fn flooding_child_costs_bounded_memory() -> Check {
    let hostile = Hostile::new("flood")?;
    let rss0 = rss_kib();
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("flooder", hostile.opts()).await?;
        // Served after the flood (pipe order): by now the parent has read all of it.
        let seven = p.run(ANYTHING, &()).await?;
        let grown = rss_kib().saturating_sub(rss0);
        Ok((seven, p.wire_error_count(), p.wire_errors(), p.peer_error_count(), p.peer_errors(), grown))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (seven, wire_count, wire, peer_count, peer, grown) = r.map_err(|e| format!("{e:?}"))?;
    ensure!(seven == 7, "call answered {seven}");
    ensure!(wire_count == FLOOD_GARBAGE && peer_count == FLOOD_REPORTS, "counts {wire_count} {peer_count}");
    ensure!(wire == vec![WireError::Corrupt { size: 8 }; actor::RECENT_ERRORS], "{} recent wire errors", wire.len());
    ensure!(peer.len() == actor::RECENT_ERRORS, "{} recent peer errors", peer.len());
    ensure!(peer.iter().all(|e| remote(e).is_ok_and(|r| r.boxed_type == "Flood")), "{:?}", peer.first());
    ensure!(grown < 8 * 1024, "the parent grew by {grown} KiB");
    Ok(())
}

fn unexpected(e: &Error) -> (String, String, String) {
    match e {
        Error::UnexpectedMessage { peer, msg, why } => (peer.clone(), msg.clone(), why.clone()),
        other => (String::new(), format!("{other:?}"), String::new()),
    }
}

/// A second `Aid` (an impostor with pid 1), a `Start` from the child and a `Stop` for a call
/// that was never opened are refused and recorded, in order; the actor keeps its identity and
/// goes on serving.
async fn out_of_dialog_messages_are_refused() -> Check {
    let hostile = Hostile::new("out_of_dialog")?;
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("liar", hostile.opts()).await?;
        let seven = p.run(ANYTHING, &()).await?;
        Ok((seven, p.aid(), p.pid(), p.protocol_errors(), p.protocol_error_count()))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (seven, aid, pid, errors, count) = r.map_err(|e| format!("{e:?}"))?;
    ensure!(seven == 7, "call answered {seven}");
    ensure!(aid == Some(Aid { name: "liar".into(), uuid: "hostile".into(), pid }), "identity {aid:?}");
    let got: Vec<_> = errors.iter().map(unexpected).collect();
    let want = [
        ("Aid", "the handshake is over: an actor's identity does not change"),
        ("Start", "a child does not send this to its parent (call 99)"),
        ("Stop", "no call with this id was opened (call 12345)"),
    ];
    let want: Vec<_> = want.iter().map(|(m, w)| ("liar".to_owned(), m.to_string(), w.to_string())).collect();
    ensure!(got == want && count == 3, "refused {got:?} ({count})");
    ensure!(errors[0].kind() == "UnexpectedMessage", "{:?}", errors[0]);
    Ok(())
}

/// A `CancelAck{None}` that comes before any cancel is refused: when the actor is then
/// cancelled and exits without acknowledging, `cancel_actor` does not call that graceful.
async fn unsolicited_cancel_ack_is_refused() -> Check {
    let hostile = Hostile::new("cancelack")?;
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("eager", hostile.opts()).await?;
        let seven = p.run(ANYTHING, &()).await?;
        let graceful = p.cancel_actor().await?;
        Ok((seven, graceful, p.protocol_errors()))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (seven, graceful, errors) = r.map_err(|e| format!("{e:?}"))?;
    ensure!(seven == 7 && !graceful, "answered {seven}, graceful {graceful}");
    let got: Vec<_> = errors.iter().map(unexpected).collect();
    let why = "no Cancel{None} was sent to this actor, or it was already acknowledged";
    ensure!(got == [("eager".to_owned(), "CancelAck".to_owned(), why.to_owned())], "refused {got:?}");
    Ok(())
}

/// A peer that ignores its credit window: the 10 items past it are not stored, the stream
/// fails with `StreamOverrun` saying so, and the breach is recorded once.
async fn items_past_the_window_are_an_overrun() -> Check {
    let hostile = Hostile::new("overrun")?;
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("pusher", hostile.opts()).await?;
        let out = p
            .open_context(ContextFn::<(), ()>::new("t", "stream"), &(), async |ctx, ()| {
                ctx.open_stream(async |stream| {
                    guest::sleep(Duration::from_millis(200)).await?;
                    stream.receive::<u64>().await
                })
                .await
            })
            .await;
        Ok((out, p.protocol_errors()))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (out, errors) = r.map_err(|e| format!("{e:?}"))?;
    match out {
        Err(Error::StreamOverrun { ctx, capacity: 1024, dropped: 10 }) if ctx == "t.stream" => {}
        other => return Err(format!("expected StreamOverrun, got {other:?}")),
    }
    let got: Vec<_> = errors.iter().map(unexpected).collect();
    let want = ("pusher".to_owned(), "Yield".to_owned(), "a stream item past the credit window (call 1)".to_owned());
    ensure!(got == [want], "refused {got:?}");
    Ok(())
}

/// Writes an executable shell script at a fresh temporary path (removed by the guard).
struct Script(PathBuf);

impl Script {
    fn new(tag: &str, body: &str) -> std::result::Result<Script, String> {
        use std::os::unix::fs::PermissionsExt;
        let path = temp_path(tag);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        Ok(Script(path))
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn silent_program_times_out_the_handshake() -> Check {
    // A program that never speaks the protocol: it neither reads its SpawnSpec nor sends Aid.
    let script = Script::new("mute", "exec sleep 30")?;
    let bound = Duration::from_millis(300);
    let opts = || ActorOpts::new().program(&script.0).start_timeout(bound).term_timeout(Duration::from_millis(200));
    let t0 = Instant::now();
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("mute", opts()).await;
        ensure_ok(an.live_actors() == 0)?;
        p.map(drop)
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let took = t0.elapsed();
    match &r {
        Err(e @ Error::StartTimeout { actor, timeout, stderr: None }) => {
            ensure!(actor == "mute" && *timeout == bound, "{e:?}");
            ensure!(e.kind() == "StartTimeout", "kind {}", e.kind());
            ensure!(e.to_string().starts_with("actor 'mute' did not complete its handshake within 300 ms"), "{e}");
        }
        other => return Err(format!("expected StartTimeout, got {other:?}")),
    }
    ensure!(took >= bound && took < bound + Duration::from_millis(700), "start_actor took {took:?}");
    // The same bound holds for a one-shot actor, whose call is pipelined behind the handshake.
    let t0 = Instant::now();
    let r: Result<()> = actor::open_nursery(async |an| {
        an.run_in_actor(ECHO, &1u64, opts().name("mute-once")).await?;
        Ok(())
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let took = t0.elapsed();
    match &r {
        Err(Error::StartTimeout { actor, .. }) if actor == "mute-once" => {}
        other => return Err(format!("run_in_actor: expected StartTimeout, got {other:?}")),
    }
    ensure!(took >= bound && took < bound + Duration::from_millis(700), "run_in_actor took {took:?}");
    Ok(())
}

async fn daemon_holding_the_pipes_does_not_hold_the_nursery() -> Check {
    // A foreign program forks a daemon that inherits its pipe ends and outlives it.
    let pidfile = temp_path("daemon-pid");
    let script = Script::new("daemonizer", &format!("sleep 12 &\necho $! > {}\nexec sleep 30", pidfile.display()))?;
    let opts = ActorOpts::new()
        .program(&script.0)
        .start_timeout(Duration::from_millis(300))
        .cancel_timeout(Duration::from_millis(200))
        .term_timeout(Duration::from_millis(200));
    let t0 = Instant::now();
    let r = actor::open_nursery(async |an| an.start_actor("daemonizer", opts).await.map(drop))
        .await
        .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let took = t0.elapsed();
    let daemon: Option<u32> = std::fs::read_to_string(&pidfile).ok().and_then(|p| p.trim().parse().ok());
    let _ = std::fs::remove_file(&pidfile);
    // Nothing left behind: the daemon was re-parented to us (a subreaper); kill and reap it.
    if let Some(pid) = daemon {
        signal(pid, libc::SIGKILL);
        ensure!(wait_until(Duration::from_secs(2), || gone(pid)).await, "daemon {pid} still there");
    }
    let daemon = daemon.ok_or("the script did not record its daemon")?;
    ensure!(matches!(&r, Err(Error::StartTimeout { actor, .. }) if actor == "daemonizer"), "{r:?}");
    // Start timeout, SIGTERM, reap, the bounded wait for end-of-file: not the daemon's 12 s.
    ensure!(took < Duration::from_millis(1500), "the nursery took {took:?} (daemon {daemon})");
    Ok(())
}

/// A sub-root in a process group of its own (as a shell job is), stdout piped.
fn sub_root_group(role: &str) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(std::env::current_exe()?)
        .env("ACTORS_TEST_ROLE", role)
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .spawn()
}

/// Waits (polling, bounded) for a sub-root to exit: its status.
async fn exit_of(
    root: &mut std::process::Child,
    limit: Duration,
) -> std::result::Result<std::process::ExitStatus, String> {
    let exited = wait_until(limit, || matches!(root.try_wait(), Ok(Some(_)))).await;
    if !exited {
        let _ = root.kill();
        let _ = root.wait();
        return Err(format!("sub-root {} still running after {limit:?}", root.id()));
    }
    root.wait().map_err(|e| e.to_string())
}

async fn stdin_closed_in_the_root() -> Check {
    let mut root = sub_root("nostdin").map_err(|e| e.to_string())?;
    let mut out = root.stdout.take().ok_or("no stdout")?;
    let status = exit_of(&mut root, Duration::from_secs(10)).await?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut out, &mut text).map_err(|e| e.to_string())?;
    ensure!(status.code() == Some(0) && text.starts_with("echo 5\n"), "sub-root {status:?}, said {text:?}");
    Ok(())
}

async fn inherited_descriptors_do_not_reach_actors() -> Check {
    // A descriptor this root got without close-on-exec (as from a careless parent).
    let path = temp_path("inherited");
    std::fs::write(&path, b"x").map_err(|e| e.to_string())?;
    let cpath = std::ffi::CString::new(path.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a valid NUL-terminated path and flags; the descriptor is closed below.
    let fd = unsafe { libc::open(cpath.as_ptr(), libc::O_RDONLY) };
    let _ = std::fs::remove_file(&path);
    ensure!(fd >= 0, "open failed");
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor("clean", t()).await?;
        let pid: u32 = p.run(PID, &()).await?;
        let mut fds = Vec::new();
        for e in std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(Error::user)?.flatten() {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            fds.push((e.file_name().to_string_lossy().into_owned(), target.to_string_lossy().into_owned()));
        }
        p.cancel_actor().await?;
        Ok(fds)
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    // SAFETY: `fd` was opened above and is owned by nobody else.
    unsafe { libc::close(fd) };
    let fds = r.map_err(|e| format!("{e:?}"))?;
    let leaked: Vec<&(String, String)> =
        fds.iter().filter(|(n, t)| *n == fd.to_string() || t.contains("infect-actors-")).collect();
    ensure!(leaked.is_empty(), "the child holds {leaked:?} (inherited fd {fd}); all: {fds:?}");
    Ok(())
}

async fn over_long_name_is_refused_before_spawning() -> Check {
    let name = "n".repeat(actor::MAX_ACTOR_NAME + 1);
    let r = actor::open_nursery(async |an| {
        let p = an.start_actor(&name, t()).await;
        let spawned = an.live_actors();
        // Exactly at the limit is fine.
        let ok = an.start_actor(&"n".repeat(actor::MAX_ACTOR_NAME), t()).await?;
        let v: u64 = ok.run(ECHO, &1u64).await?;
        Ok((p.map(drop), spawned, v))
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled));
    let (p, spawned, v) = r.map_err(|e| format!("{e:?}"))?;
    ensure!(spawned == 0 && v == 1, "spawned {spawned}, echo {v}");
    match p {
        Err(Error::SpawnFailed { actor, reason, source: None }) => {
            ensure!(actor == format!("{}...", "n".repeat(actor::MAX_ACTOR_NAME)), "actor {actor}");
            ensure!(reason == "an actor name must be 1 to 128 bytes long, this one is 129 bytes", "{reason}");
        }
        other => return Err(format!("expected SpawnFailed, got {other:?}")),
    }
    Ok(())
}

async fn ctrl_c_during_spawn_exits_130() -> Check {
    // A Ctrl-C reaches the whole group: the child being spawned may die of it before its
    // handler is in place, and the root may see that death before it reads its own signal.
    for round in 0..8u64 {
        let mut root = sub_root_group("spawnloop").map_err(|e| e.to_string())?;
        let mut out = BufReader::new(root.stdout.take().ok_or("no stdout")?);
        let pids = read_pids(&mut out, 1);
        ensure!(pids.len() == 1, "no ready line");
        let _ = guest::sleep(Duration::from_millis(20 + 7 * round)).await;
        // SAFETY: `kill` takes no pointers; the group is the sub-root's own.
        unsafe { libc::kill(-(root.id() as libc::pid_t), libc::SIGINT) };
        let status = exit_of(&mut root, Duration::from_secs(5)).await?;
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut rest);
        ensure!(status.code() == Some(130), "round {round}: sub-root {status:?}, said {rest:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------- runner

async fn run_all() -> Result<(usize, usize)> {
    let all: Vec<Case> = cases![
        exit_detection_mode,
        portal_run_returns_value,
        remote_failure_is_boxed,
        remote_user_error_kind_is_its_type_path,
        run_in_actor_result,
        run_in_actor_error,
        two_failures_make_a_group,
        bad_requests_keep_the_child_serving,
        another_program_serves_its_endpoints,
        missing_program_is_a_spawn_error,
        silent_program_times_out_the_handshake,
        daemon_holding_the_pipes_does_not_hold_the_nursery,
        stdin_closed_in_the_root,
        inherited_descriptors_do_not_reach_actors,
        over_long_name_is_refused_before_spawning,
        ctrl_c_during_spawn_exits_130,
        big_root_future_runs,
        main_prints_the_error_and_exits_1,
        grandchild_error_relays_to_root,
        cancel_actor_on_a_busy_child,
        stubborn_child_is_killed_by_the_ladder,
        killed_child_mid_call_is_an_error,
        abort_reaches_the_parent,
        panic_in_endpoint_is_boxed_and_the_actor_serves_on,
        panic_under_abort_reports_its_message,
        damaged_streams,
        configured_frame_limit,
        oversized_unknown_function_report_is_shortened,
        oversized_endpoint_error_is_shortened,
        flooding_child_costs_bounded_memory,
        out_of_dialog_messages_are_refused,
        unsolicited_cancel_ack_is_refused,
        items_past_the_window_are_an_overrun,
        truncated_frame_at_eof,
        infected_and_plain_children,
        sigint_to_a_child,
        sigkill_to_the_root_leaves_nothing,
        sigint_to_the_root_tears_the_tree_down,
        root_catches_the_interrupt,
        root_handles_the_interrupt_at_its_await,
        root_propagating_the_interrupt_exits_130,
        root_waiting_in_a_guest_nursery_gets_the_interrupt,
        a_second_interrupt_after_a_handled_one_is_delivered_again,
        root_blocked_in_a_foreign_future_is_cancelled_by_the_interrupt,
        nursery_cancel_is_not_a_failure,
        spawn_cancel_cycles,
        without_pidfd_the_fallback_runs_the_cases,
    ];
    Ok(common_proc::run_cases(all, Duration::from_secs(20)).await)
}

/// A root future of more than 128 KiB: a buffer held across awaits (and an actor call).
async fn big_root() -> Result<u64> {
    let mut buf = [0u8; 131_072];
    buf[0] = 1;
    guest::sleep(Duration::from_millis(1)).await?;
    let v: u64 = actor::open_nursery(async |an| {
        let p = an.start_actor("small", t()).await?;
        let v = p.run(ECHO, &41u64).await?;
        p.cancel_actor().await?;
        Ok(v)
    })
    .await
    .and_then(|v| v.ok_or(infect::Error::Cancelled))?;
    guest::sleep(Duration::from_millis(1)).await?;
    buf[131_071] = 1;
    Ok(v + u64::from(buf[0]) * u64::from(buf[131_071]))
}

async fn big_root_future_runs() -> Check {
    let mut root = sub_root("bigfuture").map_err(|e| e.to_string())?;
    let mut out = root.stdout.take().ok_or("no stdout")?;
    let status = exit_of(&mut root, Duration::from_secs(10)).await?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut out, &mut text).map_err(|e| e.to_string())?;
    ensure!(status.code() == Some(0) && text == "big 42\n", "sub-root {status:?}, said {text:?}");
    Ok(())
}

/// `actor::main` in a sub-root: prints `"<program>: <error>"` (the error's `Display`) to stderr and
/// exits 1 when the root fails; silent, exit 0, when it returns `Ok`. The failing root fails
/// with an error that came back from a child actor, so that the whole tree is up when it ends.
async fn main_prints_the_error_and_exits_1() -> Check {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let program = exe.file_name().ok_or("no file name")?.to_string_lossy().into_owned();
    let mut outcomes = Vec::new();
    for role in ["mainfails", "mainok"] {
        let mut root = std::process::Command::new(&exe)
            .env("ACTORS_TEST_ROLE", role)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut err = root.stderr.take().ok_or("no stderr")?;
        let status = exit_of(&mut root, Duration::from_secs(10)).await?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut err, &mut text).map_err(|e| e.to_string())?;
        outcomes.push((status.code(), text));
    }
    let failed = format!("{program}: {}\n", Error::NurseryClosed);
    ensure!(
        outcomes[0] == (Some(1), failed.clone()),
        "failing root: {:?}, expected (Some(1), {failed:?})",
        outcomes[0]
    );
    ensure!(outcomes[1] == (Some(0), String::new()), "succeeding root: {:?}", outcomes[1]);
    Ok(())
}

/// The root of the `mainfails` role: an error from a child, after a successful call.
async fn role_main_fails() -> Result<()> {
    actor::open_nursery::<(), _>(async |an| {
        let p = an.start_actor("helper", t()).await?;
        let v = p.run(ECHO, &7).await?;
        ensure_eq(v, 7)?;
        Err(Error::NurseryClosed)
    })
    .await
    .map(drop)
}

fn ensure_eq(a: u64, b: u64) -> Result<()> {
    if a == b { Ok(()) } else { Err(Error::msg("Mismatch", format!("{a} != {b}"))) }
}

fn main() -> std::process::ExitCode {
    if std::env::var_os("INFECT_ACTOR_PIPE").is_some() {
        // A child: keep the test output quiet (the actor's hook chains to this one); the parent
        // checks what the panics report.
        std::panic::set_hook(Box::new(|_| {}));
    }
    if let Some(script) = hostile_script() {
        hostile_child(&script);
    }
    let role = std::env::var("ACTORS_TEST_ROLE").unwrap_or_default();
    if role == "mainfails" {
        return actor::main(endpoints(), role_main_fails());
    }
    if role == "mainok" {
        return actor::main(endpoints(), async { Ok(()) });
    }
    if role == "handle" || role == "guestnursery" {
        // Their own `actor::main` call: the value must come out of it.
        let r = if role == "handle" {
            actor::run(endpoints(), role_handle())
        } else {
            actor::run(endpoints(), role_guest_nursery())
        };
        match r {
            Ok(v) => println!("value {v}"),
            Err(e) => println!("error: {e}"),
        }
        return std::process::ExitCode::SUCCESS;
    }
    if role == "bigfuture" {
        // Its own `actor::main` call, so that only this root (and its children) carry the size.
        let fut = big_root();
        assert!(std::mem::size_of_val(&fut) > 131_072);
        match actor::run(endpoints(), fut) {
            Ok(v) => println!("big {v}"),
            Err(e) => println!("error: {e}"),
        }
        return std::process::ExitCode::SUCCESS;
    }
    let r = actor::run(endpoints(), async move {
        match role.as_str() {
            "tree" => role_tree().await.map(|()| (0, 0)),
            "sigint" => role_sigint().await.map(|()| (0, 0)),
            "nostdin" => role_nostdin().await.map(|()| (0, 0)),
            "catch" => role_catch().await.map(|()| (0, 0)),
            "bare" => role_bare().await.map(|()| (0, 0)),
            "propagate" => role_propagate().await.map(|()| (0, 0)),
            "twice" => role_twice().await.map(|()| (0, 0)),
            "foreign" => role_foreign().await.map(|()| (0, 0)),
            "spawnloop" => role_spawnloop().await.map(|()| (0, 0)),
            _ => {
                // Orphaned grandchildren of a killed sub-root come to us, so that we can reap
                // them and check they are gone.
                actor::testing::set_child_subreaper().map_err(Error::user)?;
                common_proc::warm_up_pidfd_fallback(t()).await?;
                run_all().await
            }
        }
    });
    common_proc::report(r);
    std::process::ExitCode::SUCCESS
}
