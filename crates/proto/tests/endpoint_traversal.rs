//! NAT traversal between real endpoints in virtual time: two stubs behind
//! NATs, two public relays, and a model of Linux's NAT (port-preserving,
//! endpoint-independent mapping; or `masquerade random`, a new port per
//! destination; both filtering by address and port, as conntrack does).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use proto::control::{Control, PUNCH_LEN};
use proto::endpoint::{DropReason, Endpoint, EndpointConfig, PeerId, SendOutcome, Traversal};
use proto::wire::{RELAY_HEADER_LEN, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};

/// A NAT: its public address, the mappings it made (inside address and
/// remote → public port) and the remotes each public port may hear from.
struct Nat {
    public: Ipv4Addr,
    per_destination: bool,
    map: HashMap<(SocketAddr, SocketAddr), u16>,
    allowed: HashMap<u16, (SocketAddr, Vec<SocketAddr>)>,
    next_port: u16,
}

impl Nat {
    fn new(public: Ipv4Addr, per_destination: bool) -> Self {
        Self {
            public,
            per_destination,
            map: HashMap::new(),
            allowed: HashMap::new(),
            next_port: 40_000,
        }
    }

    /// The public source of a datagram from `inside` to `remote`.
    fn out(&mut self, inside: SocketAddr, remote: SocketAddr) -> SocketAddr {
        let existing = if self.per_destination {
            self.map.get(&(inside, remote)).copied()
        } else {
            // Endpoint-independent: one port per inside address, its own
            // when free (as Linux keeps the source port).
            self.allowed
                .iter()
                .find(|(_, (i, _))| *i == inside)
                .map(|(p, _)| *p)
        };
        let port = existing.unwrap_or_else(|| {
            let p = if self.per_destination {
                self.next_port += 7;
                self.next_port
            } else {
                inside.port()
            };
            self.map.insert((inside, remote), p);
            p
        });
        let e = self.allowed.entry(port).or_insert((inside, Vec::new()));
        if !e.1.contains(&remote) {
            e.1.push(remote);
        }
        SocketAddr::new(IpAddr::V4(self.public), port)
    }

    /// Where a datagram from `remote` to public `port` goes, if anywhere.
    fn inbound(&self, port: u16, remote: SocketAddr) -> Option<SocketAddr> {
        let (inside, remotes) = self.allowed.get(&port)?;
        remotes.contains(&remote).then_some(*inside)
    }
}

struct Node {
    ep: Endpoint,
    addr: SocketAddr,
    nat: Option<usize>,
}

struct Net {
    nodes: Vec<Node>,
    nats: Vec<Nat>,
    wire: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    t0: Instant,
    now: Instant,
    /// Datagrams each node received directly from each address.
    delivered: HashMap<(usize, SocketAddr), u64>,
    /// Inner packets each node received.
    inbox: Vec<Vec<Vec<u8>>>,
}

const R1: usize = 0;
const R2: usize = 1;
const A: usize = 2;
const B: usize = 3;

fn sa(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((a, port))
}

impl Net {
    /// Relays r1 and r2 in public; stubs a and b each behind a NAT of the
    /// given kind (true: a new port per destination).
    fn new(seed: u64, a_varies: bool, b_varies: bool) -> Self {
        let stub = EndpointConfig {
            relay: false,
            ..EndpointConfig::default()
        };
        Self::build(seed, a_varies, b_varies, stub)
    }

    /// As [`Net::new`], with a and b configured as `behind_nat`.
    fn build(seed: u64, a_varies: bool, b_varies: bool, behind_nat: EndpointConfig) -> Self {
        let mesh = Mesh::new(seed);
        let names = ["r1", "r2", "a", "b"];
        let addrs = [
            sa([198, 18, 0, 1], 51820),
            sa([198, 18, 0, 2], 51820),
            sa([198, 19, 1, 2], 51820),
            sa([198, 19, 2, 2], 51820),
        ];
        let ids: Vec<_> = (0..4).map(|i| mesh.node(names[i], 1 + i as u8)).collect();
        let keys: Vec<[u8; 32]> = ids.iter().map(|i| *i.static_public()).collect();
        let t0 = Instant::now();
        let mut nodes = Vec::new();
        for (i, id) in ids.into_iter().enumerate() {
            let config = match i {
                R1 | R2 => EndpointConfig::default(),
                _ => behind_nat.clone(),
            };
            let mut ep = Endpoint::new(
                crypto(),
                mesh.ca.clone(),
                id,
                config,
                Box::new(rng(seed * 10 + i as u64)),
            );
            ep.set_local_candidates(vec![addrs[i]]);
            nodes.push(Node {
                ep,
                addr: addrs[i],
                nat: i.checked_sub(2),
            });
        }
        // The stubs list both relays, and a lists b by key alone: its
        // traffic for b goes through a relay until a direct path opens.
        for s in [A, B] {
            for r in [R1, R2] {
                let p = nodes[s].ep.add_peer(keys[r], Some(addrs[r]), None);
                nodes[s].ep.initiate(t0, NOW_NANOS, p);
            }
        }
        nodes[A].ep.add_peer(keys[B], None, None);
        Self {
            nodes,
            nats: vec![
                Nat::new(Ipv4Addr::new(198, 18, 0, 11), a_varies),
                Nat::new(Ipv4Addr::new(198, 18, 0, 12), b_varies),
            ],
            wire: VecDeque::new(),
            t0,
            now: t0,
            delivered: HashMap::new(),
            inbox: vec![Vec::new(); 4],
        }
    }

