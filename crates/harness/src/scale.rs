//! `mesh-harness scale`: route health at mesh sizes a namespace test cannot
//! reach, in the virtual-time simulator with the real protocol endpoints.
//!
//! A mesh of `nodes` hosts, each linked to its two ring neighbours plus
//! random chords up to an average `degree`, every link with a seeded latency
//! of 1–10 ms. It measures, in virtual time:
//! - **bring-up**: from start until 99 % of nodes hold adverts from 99 % of
//!   the origins (every session is a full hybrid handshake);
//! - **gossip**: link-state advert bytes each node sends per second in a
//!   quiet steady state, as plaintext and as UDP payload on the wire
//!   (plus the probes, reported apart);
//! - **convergence**: one ring link is cut; from the moment one of its ends
//!   notices (its `LinkChanged` event) until 99 % of nodes hold adverts from
//!   both ends that no longer list the link. Detection time (idle links are
//!   probed every second: four lost probes) is reported apart;
//! - **revocation**: one node's certificate is revoked by a list pushed at
//!   node 0; the time until every other node holds the list, and until
//!   every neighbour of the revoked node has torn its session down.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use proto::endpoint::{EndpointConfig, Event};
use proto::wire::{NodeId, TRANSPORT_OVERHEAD};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

use crate::sim::Sim;

/// Results of one scale run (all times virtual).
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    /// Hosts.
    pub nodes: usize,
    /// Links.
    pub links: usize,
    /// Seconds until 99 % of nodes knew 99 % of the origins.
    pub bring_up_secs: f64,
    /// Advert plaintext bytes sent per node per second, steady state.
    pub gossip_plain_bytes_per_node_sec: f64,
    /// Advert UDP payload bytes (plaintext + 32 + 28 IPv4/UDP header) per
    /// node per second, steady state.
    pub gossip_wire_bytes_per_node_sec: f64,
    /// Probe UDP payload bytes per node per second, steady state (idle).
    pub probe_wire_bytes_per_node_sec: f64,
    /// Cut to first detection, ms.
    pub detection_ms: f64,
    /// Detection to 99 % agreement, ms.
    pub convergence_ms: f64,
    /// Revocation pushed at one node → every other node holds the list, ms.
    pub revocation_spread_ms: f64,
    /// Revocation pushed → every neighbour of the revoked node has cut it, ms.
    pub revocation_cut_ms: f64,
    /// Largest advert count any node held.
    pub max_adverts_held: usize,
    /// Virtual seconds over which gossip was counted.
    pub steady_secs: f64,
    /// Real seconds the run took.
    pub wall_secs: f64,
}

/// Ring plus random chords: `(a, b, latency)` with average degree `degree`.
fn topology(nodes: usize, degree: usize, rng: &mut ChaCha20Rng) -> Vec<(usize, usize, Duration)> {
    let mut seen = HashSet::new();
    let mut links = Vec::new();
    let mut add = |a: usize, b: usize, rng: &mut ChaCha20Rng, links: &mut Vec<_>| {
        let k = (a.min(b), a.max(b));
        if a != b && seen.insert(k) {
            let lat = Duration::from_micros(1000 + u64::from(rng.next_u32() % 9000));
            links.push((k.0, k.1, lat));
        }
    };
    for i in 0..nodes {
        add(i, (i + 1) % nodes, rng, &mut links);
    }
    let chords = nodes * degree.saturating_sub(2) / 2;
    let mut tries = 0;
    while links.len() < nodes + chords && tries < 10 * chords + 10 {
        tries += 1;
        let a = rng.next_u32() as usize % nodes;
        let b = rng.next_u32() as usize % nodes;
        add(a, b, rng, &mut links);
    }
    links
}

fn lists(sim: &Sim, at: usize, origin: NodeId, neighbor: NodeId) -> bool {
    sim.nodes[at]
        .ep
        .router()
        .advert(origin)
        .is_some_and(|a| a.links.iter().any(|l| l.neighbor == neighbor))
}

