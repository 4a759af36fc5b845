//! What `meshctl` shows, built from the endpoint's state: pure functions of
//! the endpoint and the agent's own bookkeeping, no I/O, so they are tested
//! without root or a network (the tests at the end run two endpoints in
//! memory).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use proto::bundle::{Bundle, BundleKind, Content};
use proto::cert::hex;
use proto::endpoint::{DropReason, Endpoint, Handover, PeerId, PeerInfo, Traversal};
use types::admin::{
    AccusationView, AdminResponse, AlertView, BootstrapView, HopView, PeerView, PolicyStatusView,
    RevokedView, RouteView, RoutingStatusView, SanctionView, StatusView,
};
use types::config::NodeConfig;

/// Names peers: by their certificate (from a handshake, or configured),
/// else by their key.
pub struct Directory<'a> {
    pub ep: &'a Endpoint,
    pub now: Instant,
}

impl Directory<'_> {
    /// A node's name: the peer's, else a member's from the link state,
    /// else its id (its certificate has not arrived).
    pub fn node_name(&self, peer: Option<PeerId>, id: proto::wire::NodeId) -> String {
        match peer {
            Some(p) => self.peer_name(p),
            None => self.ep.member_name(id).unwrap_or_else(|| id.to_string()),
        }
    }

    /// A peer's certificate name, or its key prefix before a handshake.
    pub fn peer_name(&self, peer: PeerId) -> String {
        match self.ep.peer(peer, self.now) {
            Some(p) => self.display_name(&p),
            None => format!("{peer:?}"),
        }
    }

    /// A peer's certificate name: from its handshake, else from the
    /// certificate configured for it (verified at start), else its key.
    pub fn display_name(&self, p: &PeerInfo) -> String {
        if let Some(c) = &p.cert {
            return c.name().to_string();
        }
        (p.name.clone()).unwrap_or_else(|| format!("({})", &hex(&p.static_public)[..16]))
    }

    /// "direct", or "via NAME" while the peer is reached through a relay.
    pub fn path_name(&self, info: Option<&PeerInfo>) -> String {
        match info.and_then(|p| p.via) {
            Some(r) => format!("via {}", self.peer_name(r)),
            None => "direct".into(),
        }
    }
}

/// What the agent counts itself, beside the endpoint.
pub struct AgentCounters {
    pub uptime_secs: u64,
    /// Packets from the TUN device to an address no peer has.
    pub no_route: u64,
    /// Packets the flow queues dropped: CoDel, overflow.
    pub queue_drops: [u64; 2],
    /// Drop reasons out of their normal range lately.
    pub unusual_drops: Vec<types::admin::UnusualDropView>,
}

/// `meshctl status`.
pub fn status(dir: &Directory<'_>, cfg: &NodeConfig, counters: &AgentCounters) -> StatusView {
    let ep = dir.ep;
    let id = ep.identity().certificate();
    let s = ep.stats();
    let peers = ep.peers(dir.now);
    let (candidates, varies, behind_nat) = ep.candidates(dir.now);
    let mut drops: BTreeMap<String, u64> = DropReason::ALL
        .iter()
        .filter(|r| s.drops(**r) > 0)
        .map(|r| (r.name().to_string(), s.drops(*r)))
        .collect();
    let agent = [
        ("no_route", counters.no_route),
        ("queue_codel", counters.queue_drops[0]),
        ("queue_full", counters.queue_drops[1]),
    ];
    for (reason, n) in agent.into_iter().filter(|(_, n)| *n > 0) {
        drops.insert(reason.into(), n);
    }
    StatusView {
        version: crate::VERSION.into(),
        name: id.name().into(),
        addresses: id.body().addresses.iter().map(|a| a.to_string()).collect(),
        segments: id.body().segments.clone(),
        ca_fingerprint: hex(&id.body().issuer),
        listen: cfg.listen.address.to_string(),
        tun: cfg.tun.name.clone(),
        uptime_secs: counters.uptime_secs,
        certificate_not_after: id.body().not_after,
        peers: peers.len(),
        sessions: peers.iter().filter(|p| p.has_session).count(),
        handshakes_completed: s.handshakes_completed,
        handshake_failures: s
            .handshake_failures
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        drops,
        unusual_drops: counters.unusual_drops.clone(),
        policy: policy_status(ep, dir.now),
        routing: RoutingStatusView {
            relay: cfg.routing.relay.relays() && !ep.no_transit(),
            role: if !cfg.routing.relay.relays() {
                "stub"
            } else if ep.no_transit() {
                "no-transit"
            } else {
                "relay"
            }
            .into(),
            adverts_held: ep.router().advert_count(),
            nodes_reachable: ep.router().reachable_count(),
            local_stalls: s.local_stalls,
            members_learned: s.members_learned,
            bootstrap: ep
                .bootstraps()
                .into_iter()
                .map(|(addr, peer)| BootstrapView {
                    address: addr.to_string(),
                    member: peer
                        .and_then(|p| dir.ep.peer(p, dir.now))
                        .map(|p| dir.display_name(&p)),
                })
                .collect(),
            candidates: candidates.iter().map(ToString::to_string).collect(),
            nat: match (behind_nat, varies) {
                (false, _) => "none",
                (true, false) => "endpoint-independent",
                (true, true) => "per-destination",
            }
            .into(),
        },
    }
}

