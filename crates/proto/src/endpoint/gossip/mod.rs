//! Link state: this node's signed adverts, the flood of everyone else's,
//! the certificates of advert origins, and the routes computed from them
//! (`crate::route`), applied to the peers as paths.
//!
//! Flow: an advert from a neighbour is acknowledged, checked against its
//! origin's certificate (fetched from that neighbour first if we lack it,
//! the advert parked meanwhile; the checks run inline, or are queued for
//! the driver to run off the packet path: `checks.rs`), stored if newer,
//! flooded on, and routes are
//! recomputed after a short batching delay. Own adverts go out on a change
//! (no sooner than the origination interval) and on a refresh timer. Every
//! advert sent to a neighbour is sent again until acknowledged
//! (`super::flooding`), and a neighbour that sends an older advert than we
//! hold gets ours back, so a lost datagram costs a retransmission timeout,
//! not the origin's next refresh. Own adverts are drafted and timed in
//! `origination.rs`; syncs, acknowledgements and retransmission are in
//! `sync.rs`; refreshes wait in `held_back.rs` before they are passed on;
//! route changes move peers onto relays and back (`Peer::via`) in
//! `paths.rs`.

mod checks;
mod held_back;
mod origination;
mod paths;
mod sync;

pub use checks::{CheckPlan, Checked, CHECK_BATCH};

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cert::Certificate;
use crate::control::{Advert, Control};
use crate::route::Router;
use crate::store::SharedStore;
use crate::wire::NodeId;

use super::admission::Admission;
use super::api::PeerId;
use super::flooding::Flooding;
use super::members::Members;
use super::net::{Cx, Local};
use super::news::{self, same_topology};
use super::peer::Peers;

/// Routes are recomputed at least this often, to follow RTT and loss.
const ROUTE_INTERVAL: Duration = Duration::from_secs(1);
/// Adverts received within this long share one route computation...
const ROUTE_BATCH_DELAY: Duration = Duration::from_millis(20);
/// ...and while they keep coming, computations they trigger are spaced by
/// a hold that doubles from `ROUTE_BATCH_DELAY` up to this (OSPF's SPF
/// throttle), resetting after a quiet spell of twice the hold. Relays
/// computing from databases of different ages can loop a destination
/// between them for as long as the hold (docs/decisions/route-computation-hold.md).
const ROUTE_HOLD_MAX: Duration = Duration::from_millis(250);
/// Refresh adverts no more often than once per this much per known origin,
/// so the refresh traffic a node forwards stays flat as the mesh grows.
const REFRESH_PER_ORIGIN: Duration = Duration::from_secs(2);
/// Most adverts waiting for a certificate at once (a node joining a mesh of
/// thousands parks one per origin until the certificates arrive).
const MAX_PARKED: usize = 16_384;
/// A certificate request unanswered this long is sent again (when the next
/// advert from that origin arrives, or at the next route pass).
const CERT_RETRY: Duration = Duration::from_secs(1);
/// Most certificate requests sent again per route pass.
const CERT_RETRY_BURST: usize = 256;

/// An advert waiting for its origin's certificate.
#[derive(Debug)]
struct Parked {
    advert: Advert,
    from: PeerId,
    asked: Instant,
}

