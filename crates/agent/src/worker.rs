//! The packet workers.
//!
//! ```text
//! TUN read ──► inner destination ──► route (overlay address → peer)
//!          ──► Endpoint::prepare_send (under the lock) ──► seal (outside) ──► UDP send
//! UDP recv ──► Endpoint::prepare_datagram (under the lock)
//!          ──► OpenPlan::open (outside) ──► Endpoint::finish_datagram (under the lock)
//!          ──► TUN write
//!          (a complete initiation: RespondPlan ──► the handshake thread)
//! after each batch: transmits and events drained (`events.rs`), then sent
//! ```
//!
//! N workers (`tun.queues`, default one per CPU), each a thread with its own
//! current-thread runtime, its own TUN queue (multiqueue TUN: the kernel
//! spreads flows across queues) and its own UDP socket on the shared port
//! (SO_REUSEPORT: spread by sender). They share the node behind one lock,
//! held for the endpoint's bookkeeping only: sealing, opening and every
//! system call happen outside it, so the workers run those in parallel.
//! Buffers are allocated once per worker and reused, with the transport
//! header's headroom in front of every TUN read.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use proto::endpoint::{Incoming, OpenPlan, Prepared, Received, SealPlan, SendOutcome};
use proto::session::SessionError;
use proto::wire::ip;
use proto::wire::{RELAY_HEADER_LEN, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};
use quinn_udp::RecvMeta;
use tokio::net::UdpSocket;
use tracing::debug;

use crate::io::{Udp, RECV_BATCH, RECV_SLOT};
use crate::node::{Node, Shared};
use crate::startup::unix_nanos;

/// Datagrams produced while the lock is held, sent after it is released.
/// Slots are reused: no allocation per datagram once warm.
#[derive(Default)]
pub struct Outbox {
    slots: Vec<(SocketAddr, Vec<u8>)>,
    len: usize,
}

impl Outbox {
    pub fn push(&mut self, dst: SocketAddr, bytes: &[u8]) {
        if self.len == self.slots.len() {
            self.slots.push((dst, Vec::new()));
        }
        let slot = &mut self.slots[self.len];
        slot.0 = dst;
        slot.1.clear();
        slot.1.extend_from_slice(bytes);
        self.len += 1;
    }

    pub fn push_owned(&mut self, dst: SocketAddr, bytes: Vec<u8>) {
        if self.len == self.slots.len() {
            self.slots.push((dst, bytes));
        } else {
            self.slots[self.len] = (dst, bytes);
        }
        self.len += 1;
    }

    /// Sends each datagram with its own `sendto` on a socket that is not in
    /// any reactor (the timer/admin thread's few handshake and control
    /// datagrams). The socket is non-blocking: a full send buffer drops the
    /// datagram, which handshakes and probes recover from.
    pub fn send_direct(&mut self, sock: &std::net::UdpSocket) {
        for (dst, bytes) in &self.slots[..self.len] {
            if let Err(e) = sock.send_to(bytes, dst) {
                debug!("UDP send to {dst}: {e}");
            }
        }
        self.len = 0;
    }

    async fn send(&mut self, udp: &mut Udp) {
        for (dst, bytes) in &self.slots[..self.len] {
            udp.queue(*dst, bytes).await;
        }
        self.len = 0;
        udp.flush().await;
    }
}

/// A worker thread: its own current-thread runtime, so its TUN queue and
/// socket are polled on this thread only (no task migration between
/// threads, no work stealing on the packet path).
pub fn run(
    index: usize,
    shared: Arc<Shared>,
    tun: tun_rs::SyncDevice,
    sock: std::net::UdpSocket,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async move {
        let tun = tun_rs::AsyncDevice::new(tun).map_err(|e| format!("TUN queue: {e}"))?;
        let udp = UdpSocket::from_std(sock)
            .and_then(Udp::new)
            .map_err(|e| format!("UDP socket: {e}"))?;
        worker(index, shared, tun, udp).await;
        Ok(())
    })
}

/// IP packets for the TUN device, in reused buffers with the virtio
/// header's headroom in front.
struct ToTun {
    bufs: Vec<Vec<u8>>,
    used: usize,
}

impl ToTun {
    fn push(&mut self, packet: &[u8]) {
        if self.used == self.bufs.len() {
            self.bufs
                .push(Vec::with_capacity(TRANSPORT_HEADER_LEN + 65_535));
        }
        let out = &mut self.bufs[self.used];
        out.clear();
        out.resize(TRANSPORT_HEADER_LEN, 0);
        out.extend_from_slice(packet);
        self.used += 1;
    }
}

