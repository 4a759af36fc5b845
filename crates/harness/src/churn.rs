//! Churn in the simulator (`mesh-harness churn`): a two-tier mesh where a
//! share of the nodes crashes every minute, spread over the minute, and
//! each crashed node starts again (a new endpoint, same identity) after a
//! pause; meanwhile random pairs of live nodes are checked every second
//! for a path through the routing state (reachability).
//!
//! A pair is reachable when, from the source, every node on the way has a
//! next hop over a direct link that is up: the destination itself when it
//! is a neighbour with its link up; else, at a relay, its route's next hop;
//! at a stub, one of its relays (its default route). "Live" means up for
//! at least [`SETTLE`]: a node that just started is still handshaking.

use std::collections::HashMap;
use std::time::Duration;

use proto::wire::NodeId;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::scale::{impaired_mesh, Impairment};
use crate::sim::Sim;

/// A node counts as live this long after it started.
pub const SETTLE: Duration = Duration::from_secs(10);
/// Pairs checked per second.
const PAIRS: usize = 200;
/// Most hops a path may take.
const MAX_HOPS: usize = 16;

/// What one run measured (JSON line).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChurnReport {
    /// Nodes in the mesh.
    pub nodes: usize,
    /// Relaying nodes.
    pub relays: usize,
    /// Seed of topology, latencies, keys and the churn.
    pub seed: u64,
    /// Share of the nodes crashed per minute, %.
    pub churn_percent_per_min: f64,
    /// How long a crashed node stays down, s.
    pub down_secs: f64,
    /// Virtual minutes of churn.
    pub minutes: u64,
    /// Crashes (each followed by a restart).
    pub crashes: usize,
    /// Pairs of live nodes checked.
    pub pairs_checked: usize,
    /// Share of them with a path, %.
    pub reachable_percent: f64,
    /// The worst second's share, %.
    pub worst_second_percent: f64,
    /// Loss on every link, %.
    pub loss_percent: f64,
    /// Real seconds the run took.
    pub wall_secs: f64,
}

/// Whether `dst` is reachable from `src` through the routing state now.
fn reachable(
    sim: &Sim,
    index: &HashMap<NodeId, usize>,
    relays: usize,
    src: usize,
    dst: usize,
) -> bool {
    let target = sim.nodes[dst].ep.node_id();
    let up = |from: usize, to: usize| -> bool {
        let n = &sim.nodes[from];
        !sim.nodes[to].down
            && n.peers.get(&to).is_some_and(|p| {
                (n.ep.peer(*p, sim.now))
                    .is_some_and(|v| v.has_session && v.link.is_some_and(|l| l.up))
            })
    };
    let mut at = src;
    for _ in 0..MAX_HOPS {
        if at == dst {
            return true;
        }
        if up(at, dst) {
            return true;
        }
        let next = if at < relays {
            let Some(r) = sim.nodes[at].ep.router().route(target) else {
                return false;
            };
            index.get(&r.next_hop).copied()
        } else {
            // A stub's default route: a relay neighbour whose link is up.
            let mut relays_up: Vec<usize> = (sim.nodes[at].peers.keys())
                .copied()
                .filter(|&r| r < relays && up(at, r))
                .collect();
            relays_up.sort_unstable();
            relays_up.first().copied()
        };
        match next {
            Some(n) if up(at, n) => at = n,
            _ => return false,
        }
    }
    false
}

/// One run.
pub fn run(
    nodes: usize,
    relays: usize,
    seed: u64,
    churn_percent: f64,
    down: Duration,
    minutes: u64,
    impair: Impairment,
) -> Result<ChurnReport, String> {
    let wall = std::time::Instant::now();
    let (mut sim, _) = impaired_mesh(nodes, relays, 4, seed, impair)?;
    let index: HashMap<NodeId, usize> =
        (0..nodes).map(|i| (sim.nodes[i].ep.node_id(), i)).collect();
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x636875726e);
    sim.run_for(Duration::from_secs(15));
    let mut started = vec![sim.elapsed().saturating_sub(SETTLE); nodes];
    let mut down_until: Vec<Option<Duration>> = vec![None; nodes];
    let per_minute = ((nodes as f64 * churn_percent / 100.0).round() as usize).max(1);
    let gap = Duration::from_secs(60) / u32::try_from(per_minute).unwrap_or(u32::MAX);
    let end = sim.elapsed() + Duration::from_secs(60 * minutes);
    let mut next_crash = sim.elapsed();
    let (mut crashes, mut checked, mut reached) = (0, 0, 0);
    let mut worst: f64 = 100.0;
    while sim.elapsed() < end {
        // Crashes due, and restarts due.
        while next_crash <= sim.elapsed() {
            let live: Vec<usize> = (0..nodes).filter(|&i| down_until[i].is_none()).collect();
            let victim = live[rng.next_u32() as usize % live.len()];
            sim.crash(victim);
            down_until[victim] = Some(sim.elapsed() + down);
            crashes += 1;
            next_crash += gap;
        }
        for i in 0..nodes {
            if down_until[i].is_some_and(|t| t <= sim.elapsed()) {
                down_until[i] = None;
                sim.restart(i);
                started[i] = sim.elapsed();
            }
        }
        sim.run_for(Duration::from_secs(1));
        let now = sim.elapsed();
        let live: Vec<usize> = (0..nodes)
            .filter(|&i| down_until[i].is_none() && now >= started[i] + SETTLE)
            .collect();
        if live.len() < 2 {
            continue;
        }
        let (mut c, mut r) = (0, 0);
        for _ in 0..PAIRS {
            let a = live[rng.next_u32() as usize % live.len()];
            let b = live[rng.next_u32() as usize % live.len()];
            if a == b {
                continue;
            }
            c += 1;
            r += usize::from(reachable(&sim, &index, relays, a, b));
        }
        checked += c;
        reached += r;
        if c > 0 {
            worst = worst.min(100.0 * r as f64 / c as f64);
        }
    }
    Ok(ChurnReport {
        nodes,
        relays: relays.min(nodes),
        seed,
        churn_percent_per_min: churn_percent,
        down_secs: down.as_secs_f64(),
        minutes,
        crashes,
        pairs_checked: checked,
        reachable_percent: 100.0 * reached as f64 / checked.max(1) as f64,
        worst_second_percent: worst,
        loss_percent: impair.loss * 100.0,
        wall_secs: wall.elapsed().as_secs_f64(),
    })
}