/// The link-state part of one node.
pub(crate) struct Gossip {
    router: Router,
    /// When a change of our links is advertised (if it changed what our
    /// advert says).
    change_at: Option<Instant>,
    /// When our advert is refreshed (sent again, changed or not).
    refresh_at: Option<Instant>,
    advert_seq: u64,
    last_originated: Option<Instant>,
    /// When an advert was last originated for a moved link cost alone.
    last_cost_news: Option<Instant>,
    /// Links our last advert listed before any probe answered on them.
    unmeasured: Vec<NodeId>,
    last_advert: Option<Advert>,
    /// When routes are computed next.
    route_at: Option<Instant>,
    /// The least spacing of advert-triggered route computations now, when
    /// the last one ran, and whether one is scheduled.
    route_hold: Duration,
    last_triggered: Option<Instant>,
    triggered: bool,
    /// When a suspicion last had routes computed at once.
    suspicion_computed: Option<Instant>,
    /// Our adverts say we carry no traffic for others (behind a NAT).
    no_transit: bool,
    /// Verified, admissible certificates of advert origins (peers and
    /// nodes we only know from their adverts), by node id.
    origin_certs: Members,
    /// Shared with the other endpoints of this process (the simulator).
    shared: Option<Arc<SharedStore>>,
    /// Adverts whose origin's certificate we are fetching: the highest one
    /// per origin, who sent it, and when we asked that neighbour.
    parked: BTreeMap<NodeId, Parked>,
    /// Acknowledgements and retransmissions.
    flooding: Flooding,
    /// Signature checks waiting for the driver (deferred checks only).
    checks: checks::Queue,
    /// Since which advert a stub's view of each origin (ours included) is
    /// unchanged: what a stub's sync request is answered by.
    stub_views: news::StubViews,
    /// On a stub: its designated relay as last seen, and the sync with a
    /// newly designated one, and when ([`Gossip::catch_up`]).
    designated: Option<NodeId>,
    catch_up: Option<(NodeId, Instant)>,
    /// Refreshes held back before they are passed on (`held_back.rs`).
    held_back: held_back::HeldBack,
}

impl Gossip {
    pub fn new(local: &Local) -> Self {
        let config = &local.config;
        let mut router = Router::new(local.node_id, config.route);
        if !config.relay {
            router.scope_routes(); // a stub routes for its own peers only
        }
        Self {
            router,
            change_at: None,
            designated: None,
            catch_up: None,
            held_back: held_back::HeldBack::default(),
            refresh_at: None,
            advert_seq: 0,
            last_originated: None,
            last_cost_news: None,
            unmeasured: Vec::new(),
            last_advert: None,
            route_at: None,
            route_hold: ROUTE_BATCH_DELAY,
            last_triggered: None,
            suspicion_computed: None,
            triggered: false,
            no_transit: false,
            origin_certs: Members::default(),
            shared: (config.shared.clone()).filter(|s| s.ca() == local.ca.fingerprint()),
            parked: BTreeMap::new(),
            flooding: Flooding::default(),
            checks: checks::Queue::default(),
            stub_views: news::StubViews::default(),
        }
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The members known by their verified certificates.
    pub fn members(&self) -> &Members {
        &self.origin_certs
    }

    /// The peer to hand `node`'s traffic to on the way, as routed now
    /// (`None`: direct, or no route).
    pub fn next_hop(&self, peers: &Peers, node: NodeId) -> Option<PeerId> {
        let r = self.router.route(node)?;
        (r.next_hop != node)
            .then(|| peers.by_node(r.next_hop))
            .flatten()
    }

    /// A new peer: whether a route to it exists (a stub keeps routes to its
    /// peers only, from now on this one too).
    pub fn add_peer(&mut self, node: NodeId) -> bool {
        self.router.want_route(node);
        self.router.route(node).is_some()
    }

    /// How often this node re-sends its own advert when nothing changes:
    /// `advert_interval`, stretched to 2 s per node known, so mesh-wide
    /// refresh traffic per node stays constant as the mesh grows. Changes
    /// are flooded at once regardless; a crashed node's stale advert is
    /// harmless (its neighbours stop listing it, see `proto::route`).
    ///
    /// Nodes known = adverts held or nodes reachable, whichever is more: a
    /// stub holds only relays' adverts but reaches every node through them,
    /// so it counts the same as a relay, and every node's refresh interval
    /// (and the 4 × refresh after which adverts expire) agrees.
    pub fn advert_refresh(&self, advert_interval: Duration) -> Duration {
        let known = self
            .router
            .advert_count()
            .max(self.router.reachable_count());
        let origins = known as u32 + 1;
        advert_interval.max(REFRESH_PER_ORIGIN * origins)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let timers = [
            self.route_at,
            self.change_at,
            self.catch_up.map(|(_, at)| at),
            self.held_back.poll_timeout(),
            self.refresh_at,
            self.router.suspicion_deadline(),
        ];
        timers
            .into_iter()
            .chain([self.flooding.poll_timeout()])
            .flatten()
            .min()
    }

    /// Adverts (and sync requests) sent and not acknowledged yet.
    pub fn unacked_count(&self) -> usize {
        self.flooding.unacked_count()
    }

    /// `peer`'s link went down: what it has not acknowledged goes with the
    /// sync when the link comes back.
    pub fn link_down(&mut self, peer: PeerId) {
        self.flooding.forget(peer);
    }

    /// Keeps a verified node certificate (shared when there is a store).
    pub fn keep_origin_cert(&mut self, cert: Certificate) {
        let node = NodeId::of(cert.public_key());
        let cert = match &self.shared {
            Some(s) => s.put_cert(node, cert),
            None => Arc::new(cert),
        };
        self.origin_certs.insert(node, cert);
    }

    /// Drops the link state of `node` (revoked, or outside our enclaves).
    pub fn forget(&mut self, node: NodeId) {
        self.router.forget(node);
    }

    /// A peer is removed: adverts parked on its word and the route scope
    /// it held go (its link state stays while its adverts live).
    pub fn remove_peer(&mut self, peer: PeerId, node: NodeId) {
        self.parked.retain(|_, p| p.from != peer);
        self.flooding.remove(peer);
        self.held_back.forget(peer);
        self.router.unwant_route(node);
    }

    /// Drops the origin certificates, and the link state, of nodes for which
    /// `admit` fails.
    pub fn drop_inadmissible(&mut self, admit: impl Fn(&Certificate) -> bool) {
        let gone: Vec<NodeId> = self
            .origin_certs
            .iter()
            .filter(|(_, c)| !admit(c))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.origin_certs.remove(id);
            self.router.forget(id);
        }
    }

