//! Fuzz target `wire_decode`: arbitrary bytes, pushed in arbitrary chunks, never panic a
//! [`FrameDecoder`], give the same outcomes however they are chunked, only ever give the errors
//! a receiver can see, with sizes that fit the limit; and a valid frame after the garbage and a
//! delimiter still decodes, as the last outcome.
//!
//! Input layout: `data[0] % 8` is the number `k` of chunk-size bytes that follow (`k == 0`:
//! one byte at a time); the `k` bytes after it are chunk sizes, used in turn (a `0` is an empty
//! push followed by a one-byte push); everything after them is the stream. Each input is
//! checked with a 64-byte limit (oversized frames are common) and with [`DEFAULT_MAX_FRAME`].

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::wire::{DEFAULT_MAX_FRAME, FrameDecoder, FuncKind, Msg, WireError, encode_frame};

/// Runs one fuzz input; panics if an invariant does not hold.
pub fn run(data: &[u8]) {
    run_counted(data);
}

/// How many outcomes of each kind one input gave (before the known frame), so that a replay can
/// show that it reached every path.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    msgs: usize,
    too_large: usize,
    corrupt: usize,
    undecodable: usize,
    truncated: usize,
}

impl core::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.msgs += other.msgs;
        self.too_large += other.too_large;
        self.corrupt += other.corrupt;
        self.undecodable += other.undecodable;
        self.truncated += other.truncated;
    }
}

fn run_counted(data: &[u8]) -> Tally {
    let k = data.first().map_or(0, |b| usize::from(b % 8));
    let sizes = data.get(1..1 + k).unwrap_or(&[]);
    let stream = data.get(1 + k..).unwrap_or(&[]);
    let mut tally = check::<64>(sizes, stream);
    tally += check::<DEFAULT_MAX_FRAME>(sizes, stream);
    tally
}

/// The message that must come out last, after whatever garbage came before it.
fn known() -> Msg {
    Msg::Start {
        cid: 7,
        ns: String::from("fuzz"),
        func: String::from("known"),
        args: vec![0, 1, 2],
        kind: FuncKind::Context,
    }
}

/// Pushes `stream` in chunks of the sizes `sizes` (cycled), draining outcomes after each push.
fn feed_chunked<const MAX: usize>(
    decoder: &mut FrameDecoder<MAX>,
    sizes: &[u8],
    mut stream: &[u8],
    out: &mut Vec<Result<Msg, WireError>>,
) {
    let mut turn = 0;
    while !stream.is_empty() {
        let size = match sizes.get(turn % sizes.len().max(1)) {
            None => 1,
            Some(0) => {
                decoder.push(&[]);
                1
            }
            Some(&s) => usize::from(s),
        };
        let (piece, rest) = stream.split_at(size.min(stream.len()));
        decoder.push(piece);
        out.extend(decoder.by_ref());
        stream = rest;
        turn += 1;
    }
}

