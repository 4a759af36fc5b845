//! The packet workers.
//!
//! ```text
//! TUN read until empty ──► flow queues (fq.rs: per flow, CoDel)
//!          ──► a batch, sparse flows first ──► route (overlay address → peer)
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
use std::time::{Duration, Instant};

use proto::endpoint::{Incoming, OpenPlan, Prepared, Received, SealPlan, SendOutcome};
use proto::session::SessionError;
use proto::wire::ip;
use proto::wire::{RELAY_HEADER_LEN, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};
use quinn_udp::RecvMeta;
use tokio::net::UdpSocket;
use tracing::debug;

use crate::fq::{Drops, FlowQueues};
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
    tun_mtu: usize,
    busy_poll: Duration,
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
        worker(index, shared, tun, udp, tun_mtu, busy_poll).await;
        Ok(())
    })
}

/// IP packets for the TUN device, each in a buffer with the virtio
/// header's headroom in front, taken from the receive side's flow queues'
/// pool and queued there once the lock is released.
struct ToTun {
    bufs: Vec<Vec<u8>>,
    used: usize,
}

impl ToTun {
    fn push(&mut self, packet: &[u8]) {
        if self.used == self.bufs.len() {
            self.bufs.push(Vec::new());
        }
        let out = &mut self.bufs[self.used];
        out.clear();
        out.resize(TRANSPORT_HEADER_LEN, 0);
        out.extend_from_slice(packet);
        self.used += 1;
    }
}

/// Packets sent per turn of the TUN side (two GSO sends); a packet
/// of a sparse flow waits behind at most this many.
const TUN_TURN: usize = 128;

/// TUN reads per turn (each up to one 64 KB super-packet): enough to empty
/// the device's queue at line rate between two turns.
const TUN_READS: usize = 8;

/// Receive batches (`recvmmsg`) per turn of the UDP side: enough to empty
/// the socket at line rate between two turns.
const UDP_READS: usize = 8;

/// Packets written to the TUN device per turn (one GRO-coalesced write
/// batch).
const TO_TUN_TURN: usize = tun_rs::IDEAL_BATCH_SIZE;

