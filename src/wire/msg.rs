//! [`Msg`], the one message type of the protocol, and user payloads as postcard bytes.

use alloc::string::String;
use alloc::vec::Vec;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::{Malformed, WireError};

/// A call id: names one call (one `Start` and everything that follows it) on a pipe.
///
/// The caller allocates it, unique among the calls it has open on that pipe.
pub type Cid = u64;

/// An actor's identity (tractor's `Aid`).
///
/// ```
/// use infect::wire::Aid;
///
/// let root = Aid { name: "root".into(), uuid: "0b5e…".into(), pid: 4242 };
/// assert_eq!(root.name, "root");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Aid {
    /// The name the actor was started under (`start_actor(name, ..)`); `"root"` for the root.
    pub name: String,
    /// A unique id chosen by the actor itself, so that two actors with the same name differ.
    pub uuid: String,
    /// The actor's process id.
    pub pid: u32,
}

/// The version of the actor protocol this build speaks: the first field of every
/// [`SpawnSpec`]. A child whose own version differs refuses the handshake (it reports a
/// `ProtocolMismatch` error and exits with status [`PROTOCOL_MISMATCH_EXIT`]), so that a parent
/// and a child from different builds (a program installed on another host, say) fail with a
/// clear error instead of misreading each other. Raised whenever a message's encoding changes.
pub const PROTOCOL_VERSION: u32 = 3;

/// The exit status of a child that refused its handshake for a protocol mismatch (`EX_PROTOCOL`
/// of `sysexits.h`): a parent that could not read the child's report (it speaks another
/// encoding) still recognises the mismatch by it.
pub const PROTOCOL_MISMATCH_EXIT: i32 = 76;

/// What a parent tells a child it just spawned (tractor's `SpawnSpec`).
///
/// ```
/// use infect::wire::{Aid, PROTOCOL_VERSION, SpawnSpec};
///
/// let spec = SpawnSpec {
///     protocol: PROTOCOL_VERSION,
///     parent: Aid { name: "root".into(), uuid: "r".into(), pid: 1 },
///     name: "worker".into(),
///     enable_modules: vec!["math".into()],
///     infect_host: true,
///     debug_mode: false,
/// };
/// assert!(spec.enable_modules.iter().any(|ns| ns == "math"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnSpec {
    /// The parent's [`PROTOCOL_VERSION`]. First, so that its encoding (a varint right after the
    /// message's variant index) stays readable whatever later versions do to the other fields.
    pub protocol: u32,
    /// The parent's identity: the first hop of every relay path that leaves the child.
    pub parent: Aid,
    /// The name the parent gave the child.
    pub name: String,
    /// The endpoint namespaces the child may serve (tractor's `enable_modules`); a `Start` for
    /// any other namespace is answered with a `ModuleNotExposed` error.
    pub enable_modules: Vec<String>,
    /// Whether the child runs infected: the host executor as its loop, the guest on top of it.
    pub infect_host: bool,
    /// Whether the child runs in debug mode (crash reports; see `infect::debug`). The parent
    /// sends its own debug mode unless the child's options set one (protocol 2).
    pub debug_mode: bool,
}

/// The kind of a remote function (tractor's `functype`).
///
/// ```
/// use infect::wire::FuncKind;
///
/// assert_ne!(FuncKind::Function, FuncKind::Context);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FuncKind {
    /// A plain async function: `Start` → `StartAck` → `Return` or `Error`.
    Function,
    /// A context function: `Start` → `StartAck` → `Started` → any `Yield`s and `Stop`s either
    /// way → `Return` or `Error`.
    Context,
}

