//! How peers come to exist without a `[[peer]]` entry: a bootstrap
//! address answers a key probe (`bootstrap.rs`) and becomes a kept peer,
//! and a member known only from the link state (`members.rs`) becomes a
//! learned peer when traffic or a name lookup asks for it.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::admission::Claimant;
use super::{bootstrap, cx, Endpoint, PeerId, Received, SWEEP_INTERVAL};
use crate::control::Lookup;
use crate::wire::NodeId;

impl Endpoint {
    /// Sets the local underlay addresses this node receives on (its
    /// listening address, or each interface address with the listening
    /// port when it listens on all): candidates its punches name beside
    /// the reflexive addresses neighbours observe.
    pub fn set_local_candidates(&mut self, addrs: Vec<SocketAddr>) {
        self.candidates.set_local(addrs);
    }

    /// Adds a bootstrap address: the member there is asked for its static
    /// key, then added as a peer by it (with that address) and handshaken
    /// with; asked again whenever that peer is gone. Any member will do:
    /// the rest of the mesh comes from its link-state sync.
    pub fn add_bootstrap(&mut self, now: Instant, addr: SocketAddr) {
        self.bootstraps.add(now, addr);
    }

    /// The bootstrap addresses, each with the peer that answered for it.
    pub fn bootstraps(&self) -> Vec<(SocketAddr, Option<PeerId>)> {
        self.bootstraps.list().collect()
    }

    /// A bootstrap address answered with its key: the peer by that key
    /// (added, kept like a configured one, with that address) and a
    /// handshake with it.
    pub(super) fn bootstrap_answered(&mut self, now: Instant, a: bootstrap::Answer) -> Received {
        if &a.static_public == self.local.identity.static_public() {
            self.bootstraps.answered(a.entry, None);
            return Received::Handshake;
        }
        let peer = match self.peers.by_static(&a.static_public) {
            Some(p) => {
                if self.peers[p].endpoint.is_none() {
                    self.peers.set_endpoint(p, a.addr);
                }
                p
            }
            None => self.insert_peer(a.static_public, Some(a.addr), None, false),
        };
        self.bootstraps.answered(a.entry, Some(peer));
        let p = &self.peers[peer];
        if !p.refused && p.session(now).is_none() && p.pending.is_none() {
            self.handshakes.initiate(cx!(self), now, peer);
        }
        Received::Handshake
    }

    /// The peer for overlay address `addr`: the one holding it, or a member
    /// known only from the mesh (its certificate came with its advert),
    /// added now as a learned peer by that certificate and reached through
    /// the routes until a handshake brings it up. `None` when no member
    /// holds `addr`, or when the one that does may not hold a session with
    /// us (`[admission]`, revoked, outside our enclaves, or its address or
    /// name held by another certificate). A stub that knows no member
    /// holding `addr` asks its relay (`lookup.rs`): a later call may find it.
    pub fn peer_for_address(&mut self, now: Instant, addr: IpAddr) -> Option<PeerId> {
        if let Some(p) = self.admission.owner(addr) {
            return Some(p);
        }
        let Some(node) = self.gossip.members().by_address(addr) else {
            self.look_up(now, Lookup::Address(addr));
            return None;
        };
        self.learn_member(now, node)
    }

    /// The overlay addresses of the member named `name` (this node, a
    /// peer, or a member known from the link state), read only: nothing is
    /// learned or dialled (a name lookup is not traffic). Exact name first,
    /// then as lowercase.
    pub fn addresses_named(&self, name: &str) -> Option<Vec<IpAddr>> {
        let lower = name.to_ascii_lowercase();
        let found = [name, lower.as_str()].into_iter().find_map(|n| {
            let own = self.local.identity.certificate();
            if own.name() == n {
                return Some(own.body().addresses.iter().map(|a| a.addr()).collect());
            }
            if let Some(p) = self.admission.named(n) {
                return Some(self.admission.held_by(p).0);
            }
            let node = self.gossip.members().by_name(n)?;
            let cert = self.gossip.members().get(&node)?;
            Some(cert.body().addresses.iter().map(|a| a.addr()).collect())
        });
        found
    }

    /// The certificate name of a member known from the link state (for
    /// showing node ids that are not peers by name).
    pub fn member_name(&self, node: NodeId) -> Option<String> {
        let cert = self.gossip.members().get(&node)?;
        Some(cert.name().to_string())
    }

    /// As [`Endpoint::peer_for_address`], by certificate name.
    pub fn peer_for_name(&mut self, now: Instant, name: &str) -> Option<PeerId> {
        if let Some(p) = self.admission.named(name) {
            return Some(p);
        }
        let Some(node) = self.gossip.members().by_name(name) else {
            self.look_up(now, Lookup::Name(name.to_string()));
            return None;
        };
        self.learn_member(now, node)
    }

    /// A member known from its advert becomes a learned peer, as if it had
    /// dialled us: the same admission, the same claims, the same sweep.
    pub(super) fn learn_member(&mut self, now: Instant, node: NodeId) -> Option<PeerId> {
        if node == self.local.node_id || self.peers.by_node(node).is_some() {
            return None;
        }
        let cert = self.gossip.members().get(&node)?.clone();
        let local = &self.local;
        if !local.config.accept_unknown_peers
            || self.admission.accepts_unconfigured(&cert).is_err()
            || (self.admission)
                .admissible(&*local.crypto, local.identity.certificate(), &cert)
                .is_err()
        {
            return None;
        }
        let key = *cert.public_key();
        let claimant = Claimant {
            key: &key,
            cert: &cert,
            configured: false,
        };
        self.admission
            .check_claims(&claimant, local.unix_secs())
            .ok()?;
        let peer = self.insert_peer(key, None, None, true);
        self.admission
            .record_claims(&*self.local.crypto, peer, &claimant);
        self.peers[peer].cert = Some((*cert).clone());
        self.sweep_at.get_or_insert(now + SWEEP_INTERVAL);
        self.out.stats.members_learned += 1;
        Some(peer)
    }
}