/// The policy part of `meshctl status`.
pub fn policy_status(ep: &Endpoint, now: Instant) -> PolicyStatusView {
    let f = ep.filter();
    let st = f.stats();
    let mut denied = BTreeMap::new();
    for (d, dir) in ["out", "in"].iter().enumerate() {
        for (r, reason) in proto::filter::REASON_NAMES.iter().enumerate() {
            if st.denied[d][r] > 0 {
                denied.insert(format!("{dir}/{reason}"), st.denied[d][r]);
            }
        }
    }
    let revoked = match ep.bundle(BundleKind::Revocation).map(Bundle::content) {
        Some(Ok(Content::Revocation(l))) => l.entries.len(),
        _ => 0,
    };
    let offered = |kind| {
        (ep.newer_offered(kind))
            .map(|(v, since)| (v, now.saturating_duration_since(since).as_secs()))
    };
    PolicyStatusView {
        policy_version: ep.bundle(BundleKind::Policy).map(Bundle::version),
        fail_closed: ep.policy().is_some() && ep.bundle(BundleKind::Policy).is_none(),
        rules: ep.policy().map_or(0, |p| p.rules().len()),
        enclaves: ep
            .policy()
            .map(|p| p.enclaves().to_vec())
            .unwrap_or_default(),
        revocation_version: ep.bundle(BundleKind::Revocation).map(Bundle::version),
        revoked,
        refused_peers: ep.peers(now).iter().filter(|p| p.refused).count(),
        tracked_flows: f.flow_count(),
        denied,
        bundle_rejects: ep
            .stats()
            .bundle_rejects
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        newer_policy_offered: offered(BundleKind::Policy),
        newer_revocation_offered: offered(BundleKind::Revocation),
    }
}

/// `meshctl policy show`.
pub fn policy_show(ep: &Endpoint) -> AdminResponse {
    let b = ep.bundle(BundleKind::Policy);
    AdminResponse::Policy {
        version: b.map(Bundle::version),
        issued: b.map(|b| b.body().issued),
        signer: b.map(|b| match b.signer() {
            Some(Ok(c)) => c.name().to_string(),
            _ => "ca".to_string(),
        }),
        text: b.map(|b| String::from_utf8_lossy(&b.body().content).into_owned()),
    }
}

/// `meshctl revoke --list`.
pub fn revocations(ep: &Endpoint) -> AdminResponse {
    let b = ep.bundle(BundleKind::Revocation);
    let entries = match b.map(Bundle::content) {
        Some(Ok(Content::Revocation(l))) => l
            .entries
            .iter()
            .map(|e| RevokedView {
                fingerprint: hex(&e.fingerprint),
                name: e.name.clone(),
            })
            .collect(),
        _ => Vec::new(),
    };
    AdminResponse::Revocations {
        version: b.map(Bundle::version),
        entries,
    }
}

/// `meshctl alerts`.
pub fn alerts(dir: &Directory<'_>) -> AdminResponse {
    let own = dir.ep.node_id();
    let name = |id| match id == own {
        true => dir.ep.identity().certificate().name().to_string(),
        false => dir.node_name(dir.ep.peer_by_node(id), id),
    };
    let alerts = (dir.ep.alerts().into_iter())
        .map(|a| AlertView {
            age_secs: dir.now.saturating_duration_since(a.at).as_secs_f64(),
            peer: name(a.node),
            scenario: a.scenario.to_string(),
            response: a.response.name().to_string(),
            offence: a.offence,
            for_secs: a.until.map(|t| t.saturating_duration_since(a.at).as_secs()),
            accusers: a.accusers.iter().map(|id| name(*id)).collect(),
        })
        .collect();
    let accusations = (dir.ep.accusations(dir.now).into_iter())
        .map(
            |(accused, accuser, scenario, until, counts)| AccusationView {
                accused: name(accused),
                accuser: name(accuser),
                scenario,
                holds_secs: until.saturating_duration_since(dir.now).as_secs(),
                counts,
            },
        )
        .collect();
    let counts = (dir.ep.alert_counts().into_iter())
        .map(|((scenario, response), n)| (format!("{scenario}/{}", response.name()), n))
        .collect();
    AdminResponse::Alerts {
        mode: dir.ep.ids_mode().to_string(),
        alerts,
        counts,
        accusations,
        quorum: dir.ep.quorum(),
    }
}

