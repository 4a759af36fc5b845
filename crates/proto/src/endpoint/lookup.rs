//! Member lookups. A stub holds the certificates of relays only (it takes
//! no other stub's advert), so traffic or a name query for a member it
//! does not know asks its default relay, which holds every member's, for
//! the certificate of the member holding that overlay address or name
//! (control kind 14). The answer is an ordinary certificate message,
//! taken only while a lookup it answers is outstanding and only after the
//! checks every learned certificate passes (CA, revocation, enclaves,
//! address and name claims); its member then becomes a learned peer and
//! is handshaken with at once, as traffic would have made it. Nebula's
//! lighthouse queries do this for underlay addresses; here any relay
//! answers, and only for members the asker could learn from the link
//! state anyway (the relay holds only certificates in its own enclaves,
//! which a neighbour with a session shares).
//!
//! Bounds: the asker sends one lookup per address or name a second and
//! keeps at most [`MAX_PENDING`] outstanding for [`PENDING_FOR`]; a relay
//! answers at most [`ANSWERS_PER_SECOND`] lookups a second in all
//! (`lookups_refused`), each over the asker's own session.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{cx, Endpoint, PeerId};
use crate::cert::Certificate;
use crate::control::{Control, Lookup};
use crate::wire::NodeId;

/// A lookup is asked again after this long without an answer.
const RETRY: Duration = Duration::from_secs(1);
/// An unanswered lookup is forgotten after this long.
const PENDING_FOR: Duration = Duration::from_secs(5);
/// Most lookups outstanding at once.
const MAX_PENDING: usize = 256;
/// Most lookups a relay answers per second.
const ANSWERS_PER_SECOND: u32 = 200;

/// Outstanding lookups (what, when first and last asked) and the answer
/// budget.
#[derive(Debug, Default)]
pub(crate) struct Lookups {
    pending: HashMap<Lookup, (Instant, Instant)>,
    answers: crate::ratelimit::PerSecond,
}

impl Lookups {
    /// Whether to send a lookup for `what` now (not asked within
    /// [`RETRY`], room for it), noting it as sent.
    fn ask(&mut self, now: Instant, what: &Lookup) -> bool {
        self.pending
            .retain(|_, (first, _)| now.saturating_duration_since(*first) < PENDING_FOR);
        let full = self.pending.len() >= MAX_PENDING;
        match self.pending.get_mut(what) {
            Some((_, last)) if now.saturating_duration_since(*last) < RETRY => false,
            Some((_, last)) => {
                *last = now;
                true
            }
            None if full => false,
            None => {
                self.pending.insert(what.clone(), (now, now));
                true
            }
        }
    }

    /// Whether `cert` answers an outstanding lookup (each one it answers
    /// is no longer outstanding).
    fn answered_by(&mut self, cert: &Certificate) -> bool {
        let before = self.pending.len();
        let body = cert.body();
        self.pending.retain(|what, _| match what {
            Lookup::Address(ip) => !body.addresses.iter().any(|a| a.addr() == *ip),
            Lookup::Name(n) => *n != body.name,
        });
        self.pending.len() < before
    }

    /// Takes one answer from this second's budget.
    fn take_answer(&mut self, now: Instant) -> bool {
        self.answers.take(now, ANSWERS_PER_SECOND)
    }
}

impl Endpoint {
    /// Asks this stub's default relay for the member holding `what`, unless
    /// this node relays (it holds every member's certificate already, so a
    /// miss means there is no such member) or has no relay with a session.
    /// The answer makes the member a learned peer; until then traffic for
    /// it has no peer.
    pub fn look_up(&mut self, now: Instant, what: Lookup) {
        if self.local.config.relay
            || matches!(what, Lookup::Address(ip) if crate::wire::ip::is_local_scope(ip))
        {
            return;
        }
        let Some(relay) = self.peers.default_relay else {
            return;
        };
        if self.peers[relay].session(now).is_none() || !self.lookups.ask(now, &what) {
            return;
        }
        if cx!(self)
            .send_gossip(now, relay, &Control::Lookup(what))
            .is_some()
        {
            self.out.stats.lookups_sent += 1;
        }
    }

    /// Whether this node looks members up (a stub: it holds no other
    /// stub's certificate).
    pub fn looks_up(&self) -> bool {
        !self.local.config.relay
    }

    /// A lookup from `peer`: answered with the certificate of the member
    /// holding the address or name, if a relay knows one other than the
    /// asker.
    pub(super) fn on_lookup(&mut self, now: Instant, peer: PeerId, what: Lookup) {
        if !self.local.config.relay {
            return;
        }
        let Some(node) = self.member_for(&what) else {
            return;
        };
        if node == self.peers[peer].node_id {
            return;
        }
        if !self.lookups.take_answer(now) {
            self.out.stats.lookups_refused += 1;
            return;
        }
        let bytes = if node == self.local.node_id {
            self.local.identity.certificate().as_bytes().to_vec()
        } else {
            let held = (self.peers.by_node(node)).and_then(|p| self.peers[p].cert.as_ref());
            match held.or_else(|| self.gossip.members().get(&node).map(|c| &**c)) {
                Some(c) => c.as_bytes().to_vec(),
                None => return,
            }
        };
        if cx!(self)
            .send_gossip(now, peer, &Control::Cert { bytes })
            .is_some()
        {
            self.out.stats.lookups_answered += 1;
        }
    }

    /// The member holding `what`: this node, a peer, or one known from
    /// the link state.
    fn member_for(&self, what: &Lookup) -> Option<NodeId> {
        let own = self.local.identity.certificate().body();
        let (peer, known, ours) = match what {
            Lookup::Address(ip) => (
                self.admission.owner(*ip),
                self.gossip.members().by_address(*ip),
                own.addresses.iter().any(|a| a.addr() == *ip),
            ),
            Lookup::Name(n) => (
                self.admission.named(n),
                self.gossip.members().by_name(n),
                own.name == *n,
            ),
        };
        if ours {
            return Some(self.local.node_id);
        }
        peer.map(|p| self.peers[p].node_id).or(known)
    }

    /// A certificate message: if it answers an outstanding lookup, its
    /// member is checked and learned (true); anything else is for the
    /// link state (false).
    pub(super) fn on_looked_up(&mut self, now: Instant, bytes: &[u8]) -> bool {
        if self.lookups.pending.is_empty() {
            return false;
        }
        let Ok(cert) = Certificate::from_bytes(bytes) else {
            return false;
        };
        if !self.lookups.answered_by(&cert) {
            return false;
        }
        let local = &self.local;
        let node = NodeId::of(cert.public_key());
        let checked = local
            .ca
            .verify_node(&*local.crypto, &cert, local.unix_secs())
            .is_ok()
            && (self.admission)
                .admissible(&*local.crypto, local.identity.certificate(), &cert)
                .is_ok();
        if !checked {
            self.out.stats.lookup_answers_refused += 1;
            return true;
        }
        self.gossip.keep_origin_cert(cert);
        if let Some(peer) = self.learn_member(now, node) {
            self.out.stats.members_looked_up += 1;
            self.handshakes.initiate(cx!(self), now, peer);
        }
        true
    }

    /// The overlay addresses of member `name` if known; otherwise a stub
    /// asks its relay (see [`Endpoint::look_up`]) and the next call may
    /// know them.
    pub fn addresses_named_or_look_up(&mut self, now: Instant, name: &str) -> Option<Vec<IpAddr>> {
        let found = self.addresses_named(name);
        if found.is_none() {
            self.look_up(now, Lookup::Name(name.to_string()));
        }
        found
    }
}
