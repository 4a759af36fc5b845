//! Mesh-wide quarantines in the endpoint: this node's own quarantines
//! announced as signed accusations (refreshed while they hold, withdrawn
//! when they end early), everyone's accusations verified, held, flooded
//! on to every neighbour with a session, and the quarantine a quorum of
//! distinct accusers puts in force here (`crate::quorum` holds the rules).
//!
//! Accusations move only inside sessions, as adverts do, so an enclave's
//! accusations stay among its members (sessions exist only between nodes
//! of the same enclaves).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cert::Certificate;
use crate::control::{Accusation, Control};
use crate::ids::Evidence;
use crate::quorum::{Book, Taken, REFRESH};
use crate::wire::NodeId;

use super::api::{Event, PeerId};
use super::net::Cx;
use super::{cx, Endpoint};

/// Own quarantines are looked at this often.
const TICK: Duration = Duration::from_secs(1);

/// One of our own accusations.
#[derive(Debug, Clone)]
struct Ours {
    /// When the quarantine began (local clock), and in Unix seconds.
    since: Instant,
    since_unix: u64,
    expires_unix: u64,
    sent: Instant,
    /// The latest message, as signed (sent to neighbours that come up).
    message: Option<Accusation>,
}

/// Accusations: ours and everyone's.
#[derive(Debug, Default)]
pub(super) struct Accusations {
    book: Book,
    ours: BTreeMap<NodeId, Ours>,
    seq: u64,
    tick_at: Option<Instant>,
}

impl Accusations {
    pub fn new(config: crate::quorum::QuorumConfig) -> Self {
        Self {
            book: Book::new(config),
            ..Self::default()
        }
    }

    /// Our own quarantines are looked at by `at` (one just started, or an
    /// accusation is held that must lapse).
    pub fn announce_soon(&mut self, at: Instant) {
        self.tick_at = Some(self.tick_at.map_or(at, |t| t.min(at)));
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.tick_at
    }
}

/// Sends `a` to every neighbour with a session but `except`.
fn flood(cx: &mut Cx<'_>, now: Instant, a: &Accusation, except: Option<PeerId>) {
    let to: Vec<PeerId> = (cx.peers.ids())
        .filter(|id| Some(*id) != except)
        .filter(|id| {
            let p = &cx.peers[*id];
            !p.refused && p.node_id != a.accuser && p.session(now).is_some()
        })
        .collect();
    let msg = Control::Accusation(a.clone());
    for id in to {
        if cx.send_gossip(now, id, &msg).is_some() {
            cx.out.stats.accusations_sent += 1;
        }
    }
}

impl Endpoint {
    /// Announces, refreshes and withdraws our own accusations, and forgets
    /// lapsed ones: when a quarantine of ours began, then every [`TICK`]
    /// while any accusation is ours or held (an idle node sets no timer).
    pub(super) fn accusations_tick(&mut self, now: Instant) {
        let Some(ids) = self.ids.as_ref() else {
            return;
        };
        if self.accusations.tick_at.is_none_or(|t| t > now) {
            return;
        }
        let unix = self.local.unix_secs();
        let own = ids.own_quarantines(now);
        let mut send = Vec::new();
        for &(node, since, until, scenario) in &own {
            let expires_unix = unix + until.saturating_duration_since(now).as_secs() + 1;
            let ours = self
                .accusations
                .ours
                .get(&node)
                .filter(|o| o.since == since);
            let due = match ours {
                Some(o) => {
                    now.saturating_duration_since(o.sent) >= REFRESH
                        || o.expires_unix + 1 < expires_unix
                }
                None => true,
            };
            if !due {
                continue;
            }
            let since_unix = ours.map_or_else(
                || unix.saturating_sub(now.saturating_duration_since(since).as_secs()),
                |o| o.since_unix,
            );
            let o = Ours {
                since,
                since_unix,
                expires_unix,
                sent: now,
                message: None,
            };
            send.push((node, o, scenario, false));
        }
        let ended: Vec<NodeId> = (self.accusations.ours.keys())
            .filter(|n| !own.iter().any(|(o, ..)| o == *n))
            .copied()
            .collect();
        for node in ended {
            if let Some(o) = self.accusations.ours.remove(&node) {
                if o.expires_unix > unix {
                    send.push((node, o, "ended", true));
                }
            }
        }
        for (accused, mut o, scenario, withdrawn) in send {
            let a = self.sign_accusation(accused, &o, scenario, withdrawn);
            self.out.stats.accusations_originated += 1;
            flood(cx!(self), now, &a, None);
            if !withdrawn {
                o.message = Some(a);
                self.accusations.ours.insert(accused, o);
            }
        }
        let acc = &mut self.accusations;
        acc.book.expire(now);
        acc.tick_at = (!acc.ours.is_empty() || !acc.book.is_empty()).then_some(now + TICK);
    }

    fn sign_accusation(
        &mut self,
        accused: NodeId,
        o: &Ours,
        scenario: &str,
        withdrawn: bool,
    ) -> Accusation {
        let acc = &mut self.accusations;
        acc.seq = (acc.seq + 1).max(self.local.unix_nanos);
        let mut a = Accusation {
            accuser: self.local.node_id,
            accused,
            seq: acc.seq,
            since_unix: o.since_unix,
            expires_unix: o.expires_unix,
            withdrawn,
            scenario: scenario.to_string(),
            cert: self.local.identity.certificate().as_bytes().to_vec(),
            signature: [0; 64],
        };
        a.signature = (self.local.identity).sign_advert(&*self.local.crypto, &a.signed_bytes());
        a
    }

