//! The hybrid post-quantum handshake: `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s`
//! whose PSK is derived from an ephemeral ML-KEM-768 exchange.
//!
//! ```text
//! initiator                                          responder
//!   -> e, es, s, ss   payload: index, TAI64N, suites, ML-KEM ek, certificate
//!                      (responder: encapsulate to ek -> ct, ss_kem;
//!                       psk = BLAKE2s(label || ss_kem || ct || BLAKE2s(ek)))
//!   <- ct (clear), e, ee, se, psk   payload: index, suite, certificate
//! ```
//!
//! `suites` is the set of transport AEADs the initiator offers
//! (ChaCha20-Poly1305 always; AES-256-GCM when it has AES hardware) and
//! `suite` the responder's choice: AES-256-GCM when both have it. Both are
//! inside the encrypted, hash-bound payloads, so an attacker cannot steer
//! the choice.
//!
//! ```text
//! ```
//!
//! Session keys come out of Noise's `Split()` after `psk` has been mixed in,
//! so they depend on both the X25519 results and the ML-KEM secret: a
//! recorded session stays secret unless *both* are broken. Authentication is
//! classical (Ed25519 certificates, X25519 static keys), as in TLS's
//! X25519MLKEM768.
//!
//! The state machine is typed: [`initiate`] returns an [`InitiatorHandshake`]
//! that is consumed by [`InitiatorHandshake::read_response`]; the responder
//! side is one call, [`Responder::respond`]. Time and randomness are arguments. These
//! functions work on whole messages; `fragment` splits them for the wire.
//! Byte layouts are in `docs/protocol.md`.

use core::fmt;
use std::collections::HashMap;

use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::cert::{CertError, Certificate, TrustedCa};
use crate::noise::SymmetricState;
use crate::provider::{
    Crypto, CryptoError, KemKeyPair, Suite, HASH_LEN, KEM_CT_LEN, KEM_EK_LEN, SUITE_AES,
    SUITE_CHACHA, TAG_LEN, X25519_LEN,
};
use crate::session::SessionKeys;

/// Noise prologue: binds the meshd protocol version into every handshake.
pub const PROLOGUE: &[u8] = b"meshd handshake v1";
/// Domain separator of the KEM-to-PSK combiner.
pub const PSK_LABEL: &[u8] = b"meshd hybrid psk v1\0";
/// TAI64N timestamp length.
pub const TIMESTAMP_LEN: usize = 12;
/// Offset of the encrypted static key in message 1.
const M1_STATIC: usize = X25519_LEN;
/// Offset of the encrypted payload in message 1.
const M1_PAYLOAD: usize = M1_STATIC + X25519_LEN + TAG_LEN;
/// Message 1 payload bytes before the certificate: index, timestamp,
/// suites, ek, cert length.
const P1_FIXED: usize = 4 + TIMESTAMP_LEN + 1 + KEM_EK_LEN + 2;
/// Offset of the encapsulation key in message 1's payload.
const P1_EK: usize = 4 + TIMESTAMP_LEN + 1;
/// Offset of the responder ephemeral in message 2.
const M2_EPHEMERAL: usize = KEM_CT_LEN;
/// Offset of the encrypted payload in message 2.
const M2_PAYLOAD: usize = M2_EPHEMERAL + X25519_LEN;
/// Message 2 payload bytes before the certificate: index, suite, cert length.
const P2_FIXED: usize = 4 + 1 + 2;
/// Shortest possible certificate encoding (used only for length bounds).
const MIN_CERT_LEN: usize = 4 + 64 + 40;

/// Length of message 1 carrying a certificate of `cert_len` bytes.
pub const fn message1_len(cert_len: usize) -> usize {
    M1_PAYLOAD + P1_FIXED + cert_len + TAG_LEN
}

/// Length of message 2 carrying a certificate of `cert_len` bytes.
pub const fn message2_len(cert_len: usize) -> usize {
    M2_PAYLOAD + P2_FIXED + cert_len + TAG_LEN
}

