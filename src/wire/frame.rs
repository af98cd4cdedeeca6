//! Framing: [`encode_frame`] at the sender, the streaming [`FrameDecoder`] at the receiver.
//!
//! The decoder is a two-state machine per frame, driven by [`FrameDecoder::push`]:
//!
//! ```text
//!            non-zero byte, frame still fits          non-zero byte
//!               ┌────────┐                              ┌────────┐
//!               ▼        │   (1) frame outgrows MAX     ▼        │
//!         ┌─────────────────┐ ─────────────────▶ ┌──────────────────┐
//!   ─────▶│   Accumulating  │                    │    Discarding    │
//!         └─────────────────┘ ◀───────────────── └──────────────────┘
//!            │  ▲     (2) 0x00: decode the frame     (3) 0x00: report FrameTooLarge
//!            └──┘
//! ```
//!
//! 1. [`FrameDecoder::absorb`]: the bytes of the current frame would exceed the limit; the
//!    buffer is emptied and only a count is kept.
//! 2. [`FrameDecoder::end_frame`]: an empty frame is skipped; otherwise the buffer is
//!    COBS-decoded in place and postcard-decoded into one outcome, a [`Msg`] or a
//!    [`Corrupt`](WireError::Corrupt) / [`Undecodable`](WireError::Undecodable) error.
//! 3. [`FrameDecoder::end_frame`]: one [`FrameTooLarge`](WireError::FrameTooLarge) with the
//!    frame's exact size, then back to accumulating.
//!
//! [`FrameDecoder::finish`] at end of stream reports an unfinished frame in either state.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::error::WireError;
use super::msg::{Msg, Presized, decode_exact};

/// The default limit on a frame's size on the wire, delimiter included: 64 KiB.
///
/// Both ends of a pipe must use the same limit: the sender passes it to [`encode_frame`], the
/// receiver's [`FrameDecoder`] carries it as its `MAX` parameter (this value by default).
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// Encodes `msg` as one frame, `COBS(postcard(msg))` followed by a `0x00` delimiter, ready to be
/// written to the pipe as it is.
///
/// A frame bigger than `max` bytes is refused with
/// [`WireError::FrameTooLarge`]` { size, max }`, where `size` is the exact size it would have had;
/// since no bytes are returned, nothing of it reaches the pipe and the stream stays in sync.
///
/// ```
/// use infect::wire::{encode_frame, FrameDecoder, Msg, DEFAULT_MAX_FRAME};
///
/// let frame = encode_frame(&Msg::Stop { cid: 7 }, DEFAULT_MAX_FRAME)?;
/// assert_eq!(frame.last(), Some(&0x00));
///
/// let mut decoder = FrameDecoder::<DEFAULT_MAX_FRAME>::new();
/// decoder.push(&frame);
/// assert_eq!(decoder.next(), Some(Ok(Msg::Stop { cid: 7 })));
/// # Ok::<(), infect::wire::WireError>(())
/// ```
pub fn encode_frame(msg: &Msg, max: usize) -> Result<Vec<u8>, WireError> {
    let cobs = postcard::ser_flavors::Cobs::try_new(Presized::new());
    let frame = cobs
        .and_then(|flavor| postcard::serialize_with_flavor(msg, flavor))
        .map_err(|cause| WireError::Encode { type_name: core::any::type_name::<Msg>(), cause })?;
    if frame.len() > max {
        return Err(WireError::FrameTooLarge { size: frame.len(), max });
    }
    Ok(frame)
}

/// The marker that ends a message [`encode_frame_fit`] had to cut.
pub const CUT_MARKER: &str = "… [cut to fit the frame limit]";