    /// Sends a link-state message to neighbour `peer`, counted as gossip;
    /// whether it went.
    fn send_counted(cx: &mut Cx<'_>, now: Instant, peer: PeerId, msg: &Control) -> bool {
        let Some(len) = cx.send_gossip(now, peer, msg) else {
            return false;
        };
        cx.out.stats.gossip_bytes_sent += len as u64;
        cx.out.stats.gossip_messages_sent += 1;
        true
    }

    /// Sends an advert to neighbour `peer`, to be acknowledged.
    fn send_advert(
        flooding: &mut Flooding,
        cx: &mut Cx<'_>,
        now: Instant,
        peer: PeerId,
        advert: &Advert,
    ) {
        if Self::send_counted(cx, now, peer, &Control::LinkState(advert.clone())) {
            cx.out.stats.adverts_sent += 1;
            let rto = Self::rto(flooding, cx, peer);
            flooding.sent(peer, advert.origin, advert.seq, now, rto);
        }
    }

    /// The retransmission timeout towards neighbour `peer`.
    fn rto(flooding: &Flooding, cx: &Cx<'_>, peer: PeerId) -> Duration {
        let rtt = cx.peers[peer].health.as_ref().and_then(|h| h.srtt());
        flooding.rto_to(peer, rtt)
    }

    /// A neighbour asks for the certificate of `node` (ours, or an origin's
    /// we checked an advert with).
    pub fn on_cert_request(&mut self, cx: &mut Cx<'_>, now: Instant, peer: PeerId, node: NodeId) {
        let cert = if node == cx.local.node_id {
            Some(cx.local.identity.certificate().as_bytes().to_vec())
        } else {
            self.origin_certs.get(&node).map(|c| c.as_bytes().to_vec())
        };
        if let Some(bytes) = cert {
            cx.send_gossip(now, peer, &Control::Cert { bytes });
        }
    }

    fn reject(cx: &mut Cx<'_>, reason: &'static str) {
        *cx.out.stats.advert_rejects.entry(reason).or_default() += 1;
    }

