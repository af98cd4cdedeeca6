//! The crate's one error type, and how errors cross loops and processes.
//!
//! Guest code unwinds with `?` the way trio code unwinds with exceptions, so every layer speaks
//! the same [`Error`]: cancellation ([`Error::Cancelled`]) is a value that a
//! [`CancelScope`](crate::guest::CancelScope) catches on its way out, the cross-loop translation
//! errors of [`to_host`](crate::to_host) are variants, and user errors ride in [`Error::User`].
//!
//! # The model
//!
//! **Every crate error is a variant** of one flat, `#[non_exhaustive]` [`Error`] (the wire
//! layer's own [`WireError`](crate::wire::WireError) nests in [`Error::Wire`], and OS errors in
//! an [`IoError`]); no crate error is a string. By the layer that raises them:
//!
//! | layer | variants |
//! |---|---|
//! | guest (scopes, nurseries, channels) | [`Cancelled`](Error::Cancelled), [`TooSlow`](Error::TooSlow), [`Group`](Error::Group), [`StartedNotCalled`](Error::StartedNotCalled), [`OutsideGuest`](Error::OutsideGuest), [`NurseryClosed`](Error::NurseryClosed), [`ScopeReused`](Error::ScopeReused), [`Closed`](Error::Closed), [`EndOfChannel`](Error::EndOfChannel), [`Full`](Error::Full), [`Lagged`](Error::Lagged) |
//! | host (executor, reactor, `host::net`) | [`HostTaskCancelled`](Error::HostTaskCancelled), [`NoHostLoop`](Error::NoHostLoop), [`NoClock`](Error::NoClock), [`Io`](Error::Io), [`Os`](Error::Os) |
//! | guest run on a host | [`GuestRunAbandoned`](Error::GuestRunAbandoned), [`GuestAlreadyRunning`](Error::GuestAlreadyRunning) |
//! | `to_host` (linked task pairs) | [`HostCancelled`](Error::HostCancelled), [`HostTaskExited`](Error::HostTaskExited), [`GuestCancelled`](Error::GuestCancelled), [`GuestTaskExited`](Error::GuestTaskExited), [`NotInfected`](Error::NotInfected), [`LinkStartedTwice`](Error::LinkStartedTwice), [`ResultTaken`](Error::ResultTaken) |
//! | `wire` (frames, payloads) | [`Wire`](Error::Wire) |
//! | `actor` (processes, calls, contexts) | [`RemoteActor`](Error::RemoteActor), [`ContextCancelled`](Error::ContextCancelled), [`ModuleNotExposed`](Error::ModuleNotExposed), [`UnknownFunction`](Error::UnknownFunction), [`WrongFunctionKind`](Error::WrongFunctionKind), [`ActorDied`](Error::ActorDied), [`Panic`](Error::Panic), [`SpawnFailed`](Error::SpawnFailed), [`StartTimeout`](Error::StartTimeout), [`LaunchFailed`](Error::LaunchFailed), [`ProtocolMismatch`](Error::ProtocolMismatch), [`BadActorEnv`](Error::BadActorEnv), [`Interrupted`](Error::Interrupted), [`NoActorRuntime`](Error::NoActorRuntime), [`StartedTwice`](Error::StartedTwice), [`NotStarted`](Error::NotStarted), [`StreamAlreadyOpen`](Error::StreamAlreadyOpen), [`StreamOverrun`](Error::StreamOverrun), [`WrongContextSide`](Error::WrongContextSide), [`UnexpectedMessage`](Error::UnexpectedMessage), [`NoResult`](Error::NoResult), [`Os`](Error::Os) |
//! | `sim` (simulated worlds) | [`OutsideSimulation`](Error::OutsideSimulation), [`SimulationStalled`](Error::SimulationStalled), [`Nondeterministic`](Error::Nondeterministic) |
//! | `debug` (debug mode) | [`NotDebugMode`](Error::NotDebugMode), [`NoTerminal`](Error::NoTerminal) |
//!
//! The enum is flat rather than one nested enum per layer: `?` carries errors across every
//! layer anyway, and a flat enum keeps each match one pattern deep (`Err(Error::Cancelled)`,
//! not `Err(Error::Guest(GuestError::Cancelled))`); the table above is the grouping.
//!
//! **OS errors stay whole.** [`Error::Io`] (an `std::io::Error` that `?` converted) and
//! [`Error::Os`] (an OS call the crate made) hold an [`IoError`]: the real `std::io::Error`,
//! with its [`ErrorKind`](std::io::ErrorKind), errno and source ([`Error::io_error`]).
//!
//! **Kinds.** [`Error::kind`] names each error with a stable string: a crate error's is its
//! [`ErrorKind`] ([`ErrorKind::as_str`], the variant's name; pinned by a test, never renamed),
//! a user error's is the name given to [`Error::user_kind`] or, from [`Error::user`], its type's
//! full path (`"my_app::FeedLost"`). A user kind never reads as a crate kind: one that would is
//! kept as `"user:…"`. So a kind string tells a crate error from a user error on either side of
//! a process boundary.
//!
//! **What crosses the wire.** An error leaving an actor travels as its kind (`boxed_type`), its
//! `Display` text, its source actor and its relay path; it arrives as [`Error::RemoteActor`] (or
//! [`Error::ContextCancelled`] for a cancellation), with a [`RemoteActorError`] whose
//! [`kind`](RemoteActorError::kind) is a [`RemoteKind`]: one of the crate's [`ErrorKind`]s, or a
//! user kind. The value itself (an `io::Error`, a user type) stays in the process that made it.
//!
//! **Identity.** `==` compares errors by value (what a test asserting an outcome wants);
//! [`Error::is_same`] tells one error seen twice (clones: a child's error that the block
//! re-raised) from two that read alike. Nurseries and linked task pairs count an error once by
//! identity, so two independent failures with the same text both come out in the
//! [`ErrorGroup`].
//!
//! # Examples
//!
//! Matching a local error:
//!
//! ```
//! use infect::{Error, guest};
//! use infect::time::VirtualClock;
//! use std::rc::Rc;
//! use std::time::Duration;
//!
//! let clock = guest::GuestConfig::new(Rc::new(VirtualClock::new()));
//! let r = guest::run_with(clock, async {
//!     guest::fail_after(Duration::from_secs(1), guest::sleep_forever()).await
//! });
//! assert!(matches!(r, Err(Error::TooSlow)));
//! ```
//!
//! Matching a remote error of one of the crate's kinds, without comparing strings:
//!
//! ```
//! use infect::Error;
//! use infect::error::{ErrorKind, RemoteKind};
//!
//! fn is_missing_endpoint(e: &Error) -> bool {
//!     e.remote().is_some_and(|r| r.is(ErrorKind::UnknownFunction) || r.is(ErrorKind::ModuleNotExposed))
//! }
//!
//! fn describe(e: &Error) -> String {
//!     match e.remote().map(|r| r.kind()) {
//!         Some(RemoteKind::Crate(ErrorKind::ActorDied)) => "the actor's child died".into(),
//!         Some(RemoteKind::Crate(k)) => format!("infect error {k}"),
//!         Some(RemoteKind::User(kind)) => format!("the actor's own {kind}"),
//!         None => format!("local {}", e.kind()),
//!     }
//! }
//! # let r = infect::error::RemoteActorError {
//! #     boxed_type: "UnknownFunction".into(),
//! #     message: "no function".into(),
//! #     src: infect::wire::Aid { name: "w".into(), uuid: "u".into(), pid: 1 },
//! #     relay_path: vec![],
//! # };
//! # let e = Error::RemoteActor(std::sync::Arc::new(r));
//! # assert!(is_missing_endpoint(&e));
//! # assert_eq!(describe(&e), "infect error UnknownFunction");
//! # assert_eq!(describe(&Error::Closed), "local Closed");
//! ```
//!
//! A user error's kind:
//!
//! ```
//! use infect::Error;
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("cannot divide {0} by zero")]
//! struct ZeroDivision(u32);
//!
//! // Its type's full path ("my_app::ZeroDivision" in crate `my_app`)...
//! assert_eq!(Error::user(ZeroDivision(1)).kind(), std::any::type_name::<ZeroDivision>());
//! // ...or a name of your choosing, as a Python peer would spell it.
//! assert_eq!(Error::user_kind("ZeroDivisionError", ZeroDivision(1)).kind(), "ZeroDivisionError");
//! ```

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

/// A cancellation delivered to a host task: why it was cancelled.
///
/// Host-aware awaits (`host::sleep`, link operations, fd readiness) return it once their task has
/// been cancelled; it is sticky, so every later host-aware await returns it too.
///
/// When the cancellation tears down the host half of a linked task pair, `cause` holds the
/// translated error the host side must see ([`Error::GuestTaskExited`] or
/// [`Error::GuestCancelled`]); converting the `Cancelled` into an [`Error`] (as `?` does) yields
/// that error, so host code that propagates a cancelled `sleep` returns exactly it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("host task cancelled: {reason}")]
pub struct Cancelled {
    /// The reason given to [`JoinHandle::cancel`](crate::host::JoinHandle::cancel).
    pub reason: String,
    /// The translated error behind a link teardown, if this cancellation is one.
    pub cause: Option<Box<Error>>,
}