/// Smallest and largest acceptable message 1.
pub const MESSAGE1_LEN_RANGE: (usize, usize) = (
    message1_len(MIN_CERT_LEN),
    message1_len(crate::cert::MAX_CERT_LEN),
);
/// Smallest and largest acceptable message 2.
pub const MESSAGE2_LEN_RANGE: (usize, usize) = (
    message2_len(MIN_CERT_LEN),
    message2_len(crate::cert::MAX_CERT_LEN),
);

/// Why a handshake failed. Every variant is final for that handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The message length is outside what the message type allows.
    BadLength(usize),
    /// Message 1 did not decrypt: not for us, corrupted, or tampered
    /// (this includes a tampered encapsulation key, which is encrypted).
    InitiationAuthFailed,
    /// Message 2 did not decrypt: tampered KEM ciphertext, tampered message,
    /// or a responder without the expected static key.
    ResponseAuthFailed,
    /// A peer's X25519 public key is a low-order point.
    LowOrderPoint,
    /// The peer's ML-KEM encapsulation key is not a valid FIPS 203 key.
    InvalidKemKey,
    /// The decrypted payload is structurally wrong.
    MalformedPayload,
    /// The index inside the payload differs from the header's.
    IndexMismatch,
    /// The peer's certificate is invalid.
    Certificate(CertError),
    /// The certificate's X25519 key is not the static key used in the handshake.
    StaticKeyMismatch,
    /// Message 1's timestamp is not newer than the last one accepted from this
    /// initiator: a replay.
    ReplayedInitiation,
    /// This initiator started another handshake too soon (flood limit).
    InitiationTooFrequent,
    /// The peer's certificate is on the revocation list in force.
    Revoked,
    /// The peer is not a member of exactly our enclaves (policy in force).
    OutsideEnclave,
    /// The peer's certificate claims an overlay address that another node's
    /// valid certificate holds.
    AddressTaken(std::net::IpAddr),
    /// The peer's certificate carries a name that another node's valid
    /// certificate holds.
    NameTaken(String),
    /// This node accepts only configured peers, or only peers of given
    /// segments, and the peer is neither.
    NotAccepted,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadLength(n) => write!(f, "handshake message of impossible length {n}"),
            Self::InitiationAuthFailed => f.write_str("handshake initiation failed to authenticate"),
            Self::ResponseAuthFailed => f.write_str(
                "handshake response failed to authenticate (tampered KEM ciphertext or message, or wrong responder key)",
            ),
            Self::LowOrderPoint => f.write_str("peer sent a low-order X25519 point"),
            Self::InvalidKemKey => f.write_str("peer sent an invalid ML-KEM-768 encapsulation key"),
            Self::MalformedPayload => f.write_str("handshake payload is malformed"),
            Self::IndexMismatch => f.write_str("handshake index does not match its header"),
            Self::Certificate(e) => write!(f, "peer certificate rejected: {e}"),
            Self::StaticKeyMismatch => {
                f.write_str("peer's static key does not match the key in its certificate")
            }
            Self::ReplayedInitiation => f.write_str("replayed handshake initiation (timestamp not newer)"),
            Self::InitiationTooFrequent => f.write_str("handshake initiations from this peer too frequent"),
            Self::Revoked => f.write_str("peer certificate is revoked"),
            Self::OutsideEnclave => f.write_str("peer is not a member of this node's enclaves"),
            Self::AddressTaken(a) => write!(
                f,
                "peer certificate claims overlay address {a}, which another node's valid certificate holds (revoke that certificate to move the address)"
            ),
            Self::NameTaken(n) => write!(
                f,
                "peer certificate is named '{n}', a name another node's valid certificate holds (revoke that certificate to reuse the name)"
            ),
            Self::NotAccepted => f.write_str(
                "peer is not configured and not in a segment [admission] accepts",
            ),
        }
    }
}

impl std::error::Error for HandshakeError {}

