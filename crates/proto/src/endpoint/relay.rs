//! Relaying: datagrams between two other nodes, forwarded one hop closer by
//! destination node id, never opened (the inner datagram stays end-to-end
//! encrypted), and relayed datagrams for this node unwrapped.
//!
//! Only neighbours with a usable session may hand us relayed datagrams, and
//! we only hand them to such neighbours; the TTL bounds every loop.

use std::net::SocketAddr;
use std::time::Instant;

use crate::route::Router;
use crate::wire::{
    udp_overhead, RelayHeader, RELAY_HEADER_LEN, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD,
    TYPE_TRANSPORT,
};

use super::api::Received;
use super::net::Cx;
use super::peer::Peers;
use super::stats::DropReason;

/// Whether `src` is a neighbour with a usable session (the only ones that
/// may hand us relayed datagrams).
pub(crate) fn from_neighbour(peers: &Peers, now: Instant, src: SocketAddr) -> bool {
    peers.by_endpoint(&src).is_some_and(|hop| {
        let p = &peers[hop];
        p.endpoint == Some(src) && p.session(now).is_some()
    })
}

/// Forwards a relayed datagram (`buf`, header `h`, from the neighbour at
/// `src`) for another node: the TTL decremented in place, to the next hop
/// of our route to its destination (or to the destination itself when it
/// is a neighbour we have no route to). Never back where it came from: when
/// our route leads there (the sender routes by a view ours has moved on
/// from, or it answers a handshake the way the handshake came), a
/// destination we hold a session with directly is handed the datagram
/// over that link; anything else is dropped as a loop.
pub(crate) fn forward(
    cx: &mut Cx<'_>,
    router: &Router,
    relaying: bool,
    now: Instant,
    src: SocketAddr,
    h: RelayHeader,
    buf: &mut [u8],
) -> Received {
    if !relaying {
        return cx.out.drop(DropReason::RelayRefused);
    }
    let Some(onward) = h.forwarded() else {
        return cx.out.drop(DropReason::RelayTtlExpired);
    };
    let next = router.route(h.dst).map_or(h.dst, |r| r.next_hop);
    // A neighbour's id and address, if we hold a usable session with it.
    let usable = |node| {
        let n = cx.peers.by_node(node)?;
        let p = &cx.peers[n];
        Some((n, p.session(now).and(p.endpoint)?))
    };
    let onward_hop = match usable(next) {
        Some((_, a)) if a == src => match usable(h.dst) {
            Some(direct) if direct.1 != src => direct,
            _ => return cx.out.drop(DropReason::RelayLoop),
        },
        Some(hop) => hop,
        None => return cx.out.drop(DropReason::RelayNoRoute),
    };
    let (n, dst) = onward_hop;
    let size = buf.len();
    // Transport packets with a payload: not handshakes, and not the
    // keepalives of sessions that carry nothing.
    let carries_data = buf.get(RELAY_HEADER_LEN) == Some(&TYPE_TRANSPORT)
        && size > RELAY_HEADER_LEN + TRANSPORT_OVERHEAD;
    let p = &mut cx.peers[n];
    // Relayed traffic makes the outgoing link probed fast too, and its path
    // MTU confirmed.
    if let Some(h) = p.health.as_mut().filter(|_| carries_data) {
        h.on_data_sent(now);
    }
    if let Some(m) = p.pmtu.as_mut() {
        m.on_data_sent(size + udp_overhead(&dst));
    }
    onward.write(buf);
    cx.out.stats.relayed_packets += 1;
    cx.out.stats.relayed_bytes += size as u64;
    Received::Forward { dst, len: size }
}

/// After a relayed transport packet for us was opened behind its relay
/// header: moves the `len` bytes of plaintext to where a direct packet's
/// would be, `buf[TRANSPORT_HEADER_LEN..]`.
pub(crate) fn move_plaintext(buf: &mut [u8], len: usize) {
    let at = RELAY_HEADER_LEN + TRANSPORT_HEADER_LEN;
    buf.copy_within(at..at + len, TRANSPORT_HEADER_LEN);
}
