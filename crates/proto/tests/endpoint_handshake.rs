//! The endpoint's handshakes in virtual time: first contact, fragments,
//! cookies under load, floods, crossing handshakes, resync after a restart.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::net::*;
use common::*;
use proto::endpoint::*;
use proto::timers::REKEY_TIMEOUT;
use proto::wire::*;

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
fn the_responder_learns_the_initiators_clock_offset_from_its_timestamp() {
    let mut net = Net::new(EndpointConfig::default());
    // a's clock reads 42 s ahead of b's when it initiates.
    let ahead = 42_000_000_000;
    assert_eq!(
        net.send_at(true, b"hello", net.unix() + ahead),
        SendOutcome::Queued
    );
    net.pump();
    assert_eq!(net.completed(false), 1);
    let at_b = &net.b.ep.peers(net.now)[0];
    assert_eq!(at_b.clock_offset_ms, Some(42_000));
    // The initiator learns nothing from message 2 (it has no timestamp).
    assert_eq!(net.a.ep.peers(net.now)[0].clock_offset_ms, None);
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

/// Both sides start a handshake at the same moment (as two meshd starting
/// together), and both complete.
fn cross(net: &mut Net) {
    let (now, unix) = (net.now, net.unix());
    net.a.ep.initiate(now, unix, net.a.peer);
    net.b.ep.initiate(now, unix, net.b.peer);
    net.collect();
    net.pump();
}

#[test]
fn crossing_handshakes_both_work_without_lost_packets() {
    let mut net = Net::new(EndpointConfig::default());
    cross(&mut net);
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

#[test]
fn a_rekey_after_crossed_handshakes_keeps_the_session_the_peer_sends_on() {
    // After crossed handshakes each side sends on the session it
    // initiated. b rekeys: until a hears b on the new session, a still
    // sends on its own, which b must keep (not the one b sent on).
    let mut net = Net::new(EndpointConfig::default());
    cross(&mut net);
    for i in 0..3u8 {
        net.send(true, &[i]);
        net.send(false, &[i]);
        net.pump();
    }
    net.advance(Duration::from_secs(1));
    let (now, unix) = (net.now, net.unix());
    net.b.ep.initiate(now, unix, net.b.peer);
    net.collect();
    // The handshake only: whatever b sends on the new session is lost (or
    // b has nothing to send yet), so a has not heard b on it.
    for _ in 0..10 {
        let batch: Vec<_> = net.wire.drain(..).collect();
        for (from_a, d) in batch {
            if d[0] != 4 {
                net.deliver(from_a, d);
            }
        }
    }
    assert_eq!(net.completed(false), 3, "b's rekey completed");
    let before = net.b.inbox.len();
    assert!(matches!(net.send(true, b"after"), SendOutcome::Send { .. }));
    net.pump();
    assert_eq!(
        net.b.inbox.len(),
        before + 1,
        "a's packet on its own session arrived"
    );
    assert_eq!(net.b.ep.stats().total_drops(), 0, "{:?}", net.b.ep.stats());
}

#[test]
fn restarted_peer_resyncs_on_the_first_packet_for_a_lost_session() {
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"0");
    net.pump();
    // B restarts: same identity, no sessions.
    let alice_pub = net.restart_b(104);
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
}

/// Anyone can send from a peer's address: junk with an unknown receiver
/// index, spoofed from it, must not make a node re-handshake with a peer it
/// holds a session with (each hybrid handshake costs both ends, and it took
/// links down and moved paths in namespaces). Without a session, at most
/// one initiation per REKEY_TIMEOUT.
#[test]
fn junk_spoofed_from_a_peers_address_cannot_force_handshakes() {
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"0");
    net.pump();
    let junk = |net: &mut Net| {
        let (now, unix) = (net.now, net.unix());
        for i in 0..100u8 {
            let mut d = vec![0u8; 48];
            d[0] = 4;
            d[4] = 0xee;
            d[5] = i;
            net.b.ep.handle_datagram(now, unix, addr(1), &mut d);
        }
    };
    let before = net.b.ep.stats().initiations_sent;
    for _ in 0..6 {
        junk(&mut net);
        net.now += REKEY_TIMEOUT;
    }
    assert_eq!(
        net.b.ep.stats().initiations_sent,
        before,
        "re-handshaked on junk"
    );
    assert!(net.b.ep.peer(net.b.peer, net.now).unwrap().has_session);
    // Without a session (B restarted), the first one resyncs, the rest of
    // the burst wait REKEY_TIMEOUT.
    let alice_pub = net.restart_b(106);
    net.b.peer = net.b.ep.add_peer(alice_pub, Some(addr(1)), None);
    junk(&mut net);
    assert_eq!(net.b.ep.stats().initiations_sent, 1);
}

