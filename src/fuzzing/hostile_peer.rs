//! Fuzz target `hostile_peer`: a fake child that says whatever the input says (well-framed
//! [`Msg`]s of every kind, their call ids aimed at the parent's open calls, and raw bytes),
//! against a real parent ([`ActorNursery`](crate::actor::ActorNursery), [`Portal`], contexts and
//! streams) over a real pipe pair through the connection's transport seam, in one process (the
//! child is adopted with a stand-in for its process: it "exits" when it closes its end of the
//! pipe).
//!
//! Invariants checked on every input:
//! - the parent never panics;
//! - every call the parent makes ends, with whatever the peer answered or with
//!   [`Error::ActorDied`] once the peer is gone, within a bound (5 s of wall time; a hang fails
//!   the input), and never with a cancellation it did not ask for;
//! - memory stays bounded: no open call ever holds more than `STREAM_BUFFER + 8` messages, and
//!   the portal's error logs at most [`RECENT_ERRORS`] each (checked after every script item);
//! - the parent keeps to its credit: it never sends a call more `Yield`s than `STREAM_BUFFER`
//!   plus the credit the peer granted that call.
//!
//! Input layout: `data[0] & 1` picks the frame limit (256 bytes, or [`DEFAULT_MAX_FRAME`]);
//! bit `i` of `data[1]` runs parent call `i`: (0) a plain call, (1) a context that reads its
//! stream to the end, (2) a context that streams `16 * data[2]` items, (3) a context that
//! cancels itself; their call ids are 1, 2, ... in that order. The rest is the peer's script:
//! items of one tag byte (`% 16`) and their operands (missing bytes read as zero):
//!
//! | tag | item | tag | item |
//! |----|------|----|------|
//! | 0 | raw bytes: a length `% 64`, then the bytes | 8 | `CancelAck{cid?}` |
//! | 1 | a second `Aid` | 9 | `Error{cid?, kind, message}` |
//! | 2 | `StartAck{cid}` | 10 | `Cancel{cid?}` |
//! | 3 | `Started{cid, ()}` | 11 | `SpawnSpec`, `Start`, `TtyLock`, `TtyRelease` or `TtyGranted` (`% 5`) |
//! | 4 | `Yield{cid, u64}` | 12 | `FrameLimit{max}` |
//! | 5 | `8 * n` `Yield`s for one cid | 13 | `Credit{cid, 64 * n}` |
//! | 6 | `Stop{cid}` | 14 | a pause: the parent reads and runs |
//! | 7 | `Return{cid, bytes}` | 15 | `64 * n` non-zero bytes and a delimiter |
//!
//! A `cid` operand below 240 names call `b % 5` (0 to 4: mostly the open calls); above, one that
//! was never opened; `cid?` is `None` for an operand of 0.

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use std::time::Duration;

use crate::actor::peer::transport::PipeTransport;
use crate::actor::peer::{FrameReader, Incoming, Peer, reactor};
use crate::actor::{self, Portal, RECENT_ERRORS, STREAM_BUFFER};
use crate::guest::{self, CancelScope};
use crate::wire::{Aid, Cid, DEFAULT_MAX_FRAME, FuncKind, Msg, SpawnSpec, TtyReq, encode_frame, encode_payload};
use crate::{Error, Result};

/// Runs one fuzz input; panics if an invariant does not hold.
pub fn run(data: &[u8]) {
    // A Rust `main` ignores SIGPIPE (a write to a closed pipe is then `EPIPE`, which the
    // connection handles); libFuzzer's C `main` does not, so do it here, once.
    static IGNORE_SIGPIPE: std::sync::Once = std::sync::Once::new();
    // SAFETY: `signal` with `SIG_IGN` installs no handler code; called once, before any pipe.
    IGNORE_SIGPIPE.call_once(|| unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    });
    run_counted(data);
}

/// What one input reached, so that a replay can show it covered every path.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Calls that ended `Ok`.
    pub(crate) ok: usize,
    /// Calls that ended with the peer's error (remote, `ContextCancelled`).
    pub(crate) remote: usize,
    /// Calls that ended because the peer went away.
    pub(crate) died: usize,
    /// Streams that failed with `StreamOverrun`.
    pub(crate) overruns: usize,
    /// Calls that ended otherwise (a payload that does not decode, `NotStarted`, ...).
    pub(crate) other: usize,
    /// Messages the parent refused as out of the dialog.
    pub(crate) refused: u64,
    /// Damaged frames the parent skipped.
    pub(crate) wire_errors: u64,
    /// `Yield`s the parent sent.
    pub(crate) parent_yields: u64,
}

