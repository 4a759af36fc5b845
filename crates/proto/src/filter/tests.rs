use super::*;
use crate::policy::{Policy, Subject};
use crate::wire::ip::{Fragment, ParseError, ICMP};

fn parse(b: &[u8]) -> Result<Packet, ParseError> {
    Packet::parse(b)
}

const POLICY: &str = r#"
[[rule]]
action = "allow"
from = "segment:web"
to = "segment:db"
proto = "tcp"
ports = ["5432"]

[[rule]]
action = "allow"
from = "segment:web"
to = "segment:db"
proto = "udp"
ports = ["53"]

[[rule]]
action = "allow"
from = "segment:web"
to = "segment:db"
proto = "icmp"
icmp-types = [8]
"#;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([100, 64, 0, last])
}

fn v4(proto: u8, src: IpAddr, dst: IpAddr, l4: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        unreachable!()
    };
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0];
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend_from_slice(l4);
    let n = p.len() as u16;
    p[2..4].copy_from_slice(&n.to_be_bytes());
    p
}

fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    let mut l4 = vec![0u8; 20];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    v4(TCP, src, dst, &l4)
}

fn echo(src: IpAddr, dst: IpAddr, ty: u8, id: u16) -> Vec<u8> {
    let mut l4 = vec![ty, 0, 0, 0, 0, 0, 0, 1];
    l4[4..6].copy_from_slice(&id.to_be_bytes());
    v4(ICMP, src, dst, &l4)
}

/// Two filters, web (100.64.0.1) and db (100.64.0.2), each deciding its
/// own end.
struct Pair {
    policy: Arc<Compiled>,
    web: Filter,
    db: Filter,
}

fn segs(addr: IpAddr) -> Vec<String> {
    vec![if addr == ip(1) { "web" } else { "db" }.to_string()]
}

impl Pair {
    fn new() -> Self {
        let policy = Arc::new(Policy::parse(POLICY).unwrap().compile());
        let mut web = Filter::new(FilterLimits::default());
        let mut db = Filter::new(FilterLimits::default());
        web.set_policy(Some(policy.clone()));
        db.set_policy(Some(policy.clone()));
        Self { policy, web, db }
    }

    fn ident(policy: &Compiled, addr: IpAddr) -> Identity {
        let s = segs(addr);
        policy.identity(&Subject {
            name: "n",
            segments: &s,
            addr,
        })
    }

    /// Sends from `src`'s filter (out) and then through the other's (in).
    fn send(&mut self, now: Instant, p: &[u8]) -> Result<(), Denied> {
        let pkt = parse(p).unwrap();
        let policy = self.policy.clone();
        let id = |a: IpAddr, _| Self::ident(&policy, a);
        let (tx, rx) = if pkt.src == ip(1) {
            (&mut self.web, &mut self.db)
        } else {
            (&mut self.db, &mut self.web)
        };
        tx.check(now, Direction::Out, &pkt, id)?;
        rx.check(now, Direction::In, &pkt, id)
    }
}

#[test]
fn replies_pass_by_conntrack_and_nothing_else_does() {
    let mut m = Pair::new();
    let t = Instant::now();
    // db cannot open a connection to web.
    let e = m.send(t, &tcp(ip(2), ip(1), 40000, 22)).unwrap_err();
    assert_eq!(e.direction, Direction::Out);
    assert_eq!(e.reason, DenyReason::Default);
    // web → db:5432 passes both ends, and the reply then passes too.
    m.send(t, &tcp(ip(1), ip(2), 40000, 5432)).unwrap();
    m.send(t, &tcp(ip(2), ip(1), 5432, 40000)).unwrap();
    // A reply to a different source port is not the same flow.
    assert!(m.send(t, &tcp(ip(2), ip(1), 5432, 40001)).is_err());
    // Idle past the TCP timeout: the flow is gone.
    let later = t + TCP_TIMEOUT + Duration::from_secs(1);
    assert!(m.send(later, &tcp(ip(2), ip(1), 5432, 40000)).is_err());
    assert_eq!(m.db.stats().denied(Direction::Out, DenyReason::Default), 3);
    assert!(m.db.stats().tracked_passes >= 1);
}

#[test]
fn the_receiver_refuses_what_a_lying_sender_let_out() {
    let mut m = Pair::new();
    let pkt = parse(&tcp(ip(2), ip(1), 40000, 22)).unwrap();
    let policy = m.policy.clone();
    let e = m
        .web
        .check(Instant::now(), Direction::In, &pkt, |a, _| {
            Pair::ident(&policy, a)
        })
        .unwrap_err();
    assert_eq!(e.direction, Direction::In);
    assert_eq!(m.web.stats().denied[1][2], 1);
}