impl Cancelled {
    /// A plain cancellation with `reason`.
    pub fn new(reason: impl Into<String>) -> Cancelled {
        Cancelled { reason: reason.into(), cause: None }
    }
}

impl From<Cancelled> for Error {
    fn from(c: Cancelled) -> Error {
        match c.cause {
            Some(e) => *e,
            None => Error::HostTaskCancelled(c),
        }
    }
}

/// Several errors that happened independently (a nursery's children, or both sides of a linked
/// task pair), in the order they happened.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorGroup(pub Vec<Error>);

impl fmt::Display for ErrorGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} independent errors: [", self.0.len())?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {e}", e.kind())?;
        }
        f.write_str("]")
    }
}

impl core::error::Error for ErrorGroup {}

/// A user error, kept with its kind name so that it can be matched after it crossed a loop or a
/// process boundary.
///
/// Its kind is the name given to [`Error::user_kind`], or the full type path of the wrapped value
/// ([`core::any::type_name`]) when it was made with [`Error::user`]; it is never one of the
/// crate's own kind names (see [`Error::user_kind`]).
///
/// Equality (`==`) compares the kind and the `Display` text, which is what a test asserting an
/// outcome wants. *Identity* is different: [`UserError::is_same`] tells whether two values are
/// clones of one error (one creation), which is how a nursery tells "the same error seen twice"
/// from "two errors that read alike".
///
/// ```
/// use infect::Error;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("bad input {0}")]
/// struct BadInput(u8);
///
/// let Error::User(u) = Error::user(BadInput(7)) else { panic!() };
/// assert_eq!(u.kind(), std::any::type_name::<BadInput>()); // its full type path
/// assert!(u.kind().ends_with("::BadInput"));
/// assert_eq!(u.to_string(), "bad input 7");
/// let Error::User(twin) = Error::user(BadInput(7)) else { panic!() };
/// assert!(u == twin && !u.is_same(&twin)); // alike, but two errors
/// assert!(u.is_same(&u.clone())); // one error, seen twice
/// ```
#[derive(Debug, Clone)]
pub struct UserError {
    kind: String,
    source: Arc<dyn core::error::Error + Send + Sync>,
}

impl UserError {
    /// The name the error was given: its full type path unless set with [`Error::user_kind`].
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The original error value.
    pub fn inner(&self) -> &(dyn core::error::Error + Send + Sync + 'static) {
        &*self.source
    }

    /// Whether `self` and `other` are one error (clones of the value one [`Error::user`] or
    /// [`Error::user_kind`] call made), not merely alike.
    pub fn is_same(&self, other: &UserError) -> bool {
        Arc::ptr_eq(&self.source, &other.source)
    }
}

impl PartialEq for UserError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && alloc::format!("{}", self.source) == alloc::format!("{}", other.source)
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.source, f)
    }
}

impl core::error::Error for UserError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        self.source.source()
    }
}

/// An operating-system or I/O error, kept whole: with `std`, the real [`std::io::Error`] (shared,
/// so that [`Error`] stays `Clone`), with its [`ErrorKind`](std::io::ErrorKind), its errno and
/// its source; without `std`, the errno.
///
/// Two `IoError`s are equal (`==`) when their kind, errno and text are; [`IoError::is_same`]
/// tells whether they are one error.
///
/// ```
/// use infect::error::IoError;
/// use std::io;
///
/// let e = IoError::from(io::Error::from_raw_os_error(libc::ECONNREFUSED));
/// assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
/// assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
/// assert_eq!(e, IoError::from_raw_os_error(libc::ECONNREFUSED));
/// assert!(e.is_same(&e.clone()) && !e.is_same(&IoError::from_raw_os_error(libc::ECONNREFUSED)));
/// ```
#[derive(Clone)]
pub struct IoError {
    #[cfg(feature = "std")]
    inner: Arc<std::io::Error>,
    #[cfg(not(feature = "std"))]
    inner: Arc<i32>,
}

impl IoError {
    /// The error of OS error code `errno` (what `errno` held after a failed call).
    pub fn from_raw_os_error(errno: i32) -> IoError {
        #[cfg(feature = "std")]
        return IoError::from(std::io::Error::from_raw_os_error(errno));
        #[cfg(not(feature = "std"))]
        return IoError { inner: Arc::new(errno) };
    }

    /// The OS error code, if the error came from the OS.
    pub fn raw_os_error(&self) -> Option<i32> {
        #[cfg(feature = "std")]
        return self.inner.raw_os_error();
        #[cfg(not(feature = "std"))]
        return Some(*self.inner);
    }

    /// The I/O error kind (`ConnectionRefused`, `UnexpectedEof`, ...).
    #[cfg(feature = "std")]
    pub fn kind(&self) -> std::io::ErrorKind {
        self.inner.kind()
    }

    /// The [`std::io::Error`] itself.
    #[cfg(feature = "std")]
    pub fn get(&self) -> &std::io::Error {
        &self.inner
    }

    /// Whether `self` and `other` are one error (clones of one value), not merely alike.
    pub fn is_same(&self, other: &IoError) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

#[cfg(feature = "std")]
impl From<std::io::Error> for IoError {
    fn from(e: std::io::Error) -> IoError {
        IoError { inner: Arc::new(e) }
    }
}

impl PartialEq for IoError {
    fn eq(&self, other: &Self) -> bool {
        #[cfg(feature = "std")]
        return self.kind() == other.kind()
            && self.raw_os_error() == other.raw_os_error()
            && alloc::format!("{}", self.inner) == alloc::format!("{}", other.inner);
        #[cfg(not(feature = "std"))]
        return self.inner == other.inner;
    }
}

impl fmt::Debug for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.inner, f)
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[cfg(feature = "std")]
        return fmt::Display::fmt(&*self.inner, f);
        #[cfg(not(feature = "std"))]
        return write!(f, "os error {}", self.inner);
    }
}

impl core::error::Error for IoError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        #[cfg(feature = "std")]
        return self.inner.source();
        #[cfg(not(feature = "std"))]
        return None;
    }
}

/// A plain message used as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
struct Message(String);