/// Like [`encode_frame`], but an [`Msg::Error`] that does not fit in `max` is *shortened* until it
/// does, never refused, so that every request gets its answer. Everything else is refused as
/// `encode_frame` refuses it.
///
/// The shortening keeps the call id, the kind (`boxed_type`), the source actor's pid, and as
/// much of the rest as fits: first only the message is cut (to the longest prefix that fits,
/// on a character boundary, ending with [`CUT_MARKER`]); if that is not enough, the other text
/// fields (source name and uuid, kind, canceller, each relay hop, which keeps its last hops)
/// are cut to 64 bytes and then to 16 (each ending with `…`). Any limit of at least 256 bytes
/// (the smallest an actor accepts) fits the result.
///
/// ```
/// use infect::wire::{encode_frame_fit, Aid, FrameDecoder, Msg, CUT_MARKER};
///
/// let err = Msg::Error {
///     cid: Some(1),
///     src: Aid { name: "worker".into(), uuid: "u".into(), pid: 7 },
///     boxed_type: "ValueError".into(),
///     message: "x".repeat(1000),
///     relay_path: vec![],
///     canceller: None,
/// };
/// let frame = encode_frame_fit(&err, 256)?;
/// assert!(frame.len() <= 256);
/// let mut decoder = FrameDecoder::<256>::new();
/// decoder.push(&frame);
/// let Some(Ok(Msg::Error { boxed_type, message, .. })) = decoder.next() else { panic!() };
/// assert_eq!(boxed_type, "ValueError");
/// assert!(message.starts_with("xxx") && message.ends_with(CUT_MARKER));
/// # Ok::<(), infect::wire::WireError>(())
/// ```
pub fn encode_frame_fit(msg: &Msg, max: usize) -> Result<Vec<u8>, WireError> {
    let refused = match encode_frame(msg, max) {
        Err(e @ WireError::FrameTooLarge { .. }) if matches!(msg, Msg::Error { .. }) => e,
        other => return other,
    };
    let Msg::Error { cid, src, boxed_type, message, relay_path, canceller } = msg else { return Err(refused) };
    for cap in [usize::MAX, 64, 16] {
        let mut src = src.clone();
        cut(&mut src.name, cap);
        cut(&mut src.uuid, cap);
        let mut boxed_type = boxed_type.clone();
        cut(&mut boxed_type, cap);
        let mut canceller = canceller.clone();
        if let Some(c) = canceller.as_mut() {
            cut(c, cap);
        }
        let keep = if cap == usize::MAX { relay_path.len() } else { cap / 16 };
        let mut relay_path: Vec<String> = relay_path[relay_path.len().saturating_sub(keep)..].to_vec();
        for hop in &mut relay_path {
            cut(hop, cap);
        }
        let with = |message: String| Msg::Error {
            cid: *cid,
            src: src.clone(),
            boxed_type: boxed_type.clone(),
            message,
            relay_path: relay_path.clone(),
            canceller: canceller.clone(),
        };
        let cut_at = |n: usize| {
            let mut m = String::from(&message[..floor_char_boundary(message, n)]);
            m.push_str(CUT_MARKER);
            m
        };
        if encode_frame(&with(cut_at(0)), max).is_err() {
            continue;
        }
        // The longest prefix that fits: `lo` fits, `hi` does not.
        let (mut lo, mut hi) = (0, message.len());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if encode_frame(&with(cut_at(mid)), max).is_ok() {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        return encode_frame(&with(cut_at(lo)), max);
    }
    Err(refused)
}

/// Cuts `s` to at most `cap` bytes (on a character boundary), ending with `…`, if it is longer.
fn cut(s: &mut String, cap: usize) {
    if s.len() > cap {
        let keep = floor_char_boundary(s, cap.saturating_sub('…'.len_utf8()));
        s.truncate(keep);
        s.push('…');
    }
}

/// The largest character boundary of `s` at or below `n`.
fn floor_char_boundary(s: &str, n: usize) -> usize {
    let mut n = n.min(s.len());
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// A streaming frame decoder: push bytes in chunks of any size, take the messages out in order.
///
/// `MAX` is the frame limit (delimiter included, [`DEFAULT_MAX_FRAME`] by default); the decoder
/// owns one fixed-capacity buffer of `MAX` bytes, allocated once in [`new`](Self::new), and never
/// holds more than `MAX - 1` bytes of a frame. Decoded outcomes wait in a queue until taken with
/// [`next`](Iterator::next) (the decoder is an [`Iterator`] that returns `None` whenever the
/// queue is empty, and more after the next [`push`](Self::push)); the queue holds at most one
/// outcome per delimiter pushed, so draining it after every push keeps memory in proportion to
/// the chunk size.
///
/// Each non-empty frame gives exactly one outcome, in stream order, whatever the chunking:
///
/// ```
/// use infect::wire::{encode_frame, FrameDecoder, Msg, WireError};
///
/// let mut stream = b"garbage\x00".to_vec();
/// stream.extend(encode_frame(&Msg::Stop { cid: 1 }, 64)?);
/// stream.extend([0x11; 100]); // outgrows the 64-byte limit...
/// stream.push(0x00); // ...up to here
/// stream.extend(encode_frame(&Msg::Stop { cid: 2 }, 64)?);
/// stream.extend([0x05, 0x01]); // the peer dies mid-frame
///
/// let mut decoder = FrameDecoder::<64>::new();
/// for byte in &stream {
///     decoder.push(core::slice::from_ref(byte));
/// }
/// let outcomes: Vec<_> = decoder.by_ref().collect();
/// assert!(matches!(outcomes[0], Err(WireError::Corrupt { size: 8 })));
/// assert_eq!(outcomes[1], Ok(Msg::Stop { cid: 1 }));
/// assert_eq!(outcomes[2], Err(WireError::FrameTooLarge { size: 101, max: 64 }));
/// assert_eq!(outcomes[3], Ok(Msg::Stop { cid: 2 }));
/// assert_eq!(outcomes.len(), 4);
/// assert_eq!(decoder.finish(), Some(WireError::Truncated { bytes: 2 }));
/// # Ok::<(), WireError>(())
/// ```
pub struct FrameDecoder<const MAX: usize = DEFAULT_MAX_FRAME> {
    /// The bytes of the current frame since the last delimiter, without it. Never holds a zero
    /// and never more than `MAX - 1` bytes; empty while discarding.
    frame: Box<heapless::Vec<u8, MAX>>,
    /// While discarding an oversized frame: how many of its bytes arrived so far (> 0). Zero
    /// while accumulating.
    discarded: usize,
    /// The frame limit in force, delimiter included: `2 <= limit <= MAX` (`MAX` unless set with
    /// [`with_limit`](FrameDecoder::with_limit) or [`set_limit`](FrameDecoder::set_limit)).
    limit: usize,
    /// Outcomes of the frames that ended, oldest first.
    ready: VecDeque<Result<Msg, WireError>>,
}

impl<const MAX: usize> FrameDecoder<MAX> {
    /// The frame limit of this decoder, delimiter included.
    pub const MAX_FRAME: usize = MAX;

    /// A decoder at the start of a stream. `MAX` must be at least 2 (checked at compile time).
    ///
    /// ```
    /// use infect::wire::FrameDecoder;
    ///
    /// let decoder = FrameDecoder::<1024>::new();
    /// assert_eq!(decoder.buffered(), 0);
    /// assert_eq!(FrameDecoder::<1024>::MAX_FRAME, 1024);
    /// ```
    pub fn new() -> Self {
        const { assert!(MAX >= 2, "a frame limit below 2 bytes cannot hold any frame") };
        FrameDecoder { frame: Box::new(heapless::Vec::new()), discarded: 0, limit: MAX, ready: VecDeque::new() }
    }

    /// A decoder whose limit is `limit` (delimiter included) rather than `MAX`: a runtime limit
    /// within the buffer's capacity, clamped to `2..=MAX`. Frames over it are reported as
    /// [`FrameTooLarge`](WireError::FrameTooLarge)` { size, max: limit }` and skipped.
    ///
    /// ```
    /// use infect::wire::{encode_frame, FrameDecoder, Msg, WireError};
    ///
    /// let frame = encode_frame(&Msg::Return { cid: 1, value: vec![7; 40] }, 1024)?;
    /// let mut decoder = FrameDecoder::<1024>::with_limit(32);
    /// assert_eq!(decoder.limit(), 32);
    /// decoder.push(&frame);
    /// assert_eq!(decoder.next(), Some(Err(WireError::FrameTooLarge { size: frame.len(), max: 32 })));
    /// # Ok::<(), WireError>(())
    /// ```
    pub fn with_limit(limit: usize) -> Self {
        let mut d = Self::new();
        d.set_limit(limit);
        d
    }

    /// Changes the limit (clamped to `2..=MAX`) for the frames that start from now on; a frame
    /// already partly received is judged by the new limit when more of it arrives.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.clamp(2, MAX);
        if self.discarded == 0 && self.frame.len() >= self.limit {
            self.discarded = self.frame.len();
            self.frame.clear();
        }
    }

    /// The frame limit in force, delimiter included.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Feeds the next bytes of the stream, in chunks of any size (empty ones included). Every
    /// frame that a delimiter in `bytes` completes is decoded right away and its outcome queued
    /// for [`next`](Iterator::next).
    ///
    /// ```
    /// use infect::wire::{encode_frame, FrameDecoder, Msg};
    ///
    /// let frame = encode_frame(&Msg::Cancel { cid: None }, 64)?;
    /// let (head, tail) = frame.split_at(2);
    /// let mut decoder = FrameDecoder::<64>::new();
    /// decoder.push(head);
    /// assert_eq!(decoder.next(), None); // not complete yet
    /// decoder.push(tail);
    /// assert_eq!(decoder.next(), Some(Ok(Msg::Cancel { cid: None })));
    /// # Ok::<(), infect::wire::WireError>(())
    /// ```
    pub fn push(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == 0) {
            self.absorb(&bytes[..end]);
            self.end_frame();
            bytes = &bytes[end + 1..];
        }
        self.absorb(bytes);
    }

    /// Ends the stream: reports the frame left unfinished, if any, and resets the decoder for a
    /// new stream. An unfinished frame is [`Truncated`](WireError::Truncated)` { bytes }`, or
    /// [`FrameTooLarge`](WireError::FrameTooLarge) if it had already outgrown the limit (with
    /// the number of its bytes that arrived). Outcomes already queued stay queued: take them
    /// with [`next`](Iterator::next) first, they came before.
    ///
    /// ```
    /// use infect::wire::{FrameDecoder, WireError};
    ///
    /// let mut decoder = FrameDecoder::<64>::new();
    /// decoder.push(&[0x03, 0x01]);
    /// assert_eq!(decoder.finish(), Some(WireError::Truncated { bytes: 2 }));
    /// assert_eq!(decoder.finish(), None);
    /// ```
    pub fn finish(&mut self) -> Option<WireError> {
        let unfinished = if self.discarded > 0 {
            Some(WireError::FrameTooLarge { size: self.discarded, max: self.limit })
        } else if !self.frame.is_empty() {
            Some(WireError::Truncated { bytes: self.frame.len() })
        } else {
            None
        };
        self.frame.clear();
        self.discarded = 0;
        unfinished
    }

    /// How many bytes of the current, unfinished frame have arrived (kept or discarded).
    ///
    /// ```
    /// use infect::wire::FrameDecoder;
    ///
    /// let mut decoder = FrameDecoder::<64>::new();
    /// decoder.push(&[0x02, 0x09]);
    /// assert_eq!(decoder.buffered(), 2);
    /// ```
    pub fn buffered(&self) -> usize {
        self.frame.len() + self.discarded
    }

    /// Takes in bytes of the current frame (no zero among them): transition (1) when they
    /// would make the frame outgrow the limit.
    fn absorb(&mut self, bytes: &[u8]) {
        if self.discarded > 0 {
            self.discarded = self.discarded.saturating_add(bytes.len());
        } else if self.frame.len() + bytes.len() < self.limit {
            // Still fits: the frame plus its delimiter stays within the limit (<= MAX).
            self.frame.extend_from_slice(bytes).expect("len + bytes < limit <= MAX = capacity");
        } else {
            self.discarded = self.frame.len() + bytes.len();
            self.frame.clear();
        }
    }

    /// A delimiter arrived: transitions (2) and (3).
    fn end_frame(&mut self) {
        if self.discarded > 0 {
            let size = self.discarded.saturating_add(1);
            self.discarded = 0;
            crate::log::warning!("wire.frame_error", error = ?WireError::FrameTooLarge { size, max: self.limit });
            self.ready.push_back(Err(WireError::FrameTooLarge { size, max: self.limit }));
        } else if !self.frame.is_empty() {
            let outcome = decode_frame(self.frame.as_mut_slice());
            if let Err(_e) = &outcome {
                crate::log::warning!("wire.frame_error", error = ?_e);
            }
            self.frame.clear();
            self.ready.push_back(outcome);
        }
    }
}

