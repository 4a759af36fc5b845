//! Identity churn: learned peers that are gone are removed, so the peer
//! table (and what names its peers) returns to its size.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::{Duration, Instant};

use common::*;
use proto::endpoint::*;
use proto::wire::{TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};

/// One node that dials the hub and leaves.
struct Visitor {
    ep: Endpoint,
    hub: PeerId,
    n: u8,
}

/// Delivers datagrams between the hub and the visitors until quiet.
fn pump(now: Instant, unix: u64, hub: &mut Endpoint, visitors: &mut [Visitor]) {
    for _ in 0..50 {
        let mut moved = false;
        for v in visitors.iter_mut() {
            while let Some(mut t) = v.ep.poll_transmit() {
                moved = true;
                hub.handle_datagram(now, unix, addr(v.n), &mut t.payload);
            }
        }
        while let Some(mut t) = hub.poll_transmit() {
            moved = true;
            if let Some(v) = visitors.iter_mut().find(|v| addr(v.n) == t.dst) {
                v.ep.handle_datagram(now, unix, addr(1), &mut t.payload);
            }
        }
        if !moved {
            return;
        }
    }
    panic!("the network did not go quiet");
}

fn send(now: Instant, unix: u64, v: &mut Visitor, payload: &[u8]) -> SendOutcome {
    let pkt = ipv4([100, 64, 0, v.n], [100, 64, 0, 1], payload);
    let mut buf = vec![0u8; pkt.len() + TRANSPORT_OVERHEAD];
    buf[TRANSPORT_HEADER_LEN..][..pkt.len()].copy_from_slice(&pkt);
    v.ep.send(now, unix, v.hub, &mut buf, pkt.len())
}

fn visitor(mesh: &Mesh, hub_public: [u8; 32], n: u8) -> Visitor {
    let mut ep = Endpoint::new(
        crypto(),
        mesh.ca.clone(),
        mesh.node(&format!("v{n}"), n),
        EndpointConfig::default(),
        Box::new(rng(1000 + u64::from(n))),
    );
    let hub = ep.add_peer(hub_public, Some(addr(1)), None);
    Visitor { ep, hub, n }
}

#[test]
fn learned_peers_that_are_gone_are_removed_and_the_table_returns_to_its_size() {
    let mesh = Mesh::new(1);
    let mut hub = Endpoint::new(
        crypto(),
        mesh.ca.clone(),
        mesh.node("hub", 1),
        EndpointConfig::default(),
        Box::new(rng(1)),
    );
    let hub_public = *hub.identity().static_public();
    let t0 = Instant::now();
    // 12 identities dial in, talk, and leave for good.
    let mut visitors: Vec<Visitor> = (2..14).map(|n| visitor(&mesh, hub_public, n)).collect();
    for v in &mut visitors {
        assert_eq!(send(t0, NOW_NANOS, v, b"hello"), SendOutcome::Queued);
    }
    pump(t0, NOW_NANOS, &mut hub, &mut visitors);
    assert_eq!(hub.peers(t0).len(), 12);
    assert!(hub.peers(t0).iter().all(|p| p.has_session));
    let ids: Vec<PeerId> = hub.peers(t0).iter().map(|p| p.id).collect();
    let address_of_v2 = std::net::IpAddr::from([100, 64, 0, 2]);
    assert!(hub.peer_by_address(address_of_v2).is_some());
    // They are gone: the hub's timers run on, nothing answers.
    visitors.clear();
    let mut now = t0;
    let end = t0 + RETIRE_AFTER + Duration::from_secs(30);
    while now < end {
        now = hub.poll_timeout().unwrap_or(end).clamp(now, end);
        hub.handle_timeout(now, NOW_NANOS);
        while hub.poll_transmit().is_some() {}
        while hub.poll_event().is_some() {}
        now += Duration::from_millis(1);
    }
    assert_eq!(hub.peers(now).len(), 0, "the learned peers stayed");
    assert_eq!(hub.stats().peers_removed, 12);
    // Their ids are refused, and their addresses free.
    for id in ids {
        assert!(hub.peer(id, now).is_none());
    }
    assert!(hub.peer_by_address(address_of_v2).is_none());
    // One comes back (later on the wall clock: its initiation must be newer
    // than the last one the hub saw from it, which it still remembers):
    // learned afresh, in a reused slot under a new id.
    let later = NOW_NANOS + 100_000_000_000;
    let mut back = vec![visitor(&mesh, hub_public, 2)];
    assert_eq!(
        send(now, later, &mut back[0], b"again"),
        SendOutcome::Queued
    );
    pump(now, later, &mut hub, &mut back);
    let peers = hub.peers(now);
    assert_eq!(peers.len(), 1);
    assert!(peers[0].has_session);
    assert_eq!(hub.peer_by_address(address_of_v2), Some(peers[0].id));
}
