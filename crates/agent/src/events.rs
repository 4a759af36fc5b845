//! What the endpoint reports, acted on: transmits moved to the outbox,
//! events logged, bundles put in force saved to the state directory.

use std::time::Instant;

use proto::bundle::BundleKind;
use proto::endpoint::Event;
use tracing::{debug, info, warn};

use crate::node::Node;
use crate::views::Directory;
use crate::worker::Outbox;

impl Node {
    /// Moves handshake and control datagrams to `out`; logs events; wakes
    /// the checks thread if signature checks were queued.
    pub fn drain(&mut self, out: &mut Outbox) {
        while let Some(t) = self.ep.poll_transmit() {
            out.push_owned(t.dst, t.payload);
        }
        while let Some(ev) = self.ep.poll_event() {
            self.on_event(ev);
        }
        if !self.checks_nudged && self.ep.checks_pending() > 0 {
            self.checks_nudged = true;
            // If the checks thread is gone, so is meshd.
            let _ = self.checks.send(());
        }
    }

    fn on_event(&mut self, ev: Event) {
        let dir = Directory {
            ep: &self.ep,
            now: Instant::now(),
        };
        match ev {
            Event::HandshakeCompleted {
                peer,
                name,
                initiator,
            } => {
                let info = self.ep.peer(peer, Instant::now());
                let cipher = info
                    .as_ref()
                    .and_then(|p| p.suite)
                    .map_or("-", |s| s.name());
                info!(peer = %name, initiator, cipher, "hybrid post-quantum handshake completed");
            }
            Event::HandshakeFailed { src, error, .. } => {
                warn!(%src, %error, "handshake failed")
            }
            Event::PeerRetired { peer } => {
                debug!(?peer, "peer unreachable for 60 s: retired")
            }
            Event::PeerRemoved { peer, name } => {
                let name = name.unwrap_or_else(|| format!("{peer:?}"));
                info!(peer = %name, "learned peer removed: unreachable, or without a session, for 60 s; learned again from its next handshake");
                self.last_rtt.remove(&peer);
            }
            Event::PeerRefused { peer, error } => {
                if matches!(error, proto::handshake::HandshakeError::OutsideEnclave) {
                    warn!(peer = %dir.peer_name(peer), %error, "peer refused; a session it had stays open for bundle transfers alone, for up to 5 s");
                } else {
                    warn!(peer = %dir.peer_name(peer), %error, "sessions torn down; peer refused");
                }
            }
            Event::HandoverEnded { peer, delivered } => {
                let name = dir.peer_name(peer);
                if delivered {
                    info!(peer = %name, "handover over: the peer took the bundles in force; session closed");
                } else {
                    warn!(peer = %name, "handover over: the peer did not take the bundles in force; it keeps its old policy until another node hands them over (push them to it)");
                }
            }
            Event::BundleApplied { kind, version } => {
                info!(%kind, version, "bundle in force");
                self.save_bundle(kind);
            }
            Event::BundleRejected { kind, error } => {
                warn!(%kind, %error, "bundle from gossip refused; the one in force stays")
            }
            Event::EndpointSilent { peer, endpoint } => {
                warn!(
                    peer = %dir.peer_name(peer),
                    %endpoint,
                    "handshakes to the peer's address go unanswered: traffic goes through a relay meanwhile, and a direct path is looked for"
                );
            }
            Event::HandshakeTimedOut { peer, dropped } => {
                warn!(peer = %dir.peer_name(peer), dropped, "handshake timed out")
            }
            Event::Alert { peer, alert } => {
                let until = alert
                    .until
                    .map(|t| t.saturating_duration_since(alert.at).as_secs());
                let accusers: Vec<String> = (alert.accusers.iter())
                    .map(|id| dir.node_name(dir.ep.peer_by_node(*id), *id))
                    .collect();
                warn!(
                    peer = %dir.node_name(peer, alert.node),
                    accusers = %accusers.join(","),
                    scenario = alert.scenario,
                    response = alert.response.name(),
                    offence = alert.offence,
                    for_secs = until,
                    "intrusion detection: {} against the peer (meshctl alerts; meshctl quarantine --release NAME lifts it)",
                    alert.response.name()
                );
            }
            Event::Accusation {
                accuser,
                accused,
                scenario,
                withdrawn,
            } => {
                let by = dir.node_name(dir.ep.peer_by_node(accuser), accuser);
                let of = dir.node_name(dir.ep.peer_by_node(accused), accused);
                if accused == dir.ep.node_id() {
                    warn!(accuser = %by, %scenario, withdrawn, "intrusion detection: a member accuses this node (meshctl alerts lists the accusations held; check what this node sends)");
                } else {
                    info!(accuser = %by, accused = %of, %scenario, withdrawn, "intrusion detection: accusation received (meshctl alerts)");
                }
            }
            Event::PathMtuChanged { peer, mtu } => {
                info!(peer = %dir.peer_name(peer), mtu, "path MTU of the direct link (probed)");
            }
            Event::LinkChanged { peer, up } => {
                let name = dir.peer_name(peer);
                if up {
                    info!(peer = %name, "direct link up");
                } else {
                    warn!(peer = %name, "direct link down");
                }
            }
            Event::PathChanged { peer, via } => {
                let name = dir.peer_name(peer);
                match via {
                    Some(r) => {
                        warn!(peer = %name, via = %dir.peer_name(r), "path changed: relayed")
                    }
                    None => info!(peer = %name, "path changed: direct"),
                }
            }
            other => debug!(?other, "event"),
        }
    }

    /// Saves the bundle of `kind` in force to the state directory (write and
    /// rename, so a crash never leaves half a file).
    fn save_bundle(&self, kind: BundleKind) {
        let dir = &self.cfg.policy.state_dir;
        let Some(b) = self.ep.bundle(kind) else {
            return;
        };
        let path = crate::startup::bundle_path(dir, kind);
        let tmp = path.with_extension("bundle.tmp");
        let r = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, b.to_armor()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = r {
            warn!(file = %path.display(), "cannot save bundle: {e} (policy.state-dir must be writable)");
        }
    }
}