/// Everything that can go wrong in `infect`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The guest task was inside a cancelled [`CancelScope`](crate::guest::CancelScope). The
    /// innermost cancelled scope around the await catches it; code above sees nothing.
    #[error("cancelled by an enclosing cancel scope")]
    Cancelled,
    /// A [`fail_after`](crate::guest::fail_after) deadline passed before its body finished.
    #[error("deadline exceeded (fail_after)")]
    TooSlow,
    /// A host task was cancelled (see [`Cancelled`]).
    #[error(transparent)]
    HostTaskCancelled(Cancelled),
    /// Seen by the guest: the linked host task was cancelled by itself or by a third party, not
    /// by the guest side.
    #[error("the linked host task was cancelled, not by the guest side: {reason}")]
    HostCancelled {
        /// The reason the host task was cancelled with.
        reason: String,
    },
    /// Seen by the guest: the linked host task returned while the guest still held the link.
    #[error("the linked host task exited while the guest side still held the link")]
    HostTaskExited,
    /// Seen by the host: the guest side was cancelled or failed, so the host task is torn down.
    #[error("the linked guest task was cancelled or failed{}", match cause { Some(c) => alloc::format!(": {}: {c}", c.kind()), None => String::new() })]
    GuestCancelled {
        /// The guest's error, when it failed (`None` when it was only cancelled).
        cause: Option<Box<Error>>,
    },
    /// Seen by the host: the guest side left the linked block normally while the host task ran.
    #[error("the linked guest task exited while the host task was still running")]
    GuestTaskExited,
    /// Several independent errors.
    #[error(transparent)]
    Group(#[from] ErrorGroup),
    /// A `to_host` call from a guest that is not riding a host.
    #[error(
        "to_host called outside an infected guest: start the guest with `Host::run_guest` \
         (or spawn the actor with `infect_host(true)`) before linking host tasks"
    )]
    NotInfected,
    /// The host stopped (or the run handle was dropped) before the guest run finished.
    #[error(
        "the host stopped before the guest run finished: keep the host running (and the \
         GuestRun handle alive) until the guest's done callback has been called"
    )]
    GuestRunAbandoned,
    /// `Host::run_guest` while another guest run is active on the same host.
    #[error("a guest run is already active on this host: one guest run per host at a time")]
    GuestAlreadyRunning,
    /// `Nursery::start` child returned without calling `started`.
    #[error("the task passed to Nursery::start returned without calling task_status.started()")]
    StartedNotCalled,
    /// A guest-only API (a nursery) was used outside a guest task.
    #[error("this needs a running guest task: call it from inside guest::run or start_guest_run")]
    OutsideGuest,
    /// A nursery that has already closed was asked to start a task.
    #[error("the nursery is closed: start tasks while its block is still running")]
    NurseryClosed,
    /// A channel's other side is gone.
    #[error("the channel is closed")]
    Closed,
    /// `receive()` found the end of a channel or stream: every sender dropped (a guest
    /// channel), the peer closed its side or the context ended (a context's stream), everything
    /// sent before was received (trio's `EndOfChannel`). The `Option`-shaped reads
    /// (`try_next`, the `Stream`s) give `None` instead. (A linked pair's `receive` ends with
    /// [`Error::HostTaskExited`] instead: its sender is a host task, and that is its exit.)
    #[error("end of channel: the sending side closed it")]
    EndOfChannel,
    /// A non-blocking send found the other side's buffer full (the value was handed back).
    #[error("the channel is full: wait with send().await, or raise the capacity")]
    Full,
    /// A broadcast subscriber fell behind and missed this many values.
    #[error("the subscriber fell behind and skipped {skipped} values")]
    Lagged {
        /// How many values it missed.
        skipped: u64,
    },
    /// A user error.
    #[error(transparent)]
    User(UserError),
    /// An error raised in another actor (process), boxed with its kind name, message, source
    /// actor and relay path (tractor's `RemoteActorError`).
    ///
    /// Match its kind with [`RemoteActorError::kind`] or [`RemoteActorError::is`]. It is shared
    /// (an `Arc`), so that its clones are [the same error](Error::is_same).
    #[error(transparent)]
    RemoteActor(Arc<RemoteActorError>),
    /// A remote call or context ended because an actor cancelled it (tractor's
    /// `ContextCancelled`): a kind of remote error, with the name of the actor that asked for the
    /// cancellation.
    #[error("cancelled by actor '{canceller}': {remote}")]
    ContextCancelled {
        /// The name of the actor that requested the cancellation.
        canceller: String,
        /// Where the cancellation was raised and how it travelled.
        remote: Arc<RemoteActorError>,
    },
    /// An actor was asked to run an endpoint of a namespace it was not told to serve.
    #[error(
        "namespace '{ns}' is not enabled in actor '{actor}': add it to the actor's \
         `ActorOpts::enable_modules` when starting it"
    )]
    ModuleNotExposed {
        /// The namespace that was asked for.
        ns: String,
        /// The actor that refused it.
        actor: String,
    },
    /// An actor was asked to run a function that its binary does not register.
    #[error(
        "no function '{func}' in namespace '{ns}' of actor '{actor}': register it with \
         `Endpoints::serve` in the binary the actor runs"
    )]
    UnknownFunction {
        /// The namespace.
        ns: String,
        /// The function name that is not registered.
        func: String,
        /// The actor that was asked.
        actor: String,
    },
    /// A child actor's process ended (exit status or signal) while something still waited on
    /// it.
    ///
    /// For an actor started through a launcher (`ActorOpts::launcher`), `code` and `signal`
    /// are the local launcher's (ssh passes the remote program's exit status on, and exits 255
    /// when the remote program was killed or the connection broke) and `stderr` quotes the last
    /// line written to the launcher's stderr (its own messages and the remote program's).
    #[error(
        "actor '{actor}' died: {}{}{}",
        describe_exit(*code, *signal),
        match panic { Some(p) => alloc::format!(" after it {p}"), None => String::new() },
        quote_stderr(stderr.as_deref())
    )]
    ActorDied {
        /// The actor's name.
        actor: String,
        /// Its exit status, if it exited.
        code: Option<i32>,
        /// The signal that killed it, if one did.
        signal: Option<i32>,
        /// The panic the actor reported just before it died (`panicked at file:line:col:
        /// message`): under `panic = "abort"` its panic hook writes it to the parent before the
        /// process aborts. `None` for any other death.
        panic: Option<String>,
        /// For an actor started through a launcher: the last line of the launcher's stderr, if
        /// anything was written there. `None` for an actor spawned directly (its stderr is
        /// ours).
        stderr: Option<String>,
    },
    /// A task panicked (with unwinding): caught at the task boundary (an actor's endpoint or
    /// context, a `to_host` host task) and delivered as this error instead of unwinding
    /// further. Across a process it arrives as a remote error of kind `Panic`.
    #[error("panicked at {}: {message}", location.as_deref().unwrap_or("<unknown location>"))]
    Panic {
        /// The panic's message (its payload, if a string).
        message: String,
        /// `file:line:column`, if the panic hook saw it (the actor runtime installs one; a hook
        /// of your own that does not chain to the previous one hides it).
        location: Option<String>,
    },
    /// An actor process could not be started.
    #[error("could not start actor '{actor}': {reason}")]
    SpawnFailed {
        /// The actor's name.
        actor: String,
        /// What went wrong (the OS error's text, or why the actor was refused).
        reason: String,
        /// The OS error, when an OS call failed (`ENOENT` for a program that does not exist);
        /// `None` when the actor was refused before anything was spawned.
        source: Option<IoError>,
    },
    /// A child actor did not complete its handshake (its `Aid`) within
    /// [`ActorOpts::start_timeout`](crate::actor::ActorOpts::start_timeout): it was terminated
    /// (`SIGTERM`, then `SIGKILL`; for an actor started through a launcher, the launcher) and
    /// reaped.
    #[error(
        "actor '{actor}' did not complete its handshake within {} ms: is the program an infect \
         actor (does it call `infect::actor::main`)? If it only starts slowly (a launcher still \
         connecting, say), raise `ActorOpts::start_timeout`{}", timeout.as_millis(), quote_stderr(stderr.as_deref())
    )]
    StartTimeout {
        /// The actor's name.
        actor: String,
        /// The bound that passed.
        timeout: core::time::Duration,
        /// For an actor started through a launcher: the last line of the launcher's stderr, if
        /// it wrote one (ssh's complaint, say). `None` for an actor spawned directly.
        stderr: Option<String>,
    },
    /// The root actor was interrupted (`SIGINT`, or `SIGTERM`): tractor's `KeyboardInterrupt`.
    /// An actor nursery open in the root returns it once it has torn its actors down (see
    /// [`actor::main`](crate::actor::main) for the rule); the root may handle it or let it
    /// propagate, in which case the process exits with `128 + signal`.
    #[error("interrupted by signal {signal}{}: the actor tree was cancelled", signal_name(*signal))]
    Interrupted {
        /// The signal number (2 for `SIGINT`).
        signal: i32,
    },
    /// A frame could not be sent or was received damaged, or a payload did not (de)serialize.
    #[error(transparent)]
    Wire(#[from] crate::wire::WireError),
    /// An operating-system call that the crate made failed (a pipe, `poll`, `waitid`, ...).
    #[error("{op} failed: {source}")]
    Os {
        /// What was being done (the call, or what it was for).
        op: String,
        /// The OS error, whole ([`Error::io_error`] reaches it).
        source: IoError,
    },
    /// A socket or other I/O operation of a host task failed: an `std::io::Error` that `?`
    /// converted, kept whole (a cancelled host-aware I/O call converts to its [`Cancelled`]
    /// instead).
    #[error("I/O error: {0}")]
    Io(IoError),
    /// A child actor was started with a malformed start-up variable: the program was not
    /// started by an infect parent (or the variable was changed on the way).
    #[error("malformed actor start-up variable {var}={value:?}: start actors with an ActorNursery, not by hand")]
    BadActorEnv {
        /// The variable's name.
        var: String,
        /// Its value.
        value: String,
    },
    /// A host API that needs the host loop (a [`host::net`](crate::host::net) socket) was used
    /// where no host loop runs.
    #[error(
        "no host loop is running on this thread: make sockets inside a host task, \
         `Host::block_on`, or a `to_host` task"
    )]
    NoHostLoop,
    /// An actor API was used outside an actor runtime.
    #[error(
        "no actor runtime is running: call this from inside `infect::actor::main` (or an \
         endpoint it serves)"
    )]
    NoActorRuntime,
    /// A context's `ctx.started(value)` was called a second time.
    #[error("ctx.started() was already called in context '{ctx}': call it exactly once, before streaming")]
    StartedTwice {
        /// The context's endpoint (`ns.func`).
        ctx: String,
    },
    /// `started_nowait` was called a second time on one linked channel.
    #[error("started_nowait called twice on one linked channel")]
    LinkStartedTwice,
    /// The linked host task's result was already taken by an earlier `wait_for_result`.
    #[error("the host task's result was already taken")]
    ResultTaken,
    /// A [`CancelScope`](crate::guest::CancelScope) was entered a second time.
    #[error("a CancelScope can be entered only once: make a new one")]
    ScopeReused,
    /// A function endpoint was called as a context, or a context endpoint as a function.
    #[error("'{func}' is a {is} endpoint, but it was called as a {called}")]
    WrongFunctionKind {
        /// The endpoint (`ns.func`).
        func: String,
        /// What the endpoint is (`Function` or `Context`).
        is: String,
        /// How it was called.
        called: String,
    },
    /// A context already has an open stream (one stream per context at a time).
    #[error("context '{ctx}' already has an open stream")]
    StreamAlreadyOpen {
        /// The context's endpoint (`ns.func`).
        ctx: String,
    },
    /// A `Context` method was used on the side it is not for (caller or callee).
    #[error("ctx.{what}() is only for {side}")]
    WrongContextSide {
        /// The method.
        what: String,
        /// The side it is for.
        side: String,
    },
    /// A host was built without `std` and without a clock.
    #[error("a host needs a clock without std: HostBuilder::clock")]
    NoClock,
    /// A context endpoint opened a stream, or returned, before it called `ctx.started(value)`.
    #[error(
        "context '{ctx}' did not call ctx.started(): call it once before opening a stream or \
         returning, so that the caller's open_context can begin"
    )]
    NotStarted {
        /// The context's endpoint (`ns.func`).
        ctx: String,
    },
    /// A context's peer broke the flow-control rule: it sent more stream items than the window
    /// of `actor::STREAM_BUFFER` items it was granted (an infect peer
    /// waits for credit instead). The items past the window were not delivered (nothing is lost
    /// silently: this error is the report), and the stream is over.
    #[error(
        "the peer of context '{ctx}' sent {dropped} stream item(s) past its {capacity}-item credit \
         window; they were not delivered (a protocol error: the peer does not wait for credit)"
    )]
    StreamOverrun {
        /// The context's endpoint (`ns.func`).
        ctx: String,
        /// The buffer's capacity, in stream items.
        capacity: usize,
        /// How many items arrived past it.
        dropped: u64,
    },
    /// A peer sent a message that is out of the protocol's dialog: one its side may not send,
    /// or not at this point (a second `Aid`, a `CancelAck` for a cancel nobody asked for, a
    /// `Start` from a child, a message for a call that was never opened or already ended, a
    /// stream item after the peer's `Stop` or past its credit window). It was refused (not
    /// acted on) and reported; the actor and its other calls go on.
    #[error("refused a {msg} message from actor '{peer}': {why}")]
    UnexpectedMessage {
        /// The actor that sent it.
        peer: String,
        /// The message's variant name (`Msg::name`).
        msg: String,
        /// Why it is out of the dialog.
        why: String,
    },
    /// An actor started through a launcher (`ActorOpts::launcher`: ssh, srun, `kubectl exec`)
    /// did not get as far as its handshake: the launcher could not be run, or it (or the
    /// program it started) ended before the actor answered. `failure` says which, by the
    /// launcher's exit status; `stderr` quotes the last line the launcher wrote to its stderr,
    /// which usually says the rest (`Permission denied (publickey).`, `command not found`).
    #[error(
        "could not start actor '{actor}' through `{launcher}`: {failure}{}{}",
        match (code, signal) { (None, None) => String::new(), _ => alloc::format!(" ({})", describe_exit(*code, *signal)) },
        quote_stderr(stderr.as_deref())
    )]
    LaunchFailed {
        /// The actor's name.
        actor: String,
        /// The launcher prefix, its words joined by spaces.
        launcher: String,
        /// What went wrong, as far as the exit status tells.
        failure: LaunchFailure,
        /// The launcher's exit status, if it ran and exited.
        code: Option<i32>,
        /// The signal that killed the launcher, if one did.
        signal: Option<i32>,
        /// The last line of the launcher's stderr, if it wrote one.
        stderr: Option<String>,
    },
    /// A child actor's program speaks another version of the actor protocol than this parent
    /// (the handshake carries it: `wire::PROTOCOL_VERSION`): it refused the handshake and
    /// exited, typically an older or newer build of the program installed on the other host.
    #[error(
        "actor '{actor}' runs a program that speaks another version of infect's actor protocol (this parent speaks protocol {ours}): {report}; install the same build of the program on both sides (`ActorOpts::program` names the one to run)"
    )]
    ProtocolMismatch {
        /// The actor's name.
        actor: String,
        /// The protocol version this parent speaks.
        ours: u32,
        /// What the child said (its report, or the last line of its launcher's stderr).
        report: String,
    },
    /// A one-shot result asked of a portal that was not made by `run_in_actor` (the typed
    /// [`OneShot`](crate::actor::OneShot) makes this impossible from outside the crate).
    #[error("actor '{actor}' was started with start_actor: only run_in_actor portals have a result")]
    NoResult {
        /// The actor's name.
        actor: String,
    },
    /// Code running inside a [simulation](crate::sim) reached for something outside it: a real
    /// file descriptor, a thread, the wall clock, a real process, or a loop of its own. `what`
    /// names the call.
    #[error(
        "{what} reaches outside the simulation: inside infect::sim, actors talk over in-memory pipes on the virtual clock; use the simulated world's own means (guest and host tasks, child actors, the virtual clock)"
    )]
    OutsideSimulation {
        /// What was attempted, and by which actor.
        what: String,
    },
    /// A [simulation](crate::sim) could not finish: nothing can run and no timer is pending but
    /// the root has not finished (something waits on an event from outside the simulated
    /// world), or it ran past its time limit.
    #[error("the simulation with seed {seed} stopped at {at:?} of virtual time: {why}; still running: {running}")]
    SimulationStalled {
        /// The seed of the run.
        seed: u64,
        /// The virtual time it stopped at.
        at: core::time::Duration,
        /// Why it stopped.
        why: String,
        /// The actors still running.
        running: String,
    },
    /// A [simulation](crate::sim) run twice with the same seed ([`Sim::check`](crate::sim::Sim::check))
    /// took two different courses: something in the program is not determined by the seed.
    #[error(
        "the simulation with seed {seed} is not deterministic: two runs gave trace hashes {first:#018x} and {second:#018x}; first difference at event {at}: {left:?} vs {right:?}"
    )]
    Nondeterministic {
        /// The seed of the runs.
        seed: u64,
        /// The first run's trace hash.
        first: u64,
        /// The second run's trace hash.
        second: u64,
        /// The index of the first event that differs.
        at: usize,
        /// That event in the first run (empty: the trace had ended).
        left: String,
        /// That event in the second run.
        right: String,
    },
    /// [`debug::pause`](crate::debug::pause) was called in an actor that is not in debug mode
    /// (or outside an actor runtime): the pause is refused, nothing else happens.
    #[error(
        "pause() needs debug mode: run the root with `RootOpts::debug_mode(true)` (every child \
         inherits it) or start this actor with `ActorOpts::debug_mode(true)`"
    )]
    NotDebugMode,
    /// [`debug::pause`](crate::debug::pause) could not open the controlling terminal
    /// (`/dev/tty`) to show its prompt: the program runs without one (a daemon, a CI job,
    /// `setsid`), so nothing was paused and no lock was taken.
    #[error(
        "pause() needs a controlling terminal for its prompt, and opening /dev/tty failed: {source}; run the program from a terminal"
    )]
    NoTerminal {
        /// The error of `open("/dev/tty")`.
        source: IoError,
    },
}

