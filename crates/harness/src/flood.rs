//! `mesh-harness flood`: the floods of the attack campaign, paced and
//! bounded, at a meshd UDP port (or, as the control, at a closed port):
//!
//! - `initiations`: handshake initiations with a valid mac1 (it needs only
//!   the target's public key) and random content, so each has a fresh
//!   ephemeral and a fresh sender index: every one that passes the limits
//!   costs the target reassembly and an X25519 before it fails.
//! - `replay`: one genuine initiation (a CA-signed identity's), replayed.
//! - `junk-index`: transport packets for a session the target has (its
//!   receiver index, as an on-path observer reads it off the wire) with
//!   random counters and contents: each costs a lookup and a failed AEAD.
//! - `junk`: random bytes, truncated headers, transport packets for
//!   indices that do not exist, handshake fragments with garbage MACs.
//!
//! With `control` and `phase`, the flood alternates between a control
//! target (a closed port: what the flood costs the host's kernel) and the
//! real one, `phase` each, control first, and prints `phase unix_ms=T
//! target=control|flood` as each begins: a throughput series taken meanwhile
//! compares the two with the host's drift cancelled out.
//!
//! With `from`, datagrams carry that source address (a raw socket writes
//! the IP header: root), as junk spoofed from a peer's address would; with
//! `spread` as well, they cycle through that many consecutive addresses
//! from it (a flood from many sources).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crypto::{files, RealCrypto};
use proto::armor::LABEL_NODE_KEY;
use proto::cookie::mac1_key;
use proto::fragment::fragment;
use proto::handshake::{self as hs, Identity};
use proto::wire::{MessageKind, TransportHeader};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// What to send.
#[derive(Clone, Debug)]
pub enum Kind {
    /// Fresh initiations with a valid mac1 for the target's key.
    Initiations,
    /// One genuine initiation of the identity in these files, replayed.
    Replay { cert: String, key: String },
    /// Transport packets for the receiver index given.
    JunkIndex(u32),
    /// Malformed datagrams.
    Junk,
}

/// A flood: what, where, how fast, how long.
pub struct Flood<'a> {
    pub kind: Kind,
    pub to: SocketAddr,
    /// The target's certificate (for its public key).
    pub target_cert: &'a Path,
    /// Spoofed source address.
    pub from: Option<SocketAddrV4>,
    /// Spoofed source addresses used in turn, from `from` on.
    pub spread: u32,
    /// Datagrams per second (paced in 1 ms steps).
    pub rate: u32,
    pub duration: Duration,
    pub seed: u64,
    /// Alternate with this target, `phase` each (control first).
    pub control: Option<(SocketAddr, Duration)>,
}

/// Where datagrams go out.
enum Sender {
    Udp(std::net::UdpSocket),
    /// A raw IPv4 socket, the first source it writes into headers, how
    /// many addresses from there it cycles through, a buffer.
    Raw(Socket, SocketAddrV4, u32, Vec<u8>),
}

impl Sender {
    fn new(from: Option<SocketAddrV4>, spread: u32, to: SocketAddr) -> Result<Self, String> {
        match from {
            None => {
                let bind: SocketAddr = if to.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                std::net::UdpSocket::bind(bind)
                    .map(Self::Udp)
                    .map_err(|e| format!("bind: {e}"))
            }
            Some(src) => {
                if !to.is_ipv4() {
                    return Err("--from spoofs IPv4 only".into());
                }
                // IPPROTO_RAW implies IP_HDRINCL: we write the IP header.
                let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))
                    .map_err(|e| format!("raw socket (needs root): {e}"))?;
                Ok(Self::Raw(s, src, spread.max(1), Vec::with_capacity(2048)))
            }
        }
    }

    /// Sends one datagram of message number `message` (the fragments of a
    /// message share their spoofed source, as a real sender's would).
    fn send(&mut self, payload: &[u8], message: u64, to: SocketAddr) -> std::io::Result<()> {
        match self {
            Self::Udp(s) => s.send_to(payload, to).map(drop),
            Self::Raw(s, first, spread, buf) => {
                let IpAddr::V4(dst) = to.ip() else {
                    return Ok(());
                };
                let offset = (message % u64::from(*spread)) as u32;
                let ip = Ipv4Addr::from(u32::from(*first.ip()).wrapping_add(offset));
                let src = SocketAddrV4::new(ip, first.port());
                let total = 20 + 8 + payload.len();
                buf.clear();
                // IPv4: the kernel fills in the checksum and the id.
                buf.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0]);
                buf[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                buf.extend_from_slice(&src.ip().octets());
                buf.extend_from_slice(&dst.octets());
                // UDP without a checksum (allowed over IPv4).
                buf.extend_from_slice(&src.port().to_be_bytes());
                buf.extend_from_slice(&to.port().to_be_bytes());
                buf.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
                buf.extend_from_slice(&[0, 0]);
                buf.extend_from_slice(payload);
                s.send_to(buf, &SockAddr::from(to)).map(drop)
            }
        }
    }
}

