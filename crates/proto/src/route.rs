//! Link-state routing: a database of adverts, shortest paths, hysteresis.
//!
//! Every node advertises its working direct links ([`crate::control::Advert`]);
//! adverts are flooded through the sessions, and the highest sequence number
//! per origin wins. [`Router::recompute`] runs Dijkstra from this node over
//! its own measured links plus every advertised link, with the metric
//!
//! ```text
//! cost(link) = rtt_us + max(0, loss_permille − loss_free_permille) · loss_penalty_us
//!              + hop_cost_us
//!              (+ hold_down_penalty_us on a link in hold-down)
//! ```
//!
//! A link in hold-down is flagged in its owner's advert, so every node adds
//! the same penalty: were it only known locally, two nodes that both just
//! regained a link to the same destination would each route through the
//! other, in a loop.
//!
//! A node whose advert is flagged `stub` or `no_transit` does not relay:
//! paths may end at it but never pass through it. A relay with more links than an advert lists
//! flags its advert `truncated`; its links to stubs left out count when the
//! stub's own advert lists the relay.
//!
//! An advertised link u→v counts only if v does not contradict it (v's own
//! advert, if present, must list u): a stale half of a dead link is not a
//! path. Links to or from this node come only from its own probes.
//!
//! Hysteresis: a destination keeps its current next hop while that next hop
//! still reaches it and costs no more than `switch_factor` × the best plus
//! `switch_margin_us`; a recovered link is heavily penalised until its
//! hold-down ends (see [`crate::health`]), so traffic returns once, not
//! back and forth.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::{Advert, LinkEntry};
use crate::wire::NodeId;

/// Hashing for node-id keys. Ids are prefixes of X25519 public keys of
/// CA-certified members, so they are already uniform; one multiply spreads
/// them over the table, far cheaper than SipHash on the Dijkstra hot path.
/// (Choosing colliding ids takes a certificate from the mesh CA per id.)
#[derive(Debug, Clone, Copy, Default)]
pub struct Ids;

/// The hasher [`Ids`] builds.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}

impl BuildHasher for Ids {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// Routing parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteConfig {
    /// Added to every link, so fewer hops win ties.
    pub hop_cost_us: u64,
    /// Cost per ‰ of probe loss above `loss_free_permille`.
    pub loss_penalty_us: u64,
    /// Loss up to this many ‰ costs nothing: a few lost probes in the
    /// 64-probe window must not move traffic, or random loss would flap routes.
    pub loss_free_permille: u16,
    /// A destination whose current next hop still works moves to a better
    /// one only after that one was best for this long (a failed next hop is
    /// replaced at once; a recovered direct link has its own hold-down).
    pub switch_after: Duration,
    /// Added to an own link that came back up and is still in hold-down.
    pub hold_down_penalty_us: u64,
    /// Keep the current next hop unless the best is cheaper than
    /// current / `switch_factor` − `switch_margin_us`.
    pub switch_factor: f64,
    /// See `switch_factor`.
    pub switch_margin_us: u64,
    /// A destination with a working direct link is reached directly unless
    /// a relayed path is cheaper by more than this, or by more than
    /// `direct_spread_factor` times the link's measured RTT spread
    /// (whichever is more): RTT noise never moves traffic off a working
    /// direct link.
    pub direct_margin_us: u64,
    /// See `direct_margin_us`.
    pub direct_spread_factor: f64,
    /// Adverts not refreshed for this long are forgotten (at least: the
    /// endpoint stretches it with the refresh interval), and so are those
    /// whose origin no link reaches for this long, however recently they
    /// were refreshed.
    pub advert_max_age: Duration,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            hop_cost_us: 100,
            loss_penalty_us: 100,
            loss_free_permille: 100,
            switch_after: Duration::from_secs(3),
            hold_down_penalty_us: 1_000_000,
            switch_factor: 1.25,
            switch_margin_us: 100,
            direct_margin_us: 1_000,
            direct_spread_factor: 2.0,
            advert_max_age: Duration::from_secs(30),
        }
    }
}

/// This node's view of one of its direct links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnLink {
    /// The neighbour.
    pub neighbor: NodeId,
    /// Up by its probes.
    pub up: bool,
    /// Up and past its hold-down.
    pub settled: bool,
    /// Smoothed RTT, µs.
    pub rtt_us: u32,
    /// Probe loss, ‰.
    pub loss_permille: u16,
    /// How much its RTT varies: the largest minus the smallest probe RTT
    /// of the base-RTT window, µs.
    pub spread_us: u32,
}

/// The chosen route to one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// First hop: the destination itself for a direct route.
    pub next_hop: NodeId,
    /// Path cost (see the module docs), µs.
    pub metric_us: u64,
    /// Links on the path.
    pub hops: u8,
    /// When this next hop was chosen.
    pub since: Instant,
}

/// A change made by [`Router::recompute`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteChange {
    /// Destination.
    pub dst: NodeId,
    /// Next hop before (`None`: unreachable).
    pub old: Option<NodeId>,
    /// Next hop now (`None`: unreachable).
    pub new: Option<NodeId>,
}

