//! A peer's life after it is added: admitted or refused (revoked, or outside our
//! enclaves, with a handover of the bundles to a peer that had a session),
//! displaced (a configured peer claims what a learned one held), retired
//! and removed (a learned peer gone), and the sweep that finds the learned
//! peers holding nothing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::cert::Certificate;

use crate::handshake::HandshakeError;

use super::admission::Claimant;
use super::api::{Event, Handover, PeerId};
use super::peer;
use super::Refusal;
use super::{cx, Endpoint, HANDOVER, HANDOVER_LINGER, RETIRE_AFTER, SWEEP_INTERVAL};

impl Endpoint {
    /// Adds a configured peer by its certificate (checked against the CA at
    /// `unix_nanos`): its addresses and name are its own from the start, a
    /// learned peer holding any of them is displaced, and another configured
    /// one holding any is an error.
    pub fn add_peer_certificate(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        cert: &Certificate,
        endpoint: Option<SocketAddr>,
        persistent_keepalive: Option<Duration>,
    ) -> Result<PeerId, HandshakeError> {
        self.local.unix_nanos = unix_nanos;
        let local = &self.local;
        (local
            .ca
            .verify_node(&*local.crypto, cert, local.unix_secs()))
        .map_err(HandshakeError::Certificate)?;
        let key = *cert.public_key();
        let claimant = Claimant {
            key: &key,
            cert,
            configured: true,
        };
        let displaced = (self.admission.check_claims(&claimant, local.unix_secs()))?;
        for d in displaced {
            self.displace(now, d, &claimant);
        }
        let peer = self.insert_peer(key, endpoint, persistent_keepalive, false);
        (self.admission).record_claims(&*self.local.crypto, peer, &claimant);
        // Its certificate is known: the policy in force applies to it from
        // the start, so a node never initiates to (and never shows its own
        // certificate to) a configured peer outside its enclaves.
        self.peers[peer].cert = Some(cert.clone());
        let own = self.local.identity.certificate();
        if let Err(error) = self.admission.admissible(&*self.local.crypto, own, cert) {
            if !self.peers[peer].refused {
                self.refuse(now, peer, error);
            }
        }
        Ok(peer)
    }

    /// Whether a session with the holder of this certificate may exist:
    /// admissible (not revoked, same enclaves; else it is refused from now
    /// on), accepted (configured, or in an accepted segment), and claiming
    /// no address or name another node holds. `Ok` lists learned holders a
    /// configured claimant displaces.
    pub(super) fn gate(&self, c: &Claimant<'_>) -> Result<Vec<PeerId>, Refusal> {
        let (crypto, own) = (&*self.local.crypto, self.local.identity.certificate());
        (self.admission.admissible(crypto, own, c.cert)).map_err(Refusal::Refuse)?;
        if !c.configured {
            (self.admission.accepts_unconfigured(c.cert)).map_err(Refusal::Fail)?;
        }
        (self.admission.check_claims(c, self.local.unix_secs())).map_err(Refusal::Fail)
    }

    /// Removes a learned peer and everything naming it; its id is refused
    /// from now on. (Its link state stays while its adverts live.)
    pub(super) fn remove_peer(&mut self, now: Instant, peer: PeerId) {
        let had_link = self.drop_peer_state(peer);
        self.admission.release_claims(peer);
        self.bundles.remove_peer(peer);
        self.handing_over.retain(|p| *p != peer);
        let node = self.peers[peer].node_id;
        self.gossip.remove_peer(peer, node);
        let name = (self.peers.remove(peer)).and_then(|p| p.cert.map(|c| c.name().to_string()));
        self.out.stats.peers_removed += 1;
        self.out.event(Event::PeerRemoved { peer, name });
        if had_link {
            self.gossip.advert_soon(&self.peers, now);
        }
        self.gossip.recompute_routes(cx!(self), now, true);
    }

    /// Removes the learned peers that hold nothing any more (see
    /// [`SWEEP_INTERVAL`]); schedules the next look while learned peers
    /// remain.
    pub(super) fn sweep_learned(&mut self, now: Instant) {
        let idle = |p: &peer::Peer| {
            p.learned
                && !p.sessions.any_confirmed()
                && p.pending.is_none()
                && p.queue.is_empty()
                && p.health.is_none()
                && !matches!(p.handover, Handover::Open { .. })
                && (p.timers.last_handshake())
                    .is_none_or(|t| now.saturating_duration_since(t) >= RETIRE_AFTER)
        };
        let gone: Vec<PeerId> = (self.peers.ids())
            .filter(|&id| idle(&self.peers[id]))
            .collect();
        for peer in gone {
            self.remove_peer(now, peer);
        }
        let learned = self.peers.iter().any(|p| p.learned);
        self.sweep_at = learned.then_some(now + SWEEP_INTERVAL);
    }

    /// A learned peer whose addresses or name a configured peer claims:
    /// its sessions go and it holds nothing; its handshakes fail from now
    /// on while the configured certificate is valid.
    pub(super) fn displace(&mut self, now: Instant, peer: PeerId, by: &Claimant<'_>) {
        let had_link = self.drop_peer_state(peer);
        self.admission.release_claims(peer);
        let error = match by.cert.body().addresses.first() {
            Some(a) => HandshakeError::AddressTaken(a.addr()),
            None => HandshakeError::NameTaken(by.cert.name().to_string()),
        };
        self.out.event(Event::PeerRefused { peer, error });
        if had_link {
            self.gossip.advert_soon(&self.peers, now);
        }
        self.gossip.recompute_routes(cx!(self), now, true);
    }

