//! Reload on real agents (root; CI runs as root): SIGHUP and `meshctl
//! reload` apply a changed configuration without a restart and without
//! dropping the sessions that did not change; a bad file changes nothing.
//! `meshctl rekey` gives a session new keys while it carries traffic.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::process::Command;
use std::time::{Duration, Instant};

use meshd_tests::{binary, netns_available, Mesh, MeshOptions};
use serde_json::Value;

fn reload(mesh: &Mesh, i: usize) -> (bool, Value, String) {
    let sock = mesh.hosts[i].socket.to_str().unwrap();
    let out = Command::new(binary("meshctl"))
        .args(["reload", "--json", "--socket", sock])
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        v,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn handshakes(mesh: &Mesh, i: usize) -> u64 {
    mesh.admin_json(i, "status")["handshakes-completed"]
        .as_u64()
        .unwrap()
}

fn signal(mesh: &Mesh, i: usize, sig: &str) {
    let pid = mesh.pid(i).unwrap().to_string();
    assert!(Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success());
}

fn wait_log(mesh: &Mesh, i: usize, what: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while mesh.log(i).matches(what).count() < n {
        assert!(
            Instant::now() < deadline,
            "no '{what}' in:\n{}",
            mesh.log(i)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_and_meshctl_reload_apply_changes_and_refuse_a_bad_file() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(3, MeshOptions::default());
    mesh.start_all();
    for j in [1, 2] {
        assert!(mesh.ping(0, j, 5), "{}", mesh.log(0));
    }
    let config = mesh.hosts[0].config.clone();
    let original = std::fs::read_to_string(&config).unwrap();
    let h2_entry = original
        .split("\n[[peer]]\n")
        .find(|e| e.contains("h2.crt"))
        .map(|e| format!("\n[[peer]]\n{e}"))
        .unwrap();
    let before = handshakes(&mesh, 0);

    // SIGHUP: h2 no longer listed, faster idle probes, another TUN MTU
    // (which needs a restart), a quieter log.
    let edited = original
        .replace(&h2_entry, "")
        .replace("level = \"debug\"", "level = \"info\"")
        .replace("mtu = 1420", "mtu = 1400")
        + "\n[health]\nidle-probe-interval-ms = 250\n";
    std::fs::write(&config, &edited).unwrap();
    signal(&mesh, 0, "-HUP");
    wait_log(&mesh, 0, "configuration reloaded", 1);
    let log = mesh.log(0);
    for line in [
        "peer 'h2' no longer configured",
        "health: new probe settings",
        "log.level: info",
        "tun: changed; takes effect after a restart",
    ] {
        assert!(log.contains(line), "no '{line}' in:\n{log}");
    }
    // Still running, h2 still reachable (a learned peer while its link is
    // up), no session redone.
    assert!(mesh.pid(0).is_some());
    for j in [1, 2] {
        assert!(mesh.ping(0, j, 3), "{}", mesh.log(0));
    }
    // SIGUSR1 and SIGUSR2 do not stop it either.
    signal(&mesh, 0, "-USR1");
    signal(&mesh, 0, "-USR2");
    wait_log(&mesh, 0, "SIGUSR2 ignored", 1);

    // A file that does not check: refused with --check's message, and the
    // configuration in force stays.
    std::fs::write(&config, edited.replace("mtu = 1400", "mtu = 100")).unwrap();
    let (ok, _, err) = reload(&mesh, 0);
    assert!(!ok);
    assert!(err.contains("tun.mtu") && err.contains("stays"), "{err}");
    assert!(mesh.ping(0, 1, 3));

    // h2 listed again, through meshctl: applied, the MTU still waiting for
    // a restart.
    std::fs::write(&config, &original).unwrap();
    let (ok, v, err) = reload(&mesh, 0);
    assert!(ok, "{err}");
    let applied = v["applied"].to_string();
    assert!(applied.contains("peer 'h2' added"), "{v}");
    assert!(applied.contains("log.level: debug"), "{v}");
    assert!(v["restart-needed"].as_array().unwrap().is_empty(), "{v}");
    for j in [1, 2] {
        assert!(mesh.ping(0, j, 3), "{}", mesh.log(0));
    }
    assert_eq!(handshakes(&mesh, 0), before, "a session was redone");

    // Renewal: the same key, a new validity, put in place and reloaded;
    // status and metrics show the new end, sessions stay.
    let old_end = mesh.admin_json(0, "status")["certificate-not-after"]
        .as_u64()
        .unwrap();
    mesh.meshctl(&[
        "cert",
        "renew",
        "h0.crt",
        "--ttl",
        "400d",
        "--out-crt",
        "h0.renewed.crt",
    ]);
    std::fs::copy(mesh.dir.join("h0.renewed.crt"), mesh.dir.join("h0.crt")).unwrap();
    let (ok, v, err) = reload(&mesh, 0);
    assert!(ok, "{err}");
    assert!(
        v["applied"]
            .to_string()
            .contains("node.certificate: renewed"),
        "{v}"
    );
    let new_end = mesh.admin_json(0, "status")["certificate-not-after"]
        .as_u64()
        .unwrap();
    assert!(new_end > old_end + 30 * 86_400, "{old_end} -> {new_end}");
    assert_eq!(
        mesh.metric(0, "meshd_certificate_not_after_seconds{peer=\"\"}") as u64,
        new_end
    );
    assert!(mesh.ping(0, 1, 3));
    assert_eq!(handshakes(&mesh, 0), before, "a session was redone");
    // The kernel's own IPv6 chatter on the TUN device (router
    // solicitations, MLD) is not counted as traffic without a route.
    for h in 0..3 {
        let no_route = mesh.metric(h, "meshd_dropped_packets_total{reason=\"no_route\"}");
        assert_eq!(no_route, 0.0, "h{h}");
    }
}

/// Metrics served on the node's overlay address for a monitoring member
/// (`[metrics] allow`): that member scrapes them through the mesh, another
/// member's connection is closed unanswered; the scrape carries build,
/// process and per-peer figures.
#[test]
fn metrics_on_the_overlay_answer_allowed_members_only() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(3, MeshOptions::default());
    let config = mesh.hosts[0].config.clone();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[metrics]\naddress = \"127.0.0.1:9720\"\n",
        &format!(
            "[metrics]\naddress = \"{}:9720\"\nallow = [\"{}/32\"]\n",
            mesh.hosts[0].overlay, mesh.hosts[1].overlay
        ),
    );
    assert!(text.contains("allow"), "{text}");
    std::fs::write(&config, text).unwrap();
    mesh.start_all();
    assert!(mesh.ping(1, 0, 5) && mesh.ping(2, 0, 5));
    let scrape = |from: usize| {
        let script = format!(
            "exec 3<>/dev/tcp/{}/9720 && printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && timeout 5 cat <&3",
            mesh.hosts[0].overlay
        );
        String::from_utf8_lossy(&mesh.exec(from, &["bash", "-c", &script]).stdout).to_string()
    };
    let allowed = scrape(1);
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    for family in [
        "meshd_build_info{version=",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "meshd_peer_rx_bytes_total{peer=\"h1\"} ",
        "meshd_peer_last_handshake_seconds{peer=\"h2\"} ",
    ] {
        assert!(allowed.contains(family), "no {family} in:\n{allowed}");
    }
    let refused = scrape(2);
    assert!(refused.is_empty(), "h2 is not allowed: {refused}");
}

/// `meshctl rekey PEER`: one more handshake on both ends, the peer keeps
/// answering throughout, and a peer that does not exist is an error naming
/// it.
#[test]
fn meshctl_rekey_makes_new_keys_on_both_ends_and_keeps_traffic_flowing() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(2, MeshOptions::default());
    mesh.start_all();
    assert!(mesh.ping(0, 1, 3));
    let before = (handshakes(&mesh, 0), handshakes(&mesh, 1));
    let index = |m: &Mesh| {
        m.admin_json(0, "peers")[0]["receiver-index"]
            .as_u64()
            .unwrap()
    };
    let old_index = index(&mesh);
    let sock = mesh.hosts[0].socket.to_str().unwrap().to_string();
    let out = mesh.meshctl(&["rekey", "h1", "--json", "--socket", &sock]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["peer"], "h1", "{v}");
    assert_eq!(v["had-session"], true, "{v}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while handshakes(&mesh, 0) == before.0 || handshakes(&mesh, 1) == before.1 {
        assert!(
            Instant::now() < deadline,
            "no new handshake:\n{}",
            mesh.log(0)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(handshakes(&mesh, 0), before.0 + 1);
    assert!(mesh.ping(0, 1, 3));
    assert_ne!(
        index(&mesh),
        old_index,
        "the session in use is not the new one"
    );
    // h1 answered h0's initiation: it knows h0's clock from its timestamp
    // (one host, one clock: within the delivery time), in peers and metrics.
    let offset = mesh.admin_json(1, "peers")[0]["clock-offset-ms"].as_i64();
    assert!(offset.is_some_and(|ms| ms.abs() < 1000), "{offset:?}");
    let gauge = mesh.metric(1, "meshd_peer_clock_offset_seconds{peer=\"h0\"}");
    assert!(gauge.abs() < 1.0, "{gauge}");
    let out = Command::new(binary("meshctl"))
        .args(["rekey", "h9", "--socket", &sock])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no peer named or addressed 'h9'"),
        "{out:?}"
    );
}
