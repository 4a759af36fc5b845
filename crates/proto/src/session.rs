//! A transport session: the two directional keys of one handshake, the send
//! counter and the replay window.
//!
//! Packets are sealed and opened **in place** in caller-owned buffers:
//!
//! ```text
//! | header (16) | payload (n) | tag (16) |
//!   ^ written by seal          ^ written by seal
//! ```
//!
//! The caller leaves [`TRANSPORT_HEADER_LEN`] bytes of headroom before the
//! payload and [`TAG_LEN`] bytes of tailroom; nothing is allocated per packet.

use core::fmt;
use std::time::Instant;

use crate::provider::{Aead, Crypto, Suite, TAG_LEN};
use crate::replay::{ReplayWindow, REJECT_AFTER_MESSAGES};
use crate::wire::{TransportHeader, WireError, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};

/// Why a transport packet could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// The buffer has no room for header and tag (caller bug).
    BufferTooSmall,
    /// The send counter reached the reject limit; a new handshake is needed.
    CounterExhausted,
    /// The header is malformed.
    Wire(WireError),
    /// The packet is for another session.
    WrongIndex,
    /// The counter was already received or is behind the window.
    Replay,
    /// The tag did not verify.
    Decrypt,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall => f.write_str("buffer lacks header or tag room"),
            Self::CounterExhausted => f.write_str("send counter exhausted"),
            Self::Wire(e) => write!(f, "malformed transport packet: {e}"),
            Self::WrongIndex => f.write_str("packet for another session"),
            Self::Replay => f.write_str("replayed or too old counter"),
            Self::Decrypt => f.write_str("transport packet failed to authenticate"),
        }
    }
}

impl std::error::Error for SessionError {}

/// One established session.
pub struct Session {
    suite: Suite,
    local_index: u32,
    remote_index: u32,
    send: Box<dyn Aead>,
    recv: Box<dyn Aead>,
    send_counter: u64,
    replay: ReplayWindow,
    established: Instant,
    initiator: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("send_counter", &self.send_counter)
            .field("initiator", &self.initiator)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session from handshake output (the handshake's keys, indices and
    /// negotiated suite, which callers pass straight through).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        crypto: &dyn Crypto,
        local_index: u32,
        remote_index: u32,
        send_key: &[u8; 32],
        recv_key: &[u8; 32],
        established: Instant,
        initiator: bool,
        suite: Suite,
    ) -> Self {
        Self {
            suite,
            local_index,
            remote_index,
            send: crypto.transport_aead(suite, send_key),
            recv: crypto.transport_aead(suite, recv_key),
            send_counter: 0,
            replay: ReplayWindow::new(),
            established,
            initiator,
        }
    }

    /// The transport AEAD.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Our index (peers address packets to it).
    pub fn local_index(&self) -> u32 {
        self.local_index
    }

    /// The peer's index.
    pub fn remote_index(&self) -> u32 {
        self.remote_index
    }

    /// When the handshake completed.
    pub fn established(&self) -> Instant {
        self.established
    }

    /// Whether this side initiated the handshake.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// Packets sealed so far (the next counter).
    pub fn send_counter(&self) -> u64 {
        self.send_counter
    }

    /// Seals `buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + payload_len]`
    /// in place; returns the datagram length (`payload_len + 32`).
    pub fn seal(&mut self, buf: &mut [u8], payload_len: usize) -> Result<usize, SessionError> {
        let total = payload_len + TRANSPORT_OVERHEAD;
        if buf.len() < total {
            return Err(SessionError::BufferTooSmall);
        }
        let counter = self.send_counter;
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(SessionError::CounterExhausted);
        }
        self.send_counter += 1;
        TransportHeader {
            receiver_index: self.remote_index,
            counter,
        }
        .write(buf);
        let end = TRANSPORT_HEADER_LEN + payload_len;
        let tag = self
            .send
            .seal_in_place(counter, &[], &mut buf[TRANSPORT_HEADER_LEN..end]);
        buf[end..end + TAG_LEN].copy_from_slice(&tag);
        Ok(total)
    }

    /// Opens a transport datagram in place; returns the plaintext length, the
    /// plaintext being at `datagram[TRANSPORT_HEADER_LEN..][..len]`. The replay
    /// window is checked before decryption and updated only after the tag verified.
    pub fn open(&mut self, datagram: &mut [u8]) -> Result<usize, SessionError> {
        let h = TransportHeader::parse(datagram).map_err(SessionError::Wire)?;
        if h.receiver_index != self.local_index {
            return Err(SessionError::WrongIndex);
        }
        if !self.replay.check(h.counter) {
            return Err(SessionError::Replay);
        }
        let end = datagram.len() - TAG_LEN;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&datagram[end..]);
        self.recv
            .open_in_place(
                h.counter,
                &[],
                &mut datagram[TRANSPORT_HEADER_LEN..end],
                &tag,
            )
            .map_err(|_| SessionError::Decrypt)?;
        if !self.replay.update(h.counter) {
            return Err(SessionError::Replay);
        }
        Ok(end - TRANSPORT_HEADER_LEN)
    }
}
