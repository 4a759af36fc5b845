//! Signed, versioned bundles: the mesh policy and the revocation list.
//!
//! A bundle is what `meshctl policy push` and `meshctl revoke` produce and
//! what nodes gossip (see [`crate::control`] kinds 5–7). Every node applies
//! the highest valid version of each kind; a bundle that does not verify,
//! is not newer than the one in force, or whose content does not parse never
//! replaces it (and is counted).
//!
//! Encoding (integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version, 1 |
//! | 1 | kind: 1 policy, 2 revocation list |
//! | 4 | body length |
//! | n | body: postcard of [`BundleBody`] (version, issued, issuer, content, signer) |
//! | 64 | Ed25519 signature over `"meshd bundle v1\0"` ‖ everything before it, by the CA or by the policy signer named in `signer` |
//!
//! Content: for a policy, the policy TOML text (UTF-8, expectations
//! included, so every node holds what was tested); for a revocation list,
//! postcard of [`RevocationList`].

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::armor;
use crate::cert::{Certificate, TrustedCa};
use crate::policy::Policy;
use crate::provider::{Crypto, ED25519_SIGNATURE_LEN, HASH_LEN};

/// Format version byte.
pub const BUNDLE_FORMAT: u8 = 1;
/// Largest bundle accepted, in bytes (a 1,000-rule policy is about 100 kB).
pub const MAX_BUNDLE_LEN: usize = 512 * 1024;
const HEADER_LEN: usize = 6;
const SIGNING_CONTEXT: &[u8] = b"meshd bundle v1\0";
/// Armour label of a policy bundle file.
pub const LABEL_POLICY_BUNDLE: &str = "MESHD POLICY BUNDLE";
/// Armour label of a revocation list file.
pub const LABEL_REVOCATION_LIST: &str = "MESHD REVOCATION LIST";

/// What a bundle carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BundleKind {
    /// The segment policy.
    Policy,
    /// Revoked node certificates.
    Revocation,
}

impl BundleKind {
    /// Both kinds, in slot order.
    pub const ALL: [BundleKind; 2] = [Self::Policy, Self::Revocation];

    /// The wire byte.
    pub fn byte(self) -> u8 {
        match self {
            Self::Policy => 1,
            Self::Revocation => 2,
        }
    }

    /// From the wire byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Policy),
            2 => Some(Self::Revocation),
            _ => None,
        }
    }

    /// `"policy"` or `"revocation"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::Revocation => "revocation",
        }
    }

    /// Index into per-kind arrays.
    pub fn slot(self) -> usize {
        self.byte() as usize - 1
    }

    fn label(self) -> &'static str {
        match self {
            Self::Policy => LABEL_POLICY_BUNDLE,
            Self::Revocation => LABEL_REVOCATION_LIST,
        }
    }
}

impl fmt::Display for BundleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The signed fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleBody {
    /// Higher replaces lower (`meshctl` uses the Unix time by default).
    pub version: u64,
    /// When it was signed (Unix seconds).
    pub issued: u64,
    /// Fingerprint of the CA that signed it.
    pub issuer: [u8; HASH_LEN],
    /// The policy text or the encoded revocation list.
    pub content: Vec<u8>,
    /// A policy-signer certificate (issued by the CA) whose key made the
    /// signature; `None`: the CA key did.
    pub signer: Option<Vec<u8>>,
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedCert {
    /// Fingerprint of the node certificate.
    pub fingerprint: [u8; HASH_LEN],
    /// Its name, for operators (not checked).
    pub name: String,
}

/// The revocation list's content: every revoked certificate (cumulative).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    /// Revoked certificates.
    pub entries: Vec<RevokedCert>,
}

impl RevocationList {
    /// The bundle content encoding.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// The entry for a certificate.
    pub fn revoke(&mut self, crypto: &dyn Crypto, cert: &Certificate) {
        let fingerprint = cert.fingerprint(crypto);
        if !self.entries.iter().any(|e| e.fingerprint == fingerprint) {
            self.entries.push(RevokedCert {
                fingerprint,
                name: cert.name().to_string(),
            });
        }
    }
}

/// Why a bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleError {
    /// Structurally wrong (length, format byte, kind, trailing bytes).
    Malformed(&'static str),
    /// Not signed by this mesh's CA.
    WrongIssuer,
    /// The policy-signer certificate it names is invalid (expired, another
    /// CA's, not a signer certificate) or revoked.
    BadSigner(String),
    /// The signature does not verify: forged or altered.
    BadSignature,
    /// Not newer than the one in force.
    NotNewer {
        /// The version in force.
        in_force: u64,
        /// The version offered.
        offered: u64,
    },
    /// The content does not parse (the policy's error, with its line).
    BadContent(String),
    /// Not armoured as a bundle.
    Armor(String),
}

