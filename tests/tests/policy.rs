//! Segment policy, enclaves, signed bundles and revocation with real agents
//! in network namespaces (root; CI runs as root). Each test is named after
//! the attack it tries; each builds its own hosts and removes them on drop.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshd_tests::{binary, netns_available, Mesh, MeshOptions};
use serde_json::Value;

/// Children killed on drop (servers started inside namespaces).
struct Kill(Vec<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sock(mesh: &Mesh, host: usize) -> String {
    mesh.hosts[host].socket.to_str().unwrap().to_string()
}

/// `meshctl WHAT --json` on a host.
fn json(mesh: &Mesh, host: usize, what: &str) -> Value {
    let out = mesh.meshctl(&[what, "--json", "--socket", &sock(mesh, host)]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// meshctl that may fail: (success, stdout + stderr).
fn meshctl_try(mesh: &Mesh, args: &[&str]) -> (bool, String) {
    let out = Command::new(binary("meshctl"))
        .current_dir(&mesh.dir)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn policy_field(mesh: &Mesh, host: usize, field: &str) -> Value {
    json(mesh, host, "status")["policy"][field].clone()
}

fn denied(mesh: &Mesh, host: usize, key: &str) -> u64 {
    policy_field(mesh, host, "denied")[key]
        .as_u64()
        .unwrap_or(0)
}

fn total_denied(mesh: &Mesh, host: usize) -> u64 {
    policy_field(mesh, host, "denied")
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return t.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what}: not within {limit:?}");
}

/// Every host has `n` sessions.
fn wait_sessions(mesh: &Mesh, n: u64) {
    for h in 0..mesh.hosts.len() {
        wait_for(
            &format!("sessions on h{h}"),
            Duration::from_secs(10),
            || json(mesh, h, "status")["sessions"].as_u64() == Some(n),
        );
    }
}

fn write(mesh: &Mesh, name: &str, text: &str) {
    std::fs::write(mesh.dir.join(name), text).unwrap();
}

/// `mesh-harness serve` on a host's overlay address.
fn serve(mesh: &Mesh, host: usize, ports: &[u16]) -> Child {
    let addr = mesh.hosts[host].overlay.to_string();
    let mut args = vec![
        binary("mesh-harness").to_str().unwrap().to_string(),
        "serve".into(),
        "--addr".into(),
        addr,
        "--secs".into(),
        "60".into(),
    ];
    for p in ports {
        args.push("--port".into());
        args.push(p.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Command::new("ip")
        .args(["netns", "exec", &mesh.hosts[host].ns])
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Try {
    Tcp(u16),
    Udp(u16),
    Icmp,
}

/// Whether `from` reaches `to` with this kind of packet.
fn reaches(mesh: &Mesh, from: usize, to: usize, what: Try) -> bool {
    let dst = mesh.hosts[to].overlay.to_string();
    let harness = binary("mesh-harness");
    let h = harness.to_str().unwrap();
    let out = match what {
        Try::Icmp => mesh.exec(from, &["ping", "-c", "1", "-W", "1", &dst]),
        Try::Tcp(p) | Try::Udp(p) => {
            let to = format!("{dst}:{p}");
            let mut args = vec![h, "probe", "--to", &to, "--timeout-ms", "400"];
            if matches!(what, Try::Udp(_)) {
                args.push("--udp");
            }
            mesh.exec(from, &args)
        }
    };
    out.status.success()
}

const SEGMENT_POLICY: &str = r#"
# web may reach the database on 5432 and ping it; guests reach nothing.
[[rule]]
action = "allow"
from = "segment:web"
to = "segment:db"
proto = "tcp"
ports = ["5432"]

[[rule]]
action = "allow"
from = "segment:web"
to = "segment:db"
proto = "icmp"
icmp-types = [8]

[[rule]]
action = "deny"
from = "segment:guest"
to = "any"

[[expect]]
from = "h0"
to = "h1"
proto = "tcp"
port = 5432
verdict = "allow"

[[expect]]
from = "h2"
to = "h1"
proto = "tcp"
port = 5432
verdict = "deny"
"#;

#[test]
fn segment_escape_every_disallowed_pair_is_dropped_and_counted() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(
        3,
        MeshOptions {
            segments: vec!["web", "db", "guest"],
            ..MeshOptions::default()
        },
    );
    mesh.configure_policy(&[]);
    mesh.start_all();
    wait_sessions(&mesh, 2);
    write(&mesh, "policy.toml", SEGMENT_POLICY);
    // Pushed to h0 only, after its expectations hold; gossip does the rest.
    let s0 = sock(&mesh, 0);
    mesh.meshctl(&[
        "policy",
        "push",
        "policy.toml",
        "--cert",
        "h0.crt",
        "--cert",
        "h1.crt",
        "--cert",
        "h2.crt",
        "--socket",
        &s0,
    ]);
    for h in 0..3 {
        wait_for(&format!("policy on h{h}"), Duration::from_secs(5), || {
            policy_field(&mesh, h, "policy-version").is_u64()
        });
    }
    let _servers = Kill((0..3).map(|h| serve(&mesh, h, &[5432, 22])).collect());
    std::thread::sleep(Duration::from_millis(300));
    // What the policy allows works, replies included (connection tracking).
    assert!(reaches(&mesh, 0, 1, Try::Tcp(5432)), "{}", mesh.log(0));
    assert!(reaches(&mesh, 0, 1, Try::Icmp));
    // Every other pair, over TCP, UDP and ICMP, fails, and the sender counts it.
    let mut tried = 0;
    for from in 0..3 {
        for to in 0..3 {
            for what in [Try::Tcp(5432), Try::Tcp(22), Try::Udp(5432), Try::Icmp] {
                let allowed = from == 0 && to == 1 && matches!(what, Try::Tcp(5432) | Try::Icmp);
                if from == to || allowed {
                    continue;
                }
                let before = total_denied(&mesh, from);
                assert!(
                    !reaches(&mesh, from, to, what),
                    "h{from} reached h{to} with {what:?}"
                );
                let after = total_denied(&mesh, from);
                assert!(after > before, "h{from} → h{to} {what:?} not counted");
                tried += 1;
            }
        }
    }
    assert_eq!(tried, 22);
    // The guest's refusals carry the deny rule as their reason.
    assert!(denied(&mesh, 2, "out/deny_rule") >= 8);
    assert!(denied(&mesh, 1, "out/default") >= 1);
    let m = mesh.meshctl(&["status", "--socket", &sock(&mesh, 2)]);
    let text = String::from_utf8_lossy(&m.stdout);
    assert!(
        text.contains("denied") && text.contains("out/deny_rule"),
        "{text}"
    );
}

/// Two hosts in segment `test` with `v2` (ICMP only) pushed to h0 and spread
/// to h1; returns the mesh.
fn mesh_with_policy_v2() -> Mesh {
    let mut mesh = Mesh::new(2, MeshOptions::default());
    mesh.configure_policy(&[]);
    mesh.start_all();
    wait_sessions(&mesh, 1);
    write(
        &mesh,
        "v1.toml",
        "[[rule]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\n",
    );
    write(
        &mesh,
        "v2.toml",
        "[[rule]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = \"icmp\"\n",
    );
    mesh.meshctl(&[
        "policy",
        "sign",
        "v1.toml",
        "--version",
        "1",
        "--out",
        "v1.bundle",
    ]);
    mesh.meshctl(&[
        "policy",
        "sign",
        "v2.toml",
        "--version",
        "2",
        "--out",
        "v2.bundle",
    ]);
    let s0 = sock(&mesh, 0);
    mesh.meshctl(&["policy", "push", "v2.bundle", "--bundle", "--socket", &s0]);
    wait_for("v2 on h1", Duration::from_secs(5), || {
        policy_field(&mesh, 1, "policy-version").as_u64() == Some(2)
    });
    mesh
}

#[test]
fn replayed_old_policy_bundle_is_refused_and_counted() {
    if !netns_available() {
        return;
    }
    let mesh = mesh_with_policy_v2();
    for h in 0..2 {
        let (ok, text) = meshctl_try(
            &mesh,
            &[
                "policy",
                "push",
                "v1.bundle",
                "--bundle",
                "--socket",
                &sock(&mesh, h),
            ],
        );
        assert!(!ok && text.contains("not newer"), "{text}");
        assert_eq!(policy_field(&mesh, h, "policy-version").as_u64(), Some(2));
        assert_eq!(
            policy_field(&mesh, h, "bundle-rejects")["not_newer"].as_u64(),
            Some(1)
        );
    }
    // meshctl shows what is in force, as signed.
    let shown = mesh.meshctl(&["policy", "show", "--socket", &sock(&mesh, 1)]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("policy version 2")
            && shown.contains("by ca")
            && shown.contains("proto = \"icmp\""),
        "{shown}"
    );
    // v2 still rules: ICMP passes, UDP does not.
    let _s = Kill(vec![serve(&mesh, 1, &[7000])]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(reaches(&mesh, 0, 1, Try::Icmp));
    assert!(!reaches(&mesh, 0, 1, Try::Udp(7000)));
}

#[test]
fn policy_signed_by_a_policy_key_the_ca_names_is_accepted_until_revoked() {
    if !netns_available() {
        return;
    }
    let mesh = mesh_with_policy_v2();
    let s0 = sock(&mesh, 0);
    mesh.meshctl(&[
        "cert",
        "issue-policy-key",
        "--name",
        "policy-1",
        "--ttl",
        "1d",
    ]);
    let signed = [
        "policy",
        "sign",
        "v1.toml",
        "--version",
        "3",
        "--signer-crt",
        "policy-1.crt",
        "--signer-key",
        "policy-1.key",
        "--out",
        "v3.bundle",
    ];
    mesh.meshctl(&signed);
    mesh.meshctl(&["policy", "push", "v3.bundle", "--bundle", "--socket", &s0]);
    wait_for("v3 on h1", Duration::from_secs(5), || {
        policy_field(&mesh, 1, "policy-version").as_u64() == Some(3)
    });
    let shown = mesh.meshctl(&["policy", "show", "--json", "--socket", &sock(&mesh, 1)]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["signer"], "policy-1", "{shown}");
    assert_eq!(shown["version"], 3, "{shown}");

    // Revoke the policy key (the CA's revocation list names it like a node).
    mesh.meshctl(&["revoke", "--cert", "policy-1.crt", "--socket", &s0]);
    let mut again = signed;
    again[4] = "4";
    again[10] = "v4.bundle";
    mesh.meshctl(&again);
    let (ok, text) = meshctl_try(
        &mesh,
        &["policy", "push", "v4.bundle", "--bundle", "--socket", &s0],
    );
    assert!(!ok && text.contains("revoked"), "{text}");
    assert_eq!(policy_field(&mesh, 0, "policy-version").as_u64(), Some(3));
}

#[test]
fn forged_policy_signature_is_refused_and_counted() {
    if !netns_available() {
        return;
    }
    use proto::armor::encode;
    use proto::bundle::{Bundle, LABEL_POLICY_BUNDLE};
    let mesh = mesh_with_policy_v2();
    // (1) A bundle signed by another CA's key.
    let evil = mesh.dir.join("evil");
    std::fs::create_dir_all(&evil).unwrap();
    let out = Command::new(binary("meshctl"))
        .current_dir(&evil)
        .args(["ca", "init", "--name", "evil"])
        .output()
        .unwrap();
    assert!(out.status.success());
    mesh.meshctl(&[
        "policy",
        "sign",
        "v1.toml",
        "--version",
        "9",
        "--ca-crt",
        "evil/ca.crt",
        "--ca-key",
        "evil/ca.key",
        "--out",
        "evil.bundle",
    ]);
    // (2) Our CA's v3, altered after signing (a rule widened in transit).
    mesh.meshctl(&[
        "policy",
        "sign",
        "v1.toml",
        "--version",
        "3",
        "--out",
        "v3.bundle",
    ]);
    let text = std::fs::read_to_string(mesh.dir.join("v3.bundle")).unwrap();
    let mut bytes = Bundle::from_armor(&text).unwrap().as_bytes().to_vec();
    let at = bytes.len() - 64 - 3; // inside the policy text
    bytes[at] ^= 0x20;
    write(
        &mesh,
        "tampered.bundle",
        &encode(LABEL_POLICY_BUNDLE, &bytes),
    );
    for (file, reason, says) in [
        ("evil.bundle", "wrong_issuer", "another CA"),
        ("tampered.bundle", "bad_signature", "does not verify"),
    ] {
        let (ok, text) = meshctl_try(
            &mesh,
            &[
                "policy",
                "push",
                file,
                "--bundle",
                "--socket",
                &sock(&mesh, 0),
            ],
        );
        assert!(!ok && text.contains(says), "{file}: {text}");
        assert_eq!(
            policy_field(&mesh, 0, "bundle-rejects")[reason].as_u64(),
            Some(1),
            "{file}"
        );
    }
    for h in 0..2 {
        assert_eq!(policy_field(&mesh, h, "policy-version").as_u64(), Some(2));
    }
    let _s = Kill(vec![serve(&mesh, 1, &[7000])]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !reaches(&mesh, 0, 1, Try::Udp(7000)),
        "v2 should still rule"
    );
    // A node configured with the forged bundle refuses to start, naming the
    // field, the file and the fix.
    let cfg = std::fs::read_to_string(&mesh.hosts[0].config).unwrap();
    let bad = mesh.dir.join("bad.toml");
    std::fs::write(
        &bad,
        cfg.replace("bundles = []", "bundles = [\"evil.bundle\"]"),
    )
    .unwrap();
    let out = Command::new(binary("meshd"))
        .args(["--check", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("policy.bundles[0]")
            && err.contains("evil.bundle")
            && err.contains("meshctl policy sign"),
        "{err}"
    );
}

#[test]
fn revoked_node_reconnecting_is_refused_mesh_wide_within_2s() {
    if !netns_available() {
        return;
    }
    let mut mesh = Mesh::new(3, MeshOptions::default());
    mesh.configure_policy(&[]);
    mesh.start_all();
    wait_sessions(&mesh, 2);
    assert!(mesh.ping(2, 1, 1));
    // Revoked at h0; h1 learns it by gossip only.
    let t = Instant::now();
    mesh.meshctl(&["revoke", "--cert", "h2.crt", "--socket", &sock(&mesh, 0)]);
    let peers_of = |h: usize| json(&mesh, h, "peers");
    let cut = |h: usize| {
        peers_of(h)
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "h2" && p["session"] == false)
            && policy_field(&mesh, h, "refused-peers").as_u64() == Some(1)
    };
    wait_for("h2 cut at h0", Duration::from_secs(2), || cut(0));
    wait_for("h2 cut at h1", Duration::from_secs(2), || cut(1));
    let spread = t.elapsed();
    eprintln!("revocation: pushed to h0, h2 cut at h0 and h1 after {spread:?} (meshctl included)");
    assert!(spread < Duration::from_secs(2), "{spread:?}");
    assert!(!mesh.ping(2, 0, 2));
    assert!(!mesh.ping(2, 1, 2));
    // `meshctl revoked` lists it on a node that learned it by gossip.
    let listed = json(&mesh, 1, "revoked");
    assert_eq!(listed["entries"][0]["name"], "h2", "{listed}");
    let h2 = (peers_of(1).as_array().unwrap().iter())
        .find(|p| p["name"] == "h2")
        .cloned()
        .unwrap();
    assert_eq!(h2["refused-because"], "revoked", "{h2}");
    assert!(listed["version"].as_u64().is_some(), "{listed}");
    // The revoked node restarts and tries again: refused at the handshake.
    mesh.kill9(2);
    mesh.start(2);
    wait_for("h2's retries refused", Duration::from_secs(10), || {
        json(&mesh, 0, "status")["handshake-failures"]["revoked"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    });
    assert!(!mesh.ping(2, 0, 2));
    assert_eq!(json(&mesh, 2, "status")["sessions"].as_u64(), Some(0));
    // A restarted h1 enforces the saved list before anyone tells it again.
    mesh.kill9(1);
    mesh.start(1);
    wait_for("h1 loads its saved list", Duration::from_secs(5), || {
        mesh.log(1).contains("state-h1/revocation.bundle")
    });
    assert!(!mesh.ping(2, 1, 2));
    assert!(mesh.ping(0, 1, 3), "h0–h1 still fine");
    // The revoked node holds a newer, validly signed policy that nobody
    // else has, and h1 restarts with no one but h2 up: h1 refuses h2 from
    // its first handshake and takes nothing h2 offers.
    write(
        &mesh,
        "newer.toml",
        "[[rule]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\n",
    );
    mesh.meshctl(&[
        "policy",
        "sign",
        "newer.toml",
        "--version",
        "9",
        "--out",
        "newer.bundle",
    ]);
    mesh.meshctl(&[
        "policy",
        "push",
        "newer.bundle",
        "--bundle",
        "--socket",
        &sock(&mesh, 2),
    ]);
    wait_for("h2 holds policy 9", Duration::from_secs(5), || {
        policy_field(&mesh, 2, "policy-version") == 9
    });
    mesh.kill9(0);
    mesh.kill9(1);
    mesh.start(1);
    // h2 retries every 5 s; the restarted h1's counters start at zero.
    wait_for(
        "h2 refused by the restarted h1",
        Duration::from_secs(20),
        || {
            json(&mesh, 1, "status")["handshake-failures"]["revoked"]
                .as_u64()
                .unwrap_or(0)
                >= 1
        },
    );
    assert_ne!(policy_field(&mesh, 1, "policy-version"), 9);
    assert_eq!(json(&mesh, 1, "status")["sessions"].as_u64(), Some(0));
}

/// h0 and h1 in enclave `pci`, h2 outside; the policy ships with the nodes.
fn enclave_mesh() -> Mesh {
    let mut mesh = Mesh::new(
        3,
        MeshOptions {
            segments: vec!["pci", "pci", "web"],
            ..MeshOptions::default()
        },
    );
    write(
        &mesh,
        "enclave.toml",
        "enclaves = [\"pci\"]\n[[rule]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\n",
    );
    mesh.meshctl(&["policy", "sign", "enclave.toml", "--out", "enclave.bundle"]);
    mesh.configure_policy(&["enclave.bundle"]);
    mesh.start_all();
    wait_for("h0–h1 session", Duration::from_secs(10), || {
        json(&mesh, 0, "status")["sessions"].as_u64() == Some(1)
    });
    mesh
}

#[test]
fn enclave_traffic_steered_through_a_non_member_relay_is_refused() {
    if !netns_available() {
        return;
    }
    let mesh = enclave_mesh();
    assert!(mesh.ping(0, 1, 2));
    // No session between the outsider and a member: holding the policy,
    // neither side even initiates (each refuses the other, configured
    // peer or not; a member refuses an outsider's handshake too, see
    // `crates/proto/tests/endpoint_admission.rs`).
    assert!(!mesh.ping(2, 0, 2));
    for (host, other) in [(0, "h2"), (2, "h0")] {
        let peers = json(&mesh, host, "peers");
        let p = peers
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == other)
            .unwrap();
        assert!(p["refused"] == true && p["session"] == false, "{p}");
        assert_eq!(p["refused-because"], "enclave", "{p}");
    }
    // Cut the members' direct link: the only other path is through h2, a
    // non-member, so enclave traffic must stop rather than be relayed.
    let rules = mesh.dir.join("cut.nft");
    std::fs::write(
        &rules,
        format!(
            "table inet cut {{\n  chain i {{\n    type filter hook input priority 0;\n    ip saddr {0} drop\n  }}\n  chain o {{\n    type filter hook output priority 0;\n    ip daddr {0} drop\n  }}\n}}\n",
            mesh.hosts[1].underlay
        ),
    )
    .unwrap();
    let o = mesh.exec(0, &["nft", "-f", rules.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !mesh.ping(0, 1, 5),
        "enclave traffic got through without the direct link"
    );
    assert_eq!(mesh.metric(2, "meshd_relayed_packets_total"), 0.0);
    let peers = json(&mesh, 0, "peers");
    let h1 = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "h1")
        .unwrap();
    assert_eq!(h1["path"], "direct", "{h1}");
}

#[test]
fn enclave_metadata_is_invisible_to_an_outsider_through_meshctl_and_gossip() {
    if !netns_available() {
        return;
    }
    let mesh = enclave_mesh();
    assert!(mesh.ping(0, 1, 2));
    // Let probes and adverts run for a while.
    std::thread::sleep(Duration::from_secs(2));
    let peers = json(&mesh, 2, "peers");
    for p in peers.as_array().unwrap() {
        // h2 knows the members only from its own configuration: no session,
        // no handshake, no link state, no traffic.
        assert_eq!(p["session"], false, "{p}");
        assert!(p["handshake-age-secs"].is_null(), "{p}");
        assert!(p["link"].is_null(), "{p}");
        assert_eq!(p["rx-bytes"], 0, "{p}");
    }
    let routes = json(&mesh, 2, "routes");
    assert_eq!(routes.as_array().unwrap().len(), 0, "{routes}");
    assert_eq!(mesh.metric(2, "meshd_sessions"), 0.0);
    // And the members never gossiped to it.
    let status = json(&mesh, 2, "status");
    assert_eq!(status["sessions"], 0, "{status}");
}
