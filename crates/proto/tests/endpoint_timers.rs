//! WireGuard's timers through the endpoint in virtual time: rekeying,
//! rejection, retransmission, keepalives, retirement. No test sleeps.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::Duration;

use common::net::*;
use proto::endpoint::*;
use proto::timers::*;

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

/// A node that sends message 1 and vanishes before confirming the session
/// (its keepalive never comes) is removed like any learned peer: its
/// unconfirmed session holds nothing. A CA-signed identity could otherwise
/// leave an entry per certificate in a hub's table until the session's
/// keys are zeroed minutes later.
#[test]
fn a_learned_peer_that_never_confirms_its_session_is_removed() {
    use proto::endpoint::RETIRE_AFTER;
    let mut net = Net::new(EndpointConfig::default());
    let alice_pub = net.restart_b(106);
    net.send(true, b"hello");
    // Only A's message 1 arrives; B's answer and everything after is lost.
    let from_a: Vec<_> = net.wire.drain(..).filter(|(a, _)| *a).collect();
    for (_, d) in from_a {
        net.deliver(true, d);
    }
    net.wire.clear();
    net.blackhole = true;
    assert!(
        net.b.ep.peer_by_static(&alice_pub).is_some(),
        "B answered A"
    );
    assert_eq!(net.b.ep.stats().handshakes_completed, 0);
    net.advance(RETIRE_AFTER + Duration::from_secs(20));
    assert!(
        net.b.ep.peers(net.now).is_empty(),
        "{:?}",
        net.b.ep.peers(net.now)
    );
    assert_eq!(net.b.ep.stats().peers_removed, 1);
}

/// A hub learns peers from their handshakes; when one vanishes it stops
/// probing and re-handshaking with it after RETIRE_AFTER, and removes it,
/// while a configured peer keeps being tried. The retired peer comes back
/// by initiating, learned afresh.
#[test]
fn a_vanished_learned_peer_is_retired_and_comes_back_by_initiating() {
    use proto::endpoint::RETIRE_AFTER;
    let mut net = Net::new(EndpointConfig::default());
    // B knows nobody: A introduces itself.
    let alice_pub = net.restart_b(105);
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
    // Retired, it is removed: nothing of it is left, its id is refused.
    assert!(net.b.ep.peers(net.now).is_empty());
    assert!(net.b.ep.peer(net.b.peer, net.now).is_none());
    assert_eq!(net.b.ep.stats().peers_removed, 1);
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
