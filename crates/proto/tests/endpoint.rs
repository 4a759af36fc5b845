//! The endpoint state machine in virtual time: two nodes, an in-memory
//! network, and WireGuard's timers. No test sleeps.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use proto::endpoint::{
    DropReason, Endpoint, EndpointConfig, Event, PeerId, Received, SendOutcome, Transmit,
};
use proto::timers::*;
use proto::wire::{MAX_HANDSHAKE_DATAGRAM, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};

struct Node {
    ep: Endpoint,
    addr: SocketAddr,
    ip: [u8; 4],
    peer: PeerId,
    inbox: Vec<Vec<u8>>,
    events: Vec<Event>,
}

struct Net {
    t0: Instant,
    now: Instant,
    a: Node,
    b: Node,
    /// Datagrams on the wire: (to_b, bytes).
    wire: Vec<(bool, Vec<u8>)>,
    handshake_datagrams: Vec<usize>,
    /// When set, the network drops everything.
    blackhole: bool,
}

impl Net {
    fn new(config_b: EndpointConfig) -> Self {
        let mesh = Mesh::new(1);
        let alice = mesh.node("alice", 1);
        let bob = mesh.node("bob", 2);
        let (a_pub, b_pub) = (*alice.static_public(), *bob.static_public());
        let mut a = Endpoint::new(
            crypto(),
            mesh.ca.clone(),
            alice,
            EndpointConfig::default(),
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
    fn timers_only() -> Self {
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

    fn unix(&self) -> u64 {
        NOW_NANOS + (self.now - self.t0).as_nanos() as u64
    }

    fn node(&mut self, a: bool) -> &mut Node {
        if a {
            &mut self.a
        } else {
            &mut self.b
        }
    }

    /// Sends an IP packet from one side to the other's overlay address.
    fn send(&mut self, from_a: bool, payload: &[u8]) -> SendOutcome {
        let (now, unix) = (self.now, self.unix());
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

    fn collect(&mut self) {
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
    fn deliver(&mut self, to_b: bool, mut d: Vec<u8>) -> Received {
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
    fn pump(&mut self) {
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
    fn advance(&mut self, d: Duration) {
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

    fn completed(&self, a: bool) -> usize {
        let n = if a { &self.a } else { &self.b };
        n.events
            .iter()
            .filter(|e| matches!(e, Event::HandshakeCompleted { .. }))
            .count()
    }
}

#[test]
fn first_packet_triggers_handshake_and_is_delivered() {
    let mut net = Net::new(EndpointConfig::default());
    assert_eq!(net.send(true, b"hello"), SendOutcome::Queued);
    net.pump();
    assert_eq!(net.completed(true), 1);
    assert_eq!(net.completed(false), 1);
    assert_eq!(net.b.inbox.len(), 1);
    assert!(net.b.inbox[0].ends_with(b"hello"));
    // Responder can send once the first packet confirmed the session.
    assert!(matches!(
        net.send(false, b"world"),
        SendOutcome::Send { .. }
    ));
    net.pump();
    assert!(net.a.inbox[0].ends_with(b"world"));
    let info = &net.a.ep.peers(net.now)[0];
    assert!(info.has_session);
    assert_eq!(info.cert.as_ref().unwrap().name(), "bob");
}

#[test]
fn every_handshake_datagram_fits_a_1280_byte_path() {
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"x");
    net.pump();
    assert!(
        net.handshake_datagrams.len() >= 4,
        "both messages are fragmented"
    );
    for len in &net.handshake_datagrams {
        assert!(*len <= MAX_HANDSHAKE_DATAGRAM, "{len}");
        assert!(len + 8 + 40 <= 1280);
    }
}

#[test]
fn fragments_out_of_order_and_duplicated_still_complete() {
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"x");
    let mut frags: Vec<_> = net.wire.drain(..).collect();
    assert_eq!(frags.len(), 2);
    frags.reverse();
    let dup = frags[0].clone();
    assert_eq!(net.deliver(dup.0, dup.1.clone()), Received::Handshake);
    assert_eq!(
        net.deliver(dup.0, dup.1),
        Received::Dropped(DropReason::FragmentDuplicate)
    );
    assert_eq!(
        net.deliver(frags[1].0, frags[1].1.clone()),
        Received::Handshake
    );
    // A whole duplicate message after completion is a replay, not a second session.
    assert_eq!(
        net.deliver(frags[0].0, frags[0].1.clone()),
        Received::Handshake
    );
    assert_eq!(
        net.deliver(frags[1].0, frags[1].1.clone()),
        Received::Dropped(DropReason::HandshakeFailed)
    );
    assert_eq!(
        net.b
            .ep
            .stats()
            .handshake_failures
            .get("replayed_initiation"),
        Some(&1)
    );
    net.pump();
    assert_eq!(net.completed(true), 1);
}

#[test]
fn truncated_and_oversized_fragments_are_dropped_and_counted() {
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"x");
    let frags: Vec<_> = net.wire.drain(..).collect();
    let mut cut = frags[0].1.clone();
    cut.truncate(cut.len() - 1);
    assert_eq!(
        net.deliver(true, cut),
        Received::Dropped(DropReason::Malformed)
    );
    let mut big = frags[0].1.clone();
    big.extend_from_slice(&[0u8; 200]);
    assert_eq!(
        net.deliver(true, big),
        Received::Dropped(DropReason::Malformed)
    );
    let mut bad_count = frags[0].1.clone();
    bad_count[2] = 9;
    assert_eq!(
        net.deliver(true, bad_count),
        Received::Dropped(DropReason::Malformed)
    );
    let mut bad_mac = frags[0].1.clone();
    let n = bad_mac.len();
    bad_mac[n - 20] ^= 1;
    assert_eq!(
        net.deliver(true, bad_mac),
        Received::Dropped(DropReason::BadMac1)
    );
    assert_eq!(
        net.b.ep.reassembly_len(),
        0,
        "nothing unauthenticated is stored"
    );
    assert_eq!(net.b.ep.stats().drops(DropReason::Malformed), 3);
    assert_eq!(net.b.ep.stats().drops(DropReason::BadMac1), 1);
}

#[test]
fn rekey_after_120s_without_losing_packets() {
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"0");
    net.pump();
    let mut delivered = 1;
    // Traffic both ways every second for 5 minutes: two rekeys.
    for i in 1..300u32 {
        net.advance(Duration::from_secs(1));
        let out = net.send(true, &i.to_be_bytes());
        assert!(
            matches!(out, SendOutcome::Send { .. }),
            "second {i}: {out:?}"
        );
        net.send(false, b"ack");
        net.pump();
        delivered += 1;
    }
    assert_eq!(net.b.inbox.len(), delivered, "no packet lost across rekeys");
    assert!(
        net.completed(true) >= 3,
        "rekeyed at least twice: {}",
        net.completed(true)
    );
    assert_eq!(
        net.a.ep.stats().total_drops() + net.b.ep.stats().total_drops(),
        0
    );
}

#[test]
fn session_is_rejected_after_180s() {
    let mut net = Net::timers_only();
    net.send(true, b"0");
    net.pump();
    // Seal a packet now, deliver it after REJECT_AFTER_TIME.
    net.send(true, b"late");
    let late = net.wire.pop().unwrap();
    net.advance(REJECT_AFTER_TIME + Duration::from_secs(1));
    net.wire.clear();
    assert_eq!(
        net.deliver(late.0, late.1),
        Received::Dropped(DropReason::SessionExpired)
    );
    // And the sender does not use the old session either: it re-handshakes.
    assert_eq!(net.send(true, b"new"), SendOutcome::Queued);
    net.pump();
    assert!(net.b.inbox.last().unwrap().ends_with(b"new"));
}

#[test]
fn handshake_retransmits_every_5s_and_gives_up_after_90s() {
    let mut net = Net::timers_only();
    net.blackhole = true; // the network eats everything
    net.send(true, b"lost");
    net.advance(REKEY_ATTEMPT_TIME + Duration::from_secs(10));
    let sent = net.a.ep.stats().initiations_sent;
    // 90 s / (5 s + up to 333 ms jitter) attempts, plus the first.
    assert!((17..=19).contains(&sent), "{sent} initiations");
    assert!(net
        .a
        .events
        .iter()
        .any(|e| matches!(e, Event::HandshakeTimedOut { dropped: 1, .. })));
    assert_eq!(net.a.ep.stats().drops(DropReason::HandshakeTimeout), 1);
    assert_eq!(net.a.ep.poll_timeout(), None, "nothing left to do");
}

#[test]
fn keepalive_after_10s_of_receiving_without_sending() {
    let mut net = Net::timers_only();
    net.send(true, b"0");
    net.pump();
    // B received data and sent nothing back: at 10 s it sends a keepalive.
    net.advance(KEEPALIVE_TIMEOUT - Duration::from_millis(1));
    let before = net.a.ep.peers(net.now)[0].stats.rx_packets;
    net.advance(Duration::from_millis(2));
    let after = net.a.ep.peers(net.now)[0].stats.rx_packets;
    assert_eq!(after, before + 1, "one keepalive arrived");
}

#[test]
fn one_way_silence_triggers_a_new_handshake_after_15s() {
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"0");
    net.pump();
    let initiations = net.a.ep.stats().initiations_sent;
    // A keeps sending, B's replies are lost: A re-handshakes after 10 + 5 s.
    net.send(true, b"1");
    net.wire.clear();
    net.now += KEEPALIVE_TIMEOUT + REKEY_TIMEOUT;
    let unix = net.unix();
    net.a.ep.handle_timeout(net.now, unix);
    assert_eq!(net.a.ep.stats().initiations_sent, initiations + 1);
}

#[test]
fn cookie_reply_under_load_then_handshake_completes() {
    let mut net = Net::new(EndpointConfig::default());
    net.b.ep.set_under_load(Some(true));
    net.send(true, b"x");
    net.pump();
    assert_eq!(net.b.ep.stats().cookie_replies_sent, 1);
    assert!(net
        .a
        .events
        .iter()
        .any(|e| matches!(e, Event::CookieReceived { .. })));
    assert_eq!(net.completed(true), 1, "retried with mac2 and completed");
    assert!(net.b.inbox[0].ends_with(b"x"));
}

#[test]
fn handshake_flood_switches_to_cookies_automatically() {
    let mut net = Net::new(EndpointConfig {
        handshake_load_threshold: 5,
        ..EndpointConfig::default()
    });
    // Replay message 1's first fragment many times within a second.
    net.send(true, b"x");
    let frags: Vec<_> = net.wire.drain(..).collect();
    for _ in 0..10 {
        net.deliver(true, frags[0].1.clone());
    }
    assert!(
        net.b.ep.stats().cookie_replies_sent >= 4,
        "{}",
        net.b.ep.stats().cookie_replies_sent
    );
    assert!(net.b.ep.reassembly_len() <= 1);
}

#[test]
fn spoofed_inner_source_is_dropped_and_counted() {
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"0");
    net.pump();
    // A seals a packet claiming a source that is not in its certificate.
    let pkt = ipv4([100, 64, 0, 99], [100, 64, 0, 2], b"spoof");
    let mut buf = vec![0u8; pkt.len() + TRANSPORT_OVERHEAD];
    buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + pkt.len()].copy_from_slice(&pkt);
    let (now, unix) = (net.now, net.unix());
    let SendOutcome::Send { len, .. } = net.a.ep.send(now, unix, net.a.peer, &mut buf, pkt.len())
    else {
        panic!()
    };
    assert_eq!(
        net.deliver(true, buf[..len].to_vec()),
        Received::Dropped(DropReason::SpoofedSource)
    );
    assert_eq!(net.b.ep.stats().drops(DropReason::SpoofedSource), 1);
}

#[test]
fn replayed_transport_packet_is_dropped() {
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"0");
    net.pump();
    net.send(true, b"1");
    let pkt = net.wire.pop().unwrap();
    assert!(matches!(
        net.deliver(true, pkt.1.clone()),
        Received::Data { .. }
    ));
    assert_eq!(
        net.deliver(true, pkt.1),
        Received::Dropped(DropReason::Replay)
    );
}

