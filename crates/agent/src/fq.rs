//! Flow-fair queueing with CoDel for the packets a worker reads from the TUN
//! device (FQ-CoDel, RFC 8290), so that a small packet of one flow does not
//! wait behind another flow's bulk.
//!
//! ```text
//! TUN ─ read until empty ─► hash(5-tuple) ─► one of BUCKETS flow queues
//!   dequeue: new flows first (sparse flows: a ping, an RPC), then old flows
//!   round-robin by a byte deficit; CoDel drops from a flow whose packets
//!   stayed longer than TARGET for an INTERVAL
//! ```
//!
//! The kernel's TUN queue drops nothing by itself and holds whole 64 KB
//! TCP super-packets, so a TCP sender's window piled up there in front of
//! every other flow (milliseconds under one stream). The worker reads the
//! device until it is empty and keeps the queue here instead, where it is
//! per flow and bounded in time. Pure bookkeeping: time comes in as an
//! argument; buffers are recycled, so a warm queue allocates nothing.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// Flow queues (as fq_codel's default): flows hash into these; two flows
/// sharing one share its fairness, nothing else.
pub const BUCKETS: usize = 1024;

/// CoDel's target: the standing delay a flow may keep (fq_codel's default).
pub const TARGET: Duration = Duration::from_millis(5);

/// CoDel's interval: how long a flow's delay may stay above the target
/// before the first drop (fq_codel's default; about a worst-case RTT).
pub const INTERVAL: Duration = Duration::from_millis(100);

/// Most packets held, over all flows; beyond it the longest flow loses its
/// oldest packet.
pub const LIMIT_PACKETS: usize = 4096;

/// Bytes a flow may send per round before the next flow's turn.
const QUANTUM: i32 = 1514;

struct Packet {
    buf: Vec<u8>,
    len: usize,
    at: Instant,
}

/// RFC 8289's per-queue state.
#[derive(Default)]
struct Codel {
    first_above: Option<Instant>,
    drop_next: Option<Instant>,
    count: u32,
    last_count: u32,
    dropping: bool,
}

#[derive(Default)]
struct Flow {
    q: VecDeque<Packet>,
    bytes: usize,
    deficit: i32,
    /// In `new` or `old`.
    listed: bool,
    codel: Codel,
}

/// What the queue dropped, by cause, since the last [`FlowQueues::take_drops`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    /// CoDel: a flow's delay stayed above the target.
    pub codel: u64,
    /// The queue was full.
    pub overflow: u64,
}

pub struct FlowQueues {
    flows: Vec<Flow>,
    new: VecDeque<usize>,
    old: VecDeque<usize>,
    pool: Vec<Vec<u8>>,
    buf_size: usize,
    packets: usize,
    /// The flow hash's random key.
    key: u64,
    drops: Drops,
}

impl FlowQueues {
    /// Buffers of `buf_size` bytes: room for one packet and its headroom.
    pub fn new(buf_size: usize) -> Self {
        Self {
            flows: (0..BUCKETS).map(|_| Flow::default()).collect(),
            new: VecDeque::new(),
            old: VecDeque::new(),
            pool: Vec::new(),
            buf_size,
            packets: 0,
            key: std::collections::hash_map::RandomState::new().hash_one(0u64),
            drops: Drops::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.packets == 0
    }

    /// Whether a sparse flow has a packet: a flow that was empty and holds
    /// at most a quantum (a ping, a request, an ACK), not a bulk flow that
    /// just came back with a burst. Such a packet can go out ahead of a
    /// turn; DRR would serve it first anyway.
    pub fn has_sparse(&self) -> bool {
        (self.new.iter().take(8)).any(|&i| self.flows[i].bytes <= QUANTUM as usize)
    }

    /// The next packet of a sparse flow (see [`Self::has_sparse`]).
    pub fn dequeue_sparse(&mut self) -> Option<(Vec<u8>, usize)> {
        let at =
            (self.new.iter().take(8)).position(|&i| self.flows[i].bytes <= QUANTUM as usize)?;
        let i = self.new[at];
        let p = self.pop(i)?;
        let f = &mut self.flows[i];
        f.deficit -= p.len as i32;
        if f.q.is_empty() {
            f.listed = false;
            self.new.remove(at);
        }
        Some((p.buf, p.len))
    }

    pub fn len(&self) -> usize {
        self.packets
    }

    /// A free buffer of the queue's size (recycled, or new).
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.pool.pop().unwrap_or_default();
        b.resize(self.buf_size, 0);
        b
    }

