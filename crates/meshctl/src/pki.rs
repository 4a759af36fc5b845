//! Offline PKI: the CA, node certificates, policy-signer keys and node
//! keys. Private keys are written with mode 0600 and never printed; every
//! error names the file or the flag and the fix.

use std::path::{Path, PathBuf};

use crypto::files;
use crypto::RealCrypto;
use proto::armor::{LABEL_CA_KEY, LABEL_NODE_KEY, LABEL_NODE_PUBLIC_KEY};
use proto::cert::{self, hex, NodeCertParams, OverlayAddr, TrustedCa};
use proto::provider::Crypto;
use rand_core::RngCore;
use types::IssuedFiles;

use crate::cli::{CaInit, CertIssue, CertRenew, CertShow, IssuePolicyKey};
use crate::inventory::{Inventory, Issued};
use crate::render;
use crate::{now, Result};

/// Parses `90d`, `12h`, `30m`, `45s` into seconds.
pub fn parse_ttl(s: &str) -> Result<u64> {
    let (num, unit) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    let n: u64 = num
        .parse()
        .map_err(|_| format!("--ttl '{s}': expected a number with a unit, e.g. 365d, 12h, 30m"))?;
    let mult = match unit {
        "d" => 86_400,
        "h" => 3600,
        "m" => 60,
        "s" | "" => 1,
        _ => return Err(format!("--ttl '{s}': unknown unit '{unit}', use d, h, m or s").into()),
    };
    let secs = n
        .checked_mul(mult)
        .ok_or_else(|| format!("--ttl '{s}' is too long"))?;
    if secs == 0 {
        return Err(format!("--ttl '{s}' must be positive").into());
    }
    Ok(secs)
}

pub fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    crypto::os_rng().fill_bytes(&mut k);
    k
}

pub fn ca_init(a: CaInit) -> Result<()> {
    let c = RealCrypto;
    let ttl = parse_ttl(&a.ttl)?;
    let t = now();
    for p in [&a.out_crt, &a.out_key] {
        if p.exists() {
            return Err(format!(
                "{}: already exists; remove it or choose another path",
                p.display()
            )
            .into());
        }
    }
    let seed = random_key();
    let cert = cert::create_ca(
        &c,
        &a.name,
        &seed,
        t.saturating_sub(60),
        t.saturating_add(ttl),
    )
    .map_err(|e| format!("--name/--ttl: {e}"))?;
    files::write_private_key(&a.out_key, LABEL_CA_KEY, &seed)?;
    files::write_public(&a.out_crt, &cert.to_armor())?;
    let view = render::view_of(&cert, None, t);
    if a.json {
        let out = IssuedFiles {
            certificate: a.out_crt.display().to_string(),
            private_key: Some(a.out_key.display().to_string()),
            details: view,
        };
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!("created CA '{}'", cert.name());
        outln!("  certificate  {}", a.out_crt.display());
        outln!(
            "  private key  {} (mode 0600; keep it offline)",
            a.out_key.display()
        );
        out!("{}", render::certificate(&view));
    }
    Ok(())
}

pub fn load_ca(crt: &Path) -> Result<TrustedCa> {
    let cert = files::read_certificate(crt)?;
    TrustedCa::new(&RealCrypto, cert, now()).map_err(|e| format!("{}: {e}", crt.display()).into())
}