/// The link-state database and route table of one node.
#[derive(Debug, Clone)]
pub struct Router {
    me: NodeId,
    config: RouteConfig,
    adverts: HashMap<NodeId, (Arc<Advert>, Instant), Ids>,
    routes: HashMap<NodeId, Route, Ids>,
    /// A better next hop waiting out `switch_after`, per destination.
    candidates: HashMap<NodeId, (NodeId, Instant), Ids>,
    /// Bumped whenever the advert set changes.
    generation: u64,
    /// The inputs of the last computation: generation and own links with
    /// RTT rounded to 4 significant bits.
    last_inputs: Option<(u64, Vec<OwnLink>)>,
    /// Destinations routes are kept for (`None`: every one reached). A stub
    /// forwards for nobody: it keeps routes to its own peers only.
    scope: Option<HashSet<NodeId, Ids>>,
    /// Nodes the last computation reached.
    reachable: usize,
    /// Shortest-path computations run.
    computations: u64,
    /// Origins of held adverts that no path reached, since when.
    unreachable_since: HashMap<NodeId, Instant, Ids>,
}

/// How a shortest-path run reached a node.
#[derive(Debug, Clone, Copy)]
struct Reach {
    cost: u64,
    hops: u8,
    first: NodeId,
    pred: NodeId,
}

/// One shortest-path run's results.
struct Tree(HashMap<NodeId, Reach, Ids>);

struct Graph<'a> {
    me: NodeId,
    config: &'a RouteConfig,
    own: &'a [OwnLink],
    adverts: &'a HashMap<NodeId, (Arc<Advert>, Instant), Ids>,
    /// Links of relays whose adverts are truncated, vouched for by the
    /// stubs at their other end: relay → (stub, the stub's entry).
    vouched: HashMap<NodeId, Vec<(NodeId, LinkEntry)>, Ids>,
}

/// Links a truncated relay advert leaves out, from the adverts of the stubs
/// that list the relay (see [`Advert::truncated`]).
fn vouched_links(
    adverts: &HashMap<NodeId, (Arc<Advert>, Instant), Ids>,
) -> HashMap<NodeId, Vec<(NodeId, LinkEntry)>, Ids> {
    let mut out: HashMap<NodeId, Vec<(NodeId, LinkEntry)>, Ids> = HashMap::default();
    for (a, _) in adverts.values().filter(|(a, _)| a.stub) {
        for l in &a.links {
            let left_out = adverts.get(&l.neighbor).is_some_and(|(r, _)| {
                r.truncated && !r.stub && !r.links.iter().any(|x| x.neighbor == a.origin)
            });
            if left_out {
                out.entry(l.neighbor).or_default().push((a.origin, *l));
            }
        }
    }
    out
}

impl Graph<'_> {
    fn own_cost(&self, l: &OwnLink) -> Option<u64> {
        l.up.then(|| self.cost(l.rtt_us, l.loss_permille, !l.settled))
    }

    fn cost(&self, rtt_us: u32, loss_permille: u16, settling: bool) -> u64 {
        let penalty = if settling {
            self.config.hold_down_penalty_us
        } else {
            0
        };
        u64::from(rtt_us.max(1))
            + u64::from(loss_permille.saturating_sub(self.config.loss_free_permille))
                * self.config.loss_penalty_us
            + self.config.hop_cost_us
            + penalty
    }

    fn contradicted(&self, from: NodeId, to: NodeId) -> bool {
        self.adverts
            .get(&to)
            .is_some_and(|(a, _)| !a.links.iter().any(|l| l.neighbor == from))
    }

    fn neighbors(&self, u: NodeId, mut f: impl FnMut(NodeId, u64)) {
        if u == self.me {
            for l in self.own {
                if let Some(c) = self.own_cost(l) {
                    f(l.neighbor, c);
                }
            }
            return;
        }
        // A stub, or a node behind a NAT, is a destination, never a hop.
        let Some((a, _)) = (self.adverts.get(&u)).filter(|(a, _)| !a.stub && !a.no_transit) else {
            return;
        };
        for l in &a.links {
            if l.neighbor == self.me || self.contradicted(u, l.neighbor) {
                continue;
            }
            f(l.neighbor, self.cost(l.rtt_us, l.loss_permille, l.settling));
        }
        for (stub, l) in self.vouched.get(&u).into_iter().flatten() {
            if *stub != self.me {
                f(*stub, self.cost(l.rtt_us, l.loss_permille, l.settling));
            }
        }
    }

    /// Shortest paths from `src`, never passing through `avoid`: for each
    /// node reached, its cost, hop count, first hop and predecessor.
    fn shortest(&self, src: NodeId, avoid: Option<NodeId>) -> HashMap<NodeId, Reach, Ids> {
        let mut best: HashMap<NodeId, Reach, Ids> = HashMap::default();
        let mut heap = BinaryHeap::new();
        best.insert(
            src,
            Reach {
                cost: 0,
                hops: 0,
                first: src,
                pred: src,
            },
        );
        heap.push(Reverse((0u64, src, 0u8, src)));
        while let Some(Reverse((d, u, hops, first))) = heap.pop() {
            if best.get(&u).is_some_and(|b| b.cost < d) {
                continue;
            }
            self.neighbors(u, |v, c| {
                if Some(v) == avoid || v == src {
                    return;
                }
                let nd = d + c;
                let first_hop = if u == src { v } else { first };
                if best.get(&v).is_none_or(|b| nd < b.cost) {
                    let h = hops.saturating_add(1);
                    let reach = Reach {
                        cost: nd,
                        hops: h,
                        first: first_hop,
                        pred: u,
                    };
                    best.insert(v, reach);
                    heap.push(Reverse((nd, v, h, first_hop)));
                }
            });
        }
        best.remove(&src);
        best
    }

    /// RTT (µs) of the link u→v as this node knows it.
    fn link_rtt(&self, u: NodeId, v: NodeId) -> u32 {
        if u == self.me {
            return self
                .own
                .iter()
                .find(|l| l.neighbor == v)
                .map_or(0, |l| l.rtt_us);
        }
        let listed = |from: NodeId, to: NodeId| {
            self.adverts
                .get(&from)
                .and_then(|(a, _)| a.links.iter().find(|l| l.neighbor == to))
                .map(|l| l.rtt_us)
        };
        // A link a truncated advert left out: the stub's side of it.
        listed(u, v).or_else(|| listed(v, u)).unwrap_or(0)
    }
}

