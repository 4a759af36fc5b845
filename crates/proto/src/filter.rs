//! Per-packet policy enforcement with connection tracking.
//!
//! Every inner packet is checked twice: by the sender before sealing
//! ([`Direction::Out`]) and by the receiver after opening
//! ([`Direction::In`]). A packet passes if it belongs to a tracked flow, or
//! if the compiled policy ([`crate::policy::Compiled`]) allows it, in which
//! case its flow is tracked so that replies pass both ends without a rule of
//! their own (as Nebula's firewall and netfilter's conntrack do).
//!
//! Flows are keyed from this node's point of view, (protocol, local address,
//! remote address, local port, remote port), so a packet and its reply map
//! to the same entry. ICMP echo uses its identifier as both ports. ICMP
//! errors (unreachable, too big, time exceeded, parameter problem) pass if
//! the packet they quote belongs to a tracked flow, so path-MTU discovery
//! works through a default-deny policy. Non-first IPv4/IPv6 fragments carry
//! no ports: they pass if their datagram's first fragment passed (tracked
//! by (protocol, addresses, identification) for [`FRAGMENT_TIMEOUT`]).
//!
//! A flow is *unreplied* until a packet of it goes the other way. Unreplied
//! flows expire after [`UNREPLIED_TIMEOUT`]; replied ones after an idle
//! timeout per protocol (Nebula's defaults: TCP 12 min, UDP 3 min, other
//! 10 min). The table is bounded, and a flood of allowed flows that are
//! never answered (a SYN flood from a member of an allowed segment) cannot
//! lock out new connections: one remote address holds at most
//! [`FilterLimits::max_unreplied_per_remote`] unreplied flows (past that its
//! new flows are decided by the policy but not tracked, counted as
//! `conntrack_quota`), and when the table is full a new flow takes the place
//! of the oldest unreplied one. Only when every tracked flow has been
//! replied to is a new flow left untracked (its replies then need a rule of
//! their own), counted as `conntrack_full` (a full table is swept at most
//! every [`SWEEP_INTERVAL`]). When the policy changes, every entry is
//! re-checked against the new policy the next time it is hit, so tightening
//! a policy cuts established flows too.
//!
//! Pure: time is an argument, nothing here touches a socket or a clock.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::policy::{Compiled, DenyReason, Identity, Verdict};
use crate::wire::ip::{Packet, TCP, UDP};

/// Idle timeout of a TCP flow.
pub const TCP_TIMEOUT: Duration = Duration::from_secs(12 * 60);
/// Idle timeout of a UDP flow.
pub const UDP_TIMEOUT: Duration = Duration::from_secs(3 * 60);
/// Idle timeout of any other flow (ICMP echo included).
pub const OTHER_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Idle timeout of a flow no packet has answered yet (a TCP handshake or a
/// UDP request waits this long for its first reply).
pub const UNREPLIED_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a first fragment vouches for the rest of its datagram.
pub const FRAGMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often expired entries are swept.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Which way a packet goes, seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the TUN device to a peer (checked before sealing).
    Out,
    /// From a peer to the TUN device (checked after opening).
    In,
}

impl Direction {
    /// `"in"` or `"out"`, for metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Out => "out",
            Self::In => "in",
        }
    }
}

/// A flow from this node's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    proto: u8,
    local: IpAddr,
    remote: IpAddr,
    lport: u16,
    rport: u16,
}

impl FlowKey {
    fn of(dir: Direction, proto: u8, src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Self {
        match dir {
            Direction::Out => Self {
                proto,
                local: src,
                remote: dst,
                lport: sport,
                rport: dport,
            },
            Direction::In => Self {
                proto,
                local: dst,
                remote: src,
                lport: dport,
                rport: sport,
            },
        }
    }
}

/// Packs a flow into few words, so hashing it costs a handful of
/// multiplications instead of SipHash over a byte stream.
impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let family = u64::from(self.local.is_ipv6()) << 1 | u64::from(self.remote.is_ipv6());
        h.write_u64(
            u64::from(self.proto)
                | u64::from(self.lport) << 8
                | u64::from(self.rport) << 24
                | family << 40,
        );
        for a in [self.local, self.remote] {
            match a {
                IpAddr::V4(v) => h.write_u64(u64::from(u32::from(v))),
                IpAddr::V6(v) => {
                    let x = u128::from(v);
                    h.write_u64(x as u64);
                    h.write_u64((x >> 64) as u64);
                }
            }
        }
    }
}

/// A keyed multiply-fold hasher (the construction of foldhash) for the
/// connection-tracking tables. Keys come from authenticated peers only, and
/// the per-table random seed keeps even them from choosing collisions.
#[derive(Debug, Clone, Copy)]
struct Keyed {
    seed: u64,
}

