//! NAT traversal on real agents: hosts behind nftables NATs in their own
//! namespaces (root; CI runs as root). Each test builds its own hosts and
//! NATs and removes them on drop.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use meshd_tests::{netns_available, Mesh, MeshOptions, Nat};
use serde_json::Value;

fn json(mesh: &Mesh, host: usize, what: &str) -> Value {
    mesh.admin_json(host, what)
}

/// Host `on`'s view of the peer named `name`, if it has one.
fn peer(mesh: &Mesh, on: usize, name: &str) -> Option<Value> {
    let peers = json(mesh, on, "peers");
    peers
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
}

/// Waits up to `limit` for host `on` to reach `name` directly (path
/// `direct`, link up, no relay note): how long it took.
fn wait_direct(mesh: &Mesh, on: usize, name: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let p = peer(mesh, on, name);
        let direct = p.as_ref().is_some_and(|p| {
            p["path"] == "direct" && p["link"] == "up" && p["relayed-because"].is_null()
        });
        if direct {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "h{on} -> {name}: not direct after {limit:?}: {p:?}\n{}",
            mesh.log(on)
        );
        // Keep traffic flowing: punching is for members we talk to.
        mesh.ping_name(on, name);
    }
}

/// Two public hosts (the bootstrap addresses), two behind port-preserving
/// NATs (endpoint-independent mapping) and two behind `masquerade random`
/// NATs (a new port per destination), all configured with the two public
/// addresses and nothing else:
/// - NAT ↔ public: direct;
/// - NAT ↔ NAT (endpoint-independent): direct after punching, timed;
/// - per-destination ↔ per-destination: relayed, working, and `meshctl
///   peers` says why;
/// - a NAT renumbered mid-transfer (every mapping gone): the TCP transfer
///   across it completes with its content intact, and the direct path
///   comes back.
#[test]
fn nodes_behind_nat_punch_direct_paths_where_nat_allows_and_stay_relayed_where_not() {
    if !netns_available() {
        return;
    }
    let eim = Some(Nat::EndpointIndependent);
    let sym = Some(Nat::PerDestination);
    let mut mesh = Mesh::new(
        6,
        MeshOptions {
            bootstrap: vec![0, 1],
            nat: vec![None, None, eim, eim, sym, sym],
            ..MeshOptions::default()
        },
    );
    mesh.start_all();
    // Every host reaches the bootstrap hosts directly, and learns what is
    // in front of it from their observations.
    let start = Instant::now();
    let nat_of = |mesh: &Mesh, h: usize| {
        json(mesh, h, "status")["routing"]["nat"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let want = [
        "none",
        "none",
        "endpoint-independent",
        "endpoint-independent",
    ];
    loop {
        let seen: Vec<String> = (0..6).map(|h| nat_of(&mesh, h)).collect();
        let ok = (0..4).all(|h| seen[h] == want[h])
            && seen[4] == "per-destination"
            && seen[5] == "per-destination";
        if ok {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "NAT kinds after 20 s: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // With the default `relay = "auto"`, the NATed hosts carry no transit.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let roles: Vec<String> = (0..6)
            .map(|h| json(&mesh, h, "status")["routing"]["role"].to_string())
            .collect();
        let want = |h: usize| if h < 2 { "\"relay\"" } else { "\"no-transit\"" };
        if (0..6).all(|h| roles[h] == want(h)) {
            break;
        }
        assert!(Instant::now() < deadline, "roles: {roles:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    for h in 2..6 {
        for b in ["h0", "h1"] {
            wait_direct(&mesh, h, b, Duration::from_secs(10));
        }
    }
    // NAT (endpoint-independent) ↔ NAT: relayed at first, then direct.
    let first = Instant::now();
    assert!(mesh.ping_name(2, "h3"), "{}", mesh.log(2));
    wait_direct(&mesh, 2, "h3", Duration::from_secs(20));
    let took = first.elapsed();
    eprintln!("h2 -> h3 through two NATs: direct {took:?} after the first ping");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let p = peer(&mesh, 2, "h3").unwrap();
    assert_eq!(p["endpoint"], "198.18.0.4:51820", "h3's NAT's address: {p}");
    wait_direct(&mesh, 3, "h2", Duration::from_secs(10));
    // Per-destination ↔ per-destination: relayed, working, and says why.
    assert!(mesh.ping_name(4, "h5"), "{}", mesh.log(4));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(mesh.ping_name(4, "h5"));
        let p = peer(&mesh, 4, "h5").unwrap();
        let why = p["relayed-because"].as_str().unwrap_or("").to_string();
        if why.contains("both ends behind NATs") {
            // Through a public host: the NATed ones carry no transit.
            let path = p["path"].as_str().unwrap();
            assert!(path == "via h0" || path == "via h1", "{p}");
            break;
        }
        assert!(Instant::now() < deadline, "h4's view of h5: {p}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // A checksummed transfer between the punched pair, then one across a
    // renumbering of h3's NAT (every mapping gone mid-transfer).
    mesh.tcp_transfer(2, 3, 5001, 20_000_000, None);
    let transfer = std::thread::scope(|s| {
        let t = s.spawn(|| mesh.tcp_transfer(2, 3, 5002, 25_000_000, Some(20)));
        std::thread::sleep(Duration::from_secs(3));
        mesh.renumber_nat(3, 14);
        t.join()
    });
    assert!(
        transfer.is_ok(),
        "the transfer across the renumbering failed"
    );
    let took = wait_direct(&mesh, 2, "h3", Duration::from_secs(30));
    let p = peer(&mesh, 2, "h3").unwrap();
    assert_eq!(p["endpoint"], "198.18.0.14:51820", "{p}");
    eprintln!("h2 -> h3 direct again {took:?} after the transfer");
    let punched = mesh.metric(2, "meshd_direct_paths_punched_total")
        + mesh.metric(3, "meshd_direct_paths_punched_total");
    assert!(punched >= 2.0, "{punched} direct paths punched");
}

/// A peer configured at an address that never answers (its NAT's public
/// address, where the NAT has no mapping): after the first unanswered
/// retransmission its traffic goes through a relay, a log line and a
/// counter say so, and punching then finds the direct path through that
/// very address.
#[test]
fn a_configured_address_that_never_answers_falls_back_to_a_relay_and_is_punched_through() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(
        4,
        MeshOptions {
            bootstrap: vec![0, 1],
            nat: vec![None, None, Some(Nat::EndpointIndependent)],
            ..MeshOptions::default()
        },
    );
    // h3 lists h2 at its NAT's address, as an operator might.
    let mut text = std::fs::read_to_string(&mesh.hosts[3].config).unwrap();
    text.push_str("\n[[peer]]\ncertificate = \"h2.crt\"\nendpoint = \"198.18.0.3:51820\"\n");
    std::fs::write(&mesh.hosts[3].config, text).unwrap();
    let start = Instant::now();
    mesh.start_all();
    let reached = loop {
        if mesh.ping_name(3, "h2") {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "h3 never reached h2:\n{}",
            mesh.log(3)
        );
    };
    eprintln!("h3 -> h2 (configured at a silent address) answered {reached:?} after start");
    assert!(mesh.log(3).contains("go unanswered"), "{}", mesh.log(3));
    assert!(mesh.metric(3, "meshd_endpoints_silent_total") >= 1.0);
    let took = wait_direct(&mesh, 3, "h2", Duration::from_secs(30));
    let p = peer(&mesh, 3, "h2").unwrap();
    assert_eq!(p["endpoint"], "198.18.0.3:51820", "{p}");
    eprintln!("h3 -> h2 direct {took:?} later");
}