    /// A free buffer of any length (its capacity is the queue's), for a
    /// caller that writes the packet in itself.
    pub fn spare(&mut self) -> Vec<u8> {
        self.pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.buf_size))
    }

    /// Returns a buffer taken by [`Self::dequeue`] or [`Self::buffer`].
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < LIMIT_PACKETS {
            self.pool.push(buf);
        }
    }

    pub fn take_drops(&mut self) -> Drops {
        std::mem::take(&mut self.drops)
    }

    /// Queues the IP packet at `buf[offset..offset + len]`, read at `now`.
    pub fn enqueue(&mut self, now: Instant, buf: Vec<u8>, offset: usize, len: usize) {
        let packet = buf.get(offset..offset + len).unwrap_or(&[]);
        let i = self.bucket(packet);
        let f = &mut self.flows[i];
        f.q.push_back(Packet { buf, len, at: now });
        f.bytes += len;
        if !f.listed {
            f.listed = true;
            f.deficit = QUANTUM;
            self.new.push_back(i);
        }
        self.packets += 1;
        if self.packets > LIMIT_PACKETS {
            // The longest flow pays (fq_codel): a sparse flow's packet is
            // never the one lost to a bulk flow's backlog.
            if let Some(fat) = (0..BUCKETS).max_by_key(|&j| self.flows[j].bytes) {
                if let Some(p) = self.flows[fat].q.pop_front() {
                    self.flows[fat].bytes -= p.len;
                    self.packets -= 1;
                    self.drops.overflow += 1;
                    self.recycle(p.buf);
                }
            }
        }
    }

    /// The next packet to send, as (buffer, length); the packet is at the
    /// `offset` it was queued with. The buffer goes back by [`Self::recycle`].
    pub fn dequeue(&mut self, now: Instant) -> Option<(Vec<u8>, usize)> {
        loop {
            let (i, from_new) = match self.new.front() {
                Some(&i) => (i, true),
                None => (*self.old.front()?, false),
            };
            let f = &mut self.flows[i];
            if f.deficit <= 0 {
                f.deficit += QUANTUM;
                self.rotate(from_new);
                continue;
            }
            match self.codel_dequeue(i, now) {
                Some(p) => {
                    let f = &mut self.flows[i];
                    f.deficit -= p.len as i32;
                    return Some((p.buf, p.len));
                }
                None => {
                    // Empty: a new flow goes behind the old ones once (so
                    // that it cannot stay "new" by sending in bursts), an
                    // old flow leaves the rotation.
                    if from_new && !self.old.is_empty() {
                        self.rotate(true);
                    } else {
                        if from_new {
                            self.new.pop_front();
                        } else {
                            self.old.pop_front();
                        }
                        self.flows[i].listed = false;
                    }
                }
            }
        }
    }

    /// Moves the flow at the front of `new` (or `old`) to the back of `old`.
    fn rotate(&mut self, from_new: bool) {
        let i = if from_new {
            self.new.pop_front()
        } else {
            self.old.pop_front()
        };
        if let Some(i) = i {
            self.old.push_back(i);
        }
    }

    fn pop(&mut self, i: usize) -> Option<Packet> {
        let f = &mut self.flows[i];
        let p = f.q.pop_front()?;
        f.bytes -= p.len;
        self.packets -= 1;
        Some(p)
    }

    /// RFC 8289's dequeue for flow `i`: the head packet, or none when the
    /// flow is empty; packets CoDel drops are recycled and counted.
    fn codel_dequeue(&mut self, i: usize, now: Instant) -> Option<Packet> {
        let mut p = self.pop(i)?;
        let ok = self.ok_to_drop(i, &p, now);
        if self.flows[i].codel.dropping {
            if !ok {
                self.flows[i].codel.dropping = false;
            }
            while self.flows[i].codel.dropping
                && self.flows[i].codel.drop_next.is_some_and(|t| now >= t)
            {
                self.drops.codel += 1;
                self.flows[i].codel.count += 1;
                self.recycle(p.buf);
                p = self.pop(i)?;
                let ok = self.ok_to_drop(i, &p, now);
                let c = &mut self.flows[i].codel;
                if ok {
                    c.drop_next = c.drop_next.map(|t| control_law(t, c.count));
                } else {
                    c.dropping = false;
                }
            }
        } else if ok {
            self.drops.codel += 1;
            self.recycle(p.buf);
            p = self.pop(i)?;
            let _ = self.ok_to_drop(i, &p, now);
            let c = &mut self.flows[i].codel;
            c.dropping = true;
            // Start near the drop rate that controlled the queue last time.
            let delta = c.count.saturating_sub(c.last_count);
            let recent = c
                .drop_next
                .is_some_and(|t| now.saturating_duration_since(t) < INTERVAL * 16);
            c.count = if delta > 1 && recent { delta } else { 1 };
            c.drop_next = Some(control_law(now, c.count));
            c.last_count = c.count;
        }
        Some(p)
    }

    /// Whether `p`'s sojourn has been above the target for an interval.
    fn ok_to_drop(&mut self, i: usize, p: &Packet, now: Instant) -> bool {
        let f = &mut self.flows[i];
        let sojourn = now.saturating_duration_since(p.at);
        // A flow with at most one packet behind this one has no queue to
        // drain (RFC 8289's MTU check).
        if sojourn < TARGET || f.bytes <= QUANTUM as usize {
            f.codel.first_above = None;
            return false;
        }
        match f.codel.first_above {
            None => {
                f.codel.first_above = Some(now + INTERVAL);
                false
            }
            Some(t) => now >= t,
        }
    }

    /// The flow queue of an IP packet: its addresses, protocol and ports
    /// (IPv4 fragments after the first and unknown protocols by addresses
    /// and protocol), under a per-queue random key.
    fn bucket(&self, p: &[u8]) -> usize {
        let mut h = FlowHasher(self.key);
        match p.first().map(|b| b >> 4) {
            Some(4) if p.len() >= 20 => {
                let ihl = usize::from(p[0] & 0x0f) * 4;
                let proto = p[9];
                h.write(&p[12..20]);
                h.write_u8(proto);
                let first_fragment = u16::from_be_bytes([p[6], p[7]]) & 0x1fff == 0;
                if first_fragment && has_ports(proto) {
                    if let Some(ports) = p.get(ihl..ihl + 4) {
                        h.write(ports);
                    }
                }
            }
            Some(6) if p.len() >= 40 => {
                let next = p[6];
                h.write(&p[8..40]);
                h.write_u8(next);
                // The flow label, where the sender sets one.
                h.write(&[p[1] & 0x0f, p[2], p[3]]);
                if has_ports(next) {
                    if let Some(ports) = p.get(40..44) {
                        h.write(ports);
                    }
                }
            }
            _ => {}
        }
        (h.finish() as usize) % BUCKETS
    }
}

