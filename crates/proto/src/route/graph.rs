//! The link graph of one route computation, and shortest paths over it.
//!
//! A computation builds the graph once from the node's own links and the
//! advert database: every node named gets a dense index, and each node's
//! usable out-links (costed, contradicted halves and links into
//! non-relaying nodes already taken out) sit in one flat array. The
//! shortest-path runs of the computation (from this node, and from each
//! neighbour whose downstream distance hysteresis needs) then index arrays
//! instead of hashing node ids and scanning adverts per edge: at 10,000
//! nodes a relay runs several per computation.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use super::{Ids, OwnLink, RouteConfig};
use crate::control::{Advert, LinkEntry};
use crate::wire::NodeId;

/// What a shortest-path run knows of one node it reached.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reach {
    pub cost: u64,
    pub hops: u8,
    pub first: NodeId,
    pub pred: NodeId,
}

/// One costed out-link.
#[derive(Debug, Clone, Copy)]
struct Edge {
    to: u32,
    cost: u64,
}

/// Every node of the database by dense index (this node is index 0), with
/// its out-links in `edges[start[i]..start[i + 1]]`, in the order its own
/// links or its advert list them.
pub(super) struct Graph {
    ids: Vec<NodeId>,
    index: HashMap<NodeId, u32, Ids>,
    start: Vec<u32>,
    edges: Vec<Edge>,
    /// Built with a scope: links into leaves left out.
    leaves_left_out: bool,
}

/// One shortest-path run's results, by dense index.
pub(super) struct Tree {
    src: u32,
    cost: Vec<u64>,
    hops: Vec<u8>,
    first: Vec<u32>,
    pred: Vec<u32>,
}

/// Links truncated relay adverts leave out: relay → (stub, the stub's
/// entry). See [`Advert::truncated`].
pub(super) type Vouched = HashMap<NodeId, Vec<(NodeId, LinkEntry)>, Ids>;

/// Which held relay adverts are truncated, and which stubs' adverts list
/// each relay, kept as adverts come and go: a computation then finds the
/// stub links truncated adverts leave out from the few truncated relays,
/// instead of looking up every stub's advert (at 10,000 nodes a fifth of
/// the simulator's time).
#[derive(Debug, Clone, Default)]
pub(super) struct Vouching {
    truncated: HashSet<NodeId, Ids>,
    /// Relay → stubs whose held advert lists it (each once).
    listers: HashMap<NodeId, Vec<NodeId>, Ids>,
}

impl Vouching {
    /// The advert held for an origin went from `old` to `new`.
    pub(super) fn advert_changed(&mut self, old: Option<&Advert>, new: Option<&Advert>) {
        let Some(origin) = new.or(old).map(|a| a.origin) else {
            return;
        };
        if new.is_some_and(|a| a.truncated && !a.stub) {
            self.truncated.insert(origin);
        } else {
            self.truncated.remove(&origin);
        }
        let listed = |a: Option<&Advert>| a.filter(|a| a.stub).map(far_ends).unwrap_or_default();
        let (before, after) = (listed(old), listed(new));
        if before == after {
            return;
        }
        for r in before.iter().filter(|r| after.binary_search(r).is_err()) {
            if let Some(stubs) = self.listers.get_mut(r) {
                stubs.retain(|s| *s != origin);
                if stubs.is_empty() {
                    self.listers.remove(r);
                }
            }
        }
        for r in after.iter().filter(|r| before.binary_search(r).is_err()) {
            self.listers.entry(*r).or_default().push(origin);
        }
    }

    /// The links truncated relay adverts in `adverts` leave out, from the
    /// adverts of the stubs that list each relay.
    pub(super) fn links(&self, adverts: &HashMap<NodeId, (Arc<Advert>, Instant), Ids>) -> Vouched {
        let mut out = Vouched::default();
        for r in &self.truncated {
            let Some((relay, _)) = adverts.get(r) else {
                continue;
            };
            for s in self.listers.get(r).into_iter().flatten() {
                let Some((stub, _)) = adverts.get(s) else {
                    continue;
                };
                if relay.links.iter().any(|x| x.neighbor == *s) {
                    continue;
                }
                for l in stub.links.iter().filter(|l| l.neighbor == *r) {
                    out.entry(*r).or_default().push((*s, *l));
                }
            }
        }
        out
    }
}