impl core::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.ok += o.ok;
        self.remote += o.remote;
        self.died += o.died;
        self.overruns += o.overruns;
        self.other += o.other;
        self.refused += o.refused;
        self.wire_errors += o.wire_errors;
        self.parent_yields += o.parent_yields;
    }
}

/// The input, read front to back; bytes past the end read as zero.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head.to_vec()
    }

    fn cid(&mut self) -> Cid {
        match self.byte() {
            b @ 0..240 => Cid::from(b % 5),
            b => Cid::from(b) * 1000,
        }
    }

    fn opt_cid(&mut self) -> Option<Cid> {
        match self.byte() {
            0 => None,
            b @ 1..240 => Some(Cid::from(b % 5)),
            b => Some(Cid::from(b) * 1000),
        }
    }
}

fn peer() -> Aid {
    Aid { name: "hostile".into(), uuid: "hostile-uuid".into(), pid: 1 }
}

/// One script item: bytes to write, or a pause.
enum Item {
    Bytes(Vec<u8>),
    Pause,
}

fn frame(msg: &Msg) -> Vec<u8> {
    // No limit here: a frame over the parent's limit is the parent's to refuse.
    encode_frame(msg, usize::MAX).expect("a Msg encodes")
}

fn next_item(c: &mut Cursor<'_>, credit: &RefCell<BTreeMap<Cid, u64>>) -> Item {
    let msg = match c.byte() % 16 {
        0 => {
            let n = usize::from(c.byte() % 64);
            return Item::Bytes(c.take(n));
        }
        1 => Msg::Aid(Aid { name: "impostor".into(), uuid: "x".into(), pid: 1 }),
        2 => {
            let cid = c.cid();
            let functype = if c.byte() & 1 == 0 { FuncKind::Function } else { FuncKind::Context };
            Msg::StartAck { cid, functype }
        }
        3 => Msg::Started { cid: c.cid(), value: Vec::new() },
        4 => {
            let cid = c.cid();
            Msg::Yield { cid, value: encode_payload(&u64::from(c.byte())).expect("a u64") }
        }
        5 => {
            let cid = c.cid();
            let n = u64::from(c.byte()) * 8;
            let mut out = Vec::new();
            for i in 0..n {
                out.extend(frame(&Msg::Yield { cid, value: encode_payload(&i).expect("a u64") }));
            }
            return Item::Bytes(out);
        }
        6 => Msg::Stop { cid: c.cid() },
        7 => {
            let cid = c.cid();
            let n = usize::from(c.byte() % 8);
            Msg::Return { cid, value: c.take(n) }
        }
        8 => Msg::CancelAck { cid: c.opt_cid() },
        9 => {
            let cid = c.opt_cid();
            use crate::error::ErrorKind as K;
            let kinds = ["ValueError", K::ContextCancelled.as_str(), K::Cancelled.as_str(), K::NotStarted.as_str()];
            let boxed_type = String::from(kinds[usize::from(c.byte() % 4)]);
            let len = usize::from(c.byte()) * 4;
            let canceller = if c.byte() & 1 == 0 { None } else { Some(String::from("fuzz-parent")) };
            Msg::Error { cid, src: peer(), boxed_type, message: "m".repeat(len), relay_path: vec![], canceller }
        }
        10 => Msg::Cancel { cid: c.opt_cid() },
        11 => {
            let pick = c.byte() % 5;
            if pick >= 2 {
                let req = TtyReq { who: peer(), n: u64::from(c.byte()) };
                return Item::Bytes(frame(&match pick {
                    2 => Msg::TtyLock { req },
                    3 => Msg::TtyRelease { req, quit: false },
                    _ => Msg::TtyGranted { req },
                }));
            }
            if pick == 0 {
                Msg::SpawnSpec(SpawnSpec {
                    protocol: crate::wire::PROTOCOL_VERSION,
                    parent: peer(),
                    name: "x".into(),
                    enable_modules: vec![],
                    infect_host: false,
                    debug_mode: false,
                })
            } else {
                let cid = c.cid();
                Msg::Start { cid, ns: "fz".into(), func: "f".into(), args: vec![], kind: FuncKind::Function }
            }
        }
        12 => Msg::FrameLimit { max: u32::from(u16::from_le_bytes([c.byte(), c.byte()])) },
        13 => {
            let cid = c.cid();
            let n = u32::from(c.byte()) * 64;
            *credit.borrow_mut().entry(cid).or_default() += u64::from(n);
            Msg::Credit { cid, n }
        }
        14 => return Item::Pause,
        _ => {
            let mut out = vec![0x11u8; usize::from(c.byte()) * 64];
            out.push(0);
            return Item::Bytes(out);
        }
    };
    Item::Bytes(frame(&msg))
}