/// A keyed multiply-rotate hash over the flow's header fields (FxHash's
/// round with a random starting state and splitmix64's finalizer): a few
/// nanoseconds a packet where SipHash took tens. Colliding flows only
/// share a queue's fairness, so a keyed fast hash is enough.
struct FlowHasher(u64);

impl Hasher for FlowHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.round(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.round(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 56));
        }
    }

    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl FlowHasher {
    fn round(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132 | 136)
}

/// CoDel's control law: the next drop `interval / sqrt(count)` after `t`.
fn control_law(t: Instant, count: u32) -> Instant {
    t + INTERVAL.div_f64(f64::from(count.max(1)).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFF: usize = 4;

    fn udp(src_port: u16, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; OFF + len.max(28)];
        let ip = &mut p[OFF..];
        ip[0] = 0x45;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[100, 64, 0, 1]);
        ip[16..20].copy_from_slice(&[100, 64, 0, 2]);
        ip[20..22].copy_from_slice(&src_port.to_be_bytes());
        ip[22..24].copy_from_slice(&7000u16.to_be_bytes());
        p
    }

    fn port(buf: &[u8]) -> u16 {
        u16::from_be_bytes([buf[OFF + 20], buf[OFF + 21]])
    }

    #[test]
    fn a_sparse_flow_goes_before_a_bulk_backlog() {
        let mut q = FlowQueues::new(2048);
        let t = Instant::now();
        for _ in 0..500 {
            q.enqueue(t, udp(1, 1400), OFF, 1400);
        }
        // The bulk flow has been served for a while: it is an old flow.
        for _ in 0..10 {
            let (b, _) = q.dequeue(t).unwrap();
            assert_eq!(port(&b), 1);
            q.recycle(b);
        }
        q.enqueue(t, udp(2, 64), OFF, 64);
        let (b, len) = q.dequeue(t).unwrap();
        assert_eq!(
            (port(&b), len),
            (2, 64),
            "the ping waits behind no bulk packet"
        );
        assert_eq!(q.len(), 490);
    }

    #[test]
    fn only_sparse_flows_go_ahead_of_a_turn() {
        let mut q = FlowQueues::new(2048);
        let t = Instant::now();
        for _ in 0..20 {
            q.enqueue(t, udp(1, 1400), OFF, 1400);
        }
        assert!(q.dequeue_sparse().is_none(), "a burst is not sparse");
        q.enqueue(t, udp(2, 64), OFF, 64);
        let (b, len) = q.dequeue_sparse().unwrap();
        assert_eq!((port(&b), len), (2, 64));
        assert!(q.dequeue_sparse().is_none());
        assert_eq!(q.len(), 20);
        // The sparse flow left the rotation: DRR goes on with the bulk.
        assert_eq!(port(&q.dequeue(t).unwrap().0), 1);
    }

    #[test]
    fn two_bulk_flows_share_by_bytes() {
        let mut q = FlowQueues::new(2048);
        let t = Instant::now();
        for _ in 0..300 {
            q.enqueue(t, udp(1, 1400), OFF, 1400);
            q.enqueue(t, udp(2, 700), OFF, 700);
            q.enqueue(t, udp(2, 700), OFF, 700);
        }
        let mut bytes = [0usize; 3];
        for _ in 0..300 {
            let (b, len) = q.dequeue(t).unwrap();
            bytes[port(&b) as usize] += len;
            q.recycle(b);
        }
        let (a, b) = (bytes[1] as f64, bytes[2] as f64);
        assert!((a / b - 1.0).abs() < 0.1, "bytes per flow {a} vs {b}");
    }

    #[test]
    fn codel_drops_a_standing_queue_and_only_after_an_interval() {
        let mut q = FlowQueues::new(2048);
        let t0 = Instant::now();
        for _ in 0..2000 {
            q.enqueue(t0, udp(1, 1400), OFF, 1400);
        }
        // Within the first interval above target: nothing dropped.
        let t = t0 + TARGET * 2;
        for _ in 0..100 {
            let (b, _) = q.dequeue(t).unwrap();
            q.recycle(b);
        }
        assert_eq!(q.take_drops(), Drops::default());
        // Still 10 ms old a whole interval later: CoDel drops, and faster
        // as the queue stays.
        let mut dropped = 0;
        for k in 1..=20u32 {
            let t = t0 + INTERVAL * k + TARGET * 2;
            let (b, _) = q.dequeue(t).unwrap();
            q.recycle(b);
            dropped += q.take_drops().codel;
        }
        assert!(dropped >= 5, "dropped {dropped}");
        let left = q.len();
        assert_eq!(left + dropped as usize + 120, 2000);
    }

    #[test]
    fn a_fresh_queue_is_never_dropped() {
        let mut q = FlowQueues::new(2048);
        let t0 = Instant::now();
        for k in 0..5000u32 {
            let t = t0 + Duration::from_micros(u64::from(k) * 100);
            q.enqueue(t, udp(1, 1400), OFF, 1400);
            let (b, _) = q.dequeue(t + Duration::from_micros(50)).unwrap();
            q.recycle(b);
        }
        assert_eq!(q.take_drops(), Drops::default());
        assert!(q.is_empty());
    }

    #[test]
    fn a_full_queue_drops_from_the_longest_flow() {
        let mut q = FlowQueues::new(2048);
        let t = Instant::now();
        for _ in 0..LIMIT_PACKETS {
            q.enqueue(t, udp(1, 1400), OFF, 1400);
        }
        q.enqueue(t, udp(2, 64), OFF, 64);
        assert_eq!(q.take_drops().overflow, 1);
        assert_eq!(q.len(), LIMIT_PACKETS);
        // Behind at most one quantum of the bulk flow.
        let first: Vec<u16> = (0..3).map(|_| port(&q.dequeue(t).unwrap().0)).collect();
        assert!(
            first.contains(&2),
            "the sparse packet survived the overflow: {first:?}"
        );
    }

    #[test]
    fn flows_spread_over_the_buckets() {
        let q = FlowQueues::new(2048);
        let mut used = std::collections::HashSet::new();
        for port in 0..2000u16 {
            used.insert(q.bucket(&udp(port, 64)[OFF..]));
        }
        // 2,000 flows into 1,024 buckets: about 1 - e^-2 of them used.
        assert!(used.len() > 800, "{} buckets used", used.len());
    }

    #[test]
    fn junk_and_short_packets_queue_without_panic() {
        let mut q = FlowQueues::new(64);
        let t = Instant::now();
        for len in 0..60 {
            let mut b = vec![0u8; 64];
            b[OFF] = if len % 2 == 0 { 0x45 } else { 0x60 };
            q.enqueue(t, b, OFF, len);
        }
        let mut n = 0;
        while let Some((b, _)) = q.dequeue(t) {
            q.recycle(b);
            n += 1;
        }
        assert_eq!(n, 60);
    }
}