#[test]
fn malformed_datagram_flood_is_counted_and_session_survives() {
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"0");
    net.pump();
    net.send(true, b"valid");
    let good = net.wire.pop().unwrap().1;
    let mut r = rng(5);
    use rand_chacha::rand_core::RngCore;
    let mut dropped = 0;
    for i in 0..3000 {
        let mut d = match i % 3 {
            0 => {
                let mut v = vec![0u8; (r.next_u32() % 1500) as usize];
                r.fill_bytes(&mut v);
                v
            }
            1 => good[..(r.next_u32() as usize % good.len())].to_vec(),
            _ => {
                let mut v = good.clone();
                let k = 16 + r.next_u32() as usize % (v.len() - 16);
                v[k] ^= 1 << (r.next_u32() % 8);
                v
            }
        };
        let (now, unix) = (net.now, net.unix());
        if let Received::Dropped(_) = net.b.ep.handle_datagram(now, unix, net.a.addr, &mut d) {
            dropped += 1;
        }
    }
    assert_eq!(dropped, 3000);
    assert_eq!(net.b.ep.stats().total_drops(), 3000);
    assert!(matches!(net.deliver(true, good), Received::Data { .. }));
    assert!(matches!(
        net.send(false, b"still up"),
        SendOutcome::Send { .. }
    ));
}