/// Datagrams built before the flood starts and sent in turn, so the
/// flooder's pace is that of `sendto` alone (a debug build keeps it too).
const POOL: usize = 8192;

/// One datagram of the pool: whether it starts a message, and its bytes.
type Pooled = (bool, Vec<u8>);

/// Builds the flood's pool of datagrams.
fn pool(flood: &Flood<'_>) -> Result<Vec<Pooled>, String> {
    let c = RealCrypto;
    let target = files::read_certificate(flood.target_cert).map_err(|e| format!("--cert: {e}"))?;
    let key = mac1_key(&c, target.public_key());
    let mut rng = ChaCha20Rng::seed_from_u64(flood.seed);
    let messages = |fragments: Vec<Vec<u8>>| {
        fragments
            .into_iter()
            .enumerate()
            .map(|(i, d)| (i == 0, d))
            .collect::<Vec<_>>()
    };
    let mut pool = Vec::with_capacity(POOL + 8);
    match &flood.kind {
        Kind::Initiations => {
            let len = hs::message1_len(target.as_bytes().len());
            while pool.len() < POOL {
                let mut msg = vec![0u8; len];
                rng.fill_bytes(&mut msg);
                let sender = rng.next_u32();
                let fragments = fragment(&c, MessageKind::Initiation, sender, 0, &msg, &key, None);
                pool.extend(messages(fragments));
            }
        }
        Kind::Replay { cert, key: secret } => {
            let cert =
                files::read_certificate(Path::new(cert)).map_err(|e| format!("--identity: {e}"))?;
            let secret = files::read_private_key(Path::new(secret), LABEL_NODE_KEY)
                .map_err(|e| format!("--identity: {e}"))?;
            let identity = Identity::new(&c, cert, secret).map_err(|e| e.to_string())?;
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let (_, msg) = hs::initiate(
                &c,
                &identity,
                target.public_key(),
                None,
                rng.next_u32(),
                unix,
                &mut rng,
            )
            .map_err(|e| e.to_string())?;
            let sender = rng.next_u32();
            let fragments = fragment(&c, MessageKind::Initiation, sender, 0, &msg, &key, None);
            pool.extend(messages(fragments));
        }
        Kind::JunkIndex(index) => {
            while pool.len() < POOL {
                let mut d = vec![0u8; 1200];
                rng.fill_bytes(&mut d);
                TransportHeader {
                    receiver_index: *index,
                    counter: rng.next_u64() >> 8,
                }
                .write(&mut d);
                pool.push((true, d));
            }
        }
        Kind::Junk => {
            for n in 0..POOL {
                let len = match n % 4 {
                    0 => 1 + rng.next_u32() as usize % 1400,
                    1 => rng.next_u32() as usize % 16,
                    2 => 32 + rng.next_u32() as usize % 1168,
                    _ => 64 + rng.next_u32() as usize % 1100,
                };
                let mut d = vec![0u8; len];
                rng.fill_bytes(&mut d);
                match n % 4 {
                    // Transport header, unknown index.
                    2 => {
                        d[0] = 4;
                        d[1..4].fill(0);
                    }
                    // Initiation fragment 0 of 1, MACs garbage.
                    3 => d[..4].copy_from_slice(&[1, 0, 1, 0]),
                    _ => {}
                }
                pool.push((true, d));
            }
        }
    }
    Ok(pool)
}

/// What was sent.
pub struct Sent {
    pub datagrams: u64,
    pub elapsed: Duration,
}

