//! meshd's protocol core, sans IO.
//!
//! What it does: certificates ([`cert`]), the hybrid post-quantum handshake
//! ([`handshake`], over Noise in `noise` and fragmented by [`fragment`]),
//! cookies ([`cookie`]), transport sessions ([`session`], [`replay`]) and the
//! per-node state machine that ties them together with WireGuard's timers
//! ([`endpoint`]); route health: link probes ([`health`]), control messages
//! inside sessions ([`control`]), link-state routing with hysteresis
//! ([`route`]) and relaying through other nodes (relay header in [`wire`]).
//!
//! What it does not do: touch sockets, clocks, threads, files or OS
//! randomness. Time and randomness are arguments; cryptographic primitives
//! come through the [`provider::Crypto`] trait (implemented in
//! `meshd-crypto`). That makes everything here deterministic, fuzzable and
//! simulable.
#![warn(missing_docs)]

pub mod armor;
pub mod bundle;
pub mod cert;
pub mod control;
pub mod cookie;
pub mod endpoint;
pub mod filter;
pub mod fragment;
pub mod handshake;
pub mod health;
pub mod ids;
mod noise;
pub mod pmtu;
pub mod policy;
pub mod provider;
pub mod quorum;
pub mod ratelimit;
pub mod replay;
pub mod route;
pub mod session;
pub mod store;
mod table;
pub mod timers;
pub mod wire;

pub use noise::PROTOCOL_NAME;

/// splitmix64's finaliser: every bit of `x` moves every bit of the result.
/// The protocol's deterministic draws (probe jitter, a stub's designated
/// relay, a refresh's hold) hash their inputs with it instead of taking
/// randomness they would have to be given.
pub(crate) fn mix64(mut h: u64) -> u64 {
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}