impl BundleError {
    /// Stable name for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) | Self::Armor(_) => "malformed",
            Self::WrongIssuer => "wrong_issuer",
            Self::BadSigner(_) => "bad_signer",
            Self::BadSignature => "bad_signature",
            Self::NotNewer { .. } => "not_newer",
            Self::BadContent(_) => "bad_content",
        }
    }
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(w) => write!(f, "malformed bundle: {w}"),
            Self::WrongIssuer => f.write_str("bundle was issued by another CA"),
            Self::BadSigner(e) => write!(f, "bundle's policy signer is not valid: {e}"),
            Self::BadSignature => f.write_str(
                "bundle signature does not verify (forged, altered, or signed with another key)",
            ),
            Self::NotNewer { in_force, offered } => write!(
                f,
                "bundle version {offered} is not newer than version {in_force} in force (sign it with a higher --version)"
            ),
            Self::BadContent(e) => write!(f, "bundle content is invalid: {e}"),
            Self::Armor(e) => write!(f, "not a bundle file: {e}"),
        }
    }
}

impl std::error::Error for BundleError {}

/// A parsed bundle (signature not yet checked).
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    kind: BundleKind,
    body: BundleBody,
    bytes: Vec<u8>,
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("kind", &self.kind)
            .field("version", &self.body.version)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// What a verified bundle puts in force.
#[derive(Debug, Clone)]
pub enum Content {
    /// A policy.
    Policy(Policy),
    /// A revocation list.
    Revocation(RevocationList),
}

impl Bundle {
    /// Signs `content` as a bundle of `kind`. `ca_seed` must be `ca`'s key.
    pub fn sign(
        crypto: &dyn Crypto,
        ca: &TrustedCa,
        ca_seed: &[u8; 32],
        kind: BundleKind,
        version: u64,
        issued: u64,
        content: Vec<u8>,
    ) -> Result<Self, BundleError> {
        if crypto.ed25519_public_key(ca_seed) != *ca.certificate().public_key() {
            return Err(BundleError::WrongIssuer);
        }
        let body = BundleBody {
            version,
            issued,
            issuer: *ca.fingerprint(),
            content,
            signer: None,
        };
        Self::sign_body(crypto, ca_seed, kind, body)
    }

    /// Signs `content` with a policy signer's key; `signer` is its
    /// certificate from `TrustedCa::issue_policy_signer`.
    pub fn sign_as(
        crypto: &dyn Crypto,
        signer: &Certificate,
        signer_seed: &[u8; 32],
        kind: BundleKind,
        version: u64,
        issued: u64,
        content: Vec<u8>,
    ) -> Result<Self, BundleError> {
        if signer.kind() != crate::cert::CertKind::PolicySigner {
            return Err(BundleError::BadSigner(
                "not a policy-signer certificate".into(),
            ));
        }
        if crypto.ed25519_public_key(signer_seed) != *signer.public_key() {
            return Err(BundleError::BadSigner(
                "the key does not belong to the signer certificate".into(),
            ));
        }
        let body = BundleBody {
            version,
            issued,
            issuer: signer.body().issuer,
            content,
            signer: Some(signer.as_bytes().to_vec()),
        };
        Self::sign_body(crypto, signer_seed, kind, body)
    }