/// The child's plain function the parent calls.
const FZ_F: crate::actor::Function<(), ()> = crate::actor::Function::new("fz", "f");
/// The child's context function the parent opens.
const FZ_C: crate::actor::ContextFn<(), ()> = crate::actor::ContextFn::new("fz", "c");

/// The parent's calls, by number (see the module docs).
async fn parent_call(p: &Portal, op: u8, items: u64) -> Result<u64> {
    match op {
        0 => p.run(FZ_F, &()).await.map(|()| 0),
        1 => {
            p.open_context(FZ_C, &(), async |ctx, ()| {
                ctx.open_stream(async |s| {
                    let mut n = 0;
                    while s.try_next::<u64>().await?.is_some() {
                        n += 1;
                    }
                    Ok(n)
                })
                .await
            })
            .await
        }
        2 => {
            p.open_context(FZ_C, &(), async |ctx, ()| {
                ctx.open_stream(async |s| {
                    for i in 0..items {
                        s.send(&i).await?;
                    }
                    Ok(items)
                })
                .await
            })
            .await
        }
        _ => {
            p.open_context(FZ_C, &(), async |ctx, ()| {
                ctx.cancel().await?;
                Ok(0)
            })
            .await
        }
    }
}

fn os(e: std::io::Error) -> Error {
    Error::Os { op: "pipe".into(), source: e.into() }
}

/// A pipe transport over `rx`/`tx` on this loop's reactor.
fn pipes(rx: std::os::fd::OwnedFd, tx: std::os::fd::OwnedFd) -> Result<PipeTransport> {
    PipeTransport::new(rx, tx, &reactor()?).map_err(os)
}

/// A [`Peer`] that only writes (`tx`) or only reads (`rx`): the other end is a pipe of its own
/// that nothing uses.
fn half_peer(rx: Option<std::os::fd::OwnedFd>, tx: Option<std::os::fd::OwnedFd>) -> Result<Peer> {
    let (dummy_rx, dummy_tx) = crate::reactor::fd::pipe().map_err(os)?;
    Ok(Peer::new(Box::new(pipes(rx.unwrap_or(dummy_rx), tx.unwrap_or(dummy_tx))?), DEFAULT_MAX_FRAME))
}

/// How each of the parent's calls ended, by call number.
type Outcomes = Vec<(u8, Result<u64>)>;

