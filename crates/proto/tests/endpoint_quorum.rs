//! Accusations through the endpoint (`proto::quorum`): Bob plays a lying
//! member. His accusations are held but quarantine nobody alone; one he
//! forges in another member's name is refused; a spray of them is capped
//! and raises an alert against him; three genuine accusers (whose
//! accusations Bob merely passes on, as a neighbour floods them) put the
//! accused in quarantine here, and a release discounts them.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::Duration;

use common::net::*;
use common::*;
use proto::control::{Accusation, Control};
use proto::endpoint::*;
use proto::handshake::Identity;
use proto::ids::Response;
use proto::wire::NodeId;

fn id(identity: &Identity) -> NodeId {
    NodeId::of(identity.static_public())
}

/// An accusation by `by` (signed with its key) of `accused`.
fn accusation(net: &Net, by: &Identity, accused: NodeId, seq: u64) -> Accusation {
    let unix = net.unix() / 1_000_000_000;
    let mut a = Accusation {
        accuser: id(by),
        accused,
        seq,
        since_unix: unix,
        expires_unix: unix + 600,
        withdrawn: false,
        scenario: "scan".into(),
        cert: by.certificate().as_bytes().to_vec(),
        signature: [0; 64],
    };
    a.signature = by.sign_advert(&*crypto(), &a.signed_bytes());
    a
}

/// Bob sends `a` to Alice in his session.
fn bob_sends(net: &mut Net, a: Accusation) {
    let (now, peer) = (net.now, net.b.peer);
    assert!(net.b.ep.send_control(now, peer, &Control::Accusation(a)));
    net.collect();
    net.pump();
}

fn rejects(net: &Net, reason: &str) -> u64 {
    let s = net.a.ep.stats();
    s.accusation_rejects.get(reason).copied().unwrap_or(0)
}

fn session() -> Net {
    let mut net = Net::new(EndpointConfig::default());
    net.send(false, &[0; 8]);
    net.pump();
    assert_eq!(net.a.inbox.len(), 1);
    net
}

#[test]
fn a_lying_member_quarantines_nobody_and_is_flagged_for_accusing_many() {
    let mut net = session();
    let mesh = Mesh::new(1);
    let bob = mesh.node("bob", 2);
    let carol = mesh.node("carol", 3);
    let dave = mesh.node("dave", 4);
    // Bob accuses Carol: held, counted, no sanction.
    let a = accusation(&net, &bob, id(&carol), 1);
    bob_sends(&mut net, a);
    let held = net.a.ep.accusations(net.now);
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].0, held[0].1, held[0].4),
        (id(&carol), id(&bob), true)
    );
    assert!(net.a.ep.sanctioned(net.now).is_empty());
    // Bob forges one in Dave's name (Dave's certificate, Bob's signature):
    // refused.
    let mut forged = accusation(&net, &bob, id(&carol), 1);
    forged.accuser = id(&dave);
    forged.cert = dave.certificate().as_bytes().to_vec();
    bob_sends(&mut net, forged);
    assert_eq!(rejects(&net, "bad_signature"), 1);
    // A certificate not Dave's under Dave's name: refused too.
    let mut borrowed = accusation(&net, &bob, id(&carol), 1);
    borrowed.accuser = id(&dave);
    bob_sends(&mut net, borrowed);
    assert_eq!(rejects(&net, "bad_certificate"), 1);
    assert_eq!(net.a.ep.accusations(net.now).len(), 1);
    // Bob sprays accusations at twenty more members, a second apart (his
    // allowance of news is one a second): at most 8 of his hold at once,
    // and accusing that many raises an alert against him.
    for n in 0..20u64 {
        net.advance(Duration::from_secs(1));
        let a = accusation(&net, &bob, NodeId(1000 + n), 1);
        bob_sends(&mut net, a);
    }
    let by_bob = (net.a.ep.accusations(net.now).into_iter())
        .filter(|a| a.1 == id(&bob))
        .count();
    assert_eq!(by_bob, 8);
    assert_eq!(rejects(&net, "too_many"), 13);
    assert!(net.a.ep.sanctioned(net.now).is_empty());
    let flagged: Vec<_> = (net.a.ep.alerts().into_iter())
        .filter(|a| a.scenario == "accusations")
        .collect();
    assert!(!flagged.is_empty());
    assert!(flagged
        .iter()
        .all(|a| a.node == id(&bob) && a.response == Response::Alert));
}

#[test]
fn three_accusers_agree_and_a_release_discounts_them() {
    let mut net = session();
    let mesh = Mesh::new(1);
    let accusers = [
        mesh.node("carol", 3),
        mesh.node("dave", 4),
        mesh.node("erin", 5),
    ];
    let frank = NodeId(0xf4a2);
    // Two accusers are not a quorum; a third is. Bob only passes them on:
    // Alice checks each against its accuser's own certificate.
    for (i, by) in accusers.iter().enumerate() {
        let a = accusation(&net, by, frank, 1);
        bob_sends(&mut net, a);
        let s = net.a.ep.sanctioned(net.now);
        if i < 2 {
            assert!(s.is_empty(), "{i}: {s:?}");
        } else {
            assert_eq!(s.len(), 1);
            assert_eq!((s[0].node, s[0].by_quorum), (frank, true));
            assert_eq!(s[0].response, Response::Quarantine);
        }
    }
    let quorum_alert = (net.a.events.iter()).find_map(|e| match e {
        Event::Alert { alert, .. } if alert.scenario == "quorum" => Some(alert.clone()),
        _ => None,
    });
    assert_eq!(quorum_alert.unwrap().accusers.len(), 3);
    // A copy of one arrives again: no news, not flooded on.
    let taken = net.a.ep.stats().accusations_taken;
    let a = accusation(&net, &accusers[0], frank, 1);
    bob_sends(&mut net, a);
    assert_eq!(net.a.ep.stats().accusations_taken, taken);
    // Without refreshes the accusations lapse within their hold (35 s).
    net.advance(Duration::from_secs(36));
    assert!(net.a.ep.sanctioned(net.now).is_empty());
    // Refreshed (a new quarantine), agreed again; the operator releases
    // Frank here, and refreshes of the same quarantines stay discounted.
    for by in &accusers {
        let a = accusation(&net, by, frank, 2);
        bob_sends(&mut net, a);
    }
    assert_eq!(net.a.ep.sanctioned(net.now).len(), 1);
    let now = net.now;
    assert!(net.a.ep.release(now, frank));
    net.advance(Duration::from_secs(10));
    for by in &accusers {
        let mut a = accusation(&net, by, frank, 3);
        a.since_unix -= 10;
        a.signature = by.sign_advert(&*crypto(), &a.signed_bytes());
        bob_sends(&mut net, a);
    }
    assert!(net.a.ep.sanctioned(net.now).is_empty());
    assert!(net.a.ep.accusations(net.now).iter().all(|a| !a.4));
}
