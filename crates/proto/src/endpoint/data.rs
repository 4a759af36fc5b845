//! The data path: IP packets sealed for a peer, transport packets opened.
//!
//! ```text
//! out: prepare_send ─ refused? policy (out) ─ path (direct / relay) ─ MTU
//!      ─ current session? reserve counter, write header ─► SealPlan::seal
//!      └ no session: queue (bounded) + handshake; flushed when it completes
//! in:  transport header (parsed once by wire::Datagram)
//!      ─ index → peer, session slot, replay check ─► OpenPlan::open (AEAD)
//!      ─ finish: replay commit, confirm a responder session, timers,
//!        control message → its part, or inner packet: parsed once,
//!        source in the sender's certificate, policy (in) ─► Received::Data
//! ```
//!
//! The `prepare_*` / `finish_*` split lets a driver that shares the
//! endpoint between threads run the AEAD pass outside its lock; `send` and
//! `handle_datagram` are the one-call forms. Relayed packets for us take
//! the same split path (the plan knows where the packet starts).

use std::net::SocketAddr;
use std::time::Instant;

use crate::control::{self, Control};
use crate::filter::Direction;
use crate::ids::Evidence;
use crate::pmtu::PathMtu;
use crate::session::SessionError;
use crate::timers::{rekey_before_send, rekey_on_receive};
use crate::wire::ip::{self, Packet};
use crate::wire::{
    udp_overhead, Datagram, TransportHeader, RELAY_HEADER_LEN, TRANSPORT_HEADER_LEN,
    TRANSPORT_OVERHEAD,
};

use super::admission::Remote;
use super::api::{Event, Incoming, OpenPlan, PeerId, Prepared, Received, SealPlan, SendOutcome};
use super::net::Source;
use super::peer::Slot;
use super::stats::DropReason;
use super::{cx, relay, Endpoint};

impl Endpoint {
    /// Seals an IP packet for `peer`. The packet is at
    /// `buf[TRANSPORT_HEADER_LEN..][..len]`; `buf` needs `TRANSPORT_OVERHEAD`
    /// bytes more than `len`, and [`RELAY_HEADER_LEN`] more again while the
    /// peer is reached through a relay. On `Send`, `buf[..len]` is the datagram.
    pub fn send(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        peer: PeerId,
        buf: &mut [u8],
        len: usize,
    ) -> SendOutcome {
        match self.prepare_send(now, unix_nanos, peer, buf, len) {
            Prepared::Seal(plan) => {
                let (dst, len) = plan.seal(buf);
                SendOutcome::Send { dst, len }
            }
            Prepared::Done(out) => out,
        }
    }

    /// [`Endpoint::send`] without the AEAD pass: policy, path, counter,
    /// header, statistics and timers. A driver that shares the endpoint
    /// between threads calls this under its lock and [`SealPlan::seal`]
    /// after releasing it.
    pub fn prepare_send(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        peer: PeerId,
        buf: &mut [u8],
        len: usize,
    ) -> Prepared {
        self.local.unix_nanos = unix_nanos;
        match self.try_prepare_send(now, peer, buf, len) {
            Ok(plan) => Prepared::Seal(plan),
            Err(SendOutcome::Dropped(r)) => {
                self.out.stats.drop(r);
                Prepared::Done(SendOutcome::Dropped(r))
            }
            Err(other) => Prepared::Done(other),
        }
    }

