//! Fuzz logic that lives in the crate, so `cargo test` replays it on stable (tokio-style).
#[cfg(feature = "std")]
pub mod cancel_translation;
#[cfg(feature = "std")]
pub mod hostile_peer;
pub mod translate;
pub mod wire_decode;
