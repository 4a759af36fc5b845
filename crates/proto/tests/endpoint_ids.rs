//! Intrusion detection through the endpoint: a peer scanning what the
//! policy denies is alerted on, rate-limited, then quarantined, its data
//! dropped both ways while its control traffic still flows; an operator
//! releases it; detection-only mode never sanctions.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::Duration;

use common::net::*;
use proto::endpoint::*;
use proto::ids::{IdsConfig, Response};

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = sport.to_be_bytes().to_vec();
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 8, 0, 0]);
    h
}

/// Alice allows Bob DNS only; Bob holds no policy, so what he sends
/// reaches Alice's filter.
fn scanned(config_a: Option<IdsConfig>) -> Net {
    let mut net = Net::with_config_a(
        EndpointConfig {
            ids: config_a,
            ..EndpointConfig::default()
        },
        EndpointConfig::default(),
    );
    let p = proto::policy::Policy::parse(
        "[[rule]]\naction = \"allow\"\nfrom = \"node:bob\"\nto = \"node:alice\"\nproto = \"udp\"\nports = [\"53\"]\n",
    )
    .unwrap()
    .compile();
    let now = net.now;
    net.a.ep.set_policy(now, Some(std::sync::Arc::new(p)));
    // A session first, with an allowed packet.
    net.send(false, &udp(40000, 53));
    net.pump();
    assert_eq!(net.a.inbox.len(), 1);
    net
}

fn alerts(net: &Net) -> Vec<Response> {
    (net.a.events.iter())
        .filter_map(|e| match e {
            Event::Alert { alert, .. } => Some(alert.response),
            _ => None,
        })
        .collect()
}

#[test]
fn a_scanning_peer_is_alerted_on_then_rate_limited_then_quarantined_and_released() {
    let mut net = scanned(EndpointConfig::default().ids);
    let bob = net.b.ep.node_id();
    // Bob walks Alice's ports, a millisecond apart.
    let mut quarantined_after = None;
    for port in 1000..1100u16 {
        net.send(false, &udp(40000, port));
        net.pump();
        net.advance(Duration::from_millis(1));
        if quarantined_after.is_none() && !net.a.ep.sanctioned(net.now).is_empty() {
            let s = net.a.ep.sanctioned(net.now);
            if s[0].response == Response::Quarantine {
                quarantined_after = Some(port - 1000 + 1);
            }
        }
    }
    assert_eq!(quarantined_after, Some(63), "{:?}", alerts(&net));
    assert_eq!(
        alerts(&net)[..3],
        [Response::Alert, Response::RateLimit, Response::Quarantine]
    );
    let held = net.a.ep.sanctioned(net.now);
    assert_eq!(
        (held[0].node, held[0].response),
        (bob, Response::Quarantine)
    );
    // Quarantined: even what the policy allows is dropped, both ways...
    let before = net.a.inbox.len();
    let dropped = net.a.ep.stats().drops(DropReason::Quarantined);
    net.send(false, &udp(40000, 53));
    net.pump();
    assert_eq!(net.a.inbox.len(), before);
    assert!(net.a.ep.stats().drops(DropReason::Quarantined) > dropped);
    assert_eq!(
        net.send(true, &udp(53, 40000)),
        SendOutcome::Dropped(DropReason::Quarantined)
    );
    // ...while the session and its control traffic live on: the link stays
    // up by its probes.
    net.advance(Duration::from_secs(3));
    let pb = net.a.peer;
    let link = net.a.ep.peer(pb, net.now).unwrap().link.unwrap();
    assert!(link.up, "probes stopped under quarantine");
    // The operator releases Bob: his allowed traffic passes again.
    assert!(net.a.ep.release(net.now, bob));
    assert!(net.a.ep.sanctioned(net.now).is_empty());
    net.send(false, &udp(40000, 53));
    net.pump();
    assert_eq!(net.a.inbox.len(), before + 1);
}

#[test]
fn a_quarantine_ends_by_itself() {
    let mut net = scanned(Some(IdsConfig {
        quarantine: Duration::from_secs(5),
        ..IdsConfig::default()
    }));
    for port in 2000..2063u16 {
        net.send(false, &udp(40000, port));
        net.pump();
    }
    assert!(net
        .a
        .ep
        .sanctioned(net.now)
        .iter()
        .any(|s| s.response == Response::Quarantine));
    net.advance(Duration::from_secs(6));
    let before = net.a.inbox.len();
    net.send(false, &udp(40000, 53));
    net.pump();
    assert_eq!(
        net.a.inbox.len(),
        before + 1,
        "still quarantined after it ended"
    );
}

#[test]
fn detection_only_raises_alerts_and_drops_nothing_more() {
    let mut net = scanned(Some(IdsConfig {
        prevent: false,
        ..IdsConfig::default()
    }));
    for port in 3000..3200u16 {
        net.send(false, &udp(40000, port));
        net.pump();
    }
    let raised = alerts(&net);
    assert!(raised.len() >= 5, "{raised:?}");
    assert!(raised.iter().all(|r| *r == Response::Alert));
    assert!(net.a.ep.sanctioned(net.now).is_empty());
    assert_eq!(net.a.ep.ids_mode(), "detect");
    let before = net.a.inbox.len();
    net.send(false, &udp(40000, 53));
    net.pump();
    assert_eq!(net.a.inbox.len(), before + 1);
}