impl Router {
    /// An empty router for node `me`.
    pub fn new(me: NodeId, config: RouteConfig) -> Self {
        Self {
            me,
            config,
            adverts: HashMap::default(),
            routes: HashMap::default(),
            candidates: HashMap::default(),
            generation: 0,
            last_inputs: None,
            scope: None,
            reachable: 0,
            computations: 0,
            unreachable_since: HashMap::default(),
        }
    }

    /// Stores `advert` if it is newer than what we hold for its origin.
    /// Returns whether it was new (and so should be flooded on).
    pub fn handle_advert(&mut self, now: Instant, advert: impl Into<Arc<Advert>>) -> bool {
        let advert = advert.into();
        if advert.origin == self.me {
            return false;
        }
        if let Some((held, _)) = self.adverts.get(&advert.origin) {
            if held.seq >= advert.seq {
                return false;
            }
        }
        // A fresh advert restarts the unreachable clock: the next
        // computation decides (a healed partition brings fresh adverts from
        // nodes long unreachable).
        self.unreachable_since.remove(&advert.origin);
        self.adverts.insert(advert.origin, (advert, now));
        self.generation += 1;
        true
    }

    /// Forgets adverts not refreshed for `max_age` (at least
    /// `RouteConfig::advert_max_age`), and adverts whose origin the route
    /// computations have not reached for `RouteConfig::advert_max_age`: a
    /// node that is gone for good leaves the database in that time, not in
    /// the refresh-scaled `max_age` (hours in a large mesh), and a copy a
    /// neighbour's database sync brings back goes the same way. A stub
    /// (routes scoped with [`Router::scope_routes`]) keeps relays' adverts
    /// regardless of age: relays send it their changes, not their refreshes,
    /// and it forwards nothing. Returns whether any went.
    pub fn expire(&mut self, now: Instant, max_age: Duration) -> bool {
        let before = self.adverts.len();
        let max = self.config.advert_max_age.max(max_age);
        let cut_off = self.config.advert_max_age;
        let unreachable = &mut self.unreachable_since;
        // A stub is sent relays' changes, not their refreshes: it keeps a
        // relay's advert while it reaches the relay.
        let stub = self.scope.is_some();
        self.adverts.retain(|origin, (a, at)| {
            let lost = unreachable
                .get(origin)
                .is_some_and(|t| now.saturating_duration_since(*t) >= cut_off);
            let fresh = (stub && !a.stub) || now.saturating_duration_since(*at) < max;
            fresh && !lost
        });
        unreachable.retain(|origin, _| self.adverts.contains_key(origin));
        let changed = self.adverts.len() != before;
        if changed {
            self.generation += 1;
        }
        changed
    }

    /// Drops `origin`'s advert (a revoked node, or one outside our enclaves:
    /// its link state is neither used nor passed on). Returns whether one
    /// was held.
    pub fn forget(&mut self, origin: NodeId) -> bool {
        let had = self.adverts.remove(&origin).is_some();
        self.unreachable_since.remove(&origin);
        if had {
            self.generation += 1;
        }
        had
    }

    /// Every advert held (for syncing a new neighbour).
    pub fn adverts(&self) -> impl Iterator<Item = &Advert> {
        self.adverts.values().map(|(a, _)| &**a)
    }

    /// The route to `dst`, if reachable.
    pub fn route(&self, dst: NodeId) -> Option<&Route> {
        self.routes.get(&dst)
    }

