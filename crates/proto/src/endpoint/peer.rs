//! The peer table: every peer's keys, sessions, timers and link state, the
//! maps that find a peer by static key, node id, underlay address and
//! session index, and the path datagrams to a peer take.
//!
//! Invariants:
//! - Every index a peer's pending handshake or sessions hold is in
//!   `by_index`, mapping to that peer; indices are released when a session
//!   or handshake is dropped ([`SessionSlots::rotate`] and
//!   [`SessionSlots::clear`] return the indices they let go).
//! - A peer's deadline is a function of the peer alone ([`peer_deadline`]);
//!   every write goes through the [`Table`], which marks the peer so its
//!   deadline is computed again (see `crate::table`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::{Index, IndexMut};
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;

use crate::cert::Certificate;
use crate::cookie;
use crate::handshake::{self, Identity};
use crate::health::{LinkHealth, LinkStatus};
use crate::pmtu::PathMtu;
use crate::provider::{Crypto, MAC_LEN};
use crate::session::Session;
use crate::table::Table;
use crate::timers::{usable, PeerTimers};
use crate::wire::{NodeId, RelayHeader};

use super::admission::IdentCache;
use super::api::{Handover, PeerId};
use super::handshake::Pending;
use super::stats::PeerStats;
use super::traversal::PeerPunch;

/// One peer.
pub(crate) struct Peer {
    pub static_public: [u8; 32],
    pub node_id: NodeId,
    /// DH(our static, their static), computed once (None: low-order key).
    pub static_static: Option<[u8; 32]>,
    pub mac1_key: [u8; 32],
    pub cookie_key: [u8; 32],
    pub endpoint: Option<SocketAddr>,
    /// Its verified certificate, once a handshake completed.
    pub cert: Option<Certificate>,
    pub sessions: SessionSlots,
    pub pending: Option<Pending>,
    /// A cookie from its last cookie reply, and when it came.
    pub cookie: Option<([u8; MAC_LEN], Instant)>,
    /// Packets waiting for a session.
    pub queue: VecDeque<Vec<u8>>,
    pub timers: PeerTimers,
    /// Probe state of the direct link (once it has an address and a session).
    pub health: Option<LinkHealth>,
    /// Path MTU of the direct link (with `health`, when discovery is on).
    pub pmtu: Option<PathMtu>,
    /// The relay datagrams go through, or `None` for the direct path.
    pub via: Option<PeerId>,
    /// Whether the route table has a route to it (kept in step with the
    /// router by the endpoint; a stub without one uses its default relay).
    pub routed: bool,
    /// Adverts were exchanged with this neighbour since its link last came up.
    pub synced: bool,
    pub stats: PeerStats,
    pub idents: IdentCache,
    /// Revoked or outside our enclaves: no handshake either way.
    pub refused: bool,
    /// Refused with a session open: bundle transfers alone until it ends.
    pub handover: Handover,
    /// Introduced itself by a handshake rather than being added by the
    /// driver: retired when unreachable for long.
    pub learned: bool,
    /// Hole punching towards it (see `traversal.rs`).
    pub punch: PeerPunch,
    /// Initiations sent to its direct address since a packet last came
    /// from it directly.
    pub direct_initiations: u8,
    /// Its direct address does not answer (see [`Peers::note_direct_initiation`]):
    /// traffic goes through a relay where one is known, and the address
    /// is not probed as a link until something proves it.
    pub silent: bool,
    /// The next hop of the route table's route to it, whether or not
    /// traffic takes it (a silent address falls back to it).
    pub route_hop: Option<PeerId>,
    /// Its clock minus ours, in ms, from the timestamp of its latest
    /// handshake initiation we answered.
    pub clock_offset_ms: Option<i64>,
}

impl Peer {
    /// Whether its direct link is probed and up.
    pub fn link_up(&self) -> bool {
        self.health
            .as_ref()
            .is_some_and(|h| h.status() == LinkStatus::Up)
    }

    /// Its current session, if usable at `now` (a refused peer's, kept
    /// for a handover, is not).
    pub fn session(&self, now: Instant) -> Option<&Session> {
        if self.refused {
            return None;
        }
        self.sessions.current(now)
    }
}