/// `meshctl quarantine`: who is under a sanction (after `released`).
pub fn sanctioned(dir: &Directory<'_>, released: Option<String>) -> AdminResponse {
    let sanctioned = (dir.ep.sanctioned(dir.now).into_iter())
        .map(|s| SanctionView {
            peer: dir.node_name(dir.ep.peer_by_node(s.node), s.node),
            response: s.response.name().to_string(),
            remaining_secs: s.until.saturating_duration_since(dir.now).as_secs(),
            quarantines: s.quarantines,
            by: if s.by_quorum { "quorum" } else { "this-node" }.to_string(),
        })
        .collect();
    AdminResponse::Quarantine {
        released,
        sanctioned,
    }
}

/// `meshctl routes`.
pub fn routes(dir: &Directory<'_>) -> Vec<RouteView> {
    dir.ep
        .routes(dir.now)
        .into_iter()
        .map(|r| RouteView {
            destination: dir.node_name(r.dst_peer, r.dst),
            next_hop: dir.node_name(r.next_hop_peer, r.next_hop),
            metric_us: r.metric_us,
            hops: r.hops,
            age_secs: r.age.as_secs_f64(),
        })
        .collect()
}

/// `meshctl peers`; `last_rtt` holds each peer's last `meshctl ping` (ms).
pub fn peers(dir: &Directory<'_>, last_rtt: &HashMap<PeerId, f64>) -> Vec<PeerView> {
    let now = dir.now;
    dir.ep
        .peers(now)
        .into_iter()
        .map(|p| PeerView {
            name: dir.display_name(&p),
            addresses: p
                .cert
                .as_ref()
                .map(|c| c.body().addresses.iter().map(|a| a.to_string()).collect())
                .unwrap_or_default(),
            segments: (p.cert.as_ref())
                .map(|c| c.body().segments.clone())
                .unwrap_or_default(),
            endpoint: p.endpoint.map(|e| e.to_string()),
            handshake_age_secs: p
                .last_handshake
                .map(|t| now.saturating_duration_since(t).as_secs_f64()),
            // Every meshd session comes from the hybrid handshake; there is
            // no classical-only mode.
            hybrid_post_quantum: p.last_handshake.is_some(),
            cipher: p.suite.map(|s| s.name().to_string()),
            session: p.has_session,
            tx_bytes: p.stats.tx_bytes,
            rx_bytes: p.stats.rx_bytes,
            tx_packets: p.stats.tx_packets,
            rx_packets: p.stats.rx_packets,
            last_rtt_ms: last_rtt.get(&p.id).copied(),
            path: dir.path_name(Some(&p)),
            link: p.link.map(|l| if l.up { "up" } else { "down" }.to_string()),
            link_rtt_ms: p.link.and_then(|l| l.srtt).map(|d| d.as_secs_f64() * 1e3),
            link_jitter_ms: p.link.map(|l| l.jitter.as_secs_f64() * 1e3),
            link_loss: p.link.map(|l| l.loss),
            link_failures_10m: p.link.map(|l| l.recent_failures),
            path_mtu: p.link.and_then(|l| l.path_mtu),
            clock_offset_ms: p.clock_offset_ms,
            receiver_index: p.receiver_index,
            refused: p.refused,
            refused_because: p.refused.then(|| {
                let c = crypto::RealCrypto;
                let revoked =
                    (p.cert.as_ref()).is_some_and(|c2| dir.ep.is_revoked(&c2.fingerprint(&c)));
                if revoked { "revoked" } else { "enclave" }.to_string()
            }),
            certificate_not_after: p.cert.as_ref().map(|c| c.body().not_after),
            bundle_handover: match p.handover {
                Handover::None => None,
                Handover::Open {
                    delivered: false, ..
                } => Some("open".into()),
                Handover::Open {
                    delivered: true, ..
                }
                | Handover::Closed { delivered: true } => Some("delivered".into()),
                Handover::Closed { delivered: false } => Some("undelivered".into()),
            },
            relayed_because: match p.traversal {
                _ if p.endpoint_silent => Some(format!(
                    "{} does not answer",
                    p.endpoint
                        .map_or_else(|| "its address".to_string(), |e| e.to_string())
                )),
                Traversal::Punching { attempts } if p.via.is_some() || p.link.is_none() => {
                    Some(format!("punching (attempt {attempts})"))
                }
                Traversal::BothEndsVary => {
                    Some("both ends behind NATs that map per destination".into())
                }
                _ => None,
            },
        })
        .collect()
}

