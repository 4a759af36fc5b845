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

use proto::health::HealthConfig;

use crate::scale::{probed_mesh, Impairment};
use crate::sim::Sim;

/// A node counts as live this long after it started.
pub const SETTLE: Duration = Duration::from_secs(10);
/// Pairs checked per second.
const PAIRS: usize = 200;
/// Most hops a path may take.
const MAX_HOPS: usize = 16;
/// A flow sends a packet this often.
const FLOW_INTERVAL: Duration = Duration::from_millis(100);
/// A flow's packet counts as delivered if it arrives within this.
const FLOW_DEADLINE: Duration = Duration::from_secs(1);
/// Flows run this long before the churn starts (lookups, handshakes).
const FLOW_WARMUP: Duration = Duration::from_secs(10);
/// Marks a flow's packet (then the flow and the sequence number, LE).
const FLOW_MAGIC: &[u8; 4] = b"flow";

/// What one run measured (JSON line).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChurnReport {
    /// Nodes in the mesh.
    pub nodes: usize,
    /// Relaying nodes.
    pub relays: usize,
    /// Relays each stub links to.
    pub stub_relays: usize,
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
    /// Why the unreachable pairs had no path.
    pub causes: Causes,
    /// Fixed pairs carrying a packet every 100 ms each way (0: none).
    pub flows: usize,
    /// Their packets sent while both ends were live.
    pub flow_packets: usize,
    /// Of those, delivered within 1 s, %.
    pub flow_delivered_percent: f64,
    /// Flow pairs (both ends live) with a path through the routing state
    /// at the checks, %.
    pub flow_reachable_percent: f64,
    /// Why those flow pairs had no path.
    pub flow_causes: Causes,
    /// Loss on every link, %.
    pub loss_percent: f64,
    /// Extra delay of each datagram, up to, ms.
    pub jitter_ms: f64,
    /// Processing charged to nodes' virtual clocks (`CpuModel::measured`).
    pub cpu_model: bool,
    /// Idle links are probed this often, ms.
    pub idle_probe_ms: u64,
    /// Lost probes in a row that make a link down.
    pub down_after_misses: u32,
    /// Wire bytes a relay sent per second over the churn (probes, their
    /// answers and gossip: no data flows), mean and busiest.
    pub relay_wire_bytes_per_sec_mean: f64,
    /// See `relay_wire_bytes_per_sec_mean`.
    pub relay_wire_bytes_per_sec_max: f64,
    /// The same for stubs, mean.
    pub stub_wire_bytes_per_sec_mean: f64,
    /// Real seconds the run took.
    pub wall_secs: f64,
}

/// Why a pair had no path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broken {
    /// A node on the way sends to a crashed neighbour whose link it still
    /// counts up (the crash not yet detected); with the seconds since that
    /// crash.
    DeadHop(Duration),
    /// A relay on the way has no route to the destination.
    NoRoute,
    /// A stub on the way has no relay (no relaying link up).
    NoRelay,
    /// A node's route or default relay names a neighbour whose link is not
    /// up at that node (a route not yet recomputed).
    HopDown,
    /// More than [`MAX_HOPS`] hops (a loop).
    TooLong,
    /// A stub end has no live relaying neighbour: the topology itself
    /// leaves it cut off until one of them restarts.
    Isolated,
}

/// Why the unreachable pairs had no path (counts of pair checks).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Causes {
    /// Through a crashed node, within 1 s of its crash.
    pub dead_hop_under_1s: usize,
    /// Through a crashed node, 1–2 s after its crash.
    pub dead_hop_1_to_2s: usize,
    /// Through a crashed node, 2–5 s after its crash.
    pub dead_hop_2_to_5s: usize,
    /// Through a crashed node, 5 s or more after its crash.
    pub dead_hop_over_5s: usize,
    /// ... of all those, at a stub (its default relay crashed).
    pub dead_hop_at_stub: usize,
    /// A relay on the way without a route to the destination.
    pub no_route: usize,
    /// ... of which at a relay started less than a minute before.
    pub no_route_at_restarted: usize,
    /// A stub on the way without a relaying link up.
    pub no_relay: usize,
    /// A route or default relay over a link its node counts down.
    pub hop_down: usize,
    /// A loop (more than 16 hops).
    pub loops: usize,
    /// A stub end all of whose relaying neighbours were down (no path
    /// exists).
    pub isolated: usize,
}

