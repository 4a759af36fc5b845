//! Mesh certificates: a CA certificate (self-signed Ed25519) and node
//! certificates it signs.
//!
//! A node certificate names the node, its overlay addresses, its segments,
//! its X25519 static key and a validity window, and carries the fingerprint
//! of the CA that signed it. The encoding is canonical: the signed bytes are
//! exactly the bytes on the wire, and a decoder accepts a certificate only if
//! re-encoding what it read reproduces them (see `docs/protocol.md`).
//!
//! Parsing ([`Certificate::from_bytes`]) never checks signatures or time;
//! verification ([`TrustedCa::verify_node`]) takes `now` as an argument.

use core::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::armor::{
    self, ArmorError, LABEL_CA_CERTIFICATE, LABEL_NODE_CERTIFICATE, LABEL_POLICY_SIGNER_CERTIFICATE,
};
use crate::provider::{Crypto, CryptoError, ED25519_SIGNATURE_LEN, HASH_LEN};

/// The only certificate encoding version this implementation reads.
pub const CERT_VERSION: u8 = 2;
/// Domain separator prefixed to the signed bytes.
pub const CERT_SIGNING_CONTEXT: &[u8] = b"meshd certificate v1\0";
/// Domain separator of the advert signing key's derivation
/// ([`advert_seed`]).
pub const ADVERT_KEY_CONTEXT: &[u8] = b"meshd advert signing key v1\0";
/// Domain separator of the CA fingerprint hash.
pub const CA_FINGERPRINT_CONTEXT: &[u8] = b"meshd ca fingerprint v1\0";
/// Upper bound on an encoded certificate (implementation limit).
pub const MAX_CERT_LEN: usize = 1024;
/// Longest node, CA or segment name.
pub const MAX_NAME_LEN: usize = 63;
/// Most overlay addresses in one certificate.
pub const MAX_ADDRESSES: usize = 8;
/// Most segments in one certificate.
pub const MAX_SEGMENTS: usize = 16;
/// Bytes before the to-be-signed body: version, kind, body length.
const HEADER_LEN: usize = 4;

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CertKind {
    /// The mesh CA; `public_key` is an Ed25519 key; self-signed.
    Ca,
    /// A node; `public_key` is its X25519 static key.
    Node,
    /// A key the CA names to sign policy bundles and revocation lists;
    /// `public_key` is an Ed25519 key.
    PolicySigner,
}

impl CertKind {
    fn code(self) -> u8 {
        match self {
            Self::Ca => 1,
            Self::Node => 2,
            Self::PolicySigner => 3,
        }
    }
}

/// An overlay address with its prefix length (the overlay network it lives in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OverlayAddr {
    /// IPv4 address and prefix length (0..=32).
    V4([u8; 4], u8),
    /// IPv6 address and prefix length (0..=128).
    V6([u8; 16], u8),
}

impl OverlayAddr {
    /// The address.
    pub fn addr(&self) -> IpAddr {
        match *self {
            Self::V4(a, _) => IpAddr::from(a),
            Self::V6(a, _) => IpAddr::from(a),
        }
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        match *self {
            Self::V4(_, p) | Self::V6(_, p) => p,
        }
    }

    /// Builds from an address and prefix length, checking the prefix range.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<Self> {
        match addr {
            IpAddr::V4(a) if prefix_len <= 32 => Some(Self::V4(a.octets(), prefix_len)),
            IpAddr::V6(a) if prefix_len <= 128 => Some(Self::V6(a.octets(), prefix_len)),
            _ => None,
        }
    }
}

impl fmt::Display for OverlayAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.prefix_len())
    }
}

impl core::str::FromStr for OverlayAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}': expected ADDRESS/PREFIX, e.g. 100.64.0.1/10"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("'{a}' is not an IP address"))?;
        let p: u8 = p
            .parse()
            .map_err(|_| format!("'{p}' is not a prefix length"))?;
        Self::new(addr, p).ok_or_else(|| format!("prefix length {p} out of range for {addr}"))
    }
}