#[test]
fn policy_denials_the_peer_did_not_send_count_against_nobody() {
    // Alice's own packets refused by her policy on send are her business,
    // not evidence against Bob.
    let mut net = scanned(EndpointConfig::default().ids);
    for port in 4000..4200u16 {
        assert_eq!(
            net.send(true, &udp(40000, port)),
            SendOutcome::Dropped(DropReason::PolicyDenied)
        );
    }
    assert!(alerts(&net).is_empty());
    assert!(net.a.ep.sanctioned(net.now).is_empty());
}

#[test]
fn a_policys_detection_thresholds_are_put_in_force_and_withdrawn_with_it() {
    let mut net = scanned(EndpointConfig::default().ids);
    // The same DNS-only policy, with a scan of 5 distinct services
    // quarantining at once (the first offence, since the response named
    // is the strongest and escalation starts at an alert: 3 offences).
    let tuned = proto::policy::Policy::parse(
        "[[rule]]\naction = \"allow\"\nfrom = \"node:bob\"\nto = \"node:alice\"\nproto = \"udp\"\nports = [\"53\"]\n\
         [detection.scan]\ncapacity = 5\nleak-per-sec = 0.01\nresponse = \"quarantine\"\n",
    )
    .unwrap();
    assert_eq!(tuned.detection[0].leak_milli_per_sec, 10);
    let now = net.now;
    net.a
        .ep
        .set_policy(now, Some(std::sync::Arc::new(tuned.compile())));
    let mut quarantined_after = None;
    for port in 5000..5030u16 {
        net.send(false, &udp(40000, port));
        net.pump();
        let q = (net.a.ep.sanctioned(net.now).iter()).any(|s| s.response == Response::Quarantine);
        if q && quarantined_after.is_none() {
            quarantined_after = Some(port - 5000 + 1);
        }
    }
    // Offences at 6, 12 and 18 targets: alert, rate limit, quarantine.
    assert_eq!(quarantined_after, Some(18), "{:?}", alerts(&net));
    // A policy without the table restores the configured thresholds.
    let now = net.now;
    assert!(net.a.ep.release(now, net.b.ep.node_id()));
    let deny = proto::policy::Policy::parse(
        "[[rule]]\naction = \"allow\"\nfrom = \"node:bob\"\nto = \"node:alice\"\nproto = \"udp\"\nports = [\"53\"]\n",
    )
    .unwrap();
    net.a
        .ep
        .set_policy(now, Some(std::sync::Arc::new(deny.compile())));
    for port in 6000..6030u16 {
        net.send(false, &udp(40000, port));
        net.pump();
    }
    assert!(
        net.a.ep.sanctioned(net.now).is_empty(),
        "30 targets < 3 × 21"
    );
}

/// Bob's quarantine responses raised at Alice, in order, for `scenario`.
fn responses_for(net: &Net, scenario: &str) -> Vec<Response> {
    (net.a.events.iter())
        .filter_map(|e| match e {
            Event::Alert { alert, .. } if alert.scenario == scenario => Some(alert.response),
            _ => None,
        })
        .collect()
}

#[test]
fn a_member_sending_junk_in_its_session_is_quarantined() {
    let mut net = scanned(EndpointConfig::default().ids);
    // Plaintexts whose first nibble is neither 4 nor 6 (nor a control
    // kind): no TUN device makes them.
    use proto::wire::{TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};
    for _ in 0..40 {
        let junk = [0x5a_u8; 60];
        let mut buf = vec![0u8; junk.len() + TRANSPORT_OVERHEAD];
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + junk.len()].copy_from_slice(&junk);
        let (now, unix, peer) = (net.now, net.unix(), net.b.peer);
        if let SendOutcome::Send { len, .. } = net.b.ep.send(now, unix, peer, &mut buf, junk.len())
        {
            net.wire.push((false, buf[..len].to_vec()));
        }
        net.pump();
    }
    assert_eq!(
        responses_for(&net, "junk"),
        [Response::Alert, Response::RateLimit, Response::Quarantine]
    );
    assert!(net.a.ep.stats().drops(DropReason::NotIp) >= 33);
}

#[test]
fn a_member_flooding_handshakes_is_rate_limited_then_quarantined() {
    let mut net = scanned(EndpointConfig::default().ids);
    // Bob initiates again and again, each completing: a member that
    // ignores the 5 s between initiations (here, a fresh endpoint with
    // his identity each time; a rekey every 2 minutes is 1 of the 30 the
    // scenario holds), 20 a second for 5.5 s.
    for i in 0..110 {
        let alice = net.restart_b(1000 + i);
        net.b.peer = net.b.ep.add_peer(alice, Some(net.a.addr), None);
        let (now, unix, peer) = (net.now, net.unix(), net.b.peer);
        net.b.ep.initiate(now, unix, peer);
        net.collect();
        net.pump();
        net.advance(std::time::Duration::from_millis(50));
    }
    // Alice answers one initiation per 50 ms from one member (WireGuard's
    // rule), so Bob completes at most 20 a second.
    assert!(net.a.ep.stats().handshakes_completed <= 111);
    assert_eq!(
        responses_for(&net, "handshakes"),
        [Response::Alert, Response::RateLimit, Response::Quarantine]
    );
    let s = net.a.ep.sanctioned(net.now);
    assert_eq!(s[0].response, Response::Quarantine);
}
