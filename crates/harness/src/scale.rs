//! `mesh-harness scale`: route health at mesh sizes a namespace test cannot
//! reach, in the virtual-time simulator with the real protocol endpoints.
//!
//! A mesh of `nodes` hosts, each link with a seeded latency of 1–10 ms. With
//! every node relaying (`relays` = `None`): a ring plus random chords up to
//! an average `degree`. With `relays` = `Some(r)`: the first `r` hosts relay
//! and form that ring-plus-chords backbone; every other host is a *stub*
//! (`relay = false`) linked to two relays, as the members of a large mesh
//! hang off its relays. It measures, in virtual time:
//! - **bring-up**: from start until 99 % of nodes hold 99 % of the adverts
//!   they should (a relay: every origin's; a stub: every relay's; every
//!   session is a full hybrid handshake);
//! - **gossip**, two ways: (1) link-state advert bytes each node sends per
//!   second over a quiet steady window (sizes where the window, two refresh
//!   intervals, can be simulated), and (2) the bytes one mesh-wide refresh
//!   round costs per node (every node re-originates its advert once and the
//!   floods die out) divided by the refresh interval: the same quantity
//!   without simulating the interval, which at 10,000 nodes is 5.5 hours;
//!   probes are reported apart;
//! - **convergence**: one idle backbone ring link is cut; from the moment
//!   one of its ends notices (its `LinkChanged` event) until 99 % of nodes
//!   hold adverts from both ends that no longer list the link. Detection
//!   time (an idle link is probed every 0.75–1 s) is reported apart. Then
//!   the same for a second backbone link whose ends exchange a datagram
//!   every 10 ms (probed every 37.5–50 ms, as any link carrying data);
//! - **revocation**: one node's certificate is revoked by a list pushed at
//!   node 0; the time until every other node holds the list, and until
//!   every neighbour of the revoked node has torn its session down;
//! - **flaps**: after a quiet window, one relay–stub link and then one
//!   relay–relay link are cut for 3 s and healed; every node's control
//!   bytes over the 20 s from each cut (`flap.rs`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use proto::endpoint::{EndpointConfig, Event};
use proto::health::HealthConfig;
use proto::wire::{NodeId, TRANSPORT_OVERHEAD};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::sim::Sim;

mod charts;
mod flap;
mod quiet;
mod spread;
pub use charts::charts;
pub use flap::{FlapCost, FLAP_OUTAGE, FLAP_WINDOW};
pub use quiet::QuietSender;
use quiet::{quiet_sender, QuietStart};
pub use spread::spread;

