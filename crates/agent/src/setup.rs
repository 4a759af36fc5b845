//! Loading and checking everything a node needs before it touches the
//! network: CA, own certificate and key, peer certificates. Every error
//! names the file.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crypto::files;
use crypto::RealCrypto;
use proto::armor::LABEL_NODE_KEY;
use proto::cert::{Certificate, TrustedCa};
use proto::handshake::Identity;
use types::config::NodeConfig;

/// A static peer, checked.
pub struct StaticPeer {
    pub cert: Certificate,
    pub endpoint: Option<SocketAddr>,
    pub persistent_keepalive: Option<Duration>,
}

/// Everything loaded from disk.
pub struct Loaded {
    pub ca: TrustedCa,
    pub identity: Identity,
    pub peers: Vec<StaticPeer>,
    /// Signed bundles to apply at start: (where from, whether the config
    /// named it, encoding). Verified when applied.
    pub bundles: Vec<(std::path::PathBuf, bool, Vec<u8>)>,
}

/// Where the bundle of `kind` in force is saved.
pub fn bundle_path(dir: &std::path::Path, kind: proto::bundle::BundleKind) -> std::path::PathBuf {
    dir.join(format!("{}.bundle", kind.name()))
}

/// Reads an armoured bundle file.
pub fn read_bundle(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    proto::bundle::Bundle::from_armor(&text)
        .map(|b| b.as_bytes().to_vec())
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn load(cfg: &NodeConfig) -> Result<Loaded, String> {
    let c = RealCrypto;
    let now = unix_now();
    let n = &cfg.node;
    let ca_cert = files::read_certificate(&n.ca_certificate)
        .map_err(|e| format!("node.ca-certificate: {e}"))?;
    let ca = TrustedCa::new(&c, ca_cert, now)
        .map_err(|e| format!("node.ca-certificate: {}: {e}", n.ca_certificate.display()))?;
    let cert =
        files::read_certificate(&n.certificate).map_err(|e| format!("node.certificate: {e}"))?;
    ca.verify_node(&c, &cert, now)
        .map_err(|e| format!("node.certificate: {}: {e}", n.certificate.display()))?;
    let secret = files::read_private_key(&n.private_key, LABEL_NODE_KEY)
        .map_err(|e| format!("node.private-key: {e}"))?;
    let identity = Identity::new(&c, cert, secret).map_err(|_| {
        format!(
            "node.private-key: {} does not belong to the certificate {}; use the key issued with it",
            n.private_key.display(),
            n.certificate.display()
        )
    })?;
    let mut peers = Vec::new();
    for (i, p) in cfg.peers.iter().enumerate() {
        let cert = files::read_certificate(&p.certificate)
            .map_err(|e| format!("peer[{i}].certificate: {e}"))?;
        ca.verify_node(&c, &cert, now)
            .map_err(|e| format!("peer[{i}].certificate: {}: {e}", p.certificate.display()))?;
        if cert.public_key() == identity.static_public() {
            return Err(format!(
                "peer[{i}].certificate: {} is this node's own certificate; list other nodes as peers",
                p.certificate.display()
            ));
        }
        peers.push(StaticPeer {
            cert,
            endpoint: p.endpoint,
            persistent_keepalive: p
                .persistent_keepalive
                .map(|s| Duration::from_secs(u64::from(s))),
        });
    }
    let mut bundles = Vec::new();
    for (i, path) in cfg.policy.bundles.iter().enumerate() {
        let b = read_bundle(path).map_err(|e| {
            format!("policy.bundles[{i}]: {e} (make it with 'meshctl policy sign' or 'meshctl revoke --out')")
        })?;
        proto::bundle::Bundle::from_bytes(&b)
            .and_then(|bundle| bundle.verify(&c, &ca, now))
            .map_err(|e| {
                format!(
                    "policy.bundles[{i}]: {}: {e} (sign it with this mesh's CA: meshctl policy sign --ca-crt {})",
                    path.display(),
                    n.ca_certificate.display()
                )
            })?;
        bundles.push((path.clone(), true, b));
    }
    if let Some(dir) = &cfg.policy.state_dir {
        for kind in proto::bundle::BundleKind::ALL {
            let path = bundle_path(dir, kind);
            if path.exists() {
                // A damaged saved bundle is not fatal: gossip brings the
                // current one back. It is reported when applied.
                match read_bundle(&path) {
                    Ok(b) => bundles.push((path, false, b)),
                    // Logging is not set up yet; stderr reaches the journal.
                    Err(e) => eprintln!("meshd: policy.state-dir: ignoring {e}"),
                }
            }
        }
    }
    Ok(Loaded {
        ca,
        identity,
        peers,
        bundles,
    })
}