/// What went wrong when an actor started through a launcher ended before its handshake
/// ([`Error::LaunchFailed`]), as far as the launcher's exit status tells.
///
/// ```
/// use infect::error::LaunchFailure;
///
/// assert_eq!(LaunchFailure::from_exit(Some(255), None), LaunchFailure::Launcher);
/// assert_eq!(LaunchFailure::from_exit(Some(127), None), LaunchFailure::ProgramMissing);
/// assert_eq!(LaunchFailure::from_exit(Some(1), None), LaunchFailure::Ended);
/// assert_eq!(LaunchFailure::from_exit(None, Some(9)), LaunchFailure::Ended);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum LaunchFailure {
    /// The launcher could not be run here (`execve` failed: not found, not executable).
    NotRun {
        /// The OS error (`ENOENT` for a launcher that does not exist).
        source: IoError,
    },
    /// The launcher failed on its own: it exited with status 255, which is how ssh reports its
    /// own errors (host unreachable, host key not accepted, authentication refused).
    Launcher,
    /// The other side could not find or run the program: exit status 127 or 126, the shell's
    /// "command not found" and "not executable".
    ProgramMissing,
    /// The launcher or the program ended before the handshake with another status.
    Ended,
}

impl LaunchFailure {
    /// Classifies a launcher that exited (`code`) or was killed (`signal`) before the actor's
    /// handshake.
    pub fn from_exit(code: Option<i32>, signal: Option<i32>) -> LaunchFailure {
        match (code, signal) {
            (Some(255), None) => LaunchFailure::Launcher,
            (Some(126 | 127), None) => LaunchFailure::ProgramMissing,
            _ => LaunchFailure::Ended,
        }
    }
}

impl fmt::Display for LaunchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchFailure::NotRun { source } => write!(f, "the launcher could not be run: {source}"),
            LaunchFailure::Launcher => f.write_str(
                "the launcher failed on its own (for ssh: the host could not be reached, its host key was not \
                 accepted, or it refused the authentication)",
            ),
            LaunchFailure::ProgramMissing => {
                f.write_str("the program was not found (or is not executable) on the other side")
            }
            LaunchFailure::Ended => f.write_str("the launcher ended before the actor's handshake"),
        }
    }
}