/// A responder that restarted has forgotten the timestamps of initiations
/// it accepted (as WireGuard), so a recorded message 1 replayed from
/// elsewhere is answered once. It must not redirect the peer's traffic to
/// the replayer, nor count as a completed handshake: the replayer cannot
/// send on the session, so it is never confirmed.
#[test]
fn a_replayed_initiation_after_a_restart_neither_moves_the_peer_nor_completes() {
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"0");
    let recorded: Vec<Vec<u8>> = net
        .wire
        .iter()
        .filter(|(to_b, d)| *to_b && d[0] == 1)
        .map(|(_, d)| d.clone())
        .collect();
    assert!(!recorded.is_empty(), "no initiation on the wire");
    net.pump();
    let alice_pub = net.restart_b(107);
    net.b.peer = net.b.ep.add_peer(alice_pub, Some(addr(1)), None);
    let (now, unix) = (net.now, net.unix());
    let attacker = SocketAddr::from(([198, 18, 0, 66], 4444));
    for f in &recorded {
        let mut d = f.clone();
        net.b.ep.handle_datagram(now, unix, attacker, &mut d);
    }
    let answered = std::iter::from_fn(|| net.b.ep.poll_transmit()).count();
    assert!(
        answered > 0,
        "the replay was not even answered: test is vacuous"
    );
    let p = net.b.ep.peer(net.b.peer, now).unwrap();
    assert_eq!(
        p.endpoint,
        Some(addr(1)),
        "the replayer took the peer's address"
    );
    assert_eq!(net.b.ep.stats().handshakes_completed, 0);
    assert!(!p.has_session);
}

/// Under handshake load, each source address gets a small share of the
/// node's handshake work (MAC checks, cookie replies) and all sources
/// together a bounded amount, before any hashing: a flood from one
/// address, or from thousands of spoofed ones, costs the node no more.
#[test]
fn under_load_each_source_and_all_sources_together_get_a_bounded_share() {
    let mut net = Net::new(EndpointConfig {
        handshake_load_threshold: 5,
        ..EndpointConfig::default()
    });
    net.b.ep.set_under_load(Some(true));
    net.send(true, b"x");
    let first = net
        .wire
        .iter()
        .find(|(to_b, d)| *to_b && d[0] == 1 && d[1] == 0)
        .map(|(_, d)| d.clone())
        .unwrap();
    net.wire.clear();
    let (now, unix) = (net.now, net.unix());
    let flood = |ep: &mut Endpoint, n: u32, src: &dyn Fn(u32) -> SocketAddr| {
        for i in 0..n {
            let mut d = first.clone();
            ep.handle_datagram(now, unix, src(i), &mut d);
        }
        while ep.poll_transmit().is_some() {}
    };
    flood(&mut net.b.ep, 1000, &|_| addr(66));
    let st = net.b.ep.stats();
    assert_eq!(st.cookie_replies_sent, 5, "one source: its burst");
    assert_eq!(st.drops(DropReason::RateLimited), 995);
    flood(&mut net.b.ep, 1, &|_| addr(67));
    assert_eq!(
        net.b.ep.stats().cookie_replies_sent,
        6,
        "another source is not starved"
    );
    flood(&mut net.b.ep, 10_000, &|i| {
        SocketAddr::from(([198, 19, (i >> 8) as u8, i as u8], 4000))
    });
    // All sources together: at most twice the threshold of cookie replies
    // (a burst of 10 here), and ten times it of fragments looked at.
    let st = net.b.ep.stats();
    assert_eq!(st.cookie_replies_sent, 10, "the reply budget, and no more");
    let looked_at = st.drops(DropReason::CookieRequired);
    assert!(looked_at <= 6 + 50, "{looked_at} fragments looked at");
}

/// Message 1 of A's handshake with B, as fragments on the wire to B.
fn initiation_fragments(net: &mut Net) -> Vec<Vec<u8>> {
    net.send(true, b"x");
    let frags: Vec<Vec<u8>> = net
        .wire
        .drain(..)
        .filter(|(to_b, _)| *to_b)
        .map(|(_, d)| d)
        .collect();
    assert!(frags.len() >= 2, "message 1 is fragmented");
    frags
}

