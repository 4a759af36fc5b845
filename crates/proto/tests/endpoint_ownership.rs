//! Who holds an overlay address or a node name: a second CA-signed
//! certificate cannot take them from the node that holds them, a configured
//! peer holds its own from the start, revocation frees them, and a node can
//! accept only configured peers or given segments.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use common::*;
use crypto::RealCrypto;
use proto::endpoint::*;
use proto::handshake::Identity;

/// Moves datagrams between two endpoints until neither has anything to send.
fn exchange(x: (&mut Endpoint, SocketAddr), y: (&mut Endpoint, SocketAddr), t: Instant) {
    let ((a, a_addr), (b, b_addr)) = (x, y);
    for _ in 0..10 {
        let mut moved = false;
        while let Some(mut tx) = a.poll_transmit() {
            b.handle_datagram(t, NOW_NANOS, a_addr, &mut tx.payload);
            moved = true;
        }
        while let Some(mut tx) = b.poll_transmit() {
            a.handle_datagram(t, NOW_NANOS, b_addr, &mut tx.payload);
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

/// A node named `name` at overlay `ip`, with static secret `[n; 32]`.
fn node(mesh: &Mesh, name: &str, ip: [u8; 4], n: u8) -> Identity {
    let cert = mesh.cert(name, ip, [n; 32], NOW - 3600, NOW + 86_400);
    Identity::new(&RealCrypto, cert, [n; 32]).unwrap()
}

fn endpoint(mesh: &Mesh, id: Identity, config: EndpointConfig, seed: u64) -> Endpoint {
    Endpoint::new(crypto(), mesh.ca.clone(), id, config, Box::new(rng(seed)))
}

const BOB_IP: [u8; 4] = [100, 64, 0, 2];

/// Alice with a session to bob (100.64.0.2); mallory's certificate claims
/// `mallory_ip` under `mallory_name`.
struct Scene {
    mesh: Mesh,
    alice: Endpoint,
    bob: Endpoint,
    to_bob: PeerId,
    t: Instant,
}

fn scene() -> Scene {
    let mesh = Mesh::new(21);
    let (a, b) = (mesh.node("alice", 1), node(&mesh, "bob", BOB_IP, 2));
    let (a_pub, b_pub) = (*a.static_public(), *b.static_public());
    let mut alice = endpoint(&mesh, a, EndpointConfig::default(), 1);
    let mut bob = endpoint(&mesh, b, EndpointConfig::default(), 2);
    let to_bob = alice.add_peer(b_pub, Some(addr(2)), None);
    bob.add_peer(a_pub, Some(addr(1)), None);
    let t = Instant::now();
    alice.initiate(t, NOW_NANOS, to_bob);
    exchange((&mut alice, addr(1)), (&mut bob, addr(2)), t);
    assert!(alice.peer(to_bob, t).unwrap().has_session);
    Scene {
        mesh,
        alice,
        bob,
        to_bob,
        t,
    }
}

/// Mallory, knowing alice, initiates to her; returns mallory and whether
/// alice answered.
fn mallory_dials(s: &mut Scene, name: &str, ip: [u8; 4]) -> (Endpoint, PeerId, bool) {
    let m = node(&s.mesh, name, ip, 9);
    let mut mallory = endpoint(&s.mesh, m, EndpointConfig::default(), 9);
    let to_alice = mallory.add_peer(*s.alice.identity().static_public(), Some(addr(1)), None);
    mallory.initiate(s.t, NOW_NANOS, to_alice);
    let mut answered = false;
    while let Some(mut tx) = mallory.poll_transmit() {
        s.alice
            .handle_datagram(s.t, NOW_NANOS, addr(9), &mut tx.payload);
        while let Some(mut back) = s.alice.poll_transmit() {
            answered = true;
            mallory.handle_datagram(s.t, NOW_NANOS, addr(1), &mut back.payload);
        }
    }
    (mallory, to_alice, answered)
}

#[test]
fn an_impostor_certificate_cannot_take_an_address_another_node_holds() {
    let mut s = scene();
    let bob_ip = IpAddr::from(BOB_IP);
    assert_eq!(s.alice.peer_by_address(bob_ip), Some(s.to_bob));
    let (_m, _, answered) = mallory_dials(&mut s, "mallory", BOB_IP);
    assert!(
        !answered,
        "alice answered a certificate claiming bob's address"
    );
    let st = s.alice.stats();
    assert_eq!(st.handshake_failures.get("address_taken"), Some(&1));
    assert_eq!(s.alice.peer_by_address(bob_ip), Some(s.to_bob));
    let info = s.alice.peer(s.to_bob, s.t).unwrap();
    assert!(info.has_session, "bob keeps his session");
    assert_eq!(info.addresses, vec![bob_ip]);
    assert_eq!(info.name.as_deref(), Some("bob"));
}

#[test]
fn an_impostor_certificate_cannot_take_a_name_another_node_holds() {
    let mut s = scene();
    let (_m, _, answered) = mallory_dials(&mut s, "bob", [100, 64, 0, 9]);
    assert!(!answered);
    assert_eq!(
        s.alice.stats().handshake_failures.get("name_taken"),
        Some(&1)
    );
    assert_eq!(s.alice.peer_by_name("bob"), Some(s.to_bob));
    assert_eq!(s.alice.peer_by_address(IpAddr::from([100, 64, 0, 9])), None);
}

#[test]
fn revoking_the_holder_frees_its_address() {
    let mut s = scene();
    let bob_cert = s.bob.identity().certificate().clone();
    s.alice.set_revoked(
        s.t,
        std::iter::once(bob_cert.fingerprint(&RealCrypto)).collect(),
    );
    assert_eq!(s.alice.peer_by_address(IpAddr::from(BOB_IP)), None);
    let (_m, _, answered) = mallory_dials(&mut s, "mallory", BOB_IP);
    assert!(answered, "the address is free once its holder is revoked");
    let owner = s.alice.peer_by_address(IpAddr::from(BOB_IP)).unwrap();
    assert_ne!(owner, s.to_bob);
    assert_eq!(s.alice.peer_by_name("mallory"), Some(owner));
}

#[test]
fn a_configured_peer_holds_its_address_from_the_start_and_displaces_a_learned_one() {
    let mesh = Mesh::new(22);
    let alice_id = mesh.node("alice", 1);
    let a_pub = *alice_id.static_public();
    let mut alice = endpoint(&mesh, alice_id, EndpointConfig::default(), 1);
    let t = Instant::now();
    // Mallory reaches alice first, claiming 100.64.0.2.
    let mut mallory = endpoint(
        &mesh,
        node(&mesh, "mallory", BOB_IP, 9),
        EndpointConfig::default(),
        9,
    );
    let to_alice = mallory.add_peer(a_pub, Some(addr(1)), None);
    mallory.initiate(t, NOW_NANOS, to_alice);
    exchange((&mut mallory, addr(9)), (&mut alice, addr(1)), t);
    let learned = alice.peer_by_address(IpAddr::from(BOB_IP)).unwrap();
    assert!(alice.peer(learned, t).unwrap().has_session);
    // The operator configures bob with that address: bob holds it, mallory
    // is cut off.
    let bob_cert = mesh.cert("bob", BOB_IP, [2; 32], NOW - 3600, NOW + 86_400);
    let bob = alice
        .add_peer_certificate(t, NOW_NANOS, &bob_cert, Some(addr(2)), None)
        .unwrap();
    assert_eq!(alice.peer_by_address(IpAddr::from(BOB_IP)), Some(bob));
    assert_eq!(alice.peer_by_name("bob"), Some(bob));
    assert!(!alice.peer(learned, t).unwrap().has_session);
    let mut events = Vec::new();
    while let Some(e) = alice.poll_event() {
        events.push(e);
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::PeerRefused { peer, .. } if *peer == learned)),
        "{events:?}"
    );
    // A second configured certificate for the same address is an error.
    let twin = mesh.cert("bob-2", BOB_IP, [3; 32], NOW - 3600, NOW + 86_400);
    let e = alice
        .add_peer_certificate(t, NOW_NANOS, &twin, None, None)
        .unwrap_err();
    assert_eq!(e.reason(), "address_taken");
    // Mallory's next handshake fails.
    mallory.initiate(t, NOW_NANOS, to_alice);
    exchange((&mut mallory, addr(9)), (&mut alice, addr(1)), t);
    assert!(!alice.peer(learned, t).unwrap().has_session);
    assert_eq!(alice.peer_by_address(IpAddr::from(BOB_IP)), Some(bob));
}

#[test]
fn a_node_can_accept_only_configured_peers_or_given_segments() {
    let mut s = scene();
    // Only segment "ops" may join unconfigured; mallory is in "test".
    let a = s.mesh.node("alice", 1);
    s.alice = endpoint(
        &s.mesh,
        a,
        EndpointConfig {
            accept_segments: vec!["ops".into()],
            ..EndpointConfig::default()
        },
        3,
    );
    let (_m, _, answered) = mallory_dials(&mut s, "mallory", [100, 64, 0, 9]);
    assert!(!answered);
    assert_eq!(
        s.alice.stats().handshake_failures.get("not_accepted"),
        Some(&1)
    );
    // Configured peers only.
    let a = s.mesh.node("alice", 1);
    s.alice = endpoint(
        &s.mesh,
        a,
        EndpointConfig {
            accept_unknown_peers: false,
            ..EndpointConfig::default()
        },
        4,
    );
    let (_m, _, answered) = mallory_dials(&mut s, "mallory", [100, 64, 0, 9]);
    assert!(!answered);
    assert_eq!(s.alice.stats().drops(DropReason::UnknownPeer), 1);
}