/// `: its launcher's last stderr line: "..."`, or nothing.
fn quote_stderr(line: Option<&str>) -> String {
    match line {
        Some(l) => alloc::format!("; the launcher's last stderr line: {l:?}"),
        None => String::new(),
    }
}

/// Describes an exit status or a signal for a message.
fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (_, Some(sig)) => alloc::format!("killed by signal {sig}{}", signal_name(sig)),
        (Some(c), None) => alloc::format!("exited with status {c}"),
        (None, None) => String::from("exited with an unknown status"),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => " (SIGHUP)",
        2 => " (SIGINT)",
        6 => " (SIGABRT: a panic under panic=abort, or an abort)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        13 => " (SIGPIPE)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

/// An error raised in another actor, as it arrived over IPC (tractor's `RemoteActorError`).
///
/// ```
/// use infect::error::RemoteActorError;
/// use infect::wire::Aid;
/// let e = RemoteActorError {
///     boxed_type: "ValueError".into(),
///     message: "bad value".into(),
///     src: Aid { name: "worker".into(), uuid: "u".into(), pid: 7 },
///     relay_path: vec!["middle".into()],
/// };
/// assert_eq!(e.to_string(), "ValueError raised in actor 'worker' (relayed by middle): bad value");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteActorError {
    /// The kind name of the original error ([`Error::kind`] in the actor that raised it).
    pub boxed_type: String,
    /// The original error's message.
    pub message: String,
    /// The actor in which it was raised.
    pub src: crate::wire::Aid,
    /// The actors that relayed it after `src`, oldest first.
    pub relay_path: Vec<String>,
}

impl fmt::Display for RemoteActorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} raised in actor '{}'", self.boxed_type, self.src.name)?;
        if !self.relay_path.is_empty() {
            write!(f, " (relayed by {})", self.relay_path.join(" -> "))?;
        }
        write!(f, ": {}", self.message)
    }
}

impl core::error::Error for RemoteActorError {}

impl RemoteActorError {
    /// The original error's kind: one of the crate's ([`RemoteKind::Crate`]) or a user error's.
    ///
    /// ```
    /// use infect::error::{ErrorKind, RemoteActorError, RemoteKind};
    /// use infect::wire::Aid;
    /// let e = RemoteActorError {
    ///     boxed_type: "ModuleNotExposed".into(),
    ///     message: "namespace 'math' is not enabled".into(),
    ///     src: Aid { name: "worker".into(), uuid: "u".into(), pid: 7 },
    ///     relay_path: vec![],
    /// };
    /// assert_eq!(e.kind(), RemoteKind::Crate(ErrorKind::ModuleNotExposed));
    /// assert!(e.is(ErrorKind::ModuleNotExposed));
    /// ```
    pub fn kind(&self) -> RemoteKind<'_> {
        RemoteKind::of(&self.boxed_type)
    }

    /// Whether the original error was of the crate's kind `kind`.
    pub fn is(&self, kind: ErrorKind) -> bool {
        self.kind() == RemoteKind::Crate(kind)
    }
}

