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
//!
//! A relay that one of its neighbours stopped listing while its own advert
//! still lists that neighbour is *suspected* for a short hold: links into it
//! cost `suspect_penalty_us` more, so paths leave it at once where another
//! way exists, before its other neighbours' probes confirm it gone
//! (`route/suspicion.rs`).

mod graph;
mod suspicion;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::{Advert, LinkEntry};
use crate::wire::NodeId;
use graph::{own_cost, Graph, Indexes, Listed, Reach, Tree};
use suspicion::Suspicions;

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
    /// Added to every link into a suspected node (`route/suspicion.rs`).
    pub suspect_penalty_us: u64,
    /// How long a suspicion lasts unless the node's own advert ends it.
    pub suspect_hold: Duration,
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
            suspect_penalty_us: 1_000_000,
            suspect_hold: Duration::from_secs(2),
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
    /// Relays a neighbour of theirs stopped listing.
    suspicions: Suspicions,
    /// Indexes of the adverts held (`route::graph`).
    indexes: Indexes,
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
            suspicions: Suspicions::default(),
            indexes: Indexes::default(),
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
        self.suspicions.clear(advert.origin);
        let old = self.adverts.insert(advert.origin, (advert.clone(), now));
        (self.indexes).advert_changed(old.as_ref().map(|(a, _)| &**a), Some(&advert));
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
        let indexes = &mut self.indexes;
        self.adverts.retain(|origin, (a, at)| {
            let lost = unreachable
                .get(origin)
                .is_some_and(|t| now.saturating_duration_since(*t) >= cut_off);
            let fresh = (stub && !a.stub) || now.saturating_duration_since(*at) < max;
            if !fresh || lost {
                indexes.advert_changed(Some(a), None);
            }
            fresh && !lost
        });
        unreachable.retain(|origin, _| self.adverts.contains_key(origin));
        let adverts = &self.adverts;
        self.suspicions.retain(|n| adverts.contains_key(&n));
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
        let held = self.adverts.remove(&origin);
        if let Some((a, _)) = &held {
            self.indexes.advert_changed(Some(a), None);
        }
        let had = held.is_some();
        self.unreachable_since.remove(&origin);
        self.suspicions.clear(origin);
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

    /// `accuser`'s new advert stopped listing `node`: suspects `node` if the
    /// advert held for `accuser` does not list it, and `node` relays and its
    /// own advert still lists `accuser` (it has not said the link is gone:
    /// it may not be able to). True if routes must be computed again.
    pub fn suspect(&mut self, node: NodeId, accuser: NodeId, now: Instant) -> bool {
        let Some((a, _)) = self.adverts.get(&node) else {
            return false;
        };
        let listed = a.links.iter().any(|l| l.neighbor == accuser);
        let denied = (self.adverts.get(&accuser))
            .is_some_and(|(b, _)| !b.links.iter().any(|l| l.neighbor == node));
        if node == self.me || a.stub || a.no_transit || !listed || !denied {
            return false;
        }
        let raised = (self.suspicions).raise(node, a.seq, now + self.config.suspect_hold);
        if raised {
            self.generation += 1;
        }
        raised
    }

    /// Whether routes avoid `node` for now (`route/suspicion.rs`).
    pub fn is_suspected(&self, node: NodeId) -> bool {
        self.suspicions.is_active(node)
    }

    /// When the next suspicion's hold ends: [`Router::expire_suspicions`]
    /// is due then.
    pub fn suspicion_deadline(&self) -> Option<Instant> {
        self.suspicions.deadline()
    }

    /// Ends suspicions whose hold is over; true if routes must be computed
    /// again.
    pub fn expire_suspicions(&mut self, now: Instant) -> bool {
        let ended = self.suspicions.expire(now);
        if ended {
            self.generation += 1;
        }
        ended
    }

    /// Keeps routes only to destinations named with [`Router::want_route`]
    /// from now on (a stub's peers), instead of to every node reached: a
    /// stub in a mesh of N nodes then holds routes for its peers, not N.
    pub fn scope_routes(&mut self) {
        if self.scope.is_none() {
            self.scope = Some(HashSet::default());
            self.indexes.listed = Some(Listed::of(self.adverts.values().map(|(a, _)| &**a)));
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
        let g = Graph::build(
            self.me,
            &self.config,
            own,
            &self.adverts,
            &self.indexes.vouching,
            |n| self.suspicions.is_active(n),
            None,
        );
        let first = route.next_hop;
        let mut hops = vec![(first, self.link_rtt(own, self.me, first))];
        if first == dst {
            return hops;
        }
        let tree = g.shortest(first, Some(self.me));
        let mut rest = Vec::new();
        let mut at = dst;
        while at != first {
            let Some(Reach { pred, .. }) = tree.get(&g, at) else {
                return hops; // no onward path in our view
            };
            rest.push((at, self.link_rtt(own, pred, at)));
            at = pred;
            if rest.len() > usize::from(crate::wire::MAX_RELAY_TTL) + 1 {
                break;
            }
        }
        rest.reverse();
        hops.extend(rest);
        hops
    }

    /// RTT (µs) of the link u→v as this node knows it.
    fn link_rtt(&self, own: &[OwnLink], u: NodeId, v: NodeId) -> u32 {
        if u == self.me {
            return own.iter().find(|l| l.neighbor == v).map_or(0, |l| l.rtt_us);
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
        let g = Graph::build(
            self.me,
            &self.config,
            own,
            &self.adverts,
            &self.indexes.vouching,
            |n| self.suspicions.is_active(n),
            self.scope.as_ref(),
        );
        let best = g.shortest(self.me, None);
        let reached: Vec<(NodeId, Reach)> = (0..g.len() as u32)
            .filter_map(|i| Some((g.id(i), best.at(&g, i)?)))
            .collect();
        self.reachable = reached.len()
            + (self.indexes.listed.as_ref())
                .map_or(0, |l| g.leaves_reached(&best, &self.adverts, l));
        let adverts = &self.adverts;
        let is_reached = |o: &NodeId| g.index(*o).is_some_and(|i| best.at(&g, i).is_some());
        self.unreachable_since
            .retain(|o, _| adverts.contains_key(o) && !is_reached(o));
        for origin in adverts.keys().filter(|o| !is_reached(o)) {
            self.unreachable_since.entry(*origin).or_insert(now);
        }
        // Distances from a neighbour, avoiding us, computed on demand.
        let mut from_neighbor: HashMap<NodeId, Tree, Ids> = HashMap::default();
        let kept = self
            .scope
            .as_ref()
            .map_or(reached.len(), |s| s.len().min(reached.len()));
        let mut next = HashMap::with_capacity_and_hasher(kept, Ids);
        // A hub has thousands of own links: looked up, not searched, per
        // destination.
        let own_by_neighbor: HashMap<NodeId, &OwnLink, Ids> =
            own.iter().map(|l| (l.neighbor, l)).collect();
        let mut changes = Vec::new();
        for &(dst, r) in &reached {
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
                if let Some((l, c)) = direct.and_then(|l| Some((l, own_cost(&self.config, l)?))) {
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
                } else if let Some(&link) = (own_by_neighbor.get(&cur.next_hop))
                    .filter(|_| !self.suspicions.is_active(cur.next_hop))
                {
                    // (A suspected hop is left at once, as a failed one.)
                    // What the current next hop costs now, if it is still
                    // downstream: nearer the destination than we are (its
                    // shortest path, which avoids us then, is shorter than
                    // ours). A hop kept for hysteresis that is not
                    // downstream could be keeping us as its own (a loop
                    // that lasts as long as neither finds a much better
                    // hop); kept only when downstream, every hop on a path
                    // is nearer than the one before (RFC 5286, §3.2).
                    let via = own_cost(&self.config, link).and_then(|c| {
                        if cur.next_hop == dst {
                            return Some((c, 1));
                        }
                        let d = from_neighbor
                            .entry(cur.next_hop)
                            .or_insert_with(|| g.shortest(cur.next_hop, Some(self.me)));
                        (d.get(&g, dst))
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
mod tests;