    /// An advert from neighbour `from`: acknowledged (it has reached us,
    /// whatever we make of it), answered with ours if we hold a newer one,
    /// else considered.
    pub fn on_advert(&mut self, cx: &mut Cx<'_>, now: Instant, from: PeerId, advert: Advert) {
        self.flooding.heard(from, advert.origin, advert.seq);
        self.acknowledge(cx, now, from, &advert);
        if advert.origin == cx.local.node_id {
            self.on_own_advert(cx, now, from, advert.seq);
            return;
        }
        let Some(held) = self.router.advert(advert.origin) else {
            self.consider(cx, now, from, advert);
            return;
        };
        if held.seq < advert.seq {
            self.consider(cx, now, from, advert);
        } else if held.seq == advert.seq {
            cx.out.stats.adverts_duplicate += 1;
            self.held_back.heard(from, advert.origin, advert.seq);
        } else {
            // It missed the newer one (a flood lost, or a link that was
            // down): repair it now, as OSPF answers an older LSA.
            let to_stub = self.router.is_stub(cx.peers[from].node_id);
            let sent = self.flooding.in_flight(from, held.origin, held.seq);
            if !(sent || to_stub && held.stub) {
                let held = held.clone();
                Self::send_advert(&mut self.flooding, cx, now, from, &held);
            }
        }
    }

    /// A copy of our own advert came back: older than ours, the neighbour
    /// gets ours; newer (we restarted with a clock behind the one that
    /// numbered it), our next advert is numbered past it, at once.
    fn on_own_advert(&mut self, cx: &mut Cx<'_>, now: Instant, from: PeerId, seq: u64) {
        if seq > self.advert_seq {
            self.advert_seq = seq;
            self.refresh_soon(cx.peers, now);
        } else if let Some(own) = (self.last_advert.as_ref())
            .filter(|a| a.seq > seq && !self.flooding.in_flight(from, a.origin, a.seq))
        {
            let own = own.clone();
            Self::send_advert(&mut self.flooding, cx, now, from, &own);
        }
    }

    /// An advert newer than what we hold (or of a new origin): checked
    /// against its origin's certificate (fetched from `from` first if we
    /// have none), then taken and flooded on.
    fn consider(&mut self, cx: &mut Cx<'_>, now: Instant, from: PeerId, advert: Advert) {
        let refused = cx
            .peers
            .by_node(advert.origin)
            .is_some_and(|p| cx.peers[p].refused);
        let held = self.router.advert(advert.origin).map(|a| a.seq);
        if refused || advert.origin == cx.local.node_id || held.is_some_and(|s| s >= advert.seq) {
            return;
        }
        // A stub routes through relays only: another stub's links are of no
        // use to it (a relay may send one before it knows we are a stub).
        if advert.stub && !cx.local.config.relay {
            return;
        }
        let Some(cert) = self.origin_certs.get(&advert.origin) else {
            self.park(cx, now, from, advert);
            return;
        };
        let key = cert.body().advert_key;
        if cx.local.config.defer_signature_checks {
            if !self.checks.push_advert(from, advert, key) {
                Self::reject(cx, "checks_full");
            }
            return;
        }
        let ok = (self.shared.as_ref()).is_some_and(|s| s.advert(&advert).is_some())
            || checks::advert_signed(&*cx.local.crypto, &key, &advert);
        self.advert_checked(cx, now, from, advert, ok);
    }

    /// An advert whose signature was checked (`ok`: good), inline or in a
    /// [`CheckPlan`]: taken and flooded on if it is still newer than what
    /// we hold.
    fn advert_checked(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        from: PeerId,
        advert: Advert,
        ok: bool,
    ) {
        cx.out.stats.signatures_checked += 1;
        if !ok {
            Self::reject(cx, "bad_signature");
            return;
        }
        let refused = (cx.peers.by_node(advert.origin)).is_some_and(|p| cx.peers[p].refused);
        let held = self.router.advert(advert.origin).map(|a| a.seq);
        if refused || held.is_some_and(|s| s >= advert.seq) {
            return; // a deferred check overtaken (a newer advert, a refusal)
        }
        if self.origin_certs.get(&advert.origin).is_none() {
            // Its certificate went while the check ran (the origin turned
            // inadmissible, or a route pass ran while no advert of it was
            // held or queued): fetched and admitted again first.
            self.consider(cx, now, from, advert);
            return;
        }
        let advert = match &self.shared {
            Some(s) => s.put_advert(advert),
            None => Arc::new(advert),
        };
        self.take_advert(cx, now, from, advert);
    }

