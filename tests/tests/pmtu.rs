//! Path MTU discovery in real namespaces (root): a–b's link drops
//! datagrams over 1404 bytes from a to b without any ICMP error (b's end of
//! the veth pair has MTU 1400, a's 1500), and both meshd are configured for
//! 1500. Full-size packets from a would vanish; discovery finds the path's
//! MTU, meshd answers bigger packets with ICMP "fragmentation needed", and
//! a TCP transfer a → b completes. A second test narrows a link that
//! carried full-size datagrams in the middle of a TCP transfer.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use meshd_tests::netns_available;
use std::time::{Duration, Instant};

use harness::netns;

#[test]
fn a_path_narrower_than_configured_is_found_and_tcp_gets_through() {
    if !netns_available() {
        return;
    }
    let (t, _down) = common::up("blackhole", "pm");
    t.wait_for("session a–b", Duration::from_secs(10), || {
        t.try_peer("a", "b").is_some_and(|p| p.session)
    });
    // The search ends within 8 bytes below what the link carries (1404).
    let found = t.wait_for(
        "a finds the path MTU (1396..=1404)",
        Duration::from_secs(15),
        || {
            t.peer("a", "b")
                .path_mtu
                .is_some_and(|m| (1396..=1404).contains(&m))
        },
    );
    let mtu = t.peer("a", "b").path_mtu.unwrap();
    eprintln!("a's path MTU to b: {mtu} bytes, after {found:?}");
    assert_eq!(
        t.metric("a", "meshd_link_path_mtu_bytes{peer=\"b\"}"),
        mtu as f64
    );
    // b → a carries 1500 (b's kernel fragments what its 1400 end cannot send).
    t.tcp_transfer("a", "b", "100.64.0.2:5001", 20_000_000, &[])
        .check("TCP a → b over the narrow path");
    let too_big = t.metric("a", "meshd_dropped_packets_total{reason=\"too_big\"}");
    assert!(too_big >= 1.0, "a answered no packet with ICMP too big");
}

#[test]
fn a_path_that_shrinks_mid_transfer_is_found_again_and_tcp_survives() {
    if !netns_available() {
        return;
    }
    let (t, _down) = common::up("pair", "ps");
    t.wait_for("a measures the full path", Duration::from_secs(15), || {
        t.try_peer("a", "b")
            .is_some_and(|p| p.session && p.path_mtu == Some(1500))
    });
    // As `receive-mtu` does in a topology: a segments before the veth, so
    // b's end sees every datagram (GSO batches pass veth unchecked).
    let ip = |host: &str, args: &[&str]| {
        let out = netns::output(
            &t.name,
            host,
            &[&["ip", "link", "set", "l0"], args].concat(),
        );
        assert!(out.status.success(), "{host}: ip {args:?}: {out:?}");
    };
    ip("a", &["gso_max_segs", "1"]);
    // 100 MB paced at 100 Mbit/s: about 8 s, with room to narrow the path
    // in the middle. TCP gives up after 20 s without progress.
    let transfer = t.tcp_transfer(
        "a",
        "b",
        "100.64.0.2:5002",
        100_000_000,
        &["--rate-mbit", "100"],
    );
    std::thread::sleep(Duration::from_secs(2));
    // b's end now drops what is over 1404 bytes, without any ICMP error,
    // while small probes keep the link up: a black hole only a
    // confirmation of the size in use can see.
    let shrunk = Instant::now();
    ip("b", &["mtu", "1400"]);
    t.wait_for(
        "a finds the narrower path (1396..=1404)",
        Duration::from_secs(15),
        || {
            t.peer("a", "b")
                .path_mtu
                .is_some_and(|m| (1396..=1404).contains(&m))
        },
    );
    eprintln!(
        "a's path MTU to b: {:?}, {:?} after the path narrowed",
        t.peer("a", "b").path_mtu,
        shrunk.elapsed()
    );
    assert_eq!(t.peer("a", "b").link.as_deref(), Some("up"));
    transfer.check("TCP a → b across the narrowing");
    let too_big = t.metric("a", "meshd_dropped_packets_total{reason=\"too_big\"}");
    assert!(too_big >= 1.0, "a answered no packet with ICMP too big");
}
