//! Protocol timing constants (WireGuard whitepaper §6.1), apart from
//! implementation limits.

use std::time::Duration;

/// The initiator starts a new handshake when a session is this old.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// A session is never used, for sending or receiving, past this age.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// Give up retrying a handshake after this long.
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// Retransmit a handshake initiation after this long without a response.
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Send a keepalive when data arrived and nothing was sent for this long.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// The initiator rekeys after this many messages on a session.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// Random extra delay, up to this much, on handshake retransmissions.
pub const REKEY_TIMEOUT_JITTER_MAX: Duration = Duration::from_millis(334);
/// All key material of a peer is erased after this long without a new handshake.
pub const ZERO_KEYS_AFTER: Duration = Duration::from_secs(3 * 180);