    /// Parks an advert of an origin whose certificate we lack and asks the
    /// neighbour that sent it (which verified it) for the certificate.
    fn park(&mut self, cx: &mut Cx<'_>, now: Instant, from: PeerId, advert: Advert) {
        let origin = advert.origin;
        let full = self.parked.len() >= MAX_PARKED;
        let ask = match self.parked.get_mut(&origin) {
            Some(p) => {
                let ask = now.saturating_duration_since(p.asked) >= CERT_RETRY;
                if advert.seq > p.advert.seq {
                    p.advert = advert;
                    p.from = from;
                }
                if ask {
                    p.asked = now;
                    p.from = from;
                }
                ask
            }
            None if full => {
                Self::reject(cx, "parked_full");
                false
            }
            None => {
                self.parked.insert(
                    origin,
                    Parked {
                        advert,
                        from,
                        asked: now,
                    },
                );
                true
            }
        };
        if ask {
            cx.send_gossip(now, from, &Control::CertRequest { node: origin });
        }
    }

    /// A certificate a neighbour sent for an origin we asked about: verified
    /// against the CA, admitted, kept, and the parked advert taken.
    pub fn on_cert(&mut self, cx: &mut Cx<'_>, now: Instant, bytes: &[u8], admission: &Admission) {
        let Ok(cert) = Certificate::from_bytes(bytes) else {
            Self::reject(cx, "bad_certificate");
            return;
        };
        let origin = NodeId::of(cert.public_key());
        if !self.parked.contains_key(&origin) {
            return; // not asked for (or already resolved)
        }
        if cx.local.config.defer_signature_checks {
            if !self.checks.push_cert(origin, cert) {
                Self::reject(cx, "checks_full");
            }
            return;
        }
        let local = &*cx.local;
        let ok = (self.shared.as_ref()).is_some_and(|s| s.cert(origin, bytes).is_some())
            || checks::cert_valid(&*local.crypto, &local.ca, &cert, local.unix_secs());
        self.cert_checked(cx, now, cert, ok, admission);
    }

    /// A certificate whose CA signature was checked (`ok`: good and
    /// valid), inline or in a [`CheckPlan`]: admitted, kept, and the
    /// parked advert considered.
    fn cert_checked(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        cert: Certificate,
        ok: bool,
        admission: &Admission,
    ) {
        cx.out.stats.signatures_checked += 1;
        if !ok {
            Self::reject(cx, "bad_certificate");
            return;
        }
        let origin = NodeId::of(cert.public_key());
        let Some(parked) = self.parked.remove(&origin) else {
            return;
        };
        let local = &*cx.local;
        let own = local.identity.certificate();
        if admission.admissible(&*local.crypto, own, &cert).is_err() {
            Self::reject(cx, "inadmissible_origin");
            return;
        }
        cx.out.stats.certs_fetched += 1;
        self.keep_origin_cert(cert);
        self.consider(cx, now, parked.from, parked.advert);
    }

    /// Signature checks queued for the driver.
    pub fn checks_pending(&self) -> usize {
        self.checks.len()
    }

    /// Up to `max` queued checks, as a plan to run with no lock held.
    pub fn take_checks(&mut self, local: &Local, max: usize) -> Option<CheckPlan> {
        let shared = self.shared.as_deref();
        let items = self.checks.take(
            max,
            |a| shared.is_some_and(|s| s.advert(a).is_some()),
            |origin, c| shared.is_some_and(|s| s.cert(origin, c.as_bytes()).is_some()),
        );
        (!items.is_empty()).then(|| {
            let (crypto, ca) = (local.crypto.clone(), local.ca.clone());
            CheckPlan::new(crypto, ca, local.unix_secs(), items)
        })
    }

    /// Takes back what a [`CheckPlan`] found.
    pub fn finish_checks(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        done: Checked,
        admission: &Admission,
    ) {
        for outcome in done.into_outcomes() {
            match outcome {
                checks::Outcome::Advert { from, advert, ok } => {
                    self.advert_checked(cx, now, from, advert, ok);
                }
                checks::Outcome::Cert { cert, ok } => {
                    self.cert_checked(cx, now, cert, ok, admission);
                }
            }
        }
    }