/// The hops of `meshctl trace`: each link's RTT and the running total.
pub fn trace_hops(dir: &Directory<'_>, peer: PeerId) -> Vec<HopView> {
    let mut cumulative = 0.0;
    dir.ep
        .trace(peer, dir.now)
        .into_iter()
        .map(|(node, rtt_us)| {
            let ms = f64::from(rtt_us) / 1e3;
            cumulative += ms;
            HopView {
                node: dir.node_name(dir.ep.peer_by_node(node), node),
                link_rtt_ms: ms,
                cumulative_ms: cumulative,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use crypto::RealCrypto;
    use proto::cert::{create_ca, NodeCertParams, OverlayAddr, TrustedCa};
    use proto::endpoint::{EndpointConfig, Received};
    use proto::handshake::Identity;
    use proto::provider::Crypto;
    use rand_core::SeedableRng;

    const UNIX: u64 = 1_800_000_000;

    fn identity(ca: &TrustedCa, ca_seed: &[u8; 32], name: &str, n: u8) -> Identity {
        let secret = [n; 32];
        let cert = ca
            .issue(
                &RealCrypto,
                ca_seed,
                NodeCertParams {
                    name: name.into(),
                    addresses: vec![OverlayAddr::V4([100, 64, 0, n], 10)],
                    segments: vec!["test".into()],
                    static_public_key: RealCrypto.x25519_public_key(&secret),
                    advert_key: proto::cert::advert_public_key(&RealCrypto, &secret),
                    not_before: UNIX - 60,
                    not_after: UNIX + 86_400,
                },
            )
            .expect("test certificate");
        Identity::new(&RealCrypto, cert, secret).expect("key matches")
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, n], 51820))
    }

    /// Everything `from` (at `src`) has to send, into `to`.
    fn deliver(from: &mut Endpoint, to: &mut Endpoint, now: Instant, unix: u64, src: SocketAddr) {
        while let Some(t) = from.poll_transmit() {
            let mut d = t.payload;
            let r = to.handle_datagram(now, unix, src, &mut d);
            assert!(!matches!(r, Received::Dropped(_)), "{r:?}");
        }
    }

    /// Two endpoints, `a` and `b`, of one CA, knowing nobody.
    fn lone() -> (Endpoint, Endpoint) {
        let ca_seed = [7u8; 32];
        let ca_cert =
            create_ca(&RealCrypto, "views-ca", &ca_seed, UNIX - 60, UNIX + 86_400).expect("CA");
        let ca = TrustedCa::new(&RealCrypto, ca_cert, UNIX).expect("CA verifies");
        let (ia, ib) = (
            identity(&ca, &ca_seed, "a", 1),
            identity(&ca, &ca_seed, "b", 2),
        );
        let rng = |s| Box::new(rand_chacha::ChaCha20Rng::seed_from_u64(s));
        let c: Arc<dyn Crypto> = Arc::new(RealCrypto);
        let a = Endpoint::new(c.clone(), ca.clone(), ia, EndpointConfig::default(), rng(1));
        let b = Endpoint::new(c, ca, ib, EndpointConfig::default(), rng(2));
        (a, b)
    }

    /// Two endpoints, `a` knowing `b` by key and address, after a
    /// handshake and a few seconds of probing in memory.
    fn pair() -> (Endpoint, Endpoint, PeerId, Instant) {
        let (mut a, mut b) = lone();
        let b_pub = *b.identity().static_public();
        let pb = a.add_peer(b_pub, Some(addr(2)), None);
        let t0 = Instant::now();
        a.initiate(t0, UNIX * 1_000_000_000, pb);
        let mut now = t0;
        for _ in 0..200 {
            now += Duration::from_millis(10);
            let unix = UNIX * 1_000_000_000 + (now - t0).as_nanos() as u64;
            deliver(&mut a, &mut b, now, unix, addr(1));
            deliver(&mut b, &mut a, now, unix, addr(2));
            a.handle_timeout(now, unix);
            b.handle_timeout(now, unix);
        }
        (a, b, pb, now)
    }

    #[test]
    fn peers_and_status_show_the_session_the_link_and_the_cipher() {
        let (a, _b, pb, now) = pair();
        let dir = Directory { ep: &a, now };
        let rtt = HashMap::from([(pb, 1.5)]);
        let v = peers(&dir, &rtt);
        assert_eq!(v.len(), 1);
        let p = &v[0];
        assert_eq!(p.name, "b", "named by the certificate from the handshake");
        assert_eq!(p.addresses, ["100.64.0.2/10"]);
        assert_eq!(p.endpoint.as_deref(), Some("198.18.0.2:51820"));
        assert!(p.session && p.hybrid_post_quantum);
        assert!(p.cipher.is_some());
        assert_eq!(p.path, "direct");
        assert_eq!(p.link.as_deref(), Some("up"));
        assert!(p.link_rtt_ms.is_some());
        assert_eq!(p.last_rtt_ms, Some(1.5));
        assert!(p.rx_packets > 0 && p.tx_packets > 0);

        let cfg: NodeConfig = toml_config();
        let s = status(
            &dir,
            &cfg,
            &AgentCounters {
                uptime_secs: 3,
                no_route: 2,
                queue_drops: [0, 1],
                unusual_drops: Vec::new(),
            },
        );
        assert_eq!((s.name.as_str(), s.peers, s.sessions), ("a", 1, 1));
        assert_eq!(s.handshakes_completed, 1);
        assert_eq!(s.drops.get("no_route"), Some(&2));
        assert_eq!(s.drops.get("queue_full"), Some(&1));
        assert_eq!(s.drops.get("queue_codel"), None);
        assert_eq!(s.policy.policy_version, None);
        assert!(s.routing.relay);
        let hops = trace_hops(&dir, pb);
        assert_eq!(hops.len(), 1);
        assert_eq!(hops[0].node, "b");
        assert!(routes(&dir).iter().all(|r| r.destination == "b"));
    }

    #[test]
    fn a_configured_peer_is_named_before_its_handshake_and_unknown_keys_by_prefix() {
        let (a, b, pb, now) = pair();
        let dir = Directory { ep: &a, now };
        assert_eq!(
            dir.peer_name(pb),
            "b",
            "by the certificate from the handshake"
        );
        // A configured peer without a handshake: the configured name; a
        // peer known by key only: its key.
        let (mut fresh, _) = lone();
        let cert = b.identity().certificate().clone();
        let c = fresh
            .add_peer_certificate(now, UNIX * 1_000_000_000, &cert, None, None)
            .expect("b's certificate");
        let unknown = fresh.add_peer([9; 32], None, None);
        let dir = Directory { ep: &fresh, now };
        assert_eq!(dir.peer_name(c), "b");
        assert_eq!(dir.peer_name(unknown), format!("({})", "09".repeat(8)));
        assert_eq!(dir.path_name(None), "direct");
    }

    #[test]
    fn policy_views_are_empty_without_bundles() {
        let (a, ..) = pair();
        let v = policy_status(&a, Instant::now());
        assert_eq!((v.policy_version, v.rules, v.revoked), (None, 0, 0));
        assert!(matches!(
            policy_show(&a),
            AdminResponse::Policy { version: None, .. }
        ));
        assert!(matches!(
            revocations(&a),
            AdminResponse::Revocations { version: None, entries } if entries.is_empty()
        ));
    }

    fn toml_config() -> NodeConfig {
        NodeConfig::parse(
            "[node]\ncertificate = \"a.crt\"\nprivate-key = \"a.key\"\nca-certificate = \"ca.crt\"\n[listen]\naddress = \"198.18.0.1:51820\"\n",
        )
        .expect("minimal config")
    }

    #[test]
    fn certificates_near_their_end_are_warned_about_with_the_fix() {
        let (a, _b, _pb, now) = pair();
        // Both certificates end a day after UNIX.
        let w = crate::reload::expiry_warnings(&a, now, UNIX, 30);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("this node's certificate expires") && w[0].contains("in 1 days"));
        assert!(w[0].contains("meshctl cert renew"), "{w:?}");
        assert!(w[1].contains("peer 'b'"), "{w:?}");
        let after = crate::reload::expiry_warnings(&a, now, UNIX + 2 * 86_400, 30);
        assert!(after.iter().all(|x| x.contains("expired at")), "{after:?}");
        let long_before = UNIX - 30 * 86_400;
        assert!(crate::reload::expiry_warnings(&a, now, long_before, 30).is_empty());
        assert!(
            crate::reload::expiry_warnings(&a, now, UNIX, 0).is_empty(),
            "0: never"
        );
    }
}
