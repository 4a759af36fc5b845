//! Policy and revocation bundles: the ones in force, their verification,
//! and their spread: offered to every neighbour (on a new version, and
//! when a session comes up), offered again to each neighbour that has not
//! told us it holds as new a one (its own offers say what it holds) after
//! the link's retransmission timeout (as an advert's, at most 0.5 s),
//! doubling up to `BUNDLE_OFFER_INTERVAL`, and pulled chunk by chunk from
//! whoever offers a newer one. An offer is one small datagram: a lost one
//! used to wait a whole second for the next, which was most of a
//! revocation's spread time on a lossy underlay.
//!
//! Verifying a bundle is this part's; putting its content in force (the
//! policy, the revocation list) is the endpoint's, which then hands the
//! bundle back to [`BundleSync::install`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::bundle::{Bundle, BundleError, BundleKind, Content, MAX_BUNDLE_LEN};
use crate::control::{self, Control};

use super::admission::Admission;
use super::api::{Event, PeerId};
use super::flooding::Flooding;
use super::net::{Cx, Local};

/// A chunk request unanswered for the link's retransmission timeout (as
/// an advert's: twice its RTT plus the acknowledgement delay, at least
/// 250 ms), at most this, is sent again, to the next neighbour that
/// offered that version if another did...
const BUNDLE_RETRY_MAX: Duration = Duration::from_millis(500);
/// ...this many times before the download is abandoned (the next offer,
/// from anyone, starts it again).
const BUNDLE_RETRIES: u8 = 4;
/// A neighbour not known to hold our bundle is offered it again after the
/// link's retransmission timeout ([`retry_after`]), doubling up to this
/// (a neighbour that never says what it holds, such as an implementation
/// that does not answer offers, is offered at this rate).
const BUNDLE_OFFER_INTERVAL: Duration = Duration::from_secs(10);
/// A neighbour offering what we hold as new a one of is answered with our
/// offer (so it stops re-offering), unless we offered it this recently
/// (offers that crossed).
const OFFER_ANSWER_AFTER: Duration = Duration::from_secs(1);

/// How long a chunk request to `peer` waits for its chunk.
fn retry_after(cx: &Cx<'_>, peer: PeerId) -> Duration {
    let rtt = (cx.peers.checked(peer)).and_then(|p| cx.peers[p].health.as_ref()?.srtt());
    Flooding::rto(rtt).min(BUNDLE_RETRY_MAX)
}

/// What one neighbour told us of its bundles, by slot.
#[derive(Debug, Default, Clone, Copy)]
struct Heard {
    /// The newest version it offered us (0: none since its session came up).
    holds: [u64; 2],
    /// When we last offered it ours, and how long after that we offer again
    /// while it does not say it holds ours.
    offered_at: [Option<(Instant, Duration)>; 2],
}

/// A bundle being pulled from a neighbour, chunk by chunk.
#[derive(Debug)]
struct Transfer {
    version: u64,
    total: u32,
    buf: Vec<u8>,
    from: PeerId,
    deadline: Instant,
    retries: u8,
}

/// One chunk of a bundle, as a neighbour sent it.
pub(crate) struct Chunk<'a> {
    pub kind: u8,
    pub version: u64,
    pub offset: u32,
    pub total: u32,
    pub data: &'a [u8],
}

/// The bundles of one node.
#[derive(Default)]
pub(crate) struct BundleSync {
    /// In force, by [`BundleKind::slot`].
    bundles: [Option<Bundle>; 2],
    /// Downloads in progress, by slot.
    transfers: [Option<Transfer>; 2],
    /// When neighbours not known to hold our bundles are next looked at,
    /// each offered again once its own delay is past.
    offer_at: Option<Instant>,
    /// The newest version a neighbour offered that is newer than ours, and
    /// since when it has been offered, by slot (cleared once one as new is
    /// in force): a version offered long and never put in force means its
    /// transfer or verification keeps failing.
    offered: [Option<(u64, Instant)>; 2],
    /// Per neighbour: what it holds and when we offered it ours.
    heard: BTreeMap<PeerId, Heard>,
}

impl BundleSync {
    /// The bundle of `kind` in force.
    pub fn get(&self, kind: BundleKind) -> Option<&Bundle> {
        self.bundles[kind.slot()].as_ref()
    }

    /// A newer version of `kind` neighbours offer than the one in force,
    /// and since when.
    pub fn offered(&self, kind: BundleKind) -> Option<(u64, Instant)> {
        self.offered[kind.slot()]
    }

