//! The guest agent binary, built statically by `build.rs` and embedded here.

/// The static `pyro-agent` binary that becomes `/init` of every guest.
pub static AGENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pyro-agent"));
