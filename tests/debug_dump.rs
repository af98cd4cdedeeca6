//! The live dump of known in-process trees, compared exactly: a guest run on a virtual clock
//! (tasks, a nursery, scopes with a deadline, a shield and a cancellation, where each task
//! waits), and an infected run (host tasks, linked pairs).

use std::rc::Rc;
use std::time::Duration;

use infect::guest::{self, CancelScope, Event, GuestConfig};
use infect::host::{self, Host};
use infect::time::VirtualClock;
use infect::to_host::{self, HostChannel, LinkOpts};
use infect::{Result, debug};

const F: &str = file!();

/// The line of this file that ends with the comment `// @marker`, or the line after it when the
/// comment is a line of its own (so that the expected locations survive reformatting).
fn line_of(marker: &str) -> u32 {
    let src = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(F)).unwrap();
    let tag = format!("// @{marker}");
    let lines: Vec<&str> = src.lines().collect();
    let i = lines.iter().position(|l| l.trim_end().ends_with(&tag)).unwrap_or_else(|| panic!("no {tag}"));
    let own_line = lines[i].trim_start().starts_with("//");
    i as u32 + 1 + u32::from(own_line)
}

#[test]
fn the_dump_of_a_known_guest_tree_is_exact() {
    let text = guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async {
        let ev = Event::new();
        let (tx, mut rx) = guest::channel::<u32>(1);
        let outer = CancelScope::new();
        // @nursery
        let out = guest::open_nursery(async |n| {
            let e = ev.clone();
            n.start_soon(async move { e.wait().await })?; // @event
            let o = outer.clone();
            n.start_soon(async move {
                let shielded = CancelScope::shielded();
                let sleep = guest::sleep(Duration::from_secs(60)); // @sleep
                o.run(async { shielded.run(sleep).await }).await.map(drop)
            })?;
            n.start_soon(async move {
                let receive = rx.receive(); // @receive
                guest::move_on_after(Duration::from_secs(10), receive).await.map(drop)
            })?;
            guest::sleep(Duration::from_secs(2)).await?;
            outer.cancel();
            let text = debug::dump();
            n.cancel();
            Ok(text)
        })
        .await?;
        drop(tx);
        Ok(out)
    })
    .unwrap()
    .unwrap();
    let expected = format!(
        "no actor (pid {pid})
  guest (now 2s, 4 tasks):
    task 0 (main): running (taking this dump)
      nursery (scope 1) opened at {F}:{}:19, 3 children
        task 1: waits at {F}:{}:41
        task 2: waits at {F}:{}:29
          scope 2, cancel called
            scope 3, shielded
        task 3: waits at {F}:{}:34
          scope 4, deadline 10s (in 8s)
",
        line_of("nursery"),
        line_of("event"),
        line_of("sleep"),
        line_of("receive"),
        pid = std::process::id()
    );
    assert_eq!(text, expected);
}

async fn feeder(chan: HostChannel<u32, u32, ()>) -> Result<()> {
    chan.started_nowait(())?;
    chan.send_nowait(7)?;
    host::sleep(Duration::from_secs(60)).await?; // @feeder
    Ok(())
}

#[test]
fn the_dump_of_an_infected_run_shows_host_tasks_and_linked_pairs() {
    let host = Host::builder().clock(Rc::new(VirtualClock::new())).build().unwrap();
    let text = host
        .run_guest(async {
            to_host::open_channel_from(feeder, LinkOpts::new(), async |_chan, ()| {
                // @nursery2
                guest::open_nursery(async |n| {
                    n.start_soon(async {
                        // @run_task
                        to_host::run_task(async {
                            host::sleep(Duration::from_secs(30)).await?; // @host_sleep
                            Ok(())
                        })
                        .await
                    })?;
                    guest::sleep(Duration::from_secs(1)).await?;
                    let text = debug::dump();
                    n.cancel();
                    Ok(text)
                })
                .await
            })
            .await
        })
        .unwrap()
        .unwrap();
    // The pair's own scope around the block (scope 1) has nothing to show: left out.
    let expected = format!(
        "no actor (pid {pid})
  guest (now 1s, 2 tasks):
    task 0 (main): running (taking this dump)
      nursery (scope 2) opened at {F}:{}:17, 1 children
        task 1: waits at {F}:{}:25
  host tasks:
    host task 1: waits at {F}:{}:5
    host task 2: waits at {F}:{}:29
  linked pairs:
    pair 1 (open_channel_from): Linked, in flight 0 to host, 1 to guest
    pair 2 (run_task): Linked, in flight 0 to host, 0 to guest
",
        line_of("nursery2"),
        line_of("run_task"),
        line_of("feeder"),
        line_of("host_sleep"),
        pid = std::process::id()
    );
    assert_eq!(text, expected);
}