    fn unix(&self) -> u64 {
        NOW_NANOS + (self.now - self.t0).as_nanos() as u64
    }

    /// Puts node `i`'s transmits on the wire, through its NAT.
    fn collect(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].ep.poll_transmit() {
            self.put(i, t.dst, t.payload);
        }
        while self.nodes[i].ep.poll_event().is_some() {}
    }

    fn put(&mut self, i: usize, dst: SocketAddr, payload: Vec<u8>) {
        let src = match self.nodes[i].nat {
            Some(n) => self.nats[n].out(self.nodes[i].addr, dst),
            None => self.nodes[i].addr,
        };
        self.wire.push_back((src, dst, payload));
    }

    /// Delivers everything in flight (bounded).
    fn pump(&mut self) {
        for _ in 0..100_000 {
            let Some((src, dst, mut d)) = self.wire.pop_front() else {
                return;
            };
            let to = if let Some(n) = self
                .nats
                .iter()
                .position(|n| IpAddr::V4(n.public) == dst.ip())
            {
                let Some(inside) = self.nats[n].inbound(dst.port(), src) else {
                    continue; // no mapping for it: dropped at the NAT
                };
                self.nodes.iter().position(|x| x.addr == inside)
            } else {
                // Private addresses are reachable from nowhere here.
                (self.nodes.iter()).position(|x| x.addr == dst && x.nat.is_none())
            };
            let Some(to) = to else { continue };
            *self.delivered.entry((to, src)).or_default() += 1;
            let unix = self.unix();
            let r = self.nodes[to]
                .ep
                .handle_datagram(self.now, unix, src, &mut d);
            if let proto::endpoint::Received::Data { len, .. } = r {
                self.inbox[to].push(d[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len].to_vec());
            }
            if let proto::endpoint::Received::Forward { dst, len } = r {
                self.put(to, dst, d[..len].to_vec());
            }
            self.collect(to);
        }
        panic!("the network did not go quiet");
    }

    /// Advances virtual time by `d`, running every timer on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for i in 0..self.nodes.len() {
            self.collect(i);
        }
        self.pump();
        loop {
            let next = (self.nodes.iter_mut())
                .filter_map(|n| n.ep.poll_timeout())
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = t.max(self.now);
            let unix = self.unix();
            for i in 0..self.nodes.len() {
                self.nodes[i].ep.handle_timeout(self.now, unix);
                self.collect(i);
            }
            self.pump();
        }
        self.now = end;
    }

    /// a sends one IP packet to b: where it went.
    fn a_to_b(&mut self, payload: &[u8]) -> Option<SocketAddr> {
        let peer = self.peer(A, B);
        let pkt = ipv4([100, 64, 0, 3], [100, 64, 0, 4], payload);
        // Room for a relay header too.
        let mut buf = vec![0u8; pkt.len() + TRANSPORT_OVERHEAD + RELAY_HEADER_LEN];
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + pkt.len()].copy_from_slice(&pkt);
        let unix = self.unix();
        let out = self.nodes[A]
            .ep
            .send(self.now, unix, peer, &mut buf, pkt.len());
        self.collect(A);
        let dst = match out {
            SendOutcome::Send { dst, len } => {
                self.put(A, dst, buf[..len].to_vec());
                Some(dst)
            }
            _ => None,
        };
        self.pump();
        dst
    }

    fn peer(&self, on: usize, of: usize) -> PeerId {
        let key = *self.nodes[of].ep.identity().static_public();
        self.nodes[on].ep.peer_by_static(&key).expect("a peer")
    }
}