impl<const MAX: usize> Default for FrameDecoder<MAX> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const MAX: usize> Iterator for FrameDecoder<MAX> {
    type Item = Result<Msg, WireError>;

    /// The next outcome, in stream order, or `None` until more bytes are pushed.
    fn next(&mut self) -> Option<Self::Item> {
        self.ready.pop_front()
    }
}

impl<const MAX: usize> fmt::Debug for FrameDecoder<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameDecoder")
            .field("max", &MAX)
            .field("limit", &self.limit)
            .field("buffered", &self.frame.len())
            .field("discarded", &self.discarded)
            .field("ready", &self.ready.len())
            .finish()
    }
}

/// Decodes one frame's bytes (without the delimiter; non-empty, no zero), in place.
fn decode_frame(frame: &mut [u8]) -> Result<Msg, WireError> {
    let size = frame.len() + 1;
    let len = cobs_decode_in_place(frame).ok_or(WireError::Corrupt { size })?;
    decode_exact(&frame[..len]).map_err(|reason| WireError::Undecodable { size, reason })
}

/// COBS-decodes `buf` (a frame without its delimiter) in place, returning the decoded length,
/// or `None` if `buf` is not valid COBS.
///
/// COBS cuts the data at each zero into blocks; each block is written as a code byte `n`
/// (1..=255) followed by `n - 1` data bytes, and stands for those bytes followed by a zero,
/// except for the last block and for a block with code 255 (254 data bytes, no zero). The
/// decoded data is never longer than `buf`, so writing it over `buf` never overtakes reading.
fn cobs_decode_in_place(buf: &mut [u8]) -> Option<usize> {
    let (mut read, mut write) = (0, 0);
    while read < buf.len() {
        let code = usize::from(buf[read]);
        let end = read + code;
        if code == 0 || end > buf.len() {
            return None;
        }
        buf.copy_within(read + 1..end, write);
        write += code - 1;
        read = end;
        if code != 0xFF && read < buf.len() {
            buf[write] = 0;
            write += 1;
        }
    }
    Some(write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A `Return` whose frame is exactly `size` bytes.
    fn msg_of_frame_size(size: usize) -> Msg {
        (0..size)
            .map(|n| Msg::Return { cid: 5, value: vec![0x42; n] })
            .find(|m| encode_frame(m, usize::MAX).unwrap().len() == size)
            .expect("some payload length gives that frame size")
    }

    #[test]
    fn runtime_limit_below_capacity() {
        let small = encode_frame(&msg_of_frame_size(20), 64).unwrap();
        let large = encode_frame(&msg_of_frame_size(40), 64).unwrap();
        let mut decoder = FrameDecoder::<64>::with_limit(32);
        assert_eq!(decoder.limit(), 32);
        decoder.push(&large);
        decoder.push(&small);
        assert_eq!(
            drain(&mut decoder),
            vec![Err(WireError::FrameTooLarge { size: 40, max: 32 }), Ok(msg_of_frame_size(20))]
        );
        // Clamped to the capacity and to 2.
        assert_eq!(FrameDecoder::<64>::with_limit(1000).limit(), 64);
        assert_eq!(FrameDecoder::<64>::with_limit(0).limit(), 2);
        // Lowered mid-frame: the partial frame is judged by the new limit.
        let mut decoder = FrameDecoder::<64>::new();
        decoder.push(&large[..35]);
        decoder.set_limit(32);
        decoder.push(&large[35..]);
        decoder.push(&small);
        assert_eq!(
            drain(&mut decoder),
            vec![Err(WireError::FrameTooLarge { size: 40, max: 32 }), Ok(msg_of_frame_size(20))]
        );
    }

    fn drain<const MAX: usize>(decoder: &mut FrameDecoder<MAX>) -> Vec<Result<Msg, WireError>> {
        decoder.by_ref().collect()
    }

    #[test]
    fn cobs_decodes_what_postcard_encodes_across_block_boundaries() {
        // Payload lengths around the 254-byte COBS block size, with and without zeros.
        for len in [0, 1, 2, 252, 253, 254, 255, 256, 507, 508, 509, 600] {
            for pattern in [0u8, 1, 0xFF] {
                let value: Vec<u8> =
                    (0..len).map(|i| if pattern == 1 { (i % 7) as u8 } else { pattern.wrapping_add(1) }).collect();
                let msg = Msg::Yield { cid: 3, value };
                let mut frame = encode_frame(&msg, usize::MAX).unwrap();
                assert_eq!(frame.pop(), Some(0));
                assert!(!frame.contains(&0), "COBS leaves no zero inside a frame");
                let n = cobs_decode_in_place(&mut frame).unwrap();
                assert_eq!(postcard::from_bytes::<Msg>(&frame[..n]).unwrap(), msg);
            }
        }
    }

    #[test]
    fn cobs_rejects_a_block_that_runs_past_the_frame() {
        assert_eq!(cobs_decode_in_place(&mut [0x03, 0x01]), None);
        assert_eq!(cobs_decode_in_place(&mut [0x01, 0x05, 0x01]), None);
        assert_eq!(cobs_decode_in_place(&mut [0x02, 0x07, 0x01]), Some(2));
    }

    #[test]
    fn limit_is_inclusive_and_sizes_agree_between_sender_and_receiver() {
        let msg = msg_of_frame_size(64);
        let frame = encode_frame(&msg, 64).unwrap();

        let mut fits = FrameDecoder::<64>::new();
        fits.push(&frame);
        assert_eq!(drain(&mut fits), [Ok(msg.clone())]);

        assert_eq!(encode_frame(&msg, 63), Err(WireError::FrameTooLarge { size: 64, max: 63 }));
        let mut too_small = FrameDecoder::<63>::new();
        too_small.push(&frame);
        assert_eq!(drain(&mut too_small), [Err(WireError::FrameTooLarge { size: 64, max: 63 })]);
    }

    #[test]
    fn buffer_never_holds_more_than_max_minus_one_bytes() {
        let mut decoder = FrameDecoder::<16>::new();
        for i in 1..=40 {
            decoder.push(&[0x7F]);
            assert!(decoder.frame.len() <= 15);
            assert_eq!(decoder.buffered(), i);
            // Discarding starts with the 16th byte and empties the buffer.
            assert_eq!(decoder.discarded > 0, i >= 16);
            assert_eq!(decoder.frame.is_empty(), i >= 16);
        }
        assert_eq!(drain(&mut decoder), []);
        decoder.push(&[0]);
        assert_eq!(drain(&mut decoder), [Err(WireError::FrameTooLarge { size: 41, max: 16 })]);
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn empty_frames_are_skipped_silently() {
        let mut decoder = FrameDecoder::<64>::new();
        decoder.push(&[0, 0, 0]);
        decoder.push(&[]);
        assert_eq!(drain(&mut decoder), []);
        assert_eq!(decoder.finish(), None);
    }

    #[test]
    fn outcomes_do_not_depend_on_chunking() {
        let mut stream = Vec::new();
        stream.extend(encode_frame(&Msg::Stop { cid: 1 }, 32).unwrap());
        stream.extend([0x09, 0x01, 0x00]); // corrupt
        stream.extend([0x33; 40]); // too large for 32
        stream.push(0);
        stream.extend([0x02, 0x6E, 0x00]); // COBS fine, but there is no variant 110
        stream.extend(encode_frame(&Msg::Cancel { cid: Some(4) }, 32).unwrap());
        stream.extend([0x04, 0x01]); // truncated

        let expected = [
            Ok(Msg::Stop { cid: 1 }),
            Err(WireError::Corrupt { size: 3 }),
            Err(WireError::FrameTooLarge { size: 41, max: 32 }),
            Err(WireError::Undecodable {
                size: 3,
                reason: crate::wire::Malformed::Postcard(postcard::Error::SerdeDeCustom),
            }),
            Ok(Msg::Cancel { cid: Some(4) }),
        ];
        for chunk in 1..=stream.len() {
            let mut decoder = FrameDecoder::<32>::new();
            for piece in stream.chunks(chunk) {
                decoder.push(piece);
            }
            assert_eq!(drain(&mut decoder), expected, "chunk size {chunk}");
            assert_eq!(decoder.finish(), Some(WireError::Truncated { bytes: 2 }));
        }
    }

    #[test]
    fn finish_resets_the_decoder_for_a_new_stream() {
        let mut decoder = FrameDecoder::<8>::new();
        decoder.push(&[0x11; 20]);
        assert_eq!(decoder.finish(), Some(WireError::FrameTooLarge { size: 20, max: 8 }));
        assert_eq!(decoder.buffered(), 0);
        decoder.push(&encode_frame(&Msg::Stop { cid: 2 }, 8).unwrap());
        assert_eq!(drain(&mut decoder), [Ok(Msg::Stop { cid: 2 })]);
        assert_eq!(decoder.finish(), None);
    }
}