/// Runs the flood (bounded: at most 200,000 datagrams/s for 120 s).
pub fn run(flood: &Flood<'_>) -> Result<Sent, String> {
    let pool = pool(flood)?;
    let mut out = Sender::new(flood.from, flood.spread, flood.to)?;
    let rate = u64::from(flood.rate.clamp(1, 200_000));
    let duration = flood.duration.min(Duration::from_secs(120));
    let start = Instant::now();
    let mut sent = 0u64;
    // Datagrams due so far: sent, or skipped when the sender fell behind.
    let mut paced = 0u64;
    let mut message = 0u64;
    let mut phase = None;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        let to = match flood.control {
            Some((control, each)) => {
                let n = elapsed.as_nanos() / each.as_nanos().max(1);
                if phase != Some(n) {
                    phase = Some(n);
                    let what = if n.is_multiple_of(2) {
                        "control"
                    } else {
                        "flood"
                    };
                    println!("phase unix_ms={} target={what}", crate::tcp::unix_ms());
                }
                if n.is_multiple_of(2) {
                    control
                } else {
                    flood.to
                }
            }
            None => flood.to,
        };
        // Catch up to the rate at this instant (at most 1 ms's worth more
        // than one step: a slow sender falls behind rather than overrun),
        // then sleep a millisecond.
        let due = rate * elapsed.as_micros() as u64 / 1_000_000;
        let step = (rate / 1000).max(1) * 4;
        let mut n = 0;
        while paced < due && n < step {
            let (first, d) = &pool[(sent % pool.len() as u64) as usize];
            if *first {
                message += 1;
            }
            // A full socket buffer is a lost datagram, as on a wire.
            let _ = out.send(d, message, to);
            sent += 1;
            paced += 1;
            n += 1;
        }
        // Behind: skip what cannot be sent rather than burst it later.
        paced = paced.max(due);
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(Sent {
        datagrams: sent,
        elapsed: start.elapsed(),
    })
}

/// A SYN flood through the overlay: TCP SYNs from `from` (this host's
/// overlay address) to `to`, each from a fresh source port, written by a
/// raw socket (root) so that they take the overlay route as a real
/// client's would; `count` of them at `rate` a second (bounded: at most
/// 1,000,000 at 100,000/s). Returns how many were sent.
pub fn syn_flood(from: Ipv4Addr, to: SocketAddrV4, count: u64, rate: u32) -> Result<u64, String> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))
        .map_err(|e| format!("raw socket (needs root): {e}"))?;
    let count = count.min(1_000_000);
    let rate = u64::from(rate.clamp(1, 100_000));
    let dst = SockAddr::from(SocketAddr::V4(to));
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(u32::from(from)));
    let start = Instant::now();
    let mut sent = 0u64;
    let mut pkt = [0u8; 40];
    while sent < count {
        let due = (rate * start.elapsed().as_micros() as u64 / 1_000_000).min(count);
        while sent < due {
            let sport = 1024 + (sent % 64_000) as u16;
            syn(&mut pkt, from, to, sport, rng.next_u32());
            // A full socket buffer is a lost SYN, as on a wire.
            if s.send_to(&pkt, &dst).is_ok() {
                sent += 1;
            } else {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(sent)
}

/// An IPv4 TCP SYN (no options) with valid checksums.
fn syn(pkt: &mut [u8; 40], from: Ipv4Addr, to: SocketAddrV4, sport: u16, seq: u32) {
    pkt.fill(0);
    pkt[..20].copy_from_slice(&[
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    pkt[12..16].copy_from_slice(&from.octets());
    pkt[16..20].copy_from_slice(&to.ip().octets());
    let ip_sum = checksum(&pkt[..20], 0);
    pkt[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let t = &mut pkt[20..];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&to.port().to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4; // data offset: 5 words
    t[13] = 0x02; // SYN
    t[14..16].copy_from_slice(&64_240u16.to_be_bytes());
    // Pseudo-header: source, destination, protocol, TCP length.
    let mut pseudo = 0u32;
    for w in from.octets().chunks(2).chain(to.ip().octets().chunks(2)) {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    pseudo += 6 + 20;
    let tcp_sum = checksum(&pkt[20..], pseudo);
    pkt[36..38].copy_from_slice(&tcp_sum.to_be_bytes());
}

/// The Internet checksum of `data`, starting from `sum`.
fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for w in data.chunks(2) {
        let hi = u32::from(w[0]) << 8;
        sum += hi | w.get(1).map_or(0, |&b| u32::from(b));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
