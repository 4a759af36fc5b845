//! Who may talk to this node, and which packets pass: the policy in force
//! with its connection-tracking filter, the revocation list, and the
//! enclave check that decides whether a session with a certificate's holder
//! may exist at all.
//!
//! It also keeps who holds each overlay address and node name: the first
//! node seen with a valid certificate for it, or the configured peer (a
//! configured claim beats a learned one). A certificate that claims an
//! address or name another node's valid (unexpired, unrevoked) certificate
//! holds is refused, so a second CA-signed certificate cannot take over a
//! node's traffic or its name; revoking the holder's certificate frees them.
//!
//! This part decides; it tears nothing down. When the policy or the
//! revocation list changes, the endpoint asks [`Admission::admissible`] of
//! every peer and origin certificate and refuses those that fail.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::cert::Certificate;
use crate::filter::{Denied, Direction, Filter, FilterLimits};
use crate::handshake::HandshakeError;
use crate::policy::{self as pol, Compiled, Subject};
use crate::provider::Crypto;
use crate::wire::ip::Packet;

use super::api::PeerId;
use super::stats::DropReason;

/// Policy identities of one node's addresses, computed under one filter
/// generation (a node has few addresses).
#[derive(Debug, Default)]
pub(crate) struct IdentCache {
    generation: u64,
    idents: Vec<(IpAddr, pol::Identity)>,
}

impl IdentCache {
    /// The policy identity of `addr` on the node holding `cert`.
    fn identity(
        &mut self,
        policy: &Compiled,
        generation: u64,
        cert: Option<&Certificate>,
        addr: IpAddr,
    ) -> pol::Identity {
        if self.generation != generation {
            self.generation = generation;
            self.idents.clear();
        }
        if let Some((_, i)) = self.idents.iter().find(|(a, _)| *a == addr) {
            return i.clone();
        }
        let (name, segments) = cert.map_or(("", &[][..]), |c| (c.name(), &c.body().segments[..]));
        let i = policy.identity(&Subject {
            name,
            segments,
            addr,
        });
        if self.idents.len() < 8 {
            self.idents.push((addr, i.clone()));
        }
        i
    }
}

/// The peer side of a packet being policed: its certificate and the cache
/// of its identities.
pub(crate) struct Remote<'a> {
    pub cert: Option<&'a Certificate>,
    pub idents: &'a mut IdentCache,
}

/// One node's hold on an address or name.
#[derive(Debug, Clone)]
struct Claim {
    peer: PeerId,
    /// The holder's static key (a renewed certificate of the same node
    /// keeps the claim).
    key: [u8; 32],
    /// The certificate that made the claim, and when it expires.
    fingerprint: [u8; 32],
    not_after: u64,
    /// From the node's configuration, not learned from a handshake.
    configured: bool,
}

/// What a certificate claims: its addresses and its name.
fn claimed(cert: &Certificate) -> impl Iterator<Item = Key> + '_ {
    (cert.body().addresses.iter())
        .map(|a| Key::Addr(a.addr()))
        .chain(std::iter::once(Key::Name(cert.name().to_string())))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Addr(IpAddr),
    Name(String),
}

/// A new claim: who makes it, with which certificate.
pub(crate) struct Claimant<'a> {
    pub key: &'a [u8; 32],
    pub cert: &'a Certificate,
    pub configured: bool,
}

/// Policy, filter and revocation list of one node, and who holds which
/// address and name.
pub(crate) struct Admission {
    policy: Option<Arc<Compiled>>,
    filter: Filter,
    /// Own identities (the local side of every flow).
    own_idents: IdentCache,
    /// Fingerprints of revoked node certificates.
    revoked: HashSet<[u8; 32]>,
    /// Holders of overlay addresses and names...
    claims: HashMap<Key, Claim>,
    /// ...and what each peer holds.
    held: HashMap<PeerId, Vec<Key>>,
    /// Segments a peer that is not configured must be in (empty: any).
    accept_segments: Vec<String>,
}

impl Admission {
    pub fn new(limits: FilterLimits, accept_segments: Vec<String>) -> Self {
        Self {
            policy: None,
            filter: Filter::new(limits),
            own_idents: IdentCache::default(),
            revoked: HashSet::new(),
            claims: HashMap::new(),
            held: HashMap::new(),
            accept_segments,
        }
    }

    /// Whether a peer that is not configured may hold a session: in one of
    /// the accepted segments (when any are set).
    pub fn accepts_unconfigured(&self, cert: &Certificate) -> Result<(), HandshakeError> {
        let segments = &cert.body().segments;
        let ok = self.accept_segments.is_empty()
            || segments.iter().any(|s| self.accept_segments.contains(s));
        if ok {
            Ok(())
        } else {
            Err(HandshakeError::NotAccepted)
        }
    }

    /// Whether `c` may claim its certificate's addresses and name: none is
    /// held by another node's certificate that is still valid (unexpired at
    /// `now_secs`, unrevoked), unless `c` is configured and the holder only
    /// learned. `Ok` lists the learned holders a configured claimant
    /// displaces (the endpoint tears their sessions down).
    pub fn check_claims(
        &self,
        c: &Claimant<'_>,
        now_secs: u64,
    ) -> Result<Vec<PeerId>, HandshakeError> {
        let mut displaced = Vec::new();
        for k in claimed(c.cert) {
            let Some(h) = self.claims.get(&k) else {
                continue;
            };
            let valid = h.not_after > now_secs && !self.revoked.contains(&h.fingerprint);
            if h.key == *c.key || !valid {
                continue;
            }
            if c.configured && !h.configured {
                displaced.push(h.peer);
                continue;
            }
            return Err(match k {
                Key::Addr(a) => HandshakeError::AddressTaken(a),
                Key::Name(n) => HandshakeError::NameTaken(n),
            });
        }
        displaced.sort_unstable();
        displaced.dedup();
        Ok(displaced)
    }