/// One message of the protocol; one [`Msg`] travels in each frame.
///
/// The variants mirror tractor's `msg.types`. Their order is the wire format (postcard encodes
/// the variant's index), so new variants are only ever appended. Payloads (`args`, `value`) are
/// postcard bytes of the user's own types, made with [`encode_payload`] and read with
/// [`decode_payload`]: the protocol never needs to know them.
///
/// The dialog (the side that opened a call is the *caller*, the other the *callee*):
///
/// ```text
/// parent                                    child
///   SpawnSpec ───────────────────────────▶
///             ◀─────────────────────────── Aid                  handshake done
/// caller                                    callee
///   Start{cid, ns, func, args, kind} ────▶
///             ◀─────────────────────────── StartAck{cid, functype}   or Error{cid}
///             ◀─────────────────────────── Started{cid, value}       (Context only)
///   Yield{cid, value} ◀──────────────────▶ Yield{cid, value}         (Context only)
///   Credit{cid, n}    ◀──────────────────▶ Credit{cid, n}            (the receiver took n items)
///   Stop{cid}         ◀──────────────────▶ Stop{cid}                 (Context only)
///             ◀─────────────────────────── Return{cid, value}   or Error{cid}
///   Cancel{cid} ─────────────────────────▶
///             ◀─────────────────────────── CancelAck{cid}, then the call's own outcome
/// ```
///
/// ```
/// use infect::wire::{decode_payload, encode_payload, FuncKind, Msg};
///
/// let start = Msg::Start {
///     cid: 1,
///     ns: "math".into(),
///     func: "add".into(),
///     args: encode_payload(&(2u32, 3u32))?,
///     kind: FuncKind::Function,
/// };
/// assert_eq!(start.cid(), Some(1));
/// if let Msg::Start { args, .. } = &start {
///     assert_eq!(decode_payload::<(u32, u32)>(args)?, (2, 3));
/// }
/// # Ok::<(), infect::wire::WireError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// An actor's identity. Sent by a child as its reply to [`Msg::SpawnSpec`]: the handshake is
    /// done and the child serves its enabled endpoints from now on.
    Aid(Aid),
    /// Sent by a parent to a child it spawned, first thing on the pipe: who the child is, who
    /// its parent is, and what it may serve.
    SpawnSpec(SpawnSpec),
    /// Sent by a caller to open call `cid`: run endpoint `func` of namespace `ns` with `args`.
    /// `kind` says what the caller expects (`portal.run` a [`FuncKind::Function`],
    /// `open_context` a [`FuncKind::Context`]).
    Start {
        /// The new call's id.
        cid: Cid,
        /// The endpoint's namespace.
        ns: String,
        /// The endpoint's name within `ns`.
        func: String,
        /// postcard bytes of the arguments.
        args: Vec<u8>,
        /// The kind of function the caller expects.
        kind: FuncKind,
    },
    /// Sent by the callee once it found the endpoint of a `Start` and started it; `functype` is
    /// the endpoint's real kind. A `Start` that cannot be served (namespace not enabled,
    /// unknown function, wrong kind, arguments that do not decode) gets an [`Msg::Error`]
    /// instead.
    StartAck {
        /// The call.
        cid: Cid,
        /// The endpoint's kind.
        functype: FuncKind,
    },
    /// Sent by the callee of a context when it calls `ctx.started(value)`: the caller's
    /// `open_context` returns `value`.
    Started {
        /// The call.
        cid: Cid,
        /// postcard bytes of the first value.
        value: Vec<u8>,
    },
    /// One item of a context's stream, sent by either side (`MsgStream::send`).
    Yield {
        /// The call.
        cid: Cid,
        /// postcard bytes of the item.
        value: Vec<u8>,
    },
    /// Sent by either side of a context when it closes its sending half of the stream: the
    /// other side's `receive` ends after the items already sent.
    Stop {
        /// The call.
        cid: Cid,
    },
    /// Sent by the callee when the call's function returned: the last message of call `cid`.
    Return {
        /// The call.
        cid: Cid,
        /// postcard bytes of the result.
        value: Vec<u8>,
    },
    /// Sent by the callee in reply to [`Msg::Cancel`] with the same `cid`, once the cancellation
    /// took effect. For a call it is followed by the call's own outcome (usually an
    /// [`Msg::Error`] of kind `ContextCancelled`); for the actor (`cid: None`) the child exits
    /// after it.
    CancelAck {
        /// The call that was cancelled, or `None` for the whole actor.
        cid: Option<Cid>,
    },
    /// An error, sent by whoever hit it. With `cid: Some(c)` it ends call `c` (or answers a
    /// `Start` that could not be served); with `cid: None` it concerns the pipe or the actor as
    /// a whole (a frame from the peer that did not decode, or the actor's own failure).
    Error {
        /// The call the error ends, if any.
        cid: Option<Cid>,
        /// The actor in which the error was first raised.
        src: Aid,
        /// The name of the error's kind (`Error::kind`, e.g. `"HostCancelled"`, or the user
        /// error's type name), so that the receiver can match on it.
        boxed_type: String,
        /// The error's message.
        message: String,
        /// The names of the actors the error passed through after `src`, oldest first; each
        /// actor that relays it appends its own name.
        relay_path: Vec<String>,
        /// For a cancellation (`ContextCancelled`): the name of the actor that requested it.
        canceller: Option<String>,
    },
    /// Sent by a caller (usually the parent) to cancel call `cid`, or with `cid: None` the whole
    /// actor (`Portal::cancel_actor`). Answered with [`Msg::CancelAck`].
    Cancel {
        /// The call to cancel, or `None` for the whole actor.
        cid: Option<Cid>,
    },
    /// Sent by a parent right after [`Msg::SpawnSpec`] when the actor's frame limit is not
    /// [`DEFAULT_MAX_FRAME`](crate::wire::DEFAULT_MAX_FRAME) (`ActorOpts::max_frame`): from this
    /// frame on, both directions use `max` (delimiter included) for sending and receiving.
    FrameLimit {
        /// The frame limit, delimiter included (at most `DEFAULT_MAX_FRAME`).
        max: u32,
    },
    /// Flow control (sent by either side of a context): the receiver of call `cid`'s stream has
    /// taken `n` more items, so the sender may send `n` more `Yield`s. Each side starts with a
    /// window of `STREAM_BUFFER` items it may send without any grant; every `Yield` takes one,
    /// every `Credit` gives `n` back. A `Yield` past the window is a protocol error for that
    /// context (`StreamOverrun` at the receiver), so a receiver never buffers more than the
    /// window, whatever the peer does.
    Credit {
        /// The call.
        cid: Cid,
        /// How many more items the sender may send.
        n: u32,
    },
    /// Sent by a parent right after [`Msg::SpawnSpec`] when the actor's stream window is not the
    /// default (`ActorOpts::stream_window`): from this frame on, every context on this pipe
    /// starts each direction with a window of `items` (instead of `STREAM_BUFFER`).
    StreamWindow {
        /// The window, in stream items (at least 2).
        items: u32,
    },
    /// Sent by a parent to ask a child for the live dump of its subtree (`infect::debug`,
    /// protocol 2). The child answers with a [`Msg::DumpReply`] of the same `id` within
    /// `wait_ms` milliseconds (it waits at most half of that for its own children), and goes on
    /// serving.
    DumpRequest {
        /// Chosen by the parent, echoed in the reply.
        id: u64,
        /// How long the parent waits for the reply.
        wait_ms: u64,
    },
    /// A child's answer to [`Msg::DumpRequest`]: the text of its subtree's dump.
    DumpReply {
        /// The request's id.
        id: u64,
        /// The dump (deterministic text, cut to fit a frame).
        text: String,
    },
    /// Debug mode (protocol 3), sent by a child to its parent: `req` (an actor of the child's
    /// subtree, the child itself included, that called `debug::pause()`) asks for the tree's
    /// terminal lock. Each actor on the way records which child it came from and relays it up;
    /// the root queues it (FIFO, one holder) and answers [`Msg::TtyGranted`] down the same path.
    TtyLock {
        /// The request.
        req: TtyReq,
    },
    /// Debug mode, sent by a parent to the child a [`Msg::TtyLock`] came from: the lock is
    /// `req`'s now (relayed down to the actor that asked). Until the matching
    /// [`Msg::TtyRelease`] passes, every actor on the path knows that its child's subtree holds
    /// the terminal: it holds back its reaping ladder and its `SIGINT` handling.
    TtyGranted {
        /// The request granted.
        req: TtyReq,
    },
    /// Debug mode, sent by a child to its parent (relayed up to the root): `req` releases the
    /// lock, or withdraws its request if it was not granted yet. With `quit` (the prompt's
    /// `quit` command) the root then cancels the whole tree, as a `SIGINT` in the root would.
    TtyRelease {
        /// The request released.
        req: TtyReq,
        /// Cancel the whole tree.
        quit: bool,
    },
}

