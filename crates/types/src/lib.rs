//! Types shared by meshd's agent and `meshctl`: the node configuration file
//! ([`config`]), the admin API ([`admin`]) and the JSON shapes of CLI output.
//! Plain data with serde; no protocol logic and no IO beyond reading a
//! configuration file.
#![warn(missing_docs)]

pub mod admin;
pub mod config;

use serde::{Deserialize, Serialize};

/// RFC 3339 UTC from Unix seconds (Howard Hinnant's civil-from-days).
pub fn rfc3339(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let rem = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// A certificate as `meshctl cert show --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CertificateView {
    /// `"ca"` or `"node"`.
    pub kind: String,
    /// Certificate name.
    pub name: String,
    /// Overlay addresses with prefix length, e.g. `100.64.0.1/10`.
    pub addresses: Vec<String>,
    /// Segments.
    pub segments: Vec<String>,
    /// Subject public key, hex (X25519 for nodes, Ed25519 for a CA).
    pub public_key: String,
    /// Start of validity, Unix seconds.
    pub not_before: u64,
    /// End of validity, Unix seconds.
    pub not_after: u64,
    /// Start of validity, RFC 3339 UTC.
    pub not_before_utc: String,
    /// End of validity, RFC 3339 UTC.
    pub not_after_utc: String,
    /// Fingerprint of the issuing CA, hex (empty for a CA).
    pub issuer: String,
    /// This certificate's own fingerprint (what node certificates of a CA name), hex.
    pub fingerprint: String,
    /// Result of verification against a CA when one was given: `"valid"` or the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<String>,
}

/// What `meshctl ca init --json` and `meshctl cert issue --json` report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IssuedFiles {
    /// Certificate file written.
    pub certificate: String,
    /// Private key file written, if one was generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// The certificate.
    pub details: CertificateView,
}

/// The policy in force, as `meshctl policy show --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    /// Version in force (none: no policy, all traffic allowed).
    pub version: Option<u64>,
    /// When it was signed (Unix seconds).
    pub issued: Option<u64>,
    /// Who signed it: `ca` or the policy signer's certificate name.
    pub signer: Option<String>,
    /// The policy text as signed (TOML).
    pub text: Option<String>,
}

/// One `[[expect]]` of a policy file and what the policy decides, as
/// `meshctl policy test --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectationView {
    /// Sender: a node name.
    pub from: String,
    /// Receiver: a node name.
    pub to: String,
    /// Protocol.
    pub proto: String,
    /// Port (or ICMP type).
    pub port: u16,
    /// `allow` or `deny`, as written.
    pub expected: String,
    /// What the policy decides, with the rule or reason.
    pub got: String,
    /// Whether the two agree.
    pub pass: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_case_json() {
        let v = CertificateView {
            kind: "node".into(),
            name: "a".into(),
            addresses: vec!["100.64.0.1/10".into()],
            segments: vec![],
            public_key: "00".into(),
            not_before: 1,
            not_after: 2,
            not_before_utc: "1970-01-01T00:00:01Z".into(),
            not_after_utc: "1970-01-01T00:00:02Z".into(),
            issuer: "ff".into(),
            fingerprint: "ee".into(),
            verification: None,
        };
        let j = serde_json::to_string(&v).unwrap();
        assert!(j.contains("\"not-before-utc\""));
        assert!(!j.contains("verification"));
        assert_eq!(serde_json::from_str::<CertificateView>(&j).unwrap(), v);
    }
}
