//! Multi-hop relaying with real agents in network namespaces (root): the
//! line topology a – b – c – d, where a reaches d only through two relays.
//! The handshake itself travels relayed; the end-to-end session is a's and
//! d's alone (the relays forward sealed datagrams they cannot open).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use meshd_tests::netns_available;
use std::time::Duration;

use harness::netns;
use types::admin::{AdminRequest, AdminResponse};

#[test]
fn a_reaches_d_through_two_relays_with_a_checksummed_tcp_transfer() {
    if !netns_available() {
        return;
    }
    let (t, _down) = common::up("line", "ln");
    // Neighbours first: a–b, b–c, c–d.
    for (x, y) in [("a", "b"), ("b", "c"), ("c", "d")] {
        t.wait_for(
            &format!("session {x}–{y}"),
            Duration::from_secs(10),
            || t.try_peer(x, y).is_some_and(|p| p.session),
        );
    }
    // a learns a 3-hop route to d from the adverts, then its first packet to
    // d starts a handshake that b and c relay. The relays need their routes
    // too (b's to d, c's to a, which they learn from the same adverts a few
    // milliseconds apart): a handshake they cannot forward yet is only
    // retried after 5 s, longer than the pings below wait.
    let route = |host: &str, dst: &'static str, hops: u8, next: &'static str| {
        matches!(t.ask(host, &AdminRequest::Routes),
            AdminResponse::Routes { routes } if routes.iter().any(|r| r.destination == dst && r.hops == hops && r.next_hop == next))
    };
    t.wait_for("a's route to d", Duration::from_secs(5), || {
        route("a", "d", 3, "b")
    });
    t.wait_for("b's route to d", Duration::from_secs(5), || {
        route("b", "d", 2, "c")
    });
    t.wait_for("c's route to a", Duration::from_secs(5), || {
        route("c", "a", 2, "b")
    });
    let ping = netns::output(&t.name, "a", &["ping", "-c", "3", "-W", "2", "100.64.0.4"]);
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let to_d = t.peer("a", "d");
    assert!(to_d.session, "{to_d:?}");
    assert_eq!(to_d.path, "via b", "{to_d:?}");
    assert!(to_d.hybrid_post_quantum);

    // 20 MB a → d, content verified at d.
    t.tcp_transfer("a", "d", "100.64.0.4:5001", 20_000_000, &[])
        .check("TCP a → d through two relays");

    // Both relays forwarded it (each datagram crosses b and c); the far end
    // saw a's traffic arrive relayed.
    for relay in ["b", "c"] {
        let n = t.metric(relay, "meshd_relayed_packets_total");
        assert!(n > 10_000.0, "{relay} relayed {n}");
    }
    assert_eq!(t.peer("d", "a").path, "via c");
    // The a–b link is 1480 bytes: full-size packets relayed from a do not
    // fit, so a answered them with ICMP "packet too big" and the transfer
    // went on with smaller segments (without it, TCP stalls: a PMTU black
    // hole).
    let too_big = t.metric("a", "meshd_dropped_packets_total{reason=\"too_big\"}");
    assert!(too_big >= 1.0, "a sent no packet-too-big: {too_big}");

    // trace along the real path: b, c, then d, with a measured round trip.
    let AdminResponse::Trace(tr) = t.ask(
        "a",
        &AdminRequest::Trace {
            target: "d".into(),
            timeout_ms: 2000,
        },
    ) else {
        panic!("not a trace");
    };
    let hops: Vec<&str> = tr.hops.iter().map(|h| h.node.as_str()).collect();
    assert_eq!(hops, ["b", "c", "d"], "{tr:?}");
    assert!(tr.rtt_ms.is_some(), "{tr:?}");
}
