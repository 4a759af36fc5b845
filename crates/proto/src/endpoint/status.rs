//! Read-only views of an endpoint, for status output, metrics and tests.

use std::time::{Duration, Instant};

use crate::handshake::Identity;
use crate::health::{LinkHealth, LinkStatus};
use crate::pmtu::PathMtu;
use crate::route::Router;
use crate::session::Session;
use crate::wire::NodeId;

use super::api::{LinkInfo, PeerId, PeerInfo, RouteInfo};
use super::gossip::Gossip;
use super::stats::Stats;
use super::Endpoint;

impl Endpoint {
    /// The peer with this static key.
    pub fn peer_by_static(&self, static_public: &[u8; 32]) -> Option<PeerId> {
        self.peers.by_static(static_public)
    }

    /// The peer holding overlay address `addr` (its certificate's, first
    /// come or configured; see `admission.rs`).
    pub fn peer_by_address(&self, addr: std::net::IpAddr) -> Option<PeerId> {
        self.admission.owner(addr)
    }

    /// The peer holding certificate name `name`.
    pub fn peer_by_name(&self, name: &str) -> Option<PeerId> {
        self.admission.named(name)
    }

    /// The peer with this wire id.
    pub fn peer_by_node(&self, id: NodeId) -> Option<PeerId> {
        self.peers.by_node(id)
    }

    /// Status of every peer.
    pub fn peers(&self, now: Instant) -> Vec<PeerInfo> {
        self.peers
            .ids()
            .filter_map(|id| self.peer(id, now))
            .collect()
    }

    /// This node's candidate endpoints, as its punches name them
    /// (reflexive first), whether a NAT maps it to a different port per
    /// destination, and whether it is behind a NAT at all (a neighbour saw
    /// an address that is none of the local ones).
    pub fn candidates(&self, now: Instant) -> (Vec<std::net::SocketAddr>, bool, bool) {
        let c = &self.candidates;
        (c.list(now), c.varies(now), c.behind_nat(now))
    }

    /// Adverts (and sync requests) sent to neighbours and not acknowledged
    /// yet.
    pub fn adverts_unacked(&self) -> usize {
        self.gossip.unacked_count()
    }

    /// Whether our adverts refuse transit: we relay, but a neighbour sees
    /// us behind a NAT (and `relay_behind_nat` is off).
    pub fn no_transit(&self) -> bool {
        self.local.config.relay && self.gossip.no_transit()
    }

    /// Status of one peer.
    pub fn peer(&self, id: PeerId, now: Instant) -> Option<PeerInfo> {
        let id = self.peers.checked(id)?;
        let p = &self.peers[id];
        let (addresses, name) = self.admission.held_by(id);
        Some(PeerInfo {
            id,
            static_public: p.static_public,
            endpoint: p.endpoint,
            cert: p.cert.clone(),
            name,
            addresses,
            last_handshake: p.timers.last_handshake(),
            has_session: p.session(now).is_some(),
            stats: p.stats,
            node_id: p.node_id,
            via: p.via.or_else(|| self.peers.default_route(id)),
            link: p.health.as_ref().map(|h| LinkInfo {
                up: h.status() == LinkStatus::Up,
                srtt: h.srtt(),
                last_rtt: h.last_rtt(),
                jitter: h.jitter(),
                loss: h.loss(),
                path_mtu: p.pmtu.as_ref().map(PathMtu::mtu),
                pmtu_searching: p.pmtu.as_ref().is_some_and(PathMtu::searching),
                recent_failures: h.failures_within_window(now),
            }),
            refused: p.refused,
            handover: p.handover,
            traversal: super::traversal::state(p, &self.candidates, now),
            endpoint_silent: p.silent,
            clock_offset_ms: p.clock_offset_ms,
            suite: p
                .sessions
                .get(super::peer::Slot::Current)
                .map(Session::suite),
            receiver_index: p
                .sessions
                .get(super::peer::Slot::Current)
                .map(Session::local_index),
        })
    }

    /// How often this node re-sends its own advert when nothing changes
    /// (see `Gossip::advert_refresh`): `advert_interval`, stretched to 2 s
    /// per node known.
    pub fn advert_refresh(&self) -> Duration {
        self.gossip
            .advert_refresh(self.local.config.advert_interval)
    }

    /// The link-state database and route table (read-only).
    pub fn router(&self) -> &Router {
        self.gossip.router()
    }

    /// This node's wire id.
    pub fn node_id(&self) -> NodeId {
        self.local.node_id
    }

    /// A stub's default relay: the relaying neighbour it sends through
    /// when its routes know no way (`None` on a relay, or with no relaying
    /// link up).
    pub fn default_relay(&self) -> Option<NodeId> {
        (self.peers.default_relay).map(|p| self.peers[p].node_id)
    }

    /// The route table, sorted by destination.
    pub fn routes(&self, now: Instant) -> Vec<RouteInfo> {
        let mut v: Vec<RouteInfo> = self
            .gossip
            .router()
            .routes()
            .map(|(dst, r)| RouteInfo {
                dst: *dst,
                dst_peer: self.peers.by_node(*dst),
                next_hop: r.next_hop,
                next_hop_peer: self.peers.by_node(r.next_hop),
                metric_us: r.metric_us,
                hops: r.hops,
                age: now.saturating_duration_since(r.since),
            })
            .collect();
        v.sort_by_key(|r| r.dst);
        v
    }

    /// The path to `peer` hop by hop, with each link's RTT in µs (see
    /// [`Router::trace`]). A peer with no route is listed as one direct hop;
    /// an unknown peer id gives an empty path.
    pub fn trace(&self, peer: PeerId, now: Instant) -> Vec<(NodeId, u32)> {
        let Some(peer) = self.peers.checked(peer) else {
            return Vec::new();
        };
        let p = &self.peers[peer];
        let own = Gossip::own_links(&self.peers, now);
        let hops = self.gossip.router().trace(&own, p.node_id);
        if hops.is_empty() {
            let rtt = p
                .health
                .as_ref()
                .and_then(LinkHealth::srtt)
                .map_or(0, |d| d.as_micros() as u32);
            return vec![(p.node_id, rtt)];
        }
        hops
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.out.stats
    }

    /// This node's identity.
    pub fn identity(&self) -> &Identity {
        &self.local.identity
    }

    /// Partial handshake messages held for reassembly.
    pub fn reassembly_len(&self) -> usize {
        self.handshakes.reassembly_len()
    }
}
