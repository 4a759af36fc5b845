//! Mesh-wide quarantine in the simulator (`mesh-harness quorum`): a
//! relaying member sends as an address it does not hold, first towards one
//! neighbour (one accuser: the mesh must not follow it), then towards two
//! more; every other node must quarantine it on the three accusations.
//! Reports when the first, half, 99 % and all of the other nodes held the
//! quarantine, counted from the first spoofed packet to the third witness,
//! and what the accusations cost on the wire.

use std::time::{Duration, Instant};

use proto::endpoint::Event;
use proto::wire::TRANSPORT_OVERHEAD;

use crate::scale::{impaired_mesh, Impairment};
use crate::sim::Sim;

/// What one run measured (JSON line).
#[derive(Debug, Clone, serde::Serialize)]
pub struct QuorumReport {
    /// Nodes in the mesh.
    pub nodes: usize,
    /// Relaying nodes.
    pub relays: usize,
    /// Seed of topology, latencies and keys.
    pub seed: u64,
    /// Loss on every link, percent.
    pub loss_percent: f64,
    /// Nodes other than the lone accuser holding a sanction on the member
    /// 10 s after one accuser alone quarantined it (must be 0).
    pub after_one_accuser: usize,
    /// From the first spoofed packet to the third witness until that
    /// witness quarantined the member itself, seconds.
    pub local_secs: f64,
    /// From the same moment until the first node without evidence of its
    /// own quarantined the member by agreement.
    pub first_secs: f64,
    /// ...half of all nodes (witnesses and the member apart).
    pub half_secs: f64,
    /// ...99 % of them.
    pub p99_secs: f64,
    /// ...all of them (`null`: not within 30 s).
    pub all_secs: Option<f64>,
    /// Accusation messages sent in the whole mesh, per node.
    pub messages_per_node: f64,
    /// Their bytes on the wire (UDP payload plus IP and UDP headers), per
    /// node.
    pub bytes_per_node: f64,
    /// Real seconds the run took.
    pub wall_secs: f64,
}

/// Spoofs 40 packets, 10 ms apart, from `member` to `witness`.
fn spoof(sim: &mut Sim, member: usize, witness: usize) {
    for i in 0..40u8 {
        sim.inject_as(member, [100, 127, 0, i], witness, &[0; 8]);
        sim.run_for(Duration::from_millis(10));
    }
}

/// Whether node `n` holds a quarantine on `member`.
fn holds(sim: &Sim, n: usize, member: usize) -> bool {
    let id = sim.nodes[member].ep.node_id();
    (sim.nodes[n].ep.sanctioned(sim.now).iter()).any(|s| s.node == id)
}

/// One run: `nodes` nodes, `relays` of them relaying (all, if equal).
pub fn run(
    nodes: usize,
    relays: usize,
    degree: usize,
    seed: u64,
    impair: Impairment,
) -> Result<QuorumReport, String> {
    let wall = Instant::now();
    let (mut sim, links) = impaired_mesh(nodes, relays, degree, seed, impair)?;
    // Bring-up (a few virtual seconds at 1,000 nodes), with margin.
    sim.run_for(Duration::from_secs(15));
    // The member is relay 0; its witnesses, three of its neighbours.
    let member = 0;
    let mut witnesses: Vec<usize> = (links.iter())
        .filter_map(|&(a, b, _)| match (a, b) {
            (0, x) | (x, 0) => Some(x),
            _ => None,
        })
        .collect();
    witnesses.sort_unstable();
    witnesses.dedup();
    if witnesses.len() < 3 {
        return Err(format!(
            "node 0 has {} neighbours; 3 are needed",
            witnesses.len()
        ));
    }
    let bystanders: Vec<usize> = (0..nodes)
        .filter(|n| *n != member && !witnesses[..3].contains(n))
        .collect();
    let sent_before: u64 = (sim.nodes.iter())
        .map(|n| n.ep.stats().accusations_sent)
        .sum();

    // One accuser: nobody else may follow.
    spoof(&mut sim, member, witnesses[0]);
    if !holds(&sim, witnesses[0], member) {
        return Err("the first witness did not quarantine the member".into());
    }
    sim.run_for(Duration::from_secs(10));
    let after_one_accuser = (0..nodes)
        .filter(|&n| n != member && n != witnesses[0] && holds(&sim, n, member))
        .count();

    // Two more witnesses.
    spoof(&mut sim, member, witnesses[1]);
    let start = sim.now;
    let mut times: Vec<Option<Duration>> = vec![None; bystanders.len()];
    let sample = |sim: &Sim, times: &mut Vec<Option<Duration>>| {
        for (k, &n) in bystanders.iter().enumerate() {
            if times[k].is_none() && holds(sim, n, member) {
                times[k] = Some(sim.now - start);
            }
        }
    };
    for i in 0..40u8 {
        sim.inject_as(member, [100, 127, 0, i], witnesses[2], &[0; 8]);
        sim.run_for(Duration::from_millis(10));
        sample(&sim, &mut times);
    }
    let local = (sim.nodes[witnesses[2]].events.iter())
        .filter(|(t, e)| *t >= start && matches!(e, Event::Alert { alert, .. } if alert.scenario == "spoofing" && alert.response == proto::ids::Response::Quarantine))
        .map(|(t, _)| *t)
        .min()
        .ok_or("the third witness did not quarantine the member")?;
    while sim.now - start < Duration::from_secs(30) && times.iter().any(Option::is_none) {
        sim.run_for(Duration::from_millis(5));
        sample(&sim, &mut times);
    }
    let mut got: Vec<Duration> = times.iter().flatten().copied().collect();
    got.sort_unstable();
    let at = |share: f64| {
        let k = ((bystanders.len() as f64 * share).ceil() as usize).max(1);
        got.get(k - 1).map_or(f64::NAN, Duration::as_secs_f64)
    };
    let all_secs = (got.len() == bystanders.len()).then(|| at(1.0));
    let sent_after: u64 = (sim.nodes.iter())
        .map(|n| n.ep.stats().accusations_sent)
        .sum();
    let messages = (sent_after - sent_before) as f64;
    // An accusation: 48-byte header, scenario, certificate, signature.
    let cert = sim.nodes[witnesses[0]]
        .ep
        .identity()
        .certificate()
        .as_bytes()
        .len();
    let wire = (48 + "spoofing".len() + cert + 64 + TRANSPORT_OVERHEAD + 28) as f64;
    Ok(QuorumReport {
        nodes,
        relays: relays.min(nodes),
        seed,
        loss_percent: impair.loss * 100.0,
        after_one_accuser,
        local_secs: (local - start).as_secs_f64(),
        first_secs: at(0.0),
        half_secs: at(0.5),
        p99_secs: at(0.99),
        all_secs,
        messages_per_node: messages / nodes as f64,
        bytes_per_node: messages * wire / nodes as f64,
        wall_secs: wall.elapsed().as_secs_f64(),
    })
}