/// The earliest of peer `p`'s timers: everything the endpoint's
/// `handle_timeout` acts on for it. A function of the peer alone (the
/// [`Table`] keeps it in a heap and computes it again after a write).
pub(crate) fn peer_deadline(p: &Peer) -> Option<Instant> {
    [
        p.timers.deadline(p.sessions.any()),
        p.health.as_ref().map(LinkHealth::next_deadline),
        p.pmtu.as_ref().and_then(PathMtu::next_deadline),
        p.punch.next_at,
    ]
    .into_iter()
    .flatten()
    .min()
}

/// A peer's sessions: `current` (sends and receives), `previous` (still
/// receives, after a rekey), `next` (a responder's session until the first
/// packet on it confirms it). As wireguard-go.
#[derive(Default)]
pub(crate) struct SessionSlots {
    current: Option<Session>,
    previous: Option<Session>,
    next: Option<Session>,
}

/// Which slot holds a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Current,
    Next,
    Previous,
}

/// How a new session enters the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rotation {
    /// Our initiation completed: the session is current at once.
    Initiated,
    /// We responded: the session waits in `next` until confirmed.
    Responded,
}

/// Session indices let go by a rotation, to be released.
#[must_use]
pub(crate) struct Retired([Option<u32>; 3]);

impl IntoIterator for Retired {
    type Item = u32;
    type IntoIter = std::iter::Flatten<std::array::IntoIter<Option<u32>, 3>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().flatten()
    }
}

fn index_of(s: Option<Session>) -> Option<u32> {
    s.map(|s| s.local_index())
}

impl SessionSlots {
    /// The current session, if usable at `now`.
    pub fn current(&self, now: Instant) -> Option<&Session> {
        self.current
            .as_ref()
            .filter(|s| usable(s.established(), now))
    }

    /// The current session, if usable at `now`, for sealing.
    pub fn current_mut(&mut self, now: Instant) -> Option<&mut Session> {
        self.current
            .as_mut()
            .filter(|s| usable(s.established(), now))
    }

    /// Whether any session is held.
    pub fn any(&self) -> bool {
        self.current.is_some() || self.previous.is_some() || self.next.is_some()
    }

    /// Whether a confirmed session is held (a responder's `next` is not
    /// one until the initiator's first packet arrives on it).
    pub fn any_confirmed(&self) -> bool {
        self.current.is_some() || self.previous.is_some()
    }

    /// Whether a current session exists (usable or not).
    pub fn has_current(&self) -> bool {
        self.current.is_some()
    }

    /// The slot holding the session with our index `local_index`.
    pub fn slot_of(&self, local_index: u32) -> Option<Slot> {
        let is = |s: &Option<Session>| s.as_ref().is_some_and(|s| s.local_index() == local_index);
        if is(&self.current) {
            Some(Slot::Current)
        } else if is(&self.next) {
            Some(Slot::Next)
        } else if is(&self.previous) {
            Some(Slot::Previous)
        } else {
            None
        }
    }

    /// The session in `slot`.
    pub fn get(&self, slot: Slot) -> Option<&Session> {
        match slot {
            Slot::Current => self.current.as_ref(),
            Slot::Next => self.next.as_ref(),
            Slot::Previous => self.previous.as_ref(),
        }
    }

    /// The session in `slot`, for committing a counter.
    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut Session> {
        match slot {
            Slot::Current => self.current.as_mut(),
            Slot::Next => self.next.as_mut(),
            Slot::Previous => self.previous.as_mut(),
        }
    }

