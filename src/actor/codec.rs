//! The remote-error codec, once: an [`Error`] raised (or relayed) in this actor to the
//! `Msg::Error` that carries it, and a `Msg::Error` back to the [`Error`] it stands for.
//!
//! Invariants:
//! - **Errors cross by kind.** The `boxed_type` on the wire is the error's
//!   [`Error::kind`]; a remote error keeps the kind it had where it was raised, however many
//!   actors relay it.
//! - **A relay appends itself.** An actor that sends on an error it got from another actor
//!   (an [`Error::RemoteActor`] or [`Error::ContextCancelled`]) keeps its source and message and
//!   appends its own name to the `relay_path`.
//! - **`ContextCancelled` is the one kind decoded to its own variant** (with its canceller,
//!   the source's name if the peer named none); every other kind decodes to
//!   [`Error::RemoteActor`]. The actor layer names the kinds it reads or writes only here
//!   ([`CONTEXT_CANCELLED`], [`PANIC`], [`PROTOCOL_MISMATCH`]), and these come from
//!   [`ErrorKind`]'s one table.

use crate::Error;
use crate::error::{ErrorKind, RemoteActorError};
use crate::wire::{Aid, Cid, Msg};

/// The kind of a call cancelled at its callee ([`Error::ContextCancelled`]).
pub(crate) const CONTEXT_CANCELLED: &str = ErrorKind::ContextCancelled.as_str();

/// The kind of a panic ([`Error::Panic`]): an actor's panic hook reports one as an actor-wide
/// `Msg::Error` just before it aborts.
pub(crate) const PANIC: &str = ErrorKind::Panic.as_str();

/// The kind of a refused handshake ([`Error::ProtocolMismatch`]): a child of another build
/// reports one as an actor-wide `Msg::Error` before it exits with
/// [`PROTOCOL_MISMATCH_EXIT`](crate::wire::PROTOCOL_MISMATCH_EXIT).
pub(crate) const PROTOCOL_MISMATCH: &str = ErrorKind::ProtocolMismatch.as_str();

/// The `Msg::Error` for `e` raised (or relayed) in actor `me`, about call `cid` (`None`: the
/// whole connection).
pub(crate) fn encode(cid: Option<Cid>, e: &Error, me: &Aid) -> Msg {
    match e {
        Error::RemoteActor(r) => relayed(cid, r, r.boxed_type.clone(), None, me),
        Error::ContextCancelled { canceller, remote } => {
            relayed(cid, remote, CONTEXT_CANCELLED.to_owned(), Some(canceller.clone()), me)
        }
        e => Msg::Error {
            cid,
            src: me.clone(),
            boxed_type: e.kind().to_owned(),
            message: e.to_string(),
            relay_path: Vec::new(),
            canceller: None,
        },
    }
}

fn relayed(cid: Option<Cid>, r: &RemoteActorError, boxed_type: String, canceller: Option<String>, me: &Aid) -> Msg {
    let mut relay_path = r.relay_path.clone();
    relay_path.push(me.name.clone());
    Msg::Error { cid, src: r.src.clone(), boxed_type, message: r.message.clone(), relay_path, canceller }
}

/// The `Msg::Error` of call `cid` (running `what`, as `ns.func`) in actor `me`, cancelled by
/// actor `canceller`.
pub(crate) fn cancelled(cid: Cid, what: &str, me: &Aid, canceller: String) -> Msg {
    Msg::Error {
        cid: Some(cid),
        src: me.clone(),
        boxed_type: CONTEXT_CANCELLED.to_owned(),
        message: format!("call '{what}' in actor '{}' was cancelled by actor '{canceller}'", me.name),
        relay_path: Vec::new(),
        canceller: Some(canceller),
    }
}

/// The error a peer's `Msg::Error` stands for (its fields, taken apart).
pub(crate) fn decode(
    src: Aid,
    boxed_type: String,
    message: String,
    relay_path: Vec<String>,
    canceller: Option<String>,
) -> Error {
    let remote = std::sync::Arc::new(RemoteActorError { boxed_type, message, src, relay_path });
    if remote.boxed_type == CONTEXT_CANCELLED {
        let canceller = canceller.unwrap_or_else(|| remote.src.name.clone());
        Error::ContextCancelled { canceller, remote }
    } else {
        Error::RemoteActor(remote)
    }
}

/// The error `msg` stands for, if it is a `Msg::Error`.
pub(crate) fn decode_msg(msg: &Msg) -> Option<Error> {
    match msg {
        Msg::Error { src, boxed_type, message, relay_path, canceller, .. } => {
            Some(decode(src.clone(), boxed_type.clone(), message.clone(), relay_path.clone(), canceller.clone()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aid(name: &str) -> Aid {
        Aid { name: name.into(), uuid: format!("{name}-uuid"), pid: 7 }
    }

    /// A crate error goes out with its kind and message and comes back as a remote error of
    /// that kind from that actor; relaying it appends the relay and keeps the rest.
    #[test]
    fn an_error_round_trips_by_kind_and_a_relay_appends_itself() {
        let e = Error::NotStarted { ctx: "m.f".into() };
        let msg = encode(Some(3), &e, &aid("a"));
        let back = decode_msg(&msg).expect("an Error message");
        let Error::RemoteActor(r) = &back else { panic!("{back:?}") };
        assert_eq!((r.boxed_type.as_str(), r.message.clone(), r.src.name.as_str()), ("NotStarted", e.to_string(), "a"));
        assert!(r.relay_path.is_empty());
        let relayed = decode_msg(&encode(None, &back, &aid("b"))).expect("an Error message");
        let Error::RemoteActor(r2) = relayed else { panic!() };
        assert_eq!((r2.src.name.as_str(), r2.relay_path.clone()), ("a", vec!["b".to_owned()]));
    }

    /// `ContextCancelled` decodes to its own variant with its canceller (the source without
    /// one), and stays itself when relayed.
    #[test]
    fn context_cancelled_keeps_its_variant_and_canceller() {
        let msg = cancelled(5, "m.f", &aid("callee"), "parent".into());
        let e = decode_msg(&msg).expect("an Error message");
        assert!(matches!(&e, Error::ContextCancelled { canceller, remote }
            if canceller == "parent" && remote.message == "call 'm.f' in actor 'callee' was cancelled by actor 'parent'"));
        let relayed = decode_msg(&encode(Some(1), &e, &aid("mid"))).expect("an Error message");
        assert!(matches!(&relayed, Error::ContextCancelled { canceller, remote }
            if canceller == "parent" && remote.relay_path == ["mid"]));
        let bare = decode(aid("x"), CONTEXT_CANCELLED.into(), String::new(), Vec::new(), None);
        assert!(matches!(bare, Error::ContextCancelled { canceller, .. } if canceller == "x"));
        assert_eq!(
            Error::ContextCancelled {
                canceller: String::new(),
                remote: std::sync::Arc::new(RemoteActorError {
                    boxed_type: String::new(),
                    message: String::new(),
                    src: aid("x"),
                    relay_path: Vec::new()
                })
            }
            .kind(),
            CONTEXT_CANCELLED
        );
    }
}