    /// Checks a bundle: structure, signature by the CA or a policy key it
    /// names (not revoked), and newer than the one in force. What it puts
    /// in force comes back with it.
    pub fn verify(
        &self,
        local: &Local,
        admission: &Admission,
        bytes: &[u8],
    ) -> Result<(Bundle, Content), BundleError> {
        let b = Bundle::from_bytes(bytes)?;
        let crypto = &*local.crypto;
        let content = b.verify(crypto, &local.ca, local.unix_secs())?;
        if let Some(Ok(signer)) = b.signer() {
            if admission.is_revoked(&signer.fingerprint(crypto)) {
                return Err(BundleError::BadSigner("its certificate is revoked".into()));
            }
        }
        if let Some(cur) = &self.bundles[b.kind().slot()] {
            if b.version() <= cur.version() {
                return Err(BundleError::NotNewer {
                    in_force: cur.version(),
                    offered: b.version(),
                });
            }
        }
        Ok((b, content))
    }

    /// Keeps a verified bundle whose content is in force, and offers it to
    /// every neighbour.
    pub fn install(&mut self, cx: &mut Cx<'_>, now: Instant, b: Bundle) {
        let (kind, version) = (b.kind(), b.version());
        self.bundles[kind.slot()] = Some(b);
        if self.offered[kind.slot()].is_some_and(|(v, _)| v <= version) {
            self.offered[kind.slot()] = None;
        }
        if self.transfers[kind.slot()]
            .as_ref()
            .is_some_and(|t| t.version <= version)
        {
            self.transfers[kind.slot()] = None;
        }
        for heard in self.heard.values_mut() {
            heard.offered_at[kind.slot()] = None; // a new version: from the shortest again
        }
        for peer in cx.peers.ids().collect::<Vec<_>>() {
            self.offer(cx, now, peer, kind);
        }
        cx.out.stats.bundles_applied += 1;
        cx.out.event(Event::BundleApplied { kind, version });
    }

    /// A session with `peer` came up (first, or after its link was down):
    /// what it held before counts no more (it may have restarted), and it
    /// is offered every bundle we hold.
    pub fn session_up(&mut self, cx: &mut Cx<'_>, now: Instant, peer: PeerId) {
        self.heard.remove(&peer);
        for kind in BundleKind::ALL {
            self.offer(cx, now, peer, kind);
        }
    }

    /// Offers our bundle of `kind` to `peer` (if we hold one and have a
    /// session: a refused peer has none, or one kept for bundles alone).
    fn offer(&mut self, cx: &mut Cx<'_>, now: Instant, peer: PeerId, kind: BundleKind) {
        let Some(b) = &self.bundles[kind.slot()] else {
            return;
        };
        let msg = Control::BundleOffer {
            kind: kind.byte(),
            version: b.version(),
            len: b.as_bytes().len() as u32,
        };
        if cx.send_gossip(now, peer, &msg).is_some() {
            cx.out.stats.bundle_offers_sent += 1;
            let first = retry_after(cx, peer);
            let at = &mut self.heard.entry(peer).or_default().offered_at[kind.slot()];
            let next = at.map_or(first, |(_, d)| (2 * d).min(BUNDLE_OFFER_INTERVAL));
            *at = Some((now, next));
            self.offer_at = Some(self.offer_at.map_or(now + next, |t| t.min(now + next)));
        }
    }

    fn request_chunk(&mut self, cx: &mut Cx<'_>, now: Instant, kind: BundleKind) {
        let Some(t) = &self.transfers[kind.slot()] else {
            return;
        };
        let msg = Control::BundleRequest {
            kind: kind.byte(),
            version: t.version,
            offset: t.buf.len() as u32,
        };
        cx.send_gossip(now, t.from, &msg);
    }

    /// A neighbour offers a bundle: pull it if it is newer than what we hold
    /// and than what we are pulling.
    pub fn on_offer(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        peer: PeerId,
        (kind, version, len): (u8, u64, u32),
    ) {
        let Some(kind) = BundleKind::from_byte(kind) else {
            return;
        };
        let slot = kind.slot();
        let heard = self.heard.entry(peer).or_default();
        heard.holds[slot] = heard.holds[slot].max(version);
        let held = self.bundles[slot].as_ref().map(Bundle::version);
        if held.is_some_and(|v| v >= version) {
            // It does not know we hold as new a one (or it would not offer):
            // our offer tells it, and it stops re-offering.
            let recent = heard.offered_at[slot]
                .is_some_and(|(t, _)| now.saturating_duration_since(t) < OFFER_ANSWER_AFTER);
            if !recent {
                self.offer(cx, now, peer, kind);
            }
            return;
        }
        if len as usize > MAX_BUNDLE_LEN || len == 0 {
            return;
        }
        let offered = &mut self.offered[kind.slot()];
        if offered.is_none_or(|(v, _)| v < version) {
            *offered = Some((version, offered.map_or(now, |(_, since)| since)));
        }
        if self.transfers[kind.slot()]
            .as_ref()
            .is_some_and(|t| t.version >= version)
        {
            return;
        }
        self.transfers[kind.slot()] = Some(Transfer {
            version,
            total: len,
            buf: Vec::with_capacity(len as usize),
            from: peer,
            deadline: now + retry_after(cx, peer),
            retries: 0,
        });
        self.request_chunk(cx, now, kind);
    }