impl Causes {
    fn add(&mut self, b: Broken, at_restarted: bool, at_stub: bool) {
        if matches!(b, Broken::DeadHop(_)) && at_stub {
            self.dead_hop_at_stub += 1;
        }
        match b {
            Broken::DeadHop(d) if d < Duration::from_secs(1) => self.dead_hop_under_1s += 1,
            Broken::DeadHop(d) if d < Duration::from_secs(2) => self.dead_hop_1_to_2s += 1,
            Broken::DeadHop(d) if d < Duration::from_secs(5) => self.dead_hop_2_to_5s += 1,
            Broken::DeadHop(_) => self.dead_hop_over_5s += 1,
            Broken::NoRoute => {
                self.no_route += 1;
                self.no_route_at_restarted += usize::from(at_restarted);
            }
            Broken::NoRelay => self.no_relay += 1,
            Broken::HopDown => self.hop_down += 1,
            Broken::TooLong => self.loops += 1,
            Broken::Isolated => self.isolated += 1,
        }
    }
}

/// Whether `dst` is reachable from `src` through the routing state now;
/// if not, why, and at which node the path broke.
fn reachable(
    sim: &Sim,
    index: &HashMap<NodeId, usize>,
    crashed_at: &[Duration],
    relays: usize,
    src: usize,
    dst: usize,
) -> Result<(), (Broken, usize)> {
    let target = sim.nodes[dst].ep.node_id();
    // Whether `from` counts its link to `to` up (whatever `to` is doing).
    let counted_up = |from: usize, to: usize| -> bool {
        let n = &sim.nodes[from];
        n.peers.get(&to).is_some_and(|p| {
            (n.ep.peer(*p, sim.now)).is_some_and(|v| v.has_session && v.link.is_some_and(|l| l.up))
        })
    };
    let cut_off = |n: usize| {
        n >= relays && !(sim.nodes[n].peers.keys()).any(|&r| r < relays && !sim.nodes[r].down)
    };
    if let Some(&n) = [src, dst].iter().find(|&&n| cut_off(n)) {
        return Err((Broken::Isolated, n));
    }
    let mut at = src;
    for _ in 0..MAX_HOPS {
        if at == dst || (counted_up(at, dst) && !sim.nodes[dst].down) {
            return Ok(());
        }
        let next = if at < relays {
            let Some(r) = sim.nodes[at].ep.router().route(target) else {
                return Err((Broken::NoRoute, at));
            };
            index.get(&r.next_hop).copied()
        } else {
            let Some(r) = sim.nodes[at].ep.default_relay() else {
                return Err((Broken::NoRelay, at));
            };
            index.get(&r).copied()
        };
        match next {
            Some(n) if counted_up(at, n) && sim.nodes[n].down => {
                let since = sim.elapsed().saturating_sub(crashed_at[n]);
                return Err((Broken::DeadHop(since), at));
            }
            Some(n) if counted_up(at, n) => at = n,
            _ => return Err((Broken::HopDown, at)),
        }
    }
    Err((Broken::TooLong, at))
}

/// Traffic between fixed pairs: a packet every [`FLOW_INTERVAL`] each
/// way, counted when both ends are live at sending and delivered within
/// [`FLOW_DEADLINE`].
struct Flows {
    pairs: Vec<(usize, usize)>,
    next_seq: u32,
    /// Counted packets on their way: (flow, seq) → sent at.
    pending: HashMap<(u32, u32), Duration>,
    eligible: usize,
    delivered: usize,
    checked: usize,
    reached: usize,
    causes: Causes,
}

