//! `mesh-harness join`: members joining a running mesh with bootstrap
//! addresses and nothing else, in the virtual-time simulator with the real
//! protocol endpoints, at sizes a namespace test cannot reach.
//!
//! A backbone of relaying nodes (a percentage of the mesh; a ring plus
//! random chords of average degree `degree`, links of a seeded 1–10 ms)
//! configured with each other is the running mesh, with, unless every
//! other node joins, stubs configured with two relays each (as
//! `mesh-harness scale --relay-percent` builds it). The joiners are built
//! knowing nobody and join as stubs (`relay = false`) with two bootstrap
//! addresses drawn at random among the relays, at evenly spaced times over
//! the join window; a join gives a node underlay links to those two relays
//! only. Measured, in virtual time:
//! - **join time** of each node: from its start until it holds 99 % of
//!   the relays' adverts (all a stub holds) and a session with a relay,
//!   which is when it can reach every member (p50, p99, max; and how many
//!   had not joined 60 s after the window);
//! - **known to the mesh**: once joins settle, the share of (relay, stub)
//!   pairs in which the relay holds the stub's advert (every relay needs
//!   it to route to the stub);
//! - **first packet**: sampled pairs of stubs that never talked: the
//!   first sends the second a packet every 50 ms until one arrives (a
//!   member lookup at its relay, a handshake relayed end to end, then the
//!   data); the time from the first packet (p50, p99) and the pairs that
//!   got nothing within 5 s;
//! - **traffic**: UDP payload bytes each joiner sent until joined (key
//!   probes, handshakes, probes, adverts), and what relays and stubs send
//!   per second over the window (everything: handshakes, probes, adverts,
//!   certificates).

use std::time::{Duration, Instant};

use proto::endpoint::EndpointConfig;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::scale::{peak_rss_mb, topology, two_tier, STUB_RELAYS};
use crate::sim::Sim;

/// Results of one join run (all times virtual).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinReport {
    /// Members in the end.
    pub nodes: usize,
    /// Relays (the running mesh).
    pub relays: usize,
    /// Nodes that joined with two bootstrap addresses (the others were
    /// configured with their relays from the start).
    pub joiners: usize,
    /// Seconds over which the joins were spread.
    pub window_secs: f64,
    /// Join time, ms: median, 99th percentile, largest.
    pub join_p50_ms: f64,
    /// See `join_p50_ms`.
    pub join_p99_ms: f64,
    /// See `join_p50_ms`.
    pub join_max_ms: f64,
    /// Joiners not joined 60 s after the window.
    pub not_joined: usize,
    /// Share of (relay, stub) pairs where the relay holds the stub's
    /// advert, once joins settled.
    pub known_by_relays: f64,
    /// Sampled stub pairs, and the first packet's delivery time, ms.
    pub reach_pairs: usize,
    /// See `reach_pairs`.
    pub reach_p50_ms: f64,
    /// See `reach_pairs`.
    pub reach_p99_ms: f64,
    /// Pairs with no delivery within 5 s.
    pub reach_failed: usize,
    /// UDP payload bytes a joiner sent until joined: median and largest.
    pub joiner_bytes_p50: f64,
    /// See `joiner_bytes_p50`.
    pub joiner_bytes_max: f64,
    /// UDP payload bytes per relay per second over the window (mean) and
    /// the busiest relay's.
    pub relay_bytes_per_sec: f64,
    /// See `relay_bytes_per_sec`.
    pub relay_bytes_per_sec_max: f64,
    /// Advert bytes per relay per second over the window.
    pub relay_advert_bytes_per_sec: f64,
    /// Route computations per relay per second over the window (mean)
    /// and the busiest relay's.
    #[serde(default)]
    pub relay_route_computations_per_sec: f64,
    /// See `relay_route_computations_per_sec`.
    #[serde(default)]
    pub relay_route_computations_per_sec_max: f64,
    /// Member lookups answered in the reach sample.
    pub lookups_answered: u64,
    /// Peak resident memory of this process so far, MB (Linux).
    pub peak_rss_mb: f64,
    /// Real seconds the run took.
    pub wall_secs: f64,
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn latency(rng: &mut ChaCha20Rng) -> Duration {
    Duration::from_micros(1000 + u64::from(rng.next_u32() % 9000))
}