#[test]
fn reassembly_state_stays_bounded_under_a_fragment_flood() {
    let mut net = Net::new(EndpointConfig::default());
    // Valid first fragments (mac1 is computable by anyone who knows B's
    // public key) from many addresses and indices, never completed.
    let mut firsts = vec![];
    for _ in 0..40 {
        // A new initiation each time (new sender index).
        let (now, unix) = (net.now, net.unix());
        net.a.ep.initiate(now, unix, net.a.peer);
        firsts.push(net.a.ep.poll_transmit().unwrap().payload);
        while net.a.ep.poll_transmit().is_some() {}
    }
    let (now, unix) = (net.now, net.unix());
    for (i, f) in firsts.iter().enumerate() {
        for port in 0..20u16 {
            let src = SocketAddr::from(([198, 18, 1, i as u8], 1000 + port));
            let mut d = f.clone();
            net.b.ep.handle_datagram(now, unix, src, &mut d);
        }
    }
    assert!(net.b.ep.reassembly_len() <= EndpointConfig::default().reassembly.total);
    // And it all expires.
    net.advance(Duration::from_secs(6));
    assert_eq!(net.b.ep.reassembly_len(), 0);
}

#[test]
fn restarted_peer_resyncs_on_the_first_packet_for_a_lost_session() {
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"0");
    net.pump();
    // B restarts: same identity, no sessions.
    let mesh = Mesh::new(1);
    let bob = mesh.node("bob", 2);
    let alice_pub = *mesh.node("alice", 1).static_public();
    net.b.ep = Endpoint::new(
        crypto(),
        mesh.ca.clone(),
        bob,
        EndpointConfig::default(),
        Box::new(rng(104)),
    );
    net.b.peer = net.b.ep.add_peer(alice_pub, Some(addr(1)), None);
    net.now += Duration::from_secs(1);
    // A's packet on the old session is unknown to B, which re-handshakes at once.
    net.send(true, b"lost");
    let pkt = net.wire.pop().unwrap();
    assert_eq!(
        net.deliver(pkt.0, pkt.1),
        Received::Dropped(DropReason::UnknownIndex)
    );
    assert_eq!(net.b.ep.stats().initiations_sent, 1);
    net.pump();
    assert!(matches!(net.send(true, b"back"), SendOutcome::Send { .. }));
    net.pump();
    assert!(
        net.b.inbox.last().unwrap().ends_with(b"back"),
        "traffic resumed without waiting 15 s"
    );
    // A flood of stale packets triggers no more than one initiation per REKEY_TIMEOUT.
    let before = net.b.ep.stats().initiations_sent;
    let (now, unix) = (net.now, net.unix());
    for _ in 0..100 {
        let mut junk = vec![0u8; 48];
        junk[0] = 4;
        junk[4] = 0xee;
        net.b.ep.handle_datagram(now, unix, addr(1), &mut junk);
    }
    assert!(net.b.ep.stats().initiations_sent <= before + 1);
}

