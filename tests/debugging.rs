//! `debug::pause()` on real terminals: each case runs one of the programs in
//! `examples/debugging/` on its own pseudo-terminal (`common_proc::pty`), reads its prompt and
//! types at it, as a user would (the scenarios of tractor's `tests/test_debugger.py` that apply).
//!
//! Every case checks the program's exit status, the exact output after the prompt, and that
//! nothing of the tree is left behind (no process of its session, running or zombie). Every
//! read is bounded ([`T`]), and a failing case kills the program's process group.

#[allow(dead_code)]
#[path = "common_proc/pty.rs"]
mod pty;

use std::path::PathBuf;
use std::time::Duration;

use pty::Pty;

/// The bound on every wait for output (generous: the machine is shared and noisy).
const T: Duration = Duration::from_secs(30);

/// The example program `name` (built by `cargo test`), next to this test's `deps/` directory.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    let path = exe.parent().and_then(|d| d.parent()).expect("target/<profile>").join("examples").join(name);
    assert!(path.is_file(), "{} is missing (cargo test builds the examples)", path.display());
    path
}

/// `examples/debugging/<name>.rs:<line>:<column>` of the (first) `debug::pause()` call in the
/// example's source: what its banner must show.
fn location(name: &str) -> String {
    let file = format!("examples/debugging/{name}.rs");
    let src = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(&file)).expect("the example");
    let (line, col) = src
        .lines()
        .enumerate()
        .find_map(|(i, l)| {
            l.find("debug::pause()").filter(|_| !l.trim_start().starts_with("//")).map(|c| (i + 1, c + 1))
        })
        .expect("a pause() call");
    format!("{file}:{line}:{col}")
}

fn start(name: &str) -> Pty {
    Pty::spawn(&example(name), true).expect("spawn on a pty")
}

/// Waits for the banner of `actor` paused in example `name` and for its prompt; returns the
/// actor's pid as the banner shows it.
fn prompt(p: &mut Pty, actor: &str, name: &str) -> u32 {
    p.expect(&format!("-- pause: actor '{actor}' (pid "), T).unwrap();
    let pid = p.expect(") at ", T).unwrap();
    let pid = pid.trim_end_matches(") at ").parse().expect("a pid");
    let at = p.expect(" --\r\n", T).unwrap();
    assert_eq!(at, format!("{} --\r\n", location(name)));
    p.expect("type c to continue, help for the commands\r\n", T).unwrap();
    p.expect(&format!("(pause {actor}) "), T).unwrap();
    pid
}

/// Waits for the program to end; checks its exit code and that nothing of its tree is left;
/// returns the output not consumed yet.
fn done(p: Pty, code: i32) -> String {
    done_with_output(p, code).0
}

/// [`done`], and all the program's output too.
fn done_with_output(mut p: Pty, code: i32) -> (String, String) {
    let (st, rest) = p.finish(T).unwrap();
    let left = pty::left_behind(p.pid(), Duration::from_secs(5));
    if !left.is_empty() {
        // SAFETY: `kill` takes no pointers; the group still has members, so its id is ours.
        unsafe {
            libc::kill(-(p.pid() as libc::pid_t), libc::SIGKILL);
        }
        panic!("left behind: {left:?}; output {:?}", p.output());
    }
    assert_eq!(pty::code(&st), code, "output {:?}", p.output());
    (without_crash_reports(&rest), p.output())
}

/// `text` without the crash reports debug mode prints to stderr (the same terminal) when an
/// actor fails: `tests/debug_dump.rs` checks their content; here only the program's own lines
/// and the prompt's count.
fn without_crash_reports(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("======== infect crash report: ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail.find("======== end of crash report: ").and_then(|e| tail[e..].find("\r\n").map(|n| e + n + 2));
        match end {
            Some(e) => rest = &tail[e..],
            None => return out + tail,
        }
    }
    out + rest
}

/// A child pauses; `c` resumes it at its very next line (the next output is that line's), and
/// the tree ends normally.
#[test]
fn continue_resumes_exactly_where_the_child_paused() {
    let mut p = start("pause_in_child");
    p.expect("worker: before pause\r\n", T).unwrap();
    prompt(&mut p, "worker", "pause_in_child");
    p.send("c\r");
    assert_eq!(done(p, 0), "c\r\nworker: after pause\r\nroot: worker returned Some(42)\r\n");
}

