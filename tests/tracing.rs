//! The `tracing` feature: the exact events the runtime emits for small deterministic programs
//! on a virtual clock, captured by a hand-written subscriber (`cargo test --features tracing
//! --test tracing`).
#![cfg(feature = "tracing")]

use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infect::Error;
use infect::actor::{self, Endpoints, RootOpts};
use infect::guest::{self, GuestConfig};
use infect::host::Host;
use infect::time::VirtualClock;
use infect::to_host::{self, HostChannel, LinkOpts};
use infect::wire::{FrameDecoder, Msg, WireError, encode_frame};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Collects each event as `"<name> <field>=<value> ..."` (the message, which repeats the name,
/// left out), in the order they happen.
/// Spans are kept too: an event inside spans is `"<span>{<fields>}:...: <name> <fields>"`.
#[derive(Clone, Default)]
struct Capture {
    events: Arc<Mutex<Vec<String>>>,
    /// Each span's `name{fields}`, by id - 1.
    spans: Arc<Mutex<Vec<String>>>,
    /// The entered spans, innermost last (one thread per capture).
    stack: Arc<Mutex<Vec<u64>>>,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() != "message" {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "infect"
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut fields = String::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.spans.lock().unwrap();
        spans.push(format!("{}{{{}}}", attrs.metadata().name(), fields.trim_start()));
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let spans = self.spans.lock().unwrap();
        let mut line: String =
            self.stack.lock().unwrap().iter().map(|&i| format!("{}: ", spans[i as usize - 1])).collect();
        line.push_str(event.metadata().name());
        event.record(&mut Fields(&mut line));
        self.events.lock().unwrap().push(line);
    }
    fn enter(&self, id: &Id) {
        self.stack.lock().unwrap().push(id.into_u64());
    }
    fn exit(&self, id: &Id) {
        let popped = self.stack.lock().unwrap().pop();
        assert_eq!(popped, Some(id.into_u64()), "spans exit in the reverse order of entering");
    }
}

/// Runs `f` with the capturing subscriber as this thread's default; the events it saw.
fn capture<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let c = Capture::default();
    let out = tracing::subscriber::with_default(c.clone(), f);
    let events = std::mem::take(&mut *c.events.lock().unwrap());
    (out, events)
}

#[test]
fn a_nursery_with_one_failing_child_traces_spawn_cancel_and_finish_in_order() {
    let (out, events) = capture(|| {
        guest::run_with(GuestConfig::new(Rc::new(VirtualClock::new())), async {
            guest::open_nursery(async |n| {
                n.start_soon(async {
                    guest::sleep(Duration::from_secs(10)).await?;
                    Ok(())
                })?;
                n.start_soon(async {
                    guest::sleep(Duration::from_secs(1)).await?;
                    Err(Error::msg("Boom", "the second child fails"))
                })?;
                Ok(())
            })
            .await
        })
    });
    assert_eq!(out.map_err(|e| e.kind().to_owned()), Err("Boom".to_owned()));
    assert_eq!(
        events,
        [
            "guest.spawn task=0", // the main task
            "guest.spawn task=1",
            "guest.spawn task=2",
            // At 1 s the second child fails: its error cancels the nursery's scope from inside
            // its last poll, which wakes every task blocked in that scope (the failing child
            // too: it is still marked blocked in its sleep until its poll returns).
            "guest.scope_cancel",
            "guest.cancel task=1",
            "guest.cancel task=2",
            "guest.finish task=2",
            "guest.finish task=1", // the sleeper, its sleep cancelled
            "guest.finish task=0",
        ]
    );
}