/// B prepares each fragment as from `src`; the plan of the complete
/// message, or the drop of its last fragment.
fn prepare_all(net: &mut Net, frags: &[Vec<u8>], src: SocketAddr) -> Incoming {
    let (now, unix) = (net.now, net.unix());
    let mut last = None;
    for f in frags {
        last = Some(net.b.ep.prepare_datagram(now, unix, src, &mut f.clone()));
    }
    last.unwrap()
}

#[test]
fn a_complete_initiation_is_a_plan_run_outside_the_endpoint() {
    let mut net = Net::new(EndpointConfig::default());
    let frags = initiation_fragments(&mut net);
    let Incoming::Respond(plan) = prepare_all(&mut net, &frags, addr(1)) else {
        panic!("a complete initiation is a plan");
    };
    assert!(net.b.ep.poll_transmit().is_none(), "no reply before it ran");
    // The plan needs nothing of the endpoint: it runs on another thread.
    let done = std::thread::spawn(move || plan.run()).join().unwrap();
    let (now, unix) = (net.now, net.unix());
    assert_eq!(
        net.b.ep.finish_respond(now, unix, done),
        Received::Handshake
    );
    net.collect();
    net.pump();
    assert_eq!(net.completed(true), 1);
    assert!(net.b.inbox[0].ends_with(b"x"), "A's queued packet arrived");
    // The same message again (a replay) plans, and fails when run.
    let Incoming::Respond(replayed) = prepare_all(&mut net, &frags, addr(1)) else {
        panic!("a complete initiation is a plan");
    };
    let failed = net
        .b
        .ep
        .stats()
        .handshake_failures
        .get("replayed_initiation")
        .copied();
    assert_eq!(
        net.b.ep.finish_respond(now, unix, replayed.run()),
        Received::Dropped(DropReason::HandshakeFailed)
    );
    assert_eq!(
        net.b
            .ep
            .stats()
            .handshake_failures
            .get("replayed_initiation")
            .copied(),
        Some(failed.unwrap_or(0) + 1)
    );
}

#[test]
fn plans_outstanding_put_the_node_under_load_and_are_bounded() {
    let mut net = Net::new(EndpointConfig::default());
    let frags = initiation_fragments(&mut net);
    // A driver that does not keep up: plans pile up unrun. From
    // PLANS_UNDER_LOAD on, an initiation without mac2 gets a cookie reply.
    let mut held = Vec::new();
    for n in 0..PLANS_UNDER_LOAD {
        match prepare_all(&mut net, &frags, addr(10 + n as u8)) {
            Incoming::Respond(p) => held.push(p),
            other => panic!("plan {n}: {other:?}"),
        }
    }
    let cookies = net.b.ep.stats().cookie_replies_sent;
    let (required, orphans) = (
        net.b.ep.stats().drops(DropReason::CookieRequired),
        net.b.ep.stats().drops(DropReason::FragmentOrphan),
    );
    let r = prepare_all(&mut net, &frags, addr(200));
    // The first fragment earns the cookie reply; the later ones, with no
    // first fragment taken to join, are dropped before any MAC.
    assert!(
        matches!(
            r,
            Incoming::Done(Received::Dropped(DropReason::FragmentOrphan))
        ),
        "{r:?}"
    );
    assert!(frags.len() > 1);
    assert_eq!(net.b.ep.stats().cookie_replies_sent, cookies + 1);
    assert_eq!(
        net.b.ep.stats().drops(DropReason::CookieRequired),
        required + 1
    );
    assert_eq!(
        net.b.ep.stats().drops(DropReason::FragmentOrphan),
        orphans + frags.len() as u64 - 1
    );
    // Past MAX_PLANS (load forced off, so mac2 is not asked for), complete
    // initiations are dropped until plans are run or dropped.
    net.b.ep.set_under_load(Some(false));
    let mut n = 0u32;
    while held.len() < MAX_PLANS {
        n += 1;
        let src = SocketAddr::from(([198, 18, (n >> 8) as u8, n as u8], 51820));
        match prepare_all(&mut net, &frags, src) {
            Incoming::Respond(p) => held.push(p),
            other => panic!("plan {}: {other:?}", held.len()),
        }
    }
    let src = SocketAddr::from(([198, 19, 0, 1], 51820));
    let r = prepare_all(&mut net, &frags, src);
    assert!(
        matches!(
            r,
            Incoming::Done(Received::Dropped(DropReason::HandshakeBacklog))
        ),
        "{r:?}"
    );
    drop(held.pop());
    assert!(matches!(
        prepare_all(&mut net, &frags, src),
        Incoming::Respond(_)
    ));
}
