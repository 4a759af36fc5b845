//! A running endpoint reconfigured, as meshd's reload does: a configured
//! peer let go, new probing settings, a renewed certificate. Virtual time.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::Duration;

use common::net::*;
use common::*;
use proto::endpoint::*;
use proto::health::HealthConfig;

fn up() -> Net {
    let mut net = Net::new(EndpointConfig::default());
    net.send(true, b"hello");
    net.pump();
    net.advance(Duration::from_secs(3));
    assert!(net.b.inbox.last().unwrap().ends_with(b"hello"));
    net
}

/// A renewed certificate (same key, name and address, a later not-after)
/// takes over without dropping the session: the next handshake shows it to
/// the peer. One for another name, another key, or already expired is
/// refused and the one in force stays.
#[test]
fn a_renewed_certificate_is_taken_live_and_shown_at_the_next_handshake() {
    let mut net = up();
    let mesh = Mesh::new(1);
    let later = NOW + 30 * 86_400;
    let renewed = mesh.cert("alice", [100, 64, 0, 1], [1; 32], NOW - 60, later);
    let unix = net.unix();
    let before = net.a.ep.identity().certificate().body().not_after;
    for (bad, why) in [
        (
            mesh.cert("mallory", [100, 64, 0, 1], [1; 32], NOW - 60, later),
            "restart",
        ),
        (
            mesh.cert("alice", [100, 64, 0, 9], [1; 32], NOW - 60, later),
            "restart",
        ),
        (
            mesh.cert("alice", [100, 64, 0, 1], [7; 32], NOW - 60, later),
            "another key",
        ),
        (
            mesh.cert("alice", [100, 64, 0, 1], [1; 32], NOW - 60, NOW - 1),
            "expired",
        ),
    ] {
        let e = net.a.ep.renew_certificate(unix, bad).unwrap_err();
        assert!(e.contains(why), "{e}");
        assert_eq!(net.a.ep.identity().certificate().body().not_after, before);
    }
    net.a.ep.renew_certificate(unix, renewed).unwrap();
    assert_eq!(net.a.ep.identity().certificate().body().not_after, later);
    let handshakes = net.completed(true);
    // Traffic both ways across the next rekey (120 s): nothing lost.
    let mut sent = 0;
    for i in 0..150u32 {
        net.advance(Duration::from_secs(1));
        net.send(true, &i.to_be_bytes());
        net.send(false, b"ack");
        net.pump();
        sent += 1;
    }
    assert!(net.completed(true) > handshakes, "rekeyed");
    assert!(net.b.inbox.len() > sent, "{} delivered", net.b.inbox.len());
    let seen = net.b.ep.peer(net.b.peer, net.now).unwrap().cert.unwrap();
    assert_eq!(seen.body().not_after, later, "bob sees the renewed one");
}

/// New probing settings apply to the links already up: probing every
/// 250 ms instead of every second sends about four times the probes.
#[test]
fn new_probe_settings_apply_to_links_already_up() {
    let mut net = up();
    let count = |net: &mut Net| {
        let before = net.a.ep.stats().probes_sent;
        net.advance(Duration::from_secs(20));
        net.a.ep.stats().probes_sent - before
    };
    let idle = count(&mut net);
    let faster = HealthConfig {
        idle_probe_interval: Duration::from_millis(250),
        ..HealthConfig::default()
    };
    assert!(net.a.ep.set_health_config(faster));
    let fast = count(&mut net);
    assert!(fast >= 3 * idle, "{idle} probes in 20 s, then {fast}");
    // Probing off cannot be turned on live.
    let mut off = Net::timers_only();
    assert!(!off.a.ep.set_health_config(faster));
}

/// A configured peer the configuration no longer lists becomes a learned
/// one: its session stays while its link is up, and once it vanishes it is
/// retired and removed, where a configured peer is tried for ever.
#[test]
fn a_peer_no_longer_configured_is_kept_while_up_and_removed_once_gone() {
    let mut net = up();
    let now = net.now;
    let peer = net.a.peer;
    net.a.ep.unconfigure_peer(now, peer);
    net.advance(Duration::from_secs(120));
    let info = net.a.ep.peer(peer, net.now).expect("kept while up");
    assert!(info.has_session && info.link.is_some_and(|l| l.up));
    net.blackhole = true;
    net.advance(RETIRE_AFTER + Duration::from_secs(30));
    assert!(net.a.ep.peer(peer, net.now).is_none(), "removed once gone");
    assert_eq!(net.a.ep.stats().peers_removed, 1);
    // Bob, which still lists Alice, keeps trying her.
    assert!(net.b.ep.peer(net.b.peer, net.now).is_some());
}

/// Traffic counters count alike both ways: what one end sent (data and
/// control: probes, link state) is what the other received, in plaintext
/// bytes, on a lossless network.
#[test]
fn peer_byte_counters_count_control_both_ways_alike() {
    let mut net = up();
    net.advance(Duration::from_secs(30));
    let a = net.a.ep.peer(net.a.peer, net.now).unwrap().stats;
    let b = net.b.ep.peer(net.b.peer, net.now).unwrap().stats;
    assert!(a.tx_bytes > 100, "{a:?}");
    assert_eq!(a.tx_bytes, b.rx_bytes, "{a:?} {b:?}");
    assert_eq!(b.tx_bytes, a.rx_bytes, "{a:?} {b:?}");
    assert_eq!((a.tx_packets, b.tx_packets), (b.rx_packets, a.rx_packets));
}
