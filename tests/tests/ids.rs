//! Intrusion detection with real meshd agents in network namespaces
//! (root; CI runs as root): a member that keeps sending as an overlay
//! address its certificate does not hold is quarantined by the node it
//! sends to, which says so in `meshctl alerts`, `meshctl quarantine`, its
//! log and its metrics; its genuine traffic is dropped until the operator
//! releases it. Its accusation reaches every node; one accuser quarantines
//! nobody else, three put the member in quarantine mesh-wide, on nodes
//! that saw nothing themselves. Hosts are removed on drop, also on failure.
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
    spoof(&mesh, 1);
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
    // h2 holds h1's signed accusation (flooded within a second or two),
    // counted, but one accuser is short of the quorum of 3: no sanction.
    let mut held = serde_json::Value::Null;
    for _ in 0..50 {
        held = mesh.admin_json(2, "alerts");
        if !held["accusations"].as_array().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let accusation = &held["accusations"][0];
    assert_eq!(
        (&accusation["accuser"], &accusation["accused"]),
        (&"h1".into(), &"h0".into()),
        "{held}"
    );
    assert_eq!(accusation["counts"], true, "{held}");
    assert_eq!(held["quorum"], 3, "{held}");
    assert!(mesh.admin_json(2, "quarantine")["sanctioned"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(
        mesh.log(0).contains("a member accuses this node"),
        "the accused is not told: {}",
        mesh.log(0)
    );
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

/// h0 sends 40 pings as an address it does not hold to host `to`.
fn spoof(mesh: &Mesh, to: usize) {
    let dst = mesh.hosts[to].overlay.to_string();
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
            &dst,
        ],
    );
    assert!(!o.status.success(), "spoofed pings must not be answered");
}

#[test]
fn three_witnesses_quarantine_a_member_mesh_wide_and_an_operator_can_release_it_locally() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(5, MeshOptions::default());
    mesh.start_all();
    for i in 1..5 {
        assert!(mesh.ping(0, i, 1), "h0 -> h{i}");
    }
    let o = mesh.exec(0, &["ip", "addr", "add", "100.64.0.99/32", "dev", "meshd0"]);
    assert!(o.status.success());
    // h0 spoofs towards h1, h2 and h3; h4 sees nothing of it.
    let started = std::time::Instant::now();
    for to in 1..=3 {
        spoof(&mesh, to);
    }
    // h4 quarantines h0 on the agreement of the three witnesses.
    let mut sanctioned = serde_json::Value::Null;
    while started.elapsed() < std::time::Duration::from_secs(15) {
        sanctioned = mesh.admin_json(4, "quarantine")["sanctioned"].clone();
        if !sanctioned.as_array().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let took = started.elapsed();
    assert_eq!(sanctioned[0]["peer"], "h0", "{sanctioned}");
    assert_eq!(sanctioned[0]["response"], "quarantine", "{sanctioned}");
    assert_eq!(sanctioned[0]["by"], "quorum", "{sanctioned}");
    println!(
        "mesh-wide quarantine {:.1} s after the first spoofed packet",
        took.as_secs_f64()
    );
    let alerts = mesh.admin_json(4, "alerts");
    let quorum = (alerts["alerts"].as_array().unwrap().iter())
        .find(|a| a["scenario"] == "quorum")
        .unwrap_or_else(|| panic!("{alerts}"));
    let mut by: Vec<&str> = (quorum["accusers"].as_array().unwrap().iter())
        .map(|a| a.as_str().unwrap())
        .collect();
    by.sort_unstable();
    assert_eq!(by, ["h1", "h2", "h3"], "{alerts}");
    assert!(
        mesh.log(4).contains("intrusion detection: quarantine"),
        "{}",
        mesh.log(4)
    );
    assert_eq!(
        mesh.metric(
            4,
            "meshd_ids_alerts_total{scenario=\"quorum\",response=\"quarantine\"}"
        ),
        1.0
    );
    assert!(mesh.metric(4, "meshd_accusations_taken_total") >= 3.0);
    // The accused's own doctor names its accusers.
    let doctor = mesh.admin_json(0, "doctor");
    let accused = (doctor.as_array().unwrap().iter())
        .find(|f| f["check"] == "ids" && f["found"].as_str().unwrap().contains("accuse this node"))
        .unwrap_or_else(|| panic!("{doctor}"));
    let found = accused["found"].as_str().unwrap();
    assert!(found.starts_with("3 member(s)"), "{found}");
    // Contained: h0's traffic to h4 is dropped both ways; h4 still talks
    // to the witnesses.
    assert!(!mesh.ping(0, 4, 2), "h0 reached h4 under a mesh quarantine");
    assert!(!mesh.ping(4, 0, 2), "h4 reached h0 under a mesh quarantine");
    assert!(mesh.ping(4, 1, 1));
    // h4's operator releases h0 here: the accusations held stay
    // discounted through their refreshes (one is due every 10 s).
    let sock = mesh.hosts[4].socket.to_str().unwrap().to_string();
    let out = mesh.meshctl(&["quarantine", "--release", "h0", "--socket", &sock]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(mesh.ping(0, 4, 2), "released, still unanswered");
    std::thread::sleep(std::time::Duration::from_secs(11));
    assert!(mesh.admin_json(4, "quarantine")["sanctioned"]
        .as_array()
        .unwrap()
        .is_empty());
    let alerts = mesh.admin_json(4, "alerts");
    let held = alerts["accusations"].as_array().unwrap();
    assert_eq!(held.len(), 3, "{alerts}");
    assert!(held.iter().all(|a| a["counts"] == false), "{alerts}");
    assert!(mesh.ping(0, 4, 1));
    // The witnesses' own quarantines still hold.
    assert!(!mesh.ping(0, 1, 1));
}