    /// Puts a new session in place, the one rotation routine:
    /// - [`Rotation::Initiated`]: current; the old current becomes previous,
    ///   unless an unconfirmed responder session waits in `next` (the
    ///   peer's handshake crossed ours): that one becomes previous, so the
    ///   peer's packets on it still arrive, and the old current goes.
    ///   Without one, of the old current and previous the one the peer
    ///   sent on last stays as previous: after crossed handshakes the peer
    ///   keeps sending on its own session, our previous, and never on our
    ///   current, so dropping the previous would lose its packets until it
    ///   confirms the new session.
    /// - [`Rotation::Responded`]: next, replacing any unconfirmed one.
    pub fn rotate(&mut self, session: Session, how: Rotation) -> Retired {
        match how {
            Rotation::Initiated => {
                let retired = match self.next.take() {
                    Some(next) => [
                        index_of(self.previous.replace(next)),
                        index_of(self.current.take()),
                        None,
                    ],
                    None => {
                        let (current, previous) = (self.current.take(), self.previous.take());
                        let heard =
                            |s: &Option<Session>| s.as_ref().and_then(Session::last_received);
                        let (keep, drop) = if heard(&previous) > heard(&current) {
                            (previous, current)
                        } else {
                            (current, previous)
                        };
                        self.previous = keep;
                        [index_of(drop), None, None]
                    }
                };
                self.current = Some(session);
                Retired(retired)
            }
            Rotation::Responded => Retired([index_of(self.next.replace(session)), None, None]),
        }
    }

    /// The first packet on `next` arrived: it becomes current, the current
    /// one previous.
    pub fn confirm_next(&mut self) -> Retired {
        let old_previous = self.previous.take();
        self.previous = self.current.take();
        self.current = self.next.take();
        Retired([index_of(old_previous), None, None])
    }

    /// Drops every session.
    pub fn clear(&mut self) -> Retired {
        Retired([
            index_of(self.current.take()),
            index_of(self.next.take()),
            index_of(self.previous.take()),
        ])
    }
}

/// Every peer of one endpoint (a [`PeerId`] is a slot and its generation:
/// learned peers are removed when gone, and an old id never reaches the
/// slot's next peer), with their timers in a heap, the maps that find them,
/// and what decides the path to each.
pub(crate) struct Peers {
    table: Table<Peer>,
    by_static: HashMap<[u8; 32], PeerId>,
    by_node: HashMap<NodeId, PeerId>,
    by_endpoint: HashMap<SocketAddr, PeerId>,
    by_index: HashMap<u32, PeerId>,
    /// This node's id (relay headers).
    own: NodeId,
    /// This node relays; a stub uses `default_relay`.
    relay: bool,
    /// A stub's way to destinations it has no route to: its best relaying
    /// neighbour (chosen at each route computation).
    pub default_relay: Option<PeerId>,
}

impl Peers {
    pub fn new(own: NodeId, relay: bool) -> Self {
        Self {
            table: Table::default(),
            by_static: HashMap::new(),
            by_node: HashMap::new(),
            by_endpoint: HashMap::new(),
            by_index: HashMap::new(),
            own,
            relay,
            default_relay: None,
        }
    }

    /// Adds a peer, or updates the one with this static key (its address,
    /// keepalive; a configured peer is never learned again).
    pub fn insert(
        &mut self,
        crypto: &dyn Crypto,
        identity: &Identity,
        static_public: [u8; 32],
        endpoint: Option<SocketAddr>,
        persistent_keepalive: Option<Duration>,
        learned: bool,
    ) -> (PeerId, bool) {
        if let Some(&id) = self.by_static.get(&static_public) {
            if let Some(e) = endpoint {
                self.set_endpoint(id, e);
            }
            let p = &mut self.table[id.index()];
            p.timers.set_persistent_keepalive(persistent_keepalive);
            p.learned &= learned;
            return (id, false);
        }
        let node_id = NodeId::of(&static_public);
        let (index, gen) = self.table.push(Peer {
            static_public,
            node_id,
            static_static: handshake::static_static(crypto, identity, &static_public).ok(),
            mac1_key: cookie::mac1_key(crypto, &static_public),
            cookie_key: cookie::cookie_key(crypto, &static_public),
            endpoint,
            cert: None,
            sessions: SessionSlots::default(),
            pending: None,
            cookie: None,
            queue: VecDeque::new(),
            timers: PeerTimers::new(persistent_keepalive),
            health: None,
            pmtu: None,
            via: None,
            routed: false,
            synced: false,
            stats: PeerStats::default(),
            idents: IdentCache::default(),
            refused: false,
            handover: Handover::None,
            learned,
            punch: PeerPunch::default(),
            direct_initiations: 0,
            silent: false,
            route_hop: None,
            clock_offset_ms: None,
        });
        let id = PeerId::new(index, gen);
        self.by_static.insert(static_public, id);
        self.by_node.insert(node_id, id);
        if let Some(e) = endpoint {
            self.by_endpoint.insert(e, id);
        }
        (id, true)
    }

