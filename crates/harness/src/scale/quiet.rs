//! The quiet window's busiest relay, by message kind and receiver: where a
//! relay's control traffic goes when nothing happens.

use std::collections::{BTreeMap, HashMap};

use proto::endpoint::Stats;
use proto::wire::NodeId;
use serde::{Deserialize, Serialize};

use super::QUIET_WINDOW;
use crate::sim::Sim;

/// The quiet window's busiest relay: its control rate by message kind and
/// the peers it sent most to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QuietSender {
    /// Its index (relays first).
    pub node: usize,
    /// Control plaintext bytes per second, by message kind.
    pub by_kind: BTreeMap<String, f64>,
    /// Its largest receivers in the window: node index, whether that node
    /// relays, plaintext bytes per second (probes and control alike).
    pub top_receivers: Vec<(usize, bool, f64)>,
    /// The same receivers' direct links at the window's end: probed at all,
    /// up, failures in the last minute.
    #[serde(default)]
    pub top_receiver_links: Vec<(bool, bool, usize)>,
    /// Peers it sent anything but probes to in the window (more than a
    /// probe's bytes per second).
    #[serde(default)]
    pub receivers: usize,
    /// Adverts it sent in the window.
    #[serde(default)]
    pub adverts_sent: u64,
    /// How many of those were retransmissions.
    #[serde(default)]
    pub adverts_retransmitted: u64,
    /// Route changes it made in the window.
    #[serde(default)]
    pub route_changes: u64,
    /// Every direct link any node saw go down in the window, as (node,
    /// neighbour) indices: a link's flap is what sets a relay's adverts
    /// and syncs going.
    #[serde(default)]
    pub links_down: Vec<(usize, usize)>,
    /// The revoked node's neighbours (they refuse it; it keeps asking).
    #[serde(default)]
    pub victim_neighbours: Vec<usize>,
}

/// What every relay had sent to each of its peers, and its counters, when
/// the quiet window opens.
pub(super) struct QuietStart {
    at: std::time::Instant,
    sent: Vec<HashMap<NodeId, u64>>,
    stats: Vec<Stats>,
}

fn sent_to(sim: &Sim, i: usize) -> HashMap<NodeId, u64> {
    (sim.nodes[i].ep.peers(sim.now).iter())
        .map(|p| (p.node_id, p.stats.tx_bytes))
        .collect()
}

impl QuietStart {
    pub(super) fn take(sim: &Sim, relays: usize) -> Self {
        Self {
            at: sim.now,
            sent: (0..relays).map(|i| sent_to(sim, i)).collect(),
            stats: (0..relays)
                .map(|i| sim.nodes[i].ep.stats().clone())
                .collect(),
        }
    }
}

/// What relay `i` sent in the quiet window that just closed: its per-kind
/// counters and receivers against `start`.
pub(super) fn quiet_sender(sim: &Sim, relays: usize, i: usize, start: &QuietStart) -> QuietSender {
    let secs = QUIET_WINDOW.as_secs_f64();
    let (now, before) = (sim.nodes[i].ep.stats(), &start.stats[i]);
    let by_kind = (now.control_bytes_by_kind.iter())
        .map(|(k, n)| {
            let b = before.control_bytes_by_kind.get(k).copied().unwrap_or(0);
            (*k, n - b)
        })
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.to_string(), n as f64 / secs))
        .collect();
    let peers = sim.nodes[i].ep.peers(sim.now);
    let mut rates: Vec<(NodeId, f64)> = (peers.iter())
        .map(|p| {
            let b = start.sent[i].get(&p.node_id).copied().unwrap_or(0);
            (p.node_id, (p.stats.tx_bytes - b) as f64 / secs)
        })
        .collect();
    rates.sort_by(|a, b| b.1.total_cmp(&a.1));
    // An idle probe each way is ~40 wire bytes a second at most.
    let receivers = rates.iter().filter(|(_, r)| *r > 40.0).count();
    let index: HashMap<NodeId, usize> = (sim.nodes.iter().enumerate())
        .map(|(n, node)| (node.ep.node_id(), n))
        .collect();
    let (mut top_receivers, mut top_receiver_links) = (Vec::new(), Vec::new());
    for (id, rate) in rates.into_iter().take(5) {
        let Some(&n) = index.get(&id) else { continue };
        top_receivers.push((n, n < relays, rate));
        let link = peers
            .iter()
            .find(|p| p.node_id == id)
            .and_then(|p| p.link.as_ref());
        top_receiver_links
            .push(link.map_or((false, false, 0), |l| (true, l.up, l.recent_failures)));
    }
    let mut links_down = Vec::new();
    for (n, node) in sim.nodes.iter().enumerate() {
        for (t, e) in &node.events {
            if let proto::endpoint::Event::LinkChanged { peer, up: false } = e {
                if *t >= start.at {
                    let k = node.peers.iter().find(|(_, p)| *p == peer);
                    links_down.extend(k.map(|(k, _)| (n, *k)));
                }
            }
        }
    }
    QuietSender {
        node: i,
        links_down,
        victim_neighbours: Vec::new(),
        by_kind,
        top_receivers,
        top_receiver_links,
        receivers,
        adverts_sent: now.adverts_sent - before.adverts_sent,
        adverts_retransmitted: now.adverts_retransmitted - before.adverts_retransmitted,
        route_changes: now.route_changes - before.route_changes,
    }
}
