//! Real meshd agents in network namespaces (root; CI runs as root). Each test
//! builds its own hosts (underlay 198.18.0.0/24 over a bridge, overlay
//! 100.64.0.0/10) and removes them on drop, also on failure.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use meshd_tests::{binary, netns_available, Mesh, MeshOptions};
use serde_json::Value;

fn meshctl_json(mesh: &Mesh, host: usize, what: &str) -> Value {
    mesh.admin_json(host, what)
}

fn drops(mesh: &Mesh, host: usize, reason: &str) -> u64 {
    meshctl_json(mesh, host, "status")["drops"][reason]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn three_hosts_ping_and_transfer_100mb_with_checksum() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(3, MeshOptions::default());
    mesh.start_all();
    for (a, b) in [(0, 1), (0, 2), (1, 2), (2, 0)] {
        assert!(
            mesh.ping(a, b, 3),
            "ping h{a} -> h{b} failed:\n{}",
            mesh.log(a)
        );
    }
    // 100 MB over TCP from h0 to h2, content verified end to end.
    mesh.tcp_transfer(0, 2, 5001, 100_000_000, None);

    // Every session is a hybrid post-quantum one, and traffic was counted.
    let peers = meshctl_json(&mesh, 0, "peers");
    let peers = peers.as_array().unwrap();
    assert_eq!(peers.len(), 2);
    // All hosts run on this machine: AES-256-GCM exactly when it has AES
    // hardware (the 100 MB checksum above went through that cipher).
    let aes = proto::provider::Crypto::aes_hardware(&crypto::RealCrypto);
    let cipher = if aes {
        "aes-256-gcm"
    } else {
        "chacha20-poly1305"
    };
    for p in peers {
        assert_eq!(p["hybrid-post-quantum"], Value::Bool(true), "{p}");
        assert_eq!(p["session"], Value::Bool(true), "{p}");
        assert_eq!(p["cipher"], cipher, "{p}");
    }
    let to_h2 = peers.iter().find(|p| p["name"] == "h2").unwrap();
    assert!(to_h2["tx-bytes"].as_u64().unwrap() > 100_000_000, "{to_h2}");
    let status = meshctl_json(&mesh, 0, "status");
    assert_eq!(status["name"], "h0");
    assert_eq!(status["sessions"], 2);
    // Human output too.
    let human = String::from_utf8(
        mesh.meshctl(&["peers", "--socket", mesh.hosts[0].socket.to_str().unwrap()])
            .stdout,
    )
    .unwrap();
    assert!(human.contains("h1") && human.contains("hybrid"), "{human}");
}

#[test]
fn sigterm_removes_socket_and_tun_device() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(1, MeshOptions::default());
    mesh.start(0);
    let link = mesh.exec(0, &["ip", "link", "show", "meshd0"]);
    assert!(link.status.success(), "TUN device exists while running");
    let addr =
        String::from_utf8_lossy(&mesh.exec(0, &["ip", "-4", "addr", "show", "meshd0"]).stdout)
            .to_string();
    assert!(addr.contains("100.64.0.1/10"), "{addr}");
    let status = mesh.terminate(0);
    assert!(status.success(), "exit status {status}");
    assert!(!mesh.hosts[0].socket.exists(), "admin socket removed");
    assert!(
        !mesh
            .exec(0, &["ip", "link", "show", "meshd0"])
            .status
            .success(),
        "TUN device removed"
    );
}

#[test]
fn kill_9_and_restart_traffic_resumes_within_2s() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(2, MeshOptions::default());
    mesh.start_all();
    assert!(mesh.ping(0, 1, 2));
    mesh.kill9(1);
    mesh.start(1);
    let t = Instant::now();
    // h0 still holds the old session; h1 lost it. Traffic must come back fast.
    let mut ok = false;
    while t.elapsed() < Duration::from_secs(2) {
        let o = mesh.exec(0, &["ping", "-c", "1", "-W", "1", "100.64.0.2"]);
        if o.status.success() {
            ok = true;
            break;
        }
    }
    assert!(
        ok,
        "no reply within 2 s of restart ({:?}):\n{}\n{}",
        t.elapsed(),
        mesh.log(0),
        mesh.log(1)
    );
}

