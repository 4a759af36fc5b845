//! ASCII armour for certificates and keys: a PEM-like envelope with a label,
//! standard base64 in lines of 64 characters.
//!
//! ```text
//! -----BEGIN MESHD NODE CERTIFICATE-----
//! AQF3...
//! -----END MESHD NODE CERTIFICATE-----
//! ```

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use core::fmt;

/// Label of a CA certificate.
pub const LABEL_CA_CERTIFICATE: &str = "MESHD CA CERTIFICATE";
/// Label of a node certificate.
pub const LABEL_NODE_CERTIFICATE: &str = "MESHD NODE CERTIFICATE";
/// Label of a CA signing key (Ed25519 seed).
pub const LABEL_CA_KEY: &str = "MESHD CA PRIVATE KEY";
/// Label of a node static key (X25519 secret).
pub const LABEL_NODE_KEY: &str = "MESHD NODE PRIVATE KEY";
/// Label of a policy-signer certificate (a key the CA names to sign bundles).
pub const LABEL_POLICY_SIGNER_CERTIFICATE: &str = "MESHD POLICY SIGNER CERTIFICATE";
/// Label of a policy-signer key (Ed25519 seed).
pub const LABEL_POLICY_SIGNER_KEY: &str = "MESHD POLICY SIGNER PRIVATE KEY";
/// Label of a node static public key (X25519).
pub const LABEL_NODE_PUBLIC_KEY: &str = "MESHD NODE PUBLIC KEY";

/// Why armoured text could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArmorError {
    /// No `-----BEGIN ...-----` line: not an armoured meshd object at all.
    NoBeginLine,
    /// A BEGIN line is there but no END line with the same label.
    NoEndLine,
    /// The label is not the one expected.
    WrongLabel {
        /// What the caller asked for.
        expected: &'static str,
        /// What the file holds.
        found: String,
    },
    /// The body is not valid base64.
    BadBase64,
}

impl fmt::Display for ArmorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBeginLine => {
                f.write_str("no '-----BEGIN MESHD ...-----' line (is this a meshd file?)")
            }
            Self::NoEndLine => {
                f.write_str("BEGIN line without a matching END line (file truncated?)")
            }
            Self::WrongLabel { expected, found } => {
                write!(f, "holds a '{found}', expected a '{expected}'")
            }
            Self::BadBase64 => f.write_str("body is not valid base64 (file corrupted?)"),
        }
    }
}

impl std::error::Error for ArmorError {}

/// Wraps `bytes` in armour with `label`.
pub fn encode(label: &str, bytes: &[u8]) -> String {
    let b64 = STANDARD.encode(bytes);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        out.push_str(core::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Reads the first armoured object from `text`, which must carry `label`.
/// Text before the BEGIN line (comments) is ignored.
pub fn decode(label: &'static str, text: &str) -> Result<Vec<u8>, ArmorError> {
    let mut lines = text.lines().map(str::trim);
    let found = loop {
        let Some(line) = lines.next() else {
            return Err(ArmorError::NoBeginLine);
        };
        if let Some(rest) = line.strip_prefix("-----BEGIN ") {
            if let Some(l) = rest.strip_suffix("-----") {
                break l.to_string();
            }
        }
    };
    if found != label {
        return Err(ArmorError::WrongLabel {
            expected: label,
            found,
        });
    }
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    for line in lines.by_ref() {
        if line == end {
            return STANDARD
                .decode(body.as_bytes())
                .map_err(|_| ArmorError::BadBase64);
        }
        body.push_str(line);
    }
    Err(ArmorError::NoEndLine)
}

/// The label of the first armoured object in `text`, if any.
pub fn label_of(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let text = encode(LABEL_NODE_KEY, &[7u8; 100]);
        assert_eq!(decode(LABEL_NODE_KEY, &text).unwrap(), vec![7u8; 100]);
        assert!(matches!(
            decode(LABEL_CA_KEY, &text),
            Err(ArmorError::WrongLabel { .. })
        ));
        assert_eq!(
            decode(LABEL_NODE_KEY, "hello"),
            Err(ArmorError::NoBeginLine)
        );
        let cut: String = text.lines().take(2).collect::<Vec<_>>().join("\n");
        assert_eq!(decode(LABEL_NODE_KEY, &cut), Err(ArmorError::NoEndLine));
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[1].replace_range(0..2, "*!");
        let bad = lines.join("\n");
        assert_eq!(decode(LABEL_NODE_KEY, &bad), Err(ArmorError::BadBase64));
    }
}
