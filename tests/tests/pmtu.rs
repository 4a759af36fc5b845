//! Path MTU discovery in real namespaces (root): a–b's link drops
//! datagrams over 1404 bytes from a to b without any ICMP error (b's end of
//! the veth pair has MTU 1400, a's 1500), and both meshd are configured for
//! 1500. Full-size packets from a would vanish; discovery finds the path's
//! MTU, meshd answers bigger packets with ICMP "fragmentation needed", and
//! a TCP transfer a → b completes.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::Duration;

#[test]
fn a_path_narrower_than_configured_is_found_and_tcp_gets_through() {
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