/// Runs the measurement. Bounded: at most 120 virtual seconds of bring-up,
/// the steady window (`None`: two advert refresh intervals, so every node's
/// refresh is counted), and 60 s of convergence.
pub fn run(
    nodes: usize,
    degree: usize,
    seed: u64,
    steady: Option<Duration>,
) -> Result<ScaleReport, String> {
    let wall = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let links = topology(nodes, degree, &mut rng);
    let names: Vec<String> = (0..nodes).map(|i| format!("n{i}")).collect();
    let mut sim = Sim::build(seed, &names, &links, EndpointConfig::default(), false);

    // Bring-up.
    let want = ((nodes - 1) as f64 * 0.99).floor() as usize;
    let mut bring_up = None;
    while sim.elapsed() < Duration::from_secs(120) {
        sim.run_for(Duration::from_millis(100));
        let knowing = sim
            .nodes
            .iter()
            .filter(|n| n.ep.router().adverts().count() >= want)
            .count();
        if knowing as f64 >= nodes as f64 * 0.99 {
            bring_up = Some(sim.elapsed());
            break;
        }
    }
    let bring_up = bring_up.ok_or("the mesh did not converge within 120 virtual seconds")?;

    // Steady state: let startup floods settle, then count a window.
    for _ in 0..15 {
        sim.run_for(Duration::from_secs(1));
    }
    let totals = |sim: &Sim| {
        sim.nodes.iter().fold((0u64, 0u64, 0u64), |acc, n| {
            let s = n.ep.stats();
            (
                acc.0 + s.gossip_bytes_sent,
                acc.1 + s.gossip_messages_sent,
                acc.2 + s.probes_sent,
            )
        })
    };
    let steady = steady.unwrap_or_else(|| 2 * sim.nodes[0].ep.advert_refresh());
    let before = totals(&sim);
    let end = sim.now + steady;
    while sim.now < end {
        let slice = (end - sim.now).min(Duration::from_secs(1));
        sim.run_for(slice);
    }
    let after = totals(&sim);
    let per = |x: u64| x as f64 / nodes as f64 / steady.as_secs_f64();
    let plain = per(after.0 - before.0);
    let wire = per(after.0 - before.0 + (after.1 - before.1) * (TRANSPORT_OVERHEAD as u64 + 28));
    // A probe is an 8-byte control message; its reply the same.
    let probe_wire = per((after.2 - before.2) * 2 * (8 + TRANSPORT_OVERHEAD as u64 + 28));

    // Cut one ring link and watch the news spread.
    let (u, v, _) = links[nodes / 2];
    let (uid, vid) = (sim.nodes[u].ep.node_id(), sim.nodes[v].ep.node_id());
    let cut_at = sim.now;
    sim.cut(u, v);
    let mut detected = None;
    let mut converged = None;
    while sim.now - cut_at < Duration::from_secs(60) {
        sim.run_for(Duration::from_millis(5));
        if detected.is_none() {
            detected = [u, v]
                .iter()
                .flat_map(|&n| sim.nodes[n].events.iter())
                .filter(|(t, e)| *t >= cut_at && matches!(e, Event::LinkChanged { up: false, .. }))
                .map(|(t, _)| *t)
                .min();
            continue;
        }
        let agree = (0..nodes)
            .filter(|&n| {
                n == u || n == v || (!lists(&sim, n, uid, vid) && !lists(&sim, n, vid, uid))
            })
            .count();
        if agree as f64 >= nodes as f64 * 0.99 {
            converged = Some(sim.now);
            break;
        }
    }
    let detected = detected.ok_or("the cut was not detected within 60 s")?;
    let converged = converged.ok_or("99% of nodes did not learn of the cut within 60 s")?;

    // Revoke one node at node 0 and watch the list spread.
    let victim = nodes / 3;
    let neighbours: Vec<usize> = links
        .iter()
        .filter_map(|&(a, b, _)| {
            if a == victim {
                Some(b)
            } else if b == victim {
                Some(a)
            } else {
                None
            }
        })
        .collect();
    let pushed = sim.now;
    sim.revoke(0, &[victim], 1)
        .map_err(|e| format!("revocation refused: {e}"))?;
    let (mut spread, mut cut) = (None, None);
    while sim.now - pushed < Duration::from_secs(30) && (spread.is_none() || cut.is_none()) {
        sim.run_for(Duration::from_millis(5));
        if spread.is_none()
            && (0..nodes).filter(|&n| n != victim).all(|n| {
                sim.nodes[n]
                    .ep
                    .bundle(proto::bundle::BundleKind::Revocation)
                    .is_some()
            })
        {
            spread = Some(sim.now - pushed);
        }
        if cut.is_none()
            && neighbours.iter().all(|&n| {
                let p = sim.nodes[n].peers[&victim];
                sim.nodes[n]
                    .ep
                    .peer(p, sim.now)
                    .is_some_and(|i| i.refused && !i.has_session)
            })
        {
            cut = Some(sim.now - pushed);
        }
    }
    let spread = spread.ok_or("the revocation list did not reach every node within 30 s")?;
    let cut = cut.ok_or("the revoked node's neighbours did not all cut it within 30 s")?;
    Ok(ScaleReport {
        nodes,
        links: links.len(),
        bring_up_secs: bring_up.as_secs_f64(),
        gossip_plain_bytes_per_node_sec: plain,
        gossip_wire_bytes_per_node_sec: wire,
        probe_wire_bytes_per_node_sec: probe_wire,
        detection_ms: (detected - cut_at).as_secs_f64() * 1e3,
        convergence_ms: (converged - detected).as_secs_f64() * 1e3,
        revocation_spread_ms: spread.as_secs_f64() * 1e3,
        revocation_cut_ms: cut.as_secs_f64() * 1e3,
        max_adverts_held: sim
            .nodes
            .iter()
            .map(|n| n.ep.router().adverts().count())
            .max()
            .unwrap_or(0),
        steady_secs: steady.as_secs_f64(),
        wall_secs: wall.elapsed().as_secs_f64(),
    })
}