/// One packet worker: its own TUN queue and UDP socket. Per batch it takes
/// the lock once, runs the endpoint over every packet (sealing or opening
/// in place outside it), collects what to send, releases the lock, then
/// does the I/O.
async fn worker(index: usize, shared: Arc<Shared>, tun: tun_rs::AsyncDevice, mut udp: Udp) {
    // Buffers, allocated once. TUN reads land after the transport header's
    // headroom with room for the tag behind; UDP receives take a GRO batch.
    let mut tun_raw = vec![0u8; tun_rs::VIRTIO_NET_HDR_LEN + 65_535];
    let mut segments: Vec<Vec<u8>> = (0..tun_rs::IDEAL_BATCH_SIZE)
        .map(|_| vec![0u8; TRANSPORT_HEADER_LEN + 65_535 + TRANSPORT_OVERHEAD])
        .collect();
    let mut sizes = vec![0usize; tun_rs::IDEAL_BATCH_SIZE];
    let mut sealed: Vec<Option<SealPlan>> = (0..tun_rs::IDEAL_BATCH_SIZE).map(|_| None).collect();
    let mut opens: Vec<(usize, OpenPlan)> = Vec::with_capacity(64);
    let mut icmp: Vec<Vec<u8>> = Vec::new();
    let mut opened: Vec<Result<usize, SessionError>> = Vec::with_capacity(64);
    let mut udp_buf = vec![0u8; RECV_BATCH * RECV_SLOT];
    let mut metas = [RecvMeta::default(); RECV_BATCH];
    let mut datagrams: Vec<(Range<usize>, SocketAddr)> = Vec::with_capacity(RECV_BATCH * 64);
    let mut to_tun = ToTun {
        bufs: Vec::with_capacity(tun_rs::IDEAL_BATCH_SIZE),
        used: 0,
    };
    let mut gro = tun_rs::GROTable::default();
    let mut out = Outbox::default();
    loop {
        tokio::select! {
            r = tun.recv_multiple(&mut tun_raw, &mut segments, &mut sizes, TRANSPORT_HEADER_LEN) => {
                let n = match r {
                    Ok(n) => n,
                    Err(e) => { debug!("TUN read: {e}"); continue; }
                };
                {
                    let (now, unix) = (Instant::now(), unix_nanos());
                    let mut node = shared.lock();
                    node.worker_packets[index][0] += n as u64;
                    for i in 0..n {
                        sealed[i] = node.handle_tun_packet(now, unix, &mut segments[i], sizes[i], &mut icmp);
                    }
                    node.drain(&mut out);
                    node.wake_timer(&shared.timer);
                }
                // Sealing outside the lock: another worker's batch runs meanwhile.
                for i in 0..n {
                    if let Some(plan) = sealed[i].take() {
                        let (dst, len) = plan.seal(&mut segments[i]);
                        udp.queue(dst, &segments[i][..len]).await;
                    }
                }
                out.send(&mut udp).await;
                if !icmp.is_empty() {
                    if let Err(e) = tun.send_multiple(&mut gro, &mut icmp, TRANSPORT_HEADER_LEN).await {
                        debug!("TUN write (ICMP packet too big): {e}");
                    }
                    icmp.clear();
                }
            }
            r = udp.recv(&mut udp_buf, &mut metas) => {
                let got = match r {
                    Ok(n) => n,
                    Err(e) => { debug!("UDP receive error: {e}"); continue; }
                };
                // Every datagram of the batch, as (its range in udp_buf, source).
                datagrams.clear();
                for (m, meta) in metas[..got].iter().enumerate() {
                    let stride = meta.stride.max(1);
                    let base = m * RECV_SLOT;
                    let end = base + meta.len.min(RECV_SLOT);
                    let mut at = base;
                    while at < end {
                        datagrams.push((at..(at + stride).min(end), meta.addr));
                        at += stride;
                    }
                }
                to_tun.used = 0;
                let (now, unix) = (Instant::now(), unix_nanos());
                // Plan under the lock; transport packets are opened outside
                // it, then finished under it again.
                {
                    let mut node = shared.lock();
                    let node = &mut *node;
                    node.worker_packets[index][1] += datagrams.len() as u64;
                    for (i, (range, src)) in datagrams.iter().enumerate() {
                        let buf = &mut udp_buf[range.clone()];
                        match node.ep.prepare_datagram(now, unix, *src, buf) {
                            Incoming::Open(plan) => opens.push((i, plan)),
                            // If the handshake thread is gone, so is meshd.
                            Incoming::Respond(plan) => drop(shared.plans.send(plan)),
                            Incoming::Done(r) => node.deliver(now, r, buf, *src, &mut out, &mut to_tun),
                        }
                    }
                    if opens.is_empty() {
                        node.drain(&mut out);
                        node.wake_timer(&shared.timer);
                    }
                }
                if !opens.is_empty() {
                    for (i, plan) in &opens {
                        opened.push(plan.open(&mut udp_buf[datagrams[*i].0.clone()]));
                    }
                    let mut node = shared.lock();
                    let node = &mut *node;
                    for ((i, plan), result) in opens.drain(..).zip(opened.drain(..)) {
                        let (range, src) = &datagrams[i];
                        let buf = &mut udp_buf[range.clone()];
                        let got = node.ep.finish_datagram(now, unix, plan, buf, result);
                        node.deliver(now, got, buf, *src, &mut out, &mut to_tun);
                    }
                    node.drain(&mut out);
                    node.wake_timer(&shared.timer);
                }
                if to_tun.used > 0 {
                    let used = to_tun.used;
                    if let Err(e) = tun.send_multiple(&mut gro, &mut to_tun.bufs[..used], TRANSPORT_HEADER_LEN).await {
                        debug!("TUN write: {e}");
                    }
                }
                out.send(&mut udp).await;
            }
        }
    }
}