impl HandshakeError {
    /// A short stable name, for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadLength(_) => "bad_length",
            Self::InitiationAuthFailed => "initiation_auth_failed",
            Self::ResponseAuthFailed => "response_auth_failed",
            Self::LowOrderPoint => "low_order_point",
            Self::InvalidKemKey => "invalid_kem_key",
            Self::MalformedPayload => "malformed_payload",
            Self::IndexMismatch => "index_mismatch",
            Self::Certificate(_) => "certificate",
            Self::StaticKeyMismatch => "static_key_mismatch",
            Self::ReplayedInitiation => "replayed_initiation",
            Self::InitiationTooFrequent => "initiation_too_frequent",
            Self::Revoked => "revoked",
            Self::OutsideEnclave => "outside_enclave",
            Self::AddressTaken(_) => "address_taken",
            Self::NameTaken(_) => "name_taken",
            Self::NotAccepted => "not_accepted",
        }
    }
}

/// The static-static X25519 result of `identity` and a peer: constant per
/// pair, so callers compute it once per peer.
pub fn static_static(
    crypto: &dyn Crypto,
    identity: &Identity,
    peer_static: &[u8; 32],
) -> Result<[u8; 32], HandshakeError> {
    dh(crypto, &identity.static_secret, peer_static)
}

fn dh(crypto: &dyn Crypto, s: &[u8; 32], p: &[u8; 32]) -> Result<[u8; 32], HandshakeError> {
    crypto
        .x25519(s, p)
        .map_err(|_| HandshakeError::LowOrderPoint)
}

/// This node's identity: its certificate and X25519 static secret.
#[derive(Clone)]
pub struct Identity {
    cert: Certificate,
    static_secret: [u8; 32],
    static_public: [u8; 32],
    /// Signs this node's link-state adverts ([`crate::cert::advert_seed`]).
    advert_seed: [u8; 32],
    /// Transport AEADs this node offers and accepts (`SUITE_*` bits).
    suites: u8,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.cert.name())
            .finish_non_exhaustive()
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.static_secret);
        zeroize::Zeroize::zeroize(&mut self.advert_seed);
    }
}

impl Drop for InitiatorHandshake {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.ephemeral_secret);
    }
}

impl Identity {
    /// Pairs a certificate with its secret key; fails if they do not match
    /// (the static key, and the advert key derived from it).
    pub fn new(
        crypto: &dyn Crypto,
        cert: Certificate,
        static_secret: [u8; 32],
    ) -> Result<Self, HandshakeError> {
        let static_public = crypto.x25519_public_key(&static_secret);
        if &static_public != cert.public_key() {
            return Err(HandshakeError::StaticKeyMismatch);
        }
        let advert_seed = crate::cert::advert_seed(crypto, &static_secret);
        if crypto.ed25519_public_key(&advert_seed) != cert.body().advert_key {
            return Err(HandshakeError::StaticKeyMismatch);
        }
        let aes = if crypto.aes_hardware() { SUITE_AES } else { 0 };
        Ok(Self {
            cert,
            static_secret,
            static_public,
            advert_seed,
            suites: SUITE_CHACHA | aes,
        })
    }

    /// This identity with a renewed certificate for the same keys (checked
    /// by the caller against the CA).
    pub fn renewed(&self, cert: Certificate) -> Result<Self, HandshakeError> {
        if cert.public_key() != &self.static_public
            || cert.body().advert_key != self.cert.body().advert_key
        {
            return Err(HandshakeError::StaticKeyMismatch);
        }
        Ok(Self {
            cert,
            static_secret: self.static_secret,
            static_public: self.static_public,
            advert_seed: self.advert_seed,
            suites: self.suites,
        })
    }

    /// Signs `msg` with this node's advert key.
    pub fn sign_advert(&self, crypto: &dyn Crypto, msg: &[u8]) -> [u8; 64] {
        crypto.ed25519_sign(&self.advert_seed, msg)
    }

    /// The transport AEADs this node offers (ChaCha20-Poly1305 always, and
    /// AES-256-GCM if the machine has AES hardware, unless turned off).
    pub fn suites(&self) -> u8 {
        self.suites
    }