impl Keyed {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // std's RandomState is seeded from the OS once per process and
        // varied per instance.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x6d65_7368_6420_6374);
        Self { seed: h.finish() }
    }
}

fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

const K1: u64 = 0x243f_6a88_85a3_08d3;
const K2: u64 = 0x1319_8a2e_0370_7344;

#[derive(Debug, Clone, Copy)]
struct KeyedHasher {
    state: u64,
    seed: u64,
}

impl std::hash::Hasher for KeyedHasher {
    fn finish(&self) -> u64 {
        fold_mul(self.state, self.seed ^ K2)
    }

    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.state = fold_mul(self.state ^ n, self.seed ^ K1);
    }
}

impl std::hash::BuildHasher for Keyed {
    type Hasher = KeyedHasher;

    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher {
            state: self.seed,
            seed: self.seed,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    expires: Instant,
    /// Policy generation it was last checked against.
    generation: u64,
    /// Direction of the packet that opened it, and its policy port: enough
    /// to re-check the flow against a new policy.
    opened: Direction,
    policy_port: u16,
    /// A packet of it went the other way.
    replied: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    ident: u32,
}

/// Per-direction, per-reason counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Packets refused, `[direction][reason]` with direction 0 = out,
    /// 1 = in and reason 0 = enclave, 1 = deny rule, 2 = default.
    pub denied: [[u64; 3]; 2],
    /// Refusals per deny rule (index in the policy).
    pub rule_denied: Vec<u64>,
    /// Packets passed because their flow was tracked.
    pub tracked_passes: u64,
    /// New flows not tracked because the table was full of replied flows.
    pub conntrack_full: u64,
    /// New flows not tracked because their remote address held its quota
    /// of unreplied flows.
    pub conntrack_quota: u64,
    /// Unreplied flows evicted to make room for a new flow.
    pub conntrack_evicted: u64,
    /// Tracked flows cut when a new policy no longer allowed them.
    pub flows_revoked: u64,
    /// Inner packets whose IP header could not be parsed.
    pub unparsable: u64,
}

impl FilterStats {
    /// Refusals in `dir` for `reason` (the name as in [`reason_name`]).
    pub fn denied(&self, dir: Direction, reason: DenyReason) -> u64 {
        self.denied[dir_slot(dir)][reason_slot(reason)]
    }

    /// All refusals.
    pub fn total_denied(&self) -> u64 {
        self.denied.iter().flatten().sum()
    }
}

fn dir_slot(d: Direction) -> usize {
    match d {
        Direction::Out => 0,
        Direction::In => 1,
    }
}

fn reason_slot(r: DenyReason) -> usize {
    match r {
        DenyReason::Enclave => 0,
        DenyReason::Rule(_) => 1,
        DenyReason::Default => 2,
    }
}

/// Stable names of the three refusal kinds, in counter order.
pub const REASON_NAMES: [&str; 3] = ["enclave", "deny_rule", "default"];

/// The metrics name of a refusal.
pub fn reason_name(r: DenyReason) -> &'static str {
    REASON_NAMES[reason_slot(r)]
}

/// Table bounds.
#[derive(Debug, Clone, Copy)]
pub struct FilterLimits {
    /// Tracked flows at most.
    pub max_flows: usize,
    /// Fragment vouchers at most.
    pub max_fragments: usize,
    /// Unreplied flows one remote address may hold at most.
    pub max_unreplied_per_remote: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        Self {
            max_flows: 65_536,
            max_fragments: 4_096,
            max_unreplied_per_remote: 1_024,
        }
    }
}

/// The policy in force plus the connection-tracking table.
#[derive(Debug)]
pub struct Filter {
    policy: Option<Arc<Compiled>>,
    generation: u64,
    limits: FilterLimits,
    flows: HashMap<FlowKey, Flow, Keyed>,
    /// Unreplied flows per remote address.
    unreplied: HashMap<IpAddr, usize>,
    /// Unreplied flows, oldest first (entries since replied to or removed
    /// are skipped when they come up).
    unreplied_order: VecDeque<FlowKey>,
    fragments: HashMap<FragKey, Instant>,
    sweep_at: Option<Instant>,
    /// Earliest next sweep triggered by a full table.
    full_sweep_at: Option<Instant>,
    stats: FilterStats,
}

/// A refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    /// Which way the packet went.
    pub direction: Direction,
    /// Why.
    pub reason: DenyReason,
}

impl Filter {
    /// No policy: everything passes and nothing is tracked.
    pub fn new(limits: FilterLimits) -> Self {
        Self {
            policy: None,
            generation: 0,
            limits,
            flows: HashMap::with_hasher(Keyed::new()),
            unreplied: HashMap::new(),
            unreplied_order: VecDeque::new(),
            fragments: HashMap::new(),
            sweep_at: None,
            full_sweep_at: None,
            stats: FilterStats::default(),
        }
    }