    fn try_prepare_send(
        &mut self,
        now: Instant,
        peer: PeerId,
        buf: &mut [u8],
        len: usize,
    ) -> Result<SealPlan, SendOutcome> {
        use SendOutcome::Dropped;
        if buf.len() < len + TRANSPORT_OVERHEAD {
            return Err(Dropped(DropReason::BufferTooSmall));
        }
        let peer = self
            .peers
            .checked(peer)
            .ok_or(Dropped(DropReason::NoEndpoint))?;
        if self.peers[peer].refused {
            return Err(Dropped(DropReason::PeerRefused));
        }
        if self.quarantined(now, peer) {
            return Err(Dropped(DropReason::Quarantined));
        }
        // Without a certificate yet (first handshake), the packet is checked
        // when the queue is flushed.
        if self.peers[peer].cert.is_some() {
            let inner = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len];
            self.police_raw(now, Direction::Out, peer, inner)
                .map_err(Dropped)?;
        }
        let (dst, relay) = self
            .peers
            .path(peer)
            .ok_or(Dropped(DropReason::NoEndpoint))?;
        if relay.is_some() && buf.len() < len + TRANSPORT_OVERHEAD + RELAY_HEADER_LEN {
            return Err(Dropped(DropReason::BufferTooSmall));
        }
        let extra = TRANSPORT_OVERHEAD + udp_overhead(&dst) + relay.map_or(0, |_| RELAY_HEADER_LEN);
        // The first hop's measured path MTU (the relay's link while relayed).
        let via = self.peers[peer].via;
        let hop = via.unwrap_or(peer);
        let limit = self.peers[hop]
            .pmtu
            .as_ref()
            .map_or(self.local.config.underlay_mtu, PathMtu::mtu);
        if len + extra > limit {
            self.out.stats.drop(DropReason::TooBig);
            return Err(SendOutcome::TooBig {
                mtu: limit.saturating_sub(extra),
            });
        }
        // The first hop's path MTU is confirmed while it carries large
        // datagrams; data makes the links it uses probed fast: the direct
        // one, and the relay's while relayed.
        if let Some(m) = self.peers[hop].pmtu.as_mut() {
            m.on_data_sent(len + extra);
        }
        if let Some(r) = via {
            if let Some(h) = self.peers[r].health.as_mut() {
                h.on_data_sent(now);
            }
        }
        let p = &mut self.peers[peer];
        if let Some(h) = p.health.as_mut() {
            h.on_data_sent(now);
        }
        if let Some(s) = p.sessions.current_mut(now) {
            let job = s
                .reserve(buf, len)
                .map_err(|_| Dropped(DropReason::SessionExpired))?;
            let rekey =
                s.is_initiator() && rekey_before_send(s.established(), s.send_counter(), now);
            p.stats.tx_bytes += len as u64;
            p.stats.tx_packets += 1;
            p.timers.on_data_sent(now);
            if rekey && p.pending.is_none() {
                self.handshakes.initiate(cx!(self), now, peer);
            }
            return Ok(SealPlan { job, dst, relay });
        }
        // No usable session: queue and handshake.
        let full = p.queue.len() >= self.local.config.queue_limit;
        if full {
            p.queue.pop_front();
        }
        p.queue
            .push_back(buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len].to_vec());
        if full {
            self.out.stats.drop(DropReason::QueueFull);
        }
        if self.peers[peer].pending.is_none() {
            self.handshakes.initiate(cx!(self), now, peer);
        }
        Err(SendOutcome::Queued)
    }

    /// Checks an outbound packet against the policy (with flow tracking).
    fn police_raw(
        &mut self,
        now: Instant,
        dir: Direction,
        peer: PeerId,
        packet: &[u8],
    ) -> Result<(), DropReason> {
        let own = self.local.identity.certificate();
        let p = self.peers.quiet_mut(peer);
        let remote = Remote {
            cert: p.cert.as_ref(),
            idents: &mut p.idents,
        };
        self.admission.police(now, dir, own, remote, packet)
    }

    /// Seals the packets queued during a handshake into transmits, or sends
    /// a keepalive so the responder can confirm the session.
    pub(super) fn flush_queue(&mut self, now: Instant, peer: PeerId) {
        self.session_ready(now, peer);
        if !self.peers[peer].sessions.has_current() {
            return;
        }
        if self.peers[peer].queue.is_empty() {
            self.send_keepalive(now, peer);
            return;
        }
        while let Some(pkt) = self.peers[peer].queue.pop_front() {
            if let Err(r) = self.police_raw(now, Direction::Out, peer, &pkt) {
                self.out.stats.drop(r);
                continue;
            }
            let p = &mut self.peers[peer];
            let Some(s) = p.sessions.current_mut(now) else {
                break;
            };
            let mut buf = vec![0u8; pkt.len() + TRANSPORT_OVERHEAD];
            buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + pkt.len()].copy_from_slice(&pkt);
            if let Ok(n) = s.seal(&mut buf, pkt.len()) {
                buf.truncate(n);
                p.stats.tx_bytes += pkt.len() as u64;
                p.stats.tx_packets += 1;
                cx!(self).send_on_path(peer, buf);
            }
        }
        self.peers[peer].timers.on_data_sent(now);
    }

    /// A keepalive (an empty transport packet) to `peer`, if it has a
    /// usable session.
    pub(super) fn send_keepalive(&mut self, now: Instant, peer: PeerId) {
        let p = &mut self.peers[peer];
        let Some(s) = p.sessions.current_mut(now) else {
            return;
        };
        let mut buf = [0u8; TRANSPORT_OVERHEAD];
        if let Ok(n) = s.seal(&mut buf, 0) {
            p.stats.tx_packets += 1;
            cx!(self).send_on_path(peer, buf[..n].to_vec());
        }
    }

    /// Processes one received UDP datagram from `src` up to, not including,
    /// the AEAD pass when it is a transport packet for a live session
    /// (directly or relayed to us); any other datagram is handled completely
    /// (as [`Endpoint::handle_datagram`]). A driver that shares the endpoint
    /// between threads calls this under its lock, [`OpenPlan::open`] after
    /// releasing it, and [`Endpoint::finish_datagram`] under the lock again.
    pub fn prepare_datagram(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        src: SocketAddr,
        buf: &mut [u8],
    ) -> Incoming {
        self.local.unix_nanos = unix_nanos;
        let direct = Source::Direct(src);
        let (source, h) = match Datagram::parse(buf) {
            Err(_) => return Incoming::Done(self.out.drop(DropReason::Malformed)),
            Ok(Datagram::Transport(h)) => (direct, h),
            Ok(Datagram::Handshake(d)) => return self.handshake_datagram(now, direct, d).into(),
            Ok(Datagram::Relay(rh)) => {
                let hop = match self.relayed_to_us(now, direct, rh, buf) {
                    Ok(hop) => hop,
                    Err(r) => return Incoming::Done(r),
                };
                let relayed = Source::Relayed {
                    origin: rh.src,
                    hop,
                };
                match Datagram::parse(&buf[RELAY_HEADER_LEN..]) {
                    Ok(Datagram::Transport(h)) => (relayed, h),
                    Ok(Datagram::Handshake(d)) => {
                        return self.handshake_datagram(now, relayed, d).into()
                    }
                    Ok(Datagram::Relay(_)) | Err(_) => {
                        return Incoming::Done(self.out.drop(DropReason::Malformed))
                    }
                }
            }
        };
        match self.transport_lookup(now, source, h) {
            Ok(plan) => Incoming::Open(plan),
            Err(r) => Incoming::Done(r),
        }
    }

    /// The rest of a datagram [`Endpoint::prepare_datagram`] planned:
    /// `opened` is what [`OpenPlan::open`] returned for `buf`.
    pub fn finish_datagram(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        plan: OpenPlan,
        buf: &mut [u8],
        opened: Result<usize, SessionError>,
    ) -> Received {
        self.local.unix_nanos = unix_nanos;
        let at = plan.source.offset();
        let r = self.transport_opened(now, &plan, &mut buf[at..], opened);
        if let (Received::Data { len, .. }, true) = (r, at > 0) {
            relay::move_plaintext(buf, len);
        }
        r
    }

    /// A transport packet, in one call: lookup, open, finish.
    pub(super) fn handle_transport(
        &mut self,
        now: Instant,
        source: Source,
        h: TransportHeader,
        buf: &mut [u8],
    ) -> Received {
        match self.transport_lookup(now, source, h) {
            Ok(plan) => {
                let opened = plan.job.open(buf);
                self.transport_opened(now, &plan, buf, opened)
            }
            Err(r) => r,
        }
    }

    /// Finds the session a transport packet is for and checks its counter
    /// against the replay window.
    fn transport_lookup(
        &mut self,
        now: Instant,
        source: Source,
        h: TransportHeader,
    ) -> Result<OpenPlan, Received> {
        let Some(peer) = self.peers.by_index(h.receiver_index) else {
            self.resync(now, source);
            return Err(self.out.drop(DropReason::UnknownIndex));
        };
        let sessions = &self.peers[peer].sessions;
        let Some(session) = sessions
            .slot_of(h.receiver_index)
            .and_then(|s| sessions.get(s))
        else {
            return Err(self.out.drop(DropReason::UnknownIndex));
        };
        if !crate::timers::usable(session.established(), now) {
            return Err(self.out.drop(DropReason::SessionExpired));
        }
        match session.open_job_for(h) {
            Ok(job) => Ok(OpenPlan {
                job,
                peer,
                local_index: h.receiver_index,
                source,
            }),
            Err(SessionError::Replay) => Err(self.out.drop(DropReason::Replay)),
            Err(SessionError::Wire(_)) => Err(self.out.drop(DropReason::Malformed)),
            Err(_) => Err(self.out.drop(DropReason::UnknownIndex)),
        }
    }

    /// A transport packet after its AEAD pass: commit the counter, then
    /// session confirmation, timers, and the plaintext's checks.
    fn transport_opened(
        &mut self,
        now: Instant,
        plan: &OpenPlan,
        buf: &mut [u8],
        opened: Result<usize, SessionError>,
    ) -> Received {
        let (peer, source) = (plan.peer, plan.source);
        let len = match opened {
            Ok(n) => n,
            Err(SessionError::Wire(_)) => return self.out.drop(DropReason::Malformed),
            Err(_) => return self.out.drop(DropReason::Decrypt),
        };
        // The session may have moved between slots (or gone, with its
        // peer) while the packet was being opened outside the lock.
        if self.peers.checked(peer).is_none() {
            return self.out.drop(DropReason::UnknownIndex);
        }
        let p = &mut self.peers[peer];
        let slot = p.sessions.slot_of(plan.local_index);
        let Some(session) = slot.and_then(|s| p.sessions.get_mut(s)) else {
            return self.out.drop(DropReason::UnknownIndex);
        };
        if !session.commit(plan.job.counter()) {
            return self.out.drop(DropReason::Replay);
        }
        let rekey = session.is_initiator()
            && slot == Some(Slot::Current)
            && rekey_on_receive(session.established(), now);
        // The first packet on a responder's session confirms it: that
        // handshake is complete.
        let first = session.note_received(now);
        if !session.is_initiator() && first {
            let name = p.cert.as_ref().map(|c| c.name().to_string());
            self.out.stats.handshakes_completed += 1;
            self.out.event(Event::HandshakeCompleted {
                peer,
                name: name.unwrap_or_default(),
                initiator: false,
            });
        }
        let p = &mut self.peers[peer];
        if slot == Some(Slot::Next) {
            // The confirmed session becomes current.
            let retired = p.sessions.confirm_next();
            self.peers.release(retired);
            if let Some(a) = source.direct() {
                self.peers.set_endpoint(peer, a);
            }
            // Anything queued while we waited can go now; probing and
            // gossip start.
            if self.peers[peer].queue.is_empty() {
                self.session_ready(now, peer);
            } else {
                self.flush_queue(now, peer);
            }
        }
        // Roaming: an authenticated packet from a new address moves a peer
        // with a direct address there. One known only through a relay gets
        // a direct address when its answer to our punch probe proves the
        // path both ways (`traversal.rs`): a packet that came one way says
        // nothing of the other.
        if let Some(a) = source
            .direct()
            .filter(|_| self.peers[peer].endpoint.is_some())
        {
            self.peers.set_endpoint(peer, a);
            self.peers.heard_directly(peer);
        }
        if self.peers[peer].refused {
            let plain = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len];
            return self.handover_datagram(now, peer, source, plain);
        }
        let p = &mut self.peers[peer];
        p.stats.rx_packets += 1;
        p.stats.rx_bytes += len as u64;
        p.timers.on_packet_received(now, len);
        if rekey && p.pending.is_none() {
            self.handshakes.initiate(cx!(self), now, peer);
        }
        if len == 0 {
            return Received::Keepalive { peer };
        }
        let plain = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len];
        if control::is_control(plain) {
            return match Control::decode(plain) {
                Ok(msg) => {
                    self.handle_control(now, peer, source, msg);
                    Received::Control { peer }
                }
                // A kind this version does not know may be a newer
                // version's (a rolling upgrade): dropped, not held against
                // the peer; a known kind that does not decode is.
                Err(control::ControlError::UnknownKind(_)) => self.out.drop(DropReason::BadControl),
                Err(_) => {
                    self.report(now, peer, Evidence::BadControl);
                    self.out.drop(DropReason::BadControl)
                }
            };
        }
        if let Err(r) = self.sanction(now, peer) {
            return self.out.drop(r);
        }
        match self.check_inner(now, peer, plain) {
            Ok(()) => Received::Data { peer, len },
            Err(r) => self.out.drop(r),
        }
    }

    /// A packet on the session of a refused peer kept for a handover:
    /// bundle transfers pass, anything else is dropped.
    fn handover_datagram(
        &mut self,
        now: Instant,
        peer: PeerId,
        source: Source,
        plain: &[u8],
    ) -> Received {
        match control::is_control(plain).then(|| Control::decode(plain)) {
            Some(Ok(msg)) if msg.is_bundle() => {
                self.handle_control(now, peer, source, msg);
                Received::Control { peer }
            }
            _ => self.out.drop(DropReason::PeerRefused),
        }
    }

    /// An inner packet from `peer`: its source must be an address in the
    /// peer's certificate, and the policy must allow it. The header is
    /// parsed once: fully when a policy is in force, only for its source
    /// otherwise.
    fn check_inner(&mut self, now: Instant, peer: PeerId, plain: &[u8]) -> Result<(), DropReason> {
        let parsed = match self.admission.policy() {
            Some(_) => match Packet::parse(plain) {
                Ok(pkt) => Some(pkt),
                Err(_) => {
                    self.admission.filter_mut().count_unparsable();
                    self.report(now, peer, Evidence::Junk);
                    return Err(DropReason::NotIp);
                }
            },
            None => None,
        };
        let src = match &parsed {
            Some(pkt) => pkt.src,
            None => match ip::source(plain) {
                Some(src) => src,
                None => {
                    self.report(now, peer, Evidence::Junk);
                    return Err(DropReason::NotIp);
                }
            },
        };
        let p = self.peers.quiet_mut(peer);
        if !p.cert.as_ref().is_some_and(|c| c.has_address(src)) {
            self.report(now, peer, Evidence::Spoofed);
            return Err(DropReason::SpoofedSource);
        }
        let Some(pkt) = parsed else {
            return Ok(());
        };
        let own = self.local.identity.certificate();
        let remote = Remote {
            cert: p.cert.as_ref(),
            idents: &mut p.idents,
        };
        let verdict = self
            .admission
            .police_parsed(now, Direction::In, own, remote, &pkt);
        if verdict == Err(DropReason::PolicyDenied) {
            let ev = Evidence::Denied {
                dst: pkt.dst,
                proto: pkt.proto,
                port: pkt.policy_port,
            };
            self.report(now, peer, ev);
        }
        verdict
    }

    /// A transport packet for a session we do not have, from the address of
    /// a known peer with which we hold no usable session: the peer holds
    /// state we lost (we restarted). Start a handshake at once rather than
    /// waiting for its 15-second new-handshake timer. While we hold a usable
    /// session with the peer, such packets are stale or spoofed (anyone can
    /// send from a peer's address) and start nothing; otherwise at most one
    /// initiation per REKEY_TIMEOUT per peer.
    fn resync(&mut self, now: Instant, source: Source) {
        let known = match source {
            Source::Direct(src) => self.peers.by_endpoint(&src),
            Source::Relayed { origin, .. } => self.peers.by_node(origin),
        };
        let Some(peer) = known else {
            return;
        };
        if self.peers[peer].session(now).is_some() {
            return;
        }
        let p = &mut self.peers[peer];
        if p.pending.is_some() || !p.timers.take_resync(now) {
            return;
        }
        self.handshakes.initiate(cx!(self), now, peer);
    }
}