    /// Turns AES-256-GCM off (or on again, if the hardware has it).
    pub fn set_aes(&mut self, crypto: &dyn Crypto, on: bool) {
        self.suites = SUITE_CHACHA;
        if on && crypto.aes_hardware() {
            self.suites |= SUITE_AES;
        }
    }

    /// The certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The X25519 static public key.
    pub fn static_public(&self) -> &[u8; 32] {
        &self.static_public
    }
}

/// What a completed handshake yields.
pub struct HandshakeOutput {
    /// Key for packets this side sends.
    pub send_key: [u8; 32],
    /// Key for packets this side receives.
    pub recv_key: [u8; 32],
    /// The peer's verified certificate.
    pub peer_cert: Certificate,
    /// The peer's handshake index (its receiver index for our packets).
    pub peer_index: u32,
    /// Noise handshake hash (channel binding; identical on both sides).
    pub handshake_hash: [u8; HASH_LEN],
    /// The transport AEAD both sides use for this session.
    pub suite: Suite,
    /// Responder only: the initiator's clock minus ours, in nanoseconds,
    /// from message 1's timestamp (its wall clock when it sent it; the
    /// one-way delay is in it too).
    pub peer_clock_offset_ns: Option<i64>,
}

impl HandshakeOutput {
    /// The session this handshake keys, with `local_index` as our index.
    pub fn session_keys(&self, local_index: u32) -> SessionKeys {
        SessionKeys {
            local_index,
            remote_index: self.peer_index,
            send: self.send_key,
            recv: self.recv_key,
            suite: self.suite,
        }
    }
}

impl fmt::Debug for HandshakeOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeOutput")
            .field("peer", &self.peer_cert.name())
            .field("peer_index", &self.peer_index)
            .finish_non_exhaustive()
    }
}

/// TAI64N encoding of a Unix time in nanoseconds (big-endian, so byte order
/// is time order).
pub fn tai64n(unix_nanos: u64) -> [u8; TIMESTAMP_LEN] {
    let secs = (unix_nanos / 1_000_000_000) + 0x4000_0000_0000_000a;
    let nanos = (unix_nanos % 1_000_000_000) as u32;
    let mut out = [0u8; TIMESTAMP_LEN];
    out[..8].copy_from_slice(&secs.to_be_bytes());
    out[8..].copy_from_slice(&nanos.to_be_bytes());
    out
}

/// The Unix time in nanoseconds a [`tai64n`] timestamp encodes (any 12
/// bytes: a label before 1970 comes out negative).
pub fn unix_nanos_of(ts: &[u8; TIMESTAMP_LEN]) -> i128 {
    let mut secs = [0u8; 8];
    secs.copy_from_slice(&ts[..8]);
    let mut nanos = [0u8; 4];
    nanos.copy_from_slice(&ts[8..]);
    let secs = i128::from(u64::from_be_bytes(secs)) - 0x4000_0000_0000_000a;
    secs * 1_000_000_000 + i128::from(u32::from_be_bytes(nanos))
}

/// The combiner that turns the ML-KEM exchange into the Noise PSK.
pub fn kem_psk(
    crypto: &dyn Crypto,
    shared_secret: &[u8; 32],
    ciphertext: &[u8; KEM_CT_LEN],
    encapsulation_key: &[u8; KEM_EK_LEN],
) -> [u8; 32] {
    let ek_hash = crypto.hash(&[encapsulation_key]);
    crypto.hash(&[PSK_LABEL, shared_secret, ciphertext, &ek_hash])
}

/// Randomness one handshake side consumes, drawn up front so that a
/// handshake is a pure function of its inputs.
fn random<const N: usize>(rng: &mut dyn CryptoRngCore) -> [u8; N] {
    let mut b = [0u8; N];
    rng.fill_bytes(&mut b);
    b
}

/// An initiator waiting for message 2.
pub struct InitiatorHandshake {
    sym: SymmetricState,
    ephemeral_secret: [u8; 32],
    kem: KemKeyPair,
    responder_static: [u8; 32],
    local_index: u32,
    /// The suites message 1 offered.
    offered: u8,
}