    /// Takes a verified advert and floods it on.
    fn take_advert(&mut self, cx: &mut Cx<'_>, now: Instant, from: PeerId, advert: Arc<Advert>) {
        // A refresh: the origin's links and roles as in the advert it
        // replaces (metrics may differ). Stubs need a relay's changes of
        // backbone links and roles only.
        let held = self.router.advert(advert.origin);
        let refresh = held.is_some_and(|held| same_topology(held, &advert));
        let stub_news =
            held.is_none_or(|held| news::for_stubs(held, &advert, |n| self.router.is_stub(n)));
        let for_stubs = !advert.stub && stub_news;
        // Links the origin no longer lists: their far ends may have gone.
        let withdrawn: Vec<NodeId> = match held {
            Some(held) if !refresh => (held.links.iter())
                .map(|l| l.neighbor)
                .filter(|n| !advert.links.iter().any(|l| l.neighbor == *n))
                .collect(),
            _ => Vec::new(),
        };
        // Neighbours whose link (or its hold-down flag) the advert changes:
        // a stub whose designated relay is one of them (or the origin)
        // hears it from each of its relays; so does every stub a link that
        // went (what routes must leave at once).
        let touched = match for_stubs && cx.local.config.relay {
            true => news::touched(held, &advert),
            false => Vec::new(),
        };
        let bad_news = !withdrawn.is_empty();
        let view = (self.stub_views).after(held, &advert, stub_news);
        if !self.router.handle_advert(now, advert.clone()) {
            return;
        }
        self.stub_views.set(advert.origin, view);
        // A neighbour of ours that another node stopped listing is probed
        // now: the first of its neighbours to notice it gone tells the
        // others within a flood, instead of each waiting for its own next
        // idle probe (SWIM's suspicion, with our own probe as the judge).
        // And a relay still listing the origin that stopped listing it is
        // suspected: routes leave it until it speaks or its hold ends
        // (`route::suspicion`).
        let mut suspected = false;
        for n in withdrawn {
            if let Some(p) = cx.peers.by_node(n) {
                if let Some(h) = cx.peers[p].health.as_mut() {
                    h.on_far_end_suspected(now);
                }
            }
            if self.router.suspect(n, advert.origin, now) {
                cx.out.stats.suspicions += 1;
                suspected = true;
            }
        }
        // At once, at most every `ROUTE_BATCH_DELAY` (a sync dump after a
        // partition can raise hundreds): the others wait for the batch.
        if suspected {
            let recent = (self.suspicion_computed)
                .is_some_and(|t| now.saturating_duration_since(t) < ROUTE_BATCH_DELAY);
            if !recent {
                self.suspicion_computed = Some(now);
                self.recompute_routes(cx, now, true);
            }
        }
        // A neighbour turned out to relay, and our truncated advert left it
        // out: relays come first, so the next advert may list it (if a
        // stub held a slot). One that would not change is not sent: with
        // more relaying neighbours than an advert lists, re-originating at
        // every advert of every left-out neighbour was an advert storm in
        // full meshes of more than 64 nodes.
        let left_out = !advert.stub
            && (self.last_advert.as_ref()).is_some_and(|a| {
                a.truncated && !a.links.iter().any(|l| l.neighbor == advert.origin)
            });
        let neighbour = cx
            .peers
            .by_node(advert.origin)
            .is_some_and(|p| cx.peers[p].health.is_some());
        if left_out && neighbour {
            self.advert_soon(cx.peers, now);
        }
        // Flood: every neighbour with a session but the sender and the
        // origin gets it once (sequence numbers stop the echo). A stub
        // floods nothing (no path passes through it, so no advert needs
        // to), and a stub's advert goes only to neighbours known to relay
        // (their own advert says so): a hub's leaves never hear of each
        // other. A neighbour whose advert we do not hold yet just came up;
        // what it misses here it gets in answer to its sync request.
        //
        // A refresh is not passed to neighbours the origin lists as its own:
        // the origin sent it to each of them over that very link. In a full
        // mesh that is everyone, and a refresh costs each node one message
        // per origin instead of one per origin and neighbour (N² per node
        // per round). A change is flooded to all, so one lost datagram does
        // not hide it.
        let covered: HashSet<NodeId> = if refresh {
            advert.links.iter().map(|l| l.neighbor).collect()
        } else {
            HashSet::new()
        };
        // ...nor to neighbours whose own advert lists the origin (stubs a
        // relay's advert leaves out): the origin reached them itself too.
        let lists_origin =
            |a: &Advert| refresh && a.links.iter().any(|l| l.neighbor == advert.origin);
        // A refresh is held back for a random share of a moment, and goes
        // to the neighbours that did not send us a copy meanwhile
        // (`held_back.rs`); a change goes at once.
        let mut to = Vec::new();
        if cx.local.config.relay {
            for id in cx.peers.ids().collect::<Vec<_>>() {
                let q = &cx.peers[id];
                if id == from
                    || q.node_id == advert.origin
                    || q.health.is_none()
                    || covered.contains(&q.node_id)
                {
                    continue;
                }
                let theirs = self.router.advert(q.node_id);
                if theirs.is_some_and(lists_origin) {
                    continue;
                }
                let relays = theirs.is_some_and(|a| !a.stub);
                // A stub's advert goes to relays only; so does a relay's
                // refresh, and a change of its links to stubs: a stub
                // forwards nothing and keeps relays' adverts for as long as
                // it reaches their origins (`Router::expire`), so all it
                // needs is their backbone changes. A relay's refresh to its
                // ~40 stubs was most of the relay's gossip in steady state
                // (docs/decisions/refresh-not-forwarded-to-stubs.md), its
                // stub-link changes under churn
                // (docs/decisions/stub-link-changes-stay-among-relays.md).
                if !for_stubs && !relays {
                    continue;
                }
                // A stub gets it from its designated relay alone, unless it
                // is news of that relay (a relay that failed does not say so
                // itself, and the stub must hear it from the others as soon
                // as they do) or a link that went: one lost copy of that
                // waits out a retransmission where a second copy is there.
                let me = cx.local.node_id;
                let relay_news =
                    |d: NodeId| bad_news || d == me || d == advert.origin || touched.contains(&d);
                if !relays && !self.designated_of(me, q.node_id).is_none_or(relay_news) {
                    continue;
                }
                to.push(id);
            }
        }
        if refresh {
            let me = cx.local.node_id;
            (self.held_back).hold(now, me, advert.origin, advert.seq, to);
        } else {
            self.held_back.drop_origin(advert.origin);
            for id in to {
                Self::send_advert(&mut self.flooding, cx, now, id, &advert);
            }
        }
        // Batch route computation over a burst of adverts (as OSPF's SPF
        // delay): a node joining a large mesh gets thousands at once, and
        // a relay of a large mesh sees joins and leaves all the time.
        let held = self.last_triggered.map_or(now, |t| t + self.route_hold);
        let soon = (now + ROUTE_BATCH_DELAY).max(held);
        self.route_at = Some(self.route_at.map_or(soon, |t| t.min(soon)));
        self.triggered = true;
    }