/// One request for the tree's terminal lock ([`Msg::TtyLock`]): the actor that paused and the
/// request's number there (an actor may have several tasks paused in turn).
///
/// ```
/// use infect::wire::{Aid, TtyReq};
///
/// let req = TtyReq { who: Aid { name: "worker".into(), uuid: "w".into(), pid: 7 }, n: 0 };
/// assert_eq!(req.who.name, "worker");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtyReq {
    /// The actor whose task called `pause()`.
    pub who: Aid,
    /// The request's number in that actor (its first is 0).
    pub n: u64,
}

impl Msg {
    /// The variant's name, for reports (`"Yield"`, `"CancelAck"`, ...).
    ///
    /// ```
    /// use infect::wire::Msg;
    ///
    /// assert_eq!(Msg::Stop { cid: 9 }.name(), "Stop");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Aid(_) => "Aid",
            Msg::SpawnSpec(_) => "SpawnSpec",
            Msg::Start { .. } => "Start",
            Msg::StartAck { .. } => "StartAck",
            Msg::Started { .. } => "Started",
            Msg::Yield { .. } => "Yield",
            Msg::Stop { .. } => "Stop",
            Msg::Return { .. } => "Return",
            Msg::CancelAck { .. } => "CancelAck",
            Msg::Error { .. } => "Error",
            Msg::Cancel { .. } => "Cancel",
            Msg::FrameLimit { .. } => "FrameLimit",
            Msg::Credit { .. } => "Credit",
            Msg::StreamWindow { .. } => "StreamWindow",
            Msg::DumpRequest { .. } => "DumpRequest",
            Msg::DumpReply { .. } => "DumpReply",
            Msg::TtyLock { .. } => "TtyLock",
            Msg::TtyGranted { .. } => "TtyGranted",
            Msg::TtyRelease { .. } => "TtyRelease",
        }
    }

    /// The call this message belongs to: `None` for the handshake messages and for the
    /// actor-wide `Cancel`, `CancelAck` and `Error`.
    ///
    /// ```
    /// use infect::wire::Msg;
    ///
    /// assert_eq!(Msg::Stop { cid: 9 }.cid(), Some(9));
    /// assert_eq!(Msg::Cancel { cid: None }.cid(), None);
    /// ```
    pub fn cid(&self) -> Option<Cid> {
        match self {
            Msg::Aid(_)
            | Msg::SpawnSpec(_)
            | Msg::FrameLimit { .. }
            | Msg::StreamWindow { .. }
            | Msg::DumpRequest { .. }
            | Msg::DumpReply { .. } => None,
            Msg::TtyLock { .. } | Msg::TtyGranted { .. } | Msg::TtyRelease { .. } => None,
            Msg::Start { cid, .. }
            | Msg::StartAck { cid, .. }
            | Msg::Started { cid, .. }
            | Msg::Yield { cid, .. }
            | Msg::Stop { cid }
            | Msg::Return { cid, .. }
            | Msg::Credit { cid, .. } => Some(*cid),
            Msg::CancelAck { cid } | Msg::Error { cid, .. } | Msg::Cancel { cid } => *cid,
        }
    }
}