    /// Puts `policy` in force (or none: allow everything). Tracked flows are
    /// re-checked against it when next used.
    pub fn set_policy(&mut self, policy: Option<Arc<Compiled>>) {
        self.stats.rule_denied = vec![0; policy.as_ref().map_or(0, |p| p.rules().len())];
        self.policy = policy;
        self.generation += 1;
        if self.policy.is_none() {
            self.flows.clear();
            self.unreplied.clear();
            self.unreplied_order.clear();
            self.fragments.clear();
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Option<&Arc<Compiled>> {
        self.policy.as_ref()
    }

    /// Bumped by every [`Filter::set_policy`]; identities computed under an
    /// older generation must be recomputed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Counters.
    pub fn stats(&self) -> &FilterStats {
        &self.stats
    }

    /// Tracked flows now.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Decides a packet. `ident(addr, local)` returns the policy identity of
    /// the node owning `addr` (ours when `local`); it is called only when
    /// the flow is not tracked. `Err` is a refusal, already counted.
    pub fn check(
        &mut self,
        now: Instant,
        dir: Direction,
        pkt: &Packet,
        mut ident: impl FnMut(IpAddr, bool) -> Identity,
    ) -> Result<(), Denied> {
        let Some(policy) = self.policy.clone() else {
            return Ok(());
        };
        // ICMP errors ride on the flow they quote.
        if let Some((qs, qd, qp, qsp, qdp)) = pkt.quoted {
            // The quoted packet went the opposite way to this error.
            let qdir = match dir {
                Direction::Out => Direction::In,
                Direction::In => Direction::Out,
            };
            let key = FlowKey::of(qdir, qp, qs, qd, qsp, qdp);
            if self.touch(now, key, None, &policy, &mut ident) {
                return Ok(());
            }
        }
        if let Some(f) = pkt.fragment.filter(|f| !f.first) {
            let fk = FragKey {
                proto: pkt.proto,
                src: pkt.src,
                dst: pkt.dst,
                ident: f.ident,
            };
            if self.fragments.get(&fk).is_some_and(|t| *t > now) {
                self.stats.tracked_passes += 1;
                return Ok(());
            }
            // Its first fragment did not pass (or never came): judge it
            // by protocol alone, with port 0.
        }
        let key = FlowKey::of(dir, pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport);
        if self.touch(now, key, Some(dir), &policy, &mut ident) {
            return Ok(());
        }
        let (local, remote) = match dir {
            Direction::Out => (pkt.src, pkt.dst),
            Direction::In => (pkt.dst, pkt.src),
        };
        let (l, r) = (ident(local, true), ident(remote, false));
        let verdict = match dir {
            Direction::Out => policy.decide(&l, &r, pkt.proto, pkt.policy_port),
            Direction::In => policy.decide(&r, &l, pkt.proto, pkt.policy_port),
        };
        match verdict {
            Verdict::Allow => {
                self.track(now, key, dir, pkt);
                Ok(())
            }
            Verdict::Deny(reason) => {
                self.count(dir, reason);
                Err(Denied {
                    direction: dir,
                    reason,
                })
            }
        }
    }

    fn count(&mut self, dir: Direction, reason: DenyReason) {
        self.stats.denied[dir_slot(dir)][reason_slot(reason)] += 1;
        if let DenyReason::Rule(i) = reason {
            if let Some(c) = self.stats.rule_denied.get_mut(i) {
                *c += 1;
            }
        }
    }

    /// Refreshes a tracked flow; re-checks it first if the policy changed
    /// since. False if untracked, expired, or no longer allowed. `dir` is
    /// the packet's direction (`None` for an ICMP error about the flow,
    /// which is no reply).
    fn touch(
        &mut self,
        now: Instant,
        key: FlowKey,
        dir: Option<Direction>,
        policy: &Compiled,
        ident: &mut impl FnMut(IpAddr, bool) -> Identity,
    ) -> bool {
        let Some(flow) = self.flows.get_mut(&key) else {
            return false;
        };
        if flow.expires <= now {
            self.remove(&key);
            return false;
        }
        if flow.generation != self.generation {
            let (l, r) = (ident(key.local, true), ident(key.remote, false));
            let v = match flow.opened {
                Direction::Out => policy.decide(&l, &r, key.proto, flow.policy_port),
                Direction::In => policy.decide(&r, &l, key.proto, flow.policy_port),
            };
            if v != Verdict::Allow {
                self.remove(&key);
                self.stats.flows_revoked += 1;
                return false;
            }
            flow.generation = self.generation;
        }
        if !flow.replied && dir.is_some_and(|d| d != flow.opened) {
            flow.replied = true;
            unreplied_done(&mut self.unreplied, key.remote);
        }
        flow.expires = now
            + if flow.replied {
                timeout(key.proto)
            } else {
                UNREPLIED_TIMEOUT
            };
        self.stats.tracked_passes += 1;
        true
    }

    /// Drops a tracked flow, keeping the unreplied counts.
    fn remove(&mut self, key: &FlowKey) {
        if let Some(f) = self.flows.remove(key) {
            if !f.replied {
                unreplied_done(&mut self.unreplied, key.remote);
            }
        }
    }

    fn track(&mut self, now: Instant, key: FlowKey, dir: Direction, pkt: &Packet) {
        if self.flows.len() >= self.limits.max_flows
            || self.fragments.len() >= self.limits.max_fragments
        {
            // Full: sweep, but at most once per SWEEP_INTERVAL, so a peer
            // opening flow after flow cannot make every packet scan the
            // whole table.
            if self.full_sweep_at.is_none_or(|t| t <= now) {
                self.sweep(now);
                self.full_sweep_at = Some(now + SWEEP_INTERVAL);
            }
        }
        if let Some(f) = pkt.fragment.filter(|f| f.first) {
            if self.fragments.len() < self.limits.max_fragments {
                let fk = FragKey {
                    proto: pkt.proto,
                    src: pkt.src,
                    dst: pkt.dst,
                    ident: f.ident,
                };
                self.fragments.insert(fk, now + FRAGMENT_TIMEOUT);
            }
        }
        if self.unreplied.get(&key.remote).copied().unwrap_or(0)
            >= self.limits.max_unreplied_per_remote
        {
            self.stats.conntrack_quota += 1;
            return;
        }
        if self.flows.len() >= self.limits.max_flows && !self.evict_unreplied() {
            self.stats.conntrack_full += 1;
            return;
        }
        self.flows.insert(
            key,
            Flow {
                expires: now + UNREPLIED_TIMEOUT,
                generation: self.generation,
                opened: dir,
                policy_port: pkt.policy_port,
                replied: false,
            },
        );
        *self.unreplied.entry(key.remote).or_insert(0) += 1;
        self.unreplied_order.push_back(key);
        // Replied and removed flows leave stale entries behind.
        if self.unreplied_order.len() > 2 * self.limits.max_flows + 64 {
            let flows = &self.flows;
            self.unreplied_order
                .retain(|k| flows.get(k).is_some_and(|f| !f.replied));
        }
        if self.sweep_at.is_none() {
            self.sweep_at = Some(now + SWEEP_INTERVAL);
        }
    }

    /// Makes room by dropping the oldest unreplied flow; false if every
    /// tracked flow has been replied to.
    fn evict_unreplied(&mut self) -> bool {
        while let Some(k) = self.unreplied_order.pop_front() {
            if self.flows.get(&k).is_some_and(|f| !f.replied) {
                self.remove(&k);
                self.stats.conntrack_evicted += 1;
                return true;
            }
        }
        false
    }

    /// When [`Filter::handle_timeout`] has expired entries to sweep.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sweep_at
    }

    /// Sweeps expired entries if due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.sweep_at.is_some_and(|t| t <= now) {
            self.sweep(now);
            self.sweep_at = (!self.flows.is_empty() || !self.fragments.is_empty())
                .then(|| now + SWEEP_INTERVAL);
        }
    }

    fn sweep(&mut self, now: Instant) {
        let unreplied = &mut self.unreplied;
        self.flows.retain(|k, f| {
            let keep = f.expires > now;
            if !keep && !f.replied {
                unreplied_done(unreplied, k.remote);
            }
            keep
        });
        self.fragments.retain(|_, t| *t > now);
    }

    /// Counts an inner packet that did not parse.
    pub fn count_unparsable(&mut self) {
        self.stats.unparsable += 1;
    }

    /// Forgets every flow to or from `addrs` (a peer that was revoked or
    /// whose session was refused).
    pub fn forget(&mut self, addrs: &[IpAddr]) {
        self.flows.retain(|k, _| !addrs.contains(&k.remote));
        self.unreplied.retain(|a, _| !addrs.contains(a));
    }

    /// Unreplied flows `remote` holds.
    pub fn unreplied(&self, remote: IpAddr) -> usize {
        self.unreplied.get(&remote).copied().unwrap_or(0)
    }
}

/// One fewer unreplied flow for `remote`.
fn unreplied_done(counts: &mut HashMap<IpAddr, usize>, remote: IpAddr) {
    if let Some(n) = counts.get_mut(&remote) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&remote);
        }
    }
}

fn timeout(proto: u8) -> Duration {
    match proto {
        TCP => TCP_TIMEOUT,
        UDP => UDP_TIMEOUT,
        _ => OTHER_TIMEOUT,
    }
}

#[cfg(test)]
mod tests;