impl fmt::Debug for InitiatorHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitiatorHandshake")
            .field("local_index", &self.local_index)
            .finish_non_exhaustive()
    }
}

/// Builds message 1 to the responder whose static key is `responder_static`.
/// `precomputed_ss` may carry [`static_static`] for this pair (as WireGuard
/// precomputes it per peer); `local_index` is this side's index for the
/// session; `unix_nanos` the wall clock (for the replay timestamp).
pub fn initiate(
    crypto: &dyn Crypto,
    identity: &Identity,
    responder_static: &[u8; 32],
    precomputed_ss: Option<&[u8; 32]>,
    local_index: u32,
    unix_nanos: u64,
    rng: &mut dyn CryptoRngCore,
) -> Result<(InitiatorHandshake, Vec<u8>), HandshakeError> {
    let ephemeral_secret: [u8; 32] = random(rng);
    let kem = crypto.kem_keypair(&random(rng));
    let cert = identity.cert.as_bytes();
    let mut msg = vec![0u8; message1_len(cert.len())];

    let mut sym = SymmetricState::new(crypto, PROLOGUE);
    sym.mix_hash(crypto, responder_static);
    // -> e
    let e_pub = crypto.x25519_public_key(&ephemeral_secret);
    msg[..32].copy_from_slice(&e_pub);
    sym.mix_hash(crypto, &e_pub);
    sym.mix_key(crypto, &e_pub); // psk handshakes also MixKey(e)
                                 // es
    sym.mix_key(crypto, &dh(crypto, &ephemeral_secret, responder_static)?);
    // s
    msg[M1_STATIC..M1_STATIC + 32].copy_from_slice(&identity.static_public);
    sym.encrypt_and_hash(crypto, &mut msg[M1_STATIC..M1_PAYLOAD], 32);
    // ss
    let ss = match precomputed_ss {
        Some(ss) => *ss,
        None => dh(crypto, &identity.static_secret, responder_static)?,
    };
    sym.mix_key(crypto, &ss);
    // payload
    let p = &mut msg[M1_PAYLOAD..];
    p[..4].copy_from_slice(&local_index.to_le_bytes());
    p[4..16].copy_from_slice(&tai64n(unix_nanos));
    p[16] = identity.suites;
    p[P1_EK..P1_EK + KEM_EK_LEN].copy_from_slice(&kem.encapsulation_key[..]);
    let cl = P1_EK + KEM_EK_LEN;
    // Certificates are at most MAX_CERT_LEN (1024) bytes, so they fit a u16.
    p[cl..cl + 2].copy_from_slice(&(cert.len() as u16).to_le_bytes());
    p[cl + 2..cl + 2 + cert.len()].copy_from_slice(cert);
    let plen = P1_FIXED + cert.len();
    sym.encrypt_and_hash(crypto, p, plen);

    Ok((
        InitiatorHandshake {
            sym,
            ephemeral_secret,
            kem,
            responder_static: *responder_static,
            local_index,
            offered: identity.suites,
        },
        msg,
    ))
}

impl InitiatorHandshake {
    /// This side's index, which message 2 must carry as its receiver index.
    pub fn local_index(&self) -> u32 {
        self.local_index
    }

    /// The responder's static key this handshake was addressed to.
    pub fn responder_static(&self) -> &[u8; 32] {
        &self.responder_static
    }

