//! Intrusion detection with real meshd agents in network namespaces
//! (root; CI runs as root): a member that keeps sending as an overlay
//! address its certificate does not hold is quarantined by the node it
//! sends to, which says so in `meshctl alerts`, `meshctl quarantine`, its
//! log and its metrics; its genuine traffic is dropped until the operator
//! releases it. Hosts are removed on drop, also on failure.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use meshd_tests::{binary, netns_available, Mesh, MeshOptions};

#[test]
fn a_member_spoofing_addresses_is_quarantined_until_released() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(3, MeshOptions::default());
    mesh.start_all();
    assert!(mesh.ping(0, 1, 1));
    assert!(mesh.ping(2, 1, 1));
    // h0 sends as an address outside its certificate: 40 pings, 10 ms
    // apart (the spoofing scenario holds 10 and forgets one a second).
    let o = mesh.exec(0, &["ip", "addr", "add", "100.64.0.99/32", "dev", "meshd0"]);
    assert!(o.status.success());
    let o = mesh.exec(
        0,
        &[
            "ping",
            "-c",
            "40",
            "-i",
            "0.01",
            "-W",
            "1",
            "-I",
            "100.64.0.99",
            "100.64.0.2",
        ],
    );
    assert!(!o.status.success(), "spoofed pings must not be answered");
    // h1 raised alerts, escalating to a quarantine of h0, and says so.
    let alerts = mesh.admin_json(1, "alerts");
    let list = alerts["alerts"].as_array().unwrap();
    let responses: Vec<&str> = list
        .iter()
        .map(|a| a["response"].as_str().unwrap())
        .collect();
    assert_eq!(responses, ["alert", "rate-limit", "quarantine"], "{alerts}");
    assert!(list
        .iter()
        .all(|a| a["peer"] == "h0" && a["scenario"] == "spoofing"));
    let held = mesh.admin_json(1, "quarantine");
    assert_eq!(held["sanctioned"][0]["peer"], "h0", "{held}");
    assert_eq!(held["sanctioned"][0]["response"], "quarantine", "{held}");
    let metric = |h: usize, name: &str| mesh.metric(h, name);
    assert_eq!(
        metric(
            1,
            "meshd_ids_alerts_total{scenario=\"spoofing\",response=\"quarantine\"}"
        ),
        1.0
    );
    assert!(
        mesh.log(1).contains("intrusion detection: quarantine"),
        "{}",
        mesh.log(1)
    );
    // meshctl doctor on h1 names it, with what to do.
    let doctor = mesh.admin_json(1, "doctor");
    let ids = (doctor.as_array().unwrap().iter())
        .find(|f| f["check"] == "ids")
        .unwrap_or_else(|| panic!("{doctor}"));
    assert!(
        ids["found"]
            .as_str()
            .unwrap()
            .contains("h0 is under a quarantine"),
        "{ids}"
    );
    assert!(ids["fix"].as_str().unwrap().contains("--release"), "{ids}");
    // Quarantined: h0's genuine traffic to h1 is dropped; h2 is untouched,
    // and h0 still reaches h2 (the quarantine is h1's, not the mesh's).
    assert!(
        !mesh.ping(0, 1, 2),
        "a quarantined member's pings were answered"
    );
    assert!(metric(1, "meshd_dropped_packets_total{reason=\"quarantined\"}") >= 1.0);
    assert!(mesh.ping(2, 1, 1));
    assert!(mesh.ping(0, 2, 1));
    // The operator releases h0 by name: it is heard again at once.
    let sock = mesh.hosts[1].socket.to_str().unwrap().to_string();
    let out = mesh.meshctl(&["quarantine", "--release", "h0", "--socket", &sock]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("released h0"),
        "{text}"
    );
    assert!(mesh.ping(0, 1, 2), "released, still unanswered");
    assert!(mesh.admin_json(1, "quarantine")["sanctioned"]
        .as_array()
        .unwrap()
        .is_empty());
    // Releasing someone under no sanction says so.
    let out = std::process::Command::new(binary("meshctl"))
        .args(["quarantine", "--release", "h2", "--socket", &sock])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("under no sanction"));
}