    fn reject_accusation(&mut self, reason: &'static str) {
        *self.out.stats.accusation_rejects.entry(reason).or_default() += 1;
    }

    /// The certificate to check `a` with: the accuser's as we hold it, or
    /// the one it carries once verified and admitted (then `true`).
    fn accuser_cert(&self, a: &Accusation) -> Result<(Certificate, bool), &'static str> {
        let known = (self.peers.by_node(a.accuser))
            .and_then(|p| self.peers[p].cert.clone())
            .or_else(|| (self.gossip.members().get(&a.accuser)).map(|c| (**c).clone()));
        if let Some(c) = known {
            return Ok((c, false));
        }
        let local = &self.local;
        let cert = Certificate::from_bytes(&a.cert).map_err(|_| "bad_certificate")?;
        if NodeId::of(cert.public_key()) != a.accuser
            || (local.ca)
                .verify_node(&*local.crypto, &cert, local.unix_secs())
                .is_err()
        {
            return Err("bad_certificate");
        }
        let own = local.identity.certificate();
        if (self.admission)
            .admissible(&*local.crypto, own, &cert)
            .is_err()
        {
            return Err("inadmissible_accuser");
        }
        Ok((cert, true))
    }

    /// An accusation from neighbour `from`: verified, held, flooded on,
    /// and the accused's quarantine by agreement brought up to date.
    pub(super) fn on_accusation(&mut self, now: Instant, from: PeerId, a: Accusation) {
        if self.ids.is_none()
            || a.accuser == self.local.node_id
            || self.accusations.book.is_stale(&a)
        {
            return;
        }
        let (cert, carried) = match self.accuser_cert(&a) {
            Ok(c) => c,
            Err(reason) => return self.reject_accusation(reason),
        };
        self.out.stats.signatures_checked += 1 + u64::from(carried);
        let key = cert.body().advert_key;
        let crypto = &self.local.crypto;
        if (crypto.ed25519_verify(&key, &a.signed_bytes(), &a.signature)).is_err() {
            return self.reject_accusation("bad_signature");
        }
        if carried {
            // Kept, as an advert origin's is: the accuser has a name here.
            self.gossip.keep_origin_cert(cert);
        }
        let unix = self.local.unix_secs();
        match self.accusations.book.take(now, unix, &a) {
            Taken::New { new_accused } => {
                self.out.stats.accusations_taken += 1;
                self.accusations.announce_soon(now + TICK); // to expire it

                flood(cx!(self), now, &a, Some(from));
                if new_accused {
                    if let Some(ids) = self.ids.as_mut() {
                        if let Some(alert) = ids.observe(now, a.accuser, Evidence::Accusation) {
                            let peer = self.peers.by_node(a.accuser);
                            self.out.event(Event::Alert { peer, alert });
                        }
                    }
                }
                self.out.event(Event::Accusation {
                    accuser: a.accuser,
                    accused: a.accused,
                    scenario: a.scenario.clone(),
                    withdrawn: a.withdrawn,
                });
                self.update_quorum(now, a.accused);
            }
            Taken::Stale => {}
            Taken::Refused(reason) => self.reject_accusation(reason),
        }
    }

    /// Puts in force (or lifts) the quarantine of `accused` that the
    /// accusations held agree on. Accusers we quarantine ourselves do
    /// not count; nor does anything against this node itself.
    fn update_quorum(&mut self, now: Instant, accused: NodeId) {
        let Some(ids) = self.ids.as_mut() else {
            return;
        };
        if accused == self.local.node_id {
            return;
        }
        let book = &self.accusations.book;
        let until = book.quorum_until(now, accused, |by| !ids.is_quarantined(now, by));
        let accusers = book.live(now, accused).map(|(by, _)| by).collect();
        if let Some(alert) = ids.set_quorum(now, accused, until, accusers) {
            let peer = self.peers.by_node(accused);
            self.out.event(Event::Alert { peer, alert });
        }
    }

    /// Sends a neighbour that just came up every accusation held, ours
    /// included.
    pub(super) fn send_accusations(&mut self, now: Instant, peer: PeerId) {
        if self.ids.is_none() {
            return;
        }
        let held = (self.accusations.book.all(now)).map(|(_, _, h)| h.message.clone());
        let ours = (self.accusations.ours.values()).filter_map(|o| o.message.clone());
        let msgs: Vec<Accusation> = held.chain(ours).collect();
        let cx = cx!(self);
        for a in msgs {
            if cx.peers[peer].node_id == a.accuser {
                continue;
            }
            if cx.send_gossip(now, peer, &Control::Accusation(a)).is_some() {
                cx.out.stats.accusations_sent += 1;
            }
        }
    }

    /// The accusations this node holds: accused, accuser, scenario, until
    /// when it holds unless refreshed, and whether it counts (not
    /// discounted by a release, accuser not quarantined here).
    pub fn accusations(&self, now: Instant) -> Vec<(NodeId, NodeId, String, Instant, bool)> {
        let quarantined = |n| (self.ids.as_ref()).is_some_and(|d| d.is_quarantined(now, n));
        (self.accusations.book.all(now))
            .map(|(accused, by, h)| {
                let counts = !h.discounted && !quarantined(by);
                (accused, by, h.scenario.clone(), h.until, counts)
            })
            .collect()
    }

    /// Discounts the accusations held against `node` and lifts the
    /// quarantine they agreed on (part of an operator's release).
    pub(super) fn release_accused(&mut self, now: Instant, node: NodeId) {
        self.accusations.book.release(now, node);
        if let Some(ids) = self.ids.as_mut() {
            ids.set_quorum(now, node, None, Vec::new());
        }
    }
}
