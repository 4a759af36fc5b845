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
use std::sync::Arc;
use std::time::Instant;

use zeroize::Zeroize;

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

/// What a session is made of: the indices, keys and suite one handshake
/// agreed on. The keys are erased when it is dropped.
pub struct SessionKeys {
    /// Our index (the peer addresses packets to it).
    pub local_index: u32,
    /// The peer's index.
    pub remote_index: u32,
    /// Key of the packets we send.
    pub send: [u8; 32],
    /// Key of the packets we receive.
    pub recv: [u8; 32],
    /// The transport AEAD.
    pub suite: Suite,
}

impl Drop for SessionKeys {
    fn drop(&mut self) {
        self.send.zeroize();
        self.recv.zeroize();
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// One established session.
pub struct Session {
    suite: Suite,
    local_index: u32,
    remote_index: u32,
    send: Arc<dyn Aead>,
    recv: Arc<dyn Aead>,
    send_counter: u64,
    replay: ReplayWindow,
    established: Instant,
    initiator: bool,
    /// When an authenticated packet last arrived on it (for a responder:
    /// once one did, it is confirmed).
    last_received: Option<Instant>,
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
    /// A session from the keys of one handshake.
    pub fn new(
        crypto: &dyn Crypto,
        keys: &SessionKeys,
        established: Instant,
        initiator: bool,
    ) -> Self {
        Self {
            suite: keys.suite,
            local_index: keys.local_index,
            remote_index: keys.remote_index,
            send: Arc::from(crypto.transport_aead(keys.suite, &keys.send)),
            recv: Arc::from(crypto.transport_aead(keys.suite, &keys.recv)),
            send_counter: 0,
            replay: ReplayWindow::new(),
            established,
            initiator,
            last_received: None,
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
        Ok(self.reserve(buf, payload_len)?.seal(buf))
    }

    /// The first half of [`Session::seal`]: takes the next counter and
    /// writes the header. The returned job seals the payload; it needs no
    /// access to the session, so it can run outside a lock held around it.
    pub fn reserve(&mut self, buf: &mut [u8], payload_len: usize) -> Result<SealJob, SessionError> {
        if buf.len() < payload_len + TRANSPORT_OVERHEAD {
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
        Ok(SealJob {
            key: self.send.clone(),
            counter,
            payload_len,
        })
    }

    /// Opens a transport datagram in place; returns the plaintext length, the
    /// plaintext being at `datagram[TRANSPORT_HEADER_LEN..][..len]`. The replay
    /// window is checked before decryption and updated only after the tag verified.
    pub fn open(&mut self, datagram: &mut [u8]) -> Result<usize, SessionError> {
        let job = self.open_job(datagram)?;
        let len = job.open(datagram)?;
        if !self.commit(job.counter()) {
            return Err(SessionError::Replay);
        }
        Ok(len)
    }

    /// The first part of [`Session::open`]: header, index and replay-window
    /// check. The job decrypts without access to the session; then
    /// [`Session::commit`] records the counter (and refuses it if another
    /// copy was committed in between).
    pub fn open_job(&self, datagram: &[u8]) -> Result<OpenJob, SessionError> {
        let h = TransportHeader::parse(datagram).map_err(SessionError::Wire)?;
        self.open_job_for(h)
    }

    /// [`Session::open_job`] for a datagram whose header was parsed already
    /// (by [`crate::wire::Datagram::parse`]).
    pub fn open_job_for(&self, h: TransportHeader) -> Result<OpenJob, SessionError> {
        if h.receiver_index != self.local_index {
            return Err(SessionError::WrongIndex);
        }
        if !self.replay.check(h.counter) {
            return Err(SessionError::Replay);
        }
        Ok(OpenJob {
            key: self.recv.clone(),
            counter: h.counter,
        })
    }

    /// Records a counter whose packet authenticated; false if it was
    /// already recorded (a replay that raced its original) or fell behind
    /// the window meanwhile.
    pub fn commit(&mut self, counter: u64) -> bool {
        self.replay.update(counter)
    }

    /// Records that an authenticated packet arrived at `now`; true the
    /// first time (a responder's session is confirmed then).
    pub fn note_received(&mut self, now: Instant) -> bool {
        self.last_received.replace(now).is_none()
    }

    /// When an authenticated packet last arrived on it.
    pub fn last_received(&self) -> Option<Instant> {
        self.last_received
    }
}

/// Sealing of one reserved packet ([`Session::reserve`]).
#[derive(Clone)]
pub struct SealJob {
    key: Arc<dyn Aead>,
    counter: u64,
    payload_len: usize,
}

impl fmt::Debug for SealJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealJob")
            .field("counter", &self.counter)
            .field("payload_len", &self.payload_len)
            .finish_non_exhaustive()
    }
}

impl SealJob {
    /// Encrypts the payload after the header [`Session::reserve`] wrote and
    /// appends the tag; returns the datagram length.
    pub fn seal(&self, buf: &mut [u8]) -> usize {
        let end = TRANSPORT_HEADER_LEN + self.payload_len;
        let tag = self
            .key
            .seal_in_place(self.counter, &[], &mut buf[TRANSPORT_HEADER_LEN..end]);
        buf[end..end + TAG_LEN].copy_from_slice(&tag);
        self.payload_len + TRANSPORT_OVERHEAD
    }
}

/// Decryption of one received packet ([`Session::open_job`]).
#[derive(Clone)]
pub struct OpenJob {
    key: Arc<dyn Aead>,
    counter: u64,
}

impl fmt::Debug for OpenJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenJob")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl OpenJob {
    /// The packet's counter.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// Decrypts in place; the plaintext length.
    pub fn open(&self, datagram: &mut [u8]) -> Result<usize, SessionError> {
        let end = datagram
            .len()
            .checked_sub(TAG_LEN)
            .filter(|e| *e >= TRANSPORT_HEADER_LEN)
            .ok_or(SessionError::Wire(WireError::TooShort))?;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&datagram[end..]);
        self.key
            .open_in_place(
                self.counter,
                &[],
                &mut datagram[TRANSPORT_HEADER_LEN..end],
                &tag,
            )
            .map_err(|_| SessionError::Decrypt)?;
        Ok(end - TRANSPORT_HEADER_LEN)
    }
}