pub(crate) fn run_counted(data: &[u8]) -> Tally {
    let mut c = Cursor(data);
    let max = if c.byte() & 1 == 0 { 256 } else { DEFAULT_MAX_FRAME };
    let mask = c.byte();
    let items = u64::from(c.byte()) * 16;
    let script = c.0.to_vec();
    let outcomes: Rc<RefCell<Outcomes>> = Rc::default();
    let tally = Rc::new(RefCell::new(Tally::default()));
    let (outs, t) = (outcomes.clone(), tally.clone());
    let r = actor::run_bare_root("fuzz-parent", async move {
        let (p_rx, c_tx) = crate::reactor::fd::pipe().map_err(os)?;
        let (c_rx, p_tx) = crate::reactor::fd::pipe().map_err(os)?;
        let writer = half_peer(None, Some(c_tx))?;
        let listener = half_peer(Some(c_rx), None)?;
        let body = actor::open_nursery(async |an| {
            let p = an.adopt_peer("hostile", Some(peer()), Box::new(pipes(p_rx, p_tx)?), max).await?;
            let credit: Rc<RefCell<BTreeMap<Cid, u64>>> = Rc::default();
            let sent: Rc<RefCell<BTreeMap<Cid, u64>>> = Rc::default();
            let listen_scope = CancelScope::new();
            // The fake child reads everything the parent writes, checking its credit. (Its own
            // task: a scope cancelled from another branch of a `join` in the same task would
            // not wake it.)
            let (c2, s2, l2) = (credit.clone(), sent.clone(), listen_scope.clone());
            let listen = async move {
                let mut reader = FrameReader::new(DEFAULT_MAX_FRAME);
                l2.run(async {
                    loop {
                        let item = match reader.next(listener.transport(), true).await? {
                            Incoming::End(_) => return Ok(()),
                            Incoming::Frame(item) => item,
                        };
                        {
                            if let Ok(Msg::Yield { cid, .. }) = item {
                                let mut sent = s2.borrow_mut();
                                let n = sent.entry(cid).or_default();
                                *n += 1;
                                let granted = c2.borrow().get(&cid).copied().unwrap_or(0);
                                assert!(
                                    *n <= STREAM_BUFFER as u64 + granted,
                                    "call {cid}: {n} Yields, {granted} credit"
                                );
                            }
                        }
                    }
                })
                .await
                .map(drop)
            };
            let (credit_ref, script_ref, outs) = (&*credit, &script, outs.clone());
            let p2 = p.clone();
            let calls_and_script = guest::open_nursery(async move |n| {
                let p = p2;
                for op in 0..4u8 {
                    if mask & (1 << op) != 0 {
                        let (p, outs) = (p.clone(), outs.clone());
                        n.start_soon(async move {
                            let out = parent_call(&p, op, items).await;
                            outs.borrow_mut().push((op, out));
                            Ok(())
                        })?;
                    }
                }
                // The calls open first (their `Start`s go out), then the script plays.
                guest::sleep(Duration::from_micros(50)).await?;
                let mut c = Cursor(script_ref);
                // The script, then the peer "exits": end-of-file on the parent's pipe.
                while !c.0.is_empty() {
                    match next_item(&mut c, credit_ref) {
                        Item::Bytes(b) => writer.send_raw(b).await?,
                        // A timer parks the loop on the reactor, so the parent reads its pipe and
                        // runs before the script goes on.
                        Item::Pause => guest::sleep(Duration::from_micros(50)).await?,
                    }
                    guest::checkpoint().await?;
                    assert!(p.largest_inbox() <= STREAM_BUFFER + 8, "an inbox holds {}", p.largest_inbox());
                    assert!(p.wire_errors().len() <= RECENT_ERRORS && p.protocol_errors().len() <= RECENT_ERRORS);
                }
                drop(writer);
                Ok(())
            });
            let script = guest::open_nursery(async |n| {
                n.start_soon(listen)?;
                let r = calls_and_script.await;
                listen_scope.cancel();
                r
            })
            .await;
            script?;
            let mut t = t.borrow_mut();
            t.refused = p.protocol_error_count();
            t.wire_errors = p.wire_error_count();
            t.parent_yields = sent.borrow().values().sum();
            Ok(())
        });
        match guest::fail_after(Duration::from_secs(5), body).await {
            Err(Error::TooSlow) => panic!("a call of the parent did not end"),
            other => other,
        }
    });
    r.expect("the parent's nursery ends cleanly");
    let mut tally = *tally.borrow();
    let outcomes = outcomes.borrow();
    assert_eq!(outcomes.len(), (0..4).filter(|i| mask & (1 << i) != 0).count(), "every call ended");
    for (op, out) in outcomes.iter() {
        match out {
            Ok(_) => tally.ok += 1,
            Err(Error::RemoteActor(_) | Error::ContextCancelled { .. }) => tally.remote += 1,
            Err(Error::ActorDied { .. }) => tally.died += 1,
            Err(Error::StreamOverrun { .. }) => tally.overruns += 1,
            Err(Error::Cancelled | Error::TooSlow) => panic!("call {op} ended with {out:?}"),
            Err(_) => tally.other += 1,
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::translate::tests::{Rng, seeds};

    #[test]
    fn replays_the_committed_seeds() {
        let seeds = seeds("hostile_peer");
        assert!(seeds.len() >= 6, "{} seeds", seeds.len());
        let mut tally = Tally::default();
        for (name, data) in seeds {
            let t = run_counted(&data);
            std::println!("{name}: {t:?}");
            tally += t;
        }
        std::println!("{tally:?}");
        assert!(tally.ok > 0 && tally.remote > 0 && tally.died > 0 && tally.overruns > 0, "{tally:?}");
        assert!(tally.refused > 0 && tally.wire_errors > 0 && tally.parent_yields > 0, "{tally:?}");
    }

    #[test]
    fn replays_300_pseudo_random_scripts() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let mut tally = Tally::default();
        for _ in 0..300 {
            let n = 3 + usize::from(rng.below(200));
            let data: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            tally += run_counted(&data);
        }
        std::println!("{tally:?}");
        assert!(tally.ok + tally.remote + tally.died + tally.other > 100, "{tally:?}");
        assert!(tally.refused > 50 && tally.wire_errors > 50, "{tally:?}");
    }

    #[test]
    fn handles_the_degenerate_inputs() {
        run(&[]);
        run(&[0; 8]);
        run(&[0xFF; 64]);
        run(&[1, 0x0F, 0xFF, 5, 1, 0xFF, 14, 14]);
    }
}
