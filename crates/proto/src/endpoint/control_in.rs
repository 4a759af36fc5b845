//! Control messages from peers, each already authenticated by its
//! session, handed to the part they are for: probes and punches to the
//! link health and traversal, link state to the gossip, accusations,
//! lookups, and bundle offers, requests and chunks.

use std::time::Instant;

use crate::control::Control;

use super::api::{Event, PeerId};
use super::bundles::Chunk;
use super::net::Source;
use super::{cx, probes, traversal, Endpoint};

impl Endpoint {
    /// A control message from `peer`, already authenticated by its session,
    /// to the part it is for.
    pub(super) fn handle_control(
        &mut self,
        now: Instant,
        peer: PeerId,
        source: Source,
        msg: Control,
    ) {
        let direct = source.direct().is_some();
        match msg {
            // Probes are answered on the path they took (they measure it);
            // answers count only over the direct link.
            Control::Probe { seq } => {
                cx!(self).answer(now, peer, source, &Control::ProbeReply { seq });
                traversal::tell_observed(cx!(self), now, peer, source);
                traversal::on_punch_probe(cx!(self), now, peer, source, seq);
            }
            Control::ProbeReply { seq }
                if direct && traversal::is_proof(&self.peers[peer], seq) =>
            {
                // Our punch probe went there and its answer came back: the
                // path works both ways.
                if let Some(a) = source.direct() {
                    traversal::on_proof(cx!(self), peer, a);
                    self.ensure_health(now, peer);
                }
            }
            Control::Observed { addr } if direct => {
                let node = self.peers[peer].node_id;
                self.candidates.on_observed(now, node, addr);
                self.update_transit(now);
            }
            Control::Observed { .. } => {}
            Control::Punch {
                reply,
                varies,
                candidates,
            } => {
                let punch = (reply, varies, candidates);
                traversal::on_punch(cx!(self), &mut self.candidates, now, peer, punch);
            }
            Control::ProbeReply { seq } if direct => {
                if let Some(c) = probes::on_probe_reply(&mut self.peers, now, peer, seq) {
                    self.on_link_change(now, peer, c);
                }
            }
            Control::MtuProbe { seq, .. } => {
                cx!(self).answer(now, peer, source, &Control::MtuProbeReply { seq });
            }
            Control::MtuProbeReply { seq } if direct => {
                probes::on_mtu_reply(cx!(self), now, peer, seq);
            }
            Control::ProbeReply { .. } | Control::MtuProbeReply { .. } => {}
            Control::SyncRequest => self.gossip.on_sync_request(cx!(self), now, peer),
            Control::LinkState(advert) => self.gossip.on_advert(cx!(self), now, peer, advert),
            Control::LinkStateAck(ack) => self.gossip.on_ack(now, peer, &ack),
            Control::LinkStateSummary(summary) => self.gossip.on_summary(now, peer, &summary),
            Control::Accusation(a) => self.on_accusation(now, peer, a),
            Control::CertRequest { node } => {
                self.gossip.on_cert_request(cx!(self), now, peer, node);
            }
            Control::Cert { bytes } => {
                if !self.on_looked_up(now, &bytes) {
                    self.gossip.on_cert(cx!(self), now, &bytes, &self.admission);
                }
            }
            Control::Lookup(what) => self.on_lookup(now, peer, what),
            Control::BundleOffer { kind, version, len } => {
                self.bundles
                    .on_offer(cx!(self), now, peer, (kind, version, len));
            }
            Control::BundleRequest {
                kind,
                version,
                offset,
            } => {
                let last = (self.bundles).on_request(cx!(self), now, peer, (kind, version, offset));
                if last {
                    self.bundle_delivered(now, peer);
                }
            }
            Control::BundleChunk {
                kind,
                version,
                offset,
                total,
                data,
            } => {
                let chunk = Chunk {
                    kind,
                    version,
                    offset,
                    total,
                    data: &data,
                };
                if let Some((kind, bytes)) = self.bundles.on_chunk(cx!(self), now, peer, chunk) {
                    if let Err(error) = self.apply_bundle_bytes(now, &bytes) {
                        self.out.event(Event::BundleRejected { kind, error });
                    }
                }
            }
        }
    }
}
