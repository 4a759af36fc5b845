//! Intrusion detection in the endpoint: evidence from the receive path
//! reported against the peer that sent it, the sanctions applied to its
//! data both ways, and the views and release an operator uses
//! ([`crate::ids`] holds the detection itself).
//!
//! Only what a peer did inside its own authenticated session counts
//! against it: a packet the policy denied, an inner source not in its
//! certificate, a control message that does not decode. What anyone on
//! the path could cause (replays of its packets, forged datagrams that
//! fail authentication) never does.

use std::time::Instant;

use crate::ids::{Alert, Evidence, Sanction, Verdict};
use crate::wire::NodeId;

use super::api::{Event, PeerId};
use super::stats::DropReason;
use super::Endpoint;

impl Endpoint {
    /// Reports `ev` against `peer`; an alert it raises becomes an event.
    pub(super) fn report(&mut self, now: Instant, peer: PeerId, ev: Evidence) {
        let Some(ids) = self.ids.as_mut() else {
            return;
        };
        let node = self.peers[peer].node_id;
        if let Some(alert) = ids.observe(now, node, ev) {
            if alert.response == crate::ids::Response::Quarantine {
                self.accusations.announce_soon(now); // the mesh hears of it now
            }
            self.out.event(Event::Alert {
                peer: Some(peer),
                alert,
            });
        }
    }

    /// Whether a data packet from or to `peer` may pass the sanctions
    /// held against it; the drop reason if not.
    pub(super) fn sanction(&mut self, now: Instant, peer: PeerId) -> Result<(), DropReason> {
        let Some(ids) = self.ids.as_mut() else {
            return Ok(());
        };
        match ids.verdict(now, self.peers[peer].node_id) {
            Verdict::Pass => Ok(()),
            Verdict::Limited => Err(DropReason::PeerRateLimited),
            Verdict::Quarantined => Err(DropReason::Quarantined),
        }
    }

    /// Whether `peer` is quarantined now (data to it is not sent).
    pub(super) fn quarantined(&self, now: Instant, peer: PeerId) -> bool {
        (self.ids.as_ref()).is_some_and(|d| d.is_quarantined(now, self.peers[peer].node_id))
    }

    /// Forgets detection state nothing holds on to any more.
    pub(super) fn expire_evidence(&mut self, now: Instant) {
        if let Some(d) = self.ids.as_mut() {
            d.expire(now);
        }
    }

    /// Detection in force: `prevent`, `detect` (alerts only) or `off`.
    pub fn ids_mode(&self) -> &'static str {
        match &self.ids {
            None => "off",
            Some(d) if d.config().prevent => "prevent",
            Some(_) => "detect",
        }
    }

    /// The most recent alerts, oldest first (empty with detection off).
    pub fn alerts(&self) -> Vec<Alert> {
        (self.ids.iter())
            .flat_map(|d| d.alerts().cloned())
            .collect()
    }

    /// Peers under a sanction now, by node.
    pub fn sanctioned(&self, now: Instant) -> Vec<Sanction> {
        self.ids.as_ref().map_or(Vec::new(), |d| d.sanctioned(now))
    }

    /// Alerts raised since start, by scenario and response.
    pub fn alert_counts(&self) -> Vec<((&'static str, crate::ids::Response), u64)> {
        let mut v: Vec<_> = (self.ids.iter())
            .flat_map(|d| d.counts.iter().map(|(k, n)| (*k, *n)))
            .collect();
        v.sort();
        v
    }

    /// Distinct accusers that quarantine a member here (0: detection off).
    pub fn quorum(&self) -> usize {
        (self.ids.as_ref()).map_or(0, |d| d.config().agreement.quorum)
    }

    /// Lifts every sanction on `node` and forgets the evidence against it
    /// (an operator's release); whether one was held. Accusations held
    /// against it stop counting until their accusers start new quarantines.
    pub fn release(&mut self, now: Instant, node: NodeId) -> bool {
        let held = self.ids.as_mut().is_some_and(|d| d.release(now, node));
        self.release_accused(now, node);
        held
    }
}
