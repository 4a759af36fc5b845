//! Joining by bootstrap address: key probes (type 6) between two real
//! endpoints that list no peer, in virtual time.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use proto::endpoint::{DropReason, Endpoint, EndpointConfig, Received, Transmit};
use proto::wire::{key_reply, KEY_REPLY_LEN, KEY_REQUEST_LEN};

fn endpoint(mesh: &Mesh, name: &str, n: u8, config: EndpointConfig) -> Endpoint {
    Endpoint::new(
        crypto(),
        mesh.ca.clone(),
        mesh.node(name, n),
        config,
        Box::new(rng(u64::from(n))),
    )
}

fn transmits(ep: &mut Endpoint) -> Vec<Transmit> {
    std::iter::from_fn(|| ep.poll_transmit()).collect()
}

#[test]
fn a_node_with_only_an_address_gets_the_key_and_a_session_and_nothing_else_passes() {
    let mesh = Mesh::new(31);
    let mut joiner = endpoint(&mesh, "joiner", 3, EndpointConfig::default());
    let mut member = endpoint(&mesh, "member", 1, EndpointConfig::default());
    let t = Instant::now();
    joiner.add_bootstrap(t, addr(1));
    joiner.handle_timeout(t, NOW_NANOS);
    let mut out = transmits(&mut joiner);
    assert_eq!(out.len(), 1);
    let req = out.remove(0);
    assert_eq!((req.dst, req.payload.len()), (addr(1), KEY_REQUEST_LEN));
    let nonce: [u8; 16] = req.payload[4..20].try_into().unwrap();
    // The member answers with its key, smaller than the request.
    let mut r = req.payload.clone();
    assert!(matches!(
        member.handle_datagram(t, NOW_NANOS, addr(3), &mut r),
        Received::Handshake
    ));
    let mut reply = transmits(&mut member);
    assert_eq!(reply.len(), 1);
    let reply = reply.remove(0);
    assert_eq!((reply.dst, reply.payload.len()), (addr(3), KEY_REPLY_LEN));
    // A reply from another address, or with another nonce, is nobody's.
    let forged = key_reply(nonce, &[7; 32]);
    let mut f = forged.to_vec();
    joiner.handle_datagram(t, NOW_NANOS, addr(9), &mut f);
    let mut f = key_reply([0; 16], &[7; 32]).to_vec();
    joiner.handle_datagram(t, NOW_NANOS, addr(1), &mut f);
    assert_eq!(joiner.stats().drops(DropReason::UnexpectedKeyReply), 2);
    assert!(joiner.peers(t).is_empty());
    // The real one: a peer by that key at that address, and an initiation.
    let mut p = reply.payload.clone();
    joiner.handle_datagram(t, NOW_NANOS, addr(1), &mut p);
    let peers = joiner.peers(t);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].endpoint, Some(addr(1)));
    // The handshake completes over the two (a learned peer at the member).
    let mut wire: Vec<(bool, Vec<u8>)> = transmits(&mut joiner)
        .into_iter()
        .map(|x| (true, x.payload))
        .collect();
    for _ in 0..10 {
        let batch = std::mem::take(&mut wire);
        for (to_member, mut d) in batch {
            if to_member {
                member.handle_datagram(t, NOW_NANOS, addr(3), &mut d);
                wire.extend(
                    transmits(&mut member)
                        .into_iter()
                        .map(|x| (false, x.payload)),
                );
            } else {
                joiner.handle_datagram(t, NOW_NANOS, addr(1), &mut d);
                wire.extend(
                    transmits(&mut joiner)
                        .into_iter()
                        .map(|x| (true, x.payload)),
                );
            }
        }
    }
    let peer = joiner.bootstraps()[0].1.expect("the address answered");
    assert!(joiner.peer(peer, t).unwrap().has_session);
    assert_eq!(
        joiner.peer(peer, t).unwrap().name.as_deref(),
        Some("member")
    );
    // Answered: no more requests, even much later.
    joiner.handle_timeout(t + Duration::from_secs(60), NOW_NANOS);
    assert!(transmits(&mut joiner)
        .iter()
        .all(|x| x.payload[0] != proto::wire::TYPE_KEY_PROBE));
}

#[test]
fn key_probes_are_answered_within_a_budget_or_not_at_all_and_retried_with_backoff() {
    let mesh = Mesh::new(32);
    let mut member = endpoint(&mesh, "member", 1, EndpointConfig::default());
    let t = Instant::now();
    let req = proto::wire::key_request([5; 16]);
    for _ in 0..80 {
        member.handle_datagram(t, NOW_NANOS, addr(3), &mut req.to_vec());
    }
    assert_eq!(transmits(&mut member).len(), 50, "the per-second budget");
    assert_eq!(member.stats().drops(DropReason::RateLimited), 30);
    let mut quiet = endpoint(
        &mesh,
        "quiet",
        2,
        EndpointConfig {
            answer_key_requests: false,
            ..EndpointConfig::default()
        },
    );
    quiet.handle_datagram(t, NOW_NANOS, addr(3), &mut req.to_vec());
    assert!(transmits(&mut quiet).is_empty());
    // Nobody answers: asked at 0, 1, 3, 7, 15 s.
    let mut joiner = endpoint(&mesh, "joiner", 3, EndpointConfig::default());
    joiner.add_bootstrap(t, addr(1));
    let mut asked = Vec::new();
    for ms in (0..16_000).step_by(100) {
        let now = t + Duration::from_millis(ms);
        if joiner.poll_timeout().is_some_and(|d| d <= now) {
            joiner.handle_timeout(now, NOW_NANOS);
        }
        if transmits(&mut joiner).iter().any(|x| x.payload[0] == 6) {
            asked.push(ms / 1000);
        }
    }
    assert_eq!(asked, vec![0, 1, 3, 7, 15]);
}

#[test]
fn a_bootstrap_address_that_is_our_own_is_asked_once_and_then_left_alone() {
    let mesh = Mesh::new(33);
    let mut me = endpoint(&mesh, "me", 1, EndpointConfig::default());
    let t = Instant::now();
    me.add_bootstrap(t, addr(1));
    me.handle_timeout(t, NOW_NANOS);
    let req = transmits(&mut me).remove(0);
    // It reaches ourselves (the same address).
    me.handle_datagram(t, NOW_NANOS, addr(1), &mut req.payload.clone());
    let reply = transmits(&mut me).remove(0);
    me.handle_datagram(t, NOW_NANOS, addr(1), &mut reply.payload.clone());
    assert!(me.peers(t).is_empty(), "no peer for ourselves");
    assert_eq!(me.bootstraps(), vec![(addr(1), None)]);
    assert_eq!(me.poll_timeout(), None, "nothing left to ask");
}