    /// The advert held for `origin`.
    pub fn advert(&self, origin: NodeId) -> Option<&Advert> {
        self.adverts.get(&origin).map(|(a, _)| &**a)
    }

    /// Whether `node` said it does not relay (false while we hold no advert).
    pub fn is_stub(&self, node: NodeId) -> bool {
        self.adverts.get(&node).is_some_and(|(a, _)| a.stub)
    }

    /// Keeps routes only to destinations named with [`Router::want_route`]
    /// from now on (a stub's peers), instead of to every node reached: a
    /// stub in a mesh of N nodes then holds routes for its peers, not N.
    pub fn scope_routes(&mut self) {
        if self.scope.is_none() {
            self.scope = Some(HashSet::default());
            self.last_inputs = None;
        }
    }

    /// Adds `dst` to the destinations routes are kept for (no effect
    /// without [`Router::scope_routes`]).
    pub fn want_route(&mut self, dst: NodeId) {
        if let Some(s) = &mut self.scope {
            if s.insert(dst) {
                self.last_inputs = None;
            }
        }
    }

    /// Undoes [`Router::want_route`] (a peer removed).
    pub fn unwant_route(&mut self, dst: NodeId) {
        if let Some(s) = &mut self.scope {
            if s.remove(&dst) {
                self.last_inputs = None;
            }
        }
    }

    /// Route computations run (each a shortest-path tree from this node).
    pub fn computations(&self) -> u64 {
        self.computations
    }

    /// Nodes the last computation reached (whether or not a route to each
    /// is kept).
    pub fn reachable_count(&self) -> usize {
        self.reachable
    }

    /// Adverts held.
    pub fn advert_count(&self) -> usize {
        self.adverts.len()
    }

    /// Destinations with a route.
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// All routes.
    pub fn routes(&self) -> impl Iterator<Item = (&NodeId, &Route)> {
        self.routes.iter()
    }

    /// The path to `dst` as routed now, hop by hop, each with its link's
    /// RTT in µs: the chosen next hop, then the shortest path onward from it
    /// as this node's database sees it (which is what the relays, holding
    /// the same adverts, will choose). Empty when `dst` is unreachable.
    pub fn trace(&self, own: &[OwnLink], dst: NodeId) -> Vec<(NodeId, u32)> {
        let Some(route) = self.routes.get(&dst) else {
            return Vec::new();
        };
        let g = Graph {
            me: self.me,
            config: &self.config,
            own,
            adverts: &self.adverts,
            vouched: vouched_links(&self.adverts),
        };
        let first = route.next_hop;
        let mut hops = vec![(first, g.link_rtt(self.me, first))];
        if first == dst {
            return hops;
        }
        let tree = g.shortest(first, Some(self.me));
        let mut rest = Vec::new();
        let mut at = dst;
        while at != first {
            let Some(&Reach { pred, .. }) = tree.get(&at) else {
                return hops; // no onward path in our view
            };
            rest.push((at, g.link_rtt(pred, at)));
            at = pred;
            if rest.len() > usize::from(crate::wire::MAX_RELAY_TTL) + 1 {
                break;
            }
        }
        rest.reverse();
        hops.extend(rest);
        hops
    }

    /// As [`Router::recompute`], but skipped when nothing that matters
    /// changed since the last computation: the same adverts, the same own
    /// links (RTT to 4 significant bits, about 6 %), and no better next hop
    /// waiting out its `switch_after`. A quiet mesh then costs no Dijkstra
    /// runs at all.
    pub fn recompute_if_changed(&mut self, now: Instant, own: &[OwnLink]) -> Vec<RouteChange> {
        let inputs = (self.generation, quantized(own));
        if self.candidates.is_empty() && self.last_inputs.as_ref() == Some(&inputs) {
            return Vec::new();
        }
        self.recompute(now, own)
    }