impl Flows {
    /// `count` random pairs of distinct nodes.
    fn new(count: usize, nodes: usize, rng: &mut ChaCha20Rng) -> Self {
        let mut pairs = Vec::with_capacity(count);
        while pairs.len() < count && nodes > 1 {
            let a = rng.next_u32() as usize % nodes;
            let b = rng.next_u32() as usize % nodes;
            if a != b {
                pairs.push((a, b));
            }
        }
        Self {
            pairs,
            next_seq: 0,
            pending: HashMap::new(),
            eligible: 0,
            delivered: 0,
            checked: 0,
            reached: 0,
            causes: Causes::default(),
        }
    }

    /// One packet each way on every flow whose sender is running; those
    /// with both ends `live` are counted.
    fn send(&mut self, sim: &mut Sim, live: impl Fn(usize) -> bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let now = sim.elapsed();
        for (f, &(a, b)) in self.pairs.iter().enumerate() {
            for (dir, (from, to)) in [(a, b), (b, a)].into_iter().enumerate() {
                if sim.nodes[from].down {
                    continue;
                }
                let id = (2 * f + dir) as u32;
                let mut payload = FLOW_MAGIC.to_vec();
                payload.extend_from_slice(&id.to_le_bytes());
                payload.extend_from_slice(&seq.to_le_bytes());
                if live(from) && live(to) {
                    self.eligible += 1;
                    self.pending.insert((id, seq), now);
                }
                sim.inject(from, to, &payload);
            }
        }
    }

    /// Takes every node's deliveries: counted packets in time are
    /// delivered; counted packets older than the deadline are given up.
    fn collect(&mut self, sim: &mut Sim) {
        let now = sim.elapsed();
        let inboxes: Vec<Vec<crate::sim::Delivery>> = (sim.nodes.iter_mut())
            .map(|n| std::mem::take(&mut n.inbox))
            .collect();
        for inbox in inboxes {
            for d in inbox {
                let body = d
                    .packet
                    .get(proto::wire::ip::IPV4_HEADER_LEN..)
                    .unwrap_or(&[]);
                let (Some(magic), Some(id), Some(seq)) =
                    (body.get(..4), body.get(4..8), body.get(8..12))
                else {
                    continue;
                };
                if magic != FLOW_MAGIC {
                    continue;
                }
                let id = u32::from_le_bytes(id.try_into().unwrap_or_default());
                let seq = u32::from_le_bytes(seq.try_into().unwrap_or_default());
                if let Some(sent) = self.pending.remove(&(id, seq)) {
                    let arrived = sim.since_start(d.at);
                    self.delivered += usize::from(arrived.saturating_sub(sent) <= FLOW_DEADLINE);
                }
            }
        }
        self.pending
            .retain(|_, sent| now.saturating_sub(*sent) <= FLOW_DEADLINE);
    }
}

/// A churn scenario.
#[derive(Debug, Clone, Copy)]
pub struct Churn {
    /// Nodes in the mesh.
    pub nodes: usize,
    /// Relaying nodes (the first `relays`).
    pub relays: usize,
    /// Relays each stub links to.
    pub stub_relays: usize,
    /// Seed of topology, latencies, keys and the churn.
    pub seed: u64,
    /// Share of the nodes crashed per minute, %.
    pub churn_percent: f64,
    /// How long a crashed node stays down.
    pub down: Duration,
    /// Virtual minutes of churn.
    pub minutes: u64,
    /// Loss and jitter on every link.
    pub impair: Impairment,
    /// How every node probes its links.
    pub health: HealthConfig,
    /// Fixed random pairs of nodes exchanging a packet every 100 ms each
    /// way (links on their paths are probed at the active rate, as on a
    /// mesh carrying traffic).
    pub flows: usize,
}