/// Results of one scale run (all times virtual).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleReport {
    /// Hosts.
    pub nodes: usize,
    /// Hosts that relay (all of them unless the run had stubs).
    pub relays: usize,
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
    /// Detection to 99 % of nodes no longer routing over the cut link (one
    /// end's advert withdrew it: a link counts only while both ends list
    /// each other), ms.
    pub convergence_ms: f64,
    /// Revocation pushed at one node → every other node holds the list, ms.
    pub revocation_spread_ms: f64,
    /// Revocation pushed → every neighbour of the revoked node has cut it, ms.
    pub revocation_cut_ms: f64,
    /// Refresh round: advert UDP payload bytes sent per node while every
    /// node re-originated its advert once.
    pub refresh_round_wire_bytes_per_node: f64,
    /// Mean advert refresh interval over the nodes, s.
    pub refresh_secs: f64,
    /// `refresh_round_wire_bytes_per_node` / `refresh_secs`.
    pub gossip_refresh_wire_bytes_per_node_sec: f64,
    /// Largest advert count any node held.
    pub max_adverts_held: usize,
    /// Largest advert count any stub held (0 without stubs).
    pub max_adverts_held_stub: usize,
    /// Peak resident memory of this process so far, MB (Linux).
    pub peak_rss_mb: f64,
    /// Virtual seconds over which gossip was counted (0: window skipped).
    pub steady_secs: f64,
    /// Real seconds the run took.
    pub wall_secs: f64,
    /// Datagrams every link lost (each way, uniform), %.
    #[serde(default)]
    pub loss_percent: f64,
    /// Extra delay of each datagram on every link, uniform in 0..this, ms.
    #[serde(default)]
    pub jitter_ms: f64,
    /// Seconds until every node held every advert it should (`None`: not
    /// within 120 virtual seconds).
    #[serde(default)]
    pub bring_up_all_secs: Option<f64>,
    /// Detection to every node agreeing on the cut, ms (`None`: not within
    /// 60 s).
    #[serde(default)]
    pub convergence_all_ms: Option<f64>,
    /// Refresh round, per relay: the largest relay's link-state bytes
    /// (adverts, acknowledgements) per second of refresh interval.
    #[serde(default)]
    pub gossip_refresh_wire_bytes_per_relay_sec_max: f64,
    /// ...and the mean over relays.
    #[serde(default)]
    pub gossip_refresh_wire_bytes_per_relay_sec_mean: f64,
    /// ...and the largest stub's (0 without stubs).
    #[serde(default)]
    pub gossip_refresh_wire_bytes_per_stub_sec_max: f64,
    /// Adverts sent again over the whole run, all nodes.
    #[serde(default)]
    pub adverts_retransmitted: u64,
    /// The seed of the run (topology, latencies, keys, losses).
    #[serde(default)]
    pub seed: u64,
    /// Processing cost virtual time (`crate::sim::CpuModel::measured`).
    #[serde(default)]
    pub cpu_model: bool,
    /// The busiest node's CPU time over the bring-up's virtual time (0
    /// without the CPU model).
    #[serde(default)]
    pub busiest_cpu_share_bring_up: f64,
    /// A quiet window of [`QUIET_WINDOW`] after the revocation has spread,
    /// per relay: the largest relay's control bytes (bundle offers, link
    /// state sent again or acknowledged, certificates: everything but
    /// probes and the refreshes counted above) per second.
    #[serde(default)]
    pub control_quiet_wire_bytes_per_relay_sec_max: f64,
    /// ...and the largest stub's.
    #[serde(default)]
    pub control_quiet_wire_bytes_per_stub_sec_max: f64,
    /// Every relay's gossip budget: its refresh-round rate plus its
    /// quiet-window rate, the largest over relays (issue target ≤ 1 kB/s).
    #[serde(default)]
    pub relay_budget_wire_bytes_per_sec_max: f64,
    /// What the quiet window's busiest relay sent, and to whom (`None`
    /// when no relay sent control in it).
    #[serde(default)]
    pub quiet_busiest_relay: Option<QuietSender>,
    /// A second backbone link, carrying data both ways every 10 ms (so
    /// probed at the active rate): cut to first detection, ms (`None` in
    /// reports from before it was measured).
    #[serde(default)]
    pub data_cut_detection_ms: Option<f64>,
    /// ...and detection to 99 % of nodes no longer routing over it, ms.
    #[serde(default)]
    pub data_cut_convergence_ms: Option<f64>,
    /// A link between a relay and a stub flapping once: control bytes of
    /// the next [`FLAP_WINDOW`] (`None` without stubs, or in reports from
    /// before it was measured).
    #[serde(default)]
    pub stub_flap: Option<FlapCost>,
    /// ...and a link between two relays.
    #[serde(default)]
    pub backbone_flap: Option<FlapCost>,
    /// Link-down events (an end seeing its link down) in the steady window
    /// of at least 30 s, where no link was cut: false failures, from loss
    /// alone (`None` in reports from before it was counted).
    #[serde(default)]
    pub steady_link_downs: Option<usize>,
}

/// How long after the revocation's spread control traffic is counted.
pub const QUIET_WINDOW: Duration = Duration::from_secs(30);

/// What every link of a scale run does to the datagrams it carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct Impairment {
    /// Probability a datagram is lost, each way.
    pub loss: f64,
    /// Extra delay, uniform in `0..jitter`.
    pub jitter: Duration,
    /// Processing costs virtual time ([`crate::sim::CpuModel::measured`]).
    pub cpu: bool,
}