/// The indexes a router keeps as its adverts come and go.
#[derive(Debug, Clone, Default)]
pub(super) struct Indexes {
    /// Truncated relay adverts and the stubs that list each relay.
    pub vouching: Vouching,
    /// With a scope: how many relaying adverts list each far end.
    pub listed: Option<Listed>,
}

impl Indexes {
    /// The advert held for an origin went from `old` to `new`.
    pub(super) fn advert_changed(&mut self, old: Option<&Advert>, new: Option<&Advert>) {
        self.vouching.advert_changed(old, new);
        if let Some(l) = &mut self.listed {
            l.advert_changed(old, new);
        }
    }
}

/// Whether `a`'s links are paths onward (its origin relays).
fn relays(a: &Advert) -> bool {
    !a.stub && !a.no_transit
}

/// The far ends `a` lists, each once, sorted.
fn far_ends(a: &Advert) -> Vec<NodeId> {
    let mut v: Vec<NodeId> = a.links.iter().map(|l| l.neighbor).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// For every far end of a held relaying advert's links, how many such
/// adverts list it, kept as adverts come and go: what a router keeping
/// routes to a scope counts the leaves it reaches from
/// ([`Graph::leaves_reached`]), without a look at each of them per
/// computation.
#[derive(Debug, Clone, Default)]
pub(super) struct Listed {
    by: HashMap<NodeId, u32, Ids>,
}

impl Listed {
    /// Counts from every advert held.
    pub(super) fn of<'a>(adverts: impl Iterator<Item = &'a Advert>) -> Self {
        let mut l = Listed::default();
        for a in adverts {
            l.advert_changed(None, Some(a));
        }
        l
    }

    /// The advert held for an origin went from `old` to `new`.
    pub(super) fn advert_changed(&mut self, old: Option<&Advert>, new: Option<&Advert>) {
        let ends = |a: Option<&Advert>| a.filter(|a| relays(a)).map(far_ends).unwrap_or_default();
        let (before, after) = (ends(old), ends(new));
        if before == after {
            return;
        }
        for v in before.iter().filter(|v| after.binary_search(v).is_err()) {
            if let Some(n) = self.by.get_mut(v) {
                *n -= 1;
                if *n == 0 {
                    self.by.remove(v);
                }
            }
        }
        for v in after.iter().filter(|v| before.binary_search(v).is_err()) {
            *self.by.entry(*v).or_insert(0) += 1;
        }
    }
}