#[test]
fn echo_replies_and_icmp_errors_follow_their_flow() {
    let mut m = Pair::new();
    let t = Instant::now();
    assert!(m.send(t, &echo(ip(2), ip(1), 8, 7)).is_err());
    m.send(t, &echo(ip(1), ip(2), 8, 7)).unwrap();
    m.send(t, &echo(ip(2), ip(1), 0, 7)).unwrap();
    assert!(m.send(t, &echo(ip(2), ip(1), 0, 8)).is_err());
    // db answers a UDP packet from web with port unreachable quoting it.
    let mut udp = vec![0u8; 8];
    udp[0..2].copy_from_slice(&5000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&53u16.to_be_bytes());
    let query = v4(UDP, ip(1), ip(2), &udp);
    m.send(t, &query).unwrap();
    let mut err = vec![3, 3, 0, 0, 0, 0, 0, 0];
    err.extend_from_slice(&query);
    m.send(t, &v4(ICMP, ip(2), ip(1), &err)).unwrap();
    // An unreachable quoting a flow that does not exist is refused.
    let mut stray = vec![3, 3, 0, 0, 0, 0, 0, 0];
    stray.extend_from_slice(&v4(UDP, ip(1), ip(2), &[0, 1, 0, 99, 0, 8, 0, 0]));
    assert!(m.send(t, &v4(ICMP, ip(2), ip(1), &stray)).is_err());
}

#[test]
fn later_fragments_pass_only_after_their_first() {
    let mut m = Pair::new();
    let t = Instant::now();
    let mut first = tcp(ip(1), ip(2), 40000, 5432);
    first[4..6].copy_from_slice(&77u16.to_be_bytes());
    first[6] = 0x20; // more fragments
    let mut later = v4(TCP, ip(1), ip(2), &[1, 2, 3, 4, 5, 6, 7, 8]);
    later[4..6].copy_from_slice(&77u16.to_be_bytes());
    later[6..8].copy_from_slice(&3u16.to_be_bytes()); // offset 24 bytes
    assert!(m.send(t, &later).is_err());
    m.send(t, &first).unwrap();
    m.send(t, &later).unwrap();
    // Another datagram's later fragment does not ride on it.
    later[4..6].copy_from_slice(&78u16.to_be_bytes());
    assert!(m.send(t, &later).is_err());
}

#[test]
fn a_tighter_policy_cuts_tracked_flows() {
    let mut m = Pair::new();
    let t = Instant::now();
    m.send(t, &tcp(ip(1), ip(2), 40000, 5432)).unwrap();
    let strict = Arc::new(Policy::parse("").unwrap().compile());
    m.web.set_policy(Some(strict.clone()));
    m.db.set_policy(Some(strict.clone()));
    m.policy = strict;
    assert!(m.send(t, &tcp(ip(2), ip(1), 5432, 40000)).is_err());
    assert_eq!(m.db.stats().flows_revoked, 1);
}

#[test]
fn a_table_full_of_replied_flows_still_decides_but_does_not_track() {
    let policy = Arc::new(Policy::parse(POLICY).unwrap().compile());
    let mut f = Filter::new(FilterLimits {
        max_flows: 2,
        max_fragments: 2,
        max_unreplied_per_remote: 16,
    });
    f.set_policy(Some(policy.clone()));
    let t = Instant::now();
    let id = |a: IpAddr, _| Pair::ident(&policy, a);
    // Two connections, each answered.
    for port in 1..=2 {
        let p = parse(&tcp(ip(1), ip(2), port, 5432)).unwrap();
        f.check(t, Direction::Out, &p, id).unwrap();
        let r = parse(&tcp(ip(2), ip(1), 5432, port)).unwrap();
        f.check(t, Direction::In, &r, id).unwrap();
    }
    let p = parse(&tcp(ip(1), ip(2), 3, 5432)).unwrap();
    f.check(t, Direction::Out, &p, id).unwrap();
    assert_eq!(f.flow_count(), 2);
    assert_eq!(f.stats().conntrack_full, 1);
    // Still full a second later: no new sweep yet, still not tracked.
    let p = parse(&tcp(ip(1), ip(2), 4, 5432)).unwrap();
    f.check(t + Duration::from_secs(1), Direction::Out, &p, id)
        .unwrap();
    assert_eq!(f.stats().conntrack_full, 2);
    // Once the old flows have expired, the next new flow's sweep makes room.
    let later = t + TCP_TIMEOUT + Duration::from_secs(1);
    f.check(later, Direction::Out, &p, id).unwrap();
    assert_eq!(f.flow_count(), 1);
    assert_eq!(f.stats().conntrack_full, 2);
    // Unanswered, it is swept after the unreplied timeout.
    f.handle_timeout(later + UNREPLIED_TIMEOUT + SWEEP_INTERVAL);
    assert_eq!(f.flow_count(), 0);
    assert_eq!(f.unreplied(ip(2)), 0);
}

