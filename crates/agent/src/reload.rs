//! Reload (SIGHUP, `meshctl reload`): the configuration file is read and
//! checked exactly as `meshd --check` does; a file that fails changes
//! nothing. Otherwise what can change while running is applied in place,
//! sessions that did not change stay up, and every other change is
//! reported as needing a restart, field by field.
//!
//! | live | needs a restart |
//! |---|---|
//! | `[[peer]]` added, removed (the peer becomes a learned one), endpoint or keepalive changed | `[listen]`, `[tun]`, `[admin]`, `[metrics]`, `log.format` |
//! | `[health]` (if probing was on) | `[crypto]`, `[routing]`, `[admission]` |
//! | `log.level` (unless `MESHD_LOG` is set) | `node.private-key`, `node.ca-certificate` (another key or CA) |
//! | `node.certificate` renewed: same key, name and addresses | `policy.state-dir`, `discovery.dns-domain`, a bootstrap address removed |
//! | `policy.bundles` (newer versions put in force) | |
//! | `discovery.bootstrap` addresses added | |

use std::path::Path;
use std::time::Instant;

use proto::bundle::BundleError;
use types::admin::ReloadView;
use types::config::NodeConfig;

use crate::node::Node;
use crate::startup::{self, unix_nanos};

/// Warnings for this node's certificate and its peers' that end within
/// `within_days` of `now_unix` (or have ended), each with the fix; none
/// with `within_days` 0 (`[node] expiry-warning-days`).
pub fn expiry_warnings(
    ep: &proto::endpoint::Endpoint,
    now: Instant,
    now_unix: u64,
    within_days: u32,
) -> Vec<String> {
    if within_days == 0 {
        return Vec::new();
    }
    let left = |not_after: u64| -> Option<String> {
        if not_after > now_unix.saturating_add(u64::from(within_days) * 86_400) {
            return None;
        }
        let when = types::rfc3339(not_after);
        Some(if not_after <= now_unix {
            format!("expired at {when}")
        } else {
            format!(
                "expires at {when}, in {} days",
                (not_after - now_unix) / 86_400
            )
        })
    };
    let mut v = Vec::new();
    if let Some(w) = left(ep.identity().certificate().body().not_after) {
        v.push(format!(
            "this node's certificate {w}: renew it (meshctl cert renew, with the CA) and reload"
        ));
    }
    for p in ep.peers(now) {
        let (Some(name), Some(cert)) = (&p.name, &p.cert) else {
            continue;
        };
        if let Some(w) = left(cert.body().not_after) {
            v.push(format!(
                "peer '{name}': its certificate {w}; it must be renewed on that node"
            ));
        }
    }
    v
}

/// Sets the log filter (`log.level`); an error says why it was not set.
pub type SetLevel = Box<dyn Fn(&str) -> Result<(), String> + Send>;

