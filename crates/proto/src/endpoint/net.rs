//! The plumbing the endpoint's parts share: this node ([`Local`]), what goes
//! back to the driver ([`Output`]), and [`Cx`], the one context a part gets
//! to reach peers and send, so that no part calls into another.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use rand_core::CryptoRngCore;

use crate::cert::TrustedCa;
use crate::control::Control;
use crate::handshake::Identity;
use crate::provider::Crypto;
use crate::wire::{
    NodeId, RelayHeader, RELAY_HEADER_LEN, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD,
};

use super::api::{EndpointConfig, Event, PeerId, Received, Transmit};
use super::peer::Peers;
use super::stats::{DropReason, Stats};

/// This node: identity, trust, settings, randomness and the wall clock.
pub(crate) struct Local {
    pub crypto: Arc<dyn Crypto>,
    /// Shared with responder plans (see `handshake::RespondPlan`).
    pub ca: Arc<TrustedCa>,
    pub identity: Arc<Identity>,
    pub node_id: NodeId,
    pub config: EndpointConfig,
    pub rng: Box<dyn CryptoRngCore + Send>,
    /// The wall clock (Unix ns) as of the driver's latest call: certificate
    /// validity, handshake timestamps, advert sequence numbers.
    pub unix_nanos: u64,
}

impl Local {
    /// Unix seconds as of the latest call.
    pub fn unix_secs(&self) -> u64 {
        self.unix_nanos / 1_000_000_000
    }
}

/// What the endpoint hands back to the driver.
#[derive(Default)]
pub(crate) struct Output {
    pub transmits: VecDeque<Transmit>,
    pub events: VecDeque<Event>,
    pub stats: Stats,
}

impl Output {
    /// Counts a drop and says so.
    pub fn drop(&mut self, reason: DropReason) -> Received {
        self.stats.drop(reason);
        Received::Dropped(reason)
    }

    pub fn event(&mut self, e: Event) {
        self.events.push_back(e);
    }
}

/// Where a datagram came from: directly, or relayed from `origin` by the
/// neighbour at `hop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Direct(SocketAddr),
    Relayed { origin: NodeId, hop: SocketAddr },
}

impl Source {
    /// The address that keys reassembly and cookies: the real one, or for a
    /// relayed origin an address in the discard prefix 100::/64 (RFC 6666)
    /// carrying its id, which is never sent to.
    pub fn key(self) -> SocketAddr {
        match self {
            Self::Direct(a) => a,
            Self::Relayed { origin, .. } => SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from((0x0100u128 << 112) | u128::from(origin.0))),
                0,
            ),
        }
    }

    /// The sender's own address, when it came directly.
    pub fn direct(self) -> Option<SocketAddr> {
        match self {
            Self::Direct(a) => Some(a),
            Self::Relayed { .. } => None,
        }
    }

    /// Where the datagram starts in the received buffer (behind the relay
    /// header when relayed).
    pub fn offset(self) -> usize {
        match self {
            Self::Direct(_) => 0,
            Self::Relayed { .. } => RELAY_HEADER_LEN,
        }
    }
}

/// The context a part gets: this node, the peer table and the output. The
/// endpoint builds it from its own fields for one call.
pub(crate) struct Cx<'a> {
    pub local: &'a mut Local,
    pub peers: &'a mut Peers,
    pub out: &'a mut Output,
}

impl Cx<'_> {
    /// Seals a control message in `peer`'s current session. `None` without
    /// a usable session.
    pub fn seal_control(&mut self, now: Instant, peer: PeerId, msg: &Control) -> Option<Vec<u8>> {
        // A refused peer's session, kept for a handover, carries bundles alone.
        if self.peers[peer].refused && !msg.is_bundle() {
            return None;
        }
        let plain = msg.encode();
        // Sealing moves a nonce and a counter, never a timer.
        let p = self.peers.quiet_mut(peer);
        let s = p.sessions.current_mut(now)?;
        let mut buf = vec![0u8; plain.len() + TRANSPORT_OVERHEAD];
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + plain.len()].copy_from_slice(&plain);
        let n = s.seal(&mut buf, plain.len()).ok()?;
        buf.truncate(n);
        // Counted as received control is: plaintext bytes.
        p.stats.tx_packets += 1;
        p.stats.tx_bytes += plain.len() as u64;
        Some(buf)
    }

    /// Queues `payload` for `peer` on its current path (through its relay
    /// if it has one).
    pub fn send_on_path(&mut self, peer: PeerId, payload: Vec<u8>) {
        let Some((dst, relay)) = self.peers.path(peer) else {
            self.out.stats.drop(DropReason::NoEndpoint);
            return;
        };
        let payload = match relay {
            Some(h) => h.wrap(&payload),
            None => payload,
        };
        self.out.transmits.push_back(Transmit { dst, payload });
    }

    /// Queues `payload` to `dst` as it is.
    pub fn send_direct(&mut self, dst: SocketAddr, payload: Vec<u8>) {
        self.out.transmits.push_back(Transmit { dst, payload });
    }

    /// Queues `payload` back the way `source` reached us.
    pub fn send_reply(&mut self, source: Source, payload: Vec<u8>) {
        match source {
            Source::Direct(dst) => self.send_direct(dst, payload),
            Source::Relayed { origin, hop } => {
                let h = RelayHeader::new(self.peers.own(), origin);
                self.send_direct(hop, h.wrap(&payload));
            }
        }
    }

    /// Seals `msg` for neighbour `peer` and queues it: on the direct link
    /// while its probes say it is up, as a link-state protocol talks to its
    /// neighbours, otherwise on the routed path. (Routed gossip would
    /// depend on routes computed from that gossip: a neighbour reached
    /// through a relay that has just lost its sessions, a node being
    /// revoked, would miss the very list that explains it.) The message's
    /// length before sealing; `None` without a usable session.
    pub fn send_gossip(&mut self, now: Instant, peer: PeerId, msg: &Control) -> Option<usize> {
        let d = self.seal_control(now, peer, msg)?;
        let len = d.len() - TRANSPORT_OVERHEAD;
        self.out.stats.control_messages_sent += 1;
        self.out.stats.control_bytes_sent += len as u64;
        *(self.out.stats.control_bytes_by_kind)
            .entry(msg.kind_name())
            .or_insert(0) += len as u64;
        let p = &self.peers[peer];
        // A handover's bundles go straight to the peer, never through a relay.
        match p.endpoint.filter(|_| p.link_up() || p.refused) {
            Some(dst) => self.send_direct(dst, d),
            None => self.send_on_path(peer, d),
        }
        Some(len)
    }

    /// Seals `msg` for `peer` and queues it back the way `source` came.
    pub fn answer(&mut self, now: Instant, peer: PeerId, source: Source, msg: &Control) {
        if let Some(d) = self.seal_control(now, peer, msg) {
            self.send_reply(source, d);
        }
    }
}