impl Error {
    /// Wraps any error value as [`Error::User`], of kind its full type path
    /// ([`core::any::type_name`], `"my_crate::feed::FeedLost"`).
    ///
    /// An `std::io::Error` is not a user error: it becomes what `Error::from` makes of it
    /// ([`Error::Io`], or its [`Cancelled`]).
    ///
    /// ```
    /// use infect::Error;
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// #[error("the feed went away")]
    /// struct FeedLost;
    ///
    /// let e = Error::user(FeedLost);
    /// assert_eq!(e.kind(), std::any::type_name::<FeedLost>()); // "my_crate::FeedLost" in a crate
    /// assert!(e.kind().ends_with("::FeedLost"));
    /// assert_eq!(e.crate_kind(), None);
    /// let refused = Error::user(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
    /// assert_eq!(refused.kind(), "Io");
    /// ```
    pub fn user<E: core::error::Error + Send + Sync + 'static>(e: E) -> Error {
        #[cfg(feature = "std")]
        {
            let mut slot = Some(e);
            if let Some(io) = (&mut slot as &mut dyn core::any::Any).downcast_mut::<Option<std::io::Error>>() {
                return Error::from(io.take().expect("just put"));
            }
            let e = slot.expect("not taken");
            Error::user_kind(core::any::type_name::<E>(), e)
        }
        #[cfg(not(feature = "std"))]
        Error::user_kind(core::any::type_name::<E>(), e)
    }

    /// Wraps an error value as [`Error::User`] under an explicit kind name.
    ///
    /// A user kind never reads as one of the crate's kinds, on this side of a process boundary
    /// or the other: a `kind` that names one (`kind.parse::<ErrorKind>()` accepts it, say
    /// `"StartedTwice"` or `"Closed"`) is kept as `"user:"` followed by it, so that a remote
    /// error of kind `StartedTwice` is always the crate's.
    ///
    /// ```
    /// use infect::Error;
    /// use infect::error::ErrorKind;
    ///
    /// let e = Error::user_kind("ValueError", std::io::Error::other("bad value"));
    /// assert_eq!(e.kind(), "ValueError");
    /// let clash = Error::user_kind("StartedTwice", std::io::Error::other("my own error"));
    /// assert_eq!(clash.kind(), "user:StartedTwice");
    /// assert_eq!(ErrorKind::StartedTwice.as_str(), "StartedTwice");
    /// ```
    pub fn user_kind<E: core::error::Error + Send + Sync + 'static>(kind: &str, e: E) -> Error {
        let kind = match kind.parse::<ErrorKind>() {
            Ok(_) => alloc::format!("user:{kind}"),
            Err(_) => String::from(kind),
        };
        Error::User(UserError { kind, source: Arc::new(e) })
    }

    /// The user error's own value, when this is an [`Error::User`] made from an `E`: the way to
    /// match a user error by its type rather than by its kind string. (After a process
    /// boundary a user error is a [`RemoteActorError`], which keeps the kind, not the value.)
    ///
    /// ```
    /// use infect::Error;
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct FeedLost { after: u32 }
    /// impl std::fmt::Display for FeedLost {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         write!(f, "the feed went away after {} items", self.after)
    ///     }
    /// }
    /// impl std::error::Error for FeedLost {}
    ///
    /// let e = Error::user(FeedLost { after: 3 });
    /// assert_eq!(e.downcast_ref::<FeedLost>(), Some(&FeedLost { after: 3 }));
    /// assert_eq!(e.downcast_ref::<std::fmt::Error>(), None);
    /// assert_eq!(Error::Closed.downcast_ref::<FeedLost>(), None);
    /// ```
    pub fn downcast_ref<E: core::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Error::User(u) => u.inner().downcast_ref::<E>(),
            _ => None,
        }
    }

    /// A user error that is only a message, of kind `kind` (named as [`Error::user_kind`]
    /// names it).
    pub fn msg(kind: &str, message: impl Into<String>) -> Error {
        Error::user_kind(kind, Message(message.into()))
    }

    /// A stable name for this error's kind: the crate kind's name ([`ErrorKind::as_str`]), or
    /// the user error's kind. It is what crosses a process boundary as a remote error's
    /// `boxed_type`.
    ///
    /// ```
    /// use infect::Error;
    /// assert_eq!(Error::Closed.kind(), "Closed");
    /// assert_eq!(Error::msg("ValueError", "bad").kind(), "ValueError");
    /// ```
    pub fn kind(&self) -> &str {
        match (self, self.crate_kind()) {
            (Error::User(u), _) => u.kind(),
            (_, Some(k)) => k.as_str(),
            (_, None) => unreachable!("every error but a user error has a crate kind"),
        }
    }

    /// The crate's kind of this error, `None` for a user error ([`Error::User`]).
    ///
    /// ```
    /// use infect::Error;
    /// use infect::error::ErrorKind;
    /// assert_eq!(Error::Closed.crate_kind(), Some(ErrorKind::Closed));
    /// assert_eq!(Error::msg("ValueError", "bad").crate_kind(), None);
    /// ```
    pub fn crate_kind(&self) -> Option<ErrorKind> {
        use crate::wire::WireError as W;
        Some(match self {
            Error::Cancelled => ErrorKind::Cancelled,
            Error::TooSlow => ErrorKind::TooSlow,
            Error::HostTaskCancelled(_) => ErrorKind::HostTaskCancelled,
            Error::HostCancelled { .. } => ErrorKind::HostCancelled,
            Error::HostTaskExited => ErrorKind::HostTaskExited,
            Error::GuestCancelled { .. } => ErrorKind::GuestCancelled,
            Error::GuestTaskExited => ErrorKind::GuestTaskExited,
            Error::Group(_) => ErrorKind::ErrorGroup,
            Error::NotInfected => ErrorKind::NotInfected,
            Error::GuestRunAbandoned => ErrorKind::GuestRunAbandoned,
            Error::GuestAlreadyRunning => ErrorKind::GuestAlreadyRunning,
            Error::StartedNotCalled => ErrorKind::StartedNotCalled,
            Error::NurseryClosed => ErrorKind::NurseryClosed,
            Error::OutsideGuest => ErrorKind::OutsideGuest,
            Error::Closed => ErrorKind::Closed,
            Error::EndOfChannel => ErrorKind::EndOfChannel,
            Error::Full => ErrorKind::Full,
            Error::Lagged { .. } => ErrorKind::Lagged,
            Error::User(_) => return None,
            Error::RemoteActor(_) => ErrorKind::RemoteActorError,
            Error::ContextCancelled { .. } => ErrorKind::ContextCancelled,
            Error::ModuleNotExposed { .. } => ErrorKind::ModuleNotExposed,
            Error::UnknownFunction { .. } => ErrorKind::UnknownFunction,
            Error::ActorDied { .. } => ErrorKind::ActorDied,
            Error::Panic { .. } => ErrorKind::Panic,
            Error::SpawnFailed { .. } => ErrorKind::SpawnFailed,
            Error::StartTimeout { .. } => ErrorKind::StartTimeout,
            Error::Interrupted { .. } => ErrorKind::Interrupted,
            Error::Wire(W::FrameTooLarge { .. }) => ErrorKind::FrameTooLarge,
            Error::Wire(W::Corrupt { .. }) => ErrorKind::Corrupt,
            Error::Wire(W::Undecodable { .. }) => ErrorKind::Undecodable,
            Error::Wire(W::Truncated { .. }) => ErrorKind::Truncated,
            Error::Wire(W::Encode { .. }) => ErrorKind::Encode,
            Error::Wire(W::Decode { .. }) => ErrorKind::Decode,
            Error::Os { .. } => ErrorKind::Os,
            Error::Io(_) => ErrorKind::Io,
            Error::BadActorEnv { .. } => ErrorKind::BadActorEnv,
            Error::NoHostLoop => ErrorKind::NoHostLoop,
            Error::NoActorRuntime => ErrorKind::NoActorRuntime,
            Error::NoResult { .. } => ErrorKind::NoResult,
            Error::UnexpectedMessage { .. } => ErrorKind::UnexpectedMessage,
            Error::StartedTwice { .. } => ErrorKind::StartedTwice,
            Error::LinkStartedTwice => ErrorKind::LinkStartedTwice,
            Error::ResultTaken => ErrorKind::ResultTaken,
            Error::ScopeReused => ErrorKind::ScopeReused,
            Error::WrongFunctionKind { .. } => ErrorKind::WrongFunctionKind,
            Error::StreamAlreadyOpen { .. } => ErrorKind::StreamAlreadyOpen,
            Error::WrongContextSide { .. } => ErrorKind::WrongContextSide,
            Error::NoClock => ErrorKind::NoClock,
            Error::NotStarted { .. } => ErrorKind::NotStarted,
            Error::StreamOverrun { .. } => ErrorKind::StreamOverrun,
            Error::LaunchFailed { .. } => ErrorKind::LaunchFailed,
            Error::ProtocolMismatch { .. } => ErrorKind::ProtocolMismatch,
            Error::OutsideSimulation { .. } => ErrorKind::OutsideSimulation,
            Error::SimulationStalled { .. } => ErrorKind::SimulationStalled,
            Error::Nondeterministic { .. } => ErrorKind::Nondeterministic,
            Error::NotDebugMode => ErrorKind::NotDebugMode,
            Error::NoTerminal { .. } => ErrorKind::NoTerminal,
        })
    }

    /// The remote error inside a [`Error::RemoteActor`] or [`Error::ContextCancelled`].
    pub fn remote(&self) -> Option<&RemoteActorError> {
        match self {
            Error::RemoteActor(r) | Error::ContextCancelled { remote: r, .. } => Some(r),
            _ => None,
        }
    }

    /// The OS error inside an [`Error::Io`], [`Error::Os`] or [`Error::SpawnFailed`].
    ///
    /// ```
    /// use infect::Error;
    /// let e = Error::from(std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
    /// let io = e.io_error().unwrap();
    /// assert_eq!((io.kind(), io.raw_os_error()), (std::io::ErrorKind::ConnectionRefused, Some(libc::ECONNREFUSED)));
    /// ```
    pub fn io_error(&self) -> Option<&IoError> {
        match self {
            Error::Io(e) | Error::Os { source: e, .. } | Error::SpawnFailed { source: Some(e), .. } => Some(e),
            _ => None,
        }
    }

    /// Whether this is a guest cancellation ([`Error::Cancelled`]).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled)
    }

    /// Whether `self` and `other` are *one* error (the same error seen twice, say raised by a
    /// child and re-raised by the block that waited for it), not merely two that read alike.
    ///
    /// An error that carries a shared source (a user error, an OS error, a remote error) is the
    /// same as another only if that source is the same allocation (its clones); a group is the
    /// same as another if each of its errors is; any other crate error (a value with no source,
    /// like [`Error::Closed`]) is the same as an equal one. Nurseries use this to count an
    /// error once; `==` still compares values.
    ///
    /// ```
    /// use infect::Error;
    /// let a = Error::msg("ValueError", "bad");
    /// assert!(a.is_same(&a.clone()));
    /// assert!(a == Error::msg("ValueError", "bad") && !a.is_same(&Error::msg("ValueError", "bad")));
    /// assert!(Error::Closed.is_same(&Error::Closed));
    /// ```
    pub fn is_same(&self, other: &Error) -> bool {
        fn both(a: &Option<Box<Error>>, b: &Option<Box<Error>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => a.is_same(b),
                (None, None) => true,
                _ => false,
            }
        }
        match (self, other) {
            (Error::User(a), Error::User(b)) => a.is_same(b),
            (Error::Io(a), Error::Io(b)) => a.is_same(b),
            (Error::Os { op: a, source: x }, Error::Os { op: b, source: y }) => a == b && x.is_same(y),
            (
                Error::SpawnFailed { actor: a, reason: r, source: x },
                Error::SpawnFailed { actor: b, reason: q, source: y },
            ) => {
                a == b
                    && r == q
                    && match (x, y) {
                        (Some(x), Some(y)) => x.is_same(y),
                        (None, None) => true,
                        _ => false,
                    }
            }
            (Error::RemoteActor(a), Error::RemoteActor(b)) => Arc::ptr_eq(a, b),
            (
                Error::ContextCancelled { canceller: c, remote: a },
                Error::ContextCancelled { canceller: d, remote: b },
            ) => c == d && Arc::ptr_eq(a, b),
            (Error::Group(a), Error::Group(b)) => {
                a.0.len() == b.0.len() && a.0.iter().zip(&b.0).all(|(a, b)| a.is_same(b))
            }
            (Error::GuestCancelled { cause: a }, Error::GuestCancelled { cause: b }) => both(a, b),
            (Error::HostTaskCancelled(a), Error::HostTaskCancelled(b)) => {
                a.reason == b.reason && both(&a.cause, &b.cause)
            }
            _ => self == other,
        }
    }
}

/// `?` on an I/O result inside a host task: an error made by a cancelled host-aware I/O call
/// (see [`host::net`](crate::host::net)) becomes that [`Cancelled`] (so a link teardown's cause
/// comes out unchanged, as from a cancelled `sleep`), one that wraps an [`Error`] becomes it;
/// any other becomes [`Error::Io`], whole (its kind, errno and source).
///
/// ```
/// use infect::{Cancelled, Error};
/// use std::io;
/// let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
/// let Error::Io(e) = Error::from(refused) else { panic!() };
/// assert_eq!((e.kind(), e.raw_os_error()), (io::ErrorKind::ConnectionRefused, Some(libc::ECONNREFUSED)));
/// let cancelled = io::Error::other(Cancelled::new("stop"));
/// assert_eq!(Error::from(cancelled), Error::HostTaskCancelled(Cancelled::new("stop")));
/// ```
#[cfg(feature = "std")]
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        let inner = e.get_ref();
        if let Some(c) = inner.and_then(|i| i.downcast_ref::<Cancelled>()) {
            return Error::from(c.clone());
        }
        if let Some(err) = inner.and_then(|i| i.downcast_ref::<Error>()) {
            return err.clone();
        }
        Error::Io(IoError::from(e))
    }
}

impl From<IoError> for Error {
    fn from(e: IoError) -> Error {
        Error::Io(e)
    }
}