/// Whether stub `j` has joined: it holds 99 % of the relays' adverts and
/// a session with a relay.
fn joined(sim: &Sim, j: usize, relays: usize) -> bool {
    let ep = &sim.nodes[j].ep;
    ep.router().advert_count() as f64 >= relays as f64 * 0.99
        && ep.peers(sim.now).iter().any(|p| p.has_session)
}

/// Runs the measurement with `joiners` of the `nodes` joining (`None`:
/// every node but the relays). Bounded: the window, then at most 60 s for
/// the last joins, 5 s of settling, and at most 5 s per sampled pair.
pub fn run(
    nodes: usize,
    relay_percent: usize,
    degree: usize,
    window: Duration,
    joiners: Option<usize>,
    seed: u64,
) -> Result<JoinReport, String> {
    let wall = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let relays = (nodes * relay_percent / 100).max(3);
    let joining = joiners.unwrap_or(nodes).min(nodes.saturating_sub(relays));
    if joining == 0 {
        return Err(format!(
            "{nodes} nodes leave no joiner beside {relays} relays"
        ));
    }
    // The running mesh: relays, and the stubs that do not join.
    let members = nodes - joining;
    let links = if members == relays {
        topology(relays, degree, &mut rng)
    } else {
        two_tier(members, relays, degree, STUB_RELAYS, &mut rng)?
    };
    let names: Vec<String> = (0..nodes).map(|i| format!("n{i}")).collect();
    let config = |i: usize| EndpointConfig {
        relay: i < relays,
        ..EndpointConfig::default()
    };
    let mut sim = Sim::build_each(seed, &names, &links, config, false);
    sim.run_for(Duration::from_secs(5));

    let joiners: Vec<usize> = (members..nodes).collect();
    let step = window / joiners.len() as u32;
    let start = sim.now;
    let relay_bytes =
        |sim: &Sim| -> Vec<u64> { (0..relays).map(|r| sim.nodes[r].bytes_sent).collect() };
    let advert_bytes = |sim: &Sim| -> u64 {
        (0..relays)
            .map(|r| sim.nodes[r].ep.stats().gossip_bytes_sent)
            .sum()
    };
    let computations = |sim: &Sim| -> Vec<u64> {
        (0..relays)
            .map(|r| sim.nodes[r].ep.router().computations())
            .collect()
    };
    let (relay_before, advert_before) = (relay_bytes(&sim), advert_bytes(&sim));
    let computed_before = computations(&sim);
    let mut started = vec![None; nodes];
    let mut took: Vec<f64> = Vec::new();
    let mut bytes: Vec<f64> = Vec::new();
    let mut pending: Vec<usize> = Vec::new();
    let mut check = |sim: &Sim, pending: &mut Vec<usize>, started: &[Option<Instant>]| {
        pending.retain(|&j| {
            if !joined(sim, j, relays) {
                return true;
            }
            let t: Instant = started[j].expect("pending joiners started");
            took.push((sim.now - t).as_secs_f64() * 1e3);
            bytes.push(sim.nodes[j].bytes_sent as f64);
            false
        });
    };
    for (k, &j) in joiners.iter().enumerate() {
        let at = start + step * k as u32;
        // Joins in flight are checked every millisecond at least.
        while sim.now < at {
            let next = (sim.now + Duration::from_millis(1)).min(at);
            sim.run_until(next);
            check(&sim, &mut pending, &started);
        }
        let a = rng.next_u32() as usize % relays;
        let b = (a + 1 + rng.next_u32() as usize % (relays - 1)) % relays;
        let lat = latency(&mut rng);
        sim.join(j, &[a, b], lat);
        started[j] = Some(sim.now);
        pending.push(j);
    }
    let window_end = sim.now;
    let (relay_after, advert_after) = (relay_bytes(&sim), advert_bytes(&sim));
    let computed_after = computations(&sim);
    while !pending.is_empty() && sim.now - window_end < Duration::from_secs(60) {
        sim.run_for(Duration::from_millis(1));
        check(&sim, &mut pending, &started);
    }
    let not_joined = pending.len();
    sim.run_for(Duration::from_secs(5));

    // Every relay should hold every stub's advert.
    let mut known = 0usize;
    for r in 0..relays {
        let router = sim.nodes[r].ep.router();
        known += joiners
            .iter()
            .filter(|&&s| router.advert(sim.nodes[s].ep.node_id()).is_some())
            .count();
    }
    let known_by_relays = known as f64 / (relays * joiners.len()) as f64;

    // First packets between stubs that never talked.
    let pairs = joiners.len().min(100);
    let mut reach: Vec<f64> = Vec::new();
    let mut reach_failed = 0;
    let answered_before: u64 = (0..relays)
        .map(|r| sim.nodes[r].ep.stats().lookups_answered)
        .sum();
    for _ in 0..pairs {
        let a = joiners[rng.next_u32() as usize % joiners.len()];
        let mut b = joiners[rng.next_u32() as usize % joiners.len()];
        if a == b {
            b = if b + 1 < nodes { b + 1 } else { relays };
        }
        let before = sim.nodes[b].inbox.len();
        let t0 = sim.now;
        loop {
            sim.inject(a, b, b"first");
            sim.run_for(Duration::from_millis(50));
            if let Some(d) = sim.nodes[b].inbox.get(before) {
                reach.push((d.at - t0).as_secs_f64() * 1e3);
                break;
            }
            if sim.now - t0 >= Duration::from_secs(5) {
                reach_failed += 1;
                break;
            }
        }
    }
    let lookups_answered = (0..relays)
        .map(|r| sim.nodes[r].ep.stats().lookups_answered)
        .sum::<u64>()
        - answered_before;

    let secs = (window_end - start).as_secs_f64().max(1e-3);
    let per_relay: Vec<f64> = (0..relays)
        .map(|r| (relay_after[r] - relay_before[r]) as f64 / secs)
        .collect();
    let relay_mean = per_relay.iter().sum::<f64>() / relays as f64;
    let relay_max = per_relay.iter().copied().fold(0.0, f64::max);
    let computed: Vec<f64> = (computed_after.iter().zip(&computed_before))
        .map(|(a, b)| (a - b) as f64 / secs)
        .collect();
    let joined_count = took.len();
    Ok(JoinReport {
        nodes,
        relays,
        joiners: joiners.len(),
        window_secs: window.as_secs_f64(),
        join_p50_ms: quantile(&mut took, 0.5),
        join_p99_ms: quantile(&mut took, 0.99),
        join_max_ms: took.iter().copied().fold(0.0, f64::max),
        not_joined: not_joined.max(joiners.len() - joined_count),
        known_by_relays,
        reach_pairs: pairs,
        reach_p50_ms: quantile(&mut reach, 0.5),
        reach_p99_ms: quantile(&mut reach, 0.99),
        reach_failed,
        joiner_bytes_p50: quantile(&mut bytes, 0.5),
        joiner_bytes_max: bytes.iter().copied().fold(0.0, f64::max),
        relay_bytes_per_sec: relay_mean,
        relay_bytes_per_sec_max: relay_max,
        relay_advert_bytes_per_sec: (advert_after - advert_before) as f64 / relays as f64 / secs,
        relay_route_computations_per_sec: computed.iter().sum::<f64>() / relays as f64,
        relay_route_computations_per_sec_max: computed.iter().copied().fold(0.0, f64::max),
        lookups_answered,
        peak_rss_mb: peak_rss_mb(),
        wall_secs: wall.elapsed().as_secs_f64(),
    })
}