    /// Runs the gossip timers due at `now`: expiry and the periodic route
    /// computation, and our advert's origination.
    pub fn handle_timeout(&mut self, cx: &mut Cx<'_>, now: Instant) {
        if self.router.expire_suspicions(now) {
            self.recompute_routes(cx, now, true);
        }
        if self.route_at.is_none_or(|t| t <= now) {
            if std::mem::take(&mut self.triggered) {
                let busy = (self.last_triggered)
                    .is_some_and(|t| now.saturating_duration_since(t) < 2 * self.route_hold);
                self.route_hold = if busy {
                    (2 * self.route_hold).min(ROUTE_HOLD_MAX)
                } else {
                    ROUTE_BATCH_DELAY
                };
                self.last_triggered = Some(now);
            }
            let max_age = (cx.local.config.route.advert_max_age)
                .max(4 * self.advert_refresh(cx.local.config.advert_interval));
            self.router.expire(now, max_age);
            self.parked
                .retain(|_, p| now.saturating_duration_since(p.asked) < max_age);
            self.ask_again(cx, now);
            // Certificates of origins gone from the link state and from the
            // peers go with them (an identity churn leaves nothing behind).
            // (An advert whose check is queued keeps its origin's
            // certificate: once taken, neighbours may ask us for it.)
            self.origin_certs.retain(|id, _| {
                self.router.advert(*id).is_some()
                    || cx.peers.by_node(*id).is_some()
                    || self.checks.has_advert(*id)
            });
            let (router, me) = (&self.router, cx.local.node_id);
            (self.stub_views).retain(|id| id == me || router.advert(id).is_some());
            self.recompute_routes(cx, now, false);
            // A link's hold-down ending changes our advert with no event
            // of its own; so might anything a trigger missed, and a link
            // whose cost moved far from what we advertised.
            if let Some(last) = &self.last_advert {
                let draft = self.draft_advert(cx.local, cx.peers, now);
                if self.change_at.is_none() && self.news(cx.local, cx.peers, last, &draft, now) {
                    self.advert_soon(cx.peers, now);
                }
            }
            // Periodic only while there is something to route over.
            let routing = self.router.adverts().next().is_some()
                || cx.peers.iter().any(|p| p.health.is_some());
            self.route_at = routing.then_some(now + ROUTE_INTERVAL);
        }
        self.retransmit(cx, now);
        self.release_held(cx, now);
        let refresh = self.refresh_at.is_some_and(|t| t <= now);
        if refresh || self.change_at.is_some_and(|t| t <= now) {
            self.change_at = None;
            let draft = self.draft_advert(cx.local, cx.peers, now);
            let news = (self.last_advert.as_ref())
                .is_none_or(|a| self.news(cx.local, cx.peers, a, &draft, now));
            if refresh || news {
                let topology =
                    (self.last_advert.as_ref()).is_none_or(|a| !same_topology(a, &draft));
                if !refresh && !topology && !self.first_rtt(cx.peers, now) {
                    self.last_cost_news = Some(now);
                }
                // A relay's change of its links to stubs goes to relaying
                // neighbours only, as it passes on other relays' (its stubs
                // need backbone changes only, and a stub link that flapped
                // cost three ~1 kB adverts to each of its ~60 stubs); its
                // refresh still goes to all, so its stubs' copy never falls
                // more than a refresh behind. A stub owed an earlier change
                // gets this advert in its place (`retransmit`).
                let stub_news = (self.last_advert.as_ref())
                    .is_none_or(|a| news::for_stubs(a, &draft, |n| self.router.is_stub(n)));
                let to_stubs = refresh || draft.stub || stub_news;
                self.last_originated = Some(now);
                let advert = self.sign(cx.local, draft);
                let view = (self.stub_views).after(self.last_advert.as_ref(), &advert, stub_news);
                self.stub_views.set(advert.origin, view);
                self.originated(cx.peers, now, advert.clone());
                for id in cx.peers.ids().collect::<Vec<_>>() {
                    let q = &cx.peers[id];
                    if q.health.is_some() && (to_stubs || !self.router.is_stub(q.node_id)) {
                        Self::send_advert(&mut self.flooding, cx, now, id, &advert);
                    }
                }
                let interval = cx.local.config.advert_interval;
                self.refresh_at = Some(now + self.advert_refresh(interval));
            }
        }
        self.catch_up(cx, now);
    }

