//! [`WireError`]: everything that can go wrong between a value and the bytes on the pipe.
//!
//! Frame errors ([`FrameTooLarge`](WireError::FrameTooLarge), [`Corrupt`](WireError::Corrupt),
//! [`Undecodable`](WireError::Undecodable), [`Truncated`](WireError::Truncated)) describe one
//! frame each; the decoder reports each bad frame exactly once and goes on with the next one.
//! Payload errors ([`Encode`](WireError::Encode), [`Decode`](WireError::Decode)) name the Rust
//! type that did not fit, because a payload that does not decode almost always means that the
//! two ends disagree about a function's argument or result type.

/// Why bytes that were correctly framed still did not decode into the expected value.
///
/// ```
/// use infect::wire::{decode_payload, Malformed, WireError};
///
/// // Two bytes where one `u8` was expected: the second one is left over.
/// let err = decode_payload::<u8>(&[7, 7]).unwrap_err();
/// assert_eq!(err, WireError::Decode { type_name: "u8", reason: Malformed::TrailingBytes(1) });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// postcard rejected the bytes (too short, a bad tag or varint, invalid UTF-8, ...).
    #[error("{0}")]
    Postcard(postcard::Error),
    /// The value decoded, but this many bytes were left over after it: the sender serialized a
    /// bigger value than the receiver expects.
    #[error("{0} byte(s) left over after the value")]
    TrailingBytes(usize),
}

/// An error of the wire layer: a frame that cannot be sent or was received damaged, or a payload
/// that does not (de)serialize.
///
/// Sizes are in bytes *on the wire*: a frame's size is its COBS-encoded length including the
/// trailing `0x00` delimiter, the number that [`encode_frame`](super::encode_frame) returns and
/// that the frame limit bounds.
///
/// ```
/// use infect::wire::{encode_frame, Msg, WireError};
///
/// let msg = Msg::Return { cid: 1, value: vec![0xAB; 100] };
/// let err = encode_frame(&msg, 64).unwrap_err();
/// assert_eq!(err, WireError::FrameTooLarge { size: 105, max: 64 });
/// assert!(err.to_string().contains("exceeds the 64-byte frame limit"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A frame is bigger than the limit. At the sender, `size` is the exact size of the frame
    /// that was refused before any byte of it was written. At the receiver, `size` is the number
    /// of bytes of the frame that arrived (including its delimiter, when it arrived); the frame
    /// was discarded up to its delimiter.
    #[error(
        "a frame of {size} bytes exceeds the {max}-byte frame limit: send less per message (split \
         it, or stream it as `Yield`s) or raise the limit on both ends of the pipe"
    )]
    FrameTooLarge {
        /// The frame's size in bytes.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// A received frame is not valid COBS: the stream was damaged, or something that is not an
    /// infect frame was written to the pipe (a stray `print` to the IPC fd?). It was skipped.
    #[error(
        "skipped a corrupt frame of {size} bytes (not valid COBS): something other than infect \
         frames was written to the pipe; check that nothing else writes to the IPC fd"
    )]
    Corrupt {
        /// The frame's size in bytes, including its delimiter.
        size: usize,
    },
    /// A received frame is valid COBS but not a [`Msg`](super::Msg) of this protocol. It was
    /// skipped.
    #[error(
        "skipped a frame of {size} bytes that is not a message of this protocol ({reason}): are \
         both ends built from the same version of infect?"
    )]
    Undecodable {
        /// The frame's size in bytes, including its delimiter.
        size: usize,
        /// What postcard found wrong.
        reason: Malformed,
    },
    /// The stream ended in the middle of a frame: this many bytes had arrived after the last
    /// delimiter. The peer died or closed its end mid-write.
    #[error(
        "the stream ended {bytes} bytes into a frame: the peer exited or closed the pipe in the \
         middle of a write"
    )]
    Truncated {
        /// Bytes of the unfinished frame.
        bytes: usize,
    },
    /// A value could not be serialized.
    #[error("could not encode a `{type_name}` with postcard: {cause}")]
    Encode {
        /// The Rust type that was being encoded.
        type_name: &'static str,
        /// postcard's error.
        cause: postcard::Error,
    },
    /// A payload did not decode as the expected type.
    #[error(
        "could not decode the payload as a `{type_name}`: {reason}; do the sender's and the \
         receiver's types match?"
    )]
    Decode {
        /// The Rust type that was expected.
        type_name: &'static str,
        /// What was wrong with the bytes.
        reason: Malformed,
    },
}

impl WireError {
    /// A stable name for this error's kind (the variant's name), for an
    /// [`Msg::Error`](super::Msg::Error)'s `boxed_type` when the error is reported to the peer.
    ///
    /// ```
    /// use infect::wire::WireError;
    ///
    /// assert_eq!(WireError::Truncated { bytes: 3 }.kind(), "Truncated");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::FrameTooLarge { .. } => "FrameTooLarge",
            WireError::Corrupt { .. } => "Corrupt",
            WireError::Undecodable { .. } => "Undecodable",
            WireError::Truncated { .. } => "Truncated",
            WireError::Encode { .. } => "Encode",
            WireError::Decode { .. } => "Decode",
        }
    }
}
