//! A stub in real namespaces (root): the square with c configured
//! `[routing] relay = false`. With a–b cut, a relays through d; with d
//! killed too, b is unreachable from a rather than routed through c, and c
//! never forwards a packet.
//!
//! ```text
//!      c (stub)
//!    /   \
//!   a ─── b      l0 = a–b; relay d (a–d, d–b)
//!    \   /
//!      d
//! ```
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use meshd_tests::netns_available;
use std::time::Duration;

use harness::netns::{self, state_dir};
use types::admin::{AdminRequest, AdminResponse};

#[test]
fn a_stub_is_never_a_hop_in_a_real_mesh() {
    if !netns_available() {
        return;
    }
    let (sq, _down) = common::up("square-stub", "st");
    sq.wait_mesh(&[("a", &["b", "c", "d"]), ("b", &["a", "c", "d"])], "a", 3);
    // meshctl status says who relays; c, a stub, holds only relays' adverts.
    // a's three routes do not mean d's advert has reached c yet (it comes
    // through a or b one flood later), so wait for the count to settle.
    let status = |h: &str| {
        let AdminResponse::Status(st) = sq.ask(h, &AdminRequest::Status) else {
            panic!("not a status");
        };
        st
    };
    assert!(!status("c").routing.relay);
    sq.wait_for(
        "c holds the adverts of a, b and d",
        Duration::from_secs(5),
        || status("c").routing.adverts_held == 3,
    );
    assert!(status("a").routing.relay);
    for y in ["b", "c", "d"] {
        sq.wait_for(
            &format!("a's link to {y} measured"),
            Duration::from_secs(5),
            || sq.peer("a", y).link_rtt_ms.is_some(),
        );
    }

    // a–b cut under traffic: through the relay d, never the stub c.
    let udp = sq.udp_stream("a", "b", "100.64.0.2", 6100, 3);
    std::thread::sleep(Duration::from_millis(1000));
    sq.cut("a", true, true);
    sq.wait_for("a fails over to d", Duration::from_secs(1), || {
        sq.peer("a", "b").path == "via d"
    });
    let out = udp.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let gap = netns::field(&text, "max_gap_ms").unwrap_or_else(|| panic!("udp-gaps: {text}"));
    assert!(gap < 1000.0, "failover through d took {gap} ms");

    // d gone too: the only path left passes through c, which is no path.
    let pid = std::fs::read_to_string(state_dir(&sq.name).join("d.pid")).unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    sq.wait_for("a's link to d down", Duration::from_secs(2), || {
        sq.peer("a", "d").link.as_deref() == Some("down")
    });
    let udp = sq.udp_stream("a", "b", "100.64.0.2", 6101, 2);
    let out = udp.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let received = netns::field(&text, "received").unwrap_or(0.0);
    assert!(
        received < 10.0,
        "b got {received} datagrams from a with no relay left: {text}"
    );
    assert!(
        sq.peer("a", "b").path != "via c",
        "a routes b through the stub: {}",
        sq.peer("a", "b").path
    );
    assert_eq!(sq.metric("c", "meshd_relayed_packets_total"), 0.0);
    let AdminResponse::Metrics { text } = sq.ask("c", &AdminRequest::Metrics) else {
        panic!("not metrics");
    };
    assert!(
        !text
            .lines()
            .any(|l| l.contains("reason=\"relay_refused\"") && !l.ends_with(" 0")),
        "nobody tried to relay through c:\n{text}"
    );
}