    /// Records `peer`'s claims (after [`Admission::check_claims`]): those of
    /// its previous certificate are let go, a configured claim stays
    /// configured.
    pub fn record_claims(&mut self, crypto: &dyn Crypto, peer: PeerId, c: &Claimant<'_>) {
        let was_configured = (self.held.get(&peer).and_then(|keys| keys.first()))
            .and_then(|k| self.claims.get(k))
            .is_some_and(|h| h.configured);
        self.release_claims(peer);
        let claim = Claim {
            peer,
            key: *c.key,
            fingerprint: c.cert.fingerprint(crypto),
            not_after: c.cert.body().not_after,
            configured: c.configured || was_configured,
        };
        let keys: Vec<Key> = claimed(c.cert).collect();
        for k in &keys {
            if let Some(old) = self.claims.insert(k.clone(), claim.clone()) {
                // A displaced holder (check_claims allowed it): it keeps
                // nothing of what it held.
                if old.peer != peer {
                    self.release_claims(old.peer);
                    self.claims.insert(k.clone(), claim.clone());
                }
            }
        }
        self.held.insert(peer, keys);
    }

    /// Lets go of everything `peer` holds (refused, or displaced).
    pub fn release_claims(&mut self, peer: PeerId) {
        for k in self.held.remove(&peer).unwrap_or_default() {
            if self.claims.get(&k).is_some_and(|h| h.peer == peer) {
                self.claims.remove(&k);
            }
        }
    }

    /// The peer holding overlay address `addr`.
    pub fn owner(&self, addr: IpAddr) -> Option<PeerId> {
        self.claims.get(&Key::Addr(addr)).map(|h| h.peer)
    }

    /// The peer holding node name `name`.
    pub fn named(&self, name: &str) -> Option<PeerId> {
        self.claims
            .get(&Key::Name(name.to_string()))
            .map(|h| h.peer)
    }

    /// The addresses and name `peer` holds.
    pub fn held_by(&self, peer: PeerId) -> (Vec<IpAddr>, Option<String>) {
        let (mut addrs, mut name) = (Vec::new(), None);
        for k in self.held.get(&peer).into_iter().flatten() {
            match k {
                Key::Addr(a) => addrs.push(*a),
                Key::Name(n) => name = Some(n.clone()),
            }
        }
        (addrs, name)
    }

    /// Puts `policy` in force (`None`: everything passes). Tracked flows are
    /// re-checked on their next packet.
    pub fn set_policy(&mut self, policy: Option<Arc<Compiled>>) {
        self.policy = policy.clone();
        self.filter.set_policy(policy);
    }

    pub fn policy(&self) -> Option<&Arc<Compiled>> {
        self.policy.as_ref()
    }

    pub fn set_revoked(&mut self, revoked: HashSet<[u8; 32]>) {
        self.revoked = revoked;
    }

    pub fn is_revoked(&self, fingerprint: &[u8; 32]) -> bool {
        self.revoked.contains(fingerprint)
    }

    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    pub fn filter_mut(&mut self) -> &mut Filter {
        &mut self.filter
    }

    /// Whether a session with the holder of `cert` may exist: not revoked,
    /// and in exactly our enclaves (`own` is our certificate).
    pub fn admissible(
        &self,
        crypto: &dyn Crypto,
        own: &Certificate,
        cert: &Certificate,
    ) -> Result<(), HandshakeError> {
        if !self.revoked.is_empty() && self.revoked.contains(&cert.fingerprint(crypto)) {
            return Err(HandshakeError::Revoked);
        }
        if let Some(p) = &self.policy {
            let ours = p.enclave_mask(&own.body().segments);
            if p.enclave_mask(&cert.body().segments) != ours {
                return Err(HandshakeError::OutsideEnclave);
            }
        }
        Ok(())
    }

    /// Checks an inner packet (unparsed) against the policy in force and
    /// tracks its flow. `Err` carries the drop reason for the caller to
    /// count.
    pub fn police(
        &mut self,
        now: Instant,
        dir: Direction,
        own: &Certificate,
        remote: Remote<'_>,
        packet: &[u8],
    ) -> Result<(), DropReason> {
        if self.policy.is_none() {
            return Ok(());
        }
        match Packet::parse(packet) {
            Ok(pkt) => self.police_parsed(now, dir, own, remote, &pkt),
            Err(_) => {
                self.filter.count_unparsable();
                Err(DropReason::NotIp)
            }
        }
    }

    /// As [`Admission::police`] for a packet parsed already.
    pub fn police_parsed(
        &mut self,
        now: Instant,
        dir: Direction,
        own: &Certificate,
        remote: Remote<'_>,
        pkt: &Packet,
    ) -> Result<(), DropReason> {
        let Some(policy) = self.policy.as_deref() else {
            return Ok(());
        };
        let generation = self.filter.generation();
        let own_idents = &mut self.own_idents;
        let Remote { cert, idents } = remote;
        let verdict = self.filter.check(now, dir, pkt, |addr, local| {
            if local {
                own_idents.identity(policy, generation, Some(own), addr)
            } else {
                idents.identity(policy, generation, cert, addr)
            }
        });
        verdict.map_err(|Denied { .. }| DropReason::PolicyDenied)
    }
}
