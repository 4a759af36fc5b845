//! The inventory of issued certificates, kept beside the CA key
//! (`ca.key` → `ca.issued.jsonl`, one JSON object a line): what `cert
//! issue` checks so that two valid certificates of one CA never carry the
//! same overlay address or node name by accident, and what `revoke` marks.
//!
//! Nodes enforce the same rule on their own (the first valid holder keeps
//! an address or name), so the inventory is the operator's early warning,
//! not the protection; `--force` issues a duplicate anyway.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Result;

/// One issued node certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Issued {
    /// Node name.
    pub name: String,
    /// Overlay addresses (without prefix).
    pub addresses: Vec<IpAddr>,
    /// X25519 static key, hex: a certificate for the same key (a renewal)
    /// is no conflict.
    pub public_key: String,
    /// Certificate fingerprint, hex.
    pub fingerprint: String,
    /// End of validity, Unix seconds.
    pub not_after: u64,
    /// Revoked with `meshctl revoke`.
    #[serde(default)]
    pub revoked: bool,
}

/// The inventory file of one CA.
pub struct Inventory {
    path: PathBuf,
    entries: Vec<Issued>,
}

impl Inventory {
    /// The inventory beside `ca_key` (empty if there is none yet).
    pub fn open(ca_key: &Path) -> Result<Self> {
        let path = ca_key.with_extension("issued.jsonl");
        let mut entries = Vec::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for (i, line) in text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                {
                    let e = serde_json::from_str(line).map_err(|e| {
                        format!(
                            "{}: line {}: {e} (the inventory of issued certificates; fix or remove that line)",
                            path.display(),
                            i + 1
                        )
                    })?;
                    entries.push(e);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display()).into()),
        }
        Ok(Self { path, entries })
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A valid (unexpired at `now`, unrevoked) certificate of another key
    /// that carries `name` or one of `addresses`, if any.
    pub fn conflict(
        &self,
        name: &str,
        addresses: &[IpAddr],
        public_key: &str,
        now: u64,
    ) -> Option<(&Issued, String)> {
        self.entries
            .iter()
            .filter(|e| !e.revoked && e.not_after > now && e.public_key != public_key)
            .find_map(|e| {
                if e.name == name {
                    return Some((e, format!("--name {name}")));
                }
                (addresses.iter().find(|a| e.addresses.contains(a)))
                    .map(|a| (e, format!("--ip {a}")))
            })
    }

    /// Appends an issued certificate.
    pub fn record(&mut self, e: Issued) -> Result<()> {
        let mut line = serde_json::to_string(&e)?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|err| format!("{}: {err}", self.path.display()))?;
        f.write_all(line.as_bytes())
            .map_err(|err| format!("{}: {err}", self.path.display()))?;
        self.entries.push(e);
        Ok(())
    }

    /// A revoked certificate issued for this public key (hex), if any.
    pub fn revoked_key(&self, public_key: &str) -> Option<&Issued> {
        (self.entries.iter()).find(|e| e.revoked && e.public_key == public_key)
    }

    /// Marks the certificate with this fingerprint revoked; false if the
    /// inventory does not list it.
    pub fn mark_revoked(&mut self, fingerprint: &str) -> Result<bool> {
        let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.fingerprint == fingerprint)
        else {
            return Ok(false);
        };
        e.revoked = true;
        let mut text = String::new();
        for e in &self.entries {
            text.push_str(&serde_json::to_string(e)?);
            text.push('\n');
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|err| format!("{}: {err}", self.path.display()))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(name: &str, ip: [u8; 4], key: &str, not_after: u64) -> Issued {
        Issued {
            name: name.into(),
            addresses: vec![IpAddr::from(ip)],
            public_key: key.into(),
            fingerprint: format!("fp-{name}-{key}"),
            not_after,
            revoked: false,
        }
    }

    #[test]
    fn a_valid_certificate_of_another_key_conflicts_by_name_or_address() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("ca.key");
        let mut inv = Inventory::open(&key).unwrap();
        assert_eq!(inv.path(), dir.path().join("ca.issued.jsonl"));
        inv.record(issued("web-1", [100, 64, 0, 1], "aa", 1_000))
            .unwrap();
        inv.record(issued("old", [100, 64, 0, 9], "cc", 10))
            .unwrap();
        let ip = |x| IpAddr::from([100, 64, 0, x]);
        let (e, what) = inv.conflict("web-1", &[ip(2)], "bb", 100).unwrap();
        assert_eq!((e.name.as_str(), what.as_str()), ("web-1", "--name web-1"));
        let (_, what) = inv.conflict("web-2", &[ip(1)], "bb", 100).unwrap();
        assert_eq!(what, "--ip 100.64.0.1");
        assert!(
            inv.conflict("web-1", &[ip(1)], "aa", 100).is_none(),
            "a renewal"
        );
        assert!(
            inv.conflict("old", &[ip(9)], "dd", 100).is_none(),
            "expired"
        );
        // Reopened from the file; a revoked entry no longer conflicts.
        let mut inv = Inventory::open(&key).unwrap();
        assert!(inv.mark_revoked("fp-web-1-aa").unwrap());
        assert!(!inv.mark_revoked("nope").unwrap());
        let inv = Inventory::open(&key).unwrap();
        assert!(inv.conflict("web-1", &[ip(1)], "bb", 100).is_none());
        // A damaged line names the file and the line.
        std::fs::write(inv.path(), "{\"name\":1}\n").unwrap();
        let e = Inventory::open(&key).err().unwrap().to_string();
        assert!(e.contains("ca.issued.jsonl: line 1"), "{e}");
    }
}