    /// `stub`'s designated relay ([`news::designated`]); `None` when we
    /// cannot tell (its advert is not held, or lists no known relay).
    fn designated_of(&self, me: NodeId, stub: NodeId) -> Option<NodeId> {
        let is_relay = |n: NodeId| n == me || self.router.advert(n).is_some_and(|a| !a.stub);
        (self.router.advert(stub))
            .filter(|a| a.stub)
            .and_then(|a| news::designated(a, is_relay))
    }

    /// Whether `node` is a stub, or a neighbour whose advert we lack.
    fn to_stub(&self, node: NodeId) -> bool {
        self.router.advert(node).is_none_or(|a| a.stub)
    }

    /// Asks again for the certificates of parked adverts whose request (or
    /// its answer) was lost, of the neighbour that sent the advert.
    fn ask_again(&mut self, cx: &mut Cx<'_>, now: Instant) {
        let mut asked = 0;
        for (origin, p) in &mut self.parked {
            if asked == CERT_RETRY_BURST {
                break;
            }
            if now.saturating_duration_since(p.asked) < CERT_RETRY {
                continue;
            }
            if cx.peers.checked(p.from).is_none() {
                continue;
            }
            p.asked = now;
            asked += 1;
            cx.send_gossip(now, p.from, &Control::CertRequest { node: *origin });
        }
    }
}