    /// Consumes message 2 (`msg`, decrypted in place) and completes the
    /// handshake. `header_sender_index` is the index from the fragment header.
    pub fn read_response(
        mut self,
        crypto: &dyn Crypto,
        ca: &TrustedCa,
        identity: &Identity,
        msg: &mut [u8],
        header_sender_index: u32,
        now_secs: u64,
    ) -> Result<HandshakeOutput, HandshakeError> {
        if msg.len() < MESSAGE2_LEN_RANGE.0 || msg.len() > MESSAGE2_LEN_RANGE.1 {
            return Err(HandshakeError::BadLength(msg.len()));
        }
        let mut ct = [0u8; KEM_CT_LEN];
        ct.copy_from_slice(&msg[..KEM_CT_LEN]);
        let ss_kem = Zeroizing::new(crypto.kem_decapsulate(&self.kem.decapsulation_key, &ct));
        let psk = Zeroizing::new(kem_psk(crypto, &ss_kem, &ct, &self.kem.encapsulation_key));

        let mut re = [0u8; 32];
        re.copy_from_slice(&msg[M2_EPHEMERAL..M2_PAYLOAD]);
        let sym = &mut self.sym;
        sym.mix_hash(crypto, &re);
        sym.mix_key(crypto, &re);
        sym.mix_key(crypto, &dh(crypto, &self.ephemeral_secret, &re)?); // ee
        sym.mix_key(crypto, &dh(crypto, &identity.static_secret, &re)?); // se
        sym.mix_key_and_hash(crypto, &psk[..]);
        let p = &mut msg[M2_PAYLOAD..];
        let plen = sym
            .decrypt_and_hash(crypto, p)
            .map_err(|_| HandshakeError::ResponseAuthFailed)?;
        let p = &p[..plen];
        let peer_index = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
        if peer_index != header_sender_index {
            return Err(HandshakeError::IndexMismatch);
        }
        // The responder may only pick a suite we offered.
        let suite = Suite::from_bit(p[4])
            .filter(|s| self.offered & s.bit() != 0)
            .ok_or(HandshakeError::MalformedPayload)?;
        let cert_len = usize::from(u16::from_le_bytes([p[5], p[6]]));
        if P2_FIXED + cert_len != plen {
            return Err(HandshakeError::MalformedPayload);
        }
        let peer_cert =
            Certificate::from_bytes(&p[P2_FIXED..]).map_err(HandshakeError::Certificate)?;
        if peer_cert.public_key() != &self.responder_static {
            return Err(HandshakeError::StaticKeyMismatch);
        }
        ca.verify_node(crypto, &peer_cert, now_secs)
            .map_err(HandshakeError::Certificate)?;
        let (send_key, recv_key) = sym.split(crypto);
        Ok(HandshakeOutput {
            send_key,
            recv_key,
            peer_cert,
            peer_index,
            handshake_hash: sym.handshake_hash(),
            suite,
            peer_clock_offset_ns: None,
        })
    }
}

/// Per-initiator record of the newest accepted message-1 timestamp, bounded.
///
/// Entries are created only for initiators whose message 1 authenticated and
/// whose certificate verified, so its size is bounded by the mesh's valid
/// certificates; past [`ReplayGuard::capacity`] the oldest entry is evicted.
#[derive(Debug)]
pub struct ReplayGuard {
    /// Per initiator static key: newest timestamp, when it was accepted, and
    /// the static-static DH result (so repeat handshakes skip one X25519).
    last: HashMap<[u8; 32], ([u8; TIMESTAMP_LEN], u64, [u8; 32])>,
    capacity: usize,
    min_interval_nanos: u64,
}

/// WireGuard's limit on how often one peer may initiate (flood protection).
pub const MIN_INITIATION_INTERVAL_NANOS: u64 = 50_000_000;

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new(1 << 16)
    }
}

impl ReplayGuard {
    /// A guard that remembers at most `capacity` initiators.
    pub fn new(capacity: usize) -> Self {
        Self {
            last: HashMap::new(),
            capacity: capacity.max(1),
            min_interval_nanos: MIN_INITIATION_INTERVAL_NANOS,
        }
    }