/// A hub learns peers from their handshakes; when one vanishes it stops
/// probing and re-handshaking with it after RETIRE_AFTER, while a configured
/// peer keeps being tried. The retired peer comes back by initiating.
#[test]
fn a_vanished_learned_peer_is_retired_and_comes_back_by_initiating() {
    use proto::endpoint::RETIRE_AFTER;
    let mut net = Net::new(EndpointConfig::default());
    let mesh = Mesh::new(1);
    let bob = mesh.node("bob", 2);
    let alice_pub = *mesh.node("alice", 1).static_public();
    // B knows nobody: A introduces itself.
    net.b.ep = Endpoint::new(
        crypto(),
        mesh.ca.clone(),
        bob,
        EndpointConfig::default(),
        Box::new(rng(105)),
    );
    net.send(true, b"hello");
    net.pump();
    net.b.peer = net.b.ep.peer_by_static(&alice_pub).unwrap();
    net.advance(Duration::from_secs(3));
    assert!(net.b.inbox.last().unwrap().ends_with(b"hello"));
    assert!(net.b.ep.peers(net.now)[0].link.is_some(), "B probes A");
    // A vanishes.
    net.blackhole = true;
    net.advance(RETIRE_AFTER + Duration::from_secs(10));
    assert!(
        net.b
            .events
            .iter()
            .any(|e| matches!(e, Event::PeerRetired { .. })),
        "{:?}",
        net.b.events
    );
    assert_eq!(net.b.ep.stats().peers_retired, 1);
    let b_probes = net.b.ep.stats().probes_sent;
    let b_inits = net.b.ep.stats().initiations_sent;
    let a_inits = net.a.ep.stats().initiations_sent;
    net.advance(Duration::from_secs(120));
    assert_eq!(
        net.b.ep.stats().probes_sent,
        b_probes,
        "no probes to a retired peer"
    );
    assert_eq!(
        net.b.ep.stats().initiations_sent,
        b_inits,
        "no handshakes either"
    );
    assert!(net.b.ep.peers(net.now)[0].link.is_none());
    assert!(!net.b.ep.peers(net.now)[0].has_session);
    assert!(
        net.a.ep.stats().initiations_sent > a_inits,
        "a configured peer is still tried"
    );
    assert_eq!(net.a.ep.stats().peers_retired, 0);
    // A comes back: its traffic re-establishes everything.
    net.blackhole = false;
    net.wire.clear();
    net.send(true, b"back");
    net.advance(Duration::from_secs(6));
    net.send(true, b"again");
    net.pump();
    assert!(net.b.inbox.last().unwrap().ends_with(b"again"));
    net.advance(Duration::from_secs(2));
    assert!(net.b.ep.peers(net.now)[0].link.is_some(), "probed again");
}