    /// Recomputes every route from `own` links and the adverts, keeping
    /// current next hops where hysteresis says so.
    pub fn recompute(&mut self, now: Instant, own: &[OwnLink]) -> Vec<RouteChange> {
        self.last_inputs = Some((self.generation, quantized(own)));
        self.computations += 1;
        let g = Graph {
            me: self.me,
            config: &self.config,
            own,
            adverts: &self.adverts,
            vouched: vouched_links(&self.adverts),
        };
        let best = g.shortest(self.me, None);
        self.reachable = best.len();
        let adverts = &self.adverts;
        self.unreachable_since
            .retain(|o, _| adverts.contains_key(o) && !best.contains_key(o));
        for origin in adverts.keys().filter(|o| !best.contains_key(*o)) {
            self.unreachable_since.entry(*origin).or_insert(now);
        }
        // Distances from a neighbour, avoiding us, computed on demand.
        let mut from_neighbor: HashMap<NodeId, Tree, Ids> = HashMap::default();
        let kept = self
            .scope
            .as_ref()
            .map_or(best.len(), |s| s.len().min(best.len()));
        let mut next = HashMap::with_capacity_and_hasher(kept, Ids);
        // A hub has thousands of own links: looked up, not searched, per
        // destination.
        let own_by_neighbor: HashMap<NodeId, &OwnLink, Ids> =
            own.iter().map(|l| (l.neighbor, l)).collect();
        let mut changes = Vec::new();
        for (&dst, r) in &best {
            if self.scope.as_ref().is_some_and(|s| !s.contains(&dst)) {
                continue;
            }
            let (mut metric, mut hops, mut first) = (r.cost, r.hops, r.first);
            // Direct paths preferred: a working direct link keeps its
            // destination unless a relayed path beats it by the margin, and
            // takes it back from a relay, at once, within half the margin
            // (the other half, with the switch factor, keeps it from
            // flapping).
            let mut back_direct = false;
            if first != dst {
                let direct = own_by_neighbor.get(&dst).copied();
                if let Some((l, c)) = direct.and_then(|l| Some((l, g.own_cost(l)?))) {
                    let spread = self.config.direct_spread_factor * f64::from(l.spread_us);
                    let mut margin = spread.max(self.config.direct_margin_us as f64);
                    let relayed = self.routes.get(&dst).is_some_and(|r| r.next_hop != dst);
                    if relayed {
                        margin /= 2.0;
                    }
                    if (c as f64) <= metric as f64 + margin {
                        (metric, hops, first) = (c, 1, dst);
                        back_direct = relayed;
                    }
                }
            }
            let mut chosen = Route {
                next_hop: first,
                metric_us: metric,
                hops,
                since: now,
            };
            if let Some(cur) = self.routes.get(&dst) {
                if cur.next_hop == first {
                    chosen.since = cur.since;
                } else if let Some(&link) = own_by_neighbor.get(&cur.next_hop) {
                    // What the current next hop costs now, if it is still
                    // downstream: nearer the destination than we are (its
                    // shortest path, which avoids us then, is shorter than
                    // ours). A hop kept for hysteresis that is not
                    // downstream could be keeping us as its own (a loop
                    // that lasts as long as neither finds a much better
                    // hop); kept only when downstream, every hop on a path
                    // is nearer than the one before (RFC 5286, §3.2).
                    let via = g.own_cost(link).and_then(|c| {
                        if cur.next_hop == dst {
                            return Some((c, 1));
                        }
                        let d = from_neighbor
                            .entry(cur.next_hop)
                            .or_insert_with(|| Tree(g.shortest(cur.next_hop, Some(self.me))));
                        (d.0.get(&dst))
                            .filter(|n| n.cost < r.cost)
                            .map(|n| (c + n.cost, n.hops + 1))
                    });
                    if let Some((m, h)) = via {
                        let bar = metric as f64 * self.config.switch_factor
                            + self.config.switch_margin_us as f64;
                        // Still works: keep it unless the better hop is much
                        // better and has been for `switch_after` (going back
                        // to a settled direct link needs no extra wait).
                        let better = (m as f64) > bar || back_direct;
                        if !better {
                            self.candidates.remove(&dst);
                        }
                        let waited = if !better || first == dst {
                            true
                        } else {
                            let since = self
                                .candidates
                                .entry(dst)
                                .and_modify(|c| {
                                    if c.0 != first {
                                        *c = (first, now);
                                    }
                                })
                                .or_insert((first, now))
                                .1;
                            now.saturating_duration_since(since) >= self.config.switch_after
                        };
                        if !better || !waited {
                            chosen = Route {
                                next_hop: cur.next_hop,
                                metric_us: m,
                                hops: h,
                                since: cur.since,
                            };
                        }
                    }
                }
            }
            let old = self.routes.get(&dst).map(|r| r.next_hop);
            if old != Some(chosen.next_hop) {
                changes.push(RouteChange {
                    dst,
                    old,
                    new: Some(chosen.next_hop),
                });
            }
            next.insert(dst, chosen);
        }
        for (dst, r) in &self.routes {
            if !next.contains_key(dst) {
                changes.push(RouteChange {
                    dst: *dst,
                    old: Some(r.next_hop),
                    new: None,
                });
            }
        }
        // A candidate that is no longer better than the chosen hop starts over.
        self.candidates
            .retain(|dst, c| next.get(dst).is_some_and(|r| r.next_hop != c.0));
        self.routes = next;
        changes
    }
}

/// `own` with each RTT rounded down to 4 significant bits.
fn quantized(own: &[OwnLink]) -> Vec<OwnLink> {
    own.iter()
        .map(|l| {
            let shift = (32 - l.rtt_us.leading_zeros()).saturating_sub(4);
            let spread_shift = (32 - l.spread_us.leading_zeros()).saturating_sub(2);
            OwnLink {
                rtt_us: (l.rtt_us >> shift) << shift,
                spread_us: (l.spread_us >> spread_shift) << spread_shift,
                ..*l
            }
        })
        .collect()
}

