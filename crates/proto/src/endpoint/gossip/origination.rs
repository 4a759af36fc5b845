//! This node's own advert: its direct links as it sees them, what an
//! advert of them says, when a change is news, and when one may go out
//! (no sooner than the origination interval, spaced on a hub).

use std::time::{Duration, Instant};

use crate::control::{Advert, MAX_ADVERT_ENTRIES};
use crate::health::LinkStatus;
use crate::route::{self, OwnLink};

use super::super::net::Local;
use super::super::news;
use super::super::peer::Peers;
use super::Gossip;

/// A node originates at most one advert per this long.
const MIN_ORIGINATION_INTERVAL: Duration = Duration::from_millis(200);

/// ...and, on a node with many neighbours, at most one per this much per
/// neighbour.
const ORIGINATION_PER_NEIGHBOUR: Duration = Duration::from_millis(1);

/// The RTT (µs) a link is listed and costed at before any probe on it
/// was answered; its first measured RTT is advertised at once.
const PLACEHOLDER_RTT_US: u32 = 1_000;

impl Gossip {
    /// This node's view of its direct links.
    pub fn own_links(peers: &Peers, now: Instant) -> Vec<OwnLink> {
        peers
            .iter()
            .filter_map(|p| {
                let h = p.health.as_ref()?;
                let up = p.session(now).is_some() && h.status() == LinkStatus::Up;
                Some(OwnLink {
                    neighbor: p.node_id,
                    up,
                    settled: up && h.settled(now),
                    rtt_us: h.base_rtt(now).map_or(PLACEHOLDER_RTT_US, |d| {
                        d.as_micros().min(u32::MAX as u128) as u32
                    }),
                    loss_permille: (h.loss() * 1000.0) as u16,
                    spread_us: h.rtt_spread(now).as_micros().min(u32::MAX as u128) as u32,
                })
            })
            .collect()
    }

    /// Schedules our advert: at once, but no sooner than
    /// `MIN_ORIGINATION_INTERVAL` after the previous one, so a burst of link
    /// changes (a node coming up with many neighbours) is one advert, not a
    /// flood per link. Each origination goes to every neighbour: a hub with a
    /// thousand links spaces its adverts out (1 ms per neighbour), so its
    /// advert traffic stays near 1,000 messages a second however often its
    /// links change.
    ///
    /// A change that leaves the advert saying what it said (a link to a
    /// stub, which relays' adverts do not list) sends nothing.
    pub fn advert_soon(&mut self, peers: &Peers, now: Instant) {
        self.change_at = Some(self.earliest_origination(peers, now));
    }

    /// Sends our advert again at the next opportunity, changed or not (a
    /// refresh ahead of time).
    pub fn refresh_soon(&mut self, peers: &Peers, now: Instant) {
        self.refresh_at = Some(self.earliest_origination(peers, now));
    }

    pub(super) fn earliest_origination(&self, peers: &Peers, now: Instant) -> Instant {
        let neighbours = peers.iter().filter(|p| p.health.is_some()).count() as u32;
        let interval = MIN_ORIGINATION_INTERVAL.max(ORIGINATION_PER_NEIGHBOUR * neighbours);
        self.last_originated
            .map_or(now, |t| (t + interval).max(now))
    }

    /// Sets whether our adverts refuse transit, advertising the change soon.
    pub fn set_no_transit(&mut self, peers: &Peers, now: Instant, no_transit: bool) {
        if self.no_transit != no_transit {
            self.no_transit = no_transit;
            self.advert_soon(peers, now);
        }
    }

    /// Whether our adverts refuse transit.
    pub fn no_transit(&self) -> bool {
        self.no_transit
    }

    /// What our advert says now, unsigned and unnumbered. Relays first: a
    /// hub with more links than an advert lists keeps its backbone paths;
    /// its stubs vouch for their own links.
    pub(super) fn draft_advert(&self, local: &Local, peers: &Peers, now: Instant) -> Advert {
        let own = Self::own_links(peers, now);
        let relay = local.config.relay;
        let mut links = route::advert_entries(&own, |n| self.router.is_stub(n));
        let truncated = links.len() > MAX_ADVERT_ENTRIES;
        links.truncate(MAX_ADVERT_ENTRIES);
        Advert {
            origin: local.node_id,
            seq: 0,
            stub: !relay,
            truncated,
            no_transit: self.no_transit && relay,
            links,
            signature: [0; 64],
        }
    }

    /// A fresh advert of this node's links that are up. Sequence numbers
    /// start from the wall clock (ns) and grow by one per advert, so a
    /// restarted node's adverts replace the ones it sent before.
    pub(super) fn own_advert(&mut self, local: &Local, peers: &Peers, now: Instant) -> Advert {
        let a = self.draft_advert(local, peers, now);
        self.sign(local, a)
    }

    pub(super) fn sign(&mut self, local: &Local, mut a: Advert) -> Advert {
        self.advert_seq = (self.advert_seq + 1).max(local.unix_nanos);
        a.seq = self.advert_seq;
        a.signature = local
            .identity
            .sign_advert(&*local.crypto, &a.signed_bytes());
        a
    }

    /// The advert we last originated (originating one if there is none yet).
    pub(super) fn current_advert(&mut self, local: &Local, peers: &Peers, now: Instant) -> Advert {
        match &self.last_advert {
            Some(a) => a.clone(),
            None => {
                let a = self.own_advert(local, peers, now);
                self.originated(peers, now, a.clone());
                let refresh = now + self.advert_refresh(local.config.advert_interval);
                self.refresh_at.get_or_insert(refresh);
                a
            }
        }
    }

    /// Whether our advert `draft` says something `last` does not
    /// ([`news::is_news`]), or a link `last` listed before any probe
    /// answered on it (at [`PLACEHOLDER_RTT_US`]) has an RTT now.
    pub(super) fn news(
        &self,
        local: &Local,
        peers: &Peers,
        last: &Advert,
        draft: &Advert,
        now: Instant,
    ) -> bool {
        news::is_news(&local.config.route, self.last_cost_news, last, draft, now)
            || self.first_rtt(peers, now)
    }

    /// Whether a link our last advert listed unmeasured has an RTT now.
    pub(super) fn first_rtt(&self, peers: &Peers, now: Instant) -> bool {
        self.unmeasured.iter().any(|n| {
            (peers.by_node(*n))
                .and_then(|p| peers[p].health.as_ref())
                .is_some_and(|h| h.base_rtt(now).is_some())
        })
    }

    /// Our advert `a` is the last originated; which of its links it lists
    /// before any probe answered on them.
    pub(super) fn originated(&mut self, peers: &Peers, now: Instant, a: Advert) {
        self.unmeasured = (a.links.iter())
            .map(|l| l.neighbor)
            .filter(|n| {
                (peers.by_node(*n))
                    .and_then(|p| peers[p].health.as_ref())
                    .is_some_and(|h| h.base_rtt(now).is_none())
            })
            .collect();
        self.last_advert = Some(a);
    }
}