/// The split a multi-threaded driver uses: plan under the lock, seal/open
/// outside, finish under the lock. Packets finished out of order all arrive;
/// a duplicate opened alongside its original is refused as a replay when
/// it is finished second.
#[test]
fn sealing_and_opening_outside_the_endpoint_keep_order_independence_and_replay_protection() {
    use proto::endpoint::{Incoming, Prepared};
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"hello");
    net.pump();
    // A: three packets planned first, sealed afterwards in reverse order.
    let (now, unix) = (net.now, net.unix());
    let mut bufs = Vec::new();
    let mut plans = Vec::new();
    for i in 0..3u8 {
        let pkt = ipv4(net.a.ip, net.b.ip, &[b'p', i]);
        let mut buf = vec![0u8; pkt.len() + TRANSPORT_OVERHEAD];
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + pkt.len()].copy_from_slice(&pkt);
        match net
            .a
            .ep
            .prepare_send(now, unix, net.a.peer, &mut buf, pkt.len())
        {
            Prepared::Seal(p) => plans.push(p),
            other => panic!("{other:?}"),
        }
        bufs.push(buf);
    }
    let mut wire = Vec::new();
    for i in (0..3).rev() {
        let (_, len) = plans[i].seal(&mut bufs[i]);
        wire.push(bufs[i][..len].to_vec());
    }
    // B: all planned, opened in the order they came, finished in reverse.
    let mut incoming = Vec::new();
    for d in &mut wire {
        match net.b.ep.prepare_datagram(now, unix, addr(1), d) {
            Incoming::Open(plan) => {
                let opened = plan.open(d);
                incoming.push((plan, opened));
            }
            Incoming::Done(r) => panic!("{r:?}"),
        }
    }
    let mut got = Vec::new();
    for (i, (plan, opened)) in incoming.into_iter().enumerate().rev() {
        let r = net
            .b
            .ep
            .finish_datagram(now, unix, plan, &mut wire[i], opened);
        let Received::Data { len, .. } = r else {
            panic!("{r:?}");
        };
        got.push(wire[i][TRANSPORT_HEADER_LEN + len - 1]);
    }
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2]);
    // A duplicate planned alongside its original: both pass the window
    // check, only the first finished is taken.
    let pkt = ipv4(net.a.ip, net.b.ip, b"once");
    let mut buf = vec![0u8; pkt.len() + TRANSPORT_OVERHEAD];
    buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + pkt.len()].copy_from_slice(&pkt);
    let SendOutcome::Send { len, .. } = net.a.ep.send(now, unix, net.a.peer, &mut buf, pkt.len())
    else {
        panic!("send");
    };
    let mut first = buf[..len].to_vec();
    let mut second = first.clone();
    let plan_of =
        |ep: &mut Endpoint, d: &mut Vec<u8>| match ep.prepare_datagram(now, unix, addr(1), d) {
            Incoming::Open(p) => p,
            Incoming::Done(r) => panic!("{r:?}"),
        };
    let p1 = plan_of(&mut net.b.ep, &mut first);
    let p2 = plan_of(&mut net.b.ep, &mut second);
    let (o1, o2) = (p1.open(&mut first), p2.open(&mut second));
    let replays = net.b.ep.stats().drops(DropReason::Replay);
    assert!(matches!(
        net.b.ep.finish_datagram(now, unix, p1, &mut first, o1),
        Received::Data { .. }
    ));
    assert_eq!(
        net.b.ep.finish_datagram(now, unix, p2, &mut second, o2),
        Received::Dropped(DropReason::Replay)
    );
    assert_eq!(net.b.ep.stats().drops(DropReason::Replay), replays + 1);
}

/// A packet whose datagram would not fit the underlay MTU is not sent; the
/// outcome says how large an inner packet fits (IPv4 underlay: 32 bytes of
/// meshd and 28 of IP/UDP).
#[test]
fn a_packet_too_big_for_the_underlay_is_refused_with_the_mtu_that_fits() {
    let mut net = Net::new(EndpointConfig::default());
    net.a.ep = {
        let mesh = Mesh::new(1);
        let b_pub = *net.b.ep.identity().static_public();
        let mut ep = Endpoint::new(
            crypto(),
            mesh.ca.clone(),
            mesh.node("alice", 1),
            EndpointConfig {
                underlay_mtu: 1280,
                ..EndpointConfig::default()
            },
            Box::new(rng(106)),
        );
        net.a.peer = ep.add_peer(b_pub, Some(addr(2)), None);
        ep
    };
    net.send(true, b"hello");
    net.pump();
    assert!(net.b.inbox.last().unwrap().ends_with(b"hello"));
    let before = net.a.ep.stats().drops(DropReason::TooBig);
    // 20-byte IPv4 header + payload: 1220 fits (1220 + 60 = 1280), 1221 does not.
    assert!(matches!(
        net.send(true, &[7; 1220 - 20]),
        SendOutcome::Send { .. }
    ));
    assert_eq!(
        net.send(true, &[7; 1221 - 20]),
        SendOutcome::TooBig { mtu: 1220 }
    );
    assert_eq!(net.a.ep.stats().drops(DropReason::TooBig), before + 1);
}