macro_rules! error_kinds {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// The crate's own error kinds, one per [`Error`] variant (and one per
        /// [`WireError`](crate::wire::WireError) variant), by the name [`Error::kind`] gives and
        /// that crosses the wire: match a local error with [`Error::crate_kind`] and a remote
        /// one with [`RemoteActorError::kind`] or [`RemoteActorError::is`], without comparing
        /// strings.
        ///
        /// The names are stable: each is its variant's name ([`ErrorKind::as_str`], and
        /// [`str::parse`] back), except [`ErrorGroup`](ErrorKind::ErrorGroup) for
        /// [`Error::Group`] and [`RemoteActorError`](ErrorKind::RemoteActorError) for
        /// [`Error::RemoteActor`].
        ///
        /// ```
        /// use infect::error::ErrorKind;
        /// assert_eq!(ErrorKind::SpawnFailed.as_str(), "SpawnFailed");
        /// assert_eq!("SpawnFailed".parse::<ErrorKind>(), Ok(ErrorKind::SpawnFailed));
        /// assert!("ValueError".parse::<ErrorKind>().is_err());
        /// assert_eq!(ErrorKind::SpawnFailed, "SpawnFailed");
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $($(#[$doc])* $name,)*
        }

        impl ErrorKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$name,)*];

            /// The kind's stable name, as [`Error::kind`] gives it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorKind::$name => stringify!($name),)*
                }
            }
        }

        impl core::str::FromStr for ErrorKind {
            type Err = UnknownKind;

            fn from_str(s: &str) -> Result<ErrorKind, UnknownKind> {
                match s {
                    $(stringify!($name) => Ok(ErrorKind::$name),)*
                    _ => Err(UnknownKind),
                }
            }
        }
    };
}