#[test]
fn a_linked_pair_traces_its_signals_and_each_message() {
    let h = Host::builder().clock(Rc::new(VirtualClock::new())).build().unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let (out, events) = capture(move || {
        h.run_guest(async move {
            let target = |chan: HostChannel<u32, u32, ()>| async move {
                chan.started_nowait(())?;
                let v = chan.get().await?;
                chan.send(v * 10).await?;
                Ok(v)
            };
            to_host::open_channel_from(target, LinkOpts::new(), async |chan, ()| {
                chan.send(4).await?;
                let v = chan.receive().await?;
                g.borrow_mut().push(v);
                chan.wait_for_result().await
            })
            .await
        })
    });
    assert_eq!(out.unwrap(), 4);
    assert_eq!(*got.borrow(), [40]);
    assert_eq!(
        events,
        [
            "guest.spawn task=0",
            "host.spawn task=1", // the linked host task
            "link signal=\"open\" pair=1",
            "link signal=\"started\" pair=1",
            "link.guest_send pair=1",
            "link.host_get pair=1",
            "link.host_send pair=1",
            // The host task returns in the same host turn as its send, before the guest reads.
            "link signal=\"host_end\" pair=1",
            "host.finish task=1",
            "link.guest_receive pair=1 end=false",
            "link signal=\"guest_end\" pair=1",
            "guest.finish task=0",
        ]
    );
}

#[test]
fn a_failing_block_cancels_its_host_task_and_the_trace_shows_the_translation() {
    let h = Host::builder().clock(Rc::new(VirtualClock::new())).build().unwrap();
    let host_saw = Rc::new(RefCell::new(None));
    let hs = host_saw.clone();
    let (out, events) = capture(move || {
        h.run_guest(async move {
            let target = move |chan: HostChannel<u32, u32, ()>| async move {
                chan.started_nowait(())?;
                let r = chan.get().await; // waits until the block's failure cancels it
                *hs.borrow_mut() = Some(r.map_err(|e| e.kind().to_owned()));
                Ok(())
            };
            to_host::open_channel_from(target, LinkOpts::new(), async |_chan, ()| -> infect::Result<()> {
                guest::sleep(Duration::from_secs(1)).await?;
                Err(Error::msg("Boom", "the block fails"))
            })
            .await
        })
    });
    assert_eq!(out.map_err(|e| e.kind().to_owned()), Err("Boom".to_owned()));
    assert_eq!(*host_saw.borrow(), Some(Err("GuestCancelled".to_owned()))); // the translated cause
    assert_eq!(
        events,
        [
            "guest.spawn task=0",
            "host.spawn task=1",
            "link signal=\"open\" pair=1",
            "link signal=\"started\" pair=1",
            // At 1 s the block fails: the guest's end, then the teardown cancels the host task.
            "link signal=\"guest_end\" pair=1",
            "link signal=\"teardown\" pair=1",
            "host.cancel task=1",
            "link signal=\"host_end\" pair=1",
            "host.finish task=1",
            "guest.finish task=0",
        ]
    );
}

#[test]
fn a_frame_error_is_a_warning_with_its_cause() {
    let frame = encode_frame(&Msg::Cancel { cid: None }, 64).unwrap();
    let ((), events) = capture(|| {
        let mut d = FrameDecoder::<16>::new();
        d.push(&[0xff, 0x01, 0x00]); // a COBS block that claims more bytes than it has
        assert_eq!(d.next(), Some(Err(WireError::Corrupt { size: 3 })));
        d.push(&[7; 20]);
        d.push(&[0]);
        assert_eq!(d.next(), Some(Err(WireError::FrameTooLarge { size: 21, max: 16 })));
        d.push(&frame);
        assert_eq!(d.next(), Some(Ok(Msg::Cancel { cid: None })));
    });
    assert_eq!(
        events,
        ["wire.frame_error error=Corrupt { size: 3 }", "wire.frame_error error=FrameTooLarge { size: 21, max: 16 }",]
    );
}

#[test]
fn a_root_actor_runs_inside_a_span_named_after_it() {
    let (out, events) = capture(|| actor::run_with(RootOpts::new().name("tracer"), Endpoints::new(), async { Ok(7) }));
    assert_eq!(out.unwrap(), 7);
    let span = "actor{name=\"tracer\"}: ";
    assert_eq!(
        events,
        [
            "guest.spawn task=0", // the root's main task
            "guest.spawn task=1", // its signal watcher
            "guest.scope_cancel", // the watcher's scope, once the root future is done
            // No `guest.cancel`: the root future is done before the watcher's first poll, so no
            // blocked task is woken; the watcher sees its cancelled scope when first polled.
            "guest.finish task=1",
            "guest.finish task=0",
        ]
        .map(|e| format!("{span}{e}"))
    );
}