#[test]
fn crossing_handshakes_both_work_without_lost_packets() {
    let mut net = Net::new(EndpointConfig::default());
    // Both sides start a handshake at the same moment (as two meshd starting together).
    let (now, unix) = (net.now, net.unix());
    net.a.ep.initiate(now, unix, net.a.peer);
    net.b.ep.initiate(now, unix, net.b.peer);
    net.collect();
    net.pump();
    assert_eq!(net.completed(true), 2);
    assert_eq!(net.completed(false), 2);
    for i in 0..10u8 {
        assert!(matches!(net.send(true, &[i]), SendOutcome::Send { .. }));
        assert!(matches!(net.send(false, &[i]), SendOutcome::Send { .. }));
        net.pump();
    }
    assert_eq!(net.a.inbox.len(), 10);
    assert_eq!(net.b.inbox.len(), 10);
    let drops = net.a.ep.stats().total_drops() + net.b.ep.stats().total_drops();
    assert_eq!(
        drops,
        0,
        "a: {:?} b: {:?}",
        net.a.ep.stats(),
        net.b.ep.stats()
    );
}

/// UDP header bytes (ports only; the rest does not matter to the filter).
fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = sport.to_be_bytes().to_vec();
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 8, 0, 0]);
    h
}

fn policy(text: &str) -> Option<std::sync::Arc<proto::policy::Compiled>> {
    Some(std::sync::Arc::new(
        proto::policy::Policy::parse(text).unwrap().compile(),
    ))
}

const ALICE_TO_BOB_DNS: &str = r#"
[[rule]]
action = "allow"
from = "node:alice"
to = "node:bob"
proto = "udp"
ports = ["53"]
"#;

#[test]
fn policy_is_enforced_on_send_and_receive_and_replies_pass_by_conntrack() {
    use proto::filter::Direction;
    use proto::policy::DenyReason;
    let mut net = Net::new(EndpointConfig::default());
    let (now, p) = (net.now, policy(ALICE_TO_BOB_DNS));
    net.a.ep.set_policy(now, p.clone());
    net.b.ep.set_policy(now, p);
    // Allowed: the first packet is queued through the handshake and
    // checked when the queue is flushed.
    assert_eq!(net.send(true, &udp(40000, 53)), SendOutcome::Queued);
    net.pump();
    assert_eq!(net.b.inbox.len(), 1);
    // The reply passes both ends by connection tracking.
    assert!(matches!(
        net.send(false, &udp(53, 40000)),
        SendOutcome::Send { .. }
    ));
    net.pump();
    assert_eq!(net.a.inbox.len(), 1);
    // Bob opening a flow of his own is refused before it is sealed.
    assert_eq!(
        net.send(false, &udp(40001, 53)),
        SendOutcome::Dropped(DropReason::PolicyDenied)
    );
    // Alice to a port the rule does not name: refused on send.
    assert_eq!(
        net.send(true, &udp(40000, 54)),
        SendOutcome::Dropped(DropReason::PolicyDenied)
    );
    // A Bob without the policy sends anyway: Alice refuses it on receive.
    net.b.ep.set_policy(net.now, None);
    assert!(matches!(
        net.send(false, &udp(40002, 22)),
        SendOutcome::Send { .. }
    ));
    net.pump();
    assert_eq!(net.a.inbox.len(), 1);
    let f = net.a.ep.filter().stats();
    assert_eq!(f.denied(Direction::In, DenyReason::Default), 1);
    assert_eq!(f.denied(Direction::Out, DenyReason::Default), 1);
    assert_eq!(net.a.ep.stats().drops(DropReason::PolicyDenied), 2);
}