error_kinds! {
    /// [`Error::Cancelled`].
    Cancelled,
    /// [`Error::TooSlow`].
    TooSlow,
    /// [`Error::HostTaskCancelled`].
    HostTaskCancelled,
    /// [`Error::HostCancelled`].
    HostCancelled,
    /// [`Error::HostTaskExited`].
    HostTaskExited,
    /// [`Error::GuestCancelled`].
    GuestCancelled,
    /// [`Error::GuestTaskExited`].
    GuestTaskExited,
    /// [`Error::Group`].
    ErrorGroup,
    /// [`Error::NotInfected`].
    NotInfected,
    /// [`Error::GuestRunAbandoned`].
    GuestRunAbandoned,
    /// [`Error::GuestAlreadyRunning`].
    GuestAlreadyRunning,
    /// [`Error::StartedNotCalled`].
    StartedNotCalled,
    /// [`Error::NurseryClosed`].
    NurseryClosed,
    /// [`Error::OutsideGuest`].
    OutsideGuest,
    /// [`Error::Closed`].
    Closed,
    /// [`Error::EndOfChannel`].
    EndOfChannel,
    /// [`Error::Full`].
    Full,
    /// [`Error::Lagged`].
    Lagged,
    /// [`Error::RemoteActor`].
    RemoteActorError,
    /// [`Error::ContextCancelled`].
    ContextCancelled,
    /// [`Error::ModuleNotExposed`].
    ModuleNotExposed,
    /// [`Error::UnknownFunction`].
    UnknownFunction,
    /// [`Error::ActorDied`].
    ActorDied,
    /// [`Error::Panic`].
    Panic,
    /// [`Error::SpawnFailed`].
    SpawnFailed,
    /// [`Error::StartTimeout`].
    StartTimeout,
    /// [`Error::Interrupted`].
    Interrupted,
    /// [`WireError::FrameTooLarge`](crate::wire::WireError::FrameTooLarge).
    FrameTooLarge,
    /// [`WireError::Corrupt`](crate::wire::WireError::Corrupt).
    Corrupt,
    /// [`WireError::Undecodable`](crate::wire::WireError::Undecodable).
    Undecodable,
    /// [`WireError::Truncated`](crate::wire::WireError::Truncated).
    Truncated,
    /// [`WireError::Encode`](crate::wire::WireError::Encode).
    Encode,
    /// [`WireError::Decode`](crate::wire::WireError::Decode).
    Decode,
    /// [`Error::Os`].
    Os,
    /// [`Error::Io`].
    Io,
    /// [`Error::BadActorEnv`].
    BadActorEnv,
    /// [`Error::NoHostLoop`].
    NoHostLoop,
    /// [`Error::NoActorRuntime`].
    NoActorRuntime,
    /// [`Error::StartedTwice`].
    StartedTwice,
    /// [`Error::LinkStartedTwice`].
    LinkStartedTwice,
    /// [`Error::ResultTaken`].
    ResultTaken,
    /// [`Error::ScopeReused`].
    ScopeReused,
    /// [`Error::WrongFunctionKind`].
    WrongFunctionKind,
    /// [`Error::StreamAlreadyOpen`].
    StreamAlreadyOpen,
    /// [`Error::WrongContextSide`].
    WrongContextSide,
    /// [`Error::NoClock`].
    NoClock,
    /// [`Error::NotStarted`].
    NotStarted,
    /// [`Error::StreamOverrun`].
    StreamOverrun,
    /// [`Error::UnexpectedMessage`].
    UnexpectedMessage,
    /// [`Error::NoResult`].
    NoResult,
    /// [`Error::LaunchFailed`].
    LaunchFailed,
    /// [`Error::ProtocolMismatch`].
    ProtocolMismatch,
    /// [`Error::OutsideSimulation`].
    OutsideSimulation,
    /// [`Error::SimulationStalled`].
    SimulationStalled,
    /// [`Error::Nondeterministic`].
    Nondeterministic,
    /// [`Error::NotDebugMode`].
    NotDebugMode,
    /// [`Error::NoTerminal`].
    NoTerminal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ErrorKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A name that is none of the crate's [`ErrorKind`]s (a user error's kind, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not one of infect's error kinds")]
pub struct UnknownKind;

/// The kind of a [`RemoteActorError`]: one of the crate's own, or a user error's.
///
/// ```
/// use infect::error::{ErrorKind, RemoteKind};
/// assert_eq!(RemoteKind::of("SpawnFailed"), RemoteKind::Crate(ErrorKind::SpawnFailed));
/// assert_eq!(RemoteKind::of("my_app::FeedLost"), RemoteKind::User("my_app::FeedLost"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteKind<'a> {
    /// One of the crate's kinds.
    Crate(ErrorKind),
    /// A user error's kind (its type path, or the name it was given).
    User(&'a str),
}

impl<'a> RemoteKind<'a> {
    /// The kind that the wire name `boxed_type` stands for. A user kind never reads as a crate
    /// kind (see [`Error::user_kind`]), so for an infect peer this is exact.
    pub fn of(boxed_type: &'a str) -> RemoteKind<'a> {
        match boxed_type.parse() {
            Ok(k) => RemoteKind::Crate(k),
            Err(_) => RemoteKind::User(boxed_type),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Aid, Malformed, WireError};
    use alloc::string::ToString;
    use alloc::vec;

    fn s(x: &str) -> String {
        x.to_string()
    }

    fn remote(kind: &str) -> Arc<RemoteActorError> {
        Arc::new(RemoteActorError {
            boxed_type: s(kind),
            message: s("m"),
            src: Aid { name: s("a"), uuid: s("u"), pid: 1 },
            relay_path: vec![],
        })
    }

    /// One value of every crate variant and the kind string it must keep: the names cross the
    /// wire, so renaming one breaks peers built from another version. Do not edit a row; add
    /// one for a new variant.
    fn table() -> Vec<(Error, &'static str)> {
        let pc = || Malformed::Postcard(postcard::Error::SerdeDeCustom);
        vec![
            (Error::Cancelled, "Cancelled"),
            (Error::TooSlow, "TooSlow"),
            (Error::HostTaskCancelled(Cancelled::new("r")), "HostTaskCancelled"),
            (Error::HostCancelled { reason: s("r") }, "HostCancelled"),
            (Error::HostTaskExited, "HostTaskExited"),
            (Error::GuestCancelled { cause: None }, "GuestCancelled"),
            (Error::GuestTaskExited, "GuestTaskExited"),
            (Error::Group(ErrorGroup(vec![])), "ErrorGroup"),
            (Error::NotInfected, "NotInfected"),
            (Error::GuestRunAbandoned, "GuestRunAbandoned"),
            (Error::GuestAlreadyRunning, "GuestAlreadyRunning"),
            (Error::StartedNotCalled, "StartedNotCalled"),
            (Error::NurseryClosed, "NurseryClosed"),
            (Error::OutsideGuest, "OutsideGuest"),
            (Error::Closed, "Closed"),
            (Error::EndOfChannel, "EndOfChannel"),
            (Error::Full, "Full"),
            (Error::Lagged { skipped: 1 }, "Lagged"),
            (Error::RemoteActor(remote("ValueError")), "RemoteActorError"),
            (Error::ContextCancelled { canceller: s("c"), remote: remote("ContextCancelled") }, "ContextCancelled"),
            (Error::ModuleNotExposed { ns: s("n"), actor: s("a") }, "ModuleNotExposed"),
            (Error::UnknownFunction { ns: s("n"), func: s("f"), actor: s("a") }, "UnknownFunction"),
            (Error::ActorDied { actor: s("a"), code: Some(1), signal: None, panic: None, stderr: None }, "ActorDied"),
            (Error::Panic { message: s("m"), location: None }, "Panic"),
            (Error::SpawnFailed { actor: s("a"), reason: s("r"), source: None }, "SpawnFailed"),
            (
                Error::StartTimeout { actor: s("a"), timeout: core::time::Duration::from_secs(1), stderr: None },
                "StartTimeout",
            ),
            (Error::Interrupted { signal: 2 }, "Interrupted"),
            (Error::Wire(WireError::FrameTooLarge { size: 2, max: 1 }), "FrameTooLarge"),
            (Error::Wire(WireError::Corrupt { size: 1 }), "Corrupt"),
            (Error::Wire(WireError::Undecodable { size: 1, reason: pc() }), "Undecodable"),
            (Error::Wire(WireError::Truncated { bytes: 1 }), "Truncated"),
            (Error::Wire(WireError::Encode { type_name: "u8", cause: postcard::Error::SerdeSerCustom }), "Encode"),
            (Error::Wire(WireError::Decode { type_name: "u8", reason: pc() }), "Decode"),
            (Error::Os { op: s("pipe"), source: IoError::from_raw_os_error(24) }, "Os"),
            (Error::Io(IoError::from_raw_os_error(111)), "Io"),
            (Error::BadActorEnv { var: s("V"), value: s("x") }, "BadActorEnv"),
            (Error::NoHostLoop, "NoHostLoop"),
            (Error::NoActorRuntime, "NoActorRuntime"),
            (Error::StartedTwice { ctx: s("c") }, "StartedTwice"),
            (Error::LinkStartedTwice, "LinkStartedTwice"),
            (Error::ResultTaken, "ResultTaken"),
            (Error::ScopeReused, "ScopeReused"),
            (Error::WrongFunctionKind { func: s("f"), is: s("Function"), called: s("Context") }, "WrongFunctionKind"),
            (Error::StreamAlreadyOpen { ctx: s("c") }, "StreamAlreadyOpen"),
            (Error::WrongContextSide { what: s("w"), side: s("s") }, "WrongContextSide"),
            (Error::NoClock, "NoClock"),
            (Error::NotStarted { ctx: s("c") }, "NotStarted"),
            (Error::StreamOverrun { ctx: s("c"), capacity: 1, dropped: 1 }, "StreamOverrun"),
            (Error::UnexpectedMessage { peer: s("p"), msg: s("Aid"), why: s("w") }, "UnexpectedMessage"),
            (Error::NoResult { actor: s("a") }, "NoResult"),
            (
                Error::LaunchFailed {
                    actor: s("a"),
                    launcher: s("ssh h"),
                    failure: LaunchFailure::Launcher,
                    code: Some(255),
                    signal: None,
                    stderr: None,
                },
                "LaunchFailed",
            ),
            (Error::ProtocolMismatch { actor: s("a"), ours: 1, report: s("r") }, "ProtocolMismatch"),
            (Error::OutsideSimulation { what: s("w") }, "OutsideSimulation"),
            (
                Error::SimulationStalled { seed: 1, at: core::time::Duration::ZERO, why: s("w"), running: s("r") },
                "SimulationStalled",
            ),
            (
                Error::Nondeterministic { seed: 1, first: 1, second: 2, at: 0, left: s("a"), right: s("b") },
                "Nondeterministic",
            ),
            (Error::NotDebugMode, "NotDebugMode"),
            (Error::NoTerminal { source: IoError::from_raw_os_error(6) }, "NoTerminal"),
        ]
    }

    #[test]
    fn every_crate_kind_string_is_pinned() {
        let table = table();
        for (e, name) in &table {
            assert_eq!(e.kind(), *name, "{e:?}");
            let k = e.crate_kind().expect("a crate error has a crate kind");
            assert_eq!((k.as_str(), name.parse::<ErrorKind>()), (*name, Ok(k)), "{e:?}");
            assert_eq!(RemoteKind::of(name), RemoteKind::Crate(k));
        }
        // One row per kind, each kind once, in declaration order.
        let kinds: Vec<ErrorKind> = table.iter().map(|(e, _)| e.crate_kind().unwrap()).collect();
        assert_eq!(kinds, ErrorKind::ALL);
        assert_eq!(ErrorKind::ALL.len(), 57);
    }

    #[test]
    fn a_user_kind_is_explicit_or_the_full_type_path_and_never_a_crate_kind() {
        #[derive(Debug, thiserror::Error)]
        #[error("feed lost")]
        struct FeedLost;
        let e = Error::user(FeedLost);
        assert_eq!(
            e.kind(),
            "infect::error::tests::a_user_kind_is_explicit_or_the_full_type_path_and_never_a_crate_kind::FeedLost"
        );
        assert_eq!(e.crate_kind(), None);
        assert_eq!(Error::user_kind("FeedLost", FeedLost).kind(), "FeedLost");
        for k in ErrorKind::ALL {
            let e = Error::msg(k.as_str(), "mine");
            let want = alloc::format!("user:{}", k.as_str());
            assert_eq!(
                (e.kind(), e.crate_kind(), RemoteKind::of(e.kind())),
                (want.as_str(), None, RemoteKind::User(&want))
            );
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn an_io_error_keeps_its_errno_kind_and_source() {
        use std::io;
        let e = Error::from(io::Error::from_raw_os_error(libc::ECONNREFUSED));
        let Error::Io(io) = &e else { panic!("{e:?}") };
        assert_eq!((io.kind(), io.raw_os_error()), (io::ErrorKind::ConnectionRefused, Some(libc::ECONNREFUSED)));
        assert_eq!(e.kind(), "Io");
        assert_eq!(e.to_string(), alloc::format!("I/O error: {}", io::Error::from_raw_os_error(libc::ECONNREFUSED)));
        // A custom io::Error keeps its inner error (one that wraps an infect Error is that error).
        let wrapped = Error::msg("Bad", "bad bytes");
        assert!(Error::from(io::Error::new(io::ErrorKind::InvalidData, wrapped.clone())).is_same(&wrapped));
        let custom = Error::from(io::Error::new(io::ErrorKind::InvalidData, "bad bytes"));
        assert_eq!(custom.io_error().map(|e| e.kind()), Some(io::ErrorKind::InvalidData));
        assert_eq!(custom.io_error().unwrap().get().get_ref().map(|i| i.to_string()), Some(s("bad bytes")));
        // `Error::user` on an io::Error does not collapse it into a user error.
        assert_eq!(
            Error::user(io::Error::from_raw_os_error(libc::ENOENT)),
            Error::Io(IoError::from_raw_os_error(libc::ENOENT))
        );
        // Equality by kind, errno and text; identity by allocation.
        let a = IoError::from_raw_os_error(libc::EPIPE);
        assert!(a == IoError::from_raw_os_error(libc::EPIPE) && a != IoError::from_raw_os_error(libc::EBADF));
        assert!(Error::Io(a.clone()).is_same(&Error::Io(a.clone())));
        assert!(!Error::Io(a.clone()).is_same(&Error::Io(IoError::from_raw_os_error(libc::EPIPE))));
        // A cancelled host-aware I/O call still converts to its cancellation.
        assert_eq!(
            Error::from(io::Error::other(Cancelled::new("stop"))),
            Error::HostTaskCancelled(Cancelled::new("stop"))
        );
    }

    #[test]
    fn identity_tells_one_error_seen_twice_from_two_alike() {
        let a = Error::msg("ValueError", "bad");
        let b = Error::msg("ValueError", "bad");
        assert!(a == b && !a.is_same(&b) && a.is_same(&a.clone()));
        let r = remote("ValueError");
        let (x, y) = (Error::RemoteActor(r.clone()), Error::RemoteActor(remote("ValueError")));
        assert!(x == y && !x.is_same(&y) && x.is_same(&Error::RemoteActor(r)));
        let g = Error::Group(ErrorGroup(vec![a.clone(), Error::Closed]));
        assert!(g.is_same(&g.clone()));
        assert!(!g.is_same(&Error::Group(ErrorGroup(vec![b.clone(), Error::Closed]))));
        let cause = |e: &Error| Error::GuestCancelled { cause: Some(Box::new(e.clone())) };
        assert!(cause(&a).is_same(&cause(&a)) && !cause(&a).is_same(&cause(&b)));
        assert!(Error::Closed.is_same(&Error::Closed) && !Error::Closed.is_same(&Error::Full));
    }

    #[test]
    fn a_remote_error_is_matched_by_kind_without_strings() {
        let r = remote("SpawnFailed");
        assert_eq!(r.kind(), RemoteKind::Crate(ErrorKind::SpawnFailed));
        assert!(r.is(ErrorKind::SpawnFailed) && !r.is(ErrorKind::ActorDied));
        let u = remote("my_app::FeedLost");
        assert_eq!(u.kind(), RemoteKind::User("my_app::FeedLost"));
        assert!(!u.is(ErrorKind::SpawnFailed));
        assert_eq!(ErrorKind::SpawnFailed, "SpawnFailed");
        assert_eq!(ErrorKind::SpawnFailed.to_string(), "SpawnFailed");
    }
}