    /// Records `peer`'s underlay address (roaming), keeping the reverse map.
    /// A new address is a new path: its MTU is measured afresh.
    pub fn set_endpoint(&mut self, peer: PeerId, addr: SocketAddr) {
        let p = &mut self.table[peer.index()];
        if p.endpoint == Some(addr) {
            return;
        }
        if let Some(old) = p.endpoint.replace(addr) {
            if self.by_endpoint.get(&old) == Some(&peer) {
                self.by_endpoint.remove(&old);
            }
        }
        p.pmtu = None;
        self.by_endpoint.insert(addr, peer);
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// A peer id, if it is one of ours (a driver could hold another
    /// endpoint's, or one of a peer since removed).
    pub fn checked(&self, id: PeerId) -> Option<PeerId> {
        self.table.get(id.index(), id.gen()).map(|_| id)
    }

    pub fn ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.table.handles().map(|(i, gen)| PeerId::new(i, gen))
    }

    /// Removes `peer` and every map entry naming it (its sessions must be
    /// gone: their indices released). Its id is refused from now on.
    pub fn remove(&mut self, peer: PeerId) -> Option<Peer> {
        self.checked(peer)?;
        let p = self.table.remove(peer.index())?;
        self.by_static.remove(&p.static_public);
        if self.by_node.get(&p.node_id) == Some(&peer) {
            self.by_node.remove(&p.node_id);
        }
        if let Some(e) = p.endpoint {
            if self.by_endpoint.get(&e) == Some(&peer) {
                self.by_endpoint.remove(&e);
            }
        }
        // Its sessions and handshake released their indices already.
        debug_assert!(self.by_index.values().all(|id| *id != peer));
        if self.default_relay == Some(peer) {
            self.default_relay = None;
        }
        // Nothing goes through it any more (the route hop is read by the
        // path alone; `via` is written as every path change is).
        let through: Vec<PeerId> = (self.ids())
            .filter(|&id| self[id].via == Some(peer) || self[id].route_hop == Some(peer))
            .collect();
        for id in through {
            self.quiet_mut(id).route_hop = self[id].route_hop.filter(|h| *h != peer);
            if self[id].via == Some(peer) {
                self[id].via = None;
            }
        }
        Some(p)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.table.iter()
    }

