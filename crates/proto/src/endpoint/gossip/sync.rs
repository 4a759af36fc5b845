//! The reliable part of flooding: database syncs when a link comes up
//! (summary first, then the request; the answer leaves out what the
//! summary lists), acknowledgements, and adverts sent again until they
//! are acknowledged (`endpoint::flooding` keeps the lists).

use std::time::{Duration, Instant};

use crate::control::{Ack, Advert, Control, Summary, MAX_ACK_ENTRIES};
use crate::wire::NodeId;

use super::super::api::PeerId;
use super::super::net::Cx;
use super::super::news;
use super::Gossip;

/// A sync request follows its summary by this much (see
/// [`Gossip::send_sync`]).
pub(super) const SUMMARY_LEAD: Duration = Duration::from_millis(20);
/// A stub syncs with its newly designated relay this long after the advert
/// that designates it: time for the relay to verify and take that advert,
/// after which it passes on what the answer could not hold.
pub(super) const CATCH_UP_DELAY: Duration = Duration::from_secs(1);

impl Gossip {
    /// Our advert and a request for everything a neighbour holds: a session
    /// with it just became usable for the first time, or after its link was
    /// down. Both are sent again until acknowledged.
    ///
    /// The request follows a summary of what we hold (what the neighbour
    /// would send us: a stub holds relays' adverts only), so that its
    /// answer is what we lack; only to a neighbour whose advert we hold
    /// and which relays: a stub answers with its own advert alone, and a
    /// neighbour we hold no advert of is new to the mesh (or a stub we
    /// have not heard of yet) and holds little a summary would save.
    ///
    /// What is in flight to and from the neighbour stays: a link that went
    /// down forgot it then, and what is there now may be the answer to
    /// the neighbour's own sync request, which reached us first (forgotten,
    /// its acknowledgement never went and the repeated request was
    /// answered with a second dump).
    pub fn send_sync(&mut self, cx: &mut Cx<'_>, now: Instant, peer: PeerId) {
        let own = self.current_advert(cx.local, cx.peers, now);
        Self::send_advert(&mut self.flooding, cx, now, peer, &own);
        let node = cx.peers[peer].node_id;
        let rto = Self::rto(&self.flooding, cx, peer);
        if self.router.advert(node).is_some_and(|a| !a.stub) {
            let held: Vec<(NodeId, u64)> = (self.router.adverts())
                .filter(|a| a.origin != cx.local.node_id)
                .map(|a| (a.origin, a.seq))
                .collect();
            for part in held.chunks(MAX_ACK_ENTRIES) {
                let entries = part.to_vec();
                Self::send_counted(
                    cx,
                    now,
                    peer,
                    &Control::LinkStateSummary(Summary { entries }),
                );
            }
            // The request goes [`SUMMARY_LEAD`] behind the summary: sent
            // together, a path that reorders datagrams by a few
            // milliseconds delivered it ahead of the summary's last parts,
            // and the answer held every advert those parts listed.
            self.flooding.sync_at(peer, now + SUMMARY_LEAD, rto);
        } else if Self::send_counted(cx, now, peer, &Control::SyncRequest) {
            self.flooding.sync_sent(peer, now, rto);
        }
    }

    /// On a stub: when its designated relay ([`news::designated`]) changes
    /// (its advert lists other relays, or it learns that a node it links
    /// to relays), a sync with the new one [`CATCH_UP_DELAY`] later. While
    /// the stub's relays held different adverts of it, each may have taken
    /// another for the designated one and passed on nothing; the sync's
    /// answer holds whatever the new one has that the stub lacks, and the
    /// relay passes on what comes after.
    pub(super) fn catch_up(&mut self, cx: &mut Cx<'_>, now: Instant) {
        if let Some(own) = self.last_advert.as_ref().filter(|a| a.stub) {
            let is_relay = |n: NodeId| self.router.advert(n).is_some_and(|a| !a.stub);
            let relay = news::designated(own, is_relay);
            if relay != self.designated {
                self.designated = relay;
                self.catch_up = relay.map(|n| (n, now + CATCH_UP_DELAY));
            }
        }
        let Some((node, at)) = self.catch_up else {
            return;
        };
        if at > now {
            return;
        }
        self.catch_up = None;
        let peer = (cx.peers.by_node(node)).filter(|&p| cx.peers[p].health.is_some());
        if let Some(peer) = peer {
            cx.out.stats.stub_catch_ups += 1;
            self.send_sync(cx, now, peer);
        }
    }