/// The signed fields of a certificate (postcard-encoded in this field order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertBody {
    /// Node or CA name: 1..=63 of `[A-Za-z0-9._-]`, starting alphanumeric.
    pub name: String,
    /// Overlay addresses the node may use as inner source (empty for a CA).
    pub addresses: Vec<OverlayAddr>,
    /// Segments the node belongs to (for a CA: empty).
    pub segments: Vec<String>,
    /// X25519 static key (node) or Ed25519 verifying key (CA).
    pub public_key: [u8; 32],
    /// Valid from (Unix seconds, inclusive).
    pub not_before: u64,
    /// Valid until (Unix seconds, exclusive).
    pub not_after: u64,
    /// Fingerprint of the signing CA; all zero in a CA certificate.
    pub issuer: [u8; HASH_LEN],
    /// Node: the Ed25519 key that signs its link-state adverts (derived
    /// from its static secret, [`advert_seed`]), so any node can check an
    /// advert's origin, not only the neighbour that passed it on. All zero
    /// in CA and policy-signer certificates.
    pub advert_key: [u8; 32],
}

/// The Ed25519 seed a node signs its link-state adverts with, derived from
/// its X25519 static secret (one secret per node, one key file).
pub fn advert_seed(crypto: &dyn Crypto, static_secret: &[u8; 32]) -> [u8; 32] {
    crypto.hash(&[ADVERT_KEY_CONTEXT, static_secret])
}

/// The public half of [`advert_seed`]: what a node certificate names.
pub fn advert_public_key(crypto: &dyn Crypto, static_secret: &[u8; 32]) -> [u8; 32] {
    crypto.ed25519_public_key(&advert_seed(crypto, static_secret))
}

/// A parsed certificate whose encoding is canonical. Not yet verified.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    kind: CertKind,
    body: CertBody,
    signature: [u8; ED25519_SIGNATURE_LEN],
    bytes: Vec<u8>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("kind", &self.kind)
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

/// Why a certificate was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertError {
    /// The text is not an armoured meshd certificate.
    NotACertificate(ArmorError),
    /// Fewer bytes than the encoding needs.
    Truncated,
    /// Bytes left over after the signature.
    TrailingBytes,
    /// Longer than [`MAX_CERT_LEN`].
    TooLong(usize),
    /// A version this implementation does not know.
    UnknownVersion(u8),
    /// An unknown certificate kind code.
    UnknownKind(u8),
    /// The body does not decode.
    Malformed,
    /// The body decodes but is not in canonical form.
    NonCanonical,
    /// A field is out of range; the string names it.
    InvalidField(&'static str, String),
    /// The signature does not verify: the certificate was altered, or was not signed by this CA.
    BadSignature,
    /// `now` is at or past `not_after`.
    Expired {
        /// End of validity (Unix seconds).
        not_after: u64,
        /// The time of the check.
        now: u64,
    },
    /// `now` is before `not_before`.
    NotYetValid {
        /// Start of validity (Unix seconds).
        not_before: u64,
        /// The time of the check.
        now: u64,
    },
    /// Signed by a different CA than the one trusted.
    WrongCa {
        /// Fingerprint of the trusted CA.
        expected: [u8; HASH_LEN],
        /// Fingerprint the certificate names.
        found: [u8; HASH_LEN],
    },
    /// A node certificate where a CA certificate was expected, or the reverse.
    WrongKind {
        /// What was expected.
        expected: CertKind,
    },
    /// The node's validity window reaches outside the CA's.
    OutsideCaValidity,
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotACertificate(e) => write!(f, "not a meshd certificate: {e}"),
            Self::Truncated => f.write_str("certificate is truncated"),
            Self::TrailingBytes => f.write_str("unexpected bytes after the certificate signature"),
            Self::TooLong(n) => write!(f, "certificate is {n} bytes, the limit is {MAX_CERT_LEN}"),
            Self::UnknownVersion(v) => write!(
                f,
                "unknown certificate version {v} (this meshd reads version {CERT_VERSION}; upgrade meshd or reissue the certificate)"
            ),
            Self::UnknownKind(k) => write!(f, "unknown certificate kind {k}"),
            Self::Malformed => f.write_str("certificate body is malformed"),
            Self::NonCanonical => f.write_str("certificate body is not canonically encoded"),
            Self::InvalidField(field, why) => write!(f, "certificate field '{field}' is invalid: {why}"),
            Self::BadSignature => f.write_str(
                "certificate signature does not verify (the certificate was altered or signed by another key)",
            ),
            Self::Expired { not_after, now } => write!(
                f,
                "certificate expired {}s ago (not-after {not_after}, now {now}); issue a new one with 'meshctl cert issue'",
                now.saturating_sub(*not_after)
            ),
            Self::NotYetValid { not_before, now } => write!(
                f,
                "certificate is not valid for another {}s (not-before {not_before}, now {now}); check the clock",
                not_before.saturating_sub(*now)
            ),
            Self::WrongCa { expected, found } => write!(
                f,
                "certificate was issued by CA {} but this mesh trusts CA {}",
                hex(found),
                hex(expected)
            ),
            Self::WrongKind { expected } => match expected {
                CertKind::Ca => f.write_str("this is a node certificate, a CA certificate is needed"),
                CertKind::Node => f.write_str("this is not a node certificate, a node certificate is needed"),
                CertKind::PolicySigner => f.write_str("this is not a policy-signer certificate (meshctl cert issue-policy-key makes one)"),
            },
            Self::OutsideCaValidity => {
                f.write_str("certificate validity reaches outside the CA certificate's validity")
            }
        }
    }
}