/// Own links that are up, as advert entries: links to relaying neighbours
/// first, then to stubs, each by RTT (so the cap keeps the backbone).
pub fn advert_entries(own: &[OwnLink], is_stub: impl Fn(NodeId) -> bool) -> Vec<LinkEntry> {
    let mut v: Vec<LinkEntry> = own
        .iter()
        .filter(|l| l.up)
        .map(|l| LinkEntry {
            neighbor: l.neighbor,
            rtt_us: l.rtt_us,
            loss_permille: l.loss_permille,
            settling: !l.settled,
        })
        .collect();
    v.sort_by_key(|l| (is_stub(l.neighbor), l.rtt_us, l.neighbor));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeId = NodeId(1);
    const B: NodeId = NodeId(2);
    const C: NodeId = NodeId(3);
    const D: NodeId = NodeId(4);

    fn link(n: NodeId, rtt_us: u32, up: bool) -> OwnLink {
        OwnLink {
            neighbor: n,
            up,
            settled: up,
            rtt_us,
            loss_permille: 0,
            spread_us: 0,
        }
    }

    fn advert(origin: NodeId, seq: u64, links: &[(NodeId, u32)]) -> Advert {
        Advert {
            origin,
            seq,
            stub: false,
            truncated: false,
            no_transit: false,
            links: links
                .iter()
                .map(|&(n, rtt_us)| LinkEntry {
                    neighbor: n,
                    rtt_us,
                    loss_permille: 0,
                    settling: false,
                })
                .collect(),
            signature: [0; 64],
        }
    }

    /// The square: a–b direct, a–c–b and a–d–b relayed.
    fn square(now: Instant) -> Router {
        let mut r = Router::new(A, RouteConfig::default());
        assert!(r.handle_advert(now, advert(B, 1, &[(A, 100), (C, 100), (D, 100)])));
        assert!(r.handle_advert(now, advert(C, 1, &[(A, 100), (B, 100)])));
        assert!(r.handle_advert(now, advert(D, 1, &[(A, 100), (B, 150)])));
        r
    }

    #[test]
    fn direct_when_up_relay_when_cut_direct_again_after_hold_down() {
        let now = Instant::now();
        let mut r = square(now);
        let up = [link(B, 100, true), link(C, 100, true), link(D, 100, true)];
        r.recompute(now, &up);
        assert_eq!(r.route(B).map(|x| x.next_hop), Some(B));
        // Cut a–b: via c (cheaper than d).
        let cut = [link(B, 100, false), link(C, 100, true), link(D, 100, true)];
        let ch = r.recompute(now, &cut);
        assert!(ch.contains(&RouteChange {
            dst: B,
            old: Some(B),
            new: Some(C)
        }));
        assert_eq!(r.route(B).unwrap().hops, 2);
        // Back up but in hold-down: stay on the relay.
        let mut healing = up;
        healing[0].settled = false;
        r.recompute(now, &healing);
        assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));
        // Settled: back to direct.
        r.recompute(now, &up);
        assert_eq!(r.route(B).map(|x| x.next_hop), Some(B));
    }

    #[test]
    fn a_working_direct_link_is_left_only_for_a_path_better_by_more_than_its_spread() {
        let now = Instant::now();
        // a–b 3,000 µs direct; a–c–b 1,300 µs with hops: better by 1,800.
        let mut r = Router::new(A, RouteConfig::default());
        r.handle_advert(now, advert(B, 1, &[(A, 3000), (C, 600)]));
        r.handle_advert(now, advert(C, 1, &[(A, 500), (B, 600)]));
        let own = |ab: u32, spread: u32| {
            [
                OwnLink {
                    spread_us: spread,
                    ..link(B, ab, true)
                },
                link(C, 500, true),
            ]
        };
        // Its probes spread over 1,000 µs: 2 × that is more than the gain.
        r.recompute(now, &own(3000, 1000));
        assert_eq!(r.route(B).map(|x| x.next_hop), Some(B), "direct kept");
        // A steady link (spread 100 µs): the relay is better by more than
        // the 1 ms floor, and takes over once it has been for
        // `switch_after`.
        r.recompute(now, &own(3000, 100));
        let later = now + RouteConfig::default().switch_after;
        r.recompute(later, &own(3000, 100));
        assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));
        // Within the margin but not half of it: the relay stays (no
        // flapping at the margin's edge).
        r.recompute(later, &own(2000, 100));
        assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));
        // Within half the margin: back direct at once.
        r.recompute(later, &own(1700, 100));
        assert_eq!(r.route(B).map(|x| x.next_hop), Some(B));
    }

    #[test]
    fn hysteresis_keeps_an_almost_as_good_relay() {
        let now = Instant::now();
        let mut r = square(now);
        let cut = [link(B, 100, false), link(C, 100, true), link(D, 100, true)];
        r.recompute(now, &cut);
        assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));
        // c–b gets a little slower than d–b: stay on c.
        r.handle_advert(now, advert(C, 2, &[(A, 100), (B, 170)]));
        r.recompute(now, &cut);
        assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));
        // Much slower: c's own shortest path to b is back through a, so c
        // is no nearer b than a is: move to d at once (keeping c could
        // loop).
        r.handle_advert(now, advert(C, 3, &[(A, 100), (B, 5000)]));
        r.recompute(now, &cut);
        assert_eq!(r.route(B).map(|x| x.next_hop), Some(D));
    }

    #[test]
    fn hysteresis_never_keeps_a_hop_that_routes_back_through_us() {
        // a–b 1,000 µs; b–c–d costs b 10,000; a–e–d is short; a–f–d costs
        // a 11,300. Each router holds the other's advert as sent.
        const E: NodeId = NodeId(5);
        const F: NodeId = NodeId(6);
        let now = Instant::now();
        let adverts = |seq: u64, bc: bool, ae: bool| {
            let mut a = vec![(B, 1000), (F, 1000)];
            let mut b = vec![(A, 1000)];
            let (mut c, mut e) = (vec![(D, 8800)], vec![(D, 1000)]);
            if bc {
                b.push((C, 1000));
                c.push((B, 1000));
            }
            if ae {
                a.push((E, 1000));
                e.push((A, 1000));
            }
            [
                advert(A, seq, &a),
                advert(B, seq, &b),
                advert(C, seq, &c),
                advert(D, seq, &[(C, 8800), (E, 1000), (F, 10100)]),
                advert(E, seq, &e),
                advert(F, seq, &[(A, 1000), (D, 10100)]),
            ]
        };
        let own = |me: NodeId, bc: bool, ae: bool| -> Vec<OwnLink> {
            if me == A {
                vec![link(B, 1000, true), link(E, 1000, ae), link(F, 1000, true)]
            } else {
                vec![link(A, 1000, true), link(C, 1000, bc)]
            }
        };
        let mut routers = [A, B].map(|me| Router::new(me, RouteConfig::default()));
        // (b–c up, a–e up), then b–c down (b goes through a, a through e),
        // then b–c back and a–e down in the same instant: a now goes
        // through b, b's path through a still costs it less than 1.25 ×
        // its best (through c).
        for (seq, bc, ae) in [(1, true, true), (2, false, true), (3, true, false)] {
            for r in &mut routers {
                for ad in adverts(seq, bc, ae) {
                    r.handle_advert(now, ad);
                }
                let me = r.me;
                r.recompute(now, &own(me, bc, ae));
            }
            if seq == 2 {
                assert_eq!(routers[1].route(D).map(|x| x.next_hop), Some(A));
            }
        }
        assert_eq!(routers[0].route(D).map(|x| x.next_hop), Some(B));
        assert_eq!(
            routers[1].route(D).map(|x| x.next_hop),
            Some(C),
            "b keeps a, which sends back to b: a loop"
        );
    }

    #[test]
    fn dead_relay_and_contradicted_links_are_not_paths() {
        let now = Instant::now();
        let mut r = square(now);
        // b no longer lists c: the c–b half that c still claims is stale.
        r.handle_advert(now, advert(B, 2, &[(A, 100), (D, 100)]));
        let cut = [link(B, 100, false), link(C, 100, true), link(D, 100, true)];
        r.recompute(now, &cut);
        assert_eq!(r.route(B).map(|x| x.next_hop), Some(D));
        // Our link to d dies too: b is unreachable.
        let worse = [link(B, 100, false), link(C, 100, true), link(D, 100, false)];
        let ch = r.recompute(now, &worse);
        assert!(r.route(B).is_none());
        assert!(ch.iter().any(|c| c.dst == B && c.new.is_none()));
    }

    #[test]
    fn older_adverts_and_own_adverts_are_ignored_and_old_ones_expire() {
        let now = Instant::now();
        let mut r = square(now);
        assert!(!r.handle_advert(now, advert(C, 1, &[])), "same seq");
        assert!(!r.handle_advert(now, advert(C, 0, &[])), "older");
        assert!(!r.handle_advert(now, advert(A, 9, &[])), "our own");
        assert!(!r.expire(now + Duration::from_secs(29), Duration::ZERO));
        assert!(!r.expire(now + Duration::from_secs(31), Duration::from_secs(60)));
        assert!(r.expire(now + Duration::from_secs(31), Duration::ZERO));
        assert_eq!(r.adverts().count(), 0);
    }

    #[test]
    fn an_origin_no_path_reaches_is_forgotten_after_max_age_however_fresh() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let mut r = square(now);
        let up = [link(B, 100, true), link(C, 100, true), link(D, 100, true)];
        r.recompute(now, &up);
        // d is gone: our link and b's are down (b's new advert leaves d out).
        assert!(r.handle_advert(now, advert(B, 2, &[(A, 100), (C, 100)])));
        let cut = [link(B, 100, true), link(C, 100, true), link(D, 100, false)];
        r.recompute(now, &cut);
        assert!(r.route(D).is_none());
        // The long (refresh-scaled) max age would keep it for an hour.
        let long = s(3600);
        assert!(!r.expire(now + s(29), long));
        // A neighbour's sync brings its advert back: the clock restarts.
        assert!(r.handle_advert(now + s(29), advert(D, 2, &[(A, 100), (B, 150)])));
        r.recompute(now + s(29), &cut);
        assert!(!r.expire(now + s(31), long), "the fresh copy's clock");
        assert!(r.expire(now + s(59), long));
        assert!(r.advert(D).is_none());
        assert!(r.advert(B).is_some() && r.advert(C).is_some());
        // Reachable origins stay however old the computation.
        assert!(!r.expire(now + s(600), long));
    }

    #[test]
    fn trace_lists_every_hop_with_its_rtt() {
        let now = Instant::now();
        let mut r = square(now);
        let cut = [link(B, 100, false), link(C, 90, true), link(D, 100, true)];
        r.recompute(now, &cut);
        assert_eq!(r.trace(&cut, B), vec![(C, 90), (B, 100)]);
        assert_eq!(r.trace(&cut, C), vec![(C, 90)]);
        assert!(r.trace(&cut, NodeId(99)).is_empty());
    }

    #[test]
    fn a_stub_is_a_destination_never_a_hop() {
        let now = Instant::now();
        let mut r = square(now);
        // c says it does not relay: with a–b cut, b is reached via d, the
        // dearer relay, and c itself stays reachable directly.
        let mut c = advert(C, 2, &[(A, 100), (B, 100)]);
        c.stub = true;
        assert!(r.handle_advert(now, c));
        assert!(r.is_stub(C) && !r.is_stub(D));
        let cut = [link(B, 100, false), link(C, 100, true), link(D, 100, true)];
        r.recompute(now, &cut);
        assert_eq!(r.route(B).map(|x| x.next_hop), Some(D));
        assert_eq!(r.route(C).map(|x| x.next_hop), Some(C));
        // Without d, b is unreachable rather than routed through the stub.
        let worse = [link(B, 100, false), link(C, 100, true), link(D, 100, false)];
        r.recompute(now, &worse);
        assert!(r.route(B).is_none());
        // A path may still end at a stub: with our own link to c dead, c is
        // reached through b.
        let only_b = [link(B, 100, true), link(C, 100, false), link(D, 100, false)];
        r.recompute(now, &only_b);
        assert_eq!(r.route(C).map(|x| x.next_hop), Some(B));
    }

    #[test]
    fn a_no_transit_node_is_left_by_the_paths_through_it() {
        let now = Instant::now();
        let mut r = square(now);
        // b through c, the cheaper relay.
        let cut = [link(B, 100, false), link(C, 90, true), link(D, 100, true)];
        r.recompute(now, &cut);
        assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));
        // c finds itself behind a NAT: b moves to d at once (hysteresis
        // keeps a next hop only while a path through it exists), and c
        // stays a destination.
        let mut c = advert(C, 2, &[(A, 90), (B, 100)]);
        c.no_transit = true;
        assert!(r.handle_advert(now, c.clone()));
        assert!(!r.is_stub(C), "it keeps full link state");
        r.recompute(now, &cut);
        assert_eq!(r.route(B).map(|x| x.next_hop), Some(D));
        assert_eq!(r.route(C).map(|x| x.next_hop), Some(C));
        // Without d, b is unreachable rather than routed through c.
        let no_d = [link(B, 100, false), link(C, 90, true), link(D, 100, false)];
        r.recompute(now, &no_d);
        assert!(r.route(B).is_none());
        // Its NAT gone, c carries traffic again.
        c.seq = 3;
        c.no_transit = false;
        assert!(r.handle_advert(now, c));
        r.recompute(now, &no_d);
        assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));
    }

    #[test]
    fn a_scoped_router_keeps_routes_to_wanted_destinations_only() {
        let now = Instant::now();
        let mut r = square(now);
        r.scope_routes();
        r.want_route(B);
        let cut = [link(B, 100, false), link(C, 100, true), link(D, 100, true)];
        let ch = r.recompute(now, &cut);
        assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));
        assert!(r.route(C).is_none() && r.route(D).is_none());
        assert_eq!(r.route_count(), 1);
        assert_eq!(r.reachable_count(), 3, "c and d are still reached");
        assert!(ch.iter().all(|c| c.dst == B));
        // Wanting one more takes effect at the next computation, even with
        // unchanged inputs.
        r.want_route(D);
        r.recompute_if_changed(now, &cut);
        assert_eq!(r.route(D).map(|x| x.next_hop), Some(D));
    }

    #[test]
    fn multi_hop_and_loss_penalty() {
        let now = Instant::now();
        let mut r = Router::new(A, RouteConfig::default());
        // a–c–d–b chain plus a lossy a–b.
        r.handle_advert(now, advert(C, 1, &[(A, 100), (D, 100)]));
        r.handle_advert(now, advert(D, 1, &[(C, 100), (B, 100)]));
        r.handle_advert(now, advert(B, 1, &[(D, 100), (A, 100)]));
        let mut lossy = link(B, 100, true);
        lossy.loss_permille = 300;
        r.recompute(now, &[lossy, link(C, 100, true)]);
        let route = r.route(B).unwrap();
        assert_eq!((route.next_hop, route.hops), (C, 3));
    }
}