/// One packet worker: its own TUN queue and UDP socket, and a pair of flow
/// queues (`fq.rs`), one per direction, where packets wait instead of in
/// the kernel's FIFOs. Each turn empties one side's kernel queue into its
/// flow queue (bounded), runs the endpoint over what it read under the
/// lock once (sealing and opening outside it), and sends a batch taken
/// fairly from the flow queue: sparse flows first, bulk flows by bytes.
async fn worker(
    index: usize,
    shared: Arc<Shared>,
    tun: tun_rs::AsyncDevice,
    mut udp: Udp,
    tun_mtu: usize,
    busy_poll: Duration,
) {
    // Buffers, allocated once. TUN reads land after the transport header's
    // headroom with room for the tag (and a relay header) behind; UDP
    // receives take a GRO batch.
    let mut tun_raw = vec![0u8; tun_rs::VIRTIO_NET_HDR_LEN + 65_535];
    let buf_size = TRANSPORT_HEADER_LEN + tun_mtu.max(1500) + TRANSPORT_OVERHEAD + RELAY_HEADER_LEN;
    let mut fq = FlowQueues::new(buf_size);
    let mut fq_in = FlowQueues::new(buf_size);
    let mut segments: Vec<Vec<u8>> = (0..tun_rs::IDEAL_BATCH_SIZE).map(|_| fq.buffer()).collect();
    let mut sizes = vec![0usize; tun_rs::IDEAL_BATCH_SIZE];
    let mut batch: Vec<(Vec<u8>, usize)> = Vec::with_capacity(TUN_TURN);
    let mut writes: Vec<Vec<u8>> = Vec::with_capacity(TO_TUN_TURN);
    let mut sealed: Vec<Option<SealPlan>> = (0..TUN_TURN).map(|_| None).collect();
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
        if !busy_poll.is_zero() && fq.is_empty() && fq_in.is_empty() {
            spin_until_readable(&tun, &udp, busy_poll);
        }
        let turn = tokio::select! {
            r = tun.readable(), if fq.is_empty() => {
                if let Err(e) = r {
                    debug!("TUN: {e}");
                }
                Turn::Tun
            }
            // Packets queued: that side's turn again (the other side's, if
            // it has work, comes by the select's random order).
            _ = std::future::ready(()), if !fq.is_empty() => Turn::Tun,
            _ = std::future::ready(()), if !fq_in.is_empty() => Turn::ToTun,
            r = udp.recv(&mut udp_buf, &mut metas) => match r {
                Ok(n) => Turn::Udp(n),
                Err(e) => { debug!("UDP receive error: {e}"); continue; }
            },
        };
        match turn {
            Turn::Tun => {
                // Read the device until it is empty (bounded), into the queues.
                let now = Instant::now();
                for _ in 0..TUN_READS {
                    match tun.try_recv_multiple(
                        &mut tun_raw,
                        &mut segments,
                        &mut sizes,
                        TRANSPORT_HEADER_LEN,
                    ) {
                        Ok(n) => {
                            for (seg, &len) in segments.iter_mut().zip(&sizes).take(n) {
                                let buf = std::mem::replace(seg, fq.buffer());
                                fq.enqueue(now, buf, TRANSPORT_HEADER_LEN, len);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => debug!("TUN read: {e}"),
                    }
                }
                // One batch, fairly across flows.
                while batch.len() < TUN_TURN {
                    match fq.dequeue(now) {
                        Some(p) => batch.push(p),
                        None => break,
                    }
                }
                let drops = fq.take_drops();
                if !batch.is_empty() || drops != Drops::default() {
                    let unix = unix_nanos();
                    let mut node = shared.lock();
                    node.worker_packets[index][0] += batch.len() as u64;
                    node.queue_drops[0] += drops.codel;
                    node.queue_drops[1] += drops.overflow;
                    for (i, (buf, len)) in batch.iter_mut().enumerate() {
                        sealed[i] = node.handle_tun_packet(now, unix, buf, *len, &mut icmp);
                    }
                    node.drain(&mut out);
                    node.wake_timer(&shared.timer);
                }
                // Sealing outside the lock: another worker's batch runs meanwhile.
                for (i, (buf, _)) in batch.iter_mut().enumerate() {
                    if let Some(plan) = sealed[i].take() {
                        let (dst, len) = plan.seal(buf);
                        udp.queue(dst, &buf[..len]).await;
                    }
                }
                for (buf, _) in batch.drain(..) {
                    fq.recycle(buf);
                }
                out.send(&mut udp).await;
                if !icmp.is_empty() {
                    if let Err(e) = tun
                        .send_multiple(&mut gro, &mut icmp, TRANSPORT_HEADER_LEN)
                        .await
                    {
                        debug!("TUN write (ICMP packet too big): {e}");
                    }
                    icmp.clear();
                }
            }
            Turn::Udp(first) => {
                let mut got = first;
                for round in 1..=UDP_READS {
                    let now = Instant::now();
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
                    received(
                        index,
                        &shared,
                        now,
                        &datagrams,
                        &mut udp_buf,
                        &mut opens,
                        &mut opened,
                        &mut out,
                        &mut to_tun,
                    );
                    for b in &mut to_tun.bufs[..to_tun.used] {
                        let buf = std::mem::replace(b, fq_in.spare());
                        let len = buf.len() - TRANSPORT_HEADER_LEN;
                        fq_in.enqueue(now, buf, TRANSPORT_HEADER_LEN, len);
                    }
                    out.send(&mut udp).await;
                    // A sparse flow's packet (a ping, an RPC) goes to the
                    // device now, not after the bulk behind it; a full
                    // batch goes too, so that reading stays in step with
                    // writing.
                    if fq_in.len() >= TO_TUN_TURN {
                        write_to_tun(&tun, &mut gro, &mut fq_in, &mut writes, false).await;
                    } else if fq_in.has_sparse() {
                        write_to_tun(&tun, &mut gro, &mut fq_in, &mut writes, true).await;
                    }
                    if round == UDP_READS {
                        break;
                    }
                    got = match udp.try_recv(&mut udp_buf, &mut metas) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            debug!("UDP receive error: {e}");
                            break;
                        }
                    };
                }
            }
            Turn::ToTun => {
                write_to_tun(&tun, &mut gro, &mut fq_in, &mut writes, false).await;
                let drops = fq_in.take_drops();
                if drops != Drops::default() {
                    let mut node = shared.lock();
                    node.queue_drops[0] += drops.codel;
                    node.queue_drops[1] += drops.overflow;
                }
            }
        }
        if !fq.is_empty() || !fq_in.is_empty() {
            // Let the runtime poll for readiness before the next turn.
            tokio::task::yield_now().await;
        }
    }
}

