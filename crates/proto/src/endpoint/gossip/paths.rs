//! Routes applied to the peers: each computation's changes move peers onto
//! relays and back (`Peer::via`), and a stub picks the relay it sends
//! through when its routes know no way.

use std::time::Instant;

use crate::control::Advert;
use crate::route::OwnLink;
use crate::wire::NodeId;

use super::super::api::Event;
use super::super::net::Cx;
use super::super::news;
use super::super::peer::Peers;
use super::Gossip;

impl Gossip {
    /// A stub's default relay: the relaying neighbour with the best working
    /// link, first one not suspected (`route::suspicion`: another relay
    /// stopped listing it), then one that lists a link to another relay
    /// (one whose backbone neighbours are all gone reaches nobody else),
    /// then one out of its hold-down (a relay that just started, or whose
    /// link just came back, has not relearnt the mesh yet), then the
    /// nearest.
    fn default_relay(&self, own: &[OwnLink]) -> Option<NodeId> {
        let router = &self.router;
        let backbone = |a: &Advert| {
            (a.links.iter()).any(|e| router.advert(e.neighbor).is_some_and(|b| !b.stub))
        };
        own.iter()
            .filter_map(|l| {
                let a = router.advert(l.neighbor)?;
                (l.up && !a.stub && !a.no_transit).then_some((l, backbone(a)))
            })
            .min_by_key(|(l, backbone)| {
                let suspected = router.is_suspected(l.neighbor);
                (suspected, !backbone, !l.settled, l.rtt_us, l.neighbor)
            })
            .map(|(l, _)| l.neighbor)
    }

    /// Recomputes routes (with `always` false, only if the router's inputs
    /// changed: the periodic pass) and moves peers onto their new paths.
    pub fn recompute_routes(&mut self, cx: &mut Cx<'_>, now: Instant, always: bool) {
        let mut own = Self::own_links(cx.peers, now);
        if !cx.local.config.relay {
            cx.peers.default_relay = self.default_relay(&own).and_then(|n| cx.peers.by_node(n));
        }
        if let Some(a) = &self.last_advert {
            news::cost_as_advertised(&mut own, a);
        }
        let changes = if always {
            self.router.recompute(now, &own)
        } else {
            self.router.recompute_if_changed(now, &own)
        };
        for c in changes {
            let Some(peer) = cx.peers.by_node(c.dst) else {
                continue;
            };
            if cx.peers[peer].routed != c.new.is_some() {
                // Read by the path only, never by a timer.
                cx.peers.quiet_mut(peer).routed = c.new.is_some();
            }
            let hop = c
                .new
                .filter(|nh| *nh != c.dst)
                .and_then(|nh| cx.peers.by_node(nh));
            // Read by the path only, never by a timer.
            cx.peers.quiet_mut(peer).route_hop = hop;
            let p = &cx.peers[peer];
            // A peer with a direct address whose link is not probed yet (its
            // session is still coming up) stays direct: there is no evidence
            // the direct path is worse, and moving it would flap at startup.
            // One whose address is silent takes the route.
            let unprobed = p.endpoint.is_some() && p.health.is_none() && !p.silent;
            let via = match c.new {
                Some(nh) if nh != c.dst && !unprobed => cx.peers.by_node(nh),
                _ => None,
            };
            if p.via == via {
                continue;
            }
            if p.via.is_none() {
                cx.out.stats.failovers += 1;
            }
            cx.peers[peer].via = via;
            cx.out.stats.route_changes += 1;
            cx.out.event(Event::PathChanged { peer, via });
        }
    }

    /// Debug builds: every peer's `routed` flag agrees with the router.
    pub fn check_routed(&self, peers: &Peers) {
        if cfg!(debug_assertions) {
            for p in peers.iter() {
                assert_eq!(
                    p.routed,
                    self.router.route(p.node_id).is_some(),
                    "peer {}: routed flag out of step with the route table",
                    p.node_id
                );
            }
        }
    }
}