/// Ring plus random chords: `(a, b, latency)` with average degree `degree`.
pub fn topology(
    nodes: usize,
    degree: usize,
    rng: &mut ChaCha20Rng,
) -> Vec<(usize, usize, Duration)> {
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

/// Most stubs on one relay: its advert lists at most 64 links, and its
/// backbone links need room too; 60 where stubs have three relays or more.
const STUBS_PER_RELAY: usize = 48;
const STUBS_PER_RELAY_MANY: usize = 60;

/// Relays each stub links to, unless told otherwise.
pub const STUB_RELAYS: usize = 2;

/// The relay backbone (`topology` over hosts `0..relays`), then every host
/// from `relays` on linked to `stub_relays` distinct relays with room left
/// (at most 48 stubs per relay, 60 with three relays per stub or more).
pub(crate) fn two_tier(
    nodes: usize,
    relays: usize,
    degree: usize,
    stub_relays: usize,
    rng: &mut ChaCha20Rng,
) -> Result<Vec<(usize, usize, Duration)>, String> {
    let stubs = nodes - relays;
    let cap = if stub_relays <= 2 {
        STUBS_PER_RELAY
    } else {
        STUBS_PER_RELAY_MANY
    };
    if relays < 3 || stub_relays == 0 || stub_relays > relays || stubs * stub_relays > relays * cap
    {
        return Err(format!(
            "{relays} relays cannot carry {stubs} stubs ({stub_relays} links each, at most {cap} per relay)"
        ));
    }
    let mut links = topology(relays, degree, rng);
    let mut load = vec![0usize; relays];
    for stub in relays..nodes {
        // Distinct relays with room, drawn at random among those.
        let mut chosen: Vec<usize> = Vec::with_capacity(stub_relays);
        for _ in 0..stub_relays {
            let open: Vec<usize> = (0..relays)
                .filter(|&r| load[r] < cap && !chosen.contains(&r))
                .collect();
            if open.is_empty() {
                return Err(format!("no relay has room left for stub {stub}"));
            }
            let r = open[rng.next_u32() as usize % open.len()];
            load[r] += 1;
            let lat = Duration::from_micros(1000 + u64::from(rng.next_u32() % 9000));
            links.push((r, stub, lat));
            chosen.push(r);
        }
    }
    Ok(links)
}

/// Links as the simulator takes them: (a, b, latency).
pub type Links = Vec<(usize, usize, Duration)>;

/// A simulated mesh of `nodes` (the first `relays` relaying; all of them:
/// `topology`, else `two_tier`), every link impaired alike; and its links.
pub fn impaired_mesh(
    nodes: usize,
    relays: usize,
    degree: usize,
    seed: u64,
    impair: Impairment,
) -> Result<(Sim, Links), String> {
    let health = EndpointConfig::default().health;
    probed_mesh(nodes, relays, degree, STUB_RELAYS, seed, impair, health)
}

/// As [`impaired_mesh`], each stub linked to `stub_relays` relays, every
/// node probing its links with `health`.
pub fn probed_mesh(
    nodes: usize,
    relays: usize,
    degree: usize,
    stub_relays: usize,
    seed: u64,
    impair: Impairment,
    health: Option<HealthConfig>,
) -> Result<(Sim, Links), String> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let links = if relays >= nodes {
        topology(nodes, degree, &mut rng)
    } else {
        two_tier(nodes, relays, degree, stub_relays, &mut rng)?
    };
    let names: Vec<String> = (0..nodes).map(|i| format!("n{i}")).collect();
    // Under the CPU model nodes check signatures as meshd does: queued,
    // after their socket is read (`Sim::run_until`).
    let config = |i: usize| EndpointConfig {
        relay: i < relays,
        health,
        defer_signature_checks: impair.cpu,
        ..EndpointConfig::default()
    };
    let mut sim = Sim::build_each(seed, &names, &links, config, false);
    for &(a, b, _) in &links {
        sim.set_loss(a, b, impair.loss);
        sim.set_jitter(a, b, impair.jitter);
    }
    if impair.cpu {
        sim.set_cpu_model(Some(crate::sim::CpuModel::measured()));
    }
    Ok((sim, links))
}