/// A grandchild pauses: its lock request is relayed through its parent to the root; `where`
/// names its parent.
#[test]
fn a_grandchild_pauses_through_its_parent() {
    let mut p = start("pause_in_grandchild");
    p.expect("leaf: before pause\r\n", T).unwrap();
    let pid = prompt(&mut p, "leaf", "pause_in_grandchild");
    p.send("where\r");
    let answer = p.expect("(pause leaf) ", T).unwrap();
    assert!(answer.starts_with(&format!("where\r\nactor 'leaf' (pid {pid}), parent 'middle' (pid ")), "{answer:?}");
    assert!(
        answer
            .ends_with(&format!("\r\npaused at {} in a guest task\r\n(pause leaf) ", location("pause_in_grandchild"))),
        "{answer:?}"
    );
    p.send("c\r");
    assert_eq!(done(p, 0), "c\r\nleaf: after pause\r\nroot: middle returned Some(42)\r\n");
}

/// A host task of an infected child pauses with the same `pause()`; `where` says so.
#[test]
fn a_host_task_of_an_infected_child_pauses() {
    let mut p = start("pause_in_host_task");
    p.expect("host: before pause\r\n", T).unwrap();
    prompt(&mut p, "infected", "pause_in_host_task");
    p.send("where\r");
    let answer = p.expect("(pause infected) ", T).unwrap();
    assert!(answer.contains(" in a host task\r\n"), "{answer:?}");
    p.send("c\r");
    assert_eq!(done(p, 0), "c\r\nhost: after pause\r\nroot: infected returned Some(7)\r\n");
}

/// Two actors pause at once: the second waits in the root's queue behind the first, and its
/// prompt opens only once the first continued. (The first's own line after its pause races the
/// second's banner on the terminal: two processes write; it is checked for place, not order.)
#[test]
fn two_pauses_queue_in_order() {
    let mut p = start("pause_queue");
    prompt(&mut p, "first", "pause_queue");
    // The root saw both requests queued, the holder first.
    p.expect("second: before pause\r\n", T).unwrap();
    p.expect("root: queue first, second\r\n", T).unwrap();
    p.send("c\r");
    let before = p.expect("c\r\n", T).unwrap();
    assert_eq!(before, "c\r\n", "nothing between the queue and the echo");
    prompt(&mut p, "second", "pause_queue");
    p.send("c\r");
    let (rest, all) = done_with_output(p, 0);
    assert_eq!(
        rest.replace("first: after pause\r\n", ""),
        "c\r\nsecond: after pause\r\nroot: returned Some((\"first\", \"second\"))\r\n"
    );
    // Each banner once, the second's after the first continued; the first resumed once, after
    // its `c`.
    let first_c = all.find("root: queue first, second\r\nc\r\n").expect("the first's c");
    assert_eq!(all.matches("-- pause: actor ").count(), 2, "{all:?}");
    assert!(all.find("-- pause: actor 'second'").unwrap() > first_c, "{all:?}");
    assert_eq!(all.matches("first: after pause\r\n").count(), 1, "{all:?}");
    assert!(all.find("first: after pause").unwrap() > first_c, "{all:?}");
}

/// Ctrl-C at an open prompt goes to the prompt (raw mode: no `SIGINT` for the tree): `^C`, a
/// reminder, the prompt again; the tree goes on as if nothing happened.
#[test]
fn ctrl_c_at_the_prompt_goes_to_the_prompt() {
    let mut p = start("pause_in_child");
    prompt(&mut p, "worker", "pause_in_child");
    p.send("wh\x03");
    let answer = p.expect("(pause worker) ", T).unwrap();
    assert_eq!(
        answer,
        "wh^C\r\n(Ctrl-C belongs to this prompt while it is open: c continues, quit cancels the tree)\r\n(pause worker) "
    );
    p.send("c\r");
    assert_eq!(done(p, 0), "c\r\nworker: after pause\r\nroot: worker returned Some(42)\r\n");
}

/// `SIGINT` sent to the whole tree while a grandchild is paused (a `kill -INT` from elsewhere:
/// the terminal itself sends none in raw mode) is ignored by every actor on the way to the
/// holder, and by the holder: `c` and the tree ends normally.
#[test]
fn sigint_to_the_tree_while_paused_is_ignored() {
    let mut p = start("pause_in_grandchild");
    prompt(&mut p, "leaf", "pause_in_grandchild");
    // SAFETY: `kill` takes no pointers; the group is our running program's.
    unsafe {
        libc::kill(-(p.pid() as libc::pid_t), libc::SIGINT);
    }
    p.send("where\r");
    p.expect("(pause leaf) ", T).unwrap();
    p.send("c\r");
    assert_eq!(done(p, 0), "c\r\nleaf: after pause\r\nroot: middle returned Some(42)\r\n");
}

/// `quit` at a grandchild's prompt cancels the whole tree as Ctrl-C in the root would: the
/// root sees `Interrupted` and exits 130, every actor is reaped.
#[test]
fn quit_cancels_the_whole_tree() {
    let mut p = start("pause_in_grandchild");
    prompt(&mut p, "leaf", "pause_in_grandchild");
    p.send("quit\r");
    assert_eq!(done(p, 130), "quit\r\nroot: middle failed: Interrupted\r\n");
}