/// Writes a batch from the incoming flow queues to the TUN device (only
/// packets of sparse flows with `sparse`), copied into `writes`, whose room
/// lets the GRO table coalesce a flow's segments into one write (what
/// CoDel drops meanwhile is counted by the caller's `take_drops`).
async fn write_to_tun(
    tun: &tun_rs::AsyncDevice,
    gro: &mut tun_rs::GROTable,
    fq_in: &mut FlowQueues,
    writes: &mut Vec<Vec<u8>>,
    sparse: bool,
) {
    let now = Instant::now();
    let mut n = 0;
    while n < TO_TUN_TURN {
        let next = if sparse {
            fq_in.dequeue_sparse()
        } else {
            fq_in.dequeue(now)
        };
        let Some((buf, len)) = next else {
            break;
        };
        if n == writes.len() {
            writes.push(Vec::with_capacity(2 * TRANSPORT_HEADER_LEN + 65_535));
        }
        let w = &mut writes[n];
        w.clear();
        w.extend_from_slice(&buf[..TRANSPORT_HEADER_LEN + len]);
        fq_in.recycle(buf);
        n += 1;
    }
    if n > 0 {
        if let Err(e) = tun
            .send_multiple(gro, &mut writes[..n], TRANSPORT_HEADER_LEN)
            .await
        {
            debug!("TUN write: {e}");
        }
    }
}

/// Busy polling (`tun.busy-poll-us`): before the worker sleeps, it asks
/// the kernel (`poll` with no timeout) whether its TUN queue or socket has
/// a packet, for up to `spin`, so that a packet arriving meanwhile (the
/// reply to one just sent) is taken by a running thread on a running CPU
/// instead of waking both from idle. It reads nothing: the runtime's next
/// poll finds the descriptor ready.
fn spin_until_readable(tun: &tun_rs::AsyncDevice, udp: &Udp, spin: Duration) {
    use rustix::event::{poll, PollFd, PollFlags};
    let until = Instant::now() + spin;
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    while Instant::now() < until {
        let mut fds = [
            PollFd::new(&**tun, PollFlags::IN),
            PollFd::new(&udp.sock, PollFlags::IN),
        ];
        if poll(&mut fds, Some(&zero)).unwrap_or(0) > 0 {
            return;
        }
        std::hint::spin_loop();
    }
}

/// Whose turn it is in a worker's loop.
enum Turn {
    /// The TUN device has packets, or the outgoing flow queues do.
    Tun,
    /// A receive batch of this many datagrams (or GRO batches) is in.
    Udp(usize),
    /// The incoming flow queues have packets for the TUN device.
    ToTun,
}

/// One receive batch through the endpoint: planned under the lock,
/// transport packets opened outside it, then finished under it again.
/// Packets for the TUN device go to `to_tun`, datagrams to send to `out`.
#[allow(clippy::too_many_arguments)]
fn received(
    index: usize,
    shared: &Shared,
    now: Instant,
    datagrams: &[(Range<usize>, SocketAddr)],
    udp_buf: &mut [u8],
    opens: &mut Vec<(usize, OpenPlan)>,
    opened: &mut Vec<Result<usize, SessionError>>,
    out: &mut Outbox,
    to_tun: &mut ToTun,
) {
    let unix = unix_nanos();
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
                Incoming::Done(r) => node.deliver(now, r, buf, *src, out, to_tun),
            }
        }
        if opens.is_empty() {
            node.drain(out);
            node.wake_timer(&shared.timer);
            return;
        }
    }
    for (i, plan) in opens.iter() {
        opened.push(plan.open(&mut udp_buf[datagrams[*i].0.clone()]));
    }
    let mut node = shared.lock();
    let node = &mut *node;
    for ((i, plan), result) in opens.drain(..).zip(opened.drain(..)) {
        let (range, src) = &datagrams[i];
        let buf = &mut udp_buf[range.clone()];
        let got = node.ep.finish_datagram(now, unix, plan, buf, result);
        node.deliver(now, got, buf, *src, out, to_tun);
    }
    node.drain(out);
    node.wake_timer(&shared.timer);
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
