//! Signed alerts ("accusations"): one node telling the mesh that it
//! quarantines another. Encoding and decoding; what a receiver makes of
//! them is `crate::quorum`.

use super::{u16_at, u64_at, ControlError, KIND_ACCUSATION};
use crate::wire::NodeId;

/// Domain separator of accusation signatures (signed with the accuser's
/// advert key, as adverts are, under a context of their own).
pub const ACCUSATION_SIGNING_CONTEXT: &[u8] = b"meshd accusation v1\0";
/// Longest scenario name carried.
pub const MAX_SCENARIO_LEN: usize = 32;
const HEADER_LEN: usize = 48;
const SIGNATURE_LEN: usize = 64;
const FLAG_WITHDRAWN: u8 = 1;

/// "I, `accuser`, quarantine `accused` for `scenario`, until
/// `expires_unix`", or, withdrawn, "no longer". Flooded unchanged to every
/// neighbour with a session, so it carries the accuser's certificate for
/// receivers that never met the accuser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accusation {
    /// Who accuses (signs).
    pub accuser: NodeId,
    /// Who is accused.
    pub accused: NodeId,
    /// Higher replaces lower, per accuser (the accuser's wall clock in ns
    /// at its first accusation, then one more per message).
    pub seq: u64,
    /// Unix seconds when the accuser's quarantine began: a refresh of the
    /// same quarantine repeats it, a new quarantine has a new one.
    pub since_unix: u64,
    /// Unix seconds when the accuser's quarantine ends.
    pub expires_unix: u64,
    /// The quarantine ended early (released, or forgiven): receivers drop
    /// the accusation.
    pub withdrawn: bool,
    /// The scenario that overflowed (ASCII, at most [`MAX_SCENARIO_LEN`]).
    pub scenario: String,
    /// The accuser's certificate.
    pub cert: Vec<u8>,
    /// Ed25519 over [`ACCUSATION_SIGNING_CONTEXT`] and the encoding up to
    /// the signature, by the advert key of the accuser's certificate.
    pub signature: [u8; SIGNATURE_LEN],
}

impl Accusation {
    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut v = ACCUSATION_SIGNING_CONTEXT.to_vec();
        self.write_unsigned(&mut v);
        v
    }

    fn write_unsigned(&self, v: &mut Vec<u8>) {
        let scenario = &self.scenario.as_bytes()[..self.scenario.len().min(MAX_SCENARIO_LEN)];
        let cert = &self.cert[..self.cert.len().min(crate::cert::MAX_CERT_LEN)];
        v.extend_from_slice(&[
            KIND_ACCUSATION,
            u8::from(self.withdrawn) * FLAG_WITHDRAWN,
            scenario.len() as u8,
            0,
        ]);
        v.extend_from_slice(&self.accuser.0.to_le_bytes());
        v.extend_from_slice(&self.accused.0.to_le_bytes());
        v.extend_from_slice(&self.seq.to_le_bytes());
        v.extend_from_slice(&self.since_unix.to_le_bytes());
        v.extend_from_slice(&self.expires_unix.to_le_bytes());
        v.extend_from_slice(&(cert.len() as u16).to_le_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(scenario);
        v.extend_from_slice(cert);
    }

    /// Appends the encoding (kind byte first).
    pub(super) fn write(&self, v: &mut Vec<u8>) {
        self.write_unsigned(v);
        v.extend_from_slice(&self.signature);
    }

    /// Decodes an accusation (kind byte first).
    pub(super) fn decode(b: &[u8]) -> Result<Self, ControlError> {
        if b.len() < HEADER_LEN + SIGNATURE_LEN {
            return Err(ControlError::BadLength);
        }
        if b[1] & !FLAG_WITHDRAWN != 0 || b[3] != 0 || b[46..48] != [0, 0] {
            return Err(ControlError::ReservedNonZero);
        }
        let scenario_len = usize::from(b[2]);
        let cert_len = usize::from(u16_at(b, 44));
        if scenario_len == 0
            || scenario_len > MAX_SCENARIO_LEN
            || cert_len > crate::cert::MAX_CERT_LEN
            || b.len() != HEADER_LEN + scenario_len + cert_len + SIGNATURE_LEN
        {
            return Err(ControlError::BadLength);
        }
        let scenario = &b[HEADER_LEN..HEADER_LEN + scenario_len];
        if !scenario
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        {
            return Err(ControlError::ReservedNonZero);
        }
        let cert_at = HEADER_LEN + scenario_len;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&b[cert_at + cert_len..]);
        Ok(Self {
            accuser: NodeId(u64_at(b, 4)),
            accused: NodeId(u64_at(b, 12)),
            seq: u64_at(b, 20),
            since_unix: u64_at(b, 28),
            expires_unix: u64_at(b, 36),
            withdrawn: b[1] & FLAG_WITHDRAWN != 0,
            scenario: String::from_utf8_lossy(scenario).into_owned(),
            cert: b[cert_at..cert_at + cert_len].to_vec(),
            signature,
        })
    }
}