/// Two stubs behind port-preserving NATs, which reach each other through a
/// relay at first: they punch, the direct path opens, and a's traffic for
/// b leaves the relay, with every packet delivered on the way.
#[test]
fn stubs_behind_endpoint_independent_nats_punch_a_direct_path_and_lose_nothing() {
    let mut net = Net::new(41, false, false);
    net.advance(Duration::from_secs(3));
    // Each stub learned its reflexive address from the relays.
    let (cands, varies, behind) = net.nodes[A].ep.candidates(net.now);
    assert_eq!(cands[0], sa([198, 18, 0, 11], 51820), "{cands:?}");
    assert!(cands.contains(&sa([198, 19, 1, 2], 51820)));
    assert!(!varies && behind);
    // a's first packets go to a relay.
    let relays = [net.nodes[R1].addr, net.nodes[R2].addr];
    let first = net.a_to_b(b"one");
    assert!(
        first.is_none() || relays.contains(&first.unwrap()),
        "{first:?}"
    );
    let mut sent = 1;
    let start = net.now;
    let mut direct_at = None;
    for _ in 0..300 {
        net.advance(Duration::from_millis(100));
        let dst = net.a_to_b(b"data");
        sent += 1;
        if dst == Some(sa([198, 18, 0, 12], 51820)) {
            direct_at = Some(net.now - start);
            break;
        }
        assert!(dst.is_some_and(|d| relays.contains(&d)), "{dst:?}");
    }
    let took = direct_at.expect("a direct path within 30 s");
    eprintln!("direct {took:?} after a's first packet for b");
    assert!(took < Duration::from_secs(5), "direct after {took:?}");
    // Everything sent arrived, the last one directly.
    assert_eq!(net.inbox[B].len(), sent);
    assert!(net.delivered[&(B, sa([198, 18, 0, 11], 51820))] > 0);
    let s = |i: usize| net.nodes[i].ep.stats().clone();
    assert!(s(A).direct_paths_punched + s(B).direct_paths_punched >= 1);
    assert!(s(A).punches_sent >= 1 && s(B).punches_answered >= 1);
    // It stays direct: a minute on, with traffic every second.
    for _ in 0..60 {
        net.advance(Duration::from_secs(1));
        assert_eq!(net.a_to_b(b"more"), Some(sa([198, 18, 0, 12], 51820)));
    }
    let info = net.nodes[A].ep.peer(net.peer(A, B), net.now).unwrap();
    assert!(info.link.is_some_and(|l| l.up) && info.via.is_none());
    assert_eq!(info.traversal, Traversal::NotNeeded);
}

/// Nodes that would relay but find themselves behind a NAT (a neighbour
/// sees them at an address none of their own) say "no transit" in their
/// adverts: r1 and r2, which meet only through them, get no path through
/// them, while the NATed nodes stay reachable. Configured to relay behind a
/// NAT anyway, they carry r1's traffic for r2.
#[test]
fn relaying_nodes_behind_nats_carry_no_transit_unless_told_to() {
    for relay_behind_nat in [false, true] {
        let config = EndpointConfig {
            relay_behind_nat,
            ..EndpointConfig::default()
        };
        let mut net = Net::build(43, false, false, config);
        net.advance(Duration::from_secs(5));
        for i in [A, B] {
            assert_eq!(net.nodes[i].ep.no_transit(), !relay_behind_nat, "node {i}");
        }
        for i in [R1, R2] {
            assert!(!net.nodes[i].ep.no_transit(), "a public node relays");
        }
        let r1 = net.nodes[R1].ep.router();
        let r2 = net.nodes[R2].ep.node_id();
        let a = net.nodes[A].ep.node_id();
        let via = r1.route(r2).map(|r| r.next_hop);
        if relay_behind_nat {
            assert!(via.is_some(), "r1 reaches r2 through a or b");
        } else {
            assert_eq!(via, None, "no path passes through a NATed node");
        }
        assert_eq!(r1.route(a).map(|r| r.next_hop), Some(a));
    }
}

/// Behind NATs that map each destination to a new port, neither end can be
/// reached at an address the other knows: both learn so from two relays'
/// observations, stop punching, and the relayed path carries the traffic.
#[test]
fn stubs_behind_per_destination_nats_stay_relayed_and_say_why() {
    let mut net = Net::new(42, true, true);
    net.advance(Duration::from_secs(3));
    let (_, varies, _) = net.nodes[A].ep.candidates(net.now);
    assert!(varies, "two relays saw two ports");
    let relays = [net.nodes[R1].addr, net.nodes[R2].addr];
    net.a_to_b(b"one");
    for _ in 0..60 {
        net.advance(Duration::from_secs(1));
        let dst = net.a_to_b(b"data");
        assert!(dst.is_some_and(|d| relays.contains(&d)), "{dst:?}");
    }
    assert_eq!(net.inbox[B].len(), 61);
    for (on, of) in [(A, B), (B, A)] {
        let info = net.nodes[on].ep.peer(net.peer(on, of), net.now).unwrap();
        assert_eq!(info.traversal, Traversal::BothEndsVary, "{on}");
    }
    // One exchange of punches at most, then no more.
    let sent = net.nodes[A].ep.stats().punches_sent;
    assert!(sent <= 2, "{sent} punches");
}