impl std::error::Error for CertError {}

impl From<CryptoError> for CertError {
    fn from(_: CryptoError) -> Self {
        Self::BadSignature
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Certificate {
    /// Parses the binary encoding. Checks structure, limits and canonical
    /// form; does not check the signature or validity window.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CertError> {
        if bytes.len() > MAX_CERT_LEN {
            return Err(CertError::TooLong(bytes.len()));
        }
        if bytes.is_empty() {
            return Err(CertError::Truncated);
        }
        if bytes[0] != CERT_VERSION {
            return Err(CertError::UnknownVersion(bytes[0]));
        }
        if bytes.len() < HEADER_LEN {
            return Err(CertError::Truncated);
        }
        let kind = match bytes[1] {
            1 => CertKind::Ca,
            2 => CertKind::Node,
            3 => CertKind::PolicySigner,
            k => return Err(CertError::UnknownKind(k)),
        };
        let body_len = usize::from(u16::from_le_bytes([bytes[2], bytes[3]]));
        let total = HEADER_LEN + body_len + ED25519_SIGNATURE_LEN;
        if bytes.len() < total {
            return Err(CertError::Truncated);
        }
        if bytes.len() > total {
            return Err(CertError::TrailingBytes);
        }
        let body_bytes = &bytes[HEADER_LEN..HEADER_LEN + body_len];
        let (body, rest): (CertBody, _) =
            postcard::take_from_bytes(body_bytes).map_err(|_| CertError::Malformed)?;
        if !rest.is_empty() {
            return Err(CertError::Malformed);
        }
        let again = postcard::to_allocvec(&body).map_err(|_| CertError::Malformed)?;
        if again != body_bytes {
            return Err(CertError::NonCanonical);
        }
        validate_body(kind, &body)?;
        let mut signature = [0u8; ED25519_SIGNATURE_LEN];
        signature.copy_from_slice(&bytes[HEADER_LEN + body_len..]);
        Ok(Self {
            kind,
            body,
            signature,
            bytes: bytes.to_vec(),
        })
    }

    /// Parses armoured text; the label must match the kind.
    pub fn from_armor(text: &str) -> Result<Self, CertError> {
        let (label, expected) = match armor::label_of(text) {
            Some(LABEL_CA_CERTIFICATE) => (LABEL_CA_CERTIFICATE, CertKind::Ca),
            Some(LABEL_POLICY_SIGNER_CERTIFICATE) => {
                (LABEL_POLICY_SIGNER_CERTIFICATE, CertKind::PolicySigner)
            }
            _ => (LABEL_NODE_CERTIFICATE, CertKind::Node),
        };
        let bytes = armor::decode(label, text).map_err(CertError::NotACertificate)?;
        let cert = Self::from_bytes(&bytes)?;
        if cert.kind != expected {
            return Err(CertError::WrongKind { expected });
        }
        Ok(cert)
    }

    /// Armoured text of this certificate.
    pub fn to_armor(&self) -> String {
        let label = match self.kind {
            CertKind::Ca => LABEL_CA_CERTIFICATE,
            CertKind::Node => LABEL_NODE_CERTIFICATE,
            CertKind::PolicySigner => LABEL_POLICY_SIGNER_CERTIFICATE,
        };
        armor::encode(label, &self.bytes)
    }

    /// The canonical encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// CA or node.
    pub fn kind(&self) -> CertKind {
        self.kind
    }

    /// The signed fields.
    pub fn body(&self) -> &CertBody {
        &self.body
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.body.name
    }

    /// The subject's public key (X25519 for a node, Ed25519 for a CA).
    pub fn public_key(&self) -> &[u8; 32] {
        &self.body.public_key
    }

    /// The Ed25519 signature.
    pub fn signature(&self) -> &[u8; ED25519_SIGNATURE_LEN] {
        &self.signature
    }

    /// Whether `addr` is one of the certificate's overlay addresses.
    pub fn has_address(&self, addr: IpAddr) -> bool {
        self.body.addresses.iter().any(|a| a.addr() == addr)
    }

    /// BLAKE2s fingerprint of this certificate's encoding (used as `issuer` by a CA's nodes).
    pub fn fingerprint(&self, crypto: &dyn Crypto) -> [u8; HASH_LEN] {
        crypto.hash(&[CA_FINGERPRINT_CONTEXT, &self.bytes])
    }

    fn signed_part(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - ED25519_SIGNATURE_LEN]
    }

