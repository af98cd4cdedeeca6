//! Fuzz logic that lives in the crate, so `cargo test` replays it on stable (tokio-style).
pub mod wire_decode;