impl Node {
    /// One packet read from the TUN device, at `buf[TRANSPORT_HEADER_LEN..][..n]`:
    /// routed and prepared for sealing (the caller seals it after releasing
    /// the lock). `now` and `unix` are read once per batch by the caller.
    fn handle_tun_packet(
        &mut self,
        now: Instant,
        unix: u64,
        buf: &mut [u8],
        n: usize,
        icmp: &mut Vec<Vec<u8>>,
    ) -> Option<SealPlan> {
        let packet = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + n];
        let dst = ip::destination(packet)?;
        if ip::is_local_scope(dst) {
            self.local_scope += 1;
            return None;
        }
        let Some(peer) = self.ep.peer_for_address(now, dst) else {
            self.no_route += 1;
            return None;
        };
        // Room for the tag, and for a relay header should the peer be
        // reached through a relay.
        let room = (n + TRANSPORT_OVERHEAD + RELAY_HEADER_LEN).min(buf.len());
        match self.ep.prepare_send(now, unix, peer, &mut buf[..room], n) {
            Prepared::Seal(plan) => Some(plan),
            Prepared::Done(SendOutcome::TooBig { mtu }) => {
                // Tell the sender, as a router would (written to the TUN
                // device after the lock is released).
                let packet = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + n];
                if let Some(e) = ip::too_big(packet, mtu) {
                    let mut b = vec![0u8; TRANSPORT_HEADER_LEN];
                    b.extend_from_slice(&e);
                    icmp.push(b);
                }
                None
            }
            Prepared::Done(_) => None,
        }
    }

    /// What the endpoint made of one received datagram (opened in place in
    /// `buf`): an IP packet for the TUN device is copied into `to_tun`
    /// (unless it answers a `meshctl ping`), a relayed datagram goes to
    /// `out`.
    fn deliver(
        &mut self,
        now: Instant,
        r: Received,
        buf: &[u8],
        src: SocketAddr,
        out: &mut Outbox,
        to_tun: &mut ToTun,
    ) {
        match r {
            Received::Data { len, peer } => {
                let packet = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len];
                if self.pinger.waiting() {
                    if let Some(seq) = ip::echo_reply_seq(packet, self.pinger.ident) {
                        if let Some(rtt) = self.pinger.complete(seq, now) {
                            self.last_rtt.insert(peer, rtt.as_secs_f64() * 1e3);
                            return;
                        }
                    }
                }
                to_tun.push(packet);
            }
            Received::Forward { dst, len } => out.push(dst, &buf[..len]),
            Received::Dropped(reason) => debug!(%src, %reason, "dropped datagram"),
            Received::Keepalive { .. } | Received::Handshake | Received::Control { .. } => {}
        }
    }
}