    /// Checks `now` against the validity window.
    pub fn check_validity(&self, now: u64) -> Result<(), CertError> {
        if now < self.body.not_before {
            return Err(CertError::NotYetValid {
                not_before: self.body.not_before,
                now,
            });
        }
        if now >= self.body.not_after {
            return Err(CertError::Expired {
                not_after: self.body.not_after,
                now,
            });
        }
        Ok(())
    }
}

fn validate_name(field: &'static str, name: &str) -> Result<(), CertError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CertError::InvalidField(
            field,
            format!(
                "'{name}' must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
            ),
        ))
    }
}

fn validate_body(kind: CertKind, body: &CertBody) -> Result<(), CertError> {
    validate_name("name", &body.name)?;
    if body.not_before >= body.not_after {
        return Err(CertError::InvalidField(
            "not-after",
            "must be later than not-before".into(),
        ));
    }
    if body.addresses.len() > MAX_ADDRESSES {
        return Err(CertError::InvalidField(
            "addresses",
            format!("at most {MAX_ADDRESSES}"),
        ));
    }
    for a in &body.addresses {
        if OverlayAddr::new(a.addr(), a.prefix_len()).is_none() {
            return Err(CertError::InvalidField(
                "addresses",
                format!("bad prefix in {a}"),
            ));
        }
    }
    if body.segments.len() > MAX_SEGMENTS {
        return Err(CertError::InvalidField(
            "segments",
            format!("at most {MAX_SEGMENTS}"),
        ));
    }
    for s in &body.segments {
        validate_name("segments", s)?;
    }
    match kind {
        CertKind::Ca | CertKind::PolicySigner if body.advert_key != [0; 32] => {
            return Err(CertError::InvalidField(
                "advert-key",
                "only node certificates name an advert key".into(),
            ));
        }
        CertKind::Ca => {
            if !body.addresses.is_empty() || !body.segments.is_empty() || body.issuer != [0; 32] {
                return Err(CertError::InvalidField(
                    "ca",
                    "a CA certificate has no addresses, segments or issuer".into(),
                ));
            }
        }
        CertKind::PolicySigner => {
            if !body.addresses.is_empty() || !body.segments.is_empty() {
                return Err(CertError::InvalidField(
                    "policy-signer",
                    "a policy-signer certificate has no addresses or segments".into(),
                ));
            }
        }
        CertKind::Node => {
            if body.addresses.is_empty() {
                return Err(CertError::InvalidField(
                    "addresses",
                    "a node certificate needs at least one overlay address (--ip)".into(),
                ));
            }
            if body.advert_key == [0; 32] {
                return Err(CertError::InvalidField(
                    "advert-key",
                    "a node certificate names the key that signs its adverts".into(),
                ));
            }
        }
    }
    Ok(())
}

