//! Signature checks of adverts and origin certificates, off the packet
//! path (when `EndpointConfig::defer_signature_checks` is set).
//!
//! An Ed25519 verification costs ~150 µs: a relay of a mesh of thousands
//! checks thousands in a burst (a bring-up, a partition healing). Run
//! inline, under meshd's endpoint lock, a burst holds every packet worker,
//! probe answers included, and the neighbours see a dead relay.
//! Deferred, an advert or certificate is acknowledged and queued when it
//! arrives (one per origin and kind: a newer advert replaces a queued
//! older one in its place), the driver takes a bounded batch as a
//! [`CheckPlan`], runs it with no lock held ([`CheckPlan::run`]) and hands
//! the result back ([`Endpoint::finish_checks`](crate::endpoint::Endpoint::finish_checks)),
//! where what still applies is taken exactly as an inline check would.
//! docs/decisions/signature-checks-off-the-packet-path.md.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use crate::cert::{Certificate, TrustedCa};
use crate::control::Advert;
use crate::provider::Crypto;
use crate::wire::NodeId;

use super::super::api::PeerId;

/// Signatures a driver checks per plan: ~5 ms of work at ~150 µs each,
/// so a node that runs plans between reading its socket (the simulator)
/// answers a probe within one plan's time.
pub const CHECK_BATCH: usize = 32;

/// Most checks queued at once (one per origin and kind; a node joining a
/// mesh of thousands queues one advert and one certificate per origin).
pub(super) const MAX_QUEUED: usize = 16_384;

/// One signature to check.
#[derive(Debug)]
pub(super) enum Item {
    /// An advert from neighbour `from`, signed with `key` (its origin's
    /// advert key, from a verified certificate).
    Advert {
        from: PeerId,
        advert: Advert,
        key: [u8; 32],
        /// Already verified by another endpoint of this process.
        known: bool,
    },
    /// A certificate of an origin whose advert is parked.
    Cert { cert: Certificate, known: bool },
}

/// Checks waiting for the driver.
#[derive(Debug, Default)]
pub(super) struct Queue {
    /// Origins in arrival order; `true`: a certificate.
    order: VecDeque<(NodeId, bool)>,
    adverts: HashMap<NodeId, (PeerId, Advert, [u8; 32])>,
    certs: HashMap<NodeId, Certificate>,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Queues an advert's check; a newer advert of a queued origin takes
    /// the older one's place. False when full.
    pub fn push_advert(&mut self, from: PeerId, advert: Advert, key: [u8; 32]) -> bool {
        let origin = advert.origin;
        if let Some(q) = self.adverts.get_mut(&origin) {
            if advert.seq > q.1.seq {
                *q = (from, advert, key);
            }
            return true;
        }
        if self.len() >= MAX_QUEUED {
            return false;
        }
        self.adverts.insert(origin, (from, advert, key));
        self.order.push_back((origin, false));
        true
    }

    /// Queues a certificate's check (once per origin). False when full.
    pub fn push_cert(&mut self, origin: NodeId, cert: Certificate) -> bool {
        if self.certs.contains_key(&origin) {
            return true;
        }
        if self.len() >= MAX_QUEUED {
            return false;
        }
        self.certs.insert(origin, cert);
        self.order.push_back((origin, true));
        true
    }

    /// Whether an advert of `origin` waits for its check.
    pub fn has_advert(&self, origin: NodeId) -> bool {
        self.adverts.contains_key(&origin)
    }

    /// Up to `max` checks, oldest first. `known` tells which another
    /// endpoint of this process verified already.
    pub fn take(
        &mut self,
        max: usize,
        known_advert: impl Fn(&Advert) -> bool,
        known_cert: impl Fn(NodeId, &Certificate) -> bool,
    ) -> Vec<Item> {
        let mut items = Vec::new();
        while items.len() < max {
            let Some((origin, cert)) = self.order.pop_front() else {
                break;
            };
            if cert {
                if let Some(cert) = self.certs.remove(&origin) {
                    let known = known_cert(origin, &cert);
                    items.push(Item::Cert { cert, known });
                }
            } else if let Some((from, advert, key)) = self.adverts.remove(&origin) {
                let known = known_advert(&advert);
                items.push(Item::Advert {
                    from,
                    advert,
                    key,
                    known,
                });
            }
        }
        items
    }
}

/// A batch of signature checks to run with no lock on the endpoint held
/// ([`CheckPlan::run`]), from
/// [`Endpoint::take_checks`](crate::endpoint::Endpoint::take_checks).
pub struct CheckPlan {
    crypto: Arc<dyn Crypto>,
    ca: Arc<TrustedCa>,
    unix_secs: u64,
    items: Vec<Item>,
}