#[test]
fn host_with_certificate_from_another_ca_cannot_join() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(2, MeshOptions::default());
    // h1 becomes a rogue node: its own CA, its own certificate, and — since a
    // rogue CA can sign anything — a forged certificate for h0 carrying h0's
    // real name, address and static key, so that h1's meshd dials the real h0.
    let rogue = mesh.dir.join("rogue");
    std::fs::create_dir_all(&rogue).unwrap();
    let h0 = proto::cert::Certificate::from_armor(
        &std::fs::read_to_string(mesh.dir.join("h0.crt")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        rogue.join("h0.pub"),
        proto::armor::encode(
            proto::armor::LABEL_NODE_PUBLIC_KEY,
            &[&h0.public_key()[..], &h0.body().advert_key[..]].concat(),
        ),
    )
    .unwrap();
    let meshctl = binary("meshctl");
    let run = |args: &[&str]| {
        meshd_tests::run(
            std::process::Command::new(&meshctl)
                .current_dir(&rogue)
                .args(args),
        )
    };
    run(&["ca", "init", "--name", "rogue"]);
    run(&["cert", "issue", "--name", "h1", "--ip", "100.64.0.2/10"]);
    run(&[
        "cert",
        "issue",
        "--name",
        "h0",
        "--ip",
        "100.64.0.1/10",
        "--public-key",
        "h0.pub",
    ]);
    let cfg = std::fs::read_to_string(&mesh.hosts[1].config)
        .unwrap()
        .replace("\"h1.", "\"rogue/h1.")
        .replace("\"h0.", "\"rogue/h0.")
        .replace("\"ca.crt\"", "\"rogue/ca.crt\"");
    std::fs::write(&mesh.hosts[1].config, cfg).unwrap();
    // A peer certificate of another CA is skipped with a clear warning
    // (one bad peer entry never stops a node from starting).
    let mut mixed = std::fs::read_to_string(&mesh.hosts[1].config).unwrap();
    mixed = mixed.replace(
        "\"rogue/h0.crt\"",
        &format!("\"{}\"", mesh.dir.join("h0.crt").display()),
    );
    let mixed_path = mesh.dir.join("mixed.toml");
    std::fs::write(&mixed_path, mixed).unwrap();
    let check = std::process::Command::new(binary("meshd"))
        .args(["--check", "--config", mixed_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(check.status.success());
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        err.contains("warning")
            && err.contains("peer[0].certificate")
            && err.contains("issued by CA")
            && err.contains("skipped"),
        "{err}"
    );
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains("0 static peer(s)"), "{out}");

    mesh.start_all();
    // The rogue node's handshakes reach h0 and are refused there.
    assert!(!mesh.ping(1, 0, 3), "a node of another CA reached h0");
    let status = meshctl_json(&mesh, 0, "status");
    assert!(
        status["handshake-failures"]["certificate"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "h0 should count certificate failures: {status}"
    );
    assert_eq!(status["sessions"], 0, "{status}");
    assert_eq!(meshctl_json(&mesh, 1, "status")["sessions"], 0);
}

#[test]
fn handshake_completes_over_an_mtu_1280_underlay() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(
        2,
        MeshOptions {
            underlay_mtu: 1280,
            // The overlay keeps the IPv6 minimum; large data packets are then
            // fragmented by the underlay kernel, but handshake datagrams never are.
            tun_mtu: 1280,
            ..MeshOptions::default()
        },
    );
    mesh.start_all();
    // No fragment may exceed 1280 bytes on the wire: the path carries nothing larger.
    assert!(mesh.ping(0, 1, 3), "{}\n{}", mesh.log(0), mesh.log(1));
    let peers = meshctl_json(&mesh, 0, "peers");
    assert_eq!(peers[0]["hybrid-post-quantum"], Value::Bool(true));
}

#[test]
fn spoofed_inner_source_is_dropped_and_counted() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(2, MeshOptions::default());
    mesh.start_all();
    assert!(mesh.ping(0, 1, 1));
    // h0 gives itself an address that is not in its certificate and sends from it.
    let o = mesh.exec(0, &["ip", "addr", "add", "100.64.0.99/32", "dev", "meshd0"]);
    assert!(o.status.success());
    let o = mesh.exec(
        0,
        &[
            "ping",
            "-c",
            "3",
            "-W",
            "1",
            "-I",
            "100.64.0.99",
            "100.64.0.2",
        ],
    );
    assert!(!o.status.success(), "spoofed pings must not be answered");
    assert!(
        drops(&mesh, 1, "spoofed_source") >= 3,
        "{}",
        meshctl_json(&mesh, 1, "status")
    );
    // The genuine address still works.
    assert!(mesh.ping(0, 1, 1));
}