fn encode_and_sign(
    crypto: &dyn Crypto,
    kind: CertKind,
    body: CertBody,
    signing_seed: &[u8; 32],
) -> Result<Certificate, CertError> {
    validate_body(kind, &body)?;
    let body_bytes = postcard::to_allocvec(&body).map_err(|_| CertError::Malformed)?;
    let body_len =
        u16::try_from(body_bytes.len()).map_err(|_| CertError::TooLong(body_bytes.len()))?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + body_bytes.len() + ED25519_SIGNATURE_LEN);
    bytes.push(CERT_VERSION);
    bytes.push(kind.code());
    bytes.extend_from_slice(&body_len.to_le_bytes());
    bytes.extend_from_slice(&body_bytes);
    let signature = crypto.ed25519_sign(signing_seed, &[CERT_SIGNING_CONTEXT, &bytes].concat());
    bytes.extend_from_slice(&signature);
    if bytes.len() > MAX_CERT_LEN {
        return Err(CertError::TooLong(bytes.len()));
    }
    Ok(Certificate {
        kind,
        body,
        signature,
        bytes,
    })
}

/// Creates a self-signed CA certificate from an Ed25519 seed.
pub fn create_ca(
    crypto: &dyn Crypto,
    name: &str,
    signing_seed: &[u8; 32],
    not_before: u64,
    not_after: u64,
) -> Result<Certificate, CertError> {
    let body = CertBody {
        name: name.to_string(),
        addresses: Vec::new(),
        segments: Vec::new(),
        public_key: crypto.ed25519_public_key(signing_seed),
        not_before,
        not_after,
        issuer: [0; 32],
        advert_key: [0; 32],
    };
    encode_and_sign(crypto, CertKind::Ca, body, signing_seed)
}

/// What a node certificate states, before signing.
#[derive(Debug, Clone)]
pub struct NodeCertParams {
    /// Node name.
    pub name: String,
    /// Overlay addresses.
    pub addresses: Vec<OverlayAddr>,
    /// Segments.
    pub segments: Vec<String>,
    /// The node's X25519 static public key.
    pub static_public_key: [u8; 32],
    /// The node's advert signing key ([`advert_public_key`]).
    pub advert_key: [u8; 32],
    /// Valid from (Unix seconds).
    pub not_before: u64,
    /// Valid until (Unix seconds).
    pub not_after: u64,
}

/// A CA certificate that has been checked and is trusted as the mesh's root.
#[derive(Debug, Clone)]
pub struct TrustedCa {
    cert: Certificate,
    fingerprint: [u8; HASH_LEN],
}

