//! Route health with real agents in network namespaces (root): the square
//! topology, a TCP stream and a paced UDP stream a → b, and the direct link
//! cut with nftables (both ways, then one way), restored, and a relay killed
//! mid-stream.
//!
//! ```text
//!      c
//!    /   \
//!   a ─── b      l0 = a–b; relays c (a–c, c–b) and d (a–d, d–b)
//!    \   /
//!      d
//! ```
//!
//! Failover time is the longest silence the UDP receiver saw (1 datagram per
//! millisecond): from the last datagram before the cut to the first through
//! the relay. The issue's bound is 1 s; we report what we measure.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use meshd_tests::netns_available;
use std::process::Child;
use std::time::{Duration, Instant};

use common::{Down, Topo};
use harness::netns::{self, state_dir};
use types::admin::{AdminRequest, AdminResponse};

fn max_gap_ms(rx: Child) -> f64 {
    let out = rx.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let gap = netns::field(&text, "max_gap_ms").unwrap_or_else(|| panic!("udp-gaps: {text}"));
    let received = netns::field(&text, "received").unwrap();
    assert!(received > 1000.0, "the stream barely ran: {text}");
    eprintln!("udp stream: {}", text.trim());
    gap
}

fn square() -> (Topo, Down) {
    let (sq, guard) = common::up("square", "fo");
    sq.wait_mesh(&[("a", &["b", "c", "d"]), ("b", &["a", "c", "d"])], "a", 3);
    (sq, guard)
}