/// `cancel` cancels the paused actor's work: its call ends at the root as `ContextCancelled`.
#[test]
fn cancel_ends_the_paused_actors_work() {
    let mut p = start("pause_in_child");
    prompt(&mut p, "worker", "pause_in_child");
    p.send("cancel\r");
    assert_eq!(done(p, 1), "cancel\r\nroot: worker failed: ContextCancelled\r\n");
}

/// tractor's issue #320: the tree is torn down while a grandchild is paused. The ladders are
/// 100 ms per rung, yet after several times that the leaf still answers at its prompt (nobody
/// climbed to SIGTERM/SIGKILL), and once continued it ends with the tree, the root's error out.
#[test]
fn no_ancestor_kills_a_paused_grandchild() {
    let mut p = start("pause_while_cancelled");
    let pid = prompt(&mut p, "leaf", "pause_while_cancelled");
    // Long past every rung of both ladders (2 x 100 ms per level).
    std::thread::sleep(Duration::from_millis(1500));
    p.send("where\r");
    let answer = p.expect("(pause leaf) ", T).unwrap();
    assert!(answer.starts_with(&format!("where\r\nactor 'leaf' (pid {pid}), parent 'middle'")), "{answer:?}");
    p.send("c\r");
    assert_eq!(done(p, 1), "c\r\nleaf: after pause\r\nroot: failed: RootError\r\n");
}

/// The root pauses itself; `c` resumes it.
#[test]
fn the_root_pauses_and_continues() {
    let mut p = start("pause_in_root");
    p.expect("root: before pause\r\n", T).unwrap();
    prompt(&mut p, "root", "pause_in_root");
    p.send("c\r");
    assert_eq!(done(p, 0), "c\r\nroot: pause returned ()\r\n");
}

/// `quit` at the root's own prompt: the interrupt reaches the paused root task itself.
#[test]
fn the_root_pauses_and_quits() {
    let mut p = start("pause_in_root");
    prompt(&mut p, "root", "pause_in_root");
    p.send("quit\r");
    assert_eq!(done(p, 130), "quit\r\nroot: pause failed: Interrupted\r\n");
}

/// The prompt's other commands: `help`, `attach` (the debugger command with this pid), `tree`,
/// an unknown command, and backspace in the line editor.
#[test]
fn the_prompts_commands() {
    let mut p = start("pause_in_child");
    let pid = prompt(&mut p, "worker", "pause_in_child");
    p.send("help\r");
    let help = p.expect("(pause worker) ", T).unwrap();
    for cmd in ["c, continue", "where", "tree", "attach", "cancel", "quit", "help"] {
        assert!(help.contains(&format!("\r\n  {cmd} ")), "{cmd}: {help:?}");
    }
    p.send("attach\r");
    let attach = p.expect("(pause worker) ", T).unwrap();
    assert!(attach.contains(&format!("\r\n    gdb -p {pid}\r\n")), "{attach:?}");
    p.send("tree\r");
    let tree = p.expect("(pause worker) ", T).unwrap();
    assert!(tree.starts_with("tree\r\n") && tree.len() > "tree\r\n(pause worker) ".len(), "{tree:?}");
    p.send("\r"); // an empty line: the prompt again, nothing else
    assert_eq!(p.expect("(pause worker) ", T).unwrap(), "\r\n(pause worker) ");
    p.send("bogus\r");
    let bogus = p.expect("(pause worker) ", T).unwrap();
    assert_eq!(bogus, "bogus\r\nunknown command 'bogus': help lists the commands\r\n(pause worker) ");
    p.send("wherf\x7fe\r");
    let answer = p.expect("(pause worker) ", T).unwrap();
    assert!(answer.starts_with("wherf\x08 \x08e\r\nactor 'worker'"), "{answer:?}");
    p.send("c\r");
    assert_eq!(done(p, 0), "c\r\nworker: after pause\r\nroot: worker returned Some(42)\r\n");
}

/// Outside debug mode `pause()` refuses at once, in the root and in a child, and pauses nothing.
#[test]
fn outside_debug_mode_pause_refuses() {
    let p = start("pause_outside_debug");
    assert_eq!(done(p, 0), "root: pause failed: NotDebugMode\r\nroot: worker failed: NotDebugMode\r\n");
}

/// Without a controlling terminal `pause()` fails with `NoTerminal` at once, never hangs, and
/// takes no lock (the tree ends normally).
#[test]
fn without_a_terminal_pause_fails_clearly() {
    let p = Pty::spawn(&example("pause_in_child"), false).expect("spawn on a pty");
    assert_eq!(done(p, 1), "worker: before pause\r\nroot: worker failed: NoTerminal\r\n");
}