#[test]
fn malformed_datagram_flood_is_dropped_and_counted_and_the_session_survives() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(2, MeshOptions::default());
    mesh.start_all();
    assert!(mesh.ping(0, 1, 1));
    let harness = binary("mesh-harness");
    let o = mesh.exec(
        0,
        &[
            harness.to_str().unwrap(),
            "flood",
            "--kind",
            "junk",
            "--to",
            "198.18.0.2:51820",
            "--cert",
            mesh.dir.join("h1.crt").to_str().unwrap(),
            "--rate",
            "20000",
            "--secs",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sent: u64 = String::from_utf8_lossy(&o.stdout)
        .split("sent=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(sent >= 19_000, "{}", String::from_utf8_lossy(&o.stdout));
    let status = meshctl_json(&mesh, 1, "status");
    let dropped: u64 = status["drops"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    // UDP on a veth may lose a few under burst; nearly all must be counted.
    assert!(
        dropped >= sent * 95 / 100,
        "only {dropped} of {sent} junk datagrams counted: {status}"
    );
    assert!(
        status["drops"]["malformed"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );
    assert_eq!(status["sessions"], 1, "{status}");
    assert!(mesh.ping(0, 1, 3), "session broken by junk");
    assert!(mesh.ping(1, 0, 1));
}

#[test]
fn metrics_endpoint_serves_prometheus_text_on_loopback() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(2, MeshOptions::default());
    mesh.start_all();
    assert!(mesh.ping(0, 1, 2));
    let o = mesh.exec(
        0,
        &["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9720; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"],
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        text.contains("# TYPE meshd_handshakes_completed_total counter"),
        "{text}"
    );
    let completed = text
        .lines()
        .find_map(|l| l.strip_prefix("meshd_handshakes_completed_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap();
    assert!(completed >= 1, "{text}");
    assert!(
        text.contains("meshd_dropped_packets_total{reason=\"spoofed_source\"} 0"),
        "{text}"
    );
    assert!(text.contains("meshd_sessions 1"), "{text}");
    assert!(
        text.contains("# TYPE meshd_signature_checks_total counter")
            && text.contains("# TYPE meshd_signature_checks_queued gauge")
            && text.contains("meshd_advert_rejects_total{reason=\"checks_full\"} 0"),
        "{text}"
    );
    // The two nodes flooded their adverts to each other: counted by kind.
    let link_state = text
        .lines()
        .find_map(|l| l.strip_prefix("meshd_control_bytes_sent_total{kind=\"link_state\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(link_state.is_some_and(|n| n > 0), "{text}");
}

/// `tun.queues = 2`: two packet workers, each with its own TUN queue, and the
/// kernel spreads flows over both (64 UDP flows from distinct ports: the
/// chance that all hash to one queue is 2^-63).
#[test]
fn packet_workers_each_read_their_own_tun_queue() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(2, MeshOptions::default());
    for h in &mesh.hosts {
        let cfg = std::fs::read_to_string(&h.config).unwrap();
        std::fs::write(&h.config, cfg.replace("[tun]\n", "[tun]\nqueues = 2\n")).unwrap();
    }
    mesh.start_all();
    assert!(mesh.ping(0, 1, 2));
    let queues = mesh.exec(0, &["ls", "/sys/class/net/meshd0/queues"]);
    let queues = String::from_utf8_lossy(&queues.stdout);
    let tx = queues
        .split_whitespace()
        .filter(|q| q.starts_with("tx-"))
        .count();
    assert_eq!(tx, 2, "TUN queues: {queues}");
    let dst = mesh.hosts[1].overlay;
    let flows = format!("for p in $(seq 1 64); do echo x > /dev/udp/{dst}/$((20000 + p)); done");
    let o = mesh.exec(0, &["bash", "-c", &flows]);
    assert!(o.status.success(), "{o:?}");
    let m = mesh.exec(
        0,
        &["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9720; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"],
    );
    let text = String::from_utf8_lossy(&m.stdout);
    let from_tun = |w: usize| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "meshd_worker_packets_total{{worker=\"{w}\",from=\"tun\"}} "
                ))
            })
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no tun counter for worker {w}: {text}"))
    };
    assert!(
        from_tun(0) > 0 && from_tun(1) > 0,
        "both workers read packets: {text}"
    );
    assert!(!text.contains("worker=\"2\""), "{text}");
}

#[test]
fn bad_configuration_exits_non_zero_naming_file_field_and_fix() {
    if !netns_available() {
        return;
    }
    let mesh = Mesh::new(1, MeshOptions::default());
    let meshd = binary("meshd");
    let cfg = std::fs::read_to_string(&mesh.hosts[0].config).unwrap();
    let cases = [
        (cfg.replace("mtu = 1420", "mtu = 99999"), "tun.mtu"),
        (cfg.replace("[tun]", "[tun]\nmtuu = 1"), "unknown field"),
        (
            cfg.replace("private-key = \"h0.key\"", "private-key = \"missing.key\""),
            "node.private-key",
        ),
        (
            cfg.replace("certificate = \"h0.crt\"", "certificate = \"h1.key\""),
            "node.certificate",
        ),
    ];
    for (i, (text, expect)) in cases.iter().enumerate() {
        let path = mesh.dir.join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let o = std::process::Command::new(&meshd)
            .args(["--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!o.status.success(), "case {i} should fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("bad{i}.toml")) && err.contains(expect),
            "case {i}: {err}"
        );
    }
    let _ = mesh;
}

#[test]
fn meshctl_ping_reports_round_trips_through_the_overlay() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(2, MeshOptions::default());
    mesh.start_all();
    let sock = mesh.hosts[0].socket.to_str().unwrap().to_string();
    let out = mesh.meshctl(&["ping", "h1", "-c", "3", "-i", "100", "--socket", &sock]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("reply from h1 (100.64.0.2), path direct to 198.18.0.2:51820"),
        "{text}"
    );
    assert!(text.contains("3 sent, 3 received, 0% loss"), "{text}");
    let out = mesh.meshctl(&[
        "ping",
        "100.64.0.2",
        "-c",
        "2",
        "-i",
        "50",
        "--json",
        "--socket",
        &sock,
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for probe in v.as_array().unwrap() {
        let rtt = probe["rtt-ms"].as_f64().unwrap();
        assert!(rtt > 0.0 && rtt < 1000.0, "{probe}");
        assert_eq!(probe["path"], "direct");
    }
    // The RTT shows up in `meshctl peers`.
    let peers = meshctl_json(&mesh, 0, "peers");
    assert!(peers[0]["last-rtt-ms"].as_f64().is_some(), "{peers}");
    // Unknown targets and a stopped meshd give clear errors.
    let o = std::process::Command::new(binary("meshctl"))
        .args(["ping", "nobody", "-c", "1", "--socket", &sock])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no member named or addressed 'nobody'"));
    mesh.terminate(1);
    let o = std::process::Command::new(binary("meshctl"))
        .args(["ping", "h1", "-c", "1", "-W", "300", "--socket", &sock])
        .output()
        .unwrap();
    assert!(!o.status.success(), "no reply once h1 is gone");
    mesh.terminate(0);
    let o = std::process::Command::new(binary("meshctl"))
        .args(["status", "--socket", &sock])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("meshd is not running") && err.contains(&sock),
        "{err}"
    );
}

/// Members with IPv6 overlay addresses as well: `meshctl ping` reaches one
/// by its IPv6 address (ICMPv6 echo sent and timed by meshd), by name it
/// takes the IPv4 address, and the kernel's own ping6 crosses the overlay.
#[test]
fn meshctl_pings_ipv6_overlay_addresses_and_names_prefer_ipv4() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(
        2,
        MeshOptions {
            ipv6: true,
            ..MeshOptions::default()
        },
    );
    mesh.start_all();
    assert!(mesh.ping(0, 1, 5), "{}", mesh.log(0));
    let sock = mesh.hosts[0].socket.to_str().unwrap().to_string();
    let ping = |target: &str| -> Value {
        let out = mesh.meshctl(&[
            "ping",
            target,
            "--count",
            "3",
            "--interval-ms",
            "100",
            "--json",
            "--socket",
            &sock,
        ]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v6 = ping("fd00::2");
    assert_eq!(v6[0]["address"], "fd00::2", "{v6}");
    let answered = v6
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["rtt-ms"].is_number())
        .count();
    assert!(answered >= 2, "{v6}");
    assert_eq!(ping("h1")[0]["address"], "100.64.0.2");
    let kernel = mesh.exec(0, &["ping", "-6", "-c", "2", "-W", "2", "fd00::2"]);
    assert!(
        kernel.status.success(),
        "{}",
        String::from_utf8_lossy(&kernel.stdout)
    );
}