    /// An acknowledgement from neighbour `peer`.
    pub fn on_ack(&mut self, now: Instant, peer: PeerId, ack: &Ack) {
        self.flooding.on_ack(peer, ack, now);
    }

    /// Queues an acknowledgement to `peer` (sending a full message at once).
    pub(super) fn acknowledge(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        peer: PeerId,
        advert: &Advert,
    ) {
        if let Some(ack) = self.flooding.owe(peer, advert.origin, advert.seq, now) {
            Self::send_counted(cx, now, peer, &Control::LinkStateAck(ack));
        }
    }

    /// A part of neighbour `peer`'s summary, ahead of its sync request.
    pub fn on_summary(&mut self, now: Instant, peer: PeerId, summary: &Summary) {
        self.flooding.on_summary(peer, &summary.entries, now);
    }

    /// A neighbour asks for everything we hold: our advert and the ones we
    /// hold (a stub needs only those of nodes that relay) but those its
    /// summary lists at the same or a higher sequence number. A repeat of
    /// a request just answered is only acknowledged.
    pub fn on_sync_request(&mut self, cx: &mut Cx<'_>, now: Instant, peer: PeerId) {
        if !self.flooding.owe_sync(peer, now) {
            return;
        }
        let has = self.flooding.take_summary(peer, now);
        let own = self.current_advert(cx.local, cx.peers, now);
        let node = cx.peers[peer].node_id;
        let to_stub = self.router.is_stub(node);
        // A stub answers with its own advert alone: it floods nothing, and
        // the relays' adverts it holds are the ones its relays sent it
        // (refreshes left out), older than the relay's own. A stub asking
        // is not sent a relay's advert whose links to relays and roles are
        // those of the one it holds.
        let relay = cx.local.config.relay;
        let held: Vec<Advert> = self
            .router
            .adverts()
            .filter(|a| relay && !(to_stub && a.stub) && a.origin != node)
            .cloned()
            .collect();
        for a in std::iter::once(own).chain(held) {
            let holds = |seq: u64| match to_stub {
                true => self.stub_views.holds(&a, seq),
                false => seq >= a.seq,
            };
            if !has.get(&a.origin).is_some_and(|seq| holds(*seq)) {
                Self::send_advert(&mut self.flooding, cx, now, peer, &a);
            }
        }
    }

    /// Sends what the flooding lists say is due: acknowledgements, adverts
    /// not acknowledged in time (unless a newer one replaced them, or we
    /// hold them no longer), sync requests.
    pub(super) fn retransmit(&mut self, cx: &mut Cx<'_>, now: Instant) {
        let due = self.flooding.due(now);
        for (peer, ack) in due.acks {
            if cx.peers.checked(peer).is_some() {
                Self::send_counted(cx, now, peer, &Control::LinkStateAck(ack));
            }
        }
        for (peer, origin, seq) in due.adverts {
            let advert = if origin == cx.local.node_id {
                self.last_advert.as_ref()
            } else {
                self.router.advert(origin)
            };
            let advert = advert.filter(|a| a.seq >= seq).cloned();
            match (advert, cx.peers.checked(peer)) {
                (Some(a), Some(_)) if a.seq == seq => {
                    let msg = Control::LinkState(a);
                    if Self::send_counted(cx, now, peer, &msg) {
                        cx.out.stats.adverts_retransmitted += 1;
                    }
                }
                // A refresh replaced a change a stub has not acknowledged,
                // and refreshes do not go to stubs: the refresh carries the
                // change.
                (Some(a), Some(_)) if self.to_stub(cx.peers[peer].node_id) => {
                    Self::send_advert(&mut self.flooding, cx, now, peer, &a);
                    cx.out.stats.adverts_retransmitted += 1;
                }
                _ => self.flooding.heard(peer, origin, seq),
            }
        }
        for peer in due.syncs {
            if cx.peers.checked(peer).is_some() {
                Self::send_counted(cx, now, peer, &Control::SyncRequest);
            }
        }
    }
}