    /// Most initiators remembered.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn check(
        &self,
        key: &[u8; 32],
        ts: &[u8; TIMESTAMP_LEN],
        now_nanos: u64,
    ) -> Result<(), HandshakeError> {
        if let Some((last_ts, last_at, _)) = self.last.get(key) {
            if ts <= last_ts {
                return Err(HandshakeError::ReplayedInitiation);
            }
            if now_nanos.saturating_sub(*last_at) < self.min_interval_nanos {
                return Err(HandshakeError::InitiationTooFrequent);
            }
        }
        Ok(())
    }

    fn cached_ss(&self, key: &[u8; 32]) -> Option<[u8; 32]> {
        self.last.get(key).map(|e| e.2)
    }

    fn record(&mut self, key: [u8; 32], ts: [u8; TIMESTAMP_LEN], now_nanos: u64, ss: [u8; 32]) {
        if self.last.len() >= self.capacity && !self.last.contains_key(&key) {
            if let Some(oldest) = self
                .last
                .iter()
                .min_by_key(|(_, (_, at, _))| *at)
                .map(|(k, _)| *k)
            {
                self.last.remove(&oldest);
            }
        }
        self.last.insert(key, (ts, now_nanos, ss));
    }
}

/// What the responder side of a handshake needs of this node.
#[derive(Clone, Copy)]
pub struct Responder<'a> {
    /// The cryptographic provider.
    pub crypto: &'a dyn Crypto,
    /// The CA initiators' certificates must chain to.
    pub ca: &'a TrustedCa,
    /// This node.
    pub identity: &'a Identity,
}

impl fmt::Debug for Responder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("identity", self.identity)
            .finish_non_exhaustive()
    }
}

impl Responder<'_> {
    /// Consumes message 1 (`msg`, decrypted in place) and returns message 2
    /// and the session keys. `header_sender_index` is the initiator's index
    /// from the fragment header (it must match the encrypted one);
    /// `local_index` is the responder's index.
    pub fn respond(
        &self,
        replay: &mut ReplayGuard,
        msg: &mut [u8],
        (header_sender_index, local_index): (u32, u32),
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(Vec<u8>, HandshakeOutput), HandshakeError> {
        respond(
            *self,
            replay,
            msg,
            (header_sender_index, local_index),
            unix_nanos,
            rng,
        )
    }
}