impl TrustedCa {
    /// Accepts `cert` as the mesh CA if it is a CA certificate, its
    /// self-signature verifies and it is valid at `now`.
    pub fn new(crypto: &dyn Crypto, cert: Certificate, now: u64) -> Result<Self, CertError> {
        if cert.kind != CertKind::Ca {
            return Err(CertError::WrongKind {
                expected: CertKind::Ca,
            });
        }
        let msg = [CERT_SIGNING_CONTEXT, cert.signed_part()].concat();
        crypto.ed25519_verify(&cert.body.public_key, &msg, &cert.signature)?;
        cert.check_validity(now)?;
        let fingerprint = cert.fingerprint(crypto);
        Ok(Self { cert, fingerprint })
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The CA fingerprint every node certificate must name.
    pub fn fingerprint(&self) -> &[u8; HASH_LEN] {
        &self.fingerprint
    }

    /// Signs a node certificate. `signing_seed` must be this CA's key.
    pub fn issue(
        &self,
        crypto: &dyn Crypto,
        signing_seed: &[u8; 32],
        params: NodeCertParams,
    ) -> Result<Certificate, CertError> {
        let body = CertBody {
            name: params.name,
            addresses: params.addresses,
            segments: params.segments,
            public_key: params.static_public_key,
            not_before: params.not_before,
            not_after: params.not_after,
            issuer: self.fingerprint,
            advert_key: params.advert_key,
        };
        self.sign_issued(crypto, signing_seed, CertKind::Node, body)
    }

    /// Names an Ed25519 key (`signer_public`) as a policy signer: it may
    /// sign policy bundles and revocation lists for this mesh until
    /// `not_after`. `signing_seed` must be this CA's key.
    pub fn issue_policy_signer(
        &self,
        crypto: &dyn Crypto,
        signing_seed: &[u8; 32],
        name: &str,
        signer_public: [u8; 32],
        not_before: u64,
        not_after: u64,
    ) -> Result<Certificate, CertError> {
        let body = CertBody {
            name: name.to_string(),
            addresses: Vec::new(),
            segments: Vec::new(),
            public_key: signer_public,
            not_before,
            not_after,
            issuer: self.fingerprint,
            advert_key: [0; 32],
        };
        self.sign_issued(crypto, signing_seed, CertKind::PolicySigner, body)
    }

    /// Signs a certificate this CA issues: the key must be the CA's and the
    /// validity must lie within the CA's.
    fn sign_issued(
        &self,
        crypto: &dyn Crypto,
        signing_seed: &[u8; 32],
        kind: CertKind,
        body: CertBody,
    ) -> Result<Certificate, CertError> {
        if crypto.ed25519_public_key(signing_seed) != self.cert.body.public_key {
            return Err(CertError::InvalidField(
                "ca-key",
                "the CA key does not belong to the CA certificate".into(),
            ));
        }
        if body.not_before < self.cert.body.not_before || body.not_after > self.cert.body.not_after
        {
            return Err(CertError::OutsideCaValidity);
        }
        encode_and_sign(crypto, kind, body, signing_seed)
    }

    /// Verifies a node certificate: kind, issuer, signature, validity at `now`,
    /// and that its validity lies within the CA's.
    pub fn verify_node(
        &self,
        crypto: &dyn Crypto,
        cert: &Certificate,
        now: u64,
    ) -> Result<(), CertError> {
        self.verify_issued(crypto, cert, CertKind::Node, now)
    }

    /// Verifies a policy-signer certificate as [`TrustedCa::verify_node`]
    /// does a node's.
    pub fn verify_policy_signer(
        &self,
        crypto: &dyn Crypto,
        cert: &Certificate,
        now: u64,
    ) -> Result<(), CertError> {
        self.verify_issued(crypto, cert, CertKind::PolicySigner, now)
    }

    fn verify_issued(
        &self,
        crypto: &dyn Crypto,
        cert: &Certificate,
        kind: CertKind,
        now: u64,
    ) -> Result<(), CertError> {
        if cert.kind != kind {
            return Err(CertError::WrongKind { expected: kind });
        }
        if cert.body.issuer != self.fingerprint {
            return Err(CertError::WrongCa {
                expected: self.fingerprint,
                found: cert.body.issuer,
            });
        }
        let msg = [CERT_SIGNING_CONTEXT, cert.signed_part()].concat();
        crypto.ed25519_verify(&self.cert.body.public_key, &msg, &cert.signature)?;
        if cert.body.not_before < self.cert.body.not_before
            || cert.body.not_after > self.cert.body.not_after
        {
            return Err(CertError::OutsideCaValidity);
        }
        self.cert.check_validity(now)?;
        cert.check_validity(now)
    }
}