impl Churn {
    /// 5 % relays (at least 3), 5 % a minute, 30 s down, default probing,
    /// no impairment.
    pub fn new(nodes: usize, minutes: u64, seed: u64) -> Self {
        Self {
            nodes,
            relays: (nodes * 5 / 100).max(3),
            stub_relays: crate::scale::STUB_RELAYS,
            seed,
            churn_percent: 5.0,
            down: Duration::from_secs(30),
            minutes,
            impair: Impairment::default(),
            health: HealthConfig::default(),
            flows: 0,
        }
    }
}

/// One run.
pub fn run(spec: &Churn) -> Result<ChurnReport, String> {
    let &Churn {
        nodes,
        relays,
        stub_relays,
        seed,
        churn_percent,
        down,
        minutes,
        impair,
        health,
        flows,
    } = spec;
    let wall = std::time::Instant::now();
    let (mut sim, _) = probed_mesh(nodes, relays, 4, stub_relays, seed, impair, Some(health))?;
    let index: HashMap<NodeId, usize> =
        (0..nodes).map(|i| (sim.nodes[i].ep.node_id(), i)).collect();
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x636875726e);
    sim.run_for(Duration::from_secs(15));
    let mut traffic = Flows::new(flows, nodes, &mut rng);
    if flows > 0 {
        let until = sim.elapsed() + FLOW_WARMUP;
        while sim.elapsed() < until {
            traffic.send(&mut sim, |_| false);
            sim.run_for(FLOW_INTERVAL);
            traffic.collect(&mut sim);
        }
        traffic = Flows {
            pairs: std::mem::take(&mut traffic.pairs),
            ..Flows::new(0, nodes, &mut rng)
        };
    }
    let mut started = vec![sim.elapsed().saturating_sub(SETTLE); nodes];
    let mut down_until: Vec<Option<Duration>> = vec![None; nodes];
    let mut crashed_at = vec![Duration::ZERO; nodes];
    let mut causes = Causes::default();
    let per_minute = ((nodes as f64 * churn_percent / 100.0).round() as usize).max(1);
    let gap = Duration::from_secs(60) / u32::try_from(per_minute).unwrap_or(u32::MAX);
    let end = sim.elapsed() + Duration::from_secs(60 * minutes);
    // Each crash falls at a random point of the first second of its slot
    // (checks run on whole seconds: a crash is seen by them at any phase).
    let phase = gap.min(Duration::from_secs(1)).as_micros().max(1) as u64;
    let mut slot = sim.elapsed();
    let mut next_crash = slot + Duration::from_micros(rng.next_u64() % phase);
    let (mut crashes, mut checked, mut reached) = (0, 0, 0);
    let mut worst: f64 = 100.0;
    let bytes_before: Vec<u64> = sim.nodes.iter().map(|n| n.bytes_sent).collect();
    let churn_start = sim.elapsed();
    let mut next_check = sim.elapsed() + Duration::from_secs(1);
    let mut next_flow = sim.elapsed();
    loop {
        // Crashes (one per `gap`), restarts (`down` later), checks (every
        // second) and flow packets (every 100 ms), each at its own time.
        let restart_due = down_until.iter().flatten().min().copied();
        let flow_due = (flows > 0).then_some(next_flow);
        let t = [Some(next_crash), restart_due, Some(next_check), flow_due]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(end);
        if t >= end {
            break;
        }
        sim.run_for(t.saturating_sub(sim.elapsed()));
        while next_crash <= sim.elapsed() {
            let live: Vec<usize> = (0..nodes).filter(|&i| down_until[i].is_none()).collect();
            let victim = live[rng.next_u32() as usize % live.len()];
            sim.crash(victim);
            crashed_at[victim] = sim.elapsed();
            down_until[victim] = Some(sim.elapsed() + down);
            crashes += 1;
            slot += gap;
            next_crash = slot + Duration::from_micros(rng.next_u64() % phase);
        }
        for i in 0..nodes {
            if down_until[i].is_some_and(|t| t <= sim.elapsed()) {
                down_until[i] = None;
                sim.restart(i);
                started[i] = sim.elapsed();
            }
        }
        if flows > 0 && next_flow <= sim.elapsed() {
            let now = sim.elapsed();
            traffic.collect(&mut sim);
            let live = |i: usize| down_until[i].is_none() && now >= started[i] + SETTLE;
            traffic.send(&mut sim, live);
            next_flow += FLOW_INTERVAL;
        }
        if next_check > sim.elapsed() {
            continue;
        }
        next_check += Duration::from_secs(1);
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
            match reachable(&sim, &index, &crashed_at, relays, a, b) {
                Ok(()) => r += 1,
                Err((why, at)) => {
                    let fresh = now < started[at] + Duration::from_secs(60);
                    causes.add(why, fresh, at >= relays);
                }
            }
        }
        for &(a, b) in &traffic.pairs {
            if live.binary_search(&a).is_ok() && live.binary_search(&b).is_ok() {
                traffic.checked += 1;
                match reachable(&sim, &index, &crashed_at, relays, a, b) {
                    Ok(()) => traffic.reached += 1,
                    Err((why, at)) => {
                        let fresh = now < started[at] + Duration::from_secs(60);
                        traffic.causes.add(why, fresh, at >= relays);
                    }
                }
            }
        }
        checked += c;
        reached += r;
        if c > 0 {
            worst = worst.min(100.0 * r as f64 / c as f64);
        }
        // A long run (10,000 nodes: hours of one core) says how far it is.
        let into = now.saturating_sub(churn_start).as_secs();
        if into > 0 && into % 60 == 0 {
            eprintln!(
                "churn: {nodes} nodes, minute {}/{minutes}: {crashes} crashes, {:.3} % of {checked} pairs reachable, {:.0} s wall",
                into / 60,
                100.0 * reached as f64 / checked.max(1) as f64,
                wall.elapsed().as_secs_f64()
            );
        }
    }
    sim.run_for(FLOW_DEADLINE);
    traffic.collect(&mut sim);
    let secs = sim
        .elapsed()
        .saturating_sub(churn_start)
        .as_secs_f64()
        .max(1.0);
    let rate = |i: usize| (sim.nodes[i].bytes_sent - bytes_before[i]) as f64 / secs;
    let relay_rates: Vec<f64> = (0..relays.min(nodes)).map(rate).collect();
    let stub_rates: Vec<f64> = (relays.min(nodes)..nodes).map(rate).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    Ok(ChurnReport {
        nodes,
        relays: relays.min(nodes),
        stub_relays,
        seed,
        churn_percent_per_min: churn_percent,
        down_secs: down.as_secs_f64(),
        minutes,
        crashes,
        pairs_checked: checked,
        reachable_percent: 100.0 * reached as f64 / checked.max(1) as f64,
        worst_second_percent: worst,
        causes,
        flows,
        flow_packets: traffic.eligible,
        flow_delivered_percent: 100.0 * traffic.delivered as f64 / traffic.eligible.max(1) as f64,
        flow_reachable_percent: 100.0 * traffic.reached as f64 / traffic.checked.max(1) as f64,
        flow_causes: traffic.causes,
        loss_percent: impair.loss * 100.0,
        jitter_ms: impair.jitter.as_secs_f64() * 1000.0,
        cpu_model: impair.cpu,
        idle_probe_ms: health.idle_probe_interval.as_millis() as u64,
        down_after_misses: health.down_after_misses,
        relay_wire_bytes_per_sec_mean: mean(&relay_rates),
        relay_wire_bytes_per_sec_max: relay_rates.iter().copied().fold(0.0, f64::max),
        stub_wire_bytes_per_sec_mean: mean(&stub_rates),
        wall_secs: wall.elapsed().as_secs_f64(),
    })
}
