//! The IPC wire protocol: one [`Msg`] per frame, postcard-serialized and COBS-framed. Pure and
//! `no_std` (+ `alloc`): it only turns messages into bytes and bytes into messages; the actor
//! layer moves the bytes over pipes.
//!
//! # Framing invariants
//!
//! 1. **A frame is `COBS(postcard(msg))` followed by one `0x00` delimiter.** COBS leaves no zero
//!    in the encoded bytes, so a `0x00` in the stream is always a frame boundary: whatever came
//!    before, the receiver finds the next frame at the next delimiter.
//! 2. **A frame's size is its length on the wire, delimiter included**, and it is bounded by a
//!    limit that both ends share: [`DEFAULT_MAX_FRAME`] (64 KiB) unless configured (per actor
//!    with `ActorOpts::max_frame`, announced by [`Msg::FrameLimit`]; a decoder takes it as a
//!    runtime limit within its capacity, [`FrameDecoder::with_limit`]).
//! 3. **Nothing over the limit is sent.** [`encode_frame`] refuses such a message with
//!    [`WireError::FrameTooLarge`]` { size, max }` (the exact size) and returns no bytes, so not
//!    a byte of it is written and the stream stays in sync. The one exception is an error
//!    report ([`Msg::Error`]): [`encode_frame_fit`] shortens it until it fits (kind and source
//!    kept, the message cut and marked [`CUT_MARKER`]), so that no request goes unanswered.
//! 4. **The receiver's memory is bounded.** A [`FrameDecoder<MAX>`](FrameDecoder) keeps at most
//!    `MAX - 1` bytes of a frame in one fixed-capacity `heapless` buffer; a frame that outgrows
//!    it is dropped byte by byte (only counted) up to its delimiter.
//! 5. **One outcome per non-empty frame, in stream order**: the [`Msg`], or exactly one error:
//!    [`FrameTooLarge`](WireError::FrameTooLarge), [`Corrupt`](WireError::Corrupt) (not COBS)
//!    or [`Undecodable`](WireError::Undecodable) (not a `Msg`, or bytes left over after it).
//!    A bad frame never takes its neighbours with it: every valid frame after garbage is
//!    delivered.
//! 6. **Empty frames carry nothing** (a `0x00` at the start or right after another) and are
//!    skipped without an outcome, so a sender may write a lone `0x00` to resynchronise a peer.
//! 7. **Chunking does not matter**: bytes pushed one at a time or all at once give the same
//!    outcomes.
//! 8. **End of stream is explicit**: [`FrameDecoder::finish`] reports an unfinished frame once,
//!    as [`Truncated`](WireError::Truncated)` { bytes }` (or `FrameTooLarge` if it had already
//!    outgrown the limit).
//!
//! What framing does not do: frames carry **no checksum**, so bytes damaged in transit are
//! caught only when they break COBS or postcard. A damaged frame that still decodes arrives as
//! another message or another value; one that does not is skipped and reported (5), and its
//! message is lost: a call that waited for it goes on waiting. Pipes do not damage bytes, so
//! this is the contract for a buggy or hostile peer; `sim`'s `corrupt` fault shows both cases.
//!
//! # Messages and payloads
//!
//! [`Msg`] mirrors tractor's message types; its documentation draws the dialog (who sends what,
//! when). User values never appear in the protocol's types: arguments and results travel as
//! postcard bytes made by [`encode_payload`] and read back by [`decode_payload`], which insists
//! that every byte is used, so that a caller and a callee that disagree on a type get a
//! [`WireError::Decode`] naming the expected type rather than a silently wrong value.
//!
//! # Flow control
//!
//! The protocol carries its own back-pressure, per call, in each direction: a context's sender
//! may have a window of items (`Yield`s) in flight (the actor layer's `STREAM_BUFFER`) without
//! a grant, and the receiver returns [`Msg::Credit`]` { cid, n }` as it takes items. The pipe is
//! not the back-pressure: a receiver reads its pipe eagerly, so that one slow call cannot stall
//! the others on it. A `Yield` past the window is a protocol error for its call.
//!
//! # Example
//!
//! ```
//! use infect::wire::{decode_payload, encode_frame, encode_payload, FrameDecoder, Msg, DEFAULT_MAX_FRAME};
//!
//! // Sender: a result, as one frame.
//! let msg = Msg::Return { cid: 1, value: encode_payload(&"done")? };
//! let frame = encode_frame(&msg, DEFAULT_MAX_FRAME)?;
//!
//! // Receiver: bytes arrive in whatever pieces the pipe gives.
//! let mut decoder = FrameDecoder::<DEFAULT_MAX_FRAME>::new();
//! for piece in frame.chunks(3) {
//!     decoder.push(piece);
//! }
//! match decoder.next() {
//!     Some(Ok(Msg::Return { cid: 1, value })) => assert_eq!(decode_payload::<String>(&value)?, "done"),
//!     other => panic!("unexpected {other:?}"),
//! }
//! assert_eq!(decoder.finish(), None);
//! # Ok::<(), infect::wire::WireError>(())
//! ```

mod error;
mod frame;
mod msg;

pub use error::{Malformed, WireError};
pub use frame::{CUT_MARKER, DEFAULT_MAX_FRAME, FrameDecoder, encode_frame, encode_frame_fit};
pub use msg::{
    Aid, Cid, FuncKind, Msg, PROTOCOL_MISMATCH_EXIT, PROTOCOL_VERSION, SpawnSpec, TtyReq, decode_payload,
    encode_payload,
};