pub fn cert_issue(a: CertIssue) -> Result<()> {
    let c = RealCrypto;
    let ttl = parse_ttl(&a.ttl)?;
    let (ca, ca_seed) = a.ca.load()?;
    let addresses = a
        .ips
        .iter()
        .map(|s| s.parse::<OverlayAddr>().map_err(|e| format!("--ip {e}")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let out_crt = a
        .out_crt
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.crt", a.name)));
    let out_key = a
        .out_key
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.key", a.name)));
    let (public, advert_key, secret) = match &a.public_key {
        Some(p) => {
            let (x, advert) = files::read_node_public_key(p)?;
            (x, advert, None)
        }
        None => {
            if out_key.exists() {
                return Err(format!(
                    "{}: already exists; remove it or choose another path",
                    out_key.display()
                )
                .into());
            }
            let s = random_key();
            (
                c.x25519_public_key(&s),
                proto::cert::advert_public_key(&c, &s),
                Some(s),
            )
        }
    };
    if out_crt.exists() {
        return Err(format!(
            "{}: already exists; remove it or choose another path",
            out_crt.display()
        )
        .into());
    }
    let t = now();
    // The inventory beside the CA key: no second valid certificate for a
    // name or address by accident.
    let mut inventory = Inventory::open(&a.ca.ca_key)?;
    let ips: Vec<_> = addresses.iter().map(|a| a.addr()).collect();
    if let Some((e, what)) = inventory.conflict(&a.name, &ips, &hex(&public), t) {
        if !a.force {
            return Err(format!(
                "{what}: already carried by the certificate issued to '{}' (fingerprint {}, valid until {}; {}); revoke it first (meshctl revoke --cert FILE) or pass --force to issue a second one anyway (nodes let only the first valid holder use a name or address)",
                e.name,
                &e.fingerprint[..16],
                render::rfc3339(e.not_after),
                inventory.path().display()
            )
            .into());
        }
    }
    // Never outlive the CA: clamp to its validity, and say so.
    let ca_end = ca.certificate().body().not_after;
    let not_after = t.saturating_add(ttl).min(ca_end);
    let cert = ca
        .issue(
            &c,
            &ca_seed,
            NodeCertParams {
                name: a.name.clone(),
                addresses,
                segments: a.segments.clone(),
                static_public_key: public,
                advert_key,
                not_before: t.saturating_sub(60).max(ca.certificate().body().not_before),
                not_after,
            },
        )
        .map_err(|e| format!("--name/--ip/--segment: {e}"))?;
    if let Some(s) = secret {
        files::write_private_key(&out_key, LABEL_NODE_KEY, &s)?;
    }
    files::write_public(&out_crt, &cert.to_armor())?;
    inventory.record(issued(&cert))?;
    let view = render::view_of(&cert, Some(&ca), t);
    if a.json {
        let out = IssuedFiles {
            certificate: out_crt.display().to_string(),
            private_key: secret.map(|_| out_key.display().to_string()),
            details: view,
        };
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!("issued certificate for '{}'", cert.name());
        outln!("  certificate  {}", out_crt.display());
        if secret.is_some() {
            outln!("  private key  {} (mode 0600)", out_key.display());
        }
        out!("{}", render::certificate(&view));
        if not_after < t.saturating_add(ttl) {
            outln!("  note: validity shortened to the CA's end of validity");
        }
    }
    Ok(())
}

/// The inventory's entry for a certificate just issued.
fn issued(cert: &proto::cert::Certificate) -> Issued {
    let b = cert.body();
    Issued {
        name: b.name.clone(),
        addresses: b.addresses.iter().map(|x| x.addr()).collect(),
        public_key: hex(&b.public_key),
        fingerprint: hex(&cert.fingerprint(&RealCrypto)),
        not_after: b.not_after,
        revoked: false,
    }
}

/// `meshctl cert renew`: the old certificate's key, name, addresses and
/// segments, signed again with a new validity.
pub fn cert_renew(a: CertRenew) -> Result<()> {
    let c = RealCrypto;
    let ttl = parse_ttl(&a.ttl)?;
    let (ca, ca_seed) = a.ca.load()?;
    let old = files::read_certificate(&a.path)?;
    let body = old.body().clone();
    // Signed by this CA (checked at a moment it was valid: an expired one
    // may be renewed).
    ca.verify_node(&c, &old, body.not_before).map_err(|e| {
        format!(
            "{}: {e}; renew only certificates of this CA ({})",
            a.path.display(),
            a.ca.ca_crt.display()
        )
    })?;
    let out_crt = a
        .out_crt
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.renewed.crt", body.name)));
    if out_crt.exists() {
        return Err(format!(
            "{}: already exists; remove it or choose another path (--out-crt)",
            out_crt.display()
        )
        .into());
    }
    let mut inventory = Inventory::open(&a.ca.ca_key)?;
    if let Some(e) = inventory.revoked_key(&hex(&body.public_key)) {
        if !a.force {
            return Err(format!(
                "a certificate of this key ('{}', fingerprint {}) was revoked ({}): a renewal would let the key back in; pass --force only to undo a mistaken revocation, never for a stolen key",
                e.name,
                &e.fingerprint[..16],
                inventory.path().display()
            )
            .into());
        }
    }
    let t = now();
    let not_after = t.saturating_add(ttl).min(ca.certificate().body().not_after);
    let cert = ca
        .issue(
            &c,
            &ca_seed,
            NodeCertParams {
                name: body.name.clone(),
                addresses: body.addresses.clone(),
                segments: body.segments.clone(),
                static_public_key: body.public_key,
                advert_key: body.advert_key,
                not_before: t.saturating_sub(60).max(ca.certificate().body().not_before),
                not_after,
            },
        )
        .map_err(|e| format!("{}: {e}", a.path.display()))?;
    files::write_public(&out_crt, &cert.to_armor())?;
    inventory.record(issued(&cert))?;
    let view = render::view_of(&cert, Some(&ca), t);
    if a.json {
        let out = IssuedFiles {
            certificate: out_crt.display().to_string(),
            private_key: None,
            details: view,
        };
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!("renewed certificate for '{}' (same key)", cert.name());
        outln!("  certificate  {}", out_crt.display());
        out!("{}", render::certificate(&view));
        outln!(
            "  next: replace the node's certificate file with it and run 'meshctl reload' there (or systemctl reload meshd)"
        );
    }
    Ok(())
}

pub fn cert_show(a: CertShow) -> Result<()> {
    let cert = files::read_certificate(&a.path)?;
    let ca = match &a.ca {
        Some(p) => Some(load_ca(p)?),
        None => None,
    };
    let mut view = render::view_of(&cert, ca.as_ref(), now());
    if let (Some(list), Some(ca)) = (&a.revocations, &ca) {
        let text = std::fs::read_to_string(list).map_err(|e| format!("{}: {e}", list.display()))?;
        let bundle = proto::bundle::Bundle::from_armor(&text)
            .map_err(|e| format!("{}: {e}", list.display()))?;
        let content = bundle.verify(&RealCrypto, ca, now()).map_err(|e| {
            format!(
                "{}: {e} (a revocation list signed for this CA)",
                list.display()
            )
        })?;
        let proto::bundle::Content::Revocation(l) = content else {
            return Err(format!("{}: a policy, not a revocation list", list.display()).into());
        };
        let fp = cert.fingerprint(&RealCrypto);
        if l.entries.iter().any(|e| e.fingerprint == fp) {
            view.verification = Some(format!(
                "revoked (revocation list version {})",
                bundle.version()
            ));
        }
    }
    let failed = view
        .verification
        .as_ref()
        .filter(|v| !v.starts_with("valid"))
        .map(|v| format!("{}: {v}", a.path.display()));
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        outln!("{} certificate '{}'", view.kind, view.name);
        out!("{}", render::certificate(&view));
    }
    failed.map_or(Ok(()), |f| Err(f.into()))
}

pub fn issue_policy_key(a: IssuePolicyKey) -> Result<()> {
    let c = RealCrypto;
    let ttl = parse_ttl(&a.ttl)?;
    let (ca, ca_seed) = a.ca.load()?;
    let seed = random_key();
    let t = now();
    let not_after = t.saturating_add(ttl).min(ca.certificate().body().not_after);
    let cert = ca
        .issue_policy_signer(
            &c,
            &ca_seed,
            &a.name,
            c.ed25519_public_key(&seed),
            t,
            not_after,
        )
        .map_err(|e| format!("{}: {e}", a.ca.ca_key.display()))?;
    let out_crt = a
        .out_crt
        .unwrap_or_else(|| PathBuf::from(format!("{}.crt", a.name)));
    let out_key = a
        .out_key
        .unwrap_or_else(|| PathBuf::from(format!("{}.key", a.name)));
    files::write_private_key(&out_key, proto::armor::LABEL_POLICY_SIGNER_KEY, &seed)?;
    files::write_public(&out_crt, &cert.to_armor())?;
    outln!(
        "wrote policy signer '{}': {} and {} (mode 0600); valid until {}",
        a.name,
        out_crt.display(),
        out_key.display(),
        render::rfc3339(not_after)
    );
    Ok(())
}

pub fn key_generate(out: &Path, public_out: &Path) -> Result<()> {
    let s = random_key();
    let mut p = RealCrypto.x25519_public_key(&s).to_vec();
    p.extend_from_slice(&proto::cert::advert_public_key(&RealCrypto, &s));
    files::write_private_key(out, LABEL_NODE_KEY, &s)?;
    files::write_public(public_out, &proto::armor::encode(LABEL_NODE_PUBLIC_KEY, &p))?;
    outln!(
        "wrote {} (mode 0600) and {}",
        out.display(),
        public_out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("2d").unwrap(), 172_800);
        assert_eq!(parse_ttl("90m").unwrap(), 5400);
        assert_eq!(parse_ttl("15").unwrap(), 15);
        assert!(parse_ttl("0d").is_err());
        assert!(parse_ttl("5y")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
        assert!(parse_ttl("abc").is_err());
    }
}