/// Peak resident set of this process, MB (0 where /proc is not Linux's).
pub(crate) fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn lists(sim: &Sim, at: usize, origin: NodeId, neighbor: NodeId) -> bool {
    sim.nodes[at]
        .ep
        .router()
        .advert(origin)
        .is_some_and(|a| a.links.iter().any(|l| l.neighbor == neighbor))
}

/// Runs the measurement, every link impaired by `impair`. Bounded: at most
/// 120 virtual seconds of bring-up,
/// the steady window (`None`: two advert refresh intervals, so every node's
/// refresh is counted; zero: skipped), 30 s for the refresh round, and 60 s
/// of convergence. `relays`: see the module docs.
pub fn run(
    nodes: usize,
    degree: usize,
    seed: u64,
    steady: Option<Duration>,
    relays: Option<usize>,
    impair: Impairment,
) -> Result<ScaleReport, String> {
    let wall = Instant::now();
    // Each phase's figures on stderr as it ends: a run of an hour says
    // where it is, and what it measured so far.
    let progress = |what: String| {
        eprintln!(
            "scale {nodes}: {what} (wall {:.0} s)",
            wall.elapsed().as_secs_f64()
        )
    };
    let relays = relays.unwrap_or(nodes).min(nodes);
    let (mut sim, links) = impaired_mesh(nodes, relays, degree, seed, impair)?;

    // Bring-up: a relay should hold every other node's advert, a stub every
    // relay's; 99 % of nodes holding 99 % of theirs, then all of them all.
    let should_hold = |i: usize| if i < relays { nodes - 1 } else { relays };
    let knowing = |sim: &Sim, share: f64| {
        sim.nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| n.ep.router().advert_count() as f64 >= should_hold(*i) as f64 * share)
            .count()
    };
    let mut bring_up = None;
    let mut bring_up_all = None;
    while sim.elapsed() < Duration::from_secs(120) {
        sim.run_for(Duration::from_millis(100));
        if bring_up.is_none() && knowing(&sim, 0.99) as f64 >= nodes as f64 * 0.99 {
            bring_up = Some(sim.elapsed());
        }
        if bring_up.is_some() && knowing(&sim, 1.0) == nodes {
            bring_up_all = Some(sim.elapsed());
            break;
        }
    }
    let bring_up = bring_up.ok_or("the mesh did not converge within 120 virtual seconds")?;
    let all = bring_up_all.map_or("not within 120 s".into(), |d| {
        format!("{:.1} s", d.as_secs_f64())
    });
    progress(format!(
        "bring-up 99 % {:.1} s, every node {all}",
        bring_up.as_secs_f64()
    ));
    // Under the CPU model: the busiest node's share of the bring-up.
    let busiest = (sim.nodes.iter())
        .map(|n| n.busy.as_secs_f64())
        .fold(0.0, f64::max)
        / sim.elapsed().as_secs_f64();

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
    // Probes are counted over at least 30 s even when the gossip window is
    // skipped.
    let window = steady.max(Duration::from_secs(30));
    let before = totals(&sim);
    let window_start = sim.now;
    let end = sim.now + window;
    while sim.now < end {
        let slice = (end - sim.now).min(Duration::from_secs(1));
        sim.run_for(slice);
    }
    let after = totals(&sim);
    // Links seen down in the window, by either end: on a lossy underlay,
    // four probes lost in a row.
    let steady_link_downs = (sim.nodes.iter())
        .flat_map(|n| n.events.iter())
        .filter(|(t, e)| *t >= window_start && matches!(e, Event::LinkChanged { up: false, .. }))
        .count();
    let per = |x: f64| x / nodes as f64 / window.as_secs_f64();
    let plain = per((after.0 - before.0) as f64);
    let wire = per(wire_bytes(after.0 - before.0, after.1 - before.1));
    // A probe is an 8-byte control message; its reply the same.
    let probe_wire = per(((after.2 - before.2) * 2 * (8 + TRANSPORT_OVERHEAD as u64 + 28)) as f64);
    let (plain, wire) = if steady.is_zero() {
        (0.0, 0.0)
    } else {
        (plain, wire)
    };

    // One refresh round: every node re-originates; wait for the floods to
    // die out (30 s bound).
    let before = totals(&sim);
    let each_before: Vec<(u64, u64)> = (sim.nodes.iter())
        .map(|n| {
            (
                n.ep.stats().gossip_bytes_sent,
                n.ep.stats().gossip_messages_sent,
            )
        })
        .collect();
    let now = sim.now;
    for n in &mut sim.nodes {
        n.ep.readvertise(now);
    }
    let round_start = sim.now;
    let mut last = before.1;
    while sim.now - round_start < Duration::from_secs(30) {
        sim.run_for(Duration::from_millis(500));
        let t = totals(&sim);
        if t.1 == last && sim.now - round_start >= Duration::from_secs(2) {
            break;
        }
        last = t.1;
    }
    let after = totals(&sim);
    let round = wire_bytes(after.0 - before.0, after.1 - before.1) / nodes as f64;
    let refresh_secs = sim
        .nodes
        .iter()
        .map(|n| n.ep.advert_refresh().as_secs_f64())
        .sum::<f64>()
        / nodes as f64;
    // Per role: each node's bytes in the round over its own interval.
    let rates: Vec<f64> = (sim.nodes.iter().zip(&each_before))
        .map(|(n, b)| {
            let s = n.ep.stats();
            wire_bytes(s.gossip_bytes_sent - b.0, s.gossip_messages_sent - b.1)
                / n.ep.advert_refresh().as_secs_f64()
        })
        .collect();
    let (relay_rates, stub_rates) = rates.split_at(relays);
    let max = |r: &[f64]| r.iter().copied().fold(0.0, f64::max);
    let relay_mean = relay_rates.iter().sum::<f64>() / relays.max(1) as f64;
    progress(format!(
        "refresh round: busiest relay {:.0} B/s, mean relay {relay_mean:.0} B/s",
        max(relay_rates)
    ));

    // Cut one idle (backbone) ring link and watch the news spread; then
    // another that carries data.
    let (u, v, _) = links[relays / 2];
    let idle = watch_cut(&mut sim, u, v, false)?;
    progress(idle.summary("an idle link"));
    let (detected, converged, converged_all) = (idle.detected, idle.converged, idle.converged_all);
    let cut_at = idle.cut_at;
    let (u, v, _) = links[relays / 4];
    let busy = watch_cut(&mut sim, u, v, true)?;
    progress(busy.summary("a link carrying data"));

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

    // A quiet window: the revocation's bundle held everywhere, no new
    // event (the cut link stays cut; its ends, whose sessions now go
    // through relays, may still be syncing): what control traffic flows is
    // overhead besides probes and refreshes.
    sim.run_for(Duration::from_secs(10));
    let control = |sim: &Sim| -> Vec<(u64, u64)> {
        (sim.nodes.iter())
            .map(|n| {
                let s = n.ep.stats();
                (s.control_bytes_sent, s.control_messages_sent)
            })
            .collect()
    };
    let quiet_before = control(&sim);
    let quiet_start = QuietStart::take(&sim, relays);
    sim.run_for(QUIET_WINDOW);
    // The revoked node is no member any more (its neighbours refuse it
    // and it keeps asking): left out.
    let quiet: Vec<f64> = (control(&sim).iter().zip(&quiet_before).enumerate())
        .map(|(i, (a, b))| {
            let rate = wire_bytes(a.0 - b.0, a.1 - b.1) / QUIET_WINDOW.as_secs_f64();
            if i == victim {
                0.0
            } else {
                rate
            }
        })
        .collect();
    let (quiet_relays, quiet_stubs) = quiet.split_at(relays);
    let busiest_quiet = (quiet_relays.iter().enumerate())
        .filter(|(_, r)| **r > 0.0)
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i);
    let quiet_busiest_relay = busiest_quiet.map(|i| QuietSender {
        victim_neighbours: neighbours.clone(),
        ..quiet_sender(&sim, relays, i, &quiet_start)
    });
    let budget: Vec<f64> = (relay_rates.iter().zip(quiet_relays))
        .map(|(a, b)| a + b)
        .collect();
    // One stub link and one backbone link flap, one after the other.
    let stub_link = (links.iter())
        .find(|&&(a, b, _)| a < relays && b >= relays && a != victim && b != victim)
        .map(|&(a, b, _)| (a, b));
    let backbone_link = (links.get(3 * relays / 4))
        .filter(|&&(a, b, _)| relays >= 4 && a < relays && b < relays)
        .map(|&(a, b, _)| (a, b));
    let mut flap_of = |link: Option<(usize, usize)>, what: &str| {
        let cost = link.map(|(u, v)| flap::flap(&mut sim, relays, u, v));
        if let Some(c) = &cost {
            progress(format!(
                "{what} flap: busiest relay {:.1} kB, mean relay {:.1} kB, busiest stub {:.1} kB",
                c.relay_bytes_max / 1e3,
                c.relay_bytes_mean / 1e3,
                c.stub_bytes_max / 1e3
            ));
        }
        cost
    };
    let stub_flap = flap_of(stub_link, "a stub link");
    let backbone_flap = flap_of(backbone_link, "a backbone link");
    let held = |stubs: bool| {
        sim.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| (*i >= relays) == stubs)
            .map(|(_, n)| n.ep.router().advert_count())
            .max()
            .unwrap_or(0)
    };
    Ok(ScaleReport {
        nodes,
        relays,
        links: links.len(),
        bring_up_secs: bring_up.as_secs_f64(),
        gossip_plain_bytes_per_node_sec: plain,
        gossip_wire_bytes_per_node_sec: wire,
        probe_wire_bytes_per_node_sec: probe_wire,
        detection_ms: (detected - cut_at).as_secs_f64() * 1e3,
        convergence_ms: (converged - detected).as_secs_f64() * 1e3,
        revocation_spread_ms: spread.as_secs_f64() * 1e3,
        revocation_cut_ms: cut.as_secs_f64() * 1e3,
        refresh_round_wire_bytes_per_node: round,
        refresh_secs,
        gossip_refresh_wire_bytes_per_node_sec: round / refresh_secs,
        max_adverts_held: held(false),
        max_adverts_held_stub: held(true),
        peak_rss_mb: peak_rss_mb(),
        steady_secs: steady.as_secs_f64(),
        wall_secs: wall.elapsed().as_secs_f64(),
        loss_percent: impair.loss * 100.0,
        jitter_ms: impair.jitter.as_secs_f64() * 1e3,
        bring_up_all_secs: bring_up_all.map(|d| d.as_secs_f64()),
        convergence_all_ms: converged_all.map(|t| (t - detected).as_secs_f64() * 1e3),
        data_cut_detection_ms: Some((busy.detected - busy.cut_at).as_secs_f64() * 1e3),
        data_cut_convergence_ms: Some((busy.converged - busy.detected).as_secs_f64() * 1e3),
        gossip_refresh_wire_bytes_per_relay_sec_max: max(relay_rates),
        gossip_refresh_wire_bytes_per_relay_sec_mean: relay_mean,
        gossip_refresh_wire_bytes_per_stub_sec_max: max(stub_rates),
        adverts_retransmitted: (sim.nodes.iter())
            .map(|n| n.ep.stats().adverts_retransmitted)
            .sum(),
        seed,
        cpu_model: impair.cpu,
        busiest_cpu_share_bring_up: busiest,
        control_quiet_wire_bytes_per_relay_sec_max: max(quiet_relays),
        control_quiet_wire_bytes_per_stub_sec_max: max(quiet_stubs),
        relay_budget_wire_bytes_per_sec_max: max(&budget),
        quiet_busiest_relay,
        stub_flap,
        backbone_flap,
        steady_link_downs: Some(steady_link_downs),
    })
}