    /// A neighbour asks for a chunk of a bundle we hold; true if it was
    /// the last chunk (the neighbour has the whole bundle).
    pub fn on_request(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        peer: PeerId,
        (kind, version, offset): (u8, u64, u32),
    ) -> bool {
        let Some(kind) = BundleKind::from_byte(kind) else {
            return false;
        };
        let Some(b) = self.bundles[kind.slot()].as_ref() else {
            return false;
        };
        let bytes = b.as_bytes();
        let start = offset as usize;
        if b.version() != version || start >= bytes.len() {
            return false;
        }
        let end = (start + control::MAX_CHUNK).min(bytes.len());
        let msg = Control::BundleChunk {
            kind: kind.byte(),
            version,
            offset,
            total: bytes.len() as u32,
            data: bytes[start..end].to_vec(),
        };
        cx.out.stats.bundle_bytes_sent += (end - start) as u64;
        cx.send_gossip(now, peer, &msg).is_some() && end == bytes.len()
    }

    /// A chunk of the bundle we are pulling from `peer`: the whole bundle's
    /// bytes once complete (for the endpoint to verify and apply).
    pub fn on_chunk(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        peer: PeerId,
        c: Chunk<'_>,
    ) -> Option<(BundleKind, Vec<u8>)> {
        let kind = BundleKind::from_byte(c.kind)?;
        let t = self.transfers[kind.slot()].as_mut()?;
        if t.from != peer
            || t.version != c.version
            || t.total != c.total
            || t.buf.len() != c.offset as usize
        {
            return None;
        }
        t.buf.extend_from_slice(c.data);
        t.deadline = now + retry_after(cx, peer);
        t.retries = 0;
        if t.buf.len() < t.total as usize {
            self.request_chunk(cx, now, kind);
            return None;
        }
        let t = self.transfers[kind.slot()].take()?;
        Some((kind, t.buf))
    }

    /// A peer is removed: a download from it stops (the next offer, from
    /// anyone, starts it again).
    pub fn remove_peer(&mut self, peer: PeerId) {
        self.heard.remove(&peer);
        for t in &mut self.transfers {
            if t.as_ref().is_some_and(|t| t.from == peer) {
                *t = None;
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.transfers
            .iter()
            .flatten()
            .map(|t| t.deadline)
            .chain(self.offer_at)
            .min()
    }

    /// Retries stalled downloads and re-offers held bundles.
    pub fn handle_timeout(&mut self, cx: &mut Cx<'_>, now: Instant) {
        for kind in BundleKind::ALL {
            let Some(t) = self.transfers[kind.slot()].as_mut() else {
                continue;
            };
            if t.deadline > now {
                continue;
            }
            if t.retries >= BUNDLE_RETRIES {
                self.transfers[kind.slot()] = None;
                continue;
            }
            t.retries += 1;
            // Chunks are slices of the same signed bytes, whoever serves
            // them: a lost request or chunk is asked again of the next
            // neighbour known to hold that version (round robin), so one
            // bad link does not stall the download.
            let version = t.version;
            let holders = (self.heard.iter())
                .filter(|(p, h)| h.holds[kind.slot()] >= version && cx.peers.checked(**p).is_some())
                .map(|(p, _)| *p);
            let (after, first) = holders.fold((None, None), |(after, first), p| {
                let after = after.or((p > t.from).then_some(p));
                (after, first.or(Some(p)))
            });
            t.from = after.or(first).unwrap_or(t.from);
            t.deadline = now + retry_after(cx, t.from);
            self.request_chunk(cx, now, kind);
        }
        if self.offer_at.is_some_and(|t| t <= now) {
            self.offer_at = None;
            let mut next: Option<Instant> = None;
            for peer in cx.peers.ids().collect::<Vec<_>>() {
                for kind in BundleKind::ALL {
                    let slot = kind.slot();
                    let Some(ours) = self.bundles[slot].as_ref().map(Bundle::version) else {
                        continue;
                    };
                    let heard = self.heard.get(&peer).copied().unwrap_or_default();
                    if heard.holds[slot] >= ours {
                        continue;
                    }
                    match heard.offered_at[slot] {
                        Some((t, d)) if now < t + d => {
                            next = Some(next.map_or(t + d, |n| n.min(t + d)));
                        }
                        _ => self.offer(cx, now, peer, kind),
                    }
                }
            }
            if let Some(n) = next {
                self.offer_at = Some(self.offer_at.map_or(n, |t| t.min(n)));
            }
        }
    }
}