#[test]
fn an_unanswered_flood_of_allowed_flows_cannot_lock_out_new_connections() {
    let policy = Arc::new(Policy::parse(POLICY).unwrap().compile());
    let mut db = Filter::new(FilterLimits {
        max_flows: 64,
        max_fragments: 8,
        max_unreplied_per_remote: 16,
    });
    db.set_policy(Some(policy.clone()));
    // db (100.64.0.2) is local; every remote is in segment web.
    let id = |a: IpAddr, local: bool| {
        let s = vec![if local { "db" } else { "web" }.to_string()];
        policy.identity(&Subject {
            name: "n",
            segments: &s,
            addr: a,
        })
    };
    let t = Instant::now();
    let syn = |from: u8, port: u16| parse(&tcp(ip(from), ip(2), port, 5432)).unwrap();
    let ack = |to: u8, port: u16| parse(&tcp(ip(2), ip(to), 5432, port)).unwrap();
    // An established connection from web-1.
    db.check(t, Direction::In, &syn(1, 40000), id).unwrap();
    db.check(t, Direction::Out, &ack(1, 40000), id).unwrap();
    // web-3 floods SYNs on a thousand source ports: allowed, never answered.
    for port in 1..=1000 {
        db.check(t, Direction::In, &syn(3, port), id).unwrap();
    }
    assert_eq!(db.unreplied(ip(3)), 16, "one remote holds its quota");
    assert_eq!(db.stats().conntrack_quota, 1000 - 16);
    // Fifty more flooders fill the table; the oldest unanswered flows give way.
    for from in 10..60 {
        for port in 1..=15 {
            db.check(t, Direction::In, &syn(from, port), id).unwrap();
        }
    }
    assert!(db.flow_count() <= 64);
    assert!(db.stats().conntrack_evicted > 0);
    assert_eq!(db.stats().conntrack_full, 0);
    // The established connection still passes both ways (an untracked
    // db → web packet would be denied: no rule allows it).
    db.check(t, Direction::Out, &ack(1, 40000), id).unwrap();
    // A new connection from web-4 is tracked and its answer passes.
    db.check(t, Direction::In, &syn(4, 50000), id).unwrap();
    db.check(t, Direction::Out, &ack(4, 50000), id).unwrap();
    // Unanswered flows go after UNREPLIED_TIMEOUT; answered ones stay.
    db.handle_timeout(t + UNREPLIED_TIMEOUT + SWEEP_INTERVAL);
    assert_eq!(db.flow_count(), 2);
    assert_eq!(db.unreplied(ip(3)), 0);
}

#[test]
fn no_policy_passes_everything() {
    let mut f = Filter::new(FilterLimits::default());
    let p = parse(&tcp(ip(2), ip(1), 1, 22)).unwrap();
    f.check(Instant::now(), Direction::In, &p, |_, _| unreachable!())
        .unwrap();
    assert_eq!(f.flow_count(), 0);
}

#[test]
fn parse_walks_ipv6_extension_headers_and_rejects_garbage() {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[6] = 0; // hop-by-hop
    p[8..24].copy_from_slice(&[0xfd; 16]);
    p[24..40].copy_from_slice(&[0xfd; 16]);
    p.extend_from_slice(&[44, 0, 0, 0, 0, 0, 0, 0]); // hbh → fragment
    p.extend_from_slice(&[TCP, 0, 0, 0, 0, 0, 0, 9]); // fragment → tcp, first
    p.extend_from_slice(&[0x9c, 0x40, 0x15, 0x38]);
    let k = parse(&p).unwrap();
    assert_eq!((k.proto, k.sport, k.dport), (TCP, 40000, 5432));
    assert_eq!(
        k.fragment,
        Some(Fragment {
            ident: 9,
            first: true
        })
    );
    assert_eq!(parse(&[0x45, 0, 0]), Err(ParseError::Truncated));
    assert_eq!(parse(&[0x10; 40]), Err(ParseError::Truncated));
    let mut loops = vec![0u8; 40 + 8 * 9];
    loops[0] = 0x60;
    assert_eq!(parse(&loops), Err(ParseError::ExtensionHeaders));
}
