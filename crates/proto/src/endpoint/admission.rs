//! Who may talk to this node, and which packets pass: the policy in force
//! with its connection-tracking filter, the revocation list, and the
//! enclave check that decides whether a session with a certificate's holder
//! may exist at all.
//!
//! This part decides; it tears nothing down. When the policy or the
//! revocation list changes, the endpoint asks [`Admission::admissible`] of
//! every peer and origin certificate and refuses those that fail.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::cert::Certificate;
use crate::filter::{Denied, Direction, Filter, FilterLimits};
use crate::handshake::HandshakeError;
use crate::policy::{self as pol, Compiled, Subject};
use crate::provider::Crypto;
use crate::wire::ip::Packet;

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

/// Policy, filter and revocation list of one node.
pub(crate) struct Admission {
    policy: Option<Arc<Compiled>>,
    filter: Filter,
    /// Own identities (the local side of every flow).
    own_idents: IdentCache,
    /// Fingerprints of revoked node certificates.
    revoked: HashSet<[u8; 32]>,
}

impl Admission {
    pub fn new(limits: FilterLimits) -> Self {
        Self {
            policy: None,
            filter: Filter::new(limits),
            own_idents: IdentCache::default(),
            revoked: HashSet::new(),
        }
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