impl fmt::Debug for CheckPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckPlan")
            .field("items", &self.items.len())
            .finish_non_exhaustive()
    }
}

/// What [`CheckPlan::run`] found, for
/// [`Endpoint::finish_checks`](crate::endpoint::Endpoint::finish_checks).
#[derive(Debug)]
pub struct Checked {
    items: Vec<(Item, bool)>,
}

impl CheckPlan {
    pub(super) fn new(
        crypto: Arc<dyn Crypto>,
        ca: Arc<TrustedCa>,
        unix_secs: u64,
        items: Vec<Item>,
    ) -> Self {
        Self {
            crypto,
            ca,
            unix_secs,
            items,
        }
    }

    /// Signatures in the batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch is empty (never, as taken from an endpoint).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Checks every signature (the costly part: no endpoint state).
    pub fn run(self) -> Checked {
        let crypto = &*self.crypto;
        let items = (self.items.into_iter())
            .map(|item| {
                let ok = match &item {
                    Item::Advert { known: true, .. } | Item::Cert { known: true, .. } => true,
                    Item::Advert { advert, key, .. } => advert_signed(crypto, key, advert),
                    Item::Cert { cert, .. } => cert_valid(crypto, &self.ca, cert, self.unix_secs),
                };
                (item, ok)
            })
            .collect();
        Checked { items }
    }
}

/// Whether `advert` carries its origin's signature (`key`: the advert key
/// of its certificate).
pub(super) fn advert_signed(crypto: &dyn Crypto, key: &[u8; 32], advert: &Advert) -> bool {
    (crypto.ed25519_verify(key, &advert.signed_bytes(), &advert.signature)).is_ok()
}

/// Whether `cert` is signed by the CA and valid at `unix_secs`.
pub(super) fn cert_valid(
    crypto: &dyn Crypto,
    ca: &TrustedCa,
    cert: &Certificate,
    unix_secs: u64,
) -> bool {
    ca.verify_node(crypto, cert, unix_secs).is_ok()
}

/// A checked item as the gossip part takes it back.
pub(super) enum Outcome {
    Advert {
        from: PeerId,
        advert: Advert,
        ok: bool,
    },
    Cert {
        cert: Certificate,
        ok: bool,
    },
}

impl Checked {
    pub(super) fn into_outcomes(self) -> impl Iterator<Item = Outcome> {
        self.items.into_iter().map(|(item, ok)| match item {
            Item::Advert { from, advert, .. } => Outcome::Advert { from, advert, ok },
            Item::Cert { cert, .. } => Outcome::Cert { cert, ok },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert(origin: u64, seq: u64) -> Advert {
        Advert {
            origin: NodeId(origin),
            seq,
            stub: false,
            truncated: false,
            no_transit: false,
            links: Vec::new(),
            signature: [0; 64],
        }
    }

    fn seqs(items: &[Item]) -> Vec<(u64, u64)> {
        (items.iter())
            .map(|i| match i {
                Item::Advert { advert, .. } => (advert.origin.0, advert.seq),
                Item::Cert { .. } => (0, 0),
            })
            .collect()
    }

    #[test]
    fn one_check_per_origin_newest_in_its_place_and_bounded() {
        let from = PeerId::new(0, 0);
        let mut q = Queue::default();
        assert!(q.push_advert(from, advert(1, 5), [0; 32]));
        assert!(q.push_advert(from, advert(2, 5), [0; 32]));
        // A newer advert of origin 1 replaces the queued one where it was;
        // an older one changes nothing.
        assert!(q.push_advert(from, advert(1, 7), [0; 32]));
        assert!(q.push_advert(from, advert(2, 3), [0; 32]));
        assert_eq!(q.len(), 2);
        assert!(q.has_advert(NodeId(1)));
        let taken = q.take(1, |_| false, |_, _| false);
        assert_eq!(
            seqs(&taken),
            [(1, 7)],
            "oldest origin first, its newest advert"
        );
        assert!(!q.has_advert(NodeId(1)));
        let taken = q.take(10, |_| false, |_, _| false);
        assert_eq!(seqs(&taken), [(2, 5)]);
        assert_eq!(q.len(), 0);
        // Full: refused (the caller counts `checks_full`), nothing lost
        // of what was queued.
        for o in 0..MAX_QUEUED as u64 {
            assert!(q.push_advert(from, advert(o, 1), [0; 32]));
        }
        assert!(!q.push_advert(from, advert(u64::MAX, 1), [0; 32]));
        assert!(
            q.push_advert(from, advert(3, 2), [0; 32]),
            "a queued origin still updates"
        );
        assert_eq!(q.len(), MAX_QUEUED);
    }
}