#[test]
fn a_non_member_cannot_complete_a_handshake_with_an_enclave_member() {
    let mesh = Mesh::new(7);
    let member = mesh.node_in("pci-1", 1, &["pci"]);
    let outsider = mesh.node_in("web-1", 2, &["web"]);
    let (m_pub, o_pub) = (*member.static_public(), *outsider.static_public());
    let mut m = Endpoint::new(
        crypto(),
        mesh.ca.clone(),
        member,
        EndpointConfig::default(),
        Box::new(rng(107)),
    );
    let mut o = Endpoint::new(
        crypto(),
        mesh.ca.clone(),
        outsider,
        EndpointConfig::default(),
        Box::new(rng(108)),
    );
    let t = Instant::now();
    let p = policy(
        "enclaves = [\"pci\"]\n[[rule]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\n",
    );
    m.set_policy(t, p.clone());
    let o_peer = o.add_peer(m_pub, Some(addr(1)), None);
    let m_peer = m.add_peer(o_pub, Some(addr(2)), None);
    // The outsider (without the policy) initiates; the member never answers.
    o.initiate(t, NOW_NANOS, o_peer);
    let mut replies = 0;
    while let Some(mut tx) = o.poll_transmit() {
        m.handle_datagram(t, NOW_NANOS, addr(2), &mut tx.payload);
        while m.poll_transmit().is_some() {
            replies += 1;
        }
    }
    assert_eq!(replies, 0, "the member answered a non-member");
    assert_eq!(
        m.stats().handshake_failures.get("outside_enclave"),
        Some(&1)
    );
    // The member initiating is refused by its own check on the response.
    o.set_policy(t, p);
    m.initiate(t, NOW_NANOS, m_peer);
    while let Some(mut tx) = m.poll_transmit() {
        o.handle_datagram(t, NOW_NANOS, addr(1), &mut tx.payload);
    }
    assert!(
        o.poll_transmit().is_none(),
        "non-member answered under policy"
    );
    assert!(!m.peer(m_peer, t).unwrap().has_session);
    assert!(!o.peer(o_peer, t).unwrap().has_session);
}

#[test]
fn revocation_tears_down_the_session_and_refuses_the_peer() {
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"hello");
    net.pump();
    assert_eq!(net.b.inbox.len(), 1);
    let bob_id = net.b.ep.node_id();
    net.advance(Duration::from_millis(500));
    assert!(
        net.a.ep.router().advert(bob_id).is_some(),
        "adverts exchanged"
    );
    let bob_cert = net.b.ep.identity().certificate().clone();
    let fp = bob_cert.fingerprint(&*crypto());
    let now = net.now;
    net.a.ep.set_revoked(now, [fp].into_iter().collect());
    net.collect();
    assert!(net
        .a
        .events
        .iter()
        .any(|e| matches!(e, Event::PeerRefused { .. })));
    let info = net.a.ep.peer(net.a.peer, now).unwrap();
    assert!(info.refused && !info.has_session);
    // Its link state is gone too (and would not be taken again).
    assert!(net.a.ep.router().advert(info.node_id).is_none());
    // Alice sends nothing to Bob any more, and starts no handshake.
    assert_eq!(
        net.send(true, b"x"),
        SendOutcome::Dropped(DropReason::PeerRefused)
    );
    assert!(net.wire.is_empty());
    // Bob's packets on the old session are dropped; his re-handshake is refused.
    net.send(false, b"still there?");
    net.pump();
    net.advance(Duration::from_secs(20));
    assert_eq!(net.a.inbox.len(), 0);
    assert!(net.a.ep.stats().handshake_failures.get("revoked").copied() >= Some(1));
    assert!(!net.a.ep.peer(net.a.peer, net.now).unwrap().has_session);
}

fn signed(
    mesh_seed: u64,
    kind: proto::bundle::BundleKind,
    version: u64,
    content: Vec<u8>,
) -> Vec<u8> {
    let mesh = Mesh::new(mesh_seed);
    proto::bundle::Bundle::sign(
        &*crypto(),
        &mesh.ca,
        &mesh.ca_seed,
        kind,
        version,
        NOW,
        content,
    )
    .unwrap()
    .as_bytes()
    .to_vec()
}

#[test]
fn a_policy_bundle_spreads_by_gossip_and_only_a_newer_valid_one_replaces_it() {
    use proto::bundle::BundleKind;
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"up");
    net.pump();
    // A policy of several chunks (padding comments), so the pull loops.
    let text = format!("{}\n# {}\n", ALICE_TO_BOB_DNS, "x".repeat(3000));
    let v2 = signed(1, BundleKind::Policy, 2, text.into_bytes());
    let now = net.now;
    assert_eq!(
        net.a.ep.apply_bundle(now, NOW_NANOS, &v2),
        Ok((BundleKind::Policy, 2))
    );
    net.collect();
    net.pump();
    assert_eq!(
        net.b.ep.bundle(BundleKind::Policy).map(|b| b.version()),
        Some(2)
    );
    assert!(net.b.ep.policy().is_some());
    assert!(net
        .b
        .events
        .iter()
        .any(|e| matches!(e, Event::BundleApplied { version: 2, .. })));
    // The policy is in force on Bob: his own new flow to Alice is refused.
    assert_eq!(
        net.send(false, &udp(40001, 53)),
        SendOutcome::Dropped(DropReason::PolicyDenied)
    );
    // A replayed older bundle, a forged one (another CA's key), a tampered
    // one: each refused and counted; version 2 stays.
    let v1 = signed(1, BundleKind::Policy, 1, b"".to_vec());
    let forged = signed(99, BundleKind::Policy, 3, b"".to_vec());
    let mut tampered = signed(1, BundleKind::Policy, 4, b"# ok\n".to_vec());
    let at = tampered.len() - 66; // inside the policy text
    tampered[at] ^= 1;
    let bad_policy = signed(1, BundleKind::Policy, 5, b"[[rule]]\naction = 1\n".to_vec());
    for (bundle, reason) in [
        (&v1, "not_newer"),
        (&forged, "wrong_issuer"),
        (&tampered, "bad_signature"),
        (&bad_policy, "bad_content"),
    ] {
        let e = net.b.ep.apply_bundle(now, NOW_NANOS, bundle).unwrap_err();
        assert_eq!(e.reason(), reason, "{e}");
        assert_eq!(net.b.ep.stats().bundle_rejects.get(reason), Some(&1));
    }
    assert_eq!(
        net.b.ep.bundle(BundleKind::Policy).map(|b| b.version()),
        Some(2)
    );
}