    /// Every peer, each marked as written.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Peer> {
        self.table.iter_mut()
    }

    /// A peer for a write that changes neither its deadline nor anything
    /// its timers check (see `Table::quiet_mut`).
    pub fn quiet_mut(&mut self, id: PeerId) -> &mut Peer {
        self.table.quiet_mut(id.index())
    }

    pub fn by_static(&self, key: &[u8; 32]) -> Option<PeerId> {
        self.by_static.get(key).copied()
    }

    pub fn by_node(&self, node: NodeId) -> Option<PeerId> {
        self.by_node.get(&node).copied()
    }

    pub fn by_endpoint(&self, addr: &SocketAddr) -> Option<PeerId> {
        self.by_endpoint.get(addr).copied()
    }

    pub fn by_index(&self, index: u32) -> Option<PeerId> {
        self.by_index.get(&index).copied()
    }

    /// A fresh non-zero session index, not in use, recorded for `peer`.
    pub fn reserve_index(&mut self, rng: &mut dyn CryptoRngCore, peer: PeerId) -> u32 {
        let i = self.fresh_index(rng);
        self.record_index(i, peer);
        i
    }

    /// A fresh non-zero session index, not in use (nor recorded yet: see
    /// [`Peers::record_index`]).
    pub fn fresh_index(&self, rng: &mut dyn CryptoRngCore) -> u32 {
        loop {
            let i = rng.next_u32();
            if i != 0 && !self.by_index.contains_key(&i) {
                return i;
            }
        }
    }

    /// Records session index `i` as `peer`'s.
    pub fn record_index(&mut self, i: u32, peer: PeerId) {
        self.by_index.insert(i, peer);
    }

    /// Lets go of session indices.
    pub fn release(&mut self, indices: impl IntoIterator<Item = u32>) {
        for i in indices {
            self.by_index.remove(&i);
        }
    }

    /// Computes the deadlines of the peers written since the last refresh;
    /// in debug builds, also checks every cached one.
    pub fn refresh(&mut self) {
        self.table.refresh(peer_deadline);
    }

    /// The earliest peer deadline (after [`Peers::refresh`]).
    pub fn earliest(&mut self) -> Option<Instant> {
        self.table.earliest()
    }

    /// The peers due at `now`, and those written since the last call.
    pub fn take_due(&mut self, now: Instant) -> Vec<PeerId> {
        self.table.refresh(peer_deadline);
        let due = self.table.take_due(now);
        (due.into_iter())
            .map(|i| PeerId::new(i, self.table.gen(i)))
            .collect()
    }

    /// An initiation went to `peer`'s direct address: whether that made
    /// the address silent (the second one unanswered, a retransmission
    /// [`REKEY_TIMEOUT`](crate::timers::REKEY_TIMEOUT) after the first).
    /// A silent peer's traffic moves to its route's next hop at once.
    pub fn note_direct_initiation(&mut self, peer: PeerId) -> bool {
        let p = &mut self[peer];
        p.direct_initiations = p.direct_initiations.saturating_add(1);
        if p.silent || p.direct_initiations < 2 || p.link_up() {
            return false;
        }
        p.silent = true;
        if p.via.is_none() {
            p.via = p.route_hop;
        }
        true
    }

    /// A packet came from `peer` directly: its address answers.
    pub fn heard_directly(&mut self, peer: PeerId) {
        let p = &self[peer];
        if p.direct_initiations != 0 || p.silent {
            let p = &mut self[peer];
            p.direct_initiations = 0;
            p.silent = false;
        }
    }

    /// Where datagrams for `peer` go now: the underlay address, and the
    /// relay header to put in front when that address is a relay's.
    pub fn path(&self, peer: PeerId) -> Option<(SocketAddr, Option<RelayHeader>)> {
        let p = &self[peer];
        let via = p.via.or_else(|| self.default_route(peer));
        if let Some(r) = via {
            if let Some(e) = self[r].endpoint {
                return Some((e, Some(RelayHeader::new(self.own, p.node_id))));
            }
        }
        p.endpoint.map(|e| (e, None))
    }

    /// A stub's relay for `peer` when its routes know no way there and
    /// there is no working direct link: the relay may know more (a hub lists
    /// at most 64 links, and stubs hold no adverts of other stubs).
    pub(crate) fn default_route(&self, peer: PeerId) -> Option<PeerId> {
        if self.relay {
            return None;
        }
        let r = self.default_relay.filter(|r| *r != peer)?;
        let p = &self[peer];
        let direct = p.endpoint.is_some()
            && !p.silent
            && p.health
                .as_ref()
                .is_none_or(|h| h.status() == LinkStatus::Up);
        (!direct && !p.routed).then_some(r)
    }

    /// This node's id.
    pub fn own(&self) -> NodeId {
        self.own
    }
}

/// Indexing with an id of a removed peer is a bug (ids from outside go
/// through [`Peers::checked`]); debug builds catch it.
impl Index<PeerId> for Peers {
    type Output = Peer;
    fn index(&self, id: PeerId) -> &Peer {
        debug_assert_eq!(self.table.gen(id.index()), id.gen(), "a removed peer's id");
        &self.table[id.index()]
    }
}

impl IndexMut<PeerId> for Peers {
    fn index_mut(&mut self, id: PeerId) -> &mut Peer {
        debug_assert_eq!(self.table.gen(id.index()), id.gen(), "a removed peer's id");
        &mut self.table[id.index()]
    }
}