#[test]
fn cut_one_way_cut_and_relay_crash_fail_over_and_tcp_survives() {
    if !netns_available() {
        return;
    }
    let (sq, _down) = square();
    assert_eq!(sq.peer("a", "b").path, "direct");

    // 1. Cut a–b both ways under a TCP stream and a UDP stream; restore.
    let tcp = sq.tcp_transfer(
        "a",
        "b",
        "100.64.0.2:5001",
        75_000_000,
        &["--rate-mbit", "100"],
    );
    let udp = sq.udp_stream("a", "b", "100.64.0.2", 6000, 6);
    std::thread::sleep(Duration::from_millis(1500));
    sq.cut("a", true, true);
    let detected = sq.wait_for("a fails over to a relay", Duration::from_secs(1), || {
        sq.peer("a", "b").path.starts_with("via ")
    });
    eprintln!(
        "a's path to b: {} after {detected:?}",
        sq.peer("a", "b").path
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        sq.peer("b", "a").path.starts_with("via "),
        "b → a relayed too"
    );
    assert_eq!(sq.peer("a", "b").link.as_deref(), Some("down"));
    // Timed from the start of the repair: the link carries probes again
    // as soon as nft has deleted the table, and on a loaded host `heal`
    // (the `ip netns exec nft` process) can return much later (timed from
    // its return, the hold-down once looked skipped: 972 ms with both
    // cores busy).
    let healing = Instant::now();
    sq.heal("a");
    // Usually 2.2–3.2 s (hold-down 2 s + 3 probe replies); one CI run of
    // session 3 took over 6 s, unexplained: 10 s here, and the agents' logs
    // are printed if even that is missed.
    sq.wait_for(
        "a returns to the direct path",
        Duration::from_secs(10),
        || sq.peer("a", "b").path == "direct",
    );
    let back = healing.elapsed();
    eprintln!("back on the direct path {back:?} after the repair began");
    assert!(
        back >= Duration::from_millis(1500),
        "returned after {back:?}: the 2 s hold-down was skipped"
    );
    let gap = max_gap_ms(udp);
    assert!(gap < 1000.0, "failover outage {gap} ms (bound 1 s)");
    tcp.check("the TCP connection did not survive the failover");
    // One failover and one return for b: no flapping between the direct
    // path and relays. (While the link is cut, a may move b from one relay
    // to the other once: the advert it originates at the cut carries its
    // links' costs as measured then, and both relays are alike.)
    std::thread::sleep(Duration::from_millis(500));
    let log = std::fs::read_to_string(state_dir(&sq.name).join("a.log")).unwrap();
    let changes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("path changed") && l.contains("peer=b"))
        .collect();
    let mut relayed = false;
    let mut flips = 0;
    for l in &changes {
        let now_relayed = l.contains("path changed: relayed");
        if now_relayed != relayed {
            flips += 1;
            relayed = now_relayed;
        }
    }
    assert_eq!(flips, 2, "a's path changes for b: {changes:#?}");
    assert!(changes.len() <= 3, "a's path changes for b: {changes:#?}");
    // The link's failure is remembered (meshctl doctor's flapping check).
    assert_eq!(sq.peer("a", "b").link_failures_10m, Some(1));
    eprintln!(
        "a: route changes {} (all peers), failovers {}",
        sq.metric("a", "meshd_route_changes_total"),
        sq.metric("a", "meshd_failovers_total")
    );
    assert!(
        sq.metric("c", "meshd_relayed_packets_total")
            + sq.metric("d", "meshd_relayed_packets_total")
            > 1000.0
    );

    // 2. Only b → a dies: both ends notice and fail over.
    sq.wait_for("link a–b settled", Duration::from_secs(5), || {
        sq.peer("b", "a").path == "direct"
    });
    let udp = sq.udp_stream("b", "a", "100.64.0.1", 6001, 4);
    std::thread::sleep(Duration::from_millis(1000));
    sq.cut("b", true, false);
    sq.wait_for(
        "b fails over (its probes go unanswered)",
        Duration::from_secs(1),
        || sq.peer("b", "a").path.starts_with("via "),
    );
    sq.wait_for(
        "a fails over (b's replies never arrive)",
        Duration::from_secs(1),
        || sq.peer("a", "b").path.starts_with("via "),
    );
    let gap = max_gap_ms(udp);
    assert!(gap < 1000.0, "one-way failover outage {gap} ms (bound 1 s)");
    sq.heal("b");

    // 3. Cut a–b; kill the relay in use mid-stream; traffic moves to the other.
    sq.wait_for("a back to direct", Duration::from_secs(6), || {
        sq.peer("a", "b").path == "direct"
    });
    sq.cut("a", true, true);
    sq.wait_for("relayed again", Duration::from_secs(1), || {
        sq.peer("a", "b").path.starts_with("via ")
    });
    let relay = sq
        .peer("a", "b")
        .path
        .trim_start_matches("via ")
        .to_string();
    let other = if relay == "c" { "d" } else { "c" };
    let udp = sq.udp_stream("a", "b", "100.64.0.2", 6002, 4);
    std::thread::sleep(Duration::from_millis(1000));
    let pid = std::fs::read_to_string(state_dir(&sq.name).join(format!("{relay}.pid"))).unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    sq.wait_for(
        "routed around the dead relay",
        Duration::from_secs(1),
        || sq.peer("a", "b").path == format!("via {other}"),
    );
    let gap = max_gap_ms(udp);
    assert!(
        gap < 1000.0,
        "outage around the killed relay {gap} ms (bound 1 s)"
    );
    // b answers a's echo on its own route to a: b sent nothing through the
    // dead relay since the cut, so it notices at the idle probe rate (4–5 s,
    // longer on a loaded host), after a's stream has ended. Wait for it.
    let b_moved = Instant::now();
    sq.wait_for(
        "b routes around the dead relay too",
        Duration::from_secs(15),
        || sq.peer("b", "a").path == format!("via {other}"),
    );
    eprintln!(
        "b's path to a: via {other} {:?} after a's stream",
        b_moved.elapsed()
    );
    // meshctl trace shows the relayed path hop by hop, with a measured RTT
    // (its one echo may be lost on a loaded host: up to three traces).
    let trace = || {
        let AdminResponse::Trace(t) = sq.ask(
            "a",
            &AdminRequest::Trace {
                target: "b".into(),
                timeout_ms: 2000,
            },
        ) else {
            panic!("not a trace");
        };
        t
    };
    let mut t = trace();
    for _ in 0..2 {
        if t.rtt_ms.is_some() {
            break;
        }
        t = trace();
    }
    let hops: Vec<&str> = t.hops.iter().map(|h| h.node.as_str()).collect();
    assert_eq!(hops, [other, "b"], "{t:?}");
    assert!(t.rtt_ms.is_some(), "{t:?}");
}
