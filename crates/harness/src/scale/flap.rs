//! What one flap of a link costs the mesh: the link is cut long enough for
//! its ends to see it down, then healed, and every node's control bytes
//! are counted over [`FLAP_WINDOW`] from the cut: the withdrawal, the link
//! back in hold-down, the hold-down's end, and its ends' database syncs.
//! On a lossy underlay a link now and then looks down for a moment (four
//! probes lost in a row), so in a large mesh some link is always flapping:
//! what each flap costs the busiest relay is part of its gossip budget.

use std::collections::BTreeMap;
use std::time::Duration;

use proto::endpoint::Event;
use serde::{Deserialize, Serialize};

use super::wire_bytes;
use crate::sim::Sim;

/// A link is cut this long: idle probing finds it down in under a second.
pub const FLAP_OUTAGE: Duration = Duration::from_secs(3);
/// Control bytes are counted this long from the cut: past the link's
/// return and its hold-down.
pub const FLAP_WINDOW: Duration = Duration::from_secs(20);

/// The control traffic of one flap.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FlapCost {
    /// The link's ends (node indices, relays first).
    pub link: (usize, usize),
    /// Whether an end saw the link go down.
    pub seen_down: bool,
    /// Whether both ends saw it up again by the window's end.
    pub up_again: bool,
    /// Control wire bytes sent in the window (everything but probes): the
    /// busiest relay's...
    pub relay_bytes_max: f64,
    /// ...which relay that was...
    pub busiest_relay: usize,
    /// ...the mean over relays...
    pub relay_bytes_mean: f64,
    /// ...and the busiest stub's (0 without stubs).
    pub stub_bytes_max: f64,
    /// The busiest relay's control plaintext bytes by message kind...
    pub busiest_by_kind: BTreeMap<String, u64>,
    /// ...the adverts it sent...
    pub busiest_adverts_sent: u64,
    /// ...and how many of those were sent again.
    pub busiest_adverts_retransmitted: u64,
}

/// Cuts the link between `u` and `v` for [`FLAP_OUTAGE`], heals it, and
/// counts every node's control bytes over [`FLAP_WINDOW`] from the cut.
pub fn flap(sim: &mut Sim, relays: usize, u: usize, v: usize) -> FlapCost {
    let sent = |sim: &Sim| -> Vec<f64> {
        (sim.nodes.iter())
            .map(|n| {
                let s = n.ep.stats();
                wire_bytes(s.control_bytes_sent, s.control_messages_sent)
            })
            .collect()
    };
    let before = sent(sim);
    let stats: Vec<_> = (0..relays)
        .map(|i| sim.nodes[i].ep.stats().clone())
        .collect();
    let cut_at = sim.now;
    sim.cut(u, v);
    sim.run_for(FLAP_OUTAGE);
    sim.heal(u, v);
    sim.run_for(FLAP_WINDOW - FLAP_OUTAGE);
    let seen_down = [u, v].iter().any(|&n| {
        (sim.nodes[n].events.iter())
            .any(|(t, e)| *t >= cut_at && matches!(e, Event::LinkChanged { up: false, .. }))
    });
    let up = |a: usize, b: usize| {
        let p = sim.nodes[a].peers[&b];
        (sim.nodes[a].ep.peer(p, sim.now)).is_some_and(|i| i.link.is_some_and(|l| l.up))
    };
    let up_again = up(u, v) && up(v, u);
    let bytes: Vec<f64> = (sent(sim).iter().zip(&before))
        .map(|(a, b)| a - b)
        .collect();
    let (relay_bytes, stub_bytes) = bytes.split_at(relays);
    let (busiest_relay, relay_bytes_max) = (relay_bytes.iter().copied().enumerate())
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0));
    let (now, then) = (sim.nodes[busiest_relay].ep.stats(), &stats[busiest_relay]);
    let busiest_by_kind = (now.control_bytes_by_kind.iter())
        .map(|(k, n)| {
            let b = then.control_bytes_by_kind.get(k).copied().unwrap_or(0);
            (k.to_string(), n - b)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    FlapCost {
        link: (u, v),
        seen_down,
        up_again,
        relay_bytes_max,
        busiest_relay,
        relay_bytes_mean: relay_bytes.iter().sum::<f64>() / relays.max(1) as f64,
        stub_bytes_max: stub_bytes.iter().copied().fold(0.0, f64::max),
        busiest_by_kind,
        busiest_adverts_sent: now.adverts_sent - then.adverts_sent,
        busiest_adverts_retransmitted: now.adverts_retransmitted - then.adverts_retransmitted,
    }
}
