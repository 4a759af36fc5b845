//! The endpoint's data path: source checks, replays, junk, the split
//! prepare/open/finish path, packets too big for the underlay.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::net::*;
use common::*;
use proto::endpoint::*;
use proto::wire::*;

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
            other => panic!("{other:?}"),
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
            other => panic!("{other:?}"),
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