/// Links a truncated relay advert leaves out, from the adverts of the stubs
/// that list the relay, found by looking at every stub's advert: what
/// [`Vouching::links`] must find.
#[cfg(test)]
pub(super) fn vouched_links(adverts: &HashMap<NodeId, (Arc<Advert>, Instant), Ids>) -> Vouched {
    let mut out = Vouched::default();
    // A relay advert is truncated only past `MAX_ADVERT_ENTRIES` links:
    // most databases hold none, and need no look-up per stub link.
    if !adverts.values().any(|(a, _)| a.truncated && !a.stub) {
        return out;
    }
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

/// The metric of one link (see the module docs of [`super`]).
pub(super) fn cost(config: &RouteConfig, rtt_us: u32, loss_permille: u16, settling: bool) -> u64 {
    let penalty = if settling {
        config.hold_down_penalty_us
    } else {
        0
    };
    u64::from(rtt_us.max(1))
        + u64::from(loss_permille.saturating_sub(config.loss_free_permille))
            * config.loss_penalty_us
        + config.hop_cost_us
        + penalty
}

/// What an own link costs, if it is up.
pub(super) fn own_cost(config: &RouteConfig, l: &OwnLink) -> Option<u64> {
    l.up.then(|| cost(config, l.rtt_us, l.loss_permille, !l.settled))
}

impl Graph {
    /// The graph `me` routes over: its own links that are up, and every
    /// advertised link of a relaying node that its other end does not
    /// contradict (that end's advert, if held, must list it back), plus
    /// the stub links truncated adverts leave out. A stub, or a node behind
    /// a NAT, has no out-links: a destination, never a hop. Links into
    /// `me` come only from its own probes.
    ///
    /// With `scope` (a router keeping routes to those destinations only),
    /// links into *leaves* are left out: far ends whose advert is not held
    /// (so nothing contradicts the link and no path goes on from them) that
    /// are neither in `scope`, nor `me`'s neighbours, nor suspected. No
    /// route is kept to them and no path passes through them; a stub's
    /// database names every member of the mesh as such a far end, and
    /// leaving them out keeps its computations the size of the backbone
    /// ([`Graph::leaves_reached`] counts them).
    pub(super) fn build(
        me: NodeId,
        config: &RouteConfig,
        own: &[OwnLink],
        adverts: &HashMap<NodeId, (Arc<Advert>, Instant), Ids>,
        vouching: &Vouching,
        suspected: impl Fn(NodeId) -> bool,
        scope: Option<&HashSet<NodeId, Ids>>,
    ) -> Self {
        let vouched = vouching.links(adverts);
        let links = own.len()
            + (adverts.values().map(|(a, _)| a.links.len())).sum::<usize>()
            + vouched.values().map(Vec::len).sum::<usize>();
        // Nodes named: every far end, or (leaves left out) the origins,
        // own neighbours and scope.
        let named = match scope {
            None => links + 1,
            Some(s) => adverts.len() + own.len() + s.len() + 1,
        };
        let mut g = Graph {
            ids: Vec::with_capacity(named),
            index: HashMap::with_capacity_and_hasher(named, Ids),
            start: Vec::with_capacity(named + 1),
            edges: Vec::with_capacity(links),
            leaves_left_out: scope.is_some(),
        };
        let neighbours: HashSet<NodeId, Ids> = match scope {
            Some(_) => own.iter().map(|l| l.neighbor).collect(),
            None => HashSet::default(),
        };
        // A far end not named yet that no route is kept to, no path goes
        // on from, and no penalty applies to.
        let leaf = |g: &Graph, v: NodeId| {
            scope.is_some_and(|s| {
                !g.index.contains_key(&v)
                    && !s.contains(&v)
                    && !neighbours.contains(&v)
                    && !suspected(v)
            })
        };
        g.intern(me);
        for &origin in adverts.keys() {
            g.intern(origin);
        }
        let listed = g.ids.len();
        let contradicted = |from: NodeId, to: NodeId| {
            adverts
                .get(&to)
                .is_some_and(|(a, _)| !a.links.iter().any(|l| l.neighbor == from))
        };
        let penalty = |to: NodeId| {
            if suspected(to) {
                config.suspect_penalty_us
            } else {
                0
            }
        };
        g.start.push(0);
        for l in own {
            if let Some(c) = own_cost(config, l) {
                g.edge(l.neighbor, c + penalty(l.neighbor));
            }
        }
        g.start.push(g.edges.len() as u32);
        // The origins, in the order they were named (indices 1..listed).
        for (&id, (a, _)) in adverts {
            if relays(a) {
                for l in &a.links {
                    if l.neighbor == me || leaf(&g, l.neighbor) || contradicted(id, l.neighbor) {
                        continue;
                    }
                    let c = cost(config, l.rtt_us, l.loss_permille, l.settling);
                    g.edge(l.neighbor, c + penalty(l.neighbor));
                }
                for (stub, l) in vouched.get(&id).into_iter().flatten() {
                    if *stub != me {
                        g.edge(*stub, cost(config, l.rtt_us, l.loss_permille, l.settling));
                    }
                }
            }
            g.start.push(g.edges.len() as u32);
        }
        debug_assert_eq!(g.start.len(), listed + 1);
        // Nodes named only as the far end of a link: no out-links.
        g.start.resize(g.ids.len() + 1, g.edges.len() as u32);
        g
    }

    fn intern(&mut self, id: NodeId) -> u32 {
        let next = self.ids.len() as u32;
        let i = *self.index.entry(id).or_insert(next);
        if i == next {
            self.ids.push(id);
        }
        i
    }

    fn edge(&mut self, to: NodeId, cost: u64) {
        let to = self.intern(to);
        self.edges.push(Edge { to, cost });
    }

    /// The dense index of `id`, if the graph names it.
    pub(super) fn index(&self, id: NodeId) -> Option<u32> {
        self.index.get(&id).copied()
    }

    /// Nodes the graph names (this node included).
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The node at dense index `i`.
    pub(super) fn id(&self, i: u32) -> NodeId {
        self.ids[i as usize]
    }

    /// How many leaves the graph left out (see [`Graph::build`]) `tree`
    /// (from `me`) reaches: distinct far ends, not named in the graph, of
    /// links listed by relaying nodes it reached. Zero for a graph built
    /// without a scope, which names every node it reaches. Counted from
    /// `listed` without looking at every leaf: all leaves listed, less
    /// those named in the graph, less those only unreached nodes list.
    pub(super) fn leaves_reached(
        &self,
        tree: &Tree,
        adverts: &HashMap<NodeId, (Arc<Advert>, Instant), Ids>,
        listed: &Listed,
    ) -> usize {
        if !self.leaves_left_out {
            return 0;
        }
        let named = (self.ids.iter())
            .filter(|id| listed.by.contains_key(id))
            .count();
        // Leaves counted as listed whose listers all went unreached.
        let mut unreached: HashMap<NodeId, u32, Ids> = HashMap::default();
        let mut lost = 0;
        for (i, id) in self.ids.iter().enumerate() {
            let Some((a, _)) = adverts.get(id) else {
                continue;
            };
            if i == 0 || !relays(a) || tree.at(self, i as u32).is_some() {
                continue;
            }
            for v in far_ends(a) {
                if self.index.contains_key(&v) {
                    continue;
                }
                let n = unreached.entry(v).or_insert(0);
                *n += 1;
                if listed.by.get(&v) == Some(n) {
                    lost += 1;
                }
            }
        }
        listed.by.len() - named - lost
    }

    /// Shortest paths from `src`, never passing through `avoid`. Ties go
    /// to the path found first, with the heap ordered by (cost, node id,
    /// hops, first hop's id): the same choice on every node holding the
    /// same database.
    pub(super) fn shortest(&self, src: NodeId, avoid: Option<NodeId>) -> Tree {
        let n = self.ids.len();
        let Some(s) = self.index(src) else {
            // A node the database does not name reaches nothing.
            return Tree {
                src: u32::MAX,
                cost: Vec::new(),
                hops: Vec::new(),
                first: Vec::new(),
                pred: Vec::new(),
            };
        };
        let avoid = avoid.and_then(|a| self.index(a));
        let mut t = Tree {
            src: s,
            cost: vec![u64::MAX; n],
            hops: vec![0; n],
            first: vec![s; n],
            pred: vec![s; n],
        };
        t.cost[s as usize] = 0;
        // Improvements are strict, so no two live entries share a cost and
        // a node: (cost, id) orders them fully, and a node's hops and first
        // hop are those its live entry was pushed with.
        let mut heap = BinaryHeap::with_capacity(n);
        heap.push(Reverse((0u64, src, s)));
        while let Some(Reverse((d, _, u))) = heap.pop() {
            let ui = u as usize;
            if t.cost[ui] < d {
                continue;
            }
            let (first, hops) = (t.first[ui], t.hops[ui].saturating_add(1));
            let range = self.start[ui] as usize..self.start[ui + 1] as usize;
            for e in &self.edges[range] {
                let v = e.to;
                let vi = v as usize;
                let nd = d + e.cost;
                if nd < t.cost[vi] && Some(v) != avoid && v != s {
                    t.cost[vi] = nd;
                    t.hops[vi] = hops;
                    t.first[vi] = if u == s { v } else { first };
                    t.pred[vi] = u;
                    // A node without out-links (a stub, or a node named
                    // only as a link's far end) would leave the heap with
                    // nothing to relax: its entry is all it needs. Most
                    // nodes of a mesh with stubs are such ends.
                    if self.start[vi] != self.start[vi + 1] {
                        heap.push(Reverse((nd, self.ids[vi], v)));
                    }
                }
            }
        }
        t
    }
}

impl Tree {
    /// How the run reached node `i` (`None`: not reached, or the source).
    pub(super) fn at(&self, g: &Graph, i: u32) -> Option<Reach> {
        let k = i as usize;
        if i == self.src || self.cost.get(k).is_none_or(|&c| c == u64::MAX) {
            return None;
        }
        Some(Reach {
            cost: self.cost[k],
            hops: self.hops[k],
            first: g.ids[self.first[k] as usize],
            pred: g.ids[self.pred[k] as usize],
        })
    }

    /// How the run reached `id`.
    pub(super) fn get(&self, g: &Graph, id: NodeId) -> Option<Reach> {
        self.at(g, g.index(id)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Costs by the rules of the module docs, from the adverts directly
    /// (Bellman–Ford, no graph): what every shortest-path run must find.
    fn costs_by_rules(
        me: NodeId,
        config: &RouteConfig,
        own: &[OwnLink],
        adverts: &HashMap<NodeId, (Arc<Advert>, Instant), Ids>,
        src: NodeId,
        avoid: Option<NodeId>,
    ) -> HashMap<NodeId, u64> {
        let lists = |a: NodeId, b: NodeId| {
            (adverts.get(&a)).is_some_and(|(x, _)| x.links.iter().any(|l| l.neighbor == b))
        };
        let mut links: Vec<(NodeId, NodeId, u64)> = Vec::new();
        for l in own {
            if let Some(c) = own_cost(config, l) {
                links.push((me, l.neighbor, c));
            }
        }
        for (a, _) in adverts.values() {
            for l in &a.links {
                let c = cost(config, l.rtt_us, l.loss_permille, l.settling);
                let relays = !a.stub && !a.no_transit;
                let contradicted =
                    adverts.contains_key(&l.neighbor) && !lists(l.neighbor, a.origin);
                if relays && a.origin != me && l.neighbor != me && !contradicted {
                    links.push((a.origin, l.neighbor, c));
                }
                // A stub's link a truncated relay advert leaves out.
                let vouched = (adverts.get(&l.neighbor)).is_some_and(|(r, _)| {
                    r.truncated && !r.stub && !r.no_transit && !lists(l.neighbor, a.origin)
                });
                if a.stub && vouched && a.origin != me && l.neighbor != me {
                    links.push((l.neighbor, a.origin, c));
                }
            }
        }
        let mut best = HashMap::from([(src, 0u64)]);
        for _ in 0..adverts.len() + 2 {
            for &(u, v, c) in &links {
                if Some(v) == avoid || Some(u) == avoid {
                    continue;
                }
                if let Some(&d) = best.get(&u) {
                    if best.get(&v).is_none_or(|&b| d + c < b) {
                        best.insert(v, d + c);
                    }
                }
            }
        }
        best.remove(&src);
        best
    }

    proptest! {
        /// Random databases of relays and stubs, some adverts truncated,
        /// some links listed by one end only: every node's cost from this
        /// node, and from a neighbour avoiding it, is the rules' cost.
        #[test]
        fn shortest_paths_cost_what_the_rules_say(
            kinds in proptest::collection::vec(0u8..4, 3..14),
            pairs in proptest::collection::vec((0usize..14, 0usize..14, 1u32..5_000, any::<bool>()), 0..50),
            own_up in proptest::collection::vec(any::<bool>(), 14),
        ) {
            let now = Instant::now();
            let config = RouteConfig::default();
            let n = kinds.len();
            let id = |i: usize| NodeId(i as u64 + 1);
            let me = id(0);
            // Kind 0: relay; 1: stub; 2: truncated relay; 3: no advert.
            let mut links: Vec<Vec<LinkEntry>> = vec![Vec::new(); n];
            let mut own = Vec::new();
            for &(a, b, rtt_us, both) in &pairs {
                let (a, b) = (a % n, b % n);
                if a == b || links[a].iter().any(|l| l.neighbor == id(b)) {
                    continue;
                }
                let entry = |to: usize| LinkEntry { neighbor: id(to), rtt_us, loss_permille: 0, settling: false };
                if a == 0 {
                    own.push(OwnLink {
                        neighbor: id(b),
                        up: own_up[b],
                        settled: true,
                        rtt_us,
                        loss_permille: 0,
                        spread_us: 0,
                    });
                    continue;
                }
                links[a].push(entry(b));
                if both && b != 0 && !links[b].iter().any(|l| l.neighbor == id(a)) {
                    links[b].push(entry(a));
                }
            }
            let mut adverts: HashMap<NodeId, (Arc<Advert>, Instant), Ids> = HashMap::default();
            for i in 1..n {
                if kinds[i] == 3 {
                    continue;
                }
                let mut listed = links[i].clone();
                if kinds[i] == 2 {
                    // Truncated: its links to stubs left out.
                    listed.retain(|l| kinds[l.neighbor.0 as usize - 1] != 1);
                }
                let advert = Advert {
                    origin: id(i),
                    seq: 1,
                    stub: kinds[i] == 1,
                    truncated: kinds[i] == 2,
                    no_transit: false,
                    links: listed,
                    signature: [0; 64],
                };
                adverts.insert(id(i), (Arc::new(advert), now));
            }
            let mut vouching = Vouching::default();
            for (a, _) in adverts.values() {
                vouching.advert_changed(None, Some(a));
            }
            let g = Graph::build(me, &config, &own, &adverts, &vouching, |_| false, None);
            let mut sources = vec![(me, None)];
            sources.extend(own.iter().map(|l| (l.neighbor, Some(me))));
            for (src, avoid) in sources {
                let tree = g.shortest(src, avoid);
                let found: HashMap<NodeId, u64> = (0..g.len() as u32)
                    .filter_map(|i| Some((g.id(i), tree.at(&g, i)?.cost)))
                    .collect();
                let want = costs_by_rules(me, &config, &own, &adverts, src, avoid);
                prop_assert_eq!(found, want, "from {:?} avoiding {:?}", src, avoid);
            }
        }

        /// Adverts arriving, changing (kind, links, duplicated links) and
        /// going, some origins at a time: the kept index finds exactly the
        /// vouched links a look at every stub's advert finds.
        #[test]
        fn vouching_kept_finds_what_a_full_look_finds(
            steps in proptest::collection::vec(
                proptest::collection::vec((0u8..4, proptest::collection::vec(0u64..10, 0..5), any::<bool>()), 10),
                1..8,
            ),
        ) {
            let now = Instant::now();
            let mut held: HashMap<NodeId, (Arc<Advert>, Instant), Ids> = HashMap::default();
            let mut vouching = Vouching::default();
            for (seq, nodes) in steps.iter().enumerate() {
                for (i, (kind, listed, changes)) in nodes.iter().enumerate() {
                    let origin = NodeId(i as u64 + 1);
                    if !changes && seq > 0 {
                        continue;
                    }
                    // Kind 0: relay; 1: stub; 2: truncated relay; 3: none.
                    let new = (*kind != 3).then(|| Arc::new(Advert {
                        origin,
                        seq: seq as u64 + 1,
                        stub: *kind == 1,
                        truncated: *kind == 2,
                        no_transit: false,
                        links: (listed.iter())
                            .filter(|&&n| n != i as u64)
                            .map(|&n| LinkEntry { neighbor: NodeId(n + 1), rtt_us: 100 + n as u32, loss_permille: 0, settling: false })
                            .collect(),
                        signature: [0; 64],
                    }));
                    let old = match &new {
                        Some(a) => held.insert(origin, (a.clone(), now)),
                        None => held.remove(&origin),
                    };
                    vouching.advert_changed(old.as_ref().map(|(a, _)| &**a), new.as_deref());
                }
                let sorted = |v: Vouched| {
                    let mut v: Vec<(NodeId, NodeId, u32)> = v
                        .into_iter()
                        .flat_map(|(r, ls)| ls.into_iter().map(move |(s, l)| (r, s, l.rtt_us)))
                        .collect();
                    v.sort_unstable();
                    v
                };
                prop_assert_eq!(sorted(vouching.links(&held)), sorted(vouched_links(&held)), "step {}", seq);
            }
        }
    }
}