fn check<const MAX: usize>(sizes: &[u8], stream: &[u8]) -> Tally {
    let mut tally = Tally::default();
    let mut chunked = FrameDecoder::<MAX>::new();
    let mut outcomes = Vec::new();
    feed_chunked(&mut chunked, sizes, stream, &mut outcomes);

    // Chunking does not matter.
    let mut whole = FrameDecoder::<MAX>::new();
    whole.push(stream);
    let all_at_once: Vec<_> = whole.by_ref().collect();
    assert_eq!(outcomes, all_at_once, "outcomes depend on the chunking");

    // At most one outcome per delimiter, and only the errors a receiver can see.
    let delimiters = stream.iter().filter(|&&b| b == 0).count();
    assert!(outcomes.len() <= delimiters);
    for outcome in &outcomes {
        match outcome {
            Ok(msg) => {
                tally.msgs += 1;
                let bytes = postcard::to_allocvec(msg).expect("a decoded Msg re-encodes");
                assert_eq!(&postcard::from_bytes::<Msg>(&bytes).expect("and decodes"), msg);
            }
            Err(WireError::FrameTooLarge { size, max }) => {
                tally.too_large += 1;
                assert!(*max == MAX && *size > MAX);
            }
            Err(WireError::Corrupt { size }) => {
                tally.corrupt += 1;
                assert!((2..=MAX).contains(size));
            }
            Err(WireError::Undecodable { size, .. }) => {
                tally.undecodable += 1;
                assert!((2..=MAX).contains(size));
            }
            Err(other) => panic!("a receiver cannot see {other:?}"),
        }
    }

    // The unfinished frame is accounted for exactly.
    let partial = stream.iter().rev().take_while(|&&b| b != 0).count();
    assert_eq!(chunked.buffered(), partial);
    let expected_end = match partial {
        0 => None,
        n if n < MAX => Some(WireError::Truncated { bytes: n }),
        n => Some(WireError::FrameTooLarge { size: n, max: MAX }),
    };
    tally.truncated += usize::from(matches!(expected_end, Some(WireError::Truncated { .. })));
    assert_eq!(whole.finish(), expected_end);

    // A valid frame after the garbage and a delimiter still decodes, and comes out last.
    let frame = encode_frame(&known(), MAX).expect("the known message fits every limit");
    let mut tail = Vec::new();
    feed_chunked(&mut chunked, sizes, &[0], &mut tail);
    feed_chunked(&mut chunked, sizes, &frame, &mut tail);
    assert_eq!(tail.len(), if partial == 0 { 1 } else { 2 });
    assert_eq!(tail.last(), Some(&Ok(known())));
    if let Some(Err(
        WireError::FrameTooLarge { size, .. } | WireError::Corrupt { size } | WireError::Undecodable { size, .. },
    )) = tail.first().filter(|_| partial > 0)
    {
        assert_eq!(*size, partial + 1, "the unfinished frame ended at the added delimiter");
    }
    assert_eq!(chunked.finish(), None);
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Aid, SpawnSpec};

    /// xorshift64: a fixed, dependency-free pseudo-random sequence.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn random_msg(rng: &mut Rng) -> Msg {
        let cid = rng.next() >> rng.below(64);
        let n = rng.below(40);
        let text = |rng: &mut Rng| String::from(["", "a", "math", "worker-1", "ünïcode"][rng.below(5)]);
        let aid = |rng: &mut Rng| Aid { name: text(rng), uuid: text(rng), pid: rng.next() as u32 };
        match rng.below(15) {
            0 => Msg::Aid(aid(rng)),
            1 => Msg::SpawnSpec(SpawnSpec {
                protocol: rng.below(3) as u32,
                parent: aid(rng),
                name: text(rng),
                enable_modules: (0..rng.below(3)).map(|_| text(rng)).collect(),
                infect_host: rng.below(2) == 0,
                debug_mode: rng.below(2) == 0,
            }),
            2 => Msg::Start { cid, ns: text(rng), func: text(rng), args: rng.bytes(n), kind: FuncKind::Function },
            3 => Msg::StartAck { cid, functype: FuncKind::Context },
            4 => Msg::Started { cid, value: rng.bytes(n) },
            5 => Msg::Yield { cid, value: rng.bytes(n) },
            6 => Msg::Stop { cid },
            7 => Msg::Return { cid, value: rng.bytes(n * 3) },
            8 => Msg::CancelAck { cid: Some(cid) },
            9 => Msg::Error {
                cid: None,
                src: aid(rng),
                boxed_type: text(rng),
                message: text(rng),
                relay_path: (0..rng.below(3)).map(|_| text(rng)).collect(),
                canceller: Some(text(rng)),
            },
            10 => Msg::Cancel { cid: None },
            11 => Msg::Cancel { cid: Some(cid) },
            12 => Msg::DumpRequest { id: cid, wait_ms: rng.next() },
            13 => Msg::DumpReply { id: cid, text: text(rng) },
            _ => Msg::CancelAck { cid: None },
        }
    }

    /// A fuzz input built from pieces a real stream might hold: valid frames, damaged or cut
    /// frames, random bytes, zero runs and long runs without a delimiter.
    fn random_input(rng: &mut Rng) -> Vec<u8> {
        let k = rng.below(8);
        let mut data = vec![k as u8 + 8 * rng.below(32) as u8];
        data.extend((0..k).map(|_| rng.below(20) as u8));
        for _ in 0..rng.below(8) {
            let frame = encode_frame(&random_msg(rng), usize::MAX).unwrap();
            match rng.below(7) {
                0 | 1 => data.extend(&frame),
                2 => {
                    let mut damaged = frame.clone();
                    let at = rng.below(damaged.len());
                    damaged[at] = rng.next() as u8;
                    data.extend(damaged);
                }
                3 => data.extend(&frame[..rng.below(frame.len())]),
                4 => {
                    let n = rng.below(30);
                    data.extend(rng.bytes(n));
                }
                5 => data.extend(vec![0; rng.below(3)]),
                _ => {
                    let byte = 1 + rng.below(255) as u8;
                    data.extend(vec![byte; 50 + rng.below(100)]);
                }
            }
        }
        data
    }

    #[test]
    fn replays_2000_pseudo_random_inputs() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut tally = Tally::default();
        for _ in 0..2000 {
            tally += run_counted(&random_input(&mut rng));
        }
        // Every path of the decoder was taken, many times over.
        assert!(tally.msgs > 1000, "{tally:?}");
        assert!(tally.too_large > 100, "{tally:?}");
        assert!(tally.corrupt > 100, "{tally:?}");
        assert!(tally.undecodable > 100, "{tally:?}");
        assert!(tally.truncated > 100, "{tally:?}");
    }

    #[test]
    fn handles_the_degenerate_inputs() {
        run(&[]);
        run(&[0]);
        run(&[7]);
        run(&[3, 0, 0, 0, 0, 0, 0]);
        run(&[0; 300]);
        run(&[0xFF; 300]);
    }
}