fn respond(
    Responder {
        crypto,
        ca,
        identity,
    }: Responder<'_>,
    replay: &mut ReplayGuard,
    msg: &mut [u8],
    (header_sender_index, local_index): (u32, u32),
    unix_nanos: u64,
    rng: &mut dyn CryptoRngCore,
) -> Result<(Vec<u8>, HandshakeOutput), HandshakeError> {
    if msg.len() < MESSAGE1_LEN_RANGE.0 || msg.len() > MESSAGE1_LEN_RANGE.1 {
        return Err(HandshakeError::BadLength(msg.len()));
    }
    let now_secs = unix_nanos / 1_000_000_000;
    let mut sym = SymmetricState::new(crypto, PROLOGUE);
    sym.mix_hash(crypto, &identity.static_public);
    let mut re = [0u8; 32];
    re.copy_from_slice(&msg[..32]);
    sym.mix_hash(crypto, &re);
    sym.mix_key(crypto, &re);
    sym.mix_key(crypto, &dh(crypto, &identity.static_secret, &re)?); // es
    sym.decrypt_and_hash(crypto, &mut msg[M1_STATIC..M1_PAYLOAD])
        .map_err(|_| HandshakeError::InitiationAuthFailed)?;
    let mut rs = [0u8; 32];
    rs.copy_from_slice(&msg[M1_STATIC..M1_STATIC + 32]);
    let ss = match replay.cached_ss(&rs) {
        Some(ss) => ss,
        None => dh(crypto, &identity.static_secret, &rs)?,
    };
    sym.mix_key(crypto, &ss); // ss
    let p = &mut msg[M1_PAYLOAD..];
    let plen = sym
        .decrypt_and_hash(crypto, p)
        .map_err(|_| HandshakeError::InitiationAuthFailed)?;
    let p = &p[..plen];
    let peer_index = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
    if peer_index != header_sender_index {
        return Err(HandshakeError::IndexMismatch);
    }
    let mut ts = [0u8; TIMESTAMP_LEN];
    ts.copy_from_slice(&p[4..16]);
    replay.check(&rs, &ts, unix_nanos)?;
    let offered = p[16];
    if offered & SUITE_CHACHA == 0 {
        // ChaCha20-Poly1305 is mandatory to offer: it is the common ground.
        return Err(HandshakeError::MalformedPayload);
    }
    let suite = if offered & identity.suites & SUITE_AES != 0 {
        Suite::Aes256Gcm
    } else {
        Suite::ChaCha20Poly1305
    };
    let mut ek = Box::new([0u8; KEM_EK_LEN]);
    ek.copy_from_slice(&p[P1_EK..P1_EK + KEM_EK_LEN]);
    let cl = P1_EK + KEM_EK_LEN;
    let cert_len = usize::from(u16::from_le_bytes([p[cl], p[cl + 1]]));
    if P1_FIXED + cert_len != plen {
        return Err(HandshakeError::MalformedPayload);
    }
    let peer_cert = Certificate::from_bytes(&p[P1_FIXED..]).map_err(HandshakeError::Certificate)?;
    if peer_cert.public_key() != &rs {
        return Err(HandshakeError::StaticKeyMismatch);
    }
    ca.verify_node(crypto, &peer_cert, now_secs)
        .map_err(HandshakeError::Certificate)?;

    // The initiator is authenticated: encapsulate and answer.
    let (ct, ss_kem) = crypto
        .kem_encapsulate(&ek, &random(rng))
        .map_err(|_: CryptoError| HandshakeError::InvalidKemKey)?;
    let ss_kem = Zeroizing::new(ss_kem);
    let psk = Zeroizing::new(kem_psk(crypto, &ss_kem, &ct, &ek));
    let ephemeral_secret: Zeroizing<[u8; 32]> = Zeroizing::new(random(rng));
    let cert = identity.cert.as_bytes();
    let mut out = vec![0u8; message2_len(cert.len())];
    out[..KEM_CT_LEN].copy_from_slice(&ct[..]);
    let e_pub = crypto.x25519_public_key(&ephemeral_secret);
    out[M2_EPHEMERAL..M2_PAYLOAD].copy_from_slice(&e_pub);
    sym.mix_hash(crypto, &e_pub);
    sym.mix_key(crypto, &e_pub);
    sym.mix_key(crypto, &dh(crypto, &ephemeral_secret, &re)?); // ee
    sym.mix_key(crypto, &dh(crypto, &ephemeral_secret, &rs)?); // se
    sym.mix_key_and_hash(crypto, &psk[..]);
    let p = &mut out[M2_PAYLOAD..];
    p[..4].copy_from_slice(&local_index.to_le_bytes());
    p[4] = suite.bit();
    p[5..7].copy_from_slice(&(cert.len() as u16).to_le_bytes());
    p[P2_FIXED..P2_FIXED + cert.len()].copy_from_slice(cert);
    sym.encrypt_and_hash(crypto, p, P2_FIXED + cert.len());
    replay.record(rs, ts, unix_nanos, ss);
    let (recv_key, send_key) = sym.split(crypto);
    Ok((
        out,
        HandshakeOutput {
            send_key,
            recv_key,
            peer_cert,
            peer_index,
            handshake_hash: sym.handshake_hash(),
            suite,
            peer_clock_offset_ns: Some(unix_nanos_of(&ts) - unix_nanos as i128)
                .map(|d| d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64),
        },
    ))
}

/// Constructors that skip safety checks, for attack tests only.
#[doc(hidden)]
pub mod dangerous {
    use super::*;

    /// Sets the suites an identity offers regardless of the machine's
    /// hardware (tests of the negotiation).
    pub fn set_suites(identity: &mut Identity, suites: u8) {
        identity.suites = suites;
    }

    /// An identity whose static key need not match its certificate: what an
    /// attacker replaying someone else's certificate would hold.
    pub fn identity_unchecked(
        crypto: &dyn Crypto,
        cert: Certificate,
        static_secret: [u8; 32],
    ) -> Identity {
        Identity {
            static_public: crypto.x25519_public_key(&static_secret),
            advert_seed: crate::cert::advert_seed(crypto, &static_secret),
            cert,
            static_secret,
            suites: SUITE_CHACHA,
        }
    }
}