    fn sign_body(
        crypto: &dyn Crypto,
        seed: &[u8; 32],
        kind: BundleKind,
        body: BundleBody,
    ) -> Result<Self, BundleError> {
        let body_bytes =
            postcard::to_allocvec(&body).map_err(|_| BundleError::Malformed("encoding"))?;
        let mut bytes = vec![BUNDLE_FORMAT, kind.byte()];
        bytes.extend_from_slice(&(body_bytes.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&body_bytes);
        if bytes.len() + ED25519_SIGNATURE_LEN > MAX_BUNDLE_LEN {
            return Err(BundleError::Malformed("larger than 512 KiB"));
        }
        let msg = [SIGNING_CONTEXT, &bytes].concat();
        let sig = crypto.ed25519_sign(seed, &msg);
        bytes.extend_from_slice(&sig);
        Ok(Self { kind, body, bytes })
    }

    /// Parses the binary encoding (structure only).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(BundleError::Malformed("larger than 512 KiB"));
        }
        if bytes.len() < HEADER_LEN + ED25519_SIGNATURE_LEN {
            return Err(BundleError::Malformed("truncated"));
        }
        if bytes[0] != BUNDLE_FORMAT {
            return Err(BundleError::Malformed("unknown format version"));
        }
        let kind = BundleKind::from_byte(bytes[1]).ok_or(BundleError::Malformed("unknown kind"))?;
        let len = u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]) as usize;
        if bytes.len() != HEADER_LEN + len + ED25519_SIGNATURE_LEN {
            return Err(BundleError::Malformed("length does not match"));
        }
        let (body, rest): (BundleBody, _) =
            postcard::take_from_bytes(&bytes[HEADER_LEN..HEADER_LEN + len])
                .map_err(|_| BundleError::Malformed("body does not decode"))?;
        if !rest.is_empty() {
            return Err(BundleError::Malformed("trailing bytes in body"));
        }
        Ok(Self {
            kind,
            body,
            bytes: bytes.to_vec(),
        })
    }

    /// Parses armoured text of either kind.
    pub fn from_armor(text: &str) -> Result<Self, BundleError> {
        let label = match armor::label_of(text) {
            Some(LABEL_REVOCATION_LIST) => LABEL_REVOCATION_LIST,
            _ => LABEL_POLICY_BUNDLE,
        };
        let bytes = armor::decode(label, text).map_err(|e| BundleError::Armor(e.to_string()))?;
        let b = Self::from_bytes(&bytes)?;
        if b.kind.label() != label {
            return Err(BundleError::Malformed(
                "armour label does not match the kind",
            ));
        }
        Ok(b)
    }

    /// Armoured text.
    pub fn to_armor(&self) -> String {
        armor::encode(self.kind.label(), &self.bytes)
    }

    /// The policy signer that signed it, if not the CA (structure only).
    pub fn signer(&self) -> Option<Result<Certificate, BundleError>> {
        self.body
            .signer
            .as_ref()
            .map(|b| Certificate::from_bytes(b).map_err(|e| BundleError::BadSigner(e.to_string())))
    }

    /// Checks issuer, the signer's certificate (valid at `now`, Unix
    /// seconds) and the signature, then parses the content.
    pub fn verify(
        &self,
        crypto: &dyn Crypto,
        ca: &TrustedCa,
        now: u64,
    ) -> Result<Content, BundleError> {
        if self.body.issuer != *ca.fingerprint() {
            return Err(BundleError::WrongIssuer);
        }
        let key = match self.signer() {
            None => *ca.certificate().public_key(),
            Some(cert) => {
                let cert = cert?;
                ca.verify_policy_signer(crypto, &cert, now)
                    .map_err(|e| BundleError::BadSigner(e.to_string()))?;
                *cert.public_key()
            }
        };
        let signed = self.bytes.len() - ED25519_SIGNATURE_LEN;
        let mut sig = [0u8; ED25519_SIGNATURE_LEN];
        sig.copy_from_slice(&self.bytes[signed..]);
        let msg = [SIGNING_CONTEXT, &self.bytes[..signed]].concat();
        crypto
            .ed25519_verify(&key, &msg, &sig)
            .map_err(|_| BundleError::BadSignature)?;
        self.content()
    }

    /// Parses the content without checking the signature.
    pub fn content(&self) -> Result<Content, BundleError> {
        match self.kind {
            BundleKind::Policy => {
                let text = std::str::from_utf8(&self.body.content)
                    .map_err(|_| BundleError::BadContent("policy is not UTF-8".into()))?;
                Policy::parse(text)
                    .map(Content::Policy)
                    .map_err(|e| BundleError::BadContent(e.to_string()))
            }
            BundleKind::Revocation => {
                let (list, rest): (RevocationList, _) =
                    postcard::take_from_bytes(&self.body.content).map_err(|_| {
                        BundleError::BadContent("revocation list does not decode".into())
                    })?;
                if !rest.is_empty() {
                    return Err(BundleError::BadContent("trailing bytes".into()));
                }
                Ok(Content::Revocation(list))
            }
        }
    }

    /// Its kind.
    pub fn kind(&self) -> BundleKind {
        self.kind
    }

    /// Its version.
    pub fn version(&self) -> u64 {
        self.body.version
    }

    /// The signed fields.
    pub fn body(&self) -> &BundleBody {
        &self.body
    }

    /// The encoding (what is gossiped).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}
