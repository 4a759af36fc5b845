//! A mesh that forms itself: hosts configured with bootstrap addresses
//! and nothing else (root; CI runs as root). Each test builds its own
//! hosts and removes them on drop.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use meshd_tests::{netns_available, Mesh, MeshOptions};
use serde_json::Value;

fn status(mesh: &Mesh, host: usize) -> Value {
    mesh.admin_json(host, "status")
}

/// Twelve hosts, each configured with the same two bootstrap addresses (h0
/// and h1, which find themselves in the list and skip it) and no peer: all
/// learn every member's link state, and each reaches others by name and by
/// address, though no host lists any other.
#[test]
fn twelve_hosts_with_two_bootstrap_addresses_and_no_peers_reach_each_other_by_name() {
    if !netns_available() {
        return;
    }
    let n = 12;
    let mut mesh = Mesh::new(
        n,
        MeshOptions {
            bootstrap: vec![0, 1],
            ..MeshOptions::default()
        },
    );
    let start = Instant::now();
    mesh.start_all();
    // Every host holds the adverts of all eleven others.
    let deadline = start + Duration::from_secs(30);
    loop {
        let held: Vec<u64> = (0..n)
            .map(|h| {
                status(&mesh, h)["routing"]["adverts-held"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .collect();
        if held.iter().all(|&k| k == n as u64 - 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "adverts held per host after 30 s: {held:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let formed = start.elapsed();
    eprintln!(
        "12 hosts from 2 bootstrap addresses: every advert everywhere {formed:?} after start"
    );
    // h0's status names the member at its other bootstrap address (its
    // key probe there may still be in flight when h1 dialled h0 first).
    let names_h1 = |b: &Value| b.as_array().unwrap().iter().any(|e| e["member"] == "h1");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut b = status(&mesh, 0)["routing"]["bootstrap"].clone();
    while !names_h1(&b) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        b = status(&mesh, 0)["routing"]["bootstrap"].clone();
    }
    assert!(names_h1(&b), "{b}");
    // Each host reaches three others by name (meshctl ping: meshd sends
    // the echo itself) and by address (the kernel's ping through meshd0).
    let mut failed = Vec::new();
    for i in 0..n {
        for k in [1, 4, 7] {
            let j = (i + k) % n;
            if let Err(e) = mesh.ping_name_report(i, &format!("h{j}")) {
                failed.push(format!(
                    "h{i} → h{j} by name ({:?} after start): {e}",
                    start.elapsed()
                ));
            }
        }
        let j = (i + 6) % n;
        if !mesh.ping(i, j, 3) {
            failed.push(format!("h{i} → h{j} by address"));
        }
    }
    assert!(failed.is_empty(), "unreachable: {failed:?}");
    // Routes name every node by its certificate, peer or not.
    let routes = mesh.admin_json(5, "routes");
    let names: Vec<String> = (routes.as_array().unwrap().iter())
        .flat_map(|r| [r["destination"].clone(), r["next-hop"].clone()])
        .map(|v| v.as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(routes.as_array().unwrap().len(), n - 1, "{routes}");
    assert!(
        names
            .iter()
            .all(|s| s.starts_with('h') && s[1..].parse::<u32>().is_ok()),
        "routes with a node id for a name: {names:?}"
    );
    // Checksummed TCP transfers between members that list nobody: one
    // through a bootstrap host's relay or direct, both learned.
    mesh.tcp_transfer(2, 11, 5001, 5_000_000, None);
    mesh.tcp_transfer(9, 4, 5002, 5_000_000, None);
    // Names over DNS: h3's resolver is its own meshd (the documented
    // /etc/resolv.conf setting); the system's resolver finds h7.mesh, and
    // ping reaches it by that name.
    let resolver = format!("nameserver {}\nsearch mesh\n", mesh.hosts[3].overlay);
    mesh.set_resolver(3, &resolver);
    let out = mesh.exec(3, &["getent", "hosts", "h7.mesh"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("100.64.0.8 "),
        "getent hosts h7.mesh: {text}"
    );
    let out = mesh.exec(3, &["getent", "hosts", "nosuch.mesh"]);
    assert!(!out.status.success(), "an unknown name resolves");
    let out = mesh.exec(3, &["ping", "-c", "2", "-W", "2", "h7.mesh"]);
    assert!(
        out.status.success(),
        "ping h7.mesh: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = mesh.exec(3, &["ping", "-c", "1", "-W", "2", "h9"]);
    assert!(
        out.status.success(),
        "ping h9 (search mesh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let learned: u64 = (0..n)
        .map(|h| {
            status(&mesh, h)["routing"]["members-learned"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert!(
        learned >= n as u64,
        "members learned from the mesh: {learned}"
    );
}

/// Stubs joined by bootstrap address alone (h0 and h1 relay, h2–h4 are
/// stubs): a stub holds no other stub's certificate, so it asks its relay
/// for the member behind a name or address, and then reaches it by name
/// (meshctl ping, DNS through the system resolver) and by address, with a
/// checksummed TCP transfer.
#[test]
fn stubs_joined_by_bootstrap_reach_each_other_by_name_through_member_lookups() {
    if !netns_available() {
        return;
    }
    let n = 5;
    let mut mesh = Mesh::new(
        n,
        MeshOptions {
            bootstrap: vec![0, 1],
            stubs: vec![2, 3, 4],
            ..MeshOptions::default()
        },
    );
    mesh.start_all();
    // Each stub holds the relays' adverts, and nobody else's.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let held: Vec<u64> = (2..n)
            .map(|h| {
                status(&mesh, h)["routing"]["adverts-held"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .collect();
        if held.iter().all(|&k| k == 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "adverts held by the stubs: {held:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(status(&mesh, 2)["routing"]["role"], "stub");
    // By name with meshctl: the first ping waits for the lookup.
    assert!(mesh.ping_name(2, "h3"), "{}", mesh.log(2));
    // By name through the system resolver, for a member h4 never met.
    let resolver = format!("nameserver {}\nsearch mesh\n", mesh.hosts[4].overlay);
    mesh.set_resolver(4, &resolver);
    let out = mesh.exec(4, &["getent", "hosts", "h2.mesh"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("100.64.0.3 "),
        "getent hosts h2.mesh: {text}"
    );
    let out = mesh.exec(4, &["ping", "-c", "2", "-W", "2", "h2"]);
    assert!(
        out.status.success(),
        "ping h2 (search mesh): {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // By address, for a pair that has not talked yet: the kernel's ping
    // (its first echo may go while the lookup is out) and a transfer.
    assert!(mesh.ping(3, 4, 3), "{}", mesh.log(3));
    mesh.tcp_transfer(4, 3, 5003, 5_000_000, None);
    let looked_up: f64 = (2..n)
        .map(|h| mesh.metric(h, "meshd_members_looked_up_total"))
        .sum();
    assert!(looked_up >= 3.0, "members the stubs looked up: {looked_up}");
    let answered: f64 = (0..2)
        .map(|h| mesh.metric(h, "meshd_lookups_answered_total"))
        .sum();
    assert!(answered >= looked_up, "lookups answered: {answered}");
}
