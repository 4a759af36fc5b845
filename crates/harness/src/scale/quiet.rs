//! The quiet window's busiest relay, by message kind and receiver: where a
//! relay's control traffic goes when nothing happens.

use std::collections::{BTreeMap, HashMap};

use proto::wire::NodeId;
use serde::{Deserialize, Serialize};

use super::QUIET_WINDOW;
use crate::sim::Sim;
use std::time::Duration;

/// The quiet window's busiest relay: its control rate by message kind and
/// the peers it sent most to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QuietSender {
    /// Its index (relays first).
    pub node: usize,
    /// Control plaintext bytes per second, by message kind.
    pub by_kind: BTreeMap<String, f64>,
    /// Its largest receivers in a further [`QUIET_TOP_WINDOW`]: node index,
    /// whether that node relays, plaintext bytes per second (probes and
    /// control alike).
    pub top_receivers: Vec<(usize, bool, f64)>,
}

/// How long the quiet window's busiest relay is watched per receiver.
pub const QUIET_TOP_WINDOW: Duration = Duration::from_secs(5);

/// What node `i` sent in the quiet window (its per-kind counters against
/// `before`), and whom it sends most to over a further
/// [`QUIET_TOP_WINDOW`].
pub(super) fn quiet_sender(
    sim: &mut Sim,
    relays: usize,
    i: usize,
    before: &HashMap<&'static str, u64>,
) -> QuietSender {
    let secs = QUIET_WINDOW.as_secs_f64();
    let by_kind = (sim.nodes[i].ep.stats().control_bytes_by_kind.iter())
        .map(|(k, n)| (*k, n - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.to_string(), n as f64 / secs))
        .collect();
    let sent = |sim: &Sim| -> HashMap<NodeId, u64> {
        (sim.nodes[i].ep.peers(sim.now).iter())
            .map(|p| (p.node_id, p.stats.tx_bytes))
            .collect()
    };
    let start = sent(sim);
    sim.run_for(QUIET_TOP_WINDOW);
    let mut rates: Vec<(NodeId, f64)> = (sent(sim).into_iter())
        .map(|(id, n)| {
            let b = start.get(&id).copied().unwrap_or(0);
            (id, (n - b) as f64 / QUIET_TOP_WINDOW.as_secs_f64())
        })
        .collect();
    rates.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top_receivers = (rates.into_iter().take(5))
        .filter_map(|(id, rate)| {
            let n = sim.nodes.iter().position(|n| n.ep.node_id() == id)?;
            Some((n, n < relays, rate))
        })
        .collect();
    QuietSender {
        node: i,
        by_kind,
        top_receivers,
    }
}