/// Reloads `path` into `node`. `Err` (the configuration in force stays)
/// carries the same message `meshd --check` prints.
pub fn reload(node: &mut Node, path: &Path) -> Result<ReloadView, String> {
    let new = NodeConfig::load(path).map_err(|e| e.to_string())?;
    let loaded = startup::load(&new).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut v = ReloadView {
        warnings: loaded.skipped.clone(),
        ..ReloadView::default()
    };
    let now = Instant::now();
    let old = node.cfg.clone();

    // Identity: a renewed certificate is taken; another key or CA is not.
    let ep = &mut node.ep;
    if loaded.identity.static_public() != ep.identity().static_public() {
        v.restart_needed
            .push("node.private-key: another key (a new identity needs a restart)".into());
    } else if loaded.ca.fingerprint() != &ep.identity().certificate().body().issuer {
        v.restart_needed
            .push("node.ca-certificate: another CA (a new mesh needs a restart)".into());
    } else if loaded.identity.certificate().as_bytes() != ep.identity().certificate().as_bytes() {
        let cert = loaded.identity.certificate().clone();
        let until = cert.body().not_after;
        match ep.renew_certificate(unix_nanos(), cert) {
            Ok(()) => v.applied.push(format!(
                "node.certificate: renewed, valid until {}",
                types::rfc3339(until)
            )),
            Err(e) => v
                .restart_needed
                .push(format!("node.certificate: not taken live: {e}")),
        }
    }

    for (field, changed) in [
        ("listen", old.listen != new.listen),
        ("tun", old.tun != new.tun),
        ("admin", old.admin != new.admin),
        ("metrics", old.metrics != new.metrics),
        ("log.format", old.log.format != new.log.format),
        ("crypto", old.crypto != new.crypto),
        ("ids", old.ids != new.ids),
        ("routing", old.routing != new.routing),
        ("admission", old.admission != new.admission),
        (
            "policy.state-dir",
            old.policy.state_dir != new.policy.state_dir,
        ),
        (
            "discovery.dns-domain",
            old.discovery.dns_domain != new.discovery.dns_domain,
        ),
    ] {
        if changed {
            v.restart_needed
                .push(format!("{field}: changed; takes effect after a restart"));
        }
    }

    if old.log.level != new.log.level {
        match (node.set_level)(&new.log.level) {
            Ok(()) => v.applied.push(format!("log.level: {}", new.log.level)),
            Err(e) => v.restart_needed.push(format!("log.level: {e}")),
        }
    }

    if old.health != new.health {
        if node
            .ep
            .set_health_config(startup::health_config(&new.health))
        {
            v.applied
                .push("health: new probe settings on every link".into());
        } else {
            v.restart_needed.push(
                "health: probing is off in this process; takes effect after a restart".into(),
            );
        }
    }

    for b in &new.discovery.bootstrap {
        if !old.discovery.bootstrap.contains(b) {
            node.ep.add_bootstrap(now, *b);
            v.applied.push(format!("discovery.bootstrap: {b} added"));
        }
    }
    if old
        .discovery
        .bootstrap
        .iter()
        .any(|b| !new.discovery.bootstrap.contains(b))
    {
        v.restart_needed
            .push("discovery.bootstrap: an address removed; takes effect after a restart".into());
    }

    peers(node, &loaded, now, &mut v);

    for (file, _, bytes) in loaded
        .bundles
        .iter()
        .filter(|(_, configured, _)| *configured)
    {
        match node.ep.apply_bundle(now, unix_nanos(), bytes) {
            Ok((kind, version)) => v.applied.push(format!(
                "policy.bundles: {} {kind} version {version} in force",
                file.display()
            )),
            Err(BundleError::NotNewer { .. }) => {}
            Err(e) => v
                .warnings
                .push(format!("policy.bundles: {}: {e}", file.display())),
        }
    }
    // What is in force: the new file, but for what needs a restart (a
    // later reload names it again, and `status` shows what runs).
    let mut effective = new;
    effective.listen = old.listen;
    effective.tun = old.tun;
    effective.admin = old.admin;
    effective.metrics = old.metrics;
    effective.log.format = old.log.format;
    effective.crypto = old.crypto;
    effective.ids = old.ids;
    effective.routing = old.routing;
    effective.admission = old.admission;
    effective.policy.state_dir = old.policy.state_dir;
    effective.discovery.dns_domain = old.discovery.dns_domain;
    if v.restart_needed.iter().any(|r| r.starts_with("log.level")) {
        effective.log.level = old.log.level;
    }
    if v.restart_needed.iter().any(|r| r.starts_with("health")) {
        effective.health = old.health;
    }
    if v.restart_needed.iter().any(|r| r.starts_with("node.")) {
        effective.node = old.node;
    }
    node.cfg = effective;
    Ok(v)
}

/// Configured peers: new ones added (and dialled), changed ones updated,
/// dropped ones made learned peers.
fn peers(node: &mut Node, loaded: &startup::Loaded, now: Instant, v: &mut ReloadView) {
    let keys: Vec<[u8; 32]> = loaded.peers.iter().map(|p| *p.cert.public_key()).collect();
    for p in &loaded.peers {
        let name = p.cert.name().to_string();
        let known = node.ep.peer_by_static(p.cert.public_key());
        let before = known.and_then(|id| node.ep.peer(id, now));
        let was_configured = node.configured.contains(p.cert.public_key());
        let added = node.ep.add_peer_certificate(
            now,
            unix_nanos(),
            &p.cert,
            p.endpoint,
            p.persistent_keepalive,
        );
        let id = match added {
            Ok(id) => id,
            Err(e) => {
                v.warnings.push(format!(
                    "peer '{name}': {e}; give each node its own address and name"
                ));
                continue;
            }
        };
        if !was_configured {
            v.applied.push(format!("peer '{name}' added"));
            if p.endpoint.is_some() && before.as_ref().is_none_or(|b| !b.has_session) {
                node.ep.initiate(now, unix_nanos(), id);
            }
        } else if before.is_some_and(|b| p.endpoint.is_some() && b.endpoint != p.endpoint) {
            v.applied.push(format!(
                "peer '{name}': endpoint {}",
                p.endpoint.map(|e| e.to_string()).unwrap_or_default()
            ));
        }
    }
    for key in node.configured.clone() {
        if keys.contains(&key) {
            continue;
        }
        if let Some(id) = node.ep.peer_by_static(&key) {
            let name = (node.ep.peer(id, now))
                .and_then(|p| p.name)
                .unwrap_or_else(|| format!("{:?}", proto::wire::NodeId::of(&key)));
            node.ep.unconfigure_peer(now, id);
            v.applied.push(format!(
                "peer '{name}' no longer configured (kept while its link is up, as a learned peer)"
            ));
        }
    }
    node.configured = keys;
}