/// Serializes a user value into payload bytes (postcard) for `args` or `value`.
///
/// ```
/// use infect::wire::encode_payload;
///
/// assert_eq!(encode_payload(&(1u8, "hi"))?, [1, 2, b'h', b'i']);
/// # Ok::<(), infect::wire::WireError>(())
/// ```
pub fn encode_payload<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, WireError> {
    postcard::serialize_with_flavor(value, Presized::new())
        .map_err(|cause| WireError::Encode { type_name: core::any::type_name::<T>(), cause })
}

/// A postcard output [`Vec`] that starts with room for a small message ([`Presized::START`]
/// bytes), so that encoding one allocates once instead of growing from empty (postcard's own
/// `AllocVec` starts empty: two or three allocations for a small message). Indexable, so it
/// also serves under the COBS flavor ([`encode_frame`](super::encode_frame)).
pub(crate) struct Presized(Vec<u8>);

impl Presized {
    /// Room for a typical control message or small payload; a bigger one grows as a `Vec`.
    const START: usize = 32;

    pub(crate) fn new() -> Presized {
        Presized(Vec::with_capacity(Self::START))
    }
}

impl postcard::ser_flavors::Flavor for Presized {
    type Output = Vec<u8>;

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

impl core::ops::Index<usize> for Presized {
    type Output = u8;

    fn index(&self, i: usize) -> &u8 {
        &self.0[i]
    }
}

impl core::ops::IndexMut<usize> for Presized {
    fn index_mut(&mut self, i: usize) -> &mut u8 {
        &mut self.0[i]
    }
}

/// Deserializes payload bytes into a user value. Every byte must be used: bytes left over mean
/// that the sender's type is not the receiver's, and give [`Malformed::TrailingBytes`].
///
/// ```
/// use infect::wire::{decode_payload, encode_payload};
///
/// let bytes = encode_payload(&vec![1u32, 2, 3])?;
/// assert_eq!(decode_payload::<Vec<u32>>(&bytes)?, [1, 2, 3]);
/// assert!(decode_payload::<u8>(&bytes).is_err()); // 3 bytes left over
/// # Ok::<(), infect::wire::WireError>(())
/// ```
pub fn decode_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    decode_exact(bytes).map_err(|reason| WireError::Decode { type_name: core::any::type_name::<T>(), reason })
}

/// Deserializes a `T` that must use every byte of `bytes`.
pub(super) fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Malformed> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes).map_err(Malformed::Postcard)?;
    if rest.is_empty() { Ok(value) } else { Err(Malformed::TrailingBytes(rest.len())) }
}