    /// Refuses every peer, and forgets every origin, that the policy and
    /// revocation list in force no longer admit.
    pub(super) fn enforce_admission(&mut self, now: Instant) {
        let (crypto, own) = (&*self.local.crypto, self.local.identity.certificate());
        let admission = &self.admission;
        self.gossip
            .drop_inadmissible(|c| admission.admissible(crypto, own, c).is_ok());
        let verdicts: Vec<_> = (self.peers.ids())
            .map(|peer| {
                let verdict = match &self.peers[peer].cert {
                    Some(c) => admission.admissible(crypto, own, c),
                    None => Ok(()),
                };
                (peer, verdict)
            })
            .collect();
        for (peer, verdict) in verdicts {
            match verdict {
                Err(e) if !self.peers[peer].refused => self.refuse(now, peer, e),
                Err(_) => {}
                Ok(()) => {
                    let p = &mut self.peers[peer];
                    p.refused = false;
                    p.handover = Handover::None;
                }
            }
        }
    }

    /// Drops `peer`'s sessions, pending handshake, queue, timers and link
    /// health; true if it had a probed link.
    pub(super) fn drop_peer_state(&mut self, peer: PeerId) -> bool {
        let retired = self.peers[peer].sessions.clear();
        self.peers.release(retired);
        self.quiesce(peer)
    }

    /// Drops everything of `peer`'s but its sessions: pending handshake,
    /// queue, timers, link health; true if it had a probed link.
    pub(super) fn quiesce(&mut self, peer: PeerId) -> bool {
        let p = &mut self.peers[peer];
        let pending = p.pending.take().map(|h| h.local_index());
        p.queue.clear();
        p.timers.stop();
        p.synced = false;
        p.pmtu = None;
        let had_link = p.health.take().is_some();
        self.peers.release(pending);
        had_link
    }

    /// A peer that introduced itself (not configured), whose direct link has
    /// been down for [`RETIRE_AFTER`] without carrying data: stop probing
    /// it and re-handshaking with it. It comes back when it initiates again
    /// or when we have traffic for it. (A hub that saw a thousand peers
    /// vanish would otherwise keep probing and re-handshaking with all of
    /// them, forever.)
    pub(super) fn retire(&mut self, now: Instant, peer: PeerId) {
        self.out.stats.peers_retired += 1;
        self.out.event(Event::PeerRetired { peer });
        // Nothing else holds it: it goes (memory returns; it is learned
        // again from its next handshake).
        self.remove_peer(now, peer);
    }

    /// Tears down every session with `peer` and refuses it from now on. A
    /// peer outside our enclaves with a session keeps it for a
    /// [`Handover`]: it may not hold the policy that refuses it, and
    /// enclave members whose every path ran through nodes the policy cuts
    /// off would otherwise never receive it.
    pub(super) fn refuse(&mut self, now: Instant, peer: PeerId, error: HandshakeError) {
        let hand_over = matches!(error, HandshakeError::OutsideEnclave)
            && self.peers[peer].sessions.current(now).is_some();
        let had_link = if hand_over {
            self.quiesce(peer)
        } else {
            self.drop_peer_state(peer)
        };
        let p = &mut self.peers[peer];
        p.refused = true;
        if hand_over {
            p.handover = Handover::Open {
                until: now + HANDOVER,
                delivered: false,
            };
            self.handing_over.push(peer);
        }
        let node = p.node_id;
        let addrs: Vec<_> = (p.cert.as_ref())
            .map(|c| c.body().addresses.iter().map(|a| a.addr()).collect())
            .unwrap_or_default();
        self.admission.filter_mut().forget(&addrs);
        // A peer outside our enclaves keeps its claims (its certificate is
        // valid, and a policy may admit it again); a revoked one frees them.
        if !matches!(error, HandshakeError::OutsideEnclave) {
            self.admission.release_claims(peer);
        }
        // Its link state is neither used nor passed on any more.
        self.gossip.forget(node);
        self.out.event(Event::PeerRefused { peer, error });
        if had_link {
            self.gossip.advert_soon(&self.peers, now);
        }
        self.gossip.recompute_routes(cx!(self), now, true);
    }

    /// The earliest end of an open handover.
    pub(super) fn handover_deadline(&self) -> Option<Instant> {
        (self.handing_over.iter())
            .filter_map(|&p| match self.peers[p].handover {
                Handover::Open { until, .. } => Some(until),
                _ => None,
            })
            .min()
    }

    /// Closes the handovers due: the peer's sessions go.
    pub(super) fn end_handovers(&mut self, now: Instant) {
        let mut open = std::mem::take(&mut self.handing_over);
        open.retain(|&peer| {
            let p = &self.peers[peer];
            let Handover::Open { until, delivered } = p.handover else {
                return false;
            };
            if !p.refused {
                return false;
            }
            if until > now {
                return true;
            }
            self.drop_peer_state(peer);
            self.peers[peer].handover = Handover::Closed { delivered };
            self.out.event(Event::HandoverEnded { peer, delivered });
            false
        });
        self.handing_over = open;
    }

    /// `peer` fetched the last chunk of a bundle in force: a handover with
    /// it has done its job and ends shortly.
    pub(super) fn bundle_delivered(&mut self, now: Instant, peer: PeerId) {
        if let Handover::Open { until, .. } = self.peers[peer].handover {
            self.peers[peer].handover = Handover::Open {
                until: until.min(now + HANDOVER_LINGER),
                delivered: true,
            };
        }
    }
}