#[test]
fn a_revocation_list_from_gossip_cuts_the_revoked_peer() {
    use proto::bundle::{BundleKind, RevocationList};
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"up");
    net.pump();
    let mut list = RevocationList::default();
    list.revoke(&*crypto(), net.a.ep.identity().certificate());
    let bytes = signed(1, BundleKind::Revocation, 1, list.encode());
    // Alice receives her own revocation (as the first node told) and passes
    // it on before Bob tears her down... Bob applies it from the gossip.
    let now = net.now;
    net.a.ep.apply_bundle(now, NOW_NANOS, &bytes).unwrap();
    net.collect();
    net.pump();
    let info = net.b.ep.peer(net.b.peer, net.now).unwrap();
    assert!(info.refused && !info.has_session);
    assert!(net
        .b
        .ep
        .is_revoked(&net.a.ep.identity().certificate().fingerprint(&*crypto())));
}

#[test]
fn a_policy_key_the_ca_names_may_sign_until_it_expires_or_is_revoked() {
    use proto::bundle::{Bundle, BundleKind, RevocationList};
    let mesh = Mesh::new(1);
    let c = &*crypto();
    let seed = [9u8; 32];
    let signer = mesh
        .ca
        .issue_policy_signer(
            c,
            &mesh.ca_seed,
            "policy-1",
            c.ed25519_public_key(&seed),
            NOW - 10,
            NOW + 3600,
        )
        .unwrap();
    let sign = |version: u64, signer: &proto::cert::Certificate, seed: &[u8; 32]| {
        Bundle::sign_as(
            c,
            signer,
            seed,
            BundleKind::Policy,
            version,
            NOW,
            b"".to_vec(),
        )
        .unwrap()
        .as_bytes()
        .to_vec()
    };
    let mut net = Net::new(EndpointConfig::default());
    let now = net.now;
    assert_eq!(
        net.a
            .ep
            .apply_bundle(now, NOW_NANOS, &sign(1, &signer, &seed)),
        Ok((BundleKind::Policy, 1))
    );
    // Expired signer: refused.
    let old = mesh
        .ca
        .issue_policy_signer(
            c,
            &mesh.ca_seed,
            "policy-0",
            c.ed25519_public_key(&seed),
            NOW - 7200,
            NOW - 3600,
        )
        .unwrap();
    let e = net
        .a
        .ep
        .apply_bundle(now, NOW_NANOS, &sign(2, &old, &seed))
        .unwrap_err();
    assert_eq!(e.reason(), "bad_signer", "{e}");
    // Another CA's signer claiming ours: refused.
    let other = Mesh::new(2);
    let foreign = other
        .ca
        .issue_policy_signer(
            c,
            &other.ca_seed,
            "policy-x",
            c.ed25519_public_key(&seed),
            NOW - 10,
            NOW + 3600,
        )
        .unwrap();
    let e = net
        .a
        .ep
        .apply_bundle(now, NOW_NANOS, &sign(3, &foreign, &seed))
        .unwrap_err();
    assert_eq!(e.reason(), "wrong_issuer", "{e}");
    // Revoke the signer: its next bundle is refused.
    let mut list = RevocationList::default();
    list.revoke(c, &signer);
    let rev = Bundle::sign(
        c,
        &mesh.ca,
        &mesh.ca_seed,
        BundleKind::Revocation,
        1,
        NOW,
        list.encode(),
    )
    .unwrap();
    net.a
        .ep
        .apply_bundle(now, NOW_NANOS, rev.as_bytes())
        .unwrap();
    let e = net
        .a
        .ep
        .apply_bundle(now, NOW_NANOS, &sign(4, &signer, &seed))
        .unwrap_err();
    assert_eq!(e.reason(), "bad_signer", "{e}");
    assert_eq!(
        net.a.ep.bundle(BundleKind::Policy).map(|b| b.version()),
        Some(1)
    );
}
