//! Two endpoints on an in-memory network in virtual time, for the
//! endpoint's integration tests.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proto::endpoint::{Endpoint, EndpointConfig, Event, PeerId, Received, SendOutcome, Transmit};
use proto::wire::{TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};

use super::*;

pub struct Node {
    pub ep: Endpoint,
    pub addr: SocketAddr,
    pub ip: [u8; 4],
    pub peer: PeerId,
    pub inbox: Vec<Vec<u8>>,
    pub events: Vec<Event>,
}

pub struct Net {
    pub t0: Instant,
    pub now: Instant,
    pub a: Node,
    pub b: Node,
    /// Datagrams on the wire: (to_b, bytes).
    pub wire: Vec<(bool, Vec<u8>)>,
    pub handshake_datagrams: Vec<usize>,
    /// When set, the network drops everything.
    pub blackhole: bool,
}

impl Net {
    pub fn new(config_b: EndpointConfig) -> Self {
        Self::with_segments(config_b, &["test"], &["test"])
    }

    /// Alice and Bob in these segments.
    pub fn with_segments(config_b: EndpointConfig, alice: &[&str], bob: &[&str]) -> Self {
        Self::build(EndpointConfig::default(), config_b, alice, bob)
    }

    /// Alice and Bob each with their own settings.
    #[allow(dead_code)] // not every test binary uses it
    pub fn with_config_a(config_a: EndpointConfig, config_b: EndpointConfig) -> Self {
        Self::build(config_a, config_b, &["test"], &["test"])
    }

    fn build(
        config_a: EndpointConfig,
        config_b: EndpointConfig,
        alice: &[&str],
        bob: &[&str],
    ) -> Self {
        let mesh = Mesh::new(1);
        let alice = mesh.node_in("alice", 1, alice);
        let bob = mesh.node_in("bob", 2, bob);
        let (a_pub, b_pub) = (*alice.static_public(), *bob.static_public());
        let mut a = Endpoint::new(
            crypto(),
            mesh.ca.clone(),
            alice,
            config_a,
            Box::new(rng(101)),
        );
        let mut b = Endpoint::new(crypto(), mesh.ca.clone(), bob, config_b, Box::new(rng(102)));
        let pa = a.add_peer(b_pub, Some(addr(2)), None);
        let pb = b.add_peer(a_pub, Some(addr(1)), None);
        let t0 = Instant::now();
        Self {
            t0,
            now: t0,
            a: Node {
                ep: a,
                addr: addr(1),
                ip: [100, 64, 0, 1],
                peer: pa,
                inbox: vec![],
                events: vec![],
            },
            b: Node {
                ep: b,
                addr: addr(2),
                ip: [100, 64, 0, 2],
                peer: pb,
                inbox: vec![],
                events: vec![],
            },
            wire: vec![],
            handshake_datagrams: vec![],
            blackhole: false,
        }
    }

    /// Both ends without link probing: WireGuard's timers alone.
    pub fn timers_only() -> Self {
        let mut net = Self::new(EndpointConfig {
            health: None,
            ..EndpointConfig::default()
        });
        let mesh = Mesh::new(1);
        let alice = mesh.node("alice", 1);
        let b_pub = *net.b.ep.identity().static_public();
        net.a.ep = Endpoint::new(
            crypto(),
            mesh.ca.clone(),
            alice,
            EndpointConfig {
                health: None,
                ..EndpointConfig::default()
            },
            Box::new(rng(103)),
        );
        net.a.peer = net.a.ep.add_peer(b_pub, Some(addr(2)), None);
        net
    }

    pub fn unix(&self) -> u64 {
        NOW_NANOS + (self.now - self.t0).as_nanos() as u64
    }

    pub fn node(&mut self, a: bool) -> &mut Node {
        if a {
            &mut self.a
        } else {
            &mut self.b
        }
    }

    /// Sends an IP packet from one side to the other's overlay address.
    pub fn send(&mut self, from_a: bool, payload: &[u8]) -> SendOutcome {
        self.send_at(from_a, payload, self.unix())
    }

    /// [`Net::send`] with the sender's wall clock reading `unix` (ns).
    pub fn send_at(&mut self, from_a: bool, payload: &[u8], unix: u64) -> SendOutcome {
        let now = self.now;
        let (src, dst) = if from_a {
            (self.a.ip, self.b.ip)
        } else {
            (self.b.ip, self.a.ip)
        };
        let pkt = ipv4(src, dst, payload);
        let mut buf = vec![0u8; pkt.len() + TRANSPORT_OVERHEAD];
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + pkt.len()].copy_from_slice(&pkt);
        let n = self.node(from_a);
        let out = n.ep.send(now, unix, n.peer, &mut buf, pkt.len());
        if let SendOutcome::Send { len, .. } = out {
            self.wire.push((from_a, buf[..len].to_vec()));
        }
        self.collect();
        out
    }

    pub fn collect(&mut self) {
        for from_a in [true, false] {
            let n = self.node(from_a);
            let mut out: Vec<Transmit> = vec![];
            while let Some(t) = n.ep.poll_transmit() {
                out.push(t);
            }
            while let Some(e) = n.ep.poll_event() {
                n.events.push(e);
            }
            for t in out {
                if t.payload[0] != 4 {
                    self.handshake_datagrams.push(t.payload.len());
                }
                self.wire.push((from_a, t.payload));
            }
        }
    }

    /// Delivers one datagram; returns what the receiver made of it.
    pub fn deliver(&mut self, to_b: bool, mut d: Vec<u8>) -> Received {
        let (now, unix) = (self.now, self.unix());
        let src = if to_b { self.a.addr } else { self.b.addr };
        let n = self.node(!to_b);
        let r = n.ep.handle_datagram(now, unix, src, &mut d);
        if let Received::Data { len, .. } = r {
            n.inbox
                .push(d[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len].to_vec());
        }
        self.collect();
        r
    }

    /// Delivers everything in flight until quiet (bounded).
    pub fn pump(&mut self) {
        for _ in 0..100 {
            if self.wire.is_empty() {
                return;
            }
            let batch: Vec<_> = self.wire.drain(..).collect();
            if self.blackhole {
                return;
            }
            for (from_a, d) in batch {
                self.deliver(from_a, d);
            }
        }
        panic!("network did not go quiet");
    }

    /// Advances virtual time, running timers at every deadline on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..10_000 {
            let next = [self.a.ep.poll_timeout(), self.b.ep.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = t.max(self.now);
            let unix = self.unix();
            self.a.ep.handle_timeout(self.now, unix);
            self.b.ep.handle_timeout(self.now, unix);
            self.collect();
            self.pump();
        }
        self.now = end;
    }

    pub fn completed(&self, a: bool) -> usize {
        let n = if a { &self.a } else { &self.b };
        n.events
            .iter()
            .filter(|e| matches!(e, Event::HandshakeCompleted { .. }))
            .count()
    }
}

impl Net {
    /// B restarts: the same identity, a new endpoint with no sessions and
    /// no peers. Returns A's static key.
    pub fn restart_b(&mut self, rng_seed: u64) -> [u8; 32] {
        let mesh = Mesh::new(1);
        let bob = mesh.node("bob", 2);
        let alice_pub = *mesh.node("alice", 1).static_public();
        self.b.ep = Endpoint::new(
            crypto(),
            mesh.ca.clone(),
            bob,
            EndpointConfig::default(),
            Box::new(rng(rng_seed)),
        );
        alice_pub
    }
}