/// A member that names a third party's address (or loopback) in punches,
/// many a second: probes go out once a second at most, never to loopback,
/// and never more bytes than the punch that asked for them.
#[test]
fn punches_cannot_aim_a_stream_of_probes_at_a_third_party() {
    // a's NAT maps per destination, b's does not: no direct path opens
    // between them, so b keeps answering punches (within its budget).
    let mut net = Net::new(43, true, false);
    net.advance(Duration::from_secs(3));
    net.a_to_b(b"one");
    net.advance(Duration::from_millis(1500));
    let victim = sa([198, 18, 0, 99], 9);
    let punch = Control::Punch {
        reply: true,
        varies: false,
        candidates: vec![victim, sa([127, 0, 0, 1], 22), victim, victim],
    };
    let before = net.nodes[B].ep.stats().clone();
    let at_victim = |net: &Net| net.nodes[B].ep.stats().punch_probes_sent;
    let probes_before = at_victim(&net);
    let peer = net.peer(A, B);
    for _ in 0..10 {
        let now = net.now;
        assert!(net.nodes[A].ep.send_control(now, peer, &punch));
        net.collect(A);
        net.pump();
    }
    let after = net.nodes[B].ep.stats().clone();
    let probes = at_victim(&net) - probes_before;
    assert_eq!(probes, 3, "one punch answered: three probes to the victim");
    assert!(probes as usize * (8 + TRANSPORT_OVERHEAD) <= PUNCH_LEN + TRANSPORT_OVERHEAD);
    let refused = |s: &proto::endpoint::Stats, r| s.punch_refusals.get(r).copied().unwrap_or(0);
    assert_eq!(refused(&after, "rate") - refused(&before, "rate"), 9);
    assert_eq!(
        refused(&after, "candidate") - refused(&before, "candidate"),
        1
    );
}

/// A punch altered on the way, and the real one captured and sent again a
/// second later (when a fresh one would be answered): refused by the
/// session (AEAD, replay window) and counted, and no probe goes anywhere
/// for either.
#[test]
fn replayed_or_forged_punches_are_refused_and_counted() {
    let mut net = Net::new(44, true, false);
    net.advance(Duration::from_secs(3));
    net.a_to_b(b"one");
    net.advance(Duration::from_millis(1500));
    let punch = Control::Punch {
        reply: true,
        varies: false,
        candidates: vec![sa([198, 18, 0, 99], 9)],
    };
    let peer = net.peer(A, B);
    let now = net.now;
    assert!(net.nodes[A].ep.send_control(now, peer, &punch));
    net.collect(A);
    // The punch, relayed: its plaintext sealed, behind a relay header;
    // taken off the wire.
    let len = PUNCH_LEN + TRANSPORT_OVERHEAD + RELAY_HEADER_LEN;
    let (punches, rest): (Vec<_>, Vec<_>) = net.wire.drain(..).partition(|(.., p)| p.len() == len);
    net.wire.extend(rest);
    assert_eq!(punches.len(), 1, "one punch on the wire");
    let (src, dst, original) = punches[0].clone();
    net.pump();
    let probes = |net: &Net| net.nodes[B].ep.stats().punch_probes_sent;
    let drops = |net: &Net, r| net.nodes[B].ep.stats().drops(r);
    let deliver = |net: &mut Net, payload: Vec<u8>| {
        net.wire.push_back((src, dst, payload));
        net.pump();
    };
    // Altered (a bit of its tag): refused before anything reads it.
    let (p0, decrypt0) = (probes(&net), drops(&net, DropReason::Decrypt));
    let mut forged = original.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    deliver(&mut net, forged);
    assert_eq!(drops(&net, DropReason::Decrypt), decrypt0 + 1);
    assert_eq!(probes(&net), p0, "no probe for a forged punch");
    // The real one is answered (one probe to its one candidate).
    deliver(&mut net, original.clone());
    assert_eq!(probes(&net), p0 + 1, "the real punch is answered");
    // The same bytes again, a second later: a replay.
    net.advance(Duration::from_millis(1100));
    let (p1, replay1) = (probes(&net), drops(&net, DropReason::Replay));
    deliver(&mut net, original);
    assert_eq!(drops(&net, DropReason::Replay), replay1 + 1);
    assert_eq!(probes(&net), p1, "no probe for a replayed punch");
}
