//! Fuzz logic that lives in the crate, so `cargo test` replays it on stable (tokio-style).
#[cfg(feature = "std")]
pub mod cancel_translation;
pub mod translate;
pub mod wire_decode;