/// Bytes on the wire of `messages` control messages of `bytes` plaintext
/// in all: each in a transport packet, in UDP over IPv4.
fn wire_bytes(bytes: u64, messages: u64) -> f64 {
    (bytes + messages * (TRANSPORT_OVERHEAD as u64 + 28)) as f64
}

/// When a watched link cut happened, was first noticed by one of its ends,
/// and was agreed by 99 % and by all nodes.
struct Cut {
    cut_at: Instant,
    detected: Instant,
    converged: Instant,
    converged_all: Option<Instant>,
}

impl Cut {
    fn summary(&self, what: &str) -> String {
        format!(
            "cut of {what} detected in {:.0} ms, 99 % agree {:.0} ms later",
            (self.detected - self.cut_at).as_secs_f64() * 1e3,
            (self.converged - self.detected).as_secs_f64() * 1e3
        )
    }
}

/// Cuts the link `u`–`v` and watches the news spread: until every node
/// agrees, at most 60 s. With `data`, its ends exchange a datagram every
/// 10 ms from 1 s before the cut until it is detected (the link is then
/// probed at the active rate, as any link carrying traffic).
fn watch_cut(sim: &mut Sim, u: usize, v: usize, data: bool) -> Result<Cut, String> {
    let nodes = sim.nodes.len();
    let (uid, vid) = (sim.nodes[u].ep.node_id(), sim.nodes[v].ep.node_id());
    let exchange = |sim: &mut Sim| {
        sim.inject(u, v, b"data");
        sim.inject(v, u, b"data");
        sim.run_for(Duration::from_millis(10));
    };
    if data {
        for _ in 0..100 {
            exchange(sim);
        }
    }
    let cut_at = sim.now;
    sim.cut(u, v);
    let mut detected = None;
    let mut converged = None;
    let mut converged_all = None;
    while sim.now - cut_at < Duration::from_secs(60) {
        if detected.is_none() {
            if data {
                exchange(sim);
            } else {
                sim.run_for(Duration::from_millis(5));
            }
            detected = [u, v]
                .iter()
                .flat_map(|&n| sim.nodes[n].events.iter())
                .filter(|(t, e)| *t >= cut_at && matches!(e, Event::LinkChanged { up: false, .. }))
                .map(|(t, _)| *t)
                .min();
            continue;
        }
        sim.run_for(Duration::from_millis(5));
        let agree = (0..nodes)
            .filter(|&n| {
                // A link counts only while both ends list each other: one
                // end's withdrawal takes it out of this node's routes.
                n == u || n == v || !(lists(sim, n, uid, vid) && lists(sim, n, vid, uid))
            })
            .count();
        if converged.is_none() && agree as f64 >= nodes as f64 * 0.99 {
            converged = Some(sim.now);
        }
        if agree == nodes {
            converged_all = Some(sim.now);
            break;
        }
    }
    let what = if data {
        "link carrying data"
    } else {
        "idle link"
    };
    let detected = detected.ok_or(format!("the cut of an {what} was not detected within 60 s"))?;
    let converged = converged.ok_or(format!(
        "99% of nodes did not learn of the cut of an {what} within 60 s"
    ))?;
    Ok(Cut {
        cut_at,
        detected,
        converged,
        converged_all,
    })
}

