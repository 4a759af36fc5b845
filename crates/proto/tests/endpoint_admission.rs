//! Policy, enclaves, revocation and bundles through the endpoint.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::{Duration, Instant};

use common::net::*;
use common::*;
use proto::endpoint::*;

/// UDP header bytes (ports only; the rest does not matter to the filter).
fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = sport.to_be_bytes().to_vec();
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 8, 0, 0]);
    h
}

/// An endpoint of `mesh` with default settings.
fn endpoint(mesh: &Mesh, identity: proto::handshake::Identity, seed: u64) -> Endpoint {
    Endpoint::new(
        crypto(),
        mesh.ca.clone(),
        identity,
        EndpointConfig::default(),
        Box::new(rng(seed)),
    )
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
    let mut m = endpoint(&mesh, member, 107);
    let mut o = endpoint(&mesh, outsider, 108);
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

const PCI_ENCLAVE: &str =
    "enclaves = [\"pci\"]\n[[rule]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\n";

#[test]
fn an_enclave_policy_reaches_a_member_over_the_session_it_closes() {
    use proto::bundle::BundleKind;
    // Alice is outside the enclave, Bob in it; neither holds a policy and
    // their only session is the one the policy cuts.
    let mut net = Net::with_segments(EndpointConfig::default(), &["web"], &["pci"]);
    net.send(true, b"up");
    net.pump();
    net.send(false, b"back");
    net.pump();
    assert_eq!(net.b.inbox.len(), 1);
    // Several chunks, so the pull loops over the kept session.
    let text = format!("{PCI_ENCLAVE}# {}\n", "x".repeat(3000));
    let v1 = signed(1, BundleKind::Policy, 1, text.into_bytes());
    let now = net.now;
    net.a.ep.apply_bundle(now, NOW_NANOS, &v1).unwrap();
    net.collect();
    // At once: Bob is refused on Alice's side, his session kept for bundles.
    let info = net.a.ep.peer(net.a.peer, now).unwrap();
    assert!(info.refused && !info.has_session);
    assert!(matches!(
        info.handover,
        Handover::Open {
            delivered: false,
            ..
        }
    ));
    assert_eq!(
        net.send(true, b"x"),
        SendOutcome::Dropped(DropReason::PeerRefused)
    );
    // Bob, not yet holding the policy, sends data: dropped at Alice.
    let (inbox, refused) = (
        net.a.inbox.len(),
        net.a.ep.stats().drops(DropReason::PeerRefused),
    );
    assert!(matches!(net.send(false, b"data"), SendOutcome::Send { .. }));
    let data = net.wire.pop().unwrap();
    net.deliver(data.0, data.1);
    assert_eq!(net.a.inbox.len(), inbox);
    assert_eq!(net.a.ep.stats().drops(DropReason::PeerRefused), refused + 1);
    // The offer and the chunks cross: Bob holds the policy and refuses Alice.
    net.pump();
    assert_eq!(
        net.b.ep.bundle(BundleKind::Policy).map(|b| b.version()),
        Some(1)
    );
    let bob_side = net.b.ep.peer(net.b.peer, net.now).unwrap();
    assert!(bob_side.refused && !bob_side.has_session);
    assert_eq!(
        net.send(false, b"y"),
        SendOutcome::Dropped(DropReason::PeerRefused)
    );
    assert!(matches!(
        net.a.ep.peer(net.a.peer, net.now).unwrap().handover,
        Handover::Open {
            delivered: true,
            ..
        }
    ));
    // Within a second of the last chunk the session is gone at both ends,
    // and nothing starts it again.
    net.advance(Duration::from_millis(1100));
    assert_eq!(
        net.a.ep.peer(net.a.peer, net.now).unwrap().handover,
        Handover::Closed { delivered: true }
    );
    assert!(net.a.events.iter().any(|e| matches!(
        e,
        Event::HandoverEnded {
            delivered: true,
            ..
        }
    )));
    net.advance(HANDOVER);
    net.advance(Duration::from_secs(30));
    for a in [true, false] {
        let n = net.node(a);
        let id = n.peer;
        let now = net.now;
        let n = net.node(a);
        let p = n.ep.peer(id, now).unwrap();
        assert!(p.refused && !p.has_session && p.receiver_index.is_none());
    }
    assert!(net.wire.is_empty());
    assert_eq!(net.b.inbox.len(), 1);
}

#[test]
fn a_revoked_peer_gets_no_handover() {
    let mut net = Net::with_segments(EndpointConfig::default(), &["web"], &["pci"]);
    net.send(true, b"up");
    net.pump();
    let fp = net.b.ep.identity().certificate().fingerprint(&*crypto());
    let now = net.now;
    net.a.ep.set_revoked(now, [fp].into_iter().collect());
    let info = net.a.ep.peer(net.a.peer, now).unwrap();
    assert!(info.refused && info.receiver_index.is_none());
    assert_eq!(info.handover, Handover::None);
}

#[test]
fn a_configured_peer_outside_the_enclaves_is_never_initiated_to() {
    let mesh = Mesh::new(7);
    let member = mesh.node_in("pci-1", 1, &["pci"]);
    let outsider = mesh.node_in("web-1", 2, &["web"]);
    let outsider_cert = outsider.certificate().clone();
    let mut m = endpoint(&mesh, member, 107);
    let t = Instant::now();
    m.set_policy(t, policy(PCI_ENCLAVE));
    let peer = m
        .add_peer_certificate(t, NOW_NANOS, &outsider_cert, Some(addr(2)), None)
        .unwrap();
    assert!(m.peer(peer, t).unwrap().refused);
    // Traffic for it is refused before any handshake (which would carry
    // the member's certificate to it), now and on every timer.
    let pkt = ipv4([100, 64, 0, 1], [100, 64, 0, 2], b"x");
    let mut buf = vec![0u8; pkt.len() + proto::wire::TRANSPORT_OVERHEAD];
    buf[proto::wire::TRANSPORT_HEADER_LEN..][..pkt.len()].copy_from_slice(&pkt);
    assert_eq!(
        m.send(t, NOW_NANOS, peer, &mut buf, pkt.len()),
        SendOutcome::Dropped(DropReason::PeerRefused)
    );
    m.initiate(t, NOW_NANOS, peer);
    let mut now = t;
    for _ in 0..100 {
        assert!(
            m.poll_transmit().is_none(),
            "the member sent to an outsider"
        );
        now += Duration::from_millis(500);
        m.handle_timeout(now, NOW_NANOS);
    }
    assert!(m.poll_transmit().is_none());
}

#[test]
fn a_newer_bundle_offered_and_never_delivered_is_reported_with_its_age() {
    use proto::bundle::BundleKind;
    use proto::control::Control;
    let mut net = Net::new(EndpointConfig::default());
    net.send(false, &udp(1, 2));
    net.pump();
    assert_eq!(net.a.ep.newer_offered(BundleKind::Policy), None);
    // Bob offers a policy he cannot deliver (he holds none): Alice asks
    // for it, gets nothing, and remembers it was offered.
    let offer = |version| Control::BundleOffer {
        kind: 1,
        version,
        len: 100,
    };
    let t0 = net.now;
    let (now, peer) = (net.now, net.b.peer);
    assert!(net.b.ep.send_control(now, peer, &offer(7)));
    net.collect();
    net.pump();
    net.advance(Duration::from_secs(20));
    assert_eq!(net.a.ep.newer_offered(BundleKind::Policy), Some((7, t0)));
    // A newer version offered later keeps the age of the first offer.
    let (now, peer) = (net.now, net.b.peer);
    assert!(net.b.ep.send_control(now, peer, &offer(8)));
    net.collect();
    net.pump();
    assert_eq!(net.a.ep.newer_offered(BundleKind::Policy), Some((8, t0)));
    assert_eq!(net.a.ep.newer_offered(BundleKind::Revocation), None);
}