/// Results of one `mesh-harness hub` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HubReport {
    /// Leaves, each linked to the hub only.
    pub leaves: usize,
    /// Whether the leaves relay (otherwise they are stubs).
    pub leaves_relay: bool,
    /// Virtual seconds from start until the hub had a session with every
    /// leaf and every leaf a route (checked every 100 ms).
    pub up_virtual_secs: f64,
    /// Virtual seconds measured (after bring-up and 5 s of settling).
    pub virtual_secs: u64,
    /// Datagrams the whole mesh sent per virtual second in the window.
    pub datagrams_per_virtual_sec: f64,
    /// Wall-clock milliseconds the simulator took per virtual second: the
    /// CPU cost of the hub and its leaves (one thread).
    pub wall_ms_per_virtual_sec: f64,
    /// Wall-clock microseconds per datagram.
    pub wall_us_per_datagram: f64,
}

/// A hub with `leaves` leaves in steady state for `secs` virtual seconds:
/// what it costs the process to run (the hub's per-event work grows with
/// its peer count; a leaf's does not). Bounded: 60 virtual seconds of
/// bring-up at most.
pub fn hub(leaves: usize, leaves_relay: bool, secs: u64, seed: u64) -> Result<HubReport, String> {
    let names: Vec<String> = (0..=leaves).map(|i| format!("n{i}")).collect();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let links: Vec<(usize, usize, Duration)> = (1..=leaves)
        .map(|i| (0, i, Duration::from_millis(1 + rng.next_u64() % 10)))
        .collect();
    let config = |i: usize| EndpointConfig {
        relay: i == 0 || leaves_relay,
        ..EndpointConfig::default()
    };
    let mut sim = Sim::build_each(seed, &names, &links, config, false);
    let mut up = false;
    while !up && sim.elapsed() < Duration::from_secs(60) {
        sim.run_for(Duration::from_millis(100));
        let hub = &sim.nodes[0].ep;
        let peers = hub.peers(sim.now);
        up = peers.len() >= leaves
            && peers.iter().all(|p| p.has_session)
            && (!leaves_relay || hub.router().advert_count() >= leaves)
            && sim.nodes[1..]
                .iter()
                .all(|n| n.ep.router().advert_count() >= 1);
    }
    if !up {
        return Err("the hub's leaves were not all up within 60 virtual seconds".into());
    }
    let up_virtual_secs = sim.elapsed().as_secs_f64();
    sim.run_for(Duration::from_secs(5));
    let sent = sim.sent;
    let wall = Instant::now();
    for _ in 0..secs {
        sim.run_for(Duration::from_secs(1));
    }
    let wall = wall.elapsed().as_secs_f64();
    let datagrams = (sim.sent - sent) as f64;
    Ok(HubReport {
        leaves,
        leaves_relay,
        up_virtual_secs,
        virtual_secs: secs,
        datagrams_per_virtual_sec: datagrams / secs as f64,
        wall_ms_per_virtual_sec: wall * 1000.0 / secs as f64,
        wall_us_per_datagram: wall * 1e6 / datagrams.max(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Every stub gets as many distinct relays as asked, and no relay more
    /// stubs than its cap.
    #[test]
    fn each_stub_links_to_distinct_relays_within_each_relays_room() {
        for k in [1, 2, 3] {
            let mut rng = ChaCha20Rng::seed_from_u64(7);
            let links = two_tier(1000, 50, 4, k, &mut rng).unwrap();
            let mut per_stub: HashMap<usize, Vec<usize>> = HashMap::new();
            let mut per_relay = vec![0usize; 50];
            for &(a, b, _) in links.iter().filter(|l| l.1 >= 50) {
                per_stub.entry(b).or_default().push(a);
                per_relay[a] += 1;
            }
            assert_eq!(per_stub.len(), 950);
            for relays in per_stub.values() {
                let distinct: HashSet<_> = relays.iter().collect();
                assert_eq!((relays.len(), distinct.len()), (k, k));
                assert!(relays.iter().all(|&r| r < 50));
            }
            let cap = if k <= 2 { 48 } else { 60 };
            assert!(per_relay.iter().all(|&n| n <= cap), "{k}: {per_relay:?}");
        }
        // 50 relays cannot carry 950 stubs on four links each at 60 a
        // relay, nor can five relays give a stub six.
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        assert!(two_tier(1000, 50, 4, 4, &mut rng).is_err());
        assert!(two_tier(100, 5, 4, 6, &mut rng).is_err());
    }
}
